//! Leases: one writer per mailbox, and never stuck after a crash (issue 11).

use std::sync::Arc;

use atlas_core::Error;
use atlas_core::model::MailboxId;
use atlas_core::ports::{BlobStore, Clock as _, FixedProcesses, HolderProcess, MailSource as _};
use atlas_core::repo::prune::{PruneOptions, prune};
use atlas_core::repo::{Repository, Standing};
use atlas_store::{FaultPlan, FaultStore};
use bytes::Bytes;

use crate::common::*;

fn process(host: &str, pid: u32) -> HolderProcess {
    HolderProcess {
        host: host.into(),
        pid,
        start: u64::from(pid) * 1000,
    }
}

/// A second handle on the same store, as another process would open it.
async fn reopen(store: Arc<dyn BlobStore>) -> Repository {
    Repository::open(store, TENANT, &passphrase())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_writer_per_mailbox_and_a_live_lease_cannot_be_broken() {
    let repo = new_repo(memory()).await;
    let mb = MailboxId::new("a@example.com");
    let clock = clock_at(t0());
    let first = repo
        .begin_backup(&mb, "host-a:1", clock.clone())
        .await
        .unwrap();
    let err = repo
        .begin_backup(&mb, "host-b:2", clock.clone())
        .await
        .unwrap_err();
    match &err {
        Error::LeaseHeld { owner, expires } => {
            assert_eq!(owner, "host-a:1");
            assert_eq!(*expires, t0() + chrono::Duration::seconds(60));
        }
        other => panic!("{other:?}"),
    }
    // The refusal says how to get out if the holder is gone.
    assert!(err.to_string().contains("atlas unlock"), "{err}");
    // Another mailbox is independent.
    let other = repo
        .begin_backup(&MailboxId::new("b@example.com"), "host-b:2", clock.clone())
        .await
        .unwrap();
    other.release().await.unwrap();
    // A live lease cannot be broken.
    assert!(matches!(
        repo.break_lease(&mb, clock.as_ref()).await,
        Err(Error::LeaseHeld { .. })
    ));
    first.release().await.unwrap();
    assert!(repo.lease_info(&mb).await.unwrap().is_none());
}

/// After expiry a new writer got "stale lease … break it explicitly to continue", and no
/// command could break it. An expired lease is taken over now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_is_taken_over_and_its_stalled_holder_cannot_commit() {
    let store = memory();
    let repo = new_repo(store.clone()).await;
    let mb = MailboxId::new("a@example.com");
    let clock = clock_at(t0());
    let mut stalled = repo
        .begin_backup(&mb, "host-a:1", clock.clone())
        .await
        .unwrap();
    clock.set(t0() + chrono::Duration::seconds(61));
    let other = reopen(store).await;
    let taker = other
        .begin_backup(&mb, "host-b:2", clock.clone())
        .await
        .unwrap();
    assert_eq!(
        other.lease_info(&mb).await.unwrap().unwrap().owner,
        "host-b:2"
    );
    // The stalled holder wakes: it can neither renew nor commit.
    assert!(matches!(
        stalled.renew_lease().await,
        Err(Error::LeaseLost { ref owner }) if owner == "host-b:2"
    ));
    taker.release().await.unwrap();
}

