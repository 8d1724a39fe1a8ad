//! Read-only access: a connection of its own, so reads never wait on the
//! writer (WAL lets them run side by side).
//!
//! It serves the three collections of the watch API: the readings log
//! (`readings_*`), the latest reading per device and metric (`latest_*`) and
//! the devices (`device*`), each with its own sequence ([`Reader::collection_seqs`]).
//! Every answer is owned rows; names are `Arc<str>` like the rows the writer
//! publishes in [`crate::Changes`].

use crate::schema;
use crate::StoreError;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
pub use telltale_wire::decode::Value as StoredValue;

/// An alert: an item of the alerts collection and of the alert history.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRow {
    /// The alert's id (stable across its changes).
    pub id: u64,
    /// Sequence number in the alerts collection: its last change.
    pub seq: u64,
    /// The rule that raised it.
    pub rule: String,
    /// The series: device id.
    pub device: String,
    /// The series: metric.
    pub metric: String,
    /// `pending`, `firing` or `resolved`.
    pub state: String,
    /// The rule's severity.
    pub severity: String,
    /// Human-readable text, rendered from the rule's template.
    pub summary: String,
    /// The rule's labels.
    pub labels: BTreeMap<String, String>,
    /// The value behind the last change, as JSON text (`None` for no-data).
    pub value: Option<String>,
    /// The rule's threshold as text.
    pub threshold: String,
    /// When it became pending (or firing at once), hub time (ms).
    pub started_ms: i64,
    /// When it began firing.
    pub fired_ms: Option<i64>,
    /// When it resolved.
    pub resolved_ms: Option<i64>,
    /// Its last change.
    pub updated_ms: i64,
    /// Whether a person acknowledged it.
    pub acknowledged: bool,
    /// Who acknowledged it.
    pub ack_by: Option<String>,
    /// When.
    pub ack_at_ms: Option<i64>,
    /// Their note.
    pub ack_note: Option<String>,
}

/// A device command: an item of the commands collection.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRow {
    /// Its id.
    pub id: u64,
    /// Sequence number in the commands collection: its last change.
    pub seq: u64,
    /// The device it is for.
    pub device: String,
    /// Its name.
    pub name: String,
    /// Its parameters, a JSON object as text.
    pub params: String,
    /// `queued`, `sent`, `delivered`, `succeeded`, `failed`, `expired` or `timeout`.
    pub state: String,
    /// Hub times (ms): created, deadline, and each step.
    pub created_ms: i64,
    pub deadline_ms: i64,
    pub sent_ms: Option<i64>,
    pub delivered_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    /// The device's output, JSON text.
    pub output: Option<String>,
    /// Why it failed, expired or timed out.
    pub reason: Option<String>,
    /// The client's idempotency key.
    pub idem_key: Option<String>,
    /// Its last change.
    pub updated_ms: i64,
}

/// A queued notification: one alert change for one sink.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifyRow {
    /// Its id (also what makes the delivery key).
    pub id: u64,
    /// The alert.
    pub alert: u64,
    /// The sink's name.
    pub sink: String,
    /// `firing`, `repeat` or `resolved`.
    pub kind: String,
    /// When the alert changed (ms).
    pub at_ms: i64,
    /// The value then, as JSON text.
    pub value: Option<String>,
    /// The summary then.
    pub summary: String,
    /// When it was queued (ms).
    pub created_ms: i64,
    /// Attempts so far.
    pub attempts: u32,
    /// Not before this time (ms).
    pub next_at_ms: i64,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// 0 to deliver, 1 delivered, 2 given up.
    pub done: u8,
}

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

