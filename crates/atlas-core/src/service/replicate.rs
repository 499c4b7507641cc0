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

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::model::{MailboxId, SnapshotId};
use crate::ports::{BlobStore, Clock, Event, Reporter, Task};
use crate::repo::{ObjectCopier, Passphrase, Repository};

/// Store key of the replica marker.
pub use crate::repo::REPLICA_MARKER_KEY;
/// Prefix of the replication status records in the source repository.
pub use crate::repo::REPLICATION_STATUS_PREFIX as STATUS_PREFIX;
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
    match crate::repo::read_replica_marker(store).await? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::corrupt(REPLICA_MARKER_KEY, format!("undecodable marker: {e}"))),
        None => Ok(None),
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
    /// Where progress goes: [`Task::Copy`], one unit per object copied or found present
    /// (no total: it is known per snapshot only).
    pub reporter: Arc<dyn Reporter>,
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
    let mut out: Vec<ReplicationStatus> = repo.replication_records().await?;
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
    if source.is_same_store(&target) {
        return Err(Error::invalid(format!(
            "the target {} is the source itself",
            target.describe()
        )));
    }
    let ids = select(source, &opts.selection).await?;
    let (target_repo, initialized_target) =
        prepare_target(source, &target, passphrase, opts.direction, clock).await?;
    let mut copier =
        ObjectCopier::new(source, &target_repo, opts.parallel.clamp(1, MAX_PARALLEL)).await?;
    copier.report_to(Arc::clone(&opts.reporter));
    let target_desc = target.describe();
    let tid = target_id(target.as_ref());
    let mut snapshots = Vec::with_capacity(ids.len());
    opts.reporter.report(Event::TaskStarted {
        task: Task::Copy,
        total: None,
        bytes: None,
    });
    for id in ids {
        let done = copy_one(&mut copier, source, &target_repo, id).await;
        let done = match done {
            Ok(d) => d,
            Err(e) => {
                opts.reporter.report(Event::TaskDone { task: Task::Copy });
                return Err(e);
            }
        };
        if opts.direction == Direction::Replicate {
            write_status(source, &tid, &target_desc, &done, clock).await?;
        }
        tracing::info!(snapshot = %id, copied = done.copied, skipped = done.skipped, "snapshot copied");
        snapshots.push(done);
    }
    opts.reporter.report(Event::TaskDone { task: Task::Copy });
    Ok(CopySummary {
        target: target_desc,
        target_id: tid,
        initialized_target,
        snapshots,
    })
}

/// Copy what one snapshot needs, data before records, and check that its record opens
/// on the target.
async fn copy_one(
    copier: &mut ObjectCopier,
    source: &Repository,
    target: &Repository,
    id: SnapshotId,
) -> Result<SnapshotCopy> {
    let snap = source.load_snapshot(id).await?;
    let objects = copier.snapshot_objects(id).await?;
    let total = objects.len();
    let counts = copier.copy(objects).await?;
    // The record opens on the target and belongs to the right mailbox.
    target.load_snapshot(id).await?;
    Ok(SnapshotCopy {
        snapshot: id,
        mailbox: snap.record.mailbox.address().to_owned(),
        started: snap.record.started,
        objects: total,
        copied: counts.copied,
        copied_server_side: counts.copied_server_side,
        skipped: counts.skipped,
        bytes_copied: counts.bytes_copied,
    })
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
    let mut initialized = source.copy_key_blob_to(target).await?;
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
            source.copy_config_to(target).await?;
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
            source: source.store_description(),
            marked_at: clock.now(),
            tool: format!("atlas-core {}", env!("CARGO_PKG_VERSION")),
        };
        let json = serde_json::to_vec(&marker)
            .map_err(|e| Error::invalid(format!("serialize marker: {e}")))?;
        crate::repo::write_replica_marker(target.as_ref(), Bytes::from(json)).await?;
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
    source
        .put_replication_record(tid, done.snapshot, &record)
        .await
}
