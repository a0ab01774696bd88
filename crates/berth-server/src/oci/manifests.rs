//! Manifests, tags, the catalog and the referrers API.

use crate::registry::replication::outbox;
use axum::body::Body;
use axum::http::{Response, StatusCode};
use berth_store::Repository;
use serde_json::{json, Value};

use super::{response, set, OciCall, OciError};
use crate::registry::push::{store_manifest, ManifestPut, PushError, MAX_MANIFEST};
use crate::registry::{authorize_ecr, EcrRequest};
use berth_oci::manifest::OCI_INDEX;
use berth_oci::names::{valid_digest, valid_tag, TAG_GRAMMAR};

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = response(status, Body::from(v.to_string()));
    set(&mut r, "content-type", "application/json");
    r
}

/// `n` and `last` pagination over sorted names, with the `Link` header of the next page.
fn paginate(
    c: &OciCall<'_>,
    items: Vec<String>,
    path: &str,
) -> Result<(Vec<String>, Option<String>), OciError> {
    let n = match c.query("n") {
        Some(n) => Some(n.parse::<usize>().map_err(|_| {
            OciError::new(
                400,
                "PAGINATION_NUMBER_INVALID",
                format!("n={n} is not a number"),
            )
        })?),
        None => None,
    };
    let items: Vec<String> = match c.query("last") {
        Some(last) => items.into_iter().filter(|i| i.as_str() > last).collect(),
        None => items,
    };
    match n {
        Some(n) if items.len() > n => {
            let page: Vec<String> = items.into_iter().take(n).collect();
            let link = page
                .last()
                .map(|l| format!("<{path}?n={n}&last={l}>; rel=\"next\""));
            Ok((page, link))
        }
        _ => Ok((items, None)),
    }
}

/// The repositories the caller may describe. Others are skipped without a word: when none
/// is left, the caller is denied (or not) on the registry's `repository/*`, which names
/// none of them. `last` is a name, as the distribution spec has it; it only ever pages
/// through names the caller may see.
pub async fn catalog(c: &OciCall<'_>) -> Result<Response<Body>, OciError> {
    let ask = |name: String| async move {
        authorize_ecr(
            c.app,
            c.caller,
            c.origin,
            EcrRequest {
                action: "ecr:DescribeRepositories",
                registry: &c.registry,
                repository: Some(&name),
                context: Vec::new(),
            },
        )
        .await
    };
    let mut names = Vec::new();
    for r in c.app.registry.repositories(c.key()).await? {
        match ask(r.name.clone()).await {
            Ok(_) => names.push(r.name),
            Err(e) if e.code == "AccessDenied" => {}
            Err(e) => return Err(e.into()),
        }
    }
    if names.is_empty() {
        ask("*".to_string()).await?;
    }
    let (page, link) = paginate(c, names, "/v2/_catalog")?;
    let mut r = json_response(StatusCode::OK, &json!({"repositories": page}));
    if let Some(l) = link {
        set(&mut r, "link", &l);
    }
    Ok(r)
}

pub async fn tags_list(
    c: &OciCall<'_>,
    name: &str,
    repo: Option<Repository>,
) -> Result<Response<Body>, OciError> {
    let repo = c.existing(name, &repo)?;
    let tags: Vec<String> = c
        .app
        .registry
        .tags_of(repo.registry(), &repo.name)
        .await?
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    let (page, link) = paginate(c, tags, &format!("/v2/{name}/tags/list"))?;
    let mut r = json_response(StatusCode::OK, &json!({"name": name, "tags": page}));
    if let Some(l) = link {
        set(&mut r, "link", &l);
    }
    Ok(r)
}

/// What a reference in `/v2/<name>/manifests/<reference>` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ref {
    Tag,
    Digest,
    /// Neither a valid tag nor a valid digest: no manifest can have it.
    Invalid,
}

fn reference_kind(reference: &str) -> Ref {
    if valid_digest(reference) {
        Ref::Digest
    } else if valid_tag(reference) {
        Ref::Tag
    } else {
        Ref::Invalid
    }
}

/// A reference no manifest can have, on GET, HEAD and DELETE: the manifest does not exist
/// (404, as the distribution conformance suite expects and distribution answers, whose
/// routes match only tags and digests).
fn no_such_reference(reference: &str) -> OciError {
    let what = if reference.contains(':') {
        "a sha256 digest (sha256: and 64 lowercase hex digits)".to_string()
    } else {
        format!("a valid tag ({TAG_GRAMMAR})")
    };
    OciError::new(
        404,
        "MANIFEST_UNKNOWN",
        format!("Requested image not found: {reference:?} is not {what}, so no manifest has it"),
    )
}

