//! What an unattended run leaves behind for whoever watches it (docs/OPERATIONS.md):
//! `--report FILE` (the run's JSON document), `--metrics-file FILE` (Prometheus text) and
//! `--notify-url URL` (the document POSTed to a webhook), on backup, verify, forget and
//! replicate.
//!
//! All three are derived from the one document the command prints with `--json` (kept by
//! [`crate::output::Tap`] whether or not `--json` is given), or from the error document
//! when the run failed — so report, metrics and notification always agree with each other
//! and with the documented schema (docs/schemas/atlas.schema.json).
//!
//! Files are written atomically (a temporary file in the same directory, flushed to disk,
//! renamed over the old one), so a collector never reads half a file and a crash leaves
//! the previous one. Their directories are checked before the command runs, so a typo in a
//! path is a usage error at once, not after a night of backing up. A file that still cannot
//! be written at the end turns a successful run's exit code into 1 (monitoring is broken
//! and cron should say so); the notification never changes the exit code.

pub mod metrics;
pub mod notify;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use chrono::{DateTime, Utc};

use crate::cli::MonitorArgs;
use crate::console::note;
use crate::exit::{Exit, UsageError};
use crate::output::sanitize;

/// A run being monitored: what was asked for and when the run started.
#[derive(Debug)]
pub struct Monitor {
    command: &'static str,
    args: MonitorArgs,
    started: Instant,
    /// Trust and proxies for the webhook: the configured ones (ATLAS_CA_FILE,
    /// HTTPS_PROXY, …), or the defaults when the configuration cannot be read (the command
    /// reports that itself, and the failure is worth notifying).
    net: atlas_net::NetOptions,
}

impl Monitor {
    /// Monitoring of `command` as `args` ask, for the tenant of `-t` (if any); `None`
    /// when nothing was asked for.
    pub fn new(command: &'static str, args: &MonitorArgs, tenant: Option<&str>) -> Option<Self> {
        args.any().then(|| Self {
            command,
            args: args.clone(),
            started: Instant::now(),
            net: network(tenant).unwrap_or_default(),
        })
    }

    /// Check, before the run, that the files can be written where asked.
    pub fn preflight(&self) -> Result<(), UsageError> {
        for (option, kind, path) in [
            ("--report", Written::Report, &self.args.report),
            ("--metrics-file", Written::Metrics, &self.args.metrics_file),
        ] {
            let Some(path) = path else { continue };
            check_writable(path)
                .and_then(|()| check_replaceable(path, kind))
                .map_err(|reason| {
                    UsageError(format!(
                        "{option} {}: {reason}",
                        sanitize(&path.display().to_string())
                    ))
                })?;
        }
        Ok(())
    }

    /// After the run: write the report and the metrics, send the notification. Returns the
    /// exit code, which only a file that could not be written changes (to 1, from 0).
    pub async fn finish(self, document: Option<serde_json::Value>, exit: Exit) -> Exit {
        let finished: DateTime<Utc> = Utc::now();
        let document = document
            .unwrap_or_else(|| serde_json::json!({"schemaVersion": crate::output::SCHEMA_VERSION}));
        let mut text = serde_json::to_vec(&document).unwrap_or_default();
        text.push(b'\n');
        let mut files_ok = true;
        if let Some(path) = &self.args.report {
            if let Err(e) = write_atomically(path, &text, 0o600) {
                note!("error: writing the report: {}", sanitize(&format!("{e:#}")));
                files_ok = false;
            }
        }
        if let Some(path) = &self.args.metrics_file {
            let previous = std::fs::read_to_string(path).ok();
            let facts = metrics::RunFacts {
                command: self.command,
                document: &document,
                exit_code: exit.code(),
                finished,
                duration_seconds: self.started.elapsed().as_secs_f64(),
            };
            let body = metrics::render(&facts, previous.as_deref());
            // The textfile collector runs as its own user: readable by all unless the
            // existing file says otherwise.
            if let Err(e) = write_atomically(path, body.as_bytes(), 0o644) {
                note!(
                    "error: writing the metrics: {}",
                    sanitize(&format!("{e:#}"))
                );
                files_ok = false;
            }
        }
        if let Some(url) = &self.args.notify_url {
            if let Err(reason) =
                notify::post(url, text, &self.net, &notify::Policy::default()).await
            {
                note!(
                    "warning: the notification to {} was not delivered: {}",
                    notify::shown(url),
                    sanitize(&reason)
                );
            }
        }
        if !files_ok && exit == Exit::Success {
            Exit::Failure
        } else {
            exit
        }
    }
}

