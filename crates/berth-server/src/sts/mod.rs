//! STS (query protocol, `Version=2011-06-15`): GetCallerIdentity, AssumeRole,
//! GetSessionToken, GetFederationToken, GetAccessKeyInfo. Issues temporary credentials
//! (`ASIA…` + session token) stored as sessions with their claims.

use std::sync::Arc;

use berth_iam::{CompiledPolicy, PolicyKind};
use berth_store::{EntityKind, Session, Tag};
use serde_json::{json, Value};

use crate::auth::authorizer::{authorize, Authorization, ContextValue};
use crate::auth::caller::{Claims, Identity, RoleClaim};
use crate::ids;
use crate::query::{ApiError, Call};

pub mod router;
pub use router::{Endpoint, Needs};

/// Plain-text limit of session policies (inline and managed together), and of the
/// packed form that also holds the tags.
const SESSION_POLICY_MAX: usize = 2048;

pub async fn handle(call: &Call<'_>, action: &str) -> Result<Value, ApiError> {
    let Some(endpoint) = Endpoint::from_action(action) else {
        return Err(unsupported(action));
    };
    let c = call.caller;
    // What each kind of temporary credentials may call.
    match (&c.identity, endpoint) {
        (_, Endpoint::GetCallerIdentity) => {}
        (Identity::Federated, _) => {
            return Err(ApiError::access_denied(format!(
                "Cannot call {action} with federated user credentials"
            )))
        }
        (
            Identity::RoleSession | Identity::UserSession { .. },
            Endpoint::GetSessionToken | Endpoint::GetFederationToken,
        ) => {
            return Err(ApiError::access_denied(format!(
                "Cannot call {action} with session credentials"
            )))
        }
        _ => {}
    }
    match endpoint {
        Endpoint::GetCallerIdentity => Ok(json!({
            "UserId": c.user_id,
            "Account": &*c.account,
            "Arn": c.arn(),
        })),
        Endpoint::GetAccessKeyInfo => get_access_key_info(call).await,
        Endpoint::AssumeRole => assume_role(call).await,
        Endpoint::GetSessionToken => get_session_token(call).await,
        Endpoint::GetFederationToken => get_federation_token(call).await,
        Endpoint::DecodeAuthorizationMessage => decode_authorization_message(call).await,
        Endpoint::AssumeRoleWithSAML
        | Endpoint::AssumeRoleWithWebIdentity
        | Endpoint::AssumeRoot => Err(unsupported(action)),
    }
}

fn unsupported(action: &str) -> ApiError {
    ApiError::new(
        400,
        "InvalidAction",
        format!("Could not find operation {action} for version 2011-06-15 in this server"),
    )
}

async fn get_access_key_info(call: &Call<'_>) -> Result<Value, ApiError> {
    let id = call.params.required("AccessKeyId")?;
    let account = match call.app.caches.credential(&*call.app.store, id).await? {
        Some(cred) => match &*cred {
            crate::auth::cache::Credential::Key(k) => k.account.clone(),
            crate::auth::cache::Credential::Session { session, .. } => session.account.clone(),
        },
        None => {
            return Err(ApiError::validation(format!(
                "The access key {id} is not known to this server"
            )))
        }
    };
    Ok(json!({ "Account": account }))
}

/// `Tags.member.N.Key/Value`: at most 50, keys unique regardless of case.
pub fn session_tags(call: &Call<'_>) -> Result<Vec<Tag>, ApiError> {
    let tags = crate::iam::tags_param(call.params, "Tags", 50)?;
    for (i, t) in tags.iter().enumerate() {
        if tags[..i].iter().any(|o| o.key.eq_ignore_ascii_case(&t.key)) {
            return Err(ApiError::invalid_input(
                "Duplicate tag keys found. Please note that Tag keys are case insensitive.",
            ));
        }
    }
    Ok(tags)
}

