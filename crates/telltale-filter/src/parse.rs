//! The parser of `filter=<expr>`: recursive descent over the grammar of the
//! watch API (spec section 5), type-checking each comparison as it goes.
//!
//! ```text
//! expr  := and ("or" and)*
//! and   := unary ("and" unary)*
//! unary := "not" unary | "(" expr ")" | cmp
//! cmp   := field op literal | field "in" "(" literal ("," literal)* ")"
//! ```
//!
//! Only `not` and `(` recurse, and both count towards [`MAX_DEPTH`], so the
//! stack stays shallow whatever the input.

use crate::ast::{Cmp, Expr, FieldName, Literal, Op, Test};
use crate::glob::Glob;
use crate::lex::{Lexer, Located, Tok, Token};
use crate::{ErrorKind, FilterError, Param, MAX_DEPTH, MAX_LEN, MAX_LIST, MAX_TERMS, SEVERITIES};

const KEYWORDS: [&str; 6] = ["and", "or", "not", "in", "true", "false"];

/// Parses and type-checks a filter expression.
pub(crate) fn parse(src: &str) -> Result<Expr, FilterError> {
    if src.len() > MAX_LEN {
        return Err(FilterError::TooLong {
            param: Param::Filter,
        });
    }
    Parser::new(src)
        .and_then(|mut p| p.top())
        .map_err(|(position, kind)| FilterError::Expr { position, kind })
}

struct Parser<'a> {
    lex: Lexer<'a>,
    /// The current, not yet consumed token.
    cur: Token<'a>,
    /// Terms so far: comparisons, `in` values, `and`, `or`, `not`.
    terms: usize,
}

