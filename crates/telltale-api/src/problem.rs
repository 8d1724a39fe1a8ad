//! RFC 9457 problem details: the one error type of the API. 4xx say what was
//! wrong; 5xx say little and log the cause.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answer.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// A stable code clients match on (`bad_filter`, `expired`, ...).
    pub code: &'static str,
    /// The parameter at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    /// The field of a request body at fault (a rule's `condition.above`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Position of the error in the parameter's value (filters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
    /// For `expired`: the oldest resourceVersion still held.
    #[serde(
        rename = "oldestResourceVersion",
        skip_serializing_if = "Option::is_none"
    )]
    pub oldest: Option<String>,
    /// For 503 `not_ready` (`/readyz`): the part that is not ready,
    /// `store` or `ingest`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// For 429: seconds to wait.
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

impl Problem {
    /// A problem with `status`, `code` and `detail`.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Problem {
        Problem {
            kind: format!("https://telltale.invalid/problems/{code}"),
            title: status.canonical_reason().unwrap_or("error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            code,
            param: None,
            field: None,
            position: None,
            oldest: None,
            reason: None,
            retry_after: None,
        }
    }

    /// 400 about one query parameter.
    pub fn bad_param(param: &str, detail: impl Into<String>) -> Problem {
        Problem {
            param: Some(param.to_owned()),
            ..Problem::new(StatusCode::BAD_REQUEST, "bad_parameter", detail)
        }
    }

    /// 500 that logs its cause and says little.
    pub fn internal(cause: impl std::fmt::Display) -> Problem {
        tracing::error!(error = %cause, "request failed");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the hub could not answer; see its log",
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry = self.retry_after;
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut res = (status, body).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = retry {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}
