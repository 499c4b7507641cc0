//! Copying objects byte for byte to another store: the mechanics of replication and
//! rehydration (`service::replicate` decides what to copy and in which direction).
//!
//! Objects are immutable and content-named, so copying never decrypts: an object is copied
//! server-side when the target can copy from the source itself ([`BlobStore::copy_from`]),
//! otherwise read from the source and written to the target, and then checked on the
//! target through a [`Repository`] opened there (pack tables authenticated, index files
//! opened, other records compared with the source's bytes). An object the target already
//! holds with the source's size is skipped.
//!
//! What a snapshot needs is grouped into stages copied in order — packs (including every
//! pack named by the index files copied, so the target's index never names a pack the
//! target lacks), index files, the mailbox record, the snapshot record — each stage
//! complete and checked before the next starts, so a crash leaves at most unreferenced
//! data on the target.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;

use super::crypto::ObjectType;
use super::layout::{
    CONFIG_KEY, CONFIG_SPARE_KEY, INDEX_PREFIX, KEY_BLOB_KEY, KEY_SPARE_KEY, MAILBOX_PREFIX,
    PACK_PREFIX, REPLICA_MARKER_KEY, REPLICATION_STATUS_PREFIX, SNAPSHOT_PREFIX, store_key,
};
use super::pack::PackId;
use super::{Repository, retention};
use crate::error::{Error, Result};
use crate::model::SnapshotId;
use crate::ports::blob_store::CopySource;
use crate::ports::{BlobStore, Event, NullReporter, PutOptions, Reporter, StoreError, Task};

impl Repository {
    /// Whether `store` is this repository's store object itself (two handles on one
    /// place cannot be told apart by a store; callers compare locations first).
    pub(crate) fn is_same_store(&self, store: &Arc<dyn BlobStore>) -> bool {
        std::ptr::eq(
            Arc::as_ptr(store).cast::<()>(),
            Arc::as_ptr(self.store()).cast::<()>(),
        )
    }

    /// A description of the store (bucket, prefix and endpoint, or directory; never
    /// credentials), for messages and records.
    pub fn store_description(&self) -> String {
        self.store().describe()
    }

    /// Copy the wrapped key (and its spare) to `target` unless it holds one. Returns
    /// whether it copied.
    pub(crate) async fn copy_key_blob_to(&self, target: &Arc<dyn BlobStore>) -> Result<bool> {
        if target.head(&store_key(KEY_BLOB_KEY)?).await?.is_some() {
            return Ok(false);
        }
        self.copy_root_object(KEY_BLOB_KEY, target).await?;
        self.copy_spare(KEY_SPARE_KEY, target).await?;
        Ok(true)
    }

    /// Copy the config (and its spare) to `target` (create-if-absent: a config already
    /// there wins).
    pub(crate) async fn copy_config_to(&self, target: &Arc<dyn BlobStore>) -> Result<()> {
        self.copy_root_object(CONFIG_KEY, target).await?;
        self.copy_spare(CONFIG_SPARE_KEY, target).await
    }

