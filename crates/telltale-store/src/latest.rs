//! The latest collection (`latest`): the newest reading per (device,
//! metric), with a seq of its own (`meta.latest_seq`, never reused). A row
//! keeps its own copy of the value, as the ring may delete the reading.
//!
//! Per group, the newest reading of each key (by time stamp, ties to the
//! higher reading seq) is upserted once at the end, and only over an older
//! stored row: a late batch from an outbox flush cannot replace a newer
//! value. Each row that changed takes the next latest seq.
//!
//! Uses `meta`, `names` (interned ids) and `readings` (value encoding).

use crate::meta;
use crate::names::Interned;
use crate::reader::{sql_limit, sql_u64, Reader};
use crate::readings::{stored_value, value_sql, StoredValue};
use crate::StoreError;
use rusqlite::{params, Connection, Row};
use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;
use telltale_wire::decode::Value;

/// Version 2 of the hub database: the latest table, filled from the log on
/// an existing database. Runs before the devices step of the same version,
/// which reads it.
pub(crate) const SCHEMA_V2: &str = "
    -- seq is the latest collection's sequence (meta.latest_seq, never reused);
    -- reading is the seq of the reading the row was taken from (the ring may
    -- have deleted that reading since: the row keeps its own copy of the value).
    CREATE TABLE latest (
        device INTEGER NOT NULL,
        metric INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        unit INTEGER,
        v,
        reading INTEGER NOT NULL,
        PRIMARY KEY (device, metric)
    ) WITHOUT ROWID;
    CREATE INDEX latest_by_seq ON latest(seq);

    -- An existing database: the newest reading per (device, metric) still in
    -- the log becomes its latest row, numbered in reading order (newest by
    -- time stamp, ties to the higher seq: the writer's rule).
    INSERT INTO latest(device, metric, seq, ts, unit, v, reading)
    SELECT device, metric, row_number() OVER (ORDER BY reading), ts, unit, v, reading
    FROM (
        SELECT device, metric, ts, unit, v, seq AS reading,
               row_number() OVER (PARTITION BY device, metric ORDER BY ts DESC, seq DESC) AS rn
        FROM readings
    )
    WHERE rn = 1;
    INSERT INTO meta(key, value) SELECT 'latest_seq', CAST(count(*) AS TEXT) FROM latest;
    ";

/// The newest reading of one (device, metric): an item of the latest
/// collection.
#[derive(Debug, Clone, PartialEq)]
pub struct LatestRow {
    /// Sequence number in the latest collection: the last change of this row.
    pub seq: u64,
    /// Device id.
    pub device: Arc<str>,
    /// Metric name.
    pub metric: Arc<str>,
    /// Unit of the reading, if it had one.
    pub unit: Option<Arc<str>>,
    /// The value (kept here: the ring may since have deleted the reading).
    pub value: StoredValue,
    /// Time of the reading, ms since the epoch (the device's clock).
    pub ts_ms: i64,
    /// Seq of the reading in the readings collection.
    pub reading_seq: u64,
}

/// The newest reading of one (device, metric) in the current group.
struct Candidate {
    /// Its time stamp (ms, the device's clock).
    ts: i64,
    /// Its seq in the readings collection.
    reading: u64,
    /// Its device's name, for the row watchers get.
    device: Arc<str>,
    /// Its metric's name, for the row watchers get.
    metric: Arc<str>,
    /// Its unit: id and name.
    unit: Option<Interned>,
    /// Its value.
    value: Value,
}

/// The group's candidates: the newest reading per (device id, metric id).
#[derive(Default)]
pub(crate) struct Pending(HashMap<(i64, i64), Candidate>);

impl Pending {
    /// Offers a reading of the group; a later one wins a tie, as it has the
    /// higher seq. An existing candidate is updated in place (no name clones
    /// per reading).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn offer(
        &mut self,
        dev: i64,
        device: &Arc<str>,
        metric: i64,
        metric_name: Arc<str>,
        seq: u64,
        ts: i64,
        unit: Option<Interned>,
        value: Value,
    ) {
        use std::collections::hash_map::Entry;
        match self.0.entry((dev, metric)) {
            Entry::Occupied(mut e) => {
                let c = e.get_mut();
                if ts >= c.ts {
                    c.ts = ts;
                    c.reading = seq;
                    c.value = value;
                    if c.unit.as_ref().map(|u| u.0) != unit.as_ref().map(|u| u.0) {
                        c.unit = unit;
                    }
                }
            }
            Entry::Vacant(e) => {
                e.insert(Candidate {
                    ts,
                    reading: seq,
                    device: device.clone(),
                    metric: metric_name,
                    unit,
                    value,
                });
            }
        }
    }
}

