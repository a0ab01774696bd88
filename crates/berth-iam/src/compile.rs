//! Compiling a policy once so it can be evaluated many times: actions lower-cased and
//! turned into wildcard matchers, resources into per-segment ARN patterns, principals
//! normalised (account id ≡ `:root` ARN), condition values pre-parsed, and statements
//! indexed by action so that a large policy is not scanned statement by statement.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::arn::Arn;
use crate::arn::{ArnPattern, Unresolved};
use crate::condition::{self, CompiledCondition, MissingKeys};
use crate::glob::{str_eq, Glob};
use crate::policy::ast::{
    Effect, Policy, PolicyKind, PrincipalType, PrincipalValue, Span, Statement,
};
use crate::policy::parse::{parse_policy, PolicyError};
use crate::request::{action_hash, Action, Context, Principal, PrincipalKind, Request};

/// Below this many statements a linear scan beats the index.
const INDEX_THRESHOLD: usize = 8;

/// A policy ready for evaluation.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    /// How explanations name this policy (a file name, a policy ARN, `resource_policy`...).
    pub name: Arc<str>,
    pub kind: PolicyKind,
    pub statements: Vec<CompiledStatement>,
    index: Option<ActionIndex>,
}

#[derive(Debug, Clone)]
pub struct CompiledStatement {
    /// Position in the policy's Statement list (0-based).
    pub position: usize,
    pub sid: Option<Arc<str>>,
    pub effect: Effect,
    pub span: Span,
    principal: Option<CompiledPrincipals>,
    actions_negated: bool,
    actions: Vec<ActionPattern>,
    /// `None`: no Resource element (a repository policy's own repository).
    resources: Option<(bool, Vec<ArnPattern>)>,
    pub conditions: Vec<CompiledCondition>,
}

/// How a resource-policy principal entry matched the request principal; the stronger
/// the match, the less else the request needs (IAM's same-account rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PrincipalMatch {
    /// Names the principal's account: trusts the account, grants nothing by itself there.
    Account,
    /// Names the IAM user that created a federated session.
    FederatingUser,
    /// Names the role of a role session: limited by boundary and session policy.
    Role,
    /// Names the principal itself (user, session, federated user, service) or `*`.
    Direct,
}

/// An Action entry: exact names compare by hash first, wildcards as globs.
#[derive(Debug, Clone)]
enum ActionPattern {
    Exact(u64, Box<str>),
    Glob(Glob),
}

impl ActionPattern {
    fn new(text: &str) -> ActionPattern {
        let lower = text.to_ascii_lowercase();
        if lower.contains(['*', '?']) {
            ActionPattern::Glob(Glob::new(&lower))
        } else {
            ActionPattern::Exact(action_hash(&lower), lower.into_boxed_str())
        }
    }

    #[inline]
    fn matches(&self, a: &Action) -> bool {
        match self {
            ActionPattern::Exact(h, t) => *h == a.hash() && str_eq(t, a.lower()),
            ActionPattern::Glob(g) => g.matches(a.lower()),
        }
    }
}

#[derive(Debug, Clone)]
struct CompiledPrincipals {
    negated: bool,
    entries: Vec<PrincipalEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PrincipalEntry {
    Any,
    Account(Box<str>),
    Arn(Box<str>),
    UniqueId(Box<str>),
    Service(Box<str>),
    /// Federated identity providers and canonical users: never the caller of an ECR request.
    Other,
}

#[derive(Debug, Clone, Default)]
struct ActionIndex {
    /// Exact lower-cased action → statements naming it.
    exact: FxHashMap<Box<str>, Vec<u32>>,
    /// Service prefix → statements with a wildcard pattern in that service.
    by_service: FxHashMap<Box<str>, Vec<u32>>,
    /// Statements that must always be checked (NotAction, `*`, wildcard service prefixes).
    always: Vec<u32>,
}

impl CompiledPolicy {
    /// Parse, validate and compile policy text.
    pub fn parse(name: &str, kind: PolicyKind, src: &str) -> Result<CompiledPolicy, PolicyError> {
        let policy = parse_policy(src, kind)?;
        Ok(CompiledPolicy::new(name, kind, &policy))
    }

