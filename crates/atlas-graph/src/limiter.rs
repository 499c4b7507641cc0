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

/// A continuously refilled token bucket shaped so that no sliding window of `window`
/// ever admits more than `limit` (Exchange counts a sliding window): a burst of a tenth of
/// the limit, refilled at `(limit - burst) / window`. Sustained throughput is 90 % of the
/// limit, which is the price of never overshooting it.
#[derive(Debug)]
struct Bucket {
    capacity: f64,
    per_sec: f64,
    level: f64,
    updated: Instant,
}

impl Bucket {
    fn new(limit: f64, window: Duration, now: Instant) -> Self {
        let secs = window.as_secs_f64().max(1e-3);
        let burst = (limit / 10.0).floor().max(1.0).min(limit);
        let per_sec = if limit > burst {
            (limit - burst) / secs
        } else {
            limit / secs
        };
        Self {
            capacity: burst,
            per_sec,
            level: burst,
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.updated).as_secs_f64();
        self.level = (self.level + dt * self.per_sec).min(self.capacity);
        self.updated = now;
    }

    /// Time until `amount` is available (an amount above capacity needs a full bucket
    /// and then drives the level negative, so an oversized upload still goes through).
    fn wait_for(&self, amount: f64) -> Duration {
        let need = amount.min(self.capacity) - self.level;
        if need <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(need / self.per_sec)
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
        st.requests.refill(now);
        st.upload.refill(now);
        #[allow(clippy::cast_precision_loss)]
        let upload = upload as f64;
        let wait = st.requests.wait_for(1.0).max(if upload > 0.0 {
            st.upload.wait_for(upload)
        } else {
            Duration::ZERO
        });
        if !wait.is_zero() {
            return Some(Wait::Budget(wait));
        }
        st.requests.level -= 1.0;
        st.upload.level -= upload;
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
        // Burst of 2 (a tenth), then throttled locally.
        assert!(s.counters.snapshot().throttle_waits >= 58);
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
        drop(s.acquire(Some("a@x"), 800).await);
        assert_eq!(s.counters.snapshot().throttle_waits, 0);
        drop(s.acquire(Some("a@x"), 800).await);
        assert_eq!(
            s.counters.snapshot().throttle_waits,
            1,
            "second upload should wait for budget"
        );
        // Larger than the whole budget: admitted once the bucket is full, never stuck.
        drop(s.acquire(Some("c@x"), 5000).await);
    }
}
