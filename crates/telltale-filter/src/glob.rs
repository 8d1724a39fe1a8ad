//! Glob patterns: `*` matches any run of characters (also none), `?` exactly
//! one character (a Unicode scalar value, not a byte). There are no
//! character classes and no escapes: `[`, `]` and `\` match themselves; to
//! match a literal `*` or `?` use `==` instead of `~`.
//!
//! Written here rather than taken from a crate: the small crates that fit
//! (`wildmatch`, for one) would be a new dependency for some sixty lines,
//! and `globset` brings in regex. A pattern is split once, at parse time,
//! into a head, middle pieces and a tail between the stars. The head and
//! tail have a fixed length in characters, so each can match in one place
//! only; the middle pieces are found leftmost-first, which is always right
//! because a star may absorb anything in between. No backtracking: a match
//! costs at most O(text × pattern).

/// A compiled glob pattern.
#[derive(Clone, Debug)]
pub(crate) struct Glob {
    /// The pattern as written, to show it again.
    pattern: Box<str>,
    /// The pattern split at its stars.
    shape: Shape,
}

#[derive(Clone, Debug)]
enum Shape {
    /// No star: the whole text must match this one segment.
    Whole(Segment),
    /// At least one star: `head*middle[0]*…*tail`.
    Stars {
        /// Must match at the start of the text.
        head: Segment,
        /// Each found in order, leftmost first; empty segments dropped.
        middle: Vec<Segment>,
        /// Must match at the end of the text.
        tail: Segment,
    },
}

/// A run of pattern between stars: literal text and `?`s.
#[derive(Clone, Debug, Default)]
struct Segment {
    /// Literal runs and runs of `?`, in order, never two of a kind in a row.
    pieces: Vec<Piece>,
    /// How many characters of text this segment always matches.
    chars: usize,
}

#[derive(Clone, Debug)]
enum Piece {
    /// Literal text, matched byte for byte.
    Lit(Box<str>),
    /// This many `?`: any that many characters.
    Any(usize),
}

impl Glob {
    /// Compiles `pattern`. Every string is a valid pattern.
    pub(crate) fn new(pattern: &str) -> Self {
        let mut parts = pattern.split('*');
        let first = Segment::new(parts.next().unwrap_or(""));
        let rest: Vec<&str> = parts.collect();
        let shape = match rest.split_last() {
            None => Shape::Whole(first),
            Some((last, middle)) => Shape::Stars {
                head: first,
                middle: middle
                    .iter()
                    .filter(|m| !m.is_empty())
                    .map(|m| Segment::new(m))
                    .collect(),
                tail: Segment::new(last),
            },
        };
        Glob {
            pattern: pattern.into(),
            shape,
        }
    }

    /// Whether `s` contains `*` or `?`, that is, whether it means more than
    /// itself as a pattern.
    pub(crate) fn has_wildcard(s: &str) -> bool {
        s.contains(['*', '?'])
    }

    /// The pattern as written.
    pub(crate) fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Whether the whole of `text` matches.
    pub(crate) fn matches(&self, text: &str) -> bool {
        match &self.shape {
            Shape::Whole(seg) => seg.match_at(text, 0) == Some(text.len()),
            Shape::Stars { head, middle, tail } => {
                let Some(mut from) = head.match_at(text, 0) else {
                    return false;
                };
                let Some(to) = tail_start(text, tail.chars) else {
                    return false;
                };
                if from > to || tail.match_at(text, to) != Some(text.len()) {
                    return false;
                }
                // The middle pieces must fit, in order, between head and tail.
                let Some(window) = text.get(..to) else {
                    return false;
                };
                for seg in middle {
                    match seg.find(window, from) {
                        Some(end) => from = end,
                        None => return false,
                    }
                }
                true
            }
        }
    }
}

/// The byte offset where the last `chars` characters of `text` start.
fn tail_start(text: &str, chars: usize) -> Option<usize> {
    if chars == 0 {
        return Some(text.len());
    }
    text.char_indices().rev().nth(chars - 1).map(|(i, _)| i)
}

impl Segment {
    fn new(s: &str) -> Self {
        let mut seg = Segment::default();
        let mut lit = String::new();
        for c in s.chars() {
            seg.chars += 1;
            if c == '?' {
                if !lit.is_empty() {
                    seg.pieces.push(Piece::Lit(std::mem::take(&mut lit).into()));
                }
                match seg.pieces.last_mut() {
                    Some(Piece::Any(n)) => *n += 1,
                    _ => seg.pieces.push(Piece::Any(1)),
                }
            } else {
                lit.push(c);
            }
        }
        if !lit.is_empty() {
            seg.pieces.push(Piece::Lit(lit.into()));
        }
        seg
    }

    /// Matches this segment at byte `at` of `text`; the end of the match.
    fn match_at(&self, text: &str, at: usize) -> Option<usize> {
        let mut pos = at;
        for piece in &self.pieces {
            let rest = text.get(pos..)?;
            match piece {
                Piece::Lit(lit) => {
                    if !rest.starts_with(&**lit) {
                        return None;
                    }
                    pos += lit.len();
                }
                Piece::Any(n) => {
                    let mut it = rest.char_indices();
                    for _ in 0..*n {
                        it.next()?;
                    }
                    pos += it.offset();
                }
            }
        }
        Some(pos)
    }

