//! Anonymous pulls (`anonymous_pull = true`): a `/v2` pull that carries no credentials
//! is decided as IAM's anonymous principal — no identity policies, no keys about a
//! principal but `aws:PrincipalType` — against the repository's and the registry's
//! policies, by the same [`crate::registry::authorize_ecr`] as every other request. In
//! IAM, `"Principal": "*"` and `{"AWS": "*"}` both include anonymous callers, so exactly
//! the repositories whose policies allow `"*"` the endpoint's action (under conditions an
//! anonymous request meets: its `aws:SourceIp` is the client's address, while a condition
//! on `aws:PrincipalAccount` and the like is not met) can be pulled. Anything refused to
//! the anonymous caller — a private repository, a push, the catalog — answers 401 with
//! the challenge, never 403, so that clients then log in.
//!
//! # Why a token flow
//! Registry clients send credentials only after a challenge: docker, podman and skopeo
//! probe `GET /v2/` without them and keep the `WWW-Authenticate` schemes of its 401. Were
//! the probe answered 200 (as distribution does when it has no authentication at all),
//! no client would ever send its password again, and logged-in users could neither push
//! nor pull a private repository. Were it answered with ECR's `Basic` challenge, docker
//! without credentials gives up before sending anything ("no basic auth credentials").
//! So with `anonymous_pull` on, the challenge is distribution's `Bearer` token flow: the
//! client asks the realm, [`TOKEN_PATH`], for a token — with `AWS:` and its registry
//! password as Basic credentials when it has them (the token is then that password), or
//! without any, for the [`ANONYMOUS_TOKEN`] — and sends it as `Authorization: Bearer`.
//! Off, nothing changes: ECR's `Basic` challenge, and no token endpoint.

use super::router::Endpoint;
use crate::serve::App;

/// Where tokens are asked for: a path no registry route uses.
pub const TOKEN_PATH: &str = "/v2/token";

/// The token the token endpoint hands a client without credentials: it proves nothing,
/// and a request carrying it is anonymous, as one without an `Authorization` header.
pub const ANONYMOUS_TOKEN: &str = "anonymous";

/// How long the anonymous token is said to last (clients ask again after it).
pub const ANONYMOUS_TOKEN_SECONDS: i64 = 3600;

/// How a request presents itself as anonymous, if it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anonymous {
    /// No `Authorization` header at all.
    NoCredentials,
    /// `Authorization: Bearer anonymous`: a client that went through the token flow.
    Token,
}

/// Whether a request comes without credentials (only meaningful with `anonymous_pull`).
pub fn presented(headers: &axum::http::HeaderMap) -> Option<Anonymous> {
    match headers.get(axum::http::header::AUTHORIZATION) {
        None => Some(Anonymous::NoCredentials),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(crate::registry::token::bearer_token)
            .filter(|t| *t == ANONYMOUS_TOKEN)
            .map(|_| Anonymous::Token),
    }
}

/// Whether the anonymous caller may go on to the authorization of `endpoint`: the pulls
/// (manifests, blobs, tags, referrers: GET and HEAD), each then decided as its ECR
/// action; and the base `GET /v2/` for a client holding the anonymous token (without one
/// the base answers the challenge, which is how clients find the token flow). Pushes,
/// deletes, uploads and the catalog never.
pub fn serves(endpoint: &Endpoint, via: Anonymous) -> bool {
    use Endpoint::*;
    match endpoint {
        Base => via == Anonymous::Token,
        TagsList { .. }
        | GetManifest { .. }
        | HeadManifest { .. }
        | GetBlob { .. }
        | HeadBlob { .. }
        | Referrers { .. } => true,
        Catalog
        | PutManifest { .. }
        | DeleteManifest { .. }
        | DeleteBlob { .. }
        | StartUpload { .. }
        | PatchUpload { .. }
        | PutUpload { .. }
        | GetUpload { .. }
        | DeleteUpload { .. } => false,
    }
}

/// The `WWW-Authenticate` challenge of a 401 for a request sent to `host`: ECR's `Basic`
/// one, or with `anonymous_pull` the `Bearer` token flow whose realm is this host's
/// [`TOKEN_PATH`].
pub fn challenge(app: &App, host: Option<&str>) -> String {
    let host = host.unwrap_or("localhost");
    let scheme = app.registry_scheme();
    if app.config.anonymous_pull {
        format!("Bearer realm=\"{scheme}://{host}{TOKEN_PATH}\",service=\"ecr.amazonaws.com\"")
    } else {
        format!("Basic realm=\"{scheme}://{host}/\",service=\"ecr.amazonaws.com\"")
    }
}

