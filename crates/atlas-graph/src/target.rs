//! [`GraphClient`] as the core's [`MailTarget`] port (restore writes, graph-api.md §8).
//!
//! Like [`crate::GraphSource`] for reads, this is the one place where Graph errors become
//! the core's [`TargetError`], and where a restored message becomes Graph JSON:
//!
//! - created with JSON (not MIME, which Graph stores as an un-draftable draft), with
//!   `singleValueExtendedProperties` in the create request: `Integer 0x0E07`
//!   (PR_MESSAGE_FLAGS: read bit, no unsent bit → received mail), `SystemTime 0x0E06`
//!   (delivery time → `receivedDateTime`), `SystemTime 0x0039` (submit time →
//!   `sentDateTime`), `String 0x1042` / `String 0x1039` (In-Reply-To / References, for
//!   threading) and Atlas's restore marks;
//! - custom headers only `x-…` (`internetMessageHeaders`, create only);
//! - the marks are named properties in Atlas's own property set
//!   ([`RESTORE_PROPERTY_SET`]): `AtlasRestoreSource` (original immutable id),
//!   `AtlasRestoreRun` (run id), `AtlasRestoreComplete` (set by the last write);
//! - embedded messages become `#microsoft.graph.itemAttachment` with the inner message as
//!   JSON (dates included, read, non-draft);
//! - attachments of 3 MB and more go through an upload session in ≤ 4 MB chunks, keeping
//!   `isInline` and `contentId` (the old tool dropped both for large inline images).

