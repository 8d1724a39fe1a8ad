//! The ceiling for the ingest benchmark: the embedded broker alone, its link
//! drained and the messages counted, nothing decoded or stored.
//!
//! usage: drain LISTEN_ADDR EXPECTED_MESSAGES
//! Prints `broker-only: N msgs in S s = R msgs/s` once N messages arrived.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:1883".into());
    let expected: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let config = telltale_broker::BrokerConfig {
        listen: listen.parse().expect("listen address"),
        ..Default::default()
    };
    let broker = telltale_broker::start(
        &config,
        &["telltale/v1/devices/+/telemetry".into()],
        std::sync::Arc::new(|_: &str, _: &str, _: &str| false),
    )
    .expect("broker starts");
    println!("listening {:?}", broker.local_addr);
    let mut messages = broker.messages;
    let mut n = 0u64;
    let mut t0 = None;
    // Drained the way the hub's ingest thread drains it, minus the work.
    messages.drain(
        || false,
        |_| {
            t0.get_or_insert_with(Instant::now);
            n += 1;
            if n >= expected {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    );
    let dt = t0.map_or(0.0, |t| t.elapsed().as_secs_f64());
    println!(
        "broker-only: {n} msgs in {dt:.2} s = {:.0} msgs/s",
        n as f64 / dt
    );
    // Stay up a moment so the publisher gets its last acknowledgements.
    std::thread::sleep(Duration::from_secs(1));
}
