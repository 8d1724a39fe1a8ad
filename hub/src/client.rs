//! `telltale-hub client`: the command-line client a person runs from a
//! laptop against a running hub. Lists (`devices`, `latest`) are HTTP GETs;
//! `watch` and `command` go over the WebSocket `/v1/ws`; `ack` is an HTTP
//! POST. Each subcommand is one function below; what they print is built by
//! pure functions (tables, event lines, command steps) tested at the end.
//!
//! Exit codes: 0 done (a command that succeeded), 1 a command that failed,
//! expired or timed out (or a watch that fell out of the hub's history),
//! 2 the hub refused the request (its problem's `detail` is printed),
//! 3 the hub cannot be reached.

use clap::{Args, Subcommand, ValueEnum};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use reqwest::Url;
use serde_json::{json, Map, Value};
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};

/// `telltale-hub client ...`.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 done; 1 a command failed, expired or timed out; 2 the hub refused the request (or a bad argument); 3 the hub cannot be reached."
)]
pub struct ClientArgs {
    /// The hub's HTTP address (its `[api] listen`).
    #[arg(
        long,
        global = true,
        env = "TELLTALE_HUB",
        default_value = "http://127.0.0.1:8080",
        value_name = "URL"
    )]
    hub: String,
    /// The API token to send (`telltale-hub token create`); not needed by
    /// a hub that runs open on loopback (the demo).
    #[arg(
        long,
        global = true,
        env = "TELLTALE_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    token: Option<String>,
    #[command(subcommand)]
    command: ClientCommand,
}

#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// The devices the hub has heard from: presence, last seen, agent,
    /// labels.
    Devices {
        /// Print the hub's JSON answer as it is (one line per page).
        #[arg(long)]
        json: bool,
    },
    /// The newest value of each (device, metric).
    Latest {
        /// Only these devices: ids and globs, comma separated.
        #[arg(long, value_name = "D")]
        device: Option<String>,
        /// Only these metrics: names and globs, comma separated.
        #[arg(long, value_name = "M")]
        metric: Option<String>,
        /// Print the hub's JSON answer as it is (one line per page).
        #[arg(long)]
        json: bool,
    },
    /// Print the events of a collection as they happen, until Ctrl-C.
    ///
    /// A lost connection is resumed where it stopped: nothing missed,
    /// nothing twice. Times are UTC.
    Watch(WatchArgs),
    /// Send a command to a device and follow it to its end.
    ///
    /// Exits 0 when it succeeded, 1 when it failed, expired or timed out,
    /// 2 when the hub refused it, 3 when the hub cannot be reached.
    Command(CommandArgs),
    /// Acknowledge an open alert.
    Ack {
        /// The alert's id.
        alert: u64,
        /// Who acknowledges [default: $USER; the hub records "api" without
        /// one].
        #[arg(long, value_name = "NAME")]
        by: Option<String>,
        /// A note for whoever looks at the alert next.
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
    },
}

/// The collections a watch can follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Resource {
    Readings,
    Latest,
    Devices,
    Alerts,
    Commands,
}

impl Resource {
    fn name(self) -> &'static str {
        match self {
            Resource::Readings => "readings",
            Resource::Latest => "latest",
            Resource::Devices => "devices",
            Resource::Alerts => "alerts",
            Resource::Commands => "commands",
        }
    }
}

#[derive(Debug, Args)]
struct WatchArgs {
    /// What to watch.
    resource: Resource,
    /// A filter expression, e.g. 'metric == "temp" and value > 30' (see
    /// docs/api.md#filters).
    #[arg(long, value_name = "EXPR")]
    filter: Option<String>,
    /// Only these devices: ids and globs, comma separated.
    #[arg(long, value_name = "D")]
    device: Option<String>,
    /// Only these metrics: names and globs, comma separated.
    #[arg(long, value_name = "M")]
    metric: Option<String>,
    /// Alerts: only these severities, comma separated.
    #[arg(long, value_name = "S")]
    severity: Option<String>,
    /// Alerts and commands: only these states, comma separated.
    #[arg(long, value_name = "S")]
    state: Option<String>,
    /// Latest, devices, alerts, commands: the current items first (as
    /// ADDED), then their changes.
    #[arg(long)]
    initial: bool,
    /// Start after this resourceVersion (from an earlier event or list)
    /// instead of now.
    #[arg(long, value_name = "RV")]
    from: Option<String>,
    /// Print each event as the hub's JSON, one per line, BOOKMARKs included.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct CommandArgs {
    /// The device's id.
    device: String,
    /// The command: ping, set_interval, read_now, get_config, or one the
    /// device's agent configures.
    name: String,
    /// A parameter; VALUE is taken as JSON if it parses (5, true, "x",
    /// [1,2]), else as a string. Repeat for more.
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    param: Vec<(String, Value)>,
    /// All parameters as one JSON object; --param entries go over it.
    #[arg(long, value_name = "JSON", value_parser = parse_params)]
    params: Option<Map<String, Value>>,
    /// Seconds the command may take, from now to its result (1 to 86400;
    /// the hub's default is 30).
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
    /// Print the queued command and exit without waiting for its end.
    #[arg(long)]
    no_wait: bool,
}

/// Why a subcommand stopped short; each maps to an exit code.
#[derive(Debug, PartialEq)]
enum Fail {
    /// The command failed, expired or timed out; a watch lost its place
    /// (exit 1).
    Failed(String),
    /// The hub refused the request, or the request is malformed (exit 2).
    Refused(String),
    /// The hub cannot be reached (exit 3).
    Unreachable(String),
    /// Standard output was closed (a pipe's reader went away): stop quietly.
    Stdout,
}

impl Fail {
    fn code(&self) -> i32 {
        match self {
            Fail::Failed(_) => 1,
            Fail::Refused(_) => 2,
            Fail::Unreachable(_) => 3,
            Fail::Stdout => 0,
        }
    }
}

/// Runs a client subcommand; returns the process's exit code.
pub fn run(args: ClientArgs) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(dispatch(args)) {
        Ok(code) => code,
        Err(fail) => {
            match &fail {
                Fail::Failed(m) | Fail::Refused(m) | Fail::Unreachable(m) => {
                    eprintln!("error: {m}")
                }
                Fail::Stdout => {}
            }
            fail.code()
        }
    }
}

async fn dispatch(args: ClientArgs) -> Result<i32, Fail> {
    let hub = Hub::new(&args.hub, args.token.as_deref())?;
    match args.command {
        ClientCommand::Devices { json } => devices(&hub, json).await,
        ClientCommand::Latest {
            device,
            metric,
            json,
        } => latest(&hub, device, metric, json).await,
        ClientCommand::Watch(w) => {
            tokio::select! {
                r = watch(&hub, w) => r,
                _ = tokio::signal::ctrl_c() => Ok(0),
            }
        }
        ClientCommand::Command(c) => command(&hub, c).await,
        ClientCommand::Ack { alert, by, note } => {
            let by = by.or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()));
            ack(&hub, alert, by, note).await
        }
    }
}

// ---------------------------------------------------------------- the hub

/// Where the hub is, and an HTTP client for it.
struct Hub {
    /// The `--hub` URL, without a trailing `/`.
    base: Url,
    /// Reused for every request (one connection pool); sends the token.
    http: reqwest::Client,
    /// `Bearer <token>`, for the WebSocket's handshake.
    authorization: Option<reqwest::header::HeaderValue>,
}

