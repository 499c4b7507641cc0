//! `atlas save`: export a snapshot (or part of it) as a zip of `.eml` files or as mboxrd
//! files, or its calendars, tasks, contacts and configuration as a zip of `.ics`, `.vcf`
//! or `.json` files, from the repository alone — the mailbox need not exist in the tenant
//! any more.
//!
//! - `eml-zip`: the stored MIME byte for byte, one entry per message, directories = folder
//!   paths, names `YYYY-MM-DD_HHMMSS_subject.eml` (UTC received time; sanitized;
//!   collisions numbered `_1`, `_2` … case-insensitively, so the archive unpacks on
//!   Windows and macOS too). Entries are deflated (`Stored` when they would not shrink
//!   by 30 %: a message that is mostly an already-compressed attachment) and carry the
//!   received time.
//! - `mbox`: one mboxrd file per folder (`<folder path>.mbox`, nested folders in
//!   subdirectories), or one mboxrd file of every selected folder (`-o x.mbox`, stdout). mbox is a Unix, LF-terminated format, so CRLF line ends become LF
//!   there; `>From ` quoting follows mboxrd, so any reader that un-quotes gets the message
//!   back exactly (modulo line ends).
//! - `ics`, `vcf`, `json`: one file per item, written by [`crate::export::item_file`] from
//!   the readable JSON the backup stored (docs/EXPORT.md), in a zip laid out by folder like
//!   `eml-zip`; names are the item's title (`subject`, `displayName`, `title`), numbered on
//!   collisions. `ics` takes calendar items and tasks, `vcf` contacts, `json` every kind but
//!   mail.
//!
//! Each format takes only the kinds it can hold: the others are left out and counted per
//! kind in [`SaveSummary::skipped`] with the formats that take them, so a mail export of a
//! whole-mailbox snapshot never writes an event's export stream as a `.eml`.
//!
//! Memory holds one message and one folder list at a time; compression runs on the
//! blocking pool. Output to a path is written under a temporary name next to it and renamed
//! only when complete, so an interrupted or failed export (disk full) never leaves a file
//! posing as a finished export; and Atlas replaces nothing but an earlier export of its own
//! (see [`plan_output`]). Each message's SHA-256 is checked against the one
//! recorded at backup unless `skip_verify`; a message that fails is skipped and listed.

use std::collections::HashSet;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::Serialize;

use super::catalog::{SnapshotSelector, find_message, folder_path, folder_selected};
use super::read::check_sha;
use crate::error::{Error, Result};
use crate::export::ItemFormat;
use crate::model::{ContentKind, ItemKind, MessageId, MessageMeta, SnapshotId};
#[cfg(doc)]
use crate::ports::NullReporter;
use crate::ports::{Event, Reporter, StoreError, Task};
use crate::repo::Repository;

/// Longest subject part of a file name, in characters.
const MAX_SUBJECT_CHARS: usize = 80;
/// Longest folder directory name, in characters.
const MAX_FOLDER_CHARS: usize = 100;

/// Export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExportFormat {
    /// A zip of `.eml` files.
    EmlZip,
    /// mboxrd: a directory of files, one per folder, or one file (see [`OutputKind`]).
    Mbox,
    /// A zip of iCalendar files: calendar items and tasks.
    Ics,
    /// A zip of vCard files: contacts with their photos.
    Vcf,
    /// A zip of JSON files: every kind but mail, configuration included.
    Json,
}

impl ExportFormat {
    /// Every format, in the order messages name them.
    pub const ALL: [Self; 5] = [Self::EmlZip, Self::Mbox, Self::Ics, Self::Vcf, Self::Json];

    /// The name on the command line (`--format`).
    pub fn name(self) -> &'static str {
        match self {
            Self::EmlZip => "eml-zip",
            Self::Mbox => "mbox",
            Self::Ics => "ics",
            Self::Vcf => "vcf",
            Self::Json => "json",
        }
    }

    /// The per-item conversion of a format for non-mail items; `None` for the mail
    /// formats, which write the stored MIME.
    pub fn item_format(self) -> Option<ItemFormat> {
        match self {
            Self::EmlZip | Self::Mbox => None,
            Self::Ics => Some(ItemFormat::Ics),
            Self::Vcf => Some(ItemFormat::Vcf),
            Self::Json => Some(ItemFormat::Json),
        }
    }

    /// Whether items of `kind` are written in this format (the others are skipped).
    pub fn holds(self, kind: ItemKind) -> bool {
        match self.item_format() {
            None => kind.is_mail(),
            Some(f) => f.holds(kind),
        }
    }

    /// The formats that take items of `kind`. Sticky notes get none: the backup keeps
    /// only their export stream (there is no readable form of them in Graph v1.0), which
    /// `atlas restore` brings back.
    pub fn taking(kind: ItemKind) -> Vec<Self> {
        if kind == ItemKind::Note {
            return Vec::new();
        }
        Self::ALL.into_iter().filter(|f| f.holds(kind)).collect()
    }
}

impl std::fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What to export.
#[derive(Debug, Clone)]
pub struct SaveOptions {
    /// The snapshot (by id, or the newest of a mailbox, optionally `--as-of`).
    pub snapshot: SnapshotSelector,
    /// Only folders selected by this filter (path or name, subfolders included).
    pub folder: Option<String>,
    /// Only this message (see [`find_message`]).
    pub message: Option<String>,
    /// Only items of this kind (`None`: every kind the format holds).
    pub kind: Option<ItemKind>,
    /// Format.
    pub format: ExportFormat,
    /// Skip the SHA-256 comparison (the repository's own checks still run).
    pub skip_verify: bool,
    /// Where progress goes ([`Task::Export`], one unit per message); [`NullReporter`]
    /// for none.
    pub reporter: Arc<dyn Reporter>,
}

/// A message that could not be exported (never names the subject).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SaveFailure {
    /// Folder path.
    pub folder: String,
    /// Graph message id.
    pub message_id: MessageId,
    /// What went wrong.
    pub error: String,
}

/// Items of one kind an export left out because its format cannot hold them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SkippedItems {
    /// Their kind.
    #[serde(serialize_with = "ItemKind::serialize_name")]
    pub kind: ItemKind,
    /// How many.
    pub items: u64,
    /// The formats that take them (empty: none does; `atlas restore` brings them back).
    pub formats: Vec<ExportFormat>,
}

/// Result of an export.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SaveSummary {
    /// Snapshot exported.
    pub snapshot: SnapshotId,
    /// Mailbox address.
    pub mailbox: String,
    /// Format.
    pub format: ExportFormat,
    /// Folders written.
    pub folders: usize,
    /// Messages (items, for the non-mail formats) written.
    pub messages: usize,
    /// Bytes written (before compression): MIME, or the converted files.
    pub bytes: u64,
    /// Items left out because the format cannot hold their kind, per kind (not counted
    /// as failures).
    pub skipped: Vec<SkippedItems>,
    /// Messages skipped because they failed to read or verify (the CLI exits non-zero).
    pub failed: Vec<SaveFailure>,
    /// Output path, when written to a path.
    pub output: Option<PathBuf>,
    /// What to run when a message failed because its content is damaged or missing in the
    /// repository (`atlas repair`, [`super::verify::REPAIR_ADVICE`]); `None` otherwise.
    pub next_step: Option<String>,
}

