//! The real hub and the real agent over real MQTT and a real SQLite file:
//! every reading arrives exactly once, also when either side is SIGKILLed in
//! the middle of a stream.

use std::time::Duration;
use telltale_tests::{values, wait_until, Agent, Hub};

/// A counter source: the n-th reading has value n, so loss and duplication
/// show in the stored values.
fn counter(interval_ms: u64, limit: u64) -> String {
    format!(
        r#"
[batch]
max_readings = 50
interval_ms = 100

[[source]]
kind = "simulated"
metric = "count"
interval_ms = {interval_ms}
shape = "counter"
base = 0.0
limit = {limit}
"#
    )
}

fn sorted_values(hub: &Hub, device: &str) -> Vec<u64> {
    let mut v: Vec<u64> = values(&hub.reader(), device, "count")
        .into_iter()
        .map(|(_, v)| v as u64)
        .collect();
    v.sort_unstable();
    v
}

fn assert_exactly(got: &[u64], n: u64, what: &str) {
    let want: Vec<u64> = (1..=n).collect();
    if got != want {
        let mut dups = got.to_vec();
        dups.dedup();
        panic!(
            "{what}: {} values stored, {} distinct, want 1..={n}",
            got.len(),
            dups.len()
        );
    }
}

const HUB: &str = "[store]\ncommit_interval_ms = 100\n";

#[test]
fn every_agent_reading_arrives_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::start(&dir.path().join("hub"), HUB);
    let _agent = Agent::start(
        &dir.path().join("agent"),
        "dev-a",
        hub.mqtt_port,
        &counter(2, 1000),
    );
    let done = wait_until(Duration::from_secs(30), || {
        values(&hub.reader(), "dev-a", "count").len() >= 1000
    });
    assert!(done, "1000 readings did not arrive");
    // Anything sent twice would land now.
    std::thread::sleep(Duration::from_millis(1500));
    assert_exactly(&sorted_values(&hub, "dev-a"), 1000, "stored");
}

#[test]
fn hub_killed_mid_stream_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("hub")).expect("dir");
    let mut hub = Hub::start(&dir.path().join("hub"), HUB);
    let _agent = Agent::start(
        &dir.path().join("agent"),
        "dev-k",
        hub.mqtt_port,
        &counter(1, 3000),
    );
    let some = wait_until(Duration::from_secs(20), || {
        values(&hub.reader(), "dev-k", "count").len() >= 600
    });
    assert!(some, "the stream did not start");
    hub.kill();
    let before = sorted_values(&hub, "dev-k").len();
    assert!(
        before < 3000,
        "the hub was killed mid-stream ({before} stored)"
    );
    std::thread::sleep(Duration::from_secs(1));
    hub.restart();
    let done = wait_until(Duration::from_secs(60), || {
        values(&hub.reader(), "dev-k", "count").len() >= 3000
    });
    assert!(done, "the agent did not catch up");
    std::thread::sleep(Duration::from_millis(1500));
    assert_exactly(
        &sorted_values(&hub, "dev-k"),
        3000,
        "after the hub's restart",
    );
}

#[test]
fn agent_killed_mid_stream_loses_nothing_from_its_outbox() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("hub")).expect("dir");
    let hub = Hub::start(&dir.path().join("hub"), HUB);
    let first = counter(2, 100_000);
    let mut agent = Agent::start(&dir.path().join("agent"), "dev-s", hub.mqtt_port, &first);
    let some = wait_until(Duration::from_secs(20), || {
        values(&hub.reader(), "dev-s", "count").len() >= 500
    });
    assert!(some, "the stream did not start");
    agent.kill();
    let restart_ms = telltale_store::now_ms();
    std::thread::sleep(Duration::from_millis(300));
    // The second run counts from 1 again and stops at 400; its readings are
    // told apart by time.
    agent.restart_with(&first, &counter(2, 400));
    let done = wait_until(Duration::from_secs(30), || {
        values(&hub.reader(), "dev-s", "count")
            .iter()
            .filter(|(ts, _)| *ts >= restart_ms)
            .count()
            >= 400
    });
    assert!(done, "the restarted agent did not deliver");
    std::thread::sleep(Duration::from_millis(1500));
    let all = values(&hub.reader(), "dev-s", "count");
    let mut run1: Vec<u64> = all
        .iter()
        .filter(|(ts, _)| *ts < restart_ms)
        .map(|(_, v)| *v as u64)
        .collect();
    let mut run2: Vec<u64> = all
        .iter()
        .filter(|(ts, _)| *ts >= restart_ms)
        .map(|(_, v)| *v as u64)
        .collect();
    run1.sort_unstable();
    run2.sort_unstable();
    // Run 1 may lose only its unbatched tail (read but not yet in the
    // outbox when killed): what is stored is 1..=m, each once.
    let m = run1.len() as u64;
    assert!(m >= 500);
    assert_exactly(&run1, m, "first run (killed)");
    assert_exactly(&run2, 400, "second run");
}
