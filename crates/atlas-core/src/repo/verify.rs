//! Snapshot verification: read everything a snapshot needs and check every layer.
//!
//! Whole packs are fetched (one GET per pack) so their header, trailer and table are
//! checked too, and every blob in them is decrypted and checked against its checksum and
//! content id, not only the referenced ones: a pack is only as good as its worst blob.

use std::collections::{BTreeMap, BTreeSet};

use super::index::Location;
use super::pack::{self, PackId};
use super::{BlobKind, Repository, crypto};
use crate::error::{Error, Result};
use crate::model::{ContentId, SnapshotId};

/// One thing wrong found by verify.
#[derive(Debug)]
pub struct VerifyProblem {
    /// Store key of the damaged or missing object.
    pub object: String,
    /// The content concerned, when known.
    pub content_id: Option<ContentId>,
    /// What is wrong.
    pub error: Error,
}

/// The result of verifying one snapshot.
#[derive(Debug)]
pub struct VerifyReport {
    /// The snapshot.
    pub snapshot: SnapshotId,
    /// Folders in the record.
    pub folders: usize,
    /// Messages in its folder lists.
    pub messages: usize,
    /// Blobs decrypted and checked.
    pub blobs_checked: usize,
    /// Packs read whole.
    pub packs_checked: usize,
    /// Encrypted bytes read.
    pub bytes_checked: u64,
    /// Everything that failed; empty means the snapshot is fully restorable.
    pub problems: Vec<VerifyProblem>,
}

