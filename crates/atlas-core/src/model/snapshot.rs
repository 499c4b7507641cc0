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
    /// A second link the source keeps for the folder, apart from `delta_link` so a reader
    /// that knows only that one hands Graph a plain delta link (Microsoft Graph: the
    /// mailboxItem delta link of a full-fidelity mail folder, see
    /// [`crate::ports::mail::join_links`]). Absent in older records and for other folders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_delta_link: Option<String>,
    /// Items Graph reported for the folder.
    #[serde(default)]
    pub graph_item_count: Option<u64>,
    /// Items in `items`.
    pub stored_item_count: u64,
    /// Content id of the folder item list: the list itself (a `Vec<ItemMeta>` blob), or,
    /// for a folder of more than `repo::MAX_PIECE_ITEMS` items, the directory of its
    /// pieces (docs/FORMAT.md §5.5). Unchanged folders share it between snapshots. Read
    /// it with `Repository::item_list`, which handles both.
    pub items: ContentId,
    /// How many pieces `items` names when it is a piece directory; absent for a list in
    /// one blob (so such entries are byte for byte what was written before pieces). A
    /// record with a pieced folder has `formatVersion` 5 (`repo::PIECED_FORMAT_VERSION`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_pieces: Option<u32>,
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
    /// What the source learned about the mailbox's folder tree, for the next run to
    /// continue from (absent: the next run lists the tree afresh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder_bookmark: Option<FolderBookmark>,
}

/// A source's bookmark of a mailbox's folder tree, opaque to the core: for Microsoft Graph
/// the `mailFolders/delta` link, the folders it reported and the well-known folder ids, so
/// an unchanged tree costs one request instead of a listing per parent folder and one
/// request per well-known folder (docs/FORMAT.md §5). Kept only in the record that the run
/// which learned it wrote; a source that cannot read it lists the tree afresh.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FolderBookmark(pub serde_json::Value);

impl std::fmt::Debug for FolderBookmark {
    // It holds a delta token: not for logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FolderBookmark(<redacted>)")
    }
}
