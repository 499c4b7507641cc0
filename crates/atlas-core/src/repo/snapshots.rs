//! Mailboxes and snapshots: listing them from key names (no decryption, so listing stays
//! cheap with thousands of snapshots), loading and deleting snapshot records.

use std::collections::HashMap;

use super::crypto::ObjectType;
use super::layout::{MAILBOX_PREFIX, SNAPSHOT_PREFIX, parse_snapshot_key, store_key};
use super::{Repository, Snapshot, SnapshotInfo};
use crate::error::{Error, Result};
use crate::model::{MailboxId, SnapshotId, SnapshotRecord};

impl Repository {
    /// Every mailbox that has been backed up (one small record per mailbox is decrypted;
    /// snapshot records are not). From format 5 on, which has no mailbox records, the
    /// newest readable snapshot record of each mailbox is decrypted instead (one listing
    /// of `snapshots/`); a mailbox none of whose records can be read is an error, as an
    /// unreadable mailbox record is before.
    pub async fn list_mailboxes(&self) -> Result<Vec<MailboxId>> {
        if !self.keeps_mailbox_records() {
            return self.mailboxes_from_snapshots().await;
        }
        let mut out = Vec::new();
        for meta in self.inner.store.list(MAILBOX_PREFIX).await? {
            let bytes = self.get_required(meta.key.as_str()).await?;
            out.push(self.open_json::<MailboxId>(
                ObjectType::Mailbox,
                meta.key.as_str(),
                &bytes,
            )?);
        }
        out.sort();
        Ok(out)
    }

