//! IAM wildcard matching: `*` matches any run of characters (possibly empty), `?` exactly
//! one character, everything else itself. Patterns are compiled once into tokens with
//! fast paths for the common shapes (`*`, exact text, `prefix*`, `*suffix`).

/// One token of a wildcard pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    /// Text that must appear as is (never re-read for wildcards).
    Lit(Box<str>),
    /// `*`: any run of characters.
    Star,
    /// `?`: exactly one character.
    One,
}

/// Read wildcard text into tokens: `*` and `?` are wildcards, every other character literal.
pub fn tokenize(pattern: &str, out: &mut Vec<Tok>) {
    let mut lit_start = 0;
    for (i, c) in pattern.char_indices() {
        if c == '*' || c == '?' {
            if lit_start < i {
                push_lit(out, &pattern[lit_start..i]);
            }
            if c == '*' {
                // Consecutive stars are one star.
                if out.last() != Some(&Tok::Star) {
                    out.push(Tok::Star);
                }
            } else {
                out.push(Tok::One);
            }
            lit_start = i + 1;
        }
    }
    if lit_start < pattern.len() {
        push_lit(out, &pattern[lit_start..]);
    }
}

/// Append literal text, merging with a preceding literal.
pub fn push_lit(out: &mut Vec<Tok>, text: &str) {
    if text.is_empty() {
        return;
    }
    if let Some(Tok::Lit(prev)) = out.last_mut() {
        let mut s = String::with_capacity(prev.len() + text.len());
        s.push_str(prev);
        s.push_str(text);
        *prev = s.into_boxed_str();
    } else {
        out.push(Tok::Lit(text.into()));
    }
}

/// Match `s` against a token list (anchored at both ends).
pub fn match_tokens(toks: &[Tok], s: &str) -> bool {
    let mut ti = 0;
    let mut si = 0;
    // Resume point after the most recent `*`: (token index after it, text index it has consumed to).
    let mut star: Option<(usize, usize)> = None;
    loop {
        if let Some(tok) = toks.get(ti) {
            match tok {
                Tok::Star => {
                    star = Some((ti + 1, si));
                    ti += 1;
                    continue;
                }
                Tok::One => {
                    if let Some(c) = s[si..].chars().next() {
                        si += c.len_utf8();
                        ti += 1;
                        continue;
                    }
                }
                Tok::Lit(l) => {
                    if s[si..].starts_with(&**l) {
                        si += l.len();
                        ti += 1;
                        continue;
                    }
                }
            }
        } else if si == s.len() {
            return true;
        }
        // Mismatch: let the last `*` swallow one more character, or fail.
        match star {
            Some((after, consumed)) if consumed < s.len() => {
                let next = consumed + s[consumed..].chars().next().map_or(1, char::len_utf8);
                star = Some((after, next));
                ti = after;
                si = next;
            }
            _ => return false,
        }
    }
}

/// String equality without a library call for short strings (most policy and request
/// strings are short, and `memcmp` costs more than the comparison).
#[inline(always)]
pub fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    // Word loads instead of a `memcmp` call.
    let word8 = |s: &[u8], i: usize| u64::from_le_bytes(s[i..i + 8].try_into().unwrap_or([0; 8]));
    let word4 = |s: &[u8], i: usize| u32::from_le_bytes(s[i..i + 4].try_into().unwrap_or([0; 4]));
    match n {
        0 => true,
        1..=3 => a == b,
        4..=7 => word4(a, 0) == word4(b, 0) && word4(a, n - 4) == word4(b, n - 4),
        8..=128 => {
            // Whole words, then the last word (overlapping).
            let mut i = 0;
            while i + 8 < n {
                if word8(a, i) != word8(b, i) {
                    return false;
                }
                i += 8;
            }
            word8(a, n - 8) == word8(b, n - 8)
        }
        _ => a == b,
    }
}

