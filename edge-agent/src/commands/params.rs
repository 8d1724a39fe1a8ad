//! Parameters of operator commands: the declared types ([`ParamSpec`])
//! compiled once, then checked against the JSON a command brings, each value
//! rendered as the text that goes into an argument. Pure. Every error names
//! the parameter.

use crate::config::ParamSpec;
use regex_automata::meta::Regex;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Longest string value accepted (bytes).
pub const MAX_STRING: usize = 1024;

/// A compiled parameter type.
#[derive(Debug, Clone)]
pub enum Param {
    /// A string, matching the whole pattern if there is one.
    String(Option<Pattern>),
    /// An integer within the bounds.
    Integer {
        /// Smallest value allowed.
        min: Option<i64>,
        /// Largest value allowed.
        max: Option<i64>,
    },
    /// A finite number within the bounds.
    Number {
        /// Smallest value allowed.
        min: Option<f64>,
        /// Largest value allowed.
        max: Option<f64>,
    },
    /// `true` or `false`.
    Boolean,
}

/// A string parameter's pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// As written in the config, for messages.
    source: String,
    /// Compiled to match the whole value.
    regex: Regex,
}

impl Param {
    /// Compiles a declared type; the error says which key is wrong.
    pub fn compile(spec: &ParamSpec) -> Result<Param, String> {
        Ok(match spec {
            ParamSpec::String { pattern: None } => Param::String(None),
            ParamSpec::String {
                pattern: Some(source),
            } => {
                // Anchored at both ends: a value is accepted only if all of it matches.
                let regex = Regex::new(&format!("^(?:{source})$")).map_err(|e| {
                    format!("pattern {source:?} is not a valid regular expression: {e}")
                })?;
                Param::String(Some(Pattern {
                    source: source.clone(),
                    regex,
                }))
            }
            ParamSpec::Integer { min, max } => {
                if let (Some(lo), Some(hi)) = (min, max) {
                    if lo > hi {
                        return Err(format!("min ({lo}) is above max ({hi})"));
                    }
                }
                Param::Integer {
                    min: *min,
                    max: *max,
                }
            }
            ParamSpec::Number { min, max } => {
                for (key, v) in [("min", min), ("max", max)] {
                    if v.is_some_and(|v| !v.is_finite()) {
                        return Err(format!("{key} must be a finite number"));
                    }
                }
                if let (Some(lo), Some(hi)) = (min, max) {
                    if lo > hi {
                        return Err(format!("min ({lo}) is above max ({hi})"));
                    }
                }
                Param::Number {
                    min: *min,
                    max: *max,
                }
            }
            ParamSpec::Boolean {} => Param::Boolean,
        })
    }

    /// Checks a value; `Ok` is the argument text, `Err` says what is wrong
    /// (without the parameter's name, which the caller adds).
    pub fn check(&self, v: &Value) -> Result<String, String> {
        match self {
            Param::String(pattern) => {
                let Value::String(s) = v else {
                    return Err(format!("expected a string, got {}", describe(v)));
                };
                if s.len() > MAX_STRING {
                    return Err(format!(
                        "{} bytes is longer than the {MAX_STRING} allowed",
                        s.len()
                    ));
                }
                if s.contains('\0') {
                    return Err("contains a NUL character".to_owned());
                }
                if let Some(p) = pattern {
                    if !p.regex.is_match(s.as_str()) {
                        return Err(format!("{} does not match {}", describe(v), p.source));
                    }
                }
                Ok(s.clone())
            }
            Param::Integer { min, max } => {
                let n = integer(v)
                    .ok_or_else(|| format!("expected an integer, got {}", describe(v)))?;
                if let Some(lo) = min.filter(|lo| n < *lo) {
                    return Err(format!("{n} is below the minimum {lo}"));
                }
                if let Some(hi) = max.filter(|hi| n > *hi) {
                    return Err(format!("{n} is above the maximum {hi}"));
                }
                Ok(n.to_string())
            }
            Param::Number { min, max } => {
                let x = v
                    .as_f64()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| format!("expected a number, got {}", describe(v)))?;
                if let Some(lo) = min.filter(|lo| x < *lo) {
                    return Err(format!("{x} is below the minimum {lo}"));
                }
                if let Some(hi) = max.filter(|hi| x > *hi) {
                    return Err(format!("{x} is above the maximum {hi}"));
                }
                Ok(x.to_string())
            }
            Param::Boolean => match v {
                Value::Bool(b) => Ok(b.to_string()),
                _ => Err(format!("expected true or false, got {}", describe(v))),
            },
        }
    }
}

