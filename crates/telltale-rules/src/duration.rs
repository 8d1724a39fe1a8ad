//! Durations as rules write them: `"500ms"`, `"30s"`, `"10m"`, `"1h30m"`,
//! `"2d"`, or `"0"`. Written here rather than taken from a crate because the
//! grammar is this small; a rule keeps the text as written, so it
//! serializes back to the same form.

/// Milliseconds per unit, longest suffix first so `ms` is not read as `m`.
const UNITS: [(&str, i64); 5] = [
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

/// Parses a duration into milliseconds: one or more `<digits><unit>` parts
/// (units `ms`, `s`, `m`, `h`, `d`, summed), or a bare `"0"`. No spaces, no
/// signs, no fractions.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let bad = || format!("bad duration {text:?} (like \"500ms\", \"30s\", \"10m\", \"1h30m\")");
    if text == "0" {
        return Ok(0);
    }
    let mut rest = text;
    let mut total: i64 = 0;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let (suffix, unit) = UNITS
            .iter()
            .find(|(s, _)| rest.starts_with(s))
            .ok_or_else(bad)?;
        rest = &rest[suffix.len()..];
        total = n
            .checked_mul(*unit)
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(bad)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let cases: &[(&str, Option<i64>)] = &[
            ("0", Some(0)),
            ("0s", Some(0)),
            ("500ms", Some(500)),
            ("30s", Some(30_000)),
            ("10m", Some(600_000)),
            ("1h", Some(3_600_000)),
            ("1h30m", Some(5_400_000)),
            ("2d", Some(172_800_000)),
            ("1m500ms", Some(60_500)),
            ("90s", Some(90_000)),
            ("", None),
            ("10", None),
            ("10 minutes", None),
            ("10minutes", None),
            ("1.5h", None),
            ("-5s", None),
            ("h", None),
            ("5x", None),
            (" 5s", None),
            ("5s ", None),
            ("99999999999999999999s", None),
            ("9223372036854775807d", None),
        ];
        for &(text, want) in cases {
            assert_eq!(parse_duration(text).ok(), want, "{text:?}");
        }
        assert_eq!(
            parse_duration("10 minutes").err().as_deref(),
            Some("bad duration \"10 minutes\" (like \"500ms\", \"30s\", \"10m\", \"1h30m\")")
        );
    }
}
