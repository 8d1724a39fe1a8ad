//! The agent's TOML config file: one struct per component, unknown keys
//! refused, every default written down here and in docs/agent-config.md, and
//! the checks `check-config` runs. The same structs serialize back (secrets
//! masked) for the `get_config` command.

use anyhow::{bail, ensure, Context};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use telltale_wire::decode::Limits;

/// Longest metric name the hub accepts (wire.md "Bad input").
pub const MAX_NAME: usize = 64;

/// The whole config file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Device id: the `{id}` of every topic. 1–64 characters of
    /// `A-Z a-z 0-9 . _ -`. Required.
    pub device_id: String,
    /// Where the durable outbox (`outbox.db`) lives; created if missing.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Free-form labels sent in the birth message (site, room, kind).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// How to reach the broker.
    #[serde(default)]
    pub mqtt: MqttConfig,
    /// How readings are grouped into batches.
    #[serde(default)]
    pub batch: BatchConfig,
    /// The durable outbox and the ack window.
    #[serde(default)]
    pub outbox: OutboxConfig,
    /// What to read (`[[source]]` tables).
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
    /// Commands the hub may ask for beyond the built-in ones (`[[command]]`
    /// tables).
    #[serde(default, rename = "command")]
    pub commands: Vec<CommandConfig>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/telltale-agent")
}

/// A string that never shows up in logs or `Debug` output.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

/// What a secret looks like in `Debug` output and in `get_config`.
pub const MASK: &str = "***";

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{MASK:?}")
    }
}

/// Serialized masked, so the config can be shown without it.
impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(MASK)
    }
}

/// `[mqtt]`: the broker connection.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Broker host name or address.
    pub host: String,
    /// Broker TCP port (1883 plain; the hub's TLS listener is 8883).
    pub port: u16,
    /// User name, when the broker wants credentials.
    pub username: Option<String>,
    /// Password (needs `username`).
    pub password: Option<Secret>,
    /// MQTT client id; defaults to the device id.
    pub client_id: Option<String>,
    /// MQTT keep-alive in seconds; the broker fires the Last Will after about
    /// 1.5 times this without traffic. 0 turns keep-alive off.
    pub keep_alive_secs: u64,
    /// Topic prefix, shared with the hub.
    pub topic_prefix: String,
    /// Shortest wait before reconnecting (ms).
    pub reconnect_min_ms: u64,
    /// Longest wait before reconnecting (ms); the wait doubles up to here.
    pub reconnect_max_ms: u64,
    /// TLS: the CA certificate file (PEM) to trust, e.g. the hub's
    /// `ca.pem`. Set, the agent speaks MQTT over TLS; `host` must be a
    /// name or address the hub's certificate names.
    pub ca: Option<PathBuf>,
    /// TLS: this device's client certificate (PEM), from `telltale-hub
    /// device add`. Needs `ca` and `key`.
    pub cert: Option<PathBuf>,
    /// TLS: the client certificate's private key (PEM).
    pub key: Option<PathBuf>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: 1883,
            username: None,
            password: None,
            client_id: None,
            keep_alive_secs: 30,
            topic_prefix: telltale_wire::topic::DEFAULT_PREFIX.to_owned(),
            reconnect_min_ms: 500,
            reconnect_max_ms: 30_000,
            ca: None,
            cert: None,
            key: None,
        }
    }
}

/// `[batch]`: when a batch is closed.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Close a batch once it holds this many readings (1..=1000, the hub's
    /// per-pack limit). A batch is also closed early before its encoding
    /// would pass the hub's 64 KiB payload limit.
    pub max_readings: usize,
    /// Close a batch this long after its first reading (ms). This is also
    /// the most a SIGKILL of the agent can lose.
    pub interval_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_readings: 100,
            interval_ms: 1000,
        }
    }
}

impl BatchConfig {
    /// `interval_ms` as a `Duration`.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }
}

/// `[outbox]`: the durable queue of batches and how many may be unacked.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// Most payload bytes the outbox holds; when full the oldest batches are
    /// dropped (and counted). At least 64 KiB.
    pub max_bytes: u64,
    /// Resend from the oldest unacked batch when batches are outstanding and
    /// no ack made progress for this long (ms).
    pub ack_timeout_ms: u64,
    /// Most batches sent beyond the last acked one.
    pub max_in_flight: usize,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024 * 1024,
            ack_timeout_ms: 10_000,
            max_in_flight: 32,
        }
    }
}

