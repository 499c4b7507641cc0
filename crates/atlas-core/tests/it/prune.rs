//! Prune: frees what no snapshot references, keeps everything else verifiable, compacts
//! the index, never overlaps a backup, and survives an interruption at any write.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use atlas_core::Error;
use atlas_core::model::MailboxId;
use atlas_core::ports::{BlobStore, Clock, ObjectMeta, PutOptions, StoreError, StoreKey};
use atlas_core::repo::prune::{PruneOptions, PruneSummary, break_prune_lock, prune};
use atlas_core::repo::{BlobKind, Repository};
use atlas_store::{CrashLanding, FaultPlan, FaultStore, MemoryStore};
use bytes::Bytes;
use chrono::Duration;
use tokio::sync::{Notify, oneshot};

use crate::common::*;

fn mb() -> MailboxId {
    MailboxId::new("lucas.johnson@contoso.com")
}

/// Three snapshots: the first one's messages 1–3 are only in it, message 4 and 5 are
/// shared with later runs, the third adds a chunked message.
const FIRST: &[(&str, usize, usize)] = &[
    ("Inbox", 1, 1500),
    ("Inbox", 2, 2500),
    ("Inbox", 3, 2900),
    ("Sent Items", 4, 3000),
    ("Sent Items", 5, 1200),
];
const SECOND: &[(&str, usize, usize)] = &[
    ("Inbox", 6, 2000),
    ("Sent Items", 4, 3000),
    ("Sent Items", 5, 1200),
];
const THIRD: &[(&str, usize, usize)] = &[
    ("Inbox", 6, 2000),
    ("Archive", 7, 100_000),
    ("Sent Items", 5, 1200),
];

async fn copy(src: &Arc<dyn BlobStore>) -> Arc<dyn BlobStore> {
    let dst: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
    for m in src.list("").await.unwrap() {
        let bytes = src.get(&m.key).await.unwrap();
        dst.put(&m.key, bytes, PutOptions::CREATE).await.unwrap();
    }
    dst
}

/// A repository with three snapshots; returns the store and the snapshot ids.
async fn three() -> (Arc<dyn BlobStore>, Vec<atlas_core::model::SnapshotId>) {
    let store = memory();
    let repo = new_repo(store.clone()).await;
    let mut ids = Vec::new();
    for (i, run) in (0i64..).zip([FIRST, SECOND, THIRD]) {
        let clock = clock_at(t0() + Duration::hours(i));
        ids.push(backup(&repo, &mb(), clock, run).await.unwrap());
    }
    (store, ids)
}

async fn stored_bytes(store: &Arc<dyn BlobStore>, prefix: &str) -> (usize, u64) {
    let l = store.list(prefix).await.unwrap();
    (l.len(), l.iter().map(|m| m.size).sum())
}

fn later(h: i64) -> Arc<atlas_core::ports::FixedClock> {
    clock_at(t0() + Duration::hours(h))
}

