//! Registry passwords (what GetAuthorizationToken returns, `docker login` sends back):
//! a small envelope — format version, issue and expiry times, region, and the access key
//! id that asked for it — signed with HMAC-SHA256 under a server key kept in the metadata
//! store. Checking one costs a few microseconds (no bcrypt); the principal behind the key
//! is looked up again on every request, so policy changes apply to passwords already out.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const VERSION: u8 = 1;

/// What a password says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub issued: i64,
    pub expires: i64,
    pub region: String,
    pub access_key_id: String,
}

/// Why a password is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Not a password this server made (or tampered with).
    Invalid,
    Expired,
}

fn mac(key: &[u8], payload: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(payload);
    m.finalize().into_bytes().into()
}

/// The password for an envelope.
pub fn mint(key: &[u8], e: &Envelope) -> String {
    let mut p = Vec::with_capacity(64);
    p.push(VERSION);
    p.extend_from_slice(&e.issued.to_be_bytes());
    p.extend_from_slice(&e.expires.to_be_bytes());
    for s in [&e.region, &e.access_key_id] {
        p.push(s.len().min(255) as u8);
        p.extend_from_slice(&s.as_bytes()[..s.len().min(255)]);
    }
    let tag = mac(key, &p);
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(&p),
        URL_SAFE_NO_PAD.encode(tag)
    )
}

/// `authorizationToken`: base64("AWS:" + password).
pub fn authorization_token(password: &str) -> String {
    STANDARD.encode(format!("AWS:{password}"))
}

/// Check a password's signature and expiry; returns what it says.
pub fn verify(key: &[u8], password: &str, now: i64) -> Result<Envelope, TokenError> {
    let (p64, t64) = password.split_once('.').ok_or(TokenError::Invalid)?;
    let payload = URL_SAFE_NO_PAD
        .decode(p64)
        .map_err(|_| TokenError::Invalid)?;
    let tag = URL_SAFE_NO_PAD
        .decode(t64)
        .map_err(|_| TokenError::Invalid)?;
    let expected = mac(key, &payload);
    if tag.len() != 32
        || tag
            .iter()
            .zip(expected.iter())
            .fold(0u8, |a, (x, y)| a | (x ^ y))
            != 0
    {
        return Err(TokenError::Invalid);
    }
    let mut r = payload.as_slice();
    let mut take = |n: usize| -> Result<&[u8], TokenError> {
        if r.len() < n {
            return Err(TokenError::Invalid);
        }
        let (a, b) = r.split_at(n);
        r = b;
        Ok(a)
    };
    if take(1)?[0] != VERSION {
        return Err(TokenError::Invalid);
    }
    let int = |b: &[u8]| i64::from_be_bytes(b.try_into().unwrap_or([0; 8]));
    let issued = int(take(8)?);
    let expires = int(take(8)?);
    let mut text = || -> Result<String, TokenError> {
        let n = take(1)?[0] as usize;
        String::from_utf8(take(n)?.to_vec()).map_err(|_| TokenError::Invalid)
    };
    let region = text()?;
    let access_key_id = text()?;
    if now >= expires {
        return Err(TokenError::Expired);
    }
    Ok(Envelope {
        issued,
        expires,
        region,
        access_key_id,
    })
}

/// What a presigned blob download URL (`GetDownloadUrlForLayer`) is signed for: the
/// account whose registry serves it, the Region, the path and the expiry. The account is
/// signed because the server reads it from the (unsigned) `Host` header when the URL is
/// used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedUrl<'a> {
    pub account: &'a str,
    pub region: &'a str,
    pub path: &'a str,
    pub expires: i64,
}

/// The signature of a presigned URL, under the server key.
pub fn url_signature(key: &[u8], u: &SignedUrl<'_>) -> String {
    // Newline-separated: none of the parts can hold a newline (account and Region come
    // from the server, the path is a routed request path).
    let text = format!(
        "GET\n{}\n{}\n{}\n{}",
        u.account, u.region, u.path, u.expires
    );
    URL_SAFE_NO_PAD.encode(mac(key, text.as_bytes()))
}

/// Check a presigned URL's signature and expiry.
pub fn verify_url(key: &[u8], u: &SignedUrl<'_>, signature: &str, now: i64) -> bool {
    let expected = url_signature(key, u);
    now < u.expires
        && expected.len() == signature.len()
        && expected
            .bytes()
            .zip(signature.bytes())
            .fold(0u8, |a, (x, y)| a | (x ^ y))
            == 0
}

/// Read `Authorization: Basic base64(user:password)`; the user must be `AWS`.
pub fn basic_password(header: &str) -> Option<String> {
    let (scheme, value) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(value.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    (user == "AWS").then(|| password.to_string())
}

/// The token of an `Authorization: Bearer TOKEN` header: what clients send after the
/// token flow of `anonymous_pull` (see [`crate::oci::anonymous`]): a registry password,
/// or the anonymous token.
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, value) = header.trim().split_once(' ')?;
    let value = value.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !value.is_empty()).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let key = b"0123456789abcdef0123456789abcdef";
        let e = Envelope {
            issued: 100,
            expires: 200,
            region: "us-east-1".into(),
            access_key_id: "AKIAEXAMPLE".into(),
        };
        let p = mint(key, &e);
        assert_eq!(verify(key, &p, 150), Ok(e.clone()));
        assert_eq!(verify(key, &p, 200), Err(TokenError::Expired));
        assert_eq!(verify(b"another key", &p, 150), Err(TokenError::Invalid));
        // Any change to the payload breaks the signature.
        let mut bytes = p.clone().into_bytes();
        bytes[3] ^= 1;
        assert_eq!(
            verify(key, &String::from_utf8(bytes).unwrap(), 150),
            Err(TokenError::Invalid)
        );
        for bad in ["", ".", "abc", "a.b", &p[..p.len() - 2]] {
            assert_eq!(verify(key, bad, 150), Err(TokenError::Invalid), "{bad}");
        }
        let header = format!("Basic {}", authorization_token(&p));
        assert_eq!(basic_password(&header), Some(p.clone()));
        assert_eq!(
            basic_password(&format!("Basic {}", STANDARD.encode("bob:x"))),
            None
        );
        assert_eq!(basic_password("Bearer abc"), None);
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token(&header), None);
        let url = SignedUrl {
            account: "111111111111",
            region: "us-east-1",
            path: "/v2/app/blobs/sha256:x",
            expires: 500,
        };
        let sig = url_signature(key, &url);
        assert!(verify_url(key, &url, &sig, 499));
        assert!(!verify_url(key, &url, &sig, 500), "expired");
        for (other, why) in [
            (
                SignedUrl {
                    path: "/v2/app/blobs/sha256:y",
                    ..url
                },
                "other path",
            ),
            (
                SignedUrl {
                    expires: 501,
                    ..url
                },
                "other expiry",
            ),
            (
                SignedUrl {
                    account: "222222222222",
                    ..url
                },
                "other account",
            ),
            (
                SignedUrl {
                    region: "eu-west-1",
                    ..url
                },
                "other region",
            ),
        ] {
            assert!(!verify_url(key, &other, &sig, 1), "{why}");
        }
    }
}
