//! Services: the use cases (backup, status, …), each combining the repository with the
//! ports. Options in, summary out; no printing, no environment.

pub mod backup;
pub mod status;

pub use backup::{BackupOptions, BackupSummary, Cancel, FolderReport, backup_mailbox};
pub use status::{FolderState, FolderStatus, StatusReport, mailbox_status};
