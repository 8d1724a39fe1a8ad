//! The filter language of the watch API (spec section 5): the shorthands
//! `device=`, `metric=`, `severity=`, `state=` and the `filter=` expression.
//! Parse once, match many: [`Filter::parse`] reads and type-checks the raw
//! parameter values into a [`Filter`], a predicate that is then matched
//! against any number of items through the [`Fields`] trait. This crate
//! never does IO and knows nothing of HTTP, query strings, JSON, the store
//! or the types of the items it filters; an error is a [`FilterError`] with
//! the parameter and byte position, for the caller to turn into a
//! `400 bad_filter`.
//!
//! # Meaning
//!
//! - The shorthands and the expression are ANDed. In a shorthand a comma
//!   means "any of" and an item with `*` or `?` is a glob; items are taken
//!   as written (not trimmed) and an empty item is an error.
//! - `~` is a glob match: `*` any run of characters (also none), `?` exactly
//!   one character; no classes, no escapes. The matcher is written here,
//!   not taken from a crate; `src/glob.rs` says why.
//! - `value` may hold a number, a boolean or a string; every other field
//!   holds a string, so comparing one with a number or a boolean is an error
//!   when parsing. `<`, `<=`, `>`, `>=` with `true`/`false` are errors, and
//!   so is any ordering of `severity` (its values are not ordered by their
//!   spelling). A severity must be one of [`SEVERITIES`]; a severity glob
//!   must match at least one. `state` takes any string.
//! - Strings order by code point; numbers as `f64`.
//! - **A missing field makes every comparison on it false, `!=` and `in`
//!   included**; `not` inverts as usual, so `not unit == "Cel"` matches an
//!   item without a unit while `unit != "Cel"` does not. Likewise a value of
//!   a different type than the literal (`value > 30` on a string value)
//!   compares false with every operator. A NaN value is `!=` every number.
//!
//! # Limits
//!
//! Each parameter's text is at most [`MAX_LEN`] bytes; `(` and `not` nest at
//! most [`MAX_DEPTH`] deep; an `in` list or a shorthand holds at most
//! [`MAX_LIST`] values; an expression has at most [`MAX_TERMS`] terms (each
//! comparison, each `in` value and each `and`, `or`, `not`). Parsing and
//! matching never panic and take time linear in the filter (a glob match is
//! O(text × pattern)).
//!
//! # Fuzzing
//!
//! `fuzz/` holds a cargo-fuzz target in a workspace of its own (not a member
//! of the main workspace). Run it from `crates/telltale-filter` with
//! `cargo fuzz run parse`; it needs a nightly toolchain and cargo-fuzz. It
//! parses arbitrary UTF-8, matches what parses against a fixed item, and
//! checks that the normalized text parses back to itself. The property
//! tests in this crate (random bytes, token soup, mutated grammatical
//! filters) cover the same ground on stable with `cargo test`.

mod ast;
mod error;
mod fields;
mod glob;
mod lex;
mod parse;
mod shorthand;

pub use error::{ErrorKind, FilterError, Param};
pub use fields::{Field, FieldValue, Fields};

use ast::{Expr, FieldName};
use std::fmt;

/// The longest `filter` expression, and the longest shorthand value, in bytes.
pub const MAX_LEN: usize = 1024;
/// How deep `(` and `not` may nest.
pub const MAX_DEPTH: usize = 32;
/// The most values in an `in` list or in one shorthand.
pub const MAX_LIST: usize = 128;
/// The most terms (comparisons, `in` values, `and`, `or`, `not`) in an
/// expression.
pub const MAX_TERMS: usize = 256;
/// The severities an alert may have, most severe first.
pub const SEVERITIES: [&str; 5] = ["critical", "major", "minor", "warning", "info"];

/// The raw values of the shorthand parameters, as the query string (or the
/// WebSocket message) gave them; `None` where a parameter is absent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Shorthands {
    /// `device=`: device ids and globs, comma separated.
    pub device: Option<String>,
    /// `metric=`: metric names and globs, comma separated.
    pub metric: Option<String>,
    /// `severity=`: severities (of [`SEVERITIES`]) and globs, comma separated.
    pub severity: Option<String>,
    /// `state=`: alert or command states and globs, comma separated.
    pub state: Option<String>,
}

