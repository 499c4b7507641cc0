//! Repair of the repository's storage layer: the root objects and the index.
//!
//! What is healed here (the snapshot side — recording lost items in the snapshots that
//! referenced them — is `service::repair`, which runs after this):
//!
//! - **Root objects.** A damaged or missing wrapped key or config is written back from its
//!   spare; missing spares are written from the primaries; a config lost with its spare is
//!   written anew (new repository id, default settings — said in the report).
//! - **The index.** Every pack is read whole and every blob that any index file or the
//!   pack's own table names is decrypted and checked (tag, frame checksum, content id).
//!   The new index holds exactly one healthy copy of every blob found: blobs that are
//!   damaged, or whose pack is missing, are dropped (so nothing is ever deduplicated
//!   against them again and the next backup stores them anew); blobs in packs that no
//!   readable index file names (a lost or damaged index file) are indexed again from the
//!   pack tables; a chunk list whose chunks are not all healthy is dropped with them (its
//!   content cannot be read whole). The new index files are written first, then every old
//!   one (the damaged ones included) is deleted, so a reader sees the old or the new index
//!   at every step.
//!
//! The index is rewritten under the repository maintenance lock (the prune lock), which
//! keeps backups, which deduplicate against the index and add index files, out; like
//! prune, repair does not start while any mailbox lease exists.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use bytes::Bytes;
use serde::Serialize;
use tokio::task::JoinSet;

use super::chunks::ChunkList;
use super::crypto::{self, ObjectType};
use super::index::{self, IndexEntry, Location};
use super::keys::RootObject;
use super::layout::{
    CONFIG_KEY, CONFIG_SPARE_KEY, INDEX_PREFIX, KEY_BLOB_KEY, KEY_SPARE_KEY, store_key,
};
use super::lease;
use super::pack::PackId;
use super::prune::{PRUNE_LOCK_KEY, check_no_leases};
use super::retention::RetainedObject;
use super::{BlobKind, PackData, RepoSettings, Repository};
use crate::error::{Error, Result};
use crate::model::ContentId;
use crate::ports::{Clock, PutOptions, StoreError};

/// Entries per index file written by repair (as prune's compaction).
const MAX_INDEX_ENTRIES: usize = 100_000;
/// Packs read and checked at once (each is held whole while its blobs are checked).
const PACKS_IN_FLIGHT: usize = 4;

/// A blob dropped from the index, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DroppedBlob {
    /// Content id.
    pub id: ContentId,
    /// Blob kind.
    #[serde(skip)]
    pub kind: BlobKind,
    /// Store key of the pack it was in.
    pub pack: String,
    /// What is wrong with it.
    pub error: String,
}

/// What the storage repair found and did (or, for a plan, would do).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageRepair {
    /// Root objects written back (from their spares, or anew), by store key.
    pub root_objects_restored: Vec<String>,
    /// Spare copies written (they were missing).
    pub spares_written: Vec<String>,
    /// Whether the config had to be written anew (both copies lost): the repository has
    /// a new id and default settings.
    pub config_recreated: bool,
    /// Index files read.
    pub index_files_read: usize,
    /// Index files that could not be read (replaced).
    pub bad_index_files: Vec<String>,
    /// Packs read whole and checked.
    pub packs_checked: usize,
    /// Packs an index named that are not in the store.
    pub missing_packs: Vec<String>,
    /// Packs whose own table could not be read (their blobs were still checked one by
    /// one where an index located them).
    pub damaged_pack_tables: Vec<String>,
    /// Blobs dropped from the index: damaged, or in a missing pack, or chunk lists of
    /// content with a dropped chunk.
    pub dropped: Vec<DroppedBlob>,
    /// Healthy blobs no readable index file named, indexed again from pack tables.
    pub reindexed: usize,
    /// Their ids (a plan's view of what will be findable after the repair).
    #[serde(skip)]
    pub reindexed_ids: HashSet<ContentId>,
    /// Whether the index is rewritten (anything above changes it).
    pub index_rewritten: bool,
    /// Index files written.
    pub index_files_written: usize,
    /// Old index files deleted.
    pub index_files_deleted: usize,
    /// Objects Object Lock kept from being deleted (old index files: their entries,
    /// damaged ones included, stay visible until the retention passes).
    pub retained: Vec<RetainedObject>,
}

impl StorageRepair {
    /// Whether nothing needed repair.
    pub fn is_clean(&self) -> bool {
        self.root_objects_restored.is_empty()
            && self.spares_written.is_empty()
            && !self.config_recreated
            && !self.index_rewritten
    }
}

