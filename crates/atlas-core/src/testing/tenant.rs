//! [`MemoryTenant`]: a tenant held in memory, behind both the source and the target port.
//!
//! It keeps what the services rely on and nothing of HTTP: mailboxes with a folder tree
//! and items of any kind; per-folder delta with opaque, expirable links (a round reports
//! every item once; a link reports what changed since it was handed out: added, changed
//! and moved-in items, removed and moved-out ids); content streamed in chunks; restore
//! writes with their marks; and scripted faults — an operation failing before it does
//! anything, or a write that happens and then loses its answer, which is the case the
//! restore's duplicate check exists for. A test mutates the tenant between runs and
//! compares a [`MailboxDump`] with what the repository or the target holds.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::mime::{AttachmentSpec, BodySpec, MessageSpec};
use crate::model::{
    ContentKind, EmailAddress, FlagStatus, FolderId, Importance, ItemId, ItemKind, MailboxId,
};
use crate::ports::{
    ContentStream, DeltaCursor, DeltaNext, DeltaPage, FolderOptions, ItemMetadata, MailMetadata,
    MailSource, MailTarget, MailboxKind, RestoreAttachment, RestoreBody, RestoreMark,
    RestoreMessage, SourceError, SourceFolder, SourceItem, SourceMailbox, TargetAttachment,
    TargetError, TargetFolder, TargetItem,
};

/// Chunk size of content streams: small enough that large test items arrive in many
/// chunks, as from Graph.
const CHUNK: usize = 64 * 1024;
/// Items per [`MailSource::fetch_batch`] of export streams (Graph's `exportItems` limit).
const EXPORT_BATCH: usize = 20;

/// An operation of the source or target port, for scripted faults and call counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// [`MailSource::list_mailboxes`].
    ListMailboxes,
    /// [`MailSource::resolve_mailbox`].
    ResolveMailbox,
    /// [`MailSource::list_folders`].
    ListFolders,
    /// [`MailSource::delta_page`].
    DeltaPage,
    /// [`MailSource::open_content`].
    OpenContent,
    /// [`MailSource::fetch_batch`].
    FetchBatch,
    /// [`MailTarget::resolve_mailbox`].
    ResolveTarget,
    /// [`MailTarget::check_write_access`].
    CheckWriteAccess,
    /// [`MailTarget::well_known_folder`].
    WellKnownFolder,
    /// [`MailTarget::ensure_folder`].
    EnsureFolder,
    /// [`MailTarget::list_items`].
    ListItems,
    /// [`MailTarget::create_message`].
    CreateMessage,
    /// [`MailTarget::list_attachments`].
    ListAttachments,
    /// [`MailTarget::add_attachment`].
    AddAttachment,
    /// [`MailTarget::mark_complete`].
    MarkComplete,
}

/// What a scripted fault does to one call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Fail before doing anything, as a service that is down after the adapter's retries
    /// (`SourceError::Unavailable` / `TargetError::Unavailable`).
    Unavailable,
    /// Fail before doing anything with "outcome unknown": the request never took effect,
    /// but the caller cannot know that.
    Unsent,
    /// Do the write, then lose the answer ([`TargetError::OutcomeUnknown`]); on a read,
    /// the same as [`Fault::Unsent`].
    LoseAnswer,
    /// Refuse for a missing permission (the name is reported).
    Denied(&'static str),
}

/// A restore's write as the target received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The message fields the restore sent.
    pub message: RestoreMessage,
    /// Attachments in the order they arrived (in the create request, then added).
    pub attachments: Vec<RestoreAttachment>,
    /// The restore mark.
    pub mark: RestoreMark,
    /// Whether the completion mark is set.
    pub complete: bool,
}

/// One item of a [`MailboxDump`].
#[derive(Debug, Clone)]
pub struct ItemDump {
    /// Its id (as the ports report it).
    pub id: ItemId,
    /// Its kind.
    pub kind: ItemKind,
    /// Its folder's path joined with `/`.
    pub folder_path: String,
    /// Its change key.
    pub change_key: String,
    /// Its metadata.
    pub metadata: ItemMetadata,
    /// Its representations, as the source serves them.
    pub contents: Vec<(ContentKind, Bytes)>,
    /// The message it was built from (source messages added by a test).
    pub spec: Option<MessageSpec>,
    /// What a restore wrote (items created through the target port).
    pub restored: Option<Restored>,
}

impl ItemDump {
    /// The content of `kind`, if the item has it.
    pub fn content(&self, kind: ContentKind) -> Option<&Bytes> {
        self.contents
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, b)| b)
    }

    /// The mail metadata, for a message.
    pub fn mail(&self) -> Option<&MailMetadata> {
        match &self.metadata {
            ItemMetadata::Mail(m) => Some(m),
            ItemMetadata::Other { .. } => None,
        }
    }
}

/// One folder of a [`MailboxDump`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderDump {
    /// Its id.
    pub id: FolderId,
    /// Its path joined with `/`.
    pub path: String,
    /// The kind of item it holds.
    pub kind: ItemKind,
}

/// Everything a mailbox holds, for comparisons.
#[derive(Debug, Clone)]
pub struct MailboxDump {
    /// The mailbox.
    pub mailbox: MailboxId,
    /// Its folders, parents first.
    pub folders: Vec<FolderDump>,
    /// Its items, by id.
    pub items: Vec<ItemDump>,
}

impl MailboxDump {
    /// The items in the folder at `path`.
    pub fn in_folder<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a ItemDump> + 'a {
        self.items.iter().filter(move |i| i.folder_path == path)
    }
}

/// A tenant in memory; cheap to clone (clones share the tenant). See the module docs.
#[derive(Clone, Default)]
pub struct MemoryTenant {
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for MemoryTenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.lock();
        f.debug_struct("MemoryTenant")
            .field("mailboxes", &s.mailboxes.len())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    /// By lower-cased address.
    mailboxes: BTreeMap<String, Mailbox>,
    /// Counter for ids, change keys and the change log.
    seq: u64,
    /// Bumped by [`MemoryTenant::expire_delta_links`]: older links are refused.
    generation: u64,
    links: HashMap<String, Link>,
    faults: HashMap<Op, VecDeque<Fault>>,
    calls: HashMap<Op, usize>,
    deny_writes: bool,
    inline_budget: Option<u64>,
    /// Kinds the app may not read, with the permission it lacks.
    denied_kinds: HashMap<ItemKind, &'static str>,
}

