//! The read model of the watch routes against a real SQLite file: the latest
//! collection, the devices collection with presence, what a commit publishes,
//! the upgrade of a version-1 database, and the reader's log queries.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use telltale_store::writer::{IncomingBatch, Reject, WriteOp};
use telltale_store::{now_ms, Presence, Reader, Retention, StoreConfig, StoredValue};
use telltale_wire::decode::{Reading, Value};

mod common;
use common::open;

/// Every group ends at its `sync`: one `sync` is one commit.
fn one_group_per_sync() -> StoreConfig {
    StoreConfig {
        commit_interval_ms: 60_000,
        ..StoreConfig::default()
    }
}

/// A reading of `metric` taken `ago_ms` before `now`.
fn at(metric: &str, now: i64, ago_ms: i64, v: f64) -> Reading {
    Reading {
        name: metric.into(),
        unit: Some("Cel".into()),
        value: Value::Num(v),
        time: (now - ago_ms) as f64 / 1000.0,
    }
}

fn batch(device: &str, readings: Vec<Reading>) -> WriteOp {
    WriteOp::Batch(IncomingBatch {
        device: device.into(),
        batch: None,
        readings,
    })
}

fn status(
    device: &str,
    online: bool,
    agent: Option<&str>,
    labels: Option<&[(&str, &str)]>,
) -> WriteOp {
    WriteOp::Presence(Presence {
        device: device.into(),
        at_ms: now_ms(),
        online,
        agent: agent.map(Into::into),
        labels: labels.map(|l| {
            l.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        }),
    })
}

fn labels(l: &[(&str, &str)]) -> BTreeMap<String, String> {
    l.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// (device, metric, value) of every latest row.
fn latest_values(r: &Reader) -> Vec<(String, String, f64)> {
    r.latest_all()
        .expect("latest")
        .into_iter()
        .map(|l| {
            let StoredValue::Num(v) = l.value else {
                panic!("a number was stored")
            };
            (l.device.to_string(), l.metric.to_string(), v)
        })
        .collect()
}

#[tokio::test]
async fn latest_keeps_the_newest_by_time_and_ignores_a_late_older_reading() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("hub.db");
    let (w, _j, _acks) = open(&db, one_group_per_sync());
    let now = now_ms();
    // In one group the newest by time wins, wherever it sits in the group.
    w.send(batch(
        "a",
        vec![
            at("temp", now, 3000, 1.0),
            at("temp", now, 1000, 2.0),
            at("temp", now, 2000, 3.0),
        ],
    ))
    .await
    .expect("send");
    w.sync().await.expect("sync");
    let r = Reader::open(&db).expect("reader");
    assert_eq!(latest_values(&r), [("a".into(), "temp".into(), 2.0)]);
    let row = &r.latest_all().expect("latest")[0];
    assert_eq!(row.reading_seq, 2, "the row points at its reading");
    assert_eq!(row.ts_ms, now - 1000);
    assert_eq!(row.unit.as_deref(), Some("Cel"));
    assert_eq!(row.seq, 1);

    // An outbox flush delivers an older reading late: the log takes it, the
    // latest row does not, and the latest seq stays.
    w.send(batch("a", vec![at("temp", now, 60_000, 9.0)]))
        .await
        .expect("send");
    w.sync().await.expect("sync");
    assert_eq!(r.count_readings().expect("count"), 4);
    assert_eq!(latest_values(&r), [("a".into(), "temp".into(), 2.0)]);
    assert_eq!(r.collection_seqs().expect("seqs").1, 1);
    assert!(r.latest_after(1, 10).expect("after").is_empty());

    // The same time stamp again: the later reading (higher seq) wins.
    w.send(batch("a", vec![at("temp", now, 1000, 4.0)]))
        .await
        .expect("send");
    w.sync().await.expect("sync");
    assert_eq!(latest_values(&r), [("a".into(), "temp".into(), 4.0)]);
    let row = &r.latest_all().expect("latest")[0];
    assert_eq!((row.seq, row.reading_seq), (2, 5));

    // Within a group, a tie also goes to the later reading.
    w.send(batch(
        "a",
        vec![at("temp", now, 0, 5.0), at("temp", now, 0, 6.0)],
    ))
    .await
    .expect("send");
    w.sync().await.expect("sync");
    assert_eq!(latest_values(&r), [("a".into(), "temp".into(), 6.0)]);
}

