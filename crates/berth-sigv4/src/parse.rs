//! Reading the signature of a request: the `Authorization` header form or the
//! presigned query form (`X-Amz-Algorithm`, `X-Amz-Credential`, ...).

use crate::encode::percent_decode;
use crate::error::SigV4Error;
use crate::Request;

/// `AKID/YYYYMMDD/region/service/aws4_request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential<'a> {
    pub access_key_id: &'a str,
    pub date: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    pub terminator: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureForm {
    /// `Authorization: AWS4-HMAC-SHA256 ...`
    Header,
    /// A presigned URL.
    Query,
}

/// The signature information of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed<'a> {
    pub form: SignatureForm,
    pub credential: Credential<'a>,
    /// Lower-cased names, in the order given (they must be sorted).
    pub signed_headers: Vec<String>,
    pub signature: &'a str,
    /// `X-Amz-Date` (header or query).
    pub amz_date: &'a str,
    /// `X-Amz-Security-Token` (header or query), for temporary credentials.
    pub security_token: Option<String>,
    /// Presigned lifetime in seconds.
    pub expires: Option<i64>,
}

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

fn incomplete(msg: impl Into<String>) -> SigV4Error {
    SigV4Error::IncompleteSignature(msg.into())
}

/// Read the signature of `req` (header form, else presigned query form).
pub fn parse<'a>(
    req: &Request<'a>,
    query: &'a [(String, String)],
) -> Result<Signed<'a>, SigV4Error> {
    let has_query_sig = query.iter().any(|(k, _)| k == "X-Amz-Algorithm");
    match req.header("authorization") {
        Some(h) => {
            if has_query_sig {
                return Err(incomplete(
                    "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter or the Authorization header should be specified",
                ));
            }
            parse_header(req, h)
        }
        None if has_query_sig => {
            let signed = parse_query(query)?;
            check_amz_headers_signed(req, &signed.signed_headers)?;
            Ok(signed)
        }
        None => Err(SigV4Error::MissingAuthenticationToken),
    }
}

/// Split a raw query string into decoded (name, value) pairs, in order.
pub fn query_pairs(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                String::from_utf8_lossy(&percent_decode(k)).into_owned(),
                String::from_utf8_lossy(&percent_decode(v)).into_owned(),
            )
        })
        .collect()
}

fn parse_credential(s: &str) -> Result<Credential<'_>, SigV4Error> {
    let parts: Vec<&str> = s.split('/').collect();
    let [access_key_id, date, region, service, terminator] = parts[..] else {
        return Err(incomplete(format!(
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '{s}'"
        )));
    };
    if access_key_id.is_empty() {
        return Err(incomplete("Credential names no access key id"));
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(incomplete(format!(
            "Credential date '{date}' is not YYYYMMDD"
        )));
    }
    Ok(Credential {
        access_key_id,
        date,
        region,
        service,
        terminator,
    })
}

fn signed_header_list(s: &str) -> Result<Vec<String>, SigV4Error> {
    let list: Vec<String> = s.split(';').map(|h| h.to_ascii_lowercase()).collect();
    if list.iter().any(|h| h.is_empty()) {
        return Err(incomplete(format!(
            "SignedHeaders '{s}' holds an empty name"
        )));
    }
    if !list.iter().any(|h| h == "host") {
        return Err(incomplete(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }
    Ok(list)
}

/// Every `x-amz-*` header the request carries must be signed (`X-Amz-Target` names the
/// operation of a JSON API; an unsigned one could be swapped). `X-Amz-Security-Token` is
/// the exception: some SDKs add it after signing, and it must match the session of the
/// signing key anyway.
fn check_amz_headers_signed(req: &Request, signed_headers: &[String]) -> Result<(), SigV4Error> {
    for (name, _) in req.headers {
        let lower = name.to_ascii_lowercase();
        if lower.starts_with("x-amz-")
            && lower != "x-amz-security-token"
            && !signed_headers.contains(&lower)
        {
            return Err(incomplete(format!(
                "'{lower}' must be a 'SignedHeader' in the AWS Authorization: every x-amz-* header sent (other than X-Amz-Security-Token) must be signed."
            )));
        }
    }
    Ok(())
}

fn check_signature(s: &str) -> Result<(), SigV4Error> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(incomplete(format!(
            "Signature '{s}' is not 64 hexadecimal digits"
        )));
    }
    Ok(())
}

fn parse_header<'a>(req: &Request<'a>, h: &'a str) -> Result<Signed<'a>, SigV4Error> {
    let h = h.trim();
    let Some(rest) = h.strip_prefix(ALGORITHM) else {
        let alg = h.split_whitespace().next().unwrap_or("");
        return Err(incomplete(format!(
            "Unsupported authorization type '{alg}'; use {ALGORITHM}"
        )));
    };
    if !rest.starts_with(' ') {
        return Err(incomplete(format!(
            "Authorization header requires a space after {ALGORITHM}"
        )));
    }
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        let Some((k, v)) = part.split_once('=') else {
            return Err(incomplete(format!(
                "Authorization header requires each component to be key=value, got '{part}'"
            )));
        };
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed_headers = Some(v),
            "Signature" => signature = Some(v),
            _ => {
                return Err(incomplete(format!(
                    "Authorization header holds an unknown component '{k}'"
                )))
            }
        }
    }
    let missing = |what: &str| {
        incomplete(format!(
            "Authorization header requires '{what}' parameter. Authorization={h}"
        ))
    };
    let credential = parse_credential(credential.ok_or_else(|| missing("Credential"))?)?;
    let signed_headers =
        signed_header_list(signed_headers.ok_or_else(|| missing("SignedHeaders"))?)?;
    check_amz_headers_signed(req, &signed_headers)?;
    let signature = signature.ok_or_else(|| missing("Signature"))?;
    check_signature(signature)?;
    let amz_date = req.header("x-amz-date").ok_or_else(|| {
        incomplete(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        )
    })?;
    Ok(Signed {
        form: SignatureForm::Header,
        credential,
        signed_headers,
        signature,
        amz_date: amz_date.trim(),
        security_token: req
            .header("x-amz-security-token")
            .map(|t| t.trim().to_string()),
        expires: None,
    })
}

fn parse_query(query: &[(String, String)]) -> Result<Signed<'_>, SigV4Error> {
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let need = |name: &str| {
        get(name)
            .ok_or_else(|| incomplete(format!("AWS query-string parameters must include '{name}'")))
    };
    let alg = need("X-Amz-Algorithm")?;
    if alg != ALGORITHM {
        return Err(incomplete(format!(
            "X-Amz-Algorithm '{alg}' is not supported; use {ALGORITHM}"
        )));
    }
    let credential = parse_credential(need("X-Amz-Credential")?)?;
    let amz_date = need("X-Amz-Date")?;
    let signed_headers = signed_header_list(need("X-Amz-SignedHeaders")?)?;
    let signature = need("X-Amz-Signature")?;
    check_signature(signature)?;
    let expires = need("X-Amz-Expires")?;
    let expires: i64 = expires
        .parse()
        .ok()
        .filter(|e| (1..=604_800).contains(e))
        .ok_or_else(|| {
            incomplete(format!(
                "X-Amz-Expires '{expires}' must be a number of seconds from 1 to 604800"
            ))
        })?;
    Ok(Signed {
        form: SignatureForm::Query,
        credential,
        signed_headers,
        signature,
        amz_date,
        security_token: get("X-Amz-Security-Token").map(str::to_string),
        expires: Some(expires),
    })
}