/// Every message of every remaining snapshot reads back with the bytes that were stored.
async fn contents_intact(store: Arc<dyn BlobStore>) {
    let repo = Repository::open(store, TENANT, &passphrase())
        .await
        .unwrap();
    for s in repo.list_all_snapshots().await.unwrap() {
        let snap = repo.load_snapshot(s.id).await.unwrap();
        for f in &snap.record.folders {
            for m in repo.load_folder_items(&f.items).await.unwrap() {
                let n: usize = m.id.as_str().trim_start_matches("AAMk-").parse().unwrap();
                let body = repo.read_blob(&m.mime).await.unwrap();
                assert_eq!(body, mime(n, body.len()), "message {n}");
                assert_eq!(body.len() as u64, m.mime_size);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_frees_forgotten_data_and_keeps_the_rest_intact() {
    let (store, ids) = three().await;
    let repo = Repository::open(store.clone(), TENANT, &passphrase())
        .await
        .unwrap();
    let (index_before, _) = stored_bytes(&store, "index/").await;
    let (_, packs_before) = stored_bytes(&store, "packs/").await;
    assert!(index_before >= 3, "one index file per run at least");

    // Nothing forgotten yet: prune only compacts the index.
    let sum = prune(&repo, &PruneOptions::default(), later(5).as_ref())
        .await
        .unwrap();
    assert!(
        sum.packs_deleted.is_empty() && sum.packs_repacked.is_empty(),
        "{sum:?}"
    );
    assert_eq!(sum.index_files_deleted.len(), index_before);
    assert_eq!(sum.index_files_written, 1);
    assert_eq!(stored_bytes(&store, "index/").await.0, 1);
    assert_eq!(check_everything(store.clone()).await.unwrap(), 3);

    repo.delete_snapshot(ids[0]).await.unwrap();
    let sum = prune(&repo, &PruneOptions::default(), later(5).as_ref())
        .await
        .unwrap();
    assert!(
        sum.blobs_freed >= 3,
        "messages 1-3 and a folder list: {sum:?}"
    );
    assert!(!sum.packs_deleted.is_empty(), "{sum:?}");
    assert!(sum.bytes_freed() > 0);
    assert!(sum.pending_packs.is_empty());
    assert!(stored_bytes(&store, "packs/").await.1 < packs_before);
    for key in &sum.packs_deleted {
        assert!(
            store
                .head(&StoreKey::new(key.clone()).unwrap())
                .await
                .unwrap()
                .is_none()
        );
    }
    assert_eq!(check_everything(store.clone()).await.unwrap(), 2);
    contents_intact(store.clone()).await;
    // The same process's cache saw the change: reads work without reopening.
    let snap = repo.load_snapshot(ids[2]).await.unwrap();
    repo.load_folder_items(&snap.record.folders[0].items)
        .await
        .unwrap();

    // A second prune finds nothing to do and writes nothing.
    let counting = Arc::new(FaultStore::new(store.clone()));
    let r2 = Repository::open(counting.clone(), TENANT, &passphrase())
        .await
        .unwrap();
    let again = prune(&r2, &PruneOptions::default(), later(6).as_ref())
        .await
        .unwrap();
    assert!(again.packs_deleted.is_empty() && again.packs_repacked.is_empty());
    assert_eq!(again.index_files_written, 0);
    assert_eq!(counting.writes(), 2, "only the lock: put and delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_lists_what_a_real_run_removes_and_writes_nothing() {
    let (store, ids) = three().await;
    let counting = Arc::new(FaultStore::new(store.clone()));
    let repo = Repository::open(counting.clone(), TENANT, &passphrase())
        .await
        .unwrap();
    let dry = prune(
        &repo,
        &PruneOptions {
            dry_run: true,
            ignore_snapshots: vec![ids[0], ids[1]],
            ..PruneOptions::default()
        },
        later(5).as_ref(),
    )
    .await
    .unwrap();
    assert_eq!(counting.writes(), 0);
    assert!(dry.dry_run && !dry.packs_deleted.is_empty());
    repo.delete_snapshot(ids[0]).await.unwrap();
    repo.delete_snapshot(ids[1]).await.unwrap();
    let real = prune(&repo, &PruneOptions::default(), later(5).as_ref())
        .await
        .unwrap();
    assert_eq!(dry.packs_deleted, real.packs_deleted);
    assert_eq!(dry.packs_repacked, real.packs_repacked);
    assert_eq!(dry.blobs_freed, real.blobs_freed);
    assert_eq!(dry.index_files_deleted, real.index_files_deleted);
    assert_eq!(check_everything(store.clone()).await.unwrap(), 1);
    contents_intact(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mostly_dead_packs_are_repacked() {
    // Big pack target so that both runs' messages share packs with the dead ones.
    let store = memory();
    let repo = Repository::init_with(
        store.clone(),
        TENANT,
        &passphrase(),
        atlas_core::repo::KdfChoice::SCRYPT_MINIMUM,
        atlas_core::repo::RepoSettings {
            pack_target_size: 1 << 20,
            ..small_settings()
        },
    )
    .await
    .unwrap();
    let first: Vec<(&str, usize, usize)> = (1..=20).map(|n| ("Inbox", n, 3000)).collect();
    let s1 = backup(&repo, &mb(), later(0), &first).await.unwrap();
    backup(
        &repo,
        &mb(),
        later(1),
        &[("Inbox", 1, 3000), ("Inbox", 2, 3000)],
    )
    .await
    .unwrap();
    repo.delete_snapshot(s1).await.unwrap();
    let sum = prune(&repo, &PruneOptions::default(), later(2).as_ref())
        .await
        .unwrap();
    assert_eq!(sum.packs_repacked.len(), 1, "{sum:?}");
    assert_eq!(sum.blobs_repacked, 2, "{sum:?}");
    assert_eq!(sum.packs_written, 1);
    assert!(sum.bytes_deleted > 5 * sum.bytes_written, "{sum:?}");
    assert_eq!(check_everything(store.clone()).await.unwrap(), 1);
    contents_intact(store.clone()).await;

    // Above the threshold nothing is repacked.
    let s3 = backup(&repo, &mb(), later(3), &first).await.unwrap();
    backup(&repo, &mb(), later(4), &first[..15]).await.unwrap();
    repo.delete_snapshot(s3).await.unwrap();
    let sum = prune(
        &repo,
        &PruneOptions {
            repack_threshold: 0.9,
            ..PruneOptions::default()
        },
        later(5).as_ref(),
    )
    .await
    .unwrap();
    assert!(sum.packs_repacked.is_empty(), "{sum:?}");
    contents_intact(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_grace_period_packs_are_unindexed_first_and_deleted_later() {
    let (store, ids) = three().await;
    let repo = Repository::open(store.clone(), TENANT, &passphrase())
        .await
        .unwrap();
    repo.delete_snapshot(ids[0]).await.unwrap();
    let opts = PruneOptions {
        grace: Duration::hours(2),
        ..PruneOptions::default()
    };
    let first = prune(&repo, &opts, later(5).as_ref()).await.unwrap();
    assert!(first.packs_deleted.is_empty(), "{first:?}");
    assert!(!first.pending_packs.is_empty());
    for key in &first.pending_packs {
        assert!(
            store
                .head(&StoreKey::new(key.clone()).unwrap())
                .await
                .unwrap()
                .is_some()
        );
    }
    assert_eq!(check_everything(store.clone()).await.unwrap(), 2);
    // Within the grace period: still waiting, and the index is not rewritten again.
    let second = prune(&repo, &opts, later(6).as_ref()).await.unwrap();
    assert_eq!(second.pending_packs, first.pending_packs);
    assert!(second.packs_deleted.is_empty());
    assert_eq!(second.index_files_written, 0);
    // After it: deleted.
    let third = prune(&repo, &opts, later(8).as_ref()).await.unwrap();
    let mut deleted = third.packs_deleted.clone();
    deleted.sort();
    let mut pending = first.pending_packs.clone();
    pending.sort();
    assert_eq!(deleted, pending);
    assert!(third.pending_packs.is_empty());
    assert!(
        store
            .head(&StoreKey::new("prune/pending").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(check_everything(store.clone()).await.unwrap(), 2);
    contents_intact(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_that_started_before_prune_blocks_it_and_its_dedup_survives() {
    let (store, ids) = three().await;
    let repo = Repository::open(store.clone(), TENANT, &passphrase())
        .await
        .unwrap();
    // The running backup deduplicates against message 1, which only the first snapshot
    // references; then that snapshot is forgotten.
    let clock = later(5);
    let mut session = repo
        .begin_backup(&mb(), "backup-host:7", clock.clone())
        .await
        .unwrap();
    let body = mime(1, 1500);
    let id = session
        .put_blob(BlobKind::Mime, body.clone())
        .await
        .unwrap()
        .id;
    assert_eq!(session.stats().blobs_deduplicated, 1);
    repo.delete_snapshot(ids[0]).await.unwrap();
    let err = prune(&repo, &PruneOptions::default(), clock.as_ref())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::LeaseHeld { ref owner, .. } if owner == "backup-host:7"),
        "{err:?}"
    );
    // The refused prune left no lock behind: the session commits.
    let items = session
        .put_folder_items(vec![meta(1, "Inbox", id, &body)])
        .await
        .unwrap();
    let record = atlas_core::model::SnapshotRecord {
        mailbox: mb(),
        started: clock.now(),
        finished: clock.now(),
        tool: "test".into(),
        format_version: atlas_core::repo::FORMAT_VERSION,
        status: atlas_core::model::SnapshotStatus::Complete,
        folder_bookmark: None,
        folders: vec![atlas_core::model::FolderSnapshot {
            folder: folder("id-Inbox", "Inbox"),
            delta_link: None,
            item_delta_link: None,
            graph_item_count: Some(1),
            stored_item_count: 1,
            items: items.id,
            item_pieces: items.pieces,
            errors: vec![],
        }],
    };
    session.commit(record).await.unwrap();
    prune(&repo, &PruneOptions::default(), clock.as_ref())
        .await
        .unwrap();
    assert_eq!(check_everything(store.clone()).await.unwrap(), 3);
    contents_intact(store).await;

    // An expired lease does not block (issue 11: its holder stopped renewing it a whole
    // lifetime ago, and cannot commit any more): prune removes it and runs.
    let stalled = repo
        .begin_backup(&mb(), "h:1", clock.clone())
        .await
        .unwrap();
    drop(stalled);
    let much_later = later(9);
    prune(&repo, &PruneOptions::default(), much_later.as_ref())
        .await
        .unwrap();
    assert!(repo.lease_info(&mb()).await.unwrap().is_none());
}

/// Pauses the first `delete` of an index file (prune is then past its lock and its new
/// index) until released.
#[derive(Debug)]
struct Gate {
    inner: Arc<dyn BlobStore>,
    reached: std::sync::Mutex<Option<oneshot::Sender<()>>>,
    go: Notify,
}

#[async_trait]
impl BlobStore for Gate {
    async fn put(&self, key: &StoreKey, data: Bytes, opts: PutOptions) -> Result<(), StoreError> {
        self.inner.put(key, data, opts).await
    }
    async fn get(&self, key: &StoreKey) -> Result<Bytes, StoreError> {
        self.inner.get(key).await
    }
    async fn get_range(&self, key: &StoreKey, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.inner.get_range(key, range).await
    }
    async fn head(&self, key: &StoreKey) -> Result<Option<ObjectMeta>, StoreError> {
        self.inner.head(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        if key.as_str().starts_with("index/") {
            let first = self.reached.lock().unwrap().take();
            if let Some(tx) = first {
                let _ = tx.send(());
                self.go.notified().await;
            }
        }
        self.inner.delete(key).await
    }
    fn describe(&self) -> String {
        format!("gate over {}", self.inner.describe())
    }
    // Every optional method too: a wrapper that leaves them to the defaults silently
    // hides the wrapped store's Object Lock and server-side copy.
    async fn extend_retention(
        &self,
        key: &StoreKey,
        retention: atlas_core::ports::Retention,
    ) -> Result<atlas_core::ports::Retention, atlas_core::ports::StoreError> {
        self.inner.extend_retention(key, retention).await
    }
    async fn retention(
        &self,
        key: &StoreKey,
    ) -> Result<Option<atlas_core::ports::Retention>, atlas_core::ports::StoreError> {
        self.inner.retention(key).await
    }
    async fn lock_status(
        &self,
    ) -> Result<Option<atlas_core::ports::LockStatus>, atlas_core::ports::StoreError> {
        self.inner.lock_status().await
    }
    fn copy_source(&self) -> Option<atlas_core::ports::CopySource> {
        self.inner.copy_source()
    }
    async fn copy_from(
        &self,
        source: &atlas_core::ports::CopySource,
        source_key: &StoreKey,
        key: &StoreKey,
        opts: PutOptions,
    ) -> Result<bool, atlas_core::ports::StoreError> {
        self.inner.copy_from(source, source_key, key, opts).await
    }
}

#[tokio::test]
async fn the_gate_forwards_every_method() {
    atlas_store::conformance::check_wrapper(|inner| {
        Arc::new(Gate {
            inner,
            reached: std::sync::Mutex::new(None),
            go: Notify::new(),
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_cannot_start_while_prune_runs_and_a_stale_cache_does_not_dedup_after_it() {
    let (store, ids) = three().await;
    // "Process A": an open repository whose index cache knows message 1.
    let a = Repository::open(store.clone(), TENANT, &passphrase())
        .await
        .unwrap();
    a.refresh_index().await.unwrap();
    // "Process B" forgets the only snapshot with message 1 and prunes.
    let (tx, rx) = oneshot::channel();
    let gate = Arc::new(Gate {
        inner: store.clone(),
        reached: std::sync::Mutex::new(Some(tx)),
        go: Notify::new(),
    });
    let b = Repository::open(gate.clone(), TENANT, &passphrase())
        .await
        .unwrap();
    b.delete_snapshot(ids[0]).await.unwrap();
    let pruning = tokio::spawn({
        let b = b.clone();
        async move {
            prune(&b, &PruneOptions::default(), later(5).as_ref())
                .await
                .unwrap()
        }
    });
    rx.await.unwrap();
    // Prune is running: a backup in process A refuses to start and leaves no lease.
    let err = a
        .begin_backup(&mb(), "host-a:1", later(5))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::MaintenanceRunning { ref owner, .. } if owner == "atlas"),
        "{err:?}"
    );
    assert!(a.lease_info(&mb()).await.unwrap().is_none());
    gate.go.notify_one();
    let sum: PruneSummary = pruning.await.unwrap();
    assert!(!sum.packs_deleted.is_empty());
    // After prune, process A backs up message 1 again: its cache must not answer from the
    // deleted pack, so the message is written anew.
    let id = backup(&a, &mb(), later(6), &[("Inbox", 1, 1500)])
        .await
        .unwrap();
    assert_eq!(check_everything(store.clone()).await.unwrap(), 3);
    contents_intact(store.clone()).await;
    let rep = a.verify_snapshot(id).await.unwrap();
    assert!(rep.is_ok(), "{:?}", rep.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_interrupted_at_any_write_leaves_a_verifiable_repository() {
    let (template, ids) = three().await;
    {
        let repo = Repository::open(template.clone(), TENANT, &passphrase())
            .await
            .unwrap();
        repo.delete_snapshot(ids[0]).await.unwrap();
    }
    let run = |store: Arc<dyn BlobStore>, clock: Arc<dyn Clock>| async move {
        let repo = Repository::open(store, TENANT, &passphrase()).await?;
        prune(
            &repo,
            &PruneOptions {
                repack_threshold: 0.05,
                ..PruneOptions::default()
            },
            clock.as_ref(),
        )
        .await
    };
    let counting = Arc::new(FaultStore::new(copy(&template).await));
    let full = run(counting.clone(), later(5)).await.unwrap();
    assert!(!full.packs_deleted.is_empty(), "{full:?}");
    let writes = counting.writes();
    assert!(writes >= 5, "lock, index, deletes: {writes}");
    for n in 1..=writes {
        for landing in [CrashLanding::Lost, CrashLanding::Landed] {
            let what = format!("crash at write {n} of {writes} ({landing:?})");
            let fault = Arc::new(FaultStore::with_plan(
                copy(&template).await,
                FaultPlan::new().crash_at_write(n, landing),
            ));
            assert!(run(fault.clone(), later(5)).await.is_err(), "{what}");
            let store = fault.inner();
            let verified = check_everything(store.clone())
                .await
                .unwrap_or_else(|e| panic!("{what}: {e:?}"));
            assert_eq!(verified, 2, "{what}");
            // Recovery: break the dead prune's lock if it was left, prune again, back up.
            let repo = Repository::open(store.clone(), TENANT, &passphrase())
                .await
                .unwrap();
            break_prune_lock(&repo, later(6).as_ref()).await.unwrap();
            let again = run(store.clone(), later(6))
                .await
                .unwrap_or_else(|e| panic!("{what}: second prune: {e:?}"));
            assert!(again.pending_packs.is_empty(), "{what}");
            assert_eq!(stored_bytes(&store, "index/").await.0, 1, "{what}");
            backup(&repo, &mb(), later(7), SMALL_BACKUP)
                .await
                .unwrap_or_else(|e| panic!("{what}: backup after: {e:?}"));
            assert_eq!(check_everything(store.clone()).await.unwrap(), 3, "{what}");
            contents_intact(store).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_index_file_is_reported_precisely_and_prune_rebuilds_it_from_packs() {
    let (store, _) = three().await;
    let index: Vec<StoreKey> = store
        .list("index/")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    let victim = &index[0];
    let mut bytes = store.get(victim).await.unwrap().to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    store
        .put(victim, Bytes::from(bytes), PutOptions::OVERWRITE)
        .await
        .unwrap();
    let repo = Repository::open(store.clone(), TENANT, &passphrase())
        .await
        .unwrap();
    let refresh = repo.refresh_index_report().await.unwrap();
    assert_eq!(refresh.bad_files.len(), 1);
    assert_eq!(refresh.bad_files[0].object, victim.as_str());
    assert!(matches!(
        refresh.bad_files[0].error,
        Error::AuthenticationFailed { .. }
    ));
    assert_eq!(refresh.files_read, index.len() - 1);
    assert_eq!(repo.bad_index_files(), vec![victim.as_str().to_owned()]);
    // The strict variant names it too, every time (the cache remembers it as bad).
    for _ in 0..2 {
        let err = repo.refresh_index().await.unwrap_err();
        assert!(
            matches!(err, Error::AuthenticationFailed { ref key } if key == victim.as_str()),
            "{err:?}"
        );
    }
    let err = check_everything(store.clone()).await.unwrap_err();
    assert!(
        matches!(err, Error::AuthenticationFailed { ref key } if key == victim.as_str()),
        "{err:?}"
    );
    let sum = prune(&repo, &PruneOptions::default(), later(5).as_ref())
        .await
        .unwrap();
    assert_eq!(sum.bad_index_files, vec![victim.as_str().to_owned()]);
    assert!(!sum.recovered_packs.is_empty(), "{sum:?}");
    assert_eq!(check_everything(store.clone()).await.unwrap(), 3);
    contents_intact(store).await;
}
