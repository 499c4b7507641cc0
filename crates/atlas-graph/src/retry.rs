//! The one place that decides whether a failed attempt is tried again, and when.
//!
//! Rules (pinned by the table test below):
//! - 429 and 503 mean the service refused the request, so it had no effect: retried for
//!   every method, after `Retry-After` when present (on *every* attempt, not only after a
//!   local budget runs out), else exponential backoff with full jitter.
//! - 500, 502 and 504 may come after the work was done: retried for idempotent requests;
//!   for a non-idempotent POST the outcome is unknown and the caller must check first.
//! - A connection that could not be established never reached the server: retried always.
//! - A timeout or a connection lost after sending: retried only when idempotent.
//! - A host name that does not resolve is final at once, for every method: waiting does
//!   not fix a misspelt endpoint or a missing DNS entry, and eight attempts of backoff
//!   only hid the cause behind "could not connect" (atlas-store's S3 retry rule is the
//!   same). A rejected TLS certificate is final too; the client names it
//!   ([`crate::GraphError::Tls`]) before asking here.
//! - Every other status is final.
//! - Attempts and total time are bounded by [`RetryPolicy`].

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::RetryPolicy;

/// Longest `Retry-After` taken at face value; anything longer is treated as this (a
/// misbehaving proxy must not park a worker for days).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// How an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// An HTTP answer with this status.
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// The connection could not be opened: the request was never sent.
    Connect,
    /// The host name did not resolve (the resolver answered; nothing was sent).
    Dns,
    /// No answer in time.
    Timeout,
    /// The connection broke after the request may have been sent.
    Interrupted,
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Wait this long, then try again. `server_asked` marks a `Retry-After` wait, which
    /// should also pause the other requests to the same mailbox.
    Retry { delay: Duration, server_asked: bool },
    /// Stop and report the failure as it is.
    GiveUp,
    /// Stop: a write may have happened; the caller must check before retrying.
    OutcomeUnknown,
}

/// Decide after `attempts` attempts (≥ 1) and `elapsed` time. `jitter` is a uniform
/// number in `[0, 1]`, passed in so the decision is a pure function.
pub(crate) fn decide(
    policy: &RetryPolicy,
    failure: Failure,
    idempotent: bool,
    attempts: u32,
    elapsed: Duration,
    jitter: f64,
) -> Decision {
    let (retryable, retry_after) = match failure {
        Failure::Status {
            status: 429 | 503,
            retry_after,
        } => (true, retry_after),
        Failure::Status {
            status: 500 | 502 | 504,
            retry_after,
        } => {
            if !idempotent {
                return Decision::OutcomeUnknown;
            }
            (true, retry_after)
        }
        Failure::Status { .. } | Failure::Dns => (false, None),
        Failure::Connect => (true, None),
        Failure::Timeout | Failure::Interrupted => {
            if !idempotent {
                return Decision::OutcomeUnknown;
            }
            (true, None)
        }
    };
    if !retryable || attempts >= policy.max_attempts.max(1) {
        return Decision::GiveUp;
    }
    let (delay, server_asked) = match retry_after {
        Some(d) => (d.min(MAX_RETRY_AFTER), true),
        None => (backoff(policy, attempts, jitter), false),
    };
    if elapsed.saturating_add(delay) > policy.max_total {
        return Decision::GiveUp;
    }
    Decision::Retry {
        delay,
        server_asked,
    }
}

/// Full-jitter exponential backoff: uniform in `[0, min(max, base · 2^(attempts-1))]`.
fn backoff(policy: &RetryPolicy, attempts: u32, jitter: f64) -> Duration {
    let exp = attempts.saturating_sub(1).min(20);
    let ceiling = policy
        .base_delay
        .saturating_mul(1u32 << exp)
        .min(policy.max_delay);
    ceiling.mul_f64(jitter.clamp(0.0, 1.0))
}

