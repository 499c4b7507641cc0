//! Explicit configuration for [`crate::GraphClient`].
//!
//! Nothing here reads the environment: the CLI (or an embedding program) gathers values from
//! files and variables and hands them over, so the library behaves the same in tests, in the
//! simulator and in production.

use std::fmt;
use std::time::Duration;

use atlas_core::SecretString;

/// Default Microsoft Graph endpoint (global cloud).
pub const DEFAULT_GRAPH_ENDPOINT: &str = "https://graph.microsoft.com";
/// Default Microsoft Entra authority host (global cloud).
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";

/// The scope of app-only tokens for Microsoft Graph's global service: its resource plus
/// `/.default` (the client-credentials form).
pub const DEFAULT_GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";

/// Microsoft Graph's national cloud deployments: the host Graph is served from and the
/// `.default` scope of that cloud's Graph resource. From "Microsoft Graph national cloud
/// deployments" (concepts/deployments.md) and "Access national cloud deployments with the
/// Microsoft Graph SDKs" (concepts/sdks/national-clouds.md): a `.default` scope must use
/// the domain of the cloud's Graph service root. Microsoft 365 GCC (not High) uses the
/// global service.
pub const NATIONAL_CLOUD_SCOPES: &[(&str, &str)] = &[
    ("graph.microsoft.us", "https://graph.microsoft.us/.default"),
    (
        "dod-graph.microsoft.us",
        "https://dod-graph.microsoft.us/.default",
    ),
    (
        "microsoftgraph.chinacloudapi.cn",
        "https://microsoftgraph.chinacloudapi.cn/.default",
    ),
];

/// The token scope used when none is configured: the Graph resource of the national cloud
/// whose Graph host `graph_endpoint` names, otherwise the global service's. A simulator, an
/// API gateway or a proxy serves Graph's API but is not a resource of the tenant, so
/// Entra ID would refuse a scope built from its address (AADSTS500011).
pub fn default_scope(graph_endpoint: &str) -> &'static str {
    let host = url::Url::parse(graph_endpoint)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase));
    NATIONAL_CLOUD_SCOPES
        .iter()
        .find(|(h, _)| host.as_deref() == Some(*h))
        .map_or(DEFAULT_GRAPH_SCOPE, |(_, scope)| scope)
}

/// How the application proves its identity to Microsoft Entra ID.
#[derive(Clone)]
#[non_exhaustive]
pub enum Credential {
    /// A client secret (its *Value*, not its ID).
    Secret(SecretString),
    /// A certificate registered on the app registration, used to sign a client assertion.
    Certificate {
        /// The X.509 certificate in PEM (`-----BEGIN CERTIFICATE-----`); only its DER
        /// thumbprint is sent.
        cert_pem: String,
        /// The RSA private key in PEM, PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1
        /// (`BEGIN RSA PRIVATE KEY`).
        key_pem: SecretString,
        /// Which JWT header form to use.
        algorithm: AssertionAlgorithm,
    },
}

impl Credential {
    /// A certificate credential using the current Microsoft-documented form (PS256 + `x5t#S256`).
    pub fn certificate(cert_pem: impl Into<String>, key_pem: impl Into<SecretString>) -> Self {
        Self::Certificate {
            cert_pem: cert_pem.into(),
            key_pem: key_pem.into(),
            algorithm: AssertionAlgorithm::Ps256,
        }
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Secret(_) => f.write_str("Credential::Secret(<redacted>)"),
            Self::Certificate { algorithm, .. } => f
                .debug_struct("Credential::Certificate")
                .field("algorithm", algorithm)
                .finish_non_exhaustive(),
        }
    }
}

/// Client-assertion JWT flavour. Microsoft's documentation changed from RS256 + `x5t`
/// (SHA-1 thumbprint) to PS256 + `x5t#S256` (SHA-256 thumbprint); both are offered because
/// which one a given tenant or proxy accepts is not documented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AssertionAlgorithm {
    /// RSASSA-PSS with SHA-256, header `x5t#S256` (current documentation).
    #[default]
    Ps256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, header `x5t` (older documentation).
    Rs256,
}

/// Retry budget for one logical request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, including the first (at least 1).
    pub max_attempts: u32,
    /// Upper bound for all waiting and attempts of one logical request; a `Retry-After` that
    /// would overrun it ends the request with `Throttled` instead of sleeping past it.
    pub max_total: Duration,
    /// First backoff step when the server gave no `Retry-After`.
    pub base_delay: Duration,
    /// Largest single backoff step (before jitter).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            max_total: Duration::from_secs(15 * 60),
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
        }
    }
}