/// How long a connection to the hub may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Hub {
    fn new(text: &str, token: Option<&str>) -> Result<Hub, Fail> {
        let text = if text.contains("://") {
            text.to_owned()
        } else {
            format!("http://{text}")
        };
        let base = Url::parse(&text)
            .map_err(|e| Fail::Refused(format!("--hub {text:?} is not a URL: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(Fail::Refused(format!(
                "--hub {text:?} must be an http:// URL such as http://127.0.0.1:8080"
            )));
        }
        let authorization = match token.map(str::trim).filter(|t| !t.is_empty()) {
            None => None,
            Some(t) => {
                let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {t}"))
                    .map_err(|_| {
                        Fail::Refused("the token must be visible ASCII (tlt_...)".into())
                    })?;
                v.set_sensitive(true);
                Some(v)
            }
        };
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(v) = &authorization {
            headers.insert(reqwest::header::AUTHORIZATION, v.clone());
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(Duration::from_secs(60))
            // The WebSocket goes straight to the hub; so does HTTP.
            .no_proxy()
            .user_agent(concat!("telltale-hub-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Fail::Failed(format!("cannot set up HTTP: {}", cause(&e))))?;
        Ok(Hub {
            base,
            http,
            authorization,
        })
    }

    /// The URL of `path` (which starts with `/`) under the base URL.
    fn url(&self, path: &str) -> Url {
        let mut u = self.base.clone();
        let joined = format!("{}{path}", u.path().trim_end_matches('/'));
        u.set_path(&joined);
        u.set_query(None);
        u
    }

    /// `ws://` (or `wss://`) URL of the WebSocket.
    fn ws_url(&self) -> Result<Url, Fail> {
        let mut u = self.url("/v1/ws");
        if u.scheme() == "https" {
            return Err(Fail::Refused(
                "the client speaks WebSocket only over plain http:// (no TLS): use an http:// --hub, or a tunnel".into(),
            ));
        }
        u.set_scheme("ws")
            .map_err(|()| Fail::Refused(format!("cannot make a ws:// URL of {u}")))?;
        Ok(u)
    }

    /// GETs `path?query`; returns the body and its JSON.
    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<(String, Value), Fail> {
        let mut url = self.url(path);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let res = self.http.get(url.clone()).send().await;
        self.answer(&url, res).await
    }

    /// POSTs `body` as JSON to `path`; returns the answer's JSON.
    async fn post(&self, path: &str, body: &Value) -> Result<Value, Fail> {
        let url = self.url(path);
        let res = self
            .http
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await;
        Ok(self.answer(&url, res).await?.1)
    }

    async fn answer(
        &self,
        url: &Url,
        res: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<(String, Value), Fail> {
        let res = res.map_err(|e| match e.is_timeout() {
            true => self.unreachable("no answer in time"),
            false => self.unreachable(&cause(&e)),
        })?;
        let status = res.status();
        let text = res.text().await.map_err(|e| self.unreachable(&cause(&e)))?;
        let json: Option<Value> = serde_json::from_str(&text).ok();
        if status.is_success() {
            return json
                .map(|v| (text, v))
                .ok_or_else(|| Fail::Failed(format!("{url} answered something that is not JSON")));
        }
        if let Some(p) = json.as_ref().filter(|v| v.get("detail").is_some()) {
            return Err(Fail::Refused(problem_text(p)));
        }
        // Not the hub's problem+json: a proxy in front of a hub that is
        // down, or another server on that port.
        if matches!(status.as_u16(), 502..=504) {
            return Err(self.unreachable(&format!("{url} answered {status}")));
        }
        let snippet: String = text.chars().take(200).collect();
        Err(Fail::Refused(format!("{url} answered {status}: {snippet}")))
    }

    fn unreachable(&self, why: &str) -> Fail {
        let base = self.base.as_str().trim_end_matches('/');
        Fail::Unreachable(format!("cannot reach the hub at {base}: {why}"))
    }

    /// Every page of a collection; each page's body goes to `pages`.
    async fn list(
        &self,
        path: &str,
        query: &[(&str, &str)],
        pages: &mut Vec<String>,
    ) -> Result<Vec<Value>, Fail> {
        let mut items = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut q = query.to_vec();
            if let Some(c) = &next {
                q.push(("continue", c));
            }
            let (text, page) = self.get(path, &q).await?;
            pages.push(text);
            if let Some(a) = page["items"].as_array() {
                items.extend(a.iter().cloned());
            }
            match page["continue"].as_str() {
                Some(c) => next = Some(c.to_owned()),
                None => return Ok(items),
            }
        }
    }

    /// Opens the WebSocket.
    async fn open(&self) -> Result<Socket, Fail> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = self.ws_url()?;
        let mut req = url
            .as_str()
            .into_client_request()
            .map_err(|e| Fail::Refused(format!("cannot make a WebSocket request of {url}: {e}")))?;
        if let Some(v) = &self.authorization {
            if let Ok(v) = tungstenite::http::HeaderValue::from_bytes(v.as_bytes()) {
                req.headers_mut()
                    .insert(tungstenite::http::header::AUTHORIZATION, v);
            }
        }
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(req)).await {
            Err(_) => Err(self.unreachable("no answer in 10 s")),
            Ok(Ok((ws, _))) => Ok(ws),
            Ok(Err(tungstenite::Error::Http(res))) => {
                let problem = res
                    .body()
                    .as_deref()
                    .and_then(|b| serde_json::from_slice::<Value>(b).ok())
                    .filter(|v| v.get("detail").is_some());
                Err(match problem {
                    Some(p) => Fail::Refused(problem_text(&p)),
                    None => Fail::Refused(format!(
                        "{url} is not the hub's WebSocket: it answered HTTP {}",
                        res.status()
                    )),
                })
            }
            Ok(Err(e)) => Err(self.unreachable(&cause(&e))),
        }
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket as the watch and command loops see it: the real socket, or
/// channels in tests.
trait Conn:
    Sink<Message, Error = tungstenite::Error>
    + Stream<Item = Result<Message, tungstenite::Error>>
    + Unpin
{
}

impl<T> Conn for T where
    T: Sink<Message, Error = tungstenite::Error>
        + Stream<Item = Result<Message, tungstenite::Error>>
        + Unpin
{
}

/// What went wrong at the bottom of an error (reqwest's own text names
/// the URL and little else): `Connection refused (os error 111)`.
fn cause(e: &dyn std::error::Error) -> String {
    let mut last = e;
    while let Some(s) = last.source() {
        last = s;
    }
    last.to_string()
}

/// A problem+json object as one line for a person: its detail and what it
/// names.
fn problem_text(p: &Value) -> String {
    let mut text = p["detail"]
        .as_str()
        .or_else(|| p["title"].as_str())
        .unwrap_or("the hub refused the request")
        .to_owned();
    let mut names = Vec::new();
    if let Some(f) = p["field"].as_str() {
        names.push(format!("field {f}"));
    }
    if let Some(param) = p["param"].as_str() {
        match p["position"].as_u64() {
            Some(at) => names.push(format!("parameter {param}, at byte {at}")),
            None => names.push(format!("parameter {param}")),
        }
    }
    if !names.is_empty() {
        text.push_str(&format!(" ({})", names.join("; ")));
    }
    text
}

/// Writes one line to standard output.
fn out(line: &str) -> Result<(), Fail> {
    let mut o = std::io::stdout().lock();
    writeln!(o, "{line}")
        .and_then(|()| o.flush())
        .map_err(|_| Fail::Stdout)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

// ----------------------------------------------------------- subcommands

/// `client devices`.
async fn devices(hub: &Hub, json: bool) -> Result<i32, Fail> {
    let mut pages = Vec::new();
    let items = hub.list("/v1/devices", &[], &mut pages).await?;
    if json {
        for p in pages {
            out(p.trim_end())?;
        }
    } else if items.is_empty() {
        out("no devices: the hub has not heard from any")?;
    } else {
        out(devices_table(&items, now_ms()).trim_end())?;
    }
    Ok(0)
}

/// `client latest`.
async fn latest(
    hub: &Hub,
    device: Option<String>,
    metric: Option<String>,
    json: bool,
) -> Result<i32, Fail> {
    let mut query = Vec::new();
    if let Some(d) = &device {
        query.push(("device", d.as_str()));
    }
    if let Some(m) = &metric {
        query.push(("metric", m.as_str()));
    }
    let mut pages = Vec::new();
    let items = hub.list("/v1/latest", &query, &mut pages).await?;
    if json {
        for p in pages {
            out(p.trim_end())?;
        }
    } else if items.is_empty() {
        out("no values")?;
    } else {
        out(latest_table(&items, now_ms()).trim_end())?;
    }
    Ok(0)
}

/// `client ack`.
async fn ack(hub: &Hub, alert: u64, by: Option<String>, note: Option<String>) -> Result<i32, Fail> {
    let mut body = Map::new();
    if let Some(b) = by {
        body.insert("by".into(), b.into());
    }
    if let Some(n) = note {
        body.insert("note".into(), n.into());
    }
    let a = hub
        .post(&format!("/v1/alerts/{alert}/ack"), &Value::Object(body))
        .await?;
    out(&ack_text(&a))?;
    Ok(0)
}

// ----------------------------------------------------------------- watch

/// Reconnection delays: doubling from `MIN` to `MAX`.
#[derive(Debug)]
struct Backoff {
    /// Failed attempts since the last success.
    failures: u32,
}

impl Backoff {
    const MIN: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(30);

    /// The delay before the next attempt (without jitter).
    fn delay(failures: u32) -> Duration {
        Self::MIN
            .saturating_mul(1u32 << failures.min(10))
            .min(Self::MAX)
    }

    /// The next delay, with up to 20% taken off so that many clients of a
    /// restarted hub do not come back all at once.
    fn next(&mut self) -> Duration {
        let d = Self::delay(self.failures);
        self.failures = self.failures.saturating_add(1);
        d.mul_f64(1.0 - rand::random::<f64>() * 0.2)
    }
}

/// How a watch on one connection ended.
#[derive(Debug)]
enum Ended {
    /// The connection is gone or silent: connect again and resume.
    Lost(String),
    /// Connecting again failed: try again later.
    Down(String),
    /// The hub is busy (429): try again later.
    Busy(String),
}

/// Heartbeat asked of the hub: a BOOKMARK at least this often, so that a
/// resume starts near now and a silent watch is noticed.
const HEARTBEAT_SECS: u64 = 15;
/// A watch with no event for this long has ended at the hub (its lifetime
/// cap, `[api] max_stream_secs`): watch again from the last resourceVersion.
const WATCH_SILENCE: Duration = Duration::from_secs(2 * HEARTBEAT_SECS + 5);
/// The hub ends a watch at its lifetime cap (an hour by default) with a
/// BOOKMARK like any other; the watch is handed over to a new one well
/// before, so that the cap never shows as a silence.
const REWATCH_EVERY: Duration = Duration::from_secs(600);
/// A socket with no frame at all for this long (the hub pings every 20 s)
/// is dead.
const SOCKET_SILENCE: Duration = Duration::from_secs(45);
/// How long the hub may take to answer a message.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a watch is: what it asks for and where to resume.
#[derive(Debug)]
struct WatchState {
    args: WatchArgs,
    /// The last resourceVersion seen (events and bookmarks): a resume
    /// starts strictly after it.
    rv: Option<String>,
    /// Initial events are still coming (their versions are not in order:
    /// a resume before their end starts them again).
    initial_pending: bool,
    /// Next message id on the socket.
    next_id: u64,
    /// The hub took the watch once: a 410 from now on means events were
    /// missed, not a bad `--from`.
    started: bool,
}

impl WatchState {
    /// The `watch` message from where the watch stands.
    fn message(&mut self) -> (u64, Value) {
        let id = self.next_id;
        self.next_id += 1;
        let a = &self.args;
        let mut m = json!({
            "id": id,
            "type": "watch",
            "resource": a.resource.name(),
            "heartbeatSeconds": HEARTBEAT_SECS,
        });
        for (k, v) in [
            ("filter", &a.filter),
            ("device", &a.device),
            ("metric", &a.metric),
            ("severity", &a.severity),
            ("state", &a.state),
        ] {
            if let Some(v) = v {
                m[k] = v.clone().into();
            }
        }
        match &self.rv {
            Some(rv) if !self.initial_pending => m["resourceVersion"] = rv.clone().into(),
            _ if self.initial_pending => m["sendInitialEvents"] = true.into(),
            _ => {}
        }
        (id, m)
    }

    /// Takes one event: remembers its version; returns what to print.
    fn event(&mut self, ev: &Value, raw: &str) -> Result<Option<String>, Fail> {
        let kind = ev["type"].as_str().unwrap_or("");
        if kind == "ERROR" {
            let p = &ev["object"];
            let text = problem_text(p);
            return Err(if p["status"].as_u64() == Some(410) {
                Fail::Failed(format!(
                    "{text}: events were missed; start again (with --initial for a state collection)"
                ))
            } else {
                Fail::Unreachable(text)
            });
        }
        if let Some(rv) = ev["resourceVersion"].as_str() {
            if !self.initial_pending || kind == "BOOKMARK" {
                self.rv = Some(rv.to_owned());
            }
        }
        if kind == "BOOKMARK" && ev["object"]["initialEventsEnd"] == true {
            self.initial_pending = false;
        }
        Ok(if self.args.json {
            Some(raw.to_owned())
        } else {
            event_line(self.args.resource, ev, now_ms())
        })
    }
}

/// `client watch`.
async fn watch(hub: &Hub, args: WatchArgs) -> Result<i32, Fail> {
    let resource = args.resource;
    let mut st = WatchState {
        rv: args.from.clone(),
        initial_pending: args.initial && args.from.is_none(),
        args,
        next_id: 1,
        started: false,
    };
    if st.rv.is_none() && !st.initial_pending {
        // "From now", pinned to a version so that a reconnect before the
        // first event misses nothing either.
        let path = format!("/v1/{}", resource.name());
        let (_, list) = hub.get(&path, &[("limit", "1")]).await?;
        st.rv = list["resourceVersion"].as_str().map(str::to_owned);
    }
    let mut backoff = Backoff { failures: 0 };
    let mut connected_once = false;
    loop {
        let ended = match hub.open().await {
            Ok(mut ws) => {
                connected_once = true;
                watch_on(&mut ws, &mut st, &mut backoff).await?
            }
            Err(Fail::Unreachable(m)) if connected_once => Ended::Down(m),
            Err(f) => return Err(f),
        };
        let wait = backoff.next();
        let secs = wait.as_secs_f64();
        match ended {
            Ended::Lost(why) => eprintln!(
                "note: lost the connection to the hub ({why}); reconnecting in {secs:.1} s"
            ),
            Ended::Down(why) | Ended::Busy(why) => {
                eprintln!("note: {why}; trying again in {secs:.1} s")
            }
        }
        tokio::time::sleep(wait).await;
    }
}

/// Runs the watch on one socket until it is lost.
async fn watch_on(
    ws: &mut impl Conn,
    st: &mut WatchState,
    backoff: &mut Backoff,
) -> Result<Ended, Fail> {
    // A reconnect (said once, at the first confirmation on this socket).
    let mut resumed = backoff.failures > 0;
    let (mut current, msg) = st.message();
    if let Err(e) = ws.send(Message::text(msg.to_string())).await {
        return Ok(Ended::Lost(e.to_string()));
    }
    let mut confirmed = false;
    let mut asked = Instant::now();
    let mut last_event = Instant::now();
    let mut last_frame = Instant::now();
    loop {
        let deadline = if !confirmed {
            asked + ANSWER_TIMEOUT
        } else if st.initial_pending {
            (last_event + WATCH_SILENCE).min(last_frame + SOCKET_SILENCE)
        } else {
            (last_event + WATCH_SILENCE)
                .min(last_frame + SOCKET_SILENCE)
                .min(asked + REWATCH_EVERY)
        };
        let frame = tokio::select! {
            f = ws.next() => match f {
                Some(f) => Some(f),
                None => return Ok(Ended::Lost("the connection closed".into())),
            },
            _ = tokio::time::sleep_until(deadline) => None,
        };
        let Some(frame) = frame else {
            if !confirmed || last_frame.elapsed() >= SOCKET_SILENCE {
                return Ok(Ended::Lost("no answer".into()));
            }
            // The socket lives but the watch is due for its handover, or
            // went quiet (the hub ended it): watch again from where it
            // stood. Events the old watch still sends are ignored (another
            // id), and the new one starts after the last version taken.
            let unwatch = json!({"id": st.next_id, "type": "unwatch", "watch": current});
            st.next_id += 1;
            let (id, msg) = st.message();
            for m in [unwatch, msg] {
                if let Err(e) = ws.send(Message::text(m.to_string())).await {
                    return Ok(Ended::Lost(e.to_string()));
                }
            }
            (current, confirmed, asked) = (id, false, Instant::now());
            continue;
        };
        let text = match frame {
            Err(e) => return Ok(Ended::Lost(e.to_string())),
            Ok(Message::Close(_)) => {
                return Ok(Ended::Lost("the hub closed the connection".into()))
            }
            Ok(Message::Text(t)) => t,
            Ok(_) => {
                last_frame = Instant::now();
                continue;
            }
        };
        last_frame = Instant::now();
        let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        if v["id"].as_u64() != Some(current) {
            continue;
        }
        match v["type"].as_str() {
            Some("result") if v["success"] == true => {
                confirmed = true;
                last_event = Instant::now();
                let name = st.args.resource.name();
                match (&st.rv, st.initial_pending) {
                    _ if st.started && !resumed => {}
                    (Some(rv), false) if resumed => {
                        eprintln!("note: reconnected; resuming after {rv}")
                    }
                    _ if resumed => eprintln!("note: reconnected; the current state comes again"),
                    (Some(rv), false) => eprintln!("watching {name} after {rv}"),
                    _ => eprintln!("watching {name}, current state first"),
                }
                st.started = true;
                resumed = false;
                backoff.failures = 0;
            }
            Some("result") => {
                let p = &v["error"];
                let text = problem_text(p);
                return match p["status"].as_u64() {
                    Some(410) if !st.started => Err(Fail::Refused(text)),
                    Some(410) => Err(Fail::Failed(format!(
                        "{text}: events were missed; start the watch again"
                    ))),
                    Some(429) => Ok(Ended::Busy(text)),
                    Some(500..) => Ok(Ended::Lost(text)),
                    _ => Err(Fail::Refused(text)),
                };
            }
            Some("event") => {
                last_event = Instant::now();
                let raw =
                    raw_event(text.as_str()).map_or_else(|| v["event"].to_string(), str::to_owned);
                match st.event(&v["event"], &raw) {
                    Ok(Some(line)) => out(&line)?,
                    Ok(None) => {}
                    // A stream error other than 410: watch again.
                    Err(Fail::Unreachable(why)) => return Ok(Ended::Lost(why)),
                    Err(f) => return Err(f),
                }
            }
            _ => {}
        }
    }
}

/// The event object of an `event` frame as the hub wrote it
/// (`{"id":N,"type":"event","event":{...}}`), so `--json` prints the hub's
/// own text; `None` when the frame is shaped otherwise.
fn raw_event(frame: &str) -> Option<&str> {
    let start = frame.find(",\"event\":")? + ",\"event\":".len();
    let inner = frame.get(start..)?.trim_end().strip_suffix('}')?;
    let parsed: Value = serde_json::from_str(inner).ok()?;
    let whole: Value = serde_json::from_str(frame).ok()?;
    (whole["event"] == parsed).then_some(inner)
}

// --------------------------------------------------------------- command

/// States in the order a command goes through them.
const STEPS: &[(&str, &str)] = &[
    ("queued", "createdAt"),
    ("sent", "sentAt"),
    ("delivered", "deliveredAt"),
];
const FINAL: &[&str] = &["succeeded", "failed", "expired", "timeout"];

/// `client command`.
async fn command(hub: &Hub, a: CommandArgs) -> Result<i32, Fail> {
    let mut params = a.params.unwrap_or_default();
    for (k, v) in a.param {
        params.insert(k, v);
    }
    // Made once: a resend after a reconnect finds the same command.
    let key = format!(
        "cli-{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    );
    let mut body = json!({
        "type": "command",
        "device": a.device,
        "name": a.name,
        "params": params,
        "idempotencyKey": key,
    });
    if let Some(t) = a.timeout {
        body["timeoutSeconds"] = t.into();
    }
    // The hub ends the command at its deadline; give it some slack to say so.
    let give_up =
        Instant::now() + Duration::from_secs(a.timeout.unwrap_or(30)) + Duration::from_secs(20);
    let mut printed: Vec<String> = Vec::new();
    let mut command_id: Option<u64> = None;
    let mut backoff = Backoff { failures: 0 };
    let mut next_id = 1u64;
    let mut connected_once = false;
    loop {
        let why = match hub.open().await {
            Ok(mut ws) => {
                connected_once = true;
                backoff.failures = 0;
                body["id"] = next_id.into();
                next_id += 1;
                match follow_command(
                    &mut ws,
                    &body,
                    give_up,
                    a.no_wait,
                    &mut printed,
                    &mut command_id,
                )
                .await?
                {
                    Ok(code) => return Ok(code),
                    Err(why) => format!("lost the connection to the hub ({why})"),
                }
            }
            Err(Fail::Unreachable(m)) if connected_once => m,
            Err(f) => return Err(f),
        };
        let wait = backoff.next();
        if Instant::now() + wait >= give_up {
            return Err(Fail::Unreachable(match command_id {
                Some(id) => format!("{why}; command {id} may still run: see GET /v1/commands/{id}"),
                None => format!("{why}; the hub may have taken the command: see GET /v1/commands"),
            }));
        }
        eprintln!(
            "note: {why}; sending again in {:.1} s (same idempotency key)",
            wait.as_secs_f64()
        );
        tokio::time::sleep(wait).await;
    }
}

/// Sends the command on one socket and prints its steps. `Ok(Ok(code))`:
/// done; `Ok(Err(why))`: the connection was lost.
async fn follow_command(
    ws: &mut impl Conn,
    body: &Value,
    give_up: Instant,
    no_wait: bool,
    printed: &mut Vec<String>,
    command_id: &mut Option<u64>,
) -> Result<Result<i32, String>, Fail> {
    let id = body["id"].as_u64();
    if let Err(e) = ws.send(Message::text(body.to_string())).await {
        return Ok(Err(e.to_string()));
    }
    let answer_by = Instant::now() + ANSWER_TIMEOUT;
    let mut answered = false;
    let mut last_frame = Instant::now();
    loop {
        let deadline = if answered {
            give_up.min(last_frame + SOCKET_SILENCE)
        } else {
            answer_by.min(give_up)
        };
        let frame = tokio::select! {
            f = ws.next() => f,
            _ = tokio::time::sleep_until(deadline) => {
                if Instant::now() >= give_up {
                    return Err(Fail::Failed(format!(
                        "the hub said nothing more about command {} after its deadline",
                        command_id.map_or("?".into(), |i| i.to_string())
                    )));
                }
                return Ok(Err("no answer".into()));
            }
        };
        let text = match frame {
            None => return Ok(Err("the connection closed".into())),
            Some(Err(e)) => return Ok(Err(e.to_string())),
            Some(Ok(Message::Close(_))) => return Ok(Err("the hub closed the connection".into())),
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(_)) => {
                last_frame = Instant::now();
                continue;
            }
        };
        last_frame = Instant::now();
        let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        if v["id"].as_u64() != id {
            continue;
        }
        let cmd = match v["type"].as_str() {
            Some("result") if v["success"] == true => {
                answered = true;
                let cmd = &v["command"];
                if command_id.is_none() {
                    *command_id = cmd["id"].as_u64();
                    out(&command_header(cmd))?;
                }
                if no_wait {
                    for line in command_steps(cmd, printed) {
                        out(&line)?;
                    }
                    return Ok(Ok(0));
                }
                cmd
            }
            Some("result") => {
                let p = &v["error"];
                return match p["status"].as_u64() {
                    Some(500..) | Some(429) => Ok(Err(problem_text(p))),
                    _ => Err(Fail::Refused(problem_text(p))),
                };
            }
            Some("event") => &v["event"]["object"],
            _ => continue,
        };
        for line in command_steps(cmd, printed) {
            out(&line)?;
        }
        if let Some((code, lines)) = command_end(cmd) {
            for line in lines {
                out(&line)?;
            }
            return Ok(Ok(code));
        }
    }
}

// ------------------------------------------------------------ formatting

/// `key=value` of `--param`: the value as JSON if it parses, else a string.
fn parse_param(s: &str) -> Result<(String, Value), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    if k.is_empty() {
        return Err(format!("{s:?} has no key before ="));
    }
    let v = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()));
    Ok((k.to_owned(), v))
}

