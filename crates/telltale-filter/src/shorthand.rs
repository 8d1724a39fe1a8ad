//! The shorthands `device=`, `metric=`, `severity=` and `state=`: a comma
//! list of names and globs, any of which may match. Each compiles to the
//! expression it abbreviates: `device=a,b,sensor-*` is
//! `device in ("a", "b") or device ~ "sensor-*"`.

use crate::ast::{Cmp, Expr, FieldName, Literal, Op, Test};
use crate::glob::Glob;
use crate::{ErrorKind, FilterError, Param, MAX_LEN, MAX_LIST, SEVERITIES};

/// Compiles the raw value of shorthand `param`, which tests `field`.
///
/// Items are taken as written: no trimming, so `device=a, b` names a device
/// `" b"`. An empty item is an error; a `*` or `?` makes an item a glob.
pub(crate) fn compile(param: Param, field: FieldName, raw: &str) -> Result<Expr, FilterError> {
    if raw.len() > MAX_LEN {
        return Err(FilterError::TooLong { param });
    }
    let err = |position, kind| FilterError::Shorthand {
        param,
        position,
        kind,
    };
    let mut exact = Vec::new();
    let mut terms = Vec::new();
    let mut position = 0;
    for (n, item) in raw.split(',').enumerate() {
        if item.is_empty() {
            return Err(err(position, ErrorKind::EmptyItem));
        }
        if n == MAX_LIST {
            return Err(err(position, ErrorKind::TooManyValues));
        }
        if Glob::has_wildcard(item) {
            let glob = Glob::new(item);
            if field == FieldName::Severity && !SEVERITIES.iter().any(|s| glob.matches(s)) {
                return Err(err(position, ErrorKind::SeverityMatchesNone(item.into())));
            }
            terms.push(Expr::Cmp(Cmp {
                field: field.clone(),
                test: Test::Glob(glob),
            }));
        } else {
            if field == FieldName::Severity && !SEVERITIES.contains(&item) {
                return Err(err(position, ErrorKind::UnknownSeverity(item.into())));
            }
            exact.push(Literal::Str(item.into()));
        }
        position += item.len() + 1;
    }
    let test = match exact.len() {
        0 => None,
        1 => exact.pop().map(|lit| Test::Op(Op::Eq, lit)),
        _ => Some(Test::In(exact)),
    };
    if let Some(test) = test {
        terms.insert(0, Expr::Cmp(Cmp { field, test }));
    }
    Ok(Expr::group(terms, Expr::Or))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(param: Param, raw: &str) -> Result<String, String> {
        let field = match param {
            Param::Device => FieldName::Device,
            Param::Metric => FieldName::Metric,
            Param::Severity => FieldName::Severity,
            _ => FieldName::State,
        };
        compile(param, field, raw)
            .map(|e| e.to_string())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn table() {
        use Param::*;
        let ok: &[(Param, &str, &str)] = &[
            (Device, "a", r#"device == "a""#),
            (Device, "a,b", r#"device in ("a", "b")"#),
            (
                Device,
                "a,b,sensor-*",
                r#"device in ("a", "b") or device ~ "sensor-*""#,
            ),
            (Device, "sensor-?", r#"device ~ "sensor-?""#),
            (Device, "x*,a", r#"device == "a" or device ~ "x*""#),
            (Device, " a", r#"device == " a""#),
            (Device, "it's \"q\"", r#"device == "it's \"q\"""#),
            (Device, "café-☃", r#"device == "café-☃""#),
            (Metric, "temp,hum", r#"metric in ("temp", "hum")"#),
            (Severity, "major", r#"severity == "major""#),
            (
                Severity,
                "critical,major",
                r#"severity in ("critical", "major")"#,
            ),
            (Severity, "m*", r#"severity ~ "m*""#),
            (State, "firing", r#"state == "firing""#),
            (State, "anything-goes", r#"state == "anything-goes""#),
        ];
        for &(param, raw, want) in ok {
            assert_eq!(show(param, raw).as_deref(), Ok(want), "{param}={raw}");
        }
        let err: &[(Param, &str, &str)] = &[
            (Device, "", "device: empty item at 0"),
            (Device, ",a", "device: empty item at 0"),
            (Device, "a,,b", "device: empty item at 2"),
            (Device, "a,", "device: empty item at 2"),
            (Metric, "temp,", "metric: empty item at 5"),
            (State, "", "state: empty item at 0"),
            (
                Severity,
                "major,fatal",
                r#"severity: unknown severity "fatal" (expected critical, major, minor, warning or info) at 6"#,
            ),
            (Severity, "MAJOR", r#"severity: unknown severity "MAJOR""#),
            (
                Severity,
                "info,x*",
                r#"severity: pattern "x*" matches no severity"#,
            ),
        ];
        for &(param, raw, want) in err {
            let got = show(param, raw).err().unwrap_or_default();
            assert!(
                got.starts_with(want),
                "{param}={raw}: {got:?}, want {want:?}"
            );
        }
    }

    #[test]
    fn limits() {
        let items = |n: usize| vec!["d"; n].join(",");
        assert!(compile(Param::Device, FieldName::Device, &items(MAX_LIST)).is_ok());
        let err = compile(Param::Device, FieldName::Device, &items(MAX_LIST + 1)).err();
        assert_eq!(
            err.map(|e| e.to_string()),
            Some(format!(
                "device: more than 128 values in a list at {}",
                2 * MAX_LIST
            ))
        );
        let long = "d".repeat(MAX_LEN + 1);
        let err = compile(Param::Metric, FieldName::Metric, &long).err();
        assert_eq!(
            err.as_ref().map(|e| e.to_string()).as_deref(),
            Some("metric is longer than 1024 bytes")
        );
        assert_eq!(err.map(|e| e.param()), Some(Param::Metric));
    }
}