    /// Compile a validated document.
    pub fn new(name: &str, kind: PolicyKind, policy: &Policy) -> CompiledPolicy {
        let vars = policy.variables_enabled();
        let statements: Vec<CompiledStatement> = policy
            .statements
            .iter()
            .enumerate()
            .map(|(i, s)| compile_statement(i, s, vars))
            .collect();
        let index = (statements.len() > INDEX_THRESHOLD).then(|| build_index(&statements));
        CompiledPolicy {
            name: name.into(),
            kind,
            statements,
            index,
        }
    }

    /// Every statement of this policy that applies to the request, with how its
    /// principal matched (`Direct` for policies without principals).
    pub(crate) fn for_each_applicable<M: MissingKeys>(
        &self,
        req: &Request,
        arn: Option<&Arn>,
        tracker: &mut M,
        has_boundary: bool,
        mut f: impl FnMut(&mut M, &CompiledStatement, PrincipalMatch) -> bool,
    ) {
        let action = req.action;
        let mut visit = |tracker: &mut M, s: &CompiledStatement, action_checked: bool| -> bool {
            if !action_checked && !s.action_matches(action) {
                return true;
            }
            match s.applies(req, arn, tracker, has_boundary) {
                Some(m) => f(tracker, s, m),
                None => true,
            }
        };
        match &self.index {
            None => {
                for s in &self.statements {
                    if !visit(tracker, s, false) {
                        return;
                    }
                }
            }
            Some(ix) => {
                if let Some(list) = ix.exact.get(action.lower()) {
                    for &i in list {
                        if !visit(tracker, &self.statements[i as usize], true) {
                            return;
                        }
                    }
                }
                let lists = [ix.by_service.get(req.action.service()), Some(&ix.always)];
                for list in lists.into_iter().flatten() {
                    for &i in list {
                        if !visit(tracker, &self.statements[i as usize], false) {
                            return;
                        }
                    }
                }
            }
        }
    }
}

fn compile_statement(position: usize, s: &Statement, vars: bool) -> CompiledStatement {
    let principal = s.principal.as_ref().map(|p| CompiledPrincipals {
        negated: p.negated,
        entries: match &p.value {
            PrincipalValue::Star => vec![PrincipalEntry::Any],
            PrincipalValue::Map(m) => m
                .iter()
                .flat_map(|(ty, values)| values.iter().map(move |v| principal_entry(*ty, v)))
                .collect(),
        },
    });
    CompiledStatement {
        position,
        sid: s.sid.as_deref().map(Arc::from),
        effect: s.effect,
        span: s.span,
        principal,
        actions_negated: s.action.negated,
        actions: s
            .action
            .values
            .iter()
            .map(|a| ActionPattern::new(a))
            .collect(),
        resources: s.resource.as_ref().map(|r| {
            (
                r.negated,
                r.values
                    .iter()
                    .map(|v| ArnPattern::resource(v, vars))
                    .collect(),
            )
        }),
        conditions: condition::compile(&s.conditions, vars),
    }
}

fn principal_entry(ty: PrincipalType, v: &str) -> PrincipalEntry {
    match ty {
        PrincipalType::Aws => {
            if v == "*" {
                PrincipalEntry::Any
            } else if v.len() == 12 && v.bytes().all(|b| b.is_ascii_digit()) {
                PrincipalEntry::Account(v.into())
            } else if let Some(a) = crate::arn::Arn::parse(v) {
                if a.service == "iam" && a.resource == "root" {
                    PrincipalEntry::Account(a.account.into())
                } else {
                    PrincipalEntry::Arn(v.into())
                }
            } else {
                PrincipalEntry::UniqueId(v.into())
            }
        }
        PrincipalType::Service if v == "*" => PrincipalEntry::Any,
        PrincipalType::Service => PrincipalEntry::Service(v.to_ascii_lowercase().into()),
        PrincipalType::Federated | PrincipalType::CanonicalUser => PrincipalEntry::Other,
    }
}

fn build_index(statements: &[CompiledStatement]) -> ActionIndex {
    let mut ix = ActionIndex::default();
    for (i, s) in statements.iter().enumerate() {
        let i = i as u32;
        if s.actions_negated {
            ix.always.push(i);
            continue;
        }
        for pattern in &s.actions {
            let g = match pattern {
                ActionPattern::Exact(_, a) => {
                    let list = ix.exact.entry(a.clone()).or_default();
                    if list.last() != Some(&i) {
                        list.push(i);
                    }
                    continue;
                }
                ActionPattern::Glob(g) => g,
            };
            let list = match g {
                Glob::Any => &mut ix.always,
                _ => {
                    let text = glob_text(g);
                    match text.split_once(':') {
                        Some((svc, _)) if !svc.contains(['*', '?']) => {
                            ix.by_service.entry(svc.into()).or_default()
                        }
                        _ => &mut ix.always,
                    }
                }
            };
            if list.last() != Some(&i) {
                list.push(i);
            }
        }
    }
    ix
}

/// The leading literal text of a compiled action glob (enough to read its service prefix).
fn glob_text(g: &Glob) -> String {
    match g {
        Glob::Any => "*".into(),
        Glob::Exact(s) | Glob::Prefix(s) => s.to_string(),
        Glob::Suffix(_) => "*".into(),
        Glob::Tokens(t) => match t.first() {
            Some(crate::glob::Tok::Lit(l)) => format!("{l}*"),
            _ => "*".into(),
        },
    }
}

impl CompiledStatement {
    #[inline]
    fn action_matches(&self, action: &Action) -> bool {
        self.actions.iter().any(|p| p.matches(action)) != self.actions_negated
    }

