//! Folder item lists in pieces (docs/FORMAT.md §5.5): a folder of more than
//! `MAX_PIECE_ITEMS` items goes through every writer and reader — backup, incremental,
//! list, verify, restore, save, prune and copy — and its snapshot is one that builds
//! without pieces refuse.

use std::collections::BTreeSet;
use std::sync::Arc;

use atlas_core::model::{MailboxId, MessageMeta};
use atlas_core::ports::{BlobStore, FixedClock, MailTarget, MailboxKind, NullReporter};
use atlas_core::repo::prune::{PruneOptions, prune};
use atlas_core::repo::{MAX_PIECE_ITEMS, PIECED_FORMAT_VERSION, Passphrase, Repository};
use atlas_core::service::Cancel;
use atlas_core::service::catalog::{ItemListOptions, SnapshotSelector, list_items};
use atlas_core::service::export::{ExportFormat, SaveOptions, save_to_path};
use atlas_core::service::replicate::{CopyOptions, Direction, Selection, copy_snapshots};
use atlas_core::service::restore::{RestoreOptions, execute, plan};
use atlas_core::testing::{MemoryTenant, MessageSpec};
use atlas_store::MemoryStore;
use chrono::{Duration, Utc};

use super::backup::{Env, assert_matches_tenant, env_with};
use super::repair::verify_all;
use super::restore::backup;

/// The tenant id of `env_with`'s repository.
const TENANT: &str = "11111111-2222-3333-4444-555555555555";
const BIG: &str = "big@contoso.com";
const OTHER: &str = "other@contoso.com";
/// Messages in the big mailbox's inbox: a few hundred over one piece.
const INBOX: usize = MAX_PIECE_ITEMS + 300;

fn passphrase() -> Passphrase {
    Passphrase::new("correct horse battery staple")
}

async fn big_env() -> Env {
    let tenant = MemoryTenant::new();
    tenant.add_mailbox(BIG, MailboxKind::Licensed);
    tenant.add_mailbox(OTHER, MailboxKind::Licensed);
    for n in 0..INBOX {
        tenant
            .add_message(BIG, "inbox", message(n))
            .expect("inbox exists");
    }
    for n in 0..5 {
        tenant
            .add_message(BIG, "sentitems", message(INBOX + n))
            .expect("sent items exist");
    }
    env_with(tenant).await
}

fn message(n: usize) -> MessageSpec {
    let mut spec = MessageSpec::text(&format!("Message {n}"), &format!("Body {n}.\r\n"));
    spec.internet_message_id = format!("m{n}@pieces.contoso.com");
    spec
}

/// The latest snapshot's inbox entry and the piece ids its list is stored in.
async fn inbox_pieces(repo: &Repository) -> (atlas_core::repo::Snapshot, Vec<String>) {
    let snap = repo
        .latest_snapshot(&MailboxId::new(BIG))
        .await
        .unwrap()
        .unwrap();
    let inbox = snap
        .record
        .folders
        .iter()
        .find(|f| f.folder.path == ["Inbox"])
        .unwrap();
    let list = repo.load_folder_list(&inbox.items).await.unwrap();
    assert_eq!(list.blobs[0], inbox.items, "the directory comes first");
    let pieces = list.blobs[1..].iter().map(ToString::to_string).collect();
    (snap, pieces)
}

/// What a build before pieces reads a folder list blob as.
#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct ListBeforePieces {
    version: u32,
    items: Vec<MessageMeta>,
}

/// Verify reads every pack and finds nothing damaged; returns the messages it checked.
async fn verify_clean(repo: &Repository) -> usize {
    let sum = verify_all(repo).await;
    assert!(sum.is_ok(), "{:#?}", sum.damage);
    sum.messages
}

