//! Operator commands (`[[command]]` in the config): a program with a fixed
//! argument template, run directly (never through a shell) with checked
//! parameters, stdin closed, output captured up to a cap, and killed at its
//! timeout.

use super::params::{check_all, Param};
use super::template::{valid_param_name, Template};
use super::{Failure, Outcome, BUILTINS};
use crate::config::CommandConfig;
use crate::sources::command::read_capped_into;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// Longest `timeout_secs`: a day.
pub const MAX_TIMEOUT_SECS: u64 = 86_400;
/// Largest `max_output_bytes`: keeps a result (JSON-escaped) well under
/// the 256 KiB packet limit.
pub const MAX_OUTPUT_BYTES: usize = 32 * 1024;
/// Appended to a stream that was cut.
pub const TRUNCATED: &str = "...[truncated]";

/// A `[[command]]`, checked and compiled.
#[derive(Debug, Clone)]
pub struct Operator {
    /// Its name.
    pub name: String,
    /// The program (an absolute path).
    program: String,
    /// One template per argument.
    args: Vec<Template>,
    /// Declared parameters.
    params: BTreeMap<String, Param>,
    /// Kill after this many seconds.
    timeout_secs: u64,
    /// Most bytes of stdout and stderr kept, together.
    max_output: usize,
}

/// Whether `name` can name a command: 1-64 characters of `a-z 0-9 _ -`,
/// starting with a letter.
pub fn valid_command_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-'))
}

impl Operator {
    /// Checks a `[[command]]` table; the error names the key at fault.
    pub fn compile(cfg: &CommandConfig) -> Result<Operator, String> {
        if !valid_command_name(&cfg.name) {
            return Err(format!(
                "name {:?} must be 1-64 characters of a-z 0-9 _ - starting with a letter",
                cfg.name
            ));
        }
        if BUILTINS.contains(&cfg.name.as_str()) {
            return Err(format!("name {:?} is a built-in command", cfg.name));
        }
        if !Path::new(&cfg.program).is_absolute() {
            return Err(format!(
                "program {:?} must be an absolute path (it is run directly, without PATH lookup or a shell)",
                cfg.program
            ));
        }
        if cfg.program.contains('{') {
            return Err("program must not contain placeholders (only args may)".to_owned());
        }
        if !(1..=MAX_TIMEOUT_SECS).contains(&cfg.timeout_secs) {
            return Err(format!("timeout_secs must be 1..={MAX_TIMEOUT_SECS}"));
        }
        if cfg.max_output_bytes > MAX_OUTPUT_BYTES {
            return Err(format!("max_output_bytes must be 0..={MAX_OUTPUT_BYTES}"));
        }
        let mut params = BTreeMap::new();
        for (name, spec) in &cfg.params {
            if !valid_param_name(name) {
                return Err(format!(
                    "params.{name}: a parameter name is 1-64 characters of A-Z a-z 0-9 _, not starting with a digit"
                ));
            }
            let p = Param::compile(spec).map_err(|e| format!("params.{name}: {e}"))?;
            params.insert(name.clone(), p);
        }
        let mut args = Vec::with_capacity(cfg.args.len());
        let mut used = BTreeSet::new();
        for (i, arg) in cfg.args.iter().enumerate() {
            let t = Template::parse(arg).map_err(|e| format!("args[{i}] {arg:?}: {e}"))?;
            for p in t.params() {
                if !params.contains_key(p) {
                    return Err(format!(
                        "args[{i}] {arg:?}: placeholder {{{p}}} names no param in [command.params] (declared: {})",
                        list(params.keys())
                    ));
                }
                used.insert(p.to_owned());
            }
            args.push(t);
        }
        if let Some(unused) = params.keys().find(|p| !used.contains(*p)) {
            return Err(format!(
                "params.{unused}: declared but no arg uses {{{unused}}}"
            ));
        }
        Ok(Operator {
            name: cfg.name.clone(),
            program: cfg.program.clone(),
            args,
            params,
            timeout_secs: cfg.timeout_secs,
            max_output: cfg.max_output_bytes,
        })
    }

    /// Checks the params a command brought and renders the arguments.
    pub fn prepare(&self, given: &Map<String, Value>) -> Result<Vec<String>, String> {
        let values = check_all(&self.params, given)?;
        self.args
            .iter()
            .map(|t| t.render(&values))
            .collect::<Result<_, _>>()
            // compile() made sure every placeholder is declared and check_all
            // that every declared param has a value.
            .map_err(|p| format!("param {p:?} has no value"))
    }

