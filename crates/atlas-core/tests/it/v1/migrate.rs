//! Migration of the fixture into a v2 repository: every snapshot with its time and
//! counts, verifiable, MIME equal to the rebuild; idempotent; resumable after a crash;
//! damaged v1 objects become item errors.

use std::collections::BTreeMap;
use std::sync::Arc;

use atlas_core::compat::v1::{V1Entry, V1Repository};
use atlas_core::model::{MailboxId, SnapshotStatus};
use atlas_core::ports::{BlobStore, Clock, FixedClock, NullReporter};
use atlas_core::repo::{KdfChoice, Passphrase, RepoSettings, Repository};
use atlas_core::service::migrate::{MigrateOptions, migrate_v1, migrated_from_v1};
use atlas_store::{CrashLanding, FaultPlan, FaultStore, LocalStore, MemoryStore};
use chrono::{Duration, TimeZone, Utc};

use crate::v1::common::{
    LUCAS, OMAR, TENANT, copy_objects, expected_snapshots, fixture, passphrase,
};

fn target_passphrase() -> Passphrase {
    Passphrase::new("target passphrase")
}

fn clock() -> Arc<FixedClock> {
    Arc::new(FixedClock::new(
        Utc.with_ymd_and_hms(2027, 1, 5, 9, 0, 0).unwrap(),
    ))
}

async fn init_target(store: Arc<dyn BlobStore>) -> Repository {
    Repository::init_with(
        store,
        TENANT,
        &target_passphrase(),
        KdfChoice::SCRYPT_MINIMUM,
        RepoSettings {
            pack_target_size: 64 * 1024,
            ..RepoSettings::default()
        },
    )
    .await
    .unwrap()
}

/// The as-of entry of every (v1 snapshot id, message id).
async fn as_of_entries(v1: &V1Repository) -> BTreeMap<(String, String), V1Entry> {
    let mut out = BTreeMap::new();
    for mb in v1.list_mailboxes().await.unwrap() {
        let list = v1.list_snapshots(&mb).await.unwrap();
        for s in &list.snapshots {
            for e in list.as_of(&s.snapshot_id).unwrap().entries {
                out.insert((s.snapshot_id.clone(), e.object_id.clone()), e);
            }
        }
    }
    out
}

/// Check the target holds exactly the fixture's snapshots, complete and verifiable, with
/// every message's MIME equal to the rebuild.
async fn assert_fully_migrated(v1: &V1Repository, target: &Repository) {
    let entries = as_of_entries(v1).await;
    for (mailbox, counts) in [(LUCAS, vec![30u64, 36]), (OMAR, vec![35])] {
        let infos = target
            .list_snapshots(&MailboxId::new(mailbox))
            .await
            .unwrap();
        let expected = expected_snapshots(mailbox);
        assert_eq!(
            infos.len(),
            expected.len(),
            "{mailbox}: one v2 snapshot per v1 snapshot"
        );
        for ((info, want), count) in infos.iter().zip(&expected).zip(counts) {
            let snap = target.load_snapshot(info.id).await.unwrap();
            let v1_id = want["snapshot_id"].as_str().unwrap();
            assert_eq!(migrated_from_v1(&snap.record), Some(v1_id));
            let created = want["created_at"].as_str().unwrap();
            assert_eq!(
                info.started.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
                created
            );
            assert_eq!(snap.record.started, snap.record.finished);
            assert_eq!(snap.record.status, SnapshotStatus::Complete);
            let stored: u64 = snap
                .record
                .folders
                .iter()
                .map(|f| f.stored_item_count)
                .sum();
            assert_eq!(stored, count, "{mailbox} {v1_id}");
            let report = target.verify_snapshot(info.id).await.unwrap();
            assert!(report.is_ok(), "{report:?}");
            for folder in &snap.record.folders {
                assert!(folder.folder.display_name.starts_with("folder-"));
                assert!(folder.delta_link.is_none());
                for meta in target.load_folder_items(&folder.items).await.unwrap() {
                    let entry = &entries[&(v1_id.to_owned(), meta.id.as_str().to_owned())];
                    assert_eq!(
                        Some(meta.parent_folder_id.as_str()),
                        entry.folder_id.as_deref()
                    );
                    let mime = target.read_blob(&meta.mime).await.unwrap();
                    let rebuilt = v1.rebuild_mime(mailbox, entry).await.unwrap();
                    assert_eq!(&mime[..], &rebuilt.mime[..], "MIME of {}", meta.id);
                    // Migrated into a format-4 repository: no SHA-256 in the record.
                    assert!(meta.mime_sha256.is_empty());
                    assert_eq!(meta.attachment_count as usize, entry.attachments.len());
                }
            }
        }
    }
}

#[tokio::test]
async fn migrates_every_snapshot_and_a_rerun_writes_nothing() {
    let v1 = fixture().await;
    let fault = Arc::new(FaultStore::new(Arc::new(MemoryStore::new())));
    let store: Arc<dyn BlobStore> = fault.clone();
    let target = init_target(store).await;
    let clock = clock();
    let opts = MigrateOptions::default();
    let summary = migrate_v1(v1, &target, clock.clone(), &NullReporter, &opts)
        .await
        .unwrap();
    assert!(summary.is_complete());
    assert_eq!(summary.snapshots_written(), 3);
    let lucas = &summary.mailboxes[0];
    assert_eq!(lucas.v1_mailbox, LUCAS);
    let ids: Vec<_> = lucas
        .migrated
        .iter()
        .map(|m| m.v1_snapshot_id.as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "b7a86cc0-6b84-4975-9ed2-737b94eb121f",
            "8164f491-2eb9-411e-9ba9-777e93d4104d"
        ]
    );
    assert_eq!(
        lucas
            .migrated
            .iter()
            .map(|m| m.messages)
            .collect::<Vec<_>>(),
        [30, 36]
    );
    assert_fully_migrated(v1, &target).await;
    // The v1 repository was left untouched.
    assert!(
        fixture()
            .await
            .verify(None, &NullReporter)
            .await
            .unwrap()
            .is_ok()
    );

    let writes = fault.writes();
    let again = migrate_v1(v1, &target, clock, &NullReporter, &opts)
        .await
        .unwrap();
    assert_eq!(again.snapshots_written(), 0);
    assert_eq!(
        again
            .mailboxes
            .iter()
            .map(|m| m.skipped.len())
            .sum::<usize>(),
        3
    );
    assert_eq!(fault.writes(), writes, "a second run writes nothing");
}

