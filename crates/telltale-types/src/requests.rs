//! The bodies of the API's POST routes that a client sends.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The body of `POST /v1/alerts/{id}/ack` (every field optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    /// Who acknowledges (default `api`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 128, nullable = false))]
    pub by: Option<String>,
    /// Why, or what is being done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 2000, nullable = false))]
    pub note: Option<String>,
}

/// The body of `POST /v1/devices/{id}/commands`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"name": "set_interval", "params": {"seconds": 5}, "timeoutSeconds": 10})))]
#[serde(deny_unknown_fields)]
pub struct CommandRequest {
    /// A built-in command of the agent (ping, set_interval, read_now,
    /// get_config) or one its config defines.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9_.-]{1,64}$"))]
    pub name: String,
    /// Its parameters.
    #[serde(default)]
    pub params: Map<String, Value>,
    /// From now to the result; default 30.
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 1, maximum = 86400, nullable = false)
    )]
    #[serde(
        rename = "timeoutSeconds",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout_seconds: Option<u64>,
}