/// A backup killed with SIGKILL left its mailbox unusable ("being backed up by … (pid
/// 20771)" although that pid was dead). On the same host, a lease whose process is gone
/// is taken over at once; a running holder, or one on another host, still blocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_whose_process_is_gone_is_taken_over_at_once_on_the_same_host() {
    let store = memory();
    let a = new_repo(store.clone()).await;
    a.set_process_probe(Arc::new(FixedProcesses {
        current: process("boot-1/ns-1", 100),
        alive: vec![],
    }));
    let mb = MailboxId::new("a@example.com");
    let clock = clock_at(t0());
    let killed = a.begin_backup(&mb, "pid 100", clock.clone()).await.unwrap();
    let info = a.lease_info(&mb).await.unwrap().unwrap();
    assert_eq!(info.process, Some(process("boot-1/ns-1", 100)));
    assert_eq!(info.mailbox.as_deref(), Some("a@example.com"));
    drop(killed);

    // Pid 100 still runs (same start time): the lease holds.
    let b = reopen(store.clone()).await;
    b.set_process_probe(Arc::new(FixedProcesses {
        current: process("boot-1/ns-1", 200),
        alive: vec![process("boot-1/ns-1", 100)],
    }));
    assert!(matches!(
        b.begin_backup(&mb, "pid 200", clock.clone()).await,
        Err(Error::LeaseHeld { .. })
    ));
    // Another host (or container) cannot tell: the lease holds until it expires.
    let c = reopen(store.clone()).await;
    c.set_process_probe(Arc::new(FixedProcesses {
        current: process("boot-2/ns-1", 100),
        alive: vec![],
    }));
    assert!(matches!(
        c.begin_backup(&mb, "other host", clock.clone()).await,
        Err(Error::LeaseHeld { .. })
    ));
    // Pid 100 is gone (or reused by a process that started later): taken over at once,
    // long before the lease expires.
    let d = reopen(store.clone()).await;
    d.set_process_probe(Arc::new(FixedProcesses {
        current: process("boot-1/ns-1", 300),
        alive: vec![HolderProcess {
            start: 999_999,
            ..process("boot-1/ns-1", 100)
        }],
    }));
    let locks = d.list_locks(clock.as_ref()).await.unwrap();
    assert_eq!(locks.len(), 1);
    assert_eq!(locks[0].standing, Standing::HolderGone);
    let session = d.begin_backup(&mb, "pid 300", clock.clone()).await.unwrap();
    assert_eq!(d.lease_info(&mb).await.unwrap().unwrap().owner, "pid 300");
    session.release().await.unwrap();
}

/// Leases are renewed by a heartbeat while their holder lives and expire soon after it
/// stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_keeps_a_lease_and_it_expires_soon_after_the_heartbeat_stops() {
    let store = memory();
    let repo = new_repo(store.clone()).await;
    let mb = MailboxId::new("a@example.com");
    let clock = clock_at(t0());
    assert_eq!(
        repo.lease_heartbeat_interval(),
        std::time::Duration::from_secs(15)
    );
    let session = repo
        .begin_backup(&mb, "host-a:1", clock.clone())
        .await
        .unwrap();
    let other = reopen(store).await;
    // Ten minutes of heartbeats every 15 s: the lease never lapses.
    for step in 1..=40 {
        clock.set(t0() + chrono::Duration::seconds(15 * step));
        repo.renew_leases(clock.as_ref()).await.unwrap();
        assert!(matches!(
            other.begin_backup(&mb, "host-b:2", clock.clone()).await,
            Err(Error::LeaseHeld { .. })
        ));
    }
    assert!(session.lease_expires() > clock.now() + chrono::Duration::seconds(30));
    // The holder stops (hangs, is killed elsewhere): one lifetime later it is taken over.
    let stopped = clock.now();
    clock.set(stopped + chrono::Duration::seconds(61));
    let taker = other
        .begin_backup(&mb, "host-b:2", clock.clone())
        .await
        .unwrap();
    // The heartbeat of the old holder now reports the loss instead of resurrecting it.
    assert!(matches!(
        repo.renew_leases(clock.as_ref()).await,
        Err(Error::LeaseLost { .. })
    ));
    assert_eq!(
        other.lease_info(&mb).await.unwrap().unwrap().owner,
        "host-b:2"
    );
    drop(session);
    taker.release().await.unwrap();
}

/// Every exit path releases what it holds: a session dropped without commit or release
/// (a stopped command, a panicked task) is released by `release_leases`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_leases_frees_what_a_dropped_session_held() {
    let store = memory();
    let repo = new_repo(store.clone()).await;
    let mb = MailboxId::new("a@example.com");
    let clock = clock_at(t0());
    let session = repo.begin_backup(&mb, "h:1", clock.clone()).await.unwrap();
    drop(session);
    assert!(repo.lease_info(&mb).await.unwrap().is_some());
    assert_eq!(repo.release_leases().await.unwrap(), 1);
    assert!(repo.lease_info(&mb).await.unwrap().is_none());
    assert_eq!(repo.release_leases().await.unwrap(), 0);
    let again = reopen(store).await;
    again
        .begin_backup(&mb, "h:2", clock)
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
}

