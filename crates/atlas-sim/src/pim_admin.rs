//! The admin API for what a mailbox holds beyond mail: mutate events (and their
//! exceptions), contacts, tasks and notes between backups; dump everything for comparison
//! after a restore; read the meeting mail Exchange sent.
//!
//! Admin changes act as the mailbox owner editing in Outlook **without** sending meeting
//! mail, so that a test's invitation count is only what the client under test caused.
//!
//! HTTP (JSON; users by id or UPN; folders by id, well-known name or path):
//!
//! | Method and path | Body → response |
//! |---|---|
//! | `GET /_admin/mailboxes/{user}/pim` | → `PimDump` |
//! | `POST /_admin/mailboxes/{user}/items` | `{folder, class, props}` → `{id}` |
//! | `PATCH /_admin/mailboxes/{user}/items/{id}` | props to merge (`categories` too) |
//! | `DELETE /_admin/mailboxes/{user}/items/{id}` | |
//! | `PUT /_admin/mailboxes/{user}/items/{id}/occurrences` | `{original_start, change}` (`change: null` cancels) |
//! | `GET` / `DELETE /_admin/invitations` | → `[Invitation]` / reset |

use std::collections::BTreeMap;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::classic::Invitation;
use crate::error::{Result, SimError};
use crate::items::{Item, Occurrence, item_class, ts_key};
use crate::model::{AttachmentKind, Mailbox, class};
use crate::server::{SimHandle, lock};

/// A folder of a class other than mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PimFolderDump {
    /// REST id.
    pub id: String,
    /// Display-name path from the root.
    pub path: String,
    /// Folder class (`IPF.Appointment`, `IPF.Contact`, `IPF.Task`, `IPF.StickyNote`).
    pub class: String,
    /// Well-known name, if any.
    pub well_known_name: Option<String>,
}

/// A file attachment of an item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemAttachmentDump {
    /// File name.
    pub name: String,
    /// MIME type.
    pub content_type: Option<String>,
    /// Size in bytes.
    pub size: usize,
    /// SHA-256 (hex) of the bytes.
    pub sha256: String,
}

/// An exception of a recurring series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExceptionDump {
    /// Original start of the occurrence (UTC).
    pub original_start: String,
    /// The occurrence was cancelled.
    pub cancelled: bool,
    /// Properties that differ from the series.
    pub props: Value,
}

/// An event, contact, task or sticky note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemDump {
    /// REST id.
    pub id: String,
    /// Item class (`IPM.Appointment`, `IPM.Contact`, `IPM.Task`, `IPM.StickyNote`).
    pub class: String,
    /// Path of its folder.
    pub folder_path: String,
    /// Categories.
    pub categories: Vec<String>,
    /// Its properties in Graph's names (event, contact, todoTask; a note's subject, body
    /// and color).
    pub props: Value,
    /// File attachments.
    pub attachments: Vec<ItemAttachmentDump>,
    /// SHA-256 (hex) of a contact's photo.
    pub photo_sha256: Option<String>,
    /// Exceptions of a recurring series, by original start.
    pub exceptions: Vec<ExceptionDump>,
}

/// A master category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryDump {
    /// Display name.
    pub display_name: String,
    /// Color preset.
    pub color: String,
}

/// Everything a mailbox holds beyond mail, for comparison after a restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PimDump {
    /// Owner's UPN.
    pub upn: String,
    /// Calendars, contact folders, task lists and notes folders, in path order.
    pub folders: Vec<PimFolderDump>,
    /// Items, by folder path and then id.
    pub items: Vec<ItemDump>,
    /// Inbox rules (messageRule properties without `id`), by sequence.
    pub rules: Vec<Value>,
    /// Master categories.
    pub categories: Vec<CategoryDump>,
    /// `mailboxSettings` (without `userPurpose`).
    pub settings: Value,
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

