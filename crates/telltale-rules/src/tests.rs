//! Engine tests: tables of rules, readings at injected times, and the
//! transitions they must cause.

use super::*;
use std::collections::BTreeMap;

/// A rule from TOML (`; ` for a newline), with `name = "r"` and
/// `severity = "major"` unless given.
fn rule(body: &str) -> Rule {
    let mut text = body.replace("; ", "\n");
    if !body.contains("name =") {
        text.push_str("\nname = \"r\"");
    }
    if !body.contains("severity =") {
        text.push_str("\nseverity = \"major\"");
    }
    toml::from_str(&text).unwrap_or_else(|e| panic!("{body}: {e}"))
}

fn engine(bodies: &[&str]) -> Engine {
    let rules = RuleSet::compile(bodies.iter().map(|b| rule(b)).collect());
    Engine::new(rules.unwrap_or_else(|e| panic!("{e}")))
}

/// A value as the step language writes it: a number, `true`/`false`, or
/// else a string.
fn value(text: &str) -> ValueRef<'_> {
    match text {
        "true" => ValueRef::Bool(true),
        "false" => ValueRef::Bool(false),
        t => t.parse().map_or(ValueRef::Str(t), ValueRef::Number),
    }
}

/// `"at:to"` per transition, `to` being `pending`, `firing`, `resolved`, or
/// `dropped` for a resolve with `was_firing: false`; prefixed with
/// `device/` when the device is not `d`.
fn show(out: &[Transition]) -> String {
    let each = out.iter().map(|t| {
        let to = match t.to {
            AlertState::Resolved if !t.was_firing => "dropped",
            AlertState::Resolved => "resolved",
            AlertState::Firing => "firing",
            AlertState::Pending => "pending",
            AlertState::Inactive => "inactive",
        };
        let dev = if t.key.device == "d" {
            String::new()
        } else {
            format!("{}/", t.key.device)
        };
        format!("{dev}{}:{to}", t.at)
    });
    each.collect::<Vec<_>>().join(" ")
}

/// Runs steps on series (d, m): `T=V` observes V at hub and device time T,
/// `T=tick` ticks at T. Returns the transitions, shown.
fn run(engine: &mut Engine, steps: &str) -> String {
    let mut out = Vec::new();
    for step in steps.split_whitespace() {
        let (t, v) = step
            .split_once('=')
            .unwrap_or_else(|| panic!("bad step {step}"));
        let t: i64 = t.parse().unwrap_or_else(|_| panic!("bad time {step}"));
        if v == "tick" {
            engine.tick(t, &mut out);
        } else {
            let r = Reading {
                unit: Some("Cel"),
                time: t,
                ..Reading::new("d", "m", value(v))
            };
            engine.observe(&r, t, &mut out);
        }
    }
    show(&out)
}

