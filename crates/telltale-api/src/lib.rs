//! The only crate that knows axum: the hub's HTTP API. `app(state)` builds
//! the router; every collection answers the three ways of
//! ../shared/spec/watch-api.md (snapshot list, long poll with `wait`, watch
//! stream as SSE or NDJSON) through the one watch engine (telltale-watch).
//! Errors are RFC 9457 problem+json. It also serves the web dashboard's
//! embedded files (`dashboard.rs`), which use the API like any client.
//!
//! It never writes the store and never talks MQTT.

// `Problem` is the error of every request path and is built once per failed
// request; its size does not matter there.
#![allow(clippy::result_large_err)]

mod admin;
mod alerts;
pub mod apidoc;
pub mod auth;
pub mod collection;
pub mod commands;
mod dashboard;
mod feed;
pub mod items;
pub mod metrics;
mod params;
mod problem;
pub mod registry;
mod rejects;
mod routes;
mod rows;
pub mod rules;
pub mod sources;
pub mod tls;
pub mod ws;

pub use feed::feed;
pub use items::{AlertItem, CommandItem, DeviceItem, LatestItem, ReadingItem};
pub use metrics::{CountSource, Counts, Metrics};
pub use problem::Problem;
pub use sources::{Collections, Readers};

use axum::extract::DefaultBodyLimit;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use registry::{RouteTable, Routes};
use rules::RulesFile;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use telltale_store::auth::AuthSnapshot;
use telltale_store::writer::WriterHandle;
use tokio::sync::watch;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// The `[api]` section of the hub's config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// HTTP listener address. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// Most watch streams at once; past it, 429 with Retry-After.
    pub max_watches: usize,
    /// Longest life of one watch stream, seconds (cut by up to 10 % at
    /// random so that reconnects spread out); it ends with a BOOKMARK.
    pub max_stream_secs: u64,
    /// Origins (such as `https://dash.example.org`) whose pages may call the
    /// API with fetch and EventSource (CORS). Empty: no cross-origin access.
    pub cors_origins: Vec<String>,
    /// WebSocket: the server pings this often (seconds).
    pub ws_ping_secs: u64,
    /// WebSocket: a peer silent for `ws_ping_secs` plus this long (seconds)
    /// is closed.
    pub ws_pong_timeout_secs: u64,
    /// WebSocket: most watches on one socket.
    pub ws_max_watches: usize,
    /// Whether `/metrics` answers without a token (for a scraper on a
    /// trusted network); otherwise it needs a `read` token.
    pub metrics_public: bool,
    /// Requests per second each token may make, on average; past it, 429
    /// with Retry-After. Open mode has no per-token limits.
    pub token_rate_per_sec: u32,
    /// Requests a token may make in a burst above its rate.
    pub token_rate_burst: u32,
    /// Most watches (HTTP streams and WebSocket watches together) one token
    /// holds at once; past it, 429.
    pub max_watches_per_token: usize,
    /// Most WebSocket sockets one token holds open at once; past it, 429.
    pub max_sockets_per_token: usize,
    /// Most HTTP connections open at once from one client address; more
    /// are closed as soon as they are accepted (token or not).
    pub max_connections_per_ip: usize,
    /// Largest request head (request line and headers), bytes; larger: 431.
    /// At least 8192.
    pub max_header_bytes: usize,
    /// Largest request body, bytes; larger: 413.
    pub max_body_bytes: usize,
    /// Longest `filter`, `device`, `metric`, `severity` or `state`
    /// parameter (or WebSocket watch field), bytes; longer: 400
    /// `bad_filter`. At most 1024 (the filter language's own limit).
    pub max_filter_bytes: usize,
    /// WebSocket: largest client message the hub reads and answers with an
    /// error result (the socket stays open), bytes.
    pub ws_max_message_bytes: usize,
    /// WebSocket: largest frame or message the socket takes at all, bytes;
    /// a larger one closes the socket (1009).
    pub ws_max_frame_bytes: usize,
    /// WebSocket: seconds a socket opened without a token gets to send its
    /// `auth` message.
    pub ws_auth_timeout_secs: u64,
    /// HTTPS: present, the listener speaks only TLS.
    pub tls: Option<tls::ApiTlsConfig>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_watches: 20_000,
            max_stream_secs: 3600,
            cors_origins: Vec::new(),
            ws_ping_secs: 20,
            ws_pong_timeout_secs: 10,
            ws_max_watches: 64,
            metrics_public: false,
            token_rate_per_sec: 50,
            token_rate_burst: 100,
            max_watches_per_token: 256,
            max_sockets_per_token: 32,
            max_connections_per_ip: 256,
            max_header_bytes: 16 * 1024,
            max_body_bytes: 64 * 1024,
            max_filter_bytes: telltale_filter::MAX_LEN,
            ws_max_message_bytes: 64 * 1024,
            ws_max_frame_bytes: 1024 * 1024,
            ws_auth_timeout_secs: 10,
            tls: None,
        }
    }
}

