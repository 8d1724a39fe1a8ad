//! Device identity over real MQTT: devices with certificates from the hub's
//! CA and passwords from `telltale-hub device add`, on the hub's TLS
//! listener, with mosquitto_pub and mosquitto_sub as a device would use
//! them. A wrong password is refused; a device cannot store readings as
//! another, cannot read another's commands, and a revoked device is
//! disconnected and cannot come back. Also the per-address connection cap.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use telltale_tests::{metric_in, mosquitto_pub_with, wait_until, DeviceCreds, Hub, MqttSub};

fn hub(dir: &std::path::Path) -> (Hub, DeviceCreds, DeviceCreds) {
    let mut hub = Hub::configure_tls(dir, "[store]\ncommit_interval_ms = 50\n", false);
    let a = hub.add_device("dev-a");
    let b = hub.add_device("dev-b");
    hub.launch();
    (hub, a, b)
}

/// The readings stored for `device`, as /v1/readings lists them.
fn readings(hub: &Hub, device: &str) -> Vec<serde_json::Value> {
    let (status, v) = hub.get_json(&format!("/v1/readings?device={device}"));
    assert_eq!(status, 200, "{v}");
    v["items"].as_array().cloned().unwrap_or_default()
}

/// Waits (up to 10 s) until exactly `n` readings of `device` are stored.
fn stored(hub: &Hub, device: &str, n: usize) -> bool {
    wait_until(Duration::from_secs(10), || readings(hub, device).len() == n)
}

/// The rejects counted for `reason` on /metrics.
fn rejects(hub: &Hub, reason: &str) -> u64 {
    let (_, text) = hub.get("/metrics");
    metric_in(
        &text,
        &format!("telltale_rejects_total{{reason=\"{reason}\"}}"),
    )
    .map_or(0, |v| v as u64)
}

#[test]
fn a_wrong_password_is_refused_and_audited_without_the_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (hub, a, b) = hub(dir.path());
    let port = hub.mqtts_port.expect("tls port");
    let topic = a.topic("dev-a", "telemetry");
    let pack = r#"[{"n":"temp","v":1}]"#;
    assert!(
        !mosquitto_pub_with(
            &a.mosquitto_args_as(port, "dev-a", "not-the-password"),
            &topic,
            pack
        ),
        "a wrong password is refused"
    );
    assert!(
        !mosquitto_pub_with(
            &a.mosquitto_args_as(port, "dev-a", &b.password),
            &topic,
            pack
        ),
        "another device's password is refused"
    );
    // The right one works, and the reading is stored as the device.
    assert!(mosquitto_pub_with(&a.mosquitto_args(port), &topic, pack));
    assert!(stored(&hub, "dev-a", 1));
    let log = hub.log();
    assert!(
        log.contains("mqtt login refused") && log.contains("wrong password"),
        "audit lines: {log}"
    );
    assert!(!log.contains(&b.password), "a password in the log");
    assert!(!log.contains(&a.password), "a password in the log");
}

#[test]
fn a_device_cannot_store_readings_as_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (hub, a, b) = hub(dir.path());
    let port = hub.mqtts_port.expect("tls port");
    let pack = r#"[{"n":"temp","v":66.6}]"#;
    // Under its own tenant, naming B: the broker lets it through, the hub
    // refuses it (device_mismatch).
    assert!(mosquitto_pub_with(
        &a.mosquitto_args(port),
        &a.topic("dev-b", "telemetry"),
        pack
    ));
    // The plain topic form and B's tenant: the broker refuses them (and
    // drops A's connection).
    let plain = "telltale/v1/devices/dev-b/telemetry";
    assert!(!mosquitto_pub_with(&a.mosquitto_args(port), plain, pack));
    assert!(!mosquitto_pub_with(
        &a.mosquitto_args(port),
        &b.topic("dev-b", "telemetry"),
        pack
    ));
    // The plain listener (open, loopback) cannot write as a device that
    // has credentials either (tenant_required).
    let open = vec![
        "-h".to_owned(),
        "127.0.0.1".into(),
        "-p".into(),
        hub.mqtt_port.to_string(),
    ];
    assert!(mosquitto_pub_with(&open, plain, pack));
    // A's own reading after them: once it is stored, the earlier ones were
    // handled.
    assert!(mosquitto_pub_with(
        &a.mosquitto_args(port),
        &a.topic("dev-a", "telemetry"),
        r#"[{"n":"temp","v":1}]"#
    ));
    assert!(stored(&hub, "dev-a", 1));
    assert!(wait_until(Duration::from_secs(5), || rejects(
        &hub,
        "tenant_required"
    ) == 1));
    assert_eq!(readings(&hub, "dev-b"), Vec::<serde_json::Value>::new());
    assert_eq!(rejects(&hub, "device_mismatch"), 1);
    // B itself still can.
    assert!(mosquitto_pub_with(
        &b.mosquitto_args(port),
        &b.topic("dev-b", "telemetry"),
        pack
    ));
    assert!(stored(&hub, "dev-b", 1));
}

