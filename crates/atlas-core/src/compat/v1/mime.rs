//! Rebuild RFC 5322 MIME from the Graph message JSON that TypeScript Atlas 1.x stored.
//!
//! v1 never stored the original MIME, so this is a reconstruction. It fixes the old
//! tool's export (§7 of the v1 facts): CRLF line endings everywhere; RFC 2047
//! encoded-words for non-ASCII subjects and display names; RFC 2231 for non-ASCII
//! attachment file names; quoted-printable text parts (never 8-bit data declared
//! `7bit`) and base64 attachments in 76-character lines; a text alternative derived from
//! an HTML body; inline images in `multipart/related` with their Content-ID; Reply-To and
//! Importance kept; **no Bcc header** (a Bcc list in a file handed to others leaks it).
//!
//! Output is deterministic: boundaries and a missing Message-ID are derived from the
//! Graph message id, so rebuilding the same message twice gives identical bytes and a
//! migration can be rerun without writing anything new. Headers that are unknown (the
//! original In-Reply-To, References, Received …) are not invented.

use std::fmt::Write as _;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::graph::{GraphMessage, GraphRecipient};
use crate::model::EmailAddress;

/// Soft limit for header and body lines (RFC 5322 §2.1.1 recommends 78).
const LINE: usize = 78;
/// Longest encoded-word (RFC 2047 §2).
const ENCODED_WORD_MAX: usize = 75;

/// One attachment to put into the rebuilt message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MimeAttachment {
    /// File name (any Unicode).
    pub name: String,
    /// MIME type as recorded (sanitized when written).
    pub content_type: String,
    /// Content-ID without angle brackets, for inline parts.
    pub content_id: Option<String>,
    /// Inline (referenced by the HTML body).
    pub inline: bool,
    /// The bytes.
    pub data: Bytes,
}

/// A MIME part tree before serialization.
enum Part {
    Leaf {
        headers: Vec<String>,
        body: Vec<u8>,
    },
    Multi {
        subtype: &'static str,
        parts: Vec<Part>,
    },
}

/// Rebuild the message. `attachments` are the checked attachment bytes in manifest order.
pub fn rebuild_message(msg: &GraphMessage, attachments: &[MimeAttachment]) -> Vec<u8> {
    let seed = msg.id.clone().unwrap_or_default();
    let mut out = String::new();

    if let Some(date) = msg.origination_date() {
        push_header(
            &mut out,
            &format!("Date: {}", date.format("%a, %d %b %Y %H:%M:%S +0000")),
        );
    }
    let from = msg
        .from
        .as_ref()
        .and_then(GraphRecipient::to_email_address)
        .or_else(|| {
            msg.sender
                .as_ref()
                .and_then(GraphRecipient::to_email_address)
        });
    match &from {
        Some(a) => address_header(&mut out, "From", std::slice::from_ref(a)),
        None => push_header(&mut out, "From: undisclosed-sender:;"),
    }
    if let Some(sender) = msg
        .sender
        .as_ref()
        .and_then(GraphRecipient::to_email_address)
    {
        let same = from
            .as_ref()
            .is_some_and(|f| f.address.eq_ignore_ascii_case(&sender.address));
        if !same {
            address_header(&mut out, "Sender", &[sender]);
        }
    }
    for (name, list) in [
        ("To", &msg.to_recipients),
        ("Cc", &msg.cc_recipients),
        ("Reply-To", &msg.reply_to),
    ] {
        let addrs: Vec<EmailAddress> = list
            .iter()
            .filter_map(GraphRecipient::to_email_address)
            .filter(|a| !a.address.is_empty())
            .collect();
        if !addrs.is_empty() {
            address_header(&mut out, name, &addrs);
        }
    }
    // Bcc is deliberately never written.
    if let Some(subject) = msg.subject.as_deref().filter(|s| !s.is_empty()) {
        unstructured_header(&mut out, "Subject", subject);
    }
    push_header(&mut out, &format!("Message-ID: {}", message_id(msg, &seed)));
    match msg.importance() {
        crate::model::Importance::High => push_header(&mut out, "Importance: high"),
        crate::model::Importance::Low => push_header(&mut out, "Importance: low"),
        _ => {}
    }
    push_header(&mut out, "MIME-Version: 1.0");
    push_header(
        &mut out,
        "X-Atlas-Rebuilt: from the Graph message JSON stored by Atlas 1.x",
    );

    let tree = body_tree(msg, attachments);
    let mut bytes = out.into_bytes();
    let mut counter = 0u32;
    write_part(&mut bytes, &tree, &seed, &mut counter);
    bytes
}

