//! The in-process index cache: the union of the index files read so far, refreshed
//! lazily, tolerant of unreadable files (skipped and reported), and rebuilt when a file it
//! read has vanished (prune compacted the index), so nothing is ever located in, or
//! deduplicated against, a deleted pack.

use super::crypto::{self, ObjectType};
use super::index::{self, Index, Location};
use super::{Repository, VerifyProblem};
use crate::error::{Error, Result};
use crate::model::ContentId;

impl Repository {
    /// Read index files not merged yet, and fail with the first unreadable index file's
    /// error (after merging every readable one, so reads of content they locate still
    /// work). [`Repository::refresh_index_report`] is the variant that never fails on a
    /// bad file and lists them all.
    pub async fn refresh_index(&self) -> Result<()> {
        self.refresh_index_report().await?;
        match self.bad_index_files().first() {
            Some(key) => match self.read_index_file(key).await {
                Err(e) if e.is_integrity_failure() => Err(e),
                _ => Ok(()),
            },
            None => Ok(()),
        }
    }

    /// Read index files not merged yet. Called lazily by reads and by `begin_backup`.
    ///
    /// An index file that cannot be read (altered, truncated, undecodable) is skipped and
    /// reported, not fatal: the other files still locate their content, and verify names
    /// the bad file precisely ([`Repository::bad_index_files`]). When a file merged before
    /// has disappeared (prune compacted the index), the cache is rebuilt from the files
    /// that exist now, so no entry of a deleted pack survives in memory to be deduplicated
    /// against.
    pub async fn refresh_index_report(&self) -> Result<IndexRefresh> {
        let listed = self.list_index_files().await?;
        {
            let present: std::collections::HashSet<&str> =
                listed.iter().map(|m| m.key.as_str()).collect();
            let mut idx = self
                .inner
                .index
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let vanished = idx
                .files
                .iter()
                .chain(idx.bad.iter())
                .any(|f| !present.contains(f.as_str()));
            if vanished {
                *idx = Index::default();
            }
        }
        let mut report = IndexRefresh::default();
        for meta in listed {
            let name = meta.key.as_str().to_owned();
            let known = {
                let idx = self
                    .inner
                    .index
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                idx.files.contains(&name) || idx.bad.contains(&name)
            };
            if known {
                continue;
            }
            match self.read_index_file(&name).await {
                Ok(entries) => {
                    self.index_merge(name, &entries);
                    report.files_read += 1;
                }
                // Deleted between list and get: a concurrent prune replaced it; the next
                // refresh sees its replacement.
                Err(Error::Missing { .. }) => {}
                Err(error) if error.is_integrity_failure() => {
                    tracing::warn!(index = %name, %error, "skipping unreadable index file");
                    self.inner
                        .index
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .bad
                        .insert(name.clone());
                    report.bad_files.push(VerifyProblem {
                        object: name,
                        content_id: None,
                        error,
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    /// Every index file in the store (key and size), from the listing only.
    pub async fn list_index_files(&self) -> Result<Vec<crate::ports::ObjectMeta>> {
        Ok(self.inner.store.list(super::layout::INDEX_PREFIX).await?)
    }

    /// Read, authenticate and decode one index file (`index/<name>`). Errors name the file.
    pub async fn read_index_file(&self, key: &str) -> Result<Vec<index::IndexEntry>> {
        let bytes = self.get_required(key).await?;
        let keys = self.keys();
        let key = key.to_owned();
        tokio::task::spawn_blocking(move || {
            let plain =
                crypto::open_object(&keys.enc, ObjectType::Index, key.as_bytes(), &bytes, &key)?;
            index::decode_index(&plain).map_err(|r| Error::corrupt(&key, r))
        })
        .await
        .map_err(|e| Error::task(&e))?
    }

    /// Index files the cache skipped as unreadable (see [`Repository::refresh_index_report`]);
    /// [`Repository::read_index_file`] tells what is wrong with each.
    pub fn bad_index_files(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .inner
            .index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .bad
            .iter()
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// Forget the cached index (after prune rewrote it); the next read reloads it.
    pub(crate) fn reset_index(&self) {
        *self
            .inner
            .index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Index::default();
    }

    pub(crate) fn index_lookup(&self, id: &ContentId) -> Option<Location> {
        self.inner
            .index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
    }

    pub(crate) fn index_merge(&self, file: String, entries: &[index::IndexEntry]) {
        let mut idx = self
            .inner
            .index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        idx.insert_all(entries);
        idx.files.insert(file);
    }

    /// Where a content id is stored, refreshing the index once if it is unknown.
    pub async fn locate(&self, id: &ContentId) -> Result<Location> {
        if let Some(loc) = self.index_lookup(id) {
            return Ok(loc);
        }
        self.refresh_index_report().await?;
        self.index_lookup(id)
            .ok_or(Error::ContentNotFound { id: *id })
    }

    /// Number of content ids in the (cached) index.
    pub fn index_len(&self) -> usize {
        self.inner
            .index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .map
            .len()
    }
}

/// What one [`Repository::refresh_index_report`] call did.
#[derive(Debug, Default)]
pub struct IndexRefresh {
    /// Index files read and merged by this call.
    pub files_read: usize,
    /// Index files found unreadable by this call (skipped; earlier ones are in
    /// [`Repository::bad_index_files`]).
    pub bad_files: Vec<VerifyProblem>,
}
