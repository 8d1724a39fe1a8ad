//! Decoding and validating a SenML pack (CBOR or JSON) into owned readings.
//!
//! Both representations first fill the same [`Raw`] record, then
//! [`resolve`] applies the base fields, the time rules and the limits, so the
//! two behave the same by construction.

use crate::error::WireError;
use crate::senml::{label, BatchId, LABEL_BATCH, LABEL_LOW, LABEL_OUTBOX, RELATIVE_TIME_LIMIT};
use alloc::borrow::Cow;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use base64::Engine;
use core::fmt;
use minicbor::data::Type;
use minicbor::Decoder;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// Limits a pack must stay within (wire.md "Bad input").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload in bytes.
    pub max_payload: usize,
    /// Most records in one pack.
    pub max_records: usize,
    /// Longest name (base name + name) in characters.
    pub max_name: usize,
    /// Longest unit in characters.
    pub max_unit: usize,
    /// Longest string or data value in bytes.
    pub max_string: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_payload: 64 * 1024,
            max_records: 1000,
            max_name: 64,
            max_unit: 32,
            max_string: 1024,
        }
    }
}

/// A reading's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Num(f64),
    Bool(bool),
    Str(String),
    Data(Vec<u8>),
}

/// One reading, resolved: full name, unit, absolute time.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// Base name + name: the metric.
    pub name: String,
    /// Unit, from `u` or the base unit.
    pub unit: Option<String>,
    /// The value (a sum-only record gives its sum as a number).
    pub value: Value,
    /// Absolute time in seconds since the Unix epoch.
    pub time: f64,
}

/// A decoded pack.
#[derive(Debug, Clone, PartialEq)]
pub struct Pack {
    /// Batch identity, when the sender gave one.
    pub batch: Option<BatchId>,
    /// The readings, in pack order.
    pub readings: Vec<Reading>,
}

/// Which representation a payload is in, told by its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Cbor,
    Json,
}

/// Tells CBOR from JSON: a JSON pack starts with `[` (after white space), a
/// CBOR pack with an array head (major type 4).
pub fn sniff(payload: &[u8]) -> Result<Format, WireError> {
    let first = *payload.first().ok_or(WireError::Empty)?;
    match first {
        0x80..=0x9f => Ok(Format::Cbor),
        b'[' | b' ' | b'\t' | b'\r' | b'\n' => Ok(Format::Json),
        _ => Err(WireError::NotSenml),
    }
}

/// Decodes and validates a pack. `now` (seconds since the epoch) resolves
/// relative and missing times.
pub fn decode(payload: &[u8], limits: &Limits, now: f64) -> Result<Pack, WireError> {
    if payload.len() > limits.max_payload {
        return Err(WireError::PayloadTooLarge {
            size: payload.len(),
            limit: limits.max_payload,
        });
    }
    let raws = match sniff(payload)? {
        Format::Cbor => decode_cbor_raw(payload, limits)?,
        Format::Json => decode_json_raw(payload, limits)?,
    };
    resolve(raws, limits, now)
}

/// The batch identity of a pack that [`decode`] refused, when its first
/// record still carries a valid one: the hub acknowledges a refused batch
/// too (it is kept as a reject), so the sender does not resend it forever.
pub fn batch_identity(payload: &[u8]) -> Option<BatchId> {
    let limits = Limits {
        max_records: usize::MAX,
        ..Limits::default()
    };
    let raws = match sniff(payload).ok()? {
        Format::Cbor => decode_cbor_raw(payload, &limits).ok()?,
        Format::Json => decode_json_raw(payload, &limits).ok()?,
    };
    let first = raws.first()?;
    match (first.outbox, first.batch) {
        (Some(outbox), Some(seq)) if seq > 0 => Some(BatchId {
            outbox,
            seq,
            low: first.low.unwrap_or(seq).min(seq),
        }),
        _ => None,
    }
}

