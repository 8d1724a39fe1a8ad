//! Typed errors: callers match on them and the hub stores their text as the
//! reason of a reject.

/// Why a payload was refused. The `Display` text is what the rejects table keeps.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WireError {
    #[error("payload is empty")]
    Empty,
    #[error("payload of {size} bytes is over the limit of {limit}")]
    PayloadTooLarge { size: usize, limit: usize },
    #[error("payload is neither a SenML CBOR array nor a SenML JSON array")]
    NotSenml,
    #[error("cbor is malformed or truncated at byte {offset}")]
    MalformedCbor { offset: usize },
    #[error("json is malformed: {detail}")]
    MalformedJson {
        #[cfg(feature = "alloc")]
        detail: alloc::string::String,
        #[cfg(not(feature = "alloc"))]
        detail: &'static str,
    },
    #[error("record {record}: label {label} has the wrong type")]
    WrongType { record: usize, label: &'static str },
    #[error("record {record}: value of {label} is not a finite number")]
    NotFinite { record: usize, label: &'static str },
    #[error("pack has {count} records, over the limit of {limit}")]
    TooManyRecords { count: usize, limit: usize },
    #[error("pack has no records")]
    NoRecords,
    #[error("record {record}: name of {len} characters is over the limit of {limit}")]
    NameTooLong {
        record: usize,
        len: usize,
        limit: usize,
    },
    #[error("record {record}: name is empty")]
    EmptyName { record: usize },
    #[error("record {record}: name has a character SenML does not allow")]
    BadName { record: usize },
    #[error("record {record}: no value (v, vs, vb, vd or s)")]
    NoValue { record: usize },
    #[error("record {record}: more than one value")]
    TwoValues { record: usize },
    #[error("record {record}: unit of {len} characters is over the limit of {limit}")]
    UnitTooLong {
        record: usize,
        len: usize,
        limit: usize,
    },
    #[error("record {record}: string value of {len} bytes is over the limit of {limit}")]
    StringTooLong {
        record: usize,
        len: usize,
        limit: usize,
    },
    #[error("record {record}: must-understand label {label} is not supported")]
    MustUnderstand {
        record: usize,
        #[cfg(feature = "alloc")]
        label: alloc::string::String,
        #[cfg(not(feature = "alloc"))]
        label: &'static str,
    },
    #[error("record {record}: SenML version {version} is newer than 10")]
    Version { record: usize, version: i64 },
    #[error("batch identity is incomplete or appears after the first record")]
    BadBatchIdentity,
}

impl WireError {
    /// A short stable code for counting rejects by kind.
    pub fn code(&self) -> &'static str {
        match self {
            WireError::Empty => "empty",
            WireError::PayloadTooLarge { .. } => "payload_too_large",
            WireError::NotSenml => "not_senml",
            WireError::MalformedCbor { .. } => "malformed_cbor",
            WireError::MalformedJson { .. } => "malformed_json",
            WireError::WrongType { .. } => "wrong_type",
            WireError::NotFinite { .. } => "not_finite",
            WireError::TooManyRecords { .. } => "too_many_records",
            WireError::NoRecords => "no_records",
            WireError::NameTooLong { .. } => "name_too_long",
            WireError::EmptyName { .. } => "empty_name",
            WireError::BadName { .. } => "bad_name",
            WireError::NoValue { .. } => "no_value",
            WireError::TwoValues { .. } => "two_values",
            WireError::UnitTooLong { .. } => "unit_too_long",
            WireError::StringTooLong { .. } => "string_too_long",
            WireError::MustUnderstand { .. } => "must_understand",
            WireError::Version { .. } => "senml_version",
            WireError::BadBatchIdentity => "bad_batch_identity",
        }
    }
}

/// Why a topic is not one of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic is not under the prefix")]
    Prefix,
    #[error("device id must be 1-64 characters of A-Z a-z 0-9 . _ -")]
    DeviceId,
    #[error("topic kind is not telemetry, ack, status, cmd or cmd/result")]
    Kind,
}

impl TopicError {
    /// A short stable code for counting rejects by kind.
    pub fn code(&self) -> &'static str {
        match self {
            TopicError::Prefix => "bad_topic",
            TopicError::DeviceId => "bad_device_id",
            TopicError::Kind => "bad_topic",
        }
    }
}

/// Why a pack could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("output buffer is too small")]
    BufferFull,
    #[error("batch is full")]
    BatchFull,
    #[error("string is longer than its fixed capacity")]
    TooLong,
    #[error("value is not a finite number")]
    NotFinite,
}
