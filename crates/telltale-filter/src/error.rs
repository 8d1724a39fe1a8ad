//! Why a filter was refused: one error type carrying the parameter, the byte
//! position and a kind that callers can match on.

use crate::{MAX_DEPTH, MAX_LEN, MAX_LIST, MAX_TERMS};
use std::fmt;

/// The query parameter a [`FilterError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Param {
    /// `filter=<expr>`.
    Filter,
    /// The `device=` shorthand.
    Device,
    /// The `metric=` shorthand.
    Metric,
    /// The `severity=` shorthand.
    Severity,
    /// The `state=` shorthand.
    State,
}

impl Param {
    /// The parameter's name in a query string (and in a WebSocket message).
    pub fn as_str(self) -> &'static str {
        match self {
            Param::Filter => "filter",
            Param::Device => "device",
            Param::Metric => "metric",
            Param::Severity => "severity",
            Param::State => "state",
        }
    }
}

impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A filter that cannot be compiled. Positions are 0-based byte offsets into
/// the text of the parameter the error is in.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// A parameter's text is longer than [`MAX_LEN`] bytes; nothing of it
    /// was read.
    #[error("{param} is longer than {max} bytes", max = MAX_LEN)]
    TooLong {
        /// The parameter that is too long.
        param: Param,
    },
    /// The `filter` expression is malformed or ill-typed.
    #[error("{kind} at {position}")]
    Expr {
        /// Byte offset into the expression.
        position: usize,
        /// What is wrong there.
        kind: ErrorKind,
    },
    /// A shorthand list (`device=`, `metric=`, `severity=`, `state=`) is
    /// malformed.
    #[error("{param}: {kind} at {position}")]
    Shorthand {
        /// The shorthand; never [`Param::Filter`].
        param: Param,
        /// Byte offset into that shorthand's value.
        position: usize,
        /// What is wrong there.
        kind: ErrorKind,
    },
}

impl FilterError {
    /// The parameter to name in a `400 bad_filter` answer.
    pub fn param(&self) -> Param {
        match self {
            FilterError::TooLong { param } | FilterError::Shorthand { param, .. } => *param,
            FilterError::Expr { .. } => Param::Filter,
        }
    }

    /// The byte offset of the error in that parameter's text. For
    /// [`FilterError::TooLong`] it is [`MAX_LEN`], the first byte past the limit.
    pub fn position(&self) -> usize {
        match self {
            FilterError::TooLong { .. } => MAX_LEN,
            FilterError::Expr { position, .. } | FilterError::Shorthand { position, .. } => {
                *position
            }
        }
    }

    /// What went wrong, unless the text was simply too long.
    pub fn kind(&self) -> Option<&ErrorKind> {
        match self {
            FilterError::TooLong { .. } => None,
            FilterError::Expr { kind, .. } | FilterError::Shorthand { kind, .. } => Some(kind),
        }
    }
}

/// What is wrong at a position. Messages are lower case and carry no
/// position; [`FilterError`] adds it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// The expression holds nothing but whitespace.
    #[error("filter is empty")]
    Empty,
    /// A character that starts no token.
    #[error("unexpected character {0:?}")]
    UnexpectedChar(char),
    /// A single `=`.
    #[error("expected a comparison operator (equality is ==)")]
    SingleEquals,
    /// A string without its closing quote; the position is the opening quote.
    #[error("unterminated string")]
    UnterminatedString,
    /// A backslash followed by something other than a quote or a backslash.
    #[error("unknown escape \\{0} (only \\\\, \\\" and \\' are allowed)")]
    BadEscape(char),
    /// Not a decimal number (`1.`, `1e`, `12abc`).
    #[error("malformed number")]
    BadNumber,
    /// A number too large for a finite `f64`.
    #[error("number out of range")]
    NumberOutOfRange,
    /// A comparison must start with a field.
    #[error("expected a field")]
    ExpectedField,
    /// A field name this language does not have.
    #[error("unknown field {0:?}")]
    UnknownField(String),
    /// `labels.` with nothing after the dot.
    #[error("empty label key")]
    EmptyLabelKey,
    /// A field not followed by `==`, `!=`, `<`, `<=`, `>`, `>=`, `~` or `in`.
    #[error("expected a comparison operator")]
    ExpectedOperator,
    /// An operator not followed by a number, string, `true` or `false`.
    #[error("expected a number, a quoted string, true or false")]
    ExpectedLiteral,
    /// `in` not followed by `(`.
    #[error("expected ( after in")]
    ExpectedOpen,
    /// A `(` group not closed.
    #[error("expected )")]
    ExpectedClose,
    /// An `in` list value not followed by `,` or `)`.
    #[error("expected , or )")]
    ExpectedCommaOrClose,
    /// A complete comparison followed by something other than `and`, `or`.
    #[error("expected and, or, or the end of the filter")]
    ExpectedAndOr,
    /// A `)` without its `(`.
    #[error("unmatched )")]
    UnmatchedClose,
    /// A keyword not in lower case (`AND`, `Not`).
    #[error("keywords are lower case: write {0}")]
    KeywordCase(&'static str),
    /// More than [`MAX_DEPTH`] nested `(` and `not`.
    #[error("nesting deeper than {max}", max = MAX_DEPTH)]
    TooDeep,
    /// More than [`MAX_LIST`] values in an `in` list or a shorthand.
    #[error("more than {max} values in a list", max = MAX_LIST)]
    TooManyValues,
    /// More than [`MAX_TERMS`] terms in an expression.
    #[error("more than {max} terms", max = MAX_TERMS)]
    TooManyTerms,
    /// A string field compared with a number or a boolean.
    #[error("{field} is a string: it cannot be compared with {literal}")]
    NotAString {
        /// The field, as written (`device`, `labels.site`).
        field: String,
        /// `"a number"` or `"a boolean"`.
        literal: &'static str,
    },
    /// `<`, `<=`, `>` or `>=` with `true` or `false`.
    #[error("booleans have no order")]
    BoolOrder,
    /// `~` with a number or a boolean.
    #[error("~ needs a quoted glob pattern")]
    GlobNeedsString,
    /// `<`, `<=`, `>` or `>=` on `severity`.
    #[error("severities have no order: use ==, !=, in or ~")]
    SeverityOrder,
    /// A severity that is none of [`SEVERITIES`](crate::SEVERITIES).
    #[error("unknown severity {0:?} (expected critical, major, minor, warning or info)")]
    UnknownSeverity(String),
    /// A severity glob that matches none of [`SEVERITIES`](crate::SEVERITIES).
    #[error("pattern {0:?} matches no severity (critical, major, minor, warning, info)")]
    SeverityMatchesNone(String),
    /// An empty item in a shorthand list (`a,,b`, `a,`, or an empty value).
    #[error("empty item")]
    EmptyItem,
}
