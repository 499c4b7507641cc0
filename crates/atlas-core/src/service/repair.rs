//! `atlas repair`: heal what `verify` names, instead of reporting it forever.
//!
//! Plan → execute, like the other services. [`plan`] reads everything and writes nothing;
//! [`execute`] does, in this order:
//!
//! 1. **Storage** ([`Repository::repair_storage`]): root objects back from their spares,
//!    and a new index holding exactly one healthy copy of every blob the packs hold —
//!    damaged blobs and blobs of missing packs dropped (never deduplicated against
//!    again), blobs of lost or damaged index files indexed again from the packs' tables.
//! 2. **Snapshots**: every snapshot that references content which is now gone gets a
//!    replacement record — the same snapshot, with the lost items taken out of their
//!    folder lists and recorded as item errors naming each one and why (never silently),
//!    status `partial`, and the affected folders' delta links cleared, so the next backup
//!    enumerates those folders again and downloads every lost item still in the mailbox.
//!    The replacement is written (a new id, the same start time) before the old record is
//!    deleted. A folder list that cannot be read loses its whole folder the same way. A
//!    record that cannot be read at all is deleted: nothing in it can be recovered or
//!    restored, and the repair report names it.
//! 3. **Mailbox records** that are missing or damaged are written again from the
//!    snapshot records that name the mailbox.
//!
//! Afterwards `verify` finds nothing; what the next backup downloads again is what was
//! lost and is still in the mailbox.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;

use super::catalog::folder_path;
use crate::error::{Error, Result};
use crate::model::{
    ContentId, FolderSnapshot, ItemError, ItemMeta, MailboxId, MessageId, SnapshotId,
    SnapshotRecord, SnapshotStatus,
};
use crate::ports::Clock;
use crate::repo::{Repository, SnapshotInfo, StorageRepair};

/// Prefix of the item errors a repair writes, so readers (and people) can tell a loss
/// found later from a failure of the run itself.
pub const LOST_PREFIX: &str = "lost:";

/// How to repair.
#[derive(Debug, Clone)]
pub struct RepairOptions {
    /// Lease owner (host, pid) shown to a concurrent backup or prune.
    pub owner: String,
    /// Tool name and version, recorded in the repair's notes.
    pub tool: String,
}

/// One item (or a whole folder, when its list was lost) that a snapshot no longer holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LostItem {
    /// Folder path.
    pub folder: String,
    /// The item; `None` when the folder's whole item list, or a piece of it, could not be
    /// read.
    pub message_id: Option<MessageId>,
    /// Why it is lost.
    pub reason: String,
}

/// What happens (happened) to one snapshot.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotRepair {
    /// Mailbox address, when known.
    pub mailbox: Option<String>,
    /// The damaged snapshot.
    pub snapshot: SnapshotId,
    /// Its record could not be read: it is deleted.
    pub record_unreadable: Option<String>,
    /// Items it loses.
    pub lost: Vec<LostItem>,
    /// The replacement record written (execute only).
    pub replaced_by: Option<SnapshotId>,
}

/// The plan (from [`plan`]) or the outcome (from [`execute`]) of a repair.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepairSummary {
    /// Whether anything was written (false for a plan).
    pub executed: bool,
    /// Root objects and index.
    pub storage: StorageRepair,
    /// Snapshots that lose items, or whose record is unreadable.
    pub snapshots: Vec<SnapshotRepair>,
    /// Mailbox records written again (missing or damaged).
    pub mailbox_records: Vec<String>,
    /// What could not be repaired (e.g. a damaged mailbox record whose mailbox no readable
    /// snapshot names).
    pub unrepairable: Vec<String>,
}

impl RepairSummary {
    /// Whether the repository needed nothing.
    pub fn is_clean(&self) -> bool {
        self.storage.is_clean()
            && self.snapshots.is_empty()
            && self.mailbox_records.is_empty()
            && self.unrepairable.is_empty()
    }

    /// Items lost over all snapshots.
    pub fn items_lost(&self) -> usize {
        self.snapshots.iter().map(|s| s.lost.len()).sum()
    }
}

