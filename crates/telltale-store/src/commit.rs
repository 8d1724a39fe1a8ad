//! The group-commit loop: the writer thread takes ops from its queue and
//! commits them in groups (every `commit_interval_ms` or `commit_max_rows`,
//! whichever comes first), calling the table modules for each op and, at
//! the end of the group and in the same transaction, for what they keep up
//! to date (alerts, latest, devices, retention, outboxes, the readings
//! marks), so the collections never disagree about what is committed.
//!
//! After each commit it sends the acks that became true and publishes what
//! changed ([`Changes`]). A batch that is not committed is never
//! acknowledged, so a sender that waits for the ack loses nothing. Readings
//! may be shown to subscribers before their commit, under reserved seqs
//! (see [`crate::readings`]).
//!
//! The top of the store but for [`crate::writer`] (the handle): it may use
//! every table module and the op types (`ops`), and none of them uses it.

use crate::alerts::{self, AckOutcome, AlertRow, Alerts};
use crate::batches::{AckOut, Outboxes};
use crate::commands::{self, CommandRow};
use crate::config::StoreConfig;
use crate::devices::{DeviceRow, Devices};
use crate::latest::{self, Latest, LatestRow};
use crate::meta;
use crate::names::Names;
use crate::notify;
use crate::ops::{Changes, CommandReply, StoreStats, WriteOp};
use crate::readings::{self, IncomingBatch, Ring, StoredReading};
use crate::rejects::{self, Reject};
use crate::{now_ms, StoreError};
use rusqlite::{Connection, TransactionBehavior};
use rustc_hash::FxHashMap as HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use telltale_wire::decode::Value;
use tokio::sync::{broadcast, mpsc, oneshot};

/// How long the writer sleeps when its queue is empty within a group.
const POLL: Duration = Duration::from_millis(2);

/// Readings shown at once before a commit, at most.
const SHOW_ROWS: usize = 1024;

/// One group commit in the making.
#[derive(Default)]
struct Group {
    /// Readings inserted by this group.
    rows: usize,
    /// Outboxes that owe an ack after the commit: (device id, outbox) →
    /// device name.
    acks: HashMap<(i64, u64), String>,
    /// Readings for subscribers, not shown yet.
    readings: Vec<StoredReading>,
    /// Who waits for this commit.
    syncs: Vec<oneshot::Sender<u64>>,
    /// Devices that sent anything in this group: id → name.
    seen: HashMap<i64, Arc<str>>,
    /// The newest reading per (device id, metric id) in this group.
    latest: latest::Pending,
    /// Latest rows changed at the end of the group (only when someone
    /// subscribes).
    latest_rows: Vec<LatestRow>,
    /// Devices changed at the end of the group (only when someone subscribes).
    device_rows: Vec<DeviceRow>,
    /// Whether each reading goes into `readings` for subscribers.
    want_readings: bool,
    /// Last seq of the readings shown before the commit (0: none).
    shown: u64,
    /// The id of the last reject this group stored, if it stored one.
    last_reject: Option<u64>,
    /// Alert transitions of this group, written at its end.
    transitions: Vec<telltale_rules::Transition>,
    /// Alerts changed by this group (transitions and acks).
    alert_rows: Vec<AlertRow>,
    /// Acknowledgements to answer once the group is committed.
    ack_replies: Vec<(oneshot::Sender<Result<AckOutcome, String>>, AckOutcome)>,
    /// Commands changed by this group.
    command_rows: Vec<CommandRow>,
    /// New commands to answer once the group is committed.
    command_replies: Vec<(CommandReply, (CommandRow, bool))>,
}

