//! One reading as it travels from a source to the batcher, and the clock
//! readings are stamped with.

use std::time::{SystemTime, UNIX_EPOCH};
use telltale_wire::{Record, ValueRef};

/// A reading's value: the agent only produces numbers and booleans.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// A finite number (`v`).
    Num(f64),
    /// A boolean (`vb`), such as a door contact.
    Bool(bool),
}

/// One reading, owned.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// Metric name; already checked against the SenML name rules.
    pub name: String,
    /// Unit, if the source has one.
    pub unit: Option<String>,
    /// The value; numbers are always finite.
    pub value: Value,
    /// When it was read, in seconds since the Unix epoch.
    pub time: f64,
}

impl Reading {
    /// The borrowed record the encoder takes.
    pub fn record(&self) -> Record<'_> {
        Record {
            name: &self.name,
            unit: self.unit.as_deref(),
            value: match self.value {
                Value::Num(v) => ValueRef::Num(v),
                Value::Bool(b) => ValueRef::Bool(b),
            },
            time: Some(self.time),
        }
    }
}

/// Now, in seconds since the Unix epoch, to the millisecond (so a time
/// costs 9 bytes in CBOR and reads back exactly as the hub stores it).
pub fn now_secs() -> f64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    ms as f64 / 1000.0
}
