//! Alerts in the store: the rules engine runs inside the writer, on every
//! reading it stores and on the passing of time, and each transition it
//! makes is written (an `alerts` row, `notify_outbox` rows) in the same
//! transaction as the readings that caused it. So a crash can neither lose
//! a transition nor notify one twice, and a restart rebuilds the engine
//! from what was committed: open alerts stay open without firing again,
//! `for` timers go on from when they started, and every known series keeps
//! its no-data timer from the device's last message.
//!
//! The `alerts` table is the alerts collection of the watch API (its own
//! sequence, `meta.alerts_seq`) and the alert history: a ring of its own,
//! bounded by `StoreConfig::max_alerts` resolved alerts and never touched by
//! the readings' retention. Notifications are queued in `notify_outbox`
//! ([`crate::notify`]) and deleted with their alert.
//!
//! Uses `meta`, `devices` (stored labels), `notify` and the [`Reader`] type;
//! reads `latest` and `names` to rebuild the engine.

use crate::devices::parse_labels;
use crate::meta;
use crate::notify::{self, Queued};
use crate::reader::{bad_state, Reader};
use crate::StoreError;
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::collections::BTreeMap;
use std::sync::Arc;
use telltale_rules::AlertState as EngineAlertState;
use telltale_rules::{AlertKey, AlertSnapshot, Engine, EngineState, RuleSet};
use telltale_rules::{SeriesState, Transition};

/// Version 3 of the hub database: the alerts collection and history, one
/// open (pending or firing) alert per rule and series. Times are hub time
/// in ms.
pub(crate) const SCHEMA_V3: &str = "
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
    ";

pub use telltale_types::AlertState;

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
    /// Where it is in its lifecycle.
    pub state: AlertState,
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

/// Which sinks get a notification for a rule (its own `notify` list, or
/// the sinks configured for a severity). Given by the hub, which knows the
/// notification config.
#[derive(Clone)]
pub struct Routing(pub Arc<RouteFn>);

/// A rule's own sinks and a severity → the sinks to notify.
pub type RouteFn = dyn Fn(&[String], &str) -> Vec<String> + Send + Sync;

impl std::fmt::Debug for Routing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Routing(..)")
    }
}

/// A firing alert as the repeat check reads it: id, key, severity, value,
/// summary, last notified.
type FiringRow = (i64, AlertKey, String, Option<String>, String, Option<i64>);

/// How an alert acknowledgement went.
#[derive(Debug, Clone, PartialEq)]
pub enum AckOutcome {
    /// Acknowledged (or already was: the row as it is now).
    Done(AlertRow),
    /// No alert has this id (or it left the history ring).
    NotFound,
    /// The alert is resolved: there is nothing left to acknowledge.
    Resolved(AlertRow),
}

/// The writer's alert state.
pub(crate) struct Alerts {
    /// The rules engine, restored from the database.
    pub(crate) engine: Engine,
    /// Where each rule's notifications go.
    routing: Routing,
    /// When repeat notifications were last looked for (ms).
    repeats_checked: i64,
}

/// Repeat notifications are looked for at most this often (ms).
const REPEAT_CHECK_MS: i64 = 1_000;

impl Alerts {
    /// The engine for `rules`, carried on from what the database holds.
    /// Alerts of rules that changed since the last run resolve (into `out`).
    pub(crate) fn load(
        conn: &Connection,
        rules: RuleSet,
        routing: Routing,
        now: i64,
        out: &mut Vec<Transition>,
    ) -> Result<Alerts, StoreError> {
        let state = engine_state(conn)?;
        let engine = match Engine::restore(rules.clone(), state, now, out) {
            Ok(e) => e,
            Err(e) => {
                // The stored rules no longer compile (an older build's rule
                // format): start over from the current rules.
                tracing::warn!(error = %e, "stored rules do not compile; alert timers start over");
                out.clear();
                Engine::new(rules)
            }
        };
        Ok(Alerts {
            engine,
            routing,
            repeats_checked: 0,
        })
    }

    /// Back to what the database holds (after a failed commit), same rules.
    pub(crate) fn reload(&mut self, conn: &Connection, now: i64) -> Result<(), StoreError> {
        let rules = self.engine.rules().clone();
        *self = Alerts::load(conn, rules, self.routing.clone(), now, &mut Vec::new())?;
        Ok(())
    }

    /// Replaces the rules: alerts of removed or changed rules resolve.
    pub(crate) fn replace(
        &mut self,
        tx: &Connection,
        rules: RuleSet,
        routing: Routing,
        now: i64,
        out: &mut Vec<Transition>,
    ) -> Result<(), StoreError> {
        self.routing = routing;
        self.engine.replace_rules(rules, now, out);
        save_rules(tx, self.engine.rules())
    }

