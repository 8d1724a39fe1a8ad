//! Query parameters of the collection routes, parsed strictly: a parameter
//! the route does not know, or a value out of range, is a 400 naming it.

use crate::problem::Problem;
use axum::http::StatusCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use telltale_filter::{Filter, FilterError, Shorthands};
use telltale_watch::Kind;

/// The parameters of one request.
#[derive(Debug)]
pub struct Params {
    pub watch: bool,
    pub resource_version: Option<String>,
    pub send_initial_events: bool,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub heartbeat: Duration,
    pub timeout: Option<Duration>,
    pub throttle: Option<Duration>,
    pub limit: usize,
    pub cont: Option<String>,
    pub wait: Option<Duration>,
    pub filter: Filter,
}

/// Default page size, and the largest allowed.
pub const DEFAULT_LIMIT: usize = 1000;
pub const MAX_LIMIT: usize = 10_000;
/// Longest long poll.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

fn flag(name: &str, v: &str) -> Result<bool, Problem> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(Problem::bad_param(
            name,
            format!("{name} must be true or false"),
        )),
    }
}

fn seconds(name: &str, v: &str, lo: u64, hi: u64) -> Result<Duration, Problem> {
    match v.parse::<u64>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(Duration::from_secs(n)),
        _ => Err(Problem::bad_param(
            name,
            format!("{name} must be a whole number of seconds from {lo} to {hi}"),
        )),
    }
}

/// An RFC 3339 time or a duration meaning "that long ago", in ms.
fn when(name: &str, v: &str) -> Result<i64, Problem> {
    let t = if let Ok(d) = humantime::parse_duration(v) {
        SystemTime::now().checked_sub(d)
    } else {
        humantime::parse_rfc3339_weak(v).ok()
    };
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .ok_or_else(|| {
            Problem::bad_param(
                name,
                format!("{name} must be an RFC 3339 time or a duration such as 15m"),
            )
        })
}

fn filter_problem(e: FilterError) -> Problem {
    let param = e.param().as_str().to_owned();
    Problem {
        param: Some(param),
        position: Some(e.position()),
        ..Problem::new(StatusCode::BAD_REQUEST, "bad_filter", e.to_string())
    }
}

