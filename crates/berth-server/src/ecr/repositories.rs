//! Repositories, their settings and policies, repository tags, the registry policy and
//! GetAuthorizationToken.

use berth_iam::{CompiledPolicy, PolicyKind};
use berth_store::{
    Encryption, EncryptionType, MutabilityFilter, Repository, RepositorySetting, TagMutability,
    TagTarget,
};
use serde_json::{json, Value};

use super::{epoch, invalid, repository_not_found, request_tags, EcrCall};
use crate::query::ApiError;
use crate::registry::token::{self, Envelope};
use crate::registry::{authorize_ecr, EcrRequest};

/// How long a registry password lives.
const TOKEN_LIFETIME: i64 = 12 * 3600;

/// `imageTagMutabilityExclusionFilters` as ECR answers it (absent: `null`).
fn filters_json(filters: &[MutabilityFilter]) -> Value {
    if filters.is_empty() {
        return Value::Null;
    }
    filters
        .iter()
        .map(|f| json!({"filterType": MutabilityFilter::FILTER_TYPE, "filter": f.wildcard}))
        .collect()
}

fn encryption_json(e: &Encryption) -> Value {
    let mut v = json!({"encryptionType": e.kind.as_str()});
    if let Some(k) = &e.kms_key {
        v["kmsKey"] = json!(k);
    }
    v
}

pub fn repo_json(c: &EcrCall<'_>, r: &Repository) -> Value {
    json!({
        "repositoryArn": r.arn(c.region()),
        "registryId": r.account,
        "repositoryName": r.name,
        "repositoryUri": format!("{}/{}", c.app.registry_host(&r.account, c.region()), r.name),
        "createdAt": epoch(r.created),
        "imageTagMutability": r.tag_mutability.as_str(),
        "imageTagMutabilityExclusionFilters": filters_json(&r.mutability_filters),
        "imageScanningConfiguration": {"scanOnPush": r.scan_on_push},
        "encryptionConfiguration": encryption_json(&r.encryption),
    })
}

pub async fn get_authorization_token(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let now = c.origin.now;
    let mut expires = now + TOKEN_LIFETIME;
    if let Some(s) = c.caller.session_expires {
        expires = expires.min(s);
    }
    let password = token::mint(
        &c.app.token_key,
        &Envelope {
            issued: now,
            expires,
            region: c.region().to_string(),
            access_key_id: c.caller.access_key_id.clone(),
        },
    );
    let ids: Vec<String> = match c.input.get("registryIds").and_then(Value::as_array) {
        Some(a) if !a.is_empty() => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => vec![c.caller.account.to_string()],
    };
    let data: Vec<Value> = ids
        .iter()
        .map(|id| {
            json!({
                "authorizationToken": token::authorization_token(&password),
                "expiresAt": epoch(expires * 1000),
                "proxyEndpoint": format!("{}://{}", c.app.registry_scheme(), c.app.registry_host(id, c.region())),
            })
        })
        .collect();
    Ok(json!({ "authorizationData": data }))
}

fn check_policy(text: &str, kind: PolicyKind) -> Result<(), ApiError> {
    if text.chars().count() > 10_240 {
        return Err(invalid(format!(
            "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Member must have length less than or equal to 10240' ({} characters)",
            text.chars().count()
        )));
    }
    CompiledPolicy::parse("policy", kind, text)
        .map(|_| ())
        .map_err(|e| e.to_string())
        .and_then(|_| crate::iam::lint_errors(text, kind))
        .map_err(|e| invalid_policy(kind, &e))
}

/// ECR's refusal of a policy text, with what was wrong.
fn invalid_policy(kind: PolicyKind, problem: &str) -> ApiError {
    let noun = match kind {
        PolicyKind::Registry => "registry policy",
        _ => "repository policy",
    };
    invalid(format!(
        "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid {noun} provided': {problem}"
    ))
}

/// A resource policy may not name a user or role of a hosted account that does not exist.
async fn check_principals(c: &EcrCall<'_>, text: &str, kind: PolicyKind) -> Result<(), ApiError> {
    match crate::iam::principals::invalid_principal(c.app, text, kind).await? {
        Some(p) => Err(invalid_policy(kind, &p.message())),
        None => Ok(()),
    }
}

pub async fn put_registry_policy(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let text = c.required("policyText")?;
    check_policy(text, PolicyKind::Registry)?;
    check_principals(c, text, PolicyKind::Registry).await?;
    c.app
        .registry
        .set_registry_policy(c.key(), Some(text))
        .await?;
    Ok(json!({"registryId": c.registry, "policyText": text}))
}

