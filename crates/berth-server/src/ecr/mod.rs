//! The ECR control plane (AWS JSON 1.1): `POST /` with `X-Amz-Target:
//! AmazonEC2ContainerRegistry_V20150921.<Operation>`, SigV4 for the `ecr` service. Every
//! operation ([`router::Operation`]) is decided by [`crate::registry::authorize_ecr`]
//! before its handler runs; errors go out as `{"__type", "message"}`.

mod cache;
mod error;
mod images;
mod layers;
mod lifecycle;
mod replication;
pub mod repositories;
pub mod router;

use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::http::{header, request::Parts, Response, StatusCode};
use berth_store::Repository;
use serde_json::{json, Value};

use crate::auth::authenticate::authenticate_http;
use crate::auth::authorizer::ContextValue;
use crate::auth::Caller;
use crate::ids;
use crate::query::ApiError;
use crate::registry::{authorize_ecr, EcrRequest};
use crate::serve::{App, Origin};
use berth_oci::names;
use router::{Operation, Scope};

pub const TARGET_PREFIX: &str = "AmazonEC2ContainerRegistry_V20150921.";

/// One authenticated, authorized call.
pub struct EcrCall<'a> {
    pub app: &'a App,
    pub caller: &'a Caller,
    pub origin: &'a Origin,
    pub input: &'a Value,
    /// The registry (account) the call is for.
    pub registry: String,
    /// The repository it names, when it exists.
    pub repository: Option<Repository>,
}

/// The JSON-protocol name of an error first made for the query protocol.
pub fn json_code(code: &'static str) -> &'static str {
    match code {
        "InvalidClientTokenId" => "UnrecognizedClientException",
        "SignatureDoesNotMatch" => "InvalidSignatureException",
        "IncompleteSignature" => "IncompleteSignatureException",
        "MissingAuthenticationToken" => "MissingAuthenticationTokenException",
        "ExpiredToken" => "ExpiredTokenException",
        "AccessDenied" => "AccessDeniedException",
        "ServiceFailure" | "ServiceUnavailable" => "ServerException",
        "ValidationError" | "MalformedPolicyDocument" | "MalformedQueryString" => {
            "InvalidParameterException"
        }
        other => other,
    }
}

/// Leave out every member whose value is `null`, at any depth: AWS JSON responses omit
/// absent members rather than sending them as `null`.
fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

fn respond(status: u16, mut body: Value, request_id: &str) -> Response<Body> {
    strip_nulls(&mut body);
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        "application/x-amz-json-1.1".parse().expect("static header"),
    );
    if let Ok(v) = request_id.parse() {
        h.insert("x-amzn-requestid", v);
    }
    r
}

pub fn error_response(e: &ApiError, request_id: &str) -> Response<Body> {
    let status = match e.code {
        "MissingAuthenticationToken" => 403,
        _ if e.status >= 500 => 500,
        _ => 400,
    };
    respond(
        status,
        json!({"__type": json_code(e.code), "message": e.message}),
        request_id,
    )
}

/// A time as ECR answers it: epoch seconds as a JSON number with the milliseconds as a
/// fraction (`1796410559.123`), from milliseconds since the epoch.
pub fn epoch(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}

/// `InvalidParameterException` with ECR's wording.
pub fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(400, "InvalidParameterException", message)
}

pub fn repository_not_found(registry: &str, name: &str) -> ApiError {
    berth_store::RegistryError::RepositoryNotFound {
        account: registry.to_string(),
        name: name.to_string(),
    }
    .into()
}

