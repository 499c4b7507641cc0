//! The encrypted, deduplicated repository.
//!
//! Layers, bottom up:
//!
//! - [`keyfile`]: the passphrase-wrapped tenant data key (`_meta/dek.enc`), compatible with
//!   TypeScript Atlas 1.3 (and its pre-1.3 60-byte blob).
//! - `crypto`: the plaintext frame (zstd when smaller, SHA-256 of the plaintext),
//!   sealed named objects and blobs (AES-256-GCM, associated data binding each to its name
//!   and type), keyed content ids.
//! - [`pack`] and [`index`]: blobs packed per mailbox run with a self-describing table;
//!   index files map content ids to pack locations; dedup asks the index (tenant-wide).
//! - [`Repository`] (this module) and [`BackupSession`]: keys, config, snapshots, leases.
//! - [`prune`]: garbage collection, repacking and index compaction, excluded from running
//!   alongside backups by a repository lock.
//!
//! Write order is data (packs) → index → snapshot record, so an interrupted run leaves at
//! most unreferenced data, never a record that points at nothing. `docs/FORMAT.md`
//! describes every object byte by byte.

mod cache;
mod chunks;
mod crypto;
pub mod index;
pub mod keyfile;
mod lease;
pub mod pack;
pub mod prune;
pub mod retention;
mod secret;
mod session;
mod stream;
mod verify;

use std::sync::{Arc, RwLock};

use bytes::Bytes;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

pub use crypto::decrypt_v1_object;
pub use keyfile::{KdfChoice, KeyBlobFormat};
pub use lease::LeaseInfo;
pub use pack::{PackEntry, PackId};
pub use prune::{PruneOptions, PruneSummary};
pub use retention::RetentionReport;
pub use secret::{DataKey, Passphrase};
pub use session::{BackupSession, BlobWriter, SessionStats};
pub use stream::BlobReader;
pub use verify::{VerifyProblem, VerifyReport};

use crate::error::{Error, Result};
use crate::model::{ContentId, MailboxId, MessageMeta, SnapshotId, SnapshotRecord};
use crate::ports::{BlobStore, Clock, PutOptions, StoreError, StoreKey};
use chunks::ChunkList;
use crypto::ObjectType;
use index::{Index, Location};
pub(crate) use secret::RepoKeys;

/// The repository format this build writes. Version 1 is the TypeScript Atlas layout
/// (`data/`, `manifests/` …), which is read, never written.
pub const FORMAT_VERSION: u32 = 2;

/// Store key of the wrapped data key (same as TypeScript Atlas, so a v1 bucket keeps its
/// passphrase).
pub const KEY_BLOB_KEY: &str = "_meta/dek.enc";
/// Store key of the encrypted repository config.
pub const CONFIG_KEY: &str = "config";

/// What a blob is. Part of its content id and of its associated data, so the same bytes
/// stored as two kinds are two blobs, and a blob cannot be read as another kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BlobKind {
    /// Raw RFC 5322 MIME of a message.
    Mime = 1,
    /// An attachment's bytes (when stored apart from the MIME).
    Attachment = 2,
    /// A folder item list (`Vec<MessageMeta>`, JSON).
    FolderItems = 3,
    /// Other structured metadata (JSON).
    Metadata = 4,
    /// One chunk of a large item (internal).
    Chunk = 5,
    /// The list of chunks of a large item (internal; indexed under the whole item's id).
    ChunkList = 6,
}

impl BlobKind {
    /// Every kind, for tests and decoders.
    pub const ALL: [Self; 6] = [
        Self::Mime,
        Self::Attachment,
        Self::FolderItems,
        Self::Metadata,
        Self::Chunk,
        Self::ChunkList,
    ];

    /// Decode the stored byte.
    pub fn from_u8(b: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| *k as u8 == b)
    }
}

/// Tunables fixed when a repository is created (stored in its config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepoSettings {
    /// A pack is sealed when adding the next blob would exceed this many bytes.
    pub pack_target_size: u64,
    /// Items larger than this are chunked.
    pub chunk_threshold: u64,
    /// Chunk size for large items.
    pub chunk_size: u64,
    /// How long a mailbox lease lasts unless renewed.
    pub lease_seconds: u64,
}