/// One `[[source]]`: something that produces readings.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceConfig {
    /// Made-up but plausible values, for demos and tests.
    Simulated(SimulatedSource),
    /// The first number in a file, such as a sysfs temperature.
    File(FileSource),
    /// The output of a program.
    Command(CommandSource),
}

impl SourceConfig {
    /// The source's metric name.
    pub fn metric(&self) -> &str {
        match self {
            SourceConfig::Simulated(s) => &s.metric,
            SourceConfig::File(s) => &s.metric,
            SourceConfig::Command(s) => &s.metric,
        }
    }

    /// The source's unit, if any.
    pub fn unit(&self) -> Option<&str> {
        match self {
            SourceConfig::Simulated(s) => s.unit.as_deref(),
            SourceConfig::File(s) => s.unit.as_deref(),
            SourceConfig::Command(s) => s.unit.as_deref(),
        }
    }

    /// The source's name for commands: `name`, else the metric.
    pub fn name(&self) -> &str {
        let name = match self {
            SourceConfig::Simulated(s) => &s.name,
            SourceConfig::File(s) => &s.name,
            SourceConfig::Command(s) => &s.name,
        };
        name.as_deref().unwrap_or(self.metric())
    }

    /// How often the source is read.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(match self {
            SourceConfig::Simulated(s) => s.interval_ms,
            SourceConfig::File(s) => s.interval_ms,
            SourceConfig::Command(s) => s.interval_ms,
        })
    }

    /// The `kind` key.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Simulated(_) => "simulated",
            SourceConfig::File(_) => "file",
            SourceConfig::Command(_) => "command",
        }
    }
}

fn default_interval_ms() -> u64 {
    1000
}

/// The waveform of a simulated source.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// `base + amplitude·sin(2πt/period)` plus gaussian noise.
    #[default]
    Sine,
    /// A bounded random walk that stays within `base ± amplitude`.
    RandomWalk,
    /// Rises from `base − amplitude` to `base + amplitude` once a period,
    /// plus noise.
    Sawtooth,
    /// A boolean (`vb`) that toggles about once a period, like a door.
    Boolean,
    /// `base + n` for the n-th reading since start (1, 2, 3, ...), no noise:
    /// a pulse counter, and what tests use to check that every reading
    /// arrives exactly once.
    Counter,
}

/// `kind = "simulated"`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SimulatedSource {
    /// Name for commands (`set_interval`, `read_now`); defaults to the metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Metric name (SenML name rules, at most 64 characters).
    pub metric: String,
    /// SenML unit, such as `Cel`.
    #[serde(default)]
    pub unit: Option<String>,
    /// Time between readings (ms).
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// The waveform.
    #[serde(default)]
    pub shape: Shape,
    /// Centre value.
    #[serde(default = "default_base")]
    pub base: f64,
    /// Largest swing away from `base`.
    #[serde(default = "default_amplitude")]
    pub amplitude: f64,
    /// Length of one cycle (s); for `boolean`, the mean time between toggles.
    #[serde(default = "default_period_secs")]
    pub period_secs: f64,
    /// Standard deviation of the noise added to each reading.
    #[serde(default = "default_noise")]
    pub noise: f64,
    /// Stop after this many readings (none: run until stopped).
    #[serde(default)]
    pub limit: Option<u64>,
}

fn default_base() -> f64 {
    20.0
}
fn default_amplitude() -> f64 {
    5.0
}
fn default_period_secs() -> f64 {
    300.0
}
fn default_noise() -> f64 {
    0.1
}

/// `kind = "file"`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileSource {
    /// Name for commands (`set_interval`, `read_now`); defaults to the metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Metric name (SenML name rules, at most 64 characters).
    pub metric: String,
    /// SenML unit, such as `Cel`.
    #[serde(default)]
    pub unit: Option<String>,
    /// Time between reads (ms).
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// The file; its first number is read.
    pub path: PathBuf,
    /// The reading is the number times this (0.001 turns millidegrees into degrees).
    #[serde(default = "default_scale")]
    pub scale: f64,
}

fn default_scale() -> f64 {
    1.0
}

/// `kind = "command"`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CommandSource {
    /// Name for commands (`set_interval`, `read_now`); defaults to the metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Metric of bare-number output lines (SenML name rules, at most 64 characters).
    pub metric: String,
    /// Unit of bare-number output lines.
    #[serde(default)]
    pub unit: Option<String>,
    /// Time between runs (ms); a run that overruns delays the next one.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// Program to run, directly (no shell); looked up in `PATH` unless it has a `/`.
    pub program: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Kill the program if it runs longer than this (ms).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    5000
}

