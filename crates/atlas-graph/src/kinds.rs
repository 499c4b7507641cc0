//! The non-mail kinds of [`GraphSource`]: calendars, contacts, tasks and notes through the
//! mailbox import and export API (folders, item delta, `exportItems` 20 at a time), their
//! readable JSON from the classic endpoints, and the mailbox configuration (settings,
//! inbox rules, master categories) as three items of one synthetic folder
//! (docs/GRAPH.md, "The mailbox import and export API" and "Calendars, contacts, tasks and
//! configuration").
//!
//! Mail keeps its own path (`mailFolders`, message delta, MIME): these kinds add folders,
//! never replace it.

use std::collections::HashSet;

use atlas_core::model::{ContentKind, FolderId, ItemId, ItemKind, KindSet};
use atlas_core::ports::{
    DeltaCursor, DeltaNext as CoreNext, DeltaPage as CorePage, ItemMetadata, SourceError,
    SourceFolder, SourceItem, SourceMailbox,
};
use bytes::Bytes;
use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::api::mailbox::{ExchangeMailboxId, MailboxItem, rest_id};
use crate::api::messages::{DeltaLink, DeltaNext, DeltaStart};
use crate::error::GraphError;
use crate::source::{GraphSource, item_error, run_error};

/// The id of the synthetic folder that holds the mailbox configuration.
pub(crate) const CONFIG_FOLDER: &str = "atlas-mailbox-configuration";
/// The configuration items: mailbox settings (automatic replies, working hours, time
/// zone …), inbox rules, master categories.
const CONFIG_ITEMS: [&str; 3] = ["mailboxSettings", "messageRules", "masterCategories"];
/// How far past its start a series without an end date is searched for exceptions.
const SERIES_HORIZON_DAYS: i64 = 5 * 366;

/// The kind of item a folder class holds, for the kinds read through this API.
pub(crate) fn kind_of_class(class: &str) -> Option<ItemKind> {
    let is = |prefix: &str| class == prefix || class.starts_with(&format!("{prefix}."));
    if is("IPF.Appointment") {
        Some(ItemKind::Calendar)
    } else if is("IPF.Contact") {
        Some(ItemKind::Contact)
    } else if is("IPF.Task") {
        Some(ItemKind::Task)
    } else if is("IPF.StickyNote") {
        Some(ItemKind::Note)
    } else {
        None
    }
}

/// The representations kept of an item of `kind`: the export stream first; the classic
/// endpoints' JSON for kinds that have one (sticky notes have none in v1.0).
fn contents(kind: ItemKind) -> Vec<ContentKind> {
    match kind {
        ItemKind::Note => vec![ContentKind::Export],
        ItemKind::Config => vec![ContentKind::Json],
        _ => vec![ContentKind::Export, ContentKind::Json],
    }
}

fn short_hash(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes)[..12])
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A permission probe's answer: `Ok(None)` allowed, `Ok(Some(p))` missing `p`.
fn probe(result: Result<(), GraphError>) -> Result<Option<String>, SourceError> {
    match result {
        // A missing default folder or probe id is still access.
        Ok(()) | Err(GraphError::NotFound { .. }) => Ok(None),
        Err(GraphError::PermissionDenied { permission, .. }) => Ok(Some(permission.to_owned())),
        Err(e) => Err(run_error(e)),
    }
}

/// Graph's `dateTime` (no offset, in UTC unless a zone was asked for) as an instant.
fn graph_time(v: &Value) -> Option<DateTime<Utc>> {
    let s = v.get("dateTime")?.as_str()?;
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc())
}

impl GraphSource {
    /// The mailbox's id in the import/export API, asked once per mailbox.
    pub(crate) async fn mbx(
        &self,
        mailbox: &SourceMailbox,
    ) -> Result<ExchangeMailboxId, SourceError> {
        if let Some(id) = self.cached_mbx(mailbox) {
            return Ok(id);
        }
        let id = self
            .client()
            .exchange_mailbox_id(&mailbox.id)
            .await
            .map_err(run_error)?;
        self.remember_mbx(mailbox, &id);
        Ok(id)
    }

