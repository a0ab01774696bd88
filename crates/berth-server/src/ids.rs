//! Identifiers, secrets and clock readings in the forms AWS uses: access key ids
//! (`AKIA…`/`ASIA…`), unique ids (`AIDA…`, `AROA…`, …), secrets, session tokens,
//! request ids, ISO 8601 timestamps.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;

/// Characters of access key ids and unique ids after the prefix (base32, as AWS uses).
const ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // The operating system's generator; without it no credential can be issued safely.
    getrandom::fill(&mut b).expect("the operating system's random number generator failed");
    b
}

fn random_string(len: usize, alphabet: &[u8]) -> String {
    let bytes = random_bytes::<64>();
    bytes[..len]
        .iter()
        .map(|b| alphabet[*b as usize % alphabet.len()] as char)
        .collect()
}

/// A long-term access key id: `AKIA` + 16 characters.
pub fn access_key_id() -> String {
    format!("AKIA{}", random_string(16, ID_ALPHABET))
}

/// A temporary access key id: `ASIA` + 16 characters.
pub fn temporary_key_id() -> String {
    format!("ASIA{}", random_string(16, ID_ALPHABET))
}

/// A unique id with its IAM prefix (`AIDA`, `AGPA`, `AROA`, `ANPA`): prefix + 17 characters.
pub fn unique_id(prefix: &str) -> String {
    format!("{prefix}{}", random_string(17, ID_ALPHABET))
}

/// A 40-character secret access key (240 random bits).
pub fn secret_access_key() -> String {
    random_string(40, SECRET_ALPHABET)
}

/// An opaque session token: 48 random bytes, base64 (a handle into the session table).
pub fn session_token() -> String {
    let b = random_bytes::<48>();
    format!(
        "IQoJb3JpZ2luX2Vj{}",
        base64::engine::general_purpose::STANDARD.encode(b)
    )
}

/// A 12-digit account id (not starting with 0).
pub fn account_id() -> String {
    let b = random_bytes::<12>();
    let mut s: String = b.iter().map(|x| (b'0' + x % 10) as char).collect();
    if s.starts_with('0') {
        s.replace_range(0..1, "1");
    }
    s
}

/// A request id shaped like a UUID (random prefix per process, then a counter).
pub fn request_id() -> String {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| u64::from_le_bytes(random_bytes::<8>()));
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut x = seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        (seed >> 32) as u32,
        (seed >> 16) as u16,
        (x >> 52) as u16 & 0xfff,
        (x >> 40) as u16 & 0xfff,
        n & 0xffff_ffff_ffff
    )
}

/// A random (version 4) UUID.
pub fn uuid() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = berth_sigv4::hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Now, in seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Now, in milliseconds since the Unix epoch (the registry's times).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `2019-07-15T23:28:33Z` for seconds since the epoch.
pub fn iso8601(t: i64) -> String {
    let a = berth_sigv4::format_amz_date(t);
    // 20190715T232833Z
    format!(
        "{}-{}-{}T{}:{}:{}Z",
        &a[0..4],
        &a[4..6],
        &a[6..8],
        &a[9..11],
        &a[11..13],
        &a[13..15]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let k = access_key_id();
        assert_eq!(k.len(), 20);
        assert!(k.starts_with("AKIA"));
        assert_eq!(secret_access_key().len(), 40);
        assert_eq!(unique_id("AIDA").len(), 21);
        let a = account_id();
        assert!(a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()) && !a.starts_with('0'));
        assert_eq!(iso8601(1_563_233_313), "2019-07-15T23:28:33Z");
        assert_ne!(request_id(), request_id());
        assert_ne!(access_key_id(), access_key_id());
    }
}
