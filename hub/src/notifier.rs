//! Delivers alert notifications: reads the store's outbox (`notify_outbox`,
//! filled by the writer in the same transaction as the alert change), makes
//! one attempt per due notification with `telltale_notify::Sender`, and
//! writes the outcome back (`WriteOp::Delivered`): sent, retry at a later
//! time, or given up. The outbox is in SQLite, so a notification pending
//! when the hub stops is delivered after the next start; one whose attempt
//! was cut short by the stop is sent again with the same `dedup_key`.
//!
//! Order: a sink hears of one alert in order (firing, repeats, resolved):
//! a notification waits while an older one of the same alert to the same
//! sink is undelivered. Each sink's notifications go one at a time; up to
//! [`PARALLEL_SINKS`] sinks are served at once.
//!
//! Each outcome is logged and counted here, in one place; no log line
//! holds a sink's URL, token or secret (the sender's reasons never do).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use telltale_notify::{
    gives_up, next_attempt, AlertState, Notification, NotificationKind, NotifyConfig, Outcome,
    Sender,
};
use telltale_store::writer::{WriteOp, WriterHandle};
use telltale_store::{AlertRow, Delivery, NotifyRow, Reader, Routing, StoreError};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Due notifications read at a time.
const BATCH: usize = 100;
/// Sinks delivered to at once.
const PARALLEL_SINKS: usize = 8;
/// Longest sleep between two looks at the outbox: a notification queued
/// meanwhile waits at most this long.
const MAX_SLEEP_MS: i64 = 1_000;

/// Counters of delivery outcomes, for `/metrics`.
#[derive(Debug, Default)]
pub struct NotifyStats {
    /// Notifications a sink accepted.
    pub sent: AtomicU64,
    /// Notifications given up on (a permanent error, or retries ran out).
    pub failed: AtomicU64,
    /// Attempts that failed and were scheduled again.
    pub retried: AtomicU64,
}

/// The routing the store's writer applies when it queues a notification:
/// a rule's own sinks, or the sinks configured for its severity.
pub fn routing(notify: &NotifyConfig) -> Routing {
    let notify = notify.clone();
    Routing(Arc::new(move |own: &[String], severity: &str| {
        notify
            .sinks_for(own, severity)
            .into_iter()
            .map(str::to_owned)
            .collect()
    }))
}

/// The retry schedule, from `[notify]`.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    initial: Duration,
    max: Duration,
    give_up_after: Duration,
}

/// A due notification with its alert (`None`: the alert is gone).
type Due = (NotifyRow, Option<AlertRow>);

/// What the notifier task needs; cheap to clone into a sink's task.
#[derive(Clone)]
struct Notifier {
    /// Makes the attempts.
    sender: Sender,
    /// Takes the outcomes.
    store: WriterHandle,
    /// How retries are spaced and when they stop.
    backoff: Backoff,
    /// Outcomes counted.
    stats: Arc<NotifyStats>,
    /// Fired at shutdown: an attempt in flight is dropped (it is made again
    /// after the next start).
    shutdown: CancellationToken,
}

/// Runs until `shutdown`: delivers what the outbox of the database at `db`
/// holds. Ends early only if the database cannot be opened or the store
/// has stopped.
pub async fn run(
    db: PathBuf,
    sender: Sender,
    store: WriterHandle,
    stats: Arc<NotifyStats>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let reader = tokio::task::spawn_blocking(move || Reader::open(&db)).await??;
    let reader = Arc::new(Mutex::new(reader));
    let config = sender.config();
    let backoff = Backoff {
        initial: config.initial_backoff(),
        max: config.max_backoff(),
        give_up_after: config.give_up_after(),
    };
    let notifier = Notifier {
        sender,
        store,
        backoff,
        stats,
        shutdown: shutdown.clone(),
    };
    while !shutdown.is_cancelled() {
        let now = telltale_store::now_ms();
        let reader = reader.clone();
        let read = tokio::task::spawn_blocking(move || {
            let reader = reader
                .lock()
                .map_err(|_| StoreError::Commit("reader lock poisoned".into()))?;
            due(&reader, now)
        })
        .await?;
        let wait_ms = match read {
            Ok((due, _)) if !due.is_empty() => {
                if !notifier.round(due).await {
                    return Ok(());
                }
                0
            }
            Ok((_, next)) => match next {
                Some(at) if at > now => (at - now).min(MAX_SLEEP_MS),
                // Nothing queued, or only notifications held back behind
                // an older one of their alert that waits for its retry.
                _ => MAX_SLEEP_MS,
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the notification outbox");
                MAX_SLEEP_MS
            }
        };
        if wait_ms > 0 {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
            }
        }
    }
    Ok(())
}

