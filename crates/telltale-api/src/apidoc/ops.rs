//! Each route's own operation text for the OpenAPI document: what it is,
//! what it takes and what it answers (see the module above for what is
//! added from its need). The collections' operations come from their
//! `Resource` descriptions instead.

use super::Op;
use serde_json::json;

/// `GET /healthz`.
pub fn health() -> Op {
    Op::new("health", "meta", "Liveness")
        .describe("Answers `ok` while the HTTP server runs.")
        .content(
            200,
            "The server runs.",
            json!({"text/plain": {"schema": {"const": "ok"}}}),
        )
}

/// `GET /readyz`.
pub fn ready() -> Op {
    Op::new("ready", "meta", "Readiness")
        .describe("Answers `ok` when the store writer and ingest are running (the probe writes nothing); otherwise 503 with a problem whose `reason` is `store` or `ingest`. `/healthz` answers while the HTTP server runs, ready or not.")
        .content(200, "The hub is ready.", json!({"text/plain": {"schema": {"const": "ok"}}}))
        .content(503, "Not ready: `code` is `not_ready`, `reason` names the part (`store`, `ingest`).", json!({"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}, "example": {"type": "https://telltale.invalid/problems/not_ready", "title": "Service Unavailable", "status": 503, "detail": "ingest is not running", "code": "not_ready", "reason": "ingest"}}}))
}

/// `GET /metrics`.
pub fn metrics() -> Op {
    Op::new("metrics", "meta", "Prometheus metrics")
        .describe("The hub's metrics in the Prometheus text format 0.0.4 (`text/plain; version=0.0.4`), each with `# HELP` and `# TYPE`: `telltale_readings_ingested_total`, `telltale_mqtt_messages_received_total`, `telltale_notifications_sent_total`, `telltale_notifications_failed_total`, `telltale_notifications_retried_total`, `telltale_rejects_total{reason}`, `telltale_store_commits_total`, `telltale_store_commit_seconds_total`, `telltale_retention_deleted_readings_total`, `telltale_store_readings`, `telltale_database_bytes`, `telltale_oldest_resource_version_seq{collection}`, `telltale_active_watches`, `telltale_alert_transitions_total`, `telltale_process_resident_memory_bytes`, `telltale_http_connections`, `telltale_http_connections_refused_total`, `telltale_api_auth_failures_total`, `telltale_api_rate_limited_total`. See docs/api.md. Needs a `read` token unless `[api] metrics_public = true`.")
        .content(200, "The metrics.", json!({"text/plain": {"schema": {"type": "string"}, "example": "# HELP telltale_readings_ingested_total Readings ingest decoded, validated and handed to the store.\n# TYPE telltale_readings_ingested_total counter\ntelltale_readings_ingested_total 3\n"}}))
        .refd(500, "Internal")
}

/// `GET /v1/devices/{id}`.
pub fn device() -> Op {
    Op::new("device", "collections", "One device")
        .param("deviceId")
        .json(200, "The device.", "Device")
        .refd(404, "NotFound")
        .refd(500, "Internal")
}

/// `GET /v1/openapi.json`.
pub fn openapi() -> Op {
    Op::new("openapi", "meta", "This document").content(
        200,
        "The OpenAPI document.",
        json!({"application/json": {"schema": {"type": "object"}}}),
    )
}

/// `GET /v1/alerts/{id}`.
pub fn alert() -> Op {
    Op::new("alert", "collections", "One alert")
        .param("alertId")
        .json(200, "The alert.", "Alert")
        .refd(404, "NotFound")
        .refd(500, "Internal")
}

/// `POST /v1/alerts/{id}/ack`.
pub fn ack_alert() -> Op {
    Op::new("ackAlert", "alerts", "Acknowledge an open alert")
        .describe("Sets the acknowledged flag with who, when and a note. Watchers of /v1/alerts see the change; repeat notifications stop. A resolved alert answers 409.")
        .param("alertId")
        .body("AckRequest", false)
        .json(200, "The acknowledged alert.", "Alert")
        .problem(400, "A bad request body: `field` names what is wrong.")
        .refd(404, "NotFound")
        .problem(409, "Conflict.")
        .refd(500, "Internal")
}

/// `GET /v1/rules`.
pub fn rules() -> Op {
    Op::new("rules", "alerts", "The alert rules in force").json(
        200,
        "The rules, in file order.",
        "RuleList",
    )
}

/// `POST /v1/rules`.
pub fn create_rule() -> Op {
    Op::new("createRule", "alerts", "Add a rule")
        .describe("Validated first: a bad rule is refused (400 `bad_rule` or `bad_body`, `field` names what) and the rules in force stay. Written to the rules file.")
        .body("Rule", true)
        .json(201, "The rule.", "Rule")
        .problem(400, "A bad request body: `field` names what is wrong.")
        .problem(409, "Conflict.")
        .refd(500, "Internal")
}

/// `GET /v1/rules/{name}`.
pub fn rule() -> Op {
    Op::new("rule", "alerts", "One rule")
        .param("ruleName")
        .json(200, "The rule.", "Rule")
        .refd(404, "NotFound")
}

/// `PUT /v1/rules/{name}`.
pub fn put_rule() -> Op {
    Op::new("putRule", "alerts", "Create or replace a rule")
        .describe("Replacing a rule resolves its open alerts if its definition changed.")
        .param("ruleName")
        .body("Rule", true)
        .json(200, "The rule.", "Rule")
        .json(201, "The rule.", "Rule")
        .problem(400, "A bad request body: `field` names what is wrong.")
        .refd(500, "Internal")
}

/// `DELETE /v1/rules/{name}`.
pub fn delete_rule() -> Op {
    Op::new("deleteRule", "alerts", "Delete a rule")
        .describe("Its open alerts resolve.")
        .param("ruleName")
        .empty(204, "Deleted.")
        .refd(404, "NotFound")
        .refd(500, "Internal")
}

/// `GET /v1/commands/{id}`.
pub fn command() -> Op {
    Op::new("command", "commands", "One command")
        .param("commandId")
        .json(200, "The command.", "Command")
        .refd(404, "NotFound")
        .refd(500, "Internal")
}

/// `POST /v1/devices/{id}/commands`.
pub fn send_command() -> Op {
    Op::new("sendCommand", "commands", "Send a command to a device")
        .describe("Creates a command (201), queued until the device is online or its deadline passes; the hub publishes it on the device's cmd topic. Watch `/v1/commands` (or the WebSocket) for its steps. A device the hub has not heard from is 404.")
        .param("deviceId")
        .param("IdempotencyKey")
        .body("CommandRequest", true)
        .json(200, "The command an earlier request with the same Idempotency-Key created.", "Command")
        .json(201, "The command.", "Command")
        .problem(400, "A bad request body: `field` names what is wrong.")
        .refd(404, "NotFound")
        .refd(500, "Internal")
}

/// `GET /v1/ws`.
pub fn websocket() -> Op {
    Op::new("websocket", "websocket", "WebSocket: many watches and control messages on one socket")
        .describe("Upgrade with the WebSocket handshake. JSON text frames; every client message has an integer `id`, echoed in replies: `watch` (resource readings, latest, devices, alerts or commands, with the query parameters of the collection routes as fields), `unwatch`, `command` (device, name, params, timeoutSeconds, idempotencyKey), `ack_alert` (alert, by, note), `ping`. Replies are `result` (success, or an `error` problem; the socket stays open), `event` (a watch event, or a step of a command the socket sent) and `pong`. The server pings every 20 s and closes a peer silent for 30 s. Limits: 64 watches, 64 KiB messages, 50 messages a second (burst 100). See docs/api.md. Auth: the token in the `Authorization` header, the `access_token` query parameter, or the first message `{\"type\":\"auth\",\"token\":\"tlt_...\"}` (answered `{\"type\":\"auth_ok\",\"scope\":\"read\"}`, or an error result and a close with 1008). `command` and `ack_alert` need scope `control`. A page whose `Origin` is neither the hub's own nor in `[api] cors_origins` is refused (403 `forbidden_origin`). When the token is revoked the socket gets an error result (401 `token_revoked`) and is closed with 1008.")
        .empty(101, "Switching to the WebSocket protocol.")
        .problem(403, "`forbidden_origin`: the `Origin` is not allowed.")
        .problem(426, "Not a WebSocket handshake.")
}

/// `GET /v1/whoami`.
pub fn whoami() -> Op {
    Op::new("whoami", "admin", "The caller's scope and token")
        .describe("Any valid token. In open mode it answers without a token: scope `admin`, token `null`, `open` true.")
        .json(200, "Who is calling.", "WhoAmI")
}

/// `GET /v1/tokens`.
pub fn list_tokens() -> Op {
    Op::new("listTokens", "admin", "API tokens")
        .describe("Every token, revoked ones included, oldest first; never a secret.")
        .json(200, "The tokens.", "TokenList")
}

/// `POST /v1/tokens`.
pub fn create_token() -> Op {
    Op::new("createToken", "admin", "Create an API token")
        .describe("The answer holds the token's text, shown this once; the hub stores a hash. It works within about a second (the hub reads its credentials every 500 ms).")
        .body("NewToken", true)
        .json(201, "The token, with its text.", "CreatedToken")
        .problem(400, "A bad request body (`bad_body`): `field` names what is wrong.")
        .problem(409, "`token_exists`: a live token has this name.")
}

/// `DELETE /v1/tokens/{id}`.
pub fn revoke_token() -> Op {
    Op::new("revokeToken", "admin", "Revoke an API token")
        .describe("By id (or name). Requests with it fail within about a second; its open streams end with an ERROR event (401 `token_revoked`) and its WebSockets close (1008).")
        .inline_param(json!({"name": "id", "in": "path", "required": true, "description": "The token's id or name.", "schema": {"type": "string"}}))
        .empty(204, "Revoked.")
        .refd(404, "NotFound")
}

/// `GET /v1/device-credentials`.
pub fn list_device_credentials() -> Op {
    Op::new("listDeviceCredentials", "admin", "Device credentials")
        .describe("Every device credential, revoked ones included; never a password.")
        .json(200, "The credentials.", "DeviceCredentialList")
}

/// `POST /v1/device-credentials`.
pub fn create_device_credential() -> Op {
    Op::new("createDeviceCredential", "admin", "Create (or renew) a device's credential")
        .describe("A new password for the device (its tenant is kept when it has a live one), shown this once.")
        .body("NewDeviceCredential", true)
        .json(201, "The device's password and tenant, and its client certificate and key when the hub has its own CA.", "CreatedDeviceCredential")
        .problem(400, "A bad request body (`bad_body`): `field` names what is wrong.")
}

/// `DELETE /v1/device-credentials/{device}`.
pub fn revoke_device_credential() -> Op {
    Op::new(
        "revokeDeviceCredential",
        "admin",
        "Revoke a device's credential",
    )
    .inline_param(
        json!({"name": "device", "in": "path", "required": true, "schema": {"type": "string"}}),
    )
    .empty(204, "Revoked.")
    .refd(404, "NotFound")
}