impl SaveSummary {
    fn new(snap: &crate::repo::Snapshot, format: ExportFormat) -> Self {
        Self {
            snapshot: snap.id,
            mailbox: snap.record.mailbox.address().to_owned(),
            format,
            folders: 0,
            messages: 0,
            bytes: 0,
            skipped: Vec::new(),
            failed: Vec::new(),
            output: None,
            next_step: None,
        }
    }

    /// One message that could not be read or verified. Damage (not a passing failure)
    /// also sets the next step: how to heal it.
    fn record_failure(&mut self, folder: &str, id: &MessageId, e: &Error) {
        if e.is_integrity_failure()
            || matches!(e, Error::ContentNotFound { .. } | Error::Missing { .. })
        {
            self.next_step = Some(super::verify::REPAIR_ADVICE.into());
        }
        self.failed.push(SaveFailure {
            folder: folder.to_owned(),
            message_id: id.clone(),
            error: e.to_string(),
        });
    }

    /// Every selected message was exported.
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
    }

    /// `items` of `kind` left out.
    fn skip(&mut self, kind: ItemKind, items: u64) {
        if items == 0 {
            return;
        }
        if let Some(s) = self.skipped.iter_mut().find(|s| s.kind == kind) {
            s.items += items;
            return;
        }
        self.skipped.push(SkippedItems {
            kind,
            items,
            formats: ExportFormat::taking(kind),
        });
        self.skipped.sort_by_key(|s| s.kind);
    }
}

/// One message (or converted item) handed to a format writer.
struct Item<'a> {
    folder_dirs: &'a [String],
    meta: &'a MessageMeta,
    /// The bytes to write: the MIME of a message, the converted file of another item.
    data: bytes::Bytes,
    /// For a converted item: its file name stem and extension (a message's come from its
    /// metadata, [`eml_file_stem`]).
    file: Option<(String, &'static str)>,
}

/// A message's stored MIME, checked against its recorded SHA-256 unless `skip_verify`.
async fn read_mime(repo: &Repository, opts: ReadOpts, meta: &MessageMeta) -> Result<bytes::Bytes> {
    let b = repo.read_blob(&meta.mime).await?;
    if !opts.skip_verify {
        check_sha(&b, &meta.mime_sha256, &meta.mime)?;
    }
    Ok(b)
}

/// An item's file in `format` from its stored readable JSON (checked like MIME), with its
/// name stem; `None` when the backup kept no readable JSON of it (sticky notes).
async fn read_converted(
    repo: &Repository,
    opts: ReadOpts,
    meta: &MessageMeta,
    format: ItemFormat,
) -> Result<Option<(bytes::Bytes, String)>> {
    let Some(json) = meta.content_of(ContentKind::Json) else {
        return Ok(None);
    };
    let b = repo.read_blob(&json.id).await?;
    if !opts.skip_verify {
        check_sha(&b, &json.sha256, &json.id)?;
    }
    let value: serde_json::Value = serde_json::from_slice(&b).map_err(|e| Error::Convert {
        format: "json",
        reason: format!("the stored readable JSON does not parse: {e}"),
    })?;
    let Some(file) = crate::export::item_file(meta.kind, format, &value)? else {
        return Ok(None);
    };
    Ok(Some((
        bytes::Bytes::from(file),
        item_file_stem(meta, &value),
    )))
}

/// The file name of a non-mail item: its title (an event's start date first, so a
/// calendar's files sort by date), sanitized like a subject; `untitled` without one.
fn item_file_stem(meta: &MessageMeta, json: &serde_json::Value) -> String {
    let title = ["subject", "displayName", "title"]
        .iter()
        .find_map(|k| json.get(*k).and_then(serde_json::Value::as_str))
        .map(sanitize_subject)
        .filter(|t| !t.is_empty())
        .or_else(|| {
            // Configuration items are named by their id (`config:messageRules`).
            (meta.kind == ItemKind::Config)
                .then(|| sanitize_subject(meta.id.as_str().trim_start_matches("config:")))
        })
        .unwrap_or_else(|| "untitled".to_owned());
    let date = json
        .pointer("/start/dateTime")
        .and_then(serde_json::Value::as_str)
        .and_then(|s| s.get(..10))
        .filter(|d| d.bytes().all(|b| b.is_ascii_digit() || b == b'-'));
    match date {
        Some(d) if meta.kind == ItemKind::Calendar => format!("{d}_{title}"),
        _ => title,
    }
}

/// Walk the selected messages in folder order and hand each verified one to `sink`.
/// `sink` gets `None` at the start of every folder that has selected messages.
async fn walk<F>(repo: &Repository, opts: &SaveOptions, sink: F) -> Result<SaveSummary>
where
    F: AsyncSink,
{
    let walked = walk_reporting(repo, opts, sink).await;
    opts.reporter.report(Event::TaskDone { task: Task::Export });
    walked
}

