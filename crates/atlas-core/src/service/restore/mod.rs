//! Restore: messages from a snapshot back into a mailbox (SPEC §7).
//!
//! [`RestoreOptions`] → [`plan`] (reads the repository only; a plain value that can be
//! printed for a dry run) → [`execute`] (writes through the [`MailTarget`] port) →
//! [`RestoreSummary`].
//!
//! Everything a restore needs comes from the snapshot: folder names and paths, read state,
//! flags, categories and dates are in the records, content in the stored MIME. The source
//! mailbox is never contacted, so a departed user's mailbox restores into another one.
//!
//! Safety rules:
//!
//! 1. Nothing is written before the target mailbox is resolved and a write-access probe
//!    that writes nothing has passed ([`MailTarget::check_write_access`]), so a missing
//!    `Mail.ReadWrite` is named before the first write.
//! 2. Every created message carries a mark (the original immutable id) set in the create
//!    request itself, and a completion mark set by its last write. Each target folder is
//!    listed once before writing: complete messages are skipped, incomplete ones (an
//!    interrupted attachment upload) are completed, so a rerun never duplicates.
//! 3. A create whose answer was lost ([`TargetError::OutcomeUnknown`]) is checked by
//!    listing the folder before it is sent again.
//! 4. After each folder the target is listed again and every selected message is looked
//!    for; shortfalls are reported per folder and make the summary partial.
//! 5. A damaged object in the repository fails only that message.
//!
//! The default restore root is `Restore-<snapshot time>`: running the same restore again
//! (after an interruption) lands in the same root and resumes there instead of starting a
//! second copy.

mod config;
mod import;
mod mime;

pub use config::{ConfigEntry, ConfigOutcome, ConfigResult, PlannedConfig};
pub use import::{ImportStreamError, import_stream};

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tracing::Instrument as _;

use super::catalog::{SnapshotSelector, find_message, folder_path, folder_selected};
use super::{Cancel, Window};
use crate::error::Error;
use crate::model::{
    FolderId, FolderSnapshot, ItemId, ItemKind, KindSet, MailboxId, MessageMeta, SnapshotId,
};
use crate::ports::{
    ConfigTarget, Event, ItemImport, MailTarget, Reporter, RestoreAttachment, RestoreLedger,
    RestoreMark, TargetError, TargetItem,
};
use crate::repo::Repository;

/// How often a create with a lost answer is checked and tried again.
const CREATE_ATTEMPTS: usize = 3;
/// Rounds of "list attachments, add the missing ones" before a message is given up.
const COMPLETE_ROUNDS: usize = 3;

/// Errors that stop a restore before or while it runs (per-message failures are in the
/// summary instead).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// Repository failure or invalid input (unknown snapshot, no matching folder …).
    #[error(transparent)]
    Core(#[from] Error),
    /// The target failed in a way that stops everything (unknown mailbox, no mailbox,
    /// missing permission, sign-in).
    #[error(transparent)]
    Target(#[from] TargetError),
}

/// Where restored folders go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Destination {
    /// Under a new top-level folder: the given name, or `Restore-<snapshot time>`.
    #[default]
    Root,
    /// Under a top-level folder with this name (`--root NAME`).
    NamedRoot(String),
    /// Into the original folder paths (created when missing), skipping messages that are
    /// already there.
    InPlace,
}

/// What to restore, and where.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The snapshot (`-s`), or the newest of a mailbox, optionally as of a date (`-m`,
    /// `--as-of`).
    pub snapshot: SnapshotSelector,
    /// Target mailbox (`-T`); `None` restores into the snapshot's own mailbox.
    pub target: Option<String>,
    /// Folder filters (`-f`, path or name, subfolders included); empty = all folders.
    pub folders: Vec<String>,
    /// One message (`--message`: id, id prefix or internetMessageId).
    pub message: Option<String>,
    /// Only messages received at or after this instant (`--start-date`).
    pub start: Option<DateTime<Utc>>,
    /// Only messages received at or before this instant (`--end-date`, inclusive: the
    /// caller passes the end of the day).
    pub end: Option<DateTime<Utc>>,
    /// Restore root or in place.
    pub destination: Destination,
    /// Messages written concurrently (Graph allows 4 concurrent requests per mailbox).
    pub messages_in_flight: usize,
    /// Kinds of item to restore (`--kinds`); default every kind but configuration, which
    /// is restored only when asked for.
    pub kinds: KindSet,
    /// Write the stored mailbox settings (automatic replies, working hours, time zone,
    /// language …) over the target's (`--overwrite-settings`); without it a configuration
    /// restore adds categories and rules only.
    pub overwrite_settings: bool,
    /// Create every message from its MIME even when its full-fidelity export stream is
    /// stored (`--from-mime`).
    pub from_mime: bool,
}

/// What a restore covers when `--kinds` is not given: mail, calendars, contacts, tasks
/// and notes — configuration only when named.
pub const DEFAULT_RESTORE_KINDS: KindSet = KindSet::ALL.without(ItemKind::Config);

impl RestoreOptions {
    /// Options for restoring `snapshot` with defaults everywhere else.
    pub fn new(snapshot: SnapshotSelector) -> Self {
        Self {
            snapshot,
            target: None,
            folders: Vec::new(),
            message: None,
            start: None,
            end: None,
            destination: Destination::Root,
            messages_in_flight: 4,
            kinds: DEFAULT_RESTORE_KINDS,
            overwrite_settings: false,
            from_mime: false,
        }
    }
}

/// One step of a target folder path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PathStep {
    /// Display name.
    pub name: String,
    /// Well-known name (in-place only): the target's own folder of that role is used, so
    /// `Inbox` lands in the target's inbox whatever its display language.
    pub well_known: Option<String>,
}

/// How the items of a planned folder reach the target, decided when the restore is
/// planned so a dry run can say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RestoreMethod {
    /// Imported from their full-fidelity export streams through an import session (every
    /// property kept): every kind but mail, and mail whose every selected message has its
    /// stream (`--fidelity full`), restored under a root without `--from-mime`. When the
    /// app turns out to lack `MailboxItem.ImportExport.All`, the run still falls back
    /// (mail to MIME, with a warning).
    Import,
    /// Created from MIME through the classic message endpoints: mail without export
    /// streams, with `--from-mime`, or in place (an import carries no restore mark, and in
    /// place the marks are how a rerun tells restored messages from ones never deleted).
    Mime,
}

