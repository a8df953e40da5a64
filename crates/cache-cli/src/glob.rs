//! Key patterns: a small glob (`*` any run of characters, `?` one character, `\` makes the next
//! character literal), matched against the whole key. Keys that are not UTF-8 are matched on their
//! lossy UTF-8 form, where each invalid byte sequence is one `U+FFFD` character.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    Literal(char),
    AnyChar,
    AnyRun,
}

/// A parsed pattern.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Glob {
    source: String,
    tokens: Vec<Token>,
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.source)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Glob {
    /// Parses `pattern`; a trailing lone `\` is an error. Used as clap's value parser.
    pub(crate) fn parse(pattern: &str) -> Result<Self, String> {
        let mut tokens = Vec::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            tokens.push(match c {
                '*' => Token::AnyRun,
                '?' => Token::AnyChar,
                '\\' => match chars.next() {
                    Some(escaped) => Token::Literal(escaped),
                    None => {
                        return Err(format!(
                            "pattern {pattern:?} ends with a lone '\\'; write '\\\\' for a backslash"
                        ));
                    }
                },
                other => Token::Literal(other),
            });
        }
        Ok(Glob {
            source: pattern.to_owned(),
            tokens,
        })
    }

    /// Whether the whole of `key` matches.
    pub(crate) fn matches_key(&self, key: &[u8]) -> bool {
        self.matches(&String::from_utf8_lossy(key))
    }

    /// Whether the whole of `text` matches. Linear backtracking over the last `*` seen, so a
    /// pattern like `*a*a*a*b` cannot take exponential time.
    pub(crate) fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let (mut at_text, mut at_token) = (0, 0);
        // The last `*`: its token index and the text index it currently stands for.
        let mut last_run: Option<(usize, usize)> = None;
        while at_text < text.len() {
            match self.tokens.get(at_token) {
                Some(Token::AnyRun) => {
                    last_run = Some((at_token, at_text));
                    at_token += 1;
                }
                Some(Token::AnyChar) => {
                    at_text += 1;
                    at_token += 1;
                }
                Some(Token::Literal(c)) if *c == text[at_text] => {
                    at_text += 1;
                    at_token += 1;
                }
                _ => match last_run {
                    // Let the last `*` swallow one more character and retry from there.
                    Some((run_token, run_text)) => {
                        last_run = Some((run_token, run_text + 1));
                        at_token = run_token + 1;
                        at_text = run_text + 1;
                    }
                    None => return false,
                },
            }
        }
        self.tokens[at_token..]
            .iter()
            .all(|token| *token == Token::AnyRun)
    }
}

#[cfg(test)]
mod tests {
    use super::Glob;

    fn matches(pattern: &str, text: &str) -> bool {
        Glob::parse(pattern).unwrap().matches(text)
    }

    #[test]
    fn star_question_and_literals() {
        assert!(matches("layout:*", "layout:42"));
        assert!(matches("layout:*", "layout:"));
        assert!(!matches("layout:*", "moergo:42"));
        assert!(matches("*:42", "layout:42"));
        assert!(matches("a?c", "abc"));
        assert!(!matches("a?c", "ac"));
        assert!(matches("*", ""));
        assert!(!matches("", "a"));
        assert!(matches("a*b*c", "a-x-b-y-c"));
        assert!(!matches("a*b*c", "a-x-c-y-b"));
        assert!(matches("é?", "éü"), "characters, not bytes");
    }

    #[test]
    fn the_whole_key_must_match() {
        assert!(!matches("layout", "layout:42"));
        assert!(!matches("42", "layout:42"));
    }

    #[test]
    fn backslash_escapes() {
        assert!(matches(r"a\*", "a*"));
        assert!(!matches(r"a\*", "ab"));
        assert!(matches(r"\\", "\\"));
        let err = Glob::parse("oops\\").unwrap_err();
        assert!(err.contains("oops"), "{err}");
    }

    #[test]
    fn non_utf8_bytes_match_one_replacement_character_each() {
        let glob = Glob::parse("k?").unwrap();
        assert!(glob.matches_key(&[b'k', 0xFF]));
        assert!(!glob.matches_key(&[b'k', b'a', 0xFF]));
    }

    #[test]
    fn pathological_patterns_finish_quickly() {
        let text = "a".repeat(10_000);
        assert!(!matches("*a*a*a*a*a*a*b", &text));
    }
}
