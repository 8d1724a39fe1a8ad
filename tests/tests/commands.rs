//! Device commands end to end: the real hub, the real agent, real MQTT, and
//! the hub's WebSocket and HTTP API as the client. A command sent over the
//! WebSocket reaches the agent and its steps arrive in order with the
//! output; set_interval changes the reading rate; a command to a device
//! that went offline expires; a program that outlives its timeout fails; a
//! retried POST with the same idempotency key makes one command.

use futures_util::SinkExt;
use serde_json::{json, Value};
use std::time::Duration;
use telltale_tests::{curl, wait_until, ws_connect, ws_next, Agent, Hub, Socket};
use tokio_tungstenite::tungstenite::Message;

const HUB: &str = "[store]\ncommit_interval_ms = 50\n";

fn agent_config(interval_ms: u64) -> String {
    format!(
        "[batch]\nmax_readings = 20\ninterval_ms = 50\n\n\
         [[source]]\nkind = \"simulated\"\nmetric = \"temp\"\ninterval_ms = {interval_ms}\nshape = \"sine\"\nbase = 20.0\namplitude = 1.0\nperiod_secs = 60\n\n\
         [[command]]\nname = \"nap\"\nprogram = \"/bin/sleep\"\nargs = [\"{{secs}}\"]\ntimeout_secs = 1\n\
         [command.params]\nsecs = {{ type = \"integer\", min = 0, max = 60 }}\n"
    )
}

fn online(hub: &Hub, device: &str) -> bool {
    let (code, v) = hub.get_json(&format!("/v1/devices/{device}"));
    code == 200 && v["online"] == true
}

/// Sends a command over the WebSocket; returns the states it went through
/// (the result's, then each event's) and its last form.
async fn command(ws: &mut Socket, id: u64, body: Value) -> (Vec<String>, Value) {
    let mut msg = body;
    msg["id"] = json!(id);
    msg["type"] = json!("command");
    ws.send(Message::text(msg.to_string())).await.expect("send");
    let mut states = Vec::new();
    loop {
        let m = ws_next(ws).await;
        if m["id"] != id {
            continue;
        }
        let c = if m["type"] == "result" {
            assert_eq!(m["success"], true, "{m}");
            m["command"].clone()
        } else {
            m["event"]["object"].clone()
        };
        let state = c["state"].as_str().unwrap_or_default().to_owned();
        if states.last() != Some(&state) {
            states.push(state.clone());
        }
        if ["succeeded", "failed", "expired", "timeout"].contains(&state.as_str()) {
            return (states, c);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_command_reaches_the_agent_and_its_steps_come_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::start(&dir.path().join("hub"), HUB);
    let _agent = Agent::start(
        &dir.path().join("agent"),
        "c1",
        hub.mqtt_port,
        &agent_config(1000),
    );
    assert!(
        wait_until(Duration::from_secs(15), || online(&hub, "c1")),
        "agent online"
    );
    let mut ws = ws_connect(&hub).await;

    let (states, c) = command(&mut ws, 1, json!({"device": "c1", "name": "ping"})).await;
    assert_eq!(states, ["queued", "sent", "delivered", "succeeded"]);
    assert_eq!(c["output"]["pong"], true);

    // set_interval: from one reading a second to twenty.
    let count = |hub: &Hub| {
        let (_, v) = hub.get_json("/v1/readings?device=c1&limit=10000");
        v["items"].as_array().map_or(0, Vec::len)
    };
    let before = count(&hub);
    std::thread::sleep(Duration::from_secs(2));
    let slow = count(&hub) - before;
    let (states, c) = command(
        &mut ws,
        2,
        json!({"device": "c1", "name": "set_interval", "params": {"interval_ms": 50}}),
    )
    .await;
    assert_eq!(states.last().map(String::as_str), Some("succeeded"), "{c}");
    let before = count(&hub);
    std::thread::sleep(Duration::from_secs(2));
    let fast = count(&hub) - before;
    assert!(
        slow <= 4 && fast >= 20,
        "readings in 2 s: {slow} before, {fast} after"
    );

    // A program that outlives its timeout (1 s) fails, with the reason.
    let (states, c) = command(
        &mut ws,
        3,
        json!({"device": "c1", "name": "nap", "params": {"secs": 5}}),
    )
    .await;
    assert_eq!(states.last().map(String::as_str), Some("failed"), "{c}");
    assert!(
        c["reason"].as_str().unwrap_or("").contains("timed out"),
        "{c}"
    );

    // A name the agent does not know fails with a clear reason.
    let (_, c) = command(&mut ws, 4, json!({"device": "c1", "name": "fly"})).await;
    assert_eq!(c["state"], "failed");
    assert!(
        c["reason"]
            .as_str()
            .unwrap_or("")
            .contains("unknown command"),
        "{c}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_to_a_device_gone_offline_expires_at_its_deadline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::start(&dir.path().join("hub"), HUB);
    let mut agent = Agent::start(
        &dir.path().join("agent"),
        "c2",
        hub.mqtt_port,
        &agent_config(1000),
    );
    assert!(
        wait_until(Duration::from_secs(15), || online(&hub, "c2")),
        "agent online"
    );
    assert!(agent.terminate(Duration::from_secs(10)), "the agent stops");
    assert!(
        wait_until(Duration::from_secs(10), || !online(&hub, "c2")),
        "offline"
    );

    let mut ws = ws_connect(&hub).await;
    let t0 = std::time::Instant::now();
    let (states, c) = command(
        &mut ws,
        1,
        json!({"device": "c2", "name": "ping", "timeoutSeconds": 2}),
    )
    .await;
    assert_eq!(states, ["queued", "expired"], "{c}");
    assert!(
        t0.elapsed() >= Duration::from_millis(1900),
        "expired at its deadline"
    );
    assert!(
        c["reason"].as_str().unwrap_or("").contains("offline"),
        "{c}"
    );
}

#[test]
fn a_retried_post_with_the_same_idempotency_key_makes_one_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::start(&dir.path().join("hub"), HUB);
    let _agent = Agent::start(
        &dir.path().join("agent"),
        "c3",
        hub.mqtt_port,
        &agent_config(1000),
    );
    assert!(
        wait_until(Duration::from_secs(15), || online(&hub, "c3")),
        "agent online"
    );
    let post = || {
        curl(
            &hub.url("/v1/devices/c3/commands"),
            &[
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "-H",
                "Idempotency-Key: retry-7",
                "-d",
                r#"{"name":"ping"}"#,
            ],
        )
    };
    let (first, a) = post();
    let (second, b) = post();
    assert_eq!((first, second), (201, 200), "{a} {b}");
    let id = |t: &str| serde_json::from_str::<Value>(t).expect("json")["id"].clone();
    assert_eq!(id(&a), id(&b));
    let done = wait_until(Duration::from_secs(10), || {
        let (_, v) = hub.get_json("/v1/commands?device=c3");
        v["items"]
            .as_array()
            .is_some_and(|i| i.len() == 1 && i[0]["state"] == "succeeded")
    });
    assert!(done, "one command, run once");
}
