//! Alerts end to end: the real hub and agent, real MQTT, a webhook receiver
//! on loopback. A threshold crossing seen on /v1/alerts as pending then
//! firing, one webhook per transition, an acknowledgement seen on the
//! watch, the resolve below the clear value; a notification pending when
//! the hub is SIGKILLed delivered once after the restart; a no-data rule
//! firing when the agent stops; a bad rules file that keeps the rules in
//! force.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use telltale_tests::{curl, mosquitto_pub, wait_until, Agent, CurlStream, Hub};

/// A webhook receiver: answers every POST with `status` (settable), and
/// keeps the JSON bodies it answered 2xx.
struct Receiver {
    port: u16,
    status: Arc<AtomicU16>,
    got: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    fn start(status: u16) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let status = Arc::new(AtomicU16::new(status));
        let got = Arc::new(Mutex::new(Vec::new()));
        let (st, g) = (status.clone(), got.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Head, then Content-Length bytes of body.
                let body = loop {
                    let Ok(n) = conn.read(&mut chunk) else {
                        break None;
                    };
                    if n == 0 {
                        break None;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buf.len() < end + 4 + len {
                        match conn.read(&mut chunk) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    break Some(buf[end + 4..].to_vec());
                };
                let code = st.load(Ordering::SeqCst);
                if let Some(body) = body {
                    if (200..300).contains(&code) {
                        if let Ok(v) = serde_json::from_slice(&body) {
                            g.lock().expect("lock").push(v);
                        }
                    }
                }
                let _ = write!(
                    conn,
                    "HTTP/1.1 {code} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        Receiver { port, status, got }
    }

    fn got(&self) -> Vec<Value> {
        self.got.lock().expect("lock").clone()
    }

    fn kinds(&self) -> Vec<String> {
        self.got()
            .iter()
            .map(|v| v["kind"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

/// Hub config: fast commits, the rules file, a webhook sink with short
/// retries.
fn config(rules: &Path, hook_port: u16) -> String {
    format!(
        "[store]\ncommit_interval_ms = 100\n\
         [alerts]\nrules_file = \"{}\"\nreload_poll_secs = 1\n\
         [notify]\ninitial_backoff_secs = 1\nmax_backoff_secs = 2\n\
         [[notify.sink]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{hook_port}/hook\"\n",
        rules.display()
    )
}

const HOT: &str = r#"
[[rule]]
name = "hot"
device = "f1"
metric = "temp"
condition = { above = 10.0, clear_below = 8.0 }
for = "1s"
severity = "major"
notify = ["hook"]
"#;

fn temp(hub: &Hub, device: &str, v: f64) {
    mosquitto_pub(
        hub.mqtt_port,
        device,
        &format!(r#"[{{"n":"temp","v":{v}}}]"#),
    );
}

/// The states an alert went through on a watch, in order, without repeats.
fn states(events: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in events {
        if let Some(s) = e["object"]["state"].as_str() {
            if out.last().map(String::as_str) != Some(s) {
                out.push(s.to_owned());
            }
        }
    }
    out
}

#[test]
fn a_crossing_fires_notifies_once_per_transition_is_acknowledged_and_resolves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, HOT).expect("rules");
    let hook = Receiver::start(200);
    let hub = Hub::start(&dir.path().join("hub"), &config(&rules, hook.port));
    let watch = CurlStream::start(
        &hub.url("/v1/alerts?watch=true&severity=major,critical"),
        &[],
    );
    // The watch is open once its first heartbeat could come; publish now.
    std::thread::sleep(Duration::from_millis(300));

    temp(&hub, "f1", 5.0);
    temp(&hub, "f1", 12.0);
    // Pending, then firing once `for` (1 s) has passed, without another
    // reading: the hub's own timer.
    let events = watch.events_until(Duration::from_secs(15), |ev| {
        states(ev).contains(&"firing".to_owned())
    });
    assert_eq!(states(&events), ["pending", "firing"], "{events:?}");
    let alert = events.last().expect("event")["object"].clone();
    assert_eq!(alert["rule"], "hot");
    assert_eq!(alert["device"], "f1");
    let id = alert["id"].as_u64().expect("id");

    assert!(
        wait_until(Duration::from_secs(10), || hook.got().len() == 1),
        "the webhook got the firing notification"
    );
    let n = &hook.got()[0];
    assert_eq!(
        (n["kind"].as_str(), n["state"].as_str()),
        (Some("firing"), Some("firing"))
    );
    assert_eq!(n["alert_id"].as_u64(), Some(id));
    assert_eq!(n["value"].as_f64(), Some(12.0));

    // Acknowledged through the API: seen on the watch.
    let (code, body) = curl(
        &hub.url(&format!("/v1/alerts/{id}/ack")),
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"by":"ann","note":"checking the door"}"#,
        ],
    );
    assert_eq!(code, 200, "{body}");
    let events = watch.events_until(Duration::from_secs(10), |ev| {
        ev.iter().any(|e| e["object"]["acknowledged"] == true)
    });
    let acked = events
        .iter()
        .find(|e| e["object"]["acknowledged"] == true)
        .expect("the ack on the watch");
    assert_eq!(acked["object"]["ack"]["by"], "ann");

    // Hovering between the thresholds changes nothing; below the clear
    // value it resolves.
    temp(&hub, "f1", 9.0);
    temp(&hub, "f1", 11.0);
    temp(&hub, "f1", 7.0);
    let events = watch.events_until(Duration::from_secs(10), |ev| {
        states(ev).contains(&"resolved".to_owned())
    });
    assert!(
        states(&events).contains(&"resolved".to_owned()),
        "{events:?}"
    );
    assert!(
        wait_until(Duration::from_secs(10), || hook.got().len() == 2),
        "the webhook got the resolved notification"
    );
    // Exactly once per transition, even a while later.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(hook.kinds(), ["firing", "resolved"]);
}

#[test]
fn a_notification_pending_at_a_sigkill_is_delivered_once_after_the_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, HOT.replace("for = \"1s\"\n", "")).expect("rules");
    // The receiver is down (503) while the alert fires.
    let hook = Receiver::start(503);
    let mut hub = Hub::start(&dir.path().join("hub"), &config(&rules, hook.port));
    temp(&hub, "f1", 12.0);
    let firing = wait_until(Duration::from_secs(10), || {
        let (_, v) = hub.get_json("/v1/alerts?state=firing");
        v["items"].as_array().is_some_and(|a| a.len() == 1)
    });
    assert!(firing, "the alert fires");
    // Let the hub try (and fail) at least once.
    std::thread::sleep(Duration::from_millis(1500));
    hub.kill();
    assert!(hook.got().is_empty(), "nothing was delivered");

    hook.status.store(200, Ordering::SeqCst);
    hub.restart();
    assert!(
        wait_until(Duration::from_secs(15), || !hook.got().is_empty()),
        "delivered after the restart"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        hook.kinds(),
        ["firing"],
        "delivered once, and not fired again"
    );
    let (_, v) = hub.get_json("/v1/alerts?state=firing");
    assert_eq!(
        v["items"].as_array().map(Vec::len),
        Some(1),
        "still firing, once"
    );
}

#[test]
fn a_no_data_rule_fires_when_the_agent_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        r#"
[[rule]]
name = "silent"
device = "quiet-*"
condition = { no_data = "2s" }
severity = "minor"
"#,
    )
    .expect("rules");
    let hook = Receiver::start(200);
    let hub = Hub::start(&dir.path().join("hub"), &config(&rules, hook.port));
    let mut agent = Agent::start(
        &dir.path().join("agent"),
        "quiet-1",
        hub.mqtt_port,
        "[batch]\nmax_readings = 5\ninterval_ms = 100\n\n[[source]]\nkind = \"simulated\"\nmetric = \"temp\"\ninterval_ms = 100\nshape = \"sine\"\nbase = 20.0\namplitude = 1.0\nperiod_secs = 60\n",
    );
    let seen = wait_until(Duration::from_secs(15), || {
        let (_, v) = hub.get_json("/v1/latest?device=quiet-1");
        v["items"].as_array().is_some_and(|a| !a.is_empty())
    });
    assert!(seen, "the agent's readings arrive");
    // Reporting: nothing fires.
    std::thread::sleep(Duration::from_secs(3));
    let (_, v) = hub.get_json("/v1/alerts");
    assert_eq!(v["items"].as_array().map(Vec::len), Some(0), "{v}");

