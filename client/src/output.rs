//! What the client prints, built by pure functions from the API's types:
//! tables, event lines, a command's steps, problems for a person.

use crate::cli::Resource;
use crate::fail::Fail;
use serde::Deserialize;
use serde_json::Value;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use telltale_types::{
    Alert, Command, CommandState, Device, Latest, Problem, Reading, ReadingValue, Reject,
    WatchEvent,
};

/// Writes one line to standard output.
pub fn out(line: &str) -> Result<(), Fail> {
    let mut o = std::io::stdout().lock();
    writeln!(o, "{line}")
        .and_then(|()| o.flush())
        .map_err(|_| Fail::Stdout)
}

/// Now, in ms since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A problem+json object as one line for a person: its detail and what it
/// names.
pub fn problem_text(p: &Problem) -> String {
    let mut text = [&p.detail, &p.title]
        .into_iter()
        .find(|t| !t.is_empty())
        .map_or_else(|| "the hub refused the request".to_owned(), |t| t.clone());
    let mut names = Vec::new();
    if let Some(f) = &p.field {
        names.push(format!("field {f}"));
    }
    if let Some(param) = &p.param {
        match p.position {
            Some(at) => names.push(format!("parameter {param}, at byte {at}")),
            None => names.push(format!("parameter {param}")),
        }
    }
    if !names.is_empty() {
        text.push_str(&format!(" ({})", names.join("; ")));
    }
    text
}

/// Rows under a header, columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut text = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for r in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                let pad = width[i] - c.chars().count();
                line.push_str(c);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// ms since the epoch of the hub's RFC 3339 times.
pub fn parse_time(t: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339(t).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_millis() as i64)
}

/// How long ago `then_ms` was, for a person: `3s ago`, `5m ago`.
pub fn ago(now_ms: i64, then_ms: i64) -> String {
    let d = now_ms - then_ms;
    let span = |ms: i64| {
        let s = ms / 1000;
        match s {
            0..=59 => format!("{s}s"),
            60..=3599 => format!("{}m", s / 60),
            3600..=172_799 => format!("{}h", s / 3600),
            _ => format!("{}d", s / 86_400),
        }
    };
    if d < -2000 {
        // The hub's clock is ahead of this one.
        format!("in {}", span(-d))
    } else if d < 1000 {
        "just now".into()
    } else {
        format!("{} ago", span(d))
    }
}

/// A value and its unit, if it has one.
fn value_unit(value: &ReadingValue, unit: Option<&str>) -> String {
    match unit {
        Some(u) if !u.is_empty() => format!("{} {u}", value.text()),
        _ => value.text(),
    }
}

/// An optional string, or `-`.
fn or_dash(v: Option<&str>) -> String {
    v.unwrap_or("-").to_owned()
}

/// `k=v,k=v`, or `-`.
fn labels_text(labels: &std::collections::BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "-".into();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The `devices` table.
pub fn devices_table(items: &[Device], now_ms: i64) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|d| {
            vec![
                d.id.clone(),
                d.presence().as_str().into(),
                d.last_seen
                    .as_deref()
                    .and_then(parse_time)
                    .map_or("never".into(), |t| ago(now_ms, t)),
                or_dash(d.agent.as_deref()),
                labels_text(&d.labels),
            ]
        })
        .collect();
    table(&["DEVICE", "STATE", "LAST SEEN", "AGENT", "LABELS"], &rows)
}

/// The `latest` table.
pub fn latest_table(items: &[Latest], now_ms: i64) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|l| {
            let when = match parse_time(&l.time) {
                Some(t) => format!("{} ({})", l.time, ago(now_ms, t)),
                None => l.time.clone(),
            };
            vec![
                l.device.clone(),
                l.metric.clone(),
                value_unit(&l.value, l.unit.as_deref()),
                when,
            ]
        })
        .collect();
    table(&["DEVICE", "METRIC", "VALUE", "TIME"], &rows)
}

