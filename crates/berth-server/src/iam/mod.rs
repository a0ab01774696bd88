//! IAM (query protocol, `Version=2010-05-08`): users, access keys, groups, roles, inline
//! and managed policies, attachments, tags and permissions boundaries. Every call is
//! authorized as `iam:<Operation>` on its resource ARN ([`router`]) before it runs;
//! policy documents are checked by the engine before anything is stored.

pub mod aws_managed;
mod details;
mod groups;
pub mod passwords;
mod policies;
pub mod principals;
mod roles;
pub mod router;
mod simulate;
mod users;

use berth_iam::{CompiledPolicy, PolicyKind};
use berth_store::{Entity, EntityKind, Tag};
use serde_json::{json, Value};

use crate::auth::authorizer::{authorize, Authorization, ContextValue};
use crate::auth::Identity;
use crate::query::{ApiError, Call, Params};
use router::{Endpoint, ResourceRef};

/// The resource an operation acts on, found before it is authorized.
pub struct Target {
    pub arn: String,
    /// The stored entity, when the operation names an existing one.
    pub entity: Option<Entity>,
    /// Its tags (`aws:ResourceTag/*`).
    pub tags: Vec<Tag>,
}

/// Longest names AWS allows.
pub fn max_name(kind: EntityKind) -> usize {
    match kind {
        EntityKind::Group => 128,
        _ => 64,
    }
}

pub async fn handle(call: &Call<'_>, action: &str) -> Result<Value, ApiError> {
    let Some(ep) = Endpoint::from_action(action) else {
        return Err(ApiError::new(
            400,
            "InvalidAction",
            format!("Could not find operation {action} for version 2010-05-08"),
        ));
    };
    match &call.caller.identity {
        Identity::Federated => {
            return Err(ApiError::access_denied(
                "Federated users cannot call IAM APIs",
            ))
        }
        Identity::UserSession { .. } if call.caller.mfa_present() != Some(true) => {
            return Err(ApiError::access_denied(
                "Credentials from GetSessionToken cannot call IAM APIs unless MFA information is included",
            ))
        }
        _ => {}
    }
    let target = resolve(call, ep).await?;
    let context = context_for(call, ep, &target)?;
    let decided = authorize(
        call.app,
        call.caller,
        call.origin,
        &Authorization {
            action: ep.action(),
            resource: &target.arn,
            resource_account: &call.caller.account,
            resource_policies: &[],
            context: &context,
            resource_must_allow: false,
        },
    );
    if let Err(e) = decided {
        // The account's password policy may let every user change its own password (and
        // read the policy it must meet) without an identity policy saying so, as IAM's
        // AllowUsersToChangePassword does.
        let own = matches!(
            ep,
            Endpoint::ChangePassword | Endpoint::GetAccountPasswordPolicy
        ) && matches!(call.caller.identity, Identity::User { .. })
            && passwords::users_may_change_their_own(call).await?;
        if !own {
            return Err(e);
        }
    }
    let result = dispatch(call, ep, &target).await;
    if result.is_ok() && writes(ep) {
        call.app.caches.invalidate();
    }
    result
}

fn writes(ep: Endpoint) -> bool {
    let n = ep.name();
    !(n.starts_with("Get") || n.starts_with("List") || n.starts_with("Simulate"))
}

