//! Batch identity: the `batches` and `outboxes` tables, which make a
//! sender's batches idempotent. The hub stores each (device, outbox, batch
//! seq) once; per outbox it keeps `upto` (every batch up to it is committed,
//! or will never come) and the committed batches above it. After a commit
//! the writer acknowledges each outbox up to its `upto`.
//!
//! Uses only the database.

use crate::{now_ms, StoreError};
use rusqlite::{params, Connection, OptionalExtension};
use rustc_hash::FxHashMap as HashMap;
use std::collections::BTreeSet;
use telltale_wire::BatchId;

/// Version 1 of the hub database: sender outboxes and their batches.
pub(crate) const SCHEMA_V1: &str = "
    CREATE TABLE outboxes (
        device INTEGER NOT NULL,
        outbox INTEGER NOT NULL,
        upto INTEGER NOT NULL,
        updated INTEGER NOT NULL,
        PRIMARY KEY (device, outbox)
    ) WITHOUT ROWID;
    CREATE TABLE batches (
        device INTEGER NOT NULL,
        outbox INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (device, outbox, seq)
    ) WITHOUT ROWID;
    ";

/// "Batches of `outbox` up to `upto` from `device` are committed."
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckOut {
    /// The sender device.
    pub device: String,
    /// Its outbox (an agent's outbox database).
    pub outbox: u64,
    /// Every batch of that outbox up to here is handled.
    pub upto: u64,
}

/// Most out-of-order batches remembered per outbox before the gap below them
/// is given up as lost.
const MAX_ABOVE: usize = 10_000;

/// What the hub knows of one sender outbox.
#[derive(Debug, Default)]
struct OutboxState {
    /// Every batch up to here is committed (or will never come).
    upto: u64,
    /// Committed batches above `upto` (a gap sits below the smallest).
    above: BTreeSet<u64>,
    /// Changed in the current group.
    dirty: bool,
}

/// The writer's idempotency state per (device id, outbox), each loaded on
/// first use.
#[derive(Default)]
pub(crate) struct Outboxes(HashMap<(i64, u64), OutboxState>);

impl Outboxes {
    /// Records that batch `id` of device `dev` is stored by this group;
    /// false if it was stored before (a duplicate).
    pub(crate) fn claim(
        &mut self,
        tx: &Connection,
        dev: i64,
        id: BatchId,
    ) -> Result<bool, StoreError> {
        let st = self.outbox(tx, dev, id.outbox)?;
        if id.low > st.upto + 1 {
            st.upto = id.low - 1;
            st.dirty = true;
        }
        if id.seq <= st.upto || st.above.contains(&id.seq) {
            return Ok(false);
        }
        st.above.insert(id.seq);
        st.dirty = true;
        tx.prepare_cached("INSERT INTO batches(device, outbox, seq) VALUES (?1, ?2, ?3)")?
            .execute(params![dev, id.outbox as i64, id.seq as i64])?;
        Ok(true)
    }

    /// How far outbox `outbox` of device `dev` is acknowledged.
    pub(crate) fn upto(&self, dev: i64, outbox: u64) -> u64 {
        self.0.get(&(dev, outbox)).map_or(0, |o| o.upto)
    }

    /// Forgets every outbox (after a failed commit).
    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }

    /// The idempotency state of one outbox, loaded on first use.
    fn outbox(
        &mut self,
        tx: &Connection,
        dev: i64,
        outbox: u64,
    ) -> Result<&mut OutboxState, StoreError> {
        use std::collections::hash_map::Entry;
        match self.0.entry((dev, outbox)) {
            Entry::Occupied(e) => Ok(e.into_mut()),
            Entry::Vacant(e) => {
                let upto: Option<i64> = tx
                    .prepare_cached("SELECT upto FROM outboxes WHERE device = ?1 AND outbox = ?2")?
                    .query_row(params![dev, outbox as i64], |r| r.get(0))
                    .optional()?;
                let mut st = OutboxState {
                    upto: upto.unwrap_or(0) as u64,
                    ..OutboxState::default()
                };
                let mut q = tx.prepare_cached(
                    "SELECT seq FROM batches WHERE device = ?1 AND outbox = ?2 AND seq > ?3",
                )?;
                let rows = q.query_map(params![dev, outbox as i64, st.upto as i64], |r| {
                    r.get::<_, i64>(0)
                })?;
                for seq in rows {
                    st.above.insert(seq? as u64);
                }
                Ok(e.insert(st))
            }
        }
    }

    /// Moves each changed outbox's `upto` over the batches now contiguous
    /// and writes it down.
    pub(crate) fn flush(&mut self, tx: &Connection) -> Result<(), StoreError> {
        let now = now_ms();
        for (&(dev, outbox), st) in self.0.iter_mut().filter(|(_, s)| s.dirty) {
            st.above.retain(|&s| s > st.upto);
            while st.above.first() == Some(&(st.upto + 1)) {
                st.above.pop_first();
                st.upto += 1;
            }
            if st.above.len() > MAX_ABOVE {
                let first = st.above.first().copied().unwrap_or(st.upto + 1);
                tracing::warn!(
                    device = dev,
                    outbox,
                    from = st.upto + 1,
                    to = first - 1,
                    "giving up on a gap in a sender's batches"
                );
                st.upto = first - 1;
                while st.above.first() == Some(&(st.upto + 1)) {
                    st.above.pop_first();
                    st.upto += 1;
                }
            }
            tx.prepare_cached(
                "INSERT INTO outboxes(device, outbox, upto, updated) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(device, outbox) DO UPDATE SET upto = excluded.upto, updated = excluded.updated",
            )?
            .execute(params![dev, outbox as i64, st.upto as i64, now])?;
            tx.prepare_cached(
                "DELETE FROM batches WHERE device = ?1 AND outbox = ?2 AND seq <= ?3",
            )?
            .execute(params![dev, outbox as i64, st.upto as i64])?;
            st.dirty = false;
        }
        Ok(())
    }
}