/// A compiled wildcard pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Glob {
    /// `*`
    Any,
    /// No wildcard at all.
    Exact(Box<str>),
    /// `text*`
    Prefix(Box<str>),
    /// `*text`
    Suffix(Box<str>),
    /// Anything else.
    Tokens(Box<[Tok]>),
}

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        // The common shapes without building tokens.
        match pattern.bytes().filter(|&b| b == b'*' || b == b'?').count() {
            0 => return Glob::Exact(pattern.into()),
            1 if pattern == "*" => return Glob::Any,
            1 if pattern.ends_with('*') => {
                return Glob::Prefix(pattern[..pattern.len() - 1].into())
            }
            _ => {}
        }
        let mut toks = Vec::new();
        tokenize(pattern, &mut toks);
        Glob::from_tokens(toks)
    }

    /// A glob that matches only `text`, wildcard characters included.
    pub fn literal(text: &str) -> Glob {
        Glob::Exact(text.into())
    }

    pub fn from_tokens(toks: Vec<Tok>) -> Glob {
        match toks.as_slice() {
            [] => Glob::Exact("".into()),
            [Tok::Star] => Glob::Any,
            [Tok::Lit(l)] => Glob::Exact(l.clone()),
            [Tok::Lit(l), Tok::Star] => Glob::Prefix(l.clone()),
            [Tok::Star, Tok::Lit(l)] => Glob::Suffix(l.clone()),
            _ => Glob::Tokens(toks.into_boxed_slice()),
        }
    }

    #[inline]
    pub fn matches(&self, s: &str) -> bool {
        match self {
            Glob::Any => true,
            Glob::Exact(l) => str_eq(l, s),
            Glob::Prefix(p) => s.starts_with(&**p),
            Glob::Suffix(p) => s.ends_with(&**p),
            Glob::Tokens(t) => match_tokens(t, s),
        }
    }

    /// True if the pattern has no wildcard.
    pub fn is_exact(&self) -> bool {
        matches!(self, Glob::Exact(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "", true),
            ("*", "anything/at:all", true),
            ("ecr:*", "ecr:putimage", true),
            ("ecr:*", "ecs:putimage", false),
            ("ecr:get*", "ecr:getdownloadurlforlayer", true),
            ("ecr:get*", "ecr:batchgetimage", false),
            ("ecr:*image", "ecr:batchgetimage", true),
            ("ecr:*image", "ecr:batchgetimages", false),
            ("ecr:?utimage", "ecr:putimage", true),
            ("ecr:?utimage", "ecr:utimage", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXcYb", false),
            ("a?c", "abc", true),
            ("a?c", "aéc", true),
            ("a?c", "abbc", false),
            ("**", "x", true),
            ("repo/team-a/*", "repo/team-a/x/y", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("", "", true),
            ("", "x", false),
            (
                "*a*a*a*a*b",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                false,
            ),
        ];
        for &(p, s, want) in cases {
            assert_eq!(Glob::new(p).matches(s), want, "{p:?} vs {s:?}");
            let mut toks = Vec::new();
            tokenize(p, &mut toks);
            assert_eq!(match_tokens(&toks, s), want, "tokens {p:?} vs {s:?}");
        }
    }

    #[test]
    fn str_eq_agrees_with_eq_at_every_length_and_position() {
        for n in 0..140 {
            let a: String = (0..n).map(|i| (b'a' + (i % 26) as u8) as char).collect();
            assert!(str_eq(&a, &a));
            assert!(!str_eq(&a, &format!("{a}x")));
            for pos in 0..n {
                let mut b = a.clone().into_bytes();
                b[pos] = b'#';
                let b = String::from_utf8(b).unwrap();
                assert!(!str_eq(&a, &b), "n={n} pos={pos}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn compiled_shapes_agree_with_the_token_matcher(p in "[ab*?:/]{0,8}", v in "[ab:/]{0,10}") {
            let mut toks = Vec::new();
            tokenize(&p, &mut toks);
            proptest::prop_assert_eq!(Glob::new(&p).matches(&v), match_tokens(&toks, &v));
            let (pc, vc): (Vec<char>, Vec<char>) = (p.chars().collect(), v.chars().collect());
            proptest::prop_assert_eq!(match_tokens(&toks, &v), naive(&pc, &vc));
        }
    }

    /// The definition, by backtracking: the reference the matcher is checked against.
    fn naive(p: &[char], s: &[char]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some('*') => naive(&p[1..], s) || (!s.is_empty() && naive(p, &s[1..])),
            Some('?') => !s.is_empty() && naive(&p[1..], &s[1..]),
            Some(c) => s.first() == Some(c) && naive(&p[1..], &s[1..]),
        }
    }

    #[test]
    fn literal_ignores_wildcards() {
        assert!(Glob::literal("a*").matches("a*"));
        assert!(!Glob::literal("a*").matches("ab"));
    }
}
