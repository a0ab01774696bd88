//! Criterion: verifying one signed STS query request (parse, scope and clock checks,
//! canonical request, signing key, HMAC, constant-time compare).

use std::hint::black_box;

use berth_sigv4::{
    canonical_request, check_scope_and_time, parse, payload_hashes, query_pairs, signature,
    signing_key, string_to_sign, verify, Expectations, Request,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

fn bench(c: &mut Criterion) {
    let body = b"Action=GetCallerIdentity&Version=2011-06-15";
    let mut headers = vec![
        (
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        ),
        ("host", "127.0.0.1:5000"),
        ("x-amz-date", "20251122T120000Z"),
        ("authorization", ""),
    ];
    // Sign with the crate's own primitives (their correctness is tested against aws-sigv4).
    let unsigned = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20251122/us-east-1/sts/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=0000000000000000000000000000000000000000000000000000000000000000";
    headers[3].1 = unsigned;
    let req = Request {
        method: "POST",
        path: "/",
        query: "",
        headers: &headers,
        body,
    };
    let signed = parse(&req, &[]).unwrap();
    let hash = payload_hashes(&req, signed.form).unwrap().remove(0);
    let creq = canonical_request(&req, &signed, &hash).unwrap();
    let sig = signature(
        &signing_key(SECRET, "20251122", "us-east-1", "sts"),
        &string_to_sign(&signed, &creq),
    );
    let auth = unsigned.replace(&"0".repeat(64), &sig);
    headers[3].1 = &auth;
    let req = Request {
        method: "POST",
        path: "/",
        query: "",
        headers: &headers,
        body,
    };
    let exp = Expectations {
        service: "sts",
        regions: &["us-east-1"],
        max_skew_secs: 900,
        now: 1_763_812_800,
    };
    let q = query_pairs("");
    let s = parse(&req, &q).unwrap();
    check_scope_and_time(&s, &exp).unwrap();
    verify(&req, &s, SECRET).unwrap();

    let mut g = c.benchmark_group("sigv4");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_check_verify", |b| {
        b.iter(|| {
            let s = parse(black_box(&req), &q).unwrap();
            check_scope_and_time(&s, &exp).unwrap();
            verify(&req, &s, black_box(SECRET)).unwrap();
        })
    });
    // Peer: the official signer doing the same work for the same request (it signs,
    // which costs what verifying costs: canonical request, key derivation, HMAC).
    g.bench_function("peer_aws_sigv4_sign", |b| {
        use aws_credential_types::Credentials;
        use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
        use std::time::{Duration, UNIX_EPOCH};
        let identity = Credentials::new("AKIDEXAMPLE", SECRET, None, None, "bench").into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("sts")
            .time(UNIX_EPOCH + Duration::from_secs(1_763_812_800))
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let hs = [
            (
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
            ("host", "127.0.0.1:5000"),
        ];
        b.iter(|| {
            let r = SignableRequest::new(
                "POST",
                "http://127.0.0.1:5000/",
                hs.iter().copied(),
                SignableBody::Bytes(body),
            )
            .unwrap();
            sign(black_box(r), &params).unwrap()
        })
    });
    g.bench_function("signing_key", |b| {
        b.iter(|| signing_key(black_box(SECRET), "20251122", "us-east-1", "sts"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
