//! The sender: moves sealed batches from the outbox to the hub and deletes
//! them only when the hub's ack covers them. On every connect it subscribes
//! to its ack and cmd topics, publishes the birth and starts over from the
//! oldest pending batch; it keeps at most `max_in_flight` batches
//! outstanding and starts over again when acks stop making progress. The
//! bookkeeping is the pure [`Window`]; the MQTT side is [`crate::link`]. It
//! is also the commands' postman: `cmd` payloads go to the command runner
//! without waiting, and the runner's results are published on `cmd/result`.

use crate::commands::CommandPort;
use crate::config::Config;
use crate::link::{Link, LinkConfig, LinkEvent};
use crate::outbox::SharedOutbox;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use telltale_wire::msg::{Ack, CommandResult, Presence, Status};
use telltale_wire::topic::{self, Kind};
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The agent's name and version, as the birth message gives it.
pub const AGENT: &str = concat!("telltale-agent/", env!("CARGO_PKG_VERSION"));

/// How long shutdown waits for the offline status and DISCONNECT to go out.
pub const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Wait after the outbox failed before trying it again.
const OUTBOX_RETRY: Duration = Duration::from_secs(1);

/// Which batches are out and when acks last made progress.
#[derive(Debug, Clone)]
pub struct Window {
    /// Most batches sent beyond the last acked one.
    max_in_flight: usize,
    /// Start over when acks make no progress for this long.
    ack_timeout: Duration,
    /// Sequence numbers sent since the last start and not yet acked, oldest first.
    outstanding: VecDeque<u64>,
    /// Highest sequence number sent since the last start: the next batch to
    /// send is the first pending one above it.
    cursor: u64,
    /// When the oldest outstanding batch last had a chance to be acked
    /// (first send after an idle window, or the last ack progress).
    progress_at: Option<Instant>,
}

impl Window {
    /// An empty window.
    pub fn new(max_in_flight: usize, ack_timeout: Duration) -> Self {
        Self {
            max_in_flight,
            ack_timeout,
            outstanding: VecDeque::new(),
            cursor: 0,
            progress_at: None,
        }
    }

    /// Forgets what was sent: the next batch to send is the oldest pending one.
    pub fn restart(&mut self) {
        self.outstanding.clear();
        self.cursor = 0;
        self.progress_at = None;
    }

    /// How many more batches may be sent now.
    pub fn room(&self) -> usize {
        self.max_in_flight.saturating_sub(self.outstanding.len())
    }

    /// The sequence number after which to look for the next batch to send.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Batches sent and not yet acked.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Records that batch `seq` was sent at `now`.
    pub fn sent(&mut self, seq: u64, now: Instant) {
        if self.outstanding.is_empty() {
            self.progress_at = Some(now);
        }
        self.outstanding.push_back(seq);
        self.cursor = self.cursor.max(seq);
    }

    /// Records an ack of everything up to `upto`; `true` if it covered an
    /// outstanding batch.
    pub fn acked(&mut self, upto: u64, now: Instant) -> bool {
        let before = self.outstanding.len();
        while self.outstanding.front().is_some_and(|s| *s <= upto) {
            self.outstanding.pop_front();
        }
        // Batches up to `upto` are gone from the outbox: never look below.
        self.cursor = self.cursor.max(upto);
        let progress = self.outstanding.len() < before;
        if progress {
            self.progress_at = (!self.outstanding.is_empty()).then_some(now);
        }
        progress
    }

    /// When to give up waiting for acks, if batches are outstanding.
    pub fn deadline(&self) -> Option<Instant> {
        if self.outstanding.is_empty() {
            return None;
        }
        self.progress_at.map(|t| t + self.ack_timeout)
    }
}

/// What the sender has achieved, for whoever watches (the bench).
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Connected and subscribed.
    pub connected: bool,
    /// Highest sequence number the hub acked for our outbox.
    pub acked_upto: u64,
    /// When the first batch was published.
    pub first_publish: Option<Instant>,
    /// When the last ack arrived.
    pub last_ack: Option<Instant>,
}

/// Everything the sender needs to know, from the config file or the bench.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// Device id (the `{id}` in topics).
    pub device_id: String,
    /// Topic prefix.
    pub prefix: String,
    /// Labels sent in the birth.
    pub labels: BTreeMap<String, String>,
    /// Start over when acks make no progress for this long.
    pub ack_timeout: Duration,
    /// Most batches outstanding.
    pub max_in_flight: usize,
    /// The connection.
    pub link: LinkConfig,
}

