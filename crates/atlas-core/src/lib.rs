//! # atlas-core
//!
//! The heart of Atlas: the domain model, the ports (traits for storage, mail source and
//! target, progress and time), the encrypted, deduplicated repository, and the services
//! (backup, verify, export, restore, retention) that combine them.
//!
//! The core has no side channels: no printing, no environment, no sockets, no wall clock.
//! Storage arrives through [`ports::BlobStore`], time through [`ports::Clock`].

pub mod ports;
