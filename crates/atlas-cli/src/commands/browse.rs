//! Commands that only read the repository: `list`, `read`, `verify`, `save`, `stats`.
//! None of them needs Graph credentials, and all work for mailboxes that no longer exist
//! in the tenant.

use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use atlas_core::model::{MailboxId, SnapshotStatus};
use atlas_core::open::{Format, detect};
use atlas_core::ports::Reporter;
use atlas_core::repo::Repository;
use atlas_core::service::catalog::{self, ItemListOptions, SnapshotSelector, resolve_snapshot_ref};
use atlas_core::service::export::{
    ExportFormat, SaveOptions, SaveSummary, plan_output, save_to_path, write_eml_zip, write_mbox,
};
use atlas_core::service::read::{ReadOptions, read_message};
use atlas_core::service::verify::{
    ContentCheck, ReadData, VerifyOptions, VerifyScope, verify_with_progress,
};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::cli::{FormatArg, GlobalArgs, ListArgs, ReadArgs, SaveArgs, StatsArgs, VerifyArgs};
use crate::console::{note, prompt};
use crate::exit::{Exit, UsageError};
use crate::output::{self, Output, Table, sanitize, sanitize_multiline};
use crate::progress::{Mode, Progress};

use super::context::open_repository;
use super::key::{location, open_store, repository_settings};
use super::load_config;

fn when(t: DateTime<Utc>) -> String {
    output::time(t)
}

fn status_name(s: SnapshotStatus) -> &'static str {
    match s {
        SnapshotStatus::Complete => "complete",
        SnapshotStatus::Partial => "partial",
    }
}

/// `--as-of`: an RFC 3339 instant, a local time, or a day in the local zone (the whole day
/// counts).
pub(super) fn parse_as_of(text: &str) -> anyhow::Result<DateTime<Utc>> {
    parse_instant(text, "--as-of", Bound::EndOfDay, &chrono::Local)
}

/// Which end of a day a bare date means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Bound {
    /// 00:00:00 (a range's start).
    StartOfDay,
    /// The day's last instant (`--as-of`, a range's end): the whole day counts.
    EndOfDay,
}

/// A point in time as people type it: an RFC 3339 timestamp (`2026-03-31T18:00:00Z`,
/// `…+02:00`, a space for the `T`), a time without offset in the zone `tz`
/// (`2026-03-31T18:00`), or a day in `tz` (`2026-03-31`). Days and times are local, as the
/// text output shows them.
pub(super) fn parse_instant<Tz: chrono::TimeZone>(
    text: &str,
    flag: &str,
    bound: Bound,
    tz: &Tz,
) -> anyhow::Result<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let local = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| chrono::NaiveDateTime::parse_from_str(text, f).ok());
    let naive = if let Some(t) = local {
        t
    } else {
        {
            let day = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
                UsageError(format!(
                    "{flag} {}: expected a day like 2026-03-31, a local time like \
                     2026-03-31T18:00 or an RFC 3339 timestamp like 2026-03-31T18:00:00Z",
                    sanitize(text)
                ))
            })?;
            match bound {
                Bound::StartOfDay => day.and_hms_opt(0, 0, 0),
                Bound::EndOfDay => day.and_hms_nano_opt(23, 59, 59, 999_999_999),
            }
            .context("invariant: valid time of day")?
        }
    };
    // A local time skipped by a DST change does not exist: take the instant after the gap
    // for a start, before it for an end; an ambiguous one (clocks set back) likewise.
    let resolved = match tz.from_local_datetime(&naive) {
        chrono::LocalResult::Single(t) => Some(t),
        chrono::LocalResult::Ambiguous(early, late) => Some(match bound {
            Bound::StartOfDay => early,
            Bound::EndOfDay => late,
        }),
        chrono::LocalResult::None => tz
            .from_local_datetime(&(naive + chrono::Duration::hours(1)))
            .earliest(),
    };
    resolved.map(|t| t.with_timezone(&Utc)).ok_or_else(|| {
        UsageError(format!(
            "{flag} {}: that local time does not exist",
            sanitize(text)
        ))
        .into()
    })
}

async fn open_repo(global: &GlobalArgs) -> anyhow::Result<Repository> {
    let config = load_config(global)?;
    let settings = repository_settings(&config)?;
    open_repository(&settings, None).await
}