impl ApiConfig {
    /// Checks what serde cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.max_watches == 0 {
            return Err("api.max_watches must be above 0".into());
        }
        if self.ws_ping_secs == 0 || self.ws_pong_timeout_secs == 0 || self.ws_max_watches == 0 {
            return Err(
                "api.ws_ping_secs, api.ws_pong_timeout_secs and api.ws_max_watches must be above 0"
                    .into(),
            );
        }
        let positive = [
            ("api.token_rate_per_sec", self.token_rate_per_sec as usize),
            ("api.token_rate_burst", self.token_rate_burst as usize),
            ("api.max_watches_per_token", self.max_watches_per_token),
            ("api.max_sockets_per_token", self.max_sockets_per_token),
            ("api.max_connections_per_ip", self.max_connections_per_ip),
            ("api.max_body_bytes", self.max_body_bytes),
            ("api.ws_max_message_bytes", self.ws_max_message_bytes),
            (
                "api.ws_auth_timeout_secs",
                self.ws_auth_timeout_secs as usize,
            ),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("{name} must be above 0"));
            }
        }
        if self.max_header_bytes < 8192 {
            return Err("api.max_header_bytes must be at least 8192".into());
        }
        if !(1..=telltale_filter::MAX_LEN).contains(&self.max_filter_bytes) {
            return Err(format!(
                "api.max_filter_bytes must be from 1 to {}",
                telltale_filter::MAX_LEN
            ));
        }
        if self.ws_max_frame_bytes < self.ws_max_message_bytes {
            return Err("api.ws_max_frame_bytes must be at least api.ws_max_message_bytes".into());
        }
        for o in &self.cors_origins {
            let ok = (o.starts_with("http://") || o.starts_with("https://"))
                && !o.ends_with('/')
                && axum::http::HeaderValue::from_str(o).is_ok();
            if !ok {
                return Err(format!(
                    "api.cors_origins: {o:?} must be an origin such as https://dash.example.org (scheme, host, optional port, no path)"
                ));
            }
        }
        Ok(())
    }

    fn max_stream_lifetime(&self) -> Duration {
        Duration::from_secs(self.max_stream_secs.max(1))
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Every collection the API serves.
    pub collections: Arc<Collections>,
    pub readers: Arc<Readers>,
    /// The store's writer: acknowledgements go through it.
    pub store: WriterHandle,
    /// The alert rules in force, and their file.
    pub rules: Arc<RulesFile>,
    /// Permits for concurrent watches.
    pub watches: Arc<Semaphore>,
    pub config: Arc<ApiConfig>,
    /// Fired at shutdown: every stream ends with a final BOOKMARK.
    pub shutdown: CancellationToken,
    /// The other parts' counters, for `/metrics` and `/readyz`; set by
    /// [`AppState::with_metrics`] (without them, those routes report what
    /// the store and the API know).
    pub metrics: Option<Metrics>,
    /// API tokens, scopes and per-token limits; set by
    /// [`AppState::with_auth`] (without it: no token exists, so the API is
    /// open if it listens on loopback and refuses everything otherwise).
    pub auth: Arc<auth::Auth>,
    /// The credentials database, for the admin routes (opened at first use).
    pub auth_db: Arc<admin::AuthDbSlot>,
    /// The API's own counters (connections, refusals), for `/metrics`.
    pub counters: Arc<ApiCounters>,
    /// TLS on the listener; set by [`AppState::with_tls`].
    pub tls: Option<tls::Tls>,
    /// Where the hub's CA lives (`[tls] dir`), so that creating a device
    /// credential also issues its client certificate; set by
    /// [`AppState::with_ca_dir`].
    pub ca_dir: Option<std::path::PathBuf>,
}

