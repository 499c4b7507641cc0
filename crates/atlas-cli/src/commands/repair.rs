//! `atlas repair`: heal what `atlas verify` names (see `atlas_core::service::repair`).

use std::fmt::Write as _;
use std::sync::Arc;

use atlas_core::open::Access;
use atlas_core::ports::SystemClock;
use atlas_core::service::repair::{RepairOptions, RepairSummary, execute, plan};

use crate::cli::{GlobalArgs, RepairArgs};
use crate::exit::Exit;
use crate::output::{Output, sanitize};

use super::context::{lease_owner, open};
use super::key::{location, repository_settings};
use super::load_config;

/// `atlas repair [--dry-run]`.
pub async fn repair(
    global: &GlobalArgs,
    args: &RepairArgs,
    output: Output,
) -> anyhow::Result<Exit> {
    let config = load_config(global)?;
    let settings = repository_settings(&config)?;
    let where_ = location(&settings);
    let repo = open(&settings, Access::Repair).await?.repo;
    let opts = RepairOptions {
        owner: lease_owner(),
        tool: format!("atlas {} repair", env!("CARGO_PKG_VERSION")),
    };
    let summary = if args.dry_run {
        plan(&repo, &opts, &SystemClock).await?
    } else {
        execute(&repo, &opts, Arc::new(SystemClock)).await?
    };
    output.result(&summary, || human(&summary, &where_))?;
    Ok(if summary.unrepairable.is_empty() {
        Exit::Success
    } else {
        Exit::Failure
    })
}

fn human(s: &RepairSummary, where_: &str) -> String {
    if s.is_clean() {
        return format!("Nothing to repair in {}.", sanitize(where_));
    }
    let (verb, would) = if s.executed {
        ("Repaired", "")
    } else {
        ("Would repair", "would be ")
    };
    let mut out = format!("{verb} the repository at {}:\n", sanitize(where_));
    let st = &s.storage;
    for k in &st.root_objects_restored {
        let _ = writeln!(out, "  {k}: {would}written back from its spare copy");
    }
    if st.config_recreated {
        let _ = writeln!(
            out,
            "  config: both copies were lost; a new one {would}written (new repository id, \
             default settings — replicas of the old id refuse it until replicated anew)"
        );
    }
    for k in &st.spares_written {
        let _ = writeln!(out, "  {k}: spare copy {would}written");
    }
    if st.index_rewritten {
        let _ = writeln!(
            out,
            "  index: {} pack(s) checked; {} unreadable index file(s) and {} missing pack(s); \
             {} damaged or missing blob(s) {would}dropped, {} blob(s) {would}indexed again from \
             the packs",
            st.packs_checked,
            st.bad_index_files.len(),
            st.missing_packs.len(),
            st.dropped.len(),
            st.reindexed
        );
        for d in &st.dropped {
            let _ = writeln!(
                out,
                "    dropped {} in {}: {}",
                d.id,
                sanitize(&d.pack),
                sanitize(&d.error)
            );
        }
    }
    for snap in &s.snapshots {
        let mailbox = snap.mailbox.as_deref().map_or_else(|| "-".into(), sanitize);
        if let Some(e) = &snap.record_unreadable {
            let _ = writeln!(
                out,
                "  snapshot {} of {mailbox}: its record cannot be read ({}); {would}deleted",
                snap.snapshot,
                sanitize(e)
            );
            continue;
        }
        let replaced = snap
            .replaced_by
            .map(|id| format!(", replaced by snapshot {id}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  snapshot {} of {mailbox}{replaced}: {} item(s) lost, recorded in the snapshot",
            snap.snapshot,
            snap.lost.len()
        );
        for l in &snap.lost {
            let _ = writeln!(
                out,
                "    {} / {}: {}",
                sanitize(&l.folder),
                l.message_id
                    .as_ref()
                    .map_or_else(|| "(whole folder)".into(), |m| sanitize(m.as_str())),
                sanitize(&l.reason)
            );
        }
    }
    for k in &s.mailbox_records {
        let _ = writeln!(out, "  mailbox record {k}: {would}written again");
    }
    for u in &s.unrepairable {
        let _ = writeln!(out, "  NOT REPAIRED: {}", sanitize(u));
    }
    if s.executed {
        out.push_str(
            "Run atlas verify to check. The next backup downloads again the lost items that are \
             still in their mailboxes.",
        );
    } else {
        out.push_str("Nothing was written (--dry-run).");
    }
    out
}
