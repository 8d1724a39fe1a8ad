//! Bad payloads over real MQTT: each is counted in rejects with its reason,
//! and good payloads around them are stored.

use rumqttc::QoS;
use std::time::Duration;
use telltale_tests::{mosquitto_pub, mqtt_client, wait_until, Hub};

fn topic(device: &str) -> String {
    format!("telltale/v1/devices/{device}/telemetry")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_payloads_are_rejected_with_reasons_and_ingest_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut hub = Hub::start(dir.path(), "[store]\ncommit_interval_ms = 50\n");
    let c = mqtt_client(hub.mqtt_port, "tester").await;

    // A good CBOR pack, and its truncation.
    let mut buf = [0u8; 128];
    let rec = telltale_wire::Record {
        name: "temp",
        unit: Some("Cel"),
        value: telltale_wire::ValueRef::Num(21.5),
        time: None,
    };
    let n = telltale_wire::senml::encode_cbor(None, None, &[rec, rec], &mut buf).expect("fits");
    let good_cbor = buf[..n].to_vec();
    let long_name = format!(r#"[{{"n":"{}","v":1}}]"#, "x".repeat(65));
    let oversized = format!(
        "[{}]",
        vec![r#"{"n":"temp","v":1.0,"u":"Cel"}"#; 3000].join(",")
    );
    let bad: Vec<(String, Vec<u8>, &str)> = vec![
        (topic("d1"), b"hello".to_vec(), "not_senml"),
        (topic("d1"), good_cbor[..n - 3].to_vec(), "malformed_cbor"),
        (
            topic("d1"),
            br#"[{"n":"temp","v":"warm"}]"#.to_vec(),
            "wrong_type",
        ),
        // [{0: "t", 2: NaN}] as CBOR with a half-precision NaN.
        (
            topic("d1"),
            vec![0x81, 0xa2, 0x00, 0x61, b't', 0x02, 0xf9, 0x7e, 0x00],
            "not_finite",
        ),
        (topic("d1"), oversized.into_bytes(), "payload_too_large"),
        (topic("d1"), long_name.into_bytes(), "name_too_long"),
        (
            topic("bad id"),
            br#"[{"n":"temp","v":1}]"#.to_vec(),
            "bad_device_id",
        ),
        (
            topic(&"x".repeat(65)),
            br#"[{"n":"temp","v":1}]"#.to_vec(),
            "bad_device_id",
        ),
    ];
    for (t, payload, _) in &bad {
        c.publish(t, QoS::AtLeastOnce, false, payload.clone())
            .await
            .expect("publish");
        c.publish(topic("good"), QoS::AtLeastOnce, false, good_cbor.clone())
            .await
            .expect("publish");
    }
    let reader = hub.reader();
    let stored = wait_until(Duration::from_secs(20), || {
        reader.count_readings().unwrap_or(0) >= 2 * bad.len() as u64
            && reader.rejects(100).map(|r| r.len()).unwrap_or(0) >= bad.len()
    });
    assert!(stored, "good readings and rejects did not all arrive");
    assert_eq!(
        reader.count_readings().expect("count"),
        2 * bad.len() as u64
    );
    let counts = reader.reject_counts().expect("counts");
    for (_, _, kind) in &bad {
        let want = bad.iter().filter(|b| b.2 == *kind).count() as u64;
        let got = counts.iter().find(|c| c.0 == *kind).map(|c| c.1);
        assert_eq!(got, Some(want), "count of {kind} in {counts:?}");
    }
    let rejects = reader.rejects(100).expect("rejects");
    for r in &rejects {
        assert!(!r.reason.is_empty());
        assert!(r.payload.len() <= 512);
    }
    assert!(rejects.iter().any(|r| r.reason.contains("65 characters")));
    assert!(hub.is_running(), "the hub survived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_pub_json_reading_is_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::start(dir.path(), "[store]\ncommit_interval_ms = 50\n");
    mosquitto_pub(
        hub.mqtt_port,
        "hand-1",
        r#"[{"n":"temp","u":"Cel","v":21.5}]"#,
    );
    let reader = hub.reader();
    assert!(wait_until(Duration::from_secs(10), || {
        reader.count_readings().unwrap_or(0) == 1
    }));
    let r = &reader.readings_after(0, 10).expect("read")[0];
    assert_eq!((&*r.device, &*r.metric), ("hand-1", "temp"));
    assert_eq!(r.unit.as_deref(), Some("Cel"));
    assert_eq!(r.value, telltale_store::StoredValue::Num(21.5));
    let age = telltale_store::now_ms() - r.ts_ms;
    assert!(
        (0..60_000).contains(&age),
        "time is the hub's now: {age} ms"
    );
}