/// The API's own counters.
#[derive(Debug, Default)]
pub struct ApiCounters {
    /// Requests refused for a missing or bad token (401).
    pub auth_failures: AtomicU64,
    /// Requests refused by a token's rate limit (429).
    pub rate_limited: AtomicU64,
    /// HTTP connections open now.
    pub connections: AtomicU64,
    /// Connections closed at once because their client address had
    /// `max_connections_per_ip` open.
    pub connections_refused: AtomicU64,
}

impl AppState {
    /// The collections over the hub's database at `db`, whose store has
    /// `epoch`.
    pub fn new(
        db: std::path::PathBuf,
        epoch: Arc<str>,
        config: ApiConfig,
        shutdown: CancellationToken,
        store: WriterHandle,
        rules: Arc<RulesFile>,
    ) -> Result<AppState, telltale_watch::SourceError> {
        let readers = Readers::new(db);
        Ok(AppState {
            collections: Arc::new(Collections::open(&readers, epoch)?),
            auth: Arc::new(auth_for(&config, no_credentials())),
            auth_db: Arc::new(admin::AuthDbSlot::new(
                readers.path().with_file_name("auth.db"),
            )),
            readers,
            store,
            rules,
            watches: Arc::new(Semaphore::new(config.max_watches)),
            config: Arc::new(config),
            shutdown,
            metrics: None,
            counters: Arc::new(ApiCounters::default()),
            tls: None,
            ca_dir: None,
        })
    }

    /// Checks requests against `credentials`, the live snapshot of
    /// `auth.db` (kept current by the hub), whose file is `auth_db`.
    pub fn with_auth(
        mut self,
        credentials: watch::Receiver<Arc<AuthSnapshot>>,
        auth_db: std::path::PathBuf,
    ) -> AppState {
        self.auth = Arc::new(auth_for(&self.config, credentials));
        self.auth_db = Arc::new(admin::AuthDbSlot::new(auth_db));
        self
    }

    /// Adds the counters of ingest, the broker and the notifier (read
    /// through [`Metrics`], a [`CountSource`] the hub implements).
    pub fn with_metrics(mut self, metrics: Metrics) -> AppState {
        self.metrics = Some(metrics);
        self
    }

    /// Device credentials created through the API come with a client
    /// certificate from the CA in `dir`, when there is one.
    pub fn with_ca_dir(mut self, dir: std::path::PathBuf) -> AppState {
        self.ca_dir = Some(dir);
        self
    }

    /// Makes [`serve`] speak HTTPS with `cert`.
    pub fn with_tls(mut self, cert: Arc<telltale_tls::ReloadableCert>) -> AppState {
        self.tls = Some(tls::Tls::new(cert));
        self
    }
}

/// Credentials that never change and hold no token.
fn no_credentials() -> watch::Receiver<Arc<AuthSnapshot>> {
    watch::channel(Arc::new(AuthSnapshot::default())).1
}

