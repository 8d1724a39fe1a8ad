//! The WebSocket session driven through channels (its logic is generic over
//! Sink and Stream): a real store, no socket. The same over a real socket
//! with tokio-tungstenite is in the end-to-end tests.

use futures_channel::mpsc;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use telltale_api::auth::Caller;
use telltale_api::rules::RulesFile;
use telltale_api::ws::{session, Frame, SocketAuth, WsLimits};
use telltale_api::{ApiConfig, AppState};
use telltale_store::writer::{IncomingBatch, WriteOp, WriterHandle};
use telltale_store::{Routing, StoreConfig};
use telltale_wire::decode::{Reading, Value as WireValue};
use tokio_util::sync::CancellationToken;

struct Fixture {
    writer: WriterHandle,
    state: AppState,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("hub.db");
    let (acks, _) = tokio::sync::mpsc::unbounded_channel();
    let config = StoreConfig {
        commit_interval_ms: 20,
        ..StoreConfig::default()
    };
    let (writer, _thread) = telltale_store::writer::start(&db, config, acks).expect("store");
    let rules = Arc::new(RulesFile::new(
        dir.path().join("rules.toml"),
        writer.clone(),
        Routing(Arc::new(|_: &[String], _: &str| Vec::new())),
    ));
    rules.reload().await.expect("rules");
    let state = AppState::new(
        db,
        writer.epoch.clone(),
        ApiConfig::default(),
        CancellationToken::new(),
        writer.clone(),
        rules,
    )
    .expect("state");
    tokio::spawn(telltale_api::feed(
        state.clone(),
        writer.subscribe(),
        writer.readings_switch(),
    ));
    Fixture {
        writer,
        state,
        _dir: dir,
    }
}

async fn reading(w: &WriterHandle, v: f64) {
    w.send(WriteOp::Batch(IncomingBatch {
        device: "d1".into(),
        batch: None,
        readings: vec![Reading {
            name: "temp".into(),
            unit: None,
            value: WireValue::Num(v),
            time: telltale_store::now_ms() as f64 / 1000.0,
        }],
    }))
    .await
    .expect("send");
    w.sync().await.expect("sync");
}

/// A session over channels: what the client sends, and what it receives.
struct Client {
    tx: mpsc::UnboundedSender<Result<Frame, Infallible>>,
    rx: mpsc::UnboundedReceiver<Frame>,
}

impl Client {
    fn start(state: &AppState, limits: WsLimits) -> Client {
        Client::start_with(state, limits, SocketAuth::Known(Caller::open(), None))
    }

    fn start_with(state: &AppState, limits: WsLimits, auth: SocketAuth) -> Client {
        let (tx, server_rx) = mpsc::unbounded();
        let (server_tx, rx) = mpsc::unbounded();
        tokio::spawn(session(state.clone(), server_tx, server_rx, limits, auth));
        Client { tx, rx }
    }

    /// Text messages until the session closes, and the close frame.
    async fn until_closed(&mut self) -> (Vec<Value>, Option<Frame>) {
        let mut texts = Vec::new();
        loop {
            let f = tokio::time::timeout(Duration::from_secs(10), self.rx.next())
                .await
                .expect("the session ends in time");
            match f {
                None => return (texts, None),
                Some(Frame::Text(t)) => texts.push(serde_json::from_str(&t).expect("json")),
                Some(f @ (Frame::Close | Frame::CloseWith(..))) => return (texts, Some(f)),
                Some(_) => {}
            }
        }
    }

    async fn send(&mut self, v: Value) {
        self.send_text(v.to_string()).await;
    }

    async fn send_text(&mut self, t: String) {
        self.tx.send(Ok(Frame::Text(t))).await.expect("session up");
    }

    /// The next text message (pings skipped).
    async fn next(&mut self) -> Value {
        loop {
            let f = tokio::time::timeout(Duration::from_secs(10), self.rx.next())
                .await
                .expect("a message in time")
                .expect("session up");
            if let Frame::Text(t) = f {
                return serde_json::from_str(&t).expect("json");
            }
        }
    }

