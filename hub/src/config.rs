//! The hub's config file: one TOML file, one section per component, unknown
//! keys refused. Every default is in docs/configuration.md.

use anyhow::Context;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use telltale_api::rules::{RulesError, RulesFile};
use telltale_api::ApiConfig;
use telltale_broker::BrokerConfig;
use telltale_ingest::IngestConfig;
use telltale_notify::NotifyConfig;
use telltale_rules::Rule;
use telltale_store::StoreConfig;

/// The whole hub config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubConfig {
    /// Where the database lives (`hub.db` inside it).
    pub data_dir: PathBuf,
    /// The hub's own lifecycle (the stop deadline).
    pub hub: HubSection,
    /// The embedded MQTT broker.
    pub broker: BrokerConfig,
    /// The SQLite store.
    pub store: StoreConfig,
    /// Decoding and validation of device messages.
    pub ingest: IngestConfig,
    /// The HTTP API.
    pub api: ApiConfig,
    /// Where the alert rules live and when they are reloaded.
    pub alerts: AlertsConfig,
    /// Where alert notifications go, and how they are retried.
    pub notify: NotifyConfig,
    /// The hub's own CA and its certificates.
    pub tls: TlsConfig,
}

/// The `[tls]` section: where `telltale-hub tls init` puts the hub's CA and
/// server certificate, where `device add` finds the CA, and where
/// `[broker.tls]` and `[api.tls]` find their files unless they name others.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// The folder. Empty: `{data_dir}/tls`. A relative path is relative to
    /// the config file's folder.
    pub dir: PathBuf,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("/var/lib/telltale"),
            hub: HubSection::default(),
            broker: BrokerConfig::default(),
            store: StoreConfig::default(),
            ingest: IngestConfig::default(),
            api: ApiConfig::default(),
            alerts: AlertsConfig::default(),
            notify: NotifyConfig::default(),
            tls: TlsConfig::default(),
        }
    }
}

/// `TimeoutStopSec=` of `systemd/telltale-hub.service`: after it systemd
/// kills the hub.
pub const SYSTEMD_STOP_TIMEOUT_SECS: u64 = 30;

/// What the stop deadline leaves of [`SYSTEMD_STOP_TIMEOUT_SECS`] at least:
/// the process's exit and a loaded machine's scheduling.
pub const STOP_MARGIN_SECS: u64 = 5;

/// The `[hub]` section: the hub's own lifecycle.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubSection {
    /// The total stop deadline, seconds, from SIGTERM to the exit: every
    /// stage of the stop (ingest, the API, the rest, the store writer)
    /// waits only for what remains of it. It must stay below systemd's
    /// `TimeoutStopSec` with a margin, or systemd kills a hub that is still
    /// flushing.
    pub stop_timeout_secs: u64,
}

impl Default for HubSection {
    fn default() -> Self {
        Self {
            stop_timeout_secs: 20,
        }
    }
}

impl HubSection {
    /// The total stop deadline.
    pub fn stop_timeout(&self) -> Duration {
        Duration::from_secs(self.stop_timeout_secs)
    }

    /// The deadline is above 0 and fits under systemd's stop timeout with
    /// [`STOP_MARGIN_SECS`] to spare.
    pub fn check(&self) -> anyhow::Result<()> {
        let most = SYSTEMD_STOP_TIMEOUT_SECS - STOP_MARGIN_SECS;
        anyhow::ensure!(
            (1..=most).contains(&self.stop_timeout_secs),
            "hub.stop_timeout_secs = {} must be between 1 and {most}: systemd's TimeoutStopSec ({SYSTEMD_STOP_TIMEOUT_SECS} s, systemd/telltale-hub.service) kills a hub still stopping after it, and {STOP_MARGIN_SECS} s are kept for the exit (raise both together, see docs/deploy.md)",
            self.stop_timeout_secs
        );
        Ok(())
    }
}

/// The `[alerts]` section: the rules file and how it is reloaded.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// The rules file (`[[rule]]` tables). A relative path is relative to
    /// the config file's folder, so the rules can sit beside the config. A
    /// missing file means no rules (the API's first rule creates it).
    pub rules_file: PathBuf,
    /// How often the file's modification time and length are checked, in
    /// seconds, so that an edit is put in force without a signal; 0: only
    /// SIGHUP reloads it.
    pub reload_poll_secs: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            rules_file: PathBuf::from("rules.toml"),
            reload_poll_secs: 2,
        }
    }
}

impl AlertsConfig {
    /// How often to look at the rules file; `None`: never (SIGHUP only).
    pub fn reload_poll(&self) -> Option<Duration> {
        (self.reload_poll_secs > 0).then(|| Duration::from_secs(self.reload_poll_secs))
    }
}

