//! `atlas storage-check`, and the Object Lock steps of `atlas backup` on S3.
//!
//! Object Lock is requested per backup run (`--retention-days N --lock-mode M`). Before
//! anything is written the bucket is created lock-capable if missing and checked to have
//! Object Lock ([`prepare_backup_retention`]); the core's backup then checks the store can
//! lock, and after each snapshot is committed brings everything it needs to at least that
//! retention (`service::backup::execute`); this file only reports it ([`SnapshotLock`]).

use std::fmt::Write as _;

use atlas_core::ports::{LockMode, Retention};
use atlas_store::s3::storage_check;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::cli::{GlobalArgs, LockModeArg, StorageCheckArgs};
use crate::config::{RepositorySettings, StoreSettings, hints};
use crate::exit::{Exit, UsageError};
use crate::output::{Output, sanitize};

use super::key::{prepare_s3_for_writing, repository_settings, s3_store};
use super::load_config;

fn lock_mode(arg: LockModeArg) -> LockMode {
    match arg {
        LockModeArg::Governance => LockMode::Governance,
        LockModeArg::Compliance => LockMode::Compliance,
    }
}

fn mode_name(mode: LockMode) -> &'static str {
    match mode {
        LockMode::Governance => "governance",
        LockMode::Compliance => "compliance",
    }
}

// Independent observations printed one per line, as in `StorageCheckReport`.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CheckReport {
    location: String,
    ready: bool,
    reachable: bool,
    bucket_exists: bool,
    versioning: bool,
    object_lock: bool,
    default_retention: Option<DefaultRetention>,
    conditional_writes: Option<bool>,
    requested_lock_mode: Option<&'static str>,
    requested_retention_days: Option<u32>,
    lock_probe: Option<ProbeReport>,
    problems: Vec<String>,
    /// What to change for each problem (same order and length as `problems`; `None` when
    /// the problem's text says it already) — the same hints as any other failure of the
    /// store, naming the `ATLAS_S3_*` setting.
    hints: Vec<Option<String>>,
    notes: Vec<String>,
}

/// The bucket's default Object Lock retention.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DefaultRetention {
    mode: &'static str,
    days: u32,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ProbeReport {
    key: String,
    retain_until: DateTime<Utc>,
    delete_refused: bool,
    cleaned_up: bool,
}