/// `--params`: a JSON object.
fn parse_params(s: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str(s) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("--params must be a JSON object such as {\"seconds\": 5}".into()),
        Err(e) => Err(format!("--params is not JSON: {e}")),
    }
}

/// Rows under a header, columns padded to their widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut text = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for r in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                let pad = width[i] - c.chars().count();
                line.push_str(c);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// ms since the epoch of the hub's RFC 3339 times.
fn parse_time(t: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339(t).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_millis() as i64)
}

/// How long ago `then_ms` was, for a person: `3s ago`, `5m ago`.
fn ago(now_ms: i64, then_ms: i64) -> String {
    let d = now_ms - then_ms;
    let span = |ms: i64| {
        let s = ms / 1000;
        match s {
            0..=59 => format!("{s}s"),
            60..=3599 => format!("{}m", s / 60),
            3600..=172_799 => format!("{}h", s / 3600),
            _ => format!("{}d", s / 86_400),
        }
    };
    if d < -2000 {
        // The hub's clock is ahead of this one.
        format!("in {}", span(-d))
    } else if d < 1000 {
        "just now".into()
    } else {
        format!("{} ago", span(d))
    }
}

/// A value as text: numbers and booleans as JSON, strings bare.
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// A value and its unit, if it has one.
fn value_unit(item: &Value) -> String {
    match item["unit"].as_str() {
        Some(u) if !u.is_empty() => format!("{} {u}", value_text(&item["value"])),
        _ => value_text(&item["value"]),
    }
}

