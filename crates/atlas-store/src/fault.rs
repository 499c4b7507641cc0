//! A fault-injecting [`BlobStore`] wrapper for crash-safety tests.
//!
//! Crash safety is a claim about every point a process can die at. [`FaultStore`] makes
//! those points enumerable: run a scenario once through an unarmed wrapper and read
//! [`FaultStore::writes`]; then replay it once per write position `n` with
//! [`FaultPlan::crash_at_write`]`(n, …)`, "restart" on [`FaultStore::inner`] (the state a
//! killed process leaves behind) and assert the repository is still consistent.
//!
//! Writes are `put` and `delete` calls, numbered from 1 in the order they reach the
//! wrapper (including ones that then fail). Reads are never counted, so adding a read to
//! a service does not shift the positions of existing tests.
//!
//! A crashed write either did not happen ([`CrashLanding::Lost`]) or happened without the
//! caller learning it ([`CrashLanding::Landed`]). There is no "half-written object"
//! option: `put` is atomic by contract, so what a killed local writer leaves is a stale
//! temp file that no reader can see — from the `BlobStore` side, `Lost`.
//!
//! [`FaultPlan::transient`] fails a random fraction of all operations with
//! [`StoreError::Transient`] before they reach the inner store, from a seeded generator so
//! a failing run can be replayed exactly.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use atlas_core::ports::blob_store::{CopySource, LockStatus};
use atlas_core::ports::{BlobStore, ObjectMeta, PutOptions, Retention, StoreError, StoreKey};
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What happens to the write a crash interrupts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashLanding {
    /// The process died before the write reached the store: it is absent.
    Lost,
    /// The write is durable but the process died before it saw the acknowledgement.
    Landed,
}

/// Which faults a [`FaultStore`] injects. Build with the chained methods; the default
/// injects nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultPlan {
    fail_writes: BTreeSet<u64>,
    crash: Option<(u64, CrashLanding)>,
    transient: Option<(f64, u64)>,
    disk_full_from: Option<u64>,
}

impl FaultPlan {
    /// A plan that injects nothing (the wrapper only counts writes).
    pub fn new() -> Self {
        Self::default()
    }

    /// Fail write number `n` (1-based) with an I/O error without performing it; later
    /// operations work normally. May be given several times.
    #[must_use]
    pub fn fail_write(mut self, n: u64) -> Self {
        self.fail_writes.insert(n);
        self
    }

    /// Simulate a full disk from write number `n` (1-based) on: every `put` fails with
    /// [`StoreError::StorageFull`] without being performed, while deletes (which free
    /// space) and reads still work, as on a local file system that ran out of space.
    #[must_use]
    pub fn disk_full_from_write(mut self, n: u64) -> Self {
        self.disk_full_from = Some(n);
        self
    }

    /// Simulate the process being killed at write number `n` (1-based): that write fails
    /// (after landing or not, per `landing`) and every later operation fails too.
    #[must_use]
    pub fn crash_at_write(mut self, n: u64, landing: CrashLanding) -> Self {
        self.crash = Some((n, landing));
        self
    }

    /// Fail each operation (read or write) with probability `rate` with
    /// [`StoreError::Transient`], before it reaches the inner store. `rate` is clamped to
    /// `0.0..=1.0` (NaN counts as 0); `seed` makes the sequence of failures reproducible.
    #[must_use]
    pub fn transient(mut self, rate: f64, seed: u64) -> Self {
        let rate = if rate.is_nan() {
            0.0
        } else {
            rate.clamp(0.0, 1.0)
        };
        self.transient = Some((rate, seed));
        self
    }
}

/// Counters and the armed plan, behind one lock so that numbering writes and deciding
/// their fate is a single step even under concurrency.
#[derive(Debug)]
struct State {
    plan: FaultPlan,
    rng: StdRng,
    writes: u64,
    injected: u64,
    crashed_at: Option<u64>,
}

impl State {
    fn new(plan: FaultPlan) -> Self {
        let seed = plan.transient.map_or(0, |(_, seed)| seed);
        Self {
            plan,
            rng: StdRng::seed_from_u64(seed),
            writes: 0,
            injected: 0,
            crashed_at: None,
        }
    }
}

/// Whether an operation changes the store (and so gets a write number).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Read,
    /// A `put` (a full disk refuses it).
    Put,
    /// Any other write (delete, retention changes, copies).
    Write,
}

/// What the wrapper does with one operation.
enum Decision {
    /// Forward to the inner store.
    Pass,
    /// Return this error without touching the inner store.
    Fail(StoreError),
    /// Forward, then return this error whatever the inner store said.
    ApplyThenFail(StoreError),
}

/// Wraps any store and injects the faults of a [`FaultPlan`]. With the empty plan it is a
/// transparent pass-through that counts writes.
pub struct FaultStore {
    inner: Arc<dyn BlobStore>,
    state: Mutex<State>,
}

impl fmt::Debug for FaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("FaultStore")
            .field("inner", &self.inner)
            .field("plan", &state.plan)
            .field("writes", &state.writes)
            .field("crashed_at", &state.crashed_at)
            .finish_non_exhaustive()
    }
}

impl FaultStore {
    /// A pass-through wrapper that only counts writes.
    pub fn new(inner: Arc<dyn BlobStore>) -> Self {
        Self::with_plan(inner, FaultPlan::new())
    }

