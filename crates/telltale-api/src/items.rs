//! The objects of each collection, as the watch engine and the filter see
//! them: a store row, its filter fields, and its JSON, serialized once.

use crate::collection::Resource;
use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Value as Json};
use std::sync::{Arc, OnceLock};
use telltale_filter::{Field, FieldValue, Fields};
use telltale_store::{AlertRow, CommandRow, DeviceRow, LatestRow, StoredReading, StoredValue};
use telltale_watch::{Item, Kind};

/// An item's watch event in its usual form (`ADDED` in a log, `ADDED` or
/// `MODIFIED` by [`Item::created`] in a state collection), encoded once per
/// transport and shared by every watcher that sends it.
#[derive(Debug, Default)]
pub struct Frames {
    /// `event:`, `id:` and `data:` lines and the blank line.
    pub sse: OnceLock<Bytes>,
    /// One JSON line.
    pub ndjson: OnceLock<Bytes>,
}

/// An item that keeps its encoded events.
pub trait Framed: Item {
    /// The item's cache.
    fn frames(&self) -> &Frames;
}

/// RFC 3339 text of a time in ms since the epoch.
pub fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

fn value_json(v: &StoredValue) -> Json {
    match v {
        StoredValue::Num(x) => json!(x),
        StoredValue::Bool(b) => json!(b),
        StoredValue::Str(s) => json!(s),
        StoredValue::Data(d) => json!(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d)),
    }
}

fn value_field(v: &StoredValue) -> Option<FieldValue<'_>> {
    match v {
        StoredValue::Num(x) => Some(FieldValue::Num(*x)),
        StoredValue::Bool(b) => Some(FieldValue::Bool(*b)),
        StoredValue::Str(s) => Some(FieldValue::Str(s)),
        StoredValue::Data(_) => None,
    }
}

/// The filter fields of anything shaped like a reading (a reading, a latest
/// value).
fn reading_field<'a>(
    f: Field<'_>,
    device: &'a str,
    metric: &'a str,
    unit: Option<&'a str>,
    value: &'a StoredValue,
) -> Option<FieldValue<'a>> {
    match f {
        Field::Device => Some(FieldValue::Str(device)),
        Field::Metric => Some(FieldValue::Str(metric)),
        Field::Unit => unit.map(FieldValue::Str),
        Field::Value => value_field(value),
        _ => None,
    }
}

/// A reading of `/v1/readings`.
#[derive(Debug)]
pub struct ReadingItem {
    pub row: StoredReading,
    /// Built by the first reader that needs it, then shared.
    json: OnceLock<String>,
    frames: Frames,
}

impl ReadingItem {
    pub fn new(row: StoredReading) -> Arc<ReadingItem> {
        Arc::new(ReadingItem {
            row,
            json: OnceLock::new(),
            frames: Frames::default(),
        })
    }
}

impl Framed for ReadingItem {
    fn frames(&self) -> &Frames {
        &self.frames
    }
}

