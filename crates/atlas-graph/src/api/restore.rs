//! Restore-side writes (graph-api.md §8): folders, messages, attachments, upload sessions.
//!
//! POSTs are never blindly retried (see the crate's `retry` module). Folder creation is made
//! idempotent here by looking the name up after a conflict or an unknown outcome; message
//! creation is left to the caller, who marks messages with an extended property and checks
//! with [`GraphClient::find_messages_by_property`].

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use reqwest::Method;
use reqwest::header::CONTENT_RANGE;
use serde::Deserialize;
use url::Url;

use crate::api::attachments::Attachment;
use crate::api::folders::MailFolder;
use crate::api::messages::{Message, odata_quote};
use crate::client::{GraphClient, Req, parse_json};
use crate::endpoint::Endpoint;
use crate::error::GraphError;
use atlas_core::SecretString;
use atlas_core::model::{FolderId, ItemId, MailboxId};

/// Graph's front end refuses request bodies above 4 MB.
pub const MAX_REQUEST_BYTES: u64 = 4 * 1024 * 1024;
/// Attachments at or above this size need an upload session.
pub const SMALL_ATTACHMENT_LIMIT: u64 = 3 * 1024 * 1024;
/// Largest chunk per upload PUT.
pub const MAX_CHUNK_BYTES: u64 = 4 * 1024 * 1024;

/// A folder that now exists.
#[derive(Debug, Clone)]
pub struct CreatedFolder {
    /// The folder.
    pub folder: MailFolder,
    /// True when it already existed (a rerun, or a create whose answer was lost).
    pub existed: bool,
}

/// A message to create.
#[derive(Debug, Clone)]
pub enum NewMessage {
    /// A message resource as JSON (may carry `singleValueExtendedProperties`, which is how
    /// a restored message becomes a non-draft with its original dates).
    Json(serde_json::Value),
    /// Raw RFC 5322 MIME; sent base64-encoded as `text/plain`. Graph stores it as a draft
    /// and accepts no extended properties alongside.
    Mime(Bytes),
}

/// A small file attachment (under 3 MB).
#[derive(Debug, Clone)]
pub struct NewFileAttachment {
    /// Name.
    pub name: String,
    /// MIME type.
    pub content_type: Option<String>,
    /// Bytes.
    pub content: Bytes,
    /// Inline.
    pub is_inline: bool,
    /// Content id for inline parts.
    pub content_id: Option<String>,
}

/// What an upload session is for.
#[derive(Debug, Clone)]
pub struct UploadSessionRequest {
    /// Attachment name.
    pub name: String,
    /// Total size in bytes.
    pub size: u64,
    /// MIME type.
    pub content_type: Option<String>,
    /// Inline (kept so large inline images stay inline, unlike the old tool).
    pub is_inline: bool,
    /// Content id.
    pub content_id: Option<String>,
}

/// An attachment upload session. The URL is pre-authenticated (it carries an auth token),
/// so it is held as a secret.
#[derive(Clone)]
pub struct UploadSession {
    /// Pre-authenticated upload URL.
    pub upload_url: SecretString,
    /// Where the server expects the next bytes.
    pub next_offset: u64,
}

impl fmt::Debug for UploadSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UploadSession")
            .field("upload_url", &"<redacted>")
            .field("next_offset", &self.next_offset)
            .finish()
    }
}

/// Where an upload stands after a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadProgress {
    /// Send from this offset next.
    Next(u64),
    /// All bytes received; the attachment exists.
    Complete,
}

#[derive(Deserialize)]
struct SessionWire {
    #[serde(rename = "uploadUrl")]
    upload_url: String,
    #[serde(rename = "nextExpectedRanges", alias = "NextExpectedRanges", default)]
    next_expected_ranges: Vec<String>,
}

#[derive(Deserialize)]
struct ChunkWire {
    #[serde(rename = "nextExpectedRanges", alias = "NextExpectedRanges", default)]
    next_expected_ranges: Vec<String>,
}

