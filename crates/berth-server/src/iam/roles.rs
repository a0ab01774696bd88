//! Roles and their trust policies.

use berth_iam::PolicyKind;
use berth_store::{Entity, EntityKind};
use serde_json::{json, Value};

use super::users::check_boundary;
use super::{
    check_policy, check_quota, existing_in, page, paginate, role_json, tags_param, Target,
};
use crate::ids;
use crate::query::{ApiError, Call};

/// A trust policy: valid for the engine, within the role trust policy quota, and naming
/// no user or role of a hosted account that does not exist.
async fn check_trust(call: &Call<'_>, doc: &str) -> Result<(), ApiError> {
    check_quota(doc, PolicyKind::Trust.max_chars(), |l| {
        format!("Cannot exceed quota for ACLSizePerRole: {l}")
    })?;
    check_policy(doc, PolicyKind::Trust)?;
    match super::principals::invalid_principal(call.app, doc, PolicyKind::Trust).await? {
        Some(p) => Err(ApiError::malformed_policy(p.message())),
        None => Ok(()),
    }
}

pub async fn create_role(call: &Call<'_>) -> Result<Value, ApiError> {
    let p = call.params;
    let name = p.name("RoleName", 64)?;
    let path = p.path("Path")?;
    let trust = p.required("AssumeRolePolicyDocument")?;
    check_trust(call, trust).await?;
    let description = p.text("Description", 0..=1000)?;
    let max = p.int("MaxSessionDuration", 3600..=43200)?;
    let tags = tags_param(p, "Tags", 50)?;
    let boundary = p.get("PermissionsBoundary");
    if let Some(b) = boundary {
        check_boundary(call, b).await?;
    }
    let role = Entity {
        account: call.caller.account.to_string(),
        kind: EntityKind::Role,
        name: name.to_string(),
        path: path.to_string(),
        unique_id: ids::unique_id("AROA"),
        created: call.origin.now,
        trust_policy: Some(trust.to_string()),
        description: description.map(str::to_string),
        max_session_secs: Some(max.unwrap_or(3600)),
        boundary: boundary.map(str::to_string),
    };
    call.app.store.create_entity(&role, &tags).await?;
    Ok(json!({ "Role": role_json(&role, &tags) }))
}

pub async fn get_role(call: &Call<'_>, t: &Target) -> Result<Value, ApiError> {
    let r = existing_in(call, t, EntityKind::Role)?;
    Ok(json!({ "Role": role_json(r, &t.tags) }))
}

pub async fn list_roles(call: &Call<'_>) -> Result<Value, ApiError> {
    let prefix = call.params.get("PathPrefix").unwrap_or("/");
    let roles = call
        .app
        .store
        .entities(&call.caller.account, EntityKind::Role, prefix)
        .await?;
    let (roles, next) = paginate(call.params, roles, |r| r.name.to_ascii_lowercase())?;
    let list: Vec<Value> = roles.iter().map(|r| role_json(r, &[])).collect();
    Ok(page(json!({ "Roles": list }), next))
}

pub async fn delete_role(call: &Call<'_>, t: &Target) -> Result<Value, ApiError> {
    let r = existing_in(call, t, EntityKind::Role)?;
    call.app
        .store
        .delete_entity(&r.account, EntityKind::Role, &r.name)
        .await?;
    Ok(json!({}))
}

pub async fn update_trust(call: &Call<'_>, t: &Target) -> Result<Value, ApiError> {
    let r = existing_in(call, t, EntityKind::Role)?;
    let doc = call.params.required("PolicyDocument")?;
    check_trust(call, doc).await?;
    call.app
        .store
        .set_trust_policy(&r.account, &r.name, doc)
        .await?;
    Ok(json!({}))
}

/// UpdateRole: description and maximum session duration.
pub async fn update_role(call: &Call<'_>, t: &Target) -> Result<Value, ApiError> {
    let r = existing_in(call, t, EntityKind::Role)?;
    let description = call.params.text("Description", 0..=1000)?;
    let max = call.params.int("MaxSessionDuration", 3600..=43200)?;
    let mut role = r.clone();
    if let Some(d) = description {
        role.description = Some(d.to_string());
    }
    if let Some(m) = max {
        role.max_session_secs = Some(m);
    }
    call.app.store.update_role(&role).await?;
    Ok(json!({}))
}