use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use atlas_core::model::{
    EmailAddress, FlagStatus, FolderId, Importance, ItemId, ItemKind, MailboxId,
};
use atlas_core::ports::{
    ConfigTarget, ItemImport, MailTarget, RestoreAttachment, RestoreBody, RestoreMark,
    RestoreMessage, TargetAttachment, TargetError, TargetFolder, TargetItem,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::api::mailbox::{ExchangeMailboxId, ImportSession};
use crate::api::restore::{
    MAX_REQUEST_BYTES, NewFileAttachment, NewMessage, SMALL_ATTACHMENT_LIMIT, UploadSessionRequest,
};
use crate::client::GraphClient;
use crate::error::GraphError;

/// Atlas's MAPI named-property set (a fixed GUID of ours).
pub const RESTORE_PROPERTY_SET: &str = "{7B3E5A2C-4D1F-4E8A-9B6C-2F0D8E1A3C5B}";

/// `AtlasRestoreSource`: the original message's immutable id.
pub const PROP_SOURCE: &str =
    "String {7B3E5A2C-4D1F-4E8A-9B6C-2F0D8E1A3C5B} Name AtlasRestoreSource";
/// `AtlasRestoreRun`: the run that created the message.
pub const PROP_RUN: &str = "String {7B3E5A2C-4D1F-4E8A-9B6C-2F0D8E1A3C5B} Name AtlasRestoreRun";
/// `AtlasRestoreComplete`: `"1"` once every attachment is on the message.
pub const PROP_COMPLETE: &str =
    "String {7B3E5A2C-4D1F-4E8A-9B6C-2F0D8E1A3C5B} Name AtlasRestoreComplete";

/// Attachment bytes that may ride in the create request: base64 inflates by 4/3 and the
/// message itself needs room under Graph's 4 MB request cap.
const CREATE_ATTACHMENT_BUDGET: u64 = 2 * 1024 * 1024;
/// Folder creates tried when their answers keep getting lost.
const FOLDER_CREATE_ATTEMPTS: usize = 3;
/// Custom headers sent at most (Exchange limits the total header size).
const MAX_CUSTOM_HEADERS: usize = 32;

/// Translate a Graph error met while restoring.
pub(crate) fn target_error(e: GraphError) -> TargetError {
    match e {
        GraphError::Auth(a) => TargetError::Auth(a.to_string()),
        GraphError::PermissionDenied {
            permission,
            request_id,
            ..
        } => TargetError::PermissionDenied {
            permission: permission.to_owned(),
            request_id: request_id.unwrap_or_else(|| "-".into()),
        },
        GraphError::MailboxNotFound { mailbox, .. } => TargetError::MailboxNotFound(mailbox),
        GraphError::MailboxNotEnabled { mailbox, .. } => TargetError::MailboxNotEnabled(mailbox),
        e @ GraphError::NotFound { .. } => TargetError::NotFound(e.to_string()),
        e @ GraphError::OutcomeUnknown { .. } => TargetError::OutcomeUnknown(e.to_string()),
        e @ (GraphError::TooLarge { .. }
        | GraphError::Rejected { .. }
        | GraphError::AlreadyExists { .. }) => TargetError::Rejected(e.to_string()),
        e @ (GraphError::Throttled { .. }
        | GraphError::Timeout { .. }
        | GraphError::Network { .. }
        | GraphError::Server { .. }) => TargetError::Unavailable(e.to_string()),
        // Their kind survives the port: the CLI's hint names the setting to check.
        e @ GraphError::Dns { .. } => TargetError::Dns(e.to_string()),
        e @ GraphError::Tls { .. } => TargetError::Tls(e.to_string()),
        e => TargetError::Other(e.to_string()),
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn recipient(a: &EmailAddress) -> Value {
    if a.name.is_empty() {
        json!({ "emailAddress": { "address": a.address } })
    } else {
        json!({ "emailAddress": { "name": a.name, "address": a.address } })
    }
}

fn recipients(list: &[EmailAddress]) -> Value {
    Value::Array(list.iter().map(recipient).collect())
}

fn importance(i: Importance) -> &'static str {
    match i {
        Importance::Low => "low",
        Importance::High => "high",
        Importance::Normal | Importance::Unknown => "normal",
    }
}

fn flag(f: FlagStatus) -> &'static str {
    match f {
        FlagStatus::Flagged => "flagged",
        FlagStatus::Complete => "complete",
        FlagStatus::NotFlagged | FlagStatus::Unknown => "notFlagged",
    }
}

/// The message resource, without attachments and marks: shared by top-level messages
/// and embedded (item attachment) ones.
fn message_json(m: &RestoreMessage) -> Value {
    let (content_type, content) = match &m.body {
        RestoreBody::Html(h) => ("html", h.as_str()),
        RestoreBody::Text(t) => ("text", t.as_str()),
    };
    let mut v = json!({
        "subject": m.subject,
        "body": { "contentType": content_type, "content": content },
        "toRecipients": recipients(&m.to),
        "ccRecipients": recipients(&m.cc),
        "bccRecipients": recipients(&m.bcc),
        "replyTo": recipients(&m.reply_to),
        "importance": importance(m.importance),
        "isRead": m.is_read,
    });
    if let Some(from) = &m.from {
        v["from"] = recipient(from);
    }
    if let Some(sender) = &m.sender {
        v["sender"] = recipient(sender);
    }
    if let Some(imid) = &m.internet_message_id {
        v["internetMessageId"] = imid.clone().into();
    }
    // PR_MESSAGE_FLAGS is writable only at creation: read bit as stored, unsent bit only
    // for messages that were drafts.
    let mut flags = 0u32;
    if m.is_read {
        flags |= 0x01;
    }
    if m.is_draft {
        flags |= 0x08;
    }
    let mut props = vec![json!({ "id": "Integer 0x0E07", "value": flags.to_string() })];
    if let Some(r) = m.received {
        props.push(json!({ "id": "SystemTime 0x0E06", "value": ts(r) }));
    }
    if let Some(s) = m.sent {
        props.push(json!({ "id": "SystemTime 0x0039", "value": ts(s) }));
    }
    if let Some(irt) = &m.in_reply_to {
        props.push(json!({ "id": "String 0x1042", "value": irt }));
    }
    if let Some(refs) = &m.references {
        props.push(json!({ "id": "String 0x1039", "value": refs }));
    }
    v["singleValueExtendedProperties"] = Value::Array(props);
    v
}

fn attachment_json(a: &RestoreAttachment) -> Value {
    match a {
        RestoreAttachment::File {
            name,
            content_type,
            bytes,
            is_inline,
            content_id,
        } => {
            let mut v = json!({
                "@odata.type": "#microsoft.graph.fileAttachment",
                "name": name,
                "contentBytes": STANDARD.encode(bytes),
                "isInline": is_inline,
            });
            if let Some(ct) = content_type {
                v["contentType"] = ct.clone().into();
            }
            if let Some(cid) = content_id {
                v["contentId"] = cid.clone().into();
            }
            v
        }
        RestoreAttachment::Item { name, message, .. } => {
            let mut item = message_json(message);
            item["@odata.type"] = "#microsoft.graph.message".into();
            if let Some(s) = message.sent {
                item["sentDateTime"] = ts(s).into();
            }
            if let Some(r) = message.received.or(message.sent) {
                item["receivedDateTime"] = ts(r).into();
            }
            json!({
                "@odata.type": "#microsoft.graph.itemAttachment",
                "name": name,
                "item": item,
            })
        }
    }
}

/// Flag and categories are sent at creation and, for messages that have any, again with
/// the completion mark: some servers (the simulator among them) apply them only on
/// update, and a second write of the same values is harmless.
fn needs_state_update(m: &RestoreMessage) -> bool {
    m.flag != FlagStatus::NotFlagged || !m.categories.is_empty()
}

/// The Graph client seen through the core's mail-target port.
#[derive(Debug, Clone)]
pub struct GraphTarget {
    client: GraphClient,
    /// Import/export API mailbox ids (`MBX:…`) by mailbox.
    mbx: Arc<Mutex<HashMap<MailboxId, ExchangeMailboxId>>>,
    /// The open import session of each mailbox (renewed when it expires).
    sessions: Arc<tokio::sync::Mutex<HashMap<MailboxId, ImportSession>>>,
}

impl GraphTarget {
    /// Wrap a client (clones share its token cache and limiters, so a restore and a
    /// backup in one process share the per-mailbox budget).
    pub fn new(client: GraphClient) -> Self {
        Self {
            client,
            mbx: Arc::default(),
            sessions: Arc::default(),
        }
    }

    /// The underlying client (for counters).
    pub fn client(&self) -> &GraphClient {
        &self.client
    }
}

#[async_trait]
impl MailTarget for GraphTarget {
    async fn resolve_mailbox(&self, address_or_id: &str) -> Result<MailboxId, TargetError> {
        let wanted = MailboxId::new(address_or_id);
        // The directory lookup gives the stable object id; it needs User.Read.All, which a
        // restore-only app may lack, so without it the address is used as given.
        let mailbox = match self.client.get_user(&wanted).await {
            Ok(user) => user.mailbox_id(),
            Err(GraphError::PermissionDenied { .. }) => wanted,
            Err(e) => return Err(target_error(e)),
        };
        let address = mailbox.address().to_owned();
        // A mailbox exists when its inbox does (needs only Mail.Read/ReadWrite); a user
        // without one answers MailboxNotEnabledForRESTAPI.
        self.client
            .get_folder(&mailbox, &FolderId::new("inbox"))
            .await
            .map_err(|e| match e {
                GraphError::NotFound { .. } => TargetError::MailboxNotEnabled(address.clone()),
                GraphError::MailboxNotEnabled { .. } => {
                    TargetError::MailboxNotEnabled(address.clone())
                }
                GraphError::MailboxNotFound { .. } => TargetError::MailboxNotFound(address.clone()),
                e => target_error(e),
            })?;
        Ok(mailbox)
    }

    async fn check_write_access(&self, mailbox: &MailboxId) -> Result<(), TargetError> {
        self.client
            .probe_mail_write(mailbox)
            .await
            .map_err(target_error)
    }

    async fn well_known_folder(
        &self,
        mailbox: &MailboxId,
        well_known: &str,
    ) -> Result<Option<TargetFolder>, TargetError> {
        match self
            .client
            .get_folder(mailbox, &FolderId::new(well_known))
            .await
        {
            Ok(f) => Ok(Some(TargetFolder {
                id: f.id,
                display_name: f.display_name,
            })),
            Err(GraphError::NotFound { .. } | GraphError::Rejected { status: 400, .. }) => Ok(None),
            Err(e) => Err(target_error(e)),
        }
    }

    async fn ensure_folder(
        &self,
        mailbox: &MailboxId,
        parent: Option<&FolderId>,
        name: &str,
    ) -> Result<TargetFolder, TargetError> {
        let m = mailbox;
        // Look first: on a rerun every folder exists, and a lookup is cheaper than a
        // create that ends in a conflict.
        if let Some(f) = self
            .client
            .find_child_folder(m, parent, name)
            .await
            .map_err(target_error)?
        {
            return Ok(TargetFolder {
                id: f.id,
                display_name: f.display_name,
            });
        }
        // `create_folder` already looks the name up after a lost answer; when the folder
        // is not there the create did not happen, so sending it again is safe.
        let mut last = None;
        for _ in 0..FOLDER_CREATE_ATTEMPTS {
            match self.client.create_folder(m, parent, name).await {
                Ok(created) => {
                    return Ok(TargetFolder {
                        id: created.folder.id,
                        display_name: created.folder.display_name,
                    });
                }
                Err(e @ GraphError::OutcomeUnknown { .. }) => last = Some(e),
                Err(e) => return Err(target_error(e)),
            }
        }
        Err(target_error(
            last.expect("invariant: the loop ran at least once"),
        ))
    }

    async fn list_items(
        &self,
        mailbox: &MailboxId,
        folder: &FolderId,
    ) -> Result<Vec<TargetItem>, TargetError> {
        let list = self
            .client
            .list_marked_messages(mailbox, folder, &[PROP_SOURCE, PROP_COMPLETE])
            .await
            .map_err(target_error)?;
        Ok(list
            .into_iter()
            .map(|m| TargetItem {
                source_id: m.property(PROP_SOURCE).map(ItemId::from),
                complete: m.property(PROP_COMPLETE) == Some("1"),
                internet_message_id: m.internet_message_id,
                id: m.id,
            })
            .collect())
    }

    async fn create_message(
        &self,
        mailbox: &MailboxId,
        folder: &FolderId,
        message: &RestoreMessage,
        inline_attachments: &[RestoreAttachment],
        mark: &RestoreMark,
        complete: bool,
    ) -> Result<ItemId, TargetError> {
        let mut v = message_json(message);
        if !message.categories.is_empty() {
            v["categories"] = message.categories.clone().into();
        }
        if message.flag != FlagStatus::NotFlagged {
            v["flag"] = json!({ "flagStatus": flag(message.flag) });
        }
        let headers: Vec<Value> = message
            .headers
            .iter()
            .filter(|(n, val)| n.to_ascii_lowercase().starts_with("x-") && val.len() <= 998)
            .take(MAX_CUSTOM_HEADERS)
            .map(|(n, val)| json!({ "name": n, "value": val }))
            .collect();
        if !headers.is_empty() {
            v["internetMessageHeaders"] = Value::Array(headers);
        }
        if !inline_attachments.is_empty() {
            v["attachments"] =
                Value::Array(inline_attachments.iter().map(attachment_json).collect());
        }
        let set_complete_now = complete && !needs_state_update(message);
        if let Some(props) = v["singleValueExtendedProperties"].as_array_mut() {
            props.push(json!({ "id": PROP_SOURCE, "value": mark.source_id.as_str() }));
            props.push(json!({ "id": PROP_RUN, "value": mark.run_id }));
            if set_complete_now {
                props.push(json!({ "id": PROP_COMPLETE, "value": "1" }));
            }
        }
        let created = self
            .client
            .create_message(mailbox, Some(folder), &NewMessage::Json(v))
            .await
            .map_err(target_error)?;
        let id = created.id;
        if complete && !set_complete_now {
            self.mark_complete(mailbox, &id, message).await?;
        }
        Ok(id)
    }

    async fn list_attachments(
        &self,
        mailbox: &MailboxId,
        item: &ItemId,
    ) -> Result<Vec<TargetAttachment>, TargetError> {
        let list = self
            .client
            .list_attachments(mailbox, item)
            .await
            .map_err(target_error)?;
        Ok(list
            .into_iter()
            .map(|a| TargetAttachment {
                name: a.name.unwrap_or_default(),
                is_inline: a.is_inline.unwrap_or(false),
            })
            .collect())
    }

    async fn add_attachment(
        &self,
        mailbox: &MailboxId,
        item: &ItemId,
        attachment: &RestoreAttachment,
    ) -> Result<(), TargetError> {
        match attachment {
            RestoreAttachment::File {
                name,
                content_type,
                bytes,
                is_inline,
                content_id,
            } if (bytes.len() as u64) < SMALL_ATTACHMENT_LIMIT => self
                .client
                .add_file_attachment(
                    mailbox,
                    item,
                    &NewFileAttachment {
                        name: name.clone(),
                        content_type: content_type.clone(),
                        content: bytes.clone(),
                        is_inline: *is_inline,
                        content_id: content_id.clone(),
                    },
                )
                .await
                .map(|_| ())
                .map_err(target_error),
            RestoreAttachment::File {
                name,
                content_type,
                bytes,
                is_inline,
                content_id,
            } => {
                let session = self
                    .client
                    .create_upload_session(
                        mailbox,
                        item,
                        &UploadSessionRequest {
                            name: name.clone(),
                            size: bytes.len() as u64,
                            content_type: content_type.clone(),
                            is_inline: *is_inline,
                            content_id: content_id.clone(),
                        },
                    )
                    .await
                    .map_err(target_error)?;
                self.client
                    .upload_attachment(mailbox, &session, bytes)
                    .await
                    .map_err(target_error)
            }
            RestoreAttachment::Item { .. } => {
                let v = attachment_json(attachment);
                if v.to_string().len() as u64 > MAX_REQUEST_BYTES {
                    return Err(TargetError::Rejected(
                        "embedded message is larger than Graph's 4 MB request limit".into(),
                    ));
                }
                self.client
                    .add_item_attachment(mailbox, item, &v)
                    .await
                    .map(|_| ())
                    .map_err(target_error)
            }
        }
    }

    async fn mark_complete(
        &self,
        mailbox: &MailboxId,
        item: &ItemId,
        message: &RestoreMessage,
    ) -> Result<(), TargetError> {
        let patch = json!({
            "flag": { "flagStatus": flag(message.flag) },
            "categories": message.categories,
            "singleValueExtendedProperties": [{ "id": PROP_COMPLETE, "value": "1" }],
        });
        self.client
            .update_message(mailbox, item, &patch)
            .await
            .map_err(target_error)
    }

    fn inline_attachment_budget(&self) -> u64 {
        CREATE_ATTACHMENT_BUDGET
    }
}

/// The folder class a restored folder of `kind` is created with
/// (resources/mailboxfolder.md, `type`).
pub fn folder_class(kind: ItemKind) -> &'static str {
    match kind {
        ItemKind::Calendar => "IPF.Appointment",
        ItemKind::Contact => "IPF.Contact",
        ItemKind::Task => "IPF.Task",
        ItemKind::Note => "IPF.StickyNote",
        _ => "IPF.Note",
    }
}

