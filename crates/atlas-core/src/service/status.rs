//! `atlas status`: how far each folder of a mailbox is behind its last backup, without
//! writing anything.
//!
//! For a folder with a saved delta link, the delta is followed from that link to the end
//! of the round and the changes are counted; the new link is thrown away, so the next
//! backup still sees every change. Nothing is written to the repository and no lease is
//! taken.
//!
//! Changes are split the way the next backup will treat them, across the whole mailbox:
//! a message the last snapshot does not hold is *new* (it will be downloaded), one it holds
//! — in this folder or, moved, in another — is *changed* (metadata only), and one removed
//! from a folder without reappearing in another is *deleted*.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::Result;
use crate::model::{FolderId, ItemId};
use crate::ports::{DeltaCursor, DeltaNext, FolderOptions, MailSource, SourceError, SourceMailbox};
use crate::repo::Repository;

/// Where one folder stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum FolderState {
    /// No change since the last backup.
    UpToDate,
    /// Changes are waiting.
    Pending {
        /// Messages the last snapshot does not hold.
        new: u64,
        /// Messages it holds whose metadata changed or that moved here.
        changed: u64,
        /// Messages it holds that are gone from the mailbox.
        deleted: u64,
    },
    /// The folder has never been backed up completely (no saved delta state).
    NeverBackedUp {
        /// Items Graph reports in the folder.
        items: u64,
    },
    /// The saved delta state expired: the next backup enumerates the folder again.
    Expired {
        /// Items Graph reports in the folder.
        items: u64,
    },
    /// The folder is in the last snapshot but no longer in the mailbox.
    Gone,
}

/// One folder's line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FolderStatus {
    /// Folder path joined with `/`.
    pub path: String,
    /// Its state.
    #[serde(flatten)]
    pub state: FolderState,
}

/// Pending changes of a mailbox, as the next backup will treat them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingChanges {
    /// Messages to download.
    pub new: u64,
    /// Messages whose metadata changed or that moved (no download).
    pub changed: u64,
    /// Messages gone from the mailbox.
    pub deleted: u64,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    /// Mailbox address.
    pub mailbox: String,
    /// When the last snapshot's run finished, if any.
    pub last_backup: Option<DateTime<Utc>>,
    /// Whether the last snapshot was complete.
    pub last_complete: Option<bool>,
    /// The sum over the folders with a saved delta state (folders never backed up or
    /// whose state expired are counted by their `items` instead).
    pub pending: PendingChanges,
    /// Per folder, in tree order; folders gone from the mailbox last.
    pub folders: Vec<FolderStatus>,
}

impl StatusReport {
    /// Whether every folder is up to date.
    pub fn is_up_to_date(&self) -> bool {
        self.folders
            .iter()
            .all(|f| f.state == FolderState::UpToDate)
    }
}

