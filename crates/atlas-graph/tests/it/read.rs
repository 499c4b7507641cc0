//! Backup-side reads: users, folder tree, delta, MIME, attachments, reports.

use std::collections::{BTreeMap, BTreeSet};

use atlas_core::model::{FolderId, MailboxId};
use atlas_graph::{
    DeltaNext, DeltaStart, FolderTreeOptions, GraphError, ListUsersOptions, MailboxKind,
    ReportPeriod,
};
use atlas_sim::{MessageUpdate, NewMessage, SimConfig, roles};

use crate::{client, mailbox, mailbox_user, small_tenant, start};

#[tokio::test]
async fn users_are_paged_completely() {
    let sim = start(small_tenant()).await;
    let c = client(&sim);
    let users = c
        .list_users(&ListUsersOptions {
            page_size: Some(2),
            select: None,
        })
        .await
        .expect("users");
    let got: BTreeSet<String> = users.iter().map(|u| u.id.clone()).collect();
    let want: BTreeSet<String> = sim.users().into_iter().map(|u| u.id).collect();
    assert_eq!(got, want);
    assert!(
        sim.counters().kind("users").requests >= 2,
        "expected several pages"
    );

    let user = mailbox_user(&sim);
    let one = c.get_user(&mailbox(&user)).await.expect("get user");
    assert_eq!(one.id, user.id);
    assert_eq!(
        c.classify_mailbox(&one).await.expect("classify"),
        MailboxKind::Licensed
    );
    let missing = c
        .get_user(&MailboxId::new("nobody@contoso.onmicrosoft.com"))
        .await;
    assert!(
        matches!(missing, Err(GraphError::MailboxNotFound { .. })),
        "{missing:?}"
    );
}

#[tokio::test]
async fn folder_tree_matches_the_mailbox() {
    let sim = start(small_tenant()).await;
    let c = client(&sim);
    let user = mailbox_user(&sim);
    let parent = sim.dump_mailbox(&user.id).expect("dump").folders[0]
        .id
        .clone();
    let deep = sim
        .add_folder(&user.id, &parent, "Projects")
        .expect("folder");
    let deeper = sim.add_folder(&user.id, &deep, "2025/Q1").expect("folder");
    sim.add_folder(&user.id, &deeper, "Ünïcode ✓")
        .expect("folder");

    let tree = c
        .list_folder_tree(
            &mailbox(&user),
            FolderTreeOptions {
                include_hidden: true,
                ..FolderTreeOptions::default()
            },
        )
        .await
        .expect("tree");
    let dump = sim.dump_mailbox(&user.id).expect("dump");
    let want: BTreeMap<String, String> = dump
        .folders
        .iter()
        .filter(|f| f.parent_id.is_some())
        .map(|f| (f.id.clone(), f.path.clone()))
        .collect();
    let got: BTreeMap<String, String> = tree
        .iter()
        .map(|f| (f.id.as_str().to_owned(), f.path.join("/")))
        .collect();
    assert_eq!(got, want);
    // Parents come before children.
    let pos: BTreeMap<&FolderId, usize> =
        tree.iter().enumerate().map(|(i, f)| (&f.id, i)).collect();
    for f in &tree {
        if let Some(p) = &f.parent_id {
            assert!(pos[p] < pos[&f.id]);
        }
    }
    let inbox = tree
        .iter()
        .find(|f| f.well_known.as_deref() == Some("inbox"))
        .expect("inbox");
    let dump_inbox = dump
        .folders
        .iter()
        .find(|f| f.well_known_name.as_deref() == Some("inbox"))
        .expect("dump inbox");
    assert_eq!(inbox.id.as_str(), dump_inbox.id);
}

