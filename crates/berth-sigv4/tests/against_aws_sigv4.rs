//! Requests signed by the official `aws-sigv4` crate verify; any change to them does not.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use berth_sigv4::{
    check_scope_and_time, parse, query_pairs, verify, Expectations, Request, SigV4Error,
};

const AKID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const NOW: u64 = 1_763_812_800; // 2025-11-22T12:00:00Z

struct Owned {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn signed(
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    settings: SigningSettings,
    token: Option<&str>,
    service: &str,
) -> Owned {
    let identity = Credentials::new(AKID, SECRET, token.map(str::to_string), None, "test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name(service)
        .time(UNIX_EPOCH + Duration::from_secs(NOW))
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let signable = SignableRequest::new(
        method,
        uri,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut builder = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let mut req = builder.body(body.to_vec()).unwrap();
    instructions.apply_to_request_http1x(&mut req);
    Owned {
        method: method.to_string(),
        path: req.uri().path().to_string(),
        query: req.uri().query().unwrap_or("").to_string(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap().to_string()))
            .collect(),
        body: req.into_body(),
    }
}

/// Hand the request and its parsed signature to `f`.
fn with_signed<R>(
    o: &Owned,
    f: impl FnOnce(&Request, Result<berth_sigv4::Signed, SigV4Error>) -> R,
) -> R {
    let headers: Vec<(&str, &str)> = o
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let req = Request {
        method: &o.method,
        path: &o.path,
        query: &o.query,
        headers: &headers,
        body: &o.body,
    };
    let query = query_pairs(&o.query);
    f(&req, parse(&req, &query))
}

fn check(o: &Owned, service: &str, now: u64) -> Result<(), SigV4Error> {
    with_signed(o, |req, s| check_signed(req, s?, service, now))
}

fn check_signed(
    req: &Request,
    s: berth_sigv4::Signed,
    service: &str,
    now: u64,
) -> Result<(), SigV4Error> {
    assert_eq!(s.credential.access_key_id, AKID);
    check_scope_and_time(
        &s,
        &Expectations {
            service,
            regions: &["us-east-1"],
            max_skew_secs: 900,
            now: now as i64,
        },
    )?;
    verify(req, &s, SECRET)
}

fn form_post(body: &str) -> Owned {
    signed(
        "POST",
        "https://sts.localhost:5000/",
        &[
            (
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
            ("host", "sts.localhost:5000"),
        ],
        body.as_bytes(),
        SigningSettings::default(),
        None,
        "sts",
    )
}

#[test]
fn query_protocol_posts_verify() {
    let o = form_post("Action=GetCallerIdentity&Version=2011-06-15");
    assert_eq!(check(&o, "sts", NOW), Ok(()));
}

#[test]
fn json_protocol_posts_with_content_hash_verify() {
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let o = signed(
        "POST",
        "http://127.0.0.1:5000/",
        &[
            ("content-type", "application/x-amz-json-1.1"),
            (
                "x-amz-target",
                "AmazonEC2ContainerRegistry_V20150921.DescribeRepositories",
            ),
            ("host", "127.0.0.1:5000"),
            (
                "x-amz-user-agent",
                "aws-cli/2   botocore/1.44   extra   spaces",
            ),
        ],
        br#"{"repositoryNames":["app"]}"#,
        settings,
        None,
        "ecr",
    );
    assert!(o.headers.iter().any(|(k, _)| k == "x-amz-content-sha256"));
    assert_eq!(check(&o, "ecr", NOW), Ok(()));
}

#[test]
fn gets_with_query_strings_and_odd_paths_verify() {
    let o = signed(
        "GET",
        "https://iam.localhost/a%20b/./c/../d?Version=2010-05-08&Action=ListUsers&Marker=a%2Fb%3Dc&empty=&sp=x%20y",
        &[("host", "iam.localhost")],
        b"",
        SigningSettings::default(),
        None,
        "iam",
    );
    assert_eq!(check(&o, "iam", NOW), Ok(()));
}

#[test]
fn session_tokens_verify() {
    let o = signed(
        "POST",
        "https://sts.localhost/",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("host", "sts.localhost"),
        ],
        b"Action=GetCallerIdentity&Version=2011-06-15",
        SigningSettings::default(),
        Some("FQoGZXIvYXdzEXAMPLETOKEN//+="),
        "sts",
    );
    with_signed(&o, |_, s| {
        assert_eq!(
            s.unwrap().security_token.as_deref(),
            Some("FQoGZXIvYXdzEXAMPLETOKEN//+=")
        )
    });
    assert_eq!(check(&o, "sts", NOW), Ok(()));
}

#[test]
fn presigned_urls_verify_until_they_expire() {
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(Duration::from_secs(300));
    let o = signed(
        "GET",
        "https://sts.localhost/?Action=GetCallerIdentity&Version=2011-06-15",
        &[("host", "sts.localhost")],
        b"",
        settings,
        Some("SESSIONTOKEN"),
        "sts",
    );
    assert!(o.query.contains("X-Amz-Signature="));
    assert_eq!(check(&o, "sts", NOW + 299), Ok(()));
    assert!(matches!(
        check(&o, "sts", NOW + 301),
        Err(SigV4Error::Expired(_))
    ));
}

#[test]
fn any_change_breaks_the_signature() {
    let o = form_post("Action=GetCallerIdentity&Version=2011-06-15");
    let mut body = form_post("Action=GetCallerIdentity&Version=2011-06-15");
    body.body = b"Action=GetCallerIdentity&Version=2011-06-16".to_vec();
    assert!(matches!(
        check(&body, "sts", NOW),
        Err(SigV4Error::SignatureDoesNotMatch { .. })
    ));
    let mut header = form_post("Action=GetCallerIdentity&Version=2011-06-15");
    for (k, v) in header.headers.iter_mut() {
        if k == "host" {
            *v = "evil.localhost".into();
        }
    }
    assert!(matches!(
        check(&header, "sts", NOW),
        Err(SigV4Error::SignatureDoesNotMatch { .. })
    ));
    let mut method = form_post("Action=GetCallerIdentity&Version=2011-06-15");
    method.method = "PUT".into();
    let err = check(&method, "sts", NOW).unwrap_err();
    let SigV4Error::SignatureDoesNotMatch {
        canonical_request,
        string_to_sign,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert!(
        canonical_request.starts_with("PUT\n/\n\n"),
        "{canonical_request}"
    );
    assert!(string_to_sign
        .starts_with("AWS4-HMAC-SHA256\n20251122T120000Z\n20251122/us-east-1/sts/aws4_request\n"));
    assert_eq!(err.query_code(), "SignatureDoesNotMatch");
    assert_eq!(err.json_code(), "InvalidSignatureException");
    // A wrong secret.
    with_signed(&o, |req, s| {
        assert!(matches!(
            verify(req, &s.unwrap(), "not-the-secret"),
            Err(SigV4Error::SignatureDoesNotMatch { .. })
        ))
    });
}

#[test]
fn clock_skew_and_scope_are_checked() {
    let o = form_post("Action=GetCallerIdentity&Version=2011-06-15");
    let late = check(&o, "sts", NOW + 901).unwrap_err();
    assert_eq!(
        late.to_string(),
        "Signature expired: 20251122T120000Z is now earlier than 20251122T120001Z (20251122T121501Z - 15 min.)"
    );
    assert_eq!(late.query_code(), "SignatureDoesNotMatch");
    let early = check(&o, "sts", NOW - 901).unwrap_err();
    assert!(early
        .to_string()
        .starts_with("Signature not yet current: 20251122T120000Z is still later than"));
    assert_eq!(check(&o, "sts", NOW + 900), Ok(()));
    let wrong_service = check(&o, "iam", NOW).unwrap_err();
    assert_eq!(
        wrong_service.to_string(),
        "Credential should be scoped to correct service: 'iam'."
    );
}

#[test]
fn missing_and_malformed_signatures() {
    let empty: Vec<(&str, &str)> = vec![("host", "x")];
    let req = Request {
        method: "GET",
        path: "/",
        query: "",
        headers: &empty,
        body: b"",
    };
    assert_eq!(
        parse(&req, &[]),
        Err(SigV4Error::MissingAuthenticationToken)
    );
    assert_eq!(SigV4Error::MissingAuthenticationToken.status(), 403);
    let cases = [
        ("AWS4-HMAC-SHA256 Credential=AKID/20251122/us-east-1/sts/aws4_request, SignedHeaders=host", "requires 'Signature'"),
        ("AWS4-HMAC-SHA256 Credential=AKID/20251122/us-east-1/sts, SignedHeaders=host, Signature=00", "exactly 5 slash-delimited"),
        ("AWS4-HMAC-SHA1 Credential=a", "Unsupported authorization type"),
        ("AWS4-HMAC-SHA256 Credential=AKID/20251122/us-east-1/sts/aws4_request, SignedHeaders=x-amz-date, Signature=0000000000000000000000000000000000000000000000000000000000000000", "'Host'"),
        ("AWS4-HMAC-SHA256 Credential=AKID/20251122/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=zz", "64 hexadecimal"),
        ("AWS4-HMAC-SHA256 Credential=AKID/20251122/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=0000000000000000000000000000000000000000000000000000000000000000", "X-Amz-Date"),
    ];
    for (auth, want) in cases {
        let headers = vec![("host", "x"), ("authorization", auth)];
        let req = Request {
            method: "GET",
            path: "/",
            query: "",
            headers: &headers,
            body: b"",
        };
        let err = parse(&req, &[]).unwrap_err();
        assert!(
            matches!(err, SigV4Error::IncompleteSignature(_)),
            "{auth}: {err:?}"
        );
        assert!(err.to_string().contains(want), "{auth}: {err}");
        assert_eq!(err.query_code(), "IncompleteSignature");
    }
}

#[test]
fn unsigned_payload_is_refused() {
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let identity = Credentials::new(AKID, SECRET, None, None, "test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("ecr")
        .time(SystemTime::UNIX_EPOCH + Duration::from_secs(NOW))
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let headers = [("host", "127.0.0.1:5000")];
    let signable = SignableRequest::new(
        "PUT",
        "http://127.0.0.1:5000/x",
        headers.iter().copied(),
        SignableBody::UnsignedPayload,
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut req = http::Request::builder()
        .method("PUT")
        .uri("http://127.0.0.1:5000/x")
        .header("host", "127.0.0.1:5000")
        .body(())
        .unwrap();
    instructions.apply_to_request_http1x(&mut req);
    let hs: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
        .collect();
    let o = Owned {
        method: "PUT".into(),
        path: "/x".into(),
        query: String::new(),
        headers: hs,
        body: b"any body at all".to_vec(),
    };
    // Correctly signed, but over no payload: only S3 takes that.
    let err = check(&o, "ecr", NOW).unwrap_err();
    assert!(
        matches!(&err, SigV4Error::IncompleteSignature(m) if m.contains("UNSIGNED-PAYLOAD")),
        "{err:?}"
    );
}

#[test]
fn presigned_urls_cover_their_body() {
    // A URL presigned (over its empty body) does not lend its signature to a body.
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(Duration::from_secs(300));
    let mut o = signed(
        "POST",
        "https://sts.localhost/?Action=GetCallerIdentity&Version=2011-06-15",
        &[("host", "sts.localhost")],
        b"",
        settings,
        None,
        "sts",
    );
    assert_eq!(check(&o, "sts", NOW), Ok(()));
    o.body = b"Action=GetSessionToken&Version=2011-06-15".to_vec();
    assert!(matches!(
        check(&o, "sts", NOW),
        Err(SigV4Error::SignatureDoesNotMatch { .. })
    ));
}

#[test]
fn every_amz_header_must_be_signed() {
    let target = "AmazonEC2ContainerRegistry_V20150921.DescribeRepositories";
    let o = signed(
        "POST",
        "https://ecr.localhost/",
        &[
            ("content-type", "application/x-amz-json-1.1"),
            ("host", "ecr.localhost"),
            ("x-amz-target", target),
        ],
        b"{}",
        SigningSettings::default(),
        Some("SESSIONTOKEN"),
        "ecr",
    );
    assert_eq!(check(&o, "ecr", NOW), Ok(()));
    // The same request with X-Amz-Target (or any other x-amz-* header) left out of
    // SignedHeaders, or added after signing, is refused before any signature math.
    let mut unsigned_target = signed(
        "POST",
        "https://ecr.localhost/",
        &[
            ("content-type", "application/x-amz-json-1.1"),
            ("host", "ecr.localhost"),
        ],
        b"{}",
        SigningSettings::default(),
        None,
        "ecr",
    );
    unsigned_target
        .headers
        .push(("X-Amz-Target".into(), target.into()));
    let mut extra = signed(
        "POST",
        "https://ecr.localhost/",
        &[
            ("content-type", "application/x-amz-json-1.1"),
            ("host", "ecr.localhost"),
            ("x-amz-target", target),
        ],
        b"{}",
        SigningSettings::default(),
        None,
        "ecr",
    );
    extra.headers.push(("x-amz-meta-extra".into(), "1".into()));
    for (o, name) in [
        (&unsigned_target, "x-amz-target"),
        (&extra, "x-amz-meta-extra"),
    ] {
        let err = check(o, "ecr", NOW).unwrap_err();
        assert!(
            matches!(&err, SigV4Error::IncompleteSignature(m) if m.contains(name)),
            "{name}: {err:?}"
        );
        assert_eq!(err.json_code(), "IncompleteSignatureException");
    }
    // The session token may travel unsigned (some SDKs add it after signing).
    let mut token_unsigned = o;
    token_unsigned
        .headers
        .retain(|(k, _)| k != "x-amz-security-token");
    token_unsigned
        .headers
        .push(("X-Amz-Security-Token".into(), "SESSIONTOKEN".into()));
    assert_eq!(check(&token_unsigned, "ecr", NOW), Ok(()));
}

#[test]
fn cached_signing_keys_verify_alike_and_follow_the_secret() {
    use berth_sigv4::{verify_with_key, KeyCache};
    let o = form_post("Action=GetCallerIdentity&Version=2011-06-15");
    let cache = KeyCache::new();
    with_signed(&o, |req, s| {
        let s = s.unwrap();
        for _ in 0..3 {
            assert_eq!(verify_with_key(req, &s, &cache.key(&s, SECRET)), Ok(()));
        }
        assert!(matches!(
            verify_with_key(req, &s, &cache.key(&s, "another secret")),
            Err(SigV4Error::SignatureDoesNotMatch { .. })
        ));
    });
}

/// Berth's own signer writes the same Authorization header as the official crate, and
/// what it signs verifies.
#[test]
fn berth_signer_matches_the_official_one() {
    for (token, path, query) in [
        (None, "/", ""),
        (
            Some("FQoGZXIvYXdzEJr//token+/="),
            "/v2/a%20b/tags/list",
            "n=2&last=x",
        ),
    ] {
        let uri = if query.is_empty() {
            format!("https://berth.example{path}")
        } else {
            format!("https://berth.example{path}?{query}")
        };
        let body = b"Action=GetCallerIdentity&Version=2011-06-15";
        let headers = [
            ("host", "berth.example"),
            (
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
        ];
        let official = signed(
            "POST",
            &uri,
            &headers,
            body,
            SigningSettings::default(),
            token,
            "sts",
        );
        let creds = berth_sigv4::Credentials {
            access_key_id: AKID.into(),
            secret_access_key: SECRET.into(),
            session_token: token.map(str::to_string),
        };
        let scope = berth_sigv4::Scope {
            region: "us-east-1",
            service: "sts",
            now: NOW as i64,
        };
        let added = berth_sigv4::sign("POST", path, query, &headers, body, &creds, scope);
        let ours = added.iter().find(|(k, _)| k == "authorization").unwrap();
        let theirs = official
            .headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .unwrap();
        assert_eq!(ours.1, theirs.1);
        let mut sent: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        sent.extend(added);
        let o = Owned {
            method: "POST".into(),
            path: path.into(),
            query: query.into(),
            headers: sent,
            body: body.to_vec(),
        };
        check(&o, "sts", NOW).unwrap();
    }
}