/// The body (alternative / related / mixed as needed).
fn body_tree(msg: &GraphMessage, attachments: &[MimeAttachment]) -> Part {
    let body = msg.body.clone().unwrap_or_default();
    let html = body.is_html();
    let content = body.content.unwrap_or_default();
    let mut part = if html {
        let text = crate::service::read::html_to_text(&content);
        Part::Multi {
            subtype: "alternative",
            parts: vec![text_part("plain", &text), text_part("html", &content)],
        }
    } else {
        text_part("plain", &content)
    };
    let (related, rest): (Vec<&MimeAttachment>, Vec<&MimeAttachment>) = attachments
        .iter()
        .partition(|a| html && a.inline && a.content_id.as_deref().is_some_and(|c| !c.is_empty()));
    if !related.is_empty() {
        let mut parts = vec![part];
        parts.extend(related.into_iter().map(attachment_part));
        part = Part::Multi {
            subtype: "related",
            parts,
        };
    }
    if !rest.is_empty() {
        let mut parts = vec![part];
        parts.extend(rest.into_iter().map(attachment_part));
        part = Part::Multi {
            subtype: "mixed",
            parts,
        };
    }
    part
}

fn text_part(subtype: &str, text: &str) -> Part {
    Part::Leaf {
        headers: vec![
            format!("Content-Type: text/{subtype}; charset=\"utf-8\""),
            "Content-Transfer-Encoding: quoted-printable".to_owned(),
        ],
        body: quoted_printable(text).into_bytes(),
    }
}

