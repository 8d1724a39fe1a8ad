//! The MQTT link: the only module that names rumqttc. It polls the event
//! loop in a task of its own (so a full request channel can never block the
//! poller), reconnects with jittered backoff, and hands the sender plain
//! events over an unbounded channel.

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, Incoming, LastWill, MqttOptions, Outgoing, QoS,
    SubscribeReasonCode, TlsConfiguration, Transport,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use telltale_limits::{Backoff, Jitter, Schedule};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Largest MQTT packet sent or accepted (the hub's payloads are at most 64 KiB).
pub const MAX_PACKET: usize = 256 * 1024;

/// How to connect.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// MQTT client id.
    pub client_id: String,
    /// User name and password, if any.
    pub credentials: Option<(String, String)>,
    /// MQTT keep-alive (zero: off).
    pub keep_alive: Duration,
    /// Shortest reconnect wait.
    pub reconnect_min: Duration,
    /// Longest reconnect wait.
    pub reconnect_max: Duration,
    /// Last Will: topic and payload, sent QoS 1 retained.
    pub last_will: (String, Vec<u8>),
    /// Most QoS 1 publishes the caller keeps outstanding; sizes the queues.
    pub max_in_flight: usize,
    /// TLS (MQTT over TLS, port 8883): what to trust and which client
    /// certificate to show. `None`: plain TCP.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// A TLS client config that trusts the CA certificates in `ca` (PEM) and,
/// when given, shows the client certificate `cert` with its key `key`.
pub fn tls_client_config(
    ca: &Path,
    client: Option<(&Path, &Path)>,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca)
        .with_context(|| format!("cannot read the CA file {}", ca.display()))?
    {
        let c = c.with_context(|| format!("bad certificate in {}", ca.display()))?;
        roots
            .add(c)
            .with_context(|| format!("unusable CA certificate in {}", ca.display()))?;
    }
    anyhow::ensure!(!roots.is_empty(), "no certificate in {}", ca.display());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("tls protocol versions")?
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .with_context(|| format!("cannot read the certificate {}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("cannot read the key {}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .context("the client certificate and key do not go together")?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// What happened on the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// Connected (a ConnAck arrived): a new clean session.
    Up,
    /// The connection failed or was lost; the link is reconnecting.
    Down,
    /// A message arrived on a subscribed topic.
    Message {
        /// Its topic.
        topic: String,
        /// Its payload.
        payload: Vec<u8>,
    },
    /// Our DISCONNECT went out; the link has stopped.
    Closed,
}

/// A running link.
#[derive(Debug)]
pub struct Link {
    /// Queues requests for the event loop.
    client: AsyncClient,
    /// Events from the poller.
    events: mpsc::UnboundedReceiver<LinkEvent>,
    /// Stops the poller.
    stop: CancellationToken,
    /// The poller.
    task: JoinHandle<()>,
}

fn options(cfg: &LinkConfig) -> MqttOptions {
    let mut o = MqttOptions::new(cfg.client_id.clone(), cfg.host.clone(), cfg.port);
    // Whole seconds; rumqttc refuses sub-second keep-alives.
    o.set_keep_alive(Duration::from_secs(cfg.keep_alive.as_secs()));
    // A clean session each time: the outbox, not the broker, holds what is
    // unacknowledged, and everything is resent after a reconnect.
    o.set_clean_session(true);
    o.set_max_packet_size(MAX_PACKET, MAX_PACKET);
    let inflight = (cfg.max_in_flight + 16).min(usize::from(u16::MAX));
    o.set_inflight(u16::try_from(inflight).unwrap_or(u16::MAX));
    if let Some(tls) = &cfg.tls {
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            tls.clone(),
        )));
    }
    if let Some((user, pass)) = &cfg.credentials {
        o.set_credentials(user.clone(), pass.clone());
    }
    let (topic, payload) = &cfg.last_will;
    o.set_last_will(LastWill::new(
        topic.clone(),
        payload.clone(),
        QoS::AtLeastOnce,
        true,
    ));
    o
}

