//! `atlas replicate` and `atlas rehydrate`: copying snapshots between the configured
//! repository and a second store, and the backup guard against writing into a replica.
//!
//! The copying itself is `atlas_core::service::replicate`; this module turns a target
//! description (config file or flags) into a store, refuses to copy a location onto
//! itself, and prints what happened.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use atlas_core::model::MailboxId;
use atlas_core::ports::{BlobStore, Reporter, SystemClock};
use atlas_core::repo::Repository;
use atlas_core::service::catalog::resolve_snapshot_ref;
use atlas_core::service::replicate::{
    CopyOptions, CopySummary, Direction, Selection, copy_snapshots, list_status,
    read_replica_marker,
};
use serde::Deserialize;
use url::Url;

use crate::cli::{GlobalArgs, RehydrateArgs, ReplicateArgs, TargetStoreArgs};
use crate::config::{DEFAULT_S3_REGION, RepositorySettings, S3Settings, StoreSettings};
use crate::exit::{Exit, UsageError};
use crate::output::{self, Output, Table, sanitize};
use crate::progress::{Mode, Progress};
use atlas_core::SecretString;

use super::key::{
    core_passphrase, location, open_store, prepare_s3_for_writing, repository_settings,
};
use super::load_config;

/// Environment variable holding the target's S3 secret key when the target is given by
/// flags (secrets never go on the command line, where `ps` shows them).
const TARGET_SECRET_ENV: &str = "ATLAS_TARGET_S3_SECRET_KEY";

/// The storage part of a target/source config file: the same keys as the main config
/// file's storage settings.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    repository: Option<PathBuf>,
    s3_endpoint: Option<String>,
    s3_access_key: Option<String>,
    s3_secret_key: Option<String>,
    s3_region: Option<String>,
    s3_bucket: Option<String>,
    #[serde(default)]
    s3_force_path_style: bool,
}

/// Refuse `atlas backup` into a repository marked as a replica, unless `force`.
pub(super) async fn refuse_replica(
    settings: &RepositorySettings,
    force: bool,
) -> anyhow::Result<()> {
    let store = open_store(settings)?;
    let marker = read_replica_marker(store.as_ref())
        .await
        .with_context(|| format!("checking whether {} is a replica", location(settings)))?;
    match marker {
        Some(m) if !force => Err(UsageError(format!(
            "this repository is a replica of {} (repository {}, last replicated {}); backing up \
             into it would make it diverge from its source — pass --force to back up into it \
             anyway",
            sanitize(&m.source),
            m.source_repo_id,
            output::time(m.marked_at),
        ))
        .into()),
        Some(m) => {
            tracing::warn!(source = %sanitize(&m.source), "backing up into a replica (--force)");
            Ok(())
        }
        None => Ok(()),
    }
}

/// `atlas replicate`.
pub async fn replicate(
    global: &GlobalArgs,
    args: &ReplicateArgs,
    output: Output,
) -> anyhow::Result<Exit> {
    let config = load_config(global)?;
    let settings = repository_settings(&config)?;
    let source = super::context::open_repository(&settings, None).await?;
    if args.status {
        return print_status(&source, output).await;
    }
    let target_settings = RepositorySettings {
        tenant_id: settings.tenant_id.clone(),
        store: target_store_settings(&args.target)?,
        passphrase: settings.passphrase.clone(),
        memory_budget: settings.memory_budget,
    };
    refuse_same_location(&settings.store, &target_settings.store)?;
    prepare_s3_for_writing(&target_settings, false).await?;
    let target = open_store(&target_settings)?;
    let selection = selection(
        &source,
        args.snapshot.as_deref(),
        args.mailbox.as_deref(),
        args.all,
    )
    .await?;
    let summary = run_copy(
        &source,
        target,
        &settings,
        selection,
        Direction::Replicate,
        args.parallel,
        Mode::detect(output.is_json(), global.quiet),
    )
    .await
    .with_context(|| format!("replicating to {}", location(&target_settings)))?;
    print_summary(&summary, "Replicated", output)?;
    Ok(Exit::Success)
}

