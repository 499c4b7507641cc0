//! Backup of one mailbox: folder tree, per-folder delta, raw MIME into the repository.
//!
//! The six safety rules of SPEC §5 are enforced here:
//!
//! 1. A folder's delta link is recorded only when the whole round it covers was stored;
//!    an interrupted folder keeps its previous link (so the next run replays the changes,
//!    which costs delta pages but no downloads: known ids are reused).
//! 2. A soft cancel finishes the items in flight and commits a *partial* snapshot with
//!    exactly what was stored (unvisited folders carry their previous state over); a hard
//!    cancel stops at once and commits nothing (the next run resumes from the last
//!    committed links; already-written packs are at most orphans).
//! 3. An expired delta link (`SourceError::DeltaExpired`) restarts that folder as a full
//!    enumeration, with a warning.
//! 4. One bad item is recorded as an [`ItemError`] and keeps its previous version if there
//!    was one; the folder's delta link is then *not* advanced, so the item is retried on the
//!    next run.
//! 5. Every folder ends in a completeness line (Graph's count vs. stored); any gap or item
//!    error makes the summary `partial`.
//! 6. The repository lease refuses a second concurrent writer of the same mailbox.
//!
//! Message content is immutable in Exchange except for drafts, so an item that changed but
//! is already known (same immutable id, not a draft, or a draft with the same change key)
//! costs a metadata update, not a download. Moves between folders are caught the same way:
//! the immutable id is found in the previous snapshot's other folder.
//!
//! A backup of several mailboxes (the tenant, or named ones) is planned and executed
//! through [`BackupPlan`] ([`plan`] → [`execute`]): selection, folder filters, limits, the
//! skip-versus-fail rule and Object Lock live there. [`backup_mailbox`] and
//! [`backup_mailboxes`] are the runs it is built on.

mod plan;

pub use plan::{
    BackupPlan, BackupReport, BackupRequest, MailboxSelection, ShardShare, SkipReason, Skipped,
    SnapshotLock, Verdict, execute, kind_selected, plan, plan_for,
};

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::task::JoinSet;
use tracing::Instrument as _;

use crate::error::Result;
use crate::model::{
    ContentKind, ContentRef, FolderId, FolderSnapshot, ItemError, ItemId, ItemMeta, MailboxId,
    SnapshotId, SnapshotRecord, SnapshotStatus,
};
use crate::ports::mail::{join_links, split_links};
use crate::ports::{
    Clock, ContentStream, DeltaCursor, DeltaNext, Event, FolderListing, FolderOptions,
    ItemMetadata, MailSource, Reporter, SourceError, SourceFolder, SourceItem, SourceMailbox,
};
use crate::repo::{BackupSession, BlobKind, Grant, MemoryBudget, PackWriter, Repository, RunLease};

use super::catalog::path_selected;
use super::{Cancel, Window};

/// What to back up and how.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Folder filters (full path like `Inbox/Projects` or a bare name), case-insensitive;
    /// subfolders of a match are included. Empty = every folder. Folders not selected keep
    /// their previous state in the new snapshot.
    pub folders: Vec<String>,
    /// Ignore saved delta links and enumerate every folder again.
    pub full: bool,
    /// Delta page size (`Prefer: odata.maxpagesize`).
    pub page_size: u32,
    /// Hidden folders / Recoverable Items.
    pub folder_options: FolderOptions,
    /// Messages downloaded concurrently for one mailbox (Graph allows 4 concurrent requests
    /// per mailbox).
    pub downloads_in_flight: usize,
    /// Who holds the lease (host, pid), shown to a concurrent run that is refused.
    pub lease_owner: String,
    /// Tool name and version recorded in the snapshot.
    pub tool: String,
    /// Object Lock retention for everything the run writes (S3 with Object Lock only); data
    /// reused from older snapshots is extended afterwards by `repo::retention::apply`.
    pub retention: Option<crate::ports::Retention>,
}

impl Default for BackupOptions {
    fn default() -> Self {
        Self {
            folders: Vec::new(),
            full: false,
            page_size: 100,
            folder_options: FolderOptions::default(),
            downloads_in_flight: 4,
            lease_owner: "atlas".into(),
            tool: "atlas".into(),
            retention: None,
        }
    }
}

/// One line of the completeness report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FolderReport {
    /// Folder path joined with `/`.
    pub path: String,
    /// The kind of item the folder holds.
    #[serde(serialize_with = "crate::model::ItemKind::serialize_name")]
    pub kind: crate::model::ItemKind,
    /// Items Graph reports in the folder (`totalItemCount`).
    pub graph_count: u64,
    /// Items in the snapshot for this folder.
    pub stored: u64,
    /// Items that failed (ids and reasons, never subjects).
    pub errors: Vec<ItemError>,
    /// Whether the folder's delta round finished (its link was advanced).
    pub finished: bool,
    /// Whether this folder was visited this run (false: carried over unchanged).
    pub visited: bool,
    /// `graph_count` is the last count the source knew, not a current one
    /// ([`SourceFolder::stale_count`](crate::ports::SourceFolder)): not compared.
    #[serde(skip)]
    pub count_stale: bool,
}

impl FolderReport {
    /// A folder whose delta round did not run this time (not selected, or the run was
    /// stopped first): `visited` says whether it counts against completeness.
    fn not_run(folder: &SourceFolder, stored: u64, errors: Vec<ItemError>, visited: bool) -> Self {
        Self {
            path: folder.path.join("/"),
            kind: folder.kind,
            graph_count: folder.total_items,
            stored,
            errors,
            finished: false,
            visited,
            count_stale: folder.stale_count,
        }
    }

    /// A folder is complete when its round finished, nothing failed and the counts agree
    /// (when the source's count is a current one).
    pub fn is_complete(&self) -> bool {
        !self.visited
            || (self.finished
                && self.errors.is_empty()
                && (self.count_stale || self.stored >= self.graph_count))
    }
}

/// What one mailbox run did.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupSummary {
    /// Mailbox address.
    pub mailbox: String,
    /// The committed snapshot (none when a hard cancel stopped the run).
    pub snapshot: Option<SnapshotId>,
    /// Complete or partial.
    pub complete: bool,
    /// Messages downloaded and stored.
    pub downloaded: u64,
    /// Messages whose content was already stored (metadata updated only).
    pub reused: u64,
    /// Messages removed since the previous snapshot.
    pub removed: u64,
    /// Export streams of mail messages stored this run (`--fidelity full`): new and
    /// changed messages, and messages backed up before without one.
    pub mail_streams: u64,
    /// Bytes of MIME downloaded.
    pub bytes_downloaded: u64,
    /// New bytes written to the repository (after dedup and compression).
    pub bytes_stored: u64,
    /// Folders whose delta link had expired and were enumerated again.
    pub resynced_folders: u64,
    /// Per-folder completeness.
    pub folders: Vec<FolderReport>,
    /// Whether the run was cancelled.
    pub cancelled: bool,
}

