//! Catalog: what the repository holds — mailboxes, snapshots, items, statistics — read
//! from the repository alone (no Graph), plus the lookups the other offline services share
//! (snapshot references, message references, folder filters, terminal-safe strings).
//!
//! Listing is built to stay fast with thousands of snapshots: mailboxes and snapshot
//! counts come from key names (one `list` call) plus one small record per mailbox; only the
//! newest snapshot of each mailbox is opened for sizes. Snapshot records of one mailbox are
//! opened concurrently.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::model::{
    ContentId, FolderSnapshot, MailboxId, MessageId, MessageMeta, SnapshotId, SnapshotRecord,
    SnapshotStatus,
};
use crate::repo::pack::PackId;
use crate::repo::{BlobKind, Repository, Snapshot};

/// Snapshot records opened at once when listing a mailbox's snapshots.
const RECORDS_IN_FLIGHT: usize = 16;

// ----- references ------------------------------------------------------------------------

/// Which snapshot a command works on: one by id, or the newest of a mailbox (optionally
/// the newest taken at or before a date, for `--as-of`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotSelector {
    /// A snapshot id.
    Id(SnapshotId),
    /// The newest snapshot of a mailbox started at or before `as_of` (any time if `None`).
    Latest {
        /// The mailbox (it need not exist in the tenant any more).
        mailbox: MailboxId,
        /// Upper bound on the snapshot's start time.
        as_of: Option<DateTime<Utc>>,
    },
}

impl SnapshotSelector {
    /// Load the selected snapshot. Unknown mailbox or no snapshot before `as_of` is
    /// `InvalidInput` with a message naming the mailbox; an unknown id is `SnapshotNotFound`.
    pub async fn load(&self, repo: &Repository) -> Result<Snapshot> {
        match self {
            Self::Id(id) => repo.load_snapshot(*id).await,
            Self::Latest { mailbox, as_of } => {
                let snaps = repo.list_snapshots(mailbox).await?;
                let chosen = snaps
                    .iter()
                    .rev()
                    .find(|s| as_of.is_none_or(|t| s.started <= t))
                    .ok_or_else(|| match as_of {
                        Some(t) => Error::InvalidInput {
                            reason: format!("mailbox {mailbox} has no snapshot at or before {t}"),
                        },
                        None => Error::InvalidInput {
                            reason: format!("mailbox {mailbox} has no snapshot in the repository"),
                        },
                    })?;
                repo.load_snapshot(chosen.id).await
            }
        }
    }
}

/// Resolve what a user typed as a snapshot: the full id or a unique prefix of it (at least
/// 4 hex digits, as shown by `list`). Resolution uses key names only.
pub async fn resolve_snapshot_ref(repo: &Repository, text: &str) -> Result<SnapshotId> {
    let text = text.trim().to_ascii_lowercase();
    if let Ok(id) = text.parse::<SnapshotId>() {
        return Ok(id);
    }
    if text.len() < 4 || !text.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(Error::InvalidInput {
            reason: format!(
                "snapshot reference {:?} is neither an id nor a prefix of 4+ hex digits",
                sanitize_line(&text)
            ),
        });
    }
    let matches: Vec<SnapshotId> = repo
        .list_all_snapshots()
        .await?
        .into_iter()
        .map(|s| s.id)
        .filter(|id| id.to_string().starts_with(&text))
        .collect();
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => Err(Error::InvalidInput {
            reason: format!("no snapshot id starts with {text}"),
        }),
        _ => Err(Error::InvalidInput {
            reason: format!(
                "snapshot prefix {text} is ambiguous ({} snapshots)",
                matches.len()
            ),
        }),
    }
}

/// A message found in a snapshot.
#[derive(Debug, Clone)]
pub struct FoundMessage {
    /// Index of its folder in the snapshot record.
    pub folder_index: usize,
    /// Folder path joined with `/`.
    pub folder_path: String,
    /// Its metadata.
    pub meta: MessageMeta,
}

