//! Removing records beyond snapshot records: a mailbox's record once its last snapshot
//! is gone, and every object of the repository (`atlas delete --all`).
//!
//! A purge goes in an order where each intermediate state is still a consistent, smaller
//! repository: snapshot records, mailbox records, leases, index files, packs, the rest of
//! the repository's keys (`docs/FORMAT.md` §1), and only then — when nothing was refused —
//! the config and the wrapped key. Objects under any other name are not the repository's
//! and stay: a purge of a repository in a directory or bucket that holds other things
//! removes only the repository.

use super::Repository;
use super::layout::{
    CONFIG_KEY, INDEX_PREFIX, KEY_BLOB_KEY, LOCK_PREFIX, MAILBOX_PREFIX, PACK_PREFIX,
    REPLICATION_STATUS_PREFIX, SNAPSHOT_PREFIX, store_key,
};
use super::retention::RetainedObject;
use crate::error::Result;
use crate::model::MailboxId;
use crate::ports::{Event, Reporter, StoreError, Task};

/// What deleting objects did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removal {
    /// Objects deleted.
    pub removed: usize,
    /// Objects the store refused to delete (Object Lock retention).
    pub retained: Vec<RetainedObject>,
}

impl Removal {
    /// Whether nothing was refused.
    pub fn is_complete(&self) -> bool {
        self.retained.is_empty()
    }

    async fn delete(&mut self, repo: &Repository, key: &str) -> Result<()> {
        match repo.store().delete(&store_key(key)?).await {
            Ok(()) => {
                self.removed += 1;
                Ok(())
            }
            Err(StoreError::Retained { key, until }) => {
                self.retained.push(RetainedObject { key, until });
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl Repository {
    /// Delete a mailbox's record (after its last snapshot record is gone, so `list` never
    /// shows snapshots without a mailbox). Nothing to do from format 5 on, which has none.
    pub async fn delete_mailbox_record(&self, mailbox: &MailboxId) -> Result<Removal> {
        let mut out = Removal::default();
        if !self.keeps_mailbox_records() {
            return Ok(out);
        }
        out.delete(self, &self.mailbox_record_name(mailbox)).await?;
        Ok(out)
    }

    /// Objects of this repository in the store: what a purge deletes, the keys
    /// `docs/FORMAT.md` §1 names (objects under other names are someone else's).
    pub async fn object_count(&self) -> Result<usize> {
        Ok(self
            .store()
            .list("")
            .await?
            .iter()
            .filter(|m| is_repository_key(m.key.as_str()))
            .count())
    }

    /// Delete every object in the safe order (see the module docs). The config and the
    /// key go last, and only when nothing before them was refused. Each object deleted
    /// (or refused) is one unit of [`Task::Delete`] progress; the caller starts and ends
    /// the task, whose total it knows from its plan.
    pub async fn purge_objects(&self, reporter: &dyn Reporter) -> Result<Removal> {
        let mut out = Removal::default();
        let delete = async |out: &mut Removal, key: &str, size: u64| -> Result<()> {
            out.delete(self, key).await?;
            reporter.report(Event::TaskProgress {
                task: Task::Delete,
                done: 1,
                bytes: size,
            });
            Ok(())
        };
        for prefix in [
            SNAPSHOT_PREFIX,
            MAILBOX_PREFIX,
            LOCK_PREFIX,
            INDEX_PREFIX,
            PACK_PREFIX,
        ] {
            for meta in self.store().list(prefix).await? {
                delete(&mut out, meta.key.as_str(), meta.size).await?;
            }
        }
        // The rest of the repository's own keys (prune state, replication status, spares)
        // goes before the config and the key. Objects under other names are not Atlas's
        // — a user's files in the repository directory, another application's objects in
        // a shared bucket — and are never deleted.
        let mut foreign = 0usize;
        for meta in self.store().list("").await? {
            let k = meta.key.as_str();
            if !is_repository_key(k) {
                foreign += 1;
            } else if k != CONFIG_KEY && k != KEY_BLOB_KEY {
                delete(&mut out, k, meta.size).await?;
            }
        }
        if foreign > 0 {
            tracing::warn!(
                "left {foreign} object(s) in {} that are not part of the repository",
                self.store().describe()
            );
        }
        if out.is_complete() {
            delete(&mut out, CONFIG_KEY, 0).await?;
            delete(&mut out, KEY_BLOB_KEY, 0).await?;
        }
        Ok(out)
    }
}

/// Whether `key` is one the repository writes (`docs/FORMAT.md` §1): the config and the
/// key names under its prefixes. Everything else in the store belongs to someone else.
pub(crate) fn is_repository_key(key: &str) -> bool {
    key == CONFIG_KEY
        || [
            "_meta/",
            PACK_PREFIX,
            INDEX_PREFIX,
            MAILBOX_PREFIX,
            SNAPSHOT_PREFIX,
            LOCK_PREFIX,
            "prune/",
            REPLICATION_STATUS_PREFIX,
        ]
        .iter()
        .any(|p| key.starts_with(p))
}
