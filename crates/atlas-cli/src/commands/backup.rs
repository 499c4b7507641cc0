//! `atlas backup` and `atlas mailboxes`: the commands that read the tenant through
//! Microsoft Graph (with `status`, in status.rs).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::Context as _;
use atlas_core::model::{Fidelity, KindSet};
use atlas_core::model::{MailboxId, SnapshotId};
use atlas_core::ports::{Clock, FolderOptions, MailSource, MailboxKind, SystemClock};
use atlas_core::repo::Repository;
use atlas_core::service::Cancel;
use atlas_core::service::backup::{
    BackupOptions, BackupPlan, BackupRequest, BackupSummary, MailboxOutcome, MailboxSelection,
    ShardShare, SkipReason, Verdict, execute, plan, plan_for,
};
use atlas_core::service::protection::{self, SnapshotBrief};
use atlas_core::service::shard::Shard;
use atlas_graph::{GraphClient, GraphError, GraphSource, ReportPeriod};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::cli::{BackupArgs, GlobalArgs, MailboxKindArg, MailboxesArgs};
use crate::config::{JOB_COMPLETION_INDEX_ENV, RepositorySettings};
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

/// The core's mailbox kind for a `--kinds` value.
pub(super) fn mailbox_kind(arg: MailboxKindArg) -> MailboxKind {
    match arg {
        MailboxKindArg::Licensed => MailboxKind::Licensed,
        MailboxKindArg::Shared => MailboxKind::Shared,
        MailboxKindArg::Unlicensed => MailboxKind::Unlicensed,
    }
}

/// Why a mailbox was skipped, as the report says it.
fn skip_reason(reason: SkipReason) -> String {
    match reason {
        SkipReason::KindNotSelected(kind) => {
            format!("{} (not selected by --kinds)", kind_name(kind))
        }
        SkipReason::NoMailbox => "no Exchange Online mailbox".into(),
        // A reason a newer core adds is still shown, if plainly.
        other => format!("{other:?}"),
    }
}

/// A complete snapshot, as the backup summary and `atlas report` name it.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct LastComplete {
    pub(super) snapshot: SnapshotId,
    pub(super) started: DateTime<Utc>,
    pub(super) finished: DateTime<Utc>,
}

