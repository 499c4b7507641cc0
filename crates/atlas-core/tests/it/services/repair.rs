//! `repair`: each kind of damage is healed so that `verify` is clean again, every loss is
//! recorded in the snapshots that had the item, and nothing damaged is ever deduplicated
//! against again.

use std::sync::Arc;

use atlas_core::model::SnapshotId;
use atlas_core::ports::{BlobStore, FixedClock, PutOptions, StoreKey};
use atlas_core::repo::{BlobKind, Repository};
use atlas_core::service::repair::{LOST_PREFIX, RepairOptions, execute, plan};
use atlas_core::service::verify::{ContentCheck, ReadData, VerifyOptions, VerifyScope, verify};
use bytes::Bytes;
use chrono::Duration;

use crate::services::common::{
    Att, Msg, TENANT, backup_folders, mailbox, new_repo, new_repo_at_format, passphrase,
    sample_folders, t0,
};

async fn reopen(store: &Arc<dyn BlobStore>) -> Repository {
    Repository::open(store.clone(), TENANT, &passphrase())
        .await
        .unwrap()
}

pub(super) async fn verify_all(repo: &Repository) -> atlas_core::service::verify::VerifySummary {
    verify(
        repo,
        &VerifyOptions {
            scope: VerifyScope::All,
            content_check: ContentCheck::Decode,
            read_data: ReadData::ALL,
        },
    )
    .await
    .unwrap()
}

fn opts() -> RepairOptions {
    RepairOptions {
        owner: "repair-test".into(),
        tool: "atlas-test repair".into(),
    }
}

fn clock() -> Arc<FixedClock> {
    Arc::new(FixedClock::new(t0() + Duration::days(1)))
}

/// Two snapshots of the sample mailbox sharing every blob (the second an unchanged rerun).
async fn two_snapshots() -> (Arc<dyn BlobStore>, Repository, [SnapshotId; 2]) {
    two_snapshots_at(atlas_core::repo::FORMAT_VERSION).await
}

/// [`two_snapshots`] in a repository of `format`.
async fn two_snapshots_at(format: u32) -> (Arc<dyn BlobStore>, Repository, [SnapshotId; 2]) {
    let (store, repo) = new_repo_at_format(format).await;
    let a = backup_folders(&repo, &mailbox(), t0(), &sample_folders(), false).await;
    let b = backup_folders(
        &repo,
        &mailbox(),
        t0() + Duration::hours(1),
        &sample_folders(),
        false,
    )
    .await;
    (store, repo, [a, b])
}

/// Where a message's content is: (pack key, offset of the middle of its blob).
async fn blob_of(repo: &Repository, snap: SnapshotId, message: &str) -> (StoreKey, usize) {
    let record = repo.load_snapshot(snap).await.unwrap().record;
    for f in &record.folders {
        for m in repo.load_folder_items(&f.items).await.unwrap() {
            if m.id.as_str() == message {
                let loc = repo.locate(&m.mime).await.unwrap();
                return (
                    StoreKey::new(loc.pack.store_key()).unwrap(),
                    (loc.offset + loc.length / 2) as usize,
                );
            }
        }
    }
    panic!("{message} not found");
}

async fn flip(store: &Arc<dyn BlobStore>, key: &StoreKey, at: usize) {
    let mut bytes = store.get(key).await.unwrap().to_vec();
    bytes[at] ^= 0x08;
    store
        .put(key, Bytes::from(bytes), PutOptions::OVERWRITE)
        .await
        .unwrap();
}

/// Every snapshot of the mailbox, newest last, with its item errors.
async fn item_errors(repo: &Repository) -> Vec<Vec<(Option<String>, String)>> {
    let mut out = Vec::new();
    for info in repo.list_snapshots(&mailbox()).await.unwrap() {
        let record = repo.load_snapshot(info.id).await.unwrap().record;
        out.push(
            record
                .folders
                .iter()
                .flat_map(|f| &f.errors)
                .map(|e| {
                    (
                        e.message_id.as_ref().map(|m| m.as_str().to_owned()),
                        e.reason.clone(),
                    )
                })
                .collect(),
        );
    }
    out
}

