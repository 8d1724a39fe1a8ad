//! Device commands in the store: created (once per idempotency key), then
//! moved along their lifecycle `queued` → `sent` → `delivered` →
//! `succeeded` | `failed`, or `expired` (the deadline passed before
//! delivery) or `timeout` (delivered, no result by the deadline). A state
//! only moves forward; a finished command never changes again. Each change
//! takes the next seq of the commands collection (`meta.commands_seq`).
//!
//! The `commands` table is that collection and the command history, a ring
//! of its own (finished commands beyond `StoreConfig::max_commands` are
//! deleted, oldest first). Uses `meta` and the [`Reader`] type.

use crate::meta;
use crate::reader::{bad_state, Reader};
use crate::StoreError;
use rusqlite::{params, Connection, OptionalExtension, Row};

/// Version 4 of the hub database: the commands collection and history.
pub(crate) const SCHEMA_V4: &str = "
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
    ";

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
    /// Where it is in its lifecycle.
    pub state: CommandState,
    /// Hub time (ms) it was created.
    pub created_ms: i64,
    /// Hub time (ms) after which it expires or times out.
    pub deadline_ms: i64,
    /// When it was published to the device.
    pub sent_ms: Option<i64>,
    /// When the device confirmed receipt.
    pub delivered_ms: Option<i64>,
    /// When it ended.
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

pub use telltale_types::CommandState;

/// Order along a command's lifecycle; the four ends share the last rank. A
/// command only moves forward.
fn rank(s: CommandState) -> u8 {
    match s {
        CommandState::Queued => 0,
        CommandState::Sent => 1,
        CommandState::Delivered => 2,
        _ => 3,
    }
}

/// A new command, as the API asks for it.
#[derive(Debug, Clone)]
pub struct NewCommand {
    /// The device it is for.
    pub device: String,
    /// Its name (`ping`, `set_interval`, ...).
    pub name: String,
    /// Its parameters: a JSON object, as text.
    pub params: String,
    /// Hub time (ms) after which it expires (undelivered) or times out.
    pub deadline_ms: i64,
    /// The client's idempotency key: the same key gives the same command.
    pub idem_key: Option<String>,
}

/// A change of a command's state, from the hub (sent, expired, timeout) or
/// from its device (delivered, succeeded, failed).
#[derive(Debug, Clone)]
pub struct CommandUpdate {
    /// The command.
    pub id: u64,
    /// From a device: its id, which must be the command's (a device cannot
    /// report on another's commands). `None`: from the hub.
    pub device: Option<String>,
    /// The new state.
    pub state: CommandState,
    /// The device's output (JSON text).
    pub output: Option<String>,
    /// Why it failed, expired or timed out.
    pub reason: Option<String>,
}

/// A command's id on the wire: the store's epoch and its id, so that a
/// device never mistakes a command of a replaced database for one it ran.
pub fn wire_id(epoch: &str, id: u64) -> String {
    format!("{epoch}-{id}")
}

/// The command id in a wire id of this store (`None`: not one of ours).
pub fn parse_wire_id(epoch: &str, text: &str) -> Option<u64> {
    let (e, id) = text.rsplit_once('-')?;
    if e != epoch {
        return None;
    }
    id.parse().ok()
}

const COMMAND_COLUMNS: &str = "id, seq, device, name, params, state, created, deadline,
    sent, delivered, finished, output, reason, idem_key, updated";

fn command_row(r: &Row<'_>) -> rusqlite::Result<CommandRow> {
    let state: String = r.get(5)?;
    Ok(CommandRow {
        id: r.get::<_, i64>(0)? as u64,
        seq: r.get::<_, i64>(1)? as u64,
        device: r.get(2)?,
        name: r.get(3)?,
        params: r.get(4)?,
        state: CommandState::parse(&state).ok_or_else(|| bad_state(5, &state))?,
        created_ms: r.get(6)?,
        deadline_ms: r.get(7)?,
        sent_ms: r.get(8)?,
        delivered_ms: r.get(9)?,
        finished_ms: r.get(10)?,
        output: r.get(11)?,
        reason: r.get(12)?,
        idem_key: r.get(13)?,
        updated_ms: r.get(14)?,
    })
}

fn command_by_id(conn: &Connection, id: i64) -> Result<Option<CommandRow>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COMMAND_COLUMNS} FROM commands WHERE id = ?1"
        ))?
        .query_row([id], command_row)
        .optional()?)
}

