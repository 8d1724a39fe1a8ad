//! The only crate that knows rumqttd. It embeds the broker with a small
//! config section, and gives the hub an in-process link: the publishes the hub
//! subscribed to, drained on a thread ([`Messages::drain`]), and a way to
//! publish (acks, commands).
//!
//! It never decodes payloads and never decides what a topic means.
//!
//! rumqttd keeps each subscription's messages in a bounded in-memory commit
//! log; a consumer that falls more than the whole log behind silently skips
//! ahead ("cursor jump"). The hub drains its link into its own queue as fast
//! as messages arrive, the log is sized for bursts (see [`BrokerConfig`]), and
//! every jump rumqttd reports is counted ([`BrokerStats::cursor_jumps`]) and
//! logged.

use bytes::Bytes;
use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::{Broker, Notification};
use serde::Deserialize;
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Errors of the broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot listen for mqtt on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("mqtt listener on {0} did not come up")]
    NotListening(SocketAddr),
    #[error("broker link failed: {0}")]
    Link(String),
    #[error("broker thread could not start: {0}")]
    Thread(std::io::Error),
}

/// The `[broker]` section of the hub's config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// MQTT (3.1.1) listener address. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// Largest MQTT packet accepted, bytes. Keep it above the ingest payload
    /// limit, so an oversized pack is counted as a reject rather than
    /// dropping the device's connection.
    pub max_packet_bytes: usize,
    /// Most client connections.
    pub max_connections: usize,
    /// Most unacknowledged QoS 1 messages per connection.
    pub max_inflight: usize,
    /// A client must send CONNECT within this time, ms.
    pub connect_timeout_ms: u16,
    /// Size of one segment of a subscription's in-memory commit log, bytes.
    pub segment_bytes: usize,
    /// Segments kept per subscription; segment_bytes × segment_count is the
    /// burst the hub can fall behind by before rumqttd would skip messages.
    pub segment_count: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 1883)),
            max_packet_bytes: 256 * 1024,
            max_connections: 10_000,
            max_inflight: 100,
            connect_timeout_ms: 5_000,
            segment_bytes: 4 * 1024 * 1024,
            segment_count: 8,
        }
    }
}

/// Counters of the broker link.
#[derive(Debug, Default)]
pub struct BrokerStats {
    /// Messages received on the hub's link.
    pub received: AtomicU64,
    /// Messages the hub published.
    pub published: AtomicU64,
    /// Times rumqttd skipped messages for a consumer that fell behind.
    pub cursor_jumps: AtomicU64,
}

/// A publish the hub received.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: Bytes,
    pub payload: Bytes,
    pub retain: bool,
}

