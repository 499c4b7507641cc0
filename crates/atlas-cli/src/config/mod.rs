//! Configuration: where settings come from, which one wins, and whether a command has
//! everything it needs.
//!
//! This is the only module of Atlas that reads the environment. It turns three sources
//! into one explicit value that the rest of the program passes around:
//!
//! 1. a JSON config file — the first that exists of `./atlas.config.json`,
//!    `./.atlas/config.json`, `~/.atlas/config.json` (snake_case keys);
//! 2. `./.env` in the working directory (read into a map, never into the process
//!    environment);
//! 3. the process environment (`ATLAS_*`).
//!
//! Later sources win, and an empty value counts as unset. A config file may hold several
//! tenants: top-level keys are defaults, and `"tenants": {"name": {...}}` entries override
//! them for the tenant selected with `-t/--tenant` (or `ATLAS_TENANT`, or the file's
//! `default_tenant`). See `docs/CONFIGURATION.md` for the user-facing description.
//!
//! Loading ([`Config::load`]) only fails for problems that make the sources unreadable
//! (bad JSON, unknown tenant). Whether a command can run is decided afterwards by
//! [`Config::for_repository`] or [`Config::for_graph`], which check every field the command
//! needs and report **all** missing or invalid ones at once, so an administrator fixes the
//! config in one round instead of one error per run.
//!
//! Secrets (client secret, passphrase, S3 secret key) become [`SecretString`] as soon as
//! they are read; no error message or warning ever contains a secret's value.
//!
//! The module's files follow its jobs: `field` (the registry of settings: config key and
//! variable of each), `sources` (file, `.env` and environment, merged), `settings` (the
//! validated values a command receives, and the checks that build them), `validate` (single
//! value rules; S3 bucket names and Graph defaults are the adapters', not copied here) and
//! `problem` (how what is wrong is reported).

mod field;
pub mod hints;
mod problem;
mod settings;
mod sources;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use atlas_core::SecretString;

pub use field::{
    CA_FILE_ENV, Field, HTTP_PROXY_ENV, HTTPS_PROXY_ENV, JOB_COMPLETION_INDEX_ENV, KDF_ENV,
    KdfSetting, NEW_PASSPHRASE_ENV, NO_PROXY_ENV, TENANT_SELECTOR_ENV,
};
pub use problem::{ConfigError, Problem};
pub use settings::{
    Credential, DEFAULT_GRAPH_TIMEOUT, GraphSettings, RepositorySettings, S3Settings,
    StoreSettings, passphrase_warning,
};
pub use sources::{Inputs, Source};
use sources::{Raw, RawValue};

/// Passphrases shorter than this many characters are warned about: with a memory-hard KDF
/// they are still within reach of an offline brute-force attack on a stolen wrapped key.
pub const MIN_PASSPHRASE_CHARS: usize = 14;
/// Default S3 region, as in Atlas 1.x.
pub const DEFAULT_S3_REGION: &str = "us-east-1";

/// The proxy variables as found (value and origin), validated with the other settings.
/// `Debug` says only which are set: a proxy URL may carry a user and password.
#[derive(Default)]
struct Proxies {
    https: Option<(String, Source)>,
    http: Option<(String, Source)>,
    no_proxy: Option<String>,
}

impl std::fmt::Debug for Proxies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxies")
            .field("https", &self.https.as_ref().map(|(_, source)| source))
            .field("http", &self.http.as_ref().map(|(_, source)| source))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

/// Merged configuration, before per-command validation. Build with [`Config::load`].
#[derive(Debug)]
pub struct Config {
    values: BTreeMap<Field, RawValue>,
    new_passphrase: Option<SecretString>,
    kdf: Option<(String, Source)>,
    proxies: Proxies,
    tenant_profile: Option<String>,
    file: Option<PathBuf>,
    file_problems: Vec<Problem>,
    warnings: Vec<String>,
    data_dir: Option<PathBuf>,
    cwd: PathBuf,
    job_completion_index: Option<String>,
    multi_tenant_names: Vec<String>,
}

impl Config {
    /// Warnings found while loading (overridden tenant settings). Never contain values.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The config file that was used, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The name of the selected `tenants` entry, if one was selected.
    pub fn tenant_profile(&self) -> Option<&str> {
        self.tenant_profile.as_deref()
    }

    /// The new passphrase for `atlas key passwd`, from `ATLAS_NEW_ENCRYPTION_PASSPHRASE`.
    pub fn new_passphrase(&self) -> Option<&SecretString> {
        self.new_passphrase.as_ref()
    }

