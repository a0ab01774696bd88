//! Browsing the registry: repositories (search, pages, sizes, settings), a repository's
//! images, an image (manifest, layers, platforms of an index, referrers, replication),
//! lifecycle previews, and deleting images and repositories after a confirmation. Every
//! answer comes from an ECR operation called as the signed-in principal (the search
//! through the same listing DescribeRepositories pages through), so what is shown and
//! what is done is exactly what the APIs would answer and do for that principal.

use std::collections::HashMap;

use axum::body::Body;
use axum::http::Response;
use serde_json::{json, Value};

use super::{enc, esc, redirect, size, text, time, Ctx};
use crate::ecr::router::Operation;

/// Repositories a page shows.
const PAGE: usize = 50;

pub async fn repositories(
    ctx: &Ctx<'_>,
    after: Option<&str>,
    filter: Option<&str>,
) -> Response<Body> {
    let filter = filter.unwrap_or("").trim();
    let input = Value::Null;
    let call = ctx.registry_call(&input);
    let contains = (!filter.is_empty()).then_some(filter);
    let (shown, more) =
        match crate::ecr::repositories::visible_repositories(&call, contains, after, PAGE).await {
            Ok(v) => v,
            Err(e) => return ctx.denied("Repositories", &e),
        };
    let key = ctx.app.key(&ctx.caller.account, &ctx.origin.region);
    let names: Vec<String> = shown.iter().map(|r| r.name.clone()).collect();
    let usage = ctx
        .app
        .registry
        .repository_usage(key, &names)
        .await
        .unwrap_or_default();
    // The prefixes the registry's replication rules match (when the principal may read
    // them).
    let replicated: Vec<Vec<String>> = ctx
        .ecr(Operation::DescribeRegistry, json!({}))
        .await
        .map(|v| {
            v["replicationConfiguration"]["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|rule| {
                    rule["repositoryFilters"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|f| text(f, "filter").to_string())
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default();
    let replicates = |name: &str| {
        replicated.iter().any(|prefixes| {
            prefixes.is_empty() || prefixes.iter().any(|p| name.starts_with(p.as_str()))
        })
    };
    let mut rows = String::new();
    for r in &shown {
        let u = usage.iter().find(|u| u.name == r.name);
        let settings = [
            r.scan_on_push.then_some("scan on push"),
            r.lifecycle_policy.is_some().then_some("lifecycle policy"),
            r.policy.is_some().then_some("repository policy"),
            replicates(&r.name).then_some("replicated"),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ");
        rows.push_str(&format!(
            r#"<tr><td><a href="/console/repositories/{}">{}</a></td><td class="num">{}</td><td class="num">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            enc(&r.name),
            esc(&r.name),
            u.map_or(0, |u| u.images),
            esc(&size(u.map_or(0, |u| u.bytes) as f64)),
            esc(r.tag_mutability.as_str()),
            esc(&settings),
            esc(&crate::ids::iso8601(r.created / 1000)),
        ));
    }
    if rows.is_empty() {
        rows = r#"<tr><td colspan="6" class="empty">No repositories to show.</td></tr>"#.into();
    }
    let more = match (more, shown.last()) {
        (true, Some(last)) => format!(
            r#"<p><a class="button" href="/console/repositories?q={}&amp;after={}">Next page</a></p>"#,
            enc(filter),
            enc(&last.name)
        ),
        _ => String::new(),
    };
    ctx.page(
        "Repositories",
        &format!(
            r#"<h1>Repositories</h1>
<form method="get" action="/console/repositories" class="search" role="search"><label>Name contains<input name="q" value="{}"></label><button type="submit">Search</button></form>
<table><thead><tr><th>Name</th><th>Images</th><th>Size</th><th>Tags</th><th>Settings</th><th>Created</th></tr></thead><tbody>{rows}</tbody></table>{more}"#,
            esc(filter)
        ),
    )
}

/// The links of a repository's pages.
pub(super) fn repository_links(name: &str) -> String {
    format!(
        r#"<p class="links"><a href="/console/repositories/{n}">Images</a> <a href="/console/policy/{n}">Repository policy</a> <a href="/console/lifecycle/{n}">Lifecycle</a> <a href="/console/who-can?repository={n}">Who can</a> <a class="danger" href="/console/delete-repository/{n}">Delete repository</a></p>"#,
        n = enc(name)
    )
}

pub async fn images(ctx: &Ctx<'_>, name: &str, next: Option<&str>) -> Response<Body> {
    let title = format!("Repository {name}");
    let mut input = json!({ "repositoryName": name, "maxResults": 100 });
    if let Some(n) = next {
        input["nextToken"] = json!(n);
    }
    let out = match ctx.ecr(Operation::DescribeImages, input).await {
        Ok(v) => v,
        Err(e) => return ctx.denied(&title, &e),
    };
    let mut rows = String::new();
    for i in out["imageDetails"].as_array().cloned().unwrap_or_default() {
        let tags: Vec<String> = i["imageTags"]
            .as_array()
            .map(|t| t.iter().filter_map(Value::as_str).map(esc).collect())
            .unwrap_or_default();
        let digest = text(&i, "imageDigest");
        rows.push_str(&format!(
            r#"<tr><td>{}</td><td><a href="/console/image/{}?digest={}"><code>{}</code></a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            if tags.is_empty() { "<em>untagged</em>".to_string() } else { tags.join(", ") },
            enc(name),
            enc(digest),
            esc(digest),
            esc(&size(i["imageSizeInBytes"].as_f64().unwrap_or(0.0))),
            esc(match text(&i, "artifactMediaType") {
                "" => text(&i, "imageManifestMediaType"),
                artifact => artifact,
            }),
            esc(&time(&i, "imagePushedAt")),
            esc(&time(&i, "lastRecordedPullTime")),
        ));
    }
    if rows.is_empty() {
        rows = r#"<tr><td colspan="6" class="empty">No images.</td></tr>"#.into();
    }
    let more = match out.get("nextToken").and_then(Value::as_str) {
        Some(n) => format!(
            r#"<p><a class="button" href="/console/repositories/{}?next={}">Next page</a></p>"#,
            enc(name),
            enc(n)
        ),
        None => String::new(),
    };
    ctx.page(
        &title,
        &format!(
            r#"<h1>{}</h1>{}<table><thead><tr><th>Tags</th><th>Digest</th><th>Size</th><th>Type</th><th>Pushed</th><th>Last pulled</th></tr></thead><tbody>{rows}</tbody></table>{more}"#,
            esc(&title),
            repository_links(name)
        ),
    )
}

/// The platform of an index entry, as `os/architecture[/variant]`.
fn platform(entry: &Value) -> String {
    let p = &entry["platform"];
    let mut out = format!("{}/{}", text(p, "os"), text(p, "architecture"));
    if !text(p, "variant").is_empty() {
        out.push('/');
        out.push_str(text(p, "variant"));
    }
    if out == "/" {
        out = "—".into();
    }
    out
}

pub async fn image(ctx: &Ctx<'_>, name: &str, digest: &str) -> Response<Body> {
    let title = format!("{name}@{digest}");
    let got = match ctx
        .ecr(
            Operation::BatchGetImage,
            json!({
                "repositoryName": name,
                "imageIds": [{ "imageDigest": digest }],
                "acceptedMediaTypes": [
                    "application/vnd.oci.image.manifest.v1+json",
                    "application/vnd.oci.image.index.v1+json",
                    "application/vnd.docker.distribution.manifest.v2+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json",
                    "application/vnd.docker.distribution.manifest.v1+prettyjws",
                ],
            }),
        )
        .await
    {
        Ok(v) => v,
        Err(e) => return ctx.denied(&title, &e),
    };
    let Some(img) = got["images"].as_array().and_then(|a| a.first()).cloned() else {
        let why = got["failures"][0]["failureReason"]
            .as_str()
            .unwrap_or("the image is not in this repository")
            .to_string();
        return ctx.denied(
            &title,
            &crate::query::ApiError::new(404, "ImageNotFoundException", why),
        );
    };
    let manifest_text = text(&img, "imageManifest");
    let manifest: Value = serde_json::from_str(manifest_text).unwrap_or(Value::Null);
    let media_type = text(&img, "imageManifestMediaType");
    // What DescribeImages says of it (tags, size, times), if the principal may see that.
    let detail = ctx
        .ecr(
            Operation::DescribeImages,
            json!({ "repositoryName": name, "imageIds": [{ "imageDigest": digest }] }),
        )
        .await
        .ok()
        .and_then(|v| {
            v["imageDetails"]
                .as_array()
                .and_then(|a| a.first())
                .cloned()
        })
        .unwrap_or(Value::Null);
    let tags: Vec<String> = detail["imageTags"]
        .as_array()
        .map(|t| t.iter().filter_map(Value::as_str).map(esc).collect())
        .unwrap_or_default();
    let mut body = format!(
        r#"<h1>{}</h1>{}<dl class="facts"><dt>Tags</dt><dd>{}</dd><dt>Media type</dt><dd><code>{}</code></dd><dt>Size</dt><dd>{}</dd><dt>Pushed</dt><dd>{}</dd><dt>Last pulled</dt><dd>{}</dd></dl>"#,
        esc(&title),
        repository_links(name),
        if tags.is_empty() {
            "<em>untagged</em>".into()
        } else {
            tags.join(", ")
        },
        esc(media_type),
        esc(&size(detail["imageSizeInBytes"].as_f64().unwrap_or(0.0))),
        esc(&time(&detail, "imagePushedAt")),
        esc(&time(&detail, "lastRecordedPullTime")),
    );
    if let Some(children) = manifest["manifests"].as_array() {
        let rows: String = children
            .iter()
            .map(|m| {
                let d = text(m, "digest");
                format!(
                    r#"<tr><td>{}</td><td><a href="/console/image/{}?digest={}"><code>{}</code></a></td><td>{}</td><td><code>{}</code></td></tr>"#,
                    esc(&platform(m)),
                    enc(name),
                    enc(d),
                    esc(d),
                    esc(&size(m["size"].as_f64().unwrap_or(0.0))),
                    esc(text(m, "mediaType")),
                )
            })
            .collect();
        body.push_str(&format!(
            r#"<section aria-labelledby="platforms"><h2 id="platforms">Platforms</h2><table><thead><tr><th>Platform</th><th>Manifest</th><th>Size</th><th>Media type</th></tr></thead><tbody>{rows}</tbody></table></section>"#
        ));
    }
    let mut layers: Vec<(&str, &Value)> = Vec::new();
    if manifest["config"].is_object() {
        layers.push(("config", &manifest["config"]));
    }
    for l in manifest["layers"].as_array().into_iter().flatten() {
        layers.push(("layer", l));
    }
    if !layers.is_empty() {
        let rows: String = layers
            .iter()
            .map(|(kind, l)| {
                format!(
                    r#"<tr><td>{kind}</td><td><code>{}</code></td><td>{}</td><td><code>{}</code></td></tr>"#,
                    esc(text(l, "digest")),
                    esc(&size(l["size"].as_f64().unwrap_or(0.0))),
                    esc(text(l, "mediaType")),
                )
            })
            .collect();
        body.push_str(&format!(
            r#"<section aria-labelledby="layers"><h2 id="layers">Config and layers</h2><table><thead><tr><th></th><th>Digest</th><th>Size</th><th>Media type</th></tr></thead><tbody>{rows}</tbody></table></section>"#
        ));
    }
    // Referrers (signatures, SBOMs, attestations): allowed with the manifest itself, as
    // the /v2 referrers API is.
    let key = ctx.app.key(&ctx.caller.account, &ctx.origin.region);
    if let Ok(referrers) = ctx.app.registry.referrers(key, name, digest).await {
        if !referrers.is_empty() {
            let rows: String = referrers
                .iter()
                .map(|r| {
                    let kind = r.artifact_type.clone().unwrap_or_else(|| {
                        serde_json::from_slice::<Value>(&r.manifest)
                            .ok()
                            .and_then(|v| v.pointer("/config/mediaType")?.as_str().map(str::to_string))
                            .unwrap_or_default()
                    });
                    format!(
                        r#"<tr><td><code>{}</code></td><td><a href="/console/image/{}?digest={}"><code>{}</code></a></td><td>{}</td></tr>"#,
                        esc(&kind),
                        enc(name),
                        enc(&r.digest),
                        esc(&r.digest),
                        esc(&crate::ids::iso8601(r.pushed_at / 1000)),
                    )
                })
                .collect();
            body.push_str(&format!(
                r#"<section aria-labelledby="referrers"><h2 id="referrers">Referrers</h2><table><thead><tr><th>Artifact type</th><th>Manifest</th><th>Pushed</th></tr></thead><tbody>{rows}</tbody></table></section>"#
            ));
        }
    }
    if let Ok(status) = ctx
        .ecr(
            Operation::DescribeImageReplicationStatus,
            json!({ "repositoryName": name, "imageId": { "imageDigest": digest } }),
        )
        .await
    {
        let rows: String = status["replicationStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                format!(
                    r#"<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                    esc(text(s, "region")),
                    esc(text(s, "registryId")),
                    esc(text(s, "status")),
                    esc(text(s, "failureCode")),
                )
            })
            .collect();
        if !rows.is_empty() {
            body.push_str(&format!(
                r#"<section aria-labelledby="replication"><h2 id="replication">Replication</h2><table><thead><tr><th>Region</th><th>Registry</th><th>Status</th><th>Failure</th></tr></thead><tbody>{rows}</tbody></table></section>"#
            ));
        }
    }
    let pretty = serde_json::to_string_pretty(&manifest).unwrap_or_else(|_| manifest_text.into());
    body.push_str(&format!(
        r#"<section aria-labelledby="manifest"><h2 id="manifest">Manifest</h2><pre class="code">{}</pre></section><p><a class="button danger" href="/console/delete-image/{}?digest={}">Delete this image</a></p>"#,
        esc(&pretty),
        enc(name),
        enc(digest)
    ));
    ctx.page(&title, &body)
}

pub async fn confirm_image_delete(ctx: &Ctx<'_>, name: &str, digest: &str) -> Response<Body> {
    let title = format!("Delete {name}@{digest}");
    ctx.page(
        &title,
        &format!(
            r#"<h1>{}</h1><p>The image and every tag on it are deleted from <strong>{}</strong>. Its layers are freed by garbage collection once no image holds them.</p>
<form method="post" action="/console/delete-image/{}" class="card"><input type="hidden" name="csrf" value="{}"><input type="hidden" name="digest" value="{}"><div class="buttons"><button type="submit" class="danger">Delete the image</button> <a class="button secondary" href="/console/image/{}?digest={}">Cancel</a></div></form>"#,
            esc(&title),
            esc(name),
            enc(name),
            esc(ctx.csrf),
            esc(digest),
            enc(name),
            enc(digest)
        ),
    )
}

pub async fn delete_image(
    ctx: &Ctx<'_>,
    name: &str,
    form: &HashMap<String, String>,
) -> Response<Body> {
    let digest = form.get("digest").map(String::as_str).unwrap_or("");
    let title = format!("Delete {name}@{digest}");
    match ctx
        .ecr(
            Operation::BatchDeleteImage,
            json!({ "repositoryName": name, "imageIds": [{ "imageDigest": digest }] }),
        )
        .await
    {
        Ok(v) => match v["failures"].as_array().and_then(|a| a.first()) {
            Some(f) => ctx.denied(
                &title,
                &crate::query::ApiError::new(
                    400,
                    "ImageNotDeleted",
                    format!("{}: {}", text(f, "failureCode"), text(f, "failureReason")),
                ),
            ),
            None => redirect(&format!("/console/repositories/{}", enc(name))),
        },
        Err(e) => ctx.denied(&title, &e),
    }
}

pub async fn confirm_repository_delete(ctx: &Ctx<'_>, name: &str) -> Response<Body> {
    let title = format!("Delete repository {name}");
    ctx.page(
        &title,
        &format!(
            r#"<h1>{}</h1><p>The repository, its policies and <strong>every image in it</strong> are deleted. This cannot be undone. Type the repository's name to confirm.</p>
<form method="post" action="/console/delete-repository/{}" class="card"><input type="hidden" name="csrf" value="{}"><label>Repository name<input name="confirm" autocomplete="off" required></label><div class="buttons"><button type="submit" class="danger">Delete the repository</button> <a class="button secondary" href="/console/repositories/{}">Cancel</a></div></form>"#,
            esc(&title),
            enc(name),
            esc(ctx.csrf),
            enc(name)
        ),
    )
}

pub async fn delete_repository(
    ctx: &Ctx<'_>,
    name: &str,
    form: &HashMap<String, String>,
) -> Response<Body> {
    let title = format!("Delete repository {name}");
    if form.get("confirm").map(|c| c.trim()) != Some(name) {
        return ctx.denied(
            &title,
            &crate::query::ApiError::new(
                400,
                "NotConfirmed",
                "The name typed is not the repository's: nothing was deleted.",
            ),
        );
    }
    match ctx
        .ecr(
            Operation::DeleteRepository,
            json!({ "repositoryName": name, "force": true }),
        )
        .await
    {
        Ok(_) => redirect("/console/repositories"),
        Err(e) => ctx.denied(&title, &e),
    }
}

/// A repository's lifecycle policy and its last preview.
pub async fn lifecycle(ctx: &Ctx<'_>, name: &str) -> Response<Body> {
    let title = format!("Lifecycle of {name}");
    let policy = match ctx
        .ecr(
            Operation::GetLifecyclePolicy,
            json!({ "repositoryName": name }),
        )
        .await
    {
        Ok(v) => Some(text(&v, "lifecyclePolicyText").to_string()),
        Err(e) if e.code == "LifecyclePolicyNotFoundException" => None,
        Err(e) => return ctx.denied(&title, &e),
    };
    let mut body = format!("<h1>{}</h1>{}", esc(&title), repository_links(name));
    let Some(policy) = policy else {
        body.push_str(r#"<p class="note">No lifecycle policy: nothing in this repository expires. Set one with <code>aws ecr put-lifecycle-policy</code>.</p>"#);
        return ctx.page(&title, &body);
    };
    let pretty = serde_json::from_str::<Value>(&policy)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or(policy);
    body.push_str(&format!(
        r#"<section aria-labelledby="policy"><h2 id="policy">Policy</h2><pre class="code">{}</pre></section>"#,
        esc(&pretty)
    ));
    let preview = ctx
        .ecr(
            Operation::GetLifecyclePolicyPreview,
            json!({ "repositoryName": name, "maxResults": 100 }),
        )
        .await;
    let section = match preview {
        Ok(p) => {
            let rows: String = p["previewResults"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    let tags: Vec<String> = r["imageTags"]
                        .as_array()
                        .map(|t| t.iter().filter_map(Value::as_str).map(esc).collect())
                        .unwrap_or_default();
                    format!(
                        r#"<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>"#,
                        if tags.is_empty() {
                            "<em>untagged</em>".into()
                        } else {
                            tags.join(", ")
                        },
                        esc(text(r, "imageDigest")),
                        esc(&time(r, "imagePushedAt")),
                        r["appliedRulePriority"].as_i64().unwrap_or_default(),
                    )
                })
                .collect();
            let rows = if rows.is_empty() {
                r#"<tr><td colspan="4" class="empty">Nothing would expire.</td></tr>"#.to_string()
            } else {
                rows
            };
            format!(
                r#"<p>Preview {}: {} image(s) would expire.</p><table><thead><tr><th>Tags</th><th>Digest</th><th>Pushed</th><th>Rule</th></tr></thead><tbody>{rows}</tbody></table>"#,
                esc(text(&p, "status")),
                p["summary"]["expiringImageTotalCount"]
                    .as_i64()
                    .unwrap_or(0),
            )
        }
        Err(e) if e.code == "LifecyclePolicyPreviewNotFoundException" => {
            r#"<p class="note">No preview yet.</p>"#.to_string()
        }
        Err(e) => format!(
            r#"<p class="error">The preview cannot be shown: {}: {}</p>"#,
            esc(e.code),
            esc(&e.message)
        ),
    };
    body.push_str(&format!(
        r#"<section aria-labelledby="preview"><h2 id="preview">What the policy would expire now</h2>{section}<form method="post" action="/console/lifecycle/{}"><input type="hidden" name="csrf" value="{}"><button type="submit">Preview again</button></form></section>"#,
        enc(name),
        esc(ctx.csrf)
    ));
    ctx.page(&title, &body)
}

/// Start a lifecycle policy preview, then show the page.
pub async fn lifecycle_preview(ctx: &Ctx<'_>, name: &str) -> Response<Body> {
    if let Err(e) = ctx
        .ecr(
            Operation::StartLifecyclePolicyPreview,
            json!({ "repositoryName": name }),
        )
        .await
    {
        return ctx.denied(&format!("Lifecycle of {name}"), &e);
    }
    redirect(&format!("/console/lifecycle/{}", enc(name)))
}
