//! The OCI distribution API (`/v2/`), as ECR serves it: Basic authentication with the
//! registry password from GetAuthorizationToken, the registry chosen by the Host header,
//! every endpoint ([`router::Endpoint`]) decided as its ECR action on the repository
//! before anything is looked up, OCI error bodies. With `anonymous_pull`, pulls without
//! credentials are decided as the anonymous principal ([`anonymous`]).

pub mod anonymous;
mod blobs;
mod error;
mod manifests;
pub mod router;

pub(crate) use manifests::accepted as accepted_types;

use std::net::SocketAddr;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use serde_json::json;

use crate::auth::authenticate::caller_for;
use crate::auth::Caller;
use crate::ids;
use crate::query::ApiError;
use crate::registry::token::{self, TokenError};
use crate::registry::{authorize_ecr, EcrRequest};
use crate::serve::{App, Origin};
use router::{Endpoint, RouteError};

/// An OCI error: status, code and message.
#[derive(Debug, Clone)]
pub struct OciError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub detail: Option<serde_json::Value>,
}

impl OciError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> OciError {
        OciError {
            status,
            code,
            message: message.into(),
            detail: None,
        }
    }

    pub fn with_detail(mut self, detail: serde_json::Value) -> OciError {
        self.detail = Some(detail);
        self
    }
}

impl From<ApiError> for OciError {
    fn from(e: ApiError) -> OciError {
        match e.code {
            "AccessDenied" => OciError::new(403, "DENIED", e.message),
            "InvalidClientTokenId" => OciError::new(
                403,
                "DENIED",
                "The credentials this authorization token was issued for are no longer valid. Reauthenticate and try again.",
            ),
            "ExpiredToken" => OciError::new(
                403,
                "DENIED",
                "Your authorization token has expired. Reauthenticate and try again.",
            ),
            "ServiceUnavailable" => OciError::new(503, "UNAVAILABLE", e.message),
            _ if e.status >= 500 => OciError::new(500, "UNKNOWN", e.message),
            _ => OciError::new(400, "UNSUPPORTED", e.message),
        }
    }
}

/// What every handler gets.
pub struct OciCall<'a> {
    pub app: &'a App,
    pub caller: &'a Caller,
    pub origin: &'a Origin,
    pub registry: String,
    pub headers: &'a HeaderMap,
    pub query: Vec<(String, String)>,
}

impl OciCall<'_> {
    /// The registry the request is for (the Host's account, in the Host's Region).
    pub fn key(&self) -> berth_store::RegistryKey<'_> {
        self.app.key(&self.registry, &self.origin.region)
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn name_unknown(&self, name: &str) -> OciError {
        OciError::new(
            404,
            "NAME_UNKNOWN",
            format!(
                "The repository with name '{name}' does not exist in the registry with id '{}'",
                self.registry
            ),
        )
    }

    /// The repository an endpoint names, which must exist (`NAME_UNKNOWN`).
    pub fn existing<'r>(
        &self,
        name: &str,
        repo: &'r Option<berth_store::Repository>,
    ) -> Result<&'r berth_store::Repository, OciError> {
        repo.as_ref().ok_or_else(|| self.name_unknown(name))
    }

    /// Decide another ECR action than the endpoint's (mount sources, monolithic uploads).
    pub async fn also_authorize(
        &self,
        action: &str,
        repository: &str,
    ) -> Result<Option<berth_store::Repository>, OciError> {
        Ok(authorize_ecr(
            self.app,
            self.caller,
            self.origin,
            EcrRequest {
                action,
                registry: &self.registry,
                repository: Some(repository),
                context: Vec::new(),
            },
        )
        .await?)
    }
}

pub fn response(status: StatusCode, body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    r
}

pub fn set(r: &mut Response<Body>, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
}

