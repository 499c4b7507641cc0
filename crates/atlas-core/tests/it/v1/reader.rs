//! Detect, open, list, as-of merge, v1 verify and damage naming on the fixture bucket.

use std::collections::BTreeSet;
use std::sync::Arc;

use atlas_core::Error;
use atlas_core::compat::v1::{self, V1ProblemKind, V1Repository};
use atlas_core::ports::{BlobStore, Event, NullReporter, Reporter, Task};
use atlas_core::repo::Passphrase;
use atlas_store::{LocalStore, MemoryStore};

use crate::v1::common::{
    LUCAS, OMAR, TENANT, copy_objects, expected_snapshots, fixture, fixture_store, object_keys,
    passphrase,
};

#[tokio::test]
async fn detects_the_fixture_and_not_other_stores() {
    assert!(v1::detect(&fixture_store()).await.unwrap());
    let empty: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
    assert!(!v1::detect(&empty).await.unwrap());
}

#[tokio::test]
async fn lists_exactly_the_expected_mailboxes_snapshots_and_counts() {
    let repo = fixture().await;
    assert_eq!(repo.list_mailboxes().await.unwrap(), vec![LUCAS, OMAR]);
    for mailbox in [LUCAS, OMAR] {
        let list = repo.list_snapshots(mailbox).await.unwrap();
        assert!(list.damaged.is_empty());
        let expected = expected_snapshots(mailbox);
        assert_eq!(list.snapshots.len(), expected.len(), "{mailbox}");
        for (got, want) in list.snapshots.iter().zip(&expected) {
            assert_eq!(got.snapshot_id, want["snapshot_id"].as_str().unwrap());
            assert_eq!(got.manifest_key, want["manifest_key"].as_str().unwrap());
            assert_eq!(
                got.created_at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
                want["created_at"].as_str().unwrap()
            );
            assert_eq!(
                got.manifest.entries.len() as u64,
                want["message_count"].as_u64().unwrap()
            );
            let attachments: usize = got
                .manifest
                .entries
                .iter()
                .map(|e| e.attachments.len())
                .sum();
            assert_eq!(
                attachments as u64,
                want["attachment_count"].as_u64().unwrap()
            );
            let ids: BTreeSet<&str> = got
                .manifest
                .entries
                .iter()
                .map(|e| e.object_id.as_str())
                .collect();
            let want_ids: BTreeSet<&str> = want["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["graph_id"].as_str().unwrap())
                .collect();
            assert_eq!(ids, want_ids);
        }
    }
}

#[tokio::test]
async fn as_of_merges_delta_manifests_newest_version_winning() {
    let repo = fixture().await;
    let list = repo.list_snapshots(LUCAS).await.unwrap();
    let first = list.as_of("b7a86cc0-6b84-4975-9ed2-737b94eb121f").unwrap();
    assert_eq!(first.entries.len(), 30);
    let second = list.as_of("8164f491-2eb9-411e-9ba9-777e93d4104d").unwrap();
    assert_eq!(
        second.entries.len(),
        36,
        "README: 36 unique messages over 2 snapshots"
    );
    assert!(
        !second.deletions_recorded,
        "v1 never recorded deletions: say so"
    );
    // The updated subject is the newest version.
    let updated = second
        .entries
        .iter()
        .find(|e| {
            e.object_id == "AAMkADth12yLvTVSvE99X27A5WaJRjb9RDdTvuet9YKmrPVtSltPKwrjQtp8v1vktbAAA="
        })
        .unwrap();
    assert_eq!(
        updated.subject.as_deref(),
        Some("Päivitetty aihe — ünïcödé ✓")
    );
    // Deleted messages are still there (not recorded), as README says.
    let deleted = "AAMkAD96A6hvnCyXl89q7cZVi4oAgRRbej7UFP-OlYfKhMdjLJzCNxLqUyj2m961ruAAA=";
    assert!(second.entries.iter().any(|e| e.object_id == deleted));
    assert!(list.as_of("no-such-snapshot").is_none());
    let attachments: usize = second.entries.iter().map(|e| e.attachments.len()).sum();
    assert_eq!(attachments, 11);
    let omar = repo.list_snapshots(OMAR).await.unwrap();
    let state = omar.as_of("792fb84e-8f0a-4b4c-885e-bf4e9ef663a7").unwrap();
    assert_eq!(state.entries.len(), 35);
    assert_eq!(
        state
            .entries
            .iter()
            .map(|e| e.attachments.len())
            .sum::<usize>(),
        16
    );
}

#[tokio::test]
async fn v1_verify_passes_on_the_fixture() {
    let report = fixture().await.verify(None, &NullReporter).await.unwrap();
    assert!(report.is_ok(), "{:#?}", report.problems);
    assert_eq!(report.mailboxes, 2);
    assert_eq!(report.manifests, 3);
    assert_eq!(report.messages, 74, "every data object is referenced");
    // 27 attachment objects; the PNG shared by both mailboxes exists under each prefix.
    assert_eq!(report.attachments, 27);
}

/// Keeps every event.
#[derive(Debug, Default)]
struct Recorder(std::sync::Mutex<Vec<Event>>);

impl Reporter for Recorder {
    fn report(&self, event: Event) {
        self.0.lock().unwrap().push(event);
    }
}

/// Regression: `verify` of a v1 repository was silent for as long as it read every
/// object. It reports one task per mailbox whose total is what it then reads.
#[tokio::test]
async fn v1_verify_reports_progress_per_mailbox() {
    let recorder = Recorder::default();
    let report = fixture().await.verify(None, &recorder).await.unwrap();
    let events = recorder.0.into_inner().unwrap();
    let (mut started, mut total, mut done, mut finished) = (0, 0, 0, 0);
    for e in &events {
        match e {
            Event::TaskStarted {
                task: Task::VerifyV1,
                total: t,
                ..
            } => {
                started += 1;
                total += t.expect("a total");
            }
            Event::TaskProgress {
                task: Task::VerifyV1,
                done: d,
                ..
            } => done += d,
            Event::TaskDone {
                task: Task::VerifyV1,
            } => finished += 1,
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(started, 2, "one task per mailbox: {events:?}");
    assert_eq!(finished, 2);
    let read = (report.messages + report.attachments) as u64;
    assert_eq!(done, read);
    assert_eq!(total, read, "the totals announce what is read");
}

#[tokio::test]
async fn wrong_passphrase_is_reported_as_such() {
    let err = V1Repository::open(fixture_store(), TENANT, &Passphrase::new("nope"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::WrongPassphrase { .. }), "{err:?}");
    let err = V1Repository::open(fixture_store(), "another-tenant", &passphrase())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::WrongPassphrase { .. }), "{err:?}");
}

#[tokio::test]
async fn a_flipped_byte_in_any_object_is_detected_and_named() {
    let dir = copy_objects();
    let store: Arc<dyn BlobStore> = Arc::new(LocalStore::new(dir.path()));
    let repo = V1Repository::open(store, TENANT, &passphrase())
        .await
        .unwrap();
    let keys: Vec<String> = object_keys(dir.path())
        .into_iter()
        .filter(|k| !k.starts_with("_meta/"))
        .collect();
    assert_eq!(keys.len(), 104);
    for key in keys {
        let path = dir.path().join(&key);
        let original = std::fs::read(&path).unwrap();
        let mut damaged = original.clone();
        let at = damaged.len() / 2;
        damaged[at] ^= 0x01;
        std::fs::write(&path, &damaged).unwrap();
        let report = repo.verify(None, &NullReporter).await.unwrap();
        std::fs::write(&path, &original).unwrap();
        assert!(!report.problems.is_empty(), "flip in {key} not detected");
        for p in &report.problems {
            assert_eq!(p.key, key, "problem names the damaged object");
            assert_eq!(p.kind, V1ProblemKind::Damaged);
            assert!(key.contains(&p.mailbox));
            assert!(p.snapshot_id.is_some());
            if key.starts_with("data/") {
                assert!(p.message_id.is_some());
            }
            if key.starts_with("attachments/") {
                assert!(p.message_id.is_some() && p.attachment_id.is_some());
            }
        }
    }
    assert!(repo.verify(None, &NullReporter).await.unwrap().is_ok());
}

#[tokio::test]
async fn missing_and_swapped_objects_are_named() {
    let dir = copy_objects();
    let store: Arc<dyn BlobStore> = Arc::new(LocalStore::new(dir.path()));
    let repo = V1Repository::open(store, TENANT, &passphrase())
        .await
        .unwrap();
    let data =
        format!("data/{LUCAS}/f816fcf7905beb8f6130a1eb903d10f4f689eacd95a7fa807c7cbea6b510895d");
    std::fs::remove_file(dir.path().join(&data)).unwrap();
    // Swap: a valid ciphertext of another attachment under this attachment's name (no
    // AAD in v1, so only the checksum can catch it).
    let a = format!(
        "attachments/{OMAR}/04b30b0ccef333896eb1636880c3604525dd128b2ac96b305babea8c807288a7"
    );
    let b = format!(
        "attachments/{OMAR}/3596647287b7399ae6e41c1861793e089feeaf8f25a2a9bb4b7f93c704edde46"
    );
    std::fs::copy(dir.path().join(&b), dir.path().join(&a)).unwrap();
    let report = repo.verify(None, &NullReporter).await.unwrap();
    let missing: Vec<_> = report.problems.iter().filter(|p| p.key == data).collect();
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0].kind, V1ProblemKind::Missing);
    assert_eq!(
        missing[0].message_id.as_deref(),
        Some("AAMkADT9lXVLxBwx4kZ_smsSxDdGryACHBtQaqF10G7hU4bMwlwikh_7TxsLlAUUh5AAA=")
    );
    let swapped: Vec<_> = report.problems.iter().filter(|p| p.key == a).collect();
    assert!(!swapped.is_empty());
    assert!(
        swapped
            .iter()
            .all(|p| p.kind == V1ProblemKind::ChecksumMismatch)
    );
    assert_eq!(report.problems.len(), 1 + swapped.len());
    // Verify of one mailbox only sees that mailbox.
    let only = repo.verify(Some(LUCAS), &NullReporter).await.unwrap();
    assert_eq!(only.mailboxes, 1);
    assert!(only.problems.iter().all(|p| p.mailbox == LUCAS));
}
