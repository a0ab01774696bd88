//! The IAM policy simulator: SimulatePrincipalPolicy, SimulateCustomPolicy and
//! GetContextKeysFor{Principal,Custom}Policy, answered by the same engine that enforces
//! (berth-iam's `evaluate`), with the deciding statements' positions in their documents.

use std::sync::Arc;

use berth_iam::{
    evaluate, Action, CompiledPolicy, Context, Decision, PolicyKind, PolicySet, PolicyType,
    Principal, Request,
};
use berth_store::EntityKind;
use serde_json::{json, Value};

use super::{page, Target};
use crate::query::{ApiError, Call, Params};

/// A policy taking part in a simulation, with what the answer calls it.
struct Source {
    id: String,
    /// `IAM Policy` for input policies, `user`/`group`/`role` for inline ones,
    /// `user-managed` for customer managed ones, `aws-managed` for AWS's, `resource` for the
    /// resource policy.
    kind: &'static str,
    text: String,
    policy: Arc<CompiledPolicy>,
}

fn compile(id: &str, kind: PolicyKind, text: &str) -> Result<Arc<CompiledPolicy>, ApiError> {
    CompiledPolicy::parse(id, kind, text)
        .map(Arc::new)
        .map_err(|e| ApiError::new(400, "MalformedPolicyDocument", format!("{id}: {e}")))
}

fn input_policies(p: &Params, list: &str, kind: PolicyKind) -> Result<Vec<Source>, ApiError> {
    p.list(list)
        .into_iter()
        .enumerate()
        .map(|(i, text)| {
            let id = format!("{list}.{}", i + 1);
            Ok(Source {
                policy: compile(&id, kind, text)?,
                id,
                kind: "IAM Policy",
                text: text.to_string(),
            })
        })
        .collect()
}

/// Line and column (both from 1) of a byte offset.
fn position(text: &str, offset: usize) -> Value {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    json!({"Line": line, "Column": column})
}

/// `ContextEntries.member.N.{ContextKeyName, ContextKeyValues.member.M, ContextKeyType}`.
fn context_entries(p: &Params, ctx: &mut Context) -> Result<(), ApiError> {
    let mut n = 1;
    loop {
        let prefix = format!("ContextEntries.member.{n}");
        let Some(name) = p.get(&format!("{prefix}.ContextKeyName")) else {
            break;
        };
        let values: Vec<String> = p
            .list(&format!("{prefix}.ContextKeyValues"))
            .into_iter()
            .map(str::to_string)
            .collect();
        let ty = p
            .get(&format!("{prefix}.ContextKeyType"))
            .unwrap_or("string");
        const TYPES: &[&str] = &[
            "string",
            "stringList",
            "numeric",
            "numericList",
            "boolean",
            "booleanList",
            "ip",
            "ipList",
            "binary",
            "binaryList",
            "date",
            "dateList",
        ];
        if !TYPES.contains(&ty) {
            return Err(ApiError::invalid_input(format!(
                "ContextKeyType {ty:?} of {name} is not one of {TYPES:?}"
            )));
        }
        if ty.ends_with("List") {
            ctx.insert_list(name, values);
        } else {
            match values.as_slice() {
                [one] => ctx.insert(name, one),
                _ => {
                    return Err(ApiError::invalid_input(format!(
                        "ContextKeyType {ty} of {name} takes exactly one value, not {}",
                        values.len()
                    )))
                }
            }
        }
        n += 1;
    }
    Ok(())
}

