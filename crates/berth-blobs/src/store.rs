//! [`BlobStore`]: blobs in an `object_store` backend, uploads staged in local files
//! (local and in-memory backends) or in the bucket (the S3 backend, see [`crate::s3`],
//! whose sessions any node can continue).
//!
//! Layout (local backend, `root` = the data dir):
//! - `root/blobs/sha256/<2 hex>/<64 hex>`: published blobs, served by
//!   `object_store::local::LocalFileSystem` rooted at `root`;
//! - `root/uploads/<uuid>`: the bytes of one upload session so far. The file *is*
//!   the session: its length is the session's size, its mtime its last activity, so
//!   sessions survive a restart. `root/uploads/put-<uuid>` are short-lived staging
//!   files of [`BlobStore::put_bytes`].
//!
//! Directories are created 0700 and files 0600 (Unix): only the server's user reads them.
//!
//! Durability contract: appends are not fsynced. `finish` verifies the digest over
//! the staged file, fsyncs it, renames it into place and fsyncs the parent directory,
//! so a blob is visible only once complete, verified and durable. After a crash the
//! staged file may hold fewer bytes than were acknowledged (clients re-query the size
//! and resume) — never unverified bytes in a blob, since `finish` rehashes the file
//! whenever the in-memory hash state does not cover it exactly.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use futures::stream::{BoxStream, Stream, StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectStore, ObjectStoreExt};
use tokio::sync::OwnedMutexGuard;

use crate::cache::BlobCache;
use crate::digest::Sha256;
use crate::error::io_err;
use crate::s3::{S3Config, S3Uploads};
use crate::sessions::{MemoryUploadStates, UploadStates};
use crate::{BlobError, Digest};

/// Bytes gathered from the upload stream before they are handed to a blocking
/// thread to be written and hashed (one batch in flight while the next is gathered,
/// so an upload holds two batch buffers).
const APPEND_BATCH: usize = 1 << 20;
/// A batch goes to the file in writes of this size, each hashed right after it is
/// written (while its bytes are still in the CPU cache). Larger writes make the kernel
/// back the page cache with larger folios, which on the measured VM cost several times
/// more to fill (see BENCHMARKS.md, "CPU per GiB pushed").
pub(crate) const WRITE_SLICE: usize = 64 << 10;
/// Read size when rehashing a staged file.
const REHASH_CHUNK: usize = 1 << 20;
/// Chunk size of [`BlobReader::stream`] for the local backend.
const READ_CHUNK: usize = 256 << 10;
const PUT_PREFIX: &str = "put-";
/// Names of spool files ([`crate::Spool`]) in the upload directory: `spool-<uuid>`.
pub(crate) const SPOOL_PREFIX: &str = "spool-";

/// A blob (or a range of it) being read.
pub struct BlobReader {
    /// Size of the whole blob.
    pub size: u64,
    /// First byte delivered.
    pub start: u64,
    /// Last byte delivered (inclusive). For an empty blob, `start == end == 0` and
    /// the stream yields nothing; use [`BlobReader::len`].
    pub end: u64,
    /// The bytes `start..=end`, in chunks of bounded size.
    pub stream: BoxStream<'static, Result<Bytes, BlobError>>,
}

impl BlobReader {
    /// Number of bytes the stream yields.
    pub fn len(&self) -> u64 {
        if self.size == 0 {
            0
        } else {
            self.end - self.start + 1
        }
    }

    /// True when the stream yields no bytes (only for an empty blob).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobReader")
            .field("size", &self.size)
            .field("start", &self.start)
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

/// A blob object as the store lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    pub digest: Digest,
    /// Its size and when it was last written, if the listing said
    /// ([`BlobStore::written`] tells them otherwise).
    pub written: Option<(u64, SystemTime)>,
}

/// Content-addressed blob store with resumable, verified uploads. Cheap to clone.
#[derive(Clone)]
pub struct BlobStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobStore")
            .field("store", &self.inner.store.to_string())
            .field("uploads", &self.inner.uploads)
            .finish_non_exhaustive()
    }
}

struct Inner {
    store: Arc<dyn ObjectStore>,
    /// Set for the S3 backend, which keeps upload sessions in the bucket and their
    /// state in [`UploadStates`]; the local staging fields below are then unused.
    s3: Option<S3Uploads>,
    /// Set for the local backend: the filesystem view used to publish by rename.
    local: Option<LocalFileSystem>,
    /// Directory of staged uploads.
    uploads: PathBuf,
    /// Per-session state, created lazily (also for sessions found on disk after a
    /// restart). The tokio mutex serializes appends/finish/cancel of one session.
    sessions: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Session>>>>,
}

#[derive(Default)]
struct Session {
    /// The session was finished/cancelled/expired (or its file vanished).
    gone: bool,
    /// Hash of the first `len` staged bytes; `None` when unknown (restart, or an
    /// append that failed mid-write), in which case the file is rehashed when needed.
    hash: Option<HashState>,
}

