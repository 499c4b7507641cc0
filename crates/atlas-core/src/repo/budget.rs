//! The tenant-wide memory budget: one count of bytes that every large buffer of a backup
//! run draws from — packs being filled, sealed packs being uploaded, downloads in flight —
//! so peak memory is set by one setting instead of growing with the number of mailboxes
//! and workers.
//!
//! Two ways to draw, on purpose:
//!
//! - [`MemoryBudget::acquire`] *waits* until the bytes fit. Only work that has not started
//!   waits (a download before its first byte), so whoever waits holds nothing the others
//!   need.
//! - [`Grant::grow`] never waits: it accounts for memory that already exists or must exist
//!   for admitted work to finish (a sealed blob joining its pack, a download longer than
//!   announced). Waiting there could deadlock — every worker holding half a buffer and
//!   waiting for the other half — so it may overshoot the limit for a moment instead.
//!
//! A worker that fills a buffer which it could release early (a pack being filled) asks
//! [`MemoryBudget::has_waiters`] and seals early when someone waits, so the budget drains
//! instead of deadlocking on half-full packs. A single request larger than the whole
//! budget is admitted once nothing else is held, so a limit below one item's size slows a
//! run down but never stops it.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

/// Default budget: sized so a run with 4 mailboxes in flight stays within SPEC §9's
/// 100 MB peak RSS (the process itself — runtime, TLS, index, the simulator-free baseline
/// measured in `atlas-bench` — takes the rest).
pub const DEFAULT_MEMORY_BUDGET: u64 = 64 << 20;

#[derive(Debug, Default)]
struct State {
    used: u64,
    /// The most ever drawn at once (for benchmarks and tests).
    peak: u64,
    waiters: usize,
}

impl State {
    fn draw(&mut self, bytes: u64) {
        self.used += bytes;
        self.peak = self.peak.max(self.used);
    }
}

#[derive(Debug)]
struct Inner {
    limit: u64,
    state: Mutex<State>,
    released: Notify,
    /// Woken when a worker starts waiting (holders of early-releasable buffers listen).
    contention: Notify,
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn release(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let mut s = self.lock();
        s.used = s.used.saturating_sub(bytes);
        drop(s);
        self.released.notify_waiters();
    }
}

/// A shared byte budget; see the module docs. Cheap to clone (clones share the count).
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    inner: Arc<Inner>,
}

impl Default for MemoryBudget {
    fn default() -> Self {
        Self::new(DEFAULT_MEMORY_BUDGET)
    }
}

impl MemoryBudget {
    /// A budget of `limit` bytes (at least 1).
    pub fn new(limit: u64) -> Self {
        Self {
            inner: Arc::new(Inner {
                limit: limit.max(1),
                state: Mutex::new(State::default()),
                released: Notify::new(),
                contention: Notify::new(),
            }),
        }
    }

    /// The limit in bytes.
    pub fn limit(&self) -> u64 {
        self.inner.limit
    }

    /// Bytes drawn now (may briefly exceed the limit; see [`Grant::grow`]).
    pub fn in_use(&self) -> u64 {
        self.inner.lock().used
    }

    /// The most drawn at once since the budget was made.
    pub fn peak(&self) -> u64 {
        self.inner.lock().peak
    }

    /// Whether some worker is waiting in [`MemoryBudget::acquire`]: holders of buffers
    /// they can release early should do so now.
    pub fn has_waiters(&self) -> bool {
        self.inner.lock().waiters > 0
    }

    /// Resolves once some worker waits in [`MemoryBudget::acquire`] (at once if one
    /// already does). Cancel-safe, for `select!` beside other work.
    pub async fn contended(&self) {
        loop {
            let notified = self.inner.contention.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.has_waiters() {
                return;
            }
            notified.await;
        }
    }

