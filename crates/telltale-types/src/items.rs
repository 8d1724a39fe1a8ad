//! The items of each collection, as docs/api.md ("Items", "Commands") and
//! docs/alerts.md show them. Times are RFC 3339 text in UTC with
//! milliseconds, kept as the hub wrote them.

use crate::states::{AlertState, CommandState, Presence, Severity};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A reading's value: a number, a boolean or a string (a SenML data value
/// is a string of unpadded base64url).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ReadingValue {
    /// SenML `v`.
    Number(f64),
    /// SenML `vb`.
    Bool(bool),
    /// SenML `vs`, or `vd` as base64url.
    Text(String),
}

/// By hand: utoipa would write the untagged enum as a `oneOf` of three
/// schemas, where the document says the same with one `type` list.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for ReadingValue {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
        ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([
                Type::Number,
                Type::Boolean,
                Type::String,
            ]))
            .description(Some(
                "The value: a number, a boolean, a string, or data as unpadded base64url text.",
            ))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for ReadingValue {}

impl ReadingValue {
    /// The value for a person: numbers and booleans as JSON, strings bare.
    pub fn text(&self) -> String {
        match self {
            // serde_json's text, so that a value reads as the hub sent it.
            ReadingValue::Number(x) => Value::from(*x).to_string(),
            ReadingValue::Bool(b) => b.to_string(),
            ReadingValue::Text(s) => s.clone(),
        }
    }
}

/// One sensor reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"seq": 1043, "device": "demo-freezer", "metric": "temp", "unit": "Cel", "value": -17.8, "time": "2025-06-01T12:00:01.000Z"})))]
pub struct Reading {
    /// The reading's sequence number in the store: assigned once, in
    /// commit order, never reused.
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub seq: u64,
    /// Device id.
    pub device: String,
    /// Metric name (SenML base name + name).
    pub metric: String,
    /// Unit (SenML), or null.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub unit: Option<String>,
    /// The value: a number, a boolean, a string, or data as unpadded
    /// base64url text.
    #[cfg_attr(feature = "openapi", schema(inline))]
    pub value: ReadingValue,
    /// Time of the reading, from the device's clock (RFC 3339, UTC,
    /// milliseconds).
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub time: String,
}

/// The newest reading of one (device, metric), by the reading's time stamp.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"device": "demo-freezer", "metric": "temp", "unit": "Cel", "value": -17.8, "time": "2025-06-01T12:00:01.000Z", "readingSeq": 1043})))]
pub struct Latest {
    /// The device id.
    pub device: String,
    /// The metric name.
    pub metric: String,
    /// The SenML unit, if the reading has one.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub unit: Option<String>,
    /// The value: a number, a boolean, a string, or data as unpadded
    /// base64url text.
    #[cfg_attr(feature = "openapi", schema(inline))]
    pub value: ReadingValue,
    /// Time of the reading, from the device's clock.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub time: String,
    /// `seq` of the reading in /v1/readings (which may since have left the
    /// ring).
    #[serde(rename = "readingSeq")]
    pub reading_seq: u64,
}

/// A device the hub has heard from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"id": "demo-freezer", "online": true, "lastSeen": "2025-06-01T12:00:01.250Z", "firstSeen": "2025-06-01T09:00:00.250Z", "agent": "telltale-agent/0.1.0", "labels": {"room": "kitchen", "site": "demo"}})))]
pub struct Device {
    /// The device id, as in its MQTT topics.
    pub id: String,
    /// From the device's last status message (birth: true; Last Will or
    /// clean disconnect: false); null when it never sent one.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub online: Option<bool>,
    /// Hub time of the commit that last stored a message from it. Exact in
    /// lists and single reads; watch events are sent when it moved more
    /// than 10 s, so in events it may lag by up to that.
    #[serde(rename = "lastSeen")]
    #[cfg_attr(feature = "openapi", schema(format = DateTime, required = true))]
    pub last_seen: Option<String>,
    /// Hub time of the first message seen from it; null for a device known
    /// from an older database that has not talked since.
    #[serde(rename = "firstSeen")]
    #[cfg_attr(feature = "openapi", schema(format = DateTime, required = true))]
    pub first_seen: Option<String>,
    /// Agent name and version from its last status that named one.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub agent: Option<String>,
    /// Labels from its last status that carried them.
    pub labels: BTreeMap<String, String>,
}

impl Device {
    /// `online` as a presence.
    pub fn presence(&self) -> Presence {
        Presence::from_online(self.online)
    }
}

/// Who acknowledged an alert, when, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertAck {
    /// Who acknowledged it (`api` or `websocket` when the request named no
    /// one).
    #[cfg_attr(feature = "openapi", schema(required = false))]
    pub by: Option<String>,
    /// Hub time of the acknowledgement.
    #[cfg_attr(feature = "openapi", schema(format = DateTime, required = false))]
    pub at: Option<String>,
    /// A note for whoever looks at the alert next.
    #[cfg_attr(feature = "openapi", schema(required = false))]
    pub note: Option<String>,
}