impl Params {
    /// Parses the query pairs of a route over a collection of `kind`.
    /// `extra`: the shorthands this route takes beyond `device` and
    /// `metric` (`severity` and `state` on alerts, `state` on commands).
    pub fn parse(
        pairs: &[(String, String)],
        kind: Kind,
        extra: &[&str],
    ) -> Result<Params, Problem> {
        let mut p = Params {
            watch: false,
            resource_version: None,
            send_initial_events: false,
            since: None,
            until: None,
            heartbeat: Duration::from_secs(15),
            timeout: None,
            throttle: None,
            limit: DEFAULT_LIMIT,
            cont: None,
            wait: None,
            filter: Filter::all(),
        };
        let mut expr = None;
        let mut short = Shorthands::default();
        let mut seen = std::collections::HashSet::new();
        for (k, v) in pairs {
            if !seen.insert(k.as_str()) {
                return Err(Problem::bad_param(
                    k,
                    format!("{k} is given more than once"),
                ));
            }
            match (k.as_str(), kind) {
                ("watch", _) => p.watch = flag(k, v)?,
                ("resourceVersion", _) => p.resource_version = Some(v.clone()),
                ("sendInitialEvents", Kind::State) => p.send_initial_events = flag(k, v)?,
                ("since", Kind::Log) => p.since = Some(when(k, v)?),
                ("until", Kind::Log) => p.until = Some(when(k, v)?),
                ("heartbeatSeconds", _) => p.heartbeat = seconds(k, v, 1, 300)?,
                ("timeoutSeconds", _) => p.timeout = Some(seconds(k, v, 1, 86_400)?),
                ("throttleSeconds", Kind::State) => {
                    p.throttle = Some(seconds(k, v, 0, 3600)?).filter(|d| !d.is_zero())
                }
                ("limit", _) => {
                    p.limit = match v.parse::<usize>() {
                        Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                        _ => {
                            return Err(Problem::bad_param(
                                k,
                                format!("limit must be from 1 to {MAX_LIMIT}"),
                            ))
                        }
                    }
                }
                ("continue", _) => p.cont = Some(v.clone()),
                ("wait", _) => {
                    let d = humantime::parse_duration(v)
                        .ok()
                        .filter(|d| *d <= MAX_WAIT)
                        .ok_or_else(|| {
                            Problem::bad_param(k, "wait must be a duration such as 30s, at most 5m")
                        })?;
                    p.wait = Some(d);
                }
                ("filter", _) => expr = Some(v.clone()),
                ("device", _) => short.device = Some(v.clone()),
                ("metric", _) => short.metric = Some(v.clone()),
                ("severity", Kind::State) if extra.contains(&"severity") => {
                    short.severity = Some(v.clone())
                }
                ("state", Kind::State) if extra.contains(&"state") => short.state = Some(v.clone()),
                _ => {
                    return Err(Problem::bad_param(
                        k,
                        format!("this route does not take the parameter {k}"),
                    ))
                }
            }
        }
        p.filter = Filter::parse(expr.as_deref(), &short).map_err(filter_problem)?;
        // Nothing is silently ignored: a parameter that does nothing in
        // this mode is a 400 naming it.
        let given = |k: &str| seen.contains(k);
        let mode_rules: &[(&str, bool, &str)] = &[
            (
                "heartbeatSeconds",
                !p.watch,
                "heartbeatSeconds needs watch=true",
            ),
            (
                "timeoutSeconds",
                !p.watch,
                "timeoutSeconds needs watch=true",
            ),
            (
                "throttleSeconds",
                !p.watch,
                "throttleSeconds needs watch=true",
            ),
            (
                "until",
                p.watch || p.wait.is_some(),
                "until applies to lists only",
            ),
            (
                "limit",
                p.watch,
                "limit applies to lists and long polls only",
            ),
            (
                "since",
                p.wait.is_some(),
                "since cannot be combined with wait",
            ),
            (
                "continue",
                p.wait.is_some(),
                "continue cannot be combined with wait",
            ),
        ];
        for (name, bad, why) in mode_rules {
            if *bad && given(name) {
                return Err(Problem::bad_param(name, *why));
            }
        }
        if p.watch && (p.wait.is_some() || p.cont.is_some()) {
            let which = if p.wait.is_some() { "wait" } else { "continue" };
            return Err(Problem::bad_param(
                which,
                format!("{which} cannot be combined with watch"),
            ));
        }
        if p.wait.is_some() && p.resource_version.is_none() {
            return Err(Problem::bad_param(
                "resourceVersion",
                "a long poll (wait) needs the resourceVersion to wait after",
            ));
        }
        if p.send_initial_events && !p.watch {
            return Err(Problem::bad_param(
                "sendInitialEvents",
                "sendInitialEvents needs watch=true",
            ));
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Vec<(String, String)> {
        s.split('&')
            .filter(|x| !x.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect()
    }

    #[test]
    fn table() {
        // (query, collection kind, Ok or Err((parameter, code)))
        type Case<'a> = (&'a str, Kind, Result<(), (&'a str, &'a str)>);
        let cases: &[Case<'_>] = &[
            ("", Kind::Log, Ok(())),
            (
                "watch=true&heartbeatSeconds=5&since=15m&device=a,b",
                Kind::Log,
                Ok(()),
            ),
            (
                "watch=1&sendInitialEvents=true&throttleSeconds=1",
                Kind::State,
                Ok(()),
            ),
            ("resourceVersion=ab-1&wait=30s&limit=10", Kind::Log, Ok(())),
            (
                "heartbeatSeconds=5",
                Kind::Log,
                Err(("heartbeatSeconds", "bad_parameter")),
            ),
            (
                "watch=true&limit=5",
                Kind::Log,
                Err(("limit", "bad_parameter")),
            ),
            (
                "watch=true&until=5m",
                Kind::Log,
                Err(("until", "bad_parameter")),
            ),
            (
                "resourceVersion=a-1&wait=1s&since=5m",
                Kind::Log,
                Err(("since", "bad_parameter")),
            ),
            ("colour=red", Kind::Log, Err(("colour", "bad_parameter"))),
            (
                "sendInitialEvents=true&watch=true",
                Kind::Log,
                Err(("sendInitialEvents", "bad_parameter")),
            ),
            ("since=15m", Kind::State, Err(("since", "bad_parameter"))),
            (
                "throttleSeconds=1",
                Kind::Log,
                Err(("throttleSeconds", "bad_parameter")),
            ),
            (
                "heartbeatSeconds=0",
                Kind::Log,
                Err(("heartbeatSeconds", "bad_parameter")),
            ),
            (
                "heartbeatSeconds=301",
                Kind::Log,
                Err(("heartbeatSeconds", "bad_parameter")),
            ),
            ("limit=0", Kind::Log, Err(("limit", "bad_parameter"))),
            ("limit=10001", Kind::Log, Err(("limit", "bad_parameter"))),
            ("watch=maybe", Kind::Log, Err(("watch", "bad_parameter"))),
            (
                "wait=30s",
                Kind::Log,
                Err(("resourceVersion", "bad_parameter")),
            ),
            (
                "wait=10m&resourceVersion=a-1",
                Kind::Log,
                Err(("wait", "bad_parameter")),
            ),
            (
                "since=yesterday",
                Kind::Log,
                Err(("since", "bad_parameter")),
            ),
            ("filter=value >", Kind::Log, Err(("filter", "bad_filter"))),
            ("device=a,,b", Kind::Log, Err(("device", "bad_filter"))),
            (
                "limit=1&limit=2",
                Kind::Log,
                Err(("limit", "bad_parameter")),
            ),
            (
                "watch=true&wait=1s&resourceVersion=a-1",
                Kind::Log,
                Err(("wait", "bad_parameter")),
            ),
        ];
        for (query, kind, want) in cases {
            let got = Params::parse(&q(query), *kind, &[]);
            match (got, want) {
                (Ok(_), Ok(())) => {}
                (Err(p), Err((param, code))) => {
                    assert_eq!(p.param.as_deref(), Some(*param), "{query}");
                    assert_eq!(p.code, *code, "{query}");
                    assert_eq!(p.status, 400, "{query}");
                }
                (got, want) => panic!("{query}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn filter_errors_carry_the_position() {
        let p = Params::parse(&q("filter=value > 'x"), Kind::Log, &[]).expect_err("bad");
        assert_eq!(p.position, Some(8));
    }
}
