//! The target port: what the restore service needs to write items back into a mailbox.
//!
//! `atlas-graph` implements it over Microsoft Graph; `atlas_core::testing::MemoryTenant`
//! implements it in memory (feature `testing`). Both pass the same conformance suite
//! (`atlas_core::testing::conformance::target`).
//!
//! The port speaks the core's ids ([`MailboxId`], [`FolderId`], [`ItemId`]). Listing
//! ([`MailTarget::list_items`]) and the marks are the same for every kind of item; how an
//! item is *created* depends on the representation restore has for it: a message is
//! created from fields parsed out of its stored MIME ([`RestoreMessage`], plus the state
//! MIME lacks: read, flag, categories, dates). A [`RestoreMark`] ties every created item
//! to the item it restores, so a rerun finds what an interrupted run already wrote
//! instead of writing it twice.
//!
//! Contract for implementations:
//! - [`MailTarget::create_message`] stores the mark *atomically with* the message (in the
//!   create request), never in a second call; a message without its mark would be
//!   invisible to the duplicate check.
//! - [`MailTarget::create_message`] must not retry a create whose outcome is unclear; it
//!   reports [`TargetError::OutcomeUnknown`] and the service checks by listing.
//! - [`MailTarget::check_write_access`] writes nothing and [`MailTarget::ensure_folder`]
//!   is idempotent, so the service may repeat either after an unclear outcome.
//! - [`MailTarget::mark_complete`] is idempotent and is the last write for a message: a
//!   message that has it has all its attachments.

use std::fmt::Debug;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

pub use crate::model::{EmailAddress, FlagStatus, FolderId, Importance, ItemId, MailboxId};

/// A folder in the target mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetFolder {
    /// Folder id (or a well-known name, which Graph accepts wherever an id goes).
    pub id: FolderId,
    /// Display name.
    pub display_name: String,
}

/// A message body: Graph keeps one body per message, HTML or text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreBody {
    /// Plain text.
    Text(String),
    /// HTML (inline images refer to attachments by `cid:`).
    Html(String),
}

/// A message to create, built from stored MIME plus the snapshot's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreMessage {
    /// Subject (sensitive: never logged).
    pub subject: String,
    /// Body.
    pub body: RestoreBody,
    /// `From`.
    pub from: Option<EmailAddress>,
    /// `Sender`, when it differs from `From`.
    pub sender: Option<EmailAddress>,
    /// `To`.
    pub to: Vec<EmailAddress>,
    /// `Cc`.
    pub cc: Vec<EmailAddress>,
    /// `Bcc`.
    pub bcc: Vec<EmailAddress>,
    /// `Reply-To`.
    pub reply_to: Vec<EmailAddress>,
    /// Original received time (delivery time).
    pub received: Option<DateTime<Utc>>,
    /// Original sent time (`Date`).
    pub sent: Option<DateTime<Utc>>,
    /// `Message-ID`, with angle brackets.
    pub internet_message_id: Option<String>,
    /// `In-Reply-To` (threading).
    pub in_reply_to: Option<String>,
    /// `References` (threading).
    pub references: Option<String>,
    /// Importance.
    pub importance: Importance,
    /// Read state.
    pub is_read: bool,
    /// Restore as a draft (only messages that were drafts in the snapshot; everything
    /// else becomes received mail).
    pub is_draft: bool,
    /// Follow-up flag.
    pub flag: FlagStatus,
    /// Outlook categories.
    pub categories: Vec<String>,
    /// Custom internet headers (`x-…` only: the only ones Graph accepts on create).
    pub headers: Vec<(String, String)>,
}

/// An attachment to add to a created message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreAttachment {
    /// A file (regular or inline).
    File {
        /// File name.
        name: String,
        /// MIME type.
        content_type: Option<String>,
        /// The bytes.
        bytes: Bytes,
        /// Inline (shown in the body, referenced by `cid:`).
        is_inline: bool,
        /// Content id, without angle brackets.
        content_id: Option<String>,
    },
    /// An attached message (`message/rfc822`), restored as an item attachment.
    Item {
        /// Display name.
        name: String,
        /// The embedded message.
        message: Box<RestoreMessage>,
        /// The embedded message's raw MIME, for targets that can only attach it as an
        /// `.eml` file.
        raw: Bytes,
    },
}

impl RestoreAttachment {
    /// Display name.
    pub fn name(&self) -> &str {
        match self {
            Self::File { name, .. } | Self::Item { name, .. } => name,
        }
    }

    /// Bytes this attachment puts on the wire (before encoding).
    pub fn size(&self) -> u64 {
        match self {
            Self::File { bytes, .. } => bytes.len() as u64,
            Self::Item { raw, .. } => raw.len() as u64,
        }
    }
}

/// What ties a created item to the item it restores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreMark {
    /// The original item's immutable id (the key of the duplicate check).
    pub source_id: ItemId,
    /// The restore run that created it (informational).
    pub run_id: String,
}

/// An item found in a target folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetItem {
    /// Its id in the target.
    pub id: ItemId,
    /// `Message-ID` (mail only): how in-place restore recognises messages that were never
    /// deleted.
    pub internet_message_id: Option<String>,
    /// The restore mark, when an Atlas restore created it.
    pub source_id: Option<ItemId>,
    /// Whether the completion mark is set (all attachments were added).
    pub complete: bool,
}

