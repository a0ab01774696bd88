//! The replication operations of the ECR API: the registry's replication configuration
//! (PutReplicationConfiguration, DescribeRegistry), an image's replication status
//! (DescribeImageReplicationStatus) and repository creation templates (Create, Update,
//! Delete, DescribeRepositoryCreationTemplates). The model and its checks are
//! [`crate::registry::replication`]; delivery is its `deliver` job.

use berth_iam::PolicyKind;
use berth_store::TemplateWrite;
use serde_json::{json, Value};

use super::{invalid, EcrCall};
use crate::query::ApiError;
use crate::registry::replication::templates::describe_response;
use crate::registry::replication::{
    outbox, ConfigError, CreationTemplate, ReplicationConfiguration, TemplateInput, TemplatePrefix,
};

fn refused(e: ConfigError) -> ApiError {
    ApiError::new(400, e.exception(), e.message().to_string())
}

/// Most creation templates a registry holds (ECR's quota).
const MAX_TEMPLATES: usize = 100;

pub async fn put_replication_configuration(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let config = ReplicationConfiguration::from_request(c.input, &c.registry, c.region())
        .map_err(refused)?;
    let text = config.to_json().to_string();
    c.app
        .registry
        .set_replication_configuration(c.key(), Some(&text), crate::ids::now_ms())
        .await?;
    Ok(config.put_response())
}

pub async fn describe_registry(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let config = match c.app.registry.replication_configuration(c.key()).await? {
        Some(text) => outbox::stored_configuration(&text)?,
        None => ReplicationConfiguration { rules: Vec::new() },
    };
    Ok(config.describe_registry_response(&c.registry))
}

pub async fn describe_image_replication_status(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let r = c.repo()?;
    let id = c.input.get("imageId").and_then(Value::as_object).ok_or_else(|| {
        ApiError::new(
            400,
            "ValidationException",
            "1 validation error detected: Value null at 'imageId' failed to satisfy constraint: Member must not be null",
        )
    })?;
    let (tag, digest) = (
        id.get("imageTag").and_then(Value::as_str),
        id.get("imageDigest").and_then(Value::as_str),
    );
    let not_found = || {
        ApiError::new(
            400,
            "ImageNotFoundException",
            format!(
                "The image with imageId {{imageDigest:'{}', imageTag:'{}'}} does not exist within the repository with name '{}' in the registry with id '{}'",
                digest.unwrap_or("null"),
                tag.unwrap_or("null"),
                r.name,
                r.account
            ),
        )
    };
    let reference = digest.or(tag).ok_or_else(|| {
        invalid("Invalid parameter at 'imageId' failed to satisfy constraint: 'an imageTag or an imageDigest must be given'")
    })?;
    let img = c
        .app
        .registry
        .image(r.registry(), &r.name, reference)
        .await?
        .ok_or_else(not_found)?;
    if tag.is_some_and(|t| !img.tags.iter().any(|x| x == t)) {
        return Err(not_found());
    }
    let statuses: Vec<Value> = c
        .app
        .registry
        .image_replications(r.registry(), &r.name, &img.digest)
        .await?
        .into_iter()
        .map(|x| {
            json!({
                "region": x.destination.region,
                "registryId": x.destination.account,
                "status": x.state.as_str(),
                "failureCode": match x.state {
                    berth_store::ReplicaState::Complete => None,
                    _ => x.failure_code,
                },
            })
        })
        .collect();
    Ok(json!({
        "repositoryName": r.name,
        "imageId": {"imageDigest": img.digest, "imageTag": tag},
        "replicationStatuses": statuses,
    }))
}

/// The registry's templates as stored, oldest prefix order.
async fn templates(c: &EcrCall<'_>) -> Result<Vec<CreationTemplate>, ApiError> {
    let mut out = Vec::new();
    for text in c.app.registry.creation_templates(c.key()).await? {
        out.push(CreationTemplate::from_stored(&text).map_err(|e| {
            ApiError::internal(format!("a stored creation template does not read: {e}"))
        })?);
    }
    Ok(out)
}

