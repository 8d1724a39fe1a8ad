//! Command round trip benchmark: a client on the hub's WebSocket sends
//! `ping` commands to a device one after the other and measures, for each,
//! the time from sending it to seeing it `succeeded` (client → hub → MQTT →
//! agent → result → hub → client). Prints p50, p99 and max. Each command
//! goes out GAP_MS (default 100, at least 20: the WebSocket takes 50
//! messages a second) after the previous one ended.
//!
//! usage: cmdbench HTTP_PORT DEVICE COUNT [GAP_MS]
//! (loopback only; bounded in count and time)

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port: u16 = args.first().and_then(|s| s.parse().ok()).unwrap_or(8080);
    let device = args.get(1).cloned().unwrap_or_else(|| "bench-cmd".into());
    let count: u64 = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200)
        .min(100_000);
    let gap: u64 = args
        .get(3)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100)
        .max(20);
    let url = format!("ws://127.0.0.1:{port}/v1/ws");
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket to the hub");
    let mut samples = Vec::with_capacity(count as usize);
    let mut failed = 0u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    for i in 1..=count {
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(gap)).await;
        let t0 = Instant::now();
        let msg = json!({"id": i, "type": "command", "device": device, "name": "ping", "timeoutSeconds": 10});
        ws.send(Message::text(msg.to_string())).await.expect("send");
        // Until this command ends.
        let end = loop {
            let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(15), ws.next()).await
            else {
                panic!("no answer from the hub");
            };
            let Message::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(&t).expect("json");
            if v["id"] != i {
                continue;
            }
            if v["type"] == "result" && v["success"] == false {
                break Err(v["error"]["detail"].to_string());
            }
            let state = v["event"]["object"]["state"].as_str().unwrap_or("");
            match state {
                "succeeded" => break Ok(()),
                "failed" | "expired" | "timeout" => break Err(state.to_owned()),
                _ => {}
            }
        };
        match end {
            Ok(()) => samples.push(t0.elapsed().as_secs_f64() * 1000.0),
            Err(e) => {
                failed += 1;
                eprintln!("command {i}: {e}");
            }
        }
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    println!(
        "cmdbench: device={device} gap_ms={gap} commands={} succeeded={} failed={failed} round_trip_ms p50={:.2} p99={:.2} max={:.2}",
        samples.len() as u64 + failed,
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples.last().copied().unwrap_or(f64::NAN),
    );
}