impl VerifyReport {
    /// No problems found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Packs found clean during one multi-snapshot verify, with their tables: a pack shared by
/// many snapshots (dedup, unchanged folder lists) is read and decrypted once, and later
/// snapshots only check that the table holds what the index promises. Damaged packs are
/// not remembered, so every snapshot that needs one reports it.
pub(crate) type CheckedPacks = std::collections::HashMap<PackId, Vec<pack::PackEntry>>;

pub(crate) async fn verify_snapshot(repo: &Repository, id: SnapshotId) -> Result<VerifyReport> {
    verify_snapshot_with(repo, id, &mut CheckedPacks::new()).await
}

pub(crate) async fn verify_snapshot_with(
    repo: &Repository,
    id: SnapshotId,
    checked: &mut CheckedPacks,
) -> Result<VerifyReport> {
    let snap = repo.load_snapshot(id).await?;
    repo.refresh_index_report().await?;
    let mut report = VerifyReport {
        snapshot: id,
        folders: snap.record.folders.len(),
        messages: 0,
        blobs_checked: 0,
        packs_checked: 0,
        bytes_checked: 0,
        problems: Vec::new(),
    };
    report.problems.extend(bad_index_problems(repo).await);
    if let Some(p) = check_mailbox_record(repo, &snap.record.mailbox).await {
        report.problems.push(p);
    }
    let mut referenced = BTreeSet::new();
    for f in &snap.record.folders {
        referenced.insert(f.items);
        match repo.load_folder_list(&f.items).await {
            Ok(list) => {
                report.messages += list.items.len();
                referenced.extend(list.blobs);
                referenced.extend(
                    list.items
                        .iter()
                        .flat_map(crate::model::ItemMeta::content_ids),
                );
            }
            Err(e) => report.problems.push(problem(repo, &f.items, e)),
        }
    }
    let mut by_pack: BTreeMap<PackId, Vec<(ContentId, Location)>> = BTreeMap::new();
    for cid in &referenced {
        match repo.locate(cid).await {
            Ok(loc) => {
                by_pack.entry(loc.pack).or_default().push((*cid, loc));
                if loc.kind == BlobKind::ChunkList {
                    // Reassembles and checks the whole content; chunks' packs join the
                    // pack checks below.
                    if let Err(e) = repo.read_blob(cid).await {
                        report.problems.push(problem(repo, cid, e));
                    }
                    if let Ok(list) = chunk_ids(repo, cid, loc).await {
                        for c in list {
                            if let Some(cloc) = repo.index_lookup(&c) {
                                by_pack.entry(cloc.pack).or_default().push((c, cloc));
                            }
                        }
                    }
                }
            }
            Err(e) => report.problems.push(VerifyProblem {
                object: "index".into(),
                content_id: Some(*cid),
                error: e,
            }),
        }
    }
    for (pack_id, wanted) in by_pack {
        let key = pack_id.store_key();
        if let Some(entries) = checked.get(&pack_id) {
            report
                .problems
                .extend(table_disagreements(&key, entries, &wanted));
            continue;
        }
        let bytes = match repo.get_required(&key).await {
            Ok(b) => b,
            Err(e) => {
                report.problems.push(VerifyProblem {
                    object: key,
                    content_id: wanted.first().map(|w| w.0),
                    error: e,
                });
                continue;
            }
        };
        report.packs_checked += 1;
        report.bytes_checked += bytes.len() as u64;
        let keys = repo.keys();
        let outcome =
            tokio::task::spawn_blocking(move || check_pack(&keys, pack_id, &bytes, &wanted))
                .await
                .map_err(|e| Error::task(&e))?;
        match outcome {
            Ok((entries, problems)) => {
                report.blobs_checked += entries.len();
                if problems.is_empty() {
                    checked.insert(pack_id, entries);
                }
                report.problems.extend(problems);
            }
            Err(e) => report.problems.push(VerifyProblem {
                object: pack_id.store_key(),
                content_id: None,
                error: e,
            }),
        }
    }
    Ok(report)
}

/// Unreadable index files are skipped by the cache; name each precisely, since content
/// they located now looks "not in the index".
async fn bad_index_problems(repo: &Repository) -> Vec<VerifyProblem> {
    let mut out = Vec::new();
    for key in repo.bad_index_files() {
        if let Err(error) = repo.read_index_file(&key).await {
            out.push(VerifyProblem {
                object: key,
                content_id: None,
                error,
            });
        }
    }
    out
}

/// The snapshot's mailbox must have its (encrypted) mailbox record, or listing would
/// never find the snapshot. From format 5 on there are none: the snapshot record is it.
async fn check_mailbox_record(
    repo: &Repository,
    mailbox: &crate::model::MailboxId,
) -> Option<VerifyProblem> {
    if !repo.keeps_mailbox_records() {
        return None;
    }
    let key = repo.mailbox_record_name(mailbox);
    let opened = match repo.get_required(&key).await {
        Ok(b) => {
            repo.open_json::<crate::model::MailboxId>(super::crypto::ObjectType::Mailbox, &key, &b)
        }
        Err(e) => Err(e),
    };
    let error = match opened {
        Ok(m) if m == *mailbox => return None,
        Ok(_) => Error::corrupt(&key, "mailbox record names another mailbox"),
        Err(e) => e,
    };
    Some(VerifyProblem {
        object: key,
        content_id: None,
        error,
    })
}

fn problem(repo: &Repository, id: &ContentId, error: Error) -> VerifyProblem {
    VerifyProblem {
        object: repo
            .index_lookup(id)
            .map_or_else(|| "index".into(), |l| l.pack.store_key()),
        content_id: Some(*id),
        error,
    }
}

async fn chunk_ids(repo: &Repository, id: &ContentId, loc: Location) -> Result<Vec<ContentId>> {
    let bytes = repo.read_located(id, loc, false).await?;
    let list = super::chunks::ChunkList::decode(&bytes)
        .map_err(|r| Error::corrupt(loc.pack.store_key(), r))?;
    Ok(list.chunks.into_iter().map(|c| c.0).collect())
}

/// Check one whole pack; returns its table and the problems.
fn check_pack(
    keys: &super::secret::RepoKeys,
    pack_id: PackId,
    bytes: &[u8],
    wanted: &[(ContentId, Location)],
) -> Result<(Vec<pack::PackEntry>, Vec<VerifyProblem>)> {
    let key = pack_id.store_key();
    let entries = pack::parse_pack(&keys.enc, pack_id, bytes)?;
    let mut problems = Vec::new();
    for e in &entries {
        let slice = &bytes[e.offset as usize..e.offset as usize + e.length as usize];
        let check = crypto::BlobCheck {
            id_key: (e.kind != BlobKind::ChunkList).then_some(&*keys.id),
            depth: crypto::ContentCheck::Decode,
        };
        if let Err(error) = crypto::check_blob(&keys.enc, check, e.kind, &e.id, slice, &key) {
            problems.push(VerifyProblem {
                object: key.clone(),
                content_id: Some(e.id),
                error,
            });
        }
    }
    problems.extend(table_disagreements(&key, &entries, wanted));
    Ok((entries, problems))
}

/// Wanted blobs the pack table does not hold where the index says.
fn table_disagreements(
    key: &str,
    entries: &[pack::PackEntry],
    wanted: &[(ContentId, Location)],
) -> Vec<VerifyProblem> {
    wanted
        .iter()
        .filter(|(id, loc)| {
            !entries.iter().any(|e| {
                e.id == *id
                    && e.offset == loc.offset
                    && e.length == loc.length
                    && e.kind == loc.kind
            })
        })
        .map(|(id, _)| VerifyProblem {
            object: key.to_owned(),
            content_id: Some(*id),
            error: Error::corrupt(
                key,
                format!("index says {id} is here but the pack table disagrees"),
            ),
        })
        .collect()
}