/// The well-known folder a kind's restore root goes under.
fn kind_home_name(kind: ItemKind) -> Option<&'static str> {
    match kind {
        ItemKind::Calendar => Some("calendar"),
        ItemKind::Contact => Some("contacts"),
        ItemKind::Task => Some("tasks"),
        ItemKind::Note => Some("notes"),
        _ => None,
    }
}

impl GraphTarget {
    fn cached_mbx(&self, mailbox: &MailboxId) -> Option<ExchangeMailboxId> {
        self.mbx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(mailbox)
            .cloned()
    }

    async fn exchange_id(&self, mailbox: &MailboxId) -> Result<ExchangeMailboxId, TargetError> {
        if let Some(id) = self.cached_mbx(mailbox) {
            return Ok(id);
        }
        let id = self
            .client
            .exchange_mailbox_id(mailbox)
            .await
            .map_err(target_error)?;
        self.mbx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(mailbox.clone(), id.clone());
        Ok(id)
    }

    /// The mailbox's import session: the open one, or a new one when there is none or
    /// `renew` says the last one was refused. The session's expiry time is not trusted
    /// against the local clock: an expired URL is refused before anything is imported, and
    /// that refusal is what renews it.
    async fn session(
        &self,
        mailbox: &MailboxId,
        renew: bool,
    ) -> Result<ImportSession, TargetError> {
        let mut sessions = self.sessions.lock().await;
        if !renew {
            if let Some(s) = sessions.get(mailbox) {
                return Ok(s.clone());
            }
        }
        let mbx = self.exchange_id(mailbox).await?;
        let session = self
            .client
            .create_import_session(mailbox, &mbx)
            .await
            .map_err(target_error)?;
        sessions.insert(mailbox.clone(), session.clone());
        Ok(session)
    }