#[tokio::test]
async fn an_interrupted_migration_completes_on_rerun() {
    let v1 = fixture().await;
    // Count the writes of a whole run.
    let probe = Arc::new(FaultStore::new(Arc::new(MemoryStore::new())));
    let target = init_target(probe.clone()).await;
    let before = probe.writes();
    migrate_v1(
        v1,
        &target,
        clock(),
        &NullReporter,
        &MigrateOptions::default(),
    )
    .await
    .unwrap();
    let total = probe.writes() - before;
    assert!(total > 10, "{total}");
    for (n, landing) in [
        (1, CrashLanding::Lost),
        (total / 3, CrashLanding::Landed),
        (total / 2, CrashLanding::Lost),
        (total - 1, CrashLanding::Landed),
        (total, CrashLanding::Lost),
    ] {
        let inner: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
        init_target(inner.clone()).await;
        let fault = Arc::new(FaultStore::with_plan(
            inner.clone(),
            FaultPlan::new().crash_at_write(n, landing),
        ));
        let crashed = Repository::open(fault.clone(), TENANT, &target_passphrase())
            .await
            .unwrap();
        let clock = clock();
        let opts = MigrateOptions::default();
        let err = migrate_v1(v1, &crashed, clock.clone(), &NullReporter, &opts).await;
        assert!(err.is_err(), "crash at write {n} must surface");
        // Restart later (the crashed run's lease has expired) on what the crash left.
        clock.set(clock.now() + Duration::days(1));
        let target = Repository::open(inner, TENANT, &target_passphrase())
            .await
            .unwrap();
        let summary = migrate_v1(v1, &target, clock, &NullReporter, &opts)
            .await
            .unwrap();
        assert!(summary.is_complete(), "crash at {n}");
        assert_fully_migrated(v1, &target).await;
    }
}

#[tokio::test]
async fn damaged_v1_objects_become_item_errors() {
    let dir = copy_objects();
    // A message only in lucas's first snapshot, and an attachment of omar's.
    let data =
        format!("data/{LUCAS}/f816fcf7905beb8f6130a1eb903d10f4f689eacd95a7fa807c7cbea6b510895d");
    let att = format!(
        "attachments/{OMAR}/04b30b0ccef333896eb1636880c3604525dd128b2ac96b305babea8c807288a7"
    );
    for key in [&data, &att] {
        let path = dir.path().join(key);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[40] ^= 0x80;
        std::fs::write(&path, bytes).unwrap();
    }
    let v1_store: Arc<dyn BlobStore> = Arc::new(LocalStore::new(dir.path()));
    let v1 = V1Repository::open(v1_store, TENANT, &passphrase())
        .await
        .unwrap();
    let target = init_target(Arc::new(MemoryStore::new())).await;
    let summary = migrate_v1(
        &v1,
        &target,
        clock(),
        &NullReporter,
        &MigrateOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        summary.snapshots_written(),
        3,
        "damage never aborts the run"
    );
    assert!(!summary.is_complete());
    let lucas = &summary.mailboxes[0];
    // The damaged message is in both as-of states of lucas.
    for m in &lucas.migrated {
        assert_eq!(m.status, SnapshotStatus::Partial);
        assert_eq!(m.item_errors, 1);
    }
    assert_eq!(lucas.migrated[0].messages, 29);
    assert_eq!(lucas.migrated[1].messages, 35);
    let omar = &summary.mailboxes[1];
    assert_eq!(omar.migrated[0].status, SnapshotStatus::Partial);
    assert_eq!(
        omar.migrated[0].messages, 35,
        "message kept without the attachment"
    );
    let snap = target
        .load_snapshot(lucas.migrated[0].snapshot_id)
        .await
        .unwrap();
    let errors: Vec<_> = snap.record.folders.iter().flat_map(|f| &f.errors).collect();
    assert_eq!(errors.len(), 1);
    assert_eq!(
        errors[0].message_id.as_ref().unwrap().as_str(),
        "AAMkADT9lXVLxBwx4kZ_smsSxDdGryACHBtQaqF10G7hU4bMwlwikh_7TxsLlAUUh5AAA="
    );
    assert!(errors[0].reason.contains(&data));
    let osnap = target
        .load_snapshot(omar.migrated[0].snapshot_id)
        .await
        .unwrap();
    let oerr: Vec<_> = osnap
        .record
        .folders
        .iter()
        .flat_map(|f| &f.errors)
        .collect();
    assert_eq!(oerr.len(), 1);
    assert!(oerr[0].reason.contains(&att));
    for m in summary.mailboxes.iter().flat_map(|m| &m.migrated) {
        assert!(target.verify_snapshot(m.snapshot_id).await.unwrap().is_ok());
    }
}
