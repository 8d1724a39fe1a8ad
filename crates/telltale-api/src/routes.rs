//! The collection routes: one handler for the three ways to read any
//! collection (snapshot list, long poll, watch stream as SSE or NDJSON).

use crate::auth::{Caller, KeyGuard};
use crate::collection::Resource;
use crate::items::{Framed, Object};
use crate::params::Params;
use crate::problem::Problem;
use crate::AppState;
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use std::convert::Infallible;
use std::sync::Arc;
use telltale_watch::{
    Collection, Cursor, EventType, Item, Kind, RvError, Start, WatchError, WatchEvent, WatchRequest,
};

pub(crate) fn watch_problem<T: Item>(coll: &Collection<T>, e: WatchError) -> Problem {
    match e {
        WatchError::Source(e) => Problem::internal(e),
        WatchError::Rv(RvError::Malformed) => Problem {
            param: Some("resourceVersion".into()),
            ..Problem::new(
                StatusCode::BAD_REQUEST,
                "bad_resource_version",
                "resourceVersion is not one this hub issued",
            )
        },
        WatchError::Rv(RvError::Future) => Problem {
            param: Some("resourceVersion".into()),
            ..Problem::new(
                StatusCode::BAD_REQUEST,
                "bad_resource_version",
                "resourceVersion is newer than anything this hub has committed",
            )
        },
        WatchError::Rv(
            e @ (RvError::Expired { .. } | RvError::OtherEpoch { .. } | RvError::Lost { .. }),
        ) => {
            let oldest = match e {
                RvError::Expired { oldest }
                | RvError::OtherEpoch { oldest }
                | RvError::Lost { oldest } => oldest,
                _ => 0,
            };
            Problem {
                oldest: Some(coll.rv(oldest)),
                ..Problem::new(
                    StatusCode::GONE,
                    "expired",
                    format!("{e}: start again from a list"),
                )
            }
        }
    }
}

/// The opaque `continue` token: the store epoch and where the next page starts.
fn encode_cursor<T: Item>(coll: &Collection<T>, c: &Cursor) -> String {
    let epoch = coll.rv(0);
    let epoch = epoch.trim_end_matches("-0");
    match c {
        Cursor::Log { after, upto } => format!("{epoch}.l.{after}.{upto}"),
        Cursor::State { after_key } => format!("{epoch}.s.{after_key}"),
    }
}

fn decode_cursor<T: Item>(coll: &Collection<T>, text: &str) -> Result<Cursor, Problem> {
    let bad = || Problem::bad_param("continue", "continue is not a token from this hub");
    let epoch = coll.rv(0);
    let epoch = epoch.trim_end_matches("-0");
    let (e, rest) = text.split_once('.').ok_or_else(bad)?;
    if e != epoch {
        return Err(Problem::new(
            StatusCode::GONE,
            "expired",
            "the continue token is from another store: start again from a list",
        ));
    }
    if let Some(r) = rest.strip_prefix("l.") {
        let (a, u) = r.split_once('.').ok_or_else(bad)?;
        return Ok(Cursor::Log {
            after: a.parse().map_err(|_| bad())?,
            upto: u.parse().map_err(|_| bad())?,
        });
    }
    rest.strip_prefix("s.")
        .map(|k| Cursor::State {
            after_key: k.to_owned(),
        })
        .ok_or_else(bad)
}

/// A list object: `{"kind":…,"resourceVersion":…,"items":[…],"continue":…}`.
fn list_body<T: Item>(
    coll: &Collection<T>,
    kind: &str,
    items: &[Arc<T>],
    rv: u64,
    next: Option<String>,
) -> Response {
    let mut body =
        String::with_capacity(64 + items.iter().map(|i| i.json().len() + 1).sum::<usize>());
    body.push_str("{\"kind\":");
    body.push_str(&serde_json::Value::from(kind).to_string());
    body.push_str(",\"resourceVersion\":\"");
    body.push_str(&coll.rv(rv));
    body.push_str("\",\"items\":[");
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(it.json());
    }
    body.push(']');
    if let Some(c) = next {
        body.push_str(",\"continue\":");
        body.push_str(&serde_json::Value::from(c).to_string());
    }
    body.push('}');
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// Events a stream writes at once, at most (those ready together).
const BATCH: usize = 256;

/// How a watch stream is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wire {
    Sse,
    Ndjson,
}

/// One event in `wire`'s form.
fn encode_event<T: Item>(coll: &Collection<T>, e: &WatchEvent<T>, wire: Wire) -> Bytes {
    let (json, name, id) = event_json(coll, e);
    match wire {
        Wire::Sse => {
            let mut out = String::with_capacity(json.len() + 64);
            out.push_str("event: ");
            out.push_str(name);
            out.push('\n');
            if let Some(id) = id {
                out.push_str("id: ");
                out.push_str(&id);
                out.push('\n');
            }
            // The JSON is compact: one line.
            out.push_str("data: ");
            out.push_str(&json);
            out.push_str("\n\n");
            Bytes::from(out)
        }
        Wire::Ndjson => {
            let mut out = json;
            out.push('\n');
            Bytes::from(out)
        }
    }
}

