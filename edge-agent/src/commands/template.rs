//! Argument templates of operator commands: fixed text with `{param}`
//! placeholders, each replaced by a checked parameter value inside its one
//! argument (a value never becomes two arguments: there is no shell). `{{`
//! and `}}` stand for literal braces. Pure.

use std::collections::BTreeMap;

/// One part of an argument template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Literal text.
    Text(String),
    /// The value of this parameter.
    Param(String),
}

/// One parsed argument template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Its parts, in order.
    pieces: Vec<Piece>,
}

/// Whether `name` can be a parameter name: 1-64 characters of
/// `A-Z a-z 0-9 _`, not starting with a digit.
pub fn valid_param_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && !b[0].is_ascii_digit()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

impl Template {
    /// Parses `arg`; the error says what is wrong and at which byte.
    pub fn parse(arg: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = arg.char_indices().peekable();
        while let Some((i, c)) = rest.next() {
            match c {
                '{' if rest.peek().is_some_and(|(_, n)| *n == '{') => {
                    rest.next();
                    text.push('{');
                }
                '}' if rest.peek().is_some_and(|(_, n)| *n == '}') => {
                    rest.next();
                    text.push('}');
                }
                '}' => {
                    return Err(format!(
                        "unmatched }} at byte {i} (write }}}} for a literal brace)"
                    ))
                }
                '{' => {
                    let start = i + 1;
                    let Some(len) = arg[start..].find('}') else {
                        return Err(format!(
                            "unclosed {{ at byte {i} (write {{{{ for a literal brace)"
                        ));
                    };
                    let name = &arg[start..start + len];
                    if !valid_param_name(name) {
                        return Err(format!(
                            "placeholder {{{name}}} at byte {i}: a parameter name is 1-64 characters of A-Z a-z 0-9 _, not starting with a digit"
                        ));
                    }
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(Piece::Param(name.to_owned()));
                    // Skip the name and the closing brace.
                    for _ in 0..=name.chars().count() {
                        rest.next();
                    }
                }
                c => text.push(c),
            }
        }
        if !text.is_empty() || pieces.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Template { pieces })
    }

    /// The parameters it names, in order (with repeats).
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Param(name) => Some(name.as_str()),
            Piece::Text(_) => None,
        })
    }

    /// The argument with every placeholder replaced; `Err(name)` for a
    /// parameter without a value.
    pub fn render(&self, values: &BTreeMap<String, String>) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Param(name) => out.push_str(values.get(name).ok_or_else(|| name.clone())?),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Piece {
        Piece::Text(s.to_owned())
    }
    fn param(s: &str) -> Piece {
        Piece::Param(s.to_owned())
    }

    #[test]
    fn parse_table() {
        let cases: Vec<(&str, Result<Vec<Piece>, &str>)> = vec![
            ("restart", Ok(vec![text("restart")])),
            ("", Ok(vec![text("")])),
            ("{unit}", Ok(vec![param("unit")])),
            ("--unit={unit}", Ok(vec![text("--unit="), param("unit")])),
            (
                "{a}-{b}.x",
                Ok(vec![param("a"), text("-"), param("b"), text(".x")]),
            ),
            ("{{literal}}", Ok(vec![text("{literal}")])),
            ("{{{a}}}", Ok(vec![text("{"), param("a"), text("}")])),
            ("é{a}é", Ok(vec![text("é"), param("a"), text("é")])),
            ("{_x9}", Ok(vec![param("_x9")])),
            ("{", Err("unclosed { at byte 0")),
            ("a{b", Err("unclosed { at byte 1")),
            ("a}b", Err("unmatched } at byte 1")),
            ("{}", Err("placeholder {} at byte 0")),
            ("{a b}", Err("placeholder {a b} at byte 0")),
            ("{9a}", Err("placeholder {9a} at byte 0")),
            ("{a{b}", Err("placeholder {a{b} at byte 0")),
        ];
        for (arg, want) in cases {
            match (Template::parse(arg), want) {
                (Ok(t), Ok(pieces)) => assert_eq!(t.pieces, pieces, "{arg:?}"),
                (Err(e), Err(start)) => assert!(e.starts_with(start), "{arg:?}: {e}"),
                (got, want) => panic!("{arg:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn render_table() {
        let values: BTreeMap<String, String> = [
            ("unit", "modem@1.service"),
            ("n", "5"),
            ("s", "a b; rm -rf /"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("restart", Ok("restart")),
            ("{unit}", Ok("modem@1.service")),
            ("--count={n}", Ok("--count=5")),
            ("{n}{n}", Ok("55")),
            // A value is one argument, whatever it holds.
            ("{s}", Ok("a b; rm -rf /")),
            ("{{n}}={n}", Ok("{n}=5")),
            ("{missing}", Err("missing")),
        ];
        for (arg, want) in cases {
            let t = Template::parse(arg).expect("parse");
            assert_eq!(
                t.render(&values),
                want.map(str::to_owned).map_err(str::to_owned),
                "{arg:?}"
            );
        }
        let t = Template::parse("{a}-{b}-{a}").expect("parse");
        assert_eq!(t.params().collect::<Vec<_>>(), ["a", "b", "a"]);
    }
}
