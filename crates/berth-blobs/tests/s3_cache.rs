//! The node-local blob cache in front of a real S3 server (scripts/with-s3 starts s3s-fs
//! and exports `BERTH_TEST_S3_*`; `BERTH_TEST_S3=skip` opts out knowingly). Each test
//! works under its own random prefix of the shared bucket and its own cache directories.
//! That a read came from the cache is shown by removing the object from the bucket first.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_blobs::{BlobCache, BlobStore, Digest, MemoryUploadStates, S3Config};
use futures::stream::StreamExt;
use object_store::aws::AmazonS3;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;

mod common;
use common::{body, config, pattern, raw_client, read_all};

/// Node `a` with a cache of `capacity` bytes, node `b` without one, on one bucket prefix
/// and one session state store; a plain S3 client to change the bucket behind them.
struct Nodes {
    a: BlobStore,
    cache: BlobCache,
    b: BlobStore,
    states: Arc<MemoryUploadStates>,
    config: S3Config,
    raw: AmazonS3,
    dir: tempfile::TempDir,
}

async fn nodes(capacity: u64) -> Option<Nodes> {
    let config = config()?;
    let dir = tempfile::tempdir().unwrap();
    let cache = BlobCache::open(&dir.path().join("cache"), capacity)
        .await
        .unwrap();
    let states = Arc::new(MemoryUploadStates::new());
    let a = BlobStore::s3_cached(&config, states.clone(), Some(cache.clone())).unwrap();
    let b = BlobStore::s3(&config, states.clone()).unwrap();
    let raw = raw_client(&config);
    Some(Nodes {
        a,
        cache,
        b,
        states,
        config,
        raw,
        dir,
    })
}

impl Nodes {
    async fn start(&self) -> String {
        let id = self.a.start_upload().await.unwrap();
        self.states.create(&id);
        id
    }

    /// Removes the blob's object from the bucket, behind the nodes' backs.
    async fn remove_from_bucket(&self, d: &Digest) {
        let hex = d.hex();
        let key = ObjectPath::from(format!(
            "{}/blobs/sha256/{}/{hex}",
            self.config.prefix,
            &hex[..2]
        ));
        self.raw.delete(&key).await.unwrap();
        assert_eq!(self.b.stat(d).await.unwrap(), None);
    }

    /// Where the cache keeps `d` (`sha256/<2 hex>/<64 hex>.<size>`).
    fn cache_file(&self, d: &Digest, size: u64) -> PathBuf {
        let hex = d.hex();
        self.dir
            .path()
            .join("cache/sha256")
            .join(&hex[..2])
            .join(format!("{hex}.{size}"))
    }

    /// Uploads `data` through node `a` in requests of `chunk` bytes and finishes there.
    async fn push_through_a(&self, data: &[u8], chunk: usize) -> Digest {
        let d = Digest::of(data);
        let id = self.start().await;
        let mut offset = 0;
        for piece in data.chunks(chunk) {
            offset = self.a.append(&id, offset, body(piece)).await.unwrap();
        }
        assert_eq!(self.a.finish(&id, &d).await.unwrap(), data.len() as u64);
        d
    }
}