/// The snapshot chosen by `-s` or `-m [--as-of]`.
pub(super) async fn selector(
    repo: &Repository,
    snapshot: Option<&str>,
    mailbox: Option<&str>,
    as_of: Option<&str>,
) -> anyhow::Result<SnapshotSelector> {
    match (snapshot, mailbox) {
        (Some(s), _) => Ok(SnapshotSelector::Id(
            resolve_snapshot_ref(repo, s)
                .await
                .with_context(|| format!("finding snapshot {}", sanitize(s)))?,
        )),
        (None, Some(m)) => Ok(SnapshotSelector::Latest {
            mailbox: MailboxId::new(m),
            as_of: as_of.map(parse_as_of).transpose()?,
        }),
        (None, None) => Err(UsageError("give a snapshot (-s) or a mailbox (-m)".into()).into()),
    }
}

/// `atlas list`.
pub async fn list(global: &GlobalArgs, args: &ListArgs, output: Output) -> anyhow::Result<Exit> {
    let repo = open_repo(global).await?;
    if let Some(s) = &args.snapshot {
        return list_items(&repo, s, args, output).await;
    }
    if let Some(m) = &args.mailbox {
        return list_snapshots(&repo, m, output).await;
    }
    list_mailboxes(&repo, output).await
}

async fn list_items(
    repo: &Repository,
    s: &str,
    args: &ListArgs,
    output: Output,
) -> anyhow::Result<Exit> {
    {
        let id = resolve_snapshot_ref(repo, s)
            .await
            .with_context(|| format!("finding snapshot {}", sanitize(s)))?;
        let items = catalog::list_items(
            repo,
            id,
            &ItemListOptions {
                show_subjects: args.show_subjects,
                limit: item_limit(args, output.is_json()),
                offset: args.offset,
                folder: args.folder.clone(),
                kind: args.kind,
            },
        )
        .await?;
        let end = items.offset + items.items.len();
        let out = ItemsOut {
            next_offset: (end < items.total).then_some(end),
            listing: items,
        };
        let items = &out.listing;
        output.result(&out, || {
            // A kind column once anything but mail is listed.
            let kinds = items.items.iter().any(|i| !i.kind.is_mail());
            let mut headers = vec!["#", "Folder", "Received", "Size", "Att.", "Message id"];
            if kinds {
                headers.insert(2, "Kind");
            }
            if args.show_subjects {
                headers.push("Subject");
            }
            let mut table = Table::new(headers);
            for i in &items.items {
                let mut row = vec![
                    i.index.to_string(),
                    i.folder.clone(),
                    i.received.map(when).unwrap_or_default(),
                    output::size(i.size),
                    i.attachments.to_string(),
                    i.message_id.to_string(),
                ];
                if kinds {
                    row.insert(2, i.kind.to_string());
                }
                if args.show_subjects {
                    row.push(i.subject.clone().unwrap_or_default());
                }
                table.row(row);
            }
            let mut s = format!(
                "Snapshot {} of {} ({}, {}): {} messages\n{}",
                items.snapshot,
                sanitize(&items.mailbox),
                when(items.started),
                status_name(items.status),
                items.total,
                table.render()
            );
            if let Some(next) = out.next_offset {
                let _ = write!(
                    s,
                    "… {} more; use --all to list every message, or --offset {next} for the next page",
                    items.total - next
                );
            }
            s.push_str(&unreadable_text(&items.unreadable));
            s
        })?;
        if !out.listing.unreadable.is_empty() {
            return Ok(Exit::Partial);
        }
    }
    Ok(Exit::Success)
}

/// What a listing could not read, for the human output (empty when nothing).
fn unreadable_text(unreadable: &[catalog::Unreadable]) -> String {
    if unreadable.is_empty() {
        return String::new();
    }
    let mut s = format!(
        "\nCould not read {} object(s); everything else is listed:",
        unreadable.len()
    );
    for u in unreadable {
        let _ = write!(
            s,
            "\n  {}{}: {}",
            sanitize(&u.what),
            u.object
                .as_deref()
                .map(|o| format!(" ({})", sanitize(o)))
                .unwrap_or_default(),
            sanitize(&u.error)
        );
    }
    s.push_str("\natlas verify names the damage; atlas repair heals it.");
    s
}