async fn walk_reporting<F>(
    repo: &Repository,
    opts: &SaveOptions,
    mut sink: F,
) -> Result<SaveSummary>
where
    F: AsyncSink,
{
    let snap = opts.snapshot.load(repo).await?;
    if let Some(f) = &opts.folder {
        super::catalog::check_snapshot_folders(&snap.record, std::slice::from_ref(f))?;
    }
    let only = match &opts.message {
        Some(r) => Some(find_message(repo, &snap.record, r).await?),
        None => None,
    };
    check_kind(opts, opts.kind.or(only.as_ref().map(|m| m.meta.kind)))?;
    opts.reporter.report(Event::TaskStarted {
        task: Task::Export,
        total: Some(if only.is_some() {
            1
        } else {
            selected_messages(&snap.record, opts)
        }),
        bytes: None,
    });
    let mut sum = SaveSummary::new(&snap, opts.format);
    for (i, f) in snap.record.folders.iter().enumerate() {
        if !folder_wanted(opts, f) || only.as_ref().is_some_and(|m| m.folder_index != i) {
            continue;
        }
        if only.is_none() && !opts.format.holds(f.folder.kind) {
            // The whole folder is of a kind this format does not take: counted, not read.
            sum.skip(f.folder.kind, f.stored_item_count);
            continue;
        }
        let path = folder_path(f);
        let dirs: Vec<String> = if f.folder.path.is_empty() {
            vec![sanitize_folder(&f.folder.display_name)]
        } else {
            f.folder.path.iter().map(|p| sanitize_folder(p)).collect()
        };
        // Piece by piece: one piece of a large folder in memory at a time.
        let mut list = repo.item_list(&f.items);
        let mut started = false;
        while let Some((_, items)) = list.next_piece().await? {
            let mut wanted = items.iter().filter(|meta| {
                only.as_ref().is_none_or(|m| m.meta.id == meta.id)
                    && opts.kind.is_none_or(|k| k == meta.kind)
            });
            let mut ahead = ReadAhead::default();
            loop {
                ahead.fill(&mut wanted, repo, ReadOpts::of(opts));
                let Some((meta, read)) = ahead.next().await else {
                    break;
                };
                let (data, file) = match read {
                    Ok(Some(read)) => read,
                    other => {
                        match other {
                            Err(e) => sum.record_failure(&path, &meta.id, &e),
                            _ => sum.skip(meta.kind, 1),
                        }
                        opts.reporter.report(Event::TaskProgress {
                            task: Task::Export,
                            done: 1,
                            bytes: 0,
                        });
                        continue;
                    }
                };
                if !started {
                    started = true;
                    sum.folders += 1;
                    sink.folder(&dirs).await?;
                }
                sum.messages += 1;
                sum.bytes += data.len() as u64;
                opts.reporter.report(Event::TaskProgress {
                    task: Task::Export,
                    done: 1,
                    bytes: data.len() as u64,
                });
                sink.message(Item {
                    folder_dirs: &dirs,
                    meta,
                    data,
                    file,
                })
                .await?;
            }
        }
    }
    if opts.message.is_some() && sum.messages == 0 && sum.failed.is_empty() {
        return Err(match sum.skipped.first() {
            Some(s) => Error::invalid(format!(
                "the item has no {} form: {}",
                opts.format,
                takers(s.kind)
            )),
            None => Error::invalid("the message is not in the selected folders"),
        });
    }
    Ok(sum)
}

/// Whether the folder and kind filters select folder `f`.
fn folder_wanted(opts: &SaveOptions, f: &crate::model::FolderSnapshot) -> bool {
    opts.folder.as_deref().is_none_or(|w| folder_selected(f, w))
        && opts.kind.is_none_or(|k| k == f.folder.kind)
}

/// What reading an item needs of [`SaveOptions`] (owned, for tasks that read ahead).
#[derive(Debug, Clone, Copy)]
struct ReadOpts {
    format: ExportFormat,
    skip_verify: bool,
}

impl ReadOpts {
    fn of(opts: &SaveOptions) -> Self {
        Self {
            format: opts.format,
            skip_verify: opts.skip_verify,
        }
    }
}

/// What [`read_item`] gives: the bytes of the item's file and, for a converted item, its
/// name stem and extension; `None` when the format does not take it.
type ReadItem = Option<(bytes::Bytes, Option<(String, &'static str)>)>;

/// Items read ahead of the one being written: each is fetched, decrypted and checked in a
/// task of its own (the AEAD, decompression and content id run on the blocking pool), so
/// several messages are decrypted in parallel while the sink writes them in order. Bounded
/// by count and by stored size (a large item is read alone), so memory stays a few
/// messages whatever the mailbox holds.
#[derive(Default)]
struct ReadAhead<'a> {
    queue: std::collections::VecDeque<(&'a MessageMeta, tokio::task::JoinHandle<Result<ReadItem>>)>,
    bytes: u64,
}

impl<'a> ReadAhead<'a> {
    /// At most this many items in flight.
    const ITEMS: usize = 8;
    /// At most this many bytes (by recorded size) in flight beyond the first item.
    const BYTES: u64 = 16 << 20;

    fn fill(
        &mut self,
        wanted: &mut impl Iterator<Item = &'a MessageMeta>,
        repo: &Repository,
        opts: ReadOpts,
    ) {
        while self.queue.len() < Self::ITEMS && (self.queue.is_empty() || self.bytes < Self::BYTES)
        {
            let Some(meta) = wanted.next() else { return };
            let (repo, owned) = (repo.clone(), meta.clone());
            let task = tokio::spawn(async move { read_item(&repo, opts, &owned).await });
            self.bytes += meta.mime_size;
            self.queue.push_back((meta, task));
        }
    }

    async fn next(&mut self) -> Option<(&'a MessageMeta, Result<ReadItem>)> {
        let (meta, task) = self.queue.pop_front()?;
        self.bytes = self.bytes.saturating_sub(meta.mime_size);
        Some((
            meta,
            task.await.map_err(|e| Error::task(&e)).and_then(|r| r),
        ))
    }
}

impl Drop for ReadAhead<'_> {
    /// An export that stops early (a failed write) stops the reads it started.
    fn drop(&mut self) {
        for (_, task) in &self.queue {
            task.abort();
        }
    }
}

/// What a file of `meta` in the export holds: the MIME of a message (name from its
/// metadata) or an item's converted file with its name stem and extension; `None` when
/// the format does not take the item (its kind, or no readable JSON stored).
async fn read_item(repo: &Repository, opts: ReadOpts, meta: &MessageMeta) -> Result<ReadItem> {
    if !opts.format.holds(meta.kind) {
        return Ok(None);
    }
    match opts.format.item_format() {
        None => Ok(Some((read_mime(repo, opts, meta).await?, None))),
        Some(format) => Ok(read_converted(repo, opts, meta, format)
            .await?
            .map(|(b, stem)| (b, Some((stem, format.extension()))))),
    }
}

/// Refuse a kind (`--kind`, or the kind of the one `--message`) the format cannot hold,
/// before anything is written.
fn check_kind(opts: &SaveOptions, kind: Option<ItemKind>) -> Result<()> {
    match kind {
        Some(kind) if !opts.format.holds(kind) => Err(Error::invalid(format!(
            "--format {} does not hold {kind} items; {}",
            opts.format,
            takers(kind)
        ))),
        _ => Ok(()),
    }
}

/// Which formats take items of `kind`, as a sentence for messages.
fn takers(kind: ItemKind) -> String {
    let formats: Vec<&str> = ExportFormat::taking(kind)
        .into_iter()
        .map(ExportFormat::name)
        .collect();
    if formats.is_empty() {
        format!("no export format takes {kind} (atlas restore brings them back)")
    } else {
        format!("--format {} takes them", formats.join(" or "))
    }
}

/// How many items the folder and kind filters select in folders of kinds the format holds
/// (what the export's progress counts to).
fn selected_messages(record: &crate::model::SnapshotRecord, opts: &SaveOptions) -> u64 {
    record
        .folders
        .iter()
        .filter(|f| folder_wanted(opts, f) && opts.format.holds(f.folder.kind))
        .map(|f| f.stored_item_count)
        .sum()
}

/// The format writers, driven by [`walk`].
trait AsyncSink {
    async fn folder(&mut self, dirs: &[String]) -> Result<()>;
    async fn message(&mut self, item: Item<'_>) -> Result<()>;
}

// ----- eml-zip ---------------------------------------------------------------------------------

struct ZipSink<W: Write + Seek + Send + 'static> {
    zip: Option<zip::ZipWriter<ZipOut<W>>>,
    names: HashSet<String>,
    label: String,
    /// Set when the export fails: the writer's sink then takes nothing more (see [`ZipOut`]).
    abandoned: Arc<AtomicBool>,
}

/// The zip writer's sink. `zip::ZipWriter` finishes itself when it is dropped unfinished,
/// and prints to stderr when that fails — on a full disk "ZipWriter drop failed: …
/// StorageFull" beside Atlas's own error. So once a write to the real sink has failed, or
/// the export failed elsewhere (the shared `abandoned` flag), the sink is abandoned: it
/// writes nothing more and answers as a file would (from a position and length of its
/// own), so that the drop's finish succeeds silently and the real sink, which the caller
/// discards, is left as it was.
struct ZipOut<W> {
    inner: W,
    abandoned: Arc<AtomicBool>,
    pos: u64,
    len: u64,
}

impl<W: Write + Seek> ZipOut<W> {
    /// `inner` positioned at its end (a new file, an empty buffer).
    fn new(mut inner: W, abandoned: Arc<AtomicBool>) -> std::io::Result<Self> {
        let pos = inner.stream_position()?;
        Ok(Self {
            inner,
            abandoned,
            pos,
            len: pos,
        })
    }

    fn is_abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Relaxed)
    }

    /// The first failure abandons the sink; the error goes to the zip writer (and from it
    /// to the export) as it is.
    fn failed(&self, e: std::io::Error) -> std::io::Error {
        self.abandoned.store(true, Ordering::Relaxed);
        e
    }
}

