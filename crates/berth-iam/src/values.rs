//! Typed values of condition operators, read once at compile time (policy side) and on
//! first use (request side): decimal numbers, instants (W3C ISO 8601 profile or epoch
//! seconds) and IPv4/IPv6 CIDR blocks. Hand-written: these are the exact profiles IAM
//! accepts, narrower than what general date or IP crates read.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A decimal number as IAM reads it: optional sign, digits, optional fraction.
pub fn parse_number(s: &str) -> Option<f64> {
    let t = s.trim();
    let body = t.strip_prefix(['-', '+']).unwrap_or(t);
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || frac.is_some_and(|f| !digits(f)) {
        return None;
    }
    t.parse::<f64>().ok()
}

/// An instant in milliseconds since the Unix epoch.
///
/// Accepted: `YYYY`, `YYYY-MM`, `YYYY-MM-DD`, `YYYY-MM-DDThh:mm[:ss[.s+]]` followed by
/// `Z`, `±hh:mm` or nothing (UTC), and epoch seconds (digits, optionally with a fraction).
/// Exactly four digits are read as a year.
pub fn parse_date(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.len() != 4 && !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let secs = parse_number(s)?;
        if !(0.0..=9.2e15).contains(&secs) {
            return None;
        }
        return Some((secs * 1000.0).round() as i64);
    }
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let year = num(0, 4)?;
    let (mut month, mut day) = (1, 1);
    let mut pos = 4;
    if b.get(pos) == Some(&b'-') {
        month = num(pos + 1, 2)?;
        pos += 3;
        if b.get(pos) == Some(&b'-') {
            day = num(pos + 1, 2)?;
            pos += 3;
        }
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let mut millis_of_day = 0i64;
    let mut offset_minutes = 0i64;
    if matches!(b.get(pos), Some(b'T' | b't')) {
        let hour = num(pos + 1, 2)?;
        if b.get(pos + 3) != Some(&b':') {
            return None;
        }
        let minute = num(pos + 4, 2)?;
        pos += 6;
        let mut second = 0;
        let mut millis = 0;
        if b.get(pos) == Some(&b':') {
            second = num(pos + 1, 2)?;
            pos += 3;
            if b.get(pos) == Some(&b'.') {
                pos += 1;
                let start = pos;
                while b.get(pos).is_some_and(u8::is_ascii_digit) {
                    pos += 1;
                }
                if pos == start {
                    return None;
                }
                let frac = &s[start..pos.min(start + 3)];
                millis = frac.parse::<i64>().ok()? * 10i64.pow(3 - frac.len() as u32);
            }
        }
        if hour > 24 || minute > 59 || second > 60 || (hour == 24 && (minute, second) != (0, 0)) {
            return None;
        }
        millis_of_day = ((hour * 60 + minute) * 60 + second) * 1000 + millis;
        match b.get(pos) {
            None => {}
            Some(b'Z' | b'z') => pos += 1,
            Some(&sign @ (b'+' | b'-')) => {
                let oh = num(pos + 1, 2)?;
                let om = match b.get(pos + 3) {
                    Some(b':') => {
                        let m = num(pos + 4, 2)?;
                        pos += 6;
                        m
                    }
                    _ => {
                        let m = num(pos + 3, 2)?;
                        pos += 5;
                        m
                    }
                };
                if oh > 23 || om > 59 {
                    return None;
                }
                offset_minutes = (oh * 60 + om) * if sign == b'-' { -1 } else { 1 };
            }
            _ => return None,
        }
    }
    if pos != b.len() {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * 86_400_000 + millis_of_day - offset_minutes * 60_000)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An IPv4 or IPv6 block; an address without a prefix is a single host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cidr {
    V4 { net: u32, mask: u32 },
    V6 { net: u128, mask: u128 },
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => {
                if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                (a, Some(p.parse::<u32>().ok()?))
            }
            None => (s, None),
        };
        match addr.parse::<IpAddr>().ok()? {
            IpAddr::V4(a) => {
                let len = prefix.unwrap_or(32);
                if len > 32 {
                    return None;
                }
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                Some(Cidr::V4 {
                    net: u32::from(a) & mask,
                    mask,
                })
            }
            IpAddr::V6(a) => {
                let len = prefix.unwrap_or(128);
                if len > 128 {
                    return None;
                }
                let mask = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - len)
                };
                Some(Cidr::V6 {
                    net: u128::from(a) & mask,
                    mask,
                })
            }
        }
    }

    /// IPv4 addresses never fall in IPv6 blocks and vice versa.
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self, ip) {
            (Cidr::V4 { net, mask }, IpAddr::V4(a)) => u32::from(a) & mask == *net,
            (Cidr::V6 { net, mask }, IpAddr::V6(a)) => u128::from(a) & mask == *net,
            _ => false,
        }
    }

    pub fn prefix_len(&self) -> u32 {
        match self {
            Cidr::V4 { mask, .. } => mask.count_ones(),
            Cidr::V6 { mask, .. } => mask.count_ones(),
        }
    }

    pub fn network(&self) -> IpAddr {
        match self {
            Cidr::V4 { net, .. } => IpAddr::V4(Ipv4Addr::from(*net)),
            Cidr::V6 { net, .. } => IpAddr::V6(Ipv6Addr::from(*net)),
        }
    }
}