/// Find one message of a snapshot by reference: the Graph message id, a unique prefix of
/// it (at least 6 characters), or the internetMessageId (with or without `<>`). Exact
/// matches win over prefixes; an ambiguous prefix or an unknown reference is an error.
/// Folder lists are read one at a time, so memory stays at one folder's metadata.
pub async fn find_message(
    repo: &Repository,
    record: &SnapshotRecord,
    reference: &str,
) -> Result<FoundMessage> {
    let wanted = reference.trim();
    let bare = wanted.trim_start_matches('<').trim_end_matches('>');
    if wanted.is_empty() {
        return Err(Error::InvalidInput {
            reason: "empty message reference".into(),
        });
    }
    let mut exact: Option<FoundMessage> = None;
    let mut prefixed: Vec<FoundMessage> = Vec::new();
    for (i, f) in record.folders.iter().enumerate() {
        // Piece by piece: one piece of a large folder in memory at a time.
        let mut list = repo.item_list(&f.items);
        while let Some((_, items)) = list.next_piece().await? {
            for m in items {
                let by_id = m.id.as_str() == wanted;
                let by_imid = m.internet_message_id.as_deref().is_some_and(|imid| {
                    imid == wanted || imid.trim_start_matches('<').trim_end_matches('>') == bare
                });
                let found = || FoundMessage {
                    folder_index: i,
                    folder_path: folder_path(f),
                    meta: m.clone(),
                };
                if by_id || by_imid {
                    if by_id {
                        return Ok(found());
                    }
                    exact.get_or_insert_with(found);
                } else if wanted.len() >= 6
                    && m.id.as_str().starts_with(wanted)
                    && prefixed.len() < 2
                {
                    prefixed.push(found());
                }
            }
        }
    }
    if let Some(m) = exact {
        return Ok(m);
    }
    match prefixed.len() {
        1 => Ok(prefixed.remove(0)),
        0 => Err(Error::InvalidInput {
            reason: format!(
                "no message {:?} in snapshot (give a Graph message id, a unique prefix of 6+ characters, or an internetMessageId)",
                sanitize_line(wanted)
            ),
        }),
        _ => Err(Error::InvalidInput {
            reason: format!(
                "message prefix {:?} matches several messages; give more characters",
                sanitize_line(wanted)
            ),
        }),
    }
}

/// The folder's path joined with `/` (display name when the path is empty).
pub fn folder_path(f: &FolderSnapshot) -> String {
    if f.folder.path.is_empty() {
        f.folder.display_name.clone()
    } else {
        f.folder.path.join("/")
    }
}

/// Whether a folder is selected by a `-f` filter: the full path (`Inbox/Projects`) or a
/// bare folder name, case-insensitive; subfolders of a match are selected too.
pub fn folder_selected(f: &FolderSnapshot, filter: &str) -> bool {
    path_selected(&f.folder.path, &f.folder.display_name, filter)
}

/// [`folder_selected`] for any folder given by its path (names from the root) and display
/// name (used when the path is empty) — a snapshot's folder or one listed from the source.
pub fn path_selected(path: &[String], display_name: &str, filter: &str) -> bool {
    let filter = filter.trim().trim_matches('/').to_lowercase();
    if filter.is_empty() {
        return true;
    }
    let path: Vec<String> = if path.is_empty() {
        vec![display_name.to_lowercase()]
    } else {
        path.iter().map(|p| p.to_lowercase()).collect()
    };
    let wanted: Vec<&str> = filter.split('/').collect();
    if wanted.len() == 1 {
        return path.iter().any(|p| *p == wanted[0]);
    }
    path.len() >= wanted.len() && path.iter().zip(&wanted).all(|(a, b)| a == b)
}

/// Refuse `-f` filters that select no folder, as [`Error::InvalidInput`] (a usage error)
/// naming the near matches, so a misspelled folder (`Inbx`) never passes as "0 messages"
/// or "fully captured". `folders` gives each folder's path and display name. The one
/// check behind `backup -f`, `list -f`, `save -f` and `restore -f`.
pub fn check_folder_filters<'a, I>(filters: &[String], folders: I) -> Result<()>
where
    I: IntoIterator<Item = (&'a [String], &'a str)>,
{
    let folders: Vec<(&[String], &str)> = folders.into_iter().collect();
    for filter in filters {
        if folders
            .iter()
            .any(|(path, name)| path_selected(path, name, filter))
        {
            continue;
        }
        let paths: Vec<String> = folders
            .iter()
            .map(|(path, name)| {
                if path.is_empty() {
                    (*name).to_owned()
                } else {
                    path.join("/")
                }
            })
            .collect();
        let near = near_matches(filter, &paths);
        let shown = sanitize_line(filter.trim());
        let reason = if near.is_empty() {
            let mut known: Vec<&str> = paths.iter().map(String::as_str).collect();
            known.sort_unstable();
            let more = known.len().saturating_sub(12);
            known.truncate(12);
            format!(
                "no folder matches {shown:?} (folders: {}{})",
                sanitize_line(&known.join(", ")),
                if more > 0 {
                    format!(", and {more} more")
                } else {
                    String::new()
                }
            )
        } else {
            format!(
                "no folder matches {shown:?}; did you mean {}?",
                sanitize_line(&near.join(", "))
            )
        };
        return Err(Error::InvalidInput { reason });
    }
    Ok(())
}

