//! [`BlobCache`]: a node's own copy of blobs of the bucket (the S3 backend), on local
//! disk, bounded in bytes, least recently used out first.
//!
//! It is filled two ways: by the node that receives a whole upload (the bytes it
//! streams to the bucket go to a staged cache file too, and the file is kept when the
//! digest is verified), and by a whole-blob GET that misses (the bytes streamed from the
//! bucket are copied aside, hashed, and kept only if they hash to the digest). A blob
//! in the cache is served from it, with no request to the bucket.
//!
//! The cache is never asked whether a blob exists: existence stays with the metadata
//! store and the bucket (so a blob the collector removed cannot come back from here).
//! Its content is addressed by digest and verified before it is kept, so whatever the
//! cache holds is the right bytes of that digest, even of a blob removed since.
//!
//! Layout under `dir`: `sha256/<2 hex>/<64 hex>.<size>` kept blobs (each fsynced before
//! it is renamed in, so a crash leaves whole files or none; one whose length is not the
//! size its name says is dropped, when the cache opens or reads it), `staging/<uuid>`
//! files being filled (removed at start), and `lock` (one process per directory).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use futures::stream::{BoxStream, Stream, StreamExt};

use crate::digest::Sha256;
use crate::error::io_err;
use crate::store::{blocking, private_dir_all, private_file, WRITE_SLICE};
use crate::{BlobError, Digest};

/// Whole-blob GETs copied aside at once, at most; a miss beyond them is only streamed.
const MAX_DOWNLOAD_FILLS: usize = 8;
/// Bytes a download fill gathers before handing them to its writer thread.
const FILL_BATCH: usize = 1 << 20;
/// Batches a download fill may have waiting for its writer; a writer further behind
/// than this (a slow disk) gives the fill up rather than slow the client down.
const FILL_QUEUE: usize = 8;

/// What the cache tells the observer set with [`observe_cache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheEvent {
    /// A blob read was served from the cache.
    Hit,
    /// A blob read found nothing in the cache.
    Miss,
    /// A blob was kept, from an upload this node received.
    FilledFromUpload,
    /// A blob was kept, from a GET that missed.
    FilledFromDownload,
    /// A blob was dropped to make room.
    Evicted,
}

/// What is told of the cache's events (the server's metrics).
pub type CacheObserver = fn(CacheEvent);

static OBSERVER: std::sync::OnceLock<CacheObserver> = std::sync::OnceLock::new();

/// Have `f` told every [`CacheEvent`]. Set once per process; later calls are ignored.
pub fn observe_cache(f: CacheObserver) {
    let _ = OBSERVER.set(f);
}

fn tell(event: CacheEvent) {
    if let Some(f) = OBSERVER.get() {
        f(event);
    }
}

/// The cache's size right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheUsage {
    /// Bytes of the blobs kept.
    pub bytes: u64,
    /// Blobs kept.
    pub blobs: u64,
    /// The most it keeps, in bytes.
    pub capacity: u64,
}

/// A node-local, size-bounded cache of blobs (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct BlobCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for BlobCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobCache")
            .field("dir", &self.inner.dir)
            .field("capacity", &self.inner.capacity)
            .finish_non_exhaustive()
    }
}

struct Inner {
    dir: PathBuf,
    capacity: u64,
    state: Mutex<State>,
    /// Held (locked) while the process runs: one cache per directory.
    _lock: File,
    staged: AtomicU64,
}

#[derive(Default)]
struct State {
    entries: HashMap<Digest, Entry>,
    /// Entries by last use, oldest first.
    order: BTreeMap<u64, Digest>,
    clock: u64,
    bytes: u64,
    /// Digests a download fill is copying now.
    filling: HashSet<Digest>,
}

struct Entry {
    size: u64,
    used: u64,
}

impl State {
    fn touch(&mut self, d: &Digest) -> Option<u64> {
        self.clock += 1;
        let clock = self.clock;
        let e = self.entries.get_mut(d)?;
        self.order.remove(&e.used);
        e.used = clock;
        self.order.insert(clock, *d);
        Some(e.size)
    }

    /// Takes `d` out; its size, if it was in.
    fn remove(&mut self, d: &Digest) -> Option<u64> {
        let e = self.entries.remove(d)?;
        self.order.remove(&e.used);
        self.bytes -= e.size;
        Some(e.size)
    }

