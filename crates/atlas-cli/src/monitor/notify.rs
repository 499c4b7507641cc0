//! `--notify-url`: POST the run's JSON document to a webhook when the run is over.
//!
//! The run's outcome is decided before the first attempt, and nothing here can change it:
//! a receiver that is down, slow or refusing costs a warning on stderr and at most
//! [`Policy::budget`] of waiting, never the exit code. Attempts are bounded (a failing
//! receiver must not keep a nightly job alive), and only what may heal is retried: no
//! answer, a timeout, 408, 429 and 5xx (honouring `Retry-After` within the budget). Any
//! other answer ends it at once — 4xx says the receiver refuses this request; a redirect
//! means a webhook that moved, to reconfigure rather than follow with a POST turned GET —
//! and so do a name that does not resolve and a refused TLS certificate.
//!
//! The URL is never printed whole: webhook URLs often carry their secret in the path or
//! query (Slack, Teams); messages name scheme, host and port only.

use std::time::Duration;

use url::Url;

/// How persistently to deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Time one attempt may take (connect, send, answer).
    pub timeout: Duration,
    /// Wait before the second attempt; doubled for each further one.
    pub first_backoff: Duration,
    /// Longest `Retry-After` honoured.
    pub max_retry_after: Duration,
}

impl Policy {
    /// The worst case a run's end can be delayed by: every attempt timing out, every
    /// backoff waited.
    pub fn budget(&self) -> Duration {
        let mut total = self.timeout * self.attempts;
        let mut backoff = self.first_backoff;
        for _ in 1..self.attempts {
            total += backoff.max(self.max_retry_after);
            backoff *= 2;
        }
        total
    }
}

impl Default for Policy {
    /// 3 attempts of at most 10 s, 1 s then 2 s apart (Retry-After up to 5 s): under 45 s.
    fn default() -> Self {
        Self {
            attempts: 3,
            timeout: Duration::from_secs(10),
            first_backoff: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(5),
        }
    }
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP answer with this status and, if sent, `Retry-After` in seconds.
    Status(u16, Option<u64>),
    /// No answer within the timeout.
    Timeout,
    /// No connection (refused, reset): the receiver may come back.
    Unreachable(String),
    /// A failure waiting will not heal: the name does not resolve, the TLS certificate is
    /// refused.
    Broken(String),
}

/// What to do after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Delivered.
    Done,
    /// Try again after this long.
    Retry(Duration),
    /// Stop; the notification failed for this reason.
    GiveUp(String),
}

/// The decision after attempt number `attempt` (1-based): the one place that says what is
/// retried.
pub fn decide(policy: &Policy, attempt: u32, outcome: &Outcome) -> Next {
    let retryable = match outcome {
        Outcome::Status(s, _) if (200..300).contains(s) => return Next::Done,
        Outcome::Status(s, _) => *s == 408 || *s == 429 || *s >= 500,
        Outcome::Timeout | Outcome::Unreachable(_) => true,
        Outcome::Broken(_) => false,
    };
    let reason = match outcome {
        Outcome::Status(s, _) => format!("the receiver answered HTTP {s}"),
        Outcome::Timeout => format!("no answer within {} s", policy.timeout.as_secs()),
        Outcome::Unreachable(why) | Outcome::Broken(why) => why.clone(),
    };
    if !retryable {
        return Next::GiveUp(reason);
    }
    if attempt >= policy.attempts {
        return Next::GiveUp(format!("{reason} ({attempt} attempts)"));
    }
    let backoff = policy.first_backoff * 2u32.saturating_pow(attempt - 1);
    let wait = match outcome {
        Outcome::Status(_, Some(secs)) => Duration::from_secs(*secs).min(policy.max_retry_after),
        _ => backoff,
    };
    Next::Retry(wait)
}

/// The URL as it may be printed: scheme, host and port (webhook secrets live in the rest).
pub fn shown(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{}://{host}:{port}/…", url.scheme()),
        (Some(host), None) => format!("{}://{host}/…", url.scheme()),
        _ => format!("{}:…", url.scheme()),
    }
}

/// POST `body` (a JSON document) to `url`; `Err` says why it was not delivered.
pub async fn post(
    url: &Url,
    body: Vec<u8>,
    net: &atlas_net::NetOptions,
    policy: &Policy,
) -> Result<(), String> {
    let client = atlas_net::client_builder(net)
        .map_err(|e| e.to_string())?
        .timeout(policy.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("atlas/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let mut attempt = 1;
    loop {
        let outcome = match client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await
        {
            Ok(response) => Outcome::Status(
                response.status().as_u16(),
                response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse().ok()),
            ),
            Err(e) if e.is_timeout() => Outcome::Timeout,
            Err(e) => match atlas_net::classify(&e) {
                Some(atlas_net::NetFailure::Dns { host, .. }) => {
                    Outcome::Broken(format!("the name {host} does not resolve"))
                }
                Some(atlas_net::NetFailure::Tls { reason, .. }) => {
                    Outcome::Broken(format!("TLS: {reason}"))
                }
                None if e.is_connect() => Outcome::Unreachable("no connection".to_owned()),
                None => Outcome::Unreachable("the request failed".to_owned()),
            },
        };
        match decide(policy, attempt, &outcome) {
            Next::Done => return Ok(()),
            Next::GiveUp(reason) => return Err(reason),
            Next::Retry(wait) => {
                tracing::info!(
                    "notification to {} not delivered (attempt {attempt}); retrying in {} ms",
                    shown(url),
                    wait.as_millis()
                );
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Next, Outcome, Policy, decide, shown};

    #[test]
    fn what_is_retried_and_for_how_long() {
        let p = Policy::default();
        let s = Duration::from_secs;
        let table = [
            (1, Outcome::Status(200, None), Next::Done),
            (1, Outcome::Status(204, None), Next::Done),
            (1, Outcome::Status(503, None), Next::Retry(s(1))),
            (2, Outcome::Status(500, None), Next::Retry(s(2))),
            (1, Outcome::Status(429, Some(3)), Next::Retry(s(3))),
            // Retry-After beyond the cap waits the cap.
            (1, Outcome::Status(429, Some(3600)), Next::Retry(s(5))),
            (1, Outcome::Status(408, None), Next::Retry(s(1))),
            (1, Outcome::Timeout, Next::Retry(s(1))),
            (
                1,
                Outcome::Unreachable("no connection".into()),
                Next::Retry(s(1)),
            ),
        ];
        for (attempt, outcome, expected) in table {
            assert_eq!(decide(&p, attempt, &outcome), expected, "{outcome:?}");
        }
        // Refusals and redirects are final; the last attempt is final.
        for outcome in [
            Outcome::Status(400, None),
            Outcome::Status(401, None),
            Outcome::Status(404, None),
            Outcome::Status(301, None),
            Outcome::Broken("TLS: unknown issuer".into()),
        ] {
            assert!(
                matches!(decide(&p, 1, &outcome), Next::GiveUp(_)),
                "{outcome:?}"
            );
        }
        match decide(&p, 3, &Outcome::Status(503, None)) {
            Next::GiveUp(reason) => {
                assert!(reason.contains("503") && reason.contains("3 attempts"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_default_policy_delays_a_run_by_under_a_minute() {
        assert!(Policy::default().budget() < Duration::from_secs(60));
    }

    #[test]
    fn the_url_is_shown_without_path_or_query() {
        let url = "https://hooks.example.com:8443/services/T000/B000/SECRET?token=x"
            .parse()
            .expect("url");
        assert_eq!(shown(&url), "https://hooks.example.com:8443/…");
    }
}
