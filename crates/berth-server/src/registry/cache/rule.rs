//! A pull-through cache rule (`CreatePullThroughCacheRule`): which local repositories
//! (`ecrRepositoryPrefix`: a namespace, or `ROOT` for all) cache which upstream registry
//! (`upstreamRegistryUrl`), signed in with which stored credential (`credentialArn`), and
//! under which upstream namespace (`upstreamRepositoryPrefix`). Pure: reading a request
//! against the model, the stored and wire shapes, and the mapping of a local repository
//! name to the upstream's.

use serde_json::{json, Value};

use crate::query::ApiError;
use crate::registry::replication::TemplatePrefix;

/// `ecrRepositoryPrefix` and `upstreamRepositoryPrefix` lengths (the model's).
const PREFIX_LEN: std::ops::RangeInclusive<usize> = 2..=30;
const PREFIX_PATTERN: &str =
    r"^([a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*\/?|ROOT)$";
const CREDENTIAL_PATTERN: &str = r"^arn:aws(-\w+)*:secretsmanager:[a-zA-Z0-9-:]+:secret:ecr\-pullthroughcache\/[a-zA-Z0-9\/_+=.@-]+$";
/// The upstream registry kinds of the model.
pub const UPSTREAM_REGISTRIES: [&str; 9] = [
    "ecr",
    "ecr-public",
    "quay",
    "k8s",
    "docker-hub",
    "github-container-registry",
    "azure-container-registry",
    "gitlab-container-registry",
    "chainguard",
];
/// The name every pull-through cache secret starts with.
pub const SECRET_PREFIX: &str = "ecr-pullthroughcache/";

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRule {
    pub prefix: TemplatePrefix,
    /// As given (`host[:port]`, or with an `http://`/`https://` scheme).
    pub upstream_url: String,
    pub upstream_registry: Option<String>,
    pub credential_arn: Option<String>,
    pub custom_role_arn: Option<String>,
    pub upstream_prefix: Option<TemplatePrefix>,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    pub updated_at: i64,
}

pub fn validation(message: String) -> ApiError {
    ApiError::new(400, "ValidationException", message)
}

fn violation(value: &str, at: &str, constraint: &str) -> ApiError {
    validation(format!(
        "1 validation error detected: Value '{value}' at '{at}' failed to satisfy constraint: {constraint}"
    ))
}

fn string<'a>(input: &'a Value, at: &str) -> Result<Option<&'a str>, ApiError> {
    match input.get(at) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::new(
            400,
            "SerializationException",
            format!("Expected a string at '{at}'"),
        )),
    }
}

/// A prefix member (`ecrRepositoryPrefix`, `upstreamRepositoryPrefix`) against the model.
pub fn prefix(input: &Value, at: &str, required: bool) -> Result<Option<TemplatePrefix>, ApiError> {
    let Some(s) = string(input, at)? else {
        if required {
            return Err(validation(format!(
                "1 validation error detected: Value null at '{at}' failed to satisfy constraint: Member must not be null"
            )));
        }
        return Ok(None);
    };
    if !PREFIX_LEN.contains(&s.chars().count()) {
        return Err(violation(
            s,
            at,
            "Member must have length between 2 and 30 inclusive",
        ));
    }
    TemplatePrefix::new(s).map(Some).ok_or_else(|| {
        violation(
            s,
            at,
            &format!("Member must satisfy regular expression pattern: {PREFIX_PATTERN}"),
        )
    })
}

/// A `credentialArn` against the model (a Secrets Manager ARN named
/// `ecr-pullthroughcache/…`).
pub fn credential_arn(input: &Value) -> Result<Option<String>, ApiError> {
    let Some(s) = string(input, "credentialArn")? else {
        return Ok(None);
    };
    let n = s.chars().count();
    if !(50..=612).contains(&n) {
        return Err(violation(
            s,
            "credentialArn",
            "Member must have length between 50 and 612 inclusive",
        ));
    }
    if secret_of(s).is_none() {
        return Err(violation(
            s,
            "credentialArn",
            &format!("Member must satisfy regular expression pattern: {CREDENTIAL_PATTERN}"),
        ));
    }
    Ok(Some(s.to_string()))
}

