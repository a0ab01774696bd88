//! The peer API's receiving side (see the module above): authentication, then the
//! replication and upload endpoints. Errors are JSON `{"failureCode": "..."}` with the
//! status the sender acts on: 401 untrusted (for good), 403 refused by the destination
//! (for good), 409 blobs missing (upload them), 404 no such session, 400 malformed,
//! 503 try again.

use std::net::SocketAddr;

use axum::body::Body;
use axum::http::{Method, Request, Response, StatusCode};
use base64::Engine;
use berth_blobs::Digest;
use berth_store::{RegistryError, ReplicaAction};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{body_hash, same, sign, Signed, HEADER, MAX_SKEW_SECS, PREFIX, UNSIGNED};
use crate::registry::push::{store_manifest, ManifestPut, PushError};
use crate::registry::replication::deliver::{allowed, destination_repository, Failure};
use crate::registry::{repository_arn, uploads};
use crate::serve::config::Peer;
use crate::serve::App;

/// Largest JSON body taken (a replication names its manifests, each at most 4 MiB).
const MAX_JSON: usize = 64 << 20;

fn reply(status: StatusCode, v: Value) -> Response<Body> {
    let mut r = Response::new(Body::from(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    r
}

fn fail(status: StatusCode, code: impl Into<String>) -> Response<Body> {
    reply(status, json!({"failureCode": code.into()}))
}

fn failure(f: Failure) -> Response<Body> {
    match f {
        Failure::Permanent(code) => fail(StatusCode::FORBIDDEN, code),
        Failure::Transient(code) => fail(StatusCode::SERVICE_UNAVAILABLE, code),
    }
}

/// The peer a request is signed by, if any this deployment trusts; else why not (a 401).
fn authenticate<'a>(
    app: &'a App,
    parts: &axum::http::request::Parts,
    hash: &str,
) -> Result<&'a Peer, String> {
    let refused = |why: &str| format!("PEER_REFUSED: {why}");
    let signed = parts
        .headers
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(Signed::parse)
        .ok_or_else(|| refused("the request is not signed by a peer (X-Berth-Peer)"))?;
    let peer = app
        .config
        .peers
        .iter()
        .find(|p| p.region == signed.region)
        .ok_or_else(|| {
            refused(&format!(
                "no peer serving {} is trusted here",
                signed.region
            ))
        })?;
    if (crate::ids::now() - signed.time).abs() > MAX_SKEW_SECS {
        return Err(refused(
            "the signature's time is more than five minutes off",
        ));
    }
    let path = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |p| p.as_str());
    let expected = sign(&peer.key, parts.method.as_str(), path, signed.time, hash);
    if !same(&expected, &signed.signature) {
        return Err(refused(&format!(
            "the signature is not that of the key shared with the peer serving {}",
            signed.region
        )));
    }
    Ok(peer)
}

/// Serve one request of the peer API.
pub async fn serve(app: &App, _from: SocketAddr, req: Request<Body>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let rest = parts
        .uri
        .path()
        .strip_prefix(PREFIX)
        .unwrap_or("")
        .to_string();
    let segments: Vec<&str> = rest.split('/').collect();
    // A blob chunk streams; everything else is JSON read whole and covered by the
    // signature.
    if parts.method == Method::PATCH {
        let peer = match authenticate(app, &parts, UNSIGNED) {
            Ok(p) => p,
            Err(why) => return fail(StatusCode::UNAUTHORIZED, why),
        };
        return match segments.as_slice() {
            ["uploads", id] => append(app, peer, id, &parts, body).await,
            _ => fail(
                StatusCode::NOT_FOUND,
                "NOT_FOUND: no peer endpoint answers here",
            ),
        };
    }
    let bytes = match axum::body::to_bytes(body, MAX_JSON).await {
        Ok(b) => b,
        Err(e) => return fail(StatusCode::BAD_REQUEST, format!("BODY_UNREADABLE: {e}")),
    };
    let peer = match authenticate(app, &parts, &body_hash(&bytes)) {
        Ok(p) => p,
        Err(why) => return fail(StatusCode::UNAUTHORIZED, why),
    };
    let query = berth_sigv4::query_pairs(parts.uri.query().unwrap_or(""));
    let param = |n: &str| query.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    match (parts.method.clone(), segments.as_slice()) {
        (Method::POST, ["replicate"]) => match serde_json::from_slice(&bytes) {
            Ok(r) => replicate(app, peer, r).await,
            Err(e) => fail(StatusCode::BAD_REQUEST, format!("MALFORMED: {e}")),
        },
        (Method::POST, ["uploads"]) => match serde_json::from_slice(&bytes) {
            Ok(t) => start_upload(app, peer, t).await,
            Err(e) => fail(StatusCode::BAD_REQUEST, format!("MALFORMED: {e}")),
        },
        (Method::GET, ["uploads", id]) => offset(app, peer, id).await,
        (Method::PUT, ["uploads", id]) => match param("digest") {
            Some(d) => finish(app, peer, id, &d).await,
            None => fail(StatusCode::BAD_REQUEST, "MALFORMED: ?digest= is required"),
        },
        _ => fail(
            StatusCode::NOT_FOUND,
            "NOT_FOUND: no peer endpoint answers here",
        ),
    }
}

