//! The notification outbox (`notify_outbox`): one row per alert change and
//! sink, queued in the transaction of the transition; the hub's notifier
//! delivers what is due and reports each attempt back through the writer.
//! `done`: 0 to deliver, 1 delivered, 2 given up.
//!
//! Uses only the database and the [`Reader`] type; the alerts module
//! queues rows here and deletes them with their alert.

use crate::reader::Reader;
use crate::StoreError;
use rusqlite::{params, Connection, Row};

/// Version 3 of the hub database: the notification outbox.
pub(crate) const SCHEMA_V3: &str = "
    -- One row per notification and sink, queued in the transaction of the
    -- transition; done: 0 to deliver, 1 delivered, 2 given up.
    CREATE TABLE notify_outbox (
        id INTEGER PRIMARY KEY,
        alert INTEGER NOT NULL,
        sink TEXT NOT NULL,
        kind TEXT NOT NULL,           -- firing, repeat, resolved
        at INTEGER NOT NULL,
        value TEXT,
        summary TEXT NOT NULL,
        created INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at INTEGER NOT NULL,
        last_error TEXT,
        done INTEGER NOT NULL DEFAULT 0,
        done_at INTEGER
    );
    CREATE INDEX notify_due ON notify_outbox(next_at) WHERE done = 0;
    CREATE INDEX notify_by_alert ON notify_outbox(alert);
    ";

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

/// How one delivery attempt of a notification went.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// The sink took it.
    Sent,
    /// Try again at this hub time (ms), after this error.
    Retry { next_at_ms: i64, error: String },
    /// Never delivered: a permanent error, or the retries ran out.
    GaveUp { error: String },
}

/// One notification to queue.
pub(crate) struct Queued<'a> {
    /// The alert's id.
    pub(crate) alert: i64,
    /// The sink it goes to.
    pub(crate) sink: &'a str,
    /// `firing`, `repeat` or `resolved`.
    pub(crate) kind: &'a str,
    /// When the alert changed (ms).
    pub(crate) at: i64,
    /// The value then (JSON text).
    pub(crate) value: Option<&'a str>,
    /// The summary then.
    pub(crate) summary: &'a str,
}

/// Queues `n`, due at once (`now`).
pub(crate) fn enqueue(tx: &Connection, n: &Queued<'_>, now: i64) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO notify_outbox(alert, sink, kind, at, value, summary, created, next_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
    )?
    .execute(params![
        n.alert, n.sink, n.kind, n.at, n.value, n.summary, now
    ])?;
    Ok(())
}

/// Records how a delivery attempt went.
pub(crate) fn delivered(
    tx: &Connection,
    id: u64,
    outcome: &Delivery,
    now: i64,
) -> Result<(), StoreError> {
    match outcome {
        Delivery::Sent => tx
            .prepare_cached(
                "UPDATE notify_outbox SET done = 1, done_at = ?2, attempts = attempts + 1,
                     last_error = NULL
                 WHERE id = ?1 AND done = 0",
            )?
            .execute(params![id as i64, now])?,
        Delivery::Retry { next_at_ms, error } => tx
            .prepare_cached(
                "UPDATE notify_outbox SET attempts = attempts + 1, next_at = ?2, last_error = ?3
                 WHERE id = ?1 AND done = 0",
            )?
            .execute(params![id as i64, next_at_ms, error])?,
        Delivery::GaveUp { error } => tx
            .prepare_cached(
                "UPDATE notify_outbox SET done = 2, done_at = ?2, attempts = attempts + 1,
                     last_error = ?3
                 WHERE id = ?1 AND done = 0",
            )?
            .execute(params![id as i64, now, error])?,
    };
    Ok(())
}

/// Deletes the notifications of the alerts that `alerts` (an SQL query of
/// alert ids with one parameter) selects for `arg`.
pub(crate) fn delete_of(tx: &Connection, alerts: &str, arg: i64) -> Result<(), StoreError> {
    tx.prepare_cached(&format!(
        "DELETE FROM notify_outbox WHERE alert IN ({alerts})"
    ))?
    .execute([arg])?;
    Ok(())
}

const NOTIFY_COLUMNS: &str =
    "id, alert, sink, kind, at, value, summary, created, attempts, next_at, last_error, done";

fn notify_row(r: &Row<'_>) -> rusqlite::Result<NotifyRow> {
    Ok(NotifyRow {
        id: r.get::<_, i64>(0)? as u64,
        alert: r.get::<_, i64>(1)? as u64,
        sink: r.get(2)?,
        kind: r.get(3)?,
        at_ms: r.get(4)?,
        value: r.get(5)?,
        summary: r.get(6)?,
        created_ms: r.get(7)?,
        attempts: r.get::<_, i64>(8)? as u32,
        next_at_ms: r.get(9)?,
        last_error: r.get(10)?,
        done: r.get::<_, i64>(11)? as u8,
    })
}

impl Reader {
    /// Notifications to deliver now (`next_at` passed), oldest first.
    pub fn notifications_due(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<NotifyRow>, StoreError> {
        let sql = format!(
            "SELECT {NOTIFY_COLUMNS} FROM notify_outbox WHERE done = 0 AND next_at <= ?1 ORDER BY id LIMIT ?2"
        );
        self.rows(&sql, [now_ms, limit as i64], notify_row)
    }

    /// When the next queued notification is due (ms), if any.
    pub fn next_notification_at(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT min(next_at) FROM notify_outbox WHERE done = 0")?
            .query_row([], |r| r.get(0))?)
    }

    /// Every notification of alert `id`, in order.
    pub fn notifications(&self, alert: u64) -> Result<Vec<NotifyRow>, StoreError> {
        let sql =
            format!("SELECT {NOTIFY_COLUMNS} FROM notify_outbox WHERE alert = ?1 ORDER BY id");
        self.rows(&sql, [alert as i64], notify_row)
    }
}
