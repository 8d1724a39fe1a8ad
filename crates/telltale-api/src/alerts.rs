//! Alert and rule routes beside the alerts collection: one alert,
//! acknowledging it, and the rules (list, one, create, replace, delete).
//! Every refusal is problem+json naming the field at fault.

use crate::auth::Caller;
use crate::items::AlertItem;
use crate::problem::Problem;
use crate::rules::RulesError;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use telltale_rules::Rule;
use telltale_store::AckOutcome;
use telltale_watch::Item;

fn item_json(item: &AlertItem) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        item.json().to_owned(),
    )
        .into_response()
}

fn bad_id(id: &str) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no alert {id:?}"),
    )
}

/// `GET /v1/alerts/{id}`.
pub async fn one(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(n) = id.parse::<u64>() else {
        return bad_id(&id).into_response();
    };
    let readers = s.readers.clone();
    match tokio::task::spawn_blocking(move || readers.with(|r| r.alert(n))).await {
        Ok(Ok(Some(row))) => item_json(&AlertItem::new(row)),
        Ok(Ok(None)) => bad_id(&id).into_response(),
        Ok(Err(e)) => Problem::internal(e).into_response(),
        Err(e) => Problem::internal(e).into_response(),
    }
}

/// The body of an acknowledgement (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    /// Who acknowledges (shown on the alert).
    by: Option<String>,
    /// Why, or what is being done.
    note: Option<String>,
}

/// Most characters of `by` and of `note`.
const MAX_BY: usize = 128;
const MAX_NOTE: usize = 2_000;

/// `POST /v1/alerts/{id}/ack`: marks an open alert acknowledged. Watchers
/// of `/v1/alerts` see the change; repeat notifications stop.
pub async fn ack(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let Ok(n) = id.parse::<u64>() else {
        return bad_id(&id).into_response();
    };
    let body: AckBody = if body.iter().all(u8::is_ascii_whitespace) {
        AckBody::default()
    } else {
        match parse_body(&body) {
            Ok(b) => b,
            Err(p) => return p.into_response(),
        }
    };
    let by = body.by.unwrap_or_else(|| "api".into());
    for (field, text, max) in [
        ("by", Some(&by), MAX_BY),
        ("note", body.note.as_ref(), MAX_NOTE),
    ] {
        if text.is_some_and(|t| t.chars().count() > max) {
            return body_problem(field, format!("{field} is longer than {max} characters"))
                .into_response();
        }
    }
    match s.store.ack_alert(n, &by, body.note.as_deref()).await {
        Ok(AckOutcome::Done(row)) => {
            tracing::info!(
                target: "audit",
                token = caller.who(),
                token_id = caller.key().unwrap_or("-"),
                alert = n,
                by = %by,
                "alert acknowledged"
            );
            item_json(&AlertItem::new(row))
        }
        Ok(AckOutcome::NotFound) => bad_id(&id).into_response(),
        Ok(AckOutcome::Resolved(_)) => Problem::new(
            StatusCode::CONFLICT,
            "alert_resolved",
            format!("alert {n} is resolved: there is nothing to acknowledge"),
        )
        .into_response(),
        Err(e) => Problem::internal(e).into_response(),
    }
}

/// A request body as `T`, or a 400 naming the field that did not fit.
pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." { String::new() } else { field };
        let detail = e.inner().to_string();
        Problem {
            field: (!field.is_empty()).then_some(field),
            ..Problem::new(StatusCode::BAD_REQUEST, "bad_body", detail)
        }
    })
}

fn body_problem(field: &str, detail: String) -> Problem {
    Problem {
        field: Some(field.to_owned()),
        ..Problem::new(StatusCode::BAD_REQUEST, "bad_body", detail)
    }
}

fn rules_problem(e: RulesError) -> Problem {
    match e {
        RulesError::Invalid { field, message, .. } => Problem {
            field: Some(field),
            ..Problem::new(StatusCode::BAD_REQUEST, "bad_rule", message)
        },
        RulesError::NotFound(name) => Problem::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no rule {name:?}"),
        ),
        e @ (RulesError::Io { .. } | RulesError::Parse { .. } | RulesError::StoreGone) => {
            Problem::internal(e)
        }
    }
}

/// `GET /v1/rules`: the rules in force, in file order.
pub async fn rules(State(s): State<AppState>) -> Response {
    Json(serde_json::json!({"kind": "RuleList", "items": s.rules.rules()})).into_response()
}

/// `GET /v1/rules/{name}`.
pub async fn rule(State(s): State<AppState>, Path(name): Path<String>) -> Response {
    match s.rules.rules().into_iter().find(|r| r.name == name) {
        Some(r) => Json(r).into_response(),
        None => rules_problem(RulesError::NotFound(name)).into_response(),
    }
}

/// `POST /v1/rules`: a new rule; 409 if its name is taken.
pub async fn create_rule(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    let rule: Rule = match parse_body(&body) {
        Ok(r) => r,
        Err(p) => return p.into_response(),
    };
    if s.rules.rules().iter().any(|r| r.name == rule.name) {
        return Problem {
            field: Some("name".into()),
            ..Problem::new(
                StatusCode::CONFLICT,
                "rule_exists",
                format!(
                    "a rule named {:?} exists; PUT /v1/rules/{{name}} replaces it",
                    rule.name
                ),
            )
        }
        .into_response();
    }
    save(&s, &caller, rule).await
}

/// `PUT /v1/rules/{name}`: creates or replaces the rule `name`.
pub async fn put_rule(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let rule: Rule = match parse_body(&body) {
        Ok(r) => r,
        Err(p) => return p.into_response(),
    };
    if rule.name != name {
        return body_problem(
            "name",
            format!("the body names rule {:?}, the path {name:?}", rule.name),
        )
        .into_response();
    }
    save(&s, &caller, rule).await
}

fn audit_rule(caller: &Caller, rule: &str, change: &str) {
    tracing::info!(
        target: "audit",
        token = caller.who(),
        token_id = caller.key().unwrap_or("-"),
        rule,
        change,
        "rule changed"
    );
}

async fn save(s: &AppState, caller: &Caller, rule: Rule) -> Response {
    let shown = rule.clone();
    match s.rules.upsert(rule).await {
        Ok(true) => {
            audit_rule(caller, &shown.name, "created");
            (StatusCode::CREATED, Json(shown)).into_response()
        }
        Ok(false) => {
            audit_rule(caller, &shown.name, "replaced");
            Json(shown).into_response()
        }
        Err(e) => rules_problem(e).into_response(),
    }
}

/// `DELETE /v1/rules/{name}`: its open alerts resolve.
pub async fn delete_rule(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    match s.rules.delete(&name).await {
        Ok(()) => {
            audit_rule(&caller, &name, "deleted");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => rules_problem(e).into_response(),
    }
}