/// The writer's state of the latest collection.
pub(crate) struct Latest {
    /// Seq the next change of a latest row gets (`meta.latest_seq` + 1).
    pub(crate) next_seq: u64,
}

impl Latest {
    /// Carries on from the database.
    pub(crate) fn load(conn: &Connection) -> Result<Latest, StoreError> {
        Ok(Latest {
            next_seq: meta::seq(conn, meta::LATEST_SEQ)? + 1,
        })
    }

    /// Writes the group's candidates into `latest`, one upsert per key, each
    /// only over an older row (by time stamp; a tie goes to the new reading,
    /// whose seq is higher). A row that changed takes the next latest seq
    /// and, when `want_events`, goes into `changed`.
    pub(crate) fn flush(
        &mut self,
        tx: &Connection,
        pending: &mut Pending,
        want_events: bool,
        changed: &mut Vec<LatestRow>,
    ) -> Result<(), StoreError> {
        if pending.0.is_empty() {
            return Ok(());
        }
        let mut keys: Vec<_> = pending.0.drain().collect();
        // Latest seqs follow reading seqs: deterministic, and the order a
        // replay of the log would give.
        keys.sort_unstable_by_key(|(_, c)| c.reading);
        let mut up = tx.prepare_cached(
            "INSERT INTO latest(device, metric, seq, ts, unit, v, reading)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(device, metric) DO UPDATE SET
                 seq = excluded.seq, ts = excluded.ts, unit = excluded.unit,
                 v = excluded.v, reading = excluded.reading
             WHERE excluded.ts >= latest.ts",
        )?;
        let before = self.next_seq;
        for ((dev, metric), c) in keys {
            let seq = self.next_seq;
            let n = up.execute(params![
                dev,
                metric,
                seq as i64,
                c.ts,
                c.unit.as_ref().map(|u| u.0),
                value_sql(&c.value),
                c.reading as i64
            ])?;
            if n == 0 {
                continue;
            }
            self.next_seq += 1;
            if want_events {
                changed.push(LatestRow {
                    seq,
                    device: c.device,
                    metric: c.metric,
                    unit: c.unit.map(|u| u.1),
                    value: c.value,
                    ts_ms: c.ts,
                    reading_seq: c.reading,
                });
            }
        }
        if self.next_seq != before {
            meta::set_seq(tx, meta::LATEST_SEQ, self.next_seq - 1)?;
        }
        Ok(())
    }
}

const LATEST_SELECT: &str = "SELECT l.seq, d.name, m.name, u.name, l.v, l.ts, l.reading
     FROM latest l
     JOIN devices d ON d.id = l.device
     JOIN names m ON m.id = l.metric
     LEFT JOIN names u ON u.id = l.unit";

fn latest_row(r: &Row<'_>) -> rusqlite::Result<LatestRow> {
    Ok(LatestRow {
        seq: r.get::<_, i64>(0)? as u64,
        device: r.get::<_, String>(1)?.into(),
        metric: r.get::<_, String>(2)?.into(),
        unit: r.get::<_, Option<String>>(3)?.map(Into::into),
        value: stored_value(r.get_ref(4)?),
        ts_ms: r.get(5)?,
        reading_seq: r.get::<_, i64>(6)? as u64,
    })
}

impl Reader {
    /// Every latest row, ordered by device id, then metric name.
    pub fn latest_all(&self) -> Result<Vec<LatestRow>, StoreError> {
        let sql = format!("{LATEST_SELECT} ORDER BY d.name, m.name");
        self.rows(&sql, [], latest_row)
    }

    /// Up to `limit` latest rows changed after `seq`, in seq order.
    pub fn latest_after(&self, seq: u64, limit: usize) -> Result<Vec<LatestRow>, StoreError> {
        let sql = format!("{LATEST_SELECT} WHERE l.seq > ?1 ORDER BY l.seq LIMIT ?2");
        self.rows(&sql, [sql_u64(seq), sql_limit(limit)], latest_row)
    }
}