#[derive(Clone)]
struct HashState {
    hasher: Sha256,
    len: u64,
}

impl HashState {
    fn new() -> HashState {
        HashState {
            hasher: Sha256::new(),
            len: 0,
        }
    }
}

/// A locked, existing session.
struct Locked {
    entry: Arc<tokio::sync::Mutex<Session>>,
    guard: OwnedMutexGuard<Session>,
    path: PathBuf,
    size: u64,
}

/// What a blocking append worker owns; holding the session guard here keeps the
/// session locked until the file is no longer being written, even if the caller's
/// future is dropped mid-append.
struct Writer {
    guard: OwnedMutexGuard<Session>,
    file: File,
    hash: HashState,
}

/// What a blocking append batch gives back: the writer, the batch buffer (emptied, to
/// be refilled) and whether the write succeeded.
type BatchDone = (Writer, Vec<u8>, std::io::Result<()>);

impl BlobStore {
    /// Blobs under `root/blobs/sha256/<2 hex>/<64 hex>` (object_store
    /// `LocalFileSystem` rooted at `root`), upload staging files under `root/uploads/`.
    /// Creates the directories if needed.
    pub async fn local(root: &Path) -> Result<BlobStore, BlobError> {
        let root = root.to_path_buf();
        blocking(move || {
            let blobs = root.join("blobs").join("sha256");
            private_dir_all(&blobs).map_err(|e| io_err("creating blob dir", e))?;
            private_dir_all(&root.join("uploads")).map_err(|e| io_err("creating upload dir", e))?;
            for dir in [root.as_path(), &root.join("blobs"), &blobs] {
                fsync_dir(dir)?;
            }
            let fs = LocalFileSystem::new_with_prefix(&root)?.with_fsync(true);
            let uploads = std::fs::canonicalize(root.join("uploads"))
                .map_err(|e| io_err("resolving upload dir", e))?;
            Ok(BlobStore::new(Arc::new(fs.clone()), Some(fs), uploads))
        })
        .await
    }

    /// Blobs in an S3-compatible bucket (`config.prefix/blobs/sha256/<2 hex>/<64 hex>`,
    /// the local layout), upload sessions staged in the bucket with their state kept in
    /// `states`, so that any node sharing both can continue any session. Nothing is
    /// contacted yet: [`check`](Self::check) says whether the bucket answers.
    pub fn s3(config: &S3Config, states: Arc<dyn UploadStates>) -> Result<BlobStore, BlobError> {
        BlobStore::s3_cached(config, states, None)
    }