/// A template's policies must be what their names say, as the operations that set them
/// on a repository require.
fn check_policies(t: &CreationTemplate) -> Result<(), ApiError> {
    if let Some(p) = &t.repository_policy {
        berth_iam::CompiledPolicy::parse("policy", PolicyKind::Repository, p).map_err(|e| {
            invalid(format!(
                "Invalid parameter at 'repositoryPolicy' failed to satisfy constraint: '{e}'"
            ))
        })?;
    }
    if let Some(p) = &t.lifecycle_policy {
        crate::registry::lifecycle::LifecyclePolicy::parse(p).map_err(|e| {
            invalid(format!(
                "Invalid parameter at 'lifecyclePolicy' failed to satisfy constraint: '{e}'"
            ))
        })?;
    }
    Ok(())
}

fn template_not_found(prefix: &str, registry: &str) -> ApiError {
    ApiError::new(
        400,
        "TemplateNotFoundException",
        format!("The repository creation template with prefix '{prefix}' does not exist in the registry with id '{registry}'"),
    )
}

pub async fn create_template(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let t =
        CreationTemplate::from_create_request(c.input, crate::ids::now_ms()).map_err(refused)?;
    check_policies(&t)?;
    if templates(c).await?.len() >= MAX_TEMPLATES {
        return Err(ApiError::new(
            400,
            "LimitExceededException",
            format!("A registry can have at most {MAX_TEMPLATES} repository creation templates"),
        ));
    }
    let made = c
        .app
        .registry
        .put_creation_template(
            c.key(),
            t.prefix.as_str(),
            &t.to_json().to_string(),
            TemplateWrite::Create,
        )
        .await?;
    if !made {
        return Err(ApiError::new(
            400,
            "TemplateAlreadyExistsException",
            format!(
                "The repository creation template with prefix '{}' already exists in the registry with id '{}'",
                t.prefix.as_str(),
                c.registry
            ),
        ));
    }
    Ok(t.response(&c.registry))
}

pub async fn update_template(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let input = TemplateInput::parse_update(c.input).map_err(refused)?;
    let prefix = input.prefix.as_str().to_string();
    let mut t = templates(c)
        .await?
        .into_iter()
        .find(|t| t.prefix.as_str() == prefix)
        .ok_or_else(|| template_not_found(&prefix, &c.registry))?;
    t.apply_update(&input, crate::ids::now_ms())
        .map_err(refused)?;
    check_policies(&t)?;
    let written = c
        .app
        .registry
        .put_creation_template(
            c.key(),
            &prefix,
            &t.to_json().to_string(),
            TemplateWrite::Update,
        )
        .await?;
    if !written {
        return Err(template_not_found(&prefix, &c.registry));
    }
    Ok(t.response(&c.registry))
}

pub async fn delete_template(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let prefix = TemplatePrefix::from_input(c.input).map_err(refused)?;
    let text = c
        .app
        .registry
        .delete_creation_template(c.key(), prefix.as_str())
        .await?
        .ok_or_else(|| template_not_found(prefix.as_str(), &c.registry))?;
    let t = CreationTemplate::from_stored(&text).map_err(|e| {
        ApiError::internal(format!("a stored creation template does not read: {e}"))
    })?;
    Ok(t.response(&c.registry))
}

pub async fn describe_templates(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let wanted = TemplatePrefix::list_from_input(c.input).map_err(refused)?;
    let all = templates(c).await?;
    let chosen: Vec<&CreationTemplate> = all
        .iter()
        .filter(|t| wanted.is_empty() || wanted.contains(&t.prefix))
        .collect();
    let (page, next) = super::images::page(c, chosen)?;
    Ok(describe_response(&c.registry, page, next.as_deref()))
}

// ---------------------------------------------------------------------------------------
// Replication backfills
// ---------------------------------------------------------------------------------------

fn destination_json(d: &berth_store::Replica) -> Value {
    json!({"region": d.region, "registryId": d.account})
}

