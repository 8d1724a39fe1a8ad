//! `telltale-hub tls init`, and the start-up check of the MQTT TLS files
//! (rumqttd reads them only when a device connects, so a bad file would
//! otherwise show only then).

use crate::config::HubConfig;
use anyhow::Context;
use std::path::{Path, PathBuf};
use telltale_broker::BrokerTlsConfig;

/// `telltale-hub tls ...`.
#[derive(clap::Subcommand)]
pub enum TlsCommand {
    /// Makes the hub's CA and a server certificate signed by it, for a
    /// first install: ca.pem, ca.key, server.pem, server.key. Never
    /// overwrites.
    Init {
        /// Where to write them. Default: `[tls] dir` of the config
        /// ({data_dir}/tls unless set).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// A host name or IP address the server certificate names (besides
        /// localhost, 127.0.0.1 and ::1); repeat for more.
        #[arg(long = "san")]
        sans: Vec<String>,
    },
}

/// Runs a `tls` command; `config` is read only when no `--dir` is given.
pub fn command(cmd: TlsCommand, config: &Path) -> anyhow::Result<()> {
    match cmd {
        TlsCommand::Init { dir, sans } => {
            let dir = match dir {
                Some(d) => d,
                None => HubConfig::load(config)?.tls.dir,
            };
            let made = telltale_tls::init(&dir, &sans)?;
            for f in &made.files {
                println!("wrote {}", f.display());
            }
            println!("server certificate names: {}", made.names.join(", "));
            eprintln!(
                "keep ca.key secret (it signs device certificates); give clients ca.pem to trust; see docs/security.md"
            );
            Ok(())
        }
    }
}

/// Checks that the MQTT TLS listener's files can be read and used.
pub fn check_broker_files(t: &BrokerTlsConfig) -> anyhow::Result<()> {
    telltale_tls::load_certified_key(&t.cert, &t.key)?;
    let ca = std::fs::read(&t.ca).with_context(|| format!("cannot read {}", t.ca.display()))?;
    anyhow::ensure!(
        String::from_utf8_lossy(&ca).contains("-----BEGIN CERTIFICATE-----"),
        "{} holds no PEM certificate",
        t.ca.display()
    );
    Ok(())
}