/// What the writer remembers between commits, one part per table; all of
/// it can be rebuilt from the database, and is after a failed commit.
struct State {
    /// The `[store]` section.
    config: StoreConfig,
    /// The readings ring: next seq, reserved seqs, gaps.
    ring: Ring,
    /// The latest collection's next seq.
    latest: Latest,
    /// The devices collection: next seq and each device's row.
    devices: Devices,
    /// Interned device, metric and unit names.
    names: Names,
    /// Idempotency state per sender outbox.
    outboxes: Outboxes,
    /// Alert rules and their engine, once the hub has sent rules.
    alerts: Option<Alerts>,
    /// Seq the next change of an alert gets (`meta.alerts_seq` + 1).
    next_alerts_seq: u64,
    /// Seq the next change of a command gets (`meta.commands_seq` + 1).
    next_commands_seq: u64,
    /// Counters, shared with the handle.
    stats: Arc<StoreStats>,
}

/// The writer thread's own state.
pub(crate) struct Writer {
    /// The one write connection.
    conn: Connection,
    /// The tables' writer state.
    state: State,
    /// Where acks go after each commit.
    acks: mpsc::UnboundedSender<Vec<AckOut>>,
    /// Where changes go.
    events: broadcast::Sender<Arc<Changes>>,
    /// Whether subscribers want each reading (see `ReadingsSwitch`).
    readings_wanted: Arc<AtomicBool>,
}

impl Writer {
    /// The writer over the migrated connection `conn`, carrying on from
    /// what it holds.
    pub(crate) fn new(
        conn: Connection,
        config: StoreConfig,
        acks: mpsc::UnboundedSender<Vec<AckOut>>,
        events: broadcast::Sender<Arc<Changes>>,
        readings_wanted: Arc<AtomicBool>,
    ) -> Result<Writer, StoreError> {
        let ring = Ring::open(&conn, config.reserve_span())?;
        let latest = Latest::load(&conn)?;
        let devices = Devices::load(&conn)?;
        let next_alerts_seq = meta::seq(&conn, meta::ALERTS_SEQ)? + 1;
        let next_commands_seq = meta::seq(&conn, meta::COMMANDS_SEQ)? + 1;
        let stats = Arc::new(StoreStats::default());
        stats.last_seq.store(ring.last_seq(), Relaxed);
        stats.latest_seq.store(latest.next_seq - 1, Relaxed);
        stats.devices_seq.store(devices.next_seq - 1, Relaxed);
        stats.alerts_seq.store(next_alerts_seq - 1, Relaxed);
        stats.commands_seq.store(next_commands_seq - 1, Relaxed);
        stats.rejects_seq.store(rejects::last_id(&conn)?, Relaxed);
        stats.oldest_seq.store(ring.oldest_seq, Relaxed);
        Ok(Writer {
            conn,
            state: State {
                config,
                ring,
                latest,
                devices,
                names: Names::default(),
                outboxes: Outboxes::default(),
                alerts: None,
                next_alerts_seq,
                next_commands_seq,
                stats,
            },
            acks,
            events,
            readings_wanted,
        })
    }

    /// The counters this writer keeps.
    pub(crate) fn stats(&self) -> Arc<StoreStats> {
        self.state.stats.clone()
    }

