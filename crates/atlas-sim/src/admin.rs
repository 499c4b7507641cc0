//! The admin API: mutate the tenant between backups, dump a mailbox for comparison after a
//! restore, read counters, toggle faults, manage credentials. Available in-process on
//! [`SimHandle`] and over HTTP under `/_admin/…` for tests that drive a separate process.
//!
//! HTTP routes (JSON bodies; users by id or UPN; folders by id, well-known name or
//! `/`-separated display path, percent-encoded in the URL; no authentication):
//!
//! | Method and path | Body → response |
//! |---|---|
//! | `GET /_admin/info` | → `{base_url, tenant_id, tenant_domain, client_id, client_secret}` |
//! | `GET /_admin/users` | → `[UserInfo]` |
//! | `GET /_admin/mailboxes/{user}[?mime=false]` | → `MailboxDump` (MIME base64) |
//! | `POST /_admin/mailboxes/{user}/messages` | `{folder, message: NewMessage}` → `{id}` |
//! | `PATCH /_admin/mailboxes/{user}/messages/{id}` | `MessageUpdate` |
//! | `POST /_admin/mailboxes/{user}/messages/{id}/move` | `{folder}` → `{id}` |
//! | `DELETE /_admin/mailboxes/{user}/messages/{id}` | |
//! | `PUT /_admin/mailboxes/{user}/messages/{id}/mime-failure` | `{fail: bool}` |
//! | `POST /_admin/mailboxes/{user}/folders` | `{parent, name}` → `{id}` |
//! | `PATCH /_admin/mailboxes/{user}/folders/{folder}` | `{name}` |
//! | `DELETE /_admin/mailboxes/{user}/folders/{folder}` | |
//! | `GET` / `DELETE /_admin/counters` | → `RequestCounters` / reset |
//! | `GET` / `PUT /_admin/faults` | `FaultConfig` (latency/hang delay in ms) |
//! | `POST /_admin/certificates` | `{certificate_der, public_key_der}` (base64; SPKI DER key) |
//! | `POST /_admin/expire-tokens`, `/_admin/expire-delta-tokens`, `/_admin/shutdown` | |
//!
//! Calendars, contacts, tasks, notes, the mailbox's configuration and the meeting mail
//! sent have their own routes (see `pim_admin.rs`).

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use rsa::RsaPublicKey;
use rsa::pkcs8::DecodePublicKey as _;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::config::FaultConfig;
use crate::error::{Result, SimError};
use crate::http::{Resp, decode_segment};
use crate::limits::RequestCounters;
use crate::model::{
    AccountKind, Addr, Attachment, AttachmentKind, Body, Content, Mailbox, Message, MessageContent,
    Tenant,
};
use crate::server::{Sim, SimHandle, lock};

/// A directory account as the admin API reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserInfo {
    /// Object id (GUID).
    pub id: String,
    /// User principal name (also the primary SMTP address).
    pub upn: String,
    /// Display name.
    pub display_name: String,
    /// Account kind (`user`, `shared`, `disabled`, `unlicensed`, `no_mailbox`).
    pub kind: String,
    /// Whether mail endpoints work for this account.
    pub has_mailbox: bool,
}

/// A file attachment for [`NewMessage`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewAttachment {
    /// File name.
    pub name: String,
    /// MIME type.
    pub content_type: String,
    /// Raw bytes (base64 in JSON).
    #[serde(with = "b64")]
    pub bytes: Vec<u8>,
    /// Inline (e.g. an image referenced by `cid:` from the HTML body).
    #[serde(default)]
    pub is_inline: bool,
    /// Content-ID for inline attachments.
    #[serde(default)]
    pub content_id: Option<String>,
}

