//! Blobs and blob uploads: HEAD/GET (with `Range`), monolithic and chunked uploads,
//! cross-repository mounts, upload status and cancel. Bytes stream through
//! `berth-blobs` (hashed as they pass); the metadata records which repository holds what.

use axum::body::Body;
use axum::http::{Response, StatusCode};
use berth_blobs::{BlobError, Digest};
use berth_oci::ByteRange;
use berth_store::Repository;

use super::{response, set, OciCall, OciError};
use crate::registry::uploads::{self, UploadError};
use crate::serve::App;
use berth_oci::names::valid_repository_name;

fn blob_error(e: BlobError) -> OciError {
    match e {
        BlobError::InvalidDigest(d) => OciError::new(
            400,
            "DIGEST_INVALID",
            format!("{d:?} is not a sha256 digest"),
        ),
        BlobError::NotFound => OciError::new(404, "BLOB_UNKNOWN", "blob unknown to registry"),
        BlobError::DigestMismatch { expected, computed } => OciError::new(
            400,
            "DIGEST_INVALID",
            format!("the uploaded content hashes to {computed}, not {expected}"),
        ),
        BlobError::OffsetMismatch { expected } => OciError::new(
            416,
            "BLOB_UPLOAD_INVALID",
            format!("the upload holds {expected} bytes; a chunk must start at byte {expected}"),
        ),
        BlobError::UploadUnknown => OciError::new(
            404,
            "BLOB_UPLOAD_UNKNOWN",
            "blob upload unknown to registry",
        ),
        BlobError::RangeNotSatisfiable { size } => OciError::new(
            416,
            "BLOB_UNKNOWN",
            format!("the requested range is outside the blob's {size} bytes"),
        ),
        BlobError::Unavailable(m) => {
            tracing::warn!(error = %m, "blob storage unavailable");
            OciError::new(
                503,
                "UNAVAILABLE",
                "The registry is unavailable: its blob storage cannot be reached right now; nothing was changed. Retry shortly.",
            )
        }
        BlobError::Io(m) => {
            tracing::warn!(error = %m, "blob storage");
            OciError::new(500, "UNKNOWN", format!("blob storage failed: {m}"))
        }
    }
}

/// Runs a blob operation that reads a request body in a task of its own. The body
/// arrives chunk by chunk from the connection's task; read from that same task, every
/// chunk makes the task wake itself, and tokio answers a self-wake by waking a second
/// worker that finds nothing to do (two futex calls and two context switches a chunk,
/// tens of thousands per GiB). Between two tasks the wake goes through the worker's
/// next-task slot instead. The operation runs to the end of the body even if the
/// request is dropped, as it would were the connection reading it.
async fn body_task<T: Send + 'static>(
    op: impl std::future::Future<Output = Result<T, BlobError>> + Send + 'static,
) -> Result<T, BlobError> {
    tokio::spawn(op)
        .await
        .map_err(|e| BlobError::Io(format!("blob body task: {e}")))?
}

fn digest(d: &str) -> Result<Digest, OciError> {
    d.parse::<Digest>().map_err(blob_error)
}