async fn dispatch(call: &Call<'_>, ep: Endpoint, t: &Target) -> Result<Value, ApiError> {
    use Endpoint::*;
    use EntityKind::*;
    match ep {
        CreateUser => users::create_user(call).await,
        GetUser => users::get_user(call, t).await,
        ListUsers => users::list_users(call).await,
        DeleteUser => users::delete_user(call, t).await,
        TagUser => users::tag(call, t, User).await,
        UntagUser => users::untag(call, t, User).await,
        ListUserTags => users::list_tags(call, t, User).await,
        PutUserPermissionsBoundary => users::put_boundary(call, t, User).await,
        DeleteUserPermissionsBoundary => users::delete_boundary(call, t, User).await,
        CreateLoginProfile => passwords::create_login_profile(call, t).await,
        GetLoginProfile => passwords::get_login_profile(call, t).await,
        UpdateLoginProfile => passwords::update_login_profile(call, t).await,
        DeleteLoginProfile => passwords::delete_login_profile(call, t).await,
        ChangePassword => passwords::change_password(call, t).await,
        UpdateAccountPasswordPolicy => passwords::update_password_policy(call).await,
        GetAccountPasswordPolicy => passwords::get_password_policy(call).await,
        DeleteAccountPasswordPolicy => passwords::delete_password_policy(call).await,
        CreateAccessKey => users::create_access_key(call, t).await,
        ListAccessKeys => users::list_access_keys(call, t).await,
        UpdateAccessKey => users::update_access_key(call, t).await,
        DeleteAccessKey => users::delete_access_key(call, t).await,

        CreateGroup => groups::create_group(call).await,
        GetGroup => groups::get_group(call, t).await,
        ListGroups => groups::list_groups(call).await,
        DeleteGroup => groups::delete_group(call, t).await,
        AddUserToGroup => groups::add_user(call, t).await,
        RemoveUserFromGroup => groups::remove_user(call, t).await,
        ListGroupsForUser => groups::groups_for_user(call, t).await,

        CreateRole => roles::create_role(call).await,
        GetRole => roles::get_role(call, t).await,
        ListRoles => roles::list_roles(call).await,
        DeleteRole => roles::delete_role(call, t).await,
        UpdateAssumeRolePolicy => roles::update_trust(call, t).await,
        UpdateRole => roles::update_role(call, t).await,
        TagRole => users::tag(call, t, Role).await,
        UntagRole => users::untag(call, t, Role).await,
        ListRoleTags => users::list_tags(call, t, Role).await,
        PutRolePermissionsBoundary => users::put_boundary(call, t, Role).await,
        DeleteRolePermissionsBoundary => users::delete_boundary(call, t, Role).await,

        PutUserPolicy => policies::put_inline(call, t, User).await,
        GetUserPolicy => policies::get_inline(call, t, User).await,
        DeleteUserPolicy => policies::delete_inline(call, t, User).await,
        ListUserPolicies => policies::list_inline(call, t, User).await,
        PutGroupPolicy => policies::put_inline(call, t, Group).await,
        GetGroupPolicy => policies::get_inline(call, t, Group).await,
        DeleteGroupPolicy => policies::delete_inline(call, t, Group).await,
        ListGroupPolicies => policies::list_inline(call, t, Group).await,
        PutRolePolicy => policies::put_inline(call, t, Role).await,
        GetRolePolicy => policies::get_inline(call, t, Role).await,
        DeleteRolePolicy => policies::delete_inline(call, t, Role).await,
        ListRolePolicies => policies::list_inline(call, t, Role).await,

        CreatePolicy => policies::create_policy(call).await,
        GetPolicy => policies::get_policy(call).await,
        DeletePolicy => policies::delete_policy(call).await,
        ListPolicies => policies::list_policies(call).await,
        CreatePolicyVersion => policies::create_version(call).await,
        GetPolicyVersion => policies::get_version(call).await,
        ListPolicyVersions => policies::list_versions(call).await,
        ListEntitiesForPolicy => policies::list_entities(call).await,
        DeletePolicyVersion => policies::delete_version(call).await,
        SetDefaultPolicyVersion => policies::set_default_version(call).await,

        AttachUserPolicy => policies::attach(call, t, User).await,
        DetachUserPolicy => policies::detach(call, t, User).await,
        ListAttachedUserPolicies => policies::list_attached(call, t, User).await,
        AttachGroupPolicy => policies::attach(call, t, Group).await,
        DetachGroupPolicy => policies::detach(call, t, Group).await,
        ListAttachedGroupPolicies => policies::list_attached(call, t, Group).await,
        AttachRolePolicy => policies::attach(call, t, Role).await,
        DetachRolePolicy => policies::detach(call, t, Role).await,
        ListAttachedRolePolicies => policies::list_attached(call, t, Role).await,

        SimulatePrincipalPolicy => simulate::simulate_principal(call, t).await,
        SimulateCustomPolicy => simulate::simulate_custom(call).await,
        GetContextKeysForPrincipalPolicy => simulate::context_keys_principal(call, t).await,
        GetContextKeysForCustomPolicy => simulate::context_keys_custom(call).await,
        GetAccountAuthorizationDetails => details::authorization_details(call).await,
    }
}

