//! What a read of a collection answers: a list object (snapshot, long
//! poll) or a stream of watch events (SSE, NDJSON, WebSocket).

use crate::problem::Problem;
use serde::{Deserialize, Serialize};

/// A list object: one page of a collection, consistent with one version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct List<T> {
    /// `ReadingList`, `LatestList`, `DeviceList`, `AlertList` or
    /// `CommandList`.
    pub kind: String,
    /// The version of the collection the list is consistent with: a watch
    /// or long poll started at it loses nothing and repeats nothing.
    #[serde(rename = "resourceVersion")]
    pub resource_version: String,
    /// The page's items.
    pub items: Vec<T>,
    /// Present when there is more: the token for the next page.
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// The object of a BOOKMARK event: everything up to `resourceVersion` has
/// been sent or filtered out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Bookmark {
    /// `Bookmark`.
    pub kind: String,
    /// Where the stream stands: a resume from it misses nothing.
    #[serde(rename = "resourceVersion")]
    pub resource_version: String,
    /// True on the bookmark that ends the initial events of
    /// `sendInitialEvents=true`.
    #[serde(rename = "initialEventsEnd")]
    pub initial_events_end: bool,
}

/// One event of a watch stream, `T` being the collection's item (or
/// `serde_json::Value` when the collection is not known statically).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum WatchEvent<T> {
    /// A new reading; an item of the initial state.
    #[serde(rename = "ADDED")]
    Added {
        /// The item's version: a resume after it starts with the next.
        #[serde(rename = "resourceVersion")]
        resource_version: String,
        /// The item.
        object: T,
    },
    /// An item of a state collection changed (or appeared).
    #[serde(rename = "MODIFIED")]
    Modified {
        /// The change's version.
        #[serde(rename = "resourceVersion")]
        resource_version: String,
        /// The item in its new state.
        object: T,
    },
    /// An item left a state collection (not sent yet).
    #[serde(rename = "DELETED")]
    Deleted {
        /// The change's version.
        #[serde(rename = "resourceVersion")]
        resource_version: String,
        /// The item as it was.
        object: T,
    },
    /// A heartbeat, the end of the initial events, or the end of a stream.
    #[serde(rename = "BOOKMARK")]
    Bookmark {
        /// Where the stream stands.
        #[serde(rename = "resourceVersion")]
        resource_version: String,
        /// The bookmark.
        object: Bookmark,
    },
    /// The stream cannot go on; it ends after this event. It has no
    /// version.
    #[serde(rename = "ERROR")]
    Error {
        /// Why.
        object: Problem,
    },
}

impl<T> WatchEvent<T> {
    /// The event's `type`, as the API writes it.
    pub fn type_name(&self) -> &'static str {
        match self {
            WatchEvent::Added { .. } => "ADDED",
            WatchEvent::Modified { .. } => "MODIFIED",
            WatchEvent::Deleted { .. } => "DELETED",
            WatchEvent::Bookmark { .. } => "BOOKMARK",
            WatchEvent::Error { .. } => "ERROR",
        }
    }

    /// The event's version; `None` for an `ERROR`.
    pub fn resource_version(&self) -> Option<&str> {
        match self {
            WatchEvent::Added {
                resource_version, ..
            }
            | WatchEvent::Modified {
                resource_version, ..
            }
            | WatchEvent::Deleted {
                resource_version, ..
            }
            | WatchEvent::Bookmark {
                resource_version, ..
            } => Some(resource_version),
            WatchEvent::Error { .. } => None,
        }
    }

    /// The item of an `ADDED`, `MODIFIED` or `DELETED` event.
    pub fn item(&self) -> Option<&T> {
        match self {
            WatchEvent::Added { object, .. }
            | WatchEvent::Modified { object, .. }
            | WatchEvent::Deleted { object, .. } => Some(object),
            WatchEvent::Bookmark { .. } | WatchEvent::Error { .. } => None,
        }
    }
}