/// A string field, or `-`.
fn text_or_dash(v: &Value) -> String {
    v.as_str().unwrap_or("-").to_owned()
}

/// `k=v,k=v`, or `-`.
fn labels_text(v: &Value) -> String {
    match v.as_object() {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| format!("{k}={}", value_text(v)))
            .collect::<Vec<_>>()
            .join(","),
        _ => "-".into(),
    }
}

fn presence(online: &Value) -> &'static str {
    match online.as_bool() {
        Some(true) => "online",
        Some(false) => "offline",
        None => "unknown",
    }
}

/// The `devices` table.
fn devices_table(items: &[Value], now_ms: i64) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|d| {
            vec![
                text_or_dash(&d["id"]),
                presence(&d["online"]).into(),
                d["lastSeen"]
                    .as_str()
                    .and_then(parse_time)
                    .map_or("never".into(), |t| ago(now_ms, t)),
                text_or_dash(&d["agent"]),
                labels_text(&d["labels"]),
            ]
        })
        .collect();
    table(&["DEVICE", "STATE", "LAST SEEN", "AGENT", "LABELS"], &rows)
}

/// The `latest` table.
fn latest_table(items: &[Value], now_ms: i64) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|l| {
            let time = text_or_dash(&l["time"]);
            let when = match parse_time(&time) {
                Some(t) => format!("{time} ({})", ago(now_ms, t)),
                None => time,
            };
            vec![
                text_or_dash(&l["device"]),
                text_or_dash(&l["metric"]),
                value_unit(l),
                when,
            ]
        })
        .collect();
    table(&["DEVICE", "METRIC", "VALUE", "TIME"], &rows)
}