/// `atlas list -s --json`: the listing, and where the next page starts when it is one.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ItemsOut {
    #[serde(flatten)]
    listing: catalog::SnapshotItems,
    /// `--offset` of the next page; absent when the listing reaches the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_offset: Option<usize>,
}

/// How many items `list -s` shows: `--limit`, else every one with `--all` or `--json`
/// (machine output is never cut silently), else a screenful of 50.
fn item_limit(args: &ListArgs, json: bool) -> Option<usize> {
    match args.limit {
        Some(n) => Some(n),
        None if args.all || json => None,
        None => Some(50),
    }
}

/// `atlas list -m --json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SnapshotsOut {
    mailbox: String,
    /// Newest first.
    snapshots: Vec<catalog::SnapshotEntry>,
    /// Records that could not be read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    unreadable: Vec<catalog::Unreadable>,
}

/// `atlas list --json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct MailboxesOut {
    mailboxes: Vec<catalog::MailboxEntry>,
    /// What could not be read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    unreadable: Vec<catalog::Unreadable>,
}

async fn list_snapshots(repo: &Repository, m: &str, output: Output) -> anyhow::Result<Exit> {
    {
        let listing = catalog::list_snapshots_report(repo, &MailboxId::new(m)).await?;
        let snaps = listing.snapshots;
        if snaps.is_empty() && listing.unreadable.is_empty() {
            return Err(UsageError(format!(
                "mailbox {} has no snapshot in this repository (atlas list shows the mailboxes it has)",
                sanitize(m)
            ))
            .into());
        }
        let out = SnapshotsOut {
            mailbox: m.to_owned(),
            snapshots: snaps,
            unreadable: listing.unreadable,
        };
        let snaps = &out.snapshots;
        output.result(&out, || {
            let mut table = Table::new([
                "Snapshot", "Started", "Finished", "Status", "Folders", "Messages", "Errors",
            ]);
            for s in snaps {
                table.row([
                    s.id.to_string(),
                    when(s.started),
                    when(s.finished),
                    status_name(s.status).to_owned(),
                    s.folders.to_string(),
                    s.items.to_string(),
                    s.errors.to_string(),
                ]);
            }
            table.render() + &unreadable_text(&out.unreadable)
        })?;
        if !out.unreadable.is_empty() {
            return Ok(Exit::Partial);
        }
    }
    Ok(Exit::Success)
}

async fn list_mailboxes(repo: &Repository, output: Output) -> anyhow::Result<Exit> {
    let listing = catalog::list_mailboxes_report(repo).await?;
    let out = MailboxesOut {
        mailboxes: listing.mailboxes,
        unreadable: listing.unreadable,
    };
    let mailboxes = &out.mailboxes;
    output.result(&out, || {
        let mut table = Table::new([
            "Mailbox",
            "Snapshots",
            "Last backup",
            "Status",
            "Messages",
            "Size",
            "Stored",
        ]);
        for m in mailboxes {
            table.row([
                m.mailbox.clone(),
                m.snapshots.to_string(),
                m.last_backup.map(when).unwrap_or_default(),
                m.latest_status
                    .map(status_name)
                    .unwrap_or_default()
                    .to_owned(),
                m.items.to_string(),
                output::size(m.logical_bytes),
                output::size(m.physical_bytes),
            ]);
        }
        if mailboxes.is_empty() && out.unreadable.is_empty() {
            "The repository holds no snapshots yet (run atlas backup).".to_owned()
        } else {
            table.render() + &unreadable_text(&out.unreadable)
        }
    })?;
    Ok(if out.unreadable.is_empty() {
        Exit::Success
    } else {
        Exit::Partial
    })
}