fn error_response(e: &OciError, head: bool, challenge: Option<&str>) -> Response<Body> {
    // `detail` is optional in the distribution spec: left out when there is none.
    let mut err = json!({"code": e.code, "message": e.message});
    if let Some(d) = &e.detail {
        err["detail"] = d.clone();
    }
    let body = json!({ "errors": [err] }).to_string();
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = if head {
        response(status, Body::empty())
    } else {
        response(status, Body::from(body))
    };
    set(&mut r, "content-type", "application/json");
    if let Some(c) = challenge {
        set(&mut r, "www-authenticate", c);
    }
    r
}

/// The registry a Host header addresses, as (account, Region if the host names one):
/// `<12 digits>.dkr.<registry_domain>[:port]` is an account's registry,
/// `<12 digits>.dkr.<first label>.<region>.<rest>[:port]` (the Region inserted after the
/// domain's first label, as in `dkr.ecr.us-west-2.amazonaws.com`) an account's registry in
/// a Region this deployment serves; any other host is the default account's. Where the
/// host names no Region, the registry password's Region is the registry's (see
/// [`authenticate`]): a client without DNS for the regional names reaches every Region
/// through one address, with the password of the Region it wants.
pub fn registry_of(app: &App, host: Option<&str>) -> (String, Option<String>) {
    let (account, region) = host_registry(app, host);
    (
        account.unwrap_or_else(|| app.default_account.clone()),
        region,
    )
}

/// The account and Region a Host header names, each `None` where it names none (a bare
/// address, the public URL's host, anything not an account's registry host). A `/v2`
/// request to a host that names no account is for the caller's own account's registry
/// (the default account's for an anonymous caller): a user of one account needs no DNS
/// for its account's host; another account's registry needs its host.
pub fn host_registry(app: &App, host: Option<&str>) -> (Option<String>, Option<String>) {
    let host = host.unwrap_or("");
    let bare = host
        .rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h);
    let Some((id, rest)) = bare.split_once(".dkr.") else {
        return (None, None);
    };
    if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return (None, None);
    }
    let domain = &app.config.registry_domain;
    if rest.eq_ignore_ascii_case(domain) {
        return (Some(id.to_string()), None);
    }
    let (first, tail) = domain.split_once('.').unwrap_or((domain.as_str(), ""));
    let regional = rest
        .to_ascii_lowercase()
        .strip_prefix(&first.to_ascii_lowercase())
        .and_then(|r| r.strip_prefix('.'))
        .and_then(|r| match tail {
            "" => Some(r.to_string()),
            t => r
                .strip_suffix(&t.to_ascii_lowercase())
                .and_then(|r| r.strip_suffix('.'))
                .map(str::to_string),
        });
    match regional {
        Some(region) if app.config.regions.contains(&region) => {
            (Some(id.to_string()), Some(region))
        }
        _ => (None, None),
    }
}

