//! `Range: bytes=…` request headers (RFC 9110), as blob downloads take them.

/// A requested byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=a-b` (inclusive end) or `bytes=a-` (to the end).
    From(u64, Option<u64>),
    /// `bytes=-n`: the last `n` bytes.
    Last(u64),
}

impl ByteRange {
    /// The (start, optional inclusive end) within a blob of `size` bytes.
    pub fn resolve(self, size: u64) -> (u64, Option<u64>) {
        match self {
            ByteRange::From(a, b) => (a, b),
            ByteRange::Last(n) => (size.saturating_sub(n), None),
        }
    }
}

/// The first range of a `Range` header (a multi-range request gets its first part);
/// `Err` says what is wrong.
pub fn parse_range(h: &str) -> Result<ByteRange, String> {
    let bad = || format!("Range {h:?} is not bytes=START-[END] or bytes=-LENGTH");
    let spec = h.trim().strip_prefix("bytes=").ok_or_else(bad)?;
    let first = spec.split(',').next().unwrap_or("");
    let (a, b) = first.split_once('-').ok_or_else(bad)?;
    if a.trim().is_empty() {
        let n: u64 = b.trim().parse().map_err(|_| bad())?;
        return if n == 0 {
            Err(bad())
        } else {
            Ok(ByteRange::Last(n))
        };
    }
    let a: u64 = a.trim().parse().map_err(|_| bad())?;
    let b = match b.trim() {
        "" => None,
        b => Some(b.parse::<u64>().map_err(|_| bad())?),
    };
    if b.is_some_and(|b| b < a) {
        return Err(bad());
    }
    Ok(ByteRange::From(a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9"), Ok(ByteRange::From(0, Some(9))));
        assert_eq!(parse_range("bytes=5-"), Ok(ByteRange::From(5, None)));
        assert_eq!(parse_range("bytes=-10"), Ok(ByteRange::Last(10)));
        assert_eq!(ByteRange::Last(10).resolve(4), (0, None));
        assert_eq!(
            parse_range("bytes=0-1,5-6"),
            Ok(ByteRange::From(0, Some(1)))
        );
        for bad in [
            "bytes=9-0",
            "bytes=-0",
            "items=0-1",
            "bytes=a-b",
            "bytes=",
            "bytes=-",
            "bytes=1-2-3",
        ] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }
}
