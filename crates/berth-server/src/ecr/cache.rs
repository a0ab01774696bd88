//! The pull-through cache rule operations: CreatePullThroughCacheRule,
//! DescribePullThroughCacheRules, UpdatePullThroughCacheRule, DeletePullThroughCacheRule
//! and ValidatePullThroughCacheRule (the rules themselves: [`crate::registry::cache`]).

use berth_store::TemplateWrite;
use serde_json::{json, Value};

use super::{invalid, EcrCall};
use crate::query::ApiError;
use crate::registry::cache::{self, rule, CacheRule};

/// Most rules a registry has (ECR's quota).
const MAX_RULES: usize = 50;

fn not_found(prefix: &str, registry: &str) -> ApiError {
    ApiError::new(
        400,
        "PullThroughCacheRuleNotFoundException",
        format!(
            "The pull through cache rule with prefix '{prefix}' does not exist in the registry with id '{registry}'"
        ),
    )
}

async fn all_rules(c: &EcrCall<'_>) -> Result<Vec<CacheRule>, ApiError> {
    let mut out = Vec::new();
    for text in c.app.registry.pull_through_rules(c.key()).await? {
        match CacheRule::from_stored(&text) {
            Ok(r) => out.push(r),
            Err(e) => tracing::warn!(error = %e, "a stored pull through cache rule does not read"),
        }
    }
    Ok(out)
}

async fn named(c: &EcrCall<'_>) -> Result<CacheRule, ApiError> {
    let prefix = rule::prefix(c.input, "ecrRepositoryPrefix", true)?.expect("required");
    all_rules(c)
        .await?
        .into_iter()
        .find(|r| r.prefix == prefix)
        .ok_or_else(|| not_found(prefix.as_str(), &c.registry))
}

/// The credential a request names must be stored in this registry, for the rule's
/// upstream host.
async fn check_credential(
    c: &EcrCall<'_>,
    arn: Option<&str>,
    rule: &CacheRule,
) -> Result<(), ApiError> {
    let Some(arn) = arn else {
        return Ok(());
    };
    let Some((_, secret)) = cache::credential(c.app, c.key(), arn).await? else {
        return Err(ApiError::new(
            400,
            "SecretNotFoundException",
            format!(
                "The secret {arn} does not exist in the registry with id '{}' (store it with berth upstream-credential put)",
                c.registry
            ),
        ));
    };
    let host = rule::host_of(&rule.upstream_url).unwrap_or_default();
    if secret.upstream != host {
        return Err(ApiError::new(
            400,
            "UnableToAccessSecretException",
            format!(
                "The secret {arn} is for the upstream registry {}, not {host}: a credential is only sent to the upstream it was stored for (berth upstream-credential put --upstream)",
                secret.upstream
            ),
        ));
    }
    Ok(())
}

/// A rule must name an upstream the server may reach (`pull_through_upstreams`), and one
/// naming `http://` a host the server lists as reached over plain HTTP.
fn check_upstream(c: &EcrCall<'_>, r: &CacheRule) -> Result<(), ApiError> {
    let plain = r.upstream_url.to_ascii_lowercase().starts_with("http://");
    let host = rule::host_of(&r.upstream_url).unwrap_or_default();
    if !c.app.config.upstream_allowed(&host) {
        return Err(invalid(format!(
            "Invalid parameter at 'upstreamRegistryUrl' failed to satisfy constraint: {host} is not among the upstream registries this server may reach (pull_through_upstreams)"
        )));
    }
    let listed = c
        .app
        .config
        .pull_through_insecure
        .iter()
        .any(|h| h.eq_ignore_ascii_case(&host));
    if plain && !listed {
        return Err(invalid(format!(
            "Invalid parameter at 'upstreamRegistryUrl' failed to satisfy constraint: {host} is not among the upstreams this server reaches over plain HTTP (pull_through_insecure_upstreams); name the host without a scheme to reach it over HTTPS"
        )));
    }
    Ok(())
}

/// The members an operation answers with, of the wire shape.
fn pick(rule: &CacheRule, registry: &str, members: &[&str]) -> Value {
    let all = rule.to_wire(registry);
    let mut out = serde_json::Map::new();
    for m in members {
        if let Some(v) = all.get(*m) {
            out.insert(m.to_string(), v.clone());
        }
    }
    Value::Object(out)
}

pub async fn create_rule(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let r = CacheRule::from_create(c.input, crate::ids::now_ms())?;
    check_upstream(c, &r)?;
    check_credential(c, r.credential_arn.as_deref(), &r).await?;
    let existing = all_rules(c).await?;
    if existing.iter().any(|e| e.prefix == r.prefix) {
        return Err(already_exists(&r, &c.registry));
    }
    if existing.len() >= MAX_RULES {
        return Err(ApiError::new(
            400,
            "LimitExceededException",
            format!("A registry can have at most {MAX_RULES} pull through cache rules"),
        ));
    }
    if !write_rule(c, &r, TemplateWrite::Create).await? {
        return Err(already_exists(&r, &c.registry));
    }
    Ok(pick(
        &r,
        &c.registry,
        &[
            "ecrRepositoryPrefix",
            "upstreamRegistryUrl",
            "createdAt",
            "registryId",
            "upstreamRegistry",
            "credentialArn",
            "customRoleArn",
            "upstreamRepositoryPrefix",
        ],
    ))
}

