//! The HTTP client: one signed request at a time, under the store's concurrency limit,
//! with the retry loop of [`super::retry`] around it. Everything above this module builds
//! [`Req`]s and reads [`Resp`]s; nothing else touches `reqwest`.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Instant;

use atlas_core::ports::{StoreError, StoreKey};
use base64::Engine as _;
use bytes::Bytes;
use chrono::Utc;
use md5::{Digest as _, Md5};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use tokio::sync::{OnceCell, Semaphore};

use super::config::{Endpoint, S3Config};
use super::error::{self, Outcome};
use super::retry::{self, Decision, Failure, RetryPolicy};
use super::{sigv4, xml};

/// Shared state of one store: configuration, connection pool, limits and what was learnt
/// about the server.
#[derive(Debug)]
pub(super) struct Inner {
    pub cfg: S3Config,
    pub http: reqwest::Client,
    pub endpoint: Endpoint,
    pub permits: Semaphore,
    /// Bucket versioning, read once: whether a delete must remove versions.
    pub versioned: OnceCell<bool>,
    /// The bucket was seen to exist, so a 404 on HEAD means a missing object.
    pub bucket_seen: AtomicBool,
    /// Conditional writes: 0 not probed, 1 honoured, 2 ignored by the server.
    pub conditional: AtomicU8,
}

/// A request before signing.
pub(super) struct Req {
    pub method: Method,
    /// Full S3 key (with the prefix) or `None` for a bucket-level request.
    pub key: Option<String>,
    /// Raw (unencoded) query pairs.
    pub query: Vec<(String, String)>,
    /// Extra headers, lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub idempotent: bool,
}

impl Req {
    pub fn new(method: Method, key: Option<String>) -> Self {
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

    pub fn query(mut self, name: &str, value: &str) -> Self {
        self.query.push((name.to_string(), value.to_string()));
        self
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub fn body(mut self, body: Bytes) -> Self {
        self.body = body;
        self
    }

    /// Attach a small configuration body with its Content-MD5 (S3 requires an integrity
    /// header on bucket configuration calls; these bodies are a few hundred bytes).
    pub fn body_with_md5(self, body: Bytes) -> Self {
        let md5 = content_md5(&body);
        self.header("content-md5", md5).body(body)
    }

    /// Attach object data with the integrity header S3 verifies before storing it: a
    /// CRC32C (one pass with the CPU's CRC instruction; `x-amz-sdk-checksum-algorithm` too,
    /// which is what S3 wants on Object Lock uploads), or `Content-MD5` when configured for
    /// a server that needs it.
    pub fn data_body(self, body: Bytes, content_md5: bool) -> Self {
        if content_md5 {
            return self.body_with_md5(body);
        }
        let crc = crc32c_base64(&body);
        self.header("x-amz-sdk-checksum-algorithm", "CRC32C")
            .header("x-amz-checksum-crc32c", crc)
            .body(body)
    }
}

/// A response, read whole.
pub(super) struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Attempts it took (a `Create` that met 412 after a retry checks whether the object
    /// is its own).
    pub attempts: u32,
    /// The request was about the bucket, not an object (a 404 then means no bucket).
    pub bucket_level: bool,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn error(&self) -> xml::ErrorBody {
        xml::parse_error(&self.body)
    }

    /// The S3 error code, empty when the body has none (HEAD, some proxies).
    fn code(&self) -> String {
        if self.body.is_empty() {
            String::new()
        } else {
            self.error().code
        }
    }

    /// This answer as a retry input.
    fn failure<'a>(&self, code: &'a str) -> Failure<'a> {
        Failure::Status {
            status: self.status.as_u16(),
            code,
            retry_after: self
                .header("retry-after")
                .and_then(|v| retry::parse_retry_after(v, Utc::now())),
        }
    }
}

/// Base64 of the big-endian CRC32C of a body, for `x-amz-checksum-crc32c`.
pub fn crc32c_base64(body: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(crc32c::crc32c(body).to_be_bytes())
}

/// Base64 MD5 of a body, for `Content-MD5`.
pub fn content_md5(body: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Md5::digest(body))
}

pub(super) fn io_error(kind: std::io::ErrorKind, key: &str, message: String) -> StoreError {
    StoreError::Io {
        key: key.to_string(),
        source: std::io::Error::new(kind, message),
    }
}

