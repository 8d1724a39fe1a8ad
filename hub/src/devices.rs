//! Device identity on MQTT: the login check of the broker's TLS listener
//! (client id = user name = device id, the device's live password), the
//! disconnection of devices whose credentials were revoked or replaced, and
//! the `telltale-hub device add|list|revoke` commands.
//!
//! A device's certificate (its `O` is the device's tenant) confines it to
//! the topics under `/tenants/{tenant}/`; its password is what makes
//! revocation immediate, since the broker cannot check certificates against
//! a revocation list.

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use telltale_broker::{DeviceAuth, Kicker};
use telltale_store::auth::{AuthDb, AuthSnapshot};
use telltale_store::writer::WriterHandle;
use telltale_store::{Presence, WriteOp};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The broker's login check for the TLS listener. Every refusal is an
/// audit log line (target `audit`) naming the client id and user name,
/// never the password.
pub fn auth_handler(auth: watch::Receiver<Arc<AuthSnapshot>>) -> DeviceAuth {
    Arc::new(move |client_id: &str, user: &str, password: &str| {
        let snapshot = auth.borrow().clone();
        let refused = if user.is_empty() {
            Some("no user name (the device id)")
        } else if client_id != user {
            Some("the client id is not the user name (both are the device id)")
        } else if snapshot.device_tenant(user).is_none() {
            Some("no live credentials for this device (unknown or revoked)")
        } else if !snapshot.device_password_ok(user, password) {
            Some("wrong password")
        } else {
            None
        };
        match refused {
            Some(reason) => {
                tracing::warn!(target: "audit", client_id = ?client_id, user = ?user, reason, "mqtt login refused");
                false
            }
            None => {
                tracing::info!(target: "audit", device = ?user, "mqtt login");
                true
            }
        }
    })
}

/// Disconnects each device whose credential goes away (revoked) or changes
/// (a new password) while the hub runs, and marks it offline; its
/// reconnect is then refused by [`auth_handler`] (or needs the new
/// password). Runs until `shutdown`.
pub async fn disconnect_revoked(
    mut auth: watch::Receiver<Arc<AuthSnapshot>>,
    kicker: Kicker,
    store: WriterHandle,
    shutdown: CancellationToken,
) {
    let mut old = auth.borrow_and_update().clone();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = auth.changed() => if changed.is_err() { return },
        }
        let new = auth.borrow_and_update().clone();
        let gone = new.devices_changed_since(&old);
        old = new;
        for (device, tenant) in gone {
            // Inside the broker a certificate client's id is
            // `{tenant}.{client id}`.
            let client = format!("{tenant}.{device}");
            let k = kicker.clone();
            let kicked = tokio::task::spawn_blocking(move || k.kick(&client)).await;
            match kicked {
                Ok(Ok(())) => {
                    tracing::info!(target: "audit", device = ?device, "device disconnected: its credentials were revoked or replaced");
                }
                Ok(Err(e)) => {
                    tracing::error!(target: "audit", device = ?device, error = %e, "could not disconnect a device whose credentials were revoked or replaced");
                }
                Err(e) => tracing::error!(error = %e, "disconnect task failed"),
            }
            // Its Last Will went out under a tenant that is no longer its
            // (and is refused): say offline here.
            let p = Presence {
                device,
                at_ms: telltale_store::now_ms(),
                online: false,
                agent: None,
                labels: None,
            };
            if store.send(WriteOp::Presence(p)).await.is_err() {
                return;
            }
        }
    }
}

