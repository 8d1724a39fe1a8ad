//! More of the watch contract over real sockets with the real hub and agent:
//! a stalled reader costs bounded memory and loses nothing, throttled state
//! watches, the final BOOKMARK at SIGTERM, device presence from the birth
//! message and the Last Will.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::{Duration, Instant};
use telltale_tests::{mosquitto_pub, seq_of, wait_until, Agent, CurlStream, Hub};

const HUB: &str = "[store]\ncommit_interval_ms = 100\n";

/// Every line of the stream until curl ends (the server closed it) or
/// `timeout` passes; and whether it ended.
fn lines_to_end(s: &CurlStream, timeout: Duration) -> (Vec<String>, bool) {
    let end = Instant::now() + timeout;
    let mut out = Vec::new();
    while Instant::now() < end {
        match s.lines.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => out.push(line),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return (out, true),
        }
    }
    (out, false)
}

/// The hub's resident set size in KiB, from /proc/<pid>/status.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Bytes the kernel holds for one loopback TCP connection between ports
/// `a` and `b`: both ends' send queues plus both ends' receive queues, from
/// /proc/net/tcp. What is not there the hub still has to produce.
fn kernel_queued(a: u16, b: u16) -> u64 {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let port = |addr: &str| {
        addr.rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
    };
    let mut total = 0;
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(remote), Some(queues)) = (f.get(1), f.get(2), f.get(4)) else {
            continue;
        };
        let ends = (port(local), port(remote));
        if ends == (Some(a), Some(b)) || ends == (Some(b), Some(a)) {
            let (tx, rx) = queues.split_once(':').expect("tx:rx");
            total +=
                u64::from_str_radix(tx, 16).expect("tx") + u64::from_str_radix(rx, 16).expect("rx");
        }
    }
    total
}

/// What a reader of a readings watch saw: ADDED seqs and values in order.
#[derive(Default)]
struct Seen {
    seqs: Vec<u64>,
    values: Vec<f64>,
}

impl Seen {
    /// Takes one NDJSON line; an ERROR event fails the test.
    fn line(&mut self, line: &str, who: &str) {
        if !line.starts_with('{') {
            return;
        }
        let e: Value = serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("{who}: bad event line {line:?}: {err}"));
        match e["type"].as_str() {
            Some("ADDED") => {
                self.seqs.push(e["object"]["seq"].as_u64().expect("seq"));
                self.values
                    .push(e["object"]["value"].as_f64().expect("numeric value"));
            }
            Some("ERROR") => panic!("{who}: the stream ended with an error: {e}"),
            _ => {}
        }
    }

    /// Asserts exactly seqs 1..=n and values 0..n, in that order.
    fn assert_complete(&self, n: u64, who: &str) {
        assert_eq!(self.seqs.len() as u64, n, "{who}: number of ADDED events");
        if let Some(i) = self.seqs.iter().zip(1..).position(|(s, want)| *s != want) {
            panic!(
                "{who}: gap, repeat or disorder at event {i}: seq {} where {} was due (around: {:?})",
                self.seqs[i],
                i + 1,
                &self.seqs[i.saturating_sub(3)..(i + 3).min(self.seqs.len())]
            );
        }
        if let Some(i) = self
            .values
            .iter()
            .enumerate()
            .position(|(i, v)| *v != i as f64)
        {
            panic!(
                "{who}: values out of publish order at event {i}: {} where {i} was due",
                self.values[i]
            );
        }
    }
}

/// An HTTP/1.1 chunked body, decoded as bytes arrive.
#[derive(Default)]
struct Chunked {
    raw: Vec<u8>,
    body: Vec<u8>,
    ended: bool,
}