/// Peek at the delta state of `mailbox` against its latest snapshot.
pub async fn mailbox_status(
    repo: &Repository,
    source: &dyn MailSource,
    mailbox: &SourceMailbox,
    folder_options: FolderOptions,
    page_size: u32,
) -> Result<StatusReport> {
    let id = &mailbox.id;
    let latest = repo.latest_snapshot(id).await?;
    let folders = source.list_folders(mailbox, folder_options).await?;
    let saved: HashMap<&FolderId, Option<&str>> = latest
        .iter()
        .flat_map(|s| s.record.folders.iter())
        .map(|f| (&f.folder.id, f.delta_link.as_deref()))
        .collect();

    // First every folder's delta, then the classification: a move shows as a removal in
    // one folder and an addition in another, so it needs the whole mailbox.
    let mut deltas: Vec<Option<Option<Changes>>> = Vec::with_capacity(folders.len());
    for folder in &folders {
        deltas.push(match saved.get(&folder.id).copied().flatten() {
            None => None,
            Some(link) => Some(read_changes(source, mailbox, &folder.id, link, page_size).await?),
        });
    }
    let held = match &latest {
        Some(snap) => held_messages(repo, snap).await?,
        None => HashMap::new(),
    };
    let upserted_anywhere: HashSet<&ItemId> = deltas
        .iter()
        .filter_map(|d| d.as_ref().and_then(Option::as_ref))
        .flat_map(|c| c.upserted.iter())
        .collect();

    let mut out = Vec::with_capacity(folders.len());
    let mut pending = PendingChanges::default();
    for (delta, folder) in deltas.iter().zip(&folders) {
        let items = folder.total_items;
        let state = match delta {
            // No saved delta state: never backed up completely.
            None => FolderState::NeverBackedUp { items },
            Some(None) => FolderState::Expired { items },
            Some(Some(c)) => {
                let here = &folder.id;
                let mut p = PendingChanges::default();
                for m in &c.upserted {
                    if held.contains_key(m) {
                        p.changed += 1;
                    } else {
                        p.new += 1;
                    }
                }
                for m in &c.removed {
                    let was_here = held.get(m).is_some_and(|f| f == here);
                    if was_here && !upserted_anywhere.contains(m) {
                        p.deleted += 1;
                    }
                }
                pending.new += p.new;
                pending.changed += p.changed;
                pending.deleted += p.deleted;
                if p == PendingChanges::default() {
                    FolderState::UpToDate
                } else {
                    FolderState::Pending {
                        new: p.new,
                        changed: p.changed,
                        deleted: p.deleted,
                    }
                }
            }
        };
        out.push(FolderStatus {
            path: folder.path.join("/"),
            state,
        });
    }
    let live: HashSet<&FolderId> = folders.iter().map(|f| &f.id).collect();
    if let Some(snap) = &latest {
        // A folder of a kind not asked for was not listed, so its absence says nothing:
        // only folders of the listed kinds can be gone.
        for f in snap
            .record
            .folders
            .iter()
            .filter(|f| folder_options.kinds.contains(f.folder.kind))
        {
            if !live.contains(&f.folder.id) {
                out.push(FolderStatus {
                    path: f.folder.path.join("/"),
                    state: FolderState::Gone,
                });
            }
        }
    }
    Ok(StatusReport {
        mailbox: id.address().to_owned(),
        last_backup: latest.as_ref().map(|s| s.record.finished),
        last_complete: latest
            .as_ref()
            .map(|s| s.record.status == crate::model::SnapshotStatus::Complete),
        pending,
        folders: out,
    })
}

/// The message ids of a snapshot, each with the id of the folder holding it.
async fn held_messages(
    repo: &Repository,
    snap: &crate::repo::Snapshot,
) -> Result<HashMap<ItemId, FolderId>> {
    let mut held = HashMap::new();
    for f in &snap.record.folders {
        let mut list = repo.item_list(&f.items);
        while let Some((_, items)) = list.next_piece().await? {
            for m in items {
                held.insert(m.id, f.folder.id.clone());
            }
        }
    }
    Ok(held)
}

/// What one folder's delta round reports, each id once, in its final state.
#[derive(Debug, Default)]
struct Changes {
    /// Added or changed (or moved in).
    upserted: HashSet<ItemId>,
    /// Removed (deleted or moved out).
    removed: HashSet<ItemId>,
}

/// Read the changes waiting behind a delta link; `None` when the link expired.
async fn read_changes(
    source: &dyn MailSource,
    mailbox: &SourceMailbox,
    folder_id: &FolderId,
    link: &str,
    page_size: u32,
) -> Result<Option<Changes>> {
    let mut cursor = DeltaCursor::Link(link.to_owned());
    // The same item may be reported more than once in a round; the last report wins.
    let mut changes = Changes::default();
    loop {
        let page = match source
            .delta_page(mailbox, folder_id, &cursor, page_size)
            .await
        {
            Ok(p) => p,
            Err(SourceError::DeltaExpired) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        for m in page.items {
            changes.removed.remove(&m.id);
            changes.upserted.insert(m.id);
        }
        for id in page.removed {
            changes.upserted.remove(&id);
            changes.removed.insert(id);
        }
        match page.next {
            DeltaNext::More(next) => cursor = DeltaCursor::Link(next),
            DeltaNext::Done(_) => return Ok(Some(changes)),
        }
    }
}
