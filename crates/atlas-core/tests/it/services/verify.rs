//! `verify`: intact repositories pass; each kind of damage is named precisely.

use std::sync::Arc;

use atlas_core::model::SnapshotId;
use atlas_core::ports::{BlobStore, PutOptions, StoreKey};
use atlas_core::repo::Repository;
use atlas_core::service::verify::{
    ContentCheck, DamageKind, ReadData, VerifyOptions, VerifyScope, verify,
};
use bytes::Bytes;

use crate::services::common::{
    TENANT, backup_folders, mailbox, new_repo, passphrase, sample_folders, t0,
};

async fn reopen(store: &Arc<dyn BlobStore>) -> Repository {
    Repository::open(store.clone(), TENANT, &passphrase())
        .await
        .unwrap()
}

fn all() -> VerifyOptions {
    VerifyOptions {
        scope: VerifyScope::All,
        content_check: ContentCheck::Decode,
        read_data: ReadData::ALL,
    }
}

async fn setup(separate_lists: bool) -> (Arc<dyn BlobStore>, Repository, SnapshotId) {
    let (store, repo) = new_repo().await;
    let id = backup_folders(&repo, &mailbox(), t0(), &sample_folders(), separate_lists).await;
    (store, repo, id)
}

/// The pack holding a given message (found through verify's own naming of a flipped pack
/// would be circular, so look at pack tables).
async fn pack_of_message(
    repo: &Repository,
    store: &Arc<dyn BlobStore>,
    snap: SnapshotId,
    msg: &str,
) -> StoreKey {
    let record = repo.load_snapshot(snap).await.unwrap().record;
    for f in &record.folders {
        for m in repo.load_folder_items(&f.items).await.unwrap() {
            if m.id.as_str() == msg {
                let loc = repo.locate(&m.mime).await.unwrap();
                let _ = store;
                return StoreKey::new(loc.pack.store_key()).unwrap();
            }
        }
    }
    panic!("message {msg} not found");
}

#[tokio::test]
async fn intact_repository_verifies_in_every_scope() {
    let (_store, repo, id) = setup(false).await;
    for scope in [
        VerifyScope::All,
        VerifyScope::Snapshot(id),
        VerifyScope::Mailbox(mailbox()),
    ] {
        let s = verify(
            &repo,
            &VerifyOptions {
                scope,
                content_check: ContentCheck::Decode,
                read_data: ReadData::ALL,
            },
        )
        .await
        .unwrap();
        assert!(s.is_ok(), "{:?}", s.damage);
        assert_eq!((s.snapshots, s.messages), (1, 6));
        assert_eq!(s.packs_read, s.packs);
        assert!(s.blobs_checked >= 9);
    }
    let none = verify(
        &repo,
        &VerifyOptions {
            scope: VerifyScope::All,
            content_check: ContentCheck::Decode,
            read_data: ReadData {
                percent: 1,
                slot: 0,
            },
        },
    )
    .await
    .unwrap();
    assert!(none.packs_read < none.packs || none.packs == 1);
    assert!(matches!(
        verify(
            &repo,
            &VerifyOptions {
                scope: VerifyScope::Snapshot(SnapshotId::random()),
                content_check: ContentCheck::Decode,
                read_data: ReadData::ALL
            }
        )
        .await,
        Err(atlas_core::Error::SnapshotNotFound { .. })
    ));
}

#[tokio::test]
async fn deleted_pack_names_every_message_in_it() {
    // Folder lists in packs of their own: the deleted pack must hold messages only (with
    // the list of their folder in it, verify cannot know which messages it named —
    // which blobs share a pack depends on their sizes, so it is not left to chance).
    let (store, repo, id) = setup(true).await;
    let key = pack_of_message(&repo, &store, id, "AAMkAGI2-inbox-1").await;
    store.delete(&key).await.unwrap();
    let s = verify(&reopen(&store).await, &all()).await.unwrap();
    assert!(!s.is_ok());
    let d = s
        .damage
        .iter()
        .find(|d| {
            d.message_id
                .as_ref()
                .is_some_and(|m| m.as_str() == "AAMkAGI2-inbox-1")
        })
        .expect("damaged message named");
    assert_eq!(d.kind, DamageKind::Message);
    assert_eq!(d.mailbox.as_deref(), Some("bob@contoso.com"));
    assert_eq!(d.folder.as_deref(), Some("Inbox"));
    assert_eq!(d.object.as_deref(), Some(key.as_str()));
    assert_eq!(d.snapshot, Some(id));
    // Never the subject.
    let json = serde_json::to_string(&s).unwrap();
    assert!(!json.contains("Quarterly"), "{json}");
}

