//! Inline policies of users, groups and roles; customer managed policies with their
//! versions; attaching managed policies.

use berth_iam::PolicyKind;
use berth_store::{EntityKind, ManagedPolicy, PolicyVersion};
use serde_json::{json, Value};

use super::aws_managed;
use super::{
    check_policy, check_quota, existing_in, page, paginate, policy_arn_parts, tags_json,
    tags_param, url_encode, Target,
};
use crate::ids;
use crate::query::{ApiError, Call};

/// Versions a managed policy may have.
const VERSIONS_PER_POLICY: usize = 5;

fn policy_name<'p>(call: &'p Call<'_>) -> Result<&'p str, ApiError> {
    call.params.name("PolicyName", 128)
}

/// Quotas on inline policies: all of an entity's inline policies together.
fn inline_quota(kind: EntityKind) -> usize {
    match kind {
        EntityKind::User => 2_048,
        EntityKind::Group => 5_120,
        EntityKind::Role => 10_240,
    }
}

fn document<'p>(call: &'p Call<'_>) -> Result<&'p str, ApiError> {
    let doc = call.params.required("PolicyDocument")?;
    check_policy(doc, PolicyKind::Identity)?;
    Ok(doc)
}

/// A managed policy version's document: valid and within the managed policy quota.
fn managed_document<'p>(call: &'p Call<'_>) -> Result<&'p str, ApiError> {
    let doc = call.params.required("PolicyDocument")?;
    check_quota(doc, PolicyKind::Identity.max_chars(), |l| {
        format!("Cannot exceed quota for PolicySize: {l}")
    })?;
    check_policy(doc, PolicyKind::Identity)?;
    Ok(doc)
}

pub async fn put_inline(call: &Call<'_>, t: &Target, kind: EntityKind) -> Result<Value, ApiError> {
    let e = existing_in(call, t, kind)?;
    let name = policy_name(call)?;
    let doc = call.params.required("PolicyDocument")?;
    // The entity's other inline policies count against the same quota.
    let mut others = String::new();
    for other in call
        .app
        .store
        .inline_policy_names(&e.account, kind, &e.name)
        .await?
    {
        if !other.eq_ignore_ascii_case(name) {
            if let Some(d) = call
                .app
                .store
                .inline_policy(&e.account, kind, &e.name, &other)
                .await?
            {
                others.push_str(&d);
            }
        }
    }
    check_quota(&(others + doc), inline_quota(kind), |l| {
        format!(
            "Maximum policy size of {l} bytes exceeded for {} {}",
            kind.as_str(),
            e.name
        )
    })?;
    let doc = document(call)?;
    call.app
        .store
        .put_inline_policy(&e.account, kind, &e.name, name, doc)
        .await?;
    Ok(json!({}))
}

pub async fn get_inline(call: &Call<'_>, t: &Target, kind: EntityKind) -> Result<Value, ApiError> {
    let e = existing_in(call, t, kind)?;
    let name = policy_name(call)?;
    let Some(doc) = call
        .app
        .store
        .inline_policy(&e.account, kind, &e.name, name)
        .await?
    else {
        return Err(ApiError::no_such_entity(format!(
            "The {} policy with name {name} cannot be found.",
            kind.as_str()
        )));
    };
    let owner_key = super::name_param(kind);
    Ok(json!({
        owner_key: e.name,
        "PolicyName": name,
        "PolicyDocument": url_encode(&doc),
    }))
}

pub async fn delete_inline(
    call: &Call<'_>,
    t: &Target,
    kind: EntityKind,
) -> Result<Value, ApiError> {
    let e = existing_in(call, t, kind)?;
    let name = policy_name(call)?;
    call.app
        .store
        .delete_inline_policy(&e.account, kind, &e.name, name)
        .await?;
    Ok(json!({}))
}

pub async fn list_inline(call: &Call<'_>, t: &Target, kind: EntityKind) -> Result<Value, ApiError> {
    let e = existing_in(call, t, kind)?;
    let names = call
        .app
        .store
        .inline_policy_names(&e.account, kind, &e.name)
        .await?;
    let (names, next) = paginate(call.params, names, |n| n.to_ascii_lowercase())?;
    Ok(page(json!({ "PolicyNames": names }), next))
}