    /// Draw `bytes`, waiting until they fit (or until nothing else is drawn, for a request
    /// larger than the whole budget).
    pub async fn acquire(&self, bytes: u64) -> Grant {
        // Counted as a waiter from the first failed check until admitted or dropped (a
        // cancelled acquire must not leave a phantom waiter behind).
        let mut waiting: Option<WaiterGuard<'_>> = None;
        loop {
            let notified = self.inner.released.notified();
            tokio::pin!(notified);
            // Register before checking, so a release between the check and the wait is
            // not missed.
            notified.as_mut().enable();
            {
                let mut s = self.inner.lock();
                if s.used + bytes <= self.inner.limit || s.used == 0 {
                    s.draw(bytes);
                    if let Some(mut w) = waiting.take() {
                        w.armed = false;
                        s.waiters -= 1;
                    }
                    return self.grant(bytes);
                }
                if waiting.is_none() {
                    s.waiters += 1;
                    waiting = Some(WaiterGuard {
                        inner: &self.inner,
                        armed: true,
                    });
                    self.inner.contention.notify_waiters();
                }
            }
            notified.await;
        }
    }

    /// Draw `bytes` if they fit now.
    pub fn try_acquire(&self, bytes: u64) -> Option<Grant> {
        let mut s = self.inner.lock();
        if s.used + bytes <= self.inner.limit || s.used == 0 {
            s.draw(bytes);
            drop(s);
            Some(self.grant(bytes))
        } else {
            None
        }
    }

    /// An empty grant to [`Grant::grow`] later.
    pub fn empty(&self) -> Grant {
        self.grant(0)
    }

    fn grant(&self, bytes: u64) -> Grant {
        Grant {
            inner: Arc::clone(&self.inner),
            bytes,
        }
    }
}

/// Counts one waiter while alive (see [`MemoryBudget::acquire`]).
struct WaiterGuard<'a> {
    inner: &'a Inner,
    armed: bool,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut s = self.inner.lock();
            s.waiters = s.waiters.saturating_sub(1);
        }
    }
}

/// Bytes drawn from a [`MemoryBudget`]; given back when dropped.
#[derive(Debug)]
pub struct Grant {
    inner: Arc<Inner>,
    bytes: u64,
}

impl Grant {
    /// Bytes this grant holds.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Account for `bytes` more without waiting (memory that admitted work already holds
    /// or needs to finish; see the module docs).
    pub fn grow(&mut self, bytes: u64) {
        self.inner.lock().draw(bytes);
        self.bytes += bytes;
    }

    /// Give back everything above `bytes`.
    pub fn shrink_to(&mut self, bytes: u64) {
        if bytes < self.bytes {
            self.inner.release(self.bytes - bytes);
            self.bytes = bytes;
        }
    }

    /// Take over another grant of the same budget (its bytes move here).
    pub fn absorb(&mut self, mut other: Grant) {
        self.bytes += std::mem::take(&mut other.bytes);
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        self.inner.release(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn acquire_waits_until_bytes_are_given_back() {
        let b = MemoryBudget::new(100);
        let first = b.acquire(60).await;
        assert!(b.try_acquire(50).is_none());
        let b2 = b.clone();
        let waiter = tokio::spawn(async move { b2.acquire(50).await.bytes() });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        assert!(b.has_waiters());
        drop(first);
        assert_eq!(waiter.await.unwrap(), 50);
        assert!(!b.has_waiters());
        assert_eq!(b.in_use(), 0);
    }

    #[tokio::test]
    async fn a_request_larger_than_the_budget_runs_alone() {
        let b = MemoryBudget::new(10);
        let big = b.acquire(1_000).await;
        assert_eq!(b.in_use(), 1_000);
        assert!(b.try_acquire(1).is_none());
        drop(big);
        assert!(b.try_acquire(1).is_some());
    }

    #[test]
    fn grow_shrink_and_absorb_keep_the_count() {
        let b = MemoryBudget::new(100);
        let mut g = b.empty();
        g.grow(150);
        assert_eq!(b.in_use(), 150);
        g.shrink_to(40);
        assert_eq!(b.in_use(), 40);
        let other = b.try_acquire(30).unwrap();
        g.absorb(other);
        assert_eq!((g.bytes(), b.in_use()), (70, 70));
        drop(g);
        assert_eq!(b.in_use(), 0);
    }
}