#[tokio::test]
async fn flipped_byte_in_a_pack_is_found_even_with_a_partial_read_slice() {
    let (store, repo, id) = setup(false).await;
    let key = pack_of_message(&repo, &store, id, "AAMkAGI2-inbox-2").await;
    let mut bytes = store.get(&key).await.unwrap().to_vec();
    let mid = 13 + 40; // inside the first blob after the pack header
    bytes[mid] ^= 0x01;
    store
        .put(&key, Bytes::from(bytes), PutOptions::OVERWRITE)
        .await
        .unwrap();
    let repo = reopen(&store).await;
    let s = verify(&repo, &all()).await.unwrap();
    assert!(!s.is_ok());
    assert!(
        s.damage
            .iter()
            .all(|d| d.object.as_deref() == Some(key.as_str())),
        "{:?}",
        s.damage
    );
    assert!(
        s.damage
            .iter()
            .any(|d| d.kind == DamageKind::Message && d.message_id.is_some())
    );
    // Over a full rotation of 25% slices the damage is found in exactly the slots that
    // read that pack, and at least one does.
    let mut found = 0;
    for slot in 0..4 {
        let s = verify(
            &repo,
            &VerifyOptions {
                scope: VerifyScope::All,
                content_check: ContentCheck::Decode,
                read_data: ReadData { percent: 25, slot },
            },
        )
        .await
        .unwrap();
        if !s.is_ok() {
            found += 1;
        }
    }
    assert!(found >= 1);
}

#[tokio::test]
async fn truncated_index_is_named() {
    let (store, _repo, _id) = setup(false).await;
    let index = store.list("index/").await.unwrap();
    let key = index[0].key.clone();
    let bytes = store.get(&key).await.unwrap();
    store
        .put(&key, bytes.slice(..bytes.len() / 2), PutOptions::OVERWRITE)
        .await
        .unwrap();
    let s = verify(&reopen(&store).await, &all()).await.unwrap();
    assert!(!s.is_ok());
    assert!(
        s.damage
            .iter()
            .any(|d| d.kind == DamageKind::Index && d.object.as_deref() == Some(key.as_str())),
        "{:?}",
        s.damage
    );
}

#[tokio::test]
async fn missing_folder_list_names_the_folder() {
    let (store, repo, id) = setup(true).await;
    // With separate lists the folder lists sit in packs of their own (written after the
    // first flush): delete the pack holding the Sent Items list.
    let record = repo.load_snapshot(id).await.unwrap().record;
    let sent = record
        .folders
        .iter()
        .find(|f| f.folder.display_name == "Sent Items")
        .unwrap();
    let loc = repo.locate(&sent.items).await.unwrap();
    let msgs_pack = pack_of_message(&repo, &store, id, "AAMkAGI2-inbox-1").await;
    assert_ne!(
        loc.pack.store_key(),
        msgs_pack.as_str(),
        "lists share a pack with messages"
    );
    store
        .delete(&StoreKey::new(loc.pack.store_key()).unwrap())
        .await
        .unwrap();
    let s = verify(&reopen(&store).await, &all()).await.unwrap();
    let d = s
        .damage
        .iter()
        .find(|d| d.kind == DamageKind::FolderList && d.folder.as_deref() == Some("Sent Items"))
        .unwrap_or_else(|| panic!("{:?}", s.damage));
    assert_eq!(d.object.as_deref(), Some(loc.pack.store_key().as_str()));
    assert_eq!(d.mailbox.as_deref(), Some("bob@contoso.com"));
}

