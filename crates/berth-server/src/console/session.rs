//! Console sessions: a signed cookie (HMAC-SHA256 with the registry-token key every node
//! shares, so any node serves any session), HttpOnly, SameSite=Strict, Secure on TLS,
//! scoped to `/console`, expiring after [`LIFETIME`]. It names who signed in and how;
//! every request turns it back into a [`Caller`] through the store, so a deleted user, a
//! deactivated key or a changed password ends the session at once. Its CSRF token is the
//! one every form must send back.

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::auth::cache::Credential;
use crate::auth::Caller;
use crate::serve::App;

/// The cookie's name.
pub const COOKIE: &str = "berth_console";
/// How long a session lasts.
pub const LIFETIME: i64 = 8 * 3600;

/// What a session cookie holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The account.
    pub a: String,
    /// The IAM user that signed in with its password (`None`: signed in with a key).
    pub u: Option<String>,
    /// The access key that signed in (`None`: with a password).
    pub k: Option<String>,
    /// Issued, seconds since the epoch.
    pub i: i64,
    /// Expires, seconds since the epoch.
    pub e: i64,
    /// The CSRF token of this session's forms.
    pub c: String,
}

fn mac(key: &[u8], payload: &str) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    m.update(b"berth-console-session\n");
    m.update(payload.as_bytes());
    m.finalize().into_bytes().to_vec()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()
}

/// The cookie value of `claims`.
pub fn seal(key: &[u8], claims: &Claims) -> String {
    let payload = b64(&serde_json::to_vec(claims).expect("claims serialize"));
    let sig = b64(&mac(key, &payload));
    format!("{payload}.{sig}")
}

/// The claims of a cookie value, if its signature holds and it has not expired.
pub fn open(key: &[u8], value: &str, now: i64) -> Option<Claims> {
    let (payload, sig) = value.split_once('.')?;
    let expected = mac(key, payload);
    let given = unb64(sig)?;
    // Constant-time comparison.
    if given.len() != expected.len()
        || given
            .iter()
            .zip(&expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            != 0
    {
        return None;
    }
    let claims: Claims = serde_json::from_slice(&unb64(payload)?).ok()?;
    (claims.e > now).then_some(claims)
}

/// The session cookie of a request's headers.
pub fn cookie(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value for `value` (empty with `max_age` 0: the cookie removed).
pub fn set_cookie(value: &str, max_age: i64, secure: bool) -> String {
    format!(
        "{COOKIE}={value}; Path=/console; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The caller a session stands for, as it stands now: `None` when the user, its login
/// profile or the key is gone, the key is inactive, or the password changed since.
pub async fn caller(app: &App, claims: &Claims) -> Option<Caller> {
    let now = crate::ids::now();
    match (&claims.u, &claims.k) {
        (Some(user), None) => {
            let profile = app.store.login_profile(&claims.a, user).await.ok()??;
            // A password changed since, or a reset the administrator asked for, ends it.
            if profile.changed > claims.i || profile.reset_required {
                return None;
            }
            let key = berth_store::AccessKey {
                id: String::new(),
                secret: String::new(),
                account: claims.a.clone(),
                user: Some(profile.user),
                status: berth_store::KeyStatus::Active,
                created: profile.created,
            };
            crate::auth::authenticate::caller_for(app, "", &Credential::Key(key), now)
                .await
                .ok()
        }
        (None, Some(key_id)) => {
            let credential = app.caches.credential(&*app.store, key_id).await.ok()??;
            if !matches!(&*credential, Credential::Key(k) if k.account == claims.a) {
                return None;
            }
            crate::auth::authenticate::caller_for(app, key_id, &credential, now)
                .await
                .ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_opens_only_with_its_key_untouched_and_in_time() {
        let claims = Claims {
            a: "111111111111".into(),
            u: Some("ana".into()),
            k: None,
            i: 100,
            e: 200,
            c: "csrf".into(),
        };
        let v = seal(b"key", &claims);
        assert_eq!(open(b"key", &v, 150), Some(claims.clone()));
        assert_eq!(open(b"key", &v, 200), None, "expired");
        assert_eq!(open(b"other", &v, 150), None, "another key");
        let (payload, sig) = v.split_once('.').unwrap();
        let forged = Claims {
            u: Some("root".into()),
            ..claims
        };
        let forged = format!("{}.{sig}", b64(&serde_json::to_vec(&forged).unwrap()));
        assert_eq!(open(b"key", &forged, 150), None, "changed claims");
        assert_eq!(open(b"key", payload, 150), None, "no signature");
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            axum::http::header::COOKIE,
            format!("a=b; {COOKIE}={v}; c=d").parse().unwrap(),
        );
        assert_eq!(cookie(&h), Some(v.as_str()));
    }
}
