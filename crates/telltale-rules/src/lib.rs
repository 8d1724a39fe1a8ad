//! The alert rules engine: rule definitions ([`Rule`], loaded by the hub
//! from TOML `[[rule]]` tables and from JSON), their validation into a
//! [`RuleSet`], and the [`Engine`] that turns readings and the passing of
//! time into alert [`Transition`]s (pending, firing, resolved), with a
//! [`EngineState`] snapshot to survive restarts. This crate owns the meaning
//! of a rule and the lifecycle of an alert. It never does IO, never reads a
//! clock, never spawns a thread or a task, and never stores or sends an
//! alert: time comes in as `i64` milliseconds since the Unix epoch, and
//! transitions go out into the caller's `Vec`.
//!
//! # Rules
//!
//! ```toml
//! [[rule]]
//! name = "freezer-warm"             # unique, [A-Za-z0-9_.-]{1,64}
//! device = "freezer-*"              # optional: ids and globs, comma separated
//! metric = "temperature"            # optional: names and globs, comma separated
//! filter = 'labels.site == "north"' # optional: filter expression, ANDed
//! condition = { above = -15.0 }     # exactly one kind, see below
//! for = "10m"                       # optional: must hold this long first
//! keep_firing_for = "2m"            # optional: keep firing after it clears
//! severity = "major"                # critical, major, minor, warning, info
//! labels = { team = "cold-chain" }  # optional, copied into transitions
//! summary = "{device} at {value}{unit} (limit {threshold})"  # optional
//! notify = ["ops-pager"]            # optional sink names, carried
//! repeat_every = "1h"               # optional, carried
//! ```
//!
//! A condition is one inline table whose main key names its kind:
//!
//! | condition | true while |
//! |---|---|
//! | `{ above = X, clear_below = C }` | value > X; once true, until value < C (C <= X; optional) |
//! | `{ below = X, clear_above = C }` | value < X; once true, until value > C (C >= X; optional) |
//! | `{ outside = [L, H], clear_inside = [l, h] }` | value outside [L, H]; once true, until inside [l, h] (optional, within [L, H]) |
//! | `{ inside = [L, H] }` | L <= value <= H |
//! | `{ equals = V }`, `{ not_equals = V }` | value == V / != V; V a string, boolean or number |
//! | `{ no_data = "5m" }` | the series has had no reading for 5 minutes |
//! | `{ rate_above = X, per = "minute", window = "5m" }` | (newest − oldest) / elapsed device time > X per second / minute / hour, over the samples of the last window |
//! | `{ rate_below = X, per = ..., window = ... }` | the same rate < X (a negative X: falling faster than) |
//!
//! Durations are `500ms`, `30s`, `10m`, `1h30m`, `2d` or `0`; a rule keeps
//! them as written. Without `summary`, a rule's summary is `{rule}: no
//! {metric} from {device} for {threshold}` for `no_data` and `{rule}:
//! {metric} of {device} is {value}{unit} (threshold {threshold})` otherwise;
//! `{threshold}` reads `-15`, `[10, 30]`, `open`, `5m` or `2/minute over 5m`.
//!
//! A reading of another type than a condition expects (a string for
//! `above`, a number for `equals = "open"`), a NaN, or a rate sample not
//! newer than the previous one says nothing: the alert stays as it is. A
//! rate needs two samples within the window; with fewer it is false.
//!
//! **Scope** is decided once per series (device, metric), from the device
//! id, the metric, the unit and the device's labels, and cached, so a scope
//! filter cannot test `value` (that is the condition's job), `severity`,
//! `state` or `rule`; such a rule is refused. Labels are copied when a
//! device is first seen; call [`Engine::invalidate_scope`] when they change.
//!
//! [`Rule::validate`] and [`RuleSet::compile`] return a [`RuleError`] naming
//! the field (`condition.clear_below`, `for`, `notify[2]`, `filter`).
//! A condition table of the wrong shape (no kind, two kinds, `clear_above`
//! with `above`, an unknown key) is a deserialization error instead.
//!
//! # Alerts
//!
//! An alert is keyed by (rule, device, metric) and is open at most once.
//! Condition true: `Inactive → Pending` (if `for` > 0), `Pending → Firing`
//! once it has held for `for` (at a reading or a [`Engine::tick`]), or
//! `Inactive → Firing` at once. Condition false while pending: `Pending →
//! Resolved` with `was_firing: false`. Condition false while firing: after
//! `keep_firing_for` (during which the alert still fires, and the condition
//! coming back keeps it firing without a transition), `Firing → Resolved`
//! with `was_firing: true`. A firing alert emits nothing while it stays
//! firing; its latest value is in [`Engine::open_alerts`]. With a clear
//! threshold, an alert that is pending or firing is tested against it, so a
//! value swinging between the two thresholds neither resolves nor re-fires.
//!
//! `no_data` counts from each series' last reading in hub time (`now`), for
//! every series seen or passed to [`Engine::seed_series`]; a series that
//! never reports again fires through [`Engine::tick`]. Call `tick` at
//! [`Engine::next_deadline`] (or every second or so). Rates use device time
//! ([`Reading::time`]); each rate keeps at most 256 samples per series,
//! thinning the oldest when full.
//!
//! # Cost
//!
//! [`Engine::observe`] does one hash lookup of the series, with a reused
//! key buffer; a series no rule applies to costs nothing more. For the rules
//! that apply, the condition is evaluated with no allocation unless a
//! transition happens. Timers live in a heap and are rescheduled lazily, so
//! readings that postpone a `no_data` timer cost nothing. `benches/eval.rs`
//! measures it (`cargo bench -p telltale-rules`).

mod duration;
mod engine;
mod reading;
mod rule;

pub use duration::parse_duration;
pub use engine::{
    AlertKey, AlertSnapshot, AlertState, Engine, EngineState, OpenAlert, SeriesState, Transition,
};
pub use reading::{Labels, NoLabels, Reading, Value, ValueRef};
pub use rule::{Condition, Per, Rule, RuleSet};

/// A rule that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// A field of a rule is invalid.
    #[error("{}{field}: {message}", prefix(.rule))]
    Invalid {
        /// The rule's name as given, unless empty.
        rule: Option<String>,
        /// The field: a TOML key, dotted inside the condition
        /// (`condition.clear_below`), indexed in lists (`notify[1]`).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The rules stored in a snapshot do not compile any more.
    #[error("snapshot: {0}")]
    Snapshot(Box<RuleError>),
}

fn prefix(rule: &Option<String>) -> String {
    rule.as_ref()
        .map(|r| format!("rule {r:?}: "))
        .unwrap_or_default()
}

impl RuleError {
    /// The field at fault.
    pub fn field(&self) -> &str {
        match self {
            RuleError::Invalid { field, .. } => field,
            RuleError::Snapshot(e) => e.field(),
        }
    }
}

#[cfg(test)]
mod tests;
