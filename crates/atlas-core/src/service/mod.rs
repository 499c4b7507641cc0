//! Services: the use cases (backup, status, …), each combining the repository with the
//! ports. Options in, summary out; no printing, no environment.

pub mod backup;
pub mod catalog;
pub mod export;
pub mod migrate;
pub mod read;
pub mod replicate;
pub mod restore;
pub mod retention;
pub mod status;
pub mod verify;

pub use backup::{
    BackupOptions, BackupSummary, Cancel, FolderReport, MailboxOutcome, backup_mailbox,
    backup_mailboxes,
};
pub use status::{FolderState, FolderStatus, PendingChanges, StatusReport, mailbox_status};
