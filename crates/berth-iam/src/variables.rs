//! Policy variables (`${aws:username}`, `${aws:PrincipalTag/team, 'none'}`, `${*}`, `${?}`,
//! `${$}`): parsed once into a [`Template`], resolved per request. Only `2012-10-17`
//! policies have variables; older ones read `${...}` as plain text. A resolved value is
//! always literal text: a `*` coming from a tag value is never a wildcard.

use crate::glob::{push_lit, tokenize, Tok};

/// Where variables take their values from: the request context.
pub trait VariableSource {
    /// The single value of a key (lower-cased name), or `None` if absent or multivalued.
    fn single_value(&self, key_lc: &str) -> Option<&str>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Policy text; in wildcard contexts its `*` and `?` are wildcards.
    Text(Box<str>),
    /// `${*}`, `${?}` or `${$}`: always the literal character.
    Escaped(char),
    /// `${key}` or `${key, 'default'}`; `key` is lower-cased (keys are case-insensitive).
    Var {
        key: Box<str>,
        default: Option<Box<str>>,
    },
}

/// A policy string, split into text and variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub parts: Vec<Part>,
}

/// A problem with a `${...}` reference that makes it unusable; the text is then kept literal.
pub fn parse(s: &str, variables_enabled: bool) -> Template {
    let mut parts = Vec::new();
    if !variables_enabled || !s.contains("${") {
        parts.push(Part::Text(s.into()));
        return Template { parts };
    }
    let mut rest = s;
    let mut text = String::new();
    while let Some(open) = rest.find("${") {
        text.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        match after
            .find('}')
            .and_then(|close| Some((close, variable(&after[..close])?)))
        {
            Some((close, part)) => {
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text).into()));
                }
                parts.push(part);
                rest = &after[close + 1..];
            }
            None => {
                text.push_str("${");
                rest = after;
            }
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        parts.push(Part::Text(text.into()));
    }
    Template { parts }
}

/// Read the inside of `${...}`; `None` if it is not a well-formed reference.
fn variable(inner: &str) -> Option<Part> {
    match inner {
        "*" => return Some(Part::Escaped('*')),
        "?" => return Some(Part::Escaped('?')),
        "$" => return Some(Part::Escaped('$')),
        _ => {}
    }
    let (key, default) = match inner.split_once(',') {
        Some((key, rest)) => {
            let rest = rest.trim_start();
            let quoted = rest.strip_prefix('\'')?.strip_suffix('\'')?;
            (key, Some(quoted.into()))
        }
        None => (inner, None),
    };
    if key.is_empty()
        || key
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '$')
    {
        return None;
    }
    Some(Part::Var {
        key: key.to_ascii_lowercase().into(),
        default,
    })
}

impl Template {
    pub fn literal(s: &str) -> Template {
        Template {
            parts: vec![Part::Text(s.into())],
        }
    }

    pub fn has_variables(&self) -> bool {
        self.parts.iter().any(|p| !matches!(p, Part::Text(_)))
    }

    /// The plain text when there are no variables or escapes.
    pub fn as_text(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Text(t)] => Some(t),
            _ => None,
        }
    }

    /// Keys referenced as variables (lower-cased).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var { key, .. } => Some(&**key),
            _ => None,
        })
    }

    /// Substitute every variable; `None` if one has no value and no default.
    pub fn resolve(&self, ctx: &dyn VariableSource) -> Option<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Escaped(c) => out.push(*c),
                Part::Var { key, default } => out.push_str(value_of(ctx, key, default)?),
            }
        }
        Some(out)
    }

    /// Is `value` exactly this template with its variables substituted? `None` if a
    /// variable has no value. Compares in place, without building the string.
    pub fn matches_exact(&self, value: &str, ctx: &dyn VariableSource) -> Option<bool> {
        let mut rest = value;
        let mut ok = true;
        for p in &self.parts {
            let piece: &str = match p {
                Part::Text(t) => t,
                Part::Escaped(c) => match c {
                    '*' => "*",
                    '?' => "?",
                    _ => "$",
                },
                Part::Var { key, default } => value_of(ctx, key, default)?,
            };
            if ok {
                match rest.strip_prefix(piece) {
                    Some(r) => rest = r,
                    None => ok = false,
                }
            }
        }
        Some(ok && rest.is_empty())
    }

    /// Substitute every variable into wildcard tokens: policy text keeps its wildcards,
    /// substituted values and escapes are literal. `false` if a variable has no value.
    pub fn resolve_tokens(&self, ctx: &dyn VariableSource, out: &mut Vec<Tok>) -> bool {
        for p in &self.parts {
            match p {
                Part::Text(t) => tokenize(t, out),
                Part::Escaped(c) => push_lit(out, c.encode_utf8(&mut [0; 4])),
                Part::Var { key, default } => match value_of(ctx, key, default) {
                    Some(v) => push_lit(out, v),
                    None => return false,
                },
            }
        }
        true
    }

    /// Tokens for a template without variables (escapes allowed).
    pub fn static_tokens(&self) -> Option<Vec<Tok>> {
        let mut out = Vec::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => tokenize(t, &mut out),
                Part::Escaped(c) => push_lit(&mut out, c.encode_utf8(&mut [0; 4])),
                Part::Var { .. } => return None,
            }
        }
        Some(out)
    }
}

fn value_of<'a>(
    ctx: &'a dyn VariableSource,
    key: &str,
    default: &'a Option<Box<str>>,
) -> Option<&'a str> {
    ctx.single_value(key).or(default.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::glob::match_tokens;

    struct Ctx;
    impl VariableSource for Ctx {
        fn single_value(&self, key: &str) -> Option<&str> {
            match key {
                "aws:username" => Some("alice"),
                "aws:principaltag/team" => Some("r*d"),
                _ => None,
            }
        }
    }

    #[test]
    fn parses_and_resolves() {
        let t = parse("repository/${aws:username}/*", true);
        assert_eq!(t.resolve(&Ctx).unwrap(), "repository/alice/*");
        let t = parse("x-${AWS:UserName}", true);
        assert_eq!(t.resolve(&Ctx).unwrap(), "x-alice");
        let t = parse("${aws:PrincipalTag/missing, 'none'}", true);
        assert_eq!(t.resolve(&Ctx).unwrap(), "none");
        let t = parse("${aws:PrincipalTag/missing}", true);
        assert_eq!(t.resolve(&Ctx), None);
        let t = parse("a${*}b${?}c${$}", true);
        assert_eq!(t.resolve(&Ctx).unwrap(), "a*b?c$");
        // Version 2008: literal.
        let t = parse("${aws:username}", false);
        assert_eq!(t.as_text(), Some("${aws:username}"));
        // Malformed references stay literal.
        assert_eq!(
            parse("${aws:username", true).as_text(),
            Some("${aws:username")
        );
        assert_eq!(parse("${}", true).as_text(), Some("${}"));
        assert_eq!(parse("${a b}", true).as_text(), Some("${a b}"));
    }

    #[test]
    fn substituted_values_are_never_wildcards() {
        let t = parse("team-${aws:PrincipalTag/team}", true);
        let mut toks = Vec::new();
        assert!(t.resolve_tokens(&Ctx, &mut toks));
        assert!(match_tokens(&toks, "team-r*d"));
        assert!(!match_tokens(&toks, "team-rxd"));
        let t = parse("a${*}*", true);
        let toks = t.static_tokens().unwrap();
        assert!(match_tokens(&toks, "a*xyz"));
        assert!(!match_tokens(&toks, "abc"));
    }
}