/// The first backup: the inbox in pieces, the snapshot marked for readers that know them;
/// listing and verify go through every piece. Returns the snapshot and its pieces.
async fn first_backup(env: &Env) -> (atlas_core::repo::Snapshot, Vec<String>) {
    backup(env, BIG).await;
    assert_matches_tenant(env, BIG).await;
    // Stored in pieces, the snapshot marked for readers that know them; the small folders
    // keep one blob.
    let (first, pieces) = inbox_pieces(&env.repo).await;
    assert_eq!(first.record.format_version, PIECED_FORMAT_VERSION);
    let inbox = first
        .record
        .folders
        .iter()
        .find(|f| f.folder.path == ["Inbox"])
        .unwrap();
    assert_eq!(inbox.item_pieces, Some(pieces.len() as u32));
    assert!(pieces.len() >= 2, "{} pieces", pieces.len());
    assert_eq!(inbox.stored_item_count, INBOX as u64);
    for f in first
        .record
        .folders
        .iter()
        .filter(|f| f.folder.path != ["Inbox"])
    {
        assert_eq!(f.item_pieces, None, "{:?}", f.folder.path);
    }
    let mut reader = env.repo.item_list(&inbox.items);
    let mut seen = 0;
    while let Some((_, items)) = reader.next_piece().await.unwrap() {
        assert!(!items.is_empty() && items.len() <= MAX_PIECE_ITEMS);
        seen += items.len();
    }
    assert_eq!(seen, INBOX);
    // A build before pieces cannot take the directory for a list (its prune stops there
    // instead of deleting the pieces), and refuses the record by its version.
    let directory = env.repo.read_blob(&inbox.items).await.unwrap();
    assert!(serde_json::from_slice::<ListBeforePieces>(&directory).is_err());
    // 4: the highest snapshot version builds before pieces read (their FORMAT_VERSION;
    // this build's is 5 since format 5 dropped mailbox records).
    assert!(first.record.format_version > 4);

    // Listing pages across piece boundaries.
    let page = list_items(
        &env.repo,
        first.id,
        &ItemListOptions {
            show_subjects: false,
            limit: Some(100),
            offset: MAX_PIECE_ITEMS - 50,
            folder: Some("Inbox".into()),
            kind: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(page.total, INBOX);
    assert_eq!(page.items.len(), 100);
    assert_eq!(page.items[0].index, MAX_PIECE_ITEMS - 49);
    assert_eq!(verify_clean(&env.repo).await, INBOX + 5);

    (first, pieces)
}

/// An incremental that adds and removes a message: returns its snapshot.
async fn incremental(env: &Env, pieces: &[String]) -> atlas_core::repo::Snapshot {
    // An incremental that adds and removes a message stores the pieces around them and a
    // new directory; the other pieces are the previous snapshot's.
    env.tenant
        .add_message(BIG, "inbox", message(INBOX + 100))
        .unwrap();
    let gone = env
        .tenant
        .dump(BIG)
        .unwrap()
        .items
        .iter()
        .find(|i| i.folder_path == "Inbox")
        .unwrap()
        .id
        .clone();
    env.tenant.delete_item(BIG, &gone).unwrap();
    backup(env, BIG).await;
    assert_matches_tenant(env, BIG).await;
    let (second, pieces2) = inbox_pieces(&env.repo).await;
    assert_ne!(pieces2, pieces, "the changed pieces are new");
    let before: BTreeSet<&String> = pieces.iter().collect();
    let shared = pieces2.iter().filter(|p| before.contains(p)).count();
    assert!(
        shared + 4 >= pieces2.len(),
        "{shared} of {} pieces shared with the previous snapshot",
        pieces2.len()
    );

    second
}

async fn restore_and_save(env: &Env, second: &atlas_core::repo::Snapshot) {
    // Restore into another mailbox: every message arrives.
    let mut ropts = RestoreOptions::new(SnapshotSelector::Id(second.id));
    ropts.target = Some(OTHER.into());
    let target: Arc<dyn MailTarget> = Arc::new(env.tenant.clone());
    let p = plan(&env.repo, &ropts).await.unwrap();
    let restored = execute(&p, &env.repo, target, &NullReporter, &Cancel::new())
        .await
        .unwrap();
    assert!(restored.complete, "{restored:#?}");
    assert_eq!(restored.created as usize, INBOX + 5);

    // Save: every message of the snapshot is written.
    let dir = tempfile::tempdir().unwrap();
    let saved = save_to_path(
        &env.repo,
        &SaveOptions {
            snapshot: SnapshotSelector::Id(second.id),
            folder: None,
            message: None,
            kind: None,
            format: ExportFormat::Mbox,
            skip_verify: false,
            reporter: Arc::new(NullReporter),
        },
        &dir.path().join("out.mbox"),
        false,
    )
    .await
    .unwrap();
    assert!(saved.is_complete());
    assert_eq!(saved.messages, INBOX + 5);
}

async fn prune_and_copy(env: Env, first: &atlas_core::repo::Snapshot) {
    // Prune after forgetting the first snapshot frees its own pieces and keeps the
    // second's, shared ones included.
    env.repo.delete_snapshot(first.id).await.unwrap();
    let later = Arc::new(FixedClock::new(Utc::now() + Duration::days(1)));
    let everything_unreferenced_goes = PruneOptions {
        repack_threshold: 0.0,
        ..PruneOptions::default()
    };
    let pruned = prune(&env.repo, &everything_unreferenced_goes, later.as_ref())
        .await
        .unwrap();
    // The old directory, the pieces only it named and the deleted message.
    assert!(pruned.blobs_freed >= 3, "{pruned:?}");
    let reopened = Repository::open(env.store.clone(), TENANT, &passphrase())
        .await
        .unwrap();
    assert_eq!(verify_clean(&reopened).await, INBOX + 5);
    let env = Env {
        repo: reopened,
        ..env
    };
    assert_matches_tenant(&env, BIG).await;

    // Copy to another store: the replica holds every piece and verifies.
    let replica: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
    copy_snapshots(
        &env.repo,
        replica.clone(),
        &passphrase(),
        &CopyOptions {
            selection: Selection::All,
            direction: Direction::Replicate,
            parallel: 3,
            reporter: Arc::new(NullReporter),
        },
        &FixedClock::new(Utc::now()),
    )
    .await
    .unwrap();
    let copy = Repository::open(replica, TENANT, &passphrase())
        .await
        .unwrap();
    assert_eq!(verify_clean(&copy).await, INBOX + 5);
    let env = Env { repo: copy, ..env };
    assert_matches_tenant(&env, BIG).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_over_one_piece_round_trips_through_every_reader_and_writer() {
    let env = big_env().await;
    let (first, pieces) = first_backup(&env).await;
    let second = incremental(&env, &pieces).await;
    restore_and_save(&env, &second).await;
    prune_and_copy(env, &first).await;
}

/// Repair of a long list with one damaged piece: the folder loses that piece's items (one
/// item error without a message id names it), not the whole list; the other pieces' items
/// stay in the replacement snapshot, which verifies clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_piece_loses_only_its_own_items() {
    let env = big_env().await;
    backup(&env, BIG).await;
    let (snap, _) = inbox_pieces(&env.repo).await;
    let inbox = snap
        .record
        .folders
        .iter()
        .find(|f| f.folder.path == ["Inbox"])
        .unwrap();
    let mut reader = env.repo.item_list(&inbox.items);
    reader.next_piece().await.unwrap();
    let (piece, items) = reader.next_piece().await.unwrap().unwrap();
    let loc = env.repo.locate(&piece).await.unwrap();
    let key = atlas_core::ports::StoreKey::new(loc.pack.store_key()).unwrap();
    let mut bytes = env.store.get(&key).await.unwrap().to_vec();
    bytes[(loc.offset + loc.length / 2) as usize] ^= 0x08;
    env.store
        .put(
            &key,
            bytes::Bytes::from(bytes),
            atlas_core::ports::PutOptions::OVERWRITE,
        )
        .await
        .unwrap();

    let repo = Repository::open(env.store.clone(), TENANT, &passphrase())
        .await
        .unwrap();
    let opts = atlas_core::service::repair::RepairOptions {
        owner: "repair-test".into(),
        tool: "atlas-test repair".into(),
    };
    let later = FixedClock::new(Utc::now() + Duration::days(1));
    let done = atlas_core::service::repair::execute(&repo, &opts, Arc::new(later))
        .await
        .unwrap();
    assert_eq!(done.snapshots.len(), 1, "{done:?}");
    let repo = Repository::open(env.store.clone(), TENANT, &passphrase())
        .await
        .unwrap();
    let (repaired, _) = inbox_pieces(&repo).await;
    let inbox = repaired
        .record
        .folders
        .iter()
        .find(|f| f.folder.path == ["Inbox"])
        .unwrap();
    assert_eq!(inbox.stored_item_count as usize, INBOX - items.len());
    assert_eq!(
        repo.load_folder_items(&inbox.items).await.unwrap().len(),
        INBOX - items.len()
    );
    assert_eq!(inbox.errors.len(), 1, "{:?}", inbox.errors);
    assert!(inbox.errors[0].message_id.is_none());
    assert!(
        inbox.errors[0].reason.contains("a piece"),
        "{:?}",
        inbox.errors
    );
    assert_eq!(verify_clean(&repo).await, INBOX - items.len() + 5);
}