struct Mailbox {
    id: MailboxId,
    display_name: String,
    kind: MailboxKind,
    folders: Vec<Folder>,
    items: BTreeMap<ItemId, Item>,
    /// `(seq, folder, item)`: the item changed in (or left) the folder at `seq`.
    log: Vec<(u64, FolderId, ItemId)>,
}

#[derive(Clone)]
struct Folder {
    id: FolderId,
    parent: Option<FolderId>,
    name: String,
    well_known: Option<String>,
    kind: ItemKind,
    hidden: bool,
}

#[derive(Clone)]
struct Item {
    id: ItemId,
    folder: FolderId,
    kind: ItemKind,
    change_key: u64,
    last_modified: DateTime<Utc>,
    metadata: ItemMetadata,
    contents: Vec<(ContentKind, Bytes)>,
    spec: Option<MessageSpec>,
    restored: Option<Restored>,
    fail_content: bool,
}

#[derive(Clone)]
enum Link {
    /// Changes after `seq` in `folder`, valid while the tenant's generation is `generation`.
    Delta {
        address: String,
        folder: FolderId,
        seq: u64,
        generation: u64,
    },
    /// The rest of a round.
    Next {
        items: Vec<SourceItem>,
        removed: Vec<ItemId>,
        done: String,
    },
}

/// The standard folders of a new mailbox: `(name, well-known name)`.
const DEFAULT_FOLDERS: &[(&str, &str)] = &[
    ("Inbox", "inbox"),
    ("Sent Items", "sentitems"),
    ("Drafts", "drafts"),
    ("Archive", "archive"),
    ("Deleted Items", "deleteditems"),
];

impl MemoryTenant {
    /// An empty tenant.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock has failed already; the state is
        // still usable for its dumps.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A tenant of `mailboxes` licensed users (`user1@contoso.com` …) with
    /// `messages_per_mailbox` varied messages each (text and HTML, file, inline and item
    /// attachments, read and unread, flags, categories, a draft, a subfolder), plus one
    /// user without a mailbox (`nomailbox@contoso.com`). The same seed gives the same
    /// tenant.
    pub fn generate(seed: u64, mailboxes: usize, messages_per_mailbox: usize) -> Self {
        let tenant = Self::new();
        let mut rng = StdRng::seed_from_u64(seed);
        for u in 1..=mailboxes {
            let address = format!("user{u}@contoso.com");
            tenant.add_mailbox(&address, MailboxKind::Licensed);
            tenant
                .add_folder(&address, "Inbox", "Projects", ItemKind::Mail)
                .expect("invariant: inbox exists");
            for n in 0..messages_per_mailbox {
                let spec = generated_message(&mut rng, u, n);
                let folder = match n % 7 {
                    0..=2 => "inbox",
                    3 => "Inbox/Projects",
                    4 => "sentitems",
                    5 if n == 5 => "drafts",
                    _ => "archive",
                };
                let mut spec = spec;
                spec.is_draft = folder == "drafts";
                tenant
                    .add_message(&address, folder, spec)
                    .expect("invariant: folder exists");
            }
        }
        tenant.add_user_without_mailbox("nomailbox@contoso.com");
        tenant
    }

    /// Add a mailbox with the standard folders; returns its id (address plus a directory
    /// id, as a source reports it).
    pub fn add_mailbox(&self, address: &str, kind: MailboxKind) -> MailboxId {
        let mut s = self.lock();
        let n = s.next();
        let id =
            MailboxId::new(address).with_graph_user_id(format!("00000000-0000-4000-8000-{n:012}"));
        let mut mailbox = Mailbox {
            id: id.clone(),
            display_name: address.split('@').next().unwrap_or(address).to_owned(),
            kind,
            folders: Vec::new(),
            items: BTreeMap::new(),
            log: Vec::new(),
        };
        for (name, wk) in DEFAULT_FOLDERS {
            let fid = FolderId::new(format!("f-{}", s.next()));
            mailbox.folders.push(Folder {
                id: fid,
                parent: None,
                name: (*name).to_owned(),
                well_known: Some((*wk).to_owned()),
                kind: ItemKind::Mail,
                hidden: false,
            });
        }
        s.mailboxes.insert(id.address().to_owned(), mailbox);
        id
    }

    /// Add a directory user that has no Exchange mailbox.
    pub fn add_user_without_mailbox(&self, address: &str) {
        let id = self.add_mailbox(address, MailboxKind::NoMailbox);
        if let Some(m) = self.lock().mailboxes.get_mut(id.address()) {
            m.folders.clear();
        }
    }

    /// Add a folder under `parent` (a path like `Inbox` or `Inbox/Projects`, or a
    /// well-known name; empty for the top); returns its id.
    pub fn add_folder(
        &self,
        address: &str,
        parent: &str,
        name: &str,
        kind: ItemKind,
    ) -> Result<FolderId, String> {
        let mut s = self.lock();
        let id = FolderId::new(format!("f-{}", s.next()));
        let m = s.mailbox_mut(address)?;
        let parent = if parent.is_empty() {
            None
        } else {
            Some(m.folder_by_ref(parent)?.id.clone())
        };
        m.folders.push(Folder {
            id: id.clone(),
            parent,
            name: name.to_owned(),
            well_known: None,
            kind,
            hidden: false,
        });
        Ok(id)
    }

    /// Add a message built from `spec` to `folder` (a path or a well-known name).
    pub fn add_message(
        &self,
        address: &str,
        folder: &str,
        spec: MessageSpec,
    ) -> Result<ItemId, String> {
        let mime = Bytes::from(spec.to_mime());
        let metadata = mail_metadata(&spec);
        self.insert(
            address,
            folder,
            ItemKind::Mail,
            ItemMetadata::Mail(Box::new(metadata)),
            vec![(ContentKind::Mime, mime)],
            Some(spec),
        )
    }

