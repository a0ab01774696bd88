//! The client side of an upstream registry: the OCI distribution API with anonymous
//! access, `Basic` credentials, or the Docker token flow (`WWW-Authenticate: Bearer
//! realm=…,service=…,scope=…`: a token from the realm, signed in with the credentials
//! where there are some, kept per repository until it expires). An upstream's first
//! `401` says which; later requests authenticate at once.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use berth_oci::challenge;
use bytes::Bytes;
use futures_util::StreamExt;

/// The media types a manifest is asked for in (every one Berth stores).
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// The longest a manifest, a token or the API root may take to arrive whole.
const SMALL_ANSWER: Duration = Duration::from_secs(60);

/// The largest manifest read from an upstream (as from a client).
const MAX_MANIFEST: usize = crate::registry::push::MAX_MANIFEST;

/// Why an upstream request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamError {
    /// No answer (connection refused, timeout, TLS, a 5xx).
    Unavailable(String),
    /// The upstream refused Berth's credentials (or asks for some and there are none).
    Denied(String),
    /// The upstream has no such repository, manifest or blob.
    NotFound(String),
    /// The upstream throttles Berth (`429`).
    TooManyRequests(String),
    /// The upstream answered something that cannot be right (a digest that does not
    /// match, an oversized manifest, an answer that does not read).
    Invalid(String),
}

impl UpstreamError {
    pub fn message(&self) -> &str {
        match self {
            UpstreamError::Unavailable(m)
            | UpstreamError::Denied(m)
            | UpstreamError::NotFound(m)
            | UpstreamError::TooManyRequests(m)
            | UpstreamError::Invalid(m) => m,
        }
    }

    /// ECR's failure code for it (`ImageFailure.failureCode`).
    pub fn failure_code(&self) -> &'static str {
        match self {
            UpstreamError::Unavailable(_) | UpstreamError::Invalid(_) => "UpstreamUnavailable",
            UpstreamError::Denied(_) => "UpstreamAccessDenied",
            UpstreamError::NotFound(_) => "ImageNotFound",
            UpstreamError::TooManyRequests(_) => "UpstreamTooManyRequests",
        }
    }
}

/// Credentials for an upstream registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ..)", self.username)
    }
}

/// How an upstream wants requests authenticated, as its challenges said.
#[derive(Debug, Clone)]
enum Scheme {
    /// Not known yet, or none asked for.
    Unknown,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// One upstream registry (a base URL and the credentials for it).
pub struct Upstream {
    /// `scheme://host[:port]`, without a trailing `/`.
    pub base: String,
    credentials: Option<Credentials>,
    scheme: Mutex<Scheme>,
    /// Tokens by scope, with when they stop being used.
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

fn http() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        crate::outbound::builder(Duration::from_secs(60))
            // Redirects (to a blob's object store, say) are followed, but never from
            // HTTPS down to plain HTTP; reqwest drops credentials on a change of host.
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                let downgrade = attempt.url().scheme() == "http"
                    && attempt.previous().iter().any(|u| u.scheme() == "https");
                if downgrade {
                    attempt.error("a redirect from HTTPS to plain HTTP")
                } else if attempt.previous().len() >= 10 {
                    attempt.error("more than 10 redirects")
                } else {
                    attempt.follow()
                }
            }))
            .user_agent(concat!(
                "berth/",
                env!("CARGO_PKG_VERSION"),
                " (pull-through cache)"
            ))
            .build()
            .expect("an HTTP client")
    })
}

/// A manifest as the upstream sent it.
#[derive(Debug, Clone)]
pub struct UpstreamManifest {
    pub bytes: Bytes,
    pub media_type: String,
    pub digest: String,
}

/// A blob's body as it arrives, and its length when the upstream said it.
pub struct UpstreamBlob {
    pub size: Option<u64>,
    pub body: futures_util::stream::BoxStream<'static, Result<Bytes, UpstreamError>>,
}