/// Read everything and say what a repair would do; writes nothing.
pub async fn plan(
    repo: &Repository,
    opts: &RepairOptions,
    clock: &dyn Clock,
) -> Result<RepairSummary> {
    let storage = repo.repair_storage(true, &opts.owner, clock).await?;
    let mut gone: HashSet<ContentId> = storage.dropped.iter().map(|d| d.id).collect();
    gone.retain(|id| !storage.reindexed_ids.contains(id));
    let scan = scan(
        repo,
        &Findable::Plan {
            dropped: &gone,
            reindexed: &storage.reindexed_ids,
        },
    )
    .await?;
    Ok(RepairSummary {
        executed: false,
        storage,
        snapshots: scan.snapshots.into_iter().map(|s| s.report).collect(),
        mailbox_records: scan
            .mailbox_records
            .into_iter()
            .map(|(_, name)| name)
            .collect(),
        unrepairable: scan.unrepairable,
    })
}

/// Repair (see the module docs). Fails without writing anything more when a backup or
/// prune holds the repository; rerunning after any interruption continues the repair.
pub async fn execute(
    repo: &Repository,
    opts: &RepairOptions,
    clock: Arc<dyn Clock>,
) -> Result<RepairSummary> {
    let storage = repo
        .repair_storage(false, &opts.owner, clock.as_ref())
        .await?;
    repo.refresh_index().await?;
    let scan = scan(repo, &Findable::Index).await?;
    let mut out = RepairSummary {
        executed: true,
        storage,
        snapshots: Vec::new(),
        mailbox_records: Vec::new(),
        unrepairable: scan.unrepairable,
    };
    for (mailbox, name) in &scan.mailbox_records {
        repo.rewrite_mailbox_record(mailbox).await?;
        out.mailbox_records.push(name.clone());
    }
    for mut s in scan.snapshots {
        match (&s.record, &s.mailbox) {
            (Some(record), Some(mailbox)) => {
                let replacement = replacement_record(record, &s.report, opts, clock.as_ref());
                let mut session = repo
                    .begin_backup(mailbox, &opts.owner, Arc::clone(&clock))
                    .await?;
                let mut folders = Vec::with_capacity(replacement.folders.len());
                for (f, items) in replacement.folders.into_iter().zip(s.kept.drain(..)) {
                    folders.push(match items {
                        Some(items) => {
                            let stored_item_count = items.len() as u64;
                            let stored = match session.put_folder_items(items).await {
                                Ok(stored) => stored,
                                Err(e) => {
                                    let _ = session.release().await;
                                    return Err(e);
                                }
                            };
                            FolderSnapshot {
                                items: stored.id,
                                item_pieces: stored.pieces,
                                stored_item_count,
                                ..f
                            }
                        }
                        None => f,
                    });
                }
                let record = SnapshotRecord {
                    folders,
                    ..replacement.record
                };
                let new_id = session.commit(record).await?;
                repo.delete_snapshot(s.report.snapshot).await?;
                s.report.replaced_by = Some(new_id);
            }
            // An unreadable record: nothing in it can be recovered.
            _ => match repo.delete_snapshot(s.report.snapshot).await {
                Ok(()) | Err(Error::SnapshotNotFound { .. }) => {}
                Err(e) => return Err(e),
            },
        }
        out.snapshots.push(s.report);
    }
    Ok(out)
}

/// What counts as stored: the index as it is (after a repair), or — for a plan — the
/// index as the storage repair would leave it.
enum Findable<'a> {
    Index,
    Plan {
        dropped: &'a HashSet<ContentId>,
        reindexed: &'a HashSet<ContentId>,
    },
}

impl Findable<'_> {
    fn has(&self, repo: &Repository, id: &ContentId) -> bool {
        match self {
            Self::Index => repo.index_lookup(id).is_some(),
            Self::Plan { dropped, reindexed } => {
                !dropped.contains(id) && (repo.index_lookup(id).is_some() || reindexed.contains(id))
            }
        }
    }
}

/// One snapshot that needs repair.
struct Damaged {
    report: SnapshotRepair,
    mailbox: Option<MailboxId>,
    record: Option<SnapshotRecord>,
    /// Per folder of the record: the new item list, or `None` when the folder is intact.
    kept: Vec<Option<Vec<ItemMeta>>>,
}

struct Scan {
    snapshots: Vec<Damaged>,
    mailbox_records: Vec<(MailboxId, String)>,
    unrepairable: Vec<String>,
}