async fn backfill_named(c: &EcrCall<'_>) -> Result<(berth_store::Backfill, String), ApiError> {
    let id = c.str("replicationBackfillId").ok_or_else(|| {
        ApiError::new(
            400,
            "ValidationException",
            "1 validation error detected: Value null at 'replicationBackfillId' failed to satisfy constraint: Member must not be null",
        )
    })?;
    let found = c
        .app
        .registry
        .backfills(c.key())
        .await?
        .into_iter()
        .find(|b| b.id == id)
        .ok_or_else(|| {
            ApiError::new(
                400,
                "ReplicationBackfillNotFoundException",
                format!("The replication backfill with id '{id}' does not exist in the registry with id '{}'", c.registry),
            )
        })?;
    Ok((found, id.to_string()))
}

fn summary(b: &berth_store::Backfill, p: Option<&berth_store::BackfillProgress>) -> Value {
    json!({
        "replicationBackfillId": b.id,
        "destination": destination_json(&b.destination),
        "status": b.status,
        "failureCode": b.failure_code,
        "progress": p.map(|p| json!({
            "totalReplicationCount": b.total.unwrap_or(p.complete + p.failed + p.in_progress),
            "completedReplicationCount": p.complete,
            "failedReplicationCount": p.failed,
            "failureCodes": p.failure_codes,
        })),
        "startedAt": super::epoch(b.started_at),
        "endedAt": b.ended_at.map(super::epoch),
    })
}

pub async fn start_backfill(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let d = c.input.get("destination").and_then(Value::as_object).ok_or_else(|| {
        ApiError::new(
            400,
            "ValidationException",
            "1 validation error detected: Value null at 'destination' failed to satisfy constraint: Member must not be null",
        )
    })?;
    let (region, registry_id) = (
        d.get("region").and_then(Value::as_str).unwrap_or_default(),
        d.get("registryId")
            .and_then(Value::as_str)
            .unwrap_or_default(),
    );
    let config = match c.app.registry.replication_configuration(c.key()).await? {
        Some(text) => outbox::stored_configuration(&text)?,
        None => ReplicationConfiguration { rules: Vec::new() },
    };
    if !config
        .unique_destinations()
        .into_iter()
        .any(|x| x.region == region && x.registry_id == registry_id)
    {
        return Err(invalid(format!(
            "Invalid parameter at 'destination' failed to satisfy constraint: 'the destination (region {region}, registry {registry_id}) must be in the registry's replication configuration'"
        )));
    }
    let b = berth_store::Backfill {
        id: crate::ids::uuid(),
        account: c.registry.clone(),
        region: c.key().region.map(str::to_string),
        destination: berth_store::Replica {
            account: registry_id.to_string(),
            region: region.to_string(),
        },
        status: "PREPARING".into(),
        failure_code: None,
        total: None,
        started_at: crate::ids::now_ms(),
        ended_at: None,
    };
    match c.app.registry.start_backfill(&b).await? {
        Ok(()) => {}
        Err(berth_store::BackfillRefusal::InProgress) => {
            return Err(ApiError::new(
                400,
                "ReplicationBackfillInProgressException",
                format!(
                "A replication backfill is already in progress for the destination Region {region}"
            ),
            ))
        }
        Err(berth_store::BackfillRefusal::Limit) => {
            return Err(ApiError::new(
                400,
                "LimitExceededException",
                format!(
                    "A registry can have at most {} replication backfills in progress",
                    berth_store::MAX_ACTIVE_BACKFILLS
                ),
            ))
        }
    }
    outbox::wake();
    Ok(json!({
        "replicationBackfillId": b.id,
        "registryId": c.registry,
        "destination": destination_json(&b.destination),
        "status": b.status,
        "startedAt": super::epoch(b.started_at),
    }))
}

