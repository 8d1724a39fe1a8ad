//! Interned names: the `names` table (metric and unit names) and the
//! `id`/`name` columns of `devices`, so each reading row stores small
//! integers. The writer keeps every name it met in a cache (one query per
//! new name, none per reading); a failed commit clears it.
//!
//! Uses only the database: below every table module that stores names.

use crate::StoreError;
use rusqlite::{Connection, OptionalExtension};
use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;

/// Version 1 of the hub database: the interned names (`devices` gets its
/// presence columns in version 2, from `devices.rs`).
pub(crate) const SCHEMA_V1: &str = "
    CREATE TABLE devices (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
    CREATE TABLE names (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
    ";

/// A name's row id and the shared text handed out in rows.
pub(crate) type Interned = (i64, Arc<str>);

/// The writer's caches of interned names.
#[derive(Default)]
pub(crate) struct Names {
    /// Device names: name → (id in `devices`, shared name).
    devices: HashMap<String, Interned>,
    /// Metric and unit names: name → (id in `names`, shared name).
    names: HashMap<String, Interned>,
}

impl Names {
    /// The id of device `name`, adding its `devices` row if new.
    pub(crate) fn device(&mut self, tx: &Connection, name: &str) -> Result<Interned, StoreError> {
        intern(tx, &mut self.devices, "devices", name)
    }

    /// The id of metric or unit `name`, adding it if new.
    pub(crate) fn name(&mut self, tx: &Connection, name: &str) -> Result<Interned, StoreError> {
        intern(tx, &mut self.names, "names", name)
    }

    /// Forgets every cached name (after a failed commit).
    pub(crate) fn clear(&mut self) {
        self.devices.clear();
        self.names.clear();
    }
}

/// Returns the id of `name` in `table`, adding it if new.
fn intern(
    tx: &Connection,
    cache: &mut HashMap<String, Interned>,
    table: &'static str,
    name: &str,
) -> Result<Interned, StoreError> {
    if let Some((id, shared)) = cache.get(name) {
        return Ok((*id, shared.clone()));
    }
    let found: Option<i64> = tx
        .prepare_cached(&format!("SELECT id FROM {table} WHERE name = ?1"))?
        .query_row([name], |r| r.get(0))
        .optional()?;
    let id = match found {
        Some(id) => id,
        None => {
            tx.prepare_cached(&format!("INSERT INTO {table}(name) VALUES (?1)"))?
                .execute([name])?;
            tx.last_insert_rowid()
        }
    };
    let shared: Arc<str> = name.into();
    cache.insert(name.to_owned(), (id, shared.clone()));
    Ok((id, shared))
}
