//! The watch routes over real sockets with the real hub (and curl as the
//! client): snapshots, resume, 410 and 400 answers, long polls, initial
//! events, heartbeats, the watch cap.

use serde_json::Value;
use std::time::{Duration, Instant};
use telltale_tests::{curl, mosquitto_pub, seq_of, wait_until, Agent, CurlStream, Hub};

const FAST: &str = "[store]\ncommit_interval_ms = 50\n";

fn counter(limit: u64) -> String {
    format!(
        "[batch]\nmax_readings = 20\ninterval_ms = 50\n\n[[source]]\nkind = \"simulated\"\nmetric = \"count\"\ninterval_ms = 2\nshape = \"counter\"\nbase = 0.0\nlimit = {limit}\n"
    )
}

fn added_seqs(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e["type"] == "ADDED")
        .map(|e| e["object"]["seq"].as_u64().expect("seq"))
        .collect()
}

#[test]
fn snapshot_then_watch_from_its_version_misses_and_repeats_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::start(&dir.path().join("hub"), FAST);
    let _agent = Agent::start(
        &dir.path().join("agent"),
        "flow",
        hub.mqtt_port,
        &counter(2000),
    );
    assert!(wait_until(Duration::from_secs(20), || {
        hub.get_json("/v1/readings?limit=1").1["items"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
            && seq_of(
                hub.get_json("/v1/readings?limit=1").1["resourceVersion"]
                    .as_str()
                    .unwrap_or("x-0"),
            ) > 300
    }));
    let (status, list) = hub.get_json("/v1/readings?limit=10000");
    assert_eq!(status, 200);
    let rv = list["resourceVersion"].as_str().expect("rv").to_owned();
    let mut seqs: Vec<u64> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["seq"].as_u64().expect("seq"))
        .collect();
    assert!(seqs.len() < 2000, "readings are still flowing");
    let watch = CurlStream::start(
        &hub.url(&format!("/v1/readings?watch=true&resourceVersion={rv}")),
        &[],
    );
    let events = watch.events_until(Duration::from_secs(30), |ev| {
        ev.iter().filter(|e| e["type"] == "ADDED").count() + seqs.len() >= 2000
    });
    seqs.extend(added_seqs(&events));
    assert_eq!(seqs, (1..=2000).collect::<Vec<u64>>(), "no gap, no repeat");
}

#[test]
fn sse_reconnect_with_last_event_id_gets_exactly_what_it_missed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::start(&dir.path().join("hub"), FAST);
    let _agent = Agent::start(
        &dir.path().join("agent"),
        "sse",
        hub.mqtt_port,
        &counter(1500),
    );
    let url = hub.url("/v1/readings?watch=true");
    let first = CurlStream::start(&url, &["-H", "Accept: text/event-stream"]);
    let got = first.events_until(Duration::from_secs(20), |ev| added_seqs(ev).len() >= 200);
    drop(first);
    let seen = added_seqs(&got);
    let last = *seen.last().expect("some events");
    // Readings keep flowing while the client is away.
    std::thread::sleep(Duration::from_millis(500));
    let epoch = hub.get_json("/v1/readings?limit=1").1["resourceVersion"]
        .as_str()
        .and_then(|rv| rv.rsplit_once('-'))
        .map(|(e, _)| e.to_owned())
        .expect("epoch");
    let id = format!("Last-Event-ID: {epoch}-{last}");
    let again = CurlStream::start(&url, &["-H", "Accept: text/event-stream", "-H", &id]);
    let more = again.events_until(Duration::from_secs(30), |ev| {
        added_seqs(ev).last().is_some_and(|s| *s >= 1500)
    });
    let resumed = added_seqs(&more);
    assert_eq!(
        resumed.first(),
        Some(&(last + 1)),
        "starts right after the last id"
    );
    assert_eq!(resumed, (last + 1..=1500).collect::<Vec<_>>());
}

