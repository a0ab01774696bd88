//! A repository's policy in the console: the stored text, a check of a new text before
//! it is saved — the engine's lint findings at their line and column, and the **access
//! diff**: for every ECR action on the repository, who may do it under the stored policy
//! and who under the new one, by the same who-can analysis `berth policy who-can` runs,
//! so who gains and who loses access is seen before saving — and the save itself
//! (SetRepositoryPolicy as the signed-in principal, CSRF-protected).
//!
//! The diff reads every identity of the account, so it is shown only to a principal that
//! may `iam:GetAccountAuthorizationDetails` (what `who-can` against a server needs too).

use serde_json::{json, Value};

use super::{esc, Ctx};
use crate::auth::authorizer::{authorize, Authorization};
use crate::ecr::router::Operation;

/// The actions the diff compares.
pub const ACTIONS: &[&str] = &[
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchCheckLayerAvailability",
    "ecr:PutImage",
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecr:DescribeImages",
    "ecr:ListImages",
    "ecr:BatchDeleteImage",
    "ecr:SetRepositoryPolicy",
    "ecr:DeleteRepository",
    "ecr:ReplicateImage",
];

/// Who gains and who loses an action.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Change {
    pub action: &'static str,
    pub gained: Vec<String>,
    pub lost: Vec<String>,
}

/// The access diff of replacing `name`'s policy with `candidate` (`None`: removing it).
pub(super) async fn diff(
    ctx: &Ctx<'_>,
    name: &str,
    candidate: Option<&str>,
) -> Result<Vec<Change>, String> {
    let key = ctx.app.key(&ctx.caller.account, &ctx.app.config.region);
    let estate = crate::cli::estate::for_registry(
        &*ctx.app.store,
        &*ctx.app.registry,
        key,
        &ctx.app.config.region,
        Some(name),
        true,
    )
    .await?;
    let mut estate = estate;
    estate.anonymous_pull = ctx.app.config.anonymous_pull;
    let Some(before) = estate.repositories.first().cloned() else {
        return Err(format!("repository {name} is not in this registry"));
    };
    let mut after = before.clone();
    after.policy = candidate.map(str::to_string);
    let mut out = Vec::new();
    for &action in ACTIONS {
        let was = crate::cli::whocan::who_can(&estate, &before, action)?;
        let will = crate::cli::whocan::who_can(&estate, &after, action)?;
        let gained: Vec<String> = will.iter().filter(|w| !was.contains(w)).cloned().collect();
        let lost: Vec<String> = was.iter().filter(|w| !will.contains(w)).cloned().collect();
        if !gained.is_empty() || !lost.is_empty() {
            out.push(Change {
                action,
                gained,
                lost,
            });
        }
    }
    Ok(out)
}

/// Whether the signed-in principal may see the diff.
fn may_see_diff(ctx: &Ctx<'_>) -> bool {
    authorize(
        ctx.app,
        ctx.caller,
        ctx.origin,
        &Authorization {
            action: "iam:GetAccountAuthorizationDetails",
            resource: "*",
            resource_account: &ctx.caller.account,
            resource_policies: &[],
            context: &[],
            resource_must_allow: false,
        },
    )
    .is_ok()
}