/// Folder paths close to a filter: same leaf or path up to a few edits (case-insensitive),
/// or containing it; nearest first, at most five.
fn near_matches(filter: &str, paths: &[String]) -> Vec<String> {
    let want = filter.trim().trim_matches('/').to_lowercase();
    let budget = (want.chars().count() / 3).clamp(1, 3);
    let mut scored: Vec<(usize, &String)> = paths
        .iter()
        .filter_map(|p| {
            let full = p.to_lowercase();
            let leaf = full.rsplit('/').next().unwrap_or(&full).to_owned();
            let d = edit_distance(&want, &full).min(edit_distance(&want, &leaf));
            if d <= budget {
                Some((d, p))
            } else if !want.is_empty() && (full.contains(&want) || want.contains(&leaf)) {
                Some((budget + 1, p))
            } else {
                None
            }
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(5).map(|(_, p)| p.clone()).collect()
}

/// Levenshtein distance over characters (folder names are short; written out here rather
/// than pulled in as a dependency for one function).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = substitution.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// [`check_folder_filters`] against a snapshot's folders.
pub fn check_snapshot_folders(record: &SnapshotRecord, filters: &[String]) -> Result<()> {
    check_folder_filters(
        filters,
        record
            .folders
            .iter()
            .map(|f| (f.folder.path.as_slice(), f.folder.display_name.as_str())),
    )
}

// ----- terminal safety -------------------------------------------------------------------

/// Make an untrusted single-line string (subject, address, folder name) safe to print:
/// control characters (C0, C1, DEL — which carry terminal escape sequences), line breaks
/// and bidirectional overrides are replaced with `U+FFFD`.
pub fn sanitize_line(s: &str) -> String {
    s.chars()
        .map(|c| if is_unsafe_char(c) { '\u{FFFD}' } else { c })
        .collect()
}

/// Make untrusted multi-line text (a message body) safe to print: like [`sanitize_line`]
/// but keeps `\n` and `\t`; `\r` is dropped.
pub fn sanitize_text(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '\r')
        .map(|c| {
            if c == '\n' || c == '\t' || !is_unsafe_char(c) {
                c
            } else {
                '\u{FFFD}'
            }
        })
        .collect()
}

fn is_unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

// ----- shared repository walks ----------------------------------------------------------

/// The chunk ids behind a content id (empty unless it is chunked): GC, stats and verify
/// count chunks as blobs of their own.
pub(crate) async fn chunk_ids(repo: &Repository, id: &ContentId) -> Result<Vec<ContentId>> {
    repo.chunk_ids(id).await
}

/// Encrypted bytes and packs behind a set of content ids (chunks included), each blob
/// counted once.
#[derive(Debug, Default)]
pub(crate) struct Footprint {
    pub(crate) blobs: HashSet<ContentId>,
    pub(crate) packs: HashSet<PackId>,
    pub(crate) bytes: u64,
}

impl Footprint {
    pub(crate) async fn add(&mut self, repo: &Repository, id: &ContentId) -> Result<()> {
        if !self.blobs.insert(*id) {
            return Ok(());
        }
        let loc = repo.locate(id).await?;
        self.bytes += u64::from(loc.length);
        self.packs.insert(loc.pack);
        if loc.kind == BlobKind::ChunkList {
            for c in chunk_ids(repo, id).await? {
                if self.blobs.insert(c) {
                    let cl = repo.locate(&c).await?;
                    self.bytes += u64::from(cl.length);
                    self.packs.insert(cl.pack);
                }
            }
        }
        Ok(())
    }
}

// ----- list: mailboxes -------------------------------------------------------------------

/// One backed-up mailbox (`atlas list`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MailboxEntry {
    /// Address (untrusted for printing: pass through [`sanitize_line`]).
    pub mailbox: String,
    /// Number of snapshots.
    pub snapshots: usize,
    /// Start of the newest snapshot.
    pub last_backup: Option<DateTime<Utc>>,
    /// Newest snapshot id.
    pub latest_snapshot: Option<SnapshotId>,
    /// Status of the newest snapshot.
    pub latest_status: Option<SnapshotStatus>,
    /// Messages in the newest snapshot.
    pub items: u64,
    /// Logical size of the newest snapshot: the sum of its raw MIME sizes.
    pub logical_bytes: u64,
    /// Physical size of the newest snapshot: encrypted, compressed bytes of every blob it
    /// references (content shared with other mailboxes is counted for each of them).
    pub physical_bytes: u64,
}

/// Something a listing could not read. Listings go on past damage: everything readable is
/// listed, and each object that is not is named here (`atlas verify` says more, `atlas
/// repair` heals it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Unreadable {
    /// What it is (e.g. `snapshot <id>`, `folder Inbox of snapshot <id>`).
    pub what: String,
    /// Store key of the object, when known.
    pub object: Option<String>,
    /// What is wrong.
    pub error: String,
}

impl Unreadable {
    fn new(what: impl Into<String>, error: &Error) -> Self {
        Self {
            what: what.into(),
            object: error_object(error),
            error: error.to_string(),
        }
    }
}