    /// Events of watch `id` until `n` items arrived (bookmarks skipped).
    async fn items(&mut self, id: u64, n: usize) -> Vec<Value> {
        let mut out = Vec::new();
        while out.len() < n {
            let m = self.next().await;
            if m["id"] == id && m["type"] == "event" && m["event"]["type"] != "BOOKMARK" {
                out.push(m["event"].clone());
            }
        }
        out
    }
}

#[tokio::test]
async fn watches_resume_and_bad_messages_leave_the_socket_open() {
    let f = fixture().await;
    let mut c = Client::start(&f.state, WsLimits::default());

    c.send(json!({"id": 1, "type": "ping"})).await;
    assert_eq!(c.next().await, json!({"id": 1, "type": "pong"}));

    // Bad messages: an error result each, and the socket goes on.
    c.send_text("{not json".into()).await;
    let m = c.next().await;
    assert_eq!(
        (m["type"].as_str(), m["success"].as_bool()),
        (Some("result"), Some(false))
    );
    assert_eq!(m["error"]["code"], "bad_message");
    c.send(json!({"id": 2, "type": "dance"})).await;
    let m = c.next().await;
    assert_eq!(
        (m["id"].as_u64(), m["error"]["code"].as_str()),
        (Some(2), Some("bad_message"))
    );
    c.send_text(format!(
        r#"{{"id":3,"type":"ping","pad":"{}"}}"#,
        "x".repeat(70_000)
    ))
    .await;
    assert_eq!(c.next().await["error"]["code"], "message_too_large");
    c.send(json!({"id": 4, "type": "watch", "resource": "readings", "filter": "value >"}))
        .await;
    let m = c.next().await;
    assert_eq!(
        (m["id"].as_u64(), m["error"]["code"].as_str()),
        (Some(4), Some("bad_filter"))
    );
    c.send(json!({"id": 5, "type": "watch", "resource": "nope"}))
        .await;
    assert_eq!(c.next().await["error"]["param"], "resource");
    c.send(json!({"id": 6, "type": "ping"})).await;
    assert_eq!(c.next().await["type"], "pong", "still usable");

    // A watch: its result, then its events.
    c.send(json!({"id": 10, "type": "watch", "resource": "readings", "device": "d1"}))
        .await;
    assert_eq!(
        c.next().await,
        json!({"id": 10, "type": "result", "success": true})
    );
    reading(&f.writer, 1.0).await;
    reading(&f.writer, 2.0).await;
    let got = c.items(10, 2).await;
    assert_eq!(got[0]["object"]["value"], 1.0);
    let rv = got[0]["resourceVersion"].as_str().expect("rv").to_owned();

    // Unwatch, miss two readings, then resume from the first event's
    // version: exactly what came after it, nothing twice.
    c.send(json!({"id": 11, "type": "unwatch", "watch": 10}))
        .await;
    assert_eq!(c.next().await["success"], true);
    reading(&f.writer, 3.0).await;
    reading(&f.writer, 4.0).await;
    c.send(json!({"id": 12, "type": "watch", "resource": "readings", "resourceVersion": rv}))
        .await;
    assert_eq!(c.next().await["success"], true);
    let got = c.items(12, 3).await;
    let values: Vec<f64> = got
        .iter()
        .map(|e| e["object"]["value"].as_f64().expect("v"))
        .collect();
    assert_eq!(values, [2.0, 3.0, 4.0]);

    // Acknowledging an alert that does not exist: an error, named.
    c.send(json!({"id": 13, "type": "ack_alert", "alert": 99}))
        .await;
    assert_eq!(c.next().await["error"]["code"], "not_found");
    // A command to a device the hub has not heard from: 404.
    c.send(json!({"id": 14, "type": "command", "device": "ghost", "name": "ping"}))
        .await;
    assert_eq!(c.next().await["error"]["code"], "not_found");
    // One to d1: its result carries the command, queued.
    c.send(
        json!({"id": 15, "type": "command", "device": "d1", "name": "ping", "timeoutSeconds": 5}),
    )
    .await;
    let m = c.next().await;
    assert_eq!(m["success"], true, "{m}");
    assert_eq!(m["command"]["state"], "queued");
}

