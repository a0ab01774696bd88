//! What the stores keep of pull-through caching: each registry's pull-through cache rules
//! (as the ECR wire JSON they were accepted in, by `ecrRepositoryPrefix`; berth-server
//! reads them into typed values) and the credentials Berth signs in to upstream
//! registries with (`berth upstream-credential put`), named as AWS Secrets Manager
//! secrets are (`arn:aws:secretsmanager:REGION:ACCOUNT:secret:ecr-pullthroughcache/NAME-XXXXXX`).
//! A credential's secret is sealed by the backend ([`crate::SecretSlot::UpstreamCredential`])
//! and crosses the trait in clear only from [`PullThroughStore::upstream_credential_secret`].
//! And when each cached tag was last checked against its upstream, so that every node
//! checks a tag once per interval between them ([`PullThroughStore::claim_upstream_check`]).

/// A stored upstream credential, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamCredential {
    /// Its ARN (the Secrets Manager form, with the six-character suffix).
    pub arn: String,
    /// The name it was stored under (`ecr-pullthroughcache/` and the rest).
    pub name: String,
    /// The user name it signs in to the upstream registry with.
    pub username: String,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    pub updated_at: i64,
}

/// The registry's pull-through cache rules and upstream credentials.
/// [`RegistryStore`](crate::RegistryStore) is one.
#[async_trait::async_trait]
pub trait PullThroughStore: Send + Sync {
    /// The registry's pull-through cache rules (their wire JSON), by prefix.
    async fn pull_through_rules(
        &self,
        registry: crate::RegistryKey<'_>,
    ) -> crate::RegistryResult<Vec<String>>;
    /// Write the rule of `prefix` (see [`crate::TemplateWrite`]); false when refused.
    async fn put_pull_through_rule(
        &self,
        registry: crate::RegistryKey<'_>,
        prefix: &str,
        rule: &str,
        write: crate::TemplateWrite,
    ) -> crate::RegistryResult<bool>;
    /// Delete the rule of `prefix`; returns it (`None`: there was none).
    async fn delete_pull_through_rule(
        &self,
        registry: crate::RegistryKey<'_>,
        prefix: &str,
    ) -> crate::RegistryResult<Option<String>>;
    /// Store the credential `name` of the registry (its secret sealed), or replace the
    /// user name and secret of the one stored under that name (which keeps its ARN and
    /// creation time; `arn` is used only for a new one). Returns the stored credential.
    async fn put_upstream_credential(
        &self,
        registry: crate::RegistryKey<'_>,
        name: &str,
        arn: &str,
        username: &str,
        secret: &str,
        now: i64,
    ) -> crate::RegistryResult<UpstreamCredential>;
    /// The registry's credentials, by name, without their secrets.
    async fn upstream_credentials(
        &self,
        registry: crate::RegistryKey<'_>,
    ) -> crate::RegistryResult<Vec<UpstreamCredential>>;
    /// The credential `name` of the registry with its secret opened.
    async fn upstream_credential_secret(
        &self,
        registry: crate::RegistryKey<'_>,
        name: &str,
    ) -> crate::RegistryResult<Option<(UpstreamCredential, String)>>;
    /// Delete the credential `name`; whether there was one.
    async fn delete_upstream_credential(
        &self,
        registry: crate::RegistryKey<'_>,
        name: &str,
    ) -> crate::RegistryResult<bool>;
    /// Claim the check of `tag` of the registry's `repository` against its upstream: it
    /// is this caller's (`None`, and recorded as made at `now`) when no check is recorded
    /// or the one recorded was made at or before `stale_at`; else someone checked at the
    /// time returned, and the caller does not. Of concurrent claims, one wins.
    async fn claim_upstream_check(
        &self,
        registry: crate::RegistryKey<'_>,
        repository: &str,
        tag: &str,
        now: i64,
        stale_at: i64,
    ) -> crate::RegistryResult<Option<i64>>;
    /// Record that `tag` was checked at `at` (a time set back makes the next check due
    /// sooner).
    async fn set_upstream_check(
        &self,
        registry: crate::RegistryKey<'_>,
        repository: &str,
        tag: &str,
        at: i64,
    ) -> crate::RegistryResult<()>;
}