impl Inner {
    /// A client for a validated configuration.
    pub fn new(cfg: S3Config, endpoint: Endpoint) -> Result<Self, super::S3ConfigError> {
        let http = atlas_net::client_builder(&cfg.net)?
            .connect_timeout(cfg.connect_timeout)
            .read_timeout(cfg.read_timeout)
            .build()
            .map_err(|e| super::S3ConfigError::InvalidSetting(format!("HTTP client: {e}")))?;
        Ok(Self {
            permits: Semaphore::new(cfg.max_concurrency),
            http,
            endpoint,
            cfg,
            versioned: OnceCell::new(),
            bucket_seen: AtomicBool::new(false),
            conditional: AtomicU8::new(0),
        })
    }

    pub fn full_key(&self, key: &StoreKey) -> String {
        format!("{}{}", self.cfg.key_prefix, key.as_str())
    }

    /// "bucket b at http://host:port" — for messages.
    pub fn place(&self) -> String {
        format!("bucket {} at {}", self.cfg.bucket, self.endpoint.shown)
    }

    /// The host requests go to: the endpoint's, or the bucket's virtual-hosted name.
    pub fn host(&self) -> String {
        if self.endpoint.path_style {
            self.endpoint.authority.clone()
        } else {
            format!("{}.{}", self.cfg.bucket, self.endpoint.authority)
        }
    }

    pub fn canonical_uri(&self, key: Option<&str>) -> String {
        let mut path = String::new();
        if self.endpoint.path_style {
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

    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.cfg.max_attempts,
            max_total: self.cfg.max_retry_time,
            base_delay: self.cfg.retry_base_delay,
            max_delay: self.cfg.max_retry_delay,
        }
    }

    /// Send a request, retrying what [`retry::decide`] allows. Any HTTP response that is
    /// not retried (or is the last attempt) comes back as `Ok`; the caller reads its
    /// status. A transport failure comes back translated.
    pub async fn send(&self, req: Req) -> Result<Resp, StoreError> {
        let target = Target::of(self, &req);
        let policy = self.retry_policy();
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self
                .exchange(self.signed(&req, &target), attempt, req.key.is_none())
                .await;
            if let Ok(resp) = &result {
                if resp.status.is_success() || resp.status.is_redirection() {
                    self.bucket_seen.store(true, Ordering::Relaxed);
                }
            }
            let result = match result {
                Ok(resp) if resp.status.is_success() => return Ok(resp),
                other => other,
            };
            let failure_code;
            let failure = match &result {
                Ok(resp) => {
                    failure_code = resp.code();
                    resp.failure(&failure_code)
                }
                Err(e) => transport_failure(e),
            };
            let decision = retry::decide(
                &policy,
                failure,
                req.idempotent,
                attempt,
                started.elapsed(),
                retry::jitter(),
            );
            match (decision, result) {
                (Decision::Retry(delay), Ok(resp)) => {
                    tracing::debug!(
                        status = resp.status.as_u16(),
                        attempt,
                        ?delay,
                        "S3 request will be retried"
                    );
                    tokio::time::sleep(delay).await;
                }
                (Decision::Retry(delay), Err(e)) => {
                    tracing::debug!(attempt, ?delay, error = %e.without_url(), "S3 request will be retried");
                    tokio::time::sleep(delay).await;
                }
                (Decision::GiveUp, Ok(resp)) => return Ok(resp),
                (Decision::GiveUp, Err(e)) => {
                    return Err(error::translate(
                        self,
                        &target.what,
                        "request",
                        Outcome::Transport {
                            error: &e,
                            attempts: attempt,
                        },
                    ));
                }
            }
        }
    }

    /// The request for one attempt, signed now (a retry gets a fresh date and signature).
    fn signed(&self, req: &Req, target: &Target) -> reqwest::RequestBuilder {
        let now = Utc::now();
        let mut headers = req.headers.clone();
        headers.push(("host".into(), target.host.clone()));
        headers.push(("x-amz-date".into(), sigv4::amz_date(now)));
        headers.push(("x-amz-content-sha256".into(), target.payload_sha.clone()));
        let auth = sigv4::authorization(
            &self.cfg.credentials,
            &self.cfg.region,
            now,
            &sigv4::SignInput {
                method: req.method.as_str(),
                canonical_uri: &target.uri,
                canonical_query: &target.query,
                headers: &headers,
                payload_sha256: &target.payload_sha,
            },
        );
        let mut builder = self.http.request(req.method.clone(), &target.url);
        for (name, value) in &headers {
            if name != "host" {
                builder = builder.header(name.as_str(), value.as_str());
            }
        }
        builder.header("authorization", auth).body(req.body.clone())
    }

    /// One HTTP exchange under a concurrency permit, the body read whole.
    async fn exchange(
        &self,
        builder: reqwest::RequestBuilder,
        attempt: u32,
        bucket_level: bool,
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
            bucket_level,
        })
    }

    /// Translate an error response; see [`error::translate`].
    pub fn explain(&self, key: &str, resp: &Resp, op: &str) -> StoreError {
        error::translate(self, key, op, Outcome::Response(resp))
    }
}

