//! The watch engine shared by every transport (SSE, NDJSON, long poll,
//! WebSocket): a [`Collection`] per resource registers its [`Source`] (the
//! store) and is fed committed changes with [`Collection::publish`]; readers
//! get consistent pages ([`Collection::list`]), long polls
//! ([`Collection::wait_after`]) and watch streams ([`Collection::watch`]).
//!
//! resourceVersions carry the store's epoch; starting a watch at one, at a
//! time (`since`) or with the initial state loses nothing and repeats
//! nothing. Live fan-out shares one `Arc` per change among all watchers; a
//! watcher that falls behind the shared ring catches up from the store and
//! rejoins, so it costs bounded memory and slows no one; if it falls out of
//! the store's ring it gets a 410 error event.
//!
//! This crate never does IO itself (the [`Source`] does, on blocking
//! threads) and knows no HTTP.

mod stream;

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;
pub use telltale_filter::{Field, FieldValue, Fields, Filter};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// What a collection holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An append-only log (readings): events are `ADDED`, old entries leave
    /// the ring and then answer 410.
    Log,
    /// A set of items by key (latest, devices): events are `ADDED` and
    /// `MODIFIED`; any resourceVersion of this store can resume.
    State,
}

/// The type of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
    Bookmark,
    Error,
}

impl EventType {
    /// As in the event's `type` field.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
            EventType::Bookmark => "BOOKMARK",
            EventType::Error => "ERROR",
        }
    }

    /// As in an SSE `event:` line.
    pub fn sse_name(self) -> &'static str {
        match self {
            EventType::Added => "added",
            EventType::Modified => "modified",
            EventType::Deleted => "deleted",
            EventType::Bookmark => "bookmark",
            EventType::Error => "error",
        }
    }
}

/// One version of an item in a collection.
pub trait Item: Fields + Send + Sync + 'static {
    /// The collection sequence number of this version.
    fn seq(&self) -> u64;
    /// Identity within a state collection (throttling keeps one per key).
    fn key(&self) -> &str;
    /// The item as a JSON object, serialized once and shared by all watchers.
    fn json(&self) -> &str;
    /// Time of the item in ms since the epoch, for `since` on logs.
    fn ts_ms(&self) -> Option<i64> {
        None
    }
    /// Whether this version created the item (a state collection's `ADDED`).
    fn created(&self) -> bool {
        false
    }
}

/// Why the store could not answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("store read failed: {0}")]
pub struct SourceError(pub String);

/// Where a collection's items live (the store). Methods block; the engine
/// calls them on blocking threads.
pub trait Source<T>: Send + Sync + 'static {
    /// Items with seq above `after`, oldest first, at most `limit`.
    fn after(&self, after: u64, limit: usize) -> Result<Vec<Arc<T>>, SourceError>;
    /// The whole current state (state collections), sorted by key, and the
    /// seq it is consistent with.
    fn state(&self) -> Result<(Vec<Arc<T>>, u64), SourceError>;
    /// The smallest `after` the source can still answer without a gap (a
    /// log: one below its oldest entry; a state collection: 0, which it
    /// need not write).
    fn oldest(&self) -> Result<u64, SourceError> {
        Ok(0)
    }
    /// The last committed seq.
    fn last(&self) -> Result<u64, SourceError>;
    /// A log's first seq whose item is at or after `ts_ms` (approximate; the
    /// engine filters by time as well). State collections have no times to
    /// start from and need not write it.
    fn seq_at_time(&self, _ts_ms: i64) -> Result<u64, SourceError> {
        Ok(0)
    }
    /// Whether `seq` lies in a range of seqs that were shown to watchers
    /// but lost before their commit (the hub stopped or a commit failed).
    /// A watcher at such a seq has seen items that no longer exist.
    fn lost(&self, _seq: u64) -> Result<bool, SourceError> {
        Ok(false)
    }
}

/// Most items in one shared chunk of the live ring.
pub const CHUNK: usize = 1024;
/// Chunks the live ring keeps: at most `CHUNK × RING` items are shared in
/// memory; a watcher further behind catches up from the store.
pub const RING: usize = 64;
/// Items read from the store per catch-up page.
pub const PAGE: usize = 1000;

/// A resourceVersion that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RvError {
    #[error("resourceVersion is not one this hub issued")]
    Malformed,
    #[error("resourceVersion is from the future")]
    Future,
    #[error("resourceVersion is from another store (the database was replaced)")]
    OtherEpoch { oldest: u64 },
    #[error("resourceVersion is older than the oldest entry still held")]
    Expired { oldest: u64 },
    #[error("resourceVersion is among readings shown before a commit that never came (the hub stopped or a commit failed), so what was seen up to it is not all stored")]
    Lost { oldest: u64 },
}

