//! Keeps the alert rules in force in step with the rules file: loads it at
//! start (a bad file stops the start), and again on SIGHUP and whenever the
//! file's modification time or length changes (looked at every
//! `alerts.reload_poll_secs`). A bad file at a reload is logged and the
//! rules in force stay.
//!
//! SIGHUP also reads the HTTPS certificate again (`[api.tls]`): new
//! connections get the new one; a bad file is logged and the one in use
//! stays. (The MQTT TLS listener reads its files at each connection.)

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use telltale_api::rules::{RulesError, RulesFile};
use telltale_tls::ReloadableCert;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// What tells one version of the file from another: modification time and
/// length (`None`: no file, or it cannot be read).
type Stamp = Option<(SystemTime, u64)>;

/// The rules file's watcher.
pub struct Reloader {
    /// The rules in force and their file.
    rules: Arc<RulesFile>,
    /// How often to look at the file; `None`: only on SIGHUP.
    poll: Option<Duration>,
    /// SIGHUP, registered before the first load so that a signal sent
    /// during the start reloads rather than ends the hub.
    hangup: Signal,
    /// The file as last loaded (or looked at).
    stamp: Stamp,
    /// Certificates read again on SIGHUP.
    certs: Vec<Arc<ReloadableCert>>,
}

impl Reloader {
    /// Registers for SIGHUP; call inside the runtime, before
    /// [`Reloader::load`].
    pub fn new(
        rules: Arc<RulesFile>,
        poll: Option<Duration>,
        certs: Vec<Arc<ReloadableCert>>,
    ) -> anyhow::Result<Reloader> {
        let hangup = signal(SignalKind::hangup())
            .map_err(|e| anyhow::anyhow!("cannot listen for SIGHUP: {e}"))?;
        Ok(Reloader {
            rules,
            poll,
            hangup,
            stamp: None,
            certs,
        })
    }

    /// Loads the rules file and puts its rules in force; returns how many.
    pub async fn load(&mut self) -> anyhow::Result<usize> {
        // Stamp first: a change made while loading is loaded again.
        self.stamp = stamp(self.rules.path()).await;
        match self.rules.reload().await {
            Ok(n) => Ok(n),
            Err(e @ (RulesError::Io { .. } | RulesError::Parse { .. })) => Err(e.into()),
            Err(e) => Err(anyhow::anyhow!(
                "rules file {}: {e}",
                self.rules.path().display()
            )),
        }
    }

    /// Reloads on SIGHUP and on a change of the file until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut tick = self.poll.map(|p| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + p, p);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        loop {
            let why = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.hangup.recv() => {
                    self.reload_certs();
                    "SIGHUP"
                }
                _ = async {
                    match tick.as_mut() {
                        Some(t) => t.tick().await,
                        None => std::future::pending::<tokio::time::Instant>().await,
                    }
                } => {
                    if stamp(self.rules.path()).await == self.stamp {
                        continue;
                    }
                    "file changed"
                }
            };
            let file = self.rules.path().display().to_string();
            match self.load().await {
                Ok(rules) => tracing::info!(rules, %file, why, "rules file loaded"),
                Err(e) => tracing::error!(
                    error = %format!("{e:#}"),
                    %file,
                    why,
                    "rules file not loaded; the rules in force stay"
                ),
            }
        }
    }
}

impl Reloader {
    fn reload_certs(&self) {
        for c in &self.certs {
            let file = c.cert_path().display().to_string();
            match c.reload() {
                Ok(()) => tracing::info!(%file, "certificate reloaded"),
                Err(e) => tracing::error!(
                    error = %e,
                    %file,
                    "certificate not reloaded; the one in use stays"
                ),
            }
        }
    }
}

async fn stamp(path: &Path) -> Stamp {
    let meta = tokio::fs::metadata(path).await.ok()?;
    Some((meta.modified().ok()?, meta.len()))
}
