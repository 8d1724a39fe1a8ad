//! The readings log (`readings`): a ring of readings, each under a seq of
//! the readings collection that is assigned once, in commit order, and never
//! reused (`meta.readings_seq` is the high-water mark, so a seq survives the
//! ring emptying).
//!
//! The writer may show readings to watchers before their group commits, but
//! only under seqs a committed `meta.readings_reserved` covers. Should the
//! hub die (or a commit fail) after showing them, those seqs become gaps
//! (`meta.readings_gaps`): never given to other readings, answered as lost
//! to a resume from inside them, and left out of the ring's row count by
//! retention. Retention (row, age and size bounds) deletes the oldest rows
//! a batch at a time.
//!
//! Uses `meta` and the [`Reader`] type; values are stored in one dynamically
//! typed column `v` (REAL, TEXT, BLOB, INTEGER 0/1 for booleans).

use crate::config::Retention;
use crate::meta;
use crate::names::Interned;
use crate::reader::{sql_limit, sql_u64, Reader};
use crate::{now_ms, StoreError};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, OptionalExtension};
use std::sync::Arc;
pub use telltale_wire::decode::Value as StoredValue;
use telltale_wire::decode::{Reading, Value};
use telltale_wire::BatchId;

/// Version 1 of the hub database: the readings log.
pub(crate) const SCHEMA_V1: &str = "
    -- seq is the readings collection's sequence (never reused, see meta.readings_seq).
    -- v holds REAL for numbers, TEXT for strings, BLOB for data, INTEGER 0/1 for booleans.
    CREATE TABLE readings (
        seq INTEGER PRIMARY KEY,
        ts INTEGER NOT NULL,
        device INTEGER NOT NULL,
        metric INTEGER NOT NULL,
        unit INTEGER,
        v
    );
    ";

/// A decoded pack from one device, ready to store.
#[derive(Debug)]
pub struct IncomingBatch {
    /// Device id (from the topic, already checked).
    pub device: String,
    /// Batch identity, when the sender gave one: makes the write idempotent.
    pub batch: Option<BatchId>,
    /// The readings.
    pub readings: Vec<Reading>,
}

/// A reading as stored, with its seq in the readings collection.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredReading {
    /// Sequence number in the readings collection.
    pub seq: u64,
    /// Time of the reading, ms since the epoch.
    pub ts_ms: i64,
    /// The device that sent it.
    pub device: Arc<str>,
    /// Its metric name.
    pub metric: Arc<str>,
    /// Its unit, if it had one.
    pub unit: Option<Arc<str>>,
    /// Its value.
    pub value: StoredValue,
}

/// One reading row before insert: seq, ts, metric id, metric name, unit,
/// value.
pub(crate) type Row = (u64, i64, i64, Arc<str>, Option<Interned>, Value);

/// Seqs never used: (first, count).
pub(crate) type Gap = (u64, u64);

/// Rows per multi-row INSERT.
const ROWS_PER_INSERT: usize = 32;

/// The writer's view of the ring; all of it can be rebuilt from the
/// database.
pub(crate) struct Ring {
    /// Seq the next reading gets.
    pub(crate) next_seq: u64,
    /// Oldest seq still in the log.
    pub(crate) oldest_seq: u64,
    /// Reading seqs up to here are reserved by a committed `meta` row: they
    /// may be shown to watchers before their group commits.
    pub(crate) reserved: u64,
    /// Seqs never used (start, length), oldest first, all at or above
    /// `oldest_seq`: left by a crash or a failed commit after readings were
    /// shown early. Retention counts rows without them.
    gaps: Vec<Gap>,
    /// `gaps` changed since the last commit.
    gaps_dirty: bool,
}

impl Ring {
    /// Where the readings sequence goes on at start: after the last
    /// committed seq, or after the seqs reserved by the last commit when the
    /// hub stopped without its final commit (some may have been shown to
    /// watchers: they become a gap). Then reserves `reserve` seqs for the
    /// first group.
    pub(crate) fn open(conn: &Connection, reserve: u64) -> Result<Ring, StoreError> {
        let mut last = meta::seq(conn, meta::READINGS_SEQ)?;
        let reserved = meta::seq(conn, meta::READINGS_RESERVED)?;
        let mut gaps = parse_gaps(&meta::get(conn, meta::READINGS_GAPS)?.unwrap_or_default());
        let tx = conn.unchecked_transaction()?;
        if reserved > last {
            tracing::warn!(
                from = last + 1,
                to = reserved,
                "the hub stopped without its last commit: reading seqs it may have shown are skipped"
            );
            gaps.push((last + 1, reserved - last));
            last = reserved;
            meta::set_seq(&tx, meta::READINGS_SEQ, last)?;
            meta::set(&tx, meta::READINGS_GAPS, &gaps_text(&gaps))?;
        }
        meta::set_seq(&tx, meta::READINGS_RESERVED, last + reserve)?;
        tx.commit()?;
        let next_seq = last + 1;
        let oldest = oldest(conn)?;
        Ok(Ring {
            next_seq,
            oldest_seq: oldest.unwrap_or(next_seq),
            reserved: last + reserve,
            gaps: gaps
                .into_iter()
                .filter(|g| oldest.is_some_and(|o| g.0 >= o))
                .collect(),
            gaps_dirty: true,
        })
    }

