//! Replication and rehydration: copy what snapshots need to a second store, as ciphertext.
//!
//! Atlas 1.x replicated by listing the primary and copying object by object in no
//! particular order, so an interrupted run could leave a snapshot record on the target
//! whose packs never arrived, and it happily copied into a bucket that held another
//! tenant's key. Here:
//!
//! - **What is copied** is exactly what Object Lock protects for a snapshot
//!   ([`crate::repo::retention`]): its record, the mailbox record, the wrapped key, the
//!   config, the packs of every blob it references (folder lists, MIME, chunk lists,
//!   chunks) and the index files locating them — plus every pack those index files point
//!   at, so the target's index never names a pack the target lacks (a later backup there
//!   would deduplicate against it and write a snapshot that cannot be read).
//! - **Order**: key and config (when absent) → replica marker → packs → index files →
//!   mailbox record → snapshot record. A crash at any write leaves at most unreferenced
//!   data on the target, never a record whose data is missing.
//! - **Nothing is decrypted to be copied**: objects are copied byte for byte. What was
//!   copied is verified on the target through a [`Repository`] opened there: each pack's
//!   table is authenticated, each index file and the snapshot record are opened, and
//!   other records are compared with the source's bytes.
//! - **Server-side copy** when the target can copy from the source itself
//!   ([`BlobStore::copy_from`], e.g. two buckets on one S3 endpoint with one access key):
//!   the bytes then never pass through this process. Where it cannot (`Ok(false)`), the
//!   object is read from the source and written to the target. Either way the same
//!   verification follows, and the summary counts server-side copies apart.
//! - **Idempotent**: objects are immutable and content-named, so one already present on
//!   the target with the same size is skipped.
//! - **Same key only**: a target whose wrapped key does not open with the passphrase to the
//!   same data key, or whose config carries another repository id, is refused before
//!   anything is written.
//! - **Replica marker** (`_meta/replica`, plain JSON): written on replication targets so a
//!   backup into a replica is refused unless forced; rehydration never writes it.
//! - **Status records** (`replication/<target id>/<snapshot id>`, sealed type 8) are kept
//!   in the source for each replicated snapshot and listed by [`list_status`].

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::model::{MailboxId, SnapshotId};
use crate::ports::blob_store::CopySource;
use crate::ports::{BlobStore, Clock, PutOptions, StoreError, StoreKey};
use crate::repo::{CONFIG_KEY, KEY_BLOB_KEY, PackId, Passphrase, Repository};

/// Store key of the replica marker.
pub const REPLICA_MARKER_KEY: &str = "_meta/replica";
/// Prefix of the replication status records in the source repository.
pub const STATUS_PREFIX: &str = "replication/";
/// Default number of objects copied at once.
pub const DEFAULT_PARALLEL: usize = 4;
/// Upper bound for [`CopyOptions::parallel`]: each copy holds one object (a pack is at
/// most the pack target size) in memory.
pub const MAX_PARALLEL: usize = 32;

const MARKER_VERSION: u32 = 1;
const STATUS_VERSION: u32 = 1;

/// The plain-JSON marker that says a store is a replica (no secret in it: the repository
/// id and where it came from, so `atlas backup` can explain its refusal without a key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaMarker {
    /// Marker format version.
    pub version: u32,
    /// Repository id of the source (equal to the replica's own, the config is copied).
    pub source_repo_id: uuid::Uuid,
    /// Description of the source store (no credentials).
    pub source: String,
    /// When the marker was (last) written.
    pub marked_at: DateTime<Utc>,
    /// Tool and version that wrote it.
    pub tool: String,
}

/// Read the replica marker of a store, if any. Needs no key, so a backup can check its
/// target before opening the repository.
pub async fn read_replica_marker(store: &dyn BlobStore) -> Result<Option<ReplicaMarker>> {
    match store.get(&key(REPLICA_MARKER_KEY)?).await {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::corrupt(REPLICA_MARKER_KEY, format!("undecodable marker: {e}"))),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Which snapshots to copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// One snapshot.
    Snapshot(SnapshotId),
    /// Every snapshot of a mailbox.
    Mailbox(MailboxId),
    /// Every snapshot of the repository.
    All,
}

/// Which way the copy goes; decides the marker and the status records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Primary → replica: marks the target as a replica, records status in the source.
    Replicate,
    /// Replica → primary (disaster recovery): no marker, no status records.
    Rehydrate,
}

/// What to copy and how.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Snapshots to copy.
    pub selection: Selection,
    /// Replicate or rehydrate.
    pub direction: Direction,
    /// Objects copied at once (clamped to `1..=MAX_PARALLEL`).
    pub parallel: usize,
}

