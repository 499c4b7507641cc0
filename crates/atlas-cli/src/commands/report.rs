//! `atlas report`: the protection report — which mailboxes have a complete snapshot newer
//! than a given age, which only partial ones, which stopped being backed up, and (with
//! `--compare-tenant`, the only part that needs Graph credentials) which mailboxes of the
//! tenant have no snapshot at all. Read-only; exit 2 when any mailbox is not protected, so
//! a monitoring check or a morning cron job can act on the exit code alone.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use anyhow::Context as _;
use atlas_core::model::{MailboxId, SnapshotId, SnapshotStatus};
use atlas_core::ports::{FolderOptions, MailSource as _, MailboxKind, SourceError};
use atlas_core::service::backup::kind_selected;
use atlas_core::service::protection::{self, MailboxHistory, Protection};
use atlas_graph::GraphSource;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::cli::{GlobalArgs, ReportArgs};
use crate::exit::{Exit, UsageError};
use crate::output::{self, Output, Table, sanitize};

use super::backup::{LastComplete, mailbox_kind};
use super::context::{graph_client, open_repository};
use super::key::repository_settings;
use super::load_config;

/// The newest snapshot of any status.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
struct LastSnapshot {
    snapshot: SnapshotId,
    started: DateTime<Utc>,
    finished: DateTime<Utc>,
    status: SnapshotStatus,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct MailboxLine {
    mailbox: String,
    state: Protection,
    /// Whether the tenant still has the mailbox (`null` without `--compare-tenant`).
    in_tenant: Option<bool>,
    snapshots: usize,
    last_snapshot: Option<LastSnapshot>,
    last_complete: Option<LastComplete>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Totals {
    protected: usize,
    partial_only: usize,
    stale: usize,
    unprotected: usize,
    /// Mailboxes with snapshots that the tenant no longer has (not counted above).
    not_in_tenant: usize,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ProtectionReport {
    tenant_id: String,
    repository: String,
    max_age_ms: u64,
    /// Snapshots started before this do not count as recent.
    cutoff: DateTime<Utc>,
    compared_with_tenant: bool,
    mailboxes: Vec<MailboxLine>,
    totals: Totals,
    exit_code: u8,
}

/// `atlas report`.
pub async fn report(
    global: &GlobalArgs,
    args: &ReportArgs,
    output: Output,
) -> anyhow::Result<Exit> {
    let config = load_config(global)?;
    let settings = repository_settings(&config)?;
    // Graph first: a credential problem is found before the repository is read.
    let tenant = if args.compare_tenant {
        let graph = config
            .for_graph()
            .context("checking the Graph settings (--compare-tenant)")?;
        Some(tenant_mailboxes(&graph, args).await?)
    } else {
        None
    };
    let repo = open_repository(&settings, None).await?;
    let only: Option<Vec<MailboxId>> = (!args.mailboxes.is_empty())
        .then(|| args.mailboxes.iter().map(|m| MailboxId::new(m)).collect());
    let histories = protection::histories(&repo, only.as_deref()).await?;
    if let Some(only) = &only {
        if let Some(unknown) = only
            .iter()
            .find(|m| {
                histories
                    .iter()
                    .all(|h| h.mailbox != **m || h.snapshots == 0)
            })
            .filter(|_| tenant.is_none())
        {
            return Err(UsageError(format!(
                "mailbox {} is not in the repository",
                sanitize(unknown.address())
            ))
            .into());
        }
    }

    let now = Utc::now();
    let max_age = args.max_age.duration;
    let mut lines: BTreeMap<String, MailboxLine> = BTreeMap::new();
    for h in histories.iter().filter(|h| h.snapshots > 0) {
        lines.insert(h.mailbox.address().to_owned(), line(h, now, max_age));
    }
    if let Some(tenant) = &tenant {
        for line in lines.values_mut() {
            line.in_tenant = Some(tenant.contains(&line.mailbox));
        }
        let selected = |m: &String| only.as_ref().is_none_or(|o| o.contains(&MailboxId::new(m)));
        for address in tenant.iter().filter(|m| selected(m)) {
            lines.entry(address.clone()).or_insert_with(|| MailboxLine {
                mailbox: address.clone(),
                state: Protection::Unprotected,
                in_tenant: Some(true),
                snapshots: 0,
                last_snapshot: None,
                last_complete: None,
            });
        }
    }
    let mut totals = Totals::default();
    for l in lines.values() {
        if l.in_tenant == Some(false) {
            totals.not_in_tenant += 1;
            continue;
        }
        match l.state {
            Protection::Protected => totals.protected += 1,
            Protection::PartialOnly => totals.partial_only += 1,
            Protection::Stale => totals.stale += 1,
            Protection::Unprotected => totals.unprotected += 1,
        }
    }
    let exit = if totals.partial_only + totals.stale + totals.unprotected > 0 {
        Exit::Partial
    } else {
        Exit::Success
    };
    let out = ProtectionReport {
        tenant_id: settings.tenant_id.clone(),
        repository: super::key::location(&settings),
        max_age_ms: u64::try_from(max_age.num_milliseconds()).unwrap_or(0),
        cutoff: now - max_age,
        compared_with_tenant: tenant.is_some(),
        mailboxes: lines.into_values().collect(),
        totals,
        exit_code: exit.code(),
    };
    output.result(&out, || render(&out, args))?;
    Ok(exit)
}

fn line(h: &MailboxHistory, now: DateTime<Utc>, max_age: Duration) -> MailboxLine {
    MailboxLine {
        mailbox: h.mailbox.address().to_owned(),
        state: protection::classify(Some(h), now, max_age),
        in_tenant: None,
        snapshots: h.snapshots,
        last_snapshot: h.latest.map(|b| LastSnapshot {
            snapshot: b.id,
            started: b.started,
            finished: b.finished,
            status: b.status,
        }),
        last_complete: h.latest_complete.map(LastComplete::from),
    }
}

/// The addresses (lower-cased) of the mailboxes a tenant-wide backup of `--kinds` would
/// include. A user whose kind the directory cannot tell (no MailboxSettings.Read) is asked
/// once whether Exchange has a mailbox for it, so a user without one is not reported as
/// unprotected forever.
async fn tenant_mailboxes(
    graph: &crate::config::GraphSettings,
    args: &ReportArgs,
) -> anyhow::Result<HashSet<String>> {
    let client = graph_client(graph)?;
    client
        .check_sign_in()
        .await
        .context("signing in to Microsoft Graph")?;
    let source = GraphSource::new(client);
    let kinds: Vec<MailboxKind> = args.kinds.iter().map(|k| mailbox_kind(*k)).collect();
    let mut out = HashSet::new();
    for m in source
        .list_mailboxes()
        .await
        .context("listing the tenant's mailboxes")?
    {
        if !kind_selected(m.kind, &kinds) {
            continue;
        }
        if m.kind == MailboxKind::Unknown {
            match source.list_folders(&m, FolderOptions::default()).await {
                Err(SourceError::MailboxNotEnabled(_)) => continue,
                Err(e @ (SourceError::PermissionDenied { .. } | SourceError::Auth(_))) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("reading the folders of {}", sanitize(m.address()))));
                }
                _ => {}
            }
        }
        out.insert(m.address().to_owned());
    }
    Ok(out)
}

