//! Reads client MIME for the create-from-MIME path (graph-api.md §8.3) with `mail-parser`:
//! enough to fill the JSON view (subject, addresses, date, Message-ID, body, attachments).
//! The client's bytes are kept verbatim and served back as `$value`.
//!
//! Attachment bytes are cut from the raw part and only transfer-decoded, not taken from
//! mail-parser's decoded contents: mail-parser converts every text part to UTF-8, while
//! Exchange keeps an attachment's bytes as they were sent (a Latin-1 `.txt` attachment
//! comes back byte for byte from `attachments/{id}/$value`).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use mail_parser::decoders::base64::base64_decode;
use mail_parser::decoders::quoted_printable::quoted_printable_decode;
use mail_parser::{Address, MessageParser, MessagePart, MimeHeaders as _, PartType};

use crate::model::{Addr, Attachment, AttachmentKind, Body, Content, MessageContent};

/// What create-from-MIME learns from the client's bytes.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub content: MessageContent,
    /// The `Date` header, which becomes the message's sent time.
    pub date: Option<DateTime<Utc>>,
}

fn addrs(a: Option<&Address>) -> Vec<Addr> {
    a.map(|a| {
        a.iter()
            .filter_map(|x| {
                Some(Addr {
                    name: x.name().unwrap_or_default().to_owned(),
                    address: x.address()?.to_owned(),
                })
            })
            .collect()
    })
    .unwrap_or_default()
}

/// The attachment's bytes as sent: the raw part body, transfer-decoded.
fn attachment_bytes(raw: &[u8], part: &MessagePart) -> Vec<u8> {
    let (start, end) = (
        part.raw_body_offset() as usize,
        part.raw_end_offset() as usize,
    );
    let Some(body) = raw.get(start..end.max(start)) else {
        return part.contents().to_vec();
    };
    let encoding = part
        .content_transfer_encoding()
        .map(str::to_ascii_lowercase);
    let decoded = match encoding.as_deref() {
        Some("base64") => base64_decode(body),
        Some("quoted-printable") => quoted_printable_decode(body),
        _ => None,
    };
    match decoded {
        Some(d) => d,
        // An unencoded part ends before the CRLF that belongs to the next boundary.
        None => body
            .strip_suffix(b"\r\n")
            .or_else(|| body.strip_suffix(b"\n"))
            .unwrap_or(body)
            .to_vec(),
    }
}

fn content_type(part: &MessagePart) -> String {
    part.content_type().map_or_else(
        || "application/octet-stream".to_owned(),
        |ct| match ct.subtype() {
            Some(sub) => format!("{}/{sub}", ct.ctype()).to_ascii_lowercase(),
            None => ct.ctype().to_ascii_lowercase(),
        },
    )
}