/// A compiled filter: the shorthands and the expression, ANDed.
///
/// Its `Display` is the normalized expression (shorthands included, as the
/// comparisons they abbreviate), which parses back to the same filter; it is
/// empty for [`Filter::all`].
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// The predicate; `None` matches everything.
    expr: Option<Expr>,
}

impl Filter {
    /// The filter that matches every item.
    pub fn all() -> Self {
        Filter { expr: None }
    }

    /// Whether this filter matches every item (no shorthand, no expression).
    pub fn is_all(&self) -> bool {
        self.expr.is_none()
    }

    /// Compiles the `filter=` expression, if any, and the shorthands. The
    /// shorthands are checked first, in the order device, metric, severity,
    /// state; the first error is returned.
    pub fn parse(expr: Option<&str>, shorthands: &Shorthands) -> Result<Self, FilterError> {
        let mut terms = Vec::new();
        let lists = [
            (Param::Device, FieldName::Device, &shorthands.device),
            (Param::Metric, FieldName::Metric, &shorthands.metric),
            (Param::Severity, FieldName::Severity, &shorthands.severity),
            (Param::State, FieldName::State, &shorthands.state),
        ];
        for (param, field, raw) in lists {
            if let Some(raw) = raw {
                terms.push(shorthand::compile(param, field, raw)?);
            }
        }
        if let Some(text) = expr {
            match parse::parse(text)? {
                Expr::And(all) => terms.extend(all),
                e => terms.push(e),
            }
        }
        Ok(Filter {
            expr: (!terms.is_empty()).then(|| Expr::group(terms, Expr::And)),
        })
    }

