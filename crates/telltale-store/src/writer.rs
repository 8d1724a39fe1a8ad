//! The one writer: a thread that owns the write connection, takes batches and
//! rejects from a queue, and commits them in groups (every
//! `commit_interval_ms` or `commit_max_rows`, whichever comes first).
//!
//! After each commit it sends the acks that became true and publishes the
//! committed readings to subscribers. A batch that is not committed is never
//! acknowledged, so a sender that waits for the ack loses nothing.
//!
//! Each group also keeps the read model of the state collections up to date,
//! at its end and in the same transaction, so the three collections never
//! disagree about what is committed:
//!
//! - **latest**: per (device, metric) the newest reading of the group (by
//!   time stamp, ties to the higher reading seq) is upserted once, and only
//!   over an older stored row: a late batch from an outbox flush cannot
//!   replace a newer value. Each row that changed takes the next latest seq.
//! - **devices**: every device that sent anything in the group (readings,
//!   a reject, a status) gets `last_seen` = commit time. Its devices seq moves
//!   (the device "changes") when it is new, when its presence, agent or
//!   labels changed, or when the `last_seen` watchers last saw is more than
//!   [`SEEN_EVENT_MS`] old. So a device reporting every second makes about
//!   one devices event per 10 s, not one per commit, while `last_seen` in the
//!   table (and in every list) stays exact to the commit.

use crate::alerts::{AckOutcome, Alerts, Delivery, Routing};
use crate::commands::{CommandUpdate, NewCommand};
use crate::config::StoreConfig;
use crate::reader::{AlertRow, CommandRow, DeviceRow, LatestRow, StoredReading};
use crate::schema::{self, Kind};
use crate::{now_ms, StoreError};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use rustc_hash::FxHashMap as HashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;
use telltale_wire::decode::{Reading, Value};
use telltale_wire::BatchId;
use tokio::sync::{broadcast, mpsc, oneshot};

/// A decoded pack from one device, ready to store.
#[derive(Debug)]
pub struct IncomingBatch {
    /// Device id (from the topic, already checked).
    pub device: String,
    /// Batch identity, when the sender gave one: makes the write idempotent.
    pub batch: Option<BatchId>,
    /// The readings.
    pub readings: Vec<Reading>,
}

/// A payload that was refused, kept for inspection.
#[derive(Debug)]
pub struct Reject {
    /// When it arrived (ms since the epoch).
    pub at_ms: i64,
    /// The MQTT topic it came on.
    pub topic: String,
    /// The device id, when the topic named a valid one.
    pub device: Option<String>,
    /// Short machine-readable reason (`malformed_cbor`, `name_too_long`, ...).
    pub kind: &'static str,
    /// Human-readable reason.
    pub reason: String,
    /// The payload (the writer keeps only a prefix).
    pub payload: Vec<u8>,
    /// The batch identity, when the refused pack still carried one: the
    /// batch is acknowledged as handled.
    pub batch: Option<BatchId>,
}

/// A device's status message (its birth, a later status, or its Last Will),
/// for the devices collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    /// Device id (from the topic, already checked).
    pub device: String,
    /// When the hub received the status (ms since the epoch). The device's
    /// `last_seen` is the commit time like for any other message; this is
    /// kept for the writer's log line.
    pub at_ms: i64,
    /// Online (birth) or offline (Last Will, clean disconnect).
    pub online: bool,
    /// Agent name and version: replaces the stored one when `Some`, keeps it
    /// when `None`.
    pub agent: Option<String>,
    /// Labels: replace the stored set when `Some` (an empty map clears them),
    /// keep it when `None` (a Last Will carries none).
    pub labels: Option<BTreeMap<String, String>>,
}

/// What the writer is asked to do.
#[derive(Debug)]
pub enum WriteOp {
    Batch(IncomingBatch),
    Reject(Reject),
    /// A status message: updates the device's presence, agent and labels.
    Presence(Presence),
    /// Commit what is pending now, then answer with the last reading seq.
    Sync(oneshot::Sender<u64>),
    /// The alert rules in force from now on, and where their
    /// notifications go. The first one starts alert evaluation.
    Rules {
        rules: telltale_rules::RuleSet,
        routing: Routing,
    },
    /// A person acknowledges an alert; answered after the commit.
    AckAlert {
        id: u64,
        by: String,
        note: Option<String>,
        reply: oneshot::Sender<Result<AckOutcome, String>>,
    },
    /// How a delivery attempt of a queued notification went.
    Delivered {
        id: u64,
        outcome: Delivery,
    },
    /// A new device command; answered after the commit with the command
    /// and whether it is new (an idempotency key seen before is not).
    NewCommand {
        command: NewCommand,
        reply: CommandReply,
    },
    /// A command moves along its lifecycle.
    CommandUpdate(CommandUpdate),
}

/// "Batches of `outbox` up to `upto` from `device` are committed."
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckOut {
    pub device: String,
    pub outbox: u64,
    pub upto: u64,
}

/// What changed in the store, for watchers and rules: either readings
/// inserted by a group that has not committed yet (`committed` false; shared
/// early so that watchers need not wait for the group commit), or what a
/// commit made durable (`committed` true). Sent only when something
/// changed, and only filled while someone subscribes.
///
/// Readings shared before their commit have seqs the store has reserved
/// durably beforehand: if the hub dies before the commit, those seqs are
/// skipped after the restart, never given to other readings, so a watcher
/// that saw one can still resume from it. (Their readings are then lost
/// unless the sender sends them again: an agent does, as it had no ack.)
#[derive(Debug)]
pub struct Changes {
    /// Whether this is a commit. `false`: only `readings` and `last_seq` are
    /// meaningful, and the readings are not durable yet.
    pub committed: bool,
    /// The readings inserted (not yet committed) or committed and not sent
    /// before, in seq order (empty when nobody subscribes to readings).
    pub readings: Vec<StoredReading>,
    /// Last reading seq in the log after this change.
    pub last_seq: u64,
    /// The latest rows this commit changed, in latest seq order.
    pub latest: Vec<LatestRow>,
    /// Last latest seq after this commit.
    pub latest_seq: u64,
    /// The devices this commit changed, in devices seq order. A device
    /// changes when it is new, when its presence, agent or labels change, or
    /// when its `last_seen` has moved more than [`SEEN_EVENT_MS`] (10 s) past
    /// the value last published for it: a device reporting every second makes
    /// about one devices event per 10 s, not one per commit. The table's
    /// `last_seen` is still written at every commit it had a message in.
    pub devices: Vec<DeviceRow>,
    /// Last devices seq after this commit.
    pub devices_seq: u64,
    /// The alerts this commit changed, in alerts seq order.
    pub alerts: Vec<AlertRow>,
    /// Last alerts seq after this commit.
    pub alerts_seq: u64,
    /// The commands this commit changed, in commands seq order.
    pub commands: Vec<CommandRow>,
    /// Last commands seq after this commit.
    pub commands_seq: u64,
}