/// Find the resource of an operation (existing entities with their path and tags).
async fn resolve(call: &Call<'_>, ep: Endpoint) -> Result<Target, ApiError> {
    let account = &*call.caller.account;
    let p = call.params;
    let plain = |arn: String| Target {
        arn,
        entity: None,
        tags: Vec::new(),
    };
    match ep.resource() {
        ResourceRef::Any => Ok(plain("*".into())),
        ResourceRef::NewEntity(kind, param) => {
            let name = p.name(param, max_name(kind))?;
            let path = p.path("Path")?;
            Ok(plain(format!(
                "arn:aws:iam::{account}:{}{path}{name}",
                kind.as_str()
            )))
        }
        ResourceRef::NewPolicy => {
            let name = p.name("PolicyName", 128)?;
            let path = p.path("Path")?;
            Ok(plain(format!("arn:aws:iam::{account}:policy{path}{name}")))
        }
        ResourceRef::PolicyArn => {
            let arn = p.required("PolicyArn")?;
            policy_arn_parts(arn)?;
            Ok(plain(arn.to_string()))
        }
        ResourceRef::Entity(kind, param) => {
            let name = p.name(param, max_name(kind))?;
            entity_target(call, kind, name).await
        }
        ResourceRef::SourceArn(param) => {
            let arn = p.required(param)?;
            let parsed = arn
                .strip_prefix("arn:aws:iam::")
                .and_then(|r| r.split_once(':'))
                .and_then(|(acct, res)| {
                    let (kind, rest) = res.split_once('/')?;
                    let kind = match kind {
                        "user" => EntityKind::User,
                        "group" => EntityKind::Group,
                        "role" => EntityKind::Role,
                        _ => return None,
                    };
                    Some((acct, kind, rest.rsplit('/').next()?))
                });
            let Some((acct, kind, name)) = parsed.filter(|(_, _, n)| !n.is_empty()) else {
                return Err(ApiError::invalid_input(format!(
                    "{param} {arn} is not the ARN of a user, group or role"
                )));
            };
            if acct != account {
                return Ok(plain(arn.to_string()));
            }
            let mut t = entity_target(call, kind, name).await?;
            if t.entity.is_none() {
                t.arn = arn.to_string();
            }
            Ok(t)
        }
        ResourceRef::UserOrCaller => match p.optional_name("UserName", 64)? {
            Some(name) => entity_target(call, EntityKind::User, name).await,
            None => match &call.caller.identity {
                Identity::Root | Identity::UserSession { user: None } => {
                    Ok(plain(format!("arn:aws:iam::{account}:root")))
                }
                Identity::User { name }
                | Identity::UserSession {
                    user: Some(name), ..
                } => entity_target(call, EntityKind::User, name).await,
                _ => Err(ApiError::validation(
                    "Must specify userName when calling with non-User credentials",
                )),
            },
        },
    }
}

async fn entity_target(call: &Call<'_>, kind: EntityKind, name: &str) -> Result<Target, ApiError> {
    let account = &*call.caller.account;
    let entity = call.app.store.entity(account, kind, name).await?;
    let tags = match (&entity, kind) {
        (Some(e), EntityKind::User) => {
            call.app
                .store
                .tags(account, berth_store::TagTarget::User, &e.name)
                .await?
        }
        (Some(e), EntityKind::Role) => {
            call.app
                .store
                .tags(account, berth_store::TagTarget::Role, &e.name)
                .await?
        }
        _ => Vec::new(),
    };
    let arn = match &entity {
        Some(e) => e.arn(),
        None => format!("arn:aws:iam::{account}:{}/{name}", kind.as_str()),
    };
    Ok(Target { arn, entity, tags })
}

