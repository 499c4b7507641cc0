//! The storage port: opaque bytes under string keys.
//!
//! `BlobStore` is the lowest of the three storage layers (store → repository → services).
//! It knows nothing about encryption, packs or snapshots; the repository builds those on
//! top. Every backend (memory, local directory, S3) must pass the conformance suite in
//! `atlas-store`, which pins the contract written here.
//!
//! # Contract
//!
//! - Keys are `/`-separated relative paths made of `[A-Za-z0-9._@+=-]` segments (see
//!   [`StoreKey`]; `@` and `+` because repositories written by the TypeScript Atlas 1.x
//!   put mailbox addresses in keys); backends map them to files or S3 keys one to one.
//! - `put` is atomic: a reader sees either the whole old object, the whole new one, or
//!   nothing — never a prefix. When `put` returns `Ok`, the object is durable (fsynced on a
//!   local disk, acknowledged by S3).
//! - `PutMode::Create` is a real create-if-absent: of two racing creators exactly one
//!   succeeds; the other gets [`StoreError::AlreadyExists`]. Key creation and leases rely
//!   on this.
//! - `delete` of a missing key succeeds (idempotent).
//! - `list` returns every object whose key starts with `prefix`, in lexicographic key
//!   order, with sizes; it pages internally.
//!
//! # Object Lock (retention)
//!
//! Only some backends can keep an object from being deleted (S3 Object Lock). The
//! retention methods are *provided* methods whose defaults say "not supported" / "no
//! retention", so a backend without locking needs no code for them. A backend that does
//! implement them keeps these rules:
//!
//! - `put` with [`PutOptions::retention`] either stores the object under that retention or
//!   fails (`Unsupported` when the bucket/backend cannot lock) — never silently unlocked.
//! - [`BlobStore::extend_retention`] only ever lengthens or strengthens: the result
//!   keeps the later of the old and requested dates and the stronger mode (compliance over
//!   governance). Asking for less than what is there is a successful no-op, so reusing an
//!   object under a shorter policy can never weaken its lock.
//! - `delete` really removes data: on a versioned bucket it deletes every version and
//!   delete marker of the key, not just adds a delete marker. Versions still under
//!   retention cannot go; `delete` then fails with [`StoreError::Retained`] (the latest
//!   retain-until date among them) and leaves the key's current version readable — it
//!   never makes an older version reappear by removing a newer one first.
//! - An `Overwrite` of a retained object succeeds on a versioned bucket: the new version
//!   becomes current and the old one stays, still retained, until its date passes.
//! - A permission failure is [`StoreError::AccessDenied`], never `Retained`: `Retained`
//!   is reported only when the store confirms a retention date still in the future.
//!
//! # Server-side copy
//!
//! Copying between two stores normally reads every object out of one and writes it into
//! the other. When both live on the same server and the same credentials reach both
//! (two S3 buckets on one endpoint), the server can copy without the bytes crossing the
//! client's network. Two more *provided* methods expose that; the defaults say "not
//! possible here", so a backend needs no code for them and callers always keep their
//! read-and-write path as the fallback:
//!
//! - [`BlobStore::copy_source`] describes where this store's objects live, so another
//!   store can decide whether it can copy from it; `None` (default) means "never".
//! - [`BlobStore::copy_from`] copies one object from such a source. `Ok(false)` means
//!   "not possible here" (another endpoint or account, an object too large for one copy,
//!   a server without copy support) and that *nothing was written*: the caller falls
//!   back to `get` + `put`. `Ok(true)` means the object now exists under `key` with the
//!   source's exact bytes, durably, like a successful `put`.
//! - `copy_from` honours [`PutOptions`] like `put`: retention is applied to the copy or
//!   the copy fails (never silently unlocked), and `PutMode::Create` fails with
//!   [`StoreError::AlreadyExists`] when `key` exists. Servers do not all honour a
//!   conditional copy, so a backend may check for the key just before copying instead:
//!   `Create` through `copy_from` is a check, not the race arbiter `put` is — leases and
//!   key creation keep using `put`.
//! - A missing source object is [`StoreError::NotFound`] (naming the source key).

use std::fmt::Debug;
use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

