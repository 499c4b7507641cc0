//! `atlas backup` and `atlas mailboxes`: the commands that read the tenant through
//! Microsoft Graph (with `status`, in status.rs).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::Context as _;
use atlas_core::ports::{
    Clock, FolderOptions, MailSource, MailboxKind, SourceError, SourceMailbox, SystemClock,
};
use atlas_core::repo::Repository;
use atlas_core::service::{BackupOptions, BackupSummary, Cancel, MailboxOutcome, backup_mailboxes};
use atlas_graph::{GraphClient, GraphError, GraphSource, ReportPeriod};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::cli::{BackupArgs, GlobalArgs, MailboxKindArg, MailboxesArgs};
use crate::exit::{Exit, UsageError};
use crate::output::{self, Output, Table, sanitize};
use crate::progress::{Mode, Progress};

use super::context::{graph_client, install_ctrl_c, lease_owner, open_for_writing};
use super::load_config;

/// The kind as `--json` names it (camelCase, like every value of the JSON documents).
fn kind_id(kind: MailboxKind) -> &'static str {
    match kind {
        MailboxKind::Licensed => "licensed",
        MailboxKind::Shared => "shared",
        MailboxKind::Unlicensed => "unlicensed",
        MailboxKind::NoMailbox => "noMailbox",
        MailboxKind::Unknown => "unknown",
    }
}

pub(super) fn kind_name(kind: MailboxKind) -> &'static str {
    match kind {
        MailboxKind::Licensed => "licensed",
        MailboxKind::Shared => "shared",
        MailboxKind::Unlicensed => "unlicensed",
        MailboxKind::NoMailbox => "no mailbox",
        MailboxKind::Unknown => "unknown",
    }
}

pub(super) fn wanted(kind: MailboxKind, kinds: &[MailboxKindArg]) -> bool {
    match kind {
        MailboxKind::Licensed => kinds.contains(&MailboxKindArg::Licensed),
        MailboxKind::Shared => kinds.contains(&MailboxKindArg::Shared),
        MailboxKind::Unlicensed => kinds.contains(&MailboxKindArg::Unlicensed),
        // Without MailboxSettings.Read the kind cannot be told; trying costs one request
        // and a clear "no mailbox" skip, while skipping could lose a mailbox.
        MailboxKind::Unknown => true,
        MailboxKind::NoMailbox => false,
    }
}

