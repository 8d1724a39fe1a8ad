//! The built-in commands: `ping`, `set_interval`, `read_now` and
//! `get_config`. Parameters are checked when the command arrives
//! ([`Builtin::parse`], pure); running one never blocks for long.

use super::params::{describe, integer, unknown_param};
use super::{now_ms, Context, Failure, Outcome};
use crate::reading::Value as ReadingValue;
use crate::sender::AGENT;
use crate::sources::SourceHandle;
use serde_json::{json, Map, Value};
use std::time::Duration;

/// Shortest interval `set_interval` accepts (ms).
pub const MIN_INTERVAL_MS: u64 = 10;
/// Longest interval `set_interval` accepts (ms): a day.
pub const MAX_INTERVAL_MS: u64 = 86_400_000;

/// A built-in command with its checked parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Builtin {
    /// Answers with the agent's name and clock.
    Ping,
    /// Changes the interval of these sources (indexes into the handles).
    SetInterval {
        /// The sources.
        targets: Vec<usize>,
        /// The new interval.
        period: Duration,
    },
    /// Makes these sources read now.
    ReadNow {
        /// The sources.
        targets: Vec<usize>,
    },
    /// Shows the effective config, secrets masked.
    GetConfig,
}

/// Fails on any param not in `known`.
fn only(params: &Map<String, Value>, known: &[&str]) -> Result<(), String> {
    match params.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(unknown_param(k, known.iter().copied())),
        None => Ok(()),
    }
}

