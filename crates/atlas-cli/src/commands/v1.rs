//! TypeScript Atlas 1.x repositories in the CLI.
//!
//! Every command works on the v2 [`Repository`] that core's one `open` returns
//! (`context::open`). When the configured store holds a v1 bucket, that is a **local cache
//! repository**: the v1 bucket converted into `<data dir>/atlas/v1-cache/<name>` (the name
//! is computed by core), idempotently, so each run only converts the v1 snapshots that
//! are new since the last one, and the v1 bucket is never written. What stays here is the
//! v1-specific part of the commands: `verify` checks the v1 objects themselves
//! ([`V1Repository::verify`]), because a check of the cache would only prove that the
//! cache is intact; `migrate --from-v1` converts into a repository of the current format;
//! and commands that would write refuse a v1 bucket.
//!
//! v1 snapshot ids keep working: the cache records each v1 id in its snapshot's `tool`
//! field, and `-s <v1 id or prefix>` is translated to the cache snapshot before the
//! command runs ([`map_snapshot_args`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use atlas_core::compat::v1::{V1ProblemKind, V1Repository};
use atlas_core::model::{SnapshotId, SnapshotStatus};
use atlas_core::open::{Access, Format, detect};
use atlas_core::ports::{BlobStore, SystemClock};
use atlas_core::repo::Repository;
use atlas_core::service::migrate::{MigrateOptions, MigrateSummary, migrate_v1, migrated_from_v1};
use atlas_store::LocalStore;
use serde::Serialize;

use crate::cli::{Command, GlobalArgs, MigrateArgs, VerifyArgs};
use crate::config::{Config, Inputs, RepositorySettings, StoreSettings};
use crate::console::note;
use crate::exit::{Exit, UsageError};
use crate::output::{Output, Table, sanitize};
use crate::progress::{Mode, Progress};

use super::context::{V1_NOTICE, lease_owner, open, v1_read_only};
use super::key::{core_passphrase, kdf_choice_from_config, location, open_store};
use super::load_config;

/// Whether `store` holds a TypeScript Atlas 1.x repository.
async fn is_v1(store: &Arc<dyn BlobStore>, where_: &str) -> anyhow::Result<bool> {
    Ok(detect(store)
        .await
        .with_context(|| format!("looking at the repository at {where_}"))?
        == Format::V1)
}

/// Open the v1 repository in `store` (read-only, no conversion).
async fn open_v1(
    settings: &RepositorySettings,
    store: Arc<dyn BlobStore>,
    where_: &str,
) -> anyhow::Result<V1Repository> {
    V1Repository::open(
        store,
        &settings.tenant_id,
        &core_passphrase(&settings.passphrase),
    )
    .await
    .with_context(|| format!("opening the TypeScript Atlas 1.x repository at {where_}"))
}

/// The cache repository of the configured v1 store, or `None` when the store is not v1.
async fn v1_cache(settings: &RepositorySettings) -> anyhow::Result<Option<Repository>> {
    let store = open_store(settings)?;
    if !is_v1(&store, &location(settings)).await.unwrap_or(false) {
        return Ok(None);
    }
    Ok(Some(open(settings, Access::Read).await?.repo))
}

/// Before a command that changes the repository without creating it (delete, forget):
/// refuse a v1 repository, whose local cache would otherwise be changed instead (and
/// silently rebuilt by the next read).
pub(super) async fn refuse_writes(global: &GlobalArgs) -> anyhow::Result<()> {
    let Ok(settings) = quiet_settings(global) else {
        return Ok(());
    };
    let store = open_store(&settings)?;
    let where_ = location(&settings);
    // An unreachable store is reported by the command itself, with its own context.
    if is_v1(&store, &where_).await.unwrap_or(false) {
        return Err(v1_read_only(&where_).into());
    }
    Ok(())
}

/// The v1 snapshot id of every converted snapshot of `repo`, with its v2 id.
async fn v1_ids(repo: &Repository) -> anyhow::Result<BTreeMap<String, SnapshotId>> {
    let mut out = BTreeMap::new();
    for info in repo.list_all_snapshots().await? {
        let snap = repo.load_snapshot(info.id).await?;
        if let Some(v1_id) = migrated_from_v1(&snap.record) {
            out.insert(v1_id.to_ascii_lowercase(), info.id);
        }
    }
    Ok(out)
}

