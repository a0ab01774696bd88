//! What can be wrong with a signature, and the wire error codes each protocol uses.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigV4Error {
    /// Neither an `Authorization` header nor presigned parameters.
    MissingAuthenticationToken,
    /// The signature information is malformed or incomplete.
    IncompleteSignature(String),
    /// The credential scope names another service, region, date or terminator.
    Scope(String),
    /// The request time is too far from now (or a presigned URL has expired).
    Expired(String),
    /// `x-amz-content-sha256` does not match the body.
    ContentHashMismatch,
    /// The signature is not the one the secret gives.
    SignatureDoesNotMatch {
        canonical_request: String,
        string_to_sign: String,
    },
}

impl SigV4Error {
    /// The error code of query-protocol services (IAM, STS).
    pub fn query_code(&self) -> &'static str {
        match self {
            SigV4Error::MissingAuthenticationToken => "MissingAuthenticationToken",
            SigV4Error::IncompleteSignature(_) => "IncompleteSignature",
            SigV4Error::Scope(_)
            | SigV4Error::Expired(_)
            | SigV4Error::ContentHashMismatch
            | SigV4Error::SignatureDoesNotMatch { .. } => "SignatureDoesNotMatch",
        }
    }

    /// The error code of JSON-protocol services (ECR).
    pub fn json_code(&self) -> &'static str {
        match self {
            SigV4Error::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            SigV4Error::IncompleteSignature(_) => "IncompleteSignatureException",
            SigV4Error::Scope(_)
            | SigV4Error::Expired(_)
            | SigV4Error::ContentHashMismatch
            | SigV4Error::SignatureDoesNotMatch { .. } => "InvalidSignatureException",
        }
    }

    /// The HTTP status AWS answers with.
    pub fn status(&self) -> u16 {
        match self {
            SigV4Error::MissingAuthenticationToken => 403,
            _ => 400,
        }
    }
}

impl fmt::Display for SigV4Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SigV4Error::MissingAuthenticationToken => {
                f.write_str("Request is missing Authentication Token")
            }
            SigV4Error::IncompleteSignature(m) | SigV4Error::Scope(m) | SigV4Error::Expired(m) => {
                f.write_str(m)
            }
            SigV4Error::ContentHashMismatch => f.write_str(
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            ),
            SigV4Error::SignatureDoesNotMatch { .. } => f.write_str(
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
            ),
        }
    }
}

impl std::error::Error for SigV4Error {}