/// `atlas rehydrate`.
pub async fn rehydrate(
    global: &GlobalArgs,
    args: &RehydrateArgs,
    output: Output,
) -> anyhow::Result<Exit> {
    let config = load_config(global)?;
    let settings = repository_settings(&config)?;
    let source_store = match (&args.source_config, &args.source_repository) {
        (Some(file), _) => store_file_settings(file)?,
        (None, Some(dir)) => StoreSettings::Local {
            path: absolute(dir)?,
        },
        (None, None) => {
            return Err(UsageError(
                "give the replica with --source-config FILE or --source-repository DIR".into(),
            )
            .into());
        }
    };
    let source_settings = RepositorySettings {
        tenant_id: settings.tenant_id.clone(),
        store: source_store,
        passphrase: settings.passphrase.clone(),
        memory_budget: settings.memory_budget,
    };
    refuse_same_location(&source_settings.store, &settings.store)?;
    let source = Repository::open(
        open_store(&source_settings)?,
        &settings.tenant_id,
        &core_passphrase(&settings.passphrase),
    )
    .await
    .with_context(|| format!("opening the replica at {}", location(&source_settings)))?;
    prepare_s3_for_writing(&settings, false).await?;
    let primary = open_store(&settings)?;
    let selection = selection(
        &source,
        args.snapshot.as_deref(),
        args.mailbox.as_deref(),
        args.all,
    )
    .await?;
    let summary = run_copy(
        &source,
        primary,
        &settings,
        selection,
        Direction::Rehydrate,
        args.parallel,
        Mode::detect(output.is_json(), global.quiet),
    )
    .await
    .with_context(|| format!("rehydrating {}", location(&settings)))?;
    print_summary(&summary, "Rehydrated", output)?;
    Ok(Exit::Success)
}

async fn run_copy(
    source: &Repository,
    target: Arc<dyn BlobStore>,
    settings: &RepositorySettings,
    selection: Selection,
    direction: Direction,
    parallel: u16,
    mode: Mode,
) -> anyhow::Result<CopySummary> {
    let title = match direction {
        Direction::Replicate => "atlas replicate",
        Direction::Rehydrate => "atlas rehydrate",
    };
    let progress = Arc::new(Progress::for_tasks(mode, title));
    let opts = CopyOptions {
        selection,
        direction,
        parallel: usize::from(parallel),
        reporter: Arc::clone(&progress) as Arc<dyn Reporter>,
    };
    let copied = copy_snapshots(
        source,
        target,
        &core_passphrase(&settings.passphrase),
        &opts,
        &SystemClock,
    )
    .await;
    progress.finish();
    Ok(copied?)
}

async fn selection(
    repo: &Repository,
    snapshot: Option<&str>,
    mailbox: Option<&str>,
    all: bool,
) -> anyhow::Result<Selection> {
    match (snapshot, mailbox, all) {
        (Some(s), _, _) => Ok(Selection::Snapshot(
            resolve_snapshot_ref(repo, s)
                .await
                .with_context(|| format!("finding snapshot {}", sanitize(s)))?,
        )),
        (None, Some(m), _) => Ok(Selection::Mailbox(MailboxId::new(m))),
        (None, None, true) => Ok(Selection::All),
        (None, None, false) => {
            Err(UsageError("choose snapshots with -s, -m or --all".into()).into())
        }
    }
}

/// The target store from `--target-config` or the `--target-*` flags.
fn target_store_settings(args: &TargetStoreArgs) -> anyhow::Result<StoreSettings> {
    if let Some(file) = &args.target_config {
        return store_file_settings(file);
    }
    if let Some(dir) = &args.target_repository {
        return Ok(StoreSettings::Local {
            path: absolute(dir)?,
        });
    }
    let Some(endpoint) = &args.target_s3_endpoint else {
        return Err(UsageError(
            "give the target with --target-config FILE, --target-repository DIR or \
             --target-s3-endpoint URL"
                .into(),
        )
        .into());
    };
    // Read through the config module's one view of the environment (ATLAS_* only).
    let secret = crate::config::Inputs::from_process(None)?
        .env
        .remove(TARGET_SECRET_ENV)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            UsageError(format!(
                "--target-s3-endpoint needs the target's secret key in {TARGET_SECRET_ENV}"
            ))
        })?;
    s3_settings(
        endpoint,
        args.target_s3_access_key.as_deref(),
        Some(SecretString::new(secret)),
        args.target_s3_region.as_deref(),
        args.target_s3_bucket.as_deref(),
        args.target_s3_force_path_style,
        "--target-s3-*",
    )
}

/// Read a store config file. A relative `repository` is relative to the file.
fn store_file_settings(file: &Path) -> anyhow::Result<StoreSettings> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| UsageError(format!("cannot read {}: {e}", file.display())))?;
    let parsed: StoreFile =
        serde_json::from_str(&text).map_err(|e| UsageError(format!("{}: {e}", file.display())))?;
    let what = file.display().to_string();
    match (&parsed.repository, &parsed.s3_endpoint) {
        (Some(_), Some(_)) => Err(UsageError(format!(
            "{what}: both \"repository\" and S3 settings are given; choose one"
        ))
        .into()),
        (Some(dir), None) => {
            let base = file.parent().unwrap_or_else(|| Path::new("."));
            Ok(StoreSettings::Local {
                path: absolute(&base.join(dir))?,
            })
        }
        (None, Some(endpoint)) => s3_settings(
            endpoint,
            parsed.s3_access_key.as_deref(),
            parsed.s3_secret_key.map(SecretString::new),
            parsed.s3_region.as_deref(),
            parsed.s3_bucket.as_deref(),
            parsed.s3_force_path_style,
            &what,
        ),
        (None, None) => Err(UsageError(format!(
            "{what}: give \"repository\" (a directory) or \"s3_endpoint\" with the other s3_* keys"
        ))
        .into()),
    }
}

