//! The sending side of the peer link: a replication whose destination Region another
//! deployment serves is delivered there (see the module above). Blobs the peer lacks are
//! streamed from this deployment's blob store through a resumable upload session: after
//! an interruption the sender asks the session's offset and goes on from there, within
//! the attempt or in a later one: the session is remembered in the metadata store
//! ([`berth_store::PeerUpload`]) until its blob is finished, so a delivery tried again —
//! after the peer restarted, the link dropped, or this deployment restarted or another
//! node took the replication job over — continues it instead of sending the blob from its
//! first byte.

use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use berth_store::{PeerUpload, RegistryKey, ReplicaAction, Replication};
use futures_util::TryStreamExt;
use serde_json::{json, Value};

use super::{body_hash, sign, Signed, HEADER, UNSIGNED};
use crate::registry::replication::deliver::Failure;
use crate::serve::config::Peer;
use crate::serve::App;

/// How deep indexes may nest.
const MAX_DEPTH: usize = 8;
/// How many times one blob's upload is resumed before the delivery is tried later.
const RESUMES: usize = 3;
/// The most bytes of a blob one request sends (two parts of the S3 backend's; that
/// backend keeps nothing of a request cut part-way, so a transfer cut resumes from the
/// last whole request).
const CHUNK: u64 = 16 << 20;
fn http() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        crate::outbound::builder(Duration::from_secs(120))
            .build()
            .expect("an HTTP client")
    })
}

fn unreachable(peer: &Peer, e: impl std::fmt::Display) -> Failure {
    Failure::Transient(format!("PEER_UNREACHABLE: {}: {e}", peer.endpoint))
}

/// A signed request to `peer` as the sender serving `region`.
fn request(
    peer: &Peer,
    region: &str,
    method: reqwest::Method,
    path_and_query: &str,
    hash: &str,
) -> reqwest::RequestBuilder {
    let time = crate::ids::now();
    let signed = Signed {
        region: region.to_string(),
        time,
        signature: sign(&peer.key, method.as_str(), path_and_query, time, hash),
    };
    http()
        .request(method, format!("{}{path_and_query}", peer.endpoint))
        .header(HEADER, signed.header())
}

/// Send JSON; the status and the JSON answer.
async fn send_json(
    peer: &Peer,
    region: &str,
    method: reqwest::Method,
    path_and_query: &str,
    body: &Value,
) -> Result<(u16, Value), Failure> {
    let bytes = serde_json::to_vec(body).expect("JSON");
    let resp = request(peer, region, method, path_and_query, &body_hash(&bytes))
        .header("content-type", "application/json")
        .body(bytes)
        .send()
        .await
        .map_err(|e| unreachable(peer, e))?;
    answer(peer, resp).await
}

async fn answer(peer: &Peer, resp: reqwest::Response) -> Result<(u16, Value), Failure> {
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| unreachable(peer, e))?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(json!({"failureCode": text})),
    ))
}

fn code(v: &Value) -> String {
    v.get("failureCode")
        .and_then(Value::as_str)
        .unwrap_or("PEER_ERROR")
        .to_string()
}

/// What the peer's answer means for the delivery (200 → done; else a failure).
fn settle(status: u16, v: &Value) -> Result<(), Failure> {
    match status {
        200..=299 => Ok(()),
        401 | 403 | 400 => Err(Failure::Permanent(code(v))),
        _ => Err(Failure::Transient(code(v))),
    }
}