/// The store key an error names, if any.
fn error_object(e: &Error) -> Option<String> {
    match e {
        Error::Corrupt { key, .. }
        | Error::AuthenticationFailed { key }
        | Error::Truncated { key, .. }
        | Error::Missing { key }
        | Error::ChecksumMismatch { key, .. } => Some(key.clone()),
        _ => None,
    }
}

/// Damage a listing reports and goes on past (as opposed to an unreachable store).
fn is_damage(e: &Error) -> bool {
    e.is_integrity_failure() || matches!(e, Error::Missing { .. } | Error::ContentNotFound { .. })
}

/// `atlas list`: the mailboxes, and what could not be read.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MailboxListing {
    /// Every mailbox with snapshots, sorted by address.
    pub mailboxes: Vec<MailboxEntry>,
    /// What could not be read (listed around it).
    pub unreadable: Vec<Unreadable>,
}

/// Every mailbox with snapshots, sorted by address; see [`list_mailboxes_report`], whose
/// `unreadable` part this drops.
pub async fn list_mailboxes(repo: &Repository) -> Result<Vec<MailboxEntry>> {
    Ok(list_mailboxes_report(repo).await?.mailboxes)
}

/// Every mailbox with snapshots, sorted by address. Opens one mailbox record and the newest
/// snapshot (record and folder lists) per mailbox; older snapshots are counted from key
/// names only. Damage does not stop the listing: a mailbox whose record is unreadable is
/// listed under the address its snapshots name; a newest snapshot or folder list that
/// cannot be read leaves its counts out; each is named in `unreadable`.
pub async fn list_mailboxes_report(repo: &Repository) -> Result<MailboxListing> {
    let by_name = repo.snapshots_by_mailbox().await?;
    let (mut mailboxes, bad_records) = repo.mailbox_records().await?;
    let mut unreadable: Vec<Unreadable> = bad_records
        .iter()
        .map(|(key, e)| Unreadable {
            what: "mailbox record".into(),
            object: Some(key.clone()),
            error: e.to_string(),
        })
        .collect();
    // Snapshots whose mailbox record is missing or unreadable: the address is in their
    // records.
    let named: std::collections::HashSet<String> =
        mailboxes.iter().map(|m| repo.mailbox_key_name(m)).collect();
    let mut orphans: Vec<(&String, &Vec<crate::repo::SnapshotInfo>)> = by_name
        .iter()
        .filter(|(n, _)| !named.contains(*n))
        .collect();
    orphans.sort_by(|a, b| a.0.cmp(b.0));
    for (_, snaps) in orphans {
        let mut found = None;
        for info in snaps.iter().rev() {
            if let Ok(s) = repo.load_snapshot(info.id).await {
                found = Some(s.record.mailbox);
                break;
            }
        }
        match found {
            Some(mb) => mailboxes.push(mb),
            None => unreadable.push(Unreadable {
                what: format!(
                    "{} snapshot(s) of a mailbox whose record and snapshot records cannot be read",
                    snaps.len()
                ),
                object: None,
                error: "no readable record names the mailbox".into(),
            }),
        }
    }
    mailboxes.sort();
    let mut out = Vec::new();
    for mailbox in mailboxes {
        let snaps = by_name
            .get(&repo.mailbox_key_name(&mailbox))
            .cloned()
            .unwrap_or_default();
        let mut entry = MailboxEntry {
            mailbox: mailbox.address().to_owned(),
            snapshots: snaps.len(),
            last_backup: snaps.last().map(|s| s.started),
            latest_snapshot: snaps.last().map(|s| s.id),
            latest_status: None,
            items: 0,
            logical_bytes: 0,
            physical_bytes: 0,
        };
        if let Some(latest) = snaps.last() {
            describe_latest(repo, latest.id, &mut entry, &mut unreadable).await?;
        }
        out.push(entry);
    }
    Ok(MailboxListing {
        mailboxes: out,
        unreadable,
    })
}

