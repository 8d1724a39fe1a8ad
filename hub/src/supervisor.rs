//! The hub's lifecycle: one shutdown signal, one set of long tasks, the stop
//! order written once, and one total stop deadline.
//!
//! Every long task is spawned here, on the one [`TaskTracker`], in the stage
//! that stops it. Each stage has a token of its own, a child of the one
//! shutdown token, so the stages are cancelled in order and a cancel of the
//! root (the deadline passing) reaches every task at once. The order:
//!
//! 1. ingest stops taking messages; the store commits what is queued and
//!    the acks owed are published ([`Stage::Ingest`]);
//! 2. watch streams end with their final BOOKMARK and the HTTP server
//!    closes ([`Stage::Api`]);
//! 3. the notifier, the commander, the rules reloader and the rest
//!    ([`Stage::Rest`]);
//! 4. the store writer, whose handles are all gone by now, flushes and is
//!    joined; then the process exits.
//!
//! The stages share one deadline (`[hub] stop_timeout_secs`, below systemd's
//! `TimeoutStopSec`): each waits at most what remains of it, never a fixed
//! time of its own that could add up past it. A task still running at the
//! deadline is aborted, and the hub exits anyway: the WAL keeps every
//! commit, and agents resend what was not acknowledged.

use crate::demo;
use std::future::Future;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The longest a client that does not read (and so cannot take its final
/// BOOKMARK) holds up the stop, within what remains of the deadline.
const HTTP_GRACE: Duration = Duration::from_secs(2);

/// When a task stops, in the stop order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Ingest: the drain thread and its ack task.
    Ingest,
    /// The HTTP API: the server, its streams and the feed into them.
    Api,
    /// Everything else: notifier, commander, reloader, disconnects, logs.
    Rest,
}

/// The hub's lifecycle, made first in `run`.
pub struct Supervisor {
    /// The one shutdown signal; every stage's token is a child of it.
    shutdown: CancellationToken,
    /// Cancelled first: ingest stops draining.
    ingest: CancellationToken,
    /// Cancelled once ingest stopped: streams end, the server closes.
    api: CancellationToken,
    /// Cancelled once the API is down: the remaining tasks end.
    rest: CancellationToken,
    /// Every long task the hub spawns, so none is left behind unnoticed.
    tracker: TaskTracker,
    /// The tasks of the API and rest stages, in spawn order, to join (or
    /// abort at the deadline) stage by stage.
    tasks: Vec<Task>,
    /// The total stop deadline, from the signal to the exit.
    stop_timeout: Duration,
}

/// A tracked task and how its stage ends it.
struct Task {
    /// The stage that stops it.
    stage: Stage,
    /// For the log line when it does not stop in time.
    name: &'static str,
    /// Its handle, to join or abort.
    handle: JoinHandle<()>,
    /// Whether it has no token and is aborted when its stage stops (a
    /// task that ends only when what it reads closes).
    abort: bool,
}

/// What `run` hands over once everything runs: the parts the stop order
/// needs beyond the tracked tasks.
pub struct Running {
    /// Ingest, stopped first.
    pub ingest: telltale_ingest::Running,
    /// The HTTP server.
    pub http: JoinHandle<std::io::Result<()>>,
    /// The store writer thread, joined last.
    pub writer_thread: std::thread::JoinHandle<()>,
    /// systemd's watchdog task: it stops at the signal.
    pub watchdog: JoinHandle<()>,
    /// The demo agents (`telltale-hub demo` only), stopped before ingest so
    /// their last batches are acknowledged.
    pub demo: Option<demo::Agents>,
}

impl Supervisor {
    /// A lifecycle whose stop takes at most `stop_timeout` in all.
    pub fn new(stop_timeout: Duration) -> Supervisor {
        let shutdown = CancellationToken::new();
        Supervisor {
            ingest: shutdown.child_token(),
            api: shutdown.child_token(),
            rest: shutdown.child_token(),
            shutdown,
            tracker: TaskTracker::new(),
            tasks: Vec::new(),
            stop_timeout,
        }
    }

    /// The token that tells the tasks of `stage` to stop.
    pub fn token(&self, stage: Stage) -> CancellationToken {
        match stage {
            Stage::Ingest => self.ingest.clone(),
            Stage::Api => self.api.clone(),
            Stage::Rest => self.rest.clone(),
        }
    }

    /// Spawns a long task that stops with `stage` (it must end when the
    /// stage's token fires, or be aborted at the deadline).
    pub fn spawn<F>(&mut self, stage: Stage, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.track(stage, name, task, false);
    }

    /// Spawns a task without a token of its own, aborted when `stage`
    /// stops (the feed: it ends only when the store's commits end, which
    /// needs its own handle gone first).
    pub fn spawn_aborted<F>(&mut self, stage: Stage, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.track(stage, name, task, true);
    }

    fn track<F>(&mut self, stage: Stage, name: &'static str, task: F, abort: bool)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = self.tracker.spawn(task);
        let task = Task {
            stage,
            name,
            handle,
            abort,
        };
        self.tasks.push(task);
    }

    /// Spawns the HTTP server (a stage of its own within [`Stage::Api`]:
    /// it is given the shorter [`HTTP_GRACE`]).
    pub fn spawn_http<F>(&self, server: F) -> JoinHandle<std::io::Result<()>>
    where
        F: Future<Output = std::io::Result<()>> + Send + 'static,
    {
        self.tracker.spawn(server)
    }

    /// Waits for SIGINT or SIGTERM, then stops the hub in order.
    pub async fn run_until_signal(self, running: Running) {
        wait_for_signal().await;
        self.stop(running).await;
    }

