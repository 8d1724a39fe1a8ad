//! SIGTERM while readings flow: the hub exits with status 0 within its
//! configured stop deadline (`[hub] stop_timeout_secs`, itself below the
//! stop timeout of its systemd unit, read from
//! `systemd/telltale-hub.service`), and after a restart on the same data
//! every reading it acknowledged is in `/v1/readings`, each once.

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};
use telltale_tests::{wait_until, Hub};

/// Readings per pack.
const PER_BATCH: u64 = 10;
/// Most packs the publisher sends.
const MAX_BATCHES: u64 = 20_000;
/// The publisher's outbox id.
const OUTBOX: u64 = 4242;
const DEVICE: &str = "sig-1";
/// The hub's stop deadline in this test (`[hub] stop_timeout_secs`),
/// shorter than the default so that a stage that waits out the deadline
/// instead of stopping shows as a failure sooner.
const STOP_TIMEOUT_SECS: u64 = 10;

/// `TimeoutStopSec=` of the hub's unit, in seconds (`30`, `30s`, `1min`,
/// `1min 30s`).
fn unit_stop_timeout() -> Duration {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../systemd/telltale-hub.service"
    );
    let unit = std::fs::read_to_string(path).expect("the hub's unit file");
    let value = unit
        .lines()
        .filter_map(|l| l.trim().strip_prefix("TimeoutStopSec="))
        .next_back()
        .expect("TimeoutStopSec= in the hub's unit");
    let mut secs = 0;
    for part in value.split_whitespace() {
        let digits = part.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        let n: u64 = digits
            .parse()
            .unwrap_or_else(|_| panic!("TimeoutStopSec={value}: not understood"));
        secs += match &part[digits.len()..] {
            "" | "s" | "sec" => n,
            "m" | "min" => n * 60,
            unit => panic!("TimeoutStopSec={value}: unit {unit} not understood"),
        };
    }
    assert!(secs > 0, "TimeoutStopSec={value}");
    Duration::from_secs(secs)
}