/// The lint findings of `text` as a list.
fn findings_html(text: &str) -> (String, bool) {
    let findings = berth_iam::lint::lint(text, berth_iam::PolicyKind::Repository);
    if findings.is_empty() {
        return (r#"<p class="ok">No findings.</p>"#.to_string(), false);
    }
    let refuses = findings.iter().any(|f| f.refuses_write());
    let items: String = findings
        .iter()
        .map(|f| {
            format!(
                r#"<li class="finding {}"><span class="where">line {}, column {}</span> <strong>{}</strong> {}: {}</li>"#,
                esc(&f.finding_type.as_str().to_ascii_lowercase()),
                f.line,
                f.column,
                esc(f.finding_type.as_str()),
                esc(f.issue_code),
                esc(&f.details)
            )
        })
        .collect();
    (format!(r#"<ul class="findings">{items}</ul>"#), refuses)
}

fn diff_html(changes: &[Change]) -> String {
    if changes.is_empty() {
        return r#"<p class="ok">Nobody gains or loses access to this repository.</p>"#.into();
    }
    let rows: String = changes
        .iter()
        .map(|c| {
            let list = |v: &[String]| {
                if v.is_empty() {
                    "—".to_string()
                } else {
                    v.iter().map(|w| format!("<div>{}</div>", esc(w))).collect()
                }
            };
            format!(
                r#"<tr><td><code>{}</code></td><td class="gained">{}</td><td class="lost">{}</td></tr>"#,
                esc(c.action),
                list(&c.gained),
                list(&c.lost)
            )
        })
        .collect();
    format!(
        r#"<table class="diff"><thead><tr><th>Action</th><th>Gains access</th><th>Loses access</th></tr></thead><tbody>{rows}</tbody></table>"#
    )
}

/// The policy page: `text` the policy shown in the editor (the stored one when `None`),
/// with the check's results when `checked`, and a message (saved, or what failed).
pub(super) async fn page(
    ctx: &Ctx<'_>,
    name: &str,
    text: Option<&str>,
    checked: bool,
    message: Option<(&str, bool)>,
) -> axum::http::Response<axum::body::Body> {
    let title = format!("Policy of {name}");
    let stored = match ctx
        .ecr(
            Operation::GetRepositoryPolicy,
            json!({ "repositoryName": name }),
        )
        .await
    {
        Ok(v) => v["policyText"].as_str().map(str::to_string),
        Err(e) if e.code == "RepositoryPolicyNotFoundException" => None,
        Err(e) => return ctx.denied(&title, &e),
    };
    let shown = text
        .map(str::to_string)
        .or_else(|| stored.clone())
        .unwrap_or_default();
    let mut results = String::new();
    if checked {
        let (findings, refuses) = findings_html(&shown);
        results.push_str(&format!(
            r#"<section aria-labelledby="lint"><h2 id="lint">Lint</h2>{findings}</section>"#
        ));
        let diff = if may_see_diff(ctx) {
            let candidate = (!shown.trim().is_empty()).then_some(shown.as_str());
            match diff(ctx, name, candidate).await {
                Ok(changes) => diff_html(&changes),
                Err(e) => format!(
                    r#"<p class="error">The access diff could not be computed: {}</p>"#,
                    esc(&e)
                ),
            }
        } else {
            r#"<p class="note">The access diff needs iam:GetAccountAuthorizationDetails (it reads every identity of the account).</p>"#.into()
        };
        results.push_str(&format!(
            r#"<section aria-labelledby="diff"><h2 id="diff">Access diff against the stored policy</h2>{diff}</section>"#
        ));
        if refuses {
            results.push_str(
                r#"<p class="error" role="alert">Errors above: the policy would be refused.</p>"#,
            );
        }
    }
    let note = match message {
        Some((m, true)) => format!(r#"<p class="ok" role="status">{}</p>"#, esc(m)),
        Some((m, false)) => format!(r#"<div class="error" role="alert"><p>{}</p></div>"#, esc(m)),
        None => String::new(),
    };
    let path = format!("/console/policy/{}", super::enc(name));
    ctx.page(
        &title,
        &format!(
            r#"<h1>{t}</h1>{note}
<form method="post" action="{path}" class="editor">
<input type="hidden" name="csrf" value="{csrf}">
<label for="policy">Policy document (JSON){empty}</label>
<textarea id="policy" name="policy" rows="18" spellcheck="false">{text}</textarea>
<div class="buttons"><button type="submit" name="do" value="check">Check</button> <button type="submit" name="do" value="save">Save</button></div>
</form>{results}"#,
            t = esc(&title),
            csrf = esc(ctx.csrf),
            empty = if stored.is_none() { " — none stored yet" } else { "" },
            text = esc(&shown),
        ),
    )
}

/// A POST of the policy form: check, or save.
pub(super) async fn post(
    ctx: &Ctx<'_>,
    name: &str,
    form: &std::collections::HashMap<String, String>,
) -> axum::http::Response<axum::body::Body> {
    let text = form.get("policy").map(String::as_str).unwrap_or("");
    match form.get("do").map(String::as_str) {
        Some("save") => {
            let input: Value = json!({ "repositoryName": name, "policyText": text });
            match ctx.ecr(Operation::SetRepositoryPolicy, input).await {
                Ok(_) => page(ctx, name, None, false, Some(("Saved.", true))).await,
                Err(e) => {
                    let m = format!("Not saved: {}: {}", e.code, e.message);
                    page(ctx, name, Some(text), true, Some((&m, false))).await
                }
            }
        }
        _ => page(ctx, name, Some(text), true, None).await,
    }
}