#[tokio::test]
async fn a_damaged_message_is_dropped_recorded_in_every_snapshot_and_never_deduplicated() {
    let (store, repo, [a, b]) = two_snapshots().await;
    let (pack, at) = blob_of(&repo, b, "AAMkAGI2-inbox-2").await;
    flip(&store, &pack, at).await;
    let repo = reopen(&store).await;
    let before = verify_all(&repo).await;
    // Named against both snapshots that keep the message.
    let named: Vec<SnapshotId> = before
        .damage
        .iter()
        .filter(|d| {
            d.message_id
                .as_ref()
                .is_some_and(|m| m.as_str() == "AAMkAGI2-inbox-2")
        })
        .filter_map(|d| d.snapshot)
        .collect();
    assert!(
        named.contains(&a) && named.contains(&b),
        "{:?}",
        before.damage
    );
    assert!(
        before
            .next_step
            .as_deref()
            .is_some_and(|s| s.contains("atlas repair"))
    );

    let planned = plan(&repo, &opts(), clock().as_ref()).await.unwrap();
    assert!(!planned.executed);
    assert_eq!(planned.items_lost(), 2, "{planned:?}");
    assert!(
        !verify_all(&reopen(&store).await).await.is_ok(),
        "a plan wrote"
    );

    let done = execute(&repo, &opts(), clock()).await.unwrap();
    assert_eq!(done.storage.dropped.len(), 1, "{done:?}");
    assert_eq!(done.snapshots.len(), 2);
    assert!(done.snapshots.iter().all(|s| s.replaced_by.is_some()));
    let repo = reopen(&store).await;
    let after = verify_all(&repo).await;
    assert!(after.is_ok(), "{:?}", after.damage);
    assert_eq!(after.messages, 2 * 5, "each snapshot lost the message");
    // The loss is written into both replacement records, naming the message.
    for errors in item_errors(&repo).await {
        assert!(
            errors.iter().any(
                |(m, r)| m.as_deref() == Some("AAMkAGI2-inbox-2") && r.starts_with(LOST_PREFIX)
            ),
            "{errors:?}"
        );
    }
    let snaps = repo.list_snapshots(&mailbox()).await.unwrap();
    assert_eq!(snaps.len(), 2);
    assert!(snaps.iter().all(|s| s.id != a && s.id != b));
    for s in &snaps {
        let r = repo.load_snapshot(s.id).await.unwrap().record;
        assert_eq!(r.status, atlas_core::model::SnapshotStatus::Partial);
        let inbox = r
            .folders
            .iter()
            .find(|f| f.folder.display_name == "Inbox")
            .unwrap();
        assert!(inbox.delta_link.is_none());
    }
    // The same content stored again is written anew, not deduplicated against the
    // damaged copy.
    let message = crate::services::common::raw_mime(
        sample_folders()[0]
            .1
            .iter()
            .find(|m| m.id == "AAMkAGI2-inbox-2")
            .unwrap(),
    );
    let mut session = repo.begin_backup(&mailbox(), "h", clock()).await.unwrap();
    let stored = session
        .put_blob(BlobKind::Mime, message.clone())
        .await
        .unwrap();
    assert!(!stored.is_deduplicated());
    session.release().await.unwrap();
    assert_eq!(repo.read_blob(&stored.id).await.unwrap(), message);
    // A second repair finds nothing.
    assert!(execute(&repo, &opts(), clock()).await.unwrap().is_clean());
}

