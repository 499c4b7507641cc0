//! Process-wide cache of unwrapped keys.
//!
//! The KDF is deliberately slow (scrypt N = 2^16 needs ~64 MiB and tens of milliseconds to
//! seconds), so it runs once per (store, tenant, key blob, passphrase) per process, on the
//! blocking pool. Concurrent opens of the same tenant wait for the one running KDF instead
//! of starting their own. The cache key includes a hash of the passphrase, so a wrong
//! passphrase never gets a cached key; the hash only lives in this process's memory, which
//! also holds the data key itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::KEY_BLOB_KEY;
use super::keyfile;
use super::secret::{Passphrase, RepoKeys};
use crate::error::{Error, Result};
use crate::ports::BlobStore;

type Cell = Arc<OnceCell<Arc<RepoKeys>>>;

struct Entry {
    /// Hash of (store, tenant), to forget every entry of a tenant on passphrase change.
    scope: [u8; 32],
    cell: Cell,
}

fn cache() -> &'static Mutex<HashMap<[u8; 32], Entry>> {
    static CACHE: OnceLock<Mutex<HashMap<[u8; 32], Entry>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn lock() -> std::sync::MutexGuard<'static, HashMap<[u8; 32], Entry>> {
    // Every mutation is a single insert/remove, so a poisoned map is still consistent.
    cache()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

fn scope(store: &Arc<dyn BlobStore>, tenant: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    field(&mut h, store.describe().as_bytes());
    field(&mut h, tenant.as_bytes());
    h.finalize().into()
}

fn cache_key(scope: &[u8; 32], passphrase: &Passphrase, blob: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    field(&mut h, b"atlas key cache v1");
    field(&mut h, scope);
    field(&mut h, blob);
    field(&mut h, passphrase.expose().as_bytes());
    h.finalize().into()
}

fn cell_for(scope: [u8; 32], key: [u8; 32]) -> Cell {
    let mut map = lock();
    Arc::clone(
        &map.entry(key)
            .or_insert_with(|| Entry {
                scope,
                cell: Arc::new(OnceCell::new()),
            })
            .cell,
    )
}

#[cfg(test)]
pub(crate) static KDF_RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Unwrap `blob` with `passphrase`, running the KDF at most once per process.
pub(crate) async fn unlock(
    store: &Arc<dyn BlobStore>,
    tenant: &str,
    passphrase: &Passphrase,
    blob: Bytes,
) -> Result<Arc<RepoKeys>> {
    let scope = scope(store, tenant);
    let key = cache_key(&scope, passphrase, &blob);
    let cell = cell_for(scope, key);
    let result = cell
        .get_or_try_init(|| async {
            let (pw, t) = (passphrase.clone(), tenant.to_owned());
            let (dek, _format) = tokio::task::spawn_blocking(move || {
                #[cfg(test)]
                KDF_RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                keyfile::unwrap(&blob, &pw, &t, KEY_BLOB_KEY)
            })
            .await
            .map_err(|e| Error::task(&e))??;
            Ok::<_, Error>(Arc::new(RepoKeys::derive(dek)))
        })
        .await
        .cloned();
    if result.is_err() {
        lock().remove(&key);
    }
    result
}

/// Put a key this process just created or re-wrapped into the cache.
pub(crate) fn remember(
    store: &Arc<dyn BlobStore>,
    tenant: &str,
    passphrase: &Passphrase,
    blob: &[u8],
    keys: RepoKeys,
) -> Arc<RepoKeys> {
    let scope = scope(store, tenant);
    let cell = cell_for(scope, cache_key(&scope, passphrase, blob));
    let keys = Arc::new(keys);
    // If a concurrent open already filled the cell, both hold the same key.
    let _ = cell.set(Arc::clone(&keys));
    keys
}

/// Drop every cached key of (store, tenant), e.g. after a passphrase change.
pub(crate) fn forget_store(store: &Arc<dyn BlobStore>, tenant: &str) {
    let scope = scope(store, tenant);
    lock().retain(|_, e| e.scope != scope);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::keyfile::KdfChoice;
    use crate::repo::secret::DataKey;
    use std::sync::atomic::Ordering;

    #[derive(Debug)]
    struct NoStore;

    #[async_trait::async_trait]
    impl BlobStore for NoStore {
        async fn put(
            &self,
            k: &crate::ports::StoreKey,
            _: Bytes,
            _: crate::ports::PutOptions,
        ) -> Result<(), crate::ports::StoreError> {
            Err(crate::ports::StoreError::Unsupported {
                what: k.to_string(),
            })
        }
        async fn get(&self, k: &crate::ports::StoreKey) -> Result<Bytes, crate::ports::StoreError> {
            Err(crate::ports::StoreError::NotFound { key: k.to_string() })
        }
        async fn get_range(
            &self,
            k: &crate::ports::StoreKey,
            _: std::ops::Range<u64>,
        ) -> Result<Bytes, crate::ports::StoreError> {
            Err(crate::ports::StoreError::NotFound { key: k.to_string() })
        }
        async fn head(
            &self,
            _: &crate::ports::StoreKey,
        ) -> Result<Option<crate::ports::ObjectMeta>, crate::ports::StoreError> {
            Ok(None)
        }
        async fn list(
            &self,
            _: &str,
        ) -> Result<Vec<crate::ports::ObjectMeta>, crate::ports::StoreError> {
            Ok(vec![])
        }
        async fn delete(&self, _: &crate::ports::StoreKey) -> Result<(), crate::ports::StoreError> {
            Ok(())
        }
        fn describe(&self) -> String {
            "cache-test".into()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kdf_runs_once_per_process_and_never_for_a_wrong_passphrase_hit() {
        let store: Arc<dyn BlobStore> = Arc::new(NoStore);
        let pw = Passphrase::new("right");
        let dek = DataKey::from_bytes([9; 32]);
        let blob = Bytes::from(keyfile::wrap(&dek, &pw, "t", KdfChoice::SCRYPT_MINIMUM).unwrap());
        let before = KDF_RUNS.load(Ordering::SeqCst);
        let (a, b) = tokio::join!(
            unlock(&store, "t", &pw, blob.clone()),
            unlock(&store, "t", &pw, blob.clone())
        );
        assert_eq!(a.unwrap().data.expose_secret(), dek.expose_secret());
        assert_eq!(b.unwrap().data.expose_secret(), dek.expose_secret());
        unlock(&store, "t", &pw, blob.clone()).await.unwrap();
        assert_eq!(KDF_RUNS.load(Ordering::SeqCst) - before, 1);
        let wrong = unlock(&store, "t", &Passphrase::new("wrong"), blob.clone()).await;
        assert!(matches!(wrong, Err(Error::WrongPassphrase { .. })));
        assert_eq!(KDF_RUNS.load(Ordering::SeqCst) - before, 2);
    }
}
