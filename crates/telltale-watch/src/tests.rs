//! The engine against an in-memory source.
#![allow(clippy::unwrap_used)]

use super::*;
use futures_util::StreamExt;
use std::sync::Mutex;
use telltale_filter::Shorthands;

#[derive(Debug)]
struct It {
    seq: u64,
    key: String,
    value: f64,
    ts: i64,
    json: String,
}

impl Fields for It {
    fn field(&self, f: Field<'_>) -> Option<FieldValue<'_>> {
        match f {
            Field::Device => Some(FieldValue::Str(&self.key)),
            Field::Value => Some(FieldValue::Num(self.value)),
            _ => None,
        }
    }
}

impl Item for It {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn key(&self) -> &str {
        &self.key
    }
    fn json(&self) -> &str {
        &self.json
    }
    fn ts_ms(&self) -> Option<i64> {
        Some(self.ts)
    }
}

fn it(seq: u64, key: &str, value: f64) -> Arc<It> {
    Arc::new(It {
        seq,
        key: key.into(),
        value,
        ts: seq as i64 * 1000,
        json: format!(r#"{{"k":"{key}","v":{value}}}"#),
    })
}

/// A log (or, with `state`, the latest version per key) in memory.
#[derive(Default)]
struct Mem {
    log: Mutex<Vec<Arc<It>>>,
    oldest: Mutex<u64>,
    state: bool,
}

impl Source<It> for Mem {
    fn after(&self, after: u64, limit: usize) -> Result<Vec<Arc<It>>, SourceError> {
        let log = self.log.lock().unwrap();
        let mut v: Vec<_> = log.iter().filter(|i| i.seq > after).cloned().collect();
        if self.state {
            // Only the newest version of each key survives in a state table.
            let newest: std::collections::HashMap<_, _> =
                log.iter().map(|i| (i.key.clone(), i.seq)).collect();
            v.retain(|i| newest[&i.key] == i.seq);
        }
        v.truncate(limit);
        Ok(v)
    }
    fn state(&self) -> Result<(Vec<Arc<It>>, u64), SourceError> {
        let log = self.log.lock().unwrap();
        let mut by_key = std::collections::BTreeMap::new();
        for i in log.iter() {
            by_key.insert(i.key.clone(), i.clone());
        }
        let last = log.last().map_or(0, |i| i.seq);
        Ok((by_key.into_values().collect(), last))
    }
    fn oldest(&self) -> Result<u64, SourceError> {
        Ok(*self.oldest.lock().unwrap())
    }
    fn last(&self) -> Result<u64, SourceError> {
        Ok(self.log.lock().unwrap().last().map_or(0, |i| i.seq))
    }
    fn seq_at_time(&self, ts: i64) -> Result<u64, SourceError> {
        let log = self.log.lock().unwrap();
        Ok(log
            .iter()
            .find(|i| i.ts >= ts)
            .map_or(log.last().map_or(1, |i| i.seq + 1), |i| i.seq))
    }
}

struct Fixture {
    mem: Arc<Mem>,
    coll: Arc<Collection<It>>,
}

impl Fixture {
    fn new(kind: Kind) -> Fixture {
        let mem = Arc::new(Mem {
            state: kind == Kind::State,
            ..Mem::default()
        });
        let coll = Collection::new("t", kind, "ab12".into(), 0, mem.clone());
        Fixture { mem, coll }
    }

    /// Commits and publishes items.
    fn commit(&self, items: Vec<Arc<It>>) {
        let last = items.last().map(|i| i.seq);
        self.mem.log.lock().unwrap().extend(items.iter().cloned());
        self.coll.publish(items);
        if let Some(last) = last {
            self.coll.committed(last);
        }
    }

    /// Commits without publishing (as if the watcher lagged).
    fn store_only(&self, items: Vec<Arc<It>>) {
        let last = items.last().map(|i| i.seq);
        self.mem.log.lock().unwrap().extend(items);
        if let Some(last) = last {
            self.coll.committed(last);
        }
    }

    /// Publishes before the store commits (readings shown early).
    fn show(&self, items: Vec<Arc<It>>) {
        self.coll.publish(items);
    }

    /// The store commits what was shown.
    fn commit_shown(&self, items: Vec<Arc<It>>) {
        let last = items.last().map(|i| i.seq);
        self.mem.log.lock().unwrap().extend(items);
        if let Some(last) = last {
            self.coll.committed(last);
        }
    }
}

fn req(start: Start) -> WatchRequest {
    WatchRequest {
        start,
        filter: Filter::all(),
        heartbeat: Duration::from_secs(60),
        timeout: None,
        throttle: None,
        max_lifetime: Duration::from_secs(3600),
        shutdown: CancellationToken::new(),
    }
}

fn seqs(events: &[WatchEvent<It>]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            WatchEvent::Item { item, .. } => Some(item.seq),
            _ => None,
        })
        .collect()
}

