//! A lifecycle policy's text read into typed rules: the one grammar PutLifecyclePolicy,
//! StartLifecyclePolicyPreview and the expiry job all use. The parser never evaluates.

use berth_iam::glob::Glob;
use serde_json::{Map, Value};

use crate::registry::push::filter_glob;

/// The length ECR accepts for a lifecycle policy text (its model: 100 to 30720).
pub const TEXT_LENGTH: std::ops::RangeInclusive<usize> = 100..=30_720;

/// The most `*` wildcards one tag pattern may hold (ECR's limit).
pub const MAX_WILDCARDS: usize = 4;

/// A parsed lifecycle policy: its rules, lowest `rulePriority` (applied first) first.
#[derive(Debug, Clone)]
pub struct LifecyclePolicy {
    pub rules: Vec<Rule>,
}

/// One rule. Its action is always to expire (see [`LifecyclePolicy::parse`] on
/// `transition`).
#[derive(Debug, Clone)]
pub struct Rule {
    /// `rulePriority`: unique in the policy, at least 1.
    pub priority: i64,
    pub description: Option<String>,
    pub tags: TagSelection,
    pub count: Count,
}

/// Which images a rule looks at (`tagStatus` with its tag list).
#[derive(Debug, Clone)]
pub enum TagSelection {
    /// Images with at least one tag that satisfy the list.
    Tagged(TagList),
    /// Images without tags.
    Untagged,
    /// Every image.
    Any,
}

/// `tagPrefixList` or `tagPatternList`: an image satisfies it when every entry matches
/// at least one of its tags.
#[derive(Debug, Clone)]
pub enum TagList {
    Prefixes(Vec<String>),
    /// The patterns as written, and compiled (`*`: any run of characters).
    Patterns(Vec<(String, Glob)>),
}

/// `countType` with its `countNumber` (and `countUnit`, always days).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// `imageCountMoreThan`: keep the newest N (by push time) of the selected images.
    MoreThan(u32),
    /// `sinceImagePushed`: pushed more than N days ago.
    SincePushedDays(u32),
    /// `sinceImagePulled`: last pulled (pushed, if never pulled) more than N days ago.
    SincePulledDays(u32),
}

/// Why a policy text is not a lifecycle policy: what is wrong and where. The ECR front
/// door wraps it in its own words (`Lifecycle policy validation failure: …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError(pub String);

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PolicyError {}

fn fail<T>(m: impl Into<String>) -> Result<T, PolicyError> {
    Err(PolicyError(m.into()))
}

/// Refuse members a JSON object may not have (a misspelt `tagPrefixList` would otherwise
/// select nothing without a word).
fn only(at: &str, obj: &Map<String, Value>, allowed: &[&str]) -> Result<(), PolicyError> {
    let extra: Vec<&String> = obj
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .collect();
    if extra.is_empty() {
        return Ok(());
    }
    fail(format!(
        "{at} has properties which are not allowed: {extra:?} (allowed: {allowed:?})"
    ))
}

fn count_number(at: &str, sel: &Map<String, Value>) -> Result<u32, PolicyError> {
    match sel.get("countNumber").map(|v| (v.as_u64(), v)) {
        Some((Some(n), _)) if (1..=u64::from(u32::MAX)).contains(&n) => Ok(n as u32),
        None => fail(format!("{at}.countNumber is required")),
        Some((_, v)) => fail(format!(
            "{at}.countNumber must be an integer of at least 1, not {v}"
        )),
    }
}

/// A tag list's entries: non-empty strings, at least one.
fn tag_list(at: &str, v: &Value) -> Result<Vec<String>, PolicyError> {
    let list = v
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| PolicyError(format!("{at} must be a list of at least one tag")))?;
    let mut out = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        match item.as_str() {
            Some(s) if !s.is_empty() => out.push(s.to_string()),
            _ => return fail(format!("{at}[{i}] must be a non-empty string, not {item}")),
        }
    }
    Ok(out)
}