impl Fields for ReadingItem {
    fn field(&self, f: Field<'_>) -> Option<FieldValue<'_>> {
        let r = &self.row;
        reading_field(f, &r.device, &r.metric, r.unit.as_deref(), &r.value)
    }
}

impl Item for ReadingItem {
    fn seq(&self) -> u64 {
        self.row.seq
    }
    fn key(&self) -> &str {
        &self.row.device
    }
    fn json(&self) -> &str {
        self.json.get_or_init(|| {
            let row = &self.row;
            json!({
                "seq": row.seq,
                "device": &*row.device,
                "metric": &*row.metric,
                "unit": row.unit.as_deref(),
                "value": value_json(&row.value),
                "time": rfc3339(row.ts_ms),
            })
            .to_string()
        })
    }
    fn ts_ms(&self) -> Option<i64> {
        Some(self.row.ts_ms)
    }
}

impl Resource for ReadingItem {
    const NAME: &'static str = "readings";
    const LIST_KIND: &'static str = "ReadingList";
    const KIND: Kind = Kind::Log;
    const SUMMARY: &'static str = "Readings: list, long poll or watch";
    const DESCRIPTION: &'static str = "The readings log (append-only; events are `ADDED`). A snapshot lists readings oldest first; a watch without `resourceVersion` or `since` starts now.";
}

/// The newest reading of one (device, metric), in `/v1/latest`.
#[derive(Debug)]
pub struct LatestItem {
    pub row: LatestRow,
    key: String,
    json: OnceLock<String>,
    frames: Frames,
}

impl LatestItem {
    pub fn new(row: LatestRow) -> Arc<LatestItem> {
        let key = format!("{}/{}", row.device, row.metric);
        Arc::new(LatestItem {
            row,
            key,
            json: OnceLock::new(),
            frames: Frames::default(),
        })
    }
}

impl Framed for LatestItem {
    fn frames(&self) -> &Frames {
        &self.frames
    }
}

impl Fields for LatestItem {
    fn field(&self, f: Field<'_>) -> Option<FieldValue<'_>> {
        let r = &self.row;
        reading_field(f, &r.device, &r.metric, r.unit.as_deref(), &r.value)
    }
}

impl Item for LatestItem {
    fn seq(&self) -> u64 {
        self.row.seq
    }
    fn key(&self) -> &str {
        &self.key
    }
    fn json(&self) -> &str {
        self.json.get_or_init(|| {
            let row = &self.row;
            json!({
                "device": &*row.device,
                "metric": &*row.metric,
                "unit": row.unit.as_deref(),
                "value": value_json(&row.value),
                "time": rfc3339(row.ts_ms),
                "readingSeq": row.reading_seq,
            })
            .to_string()
        })
    }
    fn ts_ms(&self) -> Option<i64> {
        Some(self.row.ts_ms)
    }
}

impl Resource for LatestItem {
    const NAME: &'static str = "latest";
    const LIST_KIND: &'static str = "LatestList";
    const KIND: Kind = Kind::State;
    const SUMMARY: &'static str = "Newest reading per (device, metric): list, long poll or watch";
    const DESCRIPTION: &'static str = "A state collection keyed by (device, metric). A live change is a `MODIFIED` event; `sendInitialEvents=true` sends the current state first as `ADDED` events.";
}

/// A device of `/v1/devices`.
#[derive(Debug)]
pub struct DeviceItem {
    pub row: DeviceRow,
    json: String,
    frames: Frames,
}

impl Framed for DeviceItem {
    fn frames(&self) -> &Frames {
        &self.frames
    }
}

impl DeviceItem {
    pub fn new(row: DeviceRow) -> Arc<DeviceItem> {
        let json = json!({
            "id": &*row.id,
            "online": row.online,
            "lastSeen": row.last_seen_ms.map(rfc3339),
            "firstSeen": row.first_seen_ms.map(rfc3339),
            "agent": row.agent,
            "labels": row.labels,
        })
        .to_string();
        Arc::new(DeviceItem {
            row,
            json,
            frames: Frames::default(),
        })
    }

