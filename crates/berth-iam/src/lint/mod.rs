//! Policy lint, in the manner of IAM Access Analyzer's ValidatePolicy: findings of four
//! types (ERROR, SECURITY_WARNING, WARNING, SUGGESTION) with an issue code, a sentence and
//! where in the document (JSON path, byte offset, line and column). Offline and pure.

pub mod catalog;

use std::fmt;

use crate::json::{self, Json, Value};
use crate::policy::ast::{BaseOperator, Effect, PolicyKind, PrincipalValue, Qualifier, Statement};
use crate::values::Cidr;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FindingType {
    /// The policy, or a part of it, does not work.
    Error,
    /// It grants more than is likely meant.
    SecurityWarning,
    /// A best practice is not followed.
    Warning,
    /// It can be simpler.
    Suggestion,
}

impl FindingType {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingType::Error => "ERROR",
            FindingType::SecurityWarning => "SECURITY_WARNING",
            FindingType::Warning => "WARNING",
            FindingType::Suggestion => "SUGGESTION",
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub finding_type: FindingType,
    /// `INVALID_ACTION`, `MISSING_VERSION`, … (Access Analyzer's check titles).
    pub issue_code: &'static str,
    pub details: String,
    /// JSON path (`Statement[0].Action[1]`); empty for the whole document.
    pub path: String,
    /// Byte offset in the document, and its line and column (from 1).
    pub offset: usize,
    pub line: usize,
    pub column: usize,
}

impl Finding {
    /// Whether Berth refuses to store a policy with this finding: every ERROR except an
    /// unknown action name, which IAM stores (and policies use as placeholders).
    pub fn refuses_write(&self) -> bool {
        self.finding_type == FindingType::Error && self.issue_code != "INVALID_ACTION"
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {} {}: {}",
            self.line,
            self.column,
            self.finding_type.as_str(),
            self.issue_code,
            self.details
        )?;
        if !self.path.is_empty() {
            write!(f, " ({})", self.path)?;
        }
        Ok(())
    }
}

struct Linter<'s> {
    src: &'s str,
    out: Vec<Finding>,
}

impl Linter<'_> {
    fn add(
        &mut self,
        t: FindingType,
        code: &'static str,
        details: String,
        path: String,
        offset: usize,
    ) {
        let (line, column) = json::line_column(self.src, offset);
        self.out.push(Finding {
            finding_type: t,
            issue_code: code,
            details,
            path,
            offset,
            line,
            column,
        });
    }
}

/// Values of an element that may be a string or an array of strings, with their spans.
fn strings<'a>(node: &'a Json<'a>) -> Vec<(usize, &'a str)> {
    match &node.value {
        Value::String(s) => vec![(node.start, s)],
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(|s| (i.start, s)))
            .collect(),
        _ => Vec::new(),
    }
}