impl<W: Write + Seek> Write for ZipOut<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = if self.is_abandoned() {
            buf.len()
        } else {
            self.inner.write(buf).map_err(|e| self.failed(e))?
        };
        self.pos += n as u64;
        self.len = self.len.max(self.pos);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.is_abandoned() {
            return Ok(());
        }
        self.inner.flush().map_err(|e| self.failed(e))
    }
}

impl<W: Write + Seek> Seek for ZipOut<W> {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        use std::io::SeekFrom;
        self.pos = if self.is_abandoned() {
            match to {
                SeekFrom::Start(p) => p,
                SeekFrom::End(d) => self.len.saturating_add_signed(d),
                SeekFrom::Current(d) => self.pos.saturating_add_signed(d),
            }
        } else {
            self.inner.seek(to).map_err(|e| self.failed(e))?
        };
        Ok(self.pos)
    }
}

impl<W: Write + Seek + Send + 'static> AsyncSink for ZipSink<W> {
    async fn folder(&mut self, _dirs: &[String]) -> Result<()> {
        Ok(())
    }

    async fn message(&mut self, item: Item<'_>) -> Result<()> {
        let (stem, ext) = item
            .file
            .unwrap_or_else(|| (eml_file_stem(item.meta), "eml"));
        let name = unique_name(&mut self.names, &item.folder_dirs.join("/"), &stem, ext);
        let when = item
            .meta
            .received
            .or(item.meta.sent)
            .or(item.meta.last_modified);
        let mut options = zip::write::SimpleFileOptions::default()
            .large_file(item.data.len() as u64 >= u64::from(u32::MAX));
        options = if entry_compresses(&item.data) {
            // Deflate level 1: saving was bound by deflate at the default level 6 on one
            // thread (~3 ms of CPU per message); level 1 is several times faster for a
            // few percent more bytes on mail.
            options
                .compression_method(zip::CompressionMethod::Deflated)
                .compression_level(Some(1))
        } else {
            options.compression_method(zip::CompressionMethod::Stored)
        };
        if let Some(t) = when.and_then(zip_time) {
            options = options.last_modified_time(t);
        }
        let mut zip = self
            .zip
            .take()
            .ok_or_else(|| Error::invalid("zip writer already failed"))?;
        let data = item.data;
        let label = self.label.clone();
        let abandoned = self.abandoned.clone();
        let zip = tokio::task::spawn_blocking(move || -> Result<zip::ZipWriter<ZipOut<W>>> {
            let written = zip
                .start_file(name, options)
                .map_err(|e| zip_error(&label, e))
                .and_then(|()| zip.write_all(&data).map_err(|e| io_error(&label, e)));
            match written {
                Ok(()) => Ok(zip),
                Err(e) => {
                    // Dropped here, unfinished: nothing more goes to the sink.
                    abandoned.store(true, Ordering::Relaxed);
                    Err(e)
                }
            }
        })
        .await
        .map_err(|e| Error::task(&e))??;
        self.zip = Some(zip);
        Ok(())
    }
}

/// Entries from this size on are test-deflated on a sample first; smaller ones are
/// deflated without asking (a few KiB cost little either way).
const ZIP_SAMPLE_FROM: usize = 32 << 10;
/// The sample: from the middle of the entry, where a message with an attachment has it.
const ZIP_SAMPLE_LEN: usize = 8 << 10;

/// Whether a zip entry is worth deflating: not when a level-1 sample of its middle keeps
/// 70 % of its size or more. That is what an already-compressed attachment (JPEG, PDF,
/// zip, Office files) looks like in a message: base64 carries 6 bits in each 8-bit
/// character, so deflate wins those 25 % back and nothing more (~76 % on such a sample),
/// at the full cost of deflate; text, HTML and base64 of text keep ≤ 55 %. Such entries
/// are `Stored`: same bytes as the message, none of deflate's CPU.
fn entry_compresses(data: &[u8]) -> bool {
    if data.len() < ZIP_SAMPLE_FROM {
        return true;
    }
    let start = data.len() / 2 - ZIP_SAMPLE_LEN / 2;
    let sample = &data[start..start + ZIP_SAMPLE_LEN];
    let deflated = miniz_oxide::deflate::compress_to_vec(sample, 1);
    deflated.len() * 10 < sample.len() * 7
}

/// Write a zip export (`eml-zip`, or `ics`/`vcf`/`json` by `opts.format`) to any seekable
/// sink (a file, a `Cursor`). Returns the summary
/// and the sink after the central directory was written. `label` names the sink in errors.
pub async fn write_eml_zip<W: Write + Seek + Send + 'static>(
    repo: &Repository,
    opts: &SaveOptions,
    sink: W,
    label: &str,
) -> Result<(SaveSummary, W)> {
    let abandoned = Arc::new(AtomicBool::new(false));
    let out = ZipOut::new(sink, abandoned.clone()).map_err(|e| io_error(label, e))?;
    let mut writer = zip::ZipWriter::new(out);
    writer.set_comment(ZIP_COMMENT);
    let mut z = ZipSink {
        zip: Some(writer),
        names: HashSet::new(),
        label: label.to_owned(),
        abandoned: abandoned.clone(),
    };
    let sum = match walk(repo, opts, &mut z).await {
        Ok(sum) => sum,
        Err(e) => {
            abandoned.store(true, Ordering::Relaxed);
            return Err(e);
        }
    };
    let zip = z
        .zip
        .take()
        .ok_or_else(|| Error::invalid("zip writer already failed"))?;
    let label = label.to_owned();
    // A finish that fails is followed by the drop's own try; the write that failed has
    // abandoned the sink already (`ZipOut::failed`), so that try writes nothing.
    let w = tokio::task::spawn_blocking(move || zip.finish().map_err(|e| zip_error(&label, e)))
        .await
        .map_err(|e| Error::task(&e))??;
    if w.is_abandoned() {
        return Err(Error::invalid(
            "the zip writer went on after its sink failed",
        ));
    }
    Ok((sum, w.inner))
}