fn status_json(state: Presence, labels: &BTreeMap<String, String>) -> Vec<u8> {
    let status = Status {
        state,
        agent: (state == Presence::Online).then(|| AGENT.to_owned()),
        labels: if state == Presence::Online {
            labels.clone()
        } else {
            BTreeMap::new()
        },
    };
    // Serializing a struct of strings cannot fail; fall back to the bare word.
    serde_json::to_vec(&status).unwrap_or_else(|_| match state {
        Presence::Online => b"online".to_vec(),
        Presence::Offline => b"offline".to_vec(),
    })
}

impl SenderConfig {
    /// The sender part of the agent's config; reads the TLS files.
    pub fn from_config(c: &Config) -> anyhow::Result<Self> {
        let tls = match &c.mqtt.ca {
            Some(ca) => Some(crate::link::tls_client_config(
                ca,
                c.mqtt.cert.as_deref().zip(c.mqtt.key.as_deref()),
            )?),
            None => None,
        };
        let prefix = c.mqtt.topic_prefix.clone();
        let status = topic::format(&prefix, &c.device_id, Kind::Status);
        Ok(SenderConfig {
            device_id: c.device_id.clone(),
            prefix,
            labels: c.labels.clone(),
            ack_timeout: Duration::from_millis(c.outbox.ack_timeout_ms),
            max_in_flight: c.outbox.max_in_flight,
            link: LinkConfig {
                host: c.mqtt.host.clone(),
                port: c.mqtt.port,
                client_id: c.client_id().to_owned(),
                credentials: c.mqtt.username.as_ref().map(|u| {
                    let p = c
                        .mqtt
                        .password
                        .as_ref()
                        .map(|p| p.0.clone())
                        .unwrap_or_default();
                    (u.clone(), p)
                }),
                keep_alive: Duration::from_secs(c.mqtt.keep_alive_secs),
                reconnect_min: Duration::from_millis(c.mqtt.reconnect_min_ms),
                reconnect_max: Duration::from_millis(c.mqtt.reconnect_max_ms),
                last_will: (status, status_json(Presence::Offline, &BTreeMap::new())),
                max_in_flight: c.outbox.max_in_flight,
                tls,
            },
        })
    }
}

/// The running sender's inputs and outputs.
#[derive(Debug)]
pub struct Sender {
    /// Settings.
    pub config: SenderConfig,
    /// Where batches wait.
    pub outbox: SharedOutbox,
    /// Woken by the batcher after each sealed batch.
    pub wake: Arc<Notify>,
    /// Progress for watchers.
    pub progress: watch::Sender<Progress>,
    /// If given, batches are held until it reads `true` (the bench starts
    /// every device at once).
    pub gate: Option<watch::Receiver<bool>>,
    /// The command runner, if commands are taken (not in the bench).
    pub commands: Option<CommandPort>,
}

/// Topics of one device.
struct Topics {
    telemetry: String,
    ack: String,
    status: String,
    cmd: String,
    cmd_result: String,
}