/// `atlas read`.
pub async fn read(global: &GlobalArgs, args: &ReadArgs, output: Output) -> anyhow::Result<Exit> {
    let repo = open_repo(global).await?;
    let snapshot = selector(
        &repo,
        args.source.snapshot.as_deref(),
        args.source.mailbox.as_deref(),
        args.source.as_of.as_deref(),
    )
    .await?;
    let msg = read_message(
        &repo,
        &ReadOptions {
            snapshot,
            message: args.message.clone(),
            include_raw: args.raw || args.eml.is_some(),
        },
    )
    .await
    .with_context(|| format!("reading message {}", sanitize(&args.message)))?;
    if let Some(path) = &args.eml {
        let raw = msg.raw.as_ref().context("invariant: raw MIME requested")?;
        write_new_file(path, raw)?;
        note!(
            "Wrote {} ({} bytes, checksum verified)",
            path.display(),
            raw.len()
        );
        return Ok(Exit::Success);
    }
    if args.raw {
        let raw = msg.raw.as_ref().context("invariant: raw MIME requested")?;
        let mut stdout = std::io::stdout().lock();
        let written = if stdout.is_terminal() {
            // Raw bytes could drive the terminal; show them neutralised on a TTY.
            stdout.write_all(sanitize_multiline(&String::from_utf8_lossy(raw)).as_bytes())
        } else {
            stdout.write_all(raw)
        };
        crate::console::reader_gone_is_ok(written.and_then(|()| stdout.flush()))?;
        return Ok(Exit::Success);
    }
    output.result(&msg, || {
        let mut s = String::new();
        for h in &msg.headers {
            let _ = writeln!(s, "{}: {}", sanitize(&h.name), sanitize(&h.value));
        }
        let _ = writeln!(s, "Folder: {}", sanitize(&msg.folder));
        s.push('\n');
        s.push_str(&sanitize_multiline(&msg.body));
        if !msg.attachments.is_empty() {
            s.push_str("\n\nAttachments:\n");
            for a in &msg.attachments {
                let _ = writeln!(
                    s,
                    "  {} ({}, {}{})",
                    sanitize(&a.name),
                    sanitize(&a.content_type),
                    output::size(a.size as u64),
                    if a.inline { ", inline" } else { "" }
                );
            }
        }
        s
    })?;
    Ok(Exit::Success)
}

fn write_new_file(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {} (it must not exist yet)", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// `atlas verify`.
pub async fn verify(
    global: &GlobalArgs,
    args: &VerifyArgs,
    output: Output,
) -> anyhow::Result<Exit> {
    let config = load_config(global)?;
    let settings = repository_settings(&config)?;
    // A TypeScript Atlas 1.x repository gets the check of its own objects: a check of its
    // converted cache would only prove that the cache is intact.
    let store = open_store(&settings)?;
    let format = detect(&store)
        .await
        .with_context(|| format!("looking at the repository at {}", location(&settings)))?;
    if format == Format::V1 {
        for warning in settings.warnings() {
            tracing::warn!("{warning}");
        }
        return super::v1::verify(&settings, store, args, output, global.quiet).await;
    }
    let repo = open_repository(&settings, None).await?;
    let scope = match (&args.snapshot, &args.mailbox, args.all) {
        (Some(s), _, _) => VerifyScope::Snapshot(
            resolve_snapshot_ref(&repo, s)
                .await
                .with_context(|| format!("finding snapshot {}", sanitize(s)))?,
        ),
        (None, Some(m), _) => VerifyScope::Mailbox(MailboxId::new(m)),
        (None, None, _) => VerifyScope::All,
    };
    let read_data = match args.read_data {
        None => ReadData::NONE,
        Some(p) if p < 100 => ReadData::rotating_daily(p, Utc::now()),
        Some(_) => ReadData::ALL,
    };
    let progress =
        Progress::for_tasks(Mode::detect(output.is_json(), global.quiet), "atlas verify");
    let content_check = if args.content_ids {
        ContentCheck::ContentId
    } else {
        ContentCheck::Decode
    };
    let opts = VerifyOptions {
        scope,
        read_data,
        content_check,
    };
    let summary = verify_with_progress(&repo, &opts, &progress).await;
    progress.finish();
    let summary = summary?;
    output.result(&summary, || {
        let mut s = format!(
            "Verified {} snapshot(s), {} folder(s), {} message(s): {} blobs checked in {} of {} packs ({} read).\n",
            summary.snapshots,
            summary.folders,
            summary.messages,
            summary.blobs_checked,
            summary.packs_read,
            summary.packs,
            output::size(summary.bytes_read)
        );
        if summary.is_ok() {
            s.push_str("No damage found.");
        } else {
            let _ = writeln!(s, "DAMAGE: {} problem(s):", summary.damage.len());
            for d in &summary.damage {
                let _ = writeln!(
                    s,
                    "  {:?}: mailbox {} snapshot {} folder {} message {} object {}: {}",
                    d.kind,
                    sanitize(d.mailbox.as_deref().unwrap_or("-")),
                    d.snapshot.map_or_else(|| "-".to_owned(), |i| i.to_string()),
                    sanitize(d.folder.as_deref().unwrap_or("-")),
                    d.message_id.as_ref().map_or_else(|| "-".to_owned(), |m| sanitize(m.as_str()).into_owned()),
                    sanitize(d.object.as_deref().unwrap_or("-")),
                    sanitize(&d.error)
                );
            }
            if let Some(next) = &summary.next_step {
                let _ = write!(s, "To heal it, {next}.");
            }
        }
        s
    })?;
    Ok(if summary.is_ok() {
        Exit::Success
    } else {
        Exit::Failure
    })
}

/// Whether an existing export at `path` may be replaced: `-y`, or a yes at the prompt on a
/// terminal. Without a terminal and without `-y`, it is a usage error (nothing is written).
/// Only ever asked about an earlier Atlas export: anything else at the path is refused
/// before this (`plan_output`).
fn confirm_overwrite(path: &Path, yes: bool) -> anyhow::Result<bool> {
    if yes {
        return Ok(true);
    }
    if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        prompt!(
            "{} is an earlier export. Replace it? [y/N] ",
            sanitize(&path.display().to_string())
        );
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        return Ok(matches!(answer.trim(), "y" | "Y" | "yes"));
    }
    Err(UsageError(format!(
        "{} already exists; pass -y to replace it or choose another path with -o",
        sanitize(&path.display().to_string())
    ))
    .into())
}