#[test]
fn bad_requests_and_expired_versions_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::start(
        &dir.path().join("hub"),
        "[store]\ncommit_interval_ms = 50\n[store.retention]\nmax_rows = 50\ndelete_batch = 10\n",
    );
    for i in 0..10 {
        let pack: Vec<String> = (0..20)
            .map(|j| format!(r#"{{"n":"m{j}","v":{i}}}"#))
            .collect();
        mosquitto_pub(hub.mqtt_port, "ring", &format!("[{}]", pack.join(",")));
    }
    assert!(wait_until(Duration::from_secs(10), || {
        seq_of(
            hub.get_json("/v1/readings?limit=1").1["resourceVersion"]
                .as_str()
                .unwrap_or("x-0"),
        ) >= 200
    }));
    let (_, list) = hub.get_json("/v1/readings");
    let rv = list["resourceVersion"].as_str().expect("rv").to_owned();
    let epoch = rv.rsplit_once('-').expect("rv").0.to_owned();
    assert!(
        list["items"].as_array().expect("items").len() <= 60,
        "the ring holds at most 50 + a delete batch"
    );

    let cases: &[(String, u16, &str, Option<&str>)] = &[
        (
            "/v1/readings?colour=red".into(),
            400,
            "bad_parameter",
            Some("colour"),
        ),
        (
            "/v1/readings?filter=value%20%3E".into(),
            400,
            "bad_filter",
            Some("filter"),
        ),
        (
            "/v1/readings?resourceVersion=nonsense".into(),
            400,
            "bad_resource_version",
            Some("resourceVersion"),
        ),
        (
            format!("/v1/readings?resourceVersion={epoch}-999999"),
            400,
            "bad_resource_version",
            Some("resourceVersion"),
        ),
        (
            "/v1/readings?resourceVersion=deadbeef-5&watch=true".into(),
            410,
            "expired",
            None,
        ),
        (
            format!("/v1/readings?resourceVersion={epoch}-1&watch=true"),
            410,
            "expired",
            None,
        ),
        (
            format!("/v1/readings?resourceVersion={epoch}-1"),
            410,
            "expired",
            None,
        ),
        (
            "/v1/latest?since=5m".into(),
            400,
            "bad_parameter",
            Some("since"),
        ),
        ("/v1/devices/nobody".into(), 404, "not_found", None),
    ];
    for (path, status, code, param) in cases {
        let (got, body) = hub.get(path);
        let problem: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        assert_eq!(got, *status, "{path}: {body}");
        assert_eq!(problem["code"], *code, "{path}");
        assert_eq!(problem["status"], *status, "{path}");
        if let Some(p) = param {
            assert_eq!(problem["param"], *p, "{path}");
        }
        if *code == "expired" {
            let oldest = problem["oldestResourceVersion"]
                .as_str()
                .expect("oldest held");
            assert!(seq_of(oldest) > 1, "{oldest}");
        }
    }
    let (_, problem) = hub.get_json("/v1/readings?filter=value%20%3E");
    assert_eq!(problem["position"], 7);
    // The headers say what the body is.
    let (_, head) = curl(
        &hub.url("/v1/readings?colour=red"),
        &["-D", "-", "-o", "/dev/null"],
    );
    assert!(
        head.to_lowercase()
            .contains("content-type: application/problem+json"),
        "{head}"
    );
}

#[test]
fn long_poll_returns_on_a_match_and_empty_at_its_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::start(&dir.path().join("hub"), FAST);
    mosquitto_pub(hub.mqtt_port, "other", r#"[{"n":"t","v":1}]"#);
    assert!(wait_until(Duration::from_secs(10), || {
        hub.get_json("/v1/readings").1["items"]
            .as_array()
            .is_some_and(|a| a.len() == 1)
    }));
    let rv = hub.get_json("/v1/readings").1["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_owned();
    let port = hub.mqtt_port;
    let publisher = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        mosquitto_pub(port, "other", r#"[{"n":"t","v":2}]"#);
        mosquitto_pub(port, "lp", r#"[{"n":"t","v":3}]"#);
    });
    let t0 = Instant::now();
    let (status, body) = hub.get(&format!(
        "/v1/readings?resourceVersion={rv}&wait=20s&device=lp"
    ));
    let took = t0.elapsed();
    publisher.join().expect("publisher");
    assert_eq!(status, 200, "{body}");
    let list: Value = serde_json::from_str(&body).expect("json");
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{body}");
    assert_eq!(items[0]["device"], "lp");
    assert!(
        took < Duration::from_secs(10),
        "returned on the match, after {took:?}"
    );
    let rv2 = list["resourceVersion"].as_str().expect("rv");
    assert!(seq_of(rv2) > seq_of(&rv));

    let t0 = Instant::now();
    let (status, body) = hub.get(&format!(
        "/v1/readings?resourceVersion={rv2}&wait=1s&device=never"
    ));
    assert_eq!(status, 200);
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "held until its timeout"
    );
    let list: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0));
}