/// The resource-based policies that bear on a resource: the `ResourcePolicy` input, or
/// (Berth) the stored repository and registry policies of an ECR repository ARN of the
/// caller's own account. Another account's stored policies are not the caller's to read:
/// its resources are simulated with the policy the caller passes, as IAM does.
async fn resource_policies(
    call: &Call<'_>,
    given: &Option<Source>,
    resource: &str,
) -> Result<Vec<Source>, ApiError> {
    if let Some(g) = given {
        return Ok(vec![Source {
            id: g.id.clone(),
            kind: g.kind,
            text: g.text.clone(),
            policy: g.policy.clone(),
        }]);
    }
    let mut out = Vec::new();
    let Some(rest) = resource.strip_prefix("arn:aws:ecr:") else {
        return Ok(out);
    };
    let mut parts = rest.splitn(3, ':');
    let (Some(region), Some(account), Some(res)) = (parts.next(), parts.next(), parts.next())
    else {
        return Ok(out);
    };
    if account != &*call.caller.account || !call.app.config.regions.iter().any(|r| r == region) {
        return Ok(out);
    }
    let at = call.app.key(account, region);
    if let Some(name) = res.strip_prefix("repository/") {
        if let Some(repo) = call.app.registry.repository(at, name).await? {
            if let Some(text) = repo.policy {
                out.push(Source {
                    id: format!("{name} repository policy"),
                    kind: "resource",
                    policy: compile("repository policy", PolicyKind::Repository, &text)?,
                    text,
                });
            }
        }
    }
    if let Some(text) = call.app.registry.registry_policy(at).await? {
        out.push(Source {
            id: "registry policy".into(),
            kind: "resource",
            policy: compile("registry policy", PolicyKind::Registry, &text)?,
            text,
        });
    }
    Ok(out)
}

fn decision_name(d: Decision) -> &'static str {
    match d {
        Decision::Allow => "allowed",
        Decision::ImplicitDeny => "implicitDeny",
        Decision::ExplicitDeny => "explicitDeny",
    }
}

/// Run the simulation: each action against each resource.
async fn simulate(
    call: &Call<'_>,
    principal: Principal,
    identity: Vec<Source>,
    boundary: Option<Source>,
) -> Result<Value, ApiError> {
    let p = call.params;
    let actions = p.list("ActionNames");
    if actions.is_empty() {
        return Err(ApiError::validation(
            "1 validation error detected: Value null at 'actionNames' failed to satisfy constraint: Member must not be null",
        ));
    }
    let mut resources: Vec<String> = p
        .list("ResourceArns")
        .into_iter()
        .map(str::to_string)
        .collect();
    if resources.is_empty() {
        resources.push("*".into());
    }
    let given = match p.get("ResourcePolicy") {
        Some(text) => Some(Source {
            id: "ResourcePolicy".into(),
            kind: "resource",
            policy: compile("ResourcePolicy", PolicyKind::Repository, text)?,
            text: text.to_string(),
        }),
        None => None,
    };
    let owner = p
        .get("ResourceOwner")
        .and_then(|o| o.strip_prefix("arn:aws:iam::"))
        .and_then(|o| o.split(':').next())
        .map(str::to_string);
    let mut ctx = Context::new();
    context_entries(p, &mut ctx)?;
    let mut principal = principal;
    principal.settle_context(&mut ctx);
    let identity_policies: Vec<Arc<CompiledPolicy>> =
        identity.iter().map(|s| s.policy.clone()).collect();
    let mut results = Vec::new();
    for action_name in &actions {
        if action_name.contains(['*', '?']) {
            return Err(ApiError::invalid_input(format!(
                "Action {action_name} contains a wildcard; the simulator takes exact action names"
            )));
        }
        let action = Action::new(action_name);
        let mut per_resource = Vec::new();
        let mut worst = Decision::Allow;
        let mut all_missing: Vec<String> = Vec::new();
        let mut all_matched: Vec<Value> = Vec::new();
        for resource in &resources {
            let account = owner
                .clone()
                .unwrap_or_else(|| principal.resource_account(resource));
            let resource_sources = resource_policies(call, &given, resource).await?;
            let resource_compiled: Vec<Arc<CompiledPolicy>> =
                resource_sources.iter().map(|s| s.policy.clone()).collect();
            let req = Request {
                principal: &principal,
                action: &action,
                resource,
                resource_account: &account,
                context: &ctx,
            };
            let set = PolicySet {
                identity: &identity_policies,
                resource: &resource_compiled,
                boundary: boundary.as_ref().map(|b| &*b.policy),
                session: None,
            };
            let eval = evaluate(&req, &set);
            let matched: Vec<Value> = eval
                .statements
                .iter()
                .filter_map(|m| {
                    let source = identity
                        .iter()
                        .chain(resource_sources.iter())
                        .chain(boundary.iter())
                        .find(|s| *s.policy.name == *m.policy)?;
                    let kind = if m.policy_type == PolicyType::Boundary {
                        "permission-boundary"
                    } else {
                        source.kind
                    };
                    Some(json!({
                        "SourcePolicyId": source.id,
                        "SourcePolicyType": kind,
                        "StartPosition": position(&source.text, m.span.0),
                        "EndPosition": position(&source.text, m.span.1.saturating_sub(1)),
                    }))
                })
                .collect();
            let rank = |d: Decision| match d {
                Decision::Allow => 0,
                Decision::ImplicitDeny => 1,
                Decision::ExplicitDeny => 2,
            };
            if rank(eval.decision) > rank(worst) {
                worst = eval.decision;
            }
            for k in &eval.missing_context_keys {
                if !all_missing.iter().any(|m| m.eq_ignore_ascii_case(k)) {
                    all_missing.push(k.clone());
                }
            }
            all_matched.extend(matched.iter().cloned());
            let mut r = json!({
                "EvalResourceName": resource,
                "EvalResourceDecision": decision_name(eval.decision),
                "MatchedStatements": matched,
                "MissingContextValues": eval.missing_context_keys,
            });
            if boundary.is_some() {
                r["PermissionsBoundaryDecisionDetail"] = json!({
                    "AllowedByPermissionsBoundary": !matches!(eval.cause, berth_iam::Cause::NotAllowed(PolicyType::Boundary) | berth_iam::Cause::Denied(PolicyType::Boundary)),
                });
            }
            per_resource.push(r);
        }
        let top_resource = if resources.len() == 1 {
            resources[0].clone()
        } else {
            "*".to_string()
        };
        let mut result = json!({
            "EvalActionName": action_name,
            "EvalResourceName": top_resource,
            "EvalDecision": decision_name(worst),
            "MatchedStatements": all_matched,
            "MissingContextValues": all_missing,
            "ResourceSpecificResults": per_resource,
        });
        if let Some(b) = per_resource_boundary(&result) {
            result["PermissionsBoundaryDecisionDetail"] = b;
        }
        results.push(result);
    }
    let max = p.int("MaxItems", 1..=1000)?.unwrap_or(100) as usize;
    let start: usize = match p.get("Marker") {
        Some(m) => m
            .parse()
            .map_err(|_| ApiError::invalid_input("Marker is not one this server gave"))?,
        None => 0,
    };
    let total = results.len();
    let page_items: Vec<Value> = results.into_iter().skip(start).take(max).collect();
    let end = start + page_items.len();
    Ok(page(
        json!({ "EvaluationResults": page_items }),
        (end < total).then(|| end.to_string()),
    ))
}

