//! Content-addressed blob storage for Berth's OCI registry: sha256 digests, blobs kept
//! in an `object_store` backend (local filesystem under the data dir, an S3-compatible
//! bucket, or in-memory for tests), and resumable upload sessions (staged on local disk,
//! or in the bucket with their state in the caller's [`UploadStates`]).
//! It owns digest verification, durability (fsync + atomic rename) and upload expiry.
//! It must not know about repositories, manifests, tags, permissions or HTTP: callers
//! map [`BlobError`] to protocol errors and decide which blobs a repository may see.

mod cache;
mod digest;
mod error;
mod s3;
mod sessions;
mod spool;
mod store;

pub use cache::{observe_cache, BlobCache, CacheEvent, CacheObserver, CacheUsage};
pub use digest::{Digest, DigestHex};
pub use error::BlobError;
pub use s3::S3Config;
pub use sessions::{MemoryUploadStates, SavedUploadState, UploadStates};
pub use spool::Spool;
pub use store::{BlobReader, BlobStore, StoredBlob};

/// What is told the latency of each object-store look-up ([`observe_latency`]).
pub type LatencyObserver = fn(operation: &'static str, seconds: f64);

static OBSERVER: std::sync::OnceLock<LatencyObserver> = std::sync::OnceLock::new();

/// Have `f` told how long each object-store look-up took (`stat`, `get` to the first byte
/// of a whole blob on S3, `remove`): the
/// server's metrics. Set once per process; later calls are ignored.
pub fn observe_latency(f: LatencyObserver) {
    let _ = OBSERVER.set(f);
}

/// Tell the observer, if any, that `operation` took since `started`.
pub(crate) fn observed(operation: &'static str, started: std::time::Instant) {
    if let Some(f) = OBSERVER.get() {
        f(operation, started.elapsed().as_secs_f64());
    }
}
