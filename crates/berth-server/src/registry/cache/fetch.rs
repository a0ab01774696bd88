//! One fetch of an upstream blob, however many ask for it: the bytes go to a spool file
//! (which every reader follows as it grows, so each client gets the blob while it
//! arrives) and, through a bounded channel, to the blob store, which verifies the digest
//! and publishes the blob as a completed upload would (under the metadata store's lock of
//! the blob's row), held by the repository. The fetch runs in a task of its own: a client
//! that goes away does not stop it, and the next one finds the blob stored.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use berth_blobs::Digest;
use berth_store::Repository;
use bytes::Bytes;
use futures_util::{FutureExt, Stream, StreamExt};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::watch;

use super::upstream::{Upstream, UpstreamError};
use crate::serve::App;

/// Where a fetch stands.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Whether the upstream answered (then `size` is its length, if it said it).
    pub started: bool,
    pub size: Option<u64>,
    /// Bytes in the spool file.
    pub written: u64,
    /// Whether they are the whole blob (the upstream's answer ended well).
    pub complete: bool,
    /// Whether the store found them to hash to the digest (it then makes them durable).
    pub verified: bool,
    /// The latest batch written and where it starts: a reader that has caught up takes it
    /// from memory rather than reading it back from the spool file.
    pub latest: Option<(u64, Bytes)>,
    /// How it ended: stored (the size), or why not.
    pub end: Option<Result<u64, FetchFailure>>,
}

/// Why a fetch failed.
#[derive(Debug, Clone)]
pub enum FetchFailure {
    Upstream(UpstreamError),
    /// Storing it failed (the blob store or the metadata store).
    Store(String),
}

impl FetchFailure {
    pub fn message(&self) -> &str {
        match self {
            FetchFailure::Upstream(e) => e.message(),
            FetchFailure::Store(m) => m,
        }
    }
}

/// A fetch in flight.
pub struct BlobFetch {
    spool: PathBuf,
    progress: watch::Receiver<Progress>,
}

/// The bytes of a blob passed on at once (to the spool, its readers and the store).
const BATCH: usize = 256 << 10;

/// What identifies a fetch: the registry (stored form), repository and digest.
pub type BlobKey = (String, String, String);

/// How long a finished fetch is remembered: a request that found the repository without
/// the blob just before the fetch finished is told it is stored, rather than fetching it
/// again.
pub const REMEMBERED: std::time::Duration = std::time::Duration::from_secs(60);

/// A fetch in the node's map: in flight, or stored at that instant.
pub enum Entry {
    InFlight(Arc<BlobFetch>),
    Stored(std::time::Instant),
}

/// What [`follow_or_start`] found.
pub enum Followed {
    /// A fetch in flight (or just started) to read.
    Fetch(Follower),
    /// The blob was stored by a fetch that just finished: serve it from the store.
    Stored,
}

/// A reader of a fetch: its spool file and progress.
pub struct Follower {
    file: std::fs::File,
    progress: watch::Receiver<Progress>,
}

impl BlobFetch {
    /// Follow the fetch (opened now, while the fetch is still in the map: the spool file
    /// is removed only after it leaves it).
    fn follow(&self) -> std::io::Result<Follower> {
        Ok(Follower {
            file: std::fs::File::open(&self.spool)?,
            progress: self.progress.clone(),
        })
    }
}

impl Follower {
    /// Wait until the upstream answered: the fetch's progress then (or how it failed).
    pub async fn started(&mut self) -> Result<Progress, FetchFailure> {
        loop {
            let p = self.progress.borrow_and_update().clone();
            if let Some(Err(e)) = &p.end {
                return Err(e.clone());
            }
            if p.started || p.end.is_some() {
                return Ok(p);
            }
            if self.progress.changed().await.is_err() {
                return Err(FetchFailure::Store("the fetch ended without a word".into()));
            }
        }
    }

    /// Wait until the blob is stored (or the fetch failed).
    pub async fn finished(&mut self) -> Result<u64, FetchFailure> {
        loop {
            if let Some(end) = self.progress.borrow_and_update().end.clone() {
                return end;
            }
            if self.progress.changed().await.is_err() {
                return Err(FetchFailure::Store("the fetch ended without a word".into()));
            }
        }
    }

