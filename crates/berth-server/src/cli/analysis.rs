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
use berth_iam::{
    evaluate, Action, CompiledPolicy, Context, Decision, PolicyKind, PolicySet, Principal, Request,
};

/// What is known of the caller, beyond the context given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// An identity of the data: its tags, names and (for users and the root user) its
    /// unique id are known, so a key about it that is absent is absent.
    Known { user_id_known: bool },
    /// An unauthenticated caller: it has no tags, no organization, no account.
    Anonymous,
    /// Anybody: nothing is known of it.
    Unknown,
}

/// Whether the absence of a condition key from the context is a fact or a gap.
fn unknown_key(key_lc: &str, ctx: &Context, caller: Caller) -> bool {
    if ctx.get(key_lc).is_some() {
        return false;
    }
    let resource = key_lc.starts_with("aws:resourcetag/")
        || key_lc.starts_with("ecr:resourcetag/")
        || key_lc == "aws:resourceaccount";
    if resource {
        return false;
    }
    let about_caller = key_lc.starts_with("aws:principal")
        || key_lc == "aws:username"
        || key_lc == "aws:userid"
        || key_lc == "aws:sourceidentity";
    match caller {
        Caller::Known { user_id_known } => {
            !(about_caller && (user_id_known || key_lc != "aws:userid"))
        }
        Caller::Anonymous => !about_caller,
        Caller::Unknown => true,
    }
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

    /// The policy for one case, and the unknown keys of each statement.
    fn case(
        &self,
        best: bool,
        ctx: &Context,
        caller: Caller,
    ) -> (Arc<CompiledPolicy>, Vec<Vec<String>>) {
        let mut policy = self.policy.clone();
        let mut keys = Vec::with_capacity(policy.statements.len());
        for st in &mut policy.statements {
            let unknown: Vec<String> = st
                .conditions
                .iter()
                .flat_map(|c| c.entries.iter().map(|(k, _)| k))
                .filter(|k| unknown_key(&k.to_ascii_lowercase(), ctx, caller))
                .cloned()
                .collect();
            if !unknown.is_empty() {
                // In its favourable case a statement's unknown conditions hold; in the
                // other it never applies (NotAction "*" matches no action), which keeps
                // statement positions.
                let favourable = (st.effect == Effect::Allow) == best;
                if favourable {
                    for c in &mut st.conditions {
                        c.entries
                            .retain(|(k, _)| !unknown_key(&k.to_ascii_lowercase(), ctx, caller));
                    }
                    st.conditions.retain(|c| !c.entries.is_empty());
                } else {
                    st.action = Matchers {
                        negated: true,
                        values: vec!["*".into()],
                    };
                }
            }
            keys.push(unknown);
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
    let run = |best: bool| {
        let build = |sources: &[Source]| -> (Vec<Arc<CompiledPolicy>>, Vec<Vec<Vec<String>>>) {
            sources
                .iter()
                .map(|s| s.case(best, c.context, c.caller))
                .unzip()
        };
        let (identity, identity_keys) = build(c.identity);
        let (resource, resource_keys) = build(c.resource_policies);
        let boundary = c.boundary.map(|b| b.case(best, c.context, c.caller));
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
                if Arc::ptr_eq(&p.name, &m.policy) || *p.name == *m.policy {
                    if let Some(more) = k.get(m.index) {
                        union(&mut keys, more);
                    }
                }
            }
        }
        (decision, keys)
    };
    let (worst, deny_keys) = run(false);
    if worst == Decision::Allow {
        return Some(Vec::new());
    }
    let (best, mut keys) = run(true);
    if best != Decision::Allow {
        return None;
    }
    // Denies that hold in the worst case hold only when their unknown keys say so.
    union(&mut keys, &deny_keys);
    if keys.is_empty() {
        // Only a must-allow resource policy differed; name nothing rather than mislead.
        keys.push("the request's context".into());
    }
    Some(keys)
}