impl EcrCall<'_> {
    pub fn str(&self, name: &str) -> Option<&str> {
        self.input.get(name).and_then(Value::as_str)
    }

    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.str(name).ok_or_else(|| {
            invalid(format!(
                "1 validation error detected: Value null at '{name}' failed to satisfy constraint: Member must not be null"
            ))
        })
    }

    pub fn bool(&self, name: &str) -> Option<bool> {
        self.input.get(name).and_then(Value::as_bool)
    }

    /// The repository the call names, which must exist.
    pub fn repo(&self) -> Result<&Repository, ApiError> {
        self.repository.as_ref().ok_or_else(|| {
            repository_not_found(&self.registry, self.str("repositoryName").unwrap_or(""))
        })
    }

    /// The Region the request was signed for: its registry's.
    pub fn region(&self) -> &str {
        &self.origin.region
    }

    /// The registry the call is about (the account's, in the request's Region).
    pub fn key(&self) -> berth_store::RegistryKey<'_> {
        self.app.key(&self.registry, &self.origin.region)
    }
}

/// Serve one ECR API request.
pub async fn serve(
    app: &App,
    peer: SocketAddr,
    parts: &Parts,
    body: &Bytes,
    target: &str,
) -> Response<Body> {
    let request_id = ids::request_id();
    let Some(op) = target
        .strip_prefix(TARGET_PREFIX)
        .and_then(Operation::from_name)
    else {
        let e = ApiError::new(
            400,
            "UnknownOperationException",
            format!("X-Amz-Target {target:?} names no operation of this server"),
        );
        return error_response(&e, &request_id);
    };
    crate::metrics::label(&parts.extensions, "ecr", op.name());
    let (caller, origin) = match authenticate_http(app, peer, parts, body, "ecr", &request_id).await
    {
        Ok(c) => c,
        Err(e) => return error_response(&e, &request_id),
    };
    let input: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(body) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                let e = ApiError::new(
                    400,
                    "SerializationException",
                    "The request body is not a JSON object",
                );
                return error_response(&e, &request_id);
            }
            Err(e) => {
                let e = ApiError::new(
                    400,
                    "SerializationException",
                    format!("The request body is not valid JSON: {e}"),
                );
                return error_response(&e, &request_id);
            }
        }
    };
    match call(app, &caller, &origin, op, &input).await {
        Ok(v) => respond(200, v, &request_id),
        Err(e) => {
            tracing::info!(operation = op.name(), code = e.code, principal = %caller.arn(), "ECR request failed");
            error_response(&e, &request_id)
        }
    }
}

/// The repository an operation's input names, checked.
fn repository_name(input: &Value, op: Operation) -> Result<Option<String>, ApiError> {
    match op.scope() {
        Scope::Repository => {
            let name = input
                .get("repositoryName")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    invalid("1 validation error detected: Value null at 'repositoryName' failed to satisfy constraint: Member must not be null")
                })?;
            if !names::valid_repository_name(name) {
                return Err(invalid(format!(
                    "Invalid parameter at 'repositoryName' failed to satisfy constraint: 'must satisfy regular expression '[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(\\/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*' and be 2 to 256 characters': {name:?}"
                )));
            }
            Ok(Some(name.to_string()))
        }
        _ => Ok(None),
    }
}

