//! [`GraphClient`] as the core's [`MailSource`] port.
//!
//! This is the one place where Graph's view (its DTOs, its error variants) is translated
//! into the core's: errors are classified once here, so the backup service can tell a
//! failed item (record it, go on) from a failed run (stop).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use atlas_core::model::{
    ContentKind, EmailAddress as CoreAddress, FlagStatus, FolderBookmark, FolderId, Importance,
    ItemKind,
};
use atlas_core::ports::{
    ContentStream, DeltaCursor, DeltaNext as CoreNext, DeltaPage as CorePage, FolderListing,
    FolderOptions, MailMetadata, MailSource, MailboxKind as CoreKind, SourceError, SourceFolder,
    SourceItem, SourceMailbox,
};
use bytes::Bytes;

use crate::api::folders::{FolderTreeOptions, FolderTreeState};
use crate::api::mailbox::{ExchangeMailboxId, MAX_EXPORT_ITEMS};
use crate::api::messages::{DeltaLink, DeltaNext, DeltaStart, EmailAddress, Message, Recipient};
use crate::api::users::{ListUsersOptions, MailboxKind, User};
use crate::client::{ByteStream, GraphClient};
use crate::cost::for_kind;
use crate::error::GraphError;

/// Translate a Graph error met while enumerating or reading a whole mailbox.
pub(crate) fn run_error(e: GraphError) -> SourceError {
    match e {
        GraphError::Auth(a) => SourceError::Auth(a.to_string()),
        GraphError::PermissionDenied {
            permission,
            request_id,
            ..
        } => SourceError::PermissionDenied {
            permission: permission.to_owned(),
            request_id: request_id.unwrap_or_else(|| "-".into()),
        },
        GraphError::MailboxNotFound { mailbox, .. } => SourceError::MailboxNotFound(mailbox),
        GraphError::MailboxNotEnabled { mailbox, .. } => SourceError::MailboxNotEnabled(mailbox),
        GraphError::SyncStateNotFound { .. } => SourceError::DeltaExpired,
        GraphError::NotFound { .. } => SourceError::FolderGone,
        e @ (GraphError::Throttled { .. }
        | GraphError::Timeout { .. }
        | GraphError::Network { .. }
        | GraphError::Server { .. }) => SourceError::Unavailable(e.to_string()),
        // Their kind survives the port: the CLI's hint names the setting to check.
        e @ GraphError::Dns { .. } => SourceError::Dns(e.to_string()),
        e @ GraphError::Tls { .. } => SourceError::Tls(e.to_string()),
        e => SourceError::Other(e.to_string()),
    }
}

/// Translate a Graph error met while reading one message: anything that is not about the
/// whole run (sign-in, permission, mailbox, an endpoint that cannot be reached at all) is
/// that item's problem.
pub(crate) fn item_error(e: GraphError) -> SourceError {
    match e {
        e @ (GraphError::Auth(_)
        | GraphError::PermissionDenied { .. }
        | GraphError::MailboxNotFound { .. }
        | GraphError::MailboxNotEnabled { .. }
        | GraphError::Dns { .. }
        | GraphError::Tls { .. }) => run_error(e),
        e => SourceError::Item(e.to_string()),
    }
}

fn address(a: &EmailAddress) -> CoreAddress {
    CoreAddress {
        name: a.name.clone().unwrap_or_default(),
        address: a.address.clone().unwrap_or_default(),
    }
}

fn recipients(list: &[Recipient]) -> Vec<CoreAddress> {
    list.iter().map(|r| address(&r.email_address)).collect()
}

