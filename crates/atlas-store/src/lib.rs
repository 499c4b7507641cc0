//! # atlas-store
//!
//! Implementations of [`atlas_core::ports::BlobStore`], the port through which the
//! repository stores opaque bytes under keys:
//!
//! - [`MemoryStore`]: a sorted map; the reference implementation for millisecond tests.
//! - [`LocalStore`]: a local directory, Atlas's embedded default repository; atomic and
//!   durable writes via temp file + fsync + link/rename (its module docs give the order).
//! - [`FaultStore`]: wraps any store and injects failures, crashes at the Nth write, and
//!   transient errors, so crash-safety tests can replay a scenario dying at every write.
//! - [`S3Store`]: S3 and S3-compatible servers, with Object Lock retention, version-aware
//!   deletes, multipart uploads and explained errors (see the [`s3`] module docs).
//! - [`conformance`]: the executable contract. Every backend (S3 included) runs
//!   [`conformance::run_all`] from its tests; a backend that passes is interchangeable
//!   with the others.

pub mod conformance;
pub mod fault;
pub mod local;
pub mod memory;
pub mod s3;

pub use fault::{CrashLanding, FaultPlan, FaultStore};
pub use local::LocalStore;
pub use memory::MemoryStore;
pub use s3::{S3Config, S3ConfigError, S3Store};
