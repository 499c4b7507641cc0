//! Configuration and its validation: everything checked before the first request.
//!
//! [`S3Config`] is built with [`S3Config::for_tenant`] or [`S3Config::shared_bucket`] and
//! adjusted field by field; [`S3Store::new`](super::S3Store::new) validates it into an
//! [`Endpoint`] (scheme, authority, addressing style) that the client uses for every URL.

use std::time::Duration;

use atlas_core::ports::StoreKey;
use atlas_net::NetOptions;

use super::naming::{tenant_bucket_name, validate_bucket_name};
use super::sigv4::Credentials;

pub(super) const MIB: u64 = 1024 * 1024;
/// S3's smallest allowed part (all but the last).
pub(super) const MIN_PART_SIZE: u64 = 5 * MIB;

/// Configuration problems found before any request is sent. The crate's one error enum:
/// everything that happens on the wire is a [`StoreError`](atlas_core::ports::StoreError).
///
/// Messages name the setting by meaning, not by the CLI's variable: a program embedding
/// the store has its own names; the CLI adds its `ATLAS_S3_*` hints when it shows these.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum S3ConfigError {
    /// A bucket name S3 would refuse.
    #[error(
        "invalid S3 bucket name {name:?}: {rule} (choose a valid bucket name; tenants can \
         share one bucket under per-tenant key prefixes)"
    )]
    InvalidBucketName {
        /// The name.
        name: String,
        /// The rule it breaks.
        rule: String,
    },
    /// The endpoint is not an `http(s)://host[:port]` URL.
    #[error("invalid S3 endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The configured endpoint.
        endpoint: String,
        /// What is wrong.
        reason: String,
    },
    /// A key prefix outside the key alphabet.
    #[error(
        "invalid S3 key prefix {prefix:?}: use /-separated segments of letters, digits and ._@+=-"
    )]
    InvalidPrefix {
        /// The prefix.
        prefix: String,
    },
    /// Another setting out of range.
    #[error("invalid S3 setting: {0}")]
    InvalidSetting(String),
    /// The network settings (CA files, proxy) cannot be used.
    #[error("S3 network settings: {0}")]
    Network(#[from] atlas_net::NetError),
}

/// How the bucket appears in request URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Addressing {
    /// Virtual-hosted on AWS's own endpoints (no endpoint set, or a host under
    /// `amazonaws.com`) when the bucket name is a valid host label; path-style everywhere
    /// else. That is boto3's rule (a custom `endpoint_url` means path style unless
    /// virtual is asked for) and covers the AWS SDKs' (an IP-address endpoint means path
    /// style): virtual hosting needs a wildcard DNS name, which an IP address, `localhost`
    /// or a self-hosted server (MinIO, Ceph RGW, Garage — usually with a port) does not
    /// have, and over https a bucket name with dots would not match the wildcard
    /// certificate.
    #[default]
    Auto,
    /// `https://endpoint/bucket/key`.
    Path,
    /// `https://bucket.endpoint/key`.
    VirtualHosted,
}

/// Where and how to reach the bucket. Build with [`S3Config::for_tenant`] (one bucket per
/// tenant, the default) or [`S3Config::shared_bucket`] (one bucket, a key prefix per
/// tenant), then adjust fields.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// `http(s)://host[:port]`; `None` means AWS (`https://s3.{region}.amazonaws.com`).
    pub endpoint: Option<String>,
    /// Signing region (`us-east-1` unless the server says otherwise).
    pub region: String,
    /// Static credentials.
    pub credentials: Credentials,
    /// Bucket name (validated).
    pub bucket: String,
    /// Prefix put before every key (empty, or `/`-terminated segments).
    pub key_prefix: String,
    /// Path-style URLs (`endpoint/bucket/key`) or virtual-hosted ones
    /// (`bucket.endpoint/key`); [`Addressing::Auto`] picks (see there).
    pub addressing: Addressing,
    /// Most HTTP requests in flight at once.
    pub max_concurrency: usize,
    /// Objects larger than this go up as multipart uploads.
    pub multipart_threshold: u64,
    /// Part size of multipart uploads (at least 5 MiB; grown if an object would need
    /// more than 10,000 parts).
    pub part_size: u64,
    /// Attempts per request, including the first (at least 1).
    pub max_attempts: u32,
    /// First backoff step; doubled per retry (full jitter), capped at `max_retry_delay`.
    pub retry_base_delay: Duration,
    /// Largest single backoff step (before jitter).
    pub max_retry_delay: Duration,
    /// Upper bound on the waiting and attempts of one request: a `Retry-After` or backoff
    /// that would overrun it ends the request instead.
    pub max_retry_time: Duration,
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Longest silence while reading a response.
    pub read_timeout: Duration,
    /// Trust (extra CA files) and proxies.
    pub net: NetOptions,
    /// Send `Content-MD5` with object data instead of a CRC32C checksum, for S3-compatible
    /// servers that do not accept `x-amz-checksum-crc32c` (S3 itself, MinIO, Ceph RGW and
    /// moto do). Costs an MD5 pass over every upload.
    pub content_md5: bool,
}

impl S3Config {
    fn with_bucket(
        bucket: String,
        key_prefix: String,
        region: &str,
        credentials: Credentials,
    ) -> Self {
        Self {
            endpoint: None,
            region: region.to_string(),
            credentials,
            bucket,
            key_prefix,
            addressing: Addressing::Auto,
            max_concurrency: 16,
            multipart_threshold: 64 * MIB,
            part_size: 16 * MIB,
            max_attempts: 6,
            retry_base_delay: Duration::from_millis(200),
            max_retry_delay: Duration::from_secs(20),
            max_retry_time: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(120),
            net: NetOptions::default(),
            content_md5: false,
        }
    }

