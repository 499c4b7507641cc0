//! `--metrics-file`: the run as Prometheus metrics in the text exposition format, for
//! node_exporter's textfile collector (or anything that reads `*.prom` files).
//!
//! Everything here is a pure function of the run's JSON document (the `--json` one, so
//! metrics and report never disagree), its exit code, end time and duration, and the
//! previous file's text. Names follow Prometheus's conventions: `atlas_` prefix, the
//! command, base units as suffixes (`_seconds`, `_bytes`, `_timestamp_seconds`), gauges
//! only — every value describes the last run, not a running total.
//!
//! **Last success survives failure.** `atlas_backup_last_success_timestamp_seconds{mailbox}`
//! is the end of the mailbox's newest complete snapshot: the backup document names it for
//! every mailbox it touched, read from the repository (so it is right even when the
//! previous file was lost or written by another machine); for mailboxes the run did not
//! reach — a run that failed before opening the repository, a `-m` run of one mailbox — it
//! is carried over from the previous file. Likewise the run-level
//! `atlas_<command>_last_success_timestamp_seconds` (end of the last run that exited 0).
//! An alert on `time() - atlas_backup_last_success_timestamp_seconds > 86400 * 1.5` thus
//! fires for a mailbox whose backups keep failing, not only for one whose backups stopped.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// What the metrics are computed from.
#[derive(Debug, Clone, Copy)]
pub struct RunFacts<'a> {
    /// `backup`, `verify`, `forget` or `replicate`.
    pub command: &'a str,
    /// The run's document (`--json` output, or the error document).
    pub document: &'a Value,
    /// The process exit code.
    pub exit_code: u8,
    /// When the run ended.
    pub finished: DateTime<Utc>,
    /// How long it took, in seconds.
    pub duration_seconds: f64,
}

/// The metrics file's text for this run, `previous` being the text the file held before
/// (if any).
pub fn render(run: &RunFacts<'_>, previous: Option<&str>) -> String {
    let previous = previous.map(parse).unwrap_or_default();
    let cmd = run.command;
    let mut out = Families::default();

    let run_success = format!("atlas_{cmd}_last_success_timestamp_seconds");
    let finished = timestamp(run.finished);
    let last_success = if run.exit_code == 0 {
        Some(finished)
    } else {
        previous.get(&(run_success.clone(), None)).copied()
    };
    out.gauge(
        &format!("atlas_{cmd}_last_run_timestamp_seconds"),
        "End of the last run, in seconds since the Unix epoch.",
        None,
        finished,
    );
    out.gauge(
        &format!("atlas_{cmd}_last_run_duration_seconds"),
        "Duration of the last run.",
        None,
        run.duration_seconds,
    );
    out.gauge(
        &format!("atlas_{cmd}_last_run_exit_code"),
        "Exit code of the last run: 0 success, 1 failure, 2 partial success, 3 bad usage or configuration.",
        None,
        f64::from(run.exit_code),
    );
    if let Some(t) = last_success {
        out.gauge(
            &run_success,
            "End of the last run that exited 0, in seconds since the Unix epoch (kept across failed runs).",
            None,
            t,
        );
    }
    if cmd == "backup" {
        backup(run, &previous, &mut out);
    }
    out.render()
}

/// Per-mailbox and Graph figures of a backup document.
fn backup(run: &RunFacts<'_>, previous: &Previous, out: &mut Families) {
    const LAST_SUCCESS: &str = "atlas_backup_last_success_timestamp_seconds";
    let doc = run.document;
    let mut last_success: BTreeMap<String, f64> = previous
        .iter()
        .filter(|((name, _), _)| name == LAST_SUCCESS)
        .filter_map(|((_, mailbox), v)| mailbox.clone().map(|m| (m, *v)))
        .collect();

    let mailboxes = doc["mailboxes"].as_array().map_or(&[][..], Vec::as_slice);
    for m in mailboxes {
        let Some(mailbox) = m["mailbox"].as_str() else {
            continue;
        };
        if let Some(t) = m["lastComplete"]["finished"].as_str().and_then(parse_time) {
            let entry = last_success.entry(mailbox.to_owned()).or_insert(t);
            *entry = entry.max(t);
        }
        mailbox_figures(mailbox, m, out);
    }
    for (mailbox, t) in &last_success {
        out.gauge(
            LAST_SUCCESS,
            "End of the mailbox's newest complete snapshot, in seconds since the Unix epoch (kept across failed runs).",
            Some(mailbox),
            *t,
        );
    }

    graph_figures(&doc["graph"], out);
    let skipped = doc["skipped"].as_array().map_or(0, Vec::len);
    if doc["skipped"].is_array() {
        out.gauge(
            "atlas_backup_skipped_mailboxes",
            "Mailboxes the last tenant-wide backup skipped (not selected by --kinds, or without an Exchange mailbox).",
            None,
            count(skipped as u64),
        );
    }
}

