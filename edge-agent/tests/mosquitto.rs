//! End-to-end tests of the agent binary against a real MQTT broker
//! (mosquitto, started on a free loopback port) and a fake hub written here
//! that decodes every batch and acknowledges it. Skipped, with a note, when
//! `mosquitto` is not installed.

mod common;

use common::{agent, signal, start_broker, wait_exit, PREFIX};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use telltale_wire::decode::{decode, Limits};
use telltale_wire::msg::{Ack, Presence, Status};

/// What the fake hub saw.
#[derive(Debug, Default)]
struct Seen {
    /// (device, outbox, seq) → readings, each stored once.
    batches: BTreeMap<(String, u64, u64), usize>,
    /// Deliveries, duplicates included.
    deliveries: usize,
    /// Status payloads per device, in arrival order.
    status: BTreeMap<String, Vec<Status>>,
}

/// A fake hub: decodes telemetry, stores each batch once, acks it when
/// `acking` is set.
async fn fake_hub(
    port: u16,
    acking: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let mut o = MqttOptions::new("fake-hub", "127.0.0.1", port);
    o.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(o, 10_000);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut ready = Some(ready);
        let mut subacks = 0;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Incoming::Publish(p))) => {
                    let _ = tx.send((p.topic, p.payload.to_vec()));
                }
                Ok(Event::Incoming(Incoming::SubAck(_))) => {
                    subacks += 1;
                    if subacks == 2 {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    client
        .subscribe(format!("{PREFIX}/devices/+/telemetry"), QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    client
        .subscribe(format!("{PREFIX}/devices/+/status"), QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    while let Some((topic, payload)) = rx.recv().await {
        let Ok((device, kind)) = telltale_wire::topic::parse(PREFIX, &topic) else {
            continue;
        };
        match kind {
            telltale_wire::topic::Kind::Status => {
                let s = Status::parse(&payload).expect("status payload");
                seen.lock()
                    .expect("lock")
                    .status
                    .entry(device.to_owned())
                    .or_default()
                    .push(s);
            }
            telltale_wire::topic::Kind::Telemetry => {
                let pack = decode(&payload, &Limits::default(), 0.0).expect("valid SenML CBOR");
                let id = pack.batch.expect("batch identity");
                {
                    let mut s = seen.lock().expect("lock");
                    s.deliveries += 1;
                    s.batches
                        .insert((device.to_owned(), id.outbox, id.seq), pack.readings.len());
                }
                if acking.load(Ordering::SeqCst) {
                    let ack = Ack {
                        outbox: id.outbox,
                        upto: id.seq,
                    };
                    client
                        .publish(
                            format!("{PREFIX}/devices/{device}/ack"),
                            QoS::AtLeastOnce,
                            false,
                            serde_json::to_vec(&ack).expect("ack json"),
                        )
                        .await
                        .expect("publish ack");
                }
            }
            _ => {}
        }
    }
}

async fn wait_for_status(seen: &Mutex<Seen>, device: &str, want: Presence) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let last = seen
            .lock()
            .expect("lock")
            .status
            .get(device)
            .and_then(|v| v.last().map(|s| s.state));
        if last == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "status of {device} is {last:?}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn seqs(seen: &Mutex<Seen>, device: &str) -> BTreeSet<u64> {
    seen.lock()
        .expect("lock")
        .batches
        .keys()
        .filter(|(d, _, _)| d == device)
        .map(|(_, _, s)| *s)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_restart_and_clean_shutdown_lose_no_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((_broker, port)) = start_broker(dir.path()) else {
        eprintln!("skipped: mosquitto is not installed");
        return;
    };
    let acking = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (ready, subscribed) = tokio::sync::oneshot::channel();
    tokio::spawn(fake_hub(port, acking.clone(), seen.clone(), ready));
    tokio::time::timeout(Duration::from_secs(5), subscribed)
        .await
        .expect("fake hub subscribed in time")
        .expect("fake hub running");

    let data = dir.path().join("data");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"
device_id = "e2e-1"
data_dir = "{}"
labels = {{ site = "test" }}
[mqtt]
port = {port}
reconnect_min_ms = 50
reconnect_max_ms = 500
[batch]
interval_ms = 150
[outbox]
ack_timeout_ms = 500
max_in_flight = 4
[[source]]
kind = "simulated"
metric = "room/temp"
unit = "Cel"
interval_ms = 20
"#,
            data.display()
        ),
    )
    .expect("write config");

    // 1. No acks, then SIGKILL: batches are sent (and resent) but stay in the outbox.
    let a = agent(&config);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    signal(&a, "KILL");
    wait_exit(a, Duration::from_secs(5));
    let before = seqs(&seen, "e2e-1");
    assert!(!before.is_empty(), "nothing arrived");
    {
        let s = seen.lock().expect("lock");
        assert!(s.deliveries > before.len(), "no resend without acks");
        let statuses = s.status.get("e2e-1").expect("birth");
        let birth = &statuses[0];
        assert_eq!(birth.state, Presence::Online);
        assert_eq!(birth.labels.get("site").map(String::as_str), Some("test"));
        assert!(birth
            .agent
            .as_deref()
            .is_some_and(|a| a.starts_with("telltale-agent/")));
    }
    // SIGKILL closed the socket: the broker publishes the Last Will.
    wait_for_status(&seen, "e2e-1", Presence::Offline).await;

    // 2. Acks on, restart: everything pending goes through; SIGTERM exits 0.
    acking.store(true, Ordering::SeqCst);
    let a = agent(&config);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    signal(&a, "TERM");
    let status = wait_exit(a, Duration::from_secs(5));
    assert!(status.success(), "exit status {status}");
    // The clean shutdown said offline itself (a clean DISCONNECT fires no Will).
    wait_for_status(&seen, "e2e-1", Presence::Offline).await;
    let states: Vec<Presence> = seen.lock().expect("lock").status["e2e-1"]
        .iter()
        .map(|s| s.state)
        .collect();
    assert_eq!(
        states,
        [
            Presence::Online,
            Presence::Offline,
            Presence::Online,
            Presence::Offline
        ]
    );

    // 3. The partial batch sealed at shutdown is delivered by the next run.
    let a = agent(&config);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    signal(&a, "TERM");
    assert!(wait_exit(a, Duration::from_secs(5)).success());

    // Every sequence number from 1 to the last one reached the hub: no batch
    // was lost across the crash, the restarts and the shutdowns.
    let all = seqs(&seen, "e2e-1");
    let last = *all.iter().max().expect("some");
    assert_eq!(all, (1..=last).collect::<BTreeSet<_>>());
    let outboxes: BTreeSet<u64> = seen
        .lock()
        .expect("lock")
        .batches
        .keys()
        .map(|(_, o, _)| *o)
        .collect();
    assert_eq!(outboxes.len(), 1, "one outbox across restarts");

    // What is left in the outbox is the batch sealed at the last shutdown,
    // plus at most a window of batches whose acks were still on the way.
    let o = telltale_store::outbox::Outbox::open(&data.join("outbox.db"), 1 << 26).expect("open");
    let left: Vec<u64> = o
        .pending(0, 100)
        .expect("pending")
        .iter()
        .map(|p| p.seq)
        .collect();
    assert!(left.len() <= 5, "left: {left:?}");
    assert!(
        left.iter().all(|s| *s + 4 > last),
        "left: {left:?}, last sent {last}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_reports_a_rate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((_broker, port)) = start_broker(dir.path()) else {
        eprintln!("skipped: mosquitto is not installed");
        return;
    };
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (ready, subscribed) = tokio::sync::oneshot::channel();
    let acking = Arc::new(AtomicBool::new(true));
    tokio::spawn(fake_hub(port, acking, seen.clone(), ready));
    tokio::time::timeout(Duration::from_secs(5), subscribed)
        .await
        .expect("fake hub subscribed in time")
        .expect("fake hub running");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_telltale-agent"))
            .args(["bench", "--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--devices", "3", "--batches", "20", "--readings", "50"])
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--timeout-secs")
            .arg("60")
            .env("RUST_LOG", "warn")
            .output()
            .expect("run bench")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("agent-bench: devices=3 readings=3000 seconds="),
        "{stdout}"
    );
    assert!(stdout.contains(" rate="), "{stdout}");
    let s = seen.lock().expect("lock");
    assert_eq!(s.batches.len(), 60);
    assert_eq!(s.batches.values().sum::<usize>(), 3000);
}