/// A full disk left leases behind in 2 of 4 runs: the final flush failed before the lease
/// was deleted. Release and a failed commit free the lease whatever the flush did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_never_leaves_the_lease_behind() {
    for commit in [false, true] {
        let inner = memory();
        new_repo(inner.clone()).await;
        // Write 1 is the lease, write 2 the mailbox record (format 4; format 5 writes none,
        // so write 2 is already a data write there); from 3 on the disk is full.
        let fault: Arc<dyn BlobStore> = Arc::new(FaultStore::with_plan(
            inner.clone(),
            FaultPlan::new().disk_full_from_write(3),
        ));
        let repo = reopen(fault).await;
        let mb = MailboxId::new("a@example.com");
        let clock = clock_at(t0());
        let mut session = repo.begin_backup(&mb, "h:1", clock.clone()).await.unwrap();
        session
            .put_blob(
                atlas_core::repo::BlobKind::Mime,
                Bytes::from_static(b"mail"),
            )
            .await
            .unwrap();
        let err = if commit {
            let record = atlas_core::model::SnapshotRecord {
                mailbox: mb.clone(),
                started: t0(),
                finished: t0(),
                tool: "test".into(),
                format_version: atlas_core::repo::FORMAT_VERSION,
                status: atlas_core::model::SnapshotStatus::Complete,
                folder_bookmark: None,
                folders: vec![],
            };
            session.commit(record).await.map(|_| ()).unwrap_err()
        } else {
            session.release().await.unwrap_err()
        };
        assert!(
            matches!(
                err,
                Error::Store(atlas_core::ports::StoreError::StorageFull { .. })
            ),
            "{err:?}"
        );
        let healthy = reopen(inner).await;
        assert!(
            healthy.lease_info(&mb).await.unwrap().is_none(),
            "commit={commit}: the lease was released"
        );
        healthy
            .begin_backup(&mb, "h:2", clock)
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
    }
}

/// A prune killed while holding its lock blocked every backup, still after the lock's
/// expiry ("prune … is running"), until `prune/lock` was deleted by hand. And forget,
/// prune and delete were blocked by stale mailbox leases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_prune_locks_and_stale_leases_block_nobody() {
    let store = memory();
    let repo = new_repo(store.clone()).await;
    let mb = MailboxId::new("a@example.com");
    let clock = clock_at(t0());
    // A prune that died: its lock stays behind (written as prune writes it).
    let dead_prune = reopen(store.clone()).await;
    let gate = Arc::new(tokio::sync::Notify::new());
    {
        // Take the lock through a prune whose store stalls at the first listing of
        // snapshots, then drop it: the lock object stays.
        let stalling: Arc<dyn BlobStore> = Arc::new(StallAfterLock {
            inner: store.clone(),
            gate: gate.clone(),
        });
        let dying = reopen(stalling).await;
        let clock2 = clock.clone();
        let task =
            tokio::spawn(
                async move { prune(&dying, &PruneOptions::default(), clock2.as_ref()).await },
            );
        while atlas_core::repo::prune::prune_lock_info(&dead_prune)
            .await
            .unwrap()
            .is_none()
        {
            tokio::task::yield_now().await;
        }
        task.abort();
        let _ = task.await;
    }
    assert!(
        atlas_core::repo::prune::prune_lock_info(&repo)
            .await
            .unwrap()
            .is_some()
    );
    // While valid, the lock keeps backups out.
    assert!(matches!(
        repo.begin_backup(&mb, "h:1", clock.clone()).await,
        Err(Error::MaintenanceRunning { .. })
    ));
    // After expiry the next backup removes it and runs.
    clock.set(t0() + chrono::Duration::seconds(61));
    let session = repo.begin_backup(&mb, "h:1", clock.clone()).await.unwrap();
    assert!(
        atlas_core::repo::prune::prune_lock_info(&repo)
            .await
            .unwrap()
            .is_none()
    );
    // That backup is killed in turn: its expired lease does not block prune.
    drop(session);
    clock.set(t0() + chrono::Duration::seconds(200));
    let fresh = reopen(store).await;
    prune(&fresh, &PruneOptions::default(), clock.as_ref())
        .await
        .unwrap();
    assert!(fresh.lease_info(&mb).await.unwrap().is_none());
}

