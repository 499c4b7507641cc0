//! `atlas read`: one message of a snapshot, decoded for a terminal.
//!
//! The stored MIME is read through the repository (AEAD tag, plaintext checksum and
//! content id are checked there) and its SHA-256 is compared with the one recorded at
//! backup. It is then parsed with `mail-parser`; an HTML-only body is rendered to text with
//! `html2text` (a real HTML parser, so scripts, styles and comments never leak through).
//! Every string that came from the message is sanitized with
//! [`sanitize_line`]/[`sanitize_text`], so a hostile subject cannot drive the terminal.

use bytes::Bytes;
use mail_parser::{MessageParser, MimeHeaders};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::catalog::{SnapshotSelector, find_message, sanitize_line, sanitize_text};
use crate::error::{Error, Result};
use crate::model::{MessageId, SnapshotId};
use crate::repo::Repository;

/// Width HTML bodies are rendered at.
const HTML_TEXT_WIDTH: usize = 100;

/// What to read.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// The snapshot.
    pub snapshot: SnapshotSelector,
    /// Message reference (see [`find_message`]).
    pub message: String,
    /// Also return the raw MIME (`--raw`/`--eml`: the caller writes it out unchanged).
    pub include_raw: bool,
}

/// One attachment as listed by `read`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentInfo {
    /// File name (sanitized), `(unnamed)` if none.
    pub name: String,
    /// MIME type, e.g. `application/pdf`.
    pub content_type: String,
    /// Decoded size in bytes.
    pub size: usize,
    /// Inline (e.g. an embedded image) rather than attached.
    pub inline: bool,
}

/// One header line of a message, as `read` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    /// Field name as written in the message.
    pub name: String,
    /// Unfolded value.
    pub value: String,
}

/// A message prepared for display. All strings are sanitized.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadMessage {
    /// Snapshot it was read from.
    pub snapshot: SnapshotId,
    /// Graph message id.
    pub message_id: MessageId,
    /// Folder path.
    pub folder: String,
    /// Subject.
    pub subject: Option<String>,
    /// `From` (display form).
    pub from: Vec<String>,
    /// `To`.
    pub to: Vec<String>,
    /// `Cc`.
    pub cc: Vec<String>,
    /// `Date` header (RFC 3339), or the received date.
    pub date: Option<String>,
    /// Every header as (name, unfolded value), in message order.
    pub headers: Vec<Header>,
    /// Text body: the text/plain part, or the HTML part rendered to text.
    pub body: String,
    /// Whether `body` was rendered from HTML.
    pub body_from_html: bool,
    /// Attachments.
    pub attachments: Vec<AttachmentInfo>,
    /// Raw MIME size.
    pub size: u64,
    /// The stored MIME, byte for byte (only with `include_raw`; never sanitized — write it
    /// to a file, not a terminal).
    #[serde(skip)]
    pub raw: Option<Bytes>,
}