fn auth_for(config: &ApiConfig, credentials: watch::Receiver<Arc<AuthSnapshot>>) -> auth::Auth {
    auth::Auth::new(
        credentials,
        config.listen.ip().is_loopback(),
        auth::TokenLimits {
            rate_per_sec: config.token_rate_per_sec,
            burst: config.token_rate_burst,
            watches: config.max_watches_per_token,
            sockets: config.max_sockets_per_token,
        },
    )
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

async fn device(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    let readers = s.readers.clone();
    let looked =
        tokio::task::spawn_blocking(move || readers.with(|r| r.device(&id)).map(|d| (d, id))).await;
    match looked {
        Ok(Ok((Some(row), _))) => {
            let item = DeviceItem::new(row);
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                telltale_watch::Item::json(&*item).to_owned(),
            )
                .into_response()
        }
        Ok(Ok((None, id))) => Problem::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no device {id:?}"),
        )
        .into_response(),
        Ok(Err(e)) => Problem::internal(e).into_response(),
        Err(e) => Problem::internal(e).into_response(),
    }
}

/// The OpenAPI 3.1 document of the routes: generated from the route table
/// at its first request (`apidoc`), then served as those bytes.
#[derive(Debug, Clone)]
struct ApiDoc {
    /// The routes it describes.
    table: Arc<RouteTable>,
    /// The document's text, once generated.
    text: Arc<std::sync::OnceLock<bytes::Bytes>>,
}

async fn openapi(axum::Extension(doc): axum::Extension<ApiDoc>) -> Response {
    let text = doc
        .text
        .get_or_init(|| apidoc::text(&doc.table.document()).into())
        .clone();
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        text,
    )
        .into_response()
}

async fn method_not_allowed() -> Response {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take this method: the Allow header names those it takes",
    )
    .into_response()
}

async fn not_found() -> Response {
    Problem::new(StatusCode::NOT_FOUND, "not_found", "no such route").into_response()
}

/// 413 problem+json for a body above `max_body_bytes`: at once when its
/// Content-Length says so, and in place of the plain text answer of a body
/// that grew past the limit while read.
async fn body_limit(
    State(s): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let max = s.config.max_body_bytes;
    let too_large = || {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("a request body is at most {max} bytes"),
        )
        .into_response()
    };
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return too_large();
    }
    let res = next.run(req).await;
    let is_problem = res
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if res.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_problem {
        return too_large();
    }
    res
}

/// CORS for the configured origins: GET (and POST, for later routes) with
/// the headers a dashboard sends; `Last-Event-ID` for EventSource resumes.
fn cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    use axum::http::{header, HeaderName, HeaderValue, Method};
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::AllowOrigin::list(list))
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("last-event-id"),
        ])
        .max_age(Duration::from_secs(600))
}