    /// Whether the engine or a repeat notification wants a tick now.
    pub(crate) fn due(&self, now: i64) -> bool {
        self.engine.next_deadline().is_some_and(|d| d <= now)
            || now - self.repeats_checked >= REPEAT_CHECK_MS * 10
    }

    /// Ms until the engine's next deadline (`None`: none).
    pub(crate) fn wait_ms(&self, now: i64) -> Option<i64> {
        self.engine.next_deadline().map(|d| (d - now).max(0))
    }

    /// Writes the transitions; returns the alert rows that changed (for
    /// watchers). Also enqueues repeat notifications that are due.
    pub(crate) fn apply(
        &mut self,
        tx: &Connection,
        transitions: &[Transition],
        now: i64,
        next_seq: &mut u64,
        changed: &mut Vec<AlertRow>,
    ) -> Result<(), StoreError> {
        for t in transitions {
            if let Some(row) = self.transition(tx, t, now, next_seq)? {
                changed.push(row);
            }
        }
        if now - self.repeats_checked >= REPEAT_CHECK_MS {
            self.repeats_checked = now;
            self.repeats(tx, now)?;
        }
        Ok(())
    }

    fn transition(
        &mut self,
        tx: &Connection,
        t: &Transition,
        now: i64,
        next_seq: &mut u64,
    ) -> Result<Option<AlertRow>, StoreError> {
        let open: Option<i64> = tx
            .prepare_cached(
                "SELECT id FROM alerts WHERE rule = ?1 AND device = ?2 AND metric = ?3
                 AND state != 'resolved'",
            )?
            .query_row(params![t.key.rule, t.key.device, t.key.metric], |r| {
                r.get(0)
            })
            .optional()?;
        let value = t.value.as_ref().and_then(|v| serde_json::to_string(v).ok());
        let labels = serde_json::to_string(&t.labels).unwrap_or_else(|_| "{}".into());
        let seq = *next_seq;
        let id = match (t.to, open) {
            (EngineAlertState::Pending | EngineAlertState::Firing, None) => {
                let firing = t.to == EngineAlertState::Firing;
                tx.prepare_cached(
                    "INSERT INTO alerts(seq, rule, device, metric, state, severity, summary,
                         labels, value, threshold, started, fired, updated)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                )?
                .execute(params![
                    seq as i64,
                    t.key.rule,
                    t.key.device,
                    t.key.metric,
                    stored_state(t.to).as_str(),
                    t.severity,
                    t.summary,
                    labels,
                    value,
                    t.threshold,
                    t.at,
                    firing.then_some(t.at),
                    now
                ])?;
                tx.last_insert_rowid()
            }
            (EngineAlertState::Pending | EngineAlertState::Firing, Some(id)) => {
                tx.prepare_cached(
                    "UPDATE alerts SET seq = ?2, state = ?3, summary = ?4, value = ?5,
                         fired = CASE WHEN ?3 = 'firing' THEN coalesce(fired, ?6) ELSE fired END,
                         updated = ?7
                     WHERE id = ?1",
                )?
                .execute(params![
                    id,
                    seq as i64,
                    stored_state(t.to).as_str(),
                    t.summary,
                    value,
                    t.at,
                    now
                ])?;
                id
            }
            (EngineAlertState::Resolved, Some(id)) => {
                tx.prepare_cached(
                    "UPDATE alerts SET seq = ?2, state = 'resolved', value = coalesce(?3, value),
                         resolved = ?4, updated = ?5
                     WHERE id = ?1",
                )?
                .execute(params![id, seq as i64, value, t.at, now])?;
                id
            }
            // Nothing open to resolve (its row left the ring, or it never
            // got one): nothing to write.
            (EngineAlertState::Resolved | EngineAlertState::Inactive, _) => return Ok(None),
        };
        *next_seq += 1;
        meta::set_seq(tx, meta::ALERTS_SEQ, seq)?;
        let notify = match t.to {
            EngineAlertState::Firing => Some("firing"),
            EngineAlertState::Resolved if t.was_firing => Some("resolved"),
            _ => None,
        };
        if let Some(kind) = notify {
            self.enqueue(
                tx,
                id,
                &t.key,
                t.severity,
                kind,
                t.at,
                value.as_deref(),
                &t.summary,
                now,
            )?;
        }
        alert_by_id(tx, id)
    }

    /// Queues one notification of alert `id` per sink its rule routes to.
    #[allow(clippy::too_many_arguments)]
    fn enqueue(
        &self,
        tx: &Connection,
        id: i64,
        key: &AlertKey,
        severity: &str,
        kind: &str,
        at: i64,
        value: Option<&str>,
        summary: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let own = self
            .engine
            .rules()
            .get(&key.rule)
            .map(|r| r.notify.clone())
            .unwrap_or_default();
        for sink in (self.routing.0)(&own, severity) {
            let n = Queued {
                alert: id,
                sink: &sink,
                kind,
                at,
                value,
                summary,
            };
            notify::enqueue(tx, &n, now)?;
        }
        tx.prepare_cached("UPDATE alerts SET notified = ?2 WHERE id = ?1")?
            .execute(params![id, at])?;
        Ok(())
    }

    /// Queues a `repeat` notification for every firing, unacknowledged
    /// alert whose rule has `repeat_every` and whose last notification is
    /// that old.
    fn repeats(&self, tx: &Connection, now: i64) -> Result<(), StoreError> {
        let firing: Vec<FiringRow> = tx
            .prepare_cached(
                "SELECT id, rule, device, metric, severity, value, summary, notified
                 FROM alerts WHERE state = 'firing' AND acked = 0",
            )?
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    AlertKey {
                        rule: r.get(1)?,
                        device: r.get(2)?,
                        metric: r.get(3)?,
                    },
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            })?
            .collect::<Result<_, _>>()?;
        for (id, key, severity, value, summary, notified) in firing {
            let every = self
                .engine
                .rules()
                .get(&key.rule)
                .and_then(|r| r.repeat_every.as_deref())
                .and_then(|d| telltale_rules::parse_duration(d).ok())
                .filter(|ms| *ms > 0);
            let (Some(every), Some(last)) = (every, notified) else {
                continue;
            };
            if now - last >= every {
                self.enqueue(
                    tx,
                    id,
                    &key,
                    &severity,
                    "repeat",
                    now,
                    value.as_deref(),
                    &summary,
                    now,
                )?;
            }
        }
        Ok(())
    }
}

