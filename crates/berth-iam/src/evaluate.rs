//! The decision: IAM's evaluation logic over the policies that bear on a request.
//!
//! Explicit deny anywhere wins; the root user of the resource's account is allowed; in
//! the same account a resource policy naming the principal (or `*`) grants on its own,
//! one naming the role is limited by the boundary and session policy, one naming only
//! the account delegates to identity policies; across accounts both the resource and the
//! identity side must allow. Permissions boundaries and session policies limit the
//! identity side. [`decide`] is the fast path; [`evaluate`] also explains.

use std::fmt;
use std::sync::Arc;

use crate::compile::{CompiledPolicy, CompiledStatement, PrincipalMatch};
use crate::condition::MissingKeys;
use crate::policy::ast::{Effect, Span};
use crate::request::{PrincipalKind, Request};

/// The outcome of an authorization request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    Allow,
    /// No policy allows (deny by default).
    ImplicitDeny,
    /// A policy denies.
    ExplicitDeny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "Allow",
            Decision::ImplicitDeny => "ImplicitDeny",
            Decision::ExplicitDeny => "ExplicitDeny",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The role a policy plays in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyType {
    Identity,
    Resource,
    Boundary,
    Session,
}

impl PolicyType {
    /// The words AWS uses in its messages.
    pub fn phrase(self) -> &'static str {
        match self {
            PolicyType::Identity => "identity-based policy",
            PolicyType::Resource => "resource-based policy",
            PolicyType::Boundary => "permissions boundary",
            PolicyType::Session => "session policy",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PolicyType::Identity => "identity",
            PolicyType::Resource => "resource",
            PolicyType::Boundary => "boundary",
            PolicyType::Session => "session",
        }
    }
}

/// The policies that bear on one request.
#[derive(Debug, Clone, Copy, Default)]
pub struct PolicySet<'a> {
    /// The principal's identity-based policies (for a federated user: those of the user that federated).
    pub identity: &'a [Arc<CompiledPolicy>],
    /// Resource-based policies: the repository policy and the registry policy.
    pub resource: &'a [Arc<CompiledPolicy>],
    pub boundary: Option<&'a CompiledPolicy>,
    pub session: Option<&'a CompiledPolicy>,
}

/// Which part of the logic decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// An explicit deny in a policy of this type.
    Denied(PolicyType),
    /// No policy of this type allows (the first missing piece).
    NotAllowed(PolicyType),
    /// Allowed through a policy of this type.
    Allowed(PolicyType),
    /// The root user of the resource's own account.
    Root,
}

/// A statement that took part in the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedStatement {
    pub policy: Arc<str>,
    pub policy_type: PolicyType,
    /// Position in the policy's Statement list (0-based).
    pub index: usize,
    pub sid: Option<Arc<str>>,
    pub effect: Effect,
    pub span: (usize, usize),
}

/// A decision with its reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub decision: Decision,
    pub cause: Cause,
    /// The statements that decided (the denies for an explicit deny, the allows that granted).
    pub statements: Vec<MatchedStatement>,
    /// Condition keys the policies looked for and the request did not have.
    pub missing_context_keys: Vec<String>,
    /// The AWS-style sentence.
    pub reason: String,
}

/// Collects what `evaluate` explains; `()` collects nothing (the fast path).
trait Tracer: MissingKeys {
    const FULL: bool;
    fn record(
        &mut self,
        ty: PolicyType,
        policy: &CompiledPolicy,
        s: &CompiledStatement,
        m: PrincipalMatch,
    );
}

impl Tracer for () {
    const FULL: bool = false;
    #[inline]
    fn record(
        &mut self,
        _: PolicyType,
        _: &CompiledPolicy,
        _: &CompiledStatement,
        _: PrincipalMatch,
    ) {
    }
}

#[derive(Default)]
struct Trace {
    hits: Vec<(MatchedStatement, PrincipalMatch)>,
    missing: Vec<String>,
}

impl MissingKeys for Trace {
    fn missing(&mut self, key: &str) {
        if !self.missing.iter().any(|k| k.eq_ignore_ascii_case(key)) {
            self.missing.push(key.to_string());
        }
    }
}

