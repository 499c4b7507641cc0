//! Convert a TypeScript Atlas 1.x repository into a v2 repository.
//!
//! Every Atlas service (list, read, verify, save, restore) works on the v2
//! [`Repository`]; a v1 bucket becomes readable by copying it into one. For every mailbox
//! and every v1 snapshot, oldest first, one v2 snapshot is written whose state is the
//! v1 "as of" state (the merge of that delta manifest and all older ones), whose
//! `started`/`finished` are the v1 `created_at`, and whose `tool` field names the v1
//! snapshot id (`atlas-v1-migrate <id> …`). A rerun finds those records and skips the
//! snapshots already converted, so the conversion is idempotent and resumable: an
//! interrupted run leaves at most unreferenced data, and the next run completes it
//! (content is deduplicated, nothing is rewritten). The v1 repository is only read.
//!
//! What the conversion cannot recover, and how it is represented:
//! - Message content is **rebuilt MIME** ([`crate::compat::v1::mime`]): v1 stored a Graph
//!   JSON projection, not the original message.
//! - Folder names: v1 recorded folder ids only. A folder is named from a `folder_path`
//!   entry field when present (written by later tool versions), otherwise
//!   `folder-<8 hex>` (a hash of the Graph folder id), which is stable across snapshots.
//! - Deletions: v1 never recorded them, so a converted snapshot holds every message seen
//!   up to it (a moved message appears under its old and new id). A warning says so.
//! - Delta links are not carried over: they belong to the old `$select`ed JSON query; the
//!   first v2 backup enumerates every folder afresh.
//! - Damaged v1 objects become per-item errors and the snapshot is marked partial; they
//!   never stop the run. Failures of the target store do stop it (rerun to resume).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::compat::v1::{V1Entry, V1Problem, V1Repository, V1State, is_object_damage};
use crate::error::Result;
use crate::model::{
    FolderId, FolderRecord, FolderSnapshot, ItemError, MailboxId, MessageId, MessageMeta,
    SnapshotId, SnapshotRecord, SnapshotStatus,
};
use crate::ports::{Clock, Event, Reporter};
use crate::repo::{BackupSession, BlobKind, Repository};

/// Start of the `tool` field of a migrated snapshot record; the v1 snapshot id follows.
pub const MIGRATE_TOOL_PREFIX: &str = "atlas-v1-migrate ";

/// The v1 snapshot id a v2 snapshot record was migrated from, if it was.
pub fn migrated_from_v1(record: &SnapshotRecord) -> Option<&str> {
    record
        .tool
        .strip_prefix(MIGRATE_TOOL_PREFIX)?
        .split_whitespace()
        .next()
}

/// Options of a migration.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// Lease owner string written while a mailbox snapshot is being converted.
    pub owner: String,
    /// Only these v1 mailbox segments (all when `None`).
    pub mailboxes: Option<Vec<String>>,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        Self {
            owner: format!("atlas-v1-migrate/{}", std::process::id()),
            mailboxes: None,
        }
    }
}

/// One converted snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigratedSnapshot {
    /// The v1 snapshot id.
    pub v1_snapshot_id: String,
    /// The new v2 snapshot id.
    pub snapshot_id: SnapshotId,
    /// v1 `created_at` (the v2 snapshot's start and finish).
    pub created_at: DateTime<Utc>,
    /// Messages in the converted state.
    pub messages: u64,
    /// Items that could not be converted (or converted without an attachment).
    pub item_errors: u64,
    /// Complete, or partial when there were item errors or damaged manifests.
    pub status: SnapshotStatus,
}

/// Outcome for one mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxMigration {
    /// The v1 mailbox segment.
    pub v1_mailbox: String,
    /// The v2 mailbox.
    pub mailbox: MailboxId,
    /// Snapshots written by this run, oldest first.
    pub migrated: Vec<MigratedSnapshot>,
    /// v1 snapshot ids skipped because an earlier run converted them.
    pub skipped: Vec<String>,
    /// Manifests that could not be read (their entries are missing from every state).
    pub damaged_manifests: Vec<V1Problem>,
}

/// Outcome of a migration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrateSummary {
    /// Per mailbox, sorted by v1 mailbox segment.
    pub mailboxes: Vec<MailboxMigration>,
}

impl MigrateSummary {
    /// Snapshots written by this run.
    pub fn snapshots_written(&self) -> usize {
        self.mailboxes.iter().map(|m| m.migrated.len()).sum()
    }

    /// Whether every snapshot is complete and every manifest was readable.
    pub fn is_complete(&self) -> bool {
        self.mailboxes.iter().all(|m| {
            m.damaged_manifests.is_empty()
                && m.migrated
                    .iter()
                    .all(|s| s.status == SnapshotStatus::Complete)
        })
    }
}