    async fn copy_root_object(&self, key: &str, target: &Arc<dyn BlobStore>) -> Result<()> {
        let blob = self.get_required(key).await?;
        match target.put(&store_key(key)?, blob, PutOptions::CREATE).await {
            Ok(()) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// A spare copy, when the source has one (repositories written before spares have
    /// none; the target then gets them from its first writer).
    async fn copy_spare(&self, key: &str, target: &Arc<dyn BlobStore>) -> Result<()> {
        if self.store().head(&store_key(key)?).await?.is_none() {
            return Ok(());
        }
        self.copy_root_object(key, target).await
    }

    /// Write (overwrite) the replication status record of `snapshot` on `target_id`,
    /// sealed as type 8; the replication service owns the JSON payload.
    pub(crate) async fn put_replication_record<T: Serialize>(
        &self,
        target_id: &str,
        snapshot: SnapshotId,
        record: &T,
    ) -> Result<()> {
        let name = format!("{REPLICATION_STATUS_PREFIX}{target_id}/{snapshot}");
        let sealed = self.seal_json(ObjectType::Replication, &name, record)?;
        self.store()
            .put(&store_key(&name)?, sealed, PutOptions::OVERWRITE)
            .await?;
        Ok(())
    }

    /// Every replication status record, opened.
    pub(crate) async fn replication_records<T: DeserializeOwned>(&self) -> Result<Vec<T>> {
        let mut out = Vec::new();
        for meta in self.store().list(REPLICATION_STATUS_PREFIX).await? {
            let name = meta.key.as_str();
            let bytes = self.get_required(name).await?;
            out.push(self.open_json(ObjectType::Replication, name, &bytes)?);
        }
        Ok(out)
    }
}

/// The replica marker's JSON in `store`, if any (plain, readable without a key).
pub(crate) async fn read_replica_marker(store: &dyn BlobStore) -> Result<Option<Bytes>> {
    match store.get(&store_key(REPLICA_MARKER_KEY)?).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Write (overwrite) the replica marker's JSON into `store`.
pub(crate) async fn write_replica_marker(store: &dyn BlobStore, json: Bytes) -> Result<()> {
    store
        .put(&store_key(REPLICA_MARKER_KEY)?, json, PutOptions::OVERWRITE)
        .await?;
    Ok(())
}

/// How a copied object is checked on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Authenticate the pack's table through the target repository.
    Pack,
    /// Open the index file through the target repository.
    Index,
    /// Compare the bytes read back with the source's.
    Bytes,
}

/// Everything one snapshot needs, by copy stage (store keys stay inside `repo`).
#[derive(Debug, Default)]
pub(crate) struct SnapshotObjects {
    packs: BTreeSet<String>,
    index: BTreeSet<String>,
    mailbox: BTreeSet<String>,
    record: BTreeSet<String>,
}

impl SnapshotObjects {
    /// Objects in all stages (the wrapped key and the config are not counted).
    pub(crate) fn len(&self) -> usize {
        self.packs.len() + self.index.len() + self.mailbox.len() + self.record.len()
    }
}

/// What copying a set of objects did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct CopyCounts {
    /// Objects copied (server-side copies included).
    pub(crate) copied: usize,
    /// Of those, copied by the target's server.
    pub(crate) copied_server_side: usize,
    /// Objects the target already held with the source's size.
    pub(crate) skipped: usize,
    /// Bytes copied.
    pub(crate) bytes_copied: u64,
}

/// One copy run between two opened repositories: what is known to be where.
#[derive(Debug)]
pub(crate) struct ObjectCopier {
    source: Repository,
    target: Repository,
    parallel: usize,
    /// Where the source's objects live, if the target may copy them server-side.
    copy_source: Option<CopySource>,
    source_sizes: HashMap<String, u64>,
    target_sizes: HashMap<String, u64>,
    /// Packs each index file points at (read once per run).
    index_packs: HashMap<String, BTreeSet<String>>,
    /// Told of every object copied or found present ([`Task::Copy`]).
    reporter: Arc<dyn Reporter>,
}

impl ObjectCopier {
    /// List both sides once; `parallel` objects are copied at a time.
    pub(crate) async fn new(
        source: &Repository,
        target: &Repository,
        parallel: usize,
    ) -> Result<Self> {
        let mut copier = Self {
            source: source.clone(),
            target: target.clone(),
            parallel: parallel.max(1),
            copy_source: source.store().copy_source(),
            source_sizes: HashMap::new(),
            target_sizes: HashMap::new(),
            index_packs: HashMap::new(),
            reporter: Arc::new(NullReporter),
        };
        for prefix in [PACK_PREFIX, INDEX_PREFIX, MAILBOX_PREFIX, SNAPSHOT_PREFIX] {
            for m in copier.source.store().list(prefix).await? {
                copier
                    .source_sizes
                    .insert(m.key.as_str().to_owned(), m.size);
            }
            for m in copier.target.store().list(prefix).await? {
                copier
                    .target_sizes
                    .insert(m.key.as_str().to_owned(), m.size);
            }
        }
        Ok(copier)
    }

    /// Report progress to `reporter` from now on.
    pub(crate) fn report_to(&mut self, reporter: Arc<dyn Reporter>) {
        self.reporter = reporter;
    }

    /// What snapshot `id` needs (what Object Lock protects for it), plus every pack named
    /// by the index files among them.
    pub(crate) async fn snapshot_objects(&mut self, id: SnapshotId) -> Result<SnapshotObjects> {
        let mut out = SnapshotObjects::default();
        for dep in retention::snapshot_dependencies(&self.source, id).await? {
            if dep.starts_with(PACK_PREFIX) {
                out.packs.insert(dep);
            } else if dep.starts_with(INDEX_PREFIX) {
                out.index.insert(dep);
            } else if dep.starts_with(MAILBOX_PREFIX) {
                out.mailbox.insert(dep);
            } else if dep.starts_with(SNAPSHOT_PREFIX) {
                out.record.insert(dep);
            }
        }
        for file in out.index.clone() {
            out.packs.extend(self.packs_of_index(&file).await?);
        }
        Ok(out)
    }

    async fn packs_of_index(&mut self, file: &str) -> Result<BTreeSet<String>> {
        if let Some(p) = self.index_packs.get(file) {
            return Ok(p.clone());
        }
        let packs: BTreeSet<String> = self
            .source
            .read_index_file(file)
            .await?
            .iter()
            .map(|e| e.location.pack.store_key())
            .collect();
        self.index_packs.insert(file.to_owned(), packs.clone());
        Ok(packs)
    }

