//! `/v1/ws`: one socket carries many watches and the control traffic of a
//! dashboard or phone (contract: the watch API, section 6). JSON text
//! frames; every client message has an integer `id`, echoed in replies.
//!
//! The session ([`session`]) is generic over a `Sink` and a `Stream` of
//! [`Frame`]s, so it runs the same over a real socket and over channels in
//! tests. Watches go through the same engine, parameters, resume rules and
//! slow-consumer rules as the HTTP streams, each holding one of the hub's
//! watch permits. A bad message is answered with an error result and the
//! socket stays open. The server pings; a peer silent for too long is
//! closed.

use crate::auth::{Caller, KeyGuard, Scope};
use crate::commands::CommandRequest;
use crate::problem::Problem;
use crate::routes::event_json;
use crate::AppState;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;
use telltale_store::AckOutcome;
use telltale_watch::Item;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

mod rate;

/// A WebSocket frame as the session sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close,
    /// A close frame with a status code and a reason: 1008 (policy: the
    /// token was refused or revoked), 1009 (a message too big).
    CloseWith(u16, String),
}

/// Limits of one socket.
#[derive(Debug, Clone)]
pub struct WsLimits {
    /// Watches open at once on the socket.
    pub max_watches: usize,
    /// Largest client message (bytes); a larger one gets an error result.
    pub max_message_bytes: usize,
    /// Client messages per second, on average.
    pub rate_per_sec: f64,
    /// Client messages in a burst.
    pub burst: f64,
    /// The server pings this often.
    pub ping_every: Duration,
    /// A peer that sent nothing (not even a pong) for `ping_every` plus
    /// this long is closed.
    pub pong_timeout: Duration,
    /// Server messages queued for a slow socket; a watch waits (and its
    /// watcher falls back to the store, as on HTTP) beyond it.
    pub queue: usize,
}

impl Default for WsLimits {
    fn default() -> Self {
        WsLimits {
            max_watches: 64,
            max_message_bytes: 64 * 1024,
            rate_per_sec: 50.0,
            burst: 100.0,
            ping_every: Duration::from_secs(20),
            pong_timeout: Duration::from_secs(10),
            queue: 1024,
        }
    }
}

/// Who a socket is for: known from its request, or to be read from its
/// first message.
#[derive(Debug)]
pub enum SocketAuth {
    /// The request carried a valid token (or the hub is open); the socket
    /// holds one of its token's socket slots, if it has a token.
    Known(Caller, Option<KeyGuard<String>>),
    /// The first message must be `{"type":"auth","token":"tlt_..."}`,
    /// within this long; the client's address is for the audit line.
    FirstMessage(Duration, Option<std::net::SocketAddr>),
}

