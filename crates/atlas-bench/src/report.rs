//! One row of figures per measured step, printed as a table or as JSON.

use serde::{Deserialize, Serialize};

/// Figures of one measured step. `None` means "not meaningful for this step".
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Row {
    /// Scenario (`repo`, `backup`, `browse`, `restore`, `s3`).
    pub scenario: String,
    /// The step, e.g. `full, 0 ms latency`.
    pub step: String,
    /// Wall-clock seconds.
    pub wall_s: f64,
    /// Messages (items) handled.
    pub messages: u64,
    /// MIME (plaintext) bytes handled.
    pub mime_bytes: u64,
    /// Atlas's CPU seconds (user + system) during the step.
    pub atlas_cpu_s: f64,
    /// Simulator child's CPU seconds during the step (when a simulator is involved).
    pub sim_cpu_s: Option<f64>,
    /// Atlas's peak RSS in MiB during the step.
    pub atlas_peak_rss_mib: f64,
    /// Atlas's RSS in MiB when the step started (the floor of its peak).
    pub atlas_start_rss_mib: f64,
    /// Simulator child's peak RSS in MiB during the step.
    pub sim_peak_rss_mib: Option<f64>,
    /// Graph requests the simulator received (token requests excluded).
    pub graph_requests: Option<u64>,
    /// Graph HTTP requests the client sent (its own count, retries and tokens included).
    pub client_requests: Option<u64>,
    /// Seconds the Graph client spent waiting for its own per-mailbox limiter (budget,
    /// concurrency, Retry-After pauses).
    pub client_wait_s: Option<f64>,
    /// Graph requests answered 429/503.
    pub throttled: Option<u64>,
    /// Folders visited (for "requests per folder" of an unchanged incremental).
    pub folders: Option<u64>,
    /// Bytes written to the store.
    pub stored_bytes: Option<u64>,
    /// Objects written to the store.
    pub objects_written: Option<u64>,
    /// Store requests (puts, gets, heads, lists, deletes).
    pub store_requests: Option<u64>,
    /// Graph requests by endpoint kind, as the simulator counted them (`kind=n, …`).
    #[serde(default)]
    pub by_kind: String,
    /// Anything else worth a line (what limited the figure, what was skipped).
    pub note: String,
    /// Graph requests and items per kind of item, as the client counted them (backup
    /// steps of the `kinds` scenario; empty elsewhere).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<KindCost>,
}

/// What one kind of item cost in Graph requests during a step (issue 14): the client's
/// requests sent under the kind (retries included) and the items its delta reported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindCost {
    /// `mail`, `calendar`, `contacts`, `tasks`, `notes`, `config`, or `other` (sign-in,
    /// directory, the mailbox folder tree the kinds other than mail share).
    pub kind: String,
    /// Graph requests.
    pub requests: u64,
    /// Items reported.
    pub items: u64,
}

impl KindCost {
    /// Items per request (`None` without requests).
    pub fn items_per_request(&self) -> Option<f64> {
        per(self.items, self.requests)
    }
}

#[allow(clippy::cast_precision_loss)]
fn per(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

impl Row {
    /// Messages per second.
    #[allow(clippy::cast_precision_loss)]
    pub fn msgs_per_s(&self) -> f64 {
        self.messages as f64 / self.wall_s.max(1e-9)
    }
    /// MIME MB/s (10^6 bytes).
    #[allow(clippy::cast_precision_loss)]
    pub fn mb_per_s(&self) -> f64 {
        self.mime_bytes as f64 / 1e6 / self.wall_s.max(1e-9)
    }
    /// Atlas CPU milliseconds per message.
    #[allow(clippy::cast_precision_loss)]
    pub fn cpu_ms_per_msg(&self) -> Option<f64> {
        (self.messages > 0).then(|| self.atlas_cpu_s * 1000.0 / self.messages as f64)
    }
    /// Graph requests (as the simulator counted them) per message.
    pub fn requests_per_msg(&self) -> Option<f64> {
        per(self.graph_requests?, self.messages)
    }
    /// Graph requests per folder.
    pub fn requests_per_folder(&self) -> Option<f64> {
        per(self.graph_requests?, self.folders?)
    }
    /// Stored bytes per MIME byte.
    pub fn stored_per_mime(&self) -> Option<f64> {
        per(self.stored_bytes?, self.mime_bytes)
    }
    /// Objects written per 1,000 messages.
    pub fn objects_per_1000(&self) -> Option<f64> {
        per(self.objects_written? * 1000, self.messages)
    }
}

/// The whole run: the machine, the sizes and every row.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// CPUs the process may use.
    pub cpus: usize,
    /// Whether `--quick` sizes were used.
    pub quick: bool,
    /// Rows in the order measured.
    pub rows: Vec<RowJson>,
}