/// Builds message content from client MIME, keeping the bytes for `$value`.
pub(crate) fn parse(raw: &[u8], now: DateTime<Utc>, domain: &str) -> Parsed {
    let fresh_id = || format!("<{}@{domain}>", uuid::Uuid::new_v4().simple());
    let empty_body = || Body {
        html: false,
        content: "".into(),
    };
    let Some(msg) = MessageParser::default().parse(raw) else {
        return Parsed {
            content: MessageContent {
                subject: String::new(),
                from: None,
                to: vec![],
                cc: vec![],
                bcc: vec![],
                reply_to: vec![],
                body: empty_body(),
                internet_message_id: fresh_id(),
                in_reply_to: None,
                references: vec![],
                extra_headers: vec![],
                importance: "normal",
                attachments: vec![],
                raw_mime: Some(Arc::from(raw)),
            },
            date: None,
        };
    };
    let html = msg
        .html_bodies()
        .find(|p| matches!(p.body, PartType::Html(_)));
    let text = msg
        .text_bodies()
        .find(|p| matches!(p.body, PartType::Text(_)));
    let body = match (html, text) {
        (Some(p), _) => Body {
            html: true,
            content: p.text_contents().unwrap_or_default().into(),
        },
        (None, Some(p)) => Body {
            html: false,
            content: p.text_contents().unwrap_or_default().into(),
        },
        (None, None) => empty_body(),
    };
    let attachments = msg
        .attachments()
        .map(|p| Attachment {
            name: p.attachment_name().unwrap_or("attachment").to_owned(),
            content_type: Some(content_type(p)),
            kind: AttachmentKind::File(Content::Bytes(attachment_bytes(raw, p).into())),
            is_inline: p
                .content_disposition()
                .is_some_and(mail_parser::ContentType::is_inline),
            content_id: p
                .content_id()
                .map(|c| c.trim_matches(['<', '>']).to_owned()),
            last_modified: now,
        })
        .collect();
    let bracket = |id: &str| format!("<{id}>");
    let references = msg
        .references()
        .as_text_list()
        .map(|l| l.iter().map(|r| bracket(r)).collect())
        .or_else(|| msg.references().as_text().map(|r| vec![bracket(r)]))
        .unwrap_or_default();
    let content = MessageContent {
        subject: msg.subject().unwrap_or_default().to_owned(),
        from: addrs(msg.from()).into_iter().next(),
        to: addrs(msg.to()),
        cc: addrs(msg.cc()),
        bcc: addrs(msg.bcc()),
        reply_to: addrs(msg.reply_to()),
        body,
        internet_message_id: msg.message_id().map_or_else(fresh_id, bracket),
        in_reply_to: msg
            .in_reply_to()
            .as_text()
            .or_else(|| {
                msg.in_reply_to()
                    .as_text_list()
                    .and_then(|l| l.first().map(AsRef::as_ref))
            })
            .map(bracket),
        references,
        extra_headers: vec![],
        importance: "normal",
        attachments,
        raw_mime: Some(Arc::from(raw)),
    };
    let date = msg
        .date()
        .and_then(|d| DateTime::from_timestamp(d.to_timestamp(), 0));
    Parsed { content, date }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_html_body_and_attachment() {
        let raw = b"Subject: =?UTF-8?B?w5xiZXI=?= =?UTF-8?B?IGFsbGVz?=\r\nFrom: \"A, B\" <a@x.com>\r\nTo: c@x.com\r\nMessage-ID: <m1@x.com>\r\nDate: Sun, 28 Feb 2021 07:15:00 +0000\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>hi</p>\r\n--b1\r\nContent-Type: application/pdf; name=\"x.pdf\"\r\nContent-Disposition: attachment; filename=\"x.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERg==\r\n--b1--\r\n";
        let p = parse(raw, Utc::now(), "x.com");
        let c = &p.content;
        assert_eq!(c.subject, "Über alles");
        assert_eq!(c.from.as_ref().map(|a| a.name.as_str()), Some("A, B"));
        assert_eq!(c.internet_message_id, "<m1@x.com>");
        assert!(c.body.html);
        assert_eq!(&*c.body.content, "<p>hi</p>");
        assert_eq!(c.attachments.len(), 1);
        assert_eq!(c.attachments[0].name, "x.pdf");
        assert_eq!(
            c.attachments[0].content_type.as_deref(),
            Some("application/pdf")
        );
        match &c.attachments[0].kind {
            AttachmentKind::File(b) => assert_eq!(&*b.bytes(), b"%PDF"),
            _ => panic!("file attachment expected"),
        }
        assert_eq!(
            p.date.map(|d| d.to_rfc3339()).as_deref(),
            Some("2021-02-28T07:15:00+00:00")
        );
    }

    /// mail-parser would hand back the text as UTF-8; Exchange keeps the sent bytes.
    #[test]
    fn text_attachments_keep_their_bytes_in_their_own_charset() {
        let mut raw = b"Subject: t\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nbody\r\n--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Disposition: attachment; filename=l.txt\r\nContent-Transfer-Encoding: 8bit\r\n\r\n".to_vec();
        raw.extend_from_slice(b"caf\xe9\r\n--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Disposition: attachment; filename=q.txt\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9\r\n--b--\r\n");
        let c = parse(&raw, Utc::now(), "x.com").content;
        assert_eq!(&*c.body.content, "body");
        let bytes: Vec<Vec<u8>> = c
            .attachments
            .iter()
            .map(|a| match &a.kind {
                AttachmentKind::File(b) => b.bytes().to_vec(),
                _ => Vec::new(),
            })
            .collect();
        assert_eq!(bytes, vec![b"caf\xe9".to_vec(), b"caf\xe9".to_vec()]);
    }
}
