//! The command source: runs a program (directly, never through a shell)
//! every interval, with a timeout and capped output, and turns its stdout
//! into readings. The output format is parsed by the pure [`parse_output`].

use super::{LogLimiter, Output, Schedule, COMPLAINT_PERIOD};
use crate::config::{valid_metric, CommandSource};
use crate::reading::{now_secs, Reading, Value};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

/// Most stdout bytes parsed; the rest is read and thrown away.
pub const MAX_OUTPUT: usize = 64 * 1024;
/// Most stderr bytes kept for the log.
const MAX_STDERR: usize = 1024;

/// One good output line: a metric and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// The source's metric for a bare number, else the line's own name.
    pub metric: String,
    /// The value (finite).
    pub value: f64,
}

fn finite(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Parses a command's stdout. Each non-empty line is one of:
///
/// - a number: a reading of `metric`;
/// - `name value` or `name=value`: a reading of metric `name` (SenML name
///   rules, at most 64 characters);
/// - a comment starting with `#`: ignored.
///
/// Anything else yields an error for that line (1-based line number and
/// why); the other lines still count.
pub fn parse_output(text: &str, metric: &str) -> Vec<Result<Line, String>> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let n = i + 1;
        if let Some(value) = finite(line) {
            out.push(Ok(Line {
                metric: metric.to_owned(),
                value,
            }));
            continue;
        }
        let split = match line.split_once('=') {
            Some(pair) => Some(pair),
            None => line.split_once(char::is_whitespace),
        };
        let Some((name, value)) = split.map(|(a, b)| (a.trim(), b.trim())) else {
            out.push(Err(format!(
                "line {n}: not a number, `name value` or `name=value`"
            )));
            continue;
        };
        if !valid_metric(name) {
            out.push(Err(format!(
                "line {n}: {name:?} is not a valid metric name"
            )));
            continue;
        }
        match finite(value) {
            Some(value) => out.push(Ok(Line {
                metric: name.to_owned(),
                value,
            })),
            None => out.push(Err(format!("line {n}: {value:?} is not a finite number"))),
        }
    }
    out
}

/// What one run of the program gave.
#[derive(Debug)]
struct RunOutput {
    stdout: String,
    truncated: bool,
}

/// Reads `r` to its end, keeping the first `cap` bytes; `true` if more came.
async fn read_capped<R: AsyncRead + Unpin>(r: R, cap: usize) -> std::io::Result<(Vec<u8>, bool)> {
    let mut kept = Vec::new();
    let more = read_capped_into(r, cap, &mut kept).await?;
    Ok((kept, more))
}

/// Reads `r` to its end, appending to `kept` until it holds `cap` bytes;
/// `true` if more came. What was kept stays in `kept` if the future is
/// dropped half way (a timeout).
pub(crate) async fn read_capped_into<R: AsyncRead + Unpin>(
    mut r: R,
    cap: usize,
    kept: &mut Vec<u8>,
) -> std::io::Result<bool> {
    let mut chunk = [0u8; 8192];
    let mut more = false;
    loop {
        let n = r.read(&mut chunk).await?;
        if n == 0 {
            return Ok(more);
        }
        let room = cap.saturating_sub(kept.len());
        kept.extend_from_slice(&chunk[..n.min(room)]);
        more |= n > room;
    }
}