/// One folder to restore.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedFolder {
    /// Path in the snapshot, joined with `/`.
    pub source_path: String,
    /// The kind of item the folder holds: mail is created from MIME, every other kind
    /// imported from its export stream under a restore root of its own kind.
    #[serde(serialize_with = "ItemKind::serialize_name")]
    pub kind: ItemKind,
    /// Path in the target, below the restore root (or from the top, in place).
    pub target_path: Vec<PathStep>,
    /// How its items are written: imported from export streams or created from MIME.
    pub method: RestoreMethod,
    /// Messages to restore.
    pub messages: u64,
    /// Their MIME bytes.
    pub bytes: u64,
    /// The messages (not printed: a plan may hold thousands).
    #[serde(skip)]
    pub items: Vec<MessageMeta>,
}

/// What a restore will do; a plain value (print it for `--dry-run`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestorePlan {
    /// The snapshot restored from.
    pub snapshot: SnapshotId,
    /// When that snapshot was taken.
    pub snapshot_started: DateTime<Utc>,
    /// The snapshot's mailbox.
    pub source_mailbox: String,
    /// The mailbox written to.
    pub target_mailbox: String,
    /// The restore root folder name; `None` for in place.
    pub root: Option<String>,
    /// Folders in tree order (parents before children).
    pub folders: Vec<PlannedFolder>,
    /// Messages in all folders.
    pub messages: u64,
    /// MIME bytes in all folders.
    pub bytes: u64,
    /// Messages written concurrently.
    pub messages_in_flight: usize,
    /// The mailbox configuration to restore (`--kinds config`), when the snapshot has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<PlannedConfig>,
}

/// A message that is not (completely) in the target after the restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MissingMessage {
    /// Original message id (never the subject).
    pub message_id: String,
    /// Why (the failure met while writing it, or what verification found).
    pub reason: String,
}

/// The verification line of one folder.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FolderResult {
    /// Path in the snapshot.
    pub source_path: String,
    /// The kind of item the folder holds.
    #[serde(serialize_with = "ItemKind::serialize_name")]
    pub kind: ItemKind,
    /// Path in the target (with the restore root).
    pub target_path: String,
    /// Messages selected for this folder.
    pub expected: u64,
    /// Of those, found complete in the target after the folder was written.
    pub present: u64,
    /// Messages missing or incomplete.
    pub missing: Vec<MissingMessage>,
    /// Whether the folder was checked (false when the run stopped before it).
    pub verified: bool,
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreSummary {
    /// Id of this run (stored on every message it created).
    pub run_id: String,
    /// The snapshot restored from.
    pub snapshot: SnapshotId,
    /// The snapshot's mailbox.
    pub source_mailbox: String,
    /// The mailbox written to.
    pub target_mailbox: String,
    /// The restore root folder; `None` for in place.
    pub root: Option<String>,
    /// Every selected message is in the target, complete.
    pub complete: bool,
    /// The run was cancelled.
    pub cancelled: bool,
    /// Messages created.
    pub created: u64,
    /// Messages an earlier run had left incomplete, now completed.
    pub completed: u64,
    /// Messages already in the target (earlier run, or present in place).
    pub skipped: u64,
    /// Messages that failed (also listed under their folder).
    pub failed: u64,
    /// Attachments written.
    pub attachments: u64,
    /// Bytes of attachments uploaded after creation (large ones through upload sessions).
    pub attachment_bytes: u64,
    /// Per folder verification.
    pub folders: Vec<FolderResult>,
    /// Per configuration entry (category, rule, setting) results; empty unless the
    /// configuration was restored.
    pub config: Vec<ConfigResult>,
}

impl RestoreSummary {
    /// Whether the CLI should report a partial result (exit 2): not complete, or any
    /// message counted as failed — a summary that says "1 failed" is never a success, even
    /// when the verification found that message after all (a write whose answer was lost
    /// and whose check failed; the next run finds it and skips it).
    pub fn is_partial(&self) -> bool {
        !self.complete || self.failed > 0
    }
}