/// Counters the writer keeps, read by benchmarks and metrics.
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Transactions committed.
    pub commits: AtomicU64,
    /// Readings committed.
    pub readings: AtomicU64,
    /// Batches skipped because they were stored before.
    pub duplicate_batches: AtomicU64,
    /// Rejects stored.
    pub rejects: AtomicU64,
    /// Readings deleted by retention.
    pub deleted: AtomicU64,
    /// Commits that failed (and were retried by their senders).
    pub failed_commits: AtomicU64,
    /// Total time spent in COMMIT, microseconds.
    pub commit_micros: AtomicU64,
    /// Last reading seq committed.
    pub last_seq: AtomicU64,
    /// Last latest seq committed.
    pub latest_seq: AtomicU64,
    /// Last devices seq committed.
    pub devices_seq: AtomicU64,
    /// Oldest reading seq held.
    pub oldest_seq: AtomicU64,
    /// Last alerts seq committed.
    pub alerts_seq: AtomicU64,
    /// Last commands seq committed.
    pub commands_seq: AtomicU64,
    /// Alert transitions written.
    pub alert_transitions: AtomicU64,
    /// When the last commit finished (ms since the epoch).
    pub last_commit_ms: AtomicI64,
}

/// See [`WriterHandle::readings_switch`].
#[derive(Debug, Clone)]
pub struct ReadingsSwitch(Arc<std::sync::atomic::AtomicBool>);

impl ReadingsSwitch {
    /// Turns [`Changes::readings`] on or off from the next group on.
    pub fn set(&self, on: bool) {
        self.0.store(on, Relaxed);
    }
}

/// The sending side of the writer's queue; cheap to clone.
#[derive(Debug, Clone)]
pub struct WriterHandle {
    tx: flume::Sender<WriteOp>,
    /// The store's epoch.
    pub epoch: Arc<str>,
    /// Counters.
    pub stats: Arc<StoreStats>,
    events: broadcast::Sender<Arc<Changes>>,
    /// Whether [`Changes::readings`] is wanted (someone watches readings).
    readings_wanted: Arc<std::sync::atomic::AtomicBool>,
}

impl WriterHandle {
    /// The switch that says whether subscribers need each committed
    /// reading in [`Changes::readings`] (on at start). Off, the list stays
    /// empty (its seqs are in `last_seq`), which spares building a row per
    /// reading at full rate. Holding it does not keep the writer alive.
    pub fn readings_switch(&self) -> ReadingsSwitch {
        ReadingsSwitch(self.readings_wanted.clone())
    }

    /// Queues an op, waiting while the queue is full.
    pub async fn send(&self, op: WriteOp) -> Result<(), StoreError> {
        self.tx
            .send_async(op)
            .await
            .map_err(|_| StoreError::WriterGone)
    }

    /// Queues an op from a thread that may block.
    pub fn send_blocking(&self, op: WriteOp) -> Result<(), StoreError> {
        self.tx.send(op).map_err(|_| StoreError::WriterGone)
    }

    /// Commits what is queued and returns the last reading seq.
    pub async fn sync(&self) -> Result<u64, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(WriteOp::Sync(tx)).await?;
        rx.await.map_err(|_| StoreError::WriterGone)
    }

    /// Moves a command along its lifecycle and has the group commit at once
    /// (a command's client waits on each step), from a thread that may
    /// block.
    pub fn update_command_blocking(&self, u: CommandUpdate) -> Result<(), StoreError> {
        self.send_blocking(WriteOp::CommandUpdate(u))?;
        // A sync nobody waits for: it only ends the group now.
        let (tx, _) = oneshot::channel();
        self.send_blocking(WriteOp::Sync(tx))
    }

    /// The same from a task.
    pub async fn update_command(&self, u: CommandUpdate) -> Result<(), StoreError> {
        self.send(WriteOp::CommandUpdate(u)).await?;
        let (tx, _) = oneshot::channel();
        self.send(WriteOp::Sync(tx)).await
    }

    /// Creates a command (or finds the one its idempotency key made) and
    /// commits at once; `true` if it is new.
    pub async fn new_command(&self, command: NewCommand) -> Result<(CommandRow, bool), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(WriteOp::NewCommand { command, reply }).await?;
        self.sync().await?;
        answer
            .await
            .map_err(|_| StoreError::WriterGone)?
            .map_err(StoreError::Commit)
    }

    /// Acknowledges alert `id` and commits at once.
    pub async fn ack_alert(
        &self,
        id: u64,
        by: &str,
        note: Option<&str>,
    ) -> Result<AckOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(WriteOp::AckAlert {
            id,
            by: by.to_owned(),
            note: note.map(str::to_owned),
            reply,
        })
        .await?;
        self.sync().await?;
        answer
            .await
            .map_err(|_| StoreError::WriterGone)?
            .map_err(StoreError::Commit)
    }

    /// Changes (readings, latest rows, devices) as they happen. A
    /// receiver that lags misses commits (`RecvError::Lagged`) and must read
    /// them from the store.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Changes>> {
        self.events.subscribe()
    }

    /// Whether the writer thread still takes work (it ends only at
    /// shutdown or on a fatal error). Costs no write.
    pub fn is_alive(&self) -> bool {
        !self.tx.is_disconnected()
    }

    /// Batches waiting in the queue.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }
}

