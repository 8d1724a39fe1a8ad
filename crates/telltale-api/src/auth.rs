//! Who is calling and what they may do: API tokens with scopes (`read` <
//! `control` < `admin`), checked against the live [`AuthSnapshot`] that the
//! hub keeps current from `auth.db`.
//!
//! One layer ([`layer`]) runs in front of every route: it takes the token
//! from `Authorization: Bearer` or the `access_token` query parameter (which
//! it removes from the URI, so no handler, log or error body ever sees it),
//! finds the scope the route declared where it was registered
//! ([`needed`], `registry.rs`; a route that declared none is refused),
//! answers 401 or 403
//! (problem+json), applies the token's request rate, and hands the handler
//! a [`Caller`]. Open mode: a hub whose listener is on loopback and that has
//! no live token lets everyone in as `admin`, without per-token limits.
//!
//! Audit lines (target `audit`) name the token's id and name, never its
//! secret.

use crate::problem::Problem;
use crate::registry::{Lookup, RouteTable};
use crate::AppState;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use telltale_store::auth::AuthSnapshot;
pub use telltale_store::auth::Scope;
use tokio::sync::watch;

/// A token as the handlers see it: its public id and name (never its text).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenRef {
    /// The public id, part of the token's text (`tlt_{id}_...`).
    pub id: String,
    /// The name given at creation.
    pub name: String,
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// What the caller may do.
    pub scope: Scope,
    /// The token presented; `None` in open mode.
    pub token: Option<TokenRef>,
    /// Open mode: no token exists and the hub listens on loopback only.
    pub open: bool,
}

impl Caller {
    /// The caller of an open hub.
    pub fn open() -> Caller {
        Caller {
            scope: Scope::Admin,
            token: None,
            open: true,
        }
    }

    /// The token's name for audit lines (`open` in open mode).
    pub fn who(&self) -> &str {
        self.token.as_ref().map_or("open", |t| t.name.as_str())
    }

    /// The token's id, the key of per-token limits (`None` in open mode,
    /// which has none).
    pub fn key(&self) -> Option<&str> {
        self.token.as_ref().map(|t| t.id.as_str())
    }

    /// Whether this caller may still do what it was let in for, by the
    /// current credentials: its token is live, or, in open mode, the hub
    /// is still open.
    fn still_valid(&self, snap: &AuthSnapshot) -> bool {
        match &self.token {
            Some(t) => snap.token_live(&t.id),
            None => !snap.has_tokens(),
        }
    }

    /// Why a stream of this caller ends when it is no longer let in.
    pub fn revoked_detail(&self) -> &'static str {
        if self.open {
            "an API token exists now: the hub is no longer open; connect again with a token"
        } else {
            "the API token of this stream was revoked"
        }
    }

    /// 403 unless this caller's scope allows `needed`.
    pub fn require(&self, needed: Scope) -> Result<(), Problem> {
        if self.scope.allows(needed) {
            return Ok(());
        }
        Err(forbidden(self, needed))
    }
}

fn forbidden(caller: &Caller, needed: Scope) -> Problem {
    Problem::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!(
            "this needs a token of scope {} or above; this token has scope {}",
            needed.as_str(),
            caller.scope.as_str()
        ),
    )
}

/// Counts held per key (a token id, a client address): the workspace's one
/// per-key cap, shared with the MQTT listeners.
pub use telltale_limits::{KeyGuard, PerKey};

/// The credentials and per-token limits the API checks against.
pub struct Auth {
    /// The live credentials (kept current by the hub's credentials poller).
    snapshot: watch::Receiver<Arc<AuthSnapshot>>,
    /// Whether the HTTP listener is a loopback address: only then may a hub
    /// without tokens run open.
    loopback: bool,
    /// Requests per token (keyed by token id).
    rate: governor::DefaultKeyedRateLimiter<String>,
    /// Watch streams (HTTP and WebSocket watches) per token.
    pub watches: Arc<PerKey<String>>,
    /// WebSocket sockets per token.
    pub sockets: Arc<PerKey<String>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("loopback", &self.loopback)
            .finish_non_exhaustive()
    }
}

/// The per-token limits, from `[api]`.
#[derive(Debug, Clone, Copy)]
pub struct TokenLimits {
    pub rate_per_sec: u32,
    pub burst: u32,
    pub watches: usize,
    pub sockets: usize,
}

