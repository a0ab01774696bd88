//! Online garbage collection: what no image needs is deleted while pushes and pulls go
//! on, on every backend, and nothing an image (or a client told "you have it") needs is
//! ever deleted.
//!
//! # What is garbage
//!
//! A repository *holds* a blob once an upload to it completes or a blob is mounted into
//! it (`repository_blobs`); its images *reference* blobs (`image_refs`: configs and
//! layers). Manifests live in the metadata store and go with their image. Garbage is:
//!
//! 1. a holding no image of its repository references, for a grace period
//!    (`gc_grace_seconds`, default an hour): the layers of deleted images, blobs
//!    uploaded and never referenced;
//! 2. a blob (one object per digest, shared by every repository) that no repository
//!    holds: after the holdings above, after `DeleteRepository`;
//! 3. an object of the blob store the metadata store has no row for, written over a
//!    grace period ago (a crash between publishing and recording, data of older versions);
//! 4. abandoned upload sessions and their staged data (the `expire-uploads` job; `berth
//!    gc` runs it too).
//!
//! # The race this design rules out
//!
//! Peers have shipped collectors that decide "unreferenced", and then delete, while a
//! client re-references the blob in between: a new push of the same layer whose upload
//! finds the object already there and skips it, a cross-repository mount, a manifest
//! whose layers a client was told exist a moment before (Harbor #23116, Quay's
//! "manifest blob unknown" right after a GC run, a registry that locked GC but not
//! pushes). Making that unlikely (run at night, sleep between phases) is not enough; here
//! it cannot happen, because every decision and the write it protects happen under one
//! lock, and every writer takes the same lock:
//!
//! - **Objects.** Each blob object has one row in `blobs`. Publishing an object (an
//!   upload's completion: [`BlobStore::finish_with`] between verifying and moving into
//!   place) holds that row's lock from before the object is put in place (or found there)
//!   until the repository's holding is committed ([`RegistryStore::lock_blob`],
//!   [`BlobLock::hold`](berth_store::BlobLock::hold)); a mount holds it while it adds the
//!   holding ([`RegistryStore::mount_blob`]). The collector deletes an object only inside
//!   [`RegistryStore::gc_delete_blob`], which holds the row exclusively, re-checks there
//!   that no repository holds the blob, deletes the object and then the row, and commits.
//!   So a publication either comes first (the collector then sees the holding and keeps
//!   the blob) or waits and publishes again after the deletion (the object is gone, so it
//!   is written anew). An object with no row (3.) is deleted the same way, with a row made
//!   for the purpose: a publisher that made one first wins.
//! - **Holdings.** The collector marks holdings that no image references with the time
//!   ([`RegistryStore::gc_mark`]) and releases only those marked at least the grace period
//!   ago ([`RegistryStore::gc_sweep_holdings`]): under the holding's row lock it re-checks
//!   the mark and the references, in a statement that sees every push that held the row
//!   before. A push holds the holdings it references and clears their marks in its
//!   transaction; telling a client the repository has the blob (HEAD, GET,
//!   BatchCheckLayerAvailability, a mount's source) clears a mark under the row lock first
//!   ([`RegistryStore::repository_blob`]); a completed upload or mount into the repository
//!   clears it too. So whatever a client was told it has stays for at least the grace
//!   period after it was told, and a holding an image references is never released.
//!   With a grace of 0 the client has no such time: a push that checked a layer, then
//!   lost it to the collector, gets `MANIFEST_BLOB_UNKNOWN` and pushes the layer again —
//!   a clean error, never a manifest whose layer is gone.
//!
//! # Staying out of the way
//!
//! A pass finds the holdings whose mark must change with a read, and writes only those,
//! so on a registry whose blobs are in use it takes no write lock at all (on SQLite the
//! write lock is the whole database's); releases and deletions are short transactions,
//! a page or a blob each. The server's job works a tenth of the time ([`JOB_DUTY`]):
//! after each page it pauses nine times as long as the page took, so pushes and pulls
//! keep the machine while it runs; `berth gc` runs flat out.
//!
//! On SQLite "the row's lock" is the database's one write lock (`BEGIN IMMEDIATE`); on
//! PostgreSQL, row locks at READ COMMITTED (see berth-store's `pg_gc.rs`).
//!
//! A collector killed mid-run leaves nothing half done that matters: a holding's release
//! is one transaction; an object deleted whose row's deletion did not commit leaves a row
//! no repository holds, which the next run deletes (its object is already gone, which
//! counts as deleted). Several collectors at once (the job on one node, `berth gc` by
//! hand) are safe for the same reasons; the job's lease only keeps them from doing the
//! same work twice.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use berth_blobs::{BlobStore, Digest};
use berth_store::{BlobSweep, Holding, RegistryError, RegistryStore};
use futures_util::{StreamExt, TryStreamExt};