/// A request address: a bare IP (a `/32` or `/128` suffix is tolerated).
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    let addr = match s.split_once('/') {
        Some((a, "32")) | Some((a, "128")) => a,
        Some(_) => return None,
        None => s,
    };
    addr.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_number("10"), Some(10.0));
        assert_eq!(parse_number("-2.5"), Some(-2.5));
        assert_eq!(parse_number("+3"), Some(3.0));
        for bad in ["", "abc", "1e3", "1.", ".5", "0x10", "NaN", "inf", "1 2"] {
            assert_eq!(parse_number(bad), None, "{bad}");
        }
    }

    #[test]
    fn dates() {
        let t = |s| parse_date(s);
        assert_eq!(t("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(t("2020-01-01T00:00:00Z"), Some(1_577_836_800_000));
        assert_eq!(t("2020-01-01"), Some(1_577_836_800_000));
        assert_eq!(t("2020"), Some(1_577_836_800_000));
        assert_eq!(t("2020-01"), Some(1_577_836_800_000));
        assert_eq!(t("2020-01-01T01:00+01:00"), Some(1_577_836_800_000));
        assert_eq!(t("2020-01-01T00:00:00.500Z"), Some(1_577_836_800_500));
        assert_eq!(t("2019-12-31T19:00:00-05:00"), Some(1_577_836_800_000));
        assert_eq!(t("1577836800"), Some(1_577_836_800_000));
        assert_eq!(t("2024-02-29T00:00:00Z"), Some(1_709_164_800_000));
        for bad in [
            "2023-02-29",
            "2020-13-01",
            "2020-01-01T25:00Z",
            "yesterday",
            "2020-01-01T00:00:00Q",
            "2020/01/01",
            "",
        ] {
            assert_eq!(t(bad), None, "{bad}");
        }
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("54.240.143.0/24").unwrap();
        assert!(c.contains("54.240.143.188".parse().unwrap()));
        assert!(!c.contains("54.240.144.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        let h = Cidr::parse("54.240.143.188").unwrap();
        assert_eq!(h.prefix_len(), 32);
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::7".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        assert_eq!(Cidr::parse("0.0.0.0/0").unwrap().prefix_len(), 0);
        for bad in [
            "54.240.143.0/33",
            "1.2.3/24",
            "::/129",
            "abc",
            "1.2.3.4/",
            "1.2.3.4/x",
        ] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
        assert_eq!(parse_ip("10.1.2.3"), Some("10.1.2.3".parse().unwrap()));
        assert_eq!(parse_ip("10.1.2.3/24"), None);
    }
}
