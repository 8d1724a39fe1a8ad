//! Rule definitions as the hub loads them (TOML `[[rule]]`, JSON), their
//! validation, and their compiled form.

use crate::duration::parse_duration;
use crate::{RuleError, Value, ValueRef};
use rustc_hash::FxHashSet;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;
use telltale_filter::{Filter, Shorthands, SEVERITIES};

/// One alert rule, as written. Durations stay text so a rule serializes
/// back exactly as it was given; [`Rule::validate`] checks everything.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique id, `[A-Za-z0-9_.-]{1,64}`: names the rule's alerts and tells a
    /// kept rule from a changed one in [`Engine::replace_rules`](crate::Engine::replace_rules).
    pub name: String,
    /// Scope: device ids and globs, comma separated (the `device=` shorthand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Scope: metric names and globs, comma separated (the `metric=` shorthand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// Scope: a filter expression on `device`, `metric`, `unit` and
    /// `labels.<key>`, ANDed with the shorthands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// What makes the alert true.
    pub condition: Condition,
    /// How long the condition must hold before the alert fires; none = at once.
    #[serde(rename = "for", default, skip_serializing_if = "Option::is_none")]
    pub for_duration: Option<String>,
    /// How long an alert keeps firing after its condition clears, so a
    /// brief dip does not resolve and re-fire it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_firing_for: Option<String>,
    /// One of [`SEVERITIES`]; copied into every transition.
    pub severity: String,
    /// Copied into every transition, for routing and grouping.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Text of the alert, with `{device}`, `{metric}`, `{value}`, `{unit}`,
    /// `{rule}` and `{threshold}`; `{{` and `}}` are braces. A default per
    /// condition kind when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Names of the notification sinks to tell (`[A-Za-z0-9_.-]{1,64}`);
    /// carried for the hub.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<String>,
    /// How often the hub re-notifies a firing alert (a duration > 0);
    /// carried for the hub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_every: Option<String>,
}

/// The unit of time of a rate of change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Per {
    /// Change per second.
    Second,
    /// Change per minute.
    Minute,
    /// Change per hour.
    Hour,
}

/// A rule's condition: one inline table whose main key names the kind (see
/// the crate docs). A table matching no variant exactly (no kind, two kinds,
/// a modifier of another kind, an unknown key) does not deserialize.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(
    untagged,
    deny_unknown_fields,
    expecting = "a condition is one of \
    { above, clear_below? }, { below, clear_above? }, { outside = [low, high], clear_inside? }, \
    { inside }, { equals }, { not_equals }, { no_data = duration }, \
    { rate_above, per, window }, { rate_below, per, window }"
)]
pub enum Condition {
    /// True while the value is `> above`; with `clear_below`, once true it
    /// stays true until the value is `< clear_below`.
    Above {
        /// The firing threshold.
        above: f64,
        /// The clearing threshold (<= above), for hysteresis.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clear_below: Option<f64>,
    },
    /// True while the value is `< below`; with `clear_above`, once true it
    /// stays true until the value is `> clear_above`.
    Below {
        /// The firing threshold.
        below: f64,
        /// The clearing threshold (>= below), for hysteresis.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clear_above: Option<f64>,
    },
    /// True while the value is outside `[low, high]`; with `clear_inside`,
    /// once true it stays true until the value is inside that band.
    Outside {
        /// The normal band, `[low, high]`, bounds included.
        outside: [f64; 2],
        /// The band (within `outside`) the value must return to, for hysteresis.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clear_inside: Option<[f64; 2]>,
    },
    /// True while the value is inside a band.
    Inside {
        /// The band, `[low, high]`, bounds included.
        inside: [f64; 2],
    },
    /// True while the value equals this one (same type only).
    Equals {
        /// A string, boolean or number.
        equals: Value,
    },
    /// True while the value differs from this one (same type only).
    NotEquals {
        /// A string, boolean or number.
        not_equals: Value,
    },
    /// True when a series in scope has had no reading for a while.
    NoData {
        /// How long (a duration), in hub time.
        no_data: String,
    },
    /// True while the value rises faster than a rate.
    RateAbove {
        /// The rate, in value units per `per`.
        rate_above: f64,
        /// The rate's unit of time.
        per: Per,
        /// The span (a duration, device time) whose oldest and newest
        /// samples give the rate.
        window: String,
    },
    /// True while the rate, measured likewise, is below `rate_below` (a
    /// negative number: falling faster than).
    RateBelow {
        /// The rate, in value units per `per`.
        rate_below: f64,
        /// The rate's unit of time.
        per: Per,
        /// The span (a duration, device time) whose oldest and newest
        /// samples give the rate.
        window: String,
    },
}

