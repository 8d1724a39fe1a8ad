//! The README's first command: `telltale-hub demo` stores readings from its
//! demo agents within seconds, and a reading published by hand with
//! mosquitto_pub.

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;
use telltale_tests::{bin, free_port, values, wait_until};

#[test]
fn demo_stores_agent_readings_and_a_hand_published_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("demo");
    let port = free_port();
    let http_port = free_port();
    let log = std::fs::File::create(dir.path().join("demo.log")).expect("log");
    let mut child = Command::new(bin("telltale-hub"))
        .arg("demo")
        .arg("--data-dir")
        .arg(&data)
        .arg("--mqtt-port")
        .arg(port.to_string())
        .arg("--http-port")
        .arg(http_port.to_string())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("demo starts");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    assert!(wait_until(Duration::from_secs(15), || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
    }));
    let db = data.join("hub.db");
    let reader = || telltale_store::Reader::open(&db).expect("reader");
    let flowing = wait_until(Duration::from_secs(15), || {
        values(&reader(), "demo-freezer", "temp").len() >= 2
            && !values(&reader(), "demo-greenhouse", "humidity").is_empty()
    });
    assert!(flowing, "demo readings did not arrive");
    let freezer = values(&reader(), "demo-freezer", "temp");
    assert!(
        freezer.iter().all(|(_, v)| (-30.0..-5.0).contains(v)),
        "{freezer:?}"
    );

    let ok = Command::new("mosquitto_pub")
        .args([
            "-p",
            &port.to_string(),
            "-t",
            "telltale/v1/devices/hand-1/telemetry",
        ])
        .args(["-m", r#"[{"n":"temp","u":"Cel","v":21.5}]"#])
        .status()
        .expect("mosquitto_pub runs");
    assert!(ok.success());
    assert!(wait_until(Duration::from_secs(10), || {
        values(&reader(), "hand-1", "temp")
            .iter()
            .any(|(_, v)| *v == 21.5)
    }));

    // The README's curl -N shows a live SSE stream.
    let sse = telltale_tests::CurlStream::start(
        &format!("http://127.0.0.1:{http_port}/v1/readings?watch=true&device=demo-freezer"),
        &["-H", "Accept: text/event-stream"],
    );
    let mut saw = Vec::new();
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < end && !saw.iter().any(|l: &String| l.starts_with("data: ")) {
        if let Some(l) = sse.next_line(Duration::from_millis(200)) {
            saw.push(l);
        }
    }
    assert!(saw.iter().any(|l| l == "event: added"), "{saw:?}");
    assert!(
        saw.iter()
            .any(|l| l.starts_with("data: ") && l.contains("demo-freezer")),
        "{saw:?}"
    );
    drop(sse);
    // Open (no token needed) on loopback, and it says so.
    let log = std::fs::read_to_string(dir.path().join("demo.log")).expect("log");
    assert!(
        log.contains("the HTTP API is OPEN") && log.contains("loopback only"),
        "{log}"
    );

    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let exited = wait_until(Duration::from_secs(15), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !exited {
        let _ = child.kill();
    }
    assert!(exited, "the demo stops on SIGTERM");
}