/// Copy the delta metadata of `m` onto a stored record (content fields stay).
fn apply_metadata(meta: &mut ItemMeta, m: &SourceItem, folder: &FolderId) {
    meta.kind = m.kind;
    match &m.metadata {
        ItemMetadata::Mail(mail) => {
            meta.internet_message_id = mail
                .internet_message_id
                .clone()
                .or(meta.internet_message_id.take());
            meta.conversation_id = mail.conversation_id.clone().or(meta.conversation_id.take());
            meta.subject = mail.subject.clone().or(meta.subject.take());
            if let Some(from) = &mail.from {
                meta.from = Some(from.clone());
            }
            meta.received = mail.received.or(meta.received);
            meta.sent = mail.sent.or(meta.sent);
            meta.is_read = mail.is_read;
            meta.flag_status = mail.flag;
            meta.importance = mail.importance;
            meta.categories.clone_from(&mail.categories);
            meta.has_attachments = mail.has_attachments;
            meta.is_draft = mail.is_draft;
        }
        ItemMetadata::Other { title } => {
            meta.subject = title.clone().or(meta.subject.take());
        }
    }
    meta.change_key = m.change_key.clone().or(meta.change_key.take());
    meta.last_modified = m.last_modified.or(meta.last_modified);
    meta.parent_folder_id = folder.clone();
}

/// A new record for an item whose content was just stored (`primary` first).
fn new_meta(
    m: &SourceItem,
    folder: &FolderId,
    primary: ContentRef,
    more: Vec<ContentRef>,
) -> ItemMeta {
    let mut meta = ItemMeta {
        id: m.id.clone(),
        internet_message_id: None,
        conversation_id: None,
        subject: None,
        from: None,
        received: None,
        sent: None,
        size: Some(primary.size),
        is_read: false,
        flag_status: crate::model::FlagStatus::NotFlagged,
        importance: crate::model::Importance::Normal,
        categories: Vec::new(),
        has_attachments: false,
        attachment_count: 0,
        is_draft: false,
        change_key: None,
        last_modified: None,
        parent_folder_id: folder.clone(),
        mime: primary.id,
        mime_size: primary.size,
        mime_sha256: primary.sha256,
        kind: m.kind,
        content: more,
    };
    apply_metadata(&mut meta, m, folder);
    meta
}

/// Whether the stored content of `known` can stand for the item delta just reported: a
/// kind whose content never changes once written (sent mail) is reused by id; anything
/// else only with the same change key.
fn content_reusable(known: &ItemMeta, m: &SourceItem) -> bool {
    if known.kind == m.kind
        && m.kind.content_is_immutable(m.is_draft())
        && m.kind.content_is_immutable(known.is_draft)
    {
        return true;
    }
    known.kind == m.kind && known.change_key.is_some() && known.change_key == m.change_key
}

/// Take the export stream out of a mail item's representations (`--fidelity full`):
/// the MIME is downloaded item by item, the streams afterwards in batches. Returns the
/// item as a request for its stream alone.
fn split_mail_stream(m: &mut SourceItem) -> Option<SourceItem> {
    if !m.kind.is_mail() || !m.contents.contains(&ContentKind::Export) {
        return None;
    }
    m.contents.retain(|c| *c != ContentKind::Export);
    let mut stream = m.clone();
    stream.contents = vec![ContentKind::Export];
    Some(stream)
}

/// Whether the stream stored with `known` is the item delta just reported: the stream
/// carries every property of the message, so any change (a read flag, a category, a
/// move) makes it stale, and only an equal change key proves it current.
fn stream_current(known: &ItemMeta, m: &SourceItem) -> bool {
    known.content_of(ContentKind::Export).is_some()
        && known.change_key.is_some()
        && known.change_key == m.change_key
}

/// The state carried from the previous snapshot.
struct Previous {
    folders: HashMap<FolderId, FolderSnapshot>,
    /// Every item of the previous snapshot by id (for moves between folders).
    all: HashMap<ItemId, ItemMeta>,
    items_by_folder: HashMap<FolderId, Vec<ItemMeta>>,
}

async fn load_previous(repo: &Repository, mailbox: &crate::model::MailboxId) -> Result<Previous> {
    let mut prev = Previous {
        folders: HashMap::new(),
        all: HashMap::new(),
        items_by_folder: HashMap::new(),
    };
    if let Some(snap) = repo.latest_snapshot(mailbox).await? {
        for f in snap.record.folders {
            let items = repo.load_folder_items(&f.items).await?;
            for m in &items {
                prev.all.insert(m.id.clone(), m.clone());
            }
            prev.items_by_folder.insert(f.folder.id.clone(), items);
            prev.folders.insert(f.folder.id.clone(), f);
        }
    }
    Ok(prev)
}

/// Content up to this size is downloaded into memory (a few items at a time); larger
/// content is streamed into the repository chunk by chunk, so memory stays bounded per
/// worker even for a 150 MB message.
const IN_MEMORY_LIMIT: usize = 8 << 20;

/// One downloaded representation: whole, or its first bytes plus the rest of the source
/// stream.
enum Downloaded {
    Whole(Bytes),
    Large {
        head: Bytes,
        rest: Box<dyn ContentStream>,
    },
}

/// What a download draws from the memory budget before its first byte: a typical
/// message fits; a larger one grows its grant as bytes arrive (never waiting then).
const DOWNLOAD_ESTIMATE: u64 = 256 << 10;

/// The representations of one item and the memory budget they hold until stored.
type Download = (Vec<(ContentKind, Downloaded)>, Grant);

/// Download every representation the item offers, each stopping at [`IN_MEMORY_LIMIT`].
/// Waits for [`DOWNLOAD_ESTIMATE`] of the tenant's memory budget first.
async fn download(
    source: Arc<dyn MailSource>,
    mailbox: SourceMailbox,
    item: SourceItem,
    budget: MemoryBudget,
) -> std::result::Result<Download, SourceError> {
    let mut grant = budget.acquire(DOWNLOAD_ESTIMATE).await;
    let mut held = 0u64;
    let mut out = Vec::with_capacity(item.contents.len());
    for &kind in &item.contents {
        let part = download_one(&*source, &mailbox, &item, kind, &mut grant, &mut held).await?;
        out.push((kind, part));
    }
    if out.is_empty() {
        return Err(SourceError::Item(format!(
            "the source offers no content for item {}",
            item.id
        )));
    }
    grant.shrink_to(held);
    Ok((out, grant))
}

/// What downloading one item gave: its representations, or why it failed.
type ItemDownload = (SourceItem, std::result::Result<Download, SourceError>);

