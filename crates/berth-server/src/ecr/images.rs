//! Images through the API: PutImage, BatchGetImage, BatchDeleteImage, ListImages,
//! DescribeImages. Same store as the registry: what one API writes, the other sees.

use berth_store::{Image, Repository};
use serde_json::{json, Value};

use super::{invalid, EcrCall};
use crate::query::ApiError;
use crate::registry::push::{store_manifest, ManifestPut, PushError};
use crate::registry::replication::outbox;
use berth_oci::names::{valid_digest, valid_tag, TAG_GRAMMAR};

/// ECR's own limit on `imageTag` (its model: 1 to 300 characters), checked on every call
/// before anything else: `InvalidParameterException`.
fn check_tag_length(at: &str, tag: &str) -> Result<(), ApiError> {
    if tag.is_empty() || tag.chars().count() > 300 {
        return Err(invalid(format!(
            "Invalid parameter at '{at}' failed to satisfy constraint: 'Member must have length between 1 and 300'"
        )));
    }
    Ok(())
}

/// Why a tag is not one the registry (and docker, podman, skopeo) could pull by.
fn tag_grammar_problem(tag: &str) -> String {
    format!("{tag:?} is not a valid image tag: tags match {TAG_GRAMMAR}")
}

/// A tag the call names must be a valid OCI tag, the same grammar the registry API
/// checks (`InvalidParameterException`): so no image gets a tag it cannot be pulled by.
fn check_tag(at: &str, tag: &str) -> Result<(), ApiError> {
    check_tag_length(at, tag)?;
    if !valid_tag(tag) {
        return Err(invalid(format!(
            "Invalid parameter at '{at}' failed to satisfy constraint: '{}'",
            tag_grammar_problem(tag)
        )));
    }
    Ok(())
}

fn image_json(r: &Repository, img: &Image, tag: Option<&str>) -> Value {
    json!({
        "registryId": r.account,
        "repositoryName": r.name,
        "imageId": {"imageDigest": img.digest, "imageTag": tag},
        "imageManifest": String::from_utf8_lossy(&img.manifest),
        "imageManifestMediaType": img.media_type,
    })
}

pub async fn put_image(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let r = c.repo()?;
    let manifest = c.required("imageManifest")?;
    let tag = c.str("imageTag");
    if let Some(t) = tag {
        check_tag("imageTag", t)?;
    }
    let media_type = c.str("imageManifestMediaType");
    let replicate_to = outbox::pushes(c.app, r).await?;
    let replicating = !replicate_to.is_empty();
    let put = ManifestPut {
        bytes: manifest.as_bytes(),
        content_type: media_type,
        tag,
        expected_digest: c.str("imageDigest"),
        now: crate::ids::now_ms(),
        replicate_to,
    };
    let pushed = store_manifest(c.app, r, put)
        .await
        .map_err(|e| push_error(r, e))?;
    if replicating {
        outbox::wake();
    }
    if pushed.outcome.existed && (tag.is_none() || pushed.outcome.tag_unchanged) {
        return Err(ApiError::new(
            400,
            "ImageAlreadyExistsException",
            format!(
                "Image with digest '{}' and tag '{}' already exists in the repository with name '{}' in registry with id '{}'",
                pushed.digest,
                tag.unwrap_or(""),
                r.name,
                r.account
            ),
        ));
    }
    Ok(json!({ "image": {
        "registryId": r.account,
        "repositoryName": r.name,
        "imageId": {"imageDigest": pushed.digest, "imageTag": tag},
        "imageManifest": manifest,
        "imageManifestMediaType": pushed.media_type,
    }}))
}

