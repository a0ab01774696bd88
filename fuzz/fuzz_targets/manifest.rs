//! Any bytes as a pushed manifest, with any Content-Type: never a panic; what is accepted
//! is a manifest or an index whose references are all valid sha256 digests.
#![no_main]

use berth_oci::{names::valid_digest, parse_manifest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (content_type, body) = match data.split_first() {
        Some((0, rest)) => (None, rest),
        Some((1, rest)) => (Some("application/vnd.oci.image.manifest.v1+json"), rest),
        Some((2, rest)) => (Some("application/vnd.oci.image.index.v1+json"), rest),
        Some((3, rest)) => (Some("application/vnd.docker.distribution.manifest.v2+json"), rest),
        Some((_, rest)) => (Some("application/json"), rest),
        None => return,
    };
    if let Ok(m) = parse_manifest(body, content_type) {
        assert!(m.refs.iter().all(|(d, _)| valid_digest(d)));
        assert!(m.size >= 0);
        if let Some(s) = &m.subject {
            assert!(valid_digest(s));
        }
    }
});