/// The configured network settings, if the configuration can be read.
fn network(tenant: Option<&str>) -> Option<atlas_net::NetOptions> {
    let inputs = crate::config::Inputs::from_process(tenant.map(str::to_owned)).ok()?;
    crate::config::Config::load(&inputs).ok()?.network().ok()
}

/// What a monitoring file holds, to recognise one Atlas wrote before.
#[derive(Debug, Clone, Copy)]
enum Written {
    Report,
    Metrics,
}

/// How much of an existing file is read to recognise it.
const SNIFF_BYTES: u64 = 64 * 1024;

/// Whether the file at `path` may be replaced: it does not exist, is empty, or is one
/// Atlas wrote before (a JSON document with `schemaVersion` for `--report`, Prometheus
/// text with `atlas_` metrics for `--metrics-file`). Anything else is somebody's file: a
/// mistyped path must never destroy it (the rule `save -y` follows, issue 11).
fn check_replaceable(path: &Path, kind: Written) -> Result<(), String> {
    use std::io::Read as _;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot inspect it: {e}")),
    };
    if !meta.is_file() {
        return Err("exists and is not a regular file; give the path of a new file".into());
    }
    if meta.len() == 0 {
        return Ok(());
    }
    let mut head = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(SNIFF_BYTES).read_to_end(&mut head))
        .map_err(|e| format!("cannot read it: {e}"))?;
    let text = String::from_utf8_lossy(&head);
    let ours = match kind {
        Written::Report => text.trim_start().starts_with('{') && text.contains("\"schemaVersion\""),
        Written::Metrics => text.lines().any(|line| {
            line.starts_with("atlas_")
                || line.starts_with("# HELP atlas_")
                || line.starts_with("# TYPE atlas_")
        }),
    };
    if ours {
        Ok(())
    } else {
        let what = match kind {
            Written::Report => "an Atlas report",
            Written::Metrics => "an Atlas metrics file",
        };
        Err(format!(
            "an existing file that is not {what}; Atlas replaces only a file it wrote \
             itself — remove it or give another path"
        ))
    }
}

/// Whether a file can be created next to `path` (its directory exists and is writable).
fn check_writable(path: &Path) -> Result<(), String> {
    if path.is_dir() {
        return Err("is a directory".into());
    }
    let dir = parent(path);
    if !dir.is_dir() {
        return Err(format!("the directory {} does not exist", dir.display()));
    }
    tempfile::Builder::new()
        .prefix(".atlas-probe-")
        .tempfile_in(&dir)
        .map(drop)
        .map_err(|e| format!("cannot write in {}: {e}", dir.display()))
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Replace `path` with `bytes` atomically: temporary file in the same directory, flushed,
/// renamed over `path`, directory flushed. The file keeps the permissions of the one it
/// replaces; a new one gets `mode`.
fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let dir = parent(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A leading dot: node_exporter's textfile collector reads only `*.prom`, other
    // watchers skip hidden files.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(&dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    set_mode(tmp.as_file(), path, mode)?;
    tmp.persist(path)
        .with_context(|| format!("replacing {}", path.display()))?;
    // The rename is durable once the directory is (best effort: not every filesystem lets
    // a directory be opened for this).
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(unix)]
fn set_mode(file: &std::fs::File, replaced: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(replaced).map_or(mode, |m| m.permissions().mode() & 0o7777);
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .context("setting the file's permissions")
}

#[cfg(not(unix))]
fn set_mode(_file: &std::fs::File, _replaced: &Path, _mode: u32) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check_writable, write_atomically};

    #[test]
    fn an_atomic_write_replaces_the_file_and_keeps_its_permissions() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("atlas.prom");
        write_atomically(&path, b"one\n", 0o644).expect("written");
        assert_eq!(std::fs::read(&path).expect("read"), b"one\n");
        let mode =
            |p: &std::path::Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o644);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        write_atomically(&path, b"two\n", 0o644).expect("written");
        assert_eq!(std::fs::read(&path).expect("read"), b"two\n");
        assert_eq!(mode(&path), 0o640);
        // Nothing else is left in the directory.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["atlas.prom"]);
    }

    #[test]
    fn a_missing_directory_is_found_before_the_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(check_writable(&dir.path().join("r.json")).is_ok());
        let err = check_writable(&dir.path().join("nope/r.json")).expect_err("refused");
        assert!(err.contains("does not exist"), "{err}");
        assert!(check_writable(dir.path()).is_err());
    }
}
