//! The watch stream: initial events or a start position, catch-up from the
//! store, then the live ring; back to catch-up whenever the watcher lags.

use crate::{blocking, Collection, EventType, Item, Kind, Start, WatchEvent, WatchRequest, PAGE};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::time::{Instant, MissedTickBehavior};

/// What woke the live loop.
enum Wake<T> {
    Chunk(Arc<[Arc<T>]>),
    Lagged,
    Closed,
    Heartbeat,
    Flush,
    End,
}

/// Pending throttled changes: the newest version per key (no copy of the
/// key: the item is hashed by it), emitted in seq order.
struct Throttle<T> {
    every: Duration,
    by_key: rustc_hash::FxHashSet<ByKey<T>>,
}

/// An item hashed and compared by its key.
struct ByKey<T>(Arc<T>);

impl<T: Item> std::hash::Hash for ByKey<T> {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.0.key().hash(h);
    }
}

impl<T: Item> PartialEq for ByKey<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0.key() == other.0.key()
    }
}

impl<T: Item> Eq for ByKey<T> {}

impl<T: Item> Throttle<T> {
    fn put(&mut self, item: Arc<T>) {
        // Items come in seq order: the newer replaces the older.
        self.by_key.replace(ByKey(item));
    }

    fn take(&mut self) -> Vec<Arc<T>> {
        let mut items: Vec<_> = self.by_key.drain().map(|k| k.0).collect();
        items.sort_unstable_by_key(|i| i.seq());
        items
    }
}

fn jittered(d: Duration) -> Duration {
    let cut = rand::random::<f64>() * 0.1;
    d.mul_f64(1.0 - cut)
}