/// Context keys of the operation: `aws:ResourceTag/*` of the target, `aws:RequestTag/*`
/// and `aws:TagKeys` of tagging calls, `iam:PolicyARN`, `iam:PermissionsBoundary`.
fn context_for(
    call: &Call<'_>,
    ep: Endpoint,
    t: &Target,
) -> Result<Vec<(String, ContextValue)>, ApiError> {
    use Endpoint::*;
    let p = call.params;
    let mut ctx = Vec::new();
    for tag in &t.tags {
        ctx.push((
            format!("aws:ResourceTag/{}", tag.key),
            ContextValue::One(tag.value.clone()),
        ));
        ctx.push((
            format!("iam:ResourceTag/{}", tag.key),
            ContextValue::One(tag.value.clone()),
        ));
    }
    match ep {
        CreateUser | CreateRole | CreatePolicy | TagUser | TagRole => {
            let tags = tags_param(p, "Tags", 50)?;
            for tag in &tags {
                ctx.push((
                    format!("aws:RequestTag/{}", tag.key),
                    ContextValue::One(tag.value.clone()),
                ));
            }
            if !tags.is_empty() {
                ctx.push((
                    "aws:TagKeys".into(),
                    ContextValue::Many(tags.into_iter().map(|t| t.key).collect()),
                ));
            }
        }
        UntagUser | UntagRole => {
            let keys: Vec<String> = p.list("TagKeys").into_iter().map(str::to_string).collect();
            ctx.push(("aws:TagKeys".into(), ContextValue::Many(keys)));
        }
        _ => {}
    }
    match ep {
        AttachUserPolicy | DetachUserPolicy | AttachGroupPolicy | DetachGroupPolicy
        | AttachRolePolicy | DetachRolePolicy => {
            if let Some(arn) = p.get("PolicyArn") {
                ctx.push(("iam:PolicyARN".into(), ContextValue::One(arn.to_string())));
            }
        }
        PutUserPermissionsBoundary | PutRolePermissionsBoundary | CreateUser | CreateRole => {
            if let Some(arn) = p.get("PermissionsBoundary") {
                ctx.push((
                    "iam:PermissionsBoundary".into(),
                    ContextValue::One(arn.to_string()),
                ));
            }
        }
        _ => {}
    }
    Ok(ctx)
}

/// `Name.member.N.Key` / `.Value` tags: keys 1..128, values 0..256 characters.
pub fn tags_param(p: &Params, name: &str, max: usize) -> Result<Vec<Tag>, ApiError> {
    let mut out = Vec::new();
    for fields in p.structs(name) {
        let get = |f: &str| fields.iter().find(|(k, _)| *k == f).map(|(_, v)| *v);
        let Some(key) = get("Key") else {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value null at '{}.member.key' failed to satisfy constraint: Member must not be null",
                name.to_ascii_lowercase()
            )));
        };
        let value = get("Value").unwrap_or("");
        let key_ok = (1..=128).contains(&key.chars().count()) && key.chars().all(tag_char);
        let value_ok = value.chars().count() <= 256 && value.chars().all(tag_char);
        if !key_ok || !value_ok {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Tag {key:?}={value:?} failed to satisfy constraint: keys have 1 to 128 characters, values at most 256, of letters, digits, spaces and _.:/=+-@"
            )));
        }
        out.push(Tag {
            key: key.to_string(),
            value: value.to_string(),
        });
    }
    if out.len() > max {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value at '{}' failed to satisfy constraint: Member must have length less than or equal to {max}",
            name.to_ascii_lowercase()
        )));
    }
    Ok(out)
}

fn tag_char(c: char) -> bool {
    c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c)
}

