//! The only crate that knows axum: the hub's HTTP API. `app(state)` builds
//! the router; every collection answers the three ways of
//! ../shared/spec/watch-api.md (snapshot list, long poll with `wait`, watch
//! stream as SSE or NDJSON) through the one watch engine (telltale-watch).
//! Errors are RFC 9457 problem+json.
//!
//! It never writes the store and never talks MQTT.

// `Problem` is the error of every request path and is built once per failed
// request; its size does not matter there.
#![allow(clippy::result_large_err)]

mod alerts;
pub mod commands;
pub mod items;
pub mod metrics;
mod params;
mod problem;
mod routes;
pub mod rules;
pub mod sources;
pub mod tls;
pub mod ws;

pub use items::{AlertItem, CommandItem, DeviceItem, LatestItem, ReadingItem};
pub use metrics::{Metrics, NotifyCounts};
pub use problem::Problem;
pub use sources::Readers;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rules::RulesFile;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use telltale_store::writer::{Changes, ReadingsSwitch, WriterHandle};
use telltale_watch::{Collection, Item, Kind, SourceError};
use tokio::sync::{broadcast, Semaphore};
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
    pub readings: Arc<Collection<ReadingItem>>,
    pub latest: Arc<Collection<LatestItem>>,
    pub devices: Arc<Collection<DeviceItem>>,
    pub alerts: Arc<Collection<AlertItem>>,
    pub commands: Arc<Collection<CommandItem>>,
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
    /// TLS on the listener; set by [`AppState::with_tls`].
    pub tls: Option<tls::Tls>,
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
        let (r, l, d) = readers.with(|r| r.collection_seqs())?;
        let a = readers.with(|r| r.alerts_seq())?;
        let c = readers.with(|r| r.commands_seq())?;
        Ok(AppState {
            readings: Collection::new(
                "readings",
                Kind::Log,
                epoch.clone(),
                r,
                Arc::new(sources::ReadingsSource(readers.clone())),
            ),
            latest: Collection::new(
                "latest",
                Kind::State,
                epoch.clone(),
                l,
                Arc::new(sources::LatestSource(readers.clone())),
            ),
            devices: Collection::new(
                "devices",
                Kind::State,
                epoch.clone(),
                d,
                Arc::new(sources::DevicesSource(readers.clone())),
            ),
            alerts: Collection::new(
                "alerts",
                Kind::State,
                epoch.clone(),
                a,
                Arc::new(sources::AlertsSource(readers.clone())),
            ),
            commands: Collection::new(
                "commands",
                Kind::State,
                epoch,
                c,
                Arc::new(sources::CommandsSource(readers.clone())),
            ),
            readers,
            store,
            rules,
            watches: Arc::new(Semaphore::new(config.max_watches)),
            config: Arc::new(config),
            shutdown,
            metrics: None,
            tls: None,
        })
    }

    /// Adds the counters of ingest, the broker and the notifier.
    pub fn with_metrics(mut self, metrics: Metrics) -> AppState {
        self.metrics = Some(metrics);
        self
    }

    /// Makes [`serve`] speak HTTPS with `cert`.
    pub fn with_tls(mut self, cert: Arc<telltale_tls::ReloadableCert>) -> AppState {
        self.tls = Some(tls::Tls::new(cert));
        self
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// Feeds each commit of the store to the collections' watchers, until the
/// store's broadcast ends. A commit missed (lagging) is read back from the
/// store, so watchers never see a gap.
pub async fn feed(
    state: AppState,
    mut commits: broadcast::Receiver<Arc<Changes>>,
    readings_switch: ReadingsSwitch,
) {
    loop {
        let result = match commits.recv().await {
            Ok(c) => {
                // Items (and their JSON) are built only for collections
                // someone watches; the others just move their version. The
                // store builds reading rows only while someone watches them.
                let watched = state.readings.has_watchers();
                readings_switch.set(watched);
                let r = if watched
                    && c.readings.is_empty()
                    && c.last_seq > state.readings.last_seq()
                {
                    // Written before the store knew a watcher had come.
                    state.readings.resync().await
                } else if watched {
                    state
                        .readings
                        .publish_checked(c.readings.iter().cloned().map(ReadingItem::new).collect())
                        .await
                } else {
                    state.readings.advance(c.last_seq);
                    Ok(())
                };
                // Readings shared before their commit move nothing else.
                if c.committed {
                    state.readings.committed(c.last_seq);
                    let l =
                        feed_commit(&state.latest, &c.latest, c.latest_seq, LatestItem::new).await;
                    let d = feed_commit(&state.devices, &c.devices, c.devices_seq, DeviceItem::new)
                        .await;
                    let a =
                        feed_commit(&state.alerts, &c.alerts, c.alerts_seq, AlertItem::new).await;
                    let m = feed_commit(
                        &state.commands,
                        &c.commands,
                        c.commands_seq,
                        CommandItem::new,
                    )
                    .await;
                    r.and(l).and(d).and(a).and(m)
                } else {
                    r
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                let r = state.readings.resync().await;
                let l = state.latest.resync().await;
                let d = state.devices.resync().await;
                let a = state.alerts.resync().await;
                let m = state.commands.resync().await;
                r.and(l).and(d).and(a).and(m)
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "feeding watchers failed");
        }
    }
}

/// Moves a state collection to a commit: shares the rows it changed, as
/// items, if someone watches it; otherwise only moves its version.
async fn feed_commit<T: Item, R: Clone>(
    coll: &Collection<T>,
    rows: &[R],
    seq: u64,
    item: impl Fn(R) -> Arc<T>,
) -> Result<(), SourceError> {
    let r = if coll.has_watchers() {
        coll.publish_checked(rows.iter().cloned().map(item).collect())
            .await
    } else {
        coll.advance(seq);
        Ok(())
    };
    coll.committed(seq);
    r
}

type Pairs = Query<Vec<(String, String)>>;

async fn readings(State(s): State<AppState>, headers: HeaderMap, Query(q): Pairs) -> Response {
    routes::serve_collection(&s, &s.readings, "ReadingList", &headers, &q)
        .await
        .into_response()
}

async fn latest(State(s): State<AppState>, headers: HeaderMap, Query(q): Pairs) -> Response {
    routes::serve_collection(&s, &s.latest, "LatestList", &headers, &q)
        .await
        .into_response()
}

async fn commands_list(State(s): State<AppState>, headers: HeaderMap, Query(q): Pairs) -> Response {
    routes::serve_collection(&s, &s.commands, "CommandList", &headers, &q)
        .await
        .into_response()
}

async fn alerts(State(s): State<AppState>, headers: HeaderMap, Query(q): Pairs) -> Response {
    routes::serve_collection(&s, &s.alerts, "AlertList", &headers, &q)
        .await
        .into_response()
}

async fn devices(State(s): State<AppState>, headers: HeaderMap, Query(q): Pairs) -> Response {
    routes::serve_collection(&s, &s.devices, "DeviceList", &headers, &q)
        .await
        .into_response()
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

#[derive(Debug, serde::Serialize)]
struct RejectJson {
    id: i64,
    time: String,
    topic: String,
    device: Option<String>,
    kind: String,
    reason: String,
    size: i64,
}

async fn rejects(State(s): State<AppState>, Query(q): Pairs) -> Response {
    let mut limit = 100usize;
    for (k, v) in &q {
        match k.as_str() {
            "limit" => match v.parse::<usize>() {
                Ok(n) if (1..=10_000).contains(&n) => limit = n,
                _ => {
                    return Problem::bad_param("limit", "limit must be from 1 to 10000")
                        .into_response()
                }
            },
            _ => {
                return Problem::bad_param(k, format!("this route does not take the parameter {k}"))
                    .into_response()
            }
        }
    }
    let readers = s.readers.clone();
    let rows = tokio::task::spawn_blocking(move || {
        readers.with(|r| Ok((r.rejects(limit)?, r.reject_counts()?)))
    })
    .await;
    match rows {
        Ok(Ok((rows, counts))) => {
            let items: Vec<_> = rows
                .into_iter()
                .map(|r| RejectJson {
                    id: r.id,
                    time: items::rfc3339(r.at_ms),
                    topic: r.topic,
                    device: r.device,
                    kind: r.kind,
                    reason: r.reason,
                    size: r.size,
                })
                .collect();
            let counts: serde_json::Map<String, serde_json::Value> =
                counts.into_iter().map(|(k, n)| (k, n.into())).collect();
            Json(serde_json::json!({"kind": "RejectList", "counts": counts, "items": items}))
                .into_response()
        }
        Ok(Err(e)) => Problem::internal(e).into_response(),
        Err(e) => Problem::internal(e).into_response(),
    }
}

/// The OpenAPI 3.1 document of these routes (checked against the router by
/// tests/openapi.rs).
const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response()
}

async fn method_not_allowed() -> Response {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route answers GET only",
    )
    .into_response()
}

async fn not_found() -> Response {
    Problem::new(StatusCode::NOT_FOUND, "not_found", "no such route").into_response()
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
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("last-event-id"),
        ])
        .max_age(Duration::from_secs(600))
}

