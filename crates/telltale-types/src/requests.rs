//! The bodies of the API's POST routes that a client sends.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The body of `POST /v1/alerts/{id}/ack` (every field optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    /// Who acknowledges (the hub records `api` without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Why, or what is being done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The body of `POST /v1/devices/{id}/commands`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandRequest {
    /// The command's name: a built-in (`ping`, `set_interval`, `read_now`,
    /// `get_config`) or one the device's agent configures.
    pub name: String,
    /// Its parameters.
    #[serde(default)]
    pub params: Map<String, Value>,
    /// Seconds from now to its result (1 to 86400; the hub's default is 30).
    #[serde(
        rename = "timeoutSeconds",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout_seconds: Option<u64>,
}
