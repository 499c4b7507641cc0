//! The [`BlobStore`] conformance suite: one executable copy of the contract in
//! `atlas_core::ports::blob_store` that every backend must pass.
//!
//! Backends are interchangeable only if they agree on the details services rely on —
//! `Create` losing a race with `AlreadyExists`, `list` sorted bytewise, empty ranges,
//! `delete` of a missing key. Each check below pins one part; [`run_all`] runs them all.
//!
//! The checks are backend-agnostic and safe on a shared store (an S3 bucket used by other
//! test runs): each one works under its own fresh prefix `conformance/<uuid>/<check>/`,
//! asserts only about keys under it, and deletes what it wrote when it passes. They panic
//! with a message naming the broken rule, like `assert!`, so a backend's test calls them
//! directly:
//!
//! ```no_run
//! # async fn demo() {
//! use std::sync::Arc;
//! use atlas_core::ports::BlobStore;
//! let store: Arc<dyn BlobStore> = Arc::new(atlas_store::MemoryStore::new());
//! atlas_store::conformance::run_all(&store).await;
//! # }
//! ```
//!
//! The stores are taken as `Arc` because the race checks hit one store from several
//! spawned tasks; run them on a multi-threaded runtime so the races are real.
//!
//! # Wrappers
//!
//! A wrapper (fault injection, counting, gating) is a `BlobStore` around another one. The
//! trait's optional methods (retention, lock status, server-side copy) have defaults, so
//! a wrapper that forgets to forward one still compiles — and silently turns an S3
//! store's Object Lock or server-side copy off. [`check_wrapper`] catches that: it wraps
//! a probe store whose every method answers distinctively, calls every method through
//! the wrapper, and fails on any answer that did not come from the probe. Every wrapper's
//! tests call it.

use std::fmt::Debug;
use std::sync::Arc;

use atlas_core::ports::blob_store::{CopySource, DefaultRetention, LockStatus};
use atlas_core::ports::{
    BlobStore, LockMode, ObjectMeta, PutOptions, Retention, StoreError, StoreKey,
};
use bytes::Bytes;
use chrono::{DateTime, TimeZone as _, Utc};
use tokio::task::JoinSet;

/// Run every check, one after the other.
pub async fn run_all(store: &Arc<dyn BlobStore>) {
    put_get_round_trip(store).await;
    create_vs_overwrite(store).await;
    racing_creates(store).await;
    missing_key(store).await;
    ranges(store).await;
    head_reports_size(store).await;
    list_by_prefix(store).await;
    delete_is_idempotent(store).await;
    empty_objects(store).await;
    large_objects(store).await;
    keys_with_at_and_plus(store).await;
    overwrite_is_atomic_for_readers(store).await;
}

/// `put` then `get` returns the same bytes, including all 256 byte values.
pub async fn put_get_round_trip(store: &Arc<dyn BlobStore>) {
    let ns = Namespace::new("put_get_round_trip");
    let key = ns.key("data/obj");
    let data = Bytes::from((0..=255u8).cycle().take(1000).collect::<Vec<_>>());
    ok(
        store.put(&key, data.clone(), PutOptions::CREATE).await,
        "put",
    );
    assert_eq!(
        ok(store.get(&key).await, "get"),
        data,
        "get returns what put stored"
    );
    ns.cleanup(store).await;
}

/// `Create` refuses an existing key and leaves it untouched; `Overwrite` replaces
/// (including with a shorter object) and also creates.
pub async fn create_vs_overwrite(store: &Arc<dyn BlobStore>) {
    let ns = Namespace::new("create_vs_overwrite");
    let key = ns.key("obj");
    ok(
        store
            .put(&key, bytes("first version"), PutOptions::CREATE)
            .await,
        "create on absent key",
    );
    expect_already_exists(store.put(&key, bytes("second"), PutOptions::CREATE).await);
    assert_eq!(
        ok(store.get(&key).await, "get"),
        bytes("first version"),
        "a refused Create must not change the object"
    );

    ok(
        store.put(&key, bytes("short"), PutOptions::OVERWRITE).await,
        "overwrite",
    );
    assert_eq!(
        ok(store.get(&key).await, "get"),
        bytes("short"),
        "Overwrite replaces the whole object, not a prefix of it"
    );
    assert_eq!(
        size_of(store, &key).await,
        Some(5),
        "head after a shrinking overwrite"
    );

    let fresh = ns.key("fresh");
    ok(
        store.put(&fresh, bytes("new"), PutOptions::OVERWRITE).await,
        "overwrite on absent key",
    );
    assert_eq!(
        ok(store.get(&fresh).await, "get"),
        bytes("new"),
        "Overwrite creates"
    );
    ns.cleanup(store).await;
}