/// Reads the first message of a socket opened without a token: an `auth`
/// message with a live token makes the caller (answered `auth_ok`);
/// anything else, or nothing in time, is answered with an error and the
/// socket closed (1008).
async fn first_message_auth<S, R, E>(
    state: &AppState,
    sink: &mut S,
    stream: &mut R,
    within: Duration,
    peer: Option<std::net::SocketAddr>,
) -> Option<(Caller, Option<KeyGuard<String>>)>
where
    S: Sink<Frame> + Unpin,
    R: Stream<Item = Result<Frame, E>> + Unpin,
{
    let deadline = Instant::now() + within;
    let refused = |id: &Value, detail: &str| {
        error(
            id,
            Problem::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "unauthorized",
                detail.to_owned(),
            ),
        )
    };
    let (reply, outcome) = loop {
        let frame = match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => {
                break (
                    refused(
                        &Value::Null,
                        "no auth message in time: send {\"type\":\"auth\",\"token\":\"...\"} first",
                    ),
                    None,
                )
            }
            Ok(None | Some(Err(_)) | Some(Ok(Frame::Close | Frame::CloseWith(..)))) => return None,
            Ok(Some(Ok(Frame::Ping(_) | Frame::Pong(_)))) => continue,
            Ok(Some(Ok(Frame::Binary(_)))) => {
                break (
                    refused(&Value::Null, "the first message must be an auth message"),
                    None,
                )
            }
            Ok(Some(Ok(Frame::Text(t)))) => t,
        };
        let msg: Value = if frame.len() > state.config.ws_max_message_bytes {
            Value::Null
        } else {
            serde_json::from_str(&frame).unwrap_or(Value::Null)
        };
        let id = msg.get("id").cloned().unwrap_or(Value::Null);
        if msg.get("type").and_then(Value::as_str) != Some("auth") {
            break (
                refused(
                    &id,
                    "the first message must be {\"type\":\"auth\",\"token\":\"...\"} (or send the token with the request)",
                ),
                None,
            );
        }
        let token = msg.get("token").and_then(Value::as_str);
        match state.auth.check(token) {
            Ok(caller) => {
                let slot = match caller.key() {
                    None => None,
                    Some(k) => match state.auth.sockets.try_take(&k.to_owned()) {
                        Some(g) => Some(g),
                        None => {
                            let p = Problem::new(
                                axum::http::StatusCode::TOO_MANY_REQUESTS,
                                "too_many_sockets",
                                format!(
                                    "this token holds {} sockets, the most [api] max_sockets_per_token allows",
                                    state.config.max_sockets_per_token
                                ),
                            );
                            break (error(&id, p), None);
                        }
                    },
                };
                let mut ok = json!({"type": "auth_ok", "scope": caller.scope.as_str()});
                if !id.is_null() {
                    ok["id"] = id;
                }
                break (ok.to_string(), Some((caller, slot)));
            }
            Err(r) => {
                state
                    .counters
                    .auth_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let token_id = match &r {
                    crate::auth::Refusal::Invalid { id } => id.clone(),
                    _ => None,
                };
                tracing::warn!(
                    target: "audit",
                    client = %peer.map_or("-".to_owned(), |p| p.to_string()),
                    route = "/v1/ws",
                    token_id = token_id.as_deref().unwrap_or("-"),
                    "api token refused in a websocket auth message"
                );
                break (error(&id, r.problem()), None);
            }
        }
    };
    let ok = outcome.is_some();
    if sink.send(Frame::Text(reply)).await.is_err() {
        return None;
    }
    if !ok {
        let _ = sink
            .send(Frame::CloseWith(1008, "unauthorized".into()))
            .await;
    }
    outcome
}

/// Runs one socket until the peer closes it, goes silent, its token is
/// revoked, or the hub stops.
pub async fn session<S, R, E>(
    state: AppState,
    mut sink: S,
    mut stream: R,
    limits: WsLimits,
    auth: SocketAuth,
) where
    S: Sink<Frame> + Unpin,
    R: Stream<Item = Result<Frame, E>> + Unpin,
    E: std::fmt::Display,
{
    let (caller, _slot) = match auth {
        SocketAuth::Known(c, slot) => (c, slot),
        SocketAuth::FirstMessage(within, peer) => {
            match first_message_auth(&state, &mut sink, &mut stream, within, peer).await {
                Some(pair) => pair,
                None => return,
            }
        }
    };
    let (out_tx, mut out_rx) = mpsc::channel::<String>(limits.queue.max(1));
    let mut s = Session {
        state: state.clone(),
        caller: caller.clone(),
        out: out_tx,
        watches: HashMap::new(),
        limits: limits.clone(),
        rate: rate::MessageRate::new(limits.rate_per_sec, limits.burst),
    };
    let revoked = state.auth.until_invalid(&caller);
    tokio::pin!(revoked);
    let mut ping = tokio::time::interval_at(Instant::now() + limits.ping_every, limits.ping_every);
    let mut heard = Instant::now();
    loop {
        tokio::select! {
            () = &mut revoked => {
                tracing::info!(
                    target: "audit",
                    token_id = caller.key().unwrap_or("-"),
                    token = caller.who(),
                    "websocket closed: token revoked"
                );
                let p = Problem::new(
                    axum::http::StatusCode::UNAUTHORIZED,
                    "token_revoked",
                    caller.revoked_detail(),
                );
                let _ = sink.send(Frame::Text(error(&Value::Null, p))).await;
                let _ = sink.send(Frame::CloseWith(1008, "token revoked".into())).await;
                break;
            }
            _ = state.shutdown.cancelled() => {
                // Watches end with their final BOOKMARK: pass on what is queued.
                let end = Instant::now() + Duration::from_millis(500);
                while let Ok(Some(msg)) = tokio::time::timeout_at(end, out_rx.recv()).await {
                    if sink.send(Frame::Text(msg)).await.is_err() {
                        break;
                    }
                }
                break;
            }
            frame = stream.next() => {
                heard = Instant::now();
                let reply = match frame {
                    None | Some(Ok(Frame::Close | Frame::CloseWith(..))) => break,
                    Some(Err(e)) => {
                        // A frame above ws_max_frame_bytes, or a broken one.
                        let text = e.to_string();
                        tracing::debug!(error = %text, "websocket read failed; closing");
                        let code = if text.contains("too long") || text.contains("too big") {
                            1009
                        } else {
                            1002
                        };
                        let _ = sink.send(Frame::CloseWith(code, "message too big or malformed".into())).await;
                        break;
                    }
                    Some(Ok(Frame::Pong(_) | Frame::Ping(_))) => None,
                    Some(Ok(Frame::Binary(_))) => Some(error(&Value::Null, bad("bad_message", "messages are JSON text frames"))),
                    Some(Ok(Frame::Text(text))) => s.message(&text).await,
                };
                if let Some(reply) = reply {
                    if sink.send(Frame::Text(reply)).await.is_err() {
                        break;
                    }
                }
            }
            Some(msg) = out_rx.recv() => {
                if sink.send(Frame::Text(msg)).await.is_err() {
                    break;
                }
            }
            _ = ping.tick() => {
                if heard.elapsed() > limits.ping_every + limits.pong_timeout {
                    tracing::info!("websocket peer silent; closing");
                    let _ = sink.send(Frame::Close).await;
                    break;
                }
                if sink.send(Frame::Ping(Vec::new())).await.is_err() {
                    break;
                }
            }
        }
    }
    for (_, w) in s.watches.drain() {
        w.abort();
    }
}