/// `atlas unlock`'s core: stale entries go by default, valid ones only when asked to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_lock_takes_stale_entries_by_default_and_valid_ones_only_on_request() {
    let store = memory();
    let repo = new_repo(store.clone()).await;
    let clock = clock_at(t0());
    let live = repo
        .begin_backup(&MailboxId::new("live@example.com"), "h:1", clock.clone())
        .await
        .unwrap();
    let dead = repo
        .begin_backup(&MailboxId::new("dead@example.com"), "h:2", clock.clone())
        .await
        .unwrap();
    drop(dead);
    // h:1 keeps renewing; h:2 is gone and its lease expires.
    clock.set(t0() + chrono::Duration::seconds(45));
    let mut live = live;
    live.renew_lease().await.unwrap();
    clock.set(t0() + chrono::Duration::seconds(61));
    let other = reopen(store).await;
    let locks = other.list_locks(clock.as_ref()).await.unwrap();
    assert_eq!(locks.len(), 2, "{locks:?}");
    let standing = |m: &str| {
        locks
            .iter()
            .find(|l| l.info.as_ref().and_then(|i| i.mailbox.as_deref()) == Some(m))
            .map(|l| l.standing)
    };
    assert_eq!(standing("live@example.com"), Some(Standing::Valid));
    assert_eq!(standing("dead@example.com"), Some(Standing::Expired));
    for lock in &locks {
        let removed = other.remove_lock(&lock.key, false, clock.as_ref()).await;
        if lock.standing == Standing::Valid {
            assert!(
                matches!(removed, Err(Error::LeaseHeld { .. })),
                "{removed:?}"
            );
        } else {
            assert!(removed.unwrap().is_some());
        }
    }
    assert_eq!(other.list_locks(clock.as_ref()).await.unwrap().len(), 1);
    let key = other.list_locks(clock.as_ref()).await.unwrap()[0]
        .key
        .clone();
    assert!(
        other
            .remove_lock(&key, true, clock.as_ref())
            .await
            .unwrap()
            .is_some()
    );
    assert!(other.list_locks(clock.as_ref()).await.unwrap().is_empty());
    assert!(matches!(
        other.remove_lock("snapshots/x", true, clock.as_ref()).await,
        Err(Error::InvalidInput { .. })
    ));
    // The holder of the lease removed with --remove-all cannot commit any more.
    assert!(matches!(
        live.renew_lease().await,
        Err(Error::LeaseLost { .. })
    ));
}

/// A store that stalls forever on the first listing of snapshot records (prune's first
/// step after taking its lock).
#[derive(Debug)]
struct StallAfterLock {
    inner: Arc<dyn BlobStore>,
    gate: Arc<tokio::sync::Notify>,
}

#[async_trait::async_trait]
impl BlobStore for StallAfterLock {
    async fn put(
        &self,
        key: &atlas_core::ports::StoreKey,
        data: Bytes,
        opts: atlas_core::ports::PutOptions,
    ) -> Result<(), atlas_core::ports::StoreError> {
        self.inner.put(key, data, opts).await
    }
    async fn get(
        &self,
        key: &atlas_core::ports::StoreKey,
    ) -> Result<Bytes, atlas_core::ports::StoreError> {
        self.inner.get(key).await
    }
    async fn get_range(
        &self,
        key: &atlas_core::ports::StoreKey,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes, atlas_core::ports::StoreError> {
        self.inner.get_range(key, range).await
    }
    async fn head(
        &self,
        key: &atlas_core::ports::StoreKey,
    ) -> Result<Option<atlas_core::ports::ObjectMeta>, atlas_core::ports::StoreError> {
        self.inner.head(key).await
    }
    async fn list(
        &self,
        prefix: &str,
    ) -> Result<Vec<atlas_core::ports::ObjectMeta>, atlas_core::ports::StoreError> {
        if prefix.starts_with("snapshots") {
            self.gate.notified().await;
        }
        self.inner.list(prefix).await
    }
    async fn delete(
        &self,
        key: &atlas_core::ports::StoreKey,
    ) -> Result<(), atlas_core::ports::StoreError> {
        self.inner.delete(key).await
    }
    fn describe(&self) -> String {
        "stalls after the prune lock".into()
    }
}

/// `delete -m A` while B was being backed up removed A's snapshots and then exited 1 with
/// "mailbox is being backed up" (about B): the prune that follows the delete is
/// repository-wide. The delete's lease scope is its mailbox: A's records go and the
/// result says the prune waits; deleting the mailbox that is being backed up is refused
/// before anything is removed, and a backup of a mailbox being deleted cannot start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_of_one_mailbox_while_another_is_backed_up_succeeds() {
    use atlas_core::service::retention::{DeleteTarget, execute_delete_and_prune, plan_delete};
    let repo = new_repo(memory()).await;
    let clock = clock_at(t0());
    let a = MailboxId::new("a@example.com");
    let b = MailboxId::new("b@example.com");
    // A's messages are its own, so deleting A leaves data to free.
    backup(
        &repo,
        &a,
        clock.clone(),
        &[("Inbox", 11, 2000), ("Inbox", 12, 900)],
    )
    .await
    .unwrap();
    backup(&repo, &b, clock.clone(), SMALL_BACKUP)
        .await
        .unwrap();
    let running = repo
        .begin_backup(&b, "host-b:2", clock.clone())
        .await
        .unwrap();