/// Download a batch of items whose primary representation the source serves several at
/// a time (Graph's `exportItems`: one request for up to 20 items): the primary content in
/// one call, every further representation item by item. A failure of the whole call is
/// each item's failure, except the ones that end the run (sign-in, permission).
async fn download_batch(
    source: Arc<dyn MailSource>,
    mailbox: SourceMailbox,
    items: Vec<SourceItem>,
    budget: MemoryBudget,
) -> Vec<ItemDownload> {
    let Some(primary) = items.first().and_then(|i| i.contents.first().copied()) else {
        return Vec::new();
    };
    // One estimate for the whole request; what arrives is then accounted item by item
    // (growing never waits: the bytes are already here).
    let admission = budget.acquire(DOWNLOAD_ESTIMATE).await;
    let answers = match source.fetch_batch(&mailbox, &items, primary).await {
        Ok(a) if a.len() == items.len() => a.into_iter().map(Ok).collect::<Vec<_>>(),
        Ok(a) => {
            let reason = format!(
                "the source answered {} of {} items of a batch",
                a.len(),
                items.len()
            );
            items
                .iter()
                .map(|_| Err(SourceError::Item(reason.clone())))
                .collect()
        }
        Err(e @ (SourceError::Auth(_) | SourceError::PermissionDenied { .. })) => {
            let mut e = Some(e);
            items
                .iter()
                .map(|i| {
                    Err(e.take().unwrap_or_else(|| {
                        SourceError::Item(format!("batch of item {} failed", i.id))
                    }))
                })
                .collect()
        }
        Err(e) => {
            let reason = e.to_string();
            items
                .iter()
                .map(|_| Err(SourceError::Item(reason.clone())))
                .collect()
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (item, answer) in items.into_iter().zip(answers) {
        let result = async {
            let stream = answer??;
            let mut grant = budget.empty();
            let mut held = stream.len() as u64;
            grant.grow(held);
            let mut parts = vec![(primary, Downloaded::Whole(stream))];
            for &kind in item.contents.iter().skip(1) {
                let part =
                    download_one(&*source, &mailbox, &item, kind, &mut grant, &mut held).await?;
                parts.push((kind, part));
            }
            grant.shrink_to(held);
            Ok((parts, grant))
        }
        .await;
        out.push((item, result));
    }
    drop(admission);
    out
}

/// Download one representation of an item, stopping at [`IN_MEMORY_LIMIT`].
/// The bytes held are accounted in `grant` as they arrive (`held`: what the item's
/// earlier representations hold).
async fn download_one(
    source: &dyn MailSource,
    mailbox: &SourceMailbox,
    item: &SourceItem,
    kind: ContentKind,
    grant: &mut Grant,
    held: &mut u64,
) -> std::result::Result<Downloaded, SourceError> {
    let mut stream = source.open_content(mailbox, item, kind).await?;
    let mut buf = BytesMut::new();
    let mut large = None;
    while let Some(chunk) = stream.next_chunk().await? {
        buf.extend_from_slice(&chunk);
        let now = *held + buf.capacity() as u64;
        if now > grant.bytes() {
            grant.grow(now - grant.bytes());
        }
        if buf.len() > IN_MEMORY_LIMIT {
            large = Some(stream);
            break;
        }
    }
    *held += buf.capacity() as u64;
    Ok(match large {
        Some(rest) => Downloaded::Large {
            head: buf.freeze(),
            rest,
        },
        None => Downloaded::Whole(buf.freeze()),
    })
}

/// The title of an item of another kind, from its readable JSON: an event's `subject`,
/// a contact's `displayName`, a task's `title` — what `list` shows in a message's place.
fn title_of(json: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    ["subject", "displayName", "title"]
        .iter()
        .find_map(|k| v.get(*k).and_then(serde_json::Value::as_str))
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

/// The repository blob kind a representation is stored as (docs/FORMAT.md §6.1).
fn blob_kind(kind: ContentKind) -> BlobKind {
    match kind {
        ContentKind::Mime => BlobKind::Mime,
        // Opaque item bytes kept apart from any MIME, like an attachment's.
        ContentKind::Export => BlobKind::Attachment,
        ContentKind::Json => BlobKind::Metadata,
    }
}

/// File and inline attachments in a message (for `list` and `stats`), counted from the
/// parts' `Content-Disposition` headers. A full MIME parse would decode every attachment
/// just to count it — that was a quarter of backup's CPU time. Header blocks are the
/// message's own and each one after a boundary line (`--…`), up to the blank line that
/// ends it; body lines are skipped with a vectorised search for the next line that
/// starts with `--` (base64, the bulk of a message with attachments, never holds a `-`),
/// so only header lines are looked at one by one: walking every line of the body was
/// still 9 % of backup's CPU (2026-12-05 profile).
fn count_attachments(mime: &[u8]) -> u32 {
    const NAME: &[u8] = b"content-disposition:";
    let mut count = 0u32;
    let mut at = 0;
    loop {
        // A header block: `at` is the start of its first line.
        let blank = loop {
            let eol = memchr::memchr(b'\n', &mime[at..]).map_or(mime.len(), |i| at + i);
            let line = &mime[at..eol];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                break eol;
            }
            if line.len() >= NAME.len() && line[..NAME.len()].eq_ignore_ascii_case(NAME) {
                let value = line[NAME.len()..].trim_ascii_start();
                let kind =
                    |k: &[u8]| value.len() >= k.len() && value[..k.len()].eq_ignore_ascii_case(k);
                if kind(b"attachment") || kind(b"inline") {
                    count = count.saturating_add(1);
                }
            }
            if eol >= mime.len() {
                return count;
            }
            at = eol + 1;
        };
        // The body: up to the next line starting with `--`, whose next line starts the
        // next header block.
        let Some(i) = memchr::memmem::find(&mime[blank..], b"\n--") else {
            return count;
        };
        let boundary = blank + i + 1;
        let Some(eol) = memchr::memchr(b'\n', &mime[boundary..]) else {
            return count;
        };
        at = boundary + eol + 1;
    }
}

/// What storing one downloaded representation produced.
struct Stored {
    content: ContentRef,
    /// Attachments counted in MIME (0 for other representations).
    attachments: u32,
    /// Encrypted bytes the put added to the repository (0 when deduplicated).
    added_bytes: u64,
}

impl Stored {
    fn new(kind: ContentKind, blob: crate::repo::StoredBlob, attachments: u32) -> Self {
        Self {
            content: ContentRef {
                kind,
                id: blob.id,
                size: blob.plain_len,
                sha256: blob.sha256_hex(),
            },
            attachments,
            added_bytes: blob.stored_len,
        }
    }
}

/// Store one downloaded representation; `Ok(Err(..))` is a per-item failure of the source
/// stream. The repository computes the content id and the checksum in one pass: nothing
/// here hashes content.
async fn store_download(
    session: &mut BackupSession,
    kind: ContentKind,
    downloaded: Downloaded,
    has_attachments: bool,
) -> Result<std::result::Result<Stored, SourceError>> {
    let is_mime = kind == ContentKind::Mime;
    match downloaded {
        Downloaded::Whole(bytes) => {
            let attachments = if is_mime {
                count_attachments(&bytes)
            } else {
                0
            };
            let blob = session.put_blob(blob_kind(kind), bytes).await?;
            Ok(Ok(Stored::new(kind, blob, attachments)))
        }
        Downloaded::Large { head, mut rest } => {
            let mut writer = session.put_blob_stream(blob_kind(kind))?;
            writer.write(&head).await?;
            drop(head);
            loop {
                match rest.next_chunk().await {
                    Ok(Some(chunk)) => writer.write(&chunk).await?,
                    Ok(None) => break,
                    // Chunks already written stay as unreferenced data (prune removes it).
                    Err(e) => return Ok(Err(e)),
                }
            }
            let blob = writer.finish().await?;
            Ok(Ok(Stored::new(
                kind,
                blob,
                u32::from(has_attachments && is_mime),
            )))
        }
    }
}

/// Everything one run needs, bundled so helpers stay readable.
struct Run<'a> {
    repo: &'a Repository,
    source: Arc<dyn MailSource>,
    mailbox: &'a SourceMailbox,
    opts: &'a BackupOptions,
    reporter: &'a dyn Reporter,
    cancel: &'a Cancel,
    summary: BackupSummary,
}

/// What one download task fetches.
enum Unit {
    /// One item, each representation on its own.
    One(SourceItem),
    /// Items whose primary representation comes in one call.
    Batch(Vec<SourceItem>),
}

/// The outcome of one folder.
struct FolderOutcome {
    snapshot: FolderSnapshot,
    report: FolderReport,
}

impl Run<'_> {
    fn addr(&self) -> String {
        self.mailbox.address().to_owned()
    }

    async fn keep_lease(&self, session: &mut BackupSession) -> Result<()> {
        session.keep_lease().await
    }

    #[allow(clippy::too_many_lines)] // One loop over pages with its decisions in view.
    async fn backup_folder(
        &mut self,
        session: &mut BackupSession,
        folder: &SourceFolder,
        prev: &Previous,
    ) -> Result<FolderOutcome> {
        let path = folder.path.join("/");
        let folder_id = folder.id.clone();
        let prev_folder = prev.folders.get(&folder.id);
        let prev_items = prev.items_by_folder.get(&folder.id);
        // The source is given its second link back with the first (ports::mail::join_links).
        let saved_item_link = prev_folder.and_then(|f| f.item_delta_link.clone());
        let saved_link = prev_folder.and_then(|f| {
            f.delta_link
                .as_deref()
                .map(|l| join_links(l, saved_item_link.as_deref()))
        });
        self.reporter.report(Event::FolderStarted {
            mailbox: self.addr(),
            folder: path.clone(),
            expected: folder.total_items,
        });

        // Messages stored without their stream (backed up before `--fidelity full`, or
        // whose export failed) are not reported by an incremental round: enumerate the
        // folder again (stored MIME is reused; only the streams are fetched).
        let streams_missing = self.opts.folder_options.fidelity.keeps_mail_stream()
            && folder.kind.is_mail()
            && prev_items.is_some_and(|items| {
                items
                    .iter()
                    .any(|m| m.content_of(ContentKind::Export).is_none())
            });
        let mut cursor = match (&saved_link, self.opts.full || streams_missing) {
            (Some(link), false) => DeltaCursor::Link(link.clone()),
            _ => DeltaCursor::Initial,
        };
        // An incremental round starts from the previous list; a full round rebuilds it.
        let mut working: BTreeMap<ItemId, ItemMeta> = match cursor {
            DeltaCursor::Link(_) => prev_items
                .into_iter()
                .flatten()
                .map(|m| (m.id.clone(), m.clone()))
                .collect(),
            DeltaCursor::Initial => BTreeMap::new(),
        };
        let mut errors: Vec<ItemError> = Vec::new();
        let mut finished_link: Option<String> = None;
        let mut resynced = false;

        loop {
            if self.cancel.is_requested() {
                break;
            }
            self.keep_lease(session).await?;
            let page = match self
                .source
                .delta_page(self.mailbox, &folder.id, &cursor, self.opts.page_size)
                .await
            {
                Ok(p) => p,
                Err(SourceError::DeltaExpired) if !resynced => {
                    resynced = true;
                    self.summary.resynced_folders += 1;
                    self.reporter.report(Event::Warning {
                        mailbox: Some(self.addr()),
                        message: format!(
                            "saved delta state of folder {path} expired; enumerating the folder again"
                        ),
                    });
                    cursor = DeltaCursor::Initial;
                    // Full enumeration: rebuild the list, reusing stored content by id.
                    working.clear();
                    continue;
                }
                Err(SourceError::FolderGone) => {
                    self.reporter.report(Event::Warning {
                        mailbox: Some(self.addr()),
                        message: format!("folder {path} was deleted during the run"),
                    });
                    errors.push(ItemError {
                        message_id: None,
                        reason: "folder was deleted during the run".into(),
                    });
                    break;
                }
                Err(
                    e @ (SourceError::Item(_)
                    | SourceError::Unavailable(_)
                    | SourceError::Dns(_)
                    | SourceError::Tls(_)
                    | SourceError::Other(_)),
                ) => {
                    // The folder cannot be enumerated now; keep its previous state and move on.
                    self.reporter.report(Event::Warning {
                        mailbox: Some(self.addr()),
                        message: format!("folder {path} could not be enumerated: {e}"),
                    });
                    errors.push(ItemError {
                        message_id: None,
                        reason: format!("folder enumeration failed: {e}"),
                    });
                    if matches!(cursor, DeltaCursor::Initial) && working.is_empty() {
                        if let Some(items) = prev_items {
                            working = items.iter().map(|m| (m.id.clone(), m.clone())).collect();
                        }
                    }
                    break;
                }
                Err(e) => return Err(source_fatal(e)),
            };

            for id in &page.removed {
                if working.remove(id).is_some() {
                    self.summary.removed += 1;
                }
            }

            // Decide per item: reuse stored content or download. A message kept in full
            // fidelity has its stream fetched apart from its MIME (20 at a time), and
            // only when its change key moved on since the stream was stored.
            let mut to_download: Vec<SourceItem> = Vec::new();
            let mut to_export: Vec<SourceItem> = Vec::new();
            let mut reused = 0u64;
            for mut m in page.items {
                let known = working.get(&m.id).or_else(|| prev.all.get(&m.id));
                let stream = split_mail_stream(&mut m);
                match known {
                    Some(k) if content_reusable(k, &m) => {
                        let current = stream_current(k, &m);
                        let mut meta = k.clone();
                        apply_metadata(&mut meta, &m, &folder_id);
                        if !current {
                            // A stream is kept only while the change key it was exported
                            // at holds, whatever this run's fidelity.
                            meta.content.retain(|c| c.kind != ContentKind::Export);
                            to_export.extend(stream);
                        }
                        working.insert(m.id.clone(), meta);
                        reused += 1;
                    }
                    _ => {
                        to_export.extend(stream);
                        to_download.push(m);
                    }
                }
            }
            self.summary.reused += reused;

            let (count, bytes) = self
                .download_and_store(
                    session,
                    to_download,
                    &folder_id,
                    &mut working,
                    &mut errors,
                    &path,
                )
                .await?;
            if !self.cancel.is_hard() {
                self.export_and_store(session, to_export, &mut working, &mut errors, &path)
                    .await?;
            }
            self.reporter.report(Event::Items {
                mailbox: self.addr(),
                folder: path.clone(),
                count: count + reused,
                bytes,
            });
            if self.cancel.is_hard() {
                break;
            }

            match page.next {
                DeltaNext::More(link) => cursor = DeltaCursor::Link(link),
                DeltaNext::Done(link) => {
                    finished_link = Some(link);
                    break;
                }
            }
        }

        let finished = finished_link.is_some();
        // Rule 1 and 4: advance the link only when the round finished with no item errors.
        let delta_link = if finished && errors.is_empty() {
            finished_link
        } else if resynced || self.opts.full {
            None
        } else {
            saved_link
        };
        // Stored apart; a round that brought no second link (a run that does not keep
        // mail streams) keeps the saved one for the next run that does.
        let (delta_link, item_delta_link) = match delta_link.as_deref().map(split_links) {
            Some((link, second)) => (
                Some(link.to_owned()),
                second.map(str::to_owned).or(saved_item_link),
            ),
            None => (None, saved_item_link),
        };
        let items: Vec<ItemMeta> = working.into_values().collect();
        let stored = items.len() as u64;
        let items_id = session.put_folder_items(items).await?;
        let report = FolderReport {
            path: path.clone(),
            kind: folder.kind,
            graph_count: folder.total_items,
            stored,
            errors: errors.clone(),
            finished,
            visited: true,
            count_stale: folder.stale_count,
        };
        self.reporter.report(Event::FolderDone {
            mailbox: self.addr(),
            folder: path,
            stored,
        });
        Ok(FolderOutcome {
            snapshot: FolderSnapshot {
                folder: folder.record(),
                delta_link,
                item_delta_link,
                graph_item_count: (!folder.stale_count).then_some(folder.total_items),
                stored_item_count: stored,
                items: items_id.id,
                item_pieces: items_id.pieces,
                errors,
            },
            report,
        })
    }

    /// Group items into download units: one item, or up to the source's batch limit of
    /// items whose primary representation it serves several at a time.
    fn units(&self, items: Vec<SourceItem>) -> Vec<Unit> {
        let mut out = Vec::new();
        let mut batch: Vec<SourceItem> = Vec::new();
        let mut limit = 1;
        for m in items {
            let primary = m.contents.first().copied();
            let item_limit = primary.map_or(1, |k| self.source.batch_limit(k));
            if item_limit <= 1 {
                out.push(Unit::One(m));
                continue;
            }
            if !batch.is_empty()
                && (batch.len() >= limit
                    || batch.first().and_then(|b| b.contents.first().copied()) != primary)
            {
                out.push(Unit::Batch(std::mem::take(&mut batch)));
            }
            limit = item_limit;
            batch.push(m);
        }
        if !batch.is_empty() {
            out.push(Unit::Batch(batch));
        }
        out
    }

    /// The next downloaded item: one already arrived, or the next to arrive after filling
    /// the window with pending units. `None` when everything is done or a hard cancel
    /// stops the run.
    async fn next_download(
        &self,
        session: &mut BackupSession,
        window: &mut Window<Vec<ItemDownload>>,
        pending: &mut std::vec::IntoIter<Unit>,
        arrived: &mut std::vec::IntoIter<ItemDownload>,
    ) -> Result<Option<ItemDownload>> {
        let budget = session.memory_budget().clone();
        loop {
            if let Some(next) = arrived.next() {
                return Ok(Some(next));
            }
            while window.has_room() && !self.cancel.is_hard() {
                let Some(unit) = pending.next() else { break };
                let (source, mailbox) = (Arc::clone(&self.source), self.mailbox.clone());
                let budget = budget.clone();
                window.spawn(async move {
                    match unit {
                        Unit::One(m) => {
                            let downloaded = download(source, mailbox, m.clone(), budget).await;
                            vec![(m, downloaded)]
                        }
                        Unit::Batch(items) => download_batch(source, mailbox, items, budget).await,
                    }
                });
            }
            if self.cancel.is_hard() {
                return Ok(None);
            }
            // While waiting for downloads, give the budget back if another worker (maybe
            // one of ours) waits for it: the pack being filled is the one buffer that can
            // be released early. Without this, sessions holding half-full packs while all
            // their downloads wait would wait for each other.
            let next = if session.can_relieve_pressure() {
                tokio::select! {
                    next = window.next() => next,
                    () = budget.contended() => {
                        session.relieve_pressure().await?;
                        continue;
                    }
                }
            } else {
                window.next().await
            };
            let Some(done) = next else {
                return Ok(None);
            };
            *arrived = done?.into_iter();
        }
    }

    /// Fetch and store the export streams of messages whose MIME is stored (`--fidelity
    /// full`), up to the source's batch limit per request, and attach each to its
    /// record. A message whose MIME failed has no record and is skipped (its error is
    /// already recorded); a stream that fails is that message's error, and its record
    /// keeps no stream (a stale one would claim properties the message no longer has),
    /// so the next run exports it again.
    async fn export_and_store(
        &mut self,
        session: &mut BackupSession,
        items: Vec<SourceItem>,
        working: &mut BTreeMap<ItemId, ItemMeta>,
        errors: &mut Vec<ItemError>,
        path: &str,
    ) -> Result<()> {
        // Only messages whose record is the version just reported (not one whose MIME
        // failed and that kept its previous record, or none).
        let items: Vec<SourceItem> = items
            .into_iter()
            .filter(|m| {
                working
                    .get(&m.id)
                    .is_some_and(|w| w.change_key == m.change_key)
            })
            .collect();
        if items.is_empty() {
            return Ok(());
        }
        let mut window: Window<Vec<ItemDownload>> = Window::new(self.opts.downloads_in_flight);
        let mut pending = self.units(items).into_iter();
        let mut arrived: std::vec::IntoIter<ItemDownload> = Vec::new().into_iter();
        while let Some((m, downloaded)) = self
            .next_download(session, &mut window, &mut pending, &mut arrived)
            .await?
        {
            let outcome = match downloaded {
                Ok((parts, _grant)) => {
                    let mut stored = None;
                    let mut failed = None;
                    for (kind, part) in parts {
                        match store_download(session, kind, part, false).await? {
                            Ok(s) => {
                                self.summary.bytes_stored += s.added_bytes;
                                stored = Some(s.content);
                            }
                            Err(e) => {
                                failed = Some(e);
                                break;
                            }
                        }
                    }
                    match (failed, stored) {
                        (Some(e), _) => Err(e),
                        (None, Some(c)) => Ok(c),
                        (None, None) => Err(SourceError::Item(format!(
                            "the source offers no export stream for item {}",
                            m.id
                        ))),
                    }
                }
                Err(e) => Err(e),
            };
            let Some(meta) = working.get_mut(&m.id) else {
                continue;
            };
            meta.content.retain(|c| c.kind != ContentKind::Export);
            match outcome {
                Ok(content) => {
                    self.summary.mail_streams += 1;
                    self.summary.bytes_downloaded += content.size;
                    meta.content.push(content);
                }
                Err(e) => {
                    if let SourceError::Auth(_) | SourceError::PermissionDenied { .. } = e {
                        return Err(source_fatal(e));
                    }
                    self.reporter.report(Event::ItemFailed {
                        mailbox: self.addr(),
                        folder: path.to_owned(),
                        item: m.id.to_string(),
                        reason: format!("export stream: {e}"),
                    });
                    errors.push(ItemError {
                        message_id: Some(m.id.clone()),
                        reason: format!("export stream: {e}"),
                    });
                }
            }
        }
        window.abort_all().await;
        Ok(())
    }

    /// Download items with up to `downloads_in_flight` in flight (a sliding window: a
    /// slow download never holds up the others) and store each as it arrives.
    async fn download_and_store(
        &mut self,
        session: &mut BackupSession,
        items: Vec<SourceItem>,
        folder_id: &FolderId,
        working: &mut BTreeMap<ItemId, ItemMeta>,
        errors: &mut Vec<ItemError>,
        path: &str,
    ) -> Result<(u64, u64)> {
        let mut count = 0u64;
        let mut bytes_total = 0u64;
        let mut window: Window<Vec<ItemDownload>> = Window::new(self.opts.downloads_in_flight);
        let mut pending = self.units(items).into_iter();
        let mut arrived: std::vec::IntoIter<ItemDownload> = Vec::new().into_iter();
        loop {
            let Some((m, downloaded)) = self
                .next_download(session, &mut window, &mut pending, &mut arrived)
                .await?
            else {
                break;
            };
            let has_attachments = m.mail_metadata().is_some_and(|x| x.has_attachments);
            let mut title = None;
            let outcome = match downloaded {
                Ok((parts, _grant)) => {
                    if !m.kind.is_mail() {
                        title = parts.iter().find_map(|(kind, part)| match (kind, part) {
                            (ContentKind::Json, Downloaded::Whole(bytes)) => title_of(bytes),
                            _ => None,
                        });
                    }
                    let mut stored = Vec::with_capacity(parts.len());
                    let mut failed = None;
                    for (kind, part) in parts {
                        match store_download(session, kind, part, has_attachments).await? {
                            Ok(s) => {
                                self.summary.bytes_stored += s.added_bytes;
                                stored.push(s);
                            }
                            Err(e) => {
                                failed = Some(e);
                                break;
                            }
                        }
                    }
                    match failed {
                        Some(e) => Err(e),
                        None => Ok(stored),
                    }
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok(stored) => {
                    let attachments = stored.iter().map(|s| s.attachments).sum();
                    let size: u64 = stored.iter().map(|s| s.content.size).sum();
                    let mut contents = stored.into_iter().map(|s| s.content);
                    let primary = contents
                        .next()
                        .expect("invariant: download returns content");
                    let mut meta = new_meta(&m, folder_id, primary, contents.collect());
                    meta.attachment_count = attachments;
                    if meta.subject.is_none() {
                        meta.subject = title;
                    }
                    working.insert(m.id.clone(), meta);
                    count += 1;
                    bytes_total += size;
                }
                Err(e) => {
                    if let SourceError::Auth(_) | SourceError::PermissionDenied { .. } = e {
                        return Err(source_fatal(e));
                    }
                    self.reporter.report(Event::ItemFailed {
                        mailbox: self.addr(),
                        folder: path.to_owned(),
                        item: m.id.to_string(),
                        reason: e.to_string(),
                    });
                    errors.push(ItemError {
                        message_id: Some(m.id.clone()),
                        reason: e.to_string(),
                    });
                }
            }
        }
        // After a hard cancel nothing is committed: downloads still in flight are dropped.
        window.abort_all().await;
        self.summary.downloaded += count;
        self.summary.bytes_downloaded += bytes_total;
        Ok((count, bytes_total))
    }
}

/// Errors that stop a mailbox run (as opposed to per-item errors).
fn source_fatal(e: SourceError) -> crate::error::Error {
    crate::error::Error::Source(e)
}

/// Back up one mailbox into `repo`. See the module docs for the guarantees.
///
/// Returns the summary even for partial runs; `Err` means nothing was committed (lease
/// held, repository unreadable, authentication or permission failure, hard cancel).
pub async fn backup_mailbox(
    repo: &Repository,
    source: Arc<dyn MailSource>,
    mailbox: &SourceMailbox,
    opts: &BackupOptions,
    clock: Arc<dyn Clock>,
    reporter: &dyn Reporter,
    cancel: &Cancel,
) -> Result<BackupSummary> {
    // One span per mailbox (and one per folder in `run_session`): every log line of the
    // run, the Graph client's included, names the mailbox and folder it belongs to.
    let span = tracing::info_span!("mailbox", mailbox = %mailbox.address());
    run_mailbox(
        repo, None, None, source, mailbox, opts, clock, reporter, cancel,
    )
    .instrument(span)
    .await
}

/// [`backup_mailbox`] inside its span; `writer`: the tenant run's shared pack writer and
/// its lease.
#[allow(clippy::too_many_arguments)] // Internal: the public entry points bundle these.
async fn run_mailbox(
    repo: &Repository,
    writer: Option<(&PackWriter, Option<&RunLease>)>,
    slot: Option<&mut Slot>,
    source: Arc<dyn MailSource>,
    mailbox: &SourceMailbox,
    opts: &BackupOptions,
    clock: Arc<dyn Clock>,
    reporter: &dyn Reporter,
    cancel: &Cancel,
) -> Result<BackupSummary> {
    let mailbox_id = mailbox.id.clone();
    let started = clock.now();
    // List folders before taking the lease: a missing mailbox or permission fails early
    // without touching the repository.
    // The tree continues from what the last run learned of it, unless everything is to be
    // read afresh (--full).
    let since = if opts.full {
        None
    } else {
        repo.latest_snapshot(&mailbox_id)
            .await?
            .and_then(|s| s.record.folder_bookmark)
    };
    let FolderListing {
        folders,
        bookmark: folder_bookmark,
    } = source
        .list_folders_since(mailbox, opts.folder_options, since.as_ref())
        .await
        .map_err(source_fatal)?;
    let mut session = match writer {
        Some((w, run)) => {
            repo.begin_backup_in(&mailbox_id, &opts.lease_owner, Arc::clone(&clock), w, run)
                .await?
        }
        None => {
            repo.begin_backup(&mailbox_id, &opts.lease_owner, Arc::clone(&clock))
                .await?
        }
    };
    if let Some(r) = opts.retention {
        session.set_retention(r);
    }
    let result = run_session(
        repo,
        &mut session,
        source,
        mailbox,
        &folders,
        opts,
        reporter,
        cancel,
    )
    .await;
    match result {
        Ok(Some((folder_snaps, mut summary))) => {
            let complete =
                !summary.cancelled && summary.folders.iter().all(FolderReport::is_complete);
            // A snapshot holding other kinds says so, so a reader that knows only mail
            // refuses it instead of taking events for messages (docs/FORMAT.md §5.3);
            // one of a format-4 repository says 4 (its records have no `mimeSha256`).
            let format_version = repo
                .snapshot_format_version(folder_snaps.iter().any(|f| !f.folder.kind.is_mail()))?;
            let record = SnapshotRecord {
                mailbox: mailbox_id,
                started,
                finished: clock.now(),
                tool: opts.tool.clone(),
                format_version,
                status: if complete {
                    SnapshotStatus::Complete
                } else {
                    SnapshotStatus::Partial
                },
                folders: folder_snaps,
                folder_bookmark,
            };
            // Its downloads are over: the commit (which may wait for the shared pack to
            // fill) lets the next mailbox start when it can (see `Slot`).
            if let Some(slot) = slot {
                slot.hand_over();
            }
            let id = session.commit(record).await?;
            summary.snapshot = Some(id);
            summary.complete = complete;
            reporter.report(Event::MailboxDone {
                mailbox: summary.mailbox.clone(),
                complete,
            });
            Ok(summary)
        }
        Ok(None) => {
            let _ = session.release().await;
            Err(crate::error::Error::Interrupted)
        }
        Err(e) => {
            let _ = session.release().await;
            Err(e)
        }
    }
}

/// A mailbox's place among the `parallel` of a tenant run. A mailbox that has finished
/// downloading may have to wait for the shared pack to fill before it commits (group
/// commit, `repo/writer.rs`); holding its place meanwhile would leave the run a worker
/// short. So it trades its place for one of at most `parallel` places of waiting commits,
/// when one is free; when none is, it commits in its place as before. Never waiting for a
/// commit place is what keeps this free of deadlock: waiting commits only need the running
/// mailboxes to fill the pack or to finish, and a mailbox that finishes never blocks.
/// Commits that wait hold no downloads, only blobs already in the shared pack (counted by
/// the memory budget), so memory stays within the budget; a cancel reaches them as
/// before (they commit what they have).
#[derive(Debug)]
struct Slot {
    running: Option<tokio::sync::OwnedSemaphorePermit>,
    commits: Arc<tokio::sync::Semaphore>,
    committing: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Slot {
    /// Give the running place back if a commit place is free.
    fn hand_over(&mut self) {
        if let Ok(p) = Arc::clone(&self.commits).try_acquire_owned() {
            self.committing = Some(p);
            self.running = None;
        }
    }
}

/// The outcome of one mailbox in a multi-mailbox run.
#[derive(Debug)]
pub struct MailboxOutcome {
    /// Mailbox address.
    pub mailbox: String,
    /// Its summary, or why it failed as a whole.
    pub result: Result<BackupSummary>,
}

/// Back up several mailboxes with at most `parallel` running at once, sharing one source
/// (and so one Graph client with its per-mailbox limiters and tenant-wide scheduler).
///
/// One mailbox failing (lease held, no mailbox, item storm) never stops the others; a
/// soft cancel lets running mailboxes commit partial snapshots and starts no new ones.
/// Outcomes come back in the order of `mailboxes`.
///
/// The mailboxes share one pack writer ([`Repository::pack_writer`]): their blobs fill
/// the same packs, so small mailboxes no longer each leave a partly filled pack, and one
/// pack buffer is held instead of one per mailbox. A mailbox that finishes waits until the
/// pack holding its last blobs fills or every running mailbox has finished too, then
/// commits after its data and index are stored; while it waits, the next mailbox may take
/// its place among the `parallel` (see `Slot`).
///
/// The run holds one lease naming all of `mailboxes` ([`Repository::begin_run`]) instead
/// of one per mailbox; a mailbox whose own lease another writer holds (or that an earlier
/// run still covers) fails with [`crate::error::Error::LeaseHeld`] as before. If the run
/// lease cannot be taken, each mailbox takes its own lease as a single backup does.
#[allow(clippy::too_many_arguments)] // The shared handles of a run; a struct would only rename them.
pub async fn backup_mailboxes(
    repo: &Repository,
    source: Arc<dyn MailSource>,
    mailboxes: Vec<SourceMailbox>,
    opts: &BackupOptions,
    parallel: usize,
    clock: Arc<dyn Clock>,
    reporter: Arc<dyn Reporter>,
    cancel: Arc<Cancel>,
) -> Vec<MailboxOutcome> {
    let names: Vec<String> = mailboxes.iter().map(|m| m.address().to_owned()).collect();
    // None only for a repository that is not initialised: each mailbox then fails as
    // `begin_backup` says.
    let writer = repo.pack_writer().ok();
    let run = match &writer {
        Some(_) if !mailboxes.is_empty() => {
            let ids: Vec<MailboxId> = mailboxes.iter().map(|m| m.id.clone()).collect();
            match repo
                .begin_run(&ids, &opts.lease_owner, clock.as_ref())
                .await
            {
                Ok(run) => Some(Arc::new(run)),
                Err(e) => return without_run_lease(names, e),
            }
        }
        _ => None,
    };
    let semaphore = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let commits = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut set = JoinSet::new();
    for (i, mailbox) in mailboxes.into_iter().enumerate() {
        let (repo, source, opts) = (repo.clone(), Arc::clone(&source), opts.clone());
        let (clock, reporter, cancel) = (
            Arc::clone(&clock),
            Arc::clone(&reporter),
            Arc::clone(&cancel),
        );
        let semaphore = Arc::clone(&semaphore);
        let commits = Arc::clone(&commits);
        let writer = writer.clone();
        let run = run.clone();
        set.spawn(async move {
            let address = mailbox.address().to_owned();
            let Ok(permit) = semaphore.acquire_owned().await else {
                return (
                    i,
                    MailboxOutcome {
                        mailbox: address,
                        result: Err(crate::error::Error::Interrupted),
                    },
                );
            };
            if cancel.is_requested() {
                return (
                    i,
                    MailboxOutcome {
                        mailbox: address,
                        result: Err(crate::error::Error::Interrupted),
                    },
                );
            }
            let span = tracing::info_span!("mailbox", mailbox = %mailbox.address());
            let mut slot = Slot {
                running: Some(permit),
                commits,
                committing: None,
            };
            let result = run_mailbox(
                &repo,
                writer.as_ref().map(|w| (w, run.as_deref())),
                Some(&mut slot),
                source,
                &mailbox,
                &opts,
                clock,
                reporter.as_ref(),
                &cancel,
            )
            .instrument(span)
            .await;
            (
                i,
                MailboxOutcome {
                    mailbox: address,
                    result,
                },
            )
        });
    }
    let mut out: Vec<Option<MailboxOutcome>> = names.iter().map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((i, outcome)) => out[i] = Some(outcome),
            Err(e) => tracing::error!("backup worker failed: {e}"),
        }
    }
    if let Some(run) = run {
        end_run(repo, &run, &mut out).await;
    }
    // A worker that panicked still gets a line: no mailbox silently drops out of the report.
    out.into_iter()
        .zip(names)
        .map(|(o, mailbox)| {
            o.unwrap_or_else(|| MailboxOutcome {
                mailbox,
                result: Err(crate::error::Error::Task {
                    reason: "backup worker panicked".into(),
                }),
            })
        })
        .collect()
}