/// The pack of batch `seq`: readings `seq * 10 + i`, batch identity in its
/// first record.
fn pack(seq: u64) -> String {
    let records: Vec<String> = (0..PER_BATCH)
        .map(|i| {
            let v = seq * PER_BATCH + i;
            if i == 0 {
                format!(r#"{{"tt_ob":{OUTBOX},"tt_bs":{seq},"tt_lo":1,"n":"count","v":{v}}}"#)
            } else {
                format!(r#"{{"n":"count","v":{v}}}"#)
            }
        })
        .collect();
    format!("[{}]", records.join(","))
}

/// What the publisher's connection saw.
#[derive(Default)]
struct Seen {
    /// Highest `upto` of an ack for our outbox.
    upto: AtomicU64,
    /// Packs sent so far.
    published: AtomicU64,
    /// Set once SIGTERM was sent: the connection may end after this.
    signalled: AtomicBool,
    /// The connection ended before SIGTERM was sent.
    lost_early: AtomicBool,
    /// Tells the publisher to stop.
    stop: AtomicBool,
}

/// Every stored value of the device's `count`, read over HTTP page by page.
fn stored_values(hub: &Hub) -> Vec<u64> {
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let path = match &next {
            None => format!("/v1/readings?device={DEVICE}&limit=10000"),
            Some(c) => format!("/v1/readings?device={DEVICE}&limit=10000&continue={c}"),
        };
        let (status, page) = hub.get_json(&path);
        assert_eq!(status, 200, "{page}");
        for item in page["items"].as_array().expect("items") {
            let v = item["value"].as_f64().expect("numeric value");
            out.push(v as u64);
        }
        match page["continue"].as_str() {
            Some(c) => next = Some(c.to_owned()),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_ingest_loses_no_acknowledged_reading() {
    let stop_timeout = unit_stop_timeout();
    let deadline = Duration::from_secs(STOP_TIMEOUT_SECS);
    assert!(
        deadline < stop_timeout,
        "the test's deadline must fit under TimeoutStopSec"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::start(
        &dir.path().join("hub"),
        &format!("[hub]\nstop_timeout_secs = {STOP_TIMEOUT_SECS}\n"),
    );

    let mut opts = MqttOptions::new("sigterm-publisher", "127.0.0.1", hub.mqtt_port);
    opts.set_keep_alive(Duration::from_secs(10));
    let (client, mut events) = AsyncClient::new(opts, 100);
    let seen = Arc::new(Seen::default());
    let ack_topic = format!("telltale/v1/devices/{DEVICE}/ack");
    client
        .subscribe(&ack_topic, QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    // The connection: acks in, until it ends (the hub stopping ends it; it
    // is not reconnected, so only acks of the first run count).
    let connection = {
        let seen = seen.clone();
        tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic == ack_topic => {
                        let ack: serde_json::Value =
                            serde_json::from_slice(&p.payload).expect("ack json");
                        if ack["outbox"] == OUTBOX {
                            let upto = ack["upto"].as_u64().expect("upto");
                            seen.upto.fetch_max(upto, SeqCst);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => {
                        if !seen.signalled.load(SeqCst) {
                            seen.lost_early.store(true, SeqCst);
                        }
                        return;
                    }
                }
            }
        })
    };
    // The publisher: about 10,000 readings a second, QoS 1, in order.
    let publisher = {
        let (seen, client) = (seen.clone(), client.clone());
        tokio::spawn(async move {
            let topic = format!("telltale/v1/devices/{DEVICE}/telemetry");
            for seq in 1..=MAX_BATCHES {
                if seen.stop.load(SeqCst) {
                    return;
                }
                if client
                    .publish(&topic, QoS::AtLeastOnce, false, pack(seq))
                    .await
                    .is_err()
                {
                    return;
                }
                seen.published.store(seq, SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };

    // Readings flow and are acknowledged: a few commits have happened.
    let flowing = wait_until(Duration::from_secs(20), || seen.upto.load(SeqCst) >= 300);
    assert!(flowing, "no acks for 300 batches within 20 s");
    assert!(
        seen.published.load(SeqCst) < MAX_BATCHES,
        "the publisher ran out before the signal"
    );

    seen.signalled.store(true, SeqCst);
    let upto_at_signal = seen.upto.load(SeqCst);
    let published_at_signal = seen.published.load(SeqCst);
    let t0 = Instant::now();
    let (mut hub, status) = tokio::task::spawn_blocking(move || {
        let mut hub = hub;
        let status = hub.terminate_status(stop_timeout);
        (hub, status)
    })
    .await
    .expect("terminate");
    let took = t0.elapsed();
    let status = status.unwrap_or_else(|| {
        panic!("the hub did not exit within TimeoutStopSec ({stop_timeout:?}); killed")
    });
    assert!(status.success(), "the hub exited with {status}");
    // Within the configured deadline: a stop that reaches it has aborted a
    // stage that did not finish, which is the failure this looks for.
    assert!(
        took < deadline,
        "the hub took {took:?} to stop, not within its stop_timeout_secs ({deadline:?})"
    );
    assert!(!seen.lost_early.load(SeqCst), "the connection ended early");

    seen.stop.store(true, SeqCst);
    let _ = tokio::time::timeout(Duration::from_secs(10), connection).await;
    publisher.abort();
    let _ = publisher.await;
    let acked = seen.upto.load(SeqCst);
    eprintln!(
        "stopped in {took:?}; batches published {published_at_signal} at the signal, {} in all; acked up to {upto_at_signal} at the signal, {acked} in all",
        seen.published.load(SeqCst)
    );

    // Same data dir, same ports: every acknowledged reading is served, once.
    tokio::task::spawn_blocking(move || {
        hub.restart();
        let values = stored_values(&hub);
        let mut counts: HashMap<u64, u32> = HashMap::new();
        for v in &values {
            *counts.entry(*v).or_default() += 1;
        }
        let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "stored more than once: {twice:?}");
        let missing: Vec<u64> = (1..=acked)
            .flat_map(|seq| (0..PER_BATCH).map(move |i| seq * PER_BATCH + i))
            .filter(|v| !counts.contains_key(v))
            .collect();
        assert!(
            missing.is_empty(),
            "{} acknowledged readings missing after the restart, first {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
    })
    .await
    .expect("check");
}