#[tokio::test]
async fn delta_initial_incremental_and_expired() {
    let sim = start(small_tenant()).await;
    let c = client(&sim);
    let user = mailbox_user(&sim);
    let mbx = mailbox(&user);
    let inbox = FolderId::from("inbox");

    // Initial round, small pages, page by page.
    let mut ids = BTreeSet::new();
    let mut pages = 0;
    let mut page = c
        .message_delta_page(&mbx, DeltaStart::Initial(&inbox), 7)
        .await
        .expect("page");
    let delta_link = loop {
        pages += 1;
        ids.extend(page.messages.iter().map(|m| m.id.as_str().to_owned()));
        match page.next {
            DeltaNext::Done(link) => break link,
            DeltaNext::More(link) => {
                page = c
                    .message_delta_page(&mbx, DeltaStart::Link(&link), 7)
                    .await
                    .expect("page");
            }
        }
    };
    let dump = sim.dump_mailbox(&user.id).expect("dump");
    let inbox_id = c.get_folder(&mbx, &inbox).await.expect("inbox").id;
    let want: BTreeSet<String> = dump
        .messages
        .iter()
        .filter(|m| m.folder_id == inbox_id.as_str())
        .map(|m| m.immutable_id.clone())
        .collect();
    assert!(!want.is_empty());
    assert_eq!(
        ids, want,
        "delta returns immutable ids of every inbox message"
    );
    assert!(pages > 1);

    // Nothing changed: an empty round.
    let round = c
        .message_delta_round(&mbx, DeltaStart::Link(&delta_link), 50)
        .await
        .expect("round");
    assert!(round.messages.is_empty() && round.removed.is_empty());

    // One new, one changed, one deleted.
    let existing: Vec<String> = want.iter().take(2).cloned().collect();
    sim.add_message(&user.id, "inbox", NewMessage::text("hello delta", "body"))
        .expect("add");
    sim.update_message(
        &user.id,
        &existing[0],
        &MessageUpdate {
            is_read: Some(true),
            flag_status: Some("flagged".into()),
            categories: None,
        },
    )
    .expect("update");
    sim.delete_message(&user.id, &existing[1]).expect("delete");
    let round2 = c
        .message_delta_round(&mbx, DeltaStart::Link(&round.delta_link), 50)
        .await
        .expect("round");
    assert!(
        round2
            .messages
            .iter()
            .any(|m| m.subject.as_deref() == Some("hello delta"))
    );
    let changed = round2
        .messages
        .iter()
        .find(|m| m.id.as_str() == existing[0])
        .expect("changed message reported");
    assert_eq!(changed.is_read, Some(true));
    assert_eq!(
        changed.flag.as_ref().and_then(|f| f.flag_status.as_deref()),
        Some("flagged")
    );
    assert!(round2.removed.iter().any(|id| id.as_str() == existing[1]));

    // An expired token is a distinct error.
    sim.expire_delta_tokens();
    let err = c
        .message_delta_page(&mbx, DeltaStart::Link(&round2.delta_link), 50)
        .await
        .expect_err("expired");
    assert!(
        matches!(err, GraphError::SyncStateNotFound { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn mime_stream_equals_the_stored_message_and_attachments_list() {
    let sim = start(small_tenant()).await;
    let c = client(&sim);
    let user = mailbox_user(&sim);
    let mbx = mailbox(&user);
    let dump = sim.dump_mailbox(&user.id).expect("dump");
    let with_att = dump
        .messages
        .iter()
        .find(|m| !m.attachments.is_empty())
        .expect("a message with attachments");
    for m in [&dump.messages[0], with_att] {
        let mut out = Vec::new();
        let stream = c
            .get_mime(&mbx, &m.immutable_id.clone().into())
            .await
            .expect("mime");
        let n = stream.write_to(&mut out).await.expect("stream");
        assert_eq!(n as usize, out.len());
        assert_eq!(Some(&out), m.mime.as_ref(), "MIME of {}", m.immutable_id);
    }
    let atts = c
        .list_attachments(&mbx, &with_att.immutable_id.clone().into())
        .await
        .expect("attachments");
    assert_eq!(atts.len(), with_att.attachments.len());
    let first = &atts[0];
    if first.kind() == atlas_graph::AttachmentKind::File {
        let bytes = c
            .get_attachment_value(&mbx, &with_att.immutable_id.clone().into(), &first.id)
            .await
            .expect("value")
            .collect(64 * 1024 * 1024)
            .await
            .expect("bytes");
        assert_eq!(Some(bytes.len() as u64), first.size);
    }
}

#[tokio::test]
async fn missing_permission_and_missing_mailbox_are_named() {
    let mut cfg = small_tenant();
    cfg.granted_roles = [roles::USER_READ_ALL.to_owned()].into_iter().collect();
    let sim = start(cfg).await;
    let c = client(&sim);
    let user = mailbox_user(&sim);
    let err = c
        .message_delta_page(&mailbox(&user), DeltaStart::Initial(&"inbox".into()), 10)
        .await
        .expect_err("403");
    match &err {
        GraphError::PermissionDenied {
            permission,
            request_id,
            ..
        } => {
            assert_eq!(*permission, "Mail.Read");
            assert!(request_id.is_some(), "request-id captured");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("Mail.Read"));
    let report = c
        .mailbox_usage(ReportPeriod::D7)
        .await
        .expect_err("no Reports.Read.All");
    assert!(matches!(
        report,
        GraphError::PermissionDenied {
            permission: "Reports.Read.All",
            ..
        }
    ));

    let sim = start(SimConfig::default()).await;
    let c = client(&sim);
    let no_mbx = sim
        .users()
        .into_iter()
        .find(|u| !u.has_mailbox)
        .expect("user without mailbox");
    let err = c
        .list_top_folders(&mailbox(&no_mbx), false)
        .await
        .expect_err("no mailbox");
    assert!(
        matches!(err, GraphError::MailboxNotEnabled { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn usage_report_follows_the_redirect_and_parses() {
    let sim = start(small_tenant()).await;
    let c = client(&sim);
    let rows = c.mailbox_usage(ReportPeriod::D7).await.expect("report");
    let with_mailbox: BTreeSet<String> = sim
        .users()
        .into_iter()
        .filter(|u| u.has_mailbox)
        .map(|u| u.upn.to_lowercase())
        .collect();
    let got: BTreeSet<String> = rows
        .iter()
        .map(|r| r.user_principal_name.to_lowercase())
        .collect();
    assert!(with_mailbox.is_subset(&got), "{with_mailbox:?} vs {got:?}");
    assert!(rows.iter().any(|r| r.storage_used_bytes.unwrap_or(0) > 0));
}

#[tokio::test]
async fn mailbox_kinds_are_classified() {
    let sim = start(SimConfig::default()).await;
    let c = client(&sim);
    let users = c
        .list_users(&ListUsersOptions::default())
        .await
        .expect("users");
    for info in sim.users() {
        let user = users.iter().find(|u| u.id == info.id).expect("listed");
        let kind = c.classify_mailbox(user).await.expect("classify");
        let expected = match info.kind.as_str() {
            "user" | "disabled" => MailboxKind::Licensed,
            "shared" => MailboxKind::Shared,
            _ => continue,
        };
        assert_eq!(kind, expected, "{}", info.kind);
    }
}
