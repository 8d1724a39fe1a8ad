//! A collection as the API serves it: an object type that says its name,
//! its list kind and its filter shorthands ([`Resource`]), over the watch
//! engine's [`Collection`]. [`Served`] hides the object type, so that the
//! router, the WebSocket and the feed hold every collection in one list;
//! nothing here is written once per collection.

use crate::auth::Caller;
use crate::items::{Object, Shape};
use crate::params::Params;
use crate::problem::Problem;
use crate::routes::{check_filter_lengths, event_json, serve_collection, start_watch};
use crate::AppState;
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use std::sync::Arc;
use telltale_watch::{Collection, Kind, SourceError};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// An object type served as a collection (of [`Object`]s of it).
pub trait Resource: Shape {
    /// The collection's name: its route is `/v1/{NAME}`, its WebSocket
    /// `resource` is `NAME`.
    const NAME: &'static str;
    /// The `kind` of its list object, such as `ReadingList`.
    const LIST_KIND: &'static str;
    /// Log or state.
    const KIND: Kind;
    /// The filter shorthands it takes beyond `device` and `metric`.
    const SHORTHANDS: &'static [&'static str] = &[];
    /// One line on its route, for the API's document.
    const SUMMARY: &'static str;
    /// What an item is and when it changes, for the API's document.
    const DESCRIPTION: &'static str;
}

/// What the API's document says of a collection.
#[derive(Debug, Clone, Copy)]
pub struct About {
    /// See [`Resource::NAME`].
    pub name: &'static str,
    /// See [`Resource::KIND`].
    pub kind: Kind,
    /// See [`Resource::LIST_KIND`].
    pub list_kind: &'static str,
    /// See [`Resource::SHORTHANDS`].
    pub shorthands: &'static [&'static str],
    /// See [`Resource::SUMMARY`].
    pub summary: &'static str,
    /// See [`Resource::DESCRIPTION`].
    pub description: &'static str,
}

/// One read of a collection: who asks, and with what parameters.
#[derive(Clone, Copy)]
pub struct Ask<'a> {
    /// The API's state.
    pub state: &'a AppState,
    /// Who asks.
    pub caller: &'a Caller,
    /// The query parameters (or a WebSocket watch's fields as such).
    pub pairs: &'a [(String, String)],
}

/// A collection with its object type hidden.
pub trait Served: Send + Sync + 'static {
    /// Its name (see [`Resource::NAME`]).
    fn name(&self) -> &'static str;
    /// What the API's document says of it.
    fn about(&self) -> About;
    /// Answers one HTTP request: a list, a long poll or a stream.
    fn http<'a>(&'a self, ask: Ask<'a>, headers: &'a HeaderMap) -> Answer<'a, Response>;
    /// Starts a WebSocket watch: each event goes to `out` as the `event`
    /// message of `id`, until the watch ends or `out` closes.
    fn ws_watch<'a>(&'a self, ask: Ask<'a>, id: u64, out: Outbox) -> Answer<'a, JoinHandle<()>>;
    /// Publishes whatever the store holds beyond what was published (after
    /// the feed missed commits).
    fn resync(&self) -> BoxFuture<'_, Result<(), SourceError>>;
}

/// What a [`Served`] call answers, later.
pub type Answer<'a, T> = BoxFuture<'a, Result<T, Problem>>;

/// Where a WebSocket watch sends its messages (the socket's queue).
pub type Outbox = mpsc::Sender<String>;

/// The [`Served`] form of a collection.
pub fn served<T: Resource>(coll: &Arc<Collection<Object<T>>>) -> Arc<dyn Served> {
    Arc::new(Registered(coll.clone()))
}

struct Registered<T: Resource>(Arc<Collection<Object<T>>>);

impl<T: Resource> Served for Registered<T> {
    fn name(&self) -> &'static str {
        T::NAME
    }

    fn about(&self) -> About {
        About {
            name: T::NAME,
            kind: T::KIND,
            list_kind: T::LIST_KIND,
            shorthands: T::SHORTHANDS,
            summary: T::SUMMARY,
            description: T::DESCRIPTION,
        }
    }

    fn http<'a>(&'a self, ask: Ask<'a>, headers: &'a HeaderMap) -> Answer<'a, Response> {
        let Ask {
            state,
            caller,
            pairs,
        } = ask;
        Box::pin(serve_collection(state, caller, &self.0, headers, pairs))
    }

    fn ws_watch<'a>(&'a self, ask: Ask<'a>, id: u64, out: Outbox) -> Answer<'a, JoinHandle<()>> {
        Box::pin(async move {
            check_filter_lengths(ask.state, ask.pairs)?;
            let p = Params::parse(ask.pairs, T::KIND, T::SHORTHANDS)?;
            let rv = p.resource_version.clone();
            let started = start_watch(ask.state, ask.caller, &self.0, p, rv.as_deref());
            let (events, permit) = started.await?;
            let coll = self.0.clone();
            Ok(tokio::spawn(async move {
                let _held = permit;
                tokio::pin!(events);
                while let Some(e) = events.next().await {
                    let event = event_json(&coll, &e).0;
                    // Waits while the socket is slow: the engine's watcher
                    // falls behind its ring and catches up from the store.
                    let msg = format!(r#"{{"id":{id},"type":"event","event":{event}}}"#);
                    if out.send(msg).await.is_err() {
                        return;
                    }
                }
            }))
        })
    }

    fn resync(&self) -> BoxFuture<'_, Result<(), SourceError>> {
        Box::pin(self.0.resync())
    }
}