#[test]
fn latest_with_initial_events_then_live_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::start(&dir.path().join("hub"), FAST);
    for d in ["a", "b"] {
        mosquitto_pub(
            hub.mqtt_port,
            d,
            r#"[{"n":"temp","v":1},{"n":"hum","v":2}]"#,
        );
    }
    assert!(wait_until(Duration::from_secs(10), || {
        hub.get_json("/v1/latest").1["items"]
            .as_array()
            .is_some_and(|a| a.len() == 4)
    }));
    let s = CurlStream::start(
        &hub.url("/v1/latest?watch=true&sendInitialEvents=true"),
        &[],
    );
    let initial = s.events_until(Duration::from_secs(10), |ev| {
        ev.iter().any(|e| e["type"] == "BOOKMARK")
    });
    let added: Vec<_> = initial.iter().filter(|e| e["type"] == "ADDED").collect();
    assert_eq!(added.len(), 4, "one ADDED per (device, metric)");
    let bookmark = initial.last().expect("bookmark");
    assert_eq!(bookmark["type"], "BOOKMARK");
    assert_eq!(bookmark["object"]["initialEventsEnd"], true);
    mosquitto_pub(hub.mqtt_port, "a", r#"[{"n":"temp","v":5}]"#);
    let live = s.events_until(Duration::from_secs(10), |ev| {
        ev.iter().any(|e| e["type"] == "MODIFIED")
    });
    let m = live
        .iter()
        .find(|e| e["type"] == "MODIFIED")
        .expect("modified");
    assert_eq!(m["object"]["device"], "a");
    assert_eq!(m["object"]["value"], 5.0);
}

#[test]
fn a_filtered_watch_that_matches_nothing_gets_advancing_heartbeats() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::start(&dir.path().join("hub"), FAST);
    let _agent = Agent::start(
        &dir.path().join("agent"),
        "hb",
        hub.mqtt_port,
        &counter(100_000),
    );
    let s = CurlStream::start(
        &hub.url("/v1/readings?watch=true&device=nobody&heartbeatSeconds=1"),
        &[],
    );
    let got = s.events_until(Duration::from_secs(10), |ev| ev.len() >= 3);
    assert!(got.iter().all(|e| e["type"] == "BOOKMARK"), "{got:?}");
    let rvs: Vec<u64> = got
        .iter()
        .map(|e| seq_of(e["resourceVersion"].as_str().expect("rv")))
        .collect();
    assert!(
        rvs.len() >= 3 && rvs.windows(2).all(|w| w[0] < w[1]),
        "{rvs:?}"
    );
}

#[test]
fn the_watch_cap_answers_429_with_retry_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::start(&dir.path().join("hub"), "[api]\nmax_watches = 2\n");
    let _a = CurlStream::start(&hub.url("/v1/readings?watch=true"), &[]);
    let _b = CurlStream::start(&hub.url("/v1/devices?watch=true"), &[]);
    std::thread::sleep(Duration::from_millis(500));
    let (_, head) = curl(
        &hub.url("/v1/latest?watch=true"),
        &["-D", "-", "-o", "/dev/null"],
    );
    let head = head.to_lowercase();
    assert!(head.starts_with("http/1.1 429"), "{head}");
    assert!(head.contains("retry-after:"), "{head}");
}

#[test]
fn cors_answers_only_the_configured_origins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::start(
        &dir.path().join("hub"),
        "[api]\ncors_origins = [\"http://dash.example\"]\n",
    );
    let (_, head) = curl(
        &hub.url("/v1/readings"),
        &[
            "-D",
            "-",
            "-o",
            "/dev/null",
            "-H",
            "Origin: http://dash.example",
        ],
    );
    assert!(
        head.to_lowercase()
            .contains("access-control-allow-origin: http://dash.example"),
        "{head}"
    );
    let (_, head) = curl(
        &hub.url("/v1/readings"),
        &[
            "-D",
            "-",
            "-o",
            "/dev/null",
            "-H",
            "Origin: http://evil.example",
        ],
    );
    assert!(
        !head.to_lowercase().contains("access-control-allow-origin"),
        "{head}"
    );
    // The preflight an EventSource with Last-Event-ID may need.
    let (_, head) = curl(
        &hub.url("/v1/readings?watch=true"),
        &[
            "-X",
            "OPTIONS",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "-H",
            "Origin: http://dash.example",
            "-H",
            "Access-Control-Request-Method: GET",
            "-H",
            "Access-Control-Request-Headers: last-event-id",
        ],
    );
    let head = head.to_lowercase();
    assert!(
        head.contains("access-control-allow-headers") && head.contains("last-event-id"),
        "{head}"
    );
}