/// Fill in an entry's status and sizes from its newest snapshot; damage goes to
/// `unreadable` and leaves the counts it hides out.
async fn describe_latest(
    repo: &Repository,
    latest: SnapshotId,
    entry: &mut MailboxEntry,
    unreadable: &mut Vec<Unreadable>,
) -> Result<()> {
    let snap = match repo.load_snapshot(latest).await {
        Ok(snap) => snap,
        Err(e) if is_damage(&e) => {
            unreadable.push(Unreadable::new(format!("snapshot {latest}"), &e));
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    entry.latest_status = Some(snap.record.status);
    let mut fp = Footprint::default();
    for f in &snap.record.folders {
        let what = || format!("folder {} of snapshot {latest}", folder_path(f));
        let listed = async {
            fp.add(repo, &f.items).await?;
            let mut list = repo.item_list(&f.items);
            while let Some((piece, items)) = list.next_piece().await? {
                fp.add(repo, &piece).await?;
                for m in items {
                    entry.items += 1;
                    entry.logical_bytes += m.mime_size;
                    for c in m.content_ids() {
                        if let Err(e) = fp.add(repo, &c).await {
                            if !is_damage(&e) {
                                return Err(e);
                            }
                            unreadable
                                .push(Unreadable::new(format!("item {} in {}", m.id, what()), &e));
                        }
                    }
                }
            }
            Ok(())
        }
        .await;
        match listed {
            Ok(()) => {}
            Err(e) if is_damage(&e) => unreadable.push(Unreadable::new(what(), &e)),
            Err(e) => return Err(e),
        }
    }
    entry.physical_bytes = fp.bytes;
    Ok(())
}

// ----- list -m: snapshots ------------------------------------------------------------------

/// One snapshot of a mailbox (`atlas list -m`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotEntry {
    /// Snapshot id.
    pub id: SnapshotId,
    /// Run start.
    pub started: DateTime<Utc>,
    /// Run end.
    pub finished: DateTime<Utc>,
    /// Complete or partial.
    pub status: SnapshotStatus,
    /// Folders.
    pub folders: usize,
    /// Messages stored (sum of the folders' stored counts; no folder list is read).
    pub items: u64,
    /// Item errors recorded by the run.
    pub errors: usize,
    /// Tool that wrote it.
    pub tool: String,
}

/// `atlas list -m`: the snapshots of a mailbox, and the records that could not be read.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotListing {
    /// Readable snapshots, newest first.
    pub snapshots: Vec<SnapshotEntry>,
    /// Snapshot records that could not be read (listed around them).
    pub unreadable: Vec<Unreadable>,
}

/// Snapshots of a mailbox, newest first; see [`list_snapshots_report`], whose
/// `unreadable` part this drops.
pub async fn list_snapshots(repo: &Repository, mailbox: &MailboxId) -> Result<Vec<SnapshotEntry>> {
    Ok(list_snapshots_report(repo, mailbox).await?.snapshots)
}

/// Snapshots of a mailbox, newest first. Records are opened concurrently; one that
/// cannot be read is named in `unreadable` and the others are listed. An unknown mailbox
/// is `InvalidInput`.
pub async fn list_snapshots_report(
    repo: &Repository,
    mailbox: &MailboxId,
) -> Result<SnapshotListing> {
    let infos = repo.list_snapshots(mailbox).await?;
    if infos.is_empty() && !repo.mailbox_records().await?.0.contains(mailbox) {
        return Err(Error::InvalidInput {
            reason: format!("mailbox {mailbox} is not in the repository"),
        });
    }
    let mut out = Vec::with_capacity(infos.len());
    let mut unreadable = Vec::new();
    let mut pending = infos.iter().rev().map(|i| i.id);
    let mut set: JoinSet<(SnapshotId, Result<Snapshot>)> = JoinSet::new();
    loop {
        while set.len() < RECORDS_IN_FLIGHT {
            let Some(id) = pending.next() else { break };
            let r = repo.clone();
            set.spawn(async move { (id, r.load_snapshot(id).await) });
        }
        let Some(joined) = set.join_next().await else {
            break;
        };
        let snap = match joined.map_err(|e| Error::task(&e))? {
            (_, Ok(snap)) => snap,
            (id, Err(e)) if is_damage(&e) => {
                unreadable.push(Unreadable::new(format!("snapshot {id}"), &e));
                continue;
            }
            (_, Err(e)) => return Err(e),
        };
        let r = &snap.record;
        out.push(SnapshotEntry {
            id: snap.id,
            started: r.started,
            finished: r.finished,
            status: r.status,
            folders: r.folders.len(),
            items: r.folders.iter().map(|f| f.stored_item_count).sum(),
            errors: r.folders.iter().map(|f| f.errors.len()).sum(),
            tool: r.tool.clone(),
        });
    }
    out.sort_by_key(|e| std::cmp::Reverse((e.started, e.id)));
    unreadable.sort_by(|a, b| a.what.cmp(&b.what));
    Ok(SnapshotListing {
        snapshots: out,
        unreadable,
    })
}

// ----- list -s: items ----------------------------------------------------------------------

/// What `atlas list -s` shows.
#[derive(Debug, Clone, Default)]
pub struct ItemListOptions {
    /// Include subjects (`-S`); otherwise `subject` is `None`.
    pub show_subjects: bool,
    /// At most this many items (the CLI's text listing passes 50 unless `--all`); `total`
    /// still counts every item.
    pub limit: Option<usize>,
    /// Skip this many items first (paging: the next page starts at `offset + limit`).
    pub offset: usize,
    /// Only folders selected by this filter (see [`folder_selected`]).
    pub folder: Option<String>,
    /// Only items of this kind (`--kind`).
    pub kind: Option<crate::model::ItemKind>,
}

