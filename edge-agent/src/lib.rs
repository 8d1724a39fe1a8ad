//! Telltale's edge agent: reads sensors (simulated, files, commands), seals
//! their readings into SenML CBOR batches in a durable SQLite outbox, and
//! sends the batches to the hub over MQTT until the hub acknowledges them.
//! A batch leaves the outbox only when an ack covers it, so a crash of
//! either side loses nothing that reached the outbox.
//!
//! The pipeline, as the modules lay it out: [`sources`] → [`batcher`] →
//! [`outbox`] → [`sender`] (over [`link`], the only module that knows
//! rumqttc). Beside it, [`commands`] runs what the hub asks for: the sender
//! hands it `cmd` payloads and publishes its results, and it acts on the
//! sources through their handles. [`config`] owns the file format;
//! [`bench`] drives many simulated devices through the same path. This
//! crate never parses SenML itself (that is `telltale-wire`) and never
//! names SQLite (that is `telltale-store`).

pub mod batcher;
pub mod bench;
pub mod commands;
pub mod config;
pub mod link;
pub mod outbox;
pub mod reading;
pub mod sender;
pub mod sources;

use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long shutdown may take once cancelled (well below systemd's stop timeout).
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// Readings queued between the sources and the batcher.
const READING_QUEUE: usize = 4096;

/// Runs the agent until `cancel`, then stops the sources, seals the last
/// partial batch, says `offline` and disconnects.
pub async fn run(config: config::Config, cancel: CancellationToken) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
    let path = config.outbox_path();
    let (outbox, summary) = outbox::SharedOutbox::open(&path, config.outbox.max_bytes).await?;
    tracing::info!(
        device = config.device_id,
        outbox = summary.id,
        pending_batches = summary.batches,
        pending_bytes = summary.bytes,
        dropped_ever = summary.dropped,
        path = %path.display(),
        "outbox open"
    );
    if config.sources.is_empty() {
        tracing::warn!("no [[source]] configured: only sending what the outbox holds");
    }

    let tracker = TaskTracker::new();
    let wake = Arc::new(Notify::new());
    let (tx, rx) = mpsc::channel(READING_QUEUE);
    let handles = sources::spawn_all(&config.sources, &tx, &cancel, &tracker);
    // The batcher ends when the last source drops its sender.
    drop(tx);
    let context = commands::Context::new(Arc::new(config.clone()), handles)?;
    let (runner, port) = commands::Runner::new(Arc::new(context));
    tracker.spawn(runner.run(cancel.clone()));
    let batcher = batcher::Batcher {
        max_readings: config.batch.max_readings,
        interval: config.batch.interval(),
        outbox: outbox.clone(),
        wake: wake.clone(),
    };
    tracker.spawn(batcher.run(rx, cancel.clone()));
    let (progress, _) = watch::channel(sender::Progress::default());
    let sender = sender::Sender {
        config: sender::SenderConfig::from_config(&config)?,
        outbox,
        wake,
        progress,
        gate: None,
        commands: Some(port),
    };
    let mut sender = tracker.spawn(sender.run(cancel.clone()));
    tracker.close();

    let early = tokio::select! {
        _ = cancel.cancelled() => None,
        r = &mut sender => Some(r),
    };
    tracing::info!("shutting down");
    cancel.cancel();
    let deadline = tokio::time::Instant::now() + SHUTDOWN_DEADLINE;
    let sent = match early {
        Some(r) => r,
        None => tokio::time::timeout_at(deadline, &mut sender)
            .await
            .context("the sender did not stop in time")?,
    };
    let sent = sent.context("the sender task failed").and_then(|r| r);
    tokio::time::timeout_at(deadline, tracker.wait())
        .await
        .with_context(|| format!("tasks did not stop within {SHUTDOWN_DEADLINE:?}"))?;
    sent
}
