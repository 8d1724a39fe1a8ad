//! The public MQTT listeners. rumqttd binds its own listeners and offers no
//! hook on accept, so the hub owns the public accept loops: it counts the
//! open connections of each client address, closes those over the cap at
//! once, and splices the others byte for byte to rumqttd's listener on an
//! internal loopback port (TLS passes through untouched: rumqttd does the
//! handshake and reads the client certificate).
//!
//! rumqttd does each TLS handshake inside its accept loop, one at a time,
//! so a client that starts a handshake and stalls would hold up every other
//! TLS client. For TLS routes the splice therefore reads the client's whole
//! ClientHello before it connects to rumqttd (a client that says nothing or
//! stops half-way never reaches it), and then watches the client's TLS
//! records (only their 5-byte plaintext headers) until the client has sent
//! a complete handshake or application record after the server's first
//! flight: that record is its certificate, which rumqttd checks at once. A
//! client that takes longer than the handshake deadline for either step is
//! closed, which ends rumqttd's wait. Time spent queued behind other
//! handshakes does not count against a client.

use crate::{BrokerError, BrokerStats};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use telltale_limits::PerKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One public listener and where its connections go.
pub(crate) struct Route {
    /// What the log calls it: `mqtt` or `mqtts`.
    pub name: &'static str,
    /// The public listener, bound already.
    pub listener: std::net::TcpListener,
    /// rumqttd's internal listener.
    pub upstream: SocketAddr,
    /// Whether the route carries TLS (the handshake deadline applies).
    pub tls: bool,
}

/// Open connections per client address, shared by all routes (the one
/// per-key cap of the workspace, `telltale-limits`; the API's HTTP server
/// uses the same).
type Counts = PerKey<IpAddr>;

/// Settings of the accept loops.
#[derive(Clone, Copy)]
pub(crate) struct Limits {
    /// Most open connections per client address, over all routes.
    pub per_ip: usize,
    /// A TLS client must have sent its certificate within this time.
    pub handshake: Duration,
}

