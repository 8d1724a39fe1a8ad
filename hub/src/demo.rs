//! The README's first command: a hub on loopback with a local data folder,
//! and demo agents (the `telltale-agent` binary beside this one) feeding
//! simulated readings, so data flows at once.

use crate::config::HubConfig;
use anyhow::Context;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::process::{Child, Command};

/// The hub config of the demo: loopback only, data in `data_dir`.
pub fn config(data_dir: &Path, mqtt_port: u16, http_port: u16) -> HubConfig {
    let mut c = HubConfig {
        data_dir: data_dir.to_path_buf(),
        ..HubConfig::default()
    };
    c.broker.listen = SocketAddr::from(([127, 0, 0, 1], mqtt_port));
    c.api.listen = SocketAddr::from(([127, 0, 0, 1], http_port));
    c
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
