//! Credentials: API tokens and device credentials, in their own small
//! database (`auth.db` beside `hub.db`), so a backup of the telemetry never
//! carries secrets and the command line can change credentials while the
//! hub runs (short transactions; the hub's store writer never touches it).
//!
//! Secrets are always generated here (never chosen by a person), shown once
//! at creation, and stored only as SHA-256 hashes. A high-entropy random
//! secret needs no slow password hash: a SHA-256 preimage search over 192
//! bits is out of reach, and a fast hash lets the hub check a token on every
//! request without a CPU cost an attacker could multiply.
//!
//! Every change bumps `meta.generation`; the hub polls it (a one-row read)
//! and reloads an [`AuthSnapshot`] when it moves, so a revocation made from
//! the command line takes effect within the poll interval.

use crate::config::Synchronous;
use crate::meta;
use crate::schema::{self, Migration};
use crate::{now_ms, StoreError};
use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

/// Migrations of the credentials database (see `schema.rs`).
const MIGRATIONS: &[Migration] = &[&["
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE tokens (
        id TEXT PRIMARY KEY,          -- public, part of the token text
        name TEXT NOT NULL,
        scope TEXT NOT NULL,          -- read | control | admin
        hash BLOB NOT NULL,           -- SHA-256 of the token text
        created INTEGER NOT NULL,
        revoked INTEGER
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX tokens_live_name ON tokens(name) WHERE revoked IS NULL;
    CREATE TABLE device_credentials (
        device TEXT PRIMARY KEY,
        tenant TEXT NOT NULL UNIQUE,  -- certificate O and topic prefix
        hash BLOB NOT NULL,           -- SHA-256 of the password
        created INTEGER NOT NULL,
        revoked INTEGER
    ) WITHOUT ROWID;
    "]];

/// What a token may do. Each scope includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Snapshots and watches of every collection.
    Read,
    /// `read`, and sending commands and acknowledging alerts.
    Control,
    /// `control`, and rules, device credentials and tokens.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Control => "control",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "control" => Some(Scope::Control),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    /// Whether a token of this scope may do what `needed` requires.
    pub fn allows(self, needed: Scope) -> bool {
        self >= needed
    }
}

/// A token as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// Public id, part of the token text; safe to log.
    pub id: String,
    pub name: String,
    pub scope: Scope,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
}

/// A token just created: the only time its text exists.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub info: TokenInfo,
    /// `tlt_{id}_{secret}`: what the client sends as a Bearer token.
    pub token: String,
}

/// A device's credential as listed (never its password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCredential {
    pub device: String,
    /// The device's tenant: alphanumeric, unique, the `O` of its client
    /// certificate and its MQTT topic prefix `/tenants/{tenant}/`.
    pub tenant: String,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
}

/// A device credential just created: the only time its password exists.
#[derive(Debug, Clone)]
pub struct NewDeviceCredential {
    pub credential: DeviceCredential,
    pub password: String,
}

/// Errors of credential changes that a caller shows to a person.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("a token named {0:?} already exists; revoke it first or choose another name")]
    TokenNameTaken(String),
    #[error("a token name is 1 to 64 characters of A-Z a-z 0-9 . _ -")]
    BadTokenName,
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for AuthError {
    fn from(e: rusqlite::Error) -> Self {
        AuthError::Store(StoreError::Sqlite(e))
    }
}

/// The credentials database.
#[derive(Debug)]
pub struct AuthDb {
    conn: Connection,
}

/// Lowercase hex of bytes.
fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn random_hex(bytes: usize) -> String {
    let buf: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    hex(&buf)
}