    /// Runs the program with `args` and reports how it went.
    pub async fn run(&self, args: &[String]) -> Outcome {
        let mut child = tokio::process::Command::new(&self.program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Failure::new(format!("cannot start {}: {e}", self.program)))?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(Failure::new("no output pipes"));
        };
        // Each stream is read up to the whole cap; the cap is shared out after.
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (mut out_more, mut err_more) = (false, false);
        let work = async {
            let (o, e) = tokio::join!(
                read_capped_into(stdout, self.max_output, &mut out),
                read_capped_into(stderr, self.max_output, &mut err)
            );
            // A read error ends that stream early; what was read still counts.
            out_more = o.unwrap_or(false);
            err_more = e.unwrap_or(false);
            child.wait().await
        };
        let timeout = Duration::from_secs(self.timeout_secs);
        let finished = tokio::time::timeout(timeout, work).await;
        let status = match finished {
            Ok(status) => Some(
                status.map_err(|e| Failure::new(format!("waiting for the program failed: {e}")))?,
            ),
            Err(_) => {
                // kill_on_drop would too; this also reaps it.
                let _ = child.kill().await;
                None
            }
        };
        let (stdout, stderr, truncated) = cap_output(out, out_more, err, err_more, self.max_output);
        let exit_code = status.and_then(|s| s.code());
        let output = json!({
            "exit_code": exit_code,
            "stdout": stdout,
            "stderr": stderr,
            "truncated": truncated,
        });
        let reason = match status {
            None => format!("timed out after {} s", self.timeout_secs),
            Some(s) if s.success() => return Ok(output),
            Some(s) => match (s.code(), s.signal()) {
                (Some(code), _) => format!("exit code {code}"),
                (None, Some(sig)) => format!("killed by signal {sig}"),
                (None, None) => format!("ended with {s}"),
            },
        };
        Err(Failure {
            reason,
            output: Some(output),
        })
    }
}