impl Sender {
    /// Runs until `cancel`, then publishes `offline` and disconnects.
    pub async fn run(mut self, cancel: CancellationToken) -> anyhow::Result<()> {
        let mut gate = self.gate.take();
        let mut commands = self.commands.take();
        let c = &self.config;
        let topics = Topics {
            telemetry: topic::format(&c.prefix, &c.device_id, Kind::Telemetry),
            ack: topic::format(&c.prefix, &c.device_id, Kind::Ack),
            status: topic::format(&c.prefix, &c.device_id, Kind::Status),
            cmd: topic::format(&c.prefix, &c.device_id, Kind::Cmd),
            cmd_result: topic::format(&c.prefix, &c.device_id, Kind::CmdResult),
        };
        let mut link = Link::start(&c.link);
        let mut window = Window::new(c.max_in_flight, c.ack_timeout);
        let mut connected = false;
        let mut retry_at: Option<Instant> = None;
        let result = loop {
            let open = gate.as_ref().is_none_or(|g| *g.borrow());
            if connected && open && retry_at.is_none() {
                let filled = tokio::select! {
                    biased;
                    _ = cancel.cancelled() => break Ok(()),
                    r = self.fill(&link, &topics, &mut window) => r,
                };
                if let Err(e) = filled {
                    tracing::error!(
                        error = format!("{e:#}"),
                        "cannot read the outbox; retrying in {OUTBOX_RETRY:?}"
                    );
                    retry_at = Some(Instant::now() + OUTBOX_RETRY);
                }
            }
            let deadline = window.deadline();
            // Wait on the gate only if it was seen closed above; `changed`
            // returns at once if it opened since.
            let gate_opened = async {
                match gate.as_mut() {
                    Some(g) if !open => {
                        if g.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                    _ => std::future::pending().await,
                }
            };
            let sleep_until = |t: Option<Instant>| async move {
                match t {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            let command_result = async {
                match commands.as_mut() {
                    Some(c) => c.results.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break Ok(()),
                e = link.next_event() => match e {
                    None | Some(LinkEvent::Closed) => break Err(anyhow::anyhow!("the MQTT link stopped")),
                    Some(LinkEvent::Up) => {
                        window.restart();
                        match self.on_connect(&link, &topics, commands.is_some()).await {
                            Ok(()) => connected = true,
                            Err(e) => break Err(e),
                        }
                        self.progress.send_modify(|p| p.connected = true);
                    }
                    Some(LinkEvent::Down) => {
                        connected = false;
                        window.restart();
                        self.progress.send_modify(|p| p.connected = false);
                    }
                    Some(LinkEvent::Message { topic, payload }) => {
                        if topic == topics.ack {
                            self.on_ack(&payload, &mut window).await;
                        } else if let (true, Some(c)) = (topic == topics.cmd, &commands) {
                            hand_over(&c.inbox, payload);
                        } else {
                            tracing::debug!(topic, "message on an unexpected topic ignored");
                        }
                    }
                },
                Some(r) = command_result => publish_result(&link, &topics, &r).await,
                _ = self.wake.notified() => {}
                _ = gate_opened => {}
                _ = sleep_until(retry_at) => retry_at = None,
                _ = sleep_until(deadline) => {
                    tracing::warn!(
                        outstanding = window.outstanding(),
                        "no ack progress for {:?}; resending from the oldest pending batch",
                        self.config.ack_timeout
                    );
                    window.restart();
                }
            }
        };
        if let (true, true, Some(c)) = (connected, cancel.is_cancelled(), commands.as_mut()) {
            // The runner answers what it stopped, then closes the channel.
            let drained = tokio::time::timeout(CLOSE_WAIT, async {
                while let Some(r) = c.results.recv().await {
                    publish_result(&link, &topics, &r).await;
                }
            })
            .await;
            if drained.is_err() {
                tracing::warn!("command results still unpublished at shutdown");
            }
        }
        if connected {
            // A clean DISCONNECT does not fire the Last Will: say it ourselves.
            let offline = status_json(Presence::Offline, &BTreeMap::new());
            let said =
                tokio::time::timeout(CLOSE_WAIT, link.publish(&topics.status, offline, true)).await;
            if !matches!(said, Ok(Ok(()))) {
                tracing::warn!("could not queue the offline status");
            }
            link.close(CLOSE_WAIT).await;
            tracing::info!("disconnected");
        } else {
            link.stop();
        }
        result
    }

    async fn on_connect(&self, link: &Link, topics: &Topics, commands: bool) -> anyhow::Result<()> {
        // Subscribe before the birth: the broker handles our packets in
        // order, so by the time the hub sees us online (and sends what it
        // queued for us) the subscriptions are in place. A clean session
        // each time, so every connect subscribes again.
        link.subscribe(&topics.ack).await?;
        if commands {
            link.subscribe(&topics.cmd).await?;
        }
        let birth = status_json(Presence::Online, &self.config.labels);
        link.publish(&topics.status, birth, true).await?;
        let pending = self.outbox.len().await.unwrap_or(0);
        tracing::info!(
            pending_batches = pending,
            "birth published; sending from the oldest pending batch"
        );
        Ok(())
    }

    /// Sends pending batches while the window has room.
    async fn fill(&self, link: &Link, topics: &Topics, window: &mut Window) -> anyhow::Result<()> {
        while window.room() > 0 {
            let batch = self.outbox.pending(window.cursor(), window.room()).await?;
            if batch.is_empty() {
                break;
            }
            for p in batch {
                link.publish(&topics.telemetry, p.payload, false).await?;
                let now = Instant::now();
                window.sent(p.seq, now);
                tracing::trace!(seq = p.seq, readings = p.readings, "batch published");
                self.progress.send_if_modified(|pr| {
                    let first = pr.first_publish.is_none();
                    if first {
                        pr.first_publish = Some(now);
                    }
                    first
                });
            }
        }
        Ok(())
    }

    async fn on_ack(&self, payload: &[u8], window: &mut Window) {
        let ack: Ack = match serde_json::from_slice(payload) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "malformed ack ignored");
                return;
            }
        };
        if ack.outbox != self.outbox.id() {
            tracing::debug!(outbox = ack.outbox, "ack for another outbox ignored");
            return;
        }
        match self.outbox.ack(ack.upto).await {
            Ok(readings) => {
                let now = Instant::now();
                window.acked(ack.upto, now);
                tracing::debug!(upto = ack.upto, readings, "acked");
                self.progress.send_modify(|p| {
                    p.acked_upto = p.acked_upto.max(ack.upto);
                    p.last_ack = Some(now);
                });
            }
            // The batches stay and are resent; the hub acks them again.
            Err(e) => tracing::error!(
                error = format!("{e:#}"),
                upto = ack.upto,
                "cannot delete acked batches"
            ),
        }
    }
}

/// Gives a `cmd` payload to the command runner without waiting: telemetry
/// never waits on commands.
fn hand_over(inbox: &mpsc::Sender<Vec<u8>>, payload: Vec<u8>) {
    match inbox.try_send(payload) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => tracing::warn!(
            "command dropped: {} commands already wait for the runner",
            crate::commands::INBOX
        ),
        Err(mpsc::error::TrySendError::Closed(_)) => {
            tracing::debug!("command dropped: the runner has stopped")
        }
    }
}