/// Serve one `/v2` request. (A refusal that leaves the request's body unread closes the
/// connection: the connection layer says so, see [`crate::serve::connections`].)
pub async fn serve(app: &App, peer: SocketAddr, req: Request<Body>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let mut _uploading = None;
    if let Ok(e) = Endpoint::route(&parts.method, parts.uri.path()) {
        crate::metrics::label(&parts.extensions, "oci", e.name());
        if matches!(e, Endpoint::PatchUpload { .. } | Endpoint::PutUpload { .. }) {
            _uploading = Some(crate::metrics::Raised::new(
                &crate::metrics::metrics().uploads_in_flight,
            ));
        }
    }
    let head = parts.method == axum::http::Method::HEAD;
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let challenge = anonymous::challenge(app, host.as_deref());
    let now = ids::now();
    // A presigned blob URL (from GetDownloadUrlForLayer) was authorized when it was made.
    if let Some(r) = presigned(app, &parts, host.as_deref(), now).await {
        return r;
    }
    let (host_account, host_region) = host_registry(app, host.as_deref());
    if app.config.anonymous_pull && parts.uri.path() == anonymous::TOKEN_PATH {
        let client = app.client_ip(peer.ip(), &parts.headers);
        return token(app, &parts.headers, host_region, now, &challenge, client).await;
    }
    let unauthorized = |e: &OciError| error_response(e, head, Some(challenge.as_str()));
    // Authenticate first: without credentials nothing else is said (but with
    // anonymous_pull, where the endpoint is a pull, decided below).
    let anonymous = app
        .config
        .anonymous_pull
        .then(|| anonymous::presented(&parts.headers))
        .flatten();
    let (caller, region) = match anonymous {
        Some(_) => (
            Caller::anonymous(),
            host_region.unwrap_or_else(|| app.config.region.clone()),
        ),
        None => match authenticate(app, &parts.headers, host_region, now).await {
            Ok(c) => c,
            Err(e) => {
                // A request without credentials is how every client starts (it gets the
                // challenge); one with credentials that do not hold is a failure.
                if e.status < 500 && parts.headers.contains_key(header::AUTHORIZATION) {
                    let client = app.client_ip(peer.ip(), &parts.headers);
                    crate::auth::failures::record(app, client, failure_reason(&e), &e.message);
                }
                if e.status == 401 {
                    return unauthorized(&e);
                }
                return error_response(&e, head, None);
            }
        },
    };
    // Anonymous callers are throttled by their addresses only.
    let throttled_principal = match caller.is_anonymous() {
        true => Ok(()),
        false => app.throttle.principal(caller.arn()),
    };
    if let Err(t) = throttled_principal {
        crate::metrics::metrics()
            .throttled
            .get_or_create(&crate::metrics::LimitLabels {
                api: "oci",
                limit: t.limit.name(),
            })
            .inc();
        let mut r = throttled(&t, head);
        set(&mut r, "retry-after", &t.retry_after_secs().to_string());
        return r;
    }
    let endpoint = match Endpoint::route(&parts.method, parts.uri.path()) {
        Ok(e) => e,
        Err(_) if anonymous.is_some() => return unauthorized(&needs_credentials()),
        Err(RouteError::NotFound) => return error_response(&OciError::new(404, "NOT_FOUND", format!("no registry route answers {}", parts.uri.path())), head, None),
        Err(RouteError::Method) => return error_response(&OciError::new(405, "UNSUPPORTED", format!("{} is not supported on {}", parts.method, parts.uri.path())), head, None),
        Err(RouteError::Name(n)) => return error_response(&OciError::new(400, "NAME_INVALID", format!(
            "invalid repository name {n:?}: components of lowercase letters and digits separated by '.', '_', '__' or '-', joined by '/', 2 to 256 characters"
        )), head, None),
    };
    if let Some(via) = anonymous {
        if !anonymous::serves(&endpoint, via) {
            return unauthorized(&needs_credentials());
        }
    }
    // A host that names no account is the caller's own account's registry.
    let registry = host_account.unwrap_or_else(|| match caller.is_anonymous() {
        true => app.default_account.clone(),
        false => caller.account.to_string(),
    });
    let origin = app.origin(
        peer.ip(),
        parts.extensions.get(),
        &parts.headers,
        ids::request_id(),
        now,
        region,
    );
    let call = OciCall {
        app,
        caller: &caller,
        origin: &origin,
        registry,
        headers: &parts.headers,
        query: berth_sigv4::query_pairs(parts.uri.query().unwrap_or("")),
    };
    let result = run(&call, &endpoint, body).await;
    let mut r = match result {
        Ok(r) => r,
        // Whatever is refused to the anonymous caller asks for credentials.
        Err(e) if caller.is_anonymous() && e.status == 403 => {
            tracing::info!(code = e.code, status = e.status, principal = %caller.arn(), path = %parts.uri.path(), "anonymous registry request refused");
            unauthorized(&needs_credentials())
        }
        Err(e) => {
            tracing::info!(code = e.code, status = e.status, principal = %caller.arn(), path = %parts.uri.path(), "registry request failed");
            error_response(&e, head, None)
        }
    };
    set(&mut r, "x-amzn-requestid", &origin.request_id);
    r
}

