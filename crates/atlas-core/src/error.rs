//! The one error type of `atlas-core`.
//!
//! Every failure of the repository names *what* failed and *where*: a wrong passphrase is
//! not a corrupt key blob, a tampered object is not a truncated one, and a missing object
//! is not an unreachable store. Callers (the CLI, services) match on variants, never on
//! message text. Messages never contain secrets (passphrases, keys, subjects, bodies).

use chrono::{DateTime, Utc};

use crate::model::{ContentId, SnapshotId};
use crate::ports::StoreError;

/// Result alias for `atlas-core`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the core library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store holds no Atlas repository (no wrapped key, or no repository config).
    #[error("no repository at {store}; run `atlas init` to create one")]
    NotInitialized {
        /// Store description (never contains credentials).
        store: String,
    },
    /// The wrapped data key did not open with this passphrase. AES-GCM cannot tell a wrong
    /// passphrase from an altered salt or tag, so the message names both.
    #[error("wrong passphrase for tenant {tenant} (or the wrapped key {key} was altered)")]
    WrongPassphrase {
        /// Tenant id the key was opened for.
        tenant: String,
        /// Store key of the wrapped key blob.
        key: String,
    },
    /// An object is structurally invalid: bad magic, bad header, impossible lengths,
    /// undecodable plaintext.
    #[error("object {key} is corrupt: {reason}")]
    Corrupt {
        /// Store key of the object.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// AEAD authentication failed on an object: its bytes were altered, or it was moved or
    /// swapped with another object (the associated data binds each object to its name).
    #[error("object {key} failed authentication (altered, or swapped with another object)")]
    AuthenticationFailed {
        /// Store key of the object (for a blob in a pack: the pack key).
        key: String,
    },
    /// An object is shorter than its header says.
    #[error("object {key} is truncated: {actual} bytes, expected {expected}")]
    Truncated {
        /// Store key.
        key: String,
        /// Length declared by the format.
        expected: u64,
        /// Length found.
        actual: u64,
    },
    /// An object that the repository refers to does not exist.
    #[error("object {key} is missing from the store")]
    Missing {
        /// Store key.
        key: String,
    },
    /// Decryption succeeded but the plaintext does not match its recorded checksum or its
    /// content id.
    #[error("content {id} in {key} does not match its checksum")]
    ChecksumMismatch {
        /// Store key (pack) holding the content.
        key: String,
        /// The content id that was asked for.
        id: ContentId,
    },
    /// A content id is not in the repository index.
    #[error("content {id} is not in the repository index")]
    ContentNotFound {
        /// The unknown id.
        id: ContentId,
    },
    /// No snapshot with this id.
    #[error("snapshot {id} not found")]
    SnapshotNotFound {
        /// The unknown id.
        id: SnapshotId,
    },
    /// The repository (or one object) was written by a newer format than this build reads.
    #[error("unsupported {what} version {found} (this build reads up to {supported})")]
    UnsupportedVersion {
        /// What carries the version (repository, key blob, pack …).
        what: String,
        /// Version found.
        found: u32,
        /// Highest version supported.
        supported: u32,
    },
    /// Another writer holds the mailbox lease and it has not expired.
    #[error(
        "mailbox is being backed up by {owner} (lease valid until {expires}); if that process is gone, `atlas unlock` removes its lease once it expires, `atlas unlock --remove-all` at once"
    )]
    LeaseHeld {
        /// Owner string of the holder (host/pid or similar; not secret).
        owner: String,
        /// When the lease expires unless renewed.
        expires: DateTime<Utc>,
    },
    /// The session's lease was broken or taken over by someone else; nothing more may be
    /// committed under it.
    #[error("the mailbox lease was lost (broken or taken over by {owner})")]
    LeaseLost {
        /// Owner now recorded in the lease, or "nobody" if it is gone.
        owner: String,
    },
    /// A caller-supplied value is invalid (KDF parameters below the floor, empty tenant …).
    /// The reason is the whole message: it is shown to users as is, without an internal
    /// prefix.
    #[error("{reason}")]
    InvalidInput {
        /// Why it was refused.
        reason: String,
    },
    /// The storage backend failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A CPU task (KDF, compression, encryption) panicked or was cancelled.
    #[error("background task failed: {reason}")]
    Task {
        /// Join error description.
        reason: String,
    },
    /// The mail source (Microsoft Graph) failed in a way that stops the whole run
    /// (sign-in, permission, unknown mailbox).
    #[error(transparent)]
    Source(#[from] crate::ports::SourceError),
    /// The run was stopped at once (second Ctrl+C); nothing was committed.
    #[error("interrupted: stopped before committing; the next run resumes from the last snapshot")]
    Interrupted,
    /// Repository maintenance (prune) holds the repository lock: backups do not start
    /// while it may delete data they would deduplicate against. A lock whose holder died
    /// is removed by the next backup or prune once stale (expired, or its process gone).
    #[error(
        "repository maintenance (prune) by {owner} is running (lock valid until {expires}); if that process is gone, `atlas unlock` removes the lock once it expires, `atlas unlock --remove-all` at once"
    )]
    MaintenanceRunning {
        /// Owner string of the prune run.
        owner: String,
        /// When its lock expires unless renewed.
        expires: DateTime<Utc>,
    },
    /// No mailbox with this address in the repository.
    #[error("mailbox {mailbox} is not in the repository")]
    MailboxNotFound {
        /// The address asked for.
        mailbox: String,
    },
    /// No message matches the reference in the snapshot.
    #[error("no message matches {reference}")]
    MessageNotFound {
        /// The reference given (message id, number or prefix).
        reference: String,
    },
    /// A short reference (id prefix) matches more than one object.
    #[error("reference {reference} is ambiguous: it matches {matches} objects")]
    AmbiguousReference {
        /// The reference given.
        reference: String,
        /// How many objects it matches.
        matches: usize,
    },
    /// The store holds a TypeScript Atlas 1.x repository and the operation would write to
    /// it; Atlas reads that format but never writes it (migrate it instead).
    #[error(
        "{store} is a TypeScript Atlas 1.x repository; Atlas reads it but never writes into the old format"
    )]
    V1ReadOnly {
        /// Store description (never contains credentials).
        store: String,
    },
    /// The repository is damaged in a way a writer must not paper over (its config is gone
    /// although it holds data); `atlas repair` heals it.
    #[error("the repository needs repair: {reason}; run atlas repair")]
    NeedsRepair {
        /// What is wrong.
        reason: String,
    },
    /// An item's readable JSON cannot be written in an export format (a required field
    /// is missing or malformed). The reason names the field, never the item's content.
    #[error("cannot write {format}: {reason}")]
    Convert {
        /// The format (`iCalendar`, `vCard`, `JSON`).
        format: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The output path exists and overwriting was not asked for.
    #[error("output {path} already exists")]
    OutputExists {
        /// The path (as given by the user).
        path: String,
    },
}

impl Error {
    /// Whether retrying the same operation may succeed (only transient storage failures).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Store(e) if e.is_retryable())
    }

    /// Whether the error means the stored bytes are damaged (as opposed to a missing
    /// object, a wrong passphrase or an I/O failure). Verify reports count these.
    pub fn is_integrity_failure(&self) -> bool {
        matches!(
            self,
            Self::Corrupt { .. }
                | Self::AuthenticationFailed { .. }
                | Self::Truncated { .. }
                | Self::ChecksumMismatch { .. }
        )
    }

    pub(crate) fn corrupt(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Corrupt {
            key: key.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Self::InvalidInput {
            reason: reason.into(),
        }
    }

    pub(crate) fn task(e: &tokio::task::JoinError) -> Self {
        Self::Task {
            reason: e.to_string(),
        }
    }

    /// Translate a store error on a required object: `NotFound` becomes [`Error::Missing`]
    /// and `InvalidRange` becomes [`Error::Truncated`].
    pub(crate) fn from_store_required(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { key } => Self::Missing { key },
            StoreError::InvalidRange { key, end, size, .. } => Self::Truncated {
                key,
                expected: end,
                actual: size,
            },
            other => Self::Store(other),
        }
    }
}