    /// Adds `d`, then takes out the least recently used others until the rest fits in
    /// `capacity`; returns those taken out (whose files the caller removes).
    fn insert(&mut self, d: Digest, size: u64, capacity: u64) -> Vec<(Digest, u64)> {
        if self.touch(&d).is_some() {
            return Vec::new();
        }
        let mut evicted = Vec::new();
        while self.bytes + size > capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(e) = self.entries.remove(&oldest) {
                self.bytes -= e.size;
                evicted.push((oldest, e.size));
            }
        }
        self.clock += 1;
        self.entries.insert(
            d,
            Entry {
                size,
                used: self.clock,
            },
        );
        self.order.insert(self.clock, d);
        self.bytes += size;
        evicted
    }
}

impl BlobCache {
    /// Opens (creating it 0700 if needed) the cache in `dir`, keeping at most `capacity`
    /// bytes: the blobs already there are taken in, oldest written first out if they no
    /// longer fit; what was being staged when the last process stopped is removed. Fails
    /// if another process has the directory.
    pub async fn open(dir: &Path, capacity: u64) -> Result<BlobCache, BlobError> {
        let dir = dir.to_path_buf();
        blocking(move || {
            let blobs = dir.join("sha256");
            let staging = dir.join("staging");
            private_dir_all(&blobs).map_err(|e| io_err("creating the blob cache", e))?;
            let lock = private_file()
                .write(true)
                .create(true)
                .truncate(false)
                .open(dir.join("lock"))
                .map_err(|e| io_err("opening the blob cache's lock file", e))?;
            if lock.try_lock().is_err() {
                return Err(BlobError::Io(format!(
                    "the blob cache {} is in use by another process: give each node a \
                     cache directory of its own",
                    dir.display()
                )));
            }
            if staging.exists() {
                std::fs::remove_dir_all(&staging)
                    .map_err(|e| io_err("clearing the blob cache's staging files", e))?;
            }
            private_dir_all(&staging).map_err(|e| io_err("creating the blob cache", e))?;
            let mut found = scan(&blobs)?;
            found.sort_by_key(|(_, _, written)| *written);
            let mut state = State::default();
            let mut evicted = Vec::new();
            for (d, size, _) in found {
                if size > capacity {
                    evicted.push((d, size));
                    continue;
                }
                evicted.extend(state.insert(d, size, capacity));
            }
            let cache = BlobCache {
                inner: Arc::new(Inner {
                    dir,
                    capacity,
                    state: Mutex::new(state),
                    _lock: lock,
                    staged: AtomicU64::new(0),
                }),
            };
            for (d, size) in evicted {
                let _ = std::fs::remove_file(cache.path(&d, size));
            }
            Ok(cache)
        })
        .await
    }

    /// How full it is.
    pub fn usage(&self) -> CacheUsage {
        let state = self.state();
        CacheUsage {
            bytes: state.bytes,
            blobs: state.entries.len() as u64,
            capacity: self.inner.capacity,
        }
    }

    /// Whether the cache holds `d` right now (it may be evicted a moment later).
    pub fn contains(&self, d: &Digest) -> bool {
        self.state().entries.contains_key(d)
    }

    /// The cached blob, opened, and its size; `None` (a miss) if it is not kept, or its
    /// file is not what was kept (then it is dropped).
    pub(crate) async fn open_blob(&self, d: &Digest) -> Option<(File, u64)> {
        let Some(size) = self.state().touch(d) else {
            tell(CacheEvent::Miss);
            return None;
        };
        let path = self.path(d, size);
        let opened = blocking(move || {
            let file = File::open(&path).map_err(|e| io_err("opening a cached blob", e))?;
            let len = file
                .metadata()
                .map_err(|e| io_err("reading a cached blob", e))?
                .len();
            Ok((file, len))
        })
        .await;
        match opened {
            Ok((file, len)) if len == size => {
                tell(CacheEvent::Hit);
                Some((file, size))
            }
            _ => {
                // Not what was kept (removed or changed behind the cache's back): dropped,
                // and the blob is read from the bucket instead.
                self.forget(d).await;
                tell(CacheEvent::Miss);
                None
            }
        }
    }

    /// Drops `d` from the cache (the collector removed the blob).
    pub(crate) async fn forget(&self, d: &Digest) {
        let removed = self.state().remove(d);
        if let Some(size) = removed {
            let path = self.path(d, size);
            let _ = blocking(move || {
                let _ = std::fs::remove_file(path);
                Ok(())
            })
            .await;
        }
    }

    /// A new staging file to fill, or `None` if none can be made (the cache then just
    /// does not get this blob).
    pub(crate) async fn stage(&self) -> Option<Staged> {
        let cache = self.clone();
        blocking(move || Ok(cache.stage_now())).await.ok()?
    }

