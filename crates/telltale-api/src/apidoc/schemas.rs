//! `components.schemas`, generated from telltale-types' `ToSchema`
//! derives, plus what a Rust type cannot say and the schemas that have no
//! type of their own.
//!
//! What stays in `base.json`, and why:
//! - `ResourceVersion`: not a type but a convention on strings (opaque,
//!   compared for equality); the generated schemas point at it.
//! - `WatchEvent`: `telltale_types::WatchEvent<T>` is generic over the
//!   collection's item and tagged by `type`, so utoipa would write one
//!   `oneOf` per item type; the document describes the one wire shape
//!   shared by every collection (an object whose `object` is any item, a
//!   Bookmark or a Problem).
//! - `Rule`, `RuleList`: a rule is telltale-rules' TOML-shaped type, not an
//!   API object of telltale-types; its JSON is written by `alerts.rs`.
//! - `WhoAmI`, `Token`, `TokenList`, `NewToken`, `CreatedToken`,
//!   `DeviceCredential`, `DeviceCredentialList`, `NewDeviceCredential`,
//!   `CreatedDeviceCredential`: the admin routes' objects over `auth.db`
//!   (`admin.rs`), written there as JSON and not part of the shared types
//!   that the client and a fleet service read.
//!
//! The list kinds (`ReadingList`, ...) are `telltale_types::List<T>` for
//! each item; they are written here from one template, because the type
//! keeps `kind` as a string where the document names its one value.

use serde_json::{json, Map, Value};
use utoipa::PartialSchema;

/// A type's schema as JSON.
fn schema<T: PartialSchema>() -> Value {
    serde_json::to_value(T::schema()).unwrap_or(Value::Null)
}

/// The schema of the list kind `kind` of the items `item`.
fn list(kind: &str, item: &str, description: &str) -> Value {
    json!({
        "type": "object",
        "description": description,
        "required": ["kind", "resourceVersion", "items"],
        "properties": {
            "kind": {"const": kind},
            "resourceVersion": {
                "type": "string",
                "description": "The version of the collection this list is consistent with: a watch or long poll started at it loses nothing and repeats nothing.",
            },
            "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{item}")}},
            "continue": {
                "type": "string",
                "description": "Present when there is more: pass it as `continue` for the next page. Opaque.",
            },
        },
    })
}

/// The `code`s a problem may carry (`problem.rs`'s codes), in the order
/// the document has listed them.
const CODES: &[&str] = &[
    "bad_parameter",
    "bad_filter",
    "bad_resource_version",
    "not_found",
    "expired",
    "too_many_watches",
    "internal",
    "not_ready",
    "unauthorized",
    "forbidden",
    "route_not_declared",
    "rate_limited",
    "body_too_large",
    "token_exists",
    "forbidden_origin",
    "too_many_sockets",
    "token_revoked",
    "bad_body",
    "bad_rule",
    "rule_exists",
    "alert_resolved",
    "bad_idempotency_key",
    "method_not_allowed",
    "websocket_required",
];

/// Sets `schemas[name].properties[prop]` keys to `with`'s.
fn patch(schemas: &mut Map<String, Value>, name: &str, prop: &str, with: Value) {
    if let (Some(p), Value::Object(with)) = (
        schemas
            .get_mut(name)
            .and_then(|s| s.get_mut("properties"))
            .and_then(|p| p.get_mut(prop))
            .and_then(Value::as_object_mut),
        with,
    ) {
        for (k, v) in with {
            p.insert(k, v);
        }
    }
}

/// Replaces `schemas[name].properties[prop]` by `with`.
fn replace(schemas: &mut Map<String, Value>, name: &str, prop: &str, with: Value) {
    if let Some(p) = schemas
        .get_mut(name)
        .and_then(|s| s.get_mut("properties"))
        .and_then(Value::as_object_mut)
    {
        p.insert(prop.to_owned(), with);
    }
}

