//! Prune: delete data no snapshot references, repack packs that are mostly waste, and
//! compact the index into few files.
//!
//! # Why it cannot race a backup
//!
//! A backup deduplicates against the index: it may *reference* a blob in an old pack
//! without rewriting it, and its snapshot record (the only thing that makes the reference
//! visible) is written last. Prune must never delete such a blob. Two mechanisms:
//!
//! 1. **Mutual exclusion.** Prune creates the repository lock `prune/lock` (a lease
//!    record, create-if-absent) and only *then* lists `locks/`: any valid mailbox lease
//!    makes it give up. A backup creates its mailbox lease and only *then* reads
//!    `prune/lock`, refusing to start while it is valid. Whichever of the two steps comes
//!    second sees the other's object, so a backup session and a prune never overlap.
//!    Stale leases and locks (expired — their holders renew them on a heartbeat — or
//!    whose process is gone) are removed by whoever meets them, so a killed backup or
//!    prune never blocks the other (see `lease.rs`); a stalled holder that wakes after
//!    its lease was removed cannot commit, since commit checks the lease first. A backup that starts after a prune reloads the index without
//!    the entries of deleted index files (`Repository::refresh_index` rebuilds its cache
//!    when a file it knew has gone), so it cannot dedup against a deleted pack either.
//! 2. **Deleting in an order that is safe at every step.** New packs (repacked live
//!    blobs) → new index files → old index files → doomed packs. Until the old index files
//!    are gone, every old entry still points at an existing pack; once they are gone, no
//!    index names a doomed pack. With a `grace` period, a doomed pack is only unindexed in
//!    this run and physically deleted by a later run once it has been unindexed for that
//!    long (`prune/pending` remembers since when); a later run that finds such a pack
//!    referenced after all (a writer that ignored the lock) indexes it again instead.
//!
//! Invariant: after prune, and after an interruption at any write, every blob that any
//! snapshot record references (its folder lists, their messages, the chunks of chunked
//! content) is named by an index file and present in the pack that file names.
//!
//! Packs that no index names (left by an interrupted backup or repack) are read whole;
//! whatever live content they hold is indexed again, the rest is deleted like any dead
//! pack. A snapshot whose folder list cannot be read stops prune: what it references is
//! unknown, so nothing could be deleted safely.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::chunks::ChunkList;
use super::crypto::{self, ObjectType};
use super::index::{self, IndexEntry, Location};
use super::item_list::{self, ListBlob};
use super::lease::{self, Held, LeaseInfo};
use super::pack::{self, PackEntry, PackId};
use super::retention::RetainedObject;
use super::{BlobKind, Repository, parse_snapshot_key, store_key};
use crate::error::{Error, Result};
use crate::model::{ContentId, SnapshotId, SnapshotRecord};
use crate::ports::{Clock, Event, NullReporter, PutOptions, Reporter, Task};

/// The repository-wide maintenance lock (a lease record, sealed object type 4).
pub(crate) const PRUNE_LOCK_KEY: &str = "prune/lock";
/// Packs unindexed by a prune and waiting for their grace period (sealed object type 7).
pub(crate) const PRUNE_PENDING_KEY: &str = "prune/pending";
/// Entries per compacted index file (57 bytes each: about 5.4 MiB of payload).
const MAX_INDEX_ENTRIES: usize = 100_000;

/// How to prune.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Plan only: read everything, write nothing, report what would go.
    pub dry_run: bool,
    /// Repack a pack when more than this fraction of its bytes is unreferenced
    /// (0.0..=1.0; 0.25 by default). Fully unreferenced packs are always deleted.
    pub repack_threshold: f64,
    /// How long a pack stays unindexed before it is deleted (zero: in the same run).
    pub grace: Duration,
    /// Owner string of the lock (e.g. `host:pid`), shown to a backup that has to wait.
    pub owner: String,
    /// Treat these snapshots as already removed (the dry run of `forget --prune`).
    pub ignore_snapshots: Vec<SnapshotId>,
    /// Where progress goes: [`Task::PrunePlan`], [`Task::Repack`], [`Task::Delete`].
    pub reporter: Arc<dyn Reporter>,
}

