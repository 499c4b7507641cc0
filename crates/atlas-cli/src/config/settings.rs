//! The validated settings a command receives, and the checks that build them from the
//! merged sources (every problem collected, none fatal on its own).

use std::path::PathBuf;
use std::time::Duration;

use atlas_core::SecretString;
use atlas_net::NetOptions;
use url::Url;

use super::field::{Field, HTTP_PROXY_ENV, HTTPS_PROXY_ENV, TENANT_SELECTOR_ENV};
use super::problem::Problem;
use super::sources::Source;
use super::sources::{Raw, RawValue};
use super::validate::{
    bucket_rule, is_guid, parse_bool, validate_bucket, validate_scope, validate_tenant_id,
    validate_url,
};
use super::{Config, DEFAULT_S3_REGION, MIN_PASSPHRASE_CHARS};

/// The repository a command works on.
#[derive(Debug, Clone)]
pub struct RepositorySettings {
    /// The tenant, normalized to lower case.
    pub tenant_id: String,
    /// Where the repository lives.
    pub store: StoreSettings,
    /// The passphrase that unwraps the data key.
    pub passphrase: SecretString,
    /// Bytes of the memory budget backup runs draw from (`ATLAS_MEMORY_BUDGET_MIB`).
    pub memory_budget: u64,
}

/// Bounds of `memory_budget_mib`: below 16 MiB packs would be sealed tiny; above 64 GiB
/// is surely a typo.
const MIN_MEMORY_BUDGET_MIB: u64 = 16;
const MAX_MEMORY_BUDGET_MIB: u64 = 64 << 10;

impl RepositorySettings {
    /// Warnings to show at startup of a command that uses this repository.
    pub fn warnings(&self) -> Vec<String> {
        passphrase_warning(&self.passphrase, "ATLAS_ENCRYPTION_PASSPHRASE")
            .into_iter()
            .collect()
    }
}

/// The warning for a short passphrase, if it is short.
pub fn passphrase_warning(passphrase: &SecretString, name: &str) -> Option<String> {
    (passphrase.char_len() < MIN_PASSPHRASE_CHARS).then(|| {
        format!(
            "{name} is shorter than {MIN_PASSPHRASE_CHARS} characters; anyone who obtains the \
             repository can try to guess it offline. Use at least 5 random words or 20+ random characters."
        )
    })
}

/// The storage backend of a repository.
// Built once per command and moved around by reference: the size difference between the
// variants costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
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
    pub secret_key: SecretString,
    /// Region.
    pub region: String,
    /// Bucket name (default `atlas-<tenant>`).
    pub bucket: String,
    /// Addressing: `Some(true)` path-style, `Some(false)` virtual-hosted, `None` the
    /// store's automatic choice (path-style except on AWS's own endpoints).
    pub force_path_style: Option<bool>,
    /// Send `Content-MD5` with uploads instead of a CRC32C (`ATLAS_S3_CONTENT_MD5`).
    pub content_md5: bool,
    /// Trust and proxies.
    pub net: NetOptions,
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
    /// Token scope (`ATLAS_GRAPH_SCOPE`); `None` lets the Graph client use Graph's
    /// resource for the endpoint's cloud.
    pub graph_scope: Option<String>,
    /// How long one Graph request may take (`ATLAS_GRAPH_TIMEOUT`, seconds).
    pub request_timeout: Duration,
    /// Trust and proxies.
    pub net: NetOptions,
}

/// Default for `ATLAS_GRAPH_TIMEOUT`: generous, because a large message's MIME streams
/// within one request.
pub const DEFAULT_GRAPH_TIMEOUT: Duration = Duration::from_secs(120);

/// Application credential for the client credentials flow.
#[derive(Debug, Clone)]
pub enum Credential {
    /// A client secret (its Value, not its ID).
    Secret(SecretString),
    /// A certificate and its private key, both PEM files.
    Certificate {
        /// Certificate path.
        certificate: PathBuf,
        /// Private key path.
        key: PathBuf,
    },
}

impl Config {
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

