//! The pull-through cache (ECR's pull-through cache rules): a pull of
//! `<prefix>/<repository>:<tag or digest>` that the registry does not hold, where a rule
//! covers `<prefix>`, fetches the image from the rule's upstream registry, answers the
//! client from what arrives, and stores it in a repository created from the registry's
//! `PULL_THROUGH_CACHE` creation template; later pulls are served from the store.
//!
//! - Authorization as ECR's: besides the pull actions, whatever fetches from the upstream
//!   needs `ecr:BatchImportUpstreamImage` on the repository (and `ecr:CreateRepository`
//!   while it does not exist); it is decided before any upstream request.
//! - A manifest is fetched once however many ask at once (the first asks, the others
//!   wait for its answer), with the child manifests of an index; the client gets it at
//!   once, and a task of its own ([`import`]) fetches the blobs the repository lacks and
//!   then stores the child manifests and the manifest under its tag.
//! - A blob is fetched once however many ask ([`fetch`]): every client reads it while it
//!   arrives, and it is stored as it passes.
//! - A tag is checked against the upstream at most once per `pull_through_recheck_seconds`
//!   (by a caller allowed to import): moved, the new image is fetched; the upstream
//!   unreachable, the cached image is served and the log says so.

pub mod fetch;
pub mod rule;
pub mod upstream;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use axum::body::Body;
use axum::http::{Response, StatusCode};
use berth_oci::names::{valid_digest, valid_tag};
use berth_oci::Reference;
use berth_store::{RegistryError, RegistryKey, Repository, UpstreamCredential};
use futures_util::{StreamExt, TryStreamExt};
use tokio::sync::OnceCell;

use crate::oci::{response, set, OciCall, OciError};
use crate::registry::push::{store_manifest, ManifestPut, PushError};
use crate::serve::App;
pub use fetch::BlobKey;
pub use rule::CacheRule;
use upstream::{Credentials, Upstream, UpstreamError, UpstreamManifest};

/// How deep indexes may nest.
const MAX_DEPTH: usize = 4;
/// Most child manifests of one image.
const MAX_CHILDREN: usize = 256;
/// Blobs of one image fetched at once by its import.
const IMPORT_PARALLEL: usize = 4;
/// How long an upstream client (with its credentials and tokens) is kept.
const UPSTREAM_TTL: std::time::Duration = std::time::Duration::from_secs(60);
/// After a re-check that could not reach the upstream, the next is tried after this.
const RECHECK_RETRY: std::time::Duration = std::time::Duration::from_secs(60);

/// A manifest fetch's key: the registry (stored form), repository and reference.
type ManifestKey = (String, String, String);
type FetchCell = Arc<OnceCell<Result<Arc<Fetched>, OciError>>>;
/// A registry's rules, and when they were read.
type RulesRead = (Instant, Arc<Vec<CacheRule>>);
/// An upstream client, when it was made, and the rule's `updated_at` it was made for.
type UpstreamMade = (Instant, i64, Arc<Upstream>);

/// An image as fetched from the upstream: its manifest and, for an index, every child
/// manifest (nested ones too).
pub struct Fetched {
    pub top: UpstreamManifest,
    pub children: Vec<UpstreamManifest>,
}

impl Fetched {
    fn find(&self, reference: &str) -> &UpstreamManifest {
        self.children
            .iter()
            .find(|m| m.digest == reference)
            .unwrap_or(&self.top)
    }
}

