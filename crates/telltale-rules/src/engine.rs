//! The evaluator: per-series scope caches, per-alert state machines, timers,
//! snapshots.

use crate::reading::ScopeView;
use crate::rule::{Compiled, Samples};
use crate::{Labels, Reading, Rule, RuleError, RuleSet, Value, ValueRef};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;

/// Where an alert is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// No alert: the condition is false (or never evaluated).
    Inactive,
    /// The condition holds but not yet for the rule's `for`.
    Pending,
    /// The alert fires (also while `keep_firing_for` runs).
    Firing,
    /// The alert ended; only ever the `to` of a [`Transition`].
    Resolved,
}

/// What identifies an alert: one per rule and series.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AlertKey {
    /// The rule's name.
    pub rule: String,
    /// The series' device.
    pub device: String,
    /// The series' metric.
    pub metric: String,
}

/// A change of an alert's state, for the hub to store and notify.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    /// Which alert changed.
    pub key: AlertKey,
    /// Its state before: `Inactive`, `Pending` or `Firing`.
    pub from: AlertState,
    /// Its state now: `Pending`, `Firing` or `Resolved`.
    pub to: AlertState,
    /// Hub time of the change, ms since the epoch.
    pub at: i64,
    /// The reading's value that caused it, or the last one seen for a
    /// timer; `None` for no-data alerts fired by a tick.
    pub value: Option<Value>,
    /// The rule's summary, rendered for this alert.
    pub summary: String,
    /// The rule's severity, one of [`telltale_filter::SEVERITIES`].
    pub severity: &'static str,
    /// The rule's labels, for routing.
    pub labels: BTreeMap<String, String>,
    /// The rule's threshold as text (`-15`, `[10, 30]`, `5m`, `2/minute over 5m`).
    pub threshold: String,
    /// For `to == Resolved`: whether the alert had fired. `false` closes a
    /// pending alert nobody was told about.
    pub was_firing: bool,
}

/// An open (pending or firing) alert, borrowed from the engine.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OpenAlert<'a> {
    /// The rule's name.
    pub rule: &'a str,
    /// The series' device.
    pub device: &'a str,
    /// The series' metric.
    pub metric: &'a str,
    /// `Pending` or `Firing`.
    pub state: AlertState,
    /// When it became pending, or when it began firing.
    pub since: i64,
    /// While `keep_firing_for` runs after the condition cleared: when the
    /// alert resolves unless the condition comes back.
    pub keep_firing_until: Option<i64>,
    /// The latest value that kept it open; `None` for no-data alerts.
    pub value: Option<&'a Value>,
}

/// Everything an [`Engine`] must not forget across a restart (rate samples
/// excepted: they refill within one window).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineState {
    /// The rules this state was computed under, so
    /// [`Engine::restore`] can tell kept rules from changed ones.
    pub rules: Vec<Rule>,
    /// Every device's labels, to scope series again without a reading.
    pub devices: BTreeMap<String, BTreeMap<String, String>>,
    /// Every series seen, for no-data timers.
    pub series: Vec<SeriesState>,
    /// Every open alert.
    pub alerts: Vec<AlertSnapshot>,
}

/// A series in an [`EngineState`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeriesState {
    /// The device id.
    pub device: String,
    /// The metric.
    pub metric: String,
    /// The unit of its last reading, which scopes may test.
    pub unit: Option<String>,
    /// Hub time of its last reading: where no-data timers count from.
    pub last_seen: i64,
}

/// An open alert in an [`EngineState`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertSnapshot {
    /// Which alert.
    pub key: AlertKey,
    /// `Pending` or `Firing`.
    pub state: AlertState,
    /// When it became pending (the `for` timer continues from here) or
    /// began firing.
    pub since: i64,
    /// Set while `keep_firing_for` runs.
    pub keep_firing_until: Option<i64>,
    /// The latest value that kept it open.
    pub value: Option<Value>,
}

/// The state machine of one alert.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    Inactive,
    Pending {
        since: i64,
    },
    Firing {
        since: i64,
    },
    /// Firing, condition false, until `until` (`keep_firing_for`).
    Keeping {
        since: i64,
        until: i64,
    },
}