/// Every session is over (committed, released or failed): the run's lease goes. One that
/// cannot be deleted now stays registered for the exit path (or expires), and the run must
/// not look as if it ended cleanly: as when a mailbox lease could not be released after
/// its commit, the last mailbox that succeeded reports the error instead (its snapshot is
/// committed).
async fn end_run(repo: &Repository, run: &RunLease, out: &mut [Option<MailboxOutcome>]) {
    if let Err(e) = run.release(repo).await {
        tracing::warn!("releasing the run's lease: {e}");
        if let Some(last) = out.iter_mut().rev().flatten().find(|o| o.result.is_ok()) {
            last.result = Err(e);
        }
    }
}

/// The outcomes of a run that could not take its lease (the store refused the write or
/// could not be read): no mailbox was started. The first mailbox carries the error itself
/// (its kind decides the exit status), the others a copy of its text.
fn without_run_lease(names: Vec<String>, e: crate::error::Error) -> Vec<MailboxOutcome> {
    let detail = format!("the run's lease could not be taken: {e}");
    let mut first = Some(e);
    names
        .into_iter()
        .map(|mailbox| MailboxOutcome {
            mailbox,
            result: Err(first.take().unwrap_or_else(|| {
                crate::error::Error::Store(crate::ports::StoreError::Transient {
                    key: crate::repo::LOCK_PREFIX.into(),
                    detail: detail.clone(),
                })
            })),
        })
        .collect()
}

