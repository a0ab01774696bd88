//! Deciding who may act when part of the request is unknown in advance.
//!
//! `who-can` and `public` ask about principals, not requests: the source address, the
//! transport, the caller's organization are not known. A condition on such a key is
//! neither true nor false, so each policy is judged twice, with the engine itself:
//! in the *worst case* for the caller (allow statements that depend on an unknown key do
//! not apply, deny statements apply whenever their known parts do) and in the *best case*
//! (the reverse). Allowed in the worst case: allowed, full stop. Allowed only in the best
//! case: allowed when the unknown keys of the statements involved say so.

use std::sync::Arc;

use berth_iam::policy::ast::{Effect, Matchers, Policy};
use berth_iam::variables::{self, Part};
use berth_iam::{
    evaluate, Action, CompiledPolicy, Context, Decision, PolicyKind, PolicySet, Principal, Request,
};

/// What is known of the caller, beyond the context given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// An identity of the data: its names, account and tags are known, so a key about
    /// it that is absent is absent — except what a role's session chooses (its tags,
    /// source identity and `aws:userid`), and the organization when the data may come
    /// from AWS (Berth has no organizations).
    Known { role_session: bool, berth: bool },
    /// An unauthenticated caller: it has no tags, no organization, no account.
    Anonymous,
    /// Anybody: nothing is known of it.
    Unknown,
}

/// Whether the absence of a condition key from the context is a fact or a gap.
fn unknown_key(key_lc: &str, ctx: &Context, caller: Caller, request_tags: bool) -> bool {
    if ctx.get(key_lc).is_some() {
        return false;
    }
    if key_lc.starts_with("aws:requesttag/") || key_lc == "aws:tagkeys" {
        return request_tags;
    }
    let resource = key_lc.starts_with("aws:resourcetag/")
        || key_lc.starts_with("ecr:resourcetag/")
        || key_lc.starts_with("iam:resourcetag/")
        || key_lc == "aws:resourceaccount";
    if resource {
        return false;
    }
    let about_caller = key_lc.starts_with("aws:principal")
        || key_lc == "aws:username"
        || key_lc == "aws:userid"
        || key_lc == "aws:sourceidentity";
    match caller {
        Caller::Known {
            role_session,
            berth,
        } => {
            let session_chosen = key_lc.starts_with("aws:principaltag/")
                || key_lc == "aws:sourceidentity"
                || key_lc == "aws:userid";
            let organization = key_lc.starts_with("aws:principalorg");
            !about_caller || (role_session && session_chosen) || (!berth && organization)
        }
        Caller::Anonymous => !about_caller,
        Caller::Unknown => true,
    }
}

/// A policy string with the variables whose keys are unknown replaced by `*`.
fn widen(text: &str, variables_enabled: bool, unknown: &dyn Fn(&str) -> bool) -> String {
    let t = variables::parse(text, variables_enabled);
    let mut out = String::with_capacity(text.len());
    for part in &t.parts {
        match part {
            Part::Text(x) => out.push_str(x),
            Part::Escaped(c) => {
                out.push_str("${");
                out.push(*c);
                out.push('}');
            }
            Part::Var { key, .. } if unknown(key) => out.push('*'),
            Part::Var { key, default } => {
                out.push_str("${");
                out.push_str(key);
                if let Some(d) = default {
                    out.push_str(", '");
                    out.push_str(d);
                    out.push('\'');
                }
                out.push('}');
            }
        }
    }
    out
}

/// Which statements that depend on unknown keys are taken to apply (as widely as the
/// unknowns allow) and which never to.
#[derive(Debug, Clone, Copy)]
struct Mode {
    allows_hold: bool,
    denies_hold: bool,
}

/// A policy as written, to be judged for a caller.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub kind: PolicyKind,
    pub policy: Policy,
}

impl Source {
    pub fn parse(name: &str, kind: PolicyKind, text: &str) -> Result<Source, String> {
        let policy = berth_iam::parse_policy(text, kind).map_err(|e| format!("{name}: {e}"))?;
        Ok(Source {
            name: name.to_string(),
            kind,
            policy,
        })
    }

    /// The policy for one case, and the unknown keys of each statement: the keys of its
    /// conditions, and of the variables in its condition values and resources.
    fn case(
        &self,
        mode: Mode,
        ctx: &Context,
        caller: Caller,
        request_tags: bool,
    ) -> (Arc<CompiledPolicy>, Vec<Vec<String>>) {
        let vars = self.policy.variables_enabled();
        let unknown = |k: &str| unknown_key(&k.to_ascii_lowercase(), ctx, caller, request_tags);
        let unknown_vars = |text: &str| -> Vec<String> {
            variables::parse(text, vars)
                .keys()
                .filter(|k| unknown(k))
                .map(str::to_string)
                .collect()
        };
        let mut policy = self.policy.clone();
        let mut keys = Vec::with_capacity(policy.statements.len());
        for st in &mut policy.statements {
            let mut found: Vec<String> = Vec::new();
            for c in &st.conditions {
                for (k, values) in &c.entries {
                    if unknown(k) {
                        union(&mut found, std::slice::from_ref(k));
                    }
                    for v in values {
                        union(&mut found, &unknown_vars(v));
                    }
                }
            }
            for r in st.resource.iter().flat_map(|r| &r.values) {
                union(&mut found, &unknown_vars(r));
            }
            if !found.is_empty() {
                // In its favourable case a statement applies as widely as the unknowns
                // allow: their conditions hold, their variables match anything. In the
                // other it never applies (NotAction "*" matches no action), which keeps
                // statement positions.
                let favourable = match st.effect {
                    Effect::Allow => mode.allows_hold,
                    Effect::Deny => mode.denies_hold,
                };
                if favourable {
                    for c in &mut st.conditions {
                        c.entries.retain(|(k, values)| {
                            !unknown(k) && values.iter().all(|v| unknown_vars(v).is_empty())
                        });
                    }
                    st.conditions.retain(|c| !c.entries.is_empty());
                    if let Some(r) = &mut st.resource {
                        if r.negated {
                            r.values.retain(|v| unknown_vars(v).is_empty());
                        } else {
                            for v in &mut r.values {
                                *v = widen(v, vars, &unknown);
                            }
                        }
                    }
                } else {
                    st.action = Matchers {
                        negated: true,
                        values: vec!["*".into()],
                    };
                }
            }
            keys.push(found);
        }
        (
            Arc::new(CompiledPolicy::new(&self.name, self.kind, &policy)),
            keys,
        )
    }
}

