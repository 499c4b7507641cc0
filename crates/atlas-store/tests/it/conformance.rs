//! Every backend passes the same suite.

use std::sync::Arc;

use atlas_core::ports::BlobStore;
use atlas_store::{FaultStore, LocalStore, MemoryStore, conformance};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_conforms() {
    let store: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
    conformance::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    // A root that does not exist yet: the first write must create it.
    let store: Arc<dyn BlobStore> = Arc::new(LocalStore::new(dir.path().join("repo")));
    conformance::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fault_store_without_faults_conforms() {
    let store: Arc<dyn BlobStore> = Arc::new(FaultStore::new(Arc::new(MemoryStore::new())));
    conformance::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fault_store_over_local_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let local: Arc<dyn BlobStore> = Arc::new(LocalStore::new(dir.path()));
    let store: Arc<dyn BlobStore> = Arc::new(FaultStore::new(local));
    conformance::run_all(&store).await;
}

#[tokio::test]
async fn fault_store_forwards_every_method() {
    conformance::check_wrapper(|inner| Arc::new(FaultStore::new(inner))).await;
}

/// The suite must be able to fail: deliberately broken stores are rejected. Each wraps a
/// working `MemoryStore` and breaks one rule.
mod the_suite_catches {
    use std::ops::Range;
    use std::sync::Arc;

    use async_trait::async_trait;
    use atlas_core::ports::blob_store::{CopySource, LockStatus};
    use atlas_core::ports::{
        BlobStore, ObjectMeta, PutMode, PutOptions, Retention, StoreError, StoreKey,
    };
    use atlas_store::{MemoryStore, conformance};
    use bytes::Bytes;
    use tokio::sync::Barrier;

    #[derive(Debug, Clone, Copy)]
    enum Flaw {
        /// `Create` as check-then-put, with every racer passing the check first.
        CheckThenPutCreate,
        /// `list` in reverse order.
        UnsortedList,
        /// Out-of-range reads clamped instead of refused.
        ClampedRanges,
    }

    #[derive(Debug)]
    struct Broken {
        inner: MemoryStore,
        flaw: Flaw,
        racers: Barrier,
    }

    #[async_trait]
    impl BlobStore for Broken {
        async fn put(
            &self,
            key: &StoreKey,
            data: Bytes,
            opts: PutOptions,
        ) -> Result<(), StoreError> {
            if let (Flaw::CheckThenPutCreate, PutMode::Create) = (self.flaw, opts.mode) {
                if self.inner.head(key).await?.is_some() {
                    return Err(StoreError::AlreadyExists {
                        key: key.to_string(),
                    });
                }
                if key.as_str().ends_with("/lease") {
                    // All racing creators have checked before any of them writes.
                    self.racers.wait().await;
                }
                return self.inner.put(key, data, PutOptions::OVERWRITE).await;
            }
            self.inner.put(key, data, opts).await
        }

        async fn get(&self, key: &StoreKey) -> Result<Bytes, StoreError> {
            self.inner.get(key).await
        }

        async fn get_range(&self, key: &StoreKey, range: Range<u64>) -> Result<Bytes, StoreError> {
            if let Flaw::ClampedRanges = self.flaw {
                let data = self.inner.get(key).await?;
                let end = (range.end as usize).min(data.len());
                let start = (range.start as usize).min(end);
                return Ok(data.slice(start..end));
            }
            self.inner.get_range(key, range).await
        }

        async fn head(&self, key: &StoreKey) -> Result<Option<ObjectMeta>, StoreError> {
            self.inner.head(key).await
        }

        async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
            let mut found = self.inner.list(prefix).await?;
            if let Flaw::UnsortedList = self.flaw {
                found.reverse();
            }
            Ok(found)
        }

        async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
            self.inner.delete(key).await
        }

        fn describe(&self) -> String {
            format!("broken store ({:?})", self.flaw)
        }
    }

    fn broken(flaw: Flaw) -> Arc<dyn BlobStore> {
        Arc::new(Broken {
            inner: MemoryStore::new(),
            flaw,
            racers: Barrier::new(8),
        })
    }

    /// Run a check in its own task and report whether it failed (panicked).
    async fn fails<F, Fut>(store: Arc<dyn BlobStore>, check: F) -> bool
    where
        F: FnOnce(Arc<dyn BlobStore>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        tokio::spawn(async move { check(store).await })
            .await
            .is_err()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_create_that_is_not_atomic() {
        let store = broken(Flaw::CheckThenPutCreate);
        assert!(
            fails(
                store,
                |s| async move { conformance::racing_creates(&s).await }
            )
            .await
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn an_unsorted_list() {
        let store = broken(Flaw::UnsortedList);
        assert!(
            fails(
                store,
                |s| async move { conformance::list_by_prefix(&s).await }
            )
            .await
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn clamped_ranges() {
        let store = broken(Flaw::ClampedRanges);
        assert!(fails(store, |s| async move { conformance::ranges(&s).await }).await);
    }

    /// A wrapper that forwards the required methods and leaves the optional ones to the
    /// trait's defaults: it compiles, and would silently turn off a wrapped S3 store's
    /// server-side copy (and Object Lock).
    #[derive(Debug)]
    struct ForgetfulWrapper(Arc<dyn BlobStore>);

    #[async_trait]
    impl BlobStore for ForgetfulWrapper {
        async fn put(
            &self,
            key: &StoreKey,
            data: Bytes,
            opts: PutOptions,
        ) -> Result<(), StoreError> {
            self.0.put(key, data, opts).await
        }
        async fn get(&self, key: &StoreKey) -> Result<Bytes, StoreError> {
            self.0.get(key).await
        }
        async fn get_range(&self, key: &StoreKey, range: Range<u64>) -> Result<Bytes, StoreError> {
            self.0.get_range(key, range).await
        }
        async fn head(&self, key: &StoreKey) -> Result<Option<ObjectMeta>, StoreError> {
            self.0.head(key).await
        }
        async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
            self.0.list(prefix).await
        }
        async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
            self.0.delete(key).await
        }
        fn describe(&self) -> String {
            self.0.describe()
        }
    }

    #[tokio::test]
    async fn a_wrapper_that_drops_the_optional_methods() {
        let dummy: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
        assert!(
            fails(dummy, |_| async move {
                conformance::check_wrapper(|inner| Arc::new(ForgetfulWrapper(inner))).await;
            })
            .await
        );
    }

    /// A wrapper that forwards everything but `copy_from`: caught by name.
    #[tokio::test]
    async fn a_wrapper_that_drops_only_copy_from() {
        #[derive(Debug)]
        struct NoCopy(Arc<dyn BlobStore>);
        #[async_trait]
        impl BlobStore for NoCopy {
            async fn put(
                &self,
                key: &StoreKey,
                data: Bytes,
                opts: PutOptions,
            ) -> Result<(), StoreError> {
                self.0.put(key, data, opts).await
            }
            async fn get(&self, key: &StoreKey) -> Result<Bytes, StoreError> {
                self.0.get(key).await
            }
            async fn get_range(
                &self,
                key: &StoreKey,
                range: Range<u64>,
            ) -> Result<Bytes, StoreError> {
                self.0.get_range(key, range).await
            }
            async fn head(&self, key: &StoreKey) -> Result<Option<ObjectMeta>, StoreError> {
                self.0.head(key).await
            }
            async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
                self.0.list(prefix).await
            }
            async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
                self.0.delete(key).await
            }
            fn describe(&self) -> String {
                self.0.describe()
            }
            async fn extend_retention(
                &self,
                key: &StoreKey,
                retention: Retention,
            ) -> Result<Retention, StoreError> {
                self.0.extend_retention(key, retention).await
            }
            async fn retention(&self, key: &StoreKey) -> Result<Option<Retention>, StoreError> {
                self.0.retention(key).await
            }
            async fn lock_status(&self) -> Result<Option<LockStatus>, StoreError> {
                self.0.lock_status().await
            }
            fn copy_source(&self) -> Option<CopySource> {
                self.0.copy_source()
            }
        }
        let result =
            tokio::spawn(conformance::check_wrapper(|inner| Arc::new(NoCopy(inner)))).await;
        let panic = result.expect_err("the check must fail").into_panic();
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        assert!(message.contains("copy_from"), "{message}");
    }

    /// And the same checks pass on the sound store the broken ones wrap.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn but_not_the_sound_store() {
        let store: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
        assert!(
            !fails(store, |s| async move {
                conformance::racing_creates(&s).await;
                conformance::list_by_prefix(&s).await;
                conformance::ranges(&s).await;
            })
            .await
        );
    }
}