/// Lint a policy document of a kind. A document that does not parse gets its problems
/// as ERROR findings and nothing else.
pub fn lint(src: &str, kind: PolicyKind) -> Vec<Finding> {
    let mut l = Linter {
        src,
        out: Vec::new(),
    };
    let doc = match json::parse(src) {
        Ok(d) => d,
        Err(e) => {
            l.add(
                FindingType::Error,
                "JSON_SYNTAX_ERROR",
                e.message.clone(),
                String::new(),
                e.offset,
            );
            return l.out;
        }
    };
    let policy = match crate::policy::parse::from_json(&doc, kind) {
        Ok(p) => p,
        Err(e) => {
            for p in e.problems {
                l.add(
                    FindingType::Error,
                    "INVALID_POLICY_ELEMENT",
                    p.message,
                    p.path,
                    p.offset,
                );
            }
            return l.out;
        }
    };
    if let Err(p) = crate::policy::parse::check_size(src, kind) {
        l.add(
            FindingType::Error,
            "POLICY_SIZE_EXCEEDS_QUOTA",
            p.message,
            String::new(),
            0,
        );
    }
    if doc.get("Version").is_none() {
        l.add(
            FindingType::Warning,
            "MISSING_VERSION",
            "Add \"Version\": \"2012-10-17\": without it the policy is read as 2008-10-17, where policy variables are not substituted".into(),
            String::new(),
            doc.start,
        );
    }
    let nodes: Vec<&Json> = match doc.get("Statement").map(|s| &s.value) {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(Value::Object(_)) => doc.get("Statement").into_iter().collect(),
        _ => Vec::new(),
    };
    for (i, (node, st)) in nodes.iter().zip(&policy.statements).enumerate() {
        statement(&mut l, i, node, st, kind, policy.variables_enabled());
    }
    // Statements that say the same thing twice, and Sids used twice.
    for (i, st) in policy.statements.iter().enumerate() {
        let bare = |s: &Statement| Statement {
            sid: None,
            ..s.clone()
        };
        if policy.statements[..i].iter().any(|o| bare(o) == bare(st)) {
            l.add(
                FindingType::Suggestion,
                "REDUNDANT_STATEMENT",
                format!("Statement[{i}] repeats an earlier statement; remove one of them"),
                format!("Statement[{i}]"),
                st.span.start,
            );
        } else if let Some(j) = policy.statements.iter().enumerate().position(|(j, o)| {
            // Of two statements that cover each other, only the later one is redundant.
            j != i
                && o.effect == st.effect
                && bare(o) != bare(st)
                && covers(o, st)
                && (j < i || !covers(st, o))
        }) {
            l.add(
                FindingType::Suggestion,
                "REDUNDANT_STATEMENT",
                format!(
                    "Statement[{i}] adds nothing: Statement[{j}] already {} all of it without a condition; remove it",
                    if st.effect == Effect::Allow { "allows" } else { "denies" }
                ),
                format!("Statement[{i}]"),
                st.span.start,
            );
        }
        if st.effect == Effect::Allow {
            if let Some(j) = policy
                .statements
                .iter()
                .position(|o| o.effect == Effect::Deny && covers(o, st))
            {
                l.add(
                    FindingType::Warning,
                    "SHADOWED_STATEMENT",
                    format!("Statement[{i}] never allows anything: Statement[{j}] denies all of it without a condition"),
                    format!("Statement[{i}]"),
                    st.span.start,
                );
            }
        }
        if let Some(sid) = st.sid.as_deref().filter(|s| !s.is_empty()) {
            if policy.statements[..i]
                .iter()
                .any(|o| o.sid.as_deref() == Some(sid))
            {
                l.add(
                    FindingType::Warning,
                    "UNIQUE_SIDS_RECOMMENDED",
                    format!("The Sid {sid:?} is used by more than one statement; give each statement its own"),
                    format!("Statement[{i}].Sid"),
                    st.span.start,
                );
            }
        }
    }
    l.out.sort_by_key(|f| (f.offset, f.finding_type));
    l.out
}

/// Whether pattern `big` matches everything pattern `small` matches (conservatively:
/// false when unsure). Actions compare without case.
fn pattern_covers(big: &str, small: &str, ignore_case: bool) -> bool {
    if big == "*" {
        return true;
    }
    let (big, small) = if ignore_case {
        (big.to_ascii_lowercase(), small.to_ascii_lowercase())
    } else {
        (big.to_string(), small.to_string())
    };
    if big.contains("${") {
        return big == small;
    }
    if !small.contains(['*', '?']) {
        return crate::glob::Glob::new(&big).matches(&small);
    }
    // A wildcard pattern is covered by a prefix pattern of its prefix.
    match big.strip_suffix('*') {
        Some(prefix) if !prefix.contains(['*', '?']) => small.starts_with(prefix),
        _ => big == small,
    }
}

/// Whether resource pattern `big` matches every ARN `small` matches: segment by segment,
/// as the engine matches them (a pattern without its six segments matches nothing).
fn arn_covers(big: &str, small: &str) -> bool {
    if big == "*" {
        return true;
    }
    if small.contains("${") || big.contains("${") {
        return big == small;
    }
    let b: Vec<&str> = big.splitn(6, ':').collect();
    let s: Vec<&str> = small.splitn(6, ':').collect();
    if b.len() != 6 || s.len() != 6 {
        return false;
    }
    b.iter().zip(&s).all(|(b, s)| pattern_covers(b, s, false))
}