#[tokio::test]
async fn latest_seq_moves_once_per_changed_key_per_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("hub.db");
    let (w, _j, _acks) = open(&db, one_group_per_sync());
    let now = now_ms();
    let many = |metric: &str, n: i64| {
        (0..n)
            .map(|i| at(metric, now, 10_000 - i, i as f64))
            .collect::<Vec<_>>()
    };
    let mut a = many("temp", 5);
    a.extend(many("hum", 3));
    w.send(batch("a", a)).await.expect("send");
    w.send(batch("b", many("temp", 2))).await.expect("send");
    w.send(batch("b", many("temp", 2))).await.expect("send");
    w.sync().await.expect("sync");
    let r = Reader::open(&db).expect("reader");
    // Three keys changed: three latest seqs, numbered in reading order.
    let rows = r.latest_after(0, 100).expect("after");
    assert_eq!(
        rows.iter()
            .map(|l| (l.seq, l.device.as_ref(), l.metric.as_ref(), l.reading_seq))
            .collect::<Vec<_>>(),
        [
            (1, "a", "temp", 5),
            (2, "a", "hum", 8),
            (3, "b", "temp", 12)
        ]
    );
    assert_eq!(r.collection_seqs().expect("seqs"), (12, 3, 2));
    assert_eq!(w.stats.latest_seq.load(Relaxed), 3);
    // latest_all is ordered by device, then metric.
    assert_eq!(
        latest_values(&r),
        [
            ("a".into(), "hum".into(), 2.0),
            ("a".into(), "temp".into(), 4.0),
            ("b".into(), "temp".into(), 1.0)
        ]
    );

    // One key changes in the next commit: one more seq.
    w.send(batch(
        "a",
        vec![at("temp", now, 0, 7.0), at("temp", now, 0, 8.0)],
    ))
    .await
    .expect("send");
    w.sync().await.expect("sync");
    let rows = r.latest_after(3, 100).expect("after");
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].seq, rows[0].metric.as_ref()), (4, "temp"));
    assert_eq!(rows[0].value, StoredValue::Num(8.0));
    assert_eq!(r.latest_after(0, 2).expect("page").len(), 2, "limit holds");

    // The sequence survives a restart and is never reused.
    drop(w);
    _j.join().expect("writer ends");
    let (w, _j, _acks) = open(&db, one_group_per_sync());
    assert_eq!(w.stats.latest_seq.load(Relaxed), 4);
    w.send(batch("b", vec![at("temp", now, 0, 9.0)]))
        .await
        .expect("send");
    w.sync().await.expect("sync");
    assert_eq!(r.collection_seqs().expect("seqs").1, 5);
}

#[tokio::test]
async fn presence_online_offline_keeps_labels_across_a_last_will() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("hub.db");
    let (w, _j, _acks) = open(&db, one_group_per_sync());
    let r = Reader::open(&db).expect("reader");
    w.send(status(
        "a",
        true,
        Some("telltale-agent/0.1.0"),
        Some(&[("site", "north")]),
    ))
    .await
    .expect("send");
    w.sync().await.expect("sync");
    let d = r.device("a").expect("query").expect("device a");
    assert_eq!(d.online, Some(true));
    assert_eq!(d.agent.as_deref(), Some("telltale-agent/0.1.0"));
    assert_eq!(d.labels, labels(&[("site", "north")]));
    assert!(d.first_seen_ms.is_some() && d.first_seen_ms == d.last_seen_ms);
    let first = d.seq;

    // The Last Will carries neither agent nor labels: both are kept.
    w.send(status("a", false, None, None)).await.expect("send");
    w.sync().await.expect("sync");
    let d = r.device("a").expect("query").expect("device a");
    assert_eq!(d.online, Some(false));
    assert_eq!(d.agent.as_deref(), Some("telltale-agent/0.1.0"));
    assert_eq!(d.labels, labels(&[("site", "north")]));
    assert!(d.seq > first, "going offline is a change");

    // A birth with other labels replaces them; an empty set clears them.
    w.send(status(
        "a",
        true,
        None,
        Some(&[("site", "south"), ("room", "2")]),
    ))
    .await
    .expect("send");
    w.sync().await.expect("sync");
    let d = r.device("a").expect("query").expect("device a");
    assert_eq!(
        (d.online, d.labels),
        (Some(true), labels(&[("room", "2"), ("site", "south")]))
    );
    w.send(status("a", true, None, Some(&[])))
        .await
        .expect("send");
    w.sync().await.expect("sync");
    assert!(r.device("a").expect("query").expect("a").labels.is_empty());

    // A device that never sent a status has no presence, and is listed.
    w.send(batch("b", vec![at("temp", now_ms(), 0, 1.0)]))
        .await
        .expect("send");
    w.sync().await.expect("sync");
    let all = r.devices_all().expect("devices");
    assert_eq!(
        all.iter()
            .map(|d| (d.id.as_ref(), d.online))
            .collect::<Vec<_>>(),
        [("a", Some(true)), ("b", None)]
    );
    assert!(r.device("nobody").expect("query").is_none());
}

