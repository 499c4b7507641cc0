//! The source port: what the backup and status services need from a tenant.
//!
//! `atlas-graph` implements it over Microsoft Graph; `atlas_core::testing::MemoryTenant`
//! implements it in memory (feature `testing`). Both pass the same conformance suite
//! (`atlas_core::testing::conformance::source`).
//!
//! The port speaks the core's vocabulary: ids are the model's newtypes
//! ([`MailboxId`], [`FolderId`], [`ItemId`]), and what it enumerates are *items of a kind*
//! ([`SourceItem`]) with the representations the source can deliver for each
//! ([`ContentKind`]). An adapter maps its wire format to these types once, at its edge;
//! a new kind of item is a new adapter (or a new kind in an adapter), not a new pipeline.
//!
//! Contract for implementations:
//! - [`MailSource::list_folders`] returns parents before children, each with its whole
//!   path, and the item kind it holds.
//! - [`MailSource::delta_page`] from [`DeltaCursor::Initial`] reports every item of the
//!   folder once per round (an item may repeat across pages; the last report wins); a
//!   round ends with [`DeltaNext::Done`] whose link, given back later, reports exactly
//!   what changed since: added or changed items in `items`, deleted or moved-out ids in
//!   `removed`. A link stays usable after it was followed (status follows saved links
//!   and throws the new ones away). A link the source no longer honours is
//!   [`SourceError::DeltaExpired`].
//! - [`MailSource::open_content`] streams one representation byte for byte; a failure
//!   that concerns only that item is [`SourceError::Item`], so the run goes on.
//! - [`MailSource::fetch_batch`] returns one representation of up to
//!   [`MailSource::batch_limit`] items in one call (Graph's `exportItems` takes 20 ids),
//!   the same bytes `open_content` would give, one answer per item, in order.
//! - [`MailSource::kind_access`] says, before anything is read, whether a kind can be
//!   backed up and otherwise which permission is missing.

use std::fmt::Debug;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use crate::model::{
    ContentKind, EmailAddress, Fidelity, FlagStatus, FolderBookmark, FolderId, FolderRecord,
    Importance, ItemId, ItemKind, KindSet, MailboxId,
};

/// What kind of Exchange mailbox a directory user has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailboxKind {
    /// A user with an Exchange Online licence.
    Licensed,
    /// A shared mailbox (no licence needed).
    Shared,
    /// A user mailbox that exists without an Exchange licence (e.g. a leaver whose licence
    /// was removed during the grace period): still mail worth keeping.
    Unlicensed,
    /// A directory user without a usable mailbox (unlicensed, guest, on-premises).
    NoMailbox,
    /// The source could not tell.
    Unknown,
}

/// A mailbox as the source sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceMailbox {
    /// The mailbox: its address (primary SMTP address, or UPN when there is no `mail`)
    /// and the directory object id, which survives renames. Built once, here, by the
    /// adapter that resolved the mailbox; everything downstream uses this value.
    pub id: MailboxId,
    /// Display name.
    pub display_name: String,
    /// Licensed / shared / no mailbox.
    pub kind: MailboxKind,
    /// Whether sign-in is enabled (a disabled account still has a mailbox worth backing up).
    pub account_enabled: Option<bool>,
    /// When the account was created.
    pub created: Option<DateTime<Utc>>,
}

impl SourceMailbox {
    /// The lower-cased address.
    pub fn address(&self) -> &str {
        self.id.address()
    }
}

/// Options for folder enumeration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FolderOptions {
    /// Include folders Graph hides unless asked (`includeHiddenFolders=true`).
    pub include_hidden: bool,
    /// Include the Recoverable Items folders (reachable by well-known name only).
    pub include_recoverable_items: bool,
    /// The kinds of folder to list (default: mail only). Mailbox configuration, which
    /// lives in no folder, is listed as one folder of kind [`ItemKind::Config`].
    pub kinds: KindSet,
    /// How much of each message to keep: with [`Fidelity::Full`] the source offers, for
    /// the mail folders it lists, each message's export stream after its MIME
    /// (`SourceItem::contents` = `[Mime, Export]`).
    pub fidelity: Fidelity,
}

