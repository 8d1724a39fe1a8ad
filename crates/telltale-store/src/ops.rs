//! What goes into the writer and what comes out of it: the ops on its
//! queue ([`WriteOp`]), the changes it publishes after each commit (or
//! before it, for readings: [`Changes`]) and its counters ([`StoreStats`]).
//!
//! Only types: above the table modules (whose rows and inputs it carries),
//! below `commit` and `writer`.

use crate::alerts::{AckOutcome, AlertRow, Routing};
use crate::commands::{CommandRow, CommandUpdate, NewCommand};
use crate::devices::{DeviceRow, Presence};
use crate::latest::LatestRow;
use crate::notify::Delivery;
use crate::readings::{IncomingBatch, StoredReading};
use crate::rejects::Reject;
use std::sync::atomic::{AtomicI64, AtomicU64};
use tokio::sync::oneshot;

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

/// Where a new command's creator waits: the command and whether it is new.
pub type CommandReply = oneshot::Sender<Result<(CommandRow, bool), String>>;

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
    /// when its `last_seen` has moved more than
    /// [`SEEN_EVENT_MS`](crate::devices::SEEN_EVENT_MS) (10 s) past the
    /// value last published for it: a device reporting every second makes
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
    /// Last reject id after this commit (rejects are not carried: a
    /// watcher reads them from the store).
    pub rejects_seq: u64,
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
    /// Last reject id committed.
    pub rejects_seq: AtomicU64,
    /// Alert transitions written.
    pub alert_transitions: AtomicU64,
    /// When the last commit finished (ms since the epoch).
    pub last_commit_ms: AtomicI64,
}