/// One record with every label it may carry, before base fields are applied.
#[derive(Debug, Default)]
struct Raw<'a> {
    bver: Option<i64>,
    bn: Option<Cow<'a, str>>,
    bt: Option<f64>,
    bu: Option<Cow<'a, str>>,
    bv: Option<f64>,
    bs: Option<f64>,
    n: Option<Cow<'a, str>>,
    u: Option<Cow<'a, str>>,
    v: Option<f64>,
    vs: Option<Cow<'a, str>>,
    vb: Option<bool>,
    vd: Option<Vec<u8>>,
    s: Option<f64>,
    t: Option<f64>,
    outbox: Option<u64>,
    batch: Option<u64>,
    low: Option<u64>,
    /// First label whose value had the wrong type.
    wrong: Option<&'static str>,
    /// First label whose number was not finite.
    not_finite: Option<&'static str>,
    /// A must-understand label (ends in `_`) this decoder does not know.
    must_understand: Option<String>,
}

fn resolve(raws: Vec<Raw<'_>>, limits: &Limits, now: f64) -> Result<Pack, WireError> {
    if raws.is_empty() {
        return Err(WireError::NoRecords);
    }
    let mut bn: Cow<'_, str> = Cow::Borrowed("");
    let (mut bt, mut bv, mut bs) = (0.0_f64, 0.0_f64, 0.0_f64);
    let mut bu: Option<Cow<'_, str>> = None;
    let mut batch = None;
    let mut readings = Vec::with_capacity(raws.len());
    for (i, r) in raws.into_iter().enumerate() {
        if let Some(label) = r.wrong {
            return Err(WireError::WrongType { record: i, label });
        }
        if let Some(label) = r.not_finite {
            return Err(WireError::NotFinite { record: i, label });
        }
        if let Some(label) = r.must_understand {
            return Err(WireError::MustUnderstand { record: i, label });
        }
        if let Some(v) = r.bver {
            if v > 10 {
                return Err(WireError::Version {
                    record: i,
                    version: v,
                });
            }
        }
        let has_id = r.outbox.is_some() || r.batch.is_some() || r.low.is_some();
        if has_id {
            match (i, r.outbox, r.batch) {
                (0, Some(outbox), Some(seq)) if seq > 0 => {
                    batch = Some(BatchId {
                        outbox,
                        seq,
                        low: r.low.unwrap_or(seq).min(seq),
                    })
                }
                _ => return Err(WireError::BadBatchIdentity),
            }
        }
        if let Some(x) = r.bn {
            bn = x;
        }
        if let Some(x) = r.bt {
            bt = x;
        }
        if let Some(x) = r.bv {
            bv = x;
        }
        if let Some(x) = r.bs {
            bs = x;
        }
        if let Some(x) = r.bu {
            bu = Some(x);
        }
        let values = usize::from(r.v.is_some())
            + usize::from(r.vs.is_some())
            + usize::from(r.vb.is_some())
            + usize::from(r.vd.is_some());
        if values > 1 {
            return Err(WireError::TwoValues { record: i });
        }
        let value = if let Some(v) = r.v {
            Value::Num(check_finite(bv + v, i, "v")?)
        } else if let Some(s) = r.vs {
            if s.len() > limits.max_string {
                return Err(WireError::StringTooLong {
                    record: i,
                    len: s.len(),
                    limit: limits.max_string,
                });
            }
            Value::Str(s.into_owned())
        } else if let Some(b) = r.vb {
            Value::Bool(b)
        } else if let Some(d) = r.vd {
            if d.len() > limits.max_string {
                return Err(WireError::StringTooLong {
                    record: i,
                    len: d.len(),
                    limit: limits.max_string,
                });
            }
            Value::Data(d)
        } else if let Some(s) = r.s {
            Value::Num(check_finite(bs + s, i, "s")?)
        } else if r.n.is_none() && values == 0 {
            // A record with only base fields (RFC 8428 allows it) carries no reading.
            if r.s.is_none() && r.t.is_none() && r.u.is_none() {
                continue;
            }
            return Err(WireError::NoValue { record: i });
        } else {
            return Err(WireError::NoValue { record: i });
        };
        let n = r.n.as_deref().unwrap_or("");
        let name_len = bn.chars().count() + n.chars().count();
        if name_len == 0 {
            return Err(WireError::EmptyName { record: i });
        }
        if name_len > limits.max_name {
            return Err(WireError::NameTooLong {
                record: i,
                len: name_len,
                limit: limits.max_name,
            });
        }
        let mut name = String::with_capacity(bn.len() + n.len());
        name.push_str(&bn);
        name.push_str(n);
        if !valid_name(&name) {
            return Err(WireError::BadName { record: i });
        }
        let unit = match r.u.or_else(|| bu.clone()) {
            Some(u) if u.chars().count() > limits.max_unit => {
                return Err(WireError::UnitTooLong {
                    record: i,
                    len: u.chars().count(),
                    limit: limits.max_unit,
                })
            }
            Some(u) if u.is_empty() => None,
            Some(u) => Some(u.into_owned()),
            None => None,
        };
        let t = check_finite(bt + r.t.unwrap_or(0.0), i, "t")?;
        let time = if t < RELATIVE_TIME_LIMIT { now + t } else { t };
        readings.push(Reading {
            name,
            unit,
            value,
            time,
        });
        if readings.len() > limits.max_records {
            return Err(WireError::TooManyRecords {
                count: readings.len(),
                limit: limits.max_records,
            });
        }
    }
    if readings.is_empty() {
        return Err(WireError::NoRecords);
    }
    Ok(Pack { batch, readings })
}