/// The token endpoint's answer (distribution's token response): `token` and
/// `access_token` (clients read either), its lifetime and when it was issued.
pub fn token_body(token: &str, expires_in: i64, now: i64) -> String {
    serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": expires_in.max(1),
        "issued_at": crate::ids::iso8601(now),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Caller;
    use crate::registry::{authorize_ecr, EcrRequest};
    use crate::serve::app::testing;
    use axum::http::{HeaderMap, HeaderValue, Method};

    /// The anonymous caller through the one authorization point: allowed exactly where a
    /// repository policy allows `"*"` (or `{"AWS": "*"}`) the action under conditions it
    /// meets; its context has no principal keys (a condition on `aws:PrincipalAccount`
    /// fails, `Null` on it holds), and its source address is a real one.
    #[tokio::test]
    async fn anonymous_is_allowed_only_where_a_policy_allows_star() {
        let app = testing::app().await;
        let at = berth_store::RegistryKey::home(testing::ACCOUNT);
        let policies = [
            (
                "open",
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":["ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"]}]}"#,
            ),
            (
                "open-aws",
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"ecr:BatchGetImage"}]}"#,
            ),
            (
                "by-account",
                &format!(
                    r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":"*","Action":"ecr:BatchGetImage","Condition":{{"StringEquals":{{"aws:PrincipalAccount":"{}"}}}}}}]}}"#,
                    testing::ACCOUNT
                ),
            ),
            (
                "no-account",
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"ecr:BatchGetImage","Condition":{"Null":{"aws:PrincipalAccount":"true","aws:userid":"true"},"StringEquals":{"aws:PrincipalType":"Anonymous"}}}]}"#,
            ),
            (
                "loopback",
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"ecr:BatchGetImage","Condition":{"IpAddress":{"aws:SourceIp":"127.0.0.0/8"}}}]}"#,
            ),
            (
                "elsewhere",
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"ecr:BatchGetImage","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}]}"#,
            ),
            (
                "an-account",
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::222222222222:root"},"Action":"ecr:BatchGetImage"}]}"#,
            ),
            (
                "open-but-denied",
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"ecr:BatchGetImage"},{"Effect":"Deny","Principal":"*","Action":"ecr:BatchGetImage","Condition":{"Bool":{"aws:SecureTransport":"false"}}}]}"#,
            ),
        ];
        for (name, policy) in &policies {
            let mut repo = berth_store::Repository::new(at, name, 0);
            repo.policy = Some(policy.to_string());
            app.registry.create_repository(&repo, &[]).await.unwrap();
        }
        app.registry
            .create_repository(&berth_store::Repository::new(at, "private", 0), &[])
            .await
            .unwrap();
        let anonymous = Caller::anonymous();
        let origin = testing::origin();
        let decide = |action: &'static str, repository: &'static str| {
            let (app, anonymous, origin) = (&app, &anonymous, &origin);
            async move {
                authorize_ecr(
                    app,
                    anonymous,
                    origin,
                    EcrRequest {
                        action,
                        registry: testing::ACCOUNT,
                        repository: Some(repository),
                        context: Vec::new(),
                    },
                )
                .await
                .is_ok()
            }
        };
        for (repository, allowed) in [
            ("open", true),
            ("open-aws", true),
            ("by-account", false),
            ("no-account", true),
            ("loopback", true),
            ("elsewhere", false),
            ("an-account", false),
            ("open-but-denied", false),
            ("private", false),
            ("missing", false),
        ] {
            assert_eq!(
                decide("ecr:BatchGetImage", repository).await,
                allowed,
                "{repository}"
            );
        }
        assert!(decide("ecr:GetDownloadUrlForLayer", "open").await);
        assert!(!decide("ecr:PutImage", "open").await);
        assert!(!decide("ecr:GetDownloadUrlForLayer", "open-aws").await);
    }

    #[test]
    fn only_pulls_are_served_anonymously() {
        let mut served = Vec::new();
        for route in Endpoint::ALL {
            let (method, path) = route.example();
            let endpoint = Endpoint::route(&method, &path).unwrap();
            if serves(&endpoint, Anonymous::NoCredentials) {
                served.push(route.endpoint);
            }
            assert_eq!(
                serves(&endpoint, Anonymous::Token),
                serves(&endpoint, Anonymous::NoCredentials) || route.endpoint == "Base"
            );
        }
        assert_eq!(
            served,
            [
                "TagsList",
                "GetManifest",
                "HeadManifest",
                "GetBlob",
                "HeadBlob",
                "Referrers"
            ]
        );
        // Nor is the token path a route of its own.
        assert!(Endpoint::route(&Method::GET, TOKEN_PATH).is_err());
    }

    #[test]
    fn what_counts_as_anonymous() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("authorization", HeaderValue::from_str(v).unwrap());
            presented(&h)
        };
        assert_eq!(presented(&HeaderMap::new()), Some(Anonymous::NoCredentials));
        assert_eq!(with("Bearer anonymous"), Some(Anonymous::Token));
        assert_eq!(with("Bearer someone-elses-token"), None);
        assert_eq!(with("Basic QVdTOng="), None);
    }
}