    /// [`stage`](Self::stage), on the calling (blocking) thread.
    fn stage_now(&self) -> Option<Staged> {
        let path = self
            .inner
            .dir
            .join("staging")
            .join(uuid::Uuid::new_v4().to_string());
        let file = private_file()
            .write(true)
            .create_new(true)
            .open(&path)
            .ok()?;
        self.inner.staged.fetch_add(1, Ordering::Relaxed);
        Some(Staged {
            cache: self.clone(),
            path,
            file: Some(file),
            len: 0,
        })
    }

    /// `stream`, the whole blob `d` of `size` bytes read from the bucket, with its bytes
    /// also copied into the cache as they pass; kept once the stream ended and they hash
    /// to `d`. The copy is given up (the stream is unchanged) if the blob cannot fit,
    /// another copy of it is under way, too many are, or the disk falls behind.
    pub(crate) fn fill_from_download(
        &self,
        d: Digest,
        size: u64,
        stream: BoxStream<'static, Result<Bytes, BlobError>>,
    ) -> BoxStream<'static, Result<Bytes, BlobError>> {
        if size > self.inner.capacity {
            return stream;
        }
        {
            let mut state = self.state();
            if state.entries.contains_key(&d)
                || state.filling.len() >= MAX_DOWNLOAD_FILLS
                || !state.filling.insert(d)
            {
                return stream;
            }
        }
        let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(FILL_QUEUE);
        let cache = self.clone();
        tokio::task::spawn_blocking(move || {
            cache.copy_download(&d, size, rx);
            cache.state().filling.remove(&d);
        });
        let mut tee = Tee {
            inner: stream,
            tx: Some(tx),
            batch: Vec::new(),
            batched: 0,
            left: size,
        };
        if size == 0 {
            tee.end();
        }
        tee.boxed()
    }

    /// The download fill's writer: writes and hashes what arrives, keeps the file if
    /// the stream ended whole and right.
    fn copy_download(&self, d: &Digest, size: u64, rx: std::sync::mpsc::Receiver<Batch>) {
        let Some(mut staged) = self.stage_now() else {
            return;
        };
        let Some(mut file) = staged.file.take() else {
            return;
        };
        let mut hasher = Sha256::new();
        let ended = loop {
            match rx.recv() {
                Ok(Batch::Bytes(chunks)) => {
                    for b in chunks {
                        if file.write_all(&b).is_err() {
                            return;
                        }
                        hasher.update(&b);
                        staged.len += b.len() as u64;
                    }
                }
                Ok(Batch::End) => break true,
                Err(_) => break false,
            }
        };
        if ended && staged.len == size && hasher.finish() == *d {
            staged.file = Some(file);
            staged.keep(d, size, CacheEvent::FilledFromDownload);
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn path(&self, d: &Digest, size: u64) -> PathBuf {
        let hex = d.hex();
        self.inner
            .dir
            .join("sha256")
            .join(&hex[..2])
            .join(format!("{hex}.{size}"))
    }

    /// Cache files being filled right now.
    pub fn staging(&self) -> u64 {
        self.inner.staged.load(Ordering::Relaxed)
    }
}

/// The kept blobs found in `blobs` (`<2 hex>/<64 hex>.<size>`): digest, size, when
/// written. Files whose length is not their name's size are removed.
fn scan(blobs: &Path) -> Result<Vec<(Digest, u64, SystemTime)>, BlobError> {
    let mut found = Vec::new();
    let dirs = std::fs::read_dir(blobs).map_err(|e| io_err("listing the blob cache", e))?;
    for dir in dirs.flatten() {
        let Some(fan_out) = dir.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Ok(files) = std::fs::read_dir(dir.path()) else {
            continue;
        };
        for f in files.flatten() {
            let Some(name) = f.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let Some((hex, size)) = name.split_once('.') else {
                continue;
            };
            let (Ok(d), Ok(size)) = (format!("sha256:{hex}").parse::<Digest>(), size.parse())
            else {
                continue;
            };
            let Ok(meta) = f.metadata() else { continue };
            if !hex.starts_with(&fan_out) || !meta.is_file() {
                continue;
            }
            if meta.len() != size {
                let _ = std::fs::remove_file(f.path());
                continue;
            }
            found.push((d, size, meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)));
        }
    }
    Ok(found)
}

/// A cache file being filled; removed when dropped unless [`keep`](Self::keep)
/// or [`keep_later`](Self::keep_later) took it in.
pub(crate) struct Staged {
    cache: BlobCache,
    path: PathBuf,
    /// `None` once a write failed (or while a write holds it).
    file: Option<File>,
    len: u64,
}

