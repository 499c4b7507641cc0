//! `atlas restore`: bring a snapshot (or part of it) back into a mailbox.

use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::Context as _;
use atlas_core::ports::MailTarget;
use atlas_core::service::restore::{Destination, RestoreOptions, execute, plan};
use atlas_graph::GraphTarget;
use chrono::{DateTime, Utc};

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
                let _ = writeln!(
                    s,
                    "  {}: {} message(s)",
                    sanitize(&f.source_path),
                    f.messages
                );
            }
            s
        })?;
        return Ok(Exit::Success);
    }

    let client = graph_client(&graph_settings)?;
    let target: Arc<dyn MailTarget> = Arc::new(GraphTarget::new(client.clone()));
    let mode = Mode::detect(output.is_json(), global.quiet);
    let progress = Progress::titled(mode, "atlas restore", Some(client), 1);
    let cancel = install_ctrl_c(global.quiet);
    let summary = execute(&planned, &repo, target, &progress, &cancel).await;
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