/// The session policies of a request: `Policy` (checked by the engine) and the documents
/// of `PolicyArns` (customer managed policies of `account`, or AWS managed ones).
async fn session_policies(call: &Call<'_>, account: &str) -> Result<Vec<String>, ApiError> {
    let mut docs = Vec::new();
    let mut plain = 0;
    if let Some(p) = call.params.get("Policy") {
        if p.is_empty() {
            return Err(ApiError::validation(
                "1 validation error detected: Value '' at 'policy' failed to satisfy constraint: Member must have length greater than or equal to 1",
            ));
        }
        CompiledPolicy::parse("Policy", PolicyKind::Session, p)
            .map_err(|e| ApiError::malformed_policy(e.to_string()))?;
        plain += p.len();
        docs.push(p.to_string());
    }
    let arns: Vec<&str> = call
        .params
        .structs("PolicyArns")
        .into_iter()
        .filter_map(|fields| fields.iter().find(|(k, _)| *k == "arn").map(|(_, v)| *v))
        .collect();
    if arns.len() > 10 {
        return Err(ApiError::validation(
            "1 validation error detected: Value at 'policyArns' failed to satisfy constraint: Member must have length less than or equal to 10",
        ));
    }
    for arn in arns {
        let (acct, name) = crate::iam::policy_arn_parts(arn)?;
        let found = if acct == account || acct == crate::iam::aws_managed::ACCOUNT {
            match call
                .app
                .store
                .policy(acct, name)
                .await?
                .filter(|p| p.arn() == arn)
            {
                Some(p) => call
                    .app
                    .store
                    .policy_version(acct, name, &p.default_version)
                    .await?
                    .map(|v| v.document),
                None => None,
            }
        } else {
            None
        };
        let Some(doc) = found else {
            return Err(ApiError::validation(format!(
                "Policy {arn} does not exist or is not attachable."
            )));
        };
        docs.push(doc);
    }
    if plain > SESSION_POLICY_MAX {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value at 'policy' failed to satisfy constraint: Member must have length less than or equal to {SESSION_POLICY_MAX}"
        )));
    }
    Ok(docs)
}

/// `PackedPolicySize`: the percentage of the packed limit the session's policies and tags use.
fn packed_size(docs: &[String], tags: &[Tag]) -> Result<Option<i64>, ApiError> {
    if docs.is_empty() && tags.is_empty() {
        return Ok(None);
    }
    // Compact JSON of the policies plus the tags, against a 2,048-byte packed limit.
    let mut bytes = 0usize;
    for d in docs {
        bytes += serde_json::from_str::<Value>(d)
            .map(|v| v.to_string().len())
            .unwrap_or(d.len())
            / 2;
    }
    for t in tags {
        bytes += t.key.len() + t.value.len() + 2;
    }
    let percent = (bytes * 100).div_ceil(SESSION_POLICY_MAX) as i64;
    if percent > 100 {
        return Err(ApiError::new(
            400,
            "PackedPolicyTooLarge",
            format!("Packed size of the session policies and tags exceeds the limit ({percent}% of the allowed size)."),
        ));
    }
    Ok(Some(percent))
}

/// Multi-factor authentication: Berth has no MFA devices, so a code can never be checked.
fn refuse_mfa(call: &Call<'_>) -> Result<(), ApiError> {
    if call.params.get("SerialNumber").is_some() || call.params.get("TokenCode").is_some() {
        return Err(ApiError::access_denied(
            "MultiFactorAuthentication failed: this server has no MFA devices to check the code against.",
        ));
    }
    Ok(())
}

struct NewSession {
    key_id: String,
    secret: String,
    token: String,
    expires: i64,
}

async fn store_session(
    call: &Call<'_>,
    account: &str,
    claims: &Claims,
    duration: i64,
) -> Result<NewSession, ApiError> {
    let now = call.origin.now;
    let s = Session {
        access_key_id: ids::temporary_key_id(),
        secret: ids::secret_access_key(),
        token: ids::session_token(),
        account: account.to_string(),
        claims: serde_json::to_string(claims).map_err(|e| ApiError::internal(e.to_string()))?,
        created: now,
        expires: now + duration,
    };
    call.app.store.create_session(&s).await?;
    Ok(NewSession {
        key_id: s.access_key_id,
        secret: s.secret,
        token: s.token,
        expires: s.expires,
    })
}

fn credentials(s: &NewSession) -> Value {
    json!({
        "AccessKeyId": s.key_id,
        "SecretAccessKey": s.secret,
        "SessionToken": s.token,
        "Expiration": ids::iso8601(s.expires),
    })
}

/// `[\w+=,.@-]*` within a length range.
fn session_name(
    call: &Call<'_>,
    param: &str,
    range: std::ops::RangeInclusive<usize>,
) -> Result<String, ApiError> {
    let v = call.params.required(param)?;
    call.params.text(param, range)?;
    if !v.chars().all(crate::query::params::is_name_char) {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value '{v}' at '{}' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*",
            {
                let mut c = param.chars();
                c.next().map(|f| f.to_ascii_lowercase().to_string() + c.as_str()).unwrap_or_default()
            }
        )));
    }
    Ok(v.to_string())
}

