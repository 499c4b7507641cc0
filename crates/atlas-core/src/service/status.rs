//! `atlas status`: how far each folder of a mailbox is behind its last backup, without
//! writing anything.
//!
//! For a folder with a saved delta link, the delta is followed from that link to the end
//! of the round and the changes are counted; the new link is thrown away, so the next
//! backup still sees every change. Nothing is written to the repository and no lease is
//! taken.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::Result;
use crate::model::MailboxId;
use crate::ports::{DeltaCursor, DeltaNext, FolderOptions, MailSource, SourceError, SourceMailbox};
use crate::repo::Repository;

/// Where one folder stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum FolderState {
    /// No change since the last backup.
    UpToDate,
    /// This many changes (new, changed or removed items) are waiting.
    Pending {
        /// Number of changes.
        changes: u64,
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
    let id = MailboxId::new(&mailbox.address);
    let latest = repo.latest_snapshot(&id).await?;
    let folders = source.list_folders(mailbox, folder_options).await?;
    let saved: HashMap<&str, Option<&str>> = latest
        .iter()
        .flat_map(|s| s.record.folders.iter())
        .map(|f| (f.folder.id.as_str(), f.delta_link.as_deref()))
        .collect();

    let mut out = Vec::with_capacity(folders.len());
    for folder in &folders {
        let path = folder.path.join("/");
        let state = match saved.get(folder.id.as_str()).copied().flatten() {
            None => FolderState::NeverBackedUp {
                items: folder.total_items,
            },
            Some(link) => count_changes(source, mailbox, &folder.id, link, page_size)
                .await?
                .map_or(
                    FolderState::Expired {
                        items: folder.total_items,
                    },
                    |n| {
                        if n == 0 {
                            FolderState::UpToDate
                        } else {
                            FolderState::Pending { changes: n }
                        }
                    },
                ),
        };
        out.push(FolderStatus { path, state });
    }
    let live: HashSet<&str> = folders.iter().map(|f| f.id.as_str()).collect();
    if let Some(snap) = &latest {
        for f in &snap.record.folders {
            if !live.contains(f.folder.id.as_str()) {
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
        folders: out,
    })
}

/// Count the changes waiting behind a delta link; `None` when the link expired.
async fn count_changes(
    source: &dyn MailSource,
    mailbox: &SourceMailbox,
    folder_id: &str,
    link: &str,
    page_size: u32,
) -> Result<Option<u64>> {
    let mut cursor = DeltaCursor::Link(link.to_owned());
    // The same item may be reported more than once in a round; count distinct ids.
    let mut changed: HashSet<String> = HashSet::new();
    loop {
        let page = match source
            .delta_page(mailbox, folder_id, &cursor, page_size)
            .await
        {
            Ok(p) => p,
            Err(SourceError::DeltaExpired) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        changed.extend(page.items.into_iter().map(|m| m.id));
        changed.extend(page.removed);
        match page.next {
            DeltaNext::More(next) => cursor = DeltaCursor::Link(next),
            DeltaNext::Done(_) => return Ok(Some(changed.len() as u64)),
        }
    }
}
