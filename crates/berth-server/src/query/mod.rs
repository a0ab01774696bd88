//! The AWS query-protocol front door (IAM and STS): `POST /` with a form body (or `GET`
//! with a query string) naming an `Action`. Reads the parameters, authenticates the
//! SigV4 signature, hands the call to the service, and writes XML responses and errors.

mod error;
pub mod params;
pub mod xml;

pub use error::ApiError;
pub use params::Params;

use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::http::{header, request::Parts, Method, Response, StatusCode};
use serde_json::Value;

use crate::auth::authenticate::authenticate_http;
use crate::auth::Caller;
use crate::ids;
use crate::serve::{App, Origin};

/// The query services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Iam,
    Sts,
}

impl Service {
    /// Which service an action belongs to.
    pub fn of(action: &str) -> Service {
        if crate::sts::Endpoint::from_action(action).is_some() {
            Service::Sts
        } else {
            Service::Iam
        }
    }

    pub fn signing_name(self) -> &'static str {
        match self {
            Service::Iam => "iam",
            Service::Sts => "sts",
        }
    }

    pub fn namespace(self) -> &'static str {
        match self {
            Service::Iam => "https://iam.amazonaws.com/doc/2010-05-08/",
            Service::Sts => "https://sts.amazonaws.com/doc/2011-06-15/",
        }
    }

    pub fn version(self) -> &'static str {
        match self {
            Service::Iam => "2010-05-08",
            Service::Sts => "2011-06-15",
        }
    }
}

/// One authenticated call.
pub struct Call<'a> {
    pub app: &'a App,
    pub caller: &'a Caller,
    pub origin: &'a Origin,
    pub params: &'a Params,
}

fn xml_response(status: u16, body: String, request_id: &str) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        "text/xml".parse().expect("static header"),
    );
    if let Ok(v) = request_id.parse() {
        h.insert("x-amzn-requestid", v);
    }
    r
}

pub fn error_response(service: Service, e: &ApiError, request_id: &str) -> Response<Body> {
    xml_response(
        e.status,
        xml::error(
            service.namespace(),
            e.sender,
            e.code,
            &e.message,
            request_id,
        ),
        request_id,
    )
}

/// Whether the query API answers this method and path (`POST /` or `GET /`).
pub fn answers(parts: &Parts) -> bool {
    parts.uri.path() == "/" && (parts.method == Method::POST || parts.method == Method::GET)
}

/// Serve one query-protocol request (its body already read).
pub async fn serve(app: &App, peer: SocketAddr, parts: Parts, body: Bytes) -> Response<Body> {
    let request_id = ids::request_id();
    if !answers(&parts) {
        let e = ApiError::new(
            404,
            "NotFound",
            format!(
                "No API answers {} {}: the IAM and STS query APIs take POST / with Action=…",
                parts.method,
                parts.uri.path()
            ),
        );
        return error_response(Service::Iam, &e, &request_id);
    }
    let raw_query = parts.uri.query().unwrap_or("");
    // A presigned request's parameters are in its signed query string, and only there:
    // a body next to them is refused rather than read.
    let presigned = berth_sigv4::query_pairs(raw_query)
        .iter()
        .any(|(k, _)| k == "X-Amz-Signature" || k == "X-Amz-Algorithm");
    if presigned && !body.is_empty() {
        let e = ApiError::new(
            400,
            "InvalidParameterCombination",
            "A presigned request carries its parameters in its signed query string; it must not have a body. Put the parameters in the URL before presigning, or sign the request with an Authorization header",
        );
        return error_response(Service::Iam, &e, &request_id);
    }
    // Parameters: the form body of a POST, else the query string (never both mixed).
    let form: &[u8] = if parts.method == Method::POST && !body.is_empty() {
        &body
    } else {
        raw_query.as_bytes()
    };
    let params = match params::decode_form(form) {
        Ok(p) => p,
        Err(e) => return error_response(Service::Iam, &e, &request_id),
    };
    let Some(action) = params.get("Action").map(str::to_string) else {
        let e = ApiError::new(400, "MissingAction", "Missing Action");
        return error_response(Service::Iam, &e, &request_id);
    };
    let service = Service::of(&action);
    let operation = match service {
        Service::Iam => crate::iam::router::Endpoint::from_action(&action).map(|e| e.name()),
        Service::Sts => crate::sts::Endpoint::from_action(&action).map(|e| e.name()),
    };
    crate::metrics::label(
        &parts.extensions,
        service.signing_name(),
        operation.unwrap_or("unknown"),
    );
    if let Some(v) = params.get("Version") {
        if v != service.version() {
            let e = ApiError::new(
                400,
                "InvalidParameterValue",
                format!(
                    "Version {v:?} is not supported by {}: use {}",
                    service.signing_name(),
                    service.version()
                ),
            );
            return error_response(service, &e, &request_id);
        }
    }

    let (caller, origin) = match authenticate_http(
        app,
        peer,
        &parts,
        &body,
        service.signing_name(),
        &request_id,
    )
    .await
    {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(code = e.code, message = %e.message, "authentication failed");
            return error_response(service, &e, &request_id);
        }
    };
    let call = Call {
        app,
        caller: &caller,
        origin: &origin,
        params: &params,
    };
    let result: Result<Value, ApiError> = match service {
        Service::Iam => crate::iam::handle(&call, &action).await,
        Service::Sts => crate::sts::handle(&call, &action).await,
    };
    match result {
        Ok(v) => xml_response(
            200,
            xml::response(&action, service.namespace(), &v, &request_id),
            &request_id,
        ),
        Err(e) => {
            tracing::info!(action = %action, code = e.code, principal = %caller.arn(), "request failed");
            error_response(service, &e, &request_id)
        }
    }
}