async fn publish_result(link: &Link, topics: &Topics, r: &CommandResult) {
    let payload = match serde_json::to_vec(r) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(id = r.id, error = %e, "cannot encode a command result");
            return;
        }
    };
    if let Err(e) = link.publish(&topics.cmd_result, payload, false).await {
        tracing::warn!(
            id = r.id,
            error = format!("{e:#}"),
            "cannot publish a command result"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_flow() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut w = Window::new(3, Duration::from_secs(10));
        assert_eq!((w.room(), w.cursor(), w.deadline()), (3, 0, None));
        w.sent(1, t0);
        w.sent(2, t0 + s);
        w.sent(3, t0 + s);
        assert_eq!((w.room(), w.cursor()), (0, 3));
        // The deadline counts from the first send into an idle window.
        assert_eq!(w.deadline(), Some(t0 + 10 * s));
        // A stale or duplicate ack is no progress.
        assert!(!w.acked(0, t0 + 2 * s));
        assert_eq!(w.deadline(), Some(t0 + 10 * s));
        assert!(w.acked(2, t0 + 5 * s));
        assert_eq!((w.room(), w.outstanding()), (2, 1));
        assert_eq!(w.deadline(), Some(t0 + 15 * s));
        w.sent(4, t0 + 6 * s);
        assert!(w.acked(4, t0 + 7 * s));
        assert_eq!((w.room(), w.deadline(), w.cursor()), (3, None, 4));
        // An ack beyond what was sent (resends of a previous session) moves
        // the cursor so those batches are not looked for again.
        assert!(!w.acked(9, t0 + 8 * s));
        assert_eq!(w.cursor(), 9);
        w.sent(10, t0 + 9 * s);
        w.restart();
        assert_eq!((w.room(), w.cursor(), w.deadline()), (3, 0, None));
    }

    #[test]
    fn status_payloads() {
        let mut labels = BTreeMap::new();
        labels.insert("site".to_owned(), "north".to_owned());
        let birth = Status::parse(&status_json(Presence::Online, &labels)).expect("birth");
        assert_eq!(birth.state, Presence::Online);
        assert_eq!(birth.agent.as_deref(), Some(AGENT));
        assert_eq!(birth.labels, labels);
        assert_eq!(
            status_json(Presence::Offline, &labels),
            br#"{"state":"offline"}"#
        );
    }
}
