//! Any text as an upstream registry's `WWW-Authenticate` header (the pull-through cache
//! reads it to sign in): never a panic, bounded output, schemes and parameter names
//! lowercase tokens.
#![no_main]

use berth_oci::challenge::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let challenges = parse(text);
    assert!(challenges.len() <= 32);
    for c in &challenges {
        assert!(!c.scheme.is_empty());
        assert!(c.params.len() <= 32);
        for s in std::iter::once(&c.scheme).chain(c.params.iter().map(|(n, _)| n)) {
            assert!(!s.bytes().any(|b| b.is_ascii_uppercase() || b == b' ' || b == b','), "{s:?}");
        }
        for (_, v) in &c.params {
            assert!(v.len() <= text.len());
        }
    }
    // Deterministic.
    assert_eq!(parse(text), challenges);
});