impl Chunked {
    fn push(&mut self, bytes: &[u8]) {
        self.raw.extend_from_slice(bytes);
        let mut pos = 0;
        while !self.ended {
            let Some(nl) = self.raw[pos..].windows(2).position(|w| w == b"\r\n") else {
                break;
            };
            let size_line = std::str::from_utf8(&self.raw[pos..pos + nl]).expect("chunk size");
            let size_hex = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16)
                .unwrap_or_else(|e| panic!("chunk size line {size_line:?}: {e}"));
            let data = pos + nl + 2;
            if size == 0 {
                self.ended = true;
                pos = data;
                break;
            }
            if self.raw.len() < data + size + 2 {
                break;
            }
            self.body.extend_from_slice(&self.raw[data..data + size]);
            assert_eq!(
                &self.raw[data + size..data + size + 2],
                b"\r\n",
                "chunk end"
            );
            pos = data + size + 2;
        }
        self.raw.drain(..pos);
    }

    /// The complete lines decoded so far.
    fn take_lines(&mut self) -> Vec<String> {
        let Some(last_nl) = self.body.iter().rposition(|b| *b == b'\n') else {
            return Vec::new();
        };
        let rest = self.body.split_off(last_nl + 1);
        let done = std::mem::replace(&mut self.body, rest);
        String::from_utf8(done)
            .expect("utf-8 body")
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

#[test]
fn a_stalled_reader_costs_bounded_memory_and_loses_nothing() {
    const LINES: u64 = 2_000;
    const PER_LINE: u64 = 50;
    const TOTAL: u64 = LINES * PER_LINE;

    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::start(&dir.path().join("hub"), HUB);
    let pid = hub.pid().expect("hub pid");

    // The stalled reader: a raw socket that reads the response head, then
    // nothing more until all readings are published and delivered elsewhere.
    let mut stalled = TcpStream::connect(("127.0.0.1", hub.http_port)).expect("connect");
    stalled
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    stalled
        .write_all(
            b"GET /v1/readings?watch=true HTTP/1.1\r\nHost: x\r\nAccept: application/x-ndjson\r\n\r\n",
        )
        .expect("request");
    let mut head = Vec::new();
    let head_deadline = Instant::now() + Duration::from_secs(10);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert!(Instant::now() < head_deadline, "no response head: {head:?}");
        match stalled.read(&mut byte) {
            Ok(0) => panic!("closed before the head ended: {head:?}"),
            Ok(_) => head.push(byte[0]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("reading the head: {e}"),
        }
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("application/x-ndjson"), "{head}");
    let chunked = head.contains("transfer-encoding: chunked");

    // The watcher that keeps up; heartbeats tell when it is established.
    let live = CurlStream::start(&hub.url("/v1/readings?watch=true&heartbeatSeconds=1"), &[]);
    assert!(
        live.next_line(Duration::from_secs(10)).is_some(),
        "the live watcher got no first heartbeat"
    );

    // 2,000 packs of 50 records; record i of line l has value l*50+i.
    let file = dir.path().join("packs.txt");
    let mut text = String::new();
    for l in 0..LINES {
        let pack: Vec<String> = (0..PER_LINE)
            .map(|i| format!(r#"{{"n":"m{i}","v":{}}}"#, l * PER_LINE + i))
            .collect();
        text.push('[');
        text.push_str(&pack.join(","));
        text.push_str("]\n");
    }
    std::fs::write(&file, text).expect("write packs");

    let rss_before = rss_kib(pid).expect("hub rss");
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while sampling.load(Ordering::SeqCst) {
                peak = peak.max(rss_kib(pid).unwrap_or(0));
                std::thread::sleep(Duration::from_millis(50));
            }
            peak
        })
    };

    let t0 = Instant::now();
    let mut publisher = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &hub.mqtt_port.to_string(),
            "-q",
            "1",
        ])
        .args(["-t", "telltale/v1/devices/stall/telemetry", "-l"])
        .stdin(std::fs::File::open(&file).expect("packs"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub runs");

    let mut fast = Seen::default();
    let deadline = t0 + Duration::from_secs(60);
    while (fast.seqs.len() as u64) < TOTAL && Instant::now() < deadline {
        if let Some(line) = live.next_line(Duration::from_millis(200)) {
            fast.line(&line, "live watcher");
        }
    }
    let live_took = t0.elapsed();
    sampling.store(false, Ordering::SeqCst);
    let rss_peak = sampler.join().expect("sampler").max(rss_before);
    let published = publisher.wait().expect("mosquitto_pub ends");
    let mut err = String::new();
    if let Some(mut e) = publisher.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(published.success(), "mosquitto_pub failed: {err}");
    let client_port = stalled.local_addr().expect("addr").port();
    let queued = kernel_queued(client_port, hub.http_port);
    let growth_mib = (rss_peak.saturating_sub(rss_before)) as f64 / 1024.0;
    println!(
        "stalled reader: live watcher got {} ADDED in {:.1}s; hub RSS {:.1} MiB before, peak {:.1} MiB, growth {growth_mib:.1} MiB",
        fast.seqs.len(),
        live_took.as_secs_f64(),
        rss_before as f64 / 1024.0,
        rss_peak as f64 / 1024.0,
    );
    fast.assert_complete(TOTAL, "live watcher");
    assert!(
        live_took < Duration::from_secs(60),
        "the live watcher took {live_took:?}"
    );
    assert!(
        growth_mib < 200.0,
        "the hub grew by {growth_mib:.1} MiB while a reader stalled"
    );

    // Now the stalled reader reads: everything, in order, once.
    let t1 = Instant::now();
    let mut slow = Seen::default();
    let mut body = Chunked::default();
    let mut plain = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut received = 0usize;
    let deadline = t1 + Duration::from_secs(40);
    while (slow.seqs.len() as u64) < TOTAL && Instant::now() < deadline {
        let n = match stalled.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => panic!("reading the stalled stream: {e}"),
        };
        received += n;
        let lines = if chunked {
            body.push(&buf[..n]);
            body.take_lines()
        } else {
            plain.extend_from_slice(&buf[..n]);
            let Some(last_nl) = plain.iter().rposition(|b| *b == b'\n') else {
                continue;
            };
            let rest = plain.split_off(last_nl + 1);
            let done = std::mem::replace(&mut plain, rest);
            String::from_utf8(done)
                .expect("utf-8")
                .lines()
                .map(str::to_owned)
                .collect()
        };
        for line in lines {
            slow.line(&line, "stalled reader");
        }
    }
    println!(
        "stalled reader: {:.2} MiB sat in socket buffers while it stalled; then it read {} ADDED ({:.1} MiB) in {:.1}s",
        queued as f64 / (1024.0 * 1024.0),
        slow.seqs.len(),
        received as f64 / (1024.0 * 1024.0),
        t1.elapsed().as_secs_f64()
    );
    slow.assert_complete(TOTAL, "stalled reader");
    // The premise: the socket buffers did not absorb the stream, so the hub
    // itself had to hold the stalled watcher back (and catch it up later).
    assert!(
        queued * 2 < received as u64,
        "the kernel buffered {queued} of {received} bytes: the reader did not really stall"
    );
}