/// A JSON integer as `i64`; also a float with no fraction (`5.0`), as some
/// clients write every number that way.
pub fn integer(v: &Value) -> Option<i64> {
    if let Some(n) = v.as_i64() {
        return Some(n);
    }
    let x = v.as_f64()?;
    // 2^53: beyond it a float no longer holds every integer.
    let exact = 9_007_199_254_740_992.0;
    (x.fract() == 0.0 && x.abs() <= exact).then_some(x as i64)
}

/// A JSON value for a message: short values as JSON, long ones cut, and
/// objects and arrays by kind.
pub fn describe(v: &Value) -> String {
    match v {
        Value::Object(_) => "an object".to_owned(),
        Value::Array(_) => "an array".to_owned(),
        _ => {
            let s = v.to_string();
            if s.chars().count() > 64 {
                let cut: String = s.chars().take(60).collect();
                format!("{cut}...")
            } else {
                s
            }
        }
    }
}

/// Checks the params a command brought against the declared ones: every
/// declared param present and valid, no other. `Ok` holds each value's
/// argument text; `Err` lists every problem, each naming its param.
pub fn check_all(
    declared: &BTreeMap<String, Param>,
    given: &Map<String, Value>,
) -> Result<BTreeMap<String, String>, String> {
    let mut problems = Vec::new();
    let mut values = BTreeMap::new();
    for (name, param) in declared {
        match given.get(name) {
            None => problems.push(format!("missing param {name:?}")),
            Some(v) => match param.check(v) {
                Ok(text) => {
                    values.insert(name.clone(), text);
                }
                Err(e) => problems.push(format!("param {name:?}: {e}")),
            },
        }
    }
    for name in given.keys().filter(|k| !declared.contains_key(*k)) {
        problems.push(unknown_param(name, declared.keys().map(String::as_str)));
    }
    if problems.is_empty() {
        Ok(values)
    } else {
        Err(problems.join("; "))
    }
}