/// An attachment found on a target message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetAttachment {
    /// Name.
    pub name: String,
    /// Inline.
    pub is_inline: bool,
}

/// Errors a mail target reports, already classified for the restore service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// Sign-in failed; the message explains what to fix.
    #[error("{0}")]
    Auth(String),
    /// The app lacks a permission on the target.
    #[error(
        "permission denied: the app needs the {permission} application permission (admin consent granted) to restore; Graph request-id {request_id}"
    )]
    PermissionDenied {
        /// Permission name, e.g. `Mail.ReadWrite`.
        permission: String,
        /// Graph request id for support.
        request_id: String,
    },
    /// No such mailbox/user.
    #[error("target mailbox {0} was not found in the tenant")]
    MailboxNotFound(String),
    /// The user exists but has no Exchange Online mailbox.
    #[error("target {0} has no Exchange Online mailbox (unlicensed, soft-deleted or on-premises)")]
    MailboxNotEnabled(String),
    /// A folder or message disappeared while restoring into it.
    #[error("not found in the target: {0}")]
    NotFound(String),
    /// A write was sent but its answer was lost: check before writing again.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// The target refused this item (too large, invalid content …); other items go on.
    #[error("the target refused the item: {0}")]
    Rejected(String),
    /// Throttling or server errors outlasted the retry budget.
    #[error("the target is unavailable or throttling after retries: {0}")]
    Unavailable(String),
    /// The target's host name does not resolve: the endpoint setting is wrong or this
    /// machine has no DNS. Kept apart from [`Self::Other`] (as the mail source's
    /// `SourceError::Dns`) so the caller can name the setting to check; the text names the
    /// host.
    #[error("{0}")]
    Dns(String),
    /// The target's TLS certificate was refused (a private CA, TLS inspection): kept apart
    /// for the same reason as [`Self::Dns`]; the text has the host and, when known, the
    /// certificate's subject and issuer.
    #[error("{0}")]
    Tls(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl TargetError {
    /// Whether the error stops the whole restore (nothing else can succeed): sign-in,
    /// permission, missing mailbox.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Self::Auth(_)
                | Self::PermissionDenied { .. }
                | Self::MailboxNotFound(_)
                | Self::MailboxNotEnabled(_)
        )
    }
}

/// Write access to a tenant's mailboxes, for restore.
#[async_trait]
pub trait MailTarget: Send + Sync + Debug {
    /// Look the target mailbox up by address, UPN or object id, and check it has a
    /// mailbox. Writes nothing.
    async fn resolve_mailbox(&self, address_or_id: &str) -> Result<MailboxId, TargetError>;

    /// Prove the app may write into the mailbox *without writing anything*; a missing
    /// permission is [`TargetError::PermissionDenied`] naming it.
    async fn check_write_access(&self, mailbox: &MailboxId) -> Result<(), TargetError>;

    /// A well-known folder (`inbox`, `sentitems` …) of the target, if it has one.
    async fn well_known_folder(
        &self,
        mailbox: &MailboxId,
        well_known: &str,
    ) -> Result<Option<TargetFolder>, TargetError>;

    /// The folder named `name` directly under `parent` (the top of the mailbox when
    /// `None`), created when missing. Idempotent: a folder that exists is returned.
    async fn ensure_folder(
        &self,
        mailbox: &MailboxId,
        parent: Option<&FolderId>,
        name: &str,
    ) -> Result<TargetFolder, TargetError>;

    /// Every item in a folder with its restore marks (one listing, paged).
    async fn list_items(
        &self,
        mailbox: &MailboxId,
        folder: &FolderId,
    ) -> Result<Vec<TargetItem>, TargetError>;

    /// Create a received (non-draft) message in `folder`, with its dates, read state and
    /// the mark, in one request; small attachments may be included (`inline_attachments`)
    /// when they fit the request size limit. Returns the new item's id. With `complete`,
    /// the completion mark is set in the same request (nothing follows).
    async fn create_message(
        &self,
        mailbox: &MailboxId,
        folder: &FolderId,
        message: &RestoreMessage,
        inline_attachments: &[RestoreAttachment],
        mark: &RestoreMark,
        complete: bool,
    ) -> Result<ItemId, TargetError>;

    /// Attachments already on a message (to complete an interrupted one).
    async fn list_attachments(
        &self,
        mailbox: &MailboxId,
        item: &ItemId,
    ) -> Result<Vec<TargetAttachment>, TargetError>;

    /// Add one attachment; large files go through an upload session in chunks.
    async fn add_attachment(
        &self,
        mailbox: &MailboxId,
        item: &ItemId,
        attachment: &RestoreAttachment,
    ) -> Result<(), TargetError>;

    /// Set the completion mark (and the mutable state: flag, categories). The last write
    /// for a message; idempotent.
    async fn mark_complete(
        &self,
        mailbox: &MailboxId,
        item: &ItemId,
        message: &RestoreMessage,
    ) -> Result<(), TargetError>;

    /// The largest total of attachment bytes that may go into the create request itself.
    fn inline_attachment_budget(&self) -> u64;
}
