//! Reading and writing whole objects: put (single request; multipart above the threshold),
//! get, ranged get, head and list.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use atlas_core::ports::{ObjectMeta, PutMode, PutOptions, StoreError, StoreKey};
use bytes::Bytes;
use md5::{Digest as _, Md5};
use reqwest::{Method, StatusCode};

use super::client::{Inner, Req, Resp, io_error};
use super::lock::retention_headers;
use super::xml;

impl Inner {
    pub(super) async fn head_raw(&self, key: &StoreKey) -> Result<Option<Resp>, StoreError> {
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

    pub(super) async fn head_size(&self, key: &StoreKey) -> Result<Option<u64>, StoreError> {
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

    pub(super) fn conditional_refused(&self) -> Option<StoreError> {
        (self.conditional.load(Ordering::Relaxed) == 2).then(|| StoreError::Unsupported {
            what: format!(
                "create-if-absent: the server at {} ignores If-None-Match, so two writers could \
                 both create the same object; use an S3 server that supports conditional writes",
                self.endpoint.shown
            ),
        })
    }

    pub(super) async fn put(
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
        // Kept (a reference, not a copy) for the rare retried Create below.
        let sent = data.clone();
        let mut req = Req::new(Method::PUT, Some(self.full_key(key)))
            .header("content-type", "application/octet-stream")
            .data_body(data, self.cfg.content_md5);
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
                // A single PUT's ETag is the MD5 of its body: computed only on this path.
                if etag == hex::encode(Md5::digest(&sent)) {
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

    pub(super) async fn get(&self, key: &StoreKey) -> Result<Bytes, StoreError> {
        let resp = self
            .send(Req::new(Method::GET, Some(self.full_key(key))))
            .await?;
        if resp.status.is_success() {
            return Ok(resp.body);
        }
        Err(self.explain(key.as_str(), &resp, "read"))
    }

    pub(super) async fn get_range(
        &self,
        key: &StoreKey,
        range: Range<u64>,
    ) -> Result<Bytes, StoreError> {
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

    pub(super) async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
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
}
