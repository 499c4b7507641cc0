//! A small MIME reader for the create-from-MIME path: enough to fill the JSON view
//! (subject, addresses, date, Message-ID, body, attachments). The client's bytes are kept
//! verbatim and served back as `$value`.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};

use crate::model::{Addr, Attachment, AttachmentKind, Body, Content, MessageContent};

struct Part<'a> {
    headers: Vec<(String, String)>,
    body: &'a [u8],
}

impl Part<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn split_part(raw: &[u8]) -> Part<'_> {
    let (head, body) = match raw.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(p) => (&raw[..p], &raw[p + 4..]),
        None => match raw.windows(2).position(|w| w == b"\n\n") {
            Some(p) => (&raw[..p], &raw[p + 2..]),
            None => (raw, &raw[raw.len()..]),
        },
    };
    let text = String::from_utf8_lossy(head);
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = headers.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    Part { headers, body }
}

fn param(value: &str, name: &str) -> Option<String> {
    for p in value.split(';').skip(1) {
        let (k, v) = p.trim().split_once('=')?;
        if k.trim().eq_ignore_ascii_case(name) {
            return Some(v.trim().trim_matches('"').to_owned());
        }
    }
    None
}

/// Decodes RFC 2047 encoded words (UTF-8 / ASCII charsets; others are read as UTF-8).
pub(crate) fn decode_words(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    let mut last_was_word = false;
    while let Some(start) = rest.find("=?") {
        let before = &rest[..start];
        if !(last_was_word && before.trim().is_empty()) {
            out.push_str(before);
        }
        let after = &rest[start + 2..];
        let mut it = after.splitn(3, '?');
        let (Some(_charset), Some(enc), Some(tail)) = (it.next(), it.next(), it.next()) else {
            out.push_str(&rest[start..]);
            return out;
        };
        let Some(end) = tail.find("?=") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let text = &tail[..end];
        let bytes = if enc.eq_ignore_ascii_case("B") {
            STANDARD.decode(text).unwrap_or_default()
        } else {
            qp_decode(text.replace('_', " ").as_bytes())
        };
        out.push_str(&String::from_utf8_lossy(&bytes));
        rest = &tail[end + 2..];
        last_was_word = true;
    }
    out.push_str(rest);
    out
}

fn qp_decode(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' {
            if b.get(i + 1) == Some(&b'\r') && b.get(i + 2) == Some(&b'\n') {
                i += 3;
                continue;
            }
            if b.get(i + 1) == Some(&b'\n') {
                i += 2;
                continue;
            }
            if let Some(h) = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(h);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn decode_body(p: &Part) -> Vec<u8> {
    match p
        .header("content-transfer-encoding")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("base64") => {
            let clean: Vec<u8> = p
                .body
                .iter()
                .copied()
                .filter(|c| !c.is_ascii_whitespace())
                .collect();
            STANDARD.decode(clean).unwrap_or_default()
        }
        Some("quoted-printable") => qp_decode(p.body),
        _ => p.body.to_vec(),
    }
}

fn parse_addrs(v: Option<&str>) -> Vec<Addr> {
    let Some(v) = v else { return Vec::new() };
    let mut out = Vec::new();
    let (mut cur, mut quoted, mut angle) = (String::new(), false, false);
    for ch in v.chars().chain(std::iter::once(',')) {
        match ch {
            '"' => {
                quoted = !quoted;
                cur.push(ch);
            }
            '<' if !quoted => {
                angle = true;
                cur.push(ch);
            }
            '>' if !quoted => {
                angle = false;
                cur.push(ch);
            }
            ',' if !quoted && !angle => {
                let item = cur.trim();
                if !item.is_empty() {
                    let (name, addr) = match (item.rfind('<'), item.rfind('>')) {
                        (Some(a), Some(b)) if a < b => (
                            item[..a].trim().trim_matches('"').to_owned(),
                            item[a + 1..b].to_owned(),
                        ),
                        _ => (String::new(), item.to_owned()),
                    };
                    out.push(Addr {
                        name: decode_words(&name),
                        address: addr,
                    });
                }
                cur.clear();
            }
            _ => cur.push(ch),
        }
    }
    out
}

