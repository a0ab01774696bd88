//! Access Analyzer's ValidatePolicy (REST-JSON, `POST /policy/validation`, SigV4 for
//! `access-analyzer`), answered offline by `berth-iam`'s linter, so that
//! `aws accessanalyzer validate-policy --endpoint-url …` runs Berth's checks.

use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::http::{header, request::Parts, Response, StatusCode};
use berth_iam::lint::{lint, Finding};
use berth_iam::PolicyKind;
use serde_json::{json, Value};

use crate::auth::authenticate::authenticate_http;
use crate::auth::authorizer::{authorize, Authorization};
use crate::ids;
use crate::query::ApiError;
use crate::serve::App;

pub const PATH: &str = "/policy/validation";

/// The Access Analyzer operations Berth answers, with the action each is decided as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /policy/validation`.
    ValidatePolicy,
}

impl Endpoint {
    pub const ALL: &'static [Endpoint] = &[Endpoint::ValidatePolicy];

    /// The IAM action (`access-analyzer:ValidatePolicy`).
    pub fn action(self) -> &'static str {
        match self {
            Endpoint::ValidatePolicy => "access-analyzer:ValidatePolicy",
        }
    }
}

fn respond(status: u16, code: Option<&str>, body: Value, request_id: &str) -> Response<Body> {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        "application/json".parse().expect("static header"),
    );
    if let Ok(v) = request_id.parse() {
        h.insert("x-amzn-requestid", v);
    }
    if let Some(c) = code.and_then(|c| c.parse().ok()) {
        h.insert("x-amzn-errortype", c);
    }
    r
}

pub fn error(e: &ApiError, request_id: &str) -> Response<Body> {
    // The auth layer's names are the JSON protocol's (as ECR's); the rest is validation.
    let code = match crate::ecr::json_code(e.code) {
        "ServerException" => "InternalServerException",
        "InvalidParameterException" => "ValidationException",
        c if c.ends_with("Exception") => c,
        _ => "ValidationException",
    };
    let status = match code {
        "AccessDeniedException"
        | "MissingAuthenticationTokenException"
        | "UnrecognizedClientException" => 403,
        "InternalServerException" => 500,
        _ => 400,
    };
    respond(
        status,
        Some(code),
        json!({"message": e.message}),
        request_id,
    )
}

/// The policy kind of a `policyType` (and `validatePolicyResourceType`).
fn kind_of(policy_type: &str, resource_type: Option<&str>) -> Result<PolicyKind, ApiError> {
    Ok(match (policy_type, resource_type) {
        ("IDENTITY_POLICY", _) => PolicyKind::Identity,
        ("RESOURCE_POLICY", Some("AWS::IAM::AssumeRolePolicyDocument")) => PolicyKind::Trust,
        ("RESOURCE_POLICY", Some("AWS::ECR::RegistryPolicy")) => PolicyKind::Registry,
        ("RESOURCE_POLICY", _) => PolicyKind::Repository,
        ("SERVICE_CONTROL_POLICY" | "RESOURCE_CONTROL_POLICY", _) => PolicyKind::Identity,
        (other, _) => {
            return Err(ApiError::validation(format!(
                "policyType {other:?} is not IDENTITY_POLICY, RESOURCE_POLICY, SERVICE_CONTROL_POLICY or RESOURCE_CONTROL_POLICY"
            )))
        }
    })
}

/// `Statement[0].Condition.IpAddress."aws:SourceIp"` → Access Analyzer path elements.
pub fn path_elements(path: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        rest = rest.strip_prefix('.').unwrap_or(rest);
        if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').unwrap_or(r.len());
            out.push(json!({"key": &r[..end]}));
            rest = r.get(end + 1..).unwrap_or("");
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').unwrap_or(r.len());
            if let Ok(i) = r[..end].parse::<u64>() {
                out.push(json!({"index": i}));
            }
            rest = r.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            out.push(json!({"key": &rest[..end]}));
            rest = &rest[end..];
        }
    }
    out
}

/// Where the JSON token at `offset` ends (a string's closing quote, else the next delimiter).
fn token_end(src: &str, offset: usize) -> usize {
    let b = src.as_bytes();
    if offset >= b.len() {
        return b.len();
    }
    if b[offset] == b'"' {
        let mut i = offset + 1;
        while i < b.len() {
            match b[i] {
                b'\\' => i += 2,
                b'"' => return i + 1,
                _ => i += 1,
            }
        }
        return b.len();
    }
    offset
        + src[offset..]
            .find([',', '}', ']', '\n'])
            .unwrap_or(src.len() - offset)
}

