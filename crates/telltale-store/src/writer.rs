//! The one writer: [`start`] opens the hub's database and starts the
//! writer thread (the group-commit loop in `commit.rs`); a [`WriterHandle`]
//! queues work for it and subscribes to what changed.
//!
//! The types writing and watching need are re-exported here, from the
//! modules that own them, so `telltale_store::writer::*` names everything a
//! caller of the writer uses.

use crate::commands::{CommandRow, CommandUpdate, NewCommand};
use crate::commit::Writer;
use crate::config::StoreConfig;
use crate::schema::{self, Migration};
use crate::{alerts, batches, commands, devices, latest, names, notify, readings, rejects};
use crate::{meta, AckOutcome, StoreError};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, oneshot};

pub use crate::batches::AckOut;
pub use crate::devices::{Presence, SEEN_EVENT_MS};
pub use crate::ops::{Changes, CommandReply, StoreStats, WriteOp};
pub use crate::readings::IncomingBatch;
pub use crate::rejects::Reject;

/// The hub database's migrations, in order (index + 1 is the version),
/// each made of the steps of the table modules it touches.
const HUB_MIGRATIONS: &[Migration] = &[
    // 1: the readings log, interned names, batches, rejects.
    &[
        meta::SCHEMA_V1,
        names::SCHEMA_V1,
        readings::SCHEMA_V1,
        batches::SCHEMA_V1,
        rejects::SCHEMA_V1,
    ],
    // 2: the read model of the watch routes: the latest collection (newest
    // reading per device and metric) and the devices collection (presence,
    // seen times, agent, labels), each with its own sequence. Latest first:
    // the devices step reads it.
    &[latest::SCHEMA_V2, devices::SCHEMA_V2],
    // 3: alerts and their notifications. The alerts table is the alerts
    // collection (seq: meta.alerts_seq, never reused) and the alert history,
    // a ring of its own (resolved alerts beyond StoreConfig::max_alerts are
    // deleted, oldest first).
    &[alerts::SCHEMA_V3, notify::SCHEMA_V3],
    // 4: device commands: the commands collection (seq: meta.commands_seq,
    // never reused) and their history, a ring of its own (finished commands
    // beyond StoreConfig::max_commands are deleted, oldest first).
    &[commands::SCHEMA_V4],
];

/// See [`WriterHandle::readings_switch`].
#[derive(Debug, Clone)]
pub struct ReadingsSwitch(Arc<AtomicBool>);

impl ReadingsSwitch {
    /// Turns [`Changes::readings`] on or off from the next group on.
    pub fn set(&self, on: bool) {
        self.0.store(on, Relaxed);
    }
}

/// The sending side of the writer's queue; cheap to clone.
#[derive(Debug, Clone)]
pub struct WriterHandle {
    /// The writer's queue.
    tx: flume::Sender<WriteOp>,
    /// The store's epoch.
    pub epoch: Arc<str>,
    /// Counters.
    pub stats: Arc<StoreStats>,
    /// Where the writer publishes changes (subscribe to it).
    events: broadcast::Sender<Arc<Changes>>,
    /// Whether [`Changes::readings`] is wanted (someone watches readings).
    readings_wanted: Arc<AtomicBool>,
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
    let conn = schema::open(path, HUB_MIGRATIONS, config.synchronous)?;
    let epoch: Arc<str> = meta::epoch(&conn)?.into();
    let (tx, rx) = flume::bounded(config.queue_batches.max(1));
    let (events, _) = broadcast::channel(1024);
    let readings_wanted = Arc::new(AtomicBool::new(true));
    let writer = Writer::new(conn, config, acks, events.clone(), readings_wanted.clone())?;
    let stats = writer.stats();
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