/// `atlas save`.
pub async fn save(global: &GlobalArgs, args: &SaveArgs, output: Output) -> anyhow::Result<Exit> {
    let repo = open_repo(global).await?;
    let snapshot = selector(
        &repo,
        args.source.snapshot.as_deref(),
        args.source.mailbox.as_deref(),
        args.source.as_of.as_deref(),
    )
    .await?;
    let format = match args.format {
        FormatArg::EmlZip => ExportFormat::EmlZip,
        FormatArg::Mbox => ExportFormat::Mbox,
        FormatArg::Ics => ExportFormat::Ics,
        FormatArg::Vcf => ExportFormat::Vcf,
        FormatArg::Json => ExportFormat::Json,
    };
    let progress = Arc::new(Progress::for_tasks(
        Mode::detect(output.is_json(), global.quiet),
        "atlas save",
    ));
    let opts = SaveOptions {
        snapshot,
        folder: args.folder.clone(),
        message: args.message.clone(),
        kind: args.kind,
        format,
        skip_verify: args.skip_verify,
        reporter: Arc::clone(&progress) as Arc<dyn Reporter>,
    };
    if args.output.as_deref() == Some(Path::new("-")) {
        let saved = save_to_stdout(&repo, &opts, global, output).await;
        progress.finish();
        return saved;
    }
    // No -o: the current directory, under the export's own name.
    let given = args.output.clone().unwrap_or_else(|| PathBuf::from("."));
    let plan = plan_output(&repo, &opts, Some(&given))
        .await
        .with_context(|| format!("saving to {}", given.display()))?;
    let path = plan.path.clone();
    let overwrite = plan.replaces && confirm_overwrite(&path, args.yes)?;
    if plan.replaces && !overwrite {
        note!("Nothing written.");
        return Ok(Exit::Failure);
    }
    let summary = save_to_path(&repo, &opts, &given, overwrite).await;
    progress.finish();
    let summary = summary.with_context(|| format!("saving to {}", path.display()))?;
    output.result(&summary, || {
        let mut s = format!(
            "Saved {} {} from {} folder(s) of {} (snapshot {}) to {} ({}){}.",
            summary.messages,
            saved_noun(summary.format),
            summary.folders,
            sanitize(&summary.mailbox),
            summary.snapshot,
            sanitize(&path.display().to_string()),
            output::size(summary.bytes),
            if args.skip_verify {
                ""
            } else {
                ", every checksum verified"
            }
        );
        for line in skipped_lines(&summary) {
            let _ = write!(s, "\n{line}");
        }
        if !summary.failed.is_empty() {
            let _ = write!(
                s,
                "\n{} message(s) could not be exported:",
                summary.failed.len()
            );
            for f in &summary.failed {
                let _ = write!(
                    s,
                    "\n  {} / {}: {}",
                    sanitize(&f.folder),
                    sanitize(f.message_id.as_str()),
                    sanitize(&f.error)
                );
            }
        }
        if let Some(step) = &summary.next_step {
            let _ = write!(s, "\nNext step: {step}.");
        }
        s
    })?;
    Ok(if summary.is_complete() {
        Exit::Success
    } else {
        Exit::Partial
    })
}

