//! The agent's handle on its durable outbox (`telltale_store::outbox`): one
//! `Outbox` behind a mutex, every call run on tokio's blocking pool because
//! SQLite blocks. It also owns sealing a batch: taking the next batch id,
//! encoding the readings as SenML CBOR with it, and storing the payload, all
//! under one lock so ids and rows stay in step.

use crate::reading::Reading;
use anyhow::Context;
use std::path::Path;
use std::sync::{Arc, Mutex};
use telltale_store::outbox::{Outbox, Pending};
use telltale_store::StoreError;
use telltale_wire::senml::encode_cbor;
use telltale_wire::{BatchId, EncodeError, Record};

/// Upper bound, in bytes, of the pack header plus the batch identity.
pub const PACK_OVERHEAD: usize = 64;

/// Upper bound, in bytes, of one reading's CBOR encoding.
pub fn record_size_bound(r: &Reading) -> usize {
    // map head + n + name + (u + unit) + v + value + t + time; a text head is
    // at most 3 bytes below 64 KiB, a number at most 9.
    let text = |s: &str| 3 + s.len();
    1 + 1 + text(&r.name) + r.unit.as_deref().map_or(0, |u| 1 + text(u)) + 1 + 9 + 1 + 9
}

/// Encodes readings as one SenML CBOR pack carrying `id`.
pub fn encode(id: BatchId, readings: &[Reading]) -> Result<Vec<u8>, EncodeError> {
    let records: Vec<Record<'_>> = readings.iter().map(Reading::record).collect();
    let bound = PACK_OVERHEAD + readings.iter().map(record_size_bound).sum::<usize>();
    let mut buf = vec![0u8; bound];
    loop {
        match encode_cbor(None, Some(id), &records, &mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            // The bound is meant to hold; grow rather than fail if it did not.
            Err(EncodeError::BufferFull) if buf.len() < 64 * 1024 * 1024 => {
                let len = buf.len() * 2;
                buf.resize(len, 0);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Why sealing a batch failed.
#[derive(Debug)]
pub enum SealError {
    /// The readings cannot be encoded (a bug: sources only make finite values).
    Encode(EncodeError),
    /// The outbox could not store it (disk full, I/O error): worth retrying.
    Store(anyhow::Error),
}

impl std::fmt::Display for SealError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SealError::Encode(e) => write!(f, "cannot encode batch: {e}"),
            SealError::Store(e) => write!(f, "cannot store batch: {e:#}"),
        }
    }
}

/// A batch now safe in the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sealed {
    /// Its sequence number.
    pub seq: u64,
    /// Its payload size in bytes.
    pub bytes: usize,
    /// Readings of older batches dropped to make room (outbox full).
    pub dropped: u64,
}

/// What the outbox held when opened.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// The outbox id the hub sees.
    pub id: u64,
    /// Batches waiting for an ack.
    pub batches: u64,
    /// Payload bytes waiting.
    pub bytes: u64,
    /// Readings dropped because the outbox was full, ever.
    pub dropped: u64,
}

/// A cloneable handle on the outbox.
#[derive(Debug, Clone)]
pub struct SharedOutbox {
    /// The outbox; only touched on the blocking pool.
    inner: Arc<Mutex<Outbox>>,
    /// Its id (fixed for the life of the file).
    id: u64,
}

fn locked<T>(
    inner: &Mutex<Outbox>,
    f: impl FnOnce(&mut Outbox) -> Result<T, StoreError>,
) -> anyhow::Result<T> {
    let mut o = inner
        .lock()
        .map_err(|_| anyhow::anyhow!("outbox lock poisoned"))?;
    Ok(f(&mut o)?)
}

