//! `atlas unlock`: remove leases and locks whose holders are gone (restic's `unlock`).
//!
//! Writers already take over stale leases by themselves (see `atlas_core::repo` leases):
//! this is for looking and cleaning up by hand, and — with `--remove-all` — for what
//! cannot be decided automatically: a lease that still looks valid but whose holder the
//! operator knows is dead (a machine that will not come back before the lease expires).

use std::fmt::Write as _;
use std::io::IsTerminal as _;

use anyhow::Context as _;
use atlas_core::ports::SystemClock;
use atlas_core::repo::{LockEntry, Standing};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::cli::{GlobalArgs, UnlockArgs};
use crate::console::{note, prompt};
use crate::exit::{Exit, UsageError};
use crate::output::{Output, sanitize};

use super::context::open_for_writing;
use super::key::repository_settings;
use super::load_config;

/// One lease or lock in the report.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct LockLine {
    /// `mailbox` (a mailbox lease) or `prune` (the prune lock).
    kind: &'static str,
    /// The mailbox, when the lease names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    mailbox: Option<String>,
    /// Who held it (unknown for an unreadable object).
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    /// When it expires (or expired).
    #[serde(skip_serializing_if = "Option::is_none")]
    expires: Option<DateTime<Utc>>,
    /// `valid`, `expired`, `holderGone` or `unreadable`.
    standing: Standing,
    /// How many mailboxes a backup run's lease names (0: another lease); for the text.
    #[serde(skip)]
    run_mailboxes: usize,
}

impl From<&LockEntry> for LockLine {
    fn from(e: &LockEntry) -> Self {
        Self {
            kind: if e.prune { "prune" } else { "mailbox" },
            mailbox: e.info.as_ref().and_then(|i| i.mailbox.clone()),
            owner: e.info.as_ref().map(|i| i.owner.clone()),
            expires: e.info.as_ref().map(|i| i.expires),
            standing: e.standing,
            run_mailboxes: e.info.as_ref().map_or(0, |i| i.run_mailboxes),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct UnlockReport {
    /// What was removed.
    removed: Vec<LockLine>,
    /// Valid ones left in place (without `--remove-all`).
    kept: Vec<LockLine>,
}

fn describe(l: &LockLine) -> String {
    let what = match (&l.kind, &l.mailbox) {
        (&"prune", _) => "prune lock".to_owned(),
        (_, Some(m)) => format!("lease of {}", sanitize(m)),
        (_, None) if l.run_mailboxes > 0 => {
            format!("lease of a backup run of {} mailboxes", l.run_mailboxes)
        }
        (_, None) => "mailbox lease".to_owned(),
    };
    let why = match l.standing {
        Standing::Valid => "valid",
        Standing::Expired => "expired",
        Standing::HolderGone => "its process is gone",
        Standing::Unreadable => "unreadable",
    };
    let owner = l
        .owner
        .as_deref()
        .map_or_else(String::new, |o| format!(" held by {}", sanitize(o)));
    let until = l.expires.map_or_else(String::new, |t| {
        format!(", until {}", t.format("%Y-%m-%d %H:%M:%S UTC"))
    });
    format!("{what}{owner} ({why}{until})")
}

/// `atlas unlock [--remove-all [-y]]`.
pub async fn unlock(
    global: &GlobalArgs,
    args: &UnlockArgs,
    output: Output,
) -> anyhow::Result<Exit> {
    let config = load_config(global)?;
    let settings = repository_settings(&config)?;
    let repo = open_for_writing(&settings).await?;
    let clock = SystemClock;
    let locks = repo
        .list_locks(&clock)
        .await
        .context("listing leases and locks")?;
    let valid: Vec<&LockEntry> = locks
        .iter()
        .filter(|l| l.standing == Standing::Valid)
        .collect();
    let remove_valid = args.remove_all && !valid.is_empty() && confirm(&valid, args.yes)?;
    if args.remove_all && !valid.is_empty() && !remove_valid {
        note!("Nothing removed.");
        return Ok(Exit::Failure);
    }
    let mut report = UnlockReport {
        removed: Vec::new(),
        kept: Vec::new(),
    };
    for lock in &locks {
        if lock.standing == Standing::Valid && !remove_valid {
            report.kept.push(LockLine::from(lock));
            continue;
        }
        match repo.remove_lock(&lock.key, remove_valid, &clock).await {
            Ok(Some(removed)) => report.removed.push(LockLine::from(&removed)),
            // Released by its holder (or taken over) since the listing.
            Ok(None) => {}
            // Renewed since the listing: its holder is alive after all.
            Err(
                atlas_core::Error::LeaseHeld { .. } | atlas_core::Error::MaintenanceRunning { .. },
            ) => report.kept.push(LockLine::from(lock)),
            Err(e) => return Err(e).context(format!("removing {}", lock.key)),
        }
    }
    output.result(&report, || {
        let mut s = String::new();
        if report.removed.is_empty() {
            s.push_str("No stale lease or lock to remove.");
        } else {
            let _ = write!(s, "Removed {} lease(s)/lock(s):", report.removed.len());
            for l in &report.removed {
                let _ = write!(s, "\n  {}", describe(l));
            }
        }
        if !report.kept.is_empty() {
            let _ = write!(
                s,
                "\nKept {} valid lease(s)/lock(s) (their holders renew them; `atlas unlock --remove-all` removes them too, for holders you know are gone):",
                report.kept.len()
            );
            for l in &report.kept {
                let _ = write!(s, "\n  {}", describe(l));
            }
        }
        s
    })?;
    Ok(Exit::Success)
}

/// `--remove-all` with valid entries: `-y`, or a yes on a terminal; else a usage error.
fn confirm(valid: &[&LockEntry], yes: bool) -> anyhow::Result<bool> {
    if yes {
        return Ok(true);
    }
    if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        note!("These still look valid; their holders may be running (on another machine):");
        for l in valid {
            note!("  {}", describe(&LockLine::from(*l)));
        }
        prompt!("Remove them anyway? A running holder then cannot commit. [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        return Ok(matches!(answer.trim(), "y" | "Y" | "yes"));
    }
    Err(UsageError(
        "--remove-all removes leases that still look valid: confirm with -y (no terminal to ask on)"
            .into(),
    )
    .into())
}
