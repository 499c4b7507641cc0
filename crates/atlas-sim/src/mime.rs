//! Renders a message as RFC 5322 / MIME bytes, deterministically, from the same data the
//! JSON view is built from — so `$value` and the JSON always agree.
//!
//! Written by hand rather than with a mail-building crate because the output must be
//! byte-stable for a given seed (boundaries, header order, line folding) and the simulator
//! needs control over Exchange-like headers. Reference attachments have no bytes and are
//! not rendered into MIME (they are links, not content).

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::model::{Addr, Attachment, AttachmentKind, MessageContent};

/// Renders the MIME for a message; client-supplied MIME is returned verbatim.
pub(crate) fn render(c: &MessageContent, sent: DateTime<Utc>, received: DateTime<Utc>) -> Vec<u8> {
    if let Some(raw) = &c.raw_mime {
        return raw.to_vec();
    }
    let mut out = String::with_capacity(4096);
    render_into(&mut out, c, sent, received, true);
    out.into_bytes()
}

fn render_into(
    out: &mut String,
    c: &MessageContent,
    sent: DateTime<Utc>,
    received: DateTime<Utc>,
    transport: bool,
) {
    let tag = hex8(&c.internet_message_id);
    if transport {
        let _ = write!(
            out,
            "Received: from EX1PR01MB0001.simulated.prod.outlook.com by EX1PR01MB0002.simulated.prod.outlook.com\r\n with HTTPS; {}\r\n",
            rfc2822(received)
        );
    }
    if let Some(from) = &c.from {
        header_addrs(out, "From", std::slice::from_ref(from));
    }
    header_addrs(out, "To", &c.to);
    header_addrs(out, "Cc", &c.cc);
    header_addrs(out, "Bcc", &c.bcc);
    header_addrs(out, "Reply-To", &c.reply_to);
    out.push_str("Subject:");
    push_unstructured(out, &c.subject);
    out.push_str("\r\n");
    let _ = write!(out, "Date: {}\r\n", rfc2822(sent));
    let _ = write!(out, "Message-ID: {}\r\n", c.internet_message_id);
    if let Some(irt) = &c.in_reply_to {
        let _ = write!(out, "In-Reply-To: {irt}\r\n");
    }
    if !c.references.is_empty() {
        out.push_str("References:");
        for r in &c.references {
            let _ = write!(out, " {r}\r\n");
        }
        // Remove the last CRLF's effect: references are folded one per line already.
    }
    if c.importance != "normal" {
        let _ = write!(out, "Importance: {}\r\n", c.importance);
    }
    for (k, v) in &c.extra_headers {
        let _ = write!(out, "{k}: {v}\r\n");
    }
    let has_attach = c
        .attachments
        .iter()
        .any(|a| !a.is_inline && !matches!(a.kind, AttachmentKind::Reference { .. }));
    let _ = write!(
        out,
        "X-MS-Has-Attach: {}\r\n",
        if has_attach { "yes" } else { "" }
    );
    out.push_str("Content-Language: en-US\r\nMIME-Version: 1.0\r\n");
    render_body_tree(out, c, &tag);
}

fn render_body_tree(out: &mut String, c: &MessageContent, tag: &str) {
    let inline: Vec<&Attachment> = c
        .attachments
        .iter()
        .filter(|a| a.is_inline && matches!(a.kind, AttachmentKind::File(_)))
        .collect();
    let regular: Vec<&Attachment> = c
        .attachments
        .iter()
        .filter(|a| !(a.is_inline && matches!(a.kind, AttachmentKind::File(_))))
        .filter(|a| !matches!(a.kind, AttachmentKind::Reference { .. }))
        .collect();
    if regular.is_empty() {
        render_related(out, c, &inline, tag);
        return;
    }
    let b = format!("_004_{tag}_");
    let _ = write!(
        out,
        "Content-Type: multipart/mixed;\r\n\tboundary=\"{b}\"\r\n\r\n"
    );
    let _ = write!(out, "--{b}\r\n");
    render_related(out, c, &inline, tag);
    for a in regular {
        let _ = write!(out, "\r\n--{b}\r\n");
        render_attachment(out, a);
    }
    let _ = write!(out, "\r\n--{b}--\r\n");
}

