//! What the ECR API and the OCI registry share: repository ARNs and names, the
//! authorization of an ECR action on a repository (identity policies, repository policy,
//! registry policy, repository tags), registry passwords, manifests ([`push`]), upload
//! sessions ([`uploads`]), lifecycle policies ([`lifecycle`]).

pub mod cache;
pub mod gc;
pub mod lifecycle;
pub mod push;
pub mod replication;
pub mod token;
pub mod uploads;

/// What a registry refusal says, in ECR's words; the ECR and OCI front doors both send it
/// (each with its own code and status). `None` for a backend failure, whose detail goes
/// to the log, not to the client.
pub fn refusal_message(e: &berth_store::RegistryError) -> Option<String> {
    use berth_store::RegistryError::*;
    Some(match e {
        RepositoryNotFound { account, name } => format!(
            "The repository with name '{name}' does not exist in the registry with id '{account}'"
        ),
        RepositoryAlreadyExists { account, name } => format!(
            "The repository with name '{name}' already exists in the registry with id '{account}'"
        ),
        RepositoryNotEmpty { account, name } => format!(
            "The repository with name '{name}' in registry with id '{account}' cannot be deleted because it still contains images"
        ),
        ImageReferencedByIndex { digest, .. } => {
            format!("The image {digest} is referenced by a manifest list or index in the repository")
        }
        Backend(_) | Unavailable(_) => return None,
    })
}

use berth_iam::PolicyKind;
use berth_store::Repository;

use crate::auth::authorizer::{authorize, Authorization, ContextValue};
use crate::auth::Caller;
use crate::query::ApiError;
use crate::serve::{App, Origin};

/// An ECR action asked of a repository (`Some(name)`) or of the registry (`None`: `*`).
pub struct EcrRequest<'a> {
    pub action: &'a str,
    /// The registry (account) the request is for.
    pub registry: &'a str,
    pub repository: Option<&'a str>,
    /// Operation-specific keys (`aws:RequestTag/*`, `aws:TagKeys`).
    pub context: Vec<(String, ContextValue)>,
}

pub fn repository_arn(region: &str, registry: &str, name: &str) -> String {
    format!("arn:aws:ecr:{region}:{registry}:repository/{name}")
}

/// Decide an ECR request: the caller's policies, the repository's policy and the
/// registry's policy, with the repository's tags as `aws:ResourceTag/*` and
/// `ecr:ResourceTag/*`. Returns the repository when it exists. Authorization comes
/// first: a caller that may not act learns nothing of what exists.
pub async fn authorize_ecr(
    app: &App,
    caller: &Caller,
    origin: &Origin,
    req: EcrRequest<'_>,
) -> Result<Option<Repository>, ApiError> {
    let region = &origin.region;
    let at = app.key(req.registry, region);
    // From the caches: no store round trip on the steady-state hot path.
    let view = match req.repository {
        Some(name) => Some(
            app.caches
                .repository(&*app.registry, &*app.store, at, name)
                .await?,
        ),
        None => None,
    };
    let repo = view.as_ref().and_then(|v| v.repository.clone());
    let resource = match req.repository {
        Some(name) => repository_arn(region, req.registry, name),
        None => "*".to_string(),
    };
    let mut policies = Vec::with_capacity(2);
    if let Some(text) = repo.as_ref().and_then(|r| r.policy.as_deref()) {
        policies.push(app.caches.compiled(PolicyKind::Repository, text)?);
    }
    if let Some(text) = app.caches.registry_policy(&*app.registry, at).await? {
        policies.push(app.caches.compiled(PolicyKind::Registry, &text)?);
    }
    let mut context = req.context;
    context.push((
        "aws:ResourceAccount".into(),
        ContextValue::One(req.registry.to_string()),
    ));
    for t in view.iter().flat_map(|v| v.tags.iter()) {
        context.push((
            format!("aws:ResourceTag/{}", t.key),
            ContextValue::One(t.value.clone()),
        ));
        context.push((
            format!("ecr:ResourceTag/{}", t.key),
            ContextValue::One(t.value.clone()),
        ));
    }
    authorize(
        app,
        caller,
        origin,
        &Authorization {
            action: req.action,
            resource: &resource,
            resource_account: req.registry,
            resource_policies: &policies,
            context: &context,
            resource_must_allow: false,
        },
    )?;
    Ok(repo)
}