    /// The next seq, taken.
    pub(crate) fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// The last seq given out.
    pub(crate) fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Writes the group's marks: the last seq, the seqs reserved for the
    /// next group (none when `closing`: a clean stop leaves no gap) and the
    /// gaps if they changed. Returns what is reserved once this commits.
    pub(crate) fn write_marks(
        &self,
        tx: &Connection,
        closing: bool,
        span: u64,
    ) -> Result<u64, StoreError> {
        meta::set_seq(tx, meta::READINGS_SEQ, self.last_seq())?;
        let reserve = if closing {
            self.last_seq()
        } else {
            self.last_seq() + span
        };
        meta::set_seq(tx, meta::READINGS_RESERVED, reserve)?;
        if self.gaps_dirty {
            meta::set(tx, meta::READINGS_GAPS, &gaps_text(&self.gaps))?;
        }
        Ok(reserve)
    }

    /// The group that wrote `reserve` committed.
    pub(crate) fn committed(&mut self, reserve: u64) {
        self.reserved = reserve;
        self.gaps_dirty = false;
    }

    /// After a failed commit: the sequence as committed.
    pub(crate) fn reload(&mut self, conn: &Connection) -> Result<(), StoreError> {
        self.next_seq = meta::seq(conn, meta::READINGS_SEQ)? + 1;
        self.oldest_seq = oldest(conn)?.unwrap_or(self.next_seq);
        Ok(())
    }

    /// After a failed commit: the seqs shown to watchers (up to `shown`)
    /// are never given out again; they become a gap.
    pub(crate) fn skip_shown(&mut self, shown: u64) {
        if shown >= self.next_seq {
            self.gaps.push((self.next_seq, shown + 1 - self.next_seq));
            self.gaps_dirty = true;
            self.next_seq = shown + 1;
        }
    }

    /// At a clean stop: releases the reserved seqs (no gap at the next start).
    pub(crate) fn release(&self, conn: &Connection) -> Result<(), StoreError> {
        if self.reserved >= self.next_seq {
            meta::set_seq(conn, meta::READINGS_RESERVED, self.last_seq())?;
        }
        Ok(())
    }

    /// Deletes the oldest readings while a bound is passed, a `delete_batch`
    /// at a time, and at most about twice what this group inserted (so a
    /// lowered bound is caught up over several commits, never in one stall).
    /// Returns how many it deleted.
    pub(crate) fn retention(
        &mut self,
        tx: &Connection,
        r: &Retention,
        inserted: u64,
    ) -> Result<u64, StoreError> {
        let chunk = r.delete_batch.max(1);
        let budget = (inserted * 2).max(chunk);
        let mut deleted = 0;
        while deleted < budget {
            let held = self.held();
            if held == 0 {
                break;
            }
            let n = if held > r.max_rows {
                (held - r.max_rows).min(chunk)
            } else if self.too_old(tx, r)? || used_bytes(tx)? > r.max_bytes {
                chunk.min(held)
            } else {
                break;
            };
            // The n oldest rows end below `new_oldest`, past any gap among them.
            let mut new_oldest = self.oldest_seq;
            let mut left = n;
            while let Some(&(start, len)) = self.gaps.first() {
                if start - new_oldest > left {
                    break;
                }
                left -= start - new_oldest;
                new_oldest = start + len;
                self.gaps.remove(0);
                self.gaps_dirty = true;
            }
            new_oldest += left;
            tx.prepare_cached("DELETE FROM readings WHERE seq < ?1")?
                .execute([new_oldest as i64])?;
            self.oldest_seq = new_oldest;
            deleted += n;
        }
        Ok(deleted)
    }

    /// Readings in the log.
    fn held(&self) -> u64 {
        let skipped: u64 = self.gaps.iter().map(|g| g.1).sum();
        (self.next_seq - self.oldest_seq).saturating_sub(skipped)
    }