impl HubConfig {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> anyhow::Result<HubConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        let mut config: HubConfig = toml::from_str(&text)
            .with_context(|| format!("config {} is invalid", path.display()))?;
        config.resolve_paths(path.parent().unwrap_or(Path::new("")));
        config.check()?;
        Ok(config)
    }

    /// Makes the paths that are relative to the config file's folder
    /// (`alerts.rules_file`) relative to `dir`, that folder. (An empty path
    /// is left for [`HubConfig::check`] to refuse.)
    pub fn resolve_paths(&mut self, dir: &Path) {
        let file = &self.alerts.rules_file;
        if file.is_relative() && !file.as_os_str().is_empty() {
            self.alerts.rules_file = dir.join(&self.alerts.rules_file);
        }
        // The TLS files: relative to the config's folder; empty ones are
        // the files of the TLS folder.
        let rel = |p: &mut PathBuf| {
            if p.is_relative() && !p.as_os_str().is_empty() {
                *p = dir.join(&*p);
            }
        };
        rel(&mut self.tls.dir);
        if self.tls.dir.as_os_str().is_empty() {
            self.tls.dir = self.data_dir.join("tls");
        }
        let tls_dir = self.tls.dir.clone();
        let or_default = |p: &mut PathBuf, file: &str| {
            rel(p);
            if p.as_os_str().is_empty() {
                *p = tls_dir.join(file);
            }
        };
        if let Some(t) = self.broker.tls.as_mut() {
            or_default(&mut t.ca, telltale_tls::CA_CERT);
            or_default(&mut t.cert, telltale_tls::SERVER_CERT);
            or_default(&mut t.key, telltale_tls::SERVER_KEY);
        }
        if let Some(t) = self.api.tls.as_mut() {
            or_default(&mut t.cert, telltale_tls::SERVER_CERT);
            or_default(&mut t.key, telltale_tls::SERVER_KEY);
        }
    }

    /// Checks what serde cannot, the rules file included.
    pub fn check(&self) -> anyhow::Result<()> {
        self.hub.check()?;
        self.api.check().map_err(anyhow::Error::msg)?;
        let b = &self.broker;
        anyhow::ensure!(
            b.plain || b.tls.is_some(),
            "the broker has no listener: broker.plain is false and there is no [broker.tls]"
        );
        anyhow::ensure!(
            !b.plain || b.listen.ip().is_loopback() || b.plain_listen_insecure,
            "broker.listen {} is not a loopback address: on the plain listener anyone who reaches it can publish as any device and read every command. Give devices certificates and use [broker.tls] (docs/security.md), set broker.plain = false, or, knowing this, set broker.plain_listen_insecure = true",
            b.listen
        );
        anyhow::ensure!(
            b.max_connections_per_ip > 0,
            "broker.max_connections_per_ip must be above 0"
        );
        self.notify.check()?;
        self.rules()?;
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

    /// Where a device with a certificate connects: the TLS listener's
    /// address (the machine's host name when it listens on all addresses)
    /// and port, for the agent config that `device add` prints.
    pub fn device_mqtt_address(&self) -> (String, u16) {
        let listen = self
            .broker
            .tls
            .as_ref()
            .map(|t| t.listen)
            .unwrap_or_else(|| telltale_broker::BrokerTlsConfig::default().listen);
        let host = if listen.ip().is_unspecified() {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".into())
        } else {
            listen.ip().to_string()
        };
        (host, listen.port())
    }

    /// Path of the hub's database.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("hub.db")
    }

    /// Reads and checks the rules file (see [`read_rules`]).
    pub fn rules(&self) -> anyhow::Result<Vec<Rule>> {
        anyhow::ensure!(
            !self.alerts.rules_file.as_os_str().is_empty(),
            "alerts.rules_file must not be empty"
        );
        read_rules(&self.alerts.rules_file, &self.notify)
    }
}

/// Reads and checks a rules file as [`RulesFile::read`] does (a missing
/// file is no rules), and also checks that every sink a rule names is in
/// `notify`, which the rules file cannot know. Errors name the file, the
/// rule and the field (`rule "x": notify[1]: ...`).
pub fn read_rules(path: &Path, notify: &NotifyConfig) -> anyhow::Result<Vec<Rule>> {
    RulesFile::read(path, Some(&sink_names(notify))).map_err(|e| match e {
        // These name the file already.
        RulesError::Io { .. } | RulesError::Parse { .. } => anyhow::Error::new(e),
        e => anyhow::anyhow!("rules file {}: {e}", path.display()),
    })
}