/// One folder, with its position in the tree already resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFolder {
    /// Folder id.
    pub id: FolderId,
    /// Parent folder id (`None` for folders directly under the root).
    pub parent_id: Option<FolderId>,
    /// Display name.
    pub display_name: String,
    /// Names from the top of the mailbox down to this folder (inclusive).
    pub path: Vec<String>,
    /// Well-known name (`inbox`, `sentitems`, …) when the source knows it.
    pub well_known: Option<String>,
    /// The source's item count for the folder (Graph's `totalItemCount`).
    pub total_items: u64,
    /// Whether the folder is hidden.
    pub hidden: bool,
    /// The kind of item the folder holds (its container class).
    pub kind: ItemKind,
    /// `total_items` is the last count the source knew, not a current one (a tree kept
    /// from an earlier run by a source that is not told when a folder's items change): the
    /// backup does not judge completeness by it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stale_count: bool,
}

/// The folder tree of one listing and the bookmark to give the next listing of the same
/// mailbox ([`MailSource::list_folders_since`]).
#[derive(Debug, Clone)]
pub struct FolderListing {
    /// Parents before children, as [`MailSource::list_folders`] returns them.
    pub folders: Vec<SourceFolder>,
    /// What to keep for the next listing (kept in the snapshot record).
    pub bookmark: Option<FolderBookmark>,
}

impl SourceFolder {
    /// The folder as a snapshot records it.
    pub fn record(&self) -> FolderRecord {
        FolderRecord {
            id: self.id.clone(),
            parent_id: self.parent_id.clone(),
            display_name: self.display_name.clone(),
            path: self.path.clone(),
            well_known_name: self.well_known.clone(),
            total_item_count: (!self.stale_count).then_some(self.total_items),
            kind: self.kind,
        }
    }
}

/// Where to continue a folder's delta enumeration.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeltaCursor {
    /// Start a full enumeration.
    Initial,
    /// An opaque `@odata.nextLink` or `@odata.deltaLink` returned earlier. Token-bearing:
    /// never log it.
    Link(String),
}

impl Debug for DeltaCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Initial => f.write_str("Initial"),
            Self::Link(_) => f.write_str("Link(<redacted>)"),
        }
    }
}

/// The metadata of a mail message as delta reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailMetadata {
    /// RFC 5322 Message-ID.
    pub internet_message_id: Option<String>,
    /// Conversation id.
    pub conversation_id: Option<String>,
    /// Subject (sensitive: never log above trace).
    pub subject: Option<String>,
    /// From.
    pub from: Option<EmailAddress>,
    /// To recipients.
    pub to: Vec<EmailAddress>,
    /// Cc recipients.
    pub cc: Vec<EmailAddress>,
    /// Bcc recipients.
    pub bcc: Vec<EmailAddress>,
    /// Received time.
    pub received: Option<DateTime<Utc>>,
    /// Sent time.
    pub sent: Option<DateTime<Utc>>,
    /// Read state.
    pub is_read: bool,
    /// Draft (the only kind of message whose content may change).
    pub is_draft: bool,
    /// Importance.
    pub importance: Importance,
    /// Follow-up flag.
    pub flag: FlagStatus,
    /// Categories.
    pub categories: Vec<String>,
    /// Graph's `hasAttachments` (false when only inline attachments exist).
    pub has_attachments: bool,
}

/// What a source reports about an item besides its skeleton, by kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ItemMetadata {
    /// A mail message (boxed: it is most of the item's size, and most pages are mail).
    Mail(Box<MailMetadata>),
    /// An item whose readable form is its JSON representation: only what listing needs.
    Other {
        /// Title (event subject, contact name …). Sensitive like a subject.
        title: Option<String>,
    },
}

/// An item's skeleton and metadata as delta reports it (content is fetched separately).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceItem {
    /// What the item is.
    pub kind: ItemKind,
    /// Immutable id (the Graph client asks for `IdType="ImmutableId"`).
    pub id: ItemId,
    /// Version stamp; changes whenever the item changes.
    pub change_key: Option<String>,
    /// Folder the item is in.
    pub folder: Option<FolderId>,
    /// Last modification.
    pub last_modified: Option<DateTime<Utc>>,
    /// The representations to store, the primary one first (MIME for mail).
    pub contents: Vec<ContentKind>,
    /// Kind-specific metadata.
    pub metadata: ItemMetadata,
}

impl SourceItem {
    /// A mail message with its MIME as the only representation.
    pub fn mail(id: ItemId, metadata: MailMetadata) -> Self {
        Self {
            kind: ItemKind::Mail,
            id,
            change_key: None,
            folder: None,
            last_modified: None,
            contents: vec![ContentKind::Mime],
            metadata: ItemMetadata::Mail(Box::new(metadata)),
        }
    }

