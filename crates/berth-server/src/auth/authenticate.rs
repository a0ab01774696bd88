//! From a signed request to a [`Caller`]: check the SigV4 signature against the stored
//! long-term key or STS session it names, then gather who that is.

use std::sync::Arc;

use berth_iam::{CompiledPolicy, PolicyKind, Principal};
use berth_sigv4::{Expectations, Signed};
use berth_store::EntityKind;

use super::cache::Credential;
use super::caller::{Caller, Identity};
use crate::query::ApiError;
use crate::serve::App;

/// What the endpoint expects of the signature.
#[derive(Debug, Clone, Copy)]
pub struct Signing<'a> {
    /// `iam`, `sts`, `ecr`.
    pub service: &'a str,
    pub now: i64,
}

/// Constant-time equality of two secrets.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Authenticate a request: its signature, its key or session, then the caller.
/// Returns the caller and the region the request was signed for.
pub async fn authenticate(
    app: &App,
    req: &berth_sigv4::Request<'_>,
    query: &[(String, String)],
    signing: Signing<'_>,
) -> Result<(Caller, String), ApiError> {
    let signed = berth_sigv4::parse(req, query)?;
    let regions = signing_regions(app, signing.service);
    berth_sigv4::check_scope_and_time(
        &signed,
        &Expectations {
            service: signing.service,
            regions: &regions,
            max_skew_secs: app.config.max_skew_secs,
            now: signing.now,
        },
    )?;
    let key_id = signed.credential.access_key_id;
    let credential = usable_credential(app, &signed, signing.now).await?;
    match &*credential {
        Credential::Key(key) => verify(app, req, &signed, &key.secret)?,
        Credential::Session { session, .. } => verify(app, req, &signed, &session.secret)?,
    }
    let caller = caller_for(app, key_id, &credential, signing.now).await?;
    Ok((caller, signed.credential.region.to_string()))
}

/// The metric label of a signing name.
fn service_api(service: &str) -> &'static str {
    match service {
        "ecr" => "ecr",
        "iam" => "iam",
        "sts" => "sts",
        "access-analyzer" => "analyzer",
        _ => "query",
    }
}

/// The credential a parsed signature names, if it may sign now: a known active
/// long-term key without a session token, or a live session with its own token.
async fn usable_credential(
    app: &App,
    signed: &Signed<'_>,
    now: i64,
) -> Result<Arc<Credential>, ApiError> {
    let Some(credential) = app
        .caches
        .credential(&*app.store, signed.credential.access_key_id)
        .await?
    else {
        return Err(ApiError::invalid_token());
    };
    match &*credential {
        Credential::Key(key) => {
            // A session token never goes with a long-term key.
            if key.status != berth_store::KeyStatus::Active || signed.security_token.is_some() {
                return Err(ApiError::invalid_token());
            }
        }
        Credential::Session { session, .. } => {
            let token_ok = signed
                .security_token
                .as_deref()
                .is_some_and(|t| same_secret(t, &session.token));
            if !token_ok {
                return Err(ApiError::invalid_token());
            }
            if now >= session.expires {
                return Err(expired_token());
            }
        }
    }
    Ok(credential)
}

fn expired_token() -> ApiError {
    ApiError::new(
        403,
        "ExpiredToken",
        "The security token included in the request is expired",
    )
}

/// The Regions a request for `service` may be signed for: the Regions this deployment
/// serves (an ECR or STS request's Region selects the registry, or the Region STS answers
/// for), and us-east-1 for IAM, which is global and signs there, and for STS's global
/// endpoint.
fn signing_regions<'a>(app: &'a App, service: &str) -> Vec<&'a str> {
    let mut regions: Vec<&str> = app.config.regions.iter().map(String::as_str).collect();
    if matches!(service, "iam" | "sts") && !regions.contains(&"us-east-1") {
        regions.push("us-east-1");
    }
    regions
}

/// Check, from the head of a request alone, everything about its signature that does
/// not need the body: it is well formed, signs every `x-amz-*` header, declares no
/// unsigned payload, is scoped to one of `services` in this server's region and clock
/// window, and names a usable credential ([`usable_credential`]). Front doors that read
/// a body whole run this first, so that only a request naming a usable credential can
/// make the server hold a body; the signature, which covers the body, is verified by
/// [`authenticate`] once the body is in. Returns the signing name the request used.
pub async fn precheck(
    app: &App,
    parts: &axum::http::request::Parts,
    services: &[&'static str],
) -> Result<&'static str, ApiError> {
    let headers = header_pairs(&parts.headers);
    let raw_query = parts.uri.query().unwrap_or("");
    let req = berth_sigv4::Request {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: raw_query,
        headers: &headers,
        body: &[],
    };
    let query = berth_sigv4::query_pairs(raw_query);
    let signed = berth_sigv4::parse(&req, &query)?;
    berth_sigv4::check_declared_payload(&req)?;
    let service = services
        .iter()
        .copied()
        .find(|s| *s == signed.credential.service)
        .or_else(|| services.first().copied())
        .ok_or_else(|| ApiError::internal("a front door with no signing name"))?;
    let regions = signing_regions(app, service);
    let now = crate::ids::now();
    berth_sigv4::check_scope_and_time(
        &signed,
        &Expectations {
            service,
            regions: &regions,
            max_skew_secs: app.config.max_skew_secs,
            now,
        },
    )?;
    usable_credential(app, &signed, now).await?;
    Ok(service)
}

