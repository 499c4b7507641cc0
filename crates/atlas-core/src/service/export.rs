//! `atlas save`: export a snapshot (or part of it) as a zip of `.eml` files or as mboxrd
//! files, from the repository alone — the mailbox need not exist in the tenant any more.
//!
//! - `eml-zip`: the stored MIME byte for byte, one entry per message, directories = folder
//!   paths, names `YYYY-MM-DD_HHMMSS_subject.eml` (UTC received time; sanitized;
//!   collisions numbered `_1`, `_2` … case-insensitively, so the archive unpacks on
//!   Windows and macOS too). Entries are deflated and carry the received time.
//! - `mbox`: one mboxrd file per folder (`<folder path>.mbox`, nested folders in
//!   subdirectories). mbox is a Unix, LF-terminated format, so CRLF line ends become LF
//!   there; `>From ` quoting follows mboxrd, so any reader that un-quotes gets the message
//!   back exactly (modulo line ends).
//!
//! Memory holds one message and one folder list at a time; compression runs on the
//! blocking pool. Output to a path is written under a temporary name next to it and renamed
//! only when complete, so an interrupted or failed export (disk full) never leaves a file
//! posing as a finished export. Each message's SHA-256 is checked against the one
//! recorded at backup unless `skip_verify`; a message that fails is skipped and listed.

use std::collections::HashSet;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::Serialize;

use super::catalog::{SnapshotSelector, find_message, folder_path, folder_selected};
use super::read::check_sha;
use crate::error::{Error, Result};
use crate::model::{MessageId, MessageMeta, SnapshotId};
use crate::ports::StoreError;
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
    /// A directory of mboxrd files, one per folder.
    Mbox,
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
    /// Format.
    pub format: ExportFormat,
    /// Skip the SHA-256 comparison (the repository's own checks still run).
    pub skip_verify: bool,
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
    /// Messages written.
    pub messages: usize,
    /// MIME bytes written (before compression).
    pub bytes: u64,
    /// Messages skipped because they failed to read or verify (the CLI exits non-zero).
    pub failed: Vec<SaveFailure>,
    /// Output path, when written to a path.
    pub output: Option<PathBuf>,
}

impl SaveSummary {
    /// Every selected message was exported.
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
    }
}

/// One message handed to a format writer.
struct Item<'a> {
    folder_dirs: &'a [String],
    meta: &'a MessageMeta,
    mime: bytes::Bytes,
}

