//! The objects of each collection as the watch engine and the filter see
//! them: an [`Object`] holds one of the API's objects (`telltale-types`),
//! its version and key, and its JSON, serialized once and shared; each
//! object type says its filter fields ([`Shape`]) and how it is served
//! ([`Resource`]). Nothing here knows where an object came from: the
//! hub's store makes them from its rows (`rows.rs`), a fleet service from
//! its streams.

use crate::collection::Resource;
use bytes::Bytes;
use serde::Serialize;
use serde_json::Value as Json;
use std::sync::{Arc, OnceLock};
use telltale_filter::{Field, FieldValue, Fields};
use telltale_types::{Alert, Command, Device, Latest, Reading, ReadingValue};
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

/// An object type of a collection, as the filter sees it.
pub trait Shape: Serialize + Send + Sync + 'static {
    /// The value of a filter field, if the object has it.
    fn field(&self, f: Field<'_>) -> Option<FieldValue<'_>>;
}

/// One version of an object in a collection.
#[derive(Debug)]
pub struct Object<T> {
    /// The object, as the API writes it.
    pub obj: T,
    /// Its version: the collection's sequence number of this change.
    seq: u64,
    /// Its identity in a state collection; in key order, the order of a
    /// state collection's pages.
    key: String,
    /// Its time (ms since the epoch), for `since` and `until` on logs.
    ts_ms: Option<i64>,
    /// Built by the first reader that needs it, then shared.
    json: OnceLock<String>,
    /// Its events, encoded once per transport.
    frames: Frames,
}

impl<T: Shape> Object<T> {
    /// `obj` at version `seq`, with its key and time.
    pub fn make(obj: T, seq: u64, key: String, ts_ms: Option<i64>) -> Arc<Object<T>> {
        Arc::new(Object {
            obj,
            seq,
            key,
            ts_ms,
            json: OnceLock::new(),
            frames: Frames::default(),
        })
    }
}

impl<T: Shape> Fields for Object<T> {
    fn field(&self, f: Field<'_>) -> Option<FieldValue<'_>> {
        self.obj.field(f)
    }
}

impl<T: Shape> Item for Object<T> {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn key(&self) -> &str {
        &self.key
    }
    fn json(&self) -> &str {
        self.json.get_or_init(|| {
            // Plain data: serializing it cannot fail.
            serde_json::to_string(&self.obj).unwrap_or_else(|_| "{}".into())
        })
    }
    fn ts_ms(&self) -> Option<i64> {
        self.ts_ms
    }
}

impl<T: Shape> Framed for Object<T> {
    fn frames(&self) -> &Frames {
        &self.frames
    }
}

/// A reading of `/v1/readings`.
pub type ReadingItem = Object<Reading>;
/// The newest reading of one (device, metric), in `/v1/latest`.
pub type LatestItem = Object<Latest>;
/// A device of `/v1/devices`.
pub type DeviceItem = Object<Device>;
/// An alert of `/v1/alerts`.
pub type AlertItem = Object<Alert>;
/// A device command of `/v1/commands`.
pub type CommandItem = Object<Command>;

fn value_field(v: &ReadingValue) -> FieldValue<'_> {
    match v {
        ReadingValue::Number(x) => FieldValue::Num(*x),
        ReadingValue::Bool(b) => FieldValue::Bool(*b),
        ReadingValue::Text(s) => FieldValue::Str(s),
    }
}

/// The filter fields of anything shaped like a reading (a reading, a latest
/// value).
fn reading_field<'a>(
    f: Field<'_>,
    device: &'a str,
    metric: &'a str,
    unit: Option<&'a str>,
    value: &'a ReadingValue,
) -> Option<FieldValue<'a>> {
    match f {
        Field::Device => Some(FieldValue::Str(device)),
        Field::Metric => Some(FieldValue::Str(metric)),
        Field::Unit => unit.map(FieldValue::Str),
        Field::Value => Some(value_field(value)),
        _ => None,
    }
}