/// Translate a v1 snapshot reference (full id or a unique prefix of 4+ characters) into
/// the converted snapshot's id. `None` when `text` names no v1 snapshot unambiguously, or
/// also prefixes a v2 id (then the text is left for the normal resolution to judge).
pub(super) async fn resolve_v1_snapshot(
    repo: &Repository,
    text: &str,
) -> anyhow::Result<Option<SnapshotId>> {
    let text = text.trim().to_ascii_lowercase();
    if text.len() < 4 {
        return Ok(None);
    }
    let ids = v1_ids(repo).await?;
    if let Some(id) = ids.get(&text) {
        return Ok(Some(*id));
    }
    let matches: Vec<SnapshotId> = ids
        .iter()
        .filter(|(v1_id, _)| v1_id.starts_with(&text))
        .map(|(_, id)| *id)
        .collect();
    let [one] = matches.as_slice() else {
        return Ok(None);
    };
    let v2_clash = ids.values().any(|id| id.to_string().starts_with(&text));
    Ok((!v2_clash).then_some(*one))
}

/// Before a read command runs: when the repository is a v1 one and `-s` names a v1
/// snapshot, replace it by the id of its converted snapshot. Does nothing (and opens
/// nothing) for commands without `-s`.
pub(super) async fn map_snapshot_args(
    global: &GlobalArgs,
    command: &mut Command,
) -> anyhow::Result<()> {
    if let Command::List(a) = command {
        if let (Some(m), None) = (&a.mailbox, &a.snapshot) {
            return show_v1_ids(global, m).await;
        }
    }
    let slot = match command {
        Command::List(a) => &mut a.snapshot,
        Command::Read(a) => &mut a.source.snapshot,
        Command::Save(a) => &mut a.source.snapshot,
        Command::Restore(a) => &mut a.source.snapshot,
        _ => return Ok(()),
    };
    let Some(text) = slot.clone() else {
        return Ok(());
    };
    // Configuration problems are reported by the command itself, once.
    let Ok(settings) = quiet_settings(global) else {
        return Ok(());
    };
    let Some(cache) = v1_cache(&settings).await? else {
        return Ok(());
    };
    if let Some(id) = resolve_v1_snapshot(&cache, &text).await? {
        tracing::info!("Atlas 1.x snapshot {} is snapshot {id}", sanitize(&text));
        *slot = Some(id.to_string());
    }
    Ok(())
}

/// `atlas list -m` on a v1 repository: which converted snapshot each v1 snapshot id is
/// (on stderr, before the table), so users can keep using the ids they know.
async fn show_v1_ids(global: &GlobalArgs, mailbox: &str) -> anyhow::Result<()> {
    let Ok(settings) = quiet_settings(global) else {
        return Ok(());
    };
    let Some(cache) = v1_cache(&settings).await? else {
        return Ok(());
    };
    if global.quiet {
        return Ok(());
    }
    let wanted = atlas_core::model::MailboxId::new(mailbox);
    let mine: std::collections::BTreeSet<SnapshotId> = cache
        .list_snapshots(&wanted)
        .await?
        .into_iter()
        .map(|s| s.id)
        .collect();
    for (v1_id, id) in v1_ids(&cache).await? {
        if mine.contains(&id) {
            note!("Atlas 1.x snapshot {v1_id} is snapshot {id}");
        }
    }
    Ok(())
}

/// Repository settings without logging the load-time warnings (the command logs them).
fn quiet_settings(global: &GlobalArgs) -> anyhow::Result<RepositorySettings> {
    let inputs = Inputs::from_process(global.tenant.clone())?;
    Ok(Config::load(&inputs)?.for_repository()?)
}

/// One damaged v1 object, for output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct V1Damage {
    kind: &'static str,
    mailbox: String,
    snapshot: Option<String>,
    object: String,
    message_id: Option<String>,
    attachment_id: Option<String>,
    error: String,
}

/// `atlas verify` of a v1 repository.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct V1VerifyOutput {
    format: &'static str,
    mailboxes: usize,
    manifests: usize,
    messages: usize,
    attachments: usize,
    deletions_recorded: bool,
    damage: Vec<V1Damage>,
}

fn kind_name(kind: V1ProblemKind) -> &'static str {
    match kind {
        V1ProblemKind::Missing => "missing",
        V1ProblemKind::Damaged => "damaged",
        V1ProblemKind::ChecksumMismatch => "checksumMismatch",
        V1ProblemKind::Unparsable => "unparsable",
        V1ProblemKind::NotStored => "notStored",
    }
}