    /// Add an item of another kind with the given representations (primary first).
    pub fn add_item(
        &self,
        address: &str,
        folder: &str,
        kind: ItemKind,
        title: &str,
        contents: Vec<(ContentKind, Bytes)>,
    ) -> Result<ItemId, String> {
        self.insert(
            address,
            folder,
            kind,
            ItemMetadata::Other {
                title: Some(title.to_owned()),
            },
            contents,
            None,
        )
    }

    fn insert(
        &self,
        address: &str,
        folder: &str,
        kind: ItemKind,
        metadata: ItemMetadata,
        contents: Vec<(ContentKind, Bytes)>,
        spec: Option<MessageSpec>,
    ) -> Result<ItemId, String> {
        self.insert_as(address, folder, kind, metadata, contents, spec, None)
    }

    /// Add an item with a given id (`config:messageRules` …) to the folder at path
    /// `folder`, with its stored representations.
    pub fn add_item_with_id(
        &self,
        address: &str,
        folder: &str,
        kind: ItemKind,
        id: &str,
        contents: Vec<(ContentKind, Bytes)>,
    ) -> Result<ItemId, String> {
        self.insert_as(
            address,
            folder,
            kind,
            ItemMetadata::Other {
                title: Some(id.to_owned()),
            },
            contents,
            None,
            Some(ItemId::new(id)),
        )
    }

    #[allow(clippy::too_many_arguments)] // insert's arguments and the id.
    fn insert_as(
        &self,
        address: &str,
        folder: &str,
        kind: ItemKind,
        metadata: ItemMetadata,
        contents: Vec<(ContentKind, Bytes)>,
        spec: Option<MessageSpec>,
        given: Option<ItemId>,
    ) -> Result<ItemId, String> {
        let mut s = self.lock();
        let n = s.next();
        let id = given.unwrap_or_else(|| ItemId::new(format!("AAMk-{n}")));
        let m = s.mailbox_mut(address)?;
        let folder = m.folder_by_ref(folder)?.id.clone();
        m.items.insert(
            id.clone(),
            Item {
                id: id.clone(),
                folder: folder.clone(),
                kind,
                change_key: n,
                last_modified: base_time() + Duration::seconds(i64::try_from(n).unwrap_or(0)),
                metadata,
                contents,
                spec,
                restored: None,
                fail_content: false,
            },
        );
        m.log.push((n, folder, id.clone()));
        Ok(id)
    }

    /// Change a message's metadata (read state, flag, categories …): a new change key, and
    /// the folder's delta reports it.
    pub fn update_message(
        &self,
        address: &str,
        id: &ItemId,
        change: impl FnOnce(&mut MailMetadata),
    ) -> Result<(), String> {
        let mut s = self.lock();
        let n = s.next();
        let m = s.mailbox_mut(address)?;
        let item = m.items.get_mut(id).ok_or("no such item")?;
        if let ItemMetadata::Mail(meta) = &mut item.metadata {
            change(meta);
        }
        item.change_key = n;
        item.last_modified += Duration::seconds(1);
        let folder = item.folder.clone();
        m.log.push((n, folder, id.clone()));
        Ok(())
    }

    /// Replace the content of an item (a draft edited, an event rescheduled): a new change
    /// key with new bytes.
    pub fn replace_content(
        &self,
        address: &str,
        id: &ItemId,
        contents: Vec<(ContentKind, Bytes)>,
    ) -> Result<(), String> {
        let mut s = self.lock();
        let n = s.next();
        let m = s.mailbox_mut(address)?;
        let item = m.items.get_mut(id).ok_or("no such item")?;
        item.contents = contents;
        item.change_key = n;
        let folder = item.folder.clone();
        m.log.push((n, folder, id.clone()));
        Ok(())
    }

    /// Move an item to another folder (its immutable id stays).
    pub fn move_item(&self, address: &str, id: &ItemId, folder: &str) -> Result<(), String> {
        let mut s = self.lock();
        let n = s.next();
        let m = s.mailbox_mut(address)?;
        let to = m.folder_by_ref(folder)?.id.clone();
        let item = m.items.get_mut(id).ok_or("no such item")?;
        let from = std::mem::replace(&mut item.folder, to.clone());
        item.change_key = n;
        m.log.push((n, from, id.clone()));
        m.log.push((n, to, id.clone()));
        Ok(())
    }

    /// Delete an item.
    pub fn delete_item(&self, address: &str, id: &ItemId) -> Result<(), String> {
        let mut s = self.lock();
        let n = s.next();
        let m = s.mailbox_mut(address)?;
        let item = m.items.remove(id).ok_or("no such item")?;
        m.log.push((n, item.folder, id.clone()));
        Ok(())
    }

    /// Make every read of an item's content fail (or work again).
    pub fn set_content_failure(
        &self,
        address: &str,
        id: &ItemId,
        fail: bool,
    ) -> Result<(), String> {
        let mut s = self.lock();
        let m = s.mailbox_mut(address)?;
        m.items.get_mut(id).ok_or("no such item")?.fail_content = fail;
        Ok(())
    }

    /// Invalidate every delta link handed out so far (as Exchange does after a while).
    pub fn expire_delta_links(&self) {
        let mut s = self.lock();
        s.generation += 1;
    }

    /// Fail the next `times` calls of `op` with `fault`.
    pub fn fail_next(&self, op: Op, times: usize, fault: Fault) {
        let mut s = self.lock();
        let queue = s.faults.entry(op).or_default();
        queue.extend(std::iter::repeat_n(fault, times));
    }

    /// Drop every scripted fault not used yet.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Refuse reading `kind` for lack of `permission` ([`MailSource::kind_access`] names
    /// it; listing or reading such folders is refused with it).
    pub fn deny_kind(&self, kind: ItemKind, permission: &'static str) {
        self.lock().denied_kinds.insert(kind, permission);
    }

    /// Refuse every write (as an app without `Mail.ReadWrite`).
    pub fn deny_writes(&self, deny: bool) {
        self.lock().deny_writes = deny;
    }

    /// The largest attachment total a create may carry (default 1 MiB).
    pub fn set_inline_attachment_budget(&self, bytes: u64) {
        self.lock().inline_budget = Some(bytes);
    }

    /// How often `op` was called.
    pub fn calls(&self, op: Op) -> usize {
        self.lock().calls.get(&op).copied().unwrap_or(0)
    }