impl Default for PruneOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            repack_threshold: 0.25,
            grace: Duration::zero(),
            owner: "atlas".into(),
            ignore_snapshots: Vec::new(),
            reporter: Arc::new(NullReporter),
        }
    }
}

/// What a prune did (or, for a dry run, would do). Lists hold store keys.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PruneSummary {
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Snapshot records whose references were kept.
    pub snapshots: usize,
    /// Packs in the store before.
    pub packs_total: usize,
    /// Content ids referenced (including chunks and folder lists).
    pub referenced_blobs: usize,
    /// Packs deleted (would be deleted).
    pub packs_deleted: Vec<String>,
    /// Packs whose live blobs were copied to new packs (they are deleted, or pending).
    pub packs_repacked: Vec<String>,
    /// New packs written by repacking.
    pub packs_written: usize,
    /// Unreferenced blobs dropped (from deleted and repacked packs).
    pub blobs_freed: u64,
    /// Live blobs copied by repacking.
    pub blobs_repacked: u64,
    /// Bytes of the packs deleted.
    pub bytes_deleted: u64,
    /// Bytes of the new packs written.
    pub bytes_written: u64,
    /// Index files read.
    pub index_files_read: usize,
    /// Index files written by compaction.
    pub index_files_written: usize,
    /// Index files deleted (replaced by the compacted ones).
    pub index_files_deleted: Vec<String>,
    /// Index files that could not be read (their packs were indexed again from the packs'
    /// own tables, and the files replaced).
    pub bad_index_files: Vec<String>,
    /// Packs no index named that hold referenced content: indexed again.
    pub recovered_packs: Vec<String>,
    /// Packs left alone because they (or a live blob in them) could not be read.
    pub damaged_packs: Vec<String>,
    /// Referenced content found nowhere (those snapshots were already damaged; verify
    /// names them).
    pub missing_content: usize,
    /// Objects Object Lock kept from being deleted (old index files, packs), with their
    /// retain-until dates. A pack named by a retained index file is not deleted either
    /// (it stays, and stays indexed, so no index ever points at a missing pack); later
    /// prunes retry once the retention has passed.
    pub retained: Vec<RetainedObject>,
    /// What remains for a later run: unindexed packs waiting for the grace period.
    pub pending_packs: Vec<String>,
    /// Their bytes.
    pub pending_bytes: u64,
}

impl PruneSummary {
    /// Bytes the store holds less after this run.
    pub fn bytes_freed(&self) -> u64 {
        self.bytes_deleted.saturating_sub(self.bytes_written)
    }
}

/// Prune the repository; see the module docs. Refuses with [`Error::MaintenanceRunning`]
/// while another prune holds the lock and with [`Error::LeaseHeld`] while a mailbox lease
/// is valid; stale ones (expired, their process gone) are removed, with a warning, and do
/// not block it. A dry run takes no lock and writes nothing.
pub async fn prune(
    repo: &Repository,
    opts: &PruneOptions,
    clock: &dyn Clock,
) -> Result<PruneSummary> {
    repo.require_config()?;
    if !(0.0..=1.0).contains(&opts.repack_threshold) {
        return Err(Error::invalid("repack threshold must be between 0 and 1"));
    }
    if opts.grace < Duration::zero() {
        return Err(Error::invalid("grace period must not be negative"));
    }
    if opts.dry_run {
        return Pruner::new(repo, opts, clock, None).run().await;
    }
    let lock = lease::acquire_key(repo, PRUNE_LOCK_KEY, &opts.owner, None, clock).await?;
    let result = match check_no_leases(repo, clock).await {
        Ok(()) => Pruner::new(repo, opts, clock, Some(&lock)).run().await,
        Err(e) => Err(e),
    };
    // Released after a failure too: every intermediate state is consistent, so there is
    // nothing a backup must be kept away from.
    let released = lease::release(repo, &lock).await;
    repo.reset_index();
    let summary = result?;
    released?;
    Ok(summary)
}

/// The prune lock, if one is held (or left behind by a prune that died).
pub async fn prune_lock_info(repo: &Repository) -> Result<Option<LeaseInfo>> {
    Ok(lease::read_record(repo, PRUNE_LOCK_KEY)
        .await?
        .as_ref()
        .map(LeaseInfo::from))
}