/// The names of the configured notification sinks.
pub fn sink_names(notify: &NotifyConfig) -> Vec<String> {
    notify.sink.iter().map(|s| s.name.clone()).collect()
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

    #[test]
    fn stop_timeout_fits_under_systemd() {
        let c: HubConfig = toml::from_str("").expect("defaults");
        assert_eq!(c.hub.stop_timeout(), Duration::from_secs(20));
        // (stop_timeout_secs, accepted)
        for (secs, ok) in [
            (0, false),
            (1, true),
            (20, true),
            (25, true),
            (26, false),
            (62, false),
        ] {
            let c: HubConfig =
                toml::from_str(&format!("[hub]\nstop_timeout_secs = {secs}\n")).expect("parses");
            match c.check() {
                Ok(()) => assert!(ok, "{secs} accepted"),
                Err(e) => {
                    assert!(!ok, "{secs} refused: {e}");
                    assert!(e.to_string().contains("hub.stop_timeout_secs"), "{e}");
                }
            }
        }
        let e = toml::from_str::<HubConfig>("[hub]\nstop_timeout = 3\n").expect_err("typo");
        assert!(e.to_string().contains("stop_timeout"), "{e}");
        // The unit file says what the check assumes.
        let unit = include_str!("../../systemd/telltale-hub.service");
        assert!(
            unit.lines()
                .any(|l| l.trim() == format!("TimeoutStopSec={SYSTEMD_STOP_TIMEOUT_SECS}")),
            "TimeoutStopSec in the unit differs from SYSTEMD_STOP_TIMEOUT_SECS"
        );
    }

    const SINKS: &str = r#"
[[notify.sink]]
name = "ops"
kind = "webhook"
url = "https://hooks.example.com/telltale"

[[notify.sink]]
name = "phones"
kind = "ntfy"
url = "https://ntfy.sh/telltale-test"
"#;

    /// Writes `hub.toml` (with `config`) and, unless `None`, `rules.toml`
    /// into a new folder, and loads the config as `run` does.
    fn load(config: &str, rules: Option<&str>) -> (tempfile::TempDir, anyhow::Result<HubConfig>) {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("hub.toml"), config).expect("write config");
        if let Some(rules) = rules {
            std::fs::write(dir.path().join("rules.toml"), rules).expect("write rules");
        }
        let loaded = HubConfig::load(&dir.path().join("hub.toml"));
        (dir, loaded)
    }

    #[test]
    fn plain_mqtt_only_on_loopback_unless_insecure_and_tls_files_default_to_the_tls_dir() {
        let parse = |t: &str| toml::from_str::<HubConfig>(t).expect("parses");
        let c = parse("[broker]\nlisten = \"0.0.0.0:1883\"\n");
        let e = c.check().expect_err("refused").to_string();
        assert!(e.contains("plain_listen_insecure"), "{e}");
        parse("[broker]\nlisten = \"0.0.0.0:1883\"\nplain_listen_insecure = true\n")
            .check()
            .expect("opted in");
        parse("[broker]\nlisten = \"0.0.0.0:1883\"\nplain = false\n[broker.tls]\n")
            .check()
            .expect("plain off, tls on");
        let e = parse("[broker]\nplain = false\n")
            .check()
            .expect_err("no listener");
        assert!(e.to_string().contains("no listener"), "{e}");

        let mut c = parse(
            "data_dir = \"/d\"\n[broker.tls]\ncert = \"my.pem\"\n[api]\n[api.tls]\nkey = \"/k/x.key\"\n",
        );
        c.resolve_paths(Path::new("/etc/telltale"));
        assert_eq!(c.tls.dir, Path::new("/d/tls"));
        let t = c.broker.tls.expect("tls");
        assert_eq!(t.ca, Path::new("/d/tls/ca.pem"));
        assert_eq!(t.cert, Path::new("/etc/telltale/my.pem"));
        assert_eq!(t.key, Path::new("/d/tls/server.key"));
        assert_eq!(t.listen.port(), 8883);
        let a = c.api.tls.expect("api tls");
        assert_eq!(a.cert, Path::new("/d/tls/server.pem"));
        assert_eq!(a.key, Path::new("/k/x.key"));
    }

    #[test]
    fn alerts_and_notify_defaults() {
        let c: HubConfig = toml::from_str("").expect("defaults");
        assert_eq!(c.alerts.rules_file, PathBuf::from("rules.toml"));
        assert_eq!(c.alerts.reload_poll(), Some(Duration::from_secs(2)));
        assert_eq!(c.notify, NotifyConfig::default());
        let c: HubConfig = toml::from_str("[alerts]\nreload_poll_secs = 0\n").expect("valid");
        assert_eq!(c.alerts.reload_poll(), None);
        let e = toml::from_str::<HubConfig>("[alerts]\nrules = \"x.toml\"\n")
            .expect_err("unknown key refused");
        assert!(e.to_string().contains("rules"), "{e}");
        let e = toml::from_str::<HubConfig>("[notify]\nbackoff_secs = 3\n")
            .expect_err("unknown key refused");
        assert!(e.to_string().contains("backoff_secs"), "{e}");
    }

    #[test]
    fn rules_file_is_relative_to_the_config_folder() {
        // Missing: no rules, and the path is resolved beside hub.toml.
        let (dir, c) = load("", None);
        let c = c.expect("a missing rules file is no rules");
        assert_eq!(c.alerts.rules_file, dir.path().join("rules.toml"));
        assert!(c.rules().expect("no rules").is_empty());
        // A relative path is read from the config's folder, not the
        // current directory.
        let rules =
            "[[rule]]\nname = \"hot\"\ncondition = { above = 30.0 }\nseverity = \"major\"\n";
        let (dir, c) = load("[alerts]\nrules_file = \"./rules.toml\"\n", Some(rules));
        let c = c.expect("valid");
        assert_eq!(c.alerts.rules_file, dir.path().join("./rules.toml"));
        assert_eq!(c.rules().expect("one rule").len(), 1);
        // An absolute path is kept as it is.
        let other = tempfile::tempdir().expect("temp dir");
        let abs = other.path().join("elsewhere.toml");
        std::fs::write(&abs, format!("{rules}{}", rules.replace("hot", "hotter"))).expect("write");
        let (_dir, c) = load(&format!("[alerts]\nrules_file = {abs:?}\n"), Some(rules));
        let c = c.expect("valid");
        assert_eq!(c.alerts.rules_file, abs);
        assert_eq!(c.rules().expect("two rules").len(), 2);
        let (_dir, c) = load("[alerts]\nrules_file = \"\"\n", None);
        let e = c.expect_err("empty path refused");
        assert!(format!("{e:#}").contains("alerts.rules_file"), "{e:#}");
    }

    #[test]
    fn bad_rules_and_sinks_are_named() {
        let rule = |body: &str| format!("[[rule]]\nname = \"freezer-warm\"\n{body}\n");
        // (config, rules file, what the error must say; empty: valid)
        let table: Vec<(String, String, &[&str])> = vec![
            (
                String::new(),
                rule("condition = { above = -15.0 }\nseverity = \"major\""),
                &[],
            ),
            (
                String::new(),
                rule("condition = { above = -15.0 }\nseverity = \"urgent\""),
                &["rules.toml", "rule \"freezer-warm\": severity: "],
            ),
            (
                String::new(),
                rule("condition = { above = -15.0, clear_below = -10.0 }\nseverity = \"major\""),
                &["rules.toml", "rule \"freezer-warm\": condition.clear_below: "],
            ),
            (
                String::new(),
                rule("condition = { above = -15.0 }\nseverity = \"major\"\nfor = \"ten minutes\""),
                &["rule \"freezer-warm\": for: "],
            ),
            (
                String::new(),
                rule("condition = { above = -15.0 }\nseverity = \"major\"\ncolour = \"red\""),
                &["rules.toml", "colour"],
            ),
            (
                SINKS.to_owned(),
                rule("condition = { above = -15.0 }\nseverity = \"major\"\nnotify = [\"ops\", \"phones\"]"),
                &[],
            ),
            (
                SINKS.to_owned(),
                rule("condition = { above = -15.0 }\nseverity = \"major\"\nnotify = [\"ops\", \"pager\"]"),
                &["rules.toml", "rule \"freezer-warm\": notify[1]: ", "\"pager\""],
            ),
            (
                String::new(),
                rule("condition = { above = -15.0 }\nseverity = \"major\"\nnotify = [\"ops\"]"),
                &["rule \"freezer-warm\": notify[0]: ", "\"ops\""],
            ),
            (
                format!("{SINKS}\n[[notify.sink]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"https://b.example.com/\"\n"),
                String::new(),
                &["notify.sink \"ops\"", "name"],
            ),
            (
                "[notify]\ninitial_backoff_secs = 0\n".to_owned(),
                String::new(),
                &["notify.initial_backoff_secs"],
            ),
        ];
        for (config, rules, want) in table {
            let (_dir, loaded) = load(&config, Some(&rules));
            match (loaded, want.is_empty()) {
                (Ok(_), true) => {}
                (Ok(_), false) => panic!("accepted, should say {want:?}:\n{config}\n{rules}"),
                (Err(e), true) => panic!("refused: {e:#}\n{config}\n{rules}"),
                (Err(e), false) => {
                    let text = format!("{e:#}");
                    for w in want {
                        assert!(text.contains(w), "{text:?} should say {w:?}");
                    }
                    assert!(!text.contains("hooks.example.com"), "no url in {text:?}");
                }
            }
        }
    }
}