/// The headers as SigV4 reads them (values that are not text are left out).
fn header_pairs(headers: &axum::http::HeaderMap) -> Vec<(&str, &str)> {
    headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
        .collect()
}

/// Authenticate a signed request as a front door received it (`service`: the signing
/// name it expects), and say where it comes from.
pub async fn authenticate_http(
    app: &App,
    peer: std::net::SocketAddr,
    parts: &axum::http::request::Parts,
    body: &[u8],
    service: &str,
    request_id: &str,
) -> Result<(Caller, crate::serve::Origin), ApiError> {
    let headers = header_pairs(&parts.headers);
    let raw_query = parts.uri.query().unwrap_or("");
    let req = berth_sigv4::Request {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: raw_query,
        headers: &headers,
        body,
    };
    let now = crate::ids::now();
    let signing = Signing { service, now };
    let client = || app.client_ip(peer.ip(), &parts.headers);
    let (caller, region) =
        match authenticate(app, &req, &berth_sigv4::query_pairs(raw_query), signing).await {
            Ok(c) => c,
            Err(e) => {
                if e.status < 500 {
                    super::failures::record(app, client(), e.code, &e.message);
                }
                return Err(e);
            }
        };
    if let Err(t) = app.throttle.principal(caller.arn()) {
        crate::metrics::metrics()
            .throttled
            .get_or_create(&crate::metrics::LimitLabels {
                api: service_api(service),
                limit: t.limit.name(),
            })
            .inc();
        let code = if service == "ecr" || service == "access-analyzer" {
            "ThrottlingException"
        } else {
            "Throttling"
        };
        return Err(ApiError::new(400, code, t.message()));
    }
    let origin = app.origin(
        peer.ip(),
        parts.extensions.get(),
        &parts.headers,
        request_id.to_string(),
        now,
        region,
    );
    Ok((caller, origin))
}

/// The caller behind a credential already proven (by a signature, or by a registry
/// password minted for it): checks the key is active and the session unexpired.
pub async fn caller_for(
    app: &App,
    key_id: &str,
    credential: &Credential,
    now: i64,
) -> Result<Caller, ApiError> {
    Ok(match credential {
        Credential::Key(key) => {
            if key.status != berth_store::KeyStatus::Active {
                return Err(ApiError::invalid_token());
            }
            match &key.user {
                None => root(&key.account, key_id),
                Some(user) => {
                    let Some(policies) = app
                        .caches
                        .entity(&*app.store, &key.account, EntityKind::User, user)
                        .await?
                    else {
                        return Err(ApiError::invalid_token());
                    };
                    let entity = &policies.entity;
                    let mut principal =
                        Principal::from_arn(&entity.arn()).map_err(ApiError::internal)?;
                    principal.unique_id = Some(entity.unique_id.as_str().into());
                    Caller {
                        identity: Identity::User {
                            name: entity.name.clone(),
                        },
                        principal,
                        account: key.account.as_str().into(),
                        access_key_id: key_id.to_string(),
                        user_id: entity.unique_id.clone(),
                        principal_tags: policies
                            .tags
                            .iter()
                            .map(|t| (t.key.clone(), t.value.clone()))
                            .collect(),
                        policies: Some(policies.clone()),
                        session_policy: None,
                        claims: None,
                        session_expires: None,
                    }
                }
            }
        }
        Credential::Session {
            session,
            claims,
            session_policy,
        } => {
            if now >= session.expires {
                return Err(expired_token());
            }
            session_caller(app, key_id, session, claims, session_policy.clone()).await?
        }
    })
}

fn verify(
    app: &App,
    req: &berth_sigv4::Request<'_>,
    signed: &Signed<'_>,
    secret: &str,
) -> Result<(), ApiError> {
    let key = app.caches.signing_keys.key(signed, secret);
    berth_sigv4::verify_with_key(req, signed, &key)?;
    Ok(())
}

/// The root user of `account` as a caller (`key_id`: the key it signed with, if any).
pub(crate) fn root(account: &str, key_id: &str) -> Caller {
    let principal = Principal {
        kind: berth_iam::PrincipalKind::Root,
        arn: format!("arn:aws:iam::{account}:root").into(),
        account: account.into(),
        role_arn: None,
        federating_user_arn: None,
        unique_id: None,
        user_name: None,
    };
    Caller {
        identity: Identity::Root,
        principal,
        account: account.into(),
        access_key_id: key_id.to_string(),
        user_id: account.to_string(),
        policies: None,
        session_policy: None,
        principal_tags: Vec::new(),
        claims: None,
        session_expires: None,
    }
}