#[test]
fn throttled_latest_gets_about_one_event_per_second_and_the_final_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::start(&dir.path().join("hub"), HUB);
    // sendInitialEvents: the BOOKMARK that ends the (empty) initial state
    // says the watch is established before the agent starts.
    let s = CurlStream::start(
        &hub.url("/v1/latest?watch=true&throttleSeconds=1&device=thr&sendInitialEvents=true"),
        &[],
    );
    let initial = s.events_until(Duration::from_secs(10), |ev| !ev.is_empty());
    assert_eq!(initial.len(), 1, "{initial:?}");
    assert_eq!(initial[0]["type"], "BOOKMARK", "{initial:?}");
    assert_eq!(initial[0]["object"]["initialEventsEnd"], true);

    let t0 = Instant::now();
    let _agent = Agent::start(
        &dir.path().join("agent"),
        "thr",
        hub.mqtt_port,
        "[batch]\nmax_readings = 10\ninterval_ms = 100\n\n[[source]]\nkind = \"simulated\"\nmetric = \"count\"\ninterval_ms = 10\nshape = \"counter\"\nbase = 0.0\nlimit = 500\n",
    );
    // (arrival, value) of every item event; done when the store has 500.
    let mut got: Vec<(Instant, f64)> = Vec::new();
    let mut done_at: Option<Instant> = None;
    let mut next_poll = Instant::now();
    let deadline = t0 + Duration::from_secs(45);
    while Instant::now() < deadline && done_at.is_none_or(|d| d.elapsed() < Duration::from_secs(7))
    {
        if done_at.is_none() && Instant::now() >= next_poll {
            next_poll = Instant::now() + Duration::from_millis(250);
            let (_, list) = hub.get_json("/v1/latest?device=thr");
            if list["items"][0]["value"].as_f64() == Some(500.0) {
                done_at = Some(Instant::now());
            }
        }
        let Some(line) = s.next_line(Duration::from_millis(100)) else {
            continue;
        };
        let e: Value = serde_json::from_str(&line).expect("event json");
        match e["type"].as_str() {
            Some("ADDED" | "MODIFIED") => {
                assert_eq!(e["object"]["device"], "thr");
                assert_eq!(e["object"]["metric"], "count");
                got.push((
                    Instant::now(),
                    e["object"]["value"].as_f64().expect("value"),
                ));
            }
            Some("BOOKMARK") => {}
            _ => panic!("unexpected event {e}"),
        }
    }
    let done_at = done_at.expect("the source never reached 500");
    let values: Vec<f64> = got.iter().map(|(_, v)| *v).collect();
    let gaps: Vec<u128> = got
        .windows(2)
        .map(|w| (w[1].0 - w[0].0).as_millis())
        .collect();
    println!(
        "throttle: production took {:.1}s; {} events: values {values:?}, gaps ms {gaps:?}",
        (done_at - t0).as_secs_f64(),
        got.len()
    );
    assert!(
        (3..=9).contains(&got.len()),
        "about one event per second over ~5 s, got {}: {values:?}",
        got.len()
    );
    assert!(
        values.windows(2).all(|w| w[0] < w[1]),
        "values strictly increase: {values:?}"
    );
    assert_eq!(values.last(), Some(&500.0), "the final value is delivered");
    assert!(
        gaps.iter().all(|g| *g >= 500),
        "at most one event per item per second: gaps {gaps:?} ms"
    );
}

