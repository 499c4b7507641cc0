//! `storage-check`: what an S3 repository location can do, as a plain report.
//!
//! Atlas 1.x printed "reachable: true" for a missing bucket and the same "supported" flag
//! for both lock modes without testing either. This check says only what it observed:
//! whether the endpoint answered, whether the bucket exists, its versioning and Object
//! Lock state, and — by writing and removing a small probe object — whether the server
//! honours `If-None-Match` (without it, create-if-absent races). It never creates the
//! bucket; a missing bucket is reported with what `atlas init` will do.

use atlas_core::ports::blob_store::DefaultRetention;
use atlas_core::ports::{
    BlobStore, LockMode, PutMode, PutOptions, Retention, StoreError, StoreKey,
};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};

use super::{Req, S3Store};

/// The outcome of [`storage_check`]. `problems` empty means ready.
// Independent yes/no observations, printed one per line; not a state machine.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug)]
pub struct StorageCheckReport {
    /// `s3://bucket/prefix at endpoint`.
    pub location: String,
    /// The endpoint answered HTTP at all.
    pub reachable: bool,
    /// The bucket exists (and the credentials may see it).
    pub bucket_exists: bool,
    /// Versioning is enabled.
    pub versioning: bool,
    /// Object Lock is enabled.
    pub object_lock: bool,
    /// The bucket's default retention, if any.
    pub default_retention: Option<DefaultRetention>,
    /// `Some(true)`: `If-None-Match` is honoured; `Some(false)`: ignored (create-if-absent
    /// is unavailable); `None`: not probed (bucket missing or unreachable).
    pub conditional_writes: Option<bool>,
    /// The lock mode the caller intends to use, if any.
    pub requested_lock: Option<LockMode>,
    /// The real Object Lock probe (only when a lock was requested and the bucket has
    /// Object Lock).
    pub lock_probe: Option<LockProbe>,
    /// What prevents use; empty when ready.
    pub problems: Vec<Problem>,
    /// Observations that do not prevent use.
    pub notes: Vec<String>,
}

/// One thing that prevents use of the bucket.
#[derive(Debug)]
pub struct Problem {
    /// What is wrong, in words (the store error's text, or an observation of the check).
    pub message: String,
    /// The store error behind it, when a request failed: its variant says what it *means*
    /// (bucket missing, bad credentials, wrong region, DNS, TLS …), so a caller can add
    /// what to change in its own terms (the CLI names its `ATLAS_S3_*` setting). `None`
    /// for what the check itself observed (no Object Lock, `If-None-Match` ignored); those
    /// messages say what to do.
    pub cause: Option<StoreError>,
}

impl Problem {
    fn observed(message: String) -> Self {
        Self {
            message,
            cause: None,
        }
    }