/// The time of day of an RFC 3339 time (`12:00:01.250`), as the hub wrote
/// it (UTC).
fn clock(t: &str) -> &str {
    let Some((_, time)) = t.split_once('T') else {
        return t;
    };
    time.trim_end_matches('Z')
}

/// The newest of an item's times, for its event line.
fn newest_time<'a>(item: &'a Value, fields: &[&str]) -> Option<&'a str> {
    fields
        .iter()
        .filter_map(|f| item[*f].as_str())
        .max_by_key(|t| parse_time(t).unwrap_or(0))
}

/// One event for a person; `None` for a BOOKMARK.
fn event_line(resource: Resource, ev: &Value, now_ms: i64) -> Option<String> {
    let kind = ev["type"].as_str().unwrap_or("?");
    if kind == "BOOKMARK" {
        return None;
    }
    let o = &ev["object"];
    let (time, what) = match resource {
        Resource::Readings | Resource::Latest => (
            o["time"].as_str(),
            format!(
                "{} {} {}",
                text_or_dash(&o["device"]),
                text_or_dash(&o["metric"]),
                value_unit(o)
            ),
        ),
        Resource::Devices => {
            let mut what = format!(
                "device {} {}",
                text_or_dash(&o["id"]),
                presence(&o["online"])
            );
            if let Some(a) = o["agent"].as_str() {
                what.push_str(&format!(" {a}"));
            }
            if o["labels"].as_object().is_some_and(|m| !m.is_empty()) {
                what.push_str(&format!(" {}", labels_text(&o["labels"])));
            }
            (o["lastSeen"].as_str(), what)
        }
        Resource::Alerts => {
            let mut what = format!(
                "alert {} {} {} {} {}: {}",
                value_text(&o["id"]),
                text_or_dash(&o["state"]),
                text_or_dash(&o["severity"]),
                text_or_dash(&o["rule"]),
                text_or_dash(&o["device"]),
                o["summary"].as_str().unwrap_or(""),
            );
            if o["acknowledged"] == true {
                what.push_str(&format!(
                    " (acknowledged by {})",
                    text_or_dash(&o["ack"]["by"])
                ));
            }
            (o["updatedAt"].as_str(), what.trim_end().to_owned())
        }
        Resource::Commands => {
            let mut what = format!(
                "command {} {} {} {}",
                value_text(&o["id"]),
                text_or_dash(&o["device"]),
                text_or_dash(&o["name"]),
                text_or_dash(&o["state"]),
            );
            if let Some(r) = o["reason"].as_str() {
                what.push_str(&format!(": {r}"));
            } else if !o["output"].is_null() {
                what.push_str(&format!(" {}", o["output"]));
            }
            (
                newest_time(o, &["createdAt", "sentAt", "deliveredAt", "finishedAt"]),
                what,
            )
        }
    };
    let time = match time {
        Some(t) => clock(t).to_owned(),
        None => clock(&rfc3339(now_ms)).to_owned(),
    };
    Some(format!("{time} {kind} {what}"))
}

/// RFC 3339 text of a time in ms since the epoch (UTC, ms).
fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// The first line about a command the hub took.
fn command_header(cmd: &Value) -> String {
    format!(
        "command {} {} on {}, deadline {}",
        value_text(&cmd["id"]),
        text_or_dash(&cmd["name"]),
        text_or_dash(&cmd["device"]),
        text_or_dash(&cmd["deadline"]),
    )
}

/// The steps of `cmd` not printed yet, in lifecycle order, each with its
/// time; `printed` remembers them (a step shows once even when the hub
/// sends the command again after a reconnect).
fn command_steps(cmd: &Value, printed: &mut Vec<String>) -> Vec<String> {
    let state = cmd["state"].as_str().unwrap_or("");
    let mut steps: Vec<(&str, &str)> = STEPS
        .iter()
        .filter_map(|(s, field)| cmd[*field].as_str().map(|t| (*s, t)))
        .collect();
    if FINAL.contains(&state) {
        steps.push((state, cmd["finishedAt"].as_str().unwrap_or("")));
    } else if !state.is_empty() && !steps.iter().any(|(s, _)| *s == state) {
        // A state this client does not know: show it anyway.
        steps.push((state, ""));
    }
    let mut lines = Vec::new();
    for (s, t) in steps {
        if printed.iter().any(|p| p == s) {
            continue;
        }
        printed.push(s.to_owned());
        lines.push(
            format!("{} {s}", if t.is_empty() { "-" } else { clock(t) })
                .trim_start()
                .to_owned(),
        );
    }
    lines
}

