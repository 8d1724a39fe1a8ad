//! TLS with the hub's own CA (`telltale-hub tls init`), as a user would
//! talk to it: curl with `--cacert` over HTTPS (and the certificate read
//! again on SIGHUP), mosquitto with the CA and a device certificate over
//! MQTT/TLS, the real agent with the config `device add` printed, and a
//! client certificate from another CA refused.

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use telltale_tests::{curl, mosquitto_pub_with, wait_until, Agent, DeviceCreds, Hub, MqttSub};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8")
}

#[test]
fn curl_with_the_ca_talks_https_and_sighup_serves_a_new_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut hub = Hub::configure_tls(dir.path(), "", true);
    hub.launch();
    let ca = hub.ca();
    let url = hub.url("/healthz");
    let (status, body) = curl(&url, &["--cacert", s(&ca)]);
    assert_eq!((status, body.trim()), (200, "ok"));
    // Without the CA curl does not trust it; plain HTTP gets no answer.
    assert_eq!(curl(&url, &[]).0, 0);
    let plain = format!("http://127.0.0.1:{}/healthz", hub.http_port);
    assert_eq!(curl(&plain, &[]).0, 0);
    // The API answers over HTTPS like over HTTP, and the WebSocket
    // upgrades over it (WSS).
    let (status, _) = hub.get_json("/v1/readings");
    assert_eq!(status, 200);
    let (status, _) = curl(
        &hub.url("/v1/ws"),
        &[
            "--cacert",
            s(&ca),
            "--http1.1",
            "--max-time",
            "2",
            "-H",
            "Connection: Upgrade",
            "-H",
            "Upgrade: websocket",
            "-H",
            "Sec-WebSocket-Version: 13",
            "-H",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        ],
    );
    assert_eq!(status, 101, "wss upgrade");

    // A new pair from another CA replaces the files; it is served only
    // after SIGHUP.
    let other = dir.path().join("other");
    let out = hub.cli(&["tls", "init", "--dir", s(&other)]);
    assert!(out.status.success(), "{out:?}");
    let tls = dir.path().join("data").join("tls");
    for f in ["server.pem", "server.key"] {
        std::fs::copy(other.join(f), tls.join(f)).expect("copy");
    }
    let other_ca = other.join("ca.pem");
    assert_eq!(
        curl(&url, &["--cacert", s(&other_ca)]).0,
        0,
        "not before SIGHUP"
    );
    hub.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(5), || curl(
            &url,
            &["--cacert", s(&other_ca)]
        )
        .0 == 200),
        "the new certificate after SIGHUP"
    );
    assert_eq!(
        curl(&url, &["--cacert", s(&ca)]).0,
        0,
        "the old one is gone"
    );
    assert!(hub.log().contains("certificate reloaded"));
    // A broken file at the next SIGHUP keeps the certificate in use.
    std::fs::write(tls.join("server.pem"), "not a certificate").expect("write");
    hub.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(wait_until(Duration::from_secs(5), || hub
        .log()
        .contains("certificate not reloaded")));
    assert_eq!(curl(&url, &["--cacert", s(&other_ca)]).0, 200);
    assert!(hub.is_running());
}

#[test]
fn mosquitto_with_the_ca_and_a_device_certificate_talks_mqtt_over_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut hub = Hub::configure_tls(dir.path(), "[store]\ncommit_interval_ms = 50\n", false);
    let d = hub.add_device("boiler-1");
    hub.launch();
    let port = hub.mqtts_port.expect("tls port");
    let pack = r#"[{"n":"temp","v":61.5}]"#;
    assert!(mosquitto_pub_with(
        &d.mosquitto_args(port),
        &d.topic("boiler-1", "telemetry"),
        pack
    ));
    assert!(wait_until(Duration::from_secs(10), || {
        let (_, v) = hub.get_json("/v1/readings?device=boiler-1");
        v["items"].as_array().is_some_and(|a| a.len() == 1)
    }));
    let (_, v) = hub.get_json("/v1/latest?device=boiler-1");
    assert_eq!(v["items"][0]["value"], 61.5, "{v}");
    // mosquitto_sub over TLS gets the device's command.
    let mut sub = MqttSub::start(&d.mosquitto_args(port), &[&d.topic("boiler-1", "cmd")]);
    std::thread::sleep(Duration::from_millis(300));
    let (status, body) = hub.post_json("/v1/devices/boiler-1/commands", r#"{"name":"ping"}"#);
    assert_eq!(status, 201, "{body}");
    assert!(sub.wait_for("\"ping\"", Duration::from_secs(10)));
}

