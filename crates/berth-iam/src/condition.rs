//! Condition operators: policy values compiled per operator family (globs, numbers,
//! instants, CIDR blocks, ARN patterns), and their evaluation against the context with
//! IAM's rules for missing keys, `IfExists`, `ForAllValues:`/`ForAnyValue:`, several
//! values (OR; NOR for negated operators) and policy variables.

use base64::Engine;

use crate::arn::ArnPattern;
use crate::glob::{match_tokens, Glob};
use crate::policy::ast::{BaseOperator, Condition, Family, Operator, Qualifier};
use crate::request::{Context, ContextValue};
use crate::values::{parse_date, parse_number, Cidr};
use crate::variables::{self, Template};

/// A string value that may hold variables.
#[derive(Debug, Clone)]
pub enum Text {
    Plain(Box<str>),
    Template(Template),
}

impl Text {
    fn new(s: &str, vars: bool, lower: bool) -> Text {
        let t = variables::parse(s, vars);
        match t.as_text() {
            Some(plain) if lower => Text::Plain(plain.to_lowercase().into()),
            Some(plain) => Text::Plain(plain.into()),
            None => Text::Template(t),
        }
    }
}

/// A `StringLike` value.
#[derive(Debug, Clone)]
pub enum Like {
    Glob(Glob),
    Template(Template),
}

/// Policy values compiled for their operator.
#[derive(Debug, Clone)]
pub enum Values {
    Exact(Vec<Text>),
    /// Ignore-case values; plain ones are stored lower-cased.
    IgnoreCase(Vec<Text>),
    Like(Vec<Like>),
    Number(Vec<f64>),
    Date(Vec<i64>),
    Bool(Vec<Text>),
    Binary(Vec<Vec<u8>>),
    Ip(Vec<Cidr>),
    Arn(Vec<ArnPattern>),
    Null(Vec<Option<bool>>),
}

/// One key of one operator block, ready to evaluate.
#[derive(Debug, Clone)]
pub struct CompiledCondition {
    pub operator: Operator,
    /// The key as written in the policy (for explanations).
    pub key: Box<str>,
    /// The key lower-cased (for lookup), and its hash.
    pub key_lc: Box<str>,
    key_hash: u64,
    pub values: Values,
}

/// Something that wants to know which keys a decision looked for and did not find.
pub trait MissingKeys {
    fn missing(&mut self, key: &str);
}

impl MissingKeys for () {
    #[inline]
    fn missing(&mut self, _: &str) {}
}

fn decode_base64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .unwrap_or_else(|_| s.as_bytes().to_vec())
}

/// Compile every key of every operator block of a statement.
pub fn compile(conditions: &[Condition], vars: bool) -> Vec<CompiledCondition> {
    let mut out = Vec::new();
    for c in conditions {
        let op = c.operator;
        for (key, values) in &c.entries {
            let v = values.iter();
            let compiled = match op.base.family() {
                Family::String => match op.base {
                    BaseOperator::StringLike | BaseOperator::StringNotLike => Values::Like(
                        v.map(|s| {
                            let t = variables::parse(s, vars);
                            match t.static_tokens() {
                                Some(toks) => Like::Glob(Glob::from_tokens(toks)),
                                None => Like::Template(t),
                            }
                        })
                        .collect(),
                    ),
                    BaseOperator::StringEqualsIgnoreCase
                    | BaseOperator::StringNotEqualsIgnoreCase => {
                        Values::IgnoreCase(v.map(|s| Text::new(s, vars, true)).collect())
                    }
                    _ => Values::Exact(v.map(|s| Text::new(s, vars, false)).collect()),
                },
                Family::Numeric => Values::Number(v.filter_map(|s| parse_number(s)).collect()),
                Family::Date => Values::Date(v.filter_map(|s| parse_date(s)).collect()),
                Family::Bool => Values::Bool(v.map(|s| Text::new(s, vars, true)).collect()),
                Family::Binary => Values::Binary(v.map(|s| decode_base64(s)).collect()),
                Family::Ip => Values::Ip(v.filter_map(|s| Cidr::parse(s)).collect()),
                Family::Arn => Values::Arn(
                    v.map(|s| ArnPattern::condition(variables::parse(s, vars)))
                        .collect(),
                ),
                Family::Null => Values::Null(
                    v.map(|s| match s.to_ascii_lowercase().as_str() {
                        "true" => Some(true),
                        "false" => Some(false),
                        _ => None,
                    })
                    .collect(),
                ),
            };
            let key_lc = key.to_ascii_lowercase();
            out.push(CompiledCondition {
                operator: op,
                key: key.as_str().into(),
                key_hash: crate::request::key_hash(&key_lc),
                key_lc: key_lc.into(),
                values: compiled,
            });
        }
    }
    out
}

/// Resolve a text value; on a missing variable, report its keys and give `None`.
fn resolve<'t>(
    t: &'t Text,
    ctx: &Context,
    missing: &mut dyn MissingKeys,
) -> Option<std::borrow::Cow<'t, str>> {
    match t {
        Text::Plain(s) => Some(std::borrow::Cow::Borrowed(s)),
        Text::Template(tpl) => match tpl.resolve(ctx) {
            Some(s) => Some(std::borrow::Cow::Owned(s)),
            None => {
                report_unresolved(tpl, ctx, missing);
                None
            }
        },
    }
}