/// The top-level boundary detail: allowed only if every resource's boundary allowed.
fn per_resource_boundary(result: &Value) -> Option<Value> {
    let list = result["ResourceSpecificResults"].as_array()?;
    let details: Vec<bool> = list
        .iter()
        .filter_map(|r| {
            r.pointer("/PermissionsBoundaryDecisionDetail/AllowedByPermissionsBoundary")?
                .as_bool()
        })
        .collect();
    (!details.is_empty())
        .then(|| json!({"AllowedByPermissionsBoundary": details.iter().all(|b| *b)}))
}

/// The principal a simulation runs as: `CallerArn`, or the given default.
fn caller_principal(p: &Params, default: &str) -> Result<Principal, ApiError> {
    let arn = p.get("CallerArn").unwrap_or(default);
    Principal::from_arn(arn).map_err(ApiError::invalid_input)
}

pub async fn simulate_custom(call: &Call<'_>) -> Result<Value, ApiError> {
    let p = call.params;
    let identity = input_policies(p, "PolicyInputList", PolicyKind::Identity)?;
    if identity.is_empty() {
        return Err(ApiError::validation(
            "1 validation error detected: Value null at 'policyInputList' failed to satisfy constraint: Member must not be null",
        ));
    }
    let mut boundaries = input_policies(
        p,
        "PermissionsBoundaryPolicyInputList",
        PolicyKind::Boundary,
    )?;
    if p.get("ResourcePolicy").is_some() && p.get("CallerArn").is_none() {
        return Err(ApiError::invalid_input(
            "CallerArn is required when ResourcePolicy is given",
        ));
    }
    // Without CallerArn the policies are judged on their own, for an IAM user of the
    // caller's account (never as the root user, who would be allowed everything).
    let stand_in = format!("arn:aws:iam::{}:user/simulated-caller", call.caller.account);
    let principal = caller_principal(p, &stand_in)?;
    simulate(call, principal, identity, boundaries.pop()).await
}

