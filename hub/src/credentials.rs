//! The live credentials: `auth.db` (API tokens, device credentials) read
//! into an [`AuthSnapshot`] that the API and the broker check against, and
//! read again whenever its generation moves, so a token or device revoked
//! from the command line or the admin API stops working within a poll.

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use telltale_store::auth::{AuthDb, AuthSnapshot};
use tokio::sync::watch;

/// How often the generation is read (a one-row query).
pub const POLL: Duration = Duration::from_millis(500);

/// The credentials database beside the hub's database.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("auth.db")
}

/// Opens `auth.db`, reads the first snapshot and starts the thread that
/// keeps the returned receiver current. The thread ends when every
/// receiver is dropped.
pub fn start(path: &Path) -> anyhow::Result<watch::Receiver<Arc<AuthSnapshot>>> {
    let mut db = AuthDb::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let first = db
        .snapshot()
        .with_context(|| format!("cannot read {}", path.display()))?;
    let (tx, rx) = watch::channel(Arc::new(first));
    std::thread::Builder::new()
        .name("credentials".into())
        .spawn(move || poll(db, tx))
        .context("cannot start the credentials thread")?;
    Ok(rx)
}

fn poll(mut db: AuthDb, tx: watch::Sender<Arc<AuthSnapshot>>) {
    let mut failing = false;
    while !tx.is_closed() {
        std::thread::sleep(POLL);
        let current = tx.borrow().generation;
        let fresh = match db.generation() {
            Ok(g) if g == current => continue,
            Ok(_) => db.snapshot(),
            Err(e) => Err(e),
        };
        match fresh {
            Ok(s) => {
                failing = false;
                tracing::info!(target: "audit", generation = s.generation, "credentials reloaded");
                tx.send_replace(Arc::new(s));
            }
            // Keep the last good snapshot; say so once per failure run.
            Err(e) if !failing => {
                failing = true;
                tracing::error!(error = %e, "cannot read the credentials; keeping the last ones read");
            }
            Err(_) => {}
        }
    }
}
