//! Device commands in the store: created (once per idempotency key), then
//! moved along their lifecycle `queued` → `sent` → `delivered` →
//! `succeeded` | `failed`, or `expired` (the deadline passed before
//! delivery) or `timeout` (delivered, no result by the deadline). A state
//! only moves forward; a finished command never changes again. Each change
//! takes the next seq of the commands collection (`meta.commands_seq`).

use crate::reader::CommandRow;
use crate::schema;
use crate::StoreError;
use rusqlite::{params, Connection, OptionalExtension, Row};

/// A command's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandState {
    Queued,
    Sent,
    Delivered,
    Succeeded,
    Failed,
    Expired,
    Timeout,
}

impl CommandState {
    /// As stored and served.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandState::Queued => "queued",
            CommandState::Sent => "sent",
            CommandState::Delivered => "delivered",
            CommandState::Succeeded => "succeeded",
            CommandState::Failed => "failed",
            CommandState::Expired => "expired",
            CommandState::Timeout => "timeout",
        }
    }

    /// From its stored text.
    pub fn parse(s: &str) -> Option<CommandState> {
        Some(match s {
            "queued" => CommandState::Queued,
            "sent" => CommandState::Sent,
            "delivered" => CommandState::Delivered,
            "succeeded" => CommandState::Succeeded,
            "failed" => CommandState::Failed,
            "expired" => CommandState::Expired,
            "timeout" => CommandState::Timeout,
            _ => return None,
        })
    }

    /// Order along the lifecycle; the four ends share the last rank.
    fn rank(self) -> u8 {
        match self {
            CommandState::Queued => 0,
            CommandState::Sent => 1,
            CommandState::Delivered => 2,
            _ => 3,
        }
    }

    /// Whether the command is over.
    pub fn is_final(self) -> bool {
        self.rank() == 3
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

pub(crate) const COMMAND_COLUMNS: &str = "id, seq, device, name, params, state, created, deadline,
    sent, delivered, finished, output, reason, idem_key, updated";

pub(crate) fn command_row(r: &Row<'_>) -> rusqlite::Result<CommandRow> {
    Ok(CommandRow {
        id: r.get::<_, i64>(0)? as u64,
        seq: r.get::<_, i64>(1)? as u64,
        device: r.get(2)?,
        name: r.get(3)?,
        params: r.get(4)?,
        state: r.get(5)?,
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

pub(crate) fn command_by_id(conn: &Connection, id: i64) -> Result<Option<CommandRow>, StoreError> {
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
    let Some(old) = CommandState::parse(&row.state) else {
        return Ok(None);
    };
    if old.is_final() || u.state.rank() <= old.rank() {
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
    schema::meta_set(tx, "commands_seq", &seq.to_string())?;
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
