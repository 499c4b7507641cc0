//! `atlas verify`: everything a snapshot needs exists, decrypts and matches its checksum.
//!
//! Checked, per snapshot in scope: the snapshot record, the mailbox record, every folder
//! list, the index entry of every message, the existence and size of every pack, and —
//! for the packs selected for data reading — each pack's header, trailer and table plus
//! every blob the snapshots need from it (AEAD tag, the frame's plaintext checksum — or
//! the content id where the frame has none, or for every blob with
//! [`ContentCheck::ContentId`] — and the SHA-256 recorded at backup before format 4).
//! Packs shared by several snapshots are read once.
//!
//! Two depths, as restic's `check`: without data reading ([`ReadData::NONE`], the
//! default of `atlas verify`) the structure is checked — the root objects (wrapped key,
//! config and their spares), every index file, every record and folder list, that every
//! blob the snapshots need is indexed, and that every pack exists and is long enough.
//! `--read-data[=N%]` also reads packs and decrypts and hashes their data: a rotating N%
//! slice of packs — packs are placed in 100 buckets by their (random) id and slot `k`
//! reads buckets `[k·N, k·N + N)` modulo 100, so `ceil(100 / N)` consecutive slots (e.g.
//! nights) cover every pack.
//!
//! Damage is reported per item — mailbox, snapshot, folder path, message id, store key —
//! never by subject. `Err` is returned only when verification itself cannot run (store
//! unreachable, nothing in scope).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::Serialize;

use super::catalog::{chunk_ids, folder_path};
use super::read::check_sha;
use crate::error::{Error, Result};
use crate::model::{ContentId, MailboxId, MessageId, SnapshotId};
use crate::ports::{Event, NullReporter, Reporter, Task};
pub use crate::repo::ContentCheck;
use crate::repo::index::Location;
use crate::repo::pack::PackId;
use crate::repo::{BlobKind, CONFIG_KEY, CONFIG_SPARE_KEY, PackData, Repository};

/// Which snapshots to verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyScope {
    /// One snapshot.
    Snapshot(SnapshotId),
    /// Every snapshot of a mailbox.
    Mailbox(MailboxId),
    /// Every snapshot in the repository.
    All,
}

/// Which packs have their data read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadData {
    /// Share of packs read, 0..=100 (0: structure only).
    pub percent: u8,
    /// Rotation slot (the CLI passes days since the epoch, so each night reads the next
    /// slice).
    pub slot: u64,
}

impl ReadData {
    /// Read every pack.
    pub const ALL: Self = Self {
        percent: 100,
        slot: 0,
    };

    /// Read no pack data: check the structure only.
    pub const NONE: Self = Self {
        percent: 0,
        slot: 0,
    };

    /// The slice for `percent`, rotating once per UTC day of `now`.
    pub fn rotating_daily(percent: u8, now: chrono::DateTime<chrono::Utc>) -> Self {
        Self {
            percent,
            slot: u64::try_from(now.timestamp().div_euclid(86_400)).unwrap_or(0),
        }
    }

    /// Whether `pack` is in this slice.
    pub fn selects(&self, pack: &PackId) -> bool {
        if self.percent == 0 {
            return false;
        }
        let p = u64::from(self.percent.min(100));
        if p >= 100 {
            return true;
        }
        let h = pack.store_key();
        let name = h.rsplit('/').next().unwrap_or_default();
        let bucket = u64::from_str_radix(name.get(..8).unwrap_or("0"), 16).unwrap_or(0) % 100;
        let start = (self.slot.wrapping_mul(p)) % 100;
        (bucket + 100 - start) % 100 < p
    }
}

/// Options of `verify`.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// What to verify.
    pub scope: VerifyScope,
    /// Which packs to read (default: all).
    pub read_data: ReadData,
    /// How the plaintext of each blob read is checked: by the frame's own checksum where
    /// it has one ([`ContentCheck::Decode`], the default), or also by recomputing every
    /// content id ([`ContentCheck::ContentId`], `atlas verify --content-ids`).
    pub content_check: ContentCheck,
}

