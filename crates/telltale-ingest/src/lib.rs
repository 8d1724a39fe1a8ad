//! Ingest: the path from the broker to the store and back.
//!
//! broker link → topic → decode and validate (telltale-wire) → store writer
//! → after commit, an `ack` publish to the device. A payload that fails is
//! stored as a reject with its reason and counted; it never stops ingest.
//!
//! This crate knows neither SQLite nor rumqttd: it uses the store and broker
//! crates' handles.

use serde::Deserialize;
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use telltale_broker::{Message, Messages, Publisher};
use telltale_store::auth::AuthSnapshot;
use telltale_store::commands::{self, CommandState, CommandUpdate};
use telltale_store::{AckOut, IncomingBatch, Reject, WriteOp, WriterHandle};
use telltale_wire::decode::{self, Limits};
use telltale_wire::msg::{Ack, CommandResult, Presence, ResultStatus, Status};
use telltale_wire::topic::{self, Kind};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// The `[ingest]` section of the hub's config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Topic prefix.
    pub topic_prefix: String,
    /// Largest payload accepted, bytes.
    pub max_payload_bytes: usize,
    /// Most records in one pack.
    pub max_records: usize,
    /// Longest metric name (base name + name), characters.
    pub max_name_chars: usize,
    /// Longest unit, characters.
    pub max_unit_chars: usize,
    /// Longest string or data value, bytes.
    pub max_string_bytes: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        let l = Limits::default();
        Self {
            topic_prefix: topic::DEFAULT_PREFIX.to_owned(),
            max_payload_bytes: l.max_payload,
            max_records: l.max_records,
            max_name_chars: l.max_name,
            max_unit_chars: l.max_unit,
            max_string_bytes: l.max_string,
        }
    }
}

impl IngestConfig {
    fn limits(&self) -> Limits {
        Limits {
            max_payload: self.max_payload_bytes,
            max_records: self.max_records,
            max_name: self.max_name_chars,
            max_unit: self.max_unit_chars,
            max_string: self.max_string_bytes,
        }
    }

    /// The broker filters ingest subscribes to: each device topic in its
    /// plain form and under any tenant (`/tenants/+/{prefix}/...`).
    pub fn filters(&self) -> Vec<String> {
        let tenants = format!("{TENANTS}+/{}", self.topic_prefix);
        [Kind::Telemetry, Kind::Status, Kind::CmdResult]
            .into_iter()
            .flat_map(|k| {
                [
                    topic::filter_all(&self.topic_prefix, k),
                    topic::filter_all(&tenants, k),
                ]
            })
            .collect()
    }
}

/// What starts a topic under a tenant: `/tenants/{tenant}/{prefix}/...`. The
/// broker confines a device with a certificate to the topics under its
/// tenant (the certificate's `O`).
pub const TENANTS: &str = "/tenants/";

/// The topic of `device`'s `kind` messages: under its tenant when it has
/// credentials (a certificate device can reach nothing else), plain
/// otherwise.
pub fn device_topic(auth: &AuthSnapshot, prefix: &str, device: &str, kind: Kind) -> String {
    match auth.device_tenant(device) {
        Some(t) => topic::format(&format!("{TENANTS}{t}/{prefix}"), device, kind),
        None => topic::format(prefix, device, kind),
    }
}

/// Counters of ingest.
#[derive(Debug, Default)]
pub struct IngestStats {
    /// Telemetry messages received.
    pub messages: AtomicU64,
    /// Readings handed to the store.
    pub readings: AtomicU64,
    /// Payloads rejected.
    pub rejected: AtomicU64,
    /// Ack messages published.
    pub acks: AtomicU64,
    /// Status messages seen.
    pub statuses: AtomicU64,
    /// Command results (receipts and outcomes) received.
    pub command_results: AtomicU64,
    /// Whether the drain thread runs: set by [`start`], cleared when the
    /// thread ends (shutdown, the broker link closed, or the store gone).
    pub running: AtomicBool,
}

/// A device's presence change, for later consumers (device collection).
#[derive(Debug, Clone)]
pub struct PresenceEvent {
    pub device: String,
    pub status: Status,
}