async fn take<S: futures_core::Stream<Item = WatchEvent<It>> + Unpin>(
    s: &mut S,
    n: usize,
) -> Vec<WatchEvent<It>> {
    let mut out = vec![];
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(5), s.next()).await {
            Ok(Some(e)) => out.push(e),
            _ => break,
        }
    }
    out
}

#[tokio::test]
async fn resume_after_a_version_misses_nothing_and_repeats_nothing() {
    let f = Fixture::new(Kind::Log);
    f.commit((1..=10).map(|s| it(s, "a", s as f64)).collect());
    let mut w = Box::pin(f.coll.watch(req(Start::After(5))));
    // Live items that overlap what the catch-up reads are not repeated.
    f.commit((11..=12).map(|s| it(s, "a", s as f64)).collect());
    let got = take(&mut w, 7).await;
    assert_eq!(seqs(&got), (6..=12).collect::<Vec<_>>());
    f.commit(vec![it(13, "a", 13.0)]);
    assert_eq!(seqs(&take(&mut w, 1).await), [13]);
}

#[tokio::test]
async fn a_lagging_watcher_catches_up_from_the_store_in_order() {
    let f = Fixture::new(Kind::Log);
    let mut w = Box::pin(f.coll.watch(req(Start::Now)));
    f.commit(vec![it(1, "a", 1.0)]);
    assert_eq!(seqs(&take(&mut w, 1).await), [1]);
    // Far more chunks than the ring keeps, while the watcher is not read.
    let mut seq = 1;
    for _ in 0..(RING * 3) {
        seq += 1;
        f.commit(vec![it(seq, "a", seq as f64)]);
    }
    let got = take(&mut w, (seq - 1) as usize).await;
    assert_eq!(seqs(&got), (2..=seq).collect::<Vec<_>>());
}

#[tokio::test]
async fn falling_out_of_the_ring_is_a_410_error() {
    let f = Fixture::new(Kind::Log);
    f.commit((1..=5).map(|s| it(s, "a", 0.0)).collect());
    let mut w = Box::pin(f.coll.watch(req(Start::After(1))));
    *f.mem.oldest.lock().unwrap() = 3;
    let got = take(&mut w, 1).await;
    match &got[0] {
        WatchEvent::Error { status, oldest, .. } => {
            assert_eq!((*status, *oldest), (410, Some(3)))
        }
        e => panic!("{e:?}"),
    }
    assert!(w.next().await.is_none(), "the stream ends");
}

#[tokio::test]
async fn a_filtered_watch_gets_heartbeats_that_advance() {
    let f = Fixture::new(Kind::Log);
    let filter = Filter::parse(
        None,
        &Shorthands {
            device: Some("nobody".into()),
            ..Shorthands::default()
        },
    )
    .unwrap();
    let mut w = Box::pin(f.coll.watch(WatchRequest {
        filter,
        heartbeat: Duration::from_millis(100),
        ..req(Start::Now)
    }));
    f.commit((1..=3).map(|s| it(s, "a", 0.0)).collect());
    let got = take(&mut w, 1).await;
    match got[0] {
        WatchEvent::Bookmark { seq, .. } => assert_eq!(seq, 3),
        ref e => panic!("{e:?}"),
    }
}