#[tokio::test]
async fn devices_seq_moves_for_new_devices_and_changes_not_for_every_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("hub.db");
    let (w, j, _acks) = open(&db, one_group_per_sync());
    let r = Reader::open(&db).expect("reader");
    let now = now_ms();
    w.send(batch("a", vec![at("temp", now, 0, 1.0)]))
        .await
        .expect("send");
    w.sync().await.expect("sync");
    let d = r.device("a").expect("query").expect("a is new");
    assert_eq!(d.seq, 1, "a new device changes");
    assert_eq!(r.collection_seqs().expect("seqs").2, 1);
    let seen = d.last_seen_ms.expect("seen");

    // More messages within 10 s: last_seen is written, no devices event.
    for i in 0..3 {
        w.send(batch("a", vec![at("temp", now, 0, i as f64)]))
            .await
            .expect("send");
        w.sync().await.expect("sync");
    }
    let d = r.device("a").expect("query").expect("a");
    assert_eq!(d.seq, 1);
    assert!(d.last_seen_ms.expect("seen") >= seen);
    assert_eq!(d.first_seen_ms, Some(seen), "first_seen is set once");
    assert!(r.devices_after(1, 10).expect("after").is_empty());
    assert_eq!(w.stats.devices_seq.load(Relaxed), 1);

    // A reject names a device too: it is new, then seen.
    w.send(WriteOp::Reject(Reject {
        at_ms: now,
        topic: "t".into(),
        device: Some("c".into()),
        kind: "not_senml",
        reason: "bad".into(),
        payload: vec![],
        batch: None,
    }))
    .await
    .expect("send");
    // A presence change is a change.
    w.send(status("a", true, None, None)).await.expect("send");
    w.sync().await.expect("sync");
    let after = r.devices_after(1, 10).expect("after");
    assert_eq!(
        after
            .iter()
            .map(|d| (d.seq, d.id.as_ref()))
            .collect::<Vec<_>>(),
        [(2, "a"), (3, "c")]
    );
    // The same presence again is no change.
    w.send(status("a", true, None, None)).await.expect("send");
    w.sync().await.expect("sync");
    assert_eq!(r.collection_seqs().expect("seqs").2, 3);
    drop(w);
    j.join().expect("writer ends");

    // Watchers last saw a's last_seen a minute ago (made so by hand): its
    // next message is an event.
    let conn = rusqlite::Connection::open(&db).expect("open");
    conn.execute(
        "UPDATE devices SET last_seen = last_seen - 60000 WHERE name = 'a'",
        [],
    )
    .expect("age last_seen");
    drop(conn);
    let (w, _j, _acks) = open(&db, one_group_per_sync());
    w.send(batch("a", vec![at("temp", now, 0, 1.0)]))
        .await
        .expect("send");
    w.send(batch("c", vec![at("temp", now, 0, 1.0)]))
        .await
        .expect("send");
    w.sync().await.expect("sync");
    let after = r.devices_after(3, 10).expect("after");
    assert_eq!(
        after
            .iter()
            .map(|d| (d.seq, d.id.as_ref()))
            .collect::<Vec<_>>(),
        [(4, "a")],
        "only the device whose last_seen event is old changes"
    );
}