/// The figures of one mailbox line of a backup document.
fn mailbox_figures(mailbox: &str, m: &Value, out: &mut Families) {
    let label = Some(mailbox);
    let success = m["result"] == "complete";
    out.gauge(
        "atlas_backup_mailbox_success",
        "Whether the mailbox's last backup produced a complete snapshot (1) or not (0: partial or failed).",
        label,
        f64::from(u8::from(success)),
    );
    let summary = &m["summary"];
    let errors: u64 = summary["folders"].as_array().map_or(0, |fs| {
        fs.iter()
            .map(|f| f["errors"].as_array().map_or(0, |e| e.len() as u64))
            .sum()
    });
    out.gauge(
        "atlas_backup_mailbox_errors",
        "Items of the mailbox that failed in the last backup (1 and no items when the whole mailbox failed).",
        label,
        count(errors + u64::from(m["result"] == "failed")),
    );
    if summary.is_object() {
        let figures = [
            (
                "atlas_backup_mailbox_items",
                "Messages in the snapshot the last backup wrote.",
                summary["folders"].as_array().map_or(0, |fs| {
                    fs.iter().map(|f| f["stored"].as_u64().unwrap_or(0)).sum()
                }),
            ),
            (
                "atlas_backup_mailbox_downloaded_items",
                "Messages the last backup downloaded.",
                summary["downloaded"].as_u64().unwrap_or(0),
            ),
            (
                "atlas_backup_mailbox_downloaded_bytes",
                "Bytes of MIME the last backup downloaded.",
                summary["bytesDownloaded"].as_u64().unwrap_or(0),
            ),
            (
                "atlas_backup_mailbox_stored_bytes",
                "New bytes the last backup wrote to the repository (after dedup and compression).",
                summary["bytesStored"].as_u64().unwrap_or(0),
            ),
        ];
        for (name, help, value) in figures {
            out.gauge(name, help, label, count(value));
        }
    }
    if let Some(ms) = m["durationMs"].as_u64() {
        out.gauge(
            "atlas_backup_mailbox_duration_seconds",
            "Duration of the mailbox's last backup (start of its run to its snapshot's commit).",
            label,
            count(ms) / 1000.0,
        );
    }
}

/// The Graph figures of a backup document.
fn graph_figures(graph: &Value, out: &mut Families) {
    if graph.is_object() {
        let figures = [
            (
                "atlas_backup_graph_requests",
                "Microsoft Graph requests of the last backup.",
                count(graph["requests"].as_u64().unwrap_or(0)),
            ),
            (
                "atlas_backup_graph_retries",
                "Graph requests retried in the last backup.",
                count(graph["retries"].as_u64().unwrap_or(0)),
            ),
            (
                "atlas_backup_graph_throttled_responses",
                "Graph responses of the last backup that asked to wait (429/503 with Retry-After).",
                count(graph["throttled"].as_u64().unwrap_or(0)),
            ),
            (
                "atlas_backup_graph_throttle_wait_seconds",
                "Time the last backup waited because Graph throttled it.",
                count(graph["throttleWaitMs"].as_u64().unwrap_or(0)) / 1000.0,
            ),
            (
                "atlas_backup_graph_received_bytes",
                "Bytes received from Graph by the last backup.",
                count(graph["bytesReceived"].as_u64().unwrap_or(0)),
            ),
        ];
        for (name, help, value) in figures {
            out.gauge(name, help, None, value);
        }
    }
}

#[allow(clippy::cast_precision_loss)] // Counts far below 2^52.
fn count(v: u64) -> f64 {
    v as f64
}

#[allow(clippy::cast_precision_loss)] // Milliseconds since 1970 fit in f64 exactly.
fn timestamp(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

fn parse_time(text: &str) -> Option<f64> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| timestamp(t.with_timezone(&Utc)))
}

/// Metric families in the order first seen, each with its samples.
#[derive(Debug, Default)]
struct Families {
    order: Vec<String>,
    /// Name → (help, samples).
    families: BTreeMap<String, (String, Vec<Labelled>)>,
}