/// A message delivered into a mailbox by the admin API (as if it arrived by mail).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewMessage {
    /// Subject.
    pub subject: String,
    /// Body content.
    pub body: String,
    /// Whether `body` is HTML.
    #[serde(default)]
    pub html: bool,
    /// Sender; defaults to an external address.
    #[serde(default)]
    pub from: Option<Addr>,
    /// Recipients; defaults to the mailbox owner.
    #[serde(default)]
    pub to: Vec<Addr>,
    /// Received time; defaults to now.
    #[serde(default)]
    pub received: Option<DateTime<Utc>>,
    /// Read state.
    #[serde(default)]
    pub is_read: bool,
    /// File attachments.
    #[serde(default)]
    pub attachments: Vec<NewAttachment>,
}

impl NewMessage {
    /// A plain-text message with the given subject and body.
    pub fn text(subject: &str, body: &str) -> Self {
        Self {
            subject: subject.into(),
            body: body.into(),
            html: false,
            from: None,
            to: vec![],
            received: None,
            is_read: false,
            attachments: vec![],
        }
    }
}

/// Changes to a message's mutable state (what users change in Outlook).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MessageUpdate {
    /// New read state.
    #[serde(default)]
    pub is_read: Option<bool>,
    /// New flag status (`notFlagged`, `flagged`, `complete`).
    #[serde(default)]
    pub flag_status: Option<String>,
    /// New categories (replaces the list).
    #[serde(default)]
    pub categories: Option<Vec<String>>,
}

/// One folder in a [`MailboxDump`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FolderDump {
    /// Folder id.
    pub id: String,
    /// Parent folder id (`None` for the root).
    pub parent_id: Option<String>,
    /// Display-name path from the root, `/`-separated (empty for the root).
    pub path: String,
    /// Display name.
    pub display_name: String,
    /// Well-known name, if any.
    pub well_known_name: Option<String>,
    /// Hidden folder.
    pub is_hidden: bool,
    /// Messages in the folder.
    pub total_item_count: usize,
    /// Unread messages in the folder.
    pub unread_item_count: usize,
}

/// One attachment in a [`MessageDump`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttachmentDump {
    /// Name.
    pub name: String,
    /// `file`, `item` or `reference`.
    pub kind: String,
    /// Size in bytes.
    pub size: usize,
    /// Inline attachment.
    pub is_inline: bool,
    /// SHA-256 (hex) of the bytes (`$value`) — empty for reference attachments.
    pub sha256: String,
}

/// One message in a [`MailboxDump`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageDump {
    /// Regular id.
    pub id: String,
    /// Immutable id.
    pub immutable_id: String,
    /// Folder id.
    pub folder_id: String,
    /// Folder path.
    pub folder_path: String,
    /// Internet Message-ID.
    pub internet_message_id: String,
    /// Subject.
    pub subject: String,
    /// Read state.
    pub is_read: bool,
    /// Draft state.
    pub is_draft: bool,
    /// Flag status.
    pub flag_status: String,
    /// Categories.
    pub categories: Vec<String>,
    /// Received time.
    pub received: DateTime<Utc>,
    /// Sent time.
    pub sent: DateTime<Utc>,
    /// Extended properties stored on the message (id, value).
    pub extended_properties: Vec<(String, String)>,
    /// Size of the MIME in bytes.
    pub mime_size: usize,
    /// SHA-256 (hex) of the MIME (`$value`).
    pub mime_sha256: String,
    /// The MIME bytes (base64 in JSON); omitted over HTTP with `?mime=false`.
    #[serde(with = "b64_opt", default)]
    pub mime: Option<Vec<u8>>,
    /// Attachments.
    pub attachments: Vec<AttachmentDump>,
}

/// A mailbox's full state, for comparing after a restore.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MailboxDump {
    /// Owner's object id.
    pub user_id: String,
    /// Owner's UPN.
    pub upn: String,
    /// Folders in tree order.
    pub folders: Vec<FolderDump>,
    /// Messages ordered by folder path, then received time.
    pub messages: Vec<MessageDump>,
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

