//! Layers through the API: BatchCheckLayerAvailability, GetDownloadUrlForLayer and the
//! three-step upload (InitiateLayerUpload, UploadLayerPart, CompleteLayerUpload), on the
//! same blob store and upload sessions as the registry.

use crate::registry::uploads::{self, UploadError};
use base64::Engine;
use berth_blobs::{BlobError, Digest};
use serde_json::{json, Value};

use super::{invalid, EcrCall};
use crate::query::ApiError;
use crate::registry::token;
use berth_oci::names::valid_digest;

/// Part size InitiateLayerUpload advertises (ECR's minimum for all parts but the last).
const PART_SIZE: i64 = 5 * 1024 * 1024;
/// Largest part one UploadLayerPart may carry.
const MAX_PART: usize = 20 * 1024 * 1024;

fn blob_error(e: BlobError) -> ApiError {
    match e {
        BlobError::Io(m) => ApiError::internal(format!("blob storage failed: {m}")),
        BlobError::Unavailable(m) => {
            tracing::warn!(error = %m, "blob storage unavailable");
            ApiError::unavailable()
        }
        e => invalid(e.to_string()),
    }
}

pub async fn batch_check(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let r = c.repo()?;
    let digests = c.input.get("layerDigests").and_then(Value::as_array).filter(|a| (1..=100).contains(&a.len()))
        .ok_or_else(|| invalid("Invalid parameter at 'layerDigests' failed to satisfy constraint: 'Member must have length between 1 and 100'"))?;
    let (mut layers, mut failures) = (Vec::new(), Vec::new());
    for d in digests {
        let d = d.as_str().unwrap_or("");
        if d.is_empty() {
            failures.push(json!({"layerDigest": d, "failureCode": "MissingLayerDigest", "failureReason": "The layer digest is empty"}));
            continue;
        }
        if !valid_digest(d) {
            failures.push(json!({"layerDigest": d, "failureCode": "InvalidLayerDigest", "failureReason": "Invalid layer digest"}));
            continue;
        }
        match c
            .app
            .registry
            .repository_blob(r.registry(), &r.name, d)
            .await?
        {
            Some(size) => layers.push(json!({
                "layerDigest": d, "layerAvailability": "AVAILABLE", "layerSize": size,
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
            })),
            None => layers.push(json!({"layerDigest": d, "layerAvailability": "UNAVAILABLE"})),
        }
    }
    Ok(json!({"layers": layers, "failures": failures}))
}

pub async fn download_url(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let r = c.repo()?;
    let d = c.required("layerDigest")?;
    if !valid_digest(d) {
        return Err(invalid(format!("Invalid parameter at 'layerDigest' failed to satisfy constraint: {d:?} is not a sha256 digest")));
    }
    if c.app
        .registry
        .repository_blob(r.registry(), &r.name, d)
        .await?
        .is_none()
    {
        return Err(ApiError::new(400, "LayersNotFoundException", format!(
            "The layer with digest '{d}' does not exist in the repository with name '{}' in the registry with id '{}'", r.name, r.account
        )));
    }
    if !c
        .app
        .registry
        .blob_referenced(r.registry(), &r.name, d)
        .await?
    {
        return Err(ApiError::new(400, "LayerInaccessibleException", format!(
            "The layer with digest '{d}' is not referenced by any image in the repository with name '{}'", r.name
        )));
    }
    // A presigned URL to the registry's own blob endpoint, valid for an hour.
    let path = format!("/v2/{}/blobs/{d}", r.name);
    let expires = c.origin.now + 3600;
    let signature = token::url_signature(
        &c.app.token_key,
        &token::SignedUrl {
            account: &r.account,
            region: c.region(),
            path: &path,
            expires,
        },
    );
    Ok(json!({
        "downloadUrl": format!(
            "{}://{}{path}?X-Berth-Expires={expires}&X-Berth-Signature={signature}",
            c.app.registry_scheme(),
            c.app.registry_host(&r.account, c.region())
        ),
        "layerDigest": d,
    }))
}

pub async fn initiate(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let r = c.repo()?;
    let id = uploads::start(c.app, r, c.caller.arn())
        .await
        .map_err(|e| upload_error(e, ""))?;
    Ok(json!({"uploadId": id, "partSize": PART_SIZE}))
}

fn upload_not_found(id: &str) -> ApiError {
    ApiError::new(
        400,
        "UploadNotFoundException",
        format!("The upload with id '{id}' is not valid for this repository"),
    )
}

