//! Sources: tasks that read something every interval and send readings to
//! the batcher. Each stops when the token is cancelled, dropping its sender
//! so that the batcher sees the channel close once all of them are gone.

pub mod command;
pub mod file;
pub mod simulated;

use crate::config::SourceConfig;
use crate::reading::Reading;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Starts one task per source on `tracker`.
pub fn spawn_all(
    sources: &[SourceConfig],
    tx: &mpsc::Sender<Reading>,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) {
    for (i, source) in sources.iter().enumerate() {
        let out = Output {
            tx: tx.clone(),
            cancel: cancel.clone(),
        };
        let source = source.clone();
        tracker.spawn(async move {
            tracing::info!(source = i + 1, metric = source.metric(), "source started");
            match source {
                SourceConfig::Simulated(s) => simulated::run(s, out).await,
                SourceConfig::File(s) => file::run(s, out).await,
                SourceConfig::Command(s) => command::run(s, out).await,
            }
            tracing::debug!(source = i + 1, "source stopped");
        });
    }
}

/// Where a source sends its readings, and when it must stop.
#[derive(Debug, Clone)]
pub struct Output {
    tx: mpsc::Sender<Reading>,
    cancel: CancellationToken,
}

impl Output {
    /// An output over a channel, stopped by `cancel`.
    pub fn new(tx: mpsc::Sender<Reading>, cancel: CancellationToken) -> Self {
        Self { tx, cancel }
    }

    /// Sends a reading; `false` when the source must stop (cancelled, or
    /// the batcher is gone).
    pub async fn send(&self, reading: Reading) -> bool {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => false,
            r = self.tx.send(reading) => r.is_ok(),
        }
    }

    /// Waits for the next tick; `false` when the source must stop.
    pub async fn tick(&self, ticker: &mut tokio::time::Interval) -> bool {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => false,
            _ = ticker.tick() => true,
        }
    }

    /// The cancellation token, for sources that wait on other things.
    pub fn cancel(&self) -> &CancellationToken {
        &self.cancel
    }
}

/// A ticker for `period` that delays rather than bursts after a stall.
pub fn ticker(period: Duration) -> tokio::time::Interval {
    let mut t = tokio::time::interval(period);
    t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    t
}

/// Lets a repeated complaint through at most once per period, and counts
/// what it held back.
#[derive(Debug, Clone)]
pub struct LogLimiter {
    /// Shortest time between two messages.
    period: Duration,
    /// When the last message went out.
    last: Option<Instant>,
    /// Messages held back since then.
    suppressed: u64,
}

impl LogLimiter {
    /// At most one message per `period`.
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(held back since the last one)` when a message may go out now.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.period => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// Once a minute: how often a source may complain about the same thing.
pub const COMPLAINT_PERIOD: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_limiter_lets_one_through_per_period() {
        let mut l = LogLimiter::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(l.allow(t0), Some(0));
        assert_eq!(l.allow(t0 + Duration::from_secs(1)), None);
        assert_eq!(l.allow(t0 + Duration::from_secs(59)), None);
        assert_eq!(l.allow(t0 + Duration::from_secs(60)), Some(2));
        assert_eq!(l.allow(t0 + Duration::from_secs(61)), None);
    }
}