/// Remove the prune lock of a prune that died (expired, or its process gone); refuses a
/// lock that is still valid. Backups and prunes remove such a lock by themselves.
pub async fn break_prune_lock(repo: &Repository, clock: &dyn Clock) -> Result<Option<LeaseInfo>> {
    lease::break_stale_key(repo, PRUNE_LOCK_KEY, clock).await
}

/// Fail while a mailbox lease is valid; remove stale ones. An expired lease's holder
/// stopped renewing it for a whole lifetime (the heartbeat renews every quarter), and a
/// holder that wakes after all cannot commit: its commit checks the lease first.
pub(crate) async fn check_no_leases(repo: &Repository, clock: &dyn Clock) -> Result<()> {
    for meta in repo.store().list(super::layout::LOCK_PREFIX).await? {
        let key = meta.key.as_str();
        if lease::clear_if_stale(repo, key, clock).await? {
            continue;
        }
        if let Some(rec) = lease::read_record(repo, key).await? {
            return Err(lease::held_error(key, &rec));
        }
    }
    Ok(())
}

/// `prune/pending`: packs already unindexed, and since when.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Pending {
    version: u32,
    packs: Vec<PendingPack>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PendingPack {
    pack: String,
    since: DateTime<Utc>,
}

/// What prune knows about one pack.
#[derive(Debug, Default)]
struct PackState {
    /// Size in the store; `None` when an index names a pack that is not there.
    size: Option<u64>,
    /// Entries by offset (index entries for indexed packs, the table for orphans).
    entries: BTreeMap<u32, PackEntry>,
    /// Named by at least one readable index file.
    indexed: bool,
    /// An orphan whose table could not be read.
    unreadable: bool,
}

/// What happens to a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Keep,
    Repack,
    Doomed,
}

struct Pruner<'a> {
    repo: &'a Repository,
    opts: &'a PruneOptions,
    clock: &'a dyn Clock,
    lock: Option<&'a Held>,
    sum: PruneSummary,
    packs: BTreeMap<PackId, PackState>,
    /// One copy per content id: indexed copies first, then orphan ones.
    canon: HashMap<ContentId, Location>,
    referenced: HashSet<ContentId>,
}

impl<'a> Pruner<'a> {
    fn new(
        repo: &'a Repository,
        opts: &'a PruneOptions,
        clock: &'a dyn Clock,
        lock: Option<&'a Held>,
    ) -> Self {
        Self {
            repo,
            opts,
            clock,
            lock,
            sum: PruneSummary {
                dry_run: opts.dry_run,
                ..PruneSummary::default()
            },
            packs: BTreeMap::new(),
            canon: HashMap::new(),
            referenced: HashSet::new(),
        }
    }