/// An event's bytes: an item's event in its usual form is encoded once and
/// shared by all watchers; anything else is encoded here.
fn frame<T: Framed>(coll: &Collection<T>, e: &WatchEvent<T>, wire: Wire) -> Bytes {
    if let WatchEvent::Item { kind, item } = e {
        if *kind == coll.event_type(item) {
            let cache = match wire {
                Wire::Sse => &item.frames().sse,
                Wire::Ndjson => &item.frames().ndjson,
            };
            return cache.get_or_init(|| encode_event(coll, e, wire)).clone();
        }
    }
    encode_event(coll, e, wire)
}

/// One event as JSON, with its SSE event name and id.
pub(crate) fn event_json<T: Item>(
    coll: &Collection<T>,
    e: &WatchEvent<T>,
) -> (String, &'static str, Option<String>) {
    match e {
        WatchEvent::Item { kind, item } => {
            let rv = coll.rv(item.seq());
            (
                format!(
                    "{{\"type\":\"{}\",\"resourceVersion\":\"{rv}\",\"object\":{}}}",
                    kind.as_str(),
                    item.json()
                ),
                kind.sse_name(),
                Some(rv),
            )
        }
        WatchEvent::Bookmark {
            seq,
            initial_events_end,
        } => {
            let rv = coll.rv(*seq);
            (
                format!(
                    "{{\"type\":\"BOOKMARK\",\"resourceVersion\":\"{rv}\",\"object\":{{\"kind\":\"Bookmark\",\"resourceVersion\":\"{rv}\",\"initialEventsEnd\":{initial_events_end}}}}}"
                ),
                EventType::Bookmark.sse_name(),
                Some(rv),
            )
        }
        WatchEvent::Error {
            status,
            code,
            message,
            oldest,
        } => {
            let status_code =
                StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let problem = Problem {
                oldest: oldest.map(|o| coll.rv(o)),
                ..Problem::new(status_code, code, message.clone())
            };
            let object = serde_json::to_string(&problem).unwrap_or_else(|_| "{}".into());
            (
                format!("{{\"type\":\"ERROR\",\"object\":{object}}}"),
                EventType::Error.sse_name(),
                None,
            )
        }
    }
}

fn wants_sse(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"))
}

/// A watch of `coll` as `p` and `rv_text` (a resourceVersion or
/// Last-Event-ID) say, holding one of the hub's watch permits: shared by the
/// HTTP streams and the WebSocket.
pub(crate) async fn start_watch<T: Framed>(
    state: &AppState,
    caller: &Caller,
    coll: &Arc<Collection<T>>,
    p: Params,
    rv_text: Option<&str>,
) -> Result<
    (
        impl futures_util::Stream<Item = WatchEvent<T>> + Send + 'static,
        WatchPermit,
    ),
    Problem,
> {
    let rv = match rv_text {
        Some(t) if !t.is_empty() => {
            Some(coll.check_rv(t).await.map_err(|e| watch_problem(coll, e))?)
        }
        _ => None,
    };
    let permit = state
        .watches
        .clone()
        .try_acquire_owned()
        .map_err(|_| Problem {
            retry_after: Some(5),
            ..Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_watches",
                "the hub serves as many watches as it is configured for; retry later",
            )
        })?;
    let per_token = match caller.key() {
        None => None,
        Some(id) => Some(
            state
                .auth
                .watches
                .try_take(&id.to_owned())
                .ok_or_else(|| Problem {
                    retry_after: Some(5),
                    ..Problem::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "too_many_watches",
                        format!(
                            "this token holds {} watches, the most [api] max_watches_per_token allows; retry later",
                            state.config.max_watches_per_token
                        ),
                    )
                })?,
        ),
    };
    let permit = WatchPermit {
        _hub: permit,
        _token: per_token,
    };
    let start = match (rv, p.send_initial_events, p.since) {
        (Some(seq), _, _) => Start::After(seq),
        (None, true, _) => Start::Initial,
        (None, false, Some(ts)) => Start::Since(ts),
        (None, false, None) => Start::Now,
    };
    let stream = coll.watch(WatchRequest {
        start,
        filter: p.filter,
        heartbeat: p.heartbeat,
        timeout: p.timeout,
        throttle: p.throttle,
        max_lifetime: state.config.max_stream_lifetime(),
        shutdown: state.shutdown.clone(),
    });
    Ok((stream, permit))
}

/// What a watch holds while it runs: one of the hub's watch permits and one
/// of its token's.
pub(crate) struct WatchPermit {
    _hub: tokio::sync::OwnedSemaphorePermit,
    _token: Option<KeyGuard<String>>,
}

