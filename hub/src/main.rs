//! telltale-hub: command line, config, logging, signals and wiring. The work
//! is done by the crates under crates/.

mod commander;
mod config;
mod credentials;
mod demo;
mod devices;
mod notifier;
mod reload;
mod service;
mod supervisor;
mod tls;
mod token;

use anyhow::Context;
use clap::{Parser, Subcommand};
use config::HubConfig;
use std::path::PathBuf;
use std::sync::Arc;
use supervisor::{Stage, Supervisor};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "telltale-hub", version, about = "Telltale telemetry hub")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hub.
    Run {
        /// Config file.
        #[arg(long, default_value = "/etc/telltale/hub.toml")]
        config: PathBuf,
    },
    /// Run a demo: the hub on 127.0.0.1 with a local data folder, and demo
    /// agents feeding simulated readings.
    Demo {
        /// Where the demo keeps its data.
        #[arg(long, default_value = "telltale-demo-data")]
        data_dir: PathBuf,
        /// MQTT port.
        #[arg(long, default_value_t = 1883)]
        mqtt_port: u16,
        /// HTTP port.
        #[arg(long, default_value_t = 8080)]
        http_port: u16,
    },
    /// Check a config file and exit.
    CheckConfig {
        /// Config file.
        #[arg(long, default_value = "/etc/telltale/hub.toml")]
        config: PathBuf,
    },
    /// API tokens: create (printed once), list, revoke. Works while the
    /// hub runs.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Device credentials for MQTT: add (a password, a tenant and, with the
    /// hub's CA, a client certificate), list, revoke.
    Device {
        /// Config file (for `data_dir`, `[tls] dir` and the MQTT listener).
        #[arg(long, default_value = "/etc/telltale/hub.toml", global = true)]
        config: PathBuf,
        #[command(subcommand)]
        command: devices::DeviceCommand,
    },
    /// The hub's own CA and server certificate.
    Tls {
        /// Config file (for `[tls] dir`).
        #[arg(long, default_value = "/etc/telltale/hub.toml", global = true)]
        config: PathBuf,
        #[command(subcommand)]
        command: tls::TlsCommand,
    },
    /// Copy the database to a file while the hub runs (a consistent,
    /// compact snapshot: SQLite's VACUUM INTO). The file must not exist.
    Backup {
        /// Config file (for `data_dir`).
        #[arg(long, default_value = "/etc/telltale/hub.toml")]
        config: PathBuf,
        /// Where to write the copy.
        to: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    match cli.command {
        Command::Token(cmd) => token::run(cmd),
        Command::Backup { config, to } => {
            let config = HubConfig::load(&config)?;
            anyhow::ensure!(
                !to.exists(),
                "{} exists; the backup goes to a new file",
                to.display()
            );
            let db = config.db_path();
            let reader = telltale_store::Reader::open(&db)
                .with_context(|| format!("cannot open {}", db.display()))?;
            reader
                .backup_to(&to)
                .with_context(|| format!("cannot write the backup {}", to.display()))?;
            println!("backup of {} written to {}", db.display(), to.display());
            Ok(())
        }
        Command::Device { config, command } => {
            let config = HubConfig::load(&config)?;
            let (host, port) = config.device_mqtt_address();
            devices::command(
                command,
                &credentials::path(&config.data_dir),
                &config.tls.dir,
                &host,
                port,
                &config.ingest.topic_prefix,
            )
        }
        Command::Tls { config, command } => tls::command(command, &config),
        Command::CheckConfig { config } => {
            let config = HubConfig::load(&config)?;
            // The TLS files, as `run` loads them.
            if let Some(t) = &config.broker.tls {
                tls::check_broker_files(t).context("[broker.tls]")?;
            }
            if let Some(t) = &config.api.tls {
                telltale_tls::load_certified_key(&t.cert, &t.key).context("[api.tls]")?;
            }
            let file = &config.alerts.rules_file;
            match config.rules()?.len() {
                0 if !file.exists() => println!("config ok (no rules file {})", file.display()),
                1 => println!("config ok (1 alert rule in {})", file.display()),
                n => println!("config ok ({n} alert rules in {})", file.display()),
            }
            Ok(())
        }
        Command::Run { config } => {
            let config = HubConfig::load(&config)?;
            runtime()?.block_on(run(config, None))
        }
        Command::Demo {
            data_dir,
            mqtt_port,
            http_port,
        } => {
            let config = demo::config(&data_dir, mqtt_port, http_port);
            demo::write_rules(&config.alerts.rules_file, http_port)?;
            runtime()?.block_on(async move {
                let agents = demo::Agents::start(&data_dir, mqtt_port)?;
                tracing::info!("demo: the dashboard is at http://127.0.0.1:{http_port}/");
                run(config, Some(agents)).await
            })
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rumqttd=off"));
    // Under journald the journal stamps each line; do not stamp twice.
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    use std::io::IsTerminal;
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if journald {
        fmt.without_time().init();
    } else {
        fmt.init();
    }
}

/// The hub: everything started and wired, then stopped by the supervisor
/// on SIGINT or SIGTERM (the stop order is in `supervisor.rs`).
async fn run(config: HubConfig, demo: Option<demo::Agents>) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    let mut sup = Supervisor::new(config.hub.stop_timeout());
    // API tokens and device credentials, kept current while the hub runs.
    let auth_path = credentials::path(&config.data_dir);
    let credentials = credentials::start(&auth_path)?;
    api_access(&config, &credentials.borrow())?;
    sup.spawn(
        Stage::Rest,
        "access log",
        log_access_changes(
            credentials.clone(),
            config.api.listen,
            sup.token(Stage::Rest),
        ),
    );

    let (acks_tx, acks_rx) = tokio::sync::mpsc::unbounded_channel();
    let db = config.db_path();
    let (writer, writer_thread) = telltale_store::writer::start(&db, config.store.clone(), acks_tx)
        .with_context(|| format!("cannot open the store {}", db.display()))?;
    let sender =
        telltale_notify::Sender::new(&config.notify).context("cannot set up notifications")?;
    // The rules are in force before the first reading is taken.
    let rules = Arc::new(
        telltale_api::rules::RulesFile::new(
            config.alerts.rules_file.clone(),
            writer.clone(),
            notifier::routing(&config.notify),
        )
        .with_sinks(config::sink_names(&config.notify)),
    );
    // HTTPS: the certificate is read now (a bad one stops the start) and
    // again on SIGHUP.
    let api_cert = match &config.api.tls {
        Some(t) => Some(Arc::new(
            telltale_tls::ReloadableCert::load(&t.cert, &t.key)
                .context("cannot load the HTTPS certificate ([api.tls])")?,
        )),
        None => None,
    };
    if let Some(t) = &config.broker.tls {
        tls::check_broker_files(t).context("[broker.tls]")?;
    }
    let mut reloader = reload::Reloader::new(
        rules.clone(),
        config.alerts.reload_poll(),
        api_cert.iter().cloned().collect(),
    )?;
    let n = reloader
        .load()
        .await
        .context("cannot load the alert rules")?;
    tracing::info!(rules = n, file = %config.alerts.rules_file.display(), "rules file loaded");
    sup.spawn(
        Stage::Rest,
        "rules reloader",
        reloader.run(sup.token(Stage::Rest)),
    );
    // Subscribe to commits before the collections read their versions, so
    // no commit falls between the two.
    let commits = writer.subscribe();
    let api_state = telltale_api::AppState::new(
        db.clone(),
        writer.epoch.clone(),
        config.api.clone(),
        sup.token(Stage::Api),
        writer.clone(),
        rules,
    )
    .context("cannot read the store for the API")?
    .with_auth(credentials.clone(), auth_path.clone())
    .with_ca_dir(config.tls.dir.clone());
    let api_state = match &api_cert {
        Some(c) => api_state.with_tls(c.clone()),
        None => api_state,
    };
    let listener = tokio::net::TcpListener::bind(config.api.listen)
        .await
        .with_context(|| format!("cannot listen for http on {}", config.api.listen))?;
    let http_addr = listener.local_addr().context("http listener address")?;
    sup.spawn_aborted(
        Stage::Api,
        "feed",
        telltale_api::feed(api_state.clone(), commits, writer.readings_switch()),
    );
    let notify_stats = Arc::new(notifier::NotifyStats::default());
    {
        let (db, store, shutdown) = (db.clone(), writer.clone(), sup.token(Stage::Rest));
        let notify_stats = notify_stats.clone();
        sup.spawn(Stage::Rest, "notifier", async move {
            if let Err(e) = notifier::run(db, sender, store, notify_stats, shutdown).await {
                tracing::error!(error = %format!("{e:#}"), "notifier stopped: no notifications are sent");
            }
        });
    }

    let broker = telltale_broker::start(
        &config.broker,
        &config.ingest.filters(),
        devices::auth_handler(credentials.clone()),
    )
    .context("cannot start the mqtt broker")?;
    if let Some(addr) = broker.local_addr {
        if addr.ip().is_loopback() {
            tracing::info!(%addr, "mqtt plain listener is open: no device credentials are checked on it; every local process can publish as any device and read every command (set broker.plain = false to turn it off)");
        } else {
            tracing::warn!(%addr, "mqtt plain listener is open on a non-loopback address (broker.plain_listen_insecure): anyone on that network can publish as any device and read every command");
        }
    }
    if let Some(addr) = broker.tls_addr {
        tracing::info!(%addr, "mqtt tls listener: devices need a certificate from the hub's CA and their password");
    }
    sup.spawn(
        Stage::Rest,
        "disconnects",
        devices::disconnect_revoked(
            credentials.clone(),
            broker.kicker.clone(),
            writer.clone(),
            sup.token(Stage::Rest),
        ),
    );
    // The API serves once the counters it reports exist (its listener is
    // bound already: connections wait in the backlog until then).
    let stats = Arc::new(telltale_ingest::IngestStats::default());
    let api_state = api_state.with_metrics(telltale_api::Metrics::new(Counters {
        ingest: stats.clone(),
        broker: broker.stats.clone(),
        notify: notify_stats,
    }));
    let http = sup.spawn_http(telltale_api::serve(listener, api_state));
    let addr =
        |a: Option<std::net::SocketAddr>| a.map_or_else(|| "off".to_owned(), |a| a.to_string());
    tracing::info!(
        mqtt = %addr(broker.local_addr),
        mqtts = %addr(broker.tls_addr),
        http = %http_addr,
        https = api_cert.is_some(),
        db = %db.display(),
        epoch = %writer.epoch,
        "hub ready"
    );

    sup.spawn(
        Stage::Rest,
        "commander",
        commander::run(
            db.clone(),
            writer.clone(),
            broker.publisher.clone(),
            config.ingest.topic_prefix.clone(),
            credentials.clone(),
            sup.token(Stage::Rest),
        ),
    );
    let ingest = telltale_ingest::start(
        broker.messages,
        broker.publisher,
        writer,
        acks_rx,
        config.ingest.clone(),
        stats.clone(),
        credentials,
        sup.token(Stage::Ingest),
    )
    .context("cannot start ingest")?;
    // The broker, the store and ingest run and the HTTP listener accepts:
    // tell systemd (Type=notify), and keep its watchdog fed while ingest
    // runs.
    let watchdog = service::ready(stats, sup.token(Stage::Ingest));
    sup.run_until_signal(supervisor::Running {
        ingest,
        http,
        writer_thread,
        watchdog,
        demo,
    })
    .await;
    Ok(())
}

/// The counters of ingest, the broker and the notifier, read into the
/// API's plain [`telltale_api::Counts`] for `/metrics` and `/readyz`.
struct Counters {
    /// Readings ingested, and whether ingest runs.
    ingest: Arc<telltale_ingest::IngestStats>,
    /// MQTT messages received, connections refused, handshake timeouts.
    broker: Arc<telltale_broker::BrokerStats>,
    /// Notifications sent, failed, retried.
    notify: Arc<notifier::NotifyStats>,
}

impl telltale_api::CountSource for Counters {
    fn counts(&self) -> telltale_api::Counts {
        use std::sync::atomic::Ordering::Relaxed;
        telltale_api::Counts {
            readings_ingested: self.ingest.readings.load(Relaxed),
            ingest_running: self.ingest.running.load(Relaxed),
            mqtt_received: self.broker.received.load(Relaxed),
            mqtt_refused_over_cap: self.broker.refused_over_cap.load(Relaxed),
            mqtt_handshake_timeouts: self.broker.handshake_timeouts.load(Relaxed),
            notifications_sent: self.notify.sent.load(Relaxed),
            notifications_failed: self.notify.failed.load(Relaxed),
            notifications_retried: self.notify.retried.load(Relaxed),
        }
    }
}

/// Whether the HTTP API may start as configured: with a token, or open
/// (no token at all) only on a loopback address. Says which it is.
fn api_access(
    config: &HubConfig,
    credentials: &telltale_store::auth::AuthSnapshot,
) -> anyhow::Result<()> {
    let listen = config.api.listen;
    if credentials.has_tokens() {
        tracing::info!(http = %listen, "the HTTP API needs a token (see docs/security.md)");
        return Ok(());
    }
    anyhow::ensure!(
        listen.ip().is_loopback(),
        "[api] listen = \"{listen}\" is not a loopback address and no API token exists: the API would be open to the network. \
         Create a token first (telltale-hub token create --name admin --scope admin --config <this config>), \
         or listen on 127.0.0.1"
    );
    tracing::warn!(
        http = %listen,
        "no API token exists: the HTTP API is OPEN (no token needed) to anyone on this machine, on loopback only; create one with `telltale-hub token create` to close it"
    );
    Ok(())
}

/// Logs when the API opens or closes as tokens come and go.
async fn log_access_changes(
    mut credentials: tokio::sync::watch::Receiver<Arc<telltale_store::auth::AuthSnapshot>>,
    listen: std::net::SocketAddr,
    shutdown: CancellationToken,
) {
    let mut had = credentials.borrow_and_update().has_tokens();
    loop {
        tokio::select! {
            changed = credentials.changed() => if changed.is_err() { return },
            _ = shutdown.cancelled() => return,
        }
        let has = credentials.borrow_and_update().has_tokens();
        match (had, has) {
            (false, true) => tracing::info!(
                target: "audit",
                "an API token exists now: the HTTP API needs a token"
            ),
            (true, false) if listen.ip().is_loopback() => tracing::warn!(
                target: "audit",
                http = %listen,
                "no API token is live any more: the HTTP API is OPEN on loopback"
            ),
            (true, false) => tracing::warn!(
                target: "audit",
                http = %listen,
                "no API token is live any more: the HTTP API refuses every request until one is created"
            ),
            _ => {}
        }
        had = has;
    }
}
