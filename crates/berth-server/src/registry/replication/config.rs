//! A registry's replication configuration (`PutReplicationConfiguration`,
//! `DescribeRegistry`): read from the wire with the model's limits and ECR's own rules,
//! written back in the wire shape, and asked which destinations a repository's images go
//! to. Pure: nothing here stores or replicates.

use serde_json::{json, Map, Value};

use super::shape::{self, child, item};
use super::ConfigError;

/// Rules a configuration may hold (the model: `ReplicationRuleList` 0..25).
pub const MAX_RULES: usize = 25;
/// Destinations one rule may name (the model: `ReplicationDestinationList` 0..100).
pub const MAX_DESTINATIONS_PER_RULE: usize = 100;
/// Repository filters of a rule that has them (the model: `RepositoryFilterList` 1..100).
pub const MAX_FILTERS_PER_RULE: usize = 100;
/// Distinct destinations across all rules (ECR's service quota, not adjustable; the
/// model's own list limits allow more).
pub const MAX_UNIQUE_DESTINATIONS: usize = 25;
/// The one `filterType` (the model: `RepositoryFilterType`).
pub const FILTER_TYPE: &str = "PREFIX_MATCH";

const REGION_PATTERN: &str = "[0-9a-z-]{2,25}";
const REGISTRY_ID_PATTERN: &str = "[0-9]{12}";
const FILTER_PATTERN: &str = "^(?:[a-z0-9]+(?:[._-][a-z0-9]*)*/)*[a-z0-9]*(?:[._-][a-z0-9]*)*$";

/// The replication configuration of one registry in one Region: its rules, in the order
/// given. No rules: nothing is replicated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplicationConfiguration {
    pub rules: Vec<Rule>,
}

/// One rule: the repositories it selects (`filters`) and where their images go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub destinations: Vec<Destination>,
    /// `repositoryFilters`, each a `PREFIX_MATCH`. Empty: every repository.
    pub filters: Vec<Filter>,
    /// `deleteReplication.enabled`, `None` when the rule has no `deleteReplication`
    /// (kept apart from `Some(false)` so the configuration reads back as it was put).
    pub delete_replication: Option<bool>,
}

/// A registry (account) in a Region that images are replicated to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Destination {
    pub region: String,
    pub registry_id: String,
}

/// A `PREFIX_MATCH` repository filter: the repositories whose names start with `prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub prefix: String,
}

/// `Region`: `[0-9a-z-]{2,25}`.
pub fn valid_region(s: &str) -> bool {
    (2..=25).contains(&s.len()) && shape::lower_alnum_or(s, b"-")
}

/// `RegistryId`: `[0-9]{12}`.
pub fn valid_registry_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `RepositoryFilterValue`'s pattern (its length, 2..256, is checked apart). Written by
/// hand: every `/`-ended segment is non-empty, starts with `[a-z0-9]` and holds only
/// `[a-z0-9._-]`; the last segment holds only `[a-z0-9._-]` and may be empty.
pub fn valid_filter(s: &str) -> bool {
    let mut segments: Vec<&str> = s.split('/').collect();
    let last = segments.pop().unwrap_or_default();
    segments.iter().all(|seg| {
        seg.as_bytes()
            .first()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && shape::lower_alnum_or(seg, b"._-")
    }) && shape::lower_alnum_or(last, b"._-")
}

impl Filter {
    pub fn matches(&self, repository_name: &str) -> bool {
        repository_name.starts_with(&self.prefix)
    }
}

impl Rule {
    /// Whether the rule selects the repository: it has no filters, or one filter's
    /// prefix starts the name.
    pub fn matches(&self, repository_name: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| f.matches(repository_name))
    }

    /// Whether image deletions and tag removals go to this rule's destinations too.
    pub fn replicates_deletes(&self) -> bool {
        self.delete_replication == Some(true)
    }
}

