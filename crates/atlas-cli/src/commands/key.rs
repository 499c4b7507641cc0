//! `atlas init` and `atlas key passwd`: creating a repository and changing its passphrase.

use std::io::IsTerminal as _;
use std::sync::Arc;

use anyhow::Context as _;
use atlas_core::ports::BlobStore;
use atlas_core::repo::{KdfChoice, Passphrase, Repository};
use atlas_store::s3::Credentials;
use atlas_store::{LocalStore, S3Config, S3ConfigError, S3Store};
use serde::Serialize;

use crate::cli::{GlobalArgs, InitArgs, KdfArg, KeyPasswdArgs};
use crate::config::{
    Config, KdfSetting, NEW_PASSPHRASE_ENV, RepositorySettings, S3Settings, StoreSettings,
    passphrase_warning,
};
use crate::exit::{Exit, UsageError};
use crate::output::{Output, sanitize};
use atlas_core::SecretString;

use super::load_config;

/// The repository settings for a command, with startup warnings logged.
pub(super) fn repository_settings(config: &Config) -> anyhow::Result<RepositorySettings> {
    let settings = config.for_repository()?;
    for warning in settings.warnings() {
        tracing::warn!("{warning}");
    }
    Ok(settings)
}

/// Open the configured store: a local directory, or the S3 bucket of `ATLAS_S3_*`.
///
/// Opening sends nothing over the network; a missing bucket is found by the first request
/// and reported as such (never as an empty repository). Commands that may create the
/// repository call [`prepare_s3_for_writing`] first, which creates the bucket.
pub(super) fn open_store(settings: &RepositorySettings) -> anyhow::Result<Arc<dyn BlobStore>> {
    match &settings.store {
        StoreSettings::Local { path } => Ok(Arc::new(LocalStore::new(path.clone()))),
        StoreSettings::S3(s3) => Ok(Arc::new(s3_store(s3)?)),
    }
}

/// The S3 store for validated settings. The bucket (default `atlas-{tenant}`, or
/// `ATLAS_S3_BUCKET`) holds the repository at its root, the layout Atlas 1.x used, so
/// its buckets open unchanged.
pub(super) fn s3_store(s3: &S3Settings) -> anyhow::Result<S3Store> {
    let credentials = Credentials::new(s3.access_key.clone(), s3.secret_key.expose());
    let explain = |e: S3ConfigError| {
        UsageError(format!(
            "S3 settings for bucket {} at {}: {e}",
            s3.bucket,
            s3.endpoint.as_str().trim_end_matches('/')
        ))
    };
    // `shared_bucket` validates the bucket name and supplies the defaults; the repository
    // lives at the bucket's root, so the tenant prefix it would add is dropped.
    let mut config = S3Config::shared_bucket(&s3.bucket, "tenant", &s3.region, credentials)
        .map_err(explain)?
        .endpoint(s3.endpoint.as_str().trim_end_matches('/'));
    if let Some(path_style) = s3.force_path_style {
        config = config.path_style(path_style);
    }
    config.key_prefix = String::new();
    config.net = s3.net.clone();
    config.content_md5 = s3.content_md5;
    Ok(S3Store::new(config).map_err(explain)?)
}

/// Before a command that may create the repository (init, backup) writes anything to S3:
/// create the bucket if it is missing — lock-capable when `lock` (a run that asked for
/// Object Lock) — and make sure the server honours create-if-absent, which the race-free
/// key creation and the backup leases rely on. A local repository needs nothing.
pub(super) async fn prepare_s3_for_writing(
    settings: &RepositorySettings,
    lock: bool,
) -> anyhow::Result<()> {
    let StoreSettings::S3(s3) = &settings.store else {
        return Ok(());
    };
    let store = s3_store(s3)?;
    let setup = store
        .ensure_bucket(lock)
        .await
        .with_context(|| format!("preparing S3 bucket {}", s3.bucket))?;
    if setup.created {
        tracing::info!(
            bucket = %s3.bucket,
            object_lock = setup.object_lock,
            "created the S3 bucket"
        );
    }
    if let Some(Err(reason)) = &setup.lifecycle {
        tracing::warn!(
            "could not set lifecycle rules on the new bucket {} ({reason}); incomplete uploads \
             are then not cleaned up automatically",
            s3.bucket
        );
    }
    let honoured = store
        .probe_conditional_writes()
        .await
        .with_context(|| format!("checking conditional writes on S3 bucket {}", s3.bucket))?;
    if !honoured {
        return Err(UsageError(format!(
            "the S3 server at {} ignores If-None-Match, so two writers could both create the \
             same object (the repository key, backup leases); Atlas does not write there — use \
             an S3 server that supports conditional writes",
            s3.endpoint.as_str().trim_end_matches('/')
        ))
        .into());
    }
    Ok(())
}

