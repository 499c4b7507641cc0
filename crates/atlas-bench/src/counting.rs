//! A `BlobStore` wrapper that counts operations, so "objects written per 1,000 messages"
//! and "store requests" come from what the repository actually asked of the store, for
//! any backend (local directory or S3).

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use atlas_core::ports::blob_store::{CopySource, LockStatus};
use atlas_core::ports::{BlobStore, ObjectMeta, PutOptions, Retention, StoreError, StoreKey};
use bytes::Bytes;

/// Operation counts since creation or the last [`CountingStore::take`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreCounts {
    /// `put` calls (objects written).
    pub puts: u64,
    /// Bytes written by `put`.
    pub put_bytes: u64,
    /// `get` and `get_range` calls.
    pub gets: u64,
    /// Bytes returned by reads.
    pub get_bytes: u64,
    /// `head`, `list`, `delete` and retention calls.
    pub other: u64,
    /// `puts` by what the key holds.
    pub put_kinds: PutKinds,
}

/// Objects written (`put` calls) by the repository's key prefix (docs/FORMAT.md §1), so a
/// step's objects per 1,000 messages can be told apart into packs, index files, records
/// and leases.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PutKinds {
    /// `packs/…`
    pub packs: u64,
    /// `index/…`
    pub index: u64,
    /// `snapshots/…`
    pub snapshots: u64,
    /// `mailboxes/…`
    pub mailboxes: u64,
    /// `locks/…` and `prune/lock`.
    pub locks: u64,
    /// Every other key (config, wrapped key, spares, …).
    pub other: u64,
}

impl PutKinds {
    /// Which counter a put of `key` goes to.
    fn slot(key: &str) -> usize {
        match key.split('/').next().unwrap_or_default() {
            "packs" => 0,
            "index" => 1,
            "snapshots" => 2,
            "mailboxes" => 3,
            "locks" => 4,
            "prune" if key == "prune/lock" => 4,
            _ => 5,
        }
    }

    fn from_counts(c: [u64; 6]) -> Self {
        Self {
            packs: c[0],
            index: c[1],
            snapshots: c[2],
            mailboxes: c[3],
            locks: c[4],
            other: c[5],
        }
    }
}

impl std::fmt::Display for PutKinds {
    /// `22 packs, 4 index, 20 snapshots, 20 mailboxes, 1 locks` (zero counts left out).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts = [
            (self.packs, "packs"),
            (self.index, "index"),
            (self.snapshots, "snapshots"),
            (self.mailboxes, "mailboxes"),
            (self.locks, "locks"),
            (self.other, "other"),
        ];
        let mut first = true;
        for (n, what) in parts {
            if n > 0 {
                write!(f, "{}{n} {what}", if first { "" } else { ", " })?;
                first = false;
            }
        }
        Ok(())
    }
}

impl StoreCounts {
    /// All operations (≈ S3 requests; a multipart upload counts once).
    pub fn requests(&self) -> u64 {
        self.puts + self.gets + self.other
    }
}

/// Counts every call, then forwards it to the wrapped store.
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn BlobStore>,
    puts: AtomicU64,
    put_bytes: AtomicU64,
    gets: AtomicU64,
    get_bytes: AtomicU64,
    other: AtomicU64,
    put_kinds: [AtomicU64; 6],
}

impl CountingStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn BlobStore>) -> Self {
        Self {
            inner,
            puts: AtomicU64::new(0),
            put_bytes: AtomicU64::new(0),
            gets: AtomicU64::new(0),
            get_bytes: AtomicU64::new(0),
            other: AtomicU64::new(0),
            put_kinds: Default::default(),
        }
    }

    /// Returns the counts and starts again from zero (one scenario step at a time).
    pub fn take(&self) -> StoreCounts {
        StoreCounts {
            puts: self.puts.swap(0, Ordering::Relaxed),
            put_bytes: self.put_bytes.swap(0, Ordering::Relaxed),
            gets: self.gets.swap(0, Ordering::Relaxed),
            get_bytes: self.get_bytes.swap(0, Ordering::Relaxed),
            other: self.other.swap(0, Ordering::Relaxed),
            put_kinds: PutKinds::from_counts(
                self.put_kinds
                    .each_ref()
                    .map(|c| c.swap(0, Ordering::Relaxed)),
            ),
        }
    }

    fn bump_put(&self, key: &StoreKey, len: usize) {
        self.puts.fetch_add(1, Ordering::Relaxed);
        self.put_bytes.fetch_add(len as u64, Ordering::Relaxed);
        self.put_kinds[PutKinds::slot(key.as_str())].fetch_add(1, Ordering::Relaxed);
    }

    fn bump_other(&self) {
        self.other.fetch_add(1, Ordering::Relaxed);
    }
}

