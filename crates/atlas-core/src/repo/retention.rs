//! Object Lock for snapshots: keep everything a snapshot needs under retention.
//!
//! A snapshot is only as immutable as its weakest dependency. Atlas 1.x locked the new
//! objects of a run and nothing else, so a snapshot that reused older (unlocked or
//! shorter-locked) data could lose it, and the wrapped key was never locked — one delete
//! made every backup unreadable. [`apply`] walks a committed snapshot and brings every
//! object it depends on to at least the requested retention:
//!
//! - the snapshot record and the mailbox record,
//! - the packs holding its folder lists, its message contents and — for chunked contents —
//!   the chunk lists and every chunk,
//! - every index file that locates any of those blobs (a reader needs one of them; keeping
//!   all of them means a later index compaction cannot strand the snapshot either),
//! - the wrapped data key (`_meta/dek.enc`) and the repository `config`, and their spare
//!   copies.
//!
//! Retention is only ever extended ([`BlobStore::extend_retention`] keeps the later date
//! and the stronger mode), so applying a shorter policy to reused data never weakens an
//! older, longer lock.
//!
//! Ordering: the new objects of a run could also be locked at `put` time; this module is
//! called right after the record is committed, and until it returns the new snapshot's
//! objects are as deletable as any other. [`ensure_lock_capable`] runs *before* the backup
//! writes anything, so a bucket that cannot lock fails the run up front instead of
//! leaving an unlocked snapshot behind.
//!
//! Nothing here changes the on-disk format: retention is a property of the stored objects,
//! not of their contents.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::task::JoinSet;

use super::{BlobKind, CONFIG_KEY, KEY_BLOB_KEY, Repository, store_key};
use crate::error::{Error, Result};
use crate::model::{ContentId, SnapshotId};
use crate::ports::{BlobStore, LockMode, Retention, StoreError};

/// How many `extend_retention` requests run at once (each is a HEAD plus at most a PUT of
/// the retention; bounded so a snapshot of thousands of packs does not open thousands of
/// connections).
const PARALLEL: usize = 8;

/// An object the store refused to delete because Object Lock still retains it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetainedObject {
    /// Store key.
    pub key: String,
    /// Retain-until date as the store reported it.
    pub until: String,
}

/// What [`apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionReport {
    /// The snapshot whose dependencies were locked.
    pub snapshot: SnapshotId,
    /// The retention asked for.
    pub requested: Retention,
    /// Objects now retained at least until `requested.retain_until`.
    pub objects: usize,
    /// Of those, packs (new and reused).
    pub packs: usize,
    /// Of those, index files.
    pub index_files: usize,
    /// The earliest retain-until date in force among the objects after the call (at
    /// least `requested.retain_until`; later when every object already had more).
    pub effective_until: DateTime<Utc>,
}

/// Fail unless the repository's store can enforce `mode` retention: Object Lock must be
/// enabled on the bucket. Called before a locking backup writes anything, so a run that
/// asked for immutability never produces unlocked data.
pub async fn ensure_lock_capable(repo: &Repository, mode: LockMode) -> Result<()> {
    let store = repo.store();
    match store.lock_status().await? {
        Some(status) if status.object_lock => Ok(()),
        Some(_) => Err(Error::Store(StoreError::Unsupported {
            what: format!(
                "{mode:?} retention: Object Lock is not enabled on {} (a bucket can only get \
                 Object Lock when it is created; let Atlas create a new bucket, or enable it \
                 on this one); nothing was written",
                store.describe()
            ),
        })),
        None => Err(Error::Store(StoreError::Unsupported {
            what: format!(
                "{mode:?} retention on {}: only S3 with Object Lock can keep data from being \
                 deleted; nothing was written",
                store.describe()
            ),
        })),
    }
}