/// The converted form of one v1 entry, cached for the run: consecutive snapshots share
/// most entries, and rebuilding means decrypting the message and its attachments.
#[derive(Debug, Clone)]
enum Converted {
    Ok {
        meta: Box<MessageMeta>,
        warnings: Vec<String>,
    },
    Failed(String),
}

/// Convert `v1` into `target` (see the module docs). `target` must be an initialized v2
/// repository (with config) opened with the same tenant's passphrase or any other.
pub async fn migrate_v1(
    v1: &V1Repository,
    target: &Repository,
    clock: Arc<dyn Clock>,
    reporter: &dyn Reporter,
    opts: &MigrateOptions,
) -> Result<MigrateSummary> {
    target.require_config()?;
    let mut summary = MigrateSummary::default();
    let mut cache: HashMap<String, Converted> = HashMap::new();
    for v1_mailbox in v1.list_mailboxes().await? {
        if opts
            .mailboxes
            .as_ref()
            .is_some_and(|only| !only.contains(&v1_mailbox))
        {
            continue;
        }
        let result =
            migrate_mailbox(v1, target, &clock, reporter, opts, &v1_mailbox, &mut cache).await?;
        summary.mailboxes.push(result);
    }
    Ok(summary)
}

async fn migrate_mailbox(
    v1: &V1Repository,
    target: &Repository,
    clock: &Arc<dyn Clock>,
    reporter: &dyn Reporter,
    opts: &MigrateOptions,
    v1_mailbox: &str,
    cache: &mut HashMap<String, Converted>,
) -> Result<MailboxMigration> {
    let mailbox = V1Repository::mailbox_id(v1_mailbox);
    let list = v1.list_snapshots(v1_mailbox).await?;
    reporter.report(Event::MailboxStarted {
        mailbox: mailbox.address().to_owned(),
        folders: 0,
    });
    reporter.report(Event::Warning {
        mailbox: Some(mailbox.address().to_owned()),
        message: "Atlas 1.x never recorded deletions or moves: each migrated snapshot holds \
                  every message seen up to it"
            .into(),
    });
    for p in &list.damaged {
        reporter.report(Event::Warning {
            mailbox: Some(mailbox.address().to_owned()),
            message: format!("v1 manifest unreadable, its messages are not migrated: {p}"),
        });
    }
    let done = already_migrated(target, &mailbox).await?;
    let mut out = MailboxMigration {
        v1_mailbox: v1_mailbox.to_owned(),
        mailbox: mailbox.clone(),
        migrated: Vec::new(),
        skipped: Vec::new(),
        damaged_manifests: list.damaged.clone(),
    };
    for snap in &list.snapshots {
        if done.contains(&snap.snapshot_id) {
            out.skipped.push(snap.snapshot_id.clone());
            continue;
        }
        let Some(state) = list.as_of(&snap.snapshot_id) else {
            continue;
        };
        let migrated =
            migrate_snapshot(v1, target, clock, reporter, opts, &mailbox, &state, cache).await?;
        out.migrated.push(migrated);
    }
    reporter.report(Event::MailboxDone {
        mailbox: mailbox.address().to_owned(),
        complete: out.damaged_manifests.is_empty()
            && out
                .migrated
                .iter()
                .all(|s| s.status == SnapshotStatus::Complete),
    });
    Ok(out)
}

/// v1 snapshot ids already converted into `target` for this mailbox.
async fn already_migrated(target: &Repository, mailbox: &MailboxId) -> Result<BTreeSet<String>> {
    let mut done = BTreeSet::new();
    for info in target.list_snapshots(mailbox).await? {
        let snap = target.load_snapshot(info.id).await?;
        if let Some(id) = migrated_from_v1(&snap.record) {
            done.insert(id.to_owned());
        }
    }
    Ok(done)
}

/// Cache key: the message object and its attachment objects determine the MIME.
fn entry_key(e: &V1Entry) -> String {
    let mut k = e.storage_key.clone();
    for a in &e.attachments {
        k.push('|');
        k.push_str(&a.storage_key);
        k.push('|');
        k.push_str(&a.checksum);
    }
    k
}

