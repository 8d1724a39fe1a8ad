//! The store as the watch engine's [`Source`] for each collection. Reads run
//! on blocking threads with read-only connections kept in a small pool.

use crate::collection::{served, Resource, Served};
use crate::items::{AlertItem, CommandItem, DeviceItem, LatestItem, Object, ReadingItem};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use telltale_store::{AlertRow, CommandRow, DeviceRow, LatestRow, Reader, StoreError};
use telltale_watch::{Collection, Source, SourceError};

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

/// The three queries that read a state collection's table: the rows
/// changed after a seq (oldest first, at most a limit), every row, and the
/// collection's last committed seq.
pub struct Table<R> {
    after: fn(&Reader, u64, usize) -> Result<Vec<R>, StoreError>,
    all: fn(&Reader) -> Result<Vec<R>, StoreError>,
    seq: fn(&Reader) -> Result<u64, StoreError>,
}

/// `latest`: the newest reading per (device, metric).
const LATEST: Table<LatestRow> = Table {
    after: Reader::latest_after,
    all: Reader::latest_all,
    seq: |r| Ok(r.collection_seqs()?.1),
};
/// `devices`.
const DEVICES: Table<DeviceRow> = Table {
    after: Reader::devices_after,
    all: Reader::devices_all,
    seq: |r| Ok(r.collection_seqs()?.2),
};
/// `alerts`.
const ALERTS: Table<AlertRow> = Table {
    after: Reader::alerts_after,
    all: Reader::alerts_all,
    seq: Reader::alerts_seq,
};
/// `commands`.
const COMMANDS: Table<CommandRow> = Table {
    after: Reader::commands_after,
    all: Reader::commands_all,
    seq: Reader::commands_seq,
};

/// A state collection's source: its table's queries, and how a row
/// becomes the collection's item. One source serves every state
/// collection of the store.
pub struct StateSource<R, T> {
    readers: Arc<Readers>,
    /// The table's queries.
    table: Table<R>,
    /// A row as the collection's item.
    item: fn(R) -> Arc<T>,
}

impl<R, T> std::fmt::Debug for StateSource<R, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateSource").finish_non_exhaustive()
    }
}

impl<R, T> StateSource<R, T> {
    /// A source over `readers` with the table's queries.
    pub fn new(readers: Arc<Readers>, table: Table<R>, item: fn(R) -> Arc<T>) -> Arc<Self> {
        Arc::new(StateSource {
            readers,
            table,
            item,
        })
    }
}

impl<R: Send + 'static, T: telltale_watch::Item> Source<T> for StateSource<R, T> {
    fn after(&self, after: u64, limit: usize) -> Result<Vec<Arc<T>>, SourceError> {
        let rows = self.readers.with(|r| (self.table.after)(r, after, limit))?;
        Ok(rows.into_iter().map(self.item).collect())
    }
    fn state(&self) -> Result<(Vec<Arc<T>>, u64), SourceError> {
        // One read transaction: the list and its version agree.
        let (rows, seq) = self
            .readers
            .with(|r| r.snapshot(|r| Ok(((self.table.all)(r)?, (self.table.seq)(r)?))))?;
        let mut items: Vec<_> = rows.into_iter().map(self.item).collect();
        // Key order: the order of a state collection's pages.
        items.sort_by(|a, b| a.key().cmp(b.key()));
        Ok((items, seq))
    }
    fn last(&self) -> Result<u64, SourceError> {
        self.readers.with(|r| (self.table.seq)(r))
    }
}

/// A collection of `T` over `source`, starting at the source's last seq.
fn open<T: Resource>(
    epoch: &Arc<str>,
    source: Arc<dyn Source<Object<T>>>,
) -> Result<Arc<Collection<Object<T>>>, SourceError> {
    let last = source.last()?;
    Ok(Collection::new(
        T::NAME,
        T::KIND,
        epoch.clone(),
        last,
        source,
    ))
}

/// The hub's collections over its store, made once at start. The typed
/// handles are for the feed and for the routes that act on one
/// collection (commands, alerts); `served` is every collection as the
/// routes and the WebSocket serve them.
pub struct Collections {
    /// `/v1/readings`: the log.
    pub readings: Arc<Collection<ReadingItem>>,
    /// `/v1/latest`: the newest reading per (device, metric).
    pub latest: Arc<Collection<LatestItem>>,
    /// `/v1/devices`.
    pub devices: Arc<Collection<DeviceItem>>,
    /// `/v1/alerts`: open alerts and the alert history.
    pub alerts: Arc<Collection<AlertItem>>,
    /// `/v1/commands`: open commands and the command history.
    pub commands: Arc<Collection<CommandItem>>,
    /// `/v1/rejects`: the refused payloads.
    pub rejects: Arc<Collection<Object<telltale_types::Reject>>>,
    /// Every collection, in registration order.
    pub served: Vec<Arc<dyn Served>>,
}

impl std::fmt::Debug for Collections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.served.iter().map(|c| c.name()))
            .finish()
    }
}

impl Collections {
    /// The collections of the store that `readers` read, whose epoch is
    /// `epoch`.
    pub fn open(readers: &Arc<Readers>, epoch: Arc<str>) -> Result<Collections, SourceError> {
        let r = || readers.clone();
        let readings = open(&epoch, Arc::new(ReadingsSource(r())))?;
        let latest = open(&epoch, StateSource::new(r(), LATEST, LatestItem::new))?;
        let devices = open(&epoch, StateSource::new(r(), DEVICES, DeviceItem::new))?;
        let alerts = open(&epoch, StateSource::new(r(), ALERTS, AlertItem::new))?;
        let commands = open(&epoch, StateSource::new(r(), COMMANDS, CommandItem::new))?;
        let rejects = open(&epoch, Arc::new(crate::rejects::RejectsSource(r())))?;
        let served = vec![
            served(&readings),
            served(&latest),
            served(&devices),
            served(&alerts),
            served(&commands),
            served(&rejects),
        ];
        Ok(Collections {
            readings,
            latest,
            devices,
            alerts,
            commands,
            rejects,
            served,
        })
    }

    /// The collection named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Served>> {
        self.served.iter().find(|c| c.name() == name)
    }

    /// The names of every collection, for error messages.
    pub fn names(&self) -> String {
        let names: Vec<_> = self.served.iter().map(|c| c.name()).collect();
        names.join(", ")
    }
}