/// The refusal of an anonymous request: 401, so that the client logs in.
fn needs_credentials() -> OciError {
    OciError::new(
        401,
        "UNAUTHORIZED",
        "authentication required: no policy lets anonymous callers do this; docker login with the password from aws ecr get-login-password",
    )
}

/// The token endpoint of `anonymous_pull` ([`anonymous`]): the anonymous token for a
/// client without credentials; for `AWS:` and a registry password as Basic credentials,
/// that password itself, once it is checked as a `/v2` request's would be.
async fn token(
    app: &App,
    headers: &HeaderMap,
    host_region: Option<String>,
    now: i64,
    challenge: &str,
    client: std::net::IpAddr,
) -> Response<Body> {
    let (token, expires_in) = if headers.get(header::AUTHORIZATION).is_none() {
        (
            anonymous::ANONYMOUS_TOKEN.to_string(),
            anonymous::ANONYMOUS_TOKEN_SECONDS,
        )
    } else {
        if let Err(e) = authenticate(app, headers, host_region, now).await {
            if e.status < 500 {
                crate::auth::failures::record(app, client, failure_reason(&e), &e.message);
            }
            let with_challenge = (e.status == 401).then_some(challenge);
            return error_response(&e, false, with_challenge);
        }
        let password = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(password_of);
        let expires = password
            .as_deref()
            .and_then(|p| token::verify(&app.token_key, p, now).ok())
            .map(|e| e.expires);
        match (password, expires) {
            (Some(p), Some(expires)) => (p, expires - now),
            _ => {
                return error_response(
                    &OciError::new(500, "UNKNOWN", "a checked password did not read again"),
                    false,
                    None,
                )
            }
        }
    };
    let mut r = response(
        StatusCode::OK,
        Body::from(anonymous::token_body(&token, expires_in, now)),
    );
    set(&mut r, "content-type", "application/json");
    set(&mut r, "cache-control", "no-store");
    r
}

/// The registry password an `Authorization` header carries: ECR's `Basic` with the user
/// `AWS`, or a `Bearer` token from the token endpoint of `anonymous_pull`.
fn password_of(header: &str) -> Option<String> {
    token::basic_password(header).or_else(|| token::bearer_token(header).map(str::to_string))
}

/// Serve a presigned blob download, if the request is one (`None`: it is not).
async fn presigned(
    app: &App,
    parts: &axum::http::request::Parts,
    host: Option<&str>,
    now: i64,
) -> Option<Response<Body>> {
    let query = berth_sigv4::query_pairs(parts.uri.query().unwrap_or(""));
    let get = |n: &str| query.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    let (expires, signature) = (get("X-Berth-Expires")?, get("X-Berth-Signature")?);
    let head = parts.method == axum::http::Method::HEAD;
    let refused = |m: &str| Some(error_response(&OciError::new(403, "DENIED", m), head, None));
    let Ok(expires) = expires.parse::<i64>() else {
        return refused("the download URL's expiry is not a number");
    };
    // The URL was signed for one account's registry (and this Region): the account is the
    // one the Host addresses, so the same URL sent to another registry does not verify.
    // A download URL names its registry's host, Region included where it is not the
    // default one.
    let (registry, region) = registry_of(app, host);
    let region = region.unwrap_or_else(|| app.config.region.clone());
    let signed = token::SignedUrl {
        account: &registry,
        region: &region,
        path: parts.uri.path(),
        expires,
    };
    if !token::verify_url(&app.token_key, &signed, signature, now) {
        return refused(
            "the download URL's signature is not valid for this registry, or it has expired",
        );
    }
    let Ok(Endpoint::GetBlob { name, digest }) = Endpoint::route(&parts.method, parts.uri.path())
    else {
        return refused("a signed URL is only for downloading a blob");
    };
    let result = async {
        let size = app
            .registry
            .repository_blob(app.key(&registry, &region), &name, &digest)
            .await?
            .and_then(|s| u64::try_from(s).ok());
        let Some(size) = size else {
            return Err(OciError::new(
                404,
                "BLOB_UNKNOWN",
                "blob unknown to registry",
            ));
        };
        if !head {
            if let Some(r) = blobs::redirect(app, &digest).await? {
                return Ok(r);
            }
        }
        blobs::serve_blob(
            app,
            &digest,
            size,
            parts.headers.get("range").and_then(|v| v.to_str().ok()),
        )
        .await
    }
    .await;
    Some(result.unwrap_or_else(|e| error_response(&e, head, None)))
}