impl<S: AsyncSink> AsyncSink for &mut S {
    async fn folder(&mut self, dirs: &[String]) -> Result<()> {
        (**self).folder(dirs).await
    }
    async fn message(&mut self, item: Item<'_>) -> Result<()> {
        (**self).message(item).await
    }
}

// ----- mbox ------------------------------------------------------------------------------------

/// Writes messages to one mboxrd stream.
#[derive(Debug)]
pub struct MboxWriter<W: Write> {
    out: W,
}

impl<W: Write> MboxWriter<W> {
    /// Wrap a writer.
    pub fn new(out: W) -> Self {
        Self { out }
    }

    /// Append one message: a `From ` separator line with the envelope sender and date, the
    /// message with LF line ends and mboxrd quoting (`>*From ` gains one `>`), and a blank
    /// line.
    pub fn write_message(
        &mut self,
        sender: &str,
        date: DateTime<Utc>,
        mime: &[u8],
    ) -> std::io::Result<()> {
        let sender: String = sender
            .chars()
            .filter(char::is_ascii_graphic)
            .collect::<String>();
        let sender = if sender.is_empty() {
            "MAILER-DAEMON".into()
        } else {
            sender
        };
        writeln!(
            self.out,
            "From {sender} {}",
            date.format("%a %b %e %H:%M:%S %Y")
        )?;
        let body = mime.strip_suffix(b"\n").unwrap_or(mime);
        for line in body.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let unquoted = line.iter().position(|b| *b != b'>').unwrap_or(line.len());
            if line[unquoted..].starts_with(b"From ") {
                self.out.write_all(b">")?;
            }
            self.out.write_all(line)?;
            self.out.write_all(b"\n")?;
        }
        self.out.write_all(b"\n")
    }

    /// Flush and return the writer.
    pub fn into_inner(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

struct MboxSink {
    root: PathBuf,
    current: Option<MboxWriter<std::io::BufWriter<std::fs::File>>>,
    names: HashSet<String>,
}

impl MboxSink {
    fn close(&mut self) -> Result<()> {
        if let Some(w) = self.current.take() {
            let root = self.root.display().to_string();
            let f = w.into_inner().map_err(|e| io_error(&root, e))?;
            let f = f
                .into_inner()
                .map_err(|e| io_error(&root, e.into_error()))?;
            f.sync_all().map_err(|e| io_error(&root, e))?;
        }
        Ok(())
    }
}

impl AsyncSink for MboxSink {
    async fn folder(&mut self, dirs: &[String]) -> Result<()> {
        self.close()?;
        let (parent, leaf) = dirs.split_at(dirs.len().saturating_sub(1));
        let name = unique_name(
            &mut self.names,
            &parent.join("/"),
            leaf.first().map_or("_", String::as_str),
            "mbox",
        );
        let path = self.root.join(&name);
        let label = path.display().to_string();
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).map_err(|e| io_error(&label, e))?;
        }
        let f = std::fs::File::create(&path).map_err(|e| io_error(&label, e))?;
        self.current = Some(MboxWriter::new(std::io::BufWriter::new(f)));
        Ok(())
    }

    async fn message(&mut self, item: Item<'_>) -> Result<()> {
        let w = self
            .current
            .as_mut()
            .ok_or_else(|| Error::invalid("mbox message before its folder"))?;
        let sender = item.meta.from.as_ref().map_or("", |f| f.address.as_str());
        let date = item
            .meta
            .received
            .or(item.meta.sent)
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        let label = self.root.display().to_string();
        w.write_message(sender, date, &item.data)
            .map_err(|e| io_error(&label, e))
    }
}

// ----- to a path -------------------------------------------------------------------------------

/// How an export lies on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputKind {
    /// One zip file (`eml-zip`).
    ZipFile,
    /// One mboxrd file with every selected folder's messages (`-o x.mbox`, `-o -`).
    MboxFile,
    /// A directory with one mboxrd file per folder.
    MboxDirectory,
}

/// Where an export will be written, decided before anything is written: the CLI shows it
/// and asks before an existing export is replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputPlan {
    /// The final path.
    pub path: PathBuf,
    /// Its layout.
    pub kind: OutputKind,
    /// An earlier Atlas export of the same kind is at `path`; writing replaces it.
    pub replaces: bool,
}

/// Decide where an export of `opts` goes when the user names `given` (`None`: the current
/// directory). Atlas only ever replaces what it wrote itself:
///
/// - an existing directory, or a path ending in a separator, means "write the export
///   inside it" under a name made of mailbox and snapshot (the directory is created if
///   missing) — never "replace the directory";
/// - `--format mbox` to a name ending in `.mbox` is one mbox file; otherwise mbox output is
///   a directory of one file per folder;
/// - an existing file may only be replaced when it is itself an export of the same kind
///   (`replaces`); anything else at the final path (another file, a directory, a link) is
///   refused as [`Error::InvalidInput`].
pub async fn plan_output(
    repo: &Repository,
    opts: &SaveOptions,
    given: Option<&Path>,
) -> Result<OutputPlan> {
    let snap = opts.snapshot.load(repo).await?;
    plan_output_for(given, snap.record.mailbox.address(), snap.id, opts.format)
}

/// [`plan_output`] once the snapshot is known.
pub fn plan_output_for(
    given: Option<&Path>,
    mailbox: &str,
    snapshot: SnapshotId,
    format: ExportFormat,
) -> Result<OutputPlan> {
    let default_kind = match format {
        ExportFormat::Mbox => OutputKind::MboxDirectory,
        _ => OutputKind::ZipFile,
    };
    let inside = |dir: &Path| dir.join(export_file_name(mailbox, snapshot, format, default_kind));
    let (path, kind) = match given {
        None => (inside(Path::new("")), default_kind),
        Some(p) if ends_with_separator(p) || p.is_dir() => (inside(p), default_kind),
        Some(p) => {
            let kind = match format {
                ExportFormat::EmlZip
                | ExportFormat::Ics
                | ExportFormat::Vcf
                | ExportFormat::Json => OutputKind::ZipFile,
                ExportFormat::Mbox
                    if p.extension()
                        .is_some_and(|e| e.eq_ignore_ascii_case("mbox")) =>
                {
                    OutputKind::MboxFile
                }
                ExportFormat::Mbox => OutputKind::MboxDirectory,
            };
            (p.to_path_buf(), kind)
        }
    };
    let replaces = match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(io_error(&path.display().to_string(), e)),
        Ok(meta) => {
            let label = path.display();
            if !meta.file_type().is_file() || kind == OutputKind::MboxDirectory {
                return Err(Error::invalid(format!(
                    "{label} already exists and is not a file Atlas exported; Atlas never replaces it (choose another path)"
                )));
            }
            if !is_export(&path, kind) {
                return Err(Error::invalid(format!(
                    "{label} already exists and is not an Atlas export; Atlas never replaces it (choose another path)"
                )));
            }
            true
        }
    };
    Ok(OutputPlan {
        path,
        kind,
        replaces,
    })
}

