//! Everything the binary prints on stdout: human tables or `--json`, always sanitized.
//!
//! Strings that come from outside — mailbox names, folder names, subjects, paths from a
//! config file, error texts from a server — can carry terminal escape sequences that
//! rewrite the screen or hide text. Every such string passes through [`sanitize`] before it
//! is printed. JSON output needs no sanitizing (serde escapes control characters), so the
//! raw value is kept there for machines.
//!
//! Logs and diagnostics go to stderr through `tracing`; stdout carries only results, so
//! `atlas … --json | jq` always sees a clean document.
//!
//! Every `--json` document follows one convention (docs/JSON.md, with a JSON Schema per
//! document under docs/schemas/): one object per run, camelCase keys as Microsoft Graph
//! and Atlas 1.x use them, a `schemaVersion`, sizes as integer bytes, timestamps as RFC
//! 3339 in UTC, lists complete (or paged explicitly), and a failure as an `error` object.

use std::borrow::Cow;
use std::io::Write;

use serde::Serialize;

/// Replace control characters and bidirectional overrides with `U+FFFD`, so an untrusted
/// string prints as one inert line.
pub fn sanitize(s: &str) -> Cow<'_, str> {
    sanitize_impl(s, false)
}

/// Like [`sanitize`] but keeps line breaks and tabs, for multi-line messages we compose
/// ourselves (error reports) that embed untrusted fragments.
pub fn sanitize_multiline(s: &str) -> Cow<'_, str> {
    sanitize_impl(s, true)
}

fn sanitize_impl(s: &str, keep_newlines: bool) -> Cow<'_, str> {
    let bad = |c: char| {
        let allowed_ws = keep_newlines && (c == '\n' || c == '\t');
        !allowed_ws && (c.is_control() || is_bidi_control(c))
    };
    if s.chars().any(bad) {
        Cow::Owned(
            s.chars()
                .map(|c| if bad(c) { '\u{FFFD}' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(s)
    }
}

/// Bidi embedding/override/isolate controls can make a subject display reversed
/// ("Trojan Source"); they have no business in a terminal listing.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

// ----- Human units ---------------------------------------------------------------------
//
// Text output speaks like a person: sizes in the largest binary unit that keeps the number
// at least 1 (B, KiB, MiB, GiB, TiB), times in the local time zone with the zone shown.
// `--json` keeps integer bytes and UTC (docs/JSON.md).

/// A size for people: `512 B`, `1.5 KiB`, `12.3 MiB`, `1.0 GiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    #[allow(clippy::cast_precision_loss)] // Display only.
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    // Move up while the rounded value would read 1024 or more of this unit.
    while value >= 1023.95 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A rate for people: whole numbers from 10 up, one decimal below (`3.4 items/s`).
pub fn rate(per_second: f64, unit: &str) -> String {
    if per_second >= 9.95 {
        format!("{per_second:.0} {unit}/s")
    } else {
        format!("{per_second:.1} {unit}/s")
    }
}

/// A byte rate for people: `12.3 MiB/s`.
pub fn byte_rate(bytes: u64, seconds: f64) -> String {
    if seconds <= 0.0 {
        return "-".to_owned();
    }
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )] // Display only; a rate is finite and non-negative.
    let per_second = (bytes as f64 / seconds).round() as u64;
    format!("{}/s", size(per_second))
}

/// A duration for people: `850 ms`, `12.3 s`, `4 min 05 s`, `2 h 03 min`.
pub fn duration(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    if secs >= 3600 {
        format!("{} h {:02} min", secs / 3600, secs % 3600 / 60)
    } else if secs >= 60 {
        format!("{} min {:02} s", secs / 60, secs % 60)
    } else if d.as_millis() >= 1000 {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// A point in time for people: local time with its UTC offset (`2026-03-31 20:00:00
/// +02:00`), or `… UTC` where the local zone is UTC. The zone comes from `TZ` or the
/// system's, as for every other program.
pub fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    let local = t.with_timezone(&chrono::Local);
    if chrono::Offset::fix(local.offset()).local_minus_utc() == 0 {
        local.format("%Y-%m-%d %H:%M:%S UTC").to_string()
    } else {
        local.format("%Y-%m-%d %H:%M:%S %:z").to_string()
    }
}

/// A day for people, in the local zone (`2026-03-31`).
pub fn day(t: chrono::DateTime<chrono::Utc>) -> String {
    t.with_timezone(&chrono::Local)
        .format("%Y-%m-%d")
        .to_string()
}

/// A plain text table: a header row and left-aligned columns, cells sanitized.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new<I, S>(headers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Append a row; cells are sanitized here, so callers can pass untrusted strings.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.rows.push(
            cells
                .into_iter()
                .map(|c| sanitize(c.as_ref()).into_owned())
                .collect(),
        );
    }

    /// Render with two spaces between columns and no trailing whitespace.
    pub fn render(&self) -> String {
        let columns = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.headers.len()])
            .max()
            .unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                let pad = widths[i] - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// The version of the `--json` documents' schemas. Adding a field keeps it; renaming or