pub(super) fn policy_json(p: &ManagedPolicy, tags: &[berth_store::Tag]) -> Value {
    json!({
        "PolicyName": p.name,
        "PolicyId": p.policy_id,
        "Arn": p.arn(),
        "Path": p.path,
        "DefaultVersionId": p.default_version,
        "AttachmentCount": p.attachment_count,
        "PermissionsBoundaryUsageCount": p.boundary_usage_count,
        "IsAttachable": true,
        "Description": p.description,
        "CreateDate": ids::iso8601(p.created),
        "UpdateDate": ids::iso8601(p.updated),
        "Tags": if tags.is_empty() { Value::Null } else { tags_json(tags) },
    })
}

pub(super) fn version_json(v: &PolicyVersion, with_document: bool) -> Value {
    json!({
        "Document": if with_document { Some(url_encode(&v.document)) } else { None },
        "VersionId": v.version_id,
        "IsDefaultVersion": v.is_default,
        "CreateDate": ids::iso8601(v.created),
    })
}

pub async fn create_policy(call: &Call<'_>) -> Result<Value, ApiError> {
    let p = call.params;
    let name = policy_name(call)?;
    let path = p.path("Path")?;
    let doc = managed_document(call)?;
    let description = p.text("Description", 0..=1000)?;
    let tags = tags_param(p, "Tags", 50)?;
    let now = call.origin.now;
    let policy = ManagedPolicy {
        account: call.caller.account.to_string(),
        name: name.to_string(),
        path: path.to_string(),
        policy_id: ids::unique_id("ANPA"),
        default_version: "v1".into(),
        description: description.map(str::to_string),
        created: now,
        updated: now,
        attachment_count: 0,
        boundary_usage_count: 0,
    };
    call.app.store.create_policy(&policy, doc, &tags).await?;
    Ok(json!({ "Policy": policy_json(&policy, &tags) }))
}

/// The managed policy `PolicyArn` names, which must exist in the caller's account.
/// The managed policy `PolicyArn` names: the caller account's own, or an AWS managed one
/// (with the attachment counts of the caller's account).
async fn named_policy(call: &Call<'_>) -> Result<ManagedPolicy, ApiError> {
    let arn = call.params.required("PolicyArn")?;
    let (account, name) = policy_arn_parts(arn)?;
    let found = if account == &*call.caller.account || account == aws_managed::ACCOUNT {
        call.app
            .store
            .policy(account, name)
            .await?
            .filter(|p| p.arn() == arn)
    } else {
        None
    };
    let p = found.ok_or_else(|| {
        ApiError::no_such_entity(format!("Policy {arn} does not exist or is not attachable."))
    })?;
    with_usage(call, p).await
}

/// An AWS managed policy counts the attachments of the caller's account only.
async fn with_usage(call: &Call<'_>, p: ManagedPolicy) -> Result<ManagedPolicy, ApiError> {
    usage_in(&*call.app.store, &call.caller.account, p).await
}

/// `p` with the attachment and boundary counts of `account` when it is AWS managed
/// (shared by every account), as it is otherwise.
pub(super) async fn usage_in(
    store: &dyn berth_store::Store,
    account: &str,
    mut p: ManagedPolicy,
) -> Result<ManagedPolicy, ApiError> {
    if p.account == aws_managed::ACCOUNT {
        let (attached, boundaries) = store.policy_usage_in(account, &p.arn()).await?;
        p.attachment_count = attached;
        p.boundary_usage_count = boundaries;
    }
    Ok(p)
}

/// A managed policy the caller may change: its account's own, never an AWS managed one.
async fn changeable_policy(call: &Call<'_>) -> Result<ManagedPolicy, ApiError> {
    let p = named_policy(call).await?;
    if p.account == aws_managed::ACCOUNT {
        return Err(ApiError::invalid_input(format!(
            "{} is an AWS managed policy: it cannot be changed or deleted",
            p.arn()
        )));
    }
    Ok(p)
}

pub async fn get_policy(call: &Call<'_>) -> Result<Value, ApiError> {
    let p = named_policy(call).await?;
    let tags = call
        .app
        .store
        .tags(&p.account, berth_store::TagTarget::Policy, &p.name)
        .await?;
    Ok(json!({ "Policy": policy_json(&p, &tags) }))
}