/// Parse `Retry-After`: delta-seconds (Graph sends fractions such as `2.128`) or an
/// HTTP-date. `None` when absent or unreadable, so the caller falls back to backoff.
pub(crate) fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if let Ok(secs) = value.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Some(Duration::from_secs_f64(
                secs.min(MAX_RETRY_AFTER.as_secs_f64()),
            ));
        }
        return None;
    }
    let when = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some(
        (when - now)
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

/// How a transport error (no HTTP answer) failed, for [`decide`]: a name that did not
/// resolve is told apart by error type (atlas-net's resolver), never by message text.
pub(crate) fn transport_failure(e: &reqwest::Error) -> Failure {
    if matches!(
        atlas_net::classify(e),
        Some(atlas_net::NetFailure::Dns { .. })
    ) {
        Failure::Dns
    } else if e.is_connect() {
        Failure::Connect
    } else if e.is_timeout() {
        Failure::Timeout
    } else {
        Failure::Interrupted
    }
}

/// A uniform jitter value for [`decide`].
pub(crate) fn jitter() -> f64 {
    rand::random::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            max_total: Duration::from_secs(600),
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
        }
    }

    fn status(status: u16, retry_after: Option<u64>) -> Failure {
        Failure::Status {
            status,
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    /// What is retried, for idempotent (GET, chunk PUT) and non-idempotent (POST) requests.
    #[test]
    fn retry_table() {
        use Decision::{GiveUp, OutcomeUnknown};
        let ra = |s| Decision::Retry {
            delay: Duration::from_secs(s),
            server_asked: true,
        };
        // jitter 1.0 → backoff equals its ceiling: 1 s after the first attempt.
        let bo = Decision::Retry {
            delay: Duration::from_secs(1),
            server_asked: false,
        };
        let table: &[(Failure, Decision, Decision)] = &[
            // failure,               idempotent, non-idempotent
            (status(429, Some(7)), ra(7), ra(7)),
            (status(429, None), bo, bo),
            (status(503, Some(3)), ra(3), ra(3)),
            (status(503, None), bo, bo),
            (status(504, Some(2)), ra(2), OutcomeUnknown),
            (status(504, None), bo, OutcomeUnknown),
            (status(500, None), bo, OutcomeUnknown),
            (status(502, None), bo, OutcomeUnknown),
            (status(400, None), GiveUp, GiveUp),
            (status(401, None), GiveUp, GiveUp),
            (status(403, None), GiveUp, GiveUp),
            (status(404, None), GiveUp, GiveUp),
            (status(409, None), GiveUp, GiveUp),
            (status(410, None), GiveUp, GiveUp),
            (status(413, None), GiveUp, GiveUp),
            (status(501, None), GiveUp, GiveUp),
            (Failure::Connect, bo, bo),
            (Failure::Dns, GiveUp, GiveUp),
            (Failure::Timeout, bo, OutcomeUnknown),
            (Failure::Interrupted, bo, OutcomeUnknown),
        ];
        for (failure, idem, non_idem) in table {
            assert_eq!(
                decide(&policy(), *failure, true, 1, Duration::ZERO, 1.0),
                *idem,
                "idempotent {failure:?}"
            );
            assert_eq!(
                decide(&policy(), *failure, false, 1, Duration::ZERO, 1.0),
                *non_idem,
                "non-idempotent {failure:?}"
            );
        }
    }

    #[test]
    fn attempts_are_bounded() {
        let p = policy();
        assert!(matches!(
            decide(&p, status(429, Some(1)), true, 4, Duration::ZERO, 0.5),
            Decision::Retry { .. }
        ));
        assert_eq!(
            decide(&p, status(429, Some(1)), true, 5, Duration::ZERO, 0.5),
            Decision::GiveUp
        );
    }

    #[test]
    fn total_time_is_bounded_even_when_the_server_asks_for_more() {
        let p = policy();
        assert_eq!(
            decide(
                &p,
                status(429, Some(120)),
                true,
                1,
                Duration::from_secs(500),
                0.5
            ),
            Decision::GiveUp
        );
        assert!(matches!(
            decide(
                &p,
                status(429, Some(120)),
                true,
                1,
                Duration::from_secs(400),
                0.5
            ),
            Decision::Retry { .. }
        ));
    }

    #[test]
    fn backoff_grows_exponentially_and_is_capped() {
        let p = policy();
        assert_eq!(backoff(&p, 1, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(&p, 2, 1.0), Duration::from_secs(2));
        assert_eq!(backoff(&p, 4, 1.0), Duration::from_secs(8));
        assert_eq!(backoff(&p, 10, 1.0), Duration::from_secs(30));
        assert_eq!(backoff(&p, 64, 1.0), Duration::from_secs(30));
        assert_eq!(backoff(&p, 3, 0.0), Duration::ZERO);
        assert_eq!(backoff(&p, 3, 0.5), Duration::from_secs(2));
    }

    #[test]
    fn retry_after_seconds_fractions_and_dates() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .expect("test date")
            .with_timezone(&Utc);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after(" 2.128 ", now),
            Some(Duration::from_millis(2128))
        );
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        // A date in the past means "now".
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("", now), None);
        assert_eq!(parse_retry_after("99999999", now), Some(MAX_RETRY_AFTER));
    }
}
