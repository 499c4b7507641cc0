//! A [`BlobStore`] on S3 or an S3-compatible server (MinIO, Ceph, Wasabi, moto…), with the
//! Object Lock primitives Atlas needs for immutable backups.
//!
//! # Why no SDK
//!
//! `aws-sdk-s3` takes minutes to compile on a small machine and brings the whole smithy
//! runtime; `rusty-s3` presigns URLs, which leaves the `x-amz-object-lock-*`,
//! `If-None-Match` and `Content-MD5` headers outside the signature, and has no Object
//! Lock or version operations. Atlas needs about fifteen S3 calls, so this module signs
//! requests itself with SigV4 in headers ([`sigv4`], ~100 lines over the `hmac`/`sha2`
//! crates the workspace already builds, pinned by AWS's published examples), sends them
//! with the workspace's `reqwest` (rustls), and reads the XML with `quick-xml`.
//!
//! # Behaviour
//!
//! - **Integrity**: every upload carries `Content-MD5` and a signed SHA-256 of the body
//!   (`x-amz-content-sha256`), so S3 refuses a body damaged in transit.
//! - **Create-if-absent** is `If-None-Match: *` (412 → [`StoreError::AlreadyExists`]).
//!   Some servers ignore that header; [`S3Store::probe_conditional_writes`] detects it
//!   (storage-check and repository init call it) and from then on `Create` fails with
//!   `Unsupported` instead of silently racing. A `Create` retried after a lost response
//!   that then meets 412 compares the stored ETag with its own MD5, so its own first
//!   attempt is not mistaken for a competitor.
//! - **Large objects** (above [`S3Config::multipart_threshold`], 64 MiB by default) go up
//!   as a multipart upload, parts in parallel, each with its own `Content-MD5`; any
//!   failure aborts the upload so no parts linger.
//! - **Parallelism** is bounded by one semaphore per store over every HTTP request.
//! - **Retries** with exponential backoff and jitter: 5xx, `SlowDown`/503, 429,
//!   `RequestTimeout`, timeouts and connection errors — for idempotent requests; the
//!   multipart POSTs only when the server says it did nothing (503/429) or the connection
//!   was never made.
//! - **Errors** are translated once, here, into [`StoreError`] with a message naming the
//!   endpoint and bucket and what to check — unreachable endpoint, unknown access key,
//!   wrong secret, clock skew, missing bucket, wrong region, access denied — never a
//!   secret. A missing bucket is never reported as a missing object (that would make a
//!   misconfigured repository look empty).
//! - **Object Lock**: see the trait docs in `atlas_core::ports::blob_store` for the
//!   semantics; `delete` on a versioned bucket deletes every version (oldest first, the
//!   current one last) and reports versions that are still retained as
//!   [`StoreError::Retained`]. Retention is read from `HEAD` (`x-amz-object-lock-*`
//!   headers, which need `s3:GetObjectRetention`), not `GET ?retention`, because some
//!   S3-compatible servers (moto) do not implement the latter.
//!   Governance retention is never bypassed: Atlas sends no
//!   `x-amz-bypass-governance-retention`.
//! - **Server-side copy** (`CopyObject`, [`BlobStore::copy_from`]) between two buckets
//!   of the same endpoint reached with the same access key: replication between them
//!   then moves no object bytes through Atlas. Another endpoint or access key, an object
//!   above S3's 5 GiB single-copy limit or a server without `CopyObject` give `Ok(false)`
//!   (the caller reads and writes instead). `Create` sends `If-None-Match: *` *and* checks
//!   with `HEAD` first, because some servers (moto) ignore the condition on a copy; a
//!   `200 OK` whose body is an `<Error>` (S3 may fail a copy after starting the answer) is
//!   an error, not a copy.

pub mod check;
mod naming;
pub mod sigv4;
mod xml;

use std::fmt::Write as _;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use atlas_core::ports::blob_store::{CopySource, DefaultRetention, LockStatus};
use atlas_core::ports::{
    BlobStore, LockMode, ObjectMeta, PutMode, PutOptions, Retention, StoreError, StoreKey,
};
use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use md5::{Digest as _, Md5};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use tokio::sync::{OnceCell, Semaphore};
use tokio::task::JoinSet;

pub use check::{LockProbe, StorageCheckReport, storage_check};
pub use naming::{tenant_bucket_name, validate_bucket_name};
pub use sigv4::Credentials;

const MIB: u64 = 1024 * 1024;
/// S3's smallest allowed part (all but the last).
const MIN_PART_SIZE: u64 = 5 * MIB;
/// S3's largest part count.
const MAX_PARTS: u64 = 10_000;

/// Configuration problems found before any request is sent. The crate's one error enum:
/// everything that happens on the wire is a [`StoreError`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum S3ConfigError {
    /// A bucket name S3 would refuse.
    #[error(
        "invalid S3 bucket name {name:?}: {rule} (set ATLAS_S3_BUCKET to a valid bucket; \
         tenants then share it under per-tenant key prefixes)"
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
    /// Path-style URLs (`endpoint/bucket/key`) instead of virtual-hosted
    /// (`bucket.endpoint/key`). Most self-hosted servers need path style.
    pub path_style: bool,
    /// Most HTTP requests in flight at once.
    pub max_concurrency: usize,
    /// Objects larger than this go up as multipart uploads.
    pub multipart_threshold: u64,
    /// Part size of multipart uploads (at least 5 MiB; grown if an object would need
    /// more than 10,000 parts).
    pub part_size: u64,
    /// Attempts per request, including the first (at least 1).
    pub max_attempts: u32,
    /// First backoff delay; doubled per retry (with jitter), capped at 20 s.
    pub retry_base_delay: Duration,
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Longest silence while reading a response.
    pub read_timeout: Duration,
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
            path_style: false,
            max_concurrency: 16,
            multipart_threshold: 64 * MIB,
            part_size: 16 * MIB,
            max_attempts: 6,
            retry_base_delay: Duration::from_millis(200),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(120),
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

    /// Choose path-style addressing.
    #[must_use]
    pub fn path_style(mut self, path_style: bool) -> Self {
        self.path_style = path_style;
        self
    }
}

fn validate_prefix(prefix: &str) -> Result<(), S3ConfigError> {
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

/// What [`S3Store::ensure_bucket`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketSetup {
    /// The bucket was created now (false: it existed).
    pub created: bool,
    /// Object Lock is enabled on the bucket.
    pub object_lock: bool,
    /// Versioning is enabled on the bucket.
    pub versioning: bool,
    /// Lifecycle rules were applied (only on a bucket created now); `Err` carries the
    /// server's reason when that best-effort step failed.
    pub lifecycle: Option<Result<(), String>>,
}

/// One version (or delete marker) of a key on a versioned bucket, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    /// S3 version id (`null` on a never-versioned object).
    pub version_id: String,
    /// This is the current version.
    pub is_latest: bool,
    /// A delete marker rather than data.
    pub delete_marker: bool,
    /// Size in bytes (0 for delete markers).
    pub size: u64,
}

/// The S3 backend. Cheap to clone (shared connection pool, semaphore and caches).
#[derive(Debug, Clone)]
pub struct S3Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cfg: S3Config,
    http: reqwest::Client,
    scheme: String,
    /// `host[:port]` of the endpoint (without the bucket).
    authority: String,
    /// Shown in messages: the endpoint URL.
    endpoint_shown: String,
    permits: Semaphore,
    /// Bucket versioning, read once: whether a delete must remove versions.
    versioned: OnceCell<bool>,
    /// The bucket was seen to exist, so a 404 on HEAD means a missing object.
    bucket_seen: AtomicBool,
    /// Conditional writes: 0 not probed, 1 honoured, 2 ignored by the server.
    conditional: AtomicU8,
}

