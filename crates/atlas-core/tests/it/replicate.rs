//! Replication and rehydration (`service::replicate`) on memory stores: complete and
//! verifiable copies, idempotence, key checks, and crash safety at every write.

// Test helpers outside `#[test]` functions unwrap too: a failed setup is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use atlas_store::{CrashLanding, FaultPlan, FaultStore, MemoryStore};
use bytes::Bytes;
use chrono::{TimeZone, Utc};
use sha2::{Digest, Sha256};

use atlas_core::Error;
use atlas_core::model::{
    FolderId, FolderRecord, FolderSnapshot, MailboxId, MessageId, MessageMeta, SnapshotId,
    SnapshotRecord, SnapshotStatus,
};
use atlas_core::ports::{BlobStore, FixedClock, StoreKey};
use atlas_core::repo::{BlobKind, KEY_BLOB_KEY, KdfChoice, Passphrase, RepoSettings, Repository};
use atlas_core::service::replicate::{
    CopyOptions, Direction, STATUS_PREFIX, Selection, copy_snapshots, list_status,
    read_replica_marker,
};

fn key(name: &str) -> Result<StoreKey, atlas_core::ports::StoreError> {
    StoreKey::new(name)
}

const TENANT: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

fn passphrase() -> Passphrase {
    Passphrase::new("correct horse battery staple")
}

fn clock() -> FixedClock {
    FixedClock::new(Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).unwrap())
}

async fn new_repo(pw: &Passphrase) -> (Arc<dyn BlobStore>, Repository) {
    let store: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
    let repo = Repository::init_with(
        store.clone(),
        TENANT,
        pw,
        KdfChoice::SCRYPT_MINIMUM,
        RepoSettings {
            pack_target_size: 4096,
            chunk_threshold: 16 * 1024,
            chunk_size: 4 * 1024,
            lease_seconds: 60,
        },
    )
    .await
    .unwrap();
    (store, repo)
}

/// Back up `bodies` as one folder of `mailbox`; returns the snapshot id.
async fn backup(repo: &Repository, mailbox: &str, minute: u32, bodies: &[Vec<u8>]) -> SnapshotId {
    let started = Utc.with_ymd_and_hms(2026, 11, 1, 10, minute, 0).unwrap();
    let mb = MailboxId::new(mailbox);
    let mut session = repo
        .begin_backup(&mb, "test", Arc::new(FixedClock::new(started)))
        .await
        .unwrap();
    let mut items = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let mime = Bytes::from(body.clone());
        let id = session
            .put_blob(BlobKind::Mime, mime.clone())
            .await
            .unwrap()
            .id;
        items.push(MessageMeta {
            id: MessageId::new(format!("m{minute}-{i}")),
            internet_message_id: None,
            conversation_id: None,
            subject: None,
            from: None,
            received: Some(started),
            sent: None,
            size: Some(mime.len() as u64),
            is_read: false,
            flag_status: atlas_core::model::FlagStatus::NotFlagged,
            importance: atlas_core::model::Importance::Normal,
            categories: Vec::new(),
            has_attachments: false,
            attachment_count: 0,
            is_draft: false,
            change_key: None,
            last_modified: None,
            parent_folder_id: FolderId::new("inbox"),
            mime: id,
            mime_size: mime.len() as u64,
            mime_sha256: hex::encode(Sha256::digest(&mime)),
            kind: atlas_core::model::ItemKind::Mail,
            content: Vec::new(),
        });
    }
    let count = items.len() as u64;
    let items = session.put_folder_items(items).await.unwrap();
    session
        .commit(SnapshotRecord {
            mailbox: mb,
            started,
            finished: started,
            tool: "test".into(),
            format_version: 2,
            status: SnapshotStatus::Complete,
            folder_bookmark: None,
            folders: vec![FolderSnapshot {
                folder: FolderRecord {
                    id: FolderId::new("inbox"),
                    parent_id: None,
                    display_name: "Inbox".into(),
                    path: vec!["Inbox".into()],
                    well_known_name: None,
                    total_item_count: Some(count),
                    kind: atlas_core::model::ItemKind::Mail,
                },
                delta_link: None,
                item_delta_link: None,
                graph_item_count: Some(count),
                stored_item_count: count,
                items: items.id,
                item_pieces: items.pieces,
                errors: Vec::new(),
            }],
        })
        .await
        .unwrap()
}

fn body(seed: u8, len: usize) -> Vec<u8> {
    // Incompressible enough to fill packs: a simple LCG.
    let mut x = u32::from(seed) + 1;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect()
}