/// Whether statement `big`, which has no condition, applies to every request `small`
/// applies to (same principals or `*`, every action and resource of `small`).
fn covers(big: &Statement, small: &Statement) -> bool {
    if !big.conditions.is_empty() || std::ptr::eq(big, small) {
        return false;
    }
    let principals = match (&big.principal, &small.principal) {
        (None, None) => true,
        (Some(b), Some(s)) if !b.negated && !s.negated => {
            b.value == PrincipalValue::Star || b.value == s.value
        }
        _ => false,
    };
    let list_covers =
        |b: &crate::policy::ast::Matchers, s: &crate::policy::ast::Matchers, ci: bool| {
            !b.negated
                && !s.negated
                && s.values
                    .iter()
                    .all(|sv| b.values.iter().any(|bv| pattern_covers(bv, sv, ci)))
        };
    let resources = match (&big.resource, &small.resource) {
        (None, None) => true,
        (Some(b), None) => !b.negated && b.values.iter().any(|v| v == "*"),
        (Some(b), Some(s)) => {
            !b.negated
                && !s.negated
                && s.values
                    .iter()
                    .all(|sv| b.values.iter().any(|bv| arn_covers(bv, sv)))
        }
        (None, Some(_)) => false,
    };
    principals && resources && list_covers(&big.action, &small.action, true)
}

