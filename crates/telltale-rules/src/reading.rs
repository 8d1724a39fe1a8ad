//! What the engine is fed: a [`Reading`] borrowed from the caller, its
//! [`ValueRef`], and the device's [`Labels`]; plus the owned [`Value`] that
//! rules and transitions hold.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasher;
use telltale_filter::{Field, FieldValue, Fields};

/// A reading's value, borrowed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ValueRef<'a> {
    /// A number (SenML `v`).
    Number(f64),
    /// A boolean (SenML `vb`).
    Bool(bool),
    /// A string (SenML `vs`).
    Str(&'a str),
}

/// A value, owned: an `equals` operand, or the value in a [`Transition`](crate::Transition).
/// Serialized as the bare JSON / TOML number, boolean or string.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// A boolean.
    Bool(bool),
    /// A number.
    Number(f64),
    /// A string.
    Str(String),
}

impl ValueRef<'_> {
    /// An owned copy.
    pub fn to_value(self) -> Value {
        match self {
            ValueRef::Number(n) => Value::Number(n),
            ValueRef::Bool(b) => Value::Bool(b),
            ValueRef::Str(s) => Value::Str(s.to_owned()),
        }
    }
}

impl Value {
    /// The borrowed form.
    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Value::Number(n) => ValueRef::Number(*n),
            Value::Bool(b) => ValueRef::Bool(*b),
            Value::Str(s) => ValueRef::Str(s),
        }
    }

    /// Overwrites `self` with `v`, reusing a string's allocation.
    pub(crate) fn set(&mut self, v: ValueRef<'_>) {
        match (self, v) {
            (Value::Str(old), ValueRef::Str(new)) => {
                if old != new {
                    old.clear();
                    old.push_str(new);
                }
            }
            (this, v) => *this = v.to_value(),
        }
    }
}

impl fmt::Display for ValueRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueRef::Number(n) => write!(f, "{n}"),
            ValueRef::Bool(b) => write!(f, "{b}"),
            ValueRef::Str(s) => f.write_str(s),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_ref().fmt(f)
    }
}

/// A device's labels, as the hub keeps them. The engine copies them once
/// per device (when the device is first seen, and again after
/// [`Engine::invalidate_scope`](crate::Engine::invalidate_scope)), so
/// lookups here are never on the hot path.
pub trait Labels {
    /// The value of label `key`, if the device has it.
    fn get(&self, key: &str) -> Option<&str>;
    /// Calls `f` with every label.
    fn for_each(&self, f: &mut dyn FnMut(&str, &str));
}

/// A device without labels.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoLabels;

impl Labels for NoLabels {
    fn get(&self, _: &str) -> Option<&str> {
        None
    }
    fn for_each(&self, _: &mut dyn FnMut(&str, &str)) {}
}

impl Labels for BTreeMap<String, String> {
    fn get(&self, key: &str) -> Option<&str> {
        BTreeMap::get(self, key).map(String::as_str)
    }
    fn for_each(&self, f: &mut dyn FnMut(&str, &str)) {
        self.iter().for_each(|(k, v)| f(k, v));
    }
}

impl<S: BuildHasher> Labels for HashMap<String, String, S> {
    fn get(&self, key: &str) -> Option<&str> {
        HashMap::get(self, key).map(String::as_str)
    }
    fn for_each(&self, f: &mut dyn FnMut(&str, &str)) {
        self.iter().for_each(|(k, v)| f(k, v));
    }
}

impl<const N: usize> Labels for [(&str, &str); N] {
    fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }
    fn for_each(&self, f: &mut dyn FnMut(&str, &str)) {
        self.iter().for_each(|(k, v)| f(k, v));
    }
}

/// One reading, borrowed from the caller for the duration of
/// [`Engine::observe`](crate::Engine::observe).
#[derive(Clone, Copy)]
pub struct Reading<'a> {
    /// The device id: half of the series key, and `device` in scopes.
    pub device: &'a str,
    /// The metric (SenML name): the other half of the series key, and
    /// `metric` in scopes.
    pub metric: &'a str,
    /// What the condition tests.
    pub value: ValueRef<'a>,
    /// The unit, rendered as `{unit}` in summaries and testable as `unit`
    /// in scopes.
    pub unit: Option<&'a str>,
    /// The device's labels, for scope filters on `labels.<key>`.
    pub labels: &'a dyn Labels,
    /// Device time in ms since the epoch: the time axis of rate-of-change
    /// conditions (hub time would turn a delayed batch into a spike).
    pub time: i64,
}

impl<'a> Reading<'a> {
    /// A reading without unit or labels, at device time 0: set the other
    /// fields with `..Reading::new(..)`.
    pub fn new(device: &'a str, metric: &'a str, value: ValueRef<'a>) -> Self {
        let labels = &NoLabels;
        Reading {
            device,
            metric,
            value,
            unit: None,
            labels,
            time: 0,
        }
    }
}

impl fmt::Debug for Reading<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reading")
            .field("device", &self.device)
            .field("metric", &self.metric)
            .field("value", &self.value)
            .field("unit", &self.unit)
            .field("time", &self.time)
            .finish_non_exhaustive()
    }
}

impl Fields for Reading<'_> {
    fn field(&self, f: Field<'_>) -> Option<FieldValue<'_>> {
        match f {
            Field::Device => Some(FieldValue::Str(self.device)),
            Field::Metric => Some(FieldValue::Str(self.metric)),
            Field::Value => Some(match self.value {
                ValueRef::Number(n) => FieldValue::Num(n),
                ValueRef::Bool(b) => FieldValue::Bool(b),
                ValueRef::Str(s) => FieldValue::Str(s),
            }),
            Field::Unit => self.unit.map(FieldValue::Str),
            Field::Label(key) => self.labels.get(key).map(FieldValue::Str),
            Field::Severity | Field::State | Field::Rule => None,
        }
    }
}

/// What a scope filter sees of a series: everything of a reading but its
/// value, with the labels the engine copied for the device.
pub(crate) struct ScopeView<'a> {
    pub(crate) device: &'a str,
    pub(crate) metric: &'a str,
    pub(crate) unit: Option<&'a str>,
    pub(crate) labels: &'a [(Box<str>, Box<str>)],
}

impl Fields for ScopeView<'_> {
    fn field(&self, f: Field<'_>) -> Option<FieldValue<'_>> {
        match f {
            Field::Device => Some(FieldValue::Str(self.device)),
            Field::Metric => Some(FieldValue::Str(self.metric)),
            Field::Unit => self.unit.map(FieldValue::Str),
            Field::Label(key) => self
                .labels
                .iter()
                .find(|(k, _)| &**k == key)
                .map(|(_, v)| FieldValue::Str(v)),
            Field::Value | Field::Severity | Field::State | Field::Rule => None,
        }
    }
}