/// A source with two mailboxes; the second snapshot of alice shares data with the first
/// and holds a chunked (large) message.
async fn sample_source() -> (Arc<dyn BlobStore>, Repository, Vec<SnapshotId>) {
    let (store, repo) = new_repo(&passphrase()).await;
    let a1 = backup(
        &repo,
        "alice@contoso.com",
        1,
        &[body(1, 3000), body(2, 5000)],
    )
    .await;
    let b1 = backup(&repo, "bob@contoso.com", 2, &[body(3, 2000)]).await;
    let a2 = backup(
        &repo,
        "alice@contoso.com",
        3,
        &[body(1, 3000), body(2, 5000), body(4, 40_000)],
    )
    .await;
    (store, repo, vec![a1, b1, a2])
}

fn opts(selection: Selection, direction: Direction) -> CopyOptions {
    CopyOptions {
        selection,
        direction,
        parallel: 3,
        reporter: std::sync::Arc::new(atlas_core::ports::NullReporter),
    }
}

/// Every snapshot on `store` verifies, and every index file there points only at packs
/// that exist (so a backup deduplicating against it cannot reference missing data).
async fn assert_consistent(store: Arc<dyn BlobStore>) -> usize {
    if store
        .head(&key(KEY_BLOB_KEY).unwrap())
        .await
        .unwrap()
        .is_none()
    {
        assert!(store.list("snapshots/").await.unwrap().is_empty());
        return 0;
    }
    let repo = match Repository::open(store.clone(), TENANT, &passphrase()).await {
        Ok(r) => r,
        Err(Error::NotInitialized { .. }) => unreachable!("key present"),
        Err(e) => panic!("target does not open: {e}"),
    };
    let snaps = repo.list_all_snapshots().await.unwrap();
    if !snaps.is_empty() {
        assert!(repo.config().is_some(), "records without a config");
    }
    for s in &snaps {
        let report = repo.verify_snapshot(s.id).await.unwrap();
        assert!(report.is_ok(), "snapshot {} incomplete: {report:?}", s.id);
    }
    if repo.config().is_some() {
        for f in repo.list_index_files().await.unwrap() {
            for e in repo.read_index_file(f.key.as_str()).await.unwrap() {
                let pack = e.location.pack.store_key();
                assert!(
                    store.head(&key(&pack).unwrap()).await.unwrap().is_some(),
                    "index {} names missing {pack}",
                    f.key
                );
            }
        }
    }
    snaps.len()
}

#[tokio::test]
async fn replicate_all_is_complete_marked_recorded_and_idempotent() {
    let (source_store, source, ids) = sample_source().await;
    let target: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
    let c = clock();
    let first = copy_snapshots(
        &source,
        target.clone(),
        &passphrase(),
        &opts(Selection::All, Direction::Replicate),
        &c,
    )
    .await
    .unwrap();
    assert!(first.initialized_target);
    assert_eq!(first.snapshots.len(), 3);
    assert!(first.copied() > 0);
    assert_eq!(assert_consistent(target.clone()).await, 3);

    let marker = read_replica_marker(target.as_ref()).await.unwrap().unwrap();
    assert_eq!(marker.source_repo_id, source.config().unwrap().repo_id);
    assert!(
        read_replica_marker(source_store.as_ref())
            .await
            .unwrap()
            .is_none()
    );

    let status = list_status(&source).await.unwrap();
    assert_eq!(status.len(), 3);
    assert!(status.iter().all(|s| s.target_id == first.target_id));
    let mut got: Vec<SnapshotId> = status.iter().map(|s| s.snapshot).collect();
    got.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(got, want);

    let before = target.list("").await.unwrap();
    let second = copy_snapshots(
        &source,
        target.clone(),
        &passphrase(),
        &opts(Selection::All, Direction::Replicate),
        &c,
    )
    .await
    .unwrap();
    assert!(!second.initialized_target);
    assert_eq!(second.copied(), 0);
    assert_eq!(second.skipped(), first.copied() + first.skipped());
    let after = target.list("").await.unwrap();
    assert_eq!(before.len(), after.len());
    assert_eq!(list_status(&source).await.unwrap().len(), 3);
}

