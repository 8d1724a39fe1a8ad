//! `/metrics` over a real hub: the Prometheus text format parses, counts
//! what was published, and every metric has HELP and TYPE; `/readyz` is ok.

use prometheus_parse::{Scrape, Value};
use std::time::Duration;
use telltale_tests::{mosquitto_pub, wait_until, Hub};

fn scrape(hub: &Hub) -> Scrape {
    let (status, body) = hub.get("/metrics");
    assert_eq!(status, 200, "{body}");
    Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("text format parses")
}

/// The value of `metric` with `label` (name, value), if it has one.
fn value(s: &Scrape, metric: &str, label: Option<(&str, &str)>) -> Option<f64> {
    s.samples
        .iter()
        .filter(|x| x.metric == metric)
        .find(|x| label.is_none_or(|(k, v)| x.labels.get(k) == Some(v)))
        .map(|x| match x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

#[test]
fn metrics_count_readings_and_rejects_and_readyz_is_ok() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::start(dir.path(), "[store]\ncommit_interval_ms = 50\n");
    // Ingest starts just after the listeners open.
    let ready = wait_until(Duration::from_secs(10), || hub.get("/readyz").0 == 200);
    assert!(ready, "/readyz: {:?}", hub.get("/readyz"));
    assert_eq!(hub.get("/readyz").1, "ok");

    for v in [1, 2, 3] {
        mosquitto_pub(hub.mqtt_port, "m1", &format!(r#"[{{"n":"temp","v":{v}}}]"#));
    }
    mosquitto_pub(hub.mqtt_port, "m1", "not json");

    let done = wait_until(Duration::from_secs(20), || {
        let s = scrape(&hub);
        value(&s, "telltale_readings_ingested_total", None) == Some(3.0)
            && value(&s, "telltale_rejects_total", Some(("reason", "not_senml"))) == Some(1.0)
            && value(&s, "telltale_store_commits_total", None).unwrap_or(0.0) > 0.0
    });
    let s = scrape(&hub);
    assert!(done, "{:?}", hub.get("/metrics").1);

    assert_eq!(
        value(&s, "telltale_readings_ingested_total", None),
        Some(3.0)
    );
    assert_eq!(
        value(&s, "telltale_rejects_total", Some(("reason", "not_senml"))),
        Some(1.0)
    );
    assert!(value(&s, "telltale_mqtt_messages_received_total", None).unwrap_or(0.0) >= 4.0);
    assert!(value(&s, "telltale_process_resident_memory_bytes", None).unwrap_or(0.0) > 0.0);
    assert!(value(&s, "telltale_database_bytes", None).unwrap_or(0.0) > 0.0);
    assert_eq!(
        value(
            &s,
            "telltale_oldest_resource_version_seq",
            Some(("collection", "readings"))
        )
        .map(|v| v >= 0.0),
        Some(true)
    );
    for name in [
        "telltale_store_readings",
        "telltale_store_commit_seconds_total",
        "telltale_retention_deleted_readings_total",
        "telltale_active_watches",
        "telltale_alert_transitions_total",
        "telltale_notifications_sent_total",
        "telltale_notifications_failed_total",
        "telltale_notifications_retried_total",
    ] {
        assert!(value(&s, name, None).is_some(), "{name} missing");
    }
    // Every sample has its family's HELP and a TYPE (an untyped sample is
    // one whose TYPE line is missing).
    for x in &s.samples {
        assert!(s.docs.contains_key(&x.metric), "no HELP for {}", x.metric);
        assert!(
            matches!(x.value, Value::Counter(_) | Value::Gauge(_)),
            "no TYPE for {}",
            x.metric
        );
    }
    let (_, body) = hub.get("/metrics");
    let helps = body.lines().filter(|l| l.starts_with("# HELP ")).count();
    let types = body.lines().filter(|l| l.starts_with("# TYPE ")).count();
    assert_eq!(helps, types);
    assert!(helps >= 15, "{body}");
    assert_eq!(hub.get("/readyz").0, 200);
}
