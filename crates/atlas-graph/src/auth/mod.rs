//! Client-credentials sign-in: token requests, the token cache, and plain-words errors.
//!
//! One [`TokenProvider`] per client. The cache lives behind an async mutex, so concurrent
//! callers that find the token stale wait for one refresh instead of each starting their
//! own. Tokens are refreshed `token_refresh_margin` before they expire; a 401 from Graph
//! invalidates the token it was sent with, and the caller retries once with a fresh one.

mod assertion;

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

pub(crate) use assertion::AssertionSigner;

use crate::config::{Credential, DEFAULT_GRAPH_SCOPE, GraphConfig, default_scope};
use crate::endpoint::Endpoint;
use crate::error::{AuthError, AuthErrorKind, GraphError};
use crate::limiter::Counters;
use crate::retry::{self, Decision, Failure};
use atlas_core::SecretString;

/// An access token and the generation it belongs to (for targeted invalidation).
#[derive(Debug, Clone)]
pub(crate) struct AccessToken {
    pub token: SecretString,
    pub generation: u64,
}

#[derive(Debug)]
struct Cached {
    token: SecretString,
    refresh_at: Instant,
    generation: u64,
}

#[derive(Debug)]
enum Method {
    Secret(SecretString),
    Assertion(Box<AssertionSigner>),
}

/// Obtains and caches app-only tokens.
#[derive(Debug)]
pub(crate) struct TokenProvider {
    http: reqwest::Client,
    token_url: Url,
    client_id: String,
    tenant_id: String,
    scope: String,
    method: Method,
    margin: Duration,
    request_timeout: Duration,
    retry: crate::config::RetryPolicy,
    cache: Mutex<Option<Cached>>,
    generation: std::sync::atomic::AtomicU64,
    counters: Arc<Counters>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
struct TokenErrorBody {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
    #[serde(default)]
    error_codes: Vec<u64>,
    #[serde(default)]
    correlation_id: Option<String>,
}

impl TokenProvider {
    pub(crate) fn new(
        cfg: &GraphConfig,
        graph_base: &Url,
        http: reqwest::Client,
        counters: Arc<Counters>,
    ) -> Result<Self, GraphError> {
        let token_url = token_url(&cfg.authority_host, &cfg.tenant_id)?;
        let method = match &cfg.credential {
            Credential::Secret(s) => {
                if s.is_empty() {
                    return Err(AuthError::new(
                        AuthErrorKind::InvalidSecret,
                        "the client secret is empty",
                    )
                    .into());
                }
                Method::Secret(s.clone())
            }
            Credential::Certificate {
                cert_pem,
                key_pem,
                algorithm,
            } => Method::Assertion(Box::new(AssertionSigner::new(
                cert_pem, key_pem, *algorithm,
            )?)),
        };
        // The scope names Graph's resource, never the address Graph is reached at: a
        // simulator or gateway in front of Graph is not a resource of the tenant.
        let scope = cfg
            .scope
            .clone()
            .unwrap_or_else(|| default_scope(graph_base.as_str()).to_owned());
        Ok(Self {
            http,
            token_url,
            client_id: cfg.client_id.clone(),
            tenant_id: cfg.tenant_id.clone(),
            scope,
            method,
            margin: cfg.token_refresh_margin,
            request_timeout: cfg.request_timeout,
            retry: cfg.retry.clone(),
            cache: Mutex::new(None),
            generation: std::sync::atomic::AtomicU64::new(0),
            counters,
        })
    }

    /// A valid token, from the cache or freshly requested (one refresh for all waiters).
    pub(crate) async fn token(&self) -> Result<AccessToken, GraphError> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref() {
            if Instant::now() < c.refresh_at {
                return Ok(AccessToken {
                    token: c.token.clone(),
                    generation: c.generation,
                });
            }
        }
        let (token, lifetime) = self.request_token().await?;
        let generation = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        // Refresh `margin` early, but never sooner than half the lifetime (short-lived
        // tokens from a simulator would otherwise be refreshed on every call).
        let early = self.margin.min(lifetime / 2);
        *cache = Some(Cached {
            token: token.clone(),
            refresh_at: Instant::now() + lifetime.saturating_sub(early),
            generation,
        });
        Ok(AccessToken { token, generation })
    }

