//! `/v1/ws` over a real socket with tokio-tungstenite as the client, against
//! the real hub: a watch resumed after a reconnect gets exactly what it
//! missed; bad frames get error results and the socket stays usable; a
//! client that stops answering pings is closed.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use telltale_tests::{mosquitto_pub, ws_connect, ws_next, Hub, Socket};
use tokio_tungstenite::tungstenite::Message;

async fn send(ws: &mut Socket, v: Value) {
    ws.send(Message::text(v.to_string())).await.expect("send");
}

/// Values of the next `n` reading events of watch `id`.
async fn values(ws: &mut Socket, id: u64, n: usize) -> (Vec<f64>, String) {
    let (mut out, mut rv) = (Vec::new(), String::new());
    while out.len() < n {
        let m = ws_next(ws).await;
        if m["id"] == id && m["event"]["type"] == "ADDED" {
            out.push(m["event"]["object"]["value"].as_f64().expect("value"));
            rv = m["event"]["resourceVersion"]
                .as_str()
                .expect("rv")
                .to_owned();
        }
    }
    (out, rv)
}

fn publish(hub: &Hub, v: f64) {
    mosquitto_pub(hub.mqtt_port, "w1", &format!(r#"[{{"n":"temp","v":{v}}}]"#));
}

const HUB: &str =
    "[store]\ncommit_interval_ms = 50\n[api]\nws_ping_secs = 1\nws_pong_timeout_secs = 1\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_watch_gets_exactly_what_it_missed_and_bad_frames_leave_the_socket_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::start(&dir.path().join("hub"), HUB);
    let mut ws = ws_connect(&hub).await;
    send(
        &mut ws,
        json!({"id": 1, "type": "watch", "resource": "readings", "device": "w1"}),
    )
    .await;
    assert_eq!(ws_next(&mut ws).await["success"], true);
    publish(&hub, 1.0);
    publish(&hub, 2.0);
    let (got, rv) = values(&mut ws, 1, 2).await;
    assert_eq!(got, [1.0, 2.0]);

    // The connection drops; readings go on; a new socket resumes.
    drop(ws);
    publish(&hub, 3.0);
    publish(&hub, 4.0);
    let mut ws = ws_connect(&hub).await;
    send(
        &mut ws,
        json!({"id": 2, "type": "watch", "resource": "readings", "device": "w1", "resourceVersion": rv}),
    )
    .await;
    assert_eq!(ws_next(&mut ws).await["success"], true);
    publish(&hub, 5.0);
    let (got, _) = values(&mut ws, 2, 3).await;
    assert_eq!(got, [3.0, 4.0, 5.0], "exactly what it missed, then live");

    // A malformed frame, an unknown type, an oversized frame, a binary
    // frame: an error result each, and the socket stays usable.
    ws.send(Message::text("{oops")).await.expect("send");
    assert_eq!(ws_next(&mut ws).await["error"]["code"], "bad_message");
    send(&mut ws, json!({"id": 3, "type": "teleport"})).await;
    let m = ws_next(&mut ws).await;
    assert_eq!(
        (m["id"].as_u64(), m["success"].as_bool()),
        (Some(3), Some(false))
    );
    let big = json!({"id": 4, "type": "ping", "pad": "x".repeat(100_000)});
    send(&mut ws, big).await;
    assert_eq!(ws_next(&mut ws).await["error"]["code"], "message_too_large");
    ws.send(Message::binary(vec![1u8, 2, 3]))
        .await
        .expect("send");
    assert_eq!(ws_next(&mut ws).await["error"]["code"], "bad_message");
    send(&mut ws, json!({"id": 5, "type": "ping"})).await;
    assert_eq!(ws_next(&mut ws).await, json!({"id": 5, "type": "pong"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_answering_pings_is_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::start(&dir.path().join("hub"), HUB);
    let mut ws = ws_connect(&hub).await;
    send(&mut ws, json!({"id": 1, "type": "ping"})).await;
    assert_eq!(ws_next(&mut ws).await["type"], "pong");
    // Not reading means not answering pings (the client library answers
    // them only as it reads). The hub pings every second and gives up after
    // two seconds of silence.
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Reading now answers the pings queued meanwhile, too late: the next
    // frames are the close and the end of the stream, within seconds.
    let closed = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(m) = ws.next().await {
            if matches!(m, Ok(Message::Close(_)) | Err(_)) {
                return true;
            }
        }
        true
    })
    .await;
    assert_eq!(closed, Ok(true), "the hub closed the silent socket");
}