    fn failed(context: Option<&str>, cause: StoreError) -> Self {
        Self {
            message: match context {
                Some(c) => format!("{c}: {cause}"),
                None => cause.to_string(),
            },
            cause: Some(cause),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What the Object Lock probe observed: a small object written with the requested mode,
/// then a delete that must be refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockProbe {
    /// Store key of the probe object (relative to the repository's key prefix, like every
    /// key Atlas shows).
    pub key: String,
    /// Its retain-until date (one minute after the write: long enough to test the lock,
    /// short enough that a compliance probe does not linger).
    pub retain_until: DateTime<Utc>,
    /// The put with retention succeeded.
    pub written: bool,
    /// The delete was refused as retained — the lock is really enforced.
    pub delete_refused: bool,
    /// The probe was removed afterwards (GOVERNANCE, with the bypass permission); a
    /// COMPLIANCE probe can only expire.
    pub cleaned_up: bool,
}

impl StorageCheckReport {
    /// Ready for backups with the requested settings.
    pub fn ready(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Check `store` for use with `requested_lock` (None: no Object Lock wanted).
pub async fn storage_check(
    store: &S3Store,
    requested_lock: Option<LockMode>,
) -> StorageCheckReport {
    let inner = &store.inner;
    let mut report = StorageCheckReport {
        location: atlas_core::ports::BlobStore::describe(store),
        reachable: false,
        bucket_exists: false,
        versioning: false,
        object_lock: false,
        default_retention: None,
        conditional_writes: None,
        requested_lock,
        lock_probe: None,
        problems: Vec::new(),
        notes: Vec::new(),
    };
    // GET ?location rather than HEAD: its error responses carry a code to explain.
    let resp = match inner
        .send(Req::new(Method::GET, None).query("location", ""))
        .await
    {
        Ok(resp) => resp,
        Err(e) => {
            report.problems.push(Problem::failed(None, e));
            return report;
        }
    };
    report.reachable = true;
    if !resp.status.is_success() {
        if resp.status == StatusCode::NOT_FOUND && resp.error().code == "NoSuchBucket" {
            report.notes.push(format!(
                "bucket {} does not exist yet; {}",
                inner.cfg.bucket,
                if requested_lock.is_some() {
                    "`atlas init --object-lock` creates it with Object Lock enabled"
                } else {
                    "`atlas init` creates it"
                }
            ));
        } else {
            report.problems.push(Problem::failed(
                None,
                inner.explain(&inner.cfg.bucket, &resp, "check bucket"),
            ));
        }
        return report;
    }
    report.bucket_exists = true;
    match inner.lock_status().await {
        Ok(status) => {
            report.versioning = status.versioning;
            report.object_lock = status.object_lock;
            report.default_retention = status.default_retention;
        }
        Err(e) => report.problems.push(Problem::failed(None, e)),
    }
    if requested_lock.is_some() && !report.object_lock {
        report.problems.push(Problem::observed(format!(
            "Object Lock was requested but is not enabled on bucket {}: retention cannot be \
             enforced; enable Object Lock on the bucket or use a new bucket Atlas creates",
            inner.cfg.bucket
        )));
    }
    if let (Some(mode), true) = (requested_lock, report.object_lock) {
        let probe = probe_lock(store, mode).await;
        report.lock_probe = record_probe(&mut report, mode, probe);
    }
    match inner.probe_conditional_writes().await {
        Ok(true) => report.conditional_writes = Some(true),
        Ok(false) => {
            report.conditional_writes = Some(false);
            report.problems.push(Problem::observed(format!(
                "the server at {} ignores If-None-Match: two writers could both create the same \
                 object (keys, leases), so Atlas refuses to create objects there",
                inner.endpoint.shown
            )));
        }
        Err(e) => report
            .problems
            .push(Problem::failed(Some("could not write a probe object"), e)),
    }
    report
}

/// Turn what the lock probe observed into the report's problems and notes; returns the
/// probe when it ran.
fn record_probe(
    report: &mut StorageCheckReport,
    mode: LockMode,
    probe: Result<LockProbe, StoreError>,
) -> Option<LockProbe> {
    let p = match probe {
        Err(e) => {
            let context = format!("could not write a {mode:?} probe object");
            report.problems.push(Problem::failed(Some(&context), e));
            return None;
        }
        Ok(p) => p,
    };
    match &p {
        p if !p.delete_refused => report.problems.push(Problem::observed(format!(
            "a probe object written with {mode:?} retention could be deleted: the server \
             does not enforce Object Lock, so locked backups would not be protected"
        ))),
        p if p.cleaned_up => report.notes.push(format!(
            "{mode:?} retention probe: the delete of {} was refused as it must be; the probe \
             was then removed with the governance bypass permission",
            p.key
        )),
        p => report.notes.push(format!(
            "{mode:?} retention probe: the delete of {} was refused as it must be; the \
             object stays until {} and can be deleted after that",
            p.key,
            p.retain_until.to_rfc3339()
        )),
    }
    Some(p)
}

/// Write a small object under `mode` retention and try to delete it.
async fn probe_lock(store: &S3Store, mode: LockMode) -> Result<LockProbe, StoreError> {
    let key = StoreKey::new(format!("_atlas/probe/lock-{}", uuid::Uuid::new_v4()))?;
    let retain_until = Utc::now() + chrono::Duration::minutes(1);
    let mut probe = LockProbe {
        key: key.as_str().to_owned(),
        retain_until,
        written: false,
        delete_refused: false,
        cleaned_up: false,
    };
    store
        .put(
            &key,
            Bytes::from_static(b"atlas storage-check lock probe"),
            PutOptions {
                mode: PutMode::Overwrite,
                retention: Some(Retention { mode, retain_until }),
            },
        )
        .await?;
    probe.written = true;
    match store.delete(&key).await {
        Err(StoreError::Retained { .. }) => probe.delete_refused = true,
        Ok(()) => probe.cleaned_up = true,
        Err(e) => return Err(e),
    }
    // Clean up where the mode allows it: a GOVERNANCE probe can be removed by a principal
    // with the bypass permission. Without it the probe simply expires (one minute).
    if probe.delete_refused && mode == LockMode::Governance {
        probe.cleaned_up = store
            .delete_bypassing_governance(&key)
            .await
            .unwrap_or(false);
    }
    Ok(probe)
}