/// The watch events of `stream` until `caller` is no longer let in (its
/// token revoked): then an ERROR event (401 `token_revoked`) and the end.
pub(crate) fn until_revoked<T: Item, S>(
    state: &AppState,
    caller: &Caller,
    stream: S,
) -> impl futures_util::Stream<Item = WatchEvent<T>> + Send + 'static
where
    S: futures_util::Stream<Item = WatchEvent<T>> + Send + 'static,
{
    let revoked = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = revoked.clone();
    let invalid = state.auth.until_invalid(caller);
    let who = caller.clone();
    let detail = caller.revoked_detail();
    stream
        .take_until(async move {
            invalid.await;
            tracing::info!(
                target: "audit",
                token_id = who.key().unwrap_or("-"),
                token = who.who(),
                "watch stream ended: token revoked"
            );
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
        })
        .chain(
            futures_util::stream::once(async move {
                revoked
                    .load(std::sync::atomic::Ordering::Relaxed)
                    .then(|| revoked_event(detail))
            })
            .filter_map(std::future::ready),
        )
}

/// The last event of a stream whose token was revoked.
pub(crate) fn revoked_event<T: Item>(detail: &str) -> WatchEvent<T> {
    WatchEvent::Error {
        status: 401,
        code: "token_revoked",
        message: detail.into(),
        oldest: None,
    }
}

/// 400 `bad_filter` for a filter or shorthand parameter longer than
/// `[api] max_filter_bytes`.
pub(crate) fn check_filter_lengths(
    state: &AppState,
    pairs: &[(String, String)],
) -> Result<(), Problem> {
    let max = state.config.max_filter_bytes;
    for (k, v) in pairs {
        let is_filter = matches!(
            k.as_str(),
            "filter" | "device" | "metric" | "severity" | "state"
        );
        if is_filter && v.len() > max {
            return Err(Problem {
                param: Some(k.clone()),
                position: Some(max),
                ..Problem::new(
                    StatusCode::BAD_REQUEST,
                    "bad_filter",
                    format!("{k} is longer than {max} bytes"),
                )
            });
        }
    }
    Ok(())
}

/// Serves one collection route.
pub async fn serve_collection<T: Resource>(
    state: &AppState,
    caller: &Caller,
    coll: &Arc<Collection<Object<T>>>,
    headers: &HeaderMap,
    pairs: &[(String, String)],
) -> Result<Response, Problem> {
    let list_kind = T::LIST_KIND;
    check_filter_lengths(state, pairs)?;
    let p = Params::parse(pairs, T::KIND, T::SHORTHANDS)?;
    // The header wins where both are given (EventSource resumes with it).
    let rv_text = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(p.resource_version.clone());

    if p.watch {
        let (stream, permit) = start_watch(state, caller, coll, p, rv_text.as_deref()).await?;
        let stream = until_revoked(state, caller, stream);
        let coll = coll.clone();
        let (wire, content_type) = if wants_sse(headers) {
            (Wire::Sse, "text/event-stream")
        } else {
            (Wire::Ndjson, "application/x-ndjson")
        };
        // Events that are ready together go out as one body chunk (one
        // write), each copied from its shared encoding.
        let body = stream.ready_chunks(BATCH).map(move |events| {
            let _held = &permit;
            let frames: Vec<Bytes> = events.iter().map(|e| frame(&coll, e, wire)).collect();
            let bytes = match frames.as_slice() {
                [one] => one.clone(),
                many => Bytes::from(many.concat()),
            };
            Ok::<_, Infallible>(bytes)
        });
        return Ok((
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            Body::from_stream(body),
        )
            .into_response());
    }

    let rv = match rv_text.as_deref() {
        Some(t) if !t.is_empty() => {
            Some(coll.check_rv(t).await.map_err(|e| watch_problem(coll, e))?)
        }
        _ => None,
    };
    if let Some(wait) = p.wait {
        // A held request is bounded like a stream: never past max_stream_secs.
        let wait = wait.min(std::time::Duration::from_secs(
            state.config.max_stream_secs.max(1),
        ));
        let after = rv.unwrap_or(0);
        let (items, at) = coll
            .wait_after(after, &p.filter, p.limit, wait)
            .await
            .map_err(|e| watch_problem(coll, e))?;
        return Ok(list_body(coll, list_kind, &items, at, None));
    }

    let from = match p.cont.as_deref() {
        Some(c) => Some(decode_cursor(coll, c)?),
        None => rv.map(|seq| match coll.kind {
            Kind::Log => Cursor::Log {
                after: seq,
                upto: coll.last_seq(),
            },
            Kind::State => Cursor::State {
                after_key: String::new(),
            },
        }),
    };
    let page = coll
        .list(from, p.since, p.until, &p.filter, p.limit)
        .await
        .map_err(|e| watch_problem(coll, e))?;
    let next = page.next.as_ref().map(|c| encode_cursor(coll, c));
    Ok(list_body(coll, list_kind, &page.items, page.rv, next))
}