/// The sources `params.source` selects: every source whose name or metric
/// it is, or all sources when it is absent.
fn select(params: &Map<String, Value>, sources: &[SourceHandle]) -> Result<Vec<usize>, String> {
    if sources.is_empty() {
        return Err("this agent has no [[source]]".to_owned());
    }
    let names = || {
        sources
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match params.get("source") {
        None => Ok((0..sources.len()).collect()),
        Some(Value::String(want)) => {
            let found: Vec<usize> = sources
                .iter()
                .enumerate()
                .filter(|(_, s)| s.name == *want || s.metric == *want)
                .map(|(i, _)| i)
                .collect();
            if found.is_empty() {
                Err(format!(
                    "param \"source\": no source is named {want:?} (sources: {})",
                    names()
                ))
            } else {
                Ok(found)
            }
        }
        Some(v) => Err(format!(
            "param \"source\": expected a string (a source name or metric), got {}",
            describe(v)
        )),
    }
}

/// The new interval from `seconds` or `interval_ms`.
fn period(params: &Map<String, Value>) -> Result<Duration, String> {
    let (lo, hi) = (MIN_INTERVAL_MS, MAX_INTERVAL_MS);
    let ms = match (params.get("seconds"), params.get("interval_ms")) {
        (Some(_), Some(_)) => {
            return Err("give param \"seconds\" or \"interval_ms\", not both".to_owned())
        }
        (None, None) => return Err("missing param \"seconds\" (or \"interval_ms\")".to_owned()),
        (Some(v), None) => {
            let s = v.as_f64().ok_or_else(|| {
                format!("param \"seconds\": expected a number, got {}", describe(v))
            })?;
            // Compared in ms so that 0.01 s is allowed exactly.
            let ms = (s * 1000.0).round();
            if !(lo as f64..=hi as f64).contains(&ms) {
                return Err(format!(
                    "param \"seconds\": must be between 0.01 and 86400, got {}",
                    describe(v)
                ));
            }
            ms as u64
        }
        (None, Some(v)) => {
            let ms = integer(v).ok_or_else(|| {
                format!(
                    "param \"interval_ms\": expected an integer, got {}",
                    describe(v)
                )
            })?;
            match u64::try_from(ms) {
                Ok(ms) if (lo..=hi).contains(&ms) => ms,
                _ => {
                    return Err(format!(
                        "param \"interval_ms\": must be between {lo} and {hi}, got {ms}"
                    ))
                }
            }
        }
    };
    Ok(Duration::from_millis(ms))
}

impl Builtin {
    /// The built-in called `name` with its params checked; `None` if no
    /// built-in has that name.
    pub fn parse(
        name: &str,
        params: &Map<String, Value>,
        sources: &[SourceHandle],
    ) -> Option<Result<Builtin, String>> {
        let parsed = match name {
            "ping" => only(params, &[]).map(|()| Builtin::Ping),
            "get_config" => only(params, &[]).map(|()| Builtin::GetConfig),
            "set_interval" => only(params, &["source", "seconds", "interval_ms"]).and_then(|()| {
                let period = period(params)?;
                let targets = select(params, sources)?;
                Ok(Builtin::SetInterval { targets, period })
            }),
            "read_now" => only(params, &["source"]).and_then(|()| {
                let targets = select(params, sources)?;
                Ok(Builtin::ReadNow { targets })
            }),
            _ => return None,
        };
        Some(parsed)
    }

    /// Runs it.
    pub async fn run(self, ctx: &Context) -> Outcome {
        match self {
            Builtin::Ping => Ok(json!({"pong": true, "agent": AGENT, "time": now_ms()})),
            Builtin::SetInterval { targets, period } => {
                let mut changed = Vec::new();
                for i in targets {
                    let s = &ctx.sources[i];
                    let previous = s.set_interval(period);
                    tracing::info!(
                        source = s.name,
                        interval_ms = period.as_millis(),
                        previous_ms = previous.as_millis(),
                        "source interval changed"
                    );
                    changed.push(json!({
                        "source": s.name,
                        "metric": s.metric,
                        "interval_ms": period.as_millis(),
                        "previous_ms": previous.as_millis(),
                    }));
                }
                Ok(json!({ "sources": changed }))
            }
            Builtin::ReadNow { targets } => {
                // Ask every source first, so that they all read at once.
                let asked: Vec<_> = targets
                    .iter()
                    .map(|i| (&ctx.sources[*i], ctx.sources[*i].ask()))
                    .collect();
                let mut readings = Vec::new();
                let mut problems = Vec::new();
                for (s, pending) in asked {
                    match pending.answer().await {
                        Ok(read) => readings.extend(read.iter().map(|r| {
                            let value = match r.value {
                                ReadingValue::Num(v) => json!(v),
                                ReadingValue::Bool(b) => json!(b),
                            };
                            let mut o = json!({"source": s.name, "name": r.name, "value": value, "time": r.time});
                            if let Some(u) = &r.unit {
                                o["unit"] = json!(u);
                            }
                            o
                        })),
                        Err(e) => problems.push(format!("source {}: {e}", s.name)),
                    }
                }
                let output = json!({ "readings": readings });
                if problems.is_empty() {
                    Ok(output)
                } else {
                    Err(Failure {
                        reason: problems.join("; "),
                        output: Some(output),
                    })
                }
            }
            Builtin::GetConfig => {
                let mut config = serde_json::to_value(&*ctx.config)
                    .map_err(|e| Failure::new(format!("cannot show the config: {e}")))?;
                // Effective: intervals as changed by set_interval.
                if let Some(list) = config.get_mut("source").and_then(Value::as_array_mut) {
                    for (entry, s) in list.iter_mut().zip(&ctx.sources) {
                        entry["interval_ms"] = json!(s.interval().as_millis());
                    }
                }
                Ok(config)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SimulatedSource, SourceConfig};

    fn sources() -> Vec<SourceHandle> {
        ["room/temp", "cpu/temp"]
            .iter()
            .enumerate()
            .map(|(i, metric)| {
                let s = SourceConfig::Simulated(SimulatedSource {
                    name: (i == 1).then(|| "cpu".to_owned()),
                    metric: (*metric).to_owned(),
                    unit: None,
                    interval_ms: 1000,
                    shape: Default::default(),
                    base: 0.0,
                    amplitude: 1.0,
                    period_secs: 10.0,
                    noise: 0.0,
                    limit: None,
                });
                SourceHandle::new(&s, i + 1).0
            })
            .collect()
    }

    #[test]
    fn parse_table() {
        let s = sources();
        let ms = Duration::from_millis;
        let cases: Vec<(&str, Value, Result<Builtin, &str>)> = vec![
            ("ping", json!({}), Ok(Builtin::Ping)),
            (
                "ping",
                json!({"x": 1}),
                Err("unknown param \"x\" (this command takes none)"),
            ),
            ("get_config", json!({}), Ok(Builtin::GetConfig)),
            (
                "set_interval",
                json!({"seconds": 0.5}),
                Ok(Builtin::SetInterval {
                    targets: vec![0, 1],
                    period: ms(500),
                }),
            ),
            (
                "set_interval",
                json!({"source": "room/temp", "interval_ms": 10}),
                Ok(Builtin::SetInterval {
                    targets: vec![0],
                    period: ms(10),
                }),
            ),
            (
                "set_interval",
                json!({"source": "cpu", "seconds": 86400}),
                Ok(Builtin::SetInterval {
                    targets: vec![1],
                    period: ms(86_400_000),
                }),
            ),
            (
                "set_interval",
                json!({"source": "cpu/temp", "seconds": 0.01}),
                Ok(Builtin::SetInterval {
                    targets: vec![1],
                    period: ms(10),
                }),
            ),
            (
                "set_interval",
                json!({}),
                Err("missing param \"seconds\" (or \"interval_ms\")"),
            ),
            (
                "set_interval",
                json!({"seconds": 1, "interval_ms": 1000}),
                Err("give param \"seconds\" or \"interval_ms\", not both"),
            ),
            (
                "set_interval",
                json!({"seconds": 0.001}),
                Err("param \"seconds\": must be between 0.01 and 86400, got 0.001"),
            ),
            (
                "set_interval",
                json!({"seconds": 86401}),
                Err("param \"seconds\": must be between 0.01 and 86400, got 86401"),
            ),
            (
                "set_interval",
                json!({"seconds": "5"}),
                Err("param \"seconds\": expected a number, got \"5\""),
            ),
            (
                "set_interval",
                json!({"interval_ms": 9}),
                Err("param \"interval_ms\": must be between 10 and 86400000, got 9"),
            ),
            (
                "set_interval",
                json!({"interval_ms": -5}),
                Err("param \"interval_ms\": must be between 10 and 86400000, got -5"),
            ),
            (
                "set_interval",
                json!({"interval_ms": 1.5}),
                Err("param \"interval_ms\": expected an integer, got 1.5"),
            ),
            (
                "set_interval",
                json!({"source": "nope", "seconds": 1}),
                Err("param \"source\": no source is named \"nope\" (sources: room/temp, cpu)"),
            ),
            (
                "set_interval",
                json!({"source": 3, "seconds": 1}),
                Err("param \"source\": expected a string (a source name or metric), got 3"),
            ),
            (
                "set_interval",
                json!({"secs": 1}),
                Err("unknown param \"secs\" (this command takes source, seconds, interval_ms)"),
            ),
            (
                "read_now",
                json!({}),
                Ok(Builtin::ReadNow {
                    targets: vec![0, 1],
                }),
            ),
            (
                "read_now",
                json!({"source": "cpu"}),
                Ok(Builtin::ReadNow { targets: vec![1] }),
            ),
            (
                "read_now",
                json!({"seconds": 1}),
                Err("unknown param \"seconds\" (this command takes source)"),
            ),
        ];
        for (name, params, want) in cases {
            let params = params.as_object().cloned().expect("object");
            let got = Builtin::parse(name, &params, &s).expect("a built-in");
            assert_eq!(got, want.map_err(str::to_owned), "{name} {params:?}");
        }
        assert!(Builtin::parse("reboot", &Map::new(), &s).is_none());
        assert_eq!(
            Builtin::parse("read_now", &Map::new(), &[]),
            Some(Err("this agent has no [[source]]".to_owned()))
        );
    }
}
