//! Fan-out benchmark: N SSE watchers on one hub, readings published over
//! MQTT at a fixed rate; prints publish-to-delivery latency (p50/p99/max),
//! events delivered, and the hub's CPU time and RSS.
//!
//! usage: fanout HTTP_PORT MQTT_PORT HUB_PID WATCHERS RATE SECONDS
//! (the hub must be running; loopback only; bounded in count and time)

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// (utime + stime in clock ticks, RSS in KiB) of a process.
fn proc_stats(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = fields
        .get(11)
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (ticks, rss)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (http, mqtt, pid) = (arg(0, 8080) as u16, arg(1, 1883) as u16, arg(2, 0) as u32);
    let (watchers, rate, secs) = (arg(3, 1000), arg(4, 1000), arg(5, 10).min(120));

    let delivered = Arc::new(AtomicU64::new(0));
    let samples: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(Vec::new()));
    let connected = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + Duration::from_secs(secs + 30);
    for w in 0..watchers {
        let (delivered, samples, connected) =
            (delivered.clone(), samples.clone(), connected.clone());
        tokio::spawn(async move {
            let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", http)).await else {
                return;
            };
            let req = "GET /v1/readings?watch=true&device=fan HTTP/1.1\r\nHost: b\r\nAccept: text/event-stream\r\n\r\n";
            if s.write_all(req.as_bytes()).await.is_err() {
                return;
            }
            connected.fetch_add(1, Relaxed);
            let mut lines = BufReader::new(s).lines();
            // Latency is sampled on one watcher in ten to keep memory small.
            let sample = w % 10 == 0;
            while Instant::now() < stop {
                let Ok(Ok(Some(line))) =
                    tokio::time::timeout(Duration::from_secs(5), lines.next_line()).await
                else {
                    break;
                };
                let Some(data) = line.strip_prefix("data: ") else {
                    continue;
                };
                if !data.starts_with("{\"type\":\"ADDED\"") {
                    continue;
                }
                delivered.fetch_add(1, Relaxed);
                if sample {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(data) {
                        if let Some(sent) = v["object"]["value"].as_f64() {
                            samples.lock().map(|mut s| s.push(now_ms() - sent)).ok();
                        }
                    }
                }
            }
        });
    }
    let t0 = Instant::now();
    while connected.load(Relaxed) < watchers && t0.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, idle_rss) = proc_stats(pid);
    println!(
        "watchers connected: {} of {watchers}; hub RSS with them idle: {:.1} MiB",
        connected.load(Relaxed),
        idle_rss as f64 / 1024.0
    );

    let mut opts = rumqttc::MqttOptions::new("fanout-pub", "127.0.0.1", mqtt);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = rumqttc::AsyncClient::new(opts, 10_000);
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    let (cpu0, _) = proc_stats(pid);
    let start = Instant::now();
    let total = rate * secs;
    let every = Duration::from_secs_f64(1.0 / rate as f64);
    for i in 0..total {
        let due = start + every.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        // The value carries the publish time (ms) so a watcher can measure latency.
        let payload = format!(r#"[{{"n":"lat","v":{:.3}}}]"#, now_ms());
        let _ = client
            .publish(
                "telltale/v1/devices/fan/telemetry",
                rumqttc::QoS::AtLeastOnce,
                false,
                payload,
            )
            .await;
    }
    let want = total * watchers;
    let deadline = Instant::now() + Duration::from_secs(20);
    while delivered.load(Relaxed) < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let (cpu1, rss) = proc_stats(pid);
    let ticks = 100.0; // USER_HZ
    let mut s = samples.lock().map(|s| s.clone()).unwrap_or_default();
    s.sort_by(|a, b| a.total_cmp(b));
    println!(
        "fanout: watchers={watchers} rate={rate}/s seconds={secs} delivered={} of {want} latency_ms p50={:.1} p99={:.1} max={:.1} hub_cpu={:.2}s ({:.0}% of one core) hub_rss={:.1} MiB",
        delivered.load(Relaxed),
        percentile(&s, 0.5),
        percentile(&s, 0.99),
        s.last().copied().unwrap_or(f64::NAN),
        (cpu1 - cpu0) as f64 / ticks,
        100.0 * (cpu1 - cpu0) as f64 / ticks / elapsed,
        rss as f64 / 1024.0
    );
}
