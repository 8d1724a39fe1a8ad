//! Sources: tasks that read something every interval and send readings to
//! the batcher. Each stops when the token is cancelled, dropping its sender
//! so that the batcher sees the channel close once all of them are gone.
//! Each also answers to a [`SourceHandle`]: its interval can be changed at
//! run time and it can be asked to read at once (the `set_interval` and
//! `read_now` commands); those readings take the same path as the others.

pub mod command;
pub mod file;
pub mod simulated;

use crate::config::SourceConfig;
use crate::reading::Reading;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Starts one task per source on `tracker`; returns their handles, in
/// config order.
pub fn spawn_all(
    sources: &[SourceConfig],
    tx: &mpsc::Sender<Reading>,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) -> Vec<SourceHandle> {
    let mut handles = Vec::with_capacity(sources.len());
    for (i, source) in sources.iter().enumerate() {
        let out = Output {
            tx: tx.clone(),
            cancel: cancel.clone(),
        };
        let (handle, schedule) = SourceHandle::new(source, i + 1);
        handles.push(handle);
        let source = source.clone();
        tracker.spawn(async move {
            tracing::info!(source = i + 1, metric = source.metric(), "source started");
            match source {
                SourceConfig::Simulated(s) => simulated::run(s, out, schedule).await,
                SourceConfig::File(s) => file::run(s, out, schedule).await,
                SourceConfig::Command(s) => command::run(s, out, schedule).await,
            }
            tracing::debug!(source = i + 1, "source stopped");
        });
    }
    handles
}

/// A request to read at once; answered with what was read, or why nothing was.
pub type ReadNow = oneshot::Sender<Result<Vec<Reading>, String>>;

/// Why a source woke up.
#[derive(Debug)]
pub enum Wake {
    /// Its interval came round.
    Tick,
    /// Someone asked for a reading now, and waits for the answer.
    Now(ReadNow),
}

impl Wake {
    /// Gives the asker (if any) what this wake-up read.
    pub fn answer(self, readings: Result<Vec<Reading>, String>) {
        if let Wake::Now(reply) = self {
            // The asker may have given up waiting; nothing to do then.
            let _ = reply.send(readings);
        }
    }
}

/// Read-now requests a source may have waiting.
const READ_NOW_QUEUE: usize = 8;

/// The controls of a running source, held by the command runner.
#[derive(Debug)]
pub struct SourceHandle {
    /// 1-based position among the `[[source]]` tables.
    pub index: usize,
    /// The name commands select it by (`name`, else the metric).
    pub name: String,
    /// Its metric.
    pub metric: String,
    /// Its current interval; the source restarts its ticker on a change.
    interval: watch::Sender<Duration>,
    /// Read-now requests.
    read_now: mpsc::Sender<ReadNow>,
    /// How long a read-now may take before the asker gives up.
    read_wait: Duration,
}

impl SourceHandle {
    /// A handle for `source` and the schedule its task waits on.
    pub fn new(source: &SourceConfig, index: usize) -> (SourceHandle, Schedule) {
        let period = source.interval();
        let (interval, interval_rx) = watch::channel(period);
        let (read_now, requests) = mpsc::channel(READ_NOW_QUEUE);
        // A command source may be in the middle of a run, then needs one more.
        let read_wait = match source {
            SourceConfig::Command(c) => Duration::from_millis(c.timeout_ms.saturating_mul(2)),
            _ => Duration::ZERO,
        } + Duration::from_secs(10);
        let handle = SourceHandle {
            index,
            name: source.name().to_owned(),
            metric: source.metric().to_owned(),
            interval,
            read_now,
            read_wait,
        };
        (handle, Schedule::new(period, interval_rx, requests))
    }

    /// The current interval.
    pub fn interval(&self) -> Duration {
        *self.interval.borrow()
    }

    /// Changes the interval from now on; returns the previous one. The next
    /// reading comes one new interval from now.
    pub fn set_interval(&self, period: Duration) -> Duration {
        self.interval.send_replace(period)
    }

    /// Asks the source to read now; the answer is what it read (which also
    /// goes to the batcher like any other reading). Asking does not wait, so
    /// several sources can be asked at once.
    pub fn ask(&self) -> PendingRead {
        let (tx, rx) = oneshot::channel();
        let rx = match self.read_now.try_send(tx) {
            Ok(()) => Ok(rx),
            Err(mpsc::error::TrySendError::Full(_)) => Err(format!(
                "{READ_NOW_QUEUE} read-now requests are already waiting"
            )),
            Err(mpsc::error::TrySendError::Closed(_)) => Err("the source has stopped".to_owned()),
        };
        PendingRead {
            rx,
            wait: self.read_wait,
            deadline: tokio::time::Instant::now() + self.read_wait,
        }
    }
}

/// A read-now request on its way.
#[derive(Debug)]
pub struct PendingRead {
    /// Where the answer comes, or why the request could not be made.
    rx: Result<oneshot::Receiver<Result<Vec<Reading>, String>>, String>,
    /// How long the source had.
    wait: Duration,
    /// When to give up.
    deadline: tokio::time::Instant,
}