    let plan = plan_delete(&repo, &DeleteTarget::Mailbox(a.clone()))
        .await
        .unwrap();
    let sum = execute_delete_and_prune(&repo, &plan, &PruneOptions::default(), clock.as_ref())
        .await
        .unwrap();
    assert_eq!(sum.snapshots_removed, 1);
    assert!(sum.prune.is_none());
    let why = sum.prune_deferred.as_deref().expect("the prune waits");
    assert!(why.contains("host-b:2"), "{why}");
    assert_eq!(repo.list_mailboxes().await.unwrap(), vec![b.clone()]);
    assert!(repo.lease_info(&a).await.unwrap().is_none(), "released");

    // The mailbox being backed up cannot be deleted under its backup's feet.
    let plan = plan_delete(&repo, &DeleteTarget::Mailbox(b.clone()))
        .await
        .unwrap();
    let err = execute_delete_and_prune(&repo, &plan, &PruneOptions::default(), clock.as_ref())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::LeaseHeld { .. }), "{err:?}");
    assert_eq!(
        repo.list_snapshots(&b).await.unwrap().len(),
        1,
        "nothing removed"
    );
    running.release().await.unwrap();

    // Once the backup is over, the next prune frees A's data and the repository is clean.
    let summary = prune(&repo, &PruneOptions::default(), clock.as_ref())
        .await
        .unwrap();
    assert!(summary.blobs_freed > 0, "{summary:?}");
}

/// `forget --prune` while another mailbox was being backed up removed the records and then
/// failed with "mailbox is being backed up" (about the other mailbox). Like `delete`, it
/// now succeeds with the prune deferred, and the next prune frees what the records used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_prune_while_another_mailbox_is_backed_up_defers_the_prune() {
    use atlas_core::service::retention::{
        ForgetOptions, KeepPolicy, execute_forget_and_prune, plan_forget,
    };
    let repo = new_repo(memory()).await;
    let clock = clock_at(t0());
    let a = MailboxId::new("a@example.com");
    let b = MailboxId::new("b@example.com");
    // A's first snapshot has a message of its own, so forgetting it leaves data to free;
    // the second starts an hour later, so it is the one `--keep-last 1` keeps.
    backup(&repo, &a, clock.clone(), &[("Inbox", 11, 2000)])
        .await
        .unwrap();
    backup(
        &repo,
        &a,
        clock_at(t0() + chrono::Duration::hours(1)),
        SMALL_BACKUP,
    )
    .await
    .unwrap();
    backup(&repo, &b, clock.clone(), SMALL_BACKUP)
        .await
        .unwrap();
    let running = repo
        .begin_backup(&b, "host-b:2", clock.clone())
        .await
        .unwrap();

    let plan = plan_forget(
        &repo,
        &ForgetOptions {
            policy: KeepPolicy {
                last: Some(1),
                ..KeepPolicy::default()
            },
            mailboxes: vec![a.clone()],
            allow_empty: false,
        },
    )
    .await
    .unwrap();
    let sum = execute_forget_and_prune(&repo, &plan, &PruneOptions::default(), clock.as_ref())
        .await
        .unwrap();
    assert_eq!(sum.snapshots_removed, 1);
    assert!(sum.is_complete());
    assert!(sum.prune.is_none());
    let why = sum.prune_deferred.as_deref().expect("the prune waits");
    assert!(why.contains("host-b:2"), "{why}");
    assert_eq!(repo.list_snapshots(&a).await.unwrap().len(), 1);
    running.release().await.unwrap();

    let summary = prune(&repo, &PruneOptions::default(), clock.as_ref())
        .await
        .unwrap();
    assert!(summary.blobs_freed > 0, "{summary:?}");
}