/// Every route of the API with what it needs, in one list: the router,
/// the auth layer and the OpenAPI document's test all read it. A route that
/// is not here does not exist, and one added to the router any other way is
/// refused by the auth layer.
pub fn routes(state: &AppState) -> Routes {
    use apidoc::ops as op;
    use auth::{Need, Scope};
    use axum::http::Method;
    const GET: Method = Method::GET;
    const POST: Method = Method::POST;
    const PUT: Method = Method::PUT;
    const DELETE: Method = Method::DELETE;
    let public = Need::Public;
    let (read, control, admin) = (
        Need::Scope(Scope::Read),
        Need::Scope(Scope::Control),
        Need::Scope(Scope::Admin),
    );
    let metrics = if state.config.metrics_public {
        public
    } else {
        read
    };
    let mut r = Routes::default()
        .route(GET, "/healthz", public, || async { "ok" }, op::health())
        .route(GET, "/readyz", public, metrics::readyz, op::ready())
        .route(GET, "/metrics", metrics, metrics::metrics, op::metrics())
        .route(GET, "/v1/openapi.json", public, openapi, op::openapi());
    for c in &state.collections.served {
        r = r.collection(c.clone());
    }
    r.route(GET, "/v1/devices/{id}", read, device, op::device())
        .route(
            POST,
            "/v1/devices/{id}/commands",
            control,
            commands::post,
            op::send_command(),
        )
        .route(GET, "/v1/commands/{id}", read, commands::one, op::command())
        .route(GET, "/v1/ws", Need::Socket, ws::upgrade, op::websocket())
        .route(GET, "/v1/alerts/{id}", read, alerts::one, op::alert())
        .route(
            POST,
            "/v1/alerts/{id}/ack",
            control,
            alerts::ack,
            op::ack_alert(),
        )
        .route(GET, "/v1/rules", read, alerts::rules, op::rules())
        .route(
            POST,
            "/v1/rules",
            admin,
            alerts::create_rule,
            op::create_rule(),
        )
        .route(GET, "/v1/rules/{name}", read, alerts::rule, op::rule())
        .route(
            PUT,
            "/v1/rules/{name}",
            admin,
            alerts::put_rule,
            op::put_rule(),
        )
        .route(
            DELETE,
            "/v1/rules/{name}",
            admin,
            alerts::delete_rule,
            op::delete_rule(),
        )
        .route(GET, "/v1/whoami", read, admin::whoami, op::whoami())
        .route(GET, "/v1/tokens", admin, admin::tokens, op::list_tokens())
        .route(
            POST,
            "/v1/tokens",
            admin,
            admin::create_token,
            op::create_token(),
        )
        .route(
            DELETE,
            "/v1/tokens/{id}",
            admin,
            admin::revoke_token,
            op::revoke_token(),
        )
        .route(
            GET,
            "/v1/device-credentials",
            admin,
            admin::devices,
            op::list_device_credentials(),
        )
        .route(
            POST,
            "/v1/device-credentials",
            admin,
            admin::create_device,
            op::create_device_credential(),
        )
        .route(
            DELETE,
            "/v1/device-credentials/{device}",
            admin,
            admin::revoke_device,
            op::revoke_device_credential(),
        )
        // The web dashboard: `/` and `/ui/{file}`, outside the API.
        .merge_outside_api(&["/", "/ui/{file}"], dashboard::router())
}

/// The API's router.
pub fn app(state: AppState) -> Router {
    let (router, table) = routes(&state).finish();
    with_layers(router, table, state)
}

/// `router` with the fallbacks and the layers every route goes through,
/// the auth layer checking each request against `table`.
pub fn with_layers(router: Router<AppState>, table: Arc<RouteTable>, state: AppState) -> Router {
    let cors_layer =
        (!state.config.cors_origins.is_empty()).then(|| cors(&state.config.cors_origins));
    let doc = ApiDoc {
        table: table.clone(),
        text: Arc::default(),
    };
    let router = router
        .layer(axum::Extension(doc))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Innermost first: sizes of bodies, then who is calling.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            body_limit,
        ))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            (state.clone(), table),
            auth::layer,
        ))
        .with_state(state);
    match cors_layer {
        Some(layer) => router.layer(layer),
        None => router,
    }
}

/// How long open connections get to finish after the shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

