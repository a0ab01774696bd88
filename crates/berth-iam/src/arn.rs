//! Amazon Resource Names: parse and format, and the per-segment wildcard matching that
//! `Resource`, `NotResource` and the `Arn*` condition operators use. An ARN has six
//! segments split at its first five colons; a wildcard never crosses a segment, but
//! inside the last segment (the resource) `*` matches `/` and `:` too.

use std::fmt;

use crate::glob::{match_tokens, Glob, Tok};
use crate::variables::{Template, VariableSource};

/// A parsed ARN, borrowing its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arn<'a> {
    /// `partition:service:region:account`, the text between `arn:` and the fifth colon.
    pub head: &'a str,
    pub partition: &'a str,
    pub service: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    pub resource: &'a str,
}

impl<'a> Arn<'a> {
    /// Parse `arn:partition:service:region:account:resource`; the resource may hold colons.
    pub fn parse(s: &'a str) -> Option<Arn<'a>> {
        let [_, partition, service, region, account, resource] = split6(s)?;
        if !s.starts_with("arn:") || partition.is_empty() || service.is_empty() {
            return None;
        }
        Some(Arn {
            head: &s[4..s.len() - resource.len() - 1],
            partition,
            service,
            region,
            account,
            resource,
        })
    }

    fn segments(&self) -> [&'a str; 5] {
        [
            self.partition,
            self.service,
            self.region,
            self.account,
            self.resource,
        ]
    }
}

impl fmt::Display for Arn<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{}:{}:{}:{}:{}",
            self.partition, self.service, self.region, self.account, self.resource
        )
    }
}

/// Split at the first five colons; `None` if there are fewer than five.
#[inline]
pub fn split6(s: &str) -> Option<[&str; 6]> {
    let b = s.as_bytes();
    let mut cuts = [0usize; 5];
    let mut n = 0;
    for (i, &c) in b.iter().enumerate() {
        if c == b':' {
            cuts[n] = i;
            n += 1;
            if n == 5 {
                break;
            }
        }
    }
    if n < 5 {
        return None;
    }
    Some([
        &s[..cuts[0]],
        &s[cuts[0] + 1..cuts[1]],
        &s[cuts[1] + 1..cuts[2]],
        &s[cuts[2] + 1..cuts[3]],
        &s[cuts[3] + 1..cuts[4]],
        &s[cuts[4] + 1..],
    ])
}

/// Split at up to the first five colons (for patterns, which may be short).
pub fn split_upto6(s: &str) -> Vec<&str> {
    s.splitn(6, ':').collect()
}

/// A compiled `Resource`/`NotResource` entry or `Arn*` condition value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArnPattern {
    /// `*`: every resource, including the request resource `*`.
    Any,
    /// An ARN pattern: partition, service, region, account globs and the resource part.
    Segments { head: Head, resource: ResourcePart },
    /// A pattern that is not ARN-shaped: matched as a glob over the whole string.
    Whole(Glob),
    /// A template whose variables can touch any segment (condition values): resolved, then split.
    Dynamic(Template),
    /// Never matches (e.g. a short ARN without a trailing wildcard).
    Never,
}

/// The partition, service, region and account of an ARN pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// No wildcard: `partition:service:region:account`, compared in one go.
    Exact(Box<str>),
    Globs(Box<[Glob; 4]>),
}

impl Head {
    fn new(globs: [Glob; 4]) -> Head {
        if globs.iter().all(Glob::is_exact) {
            let mut joined = String::new();
            for (i, g) in globs.iter().enumerate() {
                if i > 0 {
                    joined.push(':');
                }
                if let Glob::Exact(t) = g {
                    joined.push_str(t);
                }
            }
            Head::Exact(joined.into())
        } else {
            Head::Globs(Box::new(globs))
        }
    }

