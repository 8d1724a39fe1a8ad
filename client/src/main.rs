//! `telltale`: the command-line client a person runs from a laptop against
//! a running hub. Lists (`devices`, `latest`) are HTTP GETs; `watch` and
//! `command` go over the WebSocket `/v1/ws`; `ack` is an HTTP POST. The
//! objects it reads and sends are the API's own types (`telltale-types`).
//! Each subcommand is one function (`requests`, `watch`, `command`); what
//! they print is built by pure functions (`output`) tested beside them.
//!
//! Exit codes: 0 done (a command that succeeded), 1 a command that failed,
//! expired or timed out (or a watch that fell out of the hub's history),
//! 2 the hub refused the request (its problem's `detail` is printed),
//! 3 the hub cannot be reached.

mod cli;
mod command;
mod fail;
mod http;
mod output;
mod requests;
mod watch;
mod ws;

use clap::Parser;
use cli::{Cli, ClientCommand};
use fail::Fail;
use http::Hub;

fn main() {
    std::process::exit(run(Cli::parse()));
}

/// Runs a subcommand; returns the process's exit code.
fn run(args: Cli) -> i32 {
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

async fn dispatch(args: Cli) -> Result<i32, Fail> {
    let hub = Hub::new(&args.hub, args.token.as_deref())?;
    match args.command {
        ClientCommand::Devices { json } => requests::devices(&hub, json).await,
        ClientCommand::Latest {
            device,
            metric,
            json,
        } => requests::latest(&hub, device, metric, json).await,
        ClientCommand::Watch(w) => {
            tokio::select! {
                r = watch::watch(&hub, w) => r,
                _ = tokio::signal::ctrl_c() => Ok(0),
            }
        }
        ClientCommand::Command(c) => command::command(&hub, c).await,
        ClientCommand::Ack { alert, by, note } => {
            let by = by.or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()));
            requests::ack(&hub, alert, by, note).await
        }
    }
}