/// Creates a command, or returns the one its idempotency key made before
/// (`false`: not new).
pub(crate) fn create(
    tx: &Connection,
    next_seq: &mut u64,
    c: &NewCommand,
    now: i64,
) -> Result<(CommandRow, bool), StoreError> {
    if let Some(key) = &c.idem_key {
        let old: Option<i64> = tx
            .prepare_cached("SELECT id FROM commands WHERE idem_key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?;
        if let Some(id) = old {
            if let Some(row) = command_by_id(tx, id)? {
                return Ok((row, false));
            }
        }
    }
    let seq = take_seq(tx, next_seq)?;
    tx.prepare_cached(
        "INSERT INTO commands(seq, device, name, params, state, created, deadline, idem_key, updated)
         VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?6, ?7, ?5)",
    )?
    .execute(params![
        seq as i64,
        c.device,
        c.name,
        c.params,
        now,
        c.deadline_ms,
        c.idem_key
    ])?;
    let id = tx.last_insert_rowid();
    let row = command_by_id(tx, id)?.ok_or(StoreError::Commit("command vanished".into()))?;
    Ok((row, true))
}

/// Applies an update if it moves the command forward; returns the changed
/// row (`None`: no such command, another device's, or not a move forward).
pub(crate) fn update(
    tx: &Connection,
    next_seq: &mut u64,
    u: &CommandUpdate,
    now: i64,
) -> Result<Option<CommandRow>, StoreError> {
    let Some(row) = command_by_id(tx, u.id as i64)? else {
        return Ok(None);
    };
    if u.device.as_ref().is_some_and(|d| *d != row.device) {
        tracing::warn!(command = u.id, device = ?u.device, "a device reported on another device's command; ignored");
        return Ok(None);
    }
    let old = row.state;
    if old.is_final() || rank(u.state) <= rank(old) {
        return Ok(None);
    }
    let seq = take_seq(tx, next_seq)?;
    let column = match u.state {
        CommandState::Queued => "updated",
        CommandState::Sent => "sent",
        CommandState::Delivered => "delivered",
        _ => "finished",
    };
    tx.prepare_cached(&format!(
        "UPDATE commands SET seq = ?2, state = ?3, {column} = ?4, updated = ?4,
             output = coalesce(?5, output), reason = coalesce(?6, reason)
         WHERE id = ?1"
    ))?
    .execute(params![
        u.id as i64,
        seq as i64,
        u.state.as_str(),
        now,
        u.output,
        u.reason
    ])?;
    // A result that skipped `delivered` (its receipt was lost) still says
    // the device had it.
    if u.state.is_final() && matches!(u.state, CommandState::Succeeded | CommandState::Failed) {
        tx.prepare_cached("UPDATE commands SET delivered = coalesce(delivered, ?2) WHERE id = ?1")?
            .execute(params![u.id as i64, now])?;
    }
    command_by_id(tx, u.id as i64)
}

fn take_seq(tx: &Connection, next_seq: &mut u64) -> Result<u64, StoreError> {
    let seq = *next_seq;
    *next_seq += 1;
    meta::set_seq(tx, meta::COMMANDS_SEQ, seq)?;
    Ok(seq)
}

/// Keeps at most `max` finished commands, oldest deleted first.
pub(crate) fn trim_history(tx: &Connection, max: u64) -> Result<(), StoreError> {
    let cut: Option<i64> = tx
        .prepare_cached(
            "SELECT id FROM commands WHERE state NOT IN ('queued', 'sent', 'delivered')
             ORDER BY id DESC LIMIT 1 OFFSET ?1",
        )?
        .query_row([max as i64], |r| r.get(0))
        .optional()?;
    if let Some(cut) = cut {
        tx.prepare_cached(
            "DELETE FROM commands WHERE id <= ?1 AND state NOT IN ('queued', 'sent', 'delivered')",
        )?
        .execute([cut])?;
    }
    Ok(())
}

impl Reader {
    /// Last seq of the commands collection.
    pub fn commands_seq(&self) -> Result<u64, StoreError> {
        meta::seq(&self.conn, meta::COMMANDS_SEQ)
    }

    /// Every command held, by id.
    pub fn commands_all(&self) -> Result<Vec<CommandRow>, StoreError> {
        let sql = format!("SELECT {COMMAND_COLUMNS} FROM commands ORDER BY id");
        self.rows(&sql, [], command_row)
    }

    /// Commands that changed after `seq`, in seq order, at most `limit`.
    pub fn commands_after(&self, seq: u64, limit: usize) -> Result<Vec<CommandRow>, StoreError> {
        let sql =
            format!("SELECT {COMMAND_COLUMNS} FROM commands WHERE seq > ?1 ORDER BY seq LIMIT ?2");
        self.rows(&sql, [seq as i64, limit as i64], command_row)
    }

    /// Commands not finished yet (queued, sent or delivered), by id.
    pub fn commands_open(&self) -> Result<Vec<CommandRow>, StoreError> {
        let sql = format!(
            "SELECT {COMMAND_COLUMNS} FROM commands WHERE state IN ('queued', 'sent', 'delivered') ORDER BY id"
        );
        self.rows(&sql, [], command_row)
    }

    /// One command.
    pub fn command(&self, id: u64) -> Result<Option<CommandRow>, StoreError> {
        command_by_id(&self.conn, id as i64)
    }
}