    /// The loop: until every sender is gone, then a last commit.
    pub(crate) fn run(mut self, rx: flume::Receiver<WriteOp>) {
        let interval = self.state.config.commit_interval();
        let idle = Duration::from_secs(5);
        loop {
            // Alert timers (for, no data, repeats) wake the writer too.
            let wait = match self.state.alerts.as_ref().and_then(|a| a.wait_ms(now_ms())) {
                Some(ms) => idle.min(Duration::from_millis(ms as u64)),
                None => idle,
            };
            let first = match rx.recv_timeout(wait) {
                Ok(op) => Some(op),
                Err(flume::RecvTimeoutError::Timeout)
                    if self.state.alerts.as_ref().is_some_and(|a| a.due(now_ms())) =>
                {
                    None
                }
                // Idle: write only if the age or size bound needs a delete,
                // so an idle hub does not touch the disk.
                Err(flume::RecvTimeoutError::Timeout) => {
                    match self
                        .state
                        .ring
                        .over_bounds(&self.conn, &self.state.config.retention)
                    {
                        Ok(true) => None,
                        Ok(false) => continue,
                        Err(e) => {
                            tracing::error!(error = %e, "store retention check failed");
                            continue;
                        }
                    }
                }
                Err(flume::RecvTimeoutError::Disconnected) => break,
            };
            let want_events = self.events.receiver_count() > 0;
            let mut group = Group {
                want_readings: want_events && self.readings_wanted.load(Relaxed),
                ..Group::default()
            };
            let mut closing = false;
            let mut reserve = self.state.ring.reserved;
            let result = self.group(
                &rx,
                first,
                interval,
                want_events,
                &mut group,
                &mut closing,
                &mut reserve,
            );
            match result {
                Ok(()) => self.committed(group, want_events, reserve),
                Err(e) => self.failed(group, e),
            }
            if closing {
                break;
            }
        }
        // A clean stop leaves no reserved seqs behind (no gap at the next start).
        if let Err(e) = self.state.ring.release(&self.conn) {
            tracing::error!(error = %e, "store could not release its reserved seqs");
        }
        let s = &self.state.stats;
        tracing::info!(
            commits = s.commits.load(Relaxed),
            readings = s.readings.load(Relaxed),
            duplicate_batches = s.duplicate_batches.load(Relaxed),
            rejects = s.rejects.load(Relaxed),
            deleted = s.deleted.load(Relaxed),
            commit_ms = s.commit_micros.load(Relaxed) / 1000,
            "store writer stopped"
        );
    }

    /// One group: applies `first` and what follows until the group is due,
    /// brings the tables up to date and commits.
    #[allow(clippy::too_many_arguments)]
    fn group(
        &mut self,
        rx: &flume::Receiver<WriteOp>,
        first: Option<WriteOp>,
        interval: Duration,
        want_events: bool,
        group: &mut Group,
        closing: &mut bool,
        reserve: &mut u64,
    ) -> Result<(), StoreError> {
        let deadline = Instant::now() + interval;
        let visible = self.state.config.visible_interval();
        let mut show_at = Instant::now() + visible;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let st = &mut self.state;
        if let Some(op) = first {
            st.apply(&tx, op, group)?;
            // Within a group, poll rather than park: a parked writer
            // makes every send a wake-up (a futex call per message),
            // which costs more than the inserts at small batch sizes.
            while group.rows < st.config.commit_max_rows && group.syncs.is_empty() {
                match rx.try_recv() {
                    Ok(op) => {
                        st.apply(&tx, op, group)?;
                        if group.readings.len() >= SHOW_ROWS {
                            show(&self.events, st, group);
                        }
                    }
                    Err(flume::TryRecvError::Empty) => {
                        let now = Instant::now();
                        if now >= deadline {
                            break;
                        }
                        if !visible.is_zero() && now >= show_at {
                            show(&self.events, st, group);
                            show_at = now + visible;
                        }
                        std::thread::sleep(POLL.min(deadline - now));
                    }
                    Err(flume::TryRecvError::Disconnected) => {
                        *closing = true;
                        break;
                    }
                }
            }
        }
        let now = now_ms();
        st.flush_alerts(&tx, group, now)?;
        st.latest
            .flush(&tx, &mut group.latest, want_events, &mut group.latest_rows)?;
        st.devices.flush(
            &tx,
            &mut group.seen,
            want_events,
            now,
            &mut group.device_rows,
        )?;
        let deleted = st
            .ring
            .retention(&tx, &st.config.retention, group.rows as u64)?;
        st.stats.deleted.fetch_add(deleted, Relaxed);
        st.outboxes.flush(&tx)?;
        // Reserve the seqs the next group may show before its commit
        // (none after the last commit: a clean stop leaves no gap).
        *reserve = st
            .ring
            .write_marks(&tx, *closing, st.config.reserve_span())?;
        let t = Instant::now();
        tx.commit()?;
        st.stats
            .commit_micros
            .fetch_add(t.elapsed().as_micros() as u64, Relaxed);
        Ok(())
    }

