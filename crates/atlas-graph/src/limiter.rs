//! Per-mailbox limits and the tenant-wide scheduler shared by every worker.
//!
//! Exchange Online throttles per app and mailbox (graph-api.md §9.1): 4 concurrent
//! requests, 10,000 requests per 10 minutes, 150 MB of uploads per 5 minutes. Staying under
//! those limits locally is cheaper than collecting 429s. When a 429 arrives anyway, the
//! mailbox is paused for its `Retry-After`, so the other workers on that mailbox wait too
//! instead of producing a storm of further 429s.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::config::LimiterConfig;

/// Counters for progress displays and benchmarks. Cheap to read at any time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GraphStats {
    /// HTTP requests sent (including retries and token requests).
    pub requests: u64,
    /// Attempts that were repeats of a failed attempt.
    pub retries: u64,
    /// Responses that were 429 (or 503 with `Retry-After`).
    pub throttled: u64,
    /// Times a request waited because its mailbox was paused or out of budget.
    pub throttle_waits: u64,
    /// Total milliseconds spent in those waits.
    pub throttle_wait_ms: u64,
    /// Response body bytes received.
    pub bytes_received: u64,
    /// Request body bytes sent.
    pub bytes_sent: u64,
    /// Access tokens obtained.
    pub token_refreshes: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub throttled: AtomicU64,
    pub throttle_waits: AtomicU64,
    pub throttle_wait_ms: AtomicU64,
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub token_refreshes: AtomicU64,
    /// Requests and items by kind of item (crate::cost).
    pub by_kind: crate::cost::KindCounters,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> GraphStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        GraphStats {
            requests: get(&self.requests),
            retries: get(&self.retries),
            throttled: get(&self.throttled),
            throttle_waits: get(&self.throttle_waits),
            throttle_wait_ms: get(&self.throttle_wait_ms),
            bytes_received: get(&self.bytes_received),
            bytes_sent: get(&self.bytes_sent),
            token_refreshes: get(&self.token_refreshes),
        }
    }
}

/// Slots a window is divided into; each slot's amount is released only once the whole
/// slot has left the window, so the count can only err on the safe side (by at most one
/// slot's worth of time).
const SLOTS: u64 = 60;

/// Extra slots a slot stays counted after the window, so requests admitted right at the
/// window's edge still arrive after the service's window has moved on (network jitter,
/// clock skew): about 3 % of the window, 20 s of a 10-minute window.
const MARGIN_SLOTS: u64 = 2;

/// Ring cells: every slot still counted needs its own cell.
const RING: u64 = SLOTS + MARGIN_SLOTS;

/// A sliding-window budget: never more than `limit` admitted within any `window` (Exchange
/// counts a sliding window), yet the whole budget is usable at once — a restore or a
/// first backup of a mailbox is not slowed to a trickle long before Graph would object.
/// Memory is a fixed ring of [`SLOTS`] counters per mailbox.
#[derive(Debug)]
struct Bucket {
    limit: f64,
    slot: Duration,
    origin: Instant,
    /// `(slot number, amount admitted in it)`, ring-indexed by slot number.
    ring: Vec<(u64, f64)>,
}

impl Bucket {
    fn new(limit: f64, window: Duration, now: Instant) -> Self {
        let slot = (window / u32::try_from(SLOTS).unwrap_or(60)).max(Duration::from_millis(1));
        Self {
            limit,
            slot,
            origin: now,
            ring: vec![(0, 0.0); usize::try_from(RING).unwrap_or(62)],
        }
    }

    fn slot_of(&self, now: Instant) -> u64 {
        let nanos = now.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(nanos / self.slot.as_nanos().max(1)).unwrap_or(u64::MAX)
    }

    /// Amount admitted in slots still inside the window at `current`.
    fn in_window(&self, current: u64) -> f64 {
        self.ring
            .iter()
            .filter(|(n, _)| *n + SLOTS + MARGIN_SLOTS > current)
            .map(|(_, a)| *a)
            .sum()
    }

    /// Time until `amount` fits, or zero. An amount above the whole limit waits for an
    /// empty window and then goes through alone, so an oversized upload is never stuck.
    fn wait_for(&self, amount: f64, now: Instant) -> Duration {
        let current = self.slot_of(now);
        let used = self.in_window(current);
        let need = amount.min(self.limit);
        if used + need <= self.limit {
            return Duration::ZERO;
        }
        // Release slots oldest first until enough has left the window.
        let mut live: Vec<(u64, f64)> = self
            .ring
            .iter()
            .copied()
            .filter(|(n, a)| *n + SLOTS + MARGIN_SLOTS > current && *a > 0.0)
            .collect();
        live.sort_by_key(|(n, _)| *n);
        let mut remaining = used;
        for (n, a) in live {
            remaining -= a;
            if remaining + need <= self.limit {
                let free_at = self.origin + self.slot * u32::try_from(n + RING).unwrap_or(u32::MAX);
                return free_at
                    .saturating_duration_since(now)
                    .max(Duration::from_millis(1));
            }
        }
        self.slot
    }

