//! [`ClassicTarget`]: the core's [`ItemImport`] port over the classic contact and To Do
//! endpoints, which a restore of contacts and tasks falls back on when the app lacks
//! `MailboxItem.ImportExport.All` (docs/GRAPH.md, "Restore without the import
//! permission").
//!
//! It creates from the stored readable JSON (Graph's own resource, as the backup read it),
//! not from the export stream: contact folders with `POST …/contactFolders[/{id}/childFolders]`
//! and contacts with `POST …/contactFolders/{id}/contacts` (`api/contactfolder-post-contacts.md`,
//! Contacts.ReadWrite), their photo with `PUT …/contacts/{id}/photo/$value`
//! (`api/profilephoto-update.md`); To Do lists with `POST …/todo/lists` and tasks with
//! `POST …/todo/lists/{id}/tasks` (`api/todotasklist-post-tasks.md`, Tasks.ReadWrite.All).
//! What the server sets (ids, change keys, creation and modification times, the parent
//! folder) and what other requests carry (navigation properties) is left out of the create
//! body. To Do lists do not nest, so each source task folder becomes one list named by its
//! path ([`ItemImport::nests_folders`]).
//!
//! A classic create carries no restore mark either; the core's restore ledger makes it
//! idempotent the same way as an import (one create at a time per folder, a lost answer
//! checked by listing the folder).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use atlas_core::model::{ContentKind, FolderId, ItemId, ItemKind, MailboxId};
use atlas_core::ports::{ItemImport, TargetError, TargetFolder};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde_json::{Map, Value};

use crate::client::GraphClient;
use crate::endpoint::Endpoint;
use crate::error::GraphError;
use crate::target::target_error;

/// Creates tried when their answers keep getting lost.
const ATTEMPTS: usize = 3;
/// An id of no item, for the permission probes.
const PROBE_ID: &str = "AAMkAGF0bGFzLXByb2Jl";

/// Properties of a stored contact a create must not send: set by the server
/// (`resources/contact.md`: `id` read-only, `changeKey`, the times, `parentFolderId`) or
/// written through other requests (`photo`, extensions, extended properties).
const CONTACT_NOT_SENT: &[&str] = &[
    "id",
    "changeKey",
    "createdDateTime",
    "lastModifiedDateTime",
    "parentFolderId",
    "photo",
    "extensions",
    "singleValueExtendedProperties",
    "multiValueExtendedProperties",
];

/// Properties of a stored To Do task a create must not send (`resources/todotask.md`): set
/// by the server (`id`, the times, `hasAttachments`) or relationships with their own
/// endpoints (attachments, checklist items, linked resources, extensions).
const TASK_NOT_SENT: &[&str] = &[
    "id",
    "changeKey",
    "createdDateTime",
    "lastModifiedDateTime",
    "bodyLastModifiedDateTime",
    "hasAttachments",
    "attachments",
    "attachmentSessions",
    "checklistItems",
    "linkedResources",
    "extensions",
];

/// The create body of a stored resource: everything but `not_sent` and OData annotations.
fn create_body(stored: Map<String, Value>, not_sent: &[&str]) -> Value {
    Value::Object(
        stored
            .into_iter()
            .filter(|(k, _)| !k.starts_with('@') && !not_sent.contains(&k.as_str()))
            .collect(),
    )
}

/// A contact's photo as the backup keeps it in the JSON (`photo.contentBytes`).
fn stored_photo(contact: &Map<String, Value>) -> Result<Option<(String, Bytes)>, TargetError> {
    let Some(photo) = contact.get("photo") else {
        return Ok(None);
    };
    let Some(b64) = photo.get("contentBytes").and_then(Value::as_str) else {
        return Ok(None);
    };
    let bytes = STANDARD
        .decode(b64)
        .map_err(|_| TargetError::Rejected("the stored contact photo is not base64".into()))?;
    let media = photo
        .get("@odata.mediaContentType")
        .and_then(Value::as_str)
        .unwrap_or("image/jpeg")
        .to_owned();
    Ok(Some((media, Bytes::from(bytes))))
}

fn id_of(created: &Value) -> Result<String, TargetError> {
    created
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| TargetError::Other("the created object's answer has no id".into()))
}

fn folder_of(v: &Value) -> Option<TargetFolder> {
    Some(TargetFolder {
        id: FolderId::new(v.get("id")?.as_str()?),
        display_name: v.get("displayName")?.as_str()?.to_owned(),
    })
}

/// The classic contact and To Do endpoints as the core's import port (see the module
/// documentation).
#[derive(Debug, Clone)]
pub struct ClassicTarget {
    client: GraphClient,
    /// The kind of each folder this target found or created (a contact folder or a To Do
    /// list): the endpoints differ per kind.
    kinds: Arc<Mutex<HashMap<FolderId, ItemKind>>>,
}

