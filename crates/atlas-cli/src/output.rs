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

/// Where results go, and in which form. One per process, built from `--json`/`-q`.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    json: bool,
}

impl Output {
    /// `json`: machine output instead of text.
    pub fn new(json: bool) -> Self {
        Self { json }
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
        let mut stdout = std::io::stdout().lock();
        let written = if self.json {
            serde_json::to_writer(&mut stdout, value)
                .map_err(std::io::Error::from)
                .and_then(|()| stdout.write_all(b"\n"))
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
}

#[cfg(test)]
mod tests {
    use super::{Table, sanitize, sanitize_multiline};

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