#[tokio::test]
async fn a_damaged_chunk_loses_its_whole_message_and_drops_its_chunk_list() {
    let (store, repo) = new_repo().await;
    let template = sample_folders()[0].1[0].clone();
    let mut x = 0x2545_f491_u32;
    let noise: Vec<u8> = (0..200_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect();
    let big = Msg {
        id: "AAMkAGI2-big-1".into(),
        attachments: vec![Att {
            name: "noise.bin",
            content_type: "application/octet-stream",
            bytes: noise,
        }],
        ..template.clone()
    };
    let small = Msg {
        id: "AAMkAGI2-small-1".into(),
        ..template
    };
    backup_folders(
        &repo,
        &mailbox(),
        t0(),
        &[(vec!["Inbox"], vec![big, small])],
        false,
    )
    .await;
    let mut target = None;
    for pack in repo.list_packs().await.unwrap() {
        let table = repo.pack_table(pack).await.unwrap();
        if let Some(e) = table.iter().find(|e| e.kind == BlobKind::Chunk) {
            target = Some((StoreKey::new(pack.store_key()).unwrap(), *e));
            break;
        }
    }
    let (key, entry) = target.expect("a chunk");
    flip(&store, &key, entry.offset as usize + 20).await;
    let repo = reopen(&store).await;
    let done = execute(&repo, &opts(), clock()).await.unwrap();
    assert!(
        done.storage
            .dropped
            .iter()
            .any(|d| d.kind == BlobKind::ChunkList),
        "{done:?}"
    );
    let lost: Vec<_> = done.snapshots.iter().flat_map(|s| &s.lost).collect();
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(
        lost[0]
            .message_id
            .as_ref()
            .map(atlas_core::model::MessageId::as_str),
        Some("AAMkAGI2-big-1")
    );
    let after = verify_all(&reopen(&store).await).await;
    assert!(after.is_ok(), "{:?}", after.damage);
    assert_eq!(after.messages, 1);
}

#[tokio::test]
async fn lost_index_files_are_rebuilt_from_the_packs_and_nothing_is_lost() {
    let (store, repo, _) = two_snapshots().await;
    let messages = verify_all(&repo).await.messages;
    for m in store.list("index/").await.unwrap() {
        store.delete(&m.key).await.unwrap();
    }
    let repo = reopen(&store).await;
    assert!(!verify_all(&repo).await.is_ok());
    let done = execute(&repo, &opts(), clock()).await.unwrap();
    assert!(done.storage.reindexed > 0 && done.storage.index_rewritten);
    assert!(done.snapshots.is_empty(), "{:?}", done.snapshots);
    let after = verify_all(&reopen(&store).await).await;
    assert!(after.is_ok(), "{:?}", after.damage);
    assert_eq!(after.messages, messages);
}

#[tokio::test]
async fn a_missing_pack_and_a_damaged_mailbox_record_are_healed() {
    // Mailbox records exist up to format 4 (repositories created before keep them).
    let (store, repo, [_, b]) = two_snapshots_at(4).await;
    let (pack, _) = blob_of(&repo, b, "AAMkAGI2-inbox-1").await;
    store.delete(&pack).await.unwrap();
    let record = StoreKey::new(repo.mailbox_record_name(&mailbox())).unwrap();
    flip(&store, &record, 20).await;
    let repo = reopen(&store).await;
    let done = execute(&repo, &opts(), clock()).await.unwrap();
    assert_eq!(done.storage.missing_packs, vec![pack.as_str().to_owned()]);
    assert_eq!(done.mailbox_records, vec![record.as_str().to_owned()]);
    assert!(done.items_lost() >= 2, "{done:?}");
    let repo = reopen(&store).await;
    let after = verify_all(&repo).await;
    assert!(after.is_ok(), "{:?}", after.damage);
    assert_eq!(repo.list_mailboxes().await.unwrap(), vec![mailbox()]);
}

#[tokio::test]
async fn an_unreadable_record_is_deleted_and_named() {
    let (store, _repo, [a, b]) = two_snapshots().await;
    let key = store
        .list("snapshots/")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .max_by(|x, y| x.as_str().cmp(y.as_str()))
        .unwrap();
    assert!(key.as_str().ends_with(&b.to_string()));
    flip(&store, &key, 30).await;
    let repo = reopen(&store).await;
    let done = execute(&repo, &opts(), clock()).await.unwrap();
    assert_eq!(done.snapshots.len(), 1);
    assert_eq!(done.snapshots[0].snapshot, b);
    assert!(done.snapshots[0].record_unreadable.is_some());
    let repo = reopen(&store).await;
    assert_eq!(
        repo.list_snapshots(&mailbox())
            .await
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect::<Vec<_>>(),
        vec![a]
    );
    assert!(verify_all(&repo).await.is_ok());
}

/// Issue 11: after a pack was damaged, `backup --full` reused the damaged blob (the item
/// was known by id, and its content id was in the index). After `repair`, a full backup
/// downloads the lost message again, stores it anew in a healthy pack instead of
/// deduplicating against the damaged copy, and the repository verifies clean with every
/// item of the mailbox byte for byte.
#[tokio::test]
async fn a_full_backup_after_repair_stores_the_lost_message_anew_and_verifies_clean() {
    use crate::services::backup::{
        Env, assert_matches_tenant, clock as system_clock, env, opts as backup_opts, resolve,
    };
    use atlas_core::model::MailboxId;
    use atlas_core::ports::NullReporter;
    use atlas_core::service::Cancel;
    use atlas_core::service::backup::backup_mailbox;

    let first = env(1, 8).await;
    let address = first.tenant.addresses().remove(0);
    let source_mailbox = resolve(&first, &address).await;
    let run = |env: &Env, full: bool| {
        let opts = atlas_core::service::backup::BackupOptions {
            full,
            ..backup_opts()
        };
        let repo = env.repo.clone();
        let source = env.source.clone();
        let mailbox = source_mailbox.clone();
        async move {
            backup_mailbox(
                &repo,
                source,
                &mailbox,
                &opts,
                system_clock(),
                &NullReporter,
                &Cancel::new(),
            )
            .await
            .unwrap()
        }
    };
    for _ in 0..2 {
        assert!(run(&first, false).await.complete);
    }

    // Flip a byte in the middle of one message's blob.
    let snap = first
        .repo
        .latest_snapshot(&MailboxId::new(&address))
        .await
        .unwrap()
        .unwrap();
    let mut victim = None;
    for f in &snap.record.folders {
        if let Some(m) = first
            .repo
            .load_folder_items(&f.items)
            .await
            .unwrap()
            .into_iter()
            .next()
        {
            victim = Some(m);
            break;
        }
    }
    let victim = victim.expect("a message");
    let damaged = first.repo.locate(&victim.mime).await.unwrap();
    flip(
        &first.store,
        &StoreKey::new(damaged.pack.store_key()).unwrap(),
        (damaged.offset + damaged.length / 2) as usize,
    )
    .await;

    // A new process: reopen, repair.
    let env = Env {
        repo: Repository::open(
            first.store.clone(),
            "11111111-2222-3333-4444-555555555555",
            &crate::services::common::passphrase(),
        )
        .await
        .unwrap(),
        tenant: first.tenant.clone(),
        source: first.source.clone(),
        store: first.store.clone(),
    };
    let repaired = execute(&env.repo, &opts(), system_clock()).await.unwrap();
    assert_eq!(repaired.storage.dropped.len(), 1, "{repaired:?}");

    let full = run(&env, true).await;
    assert!(full.complete, "{full:?}");
    assert_eq!(
        full.downloaded, 1,
        "only the lost message is downloaded: {full:?}"
    );
    // Same content, same id — but a new, healthy copy: never the damaged one.
    let now = env.repo.locate(&victim.mime).await.unwrap();
    assert!(
        now.pack != damaged.pack || now.offset != damaged.offset,
        "deduplicated against the damaged blob"
    );
    assert!(verify_all(&env.repo).await.is_ok());
    assert_matches_tenant(&env, &address).await;
}
