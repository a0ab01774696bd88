//! The policy editors of the console — a repository's policy and the registry policy:
//! the stored text, a check of a new text before it is saved — the engine's lint findings at their line and column, and the **access
//! diff**: for every ECR action on the repository, who may do it under the stored policy
//! and who under the new one, by the same who-can analysis `berth policy who-can` runs,
//! so who gains and who loses access is seen before saving — and the save itself
//! (SetRepositoryPolicy or PutRegistryPolicy as the signed-in principal, CSRF-protected).
//! The same lint answers the editor's script as the text is typed ([`lint_api`]).
//!
//! The diff reads every identity of the account, so it is shown only to a principal that
//! may `iam:GetAccountAuthorizationDetails` (what `who-can` against a server needs too).

use serde_json::{json, Value};

use super::{esc, Ctx};
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
    /// The repository, in a registry policy's diff.
    pub repository: Option<String>,
    pub gained: Vec<String>,
    pub lost: Vec<String>,
}

/// The policy an editor works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Repository(String),
    Registry,
}

impl Target {
    fn kind(&self) -> berth_iam::PolicyKind {
        match self {
            Target::Repository(_) => berth_iam::PolicyKind::Repository,
            Target::Registry => berth_iam::PolicyKind::Registry,
        }
    }

    fn title(&self) -> String {
        match self {
            Target::Repository(name) => format!("Policy of {name}"),
            Target::Registry => "Registry policy".to_string(),
        }
    }

    fn path(&self) -> String {
        match self {
            Target::Repository(name) => format!("/console/policy/{}", super::enc(name)),
            Target::Registry => "/console/registry-policy".to_string(),
        }
    }
}

/// The actions a registry policy governs (ECR accepts no others in one).
pub const REGISTRY_ACTIONS: &[&str] = &["ecr:ReplicateImage", "ecr:CreateRepository"];

/// Repositories the registry policy's diff looks at, at most.
const DIFF_REPOSITORIES: usize = 200;

/// The access diff of replacing the target's policy with `candidate` (`None`: removing
/// it): for a repository, every action of [`ACTIONS`] on it; for the registry policy, the
/// actions it governs on each repository (the first [`DIFF_REPOSITORIES`]).
pub(super) async fn diff(
    ctx: &Ctx<'_>,
    target: &Target,
    candidate: Option<&str>,
) -> Result<(Vec<Change>, Option<String>), String> {
    let key = ctx.app.key(&ctx.caller.account, &ctx.app.config.region);
    let only = match target {
        Target::Repository(name) => Some(name.as_str()),
        Target::Registry => None,
    };
    let mut estate = crate::cli::estate::for_registry(
        &*ctx.app.store,
        &*ctx.app.registry,
        key,
        &ctx.app.config.region,
        only,
        true,
    )
    .await?;
    estate.anonymous_pull = ctx.app.config.anonymous_pull;
    let mut note = None;
    let mut out = Vec::new();
    match target {
        Target::Repository(name) => {
            let Some(before) = estate.repositories.first().cloned() else {
                return Err(format!("repository {name} is not in this registry"));
            };
            let mut after = before.clone();
            after.policy = candidate.map(str::to_string);
            for &action in ACTIONS {
                let was = crate::cli::whocan::who_can(&estate, &before, action)?;
                let will = crate::cli::whocan::who_can(&estate, &after, action)?;
                push_change(&mut out, action, None, was, will);
            }
        }
        Target::Registry => {
            if estate.repositories.len() > DIFF_REPOSITORIES {
                note = Some(format!(
                    "Compared on the first {DIFF_REPOSITORIES} of {} repositories.",
                    estate.repositories.len()
                ));
                estate.repositories.truncate(DIFF_REPOSITORIES);
            }
            let mut after = estate.clone();
            after.registry_policy = candidate.map(str::to_string);
            for repo in &estate.repositories {
                for &action in REGISTRY_ACTIONS {
                    let was = crate::cli::whocan::who_can(&estate, repo, action)?;
                    let will = crate::cli::whocan::who_can(&after, repo, action)?;
                    push_change(&mut out, action, Some(&repo.name), was, will);
                }
            }
        }
    }
    Ok((out, note))
}

fn push_change(
    out: &mut Vec<Change>,
    action: &'static str,
    repository: Option<&str>,
    was: Vec<String>,
    will: Vec<String>,
) {
    let gained: Vec<String> = will.iter().filter(|w| !was.contains(w)).cloned().collect();
    let lost: Vec<String> = was.iter().filter(|w| !will.contains(w)).cloned().collect();
    if !gained.is_empty() || !lost.is_empty() {
        out.push(Change {
            action,
            repository: repository.map(str::to_string),
            gained,
            lost,
        });
    }
}

