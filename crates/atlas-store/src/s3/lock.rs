//! Versions and Object Lock: retention on write, reading and extending retention, the
//! bucket's lock configuration, and deletes that remove every version of a key on a
//! versioned bucket (oldest first, the current one last).

use atlas_core::ports::blob_store::{DefaultRetention, LockStatus};
use atlas_core::ports::{LockMode, Retention, StoreError, StoreKey};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};

use super::client::{Inner, Req, Resp, io_error};
use super::xml;

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

/// S3's date format for retention (`2030-01-02T03:04:05Z`), rounded *up* to whole seconds
/// so formatting can never shorten a retention.
pub(super) fn retain_until_str(at: DateTime<Utc>) -> String {
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

pub(super) fn retention_headers(r: &Retention) -> [(String, String); 2] {
    [
        ("x-amz-object-lock-mode".into(), mode_str(r.mode).into()),
        (
            "x-amz-object-lock-retain-until-date".into(),
            retain_until_str(r.retain_until),
        ),
    ]
}

pub(super) fn retention_from_headers(resp: &Resp) -> Option<Retention> {
    let mode = parse_mode(resp.header("x-amz-object-lock-mode")?)?;
    let until = DateTime::parse_from_rfc3339(resp.header("x-amz-object-lock-retain-until-date")?)
        .ok()?
        .with_timezone(&Utc);
    Some(Retention {
        mode,
        retain_until: until,
    })
}

impl Inner {
    pub(super) fn retention_refused(&self, key: &str, resp: &Resp) -> Option<StoreError> {
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

    pub(super) async fn is_versioned(&self) -> Result<bool, StoreError> {
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
    pub(super) async fn versioning_status(&self) -> Result<Option<String>, StoreError> {
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

    pub(super) async fn versions(&self, full_key: &str) -> Result<Vec<ObjectVersion>, StoreError> {
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

    pub(super) async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
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
    pub(super) async fn delete_version(
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

    pub(super) async fn retention(&self, key: &StoreKey) -> Result<Option<Retention>, StoreError> {
        match self.head_raw(key).await? {
            Some(resp) => Ok(retention_from_headers(&resp)),
            None => Err(StoreError::NotFound {
                key: key.to_string(),
            }),
        }
    }

    pub(super) async fn extend_retention(
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

    pub(super) async fn lock_status(&self) -> Result<LockStatus, StoreError> {
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
}