/// A full disk in the middle of a prune: the prune fails with the store's error, and its
/// lock is released (deleting works on a full disk), so the next backup is not blocked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_during_prune_releases_its_lock() {
    use atlas_core::service::retention::{DeleteTarget, execute_delete, plan_delete};
    let inner = memory();
    let repo = new_repo(inner.clone()).await;
    let clock = clock_at(t0());
    let a = MailboxId::new("a@example.com");
    let b = MailboxId::new("b@example.com");
    backup(&repo, &a, clock.clone(), &[("Inbox", 11, 2000)])
        .await
        .unwrap();
    backup(&repo, &b, clock.clone(), SMALL_BACKUP)
        .await
        .unwrap();
    // A's pack is shared with B's messages: the prune has to repack and write.
    let plan = plan_delete(&repo, &DeleteTarget::Mailbox(a.clone()))
        .await
        .unwrap();
    execute_delete(
        &repo,
        &plan,
        "test",
        clock.as_ref(),
        &atlas_core::ports::NullReporter,
    )
    .await
    .unwrap();
    // Write 1 is the prune lock; from 2 on the disk is full.
    let fault: Arc<dyn BlobStore> = Arc::new(FaultStore::with_plan(
        inner.clone(),
        FaultPlan::new().disk_full_from_write(2),
    ));
    let full = reopen(fault).await;
    let options = PruneOptions {
        repack_threshold: 0.0,
        ..PruneOptions::default()
    };
    let err = prune(&full, &options, clock.as_ref()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Store(atlas_core::ports::StoreError::StorageFull { .. })
        ),
        "{err:?}"
    );
    let healthy = reopen(inner.clone()).await;
    assert!(
        atlas_core::repo::prune::prune_lock_info(&healthy)
            .await
            .unwrap()
            .is_none(),
        "the prune lock was released"
    );
    backup(&healthy, &b, clock.clone(), SMALL_BACKUP)
        .await
        .unwrap();
    prune(&healthy, &options, clock.as_ref()).await.unwrap();
    check_everything(inner).await.unwrap();
}

/// A tenant run (`backup_mailboxes`) of `tenant`'s mailboxes `only` (all when empty).
async fn tenant_run(
    repo: &Repository,
    tenant: &atlas_core::testing::MemoryTenant,
    only: &[&MailboxId],
    clock: Arc<dyn atlas_core::ports::Clock>,
) -> Vec<atlas_core::service::backup::MailboxOutcome> {
    use atlas_core::service::Cancel;
    use atlas_core::service::backup::{BackupOptions, backup_mailboxes};
    let mut mailboxes = Vec::new();
    for address in tenant.addresses() {
        if only.is_empty() || only.iter().any(|m| m.address() == address) {
            mailboxes.push(tenant.resolve_mailbox(&address).await.unwrap());
        }
    }
    let opts = BackupOptions {
        lease_owner: "run-host:7".into(),
        ..BackupOptions::default()
    };
    backup_mailboxes(
        repo,
        Arc::new(tenant.clone()),
        mailboxes,
        &opts,
        2,
        clock,
        Arc::new(atlas_core::ports::NullReporter),
        Arc::new(Cancel::new()),
    )
    .await
}

/// Whether `m`'s run completed, or why it failed.
fn outcome_of<'a>(
    out: &'a [atlas_core::service::backup::MailboxOutcome],
    m: &MailboxId,
) -> Option<Result<bool, &'a Error>> {
    out.iter()
        .find(|o| o.mailbox == m.address())
        .map(|o| o.result.as_ref().map(|s| s.complete))
}

fn assert_all_complete(out: Vec<atlas_core::service::backup::MailboxOutcome>) {
    for o in out {
        assert!(o.result.unwrap().complete, "{}", o.mailbox);
    }
}