impl PendingRead {
    /// Waits for the source's answer, up to the time it was given.
    pub async fn answer(self) -> Result<Vec<Reading>, String> {
        let rx = self.rx?;
        match tokio::time::timeout_at(self.deadline, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err("the source has stopped".to_owned()),
            Err(_) => Err(format!("no answer within {} s", self.wait.as_secs())),
        }
    }
}

/// What a source task waits on: its ticker, interval changes and read-now
/// requests.
#[derive(Debug)]
pub struct Schedule {
    /// The interval now.
    period: Duration,
    /// Ticks every interval; made on the first wait (it needs the runtime).
    ticker: Option<tokio::time::Interval>,
    /// Interval changes.
    interval: watch::Receiver<Duration>,
    /// Read-now requests.
    requests: mpsc::Receiver<ReadNow>,
}

impl Schedule {
    fn new(
        period: Duration,
        interval: watch::Receiver<Duration>,
        requests: mpsc::Receiver<ReadNow>,
    ) -> Self {
        Self {
            period,
            ticker: None,
            interval,
            requests,
        }
    }

    /// A schedule that only ticks every `period` (for tests and tools).
    pub fn fixed(period: Duration) -> Self {
        let (_, interval) = watch::channel(period);
        let (_, requests) = mpsc::channel(1);
        Self::new(period, interval, requests)
    }

    /// The interval now.
    pub fn period(&self) -> Duration {
        self.period
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

    /// Waits until the source must read: its interval came round, or a
    /// read-now request arrived. An interval change restarts the ticker, one
    /// new interval from now. `None` when the source must stop.
    pub async fn next(&self, schedule: &mut Schedule) -> Option<Wake> {
        loop {
            let period = schedule.period;
            let tick = schedule.ticker.get_or_insert_with(|| ticker(period));
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return None,
                Some(reply) = schedule.requests.recv() => return Some(Wake::Now(reply)),
                Ok(()) = schedule.interval.changed() => {
                    let period = *schedule.interval.borrow_and_update();
                    schedule.period = period;
                    schedule.ticker = Some(ticker_at(tokio::time::Instant::now() + period, period));
                }
                _ = tick.tick() => return Some(Wake::Tick),
            }
        }
    }

    /// The cancellation token, for sources that wait on other things.
    pub fn cancel(&self) -> &CancellationToken {
        &self.cancel
    }
}

/// A ticker for `period`, first tick at once, that delays rather than
/// bursts after a stall.
pub fn ticker(period: Duration) -> tokio::time::Interval {
    ticker_at(tokio::time::Instant::now(), period)
}

fn ticker_at(start: tokio::time::Instant, period: Duration) -> tokio::time::Interval {
    let mut t = tokio::time::interval_at(start, period);
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

    #[tokio::test(start_paused = true)]
    async fn interval_changes_and_read_now() {
        use crate::config::SimulatedSource;
        let sim = SimulatedSource {
            name: Some("room".into()),
            metric: "room/temp".into(),
            unit: Some("Cel".into()),
            interval_ms: 1000,
            shape: Default::default(),
            base: 20.0,
            amplitude: 1.0,
            period_secs: 60.0,
            noise: 0.0,
            limit: None,
        };
        let (handle, schedule) = SourceHandle::new(&SourceConfig::Simulated(sim.clone()), 1);
        assert_eq!((handle.name.as_str(), handle.index), ("room", 1));
        let (tx, mut rx) = mpsc::channel(100);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(simulated::run(
            sim,
            Output::new(tx, cancel.clone()),
            schedule,
        ));
        async fn gap(rx: &mut mpsc::Receiver<Reading>) -> Duration {
            let start = tokio::time::Instant::now();
            rx.recv().await.expect("reading");
            start.elapsed()
        }
        // The first reading at once, then one a second.
        assert_eq!(gap(&mut rx).await, Duration::ZERO);
        assert_eq!(gap(&mut rx).await, Duration::from_secs(1));
        // Faster: the next one a new interval after the change.
        assert_eq!(
            handle.set_interval(Duration::from_millis(100)),
            Duration::from_secs(1)
        );
        assert_eq!(handle.interval(), Duration::from_millis(100));
        for _ in 0..5 {
            assert_eq!(gap(&mut rx).await, Duration::from_millis(100));
        }
        // Slower.
        handle.set_interval(Duration::from_secs(60));
        assert_eq!(gap(&mut rx).await, Duration::from_secs(60));
        // Read now: the reading is answered and goes to the batcher too.
        let start = tokio::time::Instant::now();
        let read = handle.ask().answer().await.expect("read now");
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(read.len(), 1);
        assert_eq!(rx.recv().await.as_ref(), read.first());
        // The ticker goes on as before.
        assert_eq!(gap(&mut rx).await, Duration::from_secs(60));
        cancel.cancel();
        task.await.expect("join");
        assert_eq!(
            handle.ask().answer().await,
            Err("the source has stopped".to_owned())
        );
    }

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