/// Find every snapshot that references content which is not stored, or whose record
/// cannot be read, and every mailbox record to write again.
async fn scan(repo: &Repository, findable: &Findable<'_>) -> Result<Scan> {
    let by_name: HashMap<String, Vec<SnapshotInfo>> = repo.snapshots_by_mailbox().await?;
    let (mut known, bad_records) = repo.mailbox_records().await?;
    let mut out = Scan {
        snapshots: Vec::new(),
        mailbox_records: Vec::new(),
        unrepairable: Vec::new(),
    };
    // Folder lists shared by snapshots are judged once.
    let mut lists: HashMap<ContentId, Judged> = HashMap::new();
    let mut names: BTreeMap<String, Vec<SnapshotInfo>> = by_name.into_iter().collect();
    for infos in names.values_mut() {
        infos.sort_by_key(|s| (s.started, s.id));
    }
    for (name, infos) in names {
        let mut mailbox: Option<MailboxId> = known
            .iter()
            .find(|m| repo.mailbox_key_name(m) == name)
            .cloned();
        let mut pending: Vec<Damaged> = Vec::new();
        for info in infos {
            let snap = match repo.load_snapshot(info.id).await {
                Ok(s) => s,
                Err(e) if e.is_integrity_failure() => {
                    pending.push(Damaged {
                        report: SnapshotRepair {
                            mailbox: None,
                            snapshot: info.id,
                            record_unreadable: Some(e.to_string()),
                            lost: Vec::new(),
                            replaced_by: None,
                        },
                        mailbox: None,
                        record: None,
                        kept: Vec::new(),
                    });
                    continue;
                }
                Err(e) => return Err(e),
            };
            mailbox.get_or_insert_with(|| snap.record.mailbox.clone());
            let (lost, kept) = judge_record(repo, findable, &snap.record, &mut lists).await?;
            if !lost.is_empty() {
                pending.push(Damaged {
                    report: SnapshotRepair {
                        mailbox: Some(snap.record.mailbox.address().to_owned()),
                        snapshot: info.id,
                        record_unreadable: None,
                        lost,
                        replaced_by: None,
                    },
                    mailbox: Some(snap.record.mailbox.clone()),
                    record: Some(snap.record),
                    kept,
                });
            }
        }
        for d in &mut pending {
            if d.report.mailbox.is_none() {
                d.report.mailbox = mailbox.as_ref().map(|m| m.address().to_owned());
            }
        }
        out.snapshots.extend(pending);
        // The mailbox record: missing or damaged, written again when a record names it
        // (formats before 5; later ones have none, the snapshot record names the mailbox).
        if !repo.keeps_mailbox_records() {
            continue;
        }
        let record_key = mailbox.as_ref().map(|m| repo.mailbox_record_name(m));
        let damaged = record_key
            .as_ref()
            .is_some_and(|k| bad_records.iter().any(|(b, _)| b == k));
        if let Some(mb) = mailbox {
            if damaged || !known.contains(&mb) {
                out.mailbox_records
                    .push((mb.clone(), repo.mailbox_record_name(&mb)));
                known.push(mb);
            }
        }
    }
    for (key, e) in &bad_records {
        if !out.mailbox_records.iter().any(|(_, k)| k == key) {
            out.unrepairable.push(format!(
                "{key}: {e} (no readable snapshot names its mailbox; it is left as it is)"
            ));
        }
    }
    Ok(out)
}

/// A judged folder list: `Ok(None)` intact, `Ok(Some)` with lost items, `Err(reason)`
/// when the list itself cannot be read.
type Judged = std::result::Result<Option<Lost>, String>;

/// The items a readable record loses, and per folder the item list to keep (`None`:
/// intact).
async fn judge_record(
    repo: &Repository,
    findable: &Findable<'_>,
    record: &SnapshotRecord,
    lists: &mut HashMap<ContentId, Judged>,
) -> Result<(Vec<LostItem>, Vec<Option<Vec<ItemMeta>>>)> {
    let mut lost = Vec::new();
    let mut kept = Vec::with_capacity(record.folders.len());
    for f in &record.folders {
        let judged = if let Some(j) = lists.get(&f.items) {
            j.clone()
        } else {
            let j = judge_list(repo, findable, &f.items).await?;
            lists.insert(f.items, j.clone());
            j
        };
        let path = folder_path(f);
        match judged {
            Ok(None) => kept.push(None),
            Ok(Some(l)) => {
                lost.extend(l.items.iter().map(|(id, reason)| LostItem {
                    folder: path.clone(),
                    message_id: Some(id.clone()),
                    reason: reason.clone(),
                }));
                lost.extend(l.pieces.iter().map(|reason| LostItem {
                    folder: path.clone(),
                    message_id: None,
                    reason: format!("a piece of the folder's item list cannot be read: {reason}"),
                }));
                kept.push(Some(l.kept));
            }
            Err(reason) => {
                lost.push(LostItem {
                    folder: path.clone(),
                    message_id: None,
                    reason: format!("the folder's item list cannot be read: {reason}"),
                });
                kept.push(Some(Vec::new()));
            }
        }
    }
    Ok((lost, kept))
}

