//! The simulated tenant's state: directory, mailboxes, folders, messages and the change
//! sequence that delta queries read.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Kind of directory account; decides license, mailbox and `userPurpose`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    /// Licensed user with a mailbox.
    User,
    /// Shared mailbox: no license, has a mailbox, sign-in disabled.
    Shared,
    /// Licensed user whose account is disabled (a leaver); the mailbox stays.
    Disabled,
    /// User with no license at all; no mailbox.
    Unlicensed,
    /// Licensed user whose plans do not include Exchange; no mailbox.
    NoMailbox,
}

impl AccountKind {
    pub(crate) fn has_mailbox(self) -> bool {
        matches!(
            self,
            AccountKind::User | AccountKind::Shared | AccountKind::Disabled
        )
    }
}

#[derive(Debug, Clone)]
pub(crate) struct User {
    pub id: String,
    pub upn: String,
    pub display_name: String,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub job_title: Option<String>,
    pub office: Option<String>,
    pub kind: AccountKind,
    pub created: DateTime<Utc>,
}

impl User {
    pub fn address(&self) -> Addr {
        Addr {
            name: self.display_name.clone(),
            address: self.upn.clone(),
        }
    }
}

/// An e-mail address with display name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Addr {
    /// Display name (may be empty or non-ASCII).
    pub name: String,
    /// SMTP address.
    pub address: String,
}

/// Bytes of a file attachment: stored, or regenerated on demand from a seed so large
/// tenants stay small in memory.
#[derive(Debug, Clone)]
pub(crate) enum Content {
    Bytes(Arc<[u8]>),
    Pattern {
        seed: u64,
        len: usize,
        prefix: &'static [u8],
    },
}

impl Content {
    pub fn len(&self) -> usize {
        match self {
            Content::Bytes(b) => b.len(),
            Content::Pattern { len, .. } => *len,
        }
    }

