//! The hub's store rows as the API's objects: the one place that knows how
//! a row of each table becomes a `telltale-types` object, its key and its
//! time. The objects' JSON is exactly what the API has always written.

use crate::items::{rfc3339, AlertItem, CommandItem, DeviceItem, LatestItem, Object, ReadingItem};
use base64::Engine;
use serde_json::Value as Json;
use std::sync::Arc;
use telltale_store::{AlertRow, CommandRow, DeviceRow, LatestRow, StoredReading, StoredValue};
use telltale_types::{Alert, AlertAck, Command, Device, Latest, Reading, ReadingValue, Severity};

fn value(v: &StoredValue) -> ReadingValue {
    match v {
        StoredValue::Num(x) => ReadingValue::Number(*x),
        StoredValue::Bool(b) => ReadingValue::Bool(*b),
        StoredValue::Str(s) => ReadingValue::Text(s.clone()),
        StoredValue::Data(d) => {
            ReadingValue::Text(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d))
        }
    }
}

/// JSON kept as text in a row, parsed (`None` when absent or not JSON).
fn json_text(t: Option<&str>) -> Option<Json> {
    t.and_then(|v| serde_json::from_str(v).ok())
}

/// An id as a key whose text order is its number order (paging).
fn id_key(id: u64) -> String {
    format!("{id:020}")
}

impl ReadingItem {
    /// A reading of the log.
    pub fn new(row: StoredReading) -> Arc<ReadingItem> {
        let obj = Reading {
            seq: row.seq,
            device: row.device.to_string(),
            metric: row.metric.to_string(),
            unit: row.unit.as_deref().map(str::to_owned),
            value: value(&row.value),
            time: rfc3339(row.ts_ms),
        };
        Object::make(obj, row.seq, row.device.to_string(), Some(row.ts_ms))
    }
}

impl LatestItem {
    /// The newest reading of one (device, metric).
    pub fn new(row: LatestRow) -> Arc<LatestItem> {
        let key = format!("{}/{}", row.device, row.metric);
        let obj = Latest {
            device: row.device.to_string(),
            metric: row.metric.to_string(),
            unit: row.unit.as_deref().map(str::to_owned),
            value: value(&row.value),
            time: rfc3339(row.ts_ms),
            reading_seq: row.reading_seq,
        };
        Object::make(obj, row.seq, key, Some(row.ts_ms))
    }
}

impl DeviceItem {
    /// A device and its presence.
    pub fn new(row: DeviceRow) -> Arc<DeviceItem> {
        let obj = Device {
            id: row.id.to_string(),
            online: row.online,
            last_seen: row.last_seen_ms.map(rfc3339),
            first_seen: row.first_seen_ms.map(rfc3339),
            agent: row.agent,
            labels: row.labels,
        };
        Object::make(obj, row.seq, row.id.to_string(), None)
    }
}

impl AlertItem {
    /// An alert and its lifecycle.
    pub fn new(row: AlertRow) -> Arc<AlertItem> {
        // The rules engine takes only the severities the API names.
        let severity =
            serde_json::from_value(Json::from(row.severity.as_str())).unwrap_or(Severity::Warning);
        let obj = Alert {
            id: row.id,
            rule: row.rule,
            device: row.device,
            metric: row.metric,
            state: row.state,
            severity,
            summary: row.summary,
            labels: row.labels,
            value: json_text(row.value.as_deref()),
            threshold: row.threshold,
            started_at: rfc3339(row.started_ms),
            fired_at: row.fired_ms.map(rfc3339),
            resolved_at: row.resolved_ms.map(rfc3339),
            updated_at: rfc3339(row.updated_ms),
            acknowledged: row.acknowledged,
            ack: row.acknowledged.then(|| AlertAck {
                by: row.ack_by,
                at: row.ack_at_ms.map(rfc3339),
                note: row.ack_note,
            }),
        };
        Object::make(obj, row.seq, id_key(row.id), None)
    }
}

impl CommandItem {
    /// A command and its lifecycle.
    pub fn new(row: CommandRow) -> Arc<CommandItem> {
        let params = match json_text(Some(&row.params)) {
            Some(Json::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        let obj = Command {
            id: row.id,
            device: row.device,
            name: row.name,
            params,
            state: row.state,
            created_at: rfc3339(row.created_ms),
            deadline: rfc3339(row.deadline_ms),
            sent_at: row.sent_ms.map(rfc3339),
            delivered_at: row.delivered_ms.map(rfc3339),
            finished_at: row.finished_ms.map(rfc3339),
            output: json_text(row.output.as_deref()),
            reason: row.reason,
        };
        Object::make(obj, row.seq, id_key(row.id), None)
    }
}