fn dump_item(m: &Mailbox, i: &Item) -> ItemDump {
    ItemDump {
        id: m.item_id(i.key),
        class: i.class.clone(),
        folder_path: m.folder_path(i.folder),
        categories: i.categories.clone(),
        props: Value::Object(i.props.clone()),
        attachments: i
            .attachments
            .iter()
            .map(|a| ItemAttachmentDump {
                name: a.name.clone(),
                content_type: a.content_type.clone(),
                size: a.size(),
                sha256: match &a.kind {
                    AttachmentKind::File(c) => hex(&Sha256::digest(c.bytes())),
                    _ => String::new(),
                },
            })
            .collect(),
        photo_sha256: i.photo.as_ref().map(|p| hex(&Sha256::digest(&p.bytes))),
        exceptions: i
            .occurrences
            .iter()
            .map(|(k, o)| ExceptionDump {
                original_start: k.clone(),
                cancelled: o.cancelled,
                props: Value::Object(o.props.clone()),
            })
            .collect(),
    }
}

fn folder_class_for(item: &str) -> Option<&'static str> {
    Some(match item {
        item_class::EVENT => class::CALENDAR,
        item_class::CONTACT => class::CONTACTS,
        item_class::TASK => class::TASKS,
        item_class::NOTE => class::NOTES,
        _ => return None,
    })
}

impl SimHandle {
    fn on_mailbox<R>(&self, user: &str, f: impl FnOnce(&mut Mailbox) -> Result<R>) -> Result<R> {
        let mut t = lock(&self.sim.tenant);
        let idx = t
            .find_user(user)
            .ok_or_else(|| SimError::UnknownUser(user.to_owned()))?;
        let m = t
            .mailboxes
            .get_mut(&idx)
            .ok_or_else(|| SimError::NoMailbox(user.to_owned()))?;
        f(m)
    }

    /// Everything the mailbox holds beyond mail.
    pub fn dump_pim(&self, user: &str) -> Result<PimDump> {
        let upn = {
            let t = lock(&self.sim.tenant);
            t.find_user(user)
                .map(|i| t.users[i].upn.clone())
                .unwrap_or_default()
        };
        self.on_mailbox(user, |m| {
            let mut folders: Vec<PimFolderDump> = m
                .folders
                .values()
                .filter(|f| f.parent.is_some() && f.class != class::MAIL)
                .map(|f| PimFolderDump {
                    id: m.folder_id(f.key),
                    path: m.folder_path(f.key),
                    class: f.class.clone(),
                    well_known_name: f.well_known.map(str::to_owned),
                })
                .collect();
            folders.sort_by(|a, b| a.path.cmp(&b.path));
            let mut items: Vec<ItemDump> = m.pim.items.values().map(|i| dump_item(m, i)).collect();
            items.sort_by(|a, b| a.folder_path.cmp(&b.folder_path).then(a.id.cmp(&b.id)));
            let mut rules: Vec<&Map<String, Value>> =
                m.pim.rules.iter().map(|r| &r.props).collect();
            rules.sort_by_key(|r| crate::items::prop(r, "sequence").as_i64().unwrap_or(0));
            Ok(PimDump {
                upn,
                folders,
                items,
                rules: rules
                    .into_iter()
                    .map(|r| Value::Object(r.clone()))
                    .collect(),
                categories: m
                    .pim
                    .categories
                    .iter()
                    .map(|c| CategoryDump {
                        display_name: c.display_name.clone(),
                        color: c.color.clone(),
                    })
                    .collect(),
                settings: Value::Object(m.pim.settings.clone()),
            })
        })
    }

    /// Adds an event, contact, task or note (`class` is its item class) to `folder` (id,
    /// well-known name or path); `props` in Graph's names. Returns its REST id.
    pub fn add_item(
        &self,
        user: &str,
        folder: &str,
        item_cls: &str,
        props: Value,
    ) -> Result<String> {
        let Value::Object(mut props) = props else {
            return Err(SimError::InvalidRequest(
                "props must be a JSON object".into(),
            ));
        };
        let categories = props
            .remove("categories")
            .and_then(|c| serde_json::from_value::<Vec<String>>(c).ok())
            .unwrap_or_default();
        let now = Utc::now();
        self.on_mailbox(user, |m| {
            let fk = m
                .resolve_folder_ref(folder)
                .ok_or_else(|| SimError::UnknownFolder {
                    user: user.to_owned(),
                    folder: folder.to_owned(),
                })?;
            if folder_class_for(item_cls) != Some(m.folders[&fk].class.as_str()) {
                return Err(SimError::InvalidRequest(format!(
                    "{item_cls} items belong in a folder of class {}",
                    folder_class_for(item_cls).unwrap_or("?")
                )));
            }
            let key = m.add_item(Item {
                key: 0,
                folder: fk,
                class: item_cls.to_owned(),
                version: 0,
                seq: 0,
                added_seq: 0,
                created: now,
                modified: now,
                categories,
                props,
                attachments: Vec::new(),
                photo: None,
                occurrences: BTreeMap::new(),
            });
            Ok(m.item_id(key))
        })
    }

