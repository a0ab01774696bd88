//! `berth-sigv4`: verifying AWS Signature Version 4 on incoming requests (and signing
//! Berth's own outgoing ones).
//!
//! Owns reading the `Authorization` header or the presigned query parameters, the
//! canonical request, the string to sign, the signing key (with a cache), the clock and
//! scope checks and the constant-time comparison. It knows nothing of policies, keys'
//! owners or HTTP servers: the caller hands it the request parts and the secret.

mod canonical;
mod encode;
mod error;
mod parse;
mod sign;
mod time;

pub use canonical::{canonical_request, string_to_sign};
pub use encode::{percent_decode, uri_encode};
pub use error::SigV4Error;
pub use parse::{parse, query_pairs, Credential, SignatureForm, Signed};
pub use sign::{sign, Credentials, Scope};
pub use time::{format_amz_date, parse_amz_date};

use ring::{digest, hmac as ring_hmac};

/// SHA-256 of `data` (ring's: several times faster than a portable implementation on
/// CPUs without SHA extensions, and this runs on every request).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The parts of an HTTP request that the signature covers, as received.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path as sent on the wire (still percent-encoded), without the query.
    pub path: &'a str,
    /// The raw query string, without `?` (empty if none).
    pub query: &'a str,
    /// Header names and values as received; names compare case-insensitively.
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    /// Values of a header, in order (names compare case-insensitively).
    pub fn header_values(&self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    pub fn header(&self, name: &'a str) -> Option<&'a str> {
        self.header_values(name).next()
    }
}

/// What the endpoint expects of a signature.
#[derive(Debug, Clone)]
pub struct Expectations<'a> {
    /// The signing name of the endpoint (`iam`, `sts`, `ecr`).
    pub service: &'a str,
    /// Regions this server answers for; empty accepts any.
    pub regions: &'a [&'a str],
    /// How far the request time may be from now (header form), in seconds.
    pub max_skew_secs: i64,
    /// Now, in seconds since the Unix epoch.
    pub now: i64,
}

/// Hex SHA-256 of the empty payload.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The payload hashes a signature may cover: the body's SHA-256, which must equal
/// `x-amz-content-sha256` when that is sent. `UNSIGNED-PAYLOAD` and aws-chunked
/// streaming are Amazon S3 features: the services verified here (IAM, STS, ECR, Access
/// Analyzer) sign the whole payload, and so must a request to them, in either form (a
/// presigned URL is signed over its empty body, as the SDKs presign these services).
pub fn payload_hashes(req: &Request, _form: SignatureForm) -> Result<Vec<String>, SigV4Error> {
    check_declared_payload(req)?;
    let claimed = req.header("x-amz-content-sha256");
    let actual = hex(&sha256(req.body));
    if let Some(c) = claimed {
        if !c.eq_ignore_ascii_case(&actual) {
            return Err(SigV4Error::ContentHashMismatch);
        }
    }
    Ok(vec![actual])
}

