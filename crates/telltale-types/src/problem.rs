//! The RFC 9457 problem details body of every error the API raises.

use serde::{Deserialize, Serialize};

/// An error answer (`application/problem+json`), the `object` of an
/// `ERROR` event and the `error` of a failed WebSocket result. The
/// optional members are left out when absent, as the API writes them. RFC
/// 9457 makes every member optional, so reading one from another server
/// takes what is there and leaves the rest empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Problem {
    /// `https://telltale.invalid/problems/{code}`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The HTTP reason phrase.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What was wrong, for a person.
    pub detail: String,
    /// A stable code to match on (`bad_filter`, `expired`, ...).
    pub code: String,
    /// The parameter at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    /// The field of a request body at fault (a rule's `condition.above`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// `bad_filter`: byte offset of the error in the parameter's value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    /// `expired`: the oldest resourceVersion still held.
    #[serde(
        rename = "oldestResourceVersion",
        skip_serializing_if = "Option::is_none"
    )]
    pub oldest_resource_version: Option<String>,
    /// 503 `not_ready` (`/readyz`): the part that is not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
