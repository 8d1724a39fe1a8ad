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