fn attachment_part(a: &MimeAttachment) -> Part {
    let ctype = sanitize_content_type(&a.content_type);
    let mut headers = Vec::new();
    let quoted_ok = is_quotable_ascii(&a.name) && a.name.len() <= 60;
    if quoted_ok {
        headers.push(format!("Content-Type: {ctype}; name=\"{}\"", a.name));
    } else {
        headers.push(format!("Content-Type: {ctype}"));
    }
    let disposition = if a.inline { "inline" } else { "attachment" };
    let mut cd = format!("Content-Disposition: {disposition}");
    if a.name.is_empty() {
        // No name at all: nothing to add.
    } else if quoted_ok {
        let _ = write!(cd, "; filename=\"{}\"", a.name);
    } else {
        cd.push_str(&rfc2231_filename(&a.name));
    }
    headers.push(cd);
    if let Some(cid) = a.content_id.as_deref().filter(|c| !c.is_empty()) {
        let cid: String = cid
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .chars()
            .filter(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>'))
            .collect();
        headers.push(format!("Content-ID: <{cid}>"));
    }
    headers.push("Content-Transfer-Encoding: base64".to_owned());
    Part::Leaf {
        headers,
        body: base64_lines(&a.data).into_bytes(),
    }
}

fn write_part(out: &mut Vec<u8>, part: &Part, seed: &str, counter: &mut u32) {
    match part {
        Part::Leaf { headers, body } => {
            for h in headers {
                out.extend_from_slice(h.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(body);
        }
        Part::Multi { subtype, parts } => {
            *counter += 1;
            let boundary = boundary(seed, *counter);
            let header =
                format!("Content-Type: multipart/{subtype};\r\n boundary=\"{boundary}\"\r\n\r\n");
            out.extend_from_slice(header.as_bytes());
            for p in parts {
                out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
                write_part(out, p, seed, counter);
                if !out.ends_with(b"\r\n") {
                    out.extend_from_slice(b"\r\n");
                }
            }
            out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        }
    }
}

/// A boundary that cannot occur in the content: every part is quoted-printable or
/// base64, and neither encoding can produce `=_` (QP writes `=` as `=3D`, base64 pads
/// only at the end with no `_`).
fn boundary(seed: &str, n: u32) -> String {
    let h = Sha256::digest(format!("atlas-v1-mime-boundary\0{seed}\0{n}").as_bytes());
    format!("=_atlas_{}_{n}", &hex::encode(h)[..24])
}

fn message_id(msg: &GraphMessage, seed: &str) -> String {
    if let Some(id) = msg.internet_message_id.as_deref().map(str::trim) {
        if id.len() > 2
            && id.starts_with('<')
            && id.ends_with('>')
            && id.len() < 900
            && id.bytes().all(|b| b.is_ascii_graphic())
        {
            return id.to_owned();
        }
    }
    let h = Sha256::digest(format!("atlas-v1-message-id\0{seed}").as_bytes());
    format!("<{}@atlas-v1-migrate.invalid>", &hex::encode(h)[..32])
}

// ----- headers --------------------------------------------------------------------------

fn push_header(out: &mut String, line: &str) {
    out.push_str(line);
    out.push_str("\r\n");
}

/// Whether text may go into an unstructured header as is (ASCII printable or space, no
/// encoded-word look-alike, no absurdly long word).
fn plain_header_text(s: &str) -> bool {
    s.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
        && !s.contains("=?")
        && s.split(' ').all(|w| w.len() < 900)
}

/// `Name: text` folded at spaces, or as encoded-words when not plain ASCII.
fn unstructured_header(out: &mut String, name: &str, text: &str) {
    // Control characters (a subject with a line break) cannot be represented; they
    // become spaces.
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if plain_header_text(&text) {
        let mut line = format!("{name}:");
        for (i, word) in text.split(' ').enumerate() {
            // The space before each word is kept: folding inserts CRLF before it, so
            // unfolding gives back the original text.
            if i > 0 && !word.is_empty() && line.len() + 1 + word.len() > LINE {
                out.push_str(&line);
                out.push_str("\r\n");
                line = String::new();
            }
            line.push(' ');
            line.push_str(word);
        }
        out.push_str(&line);
        out.push_str("\r\n");
    } else {
        let words = encoded_words(&text);
        let _ = write!(out, "{name}:");
        for w in words {
            // Each encoded word on its own (folded) line; whitespace between
            // encoded-words is ignored by decoders.
            if out.ends_with(':') {
                let _ = write!(out, " {w}");
            } else {
                let _ = write!(out, "\r\n {w}");
            }
        }
        out.push_str("\r\n");
    }
}

/// RFC 2047 `B` encoded-words of at most 75 characters, split at character boundaries.
fn encoded_words(text: &str) -> Vec<String> {
    const OVERHEAD: usize = "=?UTF-8?B??=".len();
    let max_raw = (ENCODED_WORD_MAX - OVERHEAD) / 4 * 3; // 45 bytes
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        if chunk.len() + c.len_utf8() > max_raw {
            words.push(format!("=?UTF-8?B?{}?=", base64(chunk.as_bytes())));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() || words.is_empty() {
        words.push(format!("=?UTF-8?B?{}?=", base64(chunk.as_bytes())));
    }
    words
}

fn is_atext_phrase(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(' ')
        && !s.ends_with(' ')
        && !s.contains("  ")
        && s.bytes()
            .all(|b| b == b' ' || b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b))
}

fn is_quotable_ascii(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == b' ' || (b.is_ascii_graphic() && b != b'"' && b != b'\\'))
}

/// `Name <address>` with the display name as atoms, a quoted-string or encoded-words.
fn mailbox(a: &EmailAddress) -> String {
    let addr: String = a
        .address
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control() && !matches!(c, '<' | '>'))
        .collect();
    let name: String = a
        .name
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned();
    if name.is_empty() || name == addr {
        return format!("<{addr}>");
    }
    let phrase = if is_atext_phrase(&name) {
        name
    } else if name.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) && !name.contains("=?") {
        format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        encoded_words(&name).join(" ")
    };
    format!("{phrase} <{addr}>")
}

/// `Name: a, b, …` folded between addresses.
fn address_header(out: &mut String, name: &str, addrs: &[EmailAddress]) {
    let mut line = format!("{name}:");
    for (i, a) in addrs.iter().enumerate() {
        let m = mailbox(a);
        let sep = if i == 0 { "" } else { "," };
        if i > 0 && line.len() + sep.len() + 1 + m.len() > LINE {
            line.push_str(sep);
            out.push_str(&line);
            out.push_str("\r\n");
            line = format!(" {m}");
        } else {
            line.push_str(sep);
            line.push(' ');
            line.push_str(&m);
        }
    }
    out.push_str(&line);
    out.push_str("\r\n");
}