/// Rule body (`;` for a newline) | steps on series (d, m) | transitions.
const CONDITIONS: &str = r#"
condition = { above = 10.0 }  | 0=5 1=11 2=12 3=10 4=11 | 1:firing 3:resolved 4:firing
condition = { above = 10 }    | 0=10 1=10.5             | 1:firing
condition = { above = 10.0 }  | 0=11 1=NaN 2=open 3=true 4=11 | 0:firing
condition = { above = 10.0, clear_below = 8.0 } | 0=11 1=9 2=11 3=8 4=7.9 5=9 6=10.1 | 0:firing 4:resolved 6:firing
condition = { below = 0.0 }   | 0=1 1=-1 2=0 3=-0.5     | 1:firing 2:resolved 3:firing
condition = { below = 0.0, clear_above = 2.0 } | 0=-1 1=1 2=-3 3=2 4=2.1 | 0:firing 4:resolved
condition = { outside = [10.0, 20.0] } | 0=15 1=21 2=20 3=9 4=10 | 1:firing 2:resolved 3:firing 4:resolved
condition = { outside = [10, 20], clear_inside = [12, 18] } | 0=21 1=19 2=11 3=9 4=17 5=21 | 0:firing 4:resolved 5:firing
condition = { inside = [10.0, 20.0] } | 0=5 1=10 2=20 3=21 | 1:firing 3:resolved
condition = { equals = "open" }   | 0=closed 1=open 2=open 3=5 4=closed | 1:firing 4:resolved
condition = { not_equals = "ok" } | 0=ok 1=fault 2=stuck 3=1 4=ok | 1:firing 4:resolved
condition = { equals = false }    | 0=true 1=false 2=0 3=true | 1:firing 3:resolved
condition = { not_equals = true } | 0=true 1=false 2=true     | 1:firing 2:resolved
condition = { equals = 3 }        | 0=2 1=3 2=3.5            | 1:firing 2:resolved
# for: fires only after holding, at a reading or a tick; a dip resets it
condition = { above = 10.0 }; for = "10s" | 0=11 5000=12 9999=12 10000=12 | 0:pending 10000:firing
condition = { above = 10.0 }; for = "10s" | 0=11 9999=tick 10000=tick | 0:pending 10000:firing
condition = { above = 10.0 }; for = "10s" | 0=11 5000=9 6000=11 15000=11 16000=11 | 0:pending 5000:dropped 6000:pending 16000:firing
condition = { above = 10.0 }; for = "10s" | 0=11 5000=9 12000=tick | 0:pending 5000:dropped
# keep_firing_for: a comeback keeps it firing; it resolves when time runs out
condition = { above = 10.0 }; keep_firing_for = "5s" | 0=11 1000=9 3000=11 4000=9 8999=9 9000=9 | 0:firing 9000:resolved
condition = { above = 10.0 }; keep_firing_for = "5s" | 0=11 1000=9 5999=tick 6000=tick | 0:firing 6000:resolved
# no_data: fires via tick, resolves when data returns, fires again on silence
condition = { no_data = "5s" } | 0=1 4999=tick 5000=tick 6000=2 20000=tick | 5000:firing 6000:resolved 20000:firing
condition = { no_data = "5s" }; for = "2s" | 0=1 5000=tick 6000=tick 7000=tick | 5000:pending 7000:firing
condition = { no_data = "5s" }; for = "2s" | 0=1 5000=tick 6000=1 9000=tick | 5000:pending 6000:dropped
condition = { no_data = "5s" }; keep_firing_for = "3s" | 0=1 5000=tick 6000=1 8000=1 9000=tick | 5000:firing 9000:resolved
# rate of change, between the oldest and newest sample within the window
condition = { rate_above = 2.0, per = "minute", window = "5m" } | 0=20 60000=21 120000=22 180000=23 240000=35 300000=35 420000=35 480000=35 540000=35 | 240000:firing 540000:resolved
condition = { rate_below = -1.0, per = "second", window = "10s" } | 0=100 1000=99.5 2000=97 3000=96 13000=96 | 2000:firing 13000:resolved
condition = { rate_above = 1.0, per = "hour", window = "2h" } | 0=0 3600000=0.5 7200000=3 | 7200000:firing
# a lone sample after a gap longer than the window has no rate, either way
condition = { rate_above = 5.0, per = "second", window = "10s" } | 0=0 1000=10 60000=10 | 1000:firing 60000:resolved
condition = { rate_below = 5.0, per = "second", window = "10s" } | 0=0 1000=1 60000=10 | 1000:firing 60000:resolved
"#;

/// The non-comment lines of a `|` table, split and trimmed.
fn table(text: &str) -> impl Iterator<Item = Vec<&str>> {
    let lines = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'));
    lines.map(|l| l.split('|').map(str::trim).collect())
}

#[test]
fn conditions_table() {
    for row in table(CONDITIONS) {
        let [body, steps, want] = row[..] else {
            panic!("bad row {row:?}")
        };
        let mut e = engine(&[body]);
        assert_eq!(run(&mut e, steps), want, "{body} | {steps}");
    }
}

