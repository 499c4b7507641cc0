//! Test messages as plain values ([`MessageSpec`]) and the MIME they render to.
//!
//! A test builds what a message *is* (subject, body, attachments, state) and the tenant
//! serves the MIME rendered from it, the way Exchange renders a stored item: file
//! attachments base64-encoded with their name on `Content-Type` and
//! `Content-Disposition`, item attachments as `message/rfc822` parts in 7bit (RFC 2046
//! §5.2.1 allows no other encoding for an embedded message). Because the spec is kept,
//! a test can compare what a restore created with what the message was, without parsing
//! the MIME with the same code the restore used.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, TimeZone, Utc};

use crate::model::{EmailAddress, FlagStatus, Importance};

/// A message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodySpec {
    /// `text/plain`.
    Text(String),
    /// `text/html`.
    Html(String),
}

/// One attachment of a test message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachmentSpec {
    /// A file (Graph `fileAttachment`), regular or inline.
    File {
        /// File name, as the user sees it (a file named `x.eml` is still a file).
        name: String,
        /// MIME type.
        content_type: String,
        /// The bytes.
        bytes: Vec<u8>,
        /// Inline (shown in the body, referenced by `cid:`).
        inline: bool,
        /// Content id, without angle brackets.
        content_id: Option<String>,
    },
    /// An attached message (Graph `itemAttachment`).
    Message {
        /// Display name (rendered as `<name>.eml`).
        name: String,
        /// The embedded message.
        message: Box<MessageSpec>,
    },
}

impl AttachmentSpec {
    /// A regular file attachment.
    pub fn file(name: &str, content_type: &str, bytes: Vec<u8>) -> Self {
        Self::File {
            name: name.to_owned(),
            content_type: content_type.to_owned(),
            bytes,
            inline: false,
            content_id: None,
        }
    }

    /// An inline image referenced from an HTML body as `cid:<content_id>`.
    pub fn inline_image(name: &str, content_id: &str, bytes: Vec<u8>) -> Self {
        Self::File {
            name: name.to_owned(),
            content_type: "image/png".to_owned(),
            bytes,
            inline: true,
            content_id: Some(content_id.to_owned()),
        }
    }

    /// The attachment's name.
    pub fn name(&self) -> &str {
        match self {
            Self::File { name, .. } | Self::Message { name, .. } => name,
        }
    }
}

/// A test message: everything a mailbox holds about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageSpec {
    /// Subject.
    pub subject: String,
    /// Sender.
    pub from: EmailAddress,
    /// `To`.
    pub to: Vec<EmailAddress>,
    /// `Cc`.
    pub cc: Vec<EmailAddress>,
    /// Body.
    pub body: BodySpec,
    /// Attachments, in order.
    pub attachments: Vec<AttachmentSpec>,
    /// `Message-ID` without angle brackets.
    pub internet_message_id: String,
    /// `Date` (whole seconds: what MIME and Graph keep).
    pub sent: DateTime<Utc>,
    /// Delivery time.
    pub received: DateTime<Utc>,
    /// Read state (not in MIME).
    pub is_read: bool,
    /// Draft (not in MIME).
    pub is_draft: bool,
    /// Follow-up flag (not in MIME).
    pub flag: FlagStatus,
    /// Importance (`Importance:` header).
    pub importance: Importance,
    /// Outlook categories (not in MIME).
    pub categories: Vec<String>,
}

impl MessageSpec {
    /// A plain-text message with defaults everywhere else.
    pub fn text(subject: &str, body: &str) -> Self {
        let sent = Utc
            .with_ymd_and_hms(2026, 1, 15, 9, 30, 0)
            .single()
            .expect("invariant: fixed valid date");
        Self {
            subject: subject.to_owned(),
            from: EmailAddress {
                name: "Megan Bowen".into(),
                address: "megan@contoso.com".into(),
            },
            to: vec![EmailAddress {
                name: String::new(),
                address: "adele@contoso.com".into(),
            }],
            cc: Vec::new(),
            body: BodySpec::Text(body.to_owned()),
            attachments: Vec::new(),
            internet_message_id: format!("{}@test.contoso.com", uuid::Uuid::new_v4().simple()),
            sent,
            received: sent + chrono::Duration::seconds(5),
            is_read: false,
            is_draft: false,
            flag: FlagStatus::NotFlagged,
            importance: Importance::Normal,
            categories: Vec::new(),
        }
    }

    /// Whether any attachment is a file that is not inline (Graph's `hasAttachments`).
    pub fn has_attachments(&self) -> bool {
        self.attachments
            .iter()
            .any(|a| !matches!(a, AttachmentSpec::File { inline: true, .. }))
    }

    /// The raw MIME, CRLF line ends.
    pub fn to_mime(&self) -> Vec<u8> {
        let mut out = String::new();
        self.render(&mut out, true);
        out.into_bytes()
    }

