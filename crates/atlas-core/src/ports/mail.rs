//! The mail-source port: what the backup and status services need from a tenant.
//!
//! `atlas-graph` implements it over Microsoft Graph; tests may implement it in memory. The
//! types here are the *source's* view of a mailbox (ids as Graph gives them, opaque delta
//! links); the repository stores its own records built from them.

use std::fmt::Debug;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use crate::model::{EmailAddress, FlagStatus, Importance};

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
    /// Directory object id (GUID) — stable across renames.
    pub id: String,
    /// Primary SMTP address (or UPN when there is no `mail`), as given by the directory.
    pub address: String,
    /// Display name.
    pub display_name: String,
    /// Licensed / shared / no mailbox.
    pub kind: MailboxKind,
    /// Whether sign-in is enabled (a disabled account still has a mailbox worth backing up).
    pub account_enabled: Option<bool>,
    /// When the account was created.
    pub created: Option<DateTime<Utc>>,
}

/// Options for folder enumeration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FolderOptions {
    /// Include folders Graph hides unless asked (`includeHiddenFolders=true`).
    pub include_hidden: bool,
    /// Include the Recoverable Items folders (reachable by well-known name only).
    pub include_recoverable_items: bool,
}

/// One mail folder, with its position in the tree already resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFolder {
    /// Folder id.
    pub id: String,
    /// Parent folder id (`None` for folders directly under the root).
    pub parent_id: Option<String>,
    /// Display name.
    pub display_name: String,
    /// Names from the top of the mailbox down to this folder (inclusive).
    pub path: Vec<String>,
    /// Well-known name (`inbox`, `sentitems`, …) when the source knows it.
    pub well_known: Option<String>,
    /// Graph's `totalItemCount` (includes non-mail items).
    pub total_items: u64,
    /// Whether the folder is hidden.
    pub hidden: bool,
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

/// A message's metadata as delta reports it (the MIME is fetched separately).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceMessage {
    /// Immutable id (the client asks for `IdType="ImmutableId"`).
    pub id: String,
    /// Version stamp; changes whenever the item changes.
    pub change_key: Option<String>,
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
    /// Last modification.
    pub last_modified: Option<DateTime<Utc>>,
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
    /// Folder the message is in.
    pub parent_folder_id: Option<String>,
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

/// One page of a folder's delta.
#[derive(Debug, Clone)]
pub struct DeltaPage {
    /// Added or changed messages.
    pub items: Vec<SourceMessage>,
    /// Ids removed from the folder (deleted or moved out).
    pub removed: Vec<String>,
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
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// A stream of a message's raw MIME, chunk by chunk, so a 150 MB message never has to be
/// held in memory at once.
#[async_trait]
pub trait MimeStream: Send {
    /// The next chunk, or `None` at the end.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, SourceError>;
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

    /// One page of a folder's message delta.
    async fn delta_page(
        &self,
        mailbox: &SourceMailbox,
        folder_id: &str,
        cursor: &DeltaCursor,
        page_size: u32,
    ) -> Result<DeltaPage, SourceError>;

    /// Open a message's raw MIME (`$value`).
    async fn open_mime(
        &self,
        mailbox: &SourceMailbox,
        message_id: &str,
    ) -> Result<Box<dyn MimeStream>, SourceError>;
}
