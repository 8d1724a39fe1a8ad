//! The messages of the WebSocket `/v1/ws` (docs/api.md, "WebSocket"):
//! JSON text frames, each with a `type`; every client message has an
//! integer `id`, echoed in what answers it.

use crate::event::WatchEvent;
use crate::items::{Alert, Command};
use crate::problem::Problem;
use crate::states::Resource;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A message a client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// The token, as the first message (when the handshake carried none).
    Auth {
        /// Echoed in `auth_ok`, when given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        /// The API token (`tlt_...`).
        token: String,
    },
    /// Start a watch; its events come with this message's id.
    Watch(WatchMessage),
    /// End a watch.
    Unwatch {
        /// The message's id.
        id: u64,
        /// The id of the `watch` message to end.
        watch: u64,
    },
    /// Send a command to a device; its steps come as events of this id.
    Command(CommandMessage),
    /// Acknowledge an open alert.
    AckAlert(AckAlertMessage),
    /// Ask for a `pong`.
    Ping {
        /// The message's id.
        id: u64,
    },
}

/// A `watch` message: the collection and, as fields, the query parameters
/// of its route. A parameter left out is not sent (the hub refuses `null`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchMessage {
    /// The message's id, which the watch's events carry.
    pub id: u64,
    /// The collection.
    pub resource: Resource,
    /// A filter expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Device ids and globs, comma separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Metric names and globs, comma separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// Alerts: severities, comma separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// Alerts and commands: states, comma separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Start strictly after this version.
    #[serde(
        rename = "resourceVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub resource_version: Option<String>,
    /// State collections: the current items first, then their changes.
    #[serde(
        rename = "sendInitialEvents",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub send_initial_events: Option<bool>,
    /// Readings: start at this time (RFC 3339 or a duration ago).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// A BOOKMARK at least this often.
    #[serde(
        rename = "heartbeatSeconds",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub heartbeat_seconds: Option<u64>,
    /// End the watch after this long.
    #[serde(
        rename = "timeoutSeconds",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout_seconds: Option<u64>,
    /// At most one event per item this often.
    #[serde(
        rename = "throttleSeconds",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub throttle_seconds: Option<u64>,
}

impl WatchMessage {
    /// A watch of `resource` with no parameters.
    pub fn new(id: u64, resource: Resource) -> WatchMessage {
        WatchMessage {
            id,
            resource,
            filter: None,
            device: None,
            metric: None,
            severity: None,
            state: None,
            resource_version: None,
            send_initial_events: None,
            since: None,
            heartbeat_seconds: None,
            timeout_seconds: None,
            throttle_seconds: None,
        }
    }
}

/// A `command` message: the body of `POST /v1/devices/{id}/commands` with
/// the device and the idempotency key as fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandMessage {
    /// The message's id, which the command's steps carry.
    pub id: u64,
    /// The device's id.
    pub device: String,
    /// The command's name.
    pub name: String,
    /// Its parameters.
    #[serde(default)]
    pub params: Map<String, Value>,
    /// Seconds from now to its result (the hub's default is 30).
    #[serde(
        rename = "timeoutSeconds",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout_seconds: Option<u64>,
    /// A resend with the same key finds the same command.
    #[serde(
        rename = "idempotencyKey",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub idempotency_key: Option<String>,
}

/// An `ack_alert` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AckAlertMessage {
    /// The message's id.
    pub id: u64,
    /// The alert's id.
    pub alert: u64,
    /// Who acknowledges (the hub records `websocket` without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// A note for whoever looks at the alert next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A message the hub sends. `T` is the item of the watched collection, or
/// `serde_json::Value` for a socket that carries several.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage<T = Value> {
    /// The `auth` message's token is good.
    AuthOk {
        /// The `auth` message's id, when it had one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        /// The token's scope (`read`, `control`, `admin`).
        scope: String,
    },
    /// The answer to a message.
    Result(Reply),
    /// An event of a watch, or a step of a command.
    Event {
        /// The id of the `watch` or `command` message.
        id: u64,
        /// The event.
        event: WatchEvent<T>,
    },
    /// The answer to a `ping`.
    Pong {
        /// The `ping` message's id.
        id: u64,
    },
}

/// A `result` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The id of the message it answers; `None` (`null`) when that message
    /// had no integer id.
    pub id: Option<u64>,
    /// Whether the message was done.
    pub success: bool,
    /// Why not, when it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
    /// A `command` message's command, as queued (boxed: most results
    /// carry none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Box<Command>>,
    /// An `ack_alert` message's alert, acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<Box<Alert>>,
}
