//! Rejects: the `rejects` table (the newest refused payloads, a ring of
//! `StoreConfig::max_rejects`, each payload cut to `reject_payload_bytes`)
//! and `reject_counts` (per kind, since the database was created).
//!
//! Uses only the database and the [`Reader`] type.

use crate::reader::Reader;
use crate::StoreError;
use rusqlite::{params, Connection};
use telltale_wire::BatchId;

/// Version 1 of the hub database: rejects and their counts.
pub(crate) const SCHEMA_V1: &str = "
    CREATE TABLE rejects (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        topic TEXT NOT NULL,
        device TEXT,
        kind TEXT NOT NULL,
        reason TEXT NOT NULL,
        size INTEGER NOT NULL,
        payload BLOB NOT NULL
    );
    CREATE TABLE reject_counts (kind TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
    ";

/// A payload that was refused, kept for inspection.
#[derive(Debug)]
pub struct Reject {
    /// When it arrived (ms since the epoch).
    pub at_ms: i64,
    /// The MQTT topic it came on.
    pub topic: String,
    /// The device id, when the topic named a valid one.
    pub device: Option<String>,
    /// Short machine-readable reason (`malformed_cbor`, `name_too_long`, ...).
    pub kind: &'static str,
    /// Human-readable reason.
    pub reason: String,
    /// The payload (the writer keeps only a prefix).
    pub payload: Vec<u8>,
    /// The batch identity, when the refused pack still carried one: the
    /// batch is acknowledged as handled.
    pub batch: Option<BatchId>,
}

/// A kept reject.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectRow {
    /// Its row id (newer rejects have higher ids).
    pub id: i64,
    /// When it arrived (ms since the epoch).
    pub at_ms: i64,
    /// The MQTT topic it came on.
    pub topic: String,
    /// The device its topic named, if any.
    pub device: Option<String>,
    /// Short machine-readable reason.
    pub kind: String,
    /// Human-readable reason.
    pub reason: String,
    /// The payload's whole size in bytes.
    pub size: i64,
    /// The payload's kept prefix.
    pub payload: Vec<u8>,
}

/// Stores `r` (its payload cut to `keep_bytes`), drops rejects beyond the
/// newest `max` (at least the new one is kept, so that ids never go back:
/// a reject's id is its version in the rejects collection), counts its
/// kind, and returns its id.
pub(crate) fn insert(
    tx: &Connection,
    r: &Reject,
    keep_bytes: usize,
    max: u64,
) -> Result<u64, StoreError> {
    let keep = r.payload.len().min(keep_bytes);
    tx.prepare_cached(
        "INSERT INTO rejects(at, topic, device, kind, reason, size, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        r.at_ms,
        r.topic,
        r.device,
        r.kind,
        r.reason,
        r.payload.len() as i64,
        &r.payload[..keep]
    ])?;
    let id = tx.last_insert_rowid();
    tx.prepare_cached("DELETE FROM rejects WHERE id <= ?1")?
        .execute([id - max.max(1) as i64])?;
    tx.prepare_cached(
        "INSERT INTO reject_counts(kind, n) VALUES (?1, 1)
         ON CONFLICT(kind) DO UPDATE SET n = n + 1",
    )?
    .execute([r.kind])?;
    Ok(id as u64)
}

/// The newest reject's id (0: none yet).
pub(crate) fn last_id(conn: &Connection) -> Result<u64, StoreError> {
    let id: Option<i64> = conn.query_row("SELECT max(id) FROM rejects", [], |r| r.get(0))?;
    Ok(id.unwrap_or(0) as u64)
}

/// A kept reject, from its columns in `REJECT_COLUMNS` order.
fn reject_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RejectRow> {
    Ok(RejectRow {
        id: r.get(0)?,
        at_ms: r.get(1)?,
        topic: r.get(2)?,
        device: r.get(3)?,
        kind: r.get(4)?,
        reason: r.get(5)?,
        size: r.get(6)?,
        payload: r.get(7)?,
    })
}

impl Reader {
    /// The newest `limit` rejects, newest first.
    pub fn rejects(&self, limit: usize) -> Result<Vec<RejectRow>, StoreError> {
        let mut q = self.conn.prepare_cached(
            "SELECT id, at, topic, device, kind, reason, size, payload
             FROM rejects ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = q.query_map([limit as i64], reject_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Rejects with an id above `after`, oldest first, at most `limit`.
    pub fn rejects_after(&self, after: u64, limit: usize) -> Result<Vec<RejectRow>, StoreError> {
        let mut q = self.conn.prepare_cached(
            "SELECT id, at, topic, device, kind, reason, size, payload
             FROM rejects WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = q.query_map([after as i64, limit as i64], reject_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The oldest and the newest reject id held (0 and 0: none).
    pub fn reject_ids(&self) -> Result<(u64, u64), StoreError> {
        let (lo, hi): (Option<i64>, Option<i64>) =
            self.conn
                .query_row("SELECT min(id), max(id) FROM rejects", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
        Ok((lo.unwrap_or(0) as u64, hi.unwrap_or(0) as u64))
    }

    /// The first reject id at or after `ts_ms` (ms since the epoch).
    pub fn first_reject_at_or_after(&self, ts_ms: i64) -> Result<Option<u64>, StoreError> {
        let id: Option<i64> =
            self.conn
                .query_row("SELECT min(id) FROM rejects WHERE at >= ?1", [ts_ms], |r| {
                    r.get(0)
                })?;
        Ok(id.map(|i| i as u64))
    }

    /// Rejects counted by kind since the database was created.
    pub fn reject_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut q = self
            .conn
            .prepare_cached("SELECT kind, n FROM reject_counts ORDER BY kind")?;
        let rows = q.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