/// The caller a registry password proves, and the Region of the registry it is used
/// on: the host's (`host_region`), which the password must have been issued for, or,
/// where the host names none, the password's.
/// A registry refusal for a throttled request: `429 TOOMANYREQUESTS`, as distribution
/// answers (the caller adds `Retry-After`).
pub fn throttled(t: &crate::serve::throttle::Throttled, head: bool) -> Response<Body> {
    error_response(
        &OciError::new(429, "TOOMANYREQUESTS", t.message()),
        head,
        None,
    )
}

/// The metric label of an authentication failure (what [`authenticate`] refused).
fn failure_reason(e: &OciError) -> &'static str {
    let m = e.message.as_str();
    if m.contains("not an authorization token") {
        "bad_password"
    } else if m.contains("has expired") {
        "expired_token"
    } else if m.contains("was issued for region") {
        "wrong_region"
    } else if m.contains("Basic credentials") {
        "malformed"
    } else {
        e.code
    }
}

async fn authenticate(
    app: &App,
    headers: &HeaderMap,
    host_region: Option<String>,
    now: i64,
) -> Result<(Caller, String), OciError> {
    let unauthorized = |m: &str| OciError::new(401, "UNAUTHORIZED", m);
    let Some(h) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(unauthorized("authentication required: docker login with the password from aws ecr get-login-password"));
    };
    let Some(password) = password_of(h) else {
        return Err(unauthorized(
            "authentication required: Basic credentials with the user name AWS",
        ));
    };
    let envelope = match token::verify(&app.token_key, &password, now) {
        Ok(e) => e,
        Err(TokenError::Invalid) => {
            return Err(unauthorized(
                "the password is not an authorization token of this registry",
            ))
        }
        Err(TokenError::Expired) => {
            return Err(OciError::new(
                403,
                "DENIED",
                "Your authorization token has expired. Reauthenticate and try again.",
            ))
        }
    };
    // A registry password is good in the Region it was issued for only, as ECR's.
    let region = host_region.unwrap_or_else(|| envelope.region.clone());
    if envelope.region != region || !app.config.regions.contains(&region) {
        return Err(OciError::new(
            403,
            "DENIED",
            format!(
                "The authorization token was issued for region {}; this registry is in {region}",
                envelope.region
            ),
        ));
    }
    let Some(cred) = app
        .caches
        .credential(&*app.store, &envelope.access_key_id)
        .await?
    else {
        return Err(ApiError::invalid_token().into());
    };
    Ok((
        caller_for(app, &envelope.access_key_id, &cred, now).await?,
        region,
    ))
}

