//! The only crate that knows SQLite. It owns the hub's database (the readings
//! ring log, the read model of the state collections, the store epoch,
//! interned device and metric names, idempotent batches, rejects) and the
//! edge agent's outbox, with their schema migrations.
//!
//! The watch API's three stored collections live here, each with its own
//! sequence (a resourceVersion is the store epoch plus one of them): the
//! readings log (`readings`, a ring), the newest reading per device and
//! metric (`latest`) and the devices with their presence, seen times, agent
//! and labels (`devices`).
//!
//! Writes go through one writer thread ([`writer`]) that commits in groups
//! and then publishes what changed ([`Changes`]); reads open their own
//! connections ([`Reader`]). This crate never talks MQTT or HTTP and never
//! decides what is valid: it stores what it is given.

mod alerts;
pub mod auth;
pub mod commands;
pub mod config;
pub mod outbox;
mod reader;
mod schema;
pub mod writer;

pub use alerts::{AckOutcome, Delivery, Routing};
pub use config::{Retention, StoreConfig, Synchronous};
pub use reader::{
    AlertRow, CommandRow, DeviceRow, LatestRow, NotifyRow, Reader, RejectRow, StoredReading,
    StoredValue,
};
pub use writer::{
    AckOut, Changes, IncomingBatch, Presence, Reject, StoreStats, WriteOp, WriterHandle,
};

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