/// The (partition, Region, account, secret name) a credential ARN names, if it is one.
pub fn secret_of(arn: &str) -> Option<(&str, &str, &str, &str)> {
    let rest = arn.strip_prefix("arn:")?;
    let (partition, rest) = rest.split_once(':')?;
    if !(partition == "aws" || partition.starts_with("aws-")) {
        return None;
    }
    let rest = rest.strip_prefix("secretsmanager:")?;
    let (region, rest) = rest.split_once(':')?;
    let (account, rest) = rest.split_once(':')?;
    let name = rest.strip_prefix("secret:")?;
    let tail = name.strip_prefix(SECRET_PREFIX)?;
    let ok = !tail.is_empty()
        && tail
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_+=.@-".contains(&b))
        && !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit());
    ok.then_some((partition, region, account, name))
}

/// A `customRoleArn` (an IAM role ARN, or empty).
pub fn role_arn(input: &Value) -> Result<Option<String>, ApiError> {
    let Some(s) = string(input, "customRoleArn")? else {
        return Ok(None);
    };
    if s.chars().count() > 2048 {
        return Err(violation(
            s,
            "customRoleArn",
            "Member must have length less than or equal to 2048",
        ));
    }
    if s.is_empty() {
        return Ok(None);
    }
    let role = s
        .strip_prefix("arn:aws:iam::")
        .and_then(|r| r.split_once(":role/"))
        .is_some_and(|(a, n)| {
            a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()) && !n.is_empty()
        });
    if !role {
        return Err(ApiError::new(
            400,
            "InvalidParameterException",
            format!("Invalid parameter at 'customRoleArn' failed to satisfy constraint: '{s}' is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)"),
        ));
    }
    Ok(Some(s.to_string()))
}

/// The base URL of an upstream registry URL (`https://` where it names no scheme), or
/// why it is not one.
pub fn base_url(url: &str) -> Result<String, String> {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => ("https".to_string(), url),
    };
    if scheme != "http" && scheme != "https" {
        return Err(format!("the scheme {scheme}:// is not http:// or https://"));
    }
    let host = rest.trim_end_matches('/');
    if host.is_empty()
        || host.contains(['/', '?', '#', '@', ' '])
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
    {
        return Err(format!(
            "'{url}' is not a registry address (host[:port], optionally after http:// or https://; no path)"
        ));
    }
    Ok(format!("{scheme}://{host}"))
}

/// The host (and port) of an upstream registry URL, lowercase, as credentials are bound
/// to it.
pub fn host_of(url: &str) -> Option<String> {
    let base = base_url(url).ok()?;
    Some(base.split_once("://")?.1.to_ascii_lowercase())
}

/// What a stored upstream credential's sealed secret holds: the password and the one
/// upstream host it may be sent to (so that a rule pointed at another host cannot have
/// it sent there).
#[derive(Clone, PartialEq, Eq)]
pub struct CredentialSecret {
    pub password: String,
    pub upstream: String,
}

impl CredentialSecret {
    pub fn to_stored(&self) -> String {
        json!({"password": self.password, "upstream": self.upstream}).to_string()
    }

    pub fn from_stored(s: &str) -> Option<CredentialSecret> {
        let v: Value = serde_json::from_str(s).ok()?;
        Some(CredentialSecret {
            password: v.get("password")?.as_str()?.to_string(),
            upstream: v.get("upstream")?.as_str()?.to_string(),
        })
    }
}

