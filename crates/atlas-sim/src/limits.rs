//! Per-mailbox throttling (graph-api.md §9.1), injected faults and request accounting.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::{ConcurrencyScope, Limits};
use crate::server::{Sim, lock};

/// Request and byte counts for one kind of endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindCounts {
    /// Requests received (including throttled and failed ones).
    pub requests: u64,
    /// Request body bytes received.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// Requests answered with 429 or 503 because of a limit or an injected fault.
    pub throttled: u64,
    /// Requests answered with another 4xx/5xx status.
    pub errors: u64,
}

/// Request accounting by endpoint kind (`token`, `users`, `folders`, `delta`, `message`,
/// `mime`, `attachments`, `attachment_value`, `create_message`, `create_attachment`,
/// `upload_session`, `upload_chunk`, `batch`, `reports`, `report_download`, `discovery`, …).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCounters {
    /// Counts per endpoint kind.
    pub by_kind: BTreeMap<String, KindCounts>,
}

impl RequestCounters {
    /// Total requests over all kinds.
    pub fn total_requests(&self) -> u64 {
        self.by_kind.values().map(|k| k.requests).sum()
    }

    /// Counts for one kind (zero if never seen).
    pub fn kind(&self, kind: &str) -> KindCounts {
        self.by_kind.get(kind).cloned().unwrap_or_default()
    }

    pub(crate) fn record(&mut self, kind: &str, bytes_in: usize, bytes_out: usize, status: u16) {
        let k = self.by_kind.entry(kind.to_owned()).or_default();
        k.requests += 1;
        k.bytes_in += bytes_in as u64;
        k.bytes_out += bytes_out as u64;
        if status == 429 || status == 503 {
            k.throttled += 1;
        } else if status >= 400 {
            k.errors += 1;
        }
    }
}

#[derive(Debug, Default)]
struct Bucket {
    in_flight: usize,
    requests: VecDeque<Instant>,
    uploads: VecDeque<(Instant, u64)>,
}

/// Sliding-window limiter keyed by mailbox (or by app, per configuration).
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    buckets: HashMap<Option<usize>, Bucket>,
}

/// Why a request was throttled, with the seconds to put in `Retry-After`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Throttle {
    Concurrency(u64),
    Requests(u64),
    IncomingBytes(u64),
}

/// Releases a concurrency slot when the request finishes (or is dropped mid-flight).
#[derive(Debug)]
pub(crate) struct SlotGuard {
    sim: Arc<Sim>,
    key: Option<usize>,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut l = lock(&self.sim.limiter);
        if let Some(b) = l.buckets.get_mut(&self.key) {
            b.in_flight = b.in_flight.saturating_sub(1);
        }
    }
}

fn retry_after(oldest: Instant, window: Duration, now: Instant) -> u64 {
    let left = window.saturating_sub(now.duration_since(oldest));
    left.as_secs().max(1)
}

impl Limiter {
    /// Admits a request for `mailbox` or says why not. Usage accrues even when throttled,
    /// as documented.
    pub(crate) fn admit(
        &mut self,
        limits: &Limits,
        mailbox: usize,
        upload_bytes: u64,
    ) -> Result<Option<usize>, Throttle> {
        let now = Instant::now();
        let key = match limits.concurrency_scope {
            ConcurrencyScope::PerMailbox => Some(mailbox),
            ConcurrencyScope::PerApp => None,
        };
        // Rate windows are always per mailbox; only concurrency has a configurable scope.
        let b = self.buckets.entry(Some(mailbox)).or_default();
        while b
            .requests
            .front()
            .is_some_and(|t| now.duration_since(*t) >= limits.request_window)
        {
            b.requests.pop_front();
        }
        while b
            .uploads
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) >= limits.upload_window)
        {
            b.uploads.pop_front();
        }
        b.requests.push_back(now);
        if limits.requests_per_window > 0 && b.requests.len() > limits.requests_per_window {
            let oldest = b.requests.front().copied().unwrap_or(now);
            return Err(Throttle::Requests(retry_after(
                oldest,
                limits.request_window,
                now,
            )));
        }
        if upload_bytes > 0 {
            b.uploads.push_back((now, upload_bytes));
            let total: u64 = b.uploads.iter().map(|u| u.1).sum();
            if limits.upload_bytes_per_window > 0 && total > limits.upload_bytes_per_window {
                let oldest = b.uploads.front().map_or(now, |u| u.0);
                return Err(Throttle::IncomingBytes(retry_after(
                    oldest,
                    limits.upload_window,
                    now,
                )));
            }
        }
        let c = self.buckets.entry(key).or_default();
        if limits.concurrent_requests > 0 && c.in_flight >= limits.concurrent_requests {
            return Err(Throttle::Concurrency(1));
        }
        c.in_flight += 1;
        Ok(key)
    }
}

impl Sim {
    pub(crate) fn admit(
        self: &Arc<Self>,
        mailbox: usize,
        upload_bytes: u64,
    ) -> Result<SlotGuard, Throttle> {
        let key = lock(&self.limiter).admit(&self.cfg.limits, mailbox, upload_bytes)?;
        Ok(SlotGuard {
            sim: self.clone(),
            key,
        })
    }
}
