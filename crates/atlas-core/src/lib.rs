//! # atlas-core
//!
//! The heart of Atlas: the domain model, the ports (traits for storage, mail source and
//! target, progress and time), the encrypted, deduplicated repository, and the services
//! (backup, verify, export, restore, retention) that combine them.
//!
//! The core has no side channels: no printing, no environment, no sockets, no wall clock.
//! Storage arrives through [`ports::BlobStore`], time through [`ports::Clock`].
//!
//! - [`model`]: ids ([`model::MailboxId`], [`model::ContentId`] …), message and folder
//!   metadata, snapshot records.
//! - [`repo`]: [`repo::Repository`] (open/init with a [`repo::Passphrase`], list and load
//!   snapshots, read blobs, verify) and [`repo::BackupSession`] (the leased writer of one
//!   mailbox run: `put_blob` → `flush` → `commit`).
//! - [`SecretString`]: the one secret string type (passphrases, client secrets, keys,
//!   tokens): redacted `Debug`, no `Display`, zeroed on drop.
//! - [`Error`]: one error enum for the crate.

pub mod compat;
pub mod error;
pub mod model;
pub mod open;
pub mod ports;
pub mod repo;
mod secret;
pub mod service;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::{Error, Result};
pub use open::{Access, Opened, open};
pub use secret::SecretString;
