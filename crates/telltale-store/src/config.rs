//! The `[store]` section of the hub's config.

use serde::Deserialize;
use std::time::Duration;

/// How the store commits and how much it keeps.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Commit a group at most this long after its first write arrived (ms).
    /// With the row bound this caps commits per second: 250 ms gives at most
    /// ~4 commits/s under load, which spares SD cards.
    pub commit_interval_ms: u64,
    /// Commit a group early once it holds this many readings.
    pub commit_max_rows: usize,
    /// Readings are shared with watchers at most this long after they are
    /// inserted, before their group commits (ms; 0: only at the commit).
    /// Watchers then see a reading within tens of milliseconds while the
    /// disk still sees one commit per `commit_interval_ms`.
    pub visible_interval_ms: u64,
    /// SQLite `synchronous`: `full` (a commit survives power loss; one WAL
    /// fsync per commit) or `normal` (survives a crash of the hub only).
    pub synchronous: Synchronous,
    /// How much of the readings log to keep.
    pub retention: Retention,
    /// How many rejected payloads to keep (newest kept).
    pub max_rejects: u64,
    /// How many resolved alerts the alert history keeps (oldest deleted
    /// first; open alerts are always kept).
    pub max_alerts: u64,
    /// How many finished commands the command history keeps (oldest
    /// deleted first; open commands are always kept).
    pub max_commands: u64,
    /// Largest prefix of a rejected payload kept for inspection (bytes).
    pub reject_payload_bytes: usize,
    /// Capacity of the queue in front of the writer, in batches.
    pub queue_batches: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            commit_interval_ms: 250,
            commit_max_rows: 500_000,
            visible_interval_ms: 20,
            synchronous: Synchronous::Full,
            retention: Retention::default(),
            max_rejects: 10_000,
            max_alerts: 10_000,
            max_commands: 10_000,
            reject_payload_bytes: 512,
            queue_batches: 8_192,
        }
    }
}

impl StoreConfig {
    /// The commit interval as a `Duration`.
    pub fn commit_interval(&self) -> Duration {
        Duration::from_millis(self.commit_interval_ms)
    }

    /// How many reading seqs each commit reserves for the next group to
    /// show before its own commit: a group's rows, plus slack for the last
    /// batch of a group, which may pass `commit_max_rows`.
    pub fn reserve_span(&self) -> u64 {
        self.commit_max_rows as u64 + 1_000_000
    }

    /// The visible interval as a `Duration`.
    pub fn visible_interval(&self) -> Duration {
        Duration::from_millis(self.visible_interval_ms)
    }
}

/// SQLite's `synchronous` setting in WAL mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    Full,
    Normal,
}

/// The ring: the oldest readings are deleted once any bound is passed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// Most readings kept.
    pub max_rows: u64,
    /// Most bytes the database may use (pages in use, not the file size).
    pub max_bytes: u64,
    /// Oldest reading kept, in seconds (0 = no age bound).
    pub max_age_secs: u64,
    /// Readings deleted per statement; the log may exceed `max_rows` by at
    /// most this many.
    pub delete_batch: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_rows: 20_000_000,
            max_bytes: 2 * 1024 * 1024 * 1024,
            max_age_secs: 90 * 24 * 3600,
            delete_batch: 20_000,
        }
    }
}
