//! `atlas restore`: bring a snapshot (or part of it) back into a mailbox.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use async_trait::async_trait;
use atlas_core::model::ItemKind;
use atlas_core::ports::{ConfigTarget, LedgerRecord, MailTarget, RestoreLedger, TargetError};
use atlas_core::service::restore::{
    ConfigOutcome, DEFAULT_RESTORE_KINDS, Destination, Importer, RestoreOptions, RestorePlan,
    execute_all, plan,
};
use atlas_graph::{ClassicTarget, GraphTarget};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::cli::{GlobalArgs, RestoreArgs};
use crate::exit::{Exit, UsageError};
use crate::output::{self, Output, sanitize};
use crate::progress::{Mode, Progress};

use super::browse::{Bound, parse_instant, selector};
use super::context::{graph_client, install_ctrl_c, open_repository};
use super::load_config;

/// `--start-date` / `--end-date`: a day in the local zone (inclusive), a local time or an
/// RFC 3339 instant.
fn parse_bound(text: &str, end: bool) -> anyhow::Result<DateTime<Utc>> {
    if end {
        parse_instant(text, "--end-date", Bound::EndOfDay, &chrono::Local)
    } else {
        parse_instant(text, "--start-date", Bound::StartOfDay, &chrono::Local)
    }
}

/// A restore's ledger as a file of JSON lines under
/// `<data dir>/atlas/restore-ledgers/`, one per snapshot, target mailbox and restore root,
/// so the same command run again (after an interruption) finds what was imported. Each
/// record is flushed to the file before the import it announces is sent.
#[derive(Debug)]
struct FileLedger {
    path: PathBuf,
    file: Mutex<Option<std::fs::File>>,
}

impl FileLedger {
    fn for_plan(planned: &RestorePlan) -> anyhow::Result<Self> {
        let base = crate::config::Inputs::from_process(None)
            .ok()
            .and_then(|i| i.data_dir)
            .or_else(dirs::data_dir)
            .context(
                "this system has no per-user data directory for the restore ledger of \
                 calendars, contacts, tasks and notes",
            )?;
        let mut h = Sha256::new();
        for part in [
            planned.snapshot.to_string().as_str(),
            planned.target_mailbox.to_lowercase().as_str(),
            planned.root.as_deref().unwrap_or(""),
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let dir = base.join("atlas").join("restore-ledgers");
        Ok(Self {
            path: dir.join(format!("{}.jsonl", hex::encode(&h.finalize()[..16]))),
            file: Mutex::new(None),
        })
    }

    fn io(&self, what: &str, e: &std::io::Error) -> TargetError {
        TargetError::Other(format!(
            "restore ledger {}: {what}: {e}",
            self.path.display()
        ))
    }
}

#[async_trait]
impl RestoreLedger for FileLedger {
    async fn load(&self) -> Result<Vec<LedgerRecord>, TargetError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io("reading", &e)),
        };
        // A line cut off by a crash is the last one and announces nothing complete.
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }

    async fn append(&self, record: &LedgerRecord) -> Result<(), TargetError> {
        use std::io::Write as _;
        let mut guard = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| self.io("creating", &e))?;
            }
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(|e| self.io("opening", &e))?;
            *guard = Some(f);
        }
        let Some(file) = guard.as_mut() else {
            return Err(TargetError::Other("restore ledger is not open".into()));
        };
        let mut line = serde_json::to_vec(record)
            .map_err(|e| TargetError::Other(format!("restore ledger record: {e}")))?;
        line.push(b'\n');
        file.write_all(&line)
            .and_then(|()| file.sync_data())
            .map_err(|e| self.io("writing", &e))
    }
}