impl LifecyclePolicy {
    /// Read a policy text as ECR does, refusing what it refuses:
    ///
    /// - 100 to 30720 characters of JSON: `{"rules": [rule, …]}`, at least one rule;
    /// - each rule: `rulePriority` (an integer of at least 1, unique in the policy),
    ///   optional `description`, `selection`, `action`;
    /// - `selection.tagStatus`: `tagged` (with exactly one of `tagPrefixList` or
    ///   `tagPatternList`, each a list of non-empty strings; a pattern holds at most four
    ///   `*`), `untagged` or `any` (neither takes a tag list);
    /// - `selection.countType`: `imageCountMoreThan` (no `countUnit`), or
    ///   `sinceImagePushed` / `sinceImagePulled` (`countUnit` `days`); `countNumber` an
    ///   integer of at least 1;
    /// - a rule with `tagStatus` `any` has the highest `rulePriority`; at most one rule
    ///   selects untagged images; no two tagged rules have the same tag list.
    ///
    /// Refused rather than ignored: `action.type` `transition`, `countType`
    /// `sinceImageTransitioned` and `selection.storageClass` `archive`. Berth has one
    /// storage class: a policy that archives would be stored, previewed and run as doing
    /// nothing, while its author believes images are being archived; saying so at once is
    /// the honest answer. `storageClass` `standard` (the only class) is accepted.
    pub fn parse(text: &str) -> Result<LifecyclePolicy, PolicyError> {
        let n = text.chars().count();
        if !TEXT_LENGTH.contains(&n) {
            return fail(format!(
                "the policy text must have 100 to 30720 characters, not {n}"
            ));
        }
        let v: Value = serde_json::from_str(text)
            .map_err(|e| PolicyError(format!("the policy is not valid JSON: {e}")))?;
        let top = v
            .as_object()
            .ok_or_else(|| PolicyError("the policy must be a JSON object".into()))?;
        only("the policy", top, &["rules"])?;
        let rules = top
            .get("rules")
            .ok_or_else(|| {
                PolicyError("object has missing required properties ([\"rules\"])".into())
            })?
            .as_array()
            .ok_or_else(|| PolicyError("\"rules\" must be a list of rules".into()))?;
        if rules.is_empty() {
            return fail("\"rules\" must hold at least one rule");
        }
        let mut out: Vec<Rule> = Vec::with_capacity(rules.len());
        for (i, rule) in rules.iter().enumerate() {
            let parsed = parse_rule(&format!("rules[{i}]"), rule)?;
            if let Some(other) = out.iter().find(|r| r.priority == parsed.priority) {
                return fail(format!(
                    "rulePriority {} is used by more than one rule ({} and rules[{i}])",
                    parsed.priority,
                    other.description.as_deref().unwrap_or("an earlier rule")
                ));
            }
            out.push(parsed);
        }
        out.sort_by_key(|r| r.priority);
        let highest = out.last().map_or(0, |r| r.priority);
        if let Some(any) = out
            .iter()
            .find(|r| matches!(r.tags, TagSelection::Any) && r.priority != highest)
        {
            return fail(format!(
                "the rule with tagStatus any (rulePriority {}) must have the highest rulePriority ({highest} is higher)",
                any.priority
            ));
        }
        let untagged: Vec<i64> = out
            .iter()
            .filter(|r| matches!(r.tags, TagSelection::Untagged))
            .map(|r| r.priority)
            .collect();
        if untagged.len() > 1 {
            return fail(format!(
                "only one rule may select untagged images; rulePriority {untagged:?} all do"
            ));
        }
        for (i, a) in out.iter().enumerate() {
            for b in &out[i + 1..] {
                if let (TagSelection::Tagged(x), TagSelection::Tagged(y)) = (&a.tags, &b.tags) {
                    if x.same_as(y) {
                        return fail(format!(
                            "rules {} and {} select the same tags: each tagged rule needs its own tag list",
                            a.priority, b.priority
                        ));
                    }
                }
            }
        }
        Ok(LifecyclePolicy { rules: out })
    }
}

impl TagList {
    /// The same kind of list with the same entries, in any order.
    fn same_as(&self, other: &TagList) -> bool {
        fn sorted(mut v: Vec<&str>) -> Vec<&str> {
            v.sort_unstable();
            v.dedup();
            v
        }
        match (self, other) {
            (TagList::Prefixes(a), TagList::Prefixes(b)) => {
                sorted(a.iter().map(String::as_str).collect())
                    == sorted(b.iter().map(String::as_str).collect())
            }
            (TagList::Patterns(a), TagList::Patterns(b)) => {
                sorted(a.iter().map(|p| p.0.as_str()).collect())
                    == sorted(b.iter().map(|p| p.0.as_str()).collect())
            }
            _ => false,
        }
    }

    /// Whether an image with these tags satisfies the list: every entry matches one of
    /// the tags at least.
    pub fn matches(&self, tags: &[String]) -> bool {
        match self {
            TagList::Prefixes(ps) => ps.iter().all(|p| tags.iter().any(|t| t.starts_with(p))),
            TagList::Patterns(ps) => ps.iter().all(|(_, g)| tags.iter().any(|t| g.matches(t))),
        }
    }
}

