//! Content-addressed blob storage for Berth's OCI registry: sha256 digests, blobs kept
//! in an `object_store` backend (local filesystem under the data dir, or in-memory for
//! tests), and resumable upload sessions staged on local disk.
//! It owns digest verification, durability (fsync + atomic rename) and upload expiry.
//! It must not know about repositories, manifests, tags, permissions or HTTP: callers
//! map [`BlobError`] to protocol errors and decide which blobs a repository may see.

mod digest;
mod error;
mod store;

pub use digest::{Digest, DigestHex};
pub use error::BlobError;
pub use store::{BlobReader, BlobStore};
