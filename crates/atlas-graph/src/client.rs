//! The HTTP core: one request path that every API call goes through.
//!
//! Order of things for each attempt: wait for the mailbox limiter and the tenant scheduler,
//! take a token, send (with `Prefer: IdType="ImmutableId"` and a fresh `client-request-id`),
//! and on failure let [`crate::retry`] decide. A 401 invalidates the token and is repeated
//! once with a new one; it does not consume retry budget.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use url::Url;

use crate::auth::{AccessToken, TokenProvider};
use crate::config::{GraphConfig, RetryPolicy};
use crate::endpoint::Endpoint;
use crate::error::{ErrorBody, GraphError, HttpFailure, translate};
use crate::limiter::{Counters, GraphStats, RequestPermit, Scheduler};
use crate::retry::{self, Decision, Failure};
use atlas_core::model::MailboxId;

/// Largest JSON body accepted into memory (a page of 1,000 messages with bodies is far
/// smaller); anything bigger is a protocol error, not an out-of-memory.
const MAX_JSON_BODY: usize = 64 * 1024 * 1024;
/// Error bodies are read only this far.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Characters left as-is in query values: RFC 3986 unreserved.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A Microsoft Graph client for one tenant.
///
/// Cheap to clone; clones share the token cache, the per-mailbox limiters and the counters,
/// which is what keeps many workers on one tenant inside Graph's limits.
#[derive(Clone, Debug)]
pub struct GraphClient {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    http: reqwest::Client,
    graph_origin: Url,
    api_root: Url,
    tokens: TokenProvider,
    scheduler: Scheduler,
    counters: Arc<Counters>,
    retry: RetryPolicy,
    request_timeout: Duration,
}

/// One logical request.
#[derive(Debug)]
pub(crate) struct Req<'a> {
    pub method: Method,
    pub url: Url,
    pub endpoint: Endpoint,
    pub mailbox: Option<&'a MailboxId>,
    pub body: Option<(Bytes, &'static str)>,
    /// Extra `Prefer` preferences, joined after `IdType="ImmutableId"`.
    pub prefer: Option<String>,
    pub headers: Vec<(HeaderName, String)>,
    /// Send the bearer token (false for pre-authenticated upload and download URLs).
    pub auth: bool,
    /// Hand 3xx answers back instead of treating them as errors.
    pub allow_redirect: bool,
    /// Whether the request counts against the mailbox's upload-bytes budget.
    pub upload: bool,
}

impl<'a> Req<'a> {
    pub(crate) fn get(endpoint: Endpoint, url: Url, mailbox: Option<&'a MailboxId>) -> Self {
        Self {
            method: Method::GET,
            url,
            endpoint,
            mailbox,
            body: None,
            prefer: None,
            headers: Vec::new(),
            auth: true,
            allow_redirect: false,
            upload: false,
        }
    }

    pub(crate) fn post_json(
        endpoint: Endpoint,
        url: Url,
        mailbox: Option<&'a MailboxId>,
        body: &serde_json::Value,
    ) -> Self {
        Self {
            method: Method::POST,
            body: Some((Bytes::from(body.to_string()), "application/json")),
            upload: true,
            ..Self::get(endpoint, url, mailbox)
        }
    }

    pub(crate) fn prefer(mut self, prefer: impl Into<String>) -> Self {
        self.prefer = Some(prefer.into());
        self
    }
}

/// A successful answer.
#[derive(Debug)]
pub(crate) struct Sent {
    pub response: reqwest::Response,
    pub permit: RequestPermit,
    /// The whole body, when the request asked for buffering.
    pub body: Option<Bytes>,
}

