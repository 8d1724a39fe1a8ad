//! The only crate that knows SQLite. It owns the hub's database (the readings
//! ring log, the read model of the state collections, alerts and their
//! notifications, device commands, the store epoch, interned device and
//! metric names, idempotent batches, rejects), the edge agent's outbox and
//! the credentials database, with their schema migrations.
//!
//! The watch API's stored collections live here, each with its own
//! sequence (a resourceVersion is the store epoch plus one of them): the
//! readings log (`readings`, a ring), the newest reading per device and
//! metric (`latest`), the devices with their presence, seen times, agent
//! and labels (`devices`), the alerts and the commands.
//!
//! Writes go through one writer thread ([`writer`]) that commits in groups
//! and then publishes what changed ([`Changes`]); reads open their own
//! connections ([`Reader`]). This crate never talks MQTT or HTTP and never
//! decides what is valid: it stores what it is given.
//!
//! One module per table, each owning its schema notes, its writes, its
//! reads (an `impl Reader` block) and its eviction. The modules are layered:
//! a module uses only modules of lower layers, never one of its own layer
//! or above (intra-doc links aside):
//!
//! 1. `writer`: the handle and `start` (re-exports the op and input types).
//! 2. `commit`: the group-commit loop, which calls the table modules.
//! 3. `ops`: the writer's ops, published changes and counters (types only).
//! 4. `alerts` (the rules engine in the writer, alert rows, the alert
//!    history ring) and `commands` (the lifecycle, the command history).
//! 5. `latest` (the newest reading per device and metric; it keeps its
//!    value in the encoding of `readings`) and `devices` (presence).
//! 6. `readings` (the ring, reserved seqs and gaps, retention), `notify`
//!    (the notification outbox), `batches` (batch identity and sender
//!    outboxes), `rejects`.
//! 7. `names` (interning), `reader` (the [`Reader`] type, snapshots),
//!    `schema` (opening and the versioned migrations).
//! 8. `meta` (the `meta` table: the epoch and the collections' high-water
//!    marks), `config`, and this file's error and version types.
//!
//! `outbox` (the agent's database) and `auth` (`auth.db`) stand apart and
//! use only layers 7 and 8.

mod alerts;
pub mod auth;
mod batches;
pub mod commands;
mod commit;
pub mod config;
mod devices;
mod latest;
mod meta;
mod names;
mod notify;
mod ops;
pub mod outbox;
mod reader;
mod readings;
mod rejects;
mod schema;
pub mod writer;

pub use alerts::{AckOutcome, AlertRow, AlertState, RouteFn, Routing};
pub use batches::AckOut;
pub use commands::{CommandRow, CommandState};
pub use config::{Retention, StoreConfig, Synchronous};
pub use devices::{DeviceRow, Presence};
pub use latest::LatestRow;
pub use notify::{Delivery, NotifyRow};
pub use ops::{Changes, StoreStats, WriteOp};
pub use reader::Reader;
pub use readings::{IncomingBatch, StoredReading, StoredValue};
pub use rejects::{Reject, RejectRow};
pub use writer::WriterHandle;

use std::path::PathBuf;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database {path} has schema version {found}, newer than this build knows ({known})")]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("the store writer has stopped")]
    WriterGone,
    #[error("{0}")]
    Commit(String),
    #[error("outbox is full and its oldest batch cannot be dropped")]
    OutboxFull,
}

/// A resourceVersion: the store's epoch and a sequence number in one
/// collection. Its text form is `{epoch}-{seq}`; clients treat it as opaque.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceVersion {
    pub epoch: String,
    pub seq: u64,
}

impl std::fmt::Display for ResourceVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.epoch, self.seq)
    }
}

impl std::str::FromStr for ResourceVersion {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let (epoch, seq) = s.rsplit_once('-').ok_or(())?;
        if epoch.is_empty() || !epoch.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(());
        }
        Ok(ResourceVersion {
            epoch: epoch.to_owned(),
            seq: seq.parse().map_err(|_| ())?,
        })
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
