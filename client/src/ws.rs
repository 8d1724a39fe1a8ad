//! The hub's WebSocket `/v1/ws`: opening it, and its messages as the API's
//! types. The watch and command loops take any [`Conn`], so their tests
//! drive them with channels.

use crate::fail::Fail;
use crate::http::{cause, hub_problem, Hub, CONNECT_TIMEOUT};
use crate::output::problem_text;
use futures_util::{Sink, SinkExt, Stream};
use reqwest::Url;
use serde_json::Value;
use std::time::Duration;
use telltale_limits::{Jitter, Schedule};
use telltale_types::{ClientMessage, ServerMessage};
use tokio_tungstenite::tungstenite::{self, Message};

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket as the watch and command loops see it: the real socket, or
/// channels in tests.
pub trait Conn:
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

pub use telltale_limits::Backoff;

/// Reconnection delays: doubling from 500 ms to 30 s, with up to 20% taken
/// off so that many clients of a restarted hub do not come back all at
/// once.
pub const RECONNECTS: Schedule = Schedule {
    initial: Duration::from_millis(500),
    max: Duration::from_secs(30),
    jitter: Jitter::UpTo { percent: 20 },
};

/// A reconnect backoff with no failure yet.
pub fn backoff() -> Backoff {
    Backoff::new(RECONNECTS)
}

/// The next reconnect delay (counts a failure).
pub fn next_wait(backoff: &mut Backoff) -> Duration {
    backoff.next_wait(rand::random())
}

/// How long the hub may take to answer a message.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// A socket with no frame at all for this long (the hub pings every 20 s)
/// is dead.
pub const SOCKET_SILENCE: Duration = Duration::from_secs(45);

/// Sends one message.
pub async fn send(ws: &mut impl Conn, m: &ClientMessage) -> Result<(), tungstenite::Error> {
    let text =
        serde_json::to_string(m).map_err(|e| tungstenite::Error::Io(std::io::Error::other(e)))?;
    ws.send(Message::text(text)).await
}

/// A text frame as a message of the hub; `None` for one this client does
/// not read (it is skipped, as the protocol allows).
pub fn read(text: &str) -> Option<ServerMessage<Value>> {
    serde_json::from_str(text).ok()
}

impl Hub {
    /// `ws://` URL of the WebSocket.
    pub fn ws_url(&self) -> Result<Url, Fail> {
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

    /// Opens the WebSocket.
    pub async fn open(&self) -> Result<Socket, Fail> {
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
                let problem = res.body().as_deref().and_then(hub_problem);
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap() {
        let got: Vec<u64> = (0..8)
            .map(|n| RECONNECTS.ceiling(n).as_millis() as u64)
            .collect();
        assert_eq!(got, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        assert_eq!(RECONNECTS.ceiling(u32::MAX), RECONNECTS.max);
        // Each wait is its ceiling less at most a fifth, and counts a failure.
        let mut b = backoff();
        for n in 0..8 {
            let w = next_wait(&mut b);
            let c = RECONNECTS.ceiling(n);
            assert!(w <= c && w >= c.mul_f64(0.8), "{w:?} {c:?}");
            assert_eq!(b.attempts(), n + 1);
        }
        b.reset();
        assert_eq!(b.ceiling(), RECONNECTS.initial);
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
}