impl Phase {
    /// Whether the condition held at the last evaluation (for hysteresis).
    fn active(self) -> bool {
        matches!(self, Phase::Pending { .. } | Phase::Firing { .. })
    }

    fn public(self) -> AlertState {
        match self {
            Phase::Inactive => AlertState::Inactive,
            Phase::Pending { .. } => AlertState::Pending,
            Phase::Firing { .. } | Phase::Keeping { .. } => AlertState::Firing,
        }
    }
}

/// One rule applied to one series.
#[derive(Debug)]
struct Slot {
    /// Index of the rule in the engine's [`RuleSet`].
    rule: u32,
    phase: Phase,
    /// The latest value while the alert is open.
    value: Option<Value>,
    /// The earliest due time of this slot's entries in the timer heap, or
    /// `i64::MAX`; saves pushing an entry per reading.
    scheduled: i64,
    /// Rate-of-change samples (empty for other conditions).
    samples: Samples,
}

/// What a series is, apart from its slots.
#[derive(Debug)]
struct Meta {
    device: Arc<str>,
    /// Index in `Engine::devices`.
    device_ix: u32,
    metric: Box<str>,
    /// The unit of the last reading; a change rescopes the series.
    unit: Option<Box<str>>,
    /// Hub time of the last reading (or the seeded time).
    last_seen: i64,
    /// Scope must be computed again at the next reading.
    stale: bool,
}

/// One (device, metric).
#[derive(Debug)]
struct Series {
    meta: Meta,
    /// The rules whose scope matches this series; empty for most series.
    slots: Vec<Slot>,
}

#[derive(Debug)]
struct Device {
    name: Arc<str>,
    labels: Vec<(Box<str>, Box<str>)>,
    /// Set by `invalidate_scope`: copy labels again from the next reading.
    labels_stale: bool,
    series: Vec<u32>,
}

type Timers = BinaryHeap<Reverse<(i64, u32, u32)>>;

/// The alert rules engine. See the crate docs.
#[derive(Debug, Default)]
pub struct Engine {
    rules: RuleSet,
    /// Series key (see [`series_key`]) → index in `series`.
    index: FxHashMap<Box<[u8]>, u32>,
    series: Vec<Series>,
    device_index: FxHashMap<Arc<str>, u32>,
    devices: Vec<Device>,
    /// (due, series, rule), earliest first. An entry may be stale; each is
    /// checked against its slot when it comes due.
    timers: Timers,
    /// Reused buffer for series keys, so a lookup allocates nothing.
    key_buf: Vec<u8>,
}

/// Writes the map key of (device, metric): the device's length, the
/// device, the metric; unambiguous for any strings.
fn series_key(buf: &mut Vec<u8>, device: &str, metric: &str) {
    buf.clear();
    buf.extend_from_slice(&(device.len() as u64).to_le_bytes());
    buf.extend_from_slice(device.as_bytes());
    buf.extend_from_slice(metric.as_bytes());
}

fn ix(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

/// One alert's rule and series, to move it and report on it.
struct Ctx<'a> {
    rule: &'a Compiled,
    s: &'a Meta,
    now: i64,
}