fn kind_name(k: AccountKind) -> String {
    serde_json::to_value(k)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl Sim {
    fn mailbox_mut<R>(
        &self,
        user: &str,
        f: impl FnOnce(&mut Tenant, usize) -> Result<R>,
    ) -> Result<R> {
        let mut t = lock(&self.tenant);
        let idx = t
            .find_user(user)
            .ok_or_else(|| SimError::UnknownUser(user.to_owned()))?;
        if !t.mailboxes.contains_key(&idx) {
            return Err(SimError::NoMailbox(user.to_owned()));
        }
        f(&mut t, idx)
    }
}

fn folder_of(mbx: &Mailbox, user: &str, r: &str) -> Result<u64> {
    mbx.resolve_folder_ref(r)
        .ok_or_else(|| SimError::UnknownFolder {
            user: user.to_owned(),
            folder: r.to_owned(),
        })
}

fn message_of(mbx: &Mailbox, user: &str, id: &str) -> Result<u64> {
    mbx.resolve_message(id)
        .ok_or_else(|| SimError::UnknownMessage {
            user: user.to_owned(),
            message: id.to_owned(),
        })
}

fn mbx(t: &mut Tenant, idx: usize) -> &mut Mailbox {
    t.mailboxes
        .get_mut(&idx)
        .expect("invariant: mailbox checked by mailbox_mut")
}

impl SimHandle {
    /// All directory accounts.
    pub fn users(&self) -> Vec<UserInfo> {
        let t = lock(&self.sim.tenant);
        t.users
            .iter()
            .map(|u| UserInfo {
                id: u.id.clone(),
                upn: u.upn.clone(),
                display_name: u.display_name.clone(),
                kind: kind_name(u.kind),
                has_mailbox: u.kind.has_mailbox(),
            })
            .collect()
    }

    /// Delivers a message into `folder` (id, well-known name or path); returns its regular id.
    pub fn add_message(&self, user: &str, folder: &str, msg: NewMessage) -> Result<String> {
        let now = Utc::now();
        self.sim.mailbox_mut(user, |t, idx| {
            let owner = t.users[idx].address();
            let domain = t.domain.clone();
            let m = mbx(t, idx);
            let fk = folder_of(m, user, folder)?;
            let when = msg.received.unwrap_or(now);
            let content = MessageContent {
                subject: msg.subject,
                from: Some(msg.from.unwrap_or(Addr {
                    name: "External Sender".into(),
                    address: "sender@fabrikam.com".into(),
                })),
                to: if msg.to.is_empty() {
                    vec![owner]
                } else {
                    msg.to
                },
                cc: vec![],
                bcc: vec![],
                reply_to: vec![],
                body: Body {
                    html: msg.html,
                    content: msg.body.into(),
                },
                internet_message_id: format!(
                    "<{}@{}>",
                    uuid::Uuid::new_v4().simple(),
                    domain.to_ascii_uppercase()
                ),
                in_reply_to: None,
                references: vec![],
                extra_headers: vec![],
                importance: "normal",
                attachments: msg
                    .attachments
                    .into_iter()
                    .map(|a| Attachment {
                        name: a.name,
                        content_type: Some(a.content_type),
                        kind: AttachmentKind::File(Content::Bytes(a.bytes.into())),
                        is_inline: a.is_inline,
                        content_id: a.content_id,
                        last_modified: when,
                    })
                    .collect(),
                raw_mime: None,
            };
            let key = m.alloc_key();
            let seq = m.bump();
            let message = Message {
                key,
                folder: fk,
                location_gen: 0,
                version: 0,
                seq,
                added_seq: seq,
                content: Arc::new(content),
                is_read: msg.is_read,
                is_draft: false,
                flag_status: "notFlagged".into(),
                categories: vec![],
                received: when,
                sent: when,
                created: now,
                modified: now,
                ext_props: vec![],
                broken_value: false,
            };
            let id = m.message_id(&message, false);
            m.messages.insert(key, message);
            Ok(id)
        })
    }

    /// Changes read state, flag or categories of a message.
    pub fn update_message(&self, user: &str, id: &str, update: &MessageUpdate) -> Result<()> {
        self.sim.mailbox_mut(user, |t, idx| {
            let m = mbx(t, idx);
            let key = message_of(m, user, id)?;
            let msg = m
                .messages
                .get_mut(&key)
                .expect("invariant: resolved key exists");
            if let Some(r) = update.is_read {
                msg.is_read = r;
            }
            if let Some(f) = &update.flag_status {
                msg.flag_status.clone_from(f);
            }
            if let Some(c) = &update.categories {
                msg.categories.clone_from(c);
            }
            m.touch_message(key, Utc::now());
            Ok(())
        })
    }

    /// Moves a message; returns its new regular id (the immutable id does not change).
    pub fn move_message(&self, user: &str, id: &str, folder: &str) -> Result<String> {
        self.sim.mailbox_mut(user, |t, idx| {
            let m = mbx(t, idx);
            let key = message_of(m, user, id)?;
            let fk = folder_of(m, user, folder)?;
            m.move_message(key, fk, Utc::now());
            Ok(m.message_id(&m.messages[&key], false))
        })
    }

    /// Deletes a message permanently.
    pub fn delete_message(&self, user: &str, id: &str) -> Result<()> {
        self.sim.mailbox_mut(user, |t, idx| {
            let m = mbx(t, idx);
            let key = message_of(m, user, id)?;
            m.remove_message(key);
            Ok(())
        })
    }

    /// Makes `$value` of a message fail (or work again).
    pub fn set_mime_failure(&self, user: &str, id: &str, fail: bool) -> Result<()> {
        self.sim.mailbox_mut(user, |t, idx| {
            let m = mbx(t, idx);
            let key = message_of(m, user, id)?;
            m.messages
                .get_mut(&key)
                .expect("invariant: resolved key exists")
                .broken_value = fail;
            Ok(())
        })
    }

    /// Creates a folder under `parent` (id, well-known name, path; `""` for the root).
    pub fn add_folder(&self, user: &str, parent: &str, name: &str) -> Result<String> {
        self.sim.mailbox_mut(user, |t, idx| {
            let m = mbx(t, idx);
            let pk = if parent.is_empty() {
                crate::model::ROOT_FOLDER
            } else {
                folder_of(m, user, parent)?
            };
            if m.folders
                .values()
                .any(|f| f.parent == Some(pk) && f.name.eq_ignore_ascii_case(name))
            {
                return Err(SimError::FolderExists {
                    user: user.to_owned(),
                    name: name.to_owned(),
                });
            }
            let key = m.add_folder(pk, name, None, false);
            Ok(m.folder_id(key))
        })
    }

    /// Creates a hidden folder (`isHidden`, settable only at creation) under `parent`.
    pub fn add_hidden_folder(&self, user: &str, parent: &str, name: &str) -> Result<String> {
        let id = self.add_folder(user, parent, name)?;
        self.sim.mailbox_mut(user, |t, idx| {
            let m = mbx(t, idx);
            let k = folder_of(m, user, &id)?;
            if let Some(f) = m.folders.get_mut(&k) {
                f.hidden = true;
            }
            Ok(id)
        })
    }

    /// Moves a folder under `parent` (id, well-known name, path; `""` for the root); its id
    /// stays the same, as in Exchange.
    pub fn move_folder(&self, user: &str, folder: &str, parent: &str) -> Result<()> {
        self.sim.mailbox_mut(user, |t, idx| {
            let m = mbx(t, idx);
            let k = folder_of(m, user, folder)?;
            let pk = if parent.is_empty() {
                crate::model::ROOT_FOLDER
            } else {
                folder_of(m, user, parent)?
            };
            let mut up = Some(pk);
            while let Some(p) = up {
                if p == k {
                    return Err(SimError::InvalidRequest(
                        "a folder cannot be moved below itself".into(),
                    ));
                }
                up = m.folders.get(&p).and_then(|f| f.parent);
            }
            if k == crate::model::ROOT_FOLDER {
                return Err(SimError::InvalidRequest(
                    "the root folder cannot be moved".into(),
                ));
            }
            m.move_folder(k, pk);
            Ok(())
        })
    }

    /// Renames a folder (its id stays the same, as in Exchange).
    pub fn rename_folder(&self, user: &str, folder: &str, new_name: &str) -> Result<()> {
        self.sim.mailbox_mut(user, |t, idx| {
            let m = mbx(t, idx);
            let k = folder_of(m, user, folder)?;
            let parent = m.folders[&k].parent;
            if m.folders
                .values()
                .any(|f| f.parent == parent && f.key != k && f.name.eq_ignore_ascii_case(new_name))
            {
                return Err(SimError::FolderExists {
                    user: user.to_owned(),
                    name: new_name.to_owned(),
                });
            }
            m.rename_folder(k, new_name);
            Ok(())
        })
    }

    /// Deletes a folder with its subfolders and messages.
    pub fn delete_folder(&self, user: &str, folder: &str) -> Result<()> {
        self.sim.mailbox_mut(user, |t, idx| {
            let m = mbx(t, idx);
            let k = folder_of(m, user, folder)?;
            if k == crate::model::ROOT_FOLDER {
                return Err(SimError::InvalidRequest(
                    "the root folder cannot be deleted".into(),
                ));
            }
            m.delete_folder(k);
            Ok(())
        })
    }

    /// The full state of a mailbox, including each message's MIME.
    pub fn dump_mailbox(&self, user: &str) -> Result<MailboxDump> {
        self.sim.dump(user, true)
    }

    /// Current request counters.
    pub fn counters(&self) -> RequestCounters {
        lock(&self.sim.counters).clone()
    }

    /// Resets request counters to zero.
    pub fn reset_counters(&self) {
        *lock(&self.sim.counters) = RequestCounters::default();
    }

    /// Current fault settings.
    pub fn faults(&self) -> FaultConfig {
        lock(&self.sim.faults).clone()
    }

    /// Replaces fault settings for subsequent requests.
    pub fn set_faults(&self, faults: FaultConfig) {
        *lock(&self.sim.faults) = faults;
    }

    /// Registers a client certificate on the app: `der` is the certificate's DER (its
    /// SHA-1/SHA-256 are the `x5t`/`x5t#S256` thumbprints), `key` its RSA public key.
    pub fn register_certificate(&self, der: &[u8], key: RsaPublicKey) {
        lock(&self.sim.auth).register(der, key);
    }

    /// Makes every access token issued so far invalid (401 "expired").
    pub fn expire_tokens(&self) {
        lock(&self.sim.auth).token_epoch += 1;
    }

    /// Makes every delta and skip token issued so far invalid (410 `SyncStateNotFound`).
    pub fn expire_delta_tokens(&self) {
        for m in lock(&self.sim.tenant).mailboxes.values_mut() {
            m.delta_epoch += 1;
        }
    }
}

impl Sim {
    fn dump(&self, user: &str, with_mime: bool) -> Result<MailboxDump> {
        // Clone what is needed under the lock, render MIME outside it.
        let (user_id, upn, folders, msgs) = self.mailbox_mut(user, |t, idx| {
            let u = &t.users[idx];
            let (uid, upn) = (u.id.clone(), u.upn.clone());
            let m = mbx(t, idx);
            let mut folders = Vec::new();
            let mut stack = vec![crate::model::ROOT_FOLDER];
            while let Some(k) = stack.pop() {
                let f = &m.folders[&k];
                let (_, total, unread) = m.counts(k);
                folders.push(FolderDump {
                    id: m.folder_id(k),
                    parent_id: f.parent.map(|p| m.folder_id(p)),
                    path: m.folder_path(k),
                    display_name: f.name.clone(),
                    well_known_name: f.well_known.map(str::to_owned),
                    is_hidden: f.hidden,
                    total_item_count: total,
                    unread_item_count: unread,
                });
                // The mail dump: other folder classes are in the PIM dump.
                let mut kids: Vec<&crate::model::Folder> = m
                    .folders
                    .values()
                    .filter(|c| c.parent == Some(k) && c.class == crate::model::class::MAIL)
                    .collect();
                kids.sort_by(|a, b| b.name.cmp(&a.name));
                stack.extend(kids.iter().map(|c| c.key));
            }
            let msgs: Vec<(Message, String, String, String, String)> = m
                .messages
                .values()
                .map(|x| {
                    (
                        x.clone(),
                        m.message_id(x, false),
                        m.message_id(x, true),
                        m.folder_id(x.folder),
                        m.folder_path(x.folder),
                    )
                })
                .collect();
            Ok((uid, upn, folders, msgs))
        })?;
        let mut messages: Vec<MessageDump> = msgs
            .into_iter()
            .map(|(m, id, imm, fid, fpath)| {
                let mime = crate::mime::render(&m.content, m.sent, m.received);
                let attachments = m
                    .content
                    .attachments
                    .iter()
                    .map(|a| {
                        let (kind, sha) = match &a.kind {
                            AttachmentKind::File(c) => ("file", hex(&Sha256::digest(c.bytes()))),
                            AttachmentKind::Item(i) => (
                                "item",
                                hex(&Sha256::digest(crate::mime::render(
                                    &i.content, i.sent, i.received,
                                ))),
                            ),
                            AttachmentKind::Reference { .. } => ("reference", String::new()),
                        };
                        AttachmentDump {
                            name: a.name.clone(),
                            kind: kind.into(),
                            size: a.size(),
                            is_inline: a.is_inline,
                            sha256: sha,
                        }
                    })
                    .collect();
                MessageDump {
                    id,
                    immutable_id: imm,
                    folder_id: fid,
                    folder_path: fpath,
                    internet_message_id: m.content.internet_message_id.clone(),
                    subject: m.content.subject.clone(),
                    is_read: m.is_read,
                    is_draft: m.is_draft,
                    flag_status: m.flag_status.clone(),
                    categories: m.categories.clone(),
                    received: m.received,
                    sent: m.sent,
                    extended_properties: m.ext_props.clone(),
                    mime_size: mime.len(),
                    mime_sha256: hex(&Sha256::digest(&mime)),
                    mime: with_mime.then_some(mime),
                    attachments,
                }
            })
            .collect();
        messages.sort_by(|a, b| {
            a.folder_path
                .cmp(&b.folder_path)
                .then(a.received.cmp(&b.received))
                .then(a.id.cmp(&b.id))
        });
        Ok(MailboxDump {
            user_id,
            upn,
            folders,
            messages,
        })
    }

    /// HTTP form of the admin API.
    pub(crate) fn admin_http(
        self: &Arc<Self>,
        method: &Method,
        segs: &[&str],
        query: &str,
        body: &[u8],
    ) -> Resp {
        let handle = SimHandle::from_sim(self.clone());
        let segs: Vec<String> = segs.iter().map(|s| decode_segment(s)).collect();
        let s: Vec<&str> = segs.iter().map(String::as_str).collect();
        let parse = |b: &[u8]| {
            serde_json::from_slice::<serde_json::Value>(if b.is_empty() { b"{}" } else { b })
        };
        let Ok(v) = parse(body) else {
            return Resp::error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "admin request body is not JSON",
            );
        };
        let str_of = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        let result: Result<serde_json::Value> = match (method.as_str(), s.as_slice()) {
            ("GET", ["info"]) => Ok(json!({
                "base_url": self.base_url, "tenant_id": self.tenant_id, "tenant_domain": self.domain,
                "client_id": self.client_id, "client_secret": self.client_secret,
            })),
            ("GET", ["users"]) => Ok(json!(handle.users())),
            ("GET", ["mailboxes", u]) => {
                let with_mime = !query.split('&').any(|p| p == "mime=false");
                self.dump(u, with_mime).map(|d| json!(d))
            }
            ("POST", ["mailboxes", u, "messages"]) => {
                serde_json::from_value::<NewMessage>(v["message"].clone())
                    .map_err(|e| SimError::InvalidRequest(e.to_string()))
                    .and_then(|m| handle.add_message(u, &str_of("folder"), m))
                    .map(|id| json!({"id": id}))
            }
            ("PATCH", ["mailboxes", u, "messages", id]) => {
                serde_json::from_value::<MessageUpdate>(v.clone())
                    .map_err(|e| SimError::InvalidRequest(e.to_string()))
                    .and_then(|up| handle.update_message(u, id, &up))
                    .map(|()| json!({}))
            }
            ("POST", ["mailboxes", u, "messages", id, "move"]) => handle
                .move_message(u, id, &str_of("folder"))
                .map(|id| json!({"id": id})),
            ("DELETE", ["mailboxes", u, "messages", id]) => {
                handle.delete_message(u, id).map(|()| json!({}))
            }
            ("PUT", ["mailboxes", u, "messages", id, "mime-failure"]) => handle
                .set_mime_failure(u, id, v["fail"].as_bool().unwrap_or(true))
                .map(|()| json!({})),
            ("POST", ["mailboxes", u, "folders"]) => handle
                .add_folder(u, &str_of("parent"), &str_of("name"))
                .map(|id| json!({"id": id})),
            ("PATCH", ["mailboxes", u, "folders", f]) => handle
                .rename_folder(u, f, &str_of("name"))
                .map(|()| json!({})),
            ("DELETE", ["mailboxes", u, "folders", f]) => {
                handle.delete_folder(u, f).map(|()| json!({}))
            }
            ("GET", ["counters"]) => Ok(json!(handle.counters())),
            ("DELETE", ["counters"]) => {
                handle.reset_counters();
                Ok(json!({}))
            }
            ("GET", ["faults"]) => Ok(json!(handle.faults())),
            ("PUT", ["faults"]) => serde_json::from_value::<FaultConfig>(v.clone())
                .map_err(|e| SimError::InvalidRequest(e.to_string()))
                .map(|f| {
                    handle.set_faults(f);
                    json!({})
                }),
            ("POST", ["certificates"]) => {
                let der = STANDARD
                    .decode(str_of("certificate_der"))
                    .map_err(|e| SimError::InvalidRequest(e.to_string()));
                let key = STANDARD
                    .decode(str_of("public_key_der"))
                    .map_err(|e| SimError::InvalidRequest(e.to_string()))
                    .and_then(|k| {
                        RsaPublicKey::from_public_key_der(&k)
                            .map_err(|e| SimError::InvalidRequest(e.to_string()))
                    });
                der.and_then(|d| key.map(|k| handle.register_certificate(&d, k)))
                    .map(|()| json!({}))
            }
            ("POST", ["expire-tokens"]) => {
                handle.expire_tokens();
                Ok(json!({}))
            }
            ("POST", ["expire-delta-tokens"]) => {
                handle.expire_delta_tokens();
                Ok(json!({}))
            }
            ("POST", ["shutdown"]) => {
                handle.shutdown();
                Ok(json!({}))
            }
            _ => match crate::pim_admin::admin_http(&handle, method.as_str(), s.as_slice(), &v) {
                Some(r) => r,
                None => {
                    return Resp::error(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        "unknown admin endpoint",
                    );
                }
            },
        };
        match result {
            Ok(v) => Resp::ok(v),
            Err(e) => {
                let status = match e {
                    SimError::UnknownUser(_)
                    | SimError::UnknownFolder { .. }
                    | SimError::UnknownMessage { .. } => StatusCode::NOT_FOUND,
                    SimError::FolderExists { .. } => StatusCode::CONFLICT,
                    _ => StatusCode::BAD_REQUEST,
                };
                Resp::error(status, "AdminError", &e.to_string())
            }
        }
    }
}

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

mod b64_opt {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};
    #[allow(clippy::ref_option)] // serde's `with` signature requires `&Option<T>`.
    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&STANDARD.encode(b)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| STANDARD.decode(s).map_err(serde::de::Error::custom))
            .transpose()
    }
}
