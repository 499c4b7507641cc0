//! `atlas delete` and `atlas forget`: removing snapshots, then the data no snapshot needs.
//!
//! Records go first and data after (an interruption leaves only unreferenced data, which
//! the next prune removes). Prune holds a repository lock that backups respect, so data a
//! running backup relies on is never removed.

use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::sync::Arc;

use anyhow::Context as _;
use atlas_core::model::MailboxId;
use atlas_core::ports::{Reporter, SystemClock};
use atlas_core::repo::prune::{PruneOptions, PruneSummary};
use atlas_core::service::catalog::resolve_snapshot_ref;
use atlas_core::service::retention::{
    DeleteTarget, ForgetOptions, KeepPolicy, RemovalSummary, execute_delete,
    execute_delete_and_prune, execute_forget, execute_forget_and_prune, plan_delete, plan_forget,
    plan_prune,
};
use serde::Serialize;

use crate::cli::{DeleteArgs, ForgetArgs, GlobalArgs};
use crate::console::{note, prompt};
use crate::exit::{Exit, UsageError};
use crate::output::{self, Output, sanitize};
use crate::progress::{Mode, Progress};

use super::context::{lease_owner, open_repository};
use super::key::repository_settings;
use super::load_config;

/// `30d`, `2w`, `6m` (months of 30 days), `1y` (365 days), `12h`.
fn parse_within(text: &str) -> anyhow::Result<chrono::Duration> {
    let t = text.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: i64 = num.parse().map_err(|_| {
        UsageError(format!(
            "--keep-within {}: expected a number and a unit, like 30d, 8w, 6m or 1y",
            sanitize(text)
        ))
    })?;
    let days = match unit {
        "h" => return Ok(chrono::Duration::hours(n)),
        "d" | "" => n,
        "w" => n * 7,
        "m" => n * 30,
        "y" => n * 365,
        _ => {
            return Err(UsageError(format!(
                "--keep-within {}: unknown unit; use h, d, w, m or y",
                sanitize(text)
            ))
            .into());
        }
    };
    Ok(chrono::Duration::days(days))
}

fn confirm(question: &str, yes: bool) -> anyhow::Result<bool> {
    if yes {
        return Ok(true);
    }
    if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        prompt!("{question} [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        return Ok(matches!(answer.trim(), "y" | "Y" | "yes"));
    }
    Err(
        UsageError("this removes backups: confirm with -y (no terminal to ask on)".to_owned())
            .into(),
    )
}

fn prune_options(dry_run: bool, progress: &Arc<Progress>) -> PruneOptions {
    PruneOptions {
        dry_run,
        reporter: Arc::clone(progress) as Arc<dyn Reporter>,
        owner: lease_owner(),
        ..PruneOptions::default()
    }
}

fn render_prune(p: &PruneSummary) -> String {
    format!(
        "{}: {} pack(s) deleted, {} repacked into {}, {} unreferenced blob(s) and {} freed, {} index file(s) compacted.",
        if p.dry_run { "Prune would" } else { "Prune" },
        p.packs_deleted.len(),
        p.packs_repacked.len(),
        p.packs_written,
        p.blobs_freed,
        output::size(p.bytes_deleted),
        p.index_files_deleted.len()
    )
}

fn render_removal(s: &RemovalSummary) -> String {
    let mut out = format!("Removed {} snapshot record(s).", s.snapshots_removed);
    if s.objects_removed > 0 {
        let _ = write!(out, " Removed {} other object(s).", s.objects_removed);
    }
    if let Some(p) = &s.prune {
        out.push('\n');
        out.push_str(&render_prune(p));
    }
    if let Some(why) = &s.prune_deferred {
        let _ = write!(
            out,
            "\nThe space they used is freed by the next prune (`atlas forget --prune` or `atlas delete`); none can run now: {}",
            sanitize(why)
        );
    }
    if !s.retained_objects.is_empty() {
        let _ = write!(
            out,
            "\nRETAINED by Object Lock, not deleted ({}); run again after the dates below:",
            s.retained_objects.len()
        );
        for o in &s.retained_objects {
            let _ = write!(
                out,
                "\n  {} (retained until {})",
                sanitize(&o.key),
                // As the store reported it; shown in the local zone when it is a timestamp.
                chrono::DateTime::parse_from_rfc3339(&o.until).map_or_else(
                    |_| sanitize(&o.until).into_owned(),
                    |t| output::time(t.to_utc())
                )
            );
        }
    }
    out
}

#[derive(Debug, Serialize)]
struct DeleteReport<P: Serialize> {
    plan: P,
    result: Option<RemovalSummary>,
}

