//! Any text as a Range header, a repository name, a tag or a digest: never a panic; what
//! is accepted is well formed.
#![no_main]

use berth_oci::names::{valid_digest, valid_repository_name, valid_tag};
use berth_oci::{parse_range, ByteRange};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = parse_range(text) {
        match r {
            ByteRange::From(a, Some(b)) => assert!(b >= a),
            ByteRange::Last(n) => assert!(n > 0),
            ByteRange::From(_, None) => {}
        }
        let (start, end) = r.resolve(1 << 20);
        assert!(end.is_none_or(|e| e >= start));
    }
    if valid_repository_name(text) {
        assert!(!text.contains("..") && !text.contains("//") && !text.starts_with('/'));
        assert!(text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b)));
    }
    // The tag grammar both APIs share, `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`, written out
    // again here as the oracle.
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let grammar = !text.is_empty()
        && text.len() <= 128
        && word(text.as_bytes()[0])
        && text.bytes().all(|b| word(b) || b == b'.' || b == b'-');
    assert_eq!(valid_tag(text), grammar, "{text:?}");
    if valid_digest(text) {
        assert_eq!(text.len(), 71);
    }
});
