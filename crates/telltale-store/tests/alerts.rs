//! Alerts in the store: rules evaluated on stored readings, transitions and
//! notifications written with them, acknowledgements, and a restart that
//! neither forgets a firing alert nor notifies it again.

use std::sync::Arc;
use telltale_rules::{Rule, RuleSet};
use telltale_store::writer::{IncomingBatch, WriteOp, WriterHandle};
use telltale_store::{AckOutcome, AlertState, Delivery, Reader, Routing, StoreConfig};
use telltale_wire::decode::{Reading, Value};

mod common;
use common::open;

fn rules(json: &str) -> RuleSet {
    let list: Vec<Rule> = serde_json::from_str(json).expect("rules parse");
    RuleSet::compile(list).expect("rules compile")
}

/// Every rule's own sinks, or `hook` for rules that name none.
fn routing() -> Routing {
    Routing(Arc::new(|own: &[String], _severity: &str| {
        if own.is_empty() {
            vec!["hook".to_owned()]
        } else {
            own.to_vec()
        }
    }))
}

async fn send(w: &WriterHandle, device: &str, metric: &str, values: &[f64]) {
    for v in values {
        w.send(WriteOp::Batch(IncomingBatch {
            device: device.into(),
            batch: None,
            readings: vec![Reading {
                name: metric.into(),
                unit: None,
                value: Value::Num(*v),
                time: telltale_store::now_ms() as f64 / 1000.0,
            }],
        }))
        .await
        .expect("send");
        w.sync().await.expect("sync");
    }
}

const HOT: &str = r#"[{"name": "hot", "metric": "temp", "severity": "major",
    "condition": {"above": 10.0, "clear_below": 8.0}}]"#;

#[tokio::test]
async fn a_threshold_fires_once_resolves_past_its_clear_value_and_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("hub.db");
    let (w, j, _acks) = open(&db, StoreConfig::default());
    w.send(WriteOp::Rules {
        rules: rules(HOT),
        routing: routing(),
    })
    .await
    .expect("rules");
    let r = Reader::open(&db).expect("reader");

    send(&w, "f1", "temp", &[5.0, 12.0]).await;
    let alerts = r.alerts_all().expect("alerts");
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    assert_eq!(
        (a.rule.as_str(), a.device.as_str(), a.state.as_str()),
        ("hot", "f1", "firing")
    );
    assert_eq!(a.value.as_deref(), Some("12.0"));
    let n = r.notifications(a.id).expect("notifications");
    assert_eq!(n.len(), 1);
    assert_eq!((n[0].sink.as_str(), n[0].kind.as_str()), ("hook", "firing"));

    // Hovering between the clear and the fire thresholds: no flapping.
    send(&w, "f1", "temp", &[9.0, 11.0, 9.0, 10.5]).await;
    let again = r.alerts_all().expect("alerts");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].seq, a.seq, "no change of the alert");
    assert_eq!(r.notifications(a.id).expect("n").len(), 1);

    // Acknowledged: the row moves (watchers see it), no notification.
    match w.ack_alert(a.id, "ann", Some("on it")).await.expect("ack") {
        AckOutcome::Done(row) => {
            assert!(row.acknowledged);
            assert_eq!(row.ack_by.as_deref(), Some("ann"));
            assert!(row.seq > a.seq);
        }
        other => panic!("ack: {other:?}"),
    }
    assert_eq!(
        w.ack_alert(999, "ann", None).await.expect("ack"),
        AckOutcome::NotFound
    );

    // A restart keeps it firing and notifies nothing again.
    drop(w);
    j.join().expect("writer ends");
    let (w, _j, _acks) = open(&db, StoreConfig::default());
    w.send(WriteOp::Rules {
        rules: rules(HOT),
        routing: routing(),
    })
    .await
    .expect("rules");
    send(&w, "f1", "temp", &[13.0]).await;
    let after = r.alerts_all().expect("alerts");
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].state, AlertState::Firing);
    assert_eq!(
        r.notifications(a.id).expect("n").len(),
        1,
        "not notified twice"
    );

    // Below the clear value: resolved, and a resolved notification.
    send(&w, "f1", "temp", &[7.0]).await;
    let done = r.alert(a.id).expect("alert").expect("held");
    assert_eq!(done.state, AlertState::Resolved);
    let n = r.notifications(a.id).expect("n");
    assert_eq!(
        n.iter().map(|n| n.kind.as_str()).collect::<Vec<_>>(),
        ["firing", "resolved"]
    );
    assert!(matches!(
        w.ack_alert(a.id, "ann", None).await.expect("ack"),
        AckOutcome::Resolved(_)
    ));

    // Deliveries are recorded; a delivered one is no longer due.
    let due = r.notifications_due(i64::MAX, 10).expect("due");
    assert_eq!(due.len(), 2);
    w.send(WriteOp::Delivered {
        id: due[0].id,
        outcome: Delivery::Sent,
    })
    .await
    .expect("send");
    w.send(WriteOp::Delivered {
        id: due[1].id,
        outcome: Delivery::Retry {
            next_at_ms: i64::MAX - 1,
            error: "503".into(),
        },
    })
    .await
    .expect("send");
    w.sync().await.expect("sync");
    assert!(r
        .notifications_due(i64::MAX - 2, 10)
        .expect("due")
        .is_empty());
    let n = r.notifications(a.id).expect("n");
    assert_eq!((n[0].done, n[1].done, n[1].attempts), (1, 0, 1));
}

