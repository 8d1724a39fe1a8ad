//! Each type against samples copied from docs/api.md and docs/alerts.md:
//! read, written again, and compared with the sample (as JSON, and as text
//! where the sample lists the fields in the order the type writes them).
#![allow(clippy::unwrap_used)]

use crate::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

/// Reads `sample` as a `T`, writes it again and checks that nothing was
/// lost, renamed or added.
fn round_trip<T: Serialize + DeserializeOwned>(sample: &str) -> T {
    let t: T = serde_json::from_str(sample).unwrap_or_else(|e| panic!("{e}: {sample}"));
    let back = serde_json::to_string(&t).unwrap();
    let want: Value = serde_json::from_str(sample).unwrap();
    let got: Value = serde_json::from_str(&back).unwrap();
    assert_eq!(got, want, "{sample}");
    t
}

/// As [`round_trip`], and the text is the sample's, byte for byte.
fn same_text<T: Serialize + DeserializeOwned>(sample: &str) -> T {
    let t = round_trip::<T>(sample);
    assert_eq!(serde_json::to_string(&t).unwrap(), sample);
    t
}

const READING: &str = r#"{"seq":1043,"device":"demo-freezer","metric":"temp","unit":"Cel","value":-17.81,"time":"2025-06-01T12:17:23.412Z"}"#;
const LATEST: &str = r#"{"device":"demo-freezer","metric":"temp","unit":"Cel","value":-17.81,"time":"2025-06-01T12:17:23.412Z","readingSeq":1043}"#;
const DEVICE: &str = r#"{"id":"demo-freezer","online":true,"lastSeen":"2025-06-01T12:17:23.750Z","firstSeen":"2025-06-01T09:02:11.250Z","agent":"telltale-agent/0.1.0","labels":{"room":"kitchen","site":"demo"}}"#;
const REJECT: &str = r#"{"id":7,"time":"2025-06-01T12:00:03.101Z","topic":"telltale/v1/devices/hand-1/telemetry","device":"hand-1","kind":"malformed_json","reason":"…","size":12}"#;
const ALERT: &str = r#"{"id":7,"rule":"freezer-warm","device":"freezer-2","metric":"temp","state":"firing","severity":"major","summary":"freezer-2 is at -14.2 Cel (limit -15)","labels":{},"value":-14.2,"threshold":"-15","startedAt":"2026-11-29T07:00:00.000Z","firedAt":"2026-11-29T07:10:00.000Z","resolvedAt":null,"updatedAt":"2026-11-29T07:10:00.000Z","acknowledged":false,"ack":null}"#;
const COMMAND: &str = r#"{"id":3,"device":"demo-freezer","name":"ping","params":{},"state":"succeeded","createdAt":"2026-11-29T07:00:00.000Z","deadline":"2026-11-29T07:00:10.000Z","sentAt":"2026-11-29T07:00:00.002Z","deliveredAt":"2026-11-29T07:00:00.004Z","finishedAt":"2026-11-29T07:00:00.005Z","output":{"pong":true,"agent":"telltale-agent/0.1.0","time":1795938000004},"reason":null}"#;

#[test]
fn items() {
    let r: Reading = same_text(READING);
    assert_eq!(r.value, ReadingValue::Number(-17.81));
    assert_eq!(r.unit.as_deref(), Some("Cel"));
    let l: Latest = same_text(LATEST);
    assert_eq!(l.reading_seq, 1043);
    let d: Device = same_text(DEVICE);
    assert_eq!(d.presence(), Presence::Online);
    assert_eq!(d.labels["room"], "kitchen");
    let j: Reject = same_text(REJECT);
    assert_eq!(j.device.as_deref(), Some("hand-1"));
    let a: Alert = same_text(ALERT);
    assert_eq!(
        (a.state, a.severity, a.ack),
        (AlertState::Firing, Severity::Major, None)
    );
    assert_eq!(a.value, Some(json!(-14.2)));
    // `output` is free JSON: its keys come back sorted.
    let c: Command = round_trip(COMMAND);
    assert_eq!(c.state, CommandState::Succeeded);
    assert!(c.state.is_final());
    assert_eq!(c.output.unwrap()["pong"], true);
}

