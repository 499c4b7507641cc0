//! The configuration port: what restoring a mailbox's configuration (master categories,
//! inbox rules, mailbox settings) needs from the target.
//!
//! Configuration is stored as Graph's own JSON (readable, not an export stream), so the
//! port speaks that JSON: the service decides what to add and what to leave, the adapter
//! only lists and writes. Nothing here deletes or changes an existing category or rule.
//!
//! Contract for implementations:
//! - [`ConfigTarget::check_config_access`] writes nothing and fails with
//!   [`TargetError::PermissionDenied`] naming the permission when configuration writes
//!   are not allowed;
//! - [`ConfigTarget::create_category`] and [`ConfigTarget::create_rule`] create exactly one
//!   object per call or report [`TargetError::OutcomeUnknown`] (never retried blindly: the
//!   service lists again before sending a second time);
//! - [`ConfigTarget::find_mail_folder`] never creates anything.

use std::fmt::Debug;

use async_trait::async_trait;
use serde_json::Value;

use super::target::{TargetError, TargetFolder};
use crate::model::{FolderId, MailboxId};

/// Configuration access to a tenant's mailboxes.
#[async_trait]
pub trait ConfigTarget: Send + Sync + Debug {
    /// Prove the app may change the mailbox's configuration without changing anything; a
    /// missing permission is [`TargetError::PermissionDenied`] naming it.
    async fn check_config_access(&self, mailbox: &MailboxId) -> Result<(), TargetError>;

    /// The master category list (`outlookCategory` objects).
    async fn master_categories(&self, mailbox: &MailboxId) -> Result<Vec<Value>, TargetError>;

    /// Add one category (`displayName`, `color`).
    async fn create_category(
        &self,
        mailbox: &MailboxId,
        category: &Value,
    ) -> Result<(), TargetError>;

    /// The inbox rules (`messageRule` objects).
    async fn message_rules(&self, mailbox: &MailboxId) -> Result<Vec<Value>, TargetError>;

    /// Add one inbox rule (only writable properties, folder ids of the target).
    async fn create_rule(&self, mailbox: &MailboxId, rule: &Value) -> Result<(), TargetError>;

    /// The mailbox settings.
    async fn mailbox_settings(&self, mailbox: &MailboxId) -> Result<Value, TargetError>;

    /// Change the settings named in `patch` (others keep their values).
    async fn update_settings(&self, mailbox: &MailboxId, patch: &Value) -> Result<(), TargetError>;

    /// The mail folder named `name` (compared case-insensitively, as Exchange does)
    /// directly under `parent` (the top of the mailbox when `None`), or a well-known folder
    /// (`inbox`, `archive` …) when `well_known` is given; `None` when there is none.
    /// Creates nothing.
    async fn find_mail_folder(
        &self,
        mailbox: &MailboxId,
        parent: Option<&FolderId>,
        name: &str,
        well_known: Option<&str>,
    ) -> Result<Option<TargetFolder>, TargetError>;
}
