//! Core's one `open`: it tells an empty store, a current repository and a TypeScript
//! Atlas 1.x bucket apart, opens the 1.x bucket through a converted cache (named by core,
//! kept up to date idempotently), and refuses to write into the old format.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use atlas_core::Error;
use atlas_core::open::{
    Access, CacheStores, Conversion, Format, OpenOptions, detect, open, v1_cache_name,
};
use atlas_core::ports::{BlobStore, FixedClock, NullReporter};
use atlas_core::repo::{KdfChoice, Passphrase, Repository};
use atlas_store::MemoryStore;
use chrono::{TimeZone, Utc};

use crate::v1::common::{LUCAS, TENANT, expected_snapshots, fixture_store, passphrase};

/// Caches in memory, remembering which names were asked for.
#[derive(Debug, Default)]
struct MemoryCaches(Mutex<BTreeMap<String, Arc<dyn BlobStore>>>);

impl CacheStores for MemoryCaches {
    fn open(&self, name: &str) -> atlas_core::Result<Arc<dyn BlobStore>> {
        let mut map = self.0.lock().unwrap();
        Ok(Arc::clone(
            map.entry(name.to_owned())
                .or_insert_with(|| Arc::new(MemoryStore::new())),
        ))
    }
}

fn options(access: Access, caches: &MemoryCaches) -> OpenOptions<'_> {
    OpenOptions {
        access,
        v1_cache: Some(caches),
        lease_owner: "test".into(),
        clock: Arc::new(FixedClock::new(
            Utc.with_ymd_and_hms(2027, 1, 5, 9, 0, 0).unwrap(),
        )),
        reporter: &NullReporter,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_reads_a_v1_bucket_through_its_cache_and_refuses_writes() {
    let store = fixture_store();
    assert_eq!(detect(&store).await.unwrap(), Format::V1);
    let caches = MemoryCaches::default();
    let opened = open(
        Arc::clone(&store),
        TENANT,
        &passphrase(),
        &options(Access::Read, &caches),
    )
    .await
    .unwrap();
    let v1 = opened.v1.as_ref().expect("a v1 source");
    let Conversion::Converted(summary) = &v1.conversion else {
        panic!("not converted: {:?}", v1.conversion);
    };
    let lucas = atlas_core::model::MailboxId::new(LUCAS);
    let snaps = opened.repo.list_snapshots(&lucas).await.unwrap();
    assert_eq!(snaps.len(), expected_snapshots(LUCAS).len());
    assert!(summary.snapshots_written() >= snaps.len());
    // The cache lives under the name core computes for this store and tenant.
    let name = v1_cache_name(store.as_ref(), TENANT);
    assert_eq!(
        caches.0.lock().unwrap().keys().cloned().collect::<Vec<_>>(),
        vec![name]
    );
    // A second open converts nothing new.
    let again = open(
        Arc::clone(&store),
        TENANT,
        &passphrase(),
        &options(Access::Read, &caches),
    )
    .await
    .unwrap();
    let Some(Conversion::Converted(summary)) = again.v1.map(|v| v.conversion) else {
        panic!("not converted");
    };
    assert_eq!(summary.snapshots_written(), 0);
    // Writing, or creating, is refused before anything is written.
    for access in [Access::Write, Access::Create(KdfChoice::SCRYPT_MINIMUM)] {
        let err = open(
            Arc::clone(&store),
            TENANT,
            &passphrase(),
            &options(access, &caches),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, Error::V1ReadOnly { .. }), "{err:?}");
    }
    // Without a cache location a v1 bucket cannot be read.
    let mut no_cache = options(Access::Read, &caches);
    no_cache.v1_cache = None;
    assert!(matches!(
        open(store, TENANT, &passphrase(), &no_cache)
            .await
            .unwrap_err(),
        Error::InvalidInput { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_creates_only_when_asked_and_opens_a_current_repository() {
    let store: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
    let caches = MemoryCaches::default();
    let pw = Passphrase::new("p");
    assert_eq!(detect(&store).await.unwrap(), Format::Empty);
    for access in [Access::Read, Access::Write] {
        let err = open(Arc::clone(&store), "t", &pw, &options(access, &caches))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NotInitialized { .. }), "{err:?}");
    }
    let created = open(
        Arc::clone(&store),
        "t",
        &pw,
        &options(Access::Create(KdfChoice::SCRYPT_MINIMUM), &caches),
    )
    .await
    .unwrap();
    assert!(created.v1.is_none());
    assert_eq!(detect(&store).await.unwrap(), Format::Current);
    let opened = open(
        Arc::clone(&store),
        "t",
        &pw,
        &options(Access::Read, &caches),
    )
    .await
    .unwrap();
    assert_eq!(
        opened.repo.config().map(|c| c.repo_id),
        created.repo.config().map(|c| c.repo_id)
    );
    assert!(caches.0.lock().unwrap().is_empty());
    let _: Repository = opened.repo;
}