impl Default for RepoSettings {
    fn default() -> Self {
        Self {
            pack_target_size: 16 << 20,
            chunk_threshold: 8 << 20,
            chunk_size: 4 << 20,
            lease_seconds: 15 * 60,
        }
    }
}

impl RepoSettings {
    fn check(&self) -> Result<()> {
        let ok = (4 << 10..=1 << 30).contains(&self.pack_target_size)
            && (1 << 10..=64 << 20).contains(&self.chunk_size)
            && (self.chunk_size..=64 << 20).contains(&self.chunk_threshold)
            && self.lease_seconds >= 10;
        if ok {
            Ok(())
        } else {
            Err(Error::invalid(
                "settings out of range: pack target 4 KiB..1 GiB, chunk size 1 KiB..64 MiB, chunk size <= threshold <= 64 MiB, lease >= 10 s",
            ))
        }
    }
}

/// The encrypted repository config (`config`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepoConfig {
    /// Repository format version.
    pub format_version: u32,
    /// Random id of this repository.
    pub repo_id: uuid::Uuid,
    /// Tool and version that created it (informational).
    #[serde(default)]
    pub created_by: String,
    /// Tunables.
    pub settings: RepoSettings,
}

/// A snapshot as listed from key names only (no decryption).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Snapshot id.
    pub id: SnapshotId,
    /// Start time of the run (millisecond precision).
    pub started: DateTime<Utc>,
}

/// A loaded snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Snapshot id.
    pub id: SnapshotId,
    /// The record.
    pub record: SnapshotRecord,
}

/// Process-wide state of one opened repository.
#[derive(Debug)]
struct Inner {
    store: Arc<dyn BlobStore>,
    tenant: String,
    keys: RwLock<Arc<RepoKeys>>,
    config: RwLock<Option<RepoConfig>>,
    index: RwLock<Index>,
}

/// An opened repository. Cheap to clone (shared state: keys, config, index cache).
#[derive(Debug, Clone)]
pub struct Repository {
    inner: Arc<Inner>,
}

const SNAPSHOT_TIME_FORMAT: &str = "%Y%m%dT%H%M%S%.3fZ";

pub(crate) fn store_key(key: &str) -> Result<StoreKey> {
    StoreKey::new(key).map_err(Error::Store)
}

impl Repository {
    /// Create a repository (wrapped key, then config), race-free: if another process
    /// created the key first, its key is opened with `passphrase` instead. Refuses nothing
    /// that already exists; an existing repository is simply opened.
    pub async fn init(
        store: Arc<dyn BlobStore>,
        tenant: &str,
        passphrase: &Passphrase,
        kdf: KdfChoice,
    ) -> Result<Self> {
        Self::init_with(store, tenant, passphrase, kdf, RepoSettings::default()).await
    }