/// The API's router.
pub fn app(state: AppState) -> Router {
    let cors_layer =
        (!state.config.cors_origins.is_empty()).then(|| cors(&state.config.cors_origins));
    let router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(metrics::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/v1/readings", get(readings))
        .route("/v1/latest", get(latest))
        .route("/v1/devices", get(devices))
        .route("/v1/devices/{id}", get(device))
        .route("/v1/rejects", get(rejects))
        .route("/v1/devices/{id}/commands", post(commands::post))
        .route("/v1/commands", get(commands_list))
        .route("/v1/commands/{id}", get(commands::one))
        .route("/v1/ws", get(ws::upgrade))
        .route("/v1/alerts", get(alerts))
        .route("/v1/alerts/{id}", get(alerts::one))
        .route("/v1/alerts/{id}/ack", post(alerts::ack))
        .route("/v1/rules", get(alerts::rules).post(alerts::create_rule))
        .route(
            "/v1/rules/{name}",
            get(alerts::rule)
                .put(alerts::put_rule)
                .delete(alerts::delete_rule),
        )
        .route("/v1/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    match cors_layer {
        Some(layer) => router.layer(layer),
        None => router,
    }
}

/// How long open connections get to finish after the shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

/// Serves `app(state)` on `listener` until `state.shutdown` fires; streams
/// end with a final BOOKMARK first.
pub async fn serve(listener: tokio::net::TcpListener, state: AppState) -> std::io::Result<()> {
    let shutdown = state.shutdown.clone();
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
        .header_read_timeout(std::time::Duration::from_secs(30));
    // Connections are tasks of this set: dropping it (at the end of the
    // grace period below) aborts any still open, so nothing they hold (the
    // store's handle among it) outlives the server.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
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
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let (http, tls) = (http.clone(), tls.clone());
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            // The TLS handshake, if any, in the connection's own task.
            let Some(io) = tls::accept(tls.as_ref(), stream).await else {
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
