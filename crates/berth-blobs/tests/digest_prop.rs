use berth_blobs::{BlobError, Digest};
use proptest::prelude::*;

proptest! {
    #[test]
    fn parse_never_panics(s in "\\PC*") {
        let _ = s.parse::<Digest>();
    }

    #[test]
    fn parse_never_panics_near_valid(s in "(sha256|SHA256|sha512)?:?[0-9a-fA-F:]{0,70}") {
        let _ = s.parse::<Digest>();
    }

    #[test]
    fn bytes_round_trip(bytes in any::<[u8; 32]>()) {
        let d = Digest::from_bytes(bytes);
        let s = d.to_string();
        prop_assert_eq!(s.len(), 71);
        prop_assert_eq!(s.parse::<Digest>(), Ok(d));
        prop_assert!(d.hex() == s[7..]);
    }

    #[test]
    fn accepts_exactly_lowercase_64_hex(hex in "[0-9a-fA-F]{64}") {
        let s = format!("sha256:{hex}");
        let parsed = s.parse::<Digest>();
        if hex.bytes().any(|b| b.is_ascii_uppercase()) {
            prop_assert_eq!(parsed, Err(BlobError::InvalidDigest(s)));
        } else {
            let d = parsed.unwrap();
            prop_assert_eq!(d.to_string(), s);
        }
    }

    #[test]
    fn digest_of_round_trips(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let d = Digest::of(&data);
        prop_assert_eq!(d.to_string().parse::<Digest>(), Ok(d));
    }
}