/// Read and decode one message. Unknown snapshot, mailbox or message is an error; a
/// checksum mismatch is [`Error::ChecksumMismatch`].
pub async fn read_message(repo: &Repository, opts: &ReadOptions) -> Result<ReadMessage> {
    let snap = opts.snapshot.load(repo).await?;
    let found = find_message(repo, &snap.record, &opts.message).await?;
    if !found.meta.kind.is_mail() {
        return read_other(repo, snap.id, &found, opts).await;
    }
    let raw = repo.read_blob(&found.meta.mime).await?;
    check_sha(&raw, &found.meta.mime_sha256, &found.meta.mime)?;
    let parsed = MessageParser::default()
        .parse(raw.as_ref())
        .ok_or_else(|| Error::InvalidInput {
            reason: format!("message {} is not parseable MIME", found.meta.id),
        })?;
    let list = |a: Option<&mail_parser::Address<'_>>| -> Vec<String> {
        a.map(|a| {
            a.iter()
                .map(|x| match (x.name(), x.address()) {
                    (Some(n), Some(ad)) => sanitize_line(&format!("{n} <{ad}>")),
                    (None, Some(ad)) => sanitize_line(ad),
                    (Some(n), None) => sanitize_line(n),
                    (None, None) => String::new(),
                })
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
    };
    let (body, body_from_html) = if let Some(t) = parsed
        .text_bodies()
        .find(|p| p.is_text() && !p.is_text_html())
        .and_then(|p| p.text_contents())
    {
        (sanitize_text(t), false)
    } else if let Some(h) = parsed.body_html(0) {
        (sanitize_text(&html_to_text(&h)), true)
    } else {
        (String::new(), false)
    };
    let attachments = parsed
        .attachments()
        .map(|p| AttachmentInfo {
            name: p
                .attachment_name()
                .map_or_else(|| "(unnamed)".into(), sanitize_line),
            content_type: p.content_type().map_or_else(
                || "application/octet-stream".into(),
                |c| {
                    sanitize_line(&match c.subtype() {
                        Some(s) => format!("{}/{s}", c.ctype()),
                        None => c.ctype().to_owned(),
                    })
                },
            ),
            size: p.contents().len(),
            inline: p
                .content_disposition()
                .is_some_and(mail_parser::ContentType::is_inline),
        })
        .collect();
    Ok(ReadMessage {
        snapshot: snap.id,
        message_id: found.meta.id.clone(),
        folder: sanitize_line(&found.folder_path),
        subject: parsed.subject().map(sanitize_line),
        from: list(parsed.from()),
        to: list(parsed.to()),
        cc: list(parsed.cc()),
        date: parsed
            .date()
            .map(mail_parser::DateTime::to_rfc3339)
            .or_else(|| found.meta.received.map(|d| d.to_rfc3339())),
        headers: parsed
            .headers_raw()
            .map(|(n, v)| Header {
                name: sanitize_line(n),
                value: sanitize_line(&header_text(v)),
            })
            .collect(),
        body,
        body_from_html,
        attachments,
        size: found.meta.mime_size,
        raw: opts.include_raw.then(|| raw.clone()),
    })
}

/// An item of another kind: its readable JSON as the body (pretty-printed, sanitized),
/// its title as the subject; `raw` is that JSON byte for byte. Sticky notes have no
/// readable form (v1.0 has no classic endpoint for them): the body says so, and `raw` is
/// the opaque export stream.
async fn read_other(
    repo: &Repository,
    snapshot: crate::model::SnapshotId,
    found: &super::catalog::FoundMessage,
    opts: &ReadOptions,
) -> Result<ReadMessage> {
    let meta = &found.meta;
    let (raw, body) = if let Some(json) = meta.content_of(crate::model::ContentKind::Json) {
        let raw = repo.read_blob(&json.id).await?;
        check_sha(&raw, &json.sha256, &json.id)?;
        let body = serde_json::from_slice::<serde_json::Value>(&raw)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_else(|| String::from_utf8_lossy(&raw).into_owned());
        (raw, sanitize_text(&body))
    } else {
        let raw = repo.read_blob(&meta.mime).await?;
        check_sha(&raw, &meta.mime_sha256, &meta.mime)?;
        let body = format!(
            "({} item: only its {}-byte full-fidelity export stream is stored; it has no readable form)",
            meta.kind,
            raw.len()
        );
        (raw, body)
    };
    Ok(ReadMessage {
        snapshot,
        message_id: meta.id.clone(),
        folder: sanitize_line(&found.folder_path),
        subject: meta.subject.as_deref().map(sanitize_line),
        from: Vec::new(),
        to: Vec::new(),
        cc: Vec::new(),
        date: meta.last_modified.map(|d| d.to_rfc3339()),
        headers: Vec::new(),
        body,
        body_from_html: false,
        attachments: Vec::new(),
        size: raw.len() as u64,
        raw: opts.include_raw.then_some(raw),
    })
}

/// Compare the MIME with the SHA-256 recorded at backup (hex). Records of format 4 keep
/// none (empty): their content was checked against its content id when it was read
/// (`Repository::read_blob`), which is a keyed SHA-256 of the same bytes.
pub(crate) fn check_sha(
    raw: &[u8],
    expected_hex: &str,
    id: &crate::model::ContentId,
) -> Result<()> {
    if expected_hex.is_empty()
        || hex::encode(Sha256::digest(raw)).eq_ignore_ascii_case(expected_hex)
    {
        Ok(())
    } else {
        Err(Error::ChecksumMismatch {
            key: format!("message {id}"),
            id: *id,
        })
    }
}

/// Render HTML to plain text with a real parser (`html2text`, built on html5ever).
pub fn html_to_text(html: &str) -> String {
    // html2text only fails on a width of 0 or an I/O error of the reader; neither can
    // happen with an in-memory string, but fall back to the raw markup rather than panic.
    html2text::from_read(html.as_bytes(), HTML_TEXT_WIDTH).unwrap_or_else(|_| html.to_owned())
}

/// A raw header value as people read it: unfolded (RFC 5322 §2.2.3: a line break followed
/// by white space is white space) and with RFC 2047 encoded words decoded
/// (`=?UTF-8?B?…?=` → text). Used for every header alike, structured or not, since this is
/// for display; the stored MIME keeps the original.
fn header_text(raw: &str) -> String {
    let mut line = raw.trim_end_matches(['\r', '\n']).to_owned();
    line.push('\n');
    let decoded =
        match mail_parser::parsers::MessageStream::new(line.as_bytes()).parse_unstructured() {
            mail_parser::HeaderValue::Text(t) => t.into_owned(),
            // Nothing mail-parser reads as text: fall back to plain unfolding.
            _ => unfold(raw),
        };
    // Any white-space run (a tab from folding included) reads as one space.
    decoded.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn unfold(v: &str) -> String {
    v.replace("\r\n", "").replace('\n', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_rendering_drops_scripts_and_keeps_text() {
        let t = html_to_text(
            "<html><head><style>p{color:red}</style><script>alert(1)</script></head>\
             <body><p>Hello <b>world</b></p><!-- secret --><ul><li>one</li></ul></body></html>",
        );
        assert!(t.contains("Hello"), "{t}");
        assert!(t.contains("world"), "{t}");
        assert!(t.contains("one"), "{t}");
        assert!(!t.contains("alert"), "{t}");
        assert!(!t.contains("color"), "{t}");
        assert!(!t.contains("secret"), "{t}");
    }

    #[test]
    fn folded_headers_are_unfolded_not_shown_with_a_replacement_character() {
        // Issue 11: the tab of a folded header showed as U+FFFD.
        assert_eq!(
            header_text(" multipart/alternative;\r\n\tboundary=\"_000_7111ded191d0a7f2_\"\r\n"),
            "multipart/alternative; boundary=\"_000_7111ded191d0a7f2_\""
        );
        assert_eq!(
            header_text(" a long subject\r\n  that goes on"),
            "a long subject that goes on"
        );
    }

    #[test]
    fn encoded_words_are_decoded() {
        // Issue 11: encoded words stayed encoded.
        assert_eq!(
            header_text(" =?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?="),
            "Grüße aus Köln"
        );
        assert_eq!(
            header_text(" =?ISO-8859-1?Q?J=FCrgen_M=FCller?= <jm@example.com>"),
            "Jürgen Müller <jm@example.com>"
        );
        // Adjacent encoded words join without the folding white space between them.
        assert_eq!(
            header_text(" =?UTF-8?Q?Caf=C3=A9?=\r\n =?UTF-8?Q?_cr=C3=A8me?= and more"),
            "Café crème and more"
        );
        assert_eq!(header_text(" plain text"), "plain text");
        assert_eq!(header_text(""), "");
    }

    #[test]
    fn checksum_mismatch_is_reported() {
        let id = crate::model::ContentId::from_bytes([1; 32]);
        let good = hex::encode(Sha256::digest(b"abc"));
        assert!(check_sha(b"abc", &good, &id).is_ok());
        assert!(matches!(
            check_sha(b"abd", &good, &id),
            Err(Error::ChecksumMismatch { .. })
        ));
    }
}
