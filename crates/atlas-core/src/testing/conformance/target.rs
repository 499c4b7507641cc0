//! The target port's conformance checks (see the [module docs](super) and the contract in
//! [`crate::ports::target`]).

use std::sync::Arc;

use bytes::Bytes;
use chrono::{TimeZone, Utc};
use sha2::{Digest, Sha256};

use super::{FixtureAttachment, TargetFixture};
use crate::model::{EmailAddress, FlagStatus, FolderId, Importance, ItemId, MailboxId};
use crate::ports::{
    MailTarget, RestoreAttachment, RestoreBody, RestoreMark, RestoreMessage, TargetError,
    TargetItem,
};

/// Run every check, one after the other.
pub async fn run_all(fixture: &dyn TargetFixture) {
    mailboxes_resolve_and_the_probe_writes_nothing(fixture).await;
    folders_are_idempotent(fixture).await;
    marks_and_completion(fixture).await;
    restored_messages_hold_what_was_sent(fixture).await;
}

async fn resolve(fixture: &dyn TargetFixture) -> (Arc<dyn MailTarget>, MailboxId) {
    let target = fixture.target();
    let mailbox = target
        .resolve_mailbox(&fixture.mailbox())
        .await
        .expect("the fixture's mailbox resolves");
    (target, mailbox)
}

/// A root folder of the check's own, so checks never see each other's writes.
async fn root(target: &dyn MailTarget, mailbox: &MailboxId, check: &str) -> (FolderId, String) {
    let name = format!(
        "Atlas conformance {check} {}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let folder = target
        .ensure_folder(mailbox, None, &name)
        .await
        .expect("ensure_folder at the top");
    (folder.id, name)
}

fn message(subject: &str) -> RestoreMessage {
    let at = |h, m| Utc.with_ymd_and_hms(2025, 11, 3, h, m, 7).single();
    RestoreMessage {
        subject: subject.to_owned(),
        body: RestoreBody::Html("<p>conformance</p>".into()),
        from: Some(EmailAddress {
            name: "Conformance".into(),
            address: "conformance@contoso.com".into(),
        }),
        sender: None,
        to: vec![EmailAddress {
            name: String::new(),
            address: "someone@contoso.com".into(),
        }],
        cc: Vec::new(),
        bcc: Vec::new(),
        reply_to: Vec::new(),
        received: at(9, 31),
        sent: at(9, 30),
        internet_message_id: Some(format!("<{}@conformance>", uuid::Uuid::new_v4().simple())),
        in_reply_to: None,
        references: None,
        importance: Importance::Normal,
        is_read: true,
        is_draft: false,
        flag: FlagStatus::NotFlagged,
        categories: Vec::new(),
        headers: Vec::new(),
    }
}

fn file(name: &str, len: usize, seed: u8) -> RestoreAttachment {
    RestoreAttachment::File {
        name: name.to_owned(),
        content_type: Some("application/octet-stream".into()),
        bytes: Bytes::from(
            (0..len)
                .map(|i| (i % 251) as u8 ^ seed)
                .collect::<Vec<u8>>(),
        ),
        is_inline: false,
        content_id: None,
    }
}

fn mark(source: &str) -> RestoreMark {
    RestoreMark {
        source_id: ItemId::new(source),
        run_id: "conformance-run".into(),
    }
}

fn find<'a>(list: &'a [TargetItem], source: &str) -> &'a TargetItem {
    list.iter()
        .find(|m| m.source_id.as_ref().map(ItemId::as_str) == Some(source))
        .unwrap_or_else(|| {
            panic!("a created message is listed with its restore mark ({source}): {list:?}")
        })
}

/// Mailboxes resolve by address; an unknown one is `MailboxNotFound`, a user without a
/// mailbox `MailboxNotEnabled` (both stop the restore); the write probe passes and
/// writes nothing.
pub async fn mailboxes_resolve_and_the_probe_writes_nothing(fixture: &dyn TargetFixture) {
    let (target, mailbox) = resolve(fixture).await;
    assert_eq!(mailbox.address(), fixture.mailbox().to_lowercase());
    match target.resolve_mailbox(&fixture.unknown_mailbox()).await {
        Err(e @ TargetError::MailboxNotFound(_)) => assert!(e.is_fatal()),
        other => panic!("an unknown target mailbox is MailboxNotFound, not {other:?}"),
    }
    if let Some(user) = fixture.user_without_mailbox() {
        match target.resolve_mailbox(&user).await {
            Err(e @ TargetError::MailboxNotEnabled(_)) => assert!(e.is_fatal()),
            other => panic!("a user without a mailbox is MailboxNotEnabled, not {other:?}"),
        }
    }
    let before = fixture.message_count(&fixture.mailbox());
    target
        .check_write_access(&mailbox)
        .await
        .expect("the write probe passes on a writable mailbox");
    assert_eq!(
        fixture.message_count(&fixture.mailbox()),
        before,
        "the write probe writes nothing"
    );
}

/// `ensure_folder` returns the folder that is there (any case) instead of a second one,
/// at the top and below; the inbox is found by its well-known name.
pub async fn folders_are_idempotent(fixture: &dyn TargetFixture) {
    let (target, mailbox) = resolve(fixture).await;
    let (top, name) = root(target.as_ref(), &mailbox, "folders").await;
    let again = target
        .ensure_folder(&mailbox, None, &name.to_uppercase())
        .await
        .expect("ensure_folder again");
    assert_eq!(
        again.id, top,
        "a folder that exists is returned, not created twice"
    );
    let child = target
        .ensure_folder(&mailbox, Some(&top), "Child")
        .await
        .expect("ensure_folder below");
    let child_again = target
        .ensure_folder(&mailbox, Some(&top), "child")
        .await
        .expect("ensure_folder below again");
    assert_eq!(child.id, child_again.id);
    assert_ne!(child.id, top);
    let inbox = target
        .well_known_folder(&mailbox, "inbox")
        .await
        .expect("well_known_folder");
    assert!(inbox.is_some(), "the inbox is found by its well-known name");
}