struct Session {
    state: AppState,
    /// Who the socket is for: the scope its messages are checked against.
    caller: Caller,
    out: mpsc::Sender<String>,
    /// Open watches by the id of the message that opened them.
    watches: HashMap<u64, JoinHandle<()>>,
    limits: WsLimits,
    /// The socket's message rate (`rate_per_sec`, `burst`): each client
    /// message that parses takes a cell.
    rate: rate::MessageRate,
}

fn bad(code: &'static str, detail: impl Into<String>) -> Problem {
    Problem::new(axum::http::StatusCode::BAD_REQUEST, code, detail)
}

fn error(id: &Value, p: Problem) -> String {
    json!({"id": id, "type": "result", "success": false, "error": p}).to_string()
}

fn ok(id: u64, extra: Option<(&str, Value)>) -> String {
    let mut v = json!({"id": id, "type": "result", "success": true});
    if let Some((k, x)) = extra {
        v[k] = x;
    }
    v.to_string()
}

/// The fields of a `watch` message that become query parameters.
const WATCH_FIELDS: &[(&str, &str)] = &[
    ("filter", "filter"),
    ("resourceVersion", "resourceVersion"),
    ("sendInitialEvents", "sendInitialEvents"),
    ("since", "since"),
    ("heartbeatSeconds", "heartbeatSeconds"),
    ("timeoutSeconds", "timeoutSeconds"),
    ("throttleSeconds", "throttleSeconds"),
    ("device", "device"),
    ("metric", "metric"),
    ("severity", "severity"),
    ("state", "state"),
];