/// removing one, or changing what a field means, raises it.
pub const SCHEMA_VERSION: u32 = 1;

/// A `--json` document: the version first, then the command's own fields. `body` must
/// serialize as a map (a struct), so that every document is one object.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Document<'a, T: Serialize> {
    schema_version: u32,
    #[serde(flatten)]
    body: &'a T,
}

/// The body of a failed run's `--json` document.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorReport {
    /// The message (as printed on stderr, whole context chain on one line).
    pub message: String,
    /// `usage` (exit 3) or `failure` (exit 1).
    pub kind: &'static str,
    /// The process exit code.
    pub exit_code: u8,
    /// What to change, when Atlas knows (the setting to fix for a store or network
    /// failure); the same line stderr shows after `hint:`. Left out when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

#[derive(Serialize)]
struct ErrorDocument<'a> {
    error: &'a ErrorReport,
}

/// Where results go, and in which form. One per process, built from `--json`/`-q`.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    json: bool,
    tap: Option<&'static Tap>,
}

/// A copy of the run's `--json` document, kept whether or not `--json` prints it, for
/// what a run leaves behind besides stdout (`--report`, `--metrics-file`, `--notify-url`;
/// see `monitor`). One per process, a `static`: [`Output`] stays `Copy`.
#[derive(Debug)]
pub struct Tap(std::sync::Mutex<Option<serde_json::Value>>);

impl Tap {
    /// An empty tap.
    pub const fn new() -> Self {
        Self(std::sync::Mutex::new(None))
    }

    fn keep<T: Serialize>(&self, document: &T) {
        // A document that does not serialize is not printed either (`result` fails).
        if let Ok(value) = serde_json::to_value(document) {
            *self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(value);
        }
    }

    /// The last document printed (or that would have been, without `--json`).
    pub fn take(&self) -> Option<serde_json::Value> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

impl Default for Tap {
    fn default() -> Self {
        Self::new()
    }
}

impl Output {
    /// `json`: machine output instead of text.
    pub fn new(json: bool) -> Self {
        Self { json, tap: None }
    }

    /// The same output, also keeping a copy of each document in `tap`.
    #[must_use]
    pub fn with_tap(self, tap: &'static Tap) -> Self {
        Self {
            tap: Some(tap),
            ..self
        }
    }

    /// Whether `--json` was given.
    pub fn is_json(self) -> bool {
        self.json
    }

    /// Print a result: `value` as one JSON document with `--json`, otherwise the human
    /// text (which the caller builds from sanitized parts or a [`Table`]).
    pub fn result<T: Serialize>(
        self,
        value: &T,
        human: impl FnOnce() -> String,
    ) -> std::io::Result<()> {
        if let Some(tap) = self.tap {
            tap.keep(&Document {
                schema_version: SCHEMA_VERSION,
                body: value,
            });
        }
        let mut stdout = std::io::stdout().lock();
        let written = if self.json {
            write_document(&mut stdout, value)
        } else {
            let text = human();
            stdout.write_all(text.as_bytes()).and_then(|()| {
                if text.ends_with('\n') {
                    Ok(())
                } else {
                    stdout.write_all(b"\n")
                }
            })
        };
        crate::console::reader_gone_is_ok(written.and_then(|()| stdout.flush()))
    }