fn walk(p: &Part, body: &mut Option<Body>, atts: &mut Vec<Attachment>, now: DateTime<Utc>) {
    let ct = p.header("content-type").unwrap_or("text/plain").to_owned();
    let lower = ct.to_ascii_lowercase();
    if lower.starts_with("multipart/") {
        let Some(b) = param(&ct, "boundary") else {
            return;
        };
        let delim = format!("--{b}");
        let text = p.body;
        let mut starts = Vec::new();
        let mut i = 0;
        while let Some(pos) = find(&text[i..], delim.as_bytes()) {
            starts.push(i + pos);
            i += pos + delim.len();
        }
        for w in starts.windows(2) {
            let mut seg = &text[w[0] + delim.len()..w[1]];
            seg = seg
                .strip_prefix(b"\r\n")
                .or_else(|| seg.strip_prefix(b"\n"))
                .unwrap_or(seg);
            seg = seg
                .strip_suffix(b"\r\n")
                .or_else(|| seg.strip_suffix(b"\n"))
                .unwrap_or(seg);
            walk(&split_part(seg), body, atts, now);
        }
        return;
    }
    let disp = p
        .header("content-disposition")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let name = p
        .header("content-disposition")
        .and_then(|d| param(d, "filename"))
        .or_else(|| param(&ct, "name"))
        .map(|n| decode_words(&n));
    let is_text_body = (lower.starts_with("text/plain") || lower.starts_with("text/html"))
        && !disp.starts_with("attachment")
        && name.is_none();
    if is_text_body {
        let html = lower.starts_with("text/html");
        if body.as_ref().is_none_or(|b| !b.html && html) {
            *body = Some(Body {
                html,
                content: String::from_utf8_lossy(&decode_body(p)).into_owned().into(),
            });
        }
        return;
    }
    let data = decode_body(p);
    atts.push(Attachment {
        name: name.unwrap_or_else(|| "attachment".into()),
        content_type: Some(
            ct.split(';')
                .next()
                .unwrap_or("application/octet-stream")
                .trim()
                .to_owned(),
        ),
        kind: AttachmentKind::File(Content::Bytes(data.into())),
        is_inline: disp.starts_with("inline"),
        content_id: p
            .header("content-id")
            .map(|c| c.trim_matches(['<', '>']).to_owned()),
        last_modified: now,
    });
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Builds message content from client MIME, keeping the bytes for `$value`.
pub(crate) fn parse(raw: &[u8], now: DateTime<Utc>, domain: &str) -> MessageContent {
    let top = split_part(raw);
    let mut body = None;
    let mut attachments = Vec::new();
    walk(&top, &mut body, &mut attachments, now);
    let date = top.header("date").unwrap_or_default().to_owned();
    let mut extra_headers = Vec::new();
    if !date.is_empty() {
        extra_headers.push(("Date".to_owned(), date));
    }
    MessageContent {
        subject: decode_words(top.header("subject").unwrap_or_default()),
        from: parse_addrs(top.header("from")).into_iter().next(),
        to: parse_addrs(top.header("to")),
        cc: parse_addrs(top.header("cc")),
        bcc: parse_addrs(top.header("bcc")),
        reply_to: parse_addrs(top.header("reply-to")),
        body: body.unwrap_or(Body {
            html: false,
            content: "".into(),
        }),
        internet_message_id: top.header("message-id").map_or_else(
            || format!("<{}@{domain}>", uuid::Uuid::new_v4().simple()),
            str::to_owned,
        ),
        in_reply_to: top.header("in-reply-to").map(str::to_owned),
        references: top
            .header("references")
            .map(|r| r.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default(),
        extra_headers,
        importance: "normal",
        attachments,
        raw_mime: Some(Arc::from(raw)),
    }
}

/// The `Date` header of parsed client MIME, as the message's sent time.
pub(crate) fn date_of(c: &MessageContent) -> Option<DateTime<Utc>> {
    let d = c.extra_headers.iter().find(|(k, _)| k == "Date")?;
    DateTime::parse_from_rfc2822(d.1.trim())
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_adjacent_encoded_words_without_the_space_between() {
        assert_eq!(decode_words("=?UTF-8?B?w5w=?= =?UTF-8?B?YmVy?="), "Über");
        assert_eq!(decode_words("plain"), "plain");
    }

    #[test]
    fn finds_html_body_and_attachment() {
        let raw = b"Subject: =?UTF-8?B?w5xiZXI=?=\r\nFrom: \"A, B\" <a@x.com>\r\nTo: c@x.com\r\nDate: Sun, 28 Feb 2021 07:15:00 +0000\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>hi</p>\r\n--b1\r\nContent-Type: application/pdf; name=\"x.pdf\"\r\nContent-Disposition: attachment; filename=\"x.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERg==\r\n--b1--\r\n";
        let c = parse(raw, Utc::now(), "x.com");
        assert_eq!(c.subject, "Über");
        assert_eq!(c.from.as_ref().map(|a| a.name.as_str()), Some("A, B"));
        assert!(c.body.html);
        assert_eq!(&*c.body.content, "<p>hi</p>");
        assert_eq!(c.attachments.len(), 1);
        assert_eq!(c.attachments[0].name, "x.pdf");
        assert!(date_of(&c).is_some());
    }
}