fn render_related(out: &mut String, c: &MessageContent, inline: &[&Attachment], tag: &str) {
    if inline.is_empty() {
        render_alternative(out, c, tag);
        return;
    }
    let b = format!("_003_{tag}_");
    let _ = write!(
        out,
        "Content-Type: multipart/related;\r\n\tboundary=\"{b}\";\r\n\ttype=\"multipart/alternative\"\r\n\r\n"
    );
    let _ = write!(out, "--{b}\r\n");
    render_alternative(out, c, tag);
    for a in inline {
        let _ = write!(out, "\r\n--{b}\r\n");
        render_attachment(out, a);
    }
    let _ = write!(out, "\r\n--{b}--\r\n");
}

fn render_alternative(out: &mut String, c: &MessageContent, tag: &str) {
    if !c.body.html {
        text_part(out, "text/plain", &c.body.content);
        return;
    }
    let b = format!("_000_{tag}_");
    let _ = write!(
        out,
        "Content-Type: multipart/alternative;\r\n\tboundary=\"{b}\"\r\n\r\n"
    );
    let _ = write!(out, "--{b}\r\n");
    text_part(out, "text/plain", &html_to_text(&c.body.content));
    let _ = write!(out, "\r\n--{b}\r\n");
    text_part(out, "text/html", &c.body.content);
    let _ = write!(out, "\r\n--{b}--\r\n");
}

fn text_part(out: &mut String, ct: &str, text: &str) {
    let _ = write!(
        out,
        "Content-Type: {ct}; charset=\"utf-8\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    );
    push_base64(out, text.as_bytes());
}

fn render_attachment(out: &mut String, a: &Attachment) {
    match &a.kind {
        AttachmentKind::File(content) => {
            let ct = a
                .content_type
                .as_deref()
                .unwrap_or("application/octet-stream");
            out.push_str("Content-Type: ");
            out.push_str(ct);
            out.push_str(";\r\n\tname=");
            push_param_value(out, &a.name);
            out.push_str("\r\nContent-Description:");
            push_unstructured(out, &a.name);
            out.push_str("\r\n");
            let disp = if a.is_inline { "inline" } else { "attachment" };
            let _ = write!(out, "Content-Disposition: {disp};");
            push_filename(out, &a.name);
            let _ = write!(
                out,
                " size={};\r\n\tmodification-date=\"{}\"\r\n",
                content.len(),
                rfc2822(a.last_modified)
            );
            if let Some(cid) = &a.content_id {
                let _ = write!(out, "Content-ID: <{cid}>\r\n");
            }
            out.push_str("Content-Transfer-Encoding: base64\r\n\r\n");
            push_base64(out, &content.bytes());
        }
        AttachmentKind::Item(item) => {
            out.push_str("Content-Type: message/rfc822\r\nContent-Disposition: attachment;");
            push_filename(out, &format!("{}.eml", a.name));
            out.push_str("\r\n\r\n");
            render_into(out, &item.content, item.sent, item.received, false);
        }
        AttachmentKind::Reference { .. } => {}
    }
}

fn push_filename(out: &mut String, name: &str) {
    if name.is_ascii() && !name.contains(['"', '\\']) {
        let _ = write!(out, "\r\n\tfilename=\"{name}\";");
    } else {
        out.push_str("\r\n\tfilename*=utf-8''");
        for b in name.as_bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(b) {
                out.push(char::from(*b));
            } else {
                let _ = write!(out, "%{b:02X}");
            }
        }
        out.push(';');
    }
}

fn push_param_value(out: &mut String, v: &str) {
    if v.is_ascii() && !v.contains(['"', '\\']) {
        let _ = write!(out, "\"{v}\"");
    } else {
        out.push('"');
        let words = encoded_words(v);
        out.push_str(&words.join(" "));
        out.push('"');
    }
}

