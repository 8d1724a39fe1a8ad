//! The OpenAPI document (`src/openapi.json`) against the router it
//! describes: the same paths, the same query parameters per route, and the
//! JSON the routes really answer. The route list lives in one place, the
//! router in `src/lib.rs`; this test reads it from there.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use telltale_api::registry::RouteTable;
use telltale_api::rules::RulesFile;
use telltale_api::{app, routes, ApiConfig, AppState};
use telltale_store::writer::{IncomingBatch, Reject, WriteOp};
use telltale_store::{Presence, Routing, StoreConfig};
use telltale_wire::decode::{Reading, Value as WireValue};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const DOC: &str = include_str!("../src/openapi.json");
const PARAMS: &str = include_str!("../src/params.rs");

fn doc() -> Value {
    serde_json::from_str(DOC).expect("openapi.json is JSON")
}

/// The paths the router serves: every route declared in the API's route
/// table (`telltale_api::routes`, the one list the router is built from).
fn router_paths(table: &RouteTable) -> BTreeSet<String> {
    table.routes().into_iter().map(|r| r.path).collect()
}

/// The query parameters `Params::parse` takes for a collection of each kind
/// (log, state), read from its `("name", kind) =>` match arms in
/// `src/params.rs`.
fn parsed_params() -> (BTreeSet<String>, BTreeSet<String>) {
    let code = PARAMS.split("#[cfg(test)]").next().unwrap_or(PARAMS);
    let (mut log, mut state) = (BTreeSet::new(), BTreeSet::new());
    let mut rest = code;
    while let Some(at) = rest.find("(\"") {
        rest = &rest[at + 2..];
        let Some((name, after)) = rest.split_once('"') else {
            break;
        };
        let Some((kind, tail)) = after.strip_prefix(", ").and_then(|a| a.split_once(')')) else {
            continue;
        };
        if !tail.trim_start().starts_with("=>") {
            continue;
        }
        match kind {
            "_" => {
                log.insert(name.to_owned());
                state.insert(name.to_owned());
            }
            "Kind::Log" => {
                log.insert(name.to_owned());
            }
            "Kind::State" => {
                state.insert(name.to_owned());
            }
            other => panic!("params.rs: unexpected kind {other} for {name}"),
        }
    }
    (log, state)
}

/// Follows a local `$ref` (`#/components/...`).
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r.strip_prefix('#').expect("local $ref");
            doc.pointer(pointer)
                .unwrap_or_else(|| panic!("dangling $ref {r}"))
        }
        None => v,
    }
}

/// The parameters of `GET path`, resolved.
fn params<'a>(doc: &'a Value, path: &str) -> Vec<&'a Value> {
    doc["paths"][path]["get"]["parameters"]
        .as_array()
        .map(|a| a.iter().map(|p| resolve(doc, p)).collect())
        .unwrap_or_default()
}

fn names_in(doc: &Value, path: &str, location: &str) -> BTreeSet<String> {
    params(doc, path)
        .into_iter()
        .filter(|p| p["in"] == location)
        .map(|p| p["name"].as_str().expect("name").to_owned())
        .collect()
}