/// A request before signing.
struct Req {
    method: Method,
    /// Full S3 key (with the prefix) or `None` for a bucket-level request.
    key: Option<String>,
    /// Raw (unencoded) query pairs.
    query: Vec<(String, String)>,
    /// Extra headers, lower-case names.
    headers: Vec<(String, String)>,
    body: Bytes,
    idempotent: bool,
}

impl Req {
    fn new(method: Method, key: Option<String>) -> Self {
        let idempotent = method != Method::POST;
        Self {
            method,
            key,
            query: Vec::new(),
            headers: Vec::new(),
            body: Bytes::new(),
            idempotent,
        }
    }

    fn query(mut self, name: &str, value: &str) -> Self {
        self.query.push((name.to_string(), value.to_string()));
        self
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    fn body(mut self, body: Bytes) -> Self {
        self.body = body;
        self
    }

    /// Attach a body with its Content-MD5 (S3 requires it on several configuration calls
    /// and Atlas sends it on every upload).
    fn body_with_md5(self, body: Bytes) -> Self {
        let md5 = content_md5(&body);
        self.header("content-md5", md5).body(body)
    }
}

/// A response, read whole.
struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    /// Attempts it took (a `Create` that met 412 after a retry checks whether the object
    /// is its own).
    attempts: u32,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn error(&self) -> xml::ErrorBody {
        xml::parse_error(&self.body)
    }
}

/// Base64 MD5 of a body, for `Content-MD5`.
pub fn content_md5(body: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Md5::digest(body))
}

/// S3's date format for retention (`2030-01-02T03:04:05Z`), rounded *up* to whole seconds
/// so formatting can never shorten a retention.
fn retain_until_str(at: DateTime<Utc>) -> String {
    let rounded = if at.timestamp_subsec_nanos() > 0 {
        at + chrono::Duration::nanoseconds(1_000_000_000 - i64::from(at.timestamp_subsec_nanos()))
    } else {
        at
    };
    rounded.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn mode_str(mode: LockMode) -> &'static str {
    match mode {
        LockMode::Governance => "GOVERNANCE",
        LockMode::Compliance => "COMPLIANCE",
    }
}

fn parse_mode(s: &str) -> Option<LockMode> {
    match s.to_ascii_uppercase().as_str() {
        "GOVERNANCE" => Some(LockMode::Governance),
        "COMPLIANCE" => Some(LockMode::Compliance),
        _ => None,
    }
}

fn mode_strength(mode: LockMode) -> u8 {
    match mode {
        LockMode::Governance => 1,
        LockMode::Compliance => 2,
    }
}

fn retention_headers(r: &Retention) -> [(String, String); 2] {
    [
        ("x-amz-object-lock-mode".into(), mode_str(r.mode).into()),
        (
            "x-amz-object-lock-retain-until-date".into(),
            retain_until_str(r.retain_until),
        ),
    ]
}

fn retention_from_headers(resp: &Resp) -> Option<Retention> {
    let mode = parse_mode(resp.header("x-amz-object-lock-mode")?)?;
    let until = DateTime::parse_from_rfc3339(resp.header("x-amz-object-lock-retain-until-date")?)
        .ok()?
        .with_timezone(&Utc);
    Some(Retention {
        mode,
        retain_until: until,
    })
}

fn io_error(kind: std::io::ErrorKind, key: &str, message: String) -> StoreError {
    StoreError::Io {
        key: key.to_string(),
        source: std::io::Error::new(kind, message),
    }
}

impl S3Store {
    /// A store for `config`. Sends nothing yet; the first request (or
    /// [`S3Store::ensure_bucket`]) finds out whether the bucket is reachable.
    pub fn new(config: S3Config) -> Result<Self, S3ConfigError> {
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
                "an endpoint has no query or user info; credentials go in ATLAS_S3_ACCESS_KEY/ATLAS_S3_SECRET_KEY",
            ));
        }
        let host = url.host_str().ok_or_else(|| bad("no host"))?;
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .build()
            .map_err(|e| S3ConfigError::InvalidSetting(format!("HTTP client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                scheme: url.scheme().to_string(),
                authority,
                endpoint_shown: format!("{}://{}", url.scheme(), url.authority()),
                permits: Semaphore::new(config.max_concurrency),
                http,
                cfg: config,
                versioned: OnceCell::new(),
                bucket_seen: AtomicBool::new(false),
                conditional: AtomicU8::new(0),
            }),
        })
    }

    /// The bucket name.
    pub fn bucket(&self) -> &str {
        &self.inner.cfg.bucket
    }

    /// The per-tenant key prefix (may be empty).
    pub fn key_prefix(&self) -> &str {
        &self.inner.cfg.key_prefix
    }

    /// Create the bucket if it does not exist. With `lock`, a bucket created now gets
    /// Object Lock (which also enables versioning), and an existing bucket must already
    /// have it — otherwise this fails with `Unsupported` before anything is written, as
    /// the spec requires for runs that asked for locking. A created bucket also gets
    /// lifecycle rules (abort incomplete multipart uploads after 7 days, remove expired
    /// delete markers), best effort: their failure is reported, not fatal.
    pub async fn ensure_bucket(&self, lock: bool) -> Result<BucketSetup, StoreError> {
        self.inner.ensure_bucket(lock).await
    }

    /// Find out whether the server honours `If-None-Match: *` on PUT, by creating a
    /// probe object twice under `{prefix}_atlas/probe/`. Remembers the answer: when the
    /// server ignores the header, every later `PutMode::Create` fails with `Unsupported`
    /// instead of racing silently.
    pub async fn probe_conditional_writes(&self) -> Result<bool, StoreError> {
        self.inner.probe_conditional_writes().await
    }

    /// All versions and delete markers of `key`, newest first (one entry with version id
    /// `null` on an unversioned bucket).
    pub async fn versions(&self, key: &StoreKey) -> Result<Vec<ObjectVersion>, StoreError> {
        self.inner.versions(&self.inner.full_key(key)).await
    }

    /// Remove every version of `key` with `x-amz-bypass-governance-retention`: only for
    /// objects Atlas itself wrote under GOVERNANCE to test the lock (the storage-check
    /// probe). Needs `s3:BypassGovernanceRetention`; a COMPLIANCE version stays, as it must.
    /// Returns whether nothing of `key` is left.
    pub async fn delete_bypassing_governance(&self, key: &StoreKey) -> Result<bool, StoreError> {
        let mut all_gone = true;
        for version in self.versions(key).await? {
            let resp = self
                .inner
                .send(
                    Req::new(Method::DELETE, Some(self.inner.full_key(key)))
                        .query("versionId", &version.version_id)
                        .header("x-amz-bypass-governance-retention", "true"),
                )
                .await?;
            if !(resp.status.is_success() || resp.status == StatusCode::NOT_FOUND) {
                all_gone = false;
            }
        }
        Ok(all_gone && self.versions(key).await?.is_empty())
    }

    /// The retention of one version of `key` (`None` if it has none).
    pub async fn version_retention(
        &self,
        key: &StoreKey,
        version_id: &str,
    ) -> Result<Option<Retention>, StoreError> {
        let resp = self
            .inner
            .send(
                Req::new(Method::HEAD, Some(self.inner.full_key(key)))
                    .query("versionId", version_id),
            )
            .await?;
        if resp.status.is_success() {
            return Ok(retention_from_headers(&resp));
        }
        Err(self.inner.explain(key.as_str(), &resp, "read retention"))
    }
}

