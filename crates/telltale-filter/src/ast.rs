//! The compiled filter: a tree of and / or / not over comparisons, its
//! evaluation against an item, and its normalized text.

use crate::fields::{Field, FieldValue, Fields};
use crate::glob::Glob;
use std::cmp::Ordering;
use std::fmt;

/// A filter expression. `Or` and `And` hold at least two children and never
/// a child of their own kind (the parser flattens `(a or b) or c`).
#[derive(Clone, Debug)]
pub(crate) enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Not(Box<Expr>),
    Cmp(Cmp),
}

/// One comparison of a field.
#[derive(Clone, Debug)]
pub(crate) struct Cmp {
    pub(crate) field: FieldName,
    pub(crate) test: Test,
}

/// What a comparison tests a field's value with.
#[derive(Clone, Debug)]
pub(crate) enum Test {
    /// `field op literal`.
    Op(Op, Literal),
    /// `field in (literal, …)`: equal to any of them.
    In(Vec<Literal>),
    /// `field ~ "pattern"`.
    Glob(Glob),
}

/// A comparison operator other than `~` and `in`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    /// `<`, `<=`, `>`, `>=`.
    pub(crate) fn is_ordering(self) -> bool {
        !matches!(self, Op::Eq | Op::Ne)
    }
}

/// A literal in the filter text.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Literal {
    Num(f64),
    Str(String),
    Bool(bool),
}

/// A field named in the filter text (owned, unlike [`Field`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FieldName {
    Device,
    Metric,
    Value,
    Unit,
    Severity,
    State,
    Rule,
    Label(Box<str>),
}

/// Whether a character may continue an identifier (field names, label keys
/// and keywords). Label keys may hold `-`, `.`, `:` and `/` besides letters,
/// digits and `_`.
pub(crate) fn ident_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/')
}

impl FieldName {
    /// The field an identifier names.
    pub(crate) fn parse(name: &str) -> Result<Self, crate::ErrorKind> {
        Ok(match name {
            "device" => FieldName::Device,
            "metric" => FieldName::Metric,
            "value" => FieldName::Value,
            "unit" => FieldName::Unit,
            "severity" => FieldName::Severity,
            "state" => FieldName::State,
            "rule" => FieldName::Rule,
            _ => match name.strip_prefix("labels.") {
                Some("") => return Err(crate::ErrorKind::EmptyLabelKey),
                Some(key) => FieldName::Label(key.into()),
                None => return Err(crate::ErrorKind::UnknownField(name.to_owned())),
            },
        })
    }

    /// Every field but `value` always holds a string.
    pub(crate) fn is_string(&self) -> bool {
        !matches!(self, FieldName::Value)
    }

    fn as_field(&self) -> Field<'_> {
        match self {
            FieldName::Device => Field::Device,
            FieldName::Metric => Field::Metric,
            FieldName::Value => Field::Value,
            FieldName::Unit => Field::Unit,
            FieldName::Severity => Field::Severity,
            FieldName::State => Field::State,
            FieldName::Rule => Field::Rule,
            FieldName::Label(key) => Field::Label(key),
        }
    }
}

impl Expr {
    /// Builds `Or` (or `And`) from `items`, or returns the only item.
    pub(crate) fn group(mut items: Vec<Expr>, make: fn(Vec<Expr>) -> Expr) -> Expr {
        if items.len() == 1 {
            if let Some(only) = items.pop() {
                return only;
            }
        }
        make(items)
    }

    /// Whether `item` satisfies this expression.
    pub(crate) fn matches<F: Fields + ?Sized>(&self, item: &F) -> bool {
        match self {
            Expr::Or(all) => all.iter().any(|e| e.matches(item)),
            Expr::And(all) => all.iter().all(|e| e.matches(item)),
            Expr::Not(e) => !e.matches(item),
            Expr::Cmp(c) => item
                .field(c.field.as_field())
                .is_some_and(|v| c.test.matches(v)),
        }
    }
}