/// A missing repository on push: `NAME_UNKNOWN`, unless it may be created on push —
/// create-on-push is configured, or a `CREATE_ON_PUSH` creation template of the registry
/// matches the name (whose settings, policies and tags it then takes) — and the caller
/// may create it.
pub async fn create_on_push(c: &OciCall<'_>, name: &str) -> Result<Repository, OciError> {
    let (repo, tags, templated) = crate::registry::replication::templated_repository(
        c.app,
        c.key(),
        name,
        crate::registry::replication::AppliedFor::CreateOnPush,
        crate::ids::now_ms(),
    )
    .await?;
    if !c.app.config.create_on_push && !templated {
        return Err(c.name_unknown(name));
    }
    if let Some(r) = c.also_authorize("ecr:CreateRepository", name).await? {
        return Ok(r);
    }
    let created = c.app.registry.create_repository(&repo, &tags).await;
    // The caches may hold "no such repository".
    c.app.caches.invalidate_registry();
    match created {
        Ok(()) | Err(berth_store::RegistryError::RepositoryAlreadyExists { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(repo)
}

pub async fn get(
    c: &OciCall<'_>,
    name: &str,
    d: &str,
    repo: Option<Repository>,
    head: bool,
) -> Result<Response<Body>, OciError> {
    digest(d)?;
    // What the repository does not hold, a pull-through cache rule may fetch.
    if let Some(r) = crate::registry::cache::blob(c, name, d, &repo, head).await? {
        return Ok(r);
    }
    let repo = c.existing(name, &repo)?;
    let unknown = || OciError::new(404, "BLOB_UNKNOWN", "blob unknown to registry");
    let size = c
        .app
        .registry
        .repository_blob(repo.registry(), &repo.name, d)
        .await?
        .ok_or_else(unknown)?;
    // The metadata store's answer is the registry's (a collector leaves a blob a
    // repository holds alone for at least a grace period after it was told so); the
    // object store is not asked, which on S3 is a round trip per layer of every push.
    let size = u64::try_from(size).map_err(|_| unknown())?;
    if head {
        let mut r = response(StatusCode::OK, Body::empty());
        set(&mut r, "content-length", &size.to_string());
        set(&mut r, "docker-content-digest", d);
        set(&mut r, "content-type", "application/octet-stream");
        return Ok(r);
    }
    if let Some(r) = redirect(c.app, d).await? {
        return Ok(r);
    }
    serve_blob(c.app, d, size, c.header("range")).await
}

/// How long the presigned URL of a blob redirect is valid (clients follow at once).
const REDIRECT_TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// With `blob_redirect`, a `307` to a presigned URL of the object store, so the bytes
/// (and any `Range`) go straight from the bucket to the client; `None`: serve here (also
/// when this node's blob cache holds the blob).
pub async fn redirect(app: &App, d: &str) -> Result<Option<Response<Body>>, OciError> {
    if !app.config.blob_redirect {
        return Ok(None);
    }
    let dg = digest(d)?;
    // A copy on this node's disk is nearer than the bucket.
    if app.blobs.cached(&dg) {
        return Ok(None);
    }
    let Some(url) = app
        .blobs
        .presigned_get(&dg, REDIRECT_TTL)
        .await
        .map_err(blob_error)?
    else {
        return Ok(None);
    };
    let mut r = response(StatusCode::TEMPORARY_REDIRECT, Body::empty());
    set(&mut r, "location", &url);
    set(&mut r, "docker-content-digest", d);
    set(&mut r, "content-length", "0");
    Ok(Some(r))
}

/// Stream a blob (or the range a `Range` header asks for) of `size` bytes, as the
/// metadata store records it (what a suffix range `bytes=-N` counts back from).
pub async fn serve_blob(
    app: &App,
    d: &str,
    size: u64,
    range: Option<&str>,
) -> Result<Response<Body>, OciError> {
    let dg = digest(d)?;
    let unknown = || OciError::new(404, "BLOB_UNKNOWN", "blob unknown to registry");
    let requested = range
        .map(berth_oci::parse_range)
        .transpose()
        .map_err(|m| OciError::new(416, "BLOB_UNKNOWN", m))?;
    let range = match requested {
        None => None,
        Some(ByteRange::From(a, b)) => Some((a, b)),
        Some(last @ ByteRange::Last(_)) => Some(last.resolve(size)),
    };
    let reader = app
        .blobs
        .get(&dg, range)
        .await
        .map_err(blob_error)?
        .ok_or_else(unknown)?;
    let len = reader.len();
    let (size, start, end) = (reader.size, reader.start, reader.end);
    let status = if range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let mut r = response(status, Body::from_stream(reader.stream));
    set(&mut r, "content-length", &len.to_string());
    set(&mut r, "docker-content-digest", d);
    set(&mut r, "content-type", "application/octet-stream");
    set(&mut r, "accept-ranges", "bytes");
    if range.is_some() {
        set(
            &mut r,
            "content-range",
            &format!("bytes {start}-{end}/{size}"),
        );
    }
    Ok(r)
}

fn created(name: &str, d: &str) -> Response<Body> {
    let mut r = response(StatusCode::CREATED, Body::empty());
    set(&mut r, "location", &format!("/v2/{name}/blobs/{d}"));
    set(&mut r, "docker-content-digest", d);
    set(&mut r, "content-length", "0");
    r
}

fn upload_location(name: &str, id: &str, size: u64, status: StatusCode) -> Response<Body> {
    let mut r = response(status, Body::empty());
    set(
        &mut r,
        "location",
        &format!("/v2/{name}/blobs/uploads/{id}"),
    );
    set(&mut r, "docker-upload-uuid", id);
    set(&mut r, "range", &format!("0-{}", size.saturating_sub(1)));
    set(&mut r, "content-length", "0");
    r
}

pub async fn start(
    c: &OciCall<'_>,
    name: &str,
    repo: Option<Repository>,
    body: Body,
) -> Result<Response<Body>, OciError> {
    let repo = match repo {
        Some(r) => r,
        None => create_on_push(c, name).await?,
    };
    // Cross-repository mount: allowed on both sides and held by the source, else a plain upload.
    if let (Some(d), Some(from)) = (c.query("mount"), c.query("from")) {
        if digest(d).is_ok() && valid_repository_name(from) {
            let source_ok = c
                .also_authorize("ecr:GetDownloadUrlForLayer", from)
                .await
                .is_ok();
            if source_ok {
                uploads::within_quota(c.app, &repo)
                    .await
                    .map_err(upload_error)?;
                let mounted = c
                    .app
                    .registry
                    .mount_blob(c.key(), from, &repo.name, d, crate::ids::now_ms())
                    .await?;
                if mounted.is_some() {
                    return Ok(created(name, d));
                }
            }
        }
    }
    if let Some(d) = c.query("digest") {
        // Monolithic: the whole blob in this request.
        let dg = digest(d)?;
        c.also_authorize("ecr:UploadLayerPart", name).await?;
        c.also_authorize("ecr:CompleteLayerUpload", name).await?;
        uploads::within_quota(c.app, &repo)
            .await
            .map_err(upload_error)?;
        // Published under the metadata store's lock of the blob's row, as a completed
        // upload (see registry::gc).
        let (blobs, registry) = (c.app.blobs.clone(), c.app.registry.clone());
        let now = crate::ids::now_ms();
        let stored = body_task(async move {
            blobs
                .put_stream_with(&dg, body.into_data_stream(), |size| {
                    let (registry, digest) = (registry.clone(), dg.to_string());
                    async move { registry.lock_blob(&digest, size as i64, now).await }
                })
                .await
        })
        .await
        .map_err(blob_error)?;
        let (_, lock) = stored?;
        lock.hold(repo.registry(), &repo.name, now).await?;
        return Ok(created(name, d));
    }
    let id = uploads::start(c.app, &repo, c.caller.arn())
        .await
        .map_err(upload_error)?;
    let mut r = upload_location(name, &id, 0, StatusCode::ACCEPTED);
    set(&mut r, "range", "0-0");
    Ok(r)
}

/// An upload step's failure in OCI's words.
fn upload_error(e: UploadError) -> OciError {
    match e {
        UploadError::Unknown => OciError::new(
            404,
            "BLOB_UPLOAD_UNKNOWN",
            "blob upload unknown to registry",
        ),
        UploadError::Limit(uploads::Limit::Sessions, m) => OciError::new(429, "TOOMANYREQUESTS", m),
        UploadError::Limit(uploads::Limit::Quota, m) => OciError::new(403, "DENIED", m),
        UploadError::Blob(e) => blob_error(e),
        UploadError::Store(e) => e.into(),
    }
}

/// The upload session, which must belong to this registry, repository and principal.
async fn session(c: &OciCall<'_>, name: &str, id: &str) -> Result<u64, OciError> {
    uploads::held(c.app, id, c.key(), name, c.caller.arn())
        .await
        .map_err(upload_error)
}

/// `Content-Range: a-b`: where the chunk starts (must be the current size) and its length.
fn content_range(c: &OciCall<'_>, current: u64) -> Result<(), OciError> {
    let Some(h) = c.header("content-range") else {
        return Ok(());
    };
    let spec = h
        .trim()
        .trim_start_matches("bytes")
        .trim_start_matches(['=', ' ']);
    let parsed = spec
        .split_once('-')
        .and_then(|(a, b)| Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?)));
    let Some((a, b)) = parsed.filter(|(a, b)| b >= a) else {
        return Err(OciError::new(
            400,
            "BLOB_UPLOAD_INVALID",
            format!("Content-Range {h:?} is not START-END"),
        ));
    };
    if a != current {
        return Err(OciError::new(416, "BLOB_UPLOAD_INVALID", format!(
            "the chunk starts at byte {a}, but the upload holds {current} bytes: chunks must be sent in order"
        )));
    }
    // Checked: `0-18446744073709551615` covers one byte more than a u64 counts.
    let Some(covered) = (b - a).checked_add(1) else {
        return Err(OciError::new(
            400,
            "BLOB_UPLOAD_INVALID",
            format!("Content-Range {h:?} covers more bytes than an upload can hold"),
        ));
    };
    if let Some(len) = c
        .header("content-length")
        .and_then(|l| l.parse::<u64>().ok())
    {
        if len != covered {
            return Err(OciError::new(
                400,
                "BLOB_UPLOAD_INVALID",
                format!("Content-Range {h:?} covers {covered} bytes but Content-Length is {len}"),
            ));
        }
    }
    Ok(())
}

pub async fn patch(
    c: &OciCall<'_>,
    name: &str,
    id: &str,
    repo: Option<Repository>,
    body: Body,
) -> Result<Response<Body>, OciError> {
    c.existing(name, &repo)?;
    let current = session(c, name, id).await?;
    content_range(c, current)?;
    let (blobs, owned_id) = (c.app.blobs.clone(), id.to_owned());
    let size = body_task(async move {
        blobs
            .append(&owned_id, current, body.into_data_stream())
            .await
    })
    .await
    .map_err(blob_error)?;
    uploads::received(c.app, id).await.map_err(upload_error)?;
    Ok(upload_location(name, id, size, StatusCode::ACCEPTED))
}

pub async fn finish(
    c: &OciCall<'_>,
    name: &str,
    id: &str,
    repo: Option<Repository>,
    body: Body,
) -> Result<Response<Body>, OciError> {
    let repo = c.existing(name, &repo)?;
    let Some(d) = c.query("digest") else {
        return Err(OciError::new(
            400,
            "DIGEST_INVALID",
            "the digest query parameter is required to complete an upload",
        ));
    };
    let dg = digest(d)?;
    let current = session(c, name, id).await?;
    let has_body = c.header("content-length").is_some_and(|l| l != "0")
        || c.header("transfer-encoding").is_some();
    if has_body {
        c.also_authorize("ecr:UploadLayerPart", name).await?;
        content_range(c, current)?;
        let (blobs, owned_id) = (c.app.blobs.clone(), id.to_owned());
        body_task(async move {
            blobs
                .append(&owned_id, current, body.into_data_stream())
                .await
        })
        .await
        .map_err(blob_error)?;
    }
    uploads::complete(c.app, id, repo, &dg)
        .await
        .map_err(upload_error)?;
    Ok(created(name, d))
}

pub async fn status(
    c: &OciCall<'_>,
    name: &str,
    id: &str,
    repo: Option<Repository>,
) -> Result<Response<Body>, OciError> {
    c.existing(name, &repo)?;
    let size = session(c, name, id).await?;
    Ok(upload_location(name, id, size, StatusCode::NO_CONTENT))
}

pub async fn cancel(
    c: &OciCall<'_>,
    name: &str,
    id: &str,
    repo: Option<Repository>,
) -> Result<Response<Body>, OciError> {
    c.existing(name, &repo)?;
    session(c, name, id).await?;
    uploads::cancel(c.app, id).await.map_err(upload_error)?;
    Ok(response(StatusCode::NO_CONTENT, Body::empty()))
}