    /// Whether any retention bound is passed now.
    pub(crate) fn over_bounds(&self, conn: &Connection, r: &Retention) -> Result<bool, StoreError> {
        let held = self.held();
        Ok(held > 0
            && (held > r.max_rows || self.too_old(conn, r)? || used_bytes(conn)? > r.max_bytes))
    }

    /// Whether the oldest delete batch is past the age bound, judged by the
    /// time of its newest reading: one device with a clock far behind cannot
    /// make the ring delete fresh readings.
    fn too_old(&self, tx: &Connection, r: &Retention) -> Result<bool, StoreError> {
        if r.max_age_secs == 0 || self.next_seq == self.oldest_seq {
            return Ok(false);
        }
        let chunk = r.delete_batch.max(1);
        let probe = (self.oldest_seq + chunk - 1).min(self.next_seq - 1);
        let ts: Option<i64> = tx
            .prepare_cached("SELECT max(ts) FROM readings WHERE seq BETWEEN ?1 AND ?2")?
            .query_row([self.oldest_seq as i64, probe as i64], |r| r.get(0))?;
        Ok(ts.is_some_and(|ts| ts < now_ms() - (r.max_age_secs as i64) * 1000))
    }
}

/// The oldest seq in the log, if any.
fn oldest(conn: &Connection) -> Result<Option<u64>, StoreError> {
    Ok(conn.query_row("SELECT min(seq) FROM readings", [], |r| r.get(0))?)
}