fn no_registry_policy(c: &EcrCall<'_>) -> ApiError {
    ApiError::new(
        400,
        "RegistryPolicyNotFoundException",
        format!(
            "Registry policy does not exist in the registry with id '{}'",
            c.registry
        ),
    )
}

pub async fn get_registry_policy(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let text = c
        .app
        .registry
        .registry_policy(c.key())
        .await?
        .ok_or_else(|| no_registry_policy(c))?;
    Ok(json!({"registryId": c.registry, "policyText": text}))
}

pub async fn delete_registry_policy(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let text = c
        .app
        .registry
        .registry_policy(c.key())
        .await?
        .ok_or_else(|| no_registry_policy(c))?;
    c.app.registry.set_registry_policy(c.key(), None).await?;
    Ok(json!({"registryId": c.registry, "policyText": text}))
}

/// The tag mutability and exclusion filters a call asks for.
fn mutability(c: &EcrCall<'_>) -> Result<(TagMutability, Vec<MutabilityFilter>), ApiError> {
    let name = c.str("imageTagMutability").unwrap_or("MUTABLE");
    let m = TagMutability::parse(name).ok_or_else(|| invalid(format!(
        "Invalid parameter at 'imageTagMutability' failed to satisfy constraint: 'Member must satisfy enum value set: [MUTABLE, IMMUTABLE, IMMUTABLE_WITH_EXCLUSION, MUTABLE_WITH_EXCLUSION]': {name:?}"
    )))?;
    let filters = c
        .input
        .get("imageTagMutabilityExclusionFilters")
        .filter(|v| !v.is_null());
    match (m.with_exclusion(), filters) {
        (true, None) => Err(invalid(format!(
            "ImageTagMutabilityExclusionFilters can't be null when imageTagMutability is set as {name}"
        ))),
        (false, Some(_)) => Err(invalid(format!(
            "ImageTagMutabilityExclusionFilters can only be given with a *_WITH_EXCLUSION mutability, not {name}"
        ))),
        (true, Some(f)) => {
            let list = f.as_array().filter(|a| (1..=5).contains(&a.len())).ok_or_else(|| {
                invalid("imageTagMutabilityExclusionFilters must be a list of 1 to 5 filters")
            })?;
            let mut out = Vec::with_capacity(list.len());
            for item in list {
                let ty = item.get("filterType").and_then(Value::as_str);
                let filter = item
                    .get("filter")
                    .and_then(Value::as_str)
                    .filter(|_| ty == Some(MutabilityFilter::FILTER_TYPE))
                    .and_then(MutabilityFilter::new)
                    .ok_or_else(|| invalid(format!(
                        "Invalid image tag mutability exclusion filter {item}: filterType must be WILDCARD and filter match ^[0-9a-zA-Z._*-]{{1,128}}$"
                    )))?;
                if !out.contains(&filter) {
                    out.push(filter);
                }
            }
            Ok((m, out))
        }
        (false, None) => Ok((m, Vec::new())),
    }
}

/// The encryption configuration of CreateRepository (AES256 when none is given).
fn encryption(c: &EcrCall<'_>) -> Result<Encryption, ApiError> {
    let Some(e) = c
        .input
        .get("encryptionConfiguration")
        .filter(|e| !e.is_null())
    else {
        return Ok(Encryption::default());
    };
    let ty = e
        .get("encryptionType")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = EncryptionType::parse(ty).ok_or_else(|| invalid(format!(
        "Invalid parameter at 'encryptionType' failed to satisfy constraint: 'Member must satisfy enum value set: [AES256, KMS, KMS_DSSE]': {ty:?}"
    )))?;
    let kms_key = match e.get("kmsKey").filter(|k| !k.is_null()) {
        None => None,
        Some(_) if kind == EncryptionType::Aes256 => {
            return Err(invalid(
                "Invalid parameter at 'kmsKey': a KMS key can only be given with encryptionType KMS or KMS_DSSE, not AES256",
            ))
        }
        Some(k) => match k.as_str() {
            Some(k) if (1..=2048).contains(&k.len()) => Some(k.to_string()),
            _ => {
                return Err(invalid(
                    "Invalid parameter at 'kmsKey' failed to satisfy constraint: 'Member must be a string of 1 to 2048 characters'",
                ))
            }
        },
    };
    Ok(Encryption { kind, kms_key })
}