fn in_range(m: &MessageMeta, start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> bool {
    if start.is_none() && end.is_none() {
        return true;
    }
    // Only mail has delivery dates; other kinds are selected by their last change.
    let when = if m.kind.is_mail() {
        m.received.or(m.sent)
    } else {
        m.last_modified
    };
    when.is_some_and(|t| start.is_none_or(|s| t >= s) && end.is_none_or(|e| t <= e))
}

/// A snapshot folder as a planned one; `well_known` (in place only) maps snapshot paths
/// to well-known names so each step can use the target's own folder of that role.
/// `mail_streams`: mail may be imported from its streams (under a root, no `--from-mime`).
fn planned_folder(
    f: &FolderSnapshot,
    items: Vec<MessageMeta>,
    well_known: Option<&HashMap<Vec<String>, String>>,
    mail_streams: bool,
) -> PlannedFolder {
    let path = if f.folder.path.is_empty() {
        vec![f.folder.display_name.clone()]
    } else {
        f.folder.path.clone()
    };
    // A mail folder with some messages lacking a stream is created from MIME as a whole,
    // so the import ledger and the restore marks never share a folder.
    let imported = !f.folder.kind.is_mail()
        || (mail_streams
            && !items.is_empty()
            && items
                .iter()
                .all(|m| m.content_of(crate::model::ContentKind::Export).is_some()));
    PlannedFolder {
        source_path: folder_path(f),
        kind: f.folder.kind,
        target_path: (0..path.len())
            .map(|i| PathStep {
                name: path[i].clone(),
                well_known: well_known.and_then(|w| w.get(&path[..=i]).cloned()),
            })
            .collect(),
        method: if imported {
            RestoreMethod::Import
        } else {
            RestoreMethod::Mime
        },
        messages: items.len() as u64,
        bytes: items.iter().map(|m| m.mime_size).sum(),
        items,
    }
}

/// The configuration part of the plan: the snapshot's configuration items and the paths
/// of its mail folders (for rules that move mail). Only for a restore that names the
/// kind and is not of one item; `None` when the snapshot holds no configuration, an error
/// when only the configuration was asked for.
async fn plan_config(
    repo: &Repository,
    record: &crate::model::SnapshotRecord,
    opts: &RestoreOptions,
    well_known: &HashMap<Vec<String>, String>,
) -> Result<Option<PlannedConfig>, RestoreError> {
    if !opts.kinds.contains(ItemKind::Config) || opts.message.is_some() {
        return Ok(None);
    }
    let Some(folder) = record
        .folders
        .iter()
        .find(|f| f.folder.kind == ItemKind::Config)
    else {
        if opts.kinds == KindSet::of([ItemKind::Config]) {
            return Err(Error::InvalidInput {
                reason: "this snapshot holds no mailbox configuration (it was backed up \
                         without the config kind or without MailboxSettings.Read)"
                    .into(),
            }
            .into());
        }
        return Ok(None);
    };
    let items = repo.load_folder_items(&folder.items).await?;
    let mail_folders = record
        .folders
        .iter()
        .filter(|f| f.folder.kind.is_mail())
        .map(|f| {
            let path = if f.folder.path.is_empty() {
                vec![f.folder.display_name.clone()]
            } else {
                f.folder.path.clone()
            };
            let steps = (0..path.len())
                .map(|i| PathStep {
                    name: path[i].clone(),
                    well_known: well_known.get(&path[..=i]).cloned(),
                })
                .collect();
            (f.folder.id.clone(), steps)
        })
        .collect();
    Ok(Some(PlannedConfig {
        overwrite_settings: opts.overwrite_settings,
        items,
        mail_folders,
    }))
}

/// In place is for mail only: other kinds cannot be recognised in the target (an import
/// carries no mark), so they always go under a restore root.
fn refuse_other_kinds_in_place(
    in_place: bool,
    folders: &[PlannedFolder],
) -> Result<(), RestoreError> {
    if in_place && folders.iter().any(|f| !f.kind.is_mail()) {
        return Err(Error::InvalidInput {
            reason: "--in-place restores mail only: calendars, contacts, tasks and notes are \
                     restored under a restore root so nothing in the target is touched (add \
                     --kinds mail, or leave out --in-place)"
                .into(),
        }
        .into());
    }
    Ok(())
}

/// The restore root's name: `--root NAME`, `Restore-<snapshot time>`, or none in place.
fn root_name(
    destination: &Destination,
    started: DateTime<Utc>,
) -> Result<Option<String>, RestoreError> {
    Ok(match destination {
        Destination::InPlace => None,
        Destination::NamedRoot(name) if name.trim().is_empty() => {
            return Err(Error::InvalidInput {
                reason: "the restore root folder name is empty".into(),
            }
            .into());
        }
        Destination::NamedRoot(name) => Some(name.trim().to_owned()),
        Destination::Root => Some(format!("Restore-{}", started.format("%Y-%m-%dT%H-%M-%S"))),
    })
}

/// Work out what to restore: reads the snapshot and its folder lists, writes nothing,
/// contacts no mailbox.
pub async fn plan(repo: &Repository, opts: &RestoreOptions) -> Result<RestorePlan, RestoreError> {
    if let (Some(s), Some(e)) = (opts.start, opts.end)
        && s > e
    {
        return Err(Error::InvalidInput {
            reason: format!("the start date {s} is after the end date {e}"),
        }
        .into());
    }
    let snap = opts.snapshot.load(repo).await?;
    let record = &snap.record;
    let in_place = opts.destination == Destination::InPlace;
    let well_known: HashMap<Vec<String>, String> = record
        .folders
        .iter()
        .filter_map(|f| Some((f.folder.path.clone(), f.folder.well_known_name.clone()?)))
        .collect();
    let mail_streams = !in_place && !opts.from_mime;
    let planned = |f: &FolderSnapshot, items: Vec<MessageMeta>| {
        planned_folder(f, items, in_place.then_some(&well_known), mail_streams)
    };
    let mut folders = Vec::new();
    if let Some(reference) = &opts.message {
        let found = find_message(repo, record, reference).await?;
        let kind = record.folders[found.folder_index].folder.kind;
        if kind == ItemKind::Config {
            return Err(Error::InvalidInput {
                reason: format!(
                    "{reference} is a configuration item: restore the configuration with \
                     --kinds config (it adds what the target lacks)"
                ),
            }
            .into());
        }
        if !opts.kinds.contains(kind) {
            return Err(Error::InvalidInput {
                reason: format!(
                    "{reference} is an item of kind {kind}, which --kinds {} leaves out",
                    opts.kinds
                ),
            }
            .into());
        }
        folders.push(planned(
            &record.folders[found.folder_index],
            vec![found.meta],
        ));
    } else {
        let filtered = opts.start.is_some() || opts.end.is_some();
        let selected: Vec<&FolderSnapshot> = record
            .folders
            .iter()
            .filter(|f| opts.kinds.contains(f.folder.kind))
            // Configuration has no folder in the target: it is planned on its own.
            .filter(|f| f.folder.kind != ItemKind::Config)
            .filter(|f| {
                opts.folders.is_empty() || opts.folders.iter().any(|w| folder_selected(f, w))
            })
            .collect();
        super::catalog::check_snapshot_folders(record, &opts.folders)?;
        for f in selected {
            let items: Vec<MessageMeta> = repo
                .load_folder_items(&f.items)
                .await?
                .into_iter()
                .filter(|m| in_range(m, opts.start, opts.end))
                .collect();
            // An empty folder is recreated only in a full restore (it is part of the
            // hierarchy); a date filter that leaves nothing should not create folders.
            if items.is_empty() && filtered {
                continue;
            }
            folders.push(planned(f, items));
        }
    }
    folders.sort_by_key(|f| f.target_path.len());
    refuse_other_kinds_in_place(in_place, &folders)?;
    let root = root_name(&opts.destination, record.started)?;
    let config = plan_config(repo, record, opts, &well_known).await?;
    // Configuration alone creates no folder: there is no root to name.
    let root = if folders.is_empty() && config.is_some() {
        None
    } else {
        root
    };
    Ok(RestorePlan {
        snapshot: snap.id,
        snapshot_started: record.started,
        source_mailbox: record.mailbox.address().to_owned(),
        target_mailbox: opts
            .target
            .clone()
            .unwrap_or_else(|| record.mailbox.address().to_owned()),
        root,
        messages: folders.iter().map(|f| f.messages).sum(),
        bytes: folders.iter().map(|f| f.bytes).sum(),
        folders,
        messages_in_flight: opts.messages_in_flight.max(1),
        config,
    })
}

/// Shared by the message tasks of a run.
#[derive(Debug)]
struct Ctx {
    repo: Repository,
    target: Arc<dyn MailTarget>,
    mailbox: MailboxId,
    run_id: String,
}

/// How one message ended.
#[derive(Debug)]
enum Outcome {
    Created { attachments: u64, bytes: u64 },
    Completed { attachments: u64, bytes: u64 },
    Failed(String),
}

/// The record's SHA-256 (before format 4); format-4 records keep none, their content was
/// checked against its content id when it was read.
fn check_sha(raw: &[u8], expected_hex: &str) -> bool {
    expected_hex.is_empty() || hex::encode(Sha256::digest(raw)).eq_ignore_ascii_case(expected_hex)
}

/// Which of `wanted` are not among `have` (by name and inline state, as a multiset).
fn missing_attachments<'a>(
    wanted: &'a [RestoreAttachment],
    have: &[(String, bool)],
) -> Vec<&'a RestoreAttachment> {
    let mut pool: Vec<(String, bool)> = have.to_vec();
    wanted
        .iter()
        .filter(|a| {
            let key = (a.name().to_owned(), is_inline(a));
            match pool.iter().position(|k| *k == key) {
                Some(i) => {
                    pool.swap_remove(i);
                    false
                }
                None => true,
            }
        })
        .collect()
}