    fn take(&mut self, amount: f64, now: Instant) {
        let current = self.slot_of(now);
        let i = usize::try_from(current % RING).unwrap_or(0);
        if self.ring[i].0 == current {
            self.ring[i].1 += amount;
        } else {
            self.ring[i] = (current, amount);
        }
    }
}

#[derive(Debug)]
struct MailboxState {
    requests: Bucket,
    upload: Bucket,
    paused_until: Option<Instant>,
}

/// The limits of one mailbox.
#[derive(Debug)]
struct MailboxLimiter {
    concurrency: Arc<Semaphore>,
    state: Mutex<MailboxState>,
}

/// Why a request has to wait.
enum Wait {
    Paused(Duration),
    Budget(Duration),
}

impl MailboxLimiter {
    fn new(cfg: &LimiterConfig, now: Instant) -> Self {
        Self {
            concurrency: Arc::new(Semaphore::new(cfg.per_mailbox_concurrency.max(1))),
            state: Mutex::new(MailboxState {
                requests: Bucket::new(
                    f64::from(cfg.requests_per_window.max(1)),
                    cfg.request_window,
                    now,
                ),
                #[allow(clippy::cast_precision_loss)]
                upload: Bucket::new(
                    cfg.upload_bytes_per_window.max(1) as f64,
                    cfg.upload_window,
                    now,
                ),
                paused_until: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MailboxState> {
        // A panic while holding this lock leaves only counters behind; keep going.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Take one request (and `upload` bytes) from the budget, or say how long to wait.
    fn try_reserve(&self, upload: u64, now: Instant) -> Option<Wait> {
        let mut st = self.lock();
        if let Some(until) = st.paused_until {
            if until > now {
                return Some(Wait::Paused(until - now));
            }
            st.paused_until = None;
        }
        #[allow(clippy::cast_precision_loss)]
        let upload = upload as f64;
        let wait = st.requests.wait_for(1.0, now).max(if upload > 0.0 {
            st.upload.wait_for(upload, now)
        } else {
            Duration::ZERO
        });
        if !wait.is_zero() {
            return Some(Wait::Budget(wait));
        }
        st.requests.take(1.0, now);
        if upload > 0.0 {
            st.upload.take(upload, now);
        }
        None
    }

    fn paused(&self, now: Instant) -> bool {
        self.lock().paused_until.is_some_and(|u| u > now)
    }

    fn pause(&self, until: Instant) {
        let mut st = self.lock();
        st.paused_until = Some(st.paused_until.map_or(until, |u| u.max(until)));
    }
}

/// Held while a request is in flight (including while its body streams); dropping it frees
/// the concurrency slots.
#[derive(Debug)]
pub struct RequestPermit {
    _tenant: OwnedSemaphorePermit,
    _mailbox: Option<OwnedSemaphorePermit>,
}

/// Tenant-wide scheduler: one per client, shared by all its clones and so by all workers.
#[derive(Debug)]
pub(crate) struct Scheduler {
    cfg: LimiterConfig,
    tenant: Arc<Semaphore>,
    mailboxes: Mutex<HashMap<String, Arc<MailboxLimiter>>>,
    pub(crate) counters: Arc<Counters>,
}

impl Scheduler {
    pub(crate) fn new(cfg: LimiterConfig, counters: Arc<Counters>) -> Self {
        Self {
            tenant: Arc::new(Semaphore::new(cfg.tenant_concurrency.max(1))),
            cfg,
            mailboxes: Mutex::new(HashMap::new()),
            counters,
        }
    }

    fn limiter(&self, mailbox: &str) -> Arc<MailboxLimiter> {
        let key = mailbox.to_ascii_lowercase();
        let mut map = self
            .mailboxes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(
            map.entry(key)
                .or_insert_with(|| Arc::new(MailboxLimiter::new(&self.cfg, Instant::now()))),
        )
    }

    /// Wait until a request to `mailbox` (uploading `upload` bytes) may start.
    pub(crate) async fn acquire(&self, mailbox: Option<&str>, upload: u64) -> RequestPermit {
        let limiter = mailbox.map(|m| self.limiter(m));
        loop {
            if let Some(lim) = &limiter {
                while let Some(wait) = lim.try_reserve(upload, Instant::now()) {
                    let d = match wait {
                        Wait::Paused(d) | Wait::Budget(d) => d,
                    };
                    Counters::add(&self.counters.throttle_waits, 1);
                    Counters::add(
                        &self.counters.throttle_wait_ms,
                        u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
                    );
                    tokio::time::sleep(d).await;
                }
            }
            let tenant = Arc::clone(&self.tenant)
                .acquire_owned()
                .await
                .expect("invariant: the tenant semaphore is never closed");
            let mailbox_permit = match &limiter {
                Some(lim) => Some(
                    Arc::clone(&lim.concurrency)
                        .acquire_owned()
                        .await
                        .expect("invariant: mailbox semaphores are never closed"),
                ),
                None => None,
            };
            // A 429 may have paused the mailbox while we queued for a slot: wait again
            // rather than fire into a known throttle.
            match &limiter {
                Some(lim) if lim.paused(Instant::now()) => {}
                _ => {
                    return RequestPermit {
                        _tenant: tenant,
                        _mailbox: mailbox_permit,
                    };
                }
            }
        }
    }

    /// Pause every request to `mailbox` for `delay` (a server-sent `Retry-After`).
    pub(crate) fn pause(&self, mailbox: &str, delay: Duration) {
        self.limiter(mailbox).pause(Instant::now() + delay);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LimiterConfig {
        LimiterConfig {
            per_mailbox_concurrency: 2,
            requests_per_window: 1000,
            request_window: Duration::from_secs(30),
            upload_bytes_per_window: 1000,
            upload_window: Duration::from_secs(10),
            tenant_concurrency: 8,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_per_mailbox_is_capped_and_other_mailboxes_are_free() {
        let s = Scheduler::new(cfg(), Arc::default());
        let _a = s.acquire(Some("a@x"), 0).await;
        let _b = s.acquire(Some("A@X"), 0).await;
        // A third request to the same mailbox must wait for a slot...
        let third = tokio::time::timeout(Duration::from_secs(1), s.acquire(Some("a@x"), 0)).await;
        assert!(
            third.is_err(),
            "third concurrent request to one mailbox was admitted"
        );
        // ...while another mailbox is unaffected.
        let other = tokio::time::timeout(Duration::from_secs(1), s.acquire(Some("b@x"), 0)).await;
        assert!(other.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn request_budget_never_exceeds_the_limit_in_any_window() {
        let mut c = cfg();
        c.requests_per_window = 20;
        c.per_mailbox_concurrency = 100;
        let s = Scheduler::new(c, Arc::default());
        let start = Instant::now();
        let mut admitted = Vec::new();
        for _ in 0..60 {
            drop(s.acquire(Some("a@x"), 0).await);
            admitted.push(Instant::now() - start);
        }
        // The whole budget at once, then held back locally until the window slides: 60
        // requests at 20 per 30 s need at least two full windows.
        assert!(s.counters.snapshot().throttle_waits >= 2);
        assert!(
            admitted[59] >= Duration::from_secs(60),
            "{:?}",
            admitted[59]
        );
        assert!(
            admitted[19] < Duration::from_secs(1),
            "the first 20 requests are not held back"
        );
        // Sliding 30 s windows never hold more than 20 admissions.
        for (i, t) in admitted.iter().enumerate() {
            let in_window = admitted[i..]
                .iter()
                .take_while(|u| **u < *t + Duration::from_secs(30))
                .count();
            assert!(in_window <= 20, "{in_window} requests within one window");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_back_every_worker_of_the_mailbox() {
        let s = Scheduler::new(cfg(), Arc::default());
        s.pause("a@x", Duration::from_secs(5));
        let blocked = tokio::time::timeout(Duration::from_secs(2), s.acquire(Some("a@x"), 0)).await;
        assert!(blocked.is_err(), "paused mailbox admitted a request");
        assert!(
            tokio::time::timeout(Duration::from_secs(1), s.acquire(Some("b@x"), 0))
                .await
                .is_ok()
        );
        // After the pause the request goes through.
        drop(s.acquire(Some("a@x"), 0).await);
        assert!(s.counters.snapshot().throttle_waits >= 1);
    }

    #[tokio::test(start_paused = true)]
    async fn upload_bytes_budget_and_oversized_uploads() {
        let mut c = cfg();
        c.upload_bytes_per_window = 10_000;
        let s = Scheduler::new(c, Arc::default());
        drop(s.acquire(Some("a@x"), 6000).await);
        assert_eq!(s.counters.snapshot().throttle_waits, 0);
        drop(s.acquire(Some("a@x"), 6000).await);
        assert_eq!(
            s.counters.snapshot().throttle_waits,
            1,
            "second upload should wait for budget"
        );
        // Larger than the whole budget: admitted once the bucket is full, never stuck.
        drop(s.acquire(Some("c@x"), 5000).await);
    }
}
