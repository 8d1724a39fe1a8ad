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

/// A reading of `/v1/readings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// The reading's number in the store: assigned once in commit order,
    /// never reused.
    pub seq: u64,
    /// The device id.
    pub device: String,
    /// The metric name (SenML base name + name).
    pub metric: String,
    /// The SenML unit, if the reading has one.
    pub unit: Option<String>,
    /// The value.
    pub value: ReadingValue,
    /// The reading's time stamp, from the device's clock.
    pub time: String,
}

/// The newest reading of one (device, metric), in `/v1/latest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latest {
    /// The device id.
    pub device: String,
    /// The metric name.
    pub metric: String,
    /// The SenML unit, if the reading has one.
    pub unit: Option<String>,
    /// The newest value.
    pub value: ReadingValue,
    /// Its time stamp, from the device's clock.
    pub time: String,
    /// The `seq` of that reading in `/v1/readings` (which may since have
    /// left the ring).
    #[serde(rename = "readingSeq")]
    pub reading_seq: u64,
}

/// A device of `/v1/devices`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    /// The device id, as in its MQTT topics.
    pub id: String,
    /// From its last status message: `true` (birth), `false` (Last Will or
    /// clean disconnect), `None` if it never sent one.
    pub online: Option<bool>,
    /// Hub time of the commit that last stored a message from it.
    #[serde(rename = "lastSeen")]
    pub last_seen: Option<String>,
    /// Hub time of the first message seen from it; `None` for a device of
    /// an older database that has not talked since.
    #[serde(rename = "firstSeen")]
    pub first_seen: Option<String>,
    /// Agent name and version from its last status that named one.
    pub agent: Option<String>,
    /// Labels from its last status that carried them (empty when none).
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
pub struct AlertAck {
    /// Who acknowledged it (`api` or `websocket` when the request named no
    /// one).
    pub by: Option<String>,
    /// Hub time of the acknowledgement.
    pub at: Option<String>,
    /// A note for whoever looks at the alert next.
    pub note: Option<String>,
}

/// An alert of `/v1/alerts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    pub state: AlertState,
    /// The rule's severity.
    pub severity: Severity,
    /// One line for a person.
    pub summary: String,
    /// The rule's labels.
    pub labels: BTreeMap<String, String>,
    /// The value that last moved the alert, as the reading carried it.
    pub value: Option<Value>,
    /// The rule's limit, as text.
    pub threshold: String,
    /// When the condition first held.
    #[serde(rename = "startedAt")]
    pub started_at: String,
    /// When it started firing.
    #[serde(rename = "firedAt")]
    pub fired_at: Option<String>,
    /// When it resolved.
    #[serde(rename = "resolvedAt")]
    pub resolved_at: Option<String>,
    /// When it last changed.
    #[serde(rename = "updatedAt")]
    pub updated_at: String,
    /// Whether someone acknowledged it.
    pub acknowledged: bool,
    /// The acknowledgement, when there is one.
    pub ack: Option<AlertAck>,
}

/// A device command of `/v1/commands`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    pub state: CommandState,
    /// When the hub took it.
    #[serde(rename = "createdAt")]
    pub created_at: String,
    /// When it expires or times out.
    pub deadline: String,
    /// When it was published to the device.
    #[serde(rename = "sentAt")]
    pub sent_at: Option<String>,
    /// When the device confirmed receipt.
    #[serde(rename = "deliveredAt")]
    pub delivered_at: Option<String>,
    /// When it ended.
    #[serde(rename = "finishedAt")]
    pub finished_at: Option<String>,
    /// What the device answered, as it sent it.
    pub output: Option<Value>,
    /// Why it failed or did not finish, when the hub or device said.
    pub reason: Option<String>,
}

/// A payload the hub refused, in `/v1/rejects`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reject {
    /// The reject's row id.
    pub id: i64,
    /// Hub time of the reject.
    pub time: String,
    /// The MQTT topic it came on.
    pub topic: String,
    /// The device its topic names, if any.
    pub device: Option<String>,
    /// The reject kind (docs/wire.md), such as `malformed_json`.
    pub kind: String,
    /// What was wrong, for a person.
    pub reason: String,
    /// The payload's size in bytes.
    pub size: i64,
}