fn statement(l: &mut Linter, i: usize, node: &Json, st: &Statement, kind: PolicyKind, vars: bool) {
    let at = format!("Statement[{i}]");
    if st.sid.as_deref() == Some("") {
        let off = node.get("Sid").map_or(node.start, |n| n.start);
        l.add(
            FindingType::Suggestion,
            "EMPTY_SID_VALUE",
            "The Sid is empty: remove it or name the statement".into(),
            format!("{at}.Sid"),
            off,
        );
    }
    // Actions.
    let action_key = if st.action.negated {
        "NotAction"
    } else {
        "Action"
    };
    let action_nodes = node.get(action_key).map(strings).unwrap_or_default();
    let mut registry_scoped = Vec::new();
    let mut writes = false;
    for (j, (off, a)) in action_nodes.iter().enumerate() {
        let path = if matches!(
            node.get(action_key).map(|n| &n.value),
            Some(Value::Array(_))
        ) {
            format!("{at}.{action_key}[{j}]")
        } else {
            format!("{at}.{action_key}")
        };
        if *a == "*" {
            writes = true;
            continue;
        }
        let Some((service, name)) = a.split_once(':') else {
            continue;
        };
        if !service.eq_ignore_ascii_case("ecr") {
            continue;
        }
        if name.contains(['*', '?']) {
            let pattern = crate::glob::Glob::new(&name.to_ascii_lowercase());
            writes |= catalog::ECR_WRITE_ACTIONS
                .iter()
                .any(|w| pattern.matches(&w.to_ascii_lowercase()));
            let any = catalog::ECR_REPOSITORY_ACTIONS
                .iter()
                .chain(catalog::ECR_REGISTRY_ACTIONS)
                .any(|w| pattern.matches(&w.to_ascii_lowercase()));
            if !any {
                l.add(
                    FindingType::Error,
                    "INVALID_ACTION",
                    format!("The pattern {a} matches no ECR action"),
                    path,
                    *off,
                );
            }
            continue;
        }
        match catalog::ecr_action(name) {
            Some(canonical) => {
                writes |= catalog::ECR_WRITE_ACTIONS.contains(&canonical);
                if catalog::ECR_REGISTRY_ACTIONS.contains(&canonical) {
                    registry_scoped.push((canonical, path, *off));
                }
            }
            None => {
                let hint = catalog::closest_ecr_action(name)
                    .map(|c| format!(" Did you mean ecr:{c}?"))
                    .unwrap_or_default();
                l.add(
                    FindingType::Error,
                    "INVALID_ACTION",
                    format!("The action {a} does not exist.{hint}"),
                    path,
                    *off,
                );
            }
        }
    }
    // Registry-wide actions need "Resource": "*".
    if !st.action.negated {
        match &st.resource {
            Some(r)
                if !r.negated
                    && !r.values.iter().any(|v| {
                        v == "*" || v.starts_with("arn:aws:ecr:*:*:*") || v == "arn:aws:ecr:*"
                    }) =>
            {
                for (a, path, off) in &registry_scoped {
                    l.add(
                        FindingType::Error,
                        "UNSUPPORTED_RESOURCE_ARN_IN_POLICY",
                        format!("The action ecr:{a} does not support resource-level permissions: it applies only with \"Resource\": \"*\""),
                        path.clone(),
                        *off,
                    );
                }
            }
            None if kind == PolicyKind::Repository => {
                for (a, path, off) in &registry_scoped {
                    l.add(
                        FindingType::Warning,
                        "NO_EFFECT_IN_REPOSITORY_POLICY",
                        format!("ecr:{a} acts on the registry, not a repository: a repository policy cannot grant or deny it"),
                        path.clone(),
                        *off,
                    );
                }
            }
            _ => {}
        }
    }
    // Policy variables need 2012-10-17.
    if !vars {
        let mut with_vars = node.get("Resource").map(strings).unwrap_or_default();
        with_vars.retain(|(_, v)| v.contains("${"));
        for (off, v) in with_vars {
            l.add(
                FindingType::Error,
                "VARIABLE_UNSUPPORTED_IN_VERSION",
                format!("{v:?} holds a policy variable, which only \"Version\": \"2012-10-17\" substitutes"),
                format!("{at}.Resource"),
                off,
            );
        }
    }
    conditions(l, &at, node, st);
    // NotPrincipal grants nothing in an Allow (AWS: "NotPrincipal must be used with
    // \"Effect\":\"Deny\""); a policy write refuses it.
    if st.effect == Effect::Allow && st.principal.as_ref().is_some_and(|p| p.negated) {
        let named = match st.sid.as_deref().filter(|s| !s.is_empty()) {
            Some(sid) => format!("{at} (Sid {sid:?})"),
            None => at.clone(),
        };
        l.add(
            FindingType::Error,
            "ALLOW_WITH_NOT_PRINCIPAL",
            format!("{named} uses NotPrincipal with \"Effect\": \"Allow\", which AWS does not support (NotPrincipal must be used with \"Effect\": \"Deny\") and which grants nothing; name the principals to allow in Principal, or use \"Principal\": \"*\" with a condition such as ArnNotEquals on aws:PrincipalArn"),
            format!("{at}.NotPrincipal"),
            node.get("NotPrincipal").map_or(node.start, |n| n.start),
        );
    }
    // Anyone may push or delete.
    let public = match &st.principal {
        Some(p) if !p.negated => match &p.value {
            PrincipalValue::Star => true,
            PrincipalValue::Map(m) => m.iter().any(|(_, vs)| vs.iter().any(|v| v == "*")),
        },
        _ => false,
    };
    if public && st.effect == Effect::Allow && writes && st.conditions.is_empty() {
        l.add(
            FindingType::SecurityWarning,
            "PUBLIC_WRITE_ACCESS",
            "\"Principal\": \"*\" is allowed to push or delete without a condition: anyone who can reach the registry can change it; name the principals or add a condition (aws:PrincipalOrgID, aws:SourceIp, …)".into(),
            format!("{at}.Principal"),
            node.get("Principal").map_or(node.start, |n| n.start),
        );
    }
}

