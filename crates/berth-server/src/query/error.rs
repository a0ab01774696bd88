//! Errors of the query-protocol services (IAM, STS) as they go on the wire:
//! `<ErrorResponse><Error><Type/><Code/><Message/></Error><RequestId/></ErrorResponse>`.

use berth_store::StoreError;

/// One error as the client will see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// `Sender` (the client's fault) or `Receiver`.
    pub sender: bool,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            sender: status < 500,
        }
    }

    /// A parameter missing or out of its constraints.
    pub fn validation(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "ValidationError", message)
    }

    pub fn invalid_input(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "InvalidInput", message)
    }

    pub fn no_such_entity(message: impl Into<String>) -> ApiError {
        ApiError::new(404, "NoSuchEntity", message)
    }

    pub fn access_denied(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "AccessDenied", message)
    }

    pub fn malformed_policy(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "MalformedPolicyDocument", message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "ServiceFailure", message)
    }

    /// The metadata store is out of reach: nothing was done, retrying later may work
    /// (the SDKs retry 503s by themselves).
    pub fn unavailable() -> ApiError {
        ApiError::new(
            503,
            "ServiceUnavailable",
            "The service is unavailable: its storage (metadata store or blob store) cannot be reached right now; nothing was changed. Retry shortly.",
        )
    }

    pub fn invalid_token() -> ApiError {
        ApiError::new(
            403,
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound(m) => ApiError::no_such_entity(m),
            StoreError::AlreadyExists(m) => ApiError::new(409, "EntityAlreadyExists", m),
            StoreError::Conflict(m) => ApiError::new(409, "DeleteConflict", m),
            StoreError::LimitExceeded(m) => ApiError::new(409, "LimitExceeded", m),
            StoreError::Backend(m) => {
                tracing::error!(error = %m, "metadata store failed");
                ApiError::internal("The request processing has failed because of an unknown error, exception or failure.")
            }
            StoreError::Unavailable(m) => {
                tracing::warn!(error = %m, "metadata store unavailable");
                ApiError::unavailable()
            }
        }
    }
}

impl From<berth_sigv4::SigV4Error> for ApiError {
    fn from(e: berth_sigv4::SigV4Error) -> ApiError {
        let status = match e.query_code() {
            "MissingAuthenticationToken" | "SignatureDoesNotMatch" => 403,
            _ => 400,
        };
        let mut message = e.to_string();
        if let berth_sigv4::SigV4Error::SignatureDoesNotMatch {
            canonical_request,
            string_to_sign,
        } = &e
        {
            // As the query services do: show what was signed, so a client can compare.
            message.push_str(&format!(
                "\n\nThe Canonical String for this request should have been\n'{canonical_request}'\n\nThe String-to-Sign should have been\n'{string_to_sign}'\n"
            ));
        }
        ApiError::new(status, e.query_code(), message)
    }
}