async fn assume_role(call: &Call<'_>) -> Result<Value, ApiError> {
    let c = call.caller;
    let p = call.params;
    let role_arn = p.required("RoleArn")?;
    p.text("RoleArn", 20..=2048)?;
    let session = session_name(call, "RoleSessionName", 2..=64)?;
    let duration = p.int("DurationSeconds", 900..=43200)?;
    let external_id = p.text("ExternalId", 2..=1224)?;
    let source_identity = p.text("SourceIdentity", 2..=64)?;
    if source_identity.is_some_and(|s| s.to_ascii_lowercase().starts_with("aws:")) {
        return Err(ApiError::validation(
            "SourceIdentity must not start with 'aws:'",
        ));
    }
    refuse_mfa(call)?;
    if c.is_root() {
        return Err(ApiError::access_denied(
            "Roles may not be assumed by root accounts.",
        ));
    }
    let mut tags = session_tags(call)?;
    let transitive: Vec<String> = p
        .list("TransitiveTagKeys")
        .into_iter()
        .map(str::to_string)
        .collect();
    for k in &transitive {
        if !tags.iter().any(|t| t.key.eq_ignore_ascii_case(k)) {
            return Err(ApiError::invalid_input(format!(
                "The transitive tag key {k} is not among the session tags."
            )));
        }
    }

    // The role: an unknown role is refused like a denied one (existence is not revealed).
    let parsed = crate::iam::role_arn_parts(role_arn);
    let role = match parsed {
        Some((acct, name)) => call.app.store.entity(acct, EntityKind::Role, name).await?,
        None => {
            return Err(ApiError::validation(format!(
                "{role_arn} is not a role ARN (arn:aws:iam::ACCOUNT:role/NAME)"
            )))
        }
    };
    let denied = || {
        ApiError::access_denied(format!(
            "User: {} is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
            c.arn()
        ))
    };
    let Some(role) = role else {
        return Err(denied());
    };
    let trust = role
        .trust_policy
        .as_deref()
        .map(|t| {
            CompiledPolicy::parse(&format!("{} trust policy", role.name), PolicyKind::Trust, t)
        })
        .transpose()
        .map_err(|e| {
            ApiError::internal(format!(
                "the role's stored trust policy no longer compiles: {e}"
            ))
        })?
        .map(Arc::new);
    let Some(trust) = trust else {
        return Err(denied());
    };

    // Transitive tags of a chained session carry over and cannot change.
    let mut transitive_keys = transitive.clone();
    let mut source = source_identity.map(str::to_string);
    if let Some(claims) = &c.claims {
        for k in &claims.transitive_keys {
            let Some((_, v)) = claims
                .tags
                .iter()
                .find(|(tk, _)| tk.eq_ignore_ascii_case(k))
            else {
                continue;
            };
            match tags.iter().find(|t| t.key.eq_ignore_ascii_case(k)) {
                Some(t) if t.value != *v => {
                    return Err(ApiError::invalid_input(format!(
                        "The transitive session tag {k} cannot be changed in a chained session."
                    )))
                }
                Some(_) => {}
                None => tags.push(Tag {
                    key: k.clone(),
                    value: v.clone(),
                }),
            }
            if !transitive_keys.iter().any(|t| t.eq_ignore_ascii_case(k)) {
                transitive_keys.push(k.clone());
            }
        }
        if let Some(prev) = &claims.source_identity {
            if source.as_ref().is_some_and(|s| s != prev) {
                return Err(ApiError::access_denied(
                    "The source identity of a session cannot be changed once set.",
                ));
            }
            source = Some(prev.clone());
        }
    }

    let mut ctx: Vec<(String, ContextValue)> = vec![(
        "sts:RoleSessionName".into(),
        ContextValue::One(session.clone()),
    )];
    if let Some(e) = external_id {
        ctx.push(("sts:ExternalId".into(), ContextValue::One(e.to_string())));
    }
    if let Some(s) = &source {
        ctx.push(("sts:SourceIdentity".into(), ContextValue::One(s.clone())));
    }
    let given_tags = session_tags(call)?;
    for t in &given_tags {
        ctx.push((
            format!("aws:RequestTag/{}", t.key),
            ContextValue::One(t.value.clone()),
        ));
    }
    if !given_tags.is_empty() {
        ctx.push((
            "aws:TagKeys".into(),
            ContextValue::Many(given_tags.iter().map(|t| t.key.clone()).collect()),
        ));
    }
    if !transitive.is_empty() {
        ctx.push((
            "sts:TransitiveTagKeys".into(),
            ContextValue::Many(transitive.clone()),
        ));
    }
    let role_full_arn = role.arn();
    let policies = [trust];
    let ask = |action: &str| {
        authorize(
            call.app,
            c,
            call.origin,
            &Authorization {
                action,
                resource: &role_full_arn,
                resource_account: &role.account,
                resource_policies: &policies,
                context: &ctx,
                resource_must_allow: true,
            },
        )
        .map_err(|_| {
            ApiError::access_denied(format!(
                "User: {} is not authorized to perform: {action} on resource: {role_arn}",
                c.arn()
            ))
        })
    };
    ask("sts:AssumeRole")?;
    if !given_tags.is_empty() {
        ask("sts:TagSession")?;
    }
    if source_identity.is_some() {
        ask("sts:SetSourceIdentity")?;
    }

    let chained = c.identity == Identity::RoleSession;
    let max = role.max_session_secs.unwrap_or(3600);
    let duration = duration.unwrap_or(3600);
    if chained && duration > 3600 {
        return Err(ApiError::validation(
            "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.",
        ));
    }
    if duration > max {
        return Err(ApiError::validation(
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
        ));
    }
    let docs = session_policies(call, &role.account).await?;
    let packed = packed_size(&docs, &given_tags)?;
    crate::auth::cache::session_policy(&docs)?;
    let claims = Claims {
        kind: "role".into(),
        role: Some(RoleClaim {
            name: role.name.clone(),
            path: role.path.clone(),
            id: role.unique_id.clone(),
            session_name: session.clone(),
        }),
        session_policies: docs,
        tags: tags
            .iter()
            .map(|t| (t.key.clone(), t.value.clone()))
            .collect(),
        transitive_keys,
        source_identity: source.clone(),
        mfa_time: c.claims.as_ref().and_then(|cl| cl.mfa_time),
        chained,
        issued: call.origin.now,
        ..Claims::default()
    };
    let s = store_session(call, &role.account, &claims, duration).await?;
    Ok(json!({
        "Credentials": credentials(&s),
        "AssumedRoleUser": {
            "AssumedRoleId": format!("{}:{session}", role.unique_id),
            "Arn": format!("arn:aws:sts::{}:assumed-role/{}/{session}", role.account, role.name),
        },
        "PackedPolicySize": packed,
        "SourceIdentity": source,
    }))
}