/// The name of an export of `format` written inside a directory: [`export_name`] for the
/// mail formats, `atlas-<mailbox>-<snapshot>-<ics|vcf|json>.zip` for the others (so a
/// calendar export never lands on the mail export of the same snapshot).
pub fn export_file_name(
    mailbox: &str,
    snapshot: SnapshotId,
    format: ExportFormat,
    kind: OutputKind,
) -> String {
    match format.item_format() {
        None => export_name(mailbox, snapshot, kind),
        Some(f) => {
            let zip = export_name(mailbox, snapshot, OutputKind::ZipFile);
            let base = zip.strip_suffix(".zip").unwrap_or(&zip);
            format!("{base}-{}.zip", f.extension())
        }
    }
}

/// `atlas-<mailbox>-<snapshot>.zip` (or `.mbox`, or `-mbox` for a directory), with only
/// characters every file system accepts.
pub fn export_name(mailbox: &str, snapshot: SnapshotId, kind: OutputKind) -> String {
    let id = snapshot.to_string();
    let base: String = format!("atlas-{mailbox}-{}", &id[..8])
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '@') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match kind {
        OutputKind::ZipFile => format!("{base}.zip"),
        OutputKind::MboxFile => format!("{base}.mbox"),
        OutputKind::MboxDirectory => format!("{base}-mbox"),
    }
}

fn ends_with_separator(p: &Path) -> bool {
    let text = p.as_os_str().to_string_lossy();
    text.ends_with('/') || text.ends_with(std::path::MAIN_SEPARATOR)
}

/// Whether the file at `path` is an export Atlas may replace: a zip whose comment marks it
/// as an Atlas export, or whose entries are all `.eml` files (exports written before the
/// comment existed); an mbox file that starts with a `From ` line.
fn is_export(path: &Path, kind: OutputKind) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    match kind {
        OutputKind::ZipFile => zip::ZipArchive::new(std::io::BufReader::new(file)).is_ok_and(|z| {
            z.comment().starts_with(ZIP_COMMENT.as_bytes())
                || (!z.is_empty()
                    && z.file_names().all(|n| {
                        Path::new(n)
                            .extension()
                            .is_some_and(|e| e.eq_ignore_ascii_case("eml"))
                    }))
        }),
        OutputKind::MboxFile => {
            let mut head = [0u8; 5];
            std::io::Read::read_exact(&mut std::io::BufReader::new(file), &mut head).is_ok()
                && &head == b"From "
        }
        OutputKind::MboxDirectory => false,
    }
}

/// The comment of every zip Atlas writes, by which a later `save -y` recognises it.
const ZIP_COMMENT: &str = "Atlas export";

/// Export to the path [`plan_output`] picks for `given` (see there). An existing export is
/// replaced only with `overwrite` (the CLI asks first); otherwise [`Error::OutputExists`].
/// The export is built under a hidden temporary name beside the final path
/// (`.<name>.partial-<random>`), locked while it is written, and renamed only when
/// complete; on failure or cancellation (the future dropped) it is removed. Temporary
/// outputs of earlier saves that were killed (unlocked: their process is gone) are removed
/// first; nothing else is ever removed.
pub async fn save_to_path(
    repo: &Repository,
    opts: &SaveOptions,
    given: &Path,
    overwrite: bool,
) -> Result<SaveSummary> {
    let snap = opts.snapshot.load(repo).await?;
    let plan = plan_output_for(
        Some(given),
        snap.record.mailbox.address(),
        snap.id,
        opts.format,
    )?;
    let label = plan.path.display().to_string();
    if plan.replaces && !overwrite {
        return Err(Error::OutputExists { path: label });
    }
    if ends_with_separator(given) && !given.is_dir() {
        std::fs::create_dir_all(given).map_err(|e| io_error(&given.display().to_string(), e))?;
    }
    let file_name = plan
        .path
        .file_name()
        .ok_or_else(|| Error::invalid(format!("{label} is not a file path")))?
        .to_string_lossy()
        .into_owned();
    let parent = match plan.path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    sweep_stale_partials(&parent, &file_name, plan.kind);
    let opts = SaveOptions {
        snapshot: SnapshotSelector::Id(snap.id),
        ..opts.clone()
    };
    let partial = Partial::create(&parent, &file_name, plan.kind)?;
    let mut sum = match plan.kind {
        OutputKind::ZipFile => save_zip(repo, &opts, &partial).await?,
        OutputKind::MboxFile => save_mbox_file(repo, &opts, &partial).await?,
        OutputKind::MboxDirectory => save_mbox(repo, &opts, &partial.path).await?,
    };
    partial.commit(&plan.path)?;
    sum.output = Some(plan.path);
    Ok(sum)
}

/// Export as one mbox stream (every selected folder, in folder order) to any writer, e.g.
/// stdout for `save --format mbox -o -`. Writes run on the blocking pool: a pipe nobody
/// reads blocks there, never an async worker (so a cancellation is still seen).
pub async fn write_mbox<W: Write + Send + 'static>(
    repo: &Repository,
    opts: &SaveOptions,
    out: W,
    label: &str,
) -> Result<(SaveSummary, W)> {
    let mut sink = MboxStreamSink {
        writer: Some(MboxWriter::new(out)),
        label: label.to_owned(),
    };
    let sum = walk(repo, opts, &mut sink).await?;
    let writer = sink
        .writer
        .take()
        .ok_or_else(|| Error::invalid("mbox writer already failed"))?;
    let label = label.to_owned();
    let out =
        tokio::task::spawn_blocking(move || writer.into_inner().map_err(|e| io_error(&label, e)))
            .await
            .map_err(|e| Error::task(&e))??;
    Ok((sum, out))
}

struct MboxStreamSink<W: Write> {
    writer: Option<MboxWriter<W>>,
    label: String,
}

