//! `telltale-agent bench`: many simulated devices, each with its own MQTT
//! connection and its own outbox file, push batches through the agent's own
//! seal → outbox → sender path as fast as the hub's acks allow; the result
//! is the acked reading rate from the first publish to the last ack.

use crate::config::SimulatedSource;
use crate::link::LinkConfig;
use crate::outbox::SharedOutbox;
use crate::reading::{now_secs, Reading};
use crate::sender::{Progress, Sender, SenderConfig};
use crate::sources::simulated::Simulator;
use anyhow::{bail, ensure, Context};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Options of `telltale-agent bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchOptions {
    /// Broker host.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Broker port.
    #[arg(long, default_value_t = 1883)]
    pub port: u16,
    /// Simulated devices, each its own connection (`bench-0`, `bench-1`, …).
    #[arg(long, default_value_t = 10)]
    pub devices: usize,
    /// Batches per device.
    #[arg(long, default_value_t = 100)]
    pub batches: u64,
    /// Readings per batch (1..=1000).
    #[arg(long, default_value_t = 100)]
    pub readings: usize,
    /// Topic prefix.
    #[arg(long, default_value = telltale_wire::topic::DEFAULT_PREFIX)]
    pub prefix: String,
    /// Batches outstanding per device.
    #[arg(long, default_value_t = 32)]
    pub max_in_flight: usize,
    /// Directory for the temporary outboxes (default: the system temp dir).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
}

/// The result line.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Devices simulated.
    pub devices: usize,
    /// Readings acked in total.
    pub readings: u64,
    /// First publish to last ack.
    pub seconds: f64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rate = if self.seconds > 0.0 {
            self.readings as f64 / self.seconds
        } else {
            0.0
        };
        write!(
            f,
            "agent-bench: devices={} readings={} seconds={:.3} rate={:.0}",
            self.devices, self.readings, self.seconds, rate
        )
    }
}

/// One simulated batch of `n` readings.
fn batch(sim: &mut Simulator, rng: &mut StdRng, t0: f64, n: usize) -> Vec<Reading> {
    (0..n)
        .map(|i| {
            let time = t0 + i as f64 * 0.001;
            Reading {
                name: "bench/temp".to_owned(),
                unit: Some("Cel".to_owned()),
                value: sim.sample(time, 0.001, rng),
                time,
            }
        })
        .collect()
}

/// A device of the bench, once its outbox is filled.
struct Device {
    /// Its outbox.
    outbox: SharedOutbox,
    /// Sequence number of its last batch.
    last_seq: u64,
}

/// The simulated source every bench device reads.
fn bench_source() -> SimulatedSource {
    SimulatedSource {
        name: None,
        metric: "bench/temp".to_owned(),
        unit: Some("Cel".to_owned()),
        interval_ms: 1,
        shape: crate::config::Shape::Sine,
        base: 20.0,
        amplitude: 5.0,
        period_secs: 60.0,
        noise: 0.1,
        limit: None,
    }
}

async fn fill(path: PathBuf, batches: u64, readings: usize) -> anyhow::Result<Device> {
    let (outbox, _) = SharedOutbox::open(&path, u64::MAX >> 1).await?;
    let mut sim = Simulator::new(&bench_source());
    let mut rng = StdRng::from_os_rng();
    let t0 = now_secs();
    let mut last_seq = 0;
    for b in 0..batches {
        let start = t0 + (b as f64) * (readings as f64) * 0.001;
        let rs: Arc<[Reading]> = batch(&mut sim, &mut rng, start, readings).into();
        last_seq = outbox
            .seal(rs)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .seq;
    }
    Ok(Device { outbox, last_seq })
}

/// Runs the bench; the caller prints the report.
pub async fn run(opts: BenchOptions, cancel: CancellationToken) -> anyhow::Result<Report> {
    ensure!(
        (1..=10_000).contains(&opts.devices),
        "--devices must be 1..=10000"
    );
    ensure!(opts.batches >= 1, "--batches must be at least 1");
    ensure!(
        (1..=1000).contains(&opts.readings),
        "--readings must be 1..=1000"
    );
    ensure!(
        (1..=1000).contains(&opts.max_in_flight),
        "--max-in-flight must be 1..=1000"
    );
    ensure!(
        !opts.prefix.is_empty() && !opts.prefix.contains(['+', '#']),
        "--prefix must be non-empty, without + or #"
    );
    let base = opts.data_dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base).with_context(|| format!("cannot create {}", base.display()))?;
    let dir = tempfile::Builder::new()
        .prefix("telltale-agent-bench-")
        .tempdir_in(&base)
        .with_context(|| format!("cannot create a temp dir in {}", base.display()))?;
    let limit = Duration::from_secs(opts.timeout_secs);
    let stop = cancel.child_token();
    let mut senders = JoinSet::new();
    let outcome = tokio::select! {
        _ = cancel.cancelled() => Err(anyhow::anyhow!("interrupted")),
        r = tokio::time::timeout(limit, drive(&opts, dir.path().to_owned(), &stop, &mut senders)) => match r {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!("gave up after {} s", opts.timeout_secs)),
        },
    };
    // Every device says offline and disconnects.
    stop.cancel();
    let closing = async {
        while let Some(r) = senders.join_next().await {
            if let Ok(Err(e)) = r {
                tracing::debug!(error = format!("{e:#}"), "bench sender ended with an error");
            }
        }
    };
    if tokio::time::timeout(crate::SHUTDOWN_DEADLINE, closing)
        .await
        .is_err()
    {
        tracing::warn!("some bench devices did not disconnect in time");
        senders.abort_all();
    }
    drop(dir);
    outcome
}

async fn drive(
    opts: &BenchOptions,
    dir: PathBuf,
    stop: &CancellationToken,
    senders: &mut JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<Report> {
    tracing::info!(
        devices = opts.devices,
        batches = opts.batches,
        readings = opts.readings,
        "filling outboxes"
    );
    let mut fills = JoinSet::new();
    let mut devices: Vec<Option<Device>> = (0..opts.devices).map(|_| None).collect();
    // A few at a time: two cores, and every batch is an fsync.
    let mut next = 0;
    while next < opts.devices || !fills.is_empty() {
        while next < opts.devices && fills.len() < 4 {
            let path = dir.join(format!("bench-{next}.db"));
            let (b, r, i) = (opts.batches, opts.readings, next);
            fills.spawn(async move { (i, fill(path, b, r).await) });
            next += 1;
        }
        if let Some(done) = fills.join_next().await {
            let (i, device) = done.context("fill task failed")?;
            devices[i] = Some(device?);
        }
    }

    let (gate_tx, gate_rx) = watch::channel(false);
    let mut watchers = Vec::with_capacity(opts.devices);
    for (i, device) in devices.iter().enumerate() {
        let Some(device) = device else {
            bail!("device {i} was not filled");
        };
        let id = format!("bench-{i}");
        let (progress, watch) = watch::channel(Progress::default());
        let status =
            telltale_wire::topic::format(&opts.prefix, &id, telltale_wire::topic::Kind::Status);
        let config = SenderConfig {
            device_id: id.clone(),
            prefix: opts.prefix.clone(),
            labels: BTreeMap::from([("bench".to_owned(), "true".to_owned())]),
            ack_timeout: Duration::from_secs(10),
            max_in_flight: opts.max_in_flight,
            link: LinkConfig {
                host: opts.host.clone(),
                port: opts.port,
                client_id: id,
                credentials: None,
                keep_alive: Duration::from_secs(30),
                reconnect_min: Duration::from_millis(200),
                reconnect_max: Duration::from_secs(5),
                last_will: (status, br#"{"state":"offline"}"#.to_vec()),
                max_in_flight: opts.max_in_flight,
                tls: None,
            },
        };
        let sender = Sender {
            config,
            outbox: device.outbox.clone(),
            wake: Arc::new(Notify::new()),
            progress,
            gate: Some(gate_rx.clone()),
            commands: None,
        };
        senders.spawn(sender.run(stop.clone()));
        watchers.push((watch, device.last_seq));
    }

    tracing::info!("connecting");
    for (w, _) in &mut watchers {
        w.wait_for(|p| p.connected)
            .await
            .context("a bench device stopped")?;
    }
    tracing::info!("all connected; sending");
    gate_tx.send_replace(true);
    let mut first = None;
    let mut last = None;
    for (w, last_seq) in &mut watchers {
        let p = w
            .wait_for(|p| p.acked_upto >= *last_seq)
            .await
            .context("a bench device stopped")?
            .clone();
        first = min_opt(first, p.first_publish);
        last = max_opt(last, p.last_ack);
    }
    let (Some(first), Some(last)) = (first, last) else {
        bail!("no publish or no ack was seen");
    };
    Ok(Report {
        devices: opts.devices,
        readings: opts.devices as u64 * opts.batches * opts.readings as u64,
        seconds: last.saturating_duration_since(first).as_secs_f64(),
    })
}

fn min_opt<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_opt<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_line() {
        let r = Report {
            devices: 3,
            readings: 3000,
            seconds: 1.5,
        };
        assert_eq!(
            r.to_string(),
            "agent-bench: devices=3 readings=3000 seconds=1.500 rate=2000"
        );
    }

    #[test]
    fn bench_batches_fit_the_hub_limits() {
        let mut sim = Simulator::new(&bench_source());
        let mut rng = StdRng::seed_from_u64(5);
        let b = batch(&mut sim, &mut rng, 1.7e9, 1000);
        let id = telltale_wire::BatchId {
            outbox: 1,
            seq: 1,
            low: 1,
        };
        let payload = crate::outbox::encode(id, &b).expect("encode");
        assert!(payload.len() <= crate::batcher::max_payload());
    }
}