/// `telltale-hub device ...`.
#[derive(clap::Subcommand)]
pub enum DeviceCommand {
    /// Creates a device's MQTT credentials, or gives it a new password
    /// (keeping its tenant). Prints the password (shown only now) and the
    /// tenant; when the hub's CA exists, also writes the device's
    /// certificate and key, and the CA certificate, to --out.
    Add {
        /// The device id (1-64 characters of A-Z a-z 0-9 . _ -).
        id: String,
        /// Where to write ID.pem, ID.key and ca.pem.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Lists device credentials (never their passwords).
    List,
    /// Revokes a device's credentials: a running hub disconnects it within
    /// a second and refuses it after.
    Revoke {
        /// The device id.
        id: String,
    },
}

/// Runs a `device` command against `auth_db`, with the CA in `tls_dir`.
/// `mqtt_host` goes in the printed agent config.
pub fn command(
    cmd: DeviceCommand,
    auth_db: &Path,
    tls_dir: &Path,
    mqtt_host: &str,
    mqtt_port: u16,
    prefix: &str,
) -> anyhow::Result<()> {
    if let Some(dir) = auth_db.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut db =
        AuthDb::open(auth_db).with_context(|| format!("cannot open {}", auth_db.display()))?;
    match cmd {
        DeviceCommand::Add { id, out } => {
            anyhow::ensure!(
                telltale_wire::topic::valid_device_id(&id),
                "device id {id:?} must be 1-64 characters of A-Z a-z 0-9 . _ -"
            );
            // The certificate first: without the CA nothing is written, and
            // a failure leaves no credential behind without its files.
            let ca = if telltale_tls::Ca::exists(tls_dir) {
                Some(telltale_tls::Ca::load(tls_dir).context("cannot load the hub's CA")?)
            } else {
                None
            };
            let files = ca.as_ref().map(|_| {
                (
                    out.join(format!("{id}.pem")),
                    out.join(format!("{id}.key")),
                    out.join("ca.pem"),
                )
            });
            if let Some((cert, key, _)) = &files {
                for f in [cert, key] {
                    anyhow::ensure!(!f.exists(), "{} exists; move it away first", f.display());
                }
            }
            let new = db.create_device(&id).context("cannot store the device")?;
            let tenant = &new.credential.tenant;
            println!("device:   {id}");
            println!("tenant:   {tenant}");
            println!("password: {}", new.password);
            eprintln!("the password is shown only now; the hub keeps only its hash");
            match (ca, files) {
                (Some(ca), Some((cert, key, ca_file))) => {
                    let issued = ca
                        .issue_device(tenant, &id)
                        .context("cannot issue the device certificate")?;
                    telltale_tls::create_private_dir(&out)?;
                    telltale_tls::write_public(&cert, issued.cert_pem.as_bytes())?;
                    telltale_tls::write_private(&key, issued.key_pem.as_bytes())?;
                    // The CA certificate is public; keep an existing copy.
                    match telltale_tls::write_public(&ca_file, ca.cert_pem().as_bytes()) {
                        Ok(()) | Err(telltale_tls::TlsError::Exists(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                    eprintln!(
                        "wrote {}, {} and {}",
                        cert.display(),
                        key.display(),
                        ca_file.display()
                    );
                    println!();
                    println!("# agent config ([mqtt] section); copy the three files to the device");
                    print!(
                        "{}",
                        agent_snippet(&id, tenant, &new.password, mqtt_host, mqtt_port, prefix)
                    );
                }
                _ => eprintln!(
                    "no CA in {} (run `telltale-hub tls init`): no certificate written; a device needs one to connect over TLS",
                    tls_dir.display()
                ),
            }
            Ok(())
        }
        DeviceCommand::List => {
            let devices = db.devices().context("cannot read the devices")?;
            println!(
                "{:<24} {:<18} {:<20} revoked",
                "device", "tenant", "created"
            );
            for d in devices {
                println!(
                    "{:<24} {:<18} {:<20} {}",
                    d.device,
                    d.tenant,
                    day(d.created_ms),
                    d.revoked_ms.map(day).unwrap_or_else(|| "-".into())
                );
            }
            Ok(())
        }
        DeviceCommand::Revoke { id } => {
            if db.revoke_device(&id).context("cannot revoke")? {
                println!("revoked {id}");
                eprintln!("a running hub disconnects it within a second");
                Ok(())
            } else {
                anyhow::bail!("no live credentials for device {id:?}")
            }
        }
    }
}

/// The `[mqtt]` section of the agent's config for a certificate device.
fn agent_snippet(
    id: &str,
    tenant: &str,
    password: &str,
    host: &str,
    port: u16,
    prefix: &str,
) -> String {
    format!(
        "device_id = \"{id}\"\n\n[mqtt]\nhost = \"{host}\"\nport = {port}\nusername = \"{id}\"\npassword = \"{password}\"\ntopic_prefix = \"/tenants/{tenant}/{prefix}\"\nca = \"/etc/telltale/ca.pem\"\ncert = \"/etc/telltale/{id}.pem\"\nkey = \"/etc/telltale/{id}.key\"\n"
    )
}

/// A time in ms as UTC, to the second.
fn day(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days() {
        assert_eq!(day(951_782_400_000), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn the_snippet_is_an_agent_mqtt_section() {
        let s = agent_snippet("d1", "tabc", "pw", "hub.local", 8883, "telltale/v1");
        let v: toml::Value = toml::from_str(&s).expect("toml");
        assert_eq!(
            v["mqtt"]["topic_prefix"].as_str(),
            Some("/tenants/tabc/telltale/v1")
        );
        assert_eq!(v["mqtt"]["username"].as_str(), Some("d1"));
    }

    #[test]
    fn logins_are_checked_against_the_live_credentials() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut db = AuthDb::open(&dir.path().join("auth.db")).expect("open");
        let a = db.create_device("a").expect("a");
        db.create_device("b").expect("b");
        let (tx, rx) = watch::channel(Arc::new(db.snapshot().expect("snapshot")));
        let check = auth_handler(rx);
        assert!(check("a", "a", &a.password));
        assert!(!check("a", "a", "wrong"));
        assert!(!check("b", "a", &a.password), "client id must be the user");
        assert!(!check("a", "b", &a.password), "b's name with a's password");
        assert!(!check("", "", ""));
        db.revoke_device("a").expect("revoke");
        tx.send_replace(Arc::new(db.snapshot().expect("snapshot")));
        assert!(!check("a", "a", &a.password), "revoked");
    }
}
