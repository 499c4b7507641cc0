//! Conformance suites for the source and target ports: one executable copy of the
//! contracts in [`crate::ports::mail`] and [`crate::ports::target`] that every
//! implementation passes — [`MemoryTenant`](super::MemoryTenant) and the Graph adapter
//! over the simulator alike — so a service test on the memory tenant says something
//! about Graph too.
//!
//! A suite drives the port and checks what it says against what the tenant holds, so it
//! needs a little more than the port: a *fixture* ([`SourceFixture`], [`TargetFixture`])
//! that can change the tenant and show its contents (the simulator's admin API, the
//! memory tenant's own methods). Checks panic with a message naming the broken rule, like
//! `assert!`; [`source::run_all`] and [`target::run_all`] run them all:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use atlas_core::testing::{MemoryTenant, conformance};
//! let tenant = MemoryTenant::generate(7, 2, 12);
//! conformance::source::run_all(&tenant).await;
//! conformance::target::run_all(&tenant).await;
//! # }
//! ```
//!
//! The suites change the mailboxes they are given (they add, move and delete messages and
//! create folders under a root of their own), so give them a tenant of their own.

pub mod config;
mod memory;
pub mod source;
pub mod target;

use std::sync::Arc;

use crate::model::{FlagStatus, ItemId};
use crate::ports::{MailSource, MailTarget};

/// A message as the fixture's tenant holds it (not as the port reports it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixtureMessage {
    /// Its id, as the port reports it.
    pub id: ItemId,
    /// Its folder's path joined with `/`.
    pub folder_path: String,
    /// Read state.
    pub is_read: bool,
    /// Its raw MIME.
    pub mime: Vec<u8>,
}

/// What the source suite needs besides the port.
pub trait SourceFixture: Send + Sync {
    /// The source under test.
    fn source(&self) -> Arc<dyn MailSource>;
    /// The address of a mailbox with at least four messages in its inbox and a folder with
    /// the well-known name `archive`. The suite changes it.
    fn mailbox(&self) -> String;
    /// An address no user of the tenant has.
    fn unknown_mailbox(&self) -> String {
        "nobody.atlas-conformance@contoso.onmicrosoft.com".to_owned()
    }
    /// The messages of a mailbox as the tenant holds them.
    fn messages(&self, address: &str) -> Vec<FixtureMessage>;
    /// Add a small text message to the folder with the well-known name `folder`.
    fn add_message(&self, address: &str, folder: &str, subject: &str);
    /// Set a message's read state.
    fn set_read(&self, address: &str, id: &ItemId, read: bool);
    /// Move a message to the folder with the well-known name `folder`.
    fn move_message(&self, address: &str, id: &ItemId, folder: &str);
    /// Delete a message.
    fn delete_message(&self, address: &str, id: &ItemId);
    /// Make reading a message's content fail (or work again).
    fn fail_content(&self, address: &str, id: &ItemId, fail: bool);
    /// Invalidate every delta link handed out so far.
    fn expire_delta_links(&self);
}

/// An attachment of a message in the target, as the tenant holds it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FixtureAttachment {
    /// Name.
    pub name: String,
    /// Inline.
    pub inline: bool,
    /// SHA-256 of the bytes, hex (file attachments).
    pub sha256: String,
}

/// A message in the target as the tenant holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixtureTargetMessage {
    /// Subject.
    pub subject: String,
    /// Read state.
    pub is_read: bool,
    /// Draft.
    pub is_draft: bool,
    /// Follow-up flag.
    pub flag: FlagStatus,
    /// Categories.
    pub categories: Vec<String>,
    /// Received time, whole seconds since the epoch.
    pub received: Option<i64>,
    /// Sent time, whole seconds since the epoch.
    pub sent: Option<i64>,
    /// File attachments, sorted.
    pub attachments: Vec<FixtureAttachment>,
    /// Names of attached messages (item attachments), sorted.
    pub item_attachments: Vec<String>,
}

/// What the target suite needs besides the port.
pub trait TargetFixture: Send + Sync {
    /// The target under test.
    fn target(&self) -> Arc<dyn MailTarget>;
    /// The address of a mailbox the suite may write into (under a root folder of its own).
    fn mailbox(&self) -> String;
    /// An address no user of the tenant has.
    fn unknown_mailbox(&self) -> String {
        "nobody.atlas-conformance@contoso.onmicrosoft.com".to_owned()
    }
    /// The address of a user without an Exchange mailbox, if the tenant has one.
    fn user_without_mailbox(&self) -> Option<String>;
    /// How many messages the mailbox holds in all.
    fn message_count(&self, address: &str) -> usize;
    /// The messages in the folder at `path` (names joined with `/`), as the tenant holds
    /// them.
    fn messages_in(&self, address: &str, path: &str) -> Vec<FixtureTargetMessage>;
}