fn conditions(l: &mut Linter, at: &str, node: &Json, st: &Statement) {
    let Some(Json {
        value: Value::Object(ops),
        ..
    }) = node.get("Condition")
    else {
        return;
    };
    for ((op_name, op_node), cond) in ops.iter().zip(&st.conditions) {
        let Value::Object(keys) = &op_node.value else {
            continue;
        };
        for (key, values_node) in keys {
            let key_lc = key.to_ascii_lowercase();
            let path = format!("{at}.Condition.{op_name}.\"{key}\"");
            let off = values_node.start;
            let op = cond.operator;
            if key_lc.starts_with("ecr:") && !catalog::is_ecr_key(&key_lc) {
                l.add(FindingType::Error, "INVALID_SERVICE_CONDITION_KEY", format!("ECR has no condition key {key}; it has ecr:ResourceTag/<key> and ecr:AccountSetting"), path.clone(), off);
            } else if key_lc.starts_with("aws:") && !catalog::is_global_key(&key_lc) {
                l.add(
                    FindingType::Error,
                    "INVALID_GLOBAL_CONDITION_KEY",
                    format!("{key} is not a global condition key"),
                    path.clone(),
                    off,
                );
            }
            let multivalued = catalog::MULTIVALUED_KEYS.contains(&key_lc.as_str());
            match op.qualifier {
                None if multivalued && op.base != BaseOperator::Null => l.add(
                    FindingType::Error,
                    "MISSING_QUALIFIER",
                    format!("The request context key {key} has multiple values. Use the ForAllValues or ForAnyValue condition key qualifiers with {op_name}"),
                    path.clone(),
                    off,
                ),
                Some(Qualifier::ForAllValues) if !multivalued && !key_lc.contains('/') => l.add(
                    FindingType::SecurityWarning,
                    "FORALLVALUES_WITH_SINGLE_VALUED_KEY",
                    format!("ForAllValues with the single-valued key {key} can be overly permissive (it is true when the key is absent). We recommend that you remove ForAllValues:"),
                    path.clone(),
                    off,
                ),
                Some(Qualifier::ForAllValues) if st.effect == Effect::Allow => l.add(
                    FindingType::SecurityWarning,
                    "ALLOW_WITH_FORALLVALUES_ON_ABSENT_KEY",
                    format!("ForAllValues:{} on {key} in an Allow is true when the request has no {key} at all; add a Null condition on {key} set to false", op.base.name()),
                    path.clone(),
                    off,
                ),
                Some(_) if op.base == BaseOperator::Null => l.add(
                    FindingType::Suggestion,
                    "NULL_WITH_QUALIFIER",
                    "Null with ForAllValues or ForAnyValue always returns true or false respectively; drop the qualifier".into(),
                    path.clone(),
                    off,
                ),
                _ => {}
            }
            let values = strings(values_node);
            if matches!(
                op.base,
                BaseOperator::StringEquals
                    | BaseOperator::StringNotEquals
                    | BaseOperator::StringEqualsIgnoreCase
                    | BaseOperator::StringNotEqualsIgnoreCase
                    | BaseOperator::ArnEquals
                    | BaseOperator::ArnNotEquals
            ) && values
                .iter()
                .any(|(_, v)| v.contains(['*', '?']) && !v.contains("${"))
            {
                l.add(
                    FindingType::Warning,
                    "WILDCARD_WITHOUT_LIKE_OPERATOR",
                    format!("Your condition value includes a * or ? character. If you meant to use a wildcard, update the condition operator {op_name} to include Like"),
                    path.clone(),
                    off,
                );
            }
            if key_lc == "aws:sourceip"
                && matches!(op.base, BaseOperator::IpAddress)
                && st.effect == Effect::Allow
            {
                for (voff, v) in &values {
                    let wide = match Cidr::parse(v) {
                        Some(c @ Cidr::V4 { .. }) => c.prefix_len() < 8,
                        Some(c @ Cidr::V6 { .. }) => c.prefix_len() < 32,
                        None => false,
                    };
                    if wide {
                        l.add(
                            FindingType::SecurityWarning,
                            "OVERLY_WIDE_IP_RANGE",
                            format!("{v} admits a large share of the Internet; narrow the range"),
                            path.clone(),
                            *voff,
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