/// A parameter's documented example as query text.
fn example_text(p: &Value) -> Option<String> {
    match p.get("example")? {
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The property names of a schema in `components.schemas`.
fn props(doc: &Value, schema: &str) -> BTreeSet<String> {
    doc["components"]["schemas"][schema]["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("schema {schema} has properties"))
        .keys()
        .cloned()
        .collect()
}

fn required(doc: &Value, schema: &str) -> BTreeSet<String> {
    doc["components"]["schemas"][schema]["required"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().expect("name").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// Checks that `v` has every required property of `schema` and no other
/// than it documents.
fn conforms(doc: &Value, schema: &str, v: &Value) {
    let k = keys(v);
    assert!(
        k.is_subset(&props(doc, schema)),
        "{schema}: undocumented fields in {v}"
    );
    assert!(
        required(doc, schema).is_subset(&k),
        "{schema}: required fields missing in {v}"
    );
}

/// What a request answered. The body is read only when it is not a stream.
struct Answer {
    status: StatusCode,
    content_type: String,
    body: Value,
    raw: String,
}

async fn get(router: &Router, uri: &str, headers: &[(&str, &str)]) -> Answer {
    request(router, "GET", uri, headers, "").await
}

async fn request(
    router: &Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = router
        .clone()
        .oneshot(req.body(Body::from(body.to_owned())).expect("request"))
        .await
        .expect("infallible");
    let status = res.status();
    let content_type = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if content_type.starts_with("application/x-ndjson")
        || content_type.starts_with("text/event-stream")
    {
        // A watch: its body never ends. Dropping it ends the stream.
        return Answer {
            status,
            content_type,
            body: Value::Null,
            raw: String::new(),
        };
    }
    let bytes = tokio::time::timeout(Duration::from_secs(10), res.into_body().collect())
        .await
        .expect("body in time")
        .expect("body")
        .to_bytes();
    let raw = String::from_utf8(bytes.to_vec()).expect("utf-8");
    let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
    Answer {
        status,
        content_type,
        body,
        raw,
    }
}

/// The first events of a watch, until one of type `until`.
async fn events(router: &Router, uri: &str, until: &str) -> Vec<Value> {
    let res = router
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    assert_eq!(res.status(), StatusCode::OK, "{uri}");
    let mut body = res.into_body();
    let mut text = String::new();
    let mut out = Vec::new();
    while !out.iter().any(|e: &Value| e["type"] == until) {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("an event in time")
            .expect("the stream goes on")
            .expect("frame");
        if let Ok(data) = frame.into_data() {
            text.push_str(std::str::from_utf8(&data).expect("utf-8"));
        }
        while let Some((line, rest)) = text.split_once('\n') {
            out.push(serde_json::from_str(line).expect("an NDJSON line"));
            text = rest.to_owned();
        }
    }
    out
}

/// A hub database with two devices (readings, latest rows, devices), a
/// status message and a reject; the API over it.
struct Fixture {
    router: Router,
    /// What each route needs, as the router was built with.
    table: std::sync::Arc<RouteTable>,
    state: AppState,
    _dir: tempfile::TempDir,
    _acks: tokio::sync::mpsc::UnboundedReceiver<Vec<telltale_store::writer::AckOut>>,
}

async fn fixture() -> Fixture {
    fixture_with(ApiConfig::default()).await
}

async fn fixture_with(config: ApiConfig) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("hub.db");
    let (acks_tx, acks) = tokio::sync::mpsc::unbounded_channel();
    let (writer, _thread) =
        telltale_store::writer::start(&db, StoreConfig::default(), acks_tx).expect("store");
    // A rule the fixture's readings fire: one alert in /v1/alerts.
    let rules_path = dir.path().join("rules.toml");
    std::fs::write(
        &rules_path,
        "[[rule]]\nname = \"cold\"\nmetric = \"temp\"\ncondition = { above = -20.0 }\nseverity = \"minor\"\n",
    )
    .expect("rules file");
    let rules = std::sync::Arc::new(RulesFile::new(
        rules_path,
        writer.clone(),
        Routing(std::sync::Arc::new(|_: &[String], _: &str| Vec::new())),
    ));
    rules.reload().await.expect("rules load");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    for (device, metric) in [("demo-freezer", "temp"), ("demo-greenhouse", "humidity")] {
        writer
            .send(WriteOp::Batch(IncomingBatch {
                device: device.into(),
                batch: None,
                readings: vec![Reading {
                    name: metric.into(),
                    unit: Some("Cel".into()),
                    value: WireValue::Num(-18.0),
                    time: now,
                }],
            }))
            .await
            .expect("queued");
    }
    writer
        .send(WriteOp::Presence(Presence {
            device: "demo-freezer".into(),
            at_ms: (now * 1000.0) as i64,
            online: true,
            agent: Some("telltale-agent/0.0.0".into()),
            labels: Some(BTreeMap::from([("site".into(), "demo".into())])),
        }))
        .await
        .expect("queued");
    for (device, payload) in [("demo-freezer", &b"["[..]), ("demo-greenhouse", b"{")] {
        writer
            .send(WriteOp::Reject(Reject {
                at_ms: (now * 1000.0) as i64,
                topic: format!("telltale/v1/devices/{device}/telemetry"),
                device: Some(device.into()),
                kind: "malformed_json",
                reason: "not json".into(),
                payload: payload.to_vec(),
                batch: None,
            }))
            .await
            .expect("queued");
    }
    writer.sync().await.expect("committed");
    // One command: /v1/commands has an item.
    writer
        .new_command(telltale_store::commands::NewCommand {
            device: "demo-freezer".into(),
            name: "ping".into(),
            params: "{}".into(),
            deadline_ms: telltale_store::now_ms() + 30_000,
            idem_key: None,
        })
        .await
        .expect("command");
    let state = AppState::new(
        db,
        writer.epoch.clone(),
        config,
        CancellationToken::new(),
        writer.clone(),
        rules,
    )
    .expect("state");
    Fixture {
        table: routes(&state).finish().1,
        router: app(state.clone()),
        state,
        _dir: dir,
        _acks: acks,
    }
}

/// Whether an answer is the router's fallback (a path that is no route).
fn is_fallback(a: &Answer) -> bool {
    a.status == StatusCode::NOT_FOUND && a.body["detail"] == "no such route"
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_served_as_json() {
    let doc = doc();
    let version = doc["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3.1."), "{version}");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());

    let f = fixture().await;
    let a = get(&f.router, "/v1/openapi.json", &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.content_type, "application/json");
    assert_eq!(a.raw, DOC);
}

#[tokio::test]
async fn the_documented_paths_are_the_routes() {
    let doc = doc();
    let documented: BTreeSet<String> = doc["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .cloned()
        .collect();
    let f = fixture().await;
    assert_eq!(documented, router_paths(&f.table));

    for path in &documented {
        let methods = keys(&doc["paths"][path]);
        let known = ["get", "post", "put", "delete"].map(str::to_owned);
        assert!(
            methods.iter().all(|m| known.contains(m)),
            "{path}: {methods:?}"
        );
        // The reads: what GET answers (writes are tested with the alerts).
        if !methods.contains("get") {
            continue;
        }
        if path == "/v1/ws" {
            // Not a WebSocket handshake: a problem, 426 (the socket itself
            // is tested in tests/ws.rs).
            let a = get(&f.router, path, &[]).await;
            assert_eq!(a.status, StatusCode::UPGRADE_REQUIRED, "{}", a.raw);
            conforms(&doc, "Problem", &a.body);
            continue;
        }
        let id = if path.starts_with("/v1/alerts") || path.starts_with("/v1/commands") {
            "1"
        } else {
            "demo-freezer"
        };
        let uri = path.replace("{id}", id).replace("{name}", "cold");
        let documented_types = keys(&doc["paths"][path]["get"]["responses"]["200"]["content"]);
        let mut answered = BTreeSet::new();
        let mut ask = vec![(uri.clone(), None)];
        if names_in(&doc, path, "query").contains("watch") {
            ask.push((format!("{uri}?watch=true"), None));
            ask.push((format!("{uri}?watch=true"), Some("text/event-stream")));
        }
        for (uri, accept) in ask {
            let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
            let a = get(&f.router, &uri, &headers).await;
            assert_eq!(a.status, StatusCode::OK, "{uri}: {}", a.raw);
            assert!(!is_fallback(&a), "{uri}");
            // The media type without its parameters (`; charset=utf-8`).
            let media = a.content_type.split(';').next().unwrap_or("").trim();
            answered.insert(media.to_owned());
        }
        assert_eq!(answered, documented_types, "{path}");
    }
    for uri in ["/v1", "/openapi.json", "/v1/readings/1"] {
        let a = get(&f.router, uri, &[]).await;
        assert!(
            is_fallback(&a),
            "{uri} is not documented, but answered {}",
            a.status
        );
        assert_eq!(a.content_type, "application/problem+json");
    }
}

/// A value for each parameter that the route must accept: the documented
/// example, or one that depends on the data; and the parameters it needs
/// beside it.
fn valid_query(name: &str, p: &Value, rv: &str, cont: &str) -> String {
    let value = match name {
        "resourceVersion" => rv.to_owned(),
        "continue" => cont.to_owned(),
        // Stream-only parameters: in a short stream.
        "timeoutSeconds" => return "timeoutSeconds=1&watch=true".into(),
        "heartbeatSeconds" | "throttleSeconds" => {
            let v = example_text(p).unwrap_or_else(|| panic!("{name} has no example"));
            return format!("{name}={}&watch=true&timeoutSeconds=1", urlencode(&v));
        }
        // A long poll after the current version: answer at once, empty.
        "wait" => return format!("wait=0s&resourceVersion={rv}"),
        _ => example_text(p).unwrap_or_else(|| panic!("{name} has no example")),
    };
    let q = format!("{name}={}", urlencode(&value));
    match name {
        "sendInitialEvents" => format!("{q}&watch=true"),
        _ => q,
    }
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[tokio::test]
async fn each_route_takes_exactly_its_documented_query_parameters() {
    let doc = doc();
    let f = fixture().await;
    // Every parameter documented anywhere, with an example value.
    let mut everywhere: BTreeMap<String, String> = BTreeMap::new();
    for path in doc["paths"].as_object().expect("paths").keys() {
        for p in params(&doc, path) {
            if p["in"] == "query" {
                let name = p["name"].as_str().expect("name").to_owned();
                let value = example_text(p).unwrap_or_else(|| "x".into());
                everywhere.entry(name).or_insert(value);
            }
        }
    }
    everywhere.insert("colour".into(), "red".into());

    let collections = ["/v1/readings", "/v1/latest", "/v1/devices", "/v1/rejects"];
    // What the parser's source says, against the document.
    let (log, state) = parsed_params();
    assert!(log.contains("since") && state.contains("throttleSeconds"));
    assert_eq!(names_in(&doc, "/v1/readings", "query"), log);
    assert_eq!(names_in(&doc, "/v1/latest", "query"), state);
    assert_eq!(names_in(&doc, "/v1/devices", "query"), state);
    assert_eq!(names_in(&doc, "/v1/rejects", "query"), log);
    // Alerts take the state collection's parameters and two shorthands of
    // their own (guarded in the parser, so not in `state`).
    let mut alert_params = state.clone();
    alert_params.extend(["severity".to_owned(), "state".to_owned()]);
    assert_eq!(names_in(&doc, "/v1/alerts", "query"), alert_params);
    let mut command_params = state.clone();
    command_params.insert("state".to_owned());
    assert_eq!(names_in(&doc, "/v1/commands", "query"), command_params);
    let a = get(&f.router, "/v1/commands?severity=major", &[]).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.raw);
    for q in ["severity=major", "state=firing&severity=critical,major"] {
        let a = get(&f.router, &format!("/v1/alerts?{q}"), &[]).await;
        assert_eq!(a.status, StatusCode::OK, "{q}: {}", a.raw);
    }
    for path in collections {
        let documented = names_in(&doc, path, "query");
        let (rv, cont) = {
            let page = get(&f.router, &format!("{path}?limit=1"), &[]).await;
            assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.raw);
            let rv = page.body["resourceVersion"]
                .as_str()
                .expect("rv")
                .to_owned();
            let cont = page.body["continue"]
                .as_str()
                .unwrap_or_else(|| panic!("{path}: two items, limit 1: a continue token"))
                .to_owned();
            (rv, cont)
        };
        for name in &documented {
            let p = params(&doc, path)
                .into_iter()
                .find(|p| p["name"] == name.as_str())
                .expect("documented");
            let uri = format!("{path}?{}", valid_query(name, p, &rv, &cont));
            let a = get(&f.router, &uri, &[]).await;
            assert_eq!(a.status, StatusCode::OK, "{uri}: {}", a.raw);
        }
        for (name, value) in &everywhere {
            if documented.contains(name) {
                continue;
            }
            let uri = format!("{path}?{name}={}", urlencode(value));
            let a = get(&f.router, &uri, &[]).await;
            assert_eq!(a.status, StatusCode::BAD_REQUEST, "{uri}: {}", a.raw);
            assert_eq!(a.content_type, "application/problem+json", "{uri}");
            assert_eq!(a.body["code"], "bad_parameter", "{uri}");
            assert_eq!(a.body["param"], name.as_str(), "{uri}");
            conforms(&doc, "Problem", &a.body);
        }
    }

    // The Last-Event-ID header, documented on the collections.
    for path in collections {
        assert!(
            names_in(&doc, path, "header").contains("Last-Event-ID"),
            "{path}"
        );
        let rv = get(&f.router, path, &[]).await.body["resourceVersion"]
            .as_str()
            .expect("rv")
            .to_owned();
        let a = get(
            &f.router,
            &format!("{path}?watch=true"),
            &[("Last-Event-ID", &rv), ("Accept", "text/event-stream")],
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        assert_eq!(a.content_type, "text/event-stream", "{path}");
        let a = get(
            &f.router,
            &format!("{path}?watch=true"),
            &[("Last-Event-ID", "nonsense")],
        )
        .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(a.body["code"], "bad_resource_version", "{path}");
        conforms(&doc, "Problem", &a.body);
    }

    // The documented ranges hold at their edges.
    for (query, ok) in [
        ("limit=10000", true),
        ("limit=10001", false),
        ("limit=0", false),
        ("heartbeatSeconds=1&watch=true", true),
        ("heartbeatSeconds=300&watch=true", true),
        ("heartbeatSeconds=301", false),
        ("timeoutSeconds=86400&watch=true", true),
        ("timeoutSeconds=86401", false),
        ("timeoutSeconds=0", false),
        ("filter=x", false),
    ] {
        let uri = format!("/v1/readings?{query}");
        let a = get(&f.router, &uri, &[]).await;
        assert_eq!(a.status == StatusCode::OK, ok, "{uri}: {}", a.raw);
    }
    for (query, ok) in [
        ("throttleSeconds=0&watch=true", true),
        ("throttleSeconds=3600&watch=true", true),
        ("throttleSeconds=3601", false),
    ] {
        let uri = format!("/v1/latest?{query}");
        let a = get(&f.router, &uri, &[]).await;
        assert_eq!(a.status == StatusCode::OK, ok, "{uri}: {}", a.raw);
    }
    let long = "a".repeat(1025);
    let a = get(&f.router, &format!("/v1/readings?device={long}"), &[]).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_answers_have_the_documented_shape() {
    let doc = doc();
    let f = fixture().await;
    for (path, list, item) in [
        ("/v1/readings", "ReadingList", "Reading"),
        ("/v1/latest", "LatestList", "Latest"),
        ("/v1/devices", "DeviceList", "Device"),
    ] {
        let a = get(&f.router, path, &[]).await;
        conforms(&doc, list, &a.body);
        assert_eq!(
            a.body["kind"],
            doc["components"]["schemas"][list]["properties"]["kind"]["const"]
        );
        let items = a.body["items"].as_array().expect("items");
        assert_eq!(items.len(), 2, "{path}");
        for it in items {
            conforms(&doc, item, it);
        }
        // The stream's events, as NDJSON, and each object.
        let uri = match path {
            "/v1/readings" => format!("{path}?watch=true&since=1h"),
            _ => format!("{path}?watch=true&sendInitialEvents=true"),
        };
        // Readings: two replayed, then a heartbeat BOOKMARK; the others: two
        // initial ADDED, then the BOOKMARK that ends them.
        let uri = format!("{uri}&heartbeatSeconds=1");
        let evs = events(&f.router, &uri, "BOOKMARK").await;
        assert_eq!(
            evs.iter().filter(|e| e["type"] == "ADDED").count(),
            2,
            "{uri}: {evs:?}"
        );
        for e in &evs {
            conforms(&doc, "WatchEvent", e);
            match e["type"].as_str() {
                Some("ADDED") => conforms(&doc, item, &e["object"]),
                Some("BOOKMARK") => conforms(&doc, "Bookmark", &e["object"]),
                other => panic!("{uri}: unexpected event {other:?}"),
            }
        }
    }
    let a = get(&f.router, "/v1/devices/demo-freezer", &[]).await;
    conforms(&doc, "Device", &a.body);
    assert_eq!(a.body["online"], true);
    assert_eq!(a.body["labels"]["site"], "demo");
    let a = get(&f.router, "/v1/devices/nobody", &[]).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.body["code"], "not_found");
    conforms(&doc, "Problem", &a.body);

    let a = get(&f.router, "/v1/rejects", &[]).await;
    conforms(&doc, "RejectList", &a.body);
    let items = a.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    conforms(&doc, "Reject", &items[0]);
    assert!(
        items[0]["id"].as_i64() < items[1]["id"].as_i64(),
        "oldest first"
    );

    // Every problem code the routes use is documented.
    let codes: BTreeSet<String> = doc["components"]["schemas"]["Problem"]["properties"]["code"]
        ["enum"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_owned())
        .collect();
    for uri in [
        "/v1/readings?colour=red",
        "/v1/readings?filter=value%20%3E",
        "/v1/readings?resourceVersion=nonsense",
        "/v1/readings?resourceVersion=deadbeef-1",
        "/v1/devices/nobody",
    ] {
        let a = get(&f.router, uri, &[]).await;
        let code = a.body["code"].as_str().expect("code");
        assert!(codes.contains(code), "{uri}: {code}");
        conforms(&doc, "Problem", &a.body);
    }
}

#[tokio::test]
async fn alerts_and_rules_answer_as_documented() {
    let doc = doc();
    let f = fixture().await;
    let list = get(&f.router, "/v1/alerts", &[]).await;
    conforms(&doc, "AlertList", &list.body);
    let items = list.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "the fixture's rule fired once");
    conforms(&doc, "Alert", &items[0]);
    assert_eq!(items[0]["state"], "firing");
    let id = items[0]["id"].as_u64().expect("id");

    // Acknowledge: the alert, flagged, with who and the note.
    let body = r#"{"by": "ann", "note": "door left open"}"#;
    let a = request(
        &f.router,
        "POST",
        &format!("/v1/alerts/{id}/ack"),
        &[],
        body,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.raw);
    conforms(&doc, "Alert", &a.body);
    assert_eq!(a.body["acknowledged"], true);
    assert_eq!(a.body["ack"]["by"], "ann");
    let a = request(&f.router, "POST", "/v1/alerts/999/ack", &[], "").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = request(
        &f.router,
        "POST",
        &format!("/v1/alerts/{id}/ack"),
        &[],
        r#"{"who": 1}"#,
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.raw);
    conforms(&doc, "Problem", &a.body);

    // Rules: the list, a bad rule refused naming its field (the rules in
    // force stay), a good one added, then deleted.
    let rules = get(&f.router, "/v1/rules", &[]).await;
    conforms(&doc, "RuleList", &rules.body);
    assert_eq!(rules.body["items"][0]["name"], "cold");
    for (body, field) in [
        (
            r#"{"name": "w", "condition": {"above": 5, "clear_below": 9}, "severity": "minor"}"#,
            "condition.clear_below",
        ),
        (
            r#"{"name": "w", "condition": {"above": 5}, "severity": "loud"}"#,
            "severity",
        ),
        (
            r#"{"name": "w", "condition": {"above": 5}, "severity": "minor", "for": "ten"}"#,
            "for",
        ),
    ] {
        let a = request(&f.router, "PUT", "/v1/rules/w", &[], body).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}: {}", a.raw);
        assert_eq!(a.body["field"], field, "{body}: {}", a.raw);
        conforms(&doc, "Problem", &a.body);
    }
    let a = request(
        &f.router,
        "POST",
        "/v1/rules",
        &[],
        r#"{"name": "w", "severity": 3}"#,
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.raw);
    assert_eq!(a.body["code"], "bad_body");
    let good =
        r#"{"name": "w", "metric": "humidity", "condition": {"above": 80}, "severity": "warning"}"#;
    let a = request(&f.router, "POST", "/v1/rules", &[], good).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.raw);
    conforms(&doc, "Rule", &a.body);
    let a = request(&f.router, "POST", "/v1/rules", &[], good).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.raw);
    let names = |b: &Value| {
        b["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|r| r["name"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&get(&f.router, "/v1/rules", &[]).await.body),
        ["cold", "w"]
    );
    let a = request(&f.router, "DELETE", "/v1/rules/w", &[], "").await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let a = request(&f.router, "DELETE", "/v1/rules/w", &[], "").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(
        names(&get(&f.router, "/v1/rules", &[]).await.body),
        ["cold"]
    );
}

#[tokio::test]
async fn commands_answer_as_documented() {
    let doc = doc();
    let f = fixture().await;
    let list = get(&f.router, "/v1/commands", &[]).await;
    conforms(&doc, "CommandList", &list.body);
    conforms(&doc, "Command", &list.body["items"][0]);

    let body = r#"{"name": "set_interval", "params": {"seconds": 5}, "timeoutSeconds": 10}"#;
    let key = [("Idempotency-Key", "k-1")];
    let post = || {
        request(
            &f.router,
            "POST",
            "/v1/devices/demo-freezer/commands",
            &key,
            body,
        )
    };
    let a = post().await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.raw);
    conforms(&doc, "Command", &a.body);
    assert_eq!(a.body["state"], "queued");
    // The same key: the same command, not a second one.
    let b = post().await;
    assert_eq!(b.status, StatusCode::OK, "{}", b.raw);
    assert_eq!(b.body["id"], a.body["id"]);
    let list = get(&f.router, "/v1/commands", &[]).await;
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(2));

    for (uri, body, status, field) in [
        (
            "/v1/devices/nobody/commands",
            r#"{"name": "ping"}"#,
            404,
            None,
        ),
        (
            "/v1/devices/demo-freezer/commands",
            r#"{"name": "no spaces"}"#,
            400,
            Some("name"),
        ),
        (
            "/v1/devices/demo-freezer/commands",
            r#"{"name": "ping", "timeoutSeconds": 0}"#,
            400,
            Some("timeoutSeconds"),
        ),
        (
            "/v1/devices/demo-freezer/commands",
            r#"{"name": "ping", "colour": 1}"#,
            400,
            None,
        ),
        (
            "/v1/devices/demo-freezer/commands",
            r#"{"params": {}}"#,
            400,
            None,
        ),
    ] {
        let a = request(&f.router, "POST", uri, &[], body).await;
        assert_eq!(a.status.as_u16(), status, "{body}: {}", a.raw);
        conforms(&doc, "Problem", &a.body);
        if let Some(field) = field {
            assert_eq!(a.body["field"], field, "{body}");
        }
    }
}