impl ReplicationConfiguration {
    /// `PutReplicationConfiguration`'s input, read and checked against the registry it
    /// is put on: the model first ([`ReplicationConfiguration::parse`]), then ECR's own
    /// rules ([`ReplicationConfiguration::check`]).
    pub fn from_request(
        input: &Value,
        source_account: &str,
        source_region: &str,
    ) -> Result<ReplicationConfiguration, ConfigError> {
        let top = shape::object(input, "")?;
        let config = shape::required(top, "replicationConfiguration", "")?;
        let config = ReplicationConfiguration::parse(config)?;
        config.check(source_account, source_region)?;
        Ok(config)
    }

    /// A `ReplicationConfiguration` value (the request's member, or one written by
    /// [`ReplicationConfiguration::to_json`]) read with every limit of the model:
    ///
    /// - `rules` required, at most 25;
    /// - per rule: `destinations` required, at most 100; `repositoryFilters` absent or
    ///   1 to 100; `deleteReplication`, when given, with its required `enabled`;
    /// - a destination: `region` `[0-9a-z-]{2,25}`, `registryId` `[0-9]{12}`, both required;
    /// - a filter: `filter` of 2 to 256 characters matching the model's pattern,
    ///   `filterType` `PREFIX_MATCH`, both required.
    pub fn parse(value: &Value) -> Result<ReplicationConfiguration, ConfigError> {
        let at = "replicationConfiguration";
        let obj = shape::object(value, at)?;
        let rules_at = child(at, "rules");
        let rules = shape::list(
            shape::required(obj, "rules", at)?,
            &rules_at,
            0,
            Some(MAX_RULES),
        )?;
        let rules = rules
            .iter()
            .enumerate()
            .map(|(i, r)| parse_rule(r, &item(&rules_at, i)))
            .collect::<Result<_, _>>()?;
        Ok(ReplicationConfiguration { rules })
    }

    /// ECR's rules beyond the model's shapes, for a configuration put on the registry
    /// `source_account` in `source_region`: no destination is that registry in that
    /// Region (it would replicate onto itself), and at most
    /// [`MAX_UNIQUE_DESTINATIONS`] distinct destinations across all rules.
    pub fn check(&self, source_account: &str, source_region: &str) -> Result<(), ConfigError> {
        let onto_itself = self
            .rules
            .iter()
            .flat_map(|r| &r.destinations)
            .any(|d| d.registry_id == source_account && d.region == source_region);
        if onto_itself {
            return Err(ConfigError::InvalidParameter(
                "Invalid parameter at 'replicationConfiguration' failed to satisfy constraint: 'Replication destination cannot be the same as the source registry'".into(),
            ));
        }
        let unique = self.unique_destinations().len();
        if unique > MAX_UNIQUE_DESTINATIONS {
            return Err(ConfigError::InvalidParameter(format!(
                "Invalid parameter at 'replicationConfiguration' failed to satisfy constraint: 'A replication configuration can have at most {MAX_UNIQUE_DESTINATIONS} unique destinations across all rules, not {unique}'"
            )));
        }
        Ok(())
    }

    /// Every destination named by a rule, once, in the order first named.
    pub fn unique_destinations(&self) -> Vec<&Destination> {
        let mut out: Vec<&Destination> = Vec::new();
        for d in self.rules.iter().flat_map(|r| &r.destinations) {
            if !out.contains(&d) {
                out.push(d);
            }
        }
        out
    }

    /// Where a push to `repository_name` is replicated: each destination of every rule
    /// that selects the repository, once, in the order first named, with whether
    /// deletions are replicated there too (true when any selecting rule that names it
    /// enables `deleteReplication`; see the module documentation for why).
    pub fn destinations_for(&self, repository_name: &str) -> Vec<(Destination, bool)> {
        let mut out: Vec<(Destination, bool)> = Vec::new();
        for rule in self.rules.iter().filter(|r| r.matches(repository_name)) {
            let deletes = rule.replicates_deletes();
            for d in &rule.destinations {
                match out.iter_mut().find(|(seen, _)| seen == d) {
                    Some((_, flag)) => *flag |= deletes,
                    None => out.push((d.clone(), deletes)),
                }
            }
        }
        out
    }