/// Opens the hub database and starts the writer thread. Acks are sent on
/// `acks` after each commit. The thread ends, after a last commit, once every
/// [`WriterHandle`] is dropped; join the returned handle to wait for that.
pub fn start(
    path: &Path,
    config: StoreConfig,
    acks: mpsc::UnboundedSender<Vec<AckOut>>,
) -> Result<(WriterHandle, std::thread::JoinHandle<()>), StoreError> {
    let conn = schema::open(path, Kind::Hub, config.synchronous)?;
    let epoch: Arc<str> = schema::epoch(&conn)?.into();
    let reserve = config.reserve_span();
    let (next_seq, reserved, gaps) = skip_reserved(&conn, reserve)?;
    let next_latest_seq = schema::meta_seq(&conn, "latest_seq")? + 1;
    let next_devices_seq = schema::meta_seq(&conn, "devices_seq")? + 1;
    let next_alerts_seq = schema::meta_seq(&conn, "alerts_seq")? + 1;
    let next_commands_seq = schema::meta_seq(&conn, "commands_seq")? + 1;
    let oldest: Option<u64> = conn.query_row("SELECT min(seq) FROM readings", [], |r| r.get(0))?;
    let stats = Arc::new(StoreStats::default());
    stats.last_seq.store(next_seq - 1, Relaxed);
    stats.latest_seq.store(next_latest_seq - 1, Relaxed);
    stats.devices_seq.store(next_devices_seq - 1, Relaxed);
    stats.alerts_seq.store(next_alerts_seq - 1, Relaxed);
    stats.commands_seq.store(next_commands_seq - 1, Relaxed);
    stats.oldest_seq.store(oldest.unwrap_or(next_seq), Relaxed);
    let (tx, rx) = flume::bounded(config.queue_batches.max(1));
    let (events, _) = broadcast::channel(1024);
    let readings_wanted = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = Writer {
        conn,
        state: State {
            config,
            next_seq,
            next_latest_seq,
            next_devices_seq,
            oldest_seq: oldest.unwrap_or(next_seq),
            reserved,
            gaps: gaps
                .into_iter()
                .filter(|g| oldest.is_some_and(|o| g.0 >= o))
                .collect(),
            gaps_dirty: true,
            alerts: None,
            next_alerts_seq,
            next_commands_seq,
            devices: HashMap::default(),
            presence: HashMap::default(),
            names: HashMap::default(),
            outboxes: HashMap::default(),
            stats: stats.clone(),
        },
        acks,
        events: events.clone(),
        readings_wanted: readings_wanted.clone(),
    };
    let join = std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || writer.run(rx))
        .map_err(|e| StoreError::Sqlite(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
    Ok((
        WriterHandle {
            tx,
            epoch,
            stats,
            events,
            readings_wanted,
        },
        join,
    ))
}

struct Writer {
    conn: Connection,
    state: State,
    acks: mpsc::UnboundedSender<Vec<AckOut>>,
    events: broadcast::Sender<Arc<Changes>>,
    readings_wanted: Arc<std::sync::atomic::AtomicBool>,
}

/// What the writer remembers between commits; all of it can be rebuilt from
/// the database, and is after a failed commit.
struct State {
    config: StoreConfig,
    /// Seq the next reading gets.
    next_seq: u64,
    /// Seq the next change of a latest row gets (`meta.latest_seq` + 1).
    next_latest_seq: u64,
    /// Seq the next change of a device gets (`meta.devices_seq` + 1).
    next_devices_seq: u64,
    /// Oldest seq still in the log.
    oldest_seq: u64,
    /// Reading seqs up to here are reserved by a committed `meta` row: they
    /// may be shown to watchers before their group commits.
    reserved: u64,
    /// Seqs never used (start, length), oldest first, all at or above
    /// `oldest_seq`: left by a crash or a failed commit after readings were
    /// shown early. Retention counts rows without them.
    gaps: Vec<(u64, u64)>,
    /// `gaps` changed since the last commit.
    gaps_dirty: bool,
    /// Alert rules and their engine, once the hub has sent rules.
    alerts: Option<Alerts>,
    /// Seq the next change of an alert gets (`meta.alerts_seq` + 1).
    next_alerts_seq: u64,
    /// Seq the next change of a command gets (`meta.commands_seq` + 1).
    next_commands_seq: u64,
    /// Interned device names: name → (id, shared name).
    devices: HashMap<String, (i64, Arc<str>)>,
    /// The devices collection's view of each device met so far, by id,
    /// loaded on first use (one query per device, not per message).
    presence: HashMap<i64, DeviceState>,
    /// Interned metric and unit names.
    names: HashMap<String, (i64, Arc<str>)>,
    /// Idempotency state per (device id, outbox).
    outboxes: HashMap<(i64, u64), OutboxState>,
    stats: Arc<StoreStats>,
}

/// What the hub knows of one sender outbox.
#[derive(Debug, Default)]
struct OutboxState {
    /// Every batch up to here is committed (or will never come).
    upto: u64,
    /// Committed batches above `upto` (a gap sits below the smallest).
    above: BTreeSet<u64>,
    /// Changed in the current group.
    dirty: bool,
}

/// A device as the devices collection sees it (the writer's copy of its row).
#[derive(Debug)]
struct DeviceState {
    /// Device id.
    name: Arc<str>,
    /// Its seq in the devices collection (0: not yet in it).
    seq: u64,
    /// Presence from its last status; `None` when it never sent one.
    online: Option<bool>,
    /// Hub time of the last commit with a message from it.
    last_seen: Option<i64>,
    /// Hub time of the first commit with a message from it.
    first_seen: Option<i64>,
    /// Agent from its last status that named one.
    agent: Option<String>,
    /// Labels from its last status that carried them.
    labels: BTreeMap<String, String>,
    /// `last_seen` as of the device's last change of seq: what watchers saw.
    evented_seen: Option<i64>,
    /// Presence, agent or labels changed in the current group.
    changed: bool,
}

impl DeviceState {
    fn row(&self) -> DeviceRow {
        DeviceRow {
            seq: self.seq,
            id: self.name.clone(),
            online: self.online,
            last_seen_ms: self.last_seen,
            first_seen_ms: self.first_seen,
            agent: self.agent.clone(),
            labels: self.labels.clone(),
        }
    }
}

/// The newest reading of one (device, metric) in the current group.
struct Candidate {
    ts: i64,
    /// Its seq in the readings collection.
    reading: u64,
    device: Arc<str>,
    metric: Arc<str>,
    unit: Option<(i64, Arc<str>)>,
    value: Value,
}

/// A device's `last_seen` alone makes it change (a devices event) only once
/// it has moved this far (ms) from the value watchers last saw: a device
/// reporting every second produces about one devices event per 10 s.
pub const SEEN_EVENT_MS: i64 = 10_000;

/// How long the writer sleeps when its queue is empty within a group.
const POLL: std::time::Duration = std::time::Duration::from_millis(2);

/// Most out-of-order batches remembered per outbox before the gap below them
/// is given up as lost.
const MAX_ABOVE: usize = 10_000;

/// Where a new command's creator waits: the command and whether it is new.
type CommandReply = oneshot::Sender<Result<(CommandRow, bool), String>>;

/// One group commit in the making.
#[derive(Default)]
struct Group {
    rows: usize,
    acks: HashMap<(i64, u64), String>,
    readings: Vec<StoredReading>,
    syncs: Vec<oneshot::Sender<u64>>,
    /// Devices that sent anything in this group: id → name.
    seen: HashMap<i64, Arc<str>>,
    /// The newest reading per (device id, metric id) in this group.
    latest: HashMap<(i64, i64), Candidate>,
    /// Latest rows changed at the end of the group (only when someone
    /// subscribes).
    latest_rows: Vec<LatestRow>,
    /// Devices changed at the end of the group (only when someone subscribes).
    device_rows: Vec<DeviceRow>,
    /// Whether each reading goes into `readings` for subscribers.
    want_readings: bool,
    /// Last seq of the readings shown before the commit (0: none).
    shown: u64,
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

impl Writer {
    fn run(mut self, rx: flume::Receiver<WriteOp>) {
        let interval = self.state.config.commit_interval();
        let idle = std::time::Duration::from_secs(5);
        loop {
            // Alert timers (for, no data, repeats) wake the writer too.
            let wait = match self.state.alerts.as_ref().and_then(|a| a.wait_ms(now_ms())) {
                Some(ms) => idle.min(std::time::Duration::from_millis(ms as u64)),
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
                Err(flume::RecvTimeoutError::Timeout) => match self.state.over_bounds(&self.conn) {
                    Ok(true) => None,
                    Ok(false) => continue,
                    Err(e) => {
                        tracing::error!(error = %e, "store retention check failed");
                        continue;
                    }
                },
                Err(flume::RecvTimeoutError::Disconnected) => break,
            };
            let deadline = Instant::now() + interval;
            let visible = self.state.config.visible_interval();
            let mut show_at = Instant::now() + visible;
            let want_events = self.events.receiver_count() > 0;
            let want_readings = want_events && self.readings_wanted.load(Relaxed);
            let mut group = Group {
                want_readings,
                ..Group::default()
            };
            let mut closing = false;
            let mut reserve = self.state.reserved;
            let result = (|| -> Result<(), StoreError> {
                let tx = self
                    .conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)?;
                if let Some(op) = first {
                    self.state.apply(&tx, op, &mut group)?;
                    // Within a group, poll rather than park: a parked writer
                    // makes every send a wake-up (a futex call per message),
                    // which costs more than the inserts at small batch sizes.
                    while group.rows < self.state.config.commit_max_rows && group.syncs.is_empty() {
                        match rx.try_recv() {
                            Ok(op) => {
                                self.state.apply(&tx, op, &mut group)?;
                                if group.readings.len() >= SHOW_ROWS {
                                    show(&self.events, &self.state, &mut group);
                                }
                            }
                            Err(flume::TryRecvError::Empty) => {
                                let now = Instant::now();
                                if now >= deadline {
                                    break;
                                }
                                if !visible.is_zero() && now >= show_at {
                                    show(&self.events, &self.state, &mut group);
                                    show_at = now + visible;
                                }
                                std::thread::sleep(POLL.min(deadline - now));
                            }
                            Err(flume::TryRecvError::Disconnected) => {
                                closing = true;
                                break;
                            }
                        }
                    }
                }
                let now = now_ms();
                self.state.flush_alerts(&tx, &mut group, now)?;
                self.state.flush_latest(&tx, &mut group, want_events)?;
                self.state
                    .flush_devices(&tx, &mut group, want_events, now)?;
                self.state.retention(&tx, group.rows as u64)?;
                self.state.flush_outboxes(&tx)?;
                schema::meta_set(&tx, "readings_seq", &(self.state.next_seq - 1).to_string())?;
                // Reserve the seqs the next group may show before its commit
                // (none after the last commit: a clean stop leaves no gap).
                reserve = if closing {
                    self.state.next_seq - 1
                } else {
                    self.state.next_seq - 1 + self.state.config.reserve_span()
                };
                schema::meta_set(&tx, "readings_reserved", &reserve.to_string())?;
                if self.state.gaps_dirty {
                    schema::meta_set(&tx, "readings_gaps", &gaps_text(&self.state.gaps))?;
                }
                let t = Instant::now();
                tx.commit()?;
                let s = &self.state.stats;
                s.commit_micros
                    .fetch_add(t.elapsed().as_micros() as u64, Relaxed);
                Ok(())
            })();
            let s = self.state.stats.clone();
            match result {
                Ok(()) => {
                    self.state.reserved = reserve;
                    self.state.gaps_dirty = false;
                    s.commits.fetch_add(1, Relaxed);
                    s.readings.fetch_add(group.rows as u64, Relaxed);
                    s.last_seq.store(self.state.next_seq - 1, Relaxed);
                    s.latest_seq.store(self.state.next_latest_seq - 1, Relaxed);
                    s.devices_seq
                        .store(self.state.next_devices_seq - 1, Relaxed);
                    s.oldest_seq.store(self.state.oldest_seq, Relaxed);
                    s.alerts_seq.store(self.state.next_alerts_seq - 1, Relaxed);
                    s.commands_seq
                        .store(self.state.next_commands_seq - 1, Relaxed);
                    s.last_commit_ms.store(now_ms(), Relaxed);
                    if !group.acks.is_empty() {
                        let acks = group
                            .acks
                            .into_iter()
                            .map(|((dev, outbox), device)| AckOut {
                                upto: self
                                    .state
                                    .outboxes
                                    .get(&(dev, outbox))
                                    .map_or(0, |o| o.upto),
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
                            && group.shown == 0)
                    {
                        let _ = self.events.send(Arc::new(Changes {
                            committed: true,
                            readings: group.readings,
                            last_seq: self.state.next_seq - 1,
                            latest: group.latest_rows,
                            latest_seq: self.state.next_latest_seq - 1,
                            devices: group.device_rows,
                            devices_seq: self.state.next_devices_seq - 1,
                            alerts: group.alert_rows,
                            alerts_seq: self.state.next_alerts_seq - 1,
                            commands: group.command_rows,
                            commands_seq: self.state.next_commands_seq - 1,
                        }));
                    }
                    for w in group.syncs {
                        let _ = w.send(self.state.next_seq - 1);
                    }
                    for (w, outcome) in group.ack_replies {
                        let _ = w.send(Ok(outcome));
                    }
                    for (w, made) in group.command_replies {
                        let _ = w.send(Ok(made));
                    }
                }
                Err(e) => {
                    // Nothing of this group is acknowledged: senders with an
                    // outbox send it again. Rebuild the caches from the database.
                    s.failed_commits.fetch_add(1, Relaxed);
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
                    if group.shown >= self.state.next_seq {
                        let st = &mut self.state;
                        st.gaps.push((st.next_seq, group.shown + 1 - st.next_seq));
                        st.gaps_dirty = true;
                        st.next_seq = group.shown + 1;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(500));
                }
            }
            if closing {
                break;
            }
        }
        // A clean stop leaves no reserved seqs behind (no gap at the next start).
        if self.state.reserved >= self.state.next_seq {
            let last = (self.state.next_seq - 1).to_string();
            if let Err(e) = schema::meta_set(&self.conn, "readings_reserved", &last) {
                tracing::error!(error = %e, "store could not release its reserved seqs");
            }
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
}

/// Shares the group's readings so far with subscribers before the commit,
/// if their seqs are reserved.
fn show(events: &broadcast::Sender<Arc<Changes>>, state: &State, group: &mut Group) {
    let Some(last) = group.readings.last().map(|r| r.seq) else {
        return;
    };
    if last > state.reserved {
        return;
    }
    group.shown = last;
    let _ = events.send(Arc::new(Changes {
        committed: false,
        readings: std::mem::take(&mut group.readings),
        last_seq: last,
        latest: Vec::new(),
        latest_seq: state.stats.latest_seq.load(Relaxed),
        devices: Vec::new(),
        devices_seq: state.stats.devices_seq.load(Relaxed),
        alerts: Vec::new(),
        alerts_seq: state.stats.alerts_seq.load(Relaxed),
        commands: Vec::new(),
        commands_seq: state.stats.commands_seq.load(Relaxed),
    }));
}

/// Readings shown at once before a commit, at most.
const SHOW_ROWS: usize = 1024;

/// Seqs never used: (first, count).
type Gap = (u64, u64);

/// Where the readings sequence goes on at start: after the last committed
/// seq, or after the seqs reserved by the last commit when the hub stopped
/// without its final commit (some may have been shown to watchers). Then
/// reserves `reserve` seqs for the first group. Returns the next seq, the
/// seqs reserved up to, and the gaps in the log.
fn skip_reserved(conn: &Connection, reserve: u64) -> Result<(u64, u64, Vec<Gap>), StoreError> {
    let mut last = schema::meta_seq(conn, "readings_seq")?;
    let reserved = schema::meta_seq(conn, "readings_reserved")?;
    let mut gaps = parse_gaps(&schema::meta_get(conn, "readings_gaps")?.unwrap_or_default());
    let tx = conn.unchecked_transaction()?;
    if reserved > last {
        tracing::warn!(
            from = last + 1,
            to = reserved,
            "the hub stopped without its last commit: reading seqs it may have shown are skipped"
        );
        gaps.push((last + 1, reserved - last));
        last = reserved;
        schema::meta_set(&tx, "readings_seq", &last.to_string())?;
        schema::meta_set(&tx, "readings_gaps", &gaps_text(&gaps))?;
    }
    schema::meta_set(&tx, "readings_reserved", &(last + reserve).to_string())?;
    tx.commit()?;
    Ok((last + 1, last + reserve, gaps))
}

fn gaps_text(gaps: &[(u64, u64)]) -> String {
    gaps.iter()
        .map(|(s, n)| format!("{s}:{n}"))
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) fn parse_gaps(text: &str) -> Vec<(u64, u64)> {
    text.split(',')
        .filter_map(|g| {
            let (s, n) = g.split_once(':')?;
            Some((s.parse().ok()?, n.parse().ok()?))
        })
        .collect()
}

fn value_sql(v: &Value) -> ToSqlOutput<'_> {
    ToSqlOutput::Borrowed(match v {
        Value::Num(x) => ValueRef::Real(*x),
        Value::Bool(b) => ValueRef::Integer(i64::from(*b)),
        Value::Str(s) => ValueRef::Text(s.as_bytes()),
        Value::Data(d) => ValueRef::Blob(d),
    })
}

impl State {
    fn apply(&mut self, tx: &Connection, op: WriteOp, group: &mut Group) -> Result<(), StoreError> {
        match op {
            WriteOp::Batch(b) => self.batch(tx, b, group),
            WriteOp::Reject(r) => self.reject(tx, r, group),
            WriteOp::Presence(p) => self.presence(tx, p, group),
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
                let outcome = crate::alerts::ack(
                    tx,
                    &mut self.next_alerts_seq,
                    id,
                    &by,
                    note.as_deref(),
                    now_ms(),
                )?;
                if let AckOutcome::Done(row) = &outcome {
                    group.alert_rows.push(row.clone());
                }
                group.ack_replies.push((reply, outcome));
                Ok(())
            }
            WriteOp::Delivered { id, outcome } => {
                crate::alerts::delivered(tx, id, &outcome, now_ms())
            }
            WriteOp::NewCommand { command, reply } => {
                let made =
                    crate::commands::create(tx, &mut self.next_commands_seq, &command, now_ms())?;
                if made.1 {
                    group.command_rows.push(made.0.clone());
                }
                group.command_replies.push((reply, made));
                Ok(())
            }
            WriteOp::CommandUpdate(u) => {
                if let Some(row) =
                    crate::commands::update(tx, &mut self.next_commands_seq, &u, now_ms())?
                {
                    if crate::commands::CommandState::parse(&row.state)
                        .is_some_and(|s| s.is_final())
                    {
                        crate::commands::trim_history(tx, self.config.max_commands)?;
                    }
                    group.command_rows.push(row);
                }
                Ok(())
            }
        }
    }

    fn batch(
        &mut self,
        tx: &Connection,
        b: IncomingBatch,
        group: &mut Group,
    ) -> Result<(), StoreError> {
        let (dev, dev_name) = intern(tx, &mut self.devices, "devices", &b.device)?;
        // Even a duplicate is a message from the device.
        group.seen.entry(dev).or_insert_with(|| dev_name.clone());
        if let Some(id) = b.batch {
            if !self.claim(tx, dev, &b.device, id, group)? {
                self.stats.duplicate_batches.fetch_add(1, Relaxed);
                return Ok(());
            }
        }
        // Intern and number first, then insert many rows per statement:
        // SQLite's per-statement cost dominates at small rows.
        let mut rows = Vec::with_capacity(b.readings.len());
        for r in b.readings {
            let (metric, metric_name) = intern(tx, &mut self.names, "names", &r.name)?;
            let unit = match &r.unit {
                Some(u) => Some(intern(tx, &mut self.names, "names", u)?),
                None => None,
            };
            let seq = self.next_seq;
            self.next_seq += 1;
            let ts = (r.time * 1000.0).round() as i64;
            rows.push((seq, ts, metric, metric_name, unit, r.value));
        }
        insert_rows(tx, dev, &rows)?;
        group.rows += rows.len();
        if let Some(alerts) = self.alerts.as_mut() {
            // Every stored reading goes through the rules, watched or not.
            let now = now_ms();
            let labels = &device_state(&mut self.presence, tx, dev, &dev_name)?.labels;
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
            // The group's newest reading of this (device, metric): later in
            // the group wins a tie, as it has the higher seq. An existing
            // candidate is updated in place (no name clones per reading).
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
            match group.latest.entry((dev, metric)) {
                std::collections::hash_map::Entry::Occupied(mut e) => {
                    let c = e.get_mut();
                    if ts >= c.ts {
                        c.ts = ts;
                        c.reading = seq;
                        c.value = value;
                        if c.unit.as_ref().map(|u| u.0) != unit.as_ref().map(|u| u.0) {
                            c.unit = unit;
                        }
                    }
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(Candidate {
                        ts,
                        reading: seq,
                        device: dev_name.clone(),
                        metric: metric_name,
                        unit,
                        value,
                    });
                }
            }
        }
        Ok(())
    }

    /// Records that batch `id` of `device` is stored by this group and owes
    /// an ack; false if it was stored before (a duplicate).
    fn claim(
        &mut self,
        tx: &Connection,
        dev: i64,
        device: &str,
        id: BatchId,
        group: &mut Group,
    ) -> Result<bool, StoreError> {
        let st = self.outbox(tx, dev, id.outbox)?;
        if id.low > st.upto + 1 {
            st.upto = id.low - 1;
            st.dirty = true;
        }
        group.acks.insert((dev, id.outbox), device.to_owned());
        if id.seq <= st.upto || st.above.contains(&id.seq) {
            return Ok(false);
        }
        st.above.insert(id.seq);
        st.dirty = true;
        tx.prepare_cached("INSERT INTO batches(device, outbox, seq) VALUES (?1, ?2, ?3)")?
            .execute(params![dev, id.outbox as i64, id.seq as i64])?;
        Ok(true)
    }

    /// The idempotency state of one outbox, loaded on first use.
    fn outbox(
        &mut self,
        tx: &Connection,
        dev: i64,
        outbox: u64,
    ) -> Result<&mut OutboxState, StoreError> {
        use std::collections::hash_map::Entry;
        match self.outboxes.entry((dev, outbox)) {
            Entry::Occupied(e) => Ok(e.into_mut()),
            Entry::Vacant(e) => {
                let upto: Option<i64> = tx
                    .prepare_cached("SELECT upto FROM outboxes WHERE device = ?1 AND outbox = ?2")?
                    .query_row(params![dev, outbox as i64], |r| r.get(0))
                    .optional()?;
                let mut st = OutboxState {
                    upto: upto.unwrap_or(0) as u64,
                    ..OutboxState::default()
                };
                let mut q = tx.prepare_cached(
                    "SELECT seq FROM batches WHERE device = ?1 AND outbox = ?2 AND seq > ?3",
                )?;
                let rows = q.query_map(params![dev, outbox as i64, st.upto as i64], |r| {
                    r.get::<_, i64>(0)
                })?;
                for seq in rows {
                    st.above.insert(seq? as u64);
                }
                Ok(e.insert(st))
            }
        }
    }

    /// Moves each changed outbox's `upto` over the batches now contiguous
    /// and writes it down.
    fn flush_outboxes(&mut self, tx: &Connection) -> Result<(), StoreError> {
        let now = now_ms();
        for (&(dev, outbox), st) in self.outboxes.iter_mut().filter(|(_, s)| s.dirty) {
            st.above.retain(|&s| s > st.upto);
            while st.above.first() == Some(&(st.upto + 1)) {
                st.above.pop_first();
                st.upto += 1;
            }
            if st.above.len() > MAX_ABOVE {
                let first = st.above.first().copied().unwrap_or(st.upto + 1);
                tracing::warn!(
                    device = dev,
                    outbox,
                    from = st.upto + 1,
                    to = first - 1,
                    "giving up on a gap in a sender's batches"
                );
                st.upto = first - 1;
                while st.above.first() == Some(&(st.upto + 1)) {
                    st.above.pop_first();
                    st.upto += 1;
                }
            }
            tx.prepare_cached(
                "INSERT INTO outboxes(device, outbox, upto, updated) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(device, outbox) DO UPDATE SET upto = excluded.upto, updated = excluded.updated",
            )?
            .execute(params![dev, outbox as i64, st.upto as i64, now])?;
            tx.prepare_cached(
                "DELETE FROM batches WHERE device = ?1 AND outbox = ?2 AND seq <= ?3",
            )?
            .execute(params![dev, outbox as i64, st.upto as i64])?;
            st.dirty = false;
        }
        Ok(())
    }

    fn reject(&mut self, tx: &Connection, r: Reject, group: &mut Group) -> Result<(), StoreError> {
        // A refused batch is answered too: acknowledged as handled, so its
        // sender moves on instead of resending it forever. A second copy is
        // not kept again.
        // A device that sends garbage is still seen (its topic named it).
        if let Some(device) = &r.device {
            let (dev, name) = intern(tx, &mut self.devices, "devices", device)?;
            group.seen.entry(dev).or_insert(name);
            if let Some(id) = r.batch {
                if !self.claim(tx, dev, device, id, group)? {
                    self.stats.duplicate_batches.fetch_add(1, Relaxed);
                    return Ok(());
                }
            }
        }
        let keep = r.payload.len().min(self.config.reject_payload_bytes);
        tx.prepare_cached(
            "INSERT INTO rejects(at, topic, device, kind, reason, size, payload)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            r.at_ms,
            r.topic,
            r.device,
            r.kind,
            r.reason,
            r.payload.len() as i64,
            &r.payload[..keep]
        ])?;
        let id = tx.last_insert_rowid();
        tx.prepare_cached("DELETE FROM rejects WHERE id <= ?1")?
            .execute([id - self.config.max_rejects as i64])?;
        tx.prepare_cached(
            "INSERT INTO reject_counts(kind, n) VALUES (?1, 1)
             ON CONFLICT(kind) DO UPDATE SET n = n + 1",
        )?
        .execute([r.kind])?;
        self.stats.rejects.fetch_add(1, Relaxed);
        Ok(())
    }

    /// A status message: presence, and agent and labels when it carries
    /// them. The devices seq moves at the end of the group.
    fn presence(
        &mut self,
        tx: &Connection,
        p: Presence,
        group: &mut Group,
    ) -> Result<(), StoreError> {
        let (dev, name) = intern(tx, &mut self.devices, "devices", &p.device)?;
        group.seen.entry(dev).or_insert_with(|| name.clone());
        let st = device_state(&mut self.presence, tx, dev, &name)?;
        if st.online != Some(p.online) {
            st.online = Some(p.online);
            st.changed = true;
        }
        if let Some(agent) = p.agent {
            if st.agent.as_ref() != Some(&agent) {
                st.agent = Some(agent);
                st.changed = true;
            }
        }
        if let Some(labels) = p.labels {
            if st.labels != labels {
                st.labels = labels;
                st.changed = true;
                // Rule scopes may test labels.
                if let Some(a) = self.alerts.as_mut() {
                    a.engine.invalidate_scope(&p.device);
                }
            }
        }
        tracing::debug!(
            device = p.device,
            online = p.online,
            at_ms = p.at_ms,
            changed = st.changed,
            "presence"
        );
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
            crate::alerts::trim_history(tx, self.config.max_alerts)?;
        }
        Ok(())
    }

    /// Writes the group's newest reading per (device, metric) into `latest`,
    /// one upsert per key, each only over an older row (by time stamp; a tie
    /// goes to the new reading, whose seq is higher). A row that changed
    /// takes the next latest seq.
    fn flush_latest(
        &mut self,
        tx: &Connection,
        group: &mut Group,
        want_events: bool,
    ) -> Result<(), StoreError> {
        if group.latest.is_empty() {
            return Ok(());
        }
        let mut keys: Vec<_> = group.latest.drain().collect();
        // Latest seqs follow reading seqs: deterministic, and the order a
        // replay of the log would give.
        keys.sort_unstable_by_key(|(_, c)| c.reading);
        let mut up = tx.prepare_cached(
            "INSERT INTO latest(device, metric, seq, ts, unit, v, reading)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(device, metric) DO UPDATE SET
                 seq = excluded.seq, ts = excluded.ts, unit = excluded.unit,
                 v = excluded.v, reading = excluded.reading
             WHERE excluded.ts >= latest.ts",
        )?;
        let before = self.next_latest_seq;
        for ((dev, metric), c) in keys {
            let seq = self.next_latest_seq;
            let changed = up.execute(params![
                dev,
                metric,
                seq as i64,
                c.ts,
                c.unit.as_ref().map(|u| u.0),
                value_sql(&c.value),
                c.reading as i64
            ])?;
            if changed == 0 {
                continue;
            }
            self.next_latest_seq += 1;
            if want_events {
                group.latest_rows.push(LatestRow {
                    seq,
                    device: c.device,
                    metric: c.metric,
                    unit: c.unit.map(|u| u.1),
                    value: c.value,
                    ts_ms: c.ts,
                    reading_seq: c.reading,
                });
            }
        }
        if self.next_latest_seq != before {
            schema::meta_set(tx, "latest_seq", &(self.next_latest_seq - 1).to_string())?;
        }
        Ok(())
    }

    /// Stamps every device seen in the group with `now` and moves the devices
    /// seq of those that changed: new, presence/agent/labels changed, or a
    /// `last_seen` more than [`SEEN_EVENT_MS`] past what watchers last saw.
    /// One statement per device seen, never per message.
    fn flush_devices(
        &mut self,
        tx: &Connection,
        group: &mut Group,
        want_events: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        if group.seen.is_empty() {
            return Ok(());
        }
        let mut seen: Vec<_> = group.seen.drain().collect();
        seen.sort_unstable_by_key(|(dev, _)| *dev);
        let before = self.next_devices_seq;
        for (dev, name) in seen {
            let st = device_state(&mut self.presence, tx, dev, &name)?;
            st.last_seen = Some(now);
            if st.first_seen.is_none() {
                st.first_seen = Some(now);
                st.changed = true;
            }
            // A hub clock that went back counts as stale too.
            let stale = st
                .evented_seen
                .is_none_or(|e| now - e > SEEN_EVENT_MS || e > now);
            if !(st.changed || stale || st.seq == 0) {
                tx.prepare_cached("UPDATE devices SET last_seen = ?2 WHERE id = ?1")?
                    .execute(params![dev, now])?;
                continue;
            }
            st.seq = self.next_devices_seq;
            self.next_devices_seq += 1;
            st.evented_seen = Some(now);
            st.changed = false;
            let labels = if st.labels.is_empty() {
                None
            } else {
                // A map of strings always serializes.
                serde_json::to_string(&st.labels).ok()
            };
            tx.prepare_cached(
                "UPDATE devices SET seq = ?2, online = ?3, last_seen = ?4, first_seen = ?5,
                     agent = ?6, labels = ?7
                 WHERE id = ?1",
            )?
            .execute(params![
                dev,
                st.seq as i64,
                st.online,
                st.last_seen,
                st.first_seen,
                st.agent,
                labels
            ])?;
            if want_events {
                group.device_rows.push(st.row());
            }
        }
        if self.next_devices_seq != before {
            schema::meta_set(tx, "devices_seq", &(self.next_devices_seq - 1).to_string())?;
        }
        Ok(())
    }

    /// Deletes the oldest readings while a bound is passed, a `delete_batch`
    /// at a time, and at most about twice what this group inserted (so a
    /// lowered bound is caught up over several commits, never in one stall).
    fn retention(&mut self, tx: &Connection, inserted: u64) -> Result<(), StoreError> {
        let r = self.config.retention.clone();
        let chunk = r.delete_batch.max(1);
        let budget = (inserted * 2).max(chunk);
        let mut deleted = 0;
        while deleted < budget {
            let held = self.held();
            if held == 0 {
                break;
            }
            let n = if held > r.max_rows {
                (held - r.max_rows).min(chunk)
            } else if self.too_old(tx, r.max_age_secs)? || used_bytes(tx)? > r.max_bytes {
                chunk.min(held)
            } else {
                break;
            };
            // The n oldest rows end below `new_oldest`, past any gap among them.
            let mut new_oldest = self.oldest_seq;
            let mut left = n;
            while let Some(&(start, len)) = self.gaps.first() {
                if start - new_oldest > left {
                    break;
                }
                left -= start - new_oldest;
                new_oldest = start + len;
                self.gaps.remove(0);
                self.gaps_dirty = true;
            }
            new_oldest += left;
            tx.prepare_cached("DELETE FROM readings WHERE seq < ?1")?
                .execute([new_oldest as i64])?;
            self.oldest_seq = new_oldest;
            deleted += n;
        }
        self.stats.deleted.fetch_add(deleted, Relaxed);
        Ok(())
    }

    /// Readings in the log.
    fn held(&self) -> u64 {
        let skipped: u64 = self.gaps.iter().map(|g| g.1).sum();
        (self.next_seq - self.oldest_seq).saturating_sub(skipped)
    }

    /// Whether any retention bound is passed now.
    fn over_bounds(&self, conn: &Connection) -> Result<bool, StoreError> {
        let r = &self.config.retention;
        let held = self.held();
        Ok(held > 0
            && (held > r.max_rows
                || self.too_old(conn, r.max_age_secs)?
                || used_bytes(conn)? > r.max_bytes))
    }

    /// Whether the oldest delete batch is past the age bound, judged by the
    /// time of its newest reading: one device with a clock far behind cannot
    /// make the ring delete fresh readings.
    fn too_old(&self, tx: &Connection, max_age_secs: u64) -> Result<bool, StoreError> {
        if max_age_secs == 0 || self.next_seq == self.oldest_seq {
            return Ok(false);
        }
        let chunk = self.config.retention.delete_batch.max(1);
        let probe = (self.oldest_seq + chunk - 1).min(self.next_seq - 1);
        let ts: Option<i64> = tx
            .prepare_cached("SELECT max(ts) FROM readings WHERE seq BETWEEN ?1 AND ?2")?
            .query_row([self.oldest_seq as i64, probe as i64], |r| r.get(0))?;
        Ok(ts.is_some_and(|ts| ts < now_ms() - (max_age_secs as i64) * 1000))
    }

    /// Forgets the caches and reads the sequence back, after a failed commit.
    fn reload(&mut self, conn: &Connection) -> Result<(), StoreError> {
        self.devices.clear();
        self.names.clear();
        self.outboxes.clear();
        self.presence.clear();
        self.next_seq = schema::meta_seq(conn, "readings_seq")? + 1;
        self.next_latest_seq = schema::meta_seq(conn, "latest_seq")? + 1;
        self.next_devices_seq = schema::meta_seq(conn, "devices_seq")? + 1;
        self.next_alerts_seq = schema::meta_seq(conn, "alerts_seq")? + 1;
        self.next_commands_seq = schema::meta_seq(conn, "commands_seq")? + 1;
        if let Some(a) = self.alerts.as_mut() {
            // Back to what was committed: open alerts and timers as stored.
            a.reload(conn, now_ms())?;
        }
        let oldest: Option<u64> =
            conn.query_row("SELECT min(seq) FROM readings", [], |r| r.get(0))?;
        self.oldest_seq = oldest.unwrap_or(self.next_seq);
        Ok(())
    }
}

/// Rows per multi-row INSERT.
const ROWS_PER_INSERT: usize = 32;

/// One reading row before insert: seq, ts, metric id, metric name, unit,
/// value.
type Row = (u64, i64, i64, Arc<str>, Option<(i64, Arc<str>)>, Value);

/// Inserts `rows` of device `dev`, `ROWS_PER_INSERT` per statement.
fn insert_rows(tx: &Connection, dev: i64, rows: &[Row]) -> Result<(), StoreError> {
    static MANY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let many = MANY.get_or_init(|| {
        let values = vec!["(?, ?, ?, ?, ?, ?)"; ROWS_PER_INSERT].join(", ");
        format!("INSERT INTO readings(seq, ts, device, metric, unit, v) VALUES {values}")
    });
    let mut chunks = rows.chunks_exact(ROWS_PER_INSERT);
    if rows.len() >= ROWS_PER_INSERT {
        let mut st = tx.prepare_cached(many)?;
        for chunk in chunks.by_ref() {
            for (i, (seq, ts, metric, _, unit, value)) in chunk.iter().enumerate() {
                let at = i * 6;
                st.raw_bind_parameter(at + 1, *seq as i64)?;
                st.raw_bind_parameter(at + 2, *ts)?;
                st.raw_bind_parameter(at + 3, dev)?;
                st.raw_bind_parameter(at + 4, *metric)?;
                st.raw_bind_parameter(at + 5, unit.as_ref().map(|u| u.0))?;
                st.raw_bind_parameter(at + 6, value_sql(value))?;
            }
            st.raw_execute()?;
        }
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut one = tx.prepare_cached(
            "INSERT INTO readings(seq, ts, device, metric, unit, v) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for (seq, ts, metric, _, unit, value) in rest {
            one.execute(params![
                *seq as i64,
                *ts,
                dev,
                *metric,
                unit.as_ref().map(|u| u.0),
                value_sql(value)
            ])?;
        }
    }
    Ok(())
}

/// Bytes of database pages in use (the file minus its free pages).
fn used_bytes(tx: &Connection) -> Result<u64, StoreError> {
    let pages: i64 = tx.pragma_query_value(None, "page_count", |r| r.get(0))?;
    let free: i64 = tx.pragma_query_value(None, "freelist_count", |r| r.get(0))?;
    let size: i64 = tx.pragma_query_value(None, "page_size", |r| r.get(0))?;
    Ok(((pages - free).max(0) * size) as u64)
}

/// Returns the id of `name` in `table`, adding it if new.
fn intern(
    tx: &Connection,
    cache: &mut HashMap<String, (i64, Arc<str>)>,
    table: &'static str,
    name: &str,
) -> Result<(i64, Arc<str>), StoreError> {
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

/// The writer's copy of a device's row, read from the database on first use.
fn device_state<'a>(
    cache: &'a mut HashMap<i64, DeviceState>,
    tx: &Connection,
    dev: i64,
    name: &Arc<str>,
) -> Result<&'a mut DeviceState, StoreError> {
    use std::collections::hash_map::Entry;
    match cache.entry(dev) {
        Entry::Occupied(e) => Ok(e.into_mut()),
        Entry::Vacant(e) => {
            let (seq, online, last_seen, first_seen, agent, labels) = tx
                .prepare_cached(
                    "SELECT seq, online, last_seen, first_seen, agent, labels
                     FROM devices WHERE id = ?1",
                )?
                .query_row([dev], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, Option<bool>>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, Option<String>>(5)?,
                    ))
                })?;
            let labels = match labels.as_deref().map(crate::reader::parse_labels) {
                None => BTreeMap::new(),
                Some(Ok(l)) => l,
                // One device's bad row must not stop the writer: its labels
                // are replaced by its next status that carries some.
                Some(Err(err)) => {
                    tracing::warn!(device = %name, error = %err, "stored labels are not a JSON object of strings; ignored");
                    BTreeMap::new()
                }
            };
            Ok(e.insert(DeviceState {
                name: name.clone(),
                seq: seq as u64,
                online,
                last_seen,
                first_seen,
                agent,
                labels,
                evented_seen: last_seen,
                changed: false,
            }))
        }
    }
}
