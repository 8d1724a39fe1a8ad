//! Harness for the end-to-end tests: starts the real `telltale-hub` and
//! `telltale-agent` binaries on loopback ports in a temp folder, kills and
//! restarts them, and reads the hub's SQLite file. The client tests run the
//! `telltale` binary ([`CLIENT`]) against them.
//!
//! The binaries must be built first (`cargo build --workspace --bins`, which
//! the README's test command does).
#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use telltale_store::Reader;

/// The laptop client's binary (the `client/` package), as [`bin`] finds it.
pub const CLIENT: &str = "telltale";

/// Path of a workspace binary (`telltale-hub`, `telltale-agent`,
/// [`CLIENT`]), beside the test executable's folder.
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
    /// Its MQTT TLS port on 127.0.0.1, when it has one.
    pub mqtts_port: Option<u16>,
    /// Whether its HTTP listener speaks TLS.
    pub https: bool,
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
        // And the broker's to its own table.
        let mqtt_listen = format!("listen = \"127.0.0.1:{mqtt_port}\"\n");
        let extra = if extra.contains("[broker]\n") {
            extra.replace("[broker]\n", &format!("[broker]\n{mqtt_listen}"))
        } else {
            format!("{extra}\n[broker]\n{mqtt_listen}")
        };
        let text = format!("data_dir = \"{}\"\n{extra}\n", dir.join("data").display());
        std::fs::write(&config, text).expect("write config");
        Hub {
            proc: Proc::new(dir, "telltale-hub", "hub", &config),
            dir: dir.to_path_buf(),
            mqtt_port,
            http_port,
            mqtts_port: None,
            https: false,
        }
    }

    /// A hub (not started: see [`Hub::launch`]) with an MQTT TLS listener
    /// and, when `https`, HTTPS; its CA and server certificate made by
    /// `telltale-hub tls init` in `data/tls`. `extra` as for [`Hub::start`].
    pub fn configure_tls(dir: &Path, extra: &str, https: bool) -> Hub {
        let extra = if https {
            if extra.contains("[api]\n") {
                format!("{extra}\n[api.tls]\n")
            } else {
                format!("{extra}\n[api]\n[api.tls]\n")
            }
        } else {
            extra.to_owned()
        };
        let mut hub = Hub::configure(dir, &extra);
        let port = free_port();
        let config = dir.join("hub.toml");
        let mut text = std::fs::read_to_string(&config).expect("config");
        text.push_str(&format!("[broker.tls]\nlisten = \"127.0.0.1:{port}\"\n"));
        std::fs::write(&config, text).expect("write config");
        hub.mqtts_port = Some(port);
        hub.https = https;
        let out = hub.cli(&["tls", "init"]);
        assert!(out.status.success(), "tls init: {out:?}");
        hub
    }

    /// Starts a hub made by [`Hub::configure_tls`] and waits for its ports.
    pub fn launch(&mut self) {
        self.spawn();
    }

    /// Runs `telltale-hub ARGS --config hub.toml` (a command-line command
    /// beside the hub) and returns its output.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(bin("telltale-hub"))
            .args(args)
            .arg("--config")
            .arg(self.dir.join("hub.toml"))
            .output()
            .expect("telltale-hub runs")
    }

    /// `telltale-hub device add ID --out {dir}/devices`: the device's
    /// credentials and files.
    pub fn add_device(&self, id: &str) -> DeviceCreds {
        let out_dir = self.dir.join("devices");
        let out = self.cli(&[
            "device",
            "add",
            id,
            "--out",
            out_dir.to_str().expect("utf-8"),
        ]);
        assert!(out.status.success(), "device add: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}:")))
                .map(|v| v.trim().to_owned())
                .unwrap_or_else(|| panic!("no {name} in {text}"))
        };
        DeviceCreds {
            id: id.to_owned(),
            tenant: field("tenant"),
            password: field("password"),
            cert: out_dir.join(format!("{id}.pem")),
            key: out_dir.join(format!("{id}.key")),
            ca: out_dir.join("ca.pem"),
            snippet: text,
        }
    }

    /// Sends `sig` to the hub.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = self.pid().expect("hub runs");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).expect("signal");
    }

    /// The CA certificate made by `tls init`.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("data").join("tls").join("ca.pem")
    }

    fn spawn(&mut self) {
        self.proc.spawn();
        let up = wait_until(Duration::from_secs(15), || {
            let ports = [Some(self.mqtt_port), Some(self.http_port), self.mqtts_port];
            ports.iter().flatten().all(|p| {
                let addr = SocketAddr::from(([127, 0, 0, 1], *p));
                TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
            })
        });
        assert!(up, "hub did not listen; see {}", self.dir.display());
    }

    /// `http://127.0.0.1:PORT{path}` (`https://localhost:PORT{path}` when
    /// it speaks HTTPS).
    pub fn url(&self, path: &str) -> String {
        if self.https {
            format!("https://localhost:{}{path}", self.http_port)
        } else {
            format!("http://127.0.0.1:{}{path}", self.http_port)
        }
    }

    /// GETs `path` with curl (trusting the hub's CA when it speaks HTTPS);
    /// returns the status and the body.
    pub fn get(&self, path: &str) -> (u16, String) {
        if self.https {
            let ca = self.ca();
            curl(&self.url(path), &["--cacert", ca.to_str().expect("utf-8")])
        } else {
            curl(&self.url(path), &[])
        }
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

/// A device's credentials from `telltale-hub device add`.
#[derive(Debug, Clone)]
pub struct DeviceCreds {
    /// The device id (also its MQTT client id and user name).
    pub id: String,
    /// Its tenant: the `O` of its certificate.
    pub tenant: String,
    /// Its password.
    pub password: String,
    /// Its client certificate.
    pub cert: PathBuf,
    /// The certificate's key.
    pub key: PathBuf,
    /// The hub's CA certificate.
    pub ca: PathBuf,
    /// All that `device add` printed (the agent config snippet included).
    pub snippet: String,
}

impl DeviceCreds {
    /// `/tenants/{tenant}/telltale/v1`: the device's topic prefix.
    pub fn prefix(&self) -> String {
        format!("/tenants/{}/telltale/v1", self.tenant)
    }

    /// `{prefix}/devices/{device}/{kind}` under this device's tenant.
    pub fn topic(&self, device: &str, kind: &str) -> String {
        format!("{}/devices/{device}/{kind}", self.prefix())
    }

    /// mosquitto_pub / mosquitto_sub arguments: TLS to `port` with the CA,
    /// this device's certificate, and its id, user name and password.
    pub fn mosquitto_args(&self, port: u16) -> Vec<String> {
        self.mosquitto_args_as(port, &self.id, &self.password)
    }

    /// As [`DeviceCreds::mosquitto_args`] with another user (= client id)
    /// and password.
    pub fn mosquitto_args_as(&self, port: u16, user: &str, password: &str) -> Vec<String> {
        let p = |p: &Path| p.to_str().expect("utf-8").to_owned();
        vec![
            "-h".into(),
            "localhost".into(),
            "-p".into(),
            port.to_string(),
            "--cafile".into(),
            p(&self.ca),
            "--cert".into(),
            p(&self.cert),
            "--key".into(),
            p(&self.key),
            "-i".into(),
            user.into(),
            "-u".into(),
            user.into(),
            "-P".into(),
            password.into(),
        ]
    }
}

/// Runs mosquitto_pub with `args` (connection) publishing `payload` on
/// `topic` at QoS 1; returns whether it exited 0 (connected, published and
/// had its PUBACK) within 10 s.
pub fn mosquitto_pub_with(args: &[String], topic: &str, payload: &str) -> bool {
    let mut child = Command::new("mosquitto_pub")
        .args(args)
        .args(["-q", "1", "-t", topic, "-m", payload])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_pub runs");
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if let Ok(Some(st)) = child.try_wait() {
            return st.success();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// A running mosquitto_sub (`-v`: each line is `topic payload`); killed
/// when dropped.
pub struct MqttSub {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    /// Lines read so far.
    seen: Vec<String>,
}

impl MqttSub {
    /// Subscribes at QoS 1 to `topics` with the connection `args`.
    pub fn start(args: &[String], topics: &[&str]) -> MqttSub {
        use std::io::BufRead;
        let mut cmd = Command::new("mosquitto_sub");
        cmd.args(args).args(["-q", "1", "-v"]);
        for t in topics {
            cmd.args(["-t", t]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub runs");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        MqttSub {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Every line read until now (waiting up to `wait` for more).
    pub fn lines(&mut self, wait: Duration) -> &[String] {
        let end = Instant::now() + wait;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => break,
            }
        }
        &self.seen
    }

    /// Waits up to `timeout` for a line containing `needle`.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.seen.iter().any(|l| l.contains(needle)) {
                return true;
            }
            if let Ok(l) = self.lines.recv_timeout(Duration::from_millis(50)) {
                self.seen.push(l);
            }
        }
        self.seen.iter().any(|l| l.contains(needle))
    }

    /// Whether mosquitto_sub has exited (its connection is gone: it does
    /// not reconnect), waiting up to `timeout`.
    pub fn exited_within(&mut self, timeout: Duration) -> bool {
        wait_until(timeout, || matches!(self.child.try_wait(), Ok(Some(_))))
    }
}

impl Drop for MqttSub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
/// The value of one sample in a Prometheus text page: `sample` is the
/// metric name with its labels as written (`telltale_rejects_total{reason="x"}`).
pub fn metric_in(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

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

impl Hub {
    /// Path of the hub's config file.
    pub fn config(&self) -> PathBuf {
        self.dir.join("hub.toml")
    }

    /// Runs `telltale-hub token create` against this hub's config (as an
    /// operator would while it runs); returns the token's text.
    pub fn token(&self, name: &str, scope: &str) -> String {
        let out = Command::new(bin("telltale-hub"))
            .args(["token", "create", "--name", name, "--scope", scope])
            .arg("--config")
            .arg(self.config())
            .env("RUST_LOG", "warn")
            .output()
            .expect("telltale-hub token create runs");
        assert!(
            out.status.success(),
            "token create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_owned();
        assert!(token.starts_with("tlt_"), "{token}");
        token
    }

    /// Creates a token and waits until the hub uses it (it reads its
    /// credentials every 500 ms).
    pub fn token_live(&self, name: &str, scope: &str) -> String {
        let token = self.token(name, scope);
        let live = wait_until(Duration::from_secs(10), || {
            self.get("/v1/whoami").0 == 401
                && self
                    .get_auth("/v1/whoami", &token)
                    .1
                    .contains(&format!("\"name\":\"{name}\""))
        });
        assert!(live, "the hub did not take token {name} in time");
        token
    }

    /// Runs `telltale-hub token revoke` against this hub's config.
    pub fn revoke(&self, id_or_name: &str) {
        let out = Command::new(bin("telltale-hub"))
            .args(["token", "revoke", id_or_name])
            .arg("--config")
            .arg(self.config())
            .env("RUST_LOG", "warn")
            .output()
            .expect("telltale-hub token revoke runs");
        assert!(
            out.status.success(),
            "token revoke failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// POSTs the JSON `body` to `path` with curl; returns status and body.
    pub fn post_json(&self, path: &str, body: &str) -> (u16, String) {
        curl(
            &self.url(path),
            &[
                "-X",
                "POST",
                "-H",
                "content-type: application/json",
                "-d",
                body,
            ],
        )
    }

    /// GETs `path` with curl and a Bearer token; returns status and body.
    pub fn get_auth(&self, path: &str, token: &str) -> (u16, String) {
        let header = format!("Authorization: Bearer {token}");
        curl(&self.url(path), &["-H", &header])
    }

    /// Everything the hub logged so far (every start), as text.
    pub fn log(&self) -> String {
        let mut text = String::new();
        for n in 1..=self.proc.starts {
            let path = self.dir.join(format!("hub-{n}.log"));
            text.push_str(&std::fs::read_to_string(path).unwrap_or_default());
        }
        text
    }

    /// Resident memory of the hub process now, KiB (VmRSS).
    pub fn rss_kib(&self) -> u64 {
        let pid = self.pid().expect("the hub runs");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
}

/// Opens `/v1/ws` on the hub with extra request headers (an
/// `Authorization`, an `Origin`) and a query (`?access_token=...`); the
/// handshake's error as it is (a refusal is `Error::Http` with the answer).
pub async fn ws_connect_with(
    hub: &Hub,
    query: &str,
    headers: &[(&str, &str)],
) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!("ws://127.0.0.1:{}/v1/ws{query}", hub.http_port);
    let mut req = url.into_client_request()?;
    for (k, v) in headers {
        req.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes())
                .expect("header name"),
            v.parse().expect("header value"),
        );
    }
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}
