//! Restore-side writes.

use atlas_core::model::FolderId;
use atlas_graph::{GraphError, NewFileAttachment, NewMessage, UploadSessionRequest};
use bytes::Bytes;

use crate::{client, mailbox, mailbox_user, small_tenant, start};

const MARKER: &str = "String {00020386-0000-0000-C000-000000000046} Name AtlasRestoreId";

#[tokio::test]
async fn restore_writes_folder_message_attachments_and_find_by_marker() {
    let sim = start(small_tenant()).await;
    let c = client(&sim);
    let user = mailbox_user(&sim);
    let mbx = mailbox(&user);

    let root = c
        .create_folder(&mbx, None, "Restore-test")
        .await
        .expect("folder");
    assert!(!root.existed);
    let again = c
        .create_folder(&mbx, None, "Restore-test")
        .await
        .expect("folder again");
    assert!(again.existed, "a conflict returns the existing folder");
    assert_eq!(again.folder.id, root.folder.id);
    let child = c
        .create_folder(&mbx, Some(&root.folder.id), "Child")
        .await
        .expect("child");

    let json = serde_json::json!({
        "subject": "restored",
        "body": {"contentType": "text", "content": "hello"},
        "isRead": true,
        "singleValueExtendedProperties": [
            {"id": "Integer 0x0E07", "value": "1"},
            {"id": "SystemTime 0x0E06", "value": "2024-01-02T03:04:05Z"},
            {"id": MARKER, "value": "restore-1"}
        ]
    });
    let created = c
        .create_message(&mbx, Some(&child.folder.id), &NewMessage::Json(json))
        .await
        .expect("create message");
    let found = c
        .find_messages_by_property(&mbx, &child.folder.id, MARKER, "restore-1")
        .await
        .expect("find");
    assert_eq!(found, vec![created.id.clone()]);
    assert!(
        c.find_messages_by_property(&mbx, &child.folder.id, MARKER, "restore-2")
            .await
            .expect("find")
            .is_empty()
    );

    let small = Bytes::from(vec![7u8; 10_000]);
    c.add_file_attachment(
        &mbx,
        &created.id,
        &NewFileAttachment {
            name: "small.bin".into(),
            content_type: Some("application/octet-stream".into()),
            content: small,
            is_inline: false,
            content_id: None,
        },
    )
    .await
    .expect("small attachment");

    let large: Bytes = (0..(9 * 1024 * 1024 + 123))
        .map(|i: usize| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    let session = c
        .create_upload_session(
            &mbx,
            &created.id,
            &UploadSessionRequest {
                name: "large.bin".into(),
                size: large.len() as u64,
                content_type: Some("application/octet-stream".into()),
                is_inline: false,
                content_id: None,
            },
        )
        .await
        .expect("session");
    c.upload_attachment(&mbx, &session, &large)
        .await
        .expect("upload");

    let atts = c
        .list_attachments(&mbx, &created.id)
        .await
        .expect("attachments");
    let mut sizes: Vec<u64> = atts.iter().filter_map(|a| a.size).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![10_000, large.len() as u64]);

    let dump = sim.dump_mailbox(&user.id).expect("dump");
    let m = dump
        .messages
        .iter()
        .find(|m| m.immutable_id == created.id.as_str() || m.id == created.id.as_str())
        .expect("restored message in dump");
    assert!(
        !m.is_draft,
        "PR_MESSAGE_FLAGS at creation makes it a non-draft"
    );
    assert_eq!(m.folder_path, "Restore-test/Child");
}

#[tokio::test]
async fn oversized_bodies_are_refused_before_sending() {
    let sim = start(small_tenant()).await;
    let c = client(&sim);
    let user = mailbox_user(&sim);
    let mime = Bytes::from(vec![b'a'; 3_500_000]);
    let err = c
        .create_message(
            &mailbox(&user),
            Some(&FolderId::from("inbox")),
            &NewMessage::Mime(mime),
        )
        .await
        .expect_err("too large");
    assert!(matches!(err, GraphError::TooLarge { .. }), "{err:?}");
    assert_eq!(sim.counters().kind("create_message").requests, 0);
}