pub(crate) fn watch<T: Item>(
    coll: Arc<Collection<T>>,
    req: WatchRequest,
) -> impl futures_core::Stream<Item = WatchEvent<T>> + Send + 'static {
    // Subscribe before reading anything (and now, not at the first poll),
    // so nothing committed from the request on can be missed; anything seen
    // twice is dropped by seq.
    let mut rx = coll.live.subscribe();
    let now = coll.last_seq();
    async_stream::stream! {
        let end = {
            let life = Instant::now() + jittered(req.max_lifetime);
            match req.timeout {
                Some(t) => (Instant::now() + t).min(life),
                None => life,
            }
        };
        let kind_of = |it: &T| coll.event_type(it);
        let mut since = None;
        let mut cursor = match req.start {
            Start::Now => now,
            Start::After(seq) => seq,
            Start::Since(ts) => {
                since = Some(ts);
                let s = coll.source.clone();
                match blocking(move || Ok((s.seq_at_time(ts)?, s.oldest()?))).await {
                    Ok((seq, oldest)) => seq.saturating_sub(1).max(oldest),
                    Err(e) => {
                        tracing::error!(collection = coll.name, error = %e, "watch stream failed");
                        yield WatchEvent::Error { status: 500, code: "internal", message: "the hub could not read its store; see its log".into(), oldest: None };
                        return;
                    }
                }
            }
            Start::Initial => {
                let s = coll.source.clone();
                match blocking(move || s.state()).await {
                    Ok((items, seq)) => {
                        for it in items {
                            if req.filter.matches(&*it) {
                                yield WatchEvent::Item { kind: EventType::Added, item: it };
                            }
                        }
                        yield WatchEvent::Bookmark { seq, initial_events_end: true };
                        seq
                    }
                    Err(e) => {
                        tracing::error!(collection = coll.name, error = %e, "watch stream failed");
                        yield WatchEvent::Error { status: 500, code: "internal", message: "the hub could not read its store; see its log".into(), oldest: None };
                        return;
                    }
                }
            }
        };
        // Everything up to `delivered` is sent or filtered out (it trails
        // `cursor` only while throttled changes wait).
        let mut delivered = cursor;
        let mut throttle = match (coll.kind, req.throttle) {
            (Kind::State, Some(every)) if !every.is_zero() => Some(Throttle {
                every,
                by_key: Default::default(),
            }),
            _ => None,
        };
        let mut heartbeat = tokio::time::interval_at(Instant::now() + req.heartbeat, req.heartbeat);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut flush = tokio::time::interval(throttle.as_ref().map_or(Duration::from_secs(3600), |t| t.every));
        flush.set_missed_tick_behavior(MissedTickBehavior::Delay);

        // The stream's end came while it waited for a commit.
        let mut ending = false;
        'outer: loop {
            // Catch up from the store (nothing to read when the ring has
            // everything after the cursor: a watch from now, a fresh
            // resume).
            while cursor < coll.known_seq() {
                let s = coll.source.clone();
                let c = cursor;
                let read = blocking(move || {
                    let oldest = s.oldest()?;
                    if c < oldest {
                        return Ok(Err(oldest));
                    }
                    Ok(Ok(s.after(c, PAGE)?))
                }).await;
                let page = match read {
                    Ok(Ok(page)) => page,
                    Ok(Err(oldest)) => {
                        yield WatchEvent::Error {
                            status: 410,
                            code: "expired",
                            message: "the watch fell behind the oldest entry still held".into(),
                            oldest: Some(oldest),
                        };
                        return;
                    }
                    Err(e) => {
                        tracing::error!(collection = coll.name, error = %e, "watch stream failed");
                        yield WatchEvent::Error { status: 500, code: "internal", message: "the hub could not read its store; see its log".into(), oldest: None };
                        return;
                    }
                };
                let full = page.len() == PAGE;
                // The heartbeat restarts once per batch of events, not per
                // event (a reset takes the timer wheel's lock).
                let mut sent = false;
                for it in page {
                    cursor = it.seq();
                    let in_time = since.is_none_or(|s| it.ts_ms().is_none_or(|t| t >= s));
                    if in_time && req.filter.matches(&*it) {
                        match throttle.as_mut() {
                            Some(t) => t.put(it),
                            None => {
                                let kind = kind_of(&it);
                                yield WatchEvent::Item { kind, item: it };
                                sent = true;
                            }
                        }
                    }
                    if throttle.is_none() {
                        delivered = cursor;
                    }
                }
                if sent {
                    heartbeat.reset();
                }
                if !full {
                    let target = coll.last_seq();
                    if cursor >= target {
                        break;
                    }
                    // The ring runs ahead of the store (readings shared before
                    // their commit) and this watcher missed that part of it:
                    // wait for the commit, then read it.
                    tokio::select! {
                        biased;
                        _ = req.shutdown.cancelled() => { ending = true; break; }
                        _ = tokio::time::sleep_until(end) => { ending = true; break; }
                        _ = coll.wait_committed(target) => {}
                    }
                }
            }
            since = None;

            // Live.
            loop {
                let wake = if ending { Wake::End } else { tokio::select! {
                    biased;
                    _ = req.shutdown.cancelled() => Wake::End,
                    _ = tokio::time::sleep_until(end) => Wake::End,
                    // A throttled watcher takes the ring's chunks only when its
                    // window ends, so it wakes once per window, not per commit.
                    r = rx.recv(), if throttle.is_none() => match r {
                        Ok(chunk) => Wake::Chunk(chunk),
                        Err(RecvError::Lagged(_)) => Wake::Lagged,
                        Err(RecvError::Closed) => Wake::Closed,
                    },
                    _ = flush.tick(), if throttle.is_some() => Wake::Flush,
                    _ = heartbeat.tick() => Wake::Heartbeat,
                } };
                match wake {
                    Wake::Chunk(chunk) => {
                        // Sequences are contiguous: a chunk that starts past
                        // the cursor means changes were not shared in the ring
                        // (published while nobody listened): read them first.
                        if chunk.first().is_some_and(|f| f.seq() > cursor + 1) {
                            continue 'outer;
                        }
                        // Only unthrottled watchers take chunks here (throttled
                        // ones read the ring when their window ends).
                        let mut sent = false;
                        for it in chunk.iter() {
                            if it.seq() <= cursor {
                                continue;
                            }
                            cursor = it.seq();
                            if req.filter.matches(&**it) {
                                yield WatchEvent::Item { kind: kind_of(it), item: it.clone() };
                                sent = true;
                            }
                            delivered = cursor;
                        }
                        if sent {
                            heartbeat.reset();
                        }
                    }
                    // Fell behind the shared ring: read what was missed from the store.
                    Wake::Lagged => continue 'outer,
                    Wake::Flush => {
                        if let Some(t) = throttle.as_mut() {
                            let mut behind = false;
                            loop {
                                match rx.try_recv() {
                                    Ok(chunk) => {
                                        if chunk.first().is_some_and(|f| f.seq() > cursor + 1) {
                                            behind = true;
                                            break;
                                        }
                                        for it in chunk.iter() {
                                            if it.seq() > cursor {
                                                cursor = it.seq();
                                                if req.filter.matches(&**it) {
                                                    t.put(it.clone());
                                                }
                                            }
                                        }
                                    }
                                    Err(TryRecvError::Lagged(_)) => {
                                        behind = true;
                                        break;
                                    }
                                    Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                                }
                            }
                            if behind {
                                // Read the rest from the store; the changes wait
                                // for the next window.
                                continue 'outer;
                            }
                            let items = t.take();
                            let sent = !items.is_empty();
                            for it in items {
                                yield WatchEvent::Item { kind: kind_of(&it), item: it };
                            }
                            if sent {
                                heartbeat.reset();
                            }
                        }
                        delivered = cursor;
                    }
                    Wake::Heartbeat => {
                        yield WatchEvent::Bookmark { seq: delivered, initial_events_end: false };
                    }
                    Wake::End | Wake::Closed => {
                        if let Some(t) = throttle.as_mut() {
                            for it in t.take() {
                                yield WatchEvent::Item { kind: kind_of(&it), item: it };
                            }
                            delivered = cursor;
                        }
                        yield WatchEvent::Bookmark { seq: delivered, initial_events_end: false };
                        break 'outer;
                    }
                }
            }
        }
    }
}
