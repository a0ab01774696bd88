//! The typed model of ECR replication: a registry's replication configuration
//! ([`config`]) and the repository creation templates that give a repository ECR creates
//! on its own its settings ([`templates`]). Pure: parsing, checking, the wire shapes and
//! matching; storing, replicating and the HTTP front door live elsewhere.
//!
//! Limits, patterns and enums are the botocore ECR model's (1.44.18); a broken one is a
//! `ValidationException` worded as AWS words model violations (see `shape.rs`). ECR's rules
//! beyond the model are `InvalidParameterException`s in its `Invalid parameter at '…'
//! failed to satisfy constraint: '…'` wording: a destination may not be the source
//! registry in the source Region (ECR's sentence, as the moto emulator reproduces it);
//! at most 25 distinct destinations across all rules (ECR's service quota); a KMS key
//! only with `KMS`/`KMS_DSSE`; exclusion filters only with a `*_WITH_EXCLUSION`
//! mutability, and always with one; template tags keep the rules of repository tags.
//!
//! Which rules send a push where: rules are not ordered and none shadows another. The
//! ECR documentation describes each rule on its own (its filters select repositories;
//! no filter selects every one; a `PREFIX_MATCH` filter selects the names it starts)
//! and counts "unique destinations across all rules", so one destination may appear in
//! several rules; nowhere does it say a first matching rule wins. A push therefore goes
//! once to every destination of every rule that selects its repository
//! ([`ReplicationConfiguration::destinations_for`]). A destination replicates deletions
//! when any selecting rule naming it enables `deleteReplication`: the model documents
//! the flag per rule ("the service replicates image deletions … to the replication
//! destinations" of that rule), and another rule that leaves it off does not forbid it.
//!
//! Which template a created repository takes ([`best_match`]): ECR reads a template
//! prefix as a namespace with an implied trailing `/` (`prod` holds `prod/app`, not
//! `production`), and `ROOT` applies "to all repositories that don't match another
//! template"; of the templates applied for the scenario (`REPLICATION`,
//! `PULL_THROUGH_CACHE`, `CREATE_ON_PUSH`) whose prefix holds the name, the longest
//! namespace wins, `ROOT` last. Templates not applied for the scenario are passed over
//! before matching.

pub mod backfill;
pub mod config;
pub mod deliver;
pub mod outbox;
mod shape;
pub mod template_input;
pub mod templates;

pub use config::{Destination, Filter, ReplicationConfiguration, Rule};
pub use templates::{best_match, AppliedFor, CreationTemplate, TemplateInput, TemplatePrefix};

/// Why a replication configuration or a template request is refused, as the ECR
/// exception the front door sends (`exception()` is its `__type`, `message()` its
/// `message`, status 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A constraint of the model (required, length, pattern, enum, list size):
    /// `ValidationException`.
    Validation(String),
    /// A rule of ECR's beyond the model's shapes: `InvalidParameterException`.
    InvalidParameter(String),
    /// A member of the wrong JSON type: `SerializationException`.
    Serialization(String),
}

impl ConfigError {
    pub fn exception(&self) -> &'static str {
        match self {
            ConfigError::Validation(_) => "ValidationException",
            ConfigError::InvalidParameter(_) => "InvalidParameterException",
            ConfigError::Serialization(_) => "SerializationException",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            ConfigError::Validation(m)
            | ConfigError::InvalidParameter(m)
            | ConfigError::Serialization(m) => m,
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.exception(), self.message())
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests;

/// The repository `name` of `registry` that ECR would make for `scenario` at `now_ms`:
/// from the most specific of the registry's creation templates applied for it (its
/// settings, policies and tags), else with ECR's defaults and no tags. `None` for the
/// template when none matched.
pub async fn templated_repository(
    app: &crate::serve::App,
    registry: berth_store::RegistryKey<'_>,
    name: &str,
    scenario: AppliedFor,
    now_ms: i64,
) -> Result<(berth_store::Repository, Vec<berth_store::Tag>, bool), berth_store::RegistryError> {
    let mut templates = Vec::new();
    for text in app.registry.creation_templates(registry).await? {
        match CreationTemplate::from_stored(&text) {
            Ok(t) => templates.push(t),
            Err(e) => tracing::warn!(error = %e, "a stored creation template does not read"),
        }
    }
    Ok(match best_match(&templates, name, scenario) {
        Some(t) => {
            let (repo, tags) = t.new_repository(registry, name, now_ms);
            (repo, tags, true)
        }
        None => (
            berth_store::Repository::new(registry, name, now_ms),
            Vec::new(),
            false,
        ),
    })
}
