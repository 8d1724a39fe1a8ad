//! The file source: reads the first number in a file (a sysfs temperature,
//! a 1-wire sensor) every interval, scaled. Failures are logged at most once
//! a minute and the reading is skipped.

use super::{LogLimiter, Output, Schedule, COMPLAINT_PERIOD};
use crate::config::FileSource;
use crate::reading::{now_secs, Reading, Value};
use std::path::Path;
use std::time::Instant;
use tokio::io::AsyncReadExt;

/// Most bytes read from the file.
pub const MAX_FILE_BYTES: u64 = 64 * 1024;

/// The first finite number in `text`: an optional sign, digits with an
/// optional fraction and exponent, wherever it starts (`45000`, `t=23125`,
/// `temp: -3.5 C`).
pub fn first_number(text: &str) -> Option<f64> {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let digit_at = |j: usize| b.get(j).is_some_and(u8::is_ascii_digit);
        let starts = c.is_ascii_digit()
            || (c == b'.' && digit_at(i + 1))
            || ((c == b'-' || c == b'+')
                && (digit_at(i + 1) || (b.get(i + 1) == Some(&b'.') && digit_at(i + 2))));
        if starts {
            let mut end = i + 1;
            while end < b.len() && matches!(b[end], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
            {
                end += 1;
            }
            // The longest prefix that parses: `12e` gives 12, `2024-01-02`
            // gives 2024; an overflow such as `1e999` is skipped whole.
            let run_end = end;
            while end > i {
                if let Ok(v) = text[i..end].parse::<f64>() {
                    if v.is_finite() {
                        return Some(v);
                    }
                    break;
                }
                end -= 1;
            }
            i = run_end;
            continue;
        }
        i += 1;
    }
    None
}

async fn read_head(path: &Path) -> std::io::Result<String> {
    let file = tokio::fs::File::open(path).await?;
    let mut buf = Vec::new();
    file.take(MAX_FILE_BYTES).read_to_end(&mut buf).await?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Runs a file source until cancelled.
pub async fn run(cfg: FileSource, out: Output, mut schedule: Schedule) {
    let mut complaints = LogLimiter::new(COMPLAINT_PERIOD);
    while let Some(wake) = out.next(&mut schedule).await {
        let problem = match read_head(&cfg.path).await {
            Ok(text) => match first_number(&text).map(|v| v * cfg.scale) {
                Some(v) if v.is_finite() => {
                    let reading = Reading {
                        name: cfg.metric.clone(),
                        unit: cfg.unit.clone(),
                        value: Value::Num(v),
                        time: now_secs(),
                    };
                    if !out.send(reading.clone()).await {
                        break;
                    }
                    wake.answer(Ok(vec![reading]));
                    continue;
                }
                _ => "no finite number in the file".to_owned(),
            },
            Err(e) => e.to_string(),
        };
        wake.answer(Err(format!("{}: {problem}", cfg.path.display())));
        if let Some(held) = complaints.allow(Instant::now()) {
            tracing::warn!(
                metric = cfg.metric,
                path = %cfg.path.display(),
                error = problem,
                suppressed = held,
                "file source read failed; reading skipped"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_number_table() {
        let cases: &[(&str, Option<f64>)] = &[
            ("45000\n", Some(45000.0)),
            ("  -3.5 C", Some(-3.5)),
            ("temp: +21.25", Some(21.25)),
            (".5", Some(0.5)),
            ("-.5", Some(-0.5)),
            ("1.5e3 x", Some(1500.0)),
            ("12e", Some(12.0)),
            ("t=23125", Some(23125.0)),
            ("2024-01-02", Some(2024.0)),
            ("0.52 0.58 0.59 1/234 5678", Some(0.52)),
            ("a - b . c", None),
            ("nan", None),
            ("inf 7", Some(7.0)),
            ("", None),
            ("1e999", None),
            ("1e999 5", Some(5.0)),
        ];
        for (text, want) in cases {
            assert_eq!(first_number(text), *want, "{text:?}");
        }
    }

    #[tokio::test]
    async fn reads_a_file_and_skips_a_missing_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("temp");
        std::fs::write(&path, "41250\n").expect("write");
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let cancel = tokio_util::sync::CancellationToken::new();
        let cfg = FileSource {
            name: None,
            metric: "cpu/temp".into(),
            unit: Some("Cel".into()),
            interval_ms: 10,
            path: path.clone(),
            scale: 0.001,
        };
        let task = tokio::spawn(run(
            cfg.clone(),
            Output::new(tx.clone(), cancel.clone()),
            Schedule::fixed(std::time::Duration::from_millis(10)),
        ));
        let r = rx.recv().await.expect("reading");
        assert_eq!(r.value, Value::Num(41.25));
        assert_eq!(r.unit.as_deref(), Some("Cel"));
        cancel.cancel();
        task.await.expect("join");

        let cancel = tokio_util::sync::CancellationToken::new();
        let missing = FileSource {
            path: dir.path().join("missing"),
            ..cfg
        };
        let task = tokio::spawn(run(
            missing,
            Output::new(tx, cancel.clone()),
            Schedule::fixed(std::time::Duration::from_millis(10)),
        ));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(rx.try_recv().is_err());
        cancel.cancel();
        task.await.expect("join");
    }
}
