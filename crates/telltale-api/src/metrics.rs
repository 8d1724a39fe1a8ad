//! `GET /metrics` (the Prometheus text format 0.0.4, written by hand) and
//! `GET /readyz`.
//!
//! What the store and the API know is always there (store counters, rejects,
//! database size, watches, memory); ingest, broker and notification counters
//! only once the hub passed a source of them with [`AppState::with_metrics`].
//! This crate does not know the crates that keep those counters: the hub
//! reads them into a [`Counts`] of plain numbers at each scrape.

use crate::{AppState, Problem};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// The counters of the hub's other parts, as `/metrics` and `/readyz` read
/// them: plain numbers, read afresh for each request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Readings ingest decoded, validated and handed to the store
    /// (`telltale_readings_ingested_total`).
    pub readings_ingested: u64,
    /// Whether ingest's drain thread runs: `/readyz` answers 503 `ingest`
    /// when it does not.
    pub ingest_running: bool,
    /// MQTT messages the hub's broker link received
    /// (`telltale_mqtt_messages_received_total`).
    pub mqtt_received: u64,
    /// MQTT connections closed at once for their address's cap
    /// (`telltale_mqtt_connections_refused_total`).
    pub mqtt_refused_over_cap: u64,
    /// MQTT TLS connections closed for a late certificate
    /// (`telltale_mqtt_tls_handshake_timeouts_total`).
    pub mqtt_handshake_timeouts: u64,
    /// Notifications a sink accepted (`telltale_notifications_sent_total`).
    pub notifications_sent: u64,
    /// Notifications given up on (`telltale_notifications_failed_total`).
    pub notifications_failed: u64,
    /// Notification attempts scheduled again
    /// (`telltale_notifications_retried_total`).
    pub notifications_retried: u64,
}

/// Where [`Counts`] come from: implemented by the hub over the counters of
/// ingest, the broker and its notifier, which this crate cannot name.
pub trait CountSource: Send + Sync {
    /// The counters now.
    fn counts(&self) -> Counts;
}

/// The hub's other parts as `/metrics` and `/readyz` see them.
#[derive(Clone)]
pub struct Metrics {
    /// Read once per request.
    source: Arc<dyn CountSource>,
}

