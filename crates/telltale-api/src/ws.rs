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

use crate::commands::CommandRequest;
use crate::params::Params;
use crate::problem::Problem;
use crate::routes::{event_json, extra_shorthands, start_watch};
use crate::{items::Framed, AppState};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use telltale_store::AckOutcome;
use telltale_watch::{Collection, Item};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A WebSocket frame as the session sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close,
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

/// Runs one socket until the peer closes it, goes silent, or the hub stops.
pub async fn session<S, R, E>(state: AppState, mut sink: S, mut stream: R, limits: WsLimits)
where
    S: Sink<Frame> + Unpin,
    R: Stream<Item = Result<Frame, E>> + Unpin,
{
    let (out_tx, mut out_rx) = mpsc::channel::<String>(limits.queue.max(1));
    let mut s = Session {
        state: state.clone(),
        out: out_tx,
        watches: HashMap::new(),
        limits: limits.clone(),
        tokens: limits.burst,
        refilled: Instant::now(),
    };
    let mut ping = tokio::time::interval_at(Instant::now() + limits.ping_every, limits.ping_every);
    let mut heard = Instant::now();
    loop {
        tokio::select! {
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
                    None | Some(Err(_)) | Some(Ok(Frame::Close)) => break,
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
    out: mpsc::Sender<String>,
    /// Open watches by the id of the message that opened them.
    watches: HashMap<u64, JoinHandle<()>>,
    limits: WsLimits,
    /// Rate limit: a token bucket.
    tokens: f64,
    refilled: Instant,
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
        // The rate limit: refill, then take a token.
        let now = Instant::now();
        let secs = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + secs * self.limits.rate_per_sec).min(self.limits.burst);
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
        if self.tokens < 1.0 {
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
        self.tokens -= 1.0;
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
            "command" => self.command(id, &msg).await,
            "ack_alert" => self.ack(id, &msg).await,
            other => Err(bad(
                "bad_message",
                format!("unknown type {other:?}: one of watch, unwatch, command, ack_alert, ping"),
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
        let st = self.state.clone();
        let handle = match resource {
            "readings" => self.spawn(id, &st.readings, &pairs).await?,
            "latest" => self.spawn(id, &st.latest, &pairs).await?,
            "devices" => self.spawn(id, &st.devices, &pairs).await?,
            "alerts" => self.spawn(id, &st.alerts, &pairs).await?,
            "commands" => self.spawn(id, &st.commands, &pairs).await?,
            other => {
                return Err(Problem {
                    param: Some("resource".into()),
                    ..bad(
                        "bad_parameter",
                        format!("unknown resource {other:?}: one of readings, latest, devices, alerts, commands"),
                    )
                })
            }
        };
        self.watches.insert(id, handle);
        Ok(ok(id, None))
    }

    async fn spawn<T: Framed>(
        &self,
        id: u64,
        coll: &Arc<Collection<T>>,
        pairs: &[(String, String)],
    ) -> Result<JoinHandle<()>, Problem> {
        let p = Params::parse(pairs, coll.kind, extra_shorthands(coll.name))?;
        let rv = p.resource_version.clone();
        let (events, permit) = start_watch(&self.state, coll, p, rv.as_deref()).await?;
        let (coll, out) = (coll.clone(), self.out.clone());
        Ok(tokio::spawn(async move {
            let _held = permit;
            tokio::pin!(events);
            while let Some(e) = events.next().await {
                let event = event_json(&coll, &e).0;
                // Waits while the socket is slow: the engine's watcher falls
                // behind its ring and catches up from the store.
                if out
                    .send(format!(r#"{{"id":{id},"type":"event","event":{event}}}"#))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }))
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
        let (item, _) = crate::commands::create(&self.state, &device, req, key).await?;
        // Its steps follow as events of this message's id, until it ends.
        let command_id = item.row.id;
        let seq = item.row.seq;
        let (coll, out, shutdown) = (
            self.state.commands.clone(),
            self.out.clone(),
            self.state.shutdown.clone(),
        );
        let until =
            Duration::from_millis((item.row.deadline_ms - telltale_store::now_ms()).max(0) as u64)
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
                if item.row.id != command_id {
                    continue;
                }
                let done = telltale_store::commands::CommandState::parse(&item.row.state)
                    .is_some_and(|s| s.is_final());
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

/// `GET /v1/ws`: upgrades to a WebSocket session.
pub async fn upgrade(
    axum::extract::State(state): axum::extract::State<AppState>,
    ws: Result<
        axum::extract::ws::WebSocketUpgrade,
        axum::extract::ws::rejection::WebSocketUpgradeRejection,
    >,
) -> axum::response::Response {
    use axum::extract::ws::Message;
    use axum::response::IntoResponse;
    let limits = WsLimits {
        max_watches: state.config.ws_max_watches,
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
    // Frames above the application's limit are still read (up to 1 MiB) so
    // that they get an error result instead of a closed socket.
    ws.max_message_size(1024 * 1024)
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
            session(state, Box::pin(sink), stream, limits).await;
        })
}
