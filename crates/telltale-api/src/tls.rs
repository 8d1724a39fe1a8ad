//! HTTPS (and so WSS): the `[api.tls]` section, and the TLS handshake of
//! each accepted connection, done in the connection's own task with a
//! deadline so a slow client holds up no one. The certificate is a
//! [`ReloadableCert`]: the hub reads its files again on SIGHUP, and new
//! connections get the new certificate.

use serde::Deserialize;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use telltale_tls::ReloadableCert;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

/// The `[api.tls]` section: present, the HTTP listener speaks only TLS.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiTlsConfig {
    /// The certificate chain (PEM). Empty: `server.pem` in `[tls] dir`.
    pub cert: PathBuf,
    /// Its private key (PEM). Empty: `server.key` in `[tls] dir`.
    pub key: PathBuf,
}

/// A client must finish its TLS handshake within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts TLS on the HTTP listener with a certificate that can be
/// swapped while it runs.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

impl Tls {
    /// Serves `cert` (HTTP/1.1 by ALPN).
    pub fn new(cert: Arc<ReloadableCert>) -> Tls {
        Tls {
            acceptor: TlsAcceptor::from(telltale_tls::server_config(cert, &[b"http/1.1"])),
        }
    }
}

/// An accepted connection, plain or TLS.
pub enum Conn {
    /// Plain HTTP.
    Plain(TcpStream),
    /// HTTPS.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// The connection as the server will speak on it: after the TLS handshake
/// when `tls` is set. `None` when the handshake failed or took too long
/// (logged at debug level: a scanner or a client that does not trust the
/// certificate).
pub async fn accept(tls: Option<&Tls>, stream: TcpStream) -> Option<Conn> {
    let Some(tls) = tls else {
        return Some(Conn::Plain(stream));
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor.accept(stream)).await {
        Ok(Ok(s)) => Some(Conn::Tls(Box::new(s))),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "tls handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!("tls handshake timed out");
            None
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