#[allow(clippy::too_many_arguments)] // Internal: the public entry point bundles these.
async fn run_session(
    repo: &Repository,
    session: &mut BackupSession,
    source: Arc<dyn MailSource>,
    mailbox: &SourceMailbox,
    folders: &[SourceFolder],
    opts: &BackupOptions,
    reporter: &dyn Reporter,
    cancel: &Cancel,
) -> Result<Option<(Vec<FolderSnapshot>, BackupSummary)>> {
    let mailbox_id = &mailbox.id;
    let prev = load_previous(repo, mailbox_id).await?;
    reporter.report(Event::MailboxStarted {
        mailbox: mailbox_id.address().to_owned(),
        folders: folders.len(),
    });
    let mut run = Run {
        repo,
        source,
        mailbox,
        opts,
        reporter,
        cancel,
        summary: BackupSummary {
            mailbox: mailbox_id.address().to_owned(),
            snapshot: None,
            complete: false,
            downloaded: 0,
            reused: 0,
            removed: 0,
            mail_streams: 0,
            bytes_downloaded: 0,
            bytes_stored: 0,
            resynced_folders: 0,
            folders: Vec::new(),
            cancelled: false,
        },
    };
    let _ = run.repo;
    let mut snaps = Vec::new();
    for folder in folders {
        let selected = opts.folders.is_empty()
            || opts
                .folders
                .iter()
                .any(|f| path_selected(&folder.path, &folder.display_name, f));
        if !selected || cancel.is_requested() {
            // Not visited: carry the previous state over unchanged (it is what is stored).
            if let Some(p) = prev.folders.get(&folder.id) {
                let mut carried = p.clone();
                carried.folder = folder.record();
                run.summary.folders.push(FolderReport::not_run(
                    folder,
                    carried.stored_item_count,
                    carried.errors.clone(),
                    false,
                ));
                snaps.push(carried);
            } else if selected {
                // Never backed up and not reached: the snapshot is missing this folder.
                run.summary
                    .folders
                    .push(FolderReport::not_run(folder, 0, Vec::new(), true));
            }
            continue;
        }
        let outcome = run
            .backup_folder(session, folder, &prev)
            .instrument(tracing::info_span!("folder", folder = %folder.path.join("/")))
            .await?;
        if cancel.is_hard() {
            return Ok(None);
        }
        run.summary.folders.push(outcome.report);
        snaps.push(outcome.snapshot);
    }
    // Every snapshot is the whole mailbox: folders of kinds this run does not back up
    // (not asked for, or not permitted now) keep what the previous snapshot holds.
    let listed: std::collections::HashSet<&FolderId> = folders.iter().map(|f| &f.id).collect();
    let mut carried: Vec<&FolderSnapshot> = prev
        .folders
        .values()
        .filter(|p| {
            !opts.folder_options.kinds.contains(p.folder.kind) && !listed.contains(&p.folder.id)
        })
        .collect();
    carried.sort_by(|a, b| a.folder.path.cmp(&b.folder.path));
    for p in carried {
        run.summary.folders.push(FolderReport {
            path: p.folder.path.join("/"),
            kind: p.folder.kind,
            graph_count: p.graph_item_count.unwrap_or(p.stored_item_count),
            stored: p.stored_item_count,
            errors: p.errors.clone(),
            finished: false,
            visited: false,
            count_stale: false,
        });
        snaps.push(p.clone());
    }
    run.summary.cancelled = cancel.is_requested();
    Ok(Some((snaps, run.summary)))
}

