//! Stored MIME → the message Graph is asked to create.
//!
//! Graph turns a MIME upload into a draft that can never become received mail, so the
//! MIME is parsed here (mail-parser) and handed to the target as fields; the target sends
//! them as JSON with the extended properties that make a received, dated message.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use mail_parser::{Address, Message, MessageParser, MimeHeaders};

use crate::model::{EmailAddress, MessageMeta};
use crate::ports::{RestoreAttachment, RestoreBody, RestoreMessage};

/// Headers that Exchange writes itself; copying them back would only add noise (and
/// `X-MS-Has-Attach` would contradict the attachments actually added).
const EXCHANGE_OWN_HEADERS: &[&str] = &[
    "x-ms-has-attach",
    "x-ms-tnef-correlator",
    "x-ms-exchange-organization-scl",
    "x-ms-exchange-organization-authas",
    "x-ms-exchange-organization-authsource",
    "x-ms-exchange-organization-authmechanism",
    "x-ms-exchange-organization-network-message-id",
];

/// A parsed message: what to create and what to attach.
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    pub message: RestoreMessage,
    pub attachments: Vec<RestoreAttachment>,
}

fn addresses(a: Option<&Address<'_>>) -> Vec<EmailAddress> {
    a.map(|a| {
        a.iter()
            .filter_map(|x| {
                let address = x.address()?.trim().to_owned();
                (!address.is_empty()).then(|| EmailAddress {
                    name: x.name().unwrap_or_default().trim().to_owned(),
                    address,
                })
            })
            .collect()
    })
    .unwrap_or_default()
}

