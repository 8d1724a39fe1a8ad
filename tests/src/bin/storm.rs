//! Rate-limit benchmark: one token floods the hub with GETs from many
//! kept-alive connections while another token makes a steady request rate;
//! prints the calm token's latency alone and under the storm, and what the
//! storm got (answered, refused with 429).
//!
//! usage: storm HTTP_PORT STORM_TOKEN CALM_TOKEN [SECONDS] [STORM_TASKS] [CALM_PER_SEC]
//! (the hub must be running; loopback only; bounded in time)

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Latencies of requests made at `per_sec` for `secs`, in milliseconds.
async fn steady(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    per_sec: u64,
    secs: u64,
) -> Vec<f64> {
    let mut out = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / per_sec.max(1)));
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        tick.tick().await;
        let t0 = Instant::now();
        match client.get(url).bearer_auth(token).send().await {
            Ok(res) if res.status().is_success() => {
                let _ = res.bytes().await;
                out.push(t0.elapsed().as_secs_f64() * 1000.0);
            }
            Ok(res) => eprintln!("calm request answered {}", res.status()),
            Err(e) => eprintln!("calm request failed: {e}"),
        }
    }
    out
}

fn summary(mut v: Vec<f64>) -> String {
    if v.is_empty() {
        return "no requests".into();
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    format!(
        "{} requests, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        v.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!(
            "usage: storm HTTP_PORT STORM_TOKEN CALM_TOKEN [SECONDS] [STORM_TASKS] [CALM_PER_SEC]"
        );
        std::process::exit(2);
    }
    let arg = |i: usize, default: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (port, storm, calm) = (&args[1], args[2].clone(), args[3].clone());
    let (secs, tasks, per_sec) = (arg(4, 10), arg(5, 16), arg(6, 20));
    let url = format!("http://127.0.0.1:{port}/v1/latest");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .expect("http client");

    let alone = steady(&client, &url, &calm, per_sec, secs).await;
    let (answered, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let storms: Vec<_> = (0..tasks)
        .map(|_| {
            let (client, url, token) = (client.clone(), url.clone(), storm.clone());
            let (answered, refused) = (answered.clone(), refused.clone());
            tokio::spawn(async move {
                let end = Instant::now() + Duration::from_secs(secs);
                while Instant::now() < end {
                    match client.get(&url).bearer_auth(&token).send().await {
                        Ok(res) => {
                            let counter = if res.status().as_u16() == 429 {
                                &refused
                            } else {
                                &answered
                            };
                            counter.fetch_add(1, Relaxed);
                            let _ = res.bytes().await;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
            })
        })
        .collect();
    let under = steady(&client, &url, &calm, per_sec, secs).await;
    for s in storms {
        let _ = s.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (a, r) = (answered.load(Relaxed), refused.load(Relaxed));
    println!("calm token alone:         {}", summary(alone));
    println!("calm token under storm:   {}", summary(under));
    println!(
        "storm ({tasks} connections): {:.0} requests/s, {a} answered, {r} refused with 429",
        (a + r) as f64 / elapsed
    );
}
