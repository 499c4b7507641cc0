//! Server-side copy (`CopyObject`, [`BlobStore::copy_from`](atlas_core::ports::BlobStore::copy_from))
//! between two buckets of one endpoint reached with one access key.

use atlas_core::ports::blob_store::CopySource;
use atlas_core::ports::{PutMode, PutOptions, StoreError, StoreKey};
use bytes::Bytes;
use reqwest::{Method, StatusCode};

use super::client::{Inner, Req, Resp};
use super::lock::retention_headers;
use super::retry::{self, Decision, Failure};
use super::{sigv4, xml};

impl Inner {
    /// What another store needs to copy from this one server-side.
    pub(super) fn copy_source(&self) -> CopySource {
        CopySource {
            endpoint: self.endpoint.shown.clone(),
            bucket: self.cfg.bucket.clone(),
            key_prefix: self.cfg.key_prefix.clone(),
            account: self.cfg.credentials.access_key().to_string(),
        }
    }

    /// `CopyObject` from `source` (see the module docs for when it applies).
    pub(super) async fn copy_from(
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
        let policy = self.retry_policy();
        let started = std::time::Instant::now();
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
                // A copy that failed inside a 200 wrote nothing, so it is safe to repeat.
                let failure = Failure::Status {
                    status: 200,
                    code: &err.code,
                    retry_after: None,
                };
                if let Decision::Retry(delay) = retry::decide(
                    &policy,
                    failure,
                    true,
                    attempt,
                    started.elapsed(),
                    retry::jitter(),
                ) {
                    tokio::time::sleep(delay).await;
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
    pub(super) fn copy_failed(
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
}