    /// Copy `objects` stage by stage (data before records; each stage copied and checked
    /// before the next starts).
    pub(crate) async fn copy(&mut self, objects: SnapshotObjects) -> Result<CopyCounts> {
        let mut counts = CopyCounts::default();
        self.copy_stage(objects.packs, Check::Pack, &mut counts)
            .await?;
        self.copy_stage(objects.index, Check::Index, &mut counts)
            .await?;
        self.copy_stage(objects.mailbox, Check::Bytes, &mut counts)
            .await?;
        self.copy_stage(objects.record, Check::Bytes, &mut counts)
            .await?;
        Ok(counts)
    }

    /// Copy `keys` with at most `parallel` objects in flight, skipping those the target
    /// already holds with the source's size.
    async fn copy_stage(
        &mut self,
        keys: BTreeSet<String>,
        check: Check,
        out: &mut CopyCounts,
    ) -> Result<()> {
        let mut pending: Vec<(String, u64)> = Vec::new();
        for k in keys {
            let size = match self.source_sizes.get(&k) {
                Some(s) => Some(*s),
                None => self
                    .source
                    .store()
                    .head(&store_key(&k)?)
                    .await?
                    .map(|m| m.size),
            };
            let Some(size) = size else {
                return Err(Error::Missing { key: k });
            };
            if self.target_sizes.get(&k) == Some(&size) {
                out.skipped += 1;
                self.reporter.report(Event::TaskProgress {
                    task: Task::Copy,
                    done: 1,
                    bytes: 0,
                });
            } else {
                pending.push((k, size));
            }
        }
        let mut pending = pending.into_iter();
        let mut tasks: JoinSet<Result<Copied>> = JoinSet::new();
        loop {
            while tasks.len() < self.parallel {
                let Some((k, size)) = pending.next() else {
                    break;
                };
                let job = CopyJob {
                    source: self.source.clone(),
                    target: self.target.clone(),
                    copy_source: self.copy_source.clone(),
                    name: k,
                    size,
                    check,
                };
                tasks.spawn(job.run());
            }
            let Some(joined) = tasks.join_next().await else {
                break;
            };
            let done = joined.map_err(|e| Error::task(&e))??;
            out.copied += 1;
            if done.server_side {
                out.copied_server_side += 1;
            }
            out.bytes_copied += done.size;
            self.reporter.report(Event::TaskProgress {
                task: Task::Copy,
                done: 1,
                bytes: done.size,
            });
            self.target_sizes.insert(done.name, done.size);
        }
        Ok(())
    }
}

/// One copied object.
struct Copied {
    name: String,
    size: u64,
    /// The target's server copied it from the source.
    server_side: bool,
}

/// One object to copy and check, owned so it can run as its own task.
struct CopyJob {
    source: Repository,
    target: Repository,
    copy_source: Option<CopySource>,
    name: String,
    /// Size on the source, as listed.
    size: u64,
    check: Check,
}

impl CopyJob {
    /// Copy the object byte for byte — server-side when the target can, else read and
    /// write — and check it on the target.
    async fn run(self) -> Result<Copied> {
        let key = store_key(&self.name)?;
        let target_store = self.target.store();
        let server_side = match &self.copy_source {
            Some(src) => {
                target_store
                    .copy_from(src, &key, &key, PutOptions::OVERWRITE)
                    .await?
            }
            None => false,
        };
        // The source's bytes, when this process has them or needs them to compare.
        let (size, bytes) = if server_side {
            (self.size, None)
        } else {
            let bytes = self.source.get_required(&self.name).await?;
            target_store
                .put(&key, bytes.clone(), PutOptions::OVERWRITE)
                .await?;
            (bytes.len() as u64, Some(bytes))
        };
        match self.check {
            Check::Pack => {
                let pack = PackId::from_store_key(&self.name)
                    .ok_or_else(|| Error::corrupt(&self.name, "not a pack key"))?;
                self.target.pack_table(pack).await?;
            }
            Check::Index => {
                self.target.read_index_file(&self.name).await?;
            }
            Check::Bytes => {
                let expected = match bytes {
                    Some(b) => b,
                    None => self.source.get_required(&self.name).await?,
                };
                let back = self.target.get_required(&self.name).await?;
                if back != expected {
                    return Err(Error::corrupt(
                        &self.name,
                        format!("differs on {} after copying it", target_store.describe()),
                    ));
                }
            }
        }
        Ok(Copied {
            name: self.name,
            size,
            server_side,
        })
    }
}