#[test]
fn the_agent_sends_over_tls_with_the_config_device_add_prints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut hub = Hub::configure_tls(dir.path(), "[store]\ncommit_interval_ms = 50\n", false);
    let d = hub.add_device("gw-1");
    hub.launch();
    let port = hub.mqtts_port.expect("tls port");
    // The [mqtt] keys `device add` printed, with the files where the test
    // keeps them.
    let snippet = d.snippet.split_once("[mqtt]\n").expect("snippet").1;
    let mut mqtt = String::new();
    for line in snippet.lines() {
        let key = line.split(" = ").next().unwrap_or("");
        match key {
            "host" | "port" => {} // the harness sets them (127.0.0.1 is in the certificate)
            "ca" => mqtt.push_str(&format!("ca = \"{}\"\n", s(&d.ca))),
            "cert" => mqtt.push_str(&format!("cert = \"{}\"\n", s(&d.cert))),
            "key" => mqtt.push_str(&format!("key = \"{}\"\n", s(&d.key))),
            _ if line.contains(" = ") => mqtt.push_str(&format!("{line}\n")),
            _ => {}
        }
    }
    assert!(
        mqtt.contains(&format!("topic_prefix = \"{}\"", d.prefix())),
        "{mqtt}"
    );
    let body = format!(
        "{mqtt}\n[batch]\nmax_readings = 5\ninterval_ms = 100\n\n[outbox]\nack_timeout_ms = 1000\n\n[[source]]\nkind = \"simulated\"\nmetric = \"temp\"\ninterval_ms = 50\n"
    );
    let agent_dir = dir.path().join("agent");
    let _agent = Agent::start(&agent_dir, "gw-1", port, &body);
    assert!(
        wait_until(Duration::from_secs(20), || {
            let (_, v) = hub.get_json("/v1/readings?device=gw-1");
            v["items"].as_array().is_some_and(|a| a.len() >= 10)
        }),
        "readings from the agent over TLS; hub log: {}",
        hub.log()
    );
    // Acked: the agent's outbox empties (its acks come under its tenant),
    // and the device is online (its birth, under its tenant).
    assert!(wait_until(Duration::from_secs(10), || {
        let (_, v) = hub.get_json("/v1/devices");
        v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|x| x["id"] == "gw-1" && x["online"] == true)
    }));
    // Its acks come under its tenant: the agent never waits past its ack
    // timeout (1 s) to resend.
    std::thread::sleep(Duration::from_secs(3));
    let log = std::fs::read_to_string(agent_dir.join("agent-1.log")).expect("agent log");
    assert!(log.contains("birth published"), "{log}");
    assert!(!log.contains("no ack progress"), "{log}");
}

