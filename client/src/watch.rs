//! `telltale watch`: a watch over the WebSocket that prints each event and
//! survives lost connections and the hub's lifetime cap, resuming after
//! the last resourceVersion seen: nothing missed, nothing twice.

use crate::cli::WatchArgs;
use crate::fail::Fail;
use crate::http::Hub;
use crate::output::{event_line, now_ms, out, problem_text};
use crate::ws::{self, Backoff, Conn, ANSWER_TIMEOUT, SOCKET_SILENCE};
use futures_util::StreamExt;
use serde::de::IgnoredAny;
use serde_json::Value;
use std::time::Duration;
use telltale_types::{ClientMessage, List, Reply, ServerMessage, WatchEvent, WatchMessage};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// How a watch on one connection ended.
#[derive(Debug)]
pub enum Ended {
    /// The connection is gone or silent: connect again and resume.
    Lost(String),
    /// Connecting again failed: try again later.
    Down(String),
    /// The hub is busy (429): try again later.
    Busy(String),
}

/// Heartbeat asked of the hub: a BOOKMARK at least this often, so that a
/// resume starts near now and a silent watch is noticed.
pub const HEARTBEAT_SECS: u64 = 15;
/// A watch with no event for this long has ended at the hub (its lifetime
/// cap, `[api] max_stream_secs`): watch again from the last resourceVersion.
pub const WATCH_SILENCE: Duration = Duration::from_secs(2 * HEARTBEAT_SECS + 5);
/// The hub ends a watch at its lifetime cap (an hour by default) with a
/// BOOKMARK like any other; the watch is handed over to a new one well
/// before, so that the cap never shows as a silence.
pub const REWATCH_EVERY: Duration = Duration::from_secs(600);

/// Where a watch is: what it asks for and where to resume.
#[derive(Debug)]
pub struct WatchState {
    /// What the command line asked for.
    pub args: WatchArgs,
    /// The last resourceVersion seen (events and bookmarks): a resume
    /// starts strictly after it.
    pub rv: Option<String>,
    /// Initial events are still coming (their versions are not in order:
    /// a resume before their end starts them again).
    pub initial_pending: bool,
    /// Next message id on the socket.
    pub next_id: u64,
    /// The hub took the watch once: a 410 from now on means events were
    /// missed, not a bad `--from`.
    pub started: bool,
}

impl WatchState {
    /// The `watch` message from where the watch stands.
    pub fn message(&mut self) -> (u64, ClientMessage) {
        let id = self.next_id;
        self.next_id += 1;
        let a = &self.args;
        let mut m = WatchMessage::new(id, a.resource);
        m.heartbeat_seconds = Some(HEARTBEAT_SECS);
        m.filter.clone_from(&a.filter);
        m.device.clone_from(&a.device);
        m.metric.clone_from(&a.metric);
        m.severity.clone_from(&a.severity);
        m.state.clone_from(&a.state);
        match &self.rv {
            Some(rv) if !self.initial_pending => m.resource_version = Some(rv.clone()),
            _ if self.initial_pending => m.send_initial_events = Some(true),
            _ => {}
        }
        (id, ClientMessage::Watch(m))
    }

    /// Takes one event: remembers its version; returns what to print.
    pub fn event(&mut self, ev: &WatchEvent<Value>, raw: &str) -> Result<Option<String>, Fail> {
        if let WatchEvent::Error { object: p } = ev {
            let text = problem_text(p);
            return Err(if p.status == 410 {
                Fail::Failed(format!(
                    "{text}: events were missed; start again (with --initial for a state collection)"
                ))
            } else {
                Fail::Unreachable(text)
            });
        }
        let bookmark = match ev {
            WatchEvent::Bookmark { object, .. } => Some(object),
            _ => None,
        };
        if let Some(rv) = ev.resource_version() {
            if !self.initial_pending || bookmark.is_some() {
                self.rv = Some(rv.to_owned());
            }
        }
        if bookmark.is_some_and(|b| b.initial_events_end) {
            self.initial_pending = false;
        }
        Ok(if self.args.json {
            Some(raw.to_owned())
        } else {
            event_line(self.args.resource, ev, now_ms())
        })
    }
}

