//! `sha256:<hex>` digests and the SHA-256 implementation used to compute them.

use std::fmt;
use std::str::FromStr;

use crate::BlobError;

const PREFIX: &str = "sha256:";
const HEX: &[u8; 16] = b"0123456789abcdef";

/// A sha256 content digest.
///
/// Parsing is strict: exactly `"sha256:"` followed by 64 lowercase hex digits;
/// anything else (other algorithms, uppercase hex, wrong length) is
/// [`BlobError::InvalidDigest`]. [`Display`](fmt::Display) prints the same form.
/// Holds the 32 raw hash bytes, so it is small and `Copy`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    bytes: [u8; 32],
}

impl Digest {
    /// The sha256 digest of `data`.
    pub fn of(data: &[u8]) -> Digest {
        let mut h = Sha256::new();
        h.update(data);
        h.finish()
    }

    /// Builds a digest from the raw 32 hash bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Digest {
        Digest { bytes }
    }

    /// The raw 32 hash bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// The 64 lowercase hex digits, without the `sha256:` prefix (derefs to `&str`).
    pub fn hex(&self) -> DigestHex {
        let mut hex = [0u8; 64];
        for (i, b) in self.bytes.iter().enumerate() {
            hex[2 * i] = HEX[usize::from(b >> 4)];
            hex[2 * i + 1] = HEX[usize::from(b & 0x0f)];
        }
        DigestHex(hex)
    }

    /// The algorithm name; always `"sha256"`.
    pub fn algorithm(&self) -> &'static str {
        "sha256"
    }
}

/// The 64 lowercase hex digits of a [`Digest`]; derefs to `str`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DigestHex([u8; 64]);

impl DigestHex {
    /// The hex digits as a string slice.
    pub fn as_str(&self) -> &str {
        // Only ever filled with bytes from `HEX`.
        std::str::from_utf8(&self.0).expect("digest hex is ASCII")
    }
}

impl std::ops::Deref for DigestHex {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for DigestHex {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<std::path::Path> for DigestHex {
    fn as_ref(&self) -> &std::path::Path {
        self.as_str().as_ref()
    }
}

impl PartialEq<str> for DigestHex {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for DigestHex {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for DigestHex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for DigestHex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl FromStr for Digest {
    type Err = BlobError;

    fn from_str(s: &str) -> Result<Digest, BlobError> {
        let invalid = || BlobError::InvalidDigest(s.chars().take(100).collect());
        let hex = s.strip_prefix(PREFIX).ok_or_else(invalid)?.as_bytes();
        if hex.len() != 64 {
            return Err(invalid());
        }
        let mut bytes = [0u8; 32];
        for (out, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
            let (hi, lo) = nibble(pair[0]).zip(nibble(pair[1])).ok_or_else(invalid)?;
            *out = (hi << 4) | lo;
        }
        Ok(Digest { bytes })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(PREFIX)?;
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// Incremental SHA-256.
///
/// Backed by `ring` (BoringSSL-derived assembly). Measured on this project's
/// build machine (Xeon @ 2.5 GHz, AVX2/AVX-512 but no SHA-NI), 1 MiB buffers
/// fed in 64 KiB updates, release build, best of 5:
/// `ring` 0.17 ≈ 352 MB/s, `aws-lc-rs` 1.19 ≈ 354 MB/s, `sha2` 0.11 (no asm
/// feature exists in 0.11; default `soft` backend) ≈ 191 MB/s
/// (≈ 257 MB/s with `-C target-cpu=native`).
/// `ring` ties with `aws-lc-rs` and builds faster with fewer build tools, so
/// it is the choice. Without SHA-NI, hashing alone costs ≈ 3 CPU-s per GiB.
#[derive(Clone)]
pub(crate) struct Sha256(ring::digest::Context);

impl Sha256 {
    pub(crate) fn new() -> Sha256 {
        Sha256(ring::digest::Context::new(&ring::digest::SHA256))
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub(crate) fn finish(self) -> Digest {
        let out = self.0.finish();
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(out.as_ref());
        Digest { bytes }
    }
}

/// SHA-256 whose running state can be saved and restored, so that an upload session
/// hashed on one node can be continued on another (the S3 backend keeps it in the
/// metadata store between requests; `ring`'s state cannot be exported).
///
/// Backed by `sha2` 0.11 and its `SerializableState` (the eight state words, the block
/// count and the < 64 buffered bytes). Measured on this project's build machine
/// (Xeon with SHA-NI, which both crates use), 1 MiB buffers fed in 64 KiB updates,
/// release build, best of 5: `ring` 0.17 ≈ 1520–1600 MB/s, `sha2` 0.11 ≈ 1530 MB/s, and
/// `sha2` 0.11 saving and restoring its state after every MiB ≈ 1575 MB/s (the round
/// trip costs nothing measurable). `sha2` 0.10's `compress256` measured the same
/// (≈ 1555 MB/s, with or without its `asm` feature). Without SHA-NI `sha2` runs at about
/// half of `ring`'s speed (≈ 191 vs 352 MB/s, see [`Sha256`]); the local backend keeps
/// `ring`, the S3 backend needs the saved state and takes `sha2`.
#[derive(Clone, Default)]
pub(crate) struct ResumableSha256(sha2::Sha256);

impl ResumableSha256 {
    pub(crate) fn update(&mut self, data: &[u8]) {
        sha2::Digest::update(&mut self.0, data);
    }

    pub(crate) fn finish(self) -> Digest {
        let out = sha2::Digest::finalize(self.0);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(out.as_slice());
        Digest { bytes }
    }

    /// The running state as bytes (about a hundred).
    pub(crate) fn save(&self) -> Vec<u8> {
        use sha2::digest::common::hazmat::SerializableState;
        self.0.serialize().as_slice().to_vec()
    }

    /// The state [`save`](Self::save) returned; `None` if `saved` is not one.
    pub(crate) fn restore(saved: &[u8]) -> Option<ResumableSha256> {
        use sha2::digest::common::hazmat::{SerializableState, SerializedState};
        let state = SerializedState::<sha2::Sha256>::try_from(saved).ok()?;
        sha2::Sha256::deserialize(&state).ok().map(ResumableSha256)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        assert_eq!(
            Digest::of(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            Digest::of(b"abc").hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn resumable_state_round_trips_at_every_split() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 % 251) as u8).collect();
        for split in [0, 1, 63, 64, 65, 128, 200, 300] {
            let mut h = ResumableSha256::default();
            h.update(&data[..split]);
            let mut h = ResumableSha256::restore(&h.save()).unwrap();
            h.update(&data[split..]);
            assert_eq!(h.finish(), Digest::of(&data), "split at {split}");
        }
        assert!(ResumableSha256::restore(b"not a state").is_none());
    }

    #[test]
    fn strict_parse() {
        let good = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let d: Digest = good.parse().unwrap();
        assert_eq!(d.to_string(), good);
        assert_eq!(d, Digest::of(b"abc"));
        for bad in [
            "",
            "sha256:",
            "sha256",
            "SHA256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a",
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015add",
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ag",
            "sha512:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            " sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n",
        ] {
            assert!(
                matches!(bad.parse::<Digest>(), Err(BlobError::InvalidDigest(_))),
                "{bad:?} accepted"
            );
        }
    }
}
