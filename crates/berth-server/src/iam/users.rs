//! Users, their access keys, and the tags and permissions boundaries of users and roles.

use berth_store::{AccessKey, Entity, EntityKind, KeyStatus, TagTarget};
use serde_json::{json, Value};

use super::{
    existing, existing_in, page, paginate, policy_arn_parts, tags_json, tags_param, user_json,
    Target,
};
use crate::ids;
use crate::query::{ApiError, Call};

/// Most access keys a user (or the root user) may hold.
const KEYS_PER_USER: usize = 2;
const TAGS_PER_ENTITY: usize = 50;

fn tag_target(kind: EntityKind) -> TagTarget {
    match kind {
        EntityKind::Role => TagTarget::Role,
        _ => TagTarget::User,
    }
}

/// A permissions boundary must be an existing managed policy of the account.
pub async fn check_boundary(call: &Call<'_>, arn: &str) -> Result<(), ApiError> {
    let (account, name) = policy_arn_parts(arn)?;
    let found = (account == &*call.caller.account || account == super::aws_managed::ACCOUNT)
        && call
            .app
            .store
            .policy(account, name)
            .await?
            .is_some_and(|p| p.arn() == arn);
    if !found {
        return Err(ApiError::no_such_entity(format!(
            "Scope ARN: {arn} does not exist or is not attachable."
        )));
    }
    Ok(())
}

pub async fn create_user(call: &Call<'_>) -> Result<Value, ApiError> {
    let p = call.params;
    let name = p.name("UserName", 64)?;
    let path = p.path("Path")?;
    let tags = tags_param(p, "Tags", TAGS_PER_ENTITY)?;
    let boundary = p.get("PermissionsBoundary");
    if let Some(b) = boundary {
        check_boundary(call, b).await?;
    }
    let user = Entity {
        account: call.caller.account.to_string(),
        kind: EntityKind::User,
        name: name.to_string(),
        path: path.to_string(),
        unique_id: ids::unique_id("AIDA"),
        created: call.origin.now,
        trust_policy: None,
        description: None,
        max_session_secs: None,
        boundary: boundary.map(str::to_string),
    };
    call.app.store.create_entity(&user, &tags).await?;
    Ok(json!({ "User": user_json(&user, &tags) }))
}

pub async fn get_user(call: &Call<'_>, t: &Target) -> Result<Value, ApiError> {
    match &t.entity {
        Some(e) => Ok(json!({ "User": user_json(e, &t.tags) })),
        None if call.params.get("UserName").is_none() => {
            // The root user asking about itself.
            let account = &*call.caller.account;
            Ok(json!({ "User": {
                "UserId": account,
                "Arn": format!("arn:aws:iam::{account}:root"),
                "CreateDate": ids::iso8601(0),
            }}))
        }
        None => Err(existing(
            t,
            EntityKind::User,
            call.params.get("UserName").unwrap_or(""),
        )
        .unwrap_err()),
    }
}

pub async fn list_users(call: &Call<'_>) -> Result<Value, ApiError> {
    let prefix = call.params.get("PathPrefix").unwrap_or("/");
    let users = call
        .app
        .store
        .entities(&call.caller.account, EntityKind::User, prefix)
        .await?;
    let (users, next) = paginate(call.params, users, |u| u.name.to_ascii_lowercase())?;
    let list: Vec<Value> = users.iter().map(|u| user_json(u, &[])).collect();
    Ok(page(json!({ "Users": list }), next))
}

pub async fn delete_user(call: &Call<'_>, t: &Target) -> Result<Value, ApiError> {
    let e = existing(
        t,
        EntityKind::User,
        call.params.get("UserName").unwrap_or(""),
    )?;
    call.app
        .store
        .delete_entity(&e.account, EntityKind::User, &e.name)
        .await?;
    Ok(json!({}))
}

pub async fn tag(call: &Call<'_>, t: &Target, kind: EntityKind) -> Result<Value, ApiError> {
    let e = existing_in(call, t, kind)?;
    let tags = tags_param(call.params, "Tags", TAGS_PER_ENTITY)?;
    call.app
        .store
        .tag(
            &e.account,
            tag_target(kind),
            &e.name,
            &tags,
            TAGS_PER_ENTITY,
        )
        .await?;
    Ok(json!({}))
}

pub async fn untag(call: &Call<'_>, t: &Target, kind: EntityKind) -> Result<Value, ApiError> {
    let e = existing_in(call, t, kind)?;
    let keys: Vec<String> = call
        .params
        .list("TagKeys")
        .into_iter()
        .map(str::to_string)
        .collect();
    call.app
        .store
        .untag(&e.account, tag_target(kind), &e.name, &keys)
        .await?;
    Ok(json!({}))
}