/// What kind of object is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum DamageKind {
    /// The wrapped data key or its spare copy.
    Key,
    /// The repository config or its spare copy.
    Config,
    /// The snapshot record.
    SnapshotRecord,
    /// The mailbox record (`mailboxes/…`).
    MailboxRecord,
    /// An index file.
    Index,
    /// A folder's item list.
    FolderList,
    /// A message's MIME.
    Message,
    /// A pack as a whole (missing, wrong size, bad header/table).
    Pack,
}

/// One damaged item. Never contains a subject.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Damage {
    /// Kind of object.
    pub kind: DamageKind,
    /// Mailbox address, when the damage concerns one.
    pub mailbox: Option<String>,
    /// Snapshot, when the damage concerns one.
    pub snapshot: Option<SnapshotId>,
    /// Folder path.
    pub folder: Option<String>,
    /// Graph message id.
    pub message_id: Option<MessageId>,
    /// Store key of the damaged or missing object.
    pub object: Option<String>,
    /// What is wrong.
    pub error: String,
    /// The damaged content, when the damage is to a blob (to find every snapshot and item
    /// that needs it).
    #[serde(skip)]
    pub(crate) content: Option<ContentId>,
}

/// Result of `verify`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifySummary {
    /// Snapshots checked.
    pub snapshots: usize,
    /// Folder lists read.
    pub folders: usize,
    /// Messages referenced.
    pub messages: usize,
    /// Packs referenced.
    pub packs: usize,
    /// Packs whose data was read.
    pub packs_read: usize,
    /// Blobs decrypted and checked.
    pub blobs_checked: usize,
    /// Encrypted bytes read from packs.
    pub bytes_read: u64,
    /// Share of packs read.
    pub read_data: ReadData,
    /// Every problem found; empty means everything checked is intact.
    pub damage: Vec<Damage>,
    /// What to run about the damage (`None` when there is none).
    pub next_step: Option<String>,
}

impl VerifySummary {
    /// Nothing damaged (the CLI exits 1 otherwise).
    pub fn is_ok(&self) -> bool {
        self.damage.is_empty()
    }
}

/// Who needs a blob (for naming damage).
#[derive(Debug, Clone)]
struct Owner {
    mailbox: String,
    snapshot: SnapshotId,
    folder: String,
    message: Option<(MessageId, String)>,
    /// The blob it needs (a folder list or a message's content).
    content: ContentId,
}

impl Owner {
    /// Damage to a blob this owner needs concerns a message or a folder list.
    fn kind(&self) -> DamageKind {
        if self.message.is_some() {
            DamageKind::Message
        } else {
            DamageKind::FolderList
        }
    }

    fn damage(&self, kind: DamageKind, object: Option<String>, error: &Error) -> Damage {
        Damage {
            kind,
            mailbox: Some(self.mailbox.clone()),
            snapshot: Some(self.snapshot),
            folder: Some(self.folder.clone()),
            message_id: self.message.as_ref().map(|m| m.0.clone()),
            object,
            error: error.to_string(),
            content: Some(self.content),
        }
    }
}

/// Verify the snapshots in scope; see the module docs.
pub async fn verify(repo: &Repository, opts: &VerifyOptions) -> Result<VerifySummary> {
    verify_with_progress(repo, opts, &NullReporter).await
}