#[tokio::test]
async fn committed_carries_the_changed_latest_and_device_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("hub.db");
    let (w, _j, _acks) = open(&db, one_group_per_sync());
    let mut events = w.subscribe();
    let now = now_ms();
    w.send(status("a", true, Some("x/1"), Some(&[("site", "n")])))
        .await
        .expect("send");
    w.send(batch(
        "a",
        vec![
            at("temp", now, 2000, 1.0),
            at("hum", now, 0, 50.0),
            at("temp", now, 1000, 2.0),
        ],
    ))
    .await
    .expect("send");
    w.sync().await.expect("sync");
    let c = events.recv().await.expect("a commit");
    assert_eq!(c.readings.len(), 3);
    assert_eq!(c.last_seq, 3);
    assert_eq!(
        c.latest
            .iter()
            .map(|l| (l.seq, l.metric.as_ref(), l.reading_seq))
            .collect::<Vec<_>>(),
        [(1, "hum", 2), (2, "temp", 3)]
    );
    assert_eq!(c.latest_seq, 2);
    assert_eq!(c.devices.len(), 1);
    let d = &c.devices[0];
    assert_eq!((d.seq, d.id.as_ref(), d.online), (1, "a", Some(true)));
    assert_eq!(d.labels, labels(&[("site", "n")]));
    assert_eq!(c.devices_seq, 1);
    // What the commit published is what a reader finds.
    let r = Reader::open(&db).expect("reader");
    assert_eq!(r.latest_after(0, 10).expect("latest"), c.latest);
    assert_eq!(r.devices_after(0, 10).expect("devices"), c.devices);

    // A late old reading: in the log, no latest change, no devices event.
    w.send(batch("a", vec![at("temp", now, 60_000, 0.0)]))
        .await
        .expect("send");
    w.sync().await.expect("sync");
    let c = events.recv().await.expect("a commit");
    assert_eq!(c.readings.len(), 1);
    assert!(c.latest.is_empty() && c.devices.is_empty());
    assert_eq!((c.latest_seq, c.devices_seq), (2, 1));

    // A status alone is published too.
    w.send(status("a", false, None, None)).await.expect("send");
    w.sync().await.expect("sync");
    let c = events.recv().await.expect("a commit");
    assert!(c.readings.is_empty() && c.latest.is_empty());
    assert_eq!(c.devices.len(), 1);
    assert_eq!((c.devices[0].seq, c.devices[0].online), (2, Some(false)));
    assert_eq!(c.devices[0].agent.as_deref(), Some("x/1"));
}

