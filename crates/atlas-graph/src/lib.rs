//! # atlas-graph
//!
//! The Microsoft Graph client Atlas uses to read mailboxes for backup and write them back
//! on restore, against the real service, a national cloud or the `atlas-sim` simulator.
//!
//! - [`GraphConfig`] + [`Credential`] (client secret or certificate) → [`GraphClient::new`].
//!   Nothing is read from the environment.
//! - [`GraphClient`] is cheap to clone; clones share the token cache, the per-mailbox
//!   limiter and the tenant-wide scheduler, so all workers of a run use one client.
//! - Every request goes through one path (`client`): limiter → token → send with
//!   `Prefer: IdType="ImmutableId"` and a `client-request-id` → retry decision (`retry`):
//!   `Retry-After` honoured on every 429/503/504, full-jitter backoff otherwise, bounded
//!   attempts and time, POSTs never blindly retried ([`GraphError::OutcomeUnknown`]).
//! - A 429 pauses the whole mailbox for its `Retry-After`, so other workers on that
//!   mailbox wait instead of collecting more 429s. [`GraphClient::stats`] exposes counters.
//! - Ids are the core's ([`atlas_core::model::MailboxId`], `FolderId`, `ItemId`): the wire
//!   DTOs deserialize straight into them, and [`GraphSource`] / [`GraphTarget`] map
//!   Graph's JSON to the core's ports once, here. A mailbox is addressed by its directory
//!   object id when known (it survives renames), by its address otherwise.
//! - Typed operations: users and mailbox classification ([`api::users`]), the folder tree
//!   ([`api::folders`]), per-folder message delta and MIME streaming ([`api::messages`]),
//!   attachments ([`api::attachments`]), restore writes and upload sessions
//!   ([`api::restore`]) and the usage report ([`api::reports`]).
//! - Errors: one [`GraphError`] with semantic variants; a 403 names the permission, sign-in
//!   failures ([`AuthError`]) explain the AADSTS code in plain words. Secrets, tokens,
//!   delta links and upload URLs never appear in `Debug` or error text.
//!
//! ```no_run
//! use atlas_core::model::{FolderId, MailboxId};
//! use atlas_graph::{Credential, DeltaNext, DeltaStart, GraphClient, GraphConfig};
//!
//! # async fn example() -> Result<(), atlas_graph::GraphError> {
//! let config = GraphConfig::new("contoso.onmicrosoft.com", "app-client-id", Credential::Secret("value".into()));
//! let client = GraphClient::new(config)?;
//! let mailbox = MailboxId::new("adele@contoso.com");
//! let inbox = FolderId::new("inbox");
//! let mut page = client.message_delta_page(&mailbox, DeltaStart::Initial(&inbox), 100).await?;
//! let saved_link = loop {
//!     for message in &page.messages {
//!         let mut mime = client.get_mime(&mailbox, &message.id).await?;
//!         while let Some(chunk) = mime.next_chunk().await? {
//!             let _ = chunk; // store it
//!         }
//!     }
//!     match page.next {
//!         DeltaNext::More(link) => {
//!             page = client.message_delta_page(&mailbox, DeltaStart::Link(&link), 100).await?;
//!         }
//!         DeltaNext::Done(link) => break link, // persist only after everything is stored
//!     }
//! };
//! # let _ = saved_link;
//! # Ok(())
//! # }
//! ```
//!
//! `$batch` is not used: batching saves round trips but not quota (every inner request
//! counts against the same per-mailbox limits), and inner 429s would need a second retry
//! path.

pub mod api;
mod auth;
mod classic_target;
mod client;
mod config;
mod cost;
mod endpoint;
mod error;
mod fidelity;
mod kinds;
mod limiter;
mod retry;
mod source;
mod target;

pub use api::attachments::{Attachment, AttachmentId, AttachmentKind};
pub use api::folders::{
    FolderInfo, FolderTree, FolderTreeOptions, FolderTreeState, MailFolder, WELL_KNOWN_FOLDERS,
};
pub use api::mailbox::{
    ExchangeMailboxId, ExportItemError, ExportedItem, ImportSession, ImportedItem,
    MAX_EXPORT_ITEMS, MailboxFolder, MailboxFolderInfo, MailboxItem, MailboxItemPage, ews_id,
    rest_id,
};
pub use api::messages::{
    DELTA_SELECT, DeltaLink, DeltaNext, DeltaPage, DeltaRound, DeltaStart, EmailAddress,
    FollowupFlag, Message, Recipient,
};
pub use api::reports::{MailboxUsage, ReportPeriod};
pub use api::restore::{
    CreatedFolder, MarkedMessage, NewFileAttachment, NewMessage, UploadProgress, UploadSession,
    UploadSessionRequest,
};
pub use api::users::{
    ExchangeLicense, ListUsersOptions, MailboxKind, MailboxSettings, User, exchange_license,
};
/// Atlas's one secret string type, re-exported because [`Credential`] takes it.
pub use atlas_core::SecretString;
pub use classic_target::ClassicTarget;
pub use client::{ByteStream, GraphClient};
pub use config::{
    AssertionAlgorithm, Credential, DEFAULT_AUTHORITY_HOST, DEFAULT_GRAPH_ENDPOINT,
    DEFAULT_GRAPH_SCOPE, GraphConfig, LimiterConfig, NATIONAL_CLOUD_SCOPES, RetryPolicy,
    default_scope,
};
pub use cost::RequestCost;
pub use endpoint::Endpoint;
pub use error::{AuthError, AuthErrorKind, GraphError};
pub use limiter::{GraphStats, RequestPermit};
pub use source::GraphSource;
pub use target::{
    GraphTarget, PROP_COMPLETE, PROP_RUN, PROP_SOURCE, RESTORE_PROPERTY_SET, folder_class,
};