/// Waits (polling, up to 20 s) until `f` holds; fails saying `what` otherwise.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_received_whole_is_served_from_the_cache_without_the_bucket() {
    let Some(n) = nodes(64 << 20).await else {
        return;
    };
    // Several requests, parts of 8 MiB and a tail, all through node a.
    let data = pattern(20 << 20, 1);
    let d = n.push_through_a(&data, 3 << 20).await;
    until("the pushed blob is in a's cache", || n.a.cached(&d)).await;
    assert_eq!(
        std::fs::metadata(n.cache_file(&d, 20 << 20)).unwrap().len(),
        20 << 20
    );
    n.remove_from_bucket(&d).await;

    let got = read_all(n.a.get(&d, None).await.unwrap().unwrap()).await;
    assert!(got == data, "the cached blob read back differently");
    let r =
        n.a.get(&d, Some((5, Some(100_004))))
            .await
            .unwrap()
            .unwrap();
    assert_eq!((r.size, r.start, r.end), (20 << 20, 5, 100_004));
    assert_eq!(read_all(r).await, data[5..100_005]);
    assert!(matches!(
        n.a.get(&d, Some((20 << 20, None))).await,
        Err(berth_blobs::BlobError::RangeNotSatisfiable { size }) if size == 20 << 20
    ));
    // The node without a cache finds nothing: the bytes above came from a's disk.
    assert!(n.b.get(&d, None).await.unwrap().is_none());
    let usage = n.cache.usage();
    assert_eq!((usage.blobs, usage.bytes), (1, 20 << 20));
    assert_eq!(n.cache.staging(), 0);

    // The collector's removal drops it from the cache too.
    n.a.remove(&d).await.unwrap();
    assert!(!n.a.cached(&d));
    assert!(!n.cache_file(&d, 20 << 20).exists());
    assert!(n.a.get(&d, None).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_another_node_took_part_in_is_not_cached() {
    let Some(n) = nodes(64 << 20).await else {
        return;
    };
    let data = pattern(12 << 20, 2);
    let d = Digest::of(&data);
    let id = n.start().await;
    let pieces: Vec<&[u8]> = data.chunks(3 << 20).collect();
    let mut offset = 0;
    for (i, piece) in pieces.iter().enumerate() {
        // a, b, a, a: node a has every request but the second.
        let node = if i == 1 { &n.b } else { &n.a };
        offset = node.append(&id, offset, body(piece)).await.unwrap();
    }
    assert_eq!(n.a.finish(&id, &d).await.unwrap(), 12 << 20);
    assert!(!n.a.cached(&d));
    until("a's staging file of the session is gone", || {
        n.cache.staging() == 0
    })
    .await;
    assert_eq!(n.cache.usage().blobs, 0);

    // A digest mismatch keeps nothing either.
    let id = n.start().await;
    n.a.append(&id, 0, body(&data[..1 << 20])).await.unwrap();
    let wrong = Digest::of(b"something else");
    assert!(n.a.finish(&id, &wrong).await.is_err());
    until("a's staging file of the failed session is gone", || {
        n.cache.staging() == 0
    })
    .await;
    assert!(!n.a.cached(&wrong) && !n.a.cached(&Digest::of(&data[..1 << 20])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_read_fills_the_cache_and_a_range_or_a_cut_read_does_not() {
    let Some(n) = nodes(64 << 20).await else {
        return;
    };
    // Stored through node b, so a has no copy.
    let data = pattern(6 << 20, 3);
    let d = Digest::of(&data);
    n.b.put_stream(&d, body(&data)).await.unwrap();
    assert!(!n.a.cached(&d));

    let r = n.a.get(&d, Some((10, Some(20)))).await.unwrap().unwrap();
    assert_eq!(read_all(r).await, data[10..21]);
    // A whole read cut short.
    let mut cut = n.a.get(&d, None).await.unwrap().unwrap().stream;
    cut.next().await.unwrap().unwrap();
    drop(cut);
    until("the cut read's staging file is gone", || {
        n.cache.staging() == 0
    })
    .await;
    assert!(!n.a.cached(&d));

    let got = read_all(n.a.get(&d, None).await.unwrap().unwrap()).await;
    assert!(got == data);
    until("the blob read whole is in a's cache", || n.a.cached(&d)).await;
    n.remove_from_bucket(&d).await;
    let got = read_all(n.a.get(&d, None).await.unwrap().unwrap()).await;
    assert!(got == data, "the cached blob read back differently");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_least_recently_used_blob_goes_first() {
    let Some(n) = nodes(3 << 20).await else {
        return;
    };
    let blobs: Vec<Vec<u8>> = (0..4).map(|i| pattern(1 << 20, 10 + i)).collect();
    let mut digests = Vec::new();
    for data in &blobs[..3] {
        let d = n.push_through_a(data, 1 << 20).await;
        until("the pushed blob is in a's cache", || n.a.cached(&d)).await;
        digests.push(d);
    }
    // Blob 0 read since: blob 1 is now the least recently used.
    read_all(n.a.get(&digests[0], None).await.unwrap().unwrap()).await;
    let d3 = n.push_through_a(&blobs[3], 1 << 20).await;
    until("the fourth blob is in a's cache", || n.a.cached(&d3)).await;
    digests.push(d3);
    let kept: Vec<bool> = digests.iter().map(|d| n.a.cached(d)).collect();
    assert_eq!(kept, [true, false, true, true]);
    assert!(!n.cache_file(&digests[1], 1 << 20).exists());
    let usage = n.cache.usage();
    assert_eq!(
        (usage.blobs, usage.bytes, usage.capacity),
        (3, 3 << 20, 3 << 20)
    );
    // A blob larger than the whole cache is never kept.
    let big = pattern((3 << 20) + 1, 20);
    let d = n.push_through_a(&big, 4 << 20).await;
    until("the oversized blob's staging file is gone", || {
        n.cache.staging() == 0
    })
    .await;
    assert!(!n.a.cached(&d));
    assert_eq!(n.cache.usage().blobs, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_cache_keeps_its_blobs_and_drops_a_file_changed_behind_its_back() {
    let Some(n) = nodes(64 << 20).await else {
        return;
    };
    let first = pattern(2 << 20, 4);
    let second = pattern(3 << 20, 5);
    let d1 = n.push_through_a(&first, 2 << 20).await;
    let d2 = n.push_through_a(&second, 1 << 20).await;
    until("both blobs are in a's cache", || {
        n.a.cached(&d1) && n.a.cached(&d2)
    })
    .await;
    let dir = n.dir.path().join("cache");
    // One process per cache directory.
    let err = BlobCache::open(&dir, 64 << 20).await.unwrap_err();
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
    // A staging file left by a process that stopped mid-fill.
    std::fs::write(dir.join("staging").join("left-over"), b"partial").unwrap();

    let Nodes {
        a,
        cache,
        config,
        dir: _tmp,
        ..
    } = n;
    drop(a);
    drop(cache);
    let cache = BlobCache::open(&dir, 64 << 20).await.unwrap();
    assert!(cache.contains(&d1) && cache.contains(&d2));
    assert_eq!(cache.usage().bytes, 5 << 20);
    assert_eq!(std::fs::read_dir(dir.join("staging")).unwrap().count(), 0);

    // Reopened smaller: the oldest written goes.
    drop(cache);
    let cache = BlobCache::open(&dir, 4 << 20).await.unwrap();
    assert!(!cache.contains(&d1) && cache.contains(&d2));
    assert_eq!(cached_files(&dir), 1);

    // A file cut short while the cache was closed is dropped when it opens.
    let cut = |len: u64| {
        for f in std::fs::read_dir(dir.join("sha256").join(&d2.hex()[..2])).unwrap() {
            let f = f.unwrap().path();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&f)
                .unwrap()
                .set_len(len)
                .unwrap();
        }
    };
    drop(cache);
    cut(1000);
    let cache = BlobCache::open(&dir, 64 << 20).await.unwrap();
    assert!(!cache.contains(&d2));
    assert_eq!(cached_files(&dir), 0);

    // One cut short while it is open is not served: the bucket's copy is, and the
    // whole read puts the right bytes back.
    let states = Arc::new(MemoryUploadStates::new());
    let a = BlobStore::s3_cached(&config, states, Some(cache.clone())).unwrap();
    read_all(a.get(&d2, None).await.unwrap().unwrap()).await;
    until("the blob read whole is in the cache", || {
        cache.contains(&d2)
    })
    .await;
    cut(999);
    let got = read_all(a.get(&d2, None).await.unwrap().unwrap()).await;
    assert!(got == second, "a cut cached file was served");
    until("the blob read whole is back in the cache", || {
        cache.contains(&d2) && cache.staging() == 0
    })
    .await;
    assert_eq!(cache.usage().bytes, 3 << 20);
}

/// Files the cache keeps in `dir`.
fn cached_files(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("sha256"))
        .unwrap()
        .map(|fan_out| std::fs::read_dir(fan_out.unwrap().path()).unwrap().count())
        .sum()
}
