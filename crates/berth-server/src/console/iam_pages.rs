//! The IAM overview of the console: the account's users, groups, roles and customer
//! managed policies, a user's groups, policies, login profile and access keys, creating an
//! access key (its secret shown once, on the page that creates it, never again) and
//! making a key active or inactive. Every list and action is the IAM operation itself,
//! called as the signed-in principal.

use std::collections::HashMap;

use axum::body::Body;
use axum::http::Response;
use serde_json::Value;

use super::{enc, esc, text, Ctx};

/// A table of an IAM list, or the denial in its place.
fn section(
    title: &str,
    listed: &Result<Value, crate::query::ApiError>,
    key: &str,
    row: impl Fn(&Value) -> String,
    head: &str,
) -> String {
    let id = title.to_ascii_lowercase().replace(' ', "-");
    let inner = match listed {
        Ok(v) => {
            let rows: String = v[key].as_array().into_iter().flatten().map(row).collect();
            let rows = if rows.is_empty() {
                r#"<tr><td colspan="4" class="empty">None.</td></tr>"#.to_string()
            } else {
                rows
            };
            format!(r#"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"#)
        }
        Err(e) => format!(
            r#"<p class="error" role="alert">{}: {}</p>"#,
            esc(e.code),
            esc(e
                .message
                .split(" Encoded authorization failure message")
                .next()
                .unwrap_or(""))
        ),
    };
    format!(
        r#"<section aria-labelledby="{id}"><h2 id="{id}">{}</h2>{inner}</section>"#,
        esc(title)
    )
}

pub async fn overview(ctx: &Ctx<'_>) -> Response<Body> {
    let users = ctx.iam("ListUsers", &[("MaxItems", "1000")]).await;
    let groups = ctx.iam("ListGroups", &[("MaxItems", "1000")]).await;
    let roles = ctx.iam("ListRoles", &[("MaxItems", "1000")]).await;
    let policies = ctx
        .iam("ListPolicies", &[("Scope", "Local"), ("MaxItems", "1000")])
        .await;
    let mut body = String::from("<h1>IAM</h1>");
    body.push_str(&section(
        "Users",
        &users,
        "Users",
        |u| {
            format!(
                r#"<tr><td><a href="/console/iam/users/{}">{}</a></td><td><code>{}</code></td><td>{}</td></tr>"#,
                enc(text(u, "UserName")),
                esc(text(u, "UserName")),
                esc(text(u, "Arn")),
                esc(text(u, "CreateDate"))
            )
        },
        "<th>Name</th><th>ARN</th><th>Created</th>",
    ));
    body.push_str(&section(
        "Groups",
        &groups,
        "Groups",
        |g| {
            format!(
                r#"<tr><td>{}</td><td><code>{}</code></td><td>{}</td></tr>"#,
                esc(text(g, "GroupName")),
                esc(text(g, "Arn")),
                esc(text(g, "CreateDate"))
            )
        },
        "<th>Name</th><th>ARN</th><th>Created</th>",
    ));
    body.push_str(&section(
        "Roles",
        &roles,
        "Roles",
        |r| {
            format!(
                r#"<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td><a href="/console/playground?principal={}">Playground</a></td></tr>"#,
                esc(text(r, "RoleName")),
                esc(text(r, "Arn")),
                esc(text(r, "CreateDate")),
                enc(text(r, "Arn"))
            )
        },
        "<th>Name</th><th>ARN</th><th>Created</th><th></th>",
    ));
    body.push_str(&section(
        "Customer managed policies",
        &policies,
        "Policies",
        |p| {
            format!(
                r#"<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>"#,
                esc(text(p, "PolicyName")),
                esc(text(p, "Arn")),
                p["AttachmentCount"].as_i64().unwrap_or(0),
                esc(text(p, "DefaultVersionId"))
            )
        },
        "<th>Name</th><th>ARN</th><th>Attachments</th><th>Version</th>",
    ));
    ctx.page("IAM", &body)
}

/// A user's page; `created` is a key just created (its secret shown this once).
pub async fn user(ctx: &Ctx<'_>, name: &str, created: Option<&Value>) -> Response<Body> {
    let title = format!("User {name}");
    let got = match ctx.iam("GetUser", &[("UserName", name)]).await {
        Ok(v) => v,
        Err(e) => return ctx.denied(&title, &e),
    };
    let u = &got["User"];
    let mut body = format!(
        r#"<h1>{}</h1><dl class="facts"><dt>ARN</dt><dd><code>{}</code></dd><dt>ID</dt><dd><code>{}</code></dd><dt>Created</dt><dd>{}</dd><dt>Console password</dt><dd>{}</dd></dl><p class="links"><a href="/console/playground?principal={}">Open in the playground</a></p>"#,
        esc(&title),
        esc(text(u, "Arn")),
        esc(text(u, "UserId")),
        esc(text(u, "CreateDate")),
        match ctx.iam("GetLoginProfile", &[("UserName", name)]).await {
            Ok(p) if p["LoginProfile"]["PasswordResetRequired"].as_bool() == Some(true) =>
                "set (a new one is required at the next sign-in)".to_string(),
            Ok(_) => "set".to_string(),
            Err(e) if e.code == "NoSuchEntity" => "none".to_string(),
            Err(e) => format!("not visible ({})", esc(e.code)),
        },
        enc(text(u, "Arn"))
    );
    if let Some(k) = created {
        let k = &k["AccessKey"];
        body.push_str(&format!(
            r#"<div class="secret" role="status" id="new-key"><p><strong>New access key.</strong> The secret is shown only now: copy it, it cannot be read again.</p><dl class="facts"><dt>Access key ID</dt><dd><code id="new-key-id">{}</code></dd><dt>Secret access key</dt><dd><code id="new-key-secret">{}</code></dd></dl></div>"#,
            esc(text(k, "AccessKeyId")),
            esc(text(k, "SecretAccessKey"))
        ));
    }
    let keys = ctx
        .iam(
            "ListAccessKeys",
            &[("UserName", name), ("MaxItems", "1000")],
        )
        .await;
    let csrf = esc(ctx.csrf);
    let path = format!("/console/iam/users/{}", enc(name));
    body.push_str(&section(
        "Access keys",
        &keys,
        "AccessKeyMetadata",
        |k| {
            let active = text(k, "Status") == "Active";
            format!(
                r#"<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td><form method="post" action="{path}"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="key" value="{}"><input type="hidden" name="do" value="{}"><button type="submit">{}</button></form></td></tr>"#,
                esc(text(k, "AccessKeyId")),
                esc(text(k, "Status")),
                esc(text(k, "CreateDate")),
                esc(text(k, "AccessKeyId")),
                if active { "deactivate" } else { "activate" },
                if active { "Deactivate" } else { "Activate" },
            )
        },
        "<th>Access key ID</th><th>Status</th><th>Created</th><th></th>",
    ));
    body.push_str(&format!(
        r#"<form method="post" action="{path}"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="do" value="create-key"><button type="submit">Create access key</button></form>"#
    ));
    let groups = ctx.iam("ListGroupsForUser", &[("UserName", name)]).await;
    body.push_str(&section(
        "Groups",
        &groups,
        "Groups",
        |g| format!("<tr><td>{}</td></tr>", esc(text(g, "GroupName"))),
        "<th>Name</th>",
    ));
    let attached = ctx
        .iam("ListAttachedUserPolicies", &[("UserName", name)])
        .await;
    body.push_str(&section(
        "Attached policies",
        &attached,
        "AttachedPolicies",
        |p| {
            format!(
                "<tr><td>{}</td><td><code>{}</code></td></tr>",
                esc(text(p, "PolicyName")),
                esc(text(p, "PolicyArn"))
            )
        },
        "<th>Name</th><th>ARN</th>",
    ));
    let inline = ctx.iam("ListUserPolicies", &[("UserName", name)]).await;
    let inline = inline.map(|v| {
        let names: Vec<Value> = v["PolicyNames"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| serde_json::json!({ "PolicyName": n }))
            .collect();
        serde_json::json!({ "Policies": names })
    });
    body.push_str(&section(
        "Inline policies",
        &inline,
        "Policies",
        |p| format!("<tr><td>{}</td></tr>", esc(text(p, "PolicyName"))),
        "<th>Name</th>",
    ));
    ctx.page(&title, &body)
}

/// A user page's forms: create a key, (de)activate one.
pub async fn post(ctx: &Ctx<'_>, name: &str, form: &HashMap<String, String>) -> Response<Body> {
    let title = format!("User {name}");
    let key = form.get("key").map(String::as_str).unwrap_or("");
    match form.get("do").map(String::as_str) {
        Some("create-key") => match ctx.iam("CreateAccessKey", &[("UserName", name)]).await {
            Ok(v) => user(ctx, name, Some(&v)).await,
            Err(e) => ctx.denied(&title, &e),
        },
        Some(what @ ("activate" | "deactivate")) => {
            let status = if what == "activate" {
                "Active"
            } else {
                "Inactive"
            };
            match ctx
                .iam(
                    "UpdateAccessKey",
                    &[("UserName", name), ("AccessKeyId", key), ("Status", status)],
                )
                .await
            {
                Ok(_) => super::redirect(&format!("/console/iam/users/{}", enc(name))),
                Err(e) => ctx.denied(&title, &e),
            }
        }
        _ => super::not_found(ctx),
    }
}