/// The running broker, as the hub sees it.
pub struct EmbeddedBroker {
    /// Where the MQTT listener listens.
    pub local_addr: SocketAddr,
    /// Counters.
    pub stats: Arc<BrokerStats>,
    /// Publishes the hub subscribed to.
    pub messages: Messages,
    /// Publishes from the hub.
    pub publisher: Publisher,
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

/// Starts the broker, subscribes the hub's link to `filters` and waits until
/// the listener accepts connections.
///
/// rumqttd offers no way to stop; its threads end with the process.
pub fn start(config: &BrokerConfig, filters: &[String]) -> Result<EmbeddedBroker, BrokerError> {
    // rumqttd binds inside its own thread and only logs a failure, so check
    // the address here first, and resolve port 0 to a free port.
    let probe = TcpListener::bind(config.listen).map_err(|source| BrokerError::Bind {
        addr: config.listen,
        source,
    })?;
    let local_addr = probe.local_addr().map_err(|source| BrokerError::Bind {
        addr: config.listen,
        source,
    })?;
    drop(probe);

    let mut broker = Broker::new(rumqttd_config(config, local_addr)?);
    let (mut link_tx, link_rx) = broker
        .link("telltale-hub")
        .map_err(|e| BrokerError::Link(e.to_string()))?;
    for f in filters {
        link_tx
            .subscribe(f.clone())
            .map_err(|e| BrokerError::Link(e.to_string()))?;
    }
    let stats = Arc::new(BrokerStats::default());
    let alerts = broker
        .alerts()
        .map_err(|e| BrokerError::Link(e.to_string()))?;
    {
        let stats = stats.clone();
        std::thread::Builder::new()
            .name("broker-alerts".into())
            .spawn(move || {
                while let Ok(batch) = alerts.router_rx.recv() {
                    for a in batch {
                        // AlertKind is not exported by rumqttd; its name is.
                        if a.kind.name() == "cursor_jump" {
                            stats.cursor_jumps.fetch_add(1, Relaxed);
                            tracing::error!(client = %a.client_id, detail = %a.kind.description(),
                                "broker skipped messages for a consumer that fell behind");
                        }
                    }
                }
            })
            .map_err(BrokerError::Thread)?;
    }
    std::thread::Builder::new()
        .name("broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "broker stopped");
            }
        })
        .map_err(BrokerError::Thread)?;

    let deadline = Instant::now() + Duration::from_secs(5);
    let connect_to = if local_addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], local_addr.port()))
    } else {
        local_addr
    };
    while TcpStream::connect_timeout(&connect_to, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            return Err(BrokerError::NotListening(local_addr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let (pub_tx, pub_rx) = flume::unbounded::<(String, Bytes)>();
    {
        let stats = stats.clone();
        std::thread::Builder::new()
            .name("broker-publish".into())
            .spawn(move || publish_loop(link_tx, pub_rx, stats))
            .map_err(BrokerError::Thread)?;
    }
    Ok(EmbeddedBroker {
        local_addr,
        stats: stats.clone(),
        messages: Messages { rx: link_rx, stats },
        publisher: Publisher { tx: pub_tx },
    })
}

fn publish_loop(mut link: LinkTx, rx: flume::Receiver<(String, Bytes)>, stats: Arc<BrokerStats>) {
    while let Ok((topic, payload)) = rx.recv() {
        if let Err(e) = link.publish(topic, payload) {
            tracing::error!(error = %e, "broker publish failed");
            return;
        }
        stats.published.fetch_add(1, Relaxed);
    }
}

fn rumqttd_config(c: &BrokerConfig, listen: SocketAddr) -> Result<rumqttd::Config, BrokerError> {
    // rumqttd's settings have private fields and no constructors; its serde
    // form is the supported way to build them.
    let v = serde_json::json!({
        "id": 0,
        "router": {
            "max_connections": c.max_connections,
            "max_outgoing_packet_count": 200,
            "max_segment_size": c.segment_bytes,
            "max_segment_count": c.segment_count,
        },
        "v4": {
            "1": {
                "name": "mqtt",
                "listen": listen.to_string(),
                "next_connection_delay_ms": 1,
                "connections": {
                    "connection_timeout_ms": c.connect_timeout_ms,
                    "max_payload_size": c.max_packet_bytes,
                    "max_inflight_count": c.max_inflight,
                    "dynamic_filters": true,
                }
            }
        },
        // Both intervals must be set: rumqttd 0.20's timer unwraps each.
        "metrics": { "alerts": { "push_interval": 1 }, "meters": { "push_interval": 60 } },
    });
    let mut cfg: rumqttd::Config =
        serde_json::from_value(v).map_err(|e| BrokerError::Link(e.to_string()))?;
    cfg.v5 = None;
    cfg.ws = None;
    let _: &HashMap<String, rumqttd::ServerSettings> = cfg.v4.get_or_insert_with(HashMap::new);
    Ok(cfg)
}

/// The stream of publishes the hub subscribed to.
pub struct Messages {
    rx: LinkRx,
    stats: Arc<BrokerStats>,
}

/// How long [`Messages::drain`] keeps napping (instead of blocking) after the
/// link ran dry: under load a nap lets many messages gather per wake-up.
const BUSY_WINDOW: Duration = Duration::from_millis(20);
/// One nap.
const NAP: Duration = Duration::from_millis(1);
/// Longest block while idle, so `stop` is checked.
const IDLE_WAIT: Duration = Duration::from_millis(200);

/// Why [`Messages::recv_timeout`] returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvError {
    /// Nothing arrived in time.
    Timeout,
    /// The broker is gone.
    Closed,
}

impl Messages {
    /// Hands every publish to `f`, on the calling thread, until `f` breaks,
    /// `stop()` is true (checked at least every 200 ms) or the broker is gone.
    ///
    /// While messages keep coming it naps 1 ms when the link runs dry
    /// rather than blocking: a blocked reader costs the broker a wake-up per
    /// message, a napping one a wake-up per millisecond. After 20 ms without
    /// a message it blocks.
    pub fn drain(
        &mut self,
        mut stop: impl FnMut() -> bool,
        mut f: impl FnMut(Message) -> std::ops::ControlFlow<()>,
    ) {
        let mut dry_since: Option<Instant> = None;
        while !stop() {
            let wait = match dry_since {
                Some(t) if t.elapsed() >= BUSY_WINDOW => IDLE_WAIT,
                _ => Duration::ZERO,
            };
            match self.recv_timeout(wait) {
                Ok(msg) => {
                    dry_since = None;
                    if f(msg).is_break() {
                        return;
                    }
                }
                Err(RecvError::Timeout) => {
                    if dry_since.get_or_insert_with(Instant::now).elapsed() < BUSY_WINDOW {
                        std::thread::sleep(NAP);
                    }
                }
                Err(RecvError::Closed) => return,
            }
        }
    }

    /// The next publish, waiting at most `timeout` (zero: only what is
    /// already there). For a thread that drains the link without an async
    /// runtime: under load it can take many messages per wake-up.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Message, RecvError> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.rx.recv_deadline(deadline) {
                Ok(Some(Notification::Forward(f))) => {
                    self.stats.received.fetch_add(1, Relaxed);
                    let p = f.publish;
                    return Ok(Message {
                        topic: p.topic,
                        payload: p.payload,
                        retain: p.retain,
                    });
                }
                Ok(Some(Notification::Unschedule)) => {
                    self.rx.ready().map_err(|_| RecvError::Closed)?;
                }
                Ok(Some(_)) | Ok(None) => {
                    if Instant::now() >= deadline {
                        return Err(RecvError::Timeout);
                    }
                }
                Err(rumqttd::local::LinkError::RecvTimeout(flume::RecvTimeoutError::Timeout)) => {
                    return Err(RecvError::Timeout)
                }
                Err(e) => {
                    tracing::error!(error = %e, "broker link closed");
                    return Err(RecvError::Closed);
                }
            }
        }
    }
}

/// Publishes from the hub; cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct Publisher {
    tx: flume::Sender<(String, Bytes)>,
}

impl Publisher {
    /// Publishes `payload` on `topic`. Subscribers receive it at the QoS they
    /// subscribed with.
    pub fn publish(&self, topic: String, payload: impl Into<Bytes>) {
        let _ = self.tx.send((topic, payload.into()));
    }
}
