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
//!
//! Devices reach rumqttd through the hub's own public listeners (`proxy.rs`:
//! a cap on open connections per client address, a handshake deadline for
//! TLS). On the TLS listener rumqttd requires a client certificate from the
//! hub's CA, confines the client to the topics under
//! `/tenants/{O of its certificate}/`, and asks [`DeviceAuth`] about its
//! login; [`Kicker`] disconnects a client whose credentials were revoked.

use bytes::Bytes;
use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::{Broker, Notification};
use serde::Deserialize;
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod kick;
mod proxy;

pub use kick::Kicker;

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
    #[error("no mqtt listener: broker.plain is false and there is no [broker.tls]")]
    NoListener,
    #[error("cannot disconnect a client: {0}")]
    Kick(String),
}

/// The `[broker]` section of the hub's config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// The plain (unencrypted, unauthenticated) MQTT 3.1.1 listener's
    /// address. Port 0 picks a free port. Anything that reaches it can act
    /// as any device, so it must be a loopback address unless
    /// `plain_listen_insecure` is set.
    pub listen: SocketAddr,
    /// Whether the plain listener runs at all.
    pub plain: bool,
    /// Allows the plain listener on an address other than loopback: anyone
    /// on that network can then publish as any device and read every
    /// command.
    pub plain_listen_insecure: bool,
    /// The TLS listener for devices with certificates; absent: none.
    pub tls: Option<BrokerTlsConfig>,
    /// Most open connections from one client address, over all listeners;
    /// the ones past it are closed at once.
    pub max_connections_per_ip: usize,
    /// Largest MQTT packet accepted, bytes. Keep it above the ingest payload
    /// limit, so an oversized pack is counted as a reject rather than
    /// dropping the device's connection.
    pub max_packet_bytes: usize,
    /// Most client connections.
    pub max_connections: usize,
    /// Most unacknowledged QoS 1 messages per connection.
    pub max_inflight: usize,
    /// A client must send CONNECT within this time, ms; a TLS client must
    /// also have sent its certificate within it.
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
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            plain: true,
            plain_listen_insecure: false,
            tls: None,
            max_connections_per_ip: 256,
            max_packet_bytes: 256 * 1024,
            max_connections: 10_000,
            max_inflight: 100,
            connect_timeout_ms: 5_000,
            segment_bytes: 4 * 1024 * 1024,
            segment_count: 8,
        }
    }
}

/// The `[broker.tls]` section: MQTT over TLS (8883) for devices with a
/// client certificate from the hub's CA and a password.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerTlsConfig {
    /// The TLS listener's address.
    pub listen: SocketAddr,
    /// The CA whose client certificates are accepted (PEM). Empty: the
    /// hub's CA, `ca.pem` in `[tls] dir`.
    pub ca: PathBuf,
    /// The server certificate chain (PEM). Empty: `server.pem` in
    /// `[tls] dir`.
    pub cert: PathBuf,
    /// The server key (PEM). Empty: `server.key` in `[tls] dir`.
    pub key: PathBuf,
}

impl Default for BrokerTlsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8883)),
            ca: PathBuf::new(),
            cert: PathBuf::new(),
            key: PathBuf::new(),
        }
    }
}

/// Checks a TLS client's login: `(client id, user name, password)` →
/// allowed. Called for every connection on the TLS listener.
pub type DeviceAuth = Arc<dyn Fn(&str, &str, &str) -> bool + Send + Sync>;

/// Counters of the broker link.
#[derive(Debug, Default)]
pub struct BrokerStats {
    /// Messages received on the hub's link.
    pub received: AtomicU64,
    /// Messages the hub published.
    pub published: AtomicU64,
    /// Times rumqttd skipped messages for a consumer that fell behind.
    pub cursor_jumps: AtomicU64,
    /// Connections closed at once because their address had
    /// `max_connections_per_ip` open.
    pub refused_over_cap: AtomicU64,
    /// TLS connections closed for not sending a certificate within
    /// `connect_timeout_ms` (or closing first).
    pub handshake_timeouts: AtomicU64,
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
    /// Where the plain MQTT listener listens, if it runs.
    pub local_addr: Option<SocketAddr>,
    /// Where the TLS listener listens, if it runs.
    pub tls_addr: Option<SocketAddr>,
    /// Counters.
    pub stats: Arc<BrokerStats>,
    /// Publishes the hub subscribed to.
    pub messages: Messages,
    /// Publishes from the hub.
    pub publisher: Publisher,
    /// Disconnects clients (revoked devices).
    pub kicker: Kicker,
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("local_addr", &self.local_addr)
            .field("tls_addr", &self.tls_addr)
            .finish()
    }
}

fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), BrokerError> {
    let l = TcpListener::bind(addr).map_err(|source| BrokerError::Bind { addr, source })?;
    let local = l
        .local_addr()
        .map_err(|source| BrokerError::Bind { addr, source })?;
    Ok((l, local))
}

/// A free port on loopback for one of rumqttd's internal listeners.
fn internal_addr() -> Result<SocketAddr, BrokerError> {
    let (probe, addr) = bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    drop(probe);
    Ok(addr)
}