/// One `[[command]]`: a program the hub may ask the agent to run, with
/// typed parameters filled into a fixed argument template.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CommandConfig {
    /// The command's name, as the hub sends it (1-64 characters of `a-z 0-9 _ -`,
    /// starting with a letter; not a built-in name).
    pub name: String,
    /// Absolute path of the program, run directly (never through a shell).
    pub program: String,
    /// Argument templates: text, with `{param}` placeholders replaced by the
    /// parameter's value inside the argument (`{{` and `}}` for literal braces).
    #[serde(default)]
    pub args: Vec<String>,
    /// Kill the program and report `failed` after this many seconds (1-86400).
    #[serde(default = "default_command_timeout_secs")]
    pub timeout_secs: u64,
    /// Most bytes of stdout and stderr together kept for the result (0-32768);
    /// the rest is read and thrown away.
    #[serde(default = "default_max_output_bytes")]
    pub max_output_bytes: usize,
    /// The parameters, by name; every one is required and every one must be
    /// used by some argument.
    #[serde(default)]
    pub params: BTreeMap<String, ParamSpec>,
}

fn default_command_timeout_secs() -> u64 {
    10
}
fn default_max_output_bytes() -> usize {
    4096
}

/// The type of one parameter of a `[[command]]`, and its limits.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ParamSpec {
    /// A JSON string (at most 1024 bytes, no NUL).
    String {
        /// A regular expression the whole value must match.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pattern: Option<String>,
    },
    /// A JSON integer.
    Integer {
        /// Smallest value allowed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<i64>,
        /// Largest value allowed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<i64>,
    },
    /// A JSON number.
    Number {
        /// Smallest value allowed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<f64>,
        /// Largest value allowed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<f64>,
    },
    /// `true` or `false`.
    Boolean {},
}

/// Whether `name` is a metric name the hub accepts: starts with a letter or
/// digit, holds only `A-Z a-z 0-9 - : . / _`, at most 64 characters
/// (RFC 8428 section 4.5.1 and wire.md).
pub fn valid_metric(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b':' | b'.' | b'/' | b'_'))
}

/// Whether `unit` is a unit the hub accepts: 1–32 printable ASCII characters.
pub fn valid_unit(unit: &str) -> bool {
    !unit.is_empty()
        && unit.len() <= Limits::default().max_unit
        && unit.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
}

fn valid_topic_level(s: &str) -> bool {
    !s.is_empty() && !s.contains(['+', '#', '\0']) && !s.starts_with('/') && !s.ends_with('/')
}

/// A topic prefix: a plain one (`telltale/v1`), or one under a tenant
/// (`/tenants/{tenant}/telltale/v1`), the only topics the hub's broker lets
/// a certificate device use.
fn valid_prefix(s: &str) -> bool {
    match s.strip_prefix("/tenants/") {
        Some(rest) => rest.split_once('/').is_some_and(|(tenant, p)| {
            !tenant.is_empty()
                && tenant.bytes().all(|b| b.is_ascii_alphanumeric())
                && valid_topic_level(p)
        }),
        None => valid_topic_level(s),
    }
}

impl Config {
    /// Reads, parses and validates the config file at `path`.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Config::parse(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let config: Config = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// The MQTT client id: `mqtt.client_id` or the device id.
    pub fn client_id(&self) -> &str {
        self.mqtt.client_id.as_deref().unwrap_or(&self.device_id)
    }

    /// The outbox file.
    pub fn outbox_path(&self) -> PathBuf {
        self.data_dir.join("outbox.db")
    }

    /// Checks everything serde cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            telltale_wire::topic::valid_device_id(&self.device_id),
            "device_id {:?} must be 1-64 characters of A-Z a-z 0-9 . _ -",
            self.device_id
        );
        ensure!(
            !self.data_dir.as_os_str().is_empty(),
            "data_dir must not be empty"
        );
        ensure!(self.labels.len() <= 64, "at most 64 labels");
        for (k, v) in &self.labels {
            ensure!(
                !k.is_empty() && k.len() <= 64,
                "label name {k:?} must be 1-64 characters"
            );
            ensure!(v.len() <= 256, "label {k:?}: value over 256 characters");
        }
        self.mqtt.validate().context("[mqtt]")?;
        self.batch.validate().context("[batch]")?;
        self.outbox.validate().context("[outbox]")?;
        for (i, s) in self.sources.iter().enumerate() {
            s.validate()
                .with_context(|| format!("[[source]] #{} (kind {})", i + 1, s.kind()))?;
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, c) in self.commands.iter().enumerate() {
            let at = || format!("[[command]] #{} ({})", i + 1, c.name);
            crate::commands::Operator::compile(c)
                .map_err(anyhow::Error::msg)
                .with_context(at)?;
            ensure!(
                names.insert(c.name.as_str()),
                "{}: name {:?} is used by an earlier [[command]]",
                at(),
                c.name
            );
        }
        Ok(())
    }
}