/// A device: an item of the devices collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    /// Sequence number in the devices collection: the last change of this row.
    pub seq: u64,
    /// Device id (the `{id}` in its topics).
    pub id: Arc<str>,
    /// From the device's last status message; `None` when it never sent one.
    pub online: Option<bool>,
    /// Hub time (ms since the epoch) of the commit that last stored a message
    /// from it. Written at every commit, but only a change of it by more than
    /// 10 s makes a new `seq` (see [`crate::writer`]).
    pub last_seen_ms: Option<i64>,
    /// Hub time of the first message seen from it; `None` for a device known
    /// before presence was tracked (schema version 2) that has not talked since.
    pub first_seen_ms: Option<i64>,
    /// Agent name and version from its last status that named one.
    pub agent: Option<String>,
    /// Labels from its last status that carried them.
    pub labels: BTreeMap<String, String>,
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

    /// Runs `f` in one read transaction: every query in it sees the same
    /// committed state, even while the writer commits. A state list and the
    /// resourceVersion it is consistent with are read this way, e.g.
    /// `r.snapshot(|r| Ok((r.latest_all()?, r.collection_seqs()?.1)))`;
    /// read one after the other outside it, a commit in between would make
    /// the version disagree with the list. Nested calls share the outer
    /// transaction.
    pub fn snapshot<T>(
        &self,
        f: impl FnOnce(&Reader) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if !self.conn.is_autocommit() {
            return f(self);
        }
        let tx = self.conn.unchecked_transaction()?;
        let out = f(self)?;
        tx.commit()?;
        Ok(out)
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
        let oldest: Option<i64> =
            self.conn
                .query_row("SELECT min(seq) FROM readings", [], |r| r.get(0))?;
        match oldest {
            Some(s) => Ok(s as u64),
            None => Ok(schema::meta_seq(&self.conn, "readings_seq")? + 1),
        }
    }

    /// Whether a readings seq lies in a gap of the log: seqs that may have
    /// been shown to watchers before a commit that never came.
    pub fn reading_seq_lost(&self, seq: u64) -> Result<bool, StoreError> {
        let gaps = schema::meta_get(&self.conn, "readings_gaps")?.unwrap_or_default();
        Ok(crate::writer::parse_gaps(&gaps)
            .iter()
            .any(|&(start, len)| seq >= start && seq < start + len))
    }

    /// The last seq of each collection: `(readings, latest, devices)`, from
    /// meta, which the writer updates in the same transaction as the rows.
    /// Read it in the same [`Reader::snapshot`] as the list it versions.
    pub fn collection_seqs(&self) -> Result<(u64, u64, u64), StoreError> {
        Ok((
            schema::meta_seq(&self.conn, "readings_seq")?,
            schema::meta_seq(&self.conn, "latest_seq")?,
            schema::meta_seq(&self.conn, "devices_seq")?,
        ))
    }

    /// Every latest row, ordered by device id, then metric name.
    pub fn latest_all(&self) -> Result<Vec<LatestRow>, StoreError> {
        let mut q = self
            .conn
            .prepare_cached(&format!("{LATEST_SELECT} ORDER BY d.name, m.name"))?;
        let rows = q.query_map([], latest_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Up to `limit` latest rows changed after `seq`, in seq order.
    pub fn latest_after(&self, seq: u64, limit: usize) -> Result<Vec<LatestRow>, StoreError> {
        let mut q = self.conn.prepare_cached(&format!(
            "{LATEST_SELECT} WHERE l.seq > ?1 ORDER BY l.seq LIMIT ?2"
        ))?;
        let rows = q.query_map([sql_u64(seq), sql_limit(limit)], latest_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every device, ordered by id.
    pub fn devices_all(&self) -> Result<Vec<DeviceRow>, StoreError> {
        let mut q = self
            .conn
            .prepare_cached(&format!("{DEVICE_SELECT} ORDER BY name"))?;
        let rows = q.query_map([], device_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One device by id.
    pub fn device(&self, id: &str) -> Result<Option<DeviceRow>, StoreError> {
        let mut q = self
            .conn
            .prepare_cached(&format!("{DEVICE_SELECT} WHERE name = ?1"))?;
        Ok(q.query_row([id], device_row).optional()?)
    }

    /// Up to `limit` devices changed after `seq`, in seq order. A device
    /// changes when it is new, when its presence, agent or labels change, or
    /// when its `last_seen` moved more than 10 s; see [`crate::Changes::devices`].
    pub fn devices_after(&self, seq: u64, limit: usize) -> Result<Vec<DeviceRow>, StoreError> {
        let mut q = self.conn.prepare_cached(&format!(
            "{DEVICE_SELECT} WHERE seq > ?1 ORDER BY seq LIMIT ?2"
        ))?;
        let rows = q.query_map([sql_u64(seq), sql_limit(limit)], device_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every row of `sql` (with `params`) as `row` reads it.
    fn rows<T, P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        row: fn(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(sql)?
            .query_map(params, row)?
            .collect::<Result<_, _>>()?)
    }

    /// Last seq of the alerts collection.
    pub fn alerts_seq(&self) -> Result<u64, StoreError> {
        schema::meta_seq(&self.conn, "alerts_seq")
    }

    /// Every alert held (open and history), by id.
    pub fn alerts_all(&self) -> Result<Vec<AlertRow>, StoreError> {
        let sql = format!(
            "SELECT {} FROM alerts ORDER BY id",
            crate::alerts::ALERT_COLUMNS
        );
        self.rows(&sql, [], crate::alerts::alert_row)
    }

    /// Alerts that changed after `seq`, in seq order, at most `limit`.
    pub fn alerts_after(&self, seq: u64, limit: usize) -> Result<Vec<AlertRow>, StoreError> {
        let sql = format!(
            "SELECT {} FROM alerts WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            crate::alerts::ALERT_COLUMNS
        );
        self.rows(&sql, [seq as i64, limit as i64], crate::alerts::alert_row)
    }

    /// One alert.
    pub fn alert(&self, id: u64) -> Result<Option<AlertRow>, StoreError> {
        crate::alerts::alert_by_id(&self.conn, id as i64)
    }

    /// Notifications to deliver now (`next_at` passed), oldest first.
    pub fn notifications_due(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<NotifyRow>, StoreError> {
        let sql = format!(
            "SELECT {} FROM notify_outbox WHERE done = 0 AND next_at <= ?1 ORDER BY id LIMIT ?2",
            crate::alerts::NOTIFY_COLUMNS
        );
        self.rows(&sql, [now_ms, limit as i64], crate::alerts::notify_row)
    }

    /// When the next queued notification is due (ms), if any.
    pub fn next_notification_at(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT min(next_at) FROM notify_outbox WHERE done = 0")?
            .query_row([], |r| r.get(0))?)
    }

    /// Writes a consistent copy of the database to `to` (SQLite's
    /// `VACUUM INTO`: one read transaction, so the hub keeps writing while
    /// it runs; the copy is compact). `to` must not exist.
    pub fn backup_to(&self, to: &Path) -> Result<(), StoreError> {
        let to = to.to_string_lossy();
        self.conn.execute("VACUUM INTO ?1", [to.as_ref()])?;
        Ok(())
    }

    /// Last seq of the commands collection.
    pub fn commands_seq(&self) -> Result<u64, StoreError> {
        schema::meta_seq(&self.conn, "commands_seq")
    }

    /// Every command held, by id.
    pub fn commands_all(&self) -> Result<Vec<CommandRow>, StoreError> {
        let sql = format!(
            "SELECT {} FROM commands ORDER BY id",
            crate::commands::COMMAND_COLUMNS
        );
        self.rows(&sql, [], crate::commands::command_row)
    }

    /// Commands that changed after `seq`, in seq order, at most `limit`.
    pub fn commands_after(&self, seq: u64, limit: usize) -> Result<Vec<CommandRow>, StoreError> {
        let sql = format!(
            "SELECT {} FROM commands WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            crate::commands::COMMAND_COLUMNS
        );
        self.rows(
            &sql,
            [seq as i64, limit as i64],
            crate::commands::command_row,
        )
    }

    /// Commands not finished yet (queued, sent or delivered), by id.
    pub fn commands_open(&self) -> Result<Vec<CommandRow>, StoreError> {
        let sql = format!(
            "SELECT {} FROM commands WHERE state IN ('queued', 'sent', 'delivered') ORDER BY id",
            crate::commands::COMMAND_COLUMNS
        );
        self.rows(&sql, [], crate::commands::command_row)
    }

    /// One command.
    pub fn command(&self, id: u64) -> Result<Option<CommandRow>, StoreError> {
        crate::commands::command_by_id(&self.conn, id as i64)
    }

    /// Every notification of alert `id`, in order.
    pub fn notifications(&self, alert: u64) -> Result<Vec<NotifyRow>, StoreError> {
        let sql = format!(
            "SELECT {} FROM notify_outbox WHERE alert = ?1 ORDER BY id",
            crate::alerts::NOTIFY_COLUMNS
        );
        self.rows(&sql, [alert as i64], crate::alerts::notify_row)
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

const DEVICE_SELECT: &str =
    "SELECT seq, name, online, last_seen, first_seen, agent, labels FROM devices";

fn device_row(r: &Row<'_>) -> rusqlite::Result<DeviceRow> {
    let labels = match r.get_ref(6)? {
        ValueRef::Null => BTreeMap::new(),
        v => parse_labels(v.as_str()?).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(6, v.data_type(), Box::new(e))
        })?,
    };
    Ok(DeviceRow {
        seq: r.get::<_, i64>(0)? as u64,
        id: r.get::<_, String>(1)?.into(),
        online: r.get::<_, Option<bool>>(2)?,
        last_seen_ms: r.get(3)?,
        first_seen_ms: r.get(4)?,
        agent: r.get(5)?,
        labels,
    })
}

/// Labels as stored: a JSON object of strings.
pub(crate) fn parse_labels(json: &str) -> Result<BTreeMap<String, String>, serde_json::Error> {
    serde_json::from_str(json)
}

/// A stored value back in its type (see the `v` column in the schema).
pub(crate) fn stored_value(v: ValueRef<'_>) -> StoredValue {
    match v {
        ValueRef::Real(x) => StoredValue::Num(x),
        ValueRef::Integer(i) => StoredValue::Bool(i != 0),
        ValueRef::Text(t) => StoredValue::Str(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => StoredValue::Data(b.to_vec()),
        ValueRef::Null => StoredValue::Num(f64::NAN),
    }
}

/// A seq as SQLite's integer; beyond `i64::MAX` means "no bound".
fn sql_u64(x: u64) -> i64 {
    i64::try_from(x).unwrap_or(i64::MAX)
}

/// A row limit as SQLite's integer.
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}