#[test]
fn sigterm_ends_every_stream_with_a_final_bookmark() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut hub = Hub::start(&dir.path().join("hub"), HUB);
    let readings = CurlStream::start(&hub.url("/v1/readings?watch=true&heartbeatSeconds=1"), &[]);
    let devices = CurlStream::start(
        &hub.url("/v1/devices?watch=true&sendInitialEvents=true"),
        &["-H", "Accept: text/event-stream"],
    );
    // Both are established: a heartbeat, and the end of the initial events.
    assert!(
        readings.next_line(Duration::from_secs(10)).is_some(),
        "no heartbeat on the readings watch"
    );
    let initial = devices.events_until(Duration::from_secs(10), |ev| {
        ev.iter().any(|e| e["type"] == "BOOKMARK")
    });
    assert!(
        initial.iter().any(|e| e["type"] == "BOOKMARK"),
        "{initial:?}"
    );

    for i in 0..3 {
        mosquitto_pub(
            hub.mqtt_port,
            "term",
            &format!(r#"[{{"n":"t","v":{i}}},{{"n":"h","v":{i}}}]"#),
        );
    }
    let before = readings.events_until(Duration::from_secs(10), |ev| {
        ev.iter().filter(|e| e["type"] == "ADDED").count() >= 6
    });
    let last_added = before
        .iter()
        .filter(|e| e["type"] == "ADDED")
        .map(|e| e["object"]["seq"].as_u64().expect("seq"))
        .max()
        .expect("the readings arrived on the watch");
    assert_eq!(last_added, 6);

    let t0 = Instant::now();
    let exited = hub.terminate(Duration::from_secs(10));
    let took = t0.elapsed();
    println!("sigterm: the hub exited in {took:?}");
    assert!(exited, "the hub did not exit within 10 s of SIGTERM");

    let (r_lines, r_ended) = lines_to_end(&readings, Duration::from_secs(5));
    let (d_lines, d_ended) = lines_to_end(&devices, Duration::from_secs(5));
    assert!(r_ended && d_ended, "both streams end with the hub");
    let r_last: Value = serde_json::from_str(
        r_lines
            .iter()
            .rev()
            .find(|l| l.starts_with('{'))
            .expect("a final NDJSON event"),
    )
    .expect("json");
    println!("sigterm: last NDJSON event {r_last}");
    assert_eq!(r_last["type"], "BOOKMARK", "{r_lines:?}");
    let rv = r_last["resourceVersion"].as_str().expect("rv").to_owned();
    assert_eq!(
        seq_of(&rv),
        last_added,
        "the final BOOKMARK covers everything delivered"
    );

    // The last SSE event (events are separated by blank lines).
    let sse: Vec<&str> = d_lines.iter().map(String::as_str).collect();
    let last_event: Vec<&str> = sse
        .split(|l| l.is_empty())
        .rfind(|ev| !ev.is_empty())
        .expect("an SSE event")
        .to_vec();
    println!("sigterm: last SSE event {last_event:?}");
    assert!(
        last_event.contains(&"event: bookmark"),
        "the last SSE event is a bookmark: {last_event:?}"
    );
    let data = last_event
        .iter()
        .find_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
        .expect("data line");
    let d_last: Value = serde_json::from_str(data).expect("json");
    assert_eq!(d_last["type"], "BOOKMARK");
    let d_rv = d_last["resourceVersion"].as_str().expect("rv").to_owned();
    assert!(
        last_event.contains(&format!("id: {d_rv}").as_str()),
        "the SSE id is the bookmark's version: {last_event:?}"
    );

    // After a restart both versions resume: nothing new yet, then exactly
    // what comes after them.
    hub.restart();
    let (status, body) = hub.get(&format!("/v1/readings?resourceVersion={rv}"));
    assert_eq!(status, 200, "{body}");
    let list: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0), "{body}");
    let (status, body) = hub.get(&format!("/v1/devices?resourceVersion={d_rv}"));
    assert_eq!(status, 200, "{body}");
    mosquitto_pub(hub.mqtt_port, "term", r#"[{"n":"t","v":9}]"#);
    let mut after = Value::Null;
    assert!(wait_until(Duration::from_secs(10), || {
        after = hub
            .get_json(&format!("/v1/readings?resourceVersion={rv}"))
            .1;
        after["items"].as_array().is_some_and(|a| !a.is_empty())
    }));
    let items = after["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{after}");
    assert_eq!(items[0]["seq"], last_added + 1, "{after}");
    assert_eq!(items[0]["value"], 9.0, "{after}");
}

