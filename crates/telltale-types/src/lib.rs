//! The JSON objects of the hub's API as serde types: the items of each
//! collection (a reading, a latest value, a device, an alert, a command, a
//! reject), their lifecycle states, the list envelope, the watch event, the
//! RFC 9457 problem body, the bodies of the POST routes and the WebSocket
//! messages. Field names are those the API writes (docs/api.md); an
//! `Option` field is written as `null` unless the API leaves it out today,
//! so that the API, the client and a fleet service can all read and write
//! the same objects with these types. Fields are declared in the order
//! docs/api.md shows them; free JSON (an alert's value, a command's params
//! and output) is a `serde_json` value. This crate owns only the shapes: it
//! never does IO and knows nothing of HTTP, WebSockets as a transport,
//! tokio, SQLite or how the store keeps a row. It has no error type of its
//! own: a bad object is a `serde_json` error at the caller. With the
//! `openapi` feature (the hub's API only) the types also derive utoipa's
//! `ToSchema`, and the OpenAPI document's object schemas are generated from
//! them, so the document and the types cannot drift apart.

mod event;
mod items;
mod problem;
mod requests;
mod states;
mod ws;

pub use event::{Bookmark, List, WatchEvent};
pub use items::{Alert, AlertAck, Command, Device, Latest, Reading, ReadingValue, Reject};
pub use problem::Problem;
pub use requests::{AckRequest, CommandRequest};
pub use states::{AlertState, CommandState, Presence, Resource, Severity};
pub use ws::{AckAlertMessage, ClientMessage, CommandMessage, Reply, ServerMessage, WatchMessage};

#[cfg(test)]
mod tests;