/// An alert: one per rule and series while open (pending or firing);
/// resolved alerts stay in the alert history (a ring of its own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"id": 1, "rule": "freezer-warm", "device": "demo-freezer", "metric": "temp", "state": "firing", "severity": "major", "summary": "freezer-warm: temp of demo-freezer is -14.2 (threshold -15)", "labels": {}, "value": -14.2, "threshold": "-15", "startedAt": "2025-06-01T12:00:00.000Z", "firedAt": "2025-06-01T12:10:00.000Z", "resolvedAt": null, "updatedAt": "2025-06-01T12:10:00.000Z", "acknowledged": false, "ack": null})))]
pub struct Alert {
    /// The alert's id, never reused.
    pub id: u64,
    /// The rule that raised it.
    pub rule: String,
    /// The device it is about.
    pub device: String,
    /// The metric the rule watches.
    pub metric: String,
    /// Where it is in its lifecycle.
    #[cfg_attr(feature = "openapi", schema(inline))]
    pub state: AlertState,
    /// The rule's severity.
    #[cfg_attr(feature = "openapi", schema(inline))]
    pub severity: Severity,
    /// One line for a person, rendered from the rule's summary template.
    pub summary: String,
    /// The rule's labels.
    pub labels: BTreeMap<String, String>,
    /// The value behind the last change, as the reading carried it (null
    /// for no-data alerts).
    #[cfg_attr(feature = "openapi", schema(value_type = Value, required = true))]
    pub value: Option<Value>,
    /// The rule's limit, as text.
    pub threshold: String,
    /// When it became pending (or firing at once).
    #[serde(rename = "startedAt")]
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub started_at: String,
    /// When it started firing.
    #[serde(rename = "firedAt")]
    #[cfg_attr(feature = "openapi", schema(format = DateTime, required = true))]
    pub fired_at: Option<String>,
    /// When it resolved.
    #[serde(rename = "resolvedAt")]
    #[cfg_attr(feature = "openapi", schema(format = DateTime, required = true))]
    pub resolved_at: Option<String>,
    /// When it last changed.
    #[serde(rename = "updatedAt")]
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub updated_at: String,
    /// Whether someone acknowledged it.
    pub acknowledged: bool,
    /// The acknowledgement, when there is one.
    #[cfg_attr(feature = "openapi", schema(inline, required = true))]
    pub ack: Option<AlertAck>,
}

/// A device command and where it is in its lifecycle: queued → sent →
/// delivered → succeeded | failed, or expired (the deadline passed before
/// the device had it) or timeout (delivered, no result by the deadline).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"id": 3, "device": "demo-freezer", "name": "ping", "params": {}, "state": "succeeded", "createdAt": "2026-11-29T07:00:00.000Z", "deadline": "2026-11-29T07:00:30.000Z", "sentAt": "2026-11-29T07:00:00.002Z", "deliveredAt": "2026-11-29T07:00:00.005Z", "finishedAt": "2026-11-29T07:00:00.006Z", "output": {"pong": true}, "reason": null})))]
pub struct Command {
    /// The command's id, never reused.
    pub id: u64,
    /// The device it is for.
    pub device: String,
    /// The command's name (`ping`, `set_interval`, ... or one the agent
    /// configures).
    pub name: String,
    /// Its parameters, as the request gave them.
    pub params: Map<String, Value>,
    /// Where it is in its lifecycle.
    #[cfg_attr(feature = "openapi", schema(inline))]
    pub state: CommandState,
    /// When the hub took it.
    #[serde(rename = "createdAt")]
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created_at: String,
    /// When it expires or times out.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub deadline: String,
    /// When it was published to the device.
    #[serde(rename = "sentAt")]
    #[cfg_attr(feature = "openapi", schema(format = DateTime, required = true))]
    pub sent_at: Option<String>,
    /// When the device confirmed receipt.
    #[serde(rename = "deliveredAt")]
    #[cfg_attr(feature = "openapi", schema(format = DateTime, required = true))]
    pub delivered_at: Option<String>,
    /// When it ended.
    #[serde(rename = "finishedAt")]
    #[cfg_attr(feature = "openapi", schema(format = DateTime, required = true))]
    pub finished_at: Option<String>,
    /// What the device reported (JSON), if anything.
    #[cfg_attr(feature = "openapi", schema(value_type = Value, required = true))]
    pub output: Option<Value>,
    /// Why it failed or did not finish, when the hub or device said.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub reason: Option<String>,
}

/// A refused payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Reject {
    /// The reject's row id.
    pub id: i64,
    /// Hub time it arrived.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub time: String,
    /// The MQTT topic it came on.
    pub topic: String,
    /// The device id, when the topic named a valid one.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub device: Option<String>,
    /// Short reason code (docs/wire.md), such as `malformed_json`.
    pub kind: String,
    /// Human-readable reason.
    pub reason: String,
    /// Size of the payload in bytes.
    pub size: i64,
}
