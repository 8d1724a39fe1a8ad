//! One delivery attempt: building the request for a sink's kind, sending
//! it, and reading the answer as an [`Outcome`].

use crate::config::{printable, ConfigError, NotifyConfig, Secret, SinkConfig, SinkKind};
use crate::{Notification, NotificationKind};
use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Client, Response, StatusCode, Url};
use sha2::Sha256;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The result of one delivery attempt. Reasons never hold a secret, a
/// token or the sink's URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver accepted it (2xx): done.
    Delivered,
    /// Worth another attempt later: a connection error, a timeout, 5xx,
    /// 408 or 429.
    Retry {
        /// What went wrong, for the log.
        reason: String,
        /// The receiver's `Retry-After` (seconds form), if it sent one.
        after: Option<Duration>,
    },
    /// Will not work however often it is tried: any other answer, an
    /// unknown sink, a notification that cannot be sent.
    Failed {
        /// What went wrong, for the log.
        reason: String,
    },
}

/// Sends notifications to the configured sinks; one per hub, cheap to clone
/// (the HTTP client and its connection pool are shared).
#[derive(Clone)]
pub struct Sender {
    /// One client for all sinks: its pool keeps connections to each host.
    client: Client,
    /// What does not change after `new`, shared by the clones.
    inner: Arc<Inner>,
}

struct Inner {
    /// Kept for routing (`sinks_for`) and the backoff settings.
    config: NotifyConfig,
    /// The same sinks, ready to send to, in config order.
    sinks: Vec<Sink>,
}

/// A [`SinkConfig`] checked and parsed once: headers built, the token in
/// `headers` as `Authorization`, all header values marked sensitive.
struct Sink {
    name: String,
    kind: SinkKind,
    url: Url,
    timeout: Duration,
    secret: Option<Secret>,
    headers: HeaderMap,
    click: Option<HeaderValue>,
}

const USER_AGENT: &str = concat!("telltale/", env!("CARGO_PKG_VERSION"));

impl Sender {
    /// Checks `config` and builds the sender with its HTTP client (rustls,
    /// Mozilla's roots, no redirects, `HTTP(S)_PROXY` honoured).
    pub fn new(config: &NotifyConfig) -> Result<Self, ConfigError> {
        config.check()?;
        let sinks = config
            .sink
            .iter()
            .map(Sink::new)
            .collect::<Result<_, _>>()?;
        let client = Client::builder()
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ConfigError::Client(e.without_url().to_string()))?;
        let inner = Arc::new(Inner {
            config: config.clone(),
            sinks,
        });
        Ok(Self { client, inner })
    }

    /// The config this sender was built from.
    pub fn config(&self) -> &NotifyConfig {
        &self.inner.config
    }

    /// See [`NotifyConfig::sinks_for`].
    pub fn sinks_for<'a>(&'a self, rule_sinks: &'a [String], severity: &str) -> Vec<&'a str> {
        self.inner.config.sinks_for(rule_sinks, severity)
    }

    /// Makes one attempt to deliver `n` to the sink named `sink`, within
    /// the sink's timeout. Never retries by itself.
    pub async fn deliver(&self, sink: &str, n: &Notification) -> Outcome {
        let Some(sink) = self.inner.sinks.iter().find(|s| s.name == sink) else {
            return failed(format!("unknown sink {sink:?}"));
        };
        let delivery = Some(n.dedup_key.as_str()).filter(|k| printable(k));
        let Some(delivery) = delivery.and_then(|k| HeaderValue::from_str(k).ok()) else {
            return failed("dedup_key is not printable ASCII");
        };
        let request = self
            .client
            .post(sink.url.clone())
            .timeout(sink.timeout)
            .headers(sink.headers.clone())
            .header("X-Telltale-Delivery", delivery);
        let request = match sink.kind {
            SinkKind::Webhook => {
                let Ok(body) = serde_json::to_vec(n) else {
                    return failed("notification does not encode as JSON");
                };
                let mut request = request
                    .header(CONTENT_TYPE, "application/json")
                    .header("X-Telltale-Timestamp", unix_now().to_string());
                if let Some(secret) = &sink.secret {
                    let Some(signature) = signature(secret, &body) else {
                        return failed("cannot key the signature");
                    };
                    request = request.header("X-Telltale-Signature", signature);
                }
                request.body(body)
            }
            SinkKind::Ntfy => {
                let mut request = request
                    .header(CONTENT_TYPE, "text/plain; charset=utf-8")
                    .header("Title", header_text(&ntfy_title(n)))
                    .header("Priority", ntfy_priority(n).to_string())
                    .header("Tags", ntfy_tags(n));
                if let Some(click) = &sink.click {
                    request = request.header("Click", click.clone());
                }
                request.body(ntfy_body(n))
            }
        };
        match request.send().await {
            Ok(response) => outcome(response).await,
            Err(e) if e.is_timeout() => {
                retry(format!("timed out after {}s", sink.timeout.as_secs()))
            }
            Err(e) if e.is_builder() => failed(describe(e)),
            Err(e) => retry(describe(e)),
        }
    }
}