    /// The addresses of the mailboxes (users without a mailbox left out).
    pub fn addresses(&self) -> Vec<String> {
        self.lock()
            .mailboxes
            .values()
            .filter(|m| m.kind != MailboxKind::NoMailbox)
            .map(|m| m.id.address().to_owned())
            .collect()
    }

    /// Every directory user with the kind of mailbox it has (users without a mailbox
    /// included).
    pub fn users(&self) -> Vec<(String, MailboxKind)> {
        self.lock()
            .mailboxes
            .values()
            .map(|m| (m.id.address().to_owned(), m.kind))
            .collect()
    }

    /// Everything a mailbox holds.
    pub fn dump(&self, address: &str) -> Result<MailboxDump, String> {
        let s = self.lock();
        let m = s.mailbox(address)?;
        let paths: HashMap<&FolderId, String> = m
            .folders
            .iter()
            .map(|f| (&f.id, m.path(f).join("/")))
            .collect();
        Ok(MailboxDump {
            mailbox: m.id.clone(),
            folders: m
                .folders
                .iter()
                .map(|f| FolderDump {
                    id: f.id.clone(),
                    path: paths[&f.id].clone(),
                    kind: f.kind,
                })
                .collect(),
            items: m
                .items
                .values()
                .map(|i| ItemDump {
                    id: i.id.clone(),
                    kind: i.kind,
                    folder_path: paths.get(&i.folder).cloned().unwrap_or_default(),
                    change_key: change_key(i.change_key),
                    metadata: i.metadata.clone(),
                    contents: i.contents.clone(),
                    spec: i.spec.clone(),
                    restored: i.restored.clone(),
                })
                .collect(),
        })
    }

    /// Count the call and take the next scripted fault for `op`, if any.
    fn enter(&self, op: Op) -> Option<Fault> {
        let mut s = self.lock();
        *s.calls.entry(op).or_default() += 1;
        s.faults.get_mut(&op).and_then(VecDeque::pop_front)
    }
}

impl State {
    fn next(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn find(&self, address_or_id: &str) -> Option<&Mailbox> {
        let wanted = address_or_id.trim().to_lowercase();
        self.mailboxes.get(&wanted).or_else(|| {
            self.mailboxes
                .values()
                .find(|m| m.id.graph_user_id() == Some(wanted.as_str()))
        })
    }

    fn mailbox(&self, address: &str) -> Result<&Mailbox, String> {
        self.find(address)
            .ok_or_else(|| format!("no mailbox {address}"))
    }

    fn mailbox_mut(&mut self, address: &str) -> Result<&mut Mailbox, String> {
        let key = self.mailbox(address)?.id.address().to_owned();
        self.mailboxes
            .get_mut(&key)
            .ok_or_else(|| format!("no mailbox {address}"))
    }

    fn link(&mut self, link: Link) -> String {
        let token = format!(
            "memory-link-{}-{}",
            self.next(),
            uuid::Uuid::new_v4().simple()
        );
        self.links.insert(token.clone(), link);
        token
    }
}

impl State {
    /// What a delta call reports before paging: the items and removed ids of the round
    /// (or of its rest), and the link that ends it.
    fn round(
        &mut self,
        address: &str,
        folder: &FolderId,
        cursor: &DeltaCursor,
    ) -> Result<(Vec<SourceItem>, Vec<ItemId>, String), SourceError> {
        let (generation, now) = (self.generation, self.seq);
        let since = match cursor {
            DeltaCursor::Initial => None,
            // Links stay valid after use, as Graph's do: status reads a link and throws
            // the new one away, so the next backup starts from the same link again; a
            // retried page asks for the same next link twice.
            DeltaCursor::Link(token) => match self.links.get(token).cloned() {
                None => return Err(SourceError::DeltaExpired),
                Some(Link::Next {
                    items,
                    removed,
                    done,
                }) => return Ok((items, removed, done)),
                Some(Link::Delta {
                    address: link_address,
                    folder: link_folder,
                    seq,
                    generation: link_generation,
                }) => {
                    // A link of another folder or mailbox is as useless as an old one.
                    if link_generation != generation
                        || &link_folder != folder
                        || link_address != address
                    {
                        return Err(SourceError::DeltaExpired);
                    }
                    Some(seq)
                }
            },
        };
        let mailbox = self
            .find(address)
            .ok_or_else(|| SourceError::MailboxNotFound(address.to_owned()))?;
        if !mailbox.folders.iter().any(|f| &f.id == folder) {
            return Err(SourceError::FolderGone);
        }
        let (mut items, mut removed) = (Vec::new(), Vec::new());
        match since {
            // A full round: every item in the folder now.
            None => items.extend(
                mailbox
                    .items
                    .values()
                    .filter(|i| &i.folder == folder)
                    .map(Mailbox::source_item),
            ),
            // Every item the log shows touching the folder since the link: still there
            // (new, changed, moved in) or gone (deleted, moved out).
            Some(since) => {
                let mut touched: Vec<&ItemId> = mailbox
                    .log
                    .iter()
                    .filter(|(n, f, _)| *n > since && f == folder)
                    .map(|(_, _, id)| id)
                    .collect();
                touched.sort();
                touched.dedup();
                for id in touched {
                    match mailbox.items.get(id) {
                        Some(item) if &item.folder == folder => {
                            items.push(Mailbox::source_item(item));
                        }
                        _ => removed.push(id.clone()),
                    }
                }
            }
        }
        let done = self.link(Link::Delta {
            address: address.to_owned(),
            folder: folder.clone(),
            seq: now,
            generation,
        });
        Ok((items, removed, done))
    }