impl ClassicTarget {
    /// Wrap a client (clones share its token cache and limiters).
    pub fn new(client: GraphClient) -> Self {
        Self {
            client,
            kinds: Arc::default(),
        }
    }

    fn remember(&self, folder: &FolderId, kind: ItemKind) {
        self.kinds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(folder.clone(), kind);
    }

    fn kind_of(&self, folder: &FolderId) -> Result<ItemKind, TargetError> {
        self.kinds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(folder)
            .copied()
            .ok_or_else(|| {
                TargetError::Other("a folder this restore did not find or create".into())
            })
    }

    async fn folders(
        &self,
        mailbox: &MailboxId,
        parent: Option<&FolderId>,
        kind: ItemKind,
    ) -> Result<Vec<TargetFolder>, TargetError> {
        let list = match kind {
            ItemKind::Contact => {
                self.client
                    .list_contact_folders(mailbox, parent.map(FolderId::as_str))
                    .await
            }
            _ => self.client.list_todo_lists(mailbox).await,
        };
        Ok(list
            .map_err(target_error)?
            .into_iter()
            .filter_map(|v| folder_of(&v))
            .collect())
    }

    /// Set a contact's photo; a `PUT` sets the same bytes again, so an unclear failure is
    /// tried again.
    async fn put_photo(
        &self,
        mailbox: &MailboxId,
        id: &str,
        media: &str,
        bytes: &Bytes,
    ) -> Result<(), GraphError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .client
                .put_contact_photo(mailbox, id, media, bytes.clone())
                .await
            {
                Err(
                    GraphError::OutcomeUnknown { .. }
                    | GraphError::Throttled { .. }
                    | GraphError::Server { .. }
                    | GraphError::Timeout { .. }
                    | GraphError::Network { .. },
                ) if attempt < ATTEMPTS => {}
                other => return other,
            }
        }
    }
}

#[async_trait]
impl ItemImport for ClassicTarget {
    fn reads(&self) -> ContentKind {
        ContentKind::Json
    }

    fn nests_folders(&self, kind: ItemKind) -> bool {
        kind != ItemKind::Task
    }

    async fn check_import_access(&self, mailbox: &MailboxId) -> Result<(), TargetError> {
        self.check_kind_access(mailbox, ItemKind::Contact).await?;
        self.check_kind_access(mailbox, ItemKind::Task).await
    }

    /// An empty `PATCH` of a contact or task that does not exist: 403 without the write
    /// permission, not found (or a refused id) with it; nothing is changed either way.
    async fn check_kind_access(
        &self,
        mailbox: &MailboxId,
        kind: ItemKind,
    ) -> Result<(), TargetError> {
        let (endpoint, segments): (Endpoint, &[&str]) = match kind {
            ItemKind::Contact => (Endpoint::WriteContacts, &["contacts", PROBE_ID]),
            ItemKind::Task => (
                Endpoint::WriteTodo,
                &["todo", "lists", PROBE_ID, "tasks", PROBE_ID],
            ),
            other => {
                return Err(TargetError::Rejected(format!(
                    "{other} cannot be restored through the classic endpoints"
                )));
            }
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .client
                .probe_classic_write(endpoint, mailbox, segments)
                .await
            {
                Ok(())
                | Err(GraphError::NotFound { .. } | GraphError::Rejected { status: 400, .. }) => {
                    return Ok(());
                }
                Err(GraphError::OutcomeUnknown { .. }) if attempt < ATTEMPTS => {}
                Err(e) => return Err(target_error(e)),
            }
        }
    }

    /// New contact folders go under the default Contacts folder and new lists beside the
    /// others: the classic endpoints create them there without naming a parent.
    async fn kind_home(
        &self,
        _mailbox: &MailboxId,
        _kind: ItemKind,
    ) -> Result<Option<TargetFolder>, TargetError> {
        Ok(None)
    }

