//! The S3 backend: blobs in an S3-compatible bucket, upload sessions that any node can
//! continue.
//!
//! Layout under the bucket's prefix `P` (empty, or ending in `/`):
//! - `P/blobs/sha256/<2 hex>/<64 hex>`: published blobs (the local backend's layout);
//! - `P/_uploads/<id>/blob`: the multipart upload of session `<id>` (completed there,
//!   then copied into place);
//! - `P/_uploads/<id>/tail-<offset>-<nonce>`: the session's bytes from `<offset>` on
//!   that do not fill a part yet.
//!
//! A session's state ([`SessionState`]: bytes received, the resumable SHA-256 state, the
//! multipart upload id and its parts' ETags, the tail's name) lives in [`UploadStates`]
//! (the metadata store), replaced by compare-and-set after every request, so a request
//! on any node continues where the last one ended. S3 parts must be at least 5 MiB
//! (but the last): bytes are cut into parts of exactly [`PART_SIZE`]; the rest of a
//! request is written as a new tail object, read back and prepended by the next one.
//!
//! Two requests continuing one session at once: the compare-and-set decides, the loser
//! gets [`BlobError::OffsetMismatch`] and removes what it wrote. Tails are never
//! overwritten (a nonce in each name). Parts are numbered by position, so two writers
//! must never upload parts at once: uploading a part needs a claim ([`Claim`]), taken and
//! renewed by compare-and-set right before each part and valid for [`CLAIM`], longer
//! than a part upload may take ([`PART_DEADLINE`]); a writer that crashed blocks the
//! session's part uploads until its claim runs out. At completion S3 checks each
//! part's ETag too.
//!
//! Orphans: a node that crashes between creating a multipart upload and saving its id
//! leaves an upload nobody knows about (object_store cannot list multipart uploads);
//! give the bucket a lifecycle rule that aborts incomplete multipart uploads after a
//! few days. Staging objects are removed when their session ends and, failing that, by
//! [`S3Uploads::expire`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use futures::stream::{Stream, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjectPath;
use object_store::signer::Signer;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use serde::{Deserialize, Serialize};

use crate::cache::{BlobCache, Staged};
use crate::digest::ResumableSha256;
use crate::error::io_err;
use crate::sessions::{SavedUploadState, UploadStates};
use crate::{BlobError, Digest};

/// Size of every part but the last (S3's minimum is 5 MiB). A request holds at most one
/// part's worth of bytes in memory. S3 allows 10,000 parts: blobs up to 78 GiB.
pub(crate) const PART_SIZE: u64 = 8 << 20;
const PART: usize = PART_SIZE as usize;
/// How long one part upload may take, retries included, before the request gives up.
const PART_DEADLINE: Duration = Duration::from_secs(180);
/// How long a claim to upload parts lasts; longer than [`PART_DEADLINE`], so a part
/// upload always ends while its writer's claim holds.
const CLAIM: Duration = Duration::from_secs(300);
/// S3's limit for a single CopyObject; larger blobs are copied through this node.
const MAX_SINGLE_COPY: u64 = 5 << 30;

/// Where and how to reach the bucket.
#[derive(Clone)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing `/` (may be empty).
    pub prefix: String,
    /// The S3 endpoint URL (e.g. `http://127.0.0.1:9000`); AWS's, for `region`, if `None`.
    pub endpoint: Option<String>,
    pub region: String,
    /// Whether plain `http://` endpoints are allowed.
    pub allow_http: bool,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("allow_http", &self.allow_http)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// What is kept of a session between requests (JSON in [`UploadStates`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SessionState {
    /// Bytes received.
    size: u64,
    /// The SHA-256 state of those bytes, hex ([`ResumableSha256::save`]); empty before
    /// the first byte.
    sha256: String,
    /// The multipart upload at `_uploads/<id>/blob`, once the first part is due.
    upload: Option<String>,
    /// ETags of the parts uploaded, part `i + 1` holding bytes
    /// `i * PART_SIZE .. (i + 1) * PART_SIZE`.
    etags: Vec<String>,
    /// Object (under `_uploads/<id>/`) holding bytes `etags.len() * PART_SIZE .. size`,
    /// if there are any.
    tail: Option<String>,
    /// The writer allowed to upload parts right now.
    claim: Option<Claim>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Claim {
    /// Names the request holding it.
    writer: String,
    /// Until when (milliseconds since the epoch).
    until: i64,
}