pub async fn create_repository(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let name = c.required("repositoryName")?;
    let tags = request_tags(c.input)?;
    let (m, filters) = mutability(c)?;
    let scan_on_push = c
        .input
        .pointer("/imageScanningConfiguration/scanOnPush")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let repo = Repository {
        tag_mutability: m,
        mutability_filters: filters,
        scan_on_push,
        encryption: encryption(c)?,
        ..Repository::new(c.key(), name, crate::ids::now_ms())
    };
    if c.app.store.account(&c.registry).await?.is_none() {
        return Err(invalid(format!(
            "The registry with id '{}' does not exist",
            c.registry
        )));
    }
    c.app.registry.create_repository(&repo, &tags).await?;
    Ok(json!({ "repository": repo_json(c, &repo) }))
}

/// Change one setting of the call's repository (only that one, in one transaction);
/// returns the repository as it was before.
async fn update(c: &EcrCall<'_>, setting: RepositorySetting) -> Result<Repository, ApiError> {
    let r = c.repo()?;
    Ok(c.app
        .registry
        .update_repository(r.registry(), &r.name, &setting)
        .await?)
}

/// DescribeRepositories: named repositories (each must exist and be allowed), or every
/// repository the caller may describe, paginated. Repositories the caller may not describe
/// are skipped without a word: when none is left, the caller is denied (or not) on the
/// registry's `repository/*`, which names none of them. `nextToken` is sealed (see
/// [`seal_cursor`]): it names nothing and cannot be made up.
pub async fn describe_repositories(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let names: Option<Vec<String>> = c
        .input
        .get("repositoryNames")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        });
    let max = c.input.get("maxResults").and_then(Value::as_i64);
    let token = c.str("nextToken");
    if names.is_some() && (max.is_some() || token.is_some()) {
        return Err(invalid(
            "nextToken and maxResults cannot be given with repositoryNames",
        ));
    }
    let mut out = Vec::new();
    let ask = |name: String| may_describe(c, name);
    match names {
        Some(names) => {
            for name in names {
                if !berth_oci::names::valid_repository_name(&name) {
                    return Err(invalid(format!("Invalid parameter at 'repositoryNames' failed to satisfy constraint: {name:?} is not a repository name")));
                }
                match ask(name.clone()).await? {
                    Some(r) => out.push(repo_json(c, &r)),
                    None => return Err(repository_not_found(&c.registry, &name)),
                }
            }
            Ok(json!({ "repositories": out }))
        }
        None => {
            let max = max.unwrap_or(100);
            if !(1..=1000).contains(&max) {
                return Err(invalid("Invalid parameter at 'maxResults' failed to satisfy constraint: 'Member must have value between 1 and 1000'"));
            }
            let after = token.map(|t| open_cursor(c, t)).transpose()?;
            let (shown, more) =
                visible_repositories(c, None, after.as_deref(), max as usize).await?;
            let next = more
                .then(|| shown.last().map(|r| seal_cursor(c, &r.name)))
                .flatten();
            let out: Vec<Value> = shown.iter().map(|r| repo_json(c, r)).collect();
            Ok(json!({ "repositories": out, "nextToken": next }))
        }
    }
}

/// Whether the caller may `ecr:DescribeRepositories` repository `name` of the call's
/// registry (and the repository, if it exists).
async fn may_describe(c: &EcrCall<'_>, name: String) -> Result<Option<Repository>, ApiError> {
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
}

/// The repositories of the call's registry the caller may `ecr:DescribeRepositories`, by
/// name, after `after`, whose names contain `contains`: at most `max`, and whether more
/// follow. Repositories the caller may not describe are skipped silently; with none to
/// show at all the caller is decided on `repository/*`, so a denial names only the
/// registry. DescribeRepositories pages through it; the console searches with it.
pub async fn visible_repositories(
    c: &EcrCall<'_>,
    contains: Option<&str>,
    after: Option<&str>,
    max: usize,
) -> Result<(Vec<Repository>, bool), ApiError> {
    let ask = |name: String| may_describe(c, name);
    // Read in batches of what a page shows (and a little more): a page near the start of
    // a large registry reads that much, not every repository.
    let batch = (max + 1).clamp(64, 1001);
    let mut out = Vec::new();
    let mut more = false;
    let mut cursor = after.map(str::to_string);
    'reading: loop {
        let page = c
            .app
            .registry
            .repositories_after(c.key(), cursor.as_deref(), contains, batch)
            .await?;
        let last_batch = page.len() < batch;
        for r in page {
            cursor = Some(r.name.clone());
            match ask(r.name.clone()).await {
                Ok(_) => {}
                Err(e) if e.code == "AccessDenied" => continue,
                Err(e) => return Err(e),
            }
            if out.len() == max {
                more = true;
                break 'reading;
            }
            out.push(r);
        }
        if last_batch {
            break;
        }
    }
    if out.is_empty() && after.is_none() {
        ask("*".to_string()).await?;
    }
    Ok((out, more))
}

