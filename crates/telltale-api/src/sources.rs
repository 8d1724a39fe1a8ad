//! The store as the watch engine's [`Source`] for each collection. Reads run
//! on blocking threads with read-only connections kept in a small pool.

use crate::items::{AlertItem, CommandItem, DeviceItem, LatestItem, ReadingItem};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use telltale_store::{Reader, StoreError};
use telltale_watch::{Source, SourceError};

/// Read-only connections to the hub's database, reused.
#[derive(Debug)]
pub struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Reader>>,
}

/// Idle connections kept.
const KEEP: usize = 4;

impl Readers {
    /// Readers of the database at `path` (it must exist).
    pub fn new(path: PathBuf) -> Arc<Readers> {
        Arc::new(Readers {
            path,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// The database's path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Runs `f` with a connection.
    pub fn with<R>(
        &self,
        f: impl FnOnce(&Reader) -> Result<R, StoreError>,
    ) -> Result<R, SourceError> {
        let reader = match self.idle.lock().ok().and_then(|mut v| v.pop()) {
            Some(r) => r,
            None => Reader::open(&self.path).map_err(|e| SourceError(e.to_string()))?,
        };
        let out = f(&reader).map_err(|e| SourceError(e.to_string()));
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < KEEP {
                idle.push(reader);
            }
        }
        out
    }
}

/// `/v1/readings`: the log.
#[derive(Debug)]
pub struct ReadingsSource(pub Arc<Readers>);

impl Source<ReadingItem> for ReadingsSource {
    fn after(&self, after: u64, limit: usize) -> Result<Vec<Arc<ReadingItem>>, SourceError> {
        let rows = self.0.with(|r| r.readings_after(after, limit))?;
        Ok(rows.into_iter().map(ReadingItem::new).collect())
    }
    fn state(&self) -> Result<(Vec<Arc<ReadingItem>>, u64), SourceError> {
        Ok((Vec::new(), self.last()?))
    }
    fn oldest(&self) -> Result<u64, SourceError> {
        // One below the oldest entry held: a resume from there has no gap.
        Ok(self.0.with(|r| r.oldest_reading_seq())?.saturating_sub(1))
    }
    fn lost(&self, seq: u64) -> Result<bool, SourceError> {
        self.0.with(|r| r.reading_seq_lost(seq))
    }
    fn last(&self) -> Result<u64, SourceError> {
        Ok(self.0.with(|r| r.collection_seqs())?.0)
    }
    fn seq_at_time(&self, ts_ms: i64) -> Result<u64, SourceError> {
        let found = self.0.with(|r| r.first_seq_at_or_after_time(ts_ms))?;
        match found {
            Some(seq) => Ok(seq),
            None => Ok(self.last()? + 1),
        }
    }
}

/// `/v1/latest`: the newest reading per (device, metric).
#[derive(Debug)]
pub struct LatestSource(pub Arc<Readers>);

impl Source<LatestItem> for LatestSource {
    fn after(&self, after: u64, limit: usize) -> Result<Vec<Arc<LatestItem>>, SourceError> {
        let rows = self.0.with(|r| r.latest_after(after, limit))?;
        Ok(rows.into_iter().map(LatestItem::new).collect())
    }
    fn state(&self) -> Result<(Vec<Arc<LatestItem>>, u64), SourceError> {
        // One read transaction: the list and its version agree.
        let (rows, seqs) = self
            .0
            .with(|r| r.snapshot(|r| Ok((r.latest_all()?, r.collection_seqs()?))))?;
        let mut items: Vec<_> = rows.into_iter().map(LatestItem::new).collect();
        items.sort_by(|a, b| telltale_watch::Item::key(&**a).cmp(telltale_watch::Item::key(&**b)));
        Ok((items, seqs.1))
    }
    fn oldest(&self) -> Result<u64, SourceError> {
        Ok(0)
    }
    fn last(&self) -> Result<u64, SourceError> {
        Ok(self.0.with(|r| r.collection_seqs())?.1)
    }
    fn seq_at_time(&self, _ts_ms: i64) -> Result<u64, SourceError> {
        Ok(0)
    }
}

/// `/v1/devices`.
#[derive(Debug)]
pub struct DevicesSource(pub Arc<Readers>);

impl Source<DeviceItem> for DevicesSource {
    fn after(&self, after: u64, limit: usize) -> Result<Vec<Arc<DeviceItem>>, SourceError> {
        let rows = self.0.with(|r| r.devices_after(after, limit))?;
        Ok(rows.into_iter().map(DeviceItem::new).collect())
    }
    fn state(&self) -> Result<(Vec<Arc<DeviceItem>>, u64), SourceError> {
        let (rows, seqs) = self
            .0
            .with(|r| r.snapshot(|r| Ok((r.devices_all()?, r.collection_seqs()?))))?;
        let mut items: Vec<_> = rows.into_iter().map(DeviceItem::new).collect();
        items.sort_by(|a, b| a.row.id.cmp(&b.row.id));
        Ok((items, seqs.2))
    }
    fn oldest(&self) -> Result<u64, SourceError> {
        Ok(0)
    }
    fn last(&self) -> Result<u64, SourceError> {
        Ok(self.0.with(|r| r.collection_seqs())?.2)
    }
    fn seq_at_time(&self, _ts_ms: i64) -> Result<u64, SourceError> {
        Ok(0)
    }
}

/// `/v1/alerts`: open alerts and the alert history.
#[derive(Debug)]
pub struct AlertsSource(pub Arc<Readers>);

impl Source<AlertItem> for AlertsSource {
    fn after(&self, after: u64, limit: usize) -> Result<Vec<Arc<AlertItem>>, SourceError> {
        let rows = self.0.with(|r| r.alerts_after(after, limit))?;
        Ok(rows.into_iter().map(AlertItem::new).collect())
    }
    fn state(&self) -> Result<(Vec<Arc<AlertItem>>, u64), SourceError> {
        let (rows, seq) = self
            .0
            .with(|r| r.snapshot(|r| Ok((r.alerts_all()?, r.alerts_seq()?))))?;
        // By id, as rows come: the key order of a state collection.
        let mut items: Vec<_> = rows.into_iter().map(AlertItem::new).collect();
        items.sort_by_key(|a| a.row.id);
        Ok((items, seq))
    }
    fn oldest(&self) -> Result<u64, SourceError> {
        Ok(0)
    }
    fn last(&self) -> Result<u64, SourceError> {
        self.0.with(|r| r.alerts_seq())
    }
    fn seq_at_time(&self, _ts_ms: i64) -> Result<u64, SourceError> {
        Ok(0)
    }
}

/// `/v1/commands`: open commands and the command history.
#[derive(Debug)]
pub struct CommandsSource(pub Arc<Readers>);

impl Source<CommandItem> for CommandsSource {
    fn after(&self, after: u64, limit: usize) -> Result<Vec<Arc<CommandItem>>, SourceError> {
        let rows = self.0.with(|r| r.commands_after(after, limit))?;
        Ok(rows.into_iter().map(CommandItem::new).collect())
    }
    fn state(&self) -> Result<(Vec<Arc<CommandItem>>, u64), SourceError> {
        let (rows, seq) = self
            .0
            .with(|r| r.snapshot(|r| Ok((r.commands_all()?, r.commands_seq()?))))?;
        let mut items: Vec<_> = rows.into_iter().map(CommandItem::new).collect();
        items.sort_by_key(|c| c.row.id);
        Ok((items, seq))
    }
    fn oldest(&self) -> Result<u64, SourceError> {
        Ok(0)
    }
    fn last(&self) -> Result<u64, SourceError> {
        self.0.with(|r| r.commands_seq())
    }
    fn seq_at_time(&self, _ts_ms: i64) -> Result<u64, SourceError> {
        Ok(0)
    }
}
