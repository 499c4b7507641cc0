//! The HTTP server: startup, the shared state, and the request pipeline every Graph
//! request (direct or inside `$batch`) goes through: faults → auth → permission →
//! mailbox checks → throttling → handler → accounting.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::to_bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::watch;

use crate::auth::AuthState;
use crate::config::{FaultConfig, SimConfig};
use crate::error::{Result, SimError};
use crate::http::{Req, Resp};
use crate::limits::{Limiter, RequestCounters, Throttle};
use crate::model::Tenant;
use crate::route::{self, Route};
use crate::write::UploadSession;

/// Locks a mutex, recovering from poisoning: the simulator's state stays usable for the
/// remaining test even if one handler panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Shared state of one running simulator.
#[derive(Debug)]
pub(crate) struct Sim {
    pub base_url: String,
    pub cfg: SimConfig,
    pub tenant_id: String,
    pub domain: String,
    pub client_id: String,
    pub client_secret: String,
    pub faults: Mutex<FaultConfig>,
    pub tenant: Mutex<Tenant>,
    pub auth: Mutex<AuthState>,
    pub limiter: Mutex<Limiter>,
    pub counters: Mutex<RequestCounters>,
    pub fault_rng: Mutex<ChaCha8Rng>,
    pub uploads: Mutex<HashMap<String, UploadSession>>,
    pub reports: Mutex<HashMap<String, String>>,
    pub shutdown: watch::Sender<bool>,
    pub addr: SocketAddr,
    pub done: watch::Receiver<bool>,
}

/// Entry point: starts simulators.
#[derive(Debug)]
pub struct Simulator;

/// A running simulator. Dropping the handle does not stop the server; call
/// [`SimHandle::shutdown`] (or `POST /_admin/shutdown`).
pub struct SimHandle {
    pub(crate) sim: Arc<Sim>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("base_url", &self.sim.base_url)
            .field("tenant_id", &self.sim.tenant_id)
            .field("client_id", &self.sim.client_id)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}

impl Simulator {
    /// Generates the tenant and serves it on an ephemeral port of 127.0.0.1.
    pub async fn start(config: SimConfig) -> Result<SimHandle> {
        Self::start_on(config, 0).await
    }

    /// Like [`Simulator::start`] on a given port (`0` = ephemeral).
    pub async fn start_on(config: SimConfig, port: u16) -> Result<SimHandle> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| SimError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| SimError::Bind { addr, source })?;
        let cfg = config.clone();
        let tenant = tokio::task::spawn_blocking(move || crate::generate::generate(&cfg))
            .await
            .map_err(|e| SimError::Serve(std::io::Error::other(e)))?;
        let (shutdown, mut rx) = watch::channel(false);
        let (done_tx, done) = watch::channel(false);
        let sim = Arc::new(Sim {
            base_url: format!("http://{addr}"),
            tenant_id: tenant.id.clone(),
            domain: tenant.domain.clone(),
            client_id: tenant.client_id.clone(),
            client_secret: tenant.client_secret.clone(),
            faults: Mutex::new(config.faults.clone()),
            auth: Mutex::new(AuthState::new(&format!(
                "{}:{}",
                config.seed, tenant.client_secret
            ))),
            fault_rng: Mutex::new(ChaCha8Rng::seed_from_u64(config.seed ^ 0x5eed_fa17)),
            tenant: Mutex::new(tenant),
            limiter: Mutex::new(Limiter::default()),
            counters: Mutex::new(RequestCounters::default()),
            uploads: Mutex::new(HashMap::new()),
            reports: Mutex::new(HashMap::new()),
            shutdown,
            addr,
            done,
            cfg: config,
        });
        let app = Router::new().fallback(root).with_state(sim.clone());
        tokio::spawn(async move {
            let stop = async move {
                let _ = rx.wait_for(|v| *v).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::error!(error = %e, "simulator server stopped");
            }
            let _ = done_tx.send(true);
        });
        Ok(SimHandle { sim })
    }
}