fn check_finite(v: f64, record: usize, label: &'static str) -> Result<f64, WireError> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(WireError::NotFinite { record, label })
    }
}

/// RFC 8428 section 4.5.1: a name starts with a letter or digit and holds
/// only `A-Z a-z 0-9 - : . / _`.
fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b':' | b'.' | b'/' | b'_'))
}

/// Which field a label names, for both representations.
#[derive(Clone, Copy)]
enum Field {
    Bver,
    Bn,
    Bt,
    Bu,
    Bv,
    Bs,
    N,
    U,
    V,
    Vs,
    Vb,
    Vd,
    S,
    T,
    Ut,
    Outbox,
    Batch,
    Low,
    Ignore,
}

impl Field {
    fn from_int(l: i64) -> Field {
        match l {
            label::BVER => Field::Bver,
            label::BN => Field::Bn,
            label::BT => Field::Bt,
            label::BU => Field::Bu,
            label::BV => Field::Bv,
            label::BS => Field::Bs,
            label::N => Field::N,
            label::U => Field::U,
            label::V => Field::V,
            label::VS => Field::Vs,
            label::VB => Field::Vb,
            label::S => Field::S,
            label::T => Field::T,
            label::UT => Field::Ut,
            label::VD => Field::Vd,
            _ => Field::Ignore,
        }
    }

