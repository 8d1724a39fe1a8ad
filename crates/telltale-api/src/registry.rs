//! Where every route is registered, with what it needs: a route exists
//! only through [`Routes`], which takes its [`Need`] with its handler, and
//! the auth layer refuses a request to any route whose method has no
//! declared need (default deny: a route added to the router some other
//! way answers 403, whatever the token).
//!
//! Collections are registered the same way, once each
//! ([`Routes::collection`]): one generic handler serves the snapshot, the
//! long poll and the SSE and NDJSON streams of every collection
//! (`routes.rs`).

use crate::apidoc::Op;
use crate::auth::{Caller, Need};
use crate::collection::{Ask, Served};
use crate::AppState;
use axum::extract::{Query, State};
use axum::handler::Handler;
use axum::http::{HeaderMap, Method};
use axum::response::IntoResponse;
use axum::routing::{on, MethodFilter};
use axum::{Extension, Router};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One declared route: a method on a path pattern, and what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    /// The HTTP method.
    pub method: Method,
    /// The router's path pattern, such as `/v1/alerts/{id}/ack`.
    pub path: String,
    /// What a caller needs to be let in.
    pub need: Need,
}

/// The needs of every declared route, read by the auth layer.
#[derive(Debug, Default, Clone)]
pub struct RouteTable {
    /// By path pattern, then method.
    by_path: BTreeMap<String, Vec<(Method, Need)>>,
    /// Each API route's operation, for the OpenAPI document.
    ops: Vec<(Method, String, Need, Op)>,
    /// Paths served beside the API (the dashboard's files): declared, but
    /// not operations of the API's document.
    outside_api: std::collections::BTreeSet<String>,
}

/// What the auth layer finds for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// The path is no route (the fallback answers 404).
    NoRoute,
    /// The route declared this method.
    Declared(Need),
    /// The route exists but not with this method (the router answers 405):
    /// the strictest need declared on the path, so a write method never
    /// asks less than the route's writes do.
    OtherMethod(Need),
    /// The router matched a path that nobody declared: refused.
    Undeclared,
}

impl RouteTable {
    /// What a request with `method` to the route `path` needs.
    pub fn lookup(&self, method: &Method, path: Option<&str>) -> Lookup {
        let Some(path) = path else {
            return Lookup::NoRoute;
        };
        let Some(methods) = self.by_path.get(path) else {
            return Lookup::Undeclared;
        };
        let head_as_get = (*method == Method::HEAD).then_some(Method::GET);
        if let Some((_, need)) = methods
            .iter()
            .find(|(m, _)| m == method || Some(m) == head_as_get.as_ref())
        {
            return Lookup::Declared(*need);
        }
        let strictest = methods
            .iter()
            .map(|(_, n)| *n)
            .max_by_key(|n| n.rank())
            .unwrap_or(Need::Public);
        Lookup::OtherMethod(strictest)
    }

    /// The OpenAPI document of every declared route of the API.
    pub fn document(&self) -> serde_json::Value {
        crate::apidoc::document(
            self.ops
                .iter()
                .map(|(m, p, need, op)| (m, p.as_str(), *need, op)),
        )
    }

    /// Every declared route of the API (not the dashboard's files), by
    /// path then method.
    pub fn routes(&self) -> Vec<Declared> {
        self.by_path
            .iter()
            .filter(|(path, _)| !self.outside_api.contains(*path))
            .flat_map(|(path, methods)| {
                methods.iter().map(|(method, need)| Declared {
                    method: method.clone(),
                    path: path.clone(),
                    need: *need,
                })
            })
            .collect()
    }
}

/// The router under construction, with the table of what each route
/// needs. The only way this crate adds a route.
pub struct Routes {
    router: Router<AppState>,
    table: RouteTable,
}

impl Default for Routes {
    fn default() -> Self {
        Routes {
            router: Router::new(),
            table: RouteTable::default(),
        }
    }
}

impl Routes {
    /// Adds `handler` for `method` on `path`, needing `need`, described in
    /// the API's document by `op`.
    pub fn route<H, T>(
        mut self,
        method: Method,
        path: &str,
        need: Need,
        handler: H,
        op: Op,
    ) -> Routes
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone())
            .unwrap_or_else(|_| panic!("{method} is not a method the router takes"));
        let methods = self.table.by_path.entry(path.to_owned()).or_default();
        assert!(
            methods.iter().all(|(m, _)| *m != method),
            "{method} {path} is registered twice"
        );
        methods.push((method.clone(), need));
        self.table.ops.push((method, path.to_owned(), need, op));
        self.router = self.router.route(path, on(filter, handler));
        self
    }

    /// A collection at `/v1/{name}`, read with a `read` token: the one
    /// generic handler for its snapshot, long poll and streams.
    pub fn collection(self, coll: Arc<dyn Served>) -> Routes {
        let path = format!("/v1/{}", coll.name());
        let op = Op::collection(&coll.about());
        let served = coll;
        let handler = move |State(s): State<AppState>,
                            Extension(c): Extension<Caller>,
                            headers: HeaderMap,
                            Query(q): Query<Vec<(String, String)>>| {
            let served = served.clone();
            async move {
                let ask = Ask {
                    state: &s,
                    caller: &c,
                    pairs: &q,
                };
                served
                    .http(ask, &headers)
                    .await
                    .unwrap_or_else(IntoResponse::into_response)
            }
        };
        let read = Need::Scope(crate::auth::Scope::Read);
        self.route(Method::GET, &path, read, handler, op)
    }

    /// Public `GET` routes served beside the API (the dashboard's files),
    /// built elsewhere with `paths`.
    pub fn merge_outside_api(mut self, paths: &[&str], router: Router<AppState>) -> Routes {
        for p in paths {
            self.table
                .by_path
                .entry((*p).to_owned())
                .or_default()
                .push((Method::GET, Need::Public));
            self.table.outside_api.insert((*p).to_owned());
        }
        self.router = self.router.merge(router);
        self
    }

    /// The router and its table of needs.
    pub fn finish(self) -> (Router<AppState>, Arc<RouteTable>) {
        (self.router, Arc::new(self.table))
    }
}