/// Errors of list and wait.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WatchError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Rv(#[from] RvError),
}

/// A registered collection.
pub struct Collection<T: Item> {
    /// Its name, such as `readings`.
    pub name: &'static str,
    /// Log or state.
    pub kind: Kind,
    /// The store's epoch.
    epoch: Arc<str>,
    /// The live ring: committed changes, chunked, shared by all watchers.
    live: broadcast::Sender<Arc<[Arc<T>]>>,
    /// The last seq published to the ring.
    published: AtomicU64,
    /// The last seq the store has committed (the ring may run ahead of it:
    /// readings are shared before their group commits). A watcher catching
    /// up waits on it instead of reading the store in a loop.
    durable: tokio::sync::watch::Sender<u64>,
    source: Arc<dyn Source<T>>,
}

impl<T: Item> std::fmt::Debug for Collection<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collection")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish()
    }
}

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// After everything committed so far.
    Now,
    /// Strictly after this seq (a checked resourceVersion).
    After(u64),
    /// Log collections: from the first entry at or after this time (ms).
    Since(i64),
    /// State collections: an `ADDED` per current item, a BOOKMARK with
    /// `initialEventsEnd`, then live changes.
    Initial,
}

/// How a watch runs.
#[derive(Debug, Clone)]
pub struct WatchRequest {
    pub start: Start,
    pub filter: Filter,
    /// A BOOKMARK after this long without an event.
    pub heartbeat: Duration,
    /// End cleanly (final BOOKMARK) after this long.
    pub timeout: Option<Duration>,
    /// State collections: at most one event per item per this long.
    pub throttle: Option<Duration>,
    /// Server cap on a stream's life; cut by up to 10 % at random so that
    /// reconnects spread out.
    pub max_lifetime: Duration,
    /// Ends the stream with a final BOOKMARK (hub shutdown).
    pub shutdown: CancellationToken,
}

/// What a watch stream yields.
#[derive(Debug, Clone)]
pub enum WatchEvent<T> {
    /// An item version (`ADDED`, `MODIFIED`, `DELETED`).
    Item { kind: EventType, item: Arc<T> },
    /// Progress: everything up to `seq` has been delivered or filtered out.
    Bookmark { seq: u64, initial_events_end: bool },
    /// The stream cannot go on (410 when it fell out of the ring).
    Error {
        status: u16,
        code: &'static str,
        message: String,
        oldest: Option<u64>,
    },
}

/// A page of a list.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<Arc<T>>,
    /// The collection version the list is consistent with.
    pub rv: u64,
    /// Where the next page starts, if there is more.
    pub next: Option<Cursor>,
}

/// Where a list page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    /// Logs: entries with seq in (after, upto].
    Log { after: u64, upto: u64 },
    /// State collections: items with key after this one.
    State { after_key: String },
}

/// Store reads running at once, across all collections. Thousands of
/// watchers connecting together queue here instead of each taking a
/// blocking thread and an SQLite connection (memory that the allocator
/// would keep long after).
const STORE_READS: usize = 4;
static STORE_PERMITS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(STORE_READS);

async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, SourceError> + Send + 'static,
) -> Result<R, SourceError> {
    let _permit = STORE_PERMITS
        .acquire()
        .await
        .map_err(|e| SourceError(format!("store reads closed: {e}")))?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SourceError(format!("store task failed: {e}")))?
}

impl<T: Item> Collection<T> {
    /// A collection over `source`, for the store with `epoch`. `last` is the
    /// last committed seq at start.
    pub fn new(
        name: &'static str,
        kind: Kind,
        epoch: Arc<str>,
        last: u64,
        source: Arc<dyn Source<T>>,
    ) -> Arc<Self> {
        let (live, _) = broadcast::channel(RING);
        Arc::new(Collection {
            name,
            kind,
            epoch,
            live,
            published: AtomicU64::new(last),
            durable: tokio::sync::watch::Sender::new(last),
            source,
        })
    }

    /// Feeds committed changes, in seq order, to every watcher.
    pub fn publish(&self, items: Vec<Arc<T>>) {
        let Some(last) = items.last().map(|i| i.seq()) else {
            return;
        };
        self.published.fetch_max(last, SeqCst);
        for chunk in items.chunks(CHUNK) {
            // No receivers is fine: nobody watches.
            let _ = self.live.send(chunk.to_vec().into());
        }
    }