    /// `None` for an unknown must-understand label.
    fn from_text(l: &str) -> Option<Field> {
        Some(match l {
            "bver" => Field::Bver,
            "bn" => Field::Bn,
            "bt" => Field::Bt,
            "bu" => Field::Bu,
            "bv" => Field::Bv,
            "bs" => Field::Bs,
            "n" => Field::N,
            "u" => Field::U,
            "v" => Field::V,
            "vs" => Field::Vs,
            "vb" => Field::Vb,
            "vd" => Field::Vd,
            "s" => Field::S,
            "t" => Field::T,
            "ut" => Field::Ut,
            LABEL_OUTBOX => Field::Outbox,
            LABEL_BATCH => Field::Batch,
            LABEL_LOW => Field::Low,
            other if other.ends_with('_') => return None,
            _ => Field::Ignore,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Field::Bver => "bver",
            Field::Bn => "bn",
            Field::Bt => "bt",
            Field::Bu => "bu",
            Field::Bv => "bv",
            Field::Bs => "bs",
            Field::N => "n",
            Field::U => "u",
            Field::V => "v",
            Field::Vs => "vs",
            Field::Vb => "vb",
            Field::Vd => "vd",
            Field::S => "s",
            Field::T => "t",
            Field::Ut => "ut",
            Field::Outbox => LABEL_OUTBOX,
            Field::Batch => LABEL_BATCH,
            Field::Low => LABEL_LOW,
            Field::Ignore => "",
        }
    }
}

/// A label's value, whatever its type, before it is checked against the label.
enum Any<'a> {
    Num(f64),
    Int(i128),
    Str(Cow<'a, str>),
    Bytes(Vec<u8>),
    Bool(bool),
    Other,
}

impl<'a> Raw<'a> {
    fn set(&mut self, f: Field, v: Any<'a>) {
        let name = f.name();
        let num = |v: &Any<'a>| match v {
            Any::Num(x) => Some(*x),
            Any::Int(i) => Some(*i as f64),
            _ => None,
        };
        let text = |v: Any<'a>| match v {
            Any::Str(s) => Some(s),
            _ => None,
        };
        let uint = |v: &Any<'a>| match v {
            Any::Int(i) => u64::try_from(*i).ok(),
            _ => None,
        };
        let ok = match f {
            Field::Ignore | Field::Ut => true,
            Field::Bver => match v {
                Any::Int(i) => {
                    self.bver = Some(i64::try_from(i).unwrap_or(i64::MAX));
                    true
                }
                _ => false,
            },
            Field::Bn => text(v).map(|s| self.bn = Some(s)).is_some(),
            Field::Bu => text(v).map(|s| self.bu = Some(s)).is_some(),
            Field::N => text(v).map(|s| self.n = Some(s)).is_some(),
            Field::U => text(v).map(|s| self.u = Some(s)).is_some(),
            Field::Vs => text(v).map(|s| self.vs = Some(s)).is_some(),
            Field::Vb => match v {
                Any::Bool(b) => {
                    self.vb = Some(b);
                    true
                }
                _ => false,
            },
            Field::Vd => match v {
                Any::Bytes(b) => {
                    self.vd = Some(b);
                    true
                }
                Any::Str(s) => match base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(s.trim_end_matches('='))
                {
                    Ok(b) => {
                        self.vd = Some(b);
                        true
                    }
                    Err(_) => false,
                },
                _ => false,
            },
            Field::Outbox => uint(&v).map(|x| self.outbox = Some(x)).is_some(),
            Field::Batch => uint(&v).map(|x| self.batch = Some(x)).is_some(),
            Field::Low => uint(&v).map(|x| self.low = Some(x)).is_some(),
            Field::Bt | Field::Bv | Field::Bs | Field::V | Field::S | Field::T => match num(&v) {
                Some(x) if !x.is_finite() => {
                    self.not_finite.get_or_insert(name);
                    true
                }
                Some(x) => {
                    let slot = match f {
                        Field::Bt => &mut self.bt,
                        Field::Bv => &mut self.bv,
                        Field::Bs => &mut self.bs,
                        Field::V => &mut self.v,
                        Field::S => &mut self.s,
                        _ => &mut self.t,
                    };
                    *slot = Some(x);
                    true
                }
                None => false,
            },
        };
        if !ok {
            self.wrong.get_or_insert(name);
        }
    }
}

// ---- CBOR ----

fn malformed(d: &Decoder<'_>) -> WireError {
    WireError::MalformedCbor {
        offset: d.position(),
    }
}

fn decode_cbor_raw<'a>(payload: &'a [u8], limits: &Limits) -> Result<Vec<Raw<'a>>, WireError> {
    let mut d = Decoder::new(payload);
    let len = d.array().map_err(|_| malformed(&d))?;
    let mut out = Vec::with_capacity(len.unwrap_or(8).min(limits.max_records as u64) as usize);
    loop {
        match len {
            Some(n) if out.len() as u64 == n => break,
            None if d.datatype().map_err(|_| malformed(&d))? == Type::Break => {
                d.skip().map_err(|_| malformed(&d))?;
                break;
            }
            _ => {}
        }
        if out.len() >= limits.max_records {
            return Err(WireError::TooManyRecords {
                count: len.map_or(out.len() + 1, |n| n as usize),
                limit: limits.max_records,
            });
        }
        out.push(cbor_record(&mut d)?);
    }
    if d.position() != payload.len() {
        return Err(malformed(&d));
    }
    Ok(out)
}

