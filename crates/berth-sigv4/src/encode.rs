//! SigV4's URI encoding: every byte but the unreserved `A-Z a-z 0-9 - _ . ~` becomes
//! `%XX` (uppercase hex); and the matching decoding of `%XX`.

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// Encode `s`, keeping `/` when `keep_slash`.
pub fn uri_encode(s: &[u8], keep_slash: bool, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s {
        if unreserved(b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
}

/// Decode `%XX` escapes (a `%` not followed by two hex digits stays as it is).
pub fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hi = (b[i + 1] as char).to_digit(16);
            let lo = b.get(i + 2).and_then(|c| (*c as char).to_digit(16));
            if let (Some(hi), Some(lo)) = (hi, lo) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_and_decodes() {
        let mut out = String::new();
        uri_encode(b"a b/c~d*e+f%", true, &mut out);
        assert_eq!(out, "a%20b/c~d%2Ae%2Bf%25");
        out.clear();
        uri_encode(b"a/b", false, &mut out);
        assert_eq!(out, "a%2Fb");
        assert_eq!(percent_decode("a%20b%2f%zz%"), b"a b/%zz%".to_vec());
        assert_eq!(percent_decode("%4"), b"%4".to_vec());
    }
}