/// A delta-reported message as the core's item. The ids are already the core's types
/// (the wire DTOs deserialize into them), so this only reshapes.
fn message(m: Message) -> SourceItem {
    let mut item = SourceItem::mail(
        m.id,
        MailMetadata {
            internet_message_id: m.internet_message_id,
            conversation_id: m.conversation_id,
            subject: m.subject,
            from: m.from.as_ref().map(|r| address(&r.email_address)),
            to: recipients(&m.to_recipients),
            cc: recipients(&m.cc_recipients),
            bcc: recipients(&m.bcc_recipients),
            received: m.received_date_time,
            sent: m.sent_date_time,
            is_read: m.is_read.unwrap_or(false),
            is_draft: m.is_draft.unwrap_or(false),
            importance: match m.importance.as_deref() {
                Some("low") => Importance::Low,
                Some("high") => Importance::High,
                _ => Importance::Normal,
            },
            flag: match m.flag.and_then(|f| f.flag_status).as_deref() {
                Some("flagged") => FlagStatus::Flagged,
                Some("complete") => FlagStatus::Complete,
                _ => FlagStatus::NotFlagged,
            },
            categories: m.categories,
            has_attachments: m.has_attachments.unwrap_or(false),
        },
    );
    item.change_key = m.change_key;
    item.folder = m.parent_folder_id;
    item.last_modified = m.last_modified_date_time;
    item
}

fn kind(k: MailboxKind) -> CoreKind {
    match k {
        MailboxKind::Licensed => CoreKind::Licensed,
        MailboxKind::Shared | MailboxKind::Room | MailboxKind::Equipment => CoreKind::Shared,
        MailboxKind::Unlicensed => CoreKind::Unlicensed,
        MailboxKind::NoMailbox => CoreKind::NoMailbox,
        MailboxKind::Unknown => CoreKind::Unknown,
    }
}

/// The Graph client seen through the core's mail-source port.
#[derive(Debug, Clone)]
pub struct GraphSource {
    client: GraphClient,
    /// What the adapter learnt while listing, shared by clones.
    known: Arc<Mutex<Known>>,
}

/// Mailbox ids of the import/export API and the kind of each folder listed, so a delta
/// page of a folder goes to the right API.
#[derive(Debug, Default)]
struct Known {
    mailboxes: HashMap<String, ExchangeMailboxId>,
    folders: HashMap<FolderId, ItemKind>,
    /// Mail folders listed with `--fidelity full`: their messages offer an export
    /// stream after their MIME.
    mail_stream_folders: HashSet<FolderId>,
    /// mailboxItem ids of those folders' messages (crate::fidelity), by mailbox address
    /// and folder.
    stream_ids: HashMap<(String, FolderId), crate::fidelity::StreamIds>,
}

