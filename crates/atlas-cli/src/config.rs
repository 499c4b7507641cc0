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
//! Secrets (client secret, passphrase, S3 secret key) become [`Secret`] as soon as they are
//! read; no error message or warning ever contains a secret's value.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use url::Url;

use crate::secret::Secret;

/// Passphrases shorter than this many characters are warned about: with a memory-hard KDF
/// they are still within reach of an offline brute-force attack on a stolen wrapped key.
pub const MIN_PASSPHRASE_CHARS: usize = 14;

/// Default Microsoft Graph endpoint (global cloud).
pub const DEFAULT_GRAPH_ENDPOINT: &str = "https://graph.microsoft.com";
/// Default Microsoft identity platform authority host (global cloud).
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";
/// Default S3 region, as in Atlas 1.x.
pub const DEFAULT_S3_REGION: &str = "us-east-1";

/// Environment variable selecting a tenant of a multi-tenant config file (like `-t`).
pub const TENANT_SELECTOR_ENV: &str = "ATLAS_TENANT";
/// Environment variable carrying the new passphrase for `atlas key passwd`.
pub const NEW_PASSPHRASE_ENV: &str = "ATLAS_NEW_ENCRYPTION_PASSPHRASE";
/// Environment variable choosing the KDF for new or re-wrapped keys (like `--kdf`).
pub const KDF_ENV: &str = "ATLAS_KDF";

/// Which key derivation function wraps a new or re-wrapped data key.
///
/// Named settings rather than raw parameters: an administrator picks a well-chosen
/// default; `ScryptN14` exists so that test suites do not spend seconds per KDF run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KdfSetting {
    /// scrypt N = 2^16, r = 8, p = 1: the default, also readable by Atlas 1.x.
    #[default]
    Scrypt,
    /// Argon2id, 64 MiB, 3 passes.
    Argon2id,
    /// scrypt N = 2^14, the cheapest setting allowed. For tests only.
    ScryptN14,
}

impl KdfSetting {
    /// The accepted spellings, for messages and `--help`.
    pub const NAMES: &'static str = "scrypt, argon2id, scrypt-n14";
}

impl std::str::FromStr for KdfSetting {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scrypt" => Ok(Self::Scrypt),
            "argon2id" => Ok(Self::Argon2id),
            "scrypt-n14" => Ok(Self::ScryptN14),
            _ => Err(format!("unknown KDF; expected one of {}", Self::NAMES)),
        }
    }
}

/// A setting Atlas reads: its config-file key and its environment variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    /// Entra ID tenant (directory) id or primary domain.
    TenantId,
    /// Application (client) id of the app registration.
    ClientId,
    /// Client secret value.
    ClientSecret,
    /// Path of a PEM certificate for certificate authentication.
    ClientCertificate,
    /// Path of the PEM private key matching `ClientCertificate`.
    ClientKey,
    /// Passphrase that wraps the repository's data key.
    EncryptionPassphrase,
    /// Microsoft Graph base URL.
    GraphEndpoint,
    /// Identity platform base URL.
    AuthorityHost,
    /// Seconds a Graph request may take before it is abandoned and retried (idempotent
    /// requests) — hung connections must not stall a nightly run.
    GraphTimeout,
    /// Local repository directory.
    Repository,
    /// S3 endpoint URL.
    S3Endpoint,
    /// S3 access key id.
    S3AccessKey,
    /// S3 secret access key.
    S3SecretKey,
    /// S3 region.
    S3Region,
    /// S3 bucket (default: one per tenant).
    S3Bucket,
    /// Use path-style S3 addressing (MinIO and most self-hosted servers).
    S3ForcePathStyle,
}

impl Field {
    /// Every field, in the order problems are reported.
    pub const ALL: [Field; 16] = [
        Field::TenantId,
        Field::ClientId,
        Field::ClientSecret,
        Field::ClientCertificate,
        Field::ClientKey,
        Field::EncryptionPassphrase,
        Field::GraphEndpoint,
        Field::AuthorityHost,
        Field::GraphTimeout,
        Field::Repository,
        Field::S3Endpoint,
        Field::S3AccessKey,
        Field::S3SecretKey,
        Field::S3Region,
        Field::S3Bucket,
        Field::S3ForcePathStyle,
    ];

