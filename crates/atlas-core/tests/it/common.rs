//! Shared helpers: a small repository, message metadata and a small backup.

use std::fmt::Write as _;
use std::sync::Arc;

use atlas_core::model::{
    ContentId, FolderId, FolderRecord, FolderSnapshot, MailboxId, MessageId, MessageMeta,
    SnapshotId, SnapshotRecord, SnapshotStatus,
};
use atlas_core::ports::{BlobStore, Clock, FixedClock};
use atlas_core::repo::{BlobKind, KdfChoice, Passphrase, RepoSettings, Repository};
use atlas_store::MemoryStore;
use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use sha2::{Digest, Sha256};

pub const TENANT: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

pub fn passphrase() -> Passphrase {
    Passphrase::new("correct horse battery staple")
}

/// Small packs and chunks so a few KiB of test data exercise every path.
pub fn small_settings() -> RepoSettings {
    RepoSettings {
        pack_target_size: 4096,
        chunk_threshold: 64 * 1024,
        chunk_size: 16 * 1024,
        lease_seconds: 60,
    }
}

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 0).unwrap()
}

pub fn clock_at(at: DateTime<Utc>) -> Arc<FixedClock> {
    Arc::new(FixedClock::new(at))
}

pub fn memory() -> Arc<dyn BlobStore> {
    Arc::new(MemoryStore::new())
}

pub async fn new_repo(store: Arc<dyn BlobStore>) -> Repository {
    Repository::init_with(
        store,
        TENANT,
        &passphrase(),
        KdfChoice::SCRYPT_MINIMUM,
        small_settings(),
    )
    .await
    .unwrap()
}

/// The last format with mailbox records (`mailboxes/<name>`): what tests of those records
/// use, since repositories created before format 5 keep them and keep getting them.
pub const MAILBOX_RECORDS_FORMAT: u32 = 4;

/// [`new_repo`] at an earlier format this build still writes.
pub async fn new_repo_at_format(store: Arc<dyn BlobStore>, format: u32) -> Repository {
    Repository::init_at_format(
        store,
        TENANT,
        &passphrase(),
        KdfChoice::SCRYPT_MINIMUM,
        small_settings(),
        format,
    )
    .await
    .unwrap()
}

/// Realistic-ish mail text: compressible, distinct per `n`.
pub fn mime(n: usize, len: usize) -> Bytes {
    let mut s = format!(
        "Message-ID: <{n}@example.com>\r\nSubject: Report number {n}\r\nFrom: a@example.com\r\n\r\n"
    );
    let mut i = 0;
    while s.len() < len {
        let _ = write!(
            s,
            "Line {i} of message {n}: the quarterly numbers look fine.\r\n"
        );
        i += 1;
    }
    s.truncate(len);
    Bytes::from(s)
}

pub fn meta(n: usize, folder: &str, mime_id: ContentId, body: &[u8]) -> MessageMeta {
    MessageMeta {
        id: MessageId::new(format!("AAMk-{n}")),
        internet_message_id: Some(format!("<{n}@example.com>")),
        conversation_id: Some("conv".into()),
        subject: Some(format!("Report number {n} — ünïcödé")),
        from: None,
        received: Some(t0()),
        sent: Some(t0()),
        size: Some(body.len() as u64),
        is_read: n % 2 == 0,
        flag_status: atlas_core::model::FlagStatus::NotFlagged,
        importance: atlas_core::model::Importance::Normal,
        categories: vec!["Blue".into()],
        has_attachments: false,
        attachment_count: 0,
        is_draft: false,
        change_key: Some(format!("ck{n}")),
        last_modified: Some(t0()),
        parent_folder_id: FolderId::new(folder),
        mime: mime_id,
        mime_size: body.len() as u64,
        mime_sha256: hex::encode(Sha256::digest(body)),
        kind: atlas_core::model::ItemKind::Mail,
        content: Vec::new(),
    }
}

pub fn folder(id: &str, name: &str) -> FolderRecord {
    FolderRecord {
        id: FolderId::new(id),
        parent_id: None,
        display_name: name.into(),
        path: vec![name.into()],
        well_known_name: None,
        total_item_count: Some(0),
        kind: atlas_core::model::ItemKind::Mail,
    }
}