/// Acknowledges alert `id`. The row takes a new seq so watchers see it.
pub(crate) fn ack(
    tx: &Connection,
    next_seq: &mut u64,
    id: u64,
    by: &str,
    note: Option<&str>,
    now: i64,
) -> Result<AckOutcome, StoreError> {
    let Some(row) = alert_by_id(tx, id as i64)? else {
        return Ok(AckOutcome::NotFound);
    };
    if row.state == AlertState::Resolved {
        return Ok(AckOutcome::Resolved(row));
    }
    let seq = *next_seq;
    tx.prepare_cached(
        "UPDATE alerts SET seq = ?2, acked = 1, ack_by = ?3, ack_at = ?4, ack_note = ?5,
             updated = ?4
         WHERE id = ?1",
    )?
    .execute(params![id as i64, seq as i64, by, now, note])?;
    *next_seq += 1;
    meta::set_seq(tx, meta::ALERTS_SEQ, seq)?;
    Ok(match alert_by_id(tx, id as i64)? {
        Some(row) => AckOutcome::Done(row),
        None => AckOutcome::NotFound,
    })
}

/// Keeps at most `max` resolved alerts (and their notifications), oldest
/// deleted first. Open alerts are never deleted.
pub(crate) fn trim_history(tx: &Connection, max: u64) -> Result<(), StoreError> {
    let cut: Option<i64> = tx
        .prepare_cached(
            "SELECT id FROM alerts WHERE state = 'resolved' ORDER BY id DESC LIMIT 1 OFFSET ?1",
        )?
        .query_row([max as i64], |r| r.get(0))
        .optional()?;
    if let Some(cut) = cut {
        notify::delete_of(
            tx,
            "SELECT id FROM alerts WHERE state = 'resolved' AND id <= ?1",
            cut,
        )?;
        tx.prepare_cached("DELETE FROM alerts WHERE state = 'resolved' AND id <= ?1")?
            .execute([cut])?;
    }
    Ok(())
}

/// An engine state as stored (the engine never hands out `Inactive` to
/// store; it is written as `pending` should it ever be).
fn stored_state(s: EngineAlertState) -> AlertState {
    match s {
        EngineAlertState::Inactive | EngineAlertState::Pending => AlertState::Pending,
        EngineAlertState::Firing => AlertState::Firing,
        EngineAlertState::Resolved => AlertState::Resolved,
    }
}

/// The rules in force, kept so that the next start can tell kept rules
/// from changed ones.
fn save_rules(tx: &Connection, rules: &RuleSet) -> Result<(), StoreError> {
    let list: Vec<_> = rules.rules().collect();
    let text = serde_json::to_string(&list).unwrap_or_else(|_| "[]".into());
    meta::set(tx, meta::RULES, &text)
}