#[tokio::test]
async fn each_operation_documents_the_scope_the_auth_layer_asks_for() {
    use telltale_api::auth::{needed, Need, Scope};
    let doc = doc();
    let f = fixture().await;
    let mut operations = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("operations") {
            let m: axum::http::Method = method.to_ascii_uppercase().parse().expect("method");
            operations.insert((m.clone(), path.clone()));
            let public = op["security"].as_array().is_some_and(Vec::is_empty);
            let documented = op["x-scope"].as_str();
            let need = needed(&f.table, &m, Some(path)).expect("a declared route");
            match need {
                Need::Public => {
                    assert!(public && documented.is_none(), "{method} {path}");
                }
                Need::Socket => {
                    assert_eq!(documented, Some("read"), "{method} {path}");
                }
                Need::Scope(s) => {
                    assert!(!public, "{method} {path} is documented public");
                    let want = match s {
                        Scope::Read => "read",
                        Scope::Control => "control",
                        Scope::Admin => "admin",
                    };
                    assert_eq!(documented, Some(want), "{method} {path}");
                    for status in ["401", "429"] {
                        assert!(
                            op["responses"][status].is_object(),
                            "{method} {path}: {status}"
                        );
                    }
                    if s != Scope::Read {
                        assert!(op["responses"]["403"].is_object(), "{method} {path}: 403");
                    }
                }
            }
        }
    }
    // Every declared operation is documented (and every documented one
    // declared, above).
    for r in f.table.routes() {
        assert!(
            operations.contains(&(r.method.clone(), r.path.clone())),
            "{} {} is a route but not in the document",
            r.method,
            r.path
        );
    }
    // /metrics is public only when configured so.
    let get = axum::http::Method::GET;
    assert_eq!(
        needed(&f.table, &get, Some("/metrics")),
        Some(Need::Scope(Scope::Read))
    );
    let public = fixture_with(ApiConfig {
        metrics_public: true,
        ..ApiConfig::default()
    })
    .await;
    assert_eq!(
        needed(&public.table, &get, Some("/metrics")),
        Some(Need::Public)
    );
}

