//! Signing outgoing requests (header form), for Berth's own command-line clients: the
//! same canonical request and string to sign the verifier rebuilds.

use crate::parse::{Credential, SignatureForm, Signed};
use crate::{
    canonical_request, format_amz_date, hex, signature, signing_key, string_to_sign, Request,
};

/// Long-term or temporary credentials.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

/// Where and when a request is signed.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub region: &'a str,
    /// The signing name (`iam`, `sts`, `ecr`).
    pub service: &'a str,
    /// Seconds since the Unix epoch.
    pub now: i64,
}

/// The headers to add to a request so that it carries a valid signature:
/// `x-amz-date`, `x-amz-security-token` for temporary credentials, and `authorization`.
/// `headers` are the headers that will be sent (they must include `host`); all of them
/// are signed. `path` is the path as it goes on the wire (already percent-encoded).
pub fn sign(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    creds: &Credentials,
    scope: Scope,
) -> Vec<(String, String)> {
    let amz_date = format_amz_date(scope.now);
    let mut added = vec![("x-amz-date".to_string(), amz_date.clone())];
    if let Some(t) = &creds.session_token {
        added.push(("x-amz-security-token".to_string(), t.clone()));
    }
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    all.extend(added.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let mut names: Vec<String> = all.iter().map(|(k, _)| k.to_ascii_lowercase()).collect();
    names.sort();
    names.dedup();
    let signed = Signed {
        form: SignatureForm::Header,
        credential: Credential {
            access_key_id: &creds.access_key_id,
            date: &amz_date[..8],
            region: scope.region,
            service: scope.service,
            terminator: "aws4_request",
        },
        signed_headers: names,
        signature: "",
        amz_date: &amz_date,
        security_token: creds.session_token.clone(),
        expires: None,
    };
    let req = Request {
        method,
        path,
        query,
        headers: &all,
        body,
    };
    let payload = hex(&crate::sha256(body));
    let creq = canonical_request(&req, &signed, &payload)
        .expect("the canonical request of a header-form signature always builds");
    let sts = string_to_sign(&signed, &creq);
    let key = signing_key(
        &creds.secret_access_key,
        &amz_date[..8],
        scope.region,
        scope.service,
    );
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={}/{}/{}/{}/aws4_request, SignedHeaders={}, Signature={}",
        creds.access_key_id,
        &amz_date[..8],
        scope.region,
        scope.service,
        signed.signed_headers.join(";"),
        signature(&key, &sts)
    );
    added.push(("authorization".to_string(), authorization));
    added
}
