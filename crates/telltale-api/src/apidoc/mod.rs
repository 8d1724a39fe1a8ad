//! The OpenAPI 3.1 document, generated from the route table: every
//! registered route is an operation (a route cannot be registered without
//! its [`Op`]), each collection's operation comes from its [`Resource`]
//! description, and what follows from a route's need is added here once
//! (`security`, `x-scope`, 401, 403, 429, 413, 431). The object schemas
//! come from telltale-types' `ToSchema` derives (`schemas.rs`, which also
//! says which schemas stay in `base.json` and why); the other shared
//! components (parameters, responses, security schemes), info, servers
//! and tags are in `base.json`.
//!
//! `src/openapi.json` is this document as committed (for readers and the
//! API scan); a test holds it equal to what the code generates.

pub mod ops;
mod schemas;

use crate::auth::{Need, Scope};
use axum::http::Method;
use serde_json::{json, Map, Value};

/// The shared parts of the document: info, servers, tags, components,
/// security.
const BASE: &str = include_str!("base.json");

/// One operation's own words: what it is, what it takes and what it
/// answers beyond what its need implies.
#[derive(Debug, Clone)]
pub struct Op {
    /// `operationId`.
    id: &'static str,
    /// Its one tag.
    tag: &'static str,
    /// `summary`.
    summary: &'static str,
    /// `description`, if any.
    description: Option<&'static str>,
    /// `parameters`: references to shared ones or inline objects.
    params: Vec<Value>,
    /// `requestBody`, if it takes one.
    body: Option<Value>,
    /// `responses` by status, beyond the generated ones.
    answers: Vec<(u16, Value)>,
    /// The answers to a rate-limited request are those of the watch cap
    /// too (collections), not only the token's rate.
    watch_cap: bool,
}

fn reference(kind: &str, name: &str) -> Value {
    json!({ "$ref": format!("#/components/{kind}/{name}") })
}

impl Op {
    /// An operation with its id, tag and summary.
    pub fn new(id: &'static str, tag: &'static str, summary: &'static str) -> Op {
        Op {
            id,
            tag,
            summary,
            description: None,
            params: Vec::new(),
            body: None,
            answers: Vec::new(),
            watch_cap: false,
        }
    }

    /// With a description.
    pub fn describe(mut self, text: &'static str) -> Op {
        self.description = Some(text);
        self
    }

    /// Takes the shared parameter `name`.
    pub fn param(mut self, name: &str) -> Op {
        self.params.push(reference("parameters", name));
        self
    }

    /// Takes a parameter of its own.
    pub fn inline_param(mut self, p: Value) -> Op {
        self.params.push(p);
        self
    }

    /// Takes a JSON body of the schema `schema`.
    pub fn body(mut self, schema: &str, required: bool) -> Op {
        self.body = Some(json!({
            "required": required,
            "content": {"application/json": {"schema": reference("schemas", schema)}},
        }));
        self
    }

    /// Answers `status` with the shared response `name`.
    pub fn refd(self, status: u16, name: &str) -> Op {
        self.answer(status, reference("responses", name))
    }

    /// Answers `status` with a JSON object of the schema `schema`.
    pub fn json(self, status: u16, description: &str, schema: &str) -> Op {
        self.content(
            status,
            description,
            json!({"application/json": {"schema": reference("schemas", schema)}}),
        )
    }

    /// Answers `status` with a problem.
    pub fn problem(self, status: u16, description: &str) -> Op {
        self.content(
            status,
            description,
            json!({"application/problem+json": {"schema": reference("schemas", "Problem")}}),
        )
    }

    /// Answers `status` with no body.
    pub fn empty(self, status: u16, description: &str) -> Op {
        self.answer(status, json!({ "description": description }))
    }

    /// Answers `status` with `content` (media types and their schemas).
    pub fn content(self, status: u16, description: &str, content: Value) -> Op {
        self.answer(
            status,
            json!({ "description": description, "content": content }),
        )
    }

    fn answer(mut self, status: u16, response: Value) -> Op {
        self.answers.push((status, response));
        self
    }

    /// The operation of a collection's route: the three ways to read it.
    pub fn collection(c: &crate::collection::About) -> Op {
        let mut op = Op::new(c.name, "collections", c.summary).describe(c.description);
        let log = c.kind == telltale_watch::Kind::Log;
        let mut names = vec!["watch", "resourceVersion"];
        if log {
            names.push("since");
            names.push("until");
        } else {
            names.push("sendInitialEvents");
        }
        names.extend(["heartbeatSeconds", "timeoutSeconds"]);
        if !log {
            names.push("throttleSeconds");
        }
        names.extend(["limit", "continue", "wait", "filter", "device", "metric"]);
        names.extend(c.shorthands);
        names.push("LastEventID");
        for n in names {
            op = op.param(n);
        }
        op.watch_cap = true;
        op.content(200, STREAM_ANSWER, stream_content(c.list_kind))
            .refd(400, "BadRequest")
            .refd(410, "Gone")
            .refd(500, "Internal")
    }