/// The time of day of an RFC 3339 time (`12:00:01.250`), as the hub wrote
/// it (UTC).
pub fn clock(t: &str) -> &str {
    let Some((_, time)) = t.split_once('T') else {
        return t;
    };
    time.trim_end_matches('Z')
}

/// The newest of some times, for an event line.
fn newest_time<'a>(times: &[Option<&'a str>]) -> Option<&'a str> {
    times
        .iter()
        .flatten()
        .copied()
        .max_by_key(|t| parse_time(t).unwrap_or(0))
}

/// An item's time and what its event line says of it; `None` when the
/// object is not the collection's item.
fn item_line(resource: Resource, o: &Value) -> Option<(Option<String>, String)> {
    Some(match resource {
        Resource::Readings => {
            let r = Reading::deserialize(o).ok()?;
            let what = format!(
                "{} {} {}",
                r.device,
                r.metric,
                value_unit(&r.value, r.unit.as_deref())
            );
            (Some(r.time), what)
        }
        Resource::Latest => {
            let l = Latest::deserialize(o).ok()?;
            let what = format!(
                "{} {} {}",
                l.device,
                l.metric,
                value_unit(&l.value, l.unit.as_deref())
            );
            (Some(l.time), what)
        }
        Resource::Devices => {
            let d = Device::deserialize(o).ok()?;
            let mut what = format!("device {} {}", d.id, d.presence().as_str());
            if let Some(a) = &d.agent {
                what.push_str(&format!(" {a}"));
            }
            if !d.labels.is_empty() {
                what.push_str(&format!(" {}", labels_text(&d.labels)));
            }
            (d.last_seen, what)
        }
        Resource::Alerts => {
            let a = Alert::deserialize(o).ok()?;
            let mut what = format!(
                "alert {} {} {} {} {}: {}",
                a.id,
                a.state.as_str(),
                a.severity.as_str(),
                a.rule,
                a.device,
                a.summary,
            );
            if a.acknowledged {
                let by = a.ack.as_ref().and_then(|k| k.by.as_deref());
                what.push_str(&format!(" (acknowledged by {})", or_dash(by)));
            }
            (Some(a.updated_at), what.trim_end().to_owned())
        }
        Resource::Commands => {
            let c = Command::deserialize(o).ok()?;
            let mut what = format!(
                "command {} {} {} {}",
                c.id,
                c.device,
                c.name,
                c.state.as_str()
            );
            if let Some(r) = &c.reason {
                what.push_str(&format!(": {r}"));
            } else if let Some(output) = &c.output {
                what.push_str(&format!(" {output}"));
            }
            let time = newest_time(&[
                Some(c.created_at.as_str()),
                c.sent_at.as_deref(),
                c.delivered_at.as_deref(),
                c.finished_at.as_deref(),
            ])
            .map(str::to_owned);
            (time, what)
        }
        Resource::Rejects => {
            let r = Reject::deserialize(o).ok()?;
            let device = r.device.as_deref().unwrap_or("-");
            let what = format!("reject {} {} {device}: {}", r.id, r.kind, r.reason);
            (Some(r.time), what)
        }
    })
}

/// One event for a person; `None` for a BOOKMARK (and an ERROR, which
/// ends the watch instead).
pub fn event_line(resource: Resource, ev: &WatchEvent<Value>, now_ms: i64) -> Option<String> {
    let o = ev.item()?;
    // An object this client cannot read is printed as the hub sent it.
    let (time, what) = item_line(resource, o).unwrap_or_else(|| (None, o.to_string()));
    let time = match time {
        Some(t) => clock(&t).to_owned(),
        None => clock(&rfc3339(now_ms)).to_owned(),
    };
    Some(format!("{time} {} {what}", ev.type_name()))
}