    fn resource_matches(
        &self,
        req: &Request,
        arn: Option<&Arn>,
        missing: &mut dyn MissingKeys,
    ) -> bool {
        // No Resource element (a repository policy): the statement is about the repository
        // it is attached to, never about the `*` of actions without resource-level permissions.
        let Some((negated, patterns)) = &self.resources else {
            return req.resource != "*";
        };
        let mut any = false;
        for p in patterns {
            match p.matches_parsed(req.resource, arn, req.context) {
                Ok(true) => {
                    any = true;
                    break;
                }
                Ok(false) => {}
                // An entry whose variable has no value matches nothing.
                Err(Unresolved) => report_resource_vars(p, req.context, missing),
            }
        }
        any != *negated
    }

    /// Whether the statement applies (action already checked): principal, resource and
    /// every condition. For resource policies, how the principal matched.
    fn applies(
        &self,
        req: &Request,
        arn: Option<&Arn>,
        missing: &mut dyn MissingKeys,
        has_boundary: bool,
    ) -> Option<PrincipalMatch> {
        let m = match &self.principal {
            None => PrincipalMatch::Direct,
            Some(p) => p.classify(req.principal, self.effect, has_boundary)?,
        };
        if !self.resource_matches(req, arn, missing) {
            return None;
        }
        // Evaluate every condition (no short cut) so that all missing keys are reported.
        let mut ok = true;
        for c in &self.conditions {
            if !c.evaluate(req.context, missing) {
                ok = false;
            }
        }
        ok.then_some(m)
    }
}

fn report_resource_vars(p: &ArnPattern, ctx: &Context, missing: &mut dyn MissingKeys) {
    if let ArnPattern::Segments {
        resource: crate::arn::ResourcePart::Template(t),
        ..
    } = p
    {
        for k in t.keys() {
            if ctx.get(k).is_none() {
                missing.missing(k);
            }
        }
    }
}

impl CompiledPrincipals {
    /// How the best entry matches `p`, or `None`. `NotPrincipal` turns this around.
    fn classify(
        &self,
        p: &Principal,
        effect: Effect,
        has_boundary: bool,
    ) -> Option<PrincipalMatch> {
        if !self.negated {
            return self.entries.iter().filter_map(|e| entry_match(e, p)).max();
        }
        // NotPrincipal + Deny: denies every principal with a permissions boundary, and
        // otherwise everyone unless every level of its identity chain is listed.
        // NotPrincipal + Allow is unsupported ("NotPrincipal must be used with
        // \"Effect\":\"Deny\""): policy writes refuse it, and a document that holds it
        // anyway (a file, a decide line) grants nothing through it, to anyone.
        match effect {
            Effect::Deny => {
                let levels = self.listed_levels(p);
                if (has_boundary && p.kind.is_user_or_role()) || levels.listed < levels.total {
                    Some(PrincipalMatch::Direct)
                } else {
                    None
                }
            }
            Effect::Allow => None,
        }
    }