/// The most samples a rate-of-change series keeps; when full, every other
/// one is dropped, so old samples thin out instead of piling up.
pub(crate) const MAX_SAMPLES: usize = 256;

/// (device time, value) samples of one series for one rate rule.
pub(crate) type Samples = VecDeque<(i64, f64)>;

/// A rule ready to run.
#[derive(Clone, Debug)]
pub(crate) struct Compiled {
    pub(crate) def: Rule,
    pub(crate) scope: Filter,
    /// `no_data` or the rate `window`, in ms; 0 for other conditions.
    pub(crate) span: i64,
    /// `for`, in ms.
    pub(crate) hold: i64,
    /// `keep_firing_for`, in ms.
    pub(crate) keep: i64,
    pub(crate) severity: &'static str,
    pub(crate) threshold: String,
    summary: Vec<Piece>,
}

impl Compiled {
    pub(crate) fn no_data(&self) -> Option<i64> {
        matches!(self.def.condition, Condition::NoData { .. }).then_some(self.span)
    }

    /// Whether the condition holds for `v`, given whether it held before
    /// (`active`, for hysteresis). `None`: this reading says nothing (wrong
    /// type, NaN, a rate sample not newer than the last), so the alert
    /// stays as it is.
    pub(crate) fn eval(
        &self,
        v: ValueRef<'_>,
        time: i64,
        active: bool,
        samples: &mut Samples,
    ) -> Option<bool> {
        let num = match v {
            ValueRef::Number(n) if !n.is_nan() => Some(n),
            _ => None,
        };
        let within = |v: f64, [lo, hi]: [f64; 2]| lo <= v && v <= hi;
        match self.def.condition {
            Condition::Above { above, clear_below } => num.map(|v| match clear_below {
                Some(c) if active => v >= c,
                _ => v > above,
            }),
            Condition::Below { below, clear_above } => num.map(|v| match clear_above {
                Some(c) if active => v <= c,
                _ => v < below,
            }),
            Condition::Outside {
                outside,
                clear_inside,
            } => num.map(|v| match clear_inside {
                Some(band) if active => !within(v, band),
                _ => !within(v, outside),
            }),
            Condition::Inside { inside } => num.map(|v| within(v, inside)),
            Condition::Equals { ref equals } => same_type(equals.as_ref(), v),
            Condition::NotEquals { ref not_equals } => {
                same_type(not_equals.as_ref(), v).map(|e| !e)
            }
            Condition::NoData { .. } => Some(false),
            Condition::RateAbove {
                rate_above: x, per, ..
            } => rate(samples, time, num?, self.span, per).map(|r| r > x),
            Condition::RateBelow {
                rate_below: x, per, ..
            } => rate(samples, time, num?, self.span, per).map(|r| r < x),
        }
    }

    /// The summary for an alert of this rule.
    pub(crate) fn render(
        &self,
        device: &str,
        metric: &str,
        value: Option<ValueRef<'_>>,
        unit: Option<&str>,
    ) -> String {
        let mut out = String::new();
        for piece in &self.summary {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Device => out.push_str(device),
                Piece::Metric => out.push_str(metric),
                Piece::Value => {
                    let _ = value.map(|v| write!(out, "{v}"));
                }
                Piece::Unit => out.push_str(unit.unwrap_or_default()),
                Piece::Rule => out.push_str(&self.def.name),
                Piece::Threshold => out.push_str(&self.threshold),
            }
        }
        out
    }
}

