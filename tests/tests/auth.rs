//! API tokens against the real hub over real sockets: every route of the
//! OpenAPI document without a token is 401 and with too low a scope 403;
//! `access_token` on an EventSource-style request works and is never
//! logged; a revoked token's open SSE stream and WebSocket end within
//! seconds; a WebSocket from a foreign Origin is refused; the first-message
//! auth of the WebSocket; whoami, the admin routes; the first-run rules.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};
use telltale_tests::{
    bin, curl, free_port, ws_connect_with, ws_next, CurlStream, Hub, Socket, CLIENT,
};
use tokio_tungstenite::tungstenite::{self, Message};

/// Three tokens, one per scope, live on `hub`.
struct Tokens {
    read: String,
    control: String,
    admin: String,
}

fn tokens(hub: &Hub) -> Tokens {
    let t = Tokens {
        read: hub.token("reader", "read"),
        control: hub.token("operator", "control"),
        admin: hub.token("admin", "admin"),
    };
    // Closed (no token: 401), and each token known (by its name).
    let live = telltale_tests::wait_until(Duration::from_secs(10), || {
        hub.get("/v1/whoami").0 == 401
            && [
                (&t.read, "reader"),
                (&t.control, "operator"),
                (&t.admin, "admin"),
            ]
            .iter()
            .all(|(tok, name)| hub.get_auth("/v1/whoami", tok).1.contains(name))
    });
    assert!(live, "the hub did not take the tokens in time");
    t
}

/// `curl -X method` with an optional token; status, headers and body.
fn request(hub: &Hub, method: &str, path: &str, token: Option<&str>) -> (u16, String, String) {
    let headers_file = tempfile::NamedTempFile::new().expect("temp file");
    let mut args = vec![
        "-X".to_owned(),
        method.to_owned(),
        "-D".to_owned(),
        headers_file.path().display().to_string(),
    ];
    if let Some(t) = token {
        args.push("-H".into());
        args.push(format!("Authorization: Bearer {t}"));
    }
    if method == "POST" || method == "PUT" {
        args.extend(["-H".into(), "Content-Type: application/json".into()]);
        args.extend(["--data-binary".into(), "{}".into()]);
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, body) = curl(&hub.url(path), &refs);
    let headers = std::fs::read_to_string(headers_file.path()).unwrap_or_default();
    (status, headers.to_ascii_lowercase(), body)
}

fn scope_below(scope: &str) -> Option<&'static str> {
    match scope {
        "control" => Some("read"),
        "admin" => Some("control"),
        _ => None,
    }
}

