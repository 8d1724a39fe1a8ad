//! Shared by the store's integration tests.

use std::path::Path;
use telltale_store::writer::{self, AckOut, WriterHandle};
use telltale_store::StoreConfig;
use tokio::sync::mpsc;

/// Starts a writer on a real SQLite file; returns its handle, its thread and
/// the acks it sends.
pub fn open(
    path: &Path,
    config: StoreConfig,
) -> (
    WriterHandle,
    std::thread::JoinHandle<()>,
    mpsc::UnboundedReceiver<Vec<AckOut>>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (w, j) = writer::start(path, config, tx).expect("store opens");
    (w, j, rx)
}