    pub(super) fn check_repository(
        &self,
        problems: &mut Vec<Problem>,
    ) -> Option<RepositorySettings> {
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
        let memory_budget = self.optional(
            Field::MemoryBudget,
            || Some(atlas_core::repo::DEFAULT_MEMORY_BUDGET),
            problems,
            |text| match text.trim().parse::<u64>() {
                Ok(mib) if (MIN_MEMORY_BUDGET_MIB..=MAX_MEMORY_BUDGET_MIB).contains(&mib) => {
                    Ok(mib << 20)
                }
                _ => Err(format!(
                    "expected a number of MiB between {MIN_MEMORY_BUDGET_MIB} and {MAX_MEMORY_BUDGET_MIB}"
                )),
            },
        );
        Some(RepositorySettings {
            tenant_id: tenant?,
            store: store?,
            passphrase: passphrase?,
            memory_budget: memory_budget?,
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
        let content_md5 = match self.values.get(&Field::S3ContentMd5) {
            Some(RawValue {
                value: Raw::Bool(b),
                ..
            }) => Some(*b),
            _ => self.optional(
                Field::S3ContentMd5,
                || Some(false),
                problems,
                |s| parse_bool(s).ok_or_else(|| "expected true or false".to_owned()),
            ),
        };
        // Unset means "let the store choose": `Some(None)`; a problem is `None`.
        let force_path_style = if let Some(RawValue {
            value: Raw::Bool(b),
            ..
        }) = self.values.get(&Field::S3ForcePathStyle)
        {
            Some(Some(*b))
        } else {
            self.optional(
                Field::S3ForcePathStyle,
                || Some(None),
                problems,
                |s| {
                    parse_bool(s)
                        .map(Some)
                        .ok_or_else(|| "expected true or false".to_owned())
                },
            )
        };
        let net = self.check_net(problems);
        let bucket = if self.text(Field::S3Bucket).is_some() {
            self.optional(
                Field::S3Bucket,
                || None,
                problems,
                |name| validate_bucket(name).map(|()| name.to_owned()),
            )
        } else {
            // The default is atlas-store's (`atlas-<tenant>`), checked by the same rules, so
            // a tenant whose default name S3 would refuse fails here, not at the first request.
            match tenant.map(|t| bucket_rule(atlas_store::s3::tenant_bucket_name(t))) {
                Some(Ok(name)) => Some(name),
                Some(Err(rule)) => {
                    problems.push(Problem {
                        field: Field::S3Bucket.key().to_owned(),
                        message: format!(
                            "the default bucket of this tenant, atlas-<tenant>, is not valid ({rule}); set {} or \"{}\" in the config file",
                            Field::S3Bucket.env(),
                            Field::S3Bucket.key()
                        ),
                    });
                    None
                }
                None => None,
            }
        };
        Some(S3Settings {
            endpoint: endpoint?,
            access_key: access_key?,
            secret_key: secret_key?,
            region,
            bucket: bucket?,
            force_path_style: force_path_style?,
            content_md5: content_md5?,
            net: net?,
        })
    }

    pub(super) fn check_graph(&self, problems: &mut Vec<Problem>) -> Option<GraphSettings> {
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
            || default_url(atlas_graph::DEFAULT_GRAPH_ENDPOINT),
            problems,
            validate_url,
        );
        let authority_host = self.optional(
            Field::AuthorityHost,
            || default_url(atlas_graph::DEFAULT_AUTHORITY_HOST),
            problems,
            validate_url,
        );
        let graph_scope = self.optional(
            Field::GraphScope,
            || Some(None),
            problems,
            |text| validate_scope(text).map(Some),
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
        let net = self.check_net(problems);
        Some(GraphSettings {
            tenant_id: tenant?,
            client_id: client_id?,
            credential: credential?,
            graph_endpoint: graph_endpoint?,
            authority_host: authority_host?,
            graph_scope: graph_scope?,
            request_timeout: request_timeout?,
            net: net?,
        })
    }

    /// Trust and proxies, shared by S3 and Graph: `ATLAS_CA_FILE` must name a readable
    /// file; proxy URLs must be http(s) URLs. Proxy values are never shown (they may carry
    /// a user and password).
    pub(super) fn check_net(&self, problems: &mut Vec<Problem>) -> Option<NetOptions> {
        let ca_files = self.optional(
            Field::CaFile,
            || Some(Vec::new()),
            problems,
            |path| {
                let path = self.cwd.join(path);
                if path.is_file() {
                    Ok(vec![path])
                } else {
                    Err(format!("file {} does not exist", path.display()))
                }
            },
        );
        let proxy = |found: &Option<(String, Source)>, key: &str, env: &str| {
            let Some((raw, source)) = found else {
                return Ok(None);
            };
            match Url::parse(raw.trim()) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                    Ok(Some(url))
                }
                _ => Err(Problem {
                    field: key.to_owned(),
                    message: format!(
                        "invalid ({env} from {source}): expected an http:// or https:// proxy URL (value not shown)"
                    ),
                }),
            }
        };
        let mut take = |r: Result<Option<Url>, Problem>| match r {
            Ok(url) => Some(url),
            Err(problem) => {
                problems.push(problem);
                None
            }
        };
        let for_https = take(proxy(
            &self.proxies.https,
            "https_proxy",
            HTTPS_PROXY_ENV[0],
        ));
        let for_plain = take(proxy(&self.proxies.http, "http_proxy", HTTP_PROXY_ENV[0]));
        Some(NetOptions {
            ca_files: ca_files?,
            https_proxy: for_https?,
            http_proxy: for_plain?,
            no_proxy: self.proxies.no_proxy.clone(),
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
                    Ok(Credential::Secret(SecretString::new(value.to_owned())))
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