/// One message of a snapshot.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemEntry {
    /// 1-based position in the listing.
    pub index: usize,
    /// Folder path.
    pub folder: String,
    /// What the item is (mail, calendar, contacts, tasks, notes, config).
    #[serde(serialize_with = "crate::model::ItemKind::serialize_name")]
    pub kind: crate::model::ItemKind,
    /// Graph message id (what `read --message` and `save --message` accept).
    pub message_id: MessageId,
    /// Received date.
    pub received: Option<DateTime<Utc>>,
    /// Raw MIME size in bytes.
    pub size: u64,
    /// Attachments recorded by the backup.
    pub attachments: u32,
    /// Subject, only with `show_subjects` (untrusted: sanitize before printing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// The items of one snapshot.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotItems {
    /// Snapshot id.
    pub snapshot: SnapshotId,
    /// Mailbox address.
    pub mailbox: String,
    /// Run start.
    pub started: DateTime<Utc>,
    /// Complete or partial.
    pub status: SnapshotStatus,
    /// Items matching the folder filter (before `offset` and `limit`).
    pub total: usize,
    /// Items skipped before the first listed one.
    pub offset: usize,
    /// The listed items.
    pub items: Vec<ItemEntry>,
    /// Folder lists that could not be read (their items are not counted).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<Unreadable>,
}

/// Messages of a snapshot in folder order. Folder lists are read one at a time and only
/// `limit` entries are kept, so memory is bounded by one folder list.
pub async fn list_items(
    repo: &Repository,
    snapshot: SnapshotId,
    opts: &ItemListOptions,
) -> Result<SnapshotItems> {
    let snap = repo.load_snapshot(snapshot).await?;
    if let Some(f) = &opts.folder {
        check_snapshot_folders(&snap.record, std::slice::from_ref(f))?;
    }
    let mut out = SnapshotItems {
        snapshot,
        mailbox: snap.record.mailbox.address().to_owned(),
        started: snap.record.started,
        status: snap.record.status,
        total: 0,
        offset: opts.offset,
        items: Vec::new(),
        unreadable: Vec::new(),
    };
    for f in &snap.record.folders {
        if opts
            .folder
            .as_deref()
            .is_some_and(|w| !folder_selected(f, w))
            || opts.kind.is_some_and(|k| f.folder.kind != k)
        {
            continue;
        }
        let path = folder_path(f);
        // Piece by piece: one piece of a large folder in memory at a time; a damaged piece
        // ends the folder's listing there.
        let mut list = repo.item_list(&f.items);
        loop {
            let items = match list.next_piece().await {
                Ok(Some((_, items))) => items,
                Ok(None) => break,
                Err(e) if is_damage(&e) => {
                    out.unreadable
                        .push(Unreadable::new(format!("folder {path}"), &e));
                    break;
                }
                Err(e) => return Err(e),
            };
            for m in items {
                out.total += 1;
                if out.total <= opts.offset || opts.limit.is_some_and(|l| out.items.len() >= l) {
                    continue;
                }
                out.items.push(ItemEntry {
                    index: out.total,
                    folder: path.clone(),
                    kind: m.kind,
                    attachments: m.attachment_count.max(u32::from(m.has_attachments)),
                    message_id: m.id,
                    received: m.received.or(m.sent),
                    size: m.mime_size,
                    subject: if opts.show_subjects { m.subject } else { None },
                });
            }
        }
    }
    Ok(out)
}

// ----- stats ---------------------------------------------------------------------------------

/// Per-folder statistics (newest snapshot of each mailbox).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FolderStats {
    /// Mailbox address.
    pub mailbox: String,
    /// Folder path.
    pub folder: String,
    /// The kind of item the folder holds.
    #[serde(serialize_with = "crate::model::ItemKind::serialize_name")]
    pub kind: crate::model::ItemKind,
    /// Items (messages in a mail folder).
    pub messages: u64,
    /// Sum of raw MIME sizes.
    pub logical_bytes: u64,
}

/// Per-month statistics of unique messages by received date (`YYYY-MM`, UTC).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MonthStats {
    /// `YYYY-MM`, or `unknown` without a date.
    pub month: String,
    /// Unique messages.
    pub messages: u64,
    /// Their raw MIME bytes.
    pub logical_bytes: u64,
}

