//! The admin routes over `auth.db`: API tokens (`/v1/tokens`) and device
//! credentials (`/v1/device-credentials`), and `/v1/whoami`. Changes go to
//! the file through [`AuthDb`] (one connection, opened at first use, behind
//! a mutex, in a blocking task); the hub's credentials poller reads them
//! back within its poll, so the API and the broker see them.
//!
//! A token's text and a device's password are in the answer that creates
//! them, and nowhere else: not in lists, logs or audit lines.

use crate::alerts::parse_body;
use crate::auth::Caller;
use crate::problem::Problem;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;
use std::sync::Mutex;
use telltale_store::auth::{AuthDb, AuthError, DeviceCredential, Scope, TokenInfo};

/// The credentials database, opened at first use.
#[derive(Debug)]
pub struct AuthDbSlot {
    path: std::path::PathBuf,
    db: Mutex<Option<AuthDb>>,
}

impl AuthDbSlot {
    pub fn new(path: std::path::PathBuf) -> AuthDbSlot {
        AuthDbSlot {
            path,
            db: Mutex::new(None),
        }
    }

    /// Runs `f` on the database in a blocking task.
    async fn with<T: Send + 'static>(
        self: std::sync::Arc<Self>,
        f: impl FnOnce(&mut AuthDb) -> Result<T, AuthError> + Send + 'static,
    ) -> Result<T, AuthError> {
        tokio::task::spawn_blocking(move || {
            let mut slot = self.db.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = Some(AuthDb::open(&self.path)?);
            }
            match slot.as_mut() {
                Some(db) => f(db),
                None => Err(AuthError::Store(telltale_store::StoreError::Commit(
                    "the credentials database is not open".into(),
                ))),
            }
        })
        .await
        .unwrap_or_else(|e| {
            Err(AuthError::Store(telltale_store::StoreError::Commit(
                e.to_string(),
            )))
        })
    }
}

fn rfc3339(ms: i64) -> String {
    crate::items::rfc3339(ms)
}

fn token_json(t: &TokenInfo) -> serde_json::Value {
    json!({
        "id": t.id,
        "name": t.name,
        "scope": t.scope.as_str(),
        "created": rfc3339(t.created_ms),
        "revoked": t.revoked_ms.map(rfc3339),
    })
}

fn device_json(d: &DeviceCredential) -> serde_json::Value {
    json!({
        "device": d.device,
        "tenant": d.tenant,
        "created": rfc3339(d.created_ms),
        "revoked": d.revoked_ms.map(rfc3339),
    })
}

fn store_problem(e: AuthError) -> Problem {
    match e {
        AuthError::TokenNameTaken(_) => Problem {
            field: Some("name".into()),
            ..Problem::new(StatusCode::CONFLICT, "token_exists", e.to_string())
        },
        AuthError::BadTokenName => Problem {
            field: Some("name".into()),
            ..Problem::new(StatusCode::BAD_REQUEST, "bad_body", e.to_string())
        },
        AuthError::Store(e) => Problem::internal(e),
    }
}

/// `GET /v1/whoami`: the caller's scope and token.
pub async fn whoami(Extension(c): Extension<Caller>) -> Response {
    Json(json!({"scope": c.scope.as_str(), "token": c.token, "open": c.open})).into_response()
}

/// `GET /v1/tokens`: every token, revoked ones included, never a secret.
pub async fn tokens(State(s): State<AppState>) -> Response {
    match s.auth_db.clone().with(|db| Ok(db.tokens()?)).await {
        Ok(list) => {
            let items: Vec<_> = list.iter().map(token_json).collect();
            Json(json!({"kind": "TokenList", "items": items})).into_response()
        }
        Err(e) => store_problem(e).into_response(),
    }
}

/// The body of `POST /v1/tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTokenBody {
    /// A name to know the token by: 1 to 64 of A-Z a-z 0-9 . _ -.
    name: String,
    /// `read`, `control` or `admin`.
    scope: String,
}

/// `POST /v1/tokens`: a new token, shown once (201).
pub async fn create_token(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    body: Bytes,
) -> Response {
    let b: NewTokenBody = match parse_body(&body) {
        Ok(b) => b,
        Err(p) => return p.into_response(),
    };
    let Some(scope) = Scope::parse(&b.scope) else {
        return Problem {
            field: Some("scope".into()),
            ..Problem::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                "scope must be read, control or admin",
            )
        }
        .into_response();
    };
    let name = b.name.clone();
    match s
        .auth_db
        .clone()
        .with(move |db| db.create_token(&name, scope))
        .await
    {
        Ok(t) => {
            tracing::info!(
                target: "audit",
                by = c.who(),
                token_id = %t.info.id,
                token = %t.info.name,
                scope = t.info.scope.as_str(),
                "api token created"
            );
            let mut v = token_json(&t.info);
            v["token"] = t.token.into();
            (StatusCode::CREATED, Json(v)).into_response()
        }
        Err(e) => store_problem(e).into_response(),
    }
}