impl MqttConfig {
    fn validate(&self) -> anyhow::Result<()> {
        ensure!(!self.host.is_empty(), "host must not be empty");
        ensure!(self.port != 0, "port must not be 0");
        if let Some(id) = &self.client_id {
            ensure!(
                !id.is_empty() && id.len() <= 256,
                "client_id must be 1-256 characters"
            );
        }
        if self.password.is_some() && self.username.is_none() {
            bail!("password needs a username");
        }
        ensure!(
            self.keep_alive_secs <= u64::from(u16::MAX),
            "keep_alive_secs must be at most 65535"
        );
        ensure!(
            valid_prefix(&self.topic_prefix),
            "topic_prefix {:?} must be non-empty, without + # or a leading or trailing / (except the certificate form /tenants/TENANT/...)",
            self.topic_prefix
        );
        ensure!(
            self.cert.is_some() == self.key.is_some(),
            "cert and key go together"
        );
        ensure!(
            self.cert.is_none() || self.ca.is_some(),
            "cert needs ca (TLS)"
        );
        ensure!(
            self.reconnect_min_ms >= 1,
            "reconnect_min_ms must be at least 1"
        );
        ensure!(
            self.reconnect_min_ms <= self.reconnect_max_ms,
            "reconnect_min_ms must not exceed reconnect_max_ms"
        );
        Ok(())
    }
}

impl BatchConfig {
    fn validate(&self) -> anyhow::Result<()> {
        let max = Limits::default().max_records;
        ensure!(
            (1..=max).contains(&self.max_readings),
            "max_readings must be 1..={max}"
        );
        ensure!(self.interval_ms >= 1, "interval_ms must be at least 1");
        Ok(())
    }
}

impl OutboxConfig {
    fn validate(&self) -> anyhow::Result<()> {
        let min = Limits::default().max_payload as u64;
        ensure!(
            self.max_bytes >= min,
            "max_bytes must be at least {min} (one full batch)"
        );
        ensure!(
            self.ack_timeout_ms >= 100,
            "ack_timeout_ms must be at least 100"
        );
        ensure!(
            (1..=1000).contains(&self.max_in_flight),
            "max_in_flight must be 1..=1000"
        );
        Ok(())
    }
}

impl SourceConfig {
    fn validate(&self) -> anyhow::Result<()> {
        let metric = self.metric();
        ensure!(
            valid_metric(metric),
            "metric {metric:?} must be 1-64 characters of A-Z a-z 0-9 - : . / _ starting with a letter or digit"
        );
        let name = self.name();
        ensure!(
            valid_metric(name),
            "name {name:?} must be 1-64 characters of A-Z a-z 0-9 - : . / _ starting with a letter or digit"
        );
        if let Some(u) = self.unit() {
            ensure!(
                valid_unit(u),
                "unit {u:?} must be 1-32 printable characters"
            );
        }
        ensure!(
            self.interval() >= Duration::from_millis(1),
            "interval_ms must be at least 1"
        );
        match self {
            SourceConfig::Simulated(s) => {
                ensure!(s.base.is_finite(), "base must be a finite number");
                ensure!(
                    s.amplitude.is_finite() && s.amplitude >= 0.0,
                    "amplitude must be a finite number >= 0"
                );
                ensure!(
                    s.noise.is_finite() && s.noise >= 0.0,
                    "noise must be a finite number >= 0"
                );
                ensure!(
                    s.period_secs.is_finite() && s.period_secs > 0.0,
                    "period_secs must be a number > 0"
                );
            }
            SourceConfig::File(s) => {
                ensure!(!s.path.as_os_str().is_empty(), "path must not be empty");
                ensure!(
                    s.scale.is_finite() && s.scale != 0.0,
                    "scale must be a finite number other than 0"
                );
            }
            SourceConfig::Command(s) => {
                ensure!(!s.program.is_empty(), "program must not be empty");
                ensure!(s.timeout_ms >= 1, "timeout_ms must be at least 1");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