fn s3_settings(
    endpoint: &str,
    access_key: Option<&str>,
    secret_key: Option<SecretString>,
    region: Option<&str>,
    bucket: Option<&str>,
    force_path_style: bool,
    what: &str,
) -> anyhow::Result<StoreSettings> {
    let missing =
        |key: &str| UsageError(format!("{what}: {key} is missing (S3 settings are given)"));
    let endpoint = Url::parse(endpoint.trim())
        .map_err(|e| UsageError(format!("{what}: s3_endpoint is not a URL ({e})")))?;
    let loopback = matches!(
        endpoint.host_str(),
        Some("localhost" | "127.0.0.1" | "[::1]")
    );
    if endpoint.scheme() != "https" && !(endpoint.scheme() == "http" && loopback) {
        return Err(UsageError(format!(
            "{what}: s3_endpoint must use https (plain http is allowed only for localhost)"
        ))
        .into());
    }
    // The bucket name itself is validated when the store is built (key::s3_store).
    Ok(StoreSettings::S3(S3Settings {
        endpoint,
        access_key: access_key
            .ok_or_else(|| missing("s3_access_key"))?
            .to_owned(),
        secret_key: secret_key.ok_or_else(|| missing("s3_secret_key"))?,
        region: region.unwrap_or(DEFAULT_S3_REGION).to_owned(),
        bucket: bucket.ok_or_else(|| missing("s3_bucket"))?.to_owned(),
        // The flag forces path style; without it the store chooses (path style except
        // on AWS's own endpoints).
        force_path_style: force_path_style.then_some(true),
        // CRC32C, which S3 and the common S3-compatible servers check.
        content_md5: false,
        // Trust and proxies are the process's, whichever store they reach.
        net: crate::config::Config::load(&crate::config::Inputs::from_process(None)?)?.network()?,
    }))
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).map_err(|e| UsageError(format!("{}: {e}", path.display())).into())
}

/// Refuse copying a location onto itself (the copy would only skip everything, and
/// replicate would mark the primary as its own replica).
fn refuse_same_location(a: &StoreSettings, b: &StoreSettings) -> anyhow::Result<()> {
    let same = match (a, b) {
        (StoreSettings::Local { path: pa }, StoreSettings::Local { path: pb }) => {
            let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
            canon(pa) == canon(pb)
        }
        (StoreSettings::S3(sa), StoreSettings::S3(sb)) => {
            sa.bucket == sb.bucket
                && sa.endpoint.as_str().trim_end_matches('/')
                    == sb.endpoint.as_str().trim_end_matches('/')
        }
        _ => false,
    };
    if same {
        return Err(UsageError(
            "the replica and the configured repository are the same location".into(),
        )
        .into());
    }
    Ok(())
}

fn print_summary(summary: &CopySummary, verb: &str, output: Output) -> anyhow::Result<()> {
    output.result(summary, || {
        let mut s = format!(
            "{verb} {} snapshot(s) to {}: {} object(s) copied ({}) and checked there, {} \
             already present.\n",
            summary.snapshots.len(),
            sanitize(&summary.target),
            summary.copied(),
            output::size(summary.bytes_copied()),
            summary.skipped(),
        );
        let mut table = Table::new(["Snapshot", "Mailbox", "Started", "Objects", "Copied"]);
        for snap in &summary.snapshots {
            table.row([
                snap.snapshot.to_string(),
                snap.mailbox.clone(),
                output::time(snap.started),
                snap.objects.to_string(),
                snap.copied.to_string(),
            ]);
        }
        if !summary.snapshots.is_empty() {
            s.push_str(&table.render());
        }
        s
    })?;
    Ok(())
}

/// `atlas replicate --status --json`.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusOut {
    records: Vec<atlas_core::service::replicate::ReplicationStatus>,
}

async fn print_status(repo: &Repository, output: Output) -> anyhow::Result<Exit> {
    let out = StatusOut {
        records: list_status(repo)
            .await
            .context("reading the replication status records")?,
    };
    let records = &out.records;
    output.result(&out, || {
        if records.is_empty() {
            return "No snapshot has been replicated from this repository.".to_owned();
        }
        let mut table = Table::new([
            "Target",
            "Snapshot",
            "Mailbox",
            "Started",
            "Replicated",
            "Objects",
            "Copied",
        ]);
        for r in records {
            table.row([
                r.target.clone(),
                r.snapshot.to_string(),
                r.mailbox.clone(),
                output::time(r.snapshot_started),
                output::time(r.replicated_at),
                r.objects.to_string(),
                r.copied.to_string(),
            ]);
        }
        table.render()
    })?;
    Ok(Exit::Success)
}