/// What checking every pack found healthy.
struct Checked {
    /// One healthy copy per content id, and whether an index file named it.
    healthy: HashMap<ContentId, (Location, bool)>,
    /// Every healthy copy (content, pack, offset).
    healthy_copies: HashSet<(ContentId, PackId, u32)>,
    /// Healthy chunk lists with their chunk ids.
    chunk_lists: Vec<(ContentId, Vec<ContentId>)>,
}

/// The outcome of checking one pack.
#[derive(Debug, Default)]
struct PackCheck {
    table_error: Option<String>,
    healthy: Vec<(IndexEntry, Option<Vec<ContentId>>)>,
    damaged: Vec<(IndexEntry, String)>,
}

impl Repository {
    /// Repair the root objects and the index (see the module docs). With `dry_run`
    /// nothing is written and no lock is taken: the result is the plan.
    pub async fn repair_storage(
        &self,
        dry_run: bool,
        owner: &str,
        clock: &dyn Clock,
    ) -> Result<StorageRepair> {
        let mut out = StorageRepair::default();
        self.repair_root_objects(dry_run, &mut out).await?;
        if dry_run {
            self.repair_index(true, &mut out).await?;
            return Ok(out);
        }
        // A valid prune lock is MaintenanceRunning; a stale one is taken over.
        let lock = lease::acquire_key(self, PRUNE_LOCK_KEY, owner, None, clock).await?;
        let result = match check_no_leases(self, clock).await {
            Ok(()) => self.repair_index(false, &mut out).await,
            Err(e) => Err(e),
        };
        let released = lease::release(self, &lock).await;
        self.reset_index();
        result?;
        released?;
        Ok(out)
    }