    async fn ensure_item_folder(
        &self,
        mailbox: &MailboxId,
        parent: Option<&FolderId>,
        name: &str,
        kind: ItemKind,
    ) -> Result<TargetFolder, TargetError> {
        let mut last = None;
        for _ in 0..ATTEMPTS {
            if let Some(f) = self
                .folders(mailbox, parent, kind)
                .await?
                .into_iter()
                .find(|f| f.display_name.eq_ignore_ascii_case(name))
            {
                self.remember(&f.id, kind);
                return Ok(f);
            }
            let created = match kind {
                ItemKind::Contact => {
                    self.client
                        .create_contact_folder(mailbox, parent.map(FolderId::as_str), name)
                        .await
                }
                ItemKind::Task => self.client.create_todo_list(mailbox, name).await,
                other => {
                    return Err(TargetError::Rejected(format!(
                        "{other} cannot be restored through the classic endpoints"
                    )));
                }
            };
            match created {
                Ok(v) => {
                    let f = folder_of(&v).ok_or_else(|| {
                        TargetError::Other("the created folder's answer has no id".into())
                    })?;
                    self.remember(&f.id, kind);
                    return Ok(f);
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
        let list = match self.kind_of(folder)? {
            ItemKind::Task => self.client.list_todo_tasks(mailbox, folder.as_str()).await,
            _ => {
                self.client
                    .list_folder_contacts(mailbox, folder.as_str())
                    .await
            }
        };
        Ok(list
            .map_err(target_error)?
            .iter()
            .filter_map(|v| v.get("id").and_then(Value::as_str).map(ItemId::new))
            .collect())
    }

    /// A contact's photo, set again (a `PUT` of the same bytes); nothing for a task.
    async fn finish_item(
        &self,
        mailbox: &MailboxId,
        folder: &FolderId,
        item: &ItemId,
        json: &[u8],
    ) -> Result<(), TargetError> {
        if self.kind_of(folder)? != ItemKind::Contact {
            return Ok(());
        }
        let Ok(Value::Object(stored)) = serde_json::from_slice::<Value>(json) else {
            return Ok(());
        };
        match stored_photo(&stored)? {
            Some((media, bytes)) => self
                .put_photo(mailbox, item.as_str(), &media, &bytes)
                .await
                .map_err(target_error),
            None => Ok(()),
        }
    }

    /// One create from the stored JSON; a contact's photo follows it. A contact whose photo
    /// cannot be set is reported as an unclear outcome: the core finds it by listing the
    /// folder and finishes it ([`ItemImport::finish_item`]), now or on the next run.
    async fn import_item(
        &self,
        mailbox: &MailboxId,
        folder: &FolderId,
        json: &[u8],
    ) -> Result<ItemId, TargetError> {
        let kind = self.kind_of(folder)?;
        let Ok(Value::Object(stored)) = serde_json::from_slice::<Value>(json) else {
            return Err(TargetError::Rejected(
                "the stored readable JSON is not a JSON object".into(),
            ));
        };
        if kind == ItemKind::Task {
            let created = self
                .client
                .create_todo_task(
                    mailbox,
                    folder.as_str(),
                    &create_body(stored, TASK_NOT_SENT),
                )
                .await
                .map_err(target_error)?;
            return id_of(&created).map(ItemId::new);
        }
        let photo = stored_photo(&stored)?;
        let created = self
            .client
            .create_contact(
                mailbox,
                folder.as_str(),
                &create_body(stored, CONTACT_NOT_SENT),
            )
            .await
            .map_err(target_error)?;
        let id = id_of(&created)?;
        if let Some((media, bytes)) = photo {
            if let Err(e) = self.put_photo(mailbox, &id, &media, &bytes).await {
                let e = target_error(e);
                if e.is_fatal() {
                    return Err(e);
                }
                // The core lists the folder, finds the contact and calls `finish_item`.
                return Err(TargetError::OutcomeUnknown(format!(
                    "the contact was created but its photo could not be set ({e})"
                )));
            }
        }
        Ok(ItemId::new(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn create_bodies_leave_out_what_the_server_sets_and_other_requests_carry() {
        let Value::Object(contact) = json!({
            "@odata.etag": "W/\"x\"", "id": "c1", "changeKey": "k", "createdDateTime": "t",
            "lastModifiedDateTime": "t", "parentFolderId": "f", "categories": ["Blue"],
            "displayName": "Ada", "photo": {"contentBytes": "AQID"},
        }) else {
            unreachable!("an object literal")
        };
        assert_eq!(
            create_body(contact, CONTACT_NOT_SENT),
            json!({"categories": ["Blue"], "displayName": "Ada"})
        );
        let Value::Object(task) = json!({
            "@odata.etag": "W/\"x\"", "id": "t1", "title": "Ship", "status": "completed",
            "bodyLastModifiedDateTime": "t", "hasAttachments": false, "checklistItems": [],
        }) else {
            unreachable!("an object literal")
        };
        assert_eq!(
            create_body(task, TASK_NOT_SENT),
            json!({"title": "Ship", "status": "completed"})
        );
    }

    #[test]
    fn a_stored_photo_is_decoded_with_its_media_type() {
        let Value::Object(c) =
            json!({"photo": {"@odata.mediaContentType": "image/png", "contentBytes": "AQID"}})
        else {
            unreachable!("an object literal")
        };
        let (media, bytes) = stored_photo(&c).ok().flatten().expect("a photo");
        assert_eq!(
            (media.as_str(), &bytes[..]),
            ("image/png", &[1u8, 2, 3][..])
        );
        assert!(matches!(stored_photo(&Map::new()), Ok(None)));
    }
}
