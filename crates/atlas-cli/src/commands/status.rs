//! `atlas status`: what the next backup would pick up, per mailbox and folder, split into
//! new, changed and deleted messages. Reads Graph's delta state and the repository; writes
//! nothing.

use std::fmt::Write as _;

use anyhow::Context as _;
use atlas_core::ports::{FolderOptions, MailSource, MailboxKind, SourceError, SourceMailbox};
use atlas_core::repo::Repository;
use atlas_core::service::status::{FolderState, StatusReport, mailbox_status};
use atlas_graph::GraphSource;
use serde::Serialize;

use crate::cli::{GlobalArgs, StatusArgs};
use crate::exit::Exit;
use crate::output::{self, Output, Table, sanitize};

use atlas_core::service::backup::kind_selected;

use super::backup::{kind_name, mailbox_kind};
use super::context::{graph_client, open_repository};
use super::load_config;

/// Delta page size for counting (Graph serves at most 200).
const PAGE_SIZE: u32 = 200;

/// `atlas status --json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusOut {
    /// One report per mailbox checked.
    mailboxes: Vec<StatusReport>,
    /// Mailboxes of the tenant not checked, and why (kind not selected, no mailbox).
    skipped: Vec<NotChecked>,
    /// Mailboxes whose check failed (the run exits 2).
    failed: Vec<NotChecked>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct NotChecked {
    mailbox: String,
    reason: String,
}

/// `atlas status [-m MAILBOX]…`.
pub async fn status(
    global: &GlobalArgs,
    args: &StatusArgs,
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
    let source = GraphSource::new(client);
    let folder_options = FolderOptions {
        include_hidden: args.include_hidden,
        include_recoverable_items: args.include_recoverable_items,
        ..FolderOptions::default()
    };
    let mut out = StatusOut {
        mailboxes: Vec::new(),
        skipped: Vec::new(),
        failed: Vec::new(),
    };
    if args.mailboxes.is_empty() {
        let repo = open_repository(&repo_settings, None).await?;
        let all = source
            .list_mailboxes()
            .await
            .context("listing the tenant's mailboxes")?;
        let kinds: Vec<MailboxKind> = args
            .mailbox_kinds
            .iter()
            .map(|k| mailbox_kind(*k))
            .collect();
        for mailbox in all {
            if !kind_selected(mailbox.kind, &kinds) {
                out.skipped.push(NotChecked {
                    reason: format!("{} (not selected by --kinds)", kind_name(mailbox.kind)),
                    mailbox: mailbox.address().to_owned(),
                });
                continue;
            }
            check_one(&repo, &source, &mailbox, folder_options, &mut out).await;
        }
    } else {
        // Named mailboxes are resolved first: an unknown one is a usage error (exit 3)
        // before anything else is read.
        let mut named = Vec::new();
        for m in &args.mailboxes {
            named.push(
                source
                    .resolve_mailbox(m)
                    .await
                    .with_context(|| format!("looking up mailbox {}", sanitize(m)))?,
            );
        }
        let repo = open_repository(&repo_settings, None).await?;
        if let [mailbox] = named.as_slice() {
            // One mailbox: its failure is the command's.
            out.mailboxes.push(
                mailbox_status(&repo, &source, mailbox, folder_options, PAGE_SIZE)
                    .await
                    .context("reading the delta state")?,
            );
        } else {
            for mailbox in &named {
                check_one(&repo, &source, mailbox, folder_options, &mut out).await;
            }
        }
    }
    output.result(&out, || render(&out))?;
    Ok(if out.failed.is_empty() {
        Exit::Success
    } else {
        Exit::Partial
    })
}