    /// Whether `item` passes this filter.
    pub fn matches(&self, item: &(impl Fields + ?Sized)) -> bool {
        self.expr.as_ref().is_none_or(|e| e.matches(item))
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.expr {
            Some(e) => fmt::Display::fmt(e, f),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny xorshift64 generator: reproducible randomness without a crate.
    pub(crate) struct XorShift(pub(crate) u64);

    impl XorShift {
        pub(crate) fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        /// A number in `0..n` (`n` > 0).
        pub(crate) fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// A sample item: a reading, an alert, a command, whatever is set.
    #[derive(Clone, Copy)]
    struct Item {
        name: &'static str,
        device: Option<&'static str>,
        metric: Option<&'static str>,
        value: Option<FieldValue<'static>>,
        unit: Option<&'static str>,
        severity: Option<&'static str>,
        state: Option<&'static str>,
        rule: Option<&'static str>,
        labels: &'static [(&'static str, &'static str)],
    }

    const NONE: Item = Item {
        name: "",
        device: None,
        metric: None,
        value: None,
        unit: None,
        severity: None,
        state: None,
        rule: None,
        labels: &[],
    };

    impl Fields for Item {
        fn field(&self, f: Field<'_>) -> Option<FieldValue<'_>> {
            let s = |v: Option<&'static str>| v.map(FieldValue::Str);
            match f {
                Field::Device => s(self.device),
                Field::Metric => s(self.metric),
                Field::Value => self.value,
                Field::Unit => s(self.unit),
                Field::Severity => s(self.severity),
                Field::State => s(self.state),
                Field::Rule => s(self.rule),
                Field::Label(key) => self
                    .labels
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| FieldValue::Str(v)),
            }
        }
    }

    const ITEMS: &[Item] = &[
        // a numeric reading
        Item {
            name: "r1",
            device: Some("sensor-1"),
            metric: Some("temp"),
            value: Some(FieldValue::Num(31.5)),
            unit: Some("Cel"),
            labels: &[("site", "north"), ("floor", "2")],
            ..NONE
        },
        // a boolean reading
        Item {
            name: "r2",
            device: Some("pump-7"),
            metric: Some("running"),
            value: Some(FieldValue::Bool(true)),
            labels: &[("site", "south")],
            ..NONE
        },
        // a string reading, no unit, no labels
        Item {
            name: "r3",
            device: Some("gate"),
            metric: Some("status"),
            value: Some(FieldValue::Str("open")),
            ..NONE
        },
        // an alert
        Item {
            name: "a1",
            device: Some("sensor-1"),
            metric: Some("temp"),
            value: Some(FieldValue::Num(40.0)),
            severity: Some("major"),
            state: Some("firing"),
            rule: Some("hot"),
            labels: &[("site", "north")],
            ..NONE
        },
        // a command
        Item {
            name: "c1",
            device: Some("pump-7"),
            state: Some("queued"),
            ..NONE
        },
        // unicode everywhere
        Item {
            name: "u1",
            device: Some("café-☃"),
            metric: Some("température"),
            value: Some(FieldValue::Num(-2.5)),
            unit: Some("°C"),
            ..NONE
        },
        // a NaN value
        Item {
            name: "n1",
            device: Some("nan"),
            metric: Some("temp"),
            value: Some(FieldValue::Num(f64::NAN)),
            ..NONE
        },
        // empty strings
        Item {
            name: "e1",
            device: Some(""),
            metric: Some(""),
            ..NONE
        },
    ];

    /// (filter expression, names of the items it matches, in ITEMS order)
    const MATCHES: &[(&str, &str)] = &[
        // strings: every operator
        (r#"device == "sensor-1""#, "r1 a1"),
        (r#"device != "sensor-1""#, "r2 r3 c1 u1 n1 e1"),
        (r#"device < "gate""#, "u1 e1"),
        (r#"device <= "gate""#, "r3 u1 e1"),
        (r#"device > "pump-7""#, "r1 a1"),
        (r#"device >= "pump-7""#, "r1 r2 a1 c1"),
        (r#"device in ("gate", "pump-7")"#, "r2 r3 c1"),
        (r#"device in ("nobody")"#, ""),
        // numbers: every operator
        ("value == 40", "a1"),
        ("value == 4e1", "a1"),
        ("value != 40", "r1 u1 n1"),
        ("value < 31.5", "u1"),
        ("value <= 31.5", "r1 u1"),
        ("value > 30", "r1 a1"),
        ("value >= 40", "a1"),
        ("value > -1e3", "r1 a1 u1"),
        ("value < -2", "u1"),
        ("value in (40, -2.5)", "a1 u1"),
        // booleans and strings in `value`
        ("value == true", "r2"),
        ("value != true", ""),
        ("value == false", ""),
        ("value != false", "r2"),
        (r#"value == "open""#, "r3"),
        (r#"value < "p""#, "r3"),
        (r#"value ~ "op*""#, "r3"),
        (r#"value in (true, "open", 31.5)"#, "r1 r2 r3"),
        // mismatched types are false, `!=` included
        (r#"value == "40""#, ""),
        (r#"value != "open""#, ""),
        ("value > 0", "r1 a1"),
        // missing fields are false, `!=` included; `not` inverts
        (r#"unit == "Cel""#, "r1"),
        (r#"unit != "Cel""#, "u1"),
        (r#"not unit == "Cel""#, "r2 r3 a1 c1 u1 n1 e1"),
        (r#"not unit != "Cel""#, "r1 r2 r3 a1 c1 n1 e1"),
        (r#"unit in ("Cel", "°C")"#, "r1 u1"),
        (r#"unit ~ "*""#, "r1 u1"),
        // labels
        (r#"labels.site == "north""#, "r1 a1"),
        (r#"labels.site != "north""#, "r2"),
        (r#"labels.floor == "2""#, "r1"),
        (r#"labels.missing ~ "*""#, ""),
        (r#"not labels.site ~ "*""#, "r3 c1 u1 n1 e1"),
        // alerts and commands
        (r#"severity == "major""#, "a1"),
        (r#"severity != "major""#, ""),
        (r#"severity in ("critical", "major")"#, "a1"),
        (r#"severity ~ "m*""#, "a1"),
        (r#"state == "firing""#, "a1"),
        (r#"state ~ "*ed""#, "c1"),
        (r#"state in ("pending", "queued")"#, "c1"),
        (r#"rule == "hot""#, "a1"),
        // globs
        (r#"device ~ "*""#, "r1 r2 r3 a1 c1 u1 n1 e1"),
        (r#"device ~ "?*""#, "r1 r2 r3 a1 c1 u1 n1"),
        (r#"device ~ """#, "e1"),
        (r#"device ~ "sensor-?""#, "r1 a1"),
        (r#"device ~ "sensor-""#, ""),
        (r#"device ~ "gate""#, "r3"),
        (r#"device ~ "p*p*7""#, "r2 c1"),
        (r#"device ~ "*-*""#, "r1 r2 a1 c1 u1"),
        (r#"device ~ "caf?-?""#, "u1"),
        (r#"metric ~ "temp*""#, "r1 a1 u1 n1"),
        (r#"metric ~ "temp""#, "r1 a1 n1"),
        (r#"metric ~ "?????""#, ""),
        (r#"metric ~ "????""#, "r1 a1 n1"),
        (r#"unit ~ "?C""#, "u1"),
        // and, or, not, precedence
        (r#"device == "sensor-1" and value > 35"#, "a1"),
        (r#"device == "gate" or value == true"#, "r2 r3"),
        (
            r#"device == "gate" or device == "pump-7" and value == true"#,
            "r2 r3",
        ),
        (
            r#"(device == "gate" or device == "pump-7") and value == true"#,
            "r2",
        ),
        (r#"not device == "gate" and not device ~ "*-*""#, "n1 e1"),
        (r#"not (device == "gate" or device ~ "*-*")"#, "n1 e1"),
        (r#"not not device == "gate""#, "r3"),
        // the spec's example
        (
            r#"metric == "temp" and value > 30 and labels.site == "north""#,
            "r1 a1",
        ),
    ];

    fn names(filter: &Filter) -> String {
        ITEMS
            .iter()
            .filter(|item| filter.matches(*item))
            .map(|item| item.name)
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn matches_table() {
        let none = Shorthands::default();
        for &(src, want) in MATCHES {
            let filter = Filter::parse(Some(src), &none).unwrap_or_else(|e| panic!("{src:?}: {e}"));
            assert_eq!(names(&filter), want, "{src}");
            // The normalized text means the same.
            let again = Filter::parse(Some(&filter.to_string()), &none)
                .unwrap_or_else(|e| panic!("{filter}: {e}"));
            assert_eq!(names(&again), want, "{filter}");
        }
    }

    #[test]
    fn nan_is_unequal_to_everything() {
        let nan = ITEMS
            .iter()
            .find(|i| i.name == "n1")
            .copied()
            .unwrap_or(NONE);
        for (src, want) in [
            ("value == 0", false),
            ("value != 0", true),
            ("value < 0", false),
            ("value >= 0", false),
            ("value in (0)", false),
        ] {
            let f = Filter::parse(Some(src), &Shorthands::default()).ok();
            assert_eq!(f.map(|f| f.matches(&nan)), Some(want), "{src}");
        }
    }

    fn sh(
        device: Option<&str>,
        metric: Option<&str>,
        severity: Option<&str>,
        state: Option<&str>,
    ) -> Shorthands {
        Shorthands {
            device: device.map(Into::into),
            metric: metric.map(Into::into),
            severity: severity.map(Into::into),
            state: state.map(Into::into),
        }
    }

    #[test]
    fn shorthands_table() {
        // (shorthands, expression, items, normalized text)
        let cases = [
            (
                sh(Some("sensor-1"), None, None, None),
                None,
                "r1 a1",
                r#"device == "sensor-1""#,
            ),
            (
                sh(Some("gate,pump-*"), None, None, None),
                None,
                "r2 r3 c1",
                r#"device == "gate" or device ~ "pump-*""#,
            ),
            (
                sh(Some("*"), Some("temp,status"), None, None),
                None,
                "r1 r3 a1 n1",
                r#"device ~ "*" and metric in ("temp", "status")"#,
            ),
            (
                sh(None, None, Some("major,critical"), Some("firing")),
                None,
                "a1",
                r#"severity in ("major", "critical") and state == "firing""#,
            ),
            (
                sh(None, None, None, Some("*ed,firing")),
                None,
                "a1 c1",
                r#"state == "firing" or state ~ "*ed""#,
            ),
            // shorthands AND the expression
            (
                sh(Some("sensor-?,gate"), None, None, None),
                Some("value > 35 or value == \"open\""),
                "r3 a1",
                r#"(device == "gate" or device ~ "sensor-?") and (value > 35.0 or value == "open")"#,
            ),
            (
                sh(None, Some("temp"), None, None),
                Some("value > 30 and labels.site == 'north'"),
                "r1 a1",
                r#"metric == "temp" and value > 30.0 and labels.site == "north""#,
            ),
            (
                sh(Some("nobody"), None, None, None),
                Some("value > 0"),
                "",
                r#"device == "nobody" and value > 0.0"#,
            ),
        ];
        for (shorthands, expr, want, text) in cases {
            let filter =
                Filter::parse(expr, &shorthands).unwrap_or_else(|e| panic!("{shorthands:?}: {e}"));
            assert_eq!(names(&filter), want, "{shorthands:?} {expr:?}");
            assert_eq!(filter.to_string(), text);
            let again = Filter::parse(Some(text), &Shorthands::default()).map(|f| names(&f));
            assert_eq!(again.as_deref(), Ok(want), "{text}");
        }
    }

    #[test]
    fn errors_name_their_parameter() {
        let err = Filter::parse(Some("value > 1"), &sh(None, Some("temp,,hum"), None, None)).err();
        assert_eq!(err.as_ref().map(FilterError::param), Some(Param::Metric));
        assert_eq!(err.as_ref().map(FilterError::position), Some(5));
        assert_eq!(
            err.as_ref().and_then(FilterError::kind),
            Some(&ErrorKind::EmptyItem)
        );
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some("metric: empty item at 5")
        );

        let err = Filter::parse(Some("value >"), &sh(Some("a"), None, None, None)).err();
        assert_eq!(err.as_ref().map(FilterError::param), Some(Param::Filter));
        assert_eq!(err.map(|e| e.position()), Some(7));

        // Shorthands are checked before the expression.
        let err = Filter::parse(Some("colour == 1"), &sh(None, None, Some("fatal"), None)).err();
        assert_eq!(err.map(|e| e.param()), Some(Param::Severity));
    }

    #[test]
    fn all_matches_everything() {
        let all = Filter::all();
        assert!(all.is_all());
        assert_eq!(names(&all), "r1 r2 r3 a1 c1 u1 n1 e1");
        assert_eq!(all.to_string(), "");
        let parsed = Filter::parse(None, &Shorthands::default()).ok();
        assert_eq!(parsed.as_ref().map(Filter::is_all), Some(true));
        assert!(Filter::default().is_all());
        let some = Filter::parse(None, &sh(Some("a"), None, None, None)).ok();
        assert_eq!(some.map(|f| f.is_all()), Some(false));
        // An empty expression is an error, not "everything".
        assert!(Filter::parse(Some(""), &Shorthands::default()).is_err());
    }

    #[test]
    fn filter_is_clone_send_sync_debug() {
        fn check<T: Clone + Send + Sync + fmt::Debug + 'static>() {}
        check::<Filter>();
        check::<FilterError>();
        check::<Shorthands>();
        // Usable through a trait object too.
        let item: &dyn Fields = &ITEMS[0];
        let f = Filter::parse(Some("value > 1"), &Shorthands::default()).ok();
        assert_eq!(f.map(|f| f.matches(item)), Some(true));
    }

    /// Parses `src` and, when it parses, matches it against every sample item
    /// and checks that its normalized text parses back to the same text.
    fn exercise(src: &str) -> bool {
        let Ok(filter) = Filter::parse(Some(src), &Shorthands::default()) else {
            return false;
        };
        let _ = names(&filter);
        let text = filter.to_string();
        if text.len() <= MAX_LEN {
            let again = Filter::parse(Some(&text), &Shorthands::default()).map(|f| f.to_string());
            assert_eq!(again.as_deref(), Ok(text.as_str()), "{src:?}");
        }
        true
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        for _ in 0..20_000 {
            let len = rng.below(80) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            exercise(&String::from_utf8_lossy(&bytes));
        }
    }

    /// Fragments of the language and of near misses.
    const BITS: &[&str] = &[
        "device",
        "metric",
        "value",
        "unit",
        "severity",
        "state",
        "rule",
        "labels.site",
        "labels.",
        "colour",
        "==",
        "!=",
        "<",
        "<=",
        ">",
        ">=",
        "~",
        "=",
        "!",
        "in",
        "(",
        ")",
        ",",
        "and",
        "or",
        "not",
        "AND",
        "true",
        "false",
        "1",
        "-2.5e3",
        "1e999",
        "1.",
        "\"major\"",
        "'a*'",
        "\"?\"",
        "\"x\\\"y\"",
        "'",
        "\"",
        "\\",
        "\"unterminated",
        "é",
        "☃",
        "\0",
        " ",
    ];

    #[test]
    fn random_token_soup_never_panics() {
        let mut rng = XorShift(0x853c_49e6_748f_ea9b);
        for _ in 0..30_000 {
            let n = rng.below(24);
            let sep = if rng.below(2) == 0 { " " } else { "" };
            let src: Vec<&str> = (0..n)
                .map(|_| BITS[rng.below(BITS.len() as u64) as usize])
                .collect();
            exercise(&src.join(sep));
        }
    }

    /// A random expression that follows the grammar (types aside).
    fn grammatical(rng: &mut XorShift, depth: u32, out: &mut String) {
        const FIELDS: &[&str] = &[
            "device",
            "metric",
            "value",
            "unit",
            "state",
            "rule",
            "labels.site",
        ];
        const OPS: &[&str] = &["==", "!=", "<", "<=", ">", ">=", "~"];
        const LITS: &[&str] = &[
            "\"sensor-*\"",
            "'temp'",
            "\"\"",
            "30",
            "-1.5e1",
            "true",
            "\"?é*\"",
        ];
        let pick =
            |rng: &mut XorShift, from: &[&'static str]| from[rng.below(from.len() as u64) as usize];
        match rng.below(if depth > 4 { 1 } else { 5 }) {
            0 | 1 => {
                out.push_str(pick(rng, FIELDS));
                out.push(' ');
                if rng.below(4) == 0 {
                    out.push_str("in (");
                    for i in 0..=rng.below(3) {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        out.push_str(pick(rng, LITS));
                    }
                    out.push(')');
                } else {
                    out.push_str(pick(rng, OPS));
                    out.push(' ');
                    out.push_str(pick(rng, LITS));
                }
            }
            2 => {
                out.push_str("not ");
                grammatical(rng, depth + 1, out);
            }
            3 => {
                out.push('(');
                grammatical(rng, depth + 1, out);
                out.push(')');
            }
            _ => {
                grammatical(rng, depth + 1, out);
                out.push_str(if rng.below(2) == 0 { " and " } else { " or " });
                grammatical(rng, depth + 1, out);
            }
        }
    }

    #[test]
    fn random_grammatical_filters_and_their_mutants_never_panic() {
        let mut rng = XorShift(0xda94_2042_e4dd_58b5);
        let mut parsed = 0;
        for round in 0..20_000 {
            let mut src = String::new();
            grammatical(&mut rng, 0, &mut src);
            // Every other input gets a random fragment spliced in.
            if round % 2 == 1 {
                let at = rng.below(src.len() as u64 + 1) as usize;
                let at = (0..=at)
                    .rev()
                    .find(|&i| src.is_char_boundary(i))
                    .unwrap_or(0);
                src.insert_str(at, BITS[rng.below(BITS.len() as u64) as usize]);
            }
            parsed += usize::from(exercise(&src));
        }
        // Type errors reject many, but a good share must get past the parser.
        assert!(parsed > 2_000, "only {parsed} of 20000 parsed");
    }

    #[test]
    fn hostile_inputs_stay_errors() {
        let none = Shorthands::default();
        let inputs = [
            "(".repeat(MAX_LEN),
            ")".repeat(MAX_LEN),
            "not ".repeat(MAX_LEN / 4),
            "\"".repeat(MAX_LEN),
            "\\".repeat(MAX_LEN),
            "9".repeat(MAX_LEN),
            format!("value ~ \"{}\"", "*".repeat(MAX_LEN - 12)),
            "é".repeat(MAX_LEN / 2),
        ];
        for src in inputs {
            let _ = Filter::parse(Some(&src), &none);
        }
        // A long all-star pattern is legal and cheap to match.
        let stars = format!("device ~ \"{}\"", "*?".repeat(500));
        let f = Filter::parse(Some(&stars), &none).ok();
        assert_eq!(f.map(|f| names(&f)), Some(String::new()));
    }
}