/// SHA-256 of a secret's text.
pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn valid_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl AuthDb {
    /// Opens (creating if needed) the credentials database at `path`.
    /// The file is made readable by its owner only.
    pub fn open(path: &Path) -> Result<AuthDb, StoreError> {
        let conn = schema::open(path, MIGRATIONS, Synchronous::Full)?;
        {
            use std::os::unix::fs::PermissionsExt;
            let owner_only = std::fs::Permissions::from_mode(0o600);
            std::fs::set_permissions(path, owner_only)
                .map_err(|e| StoreError::Commit(format!("{}: {e}", path.display())))?;
        }
        Ok(AuthDb { conn })
    }

    /// The change counter: moves on every change to any credential.
    pub fn generation(&self) -> Result<u64, StoreError> {
        meta::seq(&self.conn, "generation")
    }

    fn bump(tx: &Connection) -> Result<(), StoreError> {
        let g = meta::seq(tx, "generation")? + 1;
        meta::set(tx, "generation", &g.to_string())
    }

    /// Creates a token. Names are unique among tokens not revoked.
    pub fn create_token(&mut self, name: &str, scope: Scope) -> Result<NewToken, AuthError> {
        if !valid_name(name) {
            return Err(AuthError::BadTokenName);
        }
        let tx = self.conn.transaction()?;
        let taken: Option<String> = tx
            .query_row(
                "SELECT id FROM tokens WHERE name = ?1 AND revoked IS NULL",
                [name],
                |r| r.get(0),
            )
            .optional()?;
        if taken.is_some() {
            return Err(AuthError::TokenNameTaken(name.to_owned()));
        }
        let id = random_hex(4);
        let token = format!("tlt_{id}_{}", random_hex(24));
        let created = now_ms();
        tx.execute(
            "INSERT INTO tokens(id, name, scope, hash, created) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, name, scope.as_str(), &hash_secret(&token)[..], created],
        )?;
        Self::bump(&tx)?;
        tx.commit()?;
        Ok(NewToken {
            info: TokenInfo {
                id,
                name: name.to_owned(),
                scope,
                created_ms: created,
                revoked_ms: None,
            },
            token,
        })
    }

    /// Revokes the token with this id, or the live token with this name.
    /// Returns the token revoked, `None` when there is none.
    pub fn revoke_token(&mut self, id_or_name: &str) -> Result<Option<TokenInfo>, StoreError> {
        let tx = self.conn.transaction()?;
        let id: Option<String> = tx
            .query_row(
                "SELECT id FROM tokens WHERE revoked IS NULL AND (id = ?1 OR name = ?1)",
                [id_or_name],
                |r| r.get(0),
            )
            .optional()?;
        let Some(id) = id else {
            return Ok(None);
        };
        tx.execute(
            "UPDATE tokens SET revoked = ?2 WHERE id = ?1",
            params![id, now_ms()],
        )?;
        Self::bump(&tx)?;
        tx.commit()?;
        Ok(self.tokens()?.into_iter().find(|t| t.id == id))
    }

    /// Every token, revoked ones included, oldest first.
    pub fn tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, name, scope, created, revoked FROM tokens ORDER BY created, id")?;
        let rows = stmt.query_map([], |r| {
            let scope: String = r.get(2)?;
            Ok(TokenInfo {
                id: r.get(0)?,
                name: r.get(1)?,
                scope: Scope::parse(&scope).unwrap_or(Scope::Read),
                created_ms: r.get(3)?,
                revoked_ms: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Creates a device's credential, or replaces it (a new password; the
    /// tenant is kept so certificates already issued stay valid) when one
    /// exists and is not revoked. A revoked device gets a new tenant, so its
    /// old certificate is useless.
    pub fn create_device(&mut self, device: &str) -> Result<NewDeviceCredential, StoreError> {
        let tx = self.conn.transaction()?;
        let old: Option<(String, Option<i64>)> = tx
            .query_row(
                "SELECT tenant, revoked FROM device_credentials WHERE device = ?1",
                [device],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let tenant = match old {
            Some((t, None)) => t,
            _ => format!("t{}", random_hex(8)),
        };
        let password = random_hex(24);
        let created = now_ms();
        tx.execute(
            "INSERT INTO device_credentials(device, tenant, hash, created, revoked)
             VALUES (?1, ?2, ?3, ?4, NULL)
             ON CONFLICT(device) DO UPDATE SET tenant = excluded.tenant,
               hash = excluded.hash, created = excluded.created, revoked = NULL",
            params![device, tenant, &hash_secret(&password)[..], created],
        )?;
        Self::bump(&tx)?;
        tx.commit()?;
        Ok(NewDeviceCredential {
            credential: DeviceCredential {
                device: device.to_owned(),
                tenant,
                created_ms: created,
                revoked_ms: None,
            },
            password,
        })
    }

    /// Revokes a device's credential. Returns whether there was a live one.
    pub fn revoke_device(&mut self, device: &str) -> Result<bool, StoreError> {
        let tx = self.conn.transaction()?;
        let n = tx.execute(
            "UPDATE device_credentials SET revoked = ?2 WHERE device = ?1 AND revoked IS NULL",
            params![device, now_ms()],
        )?;
        if n > 0 {
            Self::bump(&tx)?;
        }
        tx.commit()?;
        Ok(n > 0)
    }

    /// Every device credential, revoked ones included, by device.
    pub fn devices(&self) -> Result<Vec<DeviceCredential>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT device, tenant, created, revoked FROM device_credentials ORDER BY device",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(DeviceCredential {
                device: r.get(0)?,
                tenant: r.get(1)?,
                created_ms: r.get(2)?,
                revoked_ms: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Everything the hub checks against, read in one transaction.
    pub fn snapshot(&mut self) -> Result<AuthSnapshot, StoreError> {
        let tx = self.conn.transaction()?;
        let generation = meta::seq(&tx, "generation")?;
        let mut tokens = HashMap::new();
        {
            let mut stmt = tx.prepare(
                "SELECT id, name, scope, created, hash FROM tokens WHERE revoked IS NULL",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let scope: String = r.get(2)?;
                let hash: Vec<u8> = r.get(4)?;
                let Ok(hash) = <[u8; 32]>::try_from(hash.as_slice()) else {
                    continue;
                };
                tokens.insert(
                    hash,
                    TokenInfo {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        scope: Scope::parse(&scope).unwrap_or(Scope::Read),
                        created_ms: r.get(3)?,
                        revoked_ms: None,
                    },
                );
            }
        }
        let mut devices = HashMap::new();
        {
            let mut stmt = tx.prepare(
                "SELECT device, tenant, hash FROM device_credentials WHERE revoked IS NULL",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let hash: Vec<u8> = r.get(2)?;
                let Ok(hash) = <[u8; 32]>::try_from(hash.as_slice()) else {
                    continue;
                };
                devices.insert(
                    r.get::<_, String>(0)?,
                    DeviceEntry {
                        tenant: r.get(1)?,
                        hash,
                    },
                );
            }
        }
        tx.commit()?;
        let tenants = devices
            .iter()
            .map(|(d, e)| (e.tenant.clone(), d.clone()))
            .collect();
        Ok(AuthSnapshot {
            generation,
            tokens,
            devices,
            tenants,
        })
    }
}

/// A live device credential as the hub checks it.
#[derive(Debug, Clone)]
struct DeviceEntry {
    tenant: String,
    hash: [u8; 32],
}

/// The live credentials at one generation, for checks in memory.
#[derive(Debug, Clone, Default)]
pub struct AuthSnapshot {
    pub generation: u64,
    tokens: HashMap<[u8; 32], TokenInfo>,
    devices: HashMap<String, DeviceEntry>,
    tenants: HashMap<String, String>,
}

impl AuthSnapshot {
    /// The live token this text is, if any.
    pub fn token(&self, presented: &str) -> Option<&TokenInfo> {
        self.tokens.get(&hash_secret(presented))
    }

    /// Whether any token is live (a hub with none runs open only on
    /// loopback).
    pub fn has_tokens(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Whether the token with this id is still live.
    pub fn token_live(&self, id: &str) -> bool {
        self.tokens.values().any(|t| t.id == id)
    }

    /// Whether `password` is the live password of `device`.
    pub fn device_password_ok(&self, device: &str, password: &str) -> bool {
        self.devices
            .get(device)
            .is_some_and(|e| e.hash == hash_secret(password))
    }

    /// The device whose live tenant this is.
    pub fn tenant_device(&self, tenant: &str) -> Option<&str> {
        self.tenants.get(tenant).map(String::as_str)
    }

    /// The live tenant of a device.
    pub fn device_tenant(&self, device: &str) -> Option<&str> {
        self.devices.get(device).map(|e| e.tenant.as_str())
    }

    /// Whether any device credential is live.
    pub fn has_devices(&self) -> bool {
        !self.devices.is_empty()
    }

    /// The devices live in `older` whose credential this snapshot no longer
    /// has as it was (revoked, or a new password or tenant), each with its
    /// tenant in `older`: the connections to drop.
    pub fn devices_changed_since(&self, older: &AuthSnapshot) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = older
            .devices
            .iter()
            .filter(|(d, e)| {
                self.devices
                    .get(*d)
                    .is_none_or(|n| n.tenant != e.tenant || n.hash != e.hash)
            })
            .map(|(d, e)| (d.clone(), e.tenant.clone()))
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_hashed_checked_and_revoked() {
        let dir = tempfile::tempdir().expect("ok");
        let mut db = AuthDb::open(&dir.path().join("auth.db")).expect("ok");
        assert_eq!(db.generation().expect("ok"), 0);
        let t = db.create_token("wall", Scope::Read).expect("ok");
        assert!(t.token.starts_with(&format!("tlt_{}_", t.info.id)));
        assert!(matches!(
            db.create_token("wall", Scope::Admin),
            Err(AuthError::TokenNameTaken(_))
        ));
        assert!(matches!(
            db.create_token("a b", Scope::Admin),
            Err(AuthError::BadTokenName)
        ));
        let snap = db.snapshot().expect("ok");
        assert_eq!(snap.generation, 1);
        assert_eq!(snap.token(&t.token).expect("ok").scope, Scope::Read);
        assert!(snap.token("tlt_nope").is_none());
        // The secret is nowhere in the file's rows.
        let stored: Vec<u8> = db
            .conn
            .query_row("SELECT hash FROM tokens", [], |r| r.get(0))
            .expect("ok");
        assert_ne!(stored, t.token.as_bytes());
        assert!(db.revoke_token("wall").expect("ok").is_some());
        assert!(db.revoke_token("wall").expect("ok").is_none());
        let snap = db.snapshot().expect("ok");
        assert!(snap.token(&t.token).is_none());
        assert!(!snap.token_live(&t.info.id));
        // The name is free again.
        db.create_token("wall", Scope::Read).expect("ok");
    }

    #[test]
    fn devices_get_a_password_and_a_tenant_and_revocation_changes_the_tenant() {
        let dir = tempfile::tempdir().expect("ok");
        let mut db = AuthDb::open(&dir.path().join("auth.db")).expect("ok");
        let a = db.create_device("boiler-1").expect("ok");
        assert!(a
            .credential
            .tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric()));
        let snap = db.snapshot().expect("ok");
        assert!(snap.device_password_ok("boiler-1", &a.password));
        assert!(!snap.device_password_ok("boiler-1", "guess"));
        assert_eq!(snap.tenant_device(&a.credential.tenant), Some("boiler-1"));
        // A new password keeps the tenant.
        let b = db.create_device("boiler-1").expect("ok");
        assert_eq!(b.credential.tenant, a.credential.tenant);
        assert!(!db
            .snapshot()
            .expect("ok")
            .device_password_ok("boiler-1", &a.password));
        assert!(db.revoke_device("boiler-1").expect("ok"));
        let snap = db.snapshot().expect("ok");
        assert!(!snap.device_password_ok("boiler-1", &b.password));
        assert_eq!(snap.tenant_device(&a.credential.tenant), None);
        let c = db.create_device("boiler-1").expect("ok");
        assert_ne!(c.credential.tenant, a.credential.tenant);
        let fresh = db.snapshot().expect("snapshot");
        assert_eq!(
            fresh.devices_changed_since(&snap),
            Vec::<(String, String)>::new(),
            "nothing was live before"
        );
        assert_eq!(
            snap.devices_changed_since(&fresh),
            [("boiler-1".to_owned(), c.credential.tenant.clone())]
        );
    }
}