/// Store a rule (as `write` lets it land: false when refused) and forget the rules this
/// node read.
async fn write_rule(
    c: &EcrCall<'_>,
    r: &CacheRule,
    write: TemplateWrite,
) -> Result<bool, ApiError> {
    let written = c
        .app
        .registry
        .put_pull_through_rule(c.key(), r.prefix.as_str(), &r.to_stored(), write)
        .await;
    c.app.pull_through.invalidate_rules();
    Ok(written?)
}

fn already_exists(r: &CacheRule, registry: &str) -> ApiError {
    ApiError::new(
        400,
        "PullThroughCacheRuleAlreadyExistsException",
        format!(
            "A pull through cache rule with prefix '{}' already exists in the registry with id '{registry}'",
            r.prefix.as_str()
        ),
    )
}

pub async fn describe_rules(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let mut rules = all_rules(c).await?;
    if let Some(list) = c
        .input
        .get("ecrRepositoryPrefixes")
        .filter(|v| !v.is_null())
    {
        let Some(list) = list.as_array() else {
            return Err(ApiError::new(
                400,
                "SerializationException",
                "Expected a list at 'ecrRepositoryPrefixes'",
            ));
        };
        if list.is_empty() || list.len() > 100 {
            return Err(rule::validation(format!(
                "1 validation error detected: Value at 'ecrRepositoryPrefixes' failed to satisfy constraint: Member must have length between 1 and 100 inclusive (it has {})",
                list.len()
            )));
        }
        if c.input.get("nextToken").is_some_and(|v| !v.is_null())
            || c.input.get("maxResults").is_some_and(|v| !v.is_null())
        {
            return Err(invalid(
                "Invalid parameter: nextToken and maxResults cannot be used with ecrRepositoryPrefixes",
            ));
        }
        let mut wanted = Vec::new();
        for (i, v) in list.iter().enumerate() {
            let at = format!("ecrRepositoryPrefixes.{}.member", i + 1);
            let p = rule::prefix(&json!({ at.as_str(): v }), &at, true)?.expect("required");
            if !rules.iter().any(|r| r.prefix == p) {
                return Err(not_found(p.as_str(), &c.registry));
            }
            wanted.push(p);
        }
        rules.retain(|r| wanted.contains(&r.prefix));
    }
    let max = match c.input.get("maxResults").and_then(Value::as_i64) {
        None => 100,
        Some(m) if (1..=1000).contains(&m) => m,
        Some(m) => {
            return Err(rule::validation(format!(
                "1 validation error detected: Value '{m}' at 'maxResults' failed to satisfy constraint: Member must have value between 1 and 1000 inclusive"
            )))
        }
    };
    let (page, next) = super::images::page_of(c, rules, max as usize)?;
    let out: Vec<Value> = page.iter().map(|r| r.to_wire(&c.registry)).collect();
    Ok(json!({"pullThroughCacheRules": out, "nextToken": next}))
}

pub async fn update_rule(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let mut r = named(c).await?;
    let credential = rule::credential_arn(c.input)?;
    let role = rule::role_arn(c.input)?;
    if credential.is_none() && role.is_none() {
        return Err(invalid(
            "Invalid parameter: give credentialArn or customRoleArn (or both) to update",
        ));
    }
    check_credential(c, credential.as_deref(), &r).await?;
    if credential.is_some() {
        r.credential_arn = credential;
    }
    if role.is_some() {
        r.custom_role_arn = role;
    }
    r.updated_at = crate::ids::now_ms().max(r.updated_at + 1);
    if !write_rule(c, &r, TemplateWrite::Update).await? {
        return Err(not_found(r.prefix.as_str(), &c.registry));
    }
    Ok(pick(
        &r,
        &c.registry,
        &[
            "ecrRepositoryPrefix",
            "registryId",
            "updatedAt",
            "credentialArn",
            "customRoleArn",
            "upstreamRepositoryPrefix",
        ],
    ))
}

pub async fn delete_rule(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let prefix = rule::prefix(c.input, "ecrRepositoryPrefix", true)?.expect("required");
    let gone = c
        .app
        .registry
        .delete_pull_through_rule(c.key(), prefix.as_str())
        .await?;
    c.app.pull_through.invalidate_rules();
    let r = gone
        .as_deref()
        .map(CacheRule::from_stored)
        .transpose()
        .map_err(|e| {
            ApiError::new(
                500,
                "ServerException",
                format!("the deleted rule does not read: {e}"),
            )
        })?
        .ok_or_else(|| not_found(prefix.as_str(), &c.registry))?;
    Ok(pick(
        &r,
        &c.registry,
        &[
            "ecrRepositoryPrefix",
            "upstreamRegistryUrl",
            "createdAt",
            "registryId",
            "credentialArn",
            "customRoleArn",
            "upstreamRepositoryPrefix",
        ],
    ))
}

/// Sign in to the upstream registry as the rule would: `isValid`, or `failure` says why
/// not.
pub async fn validate_rule(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let r = named(c).await?;
    let checked = match cache::upstream_for(c.app, c.key(), &r).await {
        Ok(u) => u.check("").await,
        Err(e) => Err(e),
    };
    let mut out = pick(
        &r,
        &c.registry,
        &[
            "ecrRepositoryPrefix",
            "registryId",
            "upstreamRegistryUrl",
            "credentialArn",
            "customRoleArn",
            "upstreamRepositoryPrefix",
        ],
    );
    match checked {
        Ok(()) => out["isValid"] = json!(true),
        Err(e) => {
            out["isValid"] = json!(false);
            out["failure"] = json!(e.message());
        }
    }
    Ok(out)
}