    /// The end of the leftmost match of this segment in `text` starting at or
    /// after byte `from`.
    fn find(&self, text: &str, from: usize) -> Option<usize> {
        let rest = text.get(from..)?;
        for (i, _) in rest.char_indices() {
            if let Some(end) = self.match_at(text, from + i) {
                return Some(end);
            }
        }
        // An empty segment matches at the very end too; non-empty ones never
        // do, and empty ones are dropped from `middle` anyway.
        if self.chars == 0 {
            return Some(text.len());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (pattern, text, matches)
    const TABLE: &[(&str, &str, bool)] = &[
        // no wildcard: equality
        ("", "", true),
        ("", "a", false),
        ("abc", "abc", true),
        ("abc", "abcd", false),
        ("abc", "ab", false),
        ("[a]", "[a]", true),
        ("a\\b", "a\\b", true),
        // `*` alone, empty text, repeated stars
        ("*", "", true),
        ("*", "anything at all", true),
        ("**", "", true),
        ("***", "x", true),
        ("a*", "a", true),
        ("a*", "abc", true),
        ("a*", "ba", false),
        ("*a", "a", true),
        ("*a", "ba", true),
        ("*a", "ab", false),
        ("sensor-*", "sensor-", true),
        ("sensor-*", "sensor-12", true),
        ("sensor-*", "sensor", false),
        // `?`
        ("?", "", false),
        ("?", "a", true),
        ("?", "ab", false),
        ("??", "ab", true),
        ("a?c", "abc", true),
        ("a?c", "ac", false),
        ("?*?", "a", false),
        ("?*?", "ab", true),
        ("*?*", "", false),
        ("*?*", "x", true),
        ("*??", "x", false),
        ("*??", "xyz", true),
        // a*b*c
        ("a*b*c", "abc", true),
        ("a*b*c", "aXbYc", true),
        ("a*b*c", "abbbc", true),
        ("a*b*c", "acb", false),
        ("a*b*c", "abcbc", true),
        ("a*b*c", "abcb", false),
        ("a*b*c", "ab", false),
        ("*ab*ab*", "abab", true),
        ("*ab*ab*", "aba", false),
        ("*ab*ab*", "xxabyyabzz", true),
        // head and tail must not overlap
        ("ab*ba", "aba", false),
        ("ab*ba", "abba", true),
        ("a*a", "a", false),
        ("a*a", "aa", true),
        ("a*a", "aXa", true),
        // unicode: `?` is one character, not one byte
        ("?", "é", true),
        ("??", "é", false),
        ("caf?", "café", true),
        ("caf?-*", "café-☃", true),
        ("a?c", "a☃c", true),
        ("*☃", "x☃", true),
        ("☃*", "☃x", true),
        ("*?", "☃", true),
        ("?☃?", "é☃ü", true),
        ("*é*", "température", true),
        ("temp*", "température", true),
        ("*.*", "a.b", true),
        ("*.*", "ab", false),
    ];

    #[test]
    fn table() {
        for &(pattern, text, want) in TABLE {
            let got = Glob::new(pattern).matches(text);
            assert_eq!(got, want, "{pattern:?} ~ {text:?}");
            assert_eq!(
                reference(pattern, text),
                want,
                "reference {pattern:?} ~ {text:?}"
            );
        }
    }

    /// The obvious dynamic programme over characters, to check against.
    fn reference(pattern: &str, text: &str) -> bool {
        let p: Vec<char> = pattern.chars().collect();
        let t: Vec<char> = text.chars().collect();
        // m[j]: pattern[..i] matches text[..j]
        let mut m = vec![false; t.len() + 1];
        m[0] = true;
        for &pc in &p {
            let mut next = vec![false; t.len() + 1];
            for j in 0..=t.len() {
                next[j] = match pc {
                    '*' => m[j] || (j > 0 && next[j - 1]),
                    '?' => j > 0 && m[j - 1],
                    c => j > 0 && m[j - 1] && t[j - 1] == c,
                };
            }
            m = next;
        }
        m[t.len()]
    }

    #[test]
    fn agrees_with_reference_on_random_inputs() {
        let alphabet = ['a', 'b', '*', '?', 'é'];
        let mut rng = crate::tests::XorShift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let mut word = |max: u64| -> String {
                let len = rng.below(max);
                (0..len)
                    .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
                    .collect()
            };
            let pattern = word(7);
            let text: String = word(9).replace(['*', '?'], "b");
            assert_eq!(
                Glob::new(&pattern).matches(&text),
                reference(&pattern, &text),
                "{pattern:?} ~ {text:?}"
            );
        }
    }

    #[test]
    fn many_stars_do_not_backtrack() {
        // A backtracking matcher takes exponential time here.
        let pattern = "*a".repeat(30) + "*b*";
        let text = "a".repeat(2000);
        assert!(!Glob::new(&pattern).matches(&text));
        assert!(Glob::new(&pattern).matches(&(text + "b")));
    }

    #[test]
    fn wildcard_detection() {
        assert!(Glob::has_wildcard("a*"));
        assert!(Glob::has_wildcard("a?"));
        assert!(!Glob::has_wildcard("a-b.c"));
    }
}
