//! The `[notify]` section: sinks, their checks and routing by severity.

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Url;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::time::Duration;
use telltale_filter::SEVERITIES;
use SinkKind::{Ntfy, Webhook};

/// A config value that must never be shown: `Debug` prints `Secret(..)`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// A config error, naming the setting at fault. It never holds a secret,
/// a token, a header value or a URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A setting of `[notify]` itself.
    #[error("notify.{field}: {reason}")]
    Notify {
        /// The setting's key.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A setting of one `[[notify.sink]]`.
    #[error("notify.sink {sink:?}: {field}: {reason}")]
    Sink {
        /// The sink's name, as written.
        sink: String,
        /// The setting's key (`headers.<name>` for a header).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be set up (TLS roots).
    #[error("http client: {0}")]
    Client(String),
}

/// The hub's `[notify]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// The places notifications go, each a `[[notify.sink]]` table.
    pub sink: Vec<SinkConfig>,
    /// Delay before the first retry of a failed attempt, in seconds; each
    /// later retry waits twice as long (see [`crate::next_attempt`]).
    pub initial_backoff_secs: u64,
    /// Longest delay between two attempts, in seconds.
    pub max_backoff_secs: u64,
    /// A notification still undelivered this long after its first attempt
    /// is dropped (and counted), in seconds.
    pub give_up_after_secs: u64,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            sink: Vec::new(),
            initial_backoff_secs: 5,
            max_backoff_secs: 600,
            give_up_after_secs: 86_400,
        }
    }
}

/// Which protocol a sink speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// A JSON POST of the [`crate::Notification`], optionally signed.
    Webhook,
    /// A plain text POST to an ntfy topic, which pushes it to phones.
    Ntfy,
}

/// One `[[notify.sink]]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Unique id, `[A-Za-z0-9_.-]{1,64}`: what rules' `notify` lists name.
    pub name: String,
    /// `webhook` or `ntfy`.
    pub kind: SinkKind,
    /// Where to POST (http or https): the receiver, or ntfy's full topic
    /// URL. Never shown in errors, as it may carry a secret path.
    pub url: String,
    /// The severities this sink receives from rules that name no sink;
    /// absent: all of them.
    #[serde(default)]
    pub severities: Option<Vec<String>>,
    /// Give up on one attempt after this many seconds, 1 to 300 (the whole
    /// attempt: connecting, sending, and reading the answer).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Webhook only: key of the `X-Telltale-Signature` HMAC-SHA256.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// Extra request headers, for either kind (e.g. the `Authorization` a
    /// receiver wants, or ntfy's `Icon`); values are treated as secrets.
    /// Headers telltale sets itself are refused.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// ntfy only: access token, sent as `Authorization: Bearer <token>`.
    #[serde(default)]
    pub token: Option<Secret>,
    /// ntfy only: the URL a phone opens when the notification is tapped.
    #[serde(default)]
    pub click_url: Option<String>,
}

fn default_timeout_secs() -> u64 {
    10
}

/// Headers the sender sets itself; a sink's `headers` may not name them.
const RESERVED: [&str; 5] = [
    "host",
    "content-type",
    "content-length",
    "title",
    "priority",
];

impl NotifyConfig {
    /// Checks every setting; the error names the first bad one.
    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |field, reason: &str| {
            Err(ConfigError::Notify {
                field,
                reason: reason.into(),
            })
        };
        if self.initial_backoff_secs == 0 {
            return bad("initial_backoff_secs", "must be at least 1");
        }
        if self.max_backoff_secs < self.initial_backoff_secs {
            return bad("max_backoff_secs", "must be at least initial_backoff_secs");
        }
        if self.give_up_after_secs == 0 {
            return bad("give_up_after_secs", "must be at least 1");
        }
        let mut names = HashSet::new();
        for sink in &self.sink {
            sink.check()?;
            if !names.insert(sink.name.as_str()) {
                return Err(sink.error("name", "used by another sink"));
            }
        }
        Ok(())
    }

    /// The first retry's delay.
    pub fn initial_backoff(&self) -> Duration {
        Duration::from_secs(self.initial_backoff_secs)
    }

    /// The longest delay between attempts.
    pub fn max_backoff(&self) -> Duration {
        Duration::from_secs(self.max_backoff_secs)
    }

    /// How long after its first attempt a notification is dropped.
    pub fn give_up_after(&self) -> Duration {
        Duration::from_secs(self.give_up_after_secs)
    }

    /// The sink names to notify of an alert: the rule's own sinks if it
    /// names any (unknown names included: delivering to one fails), else
    /// every sink whose `severities` holds `severity`, in config order.
    pub fn sinks_for<'a>(&'a self, rule_sinks: &'a [String], severity: &str) -> Vec<&'a str> {
        if !rule_sinks.is_empty() {
            return rule_sinks.iter().map(String::as_str).collect();
        }
        self.sink
            .iter()
            .filter(|s| {
                s.severities
                    .as_ref()
                    .is_none_or(|list| list.iter().any(|v| v == severity))
            })
            .map(|s| s.name.as_str())
            .collect()
    }
}