/// `atlas delete`.
pub async fn delete(
    global: &GlobalArgs,
    args: &DeleteArgs,
    output: Output,
) -> anyhow::Result<Exit> {
    let config = load_config(global)?;
    let settings = repository_settings(&config)?;
    let repo = open_repository(&settings, None).await?;
    let target = match (&args.snapshot, &args.mailbox, args.purge) {
        (Some(s), _, _) => DeleteTarget::Snapshot(
            resolve_snapshot_ref(&repo, s)
                .await
                .with_context(|| format!("finding snapshot {}", sanitize(s)))?,
        ),
        (None, Some(m), _) => DeleteTarget::Mailbox(MailboxId::new(m)),
        (None, None, true) => DeleteTarget::Purge,
        (None, None, false) => {
            return Err(UsageError(
                "say what to delete: -s SNAPSHOT, -m MAILBOX or --purge".into(),
            )
            .into());
        }
    };
    let plan = plan_delete(&repo, &target).await?;
    let question = if plan.purge {
        note!(
            "WARNING: --purge deletes EVERY backup of tenant {} AND its encryption key. Nothing can be restored afterwards.",
            sanitize(&settings.tenant_id)
        );
        "Delete the whole repository and its key?".to_owned()
    } else {
        format!(
            "Delete {} snapshot(s) of {} mailbox(es) and the data only they use?",
            plan.snapshots.len(),
            plan.mailboxes.len().max(1)
        )
    };
    if !confirm(&question, args.yes)? {
        note!("Nothing deleted.");
        return Ok(Exit::Failure);
    }
    let clock = SystemClock;
    // A purge reports its deletions, a prune its steps: both show progress.
    let progress = Arc::new(Progress::for_tasks(
        Mode::detect(output.is_json(), global.quiet),
        "atlas delete",
    ));
    let done = if args.no_prune {
        execute_delete(&repo, &plan, &lease_owner(), &clock, progress.as_ref()).await
    } else {
        execute_delete_and_prune(&repo, &plan, &prune_options(false, &progress), &clock).await
    };
    progress.finish();
    let result = done?;
    let complete = result.is_complete();
    let report = DeleteReport {
        plan,
        result: Some(result),
    };
    output.result(&report, || {
        report
            .result
            .as_ref()
            .map(render_removal)
            .unwrap_or_default()
    })?;
    Ok(if complete {
        Exit::Success
    } else {
        Exit::Failure
    })
}

fn forget_options(args: &ForgetArgs) -> anyhow::Result<ForgetOptions> {
    Ok(ForgetOptions {
        policy: KeepPolicy {
            last: args.keep_last,
            daily: args.keep_daily,
            weekly: args.keep_weekly,
            monthly: args.keep_monthly,
            yearly: args.keep_yearly,
            within: args.keep_within.as_deref().map(parse_within).transpose()?,
        },
        mailboxes: args.mailboxes.iter().map(|m| MailboxId::new(m)).collect(),
        allow_empty: args.allow_empty,
    })
}

/// `atlas forget`.
pub async fn forget(
    global: &GlobalArgs,
    args: &ForgetArgs,
    output: Output,
) -> anyhow::Result<Exit> {
    let config = load_config(global)?;
    let settings = repository_settings(&config)?;
    let repo = open_repository(&settings, None).await?;
    let plan = plan_forget(&repo, &forget_options(args)?).await?;
    let clock = SystemClock;
    let progress = Arc::new(Progress::for_tasks(
        Mode::detect(output.is_json(), global.quiet),
        "atlas forget",
    ));
    if args.dry_run {
        let removed: Vec<_> = plan
            .mailboxes
            .iter()
            .flat_map(|m| m.remove.iter().map(|r| r.id))
            .collect();
        let prune = if args.prune {
            let planned = plan_prune(&repo, removed, &prune_options(true, &progress), &clock).await;
            progress.finish();
            Some(planned?)
        } else {
            None
        };
        let report = DeleteReport {
            plan: &plan,
            result: prune.map(|p| RemovalSummary {
                snapshots_removed: 0,
                objects_removed: 0,
                retained: Vec::new(),
                retained_objects: Vec::new(),
                prune: Some(p),
                prune_deferred: None,
            }),
        };
        output.result(&report, || {
            let mut s = String::from("Dry run: nothing is removed.\n");
            for m in &plan.mailboxes {
                let _ = writeln!(
                    s,
                    "{}: keep {}, remove {}",
                    sanitize(&m.mailbox),
                    m.keep.len(),
                    m.remove.len()
                );
                for r in &m.remove {
                    let _ = writeln!(s, "  would remove {} ({})", r.id, output::time(r.started));
                }
            }
            if let Some(p) = report.result.as_ref().and_then(|r| r.prune.as_ref()) {
                s.push_str(&render_prune(p));
            }
            s
        })?;
        return Ok(Exit::Success);
    }
    let result = if args.prune {
        let done =
            execute_forget_and_prune(&repo, &plan, &prune_options(false, &progress), &clock).await;
        progress.finish();
        done?
    } else {
        execute_forget(&repo, &plan).await?
    };
    let complete = result.is_complete();
    let report = DeleteReport {
        plan: &plan,
        result: Some(result),
    };
    output.result(&report, || {
        let mut s = String::new();
        for m in &plan.mailboxes {
            let _ = writeln!(s, "{}: kept {}, removed {}", sanitize(&m.mailbox), m.keep.len(), m.remove.len());
        }
        s.push_str(&report.result.as_ref().map(render_removal).unwrap_or_default());
        if !args.prune {
            s.push_str("\nData no snapshot needs any more stays until `atlas forget --prune` (or `atlas delete`) runs a prune.");
        }
        s
    })?;
    Ok(if complete {
        Exit::Success
    } else {
        Exit::Failure
    })
}

#[cfg(test)]
mod tests {
    use super::parse_within;

    #[test]
    fn keep_within_units() {
        assert_eq!(parse_within("30d").unwrap(), chrono::Duration::days(30));
        assert_eq!(parse_within("2w").unwrap(), chrono::Duration::days(14));
        assert_eq!(parse_within("6m").unwrap(), chrono::Duration::days(180));
        assert_eq!(parse_within("1y").unwrap(), chrono::Duration::days(365));
        assert_eq!(parse_within("12h").unwrap(), chrono::Duration::hours(12));
        assert!(parse_within("soon").is_err());
        assert!(parse_within("3x").is_err());
    }
}