impl Ctx<'_> {
    fn emit(
        &self,
        from: Phase,
        to: AlertState,
        value: Option<ValueRef<'_>>,
        out: &mut Vec<Transition>,
    ) {
        let (rule, s) = (self.rule, self.s);
        let (device, metric) = (&*s.device, &*s.metric);
        out.push(Transition {
            key: AlertKey {
                rule: rule.def.name.clone(),
                device: device.into(),
                metric: metric.into(),
            },
            from: from.public(),
            to,
            at: self.now,
            value: value.map(ValueRef::to_value),
            summary: rule.render(device, metric, value, s.unit.as_deref()),
            severity: rule.severity,
            labels: rule.def.labels.clone(),
            threshold: rule.threshold.clone(),
            was_firing: to == AlertState::Resolved && from.public() == AlertState::Firing,
        });
    }

    /// Moves the state machine on `c`, the condition now (`None`: no new
    /// evidence, only timers). Returns whether the phase changed.
    fn step(
        &self,
        phase: &mut Phase,
        c: Option<bool>,
        v: Option<ValueRef<'_>>,
        out: &mut Vec<Transition>,
    ) -> bool {
        let (now, hold, keep) = (self.now, self.rule.hold, self.rule.keep);
        let next = match (*phase, c) {
            (Phase::Inactive, Some(true)) if hold <= 0 => Phase::Firing { since: now },
            (Phase::Inactive, Some(true)) => Phase::Pending { since: now },
            (Phase::Pending { .. }, Some(false)) => Phase::Inactive,
            (Phase::Pending { since }, _) if now.saturating_sub(since) >= hold => {
                Phase::Firing { since: now }
            }
            (Phase::Firing { .. }, Some(false)) if keep <= 0 => Phase::Inactive,
            (Phase::Firing { since }, Some(false)) => Phase::Keeping {
                since,
                until: now.saturating_add(keep),
            },
            (Phase::Keeping { since, .. }, Some(true)) => Phase::Firing { since },
            (Phase::Keeping { until, .. }, _) if now >= until => Phase::Inactive,
            (p, _) => p,
        };
        if next == *phase {
            return false;
        }
        match next {
            Phase::Inactive => self.emit(*phase, AlertState::Resolved, v, out),
            p if p.public() != phase.public() => self.emit(*phase, p.public(), v, out),
            _ => {}
        }
        *phase = next;
        true
    }

    /// Resolves an open alert whose rule or scope went away.
    fn close(&self, slot: &Slot, out: &mut Vec<Transition>) {
        if slot.phase != Phase::Inactive {
            let v = slot.value.as_ref().map(Value::as_ref);
            self.emit(slot.phase, AlertState::Resolved, v, out);
        }
    }

    /// Makes sure the heap holds an entry for the slot's next deadline.
    fn schedule(&self, timers: &mut Timers, series: usize, slot: &mut Slot) {
        let silence = self
            .rule
            .no_data()
            .map(|d| self.s.last_seen.saturating_add(d));
        let due = match slot.phase {
            Phase::Pending { since } => Some(since.saturating_add(self.rule.hold)),
            Phase::Keeping { until, .. } => Some(silence.map_or(until, |s| s.min(until))),
            Phase::Inactive => silence,
            Phase::Firing { .. } => None,
        };
        if let Some(due) = due.filter(|&d| d < slot.scheduled) {
            slot.scheduled = due;
            timers.push(Reverse((due, ix(series), slot.rule)));
        }
    }
}

fn copy_labels(labels: &dyn Labels) -> Vec<(Box<str>, Box<str>)> {
    let mut out = Vec::new();
    labels.for_each(&mut |k, v| out.push((k.into(), v.into())));
    out.sort();
    out
}

impl Engine {
    /// An engine with no series yet.
    pub fn new(rules: RuleSet) -> Self {
        Engine {
            rules,
            ..Engine::default()
        }
    }

    /// The rules in force.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Feeds one reading at hub time `now`; appends the transitions it
    /// causes to `out`. A series no rule applies to costs one hash lookup.
    pub fn observe(&mut self, r: &Reading<'_>, now: i64, out: &mut Vec<Transition>) {
        series_key(&mut self.key_buf, r.device, r.metric);
        let si = match self.index.get(self.key_buf.as_slice()) {
            Some(&i) => i as usize,
            None => self.add_series(r.device, r.metric, r.unit, r.labels, now, out),
        };
        let s = &mut self.series[si].meta;
        s.last_seen = now;
        if s.stale || s.unit.as_deref() != r.unit {
            self.refresh(si, r, now, out);
        }
        let Series { meta, slots } = &mut self.series[si];
        for slot in slots {
            let rule = &self.rules.rules[slot.rule as usize];
            let c = rule.eval(r.value, r.time, slot.phase.active(), &mut slot.samples);
            let ctx = Ctx { rule, s: meta, now };
            // A reading that says nothing (NaN, wrong type) reports the last value.
            let v = match c {
                Some(_) => Some(r.value),
                None => slot.value.as_ref().map(Value::as_ref),
            };
            if ctx.step(&mut slot.phase, c, v, out) {
                ctx.schedule(&mut self.timers, si, slot);
                if slot.phase == Phase::Inactive {
                    slot.value = None;
                }
            }
            if slot.phase != Phase::Inactive && c.is_some() && rule.no_data().is_none() {
                match &mut slot.value {
                    Some(v) => v.set(r.value),
                    None => slot.value = Some(r.value.to_value()),
                }
            }
        }
    }