/// [`verify`], reporting its two long steps (opening snapshots, reading packs) as
/// [`Task::VerifySnapshots`] and [`Task::VerifyPacks`].
pub async fn verify_with_progress(
    repo: &Repository,
    opts: &VerifyOptions,
    reporter: &dyn Reporter,
) -> Result<VerifySummary> {
    let mut sum = VerifySummary {
        snapshots: 0,
        folders: 0,
        messages: 0,
        packs: 0,
        packs_read: 0,
        blobs_checked: 0,
        bytes_read: 0,
        read_data: opts.read_data,
        damage: Vec::new(),
        next_step: None,
    };
    check_roots_and_index(repo, &mut sum).await;
    let ids: Vec<SnapshotId> = match &opts.scope {
        VerifyScope::Snapshot(id) => vec![*id],
        VerifyScope::Mailbox(m) => {
            let v: Vec<_> = repo.list_snapshots(m).await?.iter().map(|s| s.id).collect();
            if v.is_empty() {
                return Err(Error::InvalidInput {
                    reason: format!("mailbox {m} has no snapshot in the repository"),
                });
            }
            v
        }
        VerifyScope::All => repo
            .list_all_snapshots()
            .await?
            .iter()
            .map(|s| s.id)
            .collect(),
    };
    // Format 5 on has no mailbox records to miss: each snapshot record names its mailbox.
    let check_records = repo.keeps_mailbox_records();
    let known_mailboxes: BTreeSet<MailboxId> = if check_records {
        match repo.list_mailboxes().await {
            Ok(v) => v.into_iter().collect(),
            Err(e) => {
                sum.damage.push(Damage {
                    kind: DamageKind::MailboxRecord,
                    mailbox: None,
                    snapshot: None,
                    folder: None,
                    message_id: None,
                    object: error_key(&e),
                    error: e.to_string(),
                    content: None,
                });
                BTreeSet::new()
            }
        }
    } else {
        BTreeSet::new()
    };
    reporter.report(Event::TaskStarted {
        task: Task::VerifySnapshots,
        total: Some(ids.len() as u64),
        bytes: None,
    });
    let needed = collect(
        repo,
        opts,
        ids.clone(),
        &known_mailboxes,
        &mut sum,
        reporter,
    )
    .await;
    reporter.report(Event::TaskDone {
        task: Task::VerifySnapshots,
    });
    let needed = needed?;
    let by_pack = group_by_pack(repo, &needed, &mut sum).await;
    let checked = check_packs(repo, opts, &needed, &by_pack, &mut sum, reporter).await;
    reporter.report(Event::TaskDone {
        task: Task::VerifyPacks,
    });
    checked?;
    name_every_owner(repo, &ids, &mut sum).await;
    if !sum.damage.is_empty() {
        sum.next_step = Some(REPAIR_ADVICE.into());
    }
    Ok(sum)
}

/// The root objects (wrapped key, config, their spares) and every index file.
async fn check_roots_and_index(repo: &Repository, sum: &mut VerifySummary) {
    for p in repo.check_root_objects().await {
        let kind = if p.object == CONFIG_KEY || p.object == CONFIG_SPARE_KEY {
            DamageKind::Config
        } else {
            DamageKind::Key
        };
        sum.damage.push(Damage {
            kind,
            mailbox: None,
            snapshot: None,
            folder: None,
            message_id: None,
            object: Some(p.object),
            error: p.error.to_string(),
            content: None,
        });
    }
    // Every unreadable index file, each named (the cache skips them all).
    let mut errors: Vec<Error> = match repo.refresh_index_report().await {
        Ok(_) => Vec::new(),
        Err(e) => vec![e],
    };
    for key in repo.bad_index_files() {
        if let Err(e) = repo.read_index_file(&key).await {
            errors.push(e);
        }
    }
    for e in errors {
        sum.damage.push(Damage {
            kind: DamageKind::Index,
            mailbox: None,
            snapshot: None,
            folder: None,
            message_id: None,
            object: error_key(&e),
            error: e.to_string(),
            content: None,
        });
    }
}

/// What to do about damage, said with every report that has some.
pub const REPAIR_ADVICE: &str = "run `atlas repair`: it restores damaged root objects from \
    their spares, drops damaged and missing data from the index, and records in every \
    affected snapshot which items are lost; the next backup then downloads again those \
    still in the mailbox";

