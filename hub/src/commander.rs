//! Moves device commands along: publishes a queued command on its device's
//! `cmd` topic (QoS 1) once the device is not known to be offline, and ends
//! a command whose deadline passed: `expired` if its device never had it,
//! `timeout` if it did but no result came. Receipts and results come back
//! through ingest (`cmd/result`).
//!
//! A command published before a restart of the hub and not yet delivered is
//! published again after it (the broker's queue did not survive); the agent
//! runs a command id once however often it arrives.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use telltale_broker::Publisher;
use telltale_store::auth::AuthSnapshot;
use telltale_store::commands::{self, CommandState, CommandUpdate};
use telltale_store::writer::WriterHandle;
use telltale_store::{CommandRow, Reader};
use telltale_wire::msg::Command;
use telltale_wire::topic::Kind;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Looks again at least this often (deadlines, devices coming online).
const TICK: Duration = Duration::from_millis(500);

/// Runs until `shutdown`.
pub async fn run(
    db: PathBuf,
    store: WriterHandle,
    publisher: Publisher,
    prefix: String,
    auth: watch::Receiver<Arc<AuthSnapshot>>,
    shutdown: CancellationToken,
) {
    let mut changes = store.subscribe();
    // Published by this run of the hub.
    let mut published: HashSet<u64> = HashSet::new();
    let mut reader: Option<Reader> = None;
    loop {
        let db2 = db.clone();
        let r = reader.take();
        // The open commands and their devices' presence, read together.
        let read = tokio::task::spawn_blocking(move || {
            let r = match r {
                Some(r) => r,
                None => Reader::open(&db2)?,
            };
            let open = r.commands_open()?;
            let mut rows = Vec::with_capacity(open.len());
            for c in open {
                let online = r.device(&c.device)?.and_then(|d| d.online);
                rows.push((c, online));
            }
            Ok::<_, telltale_store::StoreError>((r, rows))
        })
        .await;
        let rows = match read {
            Ok(Ok((r, rows))) => {
                reader = Some(r);
                rows
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "commands could not be read");
                Vec::new()
            }
            Err(e) => {
                tracing::error!(error = %e, "commands could not be read");
                Vec::new()
            }
        };
        let now = telltale_store::now_ms();
        let mut next = now + TICK.as_millis() as i64;
        for (c, online) in rows {
            next = next.min(c.deadline_ms);
            let step = step(&c, online, now, published.contains(&c.id));
            if let Some(Step::Publish { then_sent }) = step {
                let auth = auth.borrow().clone();
                publish(&publisher, &auth, &prefix, &store.epoch, &c);
                published.insert(c.id);
                if then_sent {
                    update(&store, c.id, CommandState::Sent, None).await;
                }
            } else if let Some(Step::End(state, reason)) = step {
                update(&store, c.id, state, Some(reason.into())).await;
            }
        }
        let wait = Duration::from_millis((next - now).clamp(1, TICK.as_millis() as i64) as u64);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            // A new command or a device's presence changed: look now.
            r = changes.recv() => {
                if let Ok(c) = r {
                    if c.commands.is_empty() && c.devices.is_empty() {
                        continue;
                    }
                }
            }
        }
    }
}

/// What to do with an open command now.
#[derive(Debug, PartialEq)]
enum Step {
    /// Publish it; then mark it `sent` (not when publishing again).
    Publish { then_sent: bool },
    /// End it.
    End(CommandState, &'static str),
}

fn step(c: &CommandRow, online: Option<bool>, now: i64, published: bool) -> Option<Step> {
    let state = c.state;
    let late = now >= c.deadline_ms;
    match state {
        CommandState::Queued if late => Some(Step::End(
            CommandState::Expired,
            "the device was offline until the deadline",
        )),
        // A device that never said whether it is online may be listening.
        CommandState::Queued if online != Some(false) => Some(Step::Publish { then_sent: true }),
        CommandState::Sent if late => Some(Step::End(
            CommandState::Expired,
            "the device did not confirm receipt before the deadline",
        )),
        CommandState::Sent if !published => Some(Step::Publish { then_sent: false }),
        CommandState::Delivered if late => Some(Step::End(
            CommandState::Timeout,
            "the device sent no result before the deadline",
        )),
        _ => None,
    }
}

/// Publishes a command on its device's `cmd` topic: under the device's
/// tenant when it has credentials, so no other device can read it.
fn publish(publisher: &Publisher, auth: &AuthSnapshot, prefix: &str, epoch: &str, c: &CommandRow) {
    let params = serde_json::from_str(&c.params).unwrap_or_default();
    let cmd = Command {
        id: commands::wire_id(epoch, c.id),
        name: c.name.clone(),
        params,
        deadline: c.deadline_ms.max(0) as u64,
    };
    match serde_json::to_vec(&cmd) {
        Ok(payload) => {
            tracing::info!(command = c.id, device = %c.device, name = %c.name, "command sent");
            let topic = telltale_ingest::device_topic(auth, prefix, &c.device, Kind::Cmd);
            publisher.publish(topic, payload);
        }
        Err(e) => tracing::error!(error = %e, "command encode failed"),
    }
}

async fn update(store: &WriterHandle, id: u64, state: CommandState, reason: Option<String>) {
    let u = CommandUpdate {
        id,
        device: None,
        state,
        output: None,
        reason,
    };
    if let Err(e) = store.update_command(u).await {
        tracing::error!(error = %e, command = id, "command state not stored");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(state: &str, deadline_ms: i64) -> CommandRow {
        CommandRow {
            id: 1,
            seq: 1,
            device: "d".into(),
            name: "ping".into(),
            params: "{}".into(),
            state: CommandState::parse(state).expect("a known state"),
            created_ms: 0,
            deadline_ms,
            sent_ms: None,
            delivered_ms: None,
            finished_ms: None,
            output: None,
            reason: None,
            idem_key: None,
            updated_ms: 0,
        }
    }

    #[test]
    fn steps() {
        use CommandState::*;
        let publish = Some(Step::Publish { then_sent: true });
        // state, online, now, published before, what to do
        type Case = (&'static str, Option<bool>, i64, bool, Option<Step>);
        let cases: &[Case] = &[
            ("queued", Some(true), 0, false, publish),
            (
                "queued",
                None,
                0,
                false,
                Some(Step::Publish { then_sent: true }),
            ),
            ("queued", Some(false), 0, false, None),
            (
                "queued",
                Some(false),
                100,
                false,
                Some(Step::End(
                    Expired,
                    "the device was offline until the deadline",
                )),
            ),
            ("sent", Some(true), 0, true, None),
            (
                "sent",
                Some(true),
                0,
                false,
                Some(Step::Publish { then_sent: false }),
            ),
            (
                "sent",
                Some(true),
                100,
                true,
                Some(Step::End(
                    Expired,
                    "the device did not confirm receipt before the deadline",
                )),
            ),
            ("delivered", Some(true), 0, true, None),
            (
                "delivered",
                Some(false),
                100,
                true,
                Some(Step::End(
                    Timeout,
                    "the device sent no result before the deadline",
                )),
            ),
            ("succeeded", Some(true), 100, true, None),
        ];
        for (state, online, now, published, want) in cases {
            assert_eq!(
                &step(&cmd(state, 100), *online, *now, *published),
                want,
                "{state} {online:?} {now}"
            );
        }
    }
}