/// `telltale watch`.
pub async fn watch(hub: &Hub, args: WatchArgs) -> Result<i32, Fail> {
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
        let path = format!("/v1/{}", resource.as_str());
        let (_, list) = hub
            .get::<List<IgnoredAny>>(&path, &[("limit", "1")])
            .await?;
        st.rv = Some(list.resource_version);
    }
    let mut backoff = ws::backoff();
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
        let wait = ws::next_wait(&mut backoff);
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
pub async fn watch_on(
    ws: &mut impl Conn,
    st: &mut WatchState,
    backoff: &mut Backoff,
) -> Result<Ended, Fail> {
    // A reconnect (said once, at the first confirmation on this socket).
    let mut resumed = backoff.attempts() > 0;
    let (mut current, msg) = st.message();
    if let Err(e) = ws::send(ws, &msg).await {
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
            let unwatch = ClientMessage::Unwatch {
                id: st.next_id,
                watch: current,
            };
            st.next_id += 1;
            let (id, msg) = st.message();
            for m in [unwatch, msg] {
                if let Err(e) = ws::send(ws, &m).await {
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
        match ws::read(text.as_str()) {
            Some(ServerMessage::Result(Reply {
                id: Some(i),
                success: true,
                ..
            })) if i == current => {
                confirmed = true;
                last_event = Instant::now();
                let name = st.args.resource.as_str();
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
                backoff.reset();
            }
            Some(ServerMessage::Result(Reply {
                id: Some(i), error, ..
            })) if i == current => {
                let p = error.unwrap_or_default();
                let text = problem_text(&p);
                return match p.status {
                    410 if !st.started => Err(Fail::Refused(text)),
                    410 => Err(Fail::Failed(format!(
                        "{text}: events were missed; start the watch again"
                    ))),
                    429 => Ok(Ended::Busy(text)),
                    500.. => Ok(Ended::Lost(text)),
                    _ => Err(Fail::Refused(text)),
                };
            }
            Some(ServerMessage::Event { id, event }) if id == current => {
                last_event = Instant::now();
                let raw = raw_event(text.as_str()).map_or_else(
                    || serde_json::to_string(&event).unwrap_or_default(),
                    str::to_owned,
                );
                match st.event(&event, &raw) {
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
pub fn raw_event(frame: &str) -> Option<&str> {
    let start = frame.find(",\"event\":")? + ",\"event\":".len();
    let inner = frame.get(start..)?.trim_end().strip_suffix('}')?;
    let parsed: Value = serde_json::from_str(inner).ok()?;
    let whole: Value = serde_json::from_str(frame).ok()?;
    (whole["event"] == parsed).then_some(inner)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::cli::Resource;
    use futures_util::{Sink, Stream};
    use serde_json::json;
    use tokio_tungstenite::tungstenite;

    /// A message as the hub reads it.
    fn v(m: &ClientMessage) -> Value {
        serde_json::to_value(m).unwrap()
    }

    /// A watch event of a JSON sample.
    fn ev(v: Value) -> WatchEvent<Value> {
        serde_json::from_value(v).unwrap()
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
            v(&m),
            json!({"id":1,"type":"watch","resource":"latest","heartbeatSeconds":15,"filter":"value > 1","metric":"temp","resourceVersion":"e-10"})
        );
        let changed = ev(
            json!({"type":"MODIFIED","resourceVersion":"e-12","object":{"device":"d","metric":"temp","unit":null,"value":2,"time":"2025-06-01T12:00:03.000Z","readingSeq":12}}),
        );
        assert!(st.event(&changed, "raw").unwrap().is_some());
        let bm = ev(
            json!({"type":"BOOKMARK","resourceVersion":"e-15","object":{"kind":"Bookmark","resourceVersion":"e-15","initialEventsEnd":false}}),
        );
        assert_eq!(st.event(&bm, "raw").unwrap(), None);
        let (id, m) = st.message();
        assert_eq!((id, &v(&m)["resourceVersion"]), (2, &json!("e-15")));
        let gone = ev(
            json!({"type":"ERROR","object":{"status":410,"detail":"fell behind","code":"expired"}}),
        );
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
        assert_eq!(v(&st.message().1)["sendInitialEvents"], true);
        let added = ev(json!({"type":"ADDED","resourceVersion":"e-40","object":{}}));
        assert_eq!(st.event(&added, "RAW").unwrap().as_deref(), Some("RAW"));
        // Initial items are not in version order: no resume from them.
        assert_eq!(st.rv, None);
        assert_eq!(v(&st.message().1)["sendInitialEvents"], true);
        let end = ev(
            json!({"type":"BOOKMARK","resourceVersion":"e-50","object":{"kind":"Bookmark","resourceVersion":"e-50","initialEventsEnd":true}}),
        );
        assert_eq!(st.event(&end, "B").unwrap().as_deref(), Some("B"));
        let m = v(&st.message().1);
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
                let mut backoff = ws::backoff();
                for _ in 0..failures {
                    ws::next_wait(&mut backoff);
                }
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
            self.send(json!({"id": id, "type": "event", "event": {"type": "BOOKMARK", "resourceVersion": rv, "object": {"kind": "Bookmark", "resourceVersion": rv, "initialEventsEnd": false}}}));
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
}