/// Damage to a blob is found once, against its first owner; name it against every
/// snapshot, folder and item in scope that needs the blob too (a message kept by many
/// snapshots, a folder list shared by unchanged folders). Runs only when there is damage:
/// it reads the folder lists a second time, keeping only references to damaged blobs.
async fn name_every_owner(repo: &Repository, ids: &[SnapshotId], sum: &mut VerifySummary) {
    let mut damaged: HashMap<ContentId, Vec<usize>> = HashMap::new();
    for (i, d) in sum.damage.iter().enumerate() {
        if let (Some(c), Some(_)) = (d.content, d.snapshot) {
            damaged.entry(c).or_default().push(i);
        }
    }
    if damaged.is_empty() {
        return;
    }
    let key = |d: &Damage| {
        (
            d.snapshot,
            d.folder.clone(),
            d.message_id.clone(),
            d.object.clone(),
            d.content,
        )
    };
    let mut seen: HashSet<_> = sum.damage.iter().map(key).collect();
    // Per folder list: its items whose content is damaged.
    let mut lists: HashMap<ContentId, Vec<(MessageId, ContentId)>> = HashMap::new();
    let mut extra = Vec::new();
    for id in ids {
        let Ok(snap) = repo.load_snapshot(*id).await else {
            continue;
        };
        let mailbox = snap.record.mailbox.address().to_owned();
        for f in &snap.record.folders {
            let path = folder_path(f);
            let mut add = |template: &Damage, message: Option<MessageId>| {
                let d = Damage {
                    mailbox: Some(mailbox.clone()),
                    snapshot: Some(*id),
                    folder: Some(path.clone()),
                    message_id: message,
                    ..template.clone()
                };
                if seen.insert(key(&d)) {
                    extra.push(d);
                }
            };
            if let Some(found) = damaged.get(&f.items) {
                for i in found {
                    add(&sum.damage[*i], None);
                }
                continue;
            }
            if let std::collections::hash_map::Entry::Vacant(slot) = lists.entry(f.items) {
                let hits = match repo.load_folder_items(&f.items).await {
                    Ok(items) => items
                        .iter()
                        .flat_map(|m| {
                            m.content_ids()
                                .filter(|c| damaged.contains_key(c))
                                .map(|c| (m.id.clone(), c))
                                .collect::<Vec<_>>()
                        })
                        .collect(),
                    Err(_) => Vec::new(),
                };
                slot.insert(hits);
            }
            for (message, content) in &lists[&f.items] {
                for i in &damaged[content] {
                    add(&sum.damage[*i], Some(message.clone()));
                }
            }
        }
    }
    sum.damage.extend(extra);
}

type Needed = BTreeMap<ContentId, (Owner, Option<String>)>;
type ByPack = BTreeMap<PackId, Vec<Want>>;

/// One stored blob verify needs: `blob` at `loc`, part of the content `content` (the same
/// id, except for the chunks of chunked content).
#[derive(Debug, Clone, Copy)]
struct Want {
    content: ContentId,
    blob: ContentId,
    loc: Location,
}

/// How many packs are read and checked at once, at most: enough to overlap store round
/// trips with decryption on every core. A pack is held whole while its blobs are checked,
/// so each pack in flight also draws its size from the repository's memory budget
/// ([`Repository::memory_budget`], the one backup draws from): verify's memory stays
/// within that budget whatever the number or size of packs.
const PACKS_IN_FLIGHT: usize = 4;

