//! `telltale-hub backup` copies the database while the hub runs: the copy
//! opens as a store and holds what was committed.

use std::process::Command;
use std::time::Duration;
use telltale_tests::{bin, mosquitto_pub, wait_until, Hub};

#[test]
fn a_backup_taken_while_the_hub_runs_holds_the_committed_readings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::start(
        &dir.path().join("hub"),
        "[store]\ncommit_interval_ms = 50\n",
    );
    for v in 0..5 {
        mosquitto_pub(hub.mqtt_port, "b1", &format!(r#"[{{"n":"temp","v":{v}}}]"#));
    }
    let r = hub.reader();
    assert!(wait_until(Duration::from_secs(10), || r
        .count_readings()
        .unwrap_or(0)
        == 5));

    let to = dir.path().join("copy.db");
    let backup = |to: &std::path::Path| {
        Command::new(bin("telltale-hub"))
            .args(["backup", "--config"])
            .arg(hub.dir.join("hub.toml"))
            .arg(to)
            .output()
            .expect("backup runs")
    };
    let out = backup(&to);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let copy = telltale_store::Reader::open(&to).expect("the copy opens");
    assert_eq!(copy.count_readings().expect("count"), 5);
    assert_eq!(
        copy.epoch().expect("epoch"),
        r.epoch().expect("epoch"),
        "same store"
    );

    // It never overwrites.
    let again = backup(&to);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
}