    /// The operation as the document writes it, for a route that needs
    /// `need`.
    fn render(&self, need: Need) -> Value {
        let mut op = Map::new();
        op.insert("operationId".into(), self.id.into());
        op.insert("summary".into(), self.summary.into());
        op.insert("tags".into(), json!([self.tag]));
        if let Some(d) = self.description {
            op.insert("description".into(), d.into());
        }
        if !self.params.is_empty() {
            op.insert("parameters".into(), Value::Array(self.params.clone()));
        }
        if let Some(b) = &self.body {
            op.insert("requestBody".into(), b.clone());
        }
        let mut answers: Vec<(u16, Value)> = self.answers.clone();
        let mut implied = |status: u16, name: &str| {
            if !answers.iter().any(|(s, _)| *s == status) {
                answers.push((status, reference("responses", name)));
            }
        };
        implied(431, "HeadersTooLarge");
        if self.body.is_some() {
            implied(413, "PayloadTooLarge");
        }
        match need {
            Need::Public => {
                op.insert("security".into(), json!([]));
            }
            Need::Socket | Need::Scope(_) => {
                let scope = match need {
                    Need::Scope(s) => s,
                    _ => Scope::Read,
                };
                op.insert("x-scope".into(), scope.as_str().into());
                implied(401, "Unauthorized");
                let limited = if self.watch_cap {
                    "TooManyRequests"
                } else {
                    "RateLimited"
                };
                implied(429, limited);
                if scope != Scope::Read {
                    implied(403, "Forbidden");
                }
            }
        }
        answers.sort_by_key(|(s, _)| *s);
        let responses: Map<String, Value> = answers
            .into_iter()
            .map(|(s, r)| (s.to_string(), r))
            .collect();
        op.insert("responses".into(), Value::Object(responses));
        Value::Object(op)
    }
}

/// What a collection route answers with 200.
const STREAM_ANSWER: &str = "Without `watch`: one list (snapshot, or the answer of a long poll). With `watch=true`: the event stream, `text/event-stream` when `Accept` names it, otherwise `application/x-ndjson`.";

/// The stream's description, with how each event is framed.
fn stream_schema(framing: &str) -> Value {
    json!({
        "type": "string",
        "description": format!("The event stream (with `watch=true`): one WatchEvent per line (NDJSON) or per SSE event (`id:` resourceVersion, `event:` the type in lower case, `data:` the WatchEvent). Heartbeat BOOKMARKs after `heartbeatSeconds` of silence; a final BOOKMARK when the stream ends (timeoutSeconds, the server's lifetime cap, shutdown); an ERROR event (410 `expired`) and the end of the stream if the watcher falls out of the store's ring. {framing}"),
    })
}

/// The three media types of a collection's answer.
fn stream_content(list_kind: &str) -> Value {
    let event = reference("schemas", "WatchEvent");
    json!({
        "application/json": {"schema": reference("schemas", list_kind)},
        "application/x-ndjson": {
            "schema": stream_schema("Each line is a WatchEvent."),
            "x-itemSchema": event,
            "example": "{\"type\":\"ADDED\",\"resourceVersion\":\"3f9a61c2-1043\",\"object\":{}}\n{\"type\":\"BOOKMARK\",\"resourceVersion\":\"3f9a61c2-1043\",\"object\":{\"kind\":\"Bookmark\",\"resourceVersion\":\"3f9a61c2-1043\",\"initialEventsEnd\":false}}\n",
        },
        "text/event-stream": {
            "schema": stream_schema("Each `data:` is a WatchEvent."),
            "x-itemSchema": event,
            "example": "event: added\ndata: {\"type\":\"ADDED\",\"resourceVersion\":\"3f9a61c2-1043\",\"object\":{}}\nid: 3f9a61c2-1043\n\n",
        },
    })
}

/// The document for the declared `routes` (method, path, need, operation).
pub fn document<'a>(
    routes: impl IntoIterator<Item = (&'a Method, &'a str, Need, &'a Op)>,
) -> Value {
    let mut doc: Value = match serde_json::from_str(BASE) {
        Ok(v) => v,
        // The file is part of the build and parsed by a test.
        Err(e) => json!({ "error": format!("base.json: {e}") }),
    };
    let mut paths = Map::new();
    for (method, path, need, op) in routes {
        let item = paths
            .entry(path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(item) = item {
            item.insert(method.as_str().to_ascii_lowercase(), op.render(need));
        }
    }
    if let Some(Value::Object(objects)) = doc.pointer_mut("/components/schemas") {
        objects.extend(schemas::generated());
    }
    if let Value::Object(d) = &mut doc {
        d.insert("paths".into(), Value::Object(paths));
    }
    doc
}

/// The document as served and committed: pretty JSON and a final newline.
pub fn text(doc: &Value) -> String {
    let mut t = serde_json::to_string_pretty(doc).unwrap_or_else(|_| "{}".into());
    t.push('\n');
    t
}