    /// The bytes `start..end` (`end`: the blob's end where `None`) as they arrive. A
    /// client's stream (`verified_end`) gets the blob's last byte only once the store
    /// has verified the blob: a client never gets a whole blob the store refused. (The
    /// store's own reader does not wait for itself.)
    pub fn stream(
        self,
        start: u64,
        end: Option<u64>,
        verified_end: bool,
    ) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        struct State {
            file: tokio::fs::File,
            pos: u64,
            end: Option<u64>,
            progress: watch::Receiver<Progress>,
            done: bool,
            /// Where the file's cursor is.
            file_at: u64,
            verified_end: bool,
        }
        let state = State {
            file: tokio::fs::File::from_std(self.file),
            pos: start,
            end,
            progress: self.progress,
            done: false,
            file_at: 0,
            verified_end,
        };
        futures_util::stream::unfold(state, |mut s| async move {
            if s.done {
                return None;
            }
            loop {
                let p = s.progress.borrow_and_update().clone();
                let end = s.end.or(match (&p.end, p.complete) {
                    (Some(Ok(size)), _) => Some(*size),
                    (_, true) => Some(p.written),
                    _ => p.size,
                });
                if end.is_some_and(|e| s.pos >= e) {
                    return None;
                }
                let stored = p.verified || matches!(p.end, Some(Ok(_)));
                let available = match s.verified_end && !stored {
                    true => p.written.saturating_sub(1),
                    false => p.written,
                };
                let limit = end.map_or(available, |e| e.min(available));
                if s.pos < limit {
                    if let Some((at, bytes)) = &p.latest {
                        let (at, len) = (*at, bytes.len() as u64);
                        if at <= s.pos && s.pos < at + len {
                            let to = limit.min(at + len);
                            let out = bytes.slice((s.pos - at) as usize..(to - at) as usize);
                            s.pos = to;
                            return Some((Ok(out), s));
                        }
                    }
                    if s.file_at != s.pos {
                        if let Err(e) = s.file.seek(std::io::SeekFrom::Start(s.pos)).await {
                            s.done = true;
                            return Some((Err(e), s));
                        }
                        s.file_at = s.pos;
                    }
                    let want = (limit - s.pos).min(BATCH as u64) as usize;
                    let mut buf = vec![0u8; want];
                    let mut got = 0;
                    while got < want {
                        match s.file.read(&mut buf[got..]).await {
                            Ok(0) => break,
                            Ok(n) => got += n,
                            Err(e) => {
                                s.done = true;
                                return Some((Err(e), s));
                            }
                        }
                    }
                    if got == 0 {
                        s.done = true;
                        return Some((Err(std::io::Error::other("the spool file ended early")), s));
                    }
                    buf.truncate(got);
                    s.pos += got as u64;
                    s.file_at = s.pos;
                    return Some((Ok(Bytes::from(buf)), s));
                }
                match &p.end {
                    Some(Ok(_)) => return None,
                    Some(Err(e)) => {
                        s.done = true;
                        let m = e.message().to_string();
                        return Some((Err(std::io::Error::other(m)), s));
                    }
                    None => {}
                }
                if s.progress.changed().await.is_err() {
                    s.done = true;
                    return Some((
                        Err(std::io::Error::other("the fetch ended without a word")),
                        s,
                    ));
                }
            }
        })
    }
}

/// What a fetch needs.
pub struct FetchJob {
    pub app: Arc<App>,
    pub key: BlobKey,
    pub repo: Repository,
    pub upstream: Arc<Upstream>,
    pub upstream_repo: String,
    pub digest: Digest,
}

/// Follow the fetch of `job.key`, starting it if none is in flight.
pub fn follow_or_start(job: FetchJob) -> Result<Followed, FetchFailure> {
    let state = &job.app.pull_through;
    let mut fetches = state.fetches.lock().unwrap_or_else(|p| p.into_inner());
    match fetches.get(&job.key) {
        Some(Entry::InFlight(f)) => {
            return f
                .follow()
                .map(Followed::Fetch)
                .map_err(|e| FetchFailure::Store(format!("following a blob fetch: {e}")));
        }
        Some(Entry::Stored(at)) if at.elapsed() < REMEMBERED => return Ok(Followed::Stored),
        _ => {}
    }
    if fetches.len() > 1000 {
        fetches.retain(|_, e| !matches!(e, Entry::Stored(at) if at.elapsed() >= REMEMBERED));
    }
    let spool = state.spool_path();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&spool)
        .map_err(|e| FetchFailure::Store(format!("making spool file {}: {e}", spool.display())))?;
    let (tx, rx) = watch::channel(Progress::default());
    let tx = Arc::new(tx);
    let fetch = Arc::new(BlobFetch {
        spool: spool.clone(),
        progress: rx,
    });
    let follower = fetch
        .follow()
        .map_err(|e| FetchFailure::Store(format!("following a blob fetch: {e}")))?;
    fetches.insert(job.key.clone(), Entry::InFlight(fetch));
    drop(fetches);
    tokio::spawn(async move {
        let app = job.app.clone();
        let key = job.key.clone();
        let end = std::panic::AssertUnwindSafe(run(job, &spool, file, &tx))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                Err(FetchFailure::Store(
                    "the blob fetch failed (a panic)".into(),
                ))
            });
        super::count("blob", end.is_ok());
        if let Err(e) = &end {
            tracing::warn!(repository = %key.1, digest = %key.2, error = %e.message(), "pull through cache: a blob fetch failed");
        }
        // Out of the map first (a follower that found it there has its file open); a
        // stored blob is remembered a while.
        {
            let mut fetches = app
                .pull_through
                .fetches
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            match end {
                Ok(_) => fetches.insert(key.clone(), Entry::Stored(std::time::Instant::now())),
                Err(_) => fetches.remove(&key),
            };
        }
        tx.send_modify(|p| p.end = Some(end));
        let _ = std::fs::remove_file(&spool);
    });
    Ok(Followed::Fetch(follower))
}

