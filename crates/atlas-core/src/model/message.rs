//! Message and folder metadata as kept in a snapshot.
//!
//! The raw MIME holds headers and body; these records keep what MIME lacks (folder,
//! read state, flag, categories, Graph ids) plus where the MIME is stored. They live only
//! inside encrypted folder item lists, so subjects and addresses never reach key names.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ids::{ContentId, FolderId, MessageId};

/// A name and address as Graph reports `from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailAddress {
    /// Display name (may be empty).
    #[serde(default)]
    pub name: String,
    /// SMTP address.
    #[serde(default)]
    pub address: String,
}

/// Graph `flag.flagStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FlagStatus {
    /// Not flagged.
    #[default]
    NotFlagged,
    /// Flagged for follow-up.
    Flagged,
    /// Follow-up complete.
    Complete,
    /// A value this build does not know (kept readable rather than failing the list).
    #[serde(other)]
    Unknown,
}

/// Graph `importance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Importance {
    /// Low.
    Low,
    /// Normal (Graph's default).
    #[default]
    Normal,
    /// High.
    High,
    /// A value this build does not know.
    #[serde(other)]
    Unknown,
}

/// One message in a folder item list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageMeta {
    /// Graph immutable id.
    pub id: MessageId,
    /// RFC 5322 Message-ID header, as Graph reports it.
    #[serde(default)]
    pub internet_message_id: Option<String>,
    /// Graph conversation id.
    #[serde(default)]
    pub conversation_id: Option<String>,
    /// Subject (sensitive: only ever stored encrypted).
    #[serde(default)]
    pub subject: Option<String>,
    /// Sender.
    #[serde(default)]
    pub from: Option<EmailAddress>,
    /// `receivedDateTime`.
    #[serde(default)]
    pub received: Option<DateTime<Utc>>,
    /// `sentDateTime`.
    #[serde(default)]
    pub sent: Option<DateTime<Utc>>,
    /// Size Graph reports (bytes), if any.
    #[serde(default)]
    pub size: Option<u64>,
    /// Read state.
    #[serde(default)]
    pub is_read: bool,
    /// Follow-up flag.
    #[serde(default)]
    pub flag_status: FlagStatus,
    /// Importance.
    #[serde(default)]
    pub importance: Importance,
    /// Outlook categories.
    #[serde(default)]
    pub categories: Vec<String>,
    /// Graph `hasAttachments` (false for inline-only attachments, per Graph).
    #[serde(default)]
    pub has_attachments: bool,
    /// Number of attachments seen in the MIME or via Graph.
    #[serde(default)]
    pub attachment_count: u32,
    /// Draft (the one kind of message whose content may change).
    #[serde(default)]
    pub is_draft: bool,
    /// Graph `changeKey`: changes whenever the item changes.
    #[serde(default)]
    pub change_key: Option<String>,
    /// `lastModifiedDateTime`.
    #[serde(default)]
    pub last_modified: Option<DateTime<Utc>>,
    /// The folder the message was in.
    pub parent_folder_id: FolderId,
    /// Where the raw MIME is stored (may be a chunk list; `Repository::read_blob`
    /// reassembles).
    pub mime: ContentId,
    /// Length of the raw MIME in bytes.
    pub mime_size: u64,
    /// SHA-256 of the raw MIME, hex. Kept only in this encrypted list (never in key names)
    /// so export and restore can check what they hand out.
    pub mime_sha256: String,
}

/// A mail folder as recorded in a snapshot, complete enough that restore and export never
/// need the source mailbox to exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FolderRecord {
    /// Graph folder id.
    pub id: FolderId,
    /// Parent folder id (`None` for the root's children's parent, i.e. the message root).
    #[serde(default)]
    pub parent_id: Option<FolderId>,
    /// Display name.
    pub display_name: String,
    /// Names from the top of the tree down to this folder, inclusive.
    pub path: Vec<String>,
    /// Graph well-known name (`inbox`, `sentitems`, …) if this is a well-known folder.
    #[serde(default)]
    pub well_known_name: Option<String>,
    /// Graph `totalItemCount` when the folder was enumerated.
    #[serde(default)]
    pub total_item_count: Option<u64>,
}
