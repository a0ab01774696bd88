//! The one place requests are decided: gather the caller's policies and the resource's
//! policies, build the request context, ask `berth-iam`, write the audit line.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use berth_iam::{Action, CompiledPolicy, Context, Decision, PolicySet, Request};

use super::caller::Caller;
use crate::audit::AuditEvent;
use crate::query::ApiError;
use crate::serve::{App, Origin};

/// What is asked.
#[derive(Debug, Clone, Copy)]
pub struct Authorization<'a> {
    /// `iam:CreateUser`, `sts:AssumeRole`, `ecr:PutImage`.
    pub action: &'a str,
    /// The resource ARN, or `*`.
    pub resource: &'a str,
    /// The account owning the resource.
    pub resource_account: &'a str,
    /// Resource-based policies (repository and registry policies, a role's trust policy).
    pub resource_policies: &'a [Arc<CompiledPolicy>],
    /// Request-specific context keys (`aws:RequestTag/k`, `sts:ExternalId`, …).
    pub context: &'a [(String, ContextValue)],
    /// A resource policy must allow even where identity policies would be enough (a
    /// role's trust policy for `sts:AssumeRole`).
    pub resource_must_allow: bool,
}

/// A context value given by the operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextValue {
    One(String),
    Many(Vec<String>),
}

/// The request context IAM sees for a caller: who (`aws:userid`, `aws:username`,
/// principal tags and the keys derived from the principal), from where
/// (`aws:SourceIp`, `aws:SecureTransport`), when (`aws:CurrentTime`, `aws:EpochTime`),
/// `aws:RequestedRegion`, and for temporary credentials `aws:MultiFactorAuthPresent`,
/// `aws:MultiFactorAuthAge`, `aws:TokenIssueTime`, `aws:SourceIdentity`.
pub fn context(caller: &Caller, origin: &Origin, extra: &[(String, ContextValue)]) -> Context {
    let mut scratch = Scratch::default();
    scratch.fill(caller, origin, extra);
    scratch.ctx
}

/// A context and the text of its values, kept per thread between requests: refilling it
/// reuses every buffer, and the time and address texts are formatted again only when
/// they change (the clock has second resolution).
struct Scratch {
    ctx: Context,
    now: i64,
    current_time: String,
    epoch_time: String,
    ip: Option<IpAddr>,
    ip_text: String,
    text: String,
}

