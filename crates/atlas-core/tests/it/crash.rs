//! Crash safety: a backup killed at every write position leaves a repository whose
//! snapshots all verify, and the next run (after breaking the stale lease) succeeds.

use std::sync::Arc;

use atlas_core::model::MailboxId;
use atlas_core::ports::{BlobStore, Clock, PutOptions};
use atlas_core::repo::Repository;
use atlas_store::{CrashLanding, FaultPlan, FaultStore, MemoryStore};

use crate::common::*;

/// The second run: some messages already stored (dedup), new ones, a chunked one and a
/// new folder.
const SECOND_BACKUP: &[(&str, usize, usize)] = &[
    ("Inbox", 1, 1500),
    ("Inbox", 6, 2000),
    ("Inbox", 8, 3900),
    ("Archive", 7, 100_000),
    ("Sent Items", 4, 3000),
];

fn mailbox() -> MailboxId {
    MailboxId::new("lucas.johnson@contoso.com")
}

/// A repository holding one committed snapshot.
async fn base() -> Arc<dyn BlobStore> {
    let store = memory();
    let repo = new_repo(store.clone()).await;
    backup(&repo, &mailbox(), clock_at(t0()), SMALL_BACKUP)
        .await
        .unwrap();
    store
}

async fn copy(src: &Arc<dyn BlobStore>) -> Arc<dyn BlobStore> {
    let dst: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
    for m in src.list("").await.unwrap() {
        let bytes = src.get(&m.key).await.unwrap();
        dst.put(&m.key, bytes, PutOptions::CREATE).await.unwrap();
    }
    dst
}

async fn second_run(store: Arc<dyn BlobStore>, clock: Arc<dyn Clock>) -> atlas_core::Result<()> {
    let repo = Repository::open(store, TENANT, &passphrase()).await?;
    backup(&repo, &mailbox(), clock, SECOND_BACKUP)
        .await
        .map(|_| ())
}

/// After the fault: everything verifies, then a recovery run succeeds and verifies.
async fn assert_recovers(store: Arc<dyn BlobStore>, what: &str) {
    let verified = check_everything(store.clone())
        .await
        .unwrap_or_else(|e| panic!("{what}: {e:?}"));
    assert!(verified >= 1, "{what}: the first snapshot must survive");
    let later = clock_at(t0() + chrono::Duration::minutes(10));
    let repo = Repository::open(store.clone(), TENANT, &passphrase())
        .await
        .unwrap();
    repo.break_lease(&mailbox(), later.as_ref()).await.unwrap();
    second_run(store.clone(), later)
        .await
        .unwrap_or_else(|e| panic!("{what}: recovery run: {e:?}"));
    let after = check_everything(store)
        .await
        .unwrap_or_else(|e| panic!("{what}: after recovery: {e:?}"));
    assert_eq!(after, verified + 1, "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_write_leaves_a_verifiable_repository() {
    let template = base().await;
    // Count the writes of an undisturbed second run.
    let counting = Arc::new(FaultStore::new(copy(&template).await));
    second_run(
        counting.clone(),
        clock_at(t0() + chrono::Duration::minutes(1)),
    )
    .await
    .unwrap();
    let writes = counting.writes();
    assert!(
        writes >= 6,
        "packs, index, record and lease writes expected, got {writes}"
    );

    for n in 1..=writes {
        for landing in [CrashLanding::Lost, CrashLanding::Landed] {
            let fault = Arc::new(FaultStore::with_plan(
                copy(&template).await,
                FaultPlan::new().crash_at_write(n, landing),
            ));
            let result =
                second_run(fault.clone(), clock_at(t0() + chrono::Duration::minutes(1))).await;
            assert!(
                result.is_err(),
                "crash at write {n} must surface as an error"
            );
            assert_recovers(fault.inner(), &format!("crash at write {n} ({landing:?})")).await;
        }
        // A single failed write (the process lives on and gives up the run).
        let fault = Arc::new(FaultStore::with_plan(
            copy(&template).await,
            FaultPlan::new().fail_write(n),
        ));
        let result = second_run(fault.clone(), clock_at(t0() + chrono::Duration::minutes(1))).await;
        assert!(result.is_err(), "failed write {n} must surface as an error");
        assert_recovers(fault.inner(), &format!("failed write {n}")).await;
    }
}