impl Upstream {
    pub fn new(base: &str, credentials: Option<Credentials>) -> Upstream {
        Upstream {
            base: base.trim_end_matches('/').to_string(),
            credentials,
            scheme: Mutex::new(Scheme::Unknown),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    fn unavailable(&self, e: impl std::fmt::Display) -> UpstreamError {
        UpstreamError::Unavailable(format!(
            "the upstream registry {} could not be reached: {e}",
            self.base
        ))
    }

    /// A GET or HEAD of `path` (under `/v2/`) for the repository `repo`, authenticated as
    /// the upstream asks: one retry after a `401` that taught the scheme or asked for a
    /// new token.
    async fn send(
        &self,
        method: reqwest::Method,
        repo: &str,
        path: &str,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, UpstreamError> {
        // Everything but a blob is small: it has SMALL_ANSWER to arrive.
        let small = !path.contains("/blobs/");
        let url = format!("{}/v2/{path}", self.base);
        // The API root (`check`) names no repository: its token has no scope.
        let scope = match repo {
            "" => String::new(),
            r => format!("repository:{r}:pull"),
        };
        for attempt in 0..2 {
            let mut req = http().request(method.clone(), &url);
            if let Some(a) = accept {
                req = req.header("accept", a);
            }
            if small {
                req = req.timeout(SMALL_ANSWER);
            }
            let scheme = self
                .scheme
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            match &scheme {
                Scheme::Unknown => {}
                Scheme::Basic => {
                    if let Some(c) = &self.credentials {
                        req = req.basic_auth(&c.username, Some(&c.password));
                    }
                }
                Scheme::Bearer { realm, service } => {
                    let token = self.token(realm, service.as_deref(), &scope).await?;
                    req = req.bearer_auth(token);
                }
            }
            let resp = req.send().await.map_err(|e| self.unavailable(e))?;
            if resp.status() != reqwest::StatusCode::UNAUTHORIZED || attempt == 1 {
                return Ok(resp);
            }
            // Learn the scheme from the challenge, and try once more.
            let challenges: Vec<challenge::Challenge> = resp
                .headers()
                .get_all("www-authenticate")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(challenge::parse)
                .collect();
            let learned = if let Some(b) = challenges.iter().find(|c| c.scheme == "bearer") {
                let Some(realm) = b.param("realm") else {
                    return Err(UpstreamError::Denied(format!(
                        "the upstream registry {} asks for a bearer token but names no realm to get one from",
                        self.base
                    )));
                };
                Scheme::Bearer {
                    realm: realm.to_string(),
                    service: b.param("service").map(str::to_string),
                }
            } else if challenges.iter().any(|c| c.scheme == "basic") {
                if self.credentials.is_none() {
                    return Err(UpstreamError::Denied(format!(
                        "the upstream registry {} asks for credentials and the pull through cache rule has none (credentialArn)",
                        self.base
                    )));
                }
                Scheme::Basic
            } else {
                return Err(UpstreamError::Denied(format!(
                    "the upstream registry {} refused the request (401) without a challenge Berth can answer",
                    self.base
                )));
            };
            let was_bearer = matches!(scheme, Scheme::Bearer { .. });
            if matches!(scheme, Scheme::Basic) && matches!(learned, Scheme::Basic) {
                return Err(self.refused());
            }
            if was_bearer {
                // The token did not hold (revoked, another scope): get a new one.
                self.tokens
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&scope);
            }
            *self.scheme.lock().unwrap_or_else(|p| p.into_inner()) = learned;
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// Whether `url` is on the upstream's host (a token service often listens on another
    /// port of it).
    fn same_host(&self, url: &reqwest::Url) -> bool {
        reqwest::Url::parse(&self.base).is_ok_and(|b| b.host_str() == url.host_str())
    }

    fn refused(&self) -> UpstreamError {
        UpstreamError::Denied(format!(
            "the upstream registry {} refused the credentials of the pull through cache rule",
            self.base
        ))
    }

    /// A token for `scope` from the realm (cached until shortly before it expires).
    async fn token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<String, UpstreamError> {
        if let Some((t, until)) = self
            .tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(scope)
        {
            if Instant::now() < *until {
                return Ok(t.clone());
            }
        }
        let mut query: Vec<(&str, &str)> = Vec::new();
        if !scope.is_empty() {
            query.push(("scope", scope));
        }
        if let Some(s) = service {
            query.push(("service", s));
        }
        let mut url = reqwest::Url::parse(realm).map_err(|e| {
            UpstreamError::Invalid(format!(
                "the upstream registry {} names a token realm that is not a URL ({realm:?}): {e}",
                self.base
            ))
        })?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(&query);
        }
        // The credentials go to the realm only over HTTPS, or to the upstream's own host
        // (a realm over plain HTTP elsewhere gets an anonymous request).
        let trusted = url.scheme() == "https" || self.same_host(&url);
        let mut req = http().get(url).timeout(SMALL_ANSWER);
        if let (Some(c), true) = (&self.credentials, trusted) {
            req = req.basic_auth(&c.username, Some(&c.password));
        }
        let resp = req.send().await.map_err(|e| {
            UpstreamError::Unavailable(format!(
                "the token service {realm} of the upstream registry {} could not be reached: {e}",
                self.base
            ))
        })?;
        let status = resp.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(UpstreamError::Denied(format!(
                "the token service {realm} of the upstream registry {} refused the credentials of the pull through cache rule ({status})",
                self.base
            )));
        }
        if !status.is_success() {
            return Err(UpstreamError::Unavailable(format!(
                "the token service {realm} of the upstream registry {} answered {status}",
                self.base
            )));
        }
        let body = read_limited(resp, 64 << 10)
            .await
            .map_err(|e| self.unavailable(e))?;
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
            UpstreamError::Invalid(format!(
                "the token service {realm} answered something that is not JSON: {e}"
            ))
        })?;
        let token = v
            .get("token")
            .or_else(|| v.get("access_token"))
            .and_then(serde_json::Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                UpstreamError::Invalid(format!("the token service {realm} answered no token"))
            })?
            .to_string();
        // The distribution token spec: 60 seconds unless it says otherwise. Renewed 10%
        // early.
        let lifetime = v
            .get("expires_in")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(60)
            .clamp(10, 24 * 3600);
        let until = Instant::now() + Duration::from_secs(lifetime * 9 / 10);
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if tokens.len() > 1000 {
            tokens.clear();
        }
        tokens.insert(scope.to_string(), (token.clone(), until));
        Ok(token)
    }

    /// What a non-success status means.
    fn status_error(&self, status: reqwest::StatusCode, what: &str) -> UpstreamError {
        match status.as_u16() {
            401 | 403 => UpstreamError::Denied(format!(
                "the upstream registry {} refused to serve {what} ({status})",
                self.base
            )),
            404 => UpstreamError::NotFound(format!(
                "the upstream registry {} has no {what}",
                self.base
            )),
            429 => UpstreamError::TooManyRequests(format!(
                "the upstream registry {} throttles requests for {what} (429 Too Many Requests)",
                self.base
            )),
            _ => UpstreamError::Unavailable(format!(
                "the upstream registry {} answered {status} for {what}",
                self.base
            )),
        }
    }

    /// Sign in (`GET /v2/`, then a token for `repo` if the upstream uses them): whether
    /// Berth may pull from it with these credentials.
    pub async fn check(&self, repo: &str) -> Result<(), UpstreamError> {
        let resp = self.send(reqwest::Method::GET, repo, "", None).await?;
        match resp.status() {
            s if s.is_success() => Ok(()),
            s => Err(self.status_error(s, "its API root /v2/")),
        }
    }

    /// The manifest `reference` (a tag or a digest) of `repo`, checked against its
    /// digest.
    pub async fn manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<UpstreamManifest, UpstreamError> {
        let what = format!("manifest {repo}:{reference}");
        let resp = self
            .send(
                reqwest::Method::GET,
                repo,
                &format!("{repo}/manifests/{reference}"),
                Some(ACCEPT),
            )
            .await?;
        if !resp.status().is_success() {
            return Err(self.status_error(resp.status(), &what));
        }
        let media_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_string())
            .unwrap_or_default();
        let bytes = read_limited(resp, MAX_MANIFEST)
            .await
            .map_err(|e| match e {
                ReadError::TooLarge => UpstreamError::Invalid(format!(
                    "the upstream registry {} sent {what} larger than {MAX_MANIFEST} bytes",
                    self.base
                )),
                ReadError::Failed(e) => self.unavailable(e),
            })?;
        let digest = crate::registry::push::digest_of(&bytes);
        if reference.starts_with("sha256:") && reference != digest {
            return Err(UpstreamError::Invalid(format!(
                "the upstream registry {} sent {what} whose content hashes to {digest}",
                self.base
            )));
        }
        Ok(UpstreamManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// The digest `tag` of `repo` names now (a HEAD; a GET where the upstream does not
    /// say it in `Docker-Content-Digest`).
    pub async fn tag_digest(&self, repo: &str, tag: &str) -> Result<String, UpstreamError> {
        let resp = self
            .send(
                reqwest::Method::HEAD,
                repo,
                &format!("{repo}/manifests/{tag}"),
                Some(ACCEPT),
            )
            .await?;
        if !resp.status().is_success() {
            return Err(self.status_error(resp.status(), &format!("manifest {repo}:{tag}")));
        }
        match resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .filter(|d| berth_oci::names::valid_digest(d))
        {
            Some(d) => Ok(d.to_string()),
            None => Ok(self.manifest(repo, tag).await?.digest),
        }
    }

    /// The blob `digest` of `repo`, as it arrives (redirects followed).
    pub async fn blob(&self, repo: &str, digest: &str) -> Result<UpstreamBlob, UpstreamError> {
        let resp = self
            .send(
                reqwest::Method::GET,
                repo,
                &format!("{repo}/blobs/{digest}"),
                None,
            )
            .await?;
        if !resp.status().is_success() {
            return Err(self.status_error(resp.status(), &format!("blob {digest} of {repo}")));
        }
        let size = resp.content_length();
        let base = self.base.clone();
        let body = resp
            .bytes_stream()
            .map(move |r| {
                r.map_err(|e| {
                    UpstreamError::Unavailable(format!(
                        "the upstream registry {base} stopped sending a blob: {e}"
                    ))
                })
            })
            .boxed();
        Ok(UpstreamBlob { size, body })
    }
}

enum ReadError {
    TooLarge,
    Failed(reqwest::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::TooLarge => f.write_str("the answer is too large"),
            ReadError::Failed(e) => write!(f, "{e}"),
        }
    }
}

/// A response body of at most `limit` bytes.
async fn read_limited(resp: reqwest::Response, limit: usize) -> Result<Bytes, ReadError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ReadError::TooLarge);
    }
    let mut out = Vec::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(ReadError::Failed)?;
        if out.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(out))
}
