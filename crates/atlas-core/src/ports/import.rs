//! The import port: writing items back from their stored full-fidelity export streams,
//! and the restore ledger that makes such imports idempotent.
//!
//! An export stream is opaque (Graph's `exportItems`, stored byte for byte): restore never
//! parses it, so — unlike a message created from MIME — an imported item cannot carry a
//! restore mark set in its create request. What a run imported is therefore recorded in a
//! [`RestoreLedger`] instead: a `Started` record is written *before* each import and an
//! `Imported` record (with the new item's id) after it. A rerun lists the target folder,
//! skips what the ledger says is there, and attributes an item it does not know to the one
//! import that was started and never finished (imports run one at a time per folder, so
//! there is at most one such import per folder); anything it cannot attribute blocks a
//! second import of the items concerned instead of risking a duplicate.
//!
//! Contract for [`ItemImport`] implementations:
//! - [`ItemImport::check_import_access`] writes nothing and fails with
//!   [`TargetError::PermissionDenied`] naming the permission when imports are not allowed;
//! - [`ItemImport::ensure_item_folder`] is idempotent (an existing folder is returned);
//! - [`ItemImport::import_item`] creates exactly one item per call or reports
//!   [`TargetError::OutcomeUnknown`]; it is never retried blindly, except where the
//!   target proves nothing was written (an expired import URL is refused before anything
//!   is created, so the implementation may renew the session and send the stream again).

use std::fmt::Debug;
use std::sync::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::target::{TargetError, TargetFolder};
use crate::model::{ContentKind, FolderId, ItemId, ItemKind, MailboxId};

/// Import access to a tenant's mailboxes: folders of every class and items from export
/// streams.
#[async_trait]
pub trait ItemImport: Send + Sync + Debug {
    /// Prove the app may import into the mailbox without writing anything; a missing
    /// permission is [`TargetError::PermissionDenied`] naming it.
    async fn check_import_access(&self, mailbox: &MailboxId) -> Result<(), TargetError>;

    /// Which stored representation [`ItemImport::import_item`] takes: the export stream
    /// (the import API), or the readable JSON (the classic create endpoints a restore of
    /// contacts and tasks falls back on without the import permission).
    fn reads(&self) -> ContentKind {
        ContentKind::Export
    }

    /// Whether folders of `kind` can hold folders. Where they cannot (To Do lists), the
    /// restore makes one folder per source folder, named by its whole path below the
    /// restore root.
    fn nests_folders(&self, _kind: ItemKind) -> bool {
        true
    }

    /// Like [`ItemImport::check_import_access`], for folders of one kind only (what the
    /// classic endpoints need differs per kind).
    async fn check_kind_access(
        &self,
        mailbox: &MailboxId,
        _kind: ItemKind,
    ) -> Result<(), TargetError> {
        self.check_import_access(mailbox).await
    }

    /// Finish `item`, created in `folder` from `content` by an [`ItemImport::import_item`]
    /// whose answer was lost (or that reported [`TargetError::OutcomeUnknown`] after its
    /// create): whatever that call does after the create, such as setting a contact's
    /// photo. Safe to repeat. Nothing for an import, which is one request.
    async fn finish_item(
        &self,
        _mailbox: &MailboxId,
        _folder: &FolderId,
        _item: &ItemId,
        _content: &[u8],
    ) -> Result<(), TargetError> {
        Ok(())
    }

    /// The folder a restore root of `kind` goes under: the mailbox's own calendar,
    /// contacts, tasks or notes folder; `None` for the top of the mailbox.
    async fn kind_home(
        &self,
        mailbox: &MailboxId,
        kind: ItemKind,
    ) -> Result<Option<TargetFolder>, TargetError>;

    /// The folder named `name` directly under `parent` (the top of the mailbox when
    /// `None`), of the folder class of `kind`, created when missing. Idempotent.
    async fn ensure_item_folder(
        &self,
        mailbox: &MailboxId,
        parent: Option<&FolderId>,
        name: &str,
        kind: ItemKind,
    ) -> Result<TargetFolder, TargetError>;

    /// The ids of every item in a folder (one listing, paged).
    async fn list_folder_items(
        &self,
        mailbox: &MailboxId,
        folder: &FolderId,
    ) -> Result<Vec<ItemId>, TargetError>;

    /// Create one item in `folder` from its stored representation (the one
    /// [`ItemImport::reads`] names, passed as stored, never altered). Returns the new
    /// item's id.
    async fn import_item(
        &self,
        mailbox: &MailboxId,
        folder: &FolderId,
        stream: &[u8],
    ) -> Result<ItemId, TargetError>;
}

/// One line of a restore ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "record")]
pub enum LedgerRecord {
    /// An import of `source` into `folder` is about to be sent.
    Started {
        /// Target folder.
        folder: FolderId,
        /// The original item.
        source: ItemId,
    },
    /// `source` is in `folder` as `target`.
    Imported {
        /// Target folder.
        folder: FolderId,
        /// The original item.
        source: ItemId,
        /// The item the import created.
        target: ItemId,
    },
    /// The import of `source` was refused: nothing was created.
    Refused {
        /// Target folder.
        folder: FolderId,
        /// The original item.
        source: ItemId,
    },
}

/// Where a restore keeps what it imported, so a rerun adds nothing twice. One ledger
/// belongs to one restore (snapshot, target mailbox, restore root).
#[async_trait]
pub trait RestoreLedger: Send + Sync + Debug {
    /// Every record written so far, oldest first.
    async fn load(&self) -> Result<Vec<LedgerRecord>, TargetError>;

    /// Append one record durably before returning (an import follows a `Started` record
    /// only once it is written).
    async fn append(&self, record: &LedgerRecord) -> Result<(), TargetError>;
}

/// A ledger in memory (tests, and runs that need no resumption).
#[derive(Debug, Default)]
pub struct MemoryLedger {
    records: Mutex<Vec<LedgerRecord>>,
}

impl MemoryLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<LedgerRecord>> {
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A copy of the records.
    pub fn records(&self) -> Vec<LedgerRecord> {
        self.lock().clone()
    }
}

#[async_trait]
impl RestoreLedger for MemoryLedger {
    async fn load(&self) -> Result<Vec<LedgerRecord>, TargetError> {
        Ok(self.records())
    }

    async fn append(&self, record: &LedgerRecord) -> Result<(), TargetError> {
        self.lock().push(record.clone());
        Ok(())
    }
}