fn is_inline(a: &RestoreAttachment) -> bool {
    matches!(
        a,
        RestoreAttachment::File {
            is_inline: true,
            ..
        }
    )
}

/// Add whatever attachments are missing, then set the completion mark. `have` is what is
/// known to be there already (`None`: list it).
async fn complete_message(
    ctx: &Ctx,
    id: &ItemId,
    parsed: &mime::Parsed,
    mut have: Option<Vec<(String, bool)>>,
) -> Result<(u64, u64), String> {
    let (mut added, mut bytes) = (0u64, 0u64);
    for _ in 0..COMPLETE_ROUNDS {
        let present = match have.take() {
            Some(h) => h,
            None => ctx
                .target
                .list_attachments(&ctx.mailbox, id)
                .await
                .map_err(|e| format!("listing attachments: {e}"))?
                .into_iter()
                .map(|a| (a.name, a.is_inline))
                .collect(),
        };
        let todo = missing_attachments(&parsed.attachments, &present);
        let mut unclear = false;
        for a in todo {
            match ctx.target.add_attachment(&ctx.mailbox, id, a).await {
                Ok(()) => {
                    added += 1;
                    bytes += a.size();
                }
                // It may or may not be there: list again before adding it a second time.
                Err(TargetError::OutcomeUnknown(_)) => {
                    unclear = true;
                    break;
                }
                Err(e) => return Err(format!("attachment {:?}: {e}", a.name())),
            }
        }
        if unclear {
            continue;
        }
        return match ctx
            .target
            .mark_complete(&ctx.mailbox, id, &parsed.message)
            .await
        {
            Ok(()) => Ok((added, bytes)),
            // The mark is idempotent: one more try is safe.
            Err(TargetError::OutcomeUnknown(_)) => ctx
                .target
                .mark_complete(&ctx.mailbox, id, &parsed.message)
                .await
                .map(|()| (added, bytes))
                .map_err(|e| format!("completion mark: {e}")),
            Err(e) => Err(format!("completion mark: {e}")),
        };
    }
    Err("attachment uploads kept ending without an answer".into())
}

async fn restore_one(
    ctx: Arc<Ctx>,
    folder_id: FolderId,
    meta: MessageMeta,
    existing: Option<TargetItem>,
) -> Outcome {
    let raw = match ctx.repo.read_blob(&meta.mime).await {
        Ok(raw) => raw,
        Err(e) => return Outcome::Failed(format!("stored message cannot be read: {e}")),
    };
    if !check_sha(&raw, &meta.mime_sha256) {
        return Outcome::Failed("stored message does not match its checksum".into());
    }
    let Some(parsed) = mime::parse(&raw, &meta) else {
        return Outcome::Failed("stored message is not parseable MIME".into());
    };
    drop(raw);
    if let Some(existing) = existing {
        return match complete_message(&ctx, &existing.id, &parsed, None).await {
            Ok((attachments, bytes)) => Outcome::Completed { attachments, bytes },
            Err(reason) => Outcome::Failed(reason),
        };
    }
    // Small attachments travel in the create request (one request, atomic); the rest
    // follow, large ones through upload sessions.
    let budget = ctx.target.inline_attachment_budget();
    let (mut with_create, mut after) = (Vec::new(), Vec::new());
    let mut used = 0u64;
    for a in &parsed.attachments {
        if used + a.size() <= budget {
            used += a.size();
            with_create.push(a.clone());
        } else {
            after.push(a.clone());
        }
    }
    let mark = RestoreMark {
        source_id: meta.id.clone(),
        run_id: ctx.run_id.clone(),
    };
    for _ in 0..CREATE_ATTEMPTS {
        match ctx
            .target
            .create_message(
                &ctx.mailbox,
                &folder_id,
                &parsed.message,
                &with_create,
                &mark,
                after.is_empty(),
            )
            .await
        {
            Ok(id) => {
                let have = with_create
                    .iter()
                    .map(|a| (a.name().to_owned(), is_inline(a)))
                    .collect();
                let inline_count = with_create.len() as u64;
                if after.is_empty() && parsed.attachments.len() == with_create.len() {
                    // The target set the completion mark in the create (or as its own
                    // last step).
                    return Outcome::Created {
                        attachments: inline_count,
                        bytes: 0,
                    };
                }
                return match complete_message(&ctx, &id, &parsed, Some(have)).await {
                    Ok((n, bytes)) => Outcome::Created {
                        attachments: inline_count + n,
                        bytes,
                    },
                    Err(reason) => Outcome::Failed(reason),
                };
            }
            Err(TargetError::OutcomeUnknown(_)) => {
                // Did it happen? Look for the mark before sending it again.
                match ctx.target.list_items(&ctx.mailbox, &folder_id).await {
                    Ok(list) => {
                        if let Some(found) = list
                            .into_iter()
                            .find(|m| m.source_id.as_ref() == Some(&meta.id))
                        {
                            if found.complete {
                                return Outcome::Created {
                                    attachments: with_create.len() as u64,
                                    bytes: 0,
                                };
                            }
                            return match complete_message(&ctx, &found.id, &parsed, None).await {
                                Ok((attachments, bytes)) => Outcome::Created { attachments, bytes },
                                Err(reason) => Outcome::Failed(reason),
                            };
                        }
                    }
                    Err(e) => {
                        return Outcome::Failed(format!(
                            "create had no answer and the check failed: {e}"
                        ));
                    }
                }
            }
            Err(e) => return Outcome::Failed(format!("create: {e}")),
        }
    }
    Outcome::Failed("create kept ending without an answer".into())
}

