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
    /// A long step that is not a mailbox run started (backup and restore report per
    /// mailbox and folder instead).
    TaskStarted {
        /// Which step.
        task: Task,
        /// How many units it will process ([`Task::unit`]), when known up front.
        total: Option<u64>,
        /// How many bytes it will read or write, when known up front.
        bytes: Option<u64>,
    },
    /// A task processed more units (an increment, not a running total).
    TaskProgress {
        /// Which step.
        task: Task,
        /// Units processed since the last event.
        done: u64,
        /// Bytes read or written for them.
        bytes: u64,
    },
    /// A task finished (also after a failure: the bar goes away either way).
    TaskDone {
        /// Which step.
        task: Task,
    },
}

/// The long steps reported through [`Event::TaskStarted`] and friends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Task {
    /// `verify`: opening snapshot records and folder lists (unit: snapshots).
    VerifySnapshots,
    /// `verify`: reading packs and checking the blobs in them (unit: packs).
    VerifyPacks,
    /// `save`: writing messages to the export (unit: messages).
    Export,
    /// prune: reading every snapshot's folder lists to find what is still needed (unit:
    /// folder lists).
    PrunePlan,
    /// prune: copying live blobs out of mostly-dead packs (unit: packs).
    Repack,
    /// prune and `delete`: deleting objects (unit: objects).
    Delete,
    /// `replicate` and `rehydrate`: copying objects to the other store (unit: objects).
    Copy,
    /// `verify` of a TypeScript Atlas 1.x repository: reading and checking its message and
    /// attachment objects, one mailbox at a time (unit: objects).
    VerifyV1,
}

impl Task {
    /// What `total` and `done` count, for display.
    pub fn unit(self) -> &'static str {
        match self {
            Self::VerifySnapshots => "snapshots",
            Self::VerifyPacks | Self::Repack => "packs",
            Self::Export => "messages",
            Self::PrunePlan => "folder lists",
            Self::Delete | Self::Copy | Self::VerifyV1 => "objects",
        }
    }

    /// A short present-tense label (`verifying packs`), for display.
    pub fn label(self) -> &'static str {
        match self {
            Self::VerifySnapshots => "reading snapshots",
            Self::VerifyPacks => "verifying packs",
            Self::Export => "exporting",
            Self::PrunePlan => "finding unused data",
            Self::Repack => "repacking",
            Self::Delete => "deleting",
            Self::Copy => "copying",
            Self::VerifyV1 => "checking Atlas 1.x objects",
        }
    }
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