    /// The stop order (see the module's documentation).
    pub async fn stop(mut self, running: Running) {
        let deadline = Instant::now() + self.stop_timeout;
        let started = Instant::now();
        tracing::info!(timeout = ?self.stop_timeout, "stopping");
        crate::service::stopping();
        let Running {
            ingest,
            mut http,
            writer_thread,
            watchdog,
            demo,
        } = running;
        watchdog.abort();
        if let Some(mut agents) = demo {
            if tokio::time::timeout_at(deadline, agents.stop())
                .await
                .is_err()
            {
                tracing::warn!("demo agents did not stop in time");
            }
        }

        // 1. Ingest: the drain thread stops, what it queued is committed and
        //    the acks owed are published. It drops its writer handle.
        self.ingest.cancel();
        if tokio::time::timeout_at(deadline, ingest.stopped())
            .await
            .is_err()
        {
            tracing::warn!("ingest did not stop in time");
        }
        tracing::info!(took = ?started.elapsed(), "stopping: ingest stopped, its acks sent");

        // 2. The API: streams end with their final BOOKMARK (they have seen
        //    the last commit), the server closes. A client that does not
        //    read is cut after a short grace.
        self.api.cancel();
        let grace = deadline.min(Instant::now() + HTTP_GRACE);
        if tokio::time::timeout_at(grace, &mut http).await.is_err() {
            tracing::warn!("http connections still open after the grace; closing them");
            http.abort();
            let _ = http.await;
        }
        self.join(Stage::Api, deadline).await;
        tracing::info!(took = ?started.elapsed(), "stopping: streams ended, http closed");

        // 3. The rest: the notifier drops an attempt in flight (it is made
        //    again after the next start) and has committed the outcomes of
        //    the others; the commander, the reloader and the others end.
        self.rest.cancel();
        self.join(Stage::Rest, deadline).await;
        tracing::info!(took = ?started.elapsed(), "stopping: the other tasks ended");

        // 4. Every writer handle is gone with its task: the writer commits
        //    what is left and its thread ends.
        self.shutdown.cancel();
        self.tracker.close();
        if tokio::time::timeout_at(deadline, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("tasks still running at the stop deadline");
        }
        // Joined from a thread of its own, not the runtime's blocking pool,
        // so a writer stuck past the deadline cannot hold up the exit.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let joiner = std::thread::Builder::new()
            .name("writer-join".into())
            .spawn(move || {
                let _ = tx.send(writer_thread.join());
            });
        match joiner {
            Ok(_) => match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(_))) => tracing::error!("the store writer thread panicked"),
                Ok(Err(_)) => tracing::error!("the store writer join was lost"),
                Err(_) => tracing::warn!("store writer did not stop in time"),
            },
            Err(e) => tracing::error!(error = %e, "cannot join the store writer"),
        }
        tracing::info!(took = ?started.elapsed(), "stopped");
    }

    /// Waits (until `deadline`) for the tasks of `stage`, in spawn order;
    /// aborts those still running at the deadline.
    async fn join(&mut self, stage: Stage, deadline: Instant) {
        let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.tasks)
            .into_iter()
            .partition(|t| t.stage == stage);
        self.tasks = later;
        for mut t in now {
            if t.abort {
                t.handle.abort();
                let _ = t.handle.await;
            } else if tokio::time::timeout_at(deadline, &mut t.handle)
                .await
                .is_err()
            {
                tracing::warn!("{} did not stop in time", t.name);
                t.handle.abort();
                let _ = t.handle.await;
            }
        }
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A task that ignores its token is aborted at the deadline, and the
    /// whole stop takes the deadline, not the sum of stage timeouts.
    #[tokio::test(start_paused = true)]
    async fn one_deadline_for_every_stage() {
        let mut s = Supervisor::new(Duration::from_secs(20));
        let api = s.token(Stage::Api);
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let o = order.clone();
        s.spawn(Stage::Api, "api task", async move {
            api.cancelled().await;
            o.lock().expect("lock").push("api");
        });
        let rest = s.token(Stage::Rest);
        let o = order.clone();
        s.spawn(Stage::Rest, "rest task", async move {
            rest.cancelled().await;
            o.lock().expect("lock").push("rest");
        });
        // Stuck: ignores its token.
        s.spawn(Stage::Rest, "stuck", std::future::pending());
        let t0 = Instant::now();
        let tracker = s.tracker.clone();
        let rest = s.token(Stage::Rest);
        // Stage by stage as `stop` does, without ingest and the writer.
        s.api.cancel();
        let deadline = Instant::now() + s.stop_timeout;
        s.join(Stage::Api, deadline).await;
        assert_eq!(*order.lock().expect("lock"), ["api"]);
        assert!(!rest.is_cancelled(), "the rest stops after the API");
        s.rest.cancel();
        s.join(Stage::Rest, deadline).await;
        assert_eq!(*order.lock().expect("lock"), ["api", "rest"]);
        assert_eq!(t0.elapsed(), Duration::from_secs(20));
        tracker.close();
        tracker.wait().await;
    }

    #[test]
    fn stage_tokens_are_children_of_the_one_signal() {
        let s = Supervisor::new(Duration::from_secs(1));
        let (i, a, r) = (
            s.token(Stage::Ingest),
            s.token(Stage::Api),
            s.token(Stage::Rest),
        );
        s.ingest.cancel();
        assert!(i.is_cancelled() && !a.is_cancelled() && !r.is_cancelled());
        s.shutdown.cancel();
        assert!(a.is_cancelled() && r.is_cancelled());
    }
}