fn cbor_record<'a>(d: &mut Decoder<'a>) -> Result<Raw<'a>, WireError> {
    if !matches!(
        d.datatype().map_err(|_| malformed(d))?,
        Type::Map | Type::MapIndef
    ) {
        return Err(malformed(d));
    }
    let len = d.map().map_err(|_| malformed(d))?;
    let mut raw = Raw::default();
    let mut i = 0u64;
    loop {
        match len {
            Some(n) if i == n => break,
            None if d.datatype().map_err(|_| malformed(d))? == Type::Break => {
                d.skip().map_err(|_| malformed(d))?;
                break;
            }
            _ => {}
        }
        i += 1;
        let field = match d.datatype().map_err(|_| malformed(d))? {
            Type::U8
            | Type::U16
            | Type::U32
            | Type::U64
            | Type::I8
            | Type::I16
            | Type::I32
            | Type::I64 => Field::from_int(d.i64().map_err(|_| malformed(d))?),
            Type::String => {
                let s = d.str().map_err(|_| malformed(d))?;
                match Field::from_text(s) {
                    Some(f) => f,
                    None => {
                        raw.must_understand.get_or_insert_with(|| s.to_string());
                        Field::Ignore
                    }
                }
            }
            _ => {
                d.skip().map_err(|_| malformed(d))?;
                Field::Ignore
            }
        };
        let value = cbor_any(d)?;
        raw.set(field, value);
    }
    Ok(raw)
}

fn cbor_any<'a>(d: &mut Decoder<'a>) -> Result<Any<'a>, WireError> {
    let t = d.datatype().map_err(|_| malformed(d))?;
    let v = match t {
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => {
            Any::Int(i128::from(d.u64().map_err(|_| malformed(d))?))
        }
        Type::I8 | Type::I16 | Type::I32 | Type::I64 | Type::Int => {
            Any::Int(i128::from(d.int().map_err(|_| malformed(d))?))
        }
        Type::F16 | Type::F32 | Type::F64 => Any::Num(d.f64().map_err(|_| malformed(d))?),
        Type::String => Any::Str(Cow::Borrowed(d.str().map_err(|_| malformed(d))?)),
        Type::Bytes => Any::Bytes(d.bytes().map_err(|_| malformed(d))?.to_vec()),
        Type::Bool => Any::Bool(d.bool().map_err(|_| malformed(d))?),
        _ => {
            d.skip().map_err(|_| malformed(d))?;
            Any::Other
        }
    };
    Ok(v)
}

// ---- JSON ----

fn decode_json_raw<'a>(payload: &'a [u8], limits: &Limits) -> Result<Vec<Raw<'a>>, WireError> {
    let mut de = serde_json::Deserializer::from_slice(payload);
    let seq = de
        .deserialize_seq(PackVisitor {
            max_records: limits.max_records,
        })
        .and_then(|v| de.end().map(|_| v));
    match seq {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e),
        Err(e) => Err(WireError::MalformedJson {
            detail: e.to_string(),
        }),
    }
}

struct PackVisitor {
    max_records: usize,
}

impl<'de> Visitor<'de> for PackVisitor {
    type Value = Result<Vec<Raw<'de>>, WireError>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a SenML array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(RawJson(r)) = seq.next_element()? {
            if out.len() >= self.max_records {
                return Ok(Err(WireError::TooManyRecords {
                    count: out.len() + 1,
                    limit: self.max_records,
                }));
            }
            out.push(r);
        }
        Ok(Ok(out))
    }
}

struct RawJson<'a>(Raw<'a>);

impl<'de> Deserialize<'de> for RawJson<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawJson<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a SenML record (an object)")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut raw = Raw::default();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    let field = match Field::from_text(&key) {
                        Some(f) => f,
                        None => {
                            raw.must_understand.get_or_insert_with(|| key.to_string());
                            Field::Ignore
                        }
                    };
                    let AnyJson(v) = map.next_value()?;
                    raw.set(field, v);
                }
                Ok(RawJson(raw))
            }
        }
        d.deserialize_map(V)
    }
}

struct AnyJson<'a>(Any<'a>);

impl<'de> Deserialize<'de> for AnyJson<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AnyJson<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(AnyJson(Any::Bool(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(AnyJson(Any::Int(i128::from(v))))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(AnyJson(Any::Int(i128::from(v))))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(AnyJson(Any::Num(v)))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(AnyJson(Any::Str(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(AnyJson(Any::Str(Cow::Owned(v.to_string()))))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(AnyJson(Any::Other))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(AnyJson(Any::Other))
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                while map
                    .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(AnyJson(Any::Other))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests;