/// `arn:aws:iam::ACCOUNT:policy/PATH/NAME` → (account, name).
pub fn policy_arn_parts(arn: &str) -> Result<(&str, &str), ApiError> {
    let bad = || {
        ApiError::invalid_input(format!(
            "ARN {arn} is not valid: a policy ARN is arn:aws:iam::ACCOUNT:policy/NAME"
        ))
    };
    let rest = arn.strip_prefix("arn:aws:iam::").ok_or_else(bad)?;
    let (account, resource) = rest.split_once(':').ok_or_else(bad)?;
    let path_name = resource.strip_prefix("policy/").ok_or_else(bad)?;
    let name = path_name.rsplit('/').next().unwrap_or_default();
    if name.is_empty() || account.is_empty() {
        return Err(bad());
    }
    Ok((account, name))
}

/// `arn:aws:iam::ACCOUNT:role/PATH/NAME` → (account, name).
pub fn role_arn_parts(arn: &str) -> Option<(&str, &str)> {
    let rest = arn.strip_prefix("arn:aws:iam::")?;
    let (account, resource) = rest.split_once(':')?;
    let path_name = resource.strip_prefix("role/")?;
    let name = path_name.rsplit('/').next()?;
    (account.len() == 12 && !name.is_empty()).then_some((account, name))
}

/// Check a policy document with the engine; a bad one gets `MalformedPolicyDocument`
/// with the engine's message (path, line and column).
pub fn check_policy(document: &str, kind: PolicyKind) -> Result<(), ApiError> {
    CompiledPolicy::parse("document", kind, document)
        .map(|_| ())
        .map_err(|e| ApiError::malformed_policy(e.to_string()))?;
    lint_errors(document, kind).map_err(ApiError::malformed_policy)
}

/// Lint a document on its way in: ERROR findings refuse it (their sentences joined);
/// the other findings are logged. Unknown actions are logged, not refused: IAM stores
/// them, and the documentation's own examples (seed 002) use placeholder action names.
pub fn lint_errors(document: &str, kind: PolicyKind) -> Result<(), String> {
    let mut errors = Vec::new();
    for f in berth_iam::lint::lint(document, kind) {
        if f.refuses_write() {
            errors.push(format!("{} {}: {}", f.issue_code, f.path, f.details));
        } else {
            tracing::info!(finding = f.finding_type.as_str(), code = f.issue_code, path = %f.path, "{}", f.details);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Refuse a document past an IAM quota (characters, whitespace excluded) with
/// `LimitExceeded`, as IAM does, before anything is stored.
pub fn check_quota(
    document: &str,
    limit: usize,
    message: impl FnOnce(usize) -> String,
) -> Result<(), ApiError> {
    let n = berth_iam::policy::parse::stored_chars(document);
    if n > limit {
        return Err(ApiError::new(
            409,
            "LimitExceeded",
            format!(
                "{} (the document has {n} characters, whitespace excluded)",
                message(limit)
            ),
        ));
    }
    Ok(())
}

/// Policy documents go out URL-encoded, as IAM sends them (the SDKs decode them).
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `MaxItems` and `Marker` over items sorted by `key`: the page, and the marker of the next one.
pub fn paginate<T>(
    p: &Params,
    items: Vec<T>,
    key: impl Fn(&T) -> String,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let max = p.int("MaxItems", 1..=1000)?.unwrap_or(100) as usize;
    let mut items: Vec<T> = match p.get("Marker") {
        Some(m) => items.into_iter().filter(|i| key(i).as_str() > m).collect(),
        None => items,
    };
    if items.len() > max {
        items.truncate(max);
        let next = items.last().map(&key);
        return Ok((items, next));
    }
    Ok((items, None))
}

/// Add `IsTruncated` (and `Marker`) to a list response.
pub fn page(mut v: Value, next: Option<String>) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.insert("IsTruncated".into(), json!(next.is_some()));
        if let Some(m) = next {
            o.insert("Marker".into(), json!(m));
        }
    }
    v
}

pub fn tags_json(tags: &[Tag]) -> Value {
    Value::Array(
        tags.iter()
            .map(|t| json!({"Key": t.key, "Value": t.value}))
            .collect(),
    )
}

fn boundary_json(e: &Entity) -> Value {
    match &e.boundary {
        Some(arn) => json!({
            "PermissionsBoundaryType": "PermissionsBoundaryPolicy",
            "PermissionsBoundaryArn": arn,
        }),
        None => Value::Null,
    }
}

pub fn user_json(e: &Entity, tags: &[Tag]) -> Value {
    json!({
        "Path": e.path,
        "UserName": e.name,
        "UserId": e.unique_id,
        "Arn": e.arn(),
        "CreateDate": crate::ids::iso8601(e.created),
        "PermissionsBoundary": boundary_json(e),
        "Tags": if tags.is_empty() { Value::Null } else { tags_json(tags) },
    })
}

pub fn group_json(e: &Entity) -> Value {
    json!({
        "Path": e.path,
        "GroupName": e.name,
        "GroupId": e.unique_id,
        "Arn": e.arn(),
        "CreateDate": crate::ids::iso8601(e.created),
    })
}

pub fn role_json(e: &Entity, tags: &[Tag]) -> Value {
    json!({
        "Path": e.path,
        "RoleName": e.name,
        "RoleId": e.unique_id,
        "Arn": e.arn(),
        "CreateDate": crate::ids::iso8601(e.created),
        "AssumeRolePolicyDocument": e.trust_policy.as_deref().map(url_encode),
        "Description": e.description,
        "MaxSessionDuration": e.max_session_secs.unwrap_or(3600),
        "PermissionsBoundary": boundary_json(e),
        "Tags": if tags.is_empty() { Value::Null } else { tags_json(tags) },
    })
}

/// The entity an operation needs to exist.
pub fn existing<'t>(t: &'t Target, kind: EntityKind, name: &str) -> Result<&'t Entity, ApiError> {
    t.entity.as_ref().ok_or_else(|| {
        ApiError::no_such_entity(format!(
            "The {} with name {name} cannot be found.",
            kind.as_str()
        ))
    })
}