/// The notifications due at `now` that may go now, with their alerts, and
/// when the next queued one is due, all from one read transaction.
fn due(reader: &Reader, now: i64) -> Result<(Vec<Due>, Option<i64>), StoreError> {
    reader.snapshot(|r| {
        let mut out = Vec::new();
        for row in r.notifications_due(now, BATCH)? {
            // A firing notification is the first of its alert; a later one
            // waits for the older ones to the same sink.
            if row.kind != "firing" {
                let older = r.notifications(row.alert)?;
                let waits = older
                    .iter()
                    .any(|o| o.id < row.id && o.sink == row.sink && o.done == 0);
                if waits {
                    continue;
                }
            }
            let alert = r.alert(row.alert)?;
            out.push((row, alert));
        }
        Ok((out, r.next_notification_at()?))
    })
}

impl Notifier {
    /// One attempt at each of `due`, a task per sink; then the outcomes are
    /// committed, so the next read does not see them due again. False if
    /// the store has stopped.
    async fn round(&self, due: Vec<Due>) -> bool {
        let mut by_sink: BTreeMap<String, Vec<Due>> = BTreeMap::new();
        for d in due {
            by_sink.entry(d.0.sink.clone()).or_default().push(d);
        }
        let mut tasks = JoinSet::new();
        let mut store_ok = true;
        for items in by_sink.into_values() {
            if tasks.len() >= PARALLEL_SINKS {
                store_ok &= joined(tasks.join_next().await);
            }
            tasks.spawn(self.clone().sink(items));
        }
        while let Some(done) = tasks.join_next().await {
            store_ok &= joined(Some(done));
        }
        store_ok && self.store.sync().await.is_ok()
    }

    /// The due notifications of one sink, in order. After a failed attempt
    /// the sink's others wait for the next round (the sink is likely down,
    /// and each attempt may take its whole timeout). False if the store has
    /// stopped.
    async fn sink(self, items: Vec<Due>) -> bool {
        for (row, alert) in items {
            if self.shutdown.is_cancelled() {
                return true;
            }
            let outcome = match alert.as_ref().map(|a| notification(&row, a)) {
                None => Outcome::Failed {
                    reason: "the alert no longer exists".into(),
                },
                Some(Err(reason)) => Outcome::Failed { reason },
                Some(Ok(n)) => tokio::select! {
                    _ = self.shutdown.cancelled() => return true,
                    o = self.sender.deliver(&row.sink, &n) => o,
                },
            };
            let now = telltale_store::now_ms();
            let delivery = settle(&row, outcome, now, self.backoff, rand::random());
            self.record(&row, &delivery, now);
            let retry = matches!(delivery, Delivery::Retry { .. });
            let op = WriteOp::Delivered {
                id: row.id,
                outcome: delivery,
            };
            if self.store.send(op).await.is_err() {
                return false;
            }
            if retry {
                break;
            }
        }
        true
    }

    /// Logs and counts one outcome.
    fn record(&self, row: &NotifyRow, delivery: &Delivery, now: i64) {
        let attempts = row.attempts + 1;
        match delivery {
            Delivery::Sent => {
                self.stats.sent.fetch_add(1, Relaxed);
                tracing::info!(
                    sink = %row.sink,
                    alert = row.alert,
                    kind = %row.kind,
                    attempts,
                    "notification delivered"
                );
            }
            Delivery::Retry { next_at_ms, error } => {
                self.stats.retried.fetch_add(1, Relaxed);
                let retry_in_s = (next_at_ms - now).max(0) as f64 / 1000.0;
                // Once per notification at warn: a sink that is down for a
                // day must not fill the log.
                if row.attempts == 0 {
                    tracing::warn!(sink = %row.sink, alert = row.alert, kind = %row.kind, retry_in_s, reason = %error, "notification not delivered; will retry");
                } else {
                    tracing::debug!(sink = %row.sink, alert = row.alert, kind = %row.kind, attempts, retry_in_s, reason = %error, "notification not delivered; will retry");
                }
            }
            Delivery::GaveUp { error } => {
                self.stats.failed.fetch_add(1, Relaxed);
                tracing::warn!(
                    sink = %row.sink,
                    alert = row.alert,
                    kind = %row.kind,
                    attempts,
                    reason = %error,
                    "notification given up"
                );
            }
        }
    }
}

/// A sink task's end: false if the store stopped (a panicked task is
/// logged; its notifications are tried again).
fn joined(done: Option<Result<bool, tokio::task::JoinError>>) -> bool {
    match done {
        Some(Ok(ok)) => ok,
        Some(Err(e)) => {
            tracing::error!(error = %e, "a notification task failed");
            true
        }
        None => true,
    }
}