/// Rows read (or released) per store call.
const PAGE: i64 = 500;
/// Most holdings a marking step changes.
const MARK_PAGE: i64 = 1000;
/// Objects of the blob store checked against the metadata per store call.
const LISTING_PAGE: usize = 1000;

/// How a collection runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long a holding no image references is kept after the collector first sees it
    /// so (and how old an object with no row must be).
    pub grace: Duration,
    /// Only say what would be deleted.
    pub dry_run: bool,
    /// The share of the time the collector works, pausing after each page of work for
    /// what keeps it there (the server's job: [`JOB_DUTY`]), so that pushes and pulls keep
    /// the machine; `None`: flat out (`berth gc`).
    pub duty: Option<f64>,
}

/// The share of time the server's `gc` job works (see [`Options::duty`]).
pub const JOB_DUTY: f64 = 0.1;

/// Pauses after each page of work to hold a duty cycle.
struct Pacer {
    duty: Option<f64>,
    since: std::time::Instant,
}

impl Pacer {
    fn new(duty: Option<f64>) -> Pacer {
        Pacer {
            duty: duty.filter(|d| *d > 0.0 && *d < 1.0),
            since: std::time::Instant::now(),
        }
    }

    /// A page of work is done: rest in proportion to it.
    async fn page_done(&mut self) {
        if let Some(duty) = self.duty {
            let worked = self.since.elapsed();
            tokio::time::sleep(worked.mul_f64((1.0 - duty) / duty)).await;
        }
        self.since = std::time::Instant::now();
    }
}

/// One thing the collector deleted (or, in a dry run, would delete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deletion {
    /// A repository no longer holds a blob (no image of it referenced the blob).
    Released(Holding),
    /// A blob's object, which no repository held (`orphan`: the metadata had no row
    /// for it).
    Blob {
        digest: String,
        size: u64,
        orphan: bool,
    },
}

/// What a collection did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Holdings released.
    pub released: u64,
    /// Blob objects deleted (orphans included).
    pub blobs: u64,
    /// Of which objects the metadata had no row for.
    pub orphans: u64,
    /// Bytes of the blob objects deleted.
    pub bytes: u64,
    /// Candidates found in use on the re-check (a push or mount got there first).
    pub kept: u64,
    /// Objects that could not be deleted (left for the next run), with why.
    pub failures: Vec<String>,
}

impl Report {
    /// Count a blob's object deleted (or, in a dry run, that would be) and say so.
    fn blob_deleted(
        &mut self,
        digest: String,
        size: u64,
        orphan: bool,
        said: &mut (dyn FnMut(&Deletion) + Send),
    ) {
        self.blobs += 1;
        self.bytes += size;
        if orphan {
            self.orphans += 1;
        }
        said(&Deletion::Blob {
            digest,
            size,
            orphan,
        });
    }