#[tokio::test]
async fn the_watch_cap_and_the_rate_limit_answer_errors() {
    let f = fixture().await;
    let limits = WsLimits {
        max_watches: 2,
        rate_per_sec: 1.0,
        burst: 4.0,
        ..WsLimits::default()
    };
    let mut c = Client::start(&f.state, limits);
    for id in 1..=2 {
        c.send(json!({"id": id, "type": "watch", "resource": "devices"}))
            .await;
        assert_eq!(c.next().await["success"], true);
    }
    c.send(json!({"id": 3, "type": "watch", "resource": "devices"}))
        .await;
    assert_eq!(c.next().await["error"]["code"], "too_many_watches");
    c.send(json!({"id": 4, "type": "ping"})).await;
    assert_eq!(c.next().await["type"], "pong");
    c.send(json!({"id": 5, "type": "ping"})).await;
    assert_eq!(c.next().await["error"]["code"], "rate_limited");
}

#[tokio::test]
async fn a_peer_that_stops_answering_is_closed() {
    let f = fixture().await;
    let limits = WsLimits {
        ping_every: Duration::from_millis(100),
        pong_timeout: Duration::from_millis(100),
        ..WsLimits::default()
    };
    let mut c = Client::start(&f.state, limits);
    // The client never answers: pings, then a close, then the end.
    let mut pings = 0;
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(f) = c.rx.next().await {
            match f {
                Frame::Ping(_) => pings += 1,
                Frame::Close => return true,
                _ => {}
            }
        }
        false
    })
    .await
    .expect("closed in time");
    assert!(closed && pings >= 1, "pings {pings}");
}

#[tokio::test]
async fn the_first_message_authenticates_and_a_revocation_closes_the_socket() {
    use telltale_store::auth::{AuthDb, Scope};
    let f = fixture().await;
    let path = f._dir.path().join("auth.db");
    let mut db = AuthDb::open(&path).expect("auth.db");
    let control = db.create_token("op", Scope::Control).expect("token");
    // Another token keeps the hub closed once "op" is revoked (a loopback
    // hub without tokens is open).
    db.create_token("other", Scope::Read).expect("token");
    let (tx, rx) = tokio::sync::watch::channel(Arc::new(db.snapshot().expect("snapshot")));
    let state = f.state.clone().with_auth(rx, path);
    let first = || SocketAuth::FirstMessage(Duration::from_secs(1), None);

    // A good token: auth_ok with its scope, then the socket works.
    let mut c = Client::start_with(&state, WsLimits::default(), first());
    c.send(json!({"id": 7, "type": "auth", "token": control.token}))
        .await;
    assert_eq!(
        c.next().await,
        json!({"id": 7, "type": "auth_ok", "scope": "control"})
    );
    c.send(json!({"id": 1, "type": "ping"})).await;
    assert_eq!(c.next().await["type"], "pong");
    c.send(json!({"id": 2, "type": "auth", "token": control.token}))
        .await;
    assert_eq!(c.next().await["error"]["code"], "bad_message");
    // Revoked: an error, then a close with 1008.
    db.revoke_token("op").expect("revoke");
    tx.send_replace(Arc::new(db.snapshot().expect("snapshot")));
    let (texts, close) = c.until_closed().await;
    assert_eq!(
        texts.last().expect("an error")["error"]["code"],
        "token_revoked"
    );
    assert!(
        matches!(close, Some(Frame::CloseWith(1008, _))),
        "{close:?}"
    );

    // A revoked or unknown token, another message first, or silence: an
    // error result and 1008.
    for first_message in [
        Some(json!({"type": "auth", "token": control.token})),
        Some(json!({"type": "auth"})),
        Some(json!({"id": 1, "type": "ping"})),
        None,
    ] {
        let mut c = Client::start_with(&state, WsLimits::default(), first());
        if let Some(m) = &first_message {
            c.send(m.clone()).await;
        }
        let (texts, close) = c.until_closed().await;
        assert_eq!(texts.len(), 1, "{first_message:?}: {texts:?}");
        assert_eq!(
            texts[0]["error"]["code"], "unauthorized",
            "{first_message:?}"
        );
        assert!(
            matches!(close, Some(Frame::CloseWith(1008, _))),
            "{close:?}"
        );
    }
}