#[test]
fn rate_uses_device_time_and_ignores_old_samples() {
    let mut e = engine(&["condition = { rate_above = 1.0, per = \"second\", window = \"1m\" }"]);
    let mut out = Vec::new();
    // A late batch: device times a second apart, all arriving at hub time 50.
    for (time, v) in [
        (1000, 0.0),
        (2000, 0.5),
        (3000, 1.0),
        (2500, 9.0),
        (3000, 9.0),
    ] {
        let r = Reading {
            time,
            ..Reading::new("d", "m", ValueRef::Number(v))
        };
        e.observe(&r, 50, &mut out);
    }
    assert_eq!(show(&out), "");
}

#[test]
fn rate_buffer_stays_bounded() {
    let mut e = engine(&["condition = { rate_above = 1000.0, per = \"second\", window = \"1d\" }"]);
    let steps: Vec<String> = (0..2000).map(|i| format!("{}={}", i * 1000, i)).collect();
    assert_eq!(run(&mut e, &steps.join(" ")), "");
    let slot_samples = e.sizes().0;
    assert!(
        slot_samples <= rule::MAX_SAMPLES && slot_samples > 100,
        "{slot_samples}"
    );
}

#[test]
fn hysteresis_does_not_flap() {
    let mut e = engine(&["condition = { above = 10.0, clear_below = 8.0 }; for = \"1s\""]);
    let steps: Vec<String> = (0..200)
        .map(|i| format!("{}={}", i * 500, if i % 2 == 0 { 11.0 } else { 8.5 }))
        .collect();
    assert_eq!(run(&mut e, &steps.join(" ")), "0:pending 1000:firing");
    assert_eq!(run(&mut e, "100000=8 100500=7.99"), "100500:resolved");
}

