//! The hub's config file: one TOML file, one section per component, unknown
//! keys refused. Every default is in docs/configuration.md.

use anyhow::Context;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use telltale_api::ApiConfig;
use telltale_broker::BrokerConfig;
use telltale_ingest::IngestConfig;
use telltale_store::StoreConfig;

/// The whole hub config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubConfig {
    /// Where the database lives (`hub.db` inside it).
    pub data_dir: PathBuf,
    /// The embedded MQTT broker.
    pub broker: BrokerConfig,
    /// The SQLite store.
    pub store: StoreConfig,
    /// Decoding and validation of device messages.
    pub ingest: IngestConfig,
    /// The HTTP API.
    pub api: ApiConfig,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("/var/lib/telltale"),
            broker: BrokerConfig::default(),
            store: StoreConfig::default(),
            ingest: IngestConfig::default(),
            api: ApiConfig::default(),
        }
    }
}

impl HubConfig {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> anyhow::Result<HubConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        let config: HubConfig = toml::from_str(&text)
            .with_context(|| format!("config {} is invalid", path.display()))?;
        config.check()?;
        Ok(config)
    }

    /// Checks what serde cannot.
    pub fn check(&self) -> anyhow::Result<()> {
        self.api.check().map_err(anyhow::Error::msg)?;
        anyhow::ensure!(
            self.broker.max_packet_bytes >= self.ingest.max_payload_bytes + 1024,
            "broker.max_packet_bytes ({}) must exceed ingest.max_payload_bytes ({}) by at least 1024 (topic and header) so that oversized packs are counted as rejects",
            self.broker.max_packet_bytes,
            self.ingest.max_payload_bytes
        );
        anyhow::ensure!(
            self.broker.segment_bytes >= self.broker.max_packet_bytes,
            "broker.segment_bytes ({}) must hold at least one packet of broker.max_packet_bytes ({})",
            self.broker.segment_bytes,
            self.broker.max_packet_bytes
        );
        anyhow::ensure!(
            self.broker.segment_count >= 2,
            "broker.segment_count must be at least 2"
        );
        anyhow::ensure!(
            self.store.commit_interval_ms > 0,
            "store.commit_interval_ms must be above 0"
        );
        anyhow::ensure!(
            self.store.commit_max_rows > 0,
            "store.commit_max_rows must be above 0"
        );
        anyhow::ensure!(
            self.store.retention.max_rows > 0,
            "store.retention.max_rows must be above 0"
        );
        anyhow::ensure!(
            self.ingest.max_records > 0 && self.ingest.max_name_chars > 0,
            "ingest limits must be above 0"
        );
        anyhow::ensure!(
            !self.ingest.topic_prefix.is_empty()
                && !self.ingest.topic_prefix.contains(['+', '#'])
                && !self.ingest.topic_prefix.starts_with('/')
                && !self.ingest.topic_prefix.ends_with('/'),
            "ingest.topic_prefix must be a topic without wildcards or a leading or trailing slash"
        );
        Ok(())
    }

    /// Path of the hub's database.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("hub.db")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_keys() {
        let c: HubConfig = toml::from_str("").expect("empty is all defaults");
        c.check().expect("defaults are valid");
        assert_eq!(c.store.commit_interval_ms, 250);
        let e = toml::from_str::<HubConfig>("[store]\ncommit_intervl_ms = 5\n")
            .expect_err("typo refused");
        assert!(e.to_string().contains("commit_intervl_ms"), "{e}");
        let c: HubConfig = toml::from_str(
            "data_dir = \"/tmp/x\"\n[broker]\nlisten = \"127.0.0.1:0\"\n[store.retention]\nmax_rows = 10\n",
        )
        .expect("valid");
        assert_eq!(c.store.retention.max_rows, 10);
        let c: HubConfig = toml::from_str("[ingest]\ntopic_prefix = \"a/#\"\n").expect("parses");
        assert!(c.check().is_err());
    }
}