    async fn child_folders(
        &self,
        mailbox: &MailboxId,
        mbx: &ExchangeMailboxId,
        parent: &FolderId,
    ) -> Result<Vec<TargetFolder>, TargetError> {
        Ok(self
            .client
            .mailbox_child_folders(mailbox, mbx, parent)
            .await
            .map_err(target_error)?
            .into_iter()
            .map(|f| TargetFolder {
                id: f.id,
                display_name: f.display_name,
            })
            .collect())
    }
}

/// Imports through the mailbox import and export API (api/mailbox-createimportsession.md,
/// concepts/import-exchange-mailbox-item.md): folders created with their class
/// (api/mailbox-post-folders.md), items posted to the session's pre-authenticated URL.
#[async_trait]
impl ItemImport for GraphTarget {
    async fn check_import_access(&self, mailbox: &MailboxId) -> Result<(), TargetError> {
        // Creating a session writes nothing, and it is needed anyway.
        self.session(mailbox, true).await.map(|_| ())
    }

    async fn kind_home(
        &self,
        mailbox: &MailboxId,
        kind: ItemKind,
    ) -> Result<Option<TargetFolder>, TargetError> {
        let Some(name) = kind_home_name(kind) else {
            return Ok(None);
        };
        let mbx = self.exchange_id(mailbox).await?;
        match self.client.mailbox_folder(mailbox, &mbx, name).await {
            Ok(f) => Ok(Some(TargetFolder {
                id: f.id,
                display_name: f.display_name,
            })),
            // A mailbox without that folder gets the root at the top.
            Err(GraphError::NotFound { .. }) => Ok(None),
            Err(e) => Err(target_error(e)),
        }
    }

