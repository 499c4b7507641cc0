//! Bucket setup: create the bucket (lock-capable when asked), its lifecycle rules, whether
//! it exists at all, and whether the server honours conditional writes.

use std::sync::atomic::Ordering;

use atlas_core::ports::StoreError;
use bytes::Bytes;
use reqwest::{Method, StatusCode};

use super::client::{Inner, Req};
use super::xml;

/// What [`S3Store::ensure_bucket`](super::S3Store::ensure_bucket) did.
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

impl Inner {
    /// A 404 without a body (HEAD) is ambiguous: missing key or missing bucket. Check the
    /// bucket once per process; then every such 404 means "no such key".
    pub(super) async fn confirm_bucket_exists(&self, key: &str) -> Result<(), StoreError> {
        if self.bucket_seen.load(Ordering::Relaxed) {
            return Ok(());
        }
        let resp = self.send(Req::new(Method::HEAD, None)).await?;
        if resp.status.is_success() {
            self.bucket_seen.store(true, Ordering::Relaxed);
            return Ok(());
        }
        if resp.status == StatusCode::NOT_FOUND {
            return Err(self.explain(key, &resp, "check bucket"));
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

    pub(super) async fn ensure_bucket(&self, lock: bool) -> Result<BucketSetup, StoreError> {
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

    pub(super) async fn apply_lifecycle(&self) -> Result<(), String> {
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

    pub(super) async fn probe_conditional_writes(&self) -> Result<bool, StoreError> {
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
                endpoint = %self.endpoint.shown,
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
