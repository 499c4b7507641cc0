//! The classic calendar, contact, To Do and mailbox-configuration endpoints, read for the
//! readable JSON kept beside each full-fidelity export stream (so browse and export work
//! offline), and written only where a kind may be restored without the import permission
//! (docs/GRAPH.md, "Calendars, contacts, tasks and configuration").
//!
//! Graph's JSON is returned as [`serde_json::Value`]: it is stored as Graph sent it, not
//! reshaped into Atlas's types, so nothing a later reader might want is dropped here.
//! Ids are REST ids ([`crate::api::mailbox::rest_id`] converts the import/export API's).

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::Method;
use serde_json::Value;

use crate::client::{GraphClient, Req};
use crate::endpoint::Endpoint;
use crate::error::GraphError;
use atlas_core::model::MailboxId;

/// Page size asked for in collection listings.
const PAGE: &str = "100";
/// Largest contact photo accepted into memory.
const MAX_PHOTO: usize = 16 * 1024 * 1024;

fn user(mailbox: &MailboxId) -> &str {
    crate::api::user_segment(mailbox)
}

impl GraphClient {
    async fn get_value(
        &self,
        endpoint: Endpoint,
        mailbox: &MailboxId,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Value, GraphError> {
        let mut all = vec!["users", user(mailbox)];
        all.extend_from_slice(segments);
        let url = self.url(&all, query);
        self.fetch_json(&Req::get(endpoint, url, Some(mailbox)))
            .await
    }

    async fn list_values(
        &self,
        endpoint: Endpoint,
        mailbox: &MailboxId,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Vec<Value>, GraphError> {
        let mut all = vec!["users", user(mailbox)];
        all.extend_from_slice(segments);
        let url = self.url(&all, query);
        self.collect_pages(Req::get(endpoint, url, Some(mailbox)))
            .await
    }

    async fn post_value(
        &self,
        endpoint: Endpoint,
        mailbox: &MailboxId,
        segments: &[&str],
        body: &Value,
    ) -> Result<Value, GraphError> {
        let mut all = vec!["users", user(mailbox)];
        all.extend_from_slice(segments);
        let url = self.url(&all, &[]);
        self.fetch_json(&Req::post_json(endpoint, url, Some(mailbox), body))
            .await
    }

    /// Every calendar (`IPF.Appointment` folder) of the mailbox.
    pub async fn list_calendars(&self, mailbox: &MailboxId) -> Result<Vec<Value>, GraphError> {
        self.list_values(Endpoint::Events, mailbox, &["calendars"], &[("$top", PAGE)])
            .await
    }

    /// Single events and series masters of one calendar (times in UTC).
    pub async fn list_calendar_events(
        &self,
        mailbox: &MailboxId,
        calendar: &str,
    ) -> Result<Vec<Value>, GraphError> {
        self.list_values(
            Endpoint::Events,
            mailbox,
            &["calendars", calendar, "events"],
            &[("$top", PAGE)],
        )
        .await
    }

    /// One event (times in UTC).
    pub async fn get_event(&self, mailbox: &MailboxId, id: &str) -> Result<Value, GraphError> {
        self.get_value(Endpoint::Events, mailbox, &["events", id], &[])
            .await
    }

    /// Occurrences and exceptions of a series between two instants (cancelled occurrences
    /// are left out by Graph).
    pub async fn event_instances(
        &self,
        mailbox: &MailboxId,
        id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Value>, GraphError> {
        let (from, to) = (
            from.to_rfc3339_opts(SecondsFormat::Secs, true),
            to.to_rfc3339_opts(SecondsFormat::Secs, true),
        );
        self.list_values(
            Endpoint::Events,
            mailbox,
            &["events", id, "instances"],
            &[
                ("startDateTime", &from),
                ("endDateTime", &to),
                ("$top", PAGE),
            ],
        )
        .await
    }

    /// An event's attachments, file attachments with their `contentBytes`.
    pub async fn event_attachments(
        &self,
        mailbox: &MailboxId,
        id: &str,
    ) -> Result<Vec<Value>, GraphError> {
        self.list_values(
            Endpoint::Events,
            mailbox,
            &["events", id, "attachments"],
            &[("$top", PAGE)],
        )
        .await
    }

    /// The contacts of one contact folder.
    pub async fn list_folder_contacts(
        &self,
        mailbox: &MailboxId,
        folder: &str,
    ) -> Result<Vec<Value>, GraphError> {
        self.list_values(
            Endpoint::Contacts,
            mailbox,
            &["contactFolders", folder, "contacts"],
            &[("$top", PAGE)],
        )
        .await
    }

    /// One contact.
    pub async fn get_contact(&self, mailbox: &MailboxId, id: &str) -> Result<Value, GraphError> {
        self.get_value(Endpoint::Contacts, mailbox, &["contacts", id], &[])
            .await
    }

    /// A contact's photo (`$value`): its media type and bytes, `None` when it has none.
    pub async fn contact_photo(
        &self,
        mailbox: &MailboxId,
        id: &str,
    ) -> Result<Option<(String, Bytes)>, GraphError> {
        let url = self.url(
            &["users", user(mailbox), "contacts", id, "photo", "$value"],
            &[],
        );
        let stream = match self
            .stream(&Req::get(Endpoint::Contacts, url, Some(mailbox)))
            .await
        {
            Ok(s) => s,
            Err(GraphError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let content_type = stream
            .content_type()
            .unwrap_or("application/octet-stream")
            .to_owned();
        let bytes = stream.collect(MAX_PHOTO).await?;
        Ok(Some((content_type, bytes)))
    }

    /// Every To Do list (`IPF.Task` folder).
    pub async fn list_todo_lists(&self, mailbox: &MailboxId) -> Result<Vec<Value>, GraphError> {
        self.list_values(
            Endpoint::Todo,
            mailbox,
            &["todo", "lists"],
            &[("$top", PAGE)],
        )
        .await
    }

    /// The tasks of one To Do list.
    pub async fn list_todo_tasks(
        &self,
        mailbox: &MailboxId,
        list: &str,
    ) -> Result<Vec<Value>, GraphError> {
        self.list_values(
            Endpoint::Todo,
            mailbox,
            &["todo", "lists", list, "tasks"],
            &[("$top", PAGE)],
        )
        .await
    }

    /// One task of a To Do list.
    pub async fn get_todo_task(
        &self,
        mailbox: &MailboxId,
        list: &str,
        id: &str,
    ) -> Result<Value, GraphError> {
        self.get_value(
            Endpoint::Todo,
            mailbox,
            &["todo", "lists", list, "tasks", id],
            &[],
        )
        .await
    }

    /// The mailbox settings (automatic replies, time zone, working hours …) as Graph
    /// returns them.
    pub async fn mailbox_settings_json(&self, mailbox: &MailboxId) -> Result<Value, GraphError> {
        self.get_value(Endpoint::MailboxConfig, mailbox, &["mailboxSettings"], &[])
            .await
    }

    /// The inbox rules, in Graph's order.
    pub async fn message_rules(&self, mailbox: &MailboxId) -> Result<Vec<Value>, GraphError> {
        self.list_values(
            Endpoint::MailboxConfig,
            mailbox,
            &["mailFolders", "inbox", "messageRules"],
            &[],
        )
        .await
    }

    /// The master category list.
    pub async fn master_categories(&self, mailbox: &MailboxId) -> Result<Vec<Value>, GraphError> {
        self.list_values(
            Endpoint::MailboxConfig,
            mailbox,
            &["outlook", "masterCategories"],
            &[],
        )
        .await
    }

    /// Add a master category (`api/outlookuser-post-mastercategories.md`: 201 and the
    /// category). Not retried after an unclear failure.
    pub async fn create_master_category(
        &self,
        mailbox: &MailboxId,
        category: &Value,
    ) -> Result<Value, GraphError> {
        self.post_value(
            Endpoint::WriteMailboxConfig,
            mailbox,
            &["outlook", "masterCategories"],
            category,
        )
        .await
    }

    /// Add an inbox rule (`api/mailfolder-post-messagerules.md`: `displayName`,
    /// `sequence` and `actions` required; 201 and the rule). Not retried after an unclear
    /// failure.
    pub async fn create_message_rule(
        &self,
        mailbox: &MailboxId,
        rule: &Value,
    ) -> Result<Value, GraphError> {
        self.post_value(
            Endpoint::WriteMailboxConfig,
            mailbox,
            &["mailFolders", "inbox", "messageRules"],
            rule,
        )
        .await
    }

    /// Change the mailbox settings named in `patch` (`api/user-update-mailboxsettings.md`:
    /// properties left out keep their values, so an empty patch changes nothing — which
    /// makes it the write-permission probe).
    pub async fn update_mailbox_settings(
        &self,
        mailbox: &MailboxId,
        patch: &Value,
    ) -> Result<(), GraphError> {
        let url = self.url(&["users", user(mailbox), "mailboxSettings"], &[]);
        let mut req = Req::post_json(Endpoint::WriteMailboxConfig, url, Some(mailbox), patch);
        req.method = Method::PATCH;
        self.fetch(&req).await.map(|_| ())
    }

    /// Contact folders under `parent` (under the default Contacts folder when `None`).
    pub async fn list_contact_folders(
        &self,
        mailbox: &MailboxId,
        parent: Option<&str>,
    ) -> Result<Vec<Value>, GraphError> {
        match parent {
            Some(p) => {
                self.list_values(
                    Endpoint::Contacts,
                    mailbox,
                    &["contactFolders", p, "childFolders"],
                    &[("$top", PAGE)],
                )
                .await
            }
            None => {
                self.list_values(
                    Endpoint::Contacts,
                    mailbox,
                    &["contactFolders"],
                    &[("$top", PAGE)],
                )
                .await
            }
        }
    }

    /// Create a contact folder under `parent` (under the default Contacts folder when
    /// `None`).
    pub async fn create_contact_folder(
        &self,
        mailbox: &MailboxId,
        parent: Option<&str>,
        name: &str,
    ) -> Result<Value, GraphError> {
        let body = serde_json::json!({ "displayName": name });
        match parent {
            Some(p) => {
                self.post_value(
                    Endpoint::WriteContacts,
                    mailbox,
                    &["contactFolders", p, "childFolders"],
                    &body,
                )
                .await
            }
            None => {
                self.post_value(Endpoint::WriteContacts, mailbox, &["contactFolders"], &body)
                    .await
            }
        }
    }

    /// Create a contact in a contact folder from Graph contact JSON (read-only properties
    /// must already be removed).
    pub async fn create_contact(
        &self,
        mailbox: &MailboxId,
        folder: &str,
        contact: &Value,
    ) -> Result<Value, GraphError> {
        self.post_value(
            Endpoint::WriteContacts,
            mailbox,
            &["contactFolders", folder, "contacts"],
            contact,
        )
        .await
    }

    /// Set a contact's photo.
    pub async fn put_contact_photo(
        &self,
        mailbox: &MailboxId,
        id: &str,
        content_type: &str,
        bytes: Bytes,
    ) -> Result<(), GraphError> {
        let url = self.url(
            &["users", user(mailbox), "contacts", id, "photo", "$value"],
            &[],
        );
        let mut req = Req::get(Endpoint::WriteContacts, url, Some(mailbox));
        req.method = Method::PUT;
        req.upload = true;
        let content_type: &'static str = match content_type {
            "image/png" => "image/png",
            "image/gif" => "image/gif",
            _ => "image/jpeg",
        };
        req.body = Some((bytes, content_type));
        self.fetch(&req).await.map(|_| ())
    }

    /// An empty `PATCH` of the contact or To Do task at `segments` (below the user): it
    /// changes nothing, and answers 403 without the write permission — the classic
    /// restore's up-front check, sent with an id of no item.
    pub async fn probe_classic_write(
        &self,
        endpoint: Endpoint,
        mailbox: &MailboxId,
        segments: &[&str],
    ) -> Result<(), GraphError> {
        let mut all = vec!["users", user(mailbox)];
        all.extend_from_slice(segments);
        let url = self.url(&all, &[]);
        let mut req = Req::post_json(endpoint, url, Some(mailbox), &serde_json::json!({}));
        req.method = Method::PATCH;
        self.fetch(&req).await.map(|_| ())
    }

    /// Create a To Do list.
    pub async fn create_todo_list(
        &self,
        mailbox: &MailboxId,
        name: &str,
    ) -> Result<Value, GraphError> {
        self.post_value(
            Endpoint::WriteTodo,
            mailbox,
            &["todo", "lists"],
            &serde_json::json!({ "displayName": name }),
        )
        .await
    }

    /// Create a task in a To Do list from todoTask JSON (read-only properties removed).
    pub async fn create_todo_task(
        &self,
        mailbox: &MailboxId,
        list: &str,
        task: &Value,
    ) -> Result<Value, GraphError> {
        self.post_value(
            Endpoint::WriteTodo,
            mailbox,
            &["todo", "lists", list, "tasks"],
            task,
        )
        .await
    }
}