    /// [`Repository::init`] with explicit settings (used only if this call creates the
    /// config).
    pub async fn init_with(
        store: Arc<dyn BlobStore>,
        tenant: &str,
        passphrase: &Passphrase,
        kdf: KdfChoice,
        settings: RepoSettings,
    ) -> Result<Self> {
        settings.check()?;
        if tenant.is_empty() {
            return Err(Error::invalid("empty tenant id"));
        }
        let key = store_key(KEY_BLOB_KEY)?;
        let keys = match store.get(&key).await {
            Ok(blob) => cache::unlock(&store, tenant, passphrase, blob).await?,
            Err(StoreError::NotFound { .. }) => {
                let dek = DataKey::generate();
                let (pw, t, d) = (passphrase.clone(), tenant.to_owned(), dek.clone());
                let blob = tokio::task::spawn_blocking(move || keyfile::wrap(&d, &pw, &t, kdf))
                    .await
                    .map_err(|e| Error::task(&e))??;
                let blob = Bytes::from(blob);
                match store.put(&key, blob.clone(), PutOptions::CREATE).await {
                    Ok(()) => {
                        cache::remember(&store, tenant, passphrase, &blob, RepoKeys::derive(dek))
                    }
                    Err(StoreError::AlreadyExists { .. }) => {
                        // Lost the race: open the winner's key (same passphrase expected).
                        let theirs = store.get(&key).await.map_err(Error::from_store_required)?;
                        cache::unlock(&store, tenant, passphrase, theirs).await?
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        };
        let repo = Self::from_parts(store, tenant, keys);
        repo.ensure_config(settings).await?;
        Ok(repo)
    }

    /// Open an existing repository. Distinguishes [`Error::NotInitialized`] (no key),
    /// [`Error::WrongPassphrase`], [`Error::Corrupt`] (bad key blob or config) and
    /// [`Error::UnsupportedVersion`]. A TypeScript Atlas bucket (key, no config) opens with
    /// [`Repository::config`] = `None`; it can be read but not written until
    /// [`Repository::open_or_init`] adds a config.
    pub async fn open(
        store: Arc<dyn BlobStore>,
        tenant: &str,
        passphrase: &Passphrase,
    ) -> Result<Self> {
        let blob = match store.get(&store_key(KEY_BLOB_KEY)?).await {
            Ok(b) => b,
            Err(StoreError::NotFound { .. }) => {
                return Err(Error::NotInitialized {
                    store: store.describe(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let keys = cache::unlock(&store, tenant, passphrase, blob).await?;
        let repo = Self::from_parts(store, tenant, keys);
        repo.load_config().await?;
        Ok(repo)
    }

    /// Open, or create when the store holds no key yet; also adds the config to a
    /// repository that lacks one (a TypeScript Atlas bucket or an interrupted init).
    pub async fn open_or_init(
        store: Arc<dyn BlobStore>,
        tenant: &str,
        passphrase: &Passphrase,
        kdf: KdfChoice,
    ) -> Result<Self> {
        Self::init(store, tenant, passphrase, kdf).await
    }

    fn from_parts(store: Arc<dyn BlobStore>, tenant: &str, keys: Arc<RepoKeys>) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                tenant: tenant.to_owned(),
                keys: RwLock::new(keys),
                config: RwLock::new(None),
                index: RwLock::new(Index::default()),
            }),
        }
    }

    pub(crate) fn keys(&self) -> Arc<RepoKeys> {
        Arc::clone(
            &self
                .inner
                .keys
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    pub(crate) fn store(&self) -> &Arc<dyn BlobStore> {
        &self.inner.store
    }

    /// The tenant id the key was opened for.
    pub fn tenant(&self) -> &str {
        &self.inner.tenant
    }

    /// The repository config, `None` for a TypeScript Atlas bucket without one.
    pub fn config(&self) -> Option<RepoConfig> {
        self.inner
            .config
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn require_config(&self) -> Result<RepoConfig> {
        self.config().ok_or_else(|| Error::NotInitialized {
            store: self.inner.store.describe(),
        })
    }

    /// The data key, for reading TypeScript Atlas v1 objects with [`decrypt_v1_object`].
    pub fn data_key(&self) -> DataKey {
        self.keys().data.clone()
    }

    async fn load_config(&self) -> Result<Option<RepoConfig>> {
        let key = store_key(CONFIG_KEY)?;
        let bytes = match self.inner.store.get(&key).await {
            Ok(b) => b,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let cfg: RepoConfig = self.open_json(ObjectType::Config, CONFIG_KEY, &bytes)?;
        if cfg.format_version > FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                what: "repository format".into(),
                found: cfg.format_version,
                supported: FORMAT_VERSION,
            });
        }
        cfg.settings
            .check()
            .map_err(|_| Error::corrupt(CONFIG_KEY, "settings out of range"))?;
        *self
            .inner
            .config
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(cfg.clone());
        Ok(Some(cfg))
    }

    async fn ensure_config(&self, settings: RepoSettings) -> Result<()> {
        if self.load_config().await?.is_some() {
            return Ok(());
        }
        let cfg = RepoConfig {
            format_version: FORMAT_VERSION,
            repo_id: uuid::Uuid::new_v4(),
            created_by: format!("atlas-core {}", env!("CARGO_PKG_VERSION")),
            settings,
        };
        let sealed = self.seal_json(ObjectType::Config, CONFIG_KEY, &cfg)?;
        match self
            .inner
            .store
            .put(&store_key(CONFIG_KEY)?, sealed, PutOptions::CREATE)
            .await
        {
            Ok(()) | Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        // Read back: if another process won the race, its config is the one in force.
        self.load_config().await?;
        self.require_config().map(|_| ())
    }

    /// Re-wrap the data key under a new passphrase (and KDF). The old passphrase stops
    /// working; no data object changes. The store's atomic overwrite means a crash leaves
    /// either the old or the new blob, each valid with its passphrase.
    pub async fn change_passphrase(&self, new: &Passphrase, kdf: KdfChoice) -> Result<()> {
        let dek = self.keys().data.clone();
        let (pw, tenant) = (new.clone(), self.inner.tenant.clone());
        let blob = tokio::task::spawn_blocking(move || keyfile::wrap(&dek, &pw, &tenant, kdf))
            .await
            .map_err(|e| Error::task(&e))??;
        let blob = Bytes::from(blob);
        self.inner
            .store
            .put(
                &store_key(KEY_BLOB_KEY)?,
                blob.clone(),
                PutOptions::OVERWRITE,
            )
            .await?;
        cache::forget_store(&self.inner.store, &self.inner.tenant);
        cache::remember(
            &self.inner.store,
            &self.inner.tenant,
            new,
            &blob,
            (*self.keys()).clone(),
        );
        Ok(())
    }

    // ----- sealed-object helpers -------------------------------------------------------

    pub(crate) fn seal_json<T: Serialize>(
        &self,
        ty: ObjectType,
        key: &str,
        value: &T,
    ) -> Result<Bytes> {
        let json =
            serde_json::to_vec(value).map_err(|e| Error::invalid(format!("serialize: {e}")))?;
        Ok(Bytes::from(crypto::seal_object(
            &self.keys().enc,
            ty,
            key.as_bytes(),
            &json,
        )))
    }

    pub(crate) fn open_json<T: for<'de> Deserialize<'de>>(
        &self,
        ty: ObjectType,
        key: &str,
        bytes: &[u8],
    ) -> Result<T> {
        let plain = crypto::open_object(&self.keys().enc, ty, key.as_bytes(), bytes, key)?;
        serde_json::from_slice(&plain)
            .map_err(|e| Error::corrupt(key, format!("undecodable record: {e}")))
    }

    /// Seal a replication status record (type 8) bound to its store key; the
    /// replication service owns the JSON payload.
    pub(crate) fn seal_replication_record<T: Serialize>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<Bytes> {
        self.seal_json(ObjectType::Replication, key, value)
    }

    /// Open a record sealed by [`Repository::seal_replication_record`].
    pub(crate) fn open_replication_record<T: for<'de> Deserialize<'de>>(
        &self,
        key: &str,
        bytes: &[u8],
    ) -> Result<T> {
        self.open_json(ObjectType::Replication, key, bytes)
    }

    pub(crate) async fn get_required(&self, key: &str) -> Result<Bytes> {
        self.inner
            .store
            .get(&store_key(key)?)
            .await
            .map_err(Error::from_store_required)
    }

    /// The keyed name of a mailbox in store keys (never the address itself).
    pub fn mailbox_key_name(&self, mailbox: &MailboxId) -> String {
        crypto::mailbox_name(&self.keys().name, mailbox.address())
    }

    // ----- index -------------------------------------------------------------------------

    /// Read index files not merged yet, and fail with the first unreadable index file's
    /// error (after merging every readable one, so reads of content they locate still
    /// work). [`Repository::refresh_index_report`] is the variant that never fails on a
    /// bad file and lists them all.
    pub async fn refresh_index(&self) -> Result<()> {
        self.refresh_index_report().await?;
        match self.bad_index_files().first() {
            Some(key) => match self.read_index_file(key).await {
                Err(e) if e.is_integrity_failure() => Err(e),
                _ => Ok(()),
            },
            None => Ok(()),
        }
    }

    /// Read index files not merged yet. Called lazily by reads and by `begin_backup`.
    ///
    /// An index file that cannot be read (altered, truncated, undecodable) is skipped and
    /// reported, not fatal: the other files still locate their content, and verify names
    /// the bad file precisely ([`Repository::bad_index_files`]). When a file merged before
    /// has disappeared (prune compacted the index), the cache is rebuilt from the files
    /// that exist now, so no entry of a deleted pack survives in memory to be deduplicated
    /// against.
    pub async fn refresh_index_report(&self) -> Result<IndexRefresh> {
        let listed = self.list_index_files().await?;
        {
            let present: std::collections::HashSet<&str> =
                listed.iter().map(|m| m.key.as_str()).collect();
            let mut idx = self
                .inner
                .index
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let vanished = idx
                .files
                .iter()
                .chain(idx.bad.iter())
                .any(|f| !present.contains(f.as_str()));
            if vanished {
                *idx = Index::default();
            }
        }
        let mut report = IndexRefresh::default();
        for meta in listed {
            let name = meta.key.as_str().to_owned();
            let known = {
                let idx = self
                    .inner
                    .index
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                idx.files.contains(&name) || idx.bad.contains(&name)
            };
            if known {
                continue;
            }
            match self.read_index_file(&name).await {
                Ok(entries) => {
                    self.index_merge(name, &entries);
                    report.files_read += 1;
                }
                // Deleted between list and get: a concurrent prune replaced it; the next
                // refresh sees its replacement.
                Err(Error::Missing { .. }) => {}
                Err(error) if error.is_integrity_failure() => {
                    tracing::warn!(index = %name, %error, "skipping unreadable index file");
                    self.inner
                        .index
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .bad
                        .insert(name.clone());
                    report.bad_files.push(VerifyProblem {
                        object: name,
                        content_id: None,
                        error,
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    /// Every index file in the store (key and size), from the listing only.
    pub async fn list_index_files(&self) -> Result<Vec<crate::ports::ObjectMeta>> {
        Ok(self.inner.store.list("index/").await?)
    }

    /// Read, authenticate and decode one index file (`index/<name>`). Errors name the file.
    pub async fn read_index_file(&self, key: &str) -> Result<Vec<index::IndexEntry>> {
        let bytes = self.get_required(key).await?;
        let keys = self.keys();
        let key = key.to_owned();
        tokio::task::spawn_blocking(move || {
            let plain =
                crypto::open_object(&keys.enc, ObjectType::Index, key.as_bytes(), &bytes, &key)?;
            index::decode_index(&plain).map_err(|r| Error::corrupt(&key, r))
        })
        .await
        .map_err(|e| Error::task(&e))?
    }

    /// Index files the cache skipped as unreadable (see [`Repository::refresh_index_report`]);
    /// [`Repository::read_index_file`] tells what is wrong with each.
    pub fn bad_index_files(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .inner
            .index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .bad
            .iter()
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// Forget the cached index (after prune rewrote it); the next read reloads it.
    pub(crate) fn reset_index(&self) {
        *self
            .inner
            .index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Index::default();
    }

    pub(crate) fn index_lookup(&self, id: &ContentId) -> Option<Location> {
        self.inner
            .index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
    }

    pub(crate) fn index_merge(&self, file: String, entries: &[index::IndexEntry]) {
        let mut idx = self
            .inner
            .index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        idx.insert_all(entries);
        idx.files.insert(file);
    }

    /// Where a content id is stored, refreshing the index once if it is unknown.
    pub async fn locate(&self, id: &ContentId) -> Result<Location> {
        if let Some(loc) = self.index_lookup(id) {
            return Ok(loc);
        }
        self.refresh_index_report().await?;
        self.index_lookup(id)
            .ok_or(Error::ContentNotFound { id: *id })
    }

    /// Number of content ids in the (cached) index.
    pub fn index_len(&self) -> usize {
        self.inner
            .index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .map
            .len()
    }

    // ----- blobs -------------------------------------------------------------------------

    /// Read content by id: checks the AEAD tag, the plaintext checksum and the content id,
    /// and reassembles chunked content.
    pub async fn read_blob(&self, id: &ContentId) -> Result<Bytes> {
        let loc = self.locate(id).await?;
        if loc.kind == BlobKind::ChunkList {
            let list_bytes = self.read_located(id, loc, false).await?;
            let key = loc.pack.store_key();
            let list = ChunkList::decode(&list_bytes).map_err(|r| Error::corrupt(&key, r))?;
            let mut out =
                Vec::with_capacity(usize::try_from(list.total_len).unwrap_or(0).min(1 << 30));
            for (chunk_id, len) in &list.chunks {
                let cloc = self.locate(chunk_id).await?;
                if cloc.kind != BlobKind::Chunk {
                    return Err(Error::corrupt(
                        cloc.pack.store_key(),
                        format!("chunk {chunk_id} indexed as {:?}", cloc.kind),
                    ));
                }
                let chunk = self.read_located(chunk_id, cloc, true).await?;
                if chunk.len() != *len as usize {
                    return Err(Error::ChecksumMismatch {
                        key: cloc.pack.store_key(),
                        id: *chunk_id,
                    });
                }
                out.extend_from_slice(&chunk);
            }
            let keys = self.keys();
            let id = *id;
            return tokio::task::spawn_blocking(move || {
                let sha: [u8; 32] = sha2::Digest::finalize(sha2::Digest::chain_update(
                    <sha2::Sha256 as sha2::Digest>::new(),
                    &out,
                ))
                .into();
                if sha != list.sha256
                    || out.len() as u64 != list.total_len
                    || crypto::content_id(&keys.id, list.kind, &out) != id
                {
                    return Err(Error::ChecksumMismatch { key, id });
                }
                Ok(Bytes::from(out))
            })
            .await
            .map_err(|e| Error::task(&e))?;
        }
        self.read_located(id, loc, true).await
    }

    /// Read content piece by piece (one chunk at a time for chunked content), with the
    /// same checks as [`Repository::read_blob`]; see [`BlobReader`].
    pub async fn read_blob_stream(&self, id: &ContentId) -> Result<BlobReader> {
        BlobReader::open(self, id).await
    }

    /// Fetch and open one blob; `check_id` recomputes the content id (not possible for a
    /// chunk list, whose id covers the whole content).
    async fn read_located(&self, id: &ContentId, loc: Location, check_id: bool) -> Result<Bytes> {
        let key = loc.pack.store_key();
        let range = u64::from(loc.offset)..u64::from(loc.offset) + u64::from(loc.length);
        let bytes = self
            .inner
            .store
            .get_range(&store_key(&key)?, range)
            .await
            .map_err(Error::from_store_required)?;
        if bytes.len() != loc.length as usize {
            return Err(Error::Truncated {
                key,
                expected: u64::from(loc.length),
                actual: bytes.len() as u64,
            });
        }
        let keys = self.keys();
        let id = *id;
        tokio::task::spawn_blocking(move || {
            open_sealed_blob(&keys, &id, loc, &bytes, check_id, key).map(Bytes::from)
        })
        .await
        .map_err(|e| Error::task(&e))?
    }

    pub(crate) async fn read_located_public(&self, id: &ContentId, loc: Location) -> Result<Bytes> {
        self.read_located(id, loc, false).await
    }

    /// Load a folder item list.
    pub async fn load_folder_items(&self, id: &ContentId) -> Result<Vec<MessageMeta>> {
        let bytes = self.read_blob(id).await?;
        let loc = self.locate(id).await?;
        serde_json::from_slice::<FolderItems>(&bytes)
            .map(|f| f.items)
            .map_err(|e| {
                Error::corrupt(loc.pack.store_key(), format!("folder item list {id}: {e}"))
            })
    }

    /// Read a whole pack and return its table (after checking header, length, trailer and
    /// the table's tag). Lets tools rebuild an index from packs alone.
    pub async fn pack_table(&self, pack: PackId) -> Result<Vec<PackEntry>> {
        let bytes = self.get_required(&pack.store_key()).await?;
        let keys = self.keys();
        tokio::task::spawn_blocking(move || pack::parse_pack(&keys.enc, pack, &bytes))
            .await
            .map_err(|e| Error::task(&e))?
    }

    /// Every pack in the store.
    pub async fn list_packs(&self) -> Result<Vec<PackId>> {
        Ok(self
            .inner
            .store
            .list("packs/")
            .await?
            .iter()
            .filter_map(|m| PackId::from_store_key(m.key.as_str()))
            .collect())
    }

    // ----- mailboxes and snapshots ------------------------------------------------------------

    /// Every mailbox that has been backed up (one small record per mailbox is decrypted;
    /// snapshot records are not).
    pub async fn list_mailboxes(&self) -> Result<Vec<MailboxId>> {
        let mut out = Vec::new();
        for meta in self.inner.store.list("mailboxes/").await? {
            let bytes = self.get_required(meta.key.as_str()).await?;
            out.push(self.open_json::<MailboxId>(
                ObjectType::Mailbox,
                meta.key.as_str(),
                &bytes,
            )?);
        }
        out.sort();
        Ok(out)
    }

    /// Snapshots of a mailbox, oldest first, from key names only.
    pub async fn list_snapshots(&self, mailbox: &MailboxId) -> Result<Vec<SnapshotInfo>> {
        let prefix = format!("snapshots/{}/", self.mailbox_key_name(mailbox));
        let mut out: Vec<SnapshotInfo> = self
            .inner
            .store
            .list(&prefix)
            .await?
            .iter()
            .filter_map(|m| parse_snapshot_key(m.key.as_str()).map(|(_, info)| info))
            .collect();
        out.sort_by_key(|s| (s.started, s.id));
        Ok(out)
    }

    /// Every snapshot in the repository, all mailboxes, oldest first, from key names only
    /// (for verify-all and retention; records are not decrypted).
    pub async fn list_all_snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        let mut out: Vec<SnapshotInfo> = self
            .inner
            .store
            .list("snapshots/")
            .await?
            .iter()
            .filter_map(|m| parse_snapshot_key(m.key.as_str()).map(|(_, info)| info))
            .collect();
        out.sort_by_key(|s| (s.started, s.id));
        Ok(out)
    }

    /// The newest snapshot of a mailbox (one record decrypted).
    pub async fn latest_snapshot(&self, mailbox: &MailboxId) -> Result<Option<Snapshot>> {
        match self.list_snapshots(mailbox).await?.last() {
            Some(info) => self.load_snapshot(info.id).await.map(Some),
            None => Ok(None),
        }
    }

    async fn find_snapshot_key(&self, id: SnapshotId) -> Result<String> {
        let suffix = format!("_{id}");
        self.inner
            .store
            .list("snapshots/")
            .await?
            .into_iter()
            .map(|m| m.key.as_str().to_owned())
            .find(|k| k.ends_with(&suffix))
            .ok_or(Error::SnapshotNotFound { id })
    }

    /// Load a snapshot record by id.
    pub async fn load_snapshot(&self, id: SnapshotId) -> Result<Snapshot> {
        let key = self.find_snapshot_key(id).await?;
        let bytes = self.get_required(&key).await?;
        let record: SnapshotRecord = self.open_json(ObjectType::Snapshot, &key, &bytes)?;
        if key.split('/').nth(1) != Some(self.mailbox_key_name(&record.mailbox).as_str()) {
            return Err(Error::corrupt(&key, "record belongs to another mailbox"));
        }
        Ok(Snapshot { id, record })
    }

    /// Delete a snapshot record (data stays until a prune; deleting records before data
    /// keeps the repository consistent at every step).
    pub async fn delete_snapshot(&self, id: SnapshotId) -> Result<()> {
        let key = self.find_snapshot_key(id).await?;
        self.inner.store.delete(&store_key(&key)?).await?;
        Ok(())
    }

    // ----- leases and sessions ------------------------------------------------------------

    /// Start a backup run of one mailbox: takes the mailbox lease (create-if-absent).
    /// Fails with [`Error::LeaseHeld`] while another writer's lease is valid and with
    /// [`Error::LeaseStale`] when an expired one is in the way (break it explicitly).
    pub async fn begin_backup(
        &self,
        mailbox: &MailboxId,
        owner: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<BackupSession> {
        session::BackupSession::begin(self.clone(), mailbox.clone(), owner, clock).await
    }

    /// The current lease of a mailbox, if any.
    pub async fn lease_info(&self, mailbox: &MailboxId) -> Result<Option<LeaseInfo>> {
        lease::read(self, mailbox).await
    }

    /// Remove an expired (or unreadable) lease so a new run can start; refuses a lease that
    /// is still valid ([`Error::LeaseHeld`]). Returns the lease that was removed.
    pub async fn break_lease(
        &self,
        mailbox: &MailboxId,
        clock: &dyn Clock,
    ) -> Result<Option<LeaseInfo>> {
        lease::break_stale(self, mailbox, clock).await
    }

    /// Verify a snapshot: every folder list and message it refers to, and every pack they
    /// live in, is read and checked (tags, checksums, content ids). Damage is collected in
    /// the report; `Err` only when the record itself cannot be read.
    pub async fn verify_snapshot(&self, id: SnapshotId) -> Result<VerifyReport> {
        verify::verify_snapshot(self, id).await
    }

    /// Verify several snapshots, reading and decrypting each pack they share only once
    /// (reports are in the order of `ids`; `Err` only when a record cannot be read).
    pub async fn verify_snapshots(&self, ids: &[SnapshotId]) -> Result<Vec<VerifyReport>> {
        let mut checked = verify::CheckedPacks::new();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(verify::verify_snapshot_with(self, *id, &mut checked).await?);
        }
        Ok(out)
    }
}

/// Open one blob out of the bytes of its whole pack, with the same checks as a ranged
/// read (length, AEAD tag, and the content id when `check_id`). Verify reads each pack once
/// and checks every blob it needs from that buffer: one store request per pack instead of
/// one per blob, which is what dominates on S3. CPU-bound: call it from a blocking task.
pub(crate) fn open_blob_in_pack(
    keys: &RepoKeys,
    pack_bytes: &[u8],
    id: &ContentId,
    loc: Location,
    check_id: bool,
) -> Result<Vec<u8>> {
    let key = loc.pack.store_key();
    let start = loc.offset as usize;
    let Some(sealed) = pack_bytes.get(start..start + loc.length as usize) else {
        return Err(Error::Truncated {
            key,
            expected: u64::from(loc.length),
            actual: pack_bytes.len().saturating_sub(start) as u64,
        });
    };
    open_sealed_blob(keys, id, loc, sealed, check_id, key)
}

/// Decrypt one blob's sealed bytes and, when `check_id`, recompute its content id.
fn open_sealed_blob(
    keys: &RepoKeys,
    id: &ContentId,
    loc: Location,
    sealed: &[u8],
    check_id: bool,
    key: String,
) -> Result<Vec<u8>> {
    let plain = crypto::open_blob(&keys.enc, loc.kind, id, sealed, &key)?;
    if check_id && crypto::content_id(&keys.id, loc.kind, &plain) != *id {
        return Err(Error::ChecksumMismatch { key, id: *id });
    }
    Ok(plain)
}

/// What one [`Repository::refresh_index_report`] call did.
#[derive(Debug, Default)]
pub struct IndexRefresh {
    /// Index files read and merged by this call.
    pub files_read: usize,
    /// Index files found unreadable by this call (skipped; earlier ones are in
    /// [`Repository::bad_index_files`]).
    pub bad_files: Vec<VerifyProblem>,
}

/// The JSON payload of a folder item list blob.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct FolderItems {
    pub(crate) version: u32,
    pub(crate) items: Vec<MessageMeta>,
}

pub(crate) fn snapshot_key(mailbox_name: &str, started: DateTime<Utc>, id: SnapshotId) -> String {
    format!(
        "snapshots/{mailbox_name}/{}_{id}",
        started.format(SNAPSHOT_TIME_FORMAT)
    )
}

/// `snapshots/<mailbox>/<time>_<uuid>` → (mailbox name, info).
pub(crate) fn parse_snapshot_key(key: &str) -> Option<(String, SnapshotInfo)> {
    let mut parts = key.strip_prefix("snapshots/")?.split('/');
    let (mb, name) = (parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let (time, id) = name.split_once('_')?;
    let started = NaiveDateTime::parse_from_str(time, SNAPSHOT_TIME_FORMAT)
        .ok()?
        .and_utc();
    Some((
        mb.to_owned(),
        SnapshotInfo {
            id: id.parse().ok()?,
            started,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn snapshot_key_round_trip_and_order() {
        let id = SnapshotId::random();
        let t = Utc.with_ymd_and_hms(2026, 11, 29, 10, 15, 0).unwrap()
            + chrono::Duration::milliseconds(123);
        let key = snapshot_key("abc", t, id);
        assert_eq!(key, format!("snapshots/abc/20261129T101500.123Z_{id}"));
        StoreKey::new(key.clone()).unwrap();
        let (mb, info) = parse_snapshot_key(&key).unwrap();
        assert_eq!((mb.as_str(), info.id, info.started), ("abc", id, t));
        let later = snapshot_key("abc", t + chrono::Duration::seconds(1), id);
        assert!(later > key);
        assert!(parse_snapshot_key("snapshots/abc/garbage").is_none());
    }

    #[test]
    fn blob_kind_bytes_round_trip() {
        for k in BlobKind::ALL {
            assert_eq!(BlobKind::from_u8(k as u8), Some(k));
        }
        assert_eq!(BlobKind::from_u8(0), None);
    }
}