pub async fn stop_backfill(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let (b, id) = backfill_named(c).await?;
    if !matches!(b.status.as_str(), "PREPARING" | "IN_PROGRESS") {
        return Err(ApiError::new(
            400,
            "ReplicationBackfillInvalidStatusException",
            format!(
                "The replication backfill '{id}' is {}: you can't stop a replication backfill that has already reached a terminal status",
                b.status
            ),
        ));
    }
    let now = crate::ids::now_ms();
    c.app
        .registry
        .stop_backfill_replications(
            &id,
            "BACKFILL_STOPPED: the backfill was stopped before this image was replicated",
            now,
        )
        .await?;
    c.app
        .registry
        .update_backfill(&id, "STOPPING", None, None, None)
        .await?;
    outbox::wake();
    Ok(json!({
        "registryId": c.registry,
        "replicationBackfillId": id,
        "destination": destination_json(&b.destination),
        "status": "STOPPING",
        "startedAt": super::epoch(b.started_at),
    }))
}

/// A backfill operation's `maxResults` outside `1..=max`: a range constraint of the
/// model, so a `ValidationException` worded as AWS words model violations.
fn out_of_range(value: i64, max: i64) -> Result<(), ApiError> {
    let bound = if value < 1 {
        "greater than or equal to 1".to_string()
    } else if value > max {
        format!("less than or equal to {max}")
    } else {
        return Ok(());
    };
    Err(ApiError::new(
        400,
        "ValidationException",
        format!(
            "1 validation error detected: Value '{value}' at 'maxResults' failed to satisfy \
             constraint: Member must have value {bound}"
        ),
    ))
}

pub async fn list_backfills(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let max = c
        .input
        .get("maxResults")
        .and_then(Value::as_i64)
        .unwrap_or(25);
    out_of_range(max, 50)?;
    let all = c.app.registry.backfills(c.key()).await?;
    let (page, next) = super::images::page_of(c, all, max as usize)?;
    let mut out = Vec::new();
    for b in &page {
        let p = match b.total {
            Some(_) => Some(c.app.registry.backfill_progress(&b.id).await?),
            None => None,
        };
        out.push(summary(b, p.as_ref()));
    }
    Ok(json!({"registryId": c.registry, "backfills": out, "nextToken": next}))
}

pub async fn describe_backfill_results(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let (b, id) = backfill_named(c).await?;
    let state = match c.str("resultStatusFilter") {
        None => None,
        Some("COMPLETE") => Some(berth_store::ReplicaState::Complete),
        Some("FAILED") => Some(berth_store::ReplicaState::Failed),
        Some(other) => {
            return Err(ApiError::new(
                400,
                "ValidationException",
                format!("1 validation error detected: Value '{other}' at 'resultStatusFilter' failed to satisfy constraint: Member must satisfy enum value set: [COMPLETE, FAILED]"),
            ))
        }
    };
    let max = c
        .input
        .get("maxResults")
        .and_then(Value::as_i64)
        .unwrap_or(100);
    out_of_range(max, 1000)?;
    let offset: i64 = match c.str("nextToken") {
        Some(t) => t.parse().map_err(|_| {
            invalid("Invalid parameter at 'nextToken': not a token this server gave")
        })?,
        None => 0,
    };
    let progress = match b.total {
        Some(_) => Some(c.app.registry.backfill_progress(&id).await?),
        None => None,
    };
    // Results are given once the backfill has ended, as ECR gives them.
    let (results, next) = if b.active() {
        (Vec::new(), None)
    } else {
        let rows = c
            .app
            .registry
            .backfill_results(&id, state, offset, max + 1)
            .await?;
        let more = rows.len() as i64 > max;
        let results: Vec<Value> = rows
            .into_iter()
            .take(max as usize)
            .map(|r| {
                json!({
                    "repositoryName": r.repository,
                    "imageId": {"imageDigest": r.digest, "imageTag": r.tag},
                    "status": r.state.as_str(),
                    "failureCode": r.failure_code,
                })
            })
            .collect();
        (results, more.then(|| (offset + max).to_string()))
    };
    let mut out = summary(&b, progress.as_ref());
    out["registryId"] = json!(c.registry);
    out["results"] = json!(results);
    if let Some(n) = next {
        out["nextToken"] = json!(n);
    }
    Ok(out)
}