/// `atlas stats`: how much mail there is versus what the repository stores.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsSummary {
    /// Mailboxes in scope.
    pub mailboxes: usize,
    /// Snapshots in scope.
    pub snapshots: usize,
    /// Message versions over all snapshots (a message kept by 10 snapshots counts 10).
    pub message_versions: u64,
    /// Distinct message contents.
    pub unique_messages: u64,
    /// Sum of raw MIME sizes over all snapshots: what storing every snapshot as a plain
    /// copy would cost.
    pub logical_bytes: u64,
    /// Raw MIME bytes of distinct contents (after dedup, before compression).
    pub unique_bytes: u64,
    /// Encrypted, compressed bytes of every blob the snapshots in scope need (messages,
    /// folder lists, chunks), each counted once.
    pub physical_bytes: u64,
    /// `logical_bytes / unique_bytes` (1.0 when empty).
    pub dedup_ratio: f64,
    /// `unique_bytes / physical_bytes` (1.0 when empty).
    pub compression_ratio: f64,
    /// Blobs referenced.
    pub blobs: usize,
    /// Packs holding them.
    pub packs: usize,
    /// Bytes of every pack in the repository (whole-repository stats only): the gap to
    /// `physical_bytes` is what a prune could reclaim plus pack overhead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository_pack_bytes: Option<u64>,
    /// Per folder.
    pub folders: Vec<FolderStats>,
    /// Per month.
    pub months: Vec<MonthStats>,
}

#[allow(clippy::cast_precision_loss)] // Ratios for display; exactness is not needed.
fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

/// Statistics of one mailbox (`Some`) or the whole repository. Every snapshot record in
/// scope is opened; folder lists shared between snapshots are read once.
pub async fn stats(repo: &Repository, mailbox: Option<&MailboxId>) -> Result<StatsSummary> {
    stats_of_kind(repo, mailbox, None).await
}