impl Link {
    /// Starts connecting in the background.
    pub fn start(cfg: &LinkConfig) -> Link {
        // Room for two windows of batches (a resend may queue behind the
        // first) plus the birth, subscribe and offline messages.
        let capacity = cfg.max_in_flight * 4 + 64;
        let (client, mut eventloop) = AsyncClient::new(options(cfg), capacity);
        // Small packets go out at once: with Nagle's algorithm a command's
        // receipt waits for the ack of the packet before it (tens of ms).
        eventloop.network_options.set_tcp_nodelay(true);
        let (tx, events) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        // The workspace's one backoff; the first retry after a success waits
        // reconnect_min, later ones spread up to reconnect_max.
        let backoff = Backoff::new(Schedule::new(
            cfg.reconnect_min,
            cfg.reconnect_max,
            Jitter::FromInitial,
        ));
        let target = format!("{}:{}", cfg.host, cfg.port);
        let task = tokio::spawn(poll(eventloop, tx, backoff, stop.clone(), target));
        Link {
            client,
            events,
            stop,
            task,
        }
    }

    /// Queues a QoS 1 publish; waits only if the request queue is full.
    pub async fn publish(&self, topic: &str, payload: Vec<u8>, retain: bool) -> anyhow::Result<()> {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
            .with_context(|| format!("cannot queue a publish on {topic}"))
    }

    /// Queues a QoS 1 subscription.
    pub async fn subscribe(&self, filter: &str) -> anyhow::Result<()> {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .with_context(|| format!("cannot subscribe to {filter}"))
    }

    /// The next event; `None` once the poller has stopped.
    pub async fn next_event(&mut self) -> Option<LinkEvent> {
        self.events.recv().await
    }

    /// Sends DISCONNECT (after whatever is queued) and waits up to `wait`
    /// for it to go out, then stops the poller.
    pub async fn close(mut self, wait: Duration) {
        let sent = async {
            self.client.disconnect().await.ok()?;
            while let Some(e) = self.events.recv().await {
                if e == LinkEvent::Closed {
                    return Some(());
                }
            }
            None
        };
        if tokio::time::timeout(wait, sent).await.is_err() {
            tracing::warn!("disconnect did not complete in {wait:?}");
        }
        self.stop();
        let _ = self.task.await;
    }

    /// Stops the poller at once, without DISCONNECT (the broker will
    /// publish the Last Will).
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

async fn poll(
    mut eventloop: EventLoop,
    tx: mpsc::UnboundedSender<LinkEvent>,
    mut backoff: Backoff,
    stop: CancellationToken,
    target: String,
) {
    let mut rng = StdRng::from_os_rng();
    let mut up = false;
    loop {
        let event = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            e = eventloop.poll() => e,
        };
        let forward = match event {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                tracing::info!(broker = target, "connected");
                up = true;
                backoff.reset();
                Some(LinkEvent::Up)
            }
            Ok(Event::Incoming(Incoming::SubAck(s)))
                if s.return_codes.contains(&SubscribeReasonCode::Failure) =>
            {
                tracing::error!(
                    broker = target,
                    "the broker refused a subscription: acks or commands will not arrive (check its ACL)"
                );
                None
            }
            Ok(Event::Incoming(Incoming::Publish(p))) => Some(LinkEvent::Message {
                topic: p.topic,
                payload: p.payload.to_vec(),
            }),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                let _ = tx.send(LinkEvent::Closed);
                break;
            }
            Ok(_) => None,
            Err(ConnectionError::RequestsDone) => break,
            Err(e) => {
                let wait = backoff.next_wait(rng.random());
                if up {
                    tracing::warn!(broker = target, error = %e, "connection lost; reconnecting in {wait:?}");
                } else {
                    tracing::warn!(broker = target, error = %e, attempt = backoff.attempts(), "cannot connect; retrying in {wait:?}");
                }
                let was_up = std::mem::replace(&mut up, false);
                if was_up || backoff.attempts() == 1 {
                    let _ = tx.send(LinkEvent::Down);
                }
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
                None
            }
        };
        if let Some(e) = forward {
            if tx.send(e).is_err() {
                break;
            }
        }
    }
}