    agent.kill();
    let fired = wait_until(Duration::from_secs(15), || {
        let (_, v) = hub.get_json("/v1/alerts?state=firing");
        v["items"].as_array().is_some_and(|a| {
            a.iter()
                .any(|x| x["rule"] == "silent" && x["device"] == "quiet-1")
        })
    });
    assert!(fired, "no data for 2 s fires");
}

#[test]
fn a_bad_rules_file_keeps_the_rules_in_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, HOT).expect("rules");
    let hook = Receiver::start(200);
    let hub = Hub::start(&dir.path().join("hub"), &config(&rules, hook.port));
    let names = || {
        let (_, v) = hub.get_json("/v1/rules");
        v["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| r["name"].as_str().unwrap_or("").to_owned())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    assert_eq!(names(), ["hot"]);

    // A bad edit (clear value above the threshold) is refused at reload.
    std::fs::write(
        &rules,
        HOT.replace("clear_below = 8.0", "clear_below = 15.0")
            .replace("name = \"hot\"", "name = \"hotter\""),
    )
    .expect("rules");
    let logged = wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(hub.dir.join("hub-1.log"))
            .unwrap_or_default()
            .contains("condition.clear_below")
    });
    assert!(logged, "the log names the field");
    assert_eq!(names(), ["hot"], "the rules in force stay");
    // The rule still works.
    temp(&hub, "f1", 12.0);
    let pending = wait_until(Duration::from_secs(10), || {
        let (_, v) = hub.get_json("/v1/alerts");
        v["items"].as_array().is_some_and(|a| a.len() == 1)
    });
    assert!(pending, "the old rule still evaluates");

    // A good edit is taken.
    std::fs::write(&rules, HOT.replace("name = \"hot\"", "name = \"warm\"")).expect("rules");
    assert!(
        wait_until(Duration::from_secs(10), || names() == ["warm"]),
        "the good file is loaded"
    );
}