impl SharedOutbox {
    /// Opens (or creates) the outbox file.
    pub async fn open(path: &Path, max_bytes: u64) -> anyhow::Result<(SharedOutbox, Summary)> {
        let p = path.to_owned();
        tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let o = Outbox::open(&p, max_bytes)
                .with_context(|| format!("cannot open outbox {}", p.display()))?;
            let summary = Summary {
                id: o.id(),
                batches: o.len()?,
                bytes: o.bytes(),
                dropped: o.dropped()?,
            };
            let id = o.id();
            Ok((
                SharedOutbox {
                    inner: Arc::new(Mutex::new(o)),
                    id,
                },
                summary,
            ))
        })
        .await
        .context("outbox open task failed")?
    }

    /// The outbox id (what acks must name).
    pub fn id(&self) -> u64 {
        self.id
    }

    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Outbox) -> Result<T, StoreError> + Send + 'static,
    ) -> anyhow::Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || locked(&inner, f))
            .await
            .context("outbox task failed")?
    }

    /// Encodes `readings` with the next batch id and stores the batch.
    pub async fn seal(&self, readings: Arc<[Reading]>) -> Result<Sealed, SealError> {
        let inner = self.inner.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let mut o = inner
                .lock()
                .map_err(|_| SealError::Store(anyhow::anyhow!("outbox lock poisoned")))?;
            let id = o.next_batch_id().map_err(|e| SealError::Store(e.into()))?;
            let payload = encode(id, &readings).map_err(SealError::Encode)?;
            let dropped = o
                .push(id, &payload, readings.len() as u64)
                .map_err(|e| SealError::Store(e.into()))?;
            Ok(Sealed {
                seq: id.seq,
                bytes: payload.len(),
                dropped,
            })
        })
        .await;
        match joined {
            Ok(r) => r,
            Err(e) => Err(SealError::Store(anyhow::anyhow!("outbox task failed: {e}"))),
        }
    }

    /// Up to `limit` batches with seq above `after`, oldest first.
    pub async fn pending(&self, after: u64, limit: usize) -> anyhow::Result<Vec<Pending>> {
        self.call(move |o| o.pending(after, limit)).await
    }

    /// Deletes every batch up to `upto`; returns the readings deleted.
    pub async fn ack(&self, upto: u64) -> anyhow::Result<u64> {
        self.call(move |o| o.ack(upto)).await
    }

    /// Batches waiting.
    pub async fn len(&self) -> anyhow::Result<u64> {
        self.call(|o| o.len()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::Value;
    use telltale_wire::decode::{decode, Limits};

    fn reading(name: &str, unit: Option<&str>, value: Value) -> Reading {
        Reading {
            name: name.into(),
            unit: unit.map(Into::into),
            value,
            time: 1_700_000_000.123,
        }
    }

    #[test]
    fn encode_round_trips_and_bound_holds() {
        let id = BatchId {
            outbox: (1 << 53) - 1,
            seq: u64::from(u32::MAX) + 7,
            low: 3,
        };
        let readings = vec![
            reading("room/temp", Some("Cel"), Value::Num(21.123_456_789)),
            reading(&"n".repeat(64), Some(&"u".repeat(32)), Value::Num(-1e300)),
            reading("door", None, Value::Bool(true)),
            reading("count", None, Value::Num(7.0)),
        ];
        let payload = encode(id, &readings).expect("encode");
        let bound = PACK_OVERHEAD + readings.iter().map(record_size_bound).sum::<usize>();
        assert!(payload.len() <= bound, "{} > {bound}", payload.len());
        let pack = decode(&payload, &Limits::default(), 0.0).expect("decode");
        assert_eq!(pack.batch, Some(id));
        assert_eq!(pack.readings.len(), 4);
        assert_eq!(pack.readings[0].name, "room/temp");
        assert_eq!(pack.readings[0].time, 1_700_000_000.123);
        assert_eq!(
            pack.readings[2].value,
            telltale_wire::decode::Value::Bool(true)
        );
    }

    #[tokio::test]
    async fn seal_pending_ack() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (o, summary) = SharedOutbox::open(&dir.path().join("outbox.db"), 1 << 20)
            .await
            .expect("open");
        assert_eq!(summary.batches, 0);
        let batch: Arc<[Reading]> = vec![reading("t", None, Value::Num(1.0))].into();
        let a = o.seal(batch.clone()).await.expect("seal");
        let b = o.seal(batch).await.expect("seal");
        assert_eq!((a.seq, b.seq, a.dropped), (1, 2, 0));
        let p = o.pending(0, 10).await.expect("pending");
        assert_eq!(p.len(), 2);
        let pack = decode(&p[1].payload, &Limits::default(), 0.0).expect("decode");
        assert_eq!(
            pack.batch.map(|b| (b.outbox, b.seq, b.low)),
            Some((o.id(), 2, 1))
        );
        assert_eq!(o.ack(1).await.expect("ack"), 1);
        assert_eq!(o.len().await.expect("len"), 1);
    }
}