/// Adds a sample and returns the rate per `per` between the oldest and the
/// newest sample within `window`: `None` for a sample not newer than the
/// last; NaN with fewer than two samples, so both `>` and `<` are false.
fn rate(samples: &mut Samples, time: i64, v: f64, window: i64, per: Per) -> Option<f64> {
    if samples.back().is_some_and(|&(t, _)| t >= time) {
        return None;
    }
    if samples.len() >= MAX_SAMPLES {
        let mut i = 0;
        samples.retain(|_| {
            i += 1;
            i % 2 == 1
        });
    }
    samples.push_back((time, v));
    let start = time.saturating_sub(window);
    while samples.front().is_some_and(|&(t, _)| t < start) {
        samples.pop_front();
    }
    let per_ms = match per {
        Per::Second => 1e3,
        Per::Minute => 6e4,
        Per::Hour => 3.6e6,
    };
    Some(match samples.front() {
        Some(&(t0, v0)) if t0 < time => (v - v0) / (time - t0) as f64 * per_ms,
        _ => f64::NAN,
    })
}

/// Whether `a == b`, or `None` if they are of different types (or NaN).
fn same_type(a: ValueRef<'_>, b: ValueRef<'_>) -> Option<bool> {
    match (a, b) {
        (ValueRef::Number(a), ValueRef::Number(b)) if !b.is_nan() => Some(a == b),
        (ValueRef::Bool(a), ValueRef::Bool(b)) => Some(a == b),
        (ValueRef::Str(a), ValueRef::Str(b)) => Some(a == b),
        _ => None,
    }
}

/// A piece of a summary template.
#[derive(Clone, Debug, PartialEq)]
enum Piece {
    Text(String),
    Device,
    Metric,
    Value,
    Unit,
    Rule,
    Threshold,
}

fn parse_template(text: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut lit = String::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("{{").or_else(|| rest.strip_prefix("}}")) {
            lit.push(c);
            rest = after;
            continue;
        }
        if c != '{' {
            if c == '}' {
                return Err("unmatched } (write }} for a brace)".into());
            }
            lit.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        }
        let end = rest.find('}').ok_or("unclosed { (write {{ for a brace)")?;
        let piece = match &rest[1..end] {
            "device" => Piece::Device,
            "metric" => Piece::Metric,
            "value" => Piece::Value,
            "unit" => Piece::Unit,
            "rule" => Piece::Rule,
            "threshold" => Piece::Threshold,
            other => return Err(format!("unknown placeholder {{{other}}} (allowed: {{device}}, {{metric}}, {{value}}, {{unit}}, {{rule}}, {{threshold}})")),
        };
        if !lit.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut lit)));
        }
        pieces.push(piece);
        rest = &rest[end + 1..];
    }
    if !lit.is_empty() {
        pieces.push(Piece::Text(lit));
    }
    Ok(pieces)
}

fn valid_name(name: &str) -> bool {
    let ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-');
    (1..=64).contains(&name.len()) && name.bytes().all(ok)
}

/// The first field a normalized filter tests that a scope cannot (a scope
/// is matched once per series, without a value).
fn per_reading_field(normalized: &str) -> Option<&'static str> {
    let (mut in_str, mut escaped, mut start) = (false, false, None);
    for (i, c) in normalized.char_indices().chain([(normalized.len(), ' ')]) {
        if in_str {
            (in_str, escaped) = (escaped || c != '"', !escaped && c == '\\');
        } else if c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/') {
            start.get_or_insert(i);
        } else {
            let word = start.take().map(|s| &normalized[s..i]);
            let bad = ["value", "severity", "state", "rule"];
            if let Some(f) = bad.into_iter().find(|f| word == Some(*f)) {
                return Some(f);
            }
            in_str = c == '"';
        }
    }
    None
}

/// A bad field and what is wrong with it.
type Bad = (String, String);

fn bad(field: &str, message: impl Into<String>) -> Bad {
    (field.into(), message.into())
}

fn finite(field: &str, x: f64) -> Result<f64, Bad> {
    x.is_finite()
        .then_some(x)
        .ok_or_else(|| bad(field, "must be a finite number"))
}

fn band(field: &str, [lo, hi]: [f64; 2]) -> Result<[f64; 2], Bad> {
    if finite(field, lo)? > finite(field, hi)? {
        return Err(bad(field, format!("low ({lo}) must be <= high ({hi})")));
    }
    Ok([lo, hi])
}

