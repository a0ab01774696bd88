//! Repository creation templates (`CreateRepositoryCreationTemplate`,
//! `UpdateRepositoryCreationTemplate`, `DeleteRepositoryCreationTemplate`,
//! `DescribeRepositoryCreationTemplates`): a template and its prefix, how a Create or
//! Update request ([`TemplateInput`], read in [`super::template_input`]) makes or changes
//! one, its wire shape, and which template a repository that ECR creates on its own (by
//! replication, pull through cache or a push) takes its settings from. Pure: the caller
//! stores templates and validates the policy texts' grammar.

use std::collections::BTreeSet;

use berth_oci::names;
use berth_store::{Encryption, MutabilityFilter, Tag, TagMutability};
use serde_json::{json, Map, Value};

use super::shape::{self, item, quoted};
pub use super::template_input::{valid_kms_key, TemplateInput};
use super::ConfigError;

/// The prefix of the template that applies to every repository no other template matches.
pub const ROOT: &str = "ROOT";
pub const PREFIX_MAX: usize = 256;

const PREFIX_PATTERN: &str =
    r"^([a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*\/?|ROOT)$";

/// A template's `prefix`: `ROOT`, or a repository namespace. ECR reads a namespace with
/// an implied `/` at its end: `prod` applies to `prod/app`, not to `production` nor to
/// `prod` itself. Kept as written (`prod` and `prod/` read back as given).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TemplatePrefix {
    Root,
    Namespace(String),
}

/// The repository creations a template applies to (`appliedFor`), in the model's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AppliedFor {
    Replication,
    PullThroughCache,
    CreateOnPush,
}

