//! The blob half of `berth migrate`: copy the blobs the registry's repositories hold from
//! one blob store into another (local files or an S3 bucket). Each blob is streamed
//! (bounded memory) through the destination's `put_stream`, which checks the bytes
//! against the blob's name (its SHA-256) before the blob becomes visible there: a
//! corrupt source blob is reported and never copied. A blob already at the destination with the size the
//! metadata records is left as it is, so an interrupted copy resumes.

use berth_blobs::{BlobError, BlobStore, Digest};

/// What happened to the blobs.
#[derive(Debug, Default)]
pub struct BlobTotals {
    pub copied: u64,
    pub bytes_copied: u64,
    pub present: u64,
    pub bytes_present: u64,
    /// Blobs not copied.
    pub failed: Vec<FailedBlob>,
}

/// A blob that was not copied, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedBlob {
    pub digest: String,
    pub why: String,
}

/// What became of one blob.
enum Outcome {
    Copied(u64),
    Present(u64),
    Failed(String),
}

/// Copy each of `blobs` (digest, size the metadata records) from `from` into `to`,
/// calling `progress` after each one with the totals so far.
pub async fn copy_blobs(
    from: &BlobStore,
    to: &BlobStore,
    blobs: &[(String, i64)],
    totals: &mut BlobTotals,
    progress: &mut dyn FnMut(&BlobTotals, Option<&FailedBlob>),
) {
    for (digest, size) in blobs {
        match copy_one(from, to, digest, *size).await {
            Outcome::Copied(n) => {
                totals.copied += 1;
                totals.bytes_copied += n;
                progress(totals, None);
            }
            Outcome::Present(n) => {
                totals.present += 1;
                totals.bytes_present += n;
                progress(totals, None);
            }
            Outcome::Failed(why) => {
                totals.failed.push(FailedBlob {
                    digest: digest.clone(),
                    why,
                });
                progress(totals, totals.failed.last());
            }
        }
    }
}

async fn copy_one(from: &BlobStore, to: &BlobStore, digest: &str, size: i64) -> Outcome {
    let d: Digest = match digest.parse() {
        Ok(d) => d,
        Err(e) => return Outcome::Failed(format!("the metadata names it so: {e}")),
    };
    match to.stat(&d).await {
        Ok(Some(n)) if i64::try_from(n) == Ok(size) => return Outcome::Present(n),
        Ok(Some(n)) => {
            return Outcome::Failed(format!(
                "the destination holds {n} bytes under this name, the metadata says {size}: \
                 left as it is (remove it there and run migrate again to copy it)"
            ))
        }
        Ok(None) => {}
        Err(e) => return Outcome::Failed(format!("looking for it at the destination: {e}")),
    }
    let reader = match from.get(&d, None).await {
        Ok(Some(r)) => r,
        Ok(None) => return Outcome::Failed("missing from the source blob store".into()),
        Err(e) => return Outcome::Failed(format!("reading it from the source: {e}")),
    };
    // Streamed through the destination's put_stream: bounded memory, and the blob
    // becomes visible there only once its bytes hash to its name; a failure leaves
    // nothing of it behind.
    match to.put_stream(&d, reader.stream).await {
        Ok(n) => Outcome::Copied(n),
        Err(BlobError::DigestMismatch { computed, .. }) => Outcome::Failed(format!(
            "corrupt at the source: its bytes hash to {computed}; not copied"
        )),
        Err(e) => Outcome::Failed(format!("storing it at the destination: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn path_of(root: &std::path::Path, d: &Digest) -> std::path::PathBuf {
        let hex = d.hex();
        root.join("blobs/sha256").join(&hex[..2]).join(hex.as_str())
    }

    #[tokio::test]
    async fn copies_verified_blobs_skips_present_ones_and_names_corrupt_ones() {
        let (src_dir, dst_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let src = BlobStore::local(src_dir.path()).await.unwrap();
        let dst = BlobStore::local(dst_dir.path()).await.unwrap();
        // Bigger than one append batch, so the copy streams.
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let big_d = src.put_bytes(Bytes::from(big.clone())).await.unwrap();
        let small_d = src.put_bytes(Bytes::from_static(b"config")).await.unwrap();
        let bad_d = src.put_bytes(Bytes::from_static(b"layer")).await.unwrap();
        // Rot at the source: same name, other bytes.
        std::fs::write(path_of(src_dir.path(), &bad_d), b"layeR").unwrap();
        let missing = Digest::of(b"never stored");
        let blobs = vec![
            (big_d.to_string(), big.len() as i64),
            (small_d.to_string(), 6),
            (bad_d.to_string(), 5),
            (missing.to_string(), 3),
        ];
        let mut totals = BlobTotals::default();
        let mut calls = 0;
        copy_blobs(&src, &dst, &blobs, &mut totals, &mut |_, _| calls += 1).await;
        assert_eq!(calls, 4);
        assert_eq!((totals.copied, totals.present), (2, 0));
        assert_eq!(totals.bytes_copied, big.len() as u64 + 6);
        assert_eq!(std::fs::read(path_of(dst_dir.path(), &big_d)).unwrap(), big);
        let failed: Vec<&str> = totals.failed.iter().map(|f| f.digest.as_str()).collect();
        assert_eq!(failed, [bad_d.to_string(), missing.to_string()]);
        assert!(
            totals.failed[0].why.contains("corrupt at the source"),
            "{:?}",
            totals.failed
        );
        assert!(
            totals.failed[1].why.contains("missing"),
            "{:?}",
            totals.failed
        );
        // Nothing of the corrupt blob reached the destination, not even staged bytes.
        assert_eq!(dst.stat(&bad_d).await.unwrap(), None);
        assert_eq!(
            std::fs::read_dir(dst_dir.path().join("uploads"))
                .unwrap()
                .count(),
            0
        );

        // Again: the copied blobs are there and left alone; a wrong size is not replaced.
        std::fs::write(path_of(dst_dir.path(), &small_d), b"conf").unwrap();
        let mut again = BlobTotals::default();
        copy_blobs(&src, &dst, &blobs[..2], &mut again, &mut |_, _| {}).await;
        assert_eq!((again.copied, again.present), (0, 1));
        assert_eq!(again.bytes_present, big.len() as u64);
        assert_eq!(again.failed.len(), 1);
        assert!(
            again.failed[0].why.contains("holds 4 bytes"),
            "{:?}",
            again.failed
        );
        assert_eq!(
            std::fs::read(path_of(dst_dir.path(), &small_d)).unwrap(),
            b"conf"
        );
    }
}