/// A kind left out of a run because the app may not read it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KindSkipped {
    /// The kind.
    #[serde(serialize_with = "crate::model::ItemKind::serialize_name")]
    pub kind: crate::model::ItemKind,
    /// The application permission that is missing.
    pub permission: String,
}

/// The one warning of a run that left kinds out (empty list: none).
pub fn kinds_skipped_warning(skipped: &[KindSkipped]) -> Option<String> {
    if skipped.is_empty() {
        return None;
    }
    let list: Vec<String> = skipped
        .iter()
        .map(|s| format!("{} (needs {})", s.kind, s.permission))
        .collect();
    Some(format!(
        "not backing up {}: the app lacks the permission; grant it (admin consent) to include them, or choose kinds with --kinds",
        list.join(", ")
    ))
}

/// The kinds a run backs up, decided once per run before anything is written, by asking
/// the source about one mailbox ([`MailSource::kind_access`]): the kinds asked for that
/// the app may read, and the others with the permission each lacks.
///
/// What the caller does with the others depends on how they were asked for (the plan's
/// rule): left to the default (everything), they are skipped with one warning for the
/// run ([`kinds_skipped_warning`]), so a deployment granted only the mail permissions
/// keeps backing up mail; asked for by name (`--kinds calendar`), they make the run
/// partial, naming the permission. Mail itself is never probed here: its permissions are
/// checked by reading the folders, as before.
pub async fn resolve_kinds(
    source: &dyn MailSource,
    mailbox: &SourceMailbox,
    requested: crate::model::KindSet,
) -> Result<(crate::model::KindSet, Vec<KindSkipped>)> {
    let mut kinds = requested;
    let mut skipped = Vec::new();
    for kind in requested.iter().filter(|k| !k.is_mail()) {
        if let Some(permission) = source
            .kind_access(mailbox, kind)
            .await
            .map_err(source_fatal)?
        {
            kinds = kinds.without(kind);
            skipped.push(KindSkipped { kind, permission });
        }
    }
    Ok((kinds, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<String> {
        s.split('/').map(str::to_owned).collect()
    }

    /// Backup's folder selection (`-f`), kept from when backup had its own matcher.
    fn folder_selected(path: &[String], filters: &[String]) -> bool {
        filters.is_empty() || filters.iter().any(|f| path_selected(path, "", f))
    }

    #[test]
    fn folder_filter_matches_path_name_and_subfolders() {
        let f = vec!["Inbox/Projects".to_owned()];
        assert!(folder_selected(&p("Inbox/Projects"), &f));
        assert!(folder_selected(&p("Inbox/Projects/2026"), &f));
        assert!(!folder_selected(&p("Inbox"), &f));
        assert!(!folder_selected(&p("Archive/Projects"), &f));
        let g = vec!["projects".to_owned()];
        assert!(folder_selected(&p("Archive/Projects"), &g));
        assert!(folder_selected(&p("Inbox/Projects/x"), &g));
        assert!(!folder_selected(&p("Inbox"), &g));
        assert!(folder_selected(&p("Anything"), &[]));
    }

    #[test]
    fn attachments_are_counted_from_disposition_headers() {
        let mime = b"From: a@b\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\
Content-Type: text/plain\r\n\r\nhello\r\ncontent-disposition: attachment in the body text is\r\n\
--x\r\nContent-Type: image/png\r\nContent-Disposition: inline; filename=a.png\r\n\r\nAAAA\r\n\
--x\r\nContent-Type: application/pdf\r\nCONTENT-DISPOSITION:  attachment;\r\n filename=b.pdf\r\n\r\nAAAA\r\n--x--\r\n";
        // The body line that merely looks like a header is not counted.
        assert_eq!(count_attachments(mime), 2);
        assert_eq!(count_attachments(b"Subject: none\r\n\r\nbody"), 0);
    }

    /// The line-by-line walk `count_attachments` replaced: every line is looked at, a line
    /// starting with `--` opens a header block, a blank line closes it. The definition the
    /// faster version must agree with.
    fn count_attachments_by_lines(mime: &[u8]) -> u32 {
        const NAME: &[u8] = b"content-disposition:";
        let mut count = 0u32;
        let mut in_headers = true;
        for line in mime.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                in_headers = false;
                continue;
            }
            if line.starts_with(b"--") {
                in_headers = true;
                continue;
            }
            if !in_headers
                || line.len() < NAME.len()
                || !line[..NAME.len()].eq_ignore_ascii_case(NAME)
            {
                continue;
            }
            let value = line[NAME.len()..].trim_ascii_start();
            let kind =
                |k: &[u8]| value.len() >= k.len() && value[..k.len()].eq_ignore_ascii_case(k);
            if kind(b"attachment") || kind(b"inline") {
                count = count.saturating_add(1);
            }
        }
        count
    }

    proptest::proptest! {
        /// Messages made of lines that matter (boundaries, blank lines, dispositions, a
        /// signature's `-- `, base64) in any order, with CRLF or LF, with or without a
        /// final line end: skipping bodies counts what walking every line counts.
        #[test]
        fn skipping_bodies_counts_what_walking_every_line_counts(
            lines in proptest::collection::vec(proptest::sample::select(vec![
                "", "\r", "--b", "--b--", "-- ", "-", "--", "QUJDRA==", "text -- with dashes",
                "Content-Disposition: attachment; filename=a", "content-disposition:inline",
                "CONTENT-DISPOSITION:   Attachment", "Content-Disposition: form-data",
                "Content-Type: text/plain", " filename=continued",
            ]), 0..40),
            crlf in proptest::bool::ANY,
            final_eol in proptest::bool::ANY,
        ) {
            let eol = if crlf { "\r\n" } else { "\n" };
            let mut mime = lines.join(eol);
            if final_eol {
                mime.push_str(eol);
            }
            proptest::prop_assert_eq!(
                count_attachments(mime.as_bytes()),
                count_attachments_by_lines(mime.as_bytes())
            );
        }
    }
}