#[tokio::test]
async fn routes_declare_their_scope() {
    use axum::http::Method;
    use telltale_api::auth::{needed, Need, Scope};
    let f = fixture().await;
    let (read, control, admin) = (
        Need::Scope(Scope::Read),
        Need::Scope(Scope::Control),
        Need::Scope(Scope::Admin),
    );
    let table: &[(Method, Option<&str>, Need)] = &[
        (Method::GET, Some("/healthz"), Need::Public),
        (Method::GET, Some("/readyz"), Need::Public),
        (Method::GET, Some("/v1/openapi.json"), Need::Public),
        (Method::GET, Some("/"), Need::Public),
        (Method::HEAD, Some("/ui/{file}"), Need::Public),
        // A path that is no route: public, it answers 404.
        (Method::GET, None, Need::Public),
        (Method::GET, Some("/metrics"), read),
        (Method::GET, Some("/v1/readings"), read),
        (Method::HEAD, Some("/v1/readings"), read),
        (Method::GET, Some("/v1/rules"), read),
        (Method::POST, Some("/v1/rules"), admin),
        (Method::PUT, Some("/v1/rules/{name}"), admin),
        (Method::POST, Some("/v1/alerts/{id}/ack"), control),
        (Method::POST, Some("/v1/devices/{id}/commands"), control),
        (Method::GET, Some("/v1/tokens"), admin),
        (Method::GET, Some("/v1/ws"), Need::Socket),
        // A method the route does not take asks the route's strictest
        // need, then answers 405.
        (Method::PUT, Some("/v1/readings"), read),
        (Method::GET, Some("/v1/alerts/{id}/ack"), control),
        (Method::PATCH, Some("/v1/rules/{name}"), admin),
    ];
    for (m, route, want) in table {
        assert_eq!(needed(&f.table, m, *route), Some(*want), "{m} {route:?}");
    }
    // A path the router matches but nobody declared.
    assert_eq!(needed(&f.table, &Method::GET, Some("/v1/secret")), None);
}