    fn render(&self, out: &mut String, top: bool) {
        let _ = write!(out, "From: {}\r\n", address(&self.from));
        if !self.to.is_empty() {
            let to: Vec<String> = self.to.iter().map(address).collect();
            let _ = write!(out, "To: {}\r\n", to.join(", "));
        }
        if !self.cc.is_empty() {
            let cc: Vec<String> = self.cc.iter().map(address).collect();
            let _ = write!(out, "Cc: {}\r\n", cc.join(", "));
        }
        let _ = write!(out, "Subject: {}\r\n", encoded_word(&self.subject));
        let _ = write!(out, "Date: {}\r\n", self.sent.to_rfc2822());
        let _ = write!(out, "Message-ID: <{}>\r\n", self.internet_message_id);
        match self.importance {
            Importance::High => out.push_str("Importance: high\r\n"),
            Importance::Low => out.push_str("Importance: low\r\n"),
            Importance::Normal | Importance::Unknown => {}
        }
        if top {
            out.push_str("X-Atlas-Test: 1\r\n");
        }
        out.push_str("MIME-Version: 1.0\r\n");
        let (inline, attached): (Vec<&AttachmentSpec>, Vec<&AttachmentSpec>) = self
            .attachments
            .iter()
            .partition(|a| matches!(a, AttachmentSpec::File { inline: true, .. }));
        let boundary = format!("b{}", uuid::Uuid::new_v4().simple());
        if attached.is_empty() {
            self.render_related(out, &inline);
            return;
        }
        let _ = write!(
            out,
            "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n"
        );
        let _ = write!(out, "--{boundary}\r\n");
        self.render_related(out, &inline);
        for a in attached {
            let _ = write!(out, "\r\n--{boundary}\r\n");
            render_attachment(out, a);
        }
        let _ = write!(out, "\r\n--{boundary}--\r\n");
    }

    /// The body, with its inline parts around it when there are any.
    fn render_related(&self, out: &mut String, inline: &[&AttachmentSpec]) {
        if inline.is_empty() {
            self.render_body(out);
            return;
        }
        let boundary = format!("r{}", uuid::Uuid::new_v4().simple());
        let _ = write!(
            out,
            "Content-Type: multipart/related; boundary=\"{boundary}\"\r\n\r\n--{boundary}\r\n"
        );
        self.render_body(out);
        for a in inline {
            let _ = write!(out, "\r\n--{boundary}\r\n");
            render_attachment(out, a);
        }
        let _ = write!(out, "\r\n--{boundary}--\r\n");
    }

    fn render_body(&self, out: &mut String) {
        let (ct, text) = match &self.body {
            BodySpec::Text(t) => ("text/plain", t),
            BodySpec::Html(h) => ("text/html", h),
        };
        let _ = write!(
            out,
            "Content-Type: {ct}; charset=\"utf-8\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        );
        push_base64(out, text.as_bytes());
    }
}

fn render_attachment(out: &mut String, a: &AttachmentSpec) {
    match a {
        AttachmentSpec::File {
            name,
            content_type,
            bytes,
            inline,
            content_id,
        } => {
            let disposition = if *inline { "inline" } else { "attachment" };
            let _ = write!(
                out,
                "Content-Type: {content_type}; name=\"{name}\"\r\nContent-Description: {name}\r\n\
                 Content-Disposition: {disposition}; filename=\"{name}\"; size={}\r\n",
                bytes.len()
            );
            if let Some(cid) = content_id {
                let _ = write!(out, "Content-ID: <{cid}>\r\n");
            }
            out.push_str("Content-Transfer-Encoding: base64\r\n\r\n");
            push_base64(out, bytes);
        }
        AttachmentSpec::Message { name, message } => {
            let _ = write!(
                out,
                "Content-Type: message/rfc822\r\nContent-Disposition: attachment; filename=\"{name}.eml\"\r\n\r\n"
            );
            message.render(out, false);
        }
    }
}

fn address(a: &EmailAddress) -> String {
    if a.name.is_empty() {
        format!("<{}>", a.address)
    } else {
        format!("{} <{}>", encoded_word(&a.name), a.address)
    }
}

/// An RFC 2047 encoded word when the text is not plain ASCII.
fn encoded_word(text: &str) -> String {
    if text.is_ascii() && !text.contains(['\r', '\n']) {
        text.to_owned()
    } else {
        format!("=?utf-8?B?{}?=", STANDARD.encode(text))
    }
}

fn push_base64(out: &mut String, bytes: &[u8]) {
    let encoded = STANDARD.encode(bytes);
    for line in encoded.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push_str("\r\n");
    }
}

#[cfg(test)]
mod tests {
    use mail_parser::{MessageParser, MimeHeaders};

    use super::*;

    #[test]
    fn rendered_mime_parses_back_to_the_spec() {
        let mut spec = MessageSpec::text("Grüße", "hello");
        spec.body = BodySpec::Html("<p>logo <img src=\"cid:logo@x\"></p>".into());
        spec.attachments = vec![
            AttachmentSpec::file("report.pdf", "application/pdf", vec![1, 2, 3, 255]),
            AttachmentSpec::inline_image("logo.png", "logo@x", vec![9; 100]),
            AttachmentSpec::Message {
                name: "Forwarded".into(),
                message: Box::new(MessageSpec::text("inner", "inner body")),
            },
        ];
        let mime = spec.to_mime();
        let parsed = MessageParser::default().parse(&mime).expect("parses");
        assert_eq!(parsed.subject(), Some("Grüße"));
        let names: Vec<&str> = parsed
            .attachments()
            .filter_map(|a| a.attachment_name())
            .collect();
        assert_eq!(names, ["logo.png", "report.pdf", "Forwarded.eml"]);
        let inner = parsed
            .attachments()
            .find_map(|a| a.message())
            .expect("embedded message");
        assert_eq!(inner.subject(), Some("inner"));
        assert!(spec.has_attachments());
    }
}