/// The kind of upstream a URL is, for the well-known ones.
pub fn known_registry(url: &str) -> Option<&'static str> {
    let host = base_url(url).ok()?;
    let host = host.split_once("://")?.1.to_ascii_lowercase();
    let host = host.split(':').next().unwrap_or("");
    Some(match host {
        "registry-1.docker.io" | "docker.io" | "index.docker.io" => "docker-hub",
        "public.ecr.aws" => "ecr-public",
        "quay.io" => "quay",
        "registry.k8s.io" => "k8s",
        "ghcr.io" => "github-container-registry",
        "registry.gitlab.com" => "gitlab-container-registry",
        "cgr.dev" => "chainguard",
        h if h.ends_with(".azurecr.io") => "azure-container-registry",
        h if h.contains(".dkr.ecr.") && h.ends_with(".amazonaws.com") => "ecr",
        _ => return None,
    })
}

impl CacheRule {
    /// A rule from a `CreatePullThroughCacheRule` request (without its credential's
    /// existence, which the caller checks).
    pub fn from_create(input: &Value, now: i64) -> Result<CacheRule, ApiError> {
        let prefix = prefix(input, "ecrRepositoryPrefix", true)?.expect("required");
        let url = string(input, "upstreamRegistryUrl")?.ok_or_else(|| {
            validation("1 validation error detected: Value null at 'upstreamRegistryUrl' failed to satisfy constraint: Member must not be null".into())
        })?;
        base_url(url).map_err(|why| {
            ApiError::new(
                400,
                "InvalidParameterException",
                format!("Invalid parameter at 'upstreamRegistryUrl' failed to satisfy constraint: {why}"),
            )
        })?;
        let upstream_registry = match string(input, "upstreamRegistry")? {
            None => known_registry(url).map(str::to_string),
            Some(r) if UPSTREAM_REGISTRIES.contains(&r) => Some(r.to_string()),
            Some(r) => {
                return Err(violation(
                    r,
                    "upstreamRegistry",
                    &format!(
                        "Member must satisfy enum value set: [{}]",
                        UPSTREAM_REGISTRIES.join(", ")
                    ),
                ))
            }
        };
        Ok(CacheRule {
            prefix,
            upstream_url: url.to_string(),
            upstream_registry,
            credential_arn: credential_arn(input)?,
            custom_role_arn: role_arn(input)?,
            upstream_prefix: self::prefix(input, "upstreamRepositoryPrefix", false)?,
            created_at: now,
            updated_at: now,
        })
    }

    /// The stored form.
    pub fn to_stored(&self) -> String {
        json!({
            "ecrRepositoryPrefix": self.prefix.as_str(),
            "upstreamRegistryUrl": self.upstream_url,
            "upstreamRegistry": self.upstream_registry,
            "credentialArn": self.credential_arn,
            "customRoleArn": self.custom_role_arn,
            "upstreamRepositoryPrefix": self.upstream_prefix.as_ref().map(TemplatePrefix::as_str),
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        })
        .to_string()
    }