/// `atlas verify` of a v1 repository: the v1-native check of the v1 objects themselves
/// (`browse::verify` calls it when the store holds a v1 repository).
pub(super) async fn verify(
    settings: &RepositorySettings,
    store: Arc<dyn BlobStore>,
    args: &VerifyArgs,
    output: Output,
    quiet: bool,
) -> anyhow::Result<Exit> {
    let where_ = location(settings);
    for warning in settings.warnings() {
        tracing::warn!("{warning}");
    }
    tracing::warn!("{where_}: {V1_NOTICE}");
    let v1 = open_v1(settings, store, &where_).await?;
    // -s: the v1 objects of the snapshot's mailbox are checked, and the problems of that
    // snapshot are reported (a v1 snapshot needs the objects of every older one).
    let (mailbox, snapshot) = match (&args.snapshot, &args.mailbox) {
        (Some(s), _) => {
            let (mailbox, id) = find_v1_snapshot(&v1, s).await?;
            (Some(mailbox), Some(id))
        }
        (None, Some(m)) => (Some(m.to_lowercase()), None),
        (None, None) => (None, None),
    };
    if let Some(m) = &mailbox {
        if !v1.list_mailboxes().await?.contains(m) {
            return Err(UsageError(format!(
                "mailbox {} has no snapshot in this repository",
                sanitize(m)
            ))
            .into());
        }
    }
    let progress = Progress::for_tasks(Mode::detect(output.is_json(), quiet), "atlas verify");
    let report = v1.verify(mailbox.as_deref(), &progress).await;
    progress.finish();
    let report =
        report.with_context(|| format!("verifying the Atlas 1.x repository at {where_}"))?;
    let damage: Vec<V1Damage> = report
        .problems
        .iter()
        .filter(|p| snapshot.is_none() || p.snapshot_id.is_none() || p.snapshot_id == snapshot)
        .map(|p| V1Damage {
            kind: kind_name(p.kind),
            mailbox: p.mailbox.clone(),
            snapshot: p.snapshot_id.clone(),
            object: p.key.clone(),
            message_id: p.message_id.clone(),
            attachment_id: p.attachment_id.clone(),
            error: p.reason.clone(),
        })
        .collect();
    let out = V1VerifyOutput {
        format: "atlas-v1",
        mailboxes: report.mailboxes,
        manifests: report.manifests,
        messages: report.messages,
        attachments: report.attachments,
        deletions_recorded: false,
        damage,
    };
    output.result(&out, || {
        let mut s = format!(
            "Verified the Atlas 1.x objects of {} mailbox(es): {} manifest(s), {} message \
             object(s), {} attachment object(s).\n",
            out.mailboxes, out.manifests, out.messages, out.attachments
        );
        if out.damage.is_empty() {
            s.push_str("No damage found.");
        } else {
            let _ = writeln!(s, "DAMAGE: {} problem(s):", out.damage.len());
            for d in &out.damage {
                let _ = writeln!(
                    s,
                    "  {}: mailbox {} snapshot {} message {}{} object {}: {}",
                    d.kind,
                    sanitize(&d.mailbox),
                    sanitize(d.snapshot.as_deref().unwrap_or("-")),
                    sanitize(d.message_id.as_deref().unwrap_or("-")),
                    d.attachment_id
                        .as_deref()
                        .map(|a| format!(" attachment {}", sanitize(a)))
                        .unwrap_or_default(),
                    sanitize(if d.object.is_empty() { "-" } else { &d.object }),
                    sanitize(&d.error)
                );
            }
        }
        s
    })?;
    Ok(if out.damage.is_empty() {
        Exit::Success
    } else {
        Exit::Failure
    })
}

