//! The canonical request and the string to sign, built from the request as received.

use crate::encode::{percent_decode, uri_encode};
use crate::error::SigV4Error;
use crate::parse::{SignatureForm, Signed};
use crate::Request;

/// The canonical URI of a non-S3 service: the path normalised (`.` and `..` resolved,
/// repeated slashes kept) and each segment encoded again (the path on the wire is
/// already encoded once).
fn canonical_uri(path: &str, out: &mut String) {
    let path = if path.is_empty() { "/" } else { path };
    let mut segments: Vec<&str> = Vec::new();
    for seg in path.split('/').skip(1) {
        match seg {
            "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    if segments.is_empty() {
        out.push('/');
        return;
    }
    // Empty segments (a trailing or doubled slash) are kept as they are.
    for s in &segments {
        out.push('/');
        uri_encode(s.as_bytes(), false, out);
    }
}

fn canonical_query(raw: &str, form: SignatureForm, out: &mut String) {
    let mut pairs: Vec<(String, String)> = raw
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let k = percent_decode(k);
            if form == SignatureForm::Query && k == b"X-Amz-Signature" {
                return None;
            }
            let mut ek = String::new();
            uri_encode(&k, false, &mut ek);
            let mut ev = String::new();
            uri_encode(&percent_decode(v), false, &mut ev);
            Some((ek, ev))
        })
        .collect();
    pairs.sort();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
}

/// A header value as signed: trimmed, runs of spaces collapsed to one.
fn canonical_value(v: &str, out: &mut String) {
    let mut space = false;
    for c in v.trim().chars() {
        if c == ' ' || c == '\t' {
            space = true;
        } else {
            if space {
                out.push(' ');
                space = false;
            }
            out.push(c);
        }
    }
}

/// The canonical request for `req` with the given payload hash.
pub fn canonical_request(
    req: &Request,
    signed: &Signed,
    payload_hash: &str,
) -> Result<String, SigV4Error> {
    let mut out = String::with_capacity(256);
    out.push_str(req.method);
    out.push('\n');
    canonical_uri(req.path, &mut out);
    out.push('\n');
    canonical_query(req.query, signed.form, &mut out);
    out.push('\n');
    let mut names: Vec<&str> = signed.signed_headers.iter().map(String::as_str).collect();
    names.sort_unstable();
    names.dedup();
    for name in &names {
        out.push_str(name);
        out.push(':');
        let mut first = true;
        for v in req.header_values(name) {
            if !first {
                out.push(',');
            }
            first = false;
            canonical_value(v, &mut out);
        }
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&names.join(";"));
    out.push('\n');
    out.push_str(payload_hash);
    Ok(out)
}

/// `AWS4-HMAC-SHA256\n<date>\n<scope>\n<hex sha256 of the canonical request>`.
pub fn string_to_sign(signed: &Signed, canonical_request: &str) -> String {
    let c = &signed.credential;
    let mut out = String::with_capacity(160);
    for part in [
        "AWS4-HMAC-SHA256\n",
        signed.amz_date,
        "\n",
        c.date,
        "/",
        c.region,
        "/",
        c.service,
        "/",
        c.terminator,
        "\n",
    ] {
        out.push_str(part);
    }
    out.push_str(&crate::hex(&crate::sha256(canonical_request.as_bytes())));
    out
}