impl Session {
    /// Answers one client message (`None`: nothing to answer now).
    async fn message(&mut self, text: &str) -> Option<String> {
        if text.len() > self.limits.max_message_bytes {
            return Some(error(
                &Value::Null,
                bad(
                    "message_too_large",
                    format!(
                        "a message is at most {} bytes",
                        self.limits.max_message_bytes
                    ),
                ),
            ));
        }
        let msg: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                return Some(error(
                    &Value::Null,
                    bad("bad_message", format!("not JSON: {e}")),
                ))
            }
        };
        let id_value = msg.get("id").cloned().unwrap_or(Value::Null);
        // The rate limit: a message that parses takes a cell.
        if !self.rate.take() {
            return Some(error(
                &id_value,
                Problem {
                    retry_after: Some(1),
                    ..Problem::new(
                        axum::http::StatusCode::TOO_MANY_REQUESTS,
                        "rate_limited",
                        format!("at most {} messages a second", self.limits.rate_per_sec),
                    )
                },
            ));
        }
        let Some(id) = msg.get("id").and_then(Value::as_u64) else {
            return Some(error(
                &id_value,
                bad("bad_message", "every message needs an integer id"),
            ));
        };
        let kind = msg.get("type").and_then(Value::as_str).unwrap_or("");
        let answer = match kind {
            "ping" => Ok(json!({"id": id, "type": "pong"}).to_string()),
            "watch" => self.watch(id, &msg).await,
            "unwatch" => self.unwatch(id, &msg),
            "command" => match self.caller.require(Scope::Control) {
                Ok(()) => self.command(id, &msg).await,
                Err(p) => Err(p),
            },
            "ack_alert" => match self.caller.require(Scope::Control) {
                Ok(()) => self.ack(id, &msg).await,
                Err(p) => Err(p),
            },
            "auth" => Err(bad(
                "bad_message",
                "this socket is authenticated already: auth is the first message only",
            )),
            other => Err(bad(
                "bad_message",
                format!(
                    "unknown type {other:?}: one of auth, watch, unwatch, command, ack_alert, ping"
                ),
            )),
        };
        Some(answer.unwrap_or_else(|p| error(&id_value, p)))
    }

    async fn watch(&mut self, id: u64, msg: &Value) -> Result<String, Problem> {
        self.watches.retain(|_, w| !w.is_finished());
        if self.watches.contains_key(&id) {
            return Err(bad("bad_message", format!("a watch with id {id} is open")));
        }
        if self.watches.len() >= self.limits.max_watches {
            return Err(Problem::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "too_many_watches",
                format!("at most {} watches on one socket", self.limits.max_watches),
            ));
        }
        let obj = msg
            .as_object()
            .ok_or_else(|| bad("bad_message", "a message is an object"))?;
        let mut pairs = vec![("watch".to_owned(), "true".to_owned())];
        for (k, v) in obj {
            if matches!(k.as_str(), "id" | "type" | "resource") {
                continue;
            }
            let Some((_, param)) = WATCH_FIELDS.iter().find(|(f, _)| f == k) else {
                return Err(Problem {
                    param: Some(k.clone()),
                    ..bad("bad_parameter", format!("a watch does not take {k}"))
                });
            };
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(Problem {
                        param: Some(k.clone()),
                        ..bad(
                            "bad_parameter",
                            format!("{k} must be a string, number or boolean"),
                        )
                    })
                }
            };
            pairs.push(((*param).to_owned(), text));
        }
        let resource = obj.get("resource").and_then(Value::as_str).unwrap_or("");
        let collections = self.state.collections.clone();
        let Some(coll) = collections.get(resource) else {
            return Err(Problem {
                param: Some("resource".into()),
                ..bad(
                    "bad_parameter",
                    format!(
                        "unknown resource {resource:?}: one of {}",
                        collections.names()
                    ),
                )
            });
        };
        let ask = crate::collection::Ask {
            state: &self.state,
            caller: &self.caller,
            pairs: &pairs,
        };
        let handle = coll.ws_watch(ask, id, self.out.clone()).await?;
        self.watches.insert(id, handle);
        Ok(ok(id, None))
    }

    fn unwatch(&mut self, id: u64, msg: &Value) -> Result<String, Problem> {
        let Some(watch) = msg.get("watch").and_then(Value::as_u64) else {
            return Err(Problem {
                param: Some("watch".into()),
                ..bad("bad_parameter", "unwatch needs the id of the watch message")
            });
        };
        match self.watches.remove(&watch) {
            Some(w) => {
                w.abort();
                Ok(ok(id, None))
            }
            None => Err(Problem::new(
                axum::http::StatusCode::NOT_FOUND,
                "not_found",
                format!("no open watch {watch}"),
            )),
        }
    }

    async fn command(&mut self, id: u64, msg: &Value) -> Result<String, Problem> {
        let mut body = msg.clone();
        let obj = body
            .as_object_mut()
            .ok_or_else(|| bad("bad_message", "a message is an object"))?;
        obj.remove("id");
        obj.remove("type");
        let device = match obj.remove("device") {
            Some(Value::String(d)) => d,
            _ => {
                return Err(Problem {
                    field: Some("device".into()),
                    ..bad("bad_body", "a command needs the device id")
                })
            }
        };
        let key = match obj.remove("idempotencyKey") {
            None => None,
            Some(Value::String(k)) => Some(k),
            Some(_) => return Err(bad("bad_idempotency_key", "idempotencyKey is a string")),
        };
        let text = body.to_string();
        let req: CommandRequest = crate::alerts::parse_body(text.as_bytes())?;
        let (item, new) = crate::commands::create(&self.state, &device, req, key).await?;
        if new {
            crate::commands::audit(&self.caller, &item);
        }
        // Its steps follow as events of this message's id, until it ends.
        let command_id = item.obj.id;
        let seq = item.seq();
        let (coll, out, shutdown) = (
            self.state.collections.commands.clone(),
            self.out.clone(),
            self.state.shutdown.clone(),
        );
        let until = humantime::parse_rfc3339(&item.obj.deadline)
            .ok()
            .and_then(|d| d.duration_since(std::time::SystemTime::now()).ok())
            .unwrap_or_default()
            + Duration::from_secs(5);
        tokio::spawn(async move {
            let events = coll.watch(telltale_watch::WatchRequest {
                start: telltale_watch::Start::After(seq),
                filter: telltale_watch::Filter::all(),
                heartbeat: Duration::from_secs(3600),
                timeout: Some(until),
                throttle: None,
                max_lifetime: until + Duration::from_secs(60),
                shutdown,
            });
            tokio::pin!(events);
            while let Some(e) = events.next().await {
                let telltale_watch::WatchEvent::Item { item, .. } = &e else {
                    continue;
                };
                if item.obj.id != command_id {
                    continue;
                }
                let done = item.obj.state.is_final();
                let event = event_json(&coll, &e).0;
                if out
                    .send(format!(r#"{{"id":{id},"type":"event","event":{event}}}"#))
                    .await
                    .is_err()
                    || done
                {
                    return;
                }
            }
        });
        let command: Value = serde_json::from_str(item.json()).unwrap_or(Value::Null);
        Ok(ok(id, Some(("command", command))))
    }

    async fn ack(&mut self, id: u64, msg: &Value) -> Result<String, Problem> {
        let alert = match msg.get("alert") {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        }
        .ok_or_else(|| Problem {
            field: Some("alert".into()),
            ..bad("bad_body", "ack_alert needs the alert's id")
        })?;
        let text = |k: &str| msg.get(k).and_then(Value::as_str).map(str::to_owned);
        let by = text("by").unwrap_or_else(|| "websocket".into());
        let note = text("note");
        match self
            .state
            .store
            .ack_alert(alert, &by, note.as_deref())
            .await
        {
            Ok(AckOutcome::Done(row)) => {
                tracing::info!(
                    target: "audit",
                    token = self.caller.who(),
                    alert,
                    by = %by,
                    "alert acknowledged"
                );
                let item = crate::items::AlertItem::new(row);
                let v: Value = serde_json::from_str(item.json()).unwrap_or(Value::Null);
                Ok(ok(id, Some(("alert", v))))
            }
            Ok(AckOutcome::NotFound) => Err(Problem::new(
                axum::http::StatusCode::NOT_FOUND,
                "not_found",
                format!("no alert {alert}"),
            )),
            Ok(AckOutcome::Resolved(_)) => Err(Problem::new(
                axum::http::StatusCode::CONFLICT,
                "alert_resolved",
                format!("alert {alert} is resolved: there is nothing to acknowledge"),
            )),
            Err(e) => Err(Problem::internal(e)),
        }
    }
}

/// Whether a WebSocket request's `Origin` may open a socket: none at all (a
/// program, not a browser), one of `cors_origins`, or the hub's own origin
/// (the same host and port as the request's `Host`, so a dashboard the hub
/// serves works). A page of any other origin is refused: it would ride on
/// the browser of someone who can reach the hub (cross-site WebSocket
/// hijacking).
pub fn origin_allowed(headers: &axum::http::HeaderMap, cors_origins: &[String]) -> bool {
    use axum::http::header;
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if cors_origins.iter().any(|o| o == origin) {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
}

/// `GET /v1/ws`: upgrades to a WebSocket session. The token comes with the
/// request (header or `access_token`; the auth layer checked it) or in the
/// first message.
pub async fn upgrade(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: Option<axum::Extension<Caller>>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: axum::http::HeaderMap,
    ws: Result<
        axum::extract::ws::WebSocketUpgrade,
        axum::extract::ws::rejection::WebSocketUpgradeRejection,
    >,
) -> axum::response::Response {
    use axum::extract::ws::{CloseFrame, Message};
    use axum::response::IntoResponse;
    if !origin_allowed(&headers, &state.config.cors_origins) {
        let origin = headers
            .get(axum::http::header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .unwrap_or("?");
        tracing::warn!(
            target: "audit",
            client = %peer.as_ref().map_or("-".to_owned(), |p| (p.0).0.to_string()),
            origin,
            "websocket refused: origin not allowed"
        );
        return Problem::new(
            axum::http::StatusCode::FORBIDDEN,
            "forbidden_origin",
            "pages of this origin may not open the hub's WebSocket: add it to [api] cors_origins",
        )
        .into_response();
    }
    let limits = WsLimits {
        max_watches: state.config.ws_max_watches,
        max_message_bytes: state.config.ws_max_message_bytes,
        ping_every: Duration::from_secs(state.config.ws_ping_secs),
        pong_timeout: Duration::from_secs(state.config.ws_pong_timeout_secs),
        ..WsLimits::default()
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => {
            return Problem::new(
                axum::http::StatusCode::UPGRADE_REQUIRED,
                "websocket_required",
                format!("/v1/ws is a WebSocket: {e}"),
            )
            .into_response()
        }
    };
    let auth = match caller {
        Some(axum::Extension(c)) => {
            let slot = match c.key() {
                None => None,
                Some(k) => match state.auth.sockets.try_take(&k.to_owned()) {
                    Some(g) => Some(g),
                    None => {
                        return Problem {
                            retry_after: Some(5),
                            ..Problem::new(
                                axum::http::StatusCode::TOO_MANY_REQUESTS,
                                "too_many_sockets",
                                format!(
                                    "this token holds {} sockets, the most [api] max_sockets_per_token allows",
                                    state.config.max_sockets_per_token
                                ),
                            )
                        }
                        .into_response()
                    }
                },
            };
            SocketAuth::Known(c, slot)
        }
        None => SocketAuth::FirstMessage(
            Duration::from_secs(state.config.ws_auth_timeout_secs),
            peer.map(|p| (p.0).0),
        ),
    };
    // Messages above the application's limit are still read (up to
    // ws_max_frame_bytes) so that they get an error result instead of a
    // closed socket; above that the socket closes (1009).
    let transport_max = state.config.ws_max_frame_bytes;
    ws.max_message_size(transport_max)
        .max_frame_size(transport_max)
        .read_buffer_size(16 * 1024)
        .write_buffer_size(16 * 1024)
        .on_upgrade(move |socket| async move {
            let (sink, stream) = socket.split();
            let sink = sink.with(|f: Frame| async move {
                Ok::<_, axum::Error>(match f {
                    Frame::Text(t) => Message::Text(t.into()),
                    Frame::Binary(b) => Message::Binary(b.into()),
                    Frame::Ping(p) => Message::Ping(p.into()),
                    Frame::Pong(p) => Message::Pong(p.into()),
                    Frame::Close => Message::Close(None),
                    Frame::CloseWith(code, reason) => Message::Close(Some(CloseFrame {
                        code,
                        reason: reason.into(),
                    })),
                })
            });
            let stream = stream.map(|m| {
                m.map(|m| match m {
                    Message::Text(t) => Frame::Text(t.to_string()),
                    Message::Binary(b) => Frame::Binary(b.to_vec()),
                    Message::Ping(p) => Frame::Ping(p.to_vec()),
                    Message::Pong(p) => Frame::Pong(p.to_vec()),
                    Message::Close(_) => Frame::Close,
                })
            });
            session(state, Box::pin(sink), stream, limits, auth).await;
        })
}