    /// Print a failed run's error as the `--json` document (no-op without `--json`: the
    /// error then goes to stderr only).
    pub fn error(self, report: &ErrorReport) -> std::io::Result<()> {
        if let Some(tap) = self.tap {
            tap.keep(&Document {
                schema_version: SCHEMA_VERSION,
                body: &ErrorDocument { error: report },
            });
        }
        if !self.json {
            return Ok(());
        }
        let mut stdout = std::io::stdout().lock();
        let written = write_document(&mut stdout, &ErrorDocument { error: report });
        crate::console::reader_gone_is_ok(written.and_then(|()| stdout.flush()))
    }
}

/// Write one `--json` document and its newline.
fn write_document<T: Serialize>(out: &mut impl Write, value: &T) -> std::io::Result<()> {
    serde_json::to_writer(
        &mut *out,
        &Document {
            schema_version: SCHEMA_VERSION,
            body: value,
        },
    )?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::{ErrorDocument, ErrorReport, Table, sanitize, sanitize_multiline, write_document};

    #[test]
    fn sizes_use_the_largest_unit_that_keeps_the_number_at_least_one() {
        use super::size;
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1024), "1.0 KiB");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(6_004_556), "5.7 MiB");
        assert_eq!(size(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(size(3 * 1024 * 1024 * 1024), "3.0 GiB");
        assert_eq!(size(5 << 40), "5.0 TiB");
        assert_eq!(size(5000 << 40), "5000.0 TiB");
    }

    #[test]
    fn rates_and_durations_are_rounded() {
        use super::{byte_rate, duration, rate};
        use std::time::Duration;
        assert_eq!(rate(123.456, "items"), "123 items/s");
        assert_eq!(rate(3.44, "items"), "3.4 items/s");
        assert_eq!(byte_rate(10 * 1024 * 1024, 4.0), "2.5 MiB/s");
        assert_eq!(byte_rate(1, 0.0), "-");
        assert_eq!(duration(Duration::from_millis(850)), "850 ms");
        assert_eq!(duration(Duration::from_millis(12_340)), "12.3 s");
        assert_eq!(duration(Duration::from_secs(245)), "4 min 05 s");
        assert_eq!(duration(Duration::from_secs(7380)), "2 h 03 min");
    }

    #[test]
    fn a_document_is_one_object_with_the_schema_version_first() {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Body {
            tenant_id: &'static str,
        }
        let mut out = Vec::new();
        write_document(&mut out, &Body { tenant_id: "t" }).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"schemaVersion\":1,\"tenantId\":\"t\"}\n"
        );
        // A bare list is refused: every document is an object.
        assert!(write_document(&mut Vec::new(), &vec![1, 2]).is_err());
    }

    #[test]
    fn an_error_document_names_message_kind_and_exit_code() {
        let mut out = Vec::new();
        let report = ErrorReport {
            message: "mailbox x is not in the repository".into(),
            kind: "usage",
            exit_code: 3,
            hint: None,
        };
        write_document(&mut out, &ErrorDocument { error: &report }).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["schemaVersion"], 1);
        assert_eq!(v["error"]["exitCode"], 3);
        assert_eq!(v["error"]["kind"], "usage");
        assert!(v["error"].get("hint").is_none(), "no hint, no field: {v}");
    }

    #[test]
    fn terminal_escapes_and_controls_are_neutralized() {
        let evil = "Invoice\x1b]0;pwned\x07\x1b[2J\r\u{202E}fdp.exe";
        let clean = sanitize(evil);
        assert!(!clean.chars().any(char::is_control), "{clean:?}");
        assert!(!clean.contains('\u{202E}'));
        assert!(clean.starts_with("Invoice"));
    }

    #[test]
    fn clean_text_is_borrowed_unchanged() {
        assert!(matches!(
            sanitize("Grüße aus Köln 📬"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn multiline_keeps_newlines_but_not_escapes() {
        assert_eq!(sanitize_multiline("a\n\tb\x1b[31m"), "a\n\tb\u{FFFD}[31m");
        assert_eq!(sanitize("a\nb"), "a\u{FFFD}b");
    }

    #[test]
    fn table_aligns_columns_and_sanitizes_cells() {
        let mut table = Table::new(["Name", "Size"]);
        table.row(["Inbox", "12"]);
        table.row(["Posteingang\x1b[2J", "3"]);
        assert_eq!(
            table.render(),
            "Name             Size\nInbox            12\nPosteingang\u{FFFD}[2J  3\n"
        );
    }
}