/// A validated object key inside a store.
///
/// Newtype so that a mailbox address or a subject can never be used as a path by accident:
/// only [`StoreKey::new`] builds one, and it rejects anything outside the safe alphabet,
/// empty segments, `.` and `..`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StoreKey(String);

impl StoreKey {
    /// Validate and wrap a key.
    pub fn new(key: impl Into<String>) -> Result<Self, StoreError> {
        let key = key.into();
        let valid = !key.is_empty()
            && key.len() <= 1024
            && key.split('/').all(|seg| {
                !seg.is_empty()
                    && seg != "."
                    && seg != ".."
                    && seg.bytes().all(|b| {
                        b.is_ascii_alphanumeric()
                            || matches!(b, b'.' | b'_' | b'-' | b'@' | b'+' | b'=')
                    })
            });
        if valid {
            Ok(Self(key))
        } else {
            Err(StoreError::InvalidKey { key })
        }
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreKey({})", self.0)
    }
}

impl std::fmt::Display for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether a `put` may replace an existing object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMode {
    /// Fail with [`StoreError::AlreadyExists`] if the key exists (atomic create-if-absent).
    Create,
    /// Replace whatever is there.
    Overwrite,
}

/// Object Lock retention mode (S3 semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Privileged users may shorten or remove retention.
    Governance,
    /// Nobody can delete the object version before `retain_until`.
    Compliance,
}

/// Retention requested for an object; backends that cannot enforce it must fail the put
/// with [`StoreError::Unsupported`] rather than silently ignore it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Lock mode.
    pub mode: LockMode,
    /// The object version cannot be deleted before this instant.
    pub retain_until: DateTime<Utc>,
}

/// A bucket's default retention (applied by the store to new objects put without one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultRetention {
    /// Lock mode.
    pub mode: LockMode,
    /// Retention period in days (years are converted as 365 days).
    pub days: u32,
}

/// What a backend reports about its ability to lock objects (see
/// [`BlobStore::lock_status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockStatus {
    /// Versioning is enabled (S3 needs it for Object Lock; a delete then only adds a
    /// delete marker unless versions are deleted one by one).
    pub versioning: bool,
    /// Object Lock is enabled: puts may carry retention.
    pub object_lock: bool,
    /// The default retention applied to new objects, if any.
    pub default_retention: Option<DefaultRetention>,
}

/// Where a store's objects live, as far as a server-side copy needs to know (see
/// [`BlobStore::copy_source`]). Carries no secret: `account` identifies the credentials
/// (an S3 access key id) only so two stores can tell whether the same credentials reach
/// both — a server-side copy is signed by the target's credentials and must be allowed
/// to read the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySource {
    /// The server, normalised (`https://host[:port]`), so two handles on the same server
    /// compare equal.
    pub endpoint: String,
    /// Bucket (or equivalent container) on that server.
    pub bucket: String,
    /// Prefix the store puts before every key (empty, or `/`-terminated).
    pub key_prefix: String,
    /// Opaque identity of the credentials in use (never a secret).
    pub account: String,
}

/// Options for [`BlobStore::put`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutOptions {
    /// Create-if-absent or overwrite.
    pub mode: PutMode,
    /// Optional Object Lock retention.
    pub retention: Option<Retention>,
}

impl PutOptions {
    /// Create-if-absent, no retention.
    pub const CREATE: Self = Self {
        mode: PutMode::Create,
        retention: None,
    };
    /// Overwrite, no retention.
    pub const OVERWRITE: Self = Self {
        mode: PutMode::Overwrite,
        retention: None,
    };
}

/// What `head` and `list` report about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object's key.
    pub key: StoreKey,
    /// Size in bytes.
    pub size: u64,
}