/// Walk the selected messages in folder order and hand each verified one to `sink`.
/// `sink` gets `None` at the start of every folder that has selected messages.
async fn walk<F>(repo: &Repository, opts: &SaveOptions, mut sink: F) -> Result<SaveSummary>
where
    F: AsyncSink,
{
    let snap = opts.snapshot.load(repo).await?;
    let only = match &opts.message {
        Some(r) => Some(find_message(repo, &snap.record, r).await?),
        None => None,
    };
    let mut sum = SaveSummary {
        snapshot: snap.id,
        mailbox: snap.record.mailbox.address().to_owned(),
        format: opts.format,
        folders: 0,
        messages: 0,
        bytes: 0,
        failed: Vec::new(),
        output: None,
    };
    for (i, f) in snap.record.folders.iter().enumerate() {
        if opts
            .folder
            .as_deref()
            .is_some_and(|w| !folder_selected(f, w))
        {
            continue;
        }
        if only.as_ref().is_some_and(|m| m.folder_index != i) {
            continue;
        }
        let path = folder_path(f);
        let dirs: Vec<String> = if f.folder.path.is_empty() {
            vec![sanitize_folder(&f.folder.display_name)]
        } else {
            f.folder.path.iter().map(|p| sanitize_folder(p)).collect()
        };
        let items = repo.load_folder_items(&f.items).await?;
        let mut started = false;
        for meta in &items {
            if only.as_ref().is_some_and(|m| m.meta.id != meta.id) {
                continue;
            }
            let mime = match repo.read_blob(&meta.mime).await.and_then(|b| {
                if opts.skip_verify {
                    Ok(b)
                } else {
                    check_sha(&b, &meta.mime_sha256, &meta.mime).map(|()| b)
                }
            }) {
                Ok(b) => b,
                Err(e) => {
                    sum.failed.push(SaveFailure {
                        folder: path.clone(),
                        message_id: meta.id.clone(),
                        error: e.to_string(),
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
            sum.bytes += mime.len() as u64;
            sink.message(Item {
                folder_dirs: &dirs,
                meta,
                mime,
            })
            .await?;
        }
    }
    if opts.message.is_some() && sum.messages == 0 && sum.failed.is_empty() {
        return Err(Error::InvalidInput {
            reason: "the message is not in the selected folders".into(),
        });
    }
    Ok(sum)
}

/// The format writers, driven by [`walk`].
trait AsyncSink {
    async fn folder(&mut self, dirs: &[String]) -> Result<()>;
    async fn message(&mut self, item: Item<'_>) -> Result<()>;
}

// ----- eml-zip ---------------------------------------------------------------------------------

struct ZipSink<W: Write + Seek + Send + 'static> {
    zip: Option<zip::ZipWriter<W>>,
    names: HashSet<String>,
    label: String,
}

impl<W: Write + Seek + Send + 'static> AsyncSink for ZipSink<W> {
    async fn folder(&mut self, _dirs: &[String]) -> Result<()> {
        Ok(())
    }

    async fn message(&mut self, item: Item<'_>) -> Result<()> {
        let name = unique_name(
            &mut self.names,
            &item.folder_dirs.join("/"),
            &eml_file_stem(item.meta),
            "eml",
        );
        let when = item.meta.received.or(item.meta.sent);
        let mut options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(item.mime.len() as u64 >= u64::from(u32::MAX));
        if let Some(t) = when.and_then(zip_time) {
            options = options.last_modified_time(t);
        }
        let mut zip = self
            .zip
            .take()
            .ok_or_else(|| Error::invalid("zip writer already failed"))?;
        let mime = item.mime;
        let label = self.label.clone();
        let zip = tokio::task::spawn_blocking(move || -> Result<zip::ZipWriter<W>> {
            zip.start_file(name, options)
                .map_err(|e| zip_error(&label, e))?;
            zip.write_all(&mime).map_err(|e| io_error(&label, e))?;
            Ok(zip)
        })
        .await
        .map_err(|e| Error::task(&e))??;
        self.zip = Some(zip);
        Ok(())
    }
}

/// Write an `eml-zip` export to any seekable sink (a file, a `Cursor`). Returns the summary
/// and the sink after the central directory was written. `label` names the sink in errors.
pub async fn write_eml_zip<W: Write + Seek + Send + 'static>(
    repo: &Repository,
    opts: &SaveOptions,
    sink: W,
    label: &str,
) -> Result<(SaveSummary, W)> {
    let mut z = ZipSink {
        zip: Some(zip::ZipWriter::new(sink)),
        names: HashSet::new(),
        label: label.to_owned(),
    };
    let sum = walk(repo, opts, &mut z).await?;
    let zip = z
        .zip
        .take()
        .ok_or_else(|| Error::invalid("zip writer already failed"))?;
    let label = label.to_owned();
    let w = tokio::task::spawn_blocking(move || zip.finish().map_err(|e| zip_error(&label, e)))
        .await
        .map_err(|e| Error::task(&e))??;
    Ok((sum, w))
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
        w.write_message(sender, date, &item.mime)
            .map_err(|e| io_error(&label, e))
    }
}

// ----- to a path -------------------------------------------------------------------------------

/// Export to `path`: a zip file for `eml-zip`, a directory for `mbox`. An existing `path`
/// is replaced only with `overwrite` (the CLI asks first); otherwise `InvalidInput`. The
/// export is built under a temporary name beside `path` and renamed at the end; on any
/// failure the temporary output is removed.
pub async fn save_to_path(
    repo: &Repository,
    opts: &SaveOptions,
    path: &Path,
    overwrite: bool,
) -> Result<SaveSummary> {
    let label = path.display().to_string();
    if path.exists() && !overwrite {
        return Err(Error::InvalidInput {
            reason: format!("{label} already exists (confirm overwrite)"),
        });
    }
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::invalid(format!("{label} is not a file path")))?
        .to_string_lossy()
        .into_owned();
    let mut tag = [0u8; 6];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut tag);
    let tmp = path.with_file_name(format!(".{file_name}.partial-{}", hex::encode(tag)));
    let result = match opts.format {
        ExportFormat::EmlZip => save_zip(repo, opts, &tmp).await,
        ExportFormat::Mbox => save_mbox(repo, opts, &tmp).await,
    };
    let mut sum = match result {
        Ok(s) => s,
        Err(e) => {
            remove_any(&tmp);
            return Err(e);
        }
    };
    if overwrite && path.is_dir() {
        // A directory cannot be replaced by rename; remove the old one only now that the
        // new export is complete.
        std::fs::remove_dir_all(path).map_err(|e| io_error(&label, e))?;
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        remove_any(&tmp);
        return Err(io_error(&label, e));
    }
    sum.output = Some(path.to_path_buf());
    Ok(sum)
}

async fn save_zip(repo: &Repository, opts: &SaveOptions, tmp: &Path) -> Result<SaveSummary> {
    let label = tmp.display().to_string();
    let file = std::fs::File::create(tmp).map_err(|e| io_error(&label, e))?;
    let (sum, w) = write_eml_zip(repo, opts, std::io::BufWriter::new(file), &label).await?;
    let file = w
        .into_inner()
        .map_err(|e| io_error(&label, e.into_error()))?;
    file.sync_all().map_err(|e| io_error(&label, e))?;
    Ok(sum)
}

async fn save_mbox(repo: &Repository, opts: &SaveOptions, tmp: &Path) -> Result<SaveSummary> {
    let label = tmp.display().to_string();
    std::fs::create_dir(tmp).map_err(|e| io_error(&label, e))?;
    let mut sink = MboxSink {
        root: tmp.to_path_buf(),
        current: None,
        names: HashSet::new(),
    };
    let sum = walk(repo, opts, &mut sink).await?;
    sink.close()?;
    Ok(sum)
}

fn remove_any(p: &Path) {
    // Best effort: the error that got us here is the one to report.
    if p.is_dir() {
        let _ = std::fs::remove_dir_all(p);
    } else {
        let _ = std::fs::remove_file(p);
    }
}

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