impl GraphClient {
    /// Build a client. Fails only on an unusable configuration (bad URL, unreadable
    /// certificate or key); no network traffic happens until the first call.
    pub fn new(config: GraphConfig) -> Result<Self, GraphError> {
        let bad_endpoint = || GraphError::Protocol {
            endpoint: Endpoint::Token,
            reason: format!(
                "graph endpoint '{}' is not a valid URL",
                config.graph_endpoint
            ),
        };
        let mut graph_origin = Url::parse(&config.graph_endpoint).map_err(|_| bad_endpoint())?;
        if graph_origin.cannot_be_a_base() {
            return Err(bad_endpoint());
        }
        if !graph_origin.path().ends_with('/') {
            let p = format!("{}/", graph_origin.path());
            graph_origin.set_path(&p);
        }
        let api_root = graph_origin.join("v1.0/").map_err(|_| bad_endpoint())?;
        // Trust (OS store + extra CA files) and proxies as configured, shared with S3.
        let http = atlas_net::client_builder(&config.net)
            .map_err(|e| GraphError::Protocol {
                endpoint: Endpoint::Token,
                reason: e.to_string(),
            })?
            .connect_timeout(config.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("atlas-graph/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| GraphError::Protocol {
                endpoint: Endpoint::Token,
                reason: format!("HTTP client could not be built: {}", e.without_url()),
            })?;
        let counters = Arc::new(Counters::default());
        let tokens =
            TokenProvider::new(&config, &graph_origin, http.clone(), Arc::clone(&counters))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                graph_origin,
                api_root,
                tokens,
                scheduler: Scheduler::new(config.limiter.clone(), Arc::clone(&counters)),
                counters,
                retry: config.retry,
                request_timeout: config.request_timeout,
            }),
        })
    }

    /// Request counters since the client was built (shared by all clones).
    pub fn stats(&self) -> GraphStats {
        self.inner.counters.snapshot()
    }

    /// Graph requests by kind of item and the items each kind's delta reported, since
    /// the client was built (shared by all clones; see [`crate::RequestCost`]).
    pub fn request_costs(&self) -> Vec<crate::RequestCost> {
        self.inner.counters.by_kind.snapshot()
    }

    /// Items a delta page of `kind` reported (for [`GraphClient::request_costs`]).
    pub(crate) fn count_items(&self, kind: atlas_core::model::ItemKind, n: usize) {
        self.inner.counters.by_kind.items(kind, n);
    }

    /// Obtain an access token now, so a configuration error shows before any work starts.
    pub async fn check_sign_in(&self) -> Result<(), GraphError> {
        self.inner.tokens.token().await.map(|_| ())
    }

    /// `{graph}/v1.0/` + percent-encoded path segments + query.
    pub(crate) fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.inner.api_root.clone();
        url.path_segments_mut()
            .expect("invariant: api_root is a base URL")
            .pop_if_empty()
            .extend(segments);
        set_query(&mut url, query);
        url
    }

    /// Accept an `@odata.nextLink` / `@odata.deltaLink` only if it points at the configured
    /// Graph host: the bearer token must never be sent elsewhere.
    pub(crate) fn check_link(&self, link: &str, endpoint: Endpoint) -> Result<Url, GraphError> {
        let url = Url::parse(link)
            .map_err(|_| GraphError::protocol(endpoint, "a paging link is not a URL"))?;
        if url.origin() != self.inner.graph_origin.origin() {
            return Err(GraphError::protocol(
                endpoint,
                "a paging link points outside the configured Graph endpoint; refusing to send the token there",
            ));
        }
        Ok(url)
    }

    /// Send with limiter, auth and retries; on success return the response unread.
    pub(crate) async fn send(&self, req: &Req<'_>) -> Result<Sent, GraphError> {
        self.execute(req, false).await
    }

    /// Send and read the whole body (a body cut off mid-way is retried like a lost answer).
    pub(crate) async fn fetch(
        &self,
        req: &Req<'_>,
    ) -> Result<(reqwest::StatusCode, reqwest::header::HeaderMap, Bytes), GraphError> {
        let sent = self.execute(req, true).await?;
        let status = sent.response.status();
        let headers = sent.response.headers().clone();
        Ok((status, headers, sent.body.unwrap_or_default()))
    }

    /// Send and parse a JSON answer.
    pub(crate) async fn fetch_json<T: serde::de::DeserializeOwned>(
        &self,
        req: &Req<'_>,
    ) -> Result<T, GraphError> {
        let (_, _, body) = self.fetch(req).await?;
        parse_json(&body, req.endpoint)
    }

    async fn execute(&self, req: &Req<'_>, buffer: bool) -> Result<Sent, GraphError> {
        let inner = &self.inner;
        let mut state = Attempts {
            started: Instant::now(),
            count: 0,
            refreshed: false,
        };
        let mailbox = req.mailbox.map(MailboxId::address);
        let body_len = req.body.as_ref().map_or(0, |(b, _)| b.len() as u64);
        let upload = if req.upload { body_len } else { 0 };
        let prefer = match &req.prefer {
            Some(extra) => format!("IdType=\"ImmutableId\", {extra}"),
            None => "IdType=\"ImmutableId\"".to_owned(),
        };
        loop {
            state.count += 1;
            let mut permit = Some(inner.scheduler.acquire(mailbox, upload).await);
            let token = if req.auth {
                Some(inner.tokens.token().await?)
            } else {
                None
            };
            let rb = self.build(req, &prefer, token.as_ref())?;
            Counters::add(&inner.counters.requests, 1);
            inner.counters.by_kind.request();
            Counters::add(&inner.counters.bytes_sent, body_len);
            if state.count > 1 {
                Counters::add(&inner.counters.retries, 1);
            }
            let failure = match tokio::time::timeout(inner.request_timeout, rb.send()).await {
                Ok(Ok(response)) => {
                    let status = response.status().as_u16();
                    let ok = (200..300).contains(&status)
                        || (req.allow_redirect && (300..400).contains(&status));
                    if !ok {
                        // Free the slot before any Retry-After wait.
                        drop(permit.take());
                        match self
                            .on_error_status(req, response, token.as_ref(), &mut state)
                            .await
                        {
                            Ok(()) => continue,
                            Err(e) => return Err(e),
                        }
                    }
                    let sent = Sent {
                        response,
                        permit: permit.take().expect("invariant: permit is taken once"),
                        body: None,
                    };
                    if !buffer {
                        return Ok(sent);
                    }
                    match self.read_all(sent, MAX_JSON_BODY).await {
                        Ok(sent) => return Ok(sent),
                        Err(BodyError::TooLarge) => {
                            return Err(GraphError::protocol(
                                req.endpoint,
                                "response body too large",
                            ));
                        }
                        Err(BodyError::Failed(f)) => f,
                    }
                }
                Ok(Err(e)) => {
                    // A rejected certificate does not heal: report it now, by name.
                    if let Some(tls) = GraphError::tls(&e) {
                        return Err(tls);
                    }
                    retry::transport_failure(&e)
                }
                Err(_) => Failure::Timeout,
            };
            drop(permit);
            self.on_transport_failure(req, failure, &state).await?;
        }
    }

    fn build(
        &self,
        req: &Req<'_>,
        prefer: &str,
        token: Option<&AccessToken>,
    ) -> Result<reqwest::RequestBuilder, GraphError> {
        let mut rb = self
            .inner
            .http
            .request(req.method.clone(), req.url.clone())
            .header("client-request-id", uuid::Uuid::new_v4().to_string())
            .header("Prefer", prefer);
        if let Some(t) = token {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", t.token.expose()))
                .map_err(|_| {
                    GraphError::protocol(
                        Endpoint::Token,
                        "access token is not a valid header value",
                    )
                })?;
            value.set_sensitive(true);
            rb = rb.header(reqwest::header::AUTHORIZATION, value);
        }
        for (name, value) in &req.headers {
            rb = rb.header(name.clone(), value);
        }
        if let Some((bytes, content_type)) = &req.body {
            rb = rb
                .header(reqwest::header::CONTENT_TYPE, *content_type)
                .body(bytes.clone());
        }
        Ok(rb)
    }

    /// A non-success status: `Ok(())` means "try again" (after any wait), `Err` is final.
    async fn on_error_status(
        &self,
        req: &Req<'_>,
        response: reqwest::Response,
        token: Option<&AccessToken>,
        state: &mut Attempts,
    ) -> Result<(), GraphError> {
        let inner = &self.inner;
        let mailbox = req.mailbox.map(MailboxId::address);
        let status = response.status().as_u16();
        let request_id = header_str(response.headers(), "request-id");
        let retry_after = header_str(response.headers(), "retry-after")
            .and_then(|v| retry::parse_retry_after(&v, chrono::Utc::now()));
        let body = read_prefix(response, MAX_ERROR_BODY, inner.request_timeout).await;
        if status == 401 && !state.refreshed {
            if let Some(t) = token {
                // Expired or revoked token: one fresh token, one more try, no budget used.
                state.refreshed = true;
                state.count -= 1;
                inner.tokens.invalidate(t.generation).await;
                return Ok(());
            }
        }
        if status == 429 || (status == 503 && retry_after.is_some()) {
            Counters::add(&inner.counters.throttled, 1);
        }
        let http = HttpFailure {
            status,
            body: ErrorBody::parse(&body),
            request_id,
            retry_after,
        };
        let failure = Failure::Status {
            status,
            retry_after,
        };
        match retry::decide(
            &inner.retry,
            failure,
            req.endpoint.is_idempotent(),
            state.count,
            state.started.elapsed(),
            retry::jitter(),
        ) {
            Decision::Retry {
                delay,
                server_asked,
            } => {
                tracing::debug!(
                    endpoint = req.endpoint.name(),
                    status,
                    attempts = state.count,
                    delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "retrying Graph request"
                );
                match mailbox {
                    // The limiter makes this and every other request to the mailbox wait
                    // out the Retry-After.
                    Some(m) if server_asked => inner.scheduler.pause(m, delay),
                    _ => tokio::time::sleep(delay).await,
                }
                Ok(())
            }
            Decision::GiveUp => Err(translate(http, req.endpoint, mailbox, state.count)),
            Decision::OutcomeUnknown => Err(GraphError::OutcomeUnknown {
                endpoint: req.endpoint,
                reason: format!(
                    "HTTP {status} after the request was sent{}",
                    http.request_id
                        .map(|r| format!(" (request-id {r})"))
                        .unwrap_or_default()
                ),
            }),
        }
    }

    /// No HTTP answer (or a body cut off): wait and return `Ok(())` to try again, or fail.
    async fn on_transport_failure(
        &self,
        req: &Req<'_>,
        failure: Failure,
        state: &Attempts,
    ) -> Result<(), GraphError> {
        match retry::decide(
            &self.inner.retry,
            failure,
            req.endpoint.is_idempotent(),
            state.count,
            state.started.elapsed(),
            retry::jitter(),
        ) {
            Decision::Retry { delay, .. } => {
                tokio::time::sleep(delay).await;
                Ok(())
            }
            Decision::OutcomeUnknown => Err(GraphError::OutcomeUnknown {
                endpoint: req.endpoint,
                reason: match failure {
                    Failure::Timeout => "no answer in time".to_owned(),
                    _ => "connection lost after sending".to_owned(),
                },
            }),
            Decision::GiveUp => Err(match failure {
                Failure::Dns => GraphError::Dns {
                    endpoint: req.endpoint,
                    host: req
                        .url
                        .host_str()
                        .unwrap_or("the Graph endpoint")
                        .to_owned(),
                },
                Failure::Timeout => GraphError::Timeout {
                    endpoint: req.endpoint,
                    attempts: state.count,
                },
                _ => GraphError::Network {
                    endpoint: req.endpoint,
                    attempts: state.count,
                    reason: match failure {
                        Failure::Connect => "could not connect".to_owned(),
                        _ => "connection lost".to_owned(),
                    },
                },
            }),
        }
    }

    async fn read_all(&self, mut sent: Sent, limit: usize) -> Result<Sent, BodyError> {
        let mut buf = BytesMut::new();
        loop {
            match tokio::time::timeout(self.inner.request_timeout, sent.response.chunk()).await {
                Ok(Ok(Some(chunk))) => {
                    Counters::add(&self.inner.counters.bytes_received, chunk.len() as u64);
                    if buf.len() + chunk.len() > limit {
                        return Err(BodyError::TooLarge);
                    }
                    buf.extend_from_slice(&chunk);
                }
                Ok(Ok(None)) => {
                    sent.body = Some(buf.freeze());
                    return Ok(sent);
                }
                Ok(Err(e)) => return Err(BodyError::Failed(retry::transport_failure(&e))),
                Err(_) => return Err(BodyError::Failed(Failure::Timeout)),
            }
        }
    }

    /// Open a streamed download.
    pub(crate) async fn stream(&self, req: &Req<'_>) -> Result<ByteStream, GraphError> {
        let sent = self.send(req).await?;
        Ok(ByteStream {
            content_length: sent.response.content_length(),
            content_type: header_str(sent.response.headers(), "content-type"),
            response: sent.response,
            _permit: sent.permit,
            counters: Arc::clone(&self.inner.counters),
            idle_timeout: self.inner.request_timeout,
            endpoint: req.endpoint,
        })
    }
}