/// The stored policies of a user (with its groups'), group or role, as simulation sources.
async fn stored_policies(
    call: &Call<'_>,
    t: &Target,
) -> Result<(Vec<Source>, Option<Source>), ApiError> {
    let Some(e) = &t.entity else {
        return Err(ApiError::no_such_entity(format!(
            "PolicySourceArn {} does not exist",
            t.arn
        )));
    };
    let docs = call
        .app
        .store
        .identity_documents(&e.account, e.kind, &e.name)
        .await?;
    let mut out = Vec::new();
    for d in docs.policies {
        let kind = if super::aws_managed::is_aws_managed(&d.source) {
            "aws-managed"
        } else if d.source.starts_with("arn:") {
            "user-managed"
        } else if d.source.starts_with("group/") {
            "group"
        } else {
            e.kind.as_str()
        };
        let id = if d.source.starts_with("arn:") {
            d.source.clone()
        } else {
            d.source.rsplit('/').next().unwrap_or(&d.source).to_string()
        };
        out.push(Source {
            policy: compile(&d.source, PolicyKind::Identity, &d.document)?,
            id,
            kind,
            text: d.document,
        });
    }
    let boundary = match docs.boundary {
        Some(b) => Some(Source {
            policy: compile(&b.source, PolicyKind::Boundary, &b.document)?,
            id: b.source,
            kind: "permission-boundary",
            text: b.document,
        }),
        None => None,
    };
    Ok((out, boundary))
}

pub async fn simulate_principal(call: &Call<'_>, t: &Target) -> Result<Value, ApiError> {
    let p = call.params;
    let (mut identity, stored_boundary) = stored_policies(call, t).await?;
    identity.extend(input_policies(p, "PolicyInputList", PolicyKind::Identity)?);
    let mut boundaries = input_policies(
        p,
        "PermissionsBoundaryPolicyInputList",
        PolicyKind::Boundary,
    )?;
    let boundary = boundaries.pop().or(stored_boundary);
    let source = t.entity.as_ref().map(|e| e.arn()).unwrap_or_default();
    let default = match t.entity.as_ref().map(|e| e.kind) {
        // A group is no principal: simulate as a member-less stand-in unless CallerArn says.
        Some(EntityKind::Group) => format!(
            "arn:aws:iam::{}:user/simulated-group-member",
            call.caller.account
        ),
        _ => source,
    };
    let principal = caller_principal(p, &default)?;
    simulate(call, principal, identity, boundary).await
}

/// Every condition key the policies name (GetContextKeysFor*Policy).
fn context_keys(policies: &[Source]) -> Value {
    let mut keys: Vec<String> = Vec::new();
    for s in policies {
        for st in &s.policy.statements {
            for c in &st.conditions {
                if !keys.iter().any(|k| k.eq_ignore_ascii_case(&c.key)) {
                    keys.push(c.key.to_string());
                }
            }
        }
    }
    json!({ "ContextKeyNames": keys })
}

pub async fn context_keys_custom(call: &Call<'_>) -> Result<Value, ApiError> {
    Ok(context_keys(&input_policies(
        call.params,
        "PolicyInputList",
        PolicyKind::Identity,
    )?))
}

pub async fn context_keys_principal(call: &Call<'_>, t: &Target) -> Result<Value, ApiError> {
    let (mut identity, boundary) = stored_policies(call, t).await?;
    identity.extend(input_policies(
        call.params,
        "PolicyInputList",
        PolicyKind::Identity,
    )?);
    identity.extend(boundary);
    Ok(context_keys(&identity))
}