/// `resourceArn` of the tagging calls → (registry, repository).
fn resource_arn(input: &Value, region: &str) -> Result<(String, String), ApiError> {
    let arn = input
        .get("resourceArn")
        .and_then(Value::as_str)
        .unwrap_or("");
    let bad = || {
        invalid(format!(
            "Invalid parameter at 'resourceArn' failed to satisfy constraint: '{arn}' is not a repository ARN (arn:aws:ecr:{region}:ACCOUNT:repository/NAME)"
        ))
    };
    let rest = arn.strip_prefix("arn:aws:ecr:").ok_or_else(bad)?;
    let mut parts = rest.splitn(3, ':');
    let (Some(r), Some(account), Some(res)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let name = res.strip_prefix("repository/").ok_or_else(bad)?;
    if r != region || account.len() != 12 || !names::valid_repository_name(name) {
        return Err(bad());
    }
    Ok((account.to_string(), name.to_string()))
}

/// Tags of a request (`tags: [{Key, Value}]`), as context keys too.
pub fn request_tags(input: &Value) -> Result<Vec<berth_store::Tag>, ApiError> {
    let Some(list) = input.get("tags") else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .ok_or_else(|| ApiError::new(400, "InvalidTagParameterException", "tags must be a list"))?;
    let mut out: Vec<berth_store::Tag> = Vec::new();
    for t in list {
        let key = t.get("Key").and_then(Value::as_str).unwrap_or("");
        let value = t.get("Value").and_then(Value::as_str);
        let ok_chars = |s: &str| {
            s.chars()
                .all(|c| c.is_alphanumeric() || c.is_whitespace() || "+-=._:/@".contains(c))
        };
        let Some(value) = value else {
            return Err(ApiError::new(
                400,
                "InvalidTagParameterException",
                format!("Tag {key:?} has no Value (use \"\" for an empty one)"),
            ));
        };
        if key.is_empty()
            || key.chars().count() > 128
            || value.chars().count() > 256
            || !ok_chars(key)
            || !ok_chars(value)
        {
            return Err(ApiError::new(400, "InvalidTagParameterException", format!(
                "Tag {key:?}={value:?} is not valid: keys have 1 to 128 characters, values at most 256, of letters, digits, spaces and + - = . _ : / @"
            )));
        }
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(ApiError::new(
                400,
                "InvalidTagParameterException",
                "Tag keys starting with 'aws:' are reserved",
            ));
        }
        out.retain(|o: &berth_store::Tag| o.key != key);
        out.push(berth_store::Tag {
            key: key.to_string(),
            value: value.to_string(),
        });
    }
    if out.len() > 50 {
        return Err(ApiError::new(
            400,
            "TooManyTagsException",
            "A repository can have at most 50 tags",
        ));
    }
    Ok(out)
}

fn tag_context(tags: &[berth_store::Tag]) -> Vec<(String, ContextValue)> {
    let mut ctx: Vec<(String, ContextValue)> = tags
        .iter()
        .map(|t| {
            (
                format!("aws:RequestTag/{}", t.key),
                ContextValue::One(t.value.clone()),
            )
        })
        .collect();
    if !tags.is_empty() {
        ctx.push((
            "aws:TagKeys".into(),
            ContextValue::Many(tags.iter().map(|t| t.key.clone()).collect()),
        ));
    }
    ctx
}

/// Run an ECR operation as `caller` (authorized as the API does it): the API's front door
/// and the console both call this.
pub async fn call(
    app: &App,
    caller: &Caller,
    origin: &Origin,
    op: Operation,
    input: &Value,
) -> Result<Value, ApiError> {
    let mut registry = match input.get("registryId").and_then(Value::as_str) {
        Some(id) if id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()) => id.to_string(),
        Some(id) => {
            return Err(invalid(format!(
                "Invalid parameter at 'registryId' failed to satisfy constraint: 'must satisfy regular expression '[0-9]{{12}}'': {id:?}"
            )))
        }
        None => caller.account.to_string(),
    };
    let mut repository = repository_name(input, op)?;
    let mut context = Vec::new();
    match op {
        Operation::TagResource | Operation::UntagResource | Operation::ListTagsForResource => {
            let (r, name) = resource_arn(input, &origin.region)?;
            registry = r;
            repository = Some(name);
            if op == Operation::TagResource {
                context = tag_context(&request_tags(input)?);
            } else if op == Operation::UntagResource {
                let keys: Vec<String> = input
                    .get("tagKeys")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|k| k.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                context.push(("aws:TagKeys".into(), ContextValue::Many(keys)));
            }
        }
        Operation::CreateRepository => context = tag_context(&request_tags(input)?),
        _ => {}
    }
    // Tagging on create also needs ecr:TagResource, decided with the same keys.
    let create_tags =
        (op == Operation::CreateRepository && !context.is_empty()).then(|| context.clone());
    if op.scope() == Scope::Repositories {
        // Each repository is decided in the handler.
        let call = EcrCall {
            app,
            caller,
            origin,
            input,
            registry,
            repository: None,
        };
        return repositories::describe_repositories(&call).await;
    }
    let found = authorize_ecr(
        app,
        caller,
        origin,
        EcrRequest {
            action: op.action(),
            registry: &registry,
            repository: repository.as_deref(),
            context,
        },
    )
    .await?;
    if let Some(context) = create_tags {
        authorize_ecr(
            app,
            caller,
            origin,
            EcrRequest {
                action: "ecr:TagResource",
                registry: &registry,
                repository: repository.as_deref(),
                context,
            },
        )
        .await?;
    }
    let call = EcrCall {
        app,
        caller,
        origin,
        input,
        registry,
        repository: found,
    };
    let result = dispatch(&call, op).await;
    if op.changes_authorization() {
        // Even a failure may have changed something (an error after the write): flush
        // either way.
        app.caches.invalidate_registry();
    }
    result
}

