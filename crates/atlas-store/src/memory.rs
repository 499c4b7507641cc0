//! An in-memory [`BlobStore`]: the reference implementation of the contract, used by unit
//! and service tests that must run in milliseconds.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Mutex;

use async_trait::async_trait;
use atlas_core::ports::{BlobStore, ObjectMeta, PutMode, PutOptions, StoreError, StoreKey};
use bytes::Bytes;

/// Objects kept in a sorted map behind a mutex; `Create` is checked and inserted under one
/// lock, so it is atomic.
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<String, Bytes>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Bytes>> {
        // A panic while holding the lock cannot leave the map half-updated (every
        // mutation is a single insert/remove), so a poisoned lock is safe to reuse.
        self.objects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl BlobStore for MemoryStore {
    async fn put(&self, key: &StoreKey, data: Bytes, opts: PutOptions) -> Result<(), StoreError> {
        if opts.retention.is_some() {
            return Err(StoreError::Unsupported {
                what: "Object Lock retention (memory store)".into(),
            });
        }
        let mut map = self.map();
        if opts.mode == PutMode::Create && map.contains_key(key.as_str()) {
            return Err(StoreError::AlreadyExists {
                key: key.to_string(),
            });
        }
        map.insert(key.to_string(), data);
        Ok(())
    }

    async fn get(&self, key: &StoreKey) -> Result<Bytes, StoreError> {
        self.map()
            .get(key.as_str())
            .cloned()
            .ok_or_else(|| StoreError::NotFound {
                key: key.to_string(),
            })
    }

    async fn get_range(&self, key: &StoreKey, range: Range<u64>) -> Result<Bytes, StoreError> {
        let data = self.get(key).await?;
        let size = data.len() as u64;
        if range.start > range.end || range.end > size {
            return Err(StoreError::InvalidRange {
                key: key.to_string(),
                start: range.start,
                end: range.end,
                size,
            });
        }
        Ok(data.slice(range.start as usize..range.end as usize))
    }

    async fn head(&self, key: &StoreKey) -> Result<Option<ObjectMeta>, StoreError> {
        Ok(self.map().get(key.as_str()).map(|d| ObjectMeta {
            key: key.clone(),
            size: d.len() as u64,
        }))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let map = self.map();
        map.range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| {
                Ok(ObjectMeta {
                    key: StoreKey::new(k.clone())?,
                    size: v.len() as u64,
                })
            })
            .collect()
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.map().remove(key.as_str());
        Ok(())
    }

    fn describe(&self) -> String {
        "in-memory store".into()
    }
}
