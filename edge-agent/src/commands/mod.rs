//! Commands from the hub: the [`Runner`] takes each `cmd` payload the
//! sender hands it, answers `delivered` at once, checks the deadline and
//! the params, runs the command (built-ins in [`builtin`], the config's
//! `[[command]]` programs in [`operator`]) beside the telemetry, and
//! answers `succeeded` or `failed`. Results go back to the sender, which
//! publishes them on `cmd/result`; the runner never touches MQTT. A command
//! id seen again ([`recent`]) is not run twice: the duplicate gets the
//! first outcome.

pub mod builtin;
pub mod operator;
pub mod params;
pub mod recent;
pub mod template;

pub use operator::Operator;

use crate::config::Config;
use crate::sources::SourceHandle;
use builtin::Builtin;
use recent::{Recent, Seen};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use telltale_wire::msg::{Command, CommandResult, ResultStatus};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The built-in command names, in the order the unknown-command reason
/// lists them.
pub const BUILTINS: [&str; 4] = ["ping", "set_interval", "read_now", "get_config"];

/// Operator commands running at once; more wait their turn.
pub const MAX_RUNNING: usize = 4;
/// Commands in progress (running or waiting) before new ones are refused.
pub const MAX_IN_PROGRESS: usize = 64;
/// Command ids remembered to answer duplicates.
pub const RECENT_IDS: usize = 256;
/// Bytes of output remembered for duplicates, all commands together.
pub const RECENT_BYTES: usize = 1 << 20;
/// Longest command id accepted.
pub const MAX_ID_LEN: usize = 256;
/// `cmd` payloads waiting for the runner; beyond this the sender drops them.
pub const INBOX: usize = 64;
/// Results waiting for the sender to publish them.
const RESULTS: usize = 64;

/// Why a command failed, and any output it had.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The `reason` of the result.
    pub reason: String,
    /// The `output` of the result, if any.
    pub output: Option<Value>,
}

impl Failure {
    /// A failure without output.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            output: None,
        }
    }
}

/// How a command ended: its output, or why it failed.
pub type Outcome = Result<Value, Failure>;

/// Now, in milliseconds since the epoch (the unit of command deadlines).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A clock in milliseconds since the epoch; tests pass their own.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// What commands act on.
pub struct Context {
    /// The config as loaded, for `get_config`.
    pub config: Arc<Config>,
    /// The running sources, in config order.
    pub sources: Vec<SourceHandle>,
    /// The `[[command]]` programs, in config order.
    pub operators: Vec<Operator>,
    /// Tells the time for deadlines.
    pub clock: Clock,
}

/// A command ready to run.
#[derive(Debug, Clone, PartialEq)]
pub enum Job {
    /// A built-in, params checked.
    Builtin(Builtin),
    /// `operators[index]` with these arguments.
    Operator {
        /// Which one.
        index: usize,
        /// Its rendered arguments.
        args: Vec<String>,
    },
}