impl Shape for Reading {
    fn field(&self, f: Field<'_>) -> Option<FieldValue<'_>> {
        reading_field(
            f,
            &self.device,
            &self.metric,
            self.unit.as_deref(),
            &self.value,
        )
    }
}

impl Shape for Latest {
    fn field(&self, f: Field<'_>) -> Option<FieldValue<'_>> {
        reading_field(
            f,
            &self.device,
            &self.metric,
            self.unit.as_deref(),
            &self.value,
        )
    }
}

impl Shape for Device {
    fn field(&self, f: Field<'_>) -> Option<FieldValue<'_>> {
        match f {
            Field::Device => Some(FieldValue::Str(&self.id)),
            Field::State => Some(FieldValue::Str(self.presence().as_str())),
            Field::Label(k) => self.labels.get(k).map(|v| FieldValue::Str(v)),
            _ => None,
        }
    }
}

impl Shape for Alert {
    fn field(&self, f: Field<'_>) -> Option<FieldValue<'_>> {
        match f {
            Field::Device => Some(FieldValue::Str(&self.device)),
            Field::Metric => Some(FieldValue::Str(&self.metric)),
            Field::Value => match self.value.as_ref()? {
                Json::Number(n) => n.as_f64().map(FieldValue::Num),
                Json::Bool(b) => Some(FieldValue::Bool(*b)),
                Json::String(s) => Some(FieldValue::Str(s)),
                _ => None,
            },
            Field::Severity => Some(FieldValue::Str(self.severity.as_str())),
            Field::State => Some(FieldValue::Str(self.state.as_str())),
            Field::Rule => Some(FieldValue::Str(&self.rule)),
            Field::Label(k) => self.labels.get(k).map(|v| FieldValue::Str(v)),
            Field::Unit => None,
        }
    }
}

impl Shape for Command {
    fn field(&self, f: Field<'_>) -> Option<FieldValue<'_>> {
        match f {
            Field::Device => Some(FieldValue::Str(&self.device)),
            Field::State => Some(FieldValue::Str(self.state.as_str())),
            _ => None,
        }
    }
}

impl Resource for Reading {
    const NAME: &'static str = "readings";
    const LIST_KIND: &'static str = "ReadingList";
    const KIND: Kind = Kind::Log;
    const SUMMARY: &'static str = "Readings: list, long poll or watch";
    const DESCRIPTION: &'static str = "The readings log (append-only; events are `ADDED`). A snapshot lists readings oldest first; a watch without `resourceVersion` or `since` starts now.";
}

impl Resource for Latest {
    const NAME: &'static str = "latest";
    const LIST_KIND: &'static str = "LatestList";
    const KIND: Kind = Kind::State;
    const SUMMARY: &'static str = "Newest reading per (device, metric): list, long poll or watch";
    const DESCRIPTION: &'static str = "A state collection keyed by (device, metric). A live change is a `MODIFIED` event; `sendInitialEvents=true` sends the current state first as `ADDED` events.";
}

impl Resource for Device {
    const NAME: &'static str = "devices";
    const LIST_KIND: &'static str = "DeviceList";
    const KIND: Kind = Kind::State;
    const SUMMARY: &'static str = "Devices: list, long poll or watch";
    const DESCRIPTION: &'static str = "A state collection keyed by device id. A device changes when it is new, when its presence, agent or labels change, or when its `lastSeen` moved more than 10 s past the value last sent in an event.";
}

impl Resource for Alert {
    const NAME: &'static str = "alerts";
    const LIST_KIND: &'static str = "AlertList";
    const KIND: Kind = Kind::State;
    const SHORTHANDS: &'static [&'static str] = &["severity", "state"];
    const SUMMARY: &'static str = "Alerts: list, long poll or watch";
    const DESCRIPTION: &'static str = "A state collection keyed by alert id: open alerts and the alert history. An alert changes when it becomes pending, fires, resolves or is acknowledged. Filter with `severity`, `state`, `device`, `metric` or `filter` (fields device, metric, value, severity, state, rule, labels.<key>).";
}

impl Resource for Command {
    const NAME: &'static str = "commands";
    const LIST_KIND: &'static str = "CommandList";
    const KIND: Kind = Kind::State;
    const SHORTHANDS: &'static [&'static str] = &["state"];
    const SUMMARY: &'static str = "Commands: list, long poll or watch";
    const DESCRIPTION: &'static str = "A state collection keyed by command id: open commands and the command history. A command changes at each step of its lifecycle. Filter with `device`, `state` or `filter` (fields device, state).";
}