/// A folder list's items, split into kept and lost (with the reason).
#[derive(Debug, Clone)]
struct Lost {
    kept: Vec<ItemMeta>,
    items: Vec<(MessageId, String)>,
    /// Why each piece of the list that cannot be read is lost (its items are unknown).
    pieces: Vec<String>,
}

/// Judge one folder list: `Ok(None)` intact, `Ok(Some)` with lost items, `Err` when the
/// list itself cannot be read.
async fn judge_list(repo: &Repository, findable: &Findable<'_>, id: &ContentId) -> Result<Judged> {
    if !findable.has(repo, id) {
        return Ok(Err(format!("content {id} is damaged or missing")));
    }
    // Piece by piece: a damaged piece of a long list loses its own items, not the folder's.
    let mut reader = repo.item_list(id);
    let mut kept = Vec::new();
    let mut lost = Vec::new();
    let mut pieces = Vec::new();
    loop {
        let items = match reader.next_piece().await {
            Ok(Some((_, items))) => items,
            Ok(None) => break,
            Err(e) if (e.is_integrity_failure() || is_absent(&e)) && reader.listed() => {
                pieces.push(e.to_string());
                continue;
            }
            Err(e) if e.is_integrity_failure() || is_absent(&e) => return Ok(Err(e.to_string())),
            Err(e) => return Err(e),
        };
        judge_items(repo, findable, items, &mut kept, &mut lost);
    }
    Ok(Ok((!lost.is_empty() || !pieces.is_empty()).then_some(
        Lost {
            kept,
            items: lost,
            pieces,
        },
    )))
}

/// Keep the items whose content is all findable; the others are lost, with the reason.
fn judge_items(
    repo: &Repository,
    findable: &Findable<'_>,
    items: Vec<ItemMeta>,
    kept: &mut Vec<ItemMeta>,
    lost: &mut Vec<(MessageId, String)>,
) {
    for m in items {
        let missing = item_content(&m)
            .into_iter()
            .find(|c| !findable.has(repo, c));
        match missing {
            Some(c) => lost.push((
                m.id.clone(),
                format!("its stored content {c} is damaged or missing"),
            )),
            None => kept.push(m),
        }
    }
}

/// The stored content an item references (every representation).
fn item_content(m: &ItemMeta) -> Vec<ContentId> {
    m.content_ids().collect()
}

fn is_absent(e: &Error) -> bool {
    matches!(e, Error::Missing { .. } | Error::ContentNotFound { .. })
}

/// The record that replaces a damaged one: the same run, with the lost items out of their
/// folders (recorded as item errors), those folders' delta links cleared, status partial.
struct Replacement {
    record: SnapshotRecord,
    folders: Vec<FolderSnapshot>,
}

fn replacement_record(
    record: &SnapshotRecord,
    report: &SnapshotRepair,
    opts: &RepairOptions,
    clock: &dyn Clock,
) -> Replacement {
    let when = clock.now().format("%Y-%m-%d %H:%M UTC");
    let mut folders = Vec::with_capacity(record.folders.len());
    for f in &record.folders {
        let path = folder_path(f);
        let lost: Vec<&LostItem> = report.lost.iter().filter(|l| l.folder == path).collect();
        if lost.is_empty() {
            folders.push(f.clone());
            continue;
        }
        let mut folder = f.clone();
        folder.delta_link = None;
        for l in lost {
            folder.errors.push(ItemError {
                message_id: l.message_id.clone(),
                reason: format!(
                    "{LOST_PREFIX} {}; removed from snapshot {} by {} on {when} (the next backup downloads it again if it is still in the mailbox)",
                    l.reason, report.snapshot, opts.tool
                ),
            });
        }
        folders.push(folder);
    }
    Replacement {
        record: SnapshotRecord {
            status: SnapshotStatus::Partial,
            folders: Vec::new(),
            ..record.clone()
        },
        folders,
    }
}