pub fn push_error(r: &Repository, e: PushError) -> ApiError {
    match e {
        PushError::Invalid(m) => invalid(format!("Invalid parameter at 'ImageManifest' failed to satisfy constraint: 'Invalid JSON syntax': {m}")),
        PushError::DigestMismatch { given, computed } => ApiError::new(
            400,
            "ImageDigestDoesNotMatchException",
            format!("Provided digest '{given}' does not match the computed digest '{computed}' of the manifest"),
        ),
        PushError::Missing { blobs, manifests } if !blobs.is_empty() => ApiError::new(
            400,
            "LayersNotFoundException",
            format!(
                "Layers with digests '{:?}' required for pushing image into repository with name '{}' in registry with id '{}' do not exist{}",
                blobs, r.name, r.account,
                if manifests.is_empty() { String::new() } else { format!("; nor do the images {manifests:?}") }
            ),
        ),
        PushError::Missing { manifests, .. } => ApiError::new(
            400,
            "ReferencedImagesNotFoundException",
            format!(
                "Images with digests '{manifests:?}' referenced by the manifest list do not exist in the repository with name '{}' in registry with id '{}'",
                r.name, r.account
            ),
        ),
        PushError::TagImmutable { tag } => ApiError::new(
            400,
            "ImageTagAlreadyExistsException",
            format!("The image tag '{tag}' already exists in the '{}' repository and cannot be overwritten because the tag is immutable.", r.name),
        ),
        PushError::Store(e) => e.into(),
    }
}

/// An `imageIds` entry: (tag, digest).
pub(super) type ImageId = (Option<String>, Option<String>);

pub(super) fn image_ids(c: &EcrCall<'_>, required: bool) -> Result<Option<Vec<ImageId>>, ApiError> {
    let Some(list) = c.input.get("imageIds") else {
        return if required {
            Err(invalid("1 validation error detected: Value null at 'imageIds' failed to satisfy constraint: Member must not be null"))
        } else {
            Ok(None)
        };
    };
    let list = list.as_array().filter(|a| (1..=100).contains(&a.len())).ok_or_else(|| {
        invalid("Invalid parameter at 'imageIds' failed to satisfy constraint: 'Member must have length between 1 and 100'")
    })?;
    let mut ids = Vec::with_capacity(list.len());
    for i in list {
        let tag = i.get("imageTag").and_then(Value::as_str);
        if let Some(t) = tag {
            check_tag_length("imageIds.member.imageTag", t)?;
        }
        ids.push((
            tag.map(str::to_string),
            i.get("imageDigest")
                .and_then(Value::as_str)
                .map(str::to_string),
        ));
    }
    Ok(Some(ids))
}

fn failure(tag: &Option<String>, digest: &Option<String>, code: &str, reason: &str) -> Value {
    json!({"imageId": {"imageTag": tag, "imageDigest": digest}, "failureCode": code, "failureReason": reason})
}

/// Find an image by an `imageIds` entry, or the failure to report.
async fn find(
    c: &EcrCall<'_>,
    r: &Repository,
    tag: &Option<String>,
    digest: &Option<String>,
) -> Result<Result<Image, Value>, ApiError> {
    if let Some(t) = tag {
        if !valid_tag(t) {
            let reason = format!("Invalid request parameters: {}", tag_grammar_problem(t));
            return Ok(Err(failure(tag, digest, "InvalidImageTag", &reason)));
        }
    }
    if let Some(d) = digest {
        if !valid_digest(d) {
            return Ok(Err(failure(tag, digest, "InvalidImageDigest", "Invalid request parameters: image digest should satisfy the regex '[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+'")));
        }
    }
    let reference = match (tag, digest) {
        (None, None) => {
            return Ok(Err(failure(
                tag,
                digest,
                "MissingDigestAndTag",
                "Invalid request parameters: both tag and digest cannot be null",
            )))
        }
        (_, Some(d)) => d.clone(),
        (Some(t), None) => t.clone(),
    };
    let Some(img) = c
        .app
        .registry
        .image(r.registry(), &r.name, &reference)
        .await?
    else {
        return Ok(Err(failure(
            tag,
            digest,
            "ImageNotFound",
            "Requested image not found",
        )));
    };
    if let Some(t) = tag {
        if !img.tags.contains(t) {
            let code = if digest.is_some() {
                "ImageTagDoesNotMatchDigest"
            } else {
                "ImageNotFound"
            };
            return Ok(Err(failure(
                tag,
                digest,
                code,
                "Invalid request parameters: given tag does not map to the given digest",
            )));
        }
    }
    Ok(Ok(img))
}

/// BatchGetImage's `acceptedMediaTypes` (`None`: any).
fn accepted_media_types(c: &EcrCall<'_>) -> Option<Vec<String>> {
    c.input
        .get("acceptedMediaTypes")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
}