#[async_trait]
impl BlobStore for CountingStore {
    async fn put(&self, key: &StoreKey, data: Bytes, opts: PutOptions) -> Result<(), StoreError> {
        self.bump_put(key, data.len());
        self.inner.put(key, data, opts).await
    }

    async fn get(&self, key: &StoreKey) -> Result<Bytes, StoreError> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        let b = self.inner.get(key).await?;
        self.get_bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
        Ok(b)
    }

    async fn get_range(&self, key: &StoreKey, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        let b = self.inner.get_range(key, range).await?;
        self.get_bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
        Ok(b)
    }

    async fn head(&self, key: &StoreKey) -> Result<Option<ObjectMeta>, StoreError> {
        self.bump_other();
        self.inner.head(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        self.bump_other();
        self.inner.list(prefix).await
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.bump_other();
        self.inner.delete(key).await
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn extend_retention(
        &self,
        key: &StoreKey,
        retention: Retention,
    ) -> Result<Retention, StoreError> {
        self.bump_other();
        self.inner.extend_retention(key, retention).await
    }

    async fn retention(&self, key: &StoreKey) -> Result<Option<Retention>, StoreError> {
        self.bump_other();
        self.inner.retention(key).await
    }

    async fn lock_status(&self) -> Result<Option<LockStatus>, StoreError> {
        self.bump_other();
        self.inner.lock_status().await
    }

    // Forwarded, not left to the trait's defaults: those would turn a wrapped S3 store's
    // server-side copy off and measure a read-and-write copy instead.
    fn copy_source(&self) -> Option<CopySource> {
        self.inner.copy_source()
    }

    async fn copy_from(
        &self,
        source: &CopySource,
        source_key: &StoreKey,
        key: &StoreKey,
        opts: PutOptions,
    ) -> Result<bool, StoreError> {
        self.bump_put(key, 0);
        self.inner.copy_from(source, source_key, key, opts).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atlas_store::LocalStore;

    /// Regression: the counting store dropped `copy_source`/`copy_from`, so a benchmark of
    /// replication between two S3 buckets measured the read-and-write fallback.
    #[tokio::test]
    async fn forwards_every_method_to_the_wrapped_store() {
        atlas_store::conformance::check_wrapper(|inner| Arc::new(CountingStore::new(inner))).await;
    }

    #[tokio::test]
    async fn counts_each_kind_and_resets_on_take() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CountingStore::new(Arc::new(LocalStore::new(dir.path())));
        let key = StoreKey::new("data/ab/abc").expect("valid key");
        store
            .put(&key, Bytes::from_static(b"hello"), PutOptions::CREATE)
            .await
            .expect("put");
        assert_eq!(store.get(&key).await.expect("get").as_ref(), b"hello");
        let _ = store.list("data/").await.expect("list");
        let c = store.take();
        assert_eq!(
            (c.puts, c.put_bytes, c.gets, c.get_bytes, c.other),
            (1, 5, 1, 5, 1)
        );
        assert_eq!(c.requests(), 3);
        assert_eq!(store.take(), StoreCounts::default());
    }

    #[tokio::test]
    async fn counts_puts_by_the_repository_prefix_of_their_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CountingStore::new(Arc::new(LocalStore::new(dir.path())));
        for key in [
            "packs/ab/abc",
            "packs/cd/cde",
            "index/0123",
            "snapshots/m/20261205T000000.000Z_x",
            "mailboxes/m",
            "locks/run-0123",
            "prune/lock",
            "prune/pending",
            "config",
        ] {
            let key = StoreKey::new(key).expect("valid key");
            store
                .put(&key, Bytes::from_static(b"x"), PutOptions::CREATE)
                .await
                .expect("put");
        }
        let c = store.take();
        let expected = PutKinds {
            packs: 2,
            index: 1,
            snapshots: 1,
            mailboxes: 1,
            locks: 2,
            other: 2,
        };
        assert_eq!((c.puts, c.put_kinds), (9, expected));
        assert_eq!(
            expected.to_string(),
            "2 packs, 1 index, 1 snapshots, 1 mailboxes, 2 locks, 2 other"
        );
    }
}