impl Context {
    /// The context for a config (its `[[command]]` tables compiled) and
    /// the running sources.
    pub fn new(config: Arc<Config>, sources: Vec<SourceHandle>) -> anyhow::Result<Context> {
        let operators = config
            .commands
            .iter()
            .map(|c| {
                Operator::compile(c).map_err(|e| anyhow::anyhow!("[[command]] {}: {e}", c.name))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Context {
            config,
            sources,
            operators,
            clock: Arc::new(now_ms),
        })
    }

    /// Finds the command and checks its params.
    pub fn prepare(&self, cmd: &Command) -> Result<Job, Failure> {
        if let Some(b) = Builtin::parse(&cmd.name, &cmd.params, &self.sources) {
            return b.map(Job::Builtin).map_err(Failure::new);
        }
        let Some(index) = self.operators.iter().position(|o| o.name == cmd.name) else {
            return Err(Failure::new(self.unknown(&cmd.name)));
        };
        let args = self.operators[index]
            .prepare(&cmd.params)
            .map_err(Failure::new)?;
        Ok(Job::Operator { index, args })
    }

    /// The reason given for a name no command has.
    pub fn unknown(&self, name: &str) -> String {
        let known: Vec<&str> = BUILTINS
            .iter()
            .copied()
            .chain(self.operators.iter().map(|o| o.name.as_str()))
            .collect();
        format!(
            "unknown command {name:?}; this agent knows: {}",
            known.join(", ")
        )
    }
}

/// Runs `job`; an operator command waits for one of the `slots`, then
/// checks the deadline again.
async fn execute(ctx: Arc<Context>, job: Job, slots: Arc<Semaphore>, deadline: u64) -> Outcome {
    match job {
        Job::Builtin(b) => b.run(&ctx).await,
        Job::Operator { index, args } => {
            let _slot = slots
                .acquire_owned()
                .await
                .map_err(|_| Failure::new("the agent is stopping"))?;
            if (ctx.clock)() > deadline {
                return Err(Failure::new(
                    "deadline passed while the command waited for a free slot",
                ));
            }
            ctx.operators[index].run(&args).await
        }
    }
}

fn result(id: &str, status: ResultStatus) -> CommandResult {
    CommandResult {
        id: id.to_owned(),
        status,
        output: None,
        reason: None,
    }
}

fn finished(id: &str, outcome: Outcome) -> CommandResult {
    match outcome {
        Ok(output) => CommandResult {
            output: Some(output),
            ..result(id, ResultStatus::Succeeded)
        },
        Err(f) => CommandResult {
            output: f.output,
            reason: Some(f.reason),
            ..result(id, ResultStatus::Failed)
        },
    }
}

/// A `cmd` payload, or why it is not one (with its id when it has one).
pub fn parse_command(payload: &[u8]) -> Result<Command, (Option<String>, String)> {
    serde_json::from_slice::<Command>(payload).map_err(|e| {
        // Enough of it to answer, if the id is there.
        #[derive(serde::Deserialize)]
        struct IdOnly {
            id: String,
        }
        let id = serde_json::from_slice::<IdOnly>(payload).ok().map(|i| i.id);
        (id, format!("malformed command: {e}"))
    })
}

/// The sender's end of the runner: where `cmd` payloads go, and where
/// results to publish come from.
#[derive(Debug)]
pub struct CommandPort {
    /// `cmd` payloads for the runner.
    pub inbox: mpsc::Sender<Vec<u8>>,
    /// Results to publish on `cmd/result`, in order.
    pub results: mpsc::Receiver<CommandResult>,
}

/// Receives commands, runs them, and hands back their results.
pub struct Runner {
    /// What commands act on.
    context: Arc<Context>,
    /// `cmd` payloads from the sender.
    inbox: mpsc::Receiver<Vec<u8>>,
    /// Results for the sender to publish.
    results: mpsc::Sender<CommandResult>,
}

/// What the runner keeps while it runs.
struct State {
    /// Recent ids and outcomes.
    recent: Recent,
    /// Commands in progress, each giving back its outcome.
    tasks: JoinSet<Outcome>,
    /// The id and name of the command each task runs.
    running: HashMap<tokio::task::Id, (String, String)>,
    /// Operator commands running at once.
    slots: Arc<Semaphore>,
}

impl Runner {
    /// A runner over `context` and the port the sender uses to talk to it.
    pub fn new(context: Arc<Context>) -> (Runner, CommandPort) {
        let (inbox_tx, inbox) = mpsc::channel(INBOX);
        let (results, results_rx) = mpsc::channel(RESULTS);
        let runner = Runner {
            context,
            inbox,
            results,
        };
        let port = CommandPort {
            inbox: inbox_tx,
            results: results_rx,
        };
        (runner, port)
    }