async fn run(c: &OciCall<'_>, endpoint: &Endpoint, body: Body) -> Result<Response<Body>, OciError> {
    let repo = match (endpoint.action(), endpoint.repository()) {
        (Some(action), Some(name)) => {
            authorize_ecr(
                c.app,
                c.caller,
                c.origin,
                EcrRequest {
                    action,
                    registry: &c.registry,
                    repository: Some(name),
                    context: Vec::new(),
                },
            )
            .await?
        }
        _ => None,
    };
    use Endpoint::*;
    match endpoint {
        Base => {
            let mut r = response(StatusCode::OK, Body::from("{}"));
            set(&mut r, "content-type", "application/json");
            Ok(r)
        }
        Catalog => manifests::catalog(c).await,
        TagsList { name } => manifests::tags_list(c, name, repo).await,
        GetManifest { name, reference } => manifests::get(c, name, reference, repo, false).await,
        HeadManifest { name, reference } => manifests::get(c, name, reference, repo, true).await,
        PutManifest { name, reference } => manifests::put(c, name, reference, repo, body).await,
        DeleteManifest { name, reference } => manifests::delete(c, name, reference, repo).await,
        Referrers { name, digest } => manifests::referrers(c, name, digest, repo).await,
        GetBlob { name, digest } => blobs::get(c, name, digest, repo, false).await,
        HeadBlob { name, digest } => blobs::get(c, name, digest, repo, true).await,
        DeleteBlob { name, .. } => {
            c.existing(name, &repo)?;
            Err(OciError::new(405, "UNSUPPORTED", "blobs cannot be deleted one by one in this registry (ECR has no such operation): delete the images that use them (DELETE /v2/<name>/manifests/<digest> or BatchDeleteImage), and the garbage collector deletes each blob no image references once the grace period (gc_grace_seconds) has passed"))
        }
        StartUpload { name } => blobs::start(c, name, repo, body).await,
        PatchUpload { name, id } => blobs::patch(c, name, id, repo, body).await,
        PutUpload { name, id } => blobs::finish(c, name, id, repo, body).await,
        GetUpload { name, id } => blobs::status(c, name, id, repo).await,
        DeleteUpload { name, id } => blobs::cancel(c, name, id, repo).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::app::testing;

    /// Every route with an action is decided by IAM before it runs: a user without
    /// policies is refused each one (403 DENIED naming the action), even where the
    /// repository does not exist.
    #[tokio::test]
    async fn every_route_is_authorized() {
        let app = testing::app().await;
        let nobody = testing::caller(&app, "AKIANOBODYNOBODYNOBO").await;
        let origin = testing::origin();
        // The catalog is filtered per repository: give it one to decide on.
        let root = testing::caller(&app, "AKIAROOTROOTROOTROOT").await;
        authorize_ecr(
            &app,
            &root,
            &origin,
            EcrRequest {
                action: "ecr:CreateRepository",
                registry: testing::ACCOUNT,
                repository: Some("other"),
                context: Vec::new(),
            },
        )
        .await
        .unwrap();
        app.registry
            .create_repository(
                &berth_store::Repository::new(
                    berth_store::RegistryKey::home(testing::ACCOUNT),
                    "other",
                    0,
                ),
                &[],
            )
            .await
            .unwrap();
        // The router's own list: every route, declared with its endpoint.
        let mut unauthorized = Vec::new();
        for route in Endpoint::ALL {
            let (method, path) = route.example();
            let endpoint = Endpoint::route(&method, &path).unwrap();
            assert_eq!(endpoint.name(), route.endpoint, "{method} {path}");
            let Some(action) = endpoint.action() else {
                unauthorized.push(route.endpoint);
                continue;
            };
            let call = OciCall {
                app: &app,
                caller: &nobody,
                origin: &origin,
                registry: testing::ACCOUNT.into(),
                headers: &HeaderMap::new(),
                query: Vec::new(),
            };
            let e = run(&call, &endpoint, Body::empty()).await.unwrap_err();
            assert_eq!(
                (e.status, e.code),
                (403, "DENIED"),
                "{method} {path}: {e:?}"
            );
            assert!(
                e.message
                    .contains(&format!("not authorized to perform: {action}")),
                "{method} {path}: {}",
                e.message
            );
        }
        // Only the base (`GET /v2/`, authentication only) goes without a decision.
        assert_eq!(unauthorized, ["Base"]);
        assert_eq!(Endpoint::ALL.len(), 16);
    }
}