    /// After a commit: counters, acks, changes, answers.
    fn committed(&mut self, group: Group, want_events: bool, reserve: u64) {
        let st = &mut self.state;
        st.ring.committed(reserve);
        let s = &st.stats;
        let (last_seq, latest_seq, devices_seq) = (
            st.ring.last_seq(),
            st.latest.next_seq - 1,
            st.devices.next_seq - 1,
        );
        let (alerts_seq, commands_seq) = (st.next_alerts_seq - 1, st.next_commands_seq - 1);
        s.commits.fetch_add(1, Relaxed);
        s.readings.fetch_add(group.rows as u64, Relaxed);
        s.last_seq.store(last_seq, Relaxed);
        s.latest_seq.store(latest_seq, Relaxed);
        s.devices_seq.store(devices_seq, Relaxed);
        s.oldest_seq.store(st.ring.oldest_seq, Relaxed);
        s.alerts_seq.store(alerts_seq, Relaxed);
        s.commands_seq.store(commands_seq, Relaxed);
        if let Some(id) = group.last_reject {
            s.rejects_seq.store(id, Relaxed);
        }
        s.last_commit_ms.store(now_ms(), Relaxed);
        if !group.acks.is_empty() {
            let acks = group
                .acks
                .into_iter()
                .map(|((dev, outbox), device)| AckOut {
                    upto: st.outboxes.upto(dev, outbox),
                    device,
                    outbox,
                })
                .collect();
            let _ = self.acks.send(acks);
        }
        if want_events
            && !(group.readings.is_empty()
                && group.latest_rows.is_empty()
                && group.device_rows.is_empty()
                && group.alert_rows.is_empty()
                && group.command_rows.is_empty()
                && group.last_reject.is_none()
                && group.shown == 0)
        {
            let _ = self.events.send(Arc::new(Changes {
                committed: true,
                readings: group.readings,
                last_seq,
                latest: group.latest_rows,
                latest_seq,
                devices: group.device_rows,
                devices_seq,
                alerts: group.alert_rows,
                alerts_seq,
                commands: group.command_rows,
                commands_seq,
                rejects_seq: s.rejects_seq.load(Relaxed),
            }));
        }
        for w in group.syncs {
            let _ = w.send(last_seq);
        }
        for (w, outcome) in group.ack_replies {
            let _ = w.send(Ok(outcome));
        }
        for (w, made) in group.command_replies {
            let _ = w.send(Ok(made));
        }
    }

