//! The hub under a service manager (systemd's `Type=notify` protocol, with
//! a notify socket this test owns): `READY=1` only once the HTTP port
//! accepts connections, `WATCHDOG=1` while it runs, `STOPPING=1` at SIGTERM.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};
use telltale_tests::Hub;

fn recv(sock: &UnixDatagram) -> Option<String> {
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn ready_comes_after_the_http_port_accepts_then_the_watchdog_is_fed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let path_text = path.display().to_string();
    let mut hub = Hub::start_env(
        &dir.path().join("hub"),
        "",
        &[
            ("NOTIFY_SOCKET", &path_text),
            ("WATCHDOG_USEC", "400000"),
            ("WATCHDOG_PID", "self"),
        ],
    );

    // The first message is READY=1, and at that moment the API answers.
    let first = recv(&sock).expect("a notification");
    assert!(first.contains("READY=1"), "{first:?}");
    let addr = SocketAddr::from(([127, 0, 0, 1], hub.http_port));
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok(),
        "READY=1 before the HTTP port accepted connections"
    );
    assert_eq!(hub.get("/healthz").0, 200);

    // The watchdog (0.4 s) is fed every 0.2 s.
    let t0 = Instant::now();
    let mut pings = 0;
    while pings < 3 && t0.elapsed() < Duration::from_secs(5) {
        if recv(&sock).is_some_and(|m| m.contains("WATCHDOG=1")) {
            pings += 1;
        }
    }
    assert_eq!(pings, 3, "watchdog pings");

    // SIGTERM: STOPPING=1, then a clean exit within the stop timeout.
    assert!(
        hub.terminate(Duration::from_secs(30)),
        "the hub stops in time"
    );
    let mut stopping = false;
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    while let Some(m) = recv(&sock) {
        stopping |= m.contains("STOPPING=1");
    }
    assert!(stopping, "STOPPING=1 at SIGTERM");
}

/// The first line a binary logs to stderr, `JOURNAL_STREAM` set or not.
fn first_log_line(bin: &str, config: &std::path::Path, journal: bool) -> String {
    use std::io::BufRead;
    let mut cmd = std::process::Command::new(telltale_tests::bin(bin));
    cmd.args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .env_remove("JOURNAL_STREAM")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    if journal {
        // What systemd sets when stderr is the journal: device:inode.
        cmd.env("JOURNAL_STREAM", "8:12345");
    }
    let mut child = cmd.spawn().expect("starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stderr.take().expect("stderr"))
        .read_line(&mut line)
        .expect("a log line");
    let _ = child.kill();
    let _ = child.wait();
    line
}

#[test]
fn under_journald_log_lines_carry_no_time_stamp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = dir.path().join("hub.toml");
    std::fs::write(
        &hub,
        format!(
            "data_dir = \"{}\"\n[broker]\nlisten = \"127.0.0.1:0\"\n[api]\nlisten = \"127.0.0.1:0\"\n",
            dir.path().join("data").display()
        ),
    )
    .expect("hub config");
    let agent = dir.path().join("agent.toml");
    std::fs::write(
        &agent,
        format!(
            "device_id = \"journal-1\"\ndata_dir = \"{}\"\n[mqtt]\nport = {}\n",
            dir.path().join("agent").display(),
            telltale_tests::free_port()
        ),
    )
    .expect("agent config");
    for (bin, config) in [("telltale-hub", &hub), ("telltale-agent", &agent)] {
        let stamped = first_log_line(bin, config, false);
        let level = |word: Option<&str>| {
            word.is_some_and(|w| ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&w))
        };
        // `2026-11-29T08:51:45.123456Z  INFO telltale_hub: ...`
        let mut words = stamped.split_whitespace();
        assert!(
            words.next().is_some_and(|w| w.starts_with("20")) && level(words.next()),
            "{bin} outside journald: {stamped:?}"
        );
        // ` INFO telltale_hub: ...`
        let bare = first_log_line(bin, config, true);
        assert!(
            level(bare.split_whitespace().next()),
            "{bin} under journald: {bare:?}"
        );
    }
}