    async fn run(mut self) -> Result<PruneSummary> {
        let folder_lists = self.load_snapshots().await?;
        let index_files = self.load_index().await?;
        self.load_packs().await?;
        self.keep_lock().await?;
        let reporter = Arc::clone(&self.opts.reporter);
        reporter.report(Event::TaskStarted {
            task: Task::PrunePlan,
            total: Some(folder_lists.len() as u64),
            bytes: None,
        });
        let marked = self.mark_all(folder_lists).await;
        reporter.report(Event::TaskDone {
            task: Task::PrunePlan,
        });
        marked?;
        self.sum.referenced_blobs = self.referenced.len();
        self.keep_lock().await?;

        let fates = self.classify();
        let pending_before = self.load_pending().await?;
        let now = self.clock.now();
        let mut new_entries = Vec::new();
        let mut doomed: Vec<PackId> = Vec::new();
        for (pack, fate) in &fates {
            let key = pack.store_key();
            match fate {
                Fate::Keep => {
                    let st = &self.packs[pack];
                    if !st.indexed && st.size.is_some() {
                        self.sum.recovered_packs.push(key);
                    }
                    new_entries.extend(self.kept_entries(*pack));
                }
                Fate::Repack => {
                    self.sum.packs_repacked.push(key);
                    doomed.push(*pack);
                }
                Fate::Doomed => doomed.push(*pack),
            }
        }
        // Repack (writes new packs; a pack with a damaged live blob is kept instead).
        let repack: Vec<PackId> = fates
            .iter()
            .filter(|(_, f)| *f == Fate::Repack)
            .map(|(p, _)| *p)
            .collect();
        if self.opts.dry_run {
            for p in &repack {
                self.count_repack(*p);
            }
        } else {
            reporter.report(Event::TaskStarted {
                task: Task::Repack,
                total: Some(repack.len() as u64),
                bytes: None,
            });
            let repacked = self.repack(&repack).await;
            reporter.report(Event::TaskDone { task: Task::Repack });
            let (written, kept) = repacked?;
            new_entries.extend(written);
            for p in kept {
                doomed.retain(|d| *d != p);
                self.sum.packs_repacked.retain(|k| *k != p.store_key());
                self.sum.damaged_packs.push(p.store_key());
                new_entries.extend(self.kept_entries(p));
            }
        }
        for p in &doomed {
            if !repack.contains(p) {
                self.sum.blobs_freed += self.packs[p].entries.len() as u64;
            }
        }

        let (delete_now, pending_after) = self.schedule(&doomed, &pending_before, now);
        // Compact the index: rewrite when anything changed or it is spread over more files
        // than needed.
        let needed = new_entries.len().div_ceil(MAX_INDEX_ENTRIES);
        let changed = doomed.iter().any(|p| self.packs[p].indexed)
            || !self.sum.recovered_packs.is_empty()
            || !self.sum.bad_index_files.is_empty()
            || index_files.len() > needed.max(1);
        let rewrite = changed && !(index_files.is_empty() && new_entries.is_empty());
        if rewrite {
            self.sum.index_files_deleted.clone_from(&index_files);
            self.sum.index_files_written = needed;
        }
        if self.opts.dry_run {
            return Ok(self.sum);
        }

        // Writes, in the safe order: (new packs above) → new index → old index → packs.
        reporter.report(Event::TaskStarted {
            task: Task::Delete,
            total: Some((if rewrite { index_files.len() } else { 0 } + delete_now.len()) as u64),
            bytes: None,
        });
        let deleted = self
            .write_and_delete(rewrite, &new_entries, &index_files, delete_now)
            .await;
        reporter.report(Event::TaskDone { task: Task::Delete });
        deleted?;
        self.keep_lock().await?;
        self.save_pending(&pending_before, &pending_after).await?;
        Ok(self.sum)
    }

    /// Mark what every folder list references ([`Task::PrunePlan`], one unit per list).
    async fn mark_all(&mut self, folder_lists: BTreeSet<ContentId>) -> Result<()> {
        for list in folder_lists {
            self.mark_folder_list(list).await?;
            self.opts.reporter.report(Event::TaskProgress {
                task: Task::PrunePlan,
                done: 1,
                bytes: 0,
            });
        }
        Ok(())
    }

    /// The writes of a prune after repacking: the new index, then the old index files,
    /// then the doomed packs (see the module docs for why in this order).
    async fn write_and_delete(
        &mut self,
        rewrite: bool,
        new_entries: &[IndexEntry],
        index_files: &[String],
        mut delete_now: Vec<PackId>,
    ) -> Result<()> {
        let reporter = Arc::clone(&self.opts.reporter);
        let deleted_one = || {
            reporter.report(Event::TaskProgress {
                task: Task::Delete,
                done: 1,
                bytes: 0,
            });
        };
        if rewrite {
            self.write_index(new_entries).await?;
            self.keep_lock().await?;
            let mut still_indexed = HashSet::new();
            for key in index_files {
                let retained = self.delete_unless_retained(key).await?;
                deleted_one();
                if let Some(kept) = retained {
                    self.sum.index_files_deleted.retain(|k| k != key);
                    self.sum.retained.push(kept);
                    // Its entries still locate these packs: keep them.
                    for entry in self.repo.read_index_file(key).await? {
                        still_indexed.insert(entry.location.pack);
                    }
                }
            }
            delete_now.retain(|p| !still_indexed.contains(p));
        }
        for p in &delete_now {
            let retained = self.delete_unless_retained(&p.store_key()).await?;
            deleted_one();
            if let Some(kept) = retained {
                self.sum.retained.push(kept);
            }
        }
        Ok(())
    }

