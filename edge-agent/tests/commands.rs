//! End-to-end tests of commands: the agent binary against a real MQTT
//! broker (mosquitto on a free loopback port), with a client here playing
//! the hub: it publishes commands on the agent's `cmd` topic and reads the
//! results on `cmd/result` and the readings on `telemetry`. Skipped, with a
//! note, when `mosquitto` is not installed.

mod common;

use common::{agent, signal, start_broker, wait_exit, PREFIX};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use telltale_wire::decode::{decode, Limits};
use telltale_wire::msg::{CommandResult, Presence, ResultStatus, Status};
use telltale_wire::topic::{self, Kind};

const DEVICE: &str = "cmd-1";

/// What the hub side saw.
#[derive(Debug, Default)]
struct Seen {
    /// Results per command id, in arrival order.
    results: BTreeMap<String, Vec<CommandResult>>,
    /// Times (s) of `room/temp` readings, by batch seq (resends stored once).
    readings: BTreeMap<u64, Vec<f64>>,
    /// The agent's last status.
    status: Option<Presence>,
}

impl Seen {
    fn reading_times(&self) -> Vec<f64> {
        let mut t: Vec<f64> = self.readings.values().flatten().copied().collect();
        t.sort_by(f64::total_cmp);
        t
    }
}

/// The hub's side of the test.
struct Hub {
    client: AsyncClient,
    seen: Arc<Mutex<Seen>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .expect("clock")
}