    async fn ensure_item_folder(
        &self,
        mailbox: &MailboxId,
        parent: Option<&FolderId>,
        name: &str,
        kind: ItemKind,
    ) -> Result<TargetFolder, TargetError> {
        let mbx = self.exchange_id(mailbox).await?;
        let top = FolderId::new("msgfolderroot");
        let under = parent.unwrap_or(&top);
        let find = |list: Vec<TargetFolder>| {
            list.into_iter()
                .find(|f| f.display_name.eq_ignore_ascii_case(name))
        };
        let mut last = None;
        for _ in 0..FOLDER_CREATE_ATTEMPTS {
            if let Some(f) = find(self.child_folders(mailbox, &mbx, under).await?) {
                return Ok(f);
            }
            match self
                .client
                .create_mailbox_folder(mailbox, &mbx, parent, name, folder_class(kind))
                .await
            {
                Ok(f) => {
                    return Ok(TargetFolder {
                        id: f.id,
                        display_name: f.display_name,
                    });
                }
                // Created meanwhile (or by the create whose answer was lost): list again.
                Err(e @ (GraphError::AlreadyExists { .. } | GraphError::OutcomeUnknown { .. })) => {
                    last = Some(e);
                }
                Err(e) => return Err(target_error(e)),
            }
        }
        Err(last.map_or_else(
            || TargetError::Other("the folder could not be created".into()),
            target_error,
        ))
    }