/// RFC 3339 text of a time in ms since the epoch (UTC, ms).
fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// The first line about a command the hub took.
pub fn command_header(cmd: &Command) -> String {
    format!(
        "command {} {} on {}, deadline {}",
        cmd.id, cmd.name, cmd.device, cmd.deadline,
    )
}

/// The steps of `cmd` not printed yet, in lifecycle order, each with its
/// time; `printed` remembers them (a step shows once even when the hub
/// sends the command again after a reconnect).
pub fn command_steps(cmd: &Command, printed: &mut Vec<CommandState>) -> Vec<String> {
    let mut steps: Vec<(CommandState, &str)> = [
        (CommandState::Queued, Some(cmd.created_at.as_str())),
        (CommandState::Sent, cmd.sent_at.as_deref()),
        (CommandState::Delivered, cmd.delivered_at.as_deref()),
    ]
    .into_iter()
    .filter_map(|(s, t)| t.map(|t| (s, t)))
    .collect();
    if cmd.state.is_final() {
        steps.push((cmd.state, cmd.finished_at.as_deref().unwrap_or("")));
    } else if !steps.iter().any(|(s, _)| *s == cmd.state) {
        // A state whose time the hub did not give: show it anyway.
        steps.push((cmd.state, ""));
    }
    let mut lines = Vec::new();
    for (s, t) in steps {
        if printed.contains(&s) {
            continue;
        }
        printed.push(s);
        lines.push(
            format!(
                "{} {}",
                if t.is_empty() { "-" } else { clock(t) },
                s.as_str()
            )
            .trim_start()
            .to_owned(),
        );
    }
    lines
}

/// When `cmd` has ended: the exit code and the lines that close it (the
/// output, pretty, or the reason).
pub fn command_end(cmd: &Command) -> Option<(i32, Vec<String>)> {
    let state = cmd.state;
    if !state.is_final() {
        return None;
    }
    let mut lines = Vec::new();
    if let Some(output) = &cmd.output {
        lines.push(serde_json::to_string_pretty(output).unwrap_or_default());
    }
    if let Some(r) = &cmd.reason {
        lines.push(format!("reason: {r}"));
    } else if state != CommandState::Succeeded {
        lines.push(match state {
            CommandState::Expired => {
                "reason: the device did not take it before its deadline".into()
            }
            CommandState::Timeout => {
                "reason: the device took it but sent no result before its deadline".into()
            }
            _ => format!("reason: {}", state.as_str()),
        });
    }
    Some((
        if state == CommandState::Succeeded {
            0
        } else {
            1
        },
        lines,
    ))
}