impl Hub {
    /// Connects and subscribes to the agent's results, telemetry and status.
    async fn start(port: u16) -> Hub {
        let mut o = MqttOptions::new("test-hub", "127.0.0.1", port);
        o.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(o, 1000);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        let s = seen.clone();
        tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            let mut subacks = 0;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::Publish(p))) => record(&s, &p.topic, &p.payload),
                    Ok(Event::Incoming(Incoming::SubAck(_))) => {
                        subacks += 1;
                        if subacks == 3 {
                            if let Some(r) = ready_tx.take() {
                                let _ = r.send(());
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        for kind in [Kind::CmdResult, Kind::Telemetry, Kind::Status] {
            client
                .subscribe(topic::format(PREFIX, DEVICE, kind), QoS::AtLeastOnce)
                .await
                .expect("subscribe");
        }
        tokio::time::timeout(Duration::from_secs(5), ready)
            .await
            .expect("subscribed in time")
            .expect("hub running");
        Hub { client, seen }
    }

    /// Publishes a command, as the hub does.
    async fn send(&self, id: &str, name: &str, params: Value, deadline: u64) {
        let cmd = json!({"id": id, "name": name, "params": params, "deadline": deadline});
        self.client
            .publish(
                topic::format(PREFIX, DEVICE, Kind::Cmd),
                QoS::AtLeastOnce,
                false,
                serde_json::to_vec(&cmd).expect("json"),
            )
            .await
            .expect("publish");
    }

    /// Sends a command with a deadline a minute away and waits for its
    /// final result; returns every result for that id so far.
    async fn run(&self, id: &str, name: &str, params: Value) -> Vec<CommandResult> {
        self.send(id, name, params, now_ms() + 60_000).await;
        self.wait_results(id, 2).await
    }

    /// Waits until `n` results for `id` have arrived.
    async fn wait_results(&self, id: &str, n: usize) -> Vec<CommandResult> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self
                .seen
                .lock()
                .expect("lock")
                .results
                .get(id)
                .cloned()
                .unwrap_or_default();
            if got.len() >= n {
                return got;
            }
            assert!(Instant::now() < deadline, "{id}: only {got:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn wait_online(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.seen.lock().expect("lock").status != Some(Presence::Online) {
            assert!(Instant::now() < deadline, "agent not online");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Reading times within `[from, to]` (seconds since the epoch).
    fn readings_between(&self, from: f64, to: f64) -> usize {
        self.seen
            .lock()
            .expect("lock")
            .reading_times()
            .into_iter()
            .filter(|t| (from..=to).contains(t))
            .count()
    }
}

fn record(seen: &Mutex<Seen>, topic_name: &str, payload: &[u8]) {
    let Ok((_, kind)) = topic::parse(PREFIX, topic_name) else {
        return;
    };
    let mut s = seen.lock().expect("lock");
    match kind {
        Kind::CmdResult => {
            let r: CommandResult = serde_json::from_slice(payload).expect("result payload");
            s.results.entry(r.id.clone()).or_default().push(r);
        }
        Kind::Telemetry => {
            let pack = decode(payload, &Limits::default(), 0.0).expect("valid SenML CBOR");
            let seq = pack.batch.expect("batch identity").seq;
            let times = pack
                .readings
                .iter()
                .filter(|r| r.name == "room/temp")
                .map(|r| r.time)
                .collect();
            s.readings.insert(seq, times);
        }
        Kind::Status => s.status = Some(Status::parse(payload).expect("status").state),
        _ => {}
    }
}

fn statuses(results: &[CommandResult]) -> Vec<ResultStatus> {
    results.iter().map(|r| r.status).collect()
}

fn now_secs() -> f64 {
    now_ms() as f64 / 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_over_mqtt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((_broker, port)) = start_broker(dir.path()) else {
        eprintln!("skipped: mosquitto is not installed");
        return;
    };
    let hub = Hub::start(port).await;
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"
device_id = "{DEVICE}"
data_dir = "{}"
[mqtt]
port = {port}
reconnect_min_ms = 50
reconnect_max_ms = 500
[batch]
interval_ms = 50
[outbox]
ack_timeout_ms = 60000
[[source]]
kind = "simulated"
metric = "room/temp"
shape = "counter"
interval_ms = 400

[[command]]
name = "say"
program = "/bin/echo"
args = ["{{word}}"]
[command.params]
word = {{ type = "string", pattern = "[a-z]+" }}

[[command]]
name = "nap"
program = "/bin/sleep"
args = ["{{secs}}"]
timeout_secs = 1
[command.params]
secs = {{ type = "integer", min = 0, max = 60 }}
"#,
            dir.path().join("data").display()
        ),
    )
    .expect("write config");
    let a = agent(&config);
    // The agent subscribes to cmd before its birth: once online, it listens.
    hub.wait_online().await;

    // ping
    let r = hub.run("p1", "ping", json!({})).await;
    assert_eq!(
        statuses(&r),
        [ResultStatus::Delivered, ResultStatus::Succeeded]
    );
    let out = r[1].output.clone().expect("output");
    assert_eq!(out["pong"], json!(true));
    assert!(out["agent"]
        .as_str()
        .is_some_and(|a| a.starts_with("telltale-agent/")));
    assert!(out["time"]
        .as_u64()
        .is_some_and(|t| t.abs_diff(now_ms()) < 60_000));

    // set_interval, faster: 400 ms → 20 ms.
    let before = now_secs();
    let r = hub
        .run(
            "i1",
            "set_interval",
            json!({"source": "room/temp", "interval_ms": 20}),
        )
        .await;
    assert_eq!(
        statuses(&r),
        [ResultStatus::Delivered, ResultStatus::Succeeded],
        "{r:?}"
    );
    assert_eq!(
        r[1].output,
        Some(
            json!({"sources": [{"source": "room/temp", "metric": "room/temp", "interval_ms": 20, "previous_ms": 400}]})
        )
    );
    let changed = now_secs();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let fast = hub.readings_between(changed, changed + 1.0);
    // 50 at 20 ms; 2 or 3 at the old 400 ms.
    assert!(
        fast >= 15,
        "{fast} readings in the second after speeding up"
    );
    let slow_before = hub.readings_between(before - 2.0, before - 0.01);
    assert!(slow_before <= 7, "{slow_before} readings in the 2 s before");

    // set_interval, slower: 20 ms → 5 s: nothing in the next 1.5 s.
    let r = hub.run("i2", "set_interval", json!({"seconds": 5})).await;
    assert_eq!(statuses(&r)[1], ResultStatus::Succeeded, "{r:?}");
    let slowed = now_secs();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(hub.readings_between(slowed, slowed + 1.4), 0);

    // read_now: a reading at once, which also arrives as telemetry.
    let r = hub
        .run("r1", "read_now", json!({"source": "room/temp"}))
        .await;
    assert_eq!(statuses(&r)[1], ResultStatus::Succeeded, "{r:?}");
    let out = r[1].output.clone().expect("output");
    let t = out["readings"][0]["time"].as_f64().expect("a reading");
    assert_eq!(out["readings"][0]["name"], json!("room/temp"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while hub.readings_between(t, t) == 0 {
        assert!(
            Instant::now() < deadline,
            "the read-now reading never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // An operator command that succeeds.
    let r = hub.run("s1", "say", json!({"word": "hello"})).await;
    assert_eq!(
        statuses(&r),
        [ResultStatus::Delivered, ResultStatus::Succeeded]
    );
    assert_eq!(
        r[1].output,
        Some(json!({"exit_code": 0, "stdout": "hello\n", "stderr": "", "truncated": false}))
    );
    // The same id again (a redelivery) is not run again: the first result comes back.
    hub.send("s1", "say", json!({"word": "hello"}), now_ms() + 60_000)
        .await;
    let r = hub.wait_results("s1", 3).await;
    assert_eq!(r[2], r[1]);

    // Bad params: the reason names the param.
    let r = hub.run("s2", "say", json!({"word": "Hello"})).await;
    assert_eq!(
        (r[1].status, r[1].reason.as_deref()),
        (
            ResultStatus::Failed,
            Some("param \"word\": \"Hello\" does not match [a-z]+")
        )
    );

    // An operator command that times out.
    let started = Instant::now();
    let r = hub.run("n1", "nap", json!({"secs": 30})).await;
    assert_eq!(
        (statuses(&r), r[1].reason.as_deref()),
        (
            vec![ResultStatus::Delivered, ResultStatus::Failed],
            Some("timed out after 1 s")
        )
    );
    assert!(started.elapsed() < Duration::from_secs(8));

    // An unknown command.
    let r = hub.run("u1", "reboot", json!({})).await;
    assert_eq!(
        (statuses(&r), r[1].reason.as_deref()),
        (
            vec![ResultStatus::Delivered, ResultStatus::Failed],
            Some("unknown command \"reboot\"; this agent knows: ping, set_interval, read_now, get_config, say, nap")
        )
    );

    // A deadline already passed: not run.
    hub.send("d1", "say", json!({"word": "late"}), now_ms() - 1000)
        .await;
    let r = hub.wait_results("d1", 2).await;
    assert_eq!(
        (statuses(&r), r[1].reason.as_deref()),
        (
            vec![ResultStatus::Delivered, ResultStatus::Failed],
            Some("deadline passed before the command started")
        )
    );

    // get_config shows the interval as changed.
    let r = hub.run("g1", "get_config", json!({})).await;
    let out = r[1].output.clone().expect("config");
    assert_eq!(out["source"][0]["interval_ms"], json!(5000));
    assert_eq!(out["device_id"], json!(DEVICE));

    signal(&a, "TERM");
    assert!(wait_exit(a, Duration::from_secs(5)).success());
}