/// Errors of the storage layer. Backends translate their native errors into these once.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The key does not exist.
    #[error("object {key} not found")]
    NotFound {
        /// Missing key.
        key: String,
    },
    /// `PutMode::Create` lost: the key already exists.
    #[error("object {key} already exists")]
    AlreadyExists {
        /// Existing key.
        key: String,
    },
    /// A key outside the allowed alphabet.
    #[error("invalid object key {key:?}")]
    InvalidKey {
        /// The rejected key.
        key: String,
    },
    /// A requested range lies outside the object.
    #[error("range {start}..{end} is outside object {key} ({size} bytes)")]
    InvalidRange {
        /// Key.
        key: String,
        /// Range start.
        start: u64,
        /// Range end (exclusive).
        end: u64,
        /// Actual object size.
        size: u64,
    },
    /// The object is under retention and cannot be deleted or overwritten yet.
    #[error("object {key} is retained (Object Lock) until {until}")]
    Retained {
        /// Key.
        key: String,
        /// Retain-until date as reported by the store.
        until: String,
    },
    /// No space left on the device (local) — the write did not happen.
    #[error("no space left while writing {key}: free some space and run again")]
    StorageFull {
        /// Key being written.
        key: String,
    },
    /// The backend cannot do what was asked (e.g. Object Lock on a local directory).
    #[error("storage backend does not support {what}")]
    Unsupported {
        /// What was asked.
        what: String,
    },
    /// Permission denied by the backend.
    #[error("access denied to {key}: {detail}")]
    AccessDenied {
        /// Key or bucket.
        key: String,
        /// Backend explanation (never contains secrets).
        detail: String,
    },
    /// A transient failure (timeout, 5xx, throttling); safe to retry.
    #[error("storage temporarily unavailable for {key}: {detail}")]
    Transient {
        /// Key.
        key: String,
        /// Explanation.
        detail: String,
    },
    /// The bucket (or equivalent container) does not exist, or these credentials cannot
    /// see it. Never reported as a missing object: that would make a misconfigured
    /// repository look empty.
    #[error("bucket {bucket} does not exist at {endpoint}")]
    BucketMissing {
        /// The bucket.
        bucket: String,
        /// The server (`https://host[:port]`).
        endpoint: String,
    },
    /// The server does not accept the credentials at all (as opposed to
    /// [`StoreError::AccessDenied`]: known credentials without permission).
    #[error("{endpoint} rejected the credentials for bucket {bucket}: {problem}")]
    BadCredentials {
        /// The bucket.
        bucket: String,
        /// The server.
        endpoint: String,
        /// Which part of the credentials is wrong.
        problem: CredentialProblem,
    },
    /// The bucket lives in another region (or behind another endpoint) than the one
    /// requests are signed for.
    #[error(
        "bucket {bucket} at {endpoint} is not in region {region}{}",
        server_region.as_ref().map(|r| format!("; the server says it is in {r}")).unwrap_or_default()
    )]
    WrongRegion {
        /// The bucket.
        bucket: String,
        /// The server.
        endpoint: String,
        /// The region requests were signed for.
        region: String,
        /// The region the server named, when it did.
        server_region: Option<String>,
    },
    /// The server refuses signed requests because this machine's clock is too far from
    /// its own (S3 allows 15 minutes).
    #[error(
        "{endpoint} refuses signed requests: this machine's clock differs from the server's by more than 15 minutes{}",
        server_time.as_ref().map(|t| format!(" (server time {t})")).unwrap_or_default()
    )]
    ClockSkew {
        /// The server.
        endpoint: String,
        /// The server's time as it reported it, when it did.
        server_time: Option<String>,
    },
    /// The TLS handshake failed: the server's certificate was rejected (unknown issuer,
    /// expired, wrong name) or the protocol failed. Not retried: it cannot heal by itself.
    #[error(
        "TLS handshake with {host} failed: {reason}{}",
        certificate_names(subject.as_deref(), issuer.as_deref())
    )]
    Tls {
        /// The host connected to.
        host: String,
        /// What failed (e.g. "certificate signed by an unknown issuer").
        reason: String,
        /// Subject of the server's certificate, when one was received.
        subject: Option<String>,
        /// Issuer of the server's certificate, when one was received.
        issuer: Option<String>,
    },
    /// A host name did not resolve. Not retried.
    #[error(
        "cannot resolve host {host}: {detail}{}",
        virtual_hosted_bucket.as_ref().map(|b| format!(
            " (the host name is bucket {b} in front of the endpoint, virtual-hosted \
             addressing; a server without wildcard DNS needs path-style addressing)"
        )).unwrap_or_default()
    )]
    Dns {
        /// The host name.
        host: String,
        /// The resolver's answer.
        detail: String,
        /// The bucket, when the host name is the bucket's virtual-hosted name.
        virtual_hosted_bucket: Option<String>,
    },
    /// Any other I/O failure.
    #[error("storage I/O error on {key}: {source}")]
    Io {
        /// Key.
        key: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Which part of a store's credentials the server rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialProblem {
    /// The server does not know the access key id.
    UnknownAccessKey,
    /// The signature does not match: the secret key does not belong to the access key.
    SignatureMismatch,
}