    /// After a failed commit: nothing of the group is acknowledged (senders
    /// with an outbox send it again); the caches are rebuilt from the
    /// database.
    fn failed(&mut self, group: Group, e: StoreError) {
        self.state.stats.failed_commits.fetch_add(1, Relaxed);
        tracing::error!(error = %e, rows = group.rows, "store commit failed");
        for (w, _) in group.ack_replies {
            let _ = w.send(Err(format!("the store could not commit: {e}")));
        }
        for (w, _) in group.command_replies {
            let _ = w.send(Err(format!("the store could not commit: {e}")));
        }
        if let Err(e) = self.state.reload(&self.conn) {
            tracing::error!(error = %e, "store state reload failed");
        }
        // Seqs shown to watchers are never given out again.
        self.state.ring.skip_shown(group.shown);
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Shares the group's readings so far with subscribers before the commit,
/// if their seqs are reserved.
fn show(events: &broadcast::Sender<Arc<Changes>>, state: &State, group: &mut Group) {
    let Some(last) = group.readings.last().map(|r| r.seq) else {
        return;
    };
    if last > state.ring.reserved {
        return;
    }
    group.shown = last;
    let s = &state.stats;
    let _ = events.send(Arc::new(Changes {
        committed: false,
        readings: std::mem::take(&mut group.readings),
        last_seq: last,
        latest: Vec::new(),
        latest_seq: s.latest_seq.load(Relaxed),
        devices: Vec::new(),
        devices_seq: s.devices_seq.load(Relaxed),
        alerts: Vec::new(),
        alerts_seq: s.alerts_seq.load(Relaxed),
        commands: Vec::new(),
        commands_seq: s.commands_seq.load(Relaxed),
        rejects_seq: s.rejects_seq.load(Relaxed),
    }));
}

impl State {
    fn apply(&mut self, tx: &Connection, op: WriteOp, group: &mut Group) -> Result<(), StoreError> {
        match op {
            WriteOp::Batch(b) => self.batch(tx, b, group),
            WriteOp::Reject(r) => self.reject(tx, r, group),
            WriteOp::Presence(p) => {
                let (dev, name) = self.names.device(tx, &p.device)?;
                group.seen.entry(dev).or_insert_with(|| name.clone());
                let labels_changed = self.devices.presence(tx, dev, &name, p)?;
                // Rule scopes may test labels.
                if let (true, Some(a)) = (labels_changed, self.alerts.as_mut()) {
                    a.engine.invalidate_scope(&name);
                }
                Ok(())
            }
            WriteOp::Sync(w) => {
                group.syncs.push(w);
                Ok(())
            }
            WriteOp::Rules { rules, routing } => {
                let now = now_ms();
                let out = &mut group.transitions;
                match self.alerts.as_mut() {
                    Some(a) => a.replace(tx, rules, routing, now, out),
                    None => {
                        let mut a = Alerts::load(tx, rules.clone(), routing.clone(), now, out)?;
                        a.replace(tx, rules, routing, now, out)?;
                        self.alerts = Some(a);
                        Ok(())
                    }
                }
            }
            WriteOp::AckAlert {
                id,
                by,
                note,
                reply,
            } => {
                let seq = &mut self.next_alerts_seq;
                let outcome = alerts::ack(tx, seq, id, &by, note.as_deref(), now_ms())?;
                if let AckOutcome::Done(row) = &outcome {
                    group.alert_rows.push(row.clone());
                }
                group.ack_replies.push((reply, outcome));
                Ok(())
            }
            WriteOp::Delivered { id, outcome } => notify::delivered(tx, id, &outcome, now_ms()),
            WriteOp::NewCommand { command, reply } => {
                let made = commands::create(tx, &mut self.next_commands_seq, &command, now_ms())?;
                if made.1 {
                    group.command_rows.push(made.0.clone());
                }
                group.command_replies.push((reply, made));
                Ok(())
            }
            WriteOp::CommandUpdate(u) => {
                let seq = &mut self.next_commands_seq;
                if let Some(row) = commands::update(tx, seq, &u, now_ms())? {
                    if row.state.is_final() {
                        commands::trim_history(tx, self.config.max_commands)?;
                    }
                    group.command_rows.push(row);
                }
                Ok(())
            }
        }
    }

    /// A pack: its batch claimed (a duplicate stops here), its readings
    /// numbered and inserted, shown to the rules, kept for subscribers and
    /// offered to `latest`.
    fn batch(
        &mut self,
        tx: &Connection,
        b: IncomingBatch,
        group: &mut Group,
    ) -> Result<(), StoreError> {
        let (dev, dev_name) = self.names.device(tx, &b.device)?;
        // Even a duplicate is a message from the device.
        group.seen.entry(dev).or_insert_with(|| dev_name.clone());
        if let Some(id) = b.batch {
            group.acks.insert((dev, id.outbox), b.device.clone());
            if !self.outboxes.claim(tx, dev, id)? {
                self.stats.duplicate_batches.fetch_add(1, Relaxed);
                return Ok(());
            }
        }
        // Intern and number first, then insert many rows per statement.
        let mut rows = Vec::with_capacity(b.readings.len());
        for r in b.readings {
            let (metric, metric_name) = self.names.name(tx, &r.name)?;
            let unit = match &r.unit {
                Some(u) => Some(self.names.name(tx, u)?),
                None => None,
            };
            let seq = self.ring.take_seq();
            let ts = (r.time * 1000.0).round() as i64;
            rows.push((seq, ts, metric, metric_name, unit, r.value));
        }
        readings::insert(tx, dev, &rows)?;
        group.rows += rows.len();
        if let Some(alerts) = self.alerts.as_mut() {
            // Every stored reading goes through the rules, watched or not.
            let now = now_ms();
            let labels = &self.devices.state(tx, dev, &dev_name)?.labels;
            for (_, ts, _, metric_name, unit, value) in &rows {
                let value = match value {
                    Value::Num(x) => telltale_rules::ValueRef::Number(*x),
                    Value::Bool(b) => telltale_rules::ValueRef::Bool(*b),
                    Value::Str(s) => telltale_rules::ValueRef::Str(s),
                    Value::Data(_) => continue,
                };
                let reading = telltale_rules::Reading {
                    device: &dev_name,
                    metric: metric_name,
                    value,
                    unit: unit.as_ref().map(|u| &*u.1),
                    labels,
                    time: *ts,
                };
                alerts.engine.observe(&reading, now, &mut group.transitions);
            }
        }
        for (seq, ts, metric, metric_name, unit, value) in rows {
            if group.want_readings {
                group.readings.push(StoredReading {
                    seq,
                    ts_ms: ts,
                    device: dev_name.clone(),
                    metric: metric_name.clone(),
                    unit: unit.as_ref().map(|u| u.1.clone()),
                    value: value.clone(),
                });
            }
            group
                .latest
                .offer(dev, &dev_name, metric, metric_name, seq, ts, unit, value);
        }
        Ok(())
    }

    /// A refused payload. A refused batch is answered too: acknowledged as
    /// handled, so its sender moves on instead of resending it forever; a
    /// second copy is not kept again. A device that sends garbage is still
    /// seen (its topic named it).
    fn reject(&mut self, tx: &Connection, r: Reject, group: &mut Group) -> Result<(), StoreError> {
        if let Some(device) = &r.device {
            let (dev, name) = self.names.device(tx, device)?;
            group.seen.entry(dev).or_insert(name);
            if let Some(id) = r.batch {
                group.acks.insert((dev, id.outbox), device.clone());
                if !self.outboxes.claim(tx, dev, id)? {
                    self.stats.duplicate_batches.fetch_add(1, Relaxed);
                    return Ok(());
                }
            }
        }
        let c = &self.config;
        group.last_reject = Some(rejects::insert(
            tx,
            &r,
            c.reject_payload_bytes,
            c.max_rejects,
        )?);
        self.stats.rejects.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Runs the alert timers, then writes the group's alert transitions (and
    /// the notifications they queue) and trims the alert history.
    fn flush_alerts(
        &mut self,
        tx: &Connection,
        group: &mut Group,
        now: i64,
    ) -> Result<(), StoreError> {
        let Some(alerts) = self.alerts.as_mut() else {
            return Ok(());
        };
        alerts.engine.tick(now, &mut group.transitions);
        let before = group.alert_rows.len();
        alerts.apply(
            tx,
            &group.transitions,
            now,
            &mut self.next_alerts_seq,
            &mut group.alert_rows,
        )?;
        self.stats
            .alert_transitions
            .fetch_add(group.transitions.len() as u64, Relaxed);
        if group.alert_rows.len() > before {
            alerts::trim_history(tx, self.config.max_alerts)?;
        }
        Ok(())
    }

    /// Forgets the caches and reads the sequences back, after a failed
    /// commit.
    fn reload(&mut self, conn: &Connection) -> Result<(), StoreError> {
        self.names.clear();
        self.outboxes.clear();
        self.devices.reload(conn)?;
        self.ring.reload(conn)?;
        self.latest = Latest::load(conn)?;
        self.next_alerts_seq = meta::seq(conn, meta::ALERTS_SEQ)? + 1;
        self.next_commands_seq = meta::seq(conn, meta::COMMANDS_SEQ)? + 1;
        if let Some(a) = self.alerts.as_mut() {
            // Back to what was committed: open alerts and timers as stored.
            a.reload(conn, now_ms())?;
        }
        Ok(())
    }
}
