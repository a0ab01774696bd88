//! The console's "why" tools: the policy playground (the IAM policy simulator as the
//! signed-in principal, with the deciding statements highlighted in the policy text, the
//! missing context keys and the sentence AWS would answer), decoding an encoded
//! authorization message (`sts:DecodeAuthorizationMessage`), and who can do an action on
//! a repository (the who-can analysis of `berth policy who-can`).

use std::collections::HashMap;

use axum::body::Body;
use axum::http::Response;
use berth_iam::{Action, Cause, PolicyType, Principal, Request};
use serde_json::{json, Value};

use super::{enc, esc, text, Ctx};
use crate::ecr::router::Operation;

/// Identity policies the playground's form holds at most.
const MAX_POLICIES: usize = 10;

/// What the playground's form holds.
#[derive(Debug, Default, Clone)]
struct Form {
    principal: String,
    action: String,
    resource: String,
    context: String,
    /// (name, text) of each identity policy.
    policies: Vec<(String, String)>,
    resource_policy: String,
}

impl Form {
    fn from_post(f: &HashMap<String, String>) -> Form {
        let get = |k: &str| f.get(k).cloned().unwrap_or_default();
        let mut policies = Vec::new();
        for i in 1..=MAX_POLICIES {
            let text = get(&format!("policy{i}"));
            if !text.trim().is_empty() {
                policies.push((get(&format!("name{i}")), text));
            }
        }
        Form {
            principal: get("principal").trim().to_string(),
            action: get("action").trim().to_string(),
            resource: get("resource").trim().to_string(),
            context: get("context"),
            policies,
            resource_policy: get("resource_policy"),
        }
    }

    /// `key=value` lines as simulator context entries (a key given on several lines is a
    /// list).
    fn context_entries(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for line in self.context.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim());
            if k.is_empty() {
                continue;
            }
            match out.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(k)) {
                Some((_, values)) => values.push(v.to_string()),
                None => out.push((k.to_string(), vec![v.to_string()])),
            }
        }
        out
    }
}

/// The ARNs of the account's users and roles the principal may list (for the form's
/// choices).
async fn principals(ctx: &Ctx<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for (action, list, arn) in [("ListUsers", "Users", "Arn"), ("ListRoles", "Roles", "Arn")] {
        if let Ok(v) = ctx.iam(action, &[("MaxItems", "1000")]).await {
            for e in v[list].as_array().into_iter().flatten() {
                out.push(text(e, arn).to_string());
            }
        }
    }
    out
}

/// The stored identity policies of a user or role of the account, when the principal may
/// read the account's authorization details.
async fn stored_policies(ctx: &Ctx<'_>, arn: &str) -> Result<Vec<(String, String)>, String> {
    if !ctx.may("iam:GetAccountAuthorizationDetails", "*") {
        return Err(
            "Loading a principal's policies needs iam:GetAccountAuthorizationDetails.".into(),
        );
    }
    let p = Principal::from_arn(arn)?;
    if *p.account != *ctx.caller.account {
        return Err(format!("{arn} is not an identity of this account"));
    }
    let (kind, name) = match arn
        .split_once(":user/")
        .or_else(|| arn.split_once(":role/"))
    {
        Some((_, rest)) => (
            if arn.contains(":user/") {
                berth_store::EntityKind::User
            } else {
                berth_store::EntityKind::Role
            },
            rest.rsplit('/').next().unwrap_or(rest),
        ),
        None => return Err(format!("{arn} is not a user or role ARN")),
    };
    let docs = ctx
        .app
        .store
        .identity_documents(&ctx.caller.account, kind, name)
        .await
        .map_err(|e| e.to_string())?;
    Ok(docs
        .policies
        .into_iter()
        .map(|d| (d.source, pretty(&d.document)))
        .collect())
}

fn pretty(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_string())
}

