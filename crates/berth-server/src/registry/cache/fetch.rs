//! One fetch of an upstream blob, however many ask for it: the bytes go to a spool file
//! of the blob store ([`berth_blobs::Spool`]), hashed as they are written, which every
//! reader follows as it grows (so each client gets the blob while it arrives); once whole
//! and found to hash to its digest, the store publishes it as a completed upload would
//! (under the metadata store's lock of the blob's row; on the local backend the spool file
//! becomes the blob), held by the repository. The fetch runs in a task of its own: a
//! client that goes away does not stop it, and the next one finds the blob stored.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use berth_blobs::{Digest, Spool};
use berth_store::Repository;
use bytes::Bytes;
use futures_util::{FutureExt, Stream, StreamExt};
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
    /// Whether they hash to the digest (the store then makes them durable).
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
    file: Arc<File>,
    progress: watch::Receiver<Progress>,
}

/// The bytes of a blob passed on at once (to the spool and its readers).
const BATCH: usize = 256 << 10;

/// The most bytes a fetched blob may have: ECR's layer size quota (52,000 MiB). An
/// upstream saying or sending more (or more than it said) is refused rather than left
/// to fill the disk.
const MAX_BLOB: u64 = 52_000 << 20;

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

/// A reader of a fetch: its spool file (shared, read by position) and progress.
pub struct Follower {
    file: Arc<File>,
    progress: watch::Receiver<Progress>,
}

impl BlobFetch {
    fn follow(&self) -> Follower {
        Follower {
            file: self.file.clone(),
            progress: self.progress.clone(),
        }
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
    /// client gets the blob's last byte only once it is known to hash to its digest: a
    /// client never gets a whole blob that is not the one it asked for.
    pub fn stream(
        self,
        start: u64,
        end: Option<u64>,
    ) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        struct State {
            file: Arc<File>,
            pos: u64,
            end: Option<u64>,
            progress: watch::Receiver<Progress>,
            done: bool,
        }
        let state = State {
            file: self.file,
            pos: start,
            end,
            progress: self.progress,
            done: false,
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
                let available = match p.verified || matches!(p.end, Some(Ok(_))) {
                    true => p.written,
                    false => p.written.saturating_sub(1),
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
                    // Behind the latest batch: read back from the spool file, which was
                    // just written (a page-cache read, done here rather than handed to a
                    // thread of its own).
                    let want = (limit - s.pos).min(BATCH as u64) as usize;
                    let mut buf = vec![0u8; want];
                    let mut got = 0;
                    while got < want {
                        match s.file.read_at(&mut buf[got..], s.pos + got as u64) {
                            Ok(0) => break,
                            Ok(n) => got += n,
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
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
        Some(Entry::InFlight(f)) => return Ok(Followed::Fetch(f.follow())),
        Some(Entry::Stored(at)) if at.elapsed() < REMEMBERED => return Ok(Followed::Stored),
        _ => {}
    }
    if fetches.len() > 1000 {
        fetches.retain(|_, e| !matches!(e, Entry::Stored(at) if at.elapsed() >= REMEMBERED));
    }
    let spool = job
        .app
        .blobs
        .spool(&state.spool_dir())
        .map_err(|e| FetchFailure::Store(e.to_string()))?;
    let (tx, rx) = watch::channel(Progress::default());
    let fetch = Arc::new(BlobFetch {
        file: spool.file(),
        progress: rx,
    });
    let follower = fetch.follow();
    fetches.insert(job.key.clone(), Entry::InFlight(fetch));
    drop(fetches);
    let tx = Arc::new(tx);
    tokio::spawn(async move {
        let app = job.app.clone();
        let key = job.key.clone();
        let end = std::panic::AssertUnwindSafe(run(job, spool, &tx))
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
        // A stored blob is remembered a while.
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
    });
    Ok(Followed::Fetch(follower))
}

async fn run(
    job: FetchJob,
    mut spool: Spool,
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
    let limit = blob.size.unwrap_or(MAX_BLOB);
    if limit > MAX_BLOB {
        return Err(FetchFailure::Upstream(UpstreamError::Invalid(format!(
            "the upstream registry {} says blob {} has {limit} bytes, more than a blob may have ({MAX_BLOB})",
            job.upstream.base, job.digest
        ))));
    }
    let too_long = || {
        FetchFailure::Upstream(UpstreamError::Invalid(format!(
            "the upstream registry {} sent more than the {limit} bytes {} for blob {}",
            job.upstream.base,
            if blob.size.is_some() {
                "it said"
            } else {
                "a blob may have"
            },
            job.digest
        )))
    };
    progress.send_modify(|p| {
        p.started = true;
        p.size = blob.size;
    });
    let mut body = blob.body;
    // What arrives is written (and hashed) in batches of BATCH bytes (the last one
    // shorter): one spool write and one wake of the readers each, rather than one per
    // network read of a few KiB.
    let mut batch = bytes::BytesMut::with_capacity(BATCH);
    loop {
        let ended = match body.next().await {
            Some(Ok(chunk)) => {
                if spool.len() + (batch.len() + chunk.len()) as u64 > limit {
                    let f = too_long();
                    progress.send_modify(|p| p.end = Some(Err(f.clone())));
                    return Err(f);
                }
                batch.extend_from_slice(&chunk);
                if batch.len() < BATCH {
                    continue;
                }
                false
            }
            Some(Err(e)) => {
                // Every reader stops now.
                let f = FetchFailure::Upstream(e);
                progress.send_modify(|p| p.end = Some(Err(f.clone())));
                return Err(f);
            }
            None => true,
        };
        let out = batch.split().freeze();
        let n = out.len() as u64;
        if n > 0 {
            // A page-cache write.
            if let Err(e) = spool.write(&out) {
                let f = FetchFailure::Store(e.to_string());
                progress.send_modify(|p| p.end = Some(Err(f.clone())));
                return Err(f);
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
    let (registry, now, digest) = (job.app.registry.clone(), crate::ids::now_ms(), job.digest);
    let told = progress.clone();
    let verified = move |_| told.send_modify(|p| p.verified = true);
    let stored = spool
        .publish(&digest, Some(verified), |size| async move {
            registry
                .lock_blob(&digest.to_string(), size as i64, now)
                .await
        })
        .await;
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