/// Deliver one replication to the deployment `peer`.
pub async fn deliver(app: &App, peer: &Peer, r: &Replication) -> Result<(), Failure> {
    let src = RegistryKey {
        account: &r.account,
        region: r.region.as_deref(),
    };
    let source_region = r.region.clone().unwrap_or_else(|| app.home_region.clone());
    let mut body = json!({
        "sourceAccount": r.account,
        "sourceRegion": source_region,
        "destinationAccount": r.destination.account,
        "destinationRegion": r.destination.region,
        "repository": r.repository,
        "action": r.action.as_str(),
        "digest": r.digest,
        "tag": r.tag,
    });
    if r.action == ReplicaAction::Push {
        let image = app
            .registry
            .image(src, &r.repository, &r.digest)
            .await
            .map_err(|e| Failure::Transient(format!("STORE_UNAVAILABLE: {e}")))?
            .ok_or_else(|| {
                Failure::Permanent(format!(
                    "SOURCE_IMAGE_DELETED: {} was deleted from the source repository before it was replicated",
                    r.digest
                ))
            })?;
        let (mut manifests, mut blobs) = (Vec::new(), Vec::new());
        collect(
            app,
            src,
            &r.repository,
            &image,
            &mut manifests,
            &mut blobs,
            0,
        )
        .await?;
        body["manifests"] = json!(manifests);
        body["blobs"] = json!(blobs);
    }
    for _ in 0..3 {
        let (status, v) = send_json(
            peer,
            &source_region,
            reqwest::Method::POST,
            "/berth/peer/v1/replicate",
            &body,
        )
        .await?;
        if status != 409 {
            return settle(status, &v);
        }
        let missing: Vec<String> = v
            .get("missing")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        for digest in missing {
            upload(app, peer, &source_region, r, &digest).await?;
        }
    }
    Err(Failure::Transient(
        "BLOBS_MISSING: the peer still lacks blobs after they were uploaded".into(),
    ))
}

/// The manifests of `image` (children first, the image last) and the blobs they reference.
fn collect<'a>(
    app: &'a App,
    src: RegistryKey<'a>,
    name: &'a str,
    image: &'a berth_store::Image,
    manifests: &'a mut Vec<Value>,
    blobs: &'a mut Vec<Value>,
    depth: usize,
) -> futures_util::future::BoxFuture<'a, Result<(), Failure>> {
    Box::pin(async move {
        if depth > MAX_DEPTH {
            return Err(Failure::Permanent(format!(
                "IMAGE_TOO_DEEP: indexes nest more than {MAX_DEPTH} deep"
            )));
        }
        let m = berth_oci::parse_manifest(&image.manifest, Some(&image.media_type))
            .map_err(|e| Failure::Permanent(format!("MANIFEST_INVALID: {}", e.0)))?;
        for (digest, kind) in &m.refs {
            match kind {
                berth_oci::Reference::Blob => {
                    let size = app
                        .registry
                        .repository_blob(src, name, digest)
                        .await
                        .map_err(|e| Failure::Transient(format!("STORE_UNAVAILABLE: {e}")))?
                        .ok_or_else(|| {
                            Failure::Permanent(format!(
                                "SOURCE_BLOB_MISSING: the source repository no longer holds {digest}"
                            ))
                        })?;
                    if !blobs.iter().any(|b| b["digest"] == json!(digest)) {
                        blobs.push(json!({"digest": digest, "size": size}));
                    }
                }
                berth_oci::Reference::Manifest => {
                    let child = app
                        .registry
                        .image(src, name, digest)
                        .await
                        .map_err(|e| Failure::Transient(format!("STORE_UNAVAILABLE: {e}")))?
                        .ok_or_else(|| {
                            Failure::Permanent(format!(
                                "SOURCE_IMAGE_DELETED: {digest}, listed by the index, is no longer in the source repository"
                            ))
                        })?;
                    collect(app, src, name, &child, manifests, blobs, depth + 1).await?;
                }
            }
        }
        manifests.push(json!({
            "digest": image.digest,
            "mediaType": image.media_type,
            "body": base64::engine::general_purpose::STANDARD.encode(&image.manifest),
        }));
        Ok(())
    })
}

/// Open an upload session in the destination repository and remember it; its path.
async fn open(
    app: &App,
    peer: &Peer,
    region: &str,
    r: &Replication,
    key: &PeerUpload<'_>,
) -> Result<String, Failure> {
    let (status, v) = send_json(
        peer,
        region,
        reqwest::Method::POST,
        "/berth/peer/v1/uploads",
        &json!({
            "account": r.destination.account,
            "region": r.destination.region,
            "repository": r.repository,
        }),
    )
    .await?;
    settle(status, &v)?;
    let id = v
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| Failure::Transient("PEER_ERROR: no upload id".into()))?
        .to_string();
    app.registry
        .set_peer_upload(key, Some(&id), crate::ids::now_ms())
        .await
        .map_err(store_failure)?;
    Ok(format!("/berth/peer/v1/uploads/{id}"))
}

