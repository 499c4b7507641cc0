//! TypeScript Atlas 1.x repositories in the CLI.
//!
//! Every command works on the v2 [`Repository`]. When the configured store holds a v1
//! bucket instead ([`compat::v1::detect`]), the read commands (list, read, save, stats,
//! restore) transparently work on a **local cache repository**: the v1 bucket converted by
//! [`migrate_v1`] into `<data dir>/atlas/v1-cache/<tenant>-<hash of the store>`, with the
//! same passphrase. The conversion is idempotent, so each run only converts the v1
//! snapshots that are new since the last one, and the v1 bucket is never written.
//! `verify` is different on purpose: it checks the v1 objects themselves
//! ([`V1Repository::verify`]), because a check of the cache would only prove that the
//! cache is intact. Commands that would write to the repository (backup) refuse a v1
//! bucket: Atlas never writes into the old format, `atlas migrate --from-v1` copies it
//! into a repository of the current format instead.
//!
//! v1 snapshot ids keep working: the cache records each v1 id in its snapshot's `tool`
//! field, and `-s <v1 id or prefix>` is translated to the cache snapshot before the
//! command runs ([`map_snapshot_args`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use atlas_core::compat::v1::{self, V1ProblemKind, V1Repository};
use atlas_core::model::{SnapshotId, SnapshotStatus};
use atlas_core::ports::{BlobStore, Event, Reporter, SystemClock};
use atlas_core::repo::{KdfChoice, Repository};
use atlas_core::service::migrate::{MigrateOptions, MigrateSummary, migrate_v1, migrated_from_v1};
use atlas_store::LocalStore;
use serde::Serialize;

use crate::cli::{Command, GlobalArgs, MigrateArgs, VerifyArgs};
use crate::config::{Config, Inputs, RepositorySettings, StoreSettings};
use crate::console::note;
use crate::exit::{Exit, UsageError};
use crate::output::{Output, Table, sanitize};

use super::context::lease_owner;
use super::key::{core_passphrase, kdf_choice_from_config, location, open_store};
use super::{browse, load_config};

/// What users are told whenever a v1 repository is opened.
const NOTICE: &str = "this is a TypeScript Atlas 1.x repository, opened read-only; Atlas 1.x \
    never recorded deletions, so a snapshot shows every message seen up to it, including \
    messages deleted or moved away before it was taken";

/// The cache opened by this process, by cache directory: commands may open the repository
/// more than once (argument translation, then the command), and the conversion check and
/// key derivation need not be repeated.
static OPENED: Mutex<Option<(PathBuf, Repository)>> = Mutex::new(None);

/// A stable 64-bit FNV-1a hash: names the cache directory of a store. Not a security
/// measure (the cache is encrypted); it only keeps two stores of one tenant apart.
fn fnv1a(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// What identifies a store (never credentials): the directory, or endpoint and bucket.
fn store_identity(settings: &RepositorySettings) -> String {
    match &settings.store {
        StoreSettings::Local { path } => format!("local:{}", path.display()),
        StoreSettings::S3(s3) => format!(
            "s3:{}|{}",
            s3.endpoint.as_str().trim_end_matches('/'),
            s3.bucket
        ),
    }
}

/// Per-user data directory. Read like the config module reads it for the default
/// repository (`XDG_DATA_HOME`, else `~/.local/share` on Linux).
fn data_dir() -> anyhow::Result<PathBuf> {
    Inputs::from_process(None)
        .ok()
        .and_then(|i| i.data_dir)
        .or_else(dirs::data_dir)
        .ok_or_else(|| {
            UsageError(
                "this system has no per-user data directory for the local cache of a \
                 TypeScript Atlas 1.x repository; convert it with atlas migrate --from-v1 instead"
                    .into(),
            )
            .into()
        })
}

/// `<data dir>/atlas/v1-cache/<tenant>-<hash of the store>`.
fn cache_dir(settings: &RepositorySettings) -> anyhow::Result<PathBuf> {
    Ok(data_dir()?.join("atlas").join("v1-cache").join(format!(
        "{}-{:016x}",
        settings.tenant_id,
        fnv1a(&store_identity(settings))
    )))
}

/// Logs what a conversion reports. In the background conversion of the cache only item
/// failures are shown (the deletions caveat is already in [`NOTICE`]).
#[derive(Debug)]
struct LogReporter {
    warnings: bool,
}

impl Reporter for LogReporter {
    fn report(&self, event: Event) {
        match event {
            Event::ItemFailed {
                mailbox,
                item,
                reason,
                ..
            } => tracing::warn!(
                "{}: message {} not converted: {}",
                sanitize(&mailbox),
                sanitize(&item),
                sanitize(&reason)
            ),
            Event::Warning { mailbox, message } if self.warnings => tracing::warn!(
                "{}{}",
                mailbox
                    .map(|m| format!("{}: ", sanitize(&m)))
                    .unwrap_or_default(),
                sanitize(&message)
            ),
            Event::MailboxStarted { mailbox, .. } => {
                tracing::info!(
                    "converting the Atlas 1.x snapshots of {}",
                    sanitize(&mailbox)
                );
            }
            _ => {}
        }
    }
}

/// Whether `store` holds a TypeScript Atlas 1.x repository.
async fn is_v1(store: &Arc<dyn BlobStore>, where_: &str) -> anyhow::Result<bool> {
    v1::detect(store)
        .await
        .with_context(|| format!("looking at the repository at {where_}"))
}

/// Open the v1 repository in `store` (read-only).
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

/// The hook of the shared repository opener: `None` when `store` is not a v1 repository;
/// otherwise the up-to-date local cache repository to run the command against. `writes`
/// (a command that may create or change the repository) is refused with a usage error.
pub(super) async fn open_if_v1(
    settings: &RepositorySettings,
    store: &Arc<dyn BlobStore>,
    writes: bool,
) -> anyhow::Result<Option<Repository>> {
    let where_ = location(settings);
    if !is_v1(store, &where_).await? {
        return Ok(None);
    }
    if writes {
        return Err(UsageError(format!(
            "{where_} is a TypeScript Atlas 1.x repository; Atlas reads it but never writes \
             into the old format. Copy it into a new repository with `atlas migrate --from-v1 \
             --from-dir {where_}` (see docs/MIGRATING.md) and back up into that one"
        ))
        .into());
    }
    let dir = cache_dir(settings)?;
    if let Some((opened_dir, repo)) = OPENED
        .lock()
        .map_err(|_| anyhow::anyhow!("invariant: v1 cache lock poisoned"))?
        .as_ref()
    {
        if *opened_dir == dir {
            return Ok(Some(repo.clone()));
        }
    }
    tracing::warn!("{where_}: {NOTICE}");
    let v1 = open_v1(settings, Arc::clone(store), &where_).await?;
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating the v1 cache directory {}", dir.display()))?;
    let cache_store: Arc<dyn BlobStore> = Arc::new(LocalStore::new(dir.clone()));
    let cache = Repository::open_or_init(
        cache_store,
        &settings.tenant_id,
        &core_passphrase(&settings.passphrase),
        KdfChoice::default(),
    )
    .await
    .with_context(|| format!("opening the v1 cache repository at {}", dir.display()))?;
    let opts = MigrateOptions {
        owner: lease_owner(),
        break_stale_leases: true,
        mailboxes: None,
    };
    let reporter = LogReporter { warnings: false };
    match migrate_v1(&v1, &cache, Arc::new(SystemClock), &reporter, &opts).await {
        Ok(summary) => {
            let written = summary.snapshots_written();
            if written > 0 {
                tracing::info!(
                    "converted {written} new Atlas 1.x snapshot(s) into the cache at {}",
                    dir.display()
                );
            }
            if !summary.is_complete() {
                tracing::warn!(
                    "some Atlas 1.x objects could not be read; the affected snapshots are \
                     partial (atlas verify names the damaged objects)"
                );
            }
        }
        // Another atlas process is converting right now: use what is converted already.
        Err(atlas_core::Error::LeaseHeld { .. }) => tracing::warn!(
            "another atlas process is updating the v1 cache at {}; using the snapshots \
             converted so far",
            dir.display()
        ),
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!(
                "converting the TypeScript Atlas 1.x repository at {where_} into the cache at {}",
                dir.display()
            )));
        }
    }
    *OPENED
        .lock()
        .map_err(|_| anyhow::anyhow!("invariant: v1 cache lock poisoned"))? =
        Some((dir, cache.clone()));
    Ok(Some(cache))
}