impl SessionState {
    fn hasher(&self) -> Result<ResumableSha256, BlobError> {
        if self.sha256.is_empty() {
            return Ok(ResumableSha256::default());
        }
        from_hex(&self.sha256)
            .and_then(|b| ResumableSha256::restore(&b))
            .ok_or_else(|| BlobError::Io("upload session state has a broken hash state".into()))
    }

    /// A claim by another writer that still holds.
    fn claimed_by_other(&self, writer: &str) -> bool {
        self.claim
            .as_ref()
            .is_some_and(|c| c.writer != writer && c.until > now_ms())
    }
}

/// The S3 side of a [`BlobStore`](crate::BlobStore).
pub(crate) struct S3Uploads {
    pub(crate) store: Arc<AmazonS3>,
    /// Empty, or ends with `/`.
    pub(crate) prefix: String,
    pub(crate) states: Arc<dyn UploadStates>,
    /// This node's copy of blobs, if it keeps one.
    pub(crate) cache: Option<BlobCache>,
    /// Sessions whose every byte so far came through this node, by id: their bytes are
    /// also in a cache file, kept as the blob when the session finishes here.
    through: Mutex<HashMap<String, Through>>,
}

/// A session's bytes copied into the cache as this node received them.
struct Through {
    staged: Staged,
    /// When a request last left it here.
    touched: SystemTime,
}

/// Sessions copied into the cache at once, at most; more are not copied.
const MAX_THROUGH: usize = 64;
/// A session copied into the cache that no request continued on this node for this long
/// is no longer copied (its file is dropped) when room is needed.
const THROUGH_IDLE: Duration = Duration::from_secs(600);

/// One request's progress on a session.
struct Writer<'a> {
    s3: &'a S3Uploads,
    states: &'a dyn UploadStates,
    id: &'a str,
    /// Names this request in claims and tail objects.
    nonce: String,
    /// The state as saved at `version`.
    saved: SessionState,
    version: i64,
    /// Whether this request ever took a claim.
    claimed: bool,
}

