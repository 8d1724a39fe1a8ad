//! JSON control messages on the `ack`, `status`, `cmd` and `cmd/result`
//! topics. JSON so that a person can read them with `mosquitto_sub`.

use alloc::collections::BTreeMap;
use alloc::string::String;
use serde::{Deserialize, Serialize};

/// On `ack`: every batch of `outbox` with a sequence number up to and
/// including `upto` is committed to the hub's store; the sender may delete them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    pub outbox: u64,
    pub upto: u64,
}

/// On `status` (retained): the device's birth or its Last Will.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// `online` or `offline`.
    pub state: Presence,
    /// Agent name and version, such as `telltale-agent/0.1.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Free-form labels (site, room, kind).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Whether a device is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Presence {
    Online,
    Offline,
}

impl Status {
    /// Parses a status payload: the JSON object, or the bare words `online`
    /// / `offline` that simple devices set as their Last Will.
    pub fn parse(payload: &[u8]) -> Result<Status, serde_json::Error> {
        match payload {
            b"online" => Ok(Status::bare(Presence::Online)),
            b"offline" => Ok(Status::bare(Presence::Offline)),
            _ => serde_json::from_slice(payload),
        }
    }

    fn bare(state: Presence) -> Status {
        Status {
            state,
            agent: None,
            labels: BTreeMap::new(),
        }
    }
}

/// On `cmd`: a command for the device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// Hub-assigned id, echoed in every result.
    pub id: String,
    /// Command name, such as `ping` or `set_interval`.
    pub name: String,
    /// Parameters, by name.
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Deadline in milliseconds since the epoch: a device must not start the
    /// command after it.
    pub deadline: u64,
}

/// On `cmd/result`: receipt or outcome of a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandResult {
    /// The command's id.
    pub id: String,
    /// `delivered`, `succeeded` or `failed`.
    pub status: ResultStatus,
    /// Output of the command (bounded by the device).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What a device reports about a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResultStatus {
    Delivered,
    Succeeded,
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_forms() {
        assert_eq!(
            Status::parse(b"offline").expect("bare").state,
            Presence::Offline
        );
        let s = Status::parse(br#"{"state":"online","agent":"a/1","labels":{"site":"n"}}"#)
            .expect("json");
        assert_eq!(s.state, Presence::Online);
        assert_eq!(s.labels.get("site").map(String::as_str), Some("n"));
        assert!(Status::parse(b"{}").is_err());
        let a: Ack = serde_json::from_slice(br#"{"outbox":5,"upto":9}"#).expect("ack");
        assert_eq!(a, Ack { outbox: 5, upto: 9 });
    }
}