/// Ingest, running: a thread that drains the broker link into the store
/// writer, and a task that publishes acks after commits.
pub struct Running {
    /// The drain thread, joined first: after it nothing more is queued.
    thread: std::thread::JoinHandle<()>,
    /// The ack task, awaited last: it ends once the acks owed are published.
    acks: tokio::task::JoinHandle<()>,
    /// Tells the ack task that the final sync has been answered: every ack
    /// owed is in its channel, so it publishes what is queued and ends
    /// (the store writer, which holds the channel's sender, lives on).
    acks_done: CancellationToken,
    /// For the final sync.
    writer: WriterHandle,
}

/// Starts ingest. It runs until `shutdown` fires or the broker link ends;
/// then await [`Running::stopped`]. `auth` is the live credentials: a
/// message under a tenant is taken only as that tenant's device, and a
/// device with credentials only under its tenant.
#[allow(clippy::too_many_arguments)]
pub fn start(
    mut messages: Messages,
    publisher: Publisher,
    writer: WriterHandle,
    acks: mpsc::UnboundedReceiver<Vec<AckOut>>,
    config: IngestConfig,
    stats: Arc<IngestStats>,
    auth: watch::Receiver<Arc<AuthSnapshot>>,
    shutdown: CancellationToken,
) -> std::io::Result<Running> {
    let acks_done = CancellationToken::new();
    let ack_task = tokio::spawn(send_acks(
        acks,
        publisher,
        config.topic_prefix.clone(),
        stats.clone(),
        auth.clone(),
        acks_done.clone(),
    ));
    stats.running.store(true, Relaxed);
    let mut ingest = Ingest {
        limits: config.limits(),
        config,
        writer: writer.clone(),
        stats,
        last_log: HashMap::new(),
        auth,
    };
    let thread = std::thread::Builder::new()
        .name("ingest".into())
        .spawn(move || {
            messages.drain(
                || shutdown.is_cancelled(),
                |msg| match ingest.handle(msg) {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(_) => {
                        tracing::error!("store writer is gone; ingest stops");
                        ControlFlow::Break(())
                    }
                },
            );
            ingest.stats.running.store(false, Relaxed);
        })?;
    Ok(Running {
        thread,
        acks: ack_task,
        acks_done,
        writer,
    })
}

impl Running {
    /// Waits for the drain thread to end, commits what it queued and sends
    /// the acks owed; it returns as soon as they are published. It has no
    /// timer of its own: the caller bounds it (the hub's stop deadline), and
    /// dropping it there leaves the ack task to finish on its own.
    pub async fn stopped(self) {
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        // The writer sends a commit's acks before it answers a sync in the
        // same group, so once this returns every ack owed for a committed
        // batch is in the ack task's channel.
        if let Err(e) = self.writer.sync().await {
            tracing::warn!(error = %e, "final store sync failed");
        }
        drop(self.writer);
        self.acks_done.cancel();
        let _ = self.acks.await;
    }
}

async fn send_acks(
    mut acks: mpsc::UnboundedReceiver<Vec<AckOut>>,
    publisher: Publisher,
    prefix: String,
    stats: Arc<IngestStats>,
    auth: watch::Receiver<Arc<AuthSnapshot>>,
    done: CancellationToken,
) {
    let publish = |batch: Vec<AckOut>| {
        let auth = auth.borrow().clone();
        for a in batch {
            let body = Ack {
                outbox: a.outbox,
                upto: a.upto,
            };
            match serde_json::to_vec(&body) {
                Ok(payload) => {
                    publisher.publish(device_topic(&auth, &prefix, &a.device, Kind::Ack), payload);
                    stats.acks.fetch_add(1, Relaxed);
                }
                Err(e) => tracing::error!(error = %e, "ack encode failed"),
            }
        }
    };
    loop {
        tokio::select! {
            biased;
            batch = acks.recv() => match batch {
                Some(batch) => publish(batch),
                // The store writer is gone: nothing more can be owed.
                None => return,
            },
            () = done.cancelled() => break,
        }
    }
    // The final sync was answered: what is queued now is the last owed.
    while let Ok(batch) = acks.try_recv() {
        publish(batch);
    }
}

struct Ingest {
    config: IngestConfig,
    limits: Limits,
    writer: WriterHandle,
    stats: Arc<IngestStats>,
    /// When a reject was last logged, per device (or topic): at most once a minute.
    last_log: HashMap<String, Instant>,
    /// The live credentials: which device each tenant is.
    auth: watch::Receiver<Arc<AuthSnapshot>>,
}