/// One manifest of a replicated image, as sent.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SentManifest {
    pub digest: String,
    pub media_type: String,
    /// The bytes, in standard base64.
    pub body: String,
}

/// A blob a replicated image references.
#[derive(Debug, Deserialize)]
pub struct SentBlob {
    pub digest: String,
    pub size: i64,
}

/// `POST /replicate`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicateRequest {
    pub source_account: String,
    pub source_region: String,
    pub destination_account: String,
    pub destination_region: String,
    pub repository: String,
    /// `push`, `delete-tag` or `delete-image`.
    pub action: String,
    pub digest: String,
    pub tag: Option<String>,
    #[serde(default)]
    pub manifests: Vec<SentManifest>,
    #[serde(default)]
    pub blobs: Vec<SentBlob>,
}

async fn replicate(app: &App, peer: &Peer, r: ReplicateRequest) -> Response<Body> {
    if r.source_region != peer.region {
        return fail(
            StatusCode::UNAUTHORIZED,
            format!(
                "PEER_REFUSED: the peer serving {} sent a replication from {}",
                peer.region, r.source_region
            ),
        );
    }
    let region = r.destination_region.as_str();
    if !app.config.regions.iter().any(|x| x == region) {
        return fail(
            StatusCode::FORBIDDEN,
            format!("REGION_NOT_SERVED: this deployment serves no registry in Region {region}"),
        );
    }
    if !berth_oci::names::valid_repository_name(&r.repository) {
        return fail(StatusCode::BAD_REQUEST, "MALFORMED: not a repository name");
    }
    let Some(action) = ReplicaAction::parse(&r.action) else {
        return fail(StatusCode::BAD_REQUEST, "MALFORMED: unknown action");
    };
    let dest = app.key(&r.destination_account, region);
    let arn = repository_arn(region, dest.account, &r.repository);
    match allowed(
        app,
        &r.source_account,
        dest,
        region,
        &arn,
        "ecr:ReplicateImage",
    )
    .await
    {
        Ok(true) => {}
        Ok(false) => {
            return fail(
                StatusCode::FORBIDDEN,
                format!(
                    "REPLICATION_NOT_ALLOWED: the registry policy of {} in {region} does not allow \
                     arn:aws:iam::{}:root to perform ecr:ReplicateImage on {arn}",
                    dest.account, r.source_account
                ),
            )
        }
        Err(f) => return failure(f),
    }
    let done = match action {
        ReplicaAction::Push => push(app, &r, dest, region, &arn).await,
        ReplicaAction::DeleteTag => {
            let tag = r.tag.as_deref().unwrap_or_default();
            match app.registry.image(dest, &r.repository, tag).await {
                Ok(Some(i)) if i.digest == r.digest => app
                    .registry
                    .delete_tag(dest, &r.repository, tag, &[])
                    .await
                    .map(|_| None)
                    .map_err(store),
                Ok(_) => Ok(None),
                Err(e) => Err(store(e)),
            }
        }
        ReplicaAction::DeleteImage => {
            match app
                .registry
                .delete_image(dest, &r.repository, &r.digest, &[])
                .await
            {
                Ok(_) | Err(RegistryError::RepositoryNotFound { .. }) => Ok(None),
                Err(RegistryError::ImageReferencedByIndex { .. }) => {
                    Err(Failure::Permanent(format!(
                        "IMAGE_REFERENCED_BY_INDEX: {} is listed by an index in {arn}",
                        r.digest
                    )))
                }
                Err(e) => Err(store(e)),
            }
        }
    };
    match done {
        Ok(None) => reply(StatusCode::OK, json!({"status": "COMPLETE"})),
        Ok(Some(missing)) => reply(StatusCode::CONFLICT, json!({"missing": missing})),
        Err(f) => failure(f),
    }
}

fn store(e: RegistryError) -> Failure {
    Failure::Transient(format!("STORE_UNAVAILABLE: {e}"))
}