impl<W: Write + Send + 'static> AsyncSink for MboxStreamSink<W> {
    async fn folder(&mut self, _dirs: &[String]) -> Result<()> {
        Ok(())
    }

    async fn message(&mut self, item: Item<'_>) -> Result<()> {
        let mut w = self
            .writer
            .take()
            .ok_or_else(|| Error::invalid("mbox writer already failed"))?;
        let sender = item
            .meta
            .from
            .as_ref()
            .map_or(String::new(), |f| f.address.clone());
        let date = item
            .meta
            .received
            .or(item.meta.sent)
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        let mime = item.data;
        let label = self.label.clone();
        let w = tokio::task::spawn_blocking(move || -> Result<MboxWriter<W>> {
            w.write_message(&sender, date, &mime)
                .map_err(|e| io_error(&label, e))?;
            Ok(w)
        })
        .await
        .map_err(|e| Error::task(&e))??;
        self.writer = Some(w);
        Ok(())
    }
}

async fn save_zip(repo: &Repository, opts: &SaveOptions, partial: &Partial) -> Result<SaveSummary> {
    let label = partial.path.display().to_string();
    let file = partial.file()?;
    let (sum, w) = write_eml_zip(repo, opts, std::io::BufWriter::new(file), &label).await?;
    let file = w
        .into_inner()
        .map_err(|e| io_error(&label, e.into_error()))?;
    file.sync_all().map_err(|e| io_error(&label, e))?;
    Ok(sum)
}

async fn save_mbox_file(
    repo: &Repository,
    opts: &SaveOptions,
    partial: &Partial,
) -> Result<SaveSummary> {
    let label = partial.path.display().to_string();
    let file = partial.file()?;
    let (sum, w) = write_mbox(repo, opts, std::io::BufWriter::new(file), &label).await?;
    let file = w
        .into_inner()
        .map_err(|e| io_error(&label, e.into_error()))?;
    file.sync_all().map_err(|e| io_error(&label, e))?;
    Ok(sum)
}

async fn save_mbox(repo: &Repository, opts: &SaveOptions, root: &Path) -> Result<SaveSummary> {
    let mut sink = MboxSink {
        root: root.to_path_buf(),
        current: None,
        names: HashSet::new(),
    };
    let sum = walk(repo, opts, &mut sink).await?;
    sink.close()?;
    Ok(sum)
}

/// Name of the lock file inside a partial mbox directory (removed once it is complete).
const DIR_LOCK: &str = ".atlas-partial";

/// The temporary output of one save: `.<final name>.partial-<12 hex>` beside the final
/// path, a file (zip, mbox file) or a directory (mbox directory, with a [`DIR_LOCK`] file).
/// It holds an exclusive lock on that file for as long as it lives, so a later save can
/// tell a partial whose writer was killed (lock free) from one being written; dropped
/// without [`Partial::commit`], it removes itself.
struct Partial {
    path: PathBuf,
    kind: OutputKind,
    /// Holds the lock; the zip or mbox writer gets a clone of the handle.
    lock: Option<std::fs::File>,
    committed: bool,
}