/// The key DescribeRepositories cursors are sealed with (from the registry token key).
fn cursor_key(c: &EcrCall<'_>) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"berth describe-repositories cursor\0");
    h.update(&c.app.token_key);
    h.finalize().into()
}

/// A `nextToken`: the last name of a page, sealed with the registry and the caller it was
/// given to (XChaCha20-Poly1305), so it reveals nothing and no other token opens.
fn seal_cursor(c: &EcrCall<'_>, last: &str) -> String {
    let plain = json!([c.registry, c.caller.arn(), last]).to_string();
    crate::auth::message::seal(&cursor_key(c), plain.as_bytes())
}

/// The name a `nextToken` continues after (only one this server gave this caller for
/// this registry).
fn open_cursor(c: &EcrCall<'_>, token: &str) -> Result<String, ApiError> {
    let bad = || {
        invalid("Invalid parameter at 'nextToken' failed to satisfy constraint: 'it must be a nextToken a previous DescribeRepositories call on this registry returned to you'")
    };
    let plain = crate::auth::message::open(&cursor_key(c), token).ok_or_else(bad)?;
    let v: Value = serde_json::from_slice(&plain).map_err(|_| bad())?;
    match (v[0].as_str(), v[1].as_str(), v[2].as_str()) {
        (Some(registry), Some(arn), Some(last))
            if registry == c.registry && arn == c.caller.arn() =>
        {
            Ok(last.to_string())
        }
        _ => Err(bad()),
    }
}

pub async fn delete_repository(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let r = c.repo()?;
    let force = c.bool("force").unwrap_or(false);
    let deleted = c
        .app
        .registry
        .delete_repository(r.registry(), &r.name, force)
        .await?;
    Ok(json!({ "repository": repo_json(c, &deleted) }))
}

pub async fn put_tag_mutability(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    c.required("imageTagMutability")?;
    let (mutability, filters) = mutability(c)?;
    let out = json!({
        "imageTagMutability": mutability.as_str(),
        "imageTagMutabilityExclusionFilters": filters_json(&filters),
    });
    let r = update(
        c,
        RepositorySetting::TagMutability {
            mutability,
            filters,
        },
    )
    .await?;
    Ok(json!({
        "registryId": r.account, "repositoryName": r.name,
        "imageTagMutability": out["imageTagMutability"],
        "imageTagMutabilityExclusionFilters": out["imageTagMutabilityExclusionFilters"],
    }))
}

pub async fn put_scanning(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let on = c
        .input
        .pointer("/imageScanningConfiguration/scanOnPush")
        .and_then(Value::as_bool)
        .ok_or_else(|| invalid("imageScanningConfiguration.scanOnPush is required"))?;
    let r = update(c, RepositorySetting::ScanOnPush(on)).await?;
    Ok(json!({
        "registryId": r.account, "repositoryName": r.name,
        "imageScanningConfiguration": {"scanOnPush": on},
    }))
}

pub async fn set_repository_policy(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let r = c.repo()?;
    let text = c.required("policyText")?;
    check_policy(text, PolicyKind::Repository)?;
    check_principals(c, text, PolicyKind::Repository).await?;
    if !c.bool("force").unwrap_or(false) {
        // Lock-out guard: the caller must still be able to set the policy afterwards.
        let policy = c.app.caches.compiled(PolicyKind::Repository, text)?;
        let resource = r.arn(c.region());
        let ctx = crate::auth::authorizer::context(c.caller, c.origin, &[]);
        let action = berth_iam::Action::new("ecr:SetRepositoryPolicy");
        let req = berth_iam::Request {
            principal: &c.caller.principal,
            action: &action,
            resource: &resource,
            resource_account: &r.account,
            context: &ctx,
        };
        if berth_iam::resource_policy_allows(&req, &policy).is_none()
            && policy_denies(&req, &policy)
        {
            return Err(invalid(
                "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'The policy would prevent you from setting the repository policy again; use force to set it anyway'",
            ));
        }
    }
    update(c, RepositorySetting::Policy(Some(text.to_string()))).await?;
    Ok(json!({"registryId": r.account, "repositoryName": r.name, "policyText": text}))
}

