//! The one place requests are decided: gather the caller's policies and the resource's
//! policies, build the request context, ask `berth-iam`, write the audit line.

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
    let mut ctx = Context::new();
    ctx.insert("aws:SourceIp", &origin.source_ip.to_string());
    ctx.insert(
        "aws:SecureTransport",
        if origin.secure { "true" } else { "false" },
    );
    ctx.insert("aws:CurrentTime", &crate::ids::iso8601(origin.now));
    ctx.insert("aws:EpochTime", &origin.now.to_string());
    ctx.insert("aws:RequestedRegion", &origin.region);
    ctx.insert("aws:userid", &caller.user_id);
    ctx.insert("aws:PrincipalIsAWSService", "false");
    ctx.insert("aws:ViaAWSService", "false");
    for (k, v) in &caller.principal_tags {
        ctx.insert(&format!("aws:PrincipalTag/{k}"), v);
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
            ctx.insert(
                "aws:MultiFactorAuthAge",
                &(origin.now - t).max(0).to_string(),
            );
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
    caller.principal.derive_context(&mut ctx);
    ctx
}

/// Decide a request; `Err(AccessDenied)` with IAM's sentence when it is not allowed.
pub fn authorize(
    app: &App,
    caller: &Caller,
    origin: &Origin,
    a: &Authorization,
) -> Result<(), ApiError> {
    let ctx = context(caller, origin, a.context);
    let action = Action::new(a.action);
    let req = Request {
        principal: &caller.principal,
        action: &action,
        resource: a.resource,
        resource_account: a.resource_account,
        context: &ctx,
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