/// An identity policy that allows everything: what the root user holds, for the
/// federated sessions it creates (their session policy then limits them).
fn root_permissions() -> Arc<CompiledPolicy> {
    static ROOT: std::sync::OnceLock<Arc<CompiledPolicy>> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| {
        Arc::new(
            CompiledPolicy::parse(
                "root",
                PolicyKind::Identity,
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
            )
            .expect("the root permissions policy is valid"),
        )
    })
    .clone()
}

async fn session_caller(
    app: &App,
    key_id: &str,
    session: &berth_store::Session,
    claims: &Arc<super::caller::Claims>,
    session_policy: Option<Arc<CompiledPolicy>>,
) -> Result<Caller, ApiError> {
    let account = session.account.as_str();
    let entity_policies = |kind, name: String| async move {
        app.caches.entity(&*app.store, account, kind, &name).await
    };
    let mut tags: Vec<(String, String)> = Vec::new();
    let (identity, principal, user_id, policies) = match claims.kind.as_str() {
        "role" => {
            let role = claims
                .role
                .as_ref()
                .ok_or_else(|| ApiError::internal("a role session without its role"))?;
            let arn = format!(
                "arn:aws:sts::{account}:assumed-role/{}/{}",
                role.name, role.session_name
            );
            let mut p = Principal::from_arn(&arn).map_err(ApiError::internal)?;
            p.role_arn =
                Some(format!("arn:aws:iam::{account}:role{}{}", role.path, role.name).into());
            p.unique_id = Some(role.id.as_str().into());
            // A role deleted and created again under the same name is another role: the
            // session keeps nothing of it.
            let policies = entity_policies(EntityKind::Role, role.name.clone())
                .await?
                .filter(|p| p.entity.unique_id == role.id);
            (
                Identity::RoleSession,
                p,
                format!("{}:{}", role.id, role.session_name),
                policies,
            )
        }
        "federated" => {
            let name = claims.federated_name.clone().unwrap_or_default();
            let arn = format!("arn:aws:sts::{account}:federated-user/{name}");
            let mut p = Principal::from_arn(&arn).map_err(ApiError::internal)?;
            let policies = match &claims.user {
                Some(u) => {
                    let pol = entity_policies(EntityKind::User, u.clone())
                        .await?
                        .filter(|p| Some(&p.entity.unique_id) == claims.user_id.as_ref());
                    if let Some(pol) = &pol {
                        p.federating_user_arn = Some(pol.entity.arn().into());
                    }
                    pol
                }
                None => {
                    p.federating_user_arn = Some(format!("arn:aws:iam::{account}:root").into());
                    None
                }
            };
            (
                Identity::Federated,
                p,
                format!("{account}:{name}"),
                policies,
            )
        }
        _ => {
            // GetSessionToken: the same principal as the long-term credentials.
            match &claims.user {
                None => {
                    let mut c = root(account, key_id);
                    c.identity = Identity::UserSession { user: None };
                    c.claims = Some(claims.clone());
                    c.session_expires = Some(session.expires);
                    return Ok(c);
                }
                Some(u) => {
                    let pol = entity_policies(EntityKind::User, u.clone())
                        .await?
                        .filter(|p| Some(&p.entity.unique_id) == claims.user_id.as_ref());
                    let Some(pol) = pol else {
                        return Err(ApiError::invalid_token());
                    };
                    let mut p =
                        Principal::from_arn(&pol.entity.arn()).map_err(ApiError::internal)?;
                    p.unique_id = Some(pol.entity.unique_id.as_str().into());
                    (
                        Identity::UserSession {
                            user: Some(u.clone()),
                        },
                        p,
                        pol.entity.unique_id.clone(),
                        Some(pol),
                    )
                }
            }
        }
    };
    if let Some(p) = &policies {
        tags.extend(p.tags.iter().map(|t| (t.key.clone(), t.value.clone())));
    }
    // Session tags replace the entity's tags of the same key (keys compare case-insensitively).
    for (k, v) in &claims.tags {
        tags.retain(|(old, _)| !old.eq_ignore_ascii_case(k));
        tags.push((k.clone(), v.clone()));
    }
    let policies = match (&identity, policies, &claims.user) {
        // A federated session of the root user: everything, narrowed by the session policy.
        (Identity::Federated, None, None) => Some(Arc::new(super::cache::EntityPolicies {
            entity: berth_store::Entity {
                account: account.to_string(),
                kind: EntityKind::User,
                name: "root".into(),
                path: "/".into(),
                unique_id: account.to_string(),
                created: 0,
                trust_policy: None,
                description: None,
                max_session_secs: None,
                boundary: None,
            },
            identity: vec![root_permissions()],
            boundary: None,
            tags: Vec::new(),
        })),
        (_, p, _) => p,
    };
    Ok(Caller {
        identity,
        principal,
        account: account.into(),
        access_key_id: key_id.to_string(),
        user_id,
        policies,
        session_policy,
        principal_tags: tags,
        claims: Some(claims.clone()),
        session_expires: Some(session.expires),
    })
}