async fn run(
    job: FetchJob,
    spool_path: &std::path::Path,
    mut spool: std::fs::File,
    progress: &Arc<watch::Sender<Progress>>,
) -> Result<u64, FetchFailure> {
    let blob = match job
        .upstream
        .blob(&job.upstream_repo, &job.digest.to_string())
        .await
    {
        Ok(b) => b,
        Err(e) => return Err(FetchFailure::Upstream(e)),
    };
    progress.send_modify(|p| {
        p.started = true;
        p.size = blob.size;
    });
    // The store reads the spool as one more reader, at its own pace: the clients get the
    // blob at the network's speed, not at the speed of making it durable.
    let store_reader = Follower {
        file: std::fs::File::open(spool_path)
            .map_err(|e| FetchFailure::Store(format!("reading the spool file: {e}")))?,
        progress: progress.subscribe(),
    };
    let (blobs, registry) = (job.app.blobs.clone(), job.app.registry.clone());
    let now = crate::ids::now_ms();
    let digest = job.digest;
    let told = progress.clone();
    let store = tokio::spawn(async move {
        let verified = move |_| told.send_modify(|p| p.verified = true);
        blobs
            .put_stream_verified(
                &digest,
                Box::pin(store_reader.stream(0, None, false)),
                Some(verified),
                |size| {
                    let (registry, digest) = (registry.clone(), digest.to_string());
                    async move { registry.lock_blob(&digest, size as i64, now).await }
                },
            )
            .await
    });
    let mut body = blob.body;
    let mut failed = None;
    // What arrives is written in batches of BATCH bytes (the last one shorter): one
    // spool write and one wake of the readers each, rather than one per network read of a
    // few KiB.
    let mut batch = bytes::BytesMut::with_capacity(BATCH);
    loop {
        let next = body.next().await;
        let ended = match next {
            Some(Ok(chunk)) => {
                batch.extend_from_slice(&chunk);
                if batch.len() < BATCH {
                    continue;
                }
                false
            }
            Some(Err(e)) => {
                failed = Some(FetchFailure::Upstream(e));
                break;
            }
            None => true,
        };
        let out = batch.split().freeze();
        let n = out.len() as u64;
        if n > 0 {
            // A page-cache write.
            if let Err(e) = spool.write_all(&out) {
                failed = Some(FetchFailure::Store(format!("writing the spool file: {e}")));
                break;
            }
            batch.reserve(BATCH);
        }
        progress.send_modify(|p| {
            if n > 0 {
                p.latest = Some((p.written, out));
            }
            p.written += n;
            p.complete = ended;
        });
        if ended {
            break;
        }
    }
    if let Some(f) = failed {
        // Every reader (the store's too) stops now.
        progress.send_modify(|p| p.end = Some(Err(f.clone())));
        let _ = store.await;
        return Err(f);
    }
    let stored = store
        .await
        .map_err(|e| FetchFailure::Store(format!("the blob store task: {e}")))?;
    let (size, lock) = match stored {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => return Err(FetchFailure::Store(e.to_string())),
        Err(berth_blobs::BlobError::DigestMismatch { expected, computed }) => {
            return Err(FetchFailure::Upstream(UpstreamError::Invalid(format!(
                "the upstream registry {} sent a blob {expected} whose content hashes to {computed}",
                job.upstream.base
            ))))
        }
        Err(e) => return Err(FetchFailure::Store(e.to_string())),
    };
    lock.hold(job.repo.registry(), &job.repo.name, now)
        .await
        .map_err(|e| FetchFailure::Store(e.to_string()))?;
    Ok(size)
}