fn unfold(raw: &str) -> String {
    raw.split(['\r', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn date(m: &Message<'_>) -> Option<DateTime<Utc>> {
    m.date()
        .and_then(|d| DateTime::<Utc>::from_timestamp(d.to_timestamp(), 0))
}

fn body(m: &Message<'_>) -> RestoreBody {
    if let Some(html) = m
        .html_bodies()
        .find(|p| p.is_text_html())
        .and_then(|p| p.text_contents())
    {
        return RestoreBody::Html(html.to_owned());
    }
    let text: Vec<&str> = m
        .text_bodies()
        .filter(|p| p.is_text() && !p.is_text_html())
        .filter_map(|p| p.text_contents())
        .collect();
    RestoreBody::Text(text.concat())
}

/// The message fields of a (possibly embedded) message; state MIME lacks comes from
/// `meta` for the top-level message and stays at defaults for embedded ones.
fn fields(m: &Message<'_>) -> RestoreMessage {
    let from = addresses(m.from()).into_iter().next();
    let sender = addresses(m.sender()).into_iter().next().filter(|s| {
        from.as_ref()
            .is_none_or(|f| !f.address.eq_ignore_ascii_case(&s.address))
    });
    let importance = match m
        .header_raw("Importance")
        .or_else(|| m.header_raw("X-Priority"))
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        Some("high" | "1" | "2") => crate::model::Importance::High,
        Some("low" | "5" | "4") => crate::model::Importance::Low,
        _ => crate::model::Importance::Normal,
    };
    let headers = m
        .headers_raw()
        .filter(|(n, _)| {
            let n = n.to_ascii_lowercase();
            n.starts_with("x-") && !EXCHANGE_OWN_HEADERS.contains(&n.as_str())
        })
        .map(|(n, v)| (n.to_owned(), unfold(v)))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    RestoreMessage {
        subject: m.subject().unwrap_or_default().to_owned(),
        body: body(m),
        from,
        sender,
        to: addresses(m.to()),
        cc: addresses(m.cc()),
        bcc: addresses(m.bcc()),
        reply_to: addresses(m.reply_to()),
        received: None,
        sent: date(m),
        internet_message_id: m.message_id().map(|id| format!("<{id}>")),
        in_reply_to: m
            .header_raw("In-Reply-To")
            .map(unfold)
            .filter(|s| !s.is_empty()),
        references: m
            .header_raw("References")
            .map(unfold)
            .filter(|s| !s.is_empty()),
        importance,
        is_read: true,
        is_draft: false,
        flag: crate::model::FlagStatus::NotFlagged,
        categories: Vec::new(),
        headers,
    }
}

/// An attachment's exact bytes. mail-parser decodes `text/*` parts into strings
/// (charset conversion, lossy for bytes that are not text), so those are decoded here from
/// the raw part by their transfer encoding; binary parts are already exact.
fn attachment_bytes(raw: &[u8], p: &mail_parser::MessagePart<'_>) -> Bytes {
    if !p.is_text() {
        return Bytes::copy_from_slice(p.contents());
    }
    let start = p.raw_body_offset() as usize;
    let end = (p.raw_end_offset() as usize).min(raw.len());
    let Some(body) = raw.get(start..end) else {
        return Bytes::copy_from_slice(p.contents());
    };
    let encoding = p
        .content_transfer_encoding()
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let decoded = match encoding.as_str() {
        "base64" => {
            let clean: Vec<u8> = body
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            mail_parser::decoders::base64::base64_decode(&clean)
        }
        "quoted-printable" => {
            mail_parser::decoders::quoted_printable::quoted_printable_decode(trim_crlf(body))
        }
        _ => Some(trim_crlf(body).to_vec()),
    };
    decoded.map_or_else(|| Bytes::copy_from_slice(p.contents()), Bytes::from)
}

/// The line break before a boundary belongs to the boundary, not to the content.
fn trim_crlf(b: &[u8]) -> &[u8] {
    b.strip_suffix(b"\r\n")
        .or_else(|| b.strip_suffix(b"\n"))
        .unwrap_or(b)
}

/// An `.eml` *file* attached to a message, as opposed to an attached message (an item
/// attachment): both are `message/rfc822` parts, but an embedded message may only be sent
/// as 7bit, 8bit or binary (RFC 2046 §5.2.1), while a file's bytes are sent base64 (or
/// quoted-printable) like any other file — which is how Exchange exports a
/// `fileAttachment` whose content type is `message/rfc822`. Such a part is restored as the
/// file it was: same name, same bytes.
fn eml_file(p: &mail_parser::MessagePart<'_>) -> Option<RestoreAttachment> {
    p.message()?;
    let encoding = p.content_transfer_encoding()?.to_ascii_lowercase();
    if encoding != "base64" && encoding != "quoted-printable" {
        return None;
    }
    Some(RestoreAttachment::File {
        name: p
            .attachment_name()
            .map_or_else(|| "attachment.eml".to_owned(), str::to_owned),
        content_type: Some("message/rfc822".into()),
        bytes: Bytes::copy_from_slice(p.contents()),
        is_inline: p
            .content_disposition()
            .is_some_and(mail_parser::ContentType::is_inline),
        content_id: None,
    })
}

fn attachments(m: &Message<'_>, raw: &[u8]) -> Vec<RestoreAttachment> {
    m.attachments()
        .map(|p| {
            if let Some(file) = eml_file(p) {
                return file;
            }
            if let Some(inner) = p.message() {
                let name = p
                    .attachment_name()
                    .map(|n| n.strip_suffix(".eml").unwrap_or(n).to_owned())
                    .or_else(|| inner.subject().map(str::to_owned))
                    .unwrap_or_else(|| "Attached message".to_owned());
                // Graph's item attachment JSON has no way to carry the inner message's own
                // attachments; such a message is attached as its original `.eml` file
                // instead, so nothing inside it is lost.
                if inner.attachment_count() > 0 {
                    return RestoreAttachment::File {
                        name: format!("{name}.eml"),
                        content_type: Some("message/rfc822".into()),
                        bytes: Bytes::copy_from_slice(p.contents()),
                        is_inline: false,
                        content_id: None,
                    };
                }
                let mut message = fields(inner);
                message.received = message.sent;
                return RestoreAttachment::Item {
                    name,
                    message: Box::new(message),
                    raw: Bytes::copy_from_slice(p.contents()),
                };
            }
            let content_type = p.content_type().map(|c| match c.subtype() {
                Some(s) => format!("{}/{s}", c.ctype()),
                None => c.ctype().to_owned(),
            });
            RestoreAttachment::File {
                name: p
                    .attachment_name()
                    .map_or_else(|| "attachment".to_owned(), str::to_owned),
                content_type,
                bytes: attachment_bytes(raw, p),
                is_inline: p
                    .content_disposition()
                    .is_some_and(mail_parser::ContentType::is_inline),
                content_id: p.content_id().map(|c| {
                    c.trim()
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .to_owned()
                }),
            }
        })
        .collect()
}

/// Parse stored MIME and merge the snapshot's state (dates, read, flag, categories).
/// `None` when the bytes are not a message at all.
pub(crate) fn parse(raw: &[u8], meta: &MessageMeta) -> Option<Parsed> {
    let m = MessageParser::default().parse(raw)?;
    let mut message = fields(&m);
    message.sent = meta.sent.or(message.sent);
    message.received = meta.received.or(message.sent);
    if message.internet_message_id.is_none() {
        message
            .internet_message_id
            .clone_from(&meta.internet_message_id);
    }
    message.is_read = meta.is_read;
    message.is_draft = meta.is_draft;
    message.flag = meta.flag_status;
    message.importance = match meta.importance {
        crate::model::Importance::Unknown => message.importance,
        i => i,
    };
    message.categories.clone_from(&meta.categories);
    Some(Parsed {
        message,
        attachments: attachments(&m, raw),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContentId, FlagStatus, FolderId, Importance, MessageId};

    fn meta() -> MessageMeta {
        MessageMeta {
            id: MessageId::new("AAMk1"),
            internet_message_id: Some("<m1@example.com>".into()),
            conversation_id: None,
            subject: None,
            from: None,
            received: DateTime::parse_from_rfc3339("2024-05-01T10:00:05Z")
                .ok()
                .map(|d| d.with_timezone(&Utc)),
            sent: None,
            size: None,
            is_read: false,
            flag_status: FlagStatus::Flagged,
            // Unknown in the record: the MIME's `Importance` header decides.
            importance: Importance::Unknown,
            categories: vec!["Blue".into()],
            has_attachments: true,
            attachment_count: 3,
            is_draft: false,
            change_key: None,
            last_modified: None,
            parent_folder_id: FolderId::new("inbox"),
            mime: ContentId::from_bytes([0; 32]),
            mime_size: 0,
            mime_sha256: String::new(),
            kind: crate::model::ItemKind::Mail,
            content: Vec::new(),
        }
    }

    const MIME: &str = "From: Megan <megan@contoso.com>\r\n\
To: a@contoso.com, B <b@contoso.com>\r\n\
Cc: c@contoso.com\r\n\
Reply-To: r@contoso.com\r\n\
Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\
Date: Wed, 01 May 2024 09:59:00 +0000\r\n\
Message-ID: <m1@example.com>\r\n\
In-Reply-To: <m0@example.com>\r\n\
X-Custom-Thing: kept\r\n\
X-MS-Has-Attach: yes\r\n\
Importance: high\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"outer\"\r\n\
\r\n\
--outer\r\n\
Content-Type: multipart/related; boundary=\"rel\"\r\n\
\r\n\
--rel\r\n\
Content-Type: multipart/alternative; boundary=\"alt\"\r\n\
\r\n\
--alt\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
hello\r\n\
--alt\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<p>hello <img src=\"cid:logo@x\"></p>\r\n\
--alt--\r\n\
--rel\r\n\
Content-Type: image/png; name=\"logo.png\"\r\n\
Content-Disposition: inline; filename=\"logo.png\"\r\n\
Content-ID: <logo@x>\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
iVBORw0KGgo=\r\n\
--rel--\r\n\
--outer\r\n\
Content-Type: application/pdf; name=\"report.pdf\"\r\n\
Content-Disposition: attachment; filename=\"report.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERi0=\r\n\
--outer\r\n\
Content-Type: text/csv; charset=utf-8; name=\"data.csv\"\r\n\
Content-Disposition: attachment; filename=\"data.csv\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
//5hAA==\r\n\
--outer\r\n\
Content-Type: message/rfc822\r\n\
Content-Disposition: attachment; filename=\"Original message.eml\"\r\n\
\r\n\
From: x@example.com\r\n\
To: a@contoso.com\r\n\
Subject: Inner\r\n\
Date: Sun, 28 Apr 2024 08:00:00 +0000\r\n\
Message-ID: <inner@example.com>\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
inner body\r\n\
--outer--\r\n";

    #[test]
    fn mime_becomes_fields_and_attachments_with_snapshot_state() {
        let p = parse(MIME.as_bytes(), &meta()).expect("parses");
        let m = &p.message;
        assert_eq!(m.subject, "Grüße");
        assert!(matches!(&m.body, RestoreBody::Html(h) if h.contains("cid:logo@x")));
        assert_eq!(m.from.as_ref().map(|f| f.name.as_str()), Some("Megan"));
        assert_eq!(m.to.len(), 2);
        assert_eq!(m.cc[0].address, "c@contoso.com");
        assert_eq!(m.reply_to[0].address, "r@contoso.com");
        assert_eq!(m.internet_message_id.as_deref(), Some("<m1@example.com>"));
        assert_eq!(m.in_reply_to.as_deref(), Some("<m0@example.com>"));
        assert_eq!(m.importance, Importance::High);
        assert_eq!(
            m.headers,
            vec![("X-Custom-Thing".to_owned(), "kept".to_owned())]
        );
        // State from the snapshot, dates from the snapshot with MIME as fallback.
        assert!(!m.is_read);
        assert_eq!(m.flag, FlagStatus::Flagged);
        assert_eq!(m.categories, vec!["Blue".to_owned()]);
        assert_eq!(m.received, meta().received);
        assert_eq!(
            m.sent.map(|d| d.to_rfc3339()),
            Some("2024-05-01T09:59:00+00:00".to_owned())
        );

        assert_eq!(p.attachments.len(), 4);
        match &p.attachments[0] {
            RestoreAttachment::File {
                name,
                is_inline,
                content_id,
                content_type,
                bytes,
            } => {
                assert_eq!(name, "logo.png");
                assert!(*is_inline);
                assert_eq!(content_id.as_deref(), Some("logo@x"));
                assert_eq!(content_type.as_deref(), Some("image/png"));
                assert_eq!(&bytes[..4], b"\x89PNG");
            }
            other @ RestoreAttachment::Item { .. } => panic!("expected inline file, got {other:?}"),
        }
        assert!(
            matches!(&p.attachments[1], RestoreAttachment::File { name, is_inline: false, .. } if name == "report.pdf")
        );
        // A text attachment keeps its exact bytes, even when they are not valid UTF-8.
        assert!(
            matches!(&p.attachments[2], RestoreAttachment::File { bytes, .. } if bytes.as_ref() == b"\xff\xfea\0")
        );
        match &p.attachments[3] {
            RestoreAttachment::Item { name, message, raw } => {
                assert_eq!(name, "Original message");
                assert_eq!(message.subject, "Inner");
                assert_eq!(
                    message.internet_message_id.as_deref(),
                    Some("<inner@example.com>")
                );
                assert!(
                    matches!(&message.body, RestoreBody::Text(t) if t.starts_with("inner body"))
                );
                assert_eq!(message.received, message.sent);
                assert!(raw.starts_with(b"From: x@example.com"));
            }
            other @ RestoreAttachment::File { .. } => panic!("expected item, got {other:?}"),
        }
    }

    /// `.eml` files attached to a message came back as item attachments without their
    /// `.eml` name: a base64 `message/rfc822` part is a file, and stays one.
    #[test]
    fn an_attached_eml_file_stays_a_file_with_its_name_and_bytes() {
        use base64::Engine as _;
        let inner = "From: x@example.com\r\nSubject: Kept as a file\r\n\r\nbody\r\n";
        let encoded = base64::engine::general_purpose::STANDARD.encode(inner);
        let mime = format!(
            "From: a@contoso.com\r\nSubject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n\
--b\r\nContent-Type: message/rfc822; name=\"saved.eml\"\r\n\
Content-Disposition: attachment; filename=\"saved.eml\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\n{encoded}\r\n--b--\r\n"
        );
        let p = parse(mime.as_bytes(), &meta()).expect("parses");
        assert_eq!(p.attachments.len(), 1);
        match &p.attachments[0] {
            RestoreAttachment::File {
                name,
                content_type,
                bytes,
                is_inline,
                ..
            } => {
                assert_eq!(name, "saved.eml");
                assert_eq!(content_type.as_deref(), Some("message/rfc822"));
                assert_eq!(bytes.as_ref(), inner.as_bytes());
                assert!(!is_inline);
            }
            other @ RestoreAttachment::Item { .. } => panic!("expected a file, got {other:?}"),
        }
    }
}