    /// The snake_case key in a config file.
    pub fn key(self) -> &'static str {
        match self {
            Field::TenantId => "tenant_id",
            Field::ClientId => "client_id",
            Field::ClientSecret => "client_secret",
            Field::ClientCertificate => "client_certificate",
            Field::ClientKey => "client_key",
            Field::EncryptionPassphrase => "encryption_passphrase",
            Field::GraphEndpoint => "graph_endpoint",
            Field::AuthorityHost => "authority_host",
            Field::GraphTimeout => "graph_timeout",
            Field::Repository => "repository",
            Field::S3Endpoint => "s3_endpoint",
            Field::S3AccessKey => "s3_access_key",
            Field::S3SecretKey => "s3_secret_key",
            Field::S3Region => "s3_region",
            Field::S3Bucket => "s3_bucket",
            Field::S3ForcePathStyle => "s3_force_path_style",
        }
    }

    /// The environment variable (also read from `.env`).
    pub fn env(self) -> &'static str {
        match self {
            Field::TenantId => "ATLAS_TENANT_ID",
            Field::ClientId => "ATLAS_CLIENT_ID",
            Field::ClientSecret => "ATLAS_CLIENT_SECRET",
            Field::ClientCertificate => "ATLAS_CLIENT_CERTIFICATE",
            Field::ClientKey => "ATLAS_CLIENT_KEY",
            Field::EncryptionPassphrase => "ATLAS_ENCRYPTION_PASSPHRASE",
            Field::GraphEndpoint => "ATLAS_GRAPH_ENDPOINT",
            Field::AuthorityHost => "ATLAS_AUTHORITY_HOST",
            Field::GraphTimeout => "ATLAS_GRAPH_TIMEOUT",
            Field::Repository => "ATLAS_REPOSITORY",
            Field::S3Endpoint => "ATLAS_S3_ENDPOINT",
            Field::S3AccessKey => "ATLAS_S3_ACCESS_KEY",
            Field::S3SecretKey => "ATLAS_S3_SECRET_KEY",
            Field::S3Region => "ATLAS_S3_REGION",
            Field::S3Bucket => "ATLAS_S3_BUCKET",
            Field::S3ForcePathStyle => "ATLAS_S3_FORCE_PATH_STYLE",
        }
    }

    /// Whether the value must be held as a [`Secret`] and never shown.
    pub fn is_secret(self) -> bool {
        matches!(
            self,
            Field::ClientSecret | Field::EncryptionPassphrase | Field::S3SecretKey
        )
    }

    fn from_key(key: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.key() == key)
    }

    /// S3 fields whose presence selects the S3 store.
    fn selects_s3(self) -> bool {
        matches!(
            self,
            Field::S3Endpoint
                | Field::S3AccessKey
                | Field::S3SecretKey
                | Field::S3Region
                | Field::S3Bucket
                | Field::S3ForcePathStyle
        )
    }
}

/// Where a value came from; shown in problems so the administrator knows which file or
/// variable to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Top level of the config file.
    File(PathBuf),
    /// A `tenants` entry of the config file.
    FileTenant(PathBuf, String),
    /// The `.env` file.
    DotEnv(PathBuf),
    /// The process environment.
    Env,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(path) | Source::DotEnv(path) => write!(f, "{}", path.display()),
            Source::FileTenant(path, name) => write!(f, "{} (tenant \"{name}\")", path.display()),
            Source::Env => f.write_str("environment"),
        }
    }
}

/// What a command can be missing or have wrong, one entry per field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The config-file key (or pseudo-key) the problem is about.
    pub field: String,
    /// What is wrong and how to fix it. Never contains a secret value.
    pub message: String,
}

impl Problem {
    fn missing(field: Field, why: &str) -> Self {
        Self {
            field: field.key().to_owned(),
            message: format!(
                "missing{why}; set {} or \"{}\" in the config file",
                field.env(),
                field.key()
            ),
        }
    }