    /// `JOB_COMPLETION_INDEX` as Kubernetes set it (for `--shard auto/N`), unparsed.
    pub fn job_completion_index(&self) -> Option<&str> {
        self.job_completion_index.as_deref()
    }

    /// The KDF for new or re-wrapped keys from `ATLAS_KDF`, if set.
    pub fn kdf(&self) -> Result<Option<KdfSetting>, ConfigError> {
        let Some((raw, source)) = &self.kdf else {
            return Ok(None);
        };
        raw.parse()
            .map(Some)
            .map_err(|reason: String| ConfigError::Invalid {
                problems: vec![Problem {
                    field: "kdf".to_owned(),
                    message: format!("invalid ({KDF_ENV} from {source}): {reason}"),
                }],
                file: self.file.clone(),
            })
    }

    /// The mail fidelity of backups from `fidelity` / `ATLAS_FIDELITY`, if set.
    pub fn fidelity(&self) -> Result<Option<atlas_core::model::Fidelity>, ConfigError> {
        let mut problems = Vec::new();
        let fidelity = self.optional(
            Field::Fidelity,
            || Some(None),
            &mut problems,
            |text| text.parse().map(Some).map_err(|e| format!("{e}")),
        );
        self.finish(problems, fidelity)
    }

    /// Settings for a command that only uses the repository (init, list, verify, …):
    /// tenant, store and passphrase. Reports every problem at once.
    pub fn for_repository(&self) -> Result<RepositorySettings, ConfigError> {
        let mut problems = self.file_problems.clone();
        let repo = self.check_repository(&mut problems);
        self.finish(problems, repo)
    }

    /// Trust and proxies alone, for a store that is not the configured repository (a
    /// replication target given on the command line).
    pub fn network(&self) -> Result<atlas_net::NetOptions, ConfigError> {
        let mut problems = Vec::new();
        let net = self.check_net(&mut problems);
        self.finish(problems, net)
    }

    /// Settings for a command that only talks to Graph (mailboxes, status).
    pub fn for_graph(&self) -> Result<GraphSettings, ConfigError> {
        let mut problems = self.file_problems.clone();
        let graph = self.check_graph(&mut problems);
        self.finish(problems, graph)
    }

    /// Settings for a command that reads Graph into the repository (backup, restore).
    pub fn for_repository_and_graph(
        &self,
    ) -> Result<(RepositorySettings, GraphSettings), ConfigError> {
        let mut problems = self.file_problems.clone();
        let repo = self.check_repository(&mut problems);
        let graph = self.check_graph(&mut problems);
        let both = repo.zip(graph);
        self.finish(problems, both)
    }

    fn finish<T>(&self, mut problems: Vec<Problem>, value: Option<T>) -> Result<T, ConfigError> {
        // The tenant id is needed by both checks; report it once.
        let mut seen = Vec::new();
        problems.retain(|p| {
            let key = (p.field.clone(), p.message.clone());
            if seen.contains(&key) {
                false
            } else {
                seen.push(key);
                true
            }
        });
        match value {
            Some(value) if problems.is_empty() => Ok(value),
            _ => Err(ConfigError::Invalid {
                problems,
                file: self.file.clone(),
            }),
        }
    }

    fn text(&self, field: Field) -> Option<(&str, &Source)> {
        match self.values.get(&field) {
            Some(RawValue {
                value: Raw::Text(s),
                source,
            }) if !s.is_empty() => Some((s.as_str(), source)),
            _ => None,
        }
    }

    fn secret(&self, field: Field) -> Option<SecretString> {
        self.text(field)
            .map(|(s, _)| SecretString::new(s.to_owned()))
    }

    /// A value the command cannot do without: reported as missing (with `why` appended)
    /// when absent, as invalid when `validate` rejects it.
    fn required<T>(
        &self,
        field: Field,
        why: &str,
        problems: &mut Vec<Problem>,
        validate: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let Some((raw, source)) = self.text(field) else {
            problems.push(Problem::missing(field, why));
            return None;
        };
        validate(raw)
            .map_err(|reason| problems.push(Problem::invalid(field, source, reason)))
            .ok()
    }

    /// A value with a default: `default()` when absent, invalid when `validate` rejects it.
    fn optional<T>(
        &self,
        field: Field,
        default: impl FnOnce() -> Option<T>,
        problems: &mut Vec<Problem>,
        validate: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let Some((raw, source)) = self.text(field) else {
            return default();
        };
        validate(raw)
            .map_err(|reason| problems.push(Problem::invalid(field, source, reason)))
            .ok()
    }
}

#[cfg(test)]
mod tests;
