//! A blob that arrives from elsewhere (the pull-through cache's upstream), written to a
//! local file that readers may follow while it grows, hashed as it is written, and
//! published as the blob once whole.
//!
//! On the local backend the spool file is in the upload directory and *is* the blob: once
//! its hash matches it is made durable and renamed into place, so the bytes are written
//! once. On the other backends it is a file of the caller's directory, uploaded once whole.
//! A spool dropped unpublished removes its file; one left by a crash is removed by
//! [`BlobStore::expire_uploads`] (local backend) or by its caller.

use std::fs::File;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::AsyncReadExt;

use crate::digest::Sha256;
use crate::error::io_err;
use crate::store::{blocking, private_file, publish_local, SPOOL_PREFIX};
use crate::{BlobError, BlobStore, Digest};

/// A blob being written by its caller; see the module's doc.
pub struct Spool {
    store: BlobStore,
    path: PathBuf,
    file: Arc<File>,
    hasher: Sha256,
    len: u64,
    /// The file is the blob now (or gone with it): not removed on drop.
    published: bool,
}

impl BlobStore {
    /// A new, empty spool: in the upload directory on the local backend, else in
    /// `elsewhere` (a private directory of the caller's, on local disk).
    pub fn spool(&self, elsewhere: &Path) -> Result<Spool, BlobError> {
        let id = uuid::Uuid::new_v4();
        let path = match self.local_uploads() {
            Some(dir) => dir.join(format!("{SPOOL_PREFIX}{id}")),
            None => elsewhere.join(format!("{id}.blob")),
        };
        let file = private_file()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io_err(&format!("making spool file {}", path.display()), e))?;
        Ok(Spool {
            store: self.clone(),
            path,
            file: Arc::new(file),
            hasher: Sha256::new(),
            len: 0,
            published: false,
        })
    }
}

impl Spool {
    /// The file, for readers (read it with positioned reads: the handle is shared). It
    /// stays readable after the spool is published or dropped.
    pub fn file(&self) -> Arc<File> {
        self.file.clone()
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Append `data` (a page-cache write: not durable until published) and hash it.
    pub fn write(&mut self, data: &[u8]) -> Result<(), BlobError> {
        (&*self.file)
            .write_all(data)
            .map_err(|e| io_err("writing the spool file", e))?;
        self.hasher.update(data);
        self.len += data.len() as u64;
        Ok(())
    }

    /// Publish what was written as blob `expected`, as a finished upload is
    /// ([`BlobStore::finish_with`]): [`BlobError::DigestMismatch`] if it hashes to
    /// something else (the file is removed); else `verified` is told the size at once,
    /// then the bytes are made durable and put in place while `gate`'s hold is taken.
    pub async fn publish<V, G, E, F, Fut>(
        mut self,
        expected: &Digest,
        verified: Option<V>,
        gate: F,
    ) -> Result<Result<(u64, G), E>, BlobError>
    where
        V: FnOnce(u64) + Send + 'static,
        F: FnOnce(u64) -> Fut,
        Fut: Future<Output = Result<G, E>>,
    {
        let computed = self.hasher.clone().finish();
        if computed != *expected {
            return Err(BlobError::DigestMismatch {
                expected: *expected,
                computed,
            });
        }
        let size = self.len;
        if let Some(v) = verified {
            v(size);
        }
        let Some(dest) = self.store.local_blob_file(expected)? else {
            // Uploaded from the file (verified again on the way, as any stream is).
            let file = tokio::fs::File::open(&self.path)
                .await
                .map_err(|e| io_err("reading the spool file", e))?;
            let chunks = Box::pin(futures::stream::unfold(file, |mut f| async move {
                let mut buf = vec![0u8; 1 << 20];
                match f.read(&mut buf).await {
                    Ok(0) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        Some((Ok(Bytes::from(buf)), f))
                    }
                    Err(e) => Some((Err(e), f)),
                }
            }));
            let store = self.store.clone();
            return store.put_stream_with(expected, chunks, gate).await;
        };
        let file = self.file.clone();
        blocking(move || {
            file.sync_all()
                .map_err(|e| io_err("syncing the spool file", e))
        })
        .await?;
        let held = match gate(size).await {
            Ok(held) => held,
            Err(e) => return Ok(Err(e)),
        };
        let path = self.path.clone();
        blocking(move || publish_local(&path, &dest)).await?;
        self.published = true;
        Ok(Ok((size, held)))
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