/// First offset of `["2097152-"]`, `["2097152"]` or `["0-4194303"]`.
fn first_offset(ranges: &[String]) -> Option<u64> {
    let first = ranges.first()?;
    first.split('-').next()?.trim().parse().ok()
}

impl GraphClient {
    /// Create a folder under `parent` (or the root); if a folder of that name is already
    /// there — a conflict, or a create whose answer was lost — return it instead.
    pub async fn create_folder(
        &self,
        mailbox: &MailboxId,
        parent: Option<&FolderId>,
        display_name: &str,
    ) -> Result<CreatedFolder, GraphError> {
        let url = match parent {
            Some(p) => self.url(
                &[
                    "users",
                    crate::api::user_segment(mailbox),
                    "mailFolders",
                    p.as_str(),
                    "childFolders",
                ],
                &[],
            ),
            None => self.url(
                &["users", crate::api::user_segment(mailbox), "mailFolders"],
                &[],
            ),
        };
        let body = serde_json::json!({ "displayName": display_name, "isHidden": false });
        match self
            .fetch_json::<MailFolder>(&Req::post_json(
                Endpoint::CreateFolder,
                url,
                Some(mailbox),
                &body,
            ))
            .await
        {
            Ok(folder) => Ok(CreatedFolder {
                folder,
                existed: false,
            }),
            Err(err @ (GraphError::AlreadyExists { .. } | GraphError::OutcomeUnknown { .. })) => {
                match self
                    .find_child_folder(mailbox, parent, display_name)
                    .await?
                {
                    Some(folder) => Ok(CreatedFolder {
                        folder,
                        existed: true,
                    }),
                    None => Err(err),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// A direct child of `parent` (or of the root) by display name (Exchange compares
    /// folder names case-insensitively). Hidden folders are included.
    pub async fn find_child_folder(
        &self,
        mailbox: &MailboxId,
        parent: Option<&FolderId>,
        display_name: &str,
    ) -> Result<Option<MailFolder>, GraphError> {
        let folders = match parent {
            Some(p) => self.list_child_folders(mailbox, p, true).await?,
            None => self.list_top_folders(mailbox, true).await?,
        };
        Ok(folders
            .into_iter()
            .find(|f| f.display_name.to_lowercase() == display_name.to_lowercase()))
    }

    /// Create a message in `folder` (or Drafts when `None`). Not retried after an unclear
    /// failure: [`GraphError::OutcomeUnknown`] tells the caller to check first.
    pub async fn create_message(
        &self,
        mailbox: &MailboxId,
        folder: Option<&FolderId>,
        message: &NewMessage,
    ) -> Result<Message, GraphError> {
        let url = match folder {
            Some(f) => self.url(
                &[
                    "users",
                    crate::api::user_segment(mailbox),
                    "mailFolders",
                    f.as_str(),
                    "messages",
                ],
                &[],
            ),
            None => self.url(
                &["users", crate::api::user_segment(mailbox), "messages"],
                &[],
            ),
        };
        let (body, content_type, what) = match message {
            NewMessage::Json(v) => (
                Bytes::from(v.to_string()),
                "application/json",
                "message JSON",
            ),
            NewMessage::Mime(mime) => (
                Bytes::from(STANDARD.encode(mime)),
                "text/plain",
                "base64-encoded MIME",
            ),
        };
        check_size(what, body.len() as u64, MAX_REQUEST_BYTES)?;
        let mut req = Req::get(Endpoint::CreateMessage, url, Some(mailbox));
        req.method = Method::POST;
        req.body = Some((body, content_type));
        req.upload = true;
        self.fetch_json(&req).await
    }

    /// Attach a file under 3 MB.
    pub async fn add_file_attachment(
        &self,
        mailbox: &MailboxId,
        message: &ItemId,
        attachment: &NewFileAttachment,
    ) -> Result<Attachment, GraphError> {
        check_size(
            "attachment for a direct POST",
            attachment.content.len() as u64,
            SMALL_ATTACHMENT_LIMIT - 1,
        )?;
        let mut body = serde_json::json!({
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": attachment.name,
            "contentBytes": STANDARD.encode(&attachment.content),
            "isInline": attachment.is_inline,
        });
        if let Some(ct) = &attachment.content_type {
            body["contentType"] = ct.clone().into();
        }
        if let Some(cid) = &attachment.content_id {
            body["contentId"] = cid.clone().into();
        }
        let url = self.url(
            &[
                "users",
                crate::api::user_segment(mailbox),
                "messages",
                message.as_str(),
                "attachments",
            ],
            &[],
        );
        self.fetch_json(&Req::post_json(
            Endpoint::AddAttachment,
            url,
            Some(mailbox),
            &body,
        ))
        .await
    }

    /// Open an upload session for an attachment of 3 MB or more.
    pub async fn create_upload_session(
        &self,
        mailbox: &MailboxId,
        message: &ItemId,
        request: &UploadSessionRequest,
    ) -> Result<UploadSession, GraphError> {
        let mut item = serde_json::json!({
            "attachmentType": "file",
            "name": request.name,
            "size": request.size,
            "isInline": request.is_inline,
        });
        if let Some(ct) = &request.content_type {
            item["contentType"] = ct.clone().into();
        }
        if let Some(cid) = &request.content_id {
            item["contentId"] = cid.clone().into();
        }
        let url = self.url(
            &[
                "users",
                crate::api::user_segment(mailbox),
                "messages",
                message.as_str(),
                "attachments",
                "createUploadSession",
            ],
            &[],
        );
        let body = serde_json::json!({ "AttachmentItem": item });
        let wire: SessionWire = self
            .fetch_json(&Req::post_json(
                Endpoint::CreateUploadSession,
                url,
                Some(mailbox),
                &body,
            ))
            .await?;
        Ok(UploadSession {
            next_offset: first_offset(&wire.next_expected_ranges).unwrap_or(0),
            upload_url: SecretString::new(wire.upload_url),
        })
    }

    /// PUT one chunk (`offset..offset+chunk.len()` of `total`). No bearer token: the URL
    /// is pre-authenticated. Chunk PUTs are idempotent, so they are retried.
    pub async fn upload_chunk(
        &self,
        mailbox: &MailboxId,
        session: &UploadSession,
        offset: u64,
        total: u64,
        chunk: Bytes,
    ) -> Result<UploadProgress, GraphError> {
        let len = chunk.len() as u64;
        check_size("upload chunk", len, MAX_CHUNK_BYTES)?;
        if len == 0 || offset + len > total {
            return Err(GraphError::protocol(
                Endpoint::UploadChunk,
                "chunk is empty or runs past the declared size",
            ));
        }
        let url = Url::parse(session.upload_url.expose())
            .map_err(|_| GraphError::protocol(Endpoint::UploadChunk, "upload URL is not a URL"))?;
        let mut req = Req::get(Endpoint::UploadChunk, url, Some(mailbox));
        req.method = Method::PUT;
        req.auth = false;
        req.upload = true;
        req.body = Some((chunk, "application/octet-stream"));
        req.headers.push((
            CONTENT_RANGE,
            format!("bytes {offset}-{}/{total}", offset + len - 1),
        ));
        let (status, _, body) = self.fetch(&req).await?;
        if status.as_u16() == 201 || (offset + len == total && body.is_empty()) {
            return Ok(UploadProgress::Complete);
        }
        let wire: ChunkWire = parse_json(&body, Endpoint::UploadChunk)?;
        Ok(match first_offset(&wire.next_expected_ranges) {
            Some(next) => UploadProgress::Next(next),
            None if offset + len == total => UploadProgress::Complete,
            None => UploadProgress::Next(offset + len),
        })
    }

    /// Upload `data` through `session` in chunks of at most 4 MB, continuing from wherever
    /// the server says it expects the next bytes.
    pub async fn upload_attachment(
        &self,
        mailbox: &MailboxId,
        session: &UploadSession,
        data: &Bytes,
    ) -> Result<(), GraphError> {
        let total = data.len() as u64;
        let mut offset = session.next_offset;
        // Each round either completes or moves the offset; a server that keeps asking for
        // the same bytes is stopped by this bound.
        let max_rounds = total / MAX_CHUNK_BYTES + 16;
        for _ in 0..max_rounds {
            if offset >= total {
                break;
            }
            let end = (offset + MAX_CHUNK_BYTES).min(total);
            let start = usize::try_from(offset).expect("invariant: offset < data.len()");
            let stop = usize::try_from(end).expect("invariant: end <= data.len()");
            match self
                .upload_chunk(mailbox, session, offset, total, data.slice(start..stop))
                .await?
            {
                UploadProgress::Complete => return Ok(()),
                UploadProgress::Next(next) => offset = next,
            }
        }
        Err(GraphError::protocol(
            Endpoint::UploadChunk,
            "upload session did not complete after all bytes were sent",
        ))
    }
}

/// A message listed with the single-value extended properties that were asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkedMessage {
    /// Message id.
    pub id: ItemId,
    /// RFC 5322 Message-ID.
    pub internet_message_id: Option<String>,
    /// `(property id, value)` of the requested properties the message has.
    pub properties: Vec<(String, String)>,
}

impl MarkedMessage {
    /// The value of property `id` (ids compare case-insensitively, as Exchange does).
    pub fn property(&self, id: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(id))
            .map(|(_, v)| v.as_str())
    }
}

impl GraphClient {
    /// Every message in `folder` with the values of the named single-value extended
    /// properties (`$expand=singleValueExtendedProperties($filter=id eq … or id eq …)`):
    /// one paged listing tells restore which messages an earlier run already created.
    pub async fn list_marked_messages(
        &self,
        mailbox: &MailboxId,
        folder: &FolderId,
        property_ids: &[&str],
    ) -> Result<Vec<MarkedMessage>, GraphError> {
        #[derive(Deserialize)]
        struct Prop {
            id: String,
            #[serde(default)]
            value: Option<String>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire {
            id: ItemId,
            #[serde(default)]
            internet_message_id: Option<String>,
            #[serde(default)]
            single_value_extended_properties: Vec<Prop>,
        }
        let filter = property_ids
            .iter()
            .map(|p| format!("id eq '{}'", odata_quote(p)))
            .collect::<Vec<_>>()
            .join(" or ");
        let expand = format!("singleValueExtendedProperties($filter={filter})");
        let url = self.url(
            &[
                "users",
                crate::api::user_segment(mailbox),
                "mailFolders",
                folder.as_str(),
                "messages",
            ],
            &[
                ("$select", "id,internetMessageId"),
                ("$expand", &expand),
                ("$top", "500"),
            ],
        );
        let items: Vec<Wire> = self
            .collect_pages(Req::get(Endpoint::GetMessage, url, Some(mailbox)))
            .await?;
        Ok(items
            .into_iter()
            .map(|w| MarkedMessage {
                id: w.id,
                internet_message_id: w.internet_message_id,
                properties: w
                    .single_value_extended_properties
                    .into_iter()
                    .filter_map(|p| Some((p.id, p.value?)))
                    .collect(),
            })
            .collect())
    }

    /// `PATCH` a message (flag, categories, extended properties). Tagged
    /// [`Endpoint::CreateMessage`] because it needs the same permission (Mail.ReadWrite) and
    /// because an unclear failure is then reported as [`GraphError::OutcomeUnknown`] rather
    /// than retried here; the caller knows whether repeating it is harmless.
    pub async fn update_message(
        &self,
        mailbox: &MailboxId,
        message: &ItemId,
        patch: &serde_json::Value,
    ) -> Result<(), GraphError> {
        let url = self.url(
            &[
                "users",
                crate::api::user_segment(mailbox),
                "messages",
                message.as_str(),
            ],
            &[],
        );
        let mut req = Req::post_json(Endpoint::CreateMessage, url, Some(mailbox), patch);
        req.method = Method::PATCH;
        self.fetch(&req).await.map(|_| ())
    }

    /// Prove the app may write mail in `mailbox` without writing anything: an empty
    /// `PATCH` of a message id that cannot exist. Graph checks the app's roles before it
    /// looks the item up, so a missing Mail.ReadWrite answers 403 while a granted one
    /// answers "not found" (404, or 400 for the malformed id).
    ///
    /// The probe changes nothing, so one whose answer was lost
    /// ([`GraphError::OutcomeUnknown`]) is simply sent again (a few times): a dropped
    /// connection must not end a restore before it starts.
    pub async fn probe_mail_write(&self, mailbox: &MailboxId) -> Result<(), GraphError> {
        const ATTEMPTS: usize = 3;
        let probe = ItemId::new("AtlasWriteAccessProbe-this-id-does-not-exist");
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .update_message(mailbox, &probe, &serde_json::json!({}))
                .await
            {
                Ok(())
                | Err(GraphError::NotFound { .. } | GraphError::Rejected { status: 400, .. }) => {
                    return Ok(());
                }
                Err(GraphError::OutcomeUnknown { .. }) if attempt < ATTEMPTS => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Attach an item (an embedded message) given as Graph JSON
    /// (`{"@odata.type":"#microsoft.graph.itemAttachment","name":…,"item":{…}}`).
    pub async fn add_item_attachment(
        &self,
        mailbox: &MailboxId,
        message: &ItemId,
        attachment: &serde_json::Value,
    ) -> Result<Attachment, GraphError> {
        let body = attachment.to_string();
        check_size("item attachment", body.len() as u64, MAX_REQUEST_BYTES)?;
        let url = self.url(
            &[
                "users",
                crate::api::user_segment(mailbox),
                "messages",
                message.as_str(),
                "attachments",
            ],
            &[],
        );
        self.fetch_json(&Req::post_json(
            Endpoint::AddAttachment,
            url,
            Some(mailbox),
            attachment,
        ))
        .await
    }
}

fn check_size(what: &'static str, size: u64, limit: u64) -> Result<(), GraphError> {
    if size > limit {
        return Err(GraphError::TooLarge { what, size, limit });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_expected_ranges_forms() {
        assert_eq!(first_offset(&["0-".into()]), Some(0));
        assert_eq!(first_offset(&["2097152".into()]), Some(2_097_152));
        assert_eq!(first_offset(&["4194304-8388607".into()]), Some(4_194_304));
        assert_eq!(first_offset(&[]), None);
    }

    #[test]
    fn documented_session_and_chunk_answers_parse() {
        let s: SessionWire = serde_json::from_str(
            r#"{"@odata.context":"x#microsoft.graph.uploadSession","uploadUrl":"https://outlook.office.com/api/v2.0/Users('a')/Messages('b')/AttachmentSessions('c')?authtoken=eyJ","expirationDateTime":"2019-09-25T01:09:30.7671707Z","nextExpectedRanges":["0-"]}"#,
        )
        .expect("session");
        assert_eq!(first_offset(&s.next_expected_ranges), Some(0));
        let c: ChunkWire = serde_json::from_str(
            r#"{"@odata.context":"https://outlook.office.com/api/v2.0/$metadata#Users('a')/Messages('b')/AttachmentSessions/$entity","ExpirationDateTime":"2019-09-25T01:09:30.7671707Z","NextExpectedRanges":["2097152"]}"#,
        )
        .expect("chunk");
        assert_eq!(first_offset(&c.next_expected_ranges), Some(2_097_152));
        let session = UploadSession {
            upload_url: SecretString::new(s.upload_url),
            next_offset: 0,
        };
        assert!(!format!("{session:?}").contains("authtoken"));
    }

    #[test]
    fn sizes_are_checked_before_sending() {
        assert!(check_size("x", MAX_REQUEST_BYTES, MAX_REQUEST_BYTES).is_ok());
        assert!(matches!(
            check_size("x", MAX_REQUEST_BYTES + 1, MAX_REQUEST_BYTES),
            Err(GraphError::TooLarge { .. })
        ));
    }
}
