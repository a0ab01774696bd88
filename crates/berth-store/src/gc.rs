//! What the metadata store does for garbage collection: the types its
//! [`RegistryStore`](crate::RegistryStore) methods speak. The protocol they implement,
//! and the race it rules out, is written at the top of berth-server's `registry/gc.rs`;
//! in short:
//!
//! - every blob object the registry knows has one row in `blobs`; publishing the object
//!   ([`BlobLock`]), mounting it into a repository, and deleting it
//!   ([`gc_delete_blob`](crate::RegistryStore::gc_delete_blob)) all happen while holding
//!   that row's lock (PostgreSQL: the row lock; SQLite: the database's one write lock);
//! - a repository's holding of a blob is marked by the collector when no image of the
//!   repository references it; anything that tells a client the holding exists or
//!   references it again clears the mark under the holding's row lock, and the sweep
//!   deletes only holdings whose mark is older than the grace period, re-checked under
//!   that lock.

use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;

use crate::registry::RegistryResult;

/// A repository's holding of a blob.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Holding {
    pub account: String,
    pub repository: String,
    pub digest: String,
    pub size: i64,
}

/// A blob's row, locked for publishing its object: dropping it without
/// [`hold`](BlobLock::hold) rolls back (the row is left as it was, or never made).
#[async_trait]
pub trait BlobLock: Send {
    /// The object is in place: record it, make `registry`'s `repository` hold it (an
    /// existing holding loses its mark) and release the lock. `RepositoryNotFound` if
    /// the repository is gone; the blob's row is kept then (the object is there), held by
    /// nothing, for the collector.
    async fn hold(
        self: Box<Self>,
        registry: crate::RegistryKey<'_>,
        repository: &str,
        now: i64,
    ) -> RegistryResult<()>;
}

/// The deletion of a blob's object, run by
/// [`gc_delete_blob`](crate::RegistryStore::gc_delete_blob) while it holds the blob's
/// row: `Ok` once the object is gone (or was not there), `Err` with why it could not be
/// deleted (the row is then left as it was).
pub type ObjectRemoval<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// What [`gc_delete_blob`](crate::RegistryStore::gc_delete_blob) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobSweep {
    /// The object and its row are gone.
    Deleted,
    /// A repository holds the blob (again), or the row changed hands: nothing was
    /// deleted.
    InUse,
    /// The object could not be deleted: nothing changed.
    Failed(String),
}