impl Metrics {
    /// Reads its counters from `source`.
    pub fn new(source: impl CountSource + 'static) -> Metrics {
        Metrics {
            source: Arc::new(source),
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Writes one metric family of a single sample: HELP, TYPE and the value.
fn one(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value, escaped as the text format wants.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Resident memory of this process, bytes (VmRSS of /proc/self/status);
/// 0 where there is no /proc.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Size of the database file and its WAL, bytes.
fn db_bytes(db: &std::path::Path) -> u64 {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    [db.to_path_buf(), wal.into()]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// The whole exposition.
fn render(s: &AppState, rejects: &[(String, u64)], db_bytes: u64) -> String {
    let mut out = String::with_capacity(4096);
    let st = &s.store.stats;
    if let Some(m) = &s.metrics {
        let m = m.source.counts();
        one(
            &mut out,
            "telltale_readings_ingested_total",
            "counter",
            "Readings ingest decoded, validated and handed to the store.",
            m.readings_ingested,
        );
        one(
            &mut out,
            "telltale_mqtt_messages_received_total",
            "counter",
            "MQTT messages the hub's broker link received.",
            m.mqtt_received,
        );
        for (name, help, v) in [
            (
                "telltale_mqtt_connections_refused_total",
                "MQTT connections closed at once: their address had broker.max_connections_per_ip open.",
                m.mqtt_refused_over_cap,
            ),
            (
                "telltale_mqtt_tls_handshake_timeouts_total",
                "MQTT TLS connections closed for not sending a certificate in time.",
                m.mqtt_handshake_timeouts,
            ),
            (
                "telltale_notifications_sent_total",
                "Alert notifications a sink accepted.",
                m.notifications_sent,
            ),
            (
                "telltale_notifications_failed_total",
                "Alert notifications given up on (permanent error or retries ran out).",
                m.notifications_failed,
            ),
            (
                "telltale_notifications_retried_total",
                "Notification attempts that failed and were scheduled again.",
                m.notifications_retried,
            ),
        ] {
            one(&mut out, name, "counter", help, v);
        }
    }
    family(
        &mut out,
        "telltale_rejects_total",
        "counter",
        "Payloads refused, by reject reason (kind), as stored.",
    );
    for (reason, n) in rejects {
        let _ = writeln!(
            out,
            "telltale_rejects_total{{reason=\"{}\"}} {n}",
            label(reason)
        );
    }
    one(
        &mut out,
        "telltale_store_commits_total",
        "counter",
        "Store transactions committed.",
        st.commits.load(Relaxed),
    );
    one(
        &mut out,
        "telltale_store_commit_seconds_total",
        "counter",
        "Total time spent in COMMIT, seconds.",
        st.commit_micros.load(Relaxed) as f64 / 1e6,
    );
    one(
        &mut out,
        "telltale_retention_deleted_readings_total",
        "counter",
        "Readings deleted by retention.",
        st.deleted.load(Relaxed),
    );
    let (last, oldest) = (st.last_seq.load(Relaxed), st.oldest_seq.load(Relaxed));
    one(
        &mut out,
        "telltale_store_readings",
        "gauge",
        "Readings held, approximately: the newest reading seq minus the oldest held (gaps left by a crash are counted).",
        last.saturating_sub(oldest),
    );
    one(
        &mut out,
        "telltale_database_bytes",
        "gauge",
        "Size of the database file plus its WAL, bytes.",
        db_bytes,
    );
    family(
        &mut out,
        "telltale_oldest_resource_version_seq",
        "gauge",
        "Oldest resourceVersion seq a watch of the collection can start from.",
    );
    let _ = writeln!(
        out,
        "telltale_oldest_resource_version_seq{{collection=\"readings\"}} {oldest}"
    );
    let active = s
        .config
        .max_watches
        .saturating_sub(s.watches.available_permits());
    one(
        &mut out,
        "telltale_active_watches",
        "gauge",
        "Watch streams open now.",
        active,
    );
    one(
        &mut out,
        "telltale_alert_transitions_total",
        "counter",
        "Alert transitions (fired, resolved, ...) written by the store.",
        st.alert_transitions.load(Relaxed),
    );
    let c = &s.counters;
    for (name, kind, help, v) in [
        (
            "telltale_http_connections",
            "gauge",
            "HTTP connections open now.",
            c.connections.load(Relaxed),
        ),
        (
            "telltale_http_connections_refused_total",
            "counter",
            "HTTP connections closed at once: their client address had api.max_connections_per_ip open.",
            c.connections_refused.load(Relaxed),
        ),
        (
            "telltale_api_auth_failures_total",
            "counter",
            "Requests and WebSocket auth messages refused for a missing, unknown or revoked token (401).",
            c.auth_failures.load(Relaxed),
        ),
        (
            "telltale_api_rate_limited_total",
            "counter",
            "Requests refused by their token's rate limit (429).",
            c.rate_limited.load(Relaxed),
        ),
    ] {
        one(&mut out, name, kind, help, v);
    }
    one(
        &mut out,
        "telltale_process_resident_memory_bytes",
        "gauge",
        "Resident memory of the hub process (VmRSS), bytes.",
        rss_bytes(),
    );
    out
}

/// `GET /metrics`.
pub(crate) async fn metrics(State(s): State<AppState>) -> Response {
    let readers = s.readers.clone();
    let looked = tokio::task::spawn_blocking(move || {
        let bytes = db_bytes(readers.path());
        readers.with(|r| r.reject_counts()).map(|c| (c, bytes))
    })
    .await;
    match looked {
        Ok(Ok((rejects, bytes))) => (
            [(header::CONTENT_TYPE, CONTENT_TYPE)],
            render(&s, &rejects, bytes),
        )
            .into_response(),
        Ok(Err(e)) => Problem::internal(e).into_response(),
        Err(e) => Problem::internal(e).into_response(),
    }
}

/// `GET /readyz`: `ok` when the store writer runs and ingest runs (when the
/// hub passed its stats); otherwise 503 with `reason` `store` or `ingest`.
/// It writes nothing: probing an idle hub must not wear its SD card.
pub(crate) async fn readyz(State(s): State<AppState>) -> Response {
    let store_ok = s.store.is_alive();
    let not_ready = |reason: &'static str, detail: &str| {
        Problem {
            reason: Some(reason),
            ..Problem::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", detail)
        }
        .into_response()
    };
    if !store_ok {
        return not_ready("store", "the store writer has stopped; see the hub's log");
    }
    if let Some(m) = &s.metrics {
        if !m.source.counts().ingest_running {
            return not_ready("ingest", "ingest is not running");
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "ok").into_response()
}