#[tokio::test]
async fn initial_events_then_bookmark_then_live_modified() {
    let f = Fixture::new(Kind::State);
    f.commit(vec![it(1, "a", 1.0), it(2, "b", 2.0), it(3, "a", 3.0)]);
    let mut w = Box::pin(f.coll.watch(req(Start::Initial)));
    let got = take(&mut w, 3).await;
    assert!(
        matches!(&got[0], WatchEvent::Item { kind: EventType::Added, item } if item.key == "a" && item.value == 3.0)
    );
    assert!(
        matches!(&got[1], WatchEvent::Item { kind: EventType::Added, item } if item.key == "b")
    );
    assert!(matches!(
        got[2],
        WatchEvent::Bookmark {
            seq: 3,
            initial_events_end: true
        }
    ));
    f.commit(vec![it(4, "b", 4.0)]);
    let got = take(&mut w, 1).await;
    assert!(
        matches!(&got[0], WatchEvent::Item { kind: EventType::Modified, item } if item.seq == 4)
    );
}

#[tokio::test]
async fn throttle_keeps_the_newest_per_item_and_always_the_last() {
    let f = Fixture::new(Kind::State);
    let mut w = Box::pin(f.coll.watch(WatchRequest {
        throttle: Some(Duration::from_millis(300)),
        timeout: Some(Duration::from_millis(1000)),
        ..req(Start::Now)
    }));
    let mut seq = 0;
    for round in 0..20 {
        for key in ["a", "b"] {
            seq += 1;
            f.commit(vec![it(seq, key, f64::from(round))]);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let got = take(&mut w, 100).await;
    let items: Vec<_> = got
        .iter()
        .filter_map(|e| match e {
            WatchEvent::Item { item, .. } => Some(item.clone()),
            _ => None,
        })
        .collect();
    assert!(items.len() <= 8, "coalesced: {} events", items.len());
    for key in ["a", "b"] {
        let last = items.iter().rev().find(|i| i.key == key).unwrap();
        assert_eq!(last.value, 19.0, "the final value of {key} arrives");
    }
    let s: Vec<_> = items.iter().map(|i| i.seq).collect();
    assert!(s.windows(2).all(|w| w[0] < w[1]), "in seq order: {s:?}");
    assert!(matches!(
        got.last(),
        Some(WatchEvent::Bookmark { seq: 40, .. })
    ));
}

#[tokio::test]
async fn timeout_and_shutdown_end_with_a_bookmark() {
    let f = Fixture::new(Kind::Log);
    f.commit(vec![it(1, "a", 0.0)]);
    let mut w = Box::pin(f.coll.watch(WatchRequest {
        timeout: Some(Duration::from_millis(50)),
        ..req(Start::Now)
    }));
    let got = take(&mut w, 5).await;
    assert!(matches!(
        got.as_slice(),
        [WatchEvent::Bookmark { seq: 1, .. }]
    ));
    let stop = CancellationToken::new();
    let mut w = Box::pin(f.coll.watch(WatchRequest {
        shutdown: stop.clone(),
        ..req(Start::Now)
    }));
    stop.cancel();
    let got = take(&mut w, 5).await;
    assert!(matches!(
        got.as_slice(),
        [WatchEvent::Bookmark { seq: 1, .. }]
    ));
}

#[tokio::test]
async fn since_replays_from_a_time() {
    let f = Fixture::new(Kind::Log);
    f.store_only((1..=10).map(|s| it(s, "a", 0.0)).collect());
    let mut w = Box::pin(f.coll.watch(req(Start::Since(7000))));
    assert_eq!(seqs(&take(&mut w, 4).await), [7, 8, 9, 10]);
}

#[tokio::test]
async fn resource_versions_are_checked() {
    let f = Fixture::new(Kind::Log);
    f.commit((1..=5).map(|s| it(s, "a", 0.0)).collect());
    *f.mem.oldest.lock().unwrap() = 2;
    assert_eq!(f.coll.check_rv("ab12-3").await.unwrap(), 3);
    assert_eq!(f.coll.rv(3), "ab12-3");
    let err = |r: Result<u64, WatchError>| match r {
        Err(WatchError::Rv(e)) => e,
        other => panic!("{other:?}"),
    };
    assert_eq!(err(f.coll.check_rv("nonsense").await), RvError::Malformed);
    assert_eq!(err(f.coll.check_rv("ab12-x").await), RvError::Malformed);
    assert_eq!(err(f.coll.check_rv("ab12-6").await), RvError::Future);
    assert_eq!(
        err(f.coll.check_rv("ab12-1").await),
        RvError::Expired { oldest: 2 }
    );
    assert_eq!(
        err(f.coll.check_rv("cd34-3").await),
        RvError::OtherEpoch { oldest: 2 }
    );
}

#[tokio::test]
async fn lists_page_and_long_polls_wait() {
    let f = Fixture::new(Kind::Log);
    f.commit(
        (1..=25)
            .map(|s| it(s, if s % 2 == 0 { "even" } else { "odd" }, 0.0))
            .collect(),
    );
    let filter = Filter::parse(Some(r#"device == "even""#), &Shorthands::default()).unwrap();
    let p1 = f.coll.list(None, None, None, &filter, 5).await.unwrap();
    assert_eq!(
        p1.items.iter().map(|i| i.seq).collect::<Vec<_>>(),
        [2, 4, 6, 8, 10]
    );
    assert_eq!(p1.rv, 25);
    f.commit(vec![it(26, "even", 0.0)]);
    let p2 = f
        .coll
        .list(p1.next.clone(), None, None, &filter, 100)
        .await
        .unwrap();
    assert_eq!(
        p2.items.len(),
        7,
        "the second page stays within the first page's version"
    );
    assert!(p2.next.is_none());

    let (items, rv) = f
        .coll
        .wait_after(26, &filter, 10, Duration::from_millis(100))
        .await
        .unwrap();
    assert!(items.is_empty());
    assert_eq!(rv, 26);
    let coll = f.coll.clone();
    let waiter = tokio::spawn(async move {
        coll.wait_after(26, &filter, 10, Duration::from_secs(5))
            .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    f.commit(vec![it(27, "odd", 0.0), it(28, "even", 0.0)]);
    let (items, rv) = waiter.await.unwrap().unwrap();
    assert_eq!(items.iter().map(|i| i.seq).collect::<Vec<_>>(), [28]);
    assert_eq!(rv, 28);
}

#[tokio::test]
async fn changes_advanced_without_watchers_are_read_from_the_store() {
    let f = Fixture::new(Kind::Log);
    let mut w = Box::pin(f.coll.watch(req(Start::Now)));
    // Committed while the feeder believed nobody listened.
    f.store_only((1..=3).map(|s| it(s, "a", 0.0)).collect());
    f.coll.advance(3);
    f.commit(vec![it(4, "a", 0.0)]);
    assert_eq!(seqs(&take(&mut w, 4).await), [1, 2, 3, 4]);
}

#[tokio::test]
async fn a_watcher_behind_changes_shown_before_their_commit_waits_for_it() {
    let f = Fixture::new(Kind::Log);
    f.commit((1..=3).map(|s| it(s, "a", 0.0)).collect());
    // Shown to the ring, not yet in the store.
    let early: Vec<_> = (4..=6).map(|s| it(s, "a", 0.0)).collect();
    f.show(early.clone());
    // A watcher resuming at 2 subscribes after 4..=6 went by: the store
    // has only 3 so far; it must wait for the commit, not skip or spin.
    let mut w = Box::pin(f.coll.watch(req(Start::After(2))));
    assert_eq!(seqs(&take(&mut w, 1).await), [3]);
    let pending = tokio::time::timeout(Duration::from_millis(200), w.next()).await;
    assert!(pending.is_err(), "nothing to send before the commit");
    f.commit_shown(early);
    f.commit(vec![it(7, "a", 0.0)]);
    assert_eq!(seqs(&take(&mut w, 4).await), [4, 5, 6, 7]);

    // A long poll gets shown changes from the ring as they come.
    let coll = f.coll.clone();
    let poll = tokio::spawn(async move {
        coll.wait_after(7, &Filter::all(), 10, Duration::from_secs(5))
            .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    f.show(vec![it(8, "a", 0.0)]);
    let (items, rv) = poll.await.unwrap().unwrap();
    assert_eq!((items.len(), rv), (1, 8));
}