/// Target folder ids by path (lower-cased names), so parents are created once.
struct FolderResolver<'a> {
    target: &'a dyn MailTarget,
    mailbox: &'a MailboxId,
    root: Option<FolderId>,
    cache: HashMap<Vec<String>, FolderId>,
}

impl FolderResolver<'_> {
    async fn resolve(&mut self, path: &[PathStep]) -> Result<FolderId, TargetError> {
        let mut parent = self.root.clone();
        for i in 0..path.len() {
            let key: Vec<String> = path[..=i].iter().map(|s| s.name.to_lowercase()).collect();
            if let Some(id) = self.cache.get(&key) {
                parent = Some(id.clone());
                continue;
            }
            let step = &path[i];
            let mut id = None;
            if let Some(wk) = &step.well_known {
                id = self
                    .target
                    .well_known_folder(self.mailbox, wk)
                    .await?
                    .map(|f| f.id);
            }
            let id = match id {
                Some(id) => id,
                None => {
                    self.target
                        .ensure_folder(self.mailbox, parent.as_ref(), &step.name)
                        .await?
                        .id
                }
            };
            self.cache.insert(key, id.clone());
            parent = Some(id);
        }
        parent.ok_or_else(|| TargetError::Other("empty folder path".into()))
    }
}

/// What is already in a target folder, for the duplicate check and for verification.
struct Present {
    /// By original id: (target id, complete).
    marked: HashMap<ItemId, TargetItem>,
    /// internetMessageIds of messages not created by a restore (in place only), counted.
    unmarked: HashMap<String, usize>,
}

impl Present {
    fn new(list: Vec<TargetItem>, in_place: bool) -> Self {
        let mut marked = HashMap::new();
        let mut unmarked: HashMap<String, usize> = HashMap::new();
        for m in list {
            match &m.source_id {
                Some(s) => {
                    // A complete copy wins over an incomplete duplicate.
                    let keep = marked
                        .get(s)
                        .is_none_or(|old: &TargetItem| !old.complete && m.complete);
                    if keep {
                        marked.insert(s.clone(), m);
                    }
                }
                None if in_place => {
                    if let Some(imid) = &m.internet_message_id {
                        *unmarked.entry(imid.to_lowercase()).or_default() += 1;
                    }
                }
                None => {}
            }
        }
        Self { marked, unmarked }
    }

    /// Whether `meta` is already there as a message not created by a restore (in place),
    /// consuming one occurrence so duplicates in the source are each accounted for.
    fn take_unmarked(&mut self, meta: &MessageMeta) -> bool {
        let Some(imid) = &meta.internet_message_id else {
            return false;
        };
        match self.unmarked.get_mut(&imid.to_lowercase()) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }
}

fn joined(root: Option<&str>, path: &[PathStep]) -> String {
    root.into_iter()
        .chain(path.iter().map(|s| s.name.as_str()))
        .collect::<Vec<_>>()
        .join("/")
}

/// How the folder loop goes on after a folder.
enum Next {
    Continue,
    Stop,
}

/// State of one run, shared by the folder steps.
struct Run<'a> {
    plan: &'a RestorePlan,
    ctx: Arc<Ctx>,
    reporter: &'a dyn Reporter,
    cancel: &'a Cancel,
    label: String,
    in_place: bool,
    summary: RestoreSummary,
}

fn all_missing(pf: &PlannedFolder, reason: &str) -> Vec<MissingMessage> {
    pf.items
        .iter()
        .map(|m| MissingMessage {
            message_id: m.id.as_str().to_owned(),
            reason: reason.to_owned(),
        })
        .collect()
}