    /// The folders of the non-mail kinds in `kinds`, the configuration folder included
    /// when asked for.
    pub(crate) async fn kind_folders(
        &self,
        mailbox: &SourceMailbox,
        kinds: KindSet,
    ) -> Result<Vec<SourceFolder>, SourceError> {
        let mut out = Vec::new();
        let wants_items = [
            ItemKind::Calendar,
            ItemKind::Contact,
            ItemKind::Task,
            ItemKind::Note,
        ]
        .into_iter()
        .any(|k| kinds.contains(k));
        if wants_items {
            let mbx = self.mbx(mailbox).await?;
            let tree = self
                .client()
                .mailbox_folder_tree(&mailbox.id, &mbx)
                .await
                .map_err(|e| match e {
                    e @ GraphError::NotFound { .. } => SourceError::Other(e.to_string()),
                    e => run_error(e),
                })?;
            let mut listed: HashSet<FolderId> = HashSet::new();
            for f in tree {
                let Some(kind) = f.folder.class.as_deref().and_then(kind_of_class) else {
                    continue;
                };
                if !kinds.contains(kind) {
                    continue;
                }
                // Parents come first: a parent not listed (another kind, or not asked
                // for) leaves this folder at the top of its kind's tree.
                let parent_id = f.parent_id.filter(|p| listed.contains(p));
                listed.insert(f.folder.id.clone());
                self.remember_folder(&f.folder.id, kind);
                out.push(SourceFolder {
                    id: f.folder.id,
                    parent_id,
                    display_name: f.folder.display_name,
                    path: f.path,
                    well_known: f.folder.well_known_name,
                    total_items: f.folder.total_item_count.unwrap_or(0),
                    hidden: false,
                    kind,
                    stale_count: false,
                });
            }
        }
        if kinds.contains(ItemKind::Config) {
            let id = FolderId::new(CONFIG_FOLDER);
            self.remember_folder(&id, ItemKind::Config);
            out.push(SourceFolder {
                id,
                parent_id: None,
                display_name: "Configuration".into(),
                path: vec!["Configuration".into()],
                well_known: None,
                total_items: CONFIG_ITEMS.len() as u64,
                hidden: false,
                kind: ItemKind::Config,
                stale_count: false,
            });
        }
        Ok(out)
    }

    /// One page of a non-mail folder's item delta.
    pub(crate) async fn kind_delta_page(
        &self,
        mailbox: &SourceMailbox,
        folder: &FolderId,
        kind: ItemKind,
        cursor: &DeltaCursor,
        page_size: u32,
    ) -> Result<CorePage, SourceError> {
        if kind == ItemKind::Config {
            return self.config_round(mailbox, folder).await;
        }
        let mbx = self.mbx(mailbox).await?;
        let link;
        let start = match cursor {
            DeltaCursor::Initial => DeltaStart::Initial(folder),
            DeltaCursor::Link(l) => {
                link = DeltaLink::new(l.clone());
                DeltaStart::Link(&link)
            }
        };
        let page = self
            .client()
            .mailbox_item_delta_page(&mailbox.id, &mbx, start, page_size)
            .await
            .map_err(run_error)?;
        Ok(CorePage {
            items: page
                .items
                .into_iter()
                .map(|i| mailbox_item(i, folder, kind))
                .collect(),
            removed: page.removed,
            next: match page.next {
                DeltaNext::More(l) => CoreNext::More(l.as_str().to_owned()),
                DeltaNext::Done(l) => CoreNext::Done(l.as_str().to_owned()),
            },
        })
    }

    /// Configuration has no delta: every round reports its three items, each with a
    /// change key that is a hash of its JSON, so an unchanged one is not stored again.
    async fn config_round(
        &self,
        mailbox: &SourceMailbox,
        folder: &FolderId,
    ) -> Result<CorePage, SourceError> {
        let mut items = Vec::with_capacity(CONFIG_ITEMS.len());
        for name in CONFIG_ITEMS {
            let value = self.config_json(mailbox, name).await.map_err(run_error)?;
            let bytes = serde_json::to_vec(&value).unwrap_or_default();
            items.push(SourceItem {
                kind: ItemKind::Config,
                id: ItemId::new(format!("config:{name}")),
                change_key: Some(short_hash(&bytes)),
                folder: Some(folder.clone()),
                last_modified: None,
                contents: contents(ItemKind::Config),
                metadata: ItemMetadata::Other {
                    title: Some(name.to_owned()),
                },
            });
        }
        Ok(CorePage {
            items,
            removed: Vec::new(),
            next: CoreNext::Done(CONFIG_FOLDER.to_owned()),
        })
    }