impl Inner {
    fn full_key(&self, key: &StoreKey) -> String {
        format!("{}{}", self.cfg.key_prefix, key.as_str())
    }

    /// "bucket b at http://host:port" — for messages.
    fn place(&self) -> String {
        format!("bucket {} at {}", self.cfg.bucket, self.endpoint_shown)
    }

    fn host(&self) -> String {
        if self.cfg.path_style {
            self.authority.clone()
        } else {
            format!("{}.{}", self.cfg.bucket, self.authority)
        }
    }

    fn canonical_uri(&self, key: Option<&str>) -> String {
        let mut path = String::new();
        if self.cfg.path_style {
            path.push('/');
            path.push_str(&self.cfg.bucket);
        }
        match key {
            Some(key) => {
                for segment in key.split('/') {
                    path.push('/');
                    path.push_str(&sigv4::uri_encode(segment));
                }
            }
            None if path.is_empty() => path.push('/'),
            None => {}
        }
        path
    }

    /// Send a request, retrying what is safe to retry. Any HTTP response that is not
    /// retryable (or is the last attempt) comes back as `Ok`; the caller reads its status.
    async fn send(&self, req: Req) -> Result<Resp, StoreError> {
        let what = req.key.clone().unwrap_or_else(|| self.cfg.bucket.clone());
        let uri = self.canonical_uri(req.key.as_deref());
        let mut query: Vec<(String, String)> = req
            .query
            .iter()
            .map(|(k, v)| (sigv4::uri_encode(k), sigv4::uri_encode(v)))
            .collect();
        query.sort();
        let query = query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let url = if query.is_empty() {
            format!("{}://{}{}", self.scheme, self.host(), uri)
        } else {
            format!("{}://{}{}?{}", self.scheme, self.host(), uri, query)
        };
        let payload_sha = sigv4::sha256_hex(&req.body);

        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= self.cfg.max_attempts;
            let now = Utc::now();
            let mut headers = req.headers.clone();
            headers.push(("host".into(), self.host()));
            headers.push(("x-amz-date".into(), sigv4::amz_date(now)));
            headers.push(("x-amz-content-sha256".into(), payload_sha.clone()));
            let auth = sigv4::authorization(
                &self.cfg.credentials,
                &self.cfg.region,
                now,
                &sigv4::SignInput {
                    method: req.method.as_str(),
                    canonical_uri: &uri,
                    canonical_query: &query,
                    headers: &headers,
                    payload_sha256: &payload_sha,
                },
            );
            let mut builder = self.http.request(req.method.clone(), &url);
            for (name, value) in &headers {
                if name != "host" {
                    builder = builder.header(name.as_str(), value.as_str());
                }
            }
            builder = builder.header("authorization", auth).body(req.body.clone());

            match self.exchange(builder, attempt).await {
                Ok(resp) => {
                    if !last && Self::retryable_response(&req, &resp) {
                        tracing::debug!(
                            status = resp.status.as_u16(),
                            code = %resp.error().code,
                            attempt,
                            "S3 request will be retried"
                        );
                        self.backoff(attempt).await;
                        continue;
                    }
                    if resp.status.is_success() || resp.status.is_redirection() {
                        self.bucket_seen.store(true, Ordering::Relaxed);
                    }
                    return Ok(resp);
                }
                Err(e) => {
                    let never_sent = e.is_connect();
                    if !last && (req.idempotent || never_sent) {
                        tracing::debug!(attempt, error = %e.without_url(), "S3 request will be retried");
                        self.backoff(attempt).await;
                        continue;
                    }
                    return Err(self.connection_error(&what, &e, attempt));
                }
            }
        }
    }

    /// One HTTP exchange under a concurrency permit, the body read whole.
    async fn exchange(
        &self,
        builder: reqwest::RequestBuilder,
        attempt: u32,
    ) -> Result<Resp, reqwest::Error> {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("invariant: the semaphore is never closed");
        let resp = builder.send().await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await?;
        Ok(Resp {
            status,
            headers,
            body,
            attempts: attempt,
        })
    }

    fn retryable_response(req: &Req, resp: &Resp) -> bool {
        let status = resp.status.as_u16();
        // The server did not act on the request: always safe.
        if status == 503 || status == 429 {
            return true;
        }
        let code = if resp.body.is_empty() {
            String::new()
        } else {
            resp.error().code
        };
        if code == "SlowDown" {
            return true;
        }
        if !req.idempotent {
            return false;
        }
        matches!(status, 500 | 502 | 504)
            || matches!(code.as_str(), "RequestTimeout" | "InternalError")
    }

    async fn backoff(&self, attempt: u32) {
        let base = self.cfg.retry_base_delay.as_millis() as u64;
        let cap = base.saturating_mul(1 << attempt.min(16)).clamp(1, 20_000);
        // Full jitter: racing clients that were throttled together spread out.
        let delay = rand::random::<u64>() % cap + cap / 4;
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }

    fn connection_error(&self, what: &str, e: &reqwest::Error, attempts: u32) -> StoreError {
        let mut cause = String::new();
        let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
        while let Some(s) = source {
            let _ = write!(cause, ": {s}");
            source = s.source();
        }
        if e.is_connect() {
            io_error(
                std::io::ErrorKind::ConnectionRefused,
                what,
                format!(
                    "cannot connect to the S3 endpoint {} ({}) after {attempts} attempt(s){cause} \
                     — check ATLAS_S3_ENDPOINT and that the server is running and reachable",
                    self.endpoint_shown,
                    self.place()
                ),
            )
        } else {
            StoreError::Transient {
                key: what.to_string(),
                detail: format!(
                    "{} after {attempts} attempt(s){cause} ({})",
                    if e.is_timeout() {
                        "timed out"
                    } else {
                        "connection failed"
                    },
                    self.place()
                ),
            }
        }
    }

    /// Translate an error response once. `key` is the Atlas key (or bucket) concerned.
    fn explain(&self, key: &str, resp: &Resp, op: &str) -> StoreError {
        let err = resp.error();
        let status = resp.status.as_u16();
        let place = self.place();
        let server = if err.message.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("{} (HTTP {status})", err.message)
        };
        match err.code.as_str() {
            "NoSuchKey" => StoreError::NotFound {
                key: key.to_string(),
            },
            "NoSuchBucket" => io_error(
                std::io::ErrorKind::NotFound,
                key,
                format!(
                    "{op}: {place} does not exist — check ATLAS_S3_BUCKET, or let Atlas create it \
                     (storage-check / the first backup)"
                ),
            ),
            "InvalidAccessKeyId" => StoreError::AccessDenied {
                key: key.to_string(),
                detail: format!(
                    "{op}: {} does not know the access key id — check ATLAS_S3_ACCESS_KEY ({place})",
                    self.endpoint_shown
                ),
            },
            "SignatureDoesNotMatch" => StoreError::AccessDenied {
                key: key.to_string(),
                detail: format!(
                    "{op}: the request signature was rejected, so the secret key does not belong \
                     to the access key — check ATLAS_S3_SECRET_KEY ({place})"
                ),
            },
            "RequestTimeTooSkewed" => io_error(
                std::io::ErrorKind::Other,
                key,
                format!(
                    "{op}: this machine's clock differs from the S3 server's by more than 15 \
                     minutes, so it refuses signed requests — synchronise the clock (NTP) ({place})"
                ),
            ),
            "AuthorizationHeaderMalformed"
            | "PermanentRedirect"
            | "IllegalLocationConstraintException" => io_error(
                std::io::ErrorKind::Other,
                key,
                format!(
                    "{op}: the bucket is not in region {} or not at this endpoint — check \
                         ATLAS_S3_REGION and ATLAS_S3_ENDPOINT ({place}); server: {server}",
                    self.cfg.region
                ),
            ),
            "AccessDenied" | "AllAccessDisabled" | "AccountProblem" => StoreError::AccessDenied {
                key: key.to_string(),
                detail: format!(
                    "{op}: {server} — the credentials lack permission for this operation ({place})"
                ),
            },
            "InvalidDigest" | "BadDigest" | "XAmzContentSHA256Mismatch" => io_error(
                std::io::ErrorKind::InvalidData,
                key,
                format!("{op}: the upload was damaged in transit and refused: {server} ({place})"),
            ),
            "PreconditionFailed" => StoreError::AlreadyExists {
                key: key.to_string(),
            },
            _ => match status {
                404 if op == "read" => StoreError::NotFound {
                    key: key.to_string(),
                },
                403 => StoreError::AccessDenied {
                    key: key.to_string(),
                    detail: format!("{op}: {server} ({place})"),
                },
                412 => StoreError::AlreadyExists {
                    key: key.to_string(),
                },
                429 | 500..=599 => StoreError::Transient {
                    key: key.to_string(),
                    detail: format!("{op}: {} {server} ({place})", err.code),
                },
                _ => io_error(
                    std::io::ErrorKind::Other,
                    key,
                    format!("{op}: S3 error {} {server} ({place})", err.code),
                ),
            },
        }
    }

    /// A 404 without a body (HEAD) is ambiguous: missing key or missing bucket. Check the
    /// bucket once per process; then every such 404 means "no such key".
    async fn confirm_bucket_exists(&self, key: &str) -> Result<(), StoreError> {
        if self.bucket_seen.load(Ordering::Relaxed) {
            return Ok(());
        }
        let resp = self.send(Req::new(Method::HEAD, None)).await?;
        if resp.status.is_success() {
            self.bucket_seen.store(true, Ordering::Relaxed);
            return Ok(());
        }
        if resp.status == StatusCode::NOT_FOUND {
            return Err(io_error(
                std::io::ErrorKind::NotFound,
                key,
                format!(
                    "{} does not exist — check ATLAS_S3_BUCKET, or let Atlas create it \
                     (storage-check / the first backup)",
                    self.place()
                ),
            ));
        }
        // HEAD bucket has no body either; a GET of the location gives a proper error code.
        let resp = self
            .send(Req::new(Method::GET, None).query("location", ""))
            .await?;
        if resp.status.is_success() {
            self.bucket_seen.store(true, Ordering::Relaxed);
            return Ok(());
        }
        Err(self.explain(key, &resp, "check bucket"))
    }

    async fn head_raw(&self, key: &StoreKey) -> Result<Option<Resp>, StoreError> {
        let resp = self
            .send(Req::new(Method::HEAD, Some(self.full_key(key))))
            .await?;
        if resp.status.is_success() {
            return Ok(Some(resp));
        }
        if resp.status == StatusCode::NOT_FOUND {
            self.confirm_bucket_exists(key.as_str()).await?;
            return Ok(None);
        }
        if resp.body.is_empty() && resp.status == StatusCode::FORBIDDEN {
            // HEAD carries no error code; ask the bucket for a reason (credentials, skew).
            self.confirm_bucket_exists(key.as_str()).await?;
        }
        Err(self.explain(key.as_str(), &resp, "head"))
    }

    async fn head_size(&self, key: &StoreKey) -> Result<Option<u64>, StoreError> {
        let Some(resp) = self.head_raw(key).await? else {
            return Ok(None);
        };
        let size = resp
            .header("content-length")
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| {
                io_error(
                    std::io::ErrorKind::InvalidData,
                    key.as_str(),
                    format!("head: no Content-Length in the response ({})", self.place()),
                )
            })?;
        Ok(Some(size))
    }

    fn conditional_refused(&self) -> Option<StoreError> {
        (self.conditional.load(Ordering::Relaxed) == 2).then(|| StoreError::Unsupported {
            what: format!(
                "create-if-absent: the server at {} ignores If-None-Match, so two writers could \
                 both create the same object; use an S3 server that supports conditional writes",
                self.endpoint_shown
            ),
        })
    }

    fn retention_refused(&self, key: &str, resp: &Resp) -> Option<StoreError> {
        let err = resp.error();
        let lock_related = matches!(
            err.code.as_str(),
            "InvalidRequest" | "InvalidArgument" | "ObjectLockConfigurationNotFoundError"
        ) || err.message.to_ascii_lowercase().contains("object lock");
        (resp.status == StatusCode::BAD_REQUEST && lock_related).then(|| StoreError::Unsupported {
            what: format!(
                "Object Lock retention on {key}: {} refused it ({}) — the bucket must be created \
                 with Object Lock enabled",
                self.place(),
                err.message
            ),
        })
    }

    /// What another store needs to copy from this one server-side.
    fn copy_source(&self) -> CopySource {
        CopySource {
            endpoint: self.endpoint_shown.clone(),
            bucket: self.cfg.bucket.clone(),
            key_prefix: self.cfg.key_prefix.clone(),
            account: self.cfg.credentials.access_key().to_string(),
        }
    }

    /// `CopyObject` from `source` (see the module docs for when it applies).
    async fn copy_from(
        &self,
        source: &CopySource,
        source_key: &StoreKey,
        key: &StoreKey,
        opts: PutOptions,
    ) -> Result<bool, StoreError> {
        let own = self.copy_source();
        if source.endpoint != own.endpoint || source.account != own.account {
            return Ok(false);
        }
        if opts.mode == PutMode::Create {
            if let Some(e) = self.conditional_refused() {
                return Err(e);
            }
            // Servers that ignore If-None-Match on a copy would overwrite silently.
            if self.head_raw(key).await?.is_some() {
                return Err(StoreError::AlreadyExists {
                    key: key.as_str().to_string(),
                });
            }
        }
        let mut copy_source = format!("/{}", sigv4::uri_encode(&source.bucket));
        for segment in format!("{}{}", source.key_prefix, source_key.as_str()).split('/') {
            copy_source.push('/');
            copy_source.push_str(&sigv4::uri_encode(segment));
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = Req::new(Method::PUT, Some(self.full_key(key)))
                .header("x-amz-copy-source", copy_source.clone())
                .header("x-amz-metadata-directive", "COPY");
            if opts.mode == PutMode::Create {
                req = req.header("if-none-match", "*");
                // A 412 after a retried request could be our own first copy: retry only
                // what the server says it did not act on, so a 412 is someone else's.
                req.idempotent = false;
            }
            if let Some(r) = &opts.retention {
                // Some servers (moto) want Content-MD5 on any write that sets retention;
                // for a copy it is the (empty) request body's, which S3 accepts.
                req = req.body_with_md5(Bytes::new());
                req.headers.extend(retention_headers(r));
            }
            let resp = self.send(req).await?;
            if resp.status.is_success() {
                // S3 may answer 200 and then report the copy's failure in the body.
                let err = if resp.body.is_empty() {
                    xml::ErrorBody::default()
                } else {
                    resp.error()
                };
                if err.code.is_empty() {
                    return Ok(true);
                }
                if attempt < self.cfg.max_attempts
                    && matches!(err.code.as_str(), "InternalError" | "SlowDown")
                {
                    self.backoff(attempt).await;
                    continue;
                }
                return Err(StoreError::Transient {
                    key: key.as_str().to_string(),
                    detail: format!(
                        "copy from {}: {} {} ({})",
                        source_key,
                        err.code,
                        err.message,
                        self.place()
                    ),
                });
            }
            return self.copy_failed(source, source_key, key, &opts, &resp);
        }
    }

    /// Translate a failed `CopyObject`: `Ok(false)` when a plain read-and-write can still
    /// do it, the store's usual errors otherwise.
    fn copy_failed(
        &self,
        source: &CopySource,
        source_key: &StoreKey,
        key: &StoreKey,
        opts: &PutOptions,
        resp: &Resp,
    ) -> Result<bool, StoreError> {
        let err = resp.error();
        let message = err.message.to_ascii_lowercase();
        // Above 5 GiB S3 wants UploadPartCopy; "copy source is larger than the maximum
        // allowable size". A server without CopyObject says NotImplemented.
        let too_large = resp.status == StatusCode::BAD_REQUEST
            && matches!(err.code.as_str(), "InvalidRequest" | "EntityTooLarge")
            && (message.contains("larger") || message.contains("size"));
        if too_large || resp.status == StatusCode::NOT_IMPLEMENTED || err.code == "NotImplemented" {
            tracing::debug!(code = %err.code, key = %key, "server-side copy not possible, falling back");
            return Ok(false);
        }
        if err.code == "NoSuchKey" {
            return Err(StoreError::NotFound {
                key: format!("{source_key} (in bucket {})", source.bucket),
            });
        }
        if opts.retention.is_some() {
            if let Some(e) = self.retention_refused(key.as_str(), resp) {
                return Err(e);
            }
        }
        Err(self.explain(key.as_str(), resp, "copy"))
    }

    async fn put(
        self: &Arc<Self>,
        key: &StoreKey,
        data: Bytes,
        opts: PutOptions,
    ) -> Result<(), StoreError> {
        if opts.mode == PutMode::Create {
            if let Some(e) = self.conditional_refused() {
                return Err(e);
            }
        }
        if data.len() as u64 > self.cfg.multipart_threshold {
            return self.put_multipart(key, data, opts).await;
        }
        let md5 = Md5::digest(&data);
        let mut req = Req::new(Method::PUT, Some(self.full_key(key)))
            .header("content-type", "application/octet-stream")
            .body_with_md5(data);
        if opts.mode == PutMode::Create {
            req = req.header("if-none-match", "*");
        }
        if let Some(r) = &opts.retention {
            req.headers.extend(retention_headers(r));
        }
        let resp = self.send(req).await?;
        if resp.status.is_success() {
            return Ok(());
        }
        if resp.status == StatusCode::PRECONDITION_FAILED && resp.attempts > 1 {
            // A retried Create: the 412 may be our own earlier attempt having landed.
            if let Some(head) = self.head_raw(key).await? {
                let etag = head
                    .header("etag")
                    .unwrap_or("")
                    .trim_matches('"')
                    .to_string();
                if etag == hex::encode(md5) {
                    return Ok(());
                }
            }
        }
        if opts.retention.is_some() {
            if let Some(e) = self.retention_refused(key.as_str(), &resp) {
                return Err(e);
            }
        }
        Err(self.explain(key.as_str(), &resp, "write"))
    }

    fn part_size_for(&self, len: u64) -> u64 {
        let mut part = self.cfg.part_size;
        while len.div_ceil(part) > MAX_PARTS {
            part *= 2;
        }
        part
    }

    async fn put_multipart(
        self: &Arc<Self>,
        key: &StoreKey,
        data: Bytes,
        opts: PutOptions,
    ) -> Result<(), StoreError> {
        let full_key = self.full_key(key);
        let mut create = Req::new(Method::POST, Some(full_key.clone()))
            .query("uploads", "")
            .header("content-type", "application/octet-stream");
        if let Some(r) = &opts.retention {
            create.headers.extend(retention_headers(r));
        }
        let resp = self.send(create).await?;
        if !resp.status.is_success() {
            if opts.retention.is_some() {
                if let Some(e) = self.retention_refused(key.as_str(), &resp) {
                    return Err(e);
                }
            }
            return Err(self.explain(key.as_str(), &resp, "start multipart upload"));
        }
        let upload_id =
            xml::parse::<xml::InitiateMultipartUploadResult>(&resp.body, "multipart upload")
                .map_err(|e| io_error(std::io::ErrorKind::InvalidData, key.as_str(), e))?
                .upload_id;

        let result = self
            .upload_parts_and_complete(key, &full_key, &upload_id, data, opts.mode)
            .await;
        if result.is_err() {
            let abort = Req::new(Method::DELETE, Some(full_key)).query("uploadId", &upload_id);
            match self.send(abort).await {
                Ok(r) if r.status.is_success() || r.status == StatusCode::NOT_FOUND => {}
                Ok(r) => tracing::warn!(
                    key = key.as_str(),
                    status = r.status.as_u16(),
                    "could not abort a failed multipart upload; the bucket's lifecycle rule removes it after 7 days"
                ),
                Err(e) => tracing::warn!(
                    key = key.as_str(),
                    error = %e,
                    "could not abort a failed multipart upload; the bucket's lifecycle rule removes it after 7 days"
                ),
            }
        }
        result
    }

    async fn upload_parts_and_complete(
        self: &Arc<Self>,
        key: &StoreKey,
        full_key: &str,
        upload_id: &str,
        data: Bytes,
        mode: PutMode,
    ) -> Result<(), StoreError> {
        let len = data.len() as u64;
        let part = self.part_size_for(len) as usize;
        let mut tasks = JoinSet::new();
        for (index, start) in (0..data.len()).step_by(part).enumerate() {
            let chunk = data.slice(start..(start + part).min(data.len()));
            let this = Arc::clone(self);
            let req = Req::new(Method::PUT, Some(full_key.to_string()))
                .query("partNumber", &(index + 1).to_string())
                .query("uploadId", upload_id)
                .body_with_md5(chunk);
            let key = key.to_string();
            tasks.spawn(async move {
                let resp = this.send(req).await?;
                if !resp.status.is_success() {
                    return Err(this.explain(&key, &resp, "upload part"));
                }
                let etag = resp.header("etag").map(str::to_string).ok_or_else(|| {
                    io_error(
                        std::io::ErrorKind::InvalidData,
                        &key,
                        "upload part: no ETag in the response".into(),
                    )
                })?;
                Ok((index, etag))
            });
        }
        let mut etags = vec![String::new(); tasks.len()];
        while let Some(joined) = tasks.join_next().await {
            let (index, etag) = joined.map_err(|e| {
                io_error(
                    std::io::ErrorKind::Other,
                    key.as_str(),
                    format!("upload part task failed: {e}"),
                )
            })??;
            etags[index] = etag;
        }
        let body = Bytes::from(xml::complete_multipart_body(&etags));
        let mut complete = Req::new(Method::POST, Some(full_key.to_string()))
            .query("uploadId", upload_id)
            .header("content-type", "application/xml")
            .body_with_md5(body);
        if mode == PutMode::Create {
            complete = complete.header("if-none-match", "*");
        }
        let resp = self.send(complete).await?;
        // CompleteMultipartUpload can fail *inside* a 200 response.
        let failed_inside = resp.status.is_success() && !resp.error().code.is_empty();
        if resp.status.is_success() && !failed_inside {
            return Ok(());
        }
        Err(self.explain(key.as_str(), &resp, "complete multipart upload"))
    }

    async fn get(&self, key: &StoreKey) -> Result<Bytes, StoreError> {
        let resp = self
            .send(Req::new(Method::GET, Some(self.full_key(key))))
            .await?;
        if resp.status.is_success() {
            return Ok(resp.body);
        }
        Err(self.explain(key.as_str(), &resp, "read"))
    }

    async fn get_range(&self, key: &StoreKey, range: Range<u64>) -> Result<Bytes, StoreError> {
        let invalid = |size: u64| StoreError::InvalidRange {
            key: key.to_string(),
            start: range.start,
            end: range.end,
            size,
        };
        if range.start >= range.end {
            // HTTP cannot express an empty range; ask for the size instead.
            let size = self
                .head_size(key)
                .await?
                .ok_or_else(|| StoreError::NotFound {
                    key: key.to_string(),
                })?;
            if range.start > range.end || range.start > size {
                return Err(invalid(size));
            }
            return Ok(Bytes::new());
        }
        let resp = self
            .send(
                Req::new(Method::GET, Some(self.full_key(key)))
                    .header("range", format!("bytes={}-{}", range.start, range.end - 1)),
            )
            .await?;
        match resp.status {
            StatusCode::PARTIAL_CONTENT => {
                // S3 clips a range that runs past the end; the total tells.
                let total = resp
                    .header("content-range")
                    .and_then(|v| v.rsplit('/').next())
                    .and_then(|t| t.parse::<u64>().ok());
                match total {
                    Some(total) if total < range.end => Err(invalid(total)),
                    _ if resp.body.len() as u64 != range.end - range.start => Err(io_error(
                        std::io::ErrorKind::InvalidData,
                        key.as_str(),
                        format!(
                            "ranged read returned {} bytes for {}..{} ({})",
                            resp.body.len(),
                            range.start,
                            range.end,
                            self.place()
                        ),
                    )),
                    _ => Ok(resp.body),
                }
            }
            StatusCode::OK => {
                // The server ignored Range and sent the whole object.
                let size = resp.body.len() as u64;
                if range.end > size {
                    return Err(invalid(size));
                }
                Ok(resp.body.slice(range.start as usize..range.end as usize))
            }
            StatusCode::RANGE_NOT_SATISFIABLE => {
                let size = self
                    .head_size(key)
                    .await?
                    .ok_or_else(|| StoreError::NotFound {
                        key: key.to_string(),
                    })?;
                Err(invalid(size))
            }
            _ => Err(self.explain(key.as_str(), &resp, "read")),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let full_prefix = format!("{}{prefix}", self.cfg.key_prefix);
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = Req::new(Method::GET, None)
                .query("list-type", "2")
                .query("max-keys", "1000")
                .query("prefix", &full_prefix);
            if let Some(t) = &token {
                req = req.query("continuation-token", t);
            }
            let resp = self.send(req).await?;
            if !resp.status.is_success() {
                return Err(self.explain(prefix, &resp, "list"));
            }
            let page: xml::ListBucketResult = xml::parse(&resp.body, "list")
                .map_err(|e| io_error(std::io::ErrorKind::InvalidData, prefix, e))?;
            for obj in page.contents {
                let Some(rel) = obj.key.strip_prefix(&self.cfg.key_prefix) else {
                    continue;
                };
                if let Ok(key) = StoreKey::new(rel) {
                    found.push(ObjectMeta {
                        key,
                        size: obj.size,
                    });
                } else {
                    tracing::warn!(
                        key = %obj.key,
                        "skipping an object whose name is not an Atlas key ({})",
                        self.place()
                    );
                }
            }
            match page.next_continuation_token {
                Some(next) if page.is_truncated => token = Some(next),
                _ => break,
            }
        }
        // S3 sorts by UTF-8 bytes already; some compatible servers do not.
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    async fn is_versioned(&self) -> Result<bool, StoreError> {
        self.versioned
            .get_or_try_init(|| async {
                let status = self.versioning_status().await?;
                // Suspended still keeps old versions around, so deletes must remove them.
                Ok(status.is_some())
            })
            .await
            .copied()
    }

    /// `Some("Enabled" | "Suspended")` or `None` for a never-versioned bucket.
    async fn versioning_status(&self) -> Result<Option<String>, StoreError> {
        let resp = self
            .send(Req::new(Method::GET, None).query("versioning", ""))
            .await?;
        if !resp.status.is_success() {
            return Err(self.explain(&self.cfg.bucket, &resp, "read versioning"));
        }
        let cfg: xml::VersioningConfiguration = xml::parse(&resp.body, "versioning")
            .map_err(|e| io_error(std::io::ErrorKind::InvalidData, &self.cfg.bucket, e))?;
        Ok(cfg.status.filter(|s| !s.is_empty()))
    }

    async fn versions(&self, full_key: &str) -> Result<Vec<ObjectVersion>, StoreError> {
        let mut out = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut req = Req::new(Method::GET, None)
                .query("versions", "")
                .query("prefix", full_key);
            if let Some((key_marker, version_marker)) = &markers {
                req = req
                    .query("key-marker", key_marker)
                    .query("version-id-marker", version_marker);
            }
            let resp = self.send(req).await?;
            if !resp.status.is_success() {
                return Err(self.explain(full_key, &resp, "list versions"));
            }
            let page: xml::ListVersionsResult = xml::parse(&resp.body, "list versions")
                .map_err(|e| io_error(std::io::ErrorKind::InvalidData, full_key, e))?;
            let (mut truncated, mut next_key, mut next_version) = (false, None, None);
            for entry in page.entries {
                let (item, delete_marker) = match entry {
                    xml::VersionEntry::Version(v) => (v, false),
                    xml::VersionEntry::DeleteMarker(v) => (v, true),
                    xml::VersionEntry::IsTruncated(t) => {
                        truncated = t;
                        continue;
                    }
                    xml::VersionEntry::NextKeyMarker(k) => {
                        next_key = Some(k);
                        continue;
                    }
                    xml::VersionEntry::NextVersionIdMarker(v) => {
                        next_version = Some(v);
                        continue;
                    }
                    xml::VersionEntry::Other => continue,
                };
                // The prefix also matches longer keys ("a" finds "a/b"); keep exact ones.
                if item.key == full_key {
                    out.push(ObjectVersion {
                        version_id: item.version_id,
                        is_latest: item.is_latest,
                        delete_marker,
                        size: if delete_marker { 0 } else { item.size },
                    });
                }
            }
            match (truncated, next_key, next_version) {
                (true, Some(k), Some(v)) if k.as_str() <= full_key => markers = Some((k, v)),
                _ => break,
            }
        }
        Ok(out)
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        if !self.is_versioned().await? {
            let resp = self
                .send(Req::new(Method::DELETE, Some(self.full_key(key))))
                .await?;
            if resp.status.is_success() || resp.error().code == "NoSuchKey" {
                return Ok(());
            }
            return Err(self.explain(key.as_str(), &resp, "delete"));
        }
        let versions = self.versions(&self.full_key(key)).await?;
        let mut retained: Vec<String> = Vec::new();
        // Oldest first, the current version last: a refused version never leaves an older
        // one exposed as current.
        let (latest, older): (Vec<_>, Vec<_>) = versions.into_iter().partition(|v| v.is_latest);
        for version in older.iter().rev() {
            if let Some(until) = self.delete_version(key, version).await? {
                retained.push(until);
            }
        }
        if retained.is_empty() {
            for version in &latest {
                if let Some(until) = self.delete_version(key, version).await? {
                    retained.push(until);
                }
            }
        }
        match retained.into_iter().max() {
            None => Ok(()),
            Some(until) => Err(StoreError::Retained {
                key: key.to_string(),
                until,
            }),
        }
    }

    /// Delete one version; `Some(until)` if Object Lock keeps it.
    async fn delete_version(
        &self,
        key: &StoreKey,
        version: &ObjectVersion,
    ) -> Result<Option<String>, StoreError> {
        let resp = self
            .send(
                Req::new(Method::DELETE, Some(self.full_key(key)))
                    .query("versionId", &version.version_id),
            )
            .await?;
        if resp.status.is_success() || resp.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if resp.status == StatusCode::FORBIDDEN && !version.delete_marker {
            // Locked, or not permitted? Only a confirmed future retention (or legal hold)
            // counts as retained; anything else is a permission problem.
            let head = self
                .send(
                    Req::new(Method::HEAD, Some(self.full_key(key)))
                        .query("versionId", &version.version_id),
                )
                .await?;
            if head.status.is_success() {
                if let Some(r) = retention_from_headers(&head) {
                    if r.retain_until > Utc::now() {
                        return Ok(Some(retain_until_str(r.retain_until)));
                    }
                }
                if head
                    .header("x-amz-object-lock-legal-hold")
                    .is_some_and(|v| v.eq_ignore_ascii_case("ON"))
                {
                    return Ok(Some("legal hold is on (no date)".into()));
                }
            }
        }
        Err(self.explain(key.as_str(), &resp, "delete version"))
    }

    async fn retention(&self, key: &StoreKey) -> Result<Option<Retention>, StoreError> {
        match self.head_raw(key).await? {
            Some(resp) => Ok(retention_from_headers(&resp)),
            None => Err(StoreError::NotFound {
                key: key.to_string(),
            }),
        }
    }

    async fn extend_retention(
        &self,
        key: &StoreKey,
        wanted: Retention,
    ) -> Result<Retention, StoreError> {
        let head = self
            .head_raw(key)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                key: key.to_string(),
            })?;
        let current = retention_from_headers(&head);
        let target = match current {
            Some(cur) => Retention {
                mode: if mode_strength(cur.mode) >= mode_strength(wanted.mode) {
                    cur.mode
                } else {
                    wanted.mode
                },
                retain_until: cur.retain_until.max(wanted.retain_until),
            },
            None => wanted,
        };
        if current == Some(target) {
            return Ok(target);
        }
        let mut req = Req::new(Method::PUT, Some(self.full_key(key))).query("retention", "");
        // Pin the version HEAD saw, so a concurrent overwrite cannot redirect the lock.
        if let Some(version) = head.header("x-amz-version-id") {
            req = req.query("versionId", version);
        }
        let body = xml::retention_body(
            mode_str(target.mode),
            &retain_until_str(target.retain_until),
        );
        let resp = self
            .send(
                req.header("content-type", "application/xml")
                    .body_with_md5(Bytes::from(body)),
            )
            .await?;
        if resp.status.is_success() {
            return Ok(target);
        }
        if let Some(e) = self.retention_refused(key.as_str(), &resp) {
            return Err(e);
        }
        Err(self.explain(key.as_str(), &resp, "extend retention"))
    }

    async fn lock_status(&self) -> Result<LockStatus, StoreError> {
        let versioning = self.versioning_status().await?.as_deref() == Some("Enabled");
        let resp = self
            .send(Req::new(Method::GET, None).query("object-lock", ""))
            .await?;
        if !resp.status.is_success() {
            let code = resp.error().code;
            if code == "ObjectLockConfigurationNotFoundError"
                || (resp.status == StatusCode::NOT_FOUND && code != "NoSuchBucket")
            {
                return Ok(LockStatus {
                    versioning,
                    object_lock: false,
                    default_retention: None,
                });
            }
            return Err(self.explain(&self.cfg.bucket, &resp, "read Object Lock configuration"));
        }
        let cfg: xml::ObjectLockConfiguration = xml::parse(&resp.body, "Object Lock configuration")
            .map_err(|e| io_error(std::io::ErrorKind::InvalidData, &self.cfg.bucket, e))?;
        let default_retention = cfg.rule.and_then(|r| r.default_retention).and_then(|d| {
            let mode = parse_mode(d.mode.as_deref()?)?;
            let days = d.days.or_else(|| d.years.map(|y| y.saturating_mul(365)))?;
            Some(DefaultRetention { mode, days })
        });
        Ok(LockStatus {
            versioning,
            object_lock: cfg.enabled.as_deref() == Some("Enabled"),
            default_retention,
        })
    }

    async fn ensure_bucket(&self, lock: bool) -> Result<BucketSetup, StoreError> {
        let bucket = self.cfg.bucket.clone();
        let head = self.send(Req::new(Method::HEAD, None)).await?;
        let mut created = false;
        let mut lifecycle = None;
        if head.status == StatusCode::NOT_FOUND {
            let mut req = Req::new(Method::PUT, None);
            if self.cfg.region != "us-east-1" {
                req = req
                    .header("content-type", "application/xml")
                    .body_with_md5(Bytes::from(xml::create_bucket_body(&self.cfg.region)));
            }
            if lock {
                req = req.header("x-amz-bucket-object-lock-enabled", "true");
            }
            let resp = self.send(req).await?;
            let code = resp.error().code;
            if resp.status.is_success() {
                created = true;
            } else if code != "BucketAlreadyOwnedByYou" {
                if code == "BucketAlreadyExists" {
                    return Err(StoreError::AccessDenied {
                        key: bucket.clone(),
                        detail: format!(
                            "create bucket: the name is taken by another account ({}) — set \
                             ATLAS_S3_BUCKET to a bucket you own",
                            self.place()
                        ),
                    });
                }
                return Err(self.explain(&bucket, &resp, "create bucket"));
            }
            self.bucket_seen.store(true, Ordering::Relaxed);
            if created {
                lifecycle = Some(self.apply_lifecycle().await);
            }
        } else if !head.status.is_success() {
            // HEAD has no body: repeat as GET ?location for an explained error.
            self.confirm_bucket_exists(&bucket).await?;
        }
        let status = self.lock_status().await?;
        if lock && !status.object_lock {
            return Err(StoreError::Unsupported {
                what: format!(
                    "Object Lock: {} exists without Object Lock enabled, so retention cannot be \
                     enforced — enable Object Lock on the bucket, or use a new bucket that Atlas \
                     creates lock-capable",
                    self.place()
                ),
            });
        }
        Ok(BucketSetup {
            created,
            object_lock: status.object_lock,
            versioning: status.versioning,
            lifecycle,
        })
    }

    async fn apply_lifecycle(&self) -> Result<(), String> {
        let req = Req::new(Method::PUT, None)
            .query("lifecycle", "")
            .header("content-type", "application/xml")
            .body_with_md5(Bytes::from(xml::lifecycle_body()));
        match self.send(req).await {
            Ok(resp) if resp.status.is_success() => Ok(()),
            Ok(resp) => {
                let e = self.explain(&self.cfg.bucket, &resp, "set lifecycle rules");
                tracing::warn!(error = %e, "lifecycle rules not applied");
                Err(e.to_string())
            }
            Err(e) => {
                tracing::warn!(error = %e, "lifecycle rules not applied");
                Err(e.to_string())
            }
        }
    }

    async fn probe_conditional_writes(&self) -> Result<bool, StoreError> {
        let key = format!(
            "{}_atlas/probe/conditional-{}",
            self.cfg.key_prefix,
            uuid::Uuid::new_v4().simple()
        );
        let put = || {
            Req::new(Method::PUT, Some(key.clone()))
                .header("if-none-match", "*")
                .body_with_md5(Bytes::from_static(b"probe"))
        };
        let first = self.send(put()).await?;
        if !first.status.is_success() {
            return Err(self.explain(&key, &first, "probe conditional writes"));
        }
        let second = self.send(put()).await?;
        let honoured = match second.status {
            StatusCode::PRECONDITION_FAILED => true,
            s if s.is_success() => false,
            _ => return Err(self.explain(&key, &second, "probe conditional writes")),
        };
        self.conditional
            .store(if honoured { 1 } else { 2 }, Ordering::Relaxed);
        if !honoured {
            tracing::warn!(
                endpoint = %self.endpoint_shown,
                "the S3 server ignores If-None-Match: create-if-absent is unavailable"
            );
        }
        // Remove the probe, every version of it.
        for v in self.versions(&key).await.unwrap_or_default() {
            let _ = self
                .send(Req::new(Method::DELETE, Some(key.clone())).query("versionId", &v.version_id))
                .await;
        }
        let _ = self.send(Req::new(Method::DELETE, Some(key.clone()))).await;
        Ok(honoured)
    }
}

