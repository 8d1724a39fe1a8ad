//! Fan-out benchmark: N SSE watchers on one hub, readings published over
//! MQTT at a fixed rate; prints publish-to-delivery latency (p50/p99/max),
//! events delivered, and the hub's CPU time and RSS.
//!
//! usage: fanout HTTP_PORT MQTT_PORT HUB_PID WATCHERS RATE SECONDS [MODE] [SERIES]
//! MODE: `readings` (default: SSE watch of /v1/readings), `watch-latest`
//! (SSE watch of /v1/latest with throttleSeconds=1: a dashboard repainting
//! once a second), `watch-latest-live` (the same without throttling: every
//! change) or `poll-latest` (GET /v1/latest once a second on a
//! kept-alive connection). For the last three, "delivered" counts the item
//! updates a client saw (a newer value for a metric than it had).
//! SERIES (default 1): readings go round-robin to metrics `lat0`..`latN-1`
//! of device `fan`, as on a dashboard that shows many series.
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
    let mode = args.get(6).cloned().unwrap_or_else(|| "readings".into());
    let series = arg(7, 1).max(1);

    let delivered = Arc::new(AtomicU64::new(0));
    let samples: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(Vec::new()));
    let connected = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + Duration::from_secs(secs + 30);
    for w in 0..watchers {
        let (delivered, samples, connected) =
            (delivered.clone(), samples.clone(), connected.clone());
        let mode = mode.clone();
        tokio::spawn(async move {
            let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", http)).await else {
                return;
            };
            // Latency is sampled on one client in ten to keep memory small.
            let sample = w % 10 == 0;
            let record = |data: &str, last: &mut std::collections::HashMap<String, f64>| {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(data) else {
                    return;
                };
                let items: Vec<serde_json::Value> = match v["items"].as_array() {
                    Some(a) => a.clone(),
                    None => vec![v["object"].clone()],
                };
                for it in items {
                    let Some(sent) = it["value"].as_f64() else {
                        continue;
                    };
                    let metric = it["metric"].as_str().unwrap_or_default();
                    let seen = last.entry(metric.to_owned()).or_insert(0.0);
                    // A log sends each reading once; state collections count
                    // only a value newer than the client had.
                    if mode == "readings" || sent > *seen {
                        *seen = sent;
                        delivered.fetch_add(1, Relaxed);
                        if sample {
                            samples.lock().map(|mut s| s.push(now_ms() - sent)).ok();
                        }
                    }
                }
            };
            if mode == "poll-latest" {
                connected.fetch_add(1, Relaxed);
                let mut last = std::collections::HashMap::new();
                let (r, mut wr) = s.into_split();
                let mut rd = BufReader::new(r);
                // Spread the polls over the second, like independent dashboards.
                tokio::time::sleep(Duration::from_millis(w * 997 % 1000)).await;
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                while Instant::now() < stop {
                    tick.tick().await;
                    let req = "GET /v1/latest?device=fan HTTP/1.1\r\nHost: b\r\n\r\n";
                    if wr.write_all(req.as_bytes()).await.is_err() {
                        break;
                    }
                    // Head, then a body of Content-Length bytes.
                    let mut len = 0usize;
                    loop {
                        let mut line = String::new();
                        match rd.read_line(&mut line).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        let l = line.trim_end();
                        if l.is_empty() {
                            break;
                        }
                        if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0u8; len];
                    if tokio::io::AsyncReadExt::read_exact(&mut rd, &mut body)
                        .await
                        .is_err()
                    {
                        return;
                    }
                    record(&String::from_utf8_lossy(&body), &mut last);
                }
                return;
            }
            let path = match mode.as_str() {
                "watch-latest" => "/v1/latest?watch=true&device=fan&throttleSeconds=1",
                "watch-latest-live" => "/v1/latest?watch=true&device=fan",
                _ => "/v1/readings?watch=true&device=fan",
            };
            let req =
                format!("GET {path} HTTP/1.1\r\nHost: b\r\nAccept: text/event-stream\r\n\r\n");
            if s.write_all(req.as_bytes()).await.is_err() {
                return;
            }
            connected.fetch_add(1, Relaxed);
            if mode == "readings" && !sample {
                // Count events in the raw bytes: splitting a million lines a
                // second into strings would make this client the bottleneck.
                let finder = memchr::memmem::Finder::new(b"\"type\":\"ADDED\"");
                let keep = b"\"type\":\"ADDED\"".len() - 1;
                let mut buf = vec![0u8; 64 * 1024];
                let mut carry = 0;
                while Instant::now() < stop {
                    let read = tokio::time::timeout(
                        Duration::from_secs(5),
                        tokio::io::AsyncReadExt::read(&mut s, &mut buf[carry..]),
                    )
                    .await;
                    let Ok(Ok(n)) = read else { break };
                    if n == 0 {
                        break;
                    }
                    let end = carry + n;
                    let hits = finder.find_iter(&buf[..end]).count();
                    delivered.fetch_add(hits as u64, Relaxed);
                    // Keep a tail shorter than the pattern: a match split
                    // across reads is counted once, in the next read.
                    carry = keep.min(end);
                    buf.copy_within(end - carry..end, 0);
                }
                return;
            }
            let mut lines = BufReader::new(s).lines();
            let mut last = std::collections::HashMap::new();
            while Instant::now() < stop {
                let Ok(Ok(Some(line))) =
                    tokio::time::timeout(Duration::from_secs(5), lines.next_line()).await
                else {
                    break;
                };
                let Some(data) = line.strip_prefix("data: ") else {
                    continue;
                };
                if data.contains("\"type\":\"BOOKMARK\"") {
                    continue;
                }
                record(data, &mut last);
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
    let every = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    for i in 0..total {
        let due = start + every.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        // The value carries the publish time (ms) so a watcher can measure latency.
        let payload = format!(r#"[{{"n":"lat{}","v":{:.3}}}]"#, i % series, now_ms());
        let _ = client
            .publish(
                "telltale/v1/devices/fan/telemetry",
                rumqttc::QoS::AtLeastOnce,
                false,
                payload,
            )
            .await;
    }
    let want = if mode == "readings" {
        total * watchers
    } else {
        u64::MAX
    };
    let deadline = Instant::now()
        + if mode == "readings" {
            Duration::from_secs(20)
        } else {
            Duration::from_secs(2)
        };
    while delivered.load(Relaxed) < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let (cpu1, rss) = proc_stats(pid);
    let ticks = 100.0; // USER_HZ
    let mut s = samples.lock().map(|s| s.clone()).unwrap_or_default();
    s.sort_by(|a, b| a.total_cmp(b));
    println!(
        "fanout: mode={mode} clients={watchers} rate={rate}/s seconds={secs} series={series} delivered={} latency_ms p50={:.1} p99={:.1} max={:.1} hub_cpu={:.2}s ({:.0}% of one core) hub_rss={:.1} MiB",
        delivered.load(Relaxed),
        percentile(&s, 0.5),
        percentile(&s, 0.99),
        s.last().copied().unwrap_or(f64::NAN),
        (cpu1 - cpu0) as f64 / ticks,
        100.0 * (cpu1 - cpu0) as f64 / ticks / elapsed,
        rss as f64 / 1024.0
    );
    let n = delivered.load(Relaxed).max(1);
    println!(
        "hub CPU per delivered update: {:.1} us",
        (cpu1 - cpu0) as f64 / ticks / n as f64 * 1e6
    );
}
