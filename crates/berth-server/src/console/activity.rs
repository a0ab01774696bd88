//! Activity: the audit log of this node, newest first, filtered by principal, repository,
//! action and decision; and how replication stands. The log is the one `berth serve`
//! writes (`audit_log`, by default DATA_DIR/audit.log); the page reads its newest
//! [`TAIL`] bytes. Reading it is `cloudtrail:LookupEvents` (the AWS action for reading
//! an account's API activity); a principal sees the lines of its own account only.

use std::io::{Read, Seek, SeekFrom};

use axum::body::Body;
use axum::http::Response;
use serde_json::{json, Value};

use super::{esc, text, Ctx};
use crate::audit::AuditSink;
use crate::ecr::router::Operation;

/// The newest bytes of the log a page reads.
const TAIL: u64 = 8 << 20;
/// Lines a page shows at most.
const SHOWN: usize = 200;

/// The newest lines of the log, newest first.
fn newest_lines(path: &std::path::Path) -> std::io::Result<Vec<String>> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let start = len.saturating_sub(TAIL);
    f.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::with_capacity((len - start) as usize);
    f.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if start > 0 && !lines.is_empty() {
        // The first line was cut.
        lines.remove(0);
    }
    lines.reverse();
    Ok(lines)
}

/// The account a line's principal or resource belongs to.
fn line_account(v: &Value) -> Option<String> {
    for field in ["principal", "resource"] {
        let arn = text(v, field);
        let mut parts = arn.split(':');
        if parts.next() == Some("arn") {
            let account = parts.nth(3).unwrap_or("");
            if account.len() == 12 {
                return Some(account.to_string());
            }
        }
    }
    None
}

pub async fn page(ctx: &Ctx<'_>, query: &[(String, String)]) -> Response<Body> {
    let q = |k: &str| {
        query
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let (principal, repository, action, decision) =
        (q("principal"), q("repository"), q("action"), q("decision"));
    if !ctx.may("cloudtrail:LookupEvents", "*") {
        return ctx.needs(
            "Activity",
            "cloudtrail:LookupEvents",
            "Reading the audit log",
        );
    }
    let select = |v: &str, label: &str| {
        format!(
            r#"<option value="{v}"{}>{label}</option>"#,
            if decision == v { " selected" } else { "" }
        )
    };
    let mut body = format!(
        r#"<h1>Activity</h1>
<form method="get" action="/console/activity" class="search filters" role="search">
<label>Principal<input name="principal" value="{}"></label>
<label>Repository<input name="repository" value="{}"></label>
<label>Action<input name="action" value="{}"></label>
<label>Decision<select name="decision">{}{}{}</select></label>
<button type="submit">Filter</button></form>"#,
        esc(&principal),
        esc(&repository),
        esc(&action),
        select("", "any"),
        select("Allow", "allowed"),
        select("Deny", "denied"),
    );
    let lines = match &ctx.app.config.audit {
        AuditSink::File(path, _) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || newest_lines(&path))
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))
                .and_then(|r| r)
                .map_err(|e| format!("the audit log cannot be read: {e}"))
        }
        AuditSink::Stdout => Err("This server writes its audit log to its standard output (audit_log = \"stdout\"): the console cannot show it.".into()),
        AuditSink::Off => Err("This server keeps no audit log (audit_log = \"off\").".into()),
    };
    let account = ctx.caller.account.to_string();
    let mut rows = String::new();
    match lines {
        Ok(lines) => {
            let mut shown = 0;
            for line in lines {
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if line_account(&v).as_deref() != Some(account.as_str()) {
                    continue;
                }
                let denied = text(&v, "decision") != "Allow";
                let matches = (principal.is_empty() || text(&v, "principal").contains(&principal))
                    && (repository.is_empty()
                        || text(&v, "resource").contains(&format!("repository/{repository}")))
                    && (action.is_empty()
                        || text(&v, "action")
                            .to_ascii_lowercase()
                            .contains(&action.to_ascii_lowercase()))
                    && match decision.as_str() {
                        "Allow" => !denied,
                        "Deny" => denied,
                        _ => true,
                    };
                if !matches {
                    continue;
                }
                rows.push_str(&format!(
                    r#"<tr class="{}"><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                    if denied { "denied" } else { "allowed" },
                    esc(text(&v, "time")),
                    esc(text(&v, "principal")),
                    esc(text(&v, "action")),
                    esc(text(&v, "resource")),
                    esc(text(&v, "decision")),
                    v["status"].as_u64().map(|s| s.to_string()).unwrap_or_default(),
                    esc(text(&v, "source_ip")),
                ));
                shown += 1;
                if shown == SHOWN {
                    break;
                }
            }
            if rows.is_empty() {
                rows =
                    r#"<tr><td colspan="7" class="empty">No matching activity.</td></tr>"#.into();
            }
            body.push_str(&format!(
                r#"<table id="activity"><thead><tr><th>Time</th><th>Principal</th><th>Action</th><th>Resource</th><th>Decision</th><th>Status</th><th>Source IP</th></tr></thead><tbody>{rows}</tbody></table><p class="note">The newest {SHOWN} matching decisions of this node's log.</p>"#
            ));
        }
        Err(e) => body.push_str(&format!(r#"<p class="note">{}</p>"#, esc(&e))),
    }
    body.push_str(&replication(ctx).await);
    ctx.page("Activity", &body)
}

/// The registry's replication rules and, for the deployment's own account, how the outbox
/// stands.
async fn replication(ctx: &Ctx<'_>) -> String {
    let Ok(registry) = ctx.ecr(Operation::DescribeRegistry, json!({})).await else {
        return String::new();
    };
    let rules: String = registry["replicationConfiguration"]["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let to: Vec<String> = r["destinations"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| format!("{} in {}", text(d, "registryId"), text(d, "region")))
                .collect();
            let filters: Vec<String> = r["repositoryFilters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| format!("{}*", text(f, "filter")))
                .collect();
            format!(
                "<li>{} → {}</li>",
                esc(&if filters.is_empty() {
                    "every repository".to_string()
                } else {
                    filters.join(", ")
                }),
                esc(&to.join("; "))
            )
        })
        .collect();
    let mut out = format!(
        r#"<section aria-labelledby="replication"><h2 id="replication">Replication</h2>{}"#,
        if rules.is_empty() {
            r#"<p class="note">No replication rules.</p>"#.to_string()
        } else {
            format!("<ul>{rules}</ul>")
        }
    );
    if *ctx.caller.account == *ctx.app.default_account {
        if let Ok(s) = ctx.app.registry.replication_summary().await {
            let now = crate::ids::now_ms();
            out.push_str(&format!(
                r#"<dl class="facts" id="replication-status"><dt>Pending</dt><dd>{}{}</dd><dt>Delivered</dt><dd>{}</dd><dt>Failed</dt><dd>{}</dd><dt>Last failure</dt><dd>{}</dd></dl>"#,
                s.pending,
                s.oldest_pending
                    .map(|t| format!(" (the oldest {:.0} s old)", (now - t).max(0) as f64 / 1000.0))
                    .unwrap_or_default(),
                s.complete,
                s.failed,
                esc(&s
                    .last_failure
                    .as_ref()
                    .map(|f| format!(
                        "{}/{}@{} to {} in {}: {}",
                        f.account,
                        f.repository,
                        f.digest,
                        f.destination.account,
                        f.destination.region,
                        f.failure_code.clone().unwrap_or_default()
                    ))
                    .unwrap_or_else(|| "none".into())),
            ));
        }
    }
    out.push_str("</section>");
    out
}