/// Where a request goes and what is signed, computed once for all its attempts.
struct Target {
    /// The Atlas-side name for messages: the full key, or the bucket.
    what: String,
    host: String,
    uri: String,
    query: String,
    url: String,
    payload_sha: String,
}

impl Target {
    fn of(inner: &Inner, req: &Req) -> Self {
        let uri = inner.canonical_uri(req.key.as_deref());
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
        let host = inner.host();
        let url = if query.is_empty() {
            format!("{}://{}{}", inner.endpoint.scheme, host, uri)
        } else {
            format!("{}://{}{}?{}", inner.endpoint.scheme, host, uri, query)
        };
        Self {
            what: req.key.clone().unwrap_or_else(|| inner.cfg.bucket.clone()),
            host,
            uri,
            query,
            url,
            // Over TLS or loopback the body is not hashed a second time for the signature:
            // its checksum header (signed) is what S3 verifies.
            payload_sha: if inner.endpoint.unsigned_payload {
                sigv4::UNSIGNED_PAYLOAD.to_owned()
            } else {
                sigv4::sha256_hex(&req.body)
            },
        }
    }
}

/// What kind of failure a transport error is, for the retry decision.
fn transport_failure(e: &reqwest::Error) -> Failure<'static> {
    if e.is_builder() || atlas_net::classify(e).is_some() {
        Failure::Permanent
    } else if e.is_connect() {
        Failure::Connect
    } else if e.is_timeout() {
        Failure::Timeout
    } else {
        Failure::Interrupted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, headers: &[(&'static str, &str)], body: &str) -> Resp {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, value.parse().expect("header value"));
        }
        Resp {
            status: StatusCode::from_u16(status).expect("status"),
            headers: map,
            body: Bytes::from(body.to_owned()),
            attempts: 1,
            bucket_level: false,
        }
    }

    #[test]
    fn crc32c_is_the_castagnoli_checksum_big_endian_in_base64() {
        // The CRC-32C check value (RFC 3720 / the catalogue of CRC algorithms): 0xE3069283.
        assert_eq!(crc32c_base64(b"123456789"), "4waSgw==");
        assert_eq!(crc32c_base64(b""), "AAAAAA==");
    }

    #[test]
    fn an_answer_becomes_a_retry_input_with_code_and_retry_after() {
        let r = resp(
            503,
            &[("retry-after", "7")],
            "<Error><Code>SlowDown</Code></Error>",
        );
        let code = r.code();
        assert_eq!(
            r.failure(&code),
            Failure::Status {
                status: 503,
                code: "SlowDown",
                retry_after: Some(std::time::Duration::from_secs(7)),
            }
        );
        let head = resp(404, &[], "");
        assert_eq!(head.code(), "");
    }

    /// A name that does not resolve and a URL that cannot be built (a bucket put in front
    /// of an IP address) are permanent: retrying only delays the message. A refused
    /// connection is not: the server may be starting.
    #[tokio::test]
    async fn failures_that_cannot_heal_are_permanent() {
        let http = atlas_net::client_builder(&atlas_net::NetOptions::default())
            .expect("builder")
            .build()
            .expect("client");
        let dns = http
            .get("http://atlas-x.nothing-here.invalid:9/")
            .send()
            .await
            .expect_err("no such host");
        assert_eq!(transport_failure(&dns), Failure::Permanent, "{dns:?}");
        let invalid = http
            .get("http://atlas-bucket.127.0.0.1:9/")
            .send()
            .await
            .expect_err("invalid host");
        assert_eq!(
            transport_failure(&invalid),
            Failure::Permanent,
            "{invalid:?}"
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let refused = http
            .get(format!("http://{addr}/"))
            .send()
            .await
            .expect_err("refused");
        assert_eq!(transport_failure(&refused), Failure::Connect, "{refused:?}");
    }
}
