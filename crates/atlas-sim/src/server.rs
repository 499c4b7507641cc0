//! The HTTP server: startup, the shared state, and the request pipeline every Graph
//! request (direct or inside `$batch`) goes through: faults → auth → permission →
//! mailbox checks → throttling → handler → accounting.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody as _, to_bytes};
use axum::extract::{DefaultBodyLimit, Extension, Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{any, get, post};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::watch;

use crate::auth::AuthState;
use crate::config::{FaultConfig, SimConfig};
use crate::error::{Result, SimError};
use crate::http::{Req, Resp};
use crate::json::MsgView;
use crate::limits::{Limiter, RequestCounters, Throttle};
use crate::model::Tenant;
use crate::route::{self, Call, Endpoint, Handler};
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
    pub imports: Mutex<HashMap<String, crate::mailbox_api::ImportSession>>,
    /// Folders (mailbox index, folder key) whose id the mailbox API's folder endpoints
    /// have returned: the ids an import's `FolderId` may name.
    pub mailbox_folder_ids: Mutex<std::collections::HashSet<(usize, u64)>>,
    pub invitations: Mutex<Vec<crate::classic::Invitation>>,
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
            imports: Mutex::new(HashMap::new()),
            mailbox_folder_ids: Mutex::new(std::collections::HashSet::new()),
            invitations: Mutex::new(Vec::new()),
            reports: Mutex::new(HashMap::new()),
            shutdown,
            addr,
            done,
            cfg: config,
        });
        let app = app(sim.clone());
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
/// checked per endpoint.
const READ_LIMIT: usize = 512 * 1024 * 1024;

/// The accounting kind of a response, set by each entry point (see [`RequestCounters`]).
#[derive(Debug, Clone, Copy)]
struct Kind(&'static str);

/// The ids every response carries: a fresh `request-id`, and the client's
/// `client-request-id` echoed (or the request id when the client sent none).
#[derive(Debug, Clone)]
struct Ids {
    request: String,
    client: String,
}

/// The top-level routes: Graph under `/v1.0`, the identity endpoints under `/{tenant}`,
/// the pre-authenticated upload and report URLs, and the admin API.
fn app(sim: Arc<Sim>) -> Router {
    Router::new()
        .route("/v1.0/$batch", any(batch_entry))
        .route("/v1.0", any(graph_entry))
        .route("/v1.0/", any(graph_entry))
        .route("/v1.0/{*path}", any(graph_entry))
        .route("/_admin/{*path}", any(admin_entry))
        .route("/_upload/{sid}", any(upload_entry))
        .route("/_reports/{id}", any(report_entry))
        .route("/api/gv1.0/{mailbox}/importItem", post(import_entry))
        .route("/{tenant}/discovery/instance", get(discovery_entry))
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(openid_entry),
        )
        .route("/{tenant}/oauth2/v2.0/token", post(token_entry))
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(sim.clone(), account))
        .with_state(sim)
}

/// Reads the body once (so its size is known), hands the request on, and records the
/// response under its [`Kind`]; admin calls are not counted.
async fn account(State(sim): State<Arc<Sim>>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let request = uuid::Uuid::new_v4().to_string();
    let client = parts
        .headers
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| request.clone(), str::to_owned);
    let ids = Ids { request, client };
    let Ok(body) = to_bytes(body, READ_LIMIT).await else {
        return Resp::error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "The maximum request length supported is 4MB.",
        )
        .into_response(&ids.request, &ids.client);
    };
    let bytes_in = body.len();
    parts.extensions.insert(ids);
    let resp = next.run(Request::from_parts(parts, Body::from(body))).await;
    if let Some(Kind(kind)) = resp.extensions().get::<Kind>().copied()
        && kind != "admin"
    {
        let bytes_out = usize::try_from(resp.body().size_hint().exact().unwrap_or(0)).unwrap_or(0);
        lock(&sim.counters).record(kind, bytes_in, bytes_out, resp.status().as_u16());
    }
    resp
}

fn counted(mut resp: Response, kind: &'static str) -> Response {
    resp.extensions_mut().insert(Kind(kind));
    resp
}

fn graph_response(mut r: Resp, kind: &'static str, ids: &Ids) -> Response {
    r.finish(&ids.request, &ids.client);
    counted(r.into_response(&ids.request, &ids.client), kind)
}

async fn graph_entry(
    State(sim): State<Arc<Sim>>,
    Extension(ids): Extension<Ids>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().strip_prefix("/v1.0").unwrap_or_default();
    let req = make_req(method, path, uri.query().unwrap_or_default(), headers, body);
    let (r, kind) = sim.graph(req).await;
    graph_response(r, kind, &ids)
}

async fn batch_entry(
    State(sim): State<Arc<Sim>>,
    Extension(ids): Extension<Ids>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = make_req(
        method,
        "/$batch",
        uri.query().unwrap_or_default(),
        headers,
        body,
    );
    let r = sim.batch(req).await;
    graph_response(r, "batch", &ids)
}

async fn admin_entry(
    State(sim): State<Arc<Sim>>,
    Extension(ids): Extension<Ids>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let rest = uri.path().strip_prefix("/_admin/").unwrap_or_default();
    let segs: Vec<&str> = rest.split('/').collect();
    let r = sim.admin_http(&method, &segs, uri.query().unwrap_or_default(), &body);
    counted(r.into_response(&ids.request, &ids.client), "admin")
}