#[test]
fn every_route_needs_a_token_of_its_scope() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::start(dir.path(), "");
    let t = tokens(&hub);
    let token_of = |scope: &str| match scope {
        "read" => t.read.as_str(),
        "control" => t.control.as_str(),
        _ => t.admin.as_str(),
    };
    // The routes, from the document the hub serves (public itself).
    let (status, doc) = hub.get_json("/v1/openapi.json");
    assert_eq!(status, 200);
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        let uri = path
            .replace("{id}", "1")
            .replace("{name}", "no-such-rule")
            .replace("{device}", "no-such-device");
        for (method, op) in ops.as_object().expect("operations") {
            let method = method.to_ascii_uppercase();
            let public = op["security"].as_array().is_some_and(Vec::is_empty);
            if public {
                let (status, _, _) = request(&hub, &method, &uri, None);
                assert!(status < 400, "{method} {uri} is public: {status}");
                continue;
            }
            let scope = op["x-scope"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no x-scope"));
            // No token, a bad one, a revoked-looking one: 401.
            for token in [None, Some("tlt_00000000_nope"), Some("nonsense")] {
                let (status, headers, body) = request(&hub, &method, &uri, token);
                assert_eq!(status, 401, "{method} {uri} with {token:?}: {body}");
                assert!(headers.contains("www-authenticate: bearer"), "{headers}");
                assert!(
                    headers.contains("content-type: application/problem+json"),
                    "{headers}"
                );
                let p: Value = serde_json::from_str(&body).expect("problem");
                assert_eq!(p["code"], "unauthorized");
            }
            // A scope too low: 403.
            if let Some(low) = scope_below(scope) {
                let (status, _, body) = request(&hub, &method, &uri, Some(token_of(low)));
                assert_eq!(status, 403, "{method} {uri} with {low}: {body}");
                let p: Value = serde_json::from_str(&body).expect("problem");
                assert_eq!(p["code"], "forbidden");
            }
            // Its own scope passes the check (whatever the route answers
            // to an empty body or an unknown id).
            let (status, _, body) = request(&hub, &method, &uri, Some(token_of(scope)));
            assert!(
                status != 401 && status != 403,
                "{method} {uri} with {scope}: {status} {body}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} operations checked");
    // Health, readiness and the document need nothing.
    for path in ["/healthz", "/readyz", "/v1/openapi.json"] {
        assert_eq!(hub.get(path).0, 200, "{path}");
    }
    // The secrets are nowhere in the log.
    let log = hub.log();
    for token in [&t.read, &t.control, &t.admin] {
        let secret = token.rsplit('_').next().expect("secret");
        assert!(!log.contains(secret), "a token's secret is in the log");
    }
    assert!(log.contains("api token refused"), "no audit line");
}

#[test]
fn whoami_and_the_admin_routes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::start(dir.path(), "");
    // Open: no token exists and the hub listens on loopback.
    let (status, me) = hub.get_json("/v1/whoami");
    assert_eq!(status, 200);
    assert_eq!(me, json!({"scope": "admin", "token": null, "open": true}));
    assert!(hub.log().contains("OPEN"), "open mode is not logged");

    let admin = hub.token_live("admin", "admin");
    let (status, body) = hub.get_auth("/v1/whoami", &admin);
    assert_eq!(status, 200);
    let me: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(me["scope"], "admin");
    assert_eq!(me["open"], false);
    assert_eq!(me["token"]["name"], "admin");
    assert!(admin.contains(me["token"]["id"].as_str().expect("id")));

    // A token made through the API works within a poll of the credentials.
    let auth = format!("Authorization: Bearer {admin}");
    let post = |path: &str, body: &str| {
        curl(
            &hub.url(path),
            &[
                "-X",
                "POST",
                "-H",
                &auth,
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                body,
            ],
        )
    };
    let (status, body) = post("/v1/tokens", r#"{"name": "wall", "scope": "read"}"#);
    assert_eq!(status, 201, "{body}");
    let created: Value = serde_json::from_str(&body).expect("json");
    let wall = created["token"].as_str().expect("token").to_owned();
    assert_eq!(created["scope"], "read");
    let (status, _) = post("/v1/tokens", r#"{"name": "wall", "scope": "read"}"#);
    assert_eq!(status, 409);
    let (status, _) = post("/v1/tokens", r#"{"name": "x", "scope": "root"}"#);
    assert_eq!(status, 400);
    assert!(telltale_tests::wait_until(Duration::from_secs(5), || {
        hub.get_auth("/v1/latest", &wall).0 == 200
    }));
    // Listed without secrets.
    let (status, list) = hub.get_auth("/v1/tokens", &admin);
    assert_eq!(status, 200);
    assert!(list.contains("\"wall\"") && !list.contains(&wall), "{list}");
    // Read may not create tokens.
    let (status, _) = curl(
        &hub.url("/v1/tokens"),
        &[
            "-X",
            "POST",
            "-H",
            &format!("Authorization: Bearer {wall}"),
            "--data-binary",
            r#"{"name": "y", "scope": "admin"}"#,
        ],
    );
    assert_eq!(status, 403);
    // Revoked through the API: refused within seconds.
    let id = created["id"].as_str().expect("id");
    let (status, _) = curl(
        &hub.url(&format!("/v1/tokens/{id}")),
        &["-X", "DELETE", "-H", &auth],
    );
    assert_eq!(status, 204);
    assert!(telltale_tests::wait_until(Duration::from_secs(5), || {
        hub.get_auth("/v1/latest", &wall).0 == 401
    }));

    // Device credentials: the password once, then lists without it.
    let (status, body) = post("/v1/device-credentials", r#"{"device": "boiler-1"}"#);
    assert_eq!(status, 201, "{body}");
    let cred: Value = serde_json::from_str(&body).expect("json");
    let password = cred["password"].as_str().expect("password");
    assert_eq!(cred["device"], "boiler-1");
    assert!(cred["tenant"].is_string());
    let (status, list) = hub.get_auth("/v1/device-credentials", &admin);
    assert_eq!(status, 200);
    assert!(
        list.contains("boiler-1") && !list.contains(password),
        "{list}"
    );
    let (status, _) = post("/v1/device-credentials", r#"{"device": "bad id"}"#);
    assert_eq!(status, 400);
    let (status, _) = curl(
        &hub.url("/v1/device-credentials/boiler-1"),
        &["-X", "DELETE", "-H", &auth],
    );
    assert_eq!(status, 204);
    let (status, _) = curl(
        &hub.url("/v1/device-credentials/boiler-1"),
        &["-X", "DELETE", "-H", &auth],
    );
    assert_eq!(status, 404);
    let log = hub.log();
    assert!(log.contains("api token created") && log.contains("api token revoked"));
    assert!(!log.contains(password) && !log.contains(&wall));
}

#[test]
fn an_access_token_in_the_query_opens_an_event_stream_and_is_never_logged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::start(dir.path(), "");
    let t = tokens(&hub);
    let url = hub.url(&format!(
        "/v1/latest?watch=true&sendInitialEvents=true&heartbeatSeconds=1&access_token={}",
        t.read
    ));
    let stream = CurlStream::start(&url, &["-H", "Accept: text/event-stream"]);
    let events = stream.events_until(Duration::from_secs(10), |e| {
        e.iter().any(|e| e["object"]["initialEventsEnd"] == true)
    });
    assert!(
        events
            .iter()
            .any(|e| e["object"]["initialEventsEnd"] == true),
        "{events:?}"
    );
    drop(stream);
    // A snapshot too; the parameter is taken out before the strict query
    // parser sees it.
    let (status, _) = hub.get(&format!("/v1/readings?limit=1&access_token={}", t.read));
    assert_eq!(status, 200);
    // A bad one is 401, and says nothing of the token.
    let (status, body) = hub.get("/v1/readings?access_token=tlt_0a1b2c3d_guess");
    assert_eq!(status, 401);
    assert!(!body.contains("guess"), "{body}");
    // The header wins over the query.
    let (status, _) = curl(
        &hub.url("/v1/readings?access_token=tlt_0a1b2c3d_guess"),
        &["-H", &format!("Authorization: Bearer {}", t.read)],
    );
    assert_eq!(status, 200);
    let log = hub.log();
    let secret = t.read.rsplit('_').next().expect("secret");
    assert!(!log.contains(secret), "the access_token is in the log");
    assert!(!log.contains("guess"), "a presented token is in the log");
    assert!(
        log.contains("0a1b2c3d"),
        "the refused token's id is not audited"
    );
}

async fn send(ws: &mut Socket, v: Value) {
    ws.send(Message::text(v.to_string())).await.expect("send");
}

/// Reads until the socket closes; returns the text messages and the close
/// code (if a close frame came).
async fn until_closed(ws: &mut Socket, within: Duration) -> (Vec<Value>, Option<u16>) {
    let mut texts = Vec::new();
    let end = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(end, ws.next()).await {
            Err(_) => panic!("the socket did not close in time; got {texts:?}"),
            Ok(None) | Ok(Some(Err(_))) => return (texts, None),
            Ok(Some(Ok(Message::Close(frame)))) => {
                return (texts, frame.map(|f| u16::from(f.code)))
            }
            Ok(Some(Ok(Message::Text(t)))) => texts.push(serde_json::from_str(&t).expect("json")),
            Ok(Some(Ok(_))) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_ends_its_open_streams_within_seconds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::start(dir.path(), "");
    let t = tokio::task::block_in_place(|| tokens(&hub));
    let doomed = tokio::task::block_in_place(|| hub.token_live("doomed", "read"));
    // An SSE stream and a WebSocket of the doomed token, and a stream of
    // another token that must go on.
    let sse = CurlStream::start(
        &hub.url("/v1/latest?watch=true&heartbeatSeconds=1"),
        &[
            "-H",
            "Accept: text/event-stream",
            "-H",
            &format!("Authorization: Bearer {doomed}"),
        ],
    );
    let other = CurlStream::start(
        &hub.url("/v1/latest?watch=true&heartbeatSeconds=1"),
        &["-H", &format!("Authorization: Bearer {}", t.read)],
    );
    let mut ws = ws_connect_with(&hub, "", &[("Authorization", &format!("Bearer {doomed}"))])
        .await
        .expect("websocket");
    send(
        &mut ws,
        json!({"id": 1, "type": "watch", "resource": "latest"}),
    )
    .await;
    assert_eq!(ws_next(&mut ws).await["success"], true);
    assert!(sse.next_line(Duration::from_secs(5)).is_some());

    let revoked_at = Instant::now();
    tokio::task::block_in_place(|| hub.revoke("doomed"));
    // The WebSocket: an error result, then a close with 1008.
    let (texts, code) = until_closed(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(code, Some(1008), "{texts:?}");
    assert!(
        texts.iter().any(|m| m["error"]["code"] == "token_revoked"),
        "{texts:?}"
    );
    // The SSE stream: an ERROR event, then its end.
    let ended = tokio::task::block_in_place(|| {
        let mut saw_error = false;
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            match sse.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => saw_error |= line.contains("token_revoked"),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Some(saw_error),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
        None
    });
    assert_eq!(
        ended,
        Some(true),
        "the SSE stream did not end with an ERROR"
    );
    assert!(revoked_at.elapsed() < Duration::from_secs(6));
    // New requests with it are refused; the other token's stream goes on.
    assert_eq!(hub.get_auth("/v1/latest", &doomed).0, 401);
    let beat = tokio::task::block_in_place(|| {
        while other.lines.try_recv().is_ok() {}
        other.next_line(Duration::from_secs(3))
    });
    assert!(beat.is_some(), "the other token's stream ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_check_the_origin_and_take_the_token_in_the_first_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::start(
        dir.path(),
        "[api]\ncors_origins = [\"https://dash.example.org\"]\nws_auth_timeout_secs = 1\n",
    );
    let t = tokio::task::block_in_place(|| tokens(&hub));
    let bearer = format!("Bearer {}", t.read);
    // A foreign page: 403 before the upgrade, with or without a token.
    for headers in [
        vec![("Origin", "https://evil.example.com")],
        vec![
            ("Origin", "https://evil.example.com"),
            ("Authorization", &bearer),
        ],
        vec![("Origin", "null"), ("Authorization", &bearer)],
    ] {
        match ws_connect_with(&hub, "", &headers).await {
            Err(tungstenite::Error::Http(res)) => {
                assert_eq!(res.status(), 403, "{headers:?}");
                let body: Value = serde_json::from_slice(res.body().as_deref().unwrap_or_default())
                    .expect("problem");
                assert_eq!(body["code"], "forbidden_origin");
            }
            Err(e) => panic!("{headers:?}: {e}"),
            Ok(_) => panic!("{headers:?}: a foreign origin got a socket"),
        }
    }
    // The hub's own origin, a listed one, and none at all are allowed.
    let own = format!("http://127.0.0.1:{}", hub.http_port);
    for origin in [Some(own.as_str()), Some("https://dash.example.org"), None] {
        let mut headers = vec![("Authorization", bearer.as_str())];
        headers.extend(origin.map(|o| ("Origin", o)));
        let mut ws = ws_connect_with(&hub, "", &headers).await.expect("allowed");
        send(&mut ws, json!({"id": 1, "type": "ping"})).await;
        assert_eq!(ws_next(&mut ws).await["type"], "pong");
    }
    // The token in the query.
    let mut ws = ws_connect_with(&hub, &format!("?access_token={}", t.read), &[])
        .await
        .expect("query token");
    send(&mut ws, json!({"id": 1, "type": "ping"})).await;
    assert_eq!(ws_next(&mut ws).await["type"], "pong");
    // A bad token in the request: 401 before the upgrade.
    match ws_connect_with(&hub, "", &[("Authorization", "Bearer tlt_00000000_x")]).await {
        Err(tungstenite::Error::Http(res)) => assert_eq!(res.status(), 401),
        other => panic!("a bad token got {other:?}"),
    }

    // The token in the first message (as Home Assistant does).
    let mut ws = ws_connect_with(&hub, "", &[]).await.expect("socket");
    send(&mut ws, json!({"type": "auth", "token": t.read})).await;
    let ok = ws_next(&mut ws).await;
    assert_eq!(ok, json!({"type": "auth_ok", "scope": "read"}));
    send(
        &mut ws,
        json!({"id": 2, "type": "watch", "resource": "devices", "sendInitialEvents": true}),
    )
    .await;
    assert_eq!(ws_next(&mut ws).await["success"], true);
    // A read token may not send commands: an error, the socket stays.
    send(
        &mut ws,
        json!({"id": 3, "type": "command", "device": "d1", "name": "ping"}),
    )
    .await;
    let m = loop {
        let m = ws_next(&mut ws).await;
        if m["id"] == 3 {
            break m;
        }
    };
    assert_eq!(m["error"]["code"], "forbidden", "{m}");
    send(&mut ws, json!({"id": 4, "type": "ping"})).await;
    loop {
        if ws_next(&mut ws).await["type"] == "pong" {
            break;
        }
    }

    // A bad token in the first message: an error, then 1008.
    let mut ws = ws_connect_with(&hub, "", &[]).await.expect("socket");
    send(
        &mut ws,
        json!({"type": "auth", "token": "tlt_00000000_nope"}),
    )
    .await;
    let (texts, code) = until_closed(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(code, Some(1008));
    assert_eq!(texts[0]["error"]["code"], "unauthorized", "{texts:?}");
    // Another message first: the same.
    let mut ws = ws_connect_with(&hub, "", &[]).await.expect("socket");
    send(
        &mut ws,
        json!({"id": 1, "type": "watch", "resource": "latest"}),
    )
    .await;
    let (texts, code) = until_closed(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(code, Some(1008));
    assert_eq!(texts[0]["error"]["code"], "unauthorized", "{texts:?}");
    // Nothing at all: closed after ws_auth_timeout_secs.
    let mut ws = ws_connect_with(&hub, "", &[]).await.expect("socket");
    let (_, code) = until_closed(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(code, Some(1008));
}

#[test]
fn a_hub_open_to_the_network_without_a_token_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("hub.toml");
    let port = free_port();
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[api]\nlisten = \"0.0.0.0:{port}\"\n[broker]\nlisten = \"127.0.0.1:{}\"\n",
            dir.path().join("data").display(),
            free_port()
        ),
    )
    .expect("config");
    let out = Command::new(bin("telltale-hub"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .expect("hub runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a loopback address") && err.contains("telltale-hub token create"),
        "{err}"
    );
    // It never listened.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn the_hubs_client_sends_its_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::start(dir.path(), "");
    let t = tokens(&hub);
    telltale_tests::mosquitto_pub(hub.mqtt_port, "c1", r#"[{"n":"temp","v":3}]"#);
    let client = |args: &[&str], env: Option<&str>| {
        let mut c = Command::new(bin(CLIENT));
        c.args(["--hub", &hub.url("")]).args(args);
        c.env_remove("TELLTALE_TOKEN");
        if let Some(tok) = env {
            c.env("TELLTALE_TOKEN", tok);
        }
        c.output().expect("client runs")
    };
    // Without a token: refused (exit 2), with the hub's reason.
    let o = client(&["latest"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("API token"));
    // --token and TELLTALE_TOKEN.
    let ok = telltale_tests::wait_until(Duration::from_secs(10), || {
        let o = client(&["latest", "--token", &t.read], None);
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("c1")
    });
    assert!(ok, "client latest --token failed");
    let o = client(&["devices"], Some(&t.read));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The WebSocket too: a watch with a read token prints the devices.
    let o = Command::new(bin(CLIENT))
        .args(["--hub", &hub.url(""), "--token", &t.control])
        .args(["command", "c1", "ping", "--timeout", "1", "--no-wait"])
        .output()
        .expect("client runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A read token may not send commands.
    let o = Command::new(bin(CLIENT))
        .args(["--hub", &hub.url(""), "--token", &t.read])
        .args(["command", "c1", "ping", "--timeout", "1", "--no-wait"])
        .output()
        .expect("client runs");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("scope control"));
}