/// The folder of an entry: the manifest's `folder_id`, else Graph `parentFolderId`.
fn folder_of(entry: &V1Entry, meta: Option<&MessageMeta>) -> String {
    entry
        .folder_id
        .clone()
        .filter(|f| !f.is_empty())
        .or_else(|| meta.map(|m| m.parent_folder_id.as_str().to_owned()))
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

fn folder_record(id: &str, path: Option<&str>) -> FolderRecord {
    let path: Vec<String> = path
        .map(|p| {
            p.split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| {
            let h = Sha256::digest(id.as_bytes());
            vec![format!("folder-{}", &hex::encode(h)[..8])]
        });
    FolderRecord {
        id: FolderId::new(id),
        parent_id: None,
        display_name: path.last().cloned().unwrap_or_default(),
        path,
        well_known_name: None,
        total_item_count: None,
        kind: crate::model::ItemKind::Mail,
    }
}

/// Folder id → (path from a 2.x manifest, items, errors).
type FolderAcc = (Option<String>, Vec<MessageMeta>, Vec<ItemError>);

#[allow(clippy::too_many_arguments)]
async fn migrate_snapshot(
    v1: &V1Repository,
    target: &Repository,
    clock: &Arc<dyn Clock>,
    reporter: &dyn Reporter,
    opts: &MigrateOptions,
    mailbox: &MailboxId,
    state: &V1State,
    cache: &mut HashMap<String, Converted>,
) -> Result<MigratedSnapshot> {
    // A lease left by an interrupted migration is taken over once stale (see `lease.rs`).
    let mut session = target
        .begin_backup(mailbox, &opts.owner, Arc::clone(clock))
        .await?;
    let written = write_state(v1, &mut session, reporter, mailbox, state, cache).await;
    let (folders, messages, item_errors) = match written {
        Ok(w) => w,
        Err(e) => {
            // Keep what was stored (deduplicated by the rerun) and free the mailbox.
            let _ = session.release().await;
            return Err(e);
        }
    };
    let status = if item_errors == 0 && state.damaged_manifests.is_empty() {
        SnapshotStatus::Complete
    } else {
        SnapshotStatus::Partial
    };
    let created_at = state.snapshot.created_at;
    let record = SnapshotRecord {
        mailbox: mailbox.clone(),
        started: created_at,
        finished: created_at,
        tool: format!(
            "{MIGRATE_TOOL_PREFIX}{} (atlas-core {})",
            state.snapshot.snapshot_id,
            env!("CARGO_PKG_VERSION")
        ),
        format_version: target.snapshot_format_version(false)?,
        status,
        folders,
        folder_bookmark: None,
    };
    let snapshot_id = session.commit(record).await?;
    Ok(MigratedSnapshot {
        v1_snapshot_id: state.snapshot.snapshot_id.clone(),
        snapshot_id,
        created_at,
        messages,
        item_errors,
        status,
    })
}

/// Store every message of the state and one item list per folder; returns the folder
/// snapshots, the message count and the item error count.
async fn write_state(
    v1: &V1Repository,
    session: &mut BackupSession,
    reporter: &dyn Reporter,
    mailbox: &MailboxId,
    state: &V1State,
    cache: &mut HashMap<String, Converted>,
) -> Result<(Vec<FolderSnapshot>, u64, u64)> {
    let v1_mailbox = state.snapshot.mailbox.as_str();
    let addr = mailbox.address().to_owned();
    let mut folders: BTreeMap<String, FolderAcc> = BTreeMap::new();
    let mut item_errors = 0u64;
    for entry in &state.entries {
        let key = entry_key(entry);
        let converted = if let Some(c) = cache.get(&key) {
            c.clone()
        } else {
            let c = convert_entry(v1, session, v1_mailbox, entry).await?;
            cache.insert(key, c.clone());
            c
        };
        let (meta, errors) = match converted {
            Converted::Ok { meta, warnings } => {
                let mut meta = *meta;
                meta.parent_folder_id = FolderId::new(folder_of(entry, Some(&meta)));
                (Some(meta), warnings)
            }
            Converted::Failed(reason) => (None, vec![reason]),
        };
        let folder = folder_of(entry, meta.as_ref());
        let acc = folders.entry(folder.clone()).or_default();
        if acc.0.is_none() {
            acc.0.clone_from(&entry.folder_path);
        }
        reporter.report(Event::Items {
            mailbox: addr.clone(),
            folder: acc.0.clone().unwrap_or_else(|| folder.clone()),
            count: 1,
            bytes: meta.as_ref().map_or(0, |m| m.mime_size),
        });
        if let Some(meta) = meta {
            acc.1.push(meta);
        }
        for reason in errors {
            item_errors += 1;
            reporter.report(Event::ItemFailed {
                mailbox: addr.clone(),
                folder: acc.0.clone().unwrap_or_else(|| folder.clone()),
                item: entry.object_id.clone(),
                reason: reason.clone(),
            });
            acc.2.push(ItemError {
                message_id: Some(MessageId::new(entry.object_id.clone())),
                reason,
            });
        }
    }
    let mut snapshots = Vec::with_capacity(folders.len());
    let mut messages = 0u64;
    for (id, (path, mut items, errors)) in folders {
        items.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        let stored = items.len() as u64;
        messages += stored;
        let record = folder_record(&id, path.as_deref());
        let items_id = session.put_folder_items(items).await?;
        reporter.report(Event::FolderDone {
            mailbox: addr.clone(),
            folder: record.path.join("/"),
            stored,
        });
        snapshots.push(FolderSnapshot {
            folder: record,
            delta_link: None,
            item_delta_link: None,
            graph_item_count: None,
            stored_item_count: stored,
            items: items_id.id,
            item_pieces: items_id.pieces,
            errors,
        });
    }
    snapshots.sort_by(|a, b| a.folder.path.cmp(&b.folder.path));
    Ok((snapshots, messages, item_errors))
}

/// Rebuild one entry's MIME and store it. Damaged v1 objects give `Converted::Failed`
/// (or warnings for attachments); target failures are errors.
async fn convert_entry(
    v1: &V1Repository,
    session: &mut BackupSession,
    v1_mailbox: &str,
    entry: &V1Entry,
) -> Result<Converted> {
    let rebuilt = match v1.rebuild_mime(v1_mailbox, entry).await {
        Ok(r) => r,
        Err(e) if is_object_damage(&e) => {
            return Ok(Converted::Failed(format!("v1 message object damaged: {e}")));
        }
        Err(e) => return Err(e),
    };
    let warnings = rebuilt
        .attachment_errors
        .iter()
        .map(|(id, e)| format!("v1 attachment {id} left out: {e}"))
        .collect();
    let stored = session
        .put_blob(BlobKind::Mime, Bytes::from(rebuilt.mime))
        .await?;
    let size = stored.plain_len;
    let g = rebuilt.graph.unwrap_or_default();
    let meta = MessageMeta {
        id: MessageId::new(entry.object_id.clone()),
        internet_message_id: g.internet_message_id.clone(),
        conversation_id: g.conversation_id.clone(),
        subject: g.subject.clone().or_else(|| entry.subject.clone()),
        from: g
            .from
            .as_ref()
            .and_then(crate::compat::v1::GraphRecipient::to_email_address),
        received: g
            .received()
            .or_else(|| crate::compat::v1::parse_graph_time(entry.received_at.as_deref())),
        sent: g.sent(),
        size: Some(size),
        is_read: g.is_read.unwrap_or(false),
        flag_status: g.flag_status(),
        importance: g.importance(),
        categories: g.categories.clone(),
        has_attachments: g.has_attachments.unwrap_or(false) || !entry.attachments.is_empty(),
        attachment_count: rebuilt.attachment_count,
        is_draft: g.is_draft.unwrap_or(false),
        change_key: None,
        last_modified: g.last_modified(),
        parent_folder_id: FolderId::new(g.parent_folder_id.clone().unwrap_or_default()),
        mime: stored.id,
        mime_size: size,
        mime_sha256: stored.sha256_hex(),
        kind: crate::model::ItemKind::Mail,
        content: Vec::new(),
    };
    Ok(Converted::Ok {
        meta: Box::new(meta),
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_come_from_paths_or_a_stable_hash() {
        let named = folder_record("AQMk1", Some("Inbox/Projects"));
        assert_eq!(named.path, ["Inbox", "Projects"]);
        assert_eq!(named.display_name, "Projects");
        let hashed = folder_record("AQMk1", None);
        assert_eq!(hashed, folder_record("AQMk1", Some("")));
        assert!(hashed.display_name.starts_with("folder-"));
        assert_eq!(hashed.display_name.len(), "folder-".len() + 8);
        assert_ne!(
            hashed.display_name,
            folder_record("AQMk2", None).display_name
        );
    }

    #[test]
    fn the_v1_snapshot_id_is_found_again_in_the_tool_field() {
        let record = SnapshotRecord {
            mailbox: MailboxId::new("a@b.c"),
            started: Utc::now(),
            finished: Utc::now(),
            tool: format!("{MIGRATE_TOOL_PREFIX}8164f491-2eb9 (atlas-core 0.1.0)"),
            format_version: crate::repo::MAIL_ONLY_FORMAT_VERSION,
            status: SnapshotStatus::Complete,
            folder_bookmark: None,
            folders: Vec::new(),
        };
        assert_eq!(migrated_from_v1(&record), Some("8164f491-2eb9"));
        let native = SnapshotRecord {
            tool: "atlas 0.1.0".into(),
            ..record
        };
        assert_eq!(migrated_from_v1(&native), None);
    }

    #[test]
    fn entries_fall_back_to_the_graph_folder() {
        let entry = V1Entry {
            object_id: "m".into(),
            storage_key: "data/a/b".into(),
            ..V1Entry::default()
        };
        assert_eq!(folder_of(&entry, None), "unknown");
        let with = V1Entry {
            folder_id: Some("F".into()),
            ..entry.clone()
        };
        assert_eq!(folder_of(&with, None), "F");
        assert_ne!(
            entry_key(&entry),
            entry_key(&V1Entry {
                attachments: vec![crate::compat::v1::V1AttachmentEntry::default()],
                ..entry.clone()
            })
        );
    }
}