/// Why a topic's device is not the one that may publish there.
struct Refused {
    /// The reject's kind.
    code: &'static str,
    /// Its reason.
    reason: String,
    /// The device the publisher is known to be (a tenant's own device).
    device: Option<String>,
}

impl Ingest {
    fn handle(&mut self, msg: Message) -> Result<(), telltale_store::StoreError> {
        let Ok(topic_str) = std::str::from_utf8(&msg.topic) else {
            let topic = String::from_utf8_lossy(&msg.topic).into_owned();
            return self.reject(
                &topic,
                None,
                "bad_topic",
                "topic is not UTF-8".into(),
                &msg.payload,
            );
        };
        let (tenant, rest) = match topic_str.strip_prefix(TENANTS) {
            Some(r) => match r.split_once('/') {
                Some((t, rest)) => (Some(t), rest),
                None => (Some(r), ""),
            },
            None => (None, topic_str),
        };
        let (device, kind) = match topic::parse(&self.config.topic_prefix, rest) {
            Ok(v) => v,
            Err(e) => return self.reject(topic_str, None, e.code(), e.to_string(), &msg.payload),
        };
        if let Err(r) = self.check_identity(tenant, device) {
            return self.reject(topic_str, r.device, r.code, r.reason, &msg.payload);
        }
        match kind {
            Kind::Telemetry => {
                self.stats.messages.fetch_add(1, Relaxed);
                match decode::decode(&msg.payload, &self.limits, now_secs()) {
                    Ok(pack) => {
                        self.stats
                            .readings
                            .fetch_add(pack.readings.len() as u64, Relaxed);
                        let device = device.to_owned();
                        self.writer.send_blocking(WriteOp::Batch(IncomingBatch {
                            device,
                            batch: pack.batch,
                            readings: pack.readings,
                        }))
                    }
                    Err(e) => {
                        let device = device.to_owned();
                        self.reject(
                            topic_str,
                            Some(device),
                            e.code(),
                            e.to_string(),
                            &msg.payload,
                        )
                    }
                }
            }
            // An empty retained message clears a device's status: nothing to do.
            Kind::Status if msg.payload.is_empty() => Ok(()),
            Kind::Status => {
                self.stats.statuses.fetch_add(1, Relaxed);
                match Status::parse(&msg.payload) {
                    Ok(s) => {
                        tracing::info!(device, state = ?s.state, agent = ?s.agent, "device status");
                        let p = presence(device, &msg.payload, s, telltale_store::now_ms());
                        self.writer.send_blocking(WriteOp::Presence(p))
                    }
                    Err(e) => {
                        let device = device.to_owned();
                        self.reject(
                            topic_str,
                            Some(device),
                            "bad_status",
                            e.to_string(),
                            &msg.payload,
                        )
                    }
                }
            }
            Kind::CmdResult => {
                self.stats.command_results.fetch_add(1, Relaxed);
                let parsed = serde_json::from_slice::<CommandResult>(&msg.payload)
                    .map_err(|e| e.to_string())
                    .and_then(|r| {
                        let id = commands::parse_wire_id(&self.writer.epoch, &r.id)
                            .ok_or_else(|| format!("{:?} is not a command of this hub", r.id))?;
                        Ok((id, r))
                    });
                match parsed {
                    Ok((id, r)) => {
                        let state = match r.status {
                            ResultStatus::Delivered => CommandState::Delivered,
                            ResultStatus::Succeeded => CommandState::Succeeded,
                            ResultStatus::Failed => CommandState::Failed,
                        };
                        self.writer.update_command_blocking(CommandUpdate {
                            id,
                            // Only the command's own device may report on it.
                            device: Some(device.to_owned()),
                            state,
                            output: r.output.map(|o| o.to_string()),
                            reason: r.reason,
                        })
                    }
                    Err(reason) => {
                        let device = device.to_owned();
                        self.reject(
                            topic_str,
                            Some(device),
                            "bad_command_result",
                            reason,
                            &msg.payload,
                        )
                    }
                }
            }
            // The hub's own topics: a device publishing there is ignored.
            Kind::Ack | Kind::Cmd => Ok(()),
        }
    }

