//! Where a backend that shares upload sessions between nodes keeps their state between
//! requests: [`UploadStates`], which the server implements over its metadata store (this
//! crate does not know that store), and [`MemoryUploadStates`] for one process.

use std::collections::HashMap;
use std::sync::Mutex;

use futures::future::BoxFuture;

use crate::BlobError;

/// The saved state of an upload session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedUploadState {
    /// Incremented by every save; 0 before the first.
    pub version: i64,
    /// What the backend saved last; `None` before the first save.
    pub state: Option<Vec<u8>>,
}

/// Upload session states shared by every node, saved by compare-and-set.
///
/// A session exists here from when the caller records it (after
/// [`BlobStore::start_upload`](crate::BlobStore::start_upload)) until the caller forgets
/// it; the blob store only reads and replaces its state.
pub trait UploadStates: Send + Sync + 'static {
    /// The session's state; `None` if there is no such session.
    fn load<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<SavedUploadState>, BlobError>>;

    /// Replaces the state if its version is still `expected_version` (it becomes
    /// `expected_version + 1`). False if the session is gone or another save came first.
    fn save<'a>(
        &'a self,
        id: &'a str,
        expected_version: i64,
        state: &'a [u8],
    ) -> BoxFuture<'a, Result<bool, BlobError>>;
}

/// Upload states in this process's memory: for single-request uploads and tests.
#[derive(Debug, Default)]
pub struct MemoryUploadStates {
    sessions: Mutex<HashMap<String, SavedUploadState>>,
}

impl MemoryUploadStates {
    pub fn new() -> MemoryUploadStates {
        MemoryUploadStates::default()
    }

    /// Records a new session (version 0, no state).
    pub fn create(&self, id: &str) {
        self.lock().insert(
            id.to_owned(),
            SavedUploadState {
                version: 0,
                state: None,
            },
        );
    }

    /// Forgets a session.
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SavedUploadState>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl UploadStates for MemoryUploadStates {
    fn load<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<SavedUploadState>, BlobError>> {
        let found = self.lock().get(id).cloned();
        Box::pin(async move { Ok(found) })
    }

    fn save<'a>(
        &'a self,
        id: &'a str,
        expected_version: i64,
        state: &'a [u8],
    ) -> BoxFuture<'a, Result<bool, BlobError>> {
        let saved = match self.lock().get_mut(id) {
            Some(s) if s.version == expected_version => {
                s.version += 1;
                s.state = Some(state.to_vec());
                true
            }
            _ => false,
        };
        Box::pin(async move { Ok(saved) })
    }
}