async fn run_once(cfg: &CommandSource) -> Result<RunOutput, String> {
    let mut child = Command::new(&cfg.program)
        .args(&cfg.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", cfg.program))?;
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let stderr = child.stderr.take().ok_or("no stderr pipe")?;
    let timeout = Duration::from_millis(cfg.timeout_ms);
    let work = async {
        let (out, err) = tokio::join!(
            read_capped(stdout, MAX_OUTPUT),
            read_capped(stderr, MAX_STDERR)
        );
        let status = child.wait().await;
        (out, err, status)
    };
    let finished = tokio::time::timeout(timeout, work).await;
    let (out, err, status) = match finished {
        Ok(r) => r,
        Err(_) => {
            // kill_on_drop would do it too; this also reaps the child.
            let _ = child.kill().await;
            return Err(format!(
                "timed out after {} ms and was killed",
                cfg.timeout_ms
            ));
        }
    };
    let status = status.map_err(|e| format!("wait failed: {e}"))?;
    let (stdout, truncated) = out.map_err(|e| format!("reading stdout failed: {e}"))?;
    if !status.success() {
        let stderr = err
            .map(|(b, _)| String::from_utf8_lossy(&b).trim().to_owned())
            .unwrap_or_default();
        return Err(format!("exited with {status}; stderr: {stderr:?}"));
    }
    let mut stdout = String::from_utf8_lossy(&stdout).into_owned();
    if truncated {
        // The last line may be cut in the middle: drop it.
        let keep = stdout.rfind('\n').map_or(0, |i| i + 1);
        stdout.truncate(keep);
    }
    Ok(RunOutput { stdout, truncated })
}

/// Runs a command source until cancelled.
pub async fn run(cfg: CommandSource, out: Output, mut schedule: Schedule) {
    let mut run_complaints = LogLimiter::new(COMPLAINT_PERIOD);
    let mut line_complaints = LogLimiter::new(COMPLAINT_PERIOD);
    while let Some(wake) = out.next(&mut schedule).await {
        let result = tokio::select! {
            biased;
            _ = out.cancel().cancelled() => break,
            r = run_once(&cfg) => r,
        };
        let output = match result {
            Ok(o) => o,
            Err(e) => {
                if let Some(held) = run_complaints.allow(Instant::now()) {
                    tracing::warn!(
                        metric = cfg.metric,
                        error = e,
                        suppressed = held,
                        "command source failed; run skipped"
                    );
                }
                wake.answer(Err(e));
                continue;
            }
        };
        if output.truncated {
            if let Some(held) = run_complaints.allow(Instant::now()) {
                tracing::warn!(
                    metric = cfg.metric,
                    suppressed = held,
                    "command output over {MAX_OUTPUT} bytes; the rest was ignored"
                );
            }
        }
        let time = now_secs();
        let mut read = Vec::new();
        let mut first_error = None;
        for line in parse_output(&output.stdout, &cfg.metric) {
            match line {
                Ok(l) => {
                    let unit = if l.metric == cfg.metric {
                        cfg.unit.clone()
                    } else {
                        None
                    };
                    let reading = Reading {
                        name: l.metric,
                        unit,
                        value: Value::Num(l.value),
                        time,
                    };
                    if !out.send(reading.clone()).await {
                        return;
                    }
                    read.push(reading);
                }
                Err(e) => {
                    if let Some(held) = line_complaints.allow(Instant::now()) {
                        tracing::warn!(
                            metric = cfg.metric,
                            error = e,
                            suppressed = held,
                            "bad command output line skipped"
                        );
                    }
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if read.is_empty() => wake.answer(Err(e)),
            None if read.is_empty() => wake.answer(Err("the program printed no reading".into())),
            _ => wake.answer(Ok(read)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(metric: &str, value: f64) -> Result<Line, String> {
        Ok(Line {
            metric: metric.to_owned(),
            value,
        })
    }

    #[test]
    fn parse_output_table() {
        let cases: &[(&str, Vec<Result<Line, String>>)] = &[
            ("", vec![]),
            ("\n  \n", vec![]),
            ("42\n", vec![ok("m", 42.0)]),
            ("  -1.5e2  ", vec![ok("m", -150.0)]),
            ("cpu 12.5\n", vec![ok("cpu", 12.5)]),
            ("cpu\t12.5", vec![ok("cpu", 12.5)]),
            ("mem=40", vec![ok("mem", 40.0)]),
            ("mem = 40", vec![ok("mem", 40.0)]),
            ("disk/root:used 7", vec![ok("disk/root:used", 7.0)]),
            ("# comment\n1\n", vec![ok("m", 1.0)]),
            (
                "a 1\r\nb=2\r\n3\r\n",
                vec![ok("a", 1.0), ok("b", 2.0), ok("m", 3.0)],
            ),
            (
                "hello",
                vec![Err(
                    "line 1: not a number, `name value` or `name=value`".into()
                )],
            ),
            (
                "x nan",
                vec![Err("line 1: \"nan\" is not a finite number".into())],
            ),
            (
                "inf",
                vec![Err(
                    "line 1: not a number, `name value` or `name=value`".into()
                )],
            ),
            (
                "x 1 2",
                vec![Err("line 1: \"1 2\" is not a finite number".into())],
            ),
            (
                "_x 1",
                vec![Err("line 1: \"_x\" is not a valid metric name".into())],
            ),
            (
                "=1",
                vec![Err("line 1: \"\" is not a valid metric name".into())],
            ),
            (
                "1\nbad line here\n2",
                vec![
                    ok("m", 1.0),
                    Err("line 2: \"line here\" is not a finite number".into()),
                    ok("m", 2.0),
                ],
            ),
        ];
        for (text, want) in cases {
            assert_eq!(&parse_output(text, "m"), want, "{text:?}");
        }
        let long = format!("{} 1", "n".repeat(65));
        assert!(parse_output(&long, "m")[0].is_err());
    }

    fn cmd(program: &str, args: &[&str], timeout_ms: u64) -> CommandSource {
        CommandSource {
            name: None,
            metric: "m".into(),
            unit: Some("%".into()),
            interval_ms: 10,
            program: program.into(),
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            timeout_ms,
        }
    }

    #[tokio::test]
    async fn runs_without_a_shell_and_kills_on_timeout() {
        let out = run_once(&cmd("echo", &["7", "$HOME"], 5000))
            .await
            .expect("echo");
        assert_eq!(out.stdout, "7 $HOME\n");
        let started = Instant::now();
        let e = run_once(&cmd("sleep", &["10"], 100))
            .await
            .expect_err("timeout");
        assert!(e.contains("timed out"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let e = run_once(&cmd("false", &[], 5000)).await.expect_err("false");
        assert!(e.contains("exited"), "{e}");
        let e = run_once(&cmd("/nonexistent/program", &[], 5000))
            .await
            .expect_err("missing");
        assert!(e.contains("cannot start"), "{e}");
    }

    #[tokio::test]
    async fn caps_output() {
        let out = run_once(&cmd("head", &["-c", "200000", "/dev/zero"], 5000))
            .await
            .expect("head");
        assert!(out.truncated);
        assert!(out.stdout.len() <= MAX_OUTPUT);
    }

    #[tokio::test]
    async fn readings_from_output() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let cancel = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(run(
            cmd("printf", &["5\\ncpu 3\\nbogus\\n"], 5000),
            Output::new(tx, cancel.clone()),
            Schedule::fixed(Duration::from_millis(10)),
        ));
        let a = rx.recv().await.expect("first");
        let b = rx.recv().await.expect("second");
        assert_eq!(
            (a.name.as_str(), a.unit.as_deref(), a.value),
            ("m", Some("%"), Value::Num(5.0))
        );
        assert_eq!(
            (b.name.as_str(), b.unit.as_deref(), b.value),
            ("cpu", None, Value::Num(3.0))
        );
        cancel.cancel();
        task.await.expect("join");
    }
}