/// Starts the broker, subscribes the hub's link to `filters` and waits until
/// the listeners accept connections. `auth` checks the login of every TLS
/// client.
///
/// rumqttd listens on internal loopback ports; the public listeners are the
/// hub's (see `proxy.rs`). rumqttd offers no way to stop; its threads end
/// with the process.
pub fn start(
    config: &BrokerConfig,
    filters: &[String],
    auth: DeviceAuth,
) -> Result<EmbeddedBroker, BrokerError> {
    if !config.plain && config.tls.is_none() {
        return Err(BrokerError::NoListener);
    }
    // Bind the public listeners first, so a taken port is an error here.
    let plain = if config.plain {
        Some(bind(config.listen)?)
    } else {
        None
    };
    let tls = match &config.tls {
        Some(t) => Some((bind(t.listen)?, t)),
        None => None,
    };
    // rumqttd binds inside its own threads and only logs a failure: pick
    // free loopback ports for it, and wait below until they accept.
    let internal_plain = internal_addr()?;
    let internal_tls = match &tls {
        Some(_) => Some(internal_addr()?),
        None => None,
    };
    let secret = format!("{:032x}", rand::random::<u128>());

    let mut rumqttd_config = rumqttd_config(config, internal_plain, internal_tls)?;
    let servers = rumqttd_config.v4.get_or_insert_with(HashMap::new);
    if let Some(s) = servers.get_mut(TLS_SERVER) {
        s.set_auth_handler(move |client_id: String, user: String, pass: String| {
            std::future::ready(auth(&client_id, &user, &pass))
        });
    }
    if !config.plain {
        // No open plain listener: the internal one takes only the kicker.
        if let Some(s) = servers.get_mut(PLAIN_SERVER) {
            let secret = secret.clone();
            s.set_auth_handler(move |_client_id: String, user: String, pass: String| {
                std::future::ready(user == kick::KICK_USER && pass == secret)
            });
        }
    }

    let mut broker = Broker::new(rumqttd_config);
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

    for addr in std::iter::once(internal_plain).chain(internal_tls) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if Instant::now() > deadline {
                return Err(BrokerError::NotListening(addr));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    let mut routes = Vec::new();
    let mut local_addr = None;
    if let Some((listener, addr)) = plain {
        local_addr = Some(addr);
        routes.push(proxy::Route {
            name: "mqtt",
            listener,
            upstream: internal_plain,
            tls: false,
        });
    }
    let mut tls_addr = None;
    if let (Some(((listener, addr), _)), Some(upstream)) = (tls, internal_tls) {
        tls_addr = Some(addr);
        routes.push(proxy::Route {
            name: "mqtts",
            listener,
            upstream,
            tls: true,
        });
    }
    proxy::spawn(
        routes,
        proxy::Limits {
            per_ip: config.max_connections_per_ip.max(1),
            handshake: Duration::from_millis(u64::from(config.connect_timeout_ms.max(100))),
        },
        stats.clone(),
    )?;

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
        tls_addr,
        stats: stats.clone(),
        messages: Messages { rx: link_rx, stats },
        publisher: Publisher { tx: pub_tx },
        kicker: Kicker {
            addr: internal_plain,
            secret,
        },
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

/// rumqttd's name of its internal plain listener.
const PLAIN_SERVER: &str = "1";
/// rumqttd's name of its internal TLS listener.
const TLS_SERVER: &str = "2";

fn rumqttd_config(
    c: &BrokerConfig,
    plain: SocketAddr,
    tls: Option<SocketAddr>,
) -> Result<rumqttd::Config, BrokerError> {
    let connections = serde_json::json!({
        "connection_timeout_ms": c.connect_timeout_ms,
        "max_payload_size": c.max_packet_bytes,
        "max_inflight_count": c.max_inflight,
        "dynamic_filters": true,
    });
    let mut servers = serde_json::Map::new();
    servers.insert(
        PLAIN_SERVER.to_owned(),
        serde_json::json!({
            "name": "mqtt",
            "listen": plain.to_string(),
            "next_connection_delay_ms": 1,
            "connections": connections,
        }),
    );
    if let (Some(addr), Some(t)) = (tls, &c.tls) {
        let tls = serde_json::json!({
            "name": "mqtts",
            "listen": addr.to_string(),
            "next_connection_delay_ms": 1,
            // rumqttd reads these files at each connection: a renewed
            // certificate is served without a restart.
            "tls": {
                "capath": t.ca.to_string_lossy(),
                "certpath": t.cert.to_string_lossy(),
                "keypath": t.key.to_string_lossy(),
            },
            "connections": connections,
        });
        servers.insert(TLS_SERVER.to_owned(), tls);
    }
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
        "v4": servers,
        // Both intervals must be set: rumqttd 0.20's timer unwraps each.
        "metrics": { "alerts": { "push_interval": 1 }, "meters": { "push_interval": 60 } },
    });
    let mut cfg: rumqttd::Config =
        serde_json::from_value(v).map_err(|e| BrokerError::Link(e.to_string()))?;
    cfg.v5 = None;
    cfg.ws = None;
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
