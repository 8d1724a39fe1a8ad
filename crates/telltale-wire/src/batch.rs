//! A fixed-capacity batch of readings for devices without an allocator.

use crate::error::EncodeError;
use crate::senml::{encode_cbor, BatchId, Record, ValueRef};
use heapless::{String, Vec};

/// Longest metric name a [`Batch`] stores.
pub const NAME_CAP: usize = 64;
/// Longest unit a [`Batch`] stores.
pub const UNIT_CAP: usize = 16;
/// Longest string value a [`Batch`] stores.
pub const STR_CAP: usize = 64;

/// An owned value of fixed size.
#[derive(Debug, Clone, PartialEq)]
pub enum FixedValue {
    Num(f64),
    Bool(bool),
    Str(String<STR_CAP>),
}

/// An owned reading of fixed size.
#[derive(Debug, Clone, PartialEq)]
pub struct FixedRecord {
    pub name: String<NAME_CAP>,
    pub unit: Option<String<UNIT_CAP>>,
    pub value: FixedValue,
    pub time: Option<f64>,
}

/// Up to `N` readings, encoded in one go with [`Batch::encode_cbor`].
#[derive(Debug, Default)]
pub struct Batch<const N: usize> {
    records: Vec<FixedRecord, N>,
}

fn fixed<const C: usize>(s: &str) -> Result<String<C>, EncodeError> {
    String::try_from(s).map_err(|_| EncodeError::TooLong)
}

impl<const N: usize> Batch<N> {
    /// An empty batch.
    pub const fn new() -> Self {
        Self {
            records: Vec::new(),
        }
    }

    /// Adds a reading; `Err(BatchFull)` when the batch holds `N` already.
    pub fn push(&mut self, r: Record<'_>) -> Result<(), EncodeError> {
        if let ValueRef::Num(v) = r.value {
            if !v.is_finite() {
                return Err(EncodeError::NotFinite);
            }
        }
        let value = match r.value {
            ValueRef::Num(v) => FixedValue::Num(v),
            ValueRef::Bool(b) => FixedValue::Bool(b),
            ValueRef::Str(s) => FixedValue::Str(fixed(s)?),
        };
        let rec = FixedRecord {
            name: fixed(r.name)?,
            unit: r.unit.map(fixed).transpose()?,
            value,
            time: r.time,
        };
        self.records.push(rec).map_err(|_| EncodeError::BatchFull)
    }

    /// Number of readings held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no reading is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Drops every reading.
    pub fn clear(&mut self) {
        self.records.clear();
    }

    /// Encodes the batch as SenML CBOR into `out`; returns the bytes written.
    pub fn encode_cbor(
        &self,
        batch: Option<BatchId>,
        out: &mut [u8],
    ) -> Result<usize, EncodeError> {
        let mut refs: Vec<Record<'_>, N> = Vec::new();
        for r in &self.records {
            let value = match &r.value {
                FixedValue::Num(v) => ValueRef::Num(*v),
                FixedValue::Bool(b) => ValueRef::Bool(*b),
                FixedValue::Str(s) => ValueRef::Str(s.as_str()),
            };
            // Capacity is N on both sides, so this cannot fail.
            let _ = refs.push(Record {
                name: r.name.as_str(),
                unit: r.unit.as_ref().map(|u| u.as_str()),
                value,
                time: r.time,
            });
        }
        encode_cbor(None, batch, &refs, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_batch_refuses_more() {
        let mut b: Batch<2> = Batch::new();
        let r = Record {
            name: "t",
            unit: None,
            value: ValueRef::Num(1.0),
            time: None,
        };
        b.push(r).expect("first");
        b.push(r).expect("second");
        assert_eq!(b.push(r), Err(EncodeError::BatchFull));
        let long = [b'a'; 65];
        let long = core::str::from_utf8(&long).expect("ascii");
        let mut c: Batch<2> = Batch::new();
        assert_eq!(
            c.push(Record { name: long, ..r }),
            Err(EncodeError::TooLong)
        );
        assert_eq!(
            c.push(Record {
                value: ValueRef::Num(f64::NAN),
                ..r
            }),
            Err(EncodeError::NotFinite)
        );
        let mut small = [0u8; 4];
        assert_eq!(
            b.encode_cbor(None, &mut small),
            Err(EncodeError::BufferFull)
        );
    }
}