/// Counts reads (whole and ranged) passing through to the wrapped store, so tests can
/// pin how many store requests an operation makes.
#[derive(Debug)]
struct CountingStore {
    inner: Arc<dyn BlobStore>,
    gets: std::sync::atomic::AtomicUsize,
    ranged: std::sync::atomic::AtomicUsize,
}

impl CountingStore {
    fn reads(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering::SeqCst;
        (self.gets.load(SeqCst), self.ranged.load(SeqCst))
    }
}

#[async_trait::async_trait]
impl BlobStore for CountingStore {
    async fn put(
        &self,
        key: &StoreKey,
        data: Bytes,
        opts: PutOptions,
    ) -> Result<(), atlas_core::ports::StoreError> {
        self.inner.put(key, data, opts).await
    }
    async fn get(&self, key: &StoreKey) -> Result<Bytes, atlas_core::ports::StoreError> {
        self.gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.get(key).await
    }
    async fn get_range(
        &self,
        key: &StoreKey,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes, atlas_core::ports::StoreError> {
        self.ranged
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.get_range(key, range).await
    }
    async fn head(
        &self,
        key: &StoreKey,
    ) -> Result<Option<atlas_core::ports::ObjectMeta>, atlas_core::ports::StoreError> {
        self.inner.head(key).await
    }
    async fn list(
        &self,
        prefix: &str,
    ) -> Result<Vec<atlas_core::ports::ObjectMeta>, atlas_core::ports::StoreError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &StoreKey) -> Result<(), atlas_core::ports::StoreError> {
        self.inner.delete(key).await
    }
    fn describe(&self) -> String {
        format!("counting {}", self.inner.describe())
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
async fn the_counting_store_forwards_every_method() {
    atlas_store::conformance::check_wrapper(|inner| {
        Arc::new(CountingStore {
            inner,
            gets: std::sync::atomic::AtomicUsize::new(0),
            ranged: std::sync::atomic::AtomicUsize::new(0),
        })
    })
    .await;
}

#[tokio::test]
async fn verify_reads_each_pack_once_not_each_message() {
    use atlas_core::repo::{KdfChoice, RepoSettings};
    let inner: Arc<dyn BlobStore> = Arc::new(atlas_store::MemoryStore::new());
    let repo = Repository::init_with(
        inner.clone(),
        TENANT,
        &passphrase(),
        KdfChoice::SCRYPT_MINIMUM,
        RepoSettings {
            // Small packs so 300 messages fill a few; the 300-item folder list stays one
            // blob (a chunked list costs one read per chunk, not per message).
            pack_target_size: 64 * 1024,
            chunk_threshold: 1 << 20,
            chunk_size: 256 * 1024,
            lease_seconds: 60,
        },
    )
    .await
    .unwrap();
    let template = sample_folders()[0].1[1].clone();
    let msgs: Vec<_> = (0..300)
        .map(|i| crate::services::common::Msg {
            id: format!("AAMkAGI2-many-{i}"),
            text: Some(format!("message number {i} {}", "x".repeat(200))),
            html: None,
            attachments: Vec::new(),
            ..template.clone()
        })
        .collect();
    let id = backup_folders(&repo, &mailbox(), t0(), &[(vec!["Inbox"], msgs)], false).await;
    let counting = Arc::new(CountingStore {
        inner,
        gets: 0.into(),
        ranged: 0.into(),
    });
    let store: Arc<dyn BlobStore> = counting.clone();
    let repo = reopen(&store).await;
    let before = counting.reads();
    let s = verify(&repo, &all()).await.unwrap();
    let (gets, ranged) = counting.reads();
    let reads = (gets - before.0) + (ranged - before.1);
    assert!(s.is_ok(), "{:?}", s.damage);
    assert_eq!((s.messages, s.packs_read), (300, s.packs));
    assert!(
        s.packs < 10,
        "{} packs: the test needs many messages per pack",
        s.packs
    );
    // Whole packs, plus the index file, the mailbox and snapshot records and one read of
    // the folder list — never one request per message.
    assert!(
        reads <= s.packs + 6,
        "{reads} reads ({} whole, {} ranged) for {} packs and {} messages",
        gets - before.0,
        ranged - before.1,
        s.packs,
        s.messages
    );
    eprintln!(
        "verify: {reads} store reads ({} whole, {} ranged) for {} packs, {} messages",
        gets - before.0,
        ranged - before.1,
        s.packs,
        s.messages
    );
    let _ = id;
}

#[tokio::test]
async fn damaged_chunk_of_a_large_message_names_the_message_and_the_chunk_pack() {
    use atlas_core::repo::BlobKind;
    let (store, repo) = new_repo().await;
    let template = sample_folders()[0].1[0].clone();
    // Pseudo-random bytes, so the MIME stays far above the 64 KiB chunk threshold after
    // compression.
    let mut x = 0x2545_f491_u32;
    let noise: Vec<u8> = (0..200_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect();
    let big = crate::services::common::Msg {
        id: "AAMkAGI2-big-1".into(),
        attachments: vec![crate::services::common::Att {
            name: "noise.bin",
            content_type: "application/octet-stream",
            bytes: noise,
        }],
        ..template
    };
    let id = backup_folders(
        &repo,
        &mailbox(),
        t0(),
        &[(vec!["Inbox"], vec![big])],
        false,
    )
    .await;
    assert!(verify(&repo, &all()).await.unwrap().is_ok());
    let mut target = None;
    for pack in repo.list_packs().await.unwrap() {
        let table = repo.pack_table(pack).await.unwrap();
        if let Some(e) = table.iter().find(|e| e.kind == BlobKind::Chunk) {
            target = Some((StoreKey::new(pack.store_key()).unwrap(), *e));
            break;
        }
    }
    let (key, entry) = target.expect("a pack holding a chunk");
    let mut bytes = store.get(&key).await.unwrap().to_vec();
    bytes[entry.offset as usize + 20] ^= 0x01;
    store
        .put(&key, Bytes::from(bytes), PutOptions::OVERWRITE)
        .await
        .unwrap();
    let s = verify(&reopen(&store).await, &all()).await.unwrap();
    let d = s
        .damage
        .iter()
        .find(|d| d.object.as_deref() == Some(key.as_str()))
        .unwrap_or_else(|| panic!("chunk pack not named: {:?}", s.damage));
    assert_eq!(d.kind, DamageKind::Message);
    assert_eq!(
        d.message_id
            .as_ref()
            .map(atlas_core::model::MessageId::as_str),
        Some("AAMkAGI2-big-1")
    );
    assert_eq!(d.folder.as_deref(), Some("Inbox"));
    assert_eq!(d.snapshot, Some(id));
    assert!(
        s.damage.iter().all(|d| d
            .message_id
            .as_ref()
            .is_some_and(|m| m.as_str() == "AAMkAGI2-big-1")),
        "{:?}",
        s.damage
    );
}

/// Verify holds each pack it checks whole, so its packs in flight draw their size from the
/// repository's memory budget, the one backup draws from: with a budget smaller than one
/// pack they are checked one at a time (each admitted alone), and the deepest check reads
/// and passes the same. Regression: verify held up to four whole packs whatever the budget.
#[tokio::test]
async fn verify_holds_its_packs_in_flight_within_the_memory_budget() {
    let (_store, repo, _) = setup(true).await;
    let sizes = repo.pack_sizes().await.unwrap();
    assert!(sizes.len() > 1, "several packs: {sizes:?}");
    repo.set_memory_budget(1);
    let s = verify(&repo, &all()).await.unwrap();
    assert!(s.is_ok(), "{:?}", s.damage);
    assert_eq!(s.packs_read, sizes.len());
    let largest = sizes.values().copied().max().unwrap();
    assert_eq!(repo.memory_budget().peak(), largest, "one pack at a time");
    assert_eq!(repo.memory_budget().in_use(), 0, "all given back");

    let deep = verify(
        &repo,
        &VerifyOptions {
            content_check: ContentCheck::ContentId,
            ..all()
        },
    )
    .await
    .unwrap();
    assert!(deep.is_ok(), "{:?}", deep.damage);
    assert_eq!(deep.blobs_checked, s.blobs_checked);
}