fn sanitize_content_type(ct: &str) -> String {
    let ct = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match ct.split_once('/') {
        Some((t, s)) if token(t) && token(s) && t != "multipart" && t != "message" => ct,
        _ => "application/octet-stream".to_owned(),
    }
}

/// `; filename*0*=utf-8''…` continuations (RFC 2231), segments of at most 60 characters
/// that never split a `%XX`.
fn rfc2231_filename(name: &str) -> String {
    let mut enc = Vec::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            enc.push((b as char).to_string());
        } else {
            enc.push(format!("%{b:02X}"));
        }
    }
    let mut segments = vec![String::from("utf-8''")];
    for piece in enc {
        if segments.last().is_some_and(|s| s.len() + piece.len() > 60) {
            segments.push(String::new());
        }
        if let Some(last) = segments.last_mut() {
            last.push_str(&piece);
        }
    }
    if segments.len() == 1 {
        return format!(";\r\n filename*={}", segments[0]);
    }
    let mut out = String::new();
    for (i, s) in segments.iter().enumerate() {
        let _ = write!(out, ";\r\n filename*{i}*={s}");
    }
    out
}

// ----- body encodings ---------------------------------------------------------------------

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Base64 in 76-character lines, each ended by CRLF.
fn base64_lines(data: &[u8]) -> String {
    let flat = base64(data);
    let mut out = String::with_capacity(flat.len() + flat.len() / 76 * 2 + 2);
    for line in flat.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push_str("\r\n");
    }
    out
}

/// Quoted-printable (RFC 2045 §6.7) of UTF-8 text with its line breaks normalized to
/// CRLF; encoded lines are at most 76 characters.
fn quoted_printable(text: &str) -> String {
    let normalized = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = String::with_capacity(normalized.len() + normalized.len() / 8);
    for line in normalized.split('\n') {
        let bytes = line.as_bytes();
        let mut len = 0usize;
        for (i, &b) in bytes.iter().enumerate() {
            let last = i + 1 == bytes.len();
            let literal =
                ((b == b' ' || b == b'\t') && !last) || (b.is_ascii_graphic() && b != b'=');
            let token = if literal {
                (b as char).to_string()
            } else {
                format!("={b:02X}")
            };
            // Leave room for the soft break "=" on a line that continues.
            let limit = if last { 76 } else { 75 };
            if len + token.len() > limit {
                out.push_str("=\r\n");
                len = 0;
            }
            out.push_str(&token);
            len += token.len();
        }
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_known_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        let long = base64_lines(&[7u8; 200]);
        assert!(long.split("\r\n").all(|l| l.len() <= 76));
    }

    #[test]
    fn quoted_printable_escapes_and_wraps() {
        let qp = quoted_printable("a=b é \nx");
        assert_eq!(qp, "a=3Db =C3=A9=20\r\nx\r\n");
        let long = quoted_printable(&"é".repeat(100));
        assert!(long.split("\r\n").all(|l| l.len() <= 76));
    }

    #[test]
    fn encoded_words_stay_short_and_split_on_chars() {
        let words = encoded_words(&"ż".repeat(60));
        assert!(words.len() > 1);
        assert!(words.iter().all(|w| w.len() <= ENCODED_WORD_MAX));
    }

    #[test]
    fn rfc2231_segments_do_not_split_escapes() {
        let s = rfc2231_filename(&"ä".repeat(40));
        let segs: Vec<&str> = s.split(";\r\n ").skip(1).collect();
        assert!(segs.len() > 1);
        let mut joined = String::new();
        for seg in segs {
            let value = seg.split_once('=').unwrap().1;
            assert!(value.len() <= 67, "{value}");
            assert!(!value.ends_with('%') && value.as_bytes()[value.len() - 2] != b'%');
            joined.push_str(value);
        }
        assert_eq!(joined, format!("utf-8''{}", "%C3%A4".repeat(40)));
    }

    #[test]
    fn content_types_are_sanitized() {
        assert_eq!(sanitize_content_type("Image/PNG; x=1"), "image/png");
        assert_eq!(sanitize_content_type("bogus"), "application/octet-stream");
        assert_eq!(
            sanitize_content_type("multipart/mixed"),
            "application/octet-stream"
        );
    }
}