    /// Format 5 on: each mailbox's newest readable snapshot record names it.
    async fn mailboxes_from_snapshots(&self) -> Result<Vec<MailboxId>> {
        let mut out = Vec::new();
        for snaps in self.snapshots_by_mailbox().await?.into_values() {
            let mut first_error = None;
            let mut found = None;
            for info in snaps.iter().rev() {
                match self.load_snapshot(info.id).await {
                    Ok(s) => {
                        found = Some(s.record.mailbox);
                        break;
                    }
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            match (found, first_error) {
                (Some(mb), _) => out.push(mb),
                (None, Some(e)) => return Err(e),
                (None, None) => {}
            }
        }
        out.sort();
        Ok(out)
    }

    /// Every mailbox record (none from format 5 on), read one by one: the readable ones (sorted), and the store
    /// key and error of each that cannot be read (listing goes on past a damaged one).
    pub async fn mailbox_records(&self) -> Result<(Vec<MailboxId>, Vec<(String, Error)>)> {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for meta in self.inner.store.list(MAILBOX_PREFIX).await? {
            let key = meta.key.as_str();
            let opened = match self.get_required(key).await {
                Ok(bytes) => self.open_json::<MailboxId>(ObjectType::Mailbox, key, &bytes),
                Err(e) => Err(e),
            };
            match opened {
                // A record must sit under its own mailbox's name.
                Ok(mb) if self.mailbox_record_name(&mb) == key => good.push(mb),
                Ok(_) => bad.push((
                    key.to_owned(),
                    Error::corrupt(key, "mailbox record names another mailbox"),
                )),
                Err(e) if e.is_integrity_failure() => bad.push((key.to_owned(), e)),
                Err(Error::Missing { .. }) => {} // deleted since the listing
                Err(e) => return Err(e),
            }
        }
        good.sort();
        Ok((good, bad))
    }

    /// Write a mailbox's record again (after it was found missing or damaged): the old
    /// object, if any, is replaced.
    pub async fn rewrite_mailbox_record(&self, mailbox: &MailboxId) -> Result<()> {
        let key = self.mailbox_record_name(mailbox);
        let sealed = self.seal_json(ObjectType::Mailbox, &key, mailbox)?;
        self.inner
            .store
            .put(
                &store_key(&key)?,
                sealed,
                crate::ports::PutOptions::OVERWRITE,
            )
            .await?;
        Ok(())
    }

    /// Snapshots of a mailbox, oldest first, from key names only.
    pub async fn list_snapshots(&self, mailbox: &MailboxId) -> Result<Vec<SnapshotInfo>> {
        let prefix = format!("{SNAPSHOT_PREFIX}{}/", self.mailbox_key_name(mailbox));
        let mut out: Vec<SnapshotInfo> = self
            .inner
            .store
            .list(&prefix)
            .await?
            .iter()
            .filter_map(|m| parse_snapshot_key(m.key.as_str()).map(|(_, info)| info))
            .collect();
        out.sort_by_key(|s| (s.started, s.id));
        Ok(out)
    }

    /// Every snapshot in the repository, all mailboxes, oldest first, from key names only
    /// (for verify-all and retention; records are not decrypted).
    pub async fn list_all_snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        let mut out: Vec<SnapshotInfo> = self
            .inner
            .store
            .list(SNAPSHOT_PREFIX)
            .await?
            .iter()
            .filter_map(|m| parse_snapshot_key(m.key.as_str()).map(|(_, info)| info))
            .collect();
        out.sort_by_key(|s| (s.started, s.id));
        Ok(out)
    }

    /// Snapshots of every mailbox, oldest first, grouped by the mailbox's key name
    /// ([`Repository::mailbox_key_name`]), from one listing and no decryption.
    pub async fn snapshots_by_mailbox(&self) -> Result<HashMap<String, Vec<SnapshotInfo>>> {
        let mut out: HashMap<String, Vec<SnapshotInfo>> = HashMap::new();
        for meta in self.inner.store.list(SNAPSHOT_PREFIX).await? {
            if let Some((name, info)) = parse_snapshot_key(meta.key.as_str()) {
                out.entry(name).or_default().push(info);
            }
        }
        for v in out.values_mut() {
            v.sort_by_key(|s| (s.started, s.id));
        }
        Ok(out)
    }

    /// The newest snapshot of a mailbox (one record decrypted).
    pub async fn latest_snapshot(&self, mailbox: &MailboxId) -> Result<Option<Snapshot>> {
        match self.list_snapshots(mailbox).await?.last() {
            Some(info) => self.load_snapshot(info.id).await.map(Some),
            None => Ok(None),
        }
    }

    pub(super) async fn find_snapshot_key(&self, id: SnapshotId) -> Result<String> {
        let suffix = format!("_{id}");
        self.inner
            .store
            .list(SNAPSHOT_PREFIX)
            .await?
            .into_iter()
            .map(|m| m.key.as_str().to_owned())
            .find(|k| k.ends_with(&suffix))
            .ok_or(Error::SnapshotNotFound { id })
    }

    /// Load a snapshot record by id.
    pub async fn load_snapshot(&self, id: SnapshotId) -> Result<Snapshot> {
        let key = self.find_snapshot_key(id).await?;
        let bytes = self.get_required(&key).await?;
        let record: SnapshotRecord = self.open_json(ObjectType::Snapshot, &key, &bytes)?;
        if key.split('/').nth(1) != Some(self.mailbox_key_name(&record.mailbox).as_str()) {
            return Err(Error::corrupt(&key, "record belongs to another mailbox"));
        }
        check_snapshot_version(&record)?;
        Ok(Snapshot { id, record })
    }

    /// Delete a snapshot record (data stays until a prune; deleting records before data
    /// keeps the repository consistent at every step).
    pub async fn delete_snapshot(&self, id: SnapshotId) -> Result<()> {
        let key = self.find_snapshot_key(id).await?;
        self.inner.store.delete(&store_key(&key)?).await?;
        Ok(())
    }
}

/// A snapshot written by a newer format (items of kinds, or a list layout, this build does
/// not know) is refused rather than misread. The highest snapshot format is the one that
/// adds item lists in pieces (5, the same number as the repository format without mailbox
/// records: every build that writes either writes both); a repository of format 2–4 keeps
/// its config version and still gets version-5 snapshot records when a list is in pieces.
pub(super) fn check_snapshot_version(record: &SnapshotRecord) -> Result<()> {
    if record.format_version > super::PIECED_FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            what: "snapshot format".into(),
            found: record.format_version,
            supported: super::PIECED_FORMAT_VERSION,
        });
    }
    Ok(())
}