#[test]
fn device_presence_follows_birth_and_last_will() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::start(&dir.path().join("hub"), HUB);
    // The harness writes the [mqtt] table last before the body, so the bare
    // key at the top of the body lands in [mqtt].
    let mut agent = Agent::start(
        &dir.path().join("agent"),
        "pres",
        hub.mqtt_port,
        "keep_alive_secs = 5\n\n[labels]\nsite = \"t\"\n\n[[source]]\nkind = \"simulated\"\nmetric = \"temp\"\ninterval_ms = 500\n",
    );
    let mut dev = Value::Null;
    let online = wait_until(Duration::from_secs(20), || {
        let (status, body) = hub.get("/v1/devices/pres");
        if status == 200 {
            dev = serde_json::from_str(&body).expect("json");
        }
        dev["online"] == true
    });
    assert!(online, "the device never came online: {dev}");
    println!("presence: online {dev}");
    assert_eq!(dev["labels"], serde_json::json!({"site": "t"}), "{dev}");
    assert!(
        dev["agent"]
            .as_str()
            .is_some_and(|a| a.starts_with("telltale-agent/")),
        "{dev}"
    );

    let s = CurlStream::start(
        &hub.url("/v1/devices?watch=true&sendInitialEvents=true"),
        &[],
    );
    let initial = s.events_until(Duration::from_secs(10), |ev| {
        ev.iter().any(|e| e["type"] == "BOOKMARK")
    });
    let added: Vec<&Value> = initial
        .iter()
        .filter(|e| e["type"] == "ADDED" && e["object"]["id"] == "pres")
        .collect();
    assert_eq!(added.len(), 1, "{initial:?}");
    assert_eq!(added[0]["object"]["online"], true);

    let t0 = Instant::now();
    agent.kill();
    let mut offline = None;
    let events = s.events_until(Duration::from_secs(60), |ev| {
        offline = ev
            .iter()
            .find(|e| {
                e["type"] == "MODIFIED"
                    && e["object"]["id"] == "pres"
                    && e["object"]["online"] == false
            })
            .cloned();
        offline.is_some()
    });
    let took = t0.elapsed();
    let offline = offline.unwrap_or_else(|| panic!("no offline event within 60 s: {events:?}"));
    println!("presence: offline {took:?} after SIGKILL: {offline}");
    let obj = &offline["object"];
    assert_eq!(obj["labels"], serde_json::json!({"site": "t"}), "{offline}");
    assert!(
        obj["agent"]
            .as_str()
            .is_some_and(|a| a.starts_with("telltale-agent/")),
        "{offline}"
    );
    assert!(
        events
            .iter()
            .filter(|e| e["object"]["id"] == "pres")
            .all(|e| e["type"] == "MODIFIED"),
        "{events:?}"
    );
    let (_, now) = hub.get_json("/v1/devices/pres");
    assert_eq!(now["online"], false, "{now}");
    assert_eq!(now["labels"], serde_json::json!({"site": "t"}), "{now}");
}