#[test]
fn a_device_cannot_read_another_devices_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (hub, a, b) = hub(dir.path());
    let port = hub.mqtts_port.expect("tls port");
    // B is known to the hub (a reading) and listens for its commands.
    assert!(mosquitto_pub_with(
        &b.mosquitto_args(port),
        &b.topic("dev-b", "telemetry"),
        r#"[{"n":"temp","v":20}]"#
    ));
    assert!(stored(&hub, "dev-b", 1));
    let mut b_sub = MqttSub::start(&b.mosquitto_args(port), &[&b.topic("dev-b", "cmd")]);

    // A subscribing to everything, to B's plain topic or to B's tenant is
    // dropped by the broker at once (each attempt takes A's client id, so
    // one at a time).
    for filter in [
        "#".to_owned(),
        "telltale/v1/devices/dev-b/cmd".to_owned(),
        b.topic("dev-b", "cmd"),
        "/tenants/+/telltale/v1/devices/+/cmd".to_owned(),
    ] {
        let mut s = MqttSub::start(&a.mosquitto_args(port), &[&filter]);
        assert!(
            s.exited_within(Duration::from_secs(5)),
            "subscribing to {filter} must end the connection"
        );
        assert_eq!(s.lines(Duration::ZERO), &[] as &[String], "{filter}");
    }
    // A's own tenant, B's id in it, and all of A's tenant: allowed, but the
    // hub never publishes B's commands there.
    let mut a_sub = MqttSub::start(
        &a.mosquitto_args(port),
        &[&a.topic("dev-b", "cmd"), &format!("{}/#", a.prefix())],
    );
    std::thread::sleep(Duration::from_millis(500));

    let (status, body) = hub.post_json("/v1/devices/dev-b/commands", r#"{"name":"ping"}"#);
    assert_eq!(status, 201, "{body}");
    assert!(
        b_sub.wait_for("\"ping\"", Duration::from_secs(10)),
        "B receives its command: {:?}",
        b_sub.lines(Duration::ZERO)
    );
    assert!(
        b_sub.lines(Duration::ZERO)[0].starts_with(&b.topic("dev-b", "cmd")),
        "under B's tenant"
    );
    assert_eq!(
        a_sub.lines(Duration::from_secs(1)),
        &[] as &[String],
        "A receives none of B's commands"
    );
}

#[test]
fn a_revoked_device_is_disconnected_and_cannot_reconnect() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (hub, a, b) = hub(dir.path());
    let port = hub.mqtts_port.expect("tls port");
    // B is known to the hub (a reading), then stays connected.
    assert!(mosquitto_pub_with(
        &b.mosquitto_args(port),
        &b.topic("dev-b", "telemetry"),
        r#"[{"n":"temp","v":20}]"#
    ));
    let mut b_sub = MqttSub::start(&b.mosquitto_args(port), &[&b.topic("dev-b", "cmd")]);
    let mut a_sub = MqttSub::start(&a.mosquitto_args(port), &[&a.topic("dev-a", "cmd")]);
    assert!(!b_sub.exited_within(Duration::from_secs(1)), "B connected");

    let out = hub.cli(&["device", "revoke", "dev-b"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        b_sub.exited_within(Duration::from_secs(5)),
        "the revoked device is disconnected within seconds"
    );
    assert!(
        !mosquitto_pub_with(
            &b.mosquitto_args(port),
            &b.topic("dev-b", "telemetry"),
            r#"[{"n":"temp","v":21}]"#
        ),
        "its reconnect is refused"
    );
    assert!(
        !a_sub.exited_within(Duration::from_millis(300)),
        "A stays connected"
    );
    let log = hub.log();
    assert!(log.contains("device disconnected"), "{log}");
    assert!(log.contains("no live credentials"), "{log}");
    // The hub shows it offline.
    assert!(wait_until(Duration::from_secs(5), || {
        let (_, v) = hub.get_json("/v1/devices");
        v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d["id"] == "dev-b" && d["online"] == false)
    }));
    assert_eq!(readings(&hub, "dev-b").len(), 1, "only the reading before");
}

#[test]
fn mqtt_connections_over_the_per_address_cap_are_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A long CONNECT timeout, so the connections under the cap stay open
    // while they are counted.
    let hub = Hub::start(
        dir.path(),
        "[store]\ncommit_interval_ms = 50\n[broker]\nmax_connections_per_ip = 400\nconnect_timeout_ms = 20000\n",
    );
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], hub.mqtt_port));
    let mut conns: Vec<TcpStream> = (0..500)
        .map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect"))
        .collect();
    // Those over the cap are closed at once; the others wait for CONNECT.
    let mut closed = 0;
    assert!(wait_until(Duration::from_secs(10), || {
        closed = 0;
        for c in &mut conns {
            c.set_nonblocking(true).expect("nonblocking");
            let mut b = [0u8; 1];
            match c.read(&mut b) {
                Ok(0) => closed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => closed += 1,
                _ => {}
            }
        }
        closed == 100
    }));
    assert_eq!(closed, 100, "exactly those over the cap");
    // A new one from the same address is refused while they are open ...
    let mut extra = TcpStream::connect(addr).expect("connect");
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut b = [0u8; 1];
    assert!(matches!(extra.read(&mut b), Ok(0) | Err(_)), "closed");
    let _ = extra.write_all(b"x");
    drop(conns);
    // ... and taken once they are closed: the hub kept serving.
    assert!(wait_until(Duration::from_secs(10), || {
        let args = vec![
            "-h".to_owned(),
            "127.0.0.1".into(),
            "-p".into(),
            hub.mqtt_port.to_string(),
        ];
        mosquitto_pub_with(
            &args,
            "telltale/v1/devices/capped/telemetry",
            r#"[{"n":"t","v":1}]"#,
        )
    }));
    assert!(stored(&hub, "capped", 1));
    let (_, metrics) = hub.get("/metrics");
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("telltale_mqtt_connections_refused_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the refusals are counted");
    assert!(refused >= 101, "{refused}");
}
