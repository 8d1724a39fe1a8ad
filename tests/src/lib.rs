//! Harness for the end-to-end tests: starts the real `telltale-hub` and
//! `telltale-agent` binaries on loopback ports in a temp folder, kills and
//! restarts them, and reads the hub's SQLite file.
//!
//! The binaries must be built first (`cargo build --workspace --bins`, which
//! the README's test command does).
#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use telltale_store::Reader;

/// Path of a workspace binary, beside the test executable's folder.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Polls `f` until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// A child process that the tests start, kill and restart, with one log
/// file per start in its folder.
struct Proc {
    child: Option<Child>,
    /// Its folder: config and logs.
    dir: PathBuf,
    /// The binary.
    bin: &'static str,
    /// Its arguments.
    args: Vec<std::ffi::OsString>,
    /// Log file prefix.
    name: &'static str,
    /// Starts so far, for log file names.
    starts: u32,
    /// More environment variables.
    env: Vec<(String, String)>,
}

impl Proc {
    fn new(dir: &Path, bin: &'static str, name: &'static str, config: &Path) -> Proc {
        Proc {
            child: None,
            dir: dir.to_path_buf(),
            bin,
            args: vec!["run".into(), "--config".into(), config.into()],
            name,
            starts: 0,
            env: Vec::new(),
        }
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log =
            std::fs::File::create(self.dir.join(format!("{}-{}.log", self.name, self.starts)))
                .expect("log file");
        // `WATCHDOG_PID=self`: the process's own pid, as systemd sets it,
        // through a shell that execs the binary (so the pid stays).
        let own_pid = self
            .env
            .iter()
            .any(|(k, v)| k == "WATCHDOG_PID" && v == "self");
        let mut cmd = if own_pid {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg("WATCHDOG_PID=$$ exec \"$0\" \"$@\"")
                .arg(bin(self.bin));
            c
        } else {
            Command::new(bin(self.bin))
        };
        let child = cmd
            .args(&self.args)
            .env("RUST_LOG", "info,rumqttd=warn")
            .envs(
                self.env
                    .iter()
                    .filter(|(k, _)| !(own_pid && k == "WATCHDOG_PID"))
                    .map(|(k, v)| (k, v)),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("process starts");
        self.child = Some(child);
    }

    fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Sends `sig` and waits up to `timeout`; kills it after that. Returns
    /// whether it exited in time.
    fn stop(&mut self, sig: nix::sys::signal::Signal, timeout: Duration) -> bool {
        self.stop_status(sig, timeout).is_some()
    }

    /// Sends `sig` and waits up to `timeout`; kills it after that. Returns
    /// its exit status if it exited in time (a process that was not running
    /// counts as a success).
    fn stop_status(
        &mut self,
        sig: nix::sys::signal::Signal,
        timeout: Duration,
    ) -> Option<std::process::ExitStatus> {
        use std::os::unix::process::ExitStatusExt;
        let Some(mut child) = self.child.take() else {
            return Some(std::process::ExitStatus::from_raw(0));
        };
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig);
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    fn kill(&mut self) {
        self.stop(nix::sys::signal::Signal::SIGKILL, Duration::from_secs(5));
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A hub process.
pub struct Hub {
    proc: Proc,
    /// Its folder: config, log, data.
    pub dir: PathBuf,
    /// Its MQTT port on 127.0.0.1.
    pub mqtt_port: u16,
    /// Its HTTP port on 127.0.0.1.
    pub http_port: u16,
}

impl Hub {
    /// Starts a hub in `dir` with `extra` config lines (TOML) added.
    pub fn start(dir: &Path, extra: &str) -> Hub {
        let mut hub = Hub::configure(dir, extra);
        hub.spawn();
        hub
    }

    /// Starts a hub with more environment variables, without waiting for
    /// its ports (the caller watches for readiness itself).
    pub fn start_env(dir: &Path, extra: &str, env: &[(&str, &str)]) -> Hub {
        let mut hub = Hub::configure(dir, extra);
        hub.proc.env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        hub.proc.spawn();
        hub
    }

    fn configure(dir: &Path, extra: &str) -> Hub {
        std::fs::create_dir_all(dir).expect("hub dir");
        let mqtt_port = free_port();
        let http_port = free_port();
        let config = dir.join("hub.toml");
        // `extra` may open an [api] table of its own: the listener goes there.
        let api_listen = format!("listen = \"127.0.0.1:{http_port}\"\n");
        let extra = if extra.contains("[api]\n") {
            extra.replace("[api]\n", &format!("[api]\n{api_listen}"))
        } else {
            format!("{extra}\n[api]\n{api_listen}")
        };
        let text = format!(
            "data_dir = \"{}\"\n{extra}\n[broker]\nlisten = \"127.0.0.1:{mqtt_port}\"\n",
            dir.join("data").display()
        );
        std::fs::write(&config, text).expect("write config");
        Hub {
            proc: Proc::new(dir, "telltale-hub", "hub", &config),
            dir: dir.to_path_buf(),
            mqtt_port,
            http_port,
        }
    }

    fn spawn(&mut self) {
        self.proc.spawn();
        let up = wait_until(Duration::from_secs(15), || {
            [self.mqtt_port, self.http_port].iter().all(|p| {
                let addr = SocketAddr::from(([127, 0, 0, 1], *p));
                TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
            })
        });
        assert!(up, "hub did not listen; see {}", self.dir.display());
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    /// GETs `path` with curl; returns the status and the body.
    pub fn get(&self, path: &str) -> (u16, String) {
        curl(&self.url(path), &[])
    }

    /// GETs `path` with curl and parses the JSON body.
    pub fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let (status, body) = self.get(path);
        let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        (status, json)
    }

    /// Path of the hub's database.
    pub fn db(&self) -> PathBuf {
        self.dir.join("data").join("hub.db")
    }

    /// A read-only view of the database.
    pub fn reader(&self) -> Reader {
        Reader::open(&self.db()).expect("reader")
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        self.proc.is_running()
    }

    /// SIGKILL, no chance to flush.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// SIGTERM; returns whether it exited within `timeout`.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        self.proc.stop(nix::sys::signal::Signal::SIGTERM, timeout)
    }

    /// SIGTERM; returns its exit status if it exited within `timeout` (it
    /// is killed after that).
    pub fn terminate_status(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.proc
            .stop_status(nix::sys::signal::Signal::SIGTERM, timeout)
    }

    /// Kills it and starts it again with the same config and port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

/// An agent process.
pub struct Agent {
    proc: Proc,
    config: PathBuf,
}

impl Agent {
    /// Starts an agent for `device` against the hub's port, with `body`
    /// (TOML: batch settings and sources) appended to its config.
    pub fn start(dir: &Path, device: &str, mqtt_port: u16, body: &str) -> Agent {
        std::fs::create_dir_all(dir).expect("agent dir");
        let config = dir.join("agent.toml");
        let text = format!(
            "device_id = \"{device}\"\ndata_dir = \"{}\"\n\n[mqtt]\nhost = \"127.0.0.1\"\nport = {mqtt_port}\nreconnect_min_ms = 100\nreconnect_max_ms = 1000\n\n{body}\n",
            dir.join("data").display()
        );
        std::fs::write(&config, text).expect("write agent config");
        let mut proc = Proc::new(dir, "telltale-agent", "agent", &config);
        proc.spawn();
        Agent { proc, config }
    }

    /// Kills it, replaces `body_from` with `body_to` in its config and
    /// starts it again.
    pub fn restart_with(&mut self, body_from: &str, body_to: &str) {
        self.kill();
        let text = std::fs::read_to_string(&self.config).expect("config");
        std::fs::write(&self.config, text.replace(body_from, body_to)).expect("config");
        self.proc.spawn();
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// SIGTERM; returns whether it exited within `timeout`.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        self.proc.stop(nix::sys::signal::Signal::SIGTERM, timeout)
    }
}

/// The numeric values stored for (device, metric), in seq order, with times.
pub fn values(reader: &Reader, device: &str, metric: &str) -> Vec<(i64, f64)> {
    let mut out = vec![];
    let mut after = 0;
    loop {
        let page = reader.readings_after(after, 10_000).expect("read");
        let Some(last) = page.last() else { break };
        after = last.seq;
        for r in page {
            if &*r.device == device && &*r.metric == metric {
                if let telltale_store::StoredValue::Num(v) = r.value {
                    out.push((r.ts_ms, v));
                }
            }
        }
    }
    out
}

/// A connected MQTT client (rumqttc) with its event loop polled in the
/// background.
pub async fn mqtt_client(port: u16, id: &str) -> rumqttc::AsyncClient {
    let mut opts = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
    opts.set_max_packet_size(512 * 1024, 512 * 1024);
    opts.set_keep_alive(Duration::from_secs(10));
    let (client, mut events) = rumqttc::AsyncClient::new(opts, 1000);
    tokio::spawn(async move {
        loop {
            if events.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    client
}

/// GETs a URL with curl (`extra` are more curl arguments); returns the
/// status and the body.
pub fn curl(url: &str, extra: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "--max-time", "60"])
        .args(extra)
        .arg(url)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// A streaming GET with curl -N: lines arrive on the returned receiver as
/// curl prints them. Dropping the stream kills curl.
pub struct CurlStream {
    child: Child,
    /// Lines of the body, as they come.
    pub lines: std::sync::mpsc::Receiver<String>,
}

impl CurlStream {
    /// Starts `curl -sN` on `url` with extra arguments (headers).
    pub fn start(url: &str, extra: &[&str]) -> CurlStream {
        let mut child = Command::new("curl")
            .args(["-sN"])
            .args(extra)
            .arg(url)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("curl runs");
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        CurlStream { child, lines: rx }
    }

    /// The next line within `timeout`.
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }
}

impl CurlStream {
    /// Parsed NDJSON events (or SSE `data:` lines) until `stop` says so or
    /// `timeout` passes.
    pub fn events_until(
        &self,
        timeout: Duration,
        mut stop: impl FnMut(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let end = Instant::now() + timeout;
        let mut out = Vec::new();
        while Instant::now() < end && !stop(&out) {
            let Some(line) = self.next_line(Duration::from_millis(200)) else {
                continue;
            };
            let json = line.strip_prefix("data: ").unwrap_or(&line);
            if json.starts_with('{') {
                out.push(serde_json::from_str(json).expect("event json"));
            }
        }
        out
    }
}

/// The seq of a resourceVersion (tests only: clients treat it as opaque).
pub fn seq_of(rv: &str) -> u64 {
    rv.rsplit_once('-')
        .and_then(|(_, s)| s.parse().ok())
        .expect("resourceVersion")
}

impl Drop for CurlStream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Publishes one JSON SenML pack for `device` with mosquitto_pub (QoS 1).
pub fn mosquitto_pub(port: u16, device: &str, payload: &str) {
    let ok = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1"])
        .args(["-t", &format!("telltale/v1/devices/{device}/telemetry")])
        .args(["-m", payload])
        .status()
        .expect("mosquitto_pub runs");
    assert!(ok.success(), "mosquitto_pub failed");
}

impl Hub {
    /// The process id of the running hub, if it runs (to read its
    /// /proc/<pid>/status, for example).
    pub fn pid(&self) -> Option<u32> {
        self.proc.child.as_ref().map(Child::id)
    }
}

/// A WebSocket to the hub's `/v1/ws` (tokio-tungstenite as the client).
pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/v1/ws` on the hub.
pub async fn ws_connect(hub: &Hub) -> Socket {
    let url = format!("ws://127.0.0.1:{}/v1/ws", hub.http_port);
    tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket")
        .0
}

/// The next JSON text message on a socket, within 15 s (pings are answered
/// by the client library as it reads).
pub async fn ws_next(ws: &mut Socket) -> serde_json::Value {
    use futures_util::StreamExt;
    loop {
        let m = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("a message in time")
            .expect("socket open")
            .expect("frame");
        if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
            return serde_json::from_str(&t).expect("json");
        }
    }
}