impl Staged {
    /// Bytes written so far.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Appends `bytes` (on a blocking thread); false if it failed, after which the
    /// file is useless (and dropped with this).
    pub(crate) async fn write(&mut self, bytes: Bytes) -> bool {
        let Some(mut file) = self.file.take() else {
            return false;
        };
        let n = bytes.len() as u64;
        let written = tokio::task::spawn_blocking(move || {
            // In slices: larger writes make the kernel back the page cache with larger
            // folios, several times costlier to fill on the measured VM (see WRITE_SLICE).
            for piece in bytes.chunks(WRITE_SLICE) {
                file.write_all(piece)?;
            }
            Ok::<_, std::io::Error>(file)
        });
        match written.await {
            Ok(Ok(file)) => {
                self.file = Some(file);
                self.len += n;
                true
            }
            _ => false,
        }
    }

    /// Takes the file in as blob `d` in the background (fsync, rename), if it holds
    /// exactly `size` bytes.
    pub(crate) fn keep_later(self, d: Digest, size: u64) {
        tokio::task::spawn_blocking(move || self.keep(&d, size, CacheEvent::FilledFromUpload));
    }

    /// Takes the file in as blob `d`, if it holds exactly `size` bytes and fits: fsync,
    /// rename into place, then evicts what no longer fits. Blocking.
    fn keep(mut self, d: &Digest, size: u64, event: CacheEvent) {
        let Some(file) = self.file.take() else {
            return;
        };
        if self.len != size || size > self.cache.inner.capacity || self.cache.contains(d) {
            return;
        }
        if file.sync_all().is_err() {
            return;
        }
        drop(file);
        let dest = self.cache.path(d, size);
        let placed = dest
            .parent()
            .map_or(Ok(()), private_dir_all)
            .and_then(|()| std::fs::rename(&self.path, &dest));
        if placed.is_err() {
            return;
        }
        // Renamed: nothing left to remove when this is dropped.
        self.path = PathBuf::new();
        let evicted = self
            .cache
            .state()
            .insert(*d, size, self.cache.inner.capacity);
        tell(event);
        for (old, old_size) in evicted {
            let _ = std::fs::remove_file(self.cache.path(&old, old_size));
            tell(CacheEvent::Evicted);
        }
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        self.file = None;
        self.cache.inner.staged.fetch_sub(1, Ordering::Relaxed);
        if self.path.as_os_str().is_empty() {
            return;
        }
        let path = std::mem::take(&mut self.path);
        match tokio::runtime::Handle::try_current() {
            // Unlinking a large file frees its pages: not on the runtime's threads.
            Ok(rt) => drop(rt.spawn_blocking(move || std::fs::remove_file(path))),
            Err(_) => {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

enum Batch {
    Bytes(Vec<Bytes>),
    End,
}

/// A download stream whose bytes also go, a batch at a time, to a fill's writer.
struct Tee {
    inner: BoxStream<'static, Result<Bytes, BlobError>>,
    /// `None` once the fill is given up or told the end.
    tx: Option<std::sync::mpsc::SyncSender<Batch>>,
    batch: Vec<Bytes>,
    batched: usize,
    /// Bytes of the blob not seen yet. The fill ends when the last has passed: the reader
    /// of a body of known length (hyper) need not ask for the stream's end.
    left: u64,
}

impl Tee {
    fn send(&mut self, batch: Batch) {
        if let Some(tx) = &self.tx {
            if tx.try_send(batch).is_err() {
                self.tx = None;
            }
        }
    }

    /// Hands over the last batch and the end.
    fn end(&mut self) {
        let batch = std::mem::take(&mut self.batch);
        self.send(Batch::Bytes(batch));
        self.send(Batch::End);
        self.tx = None;
    }
}

impl Stream for Tee {
    type Item = Result<Bytes, BlobError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = std::task::ready!(self.inner.poll_next_unpin(cx));
        match &item {
            Some(Ok(b)) if self.tx.is_some() => {
                let n = b.len() as u64;
                if n > self.left {
                    // More than the blob's size: not the blob.
                    self.tx = None;
                } else {
                    self.left -= n;
                    self.batched += b.len();
                    self.batch.push(b.clone());
                    if self.left == 0 {
                        self.end();
                    } else if self.batched >= FILL_BATCH {
                        let batch = std::mem::take(&mut self.batch);
                        self.batched = 0;
                        self.send(Batch::Bytes(batch));
                    }
                }
            }
            Some(Ok(_)) => {}
            // An error, or the stream ended short: the writer sees no end and drops it.
            Some(Err(_)) | None => self.tx = None,
        }
        Poll::Ready(item)
    }
}