/// Open every snapshot in scope and its folder lists; return what their messages need.
async fn collect(
    repo: &Repository,
    opts: &VerifyOptions,
    ids: Vec<SnapshotId>,
    known_mailboxes: &BTreeSet<MailboxId>,
    sum: &mut VerifySummary,
    reporter: &dyn Reporter,
) -> Result<Needed> {
    // Blob → who needs it (first owner is enough to name the damage) and expected sha.
    let mut needed = Needed::new();
    let mut lists_seen: HashSet<ContentId> = HashSet::new();
    for id in ids {
        // Counted as it is taken up: the record and its lists are read next.
        reporter.report(Event::TaskProgress {
            task: Task::VerifySnapshots,
            done: 1,
            bytes: 0,
        });
        let snap = match repo.load_snapshot(id).await {
            Ok(s) => s,
            Err(e @ Error::SnapshotNotFound { .. }) if opts.scope == VerifyScope::Snapshot(id) => {
                return Err(e);
            }
            Err(e) => {
                sum.damage.push(Damage {
                    kind: DamageKind::SnapshotRecord,
                    mailbox: None,
                    snapshot: Some(id),
                    folder: None,
                    message_id: None,
                    object: error_key(&e),
                    error: e.to_string(),
                    content: None,
                });
                continue;
            }
        };
        sum.snapshots += 1;
        let mailbox = snap.record.mailbox.address().to_owned();
        if repo.keeps_mailbox_records() && !known_mailboxes.contains(&snap.record.mailbox) {
            sum.damage.push(Damage {
                kind: DamageKind::MailboxRecord,
                mailbox: Some(mailbox.clone()),
                snapshot: Some(id),
                folder: None,
                message_id: None,
                object: Some(repo.mailbox_record_name(&snap.record.mailbox)),
                error: "mailbox record missing or unreadable".into(),
                content: None,
            });
        }
        for f in &snap.record.folders {
            let owner = Owner {
                mailbox: mailbox.clone(),
                snapshot: id,
                folder: folder_path(f),
                message: None,
                content: f.items,
            };
            sum.folders += 1;
            let (blobs, items) = match repo.load_folder_list(&f.items).await {
                Ok(list) => (list.blobs, list.items),
                Err(e) => {
                    let object = error_key(&e).or_else(|| pack_of(repo, &f.items));
                    sum.damage
                        .push(owner.damage(DamageKind::FolderList, object, &e));
                    continue;
                }
            };
            // The list's blobs: the list, or its piece directory and pieces.
            for blob in blobs {
                needed.entry(blob).or_insert((owner.clone(), None));
            }
            let first_time = lists_seen.insert(f.items);
            sum.messages += items.len();
            if !first_time {
                continue;
            }
            for m in items {
                // Every stored representation (MIME, and any export stream or JSON) is
                // checked against its own checksum.
                for c in m.contents() {
                    let o = Owner {
                        message: Some((m.id.clone(), c.sha256.clone())),
                        content: c.id,
                        ..owner.clone()
                    };
                    needed.entry(c.id).or_insert((o, Some(c.sha256)));
                }
            }
        }
    }
    Ok(needed)
}

/// Find every needed blob (and the chunks of chunked ones) in the index, by pack.
async fn group_by_pack(repo: &Repository, needed: &Needed, sum: &mut VerifySummary) -> ByPack {
    // Group by pack; chunked content pulls its chunks' packs in too.
    let mut by_pack = ByPack::new();
    for (cid, (owner, _)) in needed {
        let kind = owner.kind();
        match repo.locate(cid).await {
            Ok(loc) => {
                by_pack.entry(loc.pack).or_default().push(Want {
                    content: *cid,
                    blob: *cid,
                    loc,
                });
                if loc.kind == BlobKind::ChunkList {
                    match chunk_ids(repo, cid).await {
                        Ok(chunks) => {
                            for c in chunks {
                                match repo.locate(&c).await {
                                    Ok(cl) => by_pack.entry(cl.pack).or_default().push(Want {
                                        content: *cid,
                                        blob: c,
                                        loc: cl,
                                    }),
                                    Err(e) => sum.damage.push(owner.damage(kind, None, &e)),
                                }
                            }
                        }
                        Err(e) => sum.damage.push(owner.damage(kind, error_key(&e), &e)),
                    }
                }
            }
            Err(e) => sum
                .damage
                .push(owner.damage(kind, Some("index".into()), &e)),
        }
    }
    by_pack
}

