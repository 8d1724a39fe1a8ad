//! `telltale-hub token create|list|revoke`: API tokens in `auth.db`, written
//! directly (short transactions), so it works while the hub runs; the hub's
//! credentials poller picks the change up within its poll.
//!
//! `create` prints only the token on standard output (so a script can take
//! it with `$(...)`) and a note on standard error: the token is shown this
//! once and stored only as a hash.

use crate::config::HubConfig;
use crate::credentials;
use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use telltale_store::auth::{AuthDb, AuthError, Scope, TokenInfo};

/// `telltale-hub token ...`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (only it) on standard output.
    Create {
        /// Config file (for `data_dir`).
        #[arg(long, default_value = "/etc/telltale/hub.toml")]
        config: PathBuf,
        /// A name to know it by (1 to 64 of A-Z a-z 0-9 . _ -), unique
        /// among live tokens.
        #[arg(long)]
        name: String,
        /// What it may do: read (snapshots and watches), control (read,
        /// commands, alert acks), admin (control, rules, tokens, device
        /// credentials).
        #[arg(long, value_enum)]
        scope: ScopeArg,
    },
    /// List the tokens (never their secrets).
    List {
        /// Config file (for `data_dir`).
        #[arg(long, default_value = "/etc/telltale/hub.toml")]
        config: PathBuf,
    },
    /// Revoke a token by id or name; its open streams end within seconds.
    Revoke {
        /// Config file (for `data_dir`).
        #[arg(long, default_value = "/etc/telltale/hub.toml")]
        config: PathBuf,
        /// The token's id (from `token list`) or name.
        id_or_name: String,
    },
}

/// A scope on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScopeArg {
    Read,
    Control,
    Admin,
}

impl From<ScopeArg> for Scope {
    fn from(s: ScopeArg) -> Scope {
        match s {
            ScopeArg::Read => Scope::Read,
            ScopeArg::Control => Scope::Control,
            ScopeArg::Admin => Scope::Admin,
        }
    }
}

/// Opens `auth.db` of the hub whose config is at `config`.
fn open(config: &Path) -> anyhow::Result<AuthDb> {
    let config = HubConfig::load(config)?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    let path = credentials::path(&config.data_dir);
    AuthDb::open(&path).with_context(|| format!("cannot open {}", path.display()))
}

/// Runs a `token` subcommand.
pub fn run(cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create {
            config,
            name,
            scope,
        } => {
            let mut db = open(&config)?;
            let t = match db.create_token(&name, scope.into()) {
                Ok(t) => t,
                Err(e @ (AuthError::TokenNameTaken(_) | AuthError::BadTokenName)) => {
                    anyhow::bail!("{e}")
                }
                Err(e) => return Err(anyhow::Error::new(e).context("cannot create the token")),
            };
            tracing::info!(
                target: "audit",
                by = "command line",
                token_id = %t.info.id,
                token = %t.info.name,
                scope = t.info.scope.as_str(),
                "api token created"
            );
            eprintln!(
                "token {:?} (id {}, scope {}) created; it is shown only now: keep it somewhere safe",
                t.info.name,
                t.info.id,
                t.info.scope.as_str()
            );
            println!("{}", t.token);
            Ok(())
        }
        TokenCommand::List { config } => {
            let db = open(&config)?;
            print!("{}", table(&db.tokens().context("cannot read the tokens")?));
            Ok(())
        }
        TokenCommand::Revoke { config, id_or_name } => {
            let mut db = open(&config)?;
            match db
                .revoke_token(&id_or_name)
                .context("cannot revoke the token")?
            {
                Some(t) => {
                    tracing::info!(
                        target: "audit",
                        by = "command line",
                        token_id = %t.id,
                        token = %t.name,
                        "api token revoked"
                    );
                    println!("token {:?} (id {}) revoked", t.name, t.id);
                    Ok(())
                }
                None => anyhow::bail!("no live token with id or name {id_or_name:?}"),
            }
        }
    }
}

fn time(ms: i64) -> String {
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64),
    )
    .to_string()
}

/// The tokens as a table: id, name, scope, created, revoked.
fn table(tokens: &[TokenInfo]) -> String {
    let rows: Vec<[String; 5]> = tokens
        .iter()
        .map(|t| {
            [
                t.id.clone(),
                t.name.clone(),
                t.scope.as_str().to_owned(),
                time(t.created_ms),
                t.revoked_ms.map_or_else(|| "-".to_owned(), time),
            ]
        })
        .collect();
    let header = ["ID", "NAME", "SCOPE", "CREATED", "REVOKED"];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let text: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(text.join("  ").trim_end());
        out.push('\n');
    };
    line(&header);
    for r in &rows {
        line(&r.each_ref().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_a_table_without_secrets() {
        let t = TokenInfo {
            id: "0a1b2c3d".into(),
            name: "wall-screen".into(),
            scope: Scope::Read,
            created_ms: 1_750_000_000_000,
            revoked_ms: None,
        };
        let text = table(&[t]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("ID        NAME         SCOPE"));
        assert!(lines[1].starts_with("0a1b2c3d  wall-screen  read   2025-06-15T"));
        assert!(lines[1].ends_with('-'));
    }
}