#[tokio::test]
async fn an_undeclared_route_is_refused() {
    let f = fixture().await;
    // The hub is open (loopback, no token): anyone is admin, and still a
    // route that declared no scope answers 403.
    let (router, table) = routes(&f.state).finish();
    let router = router
        .route("/v1/undeclared", axum::routing::post(|| async { "done" }))
        .route("/v1/rejects/raw", axum::routing::get(|| async { "rows" }));
    let router = telltale_api::with_layers(router, table, f.state.clone());
    for (method, uri) in [("POST", "/v1/undeclared"), ("GET", "/v1/rejects/raw")] {
        let a = request(&router, method, uri, &[], "").await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{method} {uri}: {}", a.raw);
        assert_eq!(a.body["code"], "route_not_declared", "{}", a.raw);
    }
    // The declared ones of the same router answer.
    let a = get(&router, "/v1/readings", &[]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.raw);
}

#[tokio::test]
async fn the_committed_document_is_the_generated_one() {
    let f = fixture().await;
    let generated = telltale_api::apidoc::text(&f.table.document());
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/openapi.json");
    if std::env::var_os("TELLTALE_BLESS").is_some() {
        std::fs::write(path, &generated).expect("write src/openapi.json");
    }
    assert!(
        generated == DOC,
        "src/openapi.json is not the document the routes generate: run TELLTALE_BLESS=1 cargo test -p telltale-api --test openapi, and read the diff"
    );
}