    #[inline]
    fn matches(&self, arn: &Arn) -> bool {
        match self {
            Head::Exact(h) => crate::glob::str_eq(h, arn.head),
            Head::Globs(globs) => globs.iter().zip(arn.segments()).all(|(g, s)| g.matches(s)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourcePart {
    Static(Glob),
    /// The resource segment holds policy variables.
    Template(Template),
}

impl ArnPattern {
    /// Compile a Resource entry: variables (if enabled) may appear only in the resource part,
    /// which the caller has validated.
    pub fn resource(text: &str, variables: bool) -> ArnPattern {
        if text == "*" {
            return ArnPattern::Any;
        }
        if !text.starts_with("arn:") {
            return ArnPattern::Whole(Glob::new(text));
        }
        let parts = split_upto6(text);
        let mut head: [Glob; 4] = [Glob::Any, Glob::Any, Glob::Any, Glob::Any];
        if parts.len() < 6 {
            // A short ARN pattern stands for all the segments it leaves out only if it ends
            // in a wildcard (`arn:aws:ecr:*`); otherwise it names no resource.
            if !parts.last().is_some_and(|p| p.contains('*')) {
                return ArnPattern::Never;
            }
            for (i, p) in parts[1..].iter().enumerate() {
                head[i] = Glob::new(p);
            }
            return ArnPattern::Segments {
                head: Head::new(head),
                resource: ResourcePart::Static(Glob::Any),
            };
        }
        // partition:service:region:account as written; compared in one go when exact.
        let head_text = &text[4..text.len() - parts[5].len() - 1];
        let head = if head_text.contains(['*', '?']) {
            for i in 0..4 {
                head[i] = Glob::new(parts[i + 1]);
            }
            Head::Globs(Box::new(head))
        } else {
            Head::Exact(head_text.into())
        };
        let resource = if variables && parts[5].contains("${") {
            let t = crate::variables::parse(parts[5], variables);
            match t.static_tokens() {
                Some(toks) => ResourcePart::Static(Glob::from_tokens(toks)),
                None => ResourcePart::Template(t),
            }
        } else {
            ResourcePart::Static(Glob::new(parts[5]))
        };
        ArnPattern::Segments { head, resource }
    }

    /// Compile an `Arn*` condition value: variables may stand anywhere.
    pub fn condition(template: Template) -> ArnPattern {
        match template.as_text() {
            Some(text) => ArnPattern::resource(text, false),
            None => ArnPattern::Dynamic(template),
        }
    }

    /// Does `value` (a request resource or context value) match?
    /// `Err(())` when a variable could not be resolved (then the entry matches nothing).
    pub fn matches(&self, value: &str, ctx: &dyn VariableSource) -> Result<bool, Unresolved> {
        self.matches_parsed(value, Arn::parse(value).as_ref(), ctx)
    }

    /// [`ArnPattern::matches`] with the value already read as an ARN (`None` if it is not one).
    pub fn matches_parsed(
        &self,
        value: &str,
        arn: Option<&Arn>,
        ctx: &dyn VariableSource,
    ) -> Result<bool, Unresolved> {
        match self {
            ArnPattern::Any => Ok(true),
            ArnPattern::Never => Ok(false),
            ArnPattern::Whole(g) => Ok(g.matches(value)),
            ArnPattern::Segments { head, resource } => {
                let Some(arn) = arn else {
                    return Ok(false);
                };
                if !head.matches(arn) {
                    return Ok(false);
                }
                match resource {
                    ResourcePart::Static(g) => Ok(g.matches(arn.resource)),
                    ResourcePart::Template(t) => {
                        let mut toks = Vec::new();
                        if !t.resolve_tokens(ctx, &mut toks) {
                            return Err(Unresolved);
                        }
                        Ok(match_tokens(&toks, arn.resource))
                    }
                }
            }
            ArnPattern::Dynamic(t) => {
                let mut toks = Vec::new();
                if !t.resolve_tokens(ctx, &mut toks) {
                    return Err(Unresolved);
                }
                Ok(match_split_tokens(&toks, value))
            }
        }
    }
}

/// A variable in the pattern had no value in the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unresolved;

/// Match resolved tokens against an ARN segment by segment (colons in literal text split).
fn match_split_tokens(toks: &[Tok], value: &str) -> bool {
    if let [Tok::Star] = toks {
        return true;
    }
    let Some(v) = split6(value) else {
        return false;
    };
    if v[0] != "arn" {
        return false;
    }
    // Split the token list into segments at the first five colons of its literal text.
    let mut segs: Vec<Vec<Tok>> = vec![Vec::new()];
    for t in toks {
        match t {
            Tok::Lit(l) if segs.len() < 6 => {
                let mut rest: &str = l;
                while segs.len() < 6 {
                    match rest.find(':') {
                        Some(i) => {
                            if let Some(last) = segs.last_mut() {
                                crate::glob::push_lit(last, &rest[..i]);
                            }
                            segs.push(Vec::new());
                            rest = &rest[i + 1..];
                        }
                        None => break,
                    }
                }
                if let Some(last) = segs.last_mut() {
                    crate::glob::push_lit(last, rest);
                }
            }
            other => {
                if let Some(last) = segs.last_mut() {
                    last.push(other.clone());
                }
            }
        }
    }
    if segs.len() < 6 {
        if !segs.last().is_some_and(|s| s.contains(&Tok::Star)) {
            return false;
        }
        while segs.len() < 6 {
            segs.push(vec![Tok::Star]);
        }
    }
    segs.iter().zip(v).all(|(p, s)| match_tokens(p, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Ctx;
    impl VariableSource for Ctx {
        fn single_value(&self, key: &str) -> Option<&str> {
            match key {
                "aws:username" => Some("alice"),
                "aws:principalarn" => Some("arn:aws:iam::111122223333:user/alice"),
                _ => None,
            }
        }
    }

    #[test]
    fn parse_and_format() {
        let a = Arn::parse("arn:aws:ecr:us-east-1:111122223333:repository/team/app").unwrap();
        assert_eq!(a.service, "ecr");
        assert_eq!(a.account, "111122223333");
        assert_eq!(a.resource, "repository/team/app");
        assert_eq!(
            a.to_string(),
            "arn:aws:ecr:us-east-1:111122223333:repository/team/app"
        );
        let a = Arn::parse("arn:aws:iam::111122223333:user/a:b").unwrap();
        assert_eq!(a.region, "");
        assert_eq!(a.resource, "user/a:b");
        assert!(Arn::parse("arn:aws:ecr:us-east-1").is_none());
        assert!(Arn::parse("foo:aws:ecr:r:a:x").is_none());
    }

    #[test]
    fn resource_patterns() {
        let repo = "arn:aws:ecr:us-east-1:111122223333:repository/team-a/x/y";
        let cases: &[(&str, &str, bool)] = &[
            ("*", repo, true),
            ("*", "*", true),
            ("arn:aws:ecr:*:111122223333:repository/*", repo, true),
            (
                "arn:aws:ecr:us-east-1:111122223333:repository/team-a/*",
                repo,
                true,
            ),
            (
                "arn:aws:ecr:us-east-1:111122223333:repository/team-b/*",
                repo,
                false,
            ),
            ("arn:aws:ecr:*", repo, true),
            ("arn:aws:ecr:us-east-1:*", repo, true),
            ("arn:aws:ecs:*", repo, false),
            ("arn:aws:ecr", repo, false),
            // A wildcard in the region cannot swallow colons.
            ("arn:aws:ecr:*:repository/*", repo, false),
            (
                "arn:aws:ecr:us-east-1:111122223333:repository/*",
                "*",
                false,
            ),
            (
                "arn:aws:ecr:us-east-?:111122223333:repository/team-a/*",
                repo,
                true,
            ),
            ("arn:aws:ecr:us-east-1:999999999999:*", repo, false),
        ];
        for &(p, v, want) in cases {
            assert_eq!(
                ArnPattern::resource(p, false).matches(v, &Ctx),
                Ok(want),
                "{p} vs {v}"
            );
        }
    }

    #[test]
    fn arn_like_never_crosses_a_colon() {
        let p = ArnPattern::condition(Template::literal("arn:aws:svc:*:111122223333:finance/*"));
        let v = "arn:aws:svc:us-east-2:999999999999:store/abc:111122223333:finance/x";
        assert_eq!(p.matches(v, &Ctx), Ok(false));
        assert!(Glob::new("arn:aws:svc:*:111122223333:finance/*").matches(v));
        assert_eq!(p.matches("not-an-arn", &Ctx), Ok(false));
    }

    #[test]
    fn variables_in_resource_and_conditions() {
        let p = ArnPattern::resource(
            "arn:aws:ecr:us-east-1:111122223333:repository/${aws:username}/*",
            true,
        );
        let ok = "arn:aws:ecr:us-east-1:111122223333:repository/alice/app";
        let other = "arn:aws:ecr:us-east-1:111122223333:repository/bob/app";
        assert_eq!(p.matches(ok, &Ctx), Ok(true));
        assert_eq!(p.matches(other, &Ctx), Ok(false));
        let p = ArnPattern::resource(
            "arn:aws:ecr:us-east-1:111122223333:repository/${aws:userid}/*",
            true,
        );
        assert_eq!(p.matches(ok, &Ctx), Err(Unresolved));
        let p = ArnPattern::condition(crate::variables::parse("${aws:PrincipalArn}", true));
        assert_eq!(
            p.matches("arn:aws:iam::111122223333:user/alice", &Ctx),
            Ok(true)
        );
        assert_eq!(
            p.matches("arn:aws:iam::111122223333:user/bob", &Ctx),
            Ok(false)
        );
    }
}