#[test]
fn a_client_certificate_from_another_ca_or_none_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut hub = Hub::configure_tls(dir.path(), "[store]\ncommit_interval_ms = 50\n", false);
    let d = hub.add_device("dev-a");
    hub.launch();
    let port = hub.mqtts_port.expect("tls port");
    // A CA of its own, and a certificate for the same device and tenant.
    let f = dir.path().join("foreign");
    std::fs::create_dir_all(&f).expect("dir");
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&f)
            .output()
            .expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=Telltale hub CA",
            ],
        ]
        .concat(),
    );
    let subj = format!("/CN=dev-a/O={}", d.tenant);
    openssl(
        &[
            &["req"][..],
            &ec,
            &["-keyout", "dev.key", "-out", "dev.csr", "-subj", &subj],
        ]
        .concat(),
    );
    openssl(&[
        "x509",
        "-req",
        "-in",
        "dev.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "dev.pem",
        "-days",
        "2",
    ]);
    let mut foreign = d.clone();
    foreign.cert = f.join("dev.pem");
    foreign.key = f.join("dev.key");
    let topic = d.topic("dev-a", "telemetry");
    let pack = r#"[{"n":"temp","v":1}]"#;
    assert!(
        !mosquitto_pub_with(&foreign.mosquitto_args(port), &topic, pack),
        "a certificate from another CA is refused, even with the right password"
    );
    // No client certificate at all.
    let mut args = d.mosquitto_args(port);
    let at = args.iter().position(|a| a == "--cert").expect("--cert");
    args.drain(at..at + 4);
    assert!(
        !mosquitto_pub_with(&args, &topic, pack),
        "no certificate is refused"
    );
    // Not TLS at all.
    let mut args = d.mosquitto_args(port);
    let at = args.iter().position(|a| a == "--cafile").expect("--cafile");
    args.drain(at..at + 6);
    assert!(
        !mosquitto_pub_with(&args, &topic, pack),
        "plain MQTT on the TLS port"
    );
    // The device's own certificate works, and only its reading is stored.
    assert!(mosquitto_pub_with(&d.mosquitto_args(port), &topic, pack));
    assert!(wait_until(Duration::from_secs(10), || {
        let (_, v) = hub.get_json("/v1/readings?device=dev-a");
        v["items"].as_array().is_some_and(|a| !a.is_empty())
    }));
    std::thread::sleep(Duration::from_millis(300));
    let (_, v) = hub.get_json("/v1/readings?device=dev-a");
    assert_eq!(v["items"].as_array().map(Vec::len), Some(1));
    assert!(hub.is_running());
}

#[test]
fn a_tls_client_that_stalls_is_cut_and_holds_up_no_one() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut hub = Hub::configure_tls(
        dir.path(),
        "[store]\ncommit_interval_ms = 50\n[broker]\nconnect_timeout_ms = 1500\n",
        false,
    );
    let d = hub.add_device("dev-a");
    hub.launch();
    let port = hub.mqtts_port.expect("tls port");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    // One connection says nothing; another starts a ClientHello and stops;
    // a third sends a whole ClientHello, gets the server's answer, and
    // stops there (rumqttd is then in its handshake with it).
    let mut silent = std::net::TcpStream::connect(addr).expect("connect");
    let mut partial = std::net::TcpStream::connect(addr).expect("connect");
    partial
        .write_all(&[22, 3, 1, 0x02, 0x00, 1, 0, 1])
        .expect("a record header and a few bytes");
    let mut stalled = std::net::TcpStream::connect(addr).expect("connect");
    stalled.write_all(&client_hello()).expect("hello");
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut first = [0u8; 5];
    stalled.read_exact(&mut first).expect("the server answers");
    assert_eq!(first[0], 22, "a ServerHello record");
    // Meanwhile a device connects and publishes.
    let t0 = std::time::Instant::now();
    assert!(mosquitto_pub_with(
        &d.mosquitto_args(port),
        &d.topic("dev-a", "telemetry"),
        r#"[{"n":"temp","v":1}]"#
    ));
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    // The stalled connections are closed by the hub.
    for s in [&mut silent, &mut partial, &mut stalled] {
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut b = [0u8; 64];
        let closed = loop {
            match s.read(&mut b) {
                Ok(0) => break true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
                Err(_) => break false,
            }
        };
        assert!(closed, "a stalled TLS connection is closed");
    }
    let (_, metrics) = hub.get("/metrics");
    let cut: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("telltale_mqtt_tls_handshake_timeouts_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("counted");
    assert!(cut >= 3, "{cut}");
}