/// A sample's `mailbox` label (if any) and value.
type Labelled = (Option<String>, f64);

impl Families {
    fn gauge(&mut self, name: &str, help: &str, mailbox: Option<&str>, value: f64) {
        let family = self.families.entry(name.to_owned()).or_insert_with(|| {
            self.order.push(name.to_owned());
            (help.to_owned(), Vec::new())
        });
        family.1.push((mailbox.map(str::to_owned), value));
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for name in &self.order {
            let (help, samples) = &self.families[name];
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            for (mailbox, value) in samples {
                match mailbox {
                    Some(m) => {
                        let _ = writeln!(out, "{name}{{mailbox=\"{}\"}} {value}", escape(m));
                    }
                    None => {
                        let _ = writeln!(out, "{name} {value}");
                    }
                }
            }
        }
        out
    }
}

/// A label value as the exposition format wants it: `\`, `"` and line feeds escaped.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Samples of a previous file: (metric name, mailbox label) → value. Only what this module
/// wrote is understood (one optional `mailbox` label); anything else is skipped.
type Previous = BTreeMap<(String, Option<String>), f64>;

fn parse(text: &str) -> Previous {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(parse_sample)
        .collect()
}

fn parse_sample(line: &str) -> Option<((String, Option<String>), f64)> {
    let line = line.trim();
    if let Some((name, rest)) = line.split_once('{') {
        let rest = rest.strip_prefix("mailbox=\"")?;
        let mut mailbox = String::new();
        let mut chars = rest.chars();
        loop {
            match chars.next()? {
                '\\' => match chars.next()? {
                    'n' => mailbox.push('\n'),
                    c => mailbox.push(c),
                },
                '"' => break,
                c => mailbox.push(c),
            }
        }
        let rest: String = chars.collect();
        let value = rest.strip_prefix('}')?.trim().parse().ok()?;
        Some(((name.to_owned(), Some(mailbox)), value))
    } else {
        let (name, value) = line.split_once(' ')?;
        Some(((name.to_owned(), None), value.trim().parse().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone as _, Utc};
    use serde_json::json;

    use super::{RunFacts, escape, parse, render};

    fn facts(doc: &serde_json::Value, exit_code: u8, hour: u32) -> RunFacts<'_> {
        RunFacts {
            command: "backup",
            document: doc,
            exit_code,
            finished: Utc
                .with_ymd_and_hms(2026, 5, 1, hour, 0, 0)
                .single()
                .expect("valid"),
            duration_seconds: 12.5,
        }
    }

    #[test]
    fn label_values_are_escaped_and_read_back() {
        let odd = "a\"b\\c\nd@contoso.com";
        let line = format!("x{{mailbox=\"{}\"}} 3", escape(odd));
        let parsed = parse(&line);
        assert_eq!(parsed.get(&("x".into(), Some(odd.into()))), Some(&3.0));
    }

    #[test]
    fn a_failed_run_keeps_the_last_success_of_the_run_and_of_each_mailbox() {
        let ok = json!({
            "mailboxes": [{"mailbox": "a@contoso.com", "result": "complete",
                           "lastComplete": {"finished": "2026-05-01T01:00:00Z"}}],
            "graph": {"requests": 3, "retries": 0, "throttled": 0, "throttleWaitMs": 0, "bytesReceived": 10},
            "skipped": []
        });
        let first = render(&facts(&ok, 0, 1), None);
        assert!(
            first.contains("atlas_backup_last_success_timestamp_seconds 1777597200\n"),
            "{first}"
        );
        assert!(
            first.contains("atlas_backup_last_success_timestamp_seconds{mailbox=\"a@contoso.com\"} 1777597200\n"),
            "{first}"
        );
        // The next run fails before it reaches any mailbox.
        let failed = json!({"error": {"message": "x", "kind": "failure", "exitCode": 1}});
        let second = render(&facts(&failed, 1, 2), Some(&first));
        assert!(
            second.contains("atlas_backup_last_run_exit_code 1\n"),
            "{second}"
        );
        assert!(
            second.contains("atlas_backup_last_run_timestamp_seconds 1777600800\n"),
            "{second}"
        );
        assert!(
            second.contains("atlas_backup_last_success_timestamp_seconds 1777597200\n"),
            "{second}"
        );
        assert!(
            second.contains("atlas_backup_last_success_timestamp_seconds{mailbox=\"a@contoso.com\"} 1777597200\n"),
            "{second}"
        );
        assert!(!second.contains("atlas_backup_mailbox_success"), "{second}");
    }
}
