//! Content lines, the syntax iCalendar (RFC 5545 §3.1) and vCard 3.0 (RFC 2425 §5.8.1,
//! RFC 2426 §2.6) share: `NAME;PARAM=value:VALUE`, CRLF line ends, folding at 75 octets,
//! backslash escaping of TEXT values.
//!
//! Written by hand rather than through a calendar crate because the rules are few and
//! exact, and Atlas needs them pinned byte for byte (folding never splits a UTF-8
//! sequence; parameter values are quoted or cleaned so no reader misparses a name with a
//! colon); the same writer serves both formats.

/// Longest physical line in octets, CRLF excluded (RFC 5545 §3.1, RFC 2425 §5.8.1).
const MAX_LINE: usize = 75;

/// Accumulates content lines; [`Lines::finish`] returns the bytes.
#[derive(Debug, Default)]
pub(crate) struct Lines {
    out: String,
}

impl Lines {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// One property whose value is already in its final form (escaped TEXT, a date, a
    /// recurrence rule, base64 …). Parameter values are made safe by [`param_value`].
    pub(crate) fn raw(&mut self, name: &str, params: &[(&str, &str)], value: &str) {
        let mut line = String::with_capacity(name.len() + value.len() + 16);
        line.push_str(name);
        for (k, v) in params {
            line.push(';');
            line.push_str(k);
            line.push('=');
            line.push_str(&param_value(v));
        }
        line.push(':');
        line.push_str(value);
        fold_into(&mut self.out, &line);
    }

    /// One TEXT property: the value is escaped ([`escape_text`]).
    pub(crate) fn text(&mut self, name: &str, params: &[(&str, &str)], value: &str) {
        self.raw(name, params, &escape_text(value));
    }

    /// `BEGIN:x` / `END:x`.
    pub(crate) fn begin(&mut self, component: &str) {
        self.raw("BEGIN", &[], component);
    }

    pub(crate) fn end(&mut self, component: &str) {
        self.raw("END", &[], component);
    }

    /// Appends lines written elsewhere (a component built apart, so that a failure
    /// leaves nothing half-written).
    pub(crate) fn append(&mut self, other: &Lines) {
        self.out.push_str(&other.out);
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.out.into_bytes()
    }
}

/// Appends `line` folded: a CRLF and one space are inserted before the character that
/// would take a physical line past 75 octets (the space counts towards the next line's
/// 75), so a multi-byte UTF-8 character is never split. Ends with CRLF.
fn fold_into(out: &mut String, line: &str) {
    let mut len = 0;
    for c in line.chars() {
        let n = c.len_utf8();
        if len + n > MAX_LINE {
            out.push_str("\r\n ");
            len = 1;
        }
        out.push(c);
        len += n;
    }
    out.push_str("\r\n");
}

/// TEXT escaping (RFC 5545 §3.3.11, RFC 2426 §4): backslash, semicolon and comma get a
/// backslash, every line break (CRLF, LF or CR) becomes `\n`; other control characters,
/// which TEXT does not allow, are dropped (a tab is kept).
pub(crate) fn escape_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push_str("\\n");
            }
            '\n' => out.push_str("\\n"),
            '\t' => out.push('\t'),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A parameter value as the grammar allows it (RFC 5545 §3.1 `param-value`): control
/// characters become spaces, a double quote (which no parameter value may hold) becomes
/// an apostrophe, and a value with `:`, `;` or `,` is put in double quotes.
pub(crate) fn param_value(v: &str) -> String {
    let cleaned: String = v
        .chars()
        .map(|c| match c {
            '"' => '\'',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    if cleaned.contains([':', ';', ',']) {
        format!("\"{cleaned}\"")
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(name: &str, params: &[(&str, &str)], value: &str) -> String {
        let mut l = Lines::new();
        l.text(name, params, value);
        String::from_utf8(l.finish()).unwrap()
    }

    /// Unfold as RFC 5545 §3.1 says readers do: remove every CRLF followed by one space.
    fn unfold(s: &str) -> String {
        s.replace("\r\n ", "")
    }

    #[test]
    fn short_lines_are_not_folded_and_end_in_crlf() {
        assert_eq!(one("SUMMARY", &[], "Stand-up"), "SUMMARY:Stand-up\r\n");
    }

    #[test]
    fn long_lines_fold_at_75_octets() {
        let value = "x".repeat(200);
        let s = one("DESCRIPTION", &[], &value);
        let lines: Vec<&str> = s.trim_end_matches("\r\n").split("\r\n").collect();
        assert!(lines.len() > 2);
        for (i, l) in lines.iter().enumerate() {
            assert!(l.len() <= 75, "line {i} is {} octets", l.len());
            if i > 0 {
                assert!(l.starts_with(' '));
            }
        }
        assert_eq!(lines[0].len(), 75);
        assert_eq!(unfold(&s), format!("DESCRIPTION:{value}\r\n"));
    }

    #[test]
    fn folding_never_splits_a_multibyte_character() {
        // 3-octet (€), 4-octet (emoji) and 2-octet (é) characters, so a naive split at
        // octet 75 would land inside one of them on some line.
        let value = "€😀é".repeat(40);
        let s = one("SUMMARY", &[], &value);
        for l in s.split("\r\n") {
            assert!(l.len() <= 75, "{} octets", l.len());
        }
        // Each physical line is valid UTF-8 on its own (String::from_utf8 above would
        // have failed otherwise, but check the slices as a reader sees them).
        for l in s.as_bytes().split(|b| *b == b'\n') {
            assert!(std::str::from_utf8(l).is_ok());
        }
        assert_eq!(unfold(&s), format!("SUMMARY:{value}\r\n"));
    }

    #[test]
    fn a_line_of_exactly_75_octets_is_not_folded() {
        let value = "y".repeat(75 - "SUMMARY:".len());
        assert_eq!(one("SUMMARY", &[], &value), format!("SUMMARY:{value}\r\n"));
        let value = "y".repeat(76 - "SUMMARY:".len());
        assert!(one("SUMMARY", &[], &value).contains("\r\n y\r\n"));
    }

    #[test]
    fn text_escaping_covers_backslash_separators_and_every_line_break() {
        assert_eq!(
            escape_text("a\\b;c,d\r\ne\nf\rg\u{7}h\ti"),
            "a\\\\b\\;c\\,d\\ne\\nf\\ng".to_owned() + "h\ti"
        );
        assert_eq!(escape_text("Café: 10:00"), "Café: 10:00");
    }

    #[test]
    fn parameter_values_are_quoted_or_cleaned() {
        assert_eq!(param_value("Ann Lee"), "Ann Lee");
        assert_eq!(param_value("Lee, Ann"), "\"Lee, Ann\"");
        assert_eq!(param_value("a:b"), "\"a:b\"");
        assert_eq!(param_value("say \"hi\"\nnow"), "say 'hi' now");
        let mut l = Lines::new();
        l.raw("ATTENDEE", &[("CN", "Lee; Ann")], "mailto:ann@example.com");
        assert_eq!(
            String::from_utf8(l.finish()).unwrap(),
            "ATTENDEE;CN=\"Lee; Ann\":mailto:ann@example.com\r\n"
        );
    }
}
