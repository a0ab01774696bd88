//! Repository names, tags and digests as ECR and the OCI distribution spec write them.

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`, 2..=256.
pub fn valid_repository_name(name: &str) -> bool {
    if !(2..=256).contains(&name.len()) {
        return false;
    }
    name.split('/').all(valid_component)
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator: ".", "_", "__" or a run of "-", between alphanumerics.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !alnum(b[i]) {
            return false;
        }
    }
    true
}

/// The OCI tag grammar, as error messages quote it.
pub const TAG_GRAMMAR: &str = "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}";

/// An OCI tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`. The one tag check of both APIs (the
/// registry's and ECR's), so no image gets a tag docker, podman or skopeo cannot pull.
pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c))
}

/// A digest as the registry accepts it: `sha256:` and 64 lowercase hex digits.
pub fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "ab", "my-app", "team/app", "a__b", "a---b", "a.b_c", "x1/y2/z3", "0a",
        ] {
            assert!(valid_repository_name(ok), "{ok}");
        }
        for bad in [
            "a", "My-App", "a/", "/a", "a//b", "a..b", "a___b", "-a", "a-", "a/../b", "a b", "a.",
            "_a",
        ] {
            assert!(!valid_repository_name(bad), "{bad}");
        }
        assert!(
            valid_tag("v1.0_rc-1")
                && valid_tag("_x")
                && !valid_tag(".x")
                && !valid_tag("a+b")
                && !valid_tag("")
        );
        assert!(!valid_tag(&"a".repeat(129)));
        assert!(valid_digest(&format!("sha256:{}", "a".repeat(64))));
        assert!(!valid_digest(&format!("sha256:{}", "A".repeat(64))));
        assert!(!valid_digest("sha512:abc") && !valid_digest("sha256:"));
    }
}