/// Serves `app(state)` on `listener` until `state.shutdown` fires; streams
/// end with a final BOOKMARK first. At most `max_connections_per_ip`
/// connections from one client address are served at once: more are closed
/// as soon as they are accepted. Request heads above `max_header_bytes`
/// answer 431.
pub async fn serve(listener: tokio::net::TcpListener, state: AppState) -> std::io::Result<()> {
    let shutdown = state.shutdown.clone();
    let counters = state.counters.clone();
    let per_ip = auth::PerKey::<std::net::IpAddr>::new(state.config.max_connections_per_ip);
    let max_head = state.config.max_header_bytes.max(8192);
    let tls = state.tls.clone();
    let router = app(state);
    let mut http = hyper::server::conn::http1::Builder::new();
    // Read nothing while a response is being written: a watch stream then
    // keeps no read buffer (hyper reserves 8 KiB or more per read), which
    // is most of what an idle watcher would cost. A client that went away is
    // noticed at the next write; streams write a heartbeat at least every
    // `heartbeatSeconds`.
    http.half_close(true)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(30))
        // A head that does not fit answers 431.
        .max_buf_size(max_head);
    // Connections are tasks of this set: dropping it (at the end of the
    // grace period below) aborts any still open, so nothing they hold (the
    // store's handle among it) outlives the server.
    let mut connections = tokio::task::JoinSet::new();
    let mut refused_logged = std::time::Instant::now() - Duration::from_secs(60);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors, most likely: wait, do not spin.
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            // Reap finished connections as they end.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            _ = shutdown.cancelled() => break,
        };
        let Some(slot) = per_ip.try_take(&peer.ip()) else {
            // Closed at once (dropped): it costs no task and no buffer.
            counters.connections_refused.fetch_add(1, Relaxed);
            if refused_logged.elapsed() >= Duration::from_secs(60) {
                refused_logged = std::time::Instant::now();
                tracing::warn!(
                    client = %peer.ip(),
                    "http connections from one address above api.max_connections_per_ip; closing the extra ones (logged once a minute)"
                );
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(
            tower_http::add_extension::AddExtension::new(
                router.clone(),
                axum::extract::ConnectInfo(peer),
            ),
        );
        let (http, tls) = (http.clone(), tls.clone());
        let shutdown = shutdown.clone();
        let counters = counters.clone();
        counters.connections.fetch_add(1, Relaxed);
        connections.spawn(async move {
            let _slot = slot;
            // The TLS handshake, if any, in the connection's own task.
            let Some(io) = tls::accept(tls.as_ref(), stream).await else {
                counters.connections.fetch_sub(1, Relaxed);
                return;
            };
            let conn = http
                .serve_connection(hyper_util::rt::TokioIo::new(io), service)
                .with_upgrades();
            tokio::pin!(conn);
            let done = tokio::select! {
                r = conn.as_mut() => Some(r),
                _ = shutdown.cancelled() => None,
            };
            let result = match done {
                Some(r) => r,
                // Finish the response in flight (streams end with their final
                // BOOKMARK on the same signal), then close.
                None => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            counters.connections.fetch_sub(1, Relaxed);
            if let Err(e) = result {
                tracing::debug!(error = %e, "http connection ended with an error");
            }
        });
    }
    // Streams end with their final BOOKMARK at once; a client that does not
    // read gets a short grace, then its connection is dropped.
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::ApiConfig;

    #[test]
    fn api_limits_are_checked() {
        ApiConfig::default()
            .check()
            .expect("the defaults are valid");
        // (TOML of [api], what the error must name; empty: valid)
        let table: &[(&str, &str)] = &[
            ("max_header_bytes = 8192", ""),
            ("max_header_bytes = 4096", "api.max_header_bytes"),
            ("max_body_bytes = 0", "api.max_body_bytes"),
            ("token_rate_per_sec = 0", "api.token_rate_per_sec"),
            ("max_connections_per_ip = 0", "api.max_connections_per_ip"),
            ("max_filter_bytes = 2048", "api.max_filter_bytes"),
            ("max_filter_bytes = 0", "api.max_filter_bytes"),
            ("ws_max_frame_bytes = 1000", "api.ws_max_frame_bytes"),
            ("metrics_public = true", ""),
        ];
        for (toml_text, want) in table {
            let c: ApiConfig = toml::from_str(toml_text).expect("parses");
            match (c.check(), want.is_empty()) {
                (Ok(()), true) => {}
                (Err(e), false) => assert!(e.contains(want), "{toml_text}: {e}"),
                (r, _) => panic!("{toml_text}: {r:?}"),
            }
        }
        assert!(toml::from_str::<ApiConfig>("max_tokens = 3").is_err());
    }
}
