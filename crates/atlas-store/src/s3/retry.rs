//! The one place that decides whether a failed S3 request is sent again, and when. The
//! same shape as atlas-graph's retry module (a pure function of the failure, the
//! request's safety, the attempts and the time spent), with S3's own codes.
//!
//! Rules (pinned by the table test below):
//! - 503, 429 and the `SlowDown` code mean the server refused the request before acting on
//!   it: retried for every request, after `Retry-After` when present (S3-compatible
//!   servers send it), else exponential backoff with full jitter.
//! - 500, 502, 504 and the `InternalError` / `RequestTimeout` codes may come after the
//!   write happened: retried only when the request is *safe to repeat* — idempotent (GET,
//!   HEAD, DELETE, an overwriting PUT) or checked (a create-if-absent PUT whose 412 after a
//!   retry is compared with its own content). A multipart POST is neither: not retried.
//! - A connection that could not be opened never reached the server: retried always.
//! - A timeout or a connection lost after sending: retried only when safe to repeat.
//! - What waiting cannot heal is final at once: a host name that does not resolve, a TLS
//!   handshake that failed (rejected certificate), a request that cannot be built (an
//!   invalid host name).
//! - Every other status is final. Attempts and total time are bounded.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// Longest `Retry-After` taken at face value (a misbehaving proxy must not park a worker
/// for days); the total-time bound applies on top.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Bounds of the retry loop (from [`S3Config`](super::S3Config)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RetryPolicy {
    /// Attempts in total, including the first (at least 1).
    pub max_attempts: u32,
    /// Upper bound for all waiting of one request.
    pub max_total: Duration,
    /// First backoff step.
    pub base_delay: Duration,
    /// Largest single backoff step (before jitter).
    pub max_delay: Duration,
}

/// How an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure<'a> {
    /// An HTTP answer with this status and S3 error code (empty when the body had none).
    Status {
        status: u16,
        code: &'a str,
        retry_after: Option<Duration>,
    },
    /// The connection could not be opened: the request was never sent.
    Connect,
    /// No answer in time.
    Timeout,
    /// The connection broke after the request may have been sent.
    Interrupted,
    /// DNS, TLS or an unbuildable request: retrying gives the same answer.
    Permanent,
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    /// Wait this long, then send again.
    Retry(Duration),
    /// Stop and report the failure as it is.
    GiveUp,
}

/// Decide after `attempts` attempts (≥ 1) and `elapsed` time. `safe_to_repeat` is true for
/// idempotent or checked requests. `jitter` is uniform in `[0, 1]`, passed in so the
/// decision is a pure function.
pub(super) fn decide(
    policy: &RetryPolicy,
    failure: Failure<'_>,
    safe_to_repeat: bool,
    attempts: u32,
    elapsed: Duration,
    jitter: f64,
) -> Decision {
    let (retryable, retry_after) = match failure {
        Failure::Status {
            status,
            code,
            retry_after,
        } => {
            if status == 503 || status == 429 || code == "SlowDown" {
                (true, retry_after)
            } else if matches!(status, 500 | 502 | 504)
                || matches!(code, "InternalError" | "RequestTimeout")
            {
                (safe_to_repeat, retry_after)
            } else {
                (false, None)
            }
        }
        Failure::Connect => (true, None),
        Failure::Timeout | Failure::Interrupted => (safe_to_repeat, None),
        Failure::Permanent => (false, None),
    };
    if !retryable || attempts >= policy.max_attempts.max(1) {
        return Decision::GiveUp;
    }
    let delay = match retry_after {
        Some(d) => d.min(MAX_RETRY_AFTER),
        None => backoff(policy, attempts, jitter),
    };
    if elapsed.saturating_add(delay) > policy.max_total {
        return Decision::GiveUp;
    }
    Decision::Retry(delay)
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

/// Parse `Retry-After`: delta-seconds or an HTTP-date; `None` when absent or unreadable.
pub(super) fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(MAX_RETRY_AFTER.as_secs_f64())));
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