    /// Feeds committed changes that may overlap what was published or
    /// follow a gap (the feeder fell behind the store): what was published
    /// already is skipped, and a gap is first filled from the store.
    pub async fn publish_checked(&self, items: Vec<Arc<T>>) -> Result<(), SourceError> {
        let last = self.last_seq();
        match items.iter().find(|i| i.seq() > last).map(|i| i.seq()) {
            None => return Ok(()),
            Some(first) if first > last + 1 => self.resync().await?,
            Some(_) => {}
        }
        let last = self.last_seq();
        let fresh: Vec<_> = items.into_iter().filter(|i| i.seq() > last).collect();
        self.publish(fresh);
        Ok(())
    }

    /// Publishes whatever the store holds beyond what was published.
    pub async fn resync(&self) -> Result<(), SourceError> {
        loop {
            let s = self.source.clone();
            let after = self.last_seq();
            let page = blocking(move || s.after(after, PAGE)).await?;
            let full = page.len() == PAGE;
            if let Some(last) = page.last() {
                self.committed(last.seq());
            }
            self.publish(page);
            if !full {
                return Ok(());
            }
        }
    }

    /// Whether any watcher or long poll listens to the live ring.
    pub fn has_watchers(&self) -> bool {
        self.live.receiver_count() > 0
    }

    /// Moves the published seq without sharing the items (nobody listens, so
    /// nobody needs them built). A watcher that arrives in between notices
    /// the gap at its next chunk and reads it from the store.
    pub fn advance(&self, seq: u64) {
        self.published.fetch_max(seq, SeqCst);
    }

    /// Records that the store has committed everything up to `seq`.
    pub fn committed(&self, seq: u64) {
        self.durable.send_if_modified(|d| {
            let moved = seq > *d;
            *d = (*d).max(seq);
            moved
        });
    }

    /// Waits until the store has committed everything up to `seq`.
    pub(crate) async fn wait_committed(&self, seq: u64) {
        let mut rx = self.durable.subscribe();
        // The sender lives as long as the collection.
        let _ = rx.wait_for(|&d| d >= seq).await;
    }

    /// The last seq published.
    pub fn last_seq(&self) -> u64 {
        self.published.load(SeqCst)
    }

    /// The newest seq this collection knows of: published to the ring or
    /// committed by the store, whichever is further.
    pub(crate) fn known_seq(&self) -> u64 {
        self.last_seq().max(*self.durable.borrow())
    }

    /// The type of a live event for `item`: `ADDED` in a log, and in a state
    /// collection `ADDED` for the version that created the item, `MODIFIED`
    /// otherwise. (Initial events of a state collection are all `ADDED`.)
    pub fn event_type(&self, item: &T) -> EventType {
        if self.kind == Kind::Log || item.created() {
            EventType::Added
        } else {
            EventType::Modified
        }
    }

    /// The text form of a resourceVersion of this collection.
    pub fn rv(&self, seq: u64) -> String {
        format!("{}-{}", self.epoch, seq)
    }

