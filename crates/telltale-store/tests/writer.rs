//! The writer against a real SQLite file: idempotent batches and acks,
//! retention as a ring, bounded rejects, sequence and epoch across reopen.

use telltale_store::writer::{AckOut, IncomingBatch, Reject, WriteOp};
use telltale_store::{Reader, Retention, StoreConfig};
use telltale_wire::decode::{Reading, Value};
use telltale_wire::BatchId;
use tokio::sync::mpsc;

mod common;
use common::open;

fn readings(n: usize, start: f64) -> Vec<Reading> {
    (0..n)
        .map(|i| Reading {
            name: "temp".into(),
            unit: Some("Cel".into()),
            value: Value::Num(start + i as f64),
            time: telltale_store::now_ms() as f64 / 1000.0 + i as f64,
        })
        .collect()
}

fn batch(device: &str, id: Option<(u64, u64, u64)>, n: usize, start: f64) -> WriteOp {
    WriteOp::Batch(IncomingBatch {
        device: device.into(),
        batch: id.map(|(outbox, seq, low)| BatchId { outbox, seq, low }),
        readings: readings(n, start),
    })
}

fn drain(rx: &mut mpsc::UnboundedReceiver<Vec<AckOut>>) -> Vec<AckOut> {
    let mut out = vec![];
    while let Ok(v) = rx.try_recv() {
        out.extend(v);
    }
    out
}

fn fast() -> StoreConfig {
    StoreConfig {
        commit_interval_ms: 20,
        ..StoreConfig::default()
    }
}

#[tokio::test]
async fn duplicate_batches_are_stored_once_and_acks_follow_contiguity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("hub.db");
    let (w, _j, mut acks) = open(&db, fast());
    w.send(batch("a", Some((7, 1, 1)), 3, 0.0))
        .await
        .expect("send");
    w.send(batch("a", Some((7, 1, 1)), 3, 0.0))
        .await
        .expect("send");
    w.send(batch("a", Some((7, 3, 1)), 2, 10.0))
        .await
        .expect("send");
    w.sync().await.expect("sync");
    let r = Reader::open(&db).expect("reader");
    assert_eq!(r.count_readings().expect("count"), 5);
    let got = drain(&mut acks);
    // Batch 2 is missing: the ack stops at 1.
    assert_eq!(got.last().map(|a| a.upto), Some(1));
    w.send(batch("a", Some((7, 2, 1)), 4, 20.0))
        .await
        .expect("send");
    w.sync().await.expect("sync");
    assert_eq!(drain(&mut acks).last().map(|a| a.upto), Some(3));
    assert_eq!(r.count_readings().expect("count"), 9);
    // A resend of anything up to 3 is a duplicate, still acknowledged.
    w.send(batch("a", Some((7, 3, 1)), 2, 10.0))
        .await
        .expect("send");
    w.sync().await.expect("sync");
    assert_eq!(r.count_readings().expect("count"), 9);
    assert_eq!(
        drain(&mut acks),
        vec![AckOut {
            device: "a".into(),
            outbox: 7,
            upto: 3
        }]
    );
    // Another device with the same outbox id is another sender.
    w.send(batch("b", Some((7, 1, 1)), 1, 0.0))
        .await
        .expect("send");
    // The sender dropped batches 4..=9: low = 10 moves past the gap.
    w.send(batch("a", Some((7, 10, 10)), 1, 0.0))
        .await
        .expect("send");
    w.sync().await.expect("sync");
    assert_eq!(r.count_readings().expect("count"), 11);
    let mut got = drain(&mut acks);
    got.sort_by(|x, y| x.device.cmp(&y.device));
    assert_eq!(
        got.iter()
            .map(|a| (a.device.as_str(), a.upto))
            .collect::<Vec<_>>(),
        [("a", 10), ("b", 1)]
    );
    drop(w);
    _j.join().expect("writer ends");

    // After a restart the hub still knows what it stored.
    let (w, _j, mut acks) = open(&db, fast());
    w.send(batch("a", Some((7, 2, 1)), 4, 20.0))
        .await
        .expect("send");
    w.send(batch("a", Some((7, 11, 11)), 1, 0.0))
        .await
        .expect("send");
    w.sync().await.expect("sync");
    assert_eq!(r.count_readings().expect("count"), 12);
    assert_eq!(drain(&mut acks).last().map(|a| a.upto), Some(11));
}