    /// Merges `props` into an item (`null` removes a property; `categories` replaces them).
    pub fn update_item(&self, user: &str, id: &str, props: Value) -> Result<()> {
        let Value::Object(props) = props else {
            return Err(SimError::InvalidRequest(
                "props must be a JSON object".into(),
            ));
        };
        self.on_mailbox(user, |m| {
            let k = m.resolve_item(id).ok_or_else(|| SimError::UnknownMessage {
                user: user.to_owned(),
                message: id.to_owned(),
            })?;
            let item = m
                .pim
                .items
                .get_mut(&k)
                .expect("invariant: resolved key exists");
            for (key, v) in props {
                if key == "categories" {
                    item.categories = serde_json::from_value(v).unwrap_or_default();
                } else if v.is_null() {
                    item.props.remove(&key);
                } else {
                    item.props.insert(key, v);
                }
            }
            m.touch_item(k, Utc::now());
            Ok(())
        })
    }

    /// Changes (merges `props` into) or, with `None`, deletes the inbox rule named
    /// `display_name`. Sends nothing.
    pub fn set_rule(&self, user: &str, display_name: &str, props: Option<Value>) -> Result<()> {
        self.on_mailbox(user, |m| {
            let pos = m
                .pim
                .rules
                .iter()
                .position(|r| crate::items::prop(&r.props, "displayName") == display_name)
                .ok_or_else(|| SimError::InvalidRequest(format!("no rule {display_name:?}")))?;
            match props {
                None => {
                    m.pim.rules.remove(pos);
                }
                Some(Value::Object(p)) => m.pim.rules[pos].props.extend(p),
                Some(_) => {
                    return Err(SimError::InvalidRequest(
                        "props must be a JSON object".into(),
                    ));
                }
            }
            Ok(())
        })
    }

    /// Changes the colour of or, with `None`, deletes the master category named
    /// `display_name`.
    pub fn set_category(&self, user: &str, display_name: &str, color: Option<&str>) -> Result<()> {
        self.on_mailbox(user, |m| {
            let pos = m
                .pim
                .categories
                .iter()
                .position(|c| c.display_name == display_name)
                .ok_or_else(|| SimError::InvalidRequest(format!("no category {display_name:?}")))?;
            match color {
                None => {
                    m.pim.categories.remove(pos);
                }
                Some(c) => c.clone_into(&mut m.pim.categories[pos].color),
            }
            Ok(())
        })
    }

    /// Replaces the mailbox settings named in `settings` (top-level properties).
    pub fn set_settings(&self, user: &str, settings: Value) -> Result<()> {
        let Value::Object(settings) = settings else {
            return Err(SimError::InvalidRequest(
                "settings must be a JSON object".into(),
            ));
        };
        self.on_mailbox(user, |m| {
            m.pim.settings.extend(settings);
            Ok(())
        })
    }

    /// Deletes an item.
    pub fn delete_item(&self, user: &str, id: &str) -> Result<()> {
        self.on_mailbox(user, |m| {
            let k = m.resolve_item(id).ok_or_else(|| SimError::UnknownMessage {
                user: user.to_owned(),
                message: id.to_owned(),
            })?;
            m.remove_item(k);
            Ok(())
        })
    }