impl Partial {
    fn create(parent: &Path, file_name: &str, kind: OutputKind) -> Result<Self> {
        let mut tag = [0u8; 6];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut tag);
        let path = parent.join(format!(".{file_name}.partial-{}", hex::encode(tag)));
        let label = path.display().to_string();
        let mut partial = Self {
            path,
            kind,
            lock: None,
            committed: false,
        };
        let lock_path = if kind == OutputKind::MboxDirectory {
            std::fs::create_dir(&partial.path).map_err(|e| io_error(&label, e))?;
            partial.path.join(DIR_LOCK)
        } else {
            partial.path.clone()
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&lock_path)
            .map_err(|e| io_error(&label, e))?;
        // Advisory: where the file system has no locks, a killed save's partial is left
        // alone (never removed while in doubt).
        let _ = try_lock(&file);
        partial.lock = Some(file);
        Ok(partial)
    }

    /// A handle to write the partial file through (zip and mbox file layouts).
    fn file(&self) -> Result<std::fs::File> {
        let label = self.path.display().to_string();
        self.lock
            .as_ref()
            .ok_or_else(|| Error::invalid("partial output already closed"))?
            .try_clone()
            .map_err(|e| io_error(&label, e))
    }

    /// Move the complete output to `final_path` (replacing an earlier export file there;
    /// [`plan_output`] refused anything else) and make the new name durable.
    fn commit(mut self, final_path: &Path) -> Result<()> {
        let label = final_path.display().to_string();
        std::fs::rename(&self.path, final_path).map_err(|e| io_error(&label, e))?;
        self.committed = true;
        if self.kind == OutputKind::MboxDirectory {
            let _ = std::fs::remove_file(final_path.join(DIR_LOCK));
        }
        self.lock = None;
        if let Some(parent) = final_path.parent() {
            sync_dir(parent);
        }
        Ok(())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        // Best effort: the error (or the cancellation) that got us here is what counts.
        if self.kind == OutputKind::MboxDirectory {
            let _ = std::fs::remove_dir_all(&self.path);
        } else {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Remove temporary outputs that killed saves of the same final name left in `parent`:
/// only names of exactly our pattern, only of the same layout, only when their lock is
/// free (the writer is gone), and for a file only when it holds what a partial export
/// starts with. Everything else, and any error, is left alone.
fn sweep_stale_partials(parent: &Path, file_name: &str, kind: OutputKind) {
    let prefix = format!(".{file_name}.partial-");
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(tag) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        if tag.len() != 12 || !tag.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let is_dir = kind == OutputKind::MboxDirectory;
        if (is_dir && !meta.file_type().is_dir()) || (!is_dir && !meta.file_type().is_file()) {
            continue;
        }
        let lock_path = if is_dir {
            path.join(DIR_LOCK)
        } else {
            path.clone()
        };
        let Ok(mut lock) = std::fs::OpenOptions::new().read(true).open(&lock_path) else {
            continue;
        };
        if !try_lock(&lock) {
            continue; // being written right now (or no locks here: leave it)
        }
        if !is_dir && !looks_like_partial(&mut lock, kind) {
            continue;
        }
        let removed = if is_dir {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if removed.is_ok() {
            tracing::info!(path = %path.display(), "removed the temporary output of an interrupted save");
        }
    }
}

/// A partial zip starts with a local file header (`PK\x03\x04`), a partial mbox file with
/// `From `; both may still be empty.
fn looks_like_partial(file: &mut std::fs::File, kind: OutputKind) -> bool {
    let mut head = Vec::with_capacity(5);
    if std::io::Read::read_to_end(&mut std::io::Read::take(&mut *file, 5), &mut head).is_err() {
        return false;
    }
    let magic: &[u8] = match kind {
        OutputKind::ZipFile => b"PK\x03\x04",
        _ => b"From ",
    };
    head.is_empty() || head.starts_with(&magic[..head.len().min(magic.len())])
}

/// Take an exclusive advisory lock without waiting; `false` when another open file holds
/// it (or locks are not available: callers then leave files alone).
#[cfg(unix)]
fn try_lock(file: &std::fs::File) -> bool {
    rustix::fs::flock(file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok()
}

#[cfg(not(unix))]
fn try_lock(_file: &std::fs::File) -> bool {
    false
}

#[cfg(unix)]
fn sync_dir(dir: &Path) {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) {}

/// Local output errors travel as store I/O errors naming the path; a full disk is
/// `StorageFull` so the CLI can say so plainly.
fn io_error(label: &str, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::StorageFull {
        Error::Store(StoreError::StorageFull {
            key: label.to_owned(),
        })
    } else {
        Error::Store(StoreError::Io {
            key: label.to_owned(),
            source: e,
        })
    }
}

fn zip_error(label: &str, e: zip::result::ZipError) -> Error {
    match e {
        zip::result::ZipError::Io(io) => io_error(label, io),
        other => Error::Store(StoreError::Io {
            key: label.to_owned(),
            source: std::io::Error::other(other.to_string()),
        }),
    }
}

fn zip_time(t: DateTime<Utc>) -> Option<zip::DateTime> {
    zip::DateTime::from_date_and_time(
        u16::try_from(t.year()).ok()?,
        t.month() as u8,
        t.day() as u8,
        t.hour() as u8,
        t.minute() as u8,
        t.second() as u8,
    )
    .ok()
}

// ----- names -----------------------------------------------------------------------------------

/// `YYYY-MM-DD_HHMMSS_subject` (UTC received, else sent, else `unknown`).
pub fn eml_file_stem(meta: &MessageMeta) -> String {
    let ts = meta.received.or(meta.sent).map_or_else(
        || "unknown".into(),
        |d| d.format("%Y-%m-%d_%H%M%S").to_string(),
    );
    let subject = match &meta.subject {
        None => "no-subject".to_owned(),
        Some(s) => {
            let s = sanitize_subject(s);
            if s.is_empty() { "untitled".into() } else { s }
        }
    };
    format!("{ts}_{subject}")
}

/// File-name form of a subject: path and shell-hostile characters and controls removed,
/// dot runs collapsed, whitespace runs turned into `-`, `-` runs collapsed, trimmed, cut to
/// 80 characters. Non-ASCII letters are kept.
pub fn sanitize_subject(s: &str) -> String {
    let mut out = String::new();
    let mut last = '\0';
    for c in s.chars() {
        if matches!(c, '<' | '>' | ':' | '"' | '/' | '\\' | '|' | '?' | '*')
            || c.is_control()
            || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
        {
            continue;
        }
        let c = if c.is_whitespace() { '-' } else { c };
        if (c == '-' || c == '.') && last == c {
            continue;
        }
        out.push(c);
        last = c;
    }
    let cut: String = out
        .trim_matches(|c| c == '-' || c == '.')
        .chars()
        .take(MAX_SUBJECT_CHARS)
        .collect();
    cut.trim_matches(|c| c == '-' || c == '.').to_owned()
}

/// Directory form of a folder name: path-hostile characters and controls become `_`,
/// leading/trailing dots and spaces go, Windows device names get a `_` prefix, empty
/// becomes `_`.
pub fn sanitize_folder(s: &str) -> String {
    let replaced: String = s
        .chars()
        .map(|c| {
            if matches!(c, '<' | '>' | ':' | '"' | '/' | '\\' | '|' | '?' | '*')
                || c.is_control()
                || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
            {
                '_'
            } else {
                c
            }
        })
        .collect();
    let trimmed: String = replaced
        .trim_matches(|c: char| c == '.' || c.is_whitespace())
        .chars()
        .take(MAX_FOLDER_CHARS)
        .collect();
    let trimmed = trimmed.trim_end_matches(|c: char| c == '.' || c.is_whitespace());
    let upper = trimmed
        .split('.')
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    let reserved = matches!(upper.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || ((upper.starts_with("COM") || upper.starts_with("LPT"))
            && upper.len() == 4
            && upper.as_bytes()[3].is_ascii_digit());
    if trimmed.is_empty() {
        "_".into()
    } else if reserved {
        format!("_{trimmed}")
    } else {
        trimmed.to_owned()
    }
}

/// `dir/stem.ext`, numbered `stem_1.ext`, `stem_2.ext` … until unused (case-insensitive).
fn unique_name(used: &mut HashSet<String>, dir: &str, stem: &str, ext: &str) -> String {
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    let mut n = 0u32;
    loop {
        let name = if n == 0 {
            format!("{prefix}{stem}.{ext}")
        } else {
            format!("{prefix}{stem}_{n}.{ext}")
        };
        if used.insert(name.to_lowercase()) {
            return name;
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_sanitizing() {
        assert_eq!(
            sanitize_subject("Héllo  wörld: test/1?"),
            "Héllo-wörld-test1"
        );
        assert_eq!(sanitize_subject("..a...b.."), "a.b");
        assert_eq!(sanitize_subject("  -- x --  "), "x");
        assert_eq!(sanitize_subject("\x1b[31m<>"), "[31m");
        assert_eq!(sanitize_subject(&"é".repeat(200)).chars().count(), 80);
        assert_eq!(sanitize_subject("???"), "");
    }

    #[test]
    fn folder_sanitizing() {
        assert_eq!(sanitize_folder("Inbox"), "Inbox");
        assert_eq!(sanitize_folder("a/b\\c"), "a_b_c");
        assert_eq!(sanitize_folder(".."), "_");
        assert_eq!(sanitize_folder(" .hidden. "), "hidden");
        assert_eq!(sanitize_folder("con"), "_con");
        assert_eq!(sanitize_folder("COM1.txt"), "_COM1.txt");
        assert_eq!(sanitize_folder("Computers"), "Computers");
    }

    #[test]
    fn names_are_numbered_case_insensitively() {
        let mut used = HashSet::new();
        assert_eq!(unique_name(&mut used, "Inbox", "a", "eml"), "Inbox/a.eml");
        assert_eq!(unique_name(&mut used, "Inbox", "A", "eml"), "Inbox/A_1.eml");
        assert_eq!(unique_name(&mut used, "Inbox", "a", "eml"), "Inbox/a_2.eml");
        assert_eq!(unique_name(&mut used, "", "a", "eml"), "a.eml");
    }

    #[test]
    fn mboxrd_quotes_from_lines_and_ends_with_blank_line() {
        let mut w = MboxWriter::new(Vec::new());
        let t = chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 3, 1, 8, 5, 9).unwrap();
        w.write_message(
            "a b@x",
            t,
            b"Subject: s\r\n\r\nFrom here\r\n>From there\r\nok\r\n",
        )
        .unwrap();
        let out = String::from_utf8(w.into_inner().unwrap()).unwrap();
        assert_eq!(
            out,
            "From ab@x Sun Mar  1 08:05:09 2026\nSubject: s\n\n>From here\n>>From there\nok\n\n"
        );
    }
}