/// `save -o -`: the export on stdout (for a pipe or a redirect; never a terminal), the
/// summary on stderr. A zip needs to seek back while it is written, so it is built in an
/// anonymous temporary file (gone when the process ends, however it ends) and copied out;
/// mbox streams straight through as one file.
async fn save_to_stdout(
    repo: &Repository,
    opts: &SaveOptions,
    global: &GlobalArgs,
    output: Output,
) -> anyhow::Result<Exit> {
    if output.is_json() {
        return Err(UsageError(
            "--json and -o - would both write to stdout; save to a file with -o PATH for a JSON summary"
                .into(),
        )
        .into());
    }
    if std::io::stdout().is_terminal() {
        return Err(UsageError(
            "-o - writes the export to stdout, which is a terminal here; redirect it (> file) or pipe it"
                .into(),
        )
        .into());
    }
    let summary = match opts.format {
        ExportFormat::EmlZip | ExportFormat::Ics | ExportFormat::Vcf | ExportFormat::Json => {
            let spool = tempfile::tempfile().context("creating a temporary file for the zip")?;
            let (summary, spool) = write_eml_zip(repo, opts, spool, "stdout")
                .await
                .context("building the zip")?;
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                let mut spool = spool;
                std::io::Seek::rewind(&mut spool)?;
                let mut stdout = std::io::stdout().lock();
                std::io::copy(&mut spool, &mut stdout)?;
                stdout.flush()
            })
            .await
            .context("invariant: copy task runs")?
            .context("writing the zip to stdout")?;
            summary
        }
        ExportFormat::Mbox => {
            let (summary, _) = write_mbox(
                repo,
                opts,
                std::io::BufWriter::new(std::io::stdout()),
                "stdout",
            )
            .await
            .context("writing the mbox to stdout")?;
            summary
        }
    };
    if !global.quiet {
        note!(
            "Saved {} {} from {} folder(s) of {} (snapshot {}) to stdout ({}){}.",
            summary.messages,
            saved_noun(summary.format),
            summary.folders,
            sanitize(&summary.mailbox),
            summary.snapshot,
            output::size(summary.bytes),
            if opts.skip_verify {
                ""
            } else {
                ", every checksum verified"
            }
        );
        for line in skipped_lines(&summary) {
            note!("{line}");
        }
        for f in &summary.failed {
            note!(
                "  not exported: {} / {}: {}",
                sanitize(&f.folder),
                sanitize(f.message_id.as_str()),
                sanitize(&f.error)
            );
        }
        if let Some(step) = &summary.next_step {
            note!("Next step: {step}.");
        }
    }
    Ok(if summary.is_complete() {
        Exit::Success
    } else {
        Exit::Partial
    })
}

/// What a save of `format` writes: messages (mail formats) or items.
fn saved_noun(format: ExportFormat) -> &'static str {
    if format.item_format().is_none() {
        "message(s)"
    } else {
        "item(s)"
    }
}

/// One line per kind a save left out, naming the formats that take it.
fn skipped_lines(summary: &SaveSummary) -> Vec<String> {
    summary
        .skipped
        .iter()
        .map(|k| {
            let takers: Vec<&str> = k.formats.iter().map(|f| f.name()).collect();
            let advice = if takers.is_empty() {
                "no export format holds them (atlas restore brings them back)".to_owned()
            } else {
                format!("--format {} takes them", takers.join(" or "))
            };
            format!(
                "Skipped {} {} item(s): --format {} does not hold them; {advice}.",
                k.items, k.kind, summary.format
            )
        })
        .collect()
}