/// Whether a resource policy explicitly denies a request on its own.
fn policy_denies(req: &berth_iam::Request, p: &std::sync::Arc<CompiledPolicy>) -> bool {
    let set = berth_iam::PolicySet {
        identity: &[],
        resource: std::slice::from_ref(p),
        boundary: None,
        session: None,
    };
    berth_iam::decide(req, &set) == berth_iam::Decision::ExplicitDeny
}

fn no_repository_policy(r: &Repository) -> ApiError {
    ApiError::new(
        400,
        "RepositoryPolicyNotFoundException",
        format!(
            "Repository policy does not exist for the repository with name '{}' in the registry with id '{}'",
            r.name, r.account
        ),
    )
}

pub async fn get_repository_policy(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let r = c.repo()?;
    let text = r.policy.as_deref().ok_or_else(|| no_repository_policy(r))?;
    Ok(json!({"registryId": r.account, "repositoryName": r.name, "policyText": text}))
}

pub async fn delete_repository_policy(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let r = update(c, RepositorySetting::Policy(None)).await?;
    let text = r
        .policy
        .as_deref()
        .ok_or_else(|| no_repository_policy(&r))?;
    Ok(json!({"registryId": r.account, "repositoryName": r.name, "policyText": text}))
}

pub(super) fn no_lifecycle(r: &Repository) -> ApiError {
    ApiError::new(
        400,
        "LifecyclePolicyNotFoundException",
        format!(
            "Lifecycle policy does not exist for the repository with name '{}' in the registry with id '{}'",
            r.name, r.account
        ),
    )
}

pub async fn put_lifecycle_policy(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let text = c.required("lifecyclePolicyText")?;
    super::lifecycle::check(text)?;
    let setting =
        RepositorySetting::LifecyclePolicy(Some((text.to_string(), crate::ids::now_ms())));
    let r = update(c, setting).await?;
    Ok(json!({"registryId": r.account, "repositoryName": r.name, "lifecyclePolicyText": text}))
}

pub async fn get_lifecycle_policy(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let r = c.repo()?;
    let text = r
        .lifecycle_policy
        .as_deref()
        .ok_or_else(|| no_lifecycle(r))?;
    Ok(json!({
        "registryId": r.account, "repositoryName": r.name, "lifecyclePolicyText": text,
        "lastEvaluatedAt": r.lifecycle_updated.map(epoch),
    }))
}

pub async fn delete_lifecycle_policy(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let r = update(c, RepositorySetting::LifecyclePolicy(None)).await?;
    let text = r
        .lifecycle_policy
        .as_deref()
        .ok_or_else(|| no_lifecycle(&r))?;
    Ok(json!({
        "registryId": r.account, "repositoryName": r.name, "lifecyclePolicyText": text,
        "lastEvaluatedAt": r.lifecycle_updated.map(epoch),
    }))
}

pub async fn tag_resource(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let r = c.repo()?;
    let tags = request_tags(c.input)?;
    c.app
        .store
        .tag(
            &r.account,
            TagTarget::Repository,
            &r.stored_name(),
            &tags,
            50,
        )
        .await
        .map_err(|e| match e {
            berth_store::StoreError::LimitExceeded(_) => ApiError::new(
                400,
                "TooManyTagsException",
                "A repository can have at most 50 tags",
            ),
            e => e.into(),
        })?;
    Ok(json!({}))
}

pub async fn untag_resource(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let r = c.repo()?;
    let keys: Vec<String> = c
        .input
        .get("tagKeys")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|k| k.as_str().map(str::to_string))
                .collect()
        })
        .ok_or_else(|| invalid("tagKeys is required"))?;
    c.app
        .store
        .untag(&r.account, TagTarget::Repository, &r.stored_name(), &keys)
        .await?;
    Ok(json!({}))
}

pub async fn list_tags(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let r = c.repo()?;
    let tags = c
        .app
        .store
        .tags(&r.account, TagTarget::Repository, &r.stored_name())
        .await?;
    let list: Vec<Value> = tags
        .iter()
        .map(|t| json!({"Key": t.key, "Value": t.value}))
        .collect();
    Ok(json!({ "tags": list }))
}
