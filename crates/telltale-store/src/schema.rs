//! Schema and its versioned migrations (`PRAGMA user_version`). A migration
//! is only ever appended; a database newer than this build is refused.
//!
//! Version 1: the readings log, interned names, batches, rejects. Version 2:
//! the `latest` table and presence columns on `devices` (the state
//! collections of the watch API), filled from the log on upgrade.

use crate::config::Synchronous;
use crate::StoreError;
use rusqlite::Connection;
use std::path::Path;

/// Migrations of the hub's database, in order; index + 1 is the version.
const HUB_MIGRATIONS: &[&str] = &[
    // 1: the readings log, interned names, batches, rejects.
    "
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE devices (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
    CREATE TABLE names (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
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
    ",
    // 2: the read model of the watch routes: the latest collection (newest
    // reading per device and metric) and the devices collection (presence,
    // seen times, agent, labels), each with its own sequence.
    "
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
    -- seq is the devices collection's sequence (meta.devices_seq, never reused).
    -- It moves when a device is new, when its presence, agent or labels change,
    -- or when last_seen is more than 10 s past its value at the last move (so
    -- a device reporting every second makes about one event per 10 s);
    -- last_seen itself is written at every commit the device had a message in.
    -- online: 1 online, 0 offline, NULL never sent a status. last_seen and
    -- first_seen: hub time (ms) of the last and first message from the device.
    -- labels: a JSON object of strings, NULL for none.
    ALTER TABLE devices ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE devices ADD COLUMN online INTEGER;
    ALTER TABLE devices ADD COLUMN last_seen INTEGER;
    ALTER TABLE devices ADD COLUMN first_seen INTEGER;
    ALTER TABLE devices ADD COLUMN agent TEXT;
    ALTER TABLE devices ADD COLUMN labels TEXT;
    CREATE INDEX devices_by_seq ON devices(seq);

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
    -- Every known device enters the devices collection once; its last_seen is
    -- the newest time stamp among its readings (a device clock, so never
    -- later than now), first_seen stays unknown (NULL) until it next talks.
    UPDATE devices SET
        seq = id,
        last_seen = min(
            (SELECT max(ts) FROM latest WHERE latest.device = devices.id),
            CAST(strftime('%s', 'now') AS INTEGER) * 1000
        );
    INSERT INTO meta(key, value)
    SELECT 'devices_seq', CAST(coalesce(max(seq), 0) AS TEXT) FROM devices;
    ",
    // 3: alerts and their notifications. The alerts table is the alerts
    // collection (seq: meta.alerts_seq, never reused) and the alert history,
    // a ring of its own (resolved alerts beyond StoreConfig::max_alerts are
    // deleted, oldest first). One open (pending or firing) alert per rule
    // and series. Times are hub time in ms.
    "
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY,
        seq INTEGER NOT NULL,
        rule TEXT NOT NULL,
        device TEXT NOT NULL,
        metric TEXT NOT NULL,
        state TEXT NOT NULL,          -- pending, firing, resolved
        severity TEXT NOT NULL,
        summary TEXT NOT NULL,
        labels TEXT NOT NULL,         -- the rule's labels, a JSON object
        value TEXT,                   -- JSON: the value that caused the last change
        threshold TEXT NOT NULL,
        started INTEGER NOT NULL,     -- became pending (or firing at once)
        fired INTEGER,
        resolved INTEGER,
        updated INTEGER NOT NULL,
        acked INTEGER NOT NULL DEFAULT 0,
        ack_by TEXT,
        ack_at INTEGER,
        ack_note TEXT,
        notified INTEGER              -- when the last notification was queued
    );
    CREATE UNIQUE INDEX alerts_open ON alerts(rule, device, metric) WHERE state != 'resolved';
    CREATE UNIQUE INDEX alerts_by_seq ON alerts(seq);
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
    ",
    // 4: device commands: the commands collection (seq: meta.commands_seq,
    // never reused) and their history, a ring of its own (finished commands
    // beyond StoreConfig::max_commands are deleted, oldest first).
    "
    CREATE TABLE commands (
        id INTEGER PRIMARY KEY,
        seq INTEGER NOT NULL,
        device TEXT NOT NULL,
        name TEXT NOT NULL,
        params TEXT NOT NULL,         -- JSON object
        state TEXT NOT NULL,          -- queued, sent, delivered, succeeded, failed, expired, timeout
        created INTEGER NOT NULL,
        deadline INTEGER NOT NULL,
        sent INTEGER,
        delivered INTEGER,
        finished INTEGER,
        output TEXT,                  -- JSON, from the device
        reason TEXT,
        idem_key TEXT,                -- the client's Idempotency-Key
        updated INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX commands_by_seq ON commands(seq);
    CREATE UNIQUE INDEX commands_idem ON commands(idem_key) WHERE idem_key IS NOT NULL;
    CREATE INDEX commands_open ON commands(id) WHERE state IN ('queued', 'sent', 'delivered');
    ",
];

/// Migrations of the agent's outbox database.
const OUTBOX_MIGRATIONS: &[&str] = &["
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY,
        created INTEGER NOT NULL,
        readings INTEGER NOT NULL,
        payload BLOB NOT NULL
    );
    "];

/// Migrations of the credentials database (`auth.db`).
const AUTH_MIGRATIONS: &[&str] = &["
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE tokens (
        id TEXT PRIMARY KEY,          -- public, part of the token text
        name TEXT NOT NULL,
        scope TEXT NOT NULL,          -- read | control | admin
        hash BLOB NOT NULL,           -- SHA-256 of the token text
        created INTEGER NOT NULL,
        revoked INTEGER
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX tokens_live_name ON tokens(name) WHERE revoked IS NULL;
    CREATE TABLE device_credentials (
        device TEXT PRIMARY KEY,
        tenant TEXT NOT NULL UNIQUE,  -- certificate O and topic prefix
        hash BLOB NOT NULL,           -- SHA-256 of the password
        created INTEGER NOT NULL,
        revoked INTEGER
    ) WITHOUT ROWID;
    "];

/// Which database a connection is for.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Hub,
    Outbox,
    Auth,
}

/// Opens (creating if needed) a database, sets the pragmas and migrates it.
pub(crate) fn open(path: &Path, kind: Kind, sync: Synchronous) -> Result<Connection, StoreError> {
    let mut conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "wal")?;
    let sync = match sync {
        Synchronous::Full => "full",
        Synchronous::Normal => "normal",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    conn.pragma_update(None, "cache_size", -16_000)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let migrations = match kind {
        Kind::Hub => HUB_MIGRATIONS,
        Kind::Outbox => OUTBOX_MIGRATIONS,
        Kind::Auth => AUTH_MIGRATIONS,
    };
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = migrations.len() as i64;
    if found > known {
        return Err(StoreError::SchemaTooNew {
            path: path.to_owned(),
            found,
            known,
        });
    }
    for (i, sql) in migrations.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(conn)
}

/// Reads a meta value.
pub(crate) fn meta_get(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

/// Writes a meta value.
pub(crate) fn meta_set(conn: &Connection, key: &str, value: &str) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO meta(key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [key, value],
    )?;
    Ok(())
}

/// The store's epoch, created at first open: a random id that makes every
/// resourceVersion of this database differ from any other database's.
pub(crate) fn epoch(conn: &Connection) -> Result<String, StoreError> {
    if let Some(e) = meta_get(conn, "epoch")? {
        return Ok(e);
    }
    let e = format!("{:08x}", rand::random::<u32>());
    meta_set(conn, "epoch", &e)?;
    Ok(e)
}

/// Reads a collection's high-water mark from meta (0 when absent).
pub(crate) fn meta_seq(conn: &Connection, key: &str) -> Result<u64, StoreError> {
    Ok(meta_get(conn, key)?
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0))
}