    /// The default layout: bucket `atlas-{tenant}` (lower-cased, validated), keys at its
    /// root — the layout Atlas 1.x used.
    pub fn for_tenant(
        tenant: &str,
        region: &str,
        credentials: Credentials,
    ) -> Result<Self, S3ConfigError> {
        Ok(Self::with_bucket(
            tenant_bucket_name(tenant)?,
            String::new(),
            region,
            credentials,
        ))
    }

    /// An explicit bucket shared by tenants: keys live under `{tenant}/` (lower-cased).
    pub fn shared_bucket(
        bucket: &str,
        tenant: &str,
        region: &str,
        credentials: Credentials,
    ) -> Result<Self, S3ConfigError> {
        validate_bucket_name(bucket)?;
        let prefix = format!("{}/", tenant.trim().to_ascii_lowercase());
        validate_prefix(&prefix)?;
        Ok(Self::with_bucket(
            bucket.to_string(),
            prefix,
            region,
            credentials,
        ))
    }

    /// Set a custom endpoint (S3-compatible server).
    #[must_use]
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Force path-style (`true`) or virtual-hosted (`false`) addressing instead of
    /// [`Addressing::Auto`].
    #[must_use]
    pub fn path_style(mut self, path_style: bool) -> Self {
        self.addressing = if path_style {
            Addressing::Path
        } else {
            Addressing::VirtualHosted
        };
        self
    }
}

pub(super) fn validate_prefix(prefix: &str) -> Result<(), S3ConfigError> {
    if prefix.is_empty() {
        return Ok(());
    }
    let valid = prefix
        .strip_suffix('/')
        .is_some_and(|p| StoreKey::new(p).is_ok());
    if valid {
        Ok(())
    } else {
        Err(S3ConfigError::InvalidPrefix {
            prefix: prefix.to_string(),
        })
    }
}

/// The validated endpoint: what every URL and message is built from.
#[derive(Debug, Clone)]
pub(super) struct Endpoint {
    /// `http` or `https`.
    pub scheme: String,
    /// `host[:port]` of the endpoint (without the bucket).
    pub authority: String,
    /// Shown in messages: `scheme://authority`.
    pub shown: String,
    /// Path-style addressing, resolved from [`Addressing`].
    pub path_style: bool,
    /// Sign requests with `UNSIGNED-PAYLOAD` instead of the body's SHA-256: over TLS (which
    /// already protects the body in transit) or to a loopback address (no transit at all).
    /// The body's integrity is checked by S3 through its checksum header either way.
    pub unsigned_payload: bool,
}

impl Endpoint {
    /// Check `config` and derive the endpoint (AWS's regional one when none is set).
    pub fn of(config: &S3Config) -> Result<Self, S3ConfigError> {
        validate_bucket_name(&config.bucket)?;
        validate_prefix(&config.key_prefix)?;
        if config.part_size < MIN_PART_SIZE {
            return Err(S3ConfigError::InvalidSetting(format!(
                "part size {} is below S3's minimum of 5 MiB",
                config.part_size
            )));
        }
        if config.multipart_threshold < config.part_size {
            return Err(S3ConfigError::InvalidSetting(
                "multipart threshold must be at least the part size".into(),
            ));
        }
        if config.max_concurrency == 0 || config.max_attempts == 0 {
            return Err(S3ConfigError::InvalidSetting(
                "concurrency and attempts must be at least 1".into(),
            ));
        }
        let endpoint = config
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", config.region));
        let bad = |reason: &str| S3ConfigError::InvalidEndpoint {
            endpoint: endpoint.clone(),
            reason: reason.to_string(),
        };
        let url = url::Url::parse(&endpoint).map_err(|e| bad(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("the scheme must be http or https"));
        }
        if url.path() != "/" && !url.path().is_empty() {
            return Err(bad("an endpoint has no path; set the bucket separately"));
        }
        if url.query().is_some() || !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                "an endpoint has no query or user info; the access and secret keys are separate settings",
            ));
        }
        let host = url.host().ok_or_else(|| bad("no host"))?;
        let host_str = url.host_str().ok_or_else(|| bad("no host"))?;
        let authority = match url.port() {
            Some(port) => format!("{host_str}:{port}"),
            None => host_str.to_string(),
        };
        let path_style = match config.addressing {
            Addressing::Path => true,
            Addressing::VirtualHosted => false,
            Addressing::Auto => {
                let aws = match host {
                    url::Host::Domain(d) => {
                        let d = d.to_ascii_lowercase();
                        d.ends_with(".amazonaws.com") || d.ends_with(".amazonaws.com.cn")
                    }
                    url::Host::Ipv4(_) | url::Host::Ipv6(_) => false,
                };
                let dots_over_https = url.scheme() == "https" && config.bucket.contains('.');
                !aws || dots_over_https
            }
        };
        let loopback = match host {
            url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
            url::Host::Ipv4(ip) => ip.is_loopback(),
            url::Host::Ipv6(ip) => ip.is_loopback(),
        };
        Ok(Self {
            scheme: url.scheme().to_string(),
            authority,
            shown: format!("{}://{}", url.scheme(), url.authority()),
            path_style,
            unsigned_payload: url.scheme() == "https" || loopback,
        })
    }
}