pub async fn batch_get(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let name = c.str("repositoryName").unwrap_or_default();
    // A pull-through cache's repository: what it lacks is fetched from the upstream.
    let cached = crate::registry::cache::covers(c.app, c.key(), name).await?;
    if cached {
        return batch_get_through_cache(c, name).await;
    }
    let r = c.repo()?;
    let ids = image_ids(c, true)?.unwrap_or_default();
    let accepted = accepted_media_types(c);
    let (mut images, mut failures) = (Vec::new(), Vec::new());
    for (tag, digest) in &ids {
        match find(c, r, tag, digest).await? {
            Ok(img) => {
                if accepted
                    .as_ref()
                    .is_some_and(|a| !a.contains(&img.media_type))
                {
                    failures.push(failure(tag, digest, "ImageNotFound", &format!(
                        "Requested image not found: it is stored as {} and the request accepts only {:?} (stored manifests are never converted)",
                        img.media_type, accepted.as_deref().unwrap_or_default()
                    )));
                    continue;
                }
                let now_ms = crate::ids::now_ms();
                if img.pull_due(now_ms) {
                    c.app
                        .registry
                        .record_pull(r.registry(), &r.name, &img.digest, now_ms)
                        .await?;
                }
                images.push(image_json(r, &img, tag.as_deref()));
            }
            Err(f) => failures.push(f),
        }
    }
    Ok(json!({"images": images, "failures": failures}))
}

/// BatchGetImage on a repository a pull-through cache rule covers (which may not exist
/// yet): each image the repository lacks is fetched as a `/v2` pull would fetch it (the
/// same authorization, one fetch however many ask); upstream failures are the image's
/// (`UpstreamUnavailable`, `UpstreamAccessDenied`, `UpstreamTooManyRequests`,
/// `ImageNotFound`).
async fn batch_get_through_cache(c: &EcrCall<'_>, name: &str) -> Result<Value, ApiError> {
    let ids = image_ids(c, true)?.unwrap_or_default();
    let headers = axum::http::HeaderMap::new();
    let oci = crate::oci::OciCall {
        app: c.app,
        caller: c.caller,
        origin: c.origin,
        registry: c.registry.clone(),
        headers: &headers,
        query: Vec::new(),
    };
    let accepted = accepted_media_types(c);
    let (mut images, mut failures) = (Vec::new(), Vec::new());
    for (tag, digest) in &ids {
        // By tag where there is one (the digest, if given too, must be what it names).
        let reference = tag.as_deref().or(digest.as_deref()).unwrap_or_default();
        let repo = c.app.registry.repository(c.key(), name).await?;
        let served = crate::registry::cache::manifest(&oci, name, reference, &repo, false).await;
        let answer = match served {
            Ok(Some(resp)) => {
                let media_type = resp
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let d = resp
                    .headers()
                    .get("docker-content-digest")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let body =
                    axum::body::to_bytes(resp.into_body(), crate::registry::push::MAX_MANIFEST)
                        .await
                        .map_err(|e| {
                            ApiError::new(
                                500,
                                "ServerException",
                                format!("reading a fetched manifest: {e}"),
                            )
                        })?;
                Ok((d, media_type, body.to_vec()))
            }
            Ok(None) => match &repo {
                Some(r) => match find(c, r, tag, digest).await? {
                    Ok(img) => Ok((img.digest, img.media_type, img.manifest)),
                    Err(f) => Err(f),
                },
                None => Err(failure(
                    tag,
                    digest,
                    "ImageNotFound",
                    "Requested image not found",
                )),
            },
            Err(e) if e.code == "DENIED" => {
                return Err(ApiError::new(403, "AccessDenied", e.message))
            }
            Err(e) => {
                let code = e
                    .detail
                    .as_ref()
                    .and_then(|d| d.get("failureCode"))
                    .and_then(Value::as_str);
                match code {
                    Some(code) => Err(failure(tag, digest, code, &e.message)),
                    // Not the upstream's: the request's failure.
                    None => return Err(ApiError::new(e.status, "ServerException", e.message)),
                }
            }
        };
        let answer = answer.and_then(|(d, media_type, manifest)| {
            if digest.as_ref().is_some_and(|want| *want != d) {
                return Err(failure(tag, digest, "ImageTagDoesNotMatchDigest", &format!(
                    "The tag names {d}, not the digest given"
                )));
            }
            if accepted.as_ref().is_some_and(|a| !a.contains(&media_type)) {
                return Err(failure(tag, digest, "ImageNotFound", &format!(
                    "Requested image not found: it is {media_type} and the request accepts only {:?} (manifests are never converted)",
                    accepted.as_deref().unwrap_or_default()
                )));
            }
            Ok((d, media_type, manifest))
        });
        match answer {
            Ok((d, media_type, manifest)) => images.push(json!({
                "registryId": c.registry,
                "repositoryName": name,
                "imageId": {"imageDigest": d, "imageTag": tag},
                "imageManifest": String::from_utf8_lossy(&manifest),
                "imageManifestMediaType": media_type,
            })),
            Err(f) => failures.push(f),
        }
    }
    Ok(json!({"images": images, "failures": failures}))
}