    /// Runs until `cancel` (or the sender is gone). Commands still in
    /// progress then are stopped (their programs killed) and answered
    /// `failed`; dropping the results channel tells the sender it has
    /// everything.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut st = State {
            recent: Recent::new(RECENT_IDS, RECENT_BYTES),
            tasks: JoinSet::new(),
            running: HashMap::new(),
            slots: Arc::new(Semaphore::new(MAX_RUNNING)),
        };
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                Some(joined) = st.tasks.join_next_with_id() => self.joined(&mut st, joined).await,
                payload = self.inbox.recv() => match payload {
                    Some(p) => self.receive(&mut st, &p).await,
                    None => break,
                },
            }
        }
        // What finished before the stop is reported as it ended.
        while let Some(joined) = st.tasks.try_join_next_with_id() {
            self.joined(&mut st, joined).await;
        }
        st.tasks.shutdown().await;
        let mut stopped: Vec<(String, String)> = st.running.drain().map(|(_, c)| c).collect();
        stopped.sort();
        for (id, name) in stopped {
            let f = Failure::new("the agent stopped before the command finished");
            self.report(&mut st, finished(&id, Err(f)), Some(&name))
                .await;
        }
        tracing::debug!("command runner stopped");
    }

    async fn joined(
        &self,
        st: &mut State,
        joined: Result<(tokio::task::Id, Outcome), tokio::task::JoinError>,
    ) {
        let (task, outcome) = match joined {
            Ok(done) => done,
            Err(e) => (
                e.id(),
                Err(Failure::new(format!(
                    "the command failed inside the agent: {e}"
                ))),
            ),
        };
        if let Some((id, name)) = st.running.remove(&task) {
            self.report(st, finished(&id, outcome), Some(&name)).await;
        }
    }

    /// Records a final result, logs it, and hands it to the sender. The
    /// one place a command's outcome is logged.
    async fn report(&self, st: &mut State, r: CommandResult, name: Option<&str>) {
        st.recent.finish(&r);
        match r.status {
            ResultStatus::Failed => {
                tracing::info!(id = r.id, name, reason = r.reason, "command failed")
            }
            _ => tracing::info!(id = r.id, name, "command succeeded"),
        }
        self.send(r).await;
    }

    async fn send(&self, r: CommandResult) {
        // Closed only when the sender has stopped; nothing can be published then.
        let _ = self.results.send(r).await;
    }

    async fn receive(&self, st: &mut State, payload: &[u8]) {
        let (id, cmd) = match parse_command(payload) {
            Ok(cmd) => (cmd.id.clone(), Ok(cmd)),
            Err((Some(id), reason)) => (id, Err(reason)),
            Err((None, reason)) => {
                tracing::warn!(reason, "command without an id ignored");
                return;
            }
        };
        if id.is_empty() || id.len() > MAX_ID_LEN {
            tracing::warn!(
                len = id.len(),
                "command ignored: its id must be 1-{MAX_ID_LEN} bytes"
            );
            return;
        }
        match st.recent.check_in(&id) {
            Seen::New => {}
            Seen::Running => {
                tracing::debug!(id, "duplicate of a command in progress");
                self.send(result(&id, ResultStatus::Delivered)).await;
                return;
            }
            Seen::Done(r) => {
                tracing::debug!(id, "duplicate of a finished command: its result again");
                self.send(r).await;
                return;
            }
        }
        self.send(result(&id, ResultStatus::Delivered)).await;
        let cmd = match cmd {
            Ok(cmd) => cmd,
            Err(reason) => {
                return self
                    .report(st, finished(&id, Err(Failure::new(reason))), None)
                    .await
            }
        };
        tracing::info!(id, name = cmd.name, "command received");
        let name = Some(cmd.name.as_str());
        let now = (self.context.clock)();
        if now > cmd.deadline {
            let f = Failure::new("deadline passed before the command started");
            return self.report(st, finished(&id, Err(f)), name).await;
        }
        let job = match self.context.prepare(&cmd) {
            Ok(job) => job,
            Err(f) => return self.report(st, finished(&id, Err(f)), name).await,
        };
        if st.tasks.len() >= MAX_IN_PROGRESS {
            let f = Failure::new(format!(
                "the agent is busy: {MAX_IN_PROGRESS} commands in progress; try again later"
            ));
            return self.report(st, finished(&id, Err(f)), name).await;
        }
        let ctx = self.context.clone();
        let slots = st.slots.clone();
        let handle = st.tasks.spawn(execute(ctx, job, slots, cmd.deadline));
        st.running.insert(handle.id(), (id, cmd.name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use serde_json::json;
    use std::time::Duration;

    const NOW: u64 = 1_700_000_000_000;

    fn context(extra: &str) -> Arc<Context> {
        let config = Config::parse(&format!(
            r#"
            device_id = "gw-1"
            [mqtt]
            username = "gw-1"
            password = "s3cret-password"
            [[source]]
            kind = "simulated"
            metric = "room/temp"
            interval_ms = 1000
            {extra}
            "#
        ))
        .expect("config");
        let sources = config
            .sources
            .iter()
            .enumerate()
            .map(|(i, s)| SourceHandle::new(s, i + 1).0)
            .collect();
        let mut ctx = Context::new(Arc::new(config), sources).expect("context");
        ctx.clock = Arc::new(|| NOW);
        Arc::new(ctx)
    }

    fn cmd(id: &str, name: &str, params: Value, deadline: u64) -> Vec<u8> {
        serde_json::to_vec(&json!({"id": id, "name": name, "params": params, "deadline": deadline}))
            .expect("json")
    }

    async fn next(results: &mut mpsc::Receiver<CommandResult>) -> CommandResult {
        tokio::time::timeout(Duration::from_secs(10), results.recv())
            .await
            .expect("a result in time")
            .expect("runner running")
    }

    const ECHO: &str = r#"
        [[command]]
        name = "say"
        program = "/bin/echo"
        args = ["{word}"]
        [command.params]
        word = { type = "string", pattern = "[a-z]+" }
    "#;

    #[test]
    fn unknown_command_reason_lists_every_command() {
        let ctx = context(ECHO);
        assert_eq!(
            ctx.unknown("reboot"),
            "unknown command \"reboot\"; this agent knows: ping, set_interval, read_now, get_config, say"
        );
        let bare = context("");
        assert_eq!(
            bare.unknown("x"),
            "unknown command \"x\"; this agent knows: ping, set_interval, read_now, get_config"
        );
    }

    #[test]
    fn parse_command_keeps_the_id_of_a_bad_one() {
        assert!(parse_command(&cmd("a", "ping", json!({}), 1)).is_ok());
        let (id, reason) = parse_command(br#"{"id":"c1","name":"ping"}"#).expect_err("no deadline");
        assert_eq!(id.as_deref(), Some("c1"));
        assert!(
            reason.starts_with("malformed command: missing field `deadline`"),
            "{reason}"
        );
        let (id, _) = parse_command(b"not json").expect_err("garbage");
        assert_eq!(id, None);
        let (id, _) = parse_command(br#"{"id":"c2","name":"ping","params":[1],"deadline":5}"#)
            .expect_err("params not an object");
        assert_eq!(id.as_deref(), Some("c2"));
    }

    #[tokio::test]
    async fn runner_answers_delivered_then_the_outcome() {
        let (runner, port) = Runner::new(context(ECHO));
        let CommandPort { inbox, mut results } = port;
        let cancel = CancellationToken::new();
        let task = tokio::spawn(runner.run(cancel.clone()));
        let later = NOW + 60_000;
        let status = |r: &CommandResult| (r.id.clone(), r.status);
        let send = |p: Vec<u8>| inbox.try_send(p).expect("room");

        send(cmd("p1", "ping", json!({}), later));
        assert_eq!(
            status(&next(&mut results).await),
            ("p1".into(), ResultStatus::Delivered)
        );
        let pong = next(&mut results).await;
        assert_eq!(status(&pong), ("p1".into(), ResultStatus::Succeeded));
        let out = pong.output.clone().expect("output");
        assert_eq!(out["pong"], json!(true));
        assert!(out["agent"]
            .as_str()
            .is_some_and(|a| a.starts_with("telltale-agent/")));

        // A duplicate is not run again: it gets the first result.
        send(cmd("p1", "ping", json!({}), later));
        assert_eq!(next(&mut results).await, pong);

        send(cmd("u1", "reboot", json!({}), later));
        assert_eq!(
            status(&next(&mut results).await),
            ("u1".into(), ResultStatus::Delivered)
        );
        let r = next(&mut results).await;
        assert_eq!(r.status, ResultStatus::Failed);
        assert_eq!(r.reason.as_deref(), Some("unknown command \"reboot\"; this agent knows: ping, set_interval, read_now, get_config, say"));

        send(cmd("late", "ping", json!({}), NOW - 1));
        assert_eq!(
            status(&next(&mut results).await),
            ("late".into(), ResultStatus::Delivered)
        );
        let r = next(&mut results).await;
        assert_eq!(
            (r.status, r.reason.as_deref()),
            (
                ResultStatus::Failed,
                Some("deadline passed before the command started")
            )
        );

        send(cmd("bad", "say", json!({"word": "Hi!"}), later));
        next(&mut results).await;
        let r = next(&mut results).await;
        assert_eq!(
            (r.status, r.reason.as_deref()),
            (
                ResultStatus::Failed,
                Some("param \"word\": \"Hi!\" does not match [a-z]+")
            )
        );

        send(cmd("s1", "say", json!({"word": "hello"}), later));
        next(&mut results).await;
        let r = next(&mut results).await;
        assert_eq!(r.status, ResultStatus::Succeeded, "{r:?}");
        assert_eq!(r.output.expect("output")["stdout"], json!("hello\n"));

        send(cmd("i1", "set_interval", json!({"seconds": 0.25}), later));
        next(&mut results).await;
        let r = next(&mut results).await;
        assert_eq!(
            r.output,
            Some(
                json!({"sources": [{"source": "room/temp", "metric": "room/temp", "interval_ms": 250, "previous_ms": 1000}]})
            )
        );

        send(cmd("g1", "get_config", json!({}), later));
        next(&mut results).await;
        let r = next(&mut results).await;
        let config = r.output.expect("config");
        assert_eq!(config["source"][0]["interval_ms"], json!(250));
        assert_eq!(config["mqtt"]["password"], json!("***"));
        assert_eq!(config["command"][0]["name"], json!("say"));
        assert!(!config.to_string().contains("s3cret"));

        send(br#"{"id":"m1","name":"ping"}"#.to_vec());
        assert_eq!(
            status(&next(&mut results).await),
            ("m1".into(), ResultStatus::Delivered)
        );
        let r = next(&mut results).await;
        assert_eq!(r.status, ResultStatus::Failed);
        // Garbage without an id gets no answer at all.
        send(b"garbage".to_vec());
        send(cmd("p2", "ping", json!({}), later));
        assert_eq!(
            status(&next(&mut results).await),
            ("p2".into(), ResultStatus::Delivered)
        );
        next(&mut results).await;

        cancel.cancel();
        task.await.expect("join");
    }

    #[tokio::test]
    async fn at_most_four_run_at_once_and_a_stop_fails_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runs = dir.path().join("runs");
        let sleeper = format!(
            r#"
            [[command]]
            name = "nap"
            program = "/bin/sh"
            args = ["-c", "echo x >> {}; exec sleep 30"]
            "#,
            runs.display()
        );
        let (runner, port) = Runner::new(context(&sleeper));
        let CommandPort { inbox, mut results } = port;
        let cancel = CancellationToken::new();
        let task = tokio::spawn(runner.run(cancel.clone()));
        for i in 0..6 {
            inbox
                .try_send(cmd(&format!("n{i}"), "nap", json!({}), NOW + 60_000))
                .expect("room");
        }
        for _ in 0..6 {
            assert_eq!(next(&mut results).await.status, ResultStatus::Delivered);
        }
        let started = || {
            std::fs::read_to_string(&runs)
                .map(|t| t.lines().count())
                .unwrap_or(0)
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while started() < MAX_RUNNING {
            assert!(
                std::time::Instant::now() < deadline,
                "{} started",
                started()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The other two wait for a slot.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(started(), MAX_RUNNING);
        // Ping is not held up by the programs running or waiting.
        inbox
            .try_send(cmd("p", "ping", json!({}), NOW + 60_000))
            .expect("room");
        assert_eq!(next(&mut results).await.status, ResultStatus::Delivered);
        assert_eq!(next(&mut results).await.status, ResultStatus::Succeeded);
        cancel.cancel();
        let mut stopped = Vec::new();
        while let Some(r) = results.recv().await {
            assert_eq!(
                r.reason.as_deref(),
                Some("the agent stopped before the command finished")
            );
            stopped.push(r.id);
        }
        stopped.sort();
        assert_eq!(stopped, ["n0", "n1", "n2", "n3", "n4", "n5"]);
        task.await.expect("join");
    }
}