impl GraphSource {
    /// Wrap a client (clones share its token cache and limiters).
    pub fn new(client: GraphClient) -> Self {
        Self {
            client,
            known: Arc::default(),
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn cached_mbx(&self, mailbox: &SourceMailbox) -> Option<ExchangeMailboxId> {
        self.known().mailboxes.get(mailbox.address()).cloned()
    }

    pub(crate) fn remember_mbx(&self, mailbox: &SourceMailbox, id: &ExchangeMailboxId) {
        self.known()
            .mailboxes
            .insert(mailbox.address().to_owned(), id.clone());
    }

    pub(crate) fn remember_folder(&self, folder: &FolderId, kind: ItemKind) {
        self.known().folders.insert(folder.clone(), kind);
    }

    /// What is known of the mailboxItem ids of a full-fidelity mail folder.
    pub(crate) fn with_stream_ids<R>(
        &self,
        mailbox: &SourceMailbox,
        folder: &FolderId,
        f: impl FnOnce(&mut crate::fidelity::StreamIds) -> R,
    ) -> R {
        let mut known = self.known();
        f(known
            .stream_ids
            .entry((mailbox.address().to_owned(), folder.clone()))
            .or_default())
    }

    fn keeps_mail_streams(&self, folder: &FolderId) -> bool {
        self.known().mail_stream_folders.contains(folder)
    }

    /// The kind of a folder listed earlier; mail for any other.
    fn folder_kind(&self, folder: &FolderId) -> ItemKind {
        if folder.as_str() == crate::kinds::CONFIG_FOLDER {
            return ItemKind::Config;
        }
        self.known()
            .folders
            .get(folder)
            .copied()
            .unwrap_or(ItemKind::Mail)
    }

    /// The underlying client (for counters and for restore-side calls).
    pub fn client(&self) -> &GraphClient {
        &self.client
    }

    async fn to_mailbox(&self, user: &User) -> Result<SourceMailbox, SourceError> {
        let k = self
            .client
            .classify_mailbox(user)
            .await
            .map_err(run_error)?;
        Ok(SourceMailbox {
            id: user.mailbox_id(),
            display_name: user.display_name.clone().unwrap_or_default(),
            kind: kind(k),
            account_enabled: user.account_enabled,
            created: user.created_date_time,
        })
    }
}

struct GraphMime(ByteStream);

#[async_trait]
impl ContentStream for GraphMime {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, SourceError> {
        self.0.next_chunk().await.map_err(item_error)
    }
}

#[async_trait]
impl MailSource for GraphSource {
    async fn list_mailboxes(&self) -> Result<Vec<SourceMailbox>, SourceError> {
        let users = self
            .client
            .list_users(&ListUsersOptions::default())
            .await
            .map_err(run_error)?;
        let mut out = Vec::with_capacity(users.len());
        for u in &users {
            out.push(self.to_mailbox(u).await?);
        }
        Ok(out)
    }

    async fn resolve_mailbox(&self, address_or_id: &str) -> Result<SourceMailbox, SourceError> {
        let user = self
            .client
            .get_user(&atlas_core::model::MailboxId::new(address_or_id))
            .await
            .map_err(run_error)?;
        self.to_mailbox(&user).await
    }

    async fn list_folders(
        &self,
        mailbox: &SourceMailbox,
        opts: FolderOptions,
    ) -> Result<Vec<SourceFolder>, SourceError> {
        Ok(self.list_folders_since(mailbox, opts, None).await?.folders)
    }

    async fn list_folders_since(
        &self,
        mailbox: &SourceMailbox,
        opts: FolderOptions,
        since: Option<&FolderBookmark>,
    ) -> Result<FolderListing, SourceError> {
        let (mut folders, bookmark) = if opts.kinds.contains(ItemKind::Mail) {
            for_kind(ItemKind::Mail, self.mail_folders(mailbox, opts, since)).await?
        } else {
            (Vec::new(), None)
        };
        {
            let mut known = self.known();
            for f in &folders {
                if opts.fidelity.keeps_mail_stream() {
                    known.mail_stream_folders.insert(f.id.clone());
                } else {
                    known.mail_stream_folders.remove(&f.id);
                }
            }
        }
        if opts.kinds.beyond_mail() {
            folders.extend(self.kind_folders(mailbox, opts.kinds).await?);
        }
        Ok(FolderListing { folders, bookmark })
    }

    async fn delta_page(
        &self,
        mailbox: &SourceMailbox,
        folder: &FolderId,
        cursor: &DeltaCursor,
        page_size: u32,
    ) -> Result<CorePage, SourceError> {
        let kind = self.folder_kind(folder);
        let page = for_kind(kind, async {
            match kind {
                ItemKind::Mail => {
                    self.mail_delta_page(mailbox, folder, cursor, page_size)
                        .await
                }
                kind => {
                    self.kind_delta_page(mailbox, folder, kind, cursor, page_size)
                        .await
                }
            }
        })
        .await?;
        self.client.count_items(kind, page.items.len());
        Ok(page)
    }

    async fn open_content(
        &self,
        mailbox: &SourceMailbox,
        item: &SourceItem,
        content: ContentKind,
    ) -> Result<Box<dyn ContentStream>, SourceError> {
        for_kind(item.kind, self.open_one(mailbox, item, content)).await
    }

    fn batch_limit(&self, content: ContentKind) -> usize {
        if content == ContentKind::Export {
            MAX_EXPORT_ITEMS
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
        let Some(kind) = items.first().map(|i| i.kind) else {
            return Ok(Vec::new());
        };
        for_kind(kind, self.fetch_many(mailbox, items, content)).await
    }

    async fn kind_access(
        &self,
        mailbox: &SourceMailbox,
        kind: ItemKind,
    ) -> Result<Option<String>, SourceError> {
        for_kind(kind, self.probe_kind(mailbox, kind)).await
    }

    async fn stream_access(&self, mailbox: &SourceMailbox) -> Result<Option<String>, SourceError> {
        for_kind(ItemKind::Mail, self.probe_export(mailbox, "inbox")).await
    }
}

impl GraphSource {
    /// [`MailSource::open_content`] within its kind's request count.
    async fn open_one(
        &self,
        mailbox: &SourceMailbox,
        item: &SourceItem,
        content: ContentKind,
    ) -> Result<Box<dyn ContentStream>, SourceError> {
        match (item.kind, content) {
            (ItemKind::Mail, ContentKind::Mime) => {
                let stream = self
                    .client
                    .get_mime(&mailbox.id, &item.id)
                    .await
                    .map_err(item_error)?;
                Ok(Box::new(GraphMime(stream)))
            }
            (ItemKind::Mail, ContentKind::Export) => {
                let mut answers = self
                    .mail_streams(mailbox, std::slice::from_ref(item))
                    .await?;
                let bytes = answers.pop().unwrap_or_else(|| {
                    Err(SourceError::Item("the export answered nothing".into()))
                })?;
                Ok(Box::new(Whole(Some(bytes))))
            }
            (kind, ContentKind::Export) if kind != ItemKind::Config => {
                let mut answers = self
                    .export_batch(mailbox, std::slice::from_ref(item))
                    .await?;
                let bytes = answers.pop().unwrap_or_else(|| {
                    Err(SourceError::Item("the export answered nothing".into()))
                })?;
                Ok(Box::new(Whole(Some(bytes))))
            }
            (kind, ContentKind::Json) if kind != ItemKind::Mail && kind != ItemKind::Note => {
                let bytes = self
                    .readable_json(mailbox, item)
                    .await
                    .map_err(item_error)?;
                Ok(Box::new(Whole(Some(bytes))))
            }
            // The service asks only for what delta reported; answering as an item failure
            // keeps a confused caller's run going.
            (kind, content) => Err(SourceError::Item(format!(
                "the Graph adapter serves no {content:?} of {kind} items"
            ))),
        }
    }

    /// [`MailSource::fetch_batch`] within its kind's request count.
    async fn fetch_many(
        &self,
        mailbox: &SourceMailbox,
        items: &[SourceItem],
        content: ContentKind,
    ) -> Result<Vec<Result<Bytes, SourceError>>, SourceError> {
        if content != ContentKind::Export {
            return Ok(atlas_core::ports::mail::read_each(self, mailbox, items, content).await);
        }
        let (mail, other): (Vec<&SourceItem>, Vec<&SourceItem>) =
            items.iter().partition(|i| i.kind == ItemKind::Mail);
        if other.is_empty() {
            return self.mail_streams(mailbox, items).await;
        }
        if !mail.is_empty() {
            return Err(SourceError::Other(
                "an export batch mixes mail and other kinds".into(),
            ));
        }
        let mut out = Vec::with_capacity(items.len());
        for batch in items.chunks(MAX_EXPORT_ITEMS) {
            out.extend(self.export_batch(mailbox, batch).await?);
        }
        Ok(out)
    }
}

/// Content already in memory (an export stream, a JSON document), as one chunk.
struct Whole(Option<Bytes>);

#[async_trait]
impl ContentStream for Whole {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, SourceError> {
        Ok(self.0.take())
    }
}

impl GraphSource {
    /// The mail folder tree, continuing from the previous run's bookmark (the folder-delta
    /// state of [`GraphClient::folder_tree`]); one that does not parse is ignored.
    async fn mail_folders(
        &self,
        mailbox: &SourceMailbox,
        opts: FolderOptions,
        since: Option<&FolderBookmark>,
    ) -> Result<(Vec<SourceFolder>, Option<FolderBookmark>), SourceError> {
        let since: Option<FolderTreeState> =
            since.and_then(|b| serde_json::from_value(b.0.clone()).ok());
        let tree = self
            .client
            .folder_tree(
                &mailbox.id,
                FolderTreeOptions {
                    include_hidden: opts.include_hidden,
                    include_recoverable_items: opts.include_recoverable_items,
                    resolve_well_known: true,
                },
                since,
            )
            .await
            .map_err(|e| match e {
                // A folder vanishing mid-listing is not "the mailbox is gone".
                e @ GraphError::NotFound { .. } => SourceError::Other(e.to_string()),
                e => run_error(e),
            })?;
        let bookmark = tree
            .state
            .and_then(|s| serde_json::to_value(s).ok())
            .map(FolderBookmark);
        let folders = tree
            .folders
            .into_iter()
            // Search folders are views of other folders' items; backing them up would
            // store every message twice.
            .filter(|f| !f.is_search_folder)
            .map(|f| SourceFolder {
                id: f.id,
                parent_id: f.parent_id,
                display_name: f.display_name,
                path: f.path,
                well_known: f.well_known,
                total_items: f.total_item_count,
                hidden: f.is_hidden,
                // `mailFolders` lists mail folders only (calendars, contacts and tasks
                // live behind other endpoints).
                kind: ItemKind::Mail,
                stale_count: !f.counts_current,
            })
            .collect();
        Ok((folders, bookmark))
    }

    async fn mail_delta_page(
        &self,
        mailbox: &SourceMailbox,
        folder: &FolderId,
        cursor: &DeltaCursor,
        page_size: u32,
    ) -> Result<CorePage, SourceError> {
        let streams = self.keeps_mail_streams(folder);
        let link;
        let start = match cursor {
            DeltaCursor::Initial => {
                if streams {
                    self.with_stream_ids(mailbox, folder, |s| s.round_starts(None));
                }
                DeltaStart::Initial(folder)
            }
            DeltaCursor::Link(l) => {
                // A saved link of a full-fidelity folder carries the folder's mailboxItem
                // delta link as its second link (crate::fidelity); a nextLink never has one.
                let (messages, items) = atlas_core::ports::mail::split_links(l);
                if let Some(items) = items.filter(|_| streams) {
                    self.with_stream_ids(mailbox, folder, |s| s.round_starts(Some(items)));
                }
                link = DeltaLink::new(messages);
                DeltaStart::Link(&link)
            }
        };
        let page = self
            .client
            .message_delta_page(&mailbox.id, start, page_size)
            .await
            .map_err(run_error)?;
        if streams && !page.messages.is_empty() && matches!(page.next, DeltaNext::Done(_)) {
            self.learn_before_round_ends(mailbox, folder).await?;
        }
        let with_stream = |m: Message| {
            let mut item = message(m);
            if streams {
                item.contents.push(ContentKind::Export);
            }
            item
        };
        Ok(CorePage {
            items: page.messages.into_iter().map(with_stream).collect(),
            removed: page.removed,
            next: match page.next {
                DeltaNext::More(l) => CoreNext::More(l.as_str().to_owned()),
                DeltaNext::Done(l) if streams => {
                    let items = self.with_stream_ids(mailbox, folder, |s| s.link.clone());
                    CoreNext::Done(atlas_core::ports::mail::join_links(
                        l.as_str(),
                        items.as_deref(),
                    ))
                }
                DeltaNext::Done(l) => CoreNext::Done(l.as_str().to_owned()),
            },
        })
    }
}