#[async_trait]
impl BlobStore for S3Store {
    async fn put(&self, key: &StoreKey, data: Bytes, opts: PutOptions) -> Result<(), StoreError> {
        self.inner.put(key, data, opts).await
    }

    async fn get(&self, key: &StoreKey) -> Result<Bytes, StoreError> {
        self.inner.get(key).await
    }

    async fn get_range(&self, key: &StoreKey, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.inner.get_range(key, range).await
    }

    async fn head(&self, key: &StoreKey) -> Result<Option<ObjectMeta>, StoreError> {
        Ok(self.inner.head_size(key).await?.map(|size| ObjectMeta {
            key: key.clone(),
            size,
        }))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        self.inner.list(prefix).await
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }

    fn describe(&self) -> String {
        format!(
            "s3://{}/{} at {}",
            self.inner.cfg.bucket, self.inner.cfg.key_prefix, self.inner.endpoint_shown
        )
    }

    async fn extend_retention(
        &self,
        key: &StoreKey,
        retention: Retention,
    ) -> Result<Retention, StoreError> {
        self.inner.extend_retention(key, retention).await
    }

    async fn retention(&self, key: &StoreKey) -> Result<Option<Retention>, StoreError> {
        self.inner.retention(key).await
    }

    async fn lock_status(&self) -> Result<Option<LockStatus>, StoreError> {
        self.inner.lock_status().await.map(Some)
    }