impl Tracer for Trace {
    const FULL: bool = true;
    fn record(
        &mut self,
        ty: PolicyType,
        policy: &CompiledPolicy,
        s: &CompiledStatement,
        m: PrincipalMatch,
    ) {
        let hit = MatchedStatement {
            policy: policy.name.clone(),
            policy_type: ty,
            index: s.position,
            sid: s.sid.clone(),
            effect: s.effect,
            span: span(s.span),
        };
        if !self.hits.iter().any(|(h, _)| *h == hit) {
            self.hits.push((hit, m));
        }
    }
}

fn span(s: Span) -> (usize, usize) {
    (s.start, s.end)
}

/// Decide a request (no explanation; the fast path).
pub fn decide(req: &Request, set: &PolicySet) -> Decision {
    run(req, set, &mut ()).0
}

/// Decide a request and say which part of the logic decided (no statements, no missing
/// keys: the fast path with enough for [`reason`]).
pub fn decide_with_cause(req: &Request, set: &PolicySet) -> (Decision, Cause) {
    run(req, set, &mut ())
}

/// Decide a request and explain the decision.
pub fn evaluate(req: &Request, set: &PolicySet) -> Evaluation {
    let mut trace = Trace::default();
    let (decision, cause) = run(req, set, &mut trace);
    let wanted = |ty: PolicyType, m: PrincipalMatch, effect: Effect| -> bool {
        match cause {
            Cause::Denied(_) => effect == Effect::Deny,
            Cause::Allowed(PolicyType::Resource) => {
                effect == Effect::Allow
                    && (ty != PolicyType::Resource
                        || m != PrincipalMatch::Account
                        || !same_account(req))
                    && ty != PolicyType::Identity
            }
            Cause::Allowed(_) => effect == Effect::Allow,
            Cause::NotAllowed(_) | Cause::Root => false,
        }
    };
    let statements = trace
        .hits
        .into_iter()
        .filter(|(h, m)| wanted(h.policy_type, *m, h.effect))
        .map(|(h, _)| h)
        .collect();
    Evaluation {
        decision,
        cause,
        statements,
        missing_context_keys: trace.missing,
        reason: reason(req, cause),
    }
}

/// How one resource-based policy on its own treats a request: the strongest way an
/// allowing statement names the principal, or `None` if none allows or one denies.
/// AssumeRole needs the role's trust policy to allow even where an identity policy
/// would otherwise be enough.
pub fn resource_policy_allows(req: &Request, policy: &CompiledPolicy) -> Option<PrincipalMatch> {
    let arn = crate::arn::Arn::parse(req.resource);
    let mut denied = false;
    let mut best = None;
    policy.for_each_applicable(req, arn.as_ref(), &mut (), false, |_, s, m| {
        match s.effect {
            Effect::Deny => {
                denied = true;
                false
            }
            Effect::Allow => {
                best = best.max(Some(m));
                true
            }
        }
    });
    if denied {
        None
    } else {
        best
    }
}

fn same_account(req: &Request) -> bool {
    *req.principal.account == *req.resource_account
}