/// Existence and size of every pack; data of the packs in the read-data slice.
///
/// Each selected pack is fetched whole, once, and every blob needed from it is checked
/// from that buffer (at most [`PACKS_IN_FLIGHT`] packs at a time). Damage keeps the order
/// of a sequential pass: by pack, then by content in the order it was needed.
async fn check_packs(
    repo: &Repository,
    opts: &VerifyOptions,
    needed: &Needed,
    by_pack: &ByPack,
    sum: &mut VerifySummary,
    reporter: &dyn Reporter,
) -> Result<()> {
    sum.packs = by_pack.len();
    let sizes: HashMap<PackId, u64> = repo.pack_sizes().await?;
    // Damage per pack (in pack order), filled by the size checks now and the data checks
    // as they finish.
    let mut per_pack: Vec<Vec<Damage>> = vec![Vec::new(); by_pack.len()];
    let mut jobs = Vec::new();
    for (n, (pack, wanted)) in by_pack.iter().enumerate() {
        let key = pack.store_key();
        let items = pack_items(needed, wanted);
        let Some(size) = sizes.get(pack) else {
            let e = Error::Missing { key: key.clone() };
            for it in &items {
                per_pack[n].push(it.owner.damage(it.owner.kind(), Some(key.clone()), &e));
            }
            continue;
        };
        let end = wanted
            .iter()
            .map(|w| u64::from(w.loc.offset) + u64::from(w.loc.length))
            .max()
            .unwrap_or(0);
        if end > *size {
            let e = Error::Truncated {
                key: key.clone(),
                expected: end,
                actual: *size,
            };
            for it in &items {
                per_pack[n].push(it.owner.damage(it.owner.kind(), Some(key.clone()), &e));
            }
            continue;
        }
        if !opts.read_data.selects(pack) {
            continue;
        }
        sum.packs_read += 1;
        sum.bytes_read += size;
        sum.blobs_checked += items.len();
        jobs.push((n, *pack, items));
    }
    reporter.report(Event::TaskStarted {
        task: Task::VerifyPacks,
        total: Some(jobs.len() as u64),
        bytes: Some(sum.bytes_read),
    });
    let mut running = tokio::task::JoinSet::new();
    let mut jobs = jobs.into_iter();
    let budget = repo.memory_budget();
    let depth = opts.content_check;
    loop {
        while running.len() < PACKS_IN_FLIGHT {
            let Some((n, pack, items)) = jobs.next() else {
                break;
            };
            let repo = repo.clone();
            let size = sizes.get(&pack).copied().unwrap_or(0);
            // Waits while the packs in flight hold the budget; they finish on their own
            // and give it back (a pack larger than the whole budget goes alone).
            let grant = budget.acquire(size).await;
            running.spawn(async move {
                let damage = check_pack_data(&repo, pack, items, depth).await;
                drop(grant);
                (n, size, damage)
            });
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        let (n, size, damage) = done.map_err(|e| Error::task(&e))?;
        per_pack[n].extend(damage?);
        reporter.report(Event::TaskProgress {
            task: Task::VerifyPacks,
            done: 1,
            bytes: size,
        });
    }
    sum.damage.extend(per_pack.into_iter().flatten());
    Ok(())
}

/// One content checked in one pack: who needs it, its expected SHA-256, and its blobs in
/// that pack.
#[derive(Debug)]
struct PackItem {
    content: ContentId,
    owner: Owner,
    sha: Option<String>,
    blobs: Vec<(ContentId, Location)>,
}

/// Group a pack's wanted blobs by content, in first-needed order.
fn pack_items(needed: &Needed, wanted: &[Want]) -> Vec<PackItem> {
    let mut items: Vec<PackItem> = Vec::new();
    for w in wanted {
        if let Some(it) = items.iter_mut().find(|it| it.content == w.content) {
            it.blobs.push((w.blob, w.loc));
            continue;
        }
        let Some((owner, sha)) = needed.get(&w.content) else {
            continue;
        };
        items.push(PackItem {
            content: w.content,
            owner: owner.clone(),
            sha: sha.clone(),
            blobs: vec![(w.blob, w.loc)],
        });
    }
    items
}

/// Fetch one pack whole and check its header, trailer and table and every needed blob in
/// it from memory; returns the damage found, named by owner as a per-blob read would.
async fn check_pack_data(
    repo: &Repository,
    pack: PackId,
    items: Vec<PackItem>,
    depth: ContentCheck,
) -> Result<Vec<Damage>> {
    let key = pack.store_key();
    let mut damage = Vec::new();
    let data = match repo.read_pack(pack).await {
        Ok(d) => d,
        Err(e) => {
            damage.push(pack_damage(&key, &e));
            for it in &items {
                damage.push(it.owner.damage(it.owner.kind(), Some(key.clone()), &e));
            }
            return Ok(damage);
        }
    };
    let (table, results, items) = tokio::task::spawn_blocking(move || {
        let table = data.table().err();
        let results: Vec<Result<()>> = items
            .iter()
            .map(|it| check_item(&data, it, depth))
            .collect();
        (table, results, items)
    })
    .await
    .map_err(|e| Error::task(&e))?;
    if let Some(e) = table {
        damage.push(pack_damage(&key, &e));
    }
    for (it, result) in items.iter().zip(results) {
        let result = match result {
            // A chunked message: its chunk list is intact here, and each chunk is checked
            // in its own pack. Where there is a recorded SHA-256 (before format 4) or
            // the content id is to be recomputed, the whole content (both span every
            // chunk, possibly in other packs) is reassembled and checked once, from the
            // pack holding the list. A chunked folder list needs no second pass:
            // `collect` loaded it whole, with the same checks, or it would not be here.
            Ok(())
                if it.owner.message.is_some()
                    && it.blobs.iter().any(|(_, l)| l.kind == BlobKind::ChunkList)
                    && (it.sha.as_deref().is_some_and(|s| !s.is_empty())
                        || depth == ContentCheck::ContentId) =>
            {
                match repo.read_blob(&it.content).await {
                    Ok(whole) => it
                        .sha
                        .as_deref()
                        .map_or(Ok(()), |s| check_sha(&whole, s, &it.content)),
                    Err(e) => Err(e),
                }
            }
            other => other,
        };
        if let Err(e) = result {
            damage.push(it.owner.damage(it.owner.kind(), Some(key.clone()), &e));
        }
    }
    Ok(damage)
}

/// Check one content's blobs in a pack's bytes: AEAD tag and frame of each, the plaintext
/// as deep as `depth` asks (the chunk list's id covers the whole content, so never its
/// id), and the SHA-256 recorded at backup for unchunked content before format 4.
fn check_item(pack: &PackData, it: &PackItem, depth: ContentCheck) -> Result<()> {
    for (blob, loc) in &it.blobs {
        let whole = loc.kind != BlobKind::ChunkList && loc.kind != BlobKind::Chunk;
        match it.sha.as_deref() {
            Some(sha) if whole && !sha.is_empty() => {
                check_sha(&pack.open_blob(blob, *loc)?, sha, &it.content)?;
            }
            // Nothing recorded to compare the plaintext with (format 4 records no
            // SHA-256): checked without keeping it.
            _ => pack.check_blob(blob, *loc, depth)?,
        }
    }
    Ok(())
}

fn pack_damage(key: &str, e: &Error) -> Damage {
    Damage {
        kind: DamageKind::Pack,
        mailbox: None,
        snapshot: None,
        folder: None,
        message_id: None,
        object: Some(key.to_owned()),
        error: e.to_string(),
        content: None,
    }
}

/// The pack a blob lives in, from the index refreshed at the start (no store access).
fn pack_of(repo: &Repository, id: &ContentId) -> Option<String> {
    repo.index_lookup(id).map(|l| l.pack.store_key())
}

/// The store key an error names, if any.
fn error_key(e: &Error) -> Option<String> {
    match e {
        Error::Corrupt { key, .. }
        | Error::AuthenticationFailed { key }
        | Error::Truncated { key, .. }
        | Error::Missing { key }
        | Error::ChecksumMismatch { key, .. } => Some(key.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotating_slices_cover_every_pack_exactly_once_per_cycle() {
        let packs: Vec<PackId> = (0..500).map(|_| PackId::random()).collect();
        for percent in [10u8, 25, 34, 50] {
            let slots = 100u64.div_ceil(u64::from(percent));
            for p in &packs {
                let hits = (0..slots)
                    .filter(|s| {
                        ReadData {
                            percent,
                            slot: 7 * slots + s,
                        }
                        .selects(p)
                    })
                    .count();
                assert!(hits >= 1, "pack never read at {percent}%");
                if 100 % percent == 0 {
                    assert_eq!(hits, 1);
                }
            }
        }
        assert!(packs.iter().all(|p| ReadData::ALL.selects(p)));
        let some = packs
            .iter()
            .filter(|p| {
                ReadData {
                    percent: 10,
                    slot: 3,
                }
                .selects(p)
            })
            .count();
        assert!(some > 10 && some < 120, "{some}");
    }
}