/// A reference a manifest cannot be pushed under (400: `DIGEST_INVALID`, `TAG_INVALID`).
fn check_put_reference(reference: &str) -> Result<(), OciError> {
    match reference_kind(reference) {
        Ref::Tag | Ref::Digest => Ok(()),
        Ref::Invalid if reference.contains(':') => Err(OciError::new(
            400,
            "DIGEST_INVALID",
            format!("{reference:?} is not a sha256 digest (sha256: and 64 lowercase hex digits)"),
        )),
        Ref::Invalid => Err(OciError::new(
            400,
            "TAG_INVALID",
            format!("{reference:?} is not a valid tag: tags match {TAG_GRAMMAR}"),
        )),
    }
}

/// Every media type the client accepts (all `Accept` headers, comma lists), or `None`
/// for anything.
pub(crate) fn accepted(c: &OciCall<'_>) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for v in c.headers.get_all("accept") {
        let Ok(v) = v.to_str() else { continue };
        for item in v.split(',') {
            let t = item
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if t == "*/*" {
                return None;
            }
            if !t.is_empty() {
                out.push(t);
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

pub async fn get(
    c: &OciCall<'_>,
    name: &str,
    reference: &str,
    repo: Option<Repository>,
    head: bool,
) -> Result<Response<Body>, OciError> {
    // What the registry does not hold, a pull-through cache rule may fetch.
    if let Some(r) = crate::registry::cache::manifest(c, name, reference, &repo, head).await? {
        return Ok(r);
    }
    let repo = c.existing(name, &repo)?;
    let kind = reference_kind(reference);
    if kind == Ref::Invalid {
        return Err(no_such_reference(reference));
    }
    let not_found = || OciError::new(404, "MANIFEST_UNKNOWN", "Requested image not found");
    let img = c
        .app
        .registry
        .image(repo.registry(), &repo.name, reference)
        .await?
        .ok_or_else(not_found)?;
    // Stored manifests are never converted. By tag, a client that accepts none of the
    // stored type is told the image is not found in a form it takes; by digest the bytes
    // are what was asked for.
    if kind == Ref::Tag {
        if let Some(types) = accepted(c) {
            let stored = img.media_type.to_ascii_lowercase();
            let plain_json = types.iter().any(|t| t == "application/json");
            if !types.contains(&stored) && !plain_json {
                return Err(OciError::new(404, "MANIFEST_UNKNOWN", format!(
                    "Requested image not found in an accepted media type: it is stored as {} (manifests are never converted)",
                    img.media_type
                )));
            }
        }
    }
    let now_ms = crate::ids::now_ms();
    if !head && img.pull_due(now_ms) {
        c.app
            .registry
            .record_pull(repo.registry(), &repo.name, &img.digest, now_ms)
            .await?;
    }
    let len = img.manifest.len();
    let mut r = if head {
        response(StatusCode::OK, Body::empty())
    } else {
        response(StatusCode::OK, Body::from(img.manifest))
    };
    set(&mut r, "content-type", &img.media_type);
    set(&mut r, "docker-content-digest", &img.digest);
    set(&mut r, "etag", &format!("\"{}\"", img.digest));
    set(&mut r, "content-length", &len.to_string());
    Ok(r)
}

pub async fn put(
    c: &OciCall<'_>,
    name: &str,
    reference: &str,
    repo: Option<Repository>,
    body: Body,
) -> Result<Response<Body>, OciError> {
    // The body (at most MAX_MANIFEST bytes) is read before the request is judged: a
    // refusal sent while the client is still sending makes the server close with unread
    // data, which resets the connection and can lose the answer.
    let bytes = axum::body::to_bytes(body, MAX_MANIFEST)
        .await
        .map_err(|_| {
            OciError::new(
                413,
                "SIZE_INVALID",
                format!("the manifest is larger than {MAX_MANIFEST} bytes"),
            )
        })?;
    check_put_reference(reference)?;
    let repo = match repo {
        Some(r) => r,
        None => super::blobs::create_on_push(c, name).await?,
    };
    let (tag, digest) = if reference_kind(reference) == Ref::Digest {
        (None, Some(reference))
    } else {
        (Some(reference), None)
    };
    let replicate_to = outbox::pushes(c.app, &repo).await?;
    let replicating = !replicate_to.is_empty();
    let put = ManifestPut {
        bytes: &bytes,
        content_type: c.header("content-type"),
        tag,
        expected_digest: digest,
        now: crate::ids::now_ms(),
        replicate_to,
    };
    let pushed = store_manifest(c.app, &repo, put)
        .await
        .map_err(|e| match e {
            PushError::Invalid(m) => OciError::new(400, "MANIFEST_INVALID", m),
            PushError::DigestMismatch { given, computed } => OciError::new(400, "DIGEST_INVALID", format!(
                "the manifest's digest is {computed}, not {given}"
            )),
            PushError::Missing { blobs, manifests } => {
                let all: Vec<String> = blobs.iter().chain(manifests.iter()).cloned().collect();
                OciError::new(400, "MANIFEST_BLOB_UNKNOWN", format!(
                    "the manifest references {} the repository does not hold: {}",
                    if manifests.is_empty() { "blobs" } else { "blobs or manifests" },
                    all.join(", ")
                ))
                .with_detail(json!(all.iter().map(|d| json!({"digest": d})).collect::<Vec<_>>()))
            }
            PushError::TagImmutable { tag } => OciError::new(400, "TAG_INVALID", format!(
                "The image tag '{tag}' already exists in the '{}' repository and cannot be overwritten because the tag is immutable.",
                repo.name
            )),
            PushError::Store(e) => e.into(),
        })?;
    if replicating {
        outbox::wake();
    }
    let mut r = response(StatusCode::CREATED, Body::empty());
    set(
        &mut r,
        "location",
        &format!("/v2/{name}/manifests/{}", pushed.digest),
    );
    set(&mut r, "docker-content-digest", &pushed.digest);
    if let Some(s) = &pushed.subject {
        set(&mut r, "oci-subject", s);
    }
    Ok(r)
}

pub async fn delete(
    c: &OciCall<'_>,
    name: &str,
    reference: &str,
    repo: Option<Repository>,
) -> Result<Response<Body>, OciError> {
    let repo = c.existing(name, &repo)?;
    let kind = reference_kind(reference);
    if kind == Ref::Invalid {
        return Err(no_such_reference(reference));
    }
    let not_found = || OciError::new(404, "MANIFEST_UNKNOWN", "Requested image not found");
    let replicate_to = outbox::deletes(c.app, repo).await?;
    if kind == Ref::Digest {
        match c
            .app
            .registry
            .delete_image(repo.registry(), &repo.name, reference, &replicate_to)
            .await
        {
            Ok(true) => {}
            Ok(false) => return Err(not_found()),
            Err(e) => return Err(e.into()),
        }
    } else {
        let digest = c
            .app
            .registry
            .delete_tag(repo.registry(), &repo.name, reference, &replicate_to)
            .await?
            .ok_or_else(not_found)?;
        // The last tag gone, the image goes too (as ECR's BatchDeleteImage by tag).
        if let Some(img) = c
            .app
            .registry
            .image(repo.registry(), &repo.name, &digest)
            .await?
        {
            if img.tags.is_empty() {
                let _ = c
                    .app
                    .registry
                    .delete_image(repo.registry(), &repo.name, &digest, &replicate_to)
                    .await;
            }
        }
    }
    if !replicate_to.is_empty() {
        outbox::wake();
    }
    Ok(response(StatusCode::ACCEPTED, Body::empty()))
}

pub async fn referrers(
    c: &OciCall<'_>,
    name: &str,
    digest: &str,
    repo: Option<Repository>,
) -> Result<Response<Body>, OciError> {
    if !valid_digest(digest) {
        return Err(OciError::new(
            400,
            "DIGEST_INVALID",
            format!("{digest:?} is not a sha256 digest"),
        ));
    }
    let repo = c.existing(name, &repo)?;
    let filter = c.query("artifactType").map(str::to_string);
    let mut manifests = Vec::new();
    for img in c
        .app
        .registry
        .referrers(repo.registry(), &repo.name, digest)
        .await?
    {
        let parsed = serde_json::from_slice::<Value>(&img.manifest).ok();
        // Without an artifactType, a manifest's type is its config's media type (spec).
        let artifact_type = img.artifact_type.clone().or_else(|| {
            parsed
                .as_ref()
                .and_then(|v| v.pointer("/config/mediaType"))
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        if filter
            .as_ref()
            .is_some_and(|f| artifact_type.as_ref() != Some(f))
        {
            continue;
        }
        let annotations = parsed
            .and_then(|v| v.get("annotations").cloned())
            .filter(|a| a.is_object());
        let mut d = json!({
            "mediaType": img.media_type,
            "digest": img.digest,
            "size": img.manifest.len(),
        });
        if let Some(t) = &artifact_type {
            d["artifactType"] = json!(t);
        }
        if let Some(a) = annotations {
            d["annotations"] = a;
        }
        manifests.push(d);
    }
    let mut r = response(
        StatusCode::OK,
        Body::from(
            json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}).to_string(),
        ),
    );
    set(&mut r, "content-type", OCI_INDEX);
    if filter.is_some() {
        set(&mut r, "oci-filters-applied", "artifactType");
    }
    Ok(r)
}