/// Upload one blob into a session of the destination repository, resuming where an
/// interrupted transfer stopped (in this attempt or an earlier one).
async fn upload(
    app: &App,
    peer: &Peer,
    region: &str,
    r: &Replication,
    digest: &str,
) -> Result<(), Failure> {
    let d: berth_blobs::Digest = digest
        .parse()
        .map_err(|_| Failure::Permanent(format!("MALFORMED: {digest} is not a digest")))?;
    let key = PeerUpload {
        peer: &peer.region,
        account: &r.destination.account,
        region: &r.destination.region,
        repository: &r.repository,
        digest,
    };
    let size = match app.blobs.stat(&d).await {
        Ok(Some(size)) => size,
        Ok(None) => {
            return Err(Failure::Permanent(format!(
                "SOURCE_BLOB_MISSING: {digest} is not in this deployment's blob store"
            )))
        }
        Err(e) => return Err(Failure::Transient(format!("BLOB_STORE_UNAVAILABLE: {e}"))),
    };
    // An earlier attempt's session, if it left one; else a new one.
    let remembered = app
        .registry
        .peer_upload(&key)
        .await
        .map_err(store_failure)?;
    let mut opened = remembered.is_none();
    let mut session = match remembered {
        Some(id) => format!("/berth/peer/v1/uploads/{id}"),
        None => open(app, peer, region, r, &key).await?,
    };
    // Where the peer's session stands, when its last answer said (else it is asked).
    let mut known: Option<u64> = None;
    let mut interruptions = 0;
    loop {
        let offset = match known.take() {
            Some(offset) => offset,
            None => {
                let (status, v) =
                    send_json(peer, region, reqwest::Method::GET, &session, &json!({})).await?;
                if status == 404 && !opened {
                    // The peer no longer knows the remembered session (finished, removed
                    // as abandoned, or its store lost it): start over in a new one.
                    forget(app, &key).await?;
                    session = open(app, peer, region, r, &key).await?;
                    opened = true;
                    continue;
                }
                if status == 404 {
                    forget(app, &key).await?;
                }
                settle(status, &v)?;
                v.get("offset").and_then(Value::as_u64).unwrap_or(0)
            }
        };
        if offset >= size {
            break;
        }
        // One chunk a request: what a request delivers is kept by the peer's store
        // whatever happens to the next (a store may keep nothing of a cut request).
        let end = offset.saturating_add(CHUNK).min(size) - 1;
        let reader = app
            .blobs
            .get(&d, Some((offset, Some(end))))
            .await
            .map_err(|e| Failure::Transient(format!("BLOB_STORE_UNAVAILABLE: {e}")))?
            .ok_or_else(|| {
                Failure::Permanent(format!(
                    "SOURCE_BLOB_MISSING: {digest} is not in this deployment's blob store"
                ))
            })?;
        let stream = reader
            .stream
            .map_err(|e| std::io::Error::other(e.to_string()));
        let path = format!("{session}?offset={offset}");
        let sent = request(peer, region, reqwest::Method::PATCH, &path, UNSIGNED)
            .header("content-type", "application/octet-stream")
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status().is_success() => {
                let (_, v) = answer(peer, resp).await?;
                match v.get("offset").and_then(Value::as_u64) {
                    Some(n) if n > offset => known = Some(n),
                    // Accepted without progress: ask where it stands, as after a cut.
                    _ => interruptions += 1,
                }
            }
            // Interrupted, or the peer saw another offset: ask it where it stands.
            Ok(resp) if resp.status().as_u16() == 409 => interruptions += 1,
            Ok(resp) => {
                let (status, v) = answer(peer, resp).await?;
                settle(status, &v)?;
            }
            Err(_) => interruptions += 1,
        }
        if interruptions > RESUMES {
            return Err(Failure::Transient(format!(
                "UPLOAD_INTERRUPTED: {digest} could not be sent in {} tries",
                RESUMES + 1
            )));
        }
    }
    let path = format!("{session}?digest={digest}");
    let (status, v) = send_json(peer, region, reqwest::Method::PUT, &path, &json!({})).await?;
    // Answered: the blob is published, or the session ended or cannot finish; either way
    // a later attempt starts from what the peer then lacks.
    forget(app, &key).await?;
    settle(status, &v)
}

/// Forget the session of `key` (finished, or no longer the peer's).
async fn forget(app: &App, key: &PeerUpload<'_>) -> Result<(), Failure> {
    app.registry
        .set_peer_upload(key, None, crate::ids::now_ms())
        .await
        .map_err(store_failure)
}

fn store_failure(e: berth_store::RegistryError) -> Failure {
    Failure::Transient(format!("STORE_UNAVAILABLE: {e}"))
}