/// `atlas storage-check`: what the configured S3 bucket can do, without a backup. Exit 1
/// when it is not ready for backups with the requested settings.
pub async fn storage_check_command(
    global: &GlobalArgs,
    args: &StorageCheckArgs,
    output: Output,
) -> anyhow::Result<Exit> {
    let config = load_config(global)?;
    let settings = repository_settings(&config)?;
    let StoreSettings::S3(s3) = &settings.store else {
        return Err(UsageError(
            "storage-check checks S3 storage, and no S3 settings (ATLAS_S3_*) are given; a \
             local repository cannot lock data"
                .to_owned(),
        )
        .into());
    };
    let store = s3_store(s3)?;
    let requested = args.lock_mode.map(lock_mode);
    let r = storage_check(&store, requested).await;
    let report = CheckReport {
        location: r.location.clone(),
        ready: r.ready(),
        reachable: r.reachable,
        bucket_exists: r.bucket_exists,
        versioning: r.versioning,
        object_lock: r.object_lock,
        default_retention: r.default_retention.map(|d| DefaultRetention {
            mode: mode_name(d.mode),
            days: d.days,
        }),
        conditional_writes: r.conditional_writes,
        requested_lock_mode: requested.map(mode_name),
        requested_retention_days: args.retention_days,
        lock_probe: r.lock_probe.as_ref().map(|p| ProbeReport {
            key: p.key.clone(),
            retain_until: p.retain_until,
            delete_refused: p.delete_refused,
            cleaned_up: p.cleaned_up,
        }),
        problems: r.problems.iter().map(|p| p.message.clone()).collect(),
        hints: r
            .problems
            .iter()
            .map(|p| p.cause.as_ref().and_then(hints::for_store_error))
            .collect(),
        notes: r.notes.clone(),
    };
    output.result(&report, || render_check(&report))?;
    Ok(if report.ready {
        Exit::Success
    } else {
        Exit::Failure
    })
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn render_check(r: &CheckReport) -> String {
    let mut s = format!("Storage: {}\n", sanitize(&r.location));
    let _ = writeln!(s, "  reachable:          {}", yes_no(r.reachable));
    let _ = writeln!(s, "  bucket exists:      {}", yes_no(r.bucket_exists));
    if r.bucket_exists {
        let _ = writeln!(s, "  versioning:         {}", yes_no(r.versioning));
        let _ = writeln!(s, "  Object Lock:        {}", yes_no(r.object_lock));
        let _ = writeln!(
            s,
            "  default retention:  {}",
            r.default_retention.as_ref().map_or_else(
                || "none".to_owned(),
                |d| format!("{} {} days", d.mode, d.days)
            )
        );
        let _ = writeln!(
            s,
            "  conditional writes: {}",
            r.conditional_writes.map_or("not probed", yes_no)
        );
    }
    if let Some(mode) = r.requested_lock_mode {
        let probe = match &r.lock_probe {
            Some(p) if p.delete_refused => "works (probe delete refused)",
            Some(_) => "NOT enforced (probe deleted)",
            None => "not probed",
        };
        let _ = writeln!(
            s,
            "  {mode} lock:{:width$}{probe}",
            "",
            width = 9 - mode.len().min(9) + 2
        );
    }
    for n in &r.notes {
        let _ = writeln!(s, "note: {}", sanitize(n));
    }
    for (p, hint) in r.problems.iter().zip(&r.hints) {
        let _ = writeln!(s, "problem: {}", sanitize(p));
        if let Some(hint) = hint {
            let _ = writeln!(s, "  hint: {}", sanitize(hint));
        }
    }
    s.push_str(if r.ready {
        "READY for backups with these settings"
    } else {
        "NOT READY: fix the problems above"
    });
    s
}

/// For `atlas backup --retention-days N --lock-mode M`: refuse a local repository; on S3
/// create the bucket (lock-capable when locking is asked) and, when locking is asked,
/// check that the bucket can enforce it — all before the backup writes anything. Returns
/// the retention every snapshot of the run must get. `retain_until` is fixed once for the
/// whole run, as Atlas 1.x did, so every object of the run gets the same date. Does
/// nothing for a local repository without locking.
pub(super) async fn prepare_backup_retention(
    settings: &RepositorySettings,
    days: Option<u32>,
    mode: Option<LockModeArg>,
) -> anyhow::Result<Option<Retention>> {
    let wanted = match (days, mode) {
        (Some(days), Some(mode)) => Some(Retention {
            mode: lock_mode(mode),
            retain_until: Utc::now() + Duration::days(i64::from(days)),
        }),
        (None, None) => None,
        _ => {
            return Err(
                UsageError("--retention-days and --lock-mode go together".to_owned()).into(),
            );
        }
    };
    if wanted.is_some() && matches!(settings.store, StoreSettings::Local { .. }) {
        return Err(UsageError(
            "--retention-days/--lock-mode need S3 storage with Object Lock; a local repository cannot enforce retention, so nothing was written"
                .into(),
        )
        .into());
    }
    prepare_s3_for_writing(settings, wanted.is_some()).await?;
    Ok(wanted)
}

/// One snapshot's Object Lock outcome, for the backup report.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SnapshotLock {
    pub snapshot: String,
    pub mode: &'static str,
    pub requested_until: DateTime<Utc>,
    pub effective_until: Option<DateTime<Utc>>,
    pub objects: usize,
    pub error: Option<String>,
}

/// The report line of one snapshot the core's backup locked (or failed to lock).
impl From<&atlas_core::service::backup::SnapshotLock> for SnapshotLock {
    fn from(l: &atlas_core::service::backup::SnapshotLock) -> Self {
        let (effective_until, objects, error) = match &l.result {
            Ok(r) => (Some(r.effective_until), r.objects, None),
            Err(e) => (None, 0, Some(format!("{e}"))),
        };
        Self {
            snapshot: l.snapshot.to_string(),
            mode: mode_name(l.requested.mode),
            requested_until: l.requested.retain_until,
            effective_until,
            objects,
            error,
        }
    }
}

/// The backup report's Object Lock lines (empty without locking).
pub(super) fn render_locks(locks: &[SnapshotLock]) -> String {
    let mut s = String::new();
    for l in locks {
        match (&l.effective_until, &l.error) {
            (Some(until), _) => {
                let _ = write!(
                    s,
                    "\nObject Lock ({}) on snapshot {}: {} objects retained until at least {}",
                    l.mode,
                    l.snapshot,
                    l.objects,
                    crate::output::time(*until)
                );
            }
            (None, error) => {
                let _ = write!(
                    s,
                    "\nObject Lock FAILED on snapshot {}: {}; the snapshot is readable but not protected — run the backup again",
                    l.snapshot,
                    sanitize(error.as_deref().unwrap_or("unknown error"))
                );
            }
        }
    }
    s
}
