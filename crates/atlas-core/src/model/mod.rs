//! The domain model: ids, mailboxes, folders, message metadata and snapshot records.
//!
//! These are plain values (serde) with no I/O. The repository stores them encrypted; the
//! services build them from Microsoft Graph data. Every id is a newtype so that a folder
//! id can never be passed where a message id is expected.

mod ids;
mod message;
mod snapshot;

pub use ids::{ContentId, FolderId, MailboxId, MessageId, SnapshotId};
pub use message::{EmailAddress, FlagStatus, FolderRecord, Importance, MessageMeta};
pub use snapshot::{FolderSnapshot, ItemError, SnapshotRecord, SnapshotStatus};