impl SinkConfig {
    /// Checks this sink's settings; the error names the first bad one.
    pub fn check(&self) -> Result<(), ConfigError> {
        let name_char = |b: u8| b.is_ascii_alphanumeric() || b"_.-".contains(&b);
        let name_ok = (1..=64).contains(&self.name.len()) && self.name.bytes().all(name_char);
        if !name_ok {
            return Err(self.error("name", "must be 1 to 64 of A-Z a-z 0-9 _ . -"));
        }
        let url = self.parsed_url()?;
        if self.kind == Ntfy && url.path().trim_matches('/').is_empty() {
            let reason = "must be the topic's URL, e.g. https://ntfy.sh/my-topic";
            return Err(self.error("url", reason));
        }
        for severity in self.severities.iter().flatten() {
            if !SEVERITIES.contains(&severity.as_str()) {
                let reason = format!(
                    "unknown severity {severity:?} (one of {})",
                    SEVERITIES.join(", ")
                );
                return Err(self.error("severities", reason));
            }
        }
        if self.timeout_secs == 0 || self.timeout_secs > 300 {
            return Err(self.error("timeout_secs", "must be 1 to 300"));
        }
        let kinds = [("secret", Webhook), ("token", Ntfy), ("click_url", Ntfy)];
        let set = [
            self.secret.is_some(),
            self.token.is_some(),
            self.click_url.is_some(),
        ];
        for ((field, kind), set) in kinds.into_iter().zip(set) {
            if set && self.kind != kind {
                let what = if kind == Webhook { "webhook" } else { "ntfy" };
                return Err(self.error(field, format!("only for kind = \"{what}\"")));
            }
        }
        if self.secret.as_ref().is_some_and(|s| s.0.is_empty()) {
            return Err(self.error("secret", "must not be empty"));
        }
        if self.token.as_ref().is_some_and(|t| !printable(&t.0)) {
            return Err(self.error("token", "must be printable ASCII"));
        }
        if let Some(click) = &self.click_url {
            if Url::parse(click).is_err() || !printable(click) {
                return Err(self.error("click_url", "must be a URL"));
            }
        }
        self.header_map()?;
        Ok(())
    }

    /// The `url`, parsed; only http and https with a host pass.
    pub(crate) fn parsed_url(&self) -> Result<Url, ConfigError> {
        match Url::parse(&self.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(url),
            _ => Err(self.error("url", "must be an http or https URL")),
        }
    }

    /// The extra `headers`, checked, with values marked sensitive.
    pub(crate) fn header_map(&self) -> Result<reqwest::header::HeaderMap, ConfigError> {
        let mut map = reqwest::header::HeaderMap::new();
        for (name, value) in &self.headers {
            let field = || format!("headers.{name}");
            let key = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| self.error(&field(), "not a valid header name"))?;
            let lower = key.as_str();
            let ours = RESERVED.contains(&lower)
                || lower.starts_with("x-telltale-")
                || (self.kind == Ntfy && matches!(lower, "tags" | "click"))
                || (self.token.is_some() && lower == "authorization");
            if ours {
                return Err(self.error(&field(), "set by telltale itself"));
            }
            let mut value = (Some(value.expose()).filter(|v| printable(v)))
                .and_then(|v| HeaderValue::from_str(v).ok())
                .ok_or_else(|| self.error(&field(), "value must be printable ASCII"))?;
            value.set_sensitive(true);
            map.insert(key, value);
        }
        Ok(map)
    }

    pub(crate) fn error(&self, field: &str, reason: impl Into<String>) -> ConfigError {
        let (sink, field, reason) = (self.name.clone(), field.to_owned(), reason.into());
        ConfigError::Sink {
            sink,
            field,
            reason,
        }
    }
}

/// Whether `text` is printable ASCII, which any HTTP header value may hold.
pub(crate) fn printable(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| (b' '..=b'~').contains(&b))
}