pub async fn batch_delete(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let r = c.repo()?;
    let ids = image_ids(c, true)?.unwrap_or_default();
    let (mut deleted, mut failures) = (Vec::new(), Vec::new());
    let replicate_to = outbox::deletes(c.app, r).await?;
    for (tag, digest) in &ids {
        let img = match find(c, r, tag, digest).await? {
            Ok(img) => img,
            Err(f) => {
                failures.push(f);
                continue;
            }
        };
        match (tag, digest) {
            (Some(t), None) => {
                c.app
                    .registry
                    .delete_tag(r.registry(), &r.name, t, &replicate_to)
                    .await?;
                // The last tag gone: the image goes too (ECR).
                if img.tags.len() == 1 {
                    if let Err(e) = c
                        .app
                        .registry
                        .delete_image(r.registry(), &r.name, &img.digest, &replicate_to)
                        .await
                    {
                        if !matches!(e, berth_store::RegistryError::ImageReferencedByIndex { .. }) {
                            return Err(e.into());
                        }
                    }
                }
                deleted.push(json!({"imageTag": t, "imageDigest": img.digest}));
            }
            _ => match c
                .app
                .registry
                .delete_image(r.registry(), &r.name, &img.digest, &replicate_to)
                .await
            {
                Ok(_) => {
                    for t in &img.tags {
                        deleted.push(json!({"imageTag": t, "imageDigest": img.digest}));
                    }
                    if img.tags.is_empty() {
                        deleted.push(json!({"imageDigest": img.digest}));
                    }
                }
                Err(e @ berth_store::RegistryError::ImageReferencedByIndex { .. }) => {
                    let m = ApiError::from(e).message;
                    failures.push(failure(
                        tag,
                        digest,
                        super::error::IMAGE_REFERENCED_BY_MANIFEST_LIST,
                        &m,
                    ));
                }
                Err(e) => return Err(e.into()),
            },
        }
    }
    Ok(json!({"imageIds": deleted, "failures": failures}))
}

pub(super) fn tag_status<'c>(c: &'c EcrCall<'_>) -> Result<&'c str, ApiError> {
    let s = c
        .input
        .pointer("/filter/tagStatus")
        .and_then(Value::as_str)
        .unwrap_or("ANY");
    if !["TAGGED", "UNTAGGED", "ANY"].contains(&s) {
        return Err(invalid(format!("Invalid parameter at 'filter.tagStatus' failed to satisfy constraint: 'Member must satisfy enum value set: [TAGGED, UNTAGGED, ANY]': {s:?}")));
    }
    Ok(s)
}

/// `maxResults`/`nextToken` (an offset) over a list.
pub(super) fn page<T>(
    c: &EcrCall<'_>,
    items: Vec<T>,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let max = c
        .input
        .get("maxResults")
        .and_then(Value::as_i64)
        .unwrap_or(100);
    if !(1..=1000).contains(&max) {
        return Err(invalid("Invalid parameter at 'maxResults' failed to satisfy constraint: 'Member must have value between 1 and 1000'"));
    }
    page_of(c, items, max as usize)
}