    /// The mail metadata, for a message.
    pub fn mail_metadata(&self) -> Option<&MailMetadata> {
        match &self.metadata {
            ItemMetadata::Mail(m) => Some(m),
            ItemMetadata::Other { .. } => None,
        }
    }

    /// Whether the item is a draft (only mail has drafts).
    pub fn is_draft(&self) -> bool {
        self.mail_metadata().is_some_and(|m| m.is_draft)
    }
}

/// How a delta page ends.
#[derive(Clone, PartialEq, Eq)]
pub enum DeltaNext {
    /// More pages in this round: follow this `@odata.nextLink`.
    More(String),
    /// Round complete: save this `@odata.deltaLink` for the next run.
    Done(String),
}

impl Debug for DeltaNext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::More(_) => f.write_str("More(<redacted>)"),
            Self::Done(_) => f.write_str("Done(<redacted>)"),
        }
    }
}

/// Between a folder's delta link and the second link a source may keep for the folder.
/// A URL holds no space.
const SECOND_LINK_SEPARATOR: char = ' ';

/// A source that keeps a second link per folder (Microsoft Graph: the mailboxItem delta
/// of a full-fidelity mail folder) returns it joined after the round's link in
/// [`DeltaNext::Done`], and is given both back the same way in [`DeltaCursor::Link`]. The
/// backup service stores the two apart (the snapshot's `deltaLink` and `itemDeltaLink`),
/// so a reader that knows only the first never hands Graph the pair.
pub fn join_links(link: &str, second: Option<&str>) -> String {
    match second {
        Some(second) => format!("{link}{SECOND_LINK_SEPARATOR}{second}"),
        None => link.to_owned(),
    }
}

/// A link as [`join_links`] made it: the folder's delta link and the second link, if any.
pub fn split_links(link: &str) -> (&str, Option<&str>) {
    match link.split_once(SECOND_LINK_SEPARATOR) {
        Some((first, second)) if !second.is_empty() => (first, Some(second)),
        Some((first, _)) => (first, None),
        None => (link, None),
    }
}

/// One page of a folder's delta.
#[derive(Debug, Clone)]
pub struct DeltaPage {
    /// Added or changed items.
    pub items: Vec<SourceItem>,
    /// Ids removed from the folder (deleted or moved out).
    pub removed: Vec<ItemId>,
    /// Continue or done.
    pub next: DeltaNext,
}

/// Errors a mail source reports, already classified for the services.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// Sign-in failed; the message explains what to fix.
    #[error("{0}")]
    Auth(String),
    /// The app lacks a permission.
    #[error(
        "permission denied: the app needs the {permission} application permission (admin consent granted) for this; Graph request-id {request_id}"
    )]
    PermissionDenied {
        /// Permission name, e.g. `Mail.Read`.
        permission: String,
        /// Graph request id for support.
        request_id: String,
    },
    /// No such mailbox/user.
    #[error("mailbox {0} was not found in the tenant")]
    MailboxNotFound(String),
    /// The user exists but has no Exchange Online mailbox.
    #[error("{0} has no Exchange Online mailbox (unlicensed, soft-deleted or on-premises)")]
    MailboxNotEnabled(String),
    /// The folder disappeared during the run.
    #[error("folder was deleted during the run")]
    FolderGone,
    /// The saved delta link is no longer valid (410 / SyncStateNotFound): enumerate again.
    #[error("the saved delta state expired; a full enumeration of the folder is needed")]
    DeltaExpired,
    /// One item could not be read; the run goes on.
    #[error("item could not be read: {0}")]
    Item(String),
    /// Throttling or server errors outlasted the retry budget.
    #[error("Microsoft Graph is unavailable or throttling after retries: {0}")]
    Unavailable(String),
    /// The source's host name does not resolve: the endpoint setting is wrong or this
    /// machine has no DNS. Not transient (never retried), and kept apart from
    /// [`Self::Other`] so the caller can name the setting to check; the text names the host.
    #[error("{0}")]
    Dns(String),
    /// The source's TLS certificate was refused (a private CA, TLS inspection): kept apart
    /// for the same reason as [`Self::Dns`]; the text has the host and, when known, the
    /// certificate's subject and issuer.
    #[error("{0}")]
    Tls(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// A stream of one representation of an item (a message's raw MIME, an export stream),
/// chunk by chunk, so a 150 MB message never has to be held in memory at once.
#[async_trait]
pub trait ContentStream: Send {
    /// The next chunk, or `None` at the end.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, SourceError>;
}

/// `content` of each item read whole through [`MailSource::open_content`], one after the
/// other, a failure in its item's entry: the default [`MailSource::fetch_batch`], and what
/// a source with a batch read of some representations does for the others.
pub async fn read_each<S: MailSource + ?Sized>(
    source: &S,
    mailbox: &SourceMailbox,
    items: &[SourceItem],
    content: ContentKind,
) -> Vec<Result<Bytes, SourceError>> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let read = async {
            let mut stream = source.open_content(mailbox, item, content).await?;
            let mut buf = Vec::new();
            while let Some(chunk) = stream.next_chunk().await? {
                buf.extend_from_slice(&chunk);
            }
            Ok::<_, SourceError>(Bytes::from(buf))
        };
        out.push(read.await);
    }
    out
}

