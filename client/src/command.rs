//! `telltale command`: send a command over the WebSocket and follow its
//! steps to its end, resending with the same idempotency key after a lost
//! connection.

use crate::cli::CommandArgs;
use crate::fail::Fail;
use crate::http::Hub;
use crate::output::{command_end, command_header, command_steps, out, problem_text};
use crate::ws::{self, Conn, ANSWER_TIMEOUT, SOCKET_SILENCE};
use futures_util::StreamExt;
use std::time::Duration;
use telltale_types::{ClientMessage, Command, CommandMessage, CommandState, Reply, ServerMessage};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// `telltale command`.
pub async fn command(hub: &Hub, a: CommandArgs) -> Result<i32, Fail> {
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
    let mut msg = CommandMessage {
        id: 0,
        device: a.device,
        name: a.name,
        params,
        timeout_seconds: a.timeout,
        idempotency_key: Some(key),
    };
    // The hub ends the command at its deadline; give it some slack to say so.
    let give_up =
        Instant::now() + Duration::from_secs(a.timeout.unwrap_or(30)) + Duration::from_secs(20);
    let mut printed: Vec<CommandState> = Vec::new();
    let mut command_id: Option<u64> = None;
    let mut backoff = ws::backoff();
    let mut next_id = 1u64;
    let mut connected_once = false;
    loop {
        let why = match hub.open().await {
            Ok(mut ws) => {
                connected_once = true;
                backoff.reset();
                msg.id = next_id;
                next_id += 1;
                match follow_command(
                    &mut ws,
                    &msg,
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
        let wait = ws::next_wait(&mut backoff);
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
    msg: &CommandMessage,
    give_up: Instant,
    no_wait: bool,
    printed: &mut Vec<CommandState>,
    command_id: &mut Option<u64>,
) -> Result<Result<i32, String>, Fail> {
    let id = msg.id;
    if let Err(e) = ws::send(ws, &ClientMessage::Command(msg.clone())).await {
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
        let cmd: Command = match ws::read(text.as_str()) {
            Some(ServerMessage::Result(Reply {
                id: Some(i),
                success: true,
                command,
                ..
            })) if i == id => {
                answered = true;
                let Some(cmd) = command.map(|c| *c) else {
                    continue;
                };
                if command_id.is_none() {
                    *command_id = Some(cmd.id);
                    out(&command_header(&cmd))?;
                }
                if no_wait {
                    for line in command_steps(&cmd, printed) {
                        out(&line)?;
                    }
                    return Ok(Ok(0));
                }
                cmd
            }
            Some(ServerMessage::Result(Reply {
                id: Some(i), error, ..
            })) if i == id => {
                let p = error.unwrap_or_default();
                return match p.status {
                    500.. | 429 => Ok(Err(problem_text(&p))),
                    _ => Err(Fail::Refused(problem_text(&p))),
                };
            }
            Some(ServerMessage::Event { id: i, event }) if i == id => {
                match event
                    .item()
                    .map(|o| serde_json::from_value::<Command>(o.clone()))
                {
                    Some(Ok(cmd)) => cmd,
                    _ => continue,
                }
            }
            _ => continue,
        };
        for line in command_steps(&cmd, printed) {
            out(&line)?;
        }
        if let Some((code, lines)) = command_end(&cmd) {
            for line in lines {
                out(&line)?;
            }
            return Ok(Ok(code));
        }
    }
}