    fn invalid(field: Field, source: &Source, reason: impl fmt::Display) -> Self {
        let origin = match source {
            Source::Env | Source::DotEnv(_) => format!("{} from {source}", field.env()),
            Source::File(_) | Source::FileTenant(..) => format!("\"{}\" in {source}", field.key()),
        };
        Self {
            field: field.key().to_owned(),
            message: format!("invalid ({origin}): {reason}"),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Why configuration could not be loaded or does not suffice for a command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A config or `.env` file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A config file is not a JSON object. The reason names line and column, never content.
    #[error("config file {path} is not valid: {reason}")]
    FileSyntax {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A `.env` file has a line that cannot be parsed. The line itself is not shown
    /// because it may hold a secret.
    #[error("{path}: cannot parse line {line} (content not shown: it may hold a secret)")]
    DotEnvSyntax {
        /// The file.
        path: PathBuf,
        /// 1-based line number, 0 when unknown.
        line: usize,
    },
    /// `-t/--tenant` names no configured tenant.
    #[error("unknown tenant \"{name}\": {}", known_tenants(.known))]
    UnknownTenant {
        /// The requested name.
        name: String,
        /// The tenants the config file defines.
        known: Vec<String>,
    },
    /// Fields are missing or invalid for the command; every problem is listed.
    #[error("{}", render_problems(.problems, .file.as_deref()))]
    Invalid {
        /// Every problem found, in field order.
        problems: Vec<Problem>,
        /// The config file that was used, if any, for the hint line.
        file: Option<PathBuf>,
    },
}

fn known_tenants(known: &[String]) -> String {
    if known.is_empty() {
        "no config file defines named tenants, and it is not the configured tenant_id".to_owned()
    } else {
        format!("configured tenants are {}", known.join(", "))
    }
}

fn render_problems(problems: &[Problem], file: Option<&Path>) -> String {
    let mut out = format!(
        "configuration is incomplete or invalid ({} problem{}):",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for problem in problems {
        out.push_str("\n  - ");
        out.push_str(&problem.to_string());
    }
    match file {
        Some(path) => {
            // Writing to a String cannot fail.
            let _ = write!(out, "\n(config file used: {})", path.display());
        }
        None => out.push_str(
            "\n(no config file found; searched ./atlas.config.json, ./.atlas/config.json, ~/.atlas/config.json)",
        ),
    }
    out
}

/// Everything configuration is computed from. [`Inputs::from_process`] captures the real
/// process; tests build one by hand so they never touch the process environment.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// Environment variables (only `ATLAS_*` ones are looked at).
    pub env: BTreeMap<String, String>,
    /// Working directory: where `atlas.config.json`, `.atlas/config.json` and `.env` live.
    pub cwd: PathBuf,
    /// Home directory, for `~/.atlas/config.json`.
    pub home: Option<PathBuf>,
    /// Per-user data directory; the default local repository is `<data_dir>/atlas/<tenant>`.
    pub data_dir: Option<PathBuf>,
    /// The `-t/--tenant` flag.
    pub tenant: Option<String>,
}

impl Inputs {
    /// Capture the process's environment, working directory and user directories.
    ///
    /// Variables that are not valid UTF-8 are skipped; only `ATLAS_*` are kept so that
    /// nothing else of the environment is held in memory.
    pub fn from_process(tenant: Option<String>) -> Result<Self, ConfigError> {
        let cwd = std::env::current_dir().map_err(|source| ConfigError::Read {
            path: PathBuf::from("."),
            source,
        })?;
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| k.starts_with("ATLAS_"))
            .collect();
        Ok(Self {
            env,
            cwd,
            home: dirs::home_dir(),
            data_dir: dirs::data_dir(),
            tenant,
        })
    }
}

/// A raw value with its origin.
#[derive(Debug, Clone)]
struct RawValue {
    value: Raw,
    source: Source,
}

/// Raw values: strings from any source, or a JSON boolean from the config file.
#[derive(Clone)]
enum Raw {
    Text(String),
    Bool(bool),
}

impl fmt::Debug for Raw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Raw values include secrets; never show them.
        match self {
            Raw::Text(_) => f.write_str("Text(<not shown>)"),
            Raw::Bool(b) => write!(f, "Bool({b})"),
        }
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        if let Raw::Text(s) = self {
            zeroize::Zeroize::zeroize(s);
        }
    }
}

/// Merged configuration, before per-command validation. Build with [`Config::load`].
#[derive(Debug)]
pub struct Config {
    values: BTreeMap<Field, RawValue>,
    new_passphrase: Option<Secret>,
    kdf: Option<(String, Source)>,
    tenant_profile: Option<String>,
    file: Option<PathBuf>,
    file_problems: Vec<Problem>,
    warnings: Vec<String>,
    data_dir: Option<PathBuf>,
    cwd: PathBuf,
    multi_tenant_names: Vec<String>,
}