impl Sink {
    fn new(config: &SinkConfig) -> Result<Self, ConfigError> {
        let mut headers = config.header_map()?;
        if let Some(token) = &config.token {
            let bearer = format!("Bearer {}", token.expose());
            let mut value = HeaderValue::from_str(&bearer)
                .map_err(|_| config.error("token", "must be printable ASCII"))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        Ok(Self {
            name: config.name.clone(),
            kind: config.kind,
            url: config.parsed_url()?,
            timeout: Duration::from_secs(config.timeout_secs),
            secret: config.secret.clone(),
            headers,
            click: config
                .click_url
                .as_deref()
                .and_then(|c| HeaderValue::from_str(c).ok()),
        })
    }
}

fn failed(reason: impl Into<String>) -> Outcome {
    Outcome::Failed {
        reason: reason.into(),
    }
}

fn retry(reason: String) -> Outcome {
    Outcome::Retry {
        reason,
        after: None,
    }
}

/// `sha256=` and the lower case hex HMAC-SHA256 of `body` keyed by `secret`.
/// (`None` never happens: HMAC takes keys of any length.)
pub(crate) fn signature(secret: &Secret, body: &[u8]) -> Option<String> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose().as_bytes()).ok()?;
    mac.update(body);
    Some(format!(
        "sha256={}",
        hex::encode(mac.finalize().into_bytes())
    ))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Classifies an answer, reading at most a little of a failure's body.
async fn outcome(mut response: Response) -> Outcome {
    let status = response.status();
    if status.is_success() {
        return Outcome::Delivered;
    }
    let after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .map(Duration::from_secs);
    let mut body = Vec::new();
    while body.len() < 200 {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let text: String = String::from_utf8_lossy(&body)
        .chars()
        .take(200)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut reason = format!("http {status}");
    if status.is_redirection() {
        reason.push_str(" (redirects are not followed: set url to the final address)");
    } else if !text.trim().is_empty() {
        reason = format!("{reason}: {}", text.trim());
    }
    let retry = status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS;
    match retry {
        true => Outcome::Retry { reason, after },
        false => Outcome::Failed { reason },
    }
}

/// An error and its causes, without the URL.
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `text` as a header value: as is when printable ASCII, else an RFC 2047
/// encoded word (Q encoding), which ntfy decodes.
pub(crate) fn header_text(text: &str) -> String {
    if printable(text) {
        return text.to_owned();
    }
    let mut out = String::from("=?UTF-8?Q?");
    for b in text.bytes() {
        match b {
            b' ' => out.push('_'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b':' => out.push(char::from(b)),
            _ => out.push_str(&format!("={b:02X}")),
        }
    }
    out.push_str("?=");
    out
}

pub(crate) fn ntfy_title(n: &Notification) -> String {
    let what = match n.kind {
        NotificationKind::Firing => "Firing",
        NotificationKind::Repeat => "Still firing",
        NotificationKind::Resolved => "Resolved",
    };
    let acked = if n.acknowledged {
        " (acknowledged)"
    } else {
        ""
    };
    format!("{what}: {} on {}{acked}", n.rule, n.device)
}

/// ntfy's 1 (min) to 5 (urgent); good news never goes above the default 3.
pub(crate) fn ntfy_priority(n: &Notification) -> u8 {
    let priority = match n.severity.as_str() {
        "critical" => 5,
        "major" => 4,
        "info" => 2,
        _ => 3,
    };
    match n.kind {
        NotificationKind::Resolved => priority.min(3),
        _ => priority,
    }
}

/// An emoji tag (ntfy shows it before the title), then the severity.
pub(crate) fn ntfy_tags(n: &Notification) -> String {
    let emoji = match (n.kind, n.severity.as_str()) {
        (NotificationKind::Resolved, _) => "white_check_mark",
        (_, "critical" | "major") => "rotating_light",
        (_, "info") => "information_source",
        _ => "warning",
    };
    format!("{emoji},{}", n.severity)
}

pub(crate) fn ntfy_body(n: &Notification) -> String {
    let value = match &n.value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "no data".to_owned(),
        other => other.to_string(),
    };
    let mut body = String::new();
    if !n.summary.is_empty() {
        body.push_str(&n.summary);
        body.push('\n');
    }
    body.push_str(&format!(
        "{} {} = {value}\nrule {} ({}), alert {}, at {}",
        n.device, n.metric, n.rule, n.severity, n.alert_id, n.at
    ));
    body
}