#[test]
fn nulls_are_written_as_null() {
    // A reading without a unit, a device that never sent a status, an
    // acknowledged alert, a command still queued: as the API writes them.
    let r: Reading = same_text(
        r#"{"seq":2,"device":"d","metric":"state","unit":null,"value":"open","time":"2025-06-01T12:00:02.000Z"}"#,
    );
    assert_eq!(r.value.text(), "open");
    let r: Reading = same_text(
        r#"{"seq":3,"device":"d","metric":"door","unit":null,"value":true,"time":"2025-06-01T12:00:02.000Z"}"#,
    );
    assert_eq!(r.value, ReadingValue::Bool(true));
    let d: Device = same_text(
        r#"{"id":"c1","online":null,"lastSeen":"2025-06-01T11:55:00.000Z","firstSeen":null,"agent":null,"labels":{}}"#,
    );
    assert_eq!(d.presence(), Presence::Unknown);
    let a: Alert = same_text(
        r#"{"id":3,"rule":"r","device":"d","metric":"temp","state":"resolved","severity":"info","summary":"s","labels":{"team":"ops"},"value":null,"threshold":"5","startedAt":"2026-11-29T07:00:00.000Z","firedAt":null,"resolvedAt":"2026-11-29T07:10:00.000Z","updatedAt":"2026-11-29T07:10:00.000Z","acknowledged":true,"ack":{"by":"ann","at":"2026-11-29T07:05:00.000Z","note":null}}"#,
    );
    assert_eq!(a.ack.unwrap().by.as_deref(), Some("ann"));
    let c: Command = same_text(
        r#"{"id":4,"device":"d","name":"set_interval","params":{"seconds":5},"state":"queued","createdAt":"2026-11-29T07:00:00.000Z","deadline":"2026-11-29T07:00:30.000Z","sentAt":null,"deliveredAt":null,"finishedAt":null,"output":null,"reason":null}"#,
    );
    assert_eq!(c.output, None);
    assert!(!c.state.is_final());
}

#[test]
fn states_use_the_apis_names() {
    for s in CommandState::ALL {
        assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
        assert_eq!(
            round_trip::<CommandState>(&format!("\"{}\"", s.as_str())),
            s
        );
    }
    for s in [
        AlertState::Pending,
        AlertState::Firing,
        AlertState::Resolved,
    ] {
        assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
    }
    for s in [
        Severity::Critical,
        Severity::Major,
        Severity::Minor,
        Severity::Warning,
        Severity::Info,
    ] {
        assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
    }
    for p in [Presence::Online, Presence::Offline, Presence::Unknown] {
        assert_eq!(serde_json::to_value(p).unwrap(), json!(p.as_str()));
    }
    for r in [
        Resource::Readings,
        Resource::Latest,
        Resource::Devices,
        Resource::Alerts,
        Resource::Commands,
    ] {
        assert_eq!(serde_json::to_value(r).unwrap(), json!(r.as_str()));
    }
    assert!(serde_json::from_str::<CommandState>("\"lost\"").is_err());
}

#[test]
fn lists() {
    let page: List<Reading> = same_text(&format!(
        r#"{{"kind":"ReadingList","resourceVersion":"3f9a61c2-1042","items":[{READING}],"continue":"3f9a61c2.l.5.1042"}}"#
    ));
    assert_eq!(page.next.as_deref(), Some("3f9a61c2.l.5.1042"));
    assert_eq!(page.items[0].seq, 1043);
    // The last page has no `continue` at all.
    let last: List<Device> = same_text(&format!(
        r#"{{"kind":"DeviceList","resourceVersion":"3f9a61c2-7","items":[{DEVICE}]}}"#
    ));
    assert_eq!(last.next, None);
    let rejects: List<Reject> = round_trip(&format!(
        r#"{{"kind":"RejectList","resourceVersion":"3f9a61c2-4","items":[{REJECT}]}}"#
    ));
    assert_eq!(rejects.items.len(), 1);
}