/// The playground's form (and, after a run, its results).
fn playground_page(
    ctx: &Ctx<'_>,
    form: &Form,
    choices: &[String],
    results: &str,
    note: Option<&str>,
) -> Response<Body> {
    let options: String = choices
        .iter()
        .map(|a| format!(r#"<option value="{}">"#, esc(a)))
        .collect();
    let mut policies = String::new();
    let mut shown = form.policies.clone();
    if shown.len() < MAX_POLICIES {
        shown.push((String::new(), String::new()));
    }
    for (i, (name, text)) in shown.iter().enumerate() {
        let n = i + 1;
        policies.push_str(&format!(
            r#"<label for="policy{n}">Identity policy {n}{}</label><input type="hidden" name="name{n}" value="{}"><div class="code-editor"><pre class="gutter" aria-hidden="true"></pre><textarea id="policy{n}" name="policy{n}" rows="10" spellcheck="false" data-lint="identity" aria-describedby="live{n}">{}</textarea></div><div id="live{n}" class="live" aria-live="polite"></div>"#,
            if name.is_empty() { String::new() } else { format!(" — {}", esc(name)) },
            esc(name),
            esc(text)
        ));
    }
    let note = note
        .map(|n| format!(r#"<div class="error" role="alert"><p>{}</p></div>"#, esc(n)))
        .unwrap_or_default();
    ctx.page(
        "Policy playground",
        &format!(
            r#"<h1>Policy playground</h1>
<p class="note">Ask the engine that enforces: a principal, an action, a resource and context keys, decided by the identity policies below (or, when they are empty, by the principal's stored ones) and the resource's policies. Runs as <code>iam:SimulateCustomPolicy</code> / <code>iam:SimulatePrincipalPolicy</code>.</p>{note}
<form method="get" action="/console/playground" class="search"><label>Load the stored policies of<input name="principal" list="principals" value="{p}"></label><button type="submit">Load</button></form>
<form method="post" action="/console/playground" class="editor" id="playground">
<input type="hidden" name="csrf" value="{csrf}">
<datalist id="principals">{options}</datalist>
<div class="grid2">
<label>Principal ARN<input name="principal" list="principals" value="{p}" placeholder="arn:aws:iam::{account}:user/NAME"></label>
<label>Action<input name="action" value="{a}" required placeholder="ecr:BatchGetImage"></label>
<label>Resource ARN<input name="resource" value="{r}" placeholder="arn:aws:ecr:{region}:{account}:repository/NAME"></label>
<label>Context keys (one <code>key=value</code> a line)<textarea class="plain" name="context" rows="3" spellcheck="false">{c}</textarea></label>
</div>
{policies}
<label for="resource_policy">Resource policy (empty: the repository's and registry's stored policies)</label><div class="code-editor"><pre class="gutter" aria-hidden="true"></pre><textarea id="resource_policy" name="resource_policy" rows="8" spellcheck="false" data-lint="repository" aria-describedby="live-r">{rp}</textarea></div><div id="live-r" class="live" aria-live="polite"></div>
<div class="buttons"><button type="submit">Run</button></div>
</form>{results}"#,
            csrf = esc(ctx.csrf),
            p = esc(&form.principal),
            a = esc(&form.action),
            r = esc(&form.resource),
            c = esc(&form.context),
            rp = esc(&form.resource_policy),
            account = esc(&ctx.caller.account),
            region = esc(&ctx.origin.region),
        ),
    )
}

/// GET: the form, pre-filled from a principal's stored policies when one is named.
pub async fn playground(ctx: &Ctx<'_>, query: &[(String, String)]) -> Response<Body> {
    let q = |k: &str| {
        query
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let mut form = Form {
        principal: q("principal"),
        action: q("action"),
        resource: q("resource"),
        ..Form::default()
    };
    if form.action.is_empty() {
        form.action = "ecr:BatchGetImage".into();
    }
    let mut note = None;
    if !form.principal.is_empty() {
        match stored_policies(ctx, &form.principal).await {
            Ok(p) => form.policies = p.into_iter().take(MAX_POLICIES).collect(),
            Err(e) => note = Some(e),
        }
    }
    let choices = principals(ctx).await;
    playground_page(ctx, &form, &choices, "", note.as_deref())
}

/// The policy type a matched statement's source is.
fn source_type(kind: &str) -> PolicyType {
    match kind {
        "resource" => PolicyType::Resource,
        "permission-boundary" => PolicyType::Boundary,
        _ => PolicyType::Identity,
    }
}

/// The sentence AWS would answer for a simulated decision.
fn reason(form: &Form, principal: &str, result: &Value) -> Option<String> {
    let principal = Principal::from_arn(principal).ok()?;
    let matched = result["MatchedStatements"].as_array();
    let first = matched
        .and_then(|m| m.first())
        .map(|m| source_type(text(m, "SourcePolicyType")));
    let resource = if form.resource.is_empty() {
        "*"
    } else {
        &form.resource
    };
    let cause = match text(result, "EvalDecision") {
        "allowed" => match first {
            Some(t) => Cause::Allowed(t),
            None => Cause::Root,
        },
        "explicitDeny" => Cause::Denied(first.unwrap_or(PolicyType::Identity)),
        _ => {
            let boundary = result
                .pointer("/PermissionsBoundaryDecisionDetail/AllowedByPermissionsBoundary")
                .and_then(Value::as_bool)
                == Some(false);
            Cause::NotAllowed(if boundary {
                PolicyType::Boundary
            } else {
                PolicyType::Identity
            })
        }
    };
    let account = principal.resource_account(resource);
    let ctx = berth_iam::Context::new();
    let action = Action::new(&form.action);
    Some(berth_iam::evaluate::reason(
        &Request {
            principal: &principal,
            action: &action,
            resource,
            resource_account: &account,
            context: &ctx,
        },
        cause,
    ))
}

/// A policy's text with line numbers, the lines of `spans` (first and last line, and
/// whether the decision was a denial) marked.
fn highlighted(text: &str, spans: &[(usize, usize)], class: &str) -> String {
    let mut out = String::from(r#"<pre class="code">"#);
    let mut open = false;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let inside = spans.iter().any(|(a, b)| (*a..=*b).contains(&n));
        if inside && !open {
            out.push_str(&format!(r#"<mark class="{class}" data-decides="true">"#));
            open = true;
        } else if !inside && open {
            out.push_str("</mark>");
            open = false;
        }
        out.push_str(&format!(
            r#"<span class="line"><span class="n">{n}</span>{}</span>"#,
            esc(line)
        ));
    }
    if open {
        out.push_str("</mark>");
    }
    out.push_str("</pre>");
    out
}

/// POST: run the simulation.
pub async fn run_playground(ctx: &Ctx<'_>, f: &HashMap<String, String>) -> Response<Body> {
    let form = Form::from_post(f);
    let choices = principals(ctx).await;
    if form.action.is_empty() {
        return playground_page(ctx, &form, &choices, "", Some("Name an action."));
    }
    let mut params: Vec<(String, String)> =
        vec![("ActionNames.member.1".into(), form.action.clone())];
    if !form.resource.is_empty() {
        params.push(("ResourceArns.member.1".into(), form.resource.clone()));
    }
    for (i, (k, values)) in form.context_entries().iter().enumerate() {
        let prefix = format!("ContextEntries.member.{}", i + 1);
        params.push((format!("{prefix}.ContextKeyName"), k.clone()));
        params.push((
            format!("{prefix}.ContextKeyType"),
            if values.len() > 1 {
                "stringList"
            } else {
                "string"
            }
            .into(),
        ));
        for (j, v) in values.iter().enumerate() {
            params.push((
                format!("{prefix}.ContextKeyValues.member.{}", j + 1),
                v.clone(),
            ));
        }
    }
    if !form.resource_policy.trim().is_empty() {
        params.push(("ResourcePolicy".into(), form.resource_policy.clone()));
    }
    let operation = if form.policies.is_empty() {
        if form.principal.is_empty() {
            return playground_page(
                ctx,
                &form,
                &choices,
                "",
                Some("Give an identity policy, or a principal whose stored policies decide."),
            );
        }
        params.push(("PolicySourceArn".into(), form.principal.clone()));
        "SimulatePrincipalPolicy"
    } else {
        for (i, (_, text)) in form.policies.iter().enumerate() {
            params.push((format!("PolicyInputList.member.{}", i + 1), text.clone()));
        }
        if !form.principal.is_empty() {
            params.push(("CallerArn".into(), form.principal.clone()));
        }
        "SimulateCustomPolicy"
    };
    let pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let out = match ctx.iam(operation, &pairs).await {
        Ok(v) => v,
        Err(e) => {
            let m = format!("{}: {}", e.code, e.message);
            return playground_page(ctx, &form, &choices, "", Some(&m));
        }
    };
    let Some(result) = out["EvaluationResults"].as_array().and_then(|a| a.first()) else {
        return playground_page(
            ctx,
            &form,
            &choices,
            "",
            Some("The simulator gave no result."),
        );
    };
    let decision = text(result, "EvalDecision");
    let allowed = decision == "allowed";
    let class = if allowed { "allow" } else { "deny" };
    let stand_in = format!("arn:aws:iam::{}:user/simulated-caller", ctx.caller.account);
    let principal = if form.principal.is_empty() {
        stand_in.as_str()
    } else {
        form.principal.as_str()
    };
    let sentence = reason(&form, principal, result).unwrap_or_default();
    let missing: Vec<String> = result["MissingContextValues"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(esc)
        .collect();
    let mut body = format!(
        r#"<section aria-labelledby="result" id="result-section"><h2 id="result">Result</h2><p><span class="decision {}" id="decision">{}</span></p><p id="reason">{}</p>{}"#,
        if allowed { "allowed" } else { "denied" },
        esc(decision),
        esc(&sentence),
        if missing.is_empty() {
            String::new()
        } else {
            format!(
                r#"<p class="note" id="missing">Context keys the policies test that the request did not give: <code>{}</code></p>"#,
                missing.join("</code>, <code>")
            )
        }
    );
    // Each policy with its deciding statements marked.
    let matched = result["MatchedStatements"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let span_of = |m: &Value| {
        (
            m.pointer("/StartPosition/Line")
                .and_then(Value::as_u64)
                .unwrap_or(0) as usize,
            m.pointer("/EndPosition/Line")
                .and_then(Value::as_u64)
                .unwrap_or(0) as usize,
        )
    };
    let mut shown: Vec<(String, String)> = form
        .policies
        .iter()
        .enumerate()
        .map(|(i, (name, t))| {
            let name = if name.is_empty() {
                format!("Identity policy {}", i + 1)
            } else {
                name.clone()
            };
            (format!("PolicyInputList.{}", i + 1), format!("{name}\n{t}"))
        })
        .collect();
    if !form.resource_policy.trim().is_empty() {
        shown.push((
            "ResourcePolicy".into(),
            format!("Resource policy\n{}", form.resource_policy),
        ));
    }
    for (id, named) in &shown {
        let (name, t) = named.split_once('\n').unwrap_or(("", named));
        let spans: Vec<(usize, usize)> = matched
            .iter()
            .filter(|m| text(m, "SourcePolicyId") == id)
            .map(span_of)
            .collect();
        body.push_str(&format!(
            r#"<h3>{}{}</h3>{}"#,
            esc(name),
            if spans.is_empty() { "" } else { " — decides" },
            highlighted(t, &spans, class)
        ));
    }
    // Statements of policies the form does not hold (stored ones).
    for m in matched.iter().filter(|m| {
        !shown
            .iter()
            .any(|(id, _)| id.as_str() == text(m, "SourcePolicyId"))
    }) {
        let (a, b) = span_of(m);
        body.push_str(&format!(
            r#"<p class="note">Deciding statement: lines {a}–{b} of <code>{}</code> ({}).</p>"#,
            esc(text(m, "SourcePolicyId")),
            esc(text(m, "SourcePolicyType"))
        ));
    }
    body.push_str("</section>");
    playground_page(ctx, &form, &choices, &body, None)
}

/// "Why was I denied?": the form, and a decoded message.
pub async fn decode_page(ctx: &Ctx<'_>, decoded: Option<Result<String, String>>) -> Response<Body> {
    let result = match decoded {
        None => String::new(),
        Some(Ok(d)) => format!(
            r#"<section aria-labelledby="decoded"><h2 id="decoded">Decoded</h2><pre class="code" id="decoded-message">{}</pre></section>"#,
            esc(&pretty(&d))
        ),
        Some(Err(e)) => format!(
            r#"<div class="error" role="alert"><p>{}</p></div>"#,
            esc(&e)
        ),
    };
    ctx.page(
        "Why was I denied?",
        &format!(
            r#"<h1>Why was I denied?</h1><p class="note">Paste the encoded authorization message of a denial (the text after <q>Encoded authorization failure message:</q>). Decoding it needs <code>sts:DecodeAuthorizationMessage</code>.</p>
<form method="post" action="/console/decode" class="editor"><input type="hidden" name="csrf" value="{}"><label for="message">Encoded message</label><textarea class="plain" id="message" name="message" rows="6" spellcheck="false" required></textarea><div class="buttons"><button type="submit">Decode</button></div></form>{result}"#,
            esc(ctx.csrf)
        ),
    )
}

pub async fn decode(ctx: &Ctx<'_>, f: &HashMap<String, String>) -> Response<Body> {
    let message = f.get("message").map(|m| m.trim()).unwrap_or("");
    let decoded = ctx
        .sts("DecodeAuthorizationMessage", &[("EncodedMessage", message)])
        .await
        .map(|v| text(&v, "DecodedMessage").to_string())
        .map_err(|e| format!("{}: {}", e.code, e.message));
    decode_page(ctx, Some(decoded)).await
}

/// Who can do an action on a repository.
pub async fn who_can(
    ctx: &Ctx<'_>,
    repository: Option<&str>,
    action: Option<&str>,
) -> Response<Body> {
    let repository = repository.unwrap_or("").trim();
    let action = action
        .filter(|a| !a.trim().is_empty())
        .unwrap_or("ecr:BatchGetImage")
        .trim();
    let mut actions: Vec<&str> = super::policy::ACTIONS.to_vec();
    actions.push("ecr:CreateRepository");
    let options: String = actions
        .iter()
        .map(|a| {
            format!(
                r#"<option{}>{}</option>"#,
                if *a == action { " selected" } else { "" },
                esc(a)
            )
        })
        .collect();
    let mut body = format!(
        r#"<h1>Who can</h1><p class="note">Every principal allowed an action on a repository, with the conditions it must meet, by the who-can analysis over the account's identities and the repository's and registry's policies. Needs <code>iam:GetAccountAuthorizationDetails</code>.</p>
<form method="get" action="/console/who-can" class="search"><label>Repository<input name="repository" value="{}" required></label><label>Action<select name="action">{options}</select></label><button type="submit">Ask</button></form>"#,
        esc(repository)
    );
    if repository.is_empty() {
        return ctx.page("Who can", &body);
    }
    if !ctx.may("iam:GetAccountAuthorizationDetails", "*") {
        return ctx.needs(
            "Who can",
            "iam:GetAccountAuthorizationDetails",
            "Reading every identity of the account",
        );
    }
    // The repository's policy is read as the principal may read it.
    match ctx
        .ecr(
            Operation::GetRepositoryPolicy,
            json!({ "repositoryName": repository }),
        )
        .await
    {
        Ok(_) => {}
        Err(e) if e.code == "RepositoryPolicyNotFoundException" => {}
        Err(e) => return ctx.denied("Who can", &e),
    }
    let key = ctx.app.key(&ctx.caller.account, &ctx.app.config.region);
    let estate = crate::cli::estate::for_registry(
        &*ctx.app.store,
        &*ctx.app.registry,
        key,
        &ctx.app.config.region,
        Some(repository),
        true,
    )
    .await;
    let lines = estate.and_then(|mut estate| {
        estate.anonymous_pull = ctx.app.config.anonymous_pull;
        let repo = estate
            .repositories
            .first()
            .cloned()
            .ok_or_else(|| format!("repository {repository} is not in this registry"))?;
        crate::cli::whocan::who_can(&estate, &repo, action)
    });
    match lines {
        Ok(lines) => {
            let items: String = lines
                .iter()
                .map(|l| format!("<li><code>{}</code></li>", esc(l)))
                .collect();
            body.push_str(&format!(
                r#"<section aria-labelledby="answer"><h2 id="answer">Allowed {} on {}</h2>{}</section><p><a href="/console/policy/{}">Edit the repository policy</a></p>"#,
                esc(action),
                esc(repository),
                if items.is_empty() {
                    r#"<p class="note">Nobody.</p>"#.to_string()
                } else {
                    format!(r#"<ul class="who-can">{items}</ul>"#)
                },
                enc(repository)
            ));
        }
        Err(e) => body.push_str(&format!(r#"<p class="error">{}</p>"#, esc(&e))),
    }
    ctx.page("Who can", &body)
}
