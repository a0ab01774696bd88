//! Lifecycle policy checks and previews at the ECR front door: PutLifecyclePolicy's
//! validation, StartLifecyclePolicyPreview and GetLifecyclePolicyPreview. The grammar
//! and the evaluation are the registry's ([`crate::registry::lifecycle`]); here are the
//! wire shapes and ECR's error words.
//!
//! A preview is evaluated when it is started (a repository's image list is small enough
//! to do it in the request), so Start answers `COMPLETE` and Get never sees
//! `IN_PROGRESS`. It is kept in the metadata store: any node answers Get.

use berth_store::{LifecyclePreview, PreviewResult};
use serde_json::{json, Value};

use super::images::{image_ids, tag_status, ImageId};
use super::{epoch, invalid, EcrCall};
use crate::query::ApiError;
use crate::registry::lifecycle::{ImageFacts, LifecyclePolicy};

/// Read a lifecycle policy text, or refuse it in ECR's words.
pub fn check(text: &str) -> Result<LifecyclePolicy, ApiError> {
    LifecyclePolicy::parse(text).map_err(|e| {
        invalid(format!(
            "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: 'Lifecycle policy validation failure: {e}'"
        ))
    })
}

fn no_preview() -> ApiError {
    ApiError::new(
        400,
        "LifecyclePolicyPreviewNotFoundException",
        "There is no dry run for this repository",
    )
}

pub async fn start_preview(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let r = c.repo()?;
    let text = match c.str("lifecyclePolicyText") {
        Some(t) => t,
        None => r
            .lifecycle_policy
            .as_deref()
            .ok_or_else(|| super::repositories::no_lifecycle(r))?,
    };
    let policy = check(text)?;
    let now = crate::ids::now_ms();
    let images = c.app.registry.images(r.registry(), &r.name).await?;
    let facts: Vec<ImageFacts> = images.iter().map(ImageFacts::from).collect();
    let results = policy
        .evaluate(&facts, now)
        .into_iter()
        .map(|e| PreviewResult {
            digest: e.image.digest,
            tags: e.image.tags,
            pushed_at: e.image.pushed_at,
            rule_priority: e.rule,
        })
        .collect();
    let preview = LifecyclePreview {
        policy: text.to_string(),
        started: now,
        results,
    };
    c.app
        .registry
        .put_lifecycle_preview(r.registry(), &r.name, &preview)
        .await?;
    Ok(json!({
        "registryId": r.account, "repositoryName": r.name,
        "lifecyclePolicyText": text, "status": "COMPLETE",
    }))
}

/// Whether a result is one of the images `imageIds` names (by digest, by tag, or both).
fn named(r: &PreviewResult, ids: &[ImageId]) -> bool {
    ids.iter().any(|(tag, digest)| {
        digest.as_ref().is_none_or(|d| *d == r.digest)
            && tag.as_ref().is_none_or(|t| r.tags.contains(t))
            && (tag.is_some() || digest.is_some())
    })
}

pub async fn get_preview(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let r = c.repo()?;
    let ids = image_ids(c, false)?;
    let given = |k: &str| c.input.get(k).is_some_and(|v| !v.is_null());
    if ids.is_some() && (given("maxResults") || given("nextToken")) {
        return Err(invalid(
            "nextToken and maxResults cannot be given with imageIds",
        ));
    }
    let status = tag_status(c)?;
    let max = match c.input.get("maxResults").filter(|v| !v.is_null()) {
        None => 100,
        Some(v) => v.as_i64().filter(|m| (1..=100).contains(m)).ok_or_else(|| {
            invalid("Invalid parameter at 'maxResults' failed to satisfy constraint: 'Member must have value between 1 and 100'")
        })? as usize,
    };
    let preview = c
        .app
        .registry
        .lifecycle_preview(r.registry(), &r.name)
        .await?
        .ok_or_else(no_preview)?;
    let total = preview.results.len();
    let selected: Vec<&PreviewResult> = preview
        .results
        .iter()
        .filter(|p| match status {
            "TAGGED" => !p.tags.is_empty(),
            "UNTAGGED" => p.tags.is_empty(),
            _ => true,
        })
        .filter(|p| ids.as_deref().is_none_or(|ids| named(p, ids)))
        .collect();
    let start = match c.str("nextToken") {
        None => 0,
        Some(t) => open_token(t, preview.started)
            .filter(|s| *s <= selected.len())
            .ok_or_else(|| {
                invalid("Invalid parameter at 'nextToken': it is not a token the last GetLifecyclePolicyPreview of this preview gave")
            })?,
    };
    let page: Vec<Value> = selected
        .iter()
        .skip(start)
        .take(max)
        .map(|p| {
            json!({
                "imageTags": if p.tags.is_empty() { Value::Null } else { json!(p.tags) },
                "imageDigest": p.digest,
                "imagePushedAt": epoch(p.pushed_at),
                "action": {"type": "EXPIRE"},
                "appliedRulePriority": p.rule_priority,
            })
        })
        .collect();
    let end = start + page.len();
    let next = (end < selected.len()).then(|| format!("{}.{end}", preview.started));
    Ok(json!({
        "registryId": r.account, "repositoryName": r.name,
        "lifecyclePolicyText": preview.policy, "status": "COMPLETE",
        "previewResults": page,
        "nextToken": next,
        "summary": {"expiringImageTotalCount": total},
    }))
}

/// A `nextToken`: the preview's start time and an offset, so a token of an earlier
/// preview (whose results were replaced) is refused rather than continuing a list it
/// was not made for.
fn open_token(token: &str, started: i64) -> Option<usize> {
    let (at, offset) = token.split_once('.')?;
    (at.parse::<i64>().ok()? == started).then_some(())?;
    offset.parse().ok()
}