/// The parameter naming an entity of a kind.
pub fn name_param(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::User => "UserName",
        EntityKind::Group => "GroupName",
        EntityKind::Role => "RoleName",
    }
}

/// The entity named by the call's parameters, which must exist.
pub fn existing_in<'t>(
    call: &Call<'_>,
    t: &'t Target,
    kind: EntityKind,
) -> Result<&'t Entity, ApiError> {
    existing(t, kind, call.params.get(name_param(kind)).unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::app::testing;

    /// Every IAM operation is decided before it runs: a user without policies is refused
    /// each one with its own action in the sentence.
    #[tokio::test]
    async fn every_operation_is_authorized() {
        let app = testing::app().await;
        let nobody = testing::caller(&app, "AKIANOBODYNOBODYNOBO").await;
        let origin = testing::origin();
        let params = Params::from_pairs(
            [
                ("UserName", "nobody"),
                ("GroupName", "g"),
                ("RoleName", "r"),
                ("PolicyName", "p"),
                ("PolicyArn", "arn:aws:iam::111111111111:policy/p"),
                ("AssumeRolePolicyDocument", "{}"),
                ("PolicyDocument", "{}"),
                ("AccessKeyId", "AKIANOBODYNOBODYNOBO"),
                ("Status", "Inactive"),
                ("VersionId", "v1"),
                ("PolicySourceArn", "arn:aws:iam::111111111111:user/nobody"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        );
        let call = Call {
            app: &app,
            caller: &nobody,
            origin: &origin,
            params: &params,
        };
        for ep in Endpoint::ALL {
            let e = handle(&call, ep.name()).await.unwrap_err();
            assert_eq!(e.code, "AccessDenied", "{}: {e:?}", ep.name());
            assert!(
                e.message
                    .contains(&format!("not authorized to perform: {}", ep.action())),
                "{}: {}",
                ep.name(),
                e.message
            );
        }
    }
}