#[tokio::test]
async fn retention_is_a_ring_bounded_by_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("hub.db");
    let config = StoreConfig {
        retention: Retention {
            max_rows: 1000,
            delete_batch: 100,
            ..Retention::default()
        },
        ..fast()
    };
    let (w, _j, _acks) = open(&db, config);
    let r = Reader::open(&db).expect("reader");
    let mut last_oldest = 0;
    for i in 0..60 {
        w.send(batch("a", None, 97, i as f64)).await.expect("send");
        let last = w.sync().await.expect("sync");
        let held = r.count_readings().expect("count");
        assert!(held <= 1000 + 100, "held {held} rows at step {i}");
        let (oldest, newest) = r.seq_range().expect("range").expect("rows");
        assert_eq!(newest, last);
        assert!(oldest >= last_oldest, "oldest seq went back");
        last_oldest = oldest;
    }
    assert!(
        last_oldest > 4000,
        "oldest seq moved forward: {last_oldest}"
    );
    assert!(w.stats.deleted.load(std::sync::atomic::Ordering::Relaxed) >= 4800);
}

#[tokio::test]
async fn rejects_are_counted_and_the_newest_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("hub.db");
    let config = StoreConfig {
        max_rejects: 5,
        reject_payload_bytes: 4,
        ..fast()
    };
    let (w, _j, _acks) = open(&db, config);
    for i in 0..8 {
        w.send(WriteOp::Reject(Reject {
            at_ms: i,
            topic: "t".into(),
            device: Some("d".into()),
            kind: if i % 2 == 0 { "not_senml" } else { "bad_name" },
            reason: format!("reason {i}"),
            payload: vec![1, 2, 3, 4, 5, 6],
            batch: None,
        }))
        .await
        .expect("send");
    }
    w.sync().await.expect("sync");
    let r = Reader::open(&db).expect("reader");
    let kept = r.rejects(100).expect("rejects");
    assert_eq!(kept.len(), 5);
    assert_eq!(kept[0].reason, "reason 7");
    assert_eq!(kept[0].payload, [1, 2, 3, 4]);
    assert_eq!(kept[0].size, 6);
    assert_eq!(
        r.reject_counts().expect("counts"),
        [("bad_name".to_string(), 4), ("not_senml".to_string(), 4)]
    );
}

#[tokio::test]
async fn sequence_is_never_reused_and_epoch_persists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("hub.db");
    let config = StoreConfig {
        retention: Retention {
            max_rows: 1,
            delete_batch: 10,
            ..Retention::default()
        },
        ..fast()
    };
    let (w, j, _acks) = open(&db, config.clone());
    let epoch = w.epoch.clone();
    w.send(batch("a", None, 5, 0.0)).await.expect("send");
    assert_eq!(w.sync().await.expect("sync"), 5);
    drop(w);
    j.join().expect("writer ends");
    let (w, _j, _acks) = open(&db, config);
    assert_eq!(w.epoch, epoch);
    w.send(batch("a", None, 1, 0.0)).await.expect("send");
    assert_eq!(w.sync().await.expect("sync"), 6);
    let other = tempfile::tempdir().expect("tempdir");
    let (w2, _j2, _a2) = open(&other.path().join("hub.db"), fast());
    assert_ne!(w2.epoch, epoch, "another database has another epoch");
}

#[tokio::test]
async fn a_refused_batch_is_acknowledged_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("hub.db");
    let (w, _j, mut acks) = open(&db, fast());
    w.send(batch("a", Some((5, 1, 1)), 2, 0.0))
        .await
        .expect("send");
    for _ in 0..2 {
        w.send(WriteOp::Reject(Reject {
            at_ms: 0,
            topic: "t".into(),
            device: Some("a".into()),
            kind: "wrong_type",
            reason: "bad".into(),
            payload: vec![],
            batch: Some(BatchId {
                outbox: 5,
                seq: 2,
                low: 1,
            }),
        }))
        .await
        .expect("send");
    }
    w.send(batch("a", Some((5, 3, 1)), 2, 0.0))
        .await
        .expect("send");
    w.sync().await.expect("sync");
    assert_eq!(drain(&mut acks).last().map(|a| a.upto), Some(3));
    let r = Reader::open(&db).expect("reader");
    assert_eq!(
        r.rejects(10).expect("rejects").len(),
        1,
        "the resend is not kept twice"
    );
    assert_eq!(r.count_readings().expect("count"), 4);
}

