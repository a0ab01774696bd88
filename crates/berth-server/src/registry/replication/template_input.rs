//! A repository creation template request (`CreateRepositoryCreationTemplate`,
//! `UpdateRepositoryCreationTemplate`) read member by member with the model's limits and
//! ECR's rules beyond them. What a template is and how it is applied is in
//! [`super::templates`].

use std::collections::BTreeSet;

use berth_store::{Encryption, EncryptionType, MutabilityFilter, Tag, TagMutability};
use serde_json::Value;

use super::shape::{self, child, item, quoted};
use super::templates::{parse_prefix, AppliedFor, TemplatePrefix};
use super::ConfigError;

pub const DESCRIPTION_MAX: usize = 256;
pub const REPOSITORY_POLICY_MAX: usize = 10_240;
pub const LIFECYCLE_POLICY_MAX: usize = 30_720;
pub const CUSTOM_ROLE_ARN_MAX: usize = 2048;
pub const KMS_KEY_MAX: usize = 2048;
pub const MAX_EXCLUSION_FILTERS: usize = 5;
/// Tags a repository may carry: a template's `resourceTags` become a new repository's.
pub const MAX_RESOURCE_TAGS: usize = 50;

const KMS_KEY_PATTERN: &str = r"^$|arn:aws[a-z0-9-]*:kms:[a-z0-9-]+:[0-9]{12}:key\/[a-z0-9-]+";
const EXCLUSION_FILTER_PATTERN: &str = "^[0-9a-zA-Z._*-]{1,128}$";
const MUTABILITY_NAMES: [&str; 4] = [
    "MUTABLE",
    "IMMUTABLE",
    "IMMUTABLE_WITH_EXCLUSION",
    "MUTABLE_WITH_EXCLUSION",
];
const ENCRYPTION_NAMES: [&str; 3] = ["AES256", "KMS", "KMS_DSSE"];

/// A Create or Update request, read and checked member by member. `None`: the member
/// was not given; `Some("")`: given empty. An empty `description`, `repositoryPolicy`,
/// `lifecyclePolicy` or `customRoleArn` means none (the model allows the empty string;
/// it is how an Update removes one); an empty `kmsKey` is read as no key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateInput {
    pub prefix: TemplatePrefix,
    pub description: Option<String>,
    pub encryption: Option<Encryption>,
    pub resource_tags: Option<Vec<Tag>>,
    pub image_tag_mutability: Option<TagMutability>,
    pub exclusion_filters: Option<Vec<MutabilityFilter>>,
    pub repository_policy: Option<String>,
    pub lifecycle_policy: Option<String>,
    pub applied_for: Option<BTreeSet<AppliedFor>>,
    pub custom_role_arn: Option<String>,
}

impl TemplateInput {
    /// `CreateRepositoryCreationTemplate`'s input (`prefix` and `appliedFor` required).
    pub fn parse_create(input: &Value) -> Result<TemplateInput, ConfigError> {
        parse_input(input, true)
    }

    /// `UpdateRepositoryCreationTemplate`'s input (`prefix` required).
    pub fn parse_update(input: &Value) -> Result<TemplateInput, ConfigError> {
        parse_input(input, false)
    }
}