/// Issue 13: a tenant run wrote a lease (put and delete) and a mailbox record (a
/// create-if-absent put, refused but still a write) for every mailbox on every run: at
/// 300 messages per mailbox a third of the objects of a full backup. Now one lease per
/// run, and the mailbox record only when it is absent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_run_takes_one_lease_and_writes_each_mailbox_record_once() {
    let fault = Arc::new(FaultStore::new(memory()));
    // Mailbox records are written up to format 4 (those repositories keep them).
    let repo = new_repo_at_format(fault.clone(), MAILBOX_RECORDS_FORMAT).await;
    let tenant = atlas_core::testing::MemoryTenant::generate(5, 3, 4);
    let clock = clock_at(t0());
    for o in tenant_run(&repo, &tenant, &[], clock.clone()).await {
        assert!(o.result.unwrap().complete, "{}", o.mailbox);
    }
    let store = fault.inner();
    assert_eq!(store.list("mailboxes/").await.unwrap().len(), 3);
    assert!(store.list("locks/").await.unwrap().is_empty(), "released");

    // An unchanged incremental: the run's lease (put, delete) and one snapshot record per
    // mailbox, nothing else (it was 3 × (lease put, lease delete, mailbox record put,
    // snapshot record) = 12).
    fault.arm(FaultPlan::new());
    for o in tenant_run(
        &repo,
        &tenant,
        &[],
        clock_at(t0() + chrono::Duration::hours(1)),
    )
    .await
    {
        assert!(o.result.unwrap().complete, "{}", o.mailbox);
    }
    assert_eq!(fault.writes(), 2 + 3);

    // A mailbox record that went missing (a `delete` by an older build racing the run)
    // is written again before the mailbox's next snapshot record.
    let mb = MailboxId::new(&tenant.addresses()[0]);
    repo.delete_mailbox_record(&mb).await.unwrap();
    for o in tenant_run(
        &repo,
        &tenant,
        &[&mb],
        clock_at(t0() + chrono::Duration::hours(2)),
    )
    .await
    {
        assert!(o.result.unwrap().complete, "{}", o.mailbox);
    }
    assert_eq!(store.list("mailboxes/").await.unwrap().len(), 3);
    assert_eq!(repo.list_mailboxes().await.unwrap().len(), 3);
}

/// Issue 13: a first full backup wrote a mailbox record per mailbox next to its snapshot
/// record, 3.3 objects per 1,000 messages at 300 per mailbox, which kept it above SPEC §9's
/// 10. From format 5 on the snapshot record is the only record of a mailbox: a first run
/// into a new repository writes its packs, its index files, one snapshot record per
/// mailbox and its lease (put and delete), nothing else; the mailboxes are listed and
/// verified from their snapshot records, and one whose snapshots are gone is no longer
/// listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_run_into_a_new_repository_writes_no_mailbox_records() {
    let fault = Arc::new(FaultStore::new(memory()));
    let repo = new_repo(fault.clone()).await;
    let tenant = atlas_core::testing::MemoryTenant::generate(5, 3, 4);
    fault.arm(FaultPlan::new());
    assert_all_complete(tenant_run(&repo, &tenant, &[], clock_at(t0())).await);
    let store = fault.inner();
    let count = async |prefix: &str| store.list(prefix).await.unwrap().len() as u64;
    assert_eq!(count("mailboxes/").await, 0);
    assert_eq!(count("locks/").await, 0, "released");
    let (packs, index, snapshots) = (
        count("packs/").await,
        count("index/").await,
        count("snapshots/").await,
    );
    assert_eq!(snapshots, 3);
    assert_eq!(
        fault.writes(),
        packs + index + snapshots + 2,
        "packs, index files, snapshot records, the run lease's put and delete"
    );

    let mut expected: Vec<MailboxId> = tenant
        .addresses()
        .iter()
        .map(|a| MailboxId::new(a))
        .collect();
    expected.sort();
    assert_eq!(
        reopen(store.clone()).await.list_mailboxes().await.unwrap(),
        expected
    );
    assert_eq!(check_everything(store.clone()).await.unwrap(), 3);

    let gone = &expected[0];
    for s in repo.list_snapshots(gone).await.unwrap() {
        repo.delete_snapshot(s.id).await.unwrap();
    }
    assert_eq!(repo.delete_mailbox_record(gone).await.unwrap().removed, 0);
    assert_eq!(repo.list_mailboxes().await.unwrap(), expected[1..].to_vec());
}