/// A human description of where the repository is, for output (never credentials).
pub(super) fn location(settings: &RepositorySettings) -> String {
    match &settings.store {
        StoreSettings::Local { path } => path.display().to_string(),
        StoreSettings::S3(s3) => format!("s3 bucket {}", s3.bucket),
    }
}

/// The KDF for a new wrap: `--kdf`, else `ATLAS_KDF`, else the default.
fn kdf_choice(arg: &KdfArg, config: &Config) -> anyhow::Result<KdfChoice> {
    match arg.kdf {
        Some(kdf) => Ok(kdf_for(kdf)),
        None => kdf_choice_from_config(config),
    }
}

/// The KDF for a key created implicitly (e.g. by the first backup): `ATLAS_KDF` or the
/// default.
pub(super) fn kdf_choice_from_config(config: &Config) -> anyhow::Result<KdfChoice> {
    Ok(kdf_for(config.kdf()?.unwrap_or_default()))
}

fn kdf_for(setting: KdfSetting) -> KdfChoice {
    match setting {
        KdfSetting::Scrypt => KdfChoice::default(),
        KdfSetting::Argon2id => KdfChoice::ARGON2ID_DEFAULT,
        KdfSetting::ScryptN14 => KdfChoice::SCRYPT_MINIMUM,
    }
}

/// The passphrase as core takes it: the same secret type, named for its job.
pub(super) fn core_passphrase(secret: &SecretString) -> Passphrase {
    secret.clone()
}