/// Of N concurrent `Create` puts of one key exactly one succeeds, the rest get
/// `AlreadyExists`, and the stored object is the winner's, whole.
pub async fn racing_creates(store: &Arc<dyn BlobStore>) {
    const RACERS: u8 = 8;
    let ns = Namespace::new("racing_creates");
    let key = ns.key("lease");
    // Large enough that writes overlap in time on a real disk or network.
    let payload = |racer: u8| Bytes::from(vec![racer; 256 * 1024 + usize::from(racer)]);

    let mut tasks = JoinSet::new();
    for racer in 0..RACERS {
        let store = Arc::clone(store);
        let key = key.clone();
        tasks.spawn(async move {
            (
                racer,
                store.put(&key, payload(racer), PutOptions::CREATE).await,
            )
        });
    }
    let mut winners = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (racer, result) = joined.expect("a racing put task panicked");
        match result {
            Ok(()) => winners.push(racer),
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => panic!("a losing Create must fail with AlreadyExists, got {e:?}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one racing Create must win, winners: {winners:?}"
    );
    assert_eq!(
        ok(store.get(&key).await, "get"),
        payload(winners[0]),
        "the stored object must be the winner's"
    );
    ns.cleanup(store).await;
}

/// A missing key: `get` and `get_range` fail with `NotFound`, `head` is `None`.
pub async fn missing_key(store: &Arc<dyn BlobStore>) {
    let ns = Namespace::new("missing_key");
    let key = ns.key("never/written");
    expect_not_found(store.get(&key).await);
    expect_not_found(store.get_range(&key, 0..0).await);
    expect_not_found(store.get_range(&key, 0..10).await);
    assert_eq!(
        ok(store.head(&key).await, "head"),
        None,
        "head of a missing key"
    );
}

/// Ranges are byte offsets with an exclusive end; empty ranges anywhere inside (or at the
/// end of) the object are fine; anything reaching past the end, or reversed, is
/// `InvalidRange`.
pub async fn ranges(store: &Arc<dyn BlobStore>) {
    let ns = Namespace::new("ranges");
    let key = ns.key("obj");
    let data: Vec<u8> = (0..100u8).collect();
    ok(
        store
            .put(&key, Bytes::from(data.clone()), PutOptions::CREATE)
            .await,
        "put",
    );

    for (start, end) in [
        (0, 100),
        (0, 1),
        (10, 20),
        (99, 100),
        (0, 0),
        (50, 50),
        (100, 100),
    ] {
        let got = ok(store.get_range(&key, start..end).await, "get_range");
        assert_eq!(
            got.as_ref(),
            &data[start as usize..end as usize],
            "get_range({start}..{end})"
        );
    }
    for (start, end) in [(0, 101), (100, 101), (101, 101), (150, 200), (20, 10)] {
        match store.get_range(&key, start..end).await {
            Err(StoreError::InvalidRange { size, .. }) => {
                assert_eq!(size, 100, "InvalidRange reports the object size");
            }
            other => panic!(
                "get_range({start}..{end}) of a 100-byte object must be InvalidRange, got {other:?}"
            ),
        }
    }
    ns.cleanup(store).await;
}

/// `head` reports the key and exact size of an existing object.
pub async fn head_reports_size(store: &Arc<dyn BlobStore>) {
    let ns = Namespace::new("head_reports_size");
    let key = ns.key("obj");
    ok(
        store
            .put(&key, Bytes::from(vec![7u8; 4321]), PutOptions::CREATE)
            .await,
        "put",
    );
    assert_eq!(
        ok(store.head(&key).await, "head"),
        Some(ObjectMeta {
            key: key.clone(),
            size: 4321
        }),
        "head of an existing object"
    );
    ns.cleanup(store).await;
}

/// `list` returns exactly the keys starting with the prefix — also when the prefix ends
/// mid-segment — sorted bytewise, with sizes; other prefixes never leak in.
pub async fn list_by_prefix(store: &Arc<dyn BlobStore>) {
    let ns = Namespace::new("list_by_prefix");
    // Chosen so bytewise order differs from a depth-first directory walk: '-' < '.' < '/'.
    let layout = [
        ("p/a", 1usize),
        ("p/b-x", 2),
        ("p/b.x", 3),
        ("p/b/c", 4),
        ("p/b/d/e", 5),
        ("p/ba", 6),
        ("p2/x", 7),
        ("q/p/a", 8),
    ];
    // Written in reverse so a store returning insertion order fails.
    for (rel, size) in layout.iter().rev() {
        ok(
            store
                .put(
                    &ns.key(rel),
                    Bytes::from(vec![0u8; *size]),
                    PutOptions::CREATE,
                )
                .await,
            "put",
        );
    }

    let expect = |rels: &[&str]| -> Vec<(String, u64)> {
        rels.iter()
            .map(|rel| {
                let size = layout
                    .iter()
                    .find(|(r, _)| r == rel)
                    .map(|(_, s)| *s as u64)
                    .expect("expected keys come from the layout");
                (ns.key(rel).as_str().to_string(), size)
            })
            .collect()
    };
    let listed = |found: Vec<ObjectMeta>| -> Vec<(String, u64)> {
        found
            .into_iter()
            .map(|m| (m.key.as_str().to_string(), m.size))
            .collect()
    };

    let cases: [(&str, &[&str]); 7] = [
        ("p/", &["p/a", "p/b-x", "p/b.x", "p/b/c", "p/b/d/e", "p/ba"]),
        (
            "p",
            &["p/a", "p/b-x", "p/b.x", "p/b/c", "p/b/d/e", "p/ba", "p2/x"],
        ),
        ("p/b", &["p/b-x", "p/b.x", "p/b/c", "p/b/d/e", "p/ba"]),
        ("p/b/", &["p/b/c", "p/b/d/e"]),
        ("p/b/d/e", &["p/b/d/e"]),
        ("p/z", &[]),
        ("nothing/here/", &[]),
    ];
    for (rel_prefix, want) in cases {
        let prefix = ns.prefix(rel_prefix);
        let got = listed(ok(store.list(&prefix).await, "list"));
        assert_eq!(got, expect(want), "list({prefix:?})");
    }
    let all = listed(ok(store.list(&ns.prefix("")).await, "list"));
    assert_eq!(all.len(), layout.len(), "list of the whole namespace");
    assert!(
        all.windows(2).all(|w| w[0].0 < w[1].0),
        "list must be sorted: {all:?}"
    );
    ns.cleanup(store).await;
}

/// Deleting removes the object from `get`, `head` and `list`; deleting again, or a key
/// that never existed, succeeds; a deleted key can be created again.
pub async fn delete_is_idempotent(store: &Arc<dyn BlobStore>) {
    let ns = Namespace::new("delete_is_idempotent");
    let key = ns.key("dir/obj");
    let sibling = ns.key("dir/sibling");
    ok(store.put(&key, bytes("x"), PutOptions::CREATE).await, "put");
    ok(
        store.put(&sibling, bytes("y"), PutOptions::CREATE).await,
        "put",
    );

    ok(store.delete(&key).await, "delete");
    expect_not_found(store.get(&key).await);
    assert_eq!(
        ok(store.head(&key).await, "head"),
        None,
        "head after delete"
    );
    let keys: Vec<StoreKey> = ok(store.list(&ns.prefix("")).await, "list")
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(
        keys,
        vec![sibling.clone()],
        "only the sibling is left after delete"
    );
    ok(store.delete(&key).await, "second delete of the same key");
    ok(
        store.delete(&ns.key("never/existed")).await,
        "delete of a missing key",
    );
    assert_eq!(
        ok(store.get(&sibling).await, "get"),
        bytes("y"),
        "delete touches only its key"
    );

    ok(
        store.put(&key, bytes("again"), PutOptions::CREATE).await,
        "Create after delete",
    );
    assert_eq!(
        ok(store.get(&key).await, "get"),
        bytes("again"),
        "recreated object"
    );
    ns.cleanup(store).await;
}

/// Zero-byte objects exist: they are listed with size 0, `head` finds them, `Create`
/// refuses to replace them.
pub async fn empty_objects(store: &Arc<dyn BlobStore>) {
    let ns = Namespace::new("empty_objects");
    let key = ns.key("empty");
    ok(
        store.put(&key, Bytes::new(), PutOptions::CREATE).await,
        "put empty",
    );
    assert!(
        ok(store.get(&key).await, "get").is_empty(),
        "get of an empty object"
    );
    assert_eq!(
        ok(store.get_range(&key, 0..0).await, "get_range"),
        Bytes::new()
    );
    assert_eq!(
        size_of(store, &key).await,
        Some(0),
        "head of an empty object"
    );
    let listed = ok(store.list(&ns.prefix("")).await, "list");
    assert_eq!(
        listed,
        vec![ObjectMeta {
            key: key.clone(),
            size: 0
        }],
        "an empty object is listed"
    );
    expect_already_exists(store.put(&key, bytes("x"), PutOptions::CREATE).await);
    ns.cleanup(store).await;
}

/// A 20 MiB object round-trips, and ranges deep inside it read the right bytes.
pub async fn large_objects(store: &Arc<dyn BlobStore>) {
    const SIZE: usize = 20 * 1024 * 1024;
    let ns = Namespace::new("large_objects");
    let key = ns.key("big");
    // A pattern with a period that is not a power of two catches offset mistakes.
    let data = Bytes::from((0..SIZE).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    ok(
        store.put(&key, data.clone(), PutOptions::CREATE).await,
        "put 20 MiB",
    );
    assert_eq!(
        size_of(store, &key).await,
        Some(SIZE as u64),
        "head of a 20 MiB object"
    );
    let got = ok(store.get(&key).await, "get");
    assert!(got == data, "a 20 MiB object must round-trip byte for byte");
    let start = 15 * 1024 * 1024 + 7;
    let got = ok(
        store
            .get_range(&key, start as u64..(start + 4096) as u64)
            .await,
        "get_range",
    );
    assert!(
        got == data.slice(start..start + 4096),
        "a range deep inside a large object"
    );
    ns.cleanup(store).await;
}

/// Keys with `@`, `+`, `=` (mailbox addresses from Atlas 1.x repositories) work in every
/// operation and come back from `list` unchanged.
pub async fn keys_with_at_and_plus(store: &Arc<dyn BlobStore>) {
    let ns = Namespace::new("keys_with_at_and_plus");
    let key = ns.key("data/first.last+tag@contoso.onmicrosoft.com/ab=cd");
    ok(
        store.put(&key, bytes("mail"), PutOptions::CREATE).await,
        "put",
    );
    assert_eq!(ok(store.get(&key).await, "get"), bytes("mail"));
    assert_eq!(size_of(store, &key).await, Some(4), "head");
    let listed = ok(store.list(&ns.prefix("data/first.last+tag@")).await, "list");
    assert_eq!(
        listed.into_iter().map(|m| m.key).collect::<Vec<_>>(),
        vec![key.clone()],
        "list by a prefix ending in '@'"
    );
    ok(store.delete(&key).await, "delete");
    assert_eq!(
        ok(store.head(&key).await, "head"),
        None,
        "head after delete"
    );
    ns.cleanup(store).await;
}

/// While one task overwrites a key with whole versions of different sizes, concurrent
/// readers only ever see a complete version — never a prefix or a mix.
pub async fn overwrite_is_atomic_for_readers(store: &Arc<dyn BlobStore>) {
    const VERSIONS: u8 = 12;
    let ns = Namespace::new("overwrite_is_atomic_for_readers");
    let key = ns.key("obj");
    let version = |v: u8| Bytes::from(vec![v; 64 * 1024 + usize::from(v) * 4096]);
    ok(store.put(&key, version(0), PutOptions::CREATE).await, "put");

    let writer = {
        let store = Arc::clone(store);
        let key = key.clone();
        tokio::spawn(async move {
            for v in 1..=VERSIONS {
                store
                    .put(&key, version(v), PutOptions::OVERWRITE)
                    .await
                    .unwrap_or_else(|e| panic!("overwrite #{v} failed: {e:?}"));
            }
        })
    };
    let mut readers = JoinSet::new();
    for _ in 0..3 {
        let store = Arc::clone(store);
        let key = key.clone();
        readers.spawn(async move {
            for _ in 0..20 {
                let got = store
                    .get(&key)
                    .await
                    .unwrap_or_else(|e| panic!("get during overwrites failed: {e:?}"));
                let v = got
                    .first()
                    .copied()
                    .unwrap_or_else(|| panic!("read an empty object"));
                assert!(
                    v <= VERSIONS && got == version(v),
                    "a reader saw a partial or mixed object ({} bytes starting with {v})",
                    got.len()
                );
                tokio::task::yield_now().await;
            }
        });
    }
    writer.await.expect("the writer task panicked");
    while let Some(joined) = readers.join_next().await {
        joined.expect("a reader task panicked");
    }
    assert_eq!(
        ok(store.get(&key).await, "get"),
        version(VERSIONS),
        "the last overwrite wins"
    );
    ns.cleanup(store).await;
}

/// Check that `wrap` forwards every [`BlobStore`] method, the optional ones included, to
/// the store it wraps and returns the inner store's answers (see the module docs).
/// Panics naming the first method that did not reach the wrapped store.
pub async fn check_wrapper<W>(wrap: W)
where
    W: FnOnce(Arc<dyn BlobStore>) -> Arc<dyn BlobStore>,
{
    let probe = Arc::new(Probe::default());
    let wrapper = wrap(probe.clone() as Arc<dyn BlobStore>);
    let key = StoreKey::new("probe/object").expect("invariant: a valid key");
    let source = probe_copy_source();

    ok(
        wrapper.put(&key, bytes("probe"), PutOptions::CREATE).await,
        "put",
    );
    assert_eq!(ok(wrapper.get(&key).await, "get"), bytes("probe"), "get");
    assert_eq!(
        ok(wrapper.get_range(&key, 1..3).await, "get_range"),
        bytes("ro"),
        "get_range"
    );
    assert_eq!(
        ok(wrapper.head(&key).await, "head").map(|m| m.size),
        Some(5),
        "head"
    );
    assert_eq!(ok(wrapper.list("probe/").await, "list").len(), 1, "list");
    assert_eq!(
        ok(
            wrapper.extend_retention(&key, probe_retention()).await,
            "extend_retention"
        ),
        probe_retention(),
        "extend_retention must reach the wrapped store (the default refuses: no Object Lock)"
    );
    assert_eq!(
        ok(wrapper.retention(&key).await, "retention"),
        Some(probe_retention()),
        "retention must reach the wrapped store (the default says: none)"
    );
    assert_eq!(
        ok(wrapper.lock_status().await, "lock_status"),
        Some(probe_lock_status()),
        "lock_status must reach the wrapped store (the default says: no notion of a lock)"
    );
    assert_eq!(
        wrapper.copy_source(),
        Some(source.clone()),
        "copy_source must reach the wrapped store (the default says: no server-side copy)"
    );
    assert!(
        ok(
            wrapper
                .copy_from(
                    &source,
                    &key,
                    &StoreKey::new("probe/copy").expect("valid key"),
                    PutOptions::OVERWRITE
                )
                .await,
            "copy_from"
        ),
        "copy_from must reach the wrapped store (the default says: not possible here)"
    );
    ok(wrapper.delete(&key).await, "delete");
    assert!(
        wrapper.describe().contains(PROBE_DESCRIPTION),
        "describe names the wrapped store: {}",
        wrapper.describe()
    );
    let calls = probe.calls.lock().expect("invariant: probe lock").clone();
    for method in [
        "put",
        "get",
        "get_range",
        "head",
        "list",
        "extend_retention",
        "retention",
        "lock_status",
        "copy_source",
        "copy_from",
        "delete",
    ] {
        assert!(
            calls.contains(&method),
            "{method} did not reach the wrapped store (calls seen: {calls:?})"
        );
    }
}

const PROBE_DESCRIPTION: &str = "conformance probe store";

fn probe_retention() -> Retention {
    Retention {
        mode: LockMode::Compliance,
        retain_until: probe_date(),
    }
}

fn probe_date() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2099, 1, 2, 3, 4, 5)
        .single()
        .expect("invariant: a valid date")
}