/// Limits that keep Atlas inside Exchange Online's per-mailbox budget (graph-api.md §9.1)
/// so that workers slow down *before* Graph answers 429.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimiterConfig {
    /// Concurrent requests per mailbox (Outlook allows 4).
    pub per_mailbox_concurrency: usize,
    /// Requests per `request_window` per mailbox (Outlook allows 10,000 per 10 minutes).
    pub requests_per_window: u32,
    /// Window of the request budget.
    pub request_window: Duration,
    /// Upload bytes per `upload_window` per mailbox (Outlook allows 150 MB per 5 minutes).
    pub upload_bytes_per_window: u64,
    /// Window of the upload budget.
    pub upload_window: Duration,
    /// Concurrent requests across the whole tenant (all mailboxes, all workers).
    pub tenant_concurrency: usize,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        Self {
            per_mailbox_concurrency: 4,
            requests_per_window: 10_000,
            request_window: Duration::from_secs(600),
            upload_bytes_per_window: 150 * 1_000_000,
            upload_window: Duration::from_secs(300),
            tenant_concurrency: 32,
        }
    }
}

/// Everything the client needs, given explicitly.
#[derive(Debug, Clone)]
pub struct GraphConfig {
    /// Tenant id (GUID) or verified domain.
    pub tenant_id: String,
    /// Application (client) id.
    pub client_id: String,
    /// Secret or certificate.
    pub credential: Credential,
    /// Graph endpoint without `/v1.0`, e.g. `https://graph.microsoft.com` or the simulator.
    pub graph_endpoint: String,
    /// Authority host, e.g. `https://login.microsoftonline.com` or the simulator.
    pub authority_host: String,
    /// Scope of the app-only token; `None` uses [`default_scope`] of `graph_endpoint`.
    pub scope: Option<String>,
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Time allowed until response headers arrive, and between two body chunks of a
    /// streamed download (a hung transfer is cut off, a slow large one is not).
    pub request_timeout: Duration,
    /// Refresh the access token this long before it expires.
    pub token_refresh_margin: Duration,
    /// Retry budget per request.
    pub retry: RetryPolicy,
    /// Per-mailbox and tenant-wide limits.
    pub limiter: LimiterConfig,
    /// Trust (extra CA files) and proxies, shared with the S3 store.
    pub net: atlas_net::NetOptions,
}

impl GraphConfig {
    /// A configuration with the global-cloud endpoints and default timeouts and limits.
    pub fn new(
        tenant_id: impl Into<String>,
        client_id: impl Into<String>,
        credential: Credential,
    ) -> Self {
        Self {
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            credential,
            graph_endpoint: DEFAULT_GRAPH_ENDPOINT.to_owned(),
            authority_host: DEFAULT_AUTHORITY_HOST.to_owned(),
            scope: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            token_refresh_margin: Duration::from_secs(300),
            retry: RetryPolicy::default(),
            limiter: LimiterConfig::default(),
            net: atlas_net::NetOptions::default(),
        }
    }

    /// Point the client at other endpoints (national cloud, simulator).
    #[must_use]
    pub fn with_endpoints(
        mut self,
        graph_endpoint: impl Into<String>,
        authority_host: impl Into<String>,
    ) -> Self {
        self.graph_endpoint = graph_endpoint.into();
        self.authority_host = authority_host.into();
        self
    }

    /// The scope token requests ask for: the configured one, or [`default_scope`].
    pub fn token_scope(&self) -> String {
        self.scope
            .clone()
            .unwrap_or_else(|| default_scope(&self.graph_endpoint).to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_scope_is_graphs_resource_not_the_endpoint_address() {
        let cases = [
            ("https://graph.microsoft.com", DEFAULT_GRAPH_SCOPE),
            ("https://GRAPH.microsoft.com/", DEFAULT_GRAPH_SCOPE),
            (
                "https://graph.microsoft.us",
                "https://graph.microsoft.us/.default",
            ),
            (
                "https://dod-graph.microsoft.us",
                "https://dod-graph.microsoft.us/.default",
            ),
            (
                "https://microsoftgraph.chinacloudapi.cn",
                "https://microsoftgraph.chinacloudapi.cn/.default",
            ),
            // A simulator, a gateway, a proxy: Graph's API, global Graph's resource.
            ("http://127.0.0.1:8080", DEFAULT_GRAPH_SCOPE),
            ("https://graph-gw.contoso.com", DEFAULT_GRAPH_SCOPE),
            ("not a url", DEFAULT_GRAPH_SCOPE),
        ];
        for (endpoint, scope) in cases {
            let cfg = GraphConfig::new("t", "c", Credential::Secret("s".into()))
                .with_endpoints(endpoint, DEFAULT_AUTHORITY_HOST);
            assert_eq!(cfg.token_scope(), scope, "{endpoint}");
        }
        let mut cfg = GraphConfig::new("t", "c", Credential::Secret("s".into()));
        cfg.scope = Some("api://custom/.default".into());
        assert_eq!(cfg.token_scope(), "api://custom/.default");
    }

    #[test]
    fn debug_of_config_hides_credentials() {
        let cfg = GraphConfig::new("t", "c", Credential::Secret("s3cr3t-value".into()));
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("s3cr3t"), "{dbg}");
        let cert = Credential::certificate("CERT", "-----BEGIN PRIVATE KEY-----xyz");
        assert!(!format!("{cert:?}").contains("xyz"));
    }
}
