//! The hub under systemd (`Type=notify`): `READY=1` once the broker, the
//! store, ingest and the HTTP listener are up, `WATCHDOG=1` at half the
//! unit's `WatchdogSec` while ingest runs (a hub whose ingest died stops
//! feeding it and systemd restarts it), `STOPPING=1` at shutdown. Outside
//! systemd (no `NOTIFY_SOCKET`) all of it does nothing.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use telltale_ingest::IngestStats;
use tokio_util::sync::CancellationToken;

/// Says the hub is ready; returns the watchdog task (idle without one).
pub fn ready(ingest: Arc<IngestStats>, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "could not tell the service manager the hub is ready");
    }
    let mut usec = 0;
    let every = sd_notify::watchdog_enabled(false, &mut usec)
        .then(|| Duration::from_micros(usec / 2))
        .filter(|d| !d.is_zero());
    tokio::spawn(async move {
        let Some(every) = every else { return };
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if ingest.running.load(Relaxed) {
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
            } else {
                tracing::error!("ingest is not running; the watchdog is no longer fed");
            }
        }
    })
}

/// Says the hub is stopping.
pub fn stopping() {
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
}
