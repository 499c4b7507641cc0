//! Progress as an output port: services emit typed events, the CLI renders them as a live
//! dashboard, plain lines or JSON lines. Progress never goes through logs.

use std::fmt::Debug;
use std::time::Duration;

/// One progress event. Folder paths are joined with `/`; subjects never appear here.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A mailbox run started.
    MailboxStarted {
        /// Mailbox address.
        mailbox: String,
        /// Number of folders that will be processed.
        folders: usize,
    },
    /// A folder started.
    FolderStarted {
        /// Mailbox address.
        mailbox: String,
        /// Folder path.
        folder: String,
        /// Items Graph reports in the folder.
        expected: u64,
    },
    /// Items were processed (stored, reused or updated).
    Items {
        /// Mailbox address.
        mailbox: String,
        /// Folder path.
        folder: String,
        /// How many items.
        count: u64,
        /// Bytes of MIME downloaded for them.
        bytes: u64,
    },
    /// An item failed and was recorded as an error.
    ItemFailed {
        /// Mailbox address.
        mailbox: String,
        /// Folder path.
        folder: String,
        /// Item id (never the subject).
        item: String,
        /// Why.
        reason: String,
    },
    /// The source asked us to wait (throttling).
    Throttled {
        /// Mailbox address.
        mailbox: String,
        /// How long.
        wait: Duration,
    },
    /// A folder finished.
    FolderDone {
        /// Mailbox address.
        mailbox: String,
        /// Folder path.
        folder: String,
        /// Items in the snapshot for this folder.
        stored: u64,
    },
    /// A mailbox run finished.
    MailboxDone {
        /// Mailbox address.
        mailbox: String,
        /// Whether the snapshot is complete.
        complete: bool,
    },
    /// Something the user should know (e.g. an expired delta link forcing a full enumeration).
    Warning {
        /// Mailbox address, when it concerns one.
        mailbox: Option<String>,
        /// Plain-language message.
        message: String,
    },
}

/// Receives progress events. Implementations must be cheap and never block for long.
pub trait Reporter: Send + Sync + Debug {
    /// Handle one event.
    fn report(&self, event: Event);
}

/// Discards every event (library use without progress, tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct NullReporter;

impl Reporter for NullReporter {
    fn report(&self, _event: Event) {}
}