/// Bring every object snapshot `id` depends on to at least `retention` (see the module
/// docs for the list). Fails on the first object that cannot be locked — a missing object
/// (the snapshot would not be restorable anyway) or a store that refuses — leaving the
/// objects handled so far locked; running it again is harmless.
pub async fn apply(
    repo: &Repository,
    id: SnapshotId,
    retention: Retention,
) -> Result<RetentionReport> {
    let keys = snapshot_dependencies(repo, id).await?;
    let packs = keys
        .iter()
        .filter(|k| k.starts_with(super::layout::PACK_PREFIX))
        .count();
    let index_files = keys
        .iter()
        .filter(|k| k.starts_with(super::layout::INDEX_PREFIX))
        .count();
    let objects = keys.len();
    let store = Arc::clone(repo.store());
    let mut effective_until: Option<DateTime<Utc>> = None;
    let mut pending = keys.into_iter();
    let mut tasks: JoinSet<Result<Retention>> = JoinSet::new();
    loop {
        while tasks.len() < PARALLEL {
            let Some(key) = pending.next() else { break };
            let store = Arc::clone(&store);
            tasks.spawn(async move { extend(store.as_ref(), &key, retention).await });
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        let now_in_force = joined.map_err(|e| Error::task(&e))??;
        effective_until = Some(effective_until.map_or(now_in_force.retain_until, |u| {
            u.min(now_in_force.retain_until)
        }));
    }
    Ok(RetentionReport {
        snapshot: id,
        requested: retention,
        objects,
        packs,
        index_files,
        effective_until: effective_until.unwrap_or(retention.retain_until),
    })
}

async fn extend(store: &dyn BlobStore, key: &str, retention: Retention) -> Result<Retention> {
    let in_force = store.extend_retention(&store_key(key)?, retention).await?;
    tracing::debug!(key, until = %in_force.retain_until, "retention in force");
    Ok(in_force)
}

/// The store keys of everything snapshot `id` needs, sorted (also what replication
/// copies, so a replica holds exactly what a lock here would protect).
pub(crate) async fn snapshot_dependencies(
    repo: &Repository,
    id: SnapshotId,
) -> Result<BTreeSet<String>> {
    let record_key = repo.find_snapshot_key(id).await?;
    let snap = repo.load_snapshot(id).await?;
    repo.refresh_index().await?;

    let mut keys = BTreeSet::from([record_key, KEY_BLOB_KEY.to_owned(), CONFIG_KEY.to_owned()]);
    // Format 5 on has no mailbox record: the snapshot record names the mailbox.
    if repo.keeps_mailbox_records() {
        keys.insert(repo.mailbox_record_name(&snap.record.mailbox));
    }
    // The spare copies of the root objects, where the repository has them (it has none
    // when written before they existed).
    for spare in [
        super::layout::KEY_SPARE_KEY,
        super::layout::CONFIG_SPARE_KEY,
    ] {
        if repo.store().head(&store_key(spare)?).await?.is_some() {
            keys.insert(spare.to_owned());
        }
    }
    let mut blobs: BTreeSet<ContentId> = BTreeSet::new();
    for folder in &snap.record.folders {
        // The list's own blobs (a piece directory and its pieces), then what its items
        // reference.
        let list = repo.load_folder_list(&folder.items).await?;
        blobs.extend(list.blobs);
        for item in list.items {
            blobs.extend(item.content_ids());
        }
    }
    let mut chunks = Vec::new();
    for blob in &blobs {
        let loc = repo.locate(blob).await?;
        if loc.kind == BlobKind::ChunkList {
            let bytes = repo.read_located(blob, loc, false).await?;
            let list = super::chunks::ChunkList::decode(&bytes)
                .map_err(|r| Error::corrupt(loc.pack.store_key(), r))?;
            chunks.extend(list.chunks.into_iter().map(|c| c.0));
        }
    }
    blobs.extend(chunks);
    for blob in &blobs {
        keys.insert(repo.locate(blob).await?.pack.store_key());
    }
    keys.extend(index_files_locating(repo, &blobs).await?);
    Ok(keys)
}

/// The index files that hold an entry for any of `blobs`.
async fn index_files_locating(
    repo: &Repository,
    blobs: &BTreeSet<ContentId>,
) -> Result<Vec<String>> {
    let wanted: HashSet<&ContentId> = blobs.iter().collect();
    let mut files = Vec::new();
    for meta in repo.list_index_files().await? {
        let key = meta.key.as_str().to_owned();
        // An unreadable index file cannot locate anything; refresh_index already failed
        // on one, so this only skips files that appeared damaged since.
        let Ok(entries) = repo.read_index_file(&key).await else {
            continue;
        };
        if entries.iter().any(|e| wanted.contains(&e.id)) {
            files.push(key);
        }
    }
    Ok(files)
}