/// The IAM user (name and unique id; `None` for the root user) behind long-term
/// credentials; temporary ones may not call `action`.
fn long_term_user(
    c: &crate::auth::Caller,
    action: &str,
) -> Result<(Option<String>, Option<String>), ApiError> {
    match &c.identity {
        Identity::Root => Ok((None, None)),
        Identity::User { name } => Ok((Some(name.clone()), Some(c.user_id.clone()))),
        _ => Err(ApiError::access_denied(format!(
            "Cannot call {action} with session credentials"
        ))),
    }
}

async fn get_session_token(call: &Call<'_>) -> Result<Value, ApiError> {
    let c = call.caller;
    let duration = call.params.int("DurationSeconds", 900..=129_600)?;
    refuse_mfa(call)?;
    let (user, user_id) = long_term_user(c, "GetSessionToken")?;
    let mut duration = duration.unwrap_or(43_200);
    if user.is_none() {
        duration = duration.min(3600);
    }
    let claims = Claims {
        kind: "session".into(),
        user,
        user_id,
        issued: call.origin.now,
        ..Claims::default()
    };
    let s = store_session(call, &c.account, &claims, duration).await?;
    Ok(json!({ "Credentials": credentials(&s) }))
}

async fn get_federation_token(call: &Call<'_>) -> Result<Value, ApiError> {
    let c = call.caller;
    let name = session_name(call, "Name", 2..=32)?;
    let duration = call.params.int("DurationSeconds", 900..=129_600)?;
    let (user, user_id) = long_term_user(c, "GetFederationToken")?;
    let tags = session_tags(call)?;
    let federated_arn = format!("arn:aws:sts::{}:federated-user/{name}", c.account);
    let mut ctx = Vec::new();
    for t in &tags {
        ctx.push((
            format!("aws:RequestTag/{}", t.key),
            ContextValue::One(t.value.clone()),
        ));
    }
    if !tags.is_empty() {
        ctx.push((
            "aws:TagKeys".into(),
            ContextValue::Many(tags.iter().map(|t| t.key.clone()).collect()),
        ));
    }
    let ask = |action: &str| {
        authorize(
            call.app,
            c,
            call.origin,
            &Authorization {
                action,
                resource: &federated_arn,
                resource_account: &c.account,
                resource_policies: &[],
                context: &ctx,
                resource_must_allow: false,
            },
        )
    };
    ask("sts:GetFederationToken")?;
    if !tags.is_empty() {
        ask("sts:TagSession")?;
    }
    let docs = session_policies(call, &c.account).await?;
    let packed = packed_size(&docs, &tags)?;
    crate::auth::cache::session_policy(&docs)?;
    let mut duration = duration.unwrap_or(43_200);
    if user.is_none() {
        duration = duration.min(3600);
    }
    let claims = Claims {
        kind: "federated".into(),
        federated_name: Some(name.clone()),
        user,
        user_id,
        session_policies: docs,
        tags: tags
            .iter()
            .map(|t| (t.key.clone(), t.value.clone()))
            .collect(),
        issued: call.origin.now,
        ..Claims::default()
    };
    let s = store_session(call, &c.account, &claims, duration).await?;
    Ok(json!({
        "Credentials": credentials(&s),
        "FederatedUser": {
            "FederatedUserId": format!("{}:{name}", c.account),
            "Arn": federated_arn,
        },
        "PackedPolicySize": packed,
    }))
}