impl Run<'_> {
    /// One item written (`bytes` of it) or found already there (0): the progress event.
    fn done_item(&self, folder: &str, bytes: u64) {
        self.reporter.report(Event::Items {
            mailbox: self.label.clone(),
            folder: folder.to_owned(),
            count: 1,
            bytes,
        });
    }

    /// One item that could not be written: counted, reported, and its reason kept for the
    /// folder's verification.
    fn failed_item(
        &mut self,
        failures: &mut HashMap<ItemId, String>,
        id: ItemId,
        reason: String,
        folder: &str,
    ) {
        self.summary.failed += 1;
        self.reporter.report(Event::ItemFailed {
            mailbox: self.label.clone(),
            folder: folder.to_owned(),
            item: id.to_string(),
            reason: reason.clone(),
        });
        failures.insert(id, reason);
    }

    /// The first step of every folder, mail or imported: its result line, and the
    /// `FolderStarted` event. `None` when a cancel was asked for: the folder is then in the
    /// summary as not verified and the run stops.
    fn open_folder(&mut self, pf: &PlannedFolder, target_path: &str) -> Option<FolderResult> {
        let result = FolderResult {
            source_path: pf.source_path.clone(),
            kind: pf.kind,
            target_path: target_path.to_owned(),
            expected: pf.messages,
            present: 0,
            missing: Vec::new(),
            verified: false,
        };
        if self.cancel.is_requested() {
            self.summary.cancelled = true;
            self.summary.folders.push(result);
            return None;
        }
        self.reporter.report(Event::FolderStarted {
            mailbox: self.label.clone(),
            folder: target_path.to_owned(),
            expected: pf.messages,
        });
        Some(result)
    }

    /// A folder that cannot be written because its target folder could not be created or
    /// listed (`what`): a fatal error (sign-in, permission, mailbox gone) stops the run;
    /// any other leaves this folder, every item in it failed with the reason, and the run
    /// goes on with the next folder (the next run tries this one again).
    fn leave_folder(
        &mut self,
        pf: &PlannedFolder,
        mut result: FolderResult,
        what: &str,
        e: TargetError,
    ) -> Result<Next, RestoreError> {
        if e.is_fatal() {
            return Err(e.into());
        }
        self.summary.failed += pf.messages;
        result.missing = all_missing(pf, &format!("{what}: {e}"));
        self.summary.folders.push(result);
        Ok(Next::Continue)
    }

    /// Verification of a written folder from a second listing (`after`): every selected
    /// item `there` finds counts as present; any other is missing, with the failure met
    /// while writing it or `not_found`. After a cancel only failed items are listed as
    /// missing (the rest were never tried) and the folder is not counted as verified. A
    /// listing that fails (not fatally) is itself reported as missing.
    fn check_folder<L>(
        &self,
        pf: &PlannedFolder,
        failures: &HashMap<ItemId, String>,
        result: &mut FolderResult,
        after: Result<L, TargetError>,
        mut there: impl FnMut(&mut L, &MessageMeta) -> bool,
        not_found: &str,
    ) -> Result<(), RestoreError> {
        let cancelled = self.summary.cancelled;
        let mut after = match after {
            Ok(after) => after,
            Err(e) if e.is_fatal() => return Err(e.into()),
            Err(e) => {
                result.missing.push(MissingMessage {
                    message_id: String::new(),
                    reason: format!("verification listing failed: {e}"),
                });
                return Ok(());
            }
        };
        for meta in &pf.items {
            let failure = failures.get(&meta.id);
            if there(&mut after, meta) {
                result.present += 1;
            } else if !cancelled || failure.is_some() {
                result.missing.push(MissingMessage {
                    message_id: meta.id.as_str().to_owned(),
                    reason: failure.cloned().unwrap_or_else(|| not_found.to_owned()),
                });
            }
        }
        result.verified = !cancelled;
        Ok(())
    }

    /// The last step of every folder: the `FolderDone` event, a warning when anything is
    /// missing, the result into the summary; the run stops after a cancel.
    fn close_folder(&mut self, pf: &PlannedFolder, result: FolderResult) -> Next {
        self.reporter.report(Event::FolderDone {
            mailbox: self.label.clone(),
            folder: result.target_path.clone(),
            stored: result.present,
        });
        if !result.missing.is_empty() {
            let items = if pf.kind.is_mail() {
                "messages"
            } else {
                "items"
            };
            self.reporter.report(Event::Warning {
                mailbox: Some(self.label.clone()),
                message: format!(
                    "{}: {} of {} {items} missing after restore",
                    result.target_path,
                    result.missing.len(),
                    result.expected
                ),
            });
        }
        self.summary.folders.push(result);
        if self.summary.cancelled {
            Next::Stop
        } else {
            Next::Continue
        }
    }

    /// Write one folder's messages, then verify it.
    async fn folder(
        &mut self,
        resolver: &mut FolderResolver<'_>,
        pf: &PlannedFolder,
    ) -> Result<Next, RestoreError> {
        let target = self.ctx.target.clone();
        let mailbox = self.ctx.mailbox.clone();
        let target_path = joined(self.plan.root.as_deref(), &pf.target_path);
        let Some(mut result) = self.open_folder(pf, &target_path) else {
            return Ok(Next::Stop);
        };
        let folder_id = match resolver.resolve(&pf.target_path).await {
            Ok(id) => id,
            Err(e) => {
                return self.leave_folder(pf, result, "target folder could not be created", e);
            }
        };
        // Without the listing the duplicate check cannot be made: writing would risk
        // duplicates, so the folder is left for the next run.
        let mut present = match target.list_items(&mailbox, &folder_id).await {
            Ok(list) => Present::new(list, self.in_place),
            Err(e) => return self.leave_folder(pf, result, "target folder could not be listed", e),
        };
        let Some(failures) = self
            .write_messages(pf, &folder_id, &mut present, &target_path)
            .await
        else {
            self.summary.folders.push(result);
            return Ok(Next::Stop);
        };
        let after = target
            .list_items(&mailbox, &folder_id)
            .await
            .map(|list| Present::new(list, self.in_place));
        let in_place = self.in_place;
        self.check_folder(
            pf,
            &failures,
            &mut result,
            after,
            |after, meta| match after.marked.get(&meta.id) {
                Some(m) => m.complete,
                None => in_place && after.take_unmarked(meta),
            },
            "not found complete in the target folder",
        )?;
        Ok(self.close_folder(pf, result))
    }

    /// Create (or complete) the folder's messages with bounded concurrency; the failures
    /// by original id, or `None` after a hard cancel.
    async fn write_messages(
        &mut self,
        pf: &PlannedFolder,
        folder_id: &FolderId,
        present: &mut Present,
        target_path: &str,
    ) -> Option<HashMap<ItemId, String>> {
        let mut failures: HashMap<ItemId, String> = HashMap::new();
        let mut tasks: Window<(ItemId, u64, Outcome)> = Window::new(self.plan.messages_in_flight);
        for meta in &pf.items {
            if self.cancel.is_requested() {
                self.summary.cancelled = true;
                break;
            }
            let existing = present.marked.get(&meta.id).cloned();
            let already = match &existing {
                Some(m) => m.complete,
                None => self.in_place && present.take_unmarked(meta),
            };
            if already {
                self.summary.skipped += 1;
                self.done_item(target_path, 0);
                continue;
            }
            while !tasks.has_room() {
                if let Some(done) = tasks.next().await {
                    self.record(&mut failures, done, target_path);
                }
            }
            let (ctx, folder_id, meta) = (self.ctx.clone(), folder_id.clone(), meta.clone());
            tasks.spawn(async move {
                let id = meta.id.clone();
                let size = meta.mime_size;
                let outcome = restore_one(ctx, folder_id, meta, existing).await;
                (id, size, outcome)
            });
        }
        if self.cancel.is_hard() {
            // Stop at once: whatever was in flight is left half-done for the next run,
            // which finds it by its mark and completes it.
            tasks.abort_all().await;
            self.summary.cancelled = true;
            return None;
        }
        while let Some(done) = tasks.next().await {
            self.record(&mut failures, done, target_path);
        }
        Some(failures)
    }

    /// Count one message task's outcome and report it.
    fn record(
        &mut self,
        failures: &mut HashMap<ItemId, String>,
        done: crate::Result<(ItemId, u64, Outcome)>,
        folder: &str,
    ) {
        let Ok((id, size, outcome)) = done else {
            // A panicked task: its message shows up as missing in verification.
            self.summary.failed += 1;
            return;
        };
        match outcome {
            Outcome::Created { attachments, bytes } => {
                self.summary.created += 1;
                self.summary.attachments += attachments;
                self.summary.attachment_bytes += bytes;
                self.done_item(folder, size);
            }
            Outcome::Completed { attachments, bytes } => {
                self.summary.completed += 1;
                self.summary.attachments += attachments;
                self.summary.attachment_bytes += bytes;
                self.done_item(folder, size);
            }
            Outcome::Failed(reason) => self.failed_item(failures, id, reason, folder),
        }
    }
}