/// The version-1 schema, as the first release created it.
const V1_SCHEMA: &str = "
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE devices (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
    CREATE TABLE names (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
    CREATE TABLE readings (
        seq INTEGER PRIMARY KEY,
        ts INTEGER NOT NULL,
        device INTEGER NOT NULL,
        metric INTEGER NOT NULL,
        unit INTEGER,
        v
    );
    CREATE TABLE outboxes (
        device INTEGER NOT NULL,
        outbox INTEGER NOT NULL,
        upto INTEGER NOT NULL,
        updated INTEGER NOT NULL,
        PRIMARY KEY (device, outbox)
    ) WITHOUT ROWID;
    CREATE TABLE batches (
        device INTEGER NOT NULL,
        outbox INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (device, outbox, seq)
    ) WITHOUT ROWID;
    CREATE TABLE rejects (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        topic TEXT NOT NULL,
        device TEXT,
        kind TEXT NOT NULL,
        reason TEXT NOT NULL,
        size INTEGER NOT NULL,
        payload BLOB NOT NULL
    );
    CREATE TABLE reject_counts (kind TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
    PRAGMA user_version = 1;
";

/// seq, ts, device, metric, unit, v: a row of version 1's `readings`.
type V1Reading = (i64, i64, i64, i64, Option<i64>, rusqlite::types::Value);

#[tokio::test]
async fn a_version_1_database_upgrades_in_place_and_keeps_its_readings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("hub.db");
    let now = now_ms();
    {
        let conn = rusqlite::Connection::open(&db).expect("create");
        conn.execute_batch(V1_SCHEMA).expect("v1 schema");
        conn.execute_batch(
            "INSERT INTO meta VALUES ('epoch', '0badcafe'), ('readings_seq', '7');
             INSERT INTO devices VALUES (1, 'a'), (2, 'b'), (3, 'quiet');
             INSERT INTO names VALUES (1, 'temp'), (2, 'Cel'), (3, 'door');",
        )
        .expect("v1 rows");
        // Seq 1 was deleted by the ring. a/temp: the newest by time is seq 3
        // although seq 5 arrived later; b/temp: a tie on time goes to seq 6.
        let rows: &[V1Reading] = &[
            (2, now - 5000, 1, 1, Some(2), 20.0.into()),
            (3, now - 1000, 1, 1, Some(2), 21.0.into()),
            (4, now - 3000, 1, 3, None, 1i64.into()),
            (5, now - 9000, 1, 1, Some(2), 19.0.into()),
            (6, now - 2000, 2, 1, Some(2), 30.0.into()),
            (7, now - 2000, 2, 1, Some(2), 31.0.into()),
        ];
        for (seq, ts, dev, metric, unit, v) in rows {
            conn.execute(
                "INSERT INTO readings(seq, ts, device, metric, unit, v) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                rusqlite::params![seq, ts, dev, metric, unit, v],
            )
            .expect("v1 reading");
        }
    }
    let before = Reader::open(&db)
        .expect("reader")
        .readings_after(0, 100)
        .expect("v1 readings");

    let (w, j, _acks) = open(&db, one_group_per_sync());
    assert_eq!(w.epoch.as_ref(), "0badcafe", "the epoch is kept");
    let r = Reader::open(&db).expect("reader");
    assert_eq!(r.readings_after(0, 100).expect("readings"), before);
    assert_eq!(r.oldest_reading_seq().expect("oldest"), 2);
    // The latest collection is filled from the log, numbered in reading order.
    let latest = r.latest_after(0, 100).expect("latest");
    assert_eq!(
        latest
            .iter()
            .map(|l| (l.seq, l.device.as_ref(), l.metric.as_ref(), l.reading_seq))
            .collect::<Vec<_>>(),
        [
            (1, "a", "temp", 3),
            (2, "a", "door", 4),
            (3, "b", "temp", 7)
        ]
    );
    assert_eq!(latest[1].value, StoredValue::Bool(true));
    assert_eq!(latest[1].unit, None);
    // Every known device is in the devices collection, its presence unknown.
    let devices = r.devices_all().expect("devices");
    assert_eq!(
        devices
            .iter()
            .map(|d| (
                d.seq,
                d.id.as_ref(),
                d.online,
                d.last_seen_ms,
                d.first_seen_ms
            ))
            .collect::<Vec<_>>(),
        [
            (1, "a", None, Some(now - 1000), None),
            (2, "b", None, Some(now - 2000), None),
            (3, "quiet", None, None, None)
        ]
    );
    assert_eq!(r.collection_seqs().expect("seqs"), (7, 3, 3));

    // Writing goes on where the log left off.
    w.send(batch("a", vec![at("temp", now, 0, 22.0)]))
        .await
        .expect("send");
    assert_eq!(w.sync().await.expect("sync"), 8);
    assert_eq!(r.count_readings().expect("count"), 7);
    let a = r.device("a").expect("query").expect("a");
    assert_eq!(a.seq, 4, "first seen since presence is tracked: a change");
    assert!(a.first_seen_ms.is_some());
    assert_eq!(r.latest_after(3, 10).expect("latest")[0].reading_seq, 8);
    drop(w);
    j.join().expect("writer ends");

    // Opening again migrates nothing twice.
    let (_w, _j, _acks) = open(&db, one_group_per_sync());
    assert_eq!(r.collection_seqs().expect("seqs"), (8, 4, 4));
    let version: i64 = rusqlite::Connection::open(&db)
        .expect("open")
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("version");
    assert_eq!(
        version, 4,
        "every migration ran once (3: alerts, 4: commands)"
    );
}

#[tokio::test]
async fn first_seq_at_or_after_time_searches_the_log_by_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("hub.db");
    let (w, _j, _acks) = open(&db, one_group_per_sync());
    let r = Reader::open(&db).expect("reader");
    assert_eq!(
        r.first_seq_at_or_after_time(0).expect("search"),
        None,
        "empty log"
    );
    // 1000 readings one second apart, the newest now.
    let now = now_ms();
    let t = |i: i64| now - (999 - i) * 1000;
    for chunk in 0..10 {
        let readings = (0..100)
            .map(|i| at("temp", now, (999 - (chunk * 100 + i)) * 1000, i as f64))
            .collect();
        w.send(batch("a", readings)).await.expect("send");
    }
    w.sync().await.expect("sync");
    let find = |ts: i64| r.first_seq_at_or_after_time(ts).expect("search");
    assert_eq!(find(t(0) - 60_000), Some(1), "before the log: its start");
    assert_eq!(find(t(0)), Some(1));
    assert_eq!(find(t(1) - 1), Some(2));
    assert_eq!(find(t(500)), Some(501));
    assert_eq!(find(t(500) + 1), Some(502));
    assert_eq!(find(t(999)), Some(1000));
    assert_eq!(find(t(999) + 1), None, "newer than every reading");
    for i in (0..1000).step_by(37) {
        assert_eq!(find(t(i)), Some(i as u64 + 1), "reading {i}");
    }
    // A replay from there, filtered by time, holds exactly the readings since.
    let since = t(990);
    let from = find(since).expect("found");
    let replay: Vec<_> = r
        .readings_after(from - 1, 100)
        .expect("replay")
        .into_iter()
        .filter(|x| x.ts_ms >= since)
        .collect();
    assert_eq!(replay.len(), 10);
}

#[tokio::test]
async fn first_seq_at_or_after_time_starts_at_the_ring_s_oldest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("hub.db");
    let config = StoreConfig {
        retention: Retention {
            max_rows: 100,
            delete_batch: 50,
            ..Retention::default()
        },
        ..one_group_per_sync()
    };
    let (w, _j, _acks) = open(&db, config);
    let now = now_ms();
    for step in 0..4 {
        let readings = (0..100)
            .map(|i| at("temp", now, (400 - (step * 100 + i)) * 1000, 0.0))
            .collect();
        w.send(batch("a", readings)).await.expect("send");
        w.sync().await.expect("sync");
    }
    let r = Reader::open(&db).expect("reader");
    let oldest = r.oldest_reading_seq().expect("oldest");
    assert!(oldest > 1, "the ring dropped the head");
    assert_eq!(
        r.first_seq_at_or_after_time(0).expect("search"),
        Some(oldest)
    );
    assert_eq!(
        r.first_seq_at_or_after_time(now - 50_000).expect("search"),
        Some(351)
    );
}