pub async fn delete_policy(call: &Call<'_>) -> Result<Value, ApiError> {
    let p = changeable_policy(call).await?;
    call.app.store.delete_policy(&p.account, &p.name).await?;
    Ok(json!({}))
}

pub async fn list_policies(call: &Call<'_>) -> Result<Value, ApiError> {
    let params = call.params;
    let scope = params.get("Scope").unwrap_or("All");
    if !["All", "AWS", "Local"].contains(&scope) {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value '{scope}' at 'scope' failed to satisfy constraint: Member must satisfy enum value set: [All, AWS, Local]"
        )));
    }
    let only_attached = params.bool("OnlyAttached")?.unwrap_or(false);
    let prefix = params.get("PathPrefix").unwrap_or("/");
    let mut policies = Vec::new();
    if scope != "Local" {
        for p in call
            .app
            .store
            .policies(aws_managed::ACCOUNT, prefix)
            .await?
        {
            policies.push(with_usage(call, p).await?);
        }
    }
    if scope != "AWS" {
        policies.extend(
            call.app
                .store
                .policies(&call.caller.account, prefix)
                .await?,
        );
    }
    // A customer policy may share an AWS managed policy's name: page by name and ARN.
    let key = |p: &ManagedPolicy| format!("{} {}", p.name.to_ascii_lowercase(), p.arn());
    policies.sort_by_key(key);
    if only_attached {
        policies.retain(|p| p.attachment_count > 0);
    }
    let (policies, next) = paginate(params, policies, key)?;
    let list: Vec<Value> = policies.iter().map(|p| policy_json(p, &[])).collect();
    Ok(page(json!({ "Policies": list }), next))
}

/// ListEntitiesForPolicy: the users, groups and roles of the caller's account the policy
/// is attached to, or (PolicyUsageFilter PermissionsBoundary) that it bounds.
pub async fn list_entities(call: &Call<'_>) -> Result<Value, ApiError> {
    let p = named_policy(call).await?;
    let params = call.params;
    let filter = params.get("EntityFilter");
    const FILTERS: [&str; 5] = [
        "User",
        "Role",
        "Group",
        "LocalManagedPolicy",
        "AWSManagedPolicy",
    ];
    if let Some(f) = filter.filter(|f| !FILTERS.contains(f)) {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value '{f}' at 'entityFilter' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
            FILTERS.join(", ")
        )));
    }
    let usage = params.get("PolicyUsageFilter");
    if let Some(u) = usage.filter(|u| !["PermissionsPolicy", "PermissionsBoundary"].contains(u)) {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value '{u}' at 'policyUsageFilter' failed to satisfy constraint: Member must satisfy enum value set: [PermissionsPolicy, PermissionsBoundary]"
        )));
    }
    let prefix = params.get("PathPrefix").unwrap_or("/");
    let (attached, bounded) = call
        .app
        .store
        .policy_entities(&call.caller.account, &p.arn())
        .await?;
    let mut entities: Vec<(&str, berth_store::Entity)> = Vec::new();
    if usage != Some("PermissionsBoundary") {
        entities.extend(attached.into_iter().map(|e| ("policy", e)));
    }
    if usage != Some("PermissionsPolicy") {
        entities.extend(bounded.into_iter().map(|e| ("boundary", e)));
    }
    entities
        .retain(|(_, e)| e.path.starts_with(prefix) && filter.is_none_or(|f| f == e.kind.title()));
    entities.sort_by_key(|(how, e)| {
        format!("{} {} {how}", e.kind.as_str(), e.name.to_ascii_lowercase())
    });
    let (entities, next) = paginate(params, entities, |(how, e)| {
        format!("{} {} {how}", e.kind.as_str(), e.name.to_ascii_lowercase())
    })?;
    let mut out = json!({ "PolicyUsers": [], "PolicyGroups": [], "PolicyRoles": [] });
    for (_, e) in entities {
        let (list, name_key, id_key) = match e.kind {
            EntityKind::User => ("PolicyUsers", "UserName", "UserId"),
            EntityKind::Group => ("PolicyGroups", "GroupName", "GroupId"),
            EntityKind::Role => ("PolicyRoles", "RoleName", "RoleId"),
        };
        if let Some(Value::Array(a)) = out.get_mut(list) {
            a.push(json!({ name_key: e.name, id_key: e.unique_id }));
        }
    }
    Ok(page(out, next))
}