/// `atlas restore`.
#[allow(clippy::too_many_lines)] // Setup, plan, run, report.
pub async fn restore(
    global: &GlobalArgs,
    args: &RestoreArgs,
    output: Output,
) -> anyhow::Result<Exit> {
    let config = load_config(global)?;
    let (repo_settings, graph_settings) = config
        .for_repository_and_graph()
        .context("checking the configuration")?;
    for w in repo_settings.warnings() {
        tracing::warn!("{w}");
    }
    let repo = open_repository(&repo_settings, None).await?;
    let snapshot = selector(
        &repo,
        args.source.snapshot.as_deref(),
        args.source.mailbox.as_deref(),
        args.source.as_of.as_deref(),
    )
    .await?;
    let mut opts = RestoreOptions::new(snapshot);
    opts.target.clone_from(&args.target);
    opts.folders.clone_from(&args.folders);
    opts.message.clone_from(&args.message);
    opts.start = args
        .start_date
        .as_deref()
        .map(|t| parse_bound(t, false))
        .transpose()?;
    opts.end = args
        .end_date
        .as_deref()
        .map(|t| parse_bound(t, true))
        .transpose()?;
    if let (Some(s), Some(e)) = (opts.start, opts.end) {
        if s > e {
            return Err(UsageError("--start-date is after --end-date".into()).into());
        }
    }
    // Without --kinds every kind but configuration (which changes how the live mailbox
    // behaves); `all` includes it, as backup's `all` does.
    opts.kinds = args.kinds.unwrap_or(DEFAULT_RESTORE_KINDS);
    if args.overwrite_settings && !opts.kinds.contains(ItemKind::Config) {
        return Err(UsageError(
            "--overwrite-settings applies to the configuration: add --kinds config (or all)".into(),
        )
        .into());
    }
    opts.overwrite_settings = args.overwrite_settings;
    opts.from_mime = args.from_mime;
    opts.destination = match (&args.root, args.in_place) {
        (Some(name), _) => Destination::NamedRoot(name.clone()),
        (None, true) => Destination::InPlace,
        (None, false) => Destination::Root,
    };
    let planned = plan(&repo, &opts).await.context("planning the restore")?;
    if args.dry_run {
        output.result(&planned, || {
            let mut s = format!(
                "Would restore {} message(s) ({}) from {} (snapshot {}) into {}{}:\n",
                planned.messages,
                output::size(planned.bytes),
                sanitize(&planned.source_mailbox),
                planned.snapshot,
                sanitize(&planned.target_mailbox),
                planned.root.as_ref().map_or_else(
                    || " (in place)".to_owned(),
                    |r| format!(" under folder {}", sanitize(r))
                )
            );
            for f in &planned.folders {
                if f.kind.is_mail() {
                    let _ = writeln!(
                        s,
                        "  {}: {} message(s){}",
                        sanitize(&f.source_path),
                        f.messages,
                        if planned.imports_mail(f) {
                            ", imported from their full-fidelity streams"
                        } else {
                            ""
                        }
                    );
                } else {
                    let _ = writeln!(
                        s,
                        "  {} ({}): {} item(s), imported",
                        sanitize(&f.source_path),
                        f.kind,
                        f.messages
                    );
                }
            }
            if let Some(c) = &planned.config {
                let _ = writeln!(
                    s,
                    "  configuration: categories and inbox rules the target lacks{}",
                    if c.overwrite_settings {
                        "; mailbox settings overwritten"
                    } else {
                        " (settings left alone)"
                    }
                );
            }
            s
        })?;
        return Ok(Exit::Success);
    }

    let client = graph_client(&graph_settings)?;
    let graph = GraphTarget::new(client.clone());
    let target: Arc<dyn MailTarget> = Arc::new(graph.clone());
    let importer = if planned
        .folders
        .iter()
        .any(|f| !f.kind.is_mail() || planned.imports_mail(f))
    {
        Some(Importer {
            target: Arc::new(graph),
            ledger: Arc::new(FileLedger::for_plan(&planned)?),
            classic: Some(Arc::new(ClassicTarget::new(client.clone()))),
        })
    } else {
        None
    };
    let config: Option<Arc<dyn ConfigTarget>> = planned
        .config
        .is_some()
        .then(|| Arc::new(GraphTarget::new(client.clone())) as Arc<dyn ConfigTarget>);
    let mode = Mode::detect(output.is_json(), global.quiet);
    let progress = Progress::titled(mode, "atlas restore", Some(client), 1);
    let cancel = install_ctrl_c(global.quiet);
    let summary = execute_all(
        &planned, &repo, target, importer, config, &progress, &cancel,
    )
    .await;
    progress.finish();
    let summary = summary.context("restoring")?;
    output.result(&summary, || {
        let mut s = format!(
            "Restored {} into {}{}: {} created, {} completed, {} already present, {} failed; {} attachment(s).\n",
            sanitize(&summary.source_mailbox),
            sanitize(&summary.target_mailbox),
            summary
                .root
                .as_ref()
                .map_or_else(|| " (in place)".to_owned(), |r| format!(" / {}", sanitize(r))),
            summary.created,
            summary.completed,
            summary.skipped,
            summary.failed,
            summary.attachments,
        );
        let mut gaps = String::new();
        for f in &summary.folders {
            if !f.missing.is_empty() || !f.verified {
                let _ = writeln!(
                    gaps,
                    "  {} → {}: expected {}, present {}{}",
                    sanitize(&f.source_path),
                    sanitize(&f.target_path),
                    f.expected,
                    f.present,
                    if f.verified { "" } else { " (not verified)" }
                );
                for m in f.missing.iter().take(10) {
                    let _ = writeln!(gaps, "    missing {}: {}", sanitize(&m.message_id), sanitize(&m.reason));
                }
            }
        }
        for c in &summary.config {
            let outcome = match c.outcome {
                ConfigOutcome::Created => "added",
                ConfigOutcome::Updated => "updated",
                ConfigOutcome::Skipped => "skipped",
                ConfigOutcome::Failed => "FAILED",
            };
            let entry = serde_json::to_value(c.entry)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "  {entry} {}: {outcome}{}",
                sanitize(&c.name),
                c.reason
                    .as_ref()
                    .map_or_else(String::new, |r| format!(" ({})", sanitize(r)))
            );
        }
        if gaps.is_empty() {
            s.push_str("Verified: every folder holds every restored message.");
        } else {
            s.push_str("Shortfalls (rerun the same command to complete; nothing is duplicated):\n");
            s.push_str(&gaps);
        }
        s
    })?;
    Ok(if summary.is_partial() {
        Exit::Partial
    } else {
        Exit::Success
    })
}