/// A row with its derived figures, for JSON.
#[derive(Debug, Clone, Serialize)]
pub struct RowJson {
    /// The measured figures.
    #[serde(flatten)]
    pub row: Row,
    /// Messages per second.
    pub msgs_per_s: f64,
    /// MIME MB/s.
    pub mb_per_s: f64,
    /// Atlas CPU ms per message.
    pub cpu_ms_per_msg: Option<f64>,
    /// Graph requests per message.
    pub graph_requests_per_msg: Option<f64>,
    /// Graph requests per folder.
    pub graph_requests_per_folder: Option<f64>,
    /// Stored bytes per MIME byte.
    pub stored_per_mime_byte: Option<f64>,
    /// Objects written per 1,000 messages.
    pub objects_per_1000_msgs: Option<f64>,
}

impl From<Row> for RowJson {
    fn from(row: Row) -> Self {
        Self {
            msgs_per_s: row.msgs_per_s(),
            mb_per_s: row.mb_per_s(),
            cpu_ms_per_msg: row.cpu_ms_per_msg(),
            graph_requests_per_msg: row.requests_per_msg(),
            graph_requests_per_folder: row.requests_per_folder(),
            stored_per_mime_byte: row.stored_per_mime(),
            objects_per_1000_msgs: row.objects_per_1000(),
            row,
        }
    }
}

fn opt(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |x| format!("{x:.prec$}"))
}

/// The human table: one line per row, then the notes.
pub fn table(rows: &[Row]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<8} {:<46} {:>7} {:>6} {:>7} {:>6} {:>8} {:>5} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}",
        "scenario",
        "step",
        "wall s",
        "msgs",
        "msg/s",
        "MB/s",
        "cpu ms/m",
        "rss0",
        "rss MiB",
        "sim cpu",
        "sim rss",
        "req/msg",
        "st/mime",
        "obj/1k"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<8} {:<46} {:>7.2} {:>6} {:>7.0} {:>6.1} {:>8} {:>5.0} {:>7.1} {:>7} {:>7} {:>7} {:>7} {:>7}",
            r.scenario,
            r.step,
            r.wall_s,
            r.messages,
            r.msgs_per_s(),
            r.mb_per_s(),
            opt(r.cpu_ms_per_msg(), 3),
            r.atlas_start_rss_mib,
            r.atlas_peak_rss_mib,
            opt(r.sim_cpu_s, 1),
            opt(r.sim_peak_rss_mib, 0),
            opt(r.requests_per_msg(), 2),
            opt(r.stored_per_mime(), 2),
            opt(r.objects_per_1000(), 1),
        );
    }
    let per_kind: Vec<&Row> = rows.iter().filter(|r| !r.kinds.is_empty()).collect();
    if !per_kind.is_empty() {
        let _ = writeln!(
            out,
            "\nGraph requests per kind (items = what the kind's delta reported; items/req):"
        );
        for r in per_kind {
            let parts: Vec<String> = r
                .kinds
                .iter()
                .map(|k| match k.items_per_request() {
                    Some(x) if k.items > 0 => {
                        format!("{} {} req, {} items, {x:.2}", k.kind, k.requests, k.items)
                    }
                    _ => format!("{} {} req", k.kind, k.requests),
                })
                .collect();
            let _ = writeln!(out, "  {} / {}: {}", r.scenario, r.step, parts.join("; "));
        }
    }
    let notes: Vec<&Row> = rows.iter().filter(|r| !r.note.is_empty()).collect();
    if !notes.is_empty() {
        let _ = writeln!(out, "\nnotes:");
        for r in notes {
            let _ = writeln!(out, "  {} / {}: {}", r.scenario, r.step, r.note);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_figures_follow_the_counts() {
        let r = Row {
            scenario: "backup".into(),
            step: "full".into(),
            wall_s: 2.0,
            messages: 1000,
            mime_bytes: 90_000_000,
            atlas_cpu_s: 0.25,
            graph_requests: Some(1100),
            folders: Some(10),
            stored_bytes: Some(45_000_000),
            objects_written: Some(8),
            ..Row::default()
        };
        assert!((r.msgs_per_s() - 500.0).abs() < 1e-9);
        assert!((r.mb_per_s() - 45.0).abs() < 1e-9);
        assert_eq!(r.cpu_ms_per_msg(), Some(0.25));
        assert_eq!(r.requests_per_msg(), Some(1.1));
        assert_eq!(r.requests_per_folder(), Some(110.0));
        assert_eq!(r.stored_per_mime(), Some(0.5));
        assert_eq!(r.objects_per_1000(), Some(8.0));
        let empty = Row::default();
        assert_eq!(empty.cpu_ms_per_msg(), None);
        assert_eq!(empty.requests_per_msg(), None);
        let t = table(&[r]);
        assert!(t.contains("backup") && t.contains("0.250") && t.contains("8.0"));
        assert!(!t.contains("per kind"), "no kind figures, no section: {t}");
        let k = Row {
            kinds: vec![
                KindCost {
                    kind: "calendar".into(),
                    requests: 8,
                    items: 20,
                },
                KindCost {
                    kind: "other".into(),
                    requests: 3,
                    items: 0,
                },
            ],
            ..Row::default()
        };
        assert_eq!(k.kinds[0].items_per_request(), Some(2.5));
        assert_eq!(KindCost::default().items_per_request(), None);
        let t = table(&[k]);
        assert!(
            t.contains("calendar 8 req, 20 items, 2.50; other 3 req"),
            "{t}"
        );
    }
}