/// Refuse a declared payload hash these services never take (`UNSIGNED-PAYLOAD`,
/// aws-chunked streaming): it can be told from the headers, before the body is read.
pub fn check_declared_payload(req: &Request) -> Result<(), SigV4Error> {
    let claimed = req.header("x-amz-content-sha256");
    if claimed == Some("UNSIGNED-PAYLOAD") {
        return Err(SigV4Error::IncompleteSignature(
            "x-amz-content-sha256 UNSIGNED-PAYLOAD is accepted only by Amazon S3; this endpoint needs the SHA-256 of the payload in the signature".to_string(),
        ));
    }
    if let Some(c) = claimed {
        if c.starts_with("STREAMING-") {
            return Err(SigV4Error::IncompleteSignature(format!(
                "x-amz-content-sha256 {c} (aws-chunked streaming) is not supported by this endpoint; sign the whole payload"
            )));
        }
    }
    Ok(())
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let tag = ring_hmac::sign(&ring_hmac::Key::new(ring_hmac::HMAC_SHA256, key), data);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// The signing key for a secret and a credential scope.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// The signature of a string to sign with a signing key, as lowercase hex.
pub fn signature(key: &[u8; 32], string_to_sign: &str) -> String {
    hex(&hmac(key, string_to_sign.as_bytes()))
}

/// Signing keys derived before, by (access key, secret, date, region, service): the
/// derivation is four HMACs, a large share of a verification. Bounded: emptied when full.
#[derive(Debug, Default)]
pub struct KeyCache {
    /// `access key id/date/region/service` → (the secret it was derived from, the key).
    keys: std::sync::Mutex<std::collections::HashMap<String, (String, [u8; 32])>>,
}

/// Entries kept before the cache is emptied.
const KEY_CACHE_LIMIT: usize = 16_384;

impl KeyCache {
    pub fn new() -> KeyCache {
        KeyCache::default()
    }

    /// The signing key for `secret` under the scope of `signed`.
    pub fn key(&self, signed: &Signed, secret: &str) -> [u8; 32] {
        let c = &signed.credential;
        let mut id = String::with_capacity(
            c.access_key_id.len() + c.date.len() + c.region.len() + c.service.len() + 3,
        );
        for (i, part) in [c.access_key_id, c.date, c.region, c.service]
            .iter()
            .enumerate()
        {
            if i > 0 {
                id.push('/');
            }
            id.push_str(part);
        }
        let mut keys = match self.keys.lock() {
            Ok(k) => k,
            Err(poisoned) => poisoned.into_inner(),
        };
        // The secret must be the one the key was derived from: a re-created access key
        // id with a new secret never uses the old signing key. (Both are the server's
        // own values: no timing concern.)
        if let Some((s, k)) = keys.get(&id) {
            if s == secret {
                return *k;
            }
        }
        let k = signing_key(secret, c.date, c.region, c.service);
        if keys.len() >= KEY_CACHE_LIMIT {
            keys.clear();
        }
        keys.insert(id, (secret.to_string(), k));
        k
    }
}

/// Constant-time equality of two signatures.
fn same_signature(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Check the clock and the credential scope of a parsed signature (before any key is
/// looked up: these need no secret).
pub fn check_scope_and_time(signed: &Signed, exp: &Expectations) -> Result<(), SigV4Error> {
    let c = &signed.credential;
    if c.terminator != "aws4_request" {
        return Err(SigV4Error::Scope(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '"
                .to_string()
                + c.terminator
                + "'.",
        ));
    }
    if c.service != exp.service {
        return Err(SigV4Error::Scope(format!(
            "Credential should be scoped to correct service: '{}'.",
            exp.service
        )));
    }
    if !exp.regions.is_empty() && !exp.regions.contains(&c.region) {
        return Err(SigV4Error::Scope(format!(
            "Credential should be scoped to a valid Region, not '{}'.",
            c.region
        )));
    }
    if !signed.amz_date.starts_with(c.date) {
        return Err(SigV4Error::Scope(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', from '{}'.",
            c.date,
            &signed.amz_date[..signed.amz_date.len().min(8)],
            signed.amz_date
        )));
    }
    let t = parse_amz_date(signed.amz_date).ok_or_else(|| {
        SigV4Error::IncompleteSignature(format!(
            "X-Amz-Date '{}' is not a date of the form YYYYMMDD'T'HHMMSS'Z'",
            signed.amz_date
        ))
    })?;
    match signed.form {
        SignatureForm::Header => {
            if exp.now - t > exp.max_skew_secs {
                return Err(SigV4Error::Expired(format!(
                    "Signature expired: {} is now earlier than {} ({} - {} min.)",
                    signed.amz_date,
                    format_amz_date(exp.now - exp.max_skew_secs),
                    format_amz_date(exp.now),
                    exp.max_skew_secs / 60
                )));
            }
            if t - exp.now > exp.max_skew_secs {
                return Err(SigV4Error::Expired(format!(
                    "Signature not yet current: {} is still later than {} ({} + {} min.)",
                    signed.amz_date,
                    format_amz_date(exp.now + exp.max_skew_secs),
                    format_amz_date(exp.now),
                    exp.max_skew_secs / 60
                )));
            }
        }
        SignatureForm::Query => {
            let expires = signed.expires.unwrap_or(0);
            if exp.now > t + expires {
                return Err(SigV4Error::Expired(format!(
                    "Request has expired: signed at {} for {expires} seconds, now {}",
                    signed.amz_date,
                    format_amz_date(exp.now)
                )));
            }
            if t - exp.now > exp.max_skew_secs {
                return Err(SigV4Error::Expired(format!(
                    "Signature not yet current: {} is still later than {}",
                    signed.amz_date,
                    format_amz_date(exp.now + exp.max_skew_secs)
                )));
            }
        }
    }
    Ok(())
}

/// Verify the signature of `req` with the secret of the access key it names.
/// Call [`check_scope_and_time`] first.
pub fn verify(req: &Request, signed: &Signed, secret: &str) -> Result<(), SigV4Error> {
    let c = &signed.credential;
    verify_with_key(
        req,
        signed,
        &signing_key(secret, c.date, c.region, c.service),
    )
}

/// [`verify`] with the signing key already derived (see [`KeyCache`]).
pub fn verify_with_key(req: &Request, signed: &Signed, key: &[u8; 32]) -> Result<(), SigV4Error> {
    let mut first_attempt = None;
    for hash in payload_hashes(req, signed.form)? {
        let creq = canonical_request(req, signed, &hash)?;
        let sts = string_to_sign(signed, &creq);
        if same_signature(&signature(key, &sts), signed.signature) {
            return Ok(());
        }
        first_attempt.get_or_insert((creq, sts));
    }
    let (canonical_request, string_to_sign) = first_attempt.unwrap_or_default();
    Err(SigV4Error::SignatureDoesNotMatch {
        canonical_request,
        string_to_sign,
    })
}