type PResult<T> = Result<T, Located>;

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> PResult<Self> {
        let mut lex = Lexer::new(src);
        let cur = lex.token()?;
        Ok(Parser { lex, cur, terms: 0 })
    }

    /// Consumes the current token and returns it.
    fn advance(&mut self) -> PResult<Token<'a>> {
        let next = self.lex.token()?;
        Ok(std::mem::replace(&mut self.cur, next))
    }

    fn at_keyword(&self, word: &str) -> bool {
        self.cur.tok == Tok::Ident(word)
    }

    /// Counts one term at `pos`.
    fn count(&mut self, pos: usize) -> PResult<()> {
        self.terms += 1;
        if self.terms > MAX_TERMS {
            return Err((pos, ErrorKind::TooManyTerms));
        }
        Ok(())
    }

    /// The error for an unexpected current token: `kind`, unless the token
    /// is a keyword in the wrong case.
    fn unexpected(&self, kind: ErrorKind) -> Located {
        match self.cur.tok {
            Tok::Ident(word) => (self.cur.pos, miscased_keyword(word).unwrap_or(kind)),
            _ => (self.cur.pos, kind),
        }
    }

    fn top(&mut self) -> PResult<Expr> {
        if self.cur.tok == Tok::End {
            return Err((0, ErrorKind::Empty));
        }
        let e = self.expr(0)?;
        match self.cur.tok {
            Tok::End => Ok(e),
            Tok::Close => Err((self.cur.pos, ErrorKind::UnmatchedClose)),
            _ => Err(self.unexpected(ErrorKind::ExpectedAndOr)),
        }
    }

    /// `expr := and ("or" and)*`
    fn expr(&mut self, depth: usize) -> PResult<Expr> {
        let mut items = Vec::new();
        push_flat(&mut items, self.and(depth)?, true);
        while self.at_keyword("or") {
            self.count(self.cur.pos)?;
            self.advance()?;
            push_flat(&mut items, self.and(depth)?, true);
        }
        Ok(Expr::group(items, Expr::Or))
    }

    /// `and := unary ("and" unary)*`
    fn and(&mut self, depth: usize) -> PResult<Expr> {
        let mut items = Vec::new();
        push_flat(&mut items, self.unary(depth)?, false);
        while self.at_keyword("and") {
            self.count(self.cur.pos)?;
            self.advance()?;
            push_flat(&mut items, self.unary(depth)?, false);
        }
        Ok(Expr::group(items, Expr::And))
    }

    /// `unary := "not" unary | "(" expr ")" | cmp`
    fn unary(&mut self, depth: usize) -> PResult<Expr> {
        let pos = self.cur.pos;
        let nested = self.at_keyword("not") || self.cur.tok == Tok::Open;
        if nested && depth >= MAX_DEPTH {
            return Err((pos, ErrorKind::TooDeep));
        }
        if self.at_keyword("not") {
            self.count(pos)?;
            self.advance()?;
            return Ok(Expr::Not(Box::new(self.unary(depth + 1)?)));
        }
        if self.cur.tok == Tok::Open {
            self.advance()?;
            let e = self.expr(depth + 1)?;
            if self.cur.tok != Tok::Close {
                return Err(self.unexpected(ErrorKind::ExpectedClose));
            }
            self.advance()?;
            return Ok(e);
        }
        self.cmp()
    }

    /// `cmp := field op literal | field "in" "(" literal ("," literal)* ")"`
    fn cmp(&mut self) -> PResult<Expr> {
        let pos = self.cur.pos;
        let field = match self.cur.tok {
            Tok::Ident(name) if !KEYWORDS.contains(&name) => match miscased_keyword(name) {
                Some(kind) => return Err((pos, kind)),
                None => FieldName::parse(name).map_err(|kind| (pos, kind))?,
            },
            _ => return Err(self.unexpected(ErrorKind::ExpectedField)),
        };
        self.count(pos)?;
        self.advance()?;
        let op_pos = self.cur.pos;
        let test = match self.cur.tok {
            Tok::Op(op) => {
                if op.is_ordering() && field == FieldName::Severity {
                    return Err((op_pos, ErrorKind::SeverityOrder));
                }
                self.advance()?;
                let (lit, lit_pos) = self.literal()?;
                check(&field, op, &lit).map_err(|kind| (lit_pos, kind))?;
                Test::Op(op, lit)
            }
            Tok::Tilde => {
                self.advance()?;
                let (lit, lit_pos) = self.literal()?;
                let Literal::Str(pattern) = lit else {
                    return Err((lit_pos, ErrorKind::GlobNeedsString));
                };
                let glob = Glob::new(&pattern);
                if field == FieldName::Severity && !SEVERITIES.iter().any(|s| glob.matches(s)) {
                    return Err((lit_pos, ErrorKind::SeverityMatchesNone(pattern)));
                }
                Test::Glob(glob)
            }
            Tok::Ident("in") => {
                self.advance()?;
                if self.cur.tok != Tok::Open {
                    return Err(self.unexpected(ErrorKind::ExpectedOpen));
                }
                self.advance()?;
                let mut lits = Vec::new();
                loop {
                    if lits.len() == MAX_LIST {
                        return Err((self.cur.pos, ErrorKind::TooManyValues));
                    }
                    self.count(self.cur.pos)?;
                    let (lit, lit_pos) = self.literal()?;
                    check(&field, Op::Eq, &lit).map_err(|kind| (lit_pos, kind))?;
                    lits.push(lit);
                    match self.cur.tok {
                        Tok::Comma => {
                            self.advance()?;
                        }
                        Tok::Close => {
                            self.advance()?;
                            break;
                        }
                        _ => return Err(self.unexpected(ErrorKind::ExpectedCommaOrClose)),
                    }
                }
                Test::In(lits)
            }
            _ => return Err(self.unexpected(ErrorKind::ExpectedOperator)),
        };
        Ok(Expr::Cmp(Cmp { field, test }))
    }

    /// `literal := number | "string" | 'string' | true | false`
    fn literal(&mut self) -> PResult<(Literal, usize)> {
        let ok = matches!(
            self.cur.tok,
            Tok::Num(_) | Tok::Str(_) | Tok::Ident("true" | "false")
        );
        if !ok {
            return Err(self.unexpected(ErrorKind::ExpectedLiteral));
        }
        let Token { tok, pos } = self.advance()?;
        let lit = match tok {
            Tok::Num(n) => Literal::Num(n),
            Tok::Str(s) => Literal::Str(s),
            Tok::Ident(word) => Literal::Bool(word == "true"),
            _ => return Err((pos, ErrorKind::ExpectedLiteral)),
        };
        Ok((lit, pos))
    }
}

/// `KeywordCase` if `word` is a keyword in the wrong case (`AND`, `Not`).
fn miscased_keyword(word: &str) -> Option<ErrorKind> {
    KEYWORDS
        .iter()
        .find(|k| k.eq_ignore_ascii_case(word) && **k != word)
        .map(|k| ErrorKind::KeywordCase(k))
}

