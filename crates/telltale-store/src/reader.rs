//! Read-only access: a connection of its own, so reads never wait on the
//! writer (WAL lets them run side by side).
//!
//! [`Reader`] is the entry point of every read; its queries live with their
//! tables (`readings`, `latest`, `devices`, `alerts`, `notify`, `commands`,
//! `rejects`), each module adding an `impl Reader` block, so that a table's
//! schema, writes and reads sit in one file. Here: opening, snapshots, the
//! epoch, the collections' sequences and backups. Every answer is owned
//! rows; names are `Arc<str>` like the rows the writer publishes in
//! [`crate::Changes`].

use crate::meta;
use crate::StoreError;
use rusqlite::{Connection, OpenFlags, Row};
use std::path::Path;

/// A read-only view of the hub's database.
#[derive(Debug)]
pub struct Reader {
    /// The read-only connection (the table modules query it).
    pub(crate) conn: Connection,
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
        Ok(meta::get(&self.conn, "epoch")?.unwrap_or_default())
    }

    /// The last seq of each collection: `(readings, latest, devices)`, from
    /// meta, which the writer updates in the same transaction as the rows.
    /// Read it in the same [`Reader::snapshot`] as the list it versions.
    pub fn collection_seqs(&self) -> Result<(u64, u64, u64), StoreError> {
        Ok((
            meta::seq(&self.conn, meta::READINGS_SEQ)?,
            meta::seq(&self.conn, meta::LATEST_SEQ)?,
            meta::seq(&self.conn, meta::DEVICES_SEQ)?,
        ))
    }

    /// Writes a consistent copy of the database to `to` (SQLite's
    /// `VACUUM INTO`: one read transaction, so the hub keeps writing while
    /// it runs; the copy is compact). `to` must not exist.
    pub fn backup_to(&self, to: &Path) -> Result<(), StoreError> {
        let to = to.to_string_lossy();
        self.conn.execute("VACUUM INTO ?1", [to.as_ref()])?;
        Ok(())
    }

    /// Every row of `sql` (with `params`) as `row` reads it.
    pub(crate) fn rows<T, P: rusqlite::Params>(
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
}

/// A seq as SQLite's integer; beyond `i64::MAX` means "no bound".
pub(crate) fn sql_u64(x: u64) -> i64 {
    i64::try_from(x).unwrap_or(i64::MAX)
}

/// A row limit as SQLite's integer.
pub(crate) fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// A stored state text that this build does not know, as a conversion
/// error of column `col` (a lifecycle state is read back into its enum).
pub(crate) fn bad_state(col: usize, text: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        col,
        rusqlite::types::Type::Text,
        format!("unknown state {text:?}").into(),
    )
}