fn header_addrs(out: &mut String, name: &str, addrs: &[Addr]) {
    if addrs.is_empty() {
        return;
    }
    let _ = write!(out, "{name}:");
    for (i, a) in addrs.iter().enumerate() {
        if i > 0 {
            out.push_str(",\r\n");
        }
        if a.name.is_empty() {
            let _ = write!(out, " <{}>", a.address);
        } else if a.name.is_ascii() {
            let escaped = a.name.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = write!(out, " \"{escaped}\" <{}>", a.address);
        } else {
            for w in encoded_words(&a.name) {
                out.push(' ');
                out.push_str(&w);
                out.push_str("\r\n");
            }
            let _ = write!(out, " <{}>", a.address);
        }
    }
    out.push_str("\r\n");
}

/// Appends an unstructured header value (after the colon). Short ASCII values are
/// written as is; anything else becomes RFC 2047 encoded words, one per folded line.
fn push_unstructured(out: &mut String, v: &str) {
    let simple = v.is_ascii() && v.len() <= 70 && !v.contains("=?") && !v.contains(['\r', '\n']);
    if simple {
        out.push(' ');
        out.push_str(v);
        return;
    }
    let words = encoded_words(v);
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        out.push(' ');
        out.push_str(w);
    }
}

/// Splits `v` into `=?UTF-8?B?...?=` words of at most 45 UTF-8 bytes each (never splitting
/// a character), so every encoded word stays under the 75-character limit.
fn encoded_words(v: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chunk = String::new();
    for ch in v.chars() {
        if chunk.len() + ch.len_utf8() > 45 {
            words.push(format!("=?UTF-8?B?{}?=", STANDARD.encode(chunk.as_bytes())));
            chunk.clear();
        }
        chunk.push(ch);
    }
    if !chunk.is_empty() || words.is_empty() {
        words.push(format!("=?UTF-8?B?{}?=", STANDARD.encode(chunk.as_bytes())));
    }
    words
}

fn push_base64(out: &mut String, bytes: &[u8]) {
    let enc = STANDARD.encode(bytes);
    out.reserve(enc.len() + enc.len() / 38 + 2);
    let mut rest = enc.as_str();
    while !rest.is_empty() {
        let (line, tail) = rest.split_at(rest.len().min(76));
        out.push_str(line);
        out.push_str("\r\n");
        rest = tail;
    }
}

pub(crate) fn rfc2822(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S +0000").to_string()
}

fn hex8(s: &str) -> String {
    let d = Sha256::digest(s.as_bytes());
    d[..8].iter().fold(String::new(), |mut acc, b| {
        let _ = write!(acc, "{b:02x}");
        acc
    })
}

/// A plain-text rendering of simple HTML for the `text/plain` alternative.
pub(crate) fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    let mut tag = String::new();
    for ch in html.chars() {
        if in_tag {
            if ch == '>' {
                in_tag = false;
                let t = tag.to_ascii_lowercase();
                if t.starts_with("br") || t == "/p" || t == "/div" || t == "/li" || t == "/tr" {
                    out.push_str("\r\n");
                }
                tag.clear();
            } else {
                tag.push(ch);
            }
        } else if ch == '<' {
            in_tag = true;
        } else if ch != '\r' && ch != '\n' {
            out.push(ch);
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&")
}

/// Escapes text for inclusion in generated HTML.
pub(crate) fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The first 255 characters of the body as text, for `bodyPreview`.
pub(crate) fn preview(c: &MessageContent) -> String {
    let text = if c.body.html {
        html_to_text(&c.body.content)
    } else {
        c.body.content.to_string()
    };
    let collapsed: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed.chars().take(255).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_words_never_split_characters_and_stay_short() {
        let s = "Ünïcødé 会议纪要 🚀".repeat(10);
        for w in encoded_words(&s) {
            assert!(w.len() <= 75, "{w}");
        }
        let decoded: String = encoded_words(&s)
            .iter()
            .map(|w| {
                let b64 = w.trim_start_matches("=?UTF-8?B?").trim_end_matches("?=");
                String::from_utf8(STANDARD.decode(b64).expect("b64")).expect("utf8")
            })
            .collect();
        assert_eq!(decoded, s);
    }

    #[test]
    fn html_to_text_unescapes_entities_and_breaks_paragraphs() {
        assert_eq!(html_to_text("<p>a &amp; b</p><p>c</p>"), "a & b\r\nc\r\n");
    }
}
