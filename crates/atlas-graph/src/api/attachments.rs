//! Attachments of a message (graph-api.md §7).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::client::{ByteStream, GraphClient, Req};
use crate::endpoint::Endpoint;
use crate::error::GraphError;
use std::fmt;

/// An attachment id within one message. Only Graph's attachment endpoints use it (the
/// core never sees attachment ids), so it stays at this edge.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct AttachmentId(String);

impl AttachmentId {
    /// Wrap an id as Graph returned it.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The id as Graph expects it back.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AttachmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AttachmentId({})", self.0)
    }
}

impl fmt::Display for AttachmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

use atlas_core::model::{ItemId, MailboxId};

/// Fields listed per attachment; `contentBytes` is left out on purpose (base64 inside
/// JSON is slow; bytes come from `$value`).
const ATTACHMENT_SELECT: &str = "id,name,contentType,size,isInline,lastModifiedDateTime";

/// Attachment flavour, from `@odata.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttachmentKind {
    /// `#microsoft.graph.fileAttachment`.
    File,
    /// `#microsoft.graph.itemAttachment` (an embedded message, event or contact).
    Item,
    /// `#microsoft.graph.referenceAttachment` (a link; `$value` answers 405).
    Reference,
    /// A type this client does not know.
    Other,
}

/// Attachment metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// `@odata.type`.
    #[serde(rename = "@odata.type", default)]
    pub odata_type: Option<String>,
    /// Id.
    pub id: AttachmentId,
    /// Display name (not necessarily a file name).
    #[serde(default)]
    pub name: Option<String>,
    /// MIME type (`null` for item attachments).
    #[serde(default)]
    pub content_type: Option<String>,
    /// Size in bytes as Graph reports it.
    #[serde(default)]
    pub size: Option<u64>,
    /// Inline (e.g. an image referenced by `cid:`).
    #[serde(default)]
    pub is_inline: Option<bool>,
    /// Content id for inline parts (file attachments; only on a single GET).
    #[serde(default)]
    pub content_id: Option<String>,
    /// Last modification.
    #[serde(default)]
    pub last_modified_date_time: Option<DateTime<Utc>>,
}

impl Attachment {
    /// The flavour.
    pub fn kind(&self) -> AttachmentKind {
        match self
            .odata_type
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("#microsoft.graph.fileattachment") => AttachmentKind::File,
            Some("#microsoft.graph.itemattachment") => AttachmentKind::Item,
            Some("#microsoft.graph.referenceattachment") => AttachmentKind::Reference,
            _ => AttachmentKind::Other,
        }
    }
}

impl GraphClient {
    /// Metadata of every attachment of a message.
    pub async fn list_attachments(
        &self,
        mailbox: &MailboxId,
        message: &ItemId,
    ) -> Result<Vec<Attachment>, GraphError> {
        let url = self.url(
            &[
                "users",
                crate::api::user_segment(mailbox),
                "messages",
                message.as_str(),
                "attachments",
            ],
            &[("$select", ATTACHMENT_SELECT)],
        );
        self.collect_pages(Req::get(Endpoint::Attachments, url, Some(mailbox)))
            .await
    }

    /// One attachment's full JSON (file attachments include `contentBytes`; with
    /// `expand_item` an item attachment includes its embedded `item`).
    pub async fn get_attachment_json(
        &self,
        mailbox: &MailboxId,
        message: &ItemId,
        attachment: &AttachmentId,
        expand_item: bool,
    ) -> Result<serde_json::Value, GraphError> {
        let query: Vec<(&str, &str)> = if expand_item {
            vec![("$expand", "microsoft.graph.itemattachment/item")]
        } else {
            Vec::new()
        };
        let url = self.url(
            &[
                "users",
                crate::api::user_segment(mailbox),
                "messages",
                message.as_str(),
                "attachments",
                attachment.as_str(),
            ],
            &query,
        );
        self.fetch_json(&Req::get(Endpoint::Attachments, url, Some(mailbox)))
            .await
    }

    /// The attachment's raw bytes (`$value`): original bytes for files, MIME for embedded
    /// messages. Streamed, like message MIME.
    pub async fn get_attachment_value(
        &self,
        mailbox: &MailboxId,
        message: &ItemId,
        attachment: &AttachmentId,
    ) -> Result<ByteStream, GraphError> {
        let url = self.url(
            &[
                "users",
                crate::api::user_segment(mailbox),
                "messages",
                message.as_str(),
                "attachments",
                attachment.as_str(),
                "$value",
            ],
            &[],
        );
        self.stream(&Req::get(Endpoint::Attachments, url, Some(mailbox)))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_attachment_json_parses() {
        let json = r##"{"@odata.type":"#microsoft.graph.fileAttachment","id":"AAMkADA1M-zAAA=",
            "lastModifiedDateTime":"2019-04-02T03:41:29Z","name":"Draft sales invoice template.docx",
            "contentType":"application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "size":13068,"isInline":false,"contentId":null,"contentLocation":null,
            "contentBytes":"UEsDBBQABgAIAAAAIQ4AAAAA"}"##;
        let a: Attachment = serde_json::from_str(json).expect("attachment");
        assert_eq!(a.kind(), AttachmentKind::File);
        assert_eq!(a.size, Some(13068));
        let item: Attachment = serde_json::from_str(
            r##"{"@odata.type":"#microsoft.graph.itemAttachment","id":"x","contentType":null,"name":"Fwd"}"##,
        )
        .expect("item");
        assert_eq!(item.kind(), AttachmentKind::Item);
        assert_eq!(item.content_type, None);
    }
}
