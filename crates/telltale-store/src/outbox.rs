//! The edge agent's durable outbox: encoded batches wait here until the hub
//! acknowledges them, across restarts of the agent and outages of the hub.
//!
//! Bounded by bytes: when full, the oldest batches are dropped and counted.
//! Each outbox has a random id, so the hub can tell a new outbox (after the
//! file was deleted) from an old one.

use crate::config::Synchronous;
use crate::meta;
use crate::schema::{self, Migration};
use crate::{now_ms, StoreError};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use telltale_wire::BatchId;

/// Migrations of the agent's outbox database (see `schema.rs`).
const MIGRATIONS: &[Migration] = &[&["
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY,
        created INTEGER NOT NULL,
        readings INTEGER NOT NULL,
        payload BLOB NOT NULL
    );
    "]];

/// A batch waiting for its ack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub seq: u64,
    pub payload: Vec<u8>,
    pub readings: u64,
}

/// The outbox.
#[derive(Debug)]
pub struct Outbox {
    conn: Connection,
    id: u64,
    max_bytes: u64,
    next_seq: u64,
    bytes: u64,
}

impl Outbox {
    /// Opens or creates the outbox at `path`, holding at most `max_bytes` of
    /// payloads.
    pub fn open(path: &Path, max_bytes: u64) -> Result<Outbox, StoreError> {
        let conn = schema::open(path, MIGRATIONS, Synchronous::Full)?;
        let id = match meta::get(&conn, "outbox_id")? {
            Some(v) => v.parse().unwrap_or(1),
            None => {
                // Below 2^53 so that JSON readers keep it exact.
                let id = rand::random::<u64>() >> 11 | 1;
                meta::set(&conn, "outbox_id", &id.to_string())?;
                id
            }
        };
        let last: Option<i64> = conn.query_row("SELECT max(seq) FROM outbox", [], |r| r.get(0))?;
        let stored_next: u64 = meta::get(&conn, "next_seq")?
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        let bytes: i64 = conn.query_row(
            "SELECT coalesce(sum(length(payload)), 0) FROM outbox",
            [],
            |r| r.get(0),
        )?;
        Ok(Outbox {
            conn,
            id,
            max_bytes,
            next_seq: stored_next.max(last.map_or(1, |l| l as u64 + 1)),
            bytes: bytes as u64,
        })
    }

    /// This outbox's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The identity the next batch gets.
    pub fn next_batch_id(&self) -> Result<BatchId, StoreError> {
        let low: Option<i64> = self
            .conn
            .query_row("SELECT min(seq) FROM outbox", [], |r| r.get(0))?;
        Ok(BatchId {
            outbox: self.id,
            seq: self.next_seq,
            low: low.map_or(self.next_seq, |l| l as u64),
        })
    }

    /// Stores a batch encoded with `id` (from [`Outbox::next_batch_id`]).
    /// Returns the readings dropped (oldest batches) to make room.
    pub fn push(&mut self, id: BatchId, payload: &[u8], readings: u64) -> Result<u64, StoreError> {
        let tx = self.conn.transaction()?;
        let mut dropped = 0u64;
        let mut bytes = self.bytes;
        while bytes + payload.len() as u64 > self.max_bytes {
            let oldest: Option<(i64, i64, i64)> = tx
                .query_row(
                    "SELECT seq, length(payload), readings FROM outbox ORDER BY seq LIMIT 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let Some((seq, len, n)) = oldest else {
                break;
            };
            tx.execute("DELETE FROM outbox WHERE seq = ?1", [seq])?;
            bytes -= len as u64;
            dropped += n as u64;
        }
        tx.execute(
            "INSERT INTO outbox(seq, created, readings, payload) VALUES (?1, ?2, ?3, ?4)",
            params![id.seq as i64, now_ms(), readings as i64, payload],
        )?;
        meta::set(&tx, "next_seq", &(id.seq + 1).to_string())?;
        if dropped > 0 {
            let before: u64 = meta::get(&tx, "dropped_readings")?
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            meta::set(&tx, "dropped_readings", &(before + dropped).to_string())?;
        }
        tx.commit()?;
        self.bytes = bytes + payload.len() as u64;
        self.next_seq = id.seq + 1;
        Ok(dropped)
    }

    /// Up to `limit` pending batches with seq above `after`, oldest first.
    pub fn pending(&self, after: u64, limit: usize) -> Result<Vec<Pending>, StoreError> {
        let mut q = self.conn.prepare_cached(
            "SELECT seq, payload, readings FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = q.query_map(params![after as i64, limit as i64], |r| {
            Ok(Pending {
                seq: r.get::<_, i64>(0)? as u64,
                payload: r.get(1)?,
                readings: r.get::<_, i64>(2)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes every batch up to `upto` (the hub committed them). Returns the
    /// readings deleted.
    pub fn ack(&mut self, upto: u64) -> Result<u64, StoreError> {
        let (n, len): (i64, i64) = self.conn.query_row(
            "SELECT coalesce(sum(readings), 0), coalesce(sum(length(payload)), 0)
             FROM outbox WHERE seq <= ?1",
            [upto as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        self.conn
            .execute("DELETE FROM outbox WHERE seq <= ?1", [upto as i64])?;
        self.bytes = self.bytes.saturating_sub(len as u64);
        Ok(n as u64)
    }

    /// Batches waiting.
    pub fn len(&self) -> Result<u64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM outbox", [], |r| r.get::<_, i64>(0))?
            as u64)
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }

    /// Bytes of payload waiting.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Readings dropped because the outbox was full, since it was created.
    pub fn dropped(&self) -> Result<u64, StoreError> {
        Ok(meta::get(&self.conn, "dropped_readings")?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopen_and_drops_oldest_when_full() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("outbox.db");
        let mut o = Outbox::open(&path, 130).expect("open");
        let id0 = o.id();
        for _ in 0..3 {
            let id = o.next_batch_id().expect("id");
            assert_eq!(o.push(id, &[0u8; 40], 2).expect("push"), 0);
        }
        assert_eq!(o.len().expect("len"), 3);
        drop(o);
        let mut o = Outbox::open(&path, 130).expect("reopen");
        assert_eq!(o.id(), id0);
        let id = o.next_batch_id().expect("id");
        assert_eq!((id.seq, id.low), (4, 1));
        // 3 * 40 + 40 > 130: the oldest goes.
        assert_eq!(o.push(id, &[0u8; 40], 2).expect("push"), 2);
        let p = o.pending(0, 10).expect("pending");
        assert_eq!(p.iter().map(|p| p.seq).collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(o.ack(3).expect("ack"), 4);
        assert_eq!(o.pending(0, 10).expect("pending").len(), 1);
        assert_eq!(o.dropped().expect("dropped"), 2);
        assert_eq!(o.next_batch_id().expect("id").low, 4);
    }
}