/// Progress of one logical request.
struct Attempts {
    started: Instant,
    count: u32,
    refreshed: bool,
}

enum BodyError {
    TooLarge,
    Failed(Failure),
}

fn header_str(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn read_prefix(mut response: reqwest::Response, limit: usize, timeout: Duration) -> Bytes {
    let mut buf = BytesMut::new();
    while buf.len() < limit {
        match tokio::time::timeout(timeout, response.chunk()).await {
            Ok(Ok(Some(chunk))) => buf.extend_from_slice(&chunk),
            _ => break,
        }
    }
    buf.truncate(limit);
    buf.freeze()
}

/// Replace the query with `key=value` pairs; keys are literal (`$select`), values are
/// percent-encoded (spaces as `%20`, never `+`, which OData would read literally).
pub(crate) fn set_query(url: &mut Url, query: &[(&str, &str)]) {
    if query.is_empty() {
        url.set_query(None);
        return;
    }
    let q = query
        .iter()
        .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, QUERY_VALUE)))
        .collect::<Vec<_>>()
        .join("&");
    url.set_query(Some(&q));
}

/// Parse JSON without echoing content into the error (bodies hold subjects and names).
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    body: &[u8],
    endpoint: Endpoint,
) -> Result<T, GraphError> {
    serde_json::from_slice(body).map_err(|e| {
        GraphError::protocol(
            endpoint,
            format!(
                "response JSON does not have the documented shape ({:?} error at line {}, column {})",
                e.classify(),
                e.line(),
                e.column()
            ),
        )
    })
}

