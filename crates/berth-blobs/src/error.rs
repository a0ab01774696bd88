use std::fmt;

use crate::Digest;

/// Everything a [`BlobStore`](crate::BlobStore) operation can fail with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobError {
    /// The string is not `sha256:` followed by 64 lowercase hex digits.
    InvalidDigest(String),
    /// The blob does not exist (e.g. deleting a missing blob).
    NotFound,
    /// The uploaded bytes hash to `computed`, not to the digest the client named.
    DigestMismatch { expected: Digest, computed: Digest },
    /// An append did not start at the end of the upload; `expected` is its current size.
    OffsetMismatch { expected: u64 },
    /// No such upload session (never started, finished, cancelled or expired).
    UploadUnknown,
    /// The requested range starts at or beyond the end of a blob of `size` bytes
    /// (or ends before it starts).
    RangeNotSatisfiable { size: u64 },
    /// Storage failure, or the upload body stream failed; the message says which.
    Io(String),
    /// The storage (or the metadata store keeping upload states) cannot be reached right
    /// now; nothing was changed, and the same request may succeed once it is back.
    Unavailable(String),
}

impl fmt::Display for BlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlobError::InvalidDigest(s) => {
                write!(
                    f,
                    "invalid digest {s:?}: expected \"sha256:\" and 64 lowercase hex digits"
                )
            }
            BlobError::NotFound => f.write_str("blob not found"),
            BlobError::DigestMismatch { expected, computed } => {
                write!(
                    f,
                    "digest mismatch: expected {expected}, content hashes to {computed}"
                )
            }
            BlobError::OffsetMismatch { expected } => {
                write!(
                    f,
                    "upload offset mismatch: the upload currently holds {expected} bytes"
                )
            }
            BlobError::UploadUnknown => f.write_str("upload session unknown or expired"),
            BlobError::RangeNotSatisfiable { size } => {
                write!(f, "range not satisfiable for a blob of {size} bytes")
            }
            BlobError::Io(msg) => write!(f, "blob storage I/O error: {msg}"),
            BlobError::Unavailable(msg) => write!(f, "blob storage unavailable: {msg}"),
        }
    }
}

impl std::error::Error for BlobError {}

pub(crate) fn io_err(context: &str, e: impl fmt::Display) -> BlobError {
    BlobError::Io(format!("{context}: {e}"))
}

impl From<object_store::Error> for BlobError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => BlobError::NotFound,
            other => {
                // object_store says "out of reach" only in words: a request that could not be
                // sent (connection refused or reset, DNS, connect timeout: reqwest's "error
                // sending request"), or a server that answered 503 (after the retries).
                let text = other.to_string();
                if text.contains("error sending request")
                    || text.contains("503 Service Unavailable")
                    || text.contains("Connection refused")
                {
                    BlobError::Unavailable(text)
                } else {
                    BlobError::Io(text)
                }
            }
        }
    }
}