    async fn list_folder_items(
        &self,
        mailbox: &MailboxId,
        folder: &FolderId,
    ) -> Result<Vec<ItemId>, TargetError> {
        let mbx = self.exchange_id(mailbox).await?;
        Ok(self
            .client
            .list_mailbox_items(mailbox, &mbx, folder)
            .await
            .map_err(target_error)?
            .into_iter()
            .map(|i| i.id)
            .collect())
    }

    async fn import_item(
        &self,
        mailbox: &MailboxId,
        folder: &FolderId,
        stream: &[u8],
    ) -> Result<ItemId, TargetError> {
        let session = self.session(mailbox, false).await?;
        match self
            .client
            .import_item(mailbox, &session, folder, stream)
            .await
        {
            Ok(done) => Ok(done.item_id),
            // The import URL expired (or was revoked): Graph refused it before creating
            // anything, so a new session and one more post are safe.
            Err(
                GraphError::Auth(_)
                | GraphError::PermissionDenied { .. }
                | GraphError::NotFound { .. },
            ) => {
                let session = self.session(mailbox, true).await?;
                self.client
                    .import_item(mailbox, &session, folder, stream)
                    .await
                    .map(|done| done.item_id)
                    .map_err(target_error)
            }
            Err(e) => Err(target_error(e)),
        }
    }
}