    fn listed_levels(&self, p: &Principal) -> Levels {
        if self.entries.contains(&PrincipalEntry::Any) {
            return Levels {
                listed: 1,
                total: 1,
            };
        }
        let has = |e: &PrincipalEntry| self.entries.contains(e);
        let arn = |s: &str| has(&PrincipalEntry::Arn(s.into()));
        let account = || has(&PrincipalEntry::Account((*p.account).into()));
        let id = || {
            p.unique_id
                .as_deref()
                .is_some_and(|id| has(&PrincipalEntry::UniqueId(id.into())))
        };
        let levels: Vec<bool> = match p.kind {
            PrincipalKind::Root => vec![account()],
            PrincipalKind::User => vec![account(), arn(&p.arn) || id()],
            PrincipalKind::Role => vec![account(), arn(&p.arn) || id()],
            PrincipalKind::AssumedRole => vec![
                account(),
                p.role_arn.as_deref().is_some_and(arn) || id(),
                arn(&p.arn),
            ],
            PrincipalKind::FederatedUser => {
                let mut v = vec![account()];
                if let Some(u) = &p.federating_user_arn {
                    v.push(arn(u));
                }
                v.push(arn(&p.arn));
                v
            }
            PrincipalKind::Service => vec![has(&PrincipalEntry::Service(
                p.arn.to_ascii_lowercase().into(),
            ))],
            PrincipalKind::Anonymous => vec![false],
        };
        Levels {
            listed: levels.iter().filter(|&&l| l).count(),
            total: levels.len(),
        }
    }
}

struct Levels {
    listed: usize,
    total: usize,
}

fn entry_match(e: &PrincipalEntry, p: &Principal) -> Option<PrincipalMatch> {
    match e {
        PrincipalEntry::Any => Some(PrincipalMatch::Direct),
        PrincipalEntry::Account(a) => match p.kind {
            PrincipalKind::Service | PrincipalKind::Anonymous => None,
            _ => str_eq(a, &p.account).then_some(PrincipalMatch::Account),
        },
        PrincipalEntry::Arn(a) => {
            if str_eq(a, &p.arn) {
                Some(if p.kind == PrincipalKind::Role {
                    PrincipalMatch::Role
                } else {
                    PrincipalMatch::Direct
                })
            } else if p.kind == PrincipalKind::AssumedRole && p.role_arn.as_deref() == Some(a) {
                Some(PrincipalMatch::Role)
            } else if p.federating_user_arn.as_deref() == Some(a) {
                Some(PrincipalMatch::FederatingUser)
            } else {
                None
            }
        }
        PrincipalEntry::UniqueId(id) => {
            if p.unique_id.as_deref() != Some(id) {
                None
            } else if p.kind == PrincipalKind::User {
                Some(PrincipalMatch::Direct)
            } else {
                Some(PrincipalMatch::Role)
            }
        }
        PrincipalEntry::Service(s) => (p.kind == PrincipalKind::Service
            && p.arn.eq_ignore_ascii_case(s))
        .then_some(PrincipalMatch::Direct),
        PrincipalEntry::Other => None,
    }
}
