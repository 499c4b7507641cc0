//! `FaultStore`: counted writes, injected failures, crashes, transient errors.

use std::sync::Arc;

use atlas_core::ports::{BlobStore, PutOptions, StoreError, StoreKey};
use atlas_store::{CrashLanding, FaultPlan, FaultStore, MemoryStore};
use bytes::Bytes;

fn key(s: &str) -> StoreKey {
    StoreKey::new(s).expect("test keys are valid")
}

fn memory() -> Arc<dyn BlobStore> {
    Arc::new(MemoryStore::new())
}

/// A small "service": writes three objects, deletes a scratch one, then writes a commit
/// marker last. Its crash-safety invariant: if `commit` exists, all of `a`, `b`, `c` do.
async fn scenario(store: &dyn BlobStore) -> Result<(), StoreError> {
    for name in ["a", "b", "c"] {
        store
            .put(&key(name), Bytes::from(name), PutOptions::CREATE)
            .await?;
    }
    store.delete(&key("scratch")).await?;
    store
        .put(
            &key("commit"),
            Bytes::from_static(b"ok"),
            PutOptions::CREATE,
        )
        .await
}

#[tokio::test]
async fn counts_writes_and_passes_everything_through() {
    let store = FaultStore::new(memory());
    scenario(&store).await.unwrap();
    assert_eq!(store.writes(), 5, "four puts and one delete");
    store.get(&key("a")).await.unwrap();
    store.head(&key("a")).await.unwrap();
    store.list("").await.unwrap();
    assert_eq!(store.writes(), 5, "reads are not counted");
    assert_eq!(store.injected(), 0);
    assert!(store.describe().contains("in-memory store"));
}

#[tokio::test]
async fn fails_only_the_chosen_write() {
    let store = FaultStore::with_plan(memory(), FaultPlan::new().fail_write(2));
    store
        .put(&key("a"), Bytes::new(), PutOptions::CREATE)
        .await
        .unwrap();
    let err = store
        .put(&key("b"), Bytes::new(), PutOptions::CREATE)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
    assert!(!err.is_retryable());
    store
        .put(&key("c"), Bytes::new(), PutOptions::CREATE)
        .await
        .unwrap();
    assert!(!store.is_crashed());
    let inner = store.inner();
    assert!(inner.head(&key("a")).await.unwrap().is_some());
    assert!(
        inner.head(&key("b")).await.unwrap().is_none(),
        "the failed write did not happen"
    );
    assert!(inner.head(&key("c")).await.unwrap().is_some());
    assert_eq!(store.injected(), 1);
}

#[tokio::test]
async fn a_lost_crash_drops_the_write_and_everything_after() {
    let store = FaultStore::with_plan(
        memory(),
        FaultPlan::new().crash_at_write(2, CrashLanding::Lost),
    );
    store
        .put(&key("a"), Bytes::new(), PutOptions::CREATE)
        .await
        .unwrap();
    assert!(
        store
            .put(&key("b"), Bytes::new(), PutOptions::CREATE)
            .await
            .is_err()
    );
    assert!(store.is_crashed());
    // Reads fail too once the "process" is dead.
    assert!(store.get(&key("a")).await.is_err());
    assert!(store.list("").await.is_err());
    assert!(
        store
            .put(&key("c"), Bytes::new(), PutOptions::CREATE)
            .await
            .is_err()
    );
    let keys: Vec<String> = store
        .inner()
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key.to_string())
        .collect();
    assert_eq!(keys, ["a"]);
}

#[tokio::test]
async fn a_landed_crash_applies_the_write_but_reports_failure() {
    let store = FaultStore::with_plan(
        memory(),
        FaultPlan::new().crash_at_write(2, CrashLanding::Landed),
    );
    store
        .put(&key("a"), Bytes::new(), PutOptions::CREATE)
        .await
        .unwrap();
    assert!(
        store
            .put(&key("b"), Bytes::from_static(b"b"), PutOptions::CREATE)
            .await
            .is_err()
    );
    assert_eq!(
        store.inner().get(&key("b")).await.unwrap(),
        Bytes::from_static(b"b")
    );
}

/// The intended use: count the scenario's writes, then crash it at every position and
/// check the invariant on what is left.
#[tokio::test]
async fn replaying_a_scenario_crashing_at_every_write() {
    let counter = FaultStore::new(memory());
    scenario(&counter).await.unwrap();
    let total = counter.writes();

    for n in 1..=total {
        for landing in [CrashLanding::Lost, CrashLanding::Landed] {
            let store =
                FaultStore::with_plan(memory(), FaultPlan::new().crash_at_write(n, landing));
            assert!(
                scenario(&store).await.is_err(),
                "crash at write {n} must surface"
            );
            let after = store.inner();
            let committed = after.head(&key("commit")).await.unwrap().is_some();
            assert_eq!(committed, n == total && landing == CrashLanding::Landed);
            if committed {
                for name in ["a", "b", "c"] {
                    assert!(after.head(&key(name)).await.unwrap().is_some());
                }
            }
            // Exactly the writes before the crash (plus the crashed one if it landed).
            let present = after.list("").await.unwrap().len() as u64;
            let landed_puts = (1..n).filter(|w| *w != 4).count() as u64
                + u64::from(landing == CrashLanding::Landed && n != 4);
            assert_eq!(present, landed_puts, "crash at write {n} ({landing:?})");
        }
    }
}

#[tokio::test]
async fn arm_resets_the_counter_after_fault_free_setup() {
    let store = FaultStore::new(memory());
    store
        .put(&key("setup"), Bytes::new(), PutOptions::CREATE)
        .await
        .unwrap();
    store.arm(FaultPlan::new().fail_write(1));
    assert_eq!(store.writes(), 0);
    assert!(
        store.delete(&key("setup")).await.is_err(),
        "first write after arm fails"
    );
    assert!(store.inner().head(&key("setup")).await.unwrap().is_some());
}

#[tokio::test]
async fn transient_faults_are_retryable_and_reproducible() {
    let always = FaultStore::with_plan(memory(), FaultPlan::new().transient(1.0, 7));
    let err = always.get(&key("x")).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(
        always
            .put(&key("x"), Bytes::new(), PutOptions::CREATE)
            .await
            .is_err()
    );
    assert!(
        always.inner().head(&key("x")).await.unwrap().is_none(),
        "nothing was written"
    );

    let never = FaultStore::with_plan(memory(), FaultPlan::new().transient(0.0, 7));
    never
        .put(&key("x"), Bytes::new(), PutOptions::CREATE)
        .await
        .unwrap();

    let pattern = |seed| async move {
        let store = FaultStore::with_plan(memory(), FaultPlan::new().transient(0.5, seed));
        let mut outcomes = Vec::new();
        for _ in 0..64 {
            outcomes.push(store.head(&key("x")).await.is_ok());
        }
        outcomes
    };
    let first = pattern(42).await;
    assert_eq!(first, pattern(42).await, "same seed, same faults");
    assert!(
        first.contains(&true) && first.contains(&false),
        "a 50% rate over 64 calls mixes"
    );
}