    /// Runs the timers due at `now`: `for` delays ending, `keep_firing_for`
    /// ending, silent series reaching `no_data`.
    pub fn tick(&mut self, now: i64, out: &mut Vec<Transition>) {
        while let Some(&Reverse((due, si, ri))) = self.timers.peek() {
            if due > now {
                break;
            }
            self.timers.pop();
            let Some(Series { meta, slots }) = self.series.get_mut(si as usize) else {
                continue;
            };
            let rule = self.rules.rules.get(ri as usize);
            let (Some(slot), Some(rule)) = (slots.iter_mut().find(|s| s.rule == ri), rule) else {
                continue;
            };
            if slot.scheduled == due {
                slot.scheduled = i64::MAX;
            }
            let silent = rule
                .no_data()
                .is_some_and(|d| now.saturating_sub(meta.last_seen) >= d);
            let ctx = Ctx { rule, s: meta, now };
            let value = slot.value.take();
            ctx.step(
                &mut slot.phase,
                silent.then_some(true),
                value.as_ref().map(Value::as_ref),
                out,
            );
            if slot.phase != Phase::Inactive {
                slot.value = value;
            }
            ctx.schedule(&mut self.timers, si as usize, slot);
        }
    }

    /// When [`Engine::tick`] should run next: never late, sometimes early
    /// (a timer whose reason went away is dropped by that tick).
    pub fn next_deadline(&self) -> Option<i64> {
        self.timers.peek().map(|Reverse((due, _, _))| *due)
    }

    /// Tells the engine a series exists, last seen at `last_seen` (hub
    /// time), so a device silent since before a restart still trips
    /// `no_data`. A known series keeps the later of the two times.
    pub fn seed_series(&mut self, device: &str, metric: &str, labels: &dyn Labels, last_seen: i64) {
        let si = self.add_series(device, metric, None, labels, last_seen, &mut Vec::new());
        let s = &mut self.series[si].meta;
        s.last_seen = s.last_seen.max(last_seen);
    }

    /// Marks `device`'s labels as changed: they are copied again from its
    /// next reading, and the scope of each of its series is computed again
    /// (alerts of rules that no longer apply resolve then).
    pub fn invalidate_scope(&mut self, device: &str) {
        if let Some(&d) = self.device_index.get(device) {
            let d = &mut self.devices[d as usize];
            d.labels_stale = true;
            for &s in &d.series {
                self.series[s as usize].meta.stale = true;
            }
        }
    }

    /// Puts new rules in force. Alerts of a rule kept unchanged (same name,
    /// same definition) keep their state; those of removed or changed rules
    /// resolve now (`was_firing` says whether they had fired). Every series
    /// is scoped again against the new rules.
    pub fn replace_rules(&mut self, rules: RuleSet, now: i64, out: &mut Vec<Transition>) {
        let old = std::mem::replace(&mut self.rules, rules);
        let new = &self.rules.rules;
        let map: Vec<_> = old
            .rules
            .iter()
            .map(|o| new.iter().position(|n| n.def == o.def))
            .collect();
        for si in 0..self.series.len() {
            let Series { meta, slots } = &mut self.series[si];
            for mut slot in std::mem::take(slots) {
                match map.get(slot.rule as usize).copied().flatten() {
                    Some(n) => {
                        slot.rule = ix(n);
                        slots.push(slot);
                    }
                    None => {
                        if let Some(rule) = old.rules.get(slot.rule as usize) {
                            Ctx { rule, s: meta, now }.close(&slot, out);
                        }
                    }
                }
            }
            self.rescope(si, now, out);
        }
        self.timers.clear();
        for (si, Series { meta, slots }) in self.series.iter_mut().enumerate() {
            for slot in slots {
                let rule = &self.rules.rules[slot.rule as usize];
                slot.scheduled = i64::MAX;
                Ctx { rule, s: meta, now }.schedule(&mut self.timers, si, slot);
            }
        }
    }