async fn dispatch(c: &EcrCall<'_>, op: Operation) -> Result<Value, ApiError> {
    use Operation::*;
    match op {
        GetAuthorizationToken => repositories::get_authorization_token(c).await,
        DescribeRegistry => replication::describe_registry(c).await,
        PutReplicationConfiguration => replication::put_replication_configuration(c).await,
        CreateRepositoryCreationTemplate => replication::create_template(c).await,
        UpdateRepositoryCreationTemplate => replication::update_template(c).await,
        DeleteRepositoryCreationTemplate => replication::delete_template(c).await,
        DescribeRepositoryCreationTemplates => replication::describe_templates(c).await,
        DescribeImageReplicationStatus => replication::describe_image_replication_status(c).await,
        StartReplicationBackfill => replication::start_backfill(c).await,
        StopReplicationBackfill => replication::stop_backfill(c).await,
        ListReplicationBackfills => replication::list_backfills(c).await,
        DescribeReplicationBackfillResults => replication::describe_backfill_results(c).await,
        CreatePullThroughCacheRule => cache::create_rule(c).await,
        DescribePullThroughCacheRules => cache::describe_rules(c).await,
        UpdatePullThroughCacheRule => cache::update_rule(c).await,
        DeletePullThroughCacheRule => cache::delete_rule(c).await,
        ValidatePullThroughCacheRule => cache::validate_rule(c).await,
        PutRegistryPolicy => repositories::put_registry_policy(c).await,
        GetRegistryPolicy => repositories::get_registry_policy(c).await,
        DeleteRegistryPolicy => repositories::delete_registry_policy(c).await,
        CreateRepository => repositories::create_repository(c).await,
        DescribeRepositories => repositories::describe_repositories(c).await,
        DeleteRepository => repositories::delete_repository(c).await,
        PutImageTagMutability => repositories::put_tag_mutability(c).await,
        PutImageScanningConfiguration => repositories::put_scanning(c).await,
        SetRepositoryPolicy => repositories::set_repository_policy(c).await,
        GetRepositoryPolicy => repositories::get_repository_policy(c).await,
        DeleteRepositoryPolicy => repositories::delete_repository_policy(c).await,
        PutLifecyclePolicy => repositories::put_lifecycle_policy(c).await,
        GetLifecyclePolicy => repositories::get_lifecycle_policy(c).await,
        DeleteLifecyclePolicy => repositories::delete_lifecycle_policy(c).await,
        StartLifecyclePolicyPreview => lifecycle::start_preview(c).await,
        GetLifecyclePolicyPreview => lifecycle::get_preview(c).await,
        TagResource => repositories::tag_resource(c).await,
        UntagResource => repositories::untag_resource(c).await,
        ListTagsForResource => repositories::list_tags(c).await,
        BatchCheckLayerAvailability => layers::batch_check(c).await,
        GetDownloadUrlForLayer => layers::download_url(c).await,
        InitiateLayerUpload => layers::initiate(c).await,
        UploadLayerPart => layers::upload_part(c).await,
        CompleteLayerUpload => layers::complete(c).await,
        PutImage => images::put_image(c).await,
        BatchGetImage => images::batch_get(c).await,
        BatchDeleteImage => images::batch_delete(c).await,
        ListImages => images::list_images(c).await,
        DescribeImages => images::describe_images(c).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::app::testing;

    #[test]
    fn absent_members_are_left_out_at_any_depth() {
        let mut v =
            json!({"a": null, "b": [{"c": null, "d": 1}, null], "e": {"f": {"g": null}}, "h": ""});
        strip_nulls(&mut v);
        // a null list item is not a member: lists keep their length
        assert_eq!(v, json!({"b": [{"d": 1}, null], "e": {"f": {}}, "h": ""}));
    }

    /// Every operation is decided by IAM before it runs: a user without policies is
    /// refused each one, with its own action in the sentence.
    /// ECR writes leave the IAM caches alone (nothing they change is in them) and drop the
    /// registry's (repositories, their policies and tags, registry policies).
    #[tokio::test]
    async fn ecr_writes_keep_the_iam_caches() {
        let app = testing::app().await;
        let root = testing::caller(&app, "AKIAROOTROOTROOTROOT").await;
        let origin = testing::origin();
        let before = app.caches.cached();
        assert_eq!(before.0, 1, "the root key is cached");
        for (op, input) in [
            (
                Operation::CreateRepository,
                json!({"repositoryName": "app"}),
            ),
            (
                Operation::PutImageScanningConfiguration,
                json!({"repositoryName": "app", "imageScanningConfiguration": {"scanOnPush": true}}),
            ),
            (
                Operation::TagResource,
                json!({"resourceArn": "arn:aws:ecr:us-east-1:111111111111:repository/app",
                       "tags": [{"Key": "team", "Value": "a"}]}),
            ),
            (
                Operation::PutRegistryPolicy,
                json!({"policyText": r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111111111111:root"},"Action":"ecr:ReplicateImage","Resource":"*"}]}"#}),
            ),
            (
                Operation::DeleteRepository,
                json!({"repositoryName": "app"}),
            ),
        ] {
            // Something of the registry cached before the write.
            app.caches
                .registry_policy(
                    &*app.registry,
                    berth_store::RegistryKey::home("111111111111"),
                )
                .await
                .unwrap();
            assert_eq!(app.caches.cached_registry().1, 1);
            call(&app, &root, &origin, op, &input).await.unwrap();
            assert_eq!(app.caches.cached(), before, "after {}", op.name());
            assert_eq!(app.caches.cached_registry(), (0, 0), "after {}", op.name());
        }
    }

    #[tokio::test]
    async fn every_operation_is_authorized() {
        let app = testing::app().await;
        let root = testing::caller(&app, "AKIAROOTROOTROOTROOT").await;
        let nobody = testing::caller(&app, "AKIANOBODYNOBODYNOBO").await;
        let origin = testing::origin();
        // A repository to act on (DescribeRepositories decides per repository).
        call(
            &app,
            &root,
            &origin,
            Operation::CreateRepository,
            &json!({"repositoryName": "app"}),
        )
        .await
        .unwrap();
        let input = json!({
            "repositoryName": "app",
            "resourceArn": "arn:aws:ecr:us-east-1:111111111111:repository/app",
            "tags": [], "tagKeys": [], "imageIds": [{"imageTag": "x"}], "layerDigests": ["sha256:00"],
            "policyText": "{}", "uploadId": "u", "imageManifest": "{}",
        });
        for op in Operation::ALL {
            let e = call(&app, &nobody, &origin, *op, &input).await.unwrap_err();
            assert_eq!(e.code, "AccessDenied", "{}: {e:?}", op.name());
            assert!(
                e.message
                    .contains(&format!("not authorized to perform: {}", op.action())),
                "{}: {}",
                op.name(),
                e.message
            );
        }
    }
}