fn report_unresolved(tpl: &Template, ctx: &Context, missing: &mut dyn MissingKeys) {
    for k in tpl.keys() {
        if ctx.get(k).is_none() {
            missing.missing(k);
        }
    }
}

fn eq_ignore_case(a: &str, b_lower: &str) -> bool {
    if a.is_ascii() && b_lower.is_ascii() {
        a.eq_ignore_ascii_case(b_lower)
    } else {
        a.to_lowercase() == b_lower
    }
}

impl CompiledCondition {
    /// Evaluate this key's condition against the request context.
    pub fn evaluate(&self, ctx: &Context, missing: &mut dyn MissingKeys) -> bool {
        let op = self.operator;
        let entry = ctx.get_hashed(&self.key_lc, self.key_hash);
        let present = entry.is_some_and(|e| !e.values.is_empty());
        if let Values::Null(values) = &self.values {
            return match op.qualifier {
                Some(Qualifier::ForAllValues) => true,
                Some(Qualifier::ForAnyValue) => false,
                None => values.contains(&Some(!present)),
            };
        }
        let negated = op.base.is_negated();
        let Some(entry) = entry.filter(|_| present) else {
            if entry.is_none() {
                missing.missing(&self.key);
            }
            // ForAllValues holds over nothing; ForAnyValue needs a value, and IfExists
            // does not rescue it (IAM User Guide on multivalued keys: a ForAnyValue
            // operator returns false on an empty data set, IfExists or not).
            return match op.qualifier {
                Some(Qualifier::ForAllValues) => true,
                Some(Qualifier::ForAnyValue) => false,
                None => op.if_exists || negated,
            };
        };
        match op.qualifier {
            None => {
                // A set of values needs a set qualifier; without one nothing matches.
                if entry.multivalued {
                    return false;
                }
                self.one(&entry.values[0], ctx, missing)
            }
            Some(Qualifier::ForAllValues) => entry.values.iter().all(|r| self.one(r, ctx, missing)),
            Some(Qualifier::ForAnyValue) => entry.values.iter().any(|r| self.one(r, ctx, missing)),
        }
    }

    /// One request value against all policy values: OR, or NOR for negated operators.
    /// A typed operator whose request value cannot be read as its type never matches.
    fn one(&self, r: &ContextValue, ctx: &Context, missing: &mut dyn MissingKeys) -> bool {
        use BaseOperator::*;
        let base = self.operator.base;
        let negated = base.is_negated();
        let any = match &self.values {
            Values::Exact(ps) => ps.iter().any(|p| match p {
                Text::Plain(p) => **p == *r.text,
                Text::Template(t) => match t.matches_exact(&r.text, ctx) {
                    Some(m) => m,
                    None => {
                        report_unresolved(t, ctx, missing);
                        false
                    }
                },
            }),
            Values::IgnoreCase(ps) => ps.iter().any(|p| match p {
                Text::Plain(p) => eq_ignore_case(&r.text, p),
                Text::Template(_) => resolve(p, ctx, missing)
                    .is_some_and(|p| r.text.to_lowercase() == p.to_lowercase()),
            }),
            Values::Like(ps) => ps.iter().any(|p| match p {
                Like::Glob(g) => g.matches(&r.text),
                Like::Template(t) => {
                    let mut toks = Vec::new();
                    if t.resolve_tokens(ctx, &mut toks) {
                        match_tokens(&toks, &r.text)
                    } else {
                        report_unresolved(t, ctx, missing);
                        false
                    }
                }
            }),
            Values::Number(ps) => {
                let Some(x) = r.number() else { return false };
                if negated {
                    return ps.iter().all(|&p| x != p);
                }
                return ps.iter().any(|&p| match base {
                    NumericEquals => x == p,
                    NumericLessThan => x < p,
                    NumericLessThanEquals => x <= p,
                    NumericGreaterThan => x > p,
                    _ => x >= p,
                });
            }
            Values::Date(ps) => {
                let Some(x) = r.date() else { return false };
                if negated {
                    return ps.iter().all(|&p| x != p);
                }
                return ps.iter().any(|&p| match base {
                    DateEquals => x == p,
                    DateLessThan => x < p,
                    DateLessThanEquals => x <= p,
                    DateGreaterThan => x > p,
                    _ => x >= p,
                });
            }
            Values::Bool(ps) => ps
                .iter()
                .any(|p| resolve(p, ctx, missing).is_some_and(|p| r.text.eq_ignore_ascii_case(&p))),
            Values::Binary(ps) => {
                let bytes = decode_base64(&r.text);
                ps.contains(&bytes)
            }
            Values::Ip(ps) => {
                let Some(ip) = r.ip() else { return false };
                ps.iter().any(|c| c.contains(ip))
            }
            Values::Arn(ps) => {
                if crate::arn::Arn::parse(&r.text).is_none() {
                    // Not an ARN: no ARN operator matches, negated or not.
                    return false;
                } else {
                    ps.iter().any(|p| match p.matches(&r.text, ctx) {
                        Ok(m) => m,
                        Err(_) => {
                            if let ArnPattern::Dynamic(t) = p {
                                report_unresolved(t, ctx, missing);
                            }
                            false
                        }
                    })
                }
            }
            Values::Null(_) => false,
        };
        any != negated
    }
}