    async fn repair_root_objects(&self, dry_run: bool, out: &mut StorageRepair) -> Result<()> {
        let damage = self.root_damage();
        let spare_used = |what: RootObject| damage.iter().any(|d| d.what == what && d.spare_used);
        // Primaries from their spares.
        if spare_used(RootObject::Key) {
            out.root_objects_restored.push(KEY_BLOB_KEY.into());
            if !dry_run {
                let spare = self.get_required(KEY_SPARE_KEY).await?;
                self.store()
                    .put(&store_key(KEY_BLOB_KEY)?, spare, PutOptions::OVERWRITE)
                    .await?;
            }
        }
        match self.config() {
            Some(cfg) => {
                if spare_used(RootObject::Config) {
                    out.root_objects_restored.push(CONFIG_KEY.into());
                    if !dry_run {
                        let sealed = self.seal_json(ObjectType::Config, CONFIG_KEY, &cfg)?;
                        self.store()
                            .put(&store_key(CONFIG_KEY)?, sealed, PutOptions::OVERWRITE)
                            .await?;
                    }
                }
            }
            // A store without repository data and without a config is not a repository
            // whose config was lost (an interrupted init, a TypeScript Atlas bucket).
            None if !self.has_data().await? => {}
            None => {
                out.config_recreated = true;
                out.root_objects_restored.push(CONFIG_KEY.into());
                if !dry_run {
                    // Whatever is left of a damaged config goes first (a create would
                    // refuse to replace it).
                    for key in [CONFIG_KEY, CONFIG_SPARE_KEY] {
                        match self.store().delete(&store_key(key)?).await {
                            Ok(()) | Err(StoreError::NotFound { .. }) => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                    self.write_new_config(RepoSettings::default(), super::FORMAT_VERSION)
                        .await?;
                }
            }
        }
        // Spares that are missing or disagree, from the (now good) primaries.
        let problems = self.check_root_objects().await;
        for (spare, primary) in [
            (KEY_SPARE_KEY, KEY_BLOB_KEY),
            (CONFIG_SPARE_KEY, CONFIG_KEY),
        ] {
            let bad = problems.iter().any(|p| p.object == spare)
                || damage.iter().any(|d| d.object == spare);
            let missing = self.store().head(&store_key(spare)?).await?.is_none();
            if !(bad || missing) {
                continue;
            }
            out.spares_written.push(spare.into());
            if dry_run {
                continue;
            }
            let bytes = if primary == KEY_BLOB_KEY {
                self.get_required(KEY_BLOB_KEY).await?
            } else {
                let cfg = self.require_config()?;
                self.seal_json(ObjectType::Config, CONFIG_SPARE_KEY, &cfg)?
            };
            self.store()
                .put(&store_key(spare)?, bytes, PutOptions::OVERWRITE)
                .await?;
        }
        Ok(())
    }

    async fn repair_index(&self, dry_run: bool, out: &mut StorageRepair) -> Result<()> {
        // Every readable index file's entries; the unreadable ones are replaced.
        let mut old_files = Vec::new();
        let mut indexed: BTreeMap<PackId, Vec<IndexEntry>> = BTreeMap::new();
        for meta in self.list_index_files().await? {
            let key = meta.key.as_str().to_owned();
            match self.read_index_file(&key).await {
                Ok(entries) => {
                    out.index_files_read += 1;
                    for e in entries {
                        indexed.entry(e.location.pack).or_default().push(e);
                    }
                }
                Err(Error::Missing { .. }) => continue,
                Err(e) if e.is_integrity_failure() => out.bad_index_files.push(key.clone()),
                Err(e) => return Err(e),
            }
            old_files.push(key);
        }
        let sizes = self.pack_sizes().await?;
        let mut old_ids: HashSet<ContentId> = HashSet::new();
        for (pack, entries) in &indexed {
            old_ids.extend(entries.iter().map(|e| e.id));
            if !sizes.contains_key(pack) {
                out.missing_packs.push(pack.store_key());
                for e in entries {
                    out.dropped.push(DroppedBlob {
                        id: e.id,
                        kind: e.location.kind,
                        pack: pack.store_key(),
                        error: Error::Missing {
                            key: pack.store_key(),
                        }
                        .to_string(),
                    });
                }
            }
        }
        // Check every pack in the store: what the index says is in it, and what its table
        // says is in it.
        let Checked {
            mut healthy,
            healthy_copies,
            chunk_lists,
        } = self.check_packs(&sizes, &indexed, &old_ids, out).await?;
        // Content whose chunk list names a chunk with no healthy copy cannot be read whole:
        // drop its list too, so a backup stores the content again instead of deduplicating.
        for (list_id, chunks) in chunk_lists {
            if let Some(missing) = chunks.iter().find(|c| !healthy.contains_key(c)) {
                if let Some((loc, _)) = healthy.remove(&list_id) {
                    out.dropped.push(DroppedBlob {
                        id: list_id,
                        kind: BlobKind::ChunkList,
                        pack: loc.pack.store_key(),
                        error: format!("its chunk {missing} is damaged or missing"),
                    });
                }
            }
        }
        // A blob dropped in one pack may have a healthy copy in another: then it is not
        // lost, only that copy is. A damaged copy no index named (only its pack's table
        // does: left behind by an earlier repair) has nothing to drop.
        out.dropped
            .retain(|d| old_ids.contains(&d.id) && !healthy.contains_key(&d.id));
        out.dropped
            .sort_by(|a, b| (&a.pack, a.id).cmp(&(&b.pack, b.id)));
        out.dropped
            .dedup_by(|a, b| a.id == b.id && a.pack == b.pack);
        out.reindexed_ids = healthy
            .iter()
            .filter(|(_, (_, from_index))| !from_index)
            .map(|(id, _)| *id)
            .collect();
        out.reindexed = out.reindexed_ids.len();
        // An index entry for a copy that is not healthy (damaged, missing pack, or a chunk
        // list dropped above) must go even when another copy of its content is fine.
        let stale_copies = indexed.values().flatten().any(|e| {
            !healthy_copies.contains(&(e.id, e.location.pack, e.location.offset))
                || !healthy.contains_key(&e.id)
        });
        out.index_rewritten = !out.bad_index_files.is_empty()
            || !out.dropped.is_empty()
            || out.reindexed > 0
            || stale_copies;
        if dry_run || !out.index_rewritten {
            return Ok(());
        }
        let mut entries: Vec<IndexEntry> = healthy
            .into_iter()
            .map(|(id, (location, _))| IndexEntry { id, location })
            .collect();
        entries.sort_by_key(|e| (e.location.pack, e.location.offset));
        for part in entries.chunks(MAX_INDEX_ENTRIES) {
            self.write_index_file(part).await?;
            out.index_files_written += 1;
        }
        for key in old_files {
            match self.store().delete(&store_key(&key)?).await {
                Ok(()) | Err(StoreError::NotFound { .. }) => out.index_files_deleted += 1,
                Err(StoreError::Retained { key, until }) => {
                    out.retained.push(RetainedObject { key, until });
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Read every pack in the store (a few at a time) and check every blob the index or
    /// the pack's table places in it; damaged blobs go to `out.dropped`.
    async fn check_packs(
        &self,
        sizes: &HashMap<PackId, u64>,
        indexed: &BTreeMap<PackId, Vec<IndexEntry>>,
        old_ids: &HashSet<ContentId>,
        out: &mut StorageRepair,
    ) -> Result<Checked> {
        let mut healthy: HashMap<ContentId, (Location, bool)> = HashMap::new();
        let mut healthy_copies: HashSet<(ContentId, PackId, u32)> = HashSet::new();
        let mut chunk_lists: Vec<(ContentId, Vec<ContentId>)> = Vec::new();
        let mut packs: Vec<PackId> = sizes.keys().copied().collect();
        packs.sort();
        let mut pending = packs.into_iter();
        let mut running: JoinSet<Result<(PackId, PackCheck)>> = JoinSet::new();
        loop {
            while running.len() < PACKS_IN_FLIGHT {
                let Some(pack) = pending.next() else { break };
                let repo = self.clone();
                let wanted = indexed.get(&pack).cloned().unwrap_or_default();
                running.spawn(async move { check_pack(&repo, pack, wanted).await });
            }
            let Some(done) = running.join_next().await else {
                break;
            };
            let (pack, check) = done.map_err(|e| Error::task(&e))??;
            out.packs_checked += 1;
            if let Some(e) = check.table_error {
                out.damaged_pack_tables
                    .push(format!("{}: {e}", pack.store_key()));
            }
            for (entry, error) in check.damaged {
                out.dropped.push(DroppedBlob {
                    id: entry.id,
                    kind: entry.location.kind,
                    pack: pack.store_key(),
                    error,
                });
            }
            for (entry, chunks) in check.healthy {
                healthy_copies.insert((entry.id, entry.location.pack, entry.location.offset));
                let from_index = old_ids.contains(&entry.id);
                // One copy per id; an indexed copy wins over one only a table names, then
                // the lower pack id (deterministic).
                let better = healthy.get(&entry.id).is_none_or(|(loc, was_indexed)| {
                    (from_index && !was_indexed)
                        || (from_index == *was_indexed && entry.location.pack < loc.pack)
                });
                if better {
                    healthy.insert(entry.id, (entry.location, from_index));
                }
                if let Some(chunks) = chunks {
                    chunk_lists.push((entry.id, chunks));
                }
            }
        }
        Ok(Checked {
            healthy,
            healthy_copies,
            chunk_lists,
        })
    }

    /// Write one new index file (create-if-absent under a random name).
    async fn write_index_file(&self, entries: &[IndexEntry]) -> Result<()> {
        let mut name = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut name);
        let key = format!("{INDEX_PREFIX}{}", hex::encode(name));
        let payload = index::encode_index(entries);
        let keys = self.keys();
        let k = key.clone();
        let sealed = tokio::task::spawn_blocking(move || {
            crypto::seal_object(&keys.enc, ObjectType::Index, k.as_bytes(), &payload)
        })
        .await
        .map_err(|e| Error::task(&e))?;
        self.store()
            .put(&store_key(&key)?, Bytes::from(sealed), PutOptions::CREATE)
            .await?;
        Ok(())
    }
}

/// Read one pack whole and check every blob the index (`wanted`) or the pack's table
/// places in it.
async fn check_pack(
    repo: &Repository,
    pack: PackId,
    wanted: Vec<IndexEntry>,
) -> Result<(PackId, PackCheck)> {
    let data = match repo.read_pack(pack).await {
        Ok(d) => d,
        Err(e) if e.is_integrity_failure() || matches!(e, Error::Missing { .. }) => {
            let error = e.to_string();
            let check = PackCheck {
                table_error: Some(error.clone()),
                healthy: Vec::new(),
                damaged: wanted.into_iter().map(|w| (w, error.clone())).collect(),
            };
            return Ok((pack, check));
        }
        Err(e) => return Err(e),
    };
    let check = tokio::task::spawn_blocking(move || check_pack_data(&data, wanted))
        .await
        .map_err(|e| Error::task(&e))?;
    Ok((pack, check))
}

fn check_pack_data(data: &PackData, wanted: Vec<IndexEntry>) -> PackCheck {
    let pack = data.pack();
    let mut check = PackCheck::default();
    let mut candidates: BTreeSet<(u32, ContentId)> = BTreeSet::new();
    let mut entries: Vec<IndexEntry> = Vec::new();
    let mut add = |e: IndexEntry, entries: &mut Vec<IndexEntry>| {
        if candidates.insert((e.location.offset, e.id)) {
            entries.push(e);
        }
    };
    for w in wanted {
        add(w, &mut entries);
    }
    match data.table() {
        Ok(table) => {
            for t in table {
                add(
                    IndexEntry {
                        id: t.id,
                        location: Location {
                            kind: t.kind,
                            pack,
                            offset: t.offset,
                            length: t.length,
                        },
                    },
                    &mut entries,
                );
            }
        }
        Err(e) => check.table_error = Some(e.to_string()),
    }
    for e in entries {
        match data.open_blob(&e.id, e.location) {
            Ok(plain) if e.location.kind == BlobKind::ChunkList => {
                match ChunkList::decode(&plain) {
                    Ok(list) => {
                        let chunks = list.chunks.iter().map(|(c, _)| *c).collect();
                        check.healthy.push((e, Some(chunks)));
                    }
                    Err(reason) => check.damaged.push((e, reason)),
                }
            }
            Ok(_) => check.healthy.push((e, None)),
            Err(error) => check.damaged.push((e, error.to_string())),
        }
    }
    check
}
