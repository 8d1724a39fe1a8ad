//! The `telltale-agent` binary: command line, logging, signals and the
//! runtime; everything else lives in the library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use telltale_agent::{bench, config::Config};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Telltale edge agent: reads sensors and sends their readings to the hub.
#[derive(Debug, Parser)]
#[command(name = "telltale-agent", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent until SIGINT or SIGTERM.
    Run {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Parse and validate a config file, print "config ok" or the error.
    CheckConfig {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Simulate many devices against a hub and print the acked reading rate.
    Bench(bench::BenchOptions),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The bench runs many devices: only its own progress at info by default.
    let default_filter = match cli.command {
        Command::Bench(_) => "warn,telltale_agent::bench=info",
        _ => "info",
    };
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // Under journald (systemd sets JOURNAL_STREAM) the journal stamps each
    // line; do not stamp twice.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        fmt.without_time().init();
    } else {
        fmt.init();
    }
    match cli.command {
        Command::CheckConfig { config } => match Config::load(&config) {
            Ok(_) => {
                println!("config ok");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Run { config } => exit(in_runtime(|cancel| async move {
            let config = Config::load(&config)?;
            tracing::info!(
                version = env!("CARGO_PKG_VERSION"),
                device = config.device_id,
                "starting"
            );
            telltale_agent::run(config, cancel).await
        })),
        Command::Bench(opts) => exit(in_runtime(|cancel| async move {
            let report = bench::run(opts, cancel).await?;
            println!("{report}");
            Ok(())
        })),
    }
}

fn exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `f` on a multi-threaded runtime with a token cancelled by SIGINT or
/// SIGTERM; blocking work still running a second after `f` returns is
/// abandoned.
fn in_runtime<F, Fut>(f: F) -> anyhow::Result<()>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let result = rt.block_on(async {
        let cancel = CancellationToken::new();
        let signals = tokio::spawn(cancel_on_signal(cancel.clone()));
        let result = f(cancel).await;
        signals.abort();
        result
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn cancel_on_signal(cancel: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return;
        }
    };
    tokio::select! {
        r = tokio::signal::ctrl_c() => {
            if let Err(e) = r {
                tracing::error!(error = %e, "cannot listen for SIGINT");
                return;
            }
            tracing::info!("SIGINT received");
        }
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
    cancel.cancel();
}
