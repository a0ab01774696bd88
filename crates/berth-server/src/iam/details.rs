//! GetAccountAuthorizationDetails: every user, group, role and customer managed policy of
//! the account with their policy documents — what `berth policy who-can` reads from a
//! running server (or from AWS), and what auditors export.

use berth_store::{EntityKind, Store, TagTarget};
use serde_json::{json, Value};

use super::{aws_managed, group_json, page, paginate, policies, role_json, url_encode, user_json};
use crate::query::{ApiError, Call};

const FILTERS: &[&str] = &[
    "User",
    "Role",
    "Group",
    "LocalManagedPolicy",
    "AWSManagedPolicy",
];

/// The list an item goes to, its place in the whole answer (which the marker names, so
/// that entities created or deleted between pages do not shift the others), and the item.
type Item = (&'static str, String, Value);

async fn inline(
    store: &dyn Store,
    account: &str,
    kind: EntityKind,
    owner: &str,
) -> Result<Value, ApiError> {
    let mut out = Vec::new();
    for name in store.inline_policy_names(account, kind, owner).await? {
        if let Some(doc) = store.inline_policy(account, kind, owner, &name).await? {
            out.push(json!({ "PolicyName": name, "PolicyDocument": url_encode(&doc) }));
        }
    }
    Ok(Value::Array(out))
}

async fn attached(
    store: &dyn Store,
    account: &str,
    kind: EntityKind,
    owner: &str,
) -> Result<Value, ApiError> {
    let arns = store.attached_policies(account, kind, owner).await?;
    Ok(Value::Array(
        arns.iter()
            .map(|arn| {
                let name = arn.rsplit('/').next().unwrap_or(arn);
                json!({ "PolicyName": name, "PolicyArn": arn })
            })
            .collect(),
    ))
}

fn merge(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}

pub async fn authorization_details(call: &Call<'_>) -> Result<Value, ApiError> {
    let filters = call.params.list("Filter");
    for f in &filters {
        if !FILTERS.contains(f) {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '[{f}]' at 'filter' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [{}]]",
                FILTERS.join(", ")
            )));
        }
    }
    let wants = |f: &str| filters.is_empty() || filters.contains(&f);
    let store = &*call.app.store;
    let account = &*call.caller.account;
    let mut items: Vec<Item> = Vec::new();
    if wants("User") {
        for u in store.entities(account, EntityKind::User, "/").await? {
            let tags = store.tags(account, TagTarget::User, &u.name).await?;
            let groups: Vec<String> = store
                .groups_for_user(account, &u.name)
                .await?
                .into_iter()
                .map(|g| g.name)
                .collect();
            let extra = json!({
                "UserPolicyList": inline(store, account, EntityKind::User, &u.name).await?,
                "GroupList": groups,
                "AttachedManagedPolicies": attached(store, account, EntityKind::User, &u.name).await?,
            });
            let key = format!("0/{}", u.name.to_ascii_lowercase());
            items.push(("UserDetailList", key, merge(user_json(&u, &tags), extra)));
        }
    }
    if wants("Group") {
        for g in store.entities(account, EntityKind::Group, "/").await? {
            let extra = json!({
                "GroupPolicyList": inline(store, account, EntityKind::Group, &g.name).await?,
                "AttachedManagedPolicies": attached(store, account, EntityKind::Group, &g.name).await?,
            });
            let key = format!("1/{}", g.name.to_ascii_lowercase());
            items.push(("GroupDetailList", key, merge(group_json(&g), extra)));
        }
    }
    if wants("Role") {
        for r in store.entities(account, EntityKind::Role, "/").await? {
            let tags = store.tags(account, TagTarget::Role, &r.name).await?;
            let extra = json!({
                "InstanceProfileList": [],
                "RolePolicyList": inline(store, account, EntityKind::Role, &r.name).await?,
                "AttachedManagedPolicies": attached(store, account, EntityKind::Role, &r.name).await?,
            });
            let key = format!("2/{}", r.name.to_ascii_lowercase());
            items.push(("RoleDetailList", key, merge(role_json(&r, &tags), extra)));
        }
    }
    // Customer managed policies, and the AWS managed ones attached in this account.
    let mut managed = Vec::new();
    if wants("LocalManagedPolicy") {
        managed.extend(store.policies(account, "/").await?);
    }
    if wants("AWSManagedPolicy") {
        for p in store.policies(aws_managed::ACCOUNT, "/").await? {
            let p = policies::usage_in(store, account, p).await?;
            if p.attachment_count + p.boundary_usage_count > 0 {
                managed.push(p);
            }
        }
    }
    for p in managed {
        let versions: Vec<Value> = store
            .policy_versions(&p.account, &p.name)
            .await?
            .iter()
            .map(|v| policies::version_json(v, true))
            .collect();
        let mut item = policies::policy_json(&p, &[]);
        item["PolicyVersionList"] = Value::Array(versions);
        items.push((
            "Policies",
            format!("3/{}", p.arn().to_ascii_lowercase()),
            item,
        ));
    }
    items.sort_by(|a, b| a.1.cmp(&b.1));
    let (items, next) = paginate(call.params, items, |(_, key, _)| key.clone())?;
    let mut out = serde_json::Map::new();
    for list in [
        "UserDetailList",
        "GroupDetailList",
        "RoleDetailList",
        "Policies",
    ] {
        out.insert(list.into(), Value::Array(Vec::new()));
    }
    for (list, _, item) in items {
        if let Some(Value::Array(a)) = out.get_mut(list) {
            a.push(item);
        }
    }
    Ok(page(Value::Object(out), next))
}