/// What `ack` prints.
pub fn ack_text(a: &Alert) -> String {
    let ack = a.ack.as_ref();
    format!(
        "alert {} acknowledged by {} at {}: {} {} {} {}: {}",
        a.id,
        or_dash(ack.and_then(|k| k.by.as_deref())),
        or_dash(ack.and_then(|k| k.at.as_deref())),
        a.state.as_str(),
        a.severity.as_str(),
        a.rule,
        a.device,
        a.summary,
    )
    .trim_end()
    .to_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: &str = "2025-06-01T12:00:10.000Z";

    fn now() -> i64 {
        parse_time(NOW).unwrap()
    }

    /// A typed object of a JSON sample (as the hub writes it).
    fn of<T: serde::de::DeserializeOwned>(v: Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn relative_times() {
        let n = now();
        for (then, want) in [
            (n, "just now"),
            (n - 999, "just now"),
            (n - 3_000, "3s ago"),
            (n - 59_999, "59s ago"),
            (n - 60_000, "1m ago"),
            (n - 3_600_000, "1h ago"),
            (n - 47 * 3_600_000, "47h ago"),
            (n - 3 * 86_400_000, "3d ago"),
            (n + 1_000, "just now"),
            (n + 5_000, "in 5s"),
        ] {
            assert_eq!(ago(n, then), want, "{}", n - then);
        }
    }

    #[test]
    fn tables_pad_columns() {
        let t = table(
            &["A", "LONG"],
            &[vec!["xyz".into(), "1".into()], vec!["é".into(), "".into()]],
        );
        assert_eq!(t, "A    LONG\nxyz  1\né\n");
    }

    #[test]
    fn devices_table_reads_like_a_list() {
        let items: Vec<Device> = of(json!([
            {"id":"demo-freezer","online":true,"lastSeen":"2025-06-01T12:00:07.000Z","firstSeen":null,"agent":"telltale-agent/0.1.0","labels":{"room":"kitchen","site":"demo"}},
            {"id":"c1","online":null,"lastSeen":"2025-06-01T11:55:00.000Z","firstSeen":null,"agent":null,"labels":{}},
            {"id":"gone","online":false,"lastSeen":null,"firstSeen":null,"agent":null,"labels":{}},
        ]));
        assert_eq!(
            devices_table(&items, now()),
            "\
DEVICE        STATE    LAST SEEN  AGENT                 LABELS
demo-freezer  online   3s ago     telltale-agent/0.1.0  room=kitchen,site=demo
c1            unknown  5m ago     -                     -
gone          offline  never      -                     -
"
        );
    }

    #[test]
    fn latest_table_shows_value_unit_and_age() {
        let items: Vec<Latest> = of(json!([
            {"device":"demo-freezer","metric":"temp","unit":"Cel","value":-18.2,"time":"2025-06-01T12:00:01.250Z","readingSeq":3},
            {"device":"demo-freezer","metric":"door","unit":null,"value":false,"time":"2025-06-01T11:00:10.000Z","readingSeq":4},
        ]));
        assert_eq!(
            latest_table(&items, now()),
            "\
DEVICE        METRIC  VALUE      TIME
demo-freezer  temp    -18.2 Cel  2025-06-01T12:00:01.250Z (8s ago)
demo-freezer  door    false      2025-06-01T11:00:10.000Z (1h ago)
"
        );
    }

    #[test]
    fn event_lines() {
        let cases: &[(Resource, Value, Option<&str>)] = &[
            (
                Resource::Readings,
                json!({"type":"ADDED","resourceVersion":"e-1","object":{"seq":1,"device":"demo-freezer","metric":"temp","unit":"Cel","value":-18.2,"time":"2025-06-01T12:00:01.250Z"}}),
                Some("12:00:01.250 ADDED demo-freezer temp -18.2 Cel"),
            ),
            (
                Resource::Readings,
                json!({"type":"ADDED","resourceVersion":"e-2","object":{"seq":2,"device":"d","metric":"state","unit":null,"value":"open","time":"2025-06-01T12:00:02.000Z"}}),
                Some("12:00:02.000 ADDED d state open"),
            ),
            (
                Resource::Latest,
                json!({"type":"MODIFIED","resourceVersion":"e-3","object":{"device":"d","metric":"door","unit":null,"value":true,"time":"2025-06-01T12:00:03.000Z","readingSeq":9}}),
                Some("12:00:03.000 MODIFIED d door true"),
            ),
            (
                Resource::Readings,
                json!({"type":"BOOKMARK","resourceVersion":"e-4","object":{"kind":"Bookmark","resourceVersion":"e-4","initialEventsEnd":false}}),
                None,
            ),
            (
                Resource::Alerts,
                json!({"type":"MODIFIED","resourceVersion":"e-5","object":{"id":3,"rule":"freezer-warm","device":"demo-freezer","metric":"temp","state":"firing","severity":"major","summary":"summary","labels":{},"value":-14.2,"threshold":"-15","startedAt":"2025-06-01T12:00:00.000Z","firedAt":"2025-06-01T12:00:01.250Z","resolvedAt":null,"updatedAt":"2025-06-01T12:00:01.250Z","acknowledged":false,"ack":null}}),
                Some("12:00:01.250 MODIFIED alert 3 firing major freezer-warm demo-freezer: summary"),
            ),
            (
                Resource::Alerts,
                json!({"type":"MODIFIED","resourceVersion":"e-6","object":{"id":3,"rule":"r","device":"d","metric":"temp","state":"firing","severity":"minor","summary":"s","labels":{},"value":null,"threshold":"1","startedAt":"2025-06-01T12:00:00.000Z","firedAt":null,"resolvedAt":null,"updatedAt":"2025-06-01T12:00:05.000Z","acknowledged":true,"ack":{"by":"ann","at":"x","note":null}}}),
                Some("12:00:05.000 MODIFIED alert 3 firing minor r d: s (acknowledged by ann)"),
            ),
            (
                Resource::Devices,
                json!({"type":"ADDED","resourceVersion":"e-7","object":{"id":"demo-freezer","online":true,"lastSeen":"2025-06-01T12:00:07.000Z","firstSeen":null,"agent":"telltale-agent/0.1.0","labels":{"room":"kitchen"}}}),
                Some("12:00:07.000 ADDED device demo-freezer online telltale-agent/0.1.0 room=kitchen"),
            ),
            (
                Resource::Commands,
                json!({"type":"MODIFIED","resourceVersion":"e-8","object":{"id":7,"device":"d","name":"ping","params":{},"state":"succeeded","createdAt":"2025-06-01T12:00:01.000Z","deadline":"2025-06-01T12:00:31.000Z","sentAt":"2025-06-01T12:00:01.100Z","deliveredAt":"2025-06-01T12:00:01.200Z","finishedAt":"2025-06-01T12:00:01.300Z","output":{"pong":true},"reason":null}}),
                Some("12:00:01.300 MODIFIED command 7 d ping succeeded {\"pong\":true}"),
            ),
            (
                Resource::Commands,
                json!({"type":"MODIFIED","resourceVersion":"e-9","object":{"id":8,"device":"d","name":"x","params":{},"state":"expired","createdAt":"2025-06-01T12:00:01.000Z","deadline":"2025-06-01T12:00:31.000Z","sentAt":null,"deliveredAt":null,"finishedAt":"2025-06-01T12:00:31.000Z","output":null,"reason":"deadline passed"}}),
                Some("12:00:31.000 MODIFIED command 8 d x expired: deadline passed"),
            ),
            (
                Resource::Rejects,
                json!({"type":"ADDED","resourceVersion":"e-11","object":{"id":4,"time":"2025-06-01T12:00:11.000Z","topic":"telltale/v1/devices/d/telemetry","device":"d","kind":"malformed_json","reason":"not json","size":1}}),
                Some("12:00:11.000 ADDED reject 4 malformed_json d: not json"),
            ),
            (
                // An object this client cannot read: as the hub sent it.
                Resource::Devices,
                json!({"type":"MODIFIED","resourceVersion":"e-10","object":{"name":"x"}}),
                Some("12:00:10.000 MODIFIED {\"name\":\"x\"}"),
            ),
        ];
        for (resource, ev, want) in cases {
            let typed: WatchEvent<Value> = of(ev.clone());
            assert_eq!(
                event_line(*resource, &typed, now()).as_deref(),
                *want,
                "{ev}"
            );
        }
    }

    #[test]
    fn problems_name_what_is_wrong() {
        for (p, want) in [
            (
                json!({"detail":"expected a number at 7","code":"bad_filter","param":"filter","position":7}),
                "expected a number at 7 (parameter filter, at byte 7)",
            ),
            (
                json!({"detail":"timeoutSeconds must be from 1 to 86400","field":"timeoutSeconds"}),
                "timeoutSeconds must be from 1 to 86400 (field timeoutSeconds)",
            ),
            (
                json!({"detail":"no device \"nosuch\": the hub has not heard from it"}),
                "no device \"nosuch\": the hub has not heard from it",
            ),
            (json!({"title":"Not Found"}), "Not Found"),
            (json!({}), "the hub refused the request"),
        ] {
            assert_eq!(problem_text(&of(p)), want);
        }
    }

    /// A command as the hub writes it, with `fields` over a queued one.
    fn command(fields: Value) -> Command {
        let mut c = json!({"id":7,"device":"d","name":"ping","params":{},"state":"queued","createdAt":"2025-06-01T12:00:01.000Z","deadline":"2025-06-01T12:00:31.000Z","sentAt":null,"deliveredAt":null,"finishedAt":null,"output":null,"reason":null});
        for (k, v) in fields.as_object().unwrap() {
            c[k] = v.clone();
        }
        of(c)
    }

    #[test]
    fn command_steps_print_once_in_order() {
        let mut printed = Vec::new();
        let queued = command(json!({}));
        assert_eq!(
            command_steps(&queued, &mut printed),
            ["12:00:01.000 queued"]
        );
        assert_eq!(command_end(&queued), None);
        // Sent and delivered arrive together (after a reconnect, say).
        let delivered = command(
            json!({"state":"delivered","sentAt":"2025-06-01T12:00:01.100Z","deliveredAt":"2025-06-01T12:00:01.200Z"}),
        );
        assert_eq!(
            command_steps(&delivered, &mut printed),
            ["12:00:01.100 sent", "12:00:01.200 delivered"]
        );
        assert!(command_steps(&delivered, &mut printed).is_empty());
        let done = command(
            json!({"state":"succeeded","sentAt":"2025-06-01T12:00:01.100Z","deliveredAt":"2025-06-01T12:00:01.200Z","finishedAt":"2025-06-01T12:00:01.300Z","output":{"pong":true}}),
        );
        assert_eq!(
            command_steps(&done, &mut printed),
            ["12:00:01.300 succeeded"]
        );
        assert_eq!(
            command_end(&done),
            Some((0, vec!["{\n  \"pong\": true\n}".to_owned()]))
        );
        assert_eq!(
            command_header(&done),
            "command 7 ping on d, deadline 2025-06-01T12:00:31.000Z"
        );
    }

    #[test]
    fn command_ends() {
        for (state, output, reason, want) in [
            (
                "failed",
                json!(null),
                json!("no such command"),
                (1, vec!["reason: no such command"]),
            ),
            (
                "expired",
                json!(null),
                json!(null),
                (
                    1,
                    vec!["reason: the device did not take it before its deadline"],
                ),
            ),
            (
                "timeout",
                json!(null),
                json!("no result"),
                (1, vec!["reason: no result"]),
            ),
            ("succeeded", json!(null), json!(null), (0, vec![])),
            (
                "failed",
                json!({"code":3}),
                json!("bad"),
                (1, vec!["{\n  \"code\": 3\n}", "reason: bad"]),
            ),
        ] {
            let cmd = command(json!({"state": state, "output": output, "reason": reason}));
            let want = (
                want.0,
                want.1.into_iter().map(str::to_owned).collect::<Vec<_>>(),
            );
            assert_eq!(command_end(&cmd), Some(want), "{state}");
        }
    }

    #[test]
    fn ack_line() {
        let a: Alert = of(
            json!({"id":3,"rule":"freezer-warm","device":"demo-freezer","metric":"temp","state":"firing","severity":"major","summary":"too warm","labels":{},"value":-14.2,"threshold":"-15","startedAt":"2025-06-01T12:00:00.000Z","firedAt":"2025-06-01T12:00:01.000Z","resolvedAt":null,"updatedAt":"2025-06-01T12:00:01.250Z","acknowledged":true,"ack":{"by":"ann","at":"2025-06-01T12:00:01.250Z","note":null}}),
        );
        assert_eq!(
            ack_text(&a),
            "alert 3 acknowledged by ann at 2025-06-01T12:00:01.250Z: firing major freezer-warm demo-freezer: too warm"
        );
    }
}