    /// The wire shape, as `DescribeRegistry` and `PutReplicationConfiguration` answer
    /// it: `repositoryFilters` and `deleteReplication` only on the rules that have them.
    pub fn to_json(&self) -> Value {
        let rules: Vec<Value> = self
            .rules
            .iter()
            .map(|r| {
                let mut rule = Map::new();
                rule.insert(
                    "destinations".into(),
                    r.destinations
                        .iter()
                        .map(|d| json!({"region": d.region, "registryId": d.registry_id}))
                        .collect(),
                );
                if !r.filters.is_empty() {
                    rule.insert(
                        "repositoryFilters".into(),
                        r.filters
                            .iter()
                            .map(|f| json!({"filter": f.prefix, "filterType": FILTER_TYPE}))
                            .collect(),
                    );
                }
                if let Some(enabled) = r.delete_replication {
                    rule.insert("deleteReplication".into(), json!({"enabled": enabled}));
                }
                Value::Object(rule)
            })
            .collect();
        json!({"rules": rules})
    }

    /// `DescribeRegistry`'s answer for registry `registry_id`.
    pub fn describe_registry_response(&self, registry_id: &str) -> Value {
        json!({"registryId": registry_id, "replicationConfiguration": self.to_json()})
    }

    /// `PutReplicationConfiguration`'s answer.
    pub fn put_response(&self) -> Value {
        json!({"replicationConfiguration": self.to_json()})
    }
}

fn parse_rule(v: &Value, at: &str) -> Result<Rule, ConfigError> {
    let obj = shape::object(v, at)?;
    let dest_at = child(at, "destinations");
    let destinations = shape::list(
        shape::required(obj, "destinations", at)?,
        &dest_at,
        0,
        Some(MAX_DESTINATIONS_PER_RULE),
    )?
    .iter()
    .enumerate()
    .map(|(i, d)| parse_destination(d, &item(&dest_at, i)))
    .collect::<Result<_, _>>()?;
    let filters = match shape::member(obj, "repositoryFilters") {
        None => Vec::new(),
        Some(list) => {
            let filters_at = child(at, "repositoryFilters");
            shape::list(list, &filters_at, 1, Some(MAX_FILTERS_PER_RULE))?
                .iter()
                .enumerate()
                .map(|(i, f)| parse_filter(f, &item(&filters_at, i)))
                .collect::<Result<_, _>>()?
        }
    };
    let delete_replication = match shape::member(obj, "deleteReplication") {
        None => None,
        Some(d) => {
            let d_at = child(at, "deleteReplication");
            let d = shape::object(d, &d_at)?;
            let enabled = shape::required(d, "enabled", &d_at)?;
            Some(shape::boolean(enabled, &child(&d_at, "enabled"))?)
        }
    };
    Ok(Rule {
        destinations,
        filters,
        delete_replication,
    })
}

fn parse_destination(v: &Value, at: &str) -> Result<Destination, ConfigError> {
    let obj = shape::object(v, at)?;
    let region_at = child(at, "region");
    let region = shape::string(shape::required(obj, "region", at)?, &region_at)?;
    shape::length(region, &region_at, 2, Some(25))?;
    shape::pattern(region, &region_at, valid_region(region), REGION_PATTERN)?;
    let id_at = child(at, "registryId");
    let registry_id = shape::string(shape::required(obj, "registryId", at)?, &id_at)?;
    shape::pattern(
        registry_id,
        &id_at,
        valid_registry_id(registry_id),
        REGISTRY_ID_PATTERN,
    )?;
    Ok(Destination {
        region: region.to_string(),
        registry_id: registry_id.to_string(),
    })
}

fn parse_filter(v: &Value, at: &str) -> Result<Filter, ConfigError> {
    let obj = shape::object(v, at)?;
    let filter_at = child(at, "filter");
    let prefix = shape::string(shape::required(obj, "filter", at)?, &filter_at)?;
    shape::length(prefix, &filter_at, 2, Some(256))?;
    shape::pattern(prefix, &filter_at, valid_filter(prefix), FILTER_PATTERN)?;
    let type_at = child(at, "filterType");
    let ty = shape::string(shape::required(obj, "filterType", at)?, &type_at)?;
    shape::one_of(ty, &type_at, &[FILTER_TYPE], |s| {
        (s == FILTER_TYPE).then_some(())
    })?;
    Ok(Filter {
        prefix: prefix.to_string(),
    })
}