pub async fn create_version(call: &Call<'_>) -> Result<Value, ApiError> {
    let p = changeable_policy(call).await?;
    let doc = managed_document(call)?;
    let set_default = call.params.bool("SetAsDefault")?.unwrap_or(false);
    let v = call
        .app
        .store
        .create_policy_version(
            &p.account,
            &p.name,
            doc,
            set_default,
            call.origin.now,
            VERSIONS_PER_POLICY,
        )
        .await?;
    Ok(json!({ "PolicyVersion": version_json(&v, false) }))
}

fn version_param<'p>(call: &'p Call<'_>) -> Result<&'p str, ApiError> {
    let v = call.params.required("VersionId")?;
    let ok = v.len() > 1
        && v.starts_with('v')
        && v[1..].bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if !ok {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value '{v}' at 'versionId' failed to satisfy constraint: Member must satisfy regular expression pattern: v[1-9][0-9]*(\\.[A-Za-z0-9-]*)?"
        )));
    }
    Ok(v)
}

pub async fn get_version(call: &Call<'_>) -> Result<Value, ApiError> {
    let p = named_policy(call).await?;
    let vid = version_param(call)?;
    let Some(v) = call
        .app
        .store
        .policy_version(&p.account, &p.name, vid)
        .await?
    else {
        return Err(ApiError::no_such_entity(format!(
            "Policy {} version {vid} does not exist or is not attachable.",
            p.arn()
        )));
    };
    Ok(json!({ "PolicyVersion": version_json(&v, true) }))
}

pub async fn list_versions(call: &Call<'_>) -> Result<Value, ApiError> {
    let p = named_policy(call).await?;
    let versions = call.app.store.policy_versions(&p.account, &p.name).await?;
    let (versions, next) = paginate(call.params, versions, |v| {
        format!("{:>12}", &v.version_id[1..])
    })?;
    let list: Vec<Value> = versions.iter().map(|v| version_json(v, false)).collect();
    Ok(page(json!({ "Versions": list }), next))
}

pub async fn delete_version(call: &Call<'_>) -> Result<Value, ApiError> {
    let p = changeable_policy(call).await?;
    let vid = version_param(call)?;
    call.app
        .store
        .delete_policy_version(&p.account, &p.name, vid)
        .await?;
    Ok(json!({}))
}

pub async fn set_default_version(call: &Call<'_>) -> Result<Value, ApiError> {
    let p = changeable_policy(call).await?;
    let vid = version_param(call)?;
    call.app
        .store
        .set_default_policy_version(&p.account, &p.name, vid, call.origin.now)
        .await?;
    Ok(json!({}))
}

pub async fn attach(call: &Call<'_>, t: &Target, kind: EntityKind) -> Result<Value, ApiError> {
    let e = existing_in(call, t, kind)?;
    let p = named_policy(call).await?;
    call.app
        .store
        .attach_policy(&e.account, kind, &e.name, &p.arn())
        .await?;
    Ok(json!({}))
}

pub async fn detach(call: &Call<'_>, t: &Target, kind: EntityKind) -> Result<Value, ApiError> {
    let e = existing_in(call, t, kind)?;
    let arn = call.params.required("PolicyArn")?;
    policy_arn_parts(arn)?;
    call.app
        .store
        .detach_policy(&e.account, kind, &e.name, arn)
        .await?;
    Ok(json!({}))
}

pub async fn list_attached(
    call: &Call<'_>,
    t: &Target,
    kind: EntityKind,
) -> Result<Value, ApiError> {
    let e = existing_in(call, t, kind)?;
    let arns = call
        .app
        .store
        .attached_policies(&e.account, kind, &e.name)
        .await?;
    let prefix = call.params.get("PathPrefix").unwrap_or("/");
    let arns: Vec<String> = arns
        .into_iter()
        .filter(|a| {
            a.split_once(":policy")
                .is_some_and(|(_, rest)| rest.starts_with(prefix))
        })
        .collect();
    let (arns, next) = paginate(call.params, arns, |a| a.clone())?;
    let list: Vec<Value> = arns
        .iter()
        .map(|a| json!({"PolicyName": a.rsplit('/').next().unwrap_or_default(), "PolicyArn": a}))
        .collect();
    Ok(page(json!({ "AttachedPolicies": list }), next))
}