fn parse_input(input: &Value, create: bool) -> Result<TemplateInput, ConfigError> {
    let obj = shape::object(input, "")?;
    let prefix = parse_prefix(shape::required(obj, "prefix", "")?, "prefix")?;
    let text = |name: &str, max: usize| -> Result<Option<String>, ConfigError> {
        let Some(v) = shape::member(obj, name) else {
            return Ok(None);
        };
        let s = shape::string(v, name)?;
        shape::length(s, name, 0, Some(max))?;
        Ok(Some(s.to_string()))
    };
    let description = text("description", DESCRIPTION_MAX)?;
    let encryption = shape::member(obj, "encryptionConfiguration")
        .map(parse_encryption)
        .transpose()?;
    let resource_tags = shape::member(obj, "resourceTags")
        .map(parse_tags)
        .transpose()?;
    let image_tag_mutability = match shape::member(obj, "imageTagMutability") {
        None => None,
        Some(v) => {
            let s = shape::string(v, "imageTagMutability")?;
            Some(shape::one_of(
                s,
                "imageTagMutability",
                &MUTABILITY_NAMES,
                TagMutability::parse,
            )?)
        }
    };
    let exclusion_filters = shape::member(obj, "imageTagMutabilityExclusionFilters")
        .map(parse_exclusion_filters)
        .transpose()?;
    let repository_policy = text("repositoryPolicy", REPOSITORY_POLICY_MAX)?;
    let lifecycle_policy = text("lifecyclePolicy", LIFECYCLE_POLICY_MAX)?;
    let applied_for = match shape::member(obj, "appliedFor") {
        None if create => {
            return Err(shape::violation(
                Some("null"),
                "appliedFor",
                "Member must not be null",
            ))
        }
        None => None,
        Some(v) => Some(parse_applied_for(v)?),
    };
    let custom_role_arn = text("customRoleArn", CUSTOM_ROLE_ARN_MAX)?;
    Ok(TemplateInput {
        prefix,
        description,
        encryption,
        resource_tags,
        image_tag_mutability,
        exclusion_filters,
        repository_policy,
        lifecycle_policy,
        applied_for,
        custom_role_arn,
    })
}

fn parse_encryption(v: &Value) -> Result<Encryption, ConfigError> {
    let at = "encryptionConfiguration";
    let obj = shape::object(v, at)?;
    let type_at = child(at, "encryptionType");
    let ty = shape::string(shape::required(obj, "encryptionType", at)?, &type_at)?;
    let kind = shape::one_of(ty, &type_at, &ENCRYPTION_NAMES, EncryptionType::parse)?;
    let key_at = child(at, "kmsKey");
    let kms_key = match shape::member(obj, "kmsKey") {
        None => None,
        Some(k) => {
            let k = shape::string(k, &key_at)?;
            shape::length(k, &key_at, 0, Some(KMS_KEY_MAX))?;
            shape::pattern(k, &key_at, valid_kms_key(k), KMS_KEY_PATTERN)?;
            Some(k.to_string()).filter(|k| !k.is_empty())
        }
    };
    if kind == EncryptionType::Aes256 && kms_key.is_some() {
        return Err(ConfigError::InvalidParameter(
            "Invalid parameter at 'encryptionConfiguration.kmsKey' failed to satisfy constraint: 'a KMS key can only be given with encryptionType KMS or KMS_DSSE, not AES256'".into(),
        ));
    }
    Ok(Encryption { kind, kms_key })
}

/// `KmsKeyForRepositoryCreationTemplate`'s pattern, matched whole:
/// `arn:aws[a-z0-9-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[a-z0-9-]+`, or empty.
pub fn valid_kms_key(s: &str) -> bool {
    if s.is_empty() {
        return true;
    }
    let parts: Vec<&str> = s.split(':').collect();
    let [arn, partition, service, region, account, resource] = parts[..] else {
        return false;
    };
    let run = |x: &str| !x.is_empty() && shape::lower_alnum_or(x, b"-");
    arn == "arn"
        && partition
            .strip_prefix("aws")
            .is_some_and(|rest| shape::lower_alnum_or(rest, b"-"))
        && service == "kms"
        && run(region)
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && resource.strip_prefix("key/").is_some_and(run)
}