/// `atlas stats`.
pub async fn stats(global: &GlobalArgs, args: &StatsArgs, output: Output) -> anyhow::Result<Exit> {
    let repo = open_repo(global).await?;
    let mailbox = args.mailbox.as_deref().map(MailboxId::new);
    let s = catalog::stats_of_kind(&repo, mailbox.as_ref(), args.kind).await?;
    output.result(&s, || {
        let mut out = format!(
            "{} mailbox(es), {} snapshot(s), {} message version(s), {} unique message(s)\n\
             Logical size {}; unique content {}; stored {}\n\
             Dedup ratio {:.2}, compression ratio {:.2}; {} blobs in {} packs\n",
            s.mailboxes,
            s.snapshots,
            s.message_versions,
            s.unique_messages,
            output::size(s.logical_bytes),
            output::size(s.unique_bytes),
            output::size(s.physical_bytes),
            s.dedup_ratio,
            s.compression_ratio,
            s.blobs,
            s.packs
        );
        // A kind column once anything but mail is counted.
        let kinds = s.folders.iter().any(|f| !f.kind.is_mail());
        let mut headers = vec!["Mailbox", "Folder", "Messages", "Size"];
        if kinds {
            headers.insert(2, "Kind");
        }
        let mut folders = Table::new(headers);
        for f in &s.folders {
            let mut row = vec![
                f.mailbox.clone(),
                f.folder.clone(),
                f.messages.to_string(),
                output::size(f.logical_bytes),
            ];
            if kinds {
                row.insert(2, f.kind.to_string());
            }
            folders.row(row);
        }
        let mut months = Table::new(["Month", "Messages", "Size"]);
        for m in &s.months {
            months.row([
                m.month.clone(),
                m.messages.to_string(),
                output::size(m.logical_bytes),
            ]);
        }
        let _ = write!(
            out,
            "\nPer folder:\n{}\nPer month (received):\n{}",
            folders.render(),
            months.render()
        );
        out
    })?;
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use chrono::{FixedOffset, Utc};

    use super::{Bound, parse_instant};

    fn at(text: &str, bound: Bound, offset_hours: i32) -> String {
        let tz = FixedOffset::east_opt(offset_hours * 3600).unwrap();
        parse_instant(text, "--as-of", bound, &tz)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }

    #[test]
    fn a_full_rfc_3339_timestamp_is_taken_as_written() {
        assert_eq!(
            at("2026-03-31T18:00:00Z", Bound::EndOfDay, 5),
            "2026-03-31T18:00:00.000Z"
        );
        assert_eq!(
            at("2026-03-31T18:00:00+02:00", Bound::EndOfDay, 5),
            "2026-03-31T16:00:00.000Z"
        );
        assert_eq!(
            at("2026-03-31 18:00:00.250Z", Bound::EndOfDay, 5),
            "2026-03-31T18:00:00.250Z"
        );
    }

    #[test]
    fn a_day_or_a_time_without_offset_is_local() {
        // The whole local day counts for --as-of; a range starts at local midnight.
        assert_eq!(
            at("2026-03-31", Bound::EndOfDay, 14),
            "2026-03-31T09:59:59.999Z"
        );
        assert_eq!(
            at("2026-03-31", Bound::StartOfDay, -5),
            "2026-03-31T05:00:00.000Z"
        );
        assert_eq!(
            at("2026-03-31T18:00", Bound::EndOfDay, 2),
            "2026-03-31T16:00:00.000Z"
        );
        assert_eq!(
            at("2026-03-31 18:00:30", Bound::EndOfDay, 0),
            "2026-03-31T18:00:30.000Z"
        );
    }

    #[test]
    fn anything_else_is_a_usage_error_naming_the_forms() {
        let err = parse_instant("last tuesday", "--as-of", Bound::EndOfDay, &Utc).unwrap_err();
        assert_eq!(crate::exit::Exit::for_error(&err).code(), 3);
        assert!(err.to_string().contains("RFC 3339"), "{err}");
    }
}