/// Check one of several mailboxes; a failure is recorded, not returned, so one mailbox
/// cannot hide the others.
async fn check_one(
    repo: &Repository,
    source: &GraphSource,
    mailbox: &SourceMailbox,
    folder_options: FolderOptions,
    out: &mut StatusOut,
) {
    match mailbox_status(repo, source, mailbox, folder_options, PAGE_SIZE).await {
        Ok(report) => out.mailboxes.push(report),
        // Tenant-wide, a directory user whose mailbox turns out not to exist is not a
        // failure: there is nothing to back up.
        Err(atlas_core::Error::Source(SourceError::MailboxNotEnabled(_))) => {
            out.skipped.push(NotChecked {
                mailbox: mailbox.address().to_owned(),
                reason: kind_name(MailboxKind::NoMailbox).to_owned(),
            });
        }
        Err(e) => out.failed.push(NotChecked {
            mailbox: mailbox.address().to_owned(),
            reason: e.to_string(),
        }),
    }
}

fn last_backup(r: &StatusReport) -> String {
    r.last_backup.map_or_else(
        || "never".to_owned(),
        |t| {
            format!(
                "{}{}",
                output::time(t),
                if r.last_complete == Some(false) {
                    " (partial)"
                } else {
                    ""
                }
            )
        },
    )
}

fn folder_state(state: &FolderState) -> String {
    match state {
        FolderState::UpToDate => "up to date".to_owned(),
        FolderState::Pending {
            new,
            changed,
            deleted,
        } => format!("{new} new, {changed} changed, {deleted} deleted"),
        FolderState::NeverBackedUp { items } => format!("never backed up ({items} items)"),
        FolderState::Expired { items } => {
            format!("delta state expired; next backup re-reads {items} items")
        }
        FolderState::Gone => "folder gone (kept in the last snapshot)".to_owned(),
    }
}

/// One mailbox: every folder. Several: a line per mailbox, then the folders that are
/// not up to date.
fn render(out: &StatusOut) -> String {
    let mut s = String::new();
    if let [r] = out.mailboxes.as_slice() {
        let mut table = Table::new(["Folder", "State"]);
        for f in &r.folders {
            table.row([f.path.clone(), folder_state(&f.state)]);
        }
        let _ = write!(
            s,
            "Mailbox {}: last backup {}; since then {} new, {} changed, {} deleted\n{}",
            sanitize(&r.mailbox),
            last_backup(r),
            r.pending.new,
            r.pending.changed,
            r.pending.deleted,
            table.render()
        );
    } else if !out.mailboxes.is_empty() {
        let mut table = Table::new([
            "Mailbox",
            "Last backup",
            "New",
            "Changed",
            "Deleted",
            "State",
        ]);
        let mut behind = Table::new(["Mailbox", "Folder", "State"]);
        for r in &out.mailboxes {
            let never = r
                .folders
                .iter()
                .filter(|f| matches!(f.state, FolderState::NeverBackedUp { .. }))
                .count();
            let expired = r
                .folders
                .iter()
                .filter(|f| matches!(f.state, FolderState::Expired { .. }))
                .count();
            let state = if r.is_up_to_date() {
                "up to date".to_owned()
            } else if never == r.folders.len() {
                "never backed up".to_owned()
            } else if never + expired > 0 {
                format!("{} folder(s) to read in full", never + expired)
            } else {
                "changes pending".to_owned()
            };
            table.row([
                r.mailbox.clone(),
                last_backup(r),
                r.pending.new.to_string(),
                r.pending.changed.to_string(),
                r.pending.deleted.to_string(),
                state,
            ]);
            for f in r
                .folders
                .iter()
                .filter(|f| f.state != FolderState::UpToDate)
            {
                behind.row([r.mailbox.clone(), f.path.clone(), folder_state(&f.state)]);
            }
        }
        s.push_str(&table.render());
        if out.mailboxes.iter().any(|r| !r.is_up_to_date()) {
            let _ = write!(s, "\nFolders not up to date:\n{}", behind.render());
        }
    }
    for n in &out.failed {
        let _ = writeln!(
            s,
            "FAILED {}: {}",
            sanitize(&n.mailbox),
            sanitize(&n.reason)
        );
    }
    for n in &out.skipped {
        let _ = writeln!(
            s,
            "skipped {}: {}",
            sanitize(&n.mailbox),
            sanitize(&n.reason)
        );
    }
    if s.is_empty() {
        s.push_str("No mailbox to check.");
    }
    s
}