    pub fn from_stored(text: &str) -> Result<CacheRule, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let prefix = s("ecrRepositoryPrefix")
            .and_then(|p| TemplatePrefix::new(&p))
            .ok_or("no ecrRepositoryPrefix")?;
        Ok(CacheRule {
            prefix,
            upstream_url: s("upstreamRegistryUrl").ok_or("no upstreamRegistryUrl")?,
            upstream_registry: s("upstreamRegistry"),
            credential_arn: s("credentialArn"),
            custom_role_arn: s("customRoleArn"),
            upstream_prefix: s("upstreamRepositoryPrefix").and_then(|p| TemplatePrefix::new(&p)),
            created_at: v.get("createdAt").and_then(Value::as_i64).unwrap_or(0),
            updated_at: v.get("updatedAt").and_then(Value::as_i64).unwrap_or(0),
        })
    }

    /// The `PullThroughCacheRule` shape (DescribePullThroughCacheRules), and the members
    /// the other operations answer with.
    pub fn to_wire(&self, registry: &str) -> Value {
        json!({
            "ecrRepositoryPrefix": self.prefix.as_str(),
            "upstreamRegistryUrl": self.upstream_url,
            "createdAt": crate::ecr::epoch(self.created_at),
            "registryId": registry,
            "credentialArn": self.credential_arn,
            "customRoleArn": self.custom_role_arn,
            "upstreamRepositoryPrefix": self.upstream_prefix.as_ref().map_or("ROOT", TemplatePrefix::as_str),
            "upstreamRegistry": self.upstream_registry,
            "updatedAt": crate::ecr::epoch(self.updated_at),
        })
    }

    /// The base URL requests go to: as the rule says where it names a scheme, else
    /// `http://` for a host (`host[:port]`) among `insecure` and `https://` for others.
    pub fn base(&self, insecure: &[String]) -> String {
        let base = base_url(&self.upstream_url)
            .unwrap_or_else(|_| format!("https://{}", self.upstream_url));
        if self.upstream_url.contains("://") {
            return base;
        }
        let host = base.trim_start_matches("https://");
        match insecure.iter().any(|h| h.eq_ignore_ascii_case(host)) {
            true => format!("http://{host}"),
            false => base,
        }
    }

    /// The upstream repository a local repository name caches, if this rule covers it:
    /// the name after the rule's namespace (all of it for `ROOT`), under the upstream
    /// namespace if there is one.
    pub fn upstream_repository(&self, name: &str) -> Option<String> {
        let rest = match self.prefix.namespace() {
            None => name,
            Some(ns) => name.strip_prefix(ns)?.strip_prefix('/')?,
        };
        if rest.is_empty() {
            return None;
        }
        Some(
            match self
                .upstream_prefix
                .as_ref()
                .and_then(TemplatePrefix::namespace)
            {
                None => rest.to_string(),
                Some(up) => format!("{up}/{rest}"),
            },
        )
    }

    /// How specific the rule is (the longest namespace wins; `ROOT` least).
    fn specificity(&self) -> usize {
        self.prefix.namespace().map_or(0, |n| n.len() + 1)
    }
}