fn parse_rule(at: &str, rule: &Value) -> Result<Rule, PolicyError> {
    let obj = rule
        .as_object()
        .ok_or_else(|| PolicyError(format!("{at} must be a JSON object")))?;
    only(
        at,
        obj,
        &["rulePriority", "description", "selection", "action"],
    )?;
    let priority = match obj.get("rulePriority").map(|v| (v.as_i64(), v)) {
        Some((Some(p), _)) if (1..=i64::from(i32::MAX)).contains(&p) => p,
        None => return fail(format!("{at}.rulePriority is required")),
        Some((_, v)) => {
            return fail(format!(
                "{at}.rulePriority must be an integer of at least 1, not {v}"
            ))
        }
    };
    let description = match obj.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => return fail(format!("{at}.description must be a string, not {v}")),
    };
    let action = obj
        .get("action")
        .and_then(Value::as_object)
        .ok_or_else(|| PolicyError(format!("{at}.action is required: {{\"type\": \"expire\"}}")))?;
    only(
        &format!("{at}.action"),
        action,
        &["type", "targetStorageClass"],
    )?;
    match action.get("type").and_then(Value::as_str) {
        Some("expire") if action.get("targetStorageClass").is_none() => {}
        Some("expire") => {
            return fail(format!(
                "{at}.action.targetStorageClass can only be given with type transition"
            ))
        }
        Some("transition") => {
            return fail(format!(
                "{at}.action.type transition is not supported: this registry has no archive storage class, so only expire is"
            ))
        }
        _ => return fail(format!("{at}.action.type must be expire")),
    }
    let sel_at = format!("{at}.selection");
    let sel = obj
        .get("selection")
        .and_then(Value::as_object)
        .ok_or_else(|| PolicyError(format!("{sel_at} is required")))?;
    only(
        &sel_at,
        sel,
        &[
            "tagStatus",
            "tagPrefixList",
            "tagPatternList",
            "storageClass",
            "countType",
            "countUnit",
            "countNumber",
        ],
    )?;
    match sel.get("storageClass").map(|v| v.as_str()) {
        None | Some(Some("standard")) => {}
        Some(Some("archive")) => {
            return fail(format!(
                "{sel_at}.storageClass archive is not supported: this registry has no archive storage class"
            ))
        }
        Some(_) => return fail(format!("{sel_at}.storageClass must be standard")),
    }
    let prefixes = sel
        .get("tagPrefixList")
        .map(|v| tag_list(&format!("{sel_at}.tagPrefixList"), v))
        .transpose()?;
    let patterns = sel
        .get("tagPatternList")
        .map(|v| tag_list(&format!("{sel_at}.tagPatternList"), v))
        .transpose()?;
    let status = sel.get("tagStatus").and_then(Value::as_str).unwrap_or("");
    let tags = match status {
        "tagged" => match (prefixes, patterns) {
            (Some(p), None) => TagSelection::Tagged(TagList::Prefixes(p)),
            (None, Some(p)) => {
                let mut compiled = Vec::with_capacity(p.len());
                for (i, pattern) in p.into_iter().enumerate() {
                    let stars = pattern.matches('*').count();
                    if stars > MAX_WILDCARDS {
                        return fail(format!(
                            "{sel_at}.tagPatternList[{i}] {pattern:?} has {stars} wildcards (*); a pattern may have at most {MAX_WILDCARDS}"
                        ));
                    }
                    let glob = filter_glob(&pattern);
                    compiled.push((pattern, glob));
                }
                TagSelection::Tagged(TagList::Patterns(compiled))
            }
            (Some(_), Some(_)) => {
                return fail(format!(
                    "{sel_at}: give tagPrefixList or tagPatternList, not both"
                ))
            }
            (None, None) => {
                return fail(format!(
                    "{sel_at}: tagPrefixList or tagPatternList is required when tagStatus is tagged"
                ))
            }
        },
        "untagged" | "any" => {
            if prefixes.is_some() || patterns.is_some() {
                return fail(format!(
                    "{sel_at}: tagPrefixList and tagPatternList can only be used when tagStatus is tagged, not {status}"
                ));
            }
            if status == "untagged" {
                TagSelection::Untagged
            } else {
                TagSelection::Any
            }
        }
        _ => {
            return fail(format!(
                "{sel_at}.tagStatus must be tagged, untagged or any, not {:?}",
                sel.get("tagStatus")
                    .map(Value::to_string)
                    .unwrap_or_default()
            ))
        }
    };
    let count_type = sel.get("countType").and_then(Value::as_str).unwrap_or("");
    let unit = sel.get("countUnit");
    let count = match count_type {
        "imageCountMoreThan" => {
            if unit.is_some() {
                return fail(format!(
                    "{sel_at}: countUnit cannot be used with imageCountMoreThan"
                ));
            }
            Count::MoreThan(count_number(&sel_at, sel)?)
        }
        "sinceImagePushed" | "sinceImagePulled" => {
            if unit.and_then(Value::as_str) != Some("days") {
                return fail(format!(
                    "{sel_at}: countUnit must be days with {count_type}"
                ));
            }
            let n = count_number(&sel_at, sel)?;
            if count_type == "sinceImagePushed" {
                Count::SincePushedDays(n)
            } else {
                Count::SincePulledDays(n)
            }
        }
        "sinceImageTransitioned" => {
            return fail(format!(
                "{sel_at}.countType sinceImageTransitioned is not supported: this registry has no archive storage class"
            ))
        }
        _ => {
            return fail(format!(
                "{sel_at}.countType must be imageCountMoreThan, sinceImagePushed or sinceImagePulled, not {count_type:?}"
            ))
        }
    };
    Ok(Rule {
        priority,
        description,
        tags,
        count,
    })
}