fn duration(field: &str, text: Option<&str>, positive: bool) -> Result<i64, Bad> {
    match text.map(parse_duration) {
        None => Ok(0),
        Some(Ok(0)) if positive => Err(bad(field, "must be more than 0")),
        Some(r) => r.map_err(|m| bad(field, m)),
    }
}

impl Condition {
    /// Checks the thresholds; returns the `no_data` or `window` duration
    /// and the threshold's text.
    fn check(&self) -> Result<(i64, String), Bad> {
        Ok(match self {
            Condition::Above { above, clear_below } => {
                let x = finite("condition.above", *above)?;
                let clear = clear_below.map(|c| finite("condition.clear_below", c));
                if clear.transpose()?.is_some_and(|c| c > x) {
                    return Err(bad(
                        "condition.clear_below",
                        format!("must be <= above ({x})"),
                    ));
                }
                (0, x.to_string())
            }
            Condition::Below { below, clear_above } => {
                let x = finite("condition.below", *below)?;
                let clear = clear_above.map(|c| finite("condition.clear_above", c));
                if clear.transpose()?.is_some_and(|c| c < x) {
                    return Err(bad(
                        "condition.clear_above",
                        format!("must be >= below ({x})"),
                    ));
                }
                (0, x.to_string())
            }
            Condition::Outside {
                outside,
                clear_inside,
            } => {
                let [lo, hi] = band("condition.outside", *outside)?;
                if let Some(clear) = clear_inside {
                    let [cl, ch] = band("condition.clear_inside", *clear)?;
                    if cl < lo || ch > hi {
                        let msg = format!("must lie within outside [{lo}, {hi}]");
                        return Err(bad("condition.clear_inside", msg));
                    }
                }
                (0, format!("[{lo}, {hi}]"))
            }
            Condition::Inside { inside } => {
                let [lo, hi] = band("condition.inside", *inside)?;
                (0, format!("[{lo}, {hi}]"))
            }
            Condition::Equals { equals: v } | Condition::NotEquals { not_equals: v } => {
                if let Value::Number(n) = v {
                    let eq = matches!(self, Condition::Equals { .. });
                    finite(
                        if eq {
                            "condition.equals"
                        } else {
                            "condition.not_equals"
                        },
                        *n,
                    )?;
                }
                (0, v.to_string())
            }
            Condition::NoData { no_data } => (
                duration("condition.no_data", Some(no_data), true)?,
                no_data.clone(),
            ),
            Condition::RateAbove {
                rate_above: x,
                per,
                window,
            }
            | Condition::RateBelow {
                rate_below: x,
                per,
                window,
            } => {
                let above = matches!(self, Condition::RateAbove { .. });
                finite(
                    if above {
                        "condition.rate_above"
                    } else {
                        "condition.rate_below"
                    },
                    *x,
                )?;
                let span = duration("condition.window", Some(window), true)?;
                let per = per_name(*per);
                (span, format!("{x}/{per} over {window}"))
            }
        })
    }
}

fn per_name(per: Per) -> &'static str {
    match per {
        Per::Second => "second",
        Per::Minute => "minute",
        Per::Hour => "hour",
    }
}