    /// The first `page_size` entries as a page; the rest behind a next link.
    fn page(
        &mut self,
        mut items: Vec<SourceItem>,
        mut removed: Vec<ItemId>,
        done: String,
        page_size: u32,
    ) -> DeltaPage {
        let size = usize::try_from(page_size.max(1)).unwrap_or(usize::MAX);
        if items.len() + removed.len() <= size {
            return DeltaPage {
                items,
                removed,
                next: DeltaNext::Done(done),
            };
        }
        let rest_items = if items.len() > size {
            items.split_off(size)
        } else {
            Vec::new()
        };
        let room = size.saturating_sub(items.len());
        let rest_removed = if removed.len() > room {
            removed.split_off(room)
        } else {
            Vec::new()
        };
        let next = self.link(Link::Next {
            items: rest_items,
            removed: rest_removed,
            done,
        });
        DeltaPage {
            items,
            removed,
            next: DeltaNext::More(next),
        }
    }
}

impl Mailbox {
    /// One representation of an item, as a single read (`open_content`) and a batch read
    /// (`fetch_batch`) both answer it: an unknown item, an item scripted to fail its
    /// content and a missing representation are that item's own errors.
    fn content(&self, id: &ItemId, content: ContentKind) -> Result<Bytes, SourceError> {
        let stored = self
            .items
            .get(id)
            .ok_or_else(|| SourceError::Item(format!("item {id} not found")))?;
        if stored.fail_content {
            return Err(SourceError::Item(format!(
                "the content of item {id} cannot be read"
            )));
        }
        stored
            .contents
            .iter()
            .find(|(k, _)| *k == content)
            .map(|(_, b)| b.clone())
            .ok_or_else(|| SourceError::Item(format!("item {id} has no {content:?}")))
    }

    fn path(&self, folder: &Folder) -> Vec<String> {
        let mut path = vec![folder.name.clone()];
        let mut parent = folder.parent.as_ref();
        while let Some(p) = parent {
            match self.folders.iter().find(|f| &f.id == p) {
                Some(f) => {
                    path.push(f.name.clone());
                    parent = f.parent.as_ref();
                }
                None => break,
            }
        }
        path.reverse();
        path
    }

    /// A folder by id, well-known name or path (`Inbox/Projects`, case-insensitive).
    fn folder_by_ref(&self, reference: &str) -> Result<&Folder, String> {
        let lower = reference.trim_matches('/').to_lowercase();
        self.folders
            .iter()
            .find(|f| f.id.as_str() == reference)
            .or_else(|| {
                self.folders
                    .iter()
                    .find(|f| f.well_known.as_deref() == Some(lower.as_str()))
            })
            .or_else(|| {
                self.folders
                    .iter()
                    .find(|f| self.path(f).join("/").to_lowercase() == lower)
            })
            .ok_or_else(|| format!("no folder {reference}"))
    }

    fn source_item(item: &Item) -> SourceItem {
        SourceItem {
            kind: item.kind,
            id: item.id.clone(),
            change_key: Some(change_key(item.change_key)),
            folder: Some(item.folder.clone()),
            last_modified: Some(item.last_modified),
            contents: item.contents.iter().map(|(k, _)| *k).collect(),
            metadata: item.metadata.clone(),
        }
    }
}

fn change_key(n: u64) -> String {
    format!("CQAAAB{n:08}")
}

fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("invariant: fixed valid date")
}

fn mail_metadata(spec: &MessageSpec) -> MailMetadata {
    MailMetadata {
        internet_message_id: Some(format!("<{}>", spec.internet_message_id)),
        conversation_id: None,
        subject: Some(spec.subject.clone()),
        from: Some(spec.from.clone()),
        to: spec.to.clone(),
        cc: spec.cc.clone(),
        bcc: Vec::new(),
        received: Some(spec.received),
        sent: Some(spec.sent),
        is_read: spec.is_read,
        is_draft: spec.is_draft,
        importance: spec.importance,
        flag: spec.flag,
        categories: spec.categories.clone(),
        has_attachments: spec.has_attachments(),
    }
}

/// A restored message as a spec, so the tenant can serve its MIME like any other.
fn spec_of(message: &RestoreMessage, attachments: &[RestoreAttachment]) -> MessageSpec {
    let mut spec = MessageSpec::text(&message.subject, "");
    spec.body = match &message.body {
        RestoreBody::Text(t) => BodySpec::Text(t.clone()),
        RestoreBody::Html(h) => BodySpec::Html(h.clone()),
    };
    if let Some(from) = &message.from {
        spec.from = from.clone();
    }
    spec.to.clone_from(&message.to);
    spec.cc.clone_from(&message.cc);
    spec.sent = message.sent.unwrap_or_else(base_time);
    spec.received = message.received.unwrap_or(spec.sent);
    if let Some(imid) = &message.internet_message_id {
        imid.trim_start_matches('<')
            .trim_end_matches('>')
            .clone_into(&mut spec.internet_message_id);
    }
    spec.is_read = message.is_read;
    spec.is_draft = message.is_draft;
    spec.flag = message.flag;
    spec.importance = message.importance;
    spec.categories.clone_from(&message.categories);
    spec.attachments = attachments
        .iter()
        .map(|a| match a {
            RestoreAttachment::File {
                name,
                content_type,
                bytes,
                is_inline,
                content_id,
            } => AttachmentSpec::File {
                name: name.clone(),
                content_type: content_type
                    .clone()
                    .unwrap_or_else(|| "application/octet-stream".into()),
                bytes: bytes.to_vec(),
                inline: *is_inline,
                content_id: content_id.clone(),
            },
            RestoreAttachment::Item { name, message, .. } => AttachmentSpec::Message {
                name: name.clone(),
                message: Box::new(spec_of(message, &[])),
            },
        })
        .collect();
    spec
}

