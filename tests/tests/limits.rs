//! Limits against abuse, flooded over real sockets: connections per client
//! address are capped (and another address is still served); a token's
//! request storm gets 429 with Retry-After while another token's requests
//! keep succeeding; oversized heads, bodies, filters and WebSocket messages
//! get 4xx (or an error and a close); the hub's memory stays bounded.
//! Every loop is bounded in count and time.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io::Read;
use std::time::{Duration, Instant};
use telltale_tests::{curl, metric_in, wait_until, ws_connect_with, ws_next, Hub};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// A generous bound on the hub's resident memory after a flood.
const RSS_BOUND_KIB: u64 = 200 * 1024;

/// One GET /healthz from `source` (a loopback address), over a socket bound
/// there; the status line.
async fn health_from(source: [u8; 4], port: u16) -> String {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(std::net::SocketAddr::from((source, 0)))
        .expect("bind");
    let mut s = socket
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut out = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await;
    out.lines().next().unwrap_or("").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_from_one_address_are_capped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::start(dir.path(), "[api]\nmax_connections_per_ip = 50\n");
    let before = hub.rss_kib();
    // 500 connections from 127.0.0.1, held open without a request.
    let conns: Vec<std::net::TcpStream> = (0..500)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", hub.http_port)).expect("connect"))
        .collect();
    for c in &conns {
        c.set_nonblocking(true).expect("nonblocking");
    }
    // Those past the cap are closed at once (EOF or reset); the others
    // wait for a request.
    let closed_count = |conns: &[std::net::TcpStream]| {
        conns
            .iter()
            .filter(|c| {
                let mut b = [0u8; 1];
                let mut s: &std::net::TcpStream = c;
                !matches!(s.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            })
            .count()
    };
    let capped = wait_until(Duration::from_secs(10), || closed_count(&conns) >= 450);
    let closed = closed_count(&conns);
    assert!(capped, "only {closed} of 500 connections were closed");
    assert!(
        500 - closed <= 50,
        "{} connections stayed open",
        500 - closed
    );
    // Another address is served meanwhile.
    let line = health_from([127, 0, 0, 2], hub.http_port).await;
    assert!(line.contains("200"), "{line:?}");
    // Counted in /metrics (over 127.0.0.2's cap, not 127.0.0.1's).
    let refused = tokio::task::block_in_place(|| {
        metric_from(&hub, "telltale_http_connections_refused_total")
    });
    assert!(refused >= 450.0, "{refused}");
    // Once they are gone, 127.0.0.1 is served again.
    drop(conns);
    let served = tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(10), || hub.get("/healthz").0 == 200)
    });
    assert!(served, "the hub does not answer after the flood");
    let after = hub.rss_kib();
    eprintln!("hub RSS: {before} KiB before, {after} KiB after 500 connections");
    assert!(after < RSS_BOUND_KIB, "{after} KiB");
}

