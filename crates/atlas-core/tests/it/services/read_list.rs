//! `list`, `read`, `stats`.

use atlas_core::Error;
use atlas_core::model::{MailboxId, SnapshotStatus};
use atlas_core::service::catalog::{
    ItemListOptions, SnapshotSelector, list_items, list_mailboxes, list_snapshots,
    resolve_snapshot_ref, stats,
};
use atlas_core::service::read::{ReadOptions, read_message};
use chrono::Duration;

use crate::services::common::{backup_folders, mailbox, sample_folders, sample_repo, t0};

#[tokio::test]
async fn list_levels_show_mailboxes_snapshots_and_items() {
    let (_s, repo, first) = sample_repo().await;
    let second = backup_folders(
        &repo,
        &mailbox(),
        t0() + Duration::days(1),
        &sample_folders(),
        false,
    )
    .await;
    let other = MailboxId::new("Alice@Contoso.com");
    backup_folders(&repo, &other, t0(), &sample_folders()[..1], false).await;

    let mbs = list_mailboxes(&repo).await.unwrap();
    assert_eq!(mbs.len(), 2);
    let bob = mbs.iter().find(|m| m.mailbox == "bob@contoso.com").unwrap();
    assert_eq!(bob.snapshots, 2);
    assert_eq!(bob.latest_snapshot, Some(second));
    assert_eq!(bob.items, 6);
    assert!(bob.logical_bytes > 0 && bob.physical_bytes > 0);

    let snaps = list_snapshots(&repo, &mailbox()).await.unwrap();
    assert_eq!(
        snaps.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![second, first]
    );
    assert!(
        snaps
            .iter()
            .all(|s| s.status == SnapshotStatus::Complete && s.items == 6)
    );
    assert!(matches!(
        list_snapshots(&repo, &MailboxId::new("ghost@contoso.com")).await,
        Err(Error::InvalidInput { .. })
    ));

    let items = list_items(
        &repo,
        first,
        &ItemListOptions {
            limit: Some(2),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!((items.total, items.items.len()), (6, 2));
    assert!(items.items.iter().all(|i| i.subject.is_none()));
    assert_eq!(items.items[0].attachments, 2);
    let items = list_items(
        &repo,
        first,
        &ItemListOptions {
            show_subjects: true,
            limit: None,
            folder: Some("Inbox/Projects".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(items.total, 1);
    assert_eq!(items.items[0].folder, "Inbox/Projects");
    assert!(items.items[0].subject.is_some());

    let prefix = &first.to_string()[..8];
    assert_eq!(resolve_snapshot_ref(&repo, prefix).await.unwrap(), first);
    assert!(resolve_snapshot_ref(&repo, "zz").await.is_err());
}

#[tokio::test]
async fn stats_show_dedup_between_snapshots() {
    let (_s, repo, _first) = sample_repo().await;
    backup_folders(
        &repo,
        &mailbox(),
        t0() + Duration::days(1),
        &sample_folders(),
        false,
    )
    .await;
    let s = stats(&repo, Some(&mailbox())).await.unwrap();
    assert_eq!(s.snapshots, 2);
    assert_eq!(s.message_versions, 12);
    assert_eq!(s.unique_messages, 6);
    assert_eq!(s.logical_bytes, 2 * s.unique_bytes);
    assert!((s.dedup_ratio - 2.0).abs() < 1e-9);
    assert!(s.physical_bytes > 0);
    assert_eq!(s.folders.len(), 3);
    assert_eq!(
        s.months
            .iter()
            .map(|m| m.month.as_str())
            .collect::<Vec<_>>(),
        ["2026-03", "2026-04"]
    );
    let all = stats(&repo, None).await.unwrap();
    assert!(all.repository_pack_bytes.unwrap() >= all.physical_bytes);
    assert!(
        stats(&repo, Some(&MailboxId::new("ghost@x.com")))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn read_decodes_headers_body_attachments_and_sanitizes() {
    let (_s, repo, id) = sample_repo().await;
    let m = read_message(
        &repo,
        &ReadOptions {
            snapshot: SnapshotSelector::Id(id),
            message: "AAMkAGI2-inbox-1".into(),
            include_raw: true,
        },
    )
    .await
    .unwrap();
    assert_eq!(m.subject.as_deref(), Some("Quarterly report: Q1/2026"));
    assert_eq!(m.from, vec!["Alice Smith <alice@contoso.com>".to_owned()]);
    assert!(m.body.contains("the numbers are attached."));
    let names: Vec<_> = m
        .attachments
        .iter()
        .map(|a| (a.name.as_str(), a.content_type.as_str(), a.size))
        .collect();
    assert_eq!(
        names,
        vec![
            ("report.pdf", "application/pdf", 3000),
            ("Übersicht-ß.txt", "text/plain", 8)
        ]
    );
    assert_eq!(
        m.raw.as_deref(),
        Some(crate::services::common::raw_mime(&sample_folders()[0].1[0]).as_ref())
    );

    // HTML-only, hostile subject: rendered by a real parser, escapes neutralized.
    let m = read_message(
        &repo,
        &ReadOptions {
            snapshot: SnapshotSelector::Id(id),
            message: "<AAMkAGI2-proj-1@contoso.com>".into(),
            include_raw: false,
        },
    )
    .await
    .unwrap();
    assert!(m.body_from_html);
    assert!(
        m.body.contains("Only") && m.body.contains("HTML"),
        "{}",
        m.body
    );
    assert!(!m.body.contains("alert"));
    let subject = m.subject.unwrap();
    assert!(
        !subject.contains('\u{1b}') && !subject.contains('\u{202e}'),
        "{subject:?}"
    );
    assert!(
        m.headers
            .iter()
            .all(|h| !h.name.chars().chain(h.value.chars()).any(char::is_control))
    );
    assert!(m.raw.is_none());

    // Unknown message, unknown snapshot.
    let r = read_message(
        &repo,
        &ReadOptions {
            snapshot: SnapshotSelector::Id(id),
            message: "missing".into(),
            include_raw: false,
        },
    )
    .await;
    assert!(matches!(r, Err(Error::InvalidInput { .. })));
    let r = read_message(
        &repo,
        &ReadOptions {
            snapshot: SnapshotSelector::Id(atlas_core::model::SnapshotId::random()),
            message: "AAMkAGI2-inbox-1".into(),
            include_raw: false,
        },
    )
    .await;
    assert!(matches!(r, Err(Error::SnapshotNotFound { .. })));
}