/// Store a pushed image: `Ok(Some(missing))` when blobs are still to be uploaded.
async fn push(
    app: &App,
    r: &ReplicateRequest,
    dest: berth_store::RegistryKey<'_>,
    region: &str,
    arn: &str,
) -> Result<Option<Vec<String>>, Failure> {
    let repo =
        destination_repository(app, &r.source_account, &r.repository, dest, region, arn).await?;
    let now = crate::ids::now_ms();
    let mut missing = Vec::new();
    for b in &r.blobs {
        let Ok(d) = b.digest.parse::<Digest>() else {
            return Err(Failure::Permanent(format!(
                "MALFORMED: {} is not a digest",
                b.digest
            )));
        };
        if app
            .registry
            .repository_blob(repo.registry(), &repo.name, &b.digest)
            .await
            .map_err(store)?
            .is_some()
        {
            continue;
        }
        // Stored here already (for another repository or registry): hold it.
        match app.blobs.stat(&d).await {
            Ok(Some(size)) if size as i64 == b.size => app
                .registry
                .add_repository_blob(repo.registry(), &repo.name, &b.digest, size as i64, now)
                .await
                .map_err(store)?,
            Ok(_) => missing.push(b.digest.clone()),
            Err(e) => return Err(Failure::Transient(format!("BLOB_STORE_UNAVAILABLE: {e}"))),
        }
    }
    if !missing.is_empty() {
        return Ok(Some(missing));
    }
    let count = r.manifests.len();
    for (i, m) in r.manifests.iter().enumerate() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&m.body)
            .map_err(|e| Failure::Permanent(format!("MALFORMED: manifest {}: {e}", m.digest)))?;
        // The image itself (the last) moves the tag; its children are stored untagged.
        let tag = (i + 1 == count).then_some(()).and(r.tag.as_deref());
        let put = ManifestPut {
            bytes: &bytes,
            content_type: Some(&m.media_type),
            tag,
            expected_digest: Some(&m.digest),
            now,
            replicate_to: Vec::new(),
        };
        match store_manifest(app, &repo, put).await {
            Ok(_) | Err(PushError::TagImmutable { .. }) => {}
            Err(PushError::Store(e)) => return Err(store(e)),
            Err(e) => return Err(Failure::Permanent(format!("IMAGE_NOT_STORED: {e:?}"))),
        }
    }
    Ok(None)
}

/// Who an upload session of a peer belongs to.
fn principal(peer: &Peer) -> String {
    format!("berth-peer:{}", peer.region)
}

#[derive(Debug, Deserialize)]
struct UploadTarget {
    account: String,
    region: String,
    repository: String,
}

async fn start_upload(app: &App, peer: &Peer, t: UploadTarget) -> Response<Body> {
    if !app.config.regions.contains(&t.region) {
        return fail(StatusCode::FORBIDDEN, "REGION_NOT_SERVED");
    }
    let dest = app.key(&t.account, &t.region);
    let repo = match app.registry.repository(dest, &t.repository).await {
        Ok(Some(r)) => r,
        Ok(None) => return fail(StatusCode::NOT_FOUND, "REPOSITORY_NOT_FOUND"),
        Err(e) => return failure(store(e)),
    };
    match uploads::start(app, &repo, &principal(peer)).await {
        Ok(id) => reply(StatusCode::CREATED, json!({"id": id})),
        Err(e) => fail(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("UPLOAD_FAILED: {e:?}"),
        ),
    }
}

/// The session `id` of this peer, with its repository.
async fn session(
    app: &App,
    peer: &Peer,
    id: &str,
) -> Result<(berth_store::Repository, u64), Response<Body>> {
    let gone = || fail(StatusCode::NOT_FOUND, "UPLOAD_UNKNOWN");
    let u = match app.registry.upload(id).await {
        Ok(Some(u)) => u,
        Ok(None) => return Err(gone()),
        Err(e) => return Err(failure(store(e))),
    };
    if u.principal != principal(peer) {
        return Err(gone());
    }
    let key = berth_store::RegistryKey {
        account: &u.account,
        region: u.region.as_deref(),
    };
    let repo = match app.registry.repository(key, &u.repository).await {
        Ok(Some(r)) => r,
        Ok(None) => return Err(gone()),
        Err(e) => return Err(failure(store(e))),
    };
    match uploads::held(app, id, key, &u.repository, &u.principal).await {
        Ok(size) => Ok((repo, size)),
        Err(_) => Err(gone()),
    }
}

async fn offset(app: &App, peer: &Peer, id: &str) -> Response<Body> {
    match session(app, peer, id).await {
        Ok((_, size)) => reply(StatusCode::OK, json!({"offset": size})),
        Err(r) => r,
    }
}

async fn append(
    app: &App,
    peer: &Peer,
    id: &str,
    parts: &axum::http::request::Parts,
    body: Body,
) -> Response<Body> {
    let at = berth_sigv4::query_pairs(parts.uri.query().unwrap_or(""))
        .into_iter()
        .find(|(k, _)| k == "offset")
        .and_then(|(_, v)| v.parse::<u64>().ok());
    let (_, size) = match session(app, peer, id).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if at != Some(size) {
        return reply(
            StatusCode::CONFLICT,
            json!({"failureCode": "OFFSET_MISMATCH", "offset": size}),
        );
    }
    match app.blobs.append(id, size, body.into_data_stream()).await {
        Ok(n) => {
            let _ = uploads::received(app, id).await;
            reply(StatusCode::ACCEPTED, json!({"offset": n}))
        }
        Err(e) => fail(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("APPEND_FAILED: {e}"),
        ),
    }
}

async fn finish(app: &App, peer: &Peer, id: &str, digest: &str) -> Response<Body> {
    let (repo, _) = match session(app, peer, id).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Ok(d) = digest.parse::<Digest>() else {
        return fail(StatusCode::BAD_REQUEST, "MALFORMED: not a digest");
    };
    match uploads::complete(app, id, &repo, &d).await {
        Ok(size) => reply(StatusCode::CREATED, json!({"size": size})),
        Err(e) => fail(StatusCode::CONFLICT, format!("UPLOAD_NOT_FINISHED: {e:?}")),
    }
}
