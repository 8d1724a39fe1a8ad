//! Lifecycle states and the other closed sets of names the API uses, as
//! enums whose serde names are the API's strings.

use serde::{Deserialize, Serialize};

/// Where a device command is in its lifecycle (docs/api.md, Commands):
/// `queued` → `sent` → `delivered` → one of the four ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum CommandState {
    /// Stored, not yet published to the device.
    Queued,
    /// Published on the device's `cmd` topic.
    Sent,
    /// The device confirmed receipt.
    Delivered,
    /// The device reported success.
    Succeeded,
    /// The device reported failure.
    Failed,
    /// The deadline passed before the device had it.
    Expired,
    /// Delivered, but no result by the deadline.
    Timeout,
}

impl CommandState {
    /// Every state, in lifecycle order.
    pub const ALL: [CommandState; 7] = [
        CommandState::Queued,
        CommandState::Sent,
        CommandState::Delivered,
        CommandState::Succeeded,
        CommandState::Failed,
        CommandState::Expired,
        CommandState::Timeout,
    ];

    /// The state's name, as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandState::Queued => "queued",
            CommandState::Sent => "sent",
            CommandState::Delivered => "delivered",
            CommandState::Succeeded => "succeeded",
            CommandState::Failed => "failed",
            CommandState::Expired => "expired",
            CommandState::Timeout => "timeout",
        }
    }

    /// From its name, as the API and the store write it.
    pub fn parse(s: &str) -> Option<CommandState> {
        CommandState::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Whether the command has ended (nothing follows this state).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            CommandState::Succeeded
                | CommandState::Failed
                | CommandState::Expired
                | CommandState::Timeout
        )
    }
}

/// Where an alert is in its lifecycle (docs/alerts.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The condition holds but not yet for the rule's `for`.
    Pending,
    /// The condition has held long enough: notifications go out.
    Firing,
    /// The condition no longer holds.
    Resolved,
}

impl AlertState {
    /// The state's name, as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }

    /// From its name, as the API and the store write it.
    pub fn parse(s: &str) -> Option<AlertState> {
        [
            AlertState::Pending,
            AlertState::Firing,
            AlertState::Resolved,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }

    /// Whether the alert is still open (pending or firing).
    pub fn is_open(self) -> bool {
        self != AlertState::Resolved
    }
}

impl std::fmt::Display for AlertState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for CommandState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An alert rule's severity, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Someone must act now.
    Critical,
    /// Someone must act soon.
    Major,
    /// Worth a look.
    Minor,
    /// Might become a problem.
    Warning,
    /// For the record.
    Info,
}

impl Severity {
    /// The severity's name, as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Major => "major",
            Severity::Minor => "minor",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// A device's presence, as the `state` filter field and the client name it.
/// The device object itself carries it as `online` (`true`, `false` or
/// `null`); see [`Device::presence`](crate::Device::presence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Presence {
    /// Its last status message was its birth.
    Online,
    /// Its last status message was its Last Will or a clean disconnect.
    Offline,
    /// It never sent a status message.
    Unknown,
}

impl Presence {
    /// From a device's `online` field.
    pub fn from_online(online: Option<bool>) -> Presence {
        match online {
            Some(true) => Presence::Online,
            Some(false) => Presence::Offline,
            None => Presence::Unknown,
        }
    }

    /// The presence's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Presence::Online => "online",
            Presence::Offline => "offline",
            Presence::Unknown => "unknown",
        }
    }
}

/// The collections a watch can follow (`resource` of a WebSocket watch; the
/// path `/v1/{name}` over HTTP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    /// `/v1/readings`, a log.
    Readings,
    /// `/v1/latest`, a state collection keyed by device and metric.
    Latest,
    /// `/v1/devices`, a state collection keyed by device id.
    Devices,
    /// `/v1/alerts`, a state collection keyed by alert id.
    Alerts,
    /// `/v1/commands`, a state collection keyed by command id.
    Commands,
    /// `/v1/rejects`, a log of the payloads the hub refused.
    Rejects,
}

impl Resource {
    /// Every collection, in the order the hub registers them.
    pub const ALL: [Resource; 6] = [
        Resource::Readings,
        Resource::Latest,
        Resource::Devices,
        Resource::Alerts,
        Resource::Commands,
        Resource::Rejects,
    ];

    /// From its name.
    pub fn parse(s: &str) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The collection's name, as in its path and in a watch message.
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Readings => "readings",
            Resource::Latest => "latest",
            Resource::Devices => "devices",
            Resource::Alerts => "alerts",
            Resource::Commands => "commands",
            Resource::Rejects => "rejects",
        }
    }
}