impl Default for Scratch {
    fn default() -> Scratch {
        Scratch {
            ctx: Context::new(),
            now: i64::MIN,
            current_time: String::new(),
            epoch_time: String::new(),
            ip: None,
            ip_text: String::new(),
            text: String::new(),
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl Scratch {
    fn fill(&mut self, caller: &Caller, origin: &Origin, extra: &[(String, ContextValue)]) {
        if self.now != origin.now {
            self.now = origin.now;
            self.current_time = crate::ids::iso8601(origin.now);
            self.epoch_time.clear();
            let _ = write!(self.epoch_time, "{}", origin.now);
        }
        if self.ip != Some(origin.source_ip) {
            self.ip = Some(origin.source_ip);
            self.ip_text.clear();
            let _ = write!(self.ip_text, "{}", origin.source_ip);
        }
        let ctx = &mut self.ctx;
        let text = &mut self.text;
        ctx.clear();
        ctx.insert("aws:SourceIp", &self.ip_text);
        ctx.insert(
            "aws:SecureTransport",
            if origin.secure { "true" } else { "false" },
        );
        ctx.insert("aws:CurrentTime", &self.current_time);
        ctx.insert("aws:EpochTime", &self.epoch_time);
        ctx.insert("aws:RequestedRegion", &origin.region);
        // The anonymous caller has no user id (nor any other key about the principal
        // but `aws:PrincipalType`, which `derive_context` adds).
        if !caller.user_id.is_empty() {
            ctx.insert("aws:userid", &caller.user_id);
        }
        ctx.insert("aws:PrincipalIsAWSService", "false");
        ctx.insert("aws:ViaAWSService", "false");
        for (k, v) in &caller.principal_tags {
            text.clear();
            text.push_str("aws:PrincipalTag/");
            text.push_str(k);
            ctx.insert(text, v);
        }
        if let Some(c) = &caller.claims {
            ctx.insert(
                "aws:MultiFactorAuthPresent",
                if c.mfa_time.is_some() {
                    "true"
                } else {
                    "false"
                },
            );
            if let Some(t) = c.mfa_time {
                text.clear();
                let _ = write!(text, "{}", (origin.now - t).max(0));
                ctx.insert("aws:MultiFactorAuthAge", text);
            }
            ctx.insert("aws:TokenIssueTime", &crate::ids::iso8601(c.issued));
            if let Some(s) = &c.source_identity {
                ctx.insert("aws:SourceIdentity", s);
            }
        }
        for (k, v) in extra {
            match v {
                ContextValue::One(s) => ctx.insert(k, s),
                ContextValue::Many(list) => ctx.insert_list(k, list.clone()),
            }
        }
        caller.principal.derive_context(ctx);
    }
}

/// Decide a request; `Err(AccessDenied)` with IAM's sentence when it is not allowed.
pub fn authorize(
    app: &App,
    caller: &Caller,
    origin: &Origin,
    a: &Authorization,
) -> Result<(), ApiError> {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => {
            scratch.fill(caller, origin, a.context);
            decide_in(app, caller, origin, a, &scratch.ctx)
        }
        // Not reentered today; a fresh context keeps it correct if it ever is.
        Err(_) => decide_in(app, caller, origin, a, &context(caller, origin, a.context)),
    })
}

fn decide_in(
    app: &App,
    caller: &Caller,
    origin: &Origin,
    a: &Authorization,
    ctx: &Context,
) -> Result<(), ApiError> {
    let action = Action::new(a.action);
    let req = Request {
        principal: &caller.principal,
        action: &action,
        resource: a.resource,
        resource_account: a.resource_account,
        context: ctx,
    };
    let (identity, boundary): (&[Arc<CompiledPolicy>], _) = match &caller.policies {
        Some(p) => (&p.identity, p.boundary.as_deref()),
        None => (&[], None),
    };
    let set = PolicySet {
        identity,
        resource: a.resource_policies,
        boundary,
        session: caller.session_policy.as_deref(),
    };
    let (mut decision, mut cause) = berth_iam::decide_with_cause(&req, &set);
    if decision == Decision::Allow
        && a.resource_must_allow
        && !a
            .resource_policies
            .iter()
            .any(|p| berth_iam::resource_policy_allows(&req, p).is_some())
    {
        decision = Decision::ImplicitDeny;
        cause = berth_iam::Cause::NotAllowed(berth_iam::PolicyType::Resource);
    }
    crate::metrics::metrics().decided(decision);
    let audit = app.audit.enabled();
    let reason = if decision != Decision::Allow || audit {
        berth_iam::evaluate::reason(&req, cause)
    } else {
        String::new()
    };
    if audit {
        app.audit.record(&AuditEvent {
            time: origin.now,
            request_id: &origin.request_id,
            principal: caller.arn(),
            action: a.action,
            resource: a.resource,
            decision: decision.as_str(),
            reason: &reason,
            source_ip: origin.source_ip,
        });
    }
    match decision {
        Decision::Allow => Ok(()),
        _ => {
            let mut message = reason;
            if let Some(key) = &app.message_key {
                // The slow path, on denials only: the full explanation, sealed.
                let mut eval = berth_iam::evaluate(&req, &set);
                eval.decision = decision;
                eval.reason = message.clone();
                let decoded = super::message::decoded(&eval, &req, &caller.user_id, origin.now);
                if let Some(blob) = super::message::encode(key, &decoded) {
                    message.push_str(". Encoded authorization failure message: ");
                    message.push_str(&blob);
                }
            }
            Err(ApiError::access_denied(message))
        }
    }
}