#[tokio::test]
async fn one_snapshot_copies_what_it_needs_and_rehydrate_restores_content() {
    let (_, source, ids) = sample_source().await;
    let replica: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
    let c = clock();
    copy_snapshots(
        &source,
        replica.clone(),
        &passphrase(),
        &opts(Selection::Snapshot(ids[2]), Direction::Replicate),
        &c,
    )
    .await
    .unwrap();
    assert_eq!(assert_consistent(replica.clone()).await, 1);

    // Disaster: the primary is gone; rehydrate into an empty store from the replica.
    let replica_repo = Repository::open(replica.clone(), TENANT, &passphrase())
        .await
        .unwrap();
    let primary: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
    let summary = copy_snapshots(
        &replica_repo,
        primary.clone(),
        &passphrase(),
        &opts(
            Selection::Mailbox(MailboxId::new("alice@contoso.com")),
            Direction::Rehydrate,
        ),
        &c,
    )
    .await
    .unwrap();
    assert_eq!(summary.snapshots.len(), 1);
    assert_eq!(assert_consistent(primary.clone()).await, 1);
    assert!(
        read_replica_marker(primary.as_ref())
            .await
            .unwrap()
            .is_none()
    );
    assert!(primary.list(STATUS_PREFIX).await.unwrap().is_empty());

    let restored = Repository::open(primary.clone(), TENANT, &passphrase())
        .await
        .unwrap();
    let snap = restored.load_snapshot(ids[2]).await.unwrap();
    let items = restored
        .load_folder_items(&snap.record.folders[0].items)
        .await
        .unwrap();
    let large = restored.read_blob(&items[2].mime).await.unwrap();
    assert_eq!(large.as_ref(), body(4, 40_000).as_slice());

    // The rehydrated primary takes new backups (deduplicating against what arrived).
    let next = backup(
        &restored,
        "alice@contoso.com",
        9,
        &[body(1, 3000), body(7, 100)],
    )
    .await;
    assert!(restored.verify_snapshot(next).await.unwrap().is_ok());
}

#[tokio::test]
async fn target_with_another_key_or_repository_is_refused_untouched() {
    let (_, source, _) = sample_source().await;
    let c = clock();
    // Same passphrase, another data key.
    let (other_store, _) = new_repo(&passphrase()).await;
    // Another passphrase.
    let (third_store, _) = new_repo(&Passphrase::new("something else entirely")).await;
    for target in [other_store, third_store] {
        let before = target.list("").await.unwrap();
        let err = copy_snapshots(
            &source,
            target.clone(),
            &passphrase(),
            &opts(Selection::All, Direction::Replicate),
            &c,
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("different data key"), "{err}");
        assert_eq!(target.list("").await.unwrap(), before);
    }
}

#[tokio::test]
async fn crash_at_every_write_never_leaves_a_record_without_its_data() {
    let (_, source, _) = sample_source().await;
    let c = clock();
    for landing in [CrashLanding::Lost, CrashLanding::Landed] {
        let mut n = 1;
        loop {
            let inner: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
            let fault = Arc::new(FaultStore::with_plan(
                inner.clone(),
                FaultPlan::new().crash_at_write(n, landing),
            ));
            let result = copy_snapshots(
                &source,
                fault.clone(),
                &passphrase(),
                &opts(Selection::All, Direction::Replicate),
                &c,
            )
            .await;
            let on_target = assert_consistent(inner.clone()).await;
            if !fault.is_crashed() {
                result.unwrap();
                assert_eq!(on_target, 3);
                break;
            }
            assert!(
                result.is_err(),
                "a crashed run reported success at write {n}"
            );
            // Resuming after the crash completes the copy.
            copy_snapshots(
                &source,
                inner.clone(),
                &passphrase(),
                &opts(Selection::All, Direction::Replicate),
                &c,
            )
            .await
            .unwrap();
            assert_eq!(assert_consistent(inner).await, 3);
            n += 1;
            assert!(n < 500, "no run without a crash");
        }
        assert!(n > 10, "too few writes to be meaningful: {n}");
    }
}

#[tokio::test]
async fn copying_into_itself_and_unknown_selections_are_refused() {
    let (store, source, _) = sample_source().await;
    let c = clock();
    let err = copy_snapshots(
        &source,
        store,
        &passphrase(),
        &opts(Selection::All, Direction::Replicate),
        &c,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("source itself"), "{err}");
    let target: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
    let err = copy_snapshots(
        &source,
        target.clone(),
        &passphrase(),
        &opts(
            Selection::Mailbox(MailboxId::new("nobody@contoso.com")),
            Direction::Replicate,
        ),
        &c,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::MailboxNotFound { .. }), "{err}");
    assert!(target.list("").await.unwrap().is_empty());
}
