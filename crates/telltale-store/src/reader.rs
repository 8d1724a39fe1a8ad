//! Read-only access: a connection of its own, so reads never wait on the
//! writer (WAL lets them run side by side).

use crate::schema;
use crate::StoreError;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::sync::Arc;
pub use telltale_wire::decode::Value as StoredValue;

/// A reading as stored, with its seq in the readings collection.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredReading {
    /// Sequence number in the readings collection.
    pub seq: u64,
    /// Time of the reading, ms since the epoch.
    pub ts_ms: i64,
    pub device: Arc<str>,
    pub metric: Arc<str>,
    pub unit: Option<Arc<str>>,
    pub value: StoredValue,
}

/// A kept reject.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectRow {
    pub id: i64,
    pub at_ms: i64,
    pub topic: String,
    pub device: Option<String>,
    pub kind: String,
    pub reason: String,
    pub size: i64,
    pub payload: Vec<u8>,
}

/// A read-only view of the hub's database.
#[derive(Debug)]
pub struct Reader {
    conn: Connection,
}

impl Reader {
    /// Opens the database read-only. It must exist (the writer creates it).
    pub fn open(path: &Path) -> Result<Reader, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(Reader { conn })
    }

    /// The store's epoch.
    pub fn epoch(&self) -> Result<String, StoreError> {
        Ok(schema::meta_get(&self.conn, "epoch")?.unwrap_or_default())
    }

    /// Number of readings held.
    pub fn count_readings(&self) -> Result<u64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM readings", [], |r| r.get::<_, i64>(0))?
            as u64)
    }

    /// Oldest and newest seq held, if any.
    pub fn seq_range(&self) -> Result<Option<(u64, u64)>, StoreError> {
        let (lo, hi): (Option<i64>, Option<i64>) =
            self.conn
                .query_row("SELECT min(seq), max(seq) FROM readings", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
        Ok(lo.zip(hi).map(|(a, b)| (a as u64, b as u64)))
    }

    /// Up to `limit` readings with seq above `after`, in seq order.
    pub fn readings_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredReading>, StoreError> {
        let mut q = self.conn.prepare_cached(
            "SELECT r.seq, r.ts, d.name, m.name, u.name, r.v
             FROM readings r
             JOIN devices d ON d.id = r.device
             JOIN names m ON m.id = r.metric
             LEFT JOIN names u ON u.id = r.unit
             WHERE r.seq > ?1 ORDER BY r.seq LIMIT ?2",
        )?;
        let rows = q.query_map([after as i64, limit as i64], |r| {
            let value = match r.get_ref(5)? {
                ValueRef::Real(x) => StoredValue::Num(x),
                ValueRef::Integer(i) => StoredValue::Bool(i != 0),
                ValueRef::Text(t) => StoredValue::Str(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => StoredValue::Data(b.to_vec()),
                ValueRef::Null => StoredValue::Num(f64::NAN),
            };
            Ok(StoredReading {
                seq: r.get::<_, i64>(0)? as u64,
                ts_ms: r.get(1)?,
                device: r.get::<_, String>(2)?.into(),
                metric: r.get::<_, String>(3)?.into(),
                unit: r.get::<_, Option<String>>(4)?.map(Into::into),
                value,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The newest `limit` rejects, newest first.
    pub fn rejects(&self, limit: usize) -> Result<Vec<RejectRow>, StoreError> {
        let mut q = self.conn.prepare_cached(
            "SELECT id, at, topic, device, kind, reason, size, payload
             FROM rejects ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = q.query_map([limit as i64], |r| {
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
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
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