    /// A snapshot to persist; see [`Engine::restore`].
    pub fn snapshot(&self) -> EngineState {
        let owned = |labels: &[(Box<str>, Box<str>)]| {
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let series = self
            .series
            .iter()
            .map(|Series { meta: s, .. }| SeriesState {
                device: s.device.to_string(),
                metric: s.metric.to_string(),
                unit: s.unit.as_deref().map(Into::into),
                last_seen: s.last_seen,
            });
        let alerts = self.open_alerts().map(|a| AlertSnapshot {
            key: AlertKey {
                rule: a.rule.into(),
                device: a.device.into(),
                metric: a.metric.into(),
            },
            state: a.state,
            since: a.since,
            keep_firing_until: a.keep_firing_until,
            value: a.value.cloned(),
        });
        EngineState {
            rules: self.rules.rules().cloned().collect(),
            devices: self
                .devices
                .iter()
                .map(|d| (d.name.to_string(), owned(&d.labels)))
                .collect(),
            series: series.collect(),
            alerts: alerts.collect(),
        }
    }

    /// An engine that carries on from `state` under `rules`: open alerts
    /// stay open without a new transition, `for` and `keep_firing_for`
    /// timers continue from their original times, no-data timers from each
    /// series' last reading. Alerts of rules that changed or went away since
    /// the snapshot resolve now, as in [`Engine::replace_rules`]. Fails only
    /// if the snapshot's own rules no longer compile.
    pub fn restore(
        rules: RuleSet,
        state: EngineState,
        now: i64,
        out: &mut Vec<Transition>,
    ) -> Result<Self, RuleError> {
        let old = RuleSet::compile(state.rules).map_err(|e| RuleError::Snapshot(Box::new(e)))?;
        let mut engine = Engine::new(old);
        for (device, labels) in &state.devices {
            engine.device(device, labels);
        }
        let (none, nobody) = (&mut Vec::new(), &crate::NoLabels);
        for s in &state.series {
            let (unit, seen) = (s.unit.as_deref(), s.last_seen);
            let si = engine.add_series(&s.device, &s.metric, unit, nobody, seen, none);
            engine.series[si].meta.last_seen = seen;
        }
        for a in state.alerts {
            let phase = match (a.state, a.keep_firing_until) {
                (AlertState::Pending, _) => Phase::Pending { since: a.since },
                (AlertState::Firing, None) => Phase::Firing { since: a.since },
                (AlertState::Firing, Some(until)) => Phase::Keeping {
                    since: a.since,
                    until,
                },
                _ => continue,
            };
            let (device, metric) = (&a.key.device, &a.key.metric);
            let si = engine.add_series(device, metric, None, nobody, now, none);
            let rule = engine
                .rules
                .rules
                .iter()
                .position(|r| r.def.name == a.key.rule);
            let slots = &mut engine.series[si].slots;
            if let Some(slot) = slots.iter_mut().find(|s| Some(s.rule as usize) == rule) {
                (slot.phase, slot.value) = (phase, a.value);
            }
        }
        engine.replace_rules(rules, now, out);
        Ok(engine)
    }

    /// Every open alert, with its latest value: how the hub updates the
    /// value shown on a firing alert (the engine emits no transition while an
    /// alert stays open). O(series).
    pub fn open_alerts(&self) -> impl Iterator<Item = OpenAlert<'_>> {
        self.series.iter().flat_map(move |Series { meta, slots }| {
            slots.iter().filter_map(move |slot| {
                let (since, until) = match slot.phase {
                    Phase::Pending { since } | Phase::Firing { since } => (since, None),
                    Phase::Keeping { since, until } => (since, Some(until)),
                    Phase::Inactive => return None,
                };
                Some(OpenAlert {
                    rule: &self.rules.rules[slot.rule as usize].def.name,
                    device: &meta.device,
                    metric: &meta.metric,
                    state: slot.phase.public(),
                    since,
                    keep_firing_until: until,
                    value: slot.value.as_ref(),
                })
            })
        })
    }

