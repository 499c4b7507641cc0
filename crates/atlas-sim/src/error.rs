//! The crate's single error type.

use std::net::SocketAddr;

/// Errors the simulator reports to the code that embeds it (tests, the CLI, benchmarks).
///
/// HTTP-level failures seen by Graph clients are *responses*, not errors of this type; these
/// variants describe misuse of the in-process API or a failure to run the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The listening socket could not be bound (port in use, no permission).
    #[error("cannot bind simulator to {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The HTTP server stopped with an I/O error.
    #[error("simulator server failed: {0}")]
    Serve(#[source] std::io::Error),
    /// An admin call named a user (by id or UPN) that does not exist.
    #[error("unknown user {0:?}")]
    UnknownUser(String),
    /// An admin call named a user that exists but has no mailbox.
    #[error("user {0:?} has no mailbox")]
    NoMailbox(String),
    /// An admin call named a folder (id, well-known name or path) that does not exist.
    #[error("unknown folder {folder:?} in mailbox {user:?}")]
    UnknownFolder { user: String, folder: String },
    /// An admin call named a message id that does not exist (or no longer exists).
    #[error("unknown message {message:?} in mailbox {user:?}")]
    UnknownMessage { user: String, message: String },
    /// A folder with that name already exists under the same parent.
    #[error("folder {name:?} already exists in mailbox {user:?}")]
    FolderExists { user: String, name: String },
    /// The admin request was malformed (bad JSON, bad key material, forbidden operation).
    #[error("invalid admin request: {0}")]
    InvalidRequest(String),
}

impl SimError {
    /// Whether retrying the same call could succeed; only server I/O is transient.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SimError::Serve(_))
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = SimError> = std::result::Result<T, E>;