/// A response body read chunk by chunk, so a 150 MB message costs one chunk of memory.
///
/// Holds the request's concurrency slot until dropped: Graph counts a download as an
/// active request until its body is read.
#[derive(Debug)]
pub struct ByteStream {
    response: reqwest::Response,
    _permit: RequestPermit,
    counters: Arc<Counters>,
    idle_timeout: Duration,
    endpoint: Endpoint,
    content_length: Option<u64>,
    content_type: Option<String>,
}

impl ByteStream {
    /// `Content-Length`, when the server sent one.
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// `Content-Type` as sent (Graph labels MIME as `text/plain`).
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    /// The next chunk, or `None` at the end. A stall longer than the request timeout is an
    /// error rather than a hang.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, GraphError> {
        match tokio::time::timeout(self.idle_timeout, self.response.chunk()).await {
            Ok(Ok(Some(chunk))) => {
                Counters::add(&self.counters.bytes_received, chunk.len() as u64);
                Ok(Some(chunk))
            }
            Ok(Ok(None)) => Ok(None),
            Ok(Err(e)) => Err(GraphError::Network {
                endpoint: self.endpoint,
                attempts: 1,
                reason: format!("download interrupted: {}", e.without_url()),
            }),
            Err(_) => Err(GraphError::Timeout {
                endpoint: self.endpoint,
                attempts: 1,
            }),
        }
    }

    /// Copy the rest of the body into `sink`; returns the number of bytes written.
    pub async fn write_to<W: AsyncWrite + Unpin + ?Sized>(
        mut self,
        sink: &mut W,
    ) -> Result<u64, GraphError> {
        let mut total = 0u64;
        while let Some(chunk) = self.next_chunk().await? {
            sink.write_all(&chunk)
                .await
                .map_err(|e| GraphError::Protocol {
                    endpoint: self.endpoint,
                    reason: format!("writing the download to its destination failed: {e}"),
                })?;
            total += chunk.len() as u64;
        }
        sink.flush().await.map_err(|e| GraphError::Protocol {
            endpoint: self.endpoint,
            reason: format!("writing the download to its destination failed: {e}"),
        })?;
        Ok(total)
    }

    /// Read everything into memory, refusing more than `limit` bytes.
    pub async fn collect(mut self, limit: usize) -> Result<Bytes, GraphError> {
        let mut buf = BytesMut::new();
        while let Some(chunk) = self.next_chunk().await? {
            if buf.len() + chunk.len() > limit {
                return Err(GraphError::TooLarge {
                    what: "download",
                    size: (buf.len() + chunk.len()) as u64,
                    limit: limit as u64,
                });
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Credential;

    fn client(endpoint: &str) -> GraphClient {
        GraphClient::new(
            GraphConfig::new("tenant", "client", Credential::Secret("s".into()))
                .with_endpoints(endpoint, "https://login.example"),
        )
        .expect("client")
    }

    #[test]
    fn urls_encode_segments_and_query_values() {
        let c = client("https://graph.microsoft.com");
        let url = c.url(
            &["users", "a b@contoso.com", "mailFolders", "AAMk/x=="],
            &[("$select", "id,displayName"), ("$filter", "id eq 'x'")],
        );
        assert_eq!(
            url.as_str(),
            "https://graph.microsoft.com/v1.0/users/a%20b@contoso.com/mailFolders/AAMk%2Fx==?$select=id%2CdisplayName&$filter=id%20eq%20%27x%27"
        );
        // A simulator base with a path prefix keeps it.
        let c = client("http://127.0.0.1:8080/sim");
        assert_eq!(
            c.url(&["users"], &[]).as_str(),
            "http://127.0.0.1:8080/sim/v1.0/users"
        );
    }

    #[test]
    fn paging_links_must_stay_on_the_graph_host() {
        let c = client("https://graph.microsoft.com");
        assert!(
            c.check_link(
                "https://graph.microsoft.com/v1.0/users?$skiptoken=x",
                Endpoint::ListUsers
            )
            .is_ok()
        );
        assert!(matches!(
            c.check_link("https://evil.example/v1.0/users", Endpoint::ListUsers),
            Err(GraphError::Protocol { .. })
        ));
        assert!(c.check_link("not a url", Endpoint::ListUsers).is_err());
    }

    #[test]
    fn json_errors_do_not_echo_content() {
        #[derive(serde::Deserialize, Debug)]
        struct T {
            #[allow(dead_code)]
            n: u32,
        }
        let err = parse_json::<T>(br#"{"n":"Secret subject line"}"#, Endpoint::GetMessage)
            .expect_err("bad");
        assert!(!err.to_string().contains("Secret subject"), "{err}");
    }
}