/// An upload step's failure in ECR's words (`id`: the session's).
fn upload_error(e: UploadError, id: &str) -> ApiError {
    match e {
        UploadError::Unknown => upload_not_found(id),
        UploadError::Limit(_, m) => ApiError::new(400, "LimitExceededException", m),
        UploadError::Blob(e) => blob_error(e),
        UploadError::Store(e) => e.into(),
    }
}

/// The upload session, bound to this repository and principal; returns its size.
async fn session(c: &EcrCall<'_>, id: &str) -> Result<u64, ApiError> {
    let r = c.repo()?;
    uploads::held(c.app, id, r.registry(), &r.name, c.caller.arn())
        .await
        .map_err(|e| upload_error(e, id))
}

pub async fn upload_part(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let r = c.repo()?;
    let id = c.required("uploadId")?;
    let first = c
        .input
        .get("partFirstByte")
        .and_then(Value::as_i64)
        .filter(|n| *n >= 0)
        .ok_or_else(|| invalid("partFirstByte is required and must be a non-negative integer"))?;
    let last = c
        .input
        .get("partLastByte")
        .and_then(Value::as_i64)
        .filter(|n| *n >= 0)
        .ok_or_else(|| invalid("partLastByte is required and must be a non-negative integer"))?;
    let blob = c.required("layerPartBlob")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .map_err(|_| invalid("layerPartBlob is not base64"))?;
    if bytes.len() > MAX_PART {
        return Err(invalid(format!(
            "layerPartBlob holds {} bytes; at most {MAX_PART} per part",
            bytes.len()
        )));
    }
    let current = session(c, id).await?;
    let part_error = |m: String| {
        ApiError::new(
            400,
            "InvalidLayerPartException",
            format!(
            "{m} (registryId '{}', repositoryName '{}', uploadId '{id}', lastValidByteReceived {})",
            r.account, r.name, current as i64 - 1
        ),
        )
    };
    if first as u64 != current {
        return Err(part_error(format!(
            "The part starts at byte {first}; the upload holds {current} bytes"
        )));
    }
    // Checked: the offsets are the client's, any i64 (last - first + 1 can overflow).
    let described = last
        .checked_sub(first)
        .and_then(|n| n.checked_add(1))
        .and_then(|n| usize::try_from(n).ok());
    if last < first || described != Some(bytes.len()) {
        return Err(part_error(format!(
            "partFirstByte {first} and partLastByte {last} do not describe the {} bytes sent",
            bytes.len()
        )));
    }
    let chunk = futures_one(bytes);
    let size = c
        .app
        .blobs
        .append(id, current, chunk)
        .await
        .map_err(blob_error)?;
    uploads::received(c.app, id)
        .await
        .map_err(|e| upload_error(e, id))?;
    Ok(
        json!({"registryId": r.account, "repositoryName": r.name, "uploadId": id, "lastByteReceived": size as i64 - 1}),
    )
}

/// One chunk as a stream.
fn futures_one(
    bytes: Vec<u8>,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::convert::Infallible>> + Unpin + Send
{
    futures_util::stream::iter([Ok(bytes::Bytes::from(bytes))])
}

pub async fn complete(c: &EcrCall<'_>) -> Result<Value, ApiError> {
    let r = c.repo()?;
    let id = c.required("uploadId")?;
    let digests: Vec<&str> = c
        .input
        .get("layerDigests")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let [d] = digests.as_slice() else {
        return Err(invalid("layerDigests must hold exactly one digest"));
    };
    let dg: Digest = d.parse().map_err(|_| invalid(format!("Invalid parameter at 'layerDigests' failed to satisfy constraint: {d:?} is not a sha256 digest")))?;
    let size = session(c, id).await?;
    if size == 0 {
        return Err(ApiError::new(
            400,
            "EmptyUploadException",
            format!("The upload with id '{id}' has no layer parts"),
        ));
    }
    let held_before = c
        .app
        .registry
        .repository_blob(r.registry(), &r.name, d)
        .await?
        .is_some();
    match uploads::complete(c.app, id, r, &dg).await {
        Ok(_) => {}
        Err(UploadError::Blob(BlobError::DigestMismatch { computed, .. })) => {
            return Err(ApiError::new(400, "InvalidLayerException", format!(
                "The calculated digest of the layer, '{computed}', does not match the provided digest '{d}'"
            )));
        }
        Err(e) => return Err(upload_error(e, id)),
    }
    if held_before {
        return Err(ApiError::new(400, "LayerAlreadyExistsException", format!(
            "The layer with digest '{d}' already exists in the repository with name '{}' in the registry with id '{}'", r.name, r.account
        )));
    }
    Ok(json!({"registryId": r.account, "repositoryName": r.name, "uploadId": id, "layerDigest": d}))
}