fn list<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// Shares `cap` bytes between stdout and stderr (each gets at least half
/// if it needs it, the rest goes to the other), cuts what is over, and
/// marks each cut stream. Returns both texts and whether anything was cut.
pub fn cap_output(
    mut out: Vec<u8>,
    out_more: bool,
    mut err: Vec<u8>,
    err_more: bool,
    cap: usize,
) -> (String, String, bool) {
    let (a, b) = (out.len(), err.len());
    let (keep_a, keep_b) = if a + b <= cap {
        (a, b)
    } else if a <= cap / 2 {
        (a, cap - a)
    } else if b <= cap - cap / 2 {
        (cap - b, b)
    } else {
        (cap / 2, cap - cap / 2)
    };
    let cut_a = out_more || keep_a < a;
    let cut_b = err_more || keep_b < b;
    out.truncate(keep_a);
    err.truncate(keep_b);
    let text = |bytes: &[u8], cut: bool| {
        // A character cut in two becomes U+FFFD.
        let mut s = String::from_utf8_lossy(bytes).into_owned();
        if cut {
            s.push_str(TRUNCATED);
        }
        s
    };
    (text(&out, cut_a), text(&err, cut_b), cut_a || cut_b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ParamSpec;

    fn cfg(name: &str, program: &str, args: &[&str]) -> CommandConfig {
        CommandConfig {
            name: name.to_owned(),
            program: program.to_owned(),
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            timeout_secs: 10,
            max_output_bytes: 4096,
            params: BTreeMap::new(),
        }
    }

    fn with_unit(mut c: CommandConfig) -> CommandConfig {
        c.params.insert(
            "unit".to_owned(),
            ParamSpec::String {
                pattern: Some("[a-z0-9@._-]{1,64}".to_owned()),
            },
        );
        c
    }

    #[test]
    fn compile_errors_name_the_field() {
        let cases: Vec<(CommandConfig, &str)> = vec![
            (cfg("Restart", "/bin/true", &[]), "name \"Restart\""),
            (cfg("", "/bin/true", &[]), "name \"\""),
            (cfg("ping", "/bin/true", &[]), "name \"ping\" is a built-in command"),
            (cfg("a", "true", &[]), "program \"true\" must be an absolute path"),
            (cfg("a", "./x", &[]), "program \"./x\" must be an absolute path"),
            (cfg("a", "/bin/{x}", &[]), "program must not contain placeholders"),
            (
                cfg("a", "/bin/echo", &["{unit}"]),
                "args[0] \"{unit}\": placeholder {unit} names no param in [command.params] (declared: none)",
            ),
            (
                with_unit(cfg("a", "/bin/echo", &["x", "{uint}"])),
                "args[1] \"{uint}\": placeholder {uint} names no param in [command.params] (declared: unit)",
            ),
            (with_unit(cfg("a", "/bin/echo", &["{unit"])), "args[0] \"{unit\": unclosed {"),
            (
                with_unit(cfg("a", "/bin/echo", &["x"])),
                "params.unit: declared but no arg uses {unit}",
            ),
            (
                CommandConfig {
                    timeout_secs: 0,
                    ..cfg("a", "/bin/true", &[])
                },
                "timeout_secs must be 1..=86400",
            ),
            (
                CommandConfig {
                    max_output_bytes: 40_000,
                    ..cfg("a", "/bin/true", &[])
                },
                "max_output_bytes must be 0..=32768",
            ),
        ];
        for (c, want) in cases {
            match Operator::compile(&c) {
                Ok(_) => panic!("{c:?} compiled"),
                Err(e) => assert!(e.starts_with(want), "{c:?}: {e}"),
            }
        }
        let mut c = with_unit(cfg(
            "restart_modem",
            "/usr/bin/systemctl",
            &["restart", "{unit}"],
        ));
        c.params.insert("1x".to_owned(), ParamSpec::Boolean {});
        let e = Operator::compile(&c).expect_err("bad param name");
        assert!(e.starts_with("params.1x: a parameter name"), "{e}");
    }

    #[test]
    fn prepare_renders_checked_params() {
        let op = Operator::compile(&with_unit(cfg(
            "restart_modem",
            "/usr/bin/systemctl",
            &["restart", "{unit}", "--no-block"],
        )))
        .expect("compile");
        let obj = |v: serde_json::Value| v.as_object().cloned().expect("object");
        assert_eq!(
            op.prepare(&obj(json!({"unit": "modem@1.service"}))),
            Ok(vec![
                "restart".to_owned(),
                "modem@1.service".to_owned(),
                "--no-block".to_owned()
            ])
        );
        assert_eq!(
            op.prepare(&obj(json!({}))),
            Err("missing param \"unit\"".to_owned())
        );
        assert_eq!(
            op.prepare(&obj(json!({"unit": "a b"}))),
            Err("param \"unit\": \"a b\" does not match [a-z0-9@._-]{1,64}".to_owned())
        );
    }

    #[test]
    fn cap_output_table() {
        let v = |n: usize| vec![b'x'; n];
        let m = TRUNCATED.len();
        // (stdout len, stdout had more, stderr len, stderr had more, cap)
        type Input = (usize, bool, usize, bool, usize);
        // → (kept stdout, kept stderr, truncated), markers included
        type Want = (usize, usize, bool);
        let cases: &[(Input, Want)] = &[
            ((3, false, 2, false, 10), (3, 2, false)),
            ((10, false, 0, false, 10), (10, 0, false)),
            ((10, true, 0, false, 10), (10 + m, 0, true)),
            ((10, false, 10, false, 10), (5 + m, 5 + m, true)),
            ((2, false, 10, false, 10), (2, 8 + m, true)),
            ((10, false, 3, false, 10), (7 + m, 3, true)),
            ((10, false, 10, false, 0), (m, m, true)),
            ((0, false, 0, false, 0), (0, 0, false)),
            ((3, false, 10, false, 11), (3, 8 + m, true)),
        ];
        for &((a, am, b, bm, cap), (ka, kb, t)) in cases {
            let (o, e, truncated) = cap_output(v(a), am, v(b), bm, cap);
            assert_eq!((o.len(), e.len(), truncated), (ka, kb, t), "{a} {b} {cap}");
        }
        let (o, _, _) = cap_output("aé".as_bytes().to_vec(), false, Vec::new(), false, 2);
        assert_eq!(o, format!("a\u{fffd}{TRUNCATED}"));
    }

    #[tokio::test]
    async fn runs_and_reports() {
        let op = |program: &str, args: &[&str], timeout_secs: u64, max: usize| {
            Operator::compile(&CommandConfig {
                timeout_secs,
                max_output_bytes: max,
                ..cfg("t", program, args)
            })
            .expect("compile")
        };
        let argv = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();

        let echo = op("/bin/echo", &[], 5, 4096);
        let out = echo.run(&argv(&["hello", "$HOME"])).await.expect("echo");
        assert_eq!(
            out,
            json!({"exit_code": 0, "stdout": "hello $HOME\n", "stderr": "", "truncated": false})
        );

        let sh = op("/bin/sh", &[], 5, 4096);
        let f = sh
            .run(&argv(&["-c", "echo out; echo err >&2; exit 3"]))
            .await
            .expect_err("exit 3");
        assert_eq!(f.reason, "exit code 3");
        assert_eq!(
            f.output,
            Some(json!({"exit_code": 3, "stdout": "out\n", "stderr": "err\n", "truncated": false}))
        );

        let started = std::time::Instant::now();
        let slow = op("/bin/sh", &[], 1, 4096);
        let f = slow
            .run(&argv(&["-c", "echo started; exec sleep 30"]))
            .await
            .expect_err("timeout");
        assert_eq!(f.reason, "timed out after 1 s");
        assert!(started.elapsed() < Duration::from_secs(10));
        let o = f.output.expect("partial output");
        assert_eq!(
            (o["exit_code"].clone(), o["stdout"].clone()),
            (json!(null), json!("started\n"))
        );

        let chatty = op("/usr/bin/head", &[], 5, 100);
        let out = chatty
            .run(&argv(&["-c", "100000", "/dev/zero"]))
            .await
            .expect("head");
        assert_eq!(out["truncated"], json!(true));
        let stdout = out["stdout"].as_str().expect("text");
        assert!(stdout.ends_with(TRUNCATED) && stdout.len() == 100 + TRUNCATED.len());

        let missing = op("/nonexistent/program", &[], 5, 100);
        let f = missing.run(&[]).await.expect_err("missing");
        assert!(
            f.reason.starts_with("cannot start /nonexistent/program: "),
            "{}",
            f.reason
        );
    }
}