#[tokio::test]
async fn readings_between_pages_up_to_a_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("hub.db");
    let config = StoreConfig {
        retention: Retention {
            max_rows: 0,
            delete_batch: 100,
            ..Retention::default()
        },
        ..one_group_per_sync()
    };
    let (w, j, _acks) = open(&db, one_group_per_sync());
    let r = Reader::open(&db).expect("reader");
    assert_eq!(
        r.oldest_reading_seq().expect("oldest"),
        1,
        "empty: the next seq"
    );
    let now = now_ms();
    w.send(batch(
        "a",
        (0..10).map(|i| at("temp", now, 0, i as f64)).collect(),
    ))
    .await
    .expect("send");
    w.sync().await.expect("sync");
    let seqs = |after, upto, limit| {
        r.readings_between(after, upto, limit)
            .expect("between")
            .iter()
            .map(|x| x.seq)
            .collect::<Vec<_>>()
    };
    assert_eq!(seqs(2, 7, 100), [3, 4, 5, 6, 7]);
    assert_eq!(seqs(2, 7, 2), [3, 4]);
    assert_eq!(seqs(7, 7, 100), Vec::<u64>::new());
    assert_eq!(seqs(8, u64::MAX, 100), [9, 10]);
    assert_eq!(seqs(u64::MAX, u64::MAX, 100), Vec::<u64>::new());
    let all = r.readings_between(0, 10, 100).expect("between");
    assert_eq!(all, r.readings_after(0, 100).expect("after"));
    assert_eq!(all[3].value, StoredValue::Num(3.0));
    drop(w);
    j.join().expect("writer ends");

    // A ring that keeps nothing: the oldest seq is the next one.
    let (w, _j, _acks) = open(&db, config);
    w.send(batch("a", vec![at("temp", now, 0, 1.0)]))
        .await
        .expect("send");
    w.sync().await.expect("sync");
    assert_eq!(r.count_readings().expect("count"), 0);
    assert_eq!(r.oldest_reading_seq().expect("oldest"), 12);
    assert_eq!(r.collection_seqs().expect("seqs").0, 11);
}

#[tokio::test]
async fn a_snapshot_sees_one_committed_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("hub.db");
    let (w, _j, _acks) = open(&db, one_group_per_sync());
    w.send(batch("a", vec![at("temp", now_ms(), 0, 1.0)]))
        .await
        .expect("send");
    w.sync().await.expect("sync");
    let r = Reader::open(&db).expect("reader");
    let (rows, seqs, later) = r
        .snapshot(|r| {
            let rows = r.latest_all()?;
            // Another connection commits in between (WAL lets it).
            let other = rusqlite::Connection::open(&db).expect("open");
            other
                .execute_batch(
                    "UPDATE meta SET value = '99' WHERE key = 'latest_seq';
                     DELETE FROM latest;",
                )
                .expect("commit elsewhere");
            // Nested: shares the outer snapshot.
            let later = r.snapshot(|r| r.latest_all())?;
            Ok((rows, r.collection_seqs()?, later))
        })
        .expect("snapshot");
    assert_eq!(rows.len(), 1);
    assert_eq!(later, rows, "the commit is not seen inside the snapshot");
    assert_eq!(seqs.1, 1);
    assert_eq!(
        r.collection_seqs().expect("seqs").1,
        99,
        "and is seen after it"
    );
    assert!(r.latest_all().expect("latest").is_empty());
}