/// Configuration restore over the classic endpoints (docs/GRAPH.md, "Calendars, contacts,
/// tasks and configuration"): all need `MailboxSettings.ReadWrite`.
#[async_trait]
impl ConfigTarget for GraphTarget {
    /// An empty `PATCH` of the mailbox settings: "properties that are not included in the
    /// request body will maintain their previous values" (api/user-update-mailboxsettings.md),
    /// so it changes nothing, and a missing `MailboxSettings.ReadWrite` answers 403. A lost
    /// answer is sent again (it changes nothing either).
    async fn check_config_access(&self, mailbox: &MailboxId) -> Result<(), TargetError> {
        let empty = json!({});
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.client.update_mailbox_settings(mailbox, &empty).await {
                Ok(()) => return Ok(()),
                Err(GraphError::OutcomeUnknown { .. }) if attempt < 5 => {}
                Err(e) => return Err(target_error(e)),
            }
        }
    }

    async fn master_categories(&self, mailbox: &MailboxId) -> Result<Vec<Value>, TargetError> {
        self.client
            .master_categories(mailbox)
            .await
            .map_err(target_error)
    }

    async fn create_category(
        &self,
        mailbox: &MailboxId,
        category: &Value,
    ) -> Result<(), TargetError> {
        self.client
            .create_master_category(mailbox, category)
            .await
            .map(|_| ())
            .map_err(target_error)
    }

    async fn message_rules(&self, mailbox: &MailboxId) -> Result<Vec<Value>, TargetError> {
        self.client
            .message_rules(mailbox)
            .await
            .map_err(target_error)
    }

    async fn create_rule(&self, mailbox: &MailboxId, rule: &Value) -> Result<(), TargetError> {
        self.client
            .create_message_rule(mailbox, rule)
            .await
            .map(|_| ())
            .map_err(target_error)
    }

    async fn mailbox_settings(&self, mailbox: &MailboxId) -> Result<Value, TargetError> {
        self.client
            .mailbox_settings_json(mailbox)
            .await
            .map_err(target_error)
    }

    async fn update_settings(&self, mailbox: &MailboxId, patch: &Value) -> Result<(), TargetError> {
        self.client
            .update_mailbox_settings(mailbox, patch)
            .await
            .map_err(target_error)
    }

    async fn find_mail_folder(
        &self,
        mailbox: &MailboxId,
        parent: Option<&FolderId>,
        name: &str,
        well_known: Option<&str>,
    ) -> Result<Option<TargetFolder>, TargetError> {
        if let Some(wk) = well_known {
            return self.well_known_folder(mailbox, wk).await;
        }
        match self.client.find_child_folder(mailbox, parent, name).await {
            Ok(f) => Ok(f.map(|f| TargetFolder {
                id: f.id,
                display_name: f.display_name,
            })),
            Err(GraphError::NotFound { .. }) => Ok(None),
            Err(e) => Err(target_error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg() -> RestoreMessage {
        RestoreMessage {
            subject: "s".into(),
            body: RestoreBody::Html("<p>x</p>".into()),
            from: Some(EmailAddress {
                name: "Megan".into(),
                address: "megan@contoso.com".into(),
            }),
            sender: None,
            to: vec![EmailAddress {
                name: String::new(),
                address: "a@contoso.com".into(),
            }],
            cc: vec![],
            bcc: vec![],
            reply_to: vec![],
            received: DateTime::parse_from_rfc3339("2024-05-01T10:00:05Z")
                .ok()
                .map(|d| d.with_timezone(&Utc)),
            sent: DateTime::parse_from_rfc3339("2024-05-01T09:59:00Z")
                .ok()
                .map(|d| d.with_timezone(&Utc)),
            internet_message_id: Some("<m1@x>".into()),
            in_reply_to: Some("<m0@x>".into()),
            references: None,
            importance: Importance::High,
            is_read: false,
            is_draft: false,
            flag: FlagStatus::Flagged,
            categories: vec!["Blue".into()],
            headers: vec![],
        }
    }

    fn prop<'a>(v: &'a Value, id: &str) -> Option<&'a str> {
        v["singleValueExtendedProperties"]
            .as_array()?
            .iter()
            .find(|p| p["id"] == id)
            .and_then(|p| p["value"].as_str())
    }

    #[test]
    fn restored_message_is_received_mail_with_original_dates() {
        let v = message_json(&msg());
        assert_eq!(prop(&v, "Integer 0x0E07"), Some("0"), "unread, not unsent");
        assert_eq!(prop(&v, "SystemTime 0x0E06"), Some("2024-05-01T10:00:05Z"));
        assert_eq!(prop(&v, "SystemTime 0x0039"), Some("2024-05-01T09:59:00Z"));
        assert_eq!(prop(&v, "String 0x1042"), Some("<m0@x>"));
        assert_eq!(v["body"]["contentType"], "html");
        assert_eq!(v["importance"], "high");
        assert_eq!(
            v["toRecipients"][0]["emailAddress"]["address"],
            "a@contoso.com"
        );
        let mut read_draft = msg();
        read_draft.is_read = true;
        read_draft.is_draft = true;
        assert_eq!(
            prop(&message_json(&read_draft), "Integer 0x0E07"),
            Some("9")
        );
    }

    #[test]
    fn item_attachment_carries_the_inner_message_and_its_dates() {
        let a = RestoreAttachment::Item {
            name: "Original message".into(),
            message: Box::new(msg()),
            raw: bytes::Bytes::from_static(b"x"),
        };
        let v = attachment_json(&a);
        assert_eq!(v["@odata.type"], "#microsoft.graph.itemAttachment");
        assert_eq!(v["item"]["@odata.type"], "#microsoft.graph.message");
        assert_eq!(v["item"]["sentDateTime"], "2024-05-01T09:59:00Z");
        assert_eq!(v["item"]["internetMessageId"], "<m1@x>");
    }

    #[test]
    fn write_errors_are_classified_once() {
        use crate::endpoint::Endpoint;
        let denied = target_error(GraphError::PermissionDenied {
            permission: "Mail.ReadWrite",
            endpoint: Endpoint::CreateMessage,
            code: "ErrorAccessDenied".into(),
            request_id: None,
        });
        assert!(denied.is_fatal());
        assert!(denied.to_string().contains("Mail.ReadWrite"));
        assert!(matches!(
            target_error(GraphError::OutcomeUnknown {
                endpoint: Endpoint::CreateMessage,
                reason: "no answer in time".into()
            }),
            TargetError::OutcomeUnknown(_)
        ));
        assert!(matches!(
            target_error(GraphError::TooLarge {
                what: "x",
                size: 5,
                limit: 4
            }),
            TargetError::Rejected(_)
        ));
    }
}