async fn upload_entry(
    State(sim): State<Arc<Sim>>,
    Extension(ids): Extension<Ids>,
    Path(sid): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = sim.upload_chunk(&method, &sid, &headers, &body);
    counted(r.into_response(&ids.request, &ids.client), "upload_chunk")
}

/// The pre-authenticated import URL handed out by `createImportSession`.
async fn import_entry(
    State(sim): State<Arc<Sim>>,
    Extension(ids): Extension<Ids>,
    Path(mailbox): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut r = sim
        .import_item(&mailbox, uri.query().unwrap_or_default(), &headers, &body)
        .await;
    r.finish(&ids.request, &ids.client);
    counted(r.into_response(&ids.request, &ids.client), "import_item")
}

async fn report_entry(
    State(sim): State<Arc<Sim>>,
    Extension(ids): Extension<Ids>,
    Path(id): Path<String>,
) -> Response {
    let r = sim.report_download(&id);
    counted(
        r.into_response(&ids.request, &ids.client),
        "report_download",
    )
}

async fn discovery_entry(
    State(sim): State<Arc<Sim>>,
    Extension(ids): Extension<Ids>,
    uri: Uri,
) -> Response {
    let r = sim.instance_discovery(uri.query().unwrap_or_default());
    counted(with_ids(r, &ids), "discovery")
}

async fn openid_entry(
    State(sim): State<Arc<Sim>>,
    Extension(ids): Extension<Ids>,
    Path(tenant): Path<String>,
) -> Response {
    counted(
        with_ids(sim.openid_configuration(&tenant), &ids),
        "discovery",
    )
}

async fn token_entry(
    State(sim): State<Arc<Sim>>,
    Extension(ids): Extension<Ids>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = sim.token_endpoint(&tenant, &headers, &body);
    counted(with_ids(r, &ids), "token")
}

async fn not_found(Extension(ids): Extension<Ids>) -> Response {
    let r = Resp::error(
        StatusCode::NOT_FOUND,
        "NotFound",
        "The requested URL does not exist on this server.",
    );
    counted(r.into_response(&ids.request, &ids.client), "other")
}

fn with_ids(mut r: Response, ids: &Ids) -> Response {
    crate::http::standard_headers(r.headers_mut(), &ids.request, &ids.client);
    if let Ok(v) = axum::http::HeaderValue::from_str(&ids.request) {
        r.headers_mut().insert("x-ms-request-id", v);
    }
    r
}

pub(crate) fn make_req(
    method: Method,
    path: &str,
    raw_query: &str,
    headers: HeaderMap,
    body: Bytes,
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
    pub(crate) async fn inject_faults(&self) -> Option<Resp> {
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

    /// Runs one Graph request (path below `/v1.0`) through the route table; returns the
    /// response and the endpoint kind it is counted under.
    pub(crate) async fn graph(self: &Arc<Self>, req: Req) -> (Resp, &'static str) {
        route::dispatch(self, req).await
    }

    /// The pipeline every routed Graph request runs: injected faults → size cap → bearer
    /// token → permission → mailbox checks → per-mailbox throttling → latency → handler.
    pub(crate) async fn pipeline(
        self: &Arc<Self>,
        endpoint: Endpoint,
        req: &Req,
        params: &BTreeMap<String, String>,
        handler: Handler,
    ) -> Resp {
        if let Some(r) = self.inject_faults().await {
            return r;
        }
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
        if let Err(e) = endpoint.access.check(&claims.roles) {
            return e;
        }
        let basic_only = !claims.roles.iter().any(|r| {
            r.eq_ignore_ascii_case("Mail.Read") || r.eq_ignore_ascii_case("Mail.ReadWrite")
        });
        let slot = if endpoint.mailbox {
            let idx = if let Some(id) = params.get("mailbox") {
                match self.mailbox_by_id(id) {
                    Some(i) => i,
                    None => {
                        return Resp::error(
                            StatusCode::NOT_FOUND,
                            "ErrorMailboxNotFound",
                            &format!("The mailbox '{id}' was not found."),
                        );
                    }
                }
            } else {
                let user = params.get("user").map_or("", String::as_str);
                match self.mailbox_index(user) {
                    Ok(i) => i,
                    Err(e) => return e,
                }
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
        let view = MsgView {
            immutable: req.prefer_immutable_ids(),
            text_body: req.prefer_text_body(),
            basic_only,
        };
        let resp = handler(&Call::new(self, req, view, params));
        if req.method != Method::GET {
            drop(slot);
            self.maybe_lose_answer().await;
        }
        resp
    }

    /// The `lost_answer_rate` fault: after a write took effect, stay silent.
    async fn maybe_lose_answer(&self) {
        let faults = lock(&self.faults).clone();
        let lose = faults.lost_answer_rate > 0.0
            && lock(&self.fault_rng).gen_bool(faults.lost_answer_rate.clamp(0.0, 1.0));
        if lose {
            let mut stop = self.shutdown.subscribe();
            let wait = faults
                .hang_delay
                .unwrap_or(Duration::from_secs(86_400 * 365));
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|v| *v) => {}
            }
        }
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

pub(crate) fn throttled(t: Throttle, concurrency_status: u16) -> Resp {
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
