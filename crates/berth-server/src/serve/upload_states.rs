//! The blob store's upload session states, kept in the metadata store's upload rows so
//! that every node sharing the metadata can continue every session (see
//! `berth_blobs::UploadStates`).

use std::sync::Arc;

use berth_blobs::{BlobError, SavedUploadState, UploadStates};
use berth_store::RegistryStore;
use futures_util::future::BoxFuture;

pub struct RegistryUploadStates(pub Arc<dyn RegistryStore>);

fn store_error(e: berth_store::RegistryError) -> BlobError {
    match e {
        berth_store::RegistryError::Unavailable(m) => {
            BlobError::Unavailable(format!("upload state in the metadata store: {m}"))
        }
        e => BlobError::Io(format!("upload state in the metadata store: {e}")),
    }
}

impl UploadStates for RegistryUploadStates {
    fn load<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<SavedUploadState>, BlobError>> {
        Box::pin(async move {
            let saved = self.0.upload_state(id).await.map_err(store_error)?;
            Ok(saved.map(|s| SavedUploadState {
                version: s.version,
                state: s.state,
            }))
        })
    }

    fn save<'a>(
        &'a self,
        id: &'a str,
        expected_version: i64,
        state: &'a [u8],
    ) -> BoxFuture<'a, Result<bool, BlobError>> {
        Box::pin(async move {
            self.0
                .save_upload_state(id, expected_version, state, crate::ids::now_ms())
                .await
                .map_err(store_error)
        })
    }
}
