//! Groups and their members.

use berth_store::{Entity, EntityKind};
use serde_json::{json, Value};

use super::{existing, group_json, page, paginate, user_json, Target};
use crate::ids;
use crate::query::{ApiError, Call};

pub async fn create_group(call: &Call<'_>) -> Result<Value, ApiError> {
    let p = call.params;
    let group = Entity {
        account: call.caller.account.to_string(),
        kind: EntityKind::Group,
        name: p.name("GroupName", 128)?.to_string(),
        path: p.path("Path")?.to_string(),
        unique_id: ids::unique_id("AGPA"),
        created: call.origin.now,
        trust_policy: None,
        description: None,
        max_session_secs: None,
        boundary: None,
    };
    call.app.store.create_entity(&group, &[]).await?;
    Ok(json!({ "Group": group_json(&group) }))
}

fn group<'t>(call: &Call<'_>, t: &'t Target) -> Result<&'t Entity, ApiError> {
    existing(
        t,
        EntityKind::Group,
        call.params.get("GroupName").unwrap_or(""),
    )
}

pub async fn get_group(call: &Call<'_>, t: &Target) -> Result<Value, ApiError> {
    let g = group(call, t)?;
    let users = call.app.store.group_members(&g.account, &g.name).await?;
    let (users, next) = paginate(call.params, users, |u| u.name.to_ascii_lowercase())?;
    let list: Vec<Value> = users.iter().map(|u| user_json(u, &[])).collect();
    Ok(page(json!({ "Group": group_json(g), "Users": list }), next))
}

pub async fn list_groups(call: &Call<'_>) -> Result<Value, ApiError> {
    let prefix = call.params.get("PathPrefix").unwrap_or("/");
    let groups = call
        .app
        .store
        .entities(&call.caller.account, EntityKind::Group, prefix)
        .await?;
    let (groups, next) = paginate(call.params, groups, |g| g.name.to_ascii_lowercase())?;
    let list: Vec<Value> = groups.iter().map(group_json).collect();
    Ok(page(json!({ "Groups": list }), next))
}

pub async fn delete_group(call: &Call<'_>, t: &Target) -> Result<Value, ApiError> {
    let g = group(call, t)?;
    call.app
        .store
        .delete_entity(&g.account, EntityKind::Group, &g.name)
        .await?;
    Ok(json!({}))
}

pub async fn add_user(call: &Call<'_>, t: &Target) -> Result<Value, ApiError> {
    let g = group(call, t)?;
    let user = call.params.name("UserName", 64)?;
    call.app
        .store
        .add_user_to_group(&g.account, &g.name, user)
        .await?;
    Ok(json!({}))
}

pub async fn remove_user(call: &Call<'_>, t: &Target) -> Result<Value, ApiError> {
    let g = group(call, t)?;
    let user = call.params.name("UserName", 64)?;
    call.app
        .store
        .remove_user_from_group(&g.account, &g.name, user)
        .await?;
    Ok(json!({}))
}

pub async fn groups_for_user(call: &Call<'_>, t: &Target) -> Result<Value, ApiError> {
    let u = existing(
        t,
        EntityKind::User,
        call.params.get("UserName").unwrap_or(""),
    )?;
    let groups = call.app.store.groups_for_user(&u.account, &u.name).await?;
    let (groups, next) = paginate(call.params, groups, |g| g.name.to_ascii_lowercase())?;
    let list: Vec<Value> = groups.iter().map(group_json).collect();
    Ok(page(json!({ "Groups": list }), next))
}