/// A uniform jitter value for [`decide`].
pub(super) fn jitter() -> f64 {
    rand::random::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            max_total: Duration::from_secs(300),
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(20),
        }
    }

    fn status(status: u16, code: &str, retry_after: Option<u64>) -> Failure<'_> {
        Failure::Status {
            status,
            code,
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    /// What is retried, for requests safe to repeat (GET, HEAD, DELETE, PUT) and not
    /// (a multipart POST).
    #[test]
    fn retry_table() {
        use Decision::{GiveUp, Retry};
        let ra = |s| Retry(Duration::from_secs(s));
        // jitter 1.0 → backoff equals its ceiling: 1 s after the first attempt.
        let bo = Retry(Duration::from_secs(1));
        let table: &[(Failure<'_>, Decision, Decision)] = &[
            // failure,                             safe,   not safe
            (status(503, "SlowDown", None), bo, bo),
            (status(503, "", Some(4)), ra(4), ra(4)),
            (status(429, "", None), bo, bo),
            (status(429, "", Some(2)), ra(2), ra(2)),
            (status(400, "SlowDown", None), bo, bo),
            (status(500, "InternalError", None), bo, GiveUp),
            (status(500, "", Some(3)), ra(3), GiveUp),
            (status(502, "", None), bo, GiveUp),
            (status(504, "", None), bo, GiveUp),
            (status(400, "RequestTimeout", None), bo, GiveUp),
            (status(400, "InvalidRequest", None), GiveUp, GiveUp),
            (
                status(400, "AuthorizationHeaderMalformed", None),
                GiveUp,
                GiveUp,
            ),
            (status(301, "PermanentRedirect", None), GiveUp, GiveUp),
            (status(403, "AccessDenied", None), GiveUp, GiveUp),
            (status(403, "RequestTimeTooSkewed", None), GiveUp, GiveUp),
            (status(403, "SignatureDoesNotMatch", None), GiveUp, GiveUp),
            (status(404, "NoSuchKey", None), GiveUp, GiveUp),
            (status(404, "NoSuchBucket", None), GiveUp, GiveUp),
            (status(409, "OperationAborted", None), GiveUp, GiveUp),
            (status(412, "PreconditionFailed", None), GiveUp, GiveUp),
            (status(501, "NotImplemented", None), GiveUp, GiveUp),
            (Failure::Connect, bo, bo),
            (Failure::Timeout, bo, GiveUp),
            (Failure::Interrupted, bo, GiveUp),
            (Failure::Permanent, GiveUp, GiveUp),
        ];
        for (failure, safe, not_safe) in table {
            assert_eq!(
                decide(&policy(), *failure, true, 1, Duration::ZERO, 1.0),
                *safe,
                "safe to repeat: {failure:?}"
            );
            assert_eq!(
                decide(&policy(), *failure, false, 1, Duration::ZERO, 1.0),
                *not_safe,
                "not safe to repeat: {failure:?}"
            );
        }
    }

    #[test]
    fn attempts_are_bounded() {
        let p = policy();
        let slow = status(503, "SlowDown", None);
        assert!(matches!(
            decide(&p, slow, true, 4, Duration::ZERO, 0.5),
            Decision::Retry(_)
        ));
        assert_eq!(
            decide(&p, slow, true, 5, Duration::ZERO, 0.5),
            Decision::GiveUp
        );
    }

    #[test]
    fn total_time_is_bounded_even_when_the_server_asks_for_more() {
        let p = policy();
        let asked = status(503, "SlowDown", Some(120));
        assert_eq!(
            decide(&p, asked, true, 1, Duration::from_secs(200), 0.5),
            Decision::GiveUp
        );
        assert_eq!(
            decide(&p, asked, true, 1, Duration::from_secs(100), 0.5),
            Decision::Retry(Duration::from_secs(120))
        );
        // Backoff too: a retry whose wait would end past the bound is not started.
        assert_eq!(
            decide(
                &p,
                Failure::Connect,
                true,
                2,
                Duration::from_millis(299_500),
                1.0
            ),
            Decision::GiveUp
        );
    }

    #[test]
    fn backoff_grows_exponentially_and_is_capped() {
        let p = policy();
        assert_eq!(backoff(&p, 1, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(&p, 2, 1.0), Duration::from_secs(2));
        assert_eq!(backoff(&p, 4, 1.0), Duration::from_secs(8));
        assert_eq!(backoff(&p, 10, 1.0), Duration::from_secs(20));
        assert_eq!(backoff(&p, 64, 1.0), Duration::from_secs(20));
        assert_eq!(backoff(&p, 3, 0.0), Duration::ZERO);
        assert_eq!(backoff(&p, 3, 0.5), Duration::from_secs(2));
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .expect("test date")
            .with_timezone(&Utc);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("later", now), None);
        assert_eq!(parse_retry_after("99999999", now), Some(MAX_RETRY_AFTER));
    }
}
