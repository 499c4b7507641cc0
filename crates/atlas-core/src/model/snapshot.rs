//! Snapshot records: the complete state of one mailbox at the end of one run.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ids::{ContentId, ItemId, MailboxId};
use super::item::FolderRecord;

/// Whether a run stored everything it set out to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SnapshotStatus {
    /// Every folder was enumerated and every item stored or recorded as an item error.
    Complete,
    /// The run was interrupted; the snapshot holds exactly what was stored.
    Partial,
}

/// One item that could not be stored, kept so the next run retries it and the
/// completeness report can explain the gap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemError {
    /// The item, if the failure was about one item (the field keeps its mail-era name on
    /// disk: `messageId`).
    #[serde(default)]
    pub message_id: Option<ItemId>,
    /// Human-readable reason (never contains the subject or body).
    pub reason: String,
}

/// One folder of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FolderSnapshot {
    /// The folder as it was.
    pub folder: FolderRecord,
    /// Graph delta link to resume from; saved only when everything it covers is stored.
    #[serde(default)]
    pub delta_link: Option<String>,
    /// Items Graph reported for the folder.
    #[serde(default)]
    pub graph_item_count: Option<u64>,
    /// Items in `items`.
    pub stored_item_count: u64,
    /// Content id of the folder item list (a `Vec<ItemMeta>` blob). Unchanged folders
    /// share it between snapshots.
    pub items: ContentId,
    /// Per-item failures.
    #[serde(default)]
    pub errors: Vec<ItemError>,
}

/// The record of one mailbox run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotRecord {
    /// The mailbox.
    pub mailbox: MailboxId,
    /// When the run started (also in the record's key name).
    pub started: DateTime<Utc>,
    /// When the run finished.
    pub finished: DateTime<Utc>,
    /// Tool name and version, e.g. `atlas 0.1.0`.
    pub tool: String,
    /// Repository format version the record was written with.
    pub format_version: u32,
    /// Complete or partial.
    pub status: SnapshotStatus,
    /// Every folder.
    pub folders: Vec<FolderSnapshot>,
}
