//! The `telltale` client against the real hub: the devices and latest
//! tables, a watch as a child process (and its resume across a hub restart:
//! nothing missed, nothing twice), commands refused and answered by a real
//! agent, an alert acknowledged.

use serde_json::Value;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use telltale_tests::{bin, mosquitto_pub, wait_until, Agent, Hub, CLIENT};

/// Fast commits; a rule that fires at once on a temp above 10.
fn config(rules: &Path) -> String {
    std::fs::write(
        rules,
        "[[rule]]\nname = \"hot\"\nmetric = \"temp\"\ncondition = { above = 10.0 }\nseverity = \"major\"\nsummary = \"too hot\"\n",
    )
    .expect("rules file");
    format!(
        "[store]\ncommit_interval_ms = 50\n[alerts]\nrules_file = \"{}\"\n",
        rules.display()
    )
}

/// `telltale --hub <hub> ARGS`, to its end.
fn client(hub: &Hub, args: &[&str]) -> Output {
    Command::new(bin(CLIENT))
        .args(["--hub", &hub.url("")])
        .args(args)
        .env_remove("TELLTALE_HUB")
        .output()
        .expect("client runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn temp(hub: &Hub, device: &str, v: f64) {
    mosquitto_pub(
        hub.mqtt_port,
        device,
        &format!(r#"[{{"n":"temp","u":"Cel","v":{v}}}]"#),
    );
}

/// A long-running client (a watch): its stdout and stderr lines as they
/// come. Dropping it kills it.
struct Running {
    child: Child,
    out: mpsc::Receiver<String>,
    err: mpsc::Receiver<String>,
}

impl Running {
    fn start(hub: &Hub, args: &[&str]) -> Running {
        let mut child = Command::new(bin(CLIENT))
            .args(["--hub", &hub.url("")])
            .args(args)
            .env_remove("TELLTALE_HUB")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("client runs");
        let lines = |r: Box<dyn std::io::Read + Send>| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(r).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        };
        let out = lines(Box::new(child.stdout.take().expect("stdout")));
        let err = lines(Box::new(child.stderr.take().expect("stderr")));
        Running { child, out, err }
    }

    /// Waits for a stderr line that contains `what`; panics after `timeout`.
    fn note(&self, what: &str, timeout: Duration) -> String {
        let end = Instant::now() + timeout;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.err.recv_timeout(left) {
                Ok(line) if line.contains(what) => return line,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("no {what:?} on the client's stderr");
    }

    /// The stdout lines that come within `timeout`, until `stop` says
    /// enough.
    fn lines_until(&self, timeout: Duration, stop: impl Fn(&[String]) -> bool) -> Vec<String> {
        let end = Instant::now() + timeout;
        let mut got = Vec::new();
        while !stop(&got) {
            let Some(left) = end.checked_duration_since(Instant::now()) else {
                break;
            };
            match self.out.recv_timeout(left) {
                Ok(line) => got.push(line),
                Err(_) => break,
            }
        }
        got
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn devices_latest_watch_ack_and_a_refused_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::start(
        &dir.path().join("hub"),
        &config(&dir.path().join("rules.toml")),
    );
    temp(&hub, "c1", 5.5);
    assert!(wait_until(Duration::from_secs(10), || {
        hub.get_json("/v1/latest?device=c1").1["items"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    }));

    // devices: a table that lists c1 (it sent no status: presence unknown).
    let o = client(&hub, &["devices"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let table = text(&o.stdout);
    assert!(table.starts_with("DEVICE"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("c1 ") && l.contains("unknown")),
        "{table}"
    );
    let o = client(&hub, &["devices", "--json"]);
    let list: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(list["kind"], "DeviceList");
    assert_eq!(list["items"][0]["id"], "c1");

    // latest: device, metric, value and unit.
    let o = client(&hub, &["latest", "--device", "c1"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let table = text(&o.stdout);
    let row = table.lines().nth(1).unwrap_or_default();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[..4], ["c1", "temp", "5.5", "Cel"], "{table}");
    let o = client(&hub, &["latest", "--device", "nobody"]);
    assert_eq!(text(&o.stdout).trim(), "no values");

    // watch: a child process; two readings arrive as two ADDED lines.
    let watch = Running::start(&hub, &["watch", "readings", "--device", "c1", "--json"]);
    watch.note("watching readings after", Duration::from_secs(10));
    temp(&hub, "other", 1.0);
    temp(&hub, "c1", 6.5);
    temp(&hub, "c1", 7.5);
    let added = |lines: &[String]| -> Vec<Value> {
        lines
            .iter()
            .map(|l| serde_json::from_str::<Value>(l).expect("one JSON event a line"))
            .filter(|e| e["type"] == "ADDED")
            .collect()
    };
    let lines = watch.lines_until(Duration::from_secs(15), |l| added(l).len() >= 2);
    let values: Vec<(Value, Value)> = added(&lines)
        .iter()
        .map(|e| (e["object"]["device"].clone(), e["object"]["value"].clone()))
        .collect();
    assert_eq!(
        values,
        [("c1".into(), 6.5.into()), ("c1".into(), 7.5.into())],
        "{lines:?}"
    );
    drop(watch);

    // A bad filter is the hub's 400, printed, exit 2.
    let o = client(&hub, &["watch", "readings", "--filter", "value >"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("parameter filter"),
        "{}",
        text(&o.stderr)
    );

    // command: an unknown device is refused, exit 2.
    let o = client(&hub, &["command", "nosuch", "ping"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stdout));
    let err = text(&o.stderr);
    assert!(
        err.contains("nosuch") && err.contains("has not heard from it"),
        "{err}"
    );

    // ack: a reading above the rule's 10 opens an alert.
    temp(&hub, "c1", 20.0);
    assert!(wait_until(Duration::from_secs(10), || {
        hub.get_json("/v1/alerts").1["items"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["state"] == "firing"))
    }));
    let id = hub.get_json("/v1/alerts").1["items"][0]["id"]
        .as_u64()
        .expect("alert id");
    let o = client(
        &hub,
        &["ack", &id.to_string(), "--by", "tester", "--note", "on it"],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let said = text(&o.stdout);
    assert!(
        said.starts_with(&format!("alert {id} acknowledged by tester")) && said.contains("too hot"),
        "{said}"
    );
    assert_eq!(
        hub.get_json(&format!("/v1/alerts/{id}")).1["ack"]["note"],
        "on it"
    );
    let o = client(&hub, &["ack", "999"]);
    assert_eq!(o.status.code(), Some(2));

    // A hub that is not there: exit 3, said plainly.
    let o = Command::new(bin(CLIENT))
        .args(["--hub", "http://127.0.0.1:1", "devices"])
        .output()
        .expect("client runs");
    assert_eq!(o.status.code(), Some(3));
    assert!(text(&o.stderr).contains("cannot reach the hub at http://127.0.0.1:1"));
}

#[test]
fn a_watch_resumes_across_a_hub_restart_without_missing_or_repeating() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut hub = Hub::start(
        &dir.path().join("hub"),
        &config(&dir.path().join("rules.toml")),
    );
    let watch = Running::start(&hub, &["watch", "readings", "--device", "r1"]);
    watch.note("watching readings after", Duration::from_secs(10));
    temp(&hub, "r1", 1.5);
    // Human lines: `HH:MM:SS.mmm ADDED r1 temp 1.5 Cel`.
    let ends = |lines: &[String], v: &str| {
        lines
            .iter()
            .any(|l| l.ends_with(&format!(" ADDED r1 temp {v} Cel")))
    };
    let mut lines = watch.lines_until(Duration::from_secs(10), |l| ends(l, "1.5"));
    assert!(ends(&lines, "1.5"), "{lines:?}");
    // Committed before the kill, so the resume point is durable.
    assert!(wait_until(Duration::from_secs(10), || {
        hub.get_json("/v1/readings?device=r1").1["items"]
            .as_array()
            .is_some_and(|a| a.len() == 1)
    }));

    hub.restart();
    // Published while the client is still away: it must come on resume.
    temp(&hub, "r1", 2.5);
    watch.note("reconnected; resuming after", Duration::from_secs(20));
    temp(&hub, "r1", 3.5);
    lines.extend(watch.lines_until(Duration::from_secs(15), |l| ends(l, "3.5")));
    // Anything repeated would come right after the resume.
    lines.extend(watch.lines_until(Duration::from_secs(1), |_| false));
    let values: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split_whitespace().nth(4))
        .collect();
    assert_eq!(values, ["1.5", "2.5", "3.5"], "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|l| l.len() > 13 && l.as_bytes()[2] == b':' && l.as_bytes()[8] == b'.'),
        "each line starts with the time of day: {lines:?}"
    );
}

#[test]
fn a_command_round_trip_through_a_real_agent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::start(
        &dir.path().join("hub"),
        &config(&dir.path().join("rules.toml")),
    );
    let _agent = Agent::start(
        &dir.path().join("agent"),
        "a1",
        hub.mqtt_port,
        "[[source]]\nkind = \"simulated\"\nmetric = \"temp\"\ninterval_ms = 1000\n",
    );
    assert!(wait_until(Duration::from_secs(20), || {
        hub.get_json("/v1/devices/a1").1["online"] == true
    }));

    let o = client(&hub, &["command", "a1", "ping", "--timeout", "10"]);
    let said = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{said}{}", text(&o.stderr));
    let states: Vec<&str> = said
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .take(4)
        .collect();
    assert_eq!(
        states,
        ["queued", "sent", "delivered", "succeeded"],
        "{said}"
    );
    assert!(said.contains("\"pong\": true"), "{said}");

    // A command the agent does not know: failed, with its reason, exit 1.
    let o = client(&hub, &["command", "a1", "frobnicate", "--param", "x=1"]);
    let said = text(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{said}{}", text(&o.stderr));
    assert!(
        said.contains(" failed") && said.contains("reason: "),
        "{said}"
    );

    // --no-wait: the queued command, exit 0.
    let o = client(&hub, &["command", "a1", "ping", "--no-wait"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(text(&o.stdout)
        .lines()
        .nth(1)
        .is_some_and(|l| l.ends_with(" queued")));

    // A bad request body: the hub names the field, exit 2.
    let o = client(&hub, &["command", "a1", "ping", "--timeout", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("field timeoutSeconds"),
        "{}",
        text(&o.stderr)
    );
}