/// The pull-through cache's state on this node.
#[derive(Default)]
pub struct PullThrough {
    spool_dir: OnceLock<PathBuf>,
    pub(crate) fetches: Mutex<HashMap<BlobKey, fetch::Entry>>,
    manifests: Mutex<HashMap<ManifestKey, FetchCell>>,
    /// When a tag was last checked against the upstream (or may next be, after a failure).
    checked: Mutex<HashMap<ManifestKey, Instant>>,
    /// When a caller was last found not allowed to have a tag checked.
    recheck_denied: Mutex<HashMap<(ManifestKey, String), Instant>>,
    rules: Mutex<HashMap<String, RulesRead>>,
    upstreams: Mutex<HashMap<(String, String), UpstreamMade>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn count(kind: &'static str, ok: bool) {
    crate::metrics::metrics()
        .pull_through_fetches
        .get_or_create(&crate::metrics::FetchLabels {
            kind,
            result: if ok { "ok" } else { "failed" },
        })
        .inc();
}

impl PullThrough {
    /// Use `dir` for spool files (made private; files left by an earlier run removed).
    pub fn set_spool_dir(&self, dir: PathBuf) -> std::io::Result<()> {
        if dir.exists() {
            for e in std::fs::read_dir(&dir)?.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        std::fs::create_dir_all(&dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let _ = self.spool_dir.set(dir);
        Ok(())
    }

    /// Where spool files go when the blob store is not on local disk (see
    /// [`berth_blobs::Spool`]).
    pub(crate) fn spool_dir(&self) -> PathBuf {
        self.spool_dir
            .get_or_init(|| {
                let d = std::env::temp_dir().join(format!("berth-spool-{}", std::process::id()));
                let _ = std::fs::create_dir_all(&d);
                d
            })
            .clone()
    }

    /// Forget the rules read (after a change through this node).
    pub fn invalidate_rules(&self) {
        lock(&self.rules).clear();
    }
}

/// The registry's rules (read at most every `cache_ttl`).
pub async fn rules(app: &App, key: RegistryKey<'_>) -> Result<Arc<Vec<CacheRule>>, RegistryError> {
    let stored = key.stored_account().into_owned();
    if let Some((at, r)) = lock(&app.pull_through.rules).get(&stored) {
        if at.elapsed() < app.config.cache_ttl {
            return Ok(r.clone());
        }
    }
    let mut out = Vec::new();
    for text in app.registry.pull_through_rules(key).await? {
        match CacheRule::from_stored(&text) {
            Ok(r) => out.push(r),
            Err(e) => tracing::warn!(error = %e, "a stored pull through cache rule does not read"),
        }
    }
    let out = Arc::new(out);
    let mut cached = lock(&app.pull_through.rules);
    if cached.len() > 10_000 {
        cached.clear();
    }
    cached.insert(stored, (Instant::now(), out.clone()));
    Ok(out)
}

/// The stored credential a `credentialArn` names in the registry, with its secret: by
/// its full ARN, or the ARN without Secrets Manager's six-character suffix.
pub async fn credential(
    app: &App,
    key: RegistryKey<'_>,
    arn: &str,
) -> Result<Option<(UpstreamCredential, rule::CredentialSecret)>, RegistryError> {
    let Some((_, region, account, name)) = rule::secret_of(arn) else {
        return Ok(None);
    };
    let home = key.region.unwrap_or(&app.home_region);
    if account != key.account || region != home {
        return Ok(None);
    }
    let mut names = vec![name];
    if let Some((base, suffix)) = name.rsplit_once('-') {
        if suffix.len() == 6 && suffix.bytes().all(|b| b.is_ascii_alphanumeric()) {
            names.push(base);
        }
    }
    for n in names {
        if let Some((c, secret)) = app.registry.upstream_credential_secret(key, n).await? {
            let without_suffix = c.arn.rsplit_once('-').map(|(b, _)| b);
            if c.arn == arn || without_suffix == Some(arn) {
                let Some(secret) = rule::CredentialSecret::from_stored(&secret) else {
                    return Err(RegistryError::Backend(format!(
                        "the stored credential {} does not read (store it again with berth upstream-credential put)",
                        c.arn
                    )));
                };
                return Ok(Some((c, secret)));
            }
        }
    }
    Ok(None)
}

/// The client of a rule's upstream, signed in with its credential.
pub async fn upstream_for(
    app: &App,
    key: RegistryKey<'_>,
    rule: &CacheRule,
) -> Result<Arc<Upstream>, UpstreamError> {
    let id = (
        key.stored_account().into_owned(),
        rule.prefix.as_str().to_string(),
    );
    // A rule made before the operator narrowed `pull_through_upstreams` reaches nothing
    // the list leaves out.
    let host = rule::host_of(&rule.upstream_url).unwrap_or_default();
    if !app.config.upstream_allowed(&host) {
        return Err(UpstreamError::Denied(format!(
            "the upstream registry {host} of the pull through cache rule '{}' is not among the upstream registries this server may reach (pull_through_upstreams)",
            rule.prefix.as_str()
        )));
    }
    if let Some((at, updated, u)) = lock(&app.pull_through.upstreams).get(&id) {
        if *updated == rule.updated_at && at.elapsed() < UPSTREAM_TTL {
            return Ok(u.clone());
        }
    }
    let credentials = match &rule.credential_arn {
        None => None,
        Some(arn) => match credential(app, key, arn).await {
            Ok(Some((c, secret))) => {
                if secret.upstream != host {
                    return Err(UpstreamError::Denied(format!(
                        "the credential {arn} is for the upstream registry {}, not {host}: it is not sent there",
                        secret.upstream
                    )));
                }
                Some(Credentials {
                    username: c.username,
                    password: secret.password,
                })
            }
            Ok(None) => {
                return Err(UpstreamError::Denied(format!(
                    "the credential {arn} of the pull through cache rule '{}' is not stored (berth upstream-credential put)",
                    rule.prefix.as_str()
                )))
            }
            Err(e) => {
                return Err(UpstreamError::Unavailable(format!(
                    "reading the credential of the pull through cache rule: {e}"
                )))
            }
        },
    };
    let u = Arc::new(Upstream::new(
        &rule.base(&app.config.pull_through_insecure),
        credentials,
    ));
    let mut all = lock(&app.pull_through.upstreams);
    if all.len() > 1000 {
        all.clear();
    }
    all.insert(id, (Instant::now(), rule.updated_at, u.clone()));
    Ok(u)
}

/// An upstream failure as the client is told it (`what`: the image or blob asked for).
fn refusal(e: &UpstreamError, rule: &CacheRule, what: &str, blob: bool) -> OciError {
    let said = format!(
        "pull through cache rule '{}': {} ({what} is not cached)",
        rule.prefix.as_str(),
        e.message()
    );
    let e2 = match e {
        UpstreamError::NotFound(_) if blob => OciError::new(404, "BLOB_UNKNOWN", said),
        UpstreamError::NotFound(_) => OciError::new(404, "MANIFEST_UNKNOWN", said),
        UpstreamError::TooManyRequests(_) => OciError::new(429, "TOOMANYREQUESTS", said),
        _ => OciError::new(502, "UNAVAILABLE", said),
    };
    // BatchGetImage reports the image's failure with ECR's code.
    e2.with_detail(serde_json::json!({"failureCode": e.failure_code()}))
}

/// Whether a pull-through cache rule of the registry covers the repository `name`.
pub async fn covers(app: &App, key: RegistryKey<'_>, name: &str) -> Result<bool, RegistryError> {
    Ok(rule::rule_for(&rules(app, key).await?, name).is_some())
}

/// The rule that covers `name` in the call's registry, and the upstream repository.
async fn covering(c: &OciCall<'_>, name: &str) -> Result<Option<(CacheRule, String)>, OciError> {
    let rules = rules(c.app, c.key()).await?;
    Ok(rule::rule_for(&rules, name).map(|(r, u)| (r.clone(), u)))
}

/// Whether the caller may fetch into `name` from the upstream: ecr:BatchImportUpstreamImage,
/// and ecr:CreateRepository while the repository does not exist.
async fn may_import(c: &OciCall<'_>, name: &str, exists: bool) -> Result<(), OciError> {
    c.also_authorize("ecr:BatchImportUpstreamImage", name)
        .await?;
    if !exists {
        c.also_authorize("ecr:CreateRepository", name).await?;
    }
    Ok(())
}

/// The account's storage quota must leave room before anything is fetched into it.
async fn within_quota(app: &App, repo: &Repository) -> Result<(), OciError> {
    crate::registry::uploads::within_quota(app, repo)
        .await
        .map_err(|e| match e {
            crate::registry::uploads::UploadError::Limit(_, m) => OciError::new(403, "DENIED", m),
            crate::registry::uploads::UploadError::Store(e) => e.into(),
            other => OciError::new(500, "UNKNOWN", format!("{other:?}")),
        })
}

fn recheck_due(app: &App, key: &ManifestKey) -> bool {
    let every = app.config.pull_through_recheck;
    lock(&app.pull_through.checked)
        .get(key)
        .is_none_or(|at| at.elapsed() >= every)
}

/// Whether this request is the one to check the tag now: due on this node (no other
/// request here claimed it within the interval), and the store — shared by every node —
/// records no check within the interval (this claim records one). A store that cannot
/// answer leaves the check for later: the cache is served.
async fn claim_recheck(app: &App, registry: RegistryKey<'_>, key: &ManifestKey) -> bool {
    let every = app.config.pull_through_recheck;
    {
        let mut checked = lock(&app.pull_through.checked);
        if checked.get(key).is_some_and(|at| at.elapsed() < every) {
            return false;
        }
        // Claimed here while the store is asked: other requests of this node are served
        // the cache meanwhile.
        checked.insert(key.clone(), Instant::now());
    }
    let now = crate::ids::now_ms();
    let stale_at = now.saturating_sub(i64::try_from(every.as_millis()).unwrap_or(i64::MAX));
    match app
        .registry
        .claim_upstream_check(registry, &key.1, &key.2, now, stale_at)
        .await
    {
        Ok(None) => true,
        Ok(Some(at)) => {
            // Another node checked it then: this node counts the interval from there.
            let ago = std::time::Duration::from_millis(u64::try_from(now - at).unwrap_or(0));
            let since = Instant::now().checked_sub(ago).unwrap_or_else(Instant::now);
            lock(&app.pull_through.checked).insert(key.clone(), since);
            false
        }
        Err(e) => {
            tracing::warn!(repository = key.1, tag = key.2, error = %e,
                "pull through cache: could not claim the check of a tag against its upstream; serving the cached image");
            remember_checked(app, key.clone(), true);
            false
        }
    }
}

/// Record on this node, and in the store for every node, that the tag was checked now
/// (`retry_early`: the check failed; it is due again after RECHECK_RETRY, or after the
/// interval if that is shorter).
async fn mark_checked(app: &App, registry: RegistryKey<'_>, key: ManifestKey, retry_early: bool) {
    let set_back = remember_checked(app, key.clone(), retry_early);
    let at = crate::ids::now_ms()
        .saturating_sub(i64::try_from(set_back.as_millis()).unwrap_or(i64::MAX));
    if let Err(e) = app
        .registry
        .set_upstream_check(registry, &key.1, &key.2, at)
        .await
    {
        tracing::warn!(repository = key.1, tag = key.2, error = %e,
            "pull through cache: could not record the check of a tag against its upstream");
    }
}

/// [`mark_checked`] on this node only; how far the check's time was set back.
fn remember_checked(app: &App, key: ManifestKey, retry_early: bool) -> std::time::Duration {
    let every = app.config.pull_through_recheck;
    let set_back = match retry_early {
        true if every > RECHECK_RETRY => every - RECHECK_RETRY,
        _ => std::time::Duration::ZERO,
    };
    let at = Instant::now()
        .checked_sub(set_back)
        .unwrap_or_else(Instant::now);
    let mut checked = lock(&app.pull_through.checked);
    if checked.len() > 100_000 {
        checked.clear();
    }
    checked.insert(key, at);
    set_back
}

/// `GET`/`HEAD /v2/<name>/manifests/<reference>` where a rule covers `name`: the answer
/// when the cache gives it (fetched from the upstream), `None` to serve from the store.
pub async fn manifest(
    c: &OciCall<'_>,
    name: &str,
    reference: &str,
    repo: &Option<Repository>,
    head: bool,
) -> Result<Option<Response<Body>>, OciError> {
    let by_digest = valid_digest(reference);
    if !by_digest && !valid_tag(reference) {
        return Ok(None);
    }
    let Some((rule, up_repo)) = covering(c, name).await? else {
        return Ok(None);
    };
    let key: ManifestKey = (
        c.key().stored_account().into_owned(),
        name.to_string(),
        reference.to_string(),
    );
    let local = match repo {
        Some(r) => {
            c.app
                .registry
                .image(r.registry(), &r.name, reference)
                .await?
        }
        None => None,
    };
    if let Some(img) = &local {
        if by_digest || !recheck_due(c.app, &key) {
            return Ok(None);
        }
        // An immutable tag keeps its image: nothing to check.
        let immutable = repo.as_ref().is_some_and(|r| {
            crate::registry::push::tag_rule(r, reference) == berth_store::TagRule::Immutable
        });
        if immutable {
            remember_checked(c.app, key, false);
            return Ok(None);
        }
        // Only a caller who may import has the tag checked; another is served the cache
        // (and not asked again for RECHECK_RETRY: one denial in the audit log a minute).
        let asked = (key.clone(), c.caller.arn().to_string());
        let denied_lately = lock(&c.app.pull_through.recheck_denied)
            .get(&asked)
            .is_some_and(|at| at.elapsed() < RECHECK_RETRY);
        if denied_lately {
            return Ok(None);
        }
        if may_import(c, name, true).await.is_err() {
            let mut denied = lock(&c.app.pull_through.recheck_denied);
            if denied.len() > 100_000 {
                denied.clear();
            }
            denied.insert(asked, Instant::now());
            return Ok(None);
        }
        // One request checks; others meanwhile are served the cache.
        if !claim_recheck(c.app, c.key(), &key).await {
            return Ok(None);
        }
        let checked = match upstream_for(c.app, c.key(), &rule).await {
            Ok(u) => u.tag_digest(&up_repo, reference).await,
            Err(e) => Err(e),
        };
        match checked {
            Ok(d) if d == img.digest => {
                mark_checked(c.app, c.key(), key, false).await;
                return Ok(None);
            }
            Ok(d) => {
                tracing::info!(repository = name, tag = reference, cached = %img.digest, upstream = %d,
                    "pull through cache: the tag moved upstream; fetching the new image");
                mark_checked(c.app, c.key(), key.clone(), false).await;
                // An earlier fetch of the tag, remembered after its import, is stale now.
                lock(&c.app.pull_through.manifests).remove(&key);
            }
            Err(e) => {
                tracing::warn!(repository = name, tag = reference, upstream = %rule.base(&c.app.config.pull_through_insecure), error = %e.message(),
                    "pull through cache: the upstream registry could not be checked; serving the cached image");
                mark_checked(c.app, c.key(), key, true).await;
                return Ok(None);
            }
        }
    } else if let Err(e) = may_import(c, name, repo.is_some()).await {
        // A HEAD is how pushers ask whether something is there: for a caller who may not
        // import, the registry answers from what it holds (a 404).
        if head {
            return Ok(None);
        }
        return Err(e);
    }
    if let Some(r) = repo {
        within_quota(c.app, r).await?;
    }
    let ask = ImageAsk {
        rule: &rule,
        up_repo: &up_repo,
        name,
        reference,
        repo: repo.clone(),
        key,
    };
    let fetched = match fetch_image(c, ask).await {
        Ok(f) => f,
        Err(_) if head => return Ok(None),
        Err(e) if local.is_some() => {
            tracing::warn!(repository = name, tag = reference, error = %e.message,
                "pull through cache: the new image could not be fetched; serving the cached one");
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let m = fetched.find(reference);
    // By tag, a client that accepts none of the image's type is told it is not found in
    // a form it takes, as for a stored image (manifests are never converted).
    if !by_digest {
        if let Some(types) = crate::oci::accepted_types(c) {
            let t = m.media_type.to_ascii_lowercase();
            if !types.contains(&t) && !types.iter().any(|x| x == "application/json") {
                return Err(OciError::new(404, "MANIFEST_UNKNOWN", format!(
                    "Requested image not found in an accepted media type: it is {} (manifests are never converted)",
                    m.media_type
                )));
            }
        }
    }
    let mut r = if head {
        response(StatusCode::OK, Body::empty())
    } else {
        response(StatusCode::OK, Body::from(m.bytes.clone()))
    };
    set(&mut r, "content-type", &m.media_type);
    set(&mut r, "docker-content-digest", &m.digest);
    set(&mut r, "etag", &format!("\"{}\"", m.digest));
    set(&mut r, "content-length", &m.bytes.len().to_string());
    Ok(Some(r))
}

/// An image to fetch: under which rule, from which upstream repository, into which local
/// repository (and its record, if it exists), by which reference; and its key among the
/// fetches.
struct ImageAsk<'a> {
    rule: &'a CacheRule,
    up_repo: &'a str,
    name: &'a str,
    reference: &'a str,
    repo: Option<Repository>,
    key: ManifestKey,
}

/// Fetch an image once, however many ask: the first caller fetches it (with its child
/// manifests), creates the repository if need be and starts its import; the others wait
/// for that and share it.
async fn fetch_image(c: &OciCall<'_>, ask: ImageAsk<'_>) -> Result<Arc<Fetched>, OciError> {
    let key = ask.key.clone();
    let cell: FetchCell = lock(&c.app.pull_through.manifests)
        .entry(key.clone())
        .or_default()
        .clone();
    let result = cell.get_or_init(|| first_fetch(c, ask)).await.clone();
    if result.is_err() {
        // Asked again, it is fetched again.
        let mut all = lock(&c.app.pull_through.manifests);
        if all.get(&key).is_some_and(|x| Arc::ptr_eq(x, &cell)) {
            all.remove(&key);
        }
    }
    result
}

async fn first_fetch(c: &OciCall<'_>, ask: ImageAsk<'_>) -> Result<Arc<Fetched>, OciError> {
    let ImageAsk {
        rule,
        up_repo,
        name,
        reference,
        repo,
        key,
    } = ask;
    let what = format!("{name}:{reference}");
    let upstream = upstream_for(c.app, c.key(), rule)
        .await
        .map_err(|e| refusal(&e, rule, &what, false))?;
    let fetched = fetch_manifests(&upstream, up_repo, reference).await;
    count("manifest", fetched.is_ok());
    let fetched = Arc::new(fetched.map_err(|e| refusal(&e, rule, &what, false))?);
    let repo = match repo {
        Some(r) => r,
        None => create_repository(c.app, c.key(), name).await?,
    };
    let Some(app) = c.app.me.upgrade() else {
        return Err(OciError::new(500, "UNKNOWN", "the server is shutting down"));
    };
    // The same image under its digests, for clients that ask by digest next.
    // The cells this fetch owns (its own is the one under `key`: found by pointer at the
    // end of the import, whoever holds it then).
    let mut keys: Vec<(ManifestKey, Option<FetchCell>)> = vec![(key.clone(), None)];
    {
        let mut all = lock(&c.app.pull_through.manifests);
        for m in std::iter::once(&fetched.top).chain(fetched.children.iter()) {
            let k = (key.0.clone(), key.1.clone(), m.digest.clone());
            if k != key && !all.contains_key(&k) {
                let cell: FetchCell = Arc::new(OnceCell::new_with(Some(Ok(fetched.clone()))));
                all.insert(k.clone(), cell.clone());
                keys.push((k, Some(cell)));
            }
        }
        if let Some(own) = all.get(&key) {
            keys[0].1 = Some(own.clone());
        }
    }
    let tag = (!valid_digest(reference)).then(|| reference.to_string());
    if tag.is_some() {
        // Just fetched: as good as checked.
        mark_checked(c.app, c.key(), key.clone(), false).await;
    }
    tokio::spawn(import(
        app,
        repo,
        upstream,
        up_repo.to_string(),
        fetched.clone(),
        tag,
        keys,
    ));
    Ok(fetched)
}

/// The manifest `reference` and, for an index, its children (nested to [`MAX_DEPTH`]).
async fn fetch_manifests(
    upstream: &Upstream,
    up_repo: &str,
    reference: &str,
) -> Result<Fetched, UpstreamError> {
    let top = typed(upstream.manifest(up_repo, reference).await?)?;
    let mut children = Vec::new();
    let mut level = vec![top.clone()];
    for _ in 0..MAX_DEPTH {
        let mut next = Vec::new();
        for m in &level {
            for d in manifest_refs(m, Reference::Manifest)? {
                if children.len() >= MAX_CHILDREN {
                    return Err(UpstreamError::Invalid(format!(
                        "the image {up_repo}:{reference} lists more than {MAX_CHILDREN} manifests"
                    )));
                }
                if children.iter().any(|c: &UpstreamManifest| c.digest == d) {
                    continue;
                }
                let child = typed(upstream.manifest(up_repo, &d).await?)?;
                children.push(child.clone());
                next.push(child);
            }
        }
        if next.is_empty() {
            return Ok(Fetched { top, children });
        }
        level = next;
    }
    Err(UpstreamError::Invalid(format!(
        "the image {up_repo}:{reference} nests indexes deeper than {MAX_DEPTH}"
    )))
}

/// A fetched manifest with the media type it is (as it will be stored and served), not
/// whatever `Content-Type` the upstream said.
fn typed(mut m: UpstreamManifest) -> Result<UpstreamManifest, UpstreamError> {
    let parsed = berth_oci::parse_manifest(&m.bytes, content_type(&m)).map_err(|e| {
        UpstreamError::Invalid(format!(
            "the upstream's manifest {} does not read: {}",
            m.digest, e.0
        ))
    })?;
    m.media_type = parsed.media_type;
    Ok(m)
}

/// The content type a manifest is stored with: the upstream's where it is a manifest type
/// (else the manifest's own `mediaType` decides).
fn content_type(m: &UpstreamManifest) -> Option<&str> {
    use berth_oci::manifest::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
    [DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST]
        .contains(&m.media_type.as_str())
        .then_some(m.media_type.as_str())
}

/// The digests of what a manifest references, of one kind.
fn manifest_refs(m: &UpstreamManifest, kind: Reference) -> Result<Vec<String>, UpstreamError> {
    let parsed = berth_oci::parse_manifest(&m.bytes, content_type(m)).map_err(|e| {
        UpstreamError::Invalid(format!(
            "the upstream's manifest {} does not read: {}",
            m.digest, e.0
        ))
    })?;
    Ok(parsed
        .refs
        .into_iter()
        .filter(|(_, k)| *k == kind)
        .map(|(d, _)| d)
        .collect())
}

/// Create the repository a pull caches into, from the registry's `PULL_THROUGH_CACHE`
/// creation template (the caller was allowed `ecr:CreateRepository`).
async fn create_repository(
    app: &App,
    key: RegistryKey<'_>,
    name: &str,
) -> Result<Repository, OciError> {
    let (repo, tags, _) = crate::registry::replication::templated_repository(
        app,
        key,
        name,
        crate::registry::replication::AppliedFor::PullThroughCache,
        crate::ids::now_ms(),
    )
    .await?;
    let created = app.registry.create_repository(&repo, &tags).await;
    app.caches.invalidate_registry();
    match created {
        Ok(()) => {
            tracing::info!(
                repository = name,
                "pull through cache: created the repository"
            );
            Ok(repo)
        }
        Err(RegistryError::RepositoryAlreadyExists { .. }) => {
            Ok(app.registry.repository(key, name).await?.unwrap_or(repo))
        }
        Err(e) => Err(e.into()),
    }
}

/// Store a fetched image: the blobs the repository lacks (fetched [`IMPORT_PARALLEL`] at
/// a time, shared with clients reading them), then the child manifests, then the
/// manifest under its tag. Then the fetch is forgotten: later pulls find the image
/// stored (or, had this failed, fetch it again).
async fn import(
    app: Arc<App>,
    repo: Repository,
    upstream: Arc<Upstream>,
    up_repo: String,
    fetched: Arc<Fetched>,
    tag: Option<String>,
    keys: Vec<(ManifestKey, Option<FetchCell>)>,
) {
    let result = async {
        let mut blobs: Vec<String> = Vec::new();
        for m in std::iter::once(&fetched.top).chain(fetched.children.iter()) {
            for d in manifest_refs(m, Reference::Blob).map_err(|e| e.message().to_string())? {
                if !blobs.contains(&d) {
                    blobs.push(d);
                }
            }
        }
        futures_util::stream::iter(blobs)
            .map(|d| ensure_blob(&app, &repo, &upstream, &up_repo, d))
            .buffer_unordered(IMPORT_PARALLEL)
            .try_collect::<Vec<()>>()
            .await?;
        let now = crate::ids::now_ms();
        // Innermost children first: an index is stored after what it lists.
        for (m, tag) in fetched
            .children
            .iter()
            .rev()
            .map(|m| (m, None))
            .chain(std::iter::once((&fetched.top, tag.as_deref())))
        {
            let put = ManifestPut {
                bytes: &m.bytes,
                content_type: content_type(m),
                tag,
                expected_digest: Some(&m.digest),
                now,
                replicate_to: Vec::new(),
            };
            match store_manifest(&app, &repo, put).await {
                Ok(_) => {}
                Err(PushError::TagImmutable { tag }) => {
                    return Err(format!(
                        "the tag {tag} is immutable in {}: it keeps the image it names",
                        repo.name
                    ))
                }
                Err(PushError::Store(e)) => return Err(e.to_string()),
                Err(e) => return Err(format!("{e:?}")),
            }
        }
        Ok::<(), String>(())
    }
    .await;
    match &result {
        Ok(()) => tracing::info!(repository = %repo.name, digest = %fetched.top.digest, tag = ?tag,
            "pull through cache: image stored"),
        Err(e) => tracing::warn!(repository = %repo.name, digest = %fetched.top.digest, error = %e,
            "pull through cache: the image could not be stored; the next pull fetches it again"),
    }
    // A request that found the image missing just before it was stored is answered from
    // this fetch a while longer, rather than fetching it again.
    if result.is_ok() {
        tokio::time::sleep(fetch::REMEMBERED).await;
    }
    let mut all = lock(&app.pull_through.manifests);
    for (k, cell) in keys {
        let ours = match (all.get(&k), &cell) {
            (Some(now), Some(c)) => Arc::ptr_eq(now, c),
            _ => false,
        };
        if ours {
            all.remove(&k);
        }
    }
}

/// Make the repository hold a blob: at once if it does, else through a fetch (one's in
/// flight or a new one).
async fn ensure_blob(
    app: &Arc<App>,
    repo: &Repository,
    upstream: &Arc<Upstream>,
    up_repo: &str,
    d: String,
) -> Result<(), String> {
    if app
        .registry
        .repository_blob(repo.registry(), &repo.name, &d)
        .await
        .map_err(|e| e.to_string())?
        .is_some()
    {
        return Ok(());
    }
    let digest = d.parse().map_err(|e| format!("{e}"))?;
    let followed = fetch::follow_or_start(fetch::FetchJob {
        app: app.clone(),
        key: (
            repo.registry().stored_account().into_owned(),
            repo.name.clone(),
            d.clone(),
        ),
        repo: repo.clone(),
        upstream: upstream.clone(),
        upstream_repo: up_repo.to_string(),
        digest,
    })
    .map_err(|e| e.message().to_string())?;
    match followed {
        fetch::Followed::Stored => Ok(()),
        fetch::Followed::Fetch(mut follower) => follower
            .finished()
            .await
            .map(|_| ())
            .map_err(|e| e.message().to_string()),
    }
}

/// `GET`/`HEAD /v2/<name>/blobs/<digest>` of a blob the repository lacks, where a rule
/// covers `name`: read from a fetch of it (`None`: not the cache's to answer).
pub async fn blob(
    c: &OciCall<'_>,
    name: &str,
    d: &str,
    repo: &Option<Repository>,
    head: bool,
) -> Result<Option<Response<Body>>, OciError> {
    let Some(repo) = repo else {
        return Ok(None);
    };
    // A HEAD is how pushers ask whether a blob is there (pullers GET): answered from
    // what the repository holds.
    if head {
        return Ok(None);
    }
    // The rules first (in memory): a repository no rule covers costs nothing more.
    let Some((rule, up_repo)) = covering(c, name).await? else {
        return Ok(None);
    };
    if c.app
        .registry
        .repository_blob(repo.registry(), &repo.name, d)
        .await?
        .is_some()
    {
        return Ok(None);
    }
    may_import(c, name, true).await?;
    within_quota(c.app, repo).await?;
    let what = format!("blob {d} of {name}");
    let upstream = upstream_for(c.app, c.key(), &rule)
        .await
        .map_err(|e| refusal(&e, &rule, &what, true))?;
    let Some(app) = c.app.me.upgrade() else {
        return Err(OciError::new(500, "UNKNOWN", "the server is shutting down"));
    };
    let digest = d.parse().map_err(|_| {
        OciError::new(
            400,
            "DIGEST_INVALID",
            format!("{d:?} is not a sha256 digest"),
        )
    })?;
    let followed = fetch::follow_or_start(fetch::FetchJob {
        app,
        key: (
            repo.registry().stored_account().into_owned(),
            repo.name.clone(),
            d.to_string(),
        ),
        repo: repo.clone(),
        upstream,
        upstream_repo: up_repo,
        digest,
    })
    .map_err(|e| OciError::new(500, "UNKNOWN", e.message().to_string()))?;
    let mut follower = match followed {
        // Stored just now: served from the store.
        fetch::Followed::Stored => return Ok(None),
        fetch::Followed::Fetch(f) => f,
    };
    let progress = follower.started().await.map_err(|e| match e {
        fetch::FetchFailure::Upstream(u) => refusal(&u, &rule, &what, true),
        fetch::FetchFailure::Store(m) => OciError::new(500, "UNKNOWN", m),
    })?;
    let size = match &progress.end {
        Some(Ok(n)) => Some(*n),
        _ => progress.size,
    };
    let requested = c
        .header("range")
        .map(berth_oci::parse_range)
        .transpose()
        .map_err(|m| OciError::new(416, "BLOB_UNKNOWN", m))?;
    let (start, end) = match (requested, size) {
        (None, _) => (0, size),
        (Some(r), Some(size)) => {
            let (a, b) = r.resolve(size);
            let end = b.map_or(size, |b| (b + 1).min(size));
            if a >= end {
                return Err(OciError::new(
                    416,
                    "BLOB_UNKNOWN",
                    format!("the requested range is outside the blob's {size} bytes"),
                ));
            }
            (a, Some(end))
        }
        // The upstream did not say its size: the whole blob.
        (Some(_), None) => (0, None),
    };
    let ranged = requested.is_some() && size.is_some();
    let status = if ranged {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let mut r = if head {
        response(status, Body::empty())
    } else {
        response(status, Body::from_stream(follower.stream(start, end)))
    };
    if let Some(e) = end {
        set(&mut r, "content-length", &(e - start).to_string());
    }
    if let (true, Some(e), Some(size)) = (ranged, end, size) {
        set(
            &mut r,
            "content-range",
            &format!("bytes {start}-{}/{size}", e - 1),
        );
    }
    set(&mut r, "docker-content-digest", d);
    set(&mut r, "content-type", "application/octet-stream");
    set(&mut r, "accept-ranges", "bytes");
    Ok(Some(r))
}
