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
//! - **Integrity without re-hashing**: object data carries `x-amz-checksum-crc32c` (one
//!   pass with the CPU's CRC instruction; with `x-amz-sdk-checksum-algorithm`, which is
//!   what S3 requires on Object Lock uploads besides Content-MD5), and S3 refuses a body
//!   that does not match it. Over TLS or to a loopback address the signature uses
//!   `UNSIGNED-PAYLOAD` instead of hashing the body with SHA-256 a second time; elsewhere
//!   (plain http across a network) the body's SHA-256 is signed. Multipart uploads are
//!   created with the CRC32C algorithm, each part carries its checksum, and the completion
//!   lists them. [`S3Config::content_md5`] switches data uploads to `Content-MD5` for
//!   servers that need it; bucket configuration calls always carry Content-MD5 (tiny
//!   bodies, and S3 requires an integrity header there).
//! - **Create-if-absent** is `If-None-Match: *` (412 → [`StoreError::AlreadyExists`]).
//!   Some servers ignore that header; [`S3Store::probe_conditional_writes`] detects it
//!   (storage-check and repository init call it) and from then on `Create` fails with
//!   `Unsupported` instead of silently racing. A `Create` retried after a lost response
//!   that then meets 412 compares the stored ETag with its own MD5 (computed only then), so
//!   its own first attempt is not mistaken for a competitor.
//! - **Large objects** (above [`S3Config::multipart_threshold`], 64 MiB by default) go up
//!   as a multipart upload, parts in parallel, each with its own checksum; any failure
//!   aborts the upload so no parts linger.
//! - **Parallelism** is bounded by one semaphore per store over every HTTP request.
//! - **Retries** are decided by one pure function (`retry.rs`, pinned by a table test):
//!   throttling (503, 429, `SlowDown`) always, after `Retry-After` when the server sends
//!   one; 5xx and timeouts only for requests that are safe to repeat (idempotent, or a
//!   create-if-absent checked as above); connections that were never made always; and
//!   never what cannot heal (a host name that does not resolve, a rejected TLS
//!   certificate, an invalid host name). Attempts *and* total time are bounded.
//! - **Errors** are translated once, in `error.rs`, into [`StoreError`] variants that carry
//!   their meaning: `BucketMissing`, `BadCredentials` (unknown access key or wrong secret),
//!   `WrongRegion` (with the region the server names), `ClockSkew`, `Dns`, `Tls` (with the
//!   rejected certificate's subject and issuer), `AccessDenied`, `Transient`, never a
//!   secret. A missing bucket is never reported as a missing object (that would make a
//!   misconfigured repository look empty). The messages name settings by meaning; the CLI
//!   adds its variable names.
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

// One file per job, as object_store's S3 client: configuration and validation, the
// signed HTTP client, the retry decision, error translation, whole-object operations,
// multipart uploads, server-side copy, versions and Object Lock, bucket setup. The
// `BlobStore` implementation below only delegates.
mod bucket;
pub mod check;
mod client;
mod config;
mod copy;
mod error;
mod lock;
mod multipart;
mod naming;
mod objects;
mod retry;
pub mod sigv4;
mod xml;

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use atlas_core::ports::blob_store::{CopySource, LockStatus};
use atlas_core::ports::{BlobStore, ObjectMeta, PutOptions, Retention, StoreError, StoreKey};
use bytes::Bytes;
use reqwest::{Method, StatusCode};

pub use bucket::BucketSetup;
pub use check::{LockProbe, Problem, StorageCheckReport, storage_check};
pub use client::content_md5;
pub use config::{Addressing, S3Config, S3ConfigError};
pub use lock::ObjectVersion;
pub use naming::{tenant_bucket_name, validate_bucket_name};
pub use sigv4::Credentials;

use client::{Inner, Req};
use config::Endpoint;
use lock::retention_from_headers;

/// The S3 backend. Cheap to clone (shared connection pool, semaphore and caches).
#[derive(Debug, Clone)]
pub struct S3Store {
    inner: Arc<Inner>,
}

impl S3Store {
    /// A store for `config`. Sends nothing yet; the first request (or
    /// [`S3Store::ensure_bucket`]) finds out whether the bucket is reachable.
    pub fn new(config: S3Config) -> Result<Self, S3ConfigError> {
        let endpoint = Endpoint::of(&config)?;
        Ok(Self {
            inner: Arc::new(Inner::new(config, endpoint)?),
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
            self.inner.cfg.bucket, self.inner.cfg.key_prefix, self.inner.endpoint.shown
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
    use super::config::MIB;
    use super::lock::retain_until_str;
    use super::*;
    use chrono::{TimeZone, Utc};

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

    /// Regression: an IP-address or `localhost` endpoint got the bucket put in front of
    /// its host ("invalid IPv4 address", retried six times). Auto addressing follows
    /// boto3: virtual-hosted only on AWS's own hosts.
    #[test]
    fn auto_addressing_is_path_style_except_on_aws() {
        let resolve = |endpoint: Option<&str>, bucket: &str| {
            let mut cfg =
                S3Config::shared_bucket(bucket, "t", "eu-west-1", Credentials::new("AK", "S"))
                    .unwrap();
            cfg.endpoint = endpoint.map(str::to_owned);
            let store = S3Store::new(cfg).unwrap();
            store.inner.host()
        };
        for endpoint in [
            "http://127.0.0.1:9000",
            "http://[::1]:9000",
            "http://localhost:9000",
            "https://10.1.2.3",
            "https://minio.internal.example:9000",
            "https://s3.storage.example",
        ] {
            let host = resolve(Some(endpoint), "my-bucket");
            assert!(!host.starts_with("my-bucket."), "{endpoint}: {host}");
        }
        assert_eq!(
            resolve(None, "my-bucket"),
            "my-bucket.s3.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            resolve(Some("https://s3.eu-west-1.amazonaws.com"), "my-bucket"),
            "my-bucket.s3.eu-west-1.amazonaws.com"
        );
        // A dotted bucket over https would not match AWS's wildcard certificate.
        assert_eq!(resolve(None, "my.bucket"), "s3.eu-west-1.amazonaws.com");
    }

    /// The body is left out of the signature only where nothing between Atlas and the
    /// server can change it unnoticed: TLS, or loopback.
    #[test]
    fn payload_is_unsigned_over_tls_and_loopback_only() {
        let unsigned = |endpoint: &str| {
            let cfg = S3Config::shared_bucket("b-1", "t", "us-east-1", Credentials::new("A", "S"))
                .unwrap()
                .endpoint(endpoint);
            S3Store::new(cfg).unwrap().inner.endpoint.unsigned_payload
        };
        assert!(unsigned("https://s3.example.com"));
        assert!(unsigned("http://127.0.0.1:9000"));
        assert!(unsigned("http://localhost:9000"));
        assert!(unsigned("http://[::1]:9000"));
        assert!(!unsigned("http://s3.example.com"));
        assert!(!unsigned("http://10.0.0.5:9000"));
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
