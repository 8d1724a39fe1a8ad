//! Disconnecting a client. rumqttd has no call for it, but when a client
//! connects with the client id of one already connected it drops the older
//! connection (MQTT 3.1.1, 3.1.4-2). A [`Kicker`] does exactly that on the
//! broker's internal plain listener: it connects with the id to drop, waits
//! for the CONNACK, and disconnects. A certificate device's id inside the
//! broker is `{tenant}.{client id}`, which a plain connection can name.
//!
//! The packets are rumqttd's own (its `protocol::v4` encoder and parser).

use crate::BrokerError;
use bytes::BytesMut;
use rumqttd::protocol::v4::V4;
use rumqttd::protocol::{
    ConnAck, Connect, ConnectReturnCode, Disconnect, DisconnectReasonCode, Login, Packet, Protocol,
};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The user name the kicker logs in with on the internal listener.
pub(crate) const KICK_USER: &str = "telltale-hub-kick";
/// How long one kick may take.
const KICK_TIMEOUT: Duration = Duration::from_secs(3);

/// Drops connections by client id. Cheap to clone.
#[derive(Clone)]
pub struct Kicker {
    /// The broker's internal plain listener (loopback).
    pub(crate) addr: SocketAddr,
    /// The password the internal listener takes from the kicker (random,
    /// made at each start; only the hub knows it).
    pub(crate) secret: String,
}

impl std::fmt::Debug for Kicker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kicker")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn kick_err(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Kick(e.to_string())
}

impl Kicker {
    /// Drops the connection whose client id inside the broker is
    /// `client_id` (a certificate device's is `{tenant}.{device}`), if there
    /// is one. Blocks for a round trip on loopback (at most 3 s).
    pub fn kick(&self, client_id: &str) -> Result<(), BrokerError> {
        let deadline = Instant::now() + KICK_TIMEOUT;
        let mut s = TcpStream::connect_timeout(&self.addr, KICK_TIMEOUT).map_err(kick_err)?;
        s.set_read_timeout(Some(KICK_TIMEOUT)).map_err(kick_err)?;
        s.set_write_timeout(Some(KICK_TIMEOUT)).map_err(kick_err)?;
        let mut out = BytesMut::new();
        let connect = Connect {
            keep_alive: 10,
            client_id: client_id.to_owned(),
            clean_session: true,
        };
        let login = Login {
            username: KICK_USER.to_owned(),
            password: self.secret.clone(),
        };
        V4.write(
            Packet::Connect(connect, None, None, None, Some(login)),
            &mut out,
        )
        .map_err(kick_err)?;
        s.write_all(&out).map_err(kick_err)?;

        let mut input = BytesMut::new();
        let mut chunk = [0u8; 256];
        let ack: ConnAck = loop {
            match V4.read_mut(&mut input, 4096) {
                Ok(Packet::ConnAck(ack, _)) => break ack,
                Ok(other) => return Err(kick_err(format!("unexpected {other:?} before CONNACK"))),
                Err(rumqttd::protocol::Error::InsufficientBytes(_)) => {
                    if Instant::now() > deadline {
                        return Err(kick_err("no CONNACK in time"));
                    }
                    let n = s.read(&mut chunk).map_err(kick_err)?;
                    if n == 0 {
                        return Err(kick_err("the broker closed the connection"));
                    }
                    input.extend_from_slice(&chunk[..n]);
                }
                Err(e) => return Err(kick_err(e)),
            }
        };
        if ack.code != ConnectReturnCode::Success {
            return Err(kick_err(format!("refused: {:?}", ack.code)));
        }
        out.clear();
        V4.write(
            Packet::Disconnect(
                Disconnect {
                    reason_code: DisconnectReasonCode::NormalDisconnection,
                },
                None,
            ),
            &mut out,
        )
        .map_err(kick_err)?;
        // The older connection is gone once the CONNACK came; a lost
        // DISCONNECT only leaves this one to time out.
        let _ = s.write_all(&out);
        Ok(())
    }
}
