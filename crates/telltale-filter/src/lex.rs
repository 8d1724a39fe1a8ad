//! The lexer: filter text to tokens with their byte positions, one token at
//! a time so that errors come out in the order they appear in the text.

use crate::ast::{ident_char, Op};
use crate::ErrorKind;

/// A token of the filter language.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok<'a> {
    /// A field name or a keyword (`and`, `or`, `not`, `in`, `true`, `false`).
    Ident(&'a str),
    /// A quoted string, escapes resolved.
    Str(String),
    /// A finite number.
    Num(f64),
    /// `==`, `!=`, `<`, `<=`, `>`, `>=`.
    Op(Op),
    /// `~`.
    Tilde,
    Open,
    Close,
    Comma,
    /// The end of the text.
    End,
}

/// A token and the byte offset where it starts.
#[derive(Clone, Debug)]
pub(crate) struct Token<'a> {
    pub(crate) tok: Tok<'a>,
    pub(crate) pos: usize,
}

/// An error and its byte offset.
pub(crate) type Located = (usize, ErrorKind);

pub(crate) struct Lexer<'a> {
    src: &'a str,
    /// Byte offset of the next unread character; always a char boundary.
    pos: usize,
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(src: &'a str) -> Self {
        Lexer { src, pos: 0 }
    }

    fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or("")
    }

    /// The next token; [`Tok::End`] at the end, as often as asked.
    pub(crate) fn token(&mut self) -> Result<Token<'a>, Located> {
        let rest = self.rest();
        let trimmed = rest.trim_start_matches([' ', '\t', '\n', '\r']);
        self.pos += rest.len() - trimmed.len();
        let start = self.pos;
        let Some(c) = trimmed.chars().next() else {
            return Ok(Token {
                tok: Tok::End,
                pos: start,
            });
        };
        let two = |second: char| trimmed[c.len_utf8()..].starts_with(second);
        let (tok, len) = match c {
            '(' => (Tok::Open, 1),
            ')' => (Tok::Close, 1),
            ',' => (Tok::Comma, 1),
            '~' => (Tok::Tilde, 1),
            '=' if two('=') => (Tok::Op(Op::Eq), 2),
            '=' => return Err((start, ErrorKind::SingleEquals)),
            '!' if two('=') => (Tok::Op(Op::Ne), 2),
            '<' if two('=') => (Tok::Op(Op::Le), 2),
            '<' => (Tok::Op(Op::Lt), 1),
            '>' if two('=') => (Tok::Op(Op::Ge), 2),
            '>' => (Tok::Op(Op::Gt), 1),
            '"' | '\'' => return self.string(c),
            '0'..='9' | '-' | '+' => return self.number(c),
            c if c.is_alphabetic() || c == '_' => {
                let len = trimmed.find(|c| !ident_char(c)).unwrap_or(trimmed.len());
                (Tok::Ident(&trimmed[..len]), len)
            }
            c => return Err((start, ErrorKind::UnexpectedChar(c))),
        };
        self.pos += len;
        Ok(Token { tok, pos: start })
    }

    /// A string opened by `quote` at `self.pos`.
    fn string(&mut self, quote: char) -> Result<Token<'a>, Located> {
        let start = self.pos;
        let body = start + 1; // both quotes are one byte
        let mut out = String::new();
        let mut chars = self.src.get(body..).unwrap_or("").char_indices();
        while let Some((i, c)) = chars.next() {
            if c == quote {
                self.pos = body + i + 1;
                return Ok(Token {
                    tok: Tok::Str(out),
                    pos: start,
                });
            }
            if c == '\\' {
                match chars.next() {
                    Some((_, e @ ('\\' | '"' | '\''))) => out.push(e),
                    Some((_, e)) => return Err((body + i, ErrorKind::BadEscape(e))),
                    None => break,
                }
            } else {
                out.push(c);
            }
        }
        Err((start, ErrorKind::UnterminatedString))
    }

    /// A number starting with `first` at `self.pos`:
    /// `[+-]? digits ('.' digits)? ([eE] [+-]? digits)?`.
    fn number(&mut self, first: char) -> Result<Token<'a>, Located> {
        let start = self.pos;
        let b = self.src.as_bytes();
        let digits = |i: &mut usize| {
            let from = *i;
            while b.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i > from
        };
        let mut i = start;
        if matches!(first, '+' | '-') {
            i += 1;
        }
        if !digits(&mut i) {
            // A sign not followed by a digit.
            return Err((start, ErrorKind::UnexpectedChar(first)));
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            if !digits(&mut i) {
                return Err((start, ErrorKind::BadNumber));
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if !digits(&mut i) {
                return Err((start, ErrorKind::BadNumber));
            }
        }
        let text = self.src.get(start..i).unwrap_or("");
        // A number ends where a token may begin: `12abc` and `1.2.3` are errors.
        let after = self.src.get(i..).unwrap_or("").chars().next();
        if after.is_some_and(|c| ident_char(c) || c == '+') {
            return Err((start, ErrorKind::BadNumber));
        }
        let n: f64 = text.parse().map_err(|_| (start, ErrorKind::BadNumber))?;
        if !n.is_finite() {
            return Err((start, ErrorKind::NumberOutOfRange));
        }
        self.pos = i;
        Ok(Token {
            tok: Tok::Num(n),
            pos: start,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(src: &str) -> Result<Vec<(Tok<'_>, usize)>, Located> {
        let mut lex = Lexer::new(src);
        let mut out = Vec::new();
        loop {
            let t = lex.token()?;
            if t.tok == Tok::End {
                out.push((t.tok, t.pos));
                return Ok(out);
            }
            out.push((t.tok, t.pos));
        }
    }

    #[test]
    fn tokens_and_positions() {
        let got = all(" a.b==-1.5e+2 <='x\\'' ~(\t)\n,!=>>=<").expect("lexes");
        let want = vec![
            (Tok::Ident("a.b"), 1),
            (Tok::Op(Op::Eq), 4),
            (Tok::Num(-150.0), 6),
            (Tok::Op(Op::Le), 14),
            (Tok::Str("x'".into()), 16),
            (Tok::Tilde, 22),
            (Tok::Open, 23),
            (Tok::Close, 25),
            (Tok::Comma, 27),
            (Tok::Op(Op::Ne), 28),
            (Tok::Op(Op::Gt), 30),
            (Tok::Op(Op::Ge), 31),
            (Tok::Op(Op::Lt), 33),
            (Tok::End, 34),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn end_repeats() {
        let mut lex = Lexer::new("  ");
        for _ in 0..3 {
            assert_eq!(lex.token().map(|t| (t.tok, t.pos)), Ok((Tok::End, 2)));
        }
    }
}