/// Everything that decides one principal's request on one resource.
pub struct Case<'a> {
    pub principal: &'a Principal,
    pub caller: Caller,
    pub context: &'a Context,
    pub action: &'a Action,
    pub resource: &'a str,
    pub resource_account: &'a str,
    pub identity: &'a [Source],
    pub boundary: Option<&'a Source>,
    pub resource_policies: &'a [Source],
    /// A resource policy must allow on its own (a role's trust policy for AssumeRole).
    pub resource_must_allow: bool,
}

/// How the engine files a policy of a kind in its explanations.
fn policy_type(kind: PolicyKind) -> berth_iam::PolicyType {
    use berth_iam::PolicyType as T;
    match kind {
        PolicyKind::Identity => T::Identity,
        PolicyKind::Boundary => T::Boundary,
        PolicyKind::Session => T::Session,
        _ => T::Resource,
    }
}

/// Allowed in every case (no keys), or when the request's values of these keys allow.
pub type Verdict = Option<Vec<String>>;

/// `" when KEY, ..."`, or nothing for an unconditional grant.
pub fn when(keys: &[String]) -> String {
    if keys.is_empty() {
        String::new()
    } else {
        format!(" when {}", keys.join(", "))
    }
}

/// Add `more` to `keys`, each key once.
pub fn union(keys: &mut Vec<String>, more: &[String]) {
    for k in more {
        if !keys.iter().any(|x| x.eq_ignore_ascii_case(k)) {
            keys.push(k.clone());
        }
    }
}

/// Allowed in every case (`Some([])`), allowed when the unknown keys named allow, or
/// never (`None`).
pub fn judge(c: &Case) -> Verdict {
    // Only requests that create or tag something carry tags (aws:RequestTag, aws:TagKeys).
    let action = c.action.text.to_ascii_lowercase();
    let request_tags = matches!(
        action.as_str(),
        "ecr:createrepository"
            | "ecr:tagresource"
            | "ecr:untagresource"
            | "sts:assumerole"
            | "sts:tagsession"
    ) || action.starts_with("iam:");
    let run = |mode: Mode| {
        let build = |sources: &[Source]| -> (Vec<Arc<CompiledPolicy>>, Vec<Vec<Vec<String>>>) {
            sources
                .iter()
                .map(|s| s.case(mode, c.context, c.caller, request_tags))
                .unzip()
        };
        let (identity, identity_keys) = build(c.identity);
        let (resource, resource_keys) = build(c.resource_policies);
        let boundary = c
            .boundary
            .map(|b| b.case(mode, c.context, c.caller, request_tags));
        let set = PolicySet {
            identity: &identity,
            resource: &resource,
            boundary: boundary.as_ref().map(|(p, _)| &**p),
            session: None,
        };
        let req = Request {
            principal: c.principal,
            action: c.action,
            resource: c.resource,
            resource_account: c.resource_account,
            context: c.context,
        };
        let e = evaluate(&req, &set);
        let decision = if e.decision == Decision::Allow
            && c.resource_must_allow
            && !resource
                .iter()
                .any(|p| berth_iam::resource_policy_allows(&req, p).is_some())
        {
            Decision::ImplicitDeny
        } else {
            e.decision
        };
        // The unknown keys of the statements that decided.
        let mut keys: Vec<String> = Vec::new();
        for m in &e.statements {
            let all = identity
                .iter()
                .zip(&identity_keys)
                .chain(resource.iter().zip(&resource_keys))
                .chain(boundary.iter().map(|(p, k)| (p, k)));
            for (p, k) in all {
                if *p.name == *m.policy && policy_type(p.kind) == m.policy_type {
                    if let Some(more) = k.get(m.index) {
                        union(&mut keys, more);
                    }
                }
            }
        }
        (decision, keys)
    };
    let (worst, deny_keys) = run(Mode {
        allows_hold: false,
        denies_hold: true,
    });
    if worst == Decision::Allow {
        return Some(Vec::new());
    }
    // Allowed without any conditional allow once the conditional denies are lifted:
    // only the denies' keys matter.
    let (lifted, _) = run(Mode {
        allows_hold: false,
        denies_hold: false,
    });
    let mut keys = if lifted == Decision::Allow {
        Vec::new()
    } else {
        let (best, allow_keys) = run(Mode {
            allows_hold: true,
            denies_hold: false,
        });
        if best != Decision::Allow {
            return None;
        }
        allow_keys
    };
    // Denies that hold in the worst case hold only when their unknown keys say so.
    union(&mut keys, &deny_keys);
    if keys.is_empty() {
        // Only a must-allow resource policy differed; name nothing rather than mislead.
        keys.push("the request's context".into());
    }
    Some(keys)
}
