//! Any bytes as a SigV4 `Authorization` header, or as a presigned query string, with an
//! optional extra header: never a panic; what parses is checked and verified against a
//! secret without panicking.
#![no_main]

use berth_sigv4::{check_scope_and_time, parse, query_pairs, verify, Expectations, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (header_form, rest) = match text.split_first_char() {
        Some(('h', rest)) => (true, rest),
        Some((_, rest)) => (false, rest),
        None => return,
    };
    // After a newline: one more header, `name:value` (x-amz-target, x-amz-content-sha256,
    // x-amz-security-token, ...), which the verifier must find among the signed ones.
    let (rest, extra) = match rest.split_once('\n') {
        Some((r, line)) => (r, line.split_once(':')),
        None => (rest, None),
    };
    let mut headers = vec![
        ("host", "127.0.0.1:5000"),
        ("x-amz-date", "20251122T120000Z"),
    ];
    if let Some(h) = extra {
        headers.push(h);
    }
    let query = if header_form {
        headers.push(("authorization", rest));
        ""
    } else {
        rest
    };
    let req = Request {
        method: "POST",
        path: "/",
        query,
        headers: &headers,
        body: b"Action=GetCallerIdentity",
    };
    let pairs = query_pairs(query);
    if let Ok(signed) = parse(&req, &pairs) {
        let exp = Expectations {
            service: "sts",
            regions: &[],
            max_skew_secs: 900,
            now: 1_763_812_800,
        };
        let _ = check_scope_and_time(&signed, &exp);
        let _ = verify(&req, &signed, "secret");
    }
});

trait SplitFirst {
    fn split_first_char(&self) -> Option<(char, &str)>;
}

impl SplitFirst for str {
    fn split_first_char(&self) -> Option<(char, &str)> {
        let c = self.chars().next()?;
        Some((c, &self[c.len_utf8()..]))
    }
}
