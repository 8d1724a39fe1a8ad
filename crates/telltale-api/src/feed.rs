//! The store's commits as the collections' live events: each commit's
//! changed rows become items (built only for collections someone watches)
//! and move each collection's version. A commit the feed missed (it lagged
//! behind the store's broadcast) is read back from the store, so watchers
//! never see a gap.

use crate::items::{AlertItem, CommandItem, DeviceItem, LatestItem, ReadingItem};
use crate::AppState;
use std::sync::Arc;
use telltale_store::writer::{Changes, ReadingsSwitch};
use telltale_watch::{Collection, Item, SourceError};
use tokio::sync::broadcast;

/// Feeds each commit of the store to the collections' watchers, until the
/// store's broadcast ends.
pub async fn feed(
    state: AppState,
    mut commits: broadcast::Receiver<Arc<Changes>>,
    readings_switch: ReadingsSwitch,
) {
    let c = state.collections.clone();
    loop {
        let result = match commits.recv().await {
            Ok(changes) => {
                // The store builds reading rows only while someone watches
                // them.
                readings_switch.set(c.readings.has_watchers());
                let r = feed_readings(&c.readings, &changes).await;
                // Readings shared before their commit move nothing else.
                if changes.committed {
                    let ch = &*changes;
                    let l = feed_commit(&c.latest, &ch.latest, ch.latest_seq, LatestItem::new);
                    let d = feed_commit(&c.devices, &ch.devices, ch.devices_seq, DeviceItem::new);
                    let a = feed_commit(&c.alerts, &ch.alerts, ch.alerts_seq, AlertItem::new);
                    let m =
                        feed_commit(&c.commands, &ch.commands, ch.commands_seq, CommandItem::new);
                    let j = feed_seq(&c.rejects, ch.rejects_seq);
                    let (l, d, a, m, j) = (l.await, d.await, a.await, m.await, j.await);
                    r.and(l).and(d).and(a).and(m).and(j)
                } else {
                    r
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                let mut result = Ok(());
                for coll in &c.served {
                    result = result.and(coll.resync().await);
                }
                result
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "feeding watchers failed");
        }
    }
}

/// Moves the readings log to a change: shares its readings if someone
/// watches (reading back what was written before the store knew a watcher
/// had come), otherwise only moves its version.
async fn feed_readings(coll: &Collection<ReadingItem>, c: &Changes) -> Result<(), SourceError> {
    let r = if !coll.has_watchers() {
        coll.advance(c.last_seq);
        Ok(())
    } else if c.readings.is_empty() && c.last_seq > coll.last_seq() {
        coll.resync().await
    } else {
        let items = c.readings.iter().cloned().map(ReadingItem::new).collect();
        coll.publish_checked(items).await
    };
    if c.committed {
        coll.committed(c.last_seq);
    }
    r
}

/// Moves a state collection to a commit: shares the rows it changed, as
/// items, if someone watches it; otherwise only moves its version.
async fn feed_commit<T: Item, R: Clone>(
    coll: &Collection<T>,
    rows: &[R],
    seq: u64,
    item: impl Fn(R) -> Arc<T>,
) -> Result<(), SourceError> {
    let r = if coll.has_watchers() {
        coll.publish_checked(rows.iter().cloned().map(item).collect())
            .await
    } else {
        coll.advance(seq);
        Ok(())
    };
    coll.committed(seq);
    r
}

/// Moves a collection whose rows a commit does not carry to its new last
/// seq: a watched one reads what is new from the store.
async fn feed_seq<T: Item>(coll: &Collection<T>, seq: u64) -> Result<(), SourceError> {
    let r = if coll.has_watchers() && seq > coll.last_seq() {
        coll.resync().await
    } else {
        coll.advance(seq);
        Ok(())
    };
    coll.committed(seq);
    r
}