    /// Checks a resourceVersion and returns its seq: malformed or from the
    /// future is the client's mistake (400); another epoch or too old is
    /// 410, with the oldest still held.
    pub async fn check_rv(&self, text: &str) -> Result<u64, WatchError> {
        let (epoch, seq) = text.rsplit_once('-').ok_or(RvError::Malformed)?;
        let seq: u64 = seq.parse().map_err(|_| RvError::Malformed)?;
        if epoch.is_empty() || !epoch.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(RvError::Malformed.into());
        }
        let source = self.source.clone();
        let oldest = blocking(move || source.oldest()).await?;
        if epoch != &*self.epoch {
            return Err(RvError::OtherEpoch { oldest }.into());
        }
        if seq > self.last_seq() {
            // The store may have committed it before the feed published it.
            let s = self.source.clone();
            let last = blocking(move || s.last()).await?;
            if seq > last {
                return Err(RvError::Future.into());
            }
        }
        if seq < oldest {
            return Err(RvError::Expired { oldest }.into());
        }
        let source = self.source.clone();
        if blocking(move || source.lost(seq)).await? {
            return Err(RvError::Lost { oldest }.into());
        }
        Ok(seq)
    }

    /// One page of the collection, filtered. A log page holds entries with
    /// seq in `from` (or all held, up to now); a state page holds items in
    /// key order after `from`'s key.
    pub async fn list(
        &self,
        from: Option<Cursor>,
        since: Option<i64>,
        until: Option<i64>,
        filter: &Filter,
        limit: usize,
    ) -> Result<Page<T>, WatchError> {
        let limit = limit.max(1);
        let source = self.source.clone();
        match self.kind {
            Kind::State => {
                let (all, rv) = blocking(move || source.state()).await?;
                let after_key = match from {
                    Some(Cursor::State { after_key }) => Some(after_key),
                    _ => None,
                };
                let mut items = Vec::new();
                let mut next = None;
                for it in all {
                    if after_key.as_deref().is_some_and(|k| it.key() <= k) {
                        continue;
                    }
                    if !filter.matches(&*it) {
                        continue;
                    }
                    if items.len() == limit {
                        next = items.last().map(|i: &Arc<T>| Cursor::State {
                            after_key: i.key().to_owned(),
                        });
                        break;
                    }
                    items.push(it);
                }
                Ok(Page { items, rv, next })
            }
            Kind::Log => {
                let (mut after, upto) = match from {
                    Some(Cursor::Log { after, upto }) => (after, upto),
                    _ => {
                        let s = source.clone();
                        let (oldest, last) = blocking(move || Ok((s.oldest()?, s.last()?))).await?;
                        let start = match since {
                            Some(ts) => {
                                let s = source.clone();
                                blocking(move || s.seq_at_time(ts))
                                    .await?
                                    .saturating_sub(1)
                                    .max(oldest)
                            }
                            None => oldest,
                        };
                        (start, last)
                    }
                };
                let mut items = Vec::new();
                while after < upto && items.len() < limit {
                    let s = source.clone();
                    let page = blocking(move || s.after(after, PAGE)).await?;
                    if page.is_empty() {
                        break;
                    }
                    for it in page {
                        if it.seq() > upto || items.len() == limit {
                            break;
                        }
                        after = it.seq();
                        let ts = it.ts_ms();
                        let in_time = since.is_none_or(|s| ts.is_none_or(|t| t >= s))
                            && until.is_none_or(|u| ts.is_none_or(|t| t <= u));
                        if in_time && filter.matches(&*it) {
                            items.push(it);
                        }
                    }
                }
                let next = (after < upto).then_some(Cursor::Log { after, upto });
                Ok(Page {
                    items,
                    rv: upto,
                    next,
                })
            }
        }
    }

    /// A long poll: the items matching `filter` with seq above `after`,
    /// waiting up to `wait` for at least one. Returns them (at most `limit`)
    /// and the seq the answer is consistent with.
    pub async fn wait_after(
        &self,
        after: u64,
        filter: &Filter,
        limit: usize,
        wait: Duration,
    ) -> Result<(Vec<Arc<T>>, u64), WatchError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut rx = self.live.subscribe();
        let mut cursor = after;
        loop {
            let source = self.source.clone();
            let oldest = {
                let s = source.clone();
                blocking(move || s.oldest()).await?
            };
            if cursor < oldest {
                return Err(RvError::Expired { oldest }.into());
            }
            let mut items = Vec::new();
            loop {
                let s = source.clone();
                let c = cursor;
                let page = blocking(move || s.after(c, PAGE)).await?;
                let full = page.len() == PAGE;
                for it in page {
                    if items.len() == limit {
                        return Ok((items, cursor));
                    }
                    cursor = it.seq();
                    if filter.matches(&*it) {
                        items.push(it);
                    }
                }
                if !full {
                    break;
                }
            }
            if !items.is_empty() {
                return Ok((items, cursor));
            }
            // Nothing yet: take the next changes from the ring as they come.
            // Only a gap (a lag, or changes shared before this request
            // subscribed) sends it back to the store, once they are committed.
            loop {
                let chunk = match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Err(_) | Ok(Err(broadcast::error::RecvError::Closed)) => {
                        return Ok((Vec::new(), cursor))
                    }
                    Ok(Err(broadcast::error::RecvError::Lagged(_))) => None,
                    Ok(Ok(chunk)) if chunk.first().is_some_and(|f| f.seq() > cursor + 1) => None,
                    Ok(Ok(chunk)) => Some(chunk),
                };
                let Some(chunk) = chunk else {
                    let target = self.last_seq();
                    if tokio::time::timeout_at(deadline, self.wait_committed(target))
                        .await
                        .is_err()
                    {
                        return Ok((Vec::new(), cursor));
                    }
                    break;
                };
                for it in chunk.iter() {
                    if it.seq() <= cursor {
                        continue;
                    }
                    if items.len() == limit {
                        break;
                    }
                    cursor = it.seq();
                    if filter.matches(&**it) {
                        items.push(it.clone());
                    }
                }
                if !items.is_empty() {
                    return Ok((items, cursor));
                }
            }
        }
    }

    /// A watch stream; see [`WatchRequest`]. Check a resourceVersion with
    /// [`Collection::check_rv`] first.
    pub fn watch(
        self: &Arc<Self>,
        req: WatchRequest,
    ) -> impl futures_core::Stream<Item = WatchEvent<T>> + Send + 'static {
        stream::watch(self.clone(), req)
    }
}

#[cfg(test)]
mod tests;