/// The mailbox and full id of the v1 snapshot `text` names (id or unique prefix).
async fn find_v1_snapshot(v1: &V1Repository, text: &str) -> anyhow::Result<(String, String)> {
    let text = text.trim().to_ascii_lowercase();
    let mut found = Vec::new();
    for mailbox in v1.list_mailboxes().await? {
        for s in v1.list_snapshots(&mailbox).await?.snapshots {
            if s.snapshot_id == text || (text.len() >= 4 && s.snapshot_id.starts_with(&text)) {
                found.push((mailbox.clone(), s.snapshot_id));
            }
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(UsageError(format!(
            "no Atlas 1.x snapshot id starts with {} (atlas list -m MAILBOX shows them)",
            sanitize(&text)
        ))
        .into()),
        n => Err(UsageError(format!(
            "snapshot prefix {} is ambiguous ({n} snapshots)",
            sanitize(&text)
        ))
        .into()),
    }
}

/// `atlas migrate --from-v1` output, per converted or skipped snapshot.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct MigrateRow {
    mailbox: String,
    v1_snapshot_id: String,
    snapshot_id: Option<String>,
    created_at: Option<chrono::DateTime<chrono::Utc>>,
    messages: Option<u64>,
    item_errors: Option<u64>,
    outcome: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct MigrateOutput {
    source: String,
    target: String,
    converted: usize,
    already_converted: usize,
    complete: bool,
    deletions_recorded: bool,
    snapshots: Vec<MigrateRow>,
    damaged_manifests: Vec<String>,
}

fn rows(summary: &MigrateSummary) -> Vec<MigrateRow> {
    let mut out = Vec::new();
    for m in &summary.mailboxes {
        for s in &m.migrated {
            out.push(MigrateRow {
                mailbox: m.mailbox.address().to_owned(),
                v1_snapshot_id: s.v1_snapshot_id.clone(),
                snapshot_id: Some(s.snapshot_id.to_string()),
                created_at: Some(s.created_at),
                messages: Some(s.messages),
                item_errors: Some(s.item_errors),
                outcome: match s.status {
                    SnapshotStatus::Complete => "converted",
                    SnapshotStatus::Partial => "convertedPartial",
                },
            });
        }
        for v1_id in &m.skipped {
            out.push(MigrateRow {
                mailbox: m.mailbox.address().to_owned(),
                v1_snapshot_id: v1_id.clone(),
                snapshot_id: None,
                created_at: None,
                messages: None,
                item_errors: None,
                outcome: "alreadyConverted",
            });
        }
    }
    out
}

/// `atlas migrate --from-v1`: convert a v1 repository into the configured repository
/// (created when missing), idempotently; the source is only read.
pub(super) async fn migrate(
    global: &GlobalArgs,
    args: &MigrateArgs,
    output: Output,
) -> anyhow::Result<Exit> {
    let config = load_config(global)?;
    let settings = super::key::repository_settings(&config)?;
    let tenant = args
        .from_tenant
        .clone()
        .unwrap_or_else(|| settings.tenant_id.clone());
    let (source, source_desc) = source_store(args, &settings)?;
    if !is_v1(&source, &source_desc).await? {
        return Err(UsageError(format!(
            "{source_desc} holds no TypeScript Atlas 1.x repository (no _meta/dek.enc with \
             manifests/<mailbox>/<snapshot>.json, or it is already an Atlas 2 repository)"
        ))
        .into());
    }
    let target_where = location(&settings);
    let v1 = V1Repository::open(source, &tenant, &core_passphrase(&settings.passphrase))
        .await
        .with_context(|| {
            format!(
                "opening the Atlas 1.x repository at {source_desc} for tenant {}",
                sanitize(&tenant)
            )
        })?;
    // A missing target bucket is created before anything looks into it.
    super::key::prepare_s3_for_writing(&settings, false).await?;
    let target_store = open_store(&settings)?;
    if is_v1(&target_store, &target_where).await? {
        return Err(UsageError(format!(
            "the target {target_where} is itself a TypeScript Atlas 1.x repository; migrate into \
             a new repository"
        ))
        .into());
    }
    let target = Repository::open_or_init(
        target_store,
        &settings.tenant_id,
        &core_passphrase(&settings.passphrase),
        kdf_choice_from_config(&config)?,
    )
    .await
    .with_context(|| format!("opening the repository at {target_where}"))?;
    crate::upkeep::track(&target);
    let only = (!args.mailboxes.is_empty())
        .then(|| args.mailboxes.iter().map(|m| m.to_lowercase()).collect());
    let opts = MigrateOptions {
        owner: lease_owner(),
        mailboxes: only,
    };
    let mailboxes = match &opts.mailboxes {
        Some(only) => only.len(),
        None => v1.list_mailboxes().await?.len(),
    };
    let progress = Progress::titled(
        Mode::detect(output.is_json(), global.quiet),
        "atlas migrate",
        None,
        mailboxes,
    );
    let summary = migrate_v1(&v1, &target, Arc::new(SystemClock), &progress, &opts).await;
    progress.finish();
    let summary = summary.with_context(|| {
        format!("migrating {source_desc} into {target_where} (rerun to resume)")
    })?;
    let out = MigrateOutput {
        source: source_desc.clone(),
        target: target_where.clone(),
        converted: summary.snapshots_written(),
        already_converted: summary.mailboxes.iter().map(|m| m.skipped.len()).sum(),
        complete: summary.is_complete(),
        deletions_recorded: false,
        snapshots: rows(&summary),
        damaged_manifests: summary
            .mailboxes
            .iter()
            .flat_map(|m| m.damaged_manifests.iter().map(ToString::to_string))
            .collect(),
    };
    output.result(&out, || human_migrate(&out))?;
    Ok(if out.complete {
        Exit::Success
    } else {
        Exit::Partial
    })
}

/// The source of `atlas migrate`: a directory, or a bucket on the target's S3 server.
/// Refuses a source that is the target itself (migrating in place would write a v2
/// config into the v1 bucket).
fn source_store(
    args: &MigrateArgs,
    settings: &RepositorySettings,
) -> anyhow::Result<(Arc<dyn BlobStore>, String)> {
    let same = UsageError(
        "the target repository is the v1 repository itself; configure a new, separate \
         repository (ATLAS_REPOSITORY or ATLAS_S3_BUCKET) to migrate into"
            .into(),
    );
    if let Some(bucket) = &args.from_s3_bucket {
        let StoreSettings::S3(target) = &settings.store else {
            return Err(UsageError(
                "--from-s3-bucket reads from the S3 server of the configured target; configure \
                 ATLAS_S3_* for the target, or copy the bucket locally and use --from-dir"
                    .into(),
            )
            .into());
        };
        if target.bucket == *bucket {
            return Err(same.into());
        }
        let mut s3 = target.clone();
        s3.bucket.clone_from(bucket);
        let store: Arc<dyn BlobStore> = Arc::new(super::key::s3_store(&s3)?);
        return Ok((store, format!("s3 bucket {bucket}")));
    }
    let dir = args
        .from_dir
        .as_ref()
        .ok_or_else(|| UsageError("give --from-dir DIR or --from-s3-bucket BUCKET".into()))?;
    let desc = dir.display().to_string();
    if !dir.is_dir() {
        return Err(UsageError(format!("--from-dir {desc} is not a directory")).into());
    }
    if same_directory(dir, settings) {
        return Err(same.into());
    }
    Ok((Arc::new(LocalStore::new(dir.clone())), desc))
}

/// The human form of a migration report.
fn human_migrate(out: &MigrateOutput) -> String {
    let mut table = Table::new([
        "Mailbox",
        "v1 snapshot",
        "Snapshot",
        "Taken",
        "Messages",
        "Errors",
        "Outcome",
    ]);
    for r in &out.snapshots {
        table.row([
            sanitize(&r.mailbox).into_owned(),
            r.v1_snapshot_id.clone(),
            r.snapshot_id.clone().unwrap_or_default(),
            r.created_at.map(crate::output::time).unwrap_or_default(),
            r.messages.map(|m| m.to_string()).unwrap_or_default(),
            r.item_errors.map(|m| m.to_string()).unwrap_or_default(),
            r.outcome.to_owned(),
        ]);
    }
    let mut s = format!(
        "Migrated {} (Atlas 1.x) into {}: {} snapshot(s) converted, \
         {} already converted.\n{}",
        sanitize(&out.source),
        sanitize(&out.target),
        out.converted,
        out.already_converted,
        table.render()
    );
    s.push_str(
        "\nAtlas 1.x never recorded deletions: each snapshot holds every message seen up to it.",
    );
    for d in &out.damaged_manifests {
        let _ = write!(s, "\nUnreadable v1 manifest: {}", sanitize(d));
    }
    s
}

/// Whether the configured repository is the directory `source` (migrating in place would
/// write a v2 config into the v1 bucket).
fn same_directory(source: &Path, settings: &RepositorySettings) -> bool {
    let StoreSettings::Local { path } = &settings.store else {
        return false;
    };
    match (source.canonicalize(), path.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => source == path,
    }
}