    async fn config_json(&self, mailbox: &SourceMailbox, name: &str) -> Result<Value, GraphError> {
        let c = self.client();
        Ok(match name {
            "mailboxSettings" => c.mailbox_settings_json(&mailbox.id).await?,
            "messageRules" => json!({ "value": c.message_rules(&mailbox.id).await? }),
            _ => json!({ "value": c.master_categories(&mailbox.id).await? }),
        })
    }

    /// Export streams of up to 20 items of one mailbox in one request.
    pub(crate) async fn export_batch(
        &self,
        mailbox: &SourceMailbox,
        items: &[SourceItem],
    ) -> Result<Vec<Result<Bytes, SourceError>>, SourceError> {
        let mbx = self.mbx(mailbox).await?;
        let ids: Vec<ItemId> = items.iter().map(|i| i.id.clone()).collect();
        let answers = self
            .client()
            .export_items(&mailbox.id, &mbx, &ids)
            .await
            .map_err(item_error)?;
        Ok(answers
            .into_iter()
            .map(|a| {
                a.data
                    .map_err(|e| SourceError::Item(format!("export of item failed: {e}")))
            })
            .collect())
    }

    /// The readable JSON of one item: the classic endpoint's resource, with what Graph
    /// serves on other requests under Graph's names (an event's `attachments` and
    /// `exceptionOccurrences`, a contact's `photo`).
    pub(crate) async fn readable_json(
        &self,
        mailbox: &SourceMailbox,
        item: &SourceItem,
    ) -> Result<Bytes, GraphError> {
        let c = self.client();
        let user = &mailbox.id;
        let id = rest_id(item.id.as_str());
        let value = match item.kind {
            ItemKind::Calendar => {
                let mut event = c.get_event(user, &id).await?;
                if event["hasAttachments"] == json!(true) {
                    event["attachments"] = Value::Array(c.event_attachments(user, &id).await?);
                }
                if event["type"] == json!("seriesMaster") {
                    if let Some(from) = graph_time(&event["start"]) {
                        // `endDate` means something only for a range of type `endDate`
                        // (others carry 0001-01-01).
                        let end = event
                            .pointer("/recurrence/range")
                            .filter(|r| r["type"] == json!("endDate"))
                            .and_then(|r| r.get("endDate"))
                            .and_then(Value::as_str)
                            .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
                            .and_then(|d| d.and_hms_opt(0, 0, 0))
                            .map(|d| d.and_utc() + Duration::days(2));
                        let to = end
                            .filter(|e| *e > from)
                            .unwrap_or(from + Duration::days(SERIES_HORIZON_DAYS));
                        let window = (from - Duration::days(1), to);
                        let instances = c.event_instances(user, &id, window.0, window.1).await?;
                        // Graph v1.0 lists no cancelled occurrences: they are the rule's
                        // occurrences `instances` leaves out over the same window, kept
                        // so an ICS export has its EXDATEs offline (docs/EXPORT.md). A
                        // rule Atlas cannot expand leaves them out rather than failing
                        // the item: the export stream still holds everything.
                        match atlas_core::export::cancelled_occurrences(
                            &event, &instances, window.0, window.1,
                        ) {
                            Ok(cancelled) => {
                                event["cancelledOccurrences"] = json!(cancelled);
                            }
                            Err(e) => tracing::warn!(
                                error = %e,
                                "cancelled occurrences of a recurring event not computed"
                            ),
                        }
                        event["exceptionOccurrences"] = Value::Array(
                            instances
                                .into_iter()
                                .filter(|i| i["type"] == json!("exception"))
                                .collect(),
                        );
                    }
                }
                event
            }
            ItemKind::Contact => {
                let mut contact = c.get_contact(user, &id).await?;
                if let Some((media, bytes)) = c.contact_photo(user, &id).await? {
                    use base64::Engine as _;
                    contact["photo"] = json!({
                        "@odata.mediaContentType": media,
                        "contentBytes": base64::engine::general_purpose::STANDARD.encode(&bytes),
                    });
                }
                contact
            }
            ItemKind::Task => {
                let list = item
                    .folder
                    .as_ref()
                    .map(|f| rest_id(f.as_str()))
                    .unwrap_or_default();
                c.get_todo_task(user, &list, &id).await?
            }
            ItemKind::Config => {
                let name = item.id.as_str().trim_start_matches("config:");
                self.config_json(mailbox, name).await?
            }
            _ => {
                return Err(GraphError::protocol(
                    crate::endpoint::Endpoint::MailboxItems,
                    "this kind has no readable JSON",
                ));
            }
        };
        serde_json::to_vec(&value).map(Bytes::from).map_err(|_| {
            GraphError::protocol(
                crate::endpoint::Endpoint::MailboxItems,
                "unserialisable JSON",
            )
        })
    }