/// The lint findings of `text` as a list.
fn findings_html(text: &str, kind: berth_iam::PolicyKind) -> (String, bool) {
    let findings = berth_iam::lint::lint(text, kind);
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
        return r#"<p class="ok">Nobody gains or loses access.</p>"#.into();
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
            let action = match &c.repository {
                Some(r) => format!("{} on {}", c.action, r),
                None => c.action.to_string(),
            };
            format!(
                r#"<tr><td><code>{}</code></td><td class="gained">{}</td><td class="lost">{}</td></tr>"#,
                esc(&action),
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
    target: &Target,
    text: Option<&str>,
    checked: bool,
    message: Option<(&str, bool)>,
) -> axum::http::Response<axum::body::Body> {
    let title = target.title();
    let stored = match target {
        Target::Repository(name) => ctx
            .ecr(
                Operation::GetRepositoryPolicy,
                json!({ "repositoryName": name }),
            )
            .await
            .map(|v| v["policyText"].as_str().map(str::to_string)),
        Target::Registry => ctx
            .ecr(Operation::GetRegistryPolicy, json!({}))
            .await
            .map(|v| v["policyText"].as_str().map(str::to_string)),
    };
    let stored = match stored {
        Ok(v) => v,
        Err(e)
            if e.code == "RepositoryPolicyNotFoundException"
                || e.code == "RegistryPolicyNotFoundException" =>
        {
            None
        }
        Err(e) => return ctx.denied(&title, &e),
    };
    let shown = text
        .map(str::to_string)
        .or_else(|| stored.clone())
        .unwrap_or_default();
    let mut results = String::new();
    if checked {
        let (findings, refuses) = findings_html(&shown, target.kind());
        results.push_str(&format!(
            r#"<section aria-labelledby="lint"><h2 id="lint">Lint</h2>{findings}</section>"#
        ));
        let diff = if ctx.may("iam:GetAccountAuthorizationDetails", "*") {
            let candidate = (!shown.trim().is_empty()).then_some(shown.as_str());
            match diff(ctx, target, candidate).await {
                Ok((changes, note)) => {
                    let note = note
                        .map(|n| format!(r#"<p class="note">{}</p>"#, esc(&n)))
                        .unwrap_or_default();
                    format!("{}{note}", diff_html(&changes))
                }
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
    let links = match target {
        Target::Repository(name) => super::browse::repository_links(name),
        Target::Registry => r#"<p class="note">The registry policy decides replication into this registry (ecr:ReplicateImage, ecr:CreateRepository) for other accounts' root users.</p>"#.to_string(),
    };
    let kind = match target {
        Target::Repository(_) => "repository",
        Target::Registry => "registry",
    };
    ctx.page(
        &title,
        &format!(
            r#"<h1>{t}</h1>{links}{note}
<form method="post" action="{path}" class="editor">
<input type="hidden" name="csrf" value="{csrf}">
<label for="policy">Policy document (JSON){empty}</label>
<div class="code-editor"><pre class="gutter" aria-hidden="true"></pre><textarea id="policy" name="policy" rows="18" spellcheck="false" data-lint="{kind}" aria-describedby="live-lint">{text}</textarea></div>
<div id="live-lint" class="live" aria-live="polite"></div>
<div class="buttons"><button type="submit" name="do" value="check">Check</button> <button type="submit" name="do" value="save">Save</button></div>
</form>{results}"#,
            t = esc(&title),
            path = target.path(),
            csrf = esc(ctx.csrf),
            empty = if stored.is_none() { " — none stored yet" } else { "" },
            text = esc(&shown),
        ),
    )
}

/// A POST of the policy form: check, or save.
pub(super) async fn post(
    ctx: &Ctx<'_>,
    target: &Target,
    form: &std::collections::HashMap<String, String>,
) -> axum::http::Response<axum::body::Body> {
    let text = form.get("policy").map(String::as_str).unwrap_or("");
    match form.get("do").map(String::as_str) {
        Some("save") => {
            let saved = match target {
                Target::Repository(name) => {
                    ctx.ecr(
                        Operation::SetRepositoryPolicy,
                        json!({ "repositoryName": name, "policyText": text }),
                    )
                    .await
                }
                Target::Registry => {
                    ctx.ecr(Operation::PutRegistryPolicy, json!({ "policyText": text }))
                        .await
                }
            };
            match saved {
                Ok(_) => page(ctx, target, None, false, Some(("Saved.", true))).await,
                Err(e) => {
                    let m = format!("Not saved: {}: {}", e.code, e.message);
                    page(ctx, target, Some(text), true, Some((&m, false))).await
                }
            }
        }
        _ => page(ctx, target, Some(text), true, None).await,
    }
}

/// The lint findings of a policy text as JSON, for the editors' script: `kind` is
/// `repository`, `registry` or `identity`.
pub fn lint_api(kind: Option<&str>, text: &str) -> axum::http::Response<axum::body::Body> {
    let kind = match kind {
        Some("registry") => berth_iam::PolicyKind::Registry,
        Some("identity") => berth_iam::PolicyKind::Identity,
        _ => berth_iam::PolicyKind::Repository,
    };
    let findings: Vec<Value> = berth_iam::lint::lint(text, kind)
        .iter()
        .map(|f| {
            json!({
                "type": f.finding_type.as_str(),
                "code": f.issue_code,
                "details": f.details,
                "line": f.line,
                "column": f.column,
                "refuses": f.refuses_write(),
            })
        })
        .collect();
    let mut r = axum::http::Response::new(axum::body::Body::from(
        json!({ "findings": findings }).to_string(),
    ));
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    super::with_headers(r)
}