/// [`stats`] of the folders of one kind only (`stats --kind`): an event, contact or task
/// counts every representation stored of it (export stream and readable JSON), so the
/// sizes are what that kind costs. Without a kind, every folder.
#[allow(clippy::too_many_lines)] // One pass over snapshots; splitting it would scatter the accumulators.
pub async fn stats_of_kind(
    repo: &Repository,
    mailbox: Option<&MailboxId>,
    kind: Option<crate::model::ItemKind>,
) -> Result<StatsSummary> {
    let mailboxes = match mailbox {
        Some(m) => {
            if !repo.list_mailboxes().await?.contains(m) {
                return Err(Error::InvalidInput {
                    reason: format!("mailbox {m} is not in the repository"),
                });
            }
            vec![m.clone()]
        }
        None => repo.list_mailboxes().await?,
    };
    let mut s = StatsSummary {
        mailboxes: mailboxes.len(),
        snapshots: 0,
        message_versions: 0,
        unique_messages: 0,
        logical_bytes: 0,
        unique_bytes: 0,
        physical_bytes: 0,
        dedup_ratio: 1.0,
        compression_ratio: 1.0,
        blobs: 0,
        packs: 0,
        repository_pack_bytes: None,
        folders: Vec::new(),
        months: Vec::new(),
    };
    let mut fp = Footprint::default();
    let mut unique: HashSet<ContentId> = HashSet::new();
    let mut months: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    // Per folder list id: (messages, logical bytes), so shared lists are read once.
    let mut list_totals: HashMap<ContentId, (u64, u64)> = HashMap::new();
    for mb in &mailboxes {
        let infos = repo.list_snapshots(mb).await?;
        s.snapshots += infos.len();
        for (n, info) in infos.iter().enumerate() {
            let snap = repo.load_snapshot(info.id).await?;
            let newest = n + 1 == infos.len();
            for f in &snap.record.folders {
                if kind.is_some_and(|k| k != f.folder.kind) {
                    continue;
                }
                let totals = if let Some(t) = list_totals.get(&f.items) {
                    *t
                } else {
                    fp.add(repo, &f.items).await?;
                    let mut t = (0, 0);
                    let mut list = repo.item_list(&f.items);
                    while let Some((piece, items)) = list.next_piece().await? {
                        fp.add(repo, &piece).await?;
                        for m in items {
                            // Every stored representation: MIME, export stream, readable JSON.
                            let size: u64 = m.contents().map(|c| c.size).sum();
                            t.0 += 1;
                            t.1 += size;
                            if unique.insert(m.mime) {
                                s.unique_bytes += m.mime_size;
                                for c in m.content_ids() {
                                    fp.add(repo, &c).await?;
                                }
                                for c in &m.content {
                                    s.unique_bytes += c.size;
                                }
                                // Mail by when it arrived; other kinds by their last change.
                                let when = if m.kind.is_mail() {
                                    m.received.or(m.sent)
                                } else {
                                    m.last_modified
                                };
                                let month = when.map_or_else(
                                    || "unknown".into(),
                                    |d| d.format("%Y-%m").to_string(),
                                );
                                let e = months.entry(month).or_default();
                                e.0 += 1;
                                e.1 += size;
                            }
                        }
                    }
                    list_totals.insert(f.items, t);
                    t
                };
                s.message_versions += totals.0;
                s.logical_bytes += totals.1;
                if newest {
                    s.folders.push(FolderStats {
                        mailbox: mb.address().to_owned(),
                        folder: folder_path(f),
                        kind: f.folder.kind,
                        messages: totals.0,
                        logical_bytes: totals.1,
                    });
                }
            }
        }
    }
    s.unique_messages = unique.len() as u64;
    s.physical_bytes = fp.bytes;
    s.blobs = fp.blobs.len();
    s.packs = fp.packs.len();
    s.dedup_ratio = ratio(s.logical_bytes, s.unique_bytes);
    s.compression_ratio = ratio(s.unique_bytes, s.physical_bytes);
    if mailbox.is_none() {
        s.repository_pack_bytes = Some(repo.pack_sizes().await?.values().sum());
    }
    s.months = months
        .into_iter()
        .map(|(month, (messages, logical_bytes))| MonthStats {
            month,
            messages,
            logical_bytes,
        })
        .collect();
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FolderId, FolderRecord};

    fn folder(path: &[&str]) -> FolderSnapshot {
        FolderSnapshot {
            folder: FolderRecord {
                id: FolderId::new("f"),
                parent_id: None,
                display_name: path.last().copied().unwrap_or("").into(),
                path: path.iter().map(|s| (*s).to_owned()).collect(),
                well_known_name: None,
                total_item_count: None,
                kind: crate::model::ItemKind::Mail,
            },
            delta_link: None,
            item_delta_link: None,
            graph_item_count: None,
            stored_item_count: 0,
            items: ContentId::from_bytes([0; 32]),
            item_pieces: None,
            errors: Vec::new(),
        }
    }

    #[test]
    fn folder_filter_by_path_name_and_subfolder() {
        let f = folder(&["Inbox", "Projects", "Atlas"]);
        assert!(folder_selected(&f, "inbox"));
        assert!(folder_selected(&f, "Projects"));
        assert!(folder_selected(&f, "Inbox/Projects"));
        assert!(folder_selected(&f, "/inbox/projects/atlas/"));
        assert!(!folder_selected(&f, "Projects/Atlas"));
        assert!(!folder_selected(&f, "Sent Items"));
        assert!(!folder_selected(&folder(&["Inbox"]), "Inbox/Projects"));
    }

    fn err_text(r: Result<()>) -> String {
        match r {
            Err(Error::InvalidInput { reason }) => reason,
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }

    fn record(fs: &[FolderSnapshot]) -> Vec<(&[String], &str)> {
        fs.iter()
            .map(|f| (f.folder.path.as_slice(), f.folder.display_name.as_str()))
            .collect()
    }

    /// `save -f Inbx`, `list -f Inbx` said "0 messages" and exited 0.
    #[test]
    fn unknown_folder_filter_is_refused_with_near_matches() {
        let folders = [
            folder(&["Inbox"]),
            folder(&["Inbox", "Projects"]),
            folder(&["Sent Items"]),
            folder(&["Archive"]),
        ];
        let check = |filter: &str| check_folder_filters(&[filter.to_owned()], record(&folders));
        assert!(check("inbox").is_ok());
        assert!(check("Inbox/Projects").is_ok());
        let text = err_text(check("Inbx"));
        assert!(text.contains("\"Inbx\""), "{text}");
        assert!(text.contains("did you mean Inbox"), "{text}");
        let text = err_text(check("sent"));
        assert!(text.contains("Sent Items"), "{text}");
        let text = err_text(check("Zzzzzzzz"));
        assert!(
            text.contains("folders: Archive, Inbox, Inbox/Projects, Sent Items"),
            "{text}"
        );
        // Every filter must match; the first that does not is named.
        let two = ["Inbox".to_owned(), "Projcts".to_owned()];
        let text = err_text(check_folder_filters(&two, record(&folders)));
        assert!(
            text.contains("Projcts") && text.contains("Inbox/Projects"),
            "{text}"
        );
    }

    #[test]
    fn edit_distance_counts_insertions_deletions_substitutions() {
        assert_eq!(edit_distance("inbx", "inbox"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn sanitize_removes_escapes_and_bidi() {
        assert_eq!(
            sanitize_line("a\x1b[31mred\u{202E}x\ny"),
            "a\u{FFFD}[31mred\u{FFFD}x\u{FFFD}y"
        );
        assert_eq!(
            sanitize_text("l1\r\nl2\t\x07\u{9b}"),
            "l1\nl2\t\u{FFFD}\u{FFFD}"
        );
        assert_eq!(sanitize_line("Héllo wörld"), "Héllo wörld");
    }
}