pub async fn list_tags(call: &Call<'_>, t: &Target, kind: EntityKind) -> Result<Value, ApiError> {
    existing_in(call, t, kind)?;
    let (tags, next) = paginate(call.params, t.tags.clone(), |t| t.key.clone())?;
    Ok(page(json!({ "Tags": tags_json(&tags) }), next))
}

pub async fn put_boundary(
    call: &Call<'_>,
    t: &Target,
    kind: EntityKind,
) -> Result<Value, ApiError> {
    let e = existing_in(call, t, kind)?;
    let arn = call.params.required("PermissionsBoundary")?;
    check_boundary(call, arn).await?;
    call.app
        .store
        .set_boundary(&e.account, kind, &e.name, Some(arn))
        .await?;
    Ok(json!({}))
}

pub async fn delete_boundary(
    call: &Call<'_>,
    t: &Target,
    kind: EntityKind,
) -> Result<Value, ApiError> {
    let e = existing_in(call, t, kind)?;
    if e.boundary.is_none() {
        return Err(ApiError::no_such_entity(format!(
            "The {} with name {} does not have a permissions boundary.",
            kind.as_str(),
            e.name
        )));
    }
    call.app
        .store
        .set_boundary(&e.account, kind, &e.name, None)
        .await?;
    Ok(json!({}))
}

/// The owner of the keys an access-key call is about: a user, or the root user (`None`).
fn key_owner<'t>(call: &Call<'_>, t: &'t Target) -> Result<Option<&'t Entity>, ApiError> {
    match (&t.entity, call.params.get("UserName")) {
        (Some(e), _) => Ok(Some(e)),
        (None, Some(name)) => Err(existing(t, EntityKind::User, name).unwrap_err()),
        (None, None) => Ok(None),
    }
}

fn key_json(k: &AccessKey, user_name: Option<&str>, with_secret: bool) -> Value {
    json!({
        "UserName": user_name,
        "AccessKeyId": k.id,
        "Status": k.status.as_str(),
        "SecretAccessKey": if with_secret { Some(&k.secret) } else { None },
        "CreateDate": ids::iso8601(k.created),
    })
}

pub async fn create_access_key(call: &Call<'_>, t: &Target) -> Result<Value, ApiError> {
    let owner = key_owner(call, t)?;
    let key = AccessKey {
        id: ids::access_key_id(),
        secret: ids::secret_access_key(),
        account: call.caller.account.to_string(),
        user: owner.map(|e| e.name.clone()),
        status: KeyStatus::Active,
        created: call.origin.now,
    };
    call.app
        .store
        .create_access_key(&key, KEYS_PER_USER)
        .await?;
    Ok(json!({ "AccessKey": key_json(&key, owner.map(|e| e.name.as_str()), true) }))
}

pub async fn list_access_keys(call: &Call<'_>, t: &Target) -> Result<Value, ApiError> {
    let owner = key_owner(call, t)?;
    let keys = call
        .app
        .store
        .access_keys(&call.caller.account, owner.map(|e| e.name.as_str()))
        .await?;
    let (keys, next) = paginate(call.params, keys, |k| k.id.clone())?;
    let list: Vec<Value> = keys
        .iter()
        .map(|k| key_json(k, owner.map(|e| e.name.as_str()), false))
        .collect();
    Ok(page(json!({ "AccessKeyMetadata": list }), next))
}

fn key_id_param<'p>(call: &'p Call<'_>) -> Result<&'p str, ApiError> {
    let id = call.params.required("AccessKeyId")?;
    call.params.text("AccessKeyId", 16..=128)?;
    Ok(id)
}

pub async fn update_access_key(call: &Call<'_>, t: &Target) -> Result<Value, ApiError> {
    let owner = key_owner(call, t)?;
    let id = key_id_param(call)?;
    let status_text = call.params.required("Status")?;
    let status = KeyStatus::parse(status_text).ok_or_else(|| {
        ApiError::validation(format!(
            "1 validation error detected: Value '{status_text}' at 'status' failed to satisfy constraint: Member must satisfy enum value set: [Active, Inactive]"
        ))
    })?;
    call.app
        .store
        .set_access_key_status(
            &call.caller.account,
            owner.map(|e| e.name.as_str()),
            id,
            status,
        )
        .await?;
    Ok(json!({}))
}

pub async fn delete_access_key(call: &Call<'_>, t: &Target) -> Result<Value, ApiError> {
    let owner = key_owner(call, t)?;
    let id = key_id_param(call)?;
    call.app
        .store
        .delete_access_key(&call.caller.account, owner.map(|e| e.name.as_str()), id)
        .await?;
    Ok(json!({}))
}