/// How items of kinds other than mail are written: imported from their export streams,
/// with what was imported kept in a ledger.
#[derive(Debug, Clone)]
pub struct Importer {
    /// The import port.
    pub target: Arc<dyn ItemImport>,
    /// This restore's ledger (one per snapshot, target mailbox and restore root).
    pub ledger: Arc<dyn RestoreLedger>,
    /// What contacts and tasks are created through when `target` refuses imports (no
    /// `MailboxItem.ImportExport.All`): the classic create endpoints, from the stored
    /// readable JSON ([`ItemImport::reads`]). Calendars never fall back (a classic create
    /// of a meeting sends invitations), nor do notes (no classic endpoint).
    pub classic: Option<Arc<dyn ItemImport>>,
}

/// The kinds whose restore may fall back on [`Importer::classic`].
fn has_classic_create(kind: ItemKind) -> bool {
    matches!(kind, ItemKind::Contact | ItemKind::Task)
}

/// The importer a refused import falls back on for `item_folders` (contacts and tasks
/// only), once its own permissions are checked; the refusal as it was when a folder of
/// another kind is in the plan or there is no fallback; a refusal naming both permissions
/// when the fallback's is missing too.
async fn classic_fallback(
    importer: &Importer,
    item_folders: &[&PlannedFolder],
    mailbox: &MailboxId,
    permission: String,
    request_id: String,
) -> Result<Importer, RestoreError> {
    let refused = |permission: String| TargetError::PermissionDenied {
        permission,
        request_id: request_id.clone(),
    };
    let Some(classic) = importer.classic.clone() else {
        return Err(refused(permission).into());
    };
    if !item_folders.iter().all(|f| has_classic_create(f.kind)) {
        return Err(refused(permission).into());
    }
    let mut kinds: Vec<ItemKind> = item_folders.iter().map(|f| f.kind).collect();
    kinds.dedup();
    for kind in kinds {
        match classic.check_kind_access(mailbox, kind).await {
            Ok(()) => {}
            Err(TargetError::PermissionDenied {
                permission: also, ..
            }) => {
                return Err(refused(format!(
                    "{permission} (or, to restore {kind} through the classic endpoints, {also})"
                ))
                .into());
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Importer {
        target: classic,
        ledger: importer.ledger.clone(),
        classic: None,
    })
}

/// Run a plan of mail folders against the target (see [`execute_all`] for plans with
/// other kinds). Fails as a whole only when nothing can be restored (unknown target, no
/// mailbox, no permission); everything else is in the summary.
pub async fn execute(
    plan: &RestorePlan,
    repo: &Repository,
    target: Arc<dyn MailTarget>,
    reporter: &dyn Reporter,
    cancel: &Cancel,
) -> Result<RestoreSummary, RestoreError> {
    execute_all(plan, repo, target, None, None, reporter, cancel).await
}

/// Run a plan against the target: mail folders through `target`, folders of every other
/// kind through `importer` (required when the plan has any), the configuration through
/// `config` (required when the plan has it). Every permission the plan needs is checked
/// before the first write, so a missing import or settings permission refuses the whole
/// restore up front. Fails as a whole only when nothing can be restored (unknown target,
/// no mailbox, no permission); everything else is in the summary.
pub async fn execute_all(
    plan: &RestorePlan,
    repo: &Repository,
    target: Arc<dyn MailTarget>,
    importer: Option<Importer>,
    config: Option<Arc<dyn ConfigTarget>>,
    reporter: &dyn Reporter,
    cancel: &Cancel,
) -> Result<RestoreSummary, RestoreError> {
    // One span for the run (the target mailbox) and one per folder, as in backup.
    let span = tracing::info_span!(
        "mailbox",
        mailbox = %plan.target_mailbox,
        source = %plan.source_mailbox
    );
    run_plan(plan, repo, target, importer, config, reporter, cancel)
        .instrument(span)
        .await
}

impl RestorePlan {
    /// Whether a mail folder is restored from its messages' export streams, as planned
    /// ([`RestoreMethod::Import`]: every selected message has one, `--from-mime` was not
    /// given, and the restore goes under a root).
    pub fn imports_mail(&self, pf: &PlannedFolder) -> bool {
        pf.kind.is_mail() && pf.method == RestoreMethod::Import
    }
}

/// The importer, when the plan needs one (and an error when it does and there is none).
fn importer_for(
    importer: Option<Importer>,
    needed: bool,
) -> Result<Option<Importer>, RestoreError> {
    match (importer, needed) {
        (Some(i), true) => Ok(Some(i)),
        (_, false) => Ok(None),
        (None, true) => Err(Error::InvalidInput {
            reason: "this restore holds calendars, contacts, tasks or notes, which only an \
                     import target can write"
                .into(),
        }
        .into()),
    }
}

/// [`execute_all`] inside its span.
#[allow(clippy::too_many_lines)] // Checks, mail folders, imported folders, configuration.
async fn run_plan(
    plan: &RestorePlan,
    repo: &Repository,
    target: Arc<dyn MailTarget>,
    importer: Option<Importer>,
    config: Option<Arc<dyn ConfigTarget>>,
    reporter: &dyn Reporter,
    cancel: &Cancel,
) -> Result<RestoreSummary, RestoreError> {
    let mail_folders: Vec<&PlannedFolder> =
        plan.folders.iter().filter(|f| f.kind.is_mail()).collect();
    let item_folders: Vec<&PlannedFolder> =
        plan.folders.iter().filter(|f| !f.kind.is_mail()).collect();
    let wants_streams = mail_folders.iter().any(|f| plan.imports_mail(f));
    // Mail with streams uses the importer when there is one, MIME otherwise.
    let importer = match importer_for(importer, !item_folders.is_empty() || wants_streams) {
        Ok(i) => i,
        Err(_) if item_folders.is_empty() => None,
        Err(e) => return Err(e),
    };
    let config = match (config, &plan.config) {
        (Some(c), Some(_)) => Some(c),
        (_, None) => None,
        (None, Some(_)) => {
            return Err(Error::InvalidInput {
                reason: "this restore holds the mailbox configuration, which only a \
                         configuration target can write"
                    .into(),
            }
            .into());
        }
    };
    let mailbox = target.resolve_mailbox(&plan.target_mailbox).await?;
    let mut importer = importer;
    let mut streams_refused = None;
    // Set when contacts and tasks go through the classic create endpoints.
    let mut classic_used = None;
    if let Some(i) = &importer {
        match i.target.check_import_access(&mailbox).await {
            Ok(()) => {}
            // Mail has MIME to fall back on.
            Err(TargetError::PermissionDenied { permission, .. }) if item_folders.is_empty() => {
                streams_refused = Some(permission);
                importer = None;
            }
            // Contacts and tasks have the classic create endpoints; other kinds nothing.
            Err(TargetError::PermissionDenied {
                permission,
                request_id,
            }) => {
                let classic =
                    classic_fallback(i, &item_folders, &mailbox, permission.clone(), request_id)
                        .await?;
                streams_refused = wants_streams.then(|| permission.clone());
                classic_used = Some(permission);
                importer = Some(classic);
            }
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(c) = &config {
        c.check_config_access(&mailbox).await?;
    }
    // A plan with no folder at all still creates its (empty) root, as it always did —
    // unless it restores the configuration only.
    let writes_mail =
        !mail_folders.is_empty() || (item_folders.is_empty() && plan.config.is_none());
    if writes_mail {
        target.check_write_access(&mailbox).await?;
    }
    let run_id = uuid::Uuid::new_v4().to_string();
    let label = mailbox.address().to_owned();
    reporter.report(Event::MailboxStarted {
        mailbox: label.clone(),
        folders: plan.folders.len(),
    });
    if let Some(permission) = streams_refused {
        reporter.report(Event::Warning {
            mailbox: Some(label.clone()),
            message: format!(
                "messages backed up in full fidelity are restored from their MIME: importing \
                 their export streams needs the {permission} application permission"
            ),
        });
    }
    if let Some(permission) = &classic_used {
        reporter.report(Event::Warning {
            mailbox: Some(label.clone()),
            message: format!(
                "contacts and tasks are created through the classic endpoints from their \
                 readable copy, which carries their properties, categories and contact photos \
                 but not everything an exact copy would (creation times, To Do checklist \
                 items, attachments and linked resources, extended properties); the \
                 {permission} application permission restores exact copies"
            ),
        });
    }
    let root_id = match &plan.root {
        Some(name) if writes_mail => Some(target.ensure_folder(&mailbox, None, name).await?.id),
        _ => None,
    };
    let summary = RestoreSummary {
        run_id: run_id.clone(),
        snapshot: plan.snapshot,
        source_mailbox: plan.source_mailbox.clone(),
        target_mailbox: mailbox.address().to_owned(),
        root: plan.root.clone(),
        complete: false,
        cancelled: false,
        created: 0,
        completed: 0,
        skipped: 0,
        failed: 0,
        attachments: 0,
        attachment_bytes: 0,
        folders: Vec::new(),
        config: Vec::new(),
    };
    let mut run = Run {
        plan,
        ctx: Arc::new(Ctx {
            repo: repo.clone(),
            target: target.clone(),
            mailbox: mailbox.clone(),
            run_id,
        }),
        reporter,
        cancel,
        label,
        in_place: plan.root.is_none(),
        summary,
    };
    let mut resolver = FolderResolver {
        target: target.as_ref(),
        mailbox: &mailbox,
        root: root_id,
        cache: HashMap::new(),
    };
    let mut mail_imports = import::Folders::default();
    let mut stopped = false;
    let mut records = match &importer {
        Some(i) if wants_streams && classic_used.is_none() => i.ledger.load().await?,
        _ => Vec::new(),
    };
    for pf in mail_folders {
        let span = tracing::info_span!("folder", folder = %pf.source_path);
        let next = match &importer {
            Some(i) if plan.imports_mail(pf) && classic_used.is_none() => {
                run.import_mail_folder(i, &mut records, &mut resolver, &mut mail_imports, pf)
                    .instrument(span)
                    .await?
            }
            _ => run.folder(&mut resolver, pf).instrument(span).await?,
        };
        if matches!(next, Next::Stop) {
            stopped = true;
            break;
        }
    }
    if let Some(importer) = importer
        && !stopped
    {
        run.import_folders(&importer, &item_folders).await?;
    }
    // The configuration last: rules that move mail then find the folders an in-place
    // restore of the same run created.
    if let (Some(c), Some(planned)) = (&config, &plan.config)
        && !run.summary.cancelled
    {
        if cancel.is_requested() {
            run.summary.cancelled = true;
        } else {
            let step = config::ConfigRun {
                target: c.as_ref(),
                repo,
                mailbox: &mailbox,
                reporter,
                label: &run.label,
            };
            step.run(planned, &mut run.summary)
                .instrument(tracing::info_span!("configuration"))
                .await?;
        }
    }
    let mut summary = run.summary;
    summary.complete = !summary.cancelled
        && summary.failed == 0
        && summary.folders.len() == plan.folders.len()
        && summary
            .folders
            .iter()
            .all(|f| f.verified && f.missing.is_empty() && f.present == f.expected);
    reporter.report(Event::MailboxDone {
        mailbox: run.label,
        complete: summary.complete,
    });
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::RestoreSummary;
    use crate::model::SnapshotId;

    /// A restore printed "1 failed" and exited 0: the verification had found the message
    /// (its create's answer was lost and the check failed, but it had been created).
    #[test]
    fn a_summary_with_a_failed_message_is_partial() {
        let mut s = RestoreSummary {
            run_id: "r".into(),
            snapshot: SnapshotId::random(),
            source_mailbox: "a@contoso.com".into(),
            target_mailbox: "b@contoso.com".into(),
            root: None,
            complete: true,
            cancelled: false,
            created: 3,
            completed: 0,
            skipped: 0,
            failed: 0,
            attachments: 0,
            attachment_bytes: 0,
            folders: Vec::new(),
            config: Vec::new(),
        };
        assert!(!s.is_partial());
        s.failed = 1;
        assert!(s.is_partial());
        s.failed = 0;
        s.complete = false;
        assert!(s.is_partial());
    }
}