impl Auth {
    /// Checks against `snapshot`; `loopback`: the listener's address is a
    /// loopback one.
    pub fn new(
        snapshot: watch::Receiver<Arc<AuthSnapshot>>,
        loopback: bool,
        limits: TokenLimits,
    ) -> Auth {
        let per_sec = NonZeroU32::new(limits.rate_per_sec.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limits.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let quota = governor::Quota::per_second(per_sec).allow_burst(burst);
        Auth {
            snapshot,
            loopback,
            rate: governor::RateLimiter::keyed(quota),
            watches: PerKey::new(limits.watches),
            sockets: PerKey::new(limits.sockets),
        }
    }

    /// The current credentials.
    pub fn current(&self) -> Arc<AuthSnapshot> {
        self.snapshot.borrow().clone()
    }

    /// Whether the API is open now: loopback listener and no live token.
    pub fn is_open(&self) -> bool {
        self.loopback && !self.snapshot.borrow().has_tokens()
    }

    /// The caller that `presented` (a token's text, if any) makes, or why
    /// not (401).
    pub fn check(&self, presented: Option<&str>) -> Result<Caller, Refusal> {
        let snap = self.current();
        if self.loopback && !snap.has_tokens() {
            // Open: whatever was presented (a stale token in a client's
            // environment) does not matter.
            return Ok(Caller::open());
        }
        let Some(text) = presented else {
            return Err(Refusal::Missing);
        };
        match snap.token(text) {
            Some(t) => Ok(Caller {
                scope: t.scope,
                token: Some(TokenRef {
                    id: t.id.clone(),
                    name: t.name.clone(),
                }),
                open: false,
            }),
            None => Err(Refusal::Invalid {
                id: token_id(text).map(str::to_owned),
            }),
        }
    }

    /// Takes one request of `caller`'s rate; `Err(seconds)` to wait.
    pub fn take_request(&self, caller: &Caller) -> Result<(), u64> {
        let Some(key) = caller.key() else {
            return Ok(());
        };
        self.rate.check_key(&key.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }

    /// Resolves once `caller` is no longer let in: its token was revoked
    /// (or, in open mode, a token now exists). Never resolves if the
    /// credentials can no longer change.
    pub fn until_invalid(
        &self,
        caller: &Caller,
    ) -> impl std::future::Future<Output = ()> + 'static {
        let mut rx = self.snapshot.clone();
        let caller = caller.clone();
        async move {
            loop {
                if !caller.still_valid(&rx.borrow_and_update()) {
                    return;
                }
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}

/// Why a request was not let in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No token was presented.
    Missing,
    /// A token was presented and is not live (its id, when it has the
    /// shape of one).
    Invalid { id: Option<String> },
    /// The Authorization header is not `Bearer <token>`.
    BadHeader,
}

impl Refusal {
    /// The 401 answer.
    pub fn problem(&self) -> Problem {
        let detail = match self {
            Refusal::Missing => "this route needs an API token: send Authorization: Bearer <token> (see docs/security.md)",
            Refusal::Invalid { .. } => "the API token is not valid (unknown or revoked)",
            Refusal::BadHeader => "the Authorization header must be Bearer <token>",
        };
        Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    fn reason(&self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Invalid { .. } => "invalid",
            Refusal::BadHeader => "bad_header",
        }
    }
}

/// The 401 response, with `WWW-Authenticate`.
pub fn unauthorized(r: &Refusal) -> Response {
    let mut res = r.problem().into_response();
    let challenge = match r {
        Refusal::Missing => "Bearer realm=\"telltale\"",
        _ => "Bearer realm=\"telltale\", error=\"invalid_token\"",
    };
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    res
}

/// The public id of a token's text (`tlt_{id}_{secret}`), when it has
/// that shape: safe to log.
pub fn token_id(text: &str) -> Option<&str> {
    let rest = text.strip_prefix("tlt_")?;
    let (id, secret) = rest.split_once('_')?;
    let ok = (1..=16).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_hexdigit())
        && !secret.is_empty();
    ok.then_some(id)
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Anyone (health, readiness, this document, the dashboard's files).
    Public,
    /// A token of this scope or above.
    Scope(Scope),
    /// `/v1/ws`: `read`, with the token in the request or in the first
    /// message.
    Socket,
}

impl Need {
    /// How much a need asks, for the strictest of several.
    pub fn rank(self) -> u8 {
        match self {
            Need::Public => 0,
            Need::Socket | Need::Scope(Scope::Read) => 1,
            Need::Scope(Scope::Control) => 2,
            Need::Scope(Scope::Admin) => 3,
        }
    }
}

/// The need of a request, from the route table: a path that is no route
/// is public (it answers 404); a method the route does not take asks the
/// route's strictest need (it answers 405 once let in); a route that was
/// never declared is `None`, refused.
pub fn needed(table: &RouteTable, method: &Method, route: Option<&str>) -> Option<Need> {
    match table.lookup(method, route) {
        Lookup::NoRoute => Some(Need::Public),
        Lookup::Declared(n) | Lookup::OtherMethod(n) => Some(n),
        Lookup::Undeclared => None,
    }
}

/// The token in a request: the `Authorization: Bearer` header, else the
/// `access_token` query parameter. Every `access_token` is removed from
/// the URI either way.
fn take_token(req: &mut Request) -> Result<Option<String>, Refusal> {
    let from_query = strip_access_token(req);
    match req.headers().get(header::AUTHORIZATION) {
        Some(v) => {
            let text = v.to_str().map_err(|_| Refusal::BadHeader)?;
            let (scheme, token) = text.trim().split_once(' ').ok_or(Refusal::BadHeader)?;
            if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
                return Err(Refusal::BadHeader);
            }
            Ok(Some(token.trim().to_owned()))
        }
        None => Ok(from_query),
    }
}

/// Removes every `access_token` pair from the request's query; returns the
/// first one's value.
fn strip_access_token(req: &mut Request) -> Option<String> {
    let query = req.uri().query()?;
    let mut found = None;
    let mut kept = Vec::new();
    for segment in query.split('&') {
        let pair = form_urlencoded::parse(segment.as_bytes()).next();
        match pair {
            Some((k, v)) if k == "access_token" => {
                if found.is_none() {
                    found = Some(v.into_owned());
                }
            }
            _ => kept.push(segment),
        }
    }
    let path = req.uri().path();
    let path_and_query = if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = path_and_query.parse().ok();
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
    found
}

/// Whether a request asks for a WebSocket upgrade.
fn is_upgrade(req: &Request) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The client's address, when the server recorded it.
pub fn client(req: &Request) -> Option<SocketAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

/// The auth layer in front of every route (see the module's doc).
pub async fn layer(
    State((s, table)): State<(AppState, Arc<RouteTable>)>,
    mut req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let peer = client(&req);
    let presented = take_token(&mut req);
    let route_text = route.as_deref().unwrap_or("-");
    let Some(need) = needed(&table, req.method(), route.as_deref()) else {
        tracing::error!(
            route = route_text,
            method = %req.method(),
            "refused a request to a route that declares no scope"
        );
        return Problem::new(
            StatusCode::FORBIDDEN,
            "route_not_declared",
            "this route declares no scope, so nobody may call it",
        )
        .into_response();
    };
    let refuse = |r: Refusal| {
        s.counters.auth_failures.fetch_add(1, Relaxed);
        let id = match &r {
            Refusal::Invalid { id } => id.as_deref(),
            _ => None,
        };
        tracing::warn!(
            target: "audit",
            client = %peer.map_or("-".to_owned(), |p| p.to_string()),
            route = route_text,
            token_id = id.unwrap_or("-"),
            reason = r.reason(),
            "api token refused"
        );
        unauthorized(&r)
    };
    let caller = match (need, presented) {
        (Need::Public, _) => return next.run(req).await,
        // Open: whatever was presented does not matter.
        _ if s.auth.is_open() => Caller::open(),
        (_, Err(r)) => return refuse(r),
        // A socket may authenticate in its first message.
        (Need::Socket, Ok(None)) if is_upgrade(&req) => return next.run(req).await,
        (_, Ok(token)) => match s.auth.check(token.as_deref()) {
            Ok(c) => c,
            Err(r) => return refuse(r),
        },
    };
    if let Need::Scope(scope) = need {
        if let Err(p) = caller.require(scope) {
            tracing::warn!(
                target: "audit",
                client = %peer.map_or("-".to_owned(), |p| p.to_string()),
                route = route_text,
                method = %req.method(),
                token_id = caller.key().unwrap_or("-"),
                token = caller.who(),
                scope = caller.scope.as_str(),
                "api token refused: scope too low"
            );
            return p.into_response();
        }
    }
    if let Err(secs) = s.auth.take_request(&caller) {
        s.counters.rate_limited.fetch_add(1, Relaxed);
        return Problem {
            retry_after: Some(secs.max(1)),
            ..Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "this token sends more than {} requests a second (burst {}); retry later",
                    s.config.token_rate_per_sec, s.config.token_rate_burst
                ),
            )
        }
        .into_response();
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ids_parse_only_from_the_token_shape() {
        assert_eq!(token_id("tlt_0a1b2c3d_ffee"), Some("0a1b2c3d"));
        for bad in [
            "", "tlt_", "tlt__x", "tlt_zz_x", "tlt_0a1b", "Bearer", "tlt_0a_",
        ] {
            assert_eq!(token_id(bad), None, "{bad}");
        }
    }
}