/// DecodeAuthorizationMessage: open an encoded denial for a principal allowed
/// `sts:DecodeAuthorizationMessage`.
async fn decode_authorization_message(call: &Call<'_>) -> Result<Value, ApiError> {
    let blob = call.params.required("EncodedMessage")?;
    authorize(
        call.app,
        call.caller,
        call.origin,
        &Authorization {
            action: "sts:DecodeAuthorizationMessage",
            resource: "*",
            resource_account: &call.caller.account,
            resource_policies: &[],
            context: &[],
            resource_must_allow: false,
        },
    )?;
    let invalid = |m: &str| ApiError::new(400, "InvalidAuthorizationMessageException", m);
    let Some(key) = &call.app.message_key else {
        return Err(invalid(
            "This server does not encode authorization messages (encoded_denials = false)",
        ));
    };
    let plain = crate::auth::message::open(key, blob).ok_or_else(|| {
        invalid(
            "The encoded message is not valid: it was not made by this server, or it was changed",
        )
    })?;
    let mut v: Value =
        serde_json::from_slice(&plain).map_err(|_| invalid("The encoded message is not valid"))?;
    // The message is for the administrators of the account that made the request.
    if v.get("account").and_then(Value::as_str) != Some(&*call.caller.account) {
        return Err(invalid(
            "The encoded message belongs to a request of another account: only that account can decode it",
        ));
    }
    let expires = v.get("expires").and_then(Value::as_i64).unwrap_or(0);
    if call.origin.now >= expires {
        return Err(invalid("The encoded message has expired"));
    }
    if let Some(o) = v.as_object_mut() {
        o.remove("expires");
        o.remove("account");
    }
    Ok(json!({ "DecodedMessage": v.to_string() }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::params::Params;
    use crate::serve::app::testing;

    /// Every STS operation is what its table entry says: for a user without policies, the
    /// ones that need an action are refused naming it, the ones AWS runs
    /// without a permission answer, and the unsupported ones are unknown operations.
    #[tokio::test]
    async fn every_operation_is_authorized_as_declared() {
        let app = testing::app().await;
        let nobody = testing::caller(&app, "AKIANOBODYNOBODYNOBO").await;
        let origin = testing::origin();
        let params = Params::from_pairs(
            [
                ("RoleArn", "arn:aws:iam::111111111111:role/r"),
                ("RoleSessionName", "session"),
                ("Name", "fed"),
                ("EncodedMessage", "abc"),
                ("AccessKeyId", "AKIANOBODYNOBODYNOBO"),
                ("SAMLAssertion", "x"),
                ("PrincipalArn", "arn:aws:iam::111111111111:saml-provider/p"),
                ("WebIdentityToken", "x"),
                ("TargetPrincipal", "111111111111"),
                (
                    "TaskPolicyArn.arn",
                    "arn:aws:iam::aws:policy/root-task/IAMAuditRootUserCredentials",
                ),
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
            let result = handle(&call, ep.name()).await;
            match ep.needs() {
                Needs::Action(action) => {
                    let e = result.unwrap_err();
                    assert_eq!(e.code, "AccessDenied", "{}: {e:?}", ep.name());
                    assert!(
                        e.message
                            .contains(&format!("not authorized to perform: {action}")),
                        "{}: {}",
                        ep.name(),
                        e.message
                    );
                }
                Needs::Nothing => {
                    assert!(result.is_ok(), "{}: {result:?}", ep.name());
                }
                Needs::Unsupported => {
                    assert_eq!(result.unwrap_err().code, "InvalidAction", "{}", ep.name());
                }
            }
        }
    }
}