    /// Delete `key`; `Some` (not an error) when Object Lock retains it, so one locked
    /// object does not stop the rest of the prune.
    async fn delete_unless_retained(&self, key: &str) -> Result<Option<RetainedObject>> {
        match self.repo.store().delete(&store_key(key)?).await {
            Ok(()) => Ok(None),
            Err(crate::ports::StoreError::Retained { key, until }) => {
                Ok(Some(RetainedObject { key, until }))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Which doomed packs go now and which wait for the grace period.
    fn schedule(
        &mut self,
        doomed: &[PackId],
        pending_before: &HashMap<PackId, DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> (Vec<PackId>, Pending) {
        let mut delete_now = Vec::new();
        let mut pending_after = Pending {
            version: 1,
            packs: Vec::new(),
        };
        for p in doomed {
            let since = pending_before.get(p).copied().unwrap_or(now);
            if since + self.opts.grace <= now {
                delete_now.push(*p);
            } else {
                pending_after.packs.push(PendingPack {
                    pack: p.to_string(),
                    since,
                });
                self.sum.pending_packs.push(p.store_key());
                self.sum.pending_bytes += self.packs[p].size.unwrap_or(0);
            }
        }
        for p in &delete_now {
            self.sum.packs_deleted.push(p.store_key());
            self.sum.bytes_deleted += self.packs[p].size.unwrap_or(0);
        }
        (delete_now, pending_after)
    }

    /// Renew the prune lock when half of it has elapsed (prune of a large repository
    /// reads every folder list and may outlast one lease period); the binary's heartbeat
    /// renews it too, between these steps.
    async fn keep_lock(&mut self) -> Result<()> {
        let Some(lock) = self.lock else {
            return Ok(());
        };
        let half = (lock.expires() - lock.renewed()) / 2;
        if self.clock.now() >= lock.renewed() + half {
            lease::renew(self.repo, lock, self.clock).await?;
        }
        Ok(())
    }

    /// Every snapshot record (one listing); returns the folder lists they name.
    async fn load_snapshots(&mut self) -> Result<BTreeSet<ContentId>> {
        let mut lists = BTreeSet::new();
        for meta in self.repo.store().list("snapshots/").await? {
            let key = meta.key.as_str();
            let Some((_, info)) = parse_snapshot_key(key) else {
                continue;
            };
            if self.opts.ignore_snapshots.contains(&info.id) {
                continue;
            }
            let bytes = self.repo.get_required(key).await?;
            let record: SnapshotRecord = self.repo.open_json(ObjectType::Snapshot, key, &bytes)?;
            // What a newer build wrote may reference content in ways this one cannot
            // follow: stop rather than delete it.
            super::snapshots::check_snapshot_version(&record)?;
            lists.extend(record.folders.iter().map(|f| f.items));
            self.sum.snapshots += 1;
        }
        Ok(lists)
    }

    /// Read every index file afresh; returns their keys (bad ones included).
    async fn load_index(&mut self) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        for meta in self.repo.list_index_files().await? {
            let key = meta.key.as_str().to_owned();
            match self.repo.read_index_file(&key).await {
                Ok(entries) => {
                    self.sum.index_files_read += 1;
                    for e in entries {
                        let st = self.packs.entry(e.location.pack).or_default();
                        st.indexed = true;
                        st.entries.insert(
                            e.location.offset,
                            PackEntry {
                                id: e.id,
                                kind: e.location.kind,
                                offset: e.location.offset,
                                length: e.location.length,
                            },
                        );
                    }
                }
                Err(e) if e.is_integrity_failure() => {
                    tracing::warn!(index = %key, error = %e, "prune: unreadable index file");
                    self.sum.bad_index_files.push(key.clone());
                }
                Err(e) => return Err(e),
            }
            keys.push(key);
        }
        Ok(keys)
    }

    /// List packs; read the tables of packs no index names.
    async fn load_packs(&mut self) -> Result<()> {
        for meta in self.repo.store().list("packs/").await? {
            if let Some(p) = PackId::from_store_key(meta.key.as_str()) {
                self.packs.entry(p).or_default().size = Some(meta.size);
                self.sum.packs_total += 1;
            }
        }
        let orphans: Vec<PackId> = self
            .packs
            .iter()
            .filter(|(_, s)| !s.indexed && s.size.is_some())
            .map(|(p, _)| *p)
            .collect();
        for p in orphans {
            match self.repo.pack_table(p).await {
                Ok(entries) => {
                    let st = self.packs.entry(p).or_default();
                    for e in entries {
                        st.entries.insert(e.offset, e);
                    }
                }
                Err(e) if e.is_integrity_failure() => {
                    tracing::warn!(pack = %p, error = %e, "prune: unreadable pack left alone");
                    self.packs.entry(p).or_default().unreadable = true;
                    self.sum.damaged_packs.push(p.store_key());
                }
                Err(e) => return Err(e),
            }
        }
        self.build_canon();
        Ok(())
    }

    /// Choose one copy per content id: in an indexed pack that exists, else in an orphan
    /// pack, else (already broken) in an indexed pack that is missing.
    fn build_canon(&mut self) {
        for rank in 0..3 {
            for (p, st) in &self.packs {
                let r = match (st.indexed, st.size.is_some()) {
                    (true, true) => 0,
                    (false, true) => 1,
                    _ => 2,
                };
                if r != rank || st.unreadable {
                    continue;
                }
                for e in st.entries.values() {
                    self.canon.entry(e.id).or_insert(Location {
                        kind: e.kind,
                        pack: *p,
                        offset: e.offset,
                        length: e.length,
                    });
                }
            }
        }
    }

    /// Mark a content id (and, for chunked content, its chunks) as referenced.
    async fn mark(&mut self, id: ContentId) -> Result<()> {
        if !self.referenced.insert(id) {
            return Ok(());
        }
        let Some(loc) = self.canon.get(&id).copied() else {
            self.sum.missing_content += 1;
            return Ok(());
        };
        if loc.kind == BlobKind::ChunkList {
            let bytes = self.repo.read_located(&id, loc, false).await?;
            let list =
                ChunkList::decode(&bytes).map_err(|r| Error::corrupt(loc.pack.store_key(), r))?;
            for (chunk, _) in list.chunks {
                if self.referenced.insert(chunk) && !self.canon.contains_key(&chunk) {
                    self.sum.missing_content += 1;
                }
            }
        }
        Ok(())
    }

    /// Mark a folder list, and what its items reference. A piece directory's pieces are
    /// marked and read in turn (docs/FORMAT.md §5.5).
    async fn mark_folder_list(&mut self, id: ContentId) -> Result<()> {
        if self.referenced.contains(&id) {
            return Ok(());
        }
        match self.read_list_blob(id).await? {
            None => {}
            Some(ListBlob::Items(items)) => self.mark_items(items).await?,
            Some(ListBlob::Pieces(pieces)) => {
                for piece in pieces {
                    if self.referenced.contains(&piece.id) {
                        continue;
                    }
                    match self.read_list_blob(piece.id).await? {
                        None => {}
                        Some(ListBlob::Items(items)) => self.mark_items(items).await?,
                        Some(ListBlob::Pieces(_)) => {
                            return Err(Error::corrupt(
                                format!("content {}", piece.id),
                                format!("folder item list {id}: a piece is a piece directory"),
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Mark one kind-3 blob and decode it; `None` when it is missing (counted by `mark`).
    async fn read_list_blob(&mut self, id: ContentId) -> Result<Option<ListBlob>> {
        self.mark(id).await?;
        let Some(loc) = self.canon.get(&id).copied() else {
            return Ok(None);
        };
        let bytes = self.read_content(id, loc).await?;
        item_list::decode(&bytes, &id, &loc.pack.store_key()).map(Some)
    }

    async fn mark_items(&mut self, items: Vec<crate::model::MessageMeta>) -> Result<()> {
        for m in items {
            for id in m.content_ids() {
                self.mark(id).await?;
            }
        }
        Ok(())
    }

    /// Read whole content from prune's own view of the index (which also knows orphan
    /// packs); checks like `Repository::read_blob`.
    async fn read_content(&self, id: ContentId, loc: Location) -> Result<Bytes> {
        if loc.kind != BlobKind::ChunkList {
            return self.repo.read_located(&id, loc, true).await;
        }
        let key = loc.pack.store_key();
        let bytes = self.repo.read_located(&id, loc, false).await?;
        let list = ChunkList::decode(&bytes).map_err(|r| Error::corrupt(&key, r))?;
        let mut out = Vec::new();
        for (chunk, _) in &list.chunks {
            let cloc = self
                .canon
                .get(chunk)
                .copied()
                .ok_or(Error::ContentNotFound { id: *chunk })?;
            out.extend_from_slice(&self.repo.read_located(chunk, cloc, true).await?);
        }
        let keys = self.repo.keys();
        if out.len() as u64 != list.total_len || crypto::content_id(&keys.id, list.kind, &out) != id
        {
            return Err(Error::ChecksumMismatch { key, id });
        }
        Ok(Bytes::from(out))
    }

    fn is_live(&self, pack: PackId, e: &PackEntry) -> bool {
        self.referenced.contains(&e.id)
            && self
                .canon
                .get(&e.id)
                .is_some_and(|l| l.pack == pack && l.offset == e.offset)
    }

    /// Decide each pack's fate from its live bytes.
    #[allow(clippy::cast_precision_loss)] // a ratio of sizes: precision is irrelevant
    fn classify(&self) -> Vec<(PackId, Fate)> {
        let mut out = Vec::new();
        for (p, st) in &self.packs {
            let Some(size) = st.size else {
                // Missing pack: its referenced entries stay indexed so verify keeps naming
                // the pack (see `kept_entries`).
                out.push((*p, Fate::Keep));
                continue;
            };
            if st.unreadable {
                continue;
            }
            let live: u64 = st
                .entries
                .values()
                .filter(|e| self.is_live(*p, e))
                .map(|e| u64::from(e.length))
                .sum();
            let all_live = st.entries.values().all(|e| self.is_live(*p, e));
            let fate = if st.entries.values().all(|e| !self.is_live(*p, e)) {
                Fate::Doomed
            } else if !all_live
                && 1.0 - live as f64 / size.max(1) as f64 > self.opts.repack_threshold
            {
                Fate::Repack
            } else {
                Fate::Keep
            };
            out.push((*p, fate));
        }
        out
    }

    /// Index entries a kept pack contributes: all of them (every blob of an existing pack
    /// is a valid copy); for a missing pack only the referenced ones.
    fn kept_entries(&self, pack: PackId) -> Vec<IndexEntry> {
        let st = &self.packs[&pack];
        st.entries
            .values()
            .filter(|e| st.size.is_some() || self.is_live(pack, e))
            .map(|e| IndexEntry {
                id: e.id,
                location: Location {
                    kind: e.kind,
                    pack,
                    offset: e.offset,
                    length: e.length,
                },
            })
            .collect()
    }

    fn count_repack(&mut self, pack: PackId) {
        let st = &self.packs[&pack];
        let live = st
            .entries
            .values()
            .filter(|e| self.is_live(pack, e))
            .count() as u64;
        self.sum.blobs_repacked += live;
        self.sum.blobs_freed += st.entries.len() as u64 - live;
    }

    /// Copy the live blobs of `packs` into new packs (sealed blobs are copied as they are:
    /// their associated data names kind and id, not the pack). Returns the new entries and
    /// the packs kept because a live blob in them did not authenticate.
    async fn repack(&mut self, packs: &[PackId]) -> Result<(Vec<IndexEntry>, Vec<PackId>)> {
        let target = usize::try_from(self.repo.require_config()?.settings.pack_target_size)
            .unwrap_or(usize::MAX);
        let mut entries = Vec::new();
        let mut kept = Vec::new();
        let mut current: Vec<(ContentId, BlobKind, Vec<u8>)> = Vec::new();
        let mut current_bytes = 0usize;
        for p in packs {
            let bytes = self.repo.get_required(&p.store_key()).await?;
            self.opts.reporter.report(Event::TaskProgress {
                task: Task::Repack,
                done: 1,
                bytes: bytes.len() as u64,
            });
            let live: Vec<PackEntry> = self.packs[p]
                .entries
                .values()
                .filter(|e| self.is_live(*p, e))
                .copied()
                .collect();
            let keys = self.repo.keys();
            let (b, l, key) = (bytes.clone(), live.clone(), p.store_key());
            let ok = tokio::task::spawn_blocking(move || {
                l.iter().all(|e| {
                    let end = e.offset as usize + e.length as usize;
                    end <= b.len()
                        && crypto::open_blob(
                            &keys.enc,
                            e.kind,
                            &e.id,
                            &b[e.offset as usize..end],
                            &key,
                        )
                        .is_ok()
                })
            })
            .await
            .map_err(|e| Error::task(&e))?;
            if !ok {
                tracing::warn!(pack = %p, "prune: damaged live blob, pack kept as it is");
                kept.push(*p);
                continue;
            }
            self.count_repack(*p);
            for e in live {
                let blob = bytes[e.offset as usize..(e.offset + e.length) as usize].to_vec();
                if !current.is_empty() && current_bytes + blob.len() > target {
                    entries.extend(self.write_pack(std::mem::take(&mut current)).await?);
                    current_bytes = 0;
                }
                current_bytes += blob.len();
                current.push((e.id, e.kind, blob));
            }
            self.keep_lock().await?;
        }
        if !current.is_empty() {
            entries.extend(self.write_pack(current).await?);
        }
        Ok((entries, kept))
    }

    async fn write_pack(
        &mut self,
        blobs: Vec<(ContentId, BlobKind, Vec<u8>)>,
    ) -> Result<Vec<IndexEntry>> {
        let keys = self.repo.keys();
        let pack_id = PackId::random();
        let (bytes, table) =
            tokio::task::spawn_blocking(move || pack::build_pack(&keys.enc, pack_id, &blobs))
                .await
                .map_err(|e| Error::task(&e))??;
        self.sum.packs_written += 1;
        self.sum.bytes_written += bytes.len() as u64;
        self.repo
            .store()
            .put(
                &store_key(&pack_id.store_key())?,
                Bytes::from(bytes),
                PutOptions::CREATE,
            )
            .await?;
        Ok(table
            .into_iter()
            .map(|e| IndexEntry {
                id: e.id,
                location: Location {
                    kind: e.kind,
                    pack: pack_id,
                    offset: e.offset,
                    length: e.length,
                },
            })
            .collect())
    }

    async fn write_index(&mut self, entries: &[IndexEntry]) -> Result<()> {
        for part in entries.chunks(MAX_INDEX_ENTRIES) {
            let mut name = [0u8; 16];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut name);
            let key = format!("index/{}", hex::encode(name));
            let payload = index::encode_index(part);
            let keys = self.repo.keys();
            let k = key.clone();
            let sealed = tokio::task::spawn_blocking(move || {
                crypto::seal_object(&keys.enc, ObjectType::Index, k.as_bytes(), &payload)
            })
            .await
            .map_err(|e| Error::task(&e))?;
            self.repo
                .store()
                .put(&store_key(&key)?, Bytes::from(sealed), PutOptions::CREATE)
                .await?;
        }
        Ok(())
    }

    async fn load_pending(&self) -> Result<HashMap<PackId, DateTime<Utc>>> {
        let key = store_key(PRUNE_PENDING_KEY)?;
        let bytes = match self.repo.store().get(&key).await {
            Ok(b) => b,
            Err(crate::ports::StoreError::NotFound { .. }) => return Ok(HashMap::new()),
            Err(e) => return Err(e.into()),
        };
        let pending: Pending =
            self.repo
                .open_json(ObjectType::PrunePending, PRUNE_PENDING_KEY, &bytes)?;
        Ok(pending
            .packs
            .iter()
            .filter_map(|p| {
                let mut b = [0u8; 16];
                hex::decode_to_slice(&p.pack, &mut b).ok()?;
                Some((PackId(b), p.since))
            })
            .collect())
    }

    async fn save_pending(
        &self,
        before: &HashMap<PackId, DateTime<Utc>>,
        after: &Pending,
    ) -> Result<()> {
        let key = store_key(PRUNE_PENDING_KEY)?;
        if after.packs.is_empty() {
            if !before.is_empty() {
                self.repo.store().delete(&key).await?;
            }
            return Ok(());
        }
        let sealed = self
            .repo
            .seal_json(ObjectType::PrunePending, PRUNE_PENDING_KEY, after)?;
        self.repo
            .store()
            .put(&key, sealed, PutOptions::OVERWRITE)
            .await?;
        Ok(())
    }
}
