//! The v1 manifest JSON (`manifests/<mailbox>/<snapshot id>.json`, decrypted).
//!
//! Fields arrived over the tool's history (`folder_id` in March 2026, `content_id` in
//! 1.2.0) and its successor added more (`payload_format`, `received_at`, `folder_path` …),
//! so every field except the entry's object id and storage key has a default and unknown
//! fields are ignored.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A decrypted v1 manifest: the messages seen by one run (a delta, not a full state).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct V1Manifest {
    /// Manifest id (a second UUID, unused).
    #[serde(default)]
    pub id: String,
    /// Always `""` as written by 1.3.0.
    #[serde(default)]
    pub tenant_id: String,
    /// Mailbox segment used in keys.
    #[serde(default)]
    pub mailbox_id: String,
    /// Snapshot id (also the file name).
    #[serde(default)]
    pub snapshot_id: String,
    /// When the manifest was built (end of the run), ISO 8601.
    #[serde(default)]
    pub created_at: String,
    /// Carried forward with `max()`; not the number of entries.
    #[serde(default)]
    pub total_objects: u64,
    /// Logical sum of entry and attachment sizes.
    #[serde(default)]
    pub total_size_bytes: u64,
    /// Folder id → Graph delta link of the `$select`ed v1 query.
    #[serde(default)]
    pub delta_links: BTreeMap<String, String>,
    /// The messages of this run.
    #[serde(default)]
    pub entries: Vec<V1Entry>,
}

/// One message of a manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct V1Entry {
    /// Graph message id (mutable: a moved message gets a new one).
    pub object_id: String,
    /// `data/<mailbox>/<sha256>`.
    pub storage_key: String,
    /// SHA-256 hex of the plaintext JSON (equals the key suffix).
    #[serde(default)]
    pub checksum: String,
    /// Bytes of the plaintext JSON.
    #[serde(default)]
    pub size_bytes: u64,
    /// Subject (sensitive; never logged).
    #[serde(default)]
    pub subject: Option<String>,
    /// Graph `parentFolderId` (absent in manifests written before March 2026).
    #[serde(default)]
    pub folder_id: Option<String>,
    /// Folder path, written by the tool's 2.x successor only.
    #[serde(default)]
    pub folder_path: Option<String>,
    /// Received time, written by the 2.x successor only.
    #[serde(default)]
    pub received_at: Option<String>,
    /// Payload format, written by the 2.x successor only (absent = Graph JSON).
    #[serde(default)]
    pub payload_format: Option<String>,
    /// File attachments (absent when the message had none).
    #[serde(default)]
    pub attachments: Vec<V1AttachmentEntry>,
}

/// One file attachment of an entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct V1AttachmentEntry {
    /// Graph attachment id.
    #[serde(default)]
    pub attachment_id: String,
    /// File name (sensitive).
    #[serde(default)]
    pub name: String,
    /// MIME type (`application/octet-stream` by default).
    #[serde(default)]
    pub content_type: String,
    /// Graph's `size` (larger than the byte count).
    #[serde(default)]
    pub size_bytes: u64,
    /// `attachments/<mailbox>/<sha256>`, or `""` when the content was never stored.
    #[serde(default)]
    pub storage_key: String,
    /// SHA-256 hex of the bytes, or `""`.
    #[serde(default)]
    pub checksum: String,
    /// Inline (referenced from the HTML body by Content-ID).
    #[serde(default)]
    pub is_inline: bool,
    /// Content-ID without angle brackets (since 1.2.0; absent when empty).
    #[serde(default)]
    pub content_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_and_new_manifests_parse() {
        let old: V1Manifest = serde_json::from_str(
            r#"{"snapshot_id":"s","created_at":"2026-01-01T00:00:00.000Z",
                "entries":[{"object_id":"m","storage_key":"data/a/b","checksum":"b"}]}"#,
        )
        .unwrap();
        assert_eq!(old.entries[0].folder_id, None);
        assert!(old.entries[0].attachments.is_empty());
        let new: V1Manifest = serde_json::from_str(
            r#"{"snapshot_id":"s","entries":[{"object_id":"m","storage_key":"k",
                "folder_path":"Inbox/Projects","payload_format":"mime","received_at":"x",
                "object_lock":{"mode":"GOVERNANCE"}}],"object_lock":{}}"#,
        )
        .unwrap();
        assert_eq!(
            new.entries[0].folder_path.as_deref(),
            Some("Inbox/Projects")
        );
    }
}
