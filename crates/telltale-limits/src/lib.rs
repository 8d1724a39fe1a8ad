//! The limits more than one part of Telltale applies, each written once:
//!
//! - [`backoff`]: the retry schedule (exponential growth to a ceiling, with
//!   jitter) of every retry loop: the agent's reconnects, the hub's
//!   notification retries, the laptop client's reconnects;
//! - [`per_key`]: a cap on how many of something one key holds at once:
//!   connections per client address (the HTTP server and the MQTT
//!   listeners), watches and sockets per API token.
//!
//! This crate is pure and tiny on purpose, so that the edge agent can use it
//! too: it does no IO, starts no task, reads no clock, draws no random
//! number (callers pass one) and logs nothing. Request rates are not here:
//! they are governor's, in the API.

pub mod backoff;
pub mod per_key;

pub use backoff::{Backoff, Jitter, Schedule};
pub use per_key::{KeyGuard, PerKey};