impl Rule {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), RuleError> {
        self.compile().map(drop)
    }

    pub(crate) fn compile(&self) -> Result<Compiled, RuleError> {
        self.check().map_err(|(field, message)| RuleError::Invalid {
            rule: (!self.name.is_empty()).then(|| self.name.clone()),
            field,
            message,
        })
    }

    fn check(&self) -> Result<Compiled, Bad> {
        if !valid_name(&self.name) {
            return Err(bad(
                "name",
                format!("bad name {:?} (1 to 64 of A-Z a-z 0-9 _ . -)", self.name),
            ));
        }
        let (device, metric) = (self.device.clone(), self.metric.clone());
        let shorthands = Shorthands {
            device,
            metric,
            ..Shorthands::default()
        };
        let scope = Filter::parse(self.filter.as_deref(), &shorthands).map_err(|e| {
            let at = e.position();
            let msg = e
                .kind()
                .map_or_else(|| e.to_string(), |k| format!("{k} at {at}"));
            bad(e.param().as_str(), msg)
        })?;
        if let Some(f) = per_reading_field(&scope.to_string()) {
            return Err(bad(
                "filter",
                format!("a scope cannot test {f}: it is matched once per series"),
            ));
        }
        let (span, threshold) = self.condition.check()?;
        let hold = duration("for", self.for_duration.as_deref(), false)?;
        let keep = duration("keep_firing_for", self.keep_firing_for.as_deref(), false)?;
        duration("repeat_every", self.repeat_every.as_deref(), true)?;
        let severity = SEVERITIES
            .into_iter()
            .find(|s| *s == self.severity)
            .ok_or_else(|| {
                let msg = format!(
                    "unknown severity {:?} (one of {})",
                    self.severity,
                    SEVERITIES.join(", ")
                );
                bad("severity", msg)
            })?;
        if self.labels.keys().any(String::is_empty) {
            return Err(bad("labels", "a label key is empty"));
        }
        if let Some((i, sink)) = self.notify.iter().enumerate().find(|(_, n)| !valid_name(n)) {
            let msg = format!("bad sink name {sink:?} (1 to 64 of A-Z a-z 0-9 _ . -)");
            return Err(bad(&format!("notify[{i}]"), msg));
        }
        let summary = match (&self.summary, &self.condition) {
            (Some(text), _) => text.as_str(),
            (None, Condition::NoData { .. }) => "{rule}: no {metric} from {device} for {threshold}",
            (None, _) => "{rule}: {metric} of {device} is {value}{unit} (threshold {threshold})",
        };
        let summary = parse_template(summary).map_err(|m| bad("summary", m))?;
        let def = self.clone();
        Ok(Compiled {
            def,
            scope,
            span,
            hold,
            keep,
            severity,
            threshold,
            summary,
        })
    }
}

/// A validated list of rules with unique names, ready for an
/// [`Engine`](crate::Engine).
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    /// The compiled rules, in the order given; an alert refers to its rule
    /// by index here.
    pub(crate) rules: Vec<Compiled>,
}

impl RuleSet {
    /// Validates every rule (see [`Rule::validate`]) and that names are unique
    /// (field `name`); the error is the first found.
    pub fn compile(rules: Vec<Rule>) -> Result<Self, RuleError> {
        let mut names = FxHashSet::default();
        let mut compiled = Vec::with_capacity(rules.len());
        for rule in rules {
            compiled.push(rule.compile()?);
            if !names.insert(rule.name.clone()) {
                let (field, message) = ("name".into(), "duplicate rule name".into());
                return Err(RuleError::Invalid {
                    rule: Some(rule.name),
                    field,
                    message,
                });
            }
        }
        Ok(RuleSet { rules: compiled })
    }

    /// The rules, in the order given.
    pub fn rules(&self) -> impl ExactSizeIterator<Item = &Rule> {
        self.rules.iter().map(|c| &c.def)
    }

    /// The rule named `name`.
    pub fn get(&self, name: &str) -> Option<&Rule> {
        self.rules().find(|r| r.name == name)
    }

    /// How many rules there are.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        use Piece::*;
        let ok = [
            ("plain", vec![Text("plain".into())]),
            ("{device}{metric}", vec![Device, Metric]),
            ("a {{b}} {value}", vec![Text("a {b} ".into()), Value]),
            ("é{unit}é", vec![Text("é".into()), Unit, Text("é".into())]),
        ];
        for (text, want) in ok {
            assert_eq!(parse_template(text), Ok(want), "{text}");
        }
        for text in ["{nope}", "{", "}", "{device", "a}b"] {
            assert!(parse_template(text).is_err(), "{text}");
        }
    }

    #[test]
    fn per_reading_fields_are_found_outside_strings() {
        for (text, want) in [
            (r#"device == "value""#, None),
            (r#"labels.value == "x" and labels.rule ~ "*""#, None),
            (r#"unit == "a\"value" or value > 1.0"#, Some("value")),
            (r#"unit == "a\\" or state == "firing""#, Some("state")),
            ("rule == \"r\"", Some("rule")),
        ] {
            assert_eq!(per_reading_field(text), want, "{text}");
        }
    }
}