    fn copy_source(&self) -> Option<CopySource> {
        Some(self.inner.copy_source())
    }

    async fn copy_from(
        &self,
        source: &CopySource,
        source_key: &StoreKey,
        key: &StoreKey,
        opts: PutOptions,
    ) -> Result<bool, StoreError> {
        self.inner.copy_from(source, source_key, key, opts).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn content_md5_is_base64_of_the_binary_digest() {
        // RFC 1321 test suite: MD5("abc") = 900150983cd24fb0d6963f7d28e17f72.
        assert_eq!(content_md5(b"abc"), "kAFQmDzST7DWlj99KOF/cg==");
        assert_eq!(content_md5(b""), "1B2M2Y8AsgTpgAmY7PhCfg==");
    }

    #[test]
    fn retain_until_rounds_up_never_down() {
        let exact = Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(retain_until_str(exact), "2030-01-02T03:04:05Z");
        let later = exact + chrono::Duration::milliseconds(1);
        assert_eq!(retain_until_str(later), "2030-01-02T03:04:06Z");
    }

    fn store(path_style: bool, prefix: &str) -> S3Store {
        let mut cfg = S3Config::shared_bucket(
            "my-bucket",
            "t",
            "eu-west-1",
            Credentials::new("AK", "SECRET"),
        )
        .unwrap()
        .endpoint("http://127.0.0.1:9000")
        .path_style(path_style);
        cfg.key_prefix = prefix.to_string();
        S3Store::new(cfg).unwrap()
    }

    #[test]
    fn urls_for_both_addressing_styles() {
        let path = store(true, "");
        assert_eq!(path.inner.host(), "127.0.0.1:9000");
        assert_eq!(
            path.inner.canonical_uri(Some("a/x+y@z=1")),
            "/my-bucket/a/x%2By%40z%3D1"
        );
        assert_eq!(path.inner.canonical_uri(None), "/my-bucket");
        let virt = store(false, "");
        assert_eq!(virt.inner.host(), "my-bucket.127.0.0.1:9000");
        assert_eq!(virt.inner.canonical_uri(Some("a/b")), "/a/b");
        assert_eq!(virt.inner.canonical_uri(None), "/");
    }

    #[test]
    fn keys_get_the_tenant_prefix_and_describe_names_the_place() {
        let s = store(true, "tenant-a/");
        let key = StoreKey::new("x/y").unwrap();
        assert_eq!(s.inner.full_key(&key), "tenant-a/x/y");
        assert_eq!(
            s.describe(),
            "s3://my-bucket/tenant-a/ at http://127.0.0.1:9000"
        );
    }

    #[test]
    fn config_is_validated() {
        let creds = || Credentials::new("AK", "SECRET");
        assert!(matches!(
            S3Config::for_tenant("UPPER_case", "us-east-1", creds()),
            Err(S3ConfigError::InvalidBucketName { .. })
        ));
        let cfg = S3Config::for_tenant("t1", "us-east-1", creds()).unwrap();
        assert_eq!(cfg.bucket, "atlas-t1");
        assert!(cfg.key_prefix.is_empty());
        for bad in ["ftp://x", "http://x/path", "http://user:pw@x", "not a url"] {
            let e = S3Store::new(cfg.clone().endpoint(bad)).unwrap_err();
            assert!(
                matches!(e, S3ConfigError::InvalidEndpoint { .. }),
                "{bad}: {e}"
            );
            assert!(!e.to_string().contains("pw@") || bad.contains("pw"), "{e}");
        }
        let mut small = cfg.clone();
        small.part_size = MIB;
        assert!(matches!(
            S3Store::new(small),
            Err(S3ConfigError::InvalidSetting(_))
        ));
        let shared =
            S3Config::shared_bucket("shared", "Tenant.Example", "us-east-1", creds()).unwrap();
        assert_eq!(shared.key_prefix, "tenant.example/");
        assert!(S3Config::shared_bucket("shared", "bad tenant", "us-east-1", creds()).is_err());
    }

    #[test]
    fn config_debug_hides_the_secret() {
        let cfg =
            S3Config::for_tenant("t1", "us-east-1", Credentials::new("AK", "TOPSECRET")).unwrap();
        let shown = format!("{cfg:?} {:?}", S3Store::new(cfg.clone()).unwrap());
        assert!(!shown.contains("TOPSECRET"), "{shown}");
    }

    #[test]
    fn part_size_grows_to_stay_within_10000_parts() {
        let s = store(true, "");
        assert_eq!(s.inner.part_size_for(100 * MIB), 16 * MIB);
        let huge = 16 * MIB * 10_000 + 1;
        assert_eq!(s.inner.part_size_for(huge), 32 * MIB);
    }
}
