//! Device commands: `POST /v1/devices/{id}/commands` creates one (once per
//! `Idempotency-Key`), `GET /v1/commands/{id}` reads one; the collection
//! `/v1/commands` is served like every other. The WebSocket's `command`
//! message goes through [`create`] as well.

use crate::auth::Caller;
use crate::items::CommandItem;
use crate::problem::Problem;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;
use std::sync::Arc;
use telltale_store::commands::NewCommand;
use telltale_watch::Item;

/// The body of a new command.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CommandRequest {
    /// The command's name: a built-in (`ping`, `set_interval`, `read_now`,
    /// `get_config`) or one the device's agent configures.
    pub name: String,
    /// Its parameters.
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
    /// How long the command may take, from now to its result (1 to 86400
    /// s, default 30): past it, an undelivered command expires and a
    /// delivered one times out.
    pub timeout_seconds: Option<u64>,
}

/// Default and largest command timeout, seconds.
const DEFAULT_TIMEOUT: u64 = 30;
const MAX_TIMEOUT: u64 = 86_400;
/// Largest params object, bytes of JSON.
const MAX_PARAMS: usize = 16 * 1024;
/// Longest idempotency key.
const MAX_KEY: usize = 128;

fn field_problem(field: &str, detail: String) -> Problem {
    Problem {
        field: Some(field.to_owned()),
        ..Problem::new(StatusCode::BAD_REQUEST, "bad_body", detail)
    }
}

/// Creates a command for `device`: the device must be known. Returns the
/// command and whether it is new (an idempotency key seen before is not).
pub async fn create(
    s: &AppState,
    device: &str,
    req: CommandRequest,
    idem_key: Option<String>,
) -> Result<(Arc<CommandItem>, bool), Problem> {
    let name_ok = (1..=64).contains(&req.name.len())
        && req
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !name_ok {
        return Err(field_problem(
            "name",
            "a command name is 1 to 64 of A-Z a-z 0-9 _ . -".into(),
        ));
    }
    let timeout = req.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT);
    if !(1..=MAX_TIMEOUT).contains(&timeout) {
        return Err(field_problem(
            "timeoutSeconds",
            format!("timeoutSeconds must be from 1 to {MAX_TIMEOUT}"),
        ));
    }
    let params = serde_json::Value::Object(req.params).to_string();
    if params.len() > MAX_PARAMS {
        return Err(field_problem(
            "params",
            format!("params must be at most {MAX_PARAMS} bytes of JSON"),
        ));
    }
    if let Some(k) = &idem_key {
        if k.is_empty() || k.len() > MAX_KEY {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "bad_idempotency_key",
                format!("Idempotency-Key must be 1 to {MAX_KEY} characters"),
            ));
        }
    }
    let readers = s.readers.clone();
    let id = device.to_owned();
    let known = tokio::task::spawn_blocking(move || readers.with(|r| r.device(&id)))
        .await
        .map_err(Problem::internal)?
        .map_err(Problem::internal)?;
    if known.is_none() {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no device {device:?}: the hub has not heard from it"),
        ));
    }
    let (row, new) = s
        .store
        .new_command(NewCommand {
            device: device.to_owned(),
            name: req.name,
            params,
            deadline_ms: telltale_store::now_ms() + (timeout * 1000) as i64,
            idem_key,
        })
        .await
        .map_err(Problem::internal)?;
    Ok((CommandItem::new(row), new))
}

fn item_json(status: StatusCode, item: &CommandItem) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        item.json().to_owned(),
    )
        .into_response()
}

/// The audit line of a command sent.
pub(crate) fn audit(caller: &Caller, item: &CommandItem) {
    tracing::info!(
        target: "audit",
        token = caller.who(),
        token_id = caller.key().unwrap_or("-"),
        device = %item.obj.device,
        command = %item.obj.name,
        id = item.obj.id,
        "command sent"
    );
}

/// `POST /v1/devices/{id}/commands`.
pub async fn post(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(device): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req: CommandRequest = match crate::alerts::parse_body(&body) {
        Ok(r) => r,
        Err(p) => return p.into_response(),
    };
    let key = match headers.get("idempotency-key").map(|v| v.to_str()) {
        None => None,
        Some(Ok(k)) => Some(k.to_owned()),
        Some(Err(_)) => {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                "bad_idempotency_key",
                "Idempotency-Key must be visible ASCII",
            )
            .into_response()
        }
    };
    match create(&s, &device, req, key).await {
        Ok((item, true)) => {
            audit(&caller, &item);
            item_json(StatusCode::CREATED, &item)
        }
        Ok((item, false)) => item_json(StatusCode::OK, &item),
        Err(p) => p.into_response(),
    }
}

/// `GET /v1/commands/{id}`.
pub async fn one(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    let missing = || {
        Problem::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no command {id:?}"),
        )
        .into_response()
    };
    let Ok(n) = id.parse::<u64>() else {
        return missing();
    };
    let readers = s.readers.clone();
    match tokio::task::spawn_blocking(move || readers.with(|r| r.command(n))).await {
        Ok(Ok(Some(row))) => item_json(StatusCode::OK, &CommandItem::new(row)),
        Ok(Ok(None)) => missing(),
        Ok(Err(e)) => Problem::internal(e).into_response(),
        Err(e) => Problem::internal(e).into_response(),
    }
}