#[tokio::test]
async fn pending_then_firing_after_for_and_a_silent_series_fires_on_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("hub.db");
    let (w, _j, _acks) = open(&db, StoreConfig::default());
    w.send(WriteOp::Rules {
        rules: rules(
            r#"[{"name": "warm", "metric": "temp", "severity": "minor", "for": "300ms",
                 "condition": {"above": 10.0}},
                {"name": "quiet", "metric": "temp", "severity": "warning",
                 "condition": {"no_data": "600ms"}}]"#,
        ),
        routing: routing(),
    })
    .await
    .expect("rules");
    let r = Reader::open(&db).expect("reader");
    send(&w, "g1", "temp", &[11.0]).await;
    let warm = |r: &Reader| {
        r.alerts_all()
            .expect("alerts")
            .into_iter()
            .find(|a| a.rule == "warm")
    };
    assert_eq!(warm(&r).expect("pending").state, AlertState::Pending);
    // The writer's own timer fires it: no reading needed.
    let fired = wait(|| warm(&r).is_some_and(|a| a.state == AlertState::Firing)).await;
    assert!(fired, "pending became firing after `for`");
    // And the series stays silent: the no-data rule fires by itself.
    let quiet = wait(|| {
        r.alerts_all()
            .expect("alerts")
            .iter()
            .any(|a| a.rule == "quiet" && a.state == AlertState::Firing)
    })
    .await;
    assert!(quiet, "no data fired");
}

async fn wait(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if f() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn a_firing_unacknowledged_alert_is_notified_again_until_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("hub.db");
    let (w, _j, _acks) = open(&db, StoreConfig::default());
    w.send(WriteOp::Rules {
        rules: rules(
            r#"[{"name": "hot", "metric": "temp", "severity": "major", "repeat_every": "500ms",
                 "condition": {"above": 10.0}}]"#,
        ),
        routing: routing(),
    })
    .await
    .expect("rules");
    let r = Reader::open(&db).expect("reader");
    send(&w, "h1", "temp", &[12.0]).await;
    let id = r.alerts_all().expect("alerts")[0].id;
    let kinds = |r: &Reader| {
        r.notifications(id)
            .expect("n")
            .into_iter()
            .map(|n| n.kind)
            .collect::<Vec<_>>()
    };
    assert_eq!(kinds(&r), ["firing"]);
    // Repeats are looked for at most once a second, at the writer's groups.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    send(&w, "h1", "temp", &[12.5]).await;
    assert_eq!(kinds(&r), ["firing", "repeat"]);
    // Acknowledged: no more repeats.
    assert!(matches!(
        w.ack_alert(id, "ann", None).await.expect("ack"),
        AckOutcome::Done(_)
    ));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    send(&w, "h1", "temp", &[13.0]).await;
    assert_eq!(kinds(&r), ["firing", "repeat"]);
}
