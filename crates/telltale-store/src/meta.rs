//! The `meta` table: one text value per key, in every database this crate
//! opens. In the hub's database it holds the store epoch and each
//! collection's high-water mark (written in the same transaction as the
//! rows it versions, so a reader's snapshot sees both agree).
//!
//! The lowest layer of the store: it uses no other module.

use crate::StoreError;
use rusqlite::{Connection, OptionalExtension};

/// Version 1 of the hub database: the `meta` table.
pub(crate) const SCHEMA_V1: &str = "
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    ";

/// The readings collection's last seq (never reused, even when the ring
/// empties).
pub(crate) const READINGS_SEQ: &str = "readings_seq";
/// Reading seqs reserved by the last commit: the next group may show them
/// to watchers before its own commit.
pub(crate) const READINGS_RESERVED: &str = "readings_reserved";
/// Seqs of the readings log that were never used (`start:len,...`).
pub(crate) const READINGS_GAPS: &str = "readings_gaps";
/// The latest collection's last seq.
pub(crate) const LATEST_SEQ: &str = "latest_seq";
/// The devices collection's last seq.
pub(crate) const DEVICES_SEQ: &str = "devices_seq";
/// The alerts collection's last seq.
pub(crate) const ALERTS_SEQ: &str = "alerts_seq";
/// The commands collection's last seq.
pub(crate) const COMMANDS_SEQ: &str = "commands_seq";
/// The alert rules of the last run (JSON), to tell kept rules from changed.
pub(crate) const RULES: &str = "rules";

/// Reads a meta value.
pub(crate) fn get(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

/// Writes a meta value.
pub(crate) fn set(conn: &Connection, key: &str, value: &str) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO meta(key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [key, value],
    )?;
    Ok(())
}

/// Reads a collection's high-water mark (0 when absent).
pub(crate) fn seq(conn: &Connection, key: &str) -> Result<u64, StoreError> {
    Ok(get(conn, key)?
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0))
}

/// Writes a collection's high-water mark.
pub(crate) fn set_seq(conn: &Connection, key: &str, seq: u64) -> Result<(), StoreError> {
    set(conn, key, &seq.to_string())
}

/// The store's epoch, created at first open: a random id that makes every
/// resourceVersion of this database differ from any other database's.
pub(crate) fn epoch(conn: &Connection) -> Result<String, StoreError> {
    if let Some(e) = get(conn, "epoch")? {
        return Ok(e);
    }
    let e = format!("{:08x}", rand::random::<u32>());
    set(conn, "epoch", &e)?;
    Ok(e)
}