    /// Whether `kind` can be read: one cheap request per permission it needs.
    pub(crate) async fn probe_kind(
        &self,
        mailbox: &SourceMailbox,
        kind: ItemKind,
    ) -> Result<Option<String>, SourceError> {
        let c = self.client();
        let user = &mailbox.id;
        if kind == ItemKind::Config {
            return probe(c.mailbox_settings_json(user).await.map(|_| ()));
        }
        let well_known = match kind {
            ItemKind::Calendar => "calendar",
            ItemKind::Contact => "contacts",
            ItemKind::Task => "tasks",
            ItemKind::Note => "notes",
            _ => return Ok(None),
        };
        if let Some(missing) = self.probe_export(mailbox, well_known).await? {
            return Ok(Some(missing));
        }
        match kind {
            ItemKind::Calendar => probe(c.list_calendars(user).await.map(|_| ())),
            ItemKind::Contact => probe(c.list_contact_folders(user, None).await.map(|_| ())),
            ItemKind::Task => probe(c.list_todo_lists(user).await.map(|_| ())),
            _ => Ok(None),
        }
    }
}

impl GraphSource {
    /// Whether the mailbox API lets this app find the well-known folder, list its items
    /// and export them (`MailboxFolder.Read.All`, `MailboxItem.Read.All`,
    /// `MailboxItem.Export.All`): the missing permission, if one is. What every kind but
    /// configuration needs, and mail too when it keeps its export stream
    /// (`--fidelity full`, on the inbox: [`atlas_core::ports::MailSource::stream_access`]).
    pub(crate) async fn probe_export(
        &self,
        mailbox: &SourceMailbox,
        well_known: &str,
    ) -> Result<Option<String>, SourceError> {
        let c = self.client();
        let user = &mailbox.id;
        let mbx = match c.exchange_mailbox_id(user).await {
            Ok(m) => m,
            Err(e) => return probe(Err(e)),
        };
        let folder = match c.mailbox_folder(user, &mbx, well_known).await {
            Ok(f) => f,
            Err(e) => return probe(Err(e)),
        };
        if let Some(missing) = probe(c.probe_mailbox_items(user, &mbx, &folder.id).await)? {
            return Ok(Some(missing));
        }
        // An id of no item: a 403 names the export permission, anything else is access.
        let nothing = ItemId::new("AAMkAGF0bGFzLXByb2Jl");
        probe(c.export_items(user, &mbx, &[nothing]).await.map(|_| ()))
    }
}

fn mailbox_item(i: MailboxItem, folder: &FolderId, kind: ItemKind) -> SourceItem {
    SourceItem {
        kind,
        id: i.id,
        change_key: i.change_key,
        folder: Some(folder.clone()),
        last_modified: i.last_modified_date_time,
        contents: contents(kind),
        metadata: ItemMetadata::Other { title: None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_classes_map_to_kinds() {
        assert_eq!(kind_of_class("IPF.Appointment"), Some(ItemKind::Calendar));
        assert_eq!(
            kind_of_class("IPF.Appointment.Birthday"),
            Some(ItemKind::Calendar)
        );
        assert_eq!(kind_of_class("IPF.Contact"), Some(ItemKind::Contact));
        assert_eq!(kind_of_class("IPF.Task"), Some(ItemKind::Task));
        assert_eq!(kind_of_class("IPF.StickyNote"), Some(ItemKind::Note));
        assert_eq!(kind_of_class("IPF.Note"), None, "mail has its own path");
        assert_eq!(kind_of_class("IPF.Contactless"), None);
        assert_eq!(kind_of_class("IPF.Configuration"), None);
    }

    #[test]
    fn graph_times_are_utc_instants() {
        let t = graph_time(&json!({"dateTime": "2026-01-05T09:30:00.0000000", "timeZone": "UTC"}));
        assert_eq!(
            t.map(|t| t.to_rfc3339()),
            Some("2026-01-05T09:30:00+00:00".into())
        );
    }
}