/// One mailbox line of the backup summary.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct MailboxResult {
    mailbox: String,
    /// `complete`, `partial` or `failed`.
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<BackupSummary>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct GraphFigures {
    requests: u64,
    retries: u64,
    throttled: u64,
    throttle_wait_ms: u64,
    bytes_received: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct BackupReport {
    tenant_id: String,
    repository: String,
    mailboxes: Vec<MailboxResult>,
    skipped: Vec<Skipped>,
    graph: GraphFigures,
    warnings: Vec<String>,
    /// Object Lock applied to each snapshot of the run (`--retention-days`), see storage.rs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    object_lock: Vec<super::storage::SnapshotLock>,
    exit_code: u8,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Skipped {
    mailbox: String,
    reason: String,
}

/// Decide the exit code of a backup from its outcomes.
fn backup_exit(results: &[MailboxResult]) -> Exit {
    let failed = results.iter().filter(|r| r.result == "failed").count();
    let partial = results.iter().filter(|r| r.result == "partial").count();
    if results.is_empty() || (failed == results.len()) {
        if results.is_empty() {
            Exit::Success
        } else {
            Exit::Failure
        }
    } else if failed > 0 || partial > 0 {
        Exit::Partial
    } else {
        Exit::Success
    }
}

async fn select_mailboxes(
    source: &GraphSource,
    args: &BackupArgs,
) -> anyhow::Result<(Vec<SourceMailbox>, Vec<Skipped>)> {
    if !args.mailboxes.is_empty() {
        // Resolve every named mailbox before anything is written: an unknown address or
        // a user without Exchange is a usage problem of this run, not a partial backup.
        let mut out = Vec::new();
        for m in &args.mailboxes {
            let mailbox = source
                .resolve_mailbox(m)
                .await
                .with_context(|| format!("looking up mailbox {}", sanitize(m)))?;
            // The directory cannot always tell whether a mailbox exists (no licence plan,
            // no MailboxSettings.Read): ask Exchange once, before the repository is touched.
            // A missing permission is found here too, so it is named before anything is
            // written.
            let mut no_mailbox = mailbox.kind == MailboxKind::NoMailbox;
            if !no_mailbox {
                match source
                    .list_folders(&mailbox, FolderOptions::default())
                    .await
                {
                    Err(SourceError::MailboxNotEnabled(_)) => no_mailbox = true,
                    Err(e @ (SourceError::PermissionDenied { .. } | SourceError::Auth(_))) => {
                        return Err(anyhow::Error::new(e)
                            .context(format!("reading the folders of {}", sanitize(m))));
                    }
                    // Anything else (a transient failure) is met again, and reported per
                    // mailbox, by the backup itself.
                    _ => {}
                }
            }
            if no_mailbox {
                return Err(UsageError(format!(
                    "{} has no Exchange Online mailbox (unlicensed, soft-deleted or on-premises); nothing to back up",
                    sanitize(m)
                ))
                .into());
            }
            out.push(mailbox);
        }
        return Ok((out, Vec::new()));
    }
    let all = source
        .list_mailboxes()
        .await
        .context("listing the tenant's mailboxes")?;
    let mut chosen = Vec::new();
    let mut skipped = Vec::new();
    for m in all {
        if wanted(m.kind, &args.kinds) {
            chosen.push(m);
        } else {
            skipped.push(Skipped {
                reason: format!("{} (not selected by --kinds)", kind_name(m.kind)),
                mailbox: m.address().to_owned(),
            });
        }
    }
    Ok((chosen, skipped))
}

/// `atlas backup`.
#[allow(clippy::too_many_lines)] // Setup, run, report: one readable sequence.
pub async fn backup(
    global: &GlobalArgs,
    args: &BackupArgs,
    output: Output,
) -> anyhow::Result<Exit> {
    let config = load_config(global)?;
    let (repo_settings, graph_settings) = config
        .for_repository_and_graph()
        .context("checking the configuration")?;
    for w in repo_settings.warnings() {
        tracing::warn!("{w}");
    }
    let client = graph_client(&graph_settings)?;
    client
        .check_sign_in()
        .await
        .context("signing in to Microsoft Graph")?;
    let source = GraphSource::new(client.clone());
    let (mailboxes, skipped) = select_mailboxes(&source, args).await?;

    // Only `atlas init` creates a repository: a location that holds none is refused
    // before anything is written (a typo in ATLAS_REPOSITORY must not start a fresh full
    // backup somewhere else).
    super::context::require_repository(&repo_settings).await?;
    // Object Lock / S3 bucket preparation (storage.rs): refuses locking on a local
    // repository, all before anything is written.
    let wanted = super::storage::prepare_backup_retention(
        &repo_settings,
        args.retention_days,
        args.lock_mode,
    )
    .await?;

    let repo: Repository = open_for_writing(&repo_settings).await?;
    super::replicate::refuse_replica(&repo_settings, args.force).await?;
    super::storage::ensure_lock(&repo, wanted).await?;
    let repository = super::key::location(&repo_settings);

    let mode = Mode::detect(output.is_json(), global.quiet);
    let progress = Arc::new(Progress::new(mode, Some(client.clone()), mailboxes.len()));
    let cancel: Arc<Cancel> = install_ctrl_c(global.quiet);
    let opts = BackupOptions {
        folders: args.folders.clone(),
        full: args.full,
        page_size: args.page_size,
        folder_options: FolderOptions {
            include_hidden: args.include_hidden,
            include_recoverable_items: args.include_recoverable_items,
        },
        downloads_in_flight: 4,
        lease_owner: lease_owner(),
        tool: format!("atlas {}", env!("CARGO_PKG_VERSION")),
        retention: wanted,
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let outcomes: Vec<MailboxOutcome> = backup_mailboxes(
        &repo,
        Arc::new(source),
        mailboxes,
        &opts,
        usize::from(args.concurrency),
        clock,
        Arc::clone(&progress) as Arc<dyn atlas_core::ports::Reporter>,
        Arc::clone(&cancel),
    )
    .await;
    progress.finish();

    let mut skipped = skipped;
    let tenant_wide = args.mailboxes.is_empty();
    let results: Vec<MailboxResult> = outcomes
        .into_iter()
        .filter(|o| {
            // Tenant-wide, a directory user whose mailbox turns out not to exist (the kind
            // could not be told beforehand) is not a failed backup: there is nothing to
            // back up. Named with -m, it is an error (handled before anything runs).
            let no_mailbox = matches!(
                &o.result,
                Err(atlas_core::Error::Source(SourceError::MailboxNotEnabled(_)))
            );
            if tenant_wide && no_mailbox {
                skipped.push(Skipped {
                    mailbox: o.mailbox.clone(),
                    reason: "no Exchange Online mailbox".into(),
                });
            }
            !(tenant_wide && no_mailbox)
        })
        .map(|o| match o.result {
            Ok(s) => MailboxResult {
                mailbox: o.mailbox,
                result: if s.complete { "complete" } else { "partial" },
                error: None,
                summary: Some(s),
            },
            Err(e) => MailboxResult {
                mailbox: o.mailbox,
                result: "failed",
                error: Some(format!("{e}")),
                summary: None,
            },
        })
        .collect();
    let object_lock = match wanted {
        Some(w) => {
            let ids: Vec<_> = results
                .iter()
                .filter_map(|r| r.summary.as_ref().and_then(|s| s.snapshot))
                .collect();
            super::storage::lock_snapshots(&repo, &ids, w).await
        }
        None => Vec::new(),
    };
    let mut exit = backup_exit(&results);
    if object_lock.iter().any(|l| l.error.is_some()) {
        exit = Exit::Failure;
    }
    let stats = client.stats();
    let report = BackupReport {
        tenant_id: repo_settings.tenant_id.clone(),
        repository,
        mailboxes: results,
        skipped,
        graph: GraphFigures {
            requests: stats.requests,
            retries: stats.retries,
            throttled: stats.throttled,
            throttle_wait_ms: stats.throttle_wait_ms,
            bytes_received: stats.bytes_received,
        },
        warnings: progress.warnings(),
        object_lock,
        exit_code: exit.code(),
    };
    output.result(&report, || render_backup(&report))?;
    Ok(exit)
}

fn render_backup(report: &BackupReport) -> String {
    let mut table = Table::new([
        "Mailbox",
        "Result",
        "Snapshot",
        "New",
        "Reused",
        "Removed",
        "Downloaded",
    ]);
    for r in &report.mailboxes {
        match &r.summary {
            Some(s) => table.row([
                r.mailbox.clone(),
                r.result.to_owned(),
                s.snapshot.map(|id| id.to_string()).unwrap_or_default(),
                s.downloaded.to_string(),
                s.reused.to_string(),
                s.removed.to_string(),
                output::size(s.bytes_downloaded),
            ]),
            None => table.row([
                r.mailbox.clone(),
                r.result.to_owned(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ]),
        }
    }
    let mut out = table.render();
    // Completeness report: every folder with a gap, and every failed mailbox.
    let mut gaps = String::new();
    for r in &report.mailboxes {
        if let Some(e) = &r.error {
            let _ = writeln!(gaps, "  {}: FAILED: {}", sanitize(&r.mailbox), sanitize(e));
        }
        let Some(s) = &r.summary else { continue };
        for f in s.folders.iter().filter(|f| !f.is_complete()) {
            let _ = write!(
                gaps,
                "  {} / {}: Graph reports {}, snapshot has {}",
                sanitize(&r.mailbox),
                sanitize(&f.path),
                f.graph_count,
                f.stored
            );
            if !f.finished {
                gaps.push_str(", enumeration not finished (resumes next run)");
            }
            if !f.errors.is_empty() {
                let _ = write!(gaps, ", {} item(s) failed:", f.errors.len());
                for e in f.errors.iter().take(5) {
                    let id = e.message_id.as_ref().map_or("-", |m| m.as_str());
                    let _ = write!(gaps, " [{} {}]", sanitize(id), sanitize(&e.reason));
                }
            }
            gaps.push('\n');
        }
    }
    if gaps.is_empty() {
        out.push_str("\nCompleteness: every folder of every mailbox is fully captured.\n");
    } else {
        out.push_str("\nCompleteness gaps (retried on the next run):\n");
        out.push_str(&gaps);
    }
    for s in &report.skipped {
        let _ = writeln!(
            out,
            "skipped {}: {}",
            sanitize(&s.mailbox),
            sanitize(&s.reason)
        );
    }
    let _ = writeln!(
        out,
        "Graph: {} requests, {} retries, throttled {}× ({} waited). Repository: {}",
        report.graph.requests,
        report.graph.retries,
        report.graph.throttled,
        output::duration(std::time::Duration::from_millis(
            report.graph.throttle_wait_ms
        )),
        sanitize(&report.repository)
    );
    out.push_str(&super::storage::render_locks(&report.object_lock));
    out
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct MailboxLine {
    address: String,
    display_name: String,
    kind: &'static str,
    /// `kind` for people.
    #[serde(skip)]
    label: &'static str,
    account_enabled: Option<bool>,
    created: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    item_count: Option<u64>,
}

/// `atlas mailboxes --json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct MailboxesOut {
    /// Whether the usage report could be read (Reports.Read.All): without it, no mailbox
    /// has `sizeBytes` and `itemCount`.
    sizes_available: bool,
    mailboxes: Vec<MailboxLine>,
}

/// Sizes from the usage report, or `None` when Reports.Read.All is not granted (the
/// column is then omitted without error, as the seed documents).
async fn usage(
    client: &GraphClient,
) -> anyhow::Result<Option<HashMap<String, (Option<u64>, Option<u64>)>>> {
    match client.mailbox_usage(ReportPeriod::D7).await {
        Ok(rows) => Ok(Some(
            rows.into_iter()
                .map(|r| {
                    (
                        r.user_principal_name.to_lowercase(),
                        (r.storage_used_bytes, r.item_count),
                    )
                })
                .collect(),
        )),
        Err(GraphError::PermissionDenied { .. }) => {
            tracing::info!("Reports.Read.All not granted: mailbox sizes omitted");
            Ok(None)
        }
        Err(e) => Err(e).context("reading the mailbox usage report"),
    }
}

/// `atlas mailboxes`: the live list from Graph.
pub async fn mailboxes(
    global: &GlobalArgs,
    args: &MailboxesArgs,
    output: Output,
) -> anyhow::Result<Exit> {
    let config = load_config(global)?;
    let graph_settings = config.for_graph().context("checking the configuration")?;
    let client = graph_client(&graph_settings)?;
    let source = GraphSource::new(client.clone());
    let all = source
        .list_mailboxes()
        .await
        .context("listing the tenant's mailboxes")?;
    let sizes = usage(&client).await?;
    let lines: Vec<MailboxLine> = all
        .into_iter()
        .filter(|m| !args.licensed_only || m.kind == MailboxKind::Licensed)
        .map(|m| {
            let size = sizes.as_ref().and_then(|s| s.get(m.address()).copied());
            MailboxLine {
                address: m.address().to_owned(),
                display_name: m.display_name,
                kind: kind_id(m.kind),
                label: kind_name(m.kind),
                account_enabled: m.account_enabled,
                created: m.created,
                size_bytes: size.and_then(|s| s.0),
                item_count: size.and_then(|s| s.1),
            }
        })
        .collect();
    let out = MailboxesOut {
        sizes_available: sizes.is_some(),
        mailboxes: lines,
    };
    let lines = &out.mailboxes;
    output.result(&out, || {
        let with_size = sizes.is_some();
        let mut headers = vec!["Address", "Display name", "Kind", "Enabled", "Created"];
        if with_size {
            headers.extend(["Size", "Items"]);
        }
        let mut table = Table::new(headers);
        for l in lines {
            let mut row = vec![
                l.address.clone(),
                l.display_name.clone(),
                l.label.to_owned(),
                l.account_enabled
                    .map_or("?", |e| if e { "yes" } else { "no" })
                    .to_owned(),
                l.created.map(output::day).unwrap_or_default(),
            ];
            if with_size {
                row.push(l.size_bytes.map(output::size).unwrap_or_default());
                row.push(l.item_count.map(|c| c.to_string()).unwrap_or_default());
            }
            table.row(row);
        }
        format!("{}{} mailboxes", table.render(), lines.len())
    })?;
    Ok(Exit::Success)
}
