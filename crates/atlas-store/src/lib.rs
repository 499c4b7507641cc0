//! # atlas-store
//!
//! Implementations of [`atlas_core::ports::BlobStore`]: memory (tests), local directory
//! (the embedded default repository) and, later, S3. Wrappers add fault injection for
//! crash-safety tests. Every backend passes the same conformance suite.

pub mod memory;

pub use memory::MemoryStore;
