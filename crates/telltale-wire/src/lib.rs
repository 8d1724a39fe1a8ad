//! The device wire format that sensors, the edge agent and the hub share: MQTT
//! topic names, SenML packs (RFC 8428) in CBOR and JSON, the batch-identity
//! extension, and the JSON control messages (ack, status, commands).
//!
//! This crate owns encoding, decoding and validation; it never does IO. It is
//! `#![no_std]`: without features it still encodes a fixed-capacity batch
//! (`heapless`) into a caller's buffer, so a bare-metal sensor can use it; the
//! `alloc` feature adds decoding into owned packs and the JSON messages.
#![no_std]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod batch;
pub mod error;
pub mod senml;
pub mod topic;

#[cfg(feature = "alloc")]
pub mod decode;
#[cfg(feature = "alloc")]
pub mod msg;

pub use error::{EncodeError, TopicError, WireError};
pub use senml::{BatchId, Record, ValueRef};
