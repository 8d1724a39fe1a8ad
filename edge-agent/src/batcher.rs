//! The batcher: gathers readings from the sources into batches (closed by
//! count, by age, or before the encoding would pass the hub's payload
//! limit), seals each into the outbox and wakes the sender. When every
//! source has stopped it seals the partial batch, so nothing read is lost on
//! a clean shutdown.

use crate::outbox::{record_size_bound, SealError, SharedOutbox, PACK_OVERHEAD};
use crate::reading::Reading;
use crate::sources::{LogLimiter, COMPLAINT_PERIOD};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Largest payload the hub accepts (wire.md "Bad input").
pub fn max_payload() -> usize {
    telltale_wire::decode::Limits::default().max_payload
}

/// Wait between attempts to store a batch the outbox refused.
const RETRY: Duration = Duration::from_secs(1);

/// The readings of the batch being filled, and when it must close.
#[derive(Debug)]
pub struct OpenBatch {
    /// Close at this many readings.
    max_readings: usize,
    /// Close before the encoding could pass this many bytes.
    max_bytes: usize,
    /// The readings so far.
    readings: Vec<Reading>,
    /// Upper bound of their encoded size.
    bytes: usize,
}

impl OpenBatch {
    /// An empty batch with these limits.
    pub fn new(max_readings: usize, max_bytes: usize) -> Self {
        Self {
            max_readings,
            max_bytes,
            readings: Vec::new(),
            bytes: PACK_OVERHEAD,
        }
    }

    /// Adds a reading. Returns the batch that must be sealed first when this
    /// one would not fit, and whether the batch is now full.
    pub fn add(&mut self, r: Reading) -> (Option<Vec<Reading>>, bool) {
        let size = record_size_bound(&r);
        let before = if !self.readings.is_empty() && self.bytes + size > self.max_bytes {
            Some(self.take())
        } else {
            None
        };
        self.bytes += size;
        self.readings.push(r);
        let full = self.readings.len() >= self.max_readings || self.bytes >= self.max_bytes;
        (before, full)
    }

    /// Takes the readings out, leaving the batch empty.
    pub fn take(&mut self) -> Vec<Reading> {
        self.bytes = PACK_OVERHEAD;
        std::mem::take(&mut self.readings)
    }

    /// Readings held.
    pub fn len(&self) -> usize {
        self.readings.len()
    }

    /// Whether no reading is held.
    pub fn is_empty(&self) -> bool {
        self.readings.is_empty()
    }
}

/// Seals batches into the outbox.
#[derive(Debug)]
pub struct Batcher {
    /// Close a batch at this many readings.
    pub max_readings: usize,
    /// Close a batch this long after its first reading.
    pub interval: Duration,
    /// Where sealed batches go.
    pub outbox: SharedOutbox,
    /// Woken after each sealed batch (the sender waits on it).
    pub wake: Arc<Notify>,
}