/// A created message is listed with its mark; with `complete` it is complete at once,
/// without it only after `mark_complete` (idempotent), and the attachments added between
/// are listed.
pub async fn marks_and_completion(fixture: &dyn TargetFixture) {
    let (target, mailbox) = resolve(fixture).await;
    let (folder, _) = root(target.as_ref(), &mailbox, "marks").await;
    let whole = message("conformance: complete at once");
    target
        .create_message(&mailbox, &folder, &whole, &[], &mark("conf-a"), true)
        .await
        .expect("create a complete message");
    let partial = message("conformance: completed later");
    let small = file("small.bin", 2_000, 1);
    let id = target
        .create_message(
            &mailbox,
            &folder,
            &partial,
            std::slice::from_ref(&small),
            &mark("conf-b"),
            false,
        )
        .await
        .expect("create an incomplete message with an attachment in the request");
    let listed = target
        .list_items(&mailbox, &folder)
        .await
        .expect("list_items");
    assert!(
        find(&listed, "conf-a").complete,
        "complete in the create request"
    );
    let b = find(&listed, "conf-b");
    assert!(!b.complete, "not complete before mark_complete");
    assert_eq!(b.id, id, "listed under the id create returned");
    target
        .add_attachment(&mailbox, &id, &file("later.bin", 5_000, 2))
        .await
        .expect("add_attachment");
    let mut names: Vec<String> = target
        .list_attachments(&mailbox, &id)
        .await
        .expect("list_attachments")
        .into_iter()
        .map(|a| a.name)
        .collect();
    names.sort();
    assert_eq!(names, ["later.bin", "small.bin"]);
    target
        .mark_complete(&mailbox, &id, &partial)
        .await
        .expect("mark_complete");
    target
        .mark_complete(&mailbox, &id, &partial)
        .await
        .expect("mark_complete is idempotent");
    let listed = target
        .list_items(&mailbox, &folder)
        .await
        .expect("list_items");
    assert!(
        find(&listed, "conf-b").complete,
        "complete after mark_complete"
    );
    assert_eq!(listed.len(), 2, "nothing was created twice");
}

/// What the tenant holds is what was sent: subject, received mail (not a draft) with its
/// read state and both dates, flag and categories, attachment bytes, an inline image
/// still inline, an attached message still an item attachment.
pub async fn restored_messages_hold_what_was_sent(fixture: &dyn TargetFixture) {
    let (target, mailbox) = resolve(fixture).await;
    let (folder, name) = root(target.as_ref(), &mailbox, "fields").await;
    let mut m = message("conformance: fields");
    m.is_read = false;
    m.flag = FlagStatus::Flagged;
    m.categories = vec!["Blue category".into()];
    let attachment = file("data.bin", 4_321, 9);
    let image = RestoreAttachment::File {
        name: "logo.png".into(),
        content_type: Some("image/png".into()),
        bytes: Bytes::from(vec![7u8; 1_500]),
        is_inline: true,
        content_id: Some("logo@conformance".into()),
    };
    let embedded = RestoreAttachment::Item {
        name: "Attached message".into(),
        message: Box::new(message("conformance: embedded")),
        raw: Bytes::from_static(b"Subject: conformance: embedded\r\n\r\nx"),
    };
    let id = target
        .create_message(
            &mailbox,
            &folder,
            &m,
            std::slice::from_ref(&attachment),
            &mark("conf-fields"),
            false,
        )
        .await
        .expect("create");
    for a in [&image, &embedded] {
        target
            .add_attachment(&mailbox, &id, a)
            .await
            .expect("add_attachment");
    }
    target
        .mark_complete(&mailbox, &id, &m)
        .await
        .expect("mark_complete");
    let held = fixture.messages_in(&fixture.mailbox(), &name);
    assert_eq!(held.len(), 1, "one message in {name}");
    let got = &held[0];
    assert_eq!(got.subject, m.subject);
    assert!(
        !got.is_draft,
        "a restored message is received mail, not a draft"
    );
    assert!(!got.is_read, "the read state is kept");
    assert_eq!(got.flag, FlagStatus::Flagged);
    assert_eq!(got.categories, m.categories);
    assert_eq!(
        got.received,
        m.received.map(|t| t.timestamp()),
        "received time kept"
    );
    assert_eq!(got.sent, m.sent.map(|t| t.timestamp()), "sent time kept");
    let sha = |a: &RestoreAttachment| match a {
        RestoreAttachment::File { bytes, .. } => hex::encode(Sha256::digest(bytes)),
        RestoreAttachment::Item { .. } => unreachable!("a file attachment"),
    };
    assert_eq!(
        got.attachments,
        [
            FixtureAttachment {
                name: "data.bin".into(),
                inline: false,
                sha256: sha(&attachment),
            },
            FixtureAttachment {
                name: "logo.png".into(),
                inline: true,
                sha256: sha(&image),
            },
        ],
        "file attachment bytes arrive intact, an inline image stays inline"
    );
    assert_eq!(
        got.item_attachments,
        ["Attached message"],
        "an attached message stays an item attachment"
    );
}