    /// Changes one occurrence of a series (an exception) or, with `change: None`, cancels
    /// it. `original_start` is the occurrence's start in the series (UTC).
    pub fn set_occurrence(
        &self,
        user: &str,
        id: &str,
        original_start: DateTime<Utc>,
        change: Option<Value>,
    ) -> Result<()> {
        self.on_mailbox(user, |m| {
            let k = m.resolve_item(id).ok_or_else(|| SimError::UnknownMessage {
                user: user.to_owned(),
                message: id.to_owned(),
            })?;
            let item = m
                .pim
                .items
                .get_mut(&k)
                .expect("invariant: resolved key exists");
            let occurrence = match change {
                None => Occurrence {
                    cancelled: true,
                    props: Map::new(),
                },
                Some(Value::Object(props)) => Occurrence {
                    cancelled: false,
                    props,
                },
                Some(_) => {
                    return Err(SimError::InvalidRequest(
                        "change must be a JSON object or null".into(),
                    ));
                }
            };
            item.occurrences.insert(ts_key(original_start), occurrence);
            m.touch_item(k, Utc::now());
            Ok(())
        })
    }

    /// Meeting requests, updates and cancellations sent since start (or the last reset).
    pub fn invitations(&self) -> Vec<Invitation> {
        lock(&self.sim.invitations).clone()
    }

    /// Forgets the invitations sent so far.
    pub fn reset_invitations(&self) {
        lock(&self.sim.invitations).clear();
    }

    /// The mailbox id (`MBX:…`) of a user's primary mailbox, as `settings/exchange` returns it.
    pub fn mailbox_id(&self, user: &str) -> Result<String> {
        let t = lock(&self.sim.tenant);
        let idx = t
            .find_user(user)
            .ok_or_else(|| SimError::UnknownUser(user.to_owned()))?;
        if !t.mailboxes.contains_key(&idx) {
            return Err(SimError::NoMailbox(user.to_owned()));
        }
        let short = |s: &str| s.replace('-', "").chars().take(8).collect::<String>();
        Ok(format!("MBX:{}@{}", short(&t.users[idx].id), short(&t.id)))
    }

    /// A contact's photo bytes, for comparing with an export (`None`: no photo).
    pub fn contact_photo(&self, user: &str, id: &str) -> Result<Option<Vec<u8>>> {
        self.on_mailbox(user, |m| {
            let k = m.resolve_item(id).ok_or_else(|| SimError::UnknownMessage {
                user: user.to_owned(),
                message: id.to_owned(),
            })?;
            Ok(m.pim.items[&k].photo.as_ref().map(|p| p.bytes.to_vec()))
        })
    }
}

/// Routes `/_admin/…` requests of this module; `None` when the path is not one of them.
pub(crate) fn admin_http(
    handle: &SimHandle,
    method: &str,
    s: &[&str],
    v: &Value,
) -> Option<Result<Value>> {
    let str_of = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    Some(match (method, s) {
        ("GET", ["mailboxes", u, "pim"]) => handle.dump_pim(u).map(|d| json!(d)),
        ("POST", ["mailboxes", u, "items"]) => handle
            .add_item(u, &str_of("folder"), &str_of("class"), v["props"].clone())
            .map(|id| json!({"id": id})),
        ("PATCH", ["mailboxes", u, "items", id]) => {
            handle.update_item(u, id, v.clone()).map(|()| json!({}))
        }
        ("DELETE", ["mailboxes", u, "items", id]) => handle.delete_item(u, id).map(|()| json!({})),
        ("PUT", ["mailboxes", u, "items", id, "occurrences"]) => {
            match DateTime::parse_from_rfc3339(&str_of("original_start")) {
                Ok(start) => {
                    let change = (!v["change"].is_null()).then(|| v["change"].clone());
                    handle
                        .set_occurrence(u, id, start.with_timezone(&Utc), change)
                        .map(|()| json!({}))
                }
                Err(e) => Err(SimError::InvalidRequest(format!("original_start: {e}"))),
            }
        }
        ("GET", ["mailboxes", u, "mailbox-id"]) => handle.mailbox_id(u).map(|id| json!({"id": id})),
        ("GET", ["invitations"]) => Ok(json!(handle.invitations())),
        ("DELETE", ["invitations"]) => {
            handle.reset_invitations();
            Ok(json!({}))
        }
        ("GET", ["mailboxes", u, "contacts", id, "photo"]) => handle.contact_photo(u, id).map(
            |p| json!({"bytes": p.map(|b| base64::engine::general_purpose::STANDARD.encode(b))}),
        ),
        _ => return None,
    })
}