    /// [`s3`](Self::s3) with a node-local [`BlobCache`] in front of the bucket: blobs
    /// this node receives whole or reads whole are kept in it, and read from it while
    /// they stay (see [`crate::cache`]).
    pub fn s3_cached(
        config: &S3Config,
        states: Arc<dyn UploadStates>,
        cache: Option<BlobCache>,
    ) -> Result<BlobStore, BlobError> {
        let s3 = S3Uploads::connect(config, states, cache)?;
        Ok(BlobStore {
            inner: Arc::new(Inner {
                store: s3.store.clone(),
                s3: Some(s3),
                local: None,
                uploads: PathBuf::new(),
                sessions: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Blobs in object_store's `InMemory`; upload staging files in `staging`
    /// (created if needed; tests pass a tempdir).
    pub async fn in_memory(staging: &Path) -> Result<BlobStore, BlobError> {
        let dir = staging.to_path_buf();
        blocking(move || private_dir_all(&dir).map_err(|e| io_err("creating staging dir", e)))
            .await?;
        Ok(BlobStore::new(
            Arc::new(InMemory::new()),
            None,
            staging.to_path_buf(),
        ))
    }

    fn new(store: Arc<dyn ObjectStore>, local: Option<LocalFileSystem>, uploads: PathBuf) -> Self {
        BlobStore {
            inner: Arc::new(Inner {
                store,
                s3: None,
                local,
                uploads,
                sessions: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Whether the store can be reached, without writing anything: the blob directory
    /// and the upload staging directory can be listed (the local backend), or a listing
    /// of the blobs answers (others). The error names what failed.
    pub async fn check(&self) -> Result<(), BlobError> {
        if let Some(s3) = &self.inner.s3 {
            return s3.check().await;
        }
        let mut dirs = vec![("upload directory", self.inner.uploads.clone())];
        match &self.inner.local {
            Some(fs) => dirs.push((
                "blob directory",
                fs.path_to_filesystem(&ObjectPath::from("blobs/sha256"))?,
            )),
            None => {
                self.inner
                    .store
                    .list_with_delimiter(Some(&ObjectPath::from("blobs/sha256")))
                    .await?;
            }
        }
        blocking(move || {
            for (what, dir) in dirs {
                std::fs::read_dir(&dir)
                    .map_err(|e| io_err(&format!("listing the {what} {}", dir.display()), e))?;
            }
            Ok(())
        })
        .await
    }

    /// Size of the blob, if present.
    pub async fn stat(&self, d: &Digest) -> Result<Option<u64>, BlobError> {
        let started = std::time::Instant::now();
        let head = self.inner.store.head(&self.blob_path(d)).await;
        crate::observed("stat", started);
        match head {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The whole blob, or the byte range `start..=end` (`end` defaults to, and is
    /// clamped to, the last byte), streamed in chunks of bounded size. `None` if the
    /// blob does not exist; [`BlobError::RangeNotSatisfiable`] if `start` is at or
    /// beyond the end of the blob or `end < start`.
    pub async fn get(
        &self,
        d: &Digest,
        range: Option<(u64, Option<u64>)>,
    ) -> Result<Option<BlobReader>, BlobError> {
        let cache = self.cache();
        if let Some(cache) = cache {
            if let Some((file, size)) = cache.open_blob(d).await {
                let (start, end) = within(size, range)?;
                return Ok(Some(BlobReader {
                    size,
                    start,
                    end,
                    stream: file_stream(file, start..end + 1),
                }));
            }
        }
        if range.is_none() && self.inner.s3.is_some() {
            // The whole blob: one request to the bucket, which tells the size too.
            let started = std::time::Instant::now();
            let got = self.inner.store.get(&self.blob_path(d)).await;
            crate::observed("get", started);
            let result = match got {
                Ok(r) => r,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let size = result.meta.size;
            let mut stream = result.into_stream().map_err(BlobError::from).boxed();
            if let Some(cache) = cache {
                stream = cache.fill_from_download(*d, size, stream);
            }
            return Ok(Some(BlobReader {
                size,
                start: 0,
                end: size.saturating_sub(1),
                stream,
            }));
        }
        let Some(size) = self.stat(d).await? else {
            return Ok(None);
        };
        let (start, end) = within(size, range)?;
        let opts = GetOptions {
            range: (size > 0).then(|| GetRange::Bounded(start..end + 1)),
            ..GetOptions::default()
        };
        let result = match self.inner.store.get_opts(&self.blob_path(d), opts).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let stream = match result.payload {
            GetResultPayload::File(file, _) => file_stream(file, result.range),
            GetResultPayload::Stream(s) => s.map_err(BlobError::from).boxed(),
        };
        Ok(Some(BlobReader {
            size,
            start,
            end,
            stream,
        }))
    }

    /// Whether this node's [`BlobCache`] holds `d` right now (never whether the blob
    /// exists: a cache is not asked that).
    pub fn cached(&self, d: &Digest) -> bool {
        self.cache().is_some_and(|c| c.contains(d))
    }

    /// This node's blob cache, if it has one.
    pub fn cache(&self) -> Option<&BlobCache> {
        self.inner.s3.as_ref().and_then(|s3| s3.cache.as_ref())
    }

    /// Stores a small blob (e.g. an image config) in one call, verified and durable
    /// like a finished upload. Returns its digest.
    pub async fn put_bytes(&self, data: Bytes) -> Result<Digest, BlobError> {
        let digest = if data.len() <= 64 << 10 {
            Digest::of(&data)
        } else {
            let data = data.clone();
            blocking(move || Ok(Digest::of(&data))).await?
        };
        if self.stat(&digest).await?.is_some() {
            return Ok(digest);
        }
        match &self.inner.local {
            Some(fs) => {
                let dest = fs.path_to_filesystem(&self.blob_path(&digest))?;
                let staged = self
                    .inner
                    .uploads
                    .join(format!("{PUT_PREFIX}{}", uuid::Uuid::new_v4()));
                blocking(move || {
                    let written = (|| {
                        let mut f = private_file().write(true).create_new(true).open(&staged)?;
                        f.write_all(&data)?;
                        f.sync_all()
                    })();
                    if let Err(e) = written {
                        let _ = std::fs::remove_file(&staged);
                        return Err(io_err("staging blob", e));
                    }
                    let published = publish_local(&staged, &dest);
                    if published.is_err() {
                        let _ = std::fs::remove_file(&staged);
                    }
                    published
                })
                .await?;
            }
            None => {
                self.inner
                    .store
                    .put(&self.blob_path(&digest), data.into())
                    .await?;
            }
        }
        Ok(digest)
    }

    /// Starts an upload session; returns its id (a UUID v4 string).
    pub async fn start_upload(&self) -> Result<String, BlobError> {
        let id = uuid::Uuid::new_v4().to_string();
        if self.inner.s3.is_some() {
            // The session exists once the caller records it in the upload states.
            return Ok(id);
        }
        let dir = self.inner.uploads.clone();
        let path = dir.join(&id);
        blocking(move || {
            private_file()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| io_err("creating upload file", e))?;
            // So that the session survives a crash, not only a restart.
            fsync_dir(&dir)
        })
        .await?;
        Ok(id)
    }

    /// Appends `chunks` to the upload at `offset`, which must equal the upload's
    /// current size (else [`BlobError::OffsetMismatch`] with the current size).
    /// Bytes are written to the staging file and hashed as they pass, in batches of
    /// at most 1 MiB, so memory stays bounded whatever the stream's length. Appends
    /// to one session are serialized: a concurrent one waits, then typically gets
    /// `OffsetMismatch`. Returns the new size.
    ///
    /// If the stream yields an error, the bytes received before it are kept (the
    /// client can query [`upload_size`](Self::upload_size) and resume) and
    /// [`BlobError::Io`] is returned. Appends are not fsynced; see the module docs.
    pub async fn append<S, E>(&self, id: &str, offset: u64, mut chunks: S) -> Result<u64, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: fmt::Display,
    {
        if let Some(s3) = &self.inner.s3 {
            return s3.append(&*s3.states, id, offset, chunks).await;
        }
        let mut locked = self.lock_session(id).await?;
        if offset != locked.size {
            return Err(BlobError::OffsetMismatch {
                expected: locked.size,
            });
        }
        let size = locked.size;
        let path = locked.path.clone();
        let cached = locked.guard.hash.take().filter(|h| h.len == size);
        let guard = locked.guard;
        let mut writer = Some(
            blocking(move || {
                let hash = match cached {
                    Some(h) => h,
                    None => rehash(&path)?,
                };
                let file = OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .map_err(|e| io_err("opening upload file", e))?;
                Ok(Writer { guard, file, hash })
            })
            .await?,
        );

        // Two batch buffers take turns: one is filled from the stream while the other is
        // written and hashed on a blocking thread, then comes back to be refilled. The
        // stream's chunks are copied out and dropped at once, so hyper reuses its read
        // buffer instead of allocating (and the kernel zeroing) fresh pages for every
        // chunk a batch would otherwise hold on to; the file gets one write per batch
        // instead of one per chunk.
        let mut spare: Option<Vec<u8>> = None;
        let mut pending: Option<tokio::task::JoinHandle<BatchDone>> = None;
        let mut carry: Option<Bytes> = None;
        let mut stream_error = None;
        let mut write_error = None;
        loop {
            let mut batch = spare
                .take()
                .unwrap_or_else(|| Vec::with_capacity(APPEND_BATCH));
            let mut done = false;
            while batch.len() < APPEND_BATCH {
                let b = match carry.take() {
                    Some(b) => b,
                    None => match chunks.next().await {
                        Some(Ok(b)) => b,
                        Some(Err(e)) => {
                            stream_error = Some(e.to_string());
                            done = true;
                            break;
                        }
                        None => {
                            done = true;
                            break;
                        }
                    },
                };
                let room = APPEND_BATCH - batch.len();
                if b.len() > room {
                    batch.extend_from_slice(&b[..room]);
                    carry = Some(b.slice(room..));
                } else {
                    batch.extend_from_slice(&b);
                }
            }
            if let Some(task) = pending.take() {
                let (w, buf, res) = task.await.map_err(|e| io_err("append task", e))?;
                writer = Some(w);
                spare = Some(buf);
                if let Err(e) = res {
                    write_error = Some(e);
                    break;
                }
            }
            if !batch.is_empty() {
                let mut w = writer.take().expect("writer is home between batches");
                pending = Some(tokio::task::spawn_blocking(move || {
                    for piece in batch.chunks(WRITE_SLICE) {
                        if let Err(e) = w.file.write_all(piece) {
                            return (w, batch, Err(e));
                        }
                        w.hash.hasher.update(piece);
                        w.hash.len += piece.len() as u64;
                    }
                    batch.clear();
                    (w, batch, Ok(()))
                }));
            }
            if done {
                break;
            }
        }
        if let Some(task) = pending.take() {
            let (w, _, res) = task.await.map_err(|e| io_err("append task", e))?;
            writer = Some(w);
            if let Err(e) = res {
                write_error = Some(e);
            }
        }
        let mut w = writer.expect("writer is home after the last batch");
        if let Some(e) = write_error {
            // Part of a batch may be on disk: the hash no longer matches the file.
            w.guard.hash = None;
            return Err(io_err("writing upload file", e));
        }
        let new_size = w.hash.len;
        w.guard.hash = Some(w.hash);
        match stream_error {
            Some(e) => Err(BlobError::Io(format!(
                "upload body failed after {new_size} bytes: {e}"
            ))),
            None => Ok(new_size),
        }
    }

    /// Current size of the upload, or `None` if there is no such session.
    pub async fn upload_size(&self, id: &str) -> Result<Option<u64>, BlobError> {
        if !is_session_id(id) {
            return Ok(None);
        }
        if let Some(s3) = &self.inner.s3 {
            return s3.size(&*s3.states, id).await;
        }
        match tokio::fs::metadata(self.inner.uploads.join(id)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("reading upload file", e)),
        }
    }

    /// Verifies that everything appended hashes to `expected`, fsyncs the staged
    /// file, moves it into place (the blob becomes visible only then) and ends the
    /// session. If the blob already exists the staged data is simply dropped.
    /// Returns the blob's size.
    ///
    /// On [`BlobError::DigestMismatch`] the session is ended too and its data
    /// removed (as OCI says a failed closing PUT ends the upload); the client must
    /// start over.
    pub async fn finish(&self, id: &str, expected: &Digest) -> Result<u64, BlobError> {
        let opened = self
            .finish_with(id, expected, |_| async { Ok::<(), Infallible>(()) })
            .await?;
        Ok(opened.map(|(size, ())| size).unwrap_or_else(|e| match e {}))
    }

    /// [`finish`](Self::finish), with `gate` run between the verification and the
    /// publication: given the verified size, it returns what the caller holds while the
    /// object is put in place (the metadata store's lock of the blob's row, which the
    /// garbage collector's deletion of that object waits for). If `gate` fails nothing
    /// is published and the session stays as it was (`Ok(Err(..))`); else the caller
    /// gets the size and what `gate` gave.
    pub async fn finish_with<G, E, F, Fut>(
        &self,
        id: &str,
        expected: &Digest,
        gate: F,
    ) -> Result<Result<(u64, G), E>, BlobError>
    where
        F: FnOnce(u64) -> Fut,
        Fut: Future<Output = Result<G, E>>,
    {
        if let Some(s3) = &self.inner.s3 {
            if !is_session_id(id) {
                return Err(BlobError::UploadUnknown);
            }
            return s3.finish_with(&*s3.states, id, expected, gate).await;
        }
        let locked = self.lock_session(id).await?;
        let Locked {
            entry,
            guard,
            path,
            size,
        } = locked;
        let expected = *expected;
        let cached = guard.hash.clone().filter(|h| h.len == size);
        let staged = path.clone();
        let local = self.inner.local.is_some();
        // Verification runs on a blocking thread that owns the session guard, so a
        // dropped caller cannot leave it half done unlocked.
        let (mut guard, checked) = blocking(move || {
            let mut guard = guard;
            let hash = match cached {
                Some(h) => h,
                None => rehash(&staged)?,
            };
            let computed = hash.hasher.clone().finish();
            if computed != expected {
                guard.gone = true;
                let _ = std::fs::remove_file(&staged);
                return Ok((guard, Err(BlobError::DigestMismatch { expected, computed })));
            }
            if local {
                File::open(&staged)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| io_err("syncing upload file", e))?;
            }
            guard.hash = Some(hash.clone());
            Ok((guard, Ok(hash.len)))
        })
        .await?;
        let size = match checked {
            Ok(size) => size,
            Err(e) => {
                drop(guard);
                self.forget(id, &entry);
                return Err(e);
            }
        };
        let held = match gate(size).await {
            Ok(held) => held,
            Err(e) => return Ok(Err(e)),
        };
        let dest = self.blob_path(&expected);
        match &self.inner.local {
            Some(fs) => {
                let dest = fs.path_to_filesystem(&dest)?;
                guard = blocking(move || {
                    publish_local(&path, &dest)?;
                    guard.gone = true;
                    Ok(guard)
                })
                .await?;
            }
            None => {
                // In-memory backend: copy the verified staged file into the store.
                if self.stat(&expected).await?.is_none() {
                    let data = tokio::fs::read(&path)
                        .await
                        .map_err(|e| io_err("reading upload file", e))?;
                    self.inner
                        .store
                        .put(&dest, Bytes::from(data).into())
                        .await?;
                }
                guard.gone = true;
                let _ = tokio::fs::remove_file(&path).await;
            }
        }
        drop(guard);
        self.forget(id, &entry);
        Ok(Ok((size, held)))
    }

    /// Abandons an upload session and removes its data.
    pub async fn cancel(&self, id: &str) -> Result<(), BlobError> {
        if let Some(s3) = &self.inner.s3 {
            if !is_session_id(id) {
                return Err(BlobError::UploadUnknown);
            }
            return s3.cancel(&*s3.states, id).await;
        }
        let mut locked = self.lock_session(id).await?;
        locked.guard.gone = true;
        let res = tokio::fs::remove_file(&locked.path).await;
        drop(locked.guard);
        self.forget(id, &locked.entry);
        match res {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(BlobError::UploadUnknown),
            Err(e) => Err(io_err("removing upload file", e)),
        }
    }

    /// Removes upload sessions (and stale `put_bytes` staging files) whose staged
    /// file was last modified before `older_than`. Sessions busy with an append or
    /// finish are skipped. Returns how many were removed.
    ///
    /// The S3 backend removes the staging objects last written before `older_than`
    /// instead (a session's multipart upload goes with [`cancel`](Self::cancel), which
    /// the caller runs for the sessions it expires).
    pub async fn expire_uploads(&self, older_than: SystemTime) -> Result<usize, BlobError> {
        if let Some(s3) = &self.inner.s3 {
            return s3.expire(older_than).await;
        }
        let mut dir = tokio::fs::read_dir(&self.inner.uploads)
            .await
            .map_err(|e| io_err("listing uploads", e))?;
        let mut removed = 0;
        while let Some(ent) = dir
            .next_entry()
            .await
            .map_err(|e| io_err("listing uploads", e))?
        {
            let Some(name) = ent.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let is_session = is_session_id(&name);
            // Stale `put_bytes` staging files and spool files (of a fetch cut short by a
            // crash) go the same way.
            let is_put = [PUT_PREFIX, SPOOL_PREFIX]
                .iter()
                .any(|p| name.strip_prefix(p).is_some_and(is_session_id));
            if !(is_session || is_put) || !modified_before(&ent.path(), older_than).await {
                continue;
            }
            if is_put {
                if tokio::fs::remove_file(ent.path()).await.is_ok() {
                    removed += 1;
                }
                continue;
            }
            let entry = self.entry(&name);
            let Ok(mut guard) = entry.clone().try_lock_owned() else {
                continue; // busy: in use right now
            };
            if !guard.gone {
                match tokio::fs::metadata(ent.path()).await {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => guard.gone = true,
                    Ok(m) if m.modified().is_ok_and(|t| t < older_than) => {
                        guard.gone = true;
                        if tokio::fs::remove_file(ent.path()).await.is_ok() {
                            removed += 1;
                        }
                    }
                    _ => {}
                }
            }
            let gone = guard.gone;
            drop(guard);
            if gone {
                self.forget(&name, &entry);
            }
        }
        Ok(removed)
    }

    /// Every blob object in the store, in no particular order, with its size and when it
    /// was last written where the listing tells them for free (S3 lists them, a thousand a
    /// page; the local backend reads directory entries only, one directory at a time, and
    /// leaves them to [`written`](Self::written)). Objects whose name is not a SHA-256
    /// digest, or that are not where this store keeps that digest's blob, are skipped.
    pub fn list_blobs(&self) -> BoxStream<'_, Result<StoredBlob, BlobError>> {
        if let Some(fs) = &self.inner.local {
            let root = match fs.path_to_filesystem(&ObjectPath::from("blobs/sha256")) {
                Ok(root) => root,
                Err(e) => return futures::stream::once(async move { Err(e.into()) }).boxed(),
            };
            return futures::stream::iter(0..=255u8)
                .then(move |prefix| {
                    let dir = root.join(format!("{prefix:02x}"));
                    blocking(move || list_local_dir(&dir))
                })
                .map_ok(|found| futures::stream::iter(found.into_iter().map(Ok)))
                .try_flatten()
                .boxed();
        }
        let dir = match &self.inner.s3 {
            Some(s3) => s3.blobs_dir(),
            None => ObjectPath::from("blobs/sha256"),
        };
        self.inner
            .store
            .list(Some(&dir))
            .map_err(BlobError::from)
            .try_filter_map(move |meta| async move {
                let Some(name) = meta.location.filename() else {
                    return Ok(None);
                };
                let Ok(digest) = format!("sha256:{name}").parse::<Digest>() else {
                    return Ok(None);
                };
                // Where no blob of this store is (a name without its fan-out directory, or
                // in another's): removing the digest's blob would not remove it.
                if meta.location != self.blob_path(&digest) {
                    return Ok(None);
                }
                Ok(Some(StoredBlob {
                    digest,
                    written: Some((meta.size, SystemTime::from(meta.last_modified))),
                }))
            })
            .boxed()
    }

    /// A blob object's size and when it was last written; `None` if it is not there.
    pub async fn written(&self, d: &Digest) -> Result<Option<(u64, SystemTime)>, BlobError> {
        match self.inner.store.head(&self.blob_path(d)).await {
            Ok(meta) => Ok(Some((meta.size, SystemTime::from(meta.last_modified)))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a blob's object if it is there (the collector's deletion: the metadata
    /// store's lock of the blob's row is held around it).
    pub async fn remove(&self, d: &Digest) -> Result<(), BlobError> {
        if let Some(cache) = self.cache() {
            cache.forget(d).await;
        }
        let started = std::time::Instant::now();
        let deleted = self.inner.store.delete(&self.blob_path(d)).await;
        crate::observed("remove", started);
        match deleted {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a blob; [`BlobError::NotFound`] if it does not exist.
    pub async fn delete(&self, d: &Digest) -> Result<(), BlobError> {
        // InMemory deletes missing objects silently; look first so both backends agree.
        if let Some(cache) = self.cache() {
            cache.forget(d).await;
        }
        if self.stat(d).await?.is_none() {
            return Err(BlobError::NotFound);
        }
        self.inner.store.delete(&self.blob_path(d)).await?;
        Ok(())
    }

    /// Stores a blob the caller sends whole (e.g. a monolithic upload), verified like a
    /// finished upload; nothing is kept if it fails. Returns its size.
    pub async fn put_stream<S, E>(&self, expected: &Digest, chunks: S) -> Result<u64, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: fmt::Display,
    {
        let stored = self
            .put_stream_with(expected, chunks, |_| async { Ok::<(), Infallible>(()) })
            .await?;
        Ok(stored.map(|(size, ())| size).unwrap_or_else(|e| match e {}))
    }

    /// [`put_stream`](Self::put_stream) with a `gate` between verification and
    /// publication, as [`finish_with`](Self::finish_with); nothing is kept if `gate`
    /// fails.
    pub async fn put_stream_with<S, E, G, GE, F, Fut>(
        &self,
        expected: &Digest,
        chunks: S,
        gate: F,
    ) -> Result<Result<(u64, G), GE>, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: fmt::Display,
        F: FnOnce(u64) -> Fut,
        Fut: Future<Output = Result<G, GE>>,
    {
        let id = self.start_upload().await?;
        if let Some(s3) = &self.inner.s3 {
            // A session of this request alone: its state never leaves this process.
            let states = MemoryUploadStates::new();
            states.create(&id);
            let result = async {
                s3.append(&states, &id, 0, chunks).await?;
                s3.finish_with(&states, &id, expected, gate).await
            }
            .await;
            if !matches!(result, Ok(Ok(_))) {
                let _ = s3.cancel(&states, &id).await;
            }
            return result;
        }
        let result = async {
            self.append(&id, 0, chunks).await?;
            self.finish_with(&id, expected, gate).await
        }
        .await;
        if !matches!(result, Ok(Ok(_))) {
            let _ = self.cancel(&id).await;
        }
        result
    }

    /// A URL of the object store that lets its holder GET the blob for `ttl` without
    /// credentials; `None` for backends that have none (local files, memory).
    pub async fn presigned_get(
        &self,
        d: &Digest,
        ttl: std::time::Duration,
    ) -> Result<Option<String>, BlobError> {
        match &self.inner.s3 {
            Some(s3) => s3.presigned_get(d, ttl).await.map(Some),
            None => Ok(None),
        }
    }

    /// The local backend's upload directory (`None` for the others).
    pub(crate) fn local_uploads(&self) -> Option<&Path> {
        self.inner
            .local
            .as_ref()
            .map(|_| self.inner.uploads.as_path())
    }

    /// Where the local backend keeps `d`'s blob file (`None` for the others).
    pub(crate) fn local_blob_file(&self, d: &Digest) -> Result<Option<PathBuf>, BlobError> {
        match &self.inner.local {
            Some(fs) => Ok(Some(fs.path_to_filesystem(&self.blob_path(d))?)),
            None => Ok(None),
        }
    }

    /// Where the blob lives in the object store.
    fn blob_path(&self, d: &Digest) -> ObjectPath {
        match &self.inner.s3 {
            Some(s3) => s3.blob(d),
            None => {
                let hex = d.hex();
                ObjectPath::from(format!("blobs/sha256/{}/{hex}", &hex[..2]))
            }
        }
    }

    fn entry(&self, id: &str) -> Arc<tokio::sync::Mutex<Session>> {
        let mut map = self
            .inner
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.entry(id.to_owned()).or_default().clone()
    }

    /// Drops the in-memory state of a session, unless it was replaced meanwhile.
    fn forget(&self, id: &str, entry: &Arc<tokio::sync::Mutex<Session>>) {
        let mut map = self
            .inner
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if map.get(id).is_some_and(|e| Arc::ptr_eq(e, entry)) {
            map.remove(id);
        }
    }

    async fn lock_session(&self, id: &str) -> Result<Locked, BlobError> {
        if !is_session_id(id) {
            return Err(BlobError::UploadUnknown);
        }
        let entry = self.entry(id);
        let mut guard = entry.clone().lock_owned().await;
        if guard.gone {
            drop(guard);
            self.forget(id, &entry);
            return Err(BlobError::UploadUnknown);
        }
        let path = self.inner.uploads.join(id);
        match tokio::fs::metadata(&path).await {
            Ok(m) => Ok(Locked {
                entry,
                guard,
                path,
                size: m.len(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                guard.gone = true;
                drop(guard);
                self.forget(id, &entry);
                Err(BlobError::UploadUnknown)
            }
            Err(e) => Err(io_err("reading upload file", e)),
        }
    }
}

/// The bytes `start..=end` a request for `range` of a blob of `size` bytes gets: the whole
/// blob without a range, `end` clamped to the last byte; [`BlobError::RangeNotSatisfiable`]
/// for a range that starts past the end or ends before it starts.
fn within(size: u64, range: Option<(u64, Option<u64>)>) -> Result<(u64, u64), BlobError> {
    let Some((start, end)) = range else {
        return Ok((0, size.saturating_sub(1)));
    };
    let last = match size.checked_sub(1) {
        Some(last) if start <= last => last,
        _ => return Err(BlobError::RangeNotSatisfiable { size }),
    };
    let end = end.map_or(last, |e| e.min(last));
    if end < start {
        return Err(BlobError::RangeNotSatisfiable { size });
    }
    Ok((start, end))
}

/// Session ids are exactly what `start_upload` hands out: hyphenated lowercase UUIDs.
/// Anything else (path tricks included) is an unknown session.
fn is_session_id(id: &str) -> bool {
    id.len() == 36 && uuid::Uuid::parse_str(id).is_ok_and(|u| u.hyphenated().to_string() == id)
}

async fn modified_before(path: &Path, older_than: SystemTime) -> bool {
    match tokio::fs::metadata(path).await.and_then(|m| m.modified()) {
        Ok(t) => t < older_than,
        Err(_) => false,
    }
}

pub(crate) async fn blocking<T, F>(f: F) -> Result<T, BlobError>
where
    F: FnOnce() -> Result<T, BlobError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io_err("background task", e))?
}

/// Hashes a staged file from the start (after a restart or a failed write).
fn rehash(path: &Path) -> Result<HashState, BlobError> {
    let mut file = File::open(path).map_err(|e| io_err("opening upload file", e))?;
    let mut state = HashState::new();
    let mut buf = vec![0u8; REHASH_CHUNK];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => return Ok(state),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err("rehashing upload file", e)),
        };
        state.hasher.update(&buf[..n]);
        state.len += n as u64;
    }
}

/// Moves an fsynced staged file to `dest` atomically and makes the rename durable.
/// If `dest` already exists (same digest, so same content) the staged file is
/// dropped instead. Never leaves a partial file at `dest`.
/// The blobs in one `blobs/sha256/<2 hex>` directory (none if it does not exist), from
/// the directory entries alone.
fn list_local_dir(dir: &Path) -> Result<Vec<StoredBlob>, BlobError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(&format!("listing {}", dir.display()), e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_err(&format!("listing {}", dir.display()), e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        // A blob's file is in the directory named by its first two hex digits.
        let fan_out = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if !name.starts_with(fan_out) {
            continue;
        }
        if let Ok(digest) = format!("sha256:{name}").parse::<Digest>() {
            found.push(StoredBlob {
                digest,
                written: None,
            });
        }
    }
    Ok(found)
}

pub(crate) fn publish_local(staged: &Path, dest: &Path) -> Result<(), BlobError> {
    if dest.is_file() {
        let _ = std::fs::remove_file(staged);
        return Ok(());
    }
    let parent = dest
        .parent()
        .ok_or_else(|| BlobError::Io(format!("blob path {} has no parent", dest.display())))?;
    if !parent.is_dir() {
        private_dir_all(parent).map_err(|e| io_err("creating blob dir", e))?;
        if let Some(grandparent) = parent.parent() {
            fsync_dir(grandparent)?;
        }
    }
    // Concurrent finishes of the same digest may both get here: rename replaces
    // atomically and both files hold the same verified bytes.
    std::fs::rename(staged, dest).map_err(|e| io_err("moving blob into place", e))?;
    fsync_dir(parent)
}

/// Create a directory and its missing parents readable by this user only (0700 on Unix,
/// whatever the umask says beyond that): blobs and uploads are the registry's content.
pub(crate) fn private_dir_all(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

/// Options that create a file readable by this user only (0600 on Unix).
pub(crate) fn private_file() -> OpenOptions {
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o
}

pub(crate) fn fsync_dir(dir: &Path) -> Result<(), BlobError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err(&format!("syncing directory {}", dir.display()), e))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Streams `range` of a local blob file in `READ_CHUNK` pieces, one blocking read per
/// chunk when the chunk is asked for, so memory stays bounded (one chunk per stream).
/// Chunks are read into fresh capacity, never zeroed first. A file that ends before
/// `range` does fails the stream: it never ends short.
fn file_stream(file: File, range: Range<u64>) -> BoxStream<'static, Result<Bytes, BlobError>> {
    futures::stream::try_unfold(
        (file, range.start, range.end, false),
        |(file, pos, end, seeked)| async move {
            if pos >= end {
                return Ok(None);
            }
            let n = usize::try_from((end - pos).min(READ_CHUNK as u64)).unwrap_or(READ_CHUNK);
            let (file, buf) = blocking(move || {
                let mut file = file;
                if !seeked {
                    file.seek(SeekFrom::Start(pos))
                        .map_err(|e| io_err("seeking blob", e))?;
                }
                let mut buf = Vec::with_capacity(n);
                (&mut file)
                    .take(n as u64)
                    .read_to_end(&mut buf)
                    .map_err(|e| io_err("reading blob", e))?;
                if buf.len() < n {
                    return Err(BlobError::Io(format!(
                        "reading blob: the file ended {} bytes early at offset {}",
                        n - buf.len(),
                        pos + buf.len() as u64
                    )));
                }
                Ok((file, buf))
            })
            .await?;
            Ok(Some((Bytes::from(buf), (file, pos + n as u64, end, true))))
        },
    )
    .boxed()
}
