//! One reading as it travels from a source to the batcher, and the clock
//! readings are stamped with.

use std::time::{SystemTime, UNIX_EPOCH};
use telltale_wire::senml::RELATIVE_TIME_LIMIT;
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
    /// Whether the reading can be encoded (numbers and time must be finite).
    pub fn is_valid(&self) -> bool {
        let value_ok = match self.value {
            Value::Num(v) => v.is_finite(),
            Value::Bool(_) => true,
        };
        value_ok && self.time.is_finite()
    }

    /// Whether the time can be sent: SenML reads a time below 2^28 (a clock
    /// not yet set after boot, still in 1970) as relative to "now".
    pub fn has_absolute_time(&self) -> bool {
        self.time >= RELATIVE_TIME_LIMIT
    }

    /// The borrowed record the encoder takes. A time the hub would misread
    /// as relative is left out, so the hub stamps the reading on arrival.
    pub fn record(&self) -> Record<'_> {
        Record {
            name: &self.name,
            unit: self.unit.as_deref(),
            value: match self.value {
                Value::Num(v) => ValueRef::Num(v),
                Value::Bool(b) => ValueRef::Bool(b),
            },
            time: self.has_absolute_time().then_some(self.time),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_clock_sends_no_time() {
        let mut r = Reading {
            name: "t".into(),
            unit: None,
            value: Value::Num(1.0),
            time: 1_700_000_000.25,
        };
        assert_eq!(r.record().time, Some(1_700_000_000.25));
        r.time = 120.5;
        assert_eq!(r.record().time, None);
        assert!(r.is_valid());
        r.value = Value::Num(f64::INFINITY);
        assert!(!r.is_valid());
    }
}
