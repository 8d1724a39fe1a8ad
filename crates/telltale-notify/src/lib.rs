//! Alert notifications: the `[notify]` config section and its sinks
//! ([`NotifyConfig`], [`SinkConfig`]), the [`Notification`] the hub hands
//! over, one delivery attempt of it to a webhook or an ntfy topic
//! ([`Sender::deliver`], which says [`Outcome::Delivered`], `Retry` or
//! `Failed`), which sinks hear of an alert ([`NotifyConfig::sinks_for`]) and
//! the pure retry schedule ([`next_attempt`], [`gives_up`]). This crate owns
//! the wire shape of a notification and the meaning of an HTTP answer. It
//! never stores anything, never retries by itself, never reads a rule or a
//! database, never spawns a task and never logs: the hub keeps the durable
//! outbox, calls `deliver` when an attempt is due, and logs and counts the
//! outcome in one place. No error or outcome carries a secret, a token or a
//! sink's URL (webhook URLs are often secrets themselves).
//!
//! # Config
//!
//! ```toml
//! [notify]
//! initial_backoff_secs = 5     # first retry delay (default 5)
//! max_backoff_secs = 600       # retry delay cap (default 600)
//! give_up_after_secs = 86400   # drop a notification this long after its first attempt
//!
//! [[notify.sink]]
//! name = "ops-webhook"                    # unique, [A-Za-z0-9_.-]{1,64}
//! kind = "webhook"
//! url = "https://hooks.example.com/telltale"
//! secret = "change-me"                    # optional: signs each body
//! headers = { "X-Team" = "cold-chain" }   # optional extra headers
//! severities = ["critical", "major"]      # optional: default routing
//! timeout_secs = 10                       # default 10
//!
//! [[notify.sink]]
//! name = "phones"
//! kind = "ntfy"
//! url = "https://ntfy.sh/acme-freezers"   # the full topic URL
//! token = "tk_..."                        # optional: Authorization: Bearer
//! click_url = "https://hub.example.com/"  # optional: opened on tap
//! ```
//!
//! A rule that names sinks notifies exactly those; a rule that names none
//! notifies every sink whose `severities` holds its severity (a sink without
//! `severities` gets all of them; `severities = []` only what names it).
//!
//! # Webhook
//!
//! `POST url` with the [`Notification`] as its JSON body:
//!
//! ```json
//! {"alert_id":42,"rule":"freezer-warm","device":"freezer-3","metric":"temperature",
//!  "severity":"major","state":"firing","kind":"firing","value":-9.5,
//!  "summary":"freezer-3 at -9.5°C (limit -15)","labels":{"site":"north"},
//!  "at":"2025-06-01T12:00:00Z","acknowledged":false,"dedup_key":"42-firing-1"}
//! ```
//!
//! and these headers:
//!
//! - `Content-Type: application/json`
//! - `X-Telltale-Delivery`: the notification's `dedup_key`, the same on
//!   every retry of one notification, so a receiver can drop repeats.
//! - `X-Telltale-Timestamp`: when this attempt was sent (Unix seconds).
//! - `X-Telltale-Signature: sha256=<hex>` when `secret` is set: the
//!   HMAC-SHA256, keyed with the secret, of the exact body bytes, in lower
//!   case hex. A receiver computes the same over the raw body before parsing
//!   it and compares in constant time. The timestamp header is not signed;
//!   the body's `at` and `dedup_key` are.
//!
//! # ntfy
//!
//! `POST url` with a plain text body (the summary, then the device, metric,
//! value and rule) and the headers `Title`, `Priority` (critical 5, major 4,
//! minor and warning 3, info 2; a resolved alert at most 3), `Tags`
//! (`rotating_light` for firing critical and major, `warning` for minor and
//! warning, `information_source` for info, `white_check_mark` when resolved,
//! then the severity), `Click` (with `click_url`), `Authorization: Bearer`
//! (with `token`) and `X-Telltale-Delivery`. A title that is not plain ASCII
//! is sent as an RFC 2047 encoded word, which ntfy decodes.
//!
//! # Answers
//!
//! Any 2xx is delivered. 408, 429 and 5xx, timeouts and connection errors
//! are worth a retry (with the `Retry-After` delay in seconds, if given);
//! any other answer, a 3xx included (redirects are not followed: a signed
//! body or a token goes only to the configured URL), and an unknown sink
//! fail for good.

mod backoff;
mod config;
mod send;
#[cfg(test)]
mod tests;

pub use backoff::{gives_up, next_attempt};
pub use config::{ConfigError, NotifyConfig, Secret, SinkConfig, SinkKind};
pub use send::{Outcome, Sender};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One notification about one alert, as the hub's outbox holds it; also the
/// webhook's JSON body, field for field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// The hub's id of the alert, stable over its lifetime.
    pub alert_id: u64,
    /// The rule's name.
    pub rule: String,
    /// The device whose series the alert is about.
    pub device: String,
    /// The metric whose series the alert is about.
    pub metric: String,
    /// The rule's severity: critical, major, minor, warning or info.
    pub severity: String,
    /// The alert's state when the notification was made (pending alerts
    /// are never notified).
    pub state: AlertState,
    /// Why this notification exists: the alert fired, still fires, or ended.
    pub kind: NotificationKind,
    /// The reading's value that caused it (`null` for no-data alerts).
    pub value: serde_json::Value,
    /// The rule's summary, rendered for this alert.
    pub summary: String,
    /// The rule's labels.
    pub labels: BTreeMap<String, String>,
    /// When the alert changed (RFC 3339, made by the hub).
    pub at: String,
    /// Whether someone has acknowledged the alert.
    pub acknowledged: bool,
    /// The same for every retry of this notification, different for
    /// every other one: receivers drop repeats by it. Also sent as the
    /// `X-Telltale-Delivery` header.
    pub dedup_key: String,
}

/// An alert's state as notifications tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The alert fires.
    Firing,
    /// The alert has ended.
    Resolved,
}

/// What a notification announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationKind {
    /// The alert started firing.
    Firing,
    /// The alert still fires (the rule's `repeat_every`).
    Repeat,
    /// The alert ended.
    Resolved,
}