/// A metric read over a connection from 127.0.0.3 (127.0.0.1 may be at its
/// cap).
fn metric_from(hub: &Hub, name: &str) -> f64 {
    let (status, text) = curl(&hub.url("/metrics"), &["--interface", "127.0.0.3"]);
    assert_eq!(status, 200, "{text}");
    metric_in(&text, name).unwrap_or_else(|| panic!("{name} not in /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_over_its_rate_gets_429_and_another_token_is_still_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::start(
        dir.path(),
        "[api]\ntoken_rate_per_sec = 20\ntoken_rate_burst = 20\n",
    );
    let (storm, calm) = tokio::task::block_in_place(|| {
        let storm = hub.token("storm", "read");
        (storm, hub.token_live("calm", "read"))
    });
    let before = hub.rss_kib();
    let client = reqwest::Client::new();
    let url = hub.url("/v1/latest");
    // The storm: 4 tasks, as fast as they can, for 3 s (at most 4 x 2000).
    let storm_tasks: Vec<_> = (0..4)
        .map(|_| {
            let (client, url, token) = (client.clone(), url.clone(), storm.clone());
            tokio::spawn(async move {
                let (mut ok, mut limited) = (0u32, 0u32);
                let end = Instant::now() + Duration::from_secs(3);
                for _ in 0..2000 {
                    if Instant::now() > end {
                        break;
                    }
                    let res = client
                        .get(&url)
                        .bearer_auth(&token)
                        .send()
                        .await
                        .expect("storm request");
                    match res.status().as_u16() {
                        200 => ok += 1,
                        429 => {
                            let retry: u64 = res
                                .headers()
                                .get("retry-after")
                                .and_then(|v| v.to_str().ok())
                                .and_then(|v| v.parse().ok())
                                .expect("Retry-After");
                            assert!(retry >= 1);
                            let ct = res.headers()["content-type"].clone();
                            assert_eq!(ct, "application/problem+json");
                            let p: Value = serde_json::from_str(&res.text().await.expect("body"))
                                .expect("problem");
                            assert_eq!(p["code"], "rate_limited");
                            limited += 1;
                        }
                        other => panic!("storm got {other}"),
                    }
                }
                (ok, limited)
            })
        })
        .collect();
    // The calm token: 25 requests, 10 a second, each must succeed.
    let mut latencies = Vec::new();
    for _ in 0..25 {
        let t0 = Instant::now();
        let res = client
            .get(&url)
            .bearer_auth(&calm)
            .send()
            .await
            .expect("calm request");
        assert_eq!(res.status(), 200, "the calm token was refused");
        latencies.push(t0.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (mut ok, mut limited) = (0, 0);
    for t in storm_tasks {
        let (o, l) = t.await.expect("storm task");
        ok += o;
        limited += l;
    }
    latencies.sort();
    eprintln!(
        "storm: {ok} answered, {limited} refused with 429; calm token: p50 {:?}, max {:?} over {} requests",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
        latencies.len()
    );
    assert!(limited > 0, "the storm was never limited ({ok} answered)");
    // 20 in the burst plus 20 a second for about 3 s, with room.
    assert!(ok <= 20 + 20 * 5, "{ok} storm requests answered");
    let after = hub.rss_kib();
    eprintln!("hub RSS: {before} KiB before, {after} KiB after the storm");
    assert!(after < RSS_BOUND_KIB, "{after} KiB");
    assert!(
        tokio::task::block_in_place(|| metric_auth(&hub, &calm, "telltale_api_rate_limited_total"))
            >= f64::from(limited)
    );
}

fn metric_auth(hub: &Hub, token: &str, name: &str) -> f64 {
    let (status, text) = hub.get_auth("/metrics", token);
    assert_eq!(status, 200, "{text}");
    metric_in(&text, name).unwrap_or_else(|| panic!("{name} not in /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_bodies_filters_and_messages_get_4xx() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Open mode: no per-token limits, but the size limits hold.
    let hub = Hub::start(dir.path(), "[api]\nmax_filter_bytes = 100\n");
    let before = hub.rss_kib();
    tokio::task::block_in_place(|| {
        // A 20 KiB header (the head's limit is 16 KiB): 431.
        let big = format!("X-Big: {}", "a".repeat(20 * 1024));
        for _ in 0..20 {
            let (status, _) = curl(&hub.url("/v1/latest"), &["-H", &big]);
            assert_eq!(status, 431);
        }
        // A 100 KiB body (the limit is 64 KiB): 413 problem+json, whether
        // its length is declared or it comes in chunks.
        let body_file = dir.path().join("body.json");
        std::fs::write(
            &body_file,
            format!("{{\"name\": \"{}\"}}", "x".repeat(100 * 1024)),
        )
        .expect("body");
        let at = format!("@{}", body_file.display());
        for chunked in [false, true] {
            let mut args = vec!["-X", "POST", "-H", "Content-Type: application/json"];
            if chunked {
                args.extend(["-H", "Transfer-Encoding: chunked"]);
            }
            args.extend(["--data-binary", &at]);
            let (status, body) = curl(&hub.url("/v1/rules"), &args);
            assert_eq!(status, 413, "chunked {chunked}: {body}");
            let p: Value = serde_json::from_str(&body).expect("problem");
            assert_eq!(p["code"], "body_too_large");
        }
        // A filter over max_filter_bytes: 400 bad_filter at that position.
        for param in ["filter", "device", "metric"] {
            let (status, body) = hub.get(&format!("/v1/readings?{param}={}", "a".repeat(200)));
            assert_eq!(status, 400, "{body}");
            let p: Value = serde_json::from_str(&body).expect("problem");
            assert_eq!(p["code"], "bad_filter");
            assert_eq!(p["param"], param);
            assert_eq!(p["position"], 100);
        }
        let (status, _) = hub.get(&format!("/v1/readings?device={}", "a".repeat(100)));
        assert_eq!(status, 200);
    });
    // WebSocket: a message over ws_max_message_bytes (64 KiB) gets an error
    // and the socket stays; a filter over the limit too; a message over
    // ws_max_frame_bytes (1 MiB) closes the socket.
    let mut ws = ws_connect_with(&hub, "", &[]).await.expect("socket");
    ws.send(Message::text("x".repeat(100 * 1024)))
        .await
        .expect("send");
    assert_eq!(ws_next(&mut ws).await["error"]["code"], "message_too_large");
    let watch =
        json!({"id": 1, "type": "watch", "resource": "readings", "filter": "a".repeat(200)});
    ws.send(Message::text(watch.to_string()))
        .await
        .expect("send");
    assert_eq!(ws_next(&mut ws).await["error"]["code"], "bad_filter");
    ws.send(Message::text(json!({"id": 2, "type": "ping"}).to_string()))
        .await
        .expect("send");
    assert_eq!(ws_next(&mut ws).await["type"], "pong");
    let _ = ws.send(Message::text("x".repeat(2 * 1024 * 1024))).await;
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) => return None,
                Some(Ok(Message::Close(f))) => return f.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .expect("the socket closed in time");
    assert!(matches!(closed, Some(1009) | None), "{closed:?}");
    // The hub goes on.
    assert_eq!(tokio::task::block_in_place(|| hub.get("/healthz")).0, 200);
    let after = hub.rss_kib();
    eprintln!("hub RSS: {before} KiB before, {after} KiB after the oversized requests");
    assert!(after < RSS_BOUND_KIB, "{after} KiB");
}
