//! Where settings come from and which one wins: the config file (top level and `tenants`
//! entries), `./.env`, and the process environment, merged into [`Config`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use atlas_core::SecretString;
use serde_json::Value;

use super::field::{
    Field, HTTP_PROXY_ENV, HTTPS_PROXY_ENV, JOB_COMPLETION_INDEX_ENV, KDF_ENV, NEW_PASSPHRASE_ENV,
    NO_PROXY_ENV, TENANT_SELECTOR_ENV,
};
use super::problem::{ConfigError, Problem};
use super::{Config, Proxies};

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
            .filter(|(k, _)| {
                k.starts_with("ATLAS_") || is_proxy_variable(k) || k == JOB_COMPLETION_INDEX_ENV
            })
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

/// The proxy variables Atlas honours besides its own.
fn is_proxy_variable(name: &str) -> bool {
    HTTPS_PROXY_ENV
        .iter()
        .chain(&HTTP_PROXY_ENV)
        .chain(&NO_PROXY_ENV)
        .any(|v| *v == name)
}

/// A raw value with its origin.
#[derive(Debug, Clone)]
pub(super) struct RawValue {
    pub(super) value: Raw,
    pub(super) source: Source,
}

/// Raw values: strings from any source, or a JSON boolean from the config file.
#[derive(Clone)]
pub(super) enum Raw {
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

        let new_passphrase = from_env_layers(NEW_PASSPHRASE_ENV).map(|(v, _)| SecretString::new(v));
        let kdf = from_env_layers(KDF_ENV);
        let first_of = |names: [&str; 2]| names.into_iter().find_map(&from_env_layers);
        let proxies = Proxies {
            https: first_of(HTTPS_PROXY_ENV),
            http: first_of(HTTP_PROXY_ENV),
            no_proxy: first_of(NO_PROXY_ENV).map(|(v, _)| v),
        };

        Ok(Self {
            values,
            new_passphrase,
            kdf,
            proxies,
            tenant_profile,
            file,
            file_problems: parsed.problems,
            warnings,
            data_dir: inputs.data_dir.clone(),
            cwd: inputs.cwd.clone(),
            // The process environment only: the Job controller sets it per pod.
            job_completion_index: inputs.env.get(JOB_COMPLETION_INDEX_ENV).cloned(),
            multi_tenant_names: parsed.tenants.keys().cloned().collect(),
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
        (f, Value::Bool(b)) if f.is_bool() => Raw::Bool(b),
        (f, _) if f.is_bool() => {
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
