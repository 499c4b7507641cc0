//! Multipart uploads for objects above the threshold: parts in parallel, each with its own
//! integrity header; any failure aborts the upload so no parts linger.

use std::sync::Arc;

use atlas_core::ports::{PutMode, PutOptions, StoreError, StoreKey};
use bytes::Bytes;
use reqwest::{Method, StatusCode};
use tokio::task::JoinSet;

use super::client::{Inner, Req, crc32c_base64, io_error};
use super::lock::retention_headers;
use super::xml;

/// S3's largest part count.
const MAX_PARTS: u64 = 10_000;

impl Inner {
    pub(super) fn part_size_for(&self, len: u64) -> u64 {
        let mut part = self.cfg.part_size;
        while len.div_ceil(part) > MAX_PARTS {
            part *= 2;
        }
        part
    }

    pub(super) async fn put_multipart(
        self: &Arc<Self>,
        key: &StoreKey,
        data: Bytes,
        opts: PutOptions,
    ) -> Result<(), StoreError> {
        let full_key = self.full_key(key);
        let mut create = Req::new(Method::POST, Some(full_key.clone()))
            .query("uploads", "")
            .header("content-type", "application/octet-stream");
        if !self.cfg.content_md5 {
            // Parts then carry CRC32C checksums, and CompleteMultipartUpload lists them.
            create = create.header("x-amz-checksum-algorithm", "CRC32C");
        }
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

    pub(super) async fn upload_parts_and_complete(
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
            let checksum = (!self.cfg.content_md5).then(|| crc32c_base64(&chunk));
            let req = Req::new(Method::PUT, Some(full_key.to_string()))
                .query("partNumber", &(index + 1).to_string())
                .query("uploadId", upload_id);
            let req = match &checksum {
                Some(crc) => req
                    .header("x-amz-sdk-checksum-algorithm", "CRC32C")
                    .header("x-amz-checksum-crc32c", crc.clone())
                    .body(chunk),
                None => req.body_with_md5(chunk),
            };
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
                Ok((index, etag, checksum))
            });
        }
        let mut parts = vec![(String::new(), None); tasks.len()];
        while let Some(joined) = tasks.join_next().await {
            let (index, etag, checksum) = joined.map_err(|e| {
                io_error(
                    std::io::ErrorKind::Other,
                    key.as_str(),
                    format!("upload part task failed: {e}"),
                )
            })??;
            parts[index] = (etag, checksum);
        }
        let body = Bytes::from(xml::complete_multipart_body(&parts));
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
}