/// When `cmd` has ended: the exit code and the lines that close it (the
/// output, pretty, or the reason).
fn command_end(cmd: &Value) -> Option<(i32, Vec<String>)> {
    let state = cmd["state"].as_str()?;
    if !FINAL.contains(&state) {
        return None;
    }
    let mut lines = Vec::new();
    if !cmd["output"].is_null() {
        lines.push(serde_json::to_string_pretty(&cmd["output"]).unwrap_or_default());
    }
    if let Some(r) = cmd["reason"].as_str() {
        lines.push(format!("reason: {r}"));
    } else if state != "succeeded" {
        lines.push(match state {
            "expired" => "reason: the device did not take it before its deadline".into(),
            "timeout" => "reason: the device took it but sent no result before its deadline".into(),
            _ => format!("reason: {state}"),
        });
    }
    Some((if state == "succeeded" { 0 } else { 1 }, lines))
}

/// What `ack` prints.
fn ack_text(a: &Value) -> String {
    format!(
        "alert {} acknowledged by {} at {}: {} {} {} {}: {}",
        value_text(&a["id"]),
        text_or_dash(&a["ack"]["by"]),
        text_or_dash(&a["ack"]["at"]),
        text_or_dash(&a["state"]),
        text_or_dash(&a["severity"]),
        text_or_dash(&a["rule"]),
        text_or_dash(&a["device"]),
        a["summary"].as_str().unwrap_or(""),
    )
    .trim_end()
    .to_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const NOW: &str = "2025-06-01T12:00:10.000Z";

    fn now() -> i64 {
        parse_time(NOW).unwrap()
    }

    #[test]
    fn params_take_json_else_strings() {
        let cases: &[(&str, Option<(&str, Value)>)] = &[
            ("seconds=5", Some(("seconds", json!(5)))),
            ("on=true", Some(("on", json!(true)))),
            ("name=kitchen", Some(("name", json!("kitchen")))),
            ("quoted=\"5\"", Some(("quoted", json!("5")))),
            ("list=[1,2]", Some(("list", json!([1, 2])))),
            ("empty=", Some(("empty", json!("")))),
            ("eq=a=b", Some(("eq", json!("a=b")))),
            ("nokey", None),
            ("=5", None),
        ];
        for (input, want) in cases {
            let got = parse_param(input);
            match want {
                Some((k, v)) => assert_eq!(got, Ok(((*k).to_owned(), v.clone())), "{input}"),
                None => assert!(got.is_err(), "{input}"),
            }
        }
        assert!(parse_params("{\"a\":1}").is_ok());
        assert!(parse_params("[1]").is_err());
        assert!(parse_params("{").is_err());
    }

    #[test]
    fn relative_times() {
        let n = now();
        for (then, want) in [
            (n, "just now"),
            (n - 999, "just now"),
            (n - 3_000, "3s ago"),
            (n - 59_999, "59s ago"),
            (n - 60_000, "1m ago"),
            (n - 3_600_000, "1h ago"),
            (n - 47 * 3_600_000, "47h ago"),
            (n - 3 * 86_400_000, "3d ago"),
            (n + 1_000, "just now"),
            (n + 5_000, "in 5s"),
        ] {
            assert_eq!(ago(n, then), want, "{}", n - then);
        }
    }

    #[test]
    fn tables_pad_columns() {
        let t = table(
            &["A", "LONG"],
            &[vec!["xyz".into(), "1".into()], vec!["é".into(), "".into()]],
        );
        assert_eq!(t, "A    LONG\nxyz  1\né\n");
    }

    #[test]
    fn devices_table_reads_like_a_list() {
        let items = vec![
            json!({"id":"demo-freezer","online":true,"lastSeen":"2025-06-01T12:00:07.000Z","firstSeen":null,"agent":"telltale-agent/0.1.0","labels":{"room":"kitchen","site":"demo"}}),
            json!({"id":"c1","online":null,"lastSeen":"2025-06-01T11:55:00.000Z","firstSeen":null,"agent":null,"labels":{}}),
            json!({"id":"gone","online":false,"lastSeen":null,"firstSeen":null,"agent":null,"labels":{}}),
        ];
        assert_eq!(
            devices_table(&items, now()),
            "\
DEVICE        STATE    LAST SEEN  AGENT                 LABELS
demo-freezer  online   3s ago     telltale-agent/0.1.0  room=kitchen,site=demo
c1            unknown  5m ago     -                     -
gone          offline  never      -                     -
"
        );
    }

    #[test]
    fn latest_table_shows_value_unit_and_age() {
        let items = vec![
            json!({"device":"demo-freezer","metric":"temp","unit":"Cel","value":-18.2,"time":"2025-06-01T12:00:01.250Z","readingSeq":3}),
            json!({"device":"demo-freezer","metric":"door","unit":null,"value":false,"time":"2025-06-01T11:00:10.000Z","readingSeq":4}),
        ];
        assert_eq!(
            latest_table(&items, now()),
            "\
DEVICE        METRIC  VALUE      TIME
demo-freezer  temp    -18.2 Cel  2025-06-01T12:00:01.250Z (8s ago)
demo-freezer  door    false      2025-06-01T11:00:10.000Z (1h ago)
"
        );
    }

    #[test]
    fn event_lines() {
        let cases: &[(Resource, Value, Option<&str>)] = &[
            (
                Resource::Readings,
                json!({"type":"ADDED","resourceVersion":"e-1","object":{"seq":1,"device":"demo-freezer","metric":"temp","unit":"Cel","value":-18.2,"time":"2025-06-01T12:00:01.250Z"}}),
                Some("12:00:01.250 ADDED demo-freezer temp -18.2 Cel"),
            ),
            (
                Resource::Readings,
                json!({"type":"ADDED","resourceVersion":"e-2","object":{"seq":2,"device":"d","metric":"state","unit":null,"value":"open","time":"2025-06-01T12:00:02.000Z"}}),
                Some("12:00:02.000 ADDED d state open"),
            ),
            (
                Resource::Latest,
                json!({"type":"MODIFIED","resourceVersion":"e-3","object":{"device":"d","metric":"door","unit":null,"value":true,"time":"2025-06-01T12:00:03.000Z","readingSeq":9}}),
                Some("12:00:03.000 MODIFIED d door true"),
            ),
            (
                Resource::Readings,
                json!({"type":"BOOKMARK","resourceVersion":"e-4","object":{"kind":"Bookmark"}}),
                None,
            ),
            (
                Resource::Alerts,
                json!({"type":"MODIFIED","resourceVersion":"e-5","object":{"id":3,"rule":"freezer-warm","device":"demo-freezer","metric":"temp","state":"firing","severity":"major","summary":"summary","updatedAt":"2025-06-01T12:00:01.250Z","acknowledged":false,"ack":null}}),
                Some("12:00:01.250 MODIFIED alert 3 firing major freezer-warm demo-freezer: summary"),
            ),
            (
                Resource::Alerts,
                json!({"type":"MODIFIED","resourceVersion":"e-6","object":{"id":3,"rule":"r","device":"d","state":"firing","severity":"minor","summary":"s","updatedAt":"2025-06-01T12:00:05.000Z","acknowledged":true,"ack":{"by":"ann","at":"x","note":null}}}),
                Some("12:00:05.000 MODIFIED alert 3 firing minor r d: s (acknowledged by ann)"),
            ),
            (
                Resource::Devices,
                json!({"type":"ADDED","resourceVersion":"e-7","object":{"id":"demo-freezer","online":true,"lastSeen":"2025-06-01T12:00:07.000Z","agent":"telltale-agent/0.1.0","labels":{"room":"kitchen"}}}),
                Some("12:00:07.000 ADDED device demo-freezer online telltale-agent/0.1.0 room=kitchen"),
            ),
            (
                Resource::Commands,
                json!({"type":"MODIFIED","resourceVersion":"e-8","object":{"id":7,"device":"d","name":"ping","state":"succeeded","createdAt":"2025-06-01T12:00:01.000Z","sentAt":"2025-06-01T12:00:01.100Z","deliveredAt":"2025-06-01T12:00:01.200Z","finishedAt":"2025-06-01T12:00:01.300Z","output":{"pong":true},"reason":null}}),
                Some("12:00:01.300 MODIFIED command 7 d ping succeeded {\"pong\":true}"),
            ),
            (
                Resource::Commands,
                json!({"type":"MODIFIED","resourceVersion":"e-9","object":{"id":8,"device":"d","name":"x","state":"expired","createdAt":"2025-06-01T12:00:01.000Z","sentAt":null,"deliveredAt":null,"finishedAt":"2025-06-01T12:00:31.000Z","output":null,"reason":"deadline passed"}}),
                Some("12:00:31.000 MODIFIED command 8 d x expired: deadline passed"),
            ),
        ];
        for (resource, ev, want) in cases {
            assert_eq!(event_line(*resource, ev, now()).as_deref(), *want, "{ev}");
        }
    }

    fn watch_args(json: bool, initial: bool) -> WatchArgs {
        WatchArgs {
            resource: Resource::Latest,
            filter: Some("value > 1".into()),
            device: None,
            metric: Some("temp".into()),
            severity: None,
            state: None,
            initial,
            from: None,
            json,
        }
    }

    #[test]
    fn a_watch_resumes_after_the_last_version_it_saw() {
        let mut st = WatchState {
            args: watch_args(false, false),
            rv: Some("e-10".into()),
            initial_pending: false,
            next_id: 1,
            started: false,
        };
        let (id, m) = st.message();
        assert_eq!(id, 1);
        assert_eq!(
            m,
            json!({"id":1,"type":"watch","resource":"latest","heartbeatSeconds":15,"filter":"value > 1","metric":"temp","resourceVersion":"e-10"})
        );
        let ev = json!({"type":"MODIFIED","resourceVersion":"e-12","object":{"device":"d","metric":"temp","unit":null,"value":2,"time":"2025-06-01T12:00:03.000Z"}});
        assert!(st.event(&ev, "raw").unwrap().is_some());
        let bm = json!({"type":"BOOKMARK","resourceVersion":"e-15","object":{"kind":"Bookmark"}});
        assert_eq!(st.event(&bm, "raw").unwrap(), None);
        let (id, m) = st.message();
        assert_eq!((id, &m["resourceVersion"]), (2, &json!("e-15")));
        let gone =
            json!({"type":"ERROR","object":{"status":410,"detail":"fell behind","code":"expired"}});
        assert!(matches!(st.event(&gone, ""), Err(Fail::Failed(_))));
    }

    #[test]
    fn initial_events_start_again_until_their_bookmark() {
        let mut st = WatchState {
            args: watch_args(true, true),
            rv: None,
            initial_pending: true,
            next_id: 1,
            started: false,
        };
        assert_eq!(st.message().1["sendInitialEvents"], true);
        let added = json!({"type":"ADDED","resourceVersion":"e-40","object":{}});
        assert_eq!(st.event(&added, "RAW").unwrap().as_deref(), Some("RAW"));
        // Initial items are not in version order: no resume from them.
        assert_eq!(st.rv, None);
        assert_eq!(st.message().1["sendInitialEvents"], true);
        let end =
            json!({"type":"BOOKMARK","resourceVersion":"e-50","object":{"initialEventsEnd":true}});
        assert_eq!(st.event(&end, "B").unwrap().as_deref(), Some("B"));
        let m = st.message().1;
        assert_eq!(m["resourceVersion"], "e-50");
        assert!(m.get("sendInitialEvents").is_none());
    }

    /// The hub's side of a socket driven by channels.
    struct Fake {
        from_hub: tokio::sync::mpsc::UnboundedReceiver<Message>,
        to_hub: tokio::sync::mpsc::UnboundedSender<Message>,
    }

    impl Stream for Fake {
        type Item = Result<Message, tungstenite::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            self.from_hub.poll_recv(cx).map(|m| m.map(Ok))
        }
    }

    impl Sink<Message> for Fake {
        type Error = tungstenite::Error;
        fn poll_ready(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn start_send(self: std::pin::Pin<&mut Self>, m: Message) -> Result<(), Self::Error> {
            self.to_hub
                .send(m)
                .map_err(|_| tungstenite::Error::ConnectionClosed)
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_close(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// A watch run on a fake socket, and the hub's ends of it.
    struct Session {
        task: tokio::task::JoinHandle<(Result<Ended, Fail>, WatchState)>,
        hub_tx: tokio::sync::mpsc::UnboundedSender<Message>,
        hub_rx: tokio::sync::mpsc::UnboundedReceiver<Message>,
    }

    impl Session {
        fn start(rv: &str, failures: u32) -> Session {
            let (hub_tx, from_hub) = tokio::sync::mpsc::unbounded_channel();
            let (to_hub, hub_rx) = tokio::sync::mpsc::unbounded_channel();
            let mut st = WatchState {
                args: watch_args(false, false),
                rv: Some(rv.into()),
                initial_pending: false,
                next_id: 1,
                started: failures > 0,
            };
            let task = tokio::spawn(async move {
                let mut ws = Fake { from_hub, to_hub };
                let mut backoff = Backoff { failures };
                let r = watch_on(&mut ws, &mut st, &mut backoff).await;
                (r, st)
            });
            Session {
                task,
                hub_tx,
                hub_rx,
            }
        }

        /// The next message the client sent.
        async fn got(&mut self) -> Value {
            match self.hub_rx.recv().await {
                Some(Message::Text(t)) => serde_json::from_str(t.as_str()).unwrap(),
                other => panic!("{other:?}"),
            }
        }

        fn send(&self, v: Value) {
            self.hub_tx.send(Message::text(v.to_string())).unwrap();
        }

        fn bookmark(&self, id: u64, rv: &str) {
            self.send(json!({"id": id, "type": "event", "event": {"type": "BOOKMARK", "resourceVersion": rv, "object": {"kind": "Bookmark"}}}));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_watch_is_watched_again_from_the_last_version() {
        let mut s = Session::start("e-1", 0);
        let w = s.got().await;
        assert_eq!(
            (&w["id"], &w["resourceVersion"]),
            (&json!(1), &json!("e-1"))
        );
        s.send(json!({"id": 1, "type": "result", "success": true}));
        s.bookmark(1, "e-7");
        // The hub ended the watch (its lifetime cap): nothing more on it,
        // though the socket lives (pings).
        let t0 = Instant::now();
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(10)).await;
            s.hub_tx.send(Message::Ping(Vec::new().into())).unwrap();
        }
        let unwatch = s.got().await;
        assert_eq!(unwatch, json!({"id": 2, "type": "unwatch", "watch": 1}));
        let again = s.got().await;
        assert_eq!(
            (&again["id"], &again["resourceVersion"]),
            (&json!(3), &json!("e-7"))
        );
        assert!(t0.elapsed() >= WATCH_SILENCE, "{:?}", t0.elapsed());
        // The old watch's late events are not the new one's.
        s.bookmark(1, "e-99");
        s.send(json!({"id": 3, "type": "result", "success": true}));
        s.bookmark(3, "e-8");
        drop(s.hub_tx);
        let (r, st) = s.task.await.unwrap();
        assert!(matches!(r, Ok(Ended::Lost(_))), "{r:?}");
        assert_eq!(st.rv.as_deref(), Some("e-8"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_watch_is_handed_over_before_the_hubs_cap() {
        let mut s = Session::start("e-1", 0);
        s.got().await;
        s.send(json!({"id": 1, "type": "result", "success": true}));
        let t0 = Instant::now();
        let mut n = 1;
        // Heartbeats every 15 s: never quiet.
        let first = loop {
            tokio::select! {
                m = s.hub_rx.recv() => break m,
                _ = tokio::time::sleep(Duration::from_secs(HEARTBEAT_SECS)) => {
                    n += 1;
                    s.bookmark(1, &format!("e-{n}"));
                }
            }
        };
        let took = t0.elapsed();
        assert!(
            took >= REWATCH_EVERY && took < REWATCH_EVERY + Duration::from_secs(1),
            "{took:?}"
        );
        let Some(Message::Text(first)) = first else {
            panic!("{first:?}")
        };
        assert!(first.as_str().contains(r#""type":"unwatch""#), "{first}");
        let again = s.got().await;
        assert_eq!(again["type"], "watch");
        assert!(again.get("sendInitialEvents").is_none());
        let rv = again["resourceVersion"].as_str().unwrap().to_owned();
        assert!(
            rv == format!("e-{n}") || rv == format!("e-{}", n - 1),
            "{rv} {n}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_hub_is_left_and_a_410_on_resume_is_a_failure() {
        let mut s = Session::start("e-1", 0);
        s.got().await;
        s.send(json!({"id": 1, "type": "result", "success": true}));
        // Nothing at all: the watch is asked again, and unanswered.
        let (r, _) = s.task.await.unwrap();
        assert!(
            matches!(r, Ok(Ended::Lost(ref why)) if why == "no answer"),
            "{r:?}"
        );

        // A resume the hub can no longer serve: events were missed.
        let mut s = Session::start("e-1", 2);
        s.got().await;
        s.send(json!({"id": 1, "type": "result", "success": false, "error": {"status": 410, "code": "expired", "detail": "too old"}}));
        let (r, _) = s.task.await.unwrap();
        assert!(matches!(r, Err(Fail::Failed(_))), "{r:?}");

        // The same 410 for a --from on the first watch: a bad request.
        let mut s = Session::start("e-1", 0);
        s.got().await;
        s.send(json!({"id": 1, "type": "result", "success": false, "error": {"status": 410, "code": "expired", "detail": "too old"}}));
        let (r, _) = s.task.await.unwrap();
        assert_eq!(r.unwrap_err(), Fail::Refused("too old".into()));

        // 429: try later, not an error.
        let mut s = Session::start("e-1", 0);
        s.got().await;
        s.send(json!({"id": 1, "type": "result", "success": false, "error": {"status": 429, "detail": "at most 64 watches"}}));
        let (r, _) = s.task.await.unwrap();
        assert!(matches!(r, Ok(Ended::Busy(_))), "{r:?}");
    }

    #[test]
    fn raw_events_come_out_as_the_hub_wrote_them() {
        let frame = r#"{"id":1,"type":"event","event":{"type":"ADDED","resourceVersion":"e-1","object":{"event":1}}}"#;
        assert_eq!(
            raw_event(frame),
            Some(r#"{"type":"ADDED","resourceVersion":"e-1","object":{"event":1}}"#)
        );
        assert_eq!(raw_event(r#"{"id":1,"type":"result"}"#), None);
    }

    #[test]
    fn problems_name_what_is_wrong() {
        for (p, want) in [
            (
                json!({"detail":"expected a number at 7","code":"bad_filter","param":"filter","position":7}),
                "expected a number at 7 (parameter filter, at byte 7)",
            ),
            (
                json!({"detail":"timeoutSeconds must be from 1 to 86400","field":"timeoutSeconds"}),
                "timeoutSeconds must be from 1 to 86400 (field timeoutSeconds)",
            ),
            (
                json!({"detail":"no device \"nosuch\": the hub has not heard from it"}),
                "no device \"nosuch\": the hub has not heard from it",
            ),
            (json!({"title":"Not Found"}), "Not Found"),
        ] {
            assert_eq!(problem_text(&p), want);
        }
    }

    #[test]
    fn command_steps_print_once_in_order() {
        let mut printed = Vec::new();
        let queued = json!({"id":7,"state":"queued","createdAt":"2025-06-01T12:00:01.000Z","sentAt":null,"deliveredAt":null,"finishedAt":null,"output":null,"reason":null});
        assert_eq!(
            command_steps(&queued, &mut printed),
            ["12:00:01.000 queued"]
        );
        assert_eq!(command_end(&queued), None);
        // Sent and delivered arrive together (after a reconnect, say).
        let delivered = json!({"id":7,"state":"delivered","createdAt":"2025-06-01T12:00:01.000Z","sentAt":"2025-06-01T12:00:01.100Z","deliveredAt":"2025-06-01T12:00:01.200Z","finishedAt":null,"output":null,"reason":null});
        assert_eq!(
            command_steps(&delivered, &mut printed),
            ["12:00:01.100 sent", "12:00:01.200 delivered"]
        );
        assert!(command_steps(&delivered, &mut printed).is_empty());
        let done = json!({"id":7,"state":"succeeded","createdAt":"2025-06-01T12:00:01.000Z","sentAt":"2025-06-01T12:00:01.100Z","deliveredAt":"2025-06-01T12:00:01.200Z","finishedAt":"2025-06-01T12:00:01.300Z","output":{"pong":true},"reason":null});
        assert_eq!(
            command_steps(&done, &mut printed),
            ["12:00:01.300 succeeded"]
        );
        assert_eq!(
            command_end(&done),
            Some((0, vec!["{\n  \"pong\": true\n}".to_owned()]))
        );
    }

    #[test]
    fn command_ends() {
        for (state, output, reason, want) in [
            (
                "failed",
                json!(null),
                json!("no such command"),
                (1, vec!["reason: no such command"]),
            ),
            (
                "expired",
                json!(null),
                json!(null),
                (
                    1,
                    vec!["reason: the device did not take it before its deadline"],
                ),
            ),
            (
                "timeout",
                json!(null),
                json!("no result"),
                (1, vec!["reason: no result"]),
            ),
            ("succeeded", json!(null), json!(null), (0, vec![])),
            (
                "failed",
                json!({"code":3}),
                json!("bad"),
                (1, vec!["{\n  \"code\": 3\n}", "reason: bad"]),
            ),
        ] {
            let cmd = json!({"state": state, "output": output, "reason": reason});
            let want = (
                want.0,
                want.1.into_iter().map(str::to_owned).collect::<Vec<_>>(),
            );
            assert_eq!(command_end(&cmd), Some(want), "{state}");
        }
    }

    #[test]
    fn backoff_doubles_to_a_cap() {
        let got: Vec<u64> = (0..8)
            .map(|n| Backoff::delay(n).as_millis() as u64)
            .collect();
        assert_eq!(got, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        assert_eq!(Backoff::delay(u32::MAX), Backoff::MAX);
    }

    #[test]
    fn hub_urls() {
        let hub = Hub::new("http://gw.local:8080/", None).unwrap();
        assert_eq!(
            hub.url("/v1/devices").as_str(),
            "http://gw.local:8080/v1/devices"
        );
        assert_eq!(hub.ws_url().unwrap().as_str(), "ws://gw.local:8080/v1/ws");
        let proxied = Hub::new("http://gw.local/telltale", None).unwrap();
        assert_eq!(
            proxied.ws_url().unwrap().as_str(),
            "ws://gw.local/telltale/v1/ws"
        );
        let bare = Hub::new("127.0.0.1:9000", None).unwrap();
        assert_eq!(
            bare.url("/v1/latest").as_str(),
            "http://127.0.0.1:9000/v1/latest"
        );
        assert!(matches!(Hub::new("ftp://x", None), Err(Fail::Refused(_))));
        assert!(matches!(
            Hub::new("https://x", None).unwrap().ws_url(),
            Err(Fail::Refused(_))
        ));
    }

    #[test]
    fn ack_line() {
        let a = json!({"id":3,"rule":"freezer-warm","device":"demo-freezer","state":"firing","severity":"major","summary":"too warm","acknowledged":true,"ack":{"by":"ann","at":"2025-06-01T12:00:01.250Z","note":null}});
        assert_eq!(
            ack_text(&a),
            "alert 3 acknowledged by ann at 2025-06-01T12:00:01.250Z: firing major freezer-warm demo-freezer: too warm"
        );
    }
}