impl SimHandle {
    pub(crate) fn from_sim(sim: Arc<Sim>) -> Self {
        Self { sim }
    }

    /// Base URL for both the identity endpoints and Graph (`{base}/v1.0/...`).
    pub fn base_url(&self) -> String {
        self.sim.base_url.clone()
    }

    /// Bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.sim.addr
    }

    /// Graph endpoint root, i.e. `{base}/v1.0`.
    pub fn graph_url(&self) -> String {
        format!("{}/v1.0", self.sim.base_url)
    }

    /// Tenant GUID.
    pub fn tenant_id(&self) -> String {
        self.sim.tenant_id.clone()
    }

    /// Tenant domain (also accepted as tenant at the token endpoint).
    pub fn tenant_domain(&self) -> String {
        self.sim.domain.clone()
    }

    /// Application (client) id registered in the tenant.
    pub fn client_id(&self) -> String {
        self.sim.client_id.clone()
    }

    /// The app's client secret. Returned as a plain string because callers pass it on to
    /// the client under test; do not log it.
    pub fn client_secret(&self) -> String {
        self.sim.client_secret.clone()
    }

    /// The configuration the simulator was started with.
    pub fn config(&self) -> &SimConfig {
        &self.sim.cfg
    }

    /// Stops the server; in-flight hung requests are released.
    pub fn shutdown(&self) {
        let _ = self.sim.shutdown.send(true);
    }

    /// Resolves once the server has stopped (after [`SimHandle::shutdown`] or an admin
    /// shutdown request).
    pub async fn wait(&self) {
        let mut done = self.sim.done.clone();
        let _ = done.wait_for(|v| *v).await;
    }
}

/// Prints-ready connection details for `atlas sim serve`: base URL, tenant, client id and
/// secret (the simulator's secret is test data, shown on purpose so a user can connect).
pub fn banner(h: &SimHandle) -> String {
    format!(
        "Atlas Microsoft Graph simulator listening on {base}\n  ATLAS_GRAPH_ENDPOINT={base}\n  ATLAS_AUTHORITY_HOST={base}\n  tenant id:     {tid}\n  tenant domain: {dom}\n  client id:     {cid}\n  client secret: {secret}\n  admin API:     {base}/_admin/",
        base = h.base_url(),
        tid = h.tenant_id(),
        dom = h.tenant_domain(),
        cid = h.client_id(),
        secret = h.client_secret(),
    )
}

/// Runs a simulator until it is shut down through the admin API; `on_ready` is called once
/// the socket is bound (the CLI prints [`banner`] there).
pub async fn serve_forever(
    config: SimConfig,
    port: u16,
    on_ready: impl FnOnce(&SimHandle),
) -> Result<()> {
    let h = Simulator::start_on(config, port).await?;
    on_ready(&h);
    h.wait().await;
    Ok(())
}

/// Largest body read from any request (admin uploads included); Graph-specific caps are
/// checked per route.
const READ_LIMIT: usize = 512 * 1024 * 1024;