    pub fn bytes(&self) -> Arc<[u8]> {
        match self {
            Content::Bytes(b) => b.clone(),
            Content::Pattern { seed, len, prefix } => {
                let mut v = vec![0u8; *len];
                ChaCha8Rng::seed_from_u64(*seed).fill_bytes(&mut v);
                let n = prefix.len().min(*len);
                v[..n].copy_from_slice(&prefix[..n]);
                v.into()
            }
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum AttachmentKind {
    File(Content),
    Item(Arc<ItemMessage>),
    Reference { source_url: String },
}

/// A message embedded as an item attachment.
#[derive(Debug, Clone)]
pub(crate) struct ItemMessage {
    pub content: MessageContent,
    pub sent: DateTime<Utc>,
    pub received: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub(crate) struct Attachment {
    pub name: String,
    pub content_type: Option<String>,
    pub kind: AttachmentKind,
    pub is_inline: bool,
    pub content_id: Option<String>,
    pub last_modified: DateTime<Utc>,
}

impl Attachment {
    pub fn size(&self) -> usize {
        match &self.kind {
            AttachmentKind::File(c) => c.len(),
            AttachmentKind::Item(m) => m.content.body.content.len() + 512,
            AttachmentKind::Reference { .. } => 0,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Body {
    pub html: bool,
    pub content: Arc<str>,
}

/// The immutable part of a message: what its MIME is generated from.
#[derive(Debug, Clone)]
pub(crate) struct MessageContent {
    pub subject: String,
    pub from: Option<Addr>,
    pub to: Vec<Addr>,
    pub cc: Vec<Addr>,
    pub bcc: Vec<Addr>,
    pub reply_to: Vec<Addr>,
    pub body: Body,
    pub internet_message_id: String,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    pub extra_headers: Vec<(String, String)>,
    pub importance: &'static str,
    pub attachments: Vec<Attachment>,
    /// MIME supplied by a client (create-from-MIME); served verbatim as `$value`.
    pub raw_mime: Option<Arc<[u8]>>,
}

#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub key: u64,
    pub folder: u64,
    /// Incremented on every move; part of the regular (non-immutable) id.
    pub location_gen: u32,
    /// Incremented on every change; drives `changeKey`.
    pub version: u32,
    /// Change sequence of the last change (create, move-in, update).
    pub seq: u64,
    /// Change sequence at which the message arrived in its current folder.
    pub added_seq: u64,
    pub content: Arc<MessageContent>,
    pub is_read: bool,
    pub is_draft: bool,
    pub flag_status: String,
    pub categories: Vec<String>,
    pub received: DateTime<Utc>,
    pub sent: DateTime<Utc>,
    pub created: DateTime<Utc>,
    pub modified: DateTime<Utc>,
    pub ext_props: Vec<(String, String)>,
    pub broken_value: bool,
}

/// Folder classes (`mailboxFolder.type`, PR_CONTAINER_CLASS) the simulator knows.
pub(crate) mod class {
    pub const MAIL: &str = "IPF.Note";
    pub const CALENDAR: &str = "IPF.Appointment";
    pub const CONTACTS: &str = "IPF.Contact";
    pub const TASKS: &str = "IPF.Task";
    pub const NOTES: &str = "IPF.StickyNote";
}

#[derive(Debug, Clone)]
pub(crate) struct Folder {
    pub key: u64,
    pub parent: Option<u64>,
    pub name: String,
    pub well_known: Option<&'static str>,
    pub hidden: bool,
    /// Folder class: mail folders are `IPF.Note` (the root has none); calendars, contact
    /// folders, task lists and notes folders live in the same tree with their own class
    /// and are invisible to the `mailFolders` API.
    pub class: String,
    /// Properties of the folder's own API view beyond the common ones (a calendar's color,
    /// a To Do list's `wellknownListName`), in Graph's names.
    pub props: serde_json::Map<String, serde_json::Value>,
    /// Change sequence of the folder's creation, for folder delta.
    pub created_seq: u64,
    /// Change sequence of the folder's last own change (creation, rename).
    pub seq: u64,
}

/// A folder that was deleted, for folder delta `@removed` entries.
#[derive(Debug, Clone)]
pub(crate) struct FolderTombstone {
    pub key: u64,
    pub parent: Option<u64>,
    pub hidden: bool,
    pub class: String,
    pub created_seq: u64,
    pub seq: u64,
}

/// A message that left a folder (deleted or moved out), for delta `@removed` entries.
#[derive(Debug, Clone)]
pub(crate) struct Tombstone {
    pub folder: u64,
    pub key: u64,
    pub location_gen: u32,
    pub added_seq: u64,
    pub seq: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct Mailbox {
    /// Short stable tag used inside ids.
    pub tag: u32,
    pub folders: BTreeMap<u64, Folder>,
    pub messages: BTreeMap<u64, Message>,
    pub tombstones: Vec<Tombstone>,
    pub folder_tombstones: Vec<FolderTombstone>,
    pub next_key: u64,
    pub seq: u64,
    /// Bumped by "expire all delta tokens"; tokens from an older epoch get 410.
    pub delta_epoch: u32,
    /// Non-mail items and the mailbox's configuration.
    pub pim: crate::items::Pim,
}

pub(crate) const ROOT_FOLDER: u64 = 0;

impl Mailbox {
    pub fn new(tag: u32) -> Self {
        let mut folders = BTreeMap::new();
        folders.insert(
            ROOT_FOLDER,
            Folder {
                key: ROOT_FOLDER,
                parent: None,
                name: "Top of Information Store".into(),
                well_known: Some("msgfolderroot"),
                hidden: false,
                class: String::new(),
                props: serde_json::Map::new(),
                created_seq: 1,
                seq: 1,
            },
        );
        Self {
            tag,
            folders,
            messages: BTreeMap::new(),
            tombstones: Vec::new(),
            folder_tombstones: Vec::new(),
            next_key: 1,
            seq: 1,
            delta_epoch: 0,
            pim: crate::items::Pim::default(),
        }
    }

    pub fn alloc_key(&mut self) -> u64 {
        let k = self.next_key;
        self.next_key += 1;
        k
    }

    pub fn bump(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    pub fn add_folder(
        &mut self,
        parent: u64,
        name: &str,
        well_known: Option<&'static str>,
        hidden: bool,
    ) -> u64 {
        self.add_folder_of(class::MAIL, parent, name, well_known, hidden)
    }

    /// Adds a folder of any class.
    pub fn add_folder_of(
        &mut self,
        folder_class: &str,
        parent: u64,
        name: &str,
        well_known: Option<&'static str>,
        hidden: bool,
    ) -> u64 {
        let key = self.alloc_key();
        let seq = self.bump();
        self.folders.insert(
            key,
            Folder {
                key,
                parent: Some(parent),
                name: name.to_owned(),
                well_known,
                hidden,
                class: folder_class.to_owned(),
                props: serde_json::Map::new(),
                created_seq: seq,
                seq,
            },
        );
        key
    }

    /// Moves a folder under another one (its id stays the same). The folder and every
    /// folder below it count as changed, so a folder delta whose scope the move changes
    /// (into or out of a hidden folder) reports each of them.
    pub fn move_folder(&mut self, key: u64, parent: u64) {
        let mut todo = vec![key];
        let mut first = true;
        while let Some(k) = todo.pop() {
            let seq = self.bump();
            if let Some(f) = self.folders.get_mut(&k) {
                if first {
                    f.parent = Some(parent);
                    first = false;
                }
                f.seq = seq;
            }
            todo.extend(
                self.folders
                    .values()
                    .filter(|f| f.parent == Some(k))
                    .map(|f| f.key),
            );
        }
    }

    /// Whether the `mailFolders` API shows the folder: mail folders and the root.
    pub fn is_mail_folder(&self, key: u64) -> bool {
        self.folders
            .get(&key)
            .is_some_and(|f| f.parent.is_none() || f.class == class::MAIL)
    }

    /// Renames a folder, a change folder delta reports.
    pub fn rename_folder(&mut self, key: u64, name: &str) {
        let seq = self.bump();
        if let Some(f) = self.folders.get_mut(&key) {
            name.clone_into(&mut f.name);
            f.seq = seq;
        }
    }

    pub fn folder_id(&self, key: u64) -> String {
        let mut raw = b"F".to_vec();
        raw.extend_from_slice(&self.tag.to_be_bytes());
        raw.extend_from_slice(&key.to_be_bytes());
        format!("AAMkAD{}", URL_SAFE_NO_PAD.encode(raw))
    }

    /// Resolves a mail folder id or well-known name (case-insensitive), as the
    /// `mailFolders` API does: folders of other classes are not found there.
    pub fn resolve_folder(&self, id: &str) -> Option<u64> {
        self.resolve_any_folder(id)
            .filter(|k| self.is_mail_folder(*k))
    }

    /// Resolves a folder of any class by REST id or well-known name (case-insensitive).
    pub fn resolve_any_folder(&self, id: &str) -> Option<u64> {
        let lower = id.to_ascii_lowercase();
        if let Some(f) = self
            .folders
            .values()
            .find(|f| f.well_known == Some(lower.as_str()))
        {
            return Some(f.key);
        }
        let raw = URL_SAFE_NO_PAD.decode(id.strip_prefix("AAMkAD")?).ok()?;
        if raw.len() != 13 || raw[0] != b'F' || raw[1..5] != self.tag.to_be_bytes() {
            return None;
        }
        let key = u64::from_be_bytes(raw[5..13].try_into().ok()?);
        self.folders.contains_key(&key).then_some(key)
    }

    /// Resolves an admin folder reference: id, well-known name or `/`-separated display path.
    pub fn resolve_folder_ref(&self, r: &str) -> Option<u64> {
        self.resolve_any_folder(r).or_else(|| {
            let mut cur = ROOT_FOLDER;
            for part in r.trim_matches('/').split('/') {
                cur = self
                    .folders
                    .values()
                    .find(|f| f.parent == Some(cur) && f.name == part)?
                    .key;
            }
            Some(cur)
        })
    }

    pub fn folder_path(&self, key: u64) -> String {
        let mut parts = Vec::new();
        let mut cur = self.folders.get(&key);
        while let Some(f) = cur {
            if f.parent.is_none() {
                break;
            }
            parts.push(f.name.clone());
            cur = f.parent.and_then(|p| self.folders.get(&p));
        }
        parts.reverse();
        parts.join("/")
    }

    pub fn message_id(&self, m: &Message, immutable: bool) -> String {
        Self::encode_message_id(self.tag, m.key, m.location_gen, immutable)
    }

    pub fn encode_message_id(tag: u32, key: u64, generation: u32, immutable: bool) -> String {
        let mut raw = if immutable {
            b"I".to_vec()
        } else {
            b"R".to_vec()
        };
        raw.extend_from_slice(&tag.to_be_bytes());
        raw.extend_from_slice(&key.to_be_bytes());
        if immutable {
            format!("AAkALgAA{}", URL_SAFE_NO_PAD.encode(raw))
        } else {
            raw.extend_from_slice(&generation.to_be_bytes());
            format!("AAMkAGI2{}", URL_SAFE_NO_PAD.encode(raw))
        }
    }

    /// Whether `id` has the form of an immutable message id (`Prefer: IdType="ImmutableId"`).
    pub fn is_immutable_message_id(id: &str) -> bool {
        id.starts_with("AAkALgAA")
    }

    /// Resolves a regular or immutable message id. A regular id from before a move no
    /// longer resolves, as in Exchange.
    pub fn resolve_message(&self, id: &str) -> Option<u64> {
        if let Some(rest) = id.strip_prefix("AAkALgAA") {
            let raw = URL_SAFE_NO_PAD.decode(rest).ok()?;
            if raw.len() != 13 || raw[0] != b'I' || raw[1..5] != self.tag.to_be_bytes() {
                return None;
            }
            let key = u64::from_be_bytes(raw[5..13].try_into().ok()?);
            return self.messages.contains_key(&key).then_some(key);
        }
        let raw = URL_SAFE_NO_PAD.decode(id.strip_prefix("AAMkAGI2")?).ok()?;
        if raw.len() != 17 || raw[0] != b'R' || raw[1..5] != self.tag.to_be_bytes() {
            return None;
        }
        let key = u64::from_be_bytes(raw[5..13].try_into().ok()?);
        let generation = u32::from_be_bytes(raw[13..17].try_into().ok()?);
        self.messages
            .get(&key)
            .filter(|m| m.location_gen == generation)
            .map(|m| m.key)
    }

    pub fn change_key(&self, m: &Message) -> String {
        let mut raw = b"CQAAABYAAAC".to_vec();
        raw.extend_from_slice(&self.tag.to_be_bytes());
        raw.extend_from_slice(&m.key.to_be_bytes());
        raw.extend_from_slice(&m.version.to_be_bytes());
        URL_SAFE_NO_PAD.encode(raw)
    }

    pub fn attachment_id(&self, m: &Message, idx: usize) -> String {
        let mut raw = b"A".to_vec();
        raw.extend_from_slice(&self.tag.to_be_bytes());
        raw.extend_from_slice(&m.key.to_be_bytes());
        raw.extend_from_slice(&(idx as u32).to_be_bytes());
        format!("AAMkAGI2ATT{}", URL_SAFE_NO_PAD.encode(raw))
    }

    pub fn resolve_attachment(&self, m: &Message, id: &str) -> Option<usize> {
        let raw = URL_SAFE_NO_PAD
            .decode(id.strip_prefix("AAMkAGI2ATT")?)
            .ok()?;
        if raw.len() != 17 || raw[0] != b'A' || raw[1..5] != self.tag.to_be_bytes() {
            return None;
        }
        let key = u64::from_be_bytes(raw[5..13].try_into().ok()?);
        let idx = u32::from_be_bytes(raw[13..17].try_into().ok()?) as usize;
        (key == m.key && idx < m.content.attachments.len()).then_some(idx)
    }

    pub fn counts(&self, folder: u64) -> (usize, usize, usize) {
        let children = self
            .folders
            .values()
            .filter(|f| f.parent == Some(folder) && f.class == class::MAIL)
            .count();
        let (mut total, mut unread) = (0, 0);
        for m in self.messages.values().filter(|m| m.folder == folder) {
            total += 1;
            if !m.is_read {
                unread += 1;
            }
        }
        (children, total, unread)
    }

    /// Removes a message from its folder, leaving a tombstone for delta.
    pub fn remove_message(&mut self, key: u64) -> Option<Message> {
        let m = self.messages.remove(&key)?;
        let seq = self.bump();
        self.tombstones.push(Tombstone {
            folder: m.folder,
            key,
            location_gen: m.location_gen,
            added_seq: m.added_seq,
            seq,
        });
        Some(m)
    }

    /// Moves a message, leaving a tombstone in the source folder.
    pub fn move_message(&mut self, key: u64, dest: u64, now: DateTime<Utc>) -> Option<()> {
        let seq = self.bump();
        let m = self.messages.get_mut(&key)?;
        self.tombstones.push(Tombstone {
            folder: m.folder,
            key,
            location_gen: m.location_gen,
            added_seq: m.added_seq,
            seq,
        });
        m.folder = dest;
        m.location_gen += 1;
        m.version += 1;
        m.seq = seq;
        m.added_seq = seq;
        m.modified = now;
        Some(())
    }

    /// Records an in-place change of a message.
    pub fn touch_message(&mut self, key: u64, now: DateTime<Utc>) {
        let seq = self.bump();
        if let Some(m) = self.messages.get_mut(&key) {
            m.version += 1;
            m.seq = seq;
            m.modified = now;
        }
    }

    /// Deletes a folder and everything below it.
    pub fn delete_folder(&mut self, key: u64) {
        let children: Vec<u64> = self
            .folders
            .values()
            .filter(|f| f.parent == Some(key))
            .map(|f| f.key)
            .collect();
        for c in children {
            self.delete_folder(c);
        }
        let msgs: Vec<u64> = self
            .messages
            .values()
            .filter(|m| m.folder == key)
            .map(|m| m.key)
            .collect();
        for m in msgs {
            self.remove_message(m);
        }
        let items: Vec<u64> = self
            .pim
            .items
            .values()
            .filter(|i| i.folder == key)
            .map(|i| i.key)
            .collect();
        for i in items {
            self.remove_item(i);
        }
        if let Some(f) = self.folders.remove(&key) {
            let seq = self.bump();
            self.folder_tombstones.push(FolderTombstone {
                key,
                parent: f.parent,
                hidden: f.hidden,
                class: f.class,
                created_seq: f.created_seq,
                seq,
            });
        }
    }
}

/// The whole simulated tenant.
#[derive(Debug)]
pub(crate) struct Tenant {
    pub id: String,
    pub domain: String,
    pub client_id: String,
    pub client_secret: String,
    pub users: Vec<User>,
    /// Mailboxes by user index.
    pub mailboxes: BTreeMap<usize, Mailbox>,
}

impl Tenant {
    /// Finds a user by object id or UPN (case-insensitive).
    pub fn find_user(&self, r: &str) -> Option<usize> {
        self.users
            .iter()
            .position(|u| u.id.eq_ignore_ascii_case(r) || u.upn.eq_ignore_ascii_case(r))
    }
}