    fn state(&self) -> &'static str {
        match self.row.online {
            Some(true) => "online",
            Some(false) => "offline",
            None => "unknown",
        }
    }
}

impl Fields for DeviceItem {
    fn field(&self, f: Field<'_>) -> Option<FieldValue<'_>> {
        match f {
            Field::Device => Some(FieldValue::Str(&self.row.id)),
            Field::State => Some(FieldValue::Str(self.state())),
            Field::Label(k) => self.row.labels.get(k).map(|v| FieldValue::Str(v)),
            _ => None,
        }
    }
}

impl Item for DeviceItem {
    fn seq(&self) -> u64 {
        self.row.seq
    }
    fn key(&self) -> &str {
        &self.row.id
    }
    fn json(&self) -> &str {
        &self.json
    }
}

impl Resource for DeviceItem {
    const NAME: &'static str = "devices";
    const LIST_KIND: &'static str = "DeviceList";
    const KIND: Kind = Kind::State;
    const SUMMARY: &'static str = "Devices: list, long poll or watch";
    const DESCRIPTION: &'static str = "A state collection keyed by device id. A device changes when it is new, when its presence, agent or labels change, or when its `lastSeen` moved more than 10 s past the value last sent in an event.";
}

/// An alert of `/v1/alerts`.
#[derive(Debug)]
pub struct AlertItem {
    pub row: AlertRow,
    key: String,
    /// The value as the filter sees it (parsed once from the row's JSON).
    value: Option<StoredValue>,
    json: String,
    frames: Frames,
}

impl AlertItem {
    pub fn new(row: AlertRow) -> Arc<AlertItem> {
        let value: Option<Json> = row
            .value
            .as_deref()
            .and_then(|v| serde_json::from_str(v).ok());
        let json = json!({
            "id": row.id,
            "rule": row.rule,
            "device": row.device,
            "metric": row.metric,
            "state": row.state,
            "severity": row.severity,
            "summary": row.summary,
            "labels": row.labels,
            "value": value,
            "threshold": row.threshold,
            "startedAt": rfc3339(row.started_ms),
            "firedAt": row.fired_ms.map(rfc3339),
            "resolvedAt": row.resolved_ms.map(rfc3339),
            "updatedAt": rfc3339(row.updated_ms),
            "acknowledged": row.acknowledged,
            "ack": row.acknowledged.then(|| json!({
                "by": row.ack_by,
                "at": row.ack_at_ms.map(rfc3339),
                "note": row.ack_note,
            })),
        })
        .to_string();
        let value = value.and_then(|v| match v {
            Json::Number(n) => n.as_f64().map(StoredValue::Num),
            Json::Bool(b) => Some(StoredValue::Bool(b)),
            Json::String(s) => Some(StoredValue::Str(s)),
            _ => None,
        });
        Arc::new(AlertItem {
            // Zero-padded: key order (paging) is id order.
            key: format!("{:020}", row.id),
            row,
            value,
            json,
            frames: Frames::default(),
        })
    }
}

impl Framed for AlertItem {
    fn frames(&self) -> &Frames {
        &self.frames
    }
}

impl Fields for AlertItem {
    fn field(&self, f: Field<'_>) -> Option<FieldValue<'_>> {
        let r = &self.row;
        match f {
            Field::Device => Some(FieldValue::Str(&r.device)),
            Field::Metric => Some(FieldValue::Str(&r.metric)),
            Field::Value => self.value.as_ref().and_then(value_field),
            Field::Severity => Some(FieldValue::Str(&r.severity)),
            Field::State => Some(FieldValue::Str(r.state.as_str())),
            Field::Rule => Some(FieldValue::Str(&r.rule)),
            Field::Label(k) => r.labels.get(k).map(|v| FieldValue::Str(v)),
            Field::Unit => None,
        }
    }
}

impl Item for AlertItem {
    fn seq(&self) -> u64 {
        self.row.seq
    }
    fn key(&self) -> &str {
        &self.key
    }
    fn json(&self) -> &str {
        &self.json
    }
}

impl Resource for AlertItem {
    const NAME: &'static str = "alerts";
    const LIST_KIND: &'static str = "AlertList";
    const KIND: Kind = Kind::State;
    const SHORTHANDS: &'static [&'static str] = &["severity", "state"];
    const SUMMARY: &'static str = "Alerts: list, long poll or watch";
    const DESCRIPTION: &'static str = "A state collection keyed by alert id: open alerts and the alert history. An alert changes when it becomes pending, fires, resolves or is acknowledged. Filter with `severity`, `state`, `device`, `metric` or `filter` (fields device, metric, value, severity, state, rule, labels.<key>).";
}

/// A device command of `/v1/commands`.
#[derive(Debug)]
pub struct CommandItem {
    pub row: CommandRow,
    key: String,
    json: String,
    frames: Frames,
}

impl CommandItem {
    pub fn new(row: CommandRow) -> Arc<CommandItem> {
        let parse = |t: &Option<String>| -> Option<Json> {
            t.as_deref().and_then(|v| serde_json::from_str(v).ok())
        };
        let json = json!({
            "id": row.id,
            "device": row.device,
            "name": row.name,
            "params": serde_json::from_str::<Json>(&row.params).unwrap_or_else(|_| json!({})),
            "state": row.state,
            "createdAt": rfc3339(row.created_ms),
            "deadline": rfc3339(row.deadline_ms),
            "sentAt": row.sent_ms.map(rfc3339),
            "deliveredAt": row.delivered_ms.map(rfc3339),
            "finishedAt": row.finished_ms.map(rfc3339),
            "output": parse(&row.output),
            "reason": row.reason,
        })
        .to_string();
        Arc::new(CommandItem {
            // Zero-padded: key order (paging) is id order.
            key: format!("{:020}", row.id),
            row,
            json,
            frames: Frames::default(),
        })
    }
}

impl Framed for CommandItem {
    fn frames(&self) -> &Frames {
        &self.frames
    }
}

impl Fields for CommandItem {
    fn field(&self, f: Field<'_>) -> Option<FieldValue<'_>> {
        match f {
            Field::Device => Some(FieldValue::Str(&self.row.device)),
            Field::State => Some(FieldValue::Str(self.row.state.as_str())),
            _ => None,
        }
    }
}

impl Item for CommandItem {
    fn seq(&self) -> u64 {
        self.row.seq
    }
    fn key(&self) -> &str {
        &self.key
    }
    fn json(&self) -> &str {
        &self.json
    }
}

impl Resource for CommandItem {
    const NAME: &'static str = "commands";
    const LIST_KIND: &'static str = "CommandList";
    const KIND: Kind = Kind::State;
    const SHORTHANDS: &'static [&'static str] = &["state"];
    const SUMMARY: &'static str = "Commands: list, long poll or watch";
    const DESCRIPTION: &'static str = "A state collection keyed by command id: open commands and the command history. A command changes at each step of its lifecycle. Filter with `device`, `state` or `filter` (fields device, state).";
}