fn state_name(state: Protection) -> &'static str {
    match state {
        Protection::Protected => "protected",
        Protection::PartialOnly => "partial only",
        Protection::Stale => "stale",
        Protection::Unprotected => "UNPROTECTED",
    }
}

fn render(report: &ProtectionReport, args: &ReportArgs) -> String {
    let mut table = Table::new(["Mailbox", "State", "Last complete", "Last snapshot"]);
    // Those that need attention first.
    let rank = |s: Protection| match s {
        Protection::Unprotected => 0,
        Protection::Stale => 1,
        Protection::PartialOnly => 2,
        Protection::Protected => 3,
    };
    let mut rows: Vec<&MailboxLine> = report.mailboxes.iter().collect();
    rows.sort_by_key(|l| (l.in_tenant == Some(false), rank(l.state)));
    for l in rows {
        let mut state = state_name(l.state).to_owned();
        if l.in_tenant == Some(false) {
            state.push_str(" (not in tenant)");
        }
        table.row([
            l.mailbox.clone(),
            state,
            l.last_complete
                .map_or_else(|| "never".into(), |c| output::time(c.started)),
            l.last_snapshot.map_or_else(
                || "never".into(),
                |s| {
                    let status = if s.status == SnapshotStatus::Partial {
                        " (partial)"
                    } else {
                        ""
                    };
                    format!("{}{status}", output::time(s.started))
                },
            ),
        ]);
    }
    let mut out = table.render();
    let t = &report.totals;
    let _ = writeln!(
        out,
        "\n{} protected (complete snapshot within {}), {} partial only, {} stale, {} unprotected{}.",
        t.protected,
        args.max_age.text,
        t.partial_only,
        t.stale,
        t.unprotected,
        if report.compared_with_tenant {
            format!("; {} no longer in the tenant", t.not_in_tenant)
        } else {
            String::new()
        }
    );
    if !report.compared_with_tenant {
        out.push_str(
            "Mailboxes of the tenant that were never backed up are not listed: add \
             --compare-tenant (needs Graph credentials).\n",
        );
    }
    out
}