impl AppliedFor {
    pub const ALL: [AppliedFor; 3] = [
        AppliedFor::Replication,
        AppliedFor::PullThroughCache,
        AppliedFor::CreateOnPush,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AppliedFor::Replication => "REPLICATION",
            AppliedFor::PullThroughCache => "PULL_THROUGH_CACHE",
            AppliedFor::CreateOnPush => "CREATE_ON_PUSH",
        }
    }

    pub fn parse(s: &str) -> Option<AppliedFor> {
        AppliedFor::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl TemplatePrefix {
    /// A prefix if the model's pattern accepts `s` (`ROOT`, or repository-name segments
    /// with an optional trailing `/`, at most 256 characters). `root` is a namespace.
    pub fn new(s: &str) -> Option<TemplatePrefix> {
        if s == ROOT {
            return Some(TemplatePrefix::Root);
        }
        let body = s.strip_suffix('/').unwrap_or(s);
        let ok = s.len() <= PREFIX_MAX
            && match body.len() {
                0 => false,
                // The repository-name matcher wants two characters at least.
                1 => shape::lower_alnum_or(body, b""),
                _ => names::valid_repository_name(body),
            };
        ok.then(|| TemplatePrefix::Namespace(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        match self {
            TemplatePrefix::Root => ROOT,
            TemplatePrefix::Namespace(s) => s,
        }
    }

    /// The namespace without its trailing `/`; `None` for `ROOT`.
    pub fn namespace(&self) -> Option<&str> {
        match self {
            TemplatePrefix::Root => None,
            TemplatePrefix::Namespace(s) => Some(s.strip_suffix('/').unwrap_or(s)),
        }
    }

    /// Whether a repository of this name is in the prefix: `ROOT` holds every name, a
    /// namespace the names that continue it with `/`.
    pub fn matches(&self, repository_name: &str) -> bool {
        match self.namespace() {
            None => true,
            Some(ns) => repository_name
                .strip_prefix(ns)
                .is_some_and(|rest| rest.starts_with('/')),
        }
    }

    /// How specific the prefix is: `ROOT` least, a longer namespace more.
    fn specificity(&self) -> usize {
        self.namespace().map_or(0, |ns| ns.len() + 1)
    }

    /// The `prefix` member of a request (`DeleteRepositoryCreationTemplate`).
    pub fn from_input(input: &Value) -> Result<TemplatePrefix, ConfigError> {
        let obj = shape::object(input, "")?;
        parse_prefix(shape::required(obj, "prefix", "")?, "prefix")
    }

    /// The `prefixes` member of `DescribeRepositoryCreationTemplates` (empty: all).
    pub fn list_from_input(input: &Value) -> Result<Vec<TemplatePrefix>, ConfigError> {
        let obj = shape::object(input, "")?;
        let Some(list) = shape::member(obj, "prefixes") else {
            return Ok(Vec::new());
        };
        shape::list(list, "prefixes", 0, None)?
            .iter()
            .enumerate()
            .map(|(i, p)| parse_prefix(p, &item("prefixes", i)))
            .collect()
    }
}

pub(super) fn parse_prefix(v: &Value, at: &str) -> Result<TemplatePrefix, ConfigError> {
    let s = shape::string(v, at)?;
    shape::length(s, at, 1, Some(PREFIX_MAX))?;
    TemplatePrefix::new(s).ok_or_else(|| {
        shape::violation(
            Some(&quoted(s)),
            at,
            &format!("Member must satisfy regular expression pattern: {PREFIX_PATTERN}"),
        )
    })
}

/// A stored template. Times are milliseconds since the epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreationTemplate {
    pub prefix: TemplatePrefix,
    pub description: Option<String>,
    /// `None`: repositories get ECR's default (AES256).
    pub encryption: Option<Encryption>,
    pub resource_tags: Vec<Tag>,
    /// `MUTABLE` when the request gave none (the model's documented default).
    pub image_tag_mutability: TagMutability,
    /// Only with a `*_WITH_EXCLUSION` mutability, and then 1 to 5.
    pub exclusion_filters: Vec<MutabilityFilter>,
    /// The text as given; the caller checks it is a repository policy.
    pub repository_policy: Option<String>,
    /// The text as given; the caller checks it is a lifecycle policy.
    pub lifecycle_policy: Option<String>,
    pub applied_for: BTreeSet<AppliedFor>,
    pub custom_role_arn: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The mutability and exclusion filters a template ends with: a `*_WITH_EXCLUSION`
/// mutability needs its filters in the same request, another refuses them.
fn mutability(
    m: TagMutability,
    filters: Option<&Vec<MutabilityFilter>>,
) -> Result<(TagMutability, Vec<MutabilityFilter>), ConfigError> {
    match (m.with_exclusion(), filters) {
        (true, Some(f)) => Ok((m, f.clone())),
        (false, None) => Ok((m, Vec::new())),
        (true, None) => Err(ConfigError::InvalidParameter(format!(
            "ImageTagMutabilityExclusionFilters can't be null when imageTagMutability is set as {}",
            m.as_str()
        ))),
        (false, Some(_)) => Err(ConfigError::InvalidParameter(format!(
            "ImageTagMutabilityExclusionFilters can only be given with a *_WITH_EXCLUSION mutability, not {}",
            m.as_str()
        ))),
    }
}

/// An empty text is no text.
fn non_empty(s: &Option<String>) -> Option<String> {
    s.clone().filter(|s| !s.is_empty())
}

impl CreationTemplate {
    /// The template a Create request makes at `now_ms`.
    pub fn create(input: &TemplateInput, now_ms: i64) -> Result<CreationTemplate, ConfigError> {
        let (image_tag_mutability, exclusion_filters) = mutability(
            input.image_tag_mutability.unwrap_or(TagMutability::Mutable),
            input.exclusion_filters.as_ref(),
        )?;
        Ok(CreationTemplate {
            prefix: input.prefix.clone(),
            description: non_empty(&input.description),
            encryption: input.encryption.clone(),
            resource_tags: input.resource_tags.clone().unwrap_or_default(),
            image_tag_mutability,
            exclusion_filters,
            repository_policy: non_empty(&input.repository_policy),
            lifecycle_policy: non_empty(&input.lifecycle_policy),
            applied_for: input.applied_for.clone().unwrap_or_default(),
            custom_role_arn: non_empty(&input.custom_role_arn),
            created_at: now_ms,
            updated_at: now_ms,
        })
    }

    /// `CreateRepositoryCreationTemplate`'s input made into a template at `now_ms`.
    pub fn from_create_request(
        input: &Value,
        now_ms: i64,
    ) -> Result<CreationTemplate, ConfigError> {
        CreationTemplate::create(&TemplateInput::parse_create(input)?, now_ms)
    }

    /// An Update request applied at `now_ms`: each member given replaces the template's
    /// (an empty text removes it, `resourceTags` and `appliedFor` replace the whole
    /// list); members not given stay. A mutability given with `*_WITH_EXCLUSION` needs
    /// its filters in the same request; filters given alone need the template's
    /// mutability to take them. Nothing changes when the update is refused. The caller
    /// found this template by the request's `prefix`.
    pub fn apply_update(&mut self, input: &TemplateInput, now_ms: i64) -> Result<(), ConfigError> {
        let (m, filters) = match (input.image_tag_mutability, &input.exclusion_filters) {
            (Some(m), f) => mutability(m, f.as_ref())?,
            (None, Some(f)) => mutability(self.image_tag_mutability, Some(f))?,
            (None, None) => (self.image_tag_mutability, self.exclusion_filters.clone()),
        };
        let mut next = self.clone();
        next.image_tag_mutability = m;
        next.exclusion_filters = filters;
        if input.description.is_some() {
            next.description = non_empty(&input.description);
        }
        if let Some(e) = &input.encryption {
            next.encryption = Some(e.clone());
        }
        if let Some(tags) = &input.resource_tags {
            next.resource_tags = tags.clone();
        }
        if input.repository_policy.is_some() {
            next.repository_policy = non_empty(&input.repository_policy);
        }
        if input.lifecycle_policy.is_some() {
            next.lifecycle_policy = non_empty(&input.lifecycle_policy);
        }
        if let Some(a) = &input.applied_for {
            next.applied_for = a.clone();
        }
        if input.custom_role_arn.is_some() {
            next.custom_role_arn = non_empty(&input.custom_role_arn);
        }
        next.updated_at = now_ms;
        *self = next;
        Ok(())
    }

    /// A template as the store keeps it (its [`to_json`](Self::to_json)), times included.
    pub fn from_stored(text: &str) -> Result<CreationTemplate, ConfigError> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| ConfigError::Serialization(format!("a stored template: {e}")))?;
        let ms = |k: &str| {
            v.get(k)
                .and_then(Value::as_f64)
                .map_or(0, |s| (s * 1000.0).round() as i64)
        };
        let mut t = CreationTemplate::create(&TemplateInput::parse_create(&v)?, 0)?;
        t.created_at = ms("createdAt");
        t.updated_at = ms("updatedAt");
        Ok(t)
    }

    /// The repository `name` of `registry` this template makes at `now_ms` (its settings,
    /// policies and tags; the caller checks the policies as a create would).
    pub fn new_repository(
        &self,
        registry: berth_store::RegistryKey<'_>,
        name: &str,
        now_ms: i64,
    ) -> (berth_store::Repository, Vec<Tag>) {
        let mut r = berth_store::Repository::new(registry, name, now_ms);
        r.tag_mutability = self.image_tag_mutability;
        r.mutability_filters = self.exclusion_filters.clone();
        if let Some(e) = &self.encryption {
            r.encryption = e.clone();
        }
        r.policy = self.repository_policy.clone();
        if let Some(p) = &self.lifecycle_policy {
            r.lifecycle_policy = Some(p.clone());
            r.lifecycle_updated = Some(now_ms);
        }
        (r, self.resource_tags.clone())
    }

    pub fn applies_to(&self, scenario: AppliedFor) -> bool {
        self.applied_for.contains(&scenario)
    }

    /// The wire shape (`RepositoryCreationTemplate`), members without a value left out.
    pub fn to_json(&self) -> Value {
        let mut t = Map::new();
        t.insert("prefix".into(), json!(self.prefix.as_str()));
        if let Some(d) = &self.description {
            t.insert("description".into(), json!(d));
        }
        if let Some(e) = &self.encryption {
            let mut enc = Map::new();
            enc.insert("encryptionType".into(), json!(e.kind.as_str()));
            if let Some(k) = &e.kms_key {
                enc.insert("kmsKey".into(), json!(k));
            }
            t.insert("encryptionConfiguration".into(), Value::Object(enc));
        }
        if !self.resource_tags.is_empty() {
            let tags: Vec<Value> = self
                .resource_tags
                .iter()
                .map(|x| json!({"Key": x.key, "Value": x.value}))
                .collect();
            t.insert("resourceTags".into(), json!(tags));
        }
        t.insert(
            "imageTagMutability".into(),
            json!(self.image_tag_mutability.as_str()),
        );
        if !self.exclusion_filters.is_empty() {
            let filters: Vec<Value> = self
                .exclusion_filters
                .iter()
                .map(|f| json!({"filterType": MutabilityFilter::FILTER_TYPE, "filter": f.wildcard}))
                .collect();
            t.insert("imageTagMutabilityExclusionFilters".into(), json!(filters));
        }
        if let Some(p) = &self.repository_policy {
            t.insert("repositoryPolicy".into(), json!(p));
        }
        if let Some(p) = &self.lifecycle_policy {
            t.insert("lifecyclePolicy".into(), json!(p));
        }
        let applied: Vec<&str> = self.applied_for.iter().map(|a| a.as_str()).collect();
        t.insert("appliedFor".into(), json!(applied));
        if let Some(r) = &self.custom_role_arn {
            t.insert("customRoleArn".into(), json!(r));
        }
        t.insert("createdAt".into(), crate::ecr::epoch(self.created_at));
        t.insert("updatedAt".into(), crate::ecr::epoch(self.updated_at));
        Value::Object(t)
    }

    /// The answer of Create, Update and Delete for registry `registry_id`.
    pub fn response(&self, registry_id: &str) -> Value {
        json!({"registryId": registry_id, "repositoryCreationTemplate": self.to_json()})
    }
}

/// `DescribeRepositoryCreationTemplates`' answer for one page.
pub fn describe_response<'a>(
    registry_id: &str,
    templates: impl IntoIterator<Item = &'a CreationTemplate>,
    next_token: Option<&str>,
) -> Value {
    let list: Vec<Value> = templates
        .into_iter()
        .map(CreationTemplate::to_json)
        .collect();
    let mut out = json!({"registryId": registry_id, "repositoryCreationTemplates": list});
    if let Some(token) = next_token {
        out["nextToken"] = json!(token);
    }
    out
}

/// The template whose settings a repository that ECR creates for `scenario` takes: of
/// the templates applied for that scenario whose prefix holds the name, the most
/// specific (the longest namespace; `ROOT` only when no namespace holds it). Of two
/// equally specific (`prod` and `prod/`), the first in `templates`. `None`: ECR's
/// defaults.
pub fn best_match<'a>(
    templates: &'a [CreationTemplate],
    repository_name: &str,
    scenario: AppliedFor,
) -> Option<&'a CreationTemplate> {
    let mut best: Option<&CreationTemplate> = None;
    for t in templates
        .iter()
        .filter(|t| t.applies_to(scenario) && t.prefix.matches(repository_name))
    {
        if best.is_none_or(|b| t.prefix.specificity() > b.prefix.specificity()) {
            best = Some(t);
        }
    }
    best
}