/// utoipa's way of writing some fields, made plain: a doc comment is one
/// line (doc comments wrap at 80 columns); an inline schema with the
/// field's own description beside it (`allOf` with an `object`
/// placeholder) is that schema with the field's description; a nullable
/// inline object (`oneOf` with `null`) is the object with `null` among its
/// types.
fn plain(v: &mut Value) {
    match v {
        Value::Object(o) => {
            for key in ["allOf", "oneOf"] {
                let Some(Value::Array(parts)) = o.get(key) else {
                    continue;
                };
                let [Value::Object(first), Value::Object(second)] = parts.as_slice() else {
                    continue;
                };
                let (first, second) = (first.clone(), second.clone());
                let null = second.get("type") == Some(&json!("null"));
                let placeholder = second.get("type") == Some(&json!("object"))
                    && second.keys().all(|k| k == "type" || k == "description");
                let plainable = (key == "oneOf" && null) || (key == "allOf" && placeholder);
                if !plainable {
                    continue;
                }
                o.remove(key);
                let own = o
                    .remove("description")
                    .or_else(|| second.get("description").cloned());
                for (k, x) in first {
                    o.entry(k).or_insert(x);
                }
                if null {
                    if let Some(t) = o.get_mut("type") {
                        if let Value::String(one) = t {
                            *t = json!([one.clone(), "null"]);
                        }
                    }
                }
                // The field's words over the type's.
                if let Some(d) = own {
                    o.insert("description".into(), d);
                }
            }
            if let Some(Value::String(d)) = o.get_mut("description") {
                *d = d.split('\n').map(str::trim).collect::<Vec<_>>().join(" ");
            }
            for x in o.values_mut() {
                plain(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(plain),
        _ => {}
    }
}

/// The generated object schemas, by name.
pub fn generated() -> Map<String, Value> {
    use telltale_types as t;
    let mut s = Map::new();
    s.insert("Reading".into(), schema::<t::Reading>());
    s.insert("Latest".into(), schema::<t::Latest>());
    s.insert("Device".into(), schema::<t::Device>());
    s.insert("Bookmark".into(), schema::<t::Bookmark>());
    s.insert("Problem".into(), schema::<t::Problem>());
    s.insert("Reject".into(), schema::<t::Reject>());
    s.insert("Alert".into(), schema::<t::Alert>());
    s.insert("AckRequest".into(), schema::<t::AckRequest>());
    s.insert("Command".into(), schema::<t::Command>());
    s.insert("CommandRequest".into(), schema::<t::CommandRequest>());
    for (kind, item, description) in [
        (
            "ReadingList",
            "Reading",
            "Readings, oldest first (by sequence).",
        ),
        (
            "LatestList",
            "Latest",
            "Latest readings, ordered by the text `device/metric`.",
        ),
        ("DeviceList", "Device", "Devices, by id."),
        ("AlertList", "Alert", "Alerts, by id."),
        ("CommandList", "Command", "Commands, by id."),
        (
            "RejectList",
            "Reject",
            "Rejects, oldest first (by id, their version).",
        ),
    ] {
        s.insert(kind.into(), list(kind, item, description));
    }
    for v in s.values_mut() {
        plain(v);
    }
    // Problem's defaults are for reading another server's problem, not
    // part of what this API answers.
    if let Some(Value::Object(props)) = s.get_mut("Problem").and_then(|p| p.get_mut("properties")) {
        for p in props.values_mut().filter_map(Value::as_object_mut) {
            p.remove("default");
        }
    }
    // What the types keep as plain strings.
    replace(&mut s, "Bookmark", "kind", json!({"const": "Bookmark"}));
    replace(
        &mut s,
        "Bookmark",
        "resourceVersion",
        json!({"$ref": "#/components/schemas/ResourceVersion"}),
    );
    patch(&mut s, "Problem", "code", json!({ "enum": CODES }));
    patch(
        &mut s,
        "Problem",
        "reason",
        json!({"enum": ["store", "ingest"]}),
    );
    s
}

#[cfg(test)]
mod tests {
    use super::generated;
    use serde_json::Value;

    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                if let Some(Value::String(r)) = o.get("$ref") {
                    out.push(r.clone());
                }
                o.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }

    /// Every schema a generated one points at is in the document: a type
    /// whose field names another `ToSchema` type is inlined or listed.
    #[test]
    fn generated_schemas_point_only_at_schemas_that_exist() {
        let base: Value = serde_json::from_str(super::super::BASE).expect("base.json");
        let generated = generated();
        let mut found = Vec::new();
        generated.values().for_each(|s| refs(s, &mut found));
        assert!(!found.is_empty());
        for r in found {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("a schema $ref: {r}"));
            assert!(
                generated.contains_key(name) || base["components"]["schemas"].get(name).is_some(),
                "{r} is in neither the generated schemas nor base.json"
            );
        }
    }

    /// A schema is generated or written in base.json, never both.
    #[test]
    fn base_json_keeps_only_what_is_not_generated() {
        let base: Value = serde_json::from_str(super::super::BASE).expect("base.json");
        for name in generated().keys() {
            assert!(
                base["components"]["schemas"].get(name).is_none(),
                "{name} is generated and still in base.json"
            );
        }
    }
}