async fn root(State(sim): State<Arc<Sim>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let request_id = uuid::Uuid::new_v4().to_string();
    let client_request_id = parts
        .headers
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| request_id.clone(), str::to_owned);
    let Ok(body) = to_bytes(body, READ_LIMIT).await else {
        return Resp::error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "The maximum request length supported is 4MB.",
        )
        .into_response(&request_id, &client_request_id);
    };
    let path = parts.uri.path().to_owned();
    let raw_query = parts.uri.query().unwrap_or_default().to_owned();
    let bytes_in = body.len();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (kind, response) = match segs.as_slice() {
        ["v1.0", "$batch"] => {
            let req = make_req(parts.method, "/$batch", &raw_query, parts.headers, body);
            let mut r = sim.batch(req).await;
            r.finish(&request_id, &client_request_id);
            let len = r.body_len();
            (
                "batch",
                (r.into_response(&request_id, &client_request_id), len),
            )
        }
        ["v1.0", ..] => {
            let rest = &path["/v1.0".len()..];
            let req = make_req(parts.method, rest, &raw_query, parts.headers, body);
            let (mut r, kind) = sim.graph(req).await;
            r.finish(&request_id, &client_request_id);
            let len = r.body_len();
            (
                kind,
                (r.into_response(&request_id, &client_request_id), len),
            )
        }
        ["_admin", ..] => {
            let r = sim.admin_http(&parts.method, &segs[1..], &raw_query, &body);
            let len = r.body_len();
            (
                "admin",
                (r.into_response(&request_id, &client_request_id), len),
            )
        }
        ["_upload", sid] => {
            let r = sim.upload_chunk(&parts.method, sid, &parts.headers, &body);
            let len = r.body_len();
            (
                "upload_chunk",
                (r.into_response(&request_id, &client_request_id), len),
            )
        }
        ["_reports", id] => {
            let r = sim.report_download(id);
            let len = r.body_len();
            (
                "report_download",
                (r.into_response(&request_id, &client_request_id), len),
            )
        }
        [_, "discovery", "instance"] if parts.method == Method::GET => (
            "discovery",
            with_ids(
                sim.instance_discovery(&raw_query),
                &request_id,
                &client_request_id,
            ),
        ),
        [tenant, "v2.0", ".well-known", "openid-configuration"] if parts.method == Method::GET => (
            "discovery",
            with_ids(
                sim.openid_configuration(tenant),
                &request_id,
                &client_request_id,
            ),
        ),
        [tenant, "oauth2", "v2.0", "token"] if parts.method == Method::POST => (
            "token",
            with_ids(
                sim.token_endpoint(tenant, &parts.headers, &body),
                &request_id,
                &client_request_id,
            ),
        ),
        _ => ("other", {
            let r = Resp::error(
                StatusCode::NOT_FOUND,
                "NotFound",
                "The requested URL does not exist on this server.",
            );
            let len = r.body_len();
            (r.into_response(&request_id, &client_request_id), len)
        }),
    };
    let (resp, bytes_out) = response;
    if kind != "admin" {
        lock(&sim.counters).record(kind, bytes_in, bytes_out, resp.status().as_u16());
    }
    resp
}

fn with_ids(mut r: Response, request_id: &str, client_request_id: &str) -> (Response, usize) {
    let len = usize::try_from(
        axum::body::HttpBody::size_hint(r.body())
            .exact()
            .unwrap_or(0),
    )
    .unwrap_or(0);
    crate::http::standard_headers(r.headers_mut(), request_id, client_request_id);
    if let Ok(v) = axum::http::HeaderValue::from_str(request_id) {
        r.headers_mut().insert("x-ms-request-id", v);
    }
    (r, len)
}

