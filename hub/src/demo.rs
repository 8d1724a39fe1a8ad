//! The README's first command: a hub on loopback with a local data folder,
//! and demo agents (the `telltale-agent` binary beside this one) feeding
//! simulated readings, so data flows at once.

use crate::config::HubConfig;
use anyhow::Context;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::process::{Child, Command};

/// The hub config of the demo: loopback only, data and rules in `data_dir`.
pub fn config(data_dir: &Path, mqtt_port: u16, http_port: u16) -> HubConfig {
    let mut c = HubConfig {
        data_dir: data_dir.to_path_buf(),
        ..HubConfig::default()
    };
    c.broker.listen = SocketAddr::from(([127, 0, 0, 1], mqtt_port));
    c.api.listen = SocketAddr::from(([127, 0, 0, 1], http_port));
    c.alerts.rules_file = data_dir.join("rules.toml");
    c
}

/// The demo's alert rules, one per demo device, with no sinks: their
/// alerts show on `/v1/alerts`. The freezer's sine peaks at about -16, so
/// its rule fires for a while every two minutes; the greenhouse's random
/// walk wanders above 28 now and then.
const RULES: &str = r#"
[[rule]]
name = "freezer-warm"
device = "demo-freezer"
metric = "temp"
condition = { above = -16.5, clear_below = -17.5 }
for = "10s"
severity = "major"
summary = "{device} is at {value}{unit} (limit {threshold})"

[[rule]]
name = "greenhouse-hot"
device = "demo-greenhouse"
metric = "temp"
condition = { above = 28.0, clear_below = 26.0 }
severity = "warning"
summary = "{device} is at {value}{unit} (limit {threshold})"
"#;

/// Writes the demo's rules file at `path` unless there is one (a rules
/// file the user edited is kept).
pub fn write_rules(path: &Path, http_port: u16) -> anyhow::Result<()> {
    if path.exists() {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let text = format!(
        "# Alert rules of the demo. Edit this file: the hub puts the change in force\n\
         # within 2 s (or at SIGHUP), and keeps the old rules if the new ones are bad.\n\
         # Alerts: http://127.0.0.1:{http_port}/v1/alerts\n{RULES}"
    );
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// The demo devices: (device id, labels, sources).
const DEVICES: &[(&str, &str, &str)] = &[
    (
        "demo-freezer",
        "site = \"demo\"\nroom = \"kitchen\"\n",
        r#"
[[source]]
kind = "simulated"
metric = "temp"
unit = "Cel"
interval_ms = 1000
shape = "sine"
base = -18.0
amplitude = 2.0
period_secs = 120
noise = 0.2

[[source]]
kind = "simulated"
metric = "door"
interval_ms = 5000
shape = "boolean"
"#,
    ),
    (
        "demo-greenhouse",
        "site = \"demo\"\nroom = \"greenhouse\"\n",
        r#"
[[source]]
kind = "simulated"
metric = "temp"
unit = "Cel"
interval_ms = 1000
shape = "random_walk"
base = 24.0
amplitude = 6.0
noise = 0.3

[[source]]
kind = "simulated"
metric = "humidity"
unit = "%RH"
interval_ms = 2000
shape = "sine"
base = 60.0
amplitude = 15.0
period_secs = 300
noise = 0.5
"#,
    ),
];

/// Running demo agents.
pub struct Agents {
    children: Vec<Child>,
}

impl Agents {
    /// Starts one agent per demo device, if the agent binary is beside this one.
    pub fn start(data_dir: &Path, mqtt_port: u16) -> anyhow::Result<Agents> {
        let Some(bin) = agent_binary() else {
            tracing::warn!("telltale-agent not found beside telltale-hub: no demo readings (build it with `cargo build --release --bins`)");
            return Ok(Agents { children: vec![] });
        };
        let mut children = vec![];
        for (id, labels, sources) in DEVICES {
            let dir = data_dir.join("agents").join(id);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let conf = dir.join("agent.toml");
            let text = format!(
                "device_id = \"{id}\"\ndata_dir = \"{}\"\n\n[labels]\n{labels}\n[mqtt]\nhost = \"127.0.0.1\"\nport = {mqtt_port}\n\n[batch]\ninterval_ms = 1000\n{sources}",
                dir.display()
            );
            std::fs::write(&conf, text)
                .with_context(|| format!("cannot write {}", conf.display()))?;
            let child = Command::new(&bin)
                .arg("run")
                .arg("--config")
                .arg(&conf)
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("cannot start {}", bin.display()))?;
            tracing::info!(device = id, "demo agent started");
            children.push(child);
        }
        tracing::info!(
            "demo: readings land in {}; publish one by hand with: mosquitto_pub -p {mqtt_port} -t telltale/v1/devices/hand-1/telemetry -m '[{{\"n\":\"temp\",\"u\":\"Cel\",\"v\":21.5}}]'",
            data_dir.join("hub.db").display()
        );
        Ok(Agents { children })
    }

    /// Asks each agent to stop (SIGTERM) and waits a little.
    pub async fn stop(&mut self) {
        for c in &mut self.children {
            if let Some(pid) = c.id() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
        for c in &mut self.children {
            if tokio::time::timeout(Duration::from_secs(5), c.wait())
                .await
                .is_err()
            {
                let _ = c.start_kill();
            }
        }
    }
}

fn agent_binary() -> Option<PathBuf> {
    let me = std::env::current_exe().ok()?;
    let bin = me.parent()?.join("telltale-agent");
    bin.exists().then_some(bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_rules_are_valid_and_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = config(dir.path(), 1883, 8080);
        write_rules(&config.alerts.rules_file, 8080).expect("written");
        let rules = config.rules().expect("the demo rules are valid");
        let names: Vec<_> = rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["freezer-warm", "greenhouse-hot"]);
        assert!(rules.iter().all(|r| r.notify.is_empty()));
        std::fs::write(&config.alerts.rules_file, "# mine\n").expect("edit");
        write_rules(&config.alerts.rules_file, 8080).expect("kept");
        assert!(
            config.rules().expect("valid").is_empty(),
            "an edited file is kept"
        );
    }
}