fn gaps_text(gaps: &[Gap]) -> String {
    gaps.iter()
        .map(|(s, n)| format!("{s}:{n}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_gaps(text: &str) -> Vec<Gap> {
    text.split(',')
        .filter_map(|g| {
            let (s, n) = g.split_once(':')?;
            Some((s.parse().ok()?, n.parse().ok()?))
        })
        .collect()
}

/// A value as its SQLite type (see the module doc).
pub(crate) fn value_sql(v: &Value) -> ToSqlOutput<'_> {
    ToSqlOutput::Borrowed(match v {
        Value::Num(x) => ValueRef::Real(*x),
        Value::Bool(b) => ValueRef::Integer(i64::from(*b)),
        Value::Str(s) => ValueRef::Text(s.as_bytes()),
        Value::Data(d) => ValueRef::Blob(d),
    })
}

/// A stored value back in its type.
pub(crate) fn stored_value(v: ValueRef<'_>) -> StoredValue {
    match v {
        ValueRef::Real(x) => StoredValue::Num(x),
        ValueRef::Integer(i) => StoredValue::Bool(i != 0),
        ValueRef::Text(t) => StoredValue::Str(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => StoredValue::Data(b.to_vec()),
        ValueRef::Null => StoredValue::Num(f64::NAN),
    }
}

/// Inserts `rows` of device `dev`, `ROWS_PER_INSERT` per statement:
/// SQLite's per-statement cost dominates at small rows.
pub(crate) fn insert(tx: &Connection, dev: i64, rows: &[Row]) -> Result<(), StoreError> {
    static MANY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let many = MANY.get_or_init(|| {
        let values = vec!["(?, ?, ?, ?, ?, ?)"; ROWS_PER_INSERT].join(", ");
        format!("INSERT INTO readings(seq, ts, device, metric, unit, v) VALUES {values}")
    });
    let mut chunks = rows.chunks_exact(ROWS_PER_INSERT);
    if rows.len() >= ROWS_PER_INSERT {
        let mut st = tx.prepare_cached(many)?;
        for chunk in chunks.by_ref() {
            for (i, (seq, ts, metric, _, unit, value)) in chunk.iter().enumerate() {
                let at = i * 6;
                st.raw_bind_parameter(at + 1, *seq as i64)?;
                st.raw_bind_parameter(at + 2, *ts)?;
                st.raw_bind_parameter(at + 3, dev)?;
                st.raw_bind_parameter(at + 4, *metric)?;
                st.raw_bind_parameter(at + 5, unit.as_ref().map(|u| u.0))?;
                st.raw_bind_parameter(at + 6, value_sql(value))?;
            }
            st.raw_execute()?;
        }
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut one = tx.prepare_cached(
            "INSERT INTO readings(seq, ts, device, metric, unit, v) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for (seq, ts, metric, _, unit, value) in rest {
            one.execute(params![
                *seq as i64,
                *ts,
                dev,
                *metric,
                unit.as_ref().map(|u| u.0),
                value_sql(value)
            ])?;
        }
    }
    Ok(())
}

/// Bytes of database pages in use (the file minus its free pages).
fn used_bytes(tx: &Connection) -> Result<u64, StoreError> {
    let pages: i64 = tx.pragma_query_value(None, "page_count", |r| r.get(0))?;
    let free: i64 = tx.pragma_query_value(None, "freelist_count", |r| r.get(0))?;
    let size: i64 = tx.pragma_query_value(None, "page_size", |r| r.get(0))?;
    Ok(((pages - free).max(0) * size) as u64)
}

impl Reader {
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
        self.readings_between(after, u64::MAX, limit)
    }

    /// Up to `limit` readings with seq in `(after, upto]`, in seq order: a
    /// page of the log up to a resourceVersion fixed when the request began.
    pub fn readings_between(
        &self,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<StoredReading>, StoreError> {
        let mut q = self.conn.prepare_cached(
            "SELECT r.seq, r.ts, d.name, m.name, u.name, r.v
             FROM readings r
             JOIN devices d ON d.id = r.device
             JOIN names m ON m.id = r.metric
             LEFT JOIN names u ON u.id = r.unit
             WHERE r.seq > ?1 AND r.seq <= ?2 ORDER BY r.seq LIMIT ?3",
        )?;
        let rows = q.query_map([sql_u64(after), sql_u64(upto), sql_limit(limit)], |r| {
            Ok(StoredReading {
                seq: r.get::<_, i64>(0)? as u64,
                ts_ms: r.get(1)?,
                device: r.get::<_, String>(2)?.into(),
                metric: r.get::<_, String>(3)?.into(),
                unit: r.get::<_, Option<String>>(4)?.map(Into::into),
                value: stored_value(r.get_ref(5)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The seq of the first reading whose time stamp is at or after `ts_ms`,
    /// or `None` when no reading is that recent: where a replay "since" a
    /// time starts.
    ///
    /// A binary search over seq with point lookups (about log2(rows) of them;
    /// there is deliberately no index on time, which would slow ingest). It
    /// assumes the log is ordered by time, which it is only roughly: seq
    /// follows arrival at the hub while time stamps come from the devices'
    /// clocks, and outbox flushes deliver old readings late. So the answer is
    /// approximate when clocks disagree or late batches sit in the log; the
    /// caller reads from here and filters by `ts_ms` itself.
    pub fn first_seq_at_or_after_time(&self, ts_ms: i64) -> Result<Option<u64>, StoreError> {
        self.snapshot(|r| r.search_time(ts_ms))
    }

    /// [`Reader::first_seq_at_or_after_time`], within one snapshot.
    fn search_time(&self, ts_ms: i64) -> Result<Option<u64>, StoreError> {
        let Some((oldest, newest)) = self.seq_range()? else {
            return Ok(None);
        };
        let mut q = self
            .conn
            .prepare_cached("SELECT seq, ts FROM readings WHERE seq >= ?1 ORDER BY seq LIMIT 1")?;
        // The first reading at or above seq `x` (the ring may leave gaps only
        // below its oldest, but do not rely on the log being dense).
        let mut at = |x: u64| -> Result<(u64, i64), StoreError> {
            let found: Option<(i64, i64)> = q
                .query_row([sql_u64(x)], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            // `x` never exceeds the newest seq of this snapshot, so a row
            // exists; should it not, the newest bound stands in.
            Ok(found.map_or((newest, i64::MAX), |(s, t)| (s as u64, t)))
        };
        if at(newest)?.1 < ts_ms {
            return Ok(None);
        }
        // Smallest x in [oldest, newest] whose first reading at or above it
        // is recent enough.
        let (mut lo, mut hi) = (oldest, newest);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let (seq, ts) = at(mid)?;
            if ts >= ts_ms {
                hi = mid;
            } else {
                // Every x in [mid, seq] finds the same reading.
                lo = (seq + 1).min(hi);
            }
        }
        Ok(Some(at(lo)?.0))
    }

    /// The seq of the oldest reading held; when the log is empty, the seq the
    /// next reading will get. A resume point `after` has lost readings to
    /// the ring exactly when `after + 1 < oldest_reading_seq()`.
    pub fn oldest_reading_seq(&self) -> Result<u64, StoreError> {
        match oldest(&self.conn)? {
            Some(s) => Ok(s),
            None => Ok(meta::seq(&self.conn, meta::READINGS_SEQ)? + 1),
        }
    }

    /// Whether a readings seq lies in a gap of the log: seqs that may have
    /// been shown to watchers before a commit that never came.
    pub fn reading_seq_lost(&self, seq: u64) -> Result<bool, StoreError> {
        let gaps = meta::get(&self.conn, meta::READINGS_GAPS)?.unwrap_or_default();
        Ok(parse_gaps(&gaps)
            .iter()
            .any(|&(start, len)| seq >= start && seq < start + len))
    }
}
