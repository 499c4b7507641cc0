//! The export stream: the simulator's own stand-in for Exchange's FastTransfer stream.
//!
//! `exportItems` returns, per item, an opaque byte string (base64 in the JSON) carrying
//! the **whole** item — a message's content, flags, dates and extended properties; an
//! event's, contact's, task's or note's properties, exceptions, attachments and photo —
//! so that `importItem` recreates it exactly, in the same or another mailbox. Clients must
//! treat it as opaque (api/mailbox-exportitems.md: "isn't intended for parsing"); its
//! layout is a private detail and may change.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::items::{Item, Occurrence, Photo};
use crate::model::{
    Addr, Attachment, AttachmentKind, Body, Content, ItemMessage, Message, MessageContent,
};

/// Leading bytes of every stream (and its format version).
const MAGIC: &[u8] = b"SIMFTS\x00\x01";

mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        STANDARD
            .decode(String::deserialize(d)?)
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Serialize, Deserialize)]
enum AttKind {
    File {
        #[serde(with = "b64")]
        bytes: Vec<u8>,
    },
    Item {
        content: Box<PContent>,
        sent: DateTime<Utc>,
        received: DateTime<Utc>,
    },
    Reference {
        source_url: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct PAttachment {
    name: String,
    content_type: Option<String>,
    kind: AttKind,
    is_inline: bool,
    content_id: Option<String>,
    last_modified: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PContent {
    subject: String,
    from: Option<Addr>,
    to: Vec<Addr>,
    cc: Vec<Addr>,
    bcc: Vec<Addr>,
    reply_to: Vec<Addr>,
    html: bool,
    body: String,
    internet_message_id: String,
    in_reply_to: Option<String>,
    references: Vec<String>,
    extra_headers: Vec<(String, String)>,
    importance: String,
    attachments: Vec<PAttachment>,
    raw_mime: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PMessage {
    content: PContent,
    is_read: bool,
    is_draft: bool,
    flag_status: String,
    categories: Vec<String>,
    received: DateTime<Utc>,
    sent: DateTime<Utc>,
    created: DateTime<Utc>,
    modified: DateTime<Utc>,
    ext_props: Vec<(String, String)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PPhoto {
    content_type: String,
    #[serde(with = "b64")]
    bytes: Vec<u8>,
    width: u32,
    height: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct POccurrence {
    cancelled: bool,
    props: Map<String, Value>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PItem {
    class: String,
    created: DateTime<Utc>,
    modified: DateTime<Utc>,
    categories: Vec<String>,
    props: Map<String, Value>,
    attachments: Vec<PAttachment>,
    photo: Option<PPhoto>,
    occurrences: BTreeMap<String, POccurrence>,
}

#[derive(Debug, Serialize, Deserialize)]
enum Portable {
    Message(Box<PMessage>),
    Item(Box<PItem>),
}

/// What an import recreates.
#[derive(Debug)]
pub(crate) enum Imported {
    Message(Box<Message>),
    Item(Box<Item>),
}

fn att_out(a: &Attachment) -> PAttachment {
    PAttachment {
        name: a.name.clone(),
        content_type: a.content_type.clone(),
        kind: match &a.kind {
            AttachmentKind::File(c) => AttKind::File {
                bytes: c.bytes().to_vec(),
            },
            AttachmentKind::Item(m) => AttKind::Item {
                content: Box::new(content_out(&m.content)),
                sent: m.sent,
                received: m.received,
            },
            AttachmentKind::Reference { source_url } => AttKind::Reference {
                source_url: source_url.clone(),
            },
        },
        is_inline: a.is_inline,
        content_id: a.content_id.clone(),
        last_modified: a.last_modified,
    }
}

fn att_in(a: PAttachment) -> Attachment {
    Attachment {
        name: a.name,
        content_type: a.content_type,
        kind: match a.kind {
            AttKind::File { bytes } => AttachmentKind::File(Content::Bytes(bytes.into())),
            AttKind::Item {
                content,
                sent,
                received,
            } => AttachmentKind::Item(Arc::new(ItemMessage {
                content: content_in(*content),
                sent,
                received,
            })),
            AttKind::Reference { source_url } => AttachmentKind::Reference { source_url },
        },
        is_inline: a.is_inline,
        content_id: a.content_id,
        last_modified: a.last_modified,
    }
}

fn content_out(c: &MessageContent) -> PContent {
    PContent {
        subject: c.subject.clone(),
        from: c.from.clone(),
        to: c.to.clone(),
        cc: c.cc.clone(),
        bcc: c.bcc.clone(),
        reply_to: c.reply_to.clone(),
        html: c.body.html,
        body: c.body.content.to_string(),
        internet_message_id: c.internet_message_id.clone(),
        in_reply_to: c.in_reply_to.clone(),
        references: c.references.clone(),
        extra_headers: c.extra_headers.clone(),
        importance: c.importance.to_owned(),
        attachments: c.attachments.iter().map(att_out).collect(),
        raw_mime: c.raw_mime.as_ref().map(|m| STANDARD.encode(m)),
    }
}

fn content_in(c: PContent) -> MessageContent {
    MessageContent {
        subject: c.subject,
        from: c.from,
        to: c.to,
        cc: c.cc,
        bcc: c.bcc,
        reply_to: c.reply_to,
        body: Body {
            html: c.html,
            content: c.body.into(),
        },
        internet_message_id: c.internet_message_id,
        in_reply_to: c.in_reply_to,
        references: c.references,
        extra_headers: c.extra_headers,
        importance: match c.importance.as_str() {
            "high" => "high",
            "low" => "low",
            _ => "normal",
        },
        attachments: c.attachments.into_iter().map(att_in).collect(),
        raw_mime: c
            .raw_mime
            .and_then(|m| STANDARD.decode(m).ok())
            .map(Arc::from),
    }
}

fn frame(p: &Portable) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&serde_json::to_vec(p).unwrap_or_default());
    out
}

/// The stream of a message.
pub(crate) fn export_message(m: &Message) -> Vec<u8> {
    frame(&Portable::Message(Box::new(PMessage {
        content: content_out(&m.content),
        is_read: m.is_read,
        is_draft: m.is_draft,
        flag_status: m.flag_status.clone(),
        categories: m.categories.clone(),
        received: m.received,
        sent: m.sent,
        created: m.created,
        modified: m.modified,
        ext_props: m.ext_props.clone(),
    })))
}

/// The stream of a non-mail item.
pub(crate) fn export_item(i: &Item) -> Vec<u8> {
    frame(&Portable::Item(Box::new(PItem {
        class: i.class.clone(),
        created: i.created,
        modified: i.modified,
        categories: i.categories.clone(),
        props: i.props.clone(),
        attachments: i.attachments.iter().map(att_out).collect(),
        photo: i.photo.as_ref().map(|p| PPhoto {
            content_type: p.content_type.clone(),
            bytes: p.bytes.to_vec(),
            width: p.width,
            height: p.height,
        }),
        occurrences: i
            .occurrences
            .iter()
            .map(|(k, o)| {
                (
                    k.clone(),
                    POccurrence {
                        cancelled: o.cancelled,
                        props: o.props.clone(),
                    },
                )
            })
            .collect(),
    })))
}

/// Reads a stream back; `None` when it is not one the simulator wrote.
pub(crate) fn import(data: &[u8]) -> Option<Imported> {
    let body = data.strip_prefix(MAGIC)?;
    Some(match serde_json::from_slice::<Portable>(body).ok()? {
        Portable::Message(m) => Imported::Message(Box::new(Message {
            key: 0,
            folder: 0,
            location_gen: 0,
            version: 0,
            seq: 0,
            added_seq: 0,
            content: Arc::new(content_in(m.content)),
            is_read: m.is_read,
            is_draft: m.is_draft,
            flag_status: m.flag_status,
            categories: m.categories,
            received: m.received,
            sent: m.sent,
            created: m.created,
            modified: m.modified,
            ext_props: m.ext_props,
            broken_value: false,
        })),
        Portable::Item(i) => Imported::Item(Box::new(Item {
            key: 0,
            folder: 0,
            class: i.class,
            version: 0,
            seq: 0,
            added_seq: 0,
            created: i.created,
            modified: i.modified,
            categories: i.categories,
            props: i.props,
            attachments: i.attachments.into_iter().map(att_in).collect(),
            photo: i.photo.map(|p| Photo {
                content_type: p.content_type,
                bytes: p.bytes.into(),
                width: p.width,
                height: p.height,
            }),
            occurrences: i
                .occurrences
                .into_iter()
                .map(|(k, o)| {
                    (
                        k,
                        Occurrence {
                            cancelled: o.cancelled,
                            props: o.props,
                        },
                    )
                })
                .collect(),
        })),
    })
}