    /// Forget the token of `generation` (Graph said 401); a newer one is kept.
    pub(crate) async fn invalidate(&self, generation: u64) {
        let mut cache = self.cache.lock().await;
        if cache.as_ref().is_some_and(|c| c.generation == generation) {
            *cache = None;
        }
    }

    async fn request_token(&self) -> Result<(SecretString, Duration), GraphError> {
        let started = Instant::now();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let form = self.form();
            Counters::add(&self.counters.requests, 1);
            let sent = tokio::time::timeout(
                self.request_timeout,
                self.http
                    .post(self.token_url.clone())
                    .header("client-request-id", uuid::Uuid::new_v4().to_string())
                    .form(
                        &form
                            .iter()
                            .map(|(k, v)| (*k, v.expose()))
                            .collect::<Vec<_>>(),
                    )
                    .send(),
            )
            .await;
            let failure = match sent {
                Ok(Ok(resp)) => {
                    let status = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| retry::parse_retry_after(v, chrono::Utc::now()));
                    let body = tokio::time::timeout(self.request_timeout, resp.bytes())
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .unwrap_or_default();
                    if (200..300).contains(&status) {
                        Counters::add(&self.counters.token_refreshes, 1);
                        return parse_token(&body);
                    }
                    if status == 400 || status == 401 {
                        return Err(self.explain(status, &body).into());
                    }
                    Failure::Status {
                        status,
                        retry_after,
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
            // Asking for a token twice is harmless, so every failure counts as idempotent.
            match retry::decide(
                &self.retry,
                failure,
                true,
                attempts,
                started.elapsed(),
                retry::jitter(),
            ) {
                Decision::Retry { delay, .. } => {
                    Counters::add(&self.counters.retries, 1);
                    tokio::time::sleep(delay).await;
                }
                Decision::GiveUp | Decision::OutcomeUnknown => {
                    let what = match failure {
                        Failure::Status { status, .. } => format!("HTTP {status}"),
                        Failure::Connect => "connection refused".to_owned(),
                        Failure::Dns => format!(
                            "the host name {} does not resolve",
                            self.token_url.host_str().unwrap_or("of the authority")
                        ),
                        Failure::Timeout => "timeout".to_owned(),
                        Failure::Interrupted => "connection lost".to_owned(),
                    };
                    return Err(AuthError::new(
                        AuthErrorKind::Unreachable,
                        format!(
                            "the token endpoint {} did not answer ({what} after {attempts} attempts); \
                             check the authority host and network access",
                            self.token_url.origin().ascii_serialization()
                        ),
                    )
                    .into());
                }
            }
        }
    }

    fn form(&self) -> Vec<(&'static str, SecretString)> {
        let mut form = vec![
            ("grant_type", SecretString::new("client_credentials")),
            ("client_id", SecretString::new(self.client_id.clone())),
            ("scope", SecretString::new(self.scope.clone())),
        ];
        match &self.method {
            Method::Secret(s) => form.push(("client_secret", s.clone())),
            Method::Assertion(signer) => {
                form.push((
                    "client_assertion_type",
                    SecretString::new("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ));
                form.push((
                    "client_assertion",
                    signer.sign(
                        &self.client_id,
                        self.token_url.as_str(),
                        chrono::Utc::now().timestamp(),
                    ),
                ));
            }
        }
        form
    }

    fn explain(&self, status: u16, body: &[u8]) -> AuthError {
        let parsed: TokenErrorBody = serde_json::from_slice(body).unwrap_or_default();
        explain_token_error(
            status,
            &parsed,
            &self.tenant_id,
            &self.client_id,
            &self.scope,
        )
    }
}

fn token_url(authority: &str, tenant: &str) -> Result<Url, GraphError> {
    let bad = || {
        GraphError::Auth(AuthError::new(
            AuthErrorKind::WrongTenant,
            format!(
                "the authority host '{authority}' or tenant id '{tenant}' does not form a valid URL"
            ),
        ))
    };
    if tenant.is_empty() || tenant.contains(['/', '?', '#']) {
        return Err(bad());
    }
    let mut url = Url::parse(authority).map_err(|_| bad())?;
    url.path_segments_mut()
        .map_err(|()| bad())?
        .pop_if_empty()
        .extend([tenant, "oauth2", "v2.0", "token"]);
    Ok(url)
}

fn parse_token(body: &[u8]) -> Result<(SecretString, Duration), GraphError> {
    let resp: TokenResponse = serde_json::from_slice(body).map_err(|_| {
        GraphError::protocol(Endpoint::Token, "token response is not the documented JSON")
    })?;
    // `expires_in` is a number in v2.0 responses; some proxies send it as a string.
    let secs = match resp.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .unwrap_or(3599);
    Ok((
        SecretString::new(resp.access_token),
        Duration::from_secs(secs),
    ))
}

/// AADSTS code → what the administrator should do. Keys on `error_codes`, not on the
/// description text (which Microsoft says may change).
fn explain_token_error(
    status: u16,
    body: &TokenErrorBody,
    tenant: &str,
    client: &str,
    scope: &str,
) -> AuthError {
    let code = body.error_codes.first().copied();
    let (kind, text) = match code {
        Some(90002 | 900_023 | 90_019 | 900_022) => (
            AuthErrorKind::WrongTenant,
            format!(
                "tenant '{tenant}' was not found. Use the Directory (tenant) ID from the app \
                 registration's Overview page, or the tenant's verified domain."
            ),
        ),
        Some(700_016) => (
            AuthErrorKind::WrongClientId,
            format!(
                "no application with client id '{client}' exists in tenant '{tenant}'. Use the \
                 Application (client) ID from the app registration's Overview page, and check that \
                 the app is registered in (or consented to by) this tenant."
            ),
        ),
        Some(7_000_215) => (
            AuthErrorKind::InvalidSecret,
            "the client secret is wrong. Use the secret's Value (shown only once, when the \
             secret was created), not its Secret ID; if the Value was lost, create a new secret \
             under Certificates & secrets."
                .to_owned(),
        ),
        Some(7_000_222) => (
            AuthErrorKind::ExpiredSecret,
            "the client secret has expired. Create a new secret under Certificates & secrets \
             on the app registration and update the configuration with its Value."
                .to_owned(),
        ),
        Some(700_024) => (
            AuthErrorKind::BadCertificate,
            "the certificate assertion is outside its validity window; check this machine's \
             clock (it must be within a few minutes of the real time)."
                .to_owned(),
        ),
        Some(700_027 | 700_021 | 700_023 | 7_000_274 | 7_000_277 | 500_212) => (
            AuthErrorKind::BadCertificate,
            "the certificate was rejected: upload this certificate (the .cer/.pem public part) \
             under Certificates & secrets on the app registration, and check that the private \
             key belongs to it."
                .to_owned(),
        ),
        // A scope that is not a resource's `/.default`, mixes resources, or names a resource
        // the tenant does not have. Graph's own resource exists in every tenant, so 500011
        // means the scope is wrong, not that consent is missing.
        Some(1_002_012 | 700_022 | 70011 | 28000 | 28002 | 28003 | 500_011) => (
            AuthErrorKind::InvalidScope,
            format!(
                "the token scope '{scope}' was refused. App-only sign-in asks for a resource's \
                 '/.default' scope, and Microsoft Graph's resource is \
                 {DEFAULT_GRAPH_SCOPE} (in a national cloud, the Graph host of that cloud, e.g. \
                 https://graph.microsoft.us/.default), not the address Graph requests are sent \
                 to. Leave the Graph scope setting unset to use that, or set it to the Graph \
                 resource of your cloud."
            ),
        ),
        Some(65001 | 7_000_229) => (
            AuthErrorKind::ConsentMissing,
            "the application has not been consented to in this tenant. In the Entra admin \
             center open API permissions and choose 'Grant admin consent'."
                .to_owned(),
        ),
        Some(7_000_112) => (
            AuthErrorKind::AppDisabled,
            "the application is disabled in this tenant; re-enable its enterprise application."
                .to_owned(),
        ),
        _ if body.error == "invalid_client" => (
            AuthErrorKind::InvalidSecret,
            "the client credential was rejected. If you use a client secret, use its Value, \
             not its Secret ID, and check it has not expired."
                .to_owned(),
        ),
        _ => (
            AuthErrorKind::Other,
            format!(
                "the identity platform answered HTTP {status} ({}): {}",
                if body.error.is_empty() {
                    "no error code"
                } else {
                    &body.error
                },
                first_line(&body.error_description)
            ),
        ),
    };
    let mut err = AuthError::new(kind, text);
    err.aadsts = code;
    err.correlation_id.clone_from(&body.correlation_id);
    err
}

fn first_line(s: &str) -> &str {
    let line = s.lines().next().unwrap_or("");
    let mut end = line.len().min(300);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(code: u64, error: &str) -> TokenErrorBody {
        TokenErrorBody {
            error: error.to_owned(),
            error_description: format!("AADSTS{code}: something.\r\nTrace ID: x"),
            error_codes: vec![code],
            correlation_id: Some("corr-1".to_owned()),
        }
    }

    #[test]
    fn aadsts_codes_are_explained_in_plain_words() {
        let cases = [
            (
                7_000_215,
                "invalid_client",
                AuthErrorKind::InvalidSecret,
                "Value",
            ),
            (
                7_000_222,
                "invalid_client",
                AuthErrorKind::ExpiredSecret,
                "expired",
            ),
            (
                90002,
                "invalid_request",
                AuthErrorKind::WrongTenant,
                "tenant",
            ),
            (
                700_016,
                "unauthorized_client",
                AuthErrorKind::WrongClientId,
                "client id",
            ),
            (
                700_027,
                "invalid_client",
                AuthErrorKind::BadCertificate,
                "certificate",
            ),
            (
                65001,
                "invalid_grant",
                AuthErrorKind::ConsentMissing,
                "admin consent",
            ),
            (
                500_011,
                "invalid_resource",
                AuthErrorKind::InvalidScope,
                "https://graph.microsoft.com/.default",
            ),
            (
                1_002_012,
                "invalid_scope",
                AuthErrorKind::InvalidScope,
                "'/.default' scope",
            ),
        ];
        for (code, error, kind, words) in cases {
            let err = explain_token_error(401, &body(code, error), "contoso", "app-1", "s");
            assert_eq!(err.kind, kind, "AADSTS{code}");
            let text = err.to_string();
            assert!(text.contains(words), "{text}");
            assert!(
                text.contains(&format!("AADSTS{code}")) && text.contains("corr-1"),
                "{text}"
            );
        }
        let secret = explain_token_error(401, &body(7_000_215, "invalid_client"), "t", "c", "s");
        assert!(secret.to_string().contains("not its Secret ID"));
    }

    #[test]
    fn unknown_codes_keep_the_first_line_only() {
        let err = explain_token_error(400, &body(12345, "invalid_request"), "t", "c", "s");
        assert_eq!(err.kind, AuthErrorKind::Other);
        let text = err.to_string();
        assert!(
            text.contains("AADSTS12345: something.") && !text.contains("Trace ID"),
            "{text}"
        );
    }

    #[test]
    fn token_url_is_built_from_authority_and_tenant() {
        assert_eq!(
            token_url(
                "https://login.microsoftonline.com",
                "contoso.onmicrosoft.com"
            )
            .expect("url")
            .as_str(),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert_eq!(
            token_url("http://127.0.0.1:9/", "t1")
                .expect("url")
                .as_str(),
            "http://127.0.0.1:9/t1/oauth2/v2.0/token"
        );
        assert!(token_url("http://x", "a/b").is_err());
    }

    #[test]
    fn token_response_parsing() {
        let (tok, life) =
            parse_token(br#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"eyJ"}"#)
                .expect("token");
        assert_eq!(tok.expose(), "eyJ");
        assert_eq!(life, Duration::from_secs(3599));
        let (_, life) = parse_token(br#"{"expires_in":"60","access_token":"a"}"#).expect("token");
        assert_eq!(life, Duration::from_secs(60));
        assert!(parse_token(b"<html>").is_err());
    }
}