#[test]
fn transitions_carry_the_rule() {
    let mut e = engine(&[r#"
        condition = { above = -15.0 }
        labels = { team = "cold" }
        severity = "critical"
        summary = "{rule} {device}/{metric} at {value}{unit} over {threshold} {{ok}}"
    "#]);
    let mut out = Vec::new();
    let r = Reading {
        unit: Some("Cel"),
        time: 7,
        ..Reading::new("d", "m", ValueRef::Number(-12.5))
    };
    e.observe(&r, 9, &mut out);
    let want = Transition {
        key: AlertKey {
            rule: "r".into(),
            device: "d".into(),
            metric: "m".into(),
        },
        from: AlertState::Inactive,
        to: AlertState::Firing,
        at: 9,
        value: Some(Value::Number(-12.5)),
        summary: "r d/m at -12.5Cel over -15 {ok}".into(),
        severity: "critical",
        labels: BTreeMap::from([("team".into(), "cold".into())]),
        threshold: "-15".into(),
        was_firing: false,
    };
    assert_eq!(out, [want]);
    // The latest value is on the open alert, without a transition.
    out.clear();
    e.observe(
        &Reading {
            value: ValueRef::Number(-11.0),
            ..r
        },
        10,
        &mut out,
    );
    assert!(out.is_empty());
    let open: Vec<_> = e
        .open_alerts()
        .map(|a| (a.rule, a.state, a.since, a.value.cloned()))
        .collect();
    assert_eq!(
        open,
        [("r", AlertState::Firing, 9, Some(Value::Number(-11.0)))]
    );
    // Default summaries.
    let mut e = engine(&[
        "condition = { no_data = \"1m\" }",
        "name = \"hot\"; condition = { above = 1.0 }",
    ]);
    e.seed_series("d", "m", &NoLabels, 0);
    e.tick(60_000, &mut out);
    e.observe(
        &Reading {
            value: ValueRef::Number(2.0),
            ..r
        },
        60_001,
        &mut out,
    );
    let summaries: Vec<_> = out.iter().map(|t| t.summary.as_str()).collect();
    assert_eq!(
        summaries,
        [
            "r: no m from d for 1m",
            "r: no m from d for 1m",
            "hot: m of d is 2Cel (threshold 1)"
        ]
    );
}

/// device metric unit site (`-` for none) | rules that fire.
const SCOPES: &str = "
freezer-1 temp Cel south | freezers
freezer-2 temp Cel north | freezers north
fridge-1 temp - - | freezers
fridge-2 temp Cel - |
freezer-3 power W north |
probe humidity Cel north | north
probe hum %RH north |
probe2 temp Cel south |
";

#[test]
fn scope_by_device_metric_unit_and_labels() {
    let mut e = engine(&[
        "name = \"freezers\"; device = \"freezer-*,fridge-1\"; metric = \"temp\"; condition = { above = 0.0 }",
        "name = \"north\"; metric = \"temp,hum*\"; filter = 'labels.site == \"north\" and unit == \"Cel\"'; condition = { above = 0.0 }",
    ]);
    for row in table(SCOPES) {
        let [series, want] = row[..] else {
            panic!("bad row {row:?}")
        };
        let [device, metric, unit, site] = series.split(' ').collect::<Vec<_>>()[..] else {
            panic!("bad row {row:?}")
        };
        let site = [("site", site)];
        let labels: &dyn Labels = if site[0].1 == "-" { &NoLabels } else { &site };
        let unit = Some(unit).filter(|u| *u != "-");
        let mut out = Vec::new();
        let r = Reading {
            unit,
            labels,
            ..Reading::new(device, metric, ValueRef::Number(1.0))
        };
        e.observe(&r, 0, &mut out);
        let fired: Vec<_> = out.iter().map(|t| t.key.rule.as_str()).collect();
        assert_eq!(fired.join(" "), want, "{series}");
    }
}

#[test]
fn invalidate_scope_copies_labels_again() {
    let mut e = engine(&["filter = 'labels.site == \"north\"'; condition = { above = 0.0 }"]);
    let mut out = Vec::new();
    let north = [("site", "north")];
    let south = [("site", "south")];
    let r = |labels| Reading {
        labels,
        ..Reading::new("d", "m", ValueRef::Number(1.0))
    };
    e.observe(&r(&north), 1, &mut out);
    // Labels are copied once: a change without invalidate_scope goes unseen.
    e.observe(&r(&south), 2, &mut out);
    e.invalidate_scope("d");
    e.invalidate_scope("unknown");
    e.observe(&r(&south), 3, &mut out);
    e.observe(&r(&south), 4, &mut out);
    e.invalidate_scope("d");
    e.observe(&r(&north), 5, &mut out);
    assert_eq!(show(&out), "1:firing 3:resolved 5:firing");
}

#[test]
fn no_data_fires_for_seeded_series_that_never_report() {
    let mut e = engine(&[
        "metric = \"temp\"; condition = { no_data = \"5m\" }",
        "name = \"other\"; metric = \"hum\"; condition = { no_data = \"1m\" }",
    ]);
    let mut out = Vec::new();
    e.seed_series("a", "temp", &NoLabels, 1_000);
    e.seed_series("b", "temp", &NoLabels, 100_000);
    e.seed_series("b", "temp", &NoLabels, 50_000); // the later time wins
    e.seed_series("c", "power", &NoLabels, 0); // in no scope
    assert_eq!(e.next_deadline(), Some(301_000));
    e.tick(301_000, &mut out);
    assert_eq!(e.next_deadline(), Some(400_000));
    e.tick(1_000_000, &mut out);
    assert_eq!(show(&out), "a/301000:firing b/1000000:firing");
    assert_eq!(e.next_deadline(), None);
}

#[test]
fn timers_postponed_by_readings_reschedule_lazily() {
    let mut e = engine(&["condition = { no_data = \"10s\" }"]);
    let mut steps: Vec<String> = (0..100).map(|i| format!("{}=1", i * 1000)).collect();
    steps.push("99500=tick".into());
    assert_eq!(run(&mut e, &steps.join(" ")), "");
    assert_eq!(e.sizes().1, 1);
    assert_eq!(e.next_deadline(), Some(109_000));
    assert_eq!(run(&mut e, "109000=tick"), "109000:firing");
}

/// Bad rule body (`;` for a newline) | the field its error names.
const BAD_RULES: &str = r#"
name = ""; condition = { above = 1.0 }          | name
name = "has space"; condition = { above = 1.0 } | name
condition = { above = -15.0, clear_below = -14.0 } | condition.clear_below
condition = { below = 5.0, clear_above = 4.0 }  | condition.clear_above
condition = { outside = [20.0, 10.0] }          | condition.outside
condition = { outside = [10, 20], clear_inside = [5, 15] } | condition.clear_inside
condition = { inside = [1.0, 0.0] }             | condition.inside
condition = { above = nan }                     | condition.above
condition = { equals = inf }                    | condition.equals
condition = { no_data = "0s" }                  | condition.no_data
condition = { no_data = "5 min" }               | condition.no_data
condition = { rate_above = 1.0, per = "minute", window = "0" } | condition.window
condition = { rate_below = inf, per = "minute", window = "1m" } | condition.rate_below
condition = { above = 1.0 }; for = "10 minutes" | for
condition = { above = 1.0 }; keep_firing_for = "1.5m" | keep_firing_for
condition = { above = 1.0 }; repeat_every = "0" | repeat_every
condition = { above = 1.0 }; severity = "fatal" | severity
condition = { above = 1.0 }; device = "a,,b"    | device
condition = { above = 1.0 }; metric = ""        | metric
condition = { above = 1.0 }; filter = "device ==" | filter
condition = { above = 1.0 }; filter = "value > 3" | filter
condition = { above = 1.0 }; filter = 'state == "firing"' | filter
condition = { above = 1.0 }; labels = { "" = "x" } | labels
condition = { above = 1.0 }; notify = ["ops", ""] | notify[1]
condition = { above = 1.0 }; summary = "{device} {colour}" | summary
condition = { above = 1.0 }; summary = "{device" | summary
"#;

#[test]
fn validation_names_the_field() {
    for row in table(BAD_RULES) {
        let [body, field] = row[..] else {
            panic!("bad row {row:?}")
        };
        let err = rule(body).validate().err();
        assert_eq!(
            err.as_ref().map(RuleError::field),
            Some(field),
            "{body}: {err:?}"
        );
    }
    let msg = |body| rule(body).validate().err().map(|e| e.to_string());
    assert_eq!(
        msg("condition = { above = -15.0, clear_below = -14.0 }").as_deref(),
        Some("rule \"r\": condition.clear_below: must be <= above (-15)")
    );
    assert_eq!(
        msg("condition = { above = 1.0 }; severity = \"fatal\"").as_deref(),
        Some("rule \"r\": severity: unknown severity \"fatal\" (one of critical, major, minor, warning, info)")
    );
    assert_eq!(
        msg("condition = { above = 1.0 }; filter = \"device ==\"").as_deref(),
        Some("rule \"r\": filter: expected a number, a quoted string, true or false at 9")
    );
    let dup = RuleSet::compile(vec![
        rule("condition = { above = 1.0 }"),
        rule("condition = { below = 1.0 }"),
    ])
    .err();
    assert_eq!(
        dup.map(|e| e.to_string()).as_deref(),
        Some("rule \"r\": name: duplicate rule name")
    );
}

#[test]
fn condition_shape_errors_are_deserialization_errors() {
    for cond in [
        "{}",
        "{ above = 1.0, below = 0.0 }",
        "{ above = 1.0, clear_above = 2.0 }",
        "{ rate_above = 1.0, window = \"1m\" }",
        "{ rate_above = 1.0, per = \"fortnight\", window = \"1m\" }",
        "{ above = 1.0, colour = 2 }",
        "{ above = \"high\" }",
    ] {
        let text = format!("name = \"r\"\nseverity = \"info\"\ncondition = {cond}");
        let err = toml::from_str::<Rule>(&text).err().map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(
            err.contains("a condition is one of { above, clear_below? }"),
            "{cond}: {err}"
        );
    }
    let text = "name = \"r\"\nseverity = \"info\"\ncondition = { above = 1 }\ncolour = 1";
    assert!(toml::from_str::<Rule>(text).is_err());
}

/// The crate docs' examples.
const EXAMPLES: &str = r#"
[[rule]]
name = "freezer-warm"
device = "freezer-*"
metric = "temperature"
condition = { above = -15.0 }
for = "10m"
severity = "major"
summary = "{device} at {value}{unit} (limit {threshold})"
notify = ["ops-pager"]
repeat_every = "1h"

[[rule]]
name = "humid"
metric = "humidity"
condition = { above = 80.0, clear_below = 70.0 }
severity = "warning"

[[rule]]
name = "sensor-silent"
condition = { no_data = "5m" }
severity = "minor"
labels = { team = "field" }

[[rule]]
name = "heating-fast"
metric = "temperature"
filter = 'labels.site == "north"'
condition = { rate_above = 2.0, per = "minute", window = "5m" }
keep_firing_for = "2m"
severity = "critical"
"#;

#[derive(serde::Deserialize)]
struct File {
    rule: Vec<Rule>,
}

#[test]
fn examples_parse_and_round_trip() {
    let file: File = toml::from_str(EXAMPLES).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(file.rule.len(), 4);
    for r in &file.rule {
        let json = serde_json::to_string(r).unwrap_or_default();
        let back: Result<Rule, _> = serde_json::from_str(&json);
        assert_eq!(back.as_ref().ok(), Some(r), "{json}");
        let text = toml::to_string(r).unwrap_or_default();
        assert_eq!(
            toml::from_str::<Rule>(&text).ok().as_ref(),
            Some(r),
            "{text}"
        );
    }
    let json = serde_json::to_string(&file.rule[1].condition).unwrap_or_default();
    assert_eq!(json, r#"{"above":80.0,"clear_below":70.0}"#);
    assert!(RuleSet::compile(file.rule).is_ok());
}

fn temp(device: &str, v: f64) -> Reading<'_> {
    Reading::new(device, "m", ValueRef::Number(v))
}

#[test]
fn snapshot_and_restore_keep_timers_and_do_not_refire() {
    let bodies = [
        "name = \"slow\"; condition = { above = 10.0 }; for = \"10s\"",
        "name = \"fast\"; condition = { above = 20.0 }; keep_firing_for = \"5s\"",
        "name = \"quiet\"; condition = { no_data = \"1m\" }",
    ];
    let mut e = engine(&bodies);
    let mut out = Vec::new();
    e.observe(&temp("a", 11.0), 1_000, &mut out); // slow pending since 1000
    e.observe(&temp("b", 25.0), 2_000, &mut out); // slow pending, fast firing
    e.observe(&temp("c", 25.0), 2_000, &mut out);
    e.observe(&temp("c", 5.0), 3_000, &mut out); // fast keeps firing until 8000
    assert_eq!(
        show(&out),
        "a/1000:pending b/2000:pending b/2000:firing c/2000:pending c/2000:firing c/3000:dropped"
    );
    let state = e.snapshot();
    let json = serde_json::to_string(&state).unwrap_or_default();
    let state: EngineState = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));

    let rules = RuleSet::compile(bodies.iter().map(|b| rule(b)).collect()).ok();
    let mut out = Vec::new();
    let restored = Engine::restore(rules.unwrap_or_default(), state, 5_000, &mut out);
    let mut e = restored.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(show(&out), "", "restoring emits nothing");
    let mut open: Vec<_> = e
        .open_alerts()
        .map(|a| format!("{}/{}:{:?}@{}", a.rule, a.device, a.state, a.since))
        .collect();
    open.sort();
    assert_eq!(
        open,
        [
            "fast/b:Firing@2000",
            "fast/c:Firing@2000",
            "slow/a:Pending@1000",
            "slow/b:Pending@2000"
        ]
    );
    e.observe(&temp("b", 30.0), 6_000, &mut out); // still firing: nothing
    e.tick(8_000, &mut out); // c's keep_firing_for runs out
    e.tick(11_000, &mut out); // a's `for` ran from 1000
    e.observe(&temp("b", 15.0), 12_000, &mut out); // slow due; fast keeps firing until 17000
    e.tick(62_999, &mut out); // fast b runs out; a silent since 1000
    e.tick(63_000, &mut out); // c silent since 3000
    assert_eq!(
        show(&out),
        "c/8000:resolved a/11000:firing b/12000:firing b/62999:resolved a/62999:firing c/63000:firing"
    );
}