/// A varied message for [`MemoryTenant::generate`].
fn generated_message(rng: &mut StdRng, user: usize, n: usize) -> MessageSpec {
    let mut spec = MessageSpec::text(
        &format!("Message {n} for user {user}"),
        &format!("Body of message {n}.\r\nSecond line."),
    );
    spec.internet_message_id = format!("m{n}.u{user}@gen.contoso.com");
    spec.sent = base_time() + Duration::minutes(i64::try_from(n).unwrap_or(0) * 37);
    spec.received = spec.sent + Duration::seconds(3);
    spec.is_read = rng.gen_bool(0.6);
    if n % 5 == 1 {
        spec.flag = FlagStatus::Flagged;
    }
    if n % 4 == 2 {
        spec.categories = vec!["Blue category".into()];
    }
    if n % 6 == 3 {
        spec.importance = Importance::High;
    }
    let mut bytes = |len: usize| (0..len).map(|_| rng.r#gen::<u8>()).collect::<Vec<u8>>();
    match n % 5 {
        1 => {
            let len = 200 + n * 13;
            spec.attachments.push(AttachmentSpec::file(
                "report.pdf",
                "application/pdf",
                bytes(len),
            ));
        }
        2 => {
            spec.body = BodySpec::Html(format!(
                "<p>Logo below</p><img src=\"cid:logo{n}@contoso.com\">"
            ));
            spec.attachments.push(AttachmentSpec::inline_image(
                "logo.png",
                &format!("logo{n}@contoso.com"),
                bytes(300),
            ));
        }
        3 => {
            let mut inner = MessageSpec::text("Original message", "Forwarded text");
            inner.internet_message_id = format!("inner{n}.u{user}@gen.contoso.com");
            spec.attachments.push(AttachmentSpec::Message {
                name: "Original message".into(),
                message: Box::new(inner),
            });
        }
        _ => {}
    }
    spec.to.push(EmailAddress {
        name: format!("User {user}"),
        address: format!("user{user}@contoso.com"),
    });
    spec
}

/// A content stream over bytes held in memory, in [`CHUNK`]-sized pieces.
struct MemoryStream {
    bytes: Bytes,
    at: usize,
}

#[async_trait]
impl ContentStream for MemoryStream {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, SourceError> {
        if self.at >= self.bytes.len() {
            return Ok(None);
        }
        let end = (self.at + CHUNK).min(self.bytes.len());
        let chunk = self.bytes.slice(self.at..end);
        self.at = end;
        Ok(Some(chunk))
    }
}

fn source_fault(fault: &Fault) -> SourceError {
    match fault {
        Fault::Denied(permission) => SourceError::PermissionDenied {
            permission: (*permission).to_owned(),
            request_id: "memory".into(),
        },
        Fault::Unavailable | Fault::Unsent | Fault::LoseAnswer => {
            SourceError::Unavailable("scripted fault of the memory tenant".into())
        }
    }
}

fn target_fault(fault: &Fault) -> TargetError {
    match fault {
        Fault::Denied(permission) => TargetError::PermissionDenied {
            permission: (*permission).to_owned(),
            request_id: "memory".into(),
        },
        Fault::Unavailable => {
            TargetError::Unavailable("scripted fault of the memory tenant".into())
        }
        Fault::Unsent | Fault::LoseAnswer => {
            TargetError::OutcomeUnknown("scripted fault: the answer was lost".into())
        }
    }
}

/// A read's fault: any fault fails it before it does anything.
fn read_fault(fault: Option<Fault>) -> Result<(), TargetError> {
    fault.map_or(Ok(()), |f| Err(target_fault(&f)))
}

/// A write's fault: `Ok(true)` means "do the write, then report the lost answer".
fn write_fault(fault: Option<Fault>) -> Result<bool, TargetError> {
    match fault {
        None => Ok(false),
        Some(Fault::LoseAnswer) => Ok(true),
        Some(f) => Err(target_fault(&f)),
    }
}

fn lost() -> TargetError {
    TargetError::OutcomeUnknown("scripted fault: the write happened, its answer was lost".into())
}

#[async_trait]
impl MailSource for MemoryTenant {
    async fn list_mailboxes(&self) -> Result<Vec<SourceMailbox>, SourceError> {
        if let Some(f) = self.enter(Op::ListMailboxes) {
            return Err(source_fault(&f));
        }
        let s = self.lock();
        Ok(s.mailboxes.values().map(source_mailbox).collect())
    }

    async fn resolve_mailbox(&self, address_or_id: &str) -> Result<SourceMailbox, SourceError> {
        if let Some(f) = self.enter(Op::ResolveMailbox) {
            return Err(source_fault(&f));
        }
        let s = self.lock();
        s.find(address_or_id)
            .map(source_mailbox)
            .ok_or_else(|| SourceError::MailboxNotFound(address_or_id.to_owned()))
    }

    async fn list_folders(
        &self,
        mailbox: &SourceMailbox,
        opts: FolderOptions,
    ) -> Result<Vec<SourceFolder>, SourceError> {
        if let Some(f) = self.enter(Op::ListFolders) {
            return Err(source_fault(&f));
        }
        let s = self.lock();
        let m = s
            .find(mailbox.address())
            .ok_or_else(|| SourceError::MailboxNotFound(mailbox.address().to_owned()))?;
        if m.kind == MailboxKind::NoMailbox {
            return Err(SourceError::MailboxNotEnabled(mailbox.address().to_owned()));
        }
        if let Some((_, permission)) = s
            .denied_kinds
            .iter()
            .find(|(k, _)| opts.kinds.contains(**k))
        {
            return Err(SourceError::PermissionDenied {
                permission: (*permission).to_owned(),
                request_id: "memory".into(),
            });
        }
        Ok(m.folders
            .iter()
            .filter(|f| opts.include_hidden || !f.hidden)
            .filter(|f| opts.kinds.contains(f.kind))
            .map(|f| SourceFolder {
                id: f.id.clone(),
                parent_id: f.parent.clone(),
                display_name: f.name.clone(),
                path: m.path(f),
                well_known: f.well_known.clone(),
                total_items: m.items.values().filter(|i| i.folder == f.id).count() as u64,
                hidden: f.hidden,
                kind: f.kind,
                stale_count: false,
            })
            .collect())
    }

    async fn delta_page(
        &self,
        mailbox: &SourceMailbox,
        folder: &FolderId,
        cursor: &DeltaCursor,
        page_size: u32,
    ) -> Result<DeltaPage, SourceError> {
        if let Some(f) = self.enter(Op::DeltaPage) {
            return Err(source_fault(&f));
        }
        let mut state = self.lock();
        let (items, removed, done) = state.round(mailbox.address(), folder, cursor)?;
        Ok(state.page(items, removed, done, page_size))
    }

    async fn open_content(
        &self,
        mailbox: &SourceMailbox,
        item: &SourceItem,
        content: ContentKind,
    ) -> Result<Box<dyn ContentStream>, SourceError> {
        if let Some(f) = self.enter(Op::OpenContent) {
            return Err(match f {
                Fault::Denied(_) => source_fault(&f),
                _ => SourceError::Item("scripted fault of the memory tenant".into()),
            });
        }
        let s = self.lock();
        let m = s
            .find(mailbox.address())
            .ok_or_else(|| SourceError::MailboxNotFound(mailbox.address().to_owned()))?;
        let bytes = m.content(&item.id, content)?;
        Ok(Box::new(MemoryStream { bytes, at: 0 }))
    }

    /// Export streams come 20 at a time, like Graph's `exportItems`.
    fn batch_limit(&self, content: ContentKind) -> usize {
        if content == ContentKind::Export {
            EXPORT_BATCH
        } else {
            1
        }
    }

    async fn fetch_batch(
        &self,
        mailbox: &SourceMailbox,
        items: &[SourceItem],
        content: ContentKind,
    ) -> Result<Vec<Result<Bytes, SourceError>>, SourceError> {
        if let Some(f) = self.enter(Op::FetchBatch) {
            return Err(source_fault(&f));
        }
        if items.len() > self.batch_limit(content) {
            return Err(SourceError::Other(format!(
                "{} items in one batch; the limit is {}",
                items.len(),
                self.batch_limit(content)
            )));
        }
        let s = self.lock();
        let m = s
            .find(mailbox.address())
            .ok_or_else(|| SourceError::MailboxNotFound(mailbox.address().to_owned()))?;
        Ok(items
            .iter()
            .map(|item| m.content(&item.id, content))
            .collect())
    }

    async fn kind_access(
        &self,
        _mailbox: &SourceMailbox,
        kind: ItemKind,
    ) -> Result<Option<String>, SourceError> {
        Ok(self.lock().denied_kinds.get(&kind).map(|p| (*p).to_owned()))
    }
}

fn source_mailbox(m: &Mailbox) -> SourceMailbox {
    SourceMailbox {
        id: m.id.clone(),
        display_name: m.display_name.clone(),
        kind: m.kind,
        account_enabled: Some(true),
        created: Some(base_time()),
    }
}

impl MemoryTenant {
    /// The target mailbox, refusing one that is missing or has no mailbox.
    fn target_mailbox<'a>(s: &'a State, mailbox: &MailboxId) -> Result<&'a Mailbox, TargetError> {
        let m = s
            .find(mailbox.address())
            .ok_or_else(|| TargetError::MailboxNotFound(mailbox.address().to_owned()))?;
        if m.kind == MailboxKind::NoMailbox {
            return Err(TargetError::MailboxNotEnabled(mailbox.address().to_owned()));
        }
        Ok(m)
    }

    /// Common start of a write: count, fault, permission. `Ok(true)`: lose the answer.
    fn begin_write(&self, op: Op) -> Result<bool, TargetError> {
        let lose = write_fault(self.enter(op))?;
        if self.lock().deny_writes {
            return Err(denied());
        }
        Ok(lose)
    }

    /// Re-render a restored message's MIME after its attachments changed.
    fn rerender(item: &mut Item) {
        if let Some(r) = &item.restored {
            let mime = Bytes::from(spec_of(&r.message, &r.attachments).to_mime());
            item.contents = vec![(ContentKind::Mime, mime)];
        }
    }

    /// Apply `change` to a restored item and log it for the source view.
    fn change_restored(
        &self,
        mailbox: &MailboxId,
        item: &ItemId,
        change: impl FnOnce(&mut Restored),
    ) -> Result<(), TargetError> {
        let mut s = self.lock();
        Self::target_mailbox(&s, mailbox)?;
        let n = s.next();
        let key = mailbox.address().to_owned();
        let m = s
            .mailboxes
            .get_mut(&key)
            .ok_or_else(|| TargetError::MailboxNotFound(key.clone()))?;
        let stored = m
            .items
            .get_mut(item)
            .ok_or_else(|| TargetError::NotFound(format!("item {item}")))?;
        let restored = stored.restored.as_mut().ok_or_else(|| {
            TargetError::Rejected(format!("item {item} was not created by a restore"))
        })?;
        change(restored);
        Self::rerender(stored);
        stored.change_key = n;
        let folder = stored.folder.clone();
        m.log.push((n, folder, item.clone()));
        Ok(())
    }
}