/// Back up `messages` (folder name, message number, size) of `mailbox`; returns the id.
pub async fn backup(
    repo: &Repository,
    mailbox: &MailboxId,
    clock: Arc<dyn Clock>,
    messages: &[(&str, usize, usize)],
) -> atlas_core::Result<SnapshotId> {
    let started = clock.now();
    let mut session = repo
        .begin_backup(mailbox, "test-host:1", clock.clone())
        .await?;
    let mut folders: Vec<(String, Vec<MessageMeta>)> = Vec::new();
    for (f, n, len) in messages {
        let body = mime(*n, *len);
        let id = session.put_blob(BlobKind::Mime, body.clone()).await?.id;
        let m = meta(*n, f, id, &body);
        match folders.iter_mut().find(|(name, _)| name == f) {
            Some((_, v)) => v.push(m),
            None => folders.push(((*f).to_owned(), vec![m])),
        }
    }
    let mut snaps = Vec::new();
    for (name, items) in folders {
        let count = items.len() as u64;
        let items_id = session.put_folder_items(items).await?;
        snaps.push(FolderSnapshot {
            folder: folder(&format!("id-{name}"), &name),
            delta_link: Some(format!("https://graph.example/delta?token={name}")),
            item_delta_link: None,
            graph_item_count: Some(count),
            stored_item_count: count,
            items: items_id.id,
            item_pieces: items_id.pieces,
            errors: vec![],
        });
    }
    let record = SnapshotRecord {
        mailbox: mailbox.clone(),
        started,
        finished: clock.now(),
        tool: "atlas-test".into(),
        format_version: atlas_core::repo::FORMAT_VERSION,
        status: SnapshotStatus::Complete,
        folder_bookmark: None,
        folders: snaps,
    };
    session.commit(record).await
}

pub const SMALL_BACKUP: &[(&str, usize, usize)] = &[
    ("Inbox", 1, 1500),
    ("Inbox", 2, 2500),
    ("Inbox", 3, 900),
    ("Sent Items", 4, 3000),
    ("Sent Items", 5, 1200),
];

/// Open, list and verify everything; Ok(()) only if the whole repository is clean.
pub async fn check_everything(store: Arc<dyn BlobStore>) -> atlas_core::Result<usize> {
    let repo = Repository::open(store, TENANT, &passphrase()).await?;
    // A damaged root object is stood in for by its spare; it is still damage.
    if let Some(p) = repo.check_root_objects().await.into_iter().next() {
        return Err(p.error);
    }
    let mut verified = 0;
    let mailboxes = repo.list_mailboxes().await?;
    for s in repo.list_all_snapshots().await? {
        let report = repo.verify_snapshot(s.id).await?;
        if let Some(p) = report.problems.into_iter().next() {
            return Err(p.error);
        }
        verified += 1;
    }
    let per_mailbox: usize = {
        let mut n = 0;
        for mb in &mailboxes {
            n += repo.list_snapshots(mb).await?.len();
        }
        n
    };
    assert_eq!(
        per_mailbox, verified,
        "every snapshot belongs to a listed mailbox"
    );
    Ok(verified)
}

/// A store that holds back what is done to packs (`packs/…`), to put a backup or a read in
/// the state a slow store leaves it in: each pack upload first waits `put_delay`, and with
/// `reads_stall` pack reads never answer.
#[derive(Debug)]
pub struct SlowPacks {
    pub inner: Arc<dyn BlobStore>,
    pub put_delay: std::time::Duration,
    pub reads_stall: bool,
}

impl SlowPacks {
    fn is_pack(key: &atlas_core::ports::StoreKey) -> bool {
        key.as_str().starts_with("packs/")
    }

    async fn read(&self, key: &atlas_core::ports::StoreKey) {
        if self.reads_stall && Self::is_pack(key) {
            std::future::pending::<()>().await;
        }
    }
}

#[async_trait::async_trait]
impl BlobStore for SlowPacks {
    async fn put(
        &self,
        key: &atlas_core::ports::StoreKey,
        data: Bytes,
        opts: atlas_core::ports::PutOptions,
    ) -> Result<(), atlas_core::ports::StoreError> {
        if Self::is_pack(key) && !self.put_delay.is_zero() {
            tokio::time::sleep(self.put_delay).await;
        }
        self.inner.put(key, data, opts).await
    }
    async fn get(
        &self,
        key: &atlas_core::ports::StoreKey,
    ) -> Result<Bytes, atlas_core::ports::StoreError> {
        self.read(key).await;
        self.inner.get(key).await
    }
    async fn get_range(
        &self,
        key: &atlas_core::ports::StoreKey,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes, atlas_core::ports::StoreError> {
        self.read(key).await;
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
        self.inner.list(prefix).await
    }
    async fn delete(
        &self,
        key: &atlas_core::ports::StoreKey,
    ) -> Result<(), atlas_core::ports::StoreError> {
        self.inner.delete(key).await
    }
    fn describe(&self) -> String {
        format!("slow packs over {}", self.inner.describe())
    }
}