/// Starts the accept loops on a thread of their own (a single-threaded
/// runtime, as rumqttd runs each of its listeners). They run as long as the
/// process.
pub(crate) fn spawn(
    routes: Vec<Route>,
    limits: Limits,
    stats: Arc<BrokerStats>,
) -> Result<(), BrokerError> {
    for r in &routes {
        r.listener
            .set_nonblocking(true)
            .map_err(BrokerError::Thread)?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(BrokerError::Thread)?;
    std::thread::Builder::new()
        .name("mqtt-accept".into())
        .spawn(move || {
            runtime.block_on(async move {
                let counts = Counts::new(limits.per_ip);
                let mut loops = tokio::task::JoinSet::new();
                for r in routes {
                    match TcpListener::from_std(r.listener) {
                        Ok(l) => {
                            loops.spawn(accept_loop(
                                r.name,
                                l,
                                r.upstream,
                                r.tls,
                                limits,
                                counts.clone(),
                                stats.clone(),
                            ));
                        }
                        Err(e) => {
                            tracing::error!(error = %e, route = r.name, "mqtt listener unusable")
                        }
                    }
                }
                while loops.join_next().await.is_some() {}
            })
        })
        .map_err(BrokerError::Thread)?;
    Ok(())
}

async fn accept_loop(
    name: &'static str,
    listener: TcpListener,
    upstream: SocketAddr,
    tls: bool,
    limits: Limits,
    counts: Arc<Counts>,
    stats: Arc<BrokerStats>,
) {
    let mut last_warn: Option<Instant> = None;
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(v) => v,
            Err(e) => {
                // Out of file descriptors, most likely: wait, do not spin.
                tracing::warn!(error = %e, listener = name, "mqtt accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let ip = peer.ip().to_canonical();
        let Some(slot) = counts.try_take(&ip) else {
            stats.refused_over_cap.fetch_add(1, Relaxed);
            if last_warn.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                last_warn = Some(Instant::now());
                tracing::warn!(
                    %ip,
                    cap = limits.per_ip,
                    listener = name,
                    "mqtt connection refused: the address has the most connections allowed (broker.max_connections_per_ip); further refusals are logged at most every 10 s"
                );
            }
            drop(client);
            continue;
        };
        let stats = stats.clone();
        tokio::spawn(async move {
            let _slot = slot;
            splice(client, upstream, tls, limits.handshake, &stats).await;
        });
    }
}

async fn splice(
    mut client: TcpStream,
    upstream: SocketAddr,
    tls: bool,
    handshake: Duration,
    stats: &BrokerStats,
) {
    let _ = client.set_nodelay(true);
    // A TLS client reaches rumqttd's (serial) handshakes only with its
    // whole ClientHello, so one that says nothing, or stops half-way, holds
    // up no one.
    let hello = if tls {
        match tokio::time::timeout(handshake, read_client_hello(&mut client)).await {
            Ok(Some(h)) => h,
            Ok(None) => return,
            Err(_) => {
                stats.handshake_timeouts.fetch_add(1, Relaxed);
                return;
            }
        }
    } else {
        Vec::new()
    };
    let mut up = match tokio::time::timeout(handshake, TcpStream::connect(upstream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::error!(error = %e, %upstream, "cannot reach the broker's internal listener");
            return;
        }
        Err(_) => {
            tracing::error!(%upstream, "the broker's internal listener did not answer in time");
            return;
        }
    };
    let _ = up.set_nodelay(true);
    if up.write_all(&hello).await.is_err() {
        return;
    }
    if tls && !tls_handshake(&mut client, &mut up, handshake).await {
        stats.handshake_timeouts.fetch_add(1, Relaxed);
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
}

/// Largest ClientHello taken, bytes (a post-quantum key share makes one
/// of 1-2 KiB).
const MAX_HELLO: usize = 64 * 1024;

/// Reads the client's first TLS handshake message, the ClientHello, whole
/// (it may span records); returns every byte read, or `None` when the
/// stream is not TLS, too large, or closes first.
async fn read_client_hello(client: &mut TcpStream) -> Option<Vec<u8>> {
    let mut raw: Vec<u8> = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(done) = hello_complete(&raw) {
            return done.then_some(raw);
        }
        if raw.len() > MAX_HELLO {
            return None;
        }
        match client.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Whether `raw` holds a whole first handshake message: `Some(true)` yes,
/// `Some(false)` it is not TLS (a record other than handshake), `None` not
/// yet.
fn hello_complete(raw: &[u8]) -> Option<bool> {
    let mut body: Vec<u8> = Vec::new();
    let mut rest = raw;
    while rest.len() >= 5 {
        if rest[0] != 22 {
            return Some(false);
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        let avail = (rest.len() - 5).min(len);
        body.extend_from_slice(&rest[5..5 + avail]);
        if avail < len {
            break;
        }
        rest = &rest[5 + len..];
    }
    if body.len() >= 4 {
        let want =
            4 + (usize::from(body[1]) << 16 | usize::from(body[2]) << 8 | usize::from(body[3]));
        if body.len() >= want {
            return Some(true);
        }
    }
    match raw.first() {
        Some(&b) if b != 22 => Some(false),
        _ => None,
    }
}

/// Longest wait for rumqttd to start on a connection's handshake (it does
/// them one at a time, each cut at the handshake deadline).
const QUEUE_WAIT: Duration = Duration::from_secs(60);

/// Relays both ways until the client has sent a complete TLS record of
/// type handshake (22) or application data (23) that began after the
/// server's first bytes, and returns true; false when the client took more
/// than `limit` from the server's first bytes (or rumqttd more than
/// [`QUEUE_WAIT`] to start), or either side closes first. The clock starts
/// at the server's first bytes, so time spent queued behind other
/// handshakes does not count against a client.
async fn tls_handshake(client: &mut TcpStream, up: &mut TcpStream, limit: Duration) -> bool {
    let mut deadline = tokio::time::Instant::now() + QUEUE_WAIT;
    let mut cbuf = [0u8; 4096];
    let mut ubuf = [0u8; 4096];
    let mut scan = RecordScan::default();
    let mut server_spoke = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return false,
            r = client.read(&mut cbuf) => {
                let n = match r { Ok(0) | Err(_) => return false, Ok(n) => n };
                if up.write_all(&cbuf[..n]).await.is_err() {
                    return false;
                }
                if scan.feed(&cbuf[..n], server_spoke) {
                    return true;
                }
            }
            r = up.read(&mut ubuf) => {
                let n = match r { Ok(0) | Err(_) => return false, Ok(n) => n };
                if client.write_all(&ubuf[..n]).await.is_err() {
                    return false;
                }
                if !server_spoke {
                    server_spoke = true;
                    deadline = tokio::time::Instant::now() + limit;
                }
            }
        }
    }
}

/// Follows TLS record boundaries in a byte stream by their headers
/// (content type, version, 16-bit length).
#[derive(Default)]
struct RecordScan {
    /// The header being read.
    header: [u8; 5],
    /// How much of it has arrived.
    have: usize,
    /// Body bytes left of the current record.
    remaining: usize,
    /// Whether the current record counts (type 22 or 23, begun after the
    /// server spoke).
    counts: bool,
}

impl RecordScan {
    /// Takes the next bytes; true once a counting record is complete.
    fn feed(&mut self, mut bytes: &[u8], server_spoke: bool) -> bool {
        while !bytes.is_empty() || (self.have == 5 && self.remaining == 0) {
            if self.have < 5 {
                let take = (5 - self.have).min(bytes.len());
                self.header[self.have..self.have + take].copy_from_slice(&bytes[..take]);
                self.have += take;
                bytes = &bytes[take..];
                if self.have < 5 {
                    return false;
                }
                self.remaining = usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                self.counts = server_spoke && matches!(self.header[0], 22 | 23);
            }
            let take = self.remaining.min(bytes.len());
            self.remaining -= take;
            bytes = &bytes[take..];
            if self.remaining > 0 {
                return false;
            }
            // The record is complete.
            if self.counts {
                return true;
            }
            self.have = 0;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u8, len: u16) -> Vec<u8> {
        let mut v = vec![kind, 3, 3];
        v.extend_from_slice(&len.to_be_bytes());
        v.extend(std::iter::repeat_n(0u8, usize::from(len)));
        v
    }

    #[test]
    fn record_scan_counts_only_complete_records_after_the_server() {
        // The ClientHello, before the server spoke, never counts.
        let mut s = RecordScan::default();
        assert!(!s.feed(&record(22, 300), false));
        // A change_cipher_spec after it does not count either.
        assert!(!s.feed(&record(20, 1), true));
        // An application record counts only once all of it arrived, even
        // fed a byte at a time.
        let r = record(23, 40);
        for (i, b) in r.iter().enumerate() {
            let done = s.feed(std::slice::from_ref(b), true);
            assert_eq!(done, i == r.len() - 1, "byte {i}");
        }
        // Several records in one read.
        let mut s = RecordScan::default();
        let mut bytes = record(20, 1);
        bytes.extend(record(22, 10));
        assert!(s.feed(&bytes, true));
        // A header alone is not enough.
        let mut s = RecordScan::default();
        assert!(!s.feed(&record(22, 16000)[..5], true));
    }

    #[test]
    fn a_client_hello_is_whole_only_with_all_its_bytes() {
        // A handshake message of 300 bytes: type 1, length 296.
        let mut msg = vec![1u8, 0, 1, 40];
        msg.extend(std::iter::repeat_n(7u8, 296));
        let rec = |body: &[u8]| {
            let mut v = vec![22u8, 3, 1];
            v.extend_from_slice(&u16::try_from(body.len()).expect("len").to_be_bytes());
            v.extend_from_slice(body);
            v
        };
        let one = rec(&msg);
        assert_eq!(hello_complete(&one), Some(true));
        for cut in [0, 3, 5, 8, one.len() - 1] {
            assert_eq!(hello_complete(&one[..cut]), None, "cut at {cut}");
        }
        // Split over two records.
        let mut two = rec(&msg[..100]);
        two.extend(rec(&msg[100..]));
        assert_eq!(hello_complete(&two[..two.len() - 1]), None);
        assert_eq!(hello_complete(&two), Some(true));
        // Plain MQTT (CONNECT is 0x10) is not TLS.
        assert_eq!(hello_complete(&[0x10, 12, 0, 4]), Some(false));
        let mut bad = rec(&msg[..100]);
        bad.extend([23u8, 3, 3, 0, 1, 0]);
        assert_eq!(hello_complete(&bad), Some(false));
    }
}