fn denied() -> TargetError {
    TargetError::PermissionDenied {
        permission: "Mail.ReadWrite".into(),
        request_id: "memory".into(),
    }
}

#[async_trait]
impl MailTarget for MemoryTenant {
    async fn resolve_mailbox(&self, address_or_id: &str) -> Result<MailboxId, TargetError> {
        read_fault(self.enter(Op::ResolveTarget))?;
        let s = self.lock();
        let m = s
            .find(address_or_id)
            .ok_or_else(|| TargetError::MailboxNotFound(address_or_id.to_owned()))?;
        if m.kind == MailboxKind::NoMailbox {
            return Err(TargetError::MailboxNotEnabled(address_or_id.to_owned()));
        }
        Ok(m.id.clone())
    }

    async fn check_write_access(&self, mailbox: &MailboxId) -> Result<(), TargetError> {
        // The probe writes nothing, so a lost answer is just a failed probe.
        read_fault(self.enter(Op::CheckWriteAccess))?;
        let s = self.lock();
        Self::target_mailbox(&s, mailbox)?;
        if s.deny_writes {
            return Err(denied());
        }
        Ok(())
    }

    async fn well_known_folder(
        &self,
        mailbox: &MailboxId,
        well_known: &str,
    ) -> Result<Option<TargetFolder>, TargetError> {
        read_fault(self.enter(Op::WellKnownFolder))?;
        let s = self.lock();
        let m = Self::target_mailbox(&s, mailbox)?;
        let wanted = well_known.to_lowercase();
        Ok(m.folders
            .iter()
            .find(|f| f.well_known.as_deref() == Some(wanted.as_str()))
            .map(|f| TargetFolder {
                id: f.id.clone(),
                display_name: f.name.clone(),
            }))
    }