impl From<SnapshotBrief> for LastComplete {
    fn from(b: SnapshotBrief) -> Self {
        Self {
            snapshot: b.id,
            started: b.started,
            finished: b.finished,
        }
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
    /// How long this run's snapshot took (its record's start to end); absent when the run
    /// committed none.
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<u64>,
    /// The newest complete snapshot of the mailbox after this run — this run's, or the one
    /// a failed or partial run leaves standing — for monitoring (`--metrics-file`).
    last_complete: Option<LastComplete>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct GraphFigures {
    requests: u64,
    retries: u64,
    throttled: u64,
    throttle_wait_ms: u64,
    bytes_received: u64,
    /// Requests by kind of item, with the items each kind's delta reported.
    by_kind: Vec<KindCost>,
}

impl GraphFigures {
    /// The client's counters at the end of the run.
    fn of(client: &GraphClient) -> Self {
        let stats = client.stats();
        Self {
            requests: stats.requests,
            retries: stats.retries,
            throttled: stats.throttled,
            throttle_wait_ms: stats.throttle_wait_ms,
            bytes_received: stats.bytes_received,
            by_kind: client
                .request_costs()
                .into_iter()
                .map(KindCost::from)
                .collect(),
        }
    }

    /// `Graph requests by kind: mail 12 (40 items, 3.33 per request), …, other 5`.
    fn cost_line(&self) -> Option<String> {
        if self.by_kind.is_empty() {
            return None;
        }
        let parts: Vec<String> = self
            .by_kind
            .iter()
            .map(|c| match c.kind.as_str() {
                "other" => format!("other {}", c.requests),
                _ => format!(
                    "{} {} ({} items, {:.2} per request)",
                    c.kind, c.requests, c.items, c.items_per_request
                ),
            })
            .collect();
        Some(format!("Graph requests by kind: {}\n", parts.join(", ")))
    }
}

/// What one kind of item cost in Graph requests (issue 14).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct KindCost {
    /// The kind, or `other` for requests of no kind (sign-in, directory, the mailbox
    /// folder tree the kinds other than mail share).
    kind: String,
    requests: u64,
    /// Items the kind's delta reported (new or changed; all of them in a first backup).
    items: u64,
    items_per_request: f64,
}

impl From<atlas_graph::RequestCost> for KindCost {
    fn from(c: atlas_graph::RequestCost) -> Self {
        Self {
            kind: c.kind.map_or_else(|| "other".to_owned(), |k| k.to_string()),
            requests: c.requests,
            items: c.items,
            // Two decimals are what a reader compares.
            items_per_request: (c.items_per_request() * 100.0).round() / 100.0,
        }
    }
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
    /// With `--shard`: which share of the selection this run took.
    #[serde(skip_serializing_if = "Option::is_none")]
    shard: Option<ShardOut>,
    exit_code: u8,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Skipped {
    mailbox: String,
    reason: String,
}

/// `--shard I/N` or `--shard auto/N` (I from `JOB_COMPLETION_INDEX`, which the Job
/// controller sets in each pod of an Indexed Job). Every malformed value is a usage error.
fn shard(spec: &str, job_index: Option<&str>) -> Result<Shard, UsageError> {
    let usage = |e: atlas_core::Error| UsageError(format!("--shard: {e}"));
    match spec.trim().strip_prefix("auto/") {
        None => spec.parse().map_err(usage),
        Some(count) => {
            let Some(index) = job_index else {
                return Err(UsageError(format!(
                    "--shard {spec} takes the shard index from {JOB_COMPLETION_INDEX_ENV}, which is not set (Kubernetes sets it in the pods of an Indexed Job); elsewhere give the index: --shard 0/{}",
                    count.trim()
                )));
            };
            format!("{}/{count}", index.trim()).parse().map_err(|e| {
                UsageError(format!(
                    "--shard {spec} with {JOB_COMPLETION_INDEX_ENV}={}: {e}",
                    sanitize(index)
                ))
            })
        }
    }
}

/// The shard a sharded run took, in the summary.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ShardOut {
    /// 0-based.
    index: u32,
    count: u32,
    /// Mailboxes this shard backs up (before any turns out to have no mailbox).
    mailboxes: usize,
    /// Mailboxes of the whole selection, over all shards.
    selected: usize,
}

impl From<ShardShare> for ShardOut {
    fn from(s: ShardShare) -> Self {
        Self {
            index: s.shard.index(),
            count: s.shard.count(),
            mailboxes: s.mailboxes,
            selected: s.selected,
        }
    }
}

/// How much of each message to keep: the flag wins over the configuration; MIME alone
/// by default.
fn fidelity(args: &BackupArgs, config: &crate::config::Config) -> anyhow::Result<Fidelity> {
    Ok(match args.fidelity {
        Some(f) => f,
        None => config.fidelity()?.unwrap_or_default(),
    })
}

/// The core's backup request for the command line.
fn request(args: &BackupArgs, shard: Option<Shard>, fidelity: Fidelity) -> BackupRequest {
    let mut request = BackupRequest::new(if args.mailboxes.is_empty() {
        MailboxSelection::Tenant {
            kinds: args
                .mailbox_kinds
                .iter()
                .map(|k| mailbox_kind(*k))
                .collect(),
        }
    } else {
        MailboxSelection::Named(args.mailboxes.clone())
    });
    request.mailboxes_in_parallel = usize::from(args.concurrency);
    request.shard = shard;
    request.item_kinds = args.kinds.unwrap_or(KindSet::ALL);
    request.item_kinds_explicit = args.kinds.is_some();
    request.options = BackupOptions {
        folders: args.folders.clone(),
        full: args.full,
        page_size: args.page_size,
        folder_options: FolderOptions {
            include_hidden: args.include_hidden,
            include_recoverable_items: args.include_recoverable_items,
            fidelity,
            ..FolderOptions::default()
        },
        downloads_in_flight: usize::from(args.downloads),
        lease_owner: lease_owner(),
        tool: format!("atlas {}", env!("CARGO_PKG_VERSION")),
        retention: None,
    };
    request
}

/// The summary line of each mailbox.
fn mailbox_results(outcomes: Vec<MailboxOutcome>) -> Vec<MailboxResult> {
    outcomes
        .into_iter()
        .map(|o| match o.result {
            Ok(s) => MailboxResult {
                mailbox: o.mailbox,
                result: if s.complete { "complete" } else { "partial" },
                error: None,
                summary: Some(s),
                duration_ms: None,
                last_complete: None,
            },
            Err(e) => MailboxResult {
                mailbox: o.mailbox,
                result: "failed",
                error: Some(format!("{e}")),
                summary: None,
                duration_ms: None,
                last_complete: None,
            },
        })
        .collect()
}

/// Plan the backup and open the repository it writes into. A repository that is there is
/// opened before planning (nothing is written until the backup starts), so the plan lists
/// each named mailbox's folders from the bookmark its latest snapshot keeps — one request
/// for an unchanged tree, as the backup itself does. Without one, the plan's own errors (a
/// mistyped mailbox, a missing permission) still come first, then the refusal.
async fn plan_and_open(
    repo_settings: &RepositorySettings,
    source: &GraphSource,
    request: &BackupRequest,
) -> anyhow::Result<(BackupPlan, Repository)> {
    match super::context::require_repository(repo_settings).await {
        Ok(()) => {
            let repo: Repository = open_for_writing(repo_settings).await?;
            let planned = plan_for(&repo, source, request)
                .await
                .context("planning the backup")?;
            Ok((planned, repo))
        }
        Err(missing) => {
            plan(source, request).await.context("planning the backup")?;
            Err(missing)
        }
    }
}

/// `atlas backup`: parse flags, plan, execute, print. Selection, the skip-versus-fail
/// rule, limits and Object Lock are the core's `BackupPlan`.
pub async fn backup(
    global: &GlobalArgs,
    args: &BackupArgs,
    output: Output,
) -> anyhow::Result<Exit> {
    let config = load_config(global)?;
    let shard = args
        .shard
        .as_deref()
        .map(|spec| shard(spec, config.job_completion_index()))
        .transpose()?;
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

    // Only `atlas init` creates a repository: a location that holds none is refused
    // before anything is written (a typo in ATLAS_REPOSITORY must not start a fresh full
    // backup somewhere else). Object Lock / S3 bucket preparation (storage.rs) refuses
    // locking on a local repository, also before anything is written.
    let request = request(args, shard, fidelity(args, &config)?);
    let (planned, repo) = plan_and_open(&repo_settings, &source, &request).await?;

    let mut planned = planned;
    planned.options.retention = super::storage::prepare_backup_retention(
        &repo_settings,
        args.retention_days,
        args.lock_mode,
    )
    .await?;
    super::replicate::refuse_replica(&repo_settings, args.force).await?;
    let repository = super::key::location(&repo_settings);

    let mode = Mode::detect(output.is_json(), global.quiet);
    let progress = Arc::new(Progress::new(
        mode,
        Some(client.clone()),
        planned.mailboxes.len(),
    ));
    let cancel: Arc<Cancel> = install_ctrl_c(global.quiet);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let report = execute(
        &planned,
        &repo,
        Arc::new(source),
        clock,
        Arc::clone(&progress) as Arc<dyn atlas_core::ports::Reporter>,
        cancel,
    )
    .await;
    progress.finish();
    let report = report.context("starting the backup")?;
    let shard_share = planned.shard;

    let exit = match report.verdict() {
        Verdict::Complete => Exit::Success,
        Verdict::Partial => Exit::Partial,
        // A new verdict a newer core adds is not success.
        _ => Exit::Failure,
    };
    let object_lock = report
        .locks
        .iter()
        .map(super::storage::SnapshotLock::from)
        .collect();
    let skipped = report
        .skipped
        .iter()
        .map(|s| Skipped {
            mailbox: s.mailbox.clone(),
            reason: skip_reason(s.reason),
        })
        .collect();
    let mut results = mailbox_results(report.outcomes);
    let mut warnings = progress.warnings();
    if let Err(e) = annotate_history(&repo, &mut results).await {
        warnings.push(format!(
            "could not read the snapshot history for the summary: {e}"
        ));
    }
    let report = BackupReport {
        tenant_id: repo_settings.tenant_id.clone(),
        repository,
        mailboxes: results,
        skipped,
        graph: GraphFigures::of(&client),
        warnings,
        object_lock,
        shard: shard_share.map(ShardOut::from),
        exit_code: exit.code(),
    };
    output.result(&report, || render_backup(&report))?;
    Ok(exit)
}

/// Fill in each mailbox's newest complete snapshot and this run's duration, from the
/// repository (a record or two per mailbox; see `protection::histories`).
async fn annotate_history(
    repo: &Repository,
    results: &mut [MailboxResult],
) -> atlas_core::Result<()> {
    let ids: Vec<MailboxId> = results.iter().map(|r| MailboxId::new(&r.mailbox)).collect();
    let histories = protection::histories(repo, Some(&ids)).await?;
    let by_address = protection::by_address(&histories);
    for (r, id) in results.iter_mut().zip(&ids) {
        let Some(h) = by_address.get(id.address()) else {
            continue;
        };
        r.last_complete = h.latest_complete.map(LastComplete::from);
        let this_run = r.summary.as_ref().and_then(|s| s.snapshot);
        if let Some(latest) = h.latest.filter(|l| Some(l.id) == this_run) {
            r.duration_ms =
                u64::try_from((latest.finished - latest.started).num_milliseconds()).ok();
        }
    }
    Ok(())
}

/// Items and folders per kind (`\nBy kind: …`), when the snapshots hold more than mail.
fn by_kind_line(report: &BackupReport) -> Option<String> {
    let mut by_kind: std::collections::BTreeMap<atlas_core::model::ItemKind, (u64, u64)> =
        std::collections::BTreeMap::new();
    for f in report
        .mailboxes
        .iter()
        .filter_map(|r| r.summary.as_ref())
        .flat_map(|s| s.folders.iter())
    {
        let e = by_kind.entry(f.kind).or_default();
        e.0 += 1;
        e.1 += f.stored;
    }
    if !by_kind.keys().any(|k| !k.is_mail()) {
        return None;
    }
    let parts: Vec<String> = by_kind
        .iter()
        .map(|(k, (folders, items))| format!("{k} {items} in {folders} folder(s)"))
        .collect();
    Some(format!("\nBy kind: {}\n", parts.join(", ")))
}

/// The completeness part of the summary, from the gaps found (empty: none).
fn completeness(report: &BackupReport, gaps: &str) -> String {
    if report.mailboxes.is_empty() && report.exit_code != 0 {
        // Refused before any mailbox ran (the warning says why): nothing captured.
        "\nNothing was backed up.\n".to_owned()
    } else if gaps.is_empty() {
        "\nCompleteness: every folder of every mailbox is fully captured.\n".to_owned()
    } else {
        format!("\nCompleteness gaps (retried on the next run):\n{gaps}")
    }
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
                "  {} / {} ({}): Graph reports {}, snapshot has {}",
                sanitize(&r.mailbox),
                sanitize(&f.path),
                f.kind,
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
    if let Some(line) = by_kind_line(report) {
        out.push_str(&line);
    }
    out.push_str(&completeness(report, &gaps));
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
    out.push_str(&report.graph.cost_line().unwrap_or_default());
    out.push_str(&super::storage::render_locks(&report.object_lock));
    if let Some(s) = &report.shard {
        let _ = writeln!(
            out,
            "Shard {}/{}: {} of the {} selected mailboxes (the other shards take the rest)",
            s.index, s.count, s.mailboxes, s.selected
        );
    }
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