/// "unknown param "x" (this command takes a, b)".
pub fn unknown_param<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> String {
    let known: Vec<&str> = known.collect();
    if known.is_empty() {
        format!("unknown param {name:?} (this command takes none)")
    } else {
        format!(
            "unknown param {name:?} (this command takes {})",
            known.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn string(pattern: Option<&str>) -> Param {
        Param::compile(&ParamSpec::String {
            pattern: pattern.map(str::to_owned),
        })
        .expect("compile")
    }

    #[test]
    fn check_table() {
        let unit = string(Some("[a-z0-9@._-]{1,64}"));
        let anchored = string(Some("^[a-z]+$"));
        let any = string(None);
        let int = Param::compile(&ParamSpec::Integer {
            min: Some(1),
            max: Some(10),
        })
        .expect("compile");
        let num = Param::compile(&ParamSpec::Number {
            min: Some(-0.5),
            max: None,
        })
        .expect("compile");
        let boolean = Param::Boolean;
        let long = "x".repeat(MAX_STRING + 1);
        let cases: Vec<(&Param, Value, Result<&str, &str>)> = vec![
            (&unit, json!("modem@1.service"), Ok("modem@1.service")),
            (
                &unit,
                json!("Modem"),
                Err("\"Modem\" does not match [a-z0-9@._-]{1,64}"),
            ),
            // The whole value must match, even without ^ and $.
            (&unit, json!("ok; bad"), Err("\"ok; bad\" does not match")),
            (&unit, json!(""), Err("\"\" does not match")),
            (&anchored, json!("abc"), Ok("abc")),
            (&anchored, json!("abc\n"), Err("\"abc\\n\" does not match")),
            (&unit, json!(5), Err("expected a string, got 5")),
            (&any, json!("a b $HOME `x`"), Ok("a b $HOME `x`")),
            (&any, json!(""), Ok("")),
            (&any, json!("a\u{0}b"), Err("contains a NUL character")),
            (
                &any,
                json!(long),
                Err("1025 bytes is longer than the 1024 allowed"),
            ),
            (&any, json!(null), Err("expected a string, got null")),
            (
                &any,
                json!({"a": 1}),
                Err("expected a string, got an object"),
            ),
            (&int, json!(5), Ok("5")),
            (&int, json!(5.0), Ok("5")),
            (&int, json!(1), Ok("1")),
            (&int, json!(10), Ok("10")),
            (&int, json!(0), Err("0 is below the minimum 1")),
            (&int, json!(11), Err("11 is above the maximum 10")),
            (&int, json!(5.5), Err("expected an integer, got 5.5")),
            (&int, json!("5"), Err("expected an integer, got \"5\"")),
            (&int, json!(u64::MAX), Err("expected an integer")),
            (&num, json!(0.25), Ok("0.25")),
            (&num, json!(-0.5), Ok("-0.5")),
            (&num, json!(1e6), Ok("1000000")),
            (&num, json!(7), Ok("7")),
            (&num, json!(-1), Err("-1 is below the minimum -0.5")),
            (&num, json!(true), Err("expected a number, got true")),
            (&boolean, json!(true), Ok("true")),
            (&boolean, json!(false), Ok("false")),
            (
                &boolean,
                json!("true"),
                Err("expected true or false, got \"true\""),
            ),
            (&boolean, json!(1), Err("expected true or false, got 1")),
        ];
        for (param, value, want) in cases {
            match (param.check(&value), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{value}"),
                (Err(e), Err(start)) => assert!(e.starts_with(start), "{value}: {e}"),
                (got, want) => panic!("{value}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn compile_errors_name_the_key() {
        let cases: &[(ParamSpec, &str)] = &[
            (
                ParamSpec::String {
                    pattern: Some("[a-".into()),
                },
                "pattern \"[a-\" is not a valid regular expression",
            ),
            (
                ParamSpec::Integer {
                    min: Some(5),
                    max: Some(1),
                },
                "min (5) is above max (1)",
            ),
            (
                ParamSpec::Number {
                    min: Some(f64::NAN),
                    max: None,
                },
                "min must be a finite number",
            ),
            (
                ParamSpec::Number {
                    min: Some(2.0),
                    max: Some(1.0),
                },
                "min (2) is above max (1)",
            ),
        ];
        for (spec, want) in cases {
            let e = Param::compile(spec).expect_err("invalid");
            assert!(e.starts_with(want), "{spec:?}: {e}");
        }
    }

    #[test]
    fn check_all_names_every_problem() {
        let declared: BTreeMap<String, Param> = [
            ("unit".to_owned(), string(Some("[a-z]+"))),
            (
                "count".to_owned(),
                Param::Integer {
                    min: None,
                    max: None,
                },
            ),
        ]
        .into_iter()
        .collect();
        let obj = |v: Value| v.as_object().cloned().expect("object");
        type Want<'a> = Result<Vec<(&'a str, &'a str)>, &'a str>;
        let cases: Vec<(Value, Want<'_>)> = vec![
            (
                json!({"unit": "modem", "count": 3}),
                Ok(vec![("count", "3"), ("unit", "modem")]),
            ),
            (json!({"unit": "modem"}), Err("missing param \"count\"")),
            (
                json!({}),
                Err("missing param \"count\"; missing param \"unit\""),
            ),
            (
                json!({"unit": "modem", "count": 3, "force": true}),
                Err("unknown param \"force\" (this command takes count, unit)"),
            ),
            (
                json!({"unit": "Modem", "count": "x"}),
                Err("param \"count\": expected an integer, got \"x\"; param \"unit\": \"Modem\" does not match [a-z]+"),
            ),
        ];
        for (given, want) in cases {
            let got = check_all(&declared, &obj(given.clone()));
            let want = want
                .map(|v| {
                    v.into_iter()
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect::<BTreeMap<_, _>>()
                })
                .map_err(str::to_owned);
            assert_eq!(got, want, "{given}");
        }
        let none = BTreeMap::new();
        assert_eq!(
            check_all(&none, &obj(json!({"x": 1}))),
            Err("unknown param \"x\" (this command takes none)".to_owned())
        );
    }
}