    /// The index of device `name`, added with `labels` if new.
    fn device(&mut self, name: &str, labels: &dyn Labels) -> u32 {
        if let Some(&d) = self.device_index.get(name) {
            return d;
        }
        let (d, name) = (ix(self.devices.len()), Arc::<str>::from(name));
        let labels = copy_labels(labels);
        let series = Vec::new();
        self.devices.push(Device {
            name: name.clone(),
            labels,
            labels_stale: false,
            series,
        });
        self.device_index.insert(name, d);
        d
    }

    /// The index of series (device, metric), added and scoped if new.
    fn add_series(
        &mut self,
        device: &str,
        metric: &str,
        unit: Option<&str>,
        labels: &dyn Labels,
        last_seen: i64,
        out: &mut Vec<Transition>,
    ) -> usize {
        series_key(&mut self.key_buf, device, metric);
        if let Some(&i) = self.index.get(self.key_buf.as_slice()) {
            return i as usize;
        }
        let d = self.device(device, labels);
        let si = self.series.len();
        let meta = Meta {
            device: self.devices[d as usize].name.clone(),
            device_ix: d,
            metric: metric.into(),
            unit: unit.map(Into::into),
            last_seen,
            stale: false,
        };
        self.series.push(Series {
            meta,
            slots: Vec::new(),
        });
        self.index.insert(self.key_buf.as_slice().into(), ix(si));
        self.devices[d as usize].series.push(ix(si));
        self.rescope(si, last_seen, out);
        si
    }

    /// Handles a stale scope or a new unit before `r` is evaluated.
    #[cold]
    fn refresh(&mut self, si: usize, r: &Reading<'_>, now: i64, out: &mut Vec<Transition>) {
        let s = &mut self.series[si].meta;
        if s.unit.as_deref() != r.unit {
            s.unit = r.unit.map(Into::into);
        }
        let d = &mut self.devices[s.device_ix as usize];
        if !d.labels_stale {
            return self.rescope(si, now, out);
        }
        d.labels = copy_labels(r.labels);
        d.labels_stale = false;
        for i in d.series.clone() {
            self.rescope(i as usize, now, out);
        }
    }

    /// Computes which rules apply to series `si`: keeps the state of rules
    /// that still apply, resolves alerts of rules that no longer do.
    fn rescope(&mut self, si: usize, now: i64, out: &mut Vec<Transition>) {
        let Series { meta, slots } = &mut self.series[si];
        let labels = &self.devices[meta.device_ix as usize].labels;
        let (device, metric, unit) = (&*meta.device, &*meta.metric, meta.unit.as_deref());
        let view = ScopeView {
            device,
            metric,
            unit,
            labels,
        };
        let mut old = std::mem::take(slots);
        for (ri, rule) in self.rules.rules.iter().enumerate() {
            if rule.scope.matches(&view) {
                let kept = old.iter().position(|slot| slot.rule as usize == ri);
                let slot = kept.map(|p| old.swap_remove(p));
                let mut slot = slot.unwrap_or_else(|| Slot {
                    rule: ix(ri),
                    phase: Phase::Inactive,
                    value: None,
                    scheduled: i64::MAX,
                    samples: Samples::new(),
                });
                Ctx { rule, s: meta, now }.schedule(&mut self.timers, si, &mut slot);
                slots.push(slot);
            }
        }
        for slot in old {
            let rule = &self.rules.rules[slot.rule as usize];
            Ctx { rule, s: meta, now }.close(&slot, out);
        }
        meta.stale = false;
    }

    /// The most rate samples any slot holds, and the timer heap's size.
    #[cfg(test)]
    pub(crate) fn sizes(&self) -> (usize, usize) {
        let samples = self
            .series
            .iter()
            .flat_map(|s| &s.slots)
            .map(|slot| slot.samples.len());
        (samples.max().unwrap_or(0), self.timers.len())
    }
}