/// The notification of `row` about `alert`, as the sinks receive it.
fn notification(row: &NotifyRow, alert: &AlertRow) -> Result<Notification, String> {
    let kind = match row.kind.as_str() {
        "firing" => NotificationKind::Firing,
        "repeat" => NotificationKind::Repeat,
        "resolved" => NotificationKind::Resolved,
        other => return Err(format!("unknown notification kind {other:?}")),
    };
    let state = if alert.state == telltale_store::AlertState::Resolved
        || kind == NotificationKind::Resolved
    {
        AlertState::Resolved
    } else {
        AlertState::Firing
    };
    let value = row
        .value
        .as_deref()
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or(serde_json::Value::Null);
    Ok(Notification {
        alert_id: row.alert,
        rule: alert.rule.clone(),
        device: alert.device.clone(),
        metric: alert.metric.clone(),
        severity: alert.severity.clone(),
        state,
        kind,
        value,
        summary: row.summary.clone(),
        labels: alert.labels.clone(),
        at: telltale_api::items::rfc3339(row.at_ms),
        acknowledged: alert.acknowledged,
        dedup_key: format!("telltale-{}", row.id),
    })
}

/// What to record for an attempt of `row` that ended with `outcome` at
/// `now`; `jitter` is a random number in 0..=1. A retry waits the backoff
/// or the receiver's `Retry-After`, whichever is longer (a `Retry-After`
/// above the longest backoff counts as the longest backoff); once
/// `give_up_after` has passed since the notification was queued, a failed
/// attempt is the last.
fn settle(row: &NotifyRow, outcome: Outcome, now: i64, backoff: Backoff, jitter: f64) -> Delivery {
    match outcome {
        Outcome::Delivered => Delivery::Sent,
        Outcome::Failed { reason } => Delivery::GaveUp { error: reason },
        Outcome::Retry { reason, .. } if gives_up(row.created_ms, now, backoff.give_up_after) => {
            Delivery::GaveUp {
                error: format!(
                    "{reason} (retried for {}s)",
                    backoff.give_up_after.as_secs()
                ),
            }
        }
        Outcome::Retry { reason, after } => {
            let wait = next_attempt(row.attempts + 1, backoff.initial, backoff.max, jitter)
                .max(after.unwrap_or_default().min(backoff.max));
            Delivery::Retry {
                next_at_ms: now.saturating_add(wait.as_millis() as i64),
                error: reason,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn row(kind: &str, attempts: u32, created_ms: i64) -> NotifyRow {
        NotifyRow {
            id: 7,
            alert: 42,
            sink: "ops".into(),
            kind: kind.into(),
            at_ms: 1_748_779_200_000,
            value: Some("-9.5".into()),
            summary: "freezer-3 at -9.5".into(),
            created_ms,
            attempts,
            next_at_ms: created_ms,
            last_error: None,
            done: 0,
        }
    }

    fn alert(state: &str) -> AlertRow {
        AlertRow {
            id: 42,
            seq: 3,
            rule: "freezer-warm".into(),
            device: "freezer-3".into(),
            metric: "temp".into(),
            state: telltale_store::AlertState::parse(state).expect("a known state"),
            severity: "major".into(),
            summary: "now".into(),
            labels: BTreeMap::from([("site".into(), "north".into())]),
            value: Some("-9".into()),
            threshold: "-15".into(),
            started_ms: 0,
            fired_ms: Some(0),
            resolved_ms: None,
            updated_ms: 0,
            acknowledged: true,
            ack_by: None,
            ack_at_ms: None,
            ack_note: None,
        }
    }

    #[test]
    fn notification_from_row_and_alert() {
        let n = notification(&row("firing", 0, 0), &alert("firing")).expect("valid");
        assert_eq!(n.alert_id, 42);
        assert_eq!(
            (n.rule.as_str(), n.device.as_str()),
            ("freezer-warm", "freezer-3")
        );
        assert_eq!((n.metric.as_str(), n.severity.as_str()), ("temp", "major"));
        assert_eq!(
            (n.state, n.kind),
            (AlertState::Firing, NotificationKind::Firing)
        );
        assert_eq!(n.value, serde_json::json!(-9.5));
        assert_eq!(
            n.summary, "freezer-3 at -9.5",
            "the row's summary, not the alert's"
        );
        assert_eq!(n.labels.get("site").map(String::as_str), Some("north"));
        assert_eq!(n.at, "2025-06-01T12:00:00.000Z");
        assert!(n.acknowledged);
        assert_eq!(n.dedup_key, "telltale-7");
        // (row kind, alert state, state, kind)
        let table = [
            (
                "repeat",
                "firing",
                AlertState::Firing,
                NotificationKind::Repeat,
            ),
            (
                "resolved",
                "resolved",
                AlertState::Resolved,
                NotificationKind::Resolved,
            ),
            (
                "resolved",
                "firing",
                AlertState::Resolved,
                NotificationKind::Resolved,
            ),
            (
                "firing",
                "resolved",
                AlertState::Resolved,
                NotificationKind::Firing,
            ),
        ];
        for (kind, state, want_state, want_kind) in table {
            let n = notification(&row(kind, 0, 0), &alert(state)).expect("valid");
            assert_eq!((n.state, n.kind), (want_state, want_kind), "{kind} {state}");
        }
        let mut r = row("firing", 0, 0);
        r.value = None;
        let n = notification(&r, &alert("firing")).expect("no-data alert");
        assert_eq!(n.value, serde_json::Value::Null);
        let e = notification(&row("exploded", 0, 0), &alert("firing")).expect_err("bad kind");
        assert!(e.contains("exploded"), "{e}");
    }

    #[test]
    fn settle_table() {
        let s = Duration::from_secs;
        let backoff = Backoff {
            initial: s(5),
            max: s(600),
            give_up_after: s(86_400),
        };
        let retry = |after: Option<u64>| Outcome::Retry {
            reason: "http 503".into(),
            after: after.map(s),
        };
        let day = 86_400_000;
        let t0 = 1_000_000;
        // (attempts so far, outcome, now, jitter, expected)
        let table = [
            (0, Outcome::Delivered, t0, 0.5, Delivery::Sent),
            (
                3,
                Outcome::Failed {
                    reason: "http 404".into(),
                },
                t0,
                0.5,
                Delivery::GaveUp {
                    error: "http 404".into(),
                },
            ),
            // First retry: 2.5 s to 5 s.
            (
                0,
                retry(None),
                t0,
                0.0,
                Delivery::Retry {
                    next_at_ms: t0 + 2_500,
                    error: "http 503".into(),
                },
            ),
            (
                0,
                retry(None),
                t0,
                1.0,
                Delivery::Retry {
                    next_at_ms: t0 + 5_000,
                    error: "http 503".into(),
                },
            ),
            // Third failure: base 20 s.
            (
                2,
                retry(None),
                t0,
                1.0,
                Delivery::Retry {
                    next_at_ms: t0 + 20_000,
                    error: "http 503".into(),
                },
            ),
            // Retry-After longer than the backoff wins ...
            (
                0,
                retry(Some(60)),
                t0,
                1.0,
                Delivery::Retry {
                    next_at_ms: t0 + 60_000,
                    error: "http 503".into(),
                },
            ),
            // ... shorter does not ...
            (
                2,
                retry(Some(1)),
                t0,
                1.0,
                Delivery::Retry {
                    next_at_ms: t0 + 20_000,
                    error: "http 503".into(),
                },
            ),
            // ... and is capped at the longest backoff.
            (
                0,
                retry(Some(1_000_000)),
                t0,
                0.0,
                Delivery::Retry {
                    next_at_ms: t0 + 600_000,
                    error: "http 503".into(),
                },
            ),
            // A day after it was queued, a retry is the end.
            (
                40,
                retry(None),
                day,
                0.5,
                Delivery::GaveUp {
                    error: "http 503 (retried for 86400s)".into(),
                },
            ),
            (
                40,
                retry(None),
                day - 1,
                1.0,
                Delivery::Retry {
                    next_at_ms: day - 1 + 600_000,
                    error: "http 503".into(),
                },
            ),
        ];
        for (attempts, outcome, now, jitter, want) in table {
            let created = if now >= day - 1 { 0 } else { t0 };
            let got = settle(
                &row("firing", attempts, created),
                outcome.clone(),
                now,
                backoff,
                jitter,
            );
            assert_eq!(got, want, "{attempts} {outcome:?} at {now}");
        }
    }

    #[test]
    fn routing_uses_the_rules_sinks_or_the_severity() {
        let notify: NotifyConfig = toml::from_str(
            r#"
[[sink]]
name = "pager"
kind = "webhook"
url = "https://a.example.com/"
severities = ["critical"]

[[sink]]
name = "all"
kind = "ntfy"
url = "https://ntfy.sh/x"
"#,
        )
        .expect("valid");
        let route = routing(&notify);
        assert_eq!((route.0)(&[], "critical"), ["pager", "all"]);
        assert_eq!((route.0)(&[], "warning"), ["all"]);
        assert_eq!((route.0)(&["pager".to_owned()], "info"), ["pager"]);
    }
}