impl S3Uploads {
    pub(crate) fn connect(
        config: &S3Config,
        states: Arc<dyn UploadStates>,
        cache: Option<BlobCache>,
    ) -> Result<S3Uploads, BlobError> {
        // reqwest's TLS uses the process's rustls provider: ring, as the rest of Berth.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // Built from explicit settings only (never `from_env`): AWS_* variables are the
        // credentials of Berth's own clients, and no instance metadata is consulted
        // because static credentials are always given.
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(&config.secret_access_key)
            // No overall request timeout (object_store's default is 30 s): a blob GET
            // streams as fast as its client reads, and a server-side copy of a large blob
            // takes minutes. A connection silent for two minutes is dead, though; part
            // uploads have their own deadline (PART_DEADLINE).
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(config.allow_http)
                    .with_timeout_disabled()
                    .with_read_timeout(Duration::from_secs(120)),
            )
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(60),
                ..RetryConfig::default()
            });
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        // Over TLS, part bodies go out as UNSIGNED-PAYLOAD (the headers stay signed and
        // TLS protects the bytes): signing them means a second SHA-256 over every byte
        // pushed, as much CPU as the digest check itself. Over plain HTTP nothing else
        // protects them, so they are signed there.
        let plain_http = config.endpoint.as_deref().is_some_and(|e| {
            e.get(..7)
                .is_some_and(|p| p.eq_ignore_ascii_case("http://"))
        });
        builder = builder.with_unsigned_payload(!plain_http);
        let store = builder
            .build()
            .map_err(|e| io_err("configuring the S3 client", e))?;
        let prefix = config.prefix.trim_matches('/');
        Ok(S3Uploads {
            store: Arc::new(store),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            states,
            cache,
            through: Mutex::new(HashMap::new()),
        })
    }

    /// The cache file of session `id` if it holds exactly the session's first `offset`
    /// bytes (a new one for a session's first bytes); `None` when the session is not
    /// copied (another node received some of it, or there is no cache). Taken out while
    /// the caller adds to it, so two requests never write one file.
    async fn take_through(&self, id: &str, offset: u64) -> Option<Staged> {
        let cache = self.cache.as_ref()?;
        let (found, room) = {
            let mut through = self.through.lock().unwrap_or_else(|p| p.into_inner());
            let found = through.remove(id);
            if found.is_none() && offset == 0 && through.len() >= MAX_THROUGH {
                // Those of sessions that went on through other nodes, or were abandoned.
                let stale = SystemTime::now() - THROUGH_IDLE;
                through.retain(|_, t| t.touched >= stale);
            }
            (found, through.len() < MAX_THROUGH)
        };
        match found {
            Some(t) if t.staged.len() == offset => Some(t.staged),
            Some(_) => None,
            None if offset == 0 && room => cache.stage().await,
            None => None,
        }
    }

    /// Leaves session `id`'s cache file for its next request.
    fn put_through(&self, id: &str, staged: Staged) {
        let mut through = self.through.lock().unwrap_or_else(|p| p.into_inner());
        through.insert(
            id.to_owned(),
            Through {
                staged,
                touched: SystemTime::now(),
            },
        );
    }

    /// Drops session `id`'s cache file, if this node has one.
    fn drop_through(&self, id: &str) -> Option<Staged> {
        let mut through = self.through.lock().unwrap_or_else(|p| p.into_inner());
        through.remove(id).map(|t| t.staged)
    }

    fn key(&self, rest: &str) -> ObjectPath {
        ObjectPath::from(format!("{}{rest}", self.prefix))
    }

    /// Where the blobs are (the prefix of every blob's key).
    pub(crate) fn blobs_dir(&self) -> ObjectPath {
        self.key("blobs/sha256")
    }

    fn session_dir(&self, id: &str) -> ObjectPath {
        self.key(&format!("_uploads/{id}"))
    }

    fn staging(&self, id: &str) -> ObjectPath {
        self.key(&format!("_uploads/{id}/blob"))
    }

    fn tail(&self, id: &str, name: &str) -> ObjectPath {
        self.key(&format!("_uploads/{id}/{name}"))
    }

    pub(crate) fn blob(&self, d: &Digest) -> ObjectPath {
        let hex = d.hex();
        self.key(&format!("blobs/sha256/{}/{hex}", &hex[..2]))
    }

    async fn load(
        &self,
        states: &dyn UploadStates,
        id: &str,
    ) -> Result<(i64, SessionState), BlobError> {
        match states.load(id).await? {
            None => Err(BlobError::UploadUnknown),
            Some(SavedUploadState { version, state }) => {
                let state = match state {
                    None => SessionState::default(),
                    Some(bytes) => serde_json::from_slice(&bytes)
                        .map_err(|e| io_err("reading upload session state", e))?,
                };
                Ok((version, state))
            }
        }
    }

    /// What a request that lost a race sees: the session's current size as an offset
    /// mismatch (or that it is gone).
    async fn conflict(&self, states: &dyn UploadStates, id: &str) -> BlobError {
        match self.load(states, id).await {
            Ok((_, s)) => BlobError::OffsetMismatch { expected: s.size },
            Err(e) => e,
        }
    }

    pub(crate) async fn size(
        &self,
        states: &dyn UploadStates,
        id: &str,
    ) -> Result<Option<u64>, BlobError> {
        match self.load(states, id).await {
            Ok((_, s)) => Ok(Some(s.size)),
            Err(BlobError::UploadUnknown) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// See [`BlobStore::append`](crate::BlobStore::append).
    pub(crate) async fn append<S, E>(
        &self,
        states: &dyn UploadStates,
        id: &str,
        offset: u64,
        mut chunks: S,
    ) -> Result<u64, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        let (version, saved) = self.load(states, id).await?;
        if offset != saved.size {
            return Err(BlobError::OffsetMismatch {
                expected: saved.size,
            });
        }
        let mut w = Writer {
            s3: self,
            states,
            id,
            nonce: uuid::Uuid::new_v4().simple().to_string(),
            saved,
            version,
            claimed: false,
        };
        let mut through = self.take_through(id, offset).await;
        let mut hasher = w.saved.hasher()?;
        let mut size = w.saved.size;
        let mut etags = w.saved.etags.clone();
        // Bytes not yet in a part: the old tail, then the new ones, copied into one
        // buffer that each part leaves empty and that is reused once the part is
        // uploaded (holding the stream's chunks instead would keep hyper from reusing
        // its read buffer: fresh pages for every chunk).
        let mut pending = BytesMut::new();
        if let Some(name) = &w.saved.tail {
            match self.read_all(&self.tail(id, name)).await {
                Ok(b) => pending.extend_from_slice(&b),
                // Another request replaced the tail since the state was read.
                Err(BlobError::NotFound) => return Err(self.conflict(states, id).await),
                Err(e) => return Err(e),
            }
        }
        // The old tail's bytes, at the head of the first part or the new tail: in the
        // cache file already.
        let mut copied = pending.len();
        let mut stream_error = None;
        let mut received = false;
        let result: Result<(), BlobError> = async {
            loop {
                match chunks.next().await {
                    Some(Ok(b)) => {
                        if b.is_empty() {
                            continue;
                        }
                        received = true;
                        hasher.update(&b);
                        size += b.len() as u64;
                        let mut rest = &b[..];
                        while !rest.is_empty() {
                            if pending.capacity() < PART {
                                // Reclaims the buffer of the last part, uploaded by now.
                                pending.reserve(PART - pending.len());
                            }
                            let n = rest.len().min(PART - pending.len());
                            pending.extend_from_slice(&rest[..n]);
                            rest = &rest[n..];
                            if pending.len() == PART {
                                let part = pending.split().freeze();
                                let fresh = part.slice(copied.min(PART)..);
                                copied = copied.saturating_sub(PART);
                                let upload = w.upload_part(etags.len(), part.into());
                                let etag = match through.as_mut() {
                                    Some(t) => {
                                        let (etag, ok) = tokio::join!(upload, t.write(fresh));
                                        if !ok {
                                            through = None;
                                        }
                                        etag?
                                    }
                                    None => upload.await?,
                                };
                                etags.push(etag);
                            }
                        }
                    }
                    Some(Err(e)) => {
                        stream_error = Some(e.to_string());
                        return Ok(());
                    }
                    None => return Ok(()),
                }
            }
        }
        .await;
        if let Err(e) = result {
            w.release().await;
            return Err(e);
        }
        if !received {
            w.release().await;
            if let Some(t) = through {
                self.put_through(id, t);
            }
            return match stream_error {
                Some(e) => Err(BlobError::Io(format!(
                    "upload body failed after {size} bytes: {e}"
                ))),
                None => Ok(size),
            };
        }
        // The rest becomes the new tail.
        let tail = if pending.is_empty() {
            None
        } else {
            let start = etags.len() as u64 * PART_SIZE;
            let name = format!("tail-{start}-{}", w.nonce);
            let bytes = pending.split().freeze();
            let fresh = bytes.slice(copied.min(bytes.len())..);
            let key = self.tail(id, &name);
            let put = self.store.put(&key, PutPayload::from(bytes));
            let put = match through.as_mut() {
                Some(t) => {
                    let (put, ok) = tokio::join!(put, t.write(fresh));
                    if !ok {
                        through = None;
                    }
                    put
                }
                None => put.await,
            };
            if let Err(e) = put {
                w.release().await;
                return Err(e.into());
            }
            Some(name)
        };
        let old_tail = w.saved.tail.clone();
        let mut next = w.saved.clone();
        next.size = size;
        next.sha256 = to_hex(&hasher.save());
        next.etags = etags;
        next.tail = tail.clone();
        if next.claim.as_ref().is_some_and(|c| c.writer == w.nonce) {
            next.claim = None;
        }
        if !w.save(&next).await? {
            if let Some(name) = &tail {
                let _ = self.store.delete(&self.tail(id, name)).await;
            }
            w.release().await;
            return Err(self.conflict(states, id).await);
        }
        if let Some(old) = old_tail.filter(|old| Some(old) != tail.as_ref()) {
            let _ = self.store.delete(&self.tail(id, &old)).await;
        }
        if let Some(t) = through {
            self.put_through(id, t);
        }
        match stream_error {
            Some(e) => Err(BlobError::Io(format!(
                "upload body failed after {size} bytes: {e}"
            ))),
            None => Ok(size),
        }
    }

    /// See [`BlobStore::finish_with`](crate::BlobStore::finish_with).
    pub(crate) async fn finish_with<G, E, F, Fut>(
        &self,
        states: &dyn UploadStates,
        id: &str,
        expected: &Digest,
        gate: F,
    ) -> Result<Result<(u64, G), E>, BlobError>
    where
        F: FnOnce(u64) -> Fut,
        Fut: std::future::Future<Output = Result<G, E>>,
    {
        let (version, saved) = self.load(states, id).await?;
        let mut w = Writer {
            s3: self,
            states,
            id,
            nonce: uuid::Uuid::new_v4().simple().to_string(),
            saved,
            version,
            claimed: false,
        };
        let computed = w.saved.hasher()?.finish();
        if computed != *expected {
            self.drop_through(id);
            self.discard(id, &w.saved).await;
            return Err(BlobError::DigestMismatch {
                expected: *expected,
                computed,
            });
        }
        let size = w.saved.size;
        // The claim makes any request still adding to the session lose. It writes the
        // session's state to the metadata store, so it comes before `gate`, whose lock
        // may be that store's only write lock (SQLite); so does its release below, after
        // the lock is dropped.
        w.claim(false).await?;
        let held = match gate(size).await {
            Ok(held) => held,
            Err(e) => {
                w.release().await;
                return Ok(Err(e));
            }
        };
        let dest = self.blob(expected);
        // Stored already (another session, or this one finished before and its caller
        // failed afterwards): nothing to publish. (Under `gate`'s lock, the collector
        // cannot be deleting it.)
        let published = match self.exists(&dest).await {
            Ok(true) => Ok(()),
            Ok(false) => self.publish(&w.saved, id, &dest).await,
            Err(e) => Err(e),
        };
        if let Err(e) = published {
            drop(held);
            w.release().await;
            return Err(e);
        }
        // Every byte came through this node and the digest is verified: the cache file
        // holds the blob (kept if it holds exactly `size` bytes).
        if let Some(staged) = self.drop_through(id) {
            staged.keep_later(*expected, size);
        }
        self.discard(id, &w.saved).await;
        Ok(Ok((size, held)))
    }

    async fn exists(&self, path: &ObjectPath) -> Result<bool, BlobError> {
        match self.store.head(path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Puts the verified bytes of a session at `dest`.
    async fn publish(
        &self,
        saved: &SessionState,
        id: &str,
        dest: &ObjectPath,
    ) -> Result<(), BlobError> {
        let Some(upload) = &saved.upload else {
            // Never a part: the tail (if any) is the whole blob.
            return match &saved.tail {
                None => Ok(self.store.put(dest, PutPayload::new()).await.map(drop)?),
                Some(name) => Ok(self.store.copy(&self.tail(id, name), dest).await?),
            };
        };
        let staging = self.staging(id);
        // Completed by an earlier attempt that failed later on: copy what it left.
        if let Ok(meta) = self.store.head(&staging).await {
            if meta.size == saved.size {
                return self.copy(&staging, dest, meta.size).await;
            }
        }
        let mut parts: Vec<PartId> = saved
            .etags
            .iter()
            .map(|e| PartId {
                content_id: e.clone(),
            })
            .collect();
        if let Some(name) = &saved.tail {
            let bytes = self.read_all(&self.tail(id, name)).await?;
            let part = with_deadline(self.store.put_part(
                &staging,
                upload,
                parts.len(),
                PutPayload::from(bytes),
            ))
            .await?;
            parts.push(part);
        }
        self.store
            .complete_multipart(&staging, upload, parts)
            .await?;
        let meta = self.store.head(&staging).await?;
        if meta.size != saved.size {
            return Err(BlobError::Io(format!(
                "the completed upload holds {} bytes, the session received {}",
                meta.size, saved.size
            )));
        }
        self.copy(&staging, dest, meta.size).await
    }

    /// Copies an object; server-side up to S3's single-copy limit, through this node
    /// (a streamed multipart upload) above it.
    async fn copy(&self, from: &ObjectPath, to: &ObjectPath, size: u64) -> Result<(), BlobError> {
        if size <= MAX_SINGLE_COPY {
            return Ok(self.store.copy(from, to).await?);
        }
        let mut source = self.store.get(from).await?.into_stream();
        let upload = self.store.put_multipart(to).await?;
        let mut out = object_store::WriteMultipart::new_with_chunk_size(upload, PART_SIZE as usize);
        let copied: Result<(), BlobError> = async {
            while let Some(chunk) = source.try_next().await? {
                out.wait_for_capacity(2).await?;
                out.put(chunk);
            }
            Ok(())
        }
        .await;
        match copied {
            Ok(()) => {
                out.finish().await?;
                Ok(())
            }
            Err(e) => {
                let _ = out.abort().await;
                Err(e)
            }
        }
    }

    /// Removes what a session left in the bucket (best effort): its multipart upload
    /// and every object under `_uploads/<id>/`.
    async fn discard(&self, id: &str, saved: &SessionState) {
        if let Some(upload) = &saved.upload {
            let _ = self.store.abort_multipart(&self.staging(id), upload).await;
        }
        let dir = self.session_dir(id);
        let listed: Vec<_> = match self.store.list(Some(&dir)).try_collect().await {
            Ok(l) => l,
            Err(_) => return,
        };
        for meta in listed {
            let _ = self.store.delete(&meta.location).await;
        }
    }

    /// See [`BlobStore::cancel`](crate::BlobStore::cancel).
    pub(crate) async fn cancel(
        &self,
        states: &dyn UploadStates,
        id: &str,
    ) -> Result<(), BlobError> {
        self.drop_through(id);
        let (_, saved) = self.load(states, id).await?;
        self.discard(id, &saved).await;
        Ok(())
    }

    /// Removes staging objects (under `_uploads/`) last written before `older_than`: left
    /// by sessions that ended without cleaning up. Returns how many.
    pub(crate) async fn expire(&self, older_than: SystemTime) -> Result<usize, BlobError> {
        // Cache files of sessions that went on elsewhere or were abandoned.
        self.through
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, t| t.touched >= older_than);
        let cutoff = millis(older_than);
        let dir = self.key("_uploads");
        let listed: Vec<_> = self.store.list(Some(&dir)).try_collect().await?;
        let mut removed = 0;
        for meta in listed {
            if meta.last_modified.timestamp_millis() < cutoff
                && self.store.delete(&meta.location).await.is_ok()
            {
                removed += 1;
            }
        }
        Ok(removed)
    }

    pub(crate) async fn check(&self) -> Result<(), BlobError> {
        self.store
            .list_with_delimiter(Some(&self.key("blobs/sha256")))
            .await?;
        Ok(())
    }

    /// A URL that lets anyone GET the blob for `ttl`.
    pub(crate) async fn presigned_get(
        &self,
        d: &Digest,
        ttl: Duration,
    ) -> Result<String, BlobError> {
        let url = self
            .store
            .signed_url(http::Method::GET, &self.blob(d), ttl)
            .await?;
        Ok(url.to_string())
    }

    /// A small object (a tail), whole.
    async fn read_all(&self, path: &ObjectPath) -> Result<Bytes, BlobError> {
        Ok(self.store.get(path).await?.bytes().await?)
    }
}

impl Writer<'_> {
    async fn save(&mut self, next: &SessionState) -> Result<bool, BlobError> {
        let bytes = serde_json::to_vec(next).map_err(|e| io_err("encoding upload state", e))?;
        if !self.states.save(self.id, self.version, &bytes).await? {
            return Ok(false);
        }
        self.version += 1;
        self.saved = next.clone();
        Ok(true)
    }

    /// Takes or renews this request's claim on the session's parts (creating the
    /// multipart upload if `multipart` and there is none yet). A claim held by another
    /// request, or a save that came first, is a conflict.
    async fn claim(&mut self, multipart: bool) -> Result<(), BlobError> {
        if self.saved.claimed_by_other(&self.nonce) {
            return Err(self.s3.conflict(self.states, self.id).await);
        }
        let mut next = self.saved.clone();
        let mut created = None;
        if multipart && next.upload.is_none() {
            let upload = self
                .s3
                .store
                .create_multipart(&self.s3.staging(self.id))
                .await?;
            next.upload = Some(upload.clone());
            created = Some(upload);
        }
        self.claimed = true;
        let until = now_ms() + i64::try_from(CLAIM.as_millis()).unwrap_or(i64::MAX);
        next.claim = Some(Claim {
            writer: self.nonce.clone(),
            until,
        });
        if !self.save(&next).await? {
            if let Some(upload) = created {
                let _ = self
                    .s3
                    .store
                    .abort_multipart(&self.s3.staging(self.id), &upload)
                    .await;
            }
            return Err(self.s3.conflict(self.states, self.id).await);
        }
        Ok(())
    }

    /// Drops this request's claim if the session still names it, also after losing a
    /// race (a request that saved meanwhile keeps a claim it found), so that it does not
    /// hold part uploads back until it runs out. Best effort. Called only once this
    /// request uploads nothing more.
    async fn release(&mut self) {
        if !self.claimed {
            return;
        }
        let Ok((version, current)) = self.s3.load(self.states, self.id).await else {
            return;
        };
        if current.claim.as_ref().map(|c| &c.writer) == Some(&self.nonce) {
            let mut next = current;
            next.claim = None;
            self.version = version;
            let _ = self.save(&next).await;
        }
    }

    /// Uploads part `index + 1` under a freshly renewed claim; returns its ETag.
    async fn upload_part(&mut self, index: usize, part: PutPayload) -> Result<String, BlobError> {
        self.claim(true).await?;
        let upload = self
            .saved
            .upload
            .clone()
            .expect("claim(true) creates the upload");
        let part = with_deadline(self.s3.store.put_part(
            &self.s3.staging(self.id),
            &upload,
            index,
            part,
        ))
        .await?;
        Ok(part.content_id)
    }
}

async fn with_deadline<T>(
    f: impl std::future::Future<Output = object_store::Result<T>>,
) -> Result<T, BlobError> {
    match tokio::time::timeout(PART_DEADLINE, f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(BlobError::Io(format!(
            "a part upload took longer than {PART_DEADLINE:?}"
        ))),
    }
}

fn now_ms() -> i64 {
    millis(SystemTime::now())
}

/// Milliseconds since the epoch (0 before it).
fn millis(t: SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    let pairs = s.as_bytes().chunks_exact(2);
    if !pairs.remainder().is_empty() {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    pairs
        .map(|p| Some((digit(p[0])? << 4) | digit(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        assert_eq!(
            from_hex(&to_hex(&[0, 1, 0xab, 0xff])).unwrap(),
            [0, 1, 0xab, 0xff]
        );
        assert!(from_hex("abc").is_none());
        assert!(from_hex("zz").is_none());
    }
}