/// What happened to one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotCopy {
    /// Snapshot id.
    pub snapshot: SnapshotId,
    /// Its mailbox address.
    pub mailbox: String,
    /// When the snapshot's run started.
    pub started: DateTime<Utc>,
    /// Objects it needs (key and config excluded).
    pub objects: usize,
    /// Objects copied by this run (server-side copies included).
    pub copied: usize,
    /// Of `copied`, objects the target's server copied from the source itself, without
    /// the bytes passing through Atlas.
    pub copied_server_side: usize,
    /// Objects already on the target with the same size.
    pub skipped: usize,
    /// Bytes copied by this run.
    pub bytes_copied: u64,
}

/// What a copy did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CopySummary {
    /// The target store (no credentials).
    pub target: String,
    /// Short stable id of the target (names its status records).
    pub target_id: String,
    /// Whether the wrapped key and config had to be copied (the target was empty).
    pub initialized_target: bool,
    /// Per snapshot, oldest first.
    pub snapshots: Vec<SnapshotCopy>,
}

impl CopySummary {
    /// Objects copied in total.
    pub fn copied(&self) -> usize {
        self.snapshots.iter().map(|s| s.copied).sum()
    }

    /// Objects copied server-side in total (a subset of [`CopySummary::copied`]).
    pub fn copied_server_side(&self) -> usize {
        self.snapshots.iter().map(|s| s.copied_server_side).sum()
    }

    /// Objects skipped in total.
    pub fn skipped(&self) -> usize {
        self.snapshots.iter().map(|s| s.skipped).sum()
    }

    /// Bytes copied in total.
    pub fn bytes_copied(&self) -> u64 {
        self.snapshots.iter().map(|s| s.bytes_copied).sum()
    }
}

/// A replication status record: one per snapshot and target, kept in the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationStatus {
    /// Record format version.
    pub version: u32,
    /// Target id (see [`target_id`]).
    pub target_id: String,
    /// Target description (no credentials).
    pub target: String,
    /// Snapshot id.
    pub snapshot: SnapshotId,
    /// Mailbox address.
    pub mailbox: String,
    /// Start time of the snapshot's run.
    pub snapshot_started: DateTime<Utc>,
    /// When the snapshot was last confirmed complete on the target.
    pub replicated_at: DateTime<Utc>,
    /// Objects the snapshot needs there.
    pub objects: usize,
    /// Objects the last run copied.
    pub copied: usize,
    /// Bytes the last run copied.
    pub bytes_copied: u64,
}

/// A short stable id for a target store: the first 16 hex digits of SHA-256 of its
/// description (which names bucket, prefix and endpoint, or the directory — never
/// credentials).
pub fn target_id(store: &dyn BlobStore) -> String {
    let digest = Sha256::digest(store.describe().as_bytes());
    hex::encode(&digest[..8])
}

/// Every replication status record of `repo`, sorted by target, then snapshot time.
pub async fn list_status(repo: &Repository) -> Result<Vec<ReplicationStatus>> {
    let mut out = Vec::new();
    for meta in repo.store().list(STATUS_PREFIX).await? {
        let name = meta.key.as_str();
        let bytes = repo.get_required(name).await?;
        out.push(repo.open_replication_record::<ReplicationStatus>(name, &bytes)?);
    }
    out.sort_by(|a, b| {
        (&a.target_id, a.snapshot_started, a.snapshot).cmp(&(
            &b.target_id,
            b.snapshot_started,
            b.snapshot,
        ))
    });
    Ok(out)
}

/// Copy the selected snapshots of `source` to `target` (see the module docs). The target
/// is opened with the source's tenant and `passphrase`. Stops at the first failure; every
/// snapshot finished before it is complete on the target (and has its status record).
pub async fn copy_snapshots(
    source: &Repository,
    target: Arc<dyn BlobStore>,
    passphrase: &Passphrase,
    opts: &CopyOptions,
    clock: &dyn Clock,
) -> Result<CopySummary> {
    // The same store object (callers compare locations before building a second handle
    // to the same place; a store cannot tell that two handles are one place).
    if std::ptr::eq(
        Arc::as_ptr(&target).cast::<()>(),
        Arc::as_ptr(source.store()).cast::<()>(),
    ) {
        return Err(Error::invalid(format!(
            "the target {} is the source itself",
            target.describe()
        )));
    }
    let ids = select(source, &opts.selection).await?;
    let (target_repo, initialized_target) =
        prepare_target(source, &target, passphrase, opts.direction, clock).await?;
    let mut copier = Copier {
        source: source.clone(),
        target: target_repo,
        target_store: target,
        parallel: opts.parallel.clamp(1, MAX_PARALLEL),
        copy_source: source.store().copy_source(),
        source_sizes: HashMap::new(),
        target_sizes: HashMap::new(),
        index_packs: HashMap::new(),
    };
    copier.load_listings().await?;
    let target_desc = copier.target_store.describe();
    let tid = target_id(copier.target_store.as_ref());
    let mut snapshots = Vec::with_capacity(ids.len());
    for id in ids {
        let done = copier.copy_one(id).await?;
        if opts.direction == Direction::Replicate {
            write_status(source, &tid, &target_desc, &done, clock).await?;
        }
        tracing::info!(snapshot = %id, copied = done.copied, skipped = done.skipped, "snapshot copied");
        snapshots.push(done);
    }
    Ok(CopySummary {
        target: target_desc,
        target_id: tid,
        initialized_target,
        snapshots,
    })
}

