//! `atlas init` and `atlas key passwd`: creating a repository and changing its passphrase.

use std::io::IsTerminal as _;
use std::sync::Arc;

use anyhow::Context as _;
use atlas_core::ports::BlobStore;
use atlas_core::repo::{KdfChoice, Passphrase, Repository};
use atlas_store::LocalStore;
use serde::Serialize;

use crate::cli::{GlobalArgs, InitArgs, KdfArg, KeyPasswdArgs};
use crate::config::{
    Config, KdfSetting, NEW_PASSPHRASE_ENV, RepositorySettings, StoreSettings, passphrase_warning,
};
use crate::exit::{Exit, UsageError};
use crate::output::{Output, sanitize};
use crate::secret::Secret;

use super::load_config;

/// The repository settings for a command, with startup warnings logged.
pub(super) fn repository_settings(config: &Config) -> anyhow::Result<RepositorySettings> {
    let settings = config.for_repository()?;
    for warning in settings.warnings() {
        tracing::warn!("{warning}");
    }
    Ok(settings)
}

/// Open the configured store. S3 settings are validated by the config module, but this
/// build has no S3 backend yet: say so instead of falling back to a local directory,
/// which would silently put backups somewhere the administrator did not ask for.
pub(super) fn open_store(settings: &RepositorySettings) -> anyhow::Result<Arc<dyn BlobStore>> {
    match &settings.store {
        StoreSettings::Local { path } => Ok(Arc::new(LocalStore::new(path.clone()))),
        StoreSettings::S3(s3) => Err(UsageError(format!(
            "S3 storage is configured (endpoint {}, bucket {}), but this build of Atlas does not \
             include the S3 backend yet; remove the S3 settings (ATLAS_S3_* / s3_*) to use a \
             local repository",
            s3.endpoint.host_str().unwrap_or("?"),
            s3.bucket
        ))
        .into()),
    }
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

pub(super) fn core_passphrase(secret: &Secret) -> Passphrase {
    Passphrase::new(secret.expose())
}

/// What `init` found or did.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
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
fn new_passphrase(config: &Config) -> anyhow::Result<Secret> {
    if let Some(secret) = config.new_passphrase() {
        return Ok(secret.clone());
    }
    if !std::io::stdin().is_terminal() {
        return Err(UsageError(format!(
            "no new passphrase: set {NEW_PASSPHRASE_ENV}, or run on a terminal to be prompted"
        ))
        .into());
    }
    let first = Secret::new(
        rpassword::prompt_password("New encryption passphrase: ")
            .context("reading the new passphrase")?,
    );
    let second = Secret::new(
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