/// Appends `e` to the children of an `or` (or `and`), lifting the children
/// of a parenthesized group of the same kind.
fn push_flat(items: &mut Vec<Expr>, e: Expr, or: bool) {
    match e {
        Expr::Or(inner) if or => items.extend(inner),
        Expr::And(inner) if !or => items.extend(inner),
        e => items.push(e),
    }
}

/// The type rules that the field and the literal decide at parse time.
fn check(field: &FieldName, op: Op, lit: &Literal) -> Result<(), ErrorKind> {
    if op.is_ordering() && matches!(lit, Literal::Bool(_)) {
        return Err(ErrorKind::BoolOrder);
    }
    if field.is_string() {
        let literal = match lit {
            Literal::Str(s) => {
                if *field == FieldName::Severity && !SEVERITIES.contains(&s.as_str()) {
                    return Err(ErrorKind::UnknownSeverity(s.clone()));
                }
                return Ok(());
            }
            Literal::Num(_) => "a number",
            Literal::Bool(_) => "a boolean",
        };
        return Err(ErrorKind::NotAString {
            field: field.to_string(),
            literal,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inputs that parse, and their fully parenthesized normal form (`{:#}`).
    const OK: &[(&str, &str)] = &[
        // every operator, every field
        (r#"device == "a""#, r#"device == "a""#),
        (r#"metric != "temp""#, r#"metric != "temp""#),
        ("value < 1", "value < 1.0"),
        ("value <= 1", "value <= 1.0"),
        ("value > 1", "value > 1.0"),
        ("value >= 1", "value >= 1.0"),
        (r#"unit ~ "°*""#, r#"unit ~ "°*""#),
        (r#"severity == "major""#, r#"severity == "major""#),
        (r#"state == "whatever""#, r#"state == "whatever""#),
        (r#"rule ~ "hot-?""#, r#"rule ~ "hot-?""#),
        (r#"labels.site == "north""#, r#"labels.site == "north""#),
        (
            r#"labels.k8s.io/zone-a:b == "x""#,
            r#"labels.k8s.io/zone-a:b == "x""#,
        ),
        (r#"labels.räum == "x""#, r#"labels.räum == "x""#),
        // strings order too
        (r#"device < "m""#, r#"device < "m""#),
        (r#"labels.floor >= "2""#, r#"labels.floor >= "2""#),
        // literals
        ("value == true", "value == true"),
        ("value != false", "value != false"),
        (r#"value == "on""#, r#"value == "on""#),
        ("value > -1", "value > -1.0"),
        ("value > +2.5", "value > 2.5"),
        ("value > 1e3", "value > 1000.0"),
        ("value > 1.5E-3", "value > 0.0015"),
        ("value > 1e300", "value > 1e300"),
        ("value > 1e-400", "value > 0.0"),
        ("value == -0", "value == -0.0"),
        ("value == 007", "value == 7.0"),
        // both quotes, escapes
        (r#"device == 'a'"#, r#"device == "a""#),
        (r#"device == 'say "hi"'"#, r#"device == "say \"hi\"""#),
        (r#"device == "it's""#, r#"device == "it's""#),
        (r#"device == 'it\'s'"#, r#"device == "it's""#),
        (r#"device == "a\"b""#, r#"device == "a\"b""#),
        (r#"device == "a\\b""#, r#"device == "a\\b""#),
        (r#"device == """#, r#"device == """#),
        (r#"device == "☃ é""#, r#"device == "☃ é""#),
        // in
        (r#"device in ("a")"#, r#"device in ("a")"#),
        (
            r#"device in ('a',"b" , 'c')"#,
            r#"device in ("a", "b", "c")"#,
        ),
        (r#"value in (1, true, "x")"#, r#"value in (1.0, true, "x")"#),
        // whitespace is free, or absent between tokens that allow it
        ("value>1", "value > 1.0"),
        ("\tvalue\n>\r1 ", "value > 1.0"),
        (
            r#"(value>1)and(device=="a")"#,
            r#"(value > 1.0 and device == "a")"#,
        ),
        (r#"not(value>1)"#, r#"not value > 1.0"#),
        // precedence: not > and > or
        (
            r#"device == "a" or device == "b" and value > 1"#,
            r#"(device == "a" or (device == "b" and value > 1.0))"#,
        ),
        (
            r#"device == "a" and device == "b" or value > 1"#,
            r#"((device == "a" and device == "b") or value > 1.0)"#,
        ),
        (
            r#"(device == "a" or device == "b") and value > 1"#,
            r#"((device == "a" or device == "b") and value > 1.0)"#,
        ),
        (
            r#"not device == "a" and value > 1"#,
            r#"(not device == "a" and value > 1.0)"#,
        ),
        (
            r#"not (device == "a" and value > 1)"#,
            r#"not (device == "a" and value > 1.0)"#,
        ),
        ("not not value > 1", "not not value > 1.0"),
        // flattening and redundant parentheses
        (
            "value > 1 or (value > 2 or value > 3) or value > 4",
            "(value > 1.0 or value > 2.0 or value > 3.0 or value > 4.0)",
        ),
        (
            "(value > 1 and value > 2) and value > 3",
            "(value > 1.0 and value > 2.0 and value > 3.0)",
        ),
        ("((((value > 1))))", "value > 1.0"),
        // the spec's example
        (
            r#"metric == "temp" and value > 30 and labels.site == "north""#,
            r#"(metric == "temp" and value > 30.0 and labels.site == "north")"#,
        ),
        // severities
        (
            r#"severity in ("critical", "major", "minor", "warning", "info")"#,
            r#"severity in ("critical", "major", "minor", "warning", "info")"#,
        ),
        (r#"severity != "info""#, r#"severity != "info""#),
        (r#"severity ~ "m*""#, r#"severity ~ "m*""#),
    ];

    /// Inputs that fail: (input, position, fragment of the message).
    const ERR: &[(&str, usize, &str)] = &[
        ("", 0, "filter is empty"),
        (" \t\n", 0, "filter is empty"),
        // fields
        ("colour == 1", 0, r#"unknown field "colour""#),
        ("Device == 'a'", 0, r#"unknown field "Device""#),
        ("labels == 'a'", 0, r#"unknown field "labels""#),
        ("labels. == 'a'", 0, "empty label key"),
        ("== 1", 0, "expected a field"),
        ("value > 1 and", 13, "expected a field"),
        ("value > 1 or or value > 1", 13, "expected a field"),
        ("'a' == device", 0, "expected a field"),
        ("()", 1, "expected a field"),
        // operators
        (r#"device "x""#, 7, "expected a comparison operator"),
        ("device", 6, "expected a comparison operator"),
        (
            r#"metric == "temp" and value 30"#,
            27,
            "expected a comparison operator",
        ),
        (
            r#"device = "a""#,
            7,
            "expected a comparison operator (equality is ==)",
        ),
        (r#"device ! "a""#, 7, "unexpected character '!'"),
        (r#"device =< "a""#, 7, "expected a comparison operator"),
        (
            r#"device <> "a""#,
            8,
            "expected a number, a quoted string, true or false",
        ),
        // literals
        (
            "device ==",
            9,
            "expected a number, a quoted string, true or false",
        ),
        ("device == abc", 10, "expected a number"),
        ("value == (1)", 9, "expected a number"),
        // strings
        (r#"device == "abc"#, 10, "unterminated string"),
        (r#"device == 'abc"#, 10, "unterminated string"),
        (r#"device == "abc'"#, 10, "unterminated string"),
        (r#"device == "abc\"#, 10, "unterminated string"),
        (r#"device == "a\nb""#, 12, r"unknown escape \n"),
        // numbers
        ("value > 1.", 8, "malformed number"),
        ("value > .5", 8, "unexpected character '.'"),
        ("value > 1e", 8, "malformed number"),
        ("value > 1e+", 8, "malformed number"),
        ("value > 12abc", 8, "malformed number"),
        ("value > 1.2.3", 8, "malformed number"),
        ("value > 1+2", 8, "malformed number"),
        ("value > 0x10", 8, "malformed number"),
        ("value > 1e999", 8, "number out of range"),
        ("value > -", 8, "unexpected character '-'"),
        ("value > - 1", 8, "unexpected character '-'"),
        ("value > inf", 8, "expected a number"),
        ("value > NaN", 8, "expected a number"),
        // characters
        ("value > 1 @", 10, "unexpected character '@'"),
        ("value > 1 && value < 2", 10, "unexpected character '&'"),
        ("value > 1 ; ", 10, "unexpected character ';'"),
        ("value ≥ 1", 6, "unexpected character '≥'"),
        // structure
        (
            "value > 1 value > 2",
            10,
            "expected and, or, or the end of the filter",
        ),
        ("value > 1)", 9, "unmatched )"),
        ("(value > 1", 10, "expected )"),
        ("((value > 1)", 12, "expected )"),
        ("(value > 1 value", 11, "expected )"),
        ("not", 3, "expected a field"),
        // keywords are lower case
        (
            "value > 1 AND value < 2",
            10,
            "keywords are lower case: write and",
        ),
        (
            "value > 1 Or value < 2",
            10,
            "keywords are lower case: write or",
        ),
        ("NOT value > 1", 0, "keywords are lower case: write not"),
        (
            "(value > 1 AND value < 2)",
            11,
            "keywords are lower case: write and",
        ),
        (r#"device IN ("a")"#, 7, "keywords are lower case: write in"),
        ("value == TRUE", 9, "keywords are lower case: write true"),
        (
            "value in (1, False)",
            13,
            "keywords are lower case: write false",
        ),
        // in
        (r#"device in "a""#, 10, "expected ( after in"),
        ("device in", 9, "expected ( after in"),
        ("device in ()", 11, "expected a number"),
        (r#"device in ("a",)"#, 15, "expected a number"),
        (r#"device in ("a" "b")"#, 15, "expected , or )"),
        (r#"device in ("a""#, 14, "expected , or )"),
        // types
        (
            "device < 5",
            9,
            "device is a string: it cannot be compared with a number",
        ),
        ("device == 5", 10, "device is a string"),
        (
            "labels.floor == 2",
            16,
            "labels.floor is a string: it cannot be compared with a number",
        ),
        (
            "rule == true",
            8,
            "rule is a string: it cannot be compared with a boolean",
        ),
        ("unit != 1", 8, "unit is a string"),
        ("metric >= 1", 10, "metric is a string"),
        ("state == false", 9, "state is a string"),
        (r#"device in ("a", 1)"#, 16, "device is a string"),
        ("value < true", 8, "booleans have no order"),
        ("value >= false", 9, "booleans have no order"),
        ("device > true", 9, "booleans have no order"),
        ("value ~ 5", 8, "~ needs a quoted glob pattern"),
        ("device ~ true", 9, "~ needs a quoted glob pattern"),
        // severities
        (r#"severity == "fatal""#, 12, r#"unknown severity "fatal""#),
        (r#"severity == "Major""#, 12, r#"unknown severity "Major""#),
        (
            r#"severity in ("major", "oops")"#,
            22,
            r#"unknown severity "oops""#,
        ),
        (r#"severity < "major""#, 9, "severities have no order"),
        (r#"severity >= 3"#, 9, "severities have no order"),
        (
            r#"severity ~ "x*""#,
            11,
            r#"pattern "x*" matches no severity"#,
        ),
        ("severity == 1", 12, "severity is a string"),
    ];

    fn full(src: &str) -> Result<String, FilterError> {
        parse(src).map(|e| format!("{e:#}"))
    }

    #[test]
    fn parses() {
        for &(src, want) in OK {
            let got = full(src).unwrap_or_else(|e| panic!("{src:?}: {e}"));
            assert_eq!(got, want, "{src:?}");
            // The short form parses back to the same tree.
            let short = parse(src).map(|e| e.to_string()).unwrap_or_default();
            assert_eq!(
                full(&short).ok().as_deref(),
                Some(want),
                "{src:?} as {short:?}"
            );
        }
    }

    #[test]
    fn refuses() {
        for &(src, pos, fragment) in ERR {
            let err = match parse(src) {
                Ok(e) => panic!("{src:?} parsed as {e:#}"),
                Err(err) => err,
            };
            let msg = err.to_string();
            assert!(
                msg.contains(fragment),
                "{src:?}: {msg:?} lacks {fragment:?}"
            );
            assert!(
                msg.ends_with(&format!(" at {pos}")),
                "{src:?}: {msg:?}, want at {pos}"
            );
            assert_eq!(err.position(), pos, "{src:?}: {msg}");
            assert_eq!(err.param(), Param::Filter);
        }
    }

    #[test]
    fn exact_messages() {
        let cases = [
            ("device 'x'", "expected a comparison operator at 7"),
            ("colour == 'red'", r#"unknown field "colour" at 0"#),
            ("device == 'abc", "unterminated string at 10"),
        ];
        for (src, want) in cases {
            assert_eq!(
                parse(src).err().map(|e| e.to_string()).as_deref(),
                Some(want)
            );
        }
    }

    #[test]
    fn short_form_keeps_only_needed_parentheses() {
        // A, B, C, D stand for comparisons.
        let cases = [
            ("A or B and C", "A or B and C"),
            ("(A or B) and C", "(A or B) and C"),
            ("A or (B and C)", "A or B and C"),
            ("not (A or B)", "not (A or B)"),
            ("not (A and B)", "not (A and B)"),
            ("(not A) and B", "not A and B"),
            ("A and (B or (C and D))", "A and (B or C and D)"),
        ];
        let expand = |s: &str, n: &str| {
            s.replace('A', &format!("value > 1{n}"))
                .replace('B', &format!("value > 2{n}"))
                .replace('C', &format!("value > 3{n}"))
                .replace('D', &format!("value > 4{n}"))
        };
        for (src, want) in cases {
            let got = parse(&expand(src, "")).map(|e| e.to_string());
            assert_eq!(got.ok(), Some(expand(want, ".0")), "{src}");
        }
    }

    #[test]
    fn nesting_is_limited() {
        let ok = format!(
            "{}value > 1{}",
            "(".repeat(MAX_DEPTH),
            ")".repeat(MAX_DEPTH)
        );
        assert!(parse(&ok).is_ok());
        let deep = format!(
            "{}value > 1{}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        let err = parse(&deep).err();
        assert_eq!(err.as_ref().map(FilterError::position), Some(MAX_DEPTH));
        assert_eq!(
            err.map(|e| e.to_string()),
            Some("nesting deeper than 32 at 32".into())
        );

        let nots = format!("{}value > 1", "not ".repeat(MAX_DEPTH));
        assert!(parse(&nots).is_ok());
        let nots = format!("{}value > 1", "not ".repeat(MAX_DEPTH + 1));
        let err = parse(&nots).err();
        assert_eq!(
            err.map(|e| e.to_string()),
            Some("nesting deeper than 32 at 128".into())
        );

        // Mixed: `not (` counts twice.
        let mixed = format!("{}value > 1{}", "not (".repeat(17), ")".repeat(17));
        assert_eq!(parse(&mixed).err().map(|e| e.position()), Some(5 * 16));

        // Far deeper than the limit and still no stack overflow, and the
        // 1 KiB limit comes first.
        let hostile = "(".repeat(MAX_LEN);
        assert_eq!(parse(&hostile).err().map(|e| e.position()), Some(MAX_DEPTH));
        let hostile = "(".repeat(100_000);
        assert_eq!(
            parse(&hostile).err(),
            Some(FilterError::TooLong {
                param: Param::Filter
            })
        );
    }

    #[test]
    fn length_is_limited() {
        let at_limit = format!("value > 1{}", " ".repeat(MAX_LEN - 9));
        assert_eq!(at_limit.len(), MAX_LEN);
        assert!(parse(&at_limit).is_ok());
        let over = format!("{at_limit} ");
        let err = parse(&over).err();
        assert_eq!(
            err.as_ref().map(|e| e.to_string()).as_deref(),
            Some("filter is longer than 1024 bytes")
        );
        assert_eq!(err.map(|e| e.position()), Some(MAX_LEN));
    }

    #[test]
    fn in_lists_are_limited() {
        let list = |n: usize| format!("value in ({})", vec!["1"; n].join(","));
        assert!(parse(&list(MAX_LIST)).is_ok());
        let src = list(MAX_LIST + 1);
        // The 129th value sits at 10 + 2 * 128.
        let err = parse(&src).err();
        assert_eq!(
            err.map(|e| e.to_string()),
            Some(format!(
                "more than 128 values in a list at {}",
                10 + 2 * MAX_LIST
            ))
        );
    }

    #[test]
    fn terms_are_limited() {
        // Each list is 1 comparison + 100 values; `or` is one more.
        let list = format!("value in ({})", vec!["1"; 100].join(","));
        let two = [list.as_str(); 2].join(" or ");
        assert!(parse(&two).is_ok());
        let three = [list.as_str(); 3].join(" or ");
        assert!(three.len() <= MAX_LEN);
        let err = parse(&three).err();
        assert_eq!(
            err.as_ref().and_then(FilterError::kind),
            Some(&ErrorKind::TooManyTerms)
        );
        // 2 × 101 + 1 (`or`) + 1 (`or`) + 1 (the comparison) = 205 terms
        // before the third list's values: term 257 is its 52nd value.
        let third = 2 * (list.len() + " or ".len());
        assert_eq!(err.map(|e| e.position()), Some(third + 10 + 2 * 51));
    }
}