    /// A wrapper with `plan` armed from the start.
    pub fn with_plan(inner: Arc<dyn BlobStore>, plan: FaultPlan) -> Self {
        Self {
            inner,
            state: Mutex::new(State::new(plan)),
        }
    }

    /// Replace the plan and reset the write counter, the crash and the random sequence,
    /// so a test can set up state fault-free and count positions from here on.
    pub fn arm(&self, plan: FaultPlan) {
        *self.state() = State::new(plan);
    }

    /// How many writes (`put`, `delete`) reached the wrapper since creation or [`arm`](Self::arm).
    pub fn writes(&self) -> u64 {
        self.state().writes
    }

    /// How many faults were injected (each failed operation counts once).
    pub fn injected(&self) -> u64 {
        self.state().injected
    }

    /// Whether the simulated crash has happened.
    pub fn is_crashed(&self) -> bool {
        self.state().crashed_at.is_some()
    }

    /// The wrapped store: what a restarted process would find after the crash.
    pub fn inner(&self) -> Arc<dyn BlobStore> {
        Arc::clone(&self.inner)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update under the lock is a few field assignments that cannot panic
        // halfway, so a poisoned lock (a panicking test thread) holds consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn decide(&self, op: Op, key: &str) -> Decision {
        let mut state = self.state();
        if let Some(at) = state.crashed_at {
            state.injected += 1;
            return Decision::Fail(crashed_error(key, at));
        }
        if op != Op::Read {
            state.writes += 1;
            let n = state.writes;
            if op == Op::Put && state.plan.disk_full_from.is_some_and(|from| n >= from) {
                state.injected += 1;
                return Decision::Fail(StoreError::StorageFull {
                    key: key.to_string(),
                });
            }
            if let Some((at, landing)) = state.plan.crash {
                if at == n {
                    state.crashed_at = Some(n);
                    state.injected += 1;
                    let err = crashed_error(key, n);
                    return match landing {
                        CrashLanding::Lost => Decision::Fail(err),
                        CrashLanding::Landed => Decision::ApplyThenFail(err),
                    };
                }
            }
            if state.plan.fail_writes.contains(&n) {
                state.injected += 1;
                return Decision::Fail(StoreError::Io {
                    key: key.to_string(),
                    source: std::io::Error::other(format!("injected failure of write #{n}")),
                });
            }
        }
        if let Some((rate, _)) = state.plan.transient {
            if state.rng.gen_bool(rate) {
                state.injected += 1;
                return Decision::Fail(StoreError::Transient {
                    key: key.to_string(),
                    detail: "injected transient fault".into(),
                });
            }
        }
        Decision::Pass
    }

    /// Apply the decision for one operation around `run`.
    async fn guarded<T, F>(&self, op: Op, key: &str, run: F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, StoreError>>,
    {
        match self.decide(op, key) {
            Decision::Pass => run.await,
            Decision::Fail(err) => Err(err),
            Decision::ApplyThenFail(err) => {
                // The caller never learns the outcome, whatever it was.
                let _ = run.await;
                Err(err)
            }
        }
    }
}

fn crashed_error(key: &str, at: u64) -> StoreError {
    StoreError::Io {
        key: key.to_string(),
        source: std::io::Error::other(format!("store crashed (injected at write #{at})")),
    }
}

#[async_trait]
impl BlobStore for FaultStore {
    async fn put(&self, key: &StoreKey, data: Bytes, opts: PutOptions) -> Result<(), StoreError> {
        self.guarded(Op::Put, key.as_str(), self.inner.put(key, data, opts))
            .await
    }

    async fn get(&self, key: &StoreKey) -> Result<Bytes, StoreError> {
        self.guarded(Op::Read, key.as_str(), self.inner.get(key))
            .await
    }

    async fn get_range(&self, key: &StoreKey, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.guarded(Op::Read, key.as_str(), self.inner.get_range(key, range))
            .await
    }

    async fn head(&self, key: &StoreKey) -> Result<Option<ObjectMeta>, StoreError> {
        self.guarded(Op::Read, key.as_str(), self.inner.head(key))
            .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        self.guarded(Op::Read, prefix, self.inner.list(prefix))
            .await
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.guarded(Op::Write, key.as_str(), self.inner.delete(key))
            .await
    }

    fn describe(&self) -> String {
        format!("{} (with fault injection)", self.inner.describe())
    }

    // Lock and copy operations pass through, so a wrapped S3 store keeps its Object Lock
    // and server-side copy; the ones that write count as writes.
    async fn extend_retention(
        &self,
        key: &StoreKey,
        retention: Retention,
    ) -> Result<Retention, StoreError> {
        self.guarded(
            Op::Write,
            key.as_str(),
            self.inner.extend_retention(key, retention),
        )
        .await
    }

    async fn retention(&self, key: &StoreKey) -> Result<Option<Retention>, StoreError> {
        self.guarded(Op::Read, key.as_str(), self.inner.retention(key))
            .await
    }

    async fn lock_status(&self) -> Result<Option<LockStatus>, StoreError> {
        self.inner.lock_status().await
    }

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
        self.guarded(
            Op::Write,
            key.as_str(),
            self.inner.copy_from(source, source_key, key, opts),
        )
        .await
    }
}
