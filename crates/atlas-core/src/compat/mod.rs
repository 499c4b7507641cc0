//! Compatibility with repositories written by earlier Atlas implementations.
//!
//! - [`v1`]: the TypeScript Atlas 1.x bucket layout (`_meta/dek.enc`, `manifests/`,
//!   `data/`, `attachments/`): a read-only reader, a v1-native verify, and the MIME rebuild
//!   that [`crate::service::migrate`] uses to convert such a bucket into a v2 repository.

pub mod v1;