/// Before a command that changes the repository without creating it (delete, forget):
/// refuse a v1 repository, whose local cache would otherwise be changed instead (and
/// silently rebuilt by the next read).
pub(super) async fn refuse_writes(global: &GlobalArgs) -> anyhow::Result<()> {
    let Ok(settings) = quiet_settings(global) else {
        return Ok(());
    };
    let store = open_store(&settings)?;
    // An unreachable store is reported by the command itself, with its own context.
    if !is_v1(&store, &location(&settings)).await.unwrap_or(false) {
        return Ok(());
    }
    open_if_v1(&settings, &store, true).await.map(|_| ())
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
    let store = open_store(&settings)?;
    if !is_v1(&store, &location(&settings)).await.unwrap_or(false) {
        return Ok(());
    }
    let Some(cache) = open_if_v1(&settings, &store, false).await? else {
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
    let store = open_store(&settings)?;
    if !is_v1(&store, &location(&settings)).await.unwrap_or(false) {
        return Ok(());
    }
    let Some(cache) = open_if_v1(&settings, &store, false).await? else {
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

/// `atlas verify`: the v1-native check for a v1 repository, the normal one otherwise.
pub(super) async fn verify(
    global: &GlobalArgs,
    args: &VerifyArgs,
    output: Output,
) -> anyhow::Result<Exit> {
    let config = load_config(global)?;
    let Ok(settings) = config.for_repository() else {
        return browse::verify(global, args, output).await;
    };
    let store = open_store(&settings)?;
    let where_ = location(&settings);
    if !is_v1(&store, &where_).await? {
        return browse::verify(global, args, output).await;
    }
    for warning in settings.warnings() {
        tracing::warn!("{warning}");
    }
    tracing::warn!("{where_}: {NOTICE}");
    let v1 = open_v1(&settings, store, &where_).await?;
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
    let report = v1
        .verify(mailbox.as_deref())
        .await
        .with_context(|| format!("verifying the Atlas 1.x repository at {where_}"))?;
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
    let only = (!args.mailboxes.is_empty())
        .then(|| args.mailboxes.iter().map(|m| m.to_lowercase()).collect());
    let opts = MigrateOptions {
        owner: lease_owner(),
        break_stale_leases: false,
        mailboxes: only,
    };
    let reporter = LogReporter { warnings: true };
    let summary = migrate_v1(&v1, &target, Arc::new(SystemClock), &reporter, &opts)
        .await
        .with_context(|| {
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
            r.created_at
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_default(),
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

#[cfg(test)]
mod tests {
    use super::fnv1a;

    #[test]
    fn cache_name_hash_is_stable_and_separates_stores() {
        // Known FNV-1a 64 values: the cache directory must not move between builds.
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(fnv1a("local:/a"), fnv1a("local:/b"));
    }
}