fn position(src: &str, offset: usize) -> Value {
    let (line, column) = berth_iam::json::line_column(src, offset);
    json!({"line": line, "column": column - 1, "offset": offset})
}

pub fn finding_json(src: &str, f: &Finding) -> Value {
    json!({
        "findingType": f.finding_type.as_str(),
        "issueCode": f.issue_code,
        "findingDetails": f.details,
        "learnMoreLink": format!("https://docs.aws.amazon.com/IAM/latest/UserGuide/access-analyzer-reference-policy-checks.html#access-analyzer-reference-policy-checks-{}", f.issue_code.to_ascii_lowercase().replace('_', "-")),
        "locations": [{
            "path": path_elements(&f.path),
            "span": {"start": position(src, f.offset), "end": position(src, token_end(src, f.offset))},
        }],
    })
}

/// Decide an operation, then run it.
fn handle(
    app: &App,
    caller: &crate::auth::Caller,
    origin: &crate::serve::Origin,
    endpoint: Endpoint,
    body: &[u8],
) -> Result<Value, ApiError> {
    authorize(
        app,
        caller,
        origin,
        &Authorization {
            action: endpoint.action(),
            resource: "*",
            resource_account: &caller.account,
            resource_policies: &[],
            context: &[],
            resource_must_allow: false,
        },
    )?;
    match endpoint {
        Endpoint::ValidatePolicy => validate_policy(body),
    }
}

fn validate_policy(body: &[u8]) -> Result<Value, ApiError> {
    let input: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::validation(format!("The request body is not valid JSON: {e}")))?;
    let doc = input
        .get("policyDocument")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::validation("policyDocument is required"))?;
    let policy_type = input
        .get("policyType")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::validation("policyType is required"))?;
    let kind = kind_of(
        policy_type,
        input
            .get("validatePolicyResourceType")
            .and_then(Value::as_str),
    )?;
    let findings: Vec<Value> = lint(doc, kind)
        .iter()
        .map(|f| finding_json(doc, f))
        .collect();
    Ok(json!({ "findings": findings }))
}

/// Serve `POST /policy/validation`.
pub async fn serve(app: &App, peer: SocketAddr, parts: &Parts, body: &Bytes) -> Response<Body> {
    let request_id = ids::request_id();
    let (caller, origin) =
        match authenticate_http(app, peer, parts, body, "access-analyzer", &request_id).await {
            Ok(c) => c,
            Err(e) => return error(&e, &request_id),
        };
    let result = handle(app, &caller, &origin, Endpoint::ValidatePolicy, body);
    match result {
        Ok(v) => respond(200, None, v, &request_id),
        Err(e) => error(&e, &request_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::app::testing;

    /// Every operation is decided before it runs: a user without policies is refused each
    /// one, naming its action.
    #[tokio::test]
    async fn every_operation_is_authorized() {
        let app = testing::app().await;
        let nobody = testing::caller(&app, "AKIANOBODYNOBODYNOBO").await;
        let body = br#"{"policyDocument": "{}", "policyType": "IDENTITY_POLICY"}"#;
        for ep in Endpoint::ALL {
            let e = handle(&app, &nobody, &testing::origin(), *ep, body).unwrap_err();
            assert_eq!(e.code, "AccessDenied", "{ep:?}: {e:?}");
            assert!(
                e.message
                    .contains(&format!("not authorized to perform: {}", ep.action())),
                "{ep:?}: {}",
                e.message
            );
        }
    }

    #[test]
    fn paths() {
        assert_eq!(
            path_elements("Statement[0].Condition.IpAddress.\"aws:SourceIp\""),
            vec![
                json!({"key": "Statement"}),
                json!({"index": 0}),
                json!({"key": "Condition"}),
                json!({"key": "IpAddress"}),
                json!({"key": "aws:SourceIp"})
            ]
        );
        assert_eq!(path_elements(""), Vec::<Value>::new());
        assert_eq!(token_end("[\"ab\\\"c\", 1]", 1), 8);
    }
}