/// Read access to a tenant's mailboxes.
#[async_trait]
pub trait MailSource: Send + Sync + Debug {
    /// Every directory user that may have a mailbox.
    async fn list_mailboxes(&self) -> Result<Vec<SourceMailbox>, SourceError>;

    /// Look a mailbox up by address, UPN or object id.
    async fn resolve_mailbox(&self, address_or_id: &str) -> Result<SourceMailbox, SourceError>;

    /// The whole folder tree of a mailbox, parents before children.
    async fn list_folders(
        &self,
        mailbox: &SourceMailbox,
        opts: FolderOptions,
    ) -> Result<Vec<SourceFolder>, SourceError>;

    /// [`list_folders`](Self::list_folders), continuing from the bookmark the previous
    /// listing of the mailbox returned (`since`, kept in its snapshot record), and the
    /// bookmark for the next one. The folders must be exactly those `list_folders` returns;
    /// only the cost may differ. A source that keeps nothing lists afresh (the default);
    /// one that cannot use `since` (unreadable, expired) lists afresh too.
    async fn list_folders_since(
        &self,
        mailbox: &SourceMailbox,
        opts: FolderOptions,
        since: Option<&FolderBookmark>,
    ) -> Result<FolderListing, SourceError> {
        let _ = since;
        Ok(FolderListing {
            folders: self.list_folders(mailbox, opts).await?,
            bookmark: None,
        })
    }

    /// One page of a folder's item delta.
    async fn delta_page(
        &self,
        mailbox: &SourceMailbox,
        folder: &FolderId,
        cursor: &DeltaCursor,
        page_size: u32,
    ) -> Result<DeltaPage, SourceError>;

    /// Open one representation of an item (for mail, [`ContentKind::Mime`]: `$value`).
    async fn open_content(
        &self,
        mailbox: &SourceMailbox,
        item: &SourceItem,
        content: ContentKind,
    ) -> Result<Box<dyn ContentStream>, SourceError>;

    /// How many items' `content` one [`MailSource::fetch_batch`] call may carry; 1 means
    /// the source has no batch read of that representation.
    fn batch_limit(&self, _content: ContentKind) -> usize {
        1
    }

    /// One representation of several items of one mailbox in one call: one answer per
    /// item, in order, a per-item failure in its entry. At most
    /// [`MailSource::batch_limit`] items. The default reads each with
    /// [`MailSource::open_content`].
    async fn fetch_batch(
        &self,
        mailbox: &SourceMailbox,
        items: &[SourceItem],
        content: ContentKind,
    ) -> Result<Vec<Result<Bytes, SourceError>>, SourceError> {
        Ok(read_each(self, mailbox, items, content).await)
    }

    /// Whether `kind` can be backed up from this mailbox: `Ok(None)` when it can,
    /// `Ok(Some(permission))` naming the application permission that is missing. Asked
    /// once per run, before anything is written. The default: every kind is readable.
    async fn kind_access(
        &self,
        _mailbox: &SourceMailbox,
        _kind: ItemKind,
    ) -> Result<Option<String>, SourceError> {
        Ok(None)
    }

    /// Whether mail's export stream ([`Fidelity::Full`]) can be read from this mailbox:
    /// `Ok(None)` when it can, `Ok(Some(permission))` naming the application permission
    /// that is missing. Asked once per run, before anything is written, when a backup
    /// keeps the stream. The default: it can.
    async fn stream_access(&self, _mailbox: &SourceMailbox) -> Result<Option<String>, SourceError> {
        Ok(None)
    }
}