    /// One sentence for logs and the command's last line.
    pub fn summary(&self, dry_run: bool) -> String {
        let (released, deleted) = if dry_run {
            ("would release", "would delete")
        } else {
            ("released", "deleted")
        };
        let mut s = format!(
            "{released} {} repository holdings; {deleted} {} blobs ({} with no metadata), {} bytes",
            self.released, self.blobs, self.orphans, self.bytes
        );
        if self.kept > 0 {
            s.push_str(&format!("; {} kept (in use again)", self.kept));
        }
        if !self.failures.is_empty() {
            s.push_str(&format!(
                "; {} could not be deleted (next run): {}",
                self.failures.len(),
                self.failures.join("; ")
            ));
        }
        s
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Run one collection: release holdings, delete the blobs no repository holds, delete
/// objects the metadata does not know. `said` hears every deletion as it happens.
pub async fn collect(
    registry: &dyn RegistryStore,
    blobs: &BlobStore,
    options: &Options,
    said: &mut (dyn FnMut(&Deletion) + Send),
) -> Result<Report, RegistryError> {
    let now = crate::ids::now_ms();
    let cutoff = now.saturating_sub(millis(options.grace));
    let mut report = Report::default();
    // In a dry run, the blobs whose holdings would all be released.
    let mut releasing: HashMap<String, (i64, i64)> = HashMap::new();

    let mut pacer = Pacer::new(options.duty);
    // 1. Holdings: marked a step at a time (a read that finds what must change; on a
    // registry in use, nothing), then released.
    if !options.dry_run {
        let mut after: Option<Holding> = None;
        loop {
            let (_, next) = registry
                .gc_mark_step(now, after.as_ref(), MARK_PAGE)
                .await?;
            pacer.page_done().await;
            match next {
                Some(h) => after = Some(h),
                None => break,
            }
        }
    }
    let unmarked_as = options.dry_run.then_some(now);
    let mut after: Option<Holding> = None;
    loop {
        let page = registry
            .gc_holdings(cutoff, unmarked_as, after.as_ref(), PAGE)
            .await?;
        let Some(last) = page.last().cloned() else {
            break;
        };
        after = Some(last);
        let released = if options.dry_run {
            for h in &page {
                let e = releasing.entry(h.digest.clone()).or_insert((0, h.size));
                e.0 += 1;
            }
            page
        } else {
            let released = registry.gc_sweep_holdings(&page, cutoff).await?;
            report.kept += (page.len() - released.len()) as u64;
            released
        };
        for h in released {
            report.released += 1;
            said(&Deletion::Released(h));
        }
        pacer.page_done().await;
    }

    // 2. Blobs no repository holds.
    if options.dry_run {
        let mut would: Vec<(String, i64)> = Vec::new();
        for (digest, (count, size)) in releasing {
            if registry.blob_holdings(&digest).await? == count {
                would.push((digest, size));
            }
        }
        let mut after = String::new();
        loop {
            let page = registry.gc_unheld_blobs(&after, PAGE).await?;
            let Some((last, _)) = page.last() else {
                break;
            };
            after = last.clone();
            would.extend(page);
        }
        would.sort();
        for (digest, size) in would {
            report.blob_deleted(digest, u64::try_from(size).unwrap_or(0), false, said);
        }
    } else {
        let mut after = String::new();
        loop {
            let page = registry.gc_unheld_blobs(&after, PAGE).await?;
            let Some((last, _)) = page.last() else {
                break;
            };
            after = last.clone();
            let page = page
                .into_iter()
                .map(|(digest, size)| (digest, u64::try_from(size).unwrap_or(0), false));
            delete_blobs(registry, blobs, page, &mut report, said).await?;
            pacer.page_done().await;
        }
    }

    // 3. Objects the metadata has no row for, written over a grace period ago.
    let written_before = SystemTime::now()
        .checked_sub(options.grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut listing = blobs.list_blobs().try_chunks(LISTING_PAGE);
    while let Some(chunk) = listing.next().await {
        let chunk = chunk.map_err(|e| RegistryError::Backend(format!("listing blobs: {}", e.1)))?;
        let digests: Vec<String> = chunk.iter().map(|b| b.digest.to_string()).collect();
        let known: std::collections::HashSet<String> =
            registry.known_blobs(&digests).await?.into_iter().collect();
        let mut orphans = Vec::new();
        for b in chunk {
            let digest = b.digest.to_string();
            if known.contains(&digest) {
                continue;
            }
            let written = match b.written {
                Some(w) => Some(w),
                None => blobs
                    .written(&b.digest)
                    .await
                    .map_err(|e| RegistryError::Backend(format!("blob {digest}: {e}")))?,
            };
            let Some((size, modified)) = written else {
                continue; // gone meanwhile
            };
            if modified >= written_before {
                continue;
            }
            if options.dry_run {
                report.blob_deleted(digest, size, true, said);
            } else {
                orphans.push((digest, size, true));
            }
        }
        delete_blobs(registry, blobs, orphans.into_iter(), &mut report, said).await?;
        pacer.page_done().await;
    }
    Ok(report)
}

/// Delete blobs' objects, each under its row's lock (see the top of this file), as many
/// at once as the metadata store runs writers side by side.
async fn delete_blobs(
    registry: &dyn RegistryStore,
    blobs: &BlobStore,
    page: impl Iterator<Item = (String, u64, bool)>,
    report: &mut Report,
    said: &mut (dyn FnMut(&Deletion) + Send),
) -> Result<(), RegistryError> {
    let outcomes: Vec<_> = futures_util::stream::iter(page)
        .map(|(digest, size, orphan)| async move {
            let Ok(parsed) = digest.parse::<Digest>() else {
                let why = "not a digest this store keeps".to_string();
                return Ok((digest, size, orphan, BlobSweep::Failed(why)));
            };
            let remove =
                Box::pin(async move { blobs.remove(&parsed).await.map_err(|e| e.to_string()) });
            let swept = registry.gc_delete_blob(&digest, orphan, remove).await?;
            Ok::<_, RegistryError>((digest, size, orphan, swept))
        })
        .buffer_unordered(registry.writers_at_once().max(1))
        .collect()
        .await;
    for outcome in outcomes {
        let (digest, size, orphan, swept) = outcome?;
        match swept {
            BlobSweep::Deleted => report.blob_deleted(digest, size, orphan, said),
            BlobSweep::InUse => report.kept += 1,
            BlobSweep::Failed(why) => report.failures.push(format!("{digest}: {why}")),
        }
    }
    Ok(())
}