fn run<T: Tracer>(req: &Request, set: &PolicySet, t: &mut T) -> (Decision, Cause) {
    let has_boundary = set.boundary.is_some();
    let mut deny: Option<PolicyType> = None;
    let mut identity_allows = false;
    let mut resource_allows: Option<PrincipalMatch> = None;
    let mut boundary_allows = false;
    let mut session_allows = false;

    let groups: [(PolicyType, &[Arc<CompiledPolicy>]); 2] = [
        (PolicyType::Identity, set.identity),
        (PolicyType::Resource, set.resource),
    ];
    let singles = [
        (PolicyType::Boundary, set.boundary),
        (PolicyType::Session, set.session),
    ];
    let all = groups
        .iter()
        .flat_map(|(ty, ps)| ps.iter().map(move |p| (*ty, &**p)))
        .chain(singles.iter().filter_map(|(ty, p)| p.map(|p| (*ty, p))));
    let arn = crate::arn::Arn::parse(req.resource);
    for (ty, policy) in all {
        policy.for_each_applicable(req, arn.as_ref(), t, has_boundary, |t, s, m| {
            t.record(ty, policy, s, m);
            match s.effect {
                Effect::Deny => {
                    if deny.is_none() {
                        deny = Some(ty);
                    }
                    return T::FULL;
                }
                Effect::Allow => match ty {
                    PolicyType::Identity => identity_allows = true,
                    PolicyType::Resource => resource_allows = resource_allows.max(Some(m)),
                    PolicyType::Boundary => boundary_allows = true,
                    PolicyType::Session => session_allows = true,
                },
            }
            true
        });
        if !T::FULL && deny.is_some() {
            break;
        }
    }
    if let Some(ty) = deny {
        return (Decision::ExplicitDeny, Cause::Denied(ty));
    }

    let p = req.principal;
    let allow = |ty| (Decision::Allow, Cause::Allowed(ty));
    let not = |ty| (Decision::ImplicitDeny, Cause::NotAllowed(ty));
    match p.kind {
        PrincipalKind::Service | PrincipalKind::Anonymous => {
            return if resource_allows == Some(PrincipalMatch::Direct) {
                allow(PolicyType::Resource)
            } else {
                not(PolicyType::Resource)
            };
        }
        PrincipalKind::Root if same_account(req) => return (Decision::Allow, Cause::Root),
        _ => {}
    }
    let boundary_ok = !has_boundary || boundary_allows;
    // A federated session without a session policy has no identity permissions.
    let session_ok = match set.session {
        Some(_) => session_allows,
        None => p.kind != PrincipalKind::FederatedUser,
    };
    let limits = || {
        if !boundary_ok {
            Some(PolicyType::Boundary)
        } else if !session_ok {
            Some(PolicyType::Session)
        } else {
            None
        }
    };

    if same_account(req) {
        match resource_allows {
            Some(PrincipalMatch::Direct) => return allow(PolicyType::Resource),
            Some(PrincipalMatch::Role | PrincipalMatch::FederatingUser) => {
                // Limited by the boundary and by the session rules: a session policy if
                // there is one, and a federated session without one has no permissions.
                if !boundary_ok {
                    return not(PolicyType::Boundary);
                }
                if !session_ok {
                    return not(PolicyType::Session);
                }
                return allow(PolicyType::Resource);
            }
            Some(PrincipalMatch::Account) | None => {}
        }
        if !identity_allows {
            return not(PolicyType::Identity);
        }
        match limits() {
            None => allow(PolicyType::Identity),
            Some(ty) => not(ty),
        }
    } else {
        // Across accounts both sides must allow; the root user holds every permission of its own account.
        if resource_allows.is_none() {
            return not(PolicyType::Resource);
        }
        if !identity_allows && p.kind != PrincipalKind::Root {
            return not(PolicyType::Identity);
        }
        match limits() {
            None => allow(PolicyType::Identity),
            Some(ty) => not(ty),
        }
    }
}

/// The AWS-style sentence for a decision.
pub fn reason(req: &Request, cause: Cause) -> String {
    let who = &req.principal.arn;
    let action = &req.action.text;
    let resource = req.resource;
    match cause {
        Cause::Denied(ty) => format!(
            "User: {who} is not authorized to perform: {action} on resource: {resource} with an explicit deny in {} {}",
            article(ty),
            ty.phrase()
        ),
        Cause::NotAllowed(ty) => format!(
            "User: {who} is not authorized to perform: {action} on resource: {resource} because no {} allows the {action} action",
            ty.phrase()
        ),
        Cause::Allowed(ty) => format!(
            "User: {who} is authorized to perform: {action} on resource: {resource} by {} {}",
            article(ty),
            ty.phrase()
        ),
        Cause::Root => format!(
            "User: {who} is authorized to perform: {action} on resource: {resource} as the root user of account {}",
            req.resource_account
        ),
    }
}

fn article(ty: PolicyType) -> &'static str {
    match ty {
        PolicyType::Identity => "an",
        _ => "a",
    }
}