/// The repository a command works on.
#[derive(Debug, Clone)]
pub struct RepositorySettings {
    /// The tenant, normalized to lower case.
    pub tenant_id: String,
    /// Where the repository lives.
    pub store: StoreSettings,
    /// The passphrase that unwraps the data key.
    pub passphrase: Secret,
}

impl RepositorySettings {
    /// Warnings to show at startup of a command that uses this repository.
    pub fn warnings(&self) -> Vec<String> {
        passphrase_warning(&self.passphrase, "ATLAS_ENCRYPTION_PASSPHRASE")
            .into_iter()
            .collect()
    }
}

/// The warning for a short passphrase, if it is short.
pub fn passphrase_warning(passphrase: &Secret, name: &str) -> Option<String> {
    (passphrase.char_len() < MIN_PASSPHRASE_CHARS).then(|| {
        format!(
            "{name} is shorter than {MIN_PASSPHRASE_CHARS} characters; anyone who obtains the \
             repository can try to guess it offline. Use at least 5 random words or 20+ random characters."
        )
    })
}

/// The storage backend of a repository.
#[derive(Debug, Clone)]
pub enum StoreSettings {
    /// The embedded default: a directory on this machine (one per tenant).
    Local {
        /// Absolute path of the repository directory.
        path: PathBuf,
    },
    /// An S3-compatible bucket.
    S3(S3Settings),
}

/// S3 connection settings, validated.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// Endpoint URL.
    pub endpoint: Url,
    /// Access key id (not secret by itself, but not logged either).
    pub access_key: String,
    /// Secret access key.
    pub secret_key: Secret,
    /// Region.
    pub region: String,
    /// Bucket name (default `atlas-<tenant>`).
    pub bucket: String,
    /// Path-style addressing.
    pub force_path_style: bool,
}

/// Everything a command that talks to Microsoft Graph needs.
#[derive(Debug, Clone)]
pub struct GraphSettings {
    /// The tenant, normalized to lower case.
    pub tenant_id: String,
    /// Application (client) id.
    pub client_id: String,
    /// How the application proves its identity.
    pub credential: Credential,
    /// Graph base URL.
    pub graph_endpoint: Url,
    /// Identity platform base URL.
    pub authority_host: Url,
    /// How long one Graph request may take (`ATLAS_GRAPH_TIMEOUT`, seconds).
    pub request_timeout: Duration,
}

/// Default for `ATLAS_GRAPH_TIMEOUT`: generous, because a large message's MIME streams
/// within one request.
pub const DEFAULT_GRAPH_TIMEOUT: Duration = Duration::from_secs(120);

/// Application credential for the client credentials flow.
#[derive(Debug, Clone)]
pub enum Credential {
    /// A client secret (its Value, not its ID).
    Secret(Secret),
    /// A certificate and its private key, both PEM files.
    Certificate {
        /// Certificate path.
        certificate: PathBuf,
        /// Private key path.
        key: PathBuf,
    },
}

const CONFIG_FILE_CANDIDATES: [&str; 2] = ["atlas.config.json", ".atlas/config.json"];