/// What the engine must carry on from, read back from the database: the
/// rules of the last run, device labels, every series with its device's
/// last message as its last reading (hub time), and the open alerts.
fn engine_state(conn: &Connection) -> Result<EngineState, StoreError> {
    let rules = meta::get(conn, meta::RULES)?
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let mut devices = BTreeMap::new();
    let mut stmt = conn.prepare("SELECT name, labels FROM devices")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let name: String = r.get(0)?;
        let labels: Option<String> = r.get(1)?;
        let labels = labels
            .as_deref()
            .and_then(|l| parse_labels(l).ok())
            .unwrap_or_default();
        devices.insert(name, labels);
    }
    let series = conn
        .prepare(
            "SELECT d.name, m.name, u.name, coalesce(d.last_seen, l.ts)
             FROM latest l JOIN devices d ON d.id = l.device JOIN names m ON m.id = l.metric
             LEFT JOIN names u ON u.id = l.unit",
        )?
        .query_map([], |r| {
            Ok(SeriesState {
                device: r.get(0)?,
                metric: r.get(1)?,
                unit: r.get(2)?,
                last_seen: r.get(3)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let alerts = conn
        .prepare(
            "SELECT rule, device, metric, state, started, fired, value
             FROM alerts WHERE state != 'resolved'",
        )?
        .query_map([], |r| {
            let state: String = r.get(3)?;
            let started: i64 = r.get(4)?;
            let fired: Option<i64> = r.get(5)?;
            let value: Option<String> = r.get(6)?;
            let (state, since) = match AlertState::parse(&state) {
                Some(AlertState::Firing) => (EngineAlertState::Firing, fired.unwrap_or(started)),
                _ => (EngineAlertState::Pending, started),
            };
            Ok(AlertSnapshot {
                key: AlertKey {
                    rule: r.get(0)?,
                    device: r.get(1)?,
                    metric: r.get(2)?,
                },
                state,
                since,
                keep_firing_until: None,
                value: value.and_then(|v| serde_json::from_str(&v).ok()),
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(EngineState {
        rules,
        devices,
        series,
        alerts,
    })
}

const ALERT_COLUMNS: &str = "id, seq, rule, device, metric, state, severity, summary,
    labels, value, threshold, started, fired, resolved, updated, acked, ack_by, ack_at, ack_note";

fn alert_row(r: &Row<'_>) -> rusqlite::Result<AlertRow> {
    let labels: String = r.get(8)?;
    let state: String = r.get(5)?;
    Ok(AlertRow {
        id: r.get::<_, i64>(0)? as u64,
        seq: r.get::<_, i64>(1)? as u64,
        rule: r.get(2)?,
        device: r.get(3)?,
        metric: r.get(4)?,
        state: AlertState::parse(&state).ok_or_else(|| bad_state(5, &state))?,
        severity: r.get(6)?,
        summary: r.get(7)?,
        labels: parse_labels(&labels).unwrap_or_default(),
        value: r.get(9)?,
        threshold: r.get(10)?,
        started_ms: r.get(11)?,
        fired_ms: r.get(12)?,
        resolved_ms: r.get(13)?,
        updated_ms: r.get(14)?,
        acknowledged: r.get(15)?,
        ack_by: r.get(16)?,
        ack_at_ms: r.get(17)?,
        ack_note: r.get(18)?,
    })
}

fn alert_by_id(conn: &Connection, id: i64) -> Result<Option<AlertRow>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1"))?
        .query_row([id], alert_row)
        .optional()?)
}

impl Reader {
    /// Last seq of the alerts collection.
    pub fn alerts_seq(&self) -> Result<u64, StoreError> {
        meta::seq(&self.conn, meta::ALERTS_SEQ)
    }

    /// Every alert held (open and history), by id.
    pub fn alerts_all(&self) -> Result<Vec<AlertRow>, StoreError> {
        let sql = format!("SELECT {ALERT_COLUMNS} FROM alerts ORDER BY id");
        self.rows(&sql, [], alert_row)
    }

    /// Alerts that changed after `seq`, in seq order, at most `limit`.
    pub fn alerts_after(&self, seq: u64, limit: usize) -> Result<Vec<AlertRow>, StoreError> {
        let sql =
            format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE seq > ?1 ORDER BY seq LIMIT ?2");
        self.rows(&sql, [seq as i64, limit as i64], alert_row)
    }

    /// One alert.
    pub fn alert(&self, id: u64) -> Result<Option<AlertRow>, StoreError> {
        alert_by_id(&self.conn, id as i64)
    }
}