/// `DELETE /v1/tokens/{id}`: revokes a token (by id or name); open streams
/// of it end within a poll of the credentials.
pub async fn revoke_token(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let key = id.clone();
    match s
        .auth_db
        .clone()
        .with(move |db| Ok(db.revoke_token(&key)?))
        .await
    {
        Ok(Some(t)) => {
            tracing::info!(
                target: "audit",
                by = c.who(),
                token_id = %t.id,
                token = %t.name,
                "api token revoked"
            );
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(None) => Problem::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no live token {id:?}"),
        )
        .into_response(),
        Err(e) => store_problem(e).into_response(),
    }
}

/// `GET /v1/device-credentials`: every device credential, never a password.
pub async fn devices(State(s): State<AppState>) -> Response {
    match s.auth_db.clone().with(|db| Ok(db.devices()?)).await {
        Ok(list) => {
            let items: Vec<_> = list.iter().map(device_json).collect();
            Json(json!({"kind": "DeviceCredentialList", "items": items})).into_response()
        }
        Err(e) => store_problem(e).into_response(),
    }
}

/// The body of `POST /v1/device-credentials`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewDeviceBody {
    /// The device's id, as in its MQTT topics.
    device: String,
}

/// `POST /v1/device-credentials`: a device's password (new, or a new one
/// for a device that has one), shown once (201).
pub async fn create_device(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    body: Bytes,
) -> Response {
    let b: NewDeviceBody = match parse_body(&body) {
        Ok(b) => b,
        Err(p) => return p.into_response(),
    };
    if !telltale_wire::topic::valid_device_id(&b.device) {
        return Problem {
            field: Some("device".into()),
            ..Problem::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                "device must be a device id as in MQTT topics (1 to 64 of A-Z a-z 0-9 _ . -)",
            )
        }
        .into_response();
    }
    let device = b.device.clone();
    match s
        .auth_db
        .clone()
        .with(move |db| Ok(db.create_device(&device)?))
        .await
    {
        Ok(d) => {
            // With the hub's own CA, the device's client certificate too
            // (its O is the tenant that confines its topics).
            let ca_dir = s.ca_dir.clone();
            let (tenant, id) = (d.credential.tenant.clone(), d.credential.device.clone());
            let issued = tokio::task::spawn_blocking(move || -> Result<_, String> {
                let Some(dir) = ca_dir.filter(|d| telltale_tls::Ca::exists(d)) else {
                    return Ok(None);
                };
                let ca = telltale_tls::Ca::load(&dir).map_err(|e| e.to_string())?;
                let cert = ca.issue_device(&tenant, &id).map_err(|e| e.to_string())?;
                Ok(Some((cert, ca.cert_pem().to_owned())))
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
            let mut body = json!({
                "device": d.credential.device,
                "tenant": d.credential.tenant,
                "password": d.password,
            });
            match issued {
                Ok(Some((cert, ca))) => {
                    body["certificate"] = json!(cert.cert_pem);
                    body["key"] = json!(cert.key_pem);
                    body["ca"] = json!(ca);
                }
                Ok(None) => {}
                Err(e) => {
                    // The credential stands (its password works); the
                    // answer does not carry the CA's details.
                    tracing::error!(error = %e, device = %d.credential.device, "cannot issue the device certificate");
                    return Problem::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "certificate_failed",
                        "the credential was created but its certificate could not be issued; see the hub's log",
                    )
                    .into_response();
                }
            }
            tracing::info!(
                target: "audit",
                by = c.who(),
                device = %d.credential.device,
                tenant = %d.credential.tenant,
                "device credential created"
            );
            (StatusCode::CREATED, Json(body)).into_response()
        }
        Err(e) => store_problem(e).into_response(),
    }
}

/// `DELETE /v1/device-credentials/{device}`.
pub async fn revoke_device(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(device): Path<String>,
) -> Response {
    let key = device.clone();
    match s
        .auth_db
        .clone()
        .with(move |db| Ok(db.revoke_device(&key)?))
        .await
    {
        Ok(true) => {
            tracing::info!(
                target: "audit",
                by = c.who(),
                device = %device,
                "device credential revoked"
            );
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => Problem::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no live credential for device {device:?}"),
        )
        .into_response(),
        Err(e) => store_problem(e).into_response(),
    }
}