#[test]
fn restore_resolves_alerts_of_changed_rules_and_seeds_fire() {
    let mut e = engine(&[
        "name = \"hot\"; condition = { above = 10.0 }",
        "name = \"gone\"; condition = { above = 0.0 }; for = \"1h\"",
    ]);
    let mut out = Vec::new();
    e.observe(&temp("a", 11.0), 0, &mut out);
    let state = e.snapshot();
    let new = RuleSet::compile(vec![
        rule("name = \"hot\"; condition = { above = 12.0 }"),
        rule("name = \"quiet\"; condition = { no_data = \"1m\" }"),
    ]);
    out.clear();
    let e = Engine::restore(new.unwrap_or_default(), state, 100, &mut out);
    let mut e = e.unwrap_or_else(|e| panic!("{e}"));
    e.seed_series("z", "m", &NoLabels, 50);
    e.tick(60_050, &mut out);
    assert_eq!(
        show(&out),
        "a/100:resolved a/100:dropped a/60050:firing z/60050:firing"
    );
    // A snapshot whose rules no longer compile is an error naming the field.
    let mut bad = e.snapshot();
    bad.rules[0].severity = "fatal".into();
    let err = Engine::restore(RuleSet::default(), bad, 0, &mut out).err();
    assert_eq!(err.as_ref().map(RuleError::field), Some("severity"));
}