impl std::fmt::Display for CredentialProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::UnknownAccessKey => "it does not know the access key id",
            Self::SignatureMismatch => {
                "the request signature does not match, so the secret key does not belong to the access key"
            }
        })
    }
}

fn certificate_names(subject: Option<&str>, issuer: Option<&str>) -> String {
    match (subject, issuer) {
        (Some(s), Some(i)) => format!(" (certificate subject \"{s}\", issued by \"{i}\")"),
        (Some(s), None) => format!(" (certificate subject \"{s}\")"),
        (None, Some(i)) => format!(" (certificate issued by \"{i}\")"),
        (None, None) => String::new(),
    }
}

impl StoreError {
    /// Whether retrying the same operation may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }
}

/// Opaque bytes under keys. See the module docs for the contract every backend keeps.
#[async_trait]
pub trait BlobStore: Send + Sync + Debug {
    /// Store `data` under `key` atomically and durably.
    async fn put(&self, key: &StoreKey, data: Bytes, opts: PutOptions) -> Result<(), StoreError>;

    /// Read a whole object.
    async fn get(&self, key: &StoreKey) -> Result<Bytes, StoreError>;

    /// Read `range` (byte offsets, end exclusive) of an object.
    async fn get_range(&self, key: &StoreKey, range: Range<u64>) -> Result<Bytes, StoreError>;

    /// Size of an object, or `None` if it does not exist.
    async fn head(&self, key: &StoreKey) -> Result<Option<ObjectMeta>, StoreError>;

    /// All objects whose key starts with `prefix`, sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError>;

    /// Delete an object; deleting a missing key is not an error.
    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError>;

    /// A short human description for messages ("local directory /x", "s3://bucket/prefix").
    fn describe(&self) -> String;

    /// Extend the retention of the existing object `key` to at least `retention` and
    /// return the retention now in force. Never shortens or weakens (see the module docs):
    /// the result has the later date and the stronger mode of the old and the requested
    /// retention. `NotFound` if the key does not exist.
    ///
    /// Default: [`StoreError::Unsupported`] — a backend without Object Lock.
    async fn extend_retention(
        &self,
        key: &StoreKey,
        retention: Retention,
    ) -> Result<Retention, StoreError> {
        let _ = (key, retention);
        Err(StoreError::Unsupported {
            what: format!("Object Lock retention ({})", self.describe()),
        })
    }

    /// The retention of the current version of `key`, `None` if it has none.
    /// `NotFound` if the key does not exist.
    ///
    /// Default: `Ok(None)` — a backend without Object Lock keeps no retention.
    async fn retention(&self, key: &StoreKey) -> Result<Option<Retention>, StoreError> {
        let _ = key;
        Ok(None)
    }

    /// Whether (and how) this store can lock objects; `None` if the backend has no notion
    /// of Object Lock at all.
    ///
    /// Default: `Ok(None)`.
    async fn lock_status(&self) -> Result<Option<LockStatus>, StoreError> {
        Ok(None)
    }

    /// Where this store's objects live, for a server-side copy out of it by another store
    /// ([`BlobStore::copy_from`]); `None` if no other store can copy from it server-side.
    ///
    /// Default: `None`.
    fn copy_source(&self) -> Option<CopySource> {
        None
    }

    /// Copy the object `source_key` of the store described by `source` to `key` in this
    /// store without the bytes passing through this process (see the module docs).
    /// `Ok(true)`: copied, exactly, honouring `opts`. `Ok(false)`: not possible here,
    /// nothing was written; fall back to `get` + `put`.
    ///
    /// Default: `Ok(false)`.
    async fn copy_from(
        &self,
        source: &CopySource,
        source_key: &StoreKey,
        key: &StoreKey,
        opts: PutOptions,
    ) -> Result<bool, StoreError> {
        let _ = (source, source_key, key, opts);
        Ok(false)
    }
}
