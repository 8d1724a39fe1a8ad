//! Opening a database and migrating its schema (`PRAGMA user_version`).
//! A migration is only ever appended; a database newer than this build is
//! refused. Each version is a list of steps, the DDL of the tables it
//! touches, each step kept by the module that owns its table; the lists
//! are `HUB_MIGRATIONS` in `writer.rs` (the hub's database), and those of
//! `outbox.rs` and `auth.rs`.
//!
//! Hub database versions. 1: the readings log, interned names, batches,
//! rejects. 2: the `latest` table and presence columns on `devices` (the
//! state collections of the watch API), filled from the log on upgrade.
//! 3: alerts and the notification outbox. 4: device commands.
//!
//! Uses nothing of the store but its config and error types.

use crate::config::Synchronous;
use crate::StoreError;
use rusqlite::Connection;
use std::path::Path;

/// One schema version: the DDL steps of the tables it touches, run in
/// order in one transaction.
pub(crate) type Migration = &'static [&'static str];

/// Opens (creating if needed) a database, sets the pragmas and migrates it
/// through `migrations` (index + 1 is the version).
pub(crate) fn open(
    path: &Path,
    migrations: &[Migration],
    sync: Synchronous,
) -> Result<Connection, StoreError> {
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
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = migrations.len() as i64;
    if found > known {
        return Err(StoreError::SchemaTooNew {
            path: path.to_owned(),
            found,
            known,
        });
    }
    for (i, steps) in migrations.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        for sql in steps.iter() {
            tx.execute_batch(sql)?;
        }
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(conn)
}
