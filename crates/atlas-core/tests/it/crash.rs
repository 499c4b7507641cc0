//! Crash safety: a backup killed at every write position leaves a repository whose
//! snapshots all verify, and the next run (after breaking the stale lease) succeeds.

use std::sync::Arc;

use atlas_core::model::MailboxId;
use atlas_core::ports::{BlobStore, Clock, MailSource, NullReporter, PutOptions, SourceMailbox};
use atlas_core::repo::{KdfChoice, RepoSettings, Repository};
use atlas_core::service::Cancel;
use atlas_core::service::backup::{BackupOptions, MailboxOutcome, backup_mailboxes};
use atlas_core::testing::MemoryTenant;
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

/// The mailboxes of the tenant run below and the settings it writes with: packs small
/// enough that the run fills several, each shared by mailboxes.
const TENANT_MAILBOXES: usize = 3;

async fn tenant_template() -> (Arc<dyn BlobStore>, MemoryTenant) {
    let store = memory();
    Repository::init_with(
        store.clone(),
        TENANT,
        &passphrase(),
        KdfChoice::SCRYPT_MINIMUM,
        RepoSettings {
            pack_target_size: 8 << 10,
            ..small_settings()
        },
    )
    .await
    .unwrap();
    (store, MemoryTenant::generate(13, TENANT_MAILBOXES, 6))
}

async fn tenant_mailboxes(tenant: &MemoryTenant) -> Vec<SourceMailbox> {
    let mut out = Vec::new();
    for address in tenant.addresses() {
        out.push(tenant.resolve_mailbox(&address).await.unwrap());
    }
    out
}

/// One tenant run (all mailboxes at once, sharing the pack writer); the outcomes.
async fn tenant_run(
    store: Arc<dyn BlobStore>,
    tenant: &MemoryTenant,
    clock: Arc<dyn Clock>,
) -> atlas_core::Result<Vec<MailboxOutcome>> {
    let repo = Repository::open(store, TENANT, &passphrase()).await?;
    let opts = BackupOptions {
        page_size: 5,
        lease_owner: "test-host:1".into(),
        ..BackupOptions::default()
    };
    Ok(backup_mailboxes(
        &repo,
        Arc::new(tenant.clone()),
        tenant_mailboxes(tenant).await,
        &opts,
        // One fewer at once than there are mailboxes: the last one starts when a finished
        // one hands its place over while its commit waits for the shared pack.
        TENANT_MAILBOXES - 1,
        clock,
        Arc::new(NullReporter),
        Arc::new(Cancel::new()),
    )
    .await)
}

/// Every committed snapshot verifies and holds exactly its mailbox's messages (byte for
/// byte, as the tenant's dump has them); returns how many there are.
async fn assert_whole_snapshots(
    store: Arc<dyn BlobStore>,
    tenant: &MemoryTenant,
    what: &str,
) -> usize {
    let verified = check_everything(store.clone())
        .await
        .unwrap_or_else(|e| panic!("{what}: {e:?}"));
    let repo = Repository::open(store, TENANT, &passphrase())
        .await
        .unwrap();
    for address in tenant.addresses() {
        let Some(snap) = repo
            .latest_snapshot(&MailboxId::new(&address))
            .await
            .unwrap()
        else {
            continue;
        };
        let dump = tenant.dump(&address).unwrap();
        let mut stored = 0;
        for f in &snap.record.folders {
            for m in repo.load_folder_items(&f.items).await.unwrap() {
                let item = dump
                    .items
                    .iter()
                    .find(|i| i.id == m.id)
                    .unwrap_or_else(|| panic!("{what}: {} not in the tenant", m.id));
                for (kind, bytes) in &item.contents {
                    let content = m.content_of(*kind).unwrap();
                    let read = repo.read_blob(&content.id).await.unwrap();
                    assert!(read == *bytes, "{what}: {kind:?} of {} differs", m.id);
                }
                stored += 1;
            }
        }
        assert_eq!(stored, dump.items.len(), "{what}: {address}");
    }
    verified
}

/// After the fault: what was committed is whole; a recovery run (after the stale leases
/// are broken) backs up every mailbox and everything verifies.
async fn assert_tenant_recovers(store: Arc<dyn BlobStore>, tenant: &MemoryTenant, what: &str) {
    let before = assert_whole_snapshots(store.clone(), tenant, what).await;
    let later = clock_at(t0() + chrono::Duration::minutes(10));
    let repo = Repository::open(store.clone(), TENANT, &passphrase())
        .await
        .unwrap();
    for address in tenant.addresses() {
        repo.break_lease(&MailboxId::new(&address), later.as_ref())
            .await
            .unwrap();
    }
    for o in tenant_run(store.clone(), tenant, later).await.unwrap() {
        let s = o
            .result
            .unwrap_or_else(|e| panic!("{what}: recovery of {}: {e:?}", o.mailbox));
        assert!(s.complete, "{what}: {}", o.mailbox);
    }
    let after = assert_whole_snapshots(store, tenant, what).await;
    assert_eq!(after, before + TENANT_MAILBOXES, "{what}");
}

/// Issue 13: the same for a tenant run whose mailboxes share packs and index files — a
/// crash at any write (or one failed write) leaves only whole snapshots: a mailbox whose
/// record was written has every pack and index entry it references, although the packs
/// were filled and sealed together with the other mailboxes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_write_of_a_tenant_run_leaves_only_whole_snapshots() {
    let (template, tenant) = tenant_template().await;
    let counting = Arc::new(FaultStore::new(copy(&template).await));
    let outcomes = tenant_run(counting.clone(), &tenant, clock_at(t0()))
        .await
        .unwrap();
    assert!(outcomes.iter().all(|o| o.result.is_ok()), "{outcomes:?}");
    let packs = counting.inner().list("packs/").await.unwrap().len();
    assert!(packs >= 2, "several packs: {packs}");
    let writes = counting.writes();

    for n in 1..=writes {
        for landing in [CrashLanding::Lost, CrashLanding::Landed] {
            let fault = Arc::new(FaultStore::with_plan(
                copy(&template).await,
                FaultPlan::new().crash_at_write(n, landing),
            ));
            let outcomes = tenant_run(fault.clone(), &tenant, clock_at(t0())).await;
            // The order of writes varies between runs of mailboxes in parallel: a run
            // that wrote fewer than `n` times did not crash.
            assert!(
                !fault.is_crashed()
                    || outcomes.map_or(true, |o| o.iter().any(|o| o.result.is_err())),
                "crash at write {n} must surface as an error"
            );
            assert_tenant_recovers(
                fault.inner(),
                &tenant,
                &format!("crash at write {n} ({landing:?})"),
            )
            .await;
        }
        let fault = Arc::new(FaultStore::with_plan(
            copy(&template).await,
            FaultPlan::new().fail_write(n),
        ));
        let outcomes = tenant_run(fault.clone(), &tenant, clock_at(t0()))
            .await
            .unwrap();
        assert!(
            fault.injected() == 0 || outcomes.iter().any(|o| o.result.is_err()),
            "failed write {n} must surface as an error"
        );
        assert_tenant_recovers(fault.inner(), &tenant, &format!("failed write {n}")).await;
    }
}