impl Batcher {
    /// Runs until every sender of `rx` is gone, then seals what is left.
    /// `cancel` only cuts short retries of a failing outbox at shutdown.
    pub async fn run(self, mut rx: mpsc::Receiver<Reading>, cancel: CancellationToken) {
        let mut batch = OpenBatch::new(self.max_readings, max_payload());
        let mut deadline: Option<Instant> = None;
        let mut clock_complaints = LogLimiter::new(COMPLAINT_PERIOD);
        loop {
            let timer = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = rx.recv() => match r {
                    Some(r) => {
                        if !r.is_valid() {
                            tracing::warn!(metric = r.name, "non-finite reading dropped");
                            continue;
                        }
                        if !r.has_absolute_time() {
                            if let Some(held) = clock_complaints.allow(std::time::Instant::now()) {
                                tracing::warn!(
                                    suppressed = held,
                                    "the system clock is not set (before 1978): readings go without a time and the hub stamps them on arrival"
                                );
                            }
                        }
                        let (before, full) = batch.add(r);
                        if let Some(before) = before {
                            self.seal(before, &cancel).await;
                            deadline = None;
                        }
                        if deadline.is_none() {
                            deadline = Some(Instant::now() + self.interval);
                        }
                        if full {
                            self.seal(batch.take(), &cancel).await;
                            deadline = None;
                        }
                    }
                    None => break,
                },
                _ = timer => {
                    self.seal(batch.take(), &cancel).await;
                    deadline = None;
                }
            }
        }
        if !batch.is_empty() {
            tracing::info!(readings = batch.len(), "sealing the last partial batch");
            self.seal(batch.take(), &cancel).await;
        }
        tracing::debug!("batcher stopped");
    }

    /// Seals one batch, retrying while the outbox fails (the sources wait
    /// meanwhile); gives up only once shutdown has begun.
    async fn seal(&self, readings: Vec<Reading>, cancel: &CancellationToken) {
        if readings.is_empty() {
            return;
        }
        let readings: Arc<[Reading]> = readings.into();
        loop {
            match self.outbox.seal(readings.clone()).await {
                Ok(s) => {
                    tracing::debug!(
                        seq = s.seq,
                        readings = readings.len(),
                        bytes = s.bytes,
                        "batch sealed"
                    );
                    if s.dropped > 0 {
                        tracing::warn!(
                            dropped = s.dropped,
                            "outbox full: dropped the oldest unacknowledged readings"
                        );
                    }
                    self.wake.notify_one();
                    return;
                }
                Err(SealError::Encode(e)) => {
                    tracing::error!(readings = readings.len(), error = %e, "batch cannot be encoded; dropped");
                    return;
                }
                Err(e @ SealError::Store(_)) => {
                    if cancel.is_cancelled() {
                        tracing::error!(readings = readings.len(), error = %e, "batch lost at shutdown");
                        return;
                    }
                    tracing::error!(readings = readings.len(), error = %e, "retrying in {RETRY:?}");
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        _ = tokio::time::sleep(RETRY) => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::Value;
    use telltale_wire::decode::{decode, Limits};

    fn reading(name: &str, v: f64) -> Reading {
        Reading {
            name: name.into(),
            unit: Some("Cel".into()),
            value: Value::Num(v),
            time: 1_700_000_000.5,
        }
    }

    #[test]
    fn closes_by_count_and_by_size() {
        let mut p = OpenBatch::new(3, 1 << 20);
        assert_eq!(p.add(reading("a", 1.0)), (None, false));
        assert_eq!(p.add(reading("a", 2.0)), (None, false));
        assert_eq!(p.add(reading("a", 3.0)), (None, true));
        assert_eq!(p.take().len(), 3);
        assert!(p.is_empty());

        // Long names: a 64 KiB payload fits far fewer than 1000 of them.
        let name = "n".repeat(64);
        let mut p = OpenBatch::new(1000, max_payload());
        let mut sealed = Vec::new();
        for i in 0..1000 {
            let (before, full) = p.add(reading(&name, f64::from(i) + 0.1));
            sealed.extend(before);
            if full {
                sealed.push(p.take());
            }
        }
        sealed.push(p.take());
        assert!(sealed.len() > 1);
        assert_eq!(sealed.iter().map(Vec::len).sum::<usize>(), 1000);
        let id = telltale_wire::BatchId {
            outbox: 1,
            seq: 1,
            low: 1,
        };
        for b in &sealed {
            let payload = crate::outbox::encode(id, b).expect("encode");
            assert!(payload.len() <= max_payload(), "{}", payload.len());
            decode(&payload, &Limits::default(), 0.0).expect("hub accepts it");
        }
    }

    #[tokio::test]
    async fn seals_by_age_and_on_close() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (outbox, _) = SharedOutbox::open(&dir.path().join("o.db"), 1 << 20)
            .await
            .expect("open");
        let wake = Arc::new(Notify::new());
        let b = Batcher {
            max_readings: 100,
            interval: Duration::from_millis(50),
            outbox: outbox.clone(),
            wake: wake.clone(),
        };
        let (tx, rx) = mpsc::channel(16);
        let task = tokio::spawn(b.run(rx, CancellationToken::new()));
        tx.send(reading("a", 1.0)).await.expect("send");
        tx.send(reading("a", f64::NAN)).await.expect("send");
        tx.send(reading("a", 2.0)).await.expect("send");
        tokio::time::timeout(Duration::from_secs(5), wake.notified())
            .await
            .expect("sealed by age");
        tx.send(reading("a", 3.0)).await.expect("send");
        drop(tx);
        task.await.expect("join");
        let p = outbox.pending(0, 10).await.expect("pending");
        assert_eq!(p.iter().map(|p| p.readings).collect::<Vec<_>>(), [2, 1]);
    }
}