    /// A message under a tenant is taken only for the one device whose live
    /// tenant that is (the broker let only that tenant's certificate
    /// publish there); a device with credentials is taken only under its
    /// tenant (so the plain listener cannot write as it).
    fn check_identity(&self, tenant: Option<&str>, device: &str) -> Result<(), Refused> {
        let auth = self.auth.borrow();
        match tenant {
            Some(t) => match auth.tenant_device(t) {
                Some(d) if d == device => Ok(()),
                Some(d) => Err(Refused {
                    code: "device_mismatch",
                    reason: format!(
                        "tenant {t} is device {d:?}, which may not publish as {device:?}"
                    ),
                    device: Some(d.to_owned()),
                }),
                None => Err(Refused {
                    code: "device_mismatch",
                    reason: format!("tenant {t} is no device's (revoked or unknown)"),
                    device: None,
                }),
            },
            None => match auth.device_tenant(device) {
                Some(t) => Err(Refused {
                    code: "tenant_required",
                    reason: format!(
                        "device {device:?} has credentials: its messages are taken only under /tenants/{t}/"
                    ),
                    device: None,
                }),
                None => Ok(()),
            },
        }
    }

    fn reject(
        &mut self,
        topic: &str,
        device: Option<String>,
        kind: &'static str,
        reason: String,
        payload: &[u8],
    ) -> Result<(), telltale_store::StoreError> {
        self.stats.rejected.fetch_add(1, Relaxed);
        let key = device.clone().unwrap_or_else(|| topic.to_owned());
        let now = Instant::now();
        let due = self
            .last_log
            .get(&key)
            .is_none_or(|t| now.duration_since(*t) >= Duration::from_secs(60));
        if due {
            if self.last_log.len() > 10_000 {
                self.last_log
                    .retain(|_, t| now.duration_since(*t) < Duration::from_secs(60));
            }
            self.last_log.insert(key, now);
            tracing::warn!(topic, kind, %reason, "payload rejected (further rejects from this device are logged at most once a minute)");
        }
        self.writer.send_blocking(WriteOp::Reject(Reject {
            at_ms: telltale_store::now_ms(),
            topic: topic.to_owned(),
            device,
            kind,
            reason,
            payload: payload.to_vec(),
            batch: decode::batch_identity(payload),
        }))
    }
}

/// What a parsed status message tells the store. Absent and empty labels
/// look alike once parsed, so: a JSON birth (`online`) states the device's
/// labels in full (an agent whose labels were removed clears them), while a
/// Last Will or the bare word `online` keeps the stored ones unless it
/// carries some. An agent is replaced only when named.
fn presence(device: &str, payload: &[u8], s: Status, at_ms: i64) -> telltale_store::Presence {
    let online = s.state == Presence::Online;
    let birth = online && payload != b"online";
    telltale_store::Presence {
        device: device.to_owned(),
        at_ms,
        online,
        agent: s.agent,
        labels: (birth || !s.labels.is_empty()).then_some(s.labels),
    }
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Payload, then the expected online, agent and labels (`None`: keep
    /// the stored ones).
    type Case = (
        &'static [u8],
        bool,
        Option<&'static str>,
        Option<BTreeMap<String, String>>,
    );

    #[test]
    fn status_to_presence() {
        let site = || BTreeMap::from([("site".to_owned(), "north".to_owned())]);
        let table: &[Case] = &[
            (
                br#"{"state":"online","agent":"a/1","labels":{"site":"north"}}"#,
                true,
                Some("a/1"),
                Some(site()),
            ),
            (br#"{"state":"online"}"#, true, None, Some(BTreeMap::new())),
            (b"online", true, None, None),
            (br#"{"state":"offline"}"#, false, None, None),
            (b"offline", false, None, None),
            (
                br#"{"state":"offline","labels":{"site":"north"}}"#,
                false,
                None,
                Some(site()),
            ),
        ];
        for (payload, online, agent, labels) in table {
            let s = Status::parse(payload).expect("status parses");
            let p = presence("d1", payload, s, 7);
            let what = String::from_utf8_lossy(payload);
            assert_eq!(p.device, "d1");
            assert_eq!(p.at_ms, 7);
            assert_eq!(p.online, *online, "{what}");
            assert_eq!(p.agent.as_deref(), *agent, "{what}");
            assert_eq!(&p.labels, labels, "{what}");
        }
    }
}