/// The run lease protects each mailbox it names exactly as a mailbox lease does: a
/// mailbox another writer holds is refused (the others go on), a writer taking a mailbox
/// lease (`delete -m`, a single backup) is refused while a run names it, prune waits, a
/// later run yields to an earlier one, and an expired run lease blocks nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_lease_and_mailbox_leases_exclude_each_other() {
    use atlas_core::service::retention::{DeleteTarget, execute_delete, plan_delete};
    let store = memory();
    let repo = new_repo(store.clone()).await;
    let tenant = atlas_core::testing::MemoryTenant::generate(6, 2, 3);
    let a = MailboxId::new(&tenant.addresses()[0]);
    let b = MailboxId::new(&tenant.addresses()[1]);
    let clock = clock_at(t0());

    // A mailbox lease in the way: that mailbox fails, the other is backed up.
    let single = repo
        .begin_backup(&a, "host-a:1", clock.clone())
        .await
        .unwrap();
    let out = tenant_run(&repo, &tenant, &[], clock.clone()).await;
    assert!(
        matches!(outcome_of(&out, &a), Some(Err(Error::LeaseHeld { owner, .. })) if owner == "host-a:1"),
        "{out:?}"
    );
    assert!(matches!(outcome_of(&out, &b), Some(Ok(true))), "{out:?}");
    single.release().await.unwrap();
    assert_all_complete(tenant_run(&repo, &tenant, &[&a], clock.clone()).await);

    // A run lease naming A (another process's run, still going).
    let other = reopen(store).await;
    let run = other
        .begin_run(std::slice::from_ref(&a), "run-host:9", clock.as_ref())
        .await
        .unwrap();
    let err = repo
        .begin_backup(&a, "host-a:1", clock.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::LeaseHeld { owner, .. } if owner == "run-host:9"),
        "{err:?}"
    );
    assert!(
        repo.lease_info(&a).await.unwrap().is_none(),
        "the refused lease is gone"
    );
    // B is not named: its writers are not concerned.
    repo.begin_backup(&b, "host-b:2", clock.clone())
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    let plan = plan_delete(&repo, &DeleteTarget::Mailbox(a.clone()))
        .await
        .unwrap();
    let err = execute_delete(
        &repo,
        &plan,
        "host-d:3",
        clock.as_ref(),
        &atlas_core::ports::NullReporter,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::LeaseHeld { .. }), "{err:?}");
    assert_eq!(
        repo.list_snapshots(&a).await.unwrap().len(),
        1,
        "nothing removed"
    );
    assert_eq!(repo.list_snapshots(&b).await.unwrap().len(), 1);
    let err = prune(&repo, &PruneOptions::default(), clock.as_ref())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::LeaseHeld { .. }), "{err:?}");
    // A later run yields A to the earlier one and backs up B.
    let out = tenant_run(&repo, &tenant, &[], clock.clone()).await;
    assert!(
        matches!(outcome_of(&out, &a), Some(Err(Error::LeaseHeld { .. }))),
        "{out:?}"
    );
    assert!(matches!(outcome_of(&out, &b), Some(Ok(true))), "{out:?}");
    assert_eq!(repo.list_snapshots(&b).await.unwrap().len(), 2);

    // Once the earlier run is over, A is free again.
    run.release(&other).await.unwrap();
    assert_all_complete(tenant_run(&repo, &tenant, &[&a], clock.clone()).await);
    // An expired run lease (its process stopped renewing it) blocks nobody.
    let _dead = other
        .begin_run(&[a.clone(), b.clone()], "run-host:9", clock.as_ref())
        .await
        .unwrap();
    let later = clock_at(t0() + chrono::Duration::minutes(10));
    assert_all_complete(tenant_run(&repo, &tenant, &[], later.clone()).await);
    repo.begin_backup(&a, "host-a:1", later.clone())
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    prune(&repo, &PruneOptions::default(), later.as_ref())
        .await
        .unwrap();
    assert!(repo.list_locks(later.as_ref()).await.unwrap().is_empty());
}