pub(crate) fn make_req(
    method: Method,
    path: &str,
    raw_query: &str,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Req {
    let query = url::form_urlencoded::parse(raw_query.as_bytes())
        .into_owned()
        .collect();
    Req {
        method,
        path: path.to_owned(),
        query,
        headers,
        body,
    }
}

impl Sim {
    /// Rolls the injected-fault dice for one request.
    async fn inject_faults(&self) -> Option<Resp> {
        let faults = lock(&self.faults).clone();
        let (hang, err) = {
            let mut rng = lock(&self.fault_rng);
            let hang = faults.hang_rate > 0.0 && rng.gen_bool(faults.hang_rate.clamp(0.0, 1.0));
            let err = (faults.error_rate > 0.0 && rng.gen_bool(faults.error_rate.clamp(0.0, 1.0)))
                .then(|| rng.gen_range(0..3));
            (hang, err)
        };
        if hang {
            let mut stop = self.shutdown.subscribe();
            let wait = faults
                .hang_delay
                .unwrap_or(Duration::from_secs(86_400 * 365));
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|v| *v) => {}
            }
        }
        let ra = faults.retry_after_secs.max(1).to_string();
        match err {
            Some(0) => Some(
                Resp::json(
                    StatusCode::TOO_MANY_REQUESTS,
                    serde_json::json!({"error": {"code": "TooManyRequests", "message": "Please retry again later.", "innerError": {
                        "code": "429", "date": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(), "message": "Please retry after", "status": "429"}}}),
                )
                .with_header("retry-after", ra),
            ),
            Some(1) => Some(
                Resp::error(StatusCode::SERVICE_UNAVAILABLE, "serviceNotAvailable", "The service is temporarily unavailable. Please retry later.")
                    .with_header("retry-after", ra),
            ),
            Some(_) => Some(Resp::error(StatusCode::GATEWAY_TIMEOUT, "UnknownError", "")),
            None => None,
        }
    }

    /// The Graph request pipeline; returns the response and the endpoint kind.
    pub(crate) async fn graph(self: &Arc<Self>, req: Req) -> (Resp, &'static str) {
        if let Some(r) = self.inject_faults().await {
            let kind = route::parse(&req.path).map_or("other", |r| r.kind(&req.method));
            return (r, kind);
        }
        let route = match route::parse(&req.path) {
            Ok(r) => r,
            Err(e) => return (e, "other"),
        };
        let kind = route.kind(&req.method);
        (self.graph_route(route, &req).await, kind)
    }

    async fn graph_route(self: &Arc<Self>, route: Route, req: &Req) -> Resp {
        if req.body.len() > self.cfg.limits.max_request_bytes {
            return Resp::error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "The maximum request length supported is 4MB.",
            );
        }
        let claims = match self.validate_bearer(&req.headers) {
            Ok(c) => c,
            Err(e) => return e,
        };
        if let Err(e) = route.check_permission(&req.method, &claims.roles) {
            return e;
        }
        let basic_only = !claims.roles.iter().any(|r| {
            r.eq_ignore_ascii_case("Mail.Read") || r.eq_ignore_ascii_case("Mail.ReadWrite")
        });
        let _guard = if let Some(user) = route.mail_user() {
            let idx = match self.mailbox_index(user) {
                Ok(i) => i,
                Err(e) => return e,
            };
            let upload = if req.method == Method::GET {
                0
            } else {
                req.body.len() as u64
            };
            match self.admit(idx, upload) {
                Ok(g) => Some(g),
                Err(t) => return throttled(t, self.cfg.limits.concurrency_status),
            }
        } else {
            None
        };
        // Latency is spent while holding the mailbox's concurrency slot, like real work.
        let latency = lock(&self.faults).latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        self.execute(route, req, basic_only)
    }

    /// Resolves a user segment to a mailbox, with Exchange's errors for unknown users and
    /// users without a mailbox.
    pub(crate) fn mailbox_index(&self, user: &str) -> Result<usize, Resp> {
        let t = lock(&self.tenant);
        let Some(idx) = t.find_user(user) else {
            return Err(Resp::error(
                StatusCode::NOT_FOUND,
                "ErrorInvalidUser",
                &format!("The requested user '{user}' is invalid."),
            ));
        };
        if !t.mailboxes.contains_key(&idx) {
            let status = StatusCode::from_u16(self.cfg.mailbox_not_enabled_status)
                .unwrap_or(StatusCode::NOT_FOUND);
            return Err(Resp::error(
                status,
                "MailboxNotEnabledForRESTAPI",
                "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
            ));
        }
        Ok(idx)
    }
}

fn throttled(t: Throttle, concurrency_status: u16) -> Resp {
    let (status, which, secs) = match t {
        Throttle::Concurrency(s) => (
            StatusCode::from_u16(concurrency_status).unwrap_or(StatusCode::TOO_MANY_REQUESTS),
            "MailboxConcurrency",
            s,
        ),
        Throttle::Requests(s) => (StatusCode::TOO_MANY_REQUESTS, "Request", s),
        Throttle::IncomingBytes(s) => (StatusCode::TOO_MANY_REQUESTS, "IncomingBytes", s),
    };
    Resp::bare_error(
        status,
        "ApplicationThrottled",
        &format!("Application is over its {which} limit."),
    )
    .with_header("retry-after", secs.to_string())
}