/// What `init` found or did.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
enum InitOutcome {
    /// A new key and config were written.
    Created,
    /// A key existed without a repository config (an Atlas 1.x repository, or an init that
    /// was interrupted); the config was added.
    Completed,
    /// Everything existed and the passphrase opens it; nothing was written.
    AlreadyInitialized,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct InitReport {
    outcome: InitOutcome,
    tenant_id: String,
    repository: String,
}

/// `atlas init`: create the key and config, or confirm an existing repository opens.
pub async fn init(global: &GlobalArgs, args: &InitArgs, output: Output) -> anyhow::Result<Exit> {
    let config = load_config(global)?;
    let settings = repository_settings(&config)?;
    let kdf = kdf_choice(&args.kdf, &config)?;
    if args.object_lock && !matches!(settings.store, StoreSettings::S3(_)) {
        return Err(UsageError(
            "--object-lock needs S3 storage; a local repository cannot enforce retention".into(),
        )
        .into());
    }
    prepare_s3_for_writing(&settings, args.object_lock).await?;
    let store = open_store(&settings)?;
    let where_ = location(&settings);
    let passphrase = core_passphrase(&settings.passphrase);
    let tenant = settings.tenant_id.as_str();

    // Open first, so that re-running init is harmless and reports what it found; the
    // core's init is race-free on its own (create-if-absent), this only picks the message.
    let outcome = match Repository::open(Arc::clone(&store), tenant, &passphrase).await {
        Ok(repo) if repo.config().is_some() => InitOutcome::AlreadyInitialized,
        Ok(_) => {
            Repository::init(store, tenant, &passphrase, kdf)
                .await
                .with_context(|| format!("completing the repository at {where_}"))?;
            InitOutcome::Completed
        }
        Err(atlas_core::Error::NotInitialized { .. }) => {
            Repository::init(store, tenant, &passphrase, kdf)
                .await
                .with_context(|| format!("creating the repository at {where_}"))?;
            InitOutcome::Created
        }
        Err(err) => {
            return Err(err)
                .with_context(|| format!("opening the existing repository at {where_}"));
        }
    };
    tracing::info!(tenant, outcome = ?outcome, "init finished");

    let report = InitReport {
        outcome,
        tenant_id: settings.tenant_id.clone(),
        repository: where_,
    };
    output.result(&report, || {
        let what = match outcome {
            InitOutcome::Created => "Created the repository",
            InitOutcome::Completed => "Completed the repository (its key existed; added its config)",
            InitOutcome::AlreadyInitialized => "Repository already initialized; nothing changed",
        };
        format!(
            "{what} for tenant {} at {}\nKeep the encryption passphrase safe: without it the backups cannot be read.",
            sanitize(&report.tenant_id),
            sanitize(&report.repository)
        )
    })?;
    Ok(Exit::Success)
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PasswdReport {
    tenant_id: String,
    repository: String,
    changed: bool,
}

/// `atlas key passwd`: re-wrap the data key under a new passphrase.
pub async fn passwd(
    global: &GlobalArgs,
    args: &KeyPasswdArgs,
    output: Output,
) -> anyhow::Result<Exit> {
    let config = load_config(global)?;
    let settings = repository_settings(&config)?;
    let kdf = kdf_choice(&args.kdf, &config)?;
    let store = open_store(&settings)?;
    let where_ = location(&settings);
    let tenant = settings.tenant_id.as_str();

    // Open with the current passphrase before asking for a new one: a typo in the old
    // passphrase should fail before the user types the new one twice.
    let repo = Repository::open(store, tenant, &core_passphrase(&settings.passphrase))
        .await
        .with_context(|| format!("opening the repository at {where_}"))?;

    let new = new_passphrase(&config)?;
    if new.expose() == settings.passphrase.expose() {
        return Err(UsageError(
            "the new passphrase is the same as the current one; nothing to change".to_owned(),
        )
        .into());
    }
    if let Some(warning) = passphrase_warning(&new, "the new passphrase") {
        tracing::warn!("{warning}");
    }
    repo.change_passphrase(&core_passphrase(&new), kdf)
        .await
        .with_context(|| format!("re-wrapping the data key at {where_}"))?;
    tracing::info!(tenant, "passphrase changed");

    let report = PasswdReport {
        tenant_id: settings.tenant_id.clone(),
        repository: where_,
        changed: true,
    };
    output.result(&report, || {
        format!(
            "Changed the passphrase of tenant {} at {}.\nThe old passphrase no longer opens it: update ATLAS_ENCRYPTION_PASSPHRASE wherever Atlas runs.",
            sanitize(&report.tenant_id),
            sanitize(&report.repository)
        )
    })?;
    Ok(Exit::Success)
}

/// The new passphrase: `ATLAS_NEW_ENCRYPTION_PASSPHRASE`, or typed twice on a terminal.
fn new_passphrase(config: &Config) -> anyhow::Result<SecretString> {
    if let Some(secret) = config.new_passphrase() {
        return Ok(secret.clone());
    }
    if !std::io::stdin().is_terminal() {
        return Err(UsageError(format!(
            "no new passphrase: set {NEW_PASSPHRASE_ENV}, or run on a terminal to be prompted"
        ))
        .into());
    }
    let first = SecretString::new(
        rpassword::prompt_password("New encryption passphrase: ")
            .context("reading the new passphrase")?,
    );
    let second = SecretString::new(
        rpassword::prompt_password("Repeat the new passphrase: ")
            .context("reading the new passphrase")?,
    );
    if first.expose().is_empty() {
        return Err(UsageError("the new passphrase is empty".to_owned()).into());
    }
    if first != second {
        return Err(UsageError("the two passphrases differ; nothing changed".to_owned()).into());
    }
    Ok(first)
}