/// A minimal TLS 1.3 ClientHello: TLS_AES_128_GCM_SHA256, an X25519 key
/// share, ECDSA P-256 signatures (the hub's certificates).
fn client_hello() -> Vec<u8> {
    let ext = |ty: u16, data: &[u8]| {
        let mut v = ty.to_be_bytes().to_vec();
        v.extend_from_slice(&u16::try_from(data.len()).expect("len").to_be_bytes());
        v.extend_from_slice(data);
        v
    };
    let mut share = vec![0x00, 0x24, 0x00, 0x1d, 0x00, 0x20];
    share.extend((1..=32u8).map(|b| b.wrapping_mul(37)));
    let mut exts = Vec::new();
    exts.extend(ext(0x002b, &[0x02, 0x03, 0x04])); // supported_versions: TLS 1.3
    exts.extend(ext(0x000a, &[0x00, 0x02, 0x00, 0x1d])); // supported_groups: x25519
    exts.extend(ext(0x000d, &[0x00, 0x02, 0x04, 0x03])); // signature_algorithms
    exts.extend(ext(0x0033, &share)); // key_share
    let mut body = vec![0x03, 0x03];
    body.extend([0x5au8; 32]); // random
    body.push(0); // session id
    body.extend([0x00, 0x02, 0x13, 0x01]); // cipher suites
    body.extend([0x01, 0x00]); // compression: null
    body.extend(u16::try_from(exts.len()).expect("len").to_be_bytes());
    body.extend(exts);
    let mut hs = vec![0x01, 0x00];
    hs.extend(u16::try_from(body.len()).expect("len").to_be_bytes());
    hs.extend(body);
    let mut rec = vec![22, 3, 1];
    rec.extend(u16::try_from(hs.len()).expect("len").to_be_bytes());
    rec.extend(hs);
    rec
}

#[test]
fn a_device_credential_from_the_admin_api_comes_with_a_certificate_that_talks_mqtt_over_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut hub = Hub::configure_tls(dir.path(), "[store]\ncommit_interval_ms = 50\n", false);
    // The CLI made the CA (and one device); the API makes the next one.
    let cli = hub.add_device("boiler-1");
    hub.launch();
    let port = hub.mqtts_port.expect("tls port");
    let (status, body) = hub.post_json("/v1/device-credentials", r#"{"device":"api-dev"}"#);
    assert_eq!(status, 201, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let files = dir.path().join("api-dev");
    std::fs::create_dir_all(&files).expect("mkdir");
    let write = |name: &str, field: &str| {
        let path = files.join(name);
        let pem = v[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} in {v}"));
        assert!(pem.starts_with("-----BEGIN"), "{field}: {pem}");
        std::fs::write(&path, pem).expect("write");
        path
    };
    let d = DeviceCreds {
        id: "api-dev".into(),
        tenant: v["tenant"].as_str().expect("tenant").into(),
        password: v["password"].as_str().expect("password").into(),
        cert: write("api-dev.pem", "certificate"),
        key: write("api-dev.key", "key"),
        ca: write("ca.pem", "ca"),
        snippet: String::new(),
    };
    assert_eq!(
        std::fs::read_to_string(&d.ca).expect("ca"),
        std::fs::read_to_string(&cli.ca).expect("ca"),
        "the same CA"
    );
    // The hub takes the new credential at its next read of auth.db.
    assert!(wait_until(Duration::from_secs(5), || mosquitto_pub_with(
        &d.mosquitto_args(port),
        &d.topic("api-dev", "telemetry"),
        r#"[{"n":"temp","v":4.5}]"#
    )));
    assert!(wait_until(Duration::from_secs(10), || {
        let (_, v) = hub.get_json("/v1/readings?device=api-dev");
        v["items"].as_array().is_some_and(|a| a.len() == 1)
    }));
}