/// `resourceTags`: each with its required `Key` and `Value`; then the rules a
/// repository's tags keep (the tags go on every repository the template creates): keys
/// of 1 to 128 characters and values of at most 256, of letters, digits, spaces and
/// `+ - = . _ : / @`, no `aws:` key, at most 50. A repeated key keeps its last value.
fn parse_tags(v: &Value) -> Result<Vec<Tag>, ConfigError> {
    let at = "resourceTags";
    let list = shape::list(v, at, 0, None)?;
    let mut out: Vec<Tag> = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        let t_at = item(at, i);
        let obj = shape::object(t, &t_at)?;
        let key = shape::string(shape::required(obj, "Key", &t_at)?, &child(&t_at, "Key"))?;
        let value = shape::string(
            shape::required(obj, "Value", &t_at)?,
            &child(&t_at, "Value"),
        )?;
        let chars_ok = |s: &str| {
            s.chars()
                .all(|c| c.is_alphanumeric() || c.is_whitespace() || "+-=._:/@".contains(c))
        };
        if !(1..=128).contains(&key.chars().count())
            || value.chars().count() > 256
            || !chars_ok(key)
            || !chars_ok(value)
        {
            return Err(ConfigError::InvalidParameter(format!(
                "Invalid parameter at '{t_at}' failed to satisfy constraint: 'Tag {key:?}={value:?} is not valid: keys have 1 to 128 characters, values at most 256, of letters, digits, spaces and + - = . _ : / @'"
            )));
        }
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(ConfigError::InvalidParameter(format!(
                "Invalid parameter at '{t_at}' failed to satisfy constraint: 'Tag keys starting with 'aws:' are reserved': {key:?}"
            )));
        }
        out.retain(|o| o.key != key);
        out.push(Tag {
            key: key.to_string(),
            value: value.to_string(),
        });
    }
    if out.len() > MAX_RESOURCE_TAGS {
        return Err(ConfigError::InvalidParameter(format!(
            "Invalid parameter at 'resourceTags' failed to satisfy constraint: 'A repository can have at most {MAX_RESOURCE_TAGS} tags, not {}'",
            out.len()
        )));
    }
    Ok(out)
}

fn parse_exclusion_filters(v: &Value) -> Result<Vec<MutabilityFilter>, ConfigError> {
    let at = "imageTagMutabilityExclusionFilters";
    let list = shape::list(v, at, 1, Some(MAX_EXCLUSION_FILTERS))?;
    let mut out: Vec<MutabilityFilter> = Vec::with_capacity(list.len());
    for (i, f) in list.iter().enumerate() {
        let f_at = item(at, i);
        let obj = shape::object(f, &f_at)?;
        let type_at = child(&f_at, "filterType");
        let ty = shape::string(shape::required(obj, "filterType", &f_at)?, &type_at)?;
        shape::one_of(ty, &type_at, &[MutabilityFilter::FILTER_TYPE], |s| {
            (s == MutabilityFilter::FILTER_TYPE).then_some(())
        })?;
        let filter_at = child(&f_at, "filter");
        let pattern = shape::string(shape::required(obj, "filter", &f_at)?, &filter_at)?;
        shape::length(pattern, &filter_at, 1, Some(128))?;
        let filter = MutabilityFilter::new(pattern);
        shape::pattern(
            pattern,
            &filter_at,
            filter.is_some(),
            EXCLUSION_FILTER_PATTERN,
        )?;
        if let Some(filter) = filter.filter(|f| !out.contains(f)) {
            out.push(filter);
        }
    }
    Ok(out)
}

/// `appliedFor`: a list of the enum's values (a repeated value counts once).
fn parse_applied_for(v: &Value) -> Result<BTreeSet<AppliedFor>, ConfigError> {
    let list = shape::list(v, "appliedFor", 0, None)?;
    let mut names = Vec::with_capacity(list.len());
    for (i, x) in list.iter().enumerate() {
        names.push(shape::string(x, &item("appliedFor", i))?);
    }
    let parsed: Option<BTreeSet<AppliedFor>> = names.iter().map(|n| AppliedFor::parse(n)).collect();
    parsed.ok_or_else(|| {
        let all: Vec<&str> = AppliedFor::ALL.iter().map(|a| a.as_str()).collect();
        shape::violation(
            Some(&quoted(&format!("[{}]", names.join(", ")))),
            "appliedFor",
            &format!(
                "Member must satisfy constraint: [Member must satisfy enum value set: [{}]]",
                all.join(", ")
            ),
        )
    })
}