#[test]
fn replace_rules_keeps_unchanged_and_resolves_the_rest() {
    let keep = "name = \"keep\"; condition = { above = 10.0 }";
    let change = "name = \"change\"; condition = { above = 10.0 }";
    let drop = "name = \"drop\"; condition = { above = 10.0 }; for = \"1m\"";
    let mut e = engine(&[keep, change, drop]);
    let mut out = Vec::new();
    e.observe(&temp("a", 11.0), 0, &mut out);
    assert_eq!(show(&out), "a/0:firing a/0:firing a/0:pending");
    out.clear();
    let added = "name = \"added\"; condition = { below = 100.0 }";
    let changed = "name = \"change\"; condition = { above = 10.5 }";
    let rules = RuleSet::compile([added, changed, keep].iter().map(|b| rule(b)).collect());
    e.replace_rules(rules.unwrap_or_default(), 5, &mut out);
    let shown: Vec<_> = out
        .iter()
        .map(|t| format!("{}:{:?}:{}", t.key.rule, t.to, t.was_firing))
        .collect();
    assert_eq!(shown, ["change:Resolved:true", "drop:Resolved:false"]);
    out.clear();
    e.observe(&temp("a", 11.0), 10, &mut out);
    let shown: Vec<_> = out
        .iter()
        .map(|t| format!("{}:{:?}", t.key.rule, t.to))
        .collect();
    assert_eq!(shown, ["added:Firing", "change:Firing"]);
    let open: Vec<_> = e.open_alerts().map(|a| (a.rule, a.since)).collect();
    assert_eq!(open, [("added", 10), ("change", 10), ("keep", 0)]);
}

#[test]
fn engine_can_move_to_another_thread() {
    fn check<T: Send + Sync + 'static>() {}
    check::<Engine>();
    check::<RuleSet>();
    check::<EngineState>();
}
