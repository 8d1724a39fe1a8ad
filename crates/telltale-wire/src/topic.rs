//! MQTT topic names: `{prefix}/devices/{id}/{kind}`.

use crate::error::TopicError;

/// Default topic prefix.
pub const DEFAULT_PREFIX: &str = "telltale/v1";
/// Longest device id.
pub const MAX_DEVICE_ID: usize = 64;

/// What a topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// device → hub: a SenML pack
    Telemetry,
    /// hub → device: batches committed
    Ack,
    /// device → hub, retained: birth or offline (also the Last Will)
    Status,
    /// hub → device: a command
    Cmd,
    /// device → hub: receipt and outcome of a command
    CmdResult,
}

impl Kind {
    /// The topic suffix after the device id.
    pub const fn suffix(self) -> &'static str {
        match self {
            Kind::Telemetry => "telemetry",
            Kind::Ack => "ack",
            Kind::Status => "status",
            Kind::Cmd => "cmd",
            Kind::CmdResult => "cmd/result",
        }
    }
}

/// Whether `id` is a valid device id: 1–64 characters of `A-Z a-z 0-9 . _ -`.
pub fn valid_device_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_DEVICE_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Splits a topic into its device id and kind.
pub fn parse<'t>(prefix: &str, topic: &'t str) -> Result<(&'t str, Kind), TopicError> {
    let rest = topic
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix("/devices/"))
        .ok_or(TopicError::Prefix)?;
    let (id, kind) = rest.split_once('/').ok_or(TopicError::Kind)?;
    if !valid_device_id(id) {
        return Err(TopicError::DeviceId);
    }
    let kind = match kind {
        "telemetry" => Kind::Telemetry,
        "ack" => Kind::Ack,
        "status" => Kind::Status,
        "cmd" => Kind::Cmd,
        "cmd/result" => Kind::CmdResult,
        _ => return Err(TopicError::Kind),
    };
    Ok((id, kind))
}

/// Writes `{prefix}/devices/{id}/{kind}` into any `fmt::Write` (a
/// `heapless::String` on a device).
pub fn write(
    out: &mut impl core::fmt::Write,
    prefix: &str,
    id: &str,
    kind: Kind,
) -> core::fmt::Result {
    write!(out, "{prefix}/devices/{id}/{}", kind.suffix())
}

/// `{prefix}/devices/{id}/{kind}` as a `String`.
#[cfg(feature = "alloc")]
pub fn format(prefix: &str, id: &str, kind: Kind) -> alloc::string::String {
    alloc::format!("{prefix}/devices/{id}/{}", kind.suffix())
}

/// `{prefix}/devices/+/{kind}`: the filter the hub subscribes to.
#[cfg(feature = "alloc")]
pub fn filter_all(prefix: &str, kind: Kind) -> alloc::string::String {
    alloc::format!("{prefix}/devices/+/{}", kind.suffix())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let p = DEFAULT_PREFIX;
        type Case<'a> = (&'a str, Result<(&'a str, Kind), TopicError>);
        let cases: &[Case<'_>] = &[
            (
                "telltale/v1/devices/a-1/telemetry",
                Ok(("a-1", Kind::Telemetry)),
            ),
            (
                "telltale/v1/devices/a_1.x/status",
                Ok(("a_1.x", Kind::Status)),
            ),
            (
                "telltale/v1/devices/d/cmd/result",
                Ok(("d", Kind::CmdResult)),
            ),
            ("telltale/v1/devices/d/cmd", Ok(("d", Kind::Cmd))),
            ("telltale/v1/devices/d/ack", Ok(("d", Kind::Ack))),
            ("telltale/v2/devices/d/telemetry", Err(TopicError::Prefix)),
            ("telltale/v1/devices/d", Err(TopicError::Kind)),
            ("telltale/v1/devices/d/other", Err(TopicError::Kind)),
            (
                "telltale/v1/devices/bad id/telemetry",
                Err(TopicError::DeviceId),
            ),
            ("telltale/v1/devices//telemetry", Err(TopicError::DeviceId)),
            (
                "telltale/v1/devices/a+b/telemetry",
                Err(TopicError::DeviceId),
            ),
        ];
        for (topic, want) in cases {
            assert_eq!(&parse(p, topic), want, "{topic}");
        }
        let long = "x".repeat(65);
        let t = format(p, &long, Kind::Telemetry);
        assert_eq!(parse(p, &t), Err(TopicError::DeviceId));
        assert!(valid_device_id(&"x".repeat(64)));
    }
}
