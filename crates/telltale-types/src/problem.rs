//! The RFC 9457 problem details body of every error the API raises.

use serde::{Deserialize, Serialize};

/// An error answer (`application/problem+json`), the `object` of an
/// `ERROR` event and the `error` of a failed WebSocket result. The
/// optional members are left out when absent, as the API writes them. RFC
/// 9457 makes every member optional, so reading one from another server
/// takes what is there and leaves the rest empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(description = "RFC 9457 problem details.", example = json!({"type": "https://telltale.invalid/problems/bad_filter", "title": "Bad Request", "status": 400, "detail": "expected a number, a quoted string, true or false at 7", "code": "bad_filter", "param": "filter", "position": 7})))]
#[serde(default)]
pub struct Problem {
    /// `https://telltale.invalid/problems/{code}`.
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(format = "uri", required = true))]
    pub kind: String,
    /// The HTTP reason phrase of `status`.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub title: String,
    /// The HTTP status.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub status: u16,
    /// What was wrong, for a person.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub detail: String,
    /// A stable code to match on (`bad_filter`, `expired`, ...).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub code: String,
    /// The parameter at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub param: Option<String>,
    /// For a bad request body: the field at fault (`condition.clear_below`,
    /// `notify[1]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub field: Option<String>,
    /// `bad_filter`: byte position of the error in the parameter's value.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub position: Option<u64>,
    /// `expired`: the oldest resourceVersion still held; a watch or long
    /// poll may start there.
    #[serde(
        rename = "oldestResourceVersion",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub oldest_resource_version: Option<String>,
    /// `not_ready` (`/readyz`): the part that is not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub reason: Option<String>,
}
