//! SenML (RFC 8428) labels, borrowed records and the CBOR encoder that needs
//! no allocator.
//!
//! CBOR packs use the integer labels of RFC 8428 section 6. The batch identity
//! is a Telltale extension carried by the first record under text labels
//! ([`LABEL_OUTBOX`], [`LABEL_BATCH`], [`LABEL_LOW`]); a SenML reader that does
//! not know them ignores them, as RFC 8428 section 4.4 allows for labels that
//! do not end in `_`.

use crate::error::EncodeError;
use minicbor::encode::write::Cursor;
use minicbor::Encoder;

/// RFC 8428 section 6 integer labels.
pub mod label {
    pub const BVER: i64 = -1;
    pub const BN: i64 = -2;
    pub const BT: i64 = -3;
    pub const BU: i64 = -4;
    pub const BV: i64 = -5;
    pub const BS: i64 = -6;
    pub const N: i64 = 0;
    pub const U: i64 = 1;
    pub const V: i64 = 2;
    pub const VS: i64 = 3;
    pub const VB: i64 = 4;
    pub const S: i64 = 5;
    pub const T: i64 = 6;
    pub const UT: i64 = 7;
    pub const VD: i64 = 8;
}

/// Extension label: the sender's outbox id (an integer, stable for the life of the outbox).
pub const LABEL_OUTBOX: &str = "tt_ob";
/// Extension label: this batch's sequence number in its outbox.
pub const LABEL_BATCH: &str = "tt_bs";
/// Extension label: the lowest sequence number the outbox still holds (optional).
pub const LABEL_LOW: &str = "tt_lo";

/// Times below this are relative to "now" (RFC 8428 section 4.5.3).
pub const RELATIVE_TIME_LIMIT: f64 = 268_435_456.0; // 2^28

/// Identity of a batch: the hub stores each (device, outbox, seq) once and
/// acknowledges it only after it is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BatchId {
    /// Random id of the sender's outbox; a new outbox gets a new id.
    pub outbox: u64,
    /// Sequence number of this batch in the outbox, increasing by one per batch.
    pub seq: u64,
    /// Lowest sequence number the outbox still holds: everything below it is
    /// gone from the sender and will never be sent again.
    pub low: u64,
}

/// A value as the encoder takes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    Num(f64),
    Bool(bool),
    Str(&'a str),
}

/// One reading as the encoder takes it (borrowed, no allocation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Record<'a> {
    /// Metric name (`n`); the pack's base name, if any, is prepended by readers.
    pub name: &'a str,
    /// Unit (`u`), such as `Cel` or `%RH`.
    pub unit: Option<&'a str>,
    /// The value.
    pub value: ValueRef<'a>,
    /// Absolute time in seconds since the Unix epoch; `None` means "now" at the receiver.
    pub time: Option<f64>,
}

type Enc<'b> = Encoder<Cursor<&'b mut [u8]>>;

fn full<E>(_: E) -> EncodeError {
    EncodeError::BufferFull
}

fn number(e: &mut Enc<'_>, v: f64) -> Result<(), EncodeError> {
    if !v.is_finite() {
        return Err(EncodeError::NotFinite);
    }
    if v > -9_007_199_254_740_992.0 && v < 9_007_199_254_740_992.0 && (v as i64) as f64 == v {
        e.i64(v as i64).map_err(full)?;
    } else if (v as f32) as f64 == v {
        e.f32(v as f32).map_err(full)?;
    } else {
        e.f64(v).map_err(full)?;
    }
    Ok(())
}

/// Encodes a pack as SenML CBOR into `out` and returns the number of bytes
/// written. `base_name` becomes `bn` on the first record; `batch` becomes the
/// batch-identity labels on the first record.
pub fn encode_cbor(
    base_name: Option<&str>,
    batch: Option<BatchId>,
    records: &[Record<'_>],
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let mut e = Encoder::new(Cursor::new(out));
    e.array(records.len() as u64).map_err(full)?;
    for (i, r) in records.iter().enumerate() {
        let mut fields = 2 + u64::from(r.unit.is_some()) + u64::from(r.time.is_some());
        if i == 0 {
            fields += u64::from(base_name.is_some());
            fields += if batch.is_some() { 3 } else { 0 };
        }
        e.map(fields).map_err(full)?;
        if i == 0 {
            if let Some(bn) = base_name {
                e.i64(label::BN).map_err(full)?.str(bn).map_err(full)?;
            }
            if let Some(b) = batch {
                e.str(LABEL_OUTBOX)
                    .map_err(full)?
                    .u64(b.outbox)
                    .map_err(full)?;
                e.str(LABEL_BATCH).map_err(full)?.u64(b.seq).map_err(full)?;
                e.str(LABEL_LOW).map_err(full)?.u64(b.low).map_err(full)?;
            }
        }
        e.i64(label::N).map_err(full)?.str(r.name).map_err(full)?;
        if let Some(u) = r.unit {
            e.i64(label::U).map_err(full)?.str(u).map_err(full)?;
        }
        match r.value {
            ValueRef::Num(v) => {
                e.i64(label::V).map_err(full)?;
                number(&mut e, v)?;
            }
            ValueRef::Bool(b) => {
                e.i64(label::VB).map_err(full)?.bool(b).map_err(full)?;
            }
            ValueRef::Str(s) => {
                e.i64(label::VS).map_err(full)?.str(s).map_err(full)?;
            }
        }
        if let Some(t) = r.time {
            e.i64(label::T).map_err(full)?;
            number(&mut e, t)?;
        }
    }
    Ok(e.writer().position())
}