    async fn ensure_folder(
        &self,
        mailbox: &MailboxId,
        parent: Option<&FolderId>,
        name: &str,
    ) -> Result<TargetFolder, TargetError> {
        let lose = self.begin_write(Op::EnsureFolder)?;
        let mut s = self.lock();
        Self::target_mailbox(&s, mailbox)?;
        let id = FolderId::new(format!("f-{}", s.next()));
        let key = mailbox.address().to_owned();
        let m = s
            .mailboxes
            .get_mut(&key)
            .ok_or_else(|| TargetError::MailboxNotFound(key.clone()))?;
        if let Some(p) = parent
            && !m.folders.iter().any(|f| &f.id == p)
        {
            return Err(TargetError::NotFound(format!("folder {p}")));
        }
        let lower = name.to_lowercase();
        if let Some(f) = m
            .folders
            .iter()
            .find(|f| f.parent.as_ref() == parent && f.name.to_lowercase() == lower)
        {
            return Ok(TargetFolder {
                id: f.id.clone(),
                display_name: f.name.clone(),
            });
        }
        m.folders.push(Folder {
            id: id.clone(),
            parent: parent.cloned(),
            name: name.to_owned(),
            well_known: None,
            kind: ItemKind::Mail,
            hidden: false,
        });
        if lose {
            return Err(lost());
        }
        Ok(TargetFolder {
            id,
            display_name: name.to_owned(),
        })
    }

    async fn list_items(
        &self,
        mailbox: &MailboxId,
        folder: &FolderId,
    ) -> Result<Vec<TargetItem>, TargetError> {
        read_fault(self.enter(Op::ListItems))?;
        let s = self.lock();
        let m = Self::target_mailbox(&s, mailbox)?;
        if !m.folders.iter().any(|f| &f.id == folder) {
            return Err(TargetError::NotFound(format!("folder {folder}")));
        }
        Ok(m.items
            .values()
            .filter(|i| &i.folder == folder)
            .map(|i| TargetItem {
                id: i.id.clone(),
                internet_message_id: match &i.metadata {
                    ItemMetadata::Mail(meta) => meta.internet_message_id.clone(),
                    ItemMetadata::Other { .. } => None,
                },
                source_id: i.restored.as_ref().map(|r| r.mark.source_id.clone()),
                complete: i.restored.as_ref().is_some_and(|r| r.complete),
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
        let lose = self.begin_write(Op::CreateMessage)?;
        let budget = self.inline_attachment_budget();
        let inline: u64 = inline_attachments.iter().map(RestoreAttachment::size).sum();
        if inline > budget {
            return Err(TargetError::Rejected(format!(
                "{inline} bytes of attachments in the create request; the limit is {budget}"
            )));
        }
        let mut s = self.lock();
        Self::target_mailbox(&s, mailbox)?;
        let n = s.next();
        let key = mailbox.address().to_owned();
        let m = s
            .mailboxes
            .get_mut(&key)
            .ok_or_else(|| TargetError::MailboxNotFound(key.clone()))?;
        if !m.folders.iter().any(|f| &f.id == folder) {
            return Err(TargetError::NotFound(format!("folder {folder}")));
        }
        let id = ItemId::new(format!("AAMk-{n}"));
        let spec = spec_of(message, inline_attachments);
        let mut item = Item {
            id: id.clone(),
            folder: folder.clone(),
            kind: ItemKind::Mail,
            change_key: n,
            last_modified: base_time(),
            metadata: ItemMetadata::Mail(Box::new(MailMetadata {
                internet_message_id: message.internet_message_id.clone(),
                conversation_id: None,
                subject: Some(message.subject.clone()),
                from: message.from.clone(),
                to: message.to.clone(),
                cc: message.cc.clone(),
                bcc: message.bcc.clone(),
                received: message.received,
                sent: message.sent,
                is_read: message.is_read,
                is_draft: message.is_draft,
                importance: message.importance,
                flag: message.flag,
                categories: message.categories.clone(),
                has_attachments: spec.has_attachments(),
            })),
            contents: Vec::new(),
            spec: None,
            restored: Some(Restored {
                message: message.clone(),
                attachments: inline_attachments.to_vec(),
                mark: mark.clone(),
                complete,
            }),
            fail_content: false,
        };
        Self::rerender(&mut item);
        m.items.insert(id.clone(), item);
        m.log.push((n, folder.clone(), id.clone()));
        if lose {
            return Err(lost());
        }
        Ok(id)
    }

    async fn list_attachments(
        &self,
        mailbox: &MailboxId,
        item: &ItemId,
    ) -> Result<Vec<TargetAttachment>, TargetError> {
        read_fault(self.enter(Op::ListAttachments))?;
        let s = self.lock();
        let m = Self::target_mailbox(&s, mailbox)?;
        let stored = m
            .items
            .get(item)
            .ok_or_else(|| TargetError::NotFound(format!("item {item}")))?;
        Ok(stored
            .restored
            .iter()
            .flat_map(|r| r.attachments.iter())
            .map(|a| TargetAttachment {
                name: a.name().to_owned(),
                is_inline: matches!(
                    a,
                    RestoreAttachment::File {
                        is_inline: true,
                        ..
                    }
                ),
            })
            .collect())
    }

    async fn add_attachment(
        &self,
        mailbox: &MailboxId,
        item: &ItemId,
        attachment: &RestoreAttachment,
    ) -> Result<(), TargetError> {
        let lose = self.begin_write(Op::AddAttachment)?;
        self.change_restored(mailbox, item, |r| r.attachments.push(attachment.clone()))?;
        if lose {
            return Err(lost());
        }
        Ok(())
    }

    async fn mark_complete(
        &self,
        mailbox: &MailboxId,
        item: &ItemId,
        message: &RestoreMessage,
    ) -> Result<(), TargetError> {
        let lose = self.begin_write(Op::MarkComplete)?;
        self.change_restored(mailbox, item, |r| {
            r.message.flag = message.flag;
            r.message.categories.clone_from(&message.categories);
            r.complete = true;
        })?;
        {
            let mut s = self.lock();
            if let Some(stored) = s
                .mailboxes
                .get_mut(mailbox.address())
                .and_then(|m| m.items.get_mut(item))
                && let ItemMetadata::Mail(meta) = &mut stored.metadata
            {
                meta.flag = message.flag;
                meta.categories.clone_from(&message.categories);
            }
        }
        if lose {
            return Err(lost());
        }
        Ok(())
    }

    fn inline_attachment_budget(&self) -> u64 {
        self.lock().inline_budget.unwrap_or(1024 * 1024)
    }
}