#[tokio::test]
async fn old_readings_age_out_but_one_stale_clock_does_not_empty_the_ring() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("hub.db");
    let config = StoreConfig {
        retention: Retention {
            max_age_secs: 3600,
            delete_batch: 10,
            ..Retention::default()
        },
        ..fast()
    };
    let (w, _j, _acks) = open(&db, config);
    let now = telltale_store::now_ms() as f64 / 1000.0;
    let at = |t: f64, n: usize| {
        WriteOp::Batch(IncomingBatch {
            device: "a".into(),
            batch: None,
            readings: (0..n)
                .map(|i| Reading {
                    name: "temp".into(),
                    unit: None,
                    value: Value::Num(i as f64),
                    time: t,
                })
                .collect(),
        })
    };
    // One reading from a device whose clock is a day behind, then fresh ones.
    w.send(at(now - 86_400.0, 1)).await.expect("send");
    w.send(at(now, 30)).await.expect("send");
    w.sync().await.expect("sync");
    let r = Reader::open(&db).expect("reader");
    assert_eq!(
        r.count_readings().expect("count"),
        31,
        "fresh readings stay"
    );
    // Twenty readings two hours old, then fresh ones: the old ones age out.
    let dir2 = tempfile::tempdir().expect("tempdir");
    let db2 = dir2.path().join("hub.db");
    let (w2, _j2, _a2) = open(
        &db2,
        StoreConfig {
            retention: Retention {
                max_age_secs: 3600,
                delete_batch: 10,
                ..Retention::default()
            },
            ..fast()
        },
    );
    w2.send(at(now - 7200.0, 20)).await.expect("send");
    w2.send(at(now, 5)).await.expect("send");
    w2.sync().await.expect("sync");
    let r2 = Reader::open(&db2).expect("reader");
    assert_eq!(
        r2.count_readings().expect("count"),
        5,
        "two-hour-old readings aged out"
    );
}

#[tokio::test]
async fn readings_are_shown_before_their_commit_and_their_seqs_never_reused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("hub.db");
    let config = StoreConfig {
        commit_interval_ms: 3_000,
        visible_interval_ms: 10,
        retention: Retention {
            max_rows: 10,
            delete_batch: 100,
            ..Retention::default()
        },
        ..StoreConfig::default()
    };
    // The first group commits at once (its sync), so the next one may show
    // its readings before its own commit.
    let (w, j, _acks) = open(&db, config.clone());
    let mut changes = w.subscribe();
    w.send(batch("a", None, 2, 0.0)).await.expect("send");
    assert_eq!(w.sync().await.expect("sync"), 2);
    w.send(batch("a", None, 3, 2.0)).await.expect("send");
    let shown = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        loop {
            let c = changes.recv().await.expect("changes");
            if !c.committed {
                return c;
            }
        }
    })
    .await
    .expect("readings shown well before the 3 s commit");
    assert_eq!(
        shown.readings.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [3, 4, 5]
    );
    let r = Reader::open(&db).expect("reader");
    assert_eq!(r.count_readings().expect("count"), 2, "not committed yet");
    assert_eq!(w.sync().await.expect("sync"), 5);
    drop(w);
    j.join().expect("writer ends");

    // A clean stop releases the reserved seqs: no gap.
    let (w, j, _acks) = open(&db, config.clone());
    w.send(batch("a", None, 1, 5.0)).await.expect("send");
    assert_eq!(w.sync().await.expect("sync"), 6);
    drop(w);
    j.join().expect("writer ends");

    // A crash leaves the reservation of its last commit behind (as if seqs
    // up to 1006 had been shown): they are skipped, and the ring still
    // keeps `max_rows` real readings.
    rusqlite::Connection::open(&db)
        .expect("open")
        .execute(
            "UPDATE meta SET value = '1006' WHERE key = 'readings_reserved'",
            [],
        )
        .expect("update");
    let (w, _j, _acks) = open(&db, config);
    assert_eq!(r.collection_seqs().expect("seqs").0, 1006);
    // A watcher that saw seqs of the lost range is told so (the API answers
    // 410 and it lists again); one that stopped before it is not.
    assert!(!r.reading_seq_lost(6).expect("lost"));
    assert!(r.reading_seq_lost(7).expect("lost"));
    assert!(r.reading_seq_lost(1006).expect("lost"));
    assert!(!r.reading_seq_lost(1007).expect("lost"));
    w.send(batch("a", None, 7, 6.0)).await.expect("send");
    assert_eq!(w.sync().await.expect("sync"), 1013);
    assert_eq!(r.count_readings().expect("count"), 10);
    assert_eq!(r.seq_range().expect("range"), Some((4, 1013)));
    w.send(batch("a", None, 3, 13.0)).await.expect("send");
    assert_eq!(w.sync().await.expect("sync"), 1016);
    assert_eq!(r.count_readings().expect("count"), 10);
    assert_eq!(r.seq_range().expect("range"), Some((1007, 1016)));
}