#[test]
fn watch_events() {
    let added =
        format!(r#"{{"type":"ADDED","resourceVersion":"3f9a61c2-1043","object":{READING}}}"#);
    let e: WatchEvent<Reading> = same_text(&added);
    assert_eq!(
        (e.type_name(), e.resource_version()),
        ("ADDED", Some("3f9a61c2-1043"))
    );
    assert_eq!(e.item().map(|r| r.seq), Some(1043));
    // Any collection's events read as JSON values too.
    let e: WatchEvent<Value> = round_trip(&added);
    assert_eq!(e.item().unwrap()["device"], "demo-freezer");
    let e: WatchEvent<Latest> = same_text(&format!(
        r#"{{"type":"MODIFIED","resourceVersion":"3f9a61c2-1044","object":{LATEST}}}"#
    ));
    assert_eq!(e.type_name(), "MODIFIED");
    let bm = r#"{"type":"BOOKMARK","resourceVersion":"3f9a61c2-1051","object":{"kind":"Bookmark","resourceVersion":"3f9a61c2-1051","initialEventsEnd":false}}"#;
    let e: WatchEvent<Reading> = same_text(bm);
    let WatchEvent::Bookmark { object, .. } = &e else {
        panic!("{e:?}")
    };
    assert!(!object.initial_events_end);
    assert_eq!(e.item(), None);
    let err = r#"{"type":"ERROR","object":{"type":"https://telltale.invalid/problems/expired","title":"Gone","status":410,"detail":"too old","code":"expired","oldestResourceVersion":"3f9a61c2-900"}}"#;
    let e: WatchEvent<Value> = same_text(err);
    assert_eq!(e.resource_version(), None);
    let WatchEvent::Error { object } = e else {
        panic!()
    };
    assert_eq!(object.status, 410);
    assert_eq!(
        object.oldest_resource_version.as_deref(),
        Some("3f9a61c2-900")
    );
}

#[test]
fn problems() {
    let p: Problem = same_text(
        r#"{"type":"https://telltale.invalid/problems/bad_filter","title":"Bad Request","status":400,"detail":"expected a number, a quoted string, true or false at 7","code":"bad_filter","param":"filter","position":7}"#,
    );
    assert_eq!((p.param.as_deref(), p.position), (Some("filter"), Some(7)));
    let p: Problem = same_text(
        r#"{"type":"https://telltale.invalid/problems/bad_parameter","title":"Bad Request","status":400,"detail":"heartbeatSeconds must be a whole number of seconds from 1 to 300","code":"bad_parameter","param":"heartbeatSeconds"}"#,
    );
    assert_eq!(p.code, "bad_parameter");
    // Another server's problem: what is there, the rest empty.
    let p: Problem = serde_json::from_str(r#"{"title":"Not Found"}"#).unwrap();
    assert_eq!((p.title.as_str(), p.detail.as_str()), ("Not Found", ""));
}

#[test]
fn client_messages() {
    let m: ClientMessage = round_trip(
        r#"{"id":1,"type":"watch","resource":"alerts","severity":"critical,major","sendInitialEvents":true}"#,
    );
    let ClientMessage::Watch(w) = &m else {
        panic!("{m:?}")
    };
    assert_eq!(w.resource, Resource::Alerts);
    let m: ClientMessage = round_trip(r#"{"id":2,"type":"unwatch","watch":1}"#);
    assert_eq!(m, ClientMessage::Unwatch { id: 2, watch: 1 });
    let m: ClientMessage = round_trip(
        r#"{"id":3,"type":"command","device":"d1","name":"set_interval","params":{"seconds":5},"timeoutSeconds":10}"#,
    );
    let ClientMessage::Command(c) = &m else {
        panic!("{m:?}")
    };
    assert_eq!(
        (c.timeout_seconds, c.idempotency_key.as_deref()),
        (Some(10), None)
    );
    let m: ClientMessage =
        round_trip(r#"{"id":4,"type":"ack_alert","alert":7,"by":"ann","note":"on it"}"#);
    assert!(matches!(
        m,
        ClientMessage::AckAlert(AckAlertMessage { alert: 7, .. })
    ));
    let m: ClientMessage = round_trip(r#"{"id":5,"type":"ping"}"#);
    assert_eq!(m, ClientMessage::Ping { id: 5 });
    let m: ClientMessage = round_trip(r#"{"type":"auth","token":"tlt_x"}"#);
    assert!(matches!(m, ClientMessage::Auth { id: None, .. }));
    // A parameter left out is not written (the hub refuses null).
    let w =
        serde_json::to_value(ClientMessage::Watch(WatchMessage::new(9, Resource::Latest))).unwrap();
    assert_eq!(w, json!({"id": 9, "type": "watch", "resource": "latest"}));
}

#[test]
fn server_messages() {
    let m: ServerMessage = round_trip(r#"{"id":1,"type":"result","success":true}"#);
    assert!(matches!(
        m,
        ServerMessage::Result(Reply {
            id: Some(1),
            success: true,
            ..
        })
    ));
    let m: ServerMessage = round_trip(&format!(
        r#"{{"id":1,"type":"event","event":{{"type":"ADDED","resourceVersion":"3f9a61c2-1043","object":{READING}}}}}"#
    ));
    let ServerMessage::Event { id: 1, event } = m else {
        panic!("{m:?}")
    };
    assert_eq!(event.item().unwrap()["seq"], 1043);
    let m: ServerMessage = round_trip(&format!(
        r#"{{"command":{COMMAND},"id":3,"success":true,"type":"result"}}"#
    ));
    let ServerMessage::Result(Reply {
        command: Some(c), ..
    }) = m
    else {
        panic!("{m:?}")
    };
    assert_eq!(c.id, 3);
    let m: ServerMessage = round_trip(&format!(
        r#"{{"alert":{ALERT},"id":4,"success":true,"type":"result"}}"#
    ));
    assert!(matches!(
        m,
        ServerMessage::Result(Reply { alert: Some(_), .. })
    ));
    let m: ServerMessage = round_trip(
        r#"{"error":{"type":"https://telltale.invalid/problems/forbidden","title":"Forbidden","status":403,"detail":"this needs scope control","code":"forbidden"},"id":null,"success":false,"type":"result"}"#,
    );
    let ServerMessage::Result(r) = m else {
        panic!("{m:?}")
    };
    assert_eq!((r.id, r.error.unwrap().status), (None, 403));
    let m: ServerMessage = round_trip(r#"{"id":5,"type":"pong"}"#);
    assert_eq!(m, ServerMessage::Pong { id: 5 });
    let m: ServerMessage = round_trip(r#"{"type":"auth_ok","scope":"read"}"#);
    assert!(matches!(m, ServerMessage::AuthOk { id: None, .. }));
}

#[test]
fn request_bodies() {
    // docs/api.md, Commands; docs/alerts.md, Acknowledge.
    let c: CommandRequest = same_text(r#"{"name":"ping","params":{},"timeoutSeconds":10}"#);
    assert_eq!(c.timeout_seconds, Some(10));
    let c: CommandRequest = serde_json::from_str(r#"{"name":"ping"}"#).unwrap();
    assert_eq!(
        serde_json::to_string(&c).unwrap(),
        r#"{"name":"ping","params":{}}"#
    );
    let a: AckRequest = same_text(r#"{"by":"ann","note":"door was open, closed it"}"#);
    assert_eq!(a.by.as_deref(), Some("ann"));
    assert_eq!(serde_json::to_string(&AckRequest::default()).unwrap(), "{}");
    assert!(serde_json::from_str::<AckRequest>(r#"{"who":"ann"}"#).is_err());
}

/// With `openapi`: each item's generated schema names exactly the fields
/// the type writes, requires every one of them (an absent value is written
/// as `null`, so the nullable ones are required too), and lets `null` only
/// where the type writes it.
#[cfg(feature = "openapi")]
#[test]
fn schemas_match_what_the_types_write() {
    use utoipa::PartialSchema;
    fn check<T: PartialSchema>(name: &str, sample: &str, nullable: &[&str]) {
        let schema = serde_json::to_value(T::schema()).unwrap();
        let sample: Value = serde_json::from_str(sample).unwrap();
        let mut written: Vec<&str> = sample
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        written.sort();
        let mut props: Vec<&str> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        props.sort();
        assert_eq!(props, written, "{name}: properties");
        let mut required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        required.sort();
        assert_eq!(required, written, "{name}: required");
        for (field, p) in schema["properties"].as_object().unwrap() {
            let types = &p["type"];
            let null = types.as_array().is_some_and(|t| t.contains(&json!("null")));
            let any = p.get("type").is_none();
            assert!(
                null == nullable.contains(&field.as_str()) || any,
                "{name}.{field}: nullable is {null}"
            );
        }
    }
    check::<Reading>("Reading", READING, &["unit"]);
    check::<Latest>("Latest", LATEST, &["unit"]);
    check::<Device>(
        "Device",
        DEVICE,
        &["online", "lastSeen", "firstSeen", "agent"],
    );
    check::<Reject>("Reject", REJECT, &["device"]);
    check::<Alert>("Alert", ALERT, &["firedAt", "resolvedAt", "ack"]);
    check::<Command>(
        "Command",
        COMMAND,
        &["sentAt", "deliveredAt", "finishedAt", "reason"],
    );
}