impl Config {
    /// Read the sources in `inputs` and merge them (file < `.env` < environment).
    pub fn load(inputs: &Inputs) -> Result<Self, ConfigError> {
        let file = find_config_file(inputs);
        let parsed = match &file {
            Some(path) => parse_config_file(path)?,
            None => ParsedFile::default(),
        };
        let dotenv_path = inputs.cwd.join(".env");
        let dotenv = if dotenv_path.is_file() {
            read_dotenv(&dotenv_path)?
        } else {
            BTreeMap::new()
        };
        let env: BTreeMap<&str, &str> = inputs
            .env
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let from_env_layers = |name: &str| -> Option<(String, Source)> {
            env.get(name)
                .map(|v| ((*v).to_owned(), Source::Env))
                .or_else(|| {
                    dotenv
                        .get(name)
                        .filter(|v| !v.is_empty())
                        .map(|v| (v.clone(), Source::DotEnv(dotenv_path.clone())))
                })
        };

        // Layer 1: file top level.
        let mut values: BTreeMap<Field, RawValue> = parsed.top.clone();
        let mut warnings = Vec::new();

        // Which tenant entry, if any?
        let selector = inputs
            .tenant
            .clone()
            .filter(|t| !t.is_empty())
            .or_else(|| from_env_layers(TENANT_SELECTOR_ENV).map(|(v, _)| v))
            .or_else(|| parsed.default_tenant.clone());
        let mut tenant_profile = None;
        let mut entry_fields: Vec<Field> = Vec::new();
        if let Some((profile, entry)) = selector.as_deref().and_then(|name| parsed.entry(name)) {
            for (field, value) in entry {
                values.insert(*field, value.clone());
                entry_fields.push(*field);
            }
            tenant_profile = Some(profile.to_owned());
        }

        // Layers 2 and 3: .env, then the environment.
        for field in Field::ALL {
            if let Some((value, source)) = from_env_layers(field.env()) {
                if entry_fields.contains(&field) {
                    if let Some(profile) = &tenant_profile {
                        warnings.push(format!(
                            "{} from {source} overrides \"{}\" of tenant \"{profile}\" in the config file",
                            field.env(),
                            field.key()
                        ));
                    }
                }
                values.insert(
                    field,
                    RawValue {
                        value: Raw::Text(value),
                        source,
                    },
                );
            }
        }

        // A selector that matched no entry is fine only if it names the configured tenant.
        if let (Some(name), None) = (&selector, &tenant_profile) {
            let matches_configured = matches!(
                values.get(&Field::TenantId),
                Some(RawValue { value: Raw::Text(id), .. }) if id.eq_ignore_ascii_case(name)
            );
            if !matches_configured {
                return Err(ConfigError::UnknownTenant {
                    name: name.clone(),
                    known: parsed.tenants.keys().cloned().collect(),
                });
            }
        }

        let new_passphrase = from_env_layers(NEW_PASSPHRASE_ENV).map(|(v, _)| Secret::new(v));
        let kdf = from_env_layers(KDF_ENV);

        Ok(Self {
            values,
            new_passphrase,
            kdf,
            tenant_profile,
            file,
            file_problems: parsed.problems,
            warnings,
            data_dir: inputs.data_dir.clone(),
            cwd: inputs.cwd.clone(),
            multi_tenant_names: parsed.tenants.keys().cloned().collect(),
        })
    }

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
    pub fn new_passphrase(&self) -> Option<&Secret> {
        self.new_passphrase.as_ref()
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

    /// Settings for a command that only uses the repository (init, list, verify, …):
    /// tenant, store and passphrase. Reports every problem at once.
    pub fn for_repository(&self) -> Result<RepositorySettings, ConfigError> {
        let mut problems = self.file_problems.clone();
        let repo = self.check_repository(&mut problems);
        self.finish(problems, repo)
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

    fn secret(&self, field: Field) -> Option<Secret> {
        self.text(field).map(|(s, _)| Secret::new(s.to_owned()))
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

    fn check_tenant(&self, problems: &mut Vec<Problem>) -> Option<String> {
        let why = if self.multi_tenant_names.is_empty() {
            String::new()
        } else {
            format!(
                " (the config file defines tenants {}: choose one with -t/--tenant or \
                 {TENANT_SELECTOR_ENV}, or set \"default_tenant\")",
                self.multi_tenant_names.join(", ")
            )
        };
        self.required(Field::TenantId, &why, problems, validate_tenant_id)
    }

    fn check_repository(&self, problems: &mut Vec<Problem>) -> Option<RepositorySettings> {
        let tenant = self.check_tenant(problems);
        let passphrase = self.secret(Field::EncryptionPassphrase);
        if passphrase.is_none() {
            problems.push(Problem::missing(Field::EncryptionPassphrase, ""));
        }
        let s3_selected = Field::ALL
            .into_iter()
            .any(|f| f.selects_s3() && self.values.contains_key(&f));
        let store = if s3_selected {
            if let Some((_, source)) = self.text(Field::Repository) {
                problems.push(Problem::invalid(
                    Field::Repository,
                    source,
                    "both a local repository and S3 settings are given; choose one",
                ));
            }
            self.check_s3(tenant.as_deref(), problems)
                .map(StoreSettings::S3)
        } else {
            self.check_local(tenant.as_deref(), problems)
                .map(|path| StoreSettings::Local { path })
        };
        Some(RepositorySettings {
            tenant_id: tenant?,
            store: store?,
            passphrase: passphrase?,
        })
    }

    fn check_local(&self, tenant: Option<&str>, problems: &mut Vec<Problem>) -> Option<PathBuf> {
        if let Some((path, _)) = self.text(Field::Repository) {
            return Some(self.cwd.join(path));
        }
        let Some(dir) = &self.data_dir else {
            problems.push(Problem::missing(
                Field::Repository,
                " (this system has no per-user data directory for the default repository)",
            ));
            return None;
        };
        tenant.map(|t| dir.join("atlas").join(t))
    }

    fn check_s3(&self, tenant: Option<&str>, problems: &mut Vec<Problem>) -> Option<S3Settings> {
        const WHY: &str = " (S3 settings are given)";
        let endpoint = self.required(Field::S3Endpoint, WHY, problems, validate_url);
        let access_key = self.required(Field::S3AccessKey, WHY, problems, |s| Ok(s.to_owned()));
        let secret_key = self.secret(Field::S3SecretKey);
        if secret_key.is_none() {
            problems.push(Problem::missing(Field::S3SecretKey, WHY));
        }
        let region = self
            .text(Field::S3Region)
            .map_or_else(|| DEFAULT_S3_REGION.to_owned(), |(s, _)| s.to_owned());
        let force_path_style = if let Some(RawValue {
            value: Raw::Bool(b),
            ..
        }) = self.values.get(&Field::S3ForcePathStyle)
        {
            Some(*b)
        } else {
            self.optional(
                Field::S3ForcePathStyle,
                || Some(false),
                problems,
                |s| parse_bool(s).ok_or_else(|| "expected true or false".to_owned()),
            )
        };
        let bucket = self.optional(
            Field::S3Bucket,
            || tenant.map(|t| format!("atlas-{t}")),
            problems,
            |name| validate_bucket(name).map(|()| name.to_owned()),
        );
        Some(S3Settings {
            endpoint: endpoint?,
            access_key: access_key?,
            secret_key: secret_key?,
            region,
            bucket: bucket?,
            force_path_style: force_path_style?,
        })
    }

    fn check_graph(&self, problems: &mut Vec<Problem>) -> Option<GraphSettings> {
        let tenant = self.check_tenant(problems);
        let client_id = self.required(Field::ClientId, "", problems, |id| {
            if is_guid(id) {
                Ok(id.to_ascii_lowercase())
            } else {
                Err(
                    "expected the Application (client) ID of the app registration, a GUID"
                        .to_owned(),
                )
            }
        });
        let credential = self.check_credential(problems);
        let default_url =
            |url: &str| Some(Url::parse(url).expect("invariant: default URLs are valid"));
        let graph_endpoint = self.optional(
            Field::GraphEndpoint,
            || default_url(DEFAULT_GRAPH_ENDPOINT),
            problems,
            validate_url,
        );
        let authority_host = self.optional(
            Field::AuthorityHost,
            || default_url(DEFAULT_AUTHORITY_HOST),
            problems,
            validate_url,
        );
        let request_timeout = self.optional(
            Field::GraphTimeout,
            || Some(DEFAULT_GRAPH_TIMEOUT),
            problems,
            |text| match text.parse::<u64>() {
                Ok(secs) if (1..=3600).contains(&secs) => Ok(Duration::from_secs(secs)),
                _ => Err("expected a number of seconds between 1 and 3600".to_owned()),
            },
        );
        Some(GraphSettings {
            tenant_id: tenant?,
            client_id: client_id?,
            credential: credential?,
            graph_endpoint: graph_endpoint?,
            authority_host: authority_host?,
            request_timeout: request_timeout?,
        })
    }

    fn check_credential(&self, problems: &mut Vec<Problem>) -> Option<Credential> {
        let has = |field| self.text(field).is_some();
        if has(Field::ClientSecret) {
            if has(Field::ClientCertificate) || has(Field::ClientKey) {
                let (_, source) = self.text(Field::ClientSecret)?;
                problems.push(Problem::invalid(
                    Field::ClientSecret,
                    source,
                    "both a client secret and a client certificate are given; choose one",
                ));
                return None;
            }
            return self.required(Field::ClientSecret, "", problems, |value| {
                if is_guid(value) {
                    Err(
                        "this looks like the secret's ID (a GUID); use the secret's Value instead"
                            .to_owned(),
                    )
                } else {
                    Ok(Credential::Secret(Secret::new(value.to_owned())))
                }
            });
        }
        if !has(Field::ClientCertificate) && !has(Field::ClientKey) {
            problems.push(Problem {
                field: Field::ClientSecret.key().to_owned(),
                message: format!(
                    "missing; set {} (or {} and {} for certificate authentication) or \"{}\" in the config file",
                    Field::ClientSecret.env(),
                    Field::ClientCertificate.env(),
                    Field::ClientKey.env(),
                    Field::ClientSecret.key()
                ),
            });
            return None;
        }
        let why = " (certificate authentication needs both files)";
        let existing = |path: &str| {
            let path = self.cwd.join(path);
            if path.is_file() {
                Ok(path)
            } else {
                Err(format!("file {} does not exist", path.display()))
            }
        };
        let certificate = self.required(Field::ClientCertificate, why, problems, existing);
        let key = self.required(Field::ClientKey, why, problems, existing);
        Some(Credential::Certificate {
            certificate: certificate?,
            key: key?,
        })
    }
}

fn find_config_file(inputs: &Inputs) -> Option<PathBuf> {
    CONFIG_FILE_CANDIDATES
        .iter()
        .map(|name| inputs.cwd.join(name))
        .chain(
            inputs
                .home
                .iter()
                .map(|h| h.join(".atlas").join("config.json")),
        )
        .find(|p| p.is_file())
}

#[derive(Debug, Default)]
struct ParsedFile {
    top: BTreeMap<Field, RawValue>,
    tenants: BTreeMap<String, BTreeMap<Field, RawValue>>,
    default_tenant: Option<String>,
    problems: Vec<Problem>,
}

impl ParsedFile {
    /// The `tenants` entry named `name`, or else the one whose `tenant_id` is `name`.
    fn entry(&self, name: &str) -> Option<(&str, &BTreeMap<Field, RawValue>)> {
        if let Some((profile, entry)) = self.tenants.get_key_value(name) {
            return Some((profile, entry));
        }
        self.tenants
            .iter()
            .find_map(|(profile, entry)| match entry.get(&Field::TenantId) {
                Some(RawValue {
                    value: Raw::Text(id),
                    ..
                }) if id.eq_ignore_ascii_case(name) => Some((profile.as_str(), entry)),
                _ => None,
            })
    }
}

fn parse_config_file(path: &Path) -> Result<ParsedFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let json: Value = serde_json::from_str(&text).map_err(|e| ConfigError::FileSyntax {
        path: path.to_owned(),
        // serde_json syntax errors carry only a category and a position, never content.
        reason: format!(
            "JSON syntax error at line {} column {}",
            e.line(),
            e.column()
        ),
    })?;
    let Value::Object(map) = json else {
        return Err(ConfigError::FileSyntax {
            path: path.to_owned(),
            reason: "the file must contain a JSON object".to_owned(),
        });
    };
    let mut parsed = ParsedFile::default();
    let top_source = Source::File(path.to_owned());
    for (key, value) in map {
        match key.as_str() {
            "tenants" => {
                let Value::Object(tenants) = value else {
                    parsed.problems.push(file_problem(
                        &key,
                        path,
                        "must be an object of tenant entries",
                    ));
                    continue;
                };
                for (name, entry) in tenants {
                    let Value::Object(entry) = entry else {
                        parsed.problems.push(file_problem(
                            &format!("tenants.{name}"),
                            path,
                            "must be an object",
                        ));
                        continue;
                    };
                    let source = Source::FileTenant(path.to_owned(), name.clone());
                    let mut fields = BTreeMap::new();
                    for (key, value) in entry {
                        parse_field(
                            &key,
                            value,
                            &source,
                            &mut fields,
                            &mut parsed.problems,
                            &format!("tenants.{name}."),
                        );
                    }
                    parsed.tenants.insert(name, fields);
                }
            }
            "default_tenant" => match value {
                Value::String(s) if !s.is_empty() => parsed.default_tenant = Some(s),
                Value::String(_) | Value::Null => {}
                _ => parsed
                    .problems
                    .push(file_problem(&key, path, "must be a string")),
            },
            _ => parse_field(
                &key,
                value,
                &top_source,
                &mut parsed.top,
                &mut parsed.problems,
                "",
            ),
        }
    }
    parsed.problems.sort_by(|a, b| a.field.cmp(&b.field));
    Ok(parsed)
}

fn file_problem(key: &str, path: &Path, reason: &str) -> Problem {
    Problem {
        field: key.to_owned(),
        message: format!("invalid (in {}): {reason}", path.display()),
    }
}

fn parse_field(
    key: &str,
    value: Value,
    source: &Source,
    into: &mut BTreeMap<Field, RawValue>,
    problems: &mut Vec<Problem>,
    prefix: &str,
) {
    let path = match source {
        Source::File(p) | Source::FileTenant(p, _) | Source::DotEnv(p) => p.clone(),
        Source::Env => PathBuf::new(),
    };
    let Some(field) = Field::from_key(key) else {
        problems.push(file_problem(
            &format!("{prefix}{key}"),
            &path,
            "unknown key (keys are snake_case, e.g. \"tenant_id\"; see docs/CONFIGURATION.md)",
        ));
        return;
    };
    let raw = match (field, value) {
        (_, Value::Null) => return,
        (_, Value::String(s)) if s.is_empty() => return,
        (_, Value::String(s)) => Raw::Text(s),
        (Field::S3ForcePathStyle, Value::Bool(b)) => Raw::Bool(b),
        (Field::S3ForcePathStyle, _) => {
            problems.push(file_problem(
                &format!("{prefix}{key}"),
                &path,
                "must be true or false",
            ));
            return;
        }
        _ => {
            problems.push(file_problem(
                &format!("{prefix}{key}"),
                &path,
                "must be a string",
            ));
            return;
        }
    };
    into.insert(
        field,
        RawValue {
            value: raw,
            source: source.clone(),
        },
    );
}

fn read_dotenv(path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let iter = dotenvy::from_path_iter(path).map_err(|e| dotenv_error(path, e))?;
    let mut out = BTreeMap::new();
    for item in iter {
        let (key, value) = item.map_err(|e| dotenv_error(path, e))?;
        if key.starts_with("ATLAS_") {
            out.insert(key, value);
        }
    }
    Ok(out)
}

fn dotenv_error(path: &Path, err: dotenvy::Error) -> ConfigError {
    match err {
        dotenvy::Error::Io(source) => ConfigError::Read {
            path: path.to_owned(),
            source,
        },
        dotenvy::Error::LineParse(bad_line, _) => {
            // The error carries the offending line, which may hold a secret: only its
            // number is reported.
            let first = bad_line.lines().next().unwrap_or_default().trim();
            let line = std::fs::read_to_string(path)
                .ok()
                .filter(|_| !first.is_empty())
                // The error carries either the whole line or just its value part.
                .and_then(|text| text.lines().position(|l| l.contains(first)))
                .map_or(0, |i| i + 1);
            ConfigError::DotEnvSyntax {
                path: path.to_owned(),
                line,
            }
        }
        _ => ConfigError::DotEnvSyntax {
            path: path.to_owned(),
            line: 0,
        },
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// A tenant is named by its directory (tenant) id, a GUID, or a verified domain such as
/// `contoso.onmicrosoft.com`. Normalized to lower case because it names the repository
/// directory and the default bucket.
fn validate_tenant_id(id: &str) -> Result<String, String> {
    let id = id.trim().to_ascii_lowercase();
    let is_domain = id.len() <= 253
        && id.contains('.')
        && id.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if is_guid(&id) || is_domain {
        Ok(id)
    } else {
        Err("expected the directory (tenant) ID, a GUID, or a domain such as contoso.onmicrosoft.com".to_owned())
    }
}

fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Endpoints must be http(s) URLs; plain http only to loopback (the simulator, a local
/// S3 server), because client secrets and tokens travel over these connections.
fn validate_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw.trim()).map_err(|e| format!("not a URL ({e})"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        _ if url.host().is_none() => Err("the URL has no host".to_owned()),
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        "http" => Err("must use https (plain http is allowed only for localhost)".to_owned()),
        other => Err(format!("unsupported scheme \"{other}\"; expected https")),
    }
}

/// S3 bucket naming rules (the subset that matters for a name an administrator types).
fn validate_bucket(name: &str) -> Result<(), String> {
    let ok = (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err("S3 bucket names are 3-63 characters of a-z, 0-9, '-' and '.', starting and ending with a letter or digit".to_owned())
    }
}

#[cfg(test)]
mod tests;