/// `nextToken` (an offset) over a list, `max` at a time (checked by the caller).
pub(super) fn page_of<T>(
    c: &EcrCall<'_>,
    items: Vec<T>,
    max: usize,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let start: usize = match c.str("nextToken") {
        Some(t) => t.parse().map_err(|_| {
            invalid("Invalid parameter at 'nextToken': not a token this server gave")
        })?,
        None => 0,
    };
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(start).take(max).collect();
    let end = start + page.len();
    Ok((page, (end < total).then(|| end.to_string())))
}

pub async fn list_images(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let r = c.repo()?;
    let status = tag_status(c)?;
    let mut ids = Vec::new();
    for img in c.app.registry.images(r.registry(), &r.name).await? {
        if img.tags.is_empty() {
            if status != "TAGGED" {
                ids.push(json!({"imageDigest": img.digest}));
            }
        } else if status != "UNTAGGED" {
            for t in &img.tags {
                ids.push(json!({"imageDigest": img.digest, "imageTag": t}));
            }
        }
    }
    let (ids, next) = page(c, ids)?;
    Ok(json!({"imageIds": ids, "nextToken": next}))
}

pub async fn describe_images(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let r = c.repo()?;
    let status = tag_status(c)?;
    let ids = image_ids(c, false)?;
    if ids.is_some() && (c.input.get("maxResults").is_some() || c.input.get("nextToken").is_some())
    {
        return Err(invalid(
            "nextToken and maxResults cannot be given with imageIds",
        ));
    }
    let detail = |img: &Image| {
        json!({
            "registryId": r.account,
            "repositoryName": r.name,
            "imageDigest": img.digest,
            "imageTags": if img.tags.is_empty() { Value::Null } else { json!(img.tags) },
            "imageSizeInBytes": img.size,
            "imagePushedAt": super::epoch(img.pushed_at),
            "imageManifestMediaType": img.media_type,
            "artifactMediaType": img.artifact_type,
            "lastRecordedPullTime": img.last_pull.map(super::epoch),
            "imageStatus": "ACTIVE",
        })
    };
    let mut details = Vec::new();
    match ids {
        Some(ids) => {
            for (tag, _) in &ids {
                if let Some(t) = tag {
                    check_tag("imageIds.member.imageTag", t)?;
                }
            }
            for (tag, digest) in &ids {
                match find(c, r, tag, digest).await? {
                    Ok(img) => details.push(detail(&img)),
                    Err(_) => {
                        return Err(ApiError::new(400, "ImageNotFoundException", format!(
                            "The image with imageId {{imageDigest:'{}', imageTag:'{}'}} does not exist within the repository with name '{}' in the registry with id '{}'",
                            digest.as_deref().unwrap_or("null"), tag.as_deref().unwrap_or("null"), r.name, r.account
                        )))
                    }
                }
            }
            Ok(json!({"imageDetails": details}))
        }
        None => {
            let max = c
                .input
                .get("maxResults")
                .and_then(Value::as_i64)
                .unwrap_or(100);
            if !(1..=1000).contains(&max) {
                return Err(invalid("Invalid parameter at 'maxResults' failed to satisfy constraint: 'Member must have value between 1 and 1000'"));
            }
            // The token is where the last page ended: its last image's push time (ms) and
            // digest (a keyset, so a page reads only itself).
            let after = match c.str("nextToken") {
                Some(t) => Some(
                    t.split_once('.')
                        .and_then(|(at, d)| Some((at.parse::<i64>().ok()?, d)))
                        .filter(|(_, d)| valid_digest(d))
                        .ok_or_else(|| {
                            invalid(
                                "Invalid parameter at 'nextToken': not a token this server gave",
                            )
                        })?,
                ),
                None => None,
            };
            let tagged = match status {
                "TAGGED" => Some(true),
                "UNTAGGED" => Some(false),
                _ => None,
            };
            let mut images = c
                .app
                .registry
                .images_page(r.registry(), &r.name, after, tagged, max as usize + 1)
                .await?;
            let next = if images.len() > max as usize {
                images.truncate(max as usize);
                images
                    .last()
                    .map(|i| format!("{}.{}", i.pushed_at, i.digest))
            } else {
                None
            };
            details.extend(images.iter().map(detail));
            Ok(json!({"imageDetails": details, "nextToken": next}))
        }
    }
}