impl Test {
    fn matches(&self, v: FieldValue<'_>) -> bool {
        match self {
            Test::Op(op, lit) => compare(*op, v, lit),
            Test::In(lits) => lits.iter().any(|lit| compare(Op::Eq, v, lit)),
            Test::Glob(glob) => matches!(v, FieldValue::Str(s) if glob.matches(s)),
        }
    }
}

/// `v op lit`. Values of a different type than the literal compare false
/// with every operator, `!=` included. Strings order by bytes (code points);
/// a NaN value is `!=` every number and nothing else.
fn compare(op: Op, v: FieldValue<'_>, lit: &Literal) -> bool {
    let ord = match (v, lit) {
        (FieldValue::Str(a), Literal::Str(b)) => Some(a.cmp(b.as_str())),
        (FieldValue::Num(a), Literal::Num(b)) => a.partial_cmp(b),
        (FieldValue::Bool(a), Literal::Bool(b)) => Some(a.cmp(b)),
        _ => return false,
    };
    match op {
        Op::Eq => ord == Some(Ordering::Equal),
        Op::Ne => ord != Some(Ordering::Equal),
        Op::Lt => ord == Some(Ordering::Less),
        Op::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
        Op::Gt => ord == Some(Ordering::Greater),
        Op::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
    }
}

/// Where an expression is printed, to decide its parentheses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Top,
    Or,
    And,
    Not,
}

impl Expr {
    /// `full`: parenthesize every `and` and `or` group, to show the
    /// structure; otherwise only where precedence needs it.
    fn write(&self, f: &mut fmt::Formatter<'_>, ctx: Ctx, full: bool) -> fmt::Result {
        let (all, sep, inner, paren) = match self {
            Expr::Or(all) => (
                all,
                " or ",
                Ctx::Or,
                full || matches!(ctx, Ctx::And | Ctx::Not),
            ),
            Expr::And(all) => (all, " and ", Ctx::And, full || ctx == Ctx::Not),
            Expr::Not(e) => {
                f.write_str("not ")?;
                return e.write(f, Ctx::Not, full);
            }
            Expr::Cmp(c) => return write!(f, "{c}"),
        };
        if paren {
            f.write_str("(")?;
        }
        for (i, e) in all.iter().enumerate() {
            if i > 0 {
                f.write_str(sep)?;
            }
            e.write(f, inner, full)?;
        }
        if paren {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// The normalized text: one space around operators, strings in double
/// quotes, numbers in Rust's shortest round-trip form, `and`/`or` chains
/// flattened. `{}` adds only the parentheses precedence needs, so the text
/// parses back to the same tree and is never nested deeper than the input;
/// `{:#}` parenthesizes every `and` and `or` group.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, Ctx::Top, f.alternate())
    }
}

impl fmt::Display for Cmp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.test {
            Test::Op(op, lit) => write!(f, "{} {op} {lit}", self.field),
            Test::Glob(glob) => {
                write!(f, "{} ~ ", self.field)?;
                write_quoted(f, glob.pattern())
            }
            Test::In(lits) => {
                write!(f, "{} in (", self.field)?;
                for (i, lit) in lits.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{lit}")?;
                }
                f.write_str(")")
            }
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        })
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Debug, unlike Display, switches to an exponent for very large
            // and very small numbers; both round-trip exactly.
            Literal::Num(n) => write!(f, "{n:?}"),
            Literal::Str(s) => write_quoted(f, s),
            Literal::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl fmt::Display for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FieldName::Device => "device",
            FieldName::Metric => "metric",
            FieldName::Value => "value",
            FieldName::Unit => "unit",
            FieldName::Severity => "severity",
            FieldName::State => "state",
            FieldName::Rule => "rule",
            FieldName::Label(key) => return write!(f, "labels.{key}"),
        })
    }
}

/// `s` in double quotes, with `"` and `\` escaped.
fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        if matches!(c, '"' | '\\') {
            f.write_str("\\")?;
        }
        write!(f, "{c}")?;
    }
    f.write_str("\"")
}
