//! The domain model: ids, items of every kind, folders and snapshot records.
//!
//! These are plain values (serde) with no I/O. The repository stores them encrypted; the
//! services build them from what the source ports report. Every id is a newtype so that a
//! folder id can never be passed where an item id is expected, and the ports speak these
//! types: adapters map their wire formats to them once, at their edge.

mod ids;
mod item;
mod snapshot;

pub use ids::{ContentId, FolderId, ItemId, MailboxId, MessageId, SnapshotId};
pub use item::{
    ContentKind, ContentRef, EmailAddress, Fidelity, FlagStatus, FolderRecord, Importance,
    ItemKind, ItemMeta, KindSet, MessageMeta, UnknownFidelity, UnknownKind,
};
pub use snapshot::{FolderBookmark, FolderSnapshot, ItemError, SnapshotRecord, SnapshotStatus};

#[cfg(test)]
mod golden {
    //! The JSON of mail records is pinned byte for byte: a folder item list's content id is
    //! a keyed hash of this JSON, so any change in it would split dedup with every
    //! repository written before (and change docs/FORMAT.md §5.3, §5.5).

    use super::*;

    const MESSAGE_JSON: &str = r#"{"id":"AAMkAD=","internetMessageId":"<m1@x>","conversationId":"c1","subject":"Hello","from":{"name":"Megan","address":"megan@contoso.com"},"received":"2026-03-10T14:30:22Z","sent":"2026-03-10T14:30:00Z","size":1234,"isRead":true,"flagStatus":"flagged","importance":"high","categories":["Blue"],"hasAttachments":true,"attachmentCount":2,"isDraft":false,"changeKey":"CQAAAB","lastModified":"2026-03-10T15:00:00Z","parentFolderId":"inbox-id","mime":"abababababababababababababababababababababababababababababababab","mimeSize":1234,"mimeSha256":"00ff"}"#;

    const FOLDER_JSON: &str = r#"{"id":"inbox-id","parentId":"root-id","displayName":"Inbox","path":["Inbox"],"wellKnownName":"inbox","totalItemCount":12}"#;

    #[test]
    fn a_mail_item_record_is_written_exactly_as_before() {
        let m: MessageMeta = serde_json::from_str(MESSAGE_JSON).unwrap();
        assert_eq!(m.id.as_str(), "AAMkAD=");
        assert_eq!(m.mime, ContentId::from_bytes([0xab; 32]));
        assert!(m.is_read && m.has_attachments);
        assert_eq!(serde_json::to_string(&m).unwrap(), MESSAGE_JSON);
    }

    #[test]
    fn a_mail_folder_record_is_written_exactly_as_before() {
        let f: FolderRecord = serde_json::from_str(FOLDER_JSON).unwrap();
        assert_eq!(f.id.as_str(), "inbox-id");
        assert_eq!(serde_json::to_string(&f).unwrap(), FOLDER_JSON);
    }

    #[test]
    fn a_minimal_record_of_an_early_build_still_reads() {
        // Only the required fields, as the first version-2 builds could leave them.
        let m: MessageMeta = serde_json::from_str(
            r#"{"id":"x","parentFolderId":"f","mime":"abababababababababababababababababababababababababababababababab","mimeSize":1,"mimeSha256":"00"}"#,
        )
        .unwrap();
        assert!(!m.is_read);
        assert_eq!(m.flag_status, FlagStatus::NotFlagged);
    }
}