fn probe_lock_status() -> LockStatus {
    LockStatus {
        versioning: true,
        object_lock: true,
        default_retention: Some(DefaultRetention {
            mode: LockMode::Governance,
            days: 7,
        }),
    }
}

fn probe_copy_source() -> CopySource {
    CopySource {
        endpoint: "probe://conformance".to_owned(),
        bucket: "probe-bucket".to_owned(),
        key_prefix: String::new(),
        account: "probe-account".to_owned(),
    }
}

/// A store whose every method answers differently from the trait's defaults and records
/// that it was called.
#[derive(Debug, Default)]
struct Probe {
    objects: crate::MemoryStore,
    calls: std::sync::Mutex<Vec<&'static str>>,
}

impl Probe {
    fn called(&self, method: &'static str) {
        self.calls
            .lock()
            .expect("invariant: probe lock")
            .push(method);
    }
}

#[async_trait::async_trait]
impl BlobStore for Probe {
    async fn put(&self, key: &StoreKey, data: Bytes, opts: PutOptions) -> Result<(), StoreError> {
        self.called("put");
        self.objects.put(key, data, opts).await
    }

    async fn get(&self, key: &StoreKey) -> Result<Bytes, StoreError> {
        self.called("get");
        self.objects.get(key).await
    }

    async fn get_range(
        &self,
        key: &StoreKey,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes, StoreError> {
        self.called("get_range");
        self.objects.get_range(key, range).await
    }

    async fn head(&self, key: &StoreKey) -> Result<Option<ObjectMeta>, StoreError> {
        self.called("head");
        self.objects.head(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        self.called("list");
        self.objects.list(prefix).await
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.called("delete");
        self.objects.delete(key).await
    }

    fn describe(&self) -> String {
        PROBE_DESCRIPTION.to_owned()
    }

    async fn extend_retention(
        &self,
        _key: &StoreKey,
        retention: Retention,
    ) -> Result<Retention, StoreError> {
        self.called("extend_retention");
        Ok(retention)
    }

    async fn retention(&self, _key: &StoreKey) -> Result<Option<Retention>, StoreError> {
        self.called("retention");
        Ok(Some(probe_retention()))
    }

    async fn lock_status(&self) -> Result<Option<LockStatus>, StoreError> {
        self.called("lock_status");
        Ok(Some(probe_lock_status()))
    }

    fn copy_source(&self) -> Option<CopySource> {
        self.called("copy_source");
        Some(probe_copy_source())
    }

    async fn copy_from(
        &self,
        source: &CopySource,
        _source_key: &StoreKey,
        _key: &StoreKey,
        _opts: PutOptions,
    ) -> Result<bool, StoreError> {
        self.called("copy_from");
        Ok(*source == probe_copy_source())
    }
}

/// A fresh key prefix per check, so checks never see each other's (or other runs')
/// objects on a shared store.
struct Namespace {
    base: String,
}

impl Namespace {
    fn new(check: &str) -> Self {
        Self {
            base: format!("conformance/{}/{check}/", uuid::Uuid::new_v4().simple()),
        }
    }

    fn prefix(&self, rel: &str) -> String {
        format!("{}{rel}", self.base)
    }

    fn key(&self, rel: &str) -> StoreKey {
        let full = self.prefix(rel);
        StoreKey::new(full.as_str()).unwrap_or_else(|e| panic!("test key {full:?} is invalid: {e}"))
    }

    /// Delete everything the check wrote (only reached when the check passed).
    async fn cleanup(&self, store: &Arc<dyn BlobStore>) {
        for meta in ok(store.list(&self.base).await, "list for cleanup") {
            ok(store.delete(&meta.key).await, "delete for cleanup");
        }
        assert!(
            ok(store.list(&self.base).await, "list after cleanup").is_empty(),
            "the namespace must be empty after deleting every listed key"
        );
    }
}

fn bytes(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

fn ok<T>(result: Result<T, StoreError>, what: &str) -> T {
    result.unwrap_or_else(|e| panic!("{what} failed: {e:?}"))
}

async fn size_of(store: &Arc<dyn BlobStore>, key: &StoreKey) -> Option<u64> {
    let meta = ok(store.head(key).await, "head");
    if let Some(meta) = &meta {
        assert_eq!(&meta.key, key, "head reports the key it was asked about");
    }
    meta.map(|m| m.size)
}

fn expect_not_found<T: Debug>(result: Result<T, StoreError>) {
    match result {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
}

fn expect_already_exists<T: Debug>(result: Result<T, StoreError>) {
    match result {
        Err(StoreError::AlreadyExists { .. }) => {}
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
}