fn key(name: &str) -> Result<StoreKey> {
    StoreKey::new(name).map_err(Error::Store)
}

/// The snapshot ids of a selection, oldest first.
async fn select(source: &Repository, selection: &Selection) -> Result<Vec<SnapshotId>> {
    let infos = match selection {
        Selection::Snapshot(id) => {
            // Fails with SnapshotNotFound before anything is written.
            source.load_snapshot(*id).await?;
            return Ok(vec![*id]);
        }
        Selection::Mailbox(mb) => {
            let infos = source.list_snapshots(mb).await?;
            if infos.is_empty() {
                return Err(Error::MailboxNotFound {
                    mailbox: mb.address().to_owned(),
                });
            }
            infos
        }
        Selection::All => source.list_all_snapshots().await?,
    };
    Ok(infos.into_iter().map(|i| i.id).collect())
}

/// Make sure the target holds the source's key and config (copying them when absent),
/// refuse one that holds another key or repository, write the replica marker when
/// replicating, and open the target. Returns whether key or config were copied.
async fn prepare_target(
    source: &Repository,
    target: &Arc<dyn BlobStore>,
    passphrase: &Passphrase,
    direction: Direction,
    clock: &dyn Clock,
) -> Result<(Repository, bool)> {
    let source_cfg = source.require_config()?;
    let desc = target.describe();
    let mut initialized = false;
    if target.head(&key(KEY_BLOB_KEY)?).await?.is_none() {
        let blob = source.get_required(KEY_BLOB_KEY).await?;
        match target
            .put(&key(KEY_BLOB_KEY)?, blob, PutOptions::CREATE)
            .await
        {
            Ok(()) | Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        initialized = true;
    }
    let opened = match Repository::open(Arc::clone(target), source.tenant(), passphrase).await {
        Ok(repo) => repo,
        Err(Error::WrongPassphrase { .. }) => {
            return Err(Error::invalid(format!(
                "{desc} holds a different data key (its wrapped key does not open with this \
                 passphrase for tenant {}); refusing to copy into it",
                source.tenant()
            )));
        }
        Err(e) => return Err(e),
    };
    if opened.data_key().expose_secret() != source.data_key().expose_secret() {
        return Err(Error::invalid(format!(
            "{desc} holds a different data key (another repository with the same passphrase); \
             refusing to copy into it"
        )));
    }
    let opened = match opened.config() {
        Some(cfg) if cfg.repo_id != source_cfg.repo_id => {
            return Err(Error::invalid(format!(
                "{desc} is repository {} while the source is {}; refusing to copy into it",
                cfg.repo_id, source_cfg.repo_id
            )));
        }
        Some(_) => opened,
        None => {
            let blob = source.get_required(CONFIG_KEY).await?;
            match target
                .put(&key(CONFIG_KEY)?, blob, PutOptions::CREATE)
                .await
            {
                Ok(()) | Err(StoreError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            initialized = true;
            let reopened =
                Repository::open(Arc::clone(target), source.tenant(), passphrase).await?;
            match reopened.config() {
                Some(cfg) if cfg.repo_id == source_cfg.repo_id => reopened,
                _ => {
                    return Err(Error::invalid(format!(
                        "{desc}: its config is not the source's after copying it"
                    )));
                }
            }
        }
    };
    if direction == Direction::Replicate {
        let marker = ReplicaMarker {
            version: MARKER_VERSION,
            source_repo_id: source_cfg.repo_id,
            source: source.store().describe(),
            marked_at: clock.now(),
            tool: format!("atlas-core {}", env!("CARGO_PKG_VERSION")),
        };
        let json = serde_json::to_vec(&marker)
            .map_err(|e| Error::invalid(format!("serialize marker: {e}")))?;
        target
            .put(
                &key(REPLICA_MARKER_KEY)?,
                Bytes::from(json),
                PutOptions::OVERWRITE,
            )
            .await?;
    }
    Ok((opened, initialized))
}

async fn write_status(
    source: &Repository,
    tid: &str,
    target: &str,
    done: &SnapshotCopy,
    clock: &dyn Clock,
) -> Result<()> {
    let name = format!("{STATUS_PREFIX}{tid}/{}", done.snapshot);
    let record = ReplicationStatus {
        version: STATUS_VERSION,
        target_id: tid.to_owned(),
        target: target.to_owned(),
        snapshot: done.snapshot,
        mailbox: done.mailbox.clone(),
        snapshot_started: done.started,
        replicated_at: clock.now(),
        objects: done.objects,
        copied: done.copied,
        bytes_copied: done.bytes_copied,
    };
    let sealed = source.seal_replication_record(&name, &record)?;
    source
        .store()
        .put(&key(&name)?, sealed, PutOptions::OVERWRITE)
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

/// One copy run's state: the two sides and what is known to be where.
struct Copier {
    source: Repository,
    target: Repository,
    target_store: Arc<dyn BlobStore>,
    parallel: usize,
    /// Where the source's objects live, if the target may copy them server-side.
    copy_source: Option<CopySource>,
    source_sizes: HashMap<String, u64>,
    target_sizes: HashMap<String, u64>,
    /// Packs each index file points at (read once per run).
    index_packs: HashMap<String, BTreeSet<String>>,
}

const PREFIXES: [&str; 4] = ["packs/", "index/", "mailboxes/", "snapshots/"];

impl Copier {
    async fn load_listings(&mut self) -> Result<()> {
        for prefix in PREFIXES {
            for m in self.source.store().list(prefix).await? {
                self.source_sizes.insert(m.key.as_str().to_owned(), m.size);
            }
            for m in self.target_store.list(prefix).await? {
                self.target_sizes.insert(m.key.as_str().to_owned(), m.size);
            }
        }
        Ok(())
    }

    async fn copy_one(&mut self, id: SnapshotId) -> Result<SnapshotCopy> {
        let snap = self.source.load_snapshot(id).await?;
        let deps = crate::repo::retention::snapshot_dependencies(&self.source, id).await?;
        let mut packs = BTreeSet::new();
        let mut index = BTreeSet::new();
        let mut mailbox = Vec::new();
        let mut record = Vec::new();
        for dep in deps {
            if dep.starts_with("packs/") {
                packs.insert(dep);
            } else if dep.starts_with("index/") {
                index.insert(dep);
            } else if dep.starts_with("mailboxes/") {
                mailbox.push(dep);
            } else if dep.starts_with("snapshots/") {
                record.push(dep);
            }
        }
        for file in &index {
            packs.extend(self.packs_of_index(file).await?);
        }
        let objects = packs.len() + index.len() + mailbox.len() + record.len();
        let mut out = SnapshotCopy {
            snapshot: id,
            mailbox: snap.record.mailbox.address().to_owned(),
            started: snap.record.started,
            objects,
            copied: 0,
            copied_server_side: 0,
            skipped: 0,
            bytes_copied: 0,
        };
        // Data before records: each stage completes (copied and verified) before the
        // next one starts.
        self.copy_stage(packs, Check::Pack, &mut out).await?;
        self.copy_stage(index, Check::Index, &mut out).await?;
        self.copy_stage(mailbox.into_iter().collect(), Check::Bytes, &mut out)
            .await?;
        self.copy_stage(record.into_iter().collect(), Check::Bytes, &mut out)
            .await?;
        // The record opens on the target and belongs to the right mailbox.
        self.target.load_snapshot(id).await?;
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

    /// Copy `keys` with at most `parallel` objects in flight, skipping those the target
    /// already holds with the source's size.
    async fn copy_stage(
        &mut self,
        keys: BTreeSet<String>,
        check: Check,
        out: &mut SnapshotCopy,
    ) -> Result<()> {
        let mut pending: Vec<(String, u64)> = Vec::new();
        for k in keys {
            let size = match self.source_sizes.get(&k) {
                Some(s) => Some(*s),
                None => self.source.store().head(&key(&k)?).await?.map(|m| m.size),
            };
            let Some(size) = size else {
                return Err(Error::Missing { key: k });
            };
            if self.target_sizes.get(&k) == Some(&size) {
                out.skipped += 1;
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
                    target_store: Arc::clone(&self.target_store),
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
    target_store: Arc<dyn BlobStore>,
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
        let store_key = key(&self.name)?;
        let server_side = match &self.copy_source {
            Some(src) => {
                self.target_store
                    .copy_from(src, &store_key, &store_key, PutOptions::OVERWRITE)
                    .await?
            }
            None => false,
        };
        // The source's bytes, when this process has them or needs them to compare.
        let (size, bytes) = if server_side {
            (self.size, None)
        } else {
            let bytes = self.source.get_required(&self.name).await?;
            self.target_store
                .put(&store_key, bytes.clone(), PutOptions::OVERWRITE)
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
                        format!(
                            "differs on {} after copying it",
                            self.target_store.describe()
                        ),
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