/// The rule among `rules` that covers the repository `name` (the most specific), with
/// the upstream repository.
pub fn rule_for<'a>(rules: &'a [CacheRule], name: &str) -> Option<(&'a CacheRule, String)> {
    rules
        .iter()
        .filter_map(|r| r.upstream_repository(name).map(|u| (r, u)))
        .max_by_key(|(r, _)| r.specificity())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(prefix: &str, up: Option<&str>) -> CacheRule {
        let mut input =
            json!({"ecrRepositoryPrefix": prefix, "upstreamRegistryUrl": "http://127.0.0.1:5000"});
        if let Some(u) = up {
            input["upstreamRepositoryPrefix"] = json!(u);
        }
        CacheRule::from_create(&input, 1).unwrap()
    }

    #[test]
    fn names_map_to_the_upstream() {
        let hub = rule("docker-hub", None);
        assert_eq!(
            hub.upstream_repository("docker-hub/library/nginx")
                .as_deref(),
            Some("library/nginx")
        );
        assert_eq!(hub.upstream_repository("docker-hubx/nginx"), None);
        assert_eq!(hub.upstream_repository("docker-hub"), None);
        let up = rule("team/", Some("mirror"));
        assert_eq!(
            up.upstream_repository("team/app").as_deref(),
            Some("mirror/app")
        );
        let root = rule("ROOT", Some("base/"));
        assert_eq!(root.upstream_repository("x/y").as_deref(), Some("base/x/y"));
        let rules = vec![root.clone(), hub.clone(), rule("docker-hub/library", None)];
        let (r, u) = rule_for(&rules, "docker-hub/library/nginx").unwrap();
        assert_eq!(
            (r.prefix.as_str(), u.as_str()),
            ("docker-hub/library", "nginx")
        );
        let (r, _) = rule_for(&rules, "other/thing").unwrap();
        assert_eq!(r.prefix.as_str(), "ROOT");
    }

    #[test]
    fn requests_are_read_against_the_model() {
        let e = CacheRule::from_create(
            &json!({"ecrRepositoryPrefix": "a", "upstreamRegistryUrl": "x.io"}),
            0,
        )
        .unwrap_err();
        assert_eq!(e.code, "ValidationException");
        assert!(
            e.message.contains("length between 2 and 30"),
            "{}",
            e.message
        );
        let e = CacheRule::from_create(
            &json!({"ecrRepositoryPrefix": "Bad!", "upstreamRegistryUrl": "x.io"}),
            0,
        )
        .unwrap_err();
        assert!(e.message.contains("regular expression"), "{}", e.message);
        let e = CacheRule::from_create(&json!({"ecrRepositoryPrefix": "ok"}), 0).unwrap_err();
        assert!(e.message.contains("upstreamRegistryUrl"), "{}", e.message);
        let e = CacheRule::from_create(
            &json!({"ecrRepositoryPrefix": "ok", "upstreamRegistryUrl": "ftp://x"}),
            0,
        )
        .unwrap_err();
        assert_eq!(e.code, "InvalidParameterException");
        let e = CacheRule::from_create(&json!({"ecrRepositoryPrefix": "ok", "upstreamRegistryUrl": "x.io", "upstreamRegistry": "hub"}), 0).unwrap_err();
        assert!(e.message.contains("enum value set"), "{}", e.message);
        let e = CacheRule::from_create(&json!({"ecrRepositoryPrefix": "ok", "upstreamRegistryUrl": "x.io", "credentialArn": "arn:aws:secretsmanager:us-east-1:111111111111:secret:other/name-abcdef"}), 0).unwrap_err();
        assert!(e.message.contains("credentialArn"), "{}", e.message);
        let r = CacheRule::from_create(&json!({"ecrRepositoryPrefix": "hub", "upstreamRegistryUrl": "registry-1.docker.io",
            "credentialArn": "arn:aws:secretsmanager:us-east-1:111111111111:secret:ecr-pullthroughcache/hub-AbCdEf"}), 5).unwrap();
        assert_eq!(r.upstream_registry.as_deref(), Some("docker-hub"));
        assert_eq!(r.base(&[]), "https://registry-1.docker.io");
        let local = CacheRule::from_create(
            &json!({"ecrRepositoryPrefix": "lo", "upstreamRegistryUrl": "127.0.0.1:5000"}),
            5,
        )
        .unwrap();
        assert_eq!(local.base(&[]), "https://127.0.0.1:5000");
        assert_eq!(
            local.base(&["127.0.0.1:5000".into()]),
            "http://127.0.0.1:5000"
        );
        assert_eq!(CacheRule::from_stored(&r.to_stored()).unwrap(), r);
        let w = r.to_wire("111111111111");
        assert_eq!(w["upstreamRepositoryPrefix"], "ROOT");
        assert_eq!(w["createdAt"], json!(0.005));
    }

    #[test]
    fn upstream_urls() {
        assert_eq!(
            base_url("http://127.0.0.1:5000/").unwrap(),
            "http://127.0.0.1:5000"
        );
        assert_eq!(base_url("quay.io").unwrap(), "https://quay.io");
        assert_eq!(
            base_url("HTTPS://[::1]:5000").unwrap(),
            "https://[::1]:5000"
        );
        for bad in [
            "",
            "http://",
            "x.io/path",
            "user@x.io",
            "file:///etc",
            "a b",
        ] {
            assert!(base_url(bad).is_err(), "{bad}");
        }
        assert_eq!(known_registry("ghcr.io"), Some("github-container-registry"));
        assert_eq!(known_registry("http://127.0.0.1:5000"), None);
    }
}
