//! Replication between Berth deployments: the peer link.
//!
//! A deployment that serves some Regions can replicate to a Region another deployment
//! serves (`replication_peers` in the configuration: that deployment's Region, endpoint
//! and a key file). Trust is set up by the operators of both sides, explicitly and both
//! ways: each lists the other with the same secret (at least 32 random bytes). Nothing
//! else is trusted: a request of the peer API that is not signed with the key of a peer
//! this deployment lists is refused, whoever sends it.
//!
//! Authentication: every request carries `X-Berth-Peer: region=R, time=T, signature=S`,
//! where R is a Region the sender serves (this side's peer entry for R holds the key), T
//! the sender's clock (seconds; at most five minutes off), and S the hex HMAC-SHA256, with
//! the shared key, of `berth-peer-v1`, the method, the path and query, T and the
//! SHA-256 of the body — or `UNSIGNED` for a blob chunk, whose bytes the blob's digest
//! checks when the upload is finished. A peer vouches for the source account of what it
//! sends: the destination still decides with its own registry policy, naming that
//! account's root, exactly as within one deployment, and the source Region of a
//! replication must be the Region the sender is listed for.
//!
//! The API (under `/berth/peer/v1`, JSON bodies):
//! - `POST /replicate`: apply one replication (push, tag removal, image deletion) to a
//!   registry here. A push names its manifests (children first) and its blobs; blobs this
//!   deployment does not have come back as `409 {"missing": [...]}`, and the sender
//!   uploads them, then asks again. `403 {"failureCode"}` when the destination refuses.
//! - `POST /uploads` (`{account, region, repository}`, a repository the first
//!   `/replicate` made or found) → `{id}`; `GET /uploads/ID` → `{offset}`, so an
//!   interrupted transfer resumes where it stopped; `PATCH /uploads/ID?offset=N` streams
//!   bytes (bounded memory both sides; the sender sends at most 16 MiB a request, so a
//!   cut transfer resumes from its last whole request whatever the blob store keeps of
//!   a cut one, and it continues the same session in a later delivery attempt);
//!   `PUT /uploads/ID?digest=D` verifies and publishes the blob, held by that repository.

pub mod client;
mod server;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub use server::serve;

/// The path every peer request starts with.
pub const PREFIX: &str = "/berth/peer/v1/";
/// The header of the peer signature.
pub const HEADER: &str = "x-berth-peer";
/// How far the sender's clock may be from this one's.
pub const MAX_SKEW_SECS: i64 = 300;
/// The body hash of a request whose body the signature does not cover (blob chunks).
pub const UNSIGNED: &str = "UNSIGNED";

/// The signature of one request.
pub fn sign(key: &[u8], method: &str, path_and_query: &str, time: i64, body_hash: &str) -> String {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for part in [
        "berth-peer-v1",
        method,
        path_and_query,
        &time.to_string(),
        body_hash,
    ] {
        mac.update(part.as_bytes());
        mac.update(b"\n");
    }
    berth_sigv4::hex(&mac.finalize().into_bytes())
}

/// The hex SHA-256 of a body.
pub fn body_hash(body: &[u8]) -> String {
    use sha2::Digest;
    berth_sigv4::hex(&Sha256::digest(body))
}

/// The `X-Berth-Peer` header's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub region: String,
    pub time: i64,
    pub signature: String,
}

impl Signed {
    pub fn header(&self) -> String {
        format!(
            "region={}, time={}, signature={}",
            self.region, self.time, self.signature
        )
    }

    pub fn parse(header: &str) -> Option<Signed> {
        let (mut region, mut time, mut signature) = (None, None, None);
        for part in header.split(',') {
            let (k, v) = part.trim().split_once('=')?;
            match k {
                "region" => region = Some(v.to_string()),
                "time" => time = v.parse().ok(),
                "signature" => signature = Some(v.to_string()),
                _ => return None,
            }
        }
        Some(Signed {
            region: region?,
            time: time?,
            signature: signature?,
        })
    }
}

/// Whether two signatures are equal, in time that does not depend on where they differ.
pub fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any header text parses to fields or to nothing, never a panic; what parses
        /// prints back to a header that parses the same.
        #[test]
        fn any_peer_header_parses_or_is_refused(text in ".{0,200}") {
            if let Some(s) = Signed::parse(&text) {
                prop_assert_eq!(Signed::parse(&s.header()), Some(s));
            }
        }

        /// A signature never verifies under another key, method, path, time or body.
        #[test]
        fn a_signature_is_bound_to_what_it_signs(
            key in proptest::collection::vec(any::<u8>(), 32..64),
            path in "/[a-z/?=&0-9]{0,40}",
            time in any::<i64>(),
            body in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let s = sign(&key, "POST", &path, time, &body_hash(&body));
            let longer = path.clone() + "x";
            let mut other = key.clone();
            other[0] ^= 1;
            prop_assert!(!same(&s, &sign(&other, "POST", &path, time, &body_hash(&body))));
            prop_assert!(!same(&s, &sign(&key, "PUT", &path, time, &body_hash(&body))));
            prop_assert!(!same(&s, &sign(&key, "POST", &longer, time, &body_hash(&body))));
            prop_assert!(!same(&s, &sign(&key, "POST", &path, time.wrapping_add(1), &body_hash(&body))));
            prop_assert!(same(&s, &sign(&key, "POST", &path, time, &body_hash(&body))));
        }
    }

    #[test]
    fn a_signature_covers_every_part_and_the_header_round_trips() {
        let key = [7u8; 32];
        let s = sign(
            &key,
            "POST",
            "/berth/peer/v1/replicate",
            100,
            &body_hash(b"{}"),
        );
        assert_eq!(s.len(), 64);
        for (m, p, t, b) in [
            ("PUT", "/berth/peer/v1/replicate", 100, body_hash(b"{}")),
            ("POST", "/berth/peer/v1/uploads", 100, body_hash(b"{}")),
            ("POST", "/berth/peer/v1/replicate", 101, body_hash(b"{}")),
            ("POST", "/berth/peer/v1/replicate", 100, body_hash(b"{ }")),
        ] {
            assert_ne!(sign(&key, m, p, t, &b), s);
        }
        assert_ne!(
            sign(
                &[8u8; 32],
                "POST",
                "/berth/peer/v1/replicate",
                100,
                &body_hash(b"{}")
            ),
            s
        );
        let h = Signed {
            region: "us-east-1".into(),
            time: 100,
            signature: s.clone(),
        };
        assert_eq!(Signed::parse(&h.header()), Some(h));
        assert_eq!(Signed::parse("region=x, time=1"), None);
        assert_eq!(
            Signed::parse("region=x, time=1, signature=a, extra=1"),
            None
        );
        assert!(same(&s, &s.clone()) && !same(&s, &s[1..]));
    }
}
