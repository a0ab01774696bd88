//! What `berth policy who-can` and `berth policy public` analyse: one account's
//! identities (users and roles with every policy that applies to them) and its registry
//! (repositories with their policies and tags, the registry policy). Read from a data
//! directory, from a running server (or AWS) through the public APIs, or from files.

use std::path::{Path, PathBuf};

use berth_iam::{Context, PolicyKind, Principal, PrincipalKind};
use berth_store::{EntityKind, RegistryStore, Store, TagTarget};
use clap::Args;
use serde_json::{json, Value};

use super::analysis::{Caller, Source};
use super::remote::{env_var, Remote, RemoteError};

/// Where the analysis commands read an account from, besides files.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// A Berth data directory (a running server's too).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// A running server: its policies are read with signed API calls as the credentials
    /// of the environment or the shared credentials file (ecr:DescribeRepositories,
    /// ecr:GetRepositoryPolicy, ecr:ListTagsForResource, ecr:GetRegistryPolicy; who-can
    /// also iam:GetAccountAuthorizationDetails). Default: AWS_ENDPOINT_URL when no other
    /// source is given.
    #[arg(long, value_name = "URL", conflicts_with = "aws")]
    pub endpoint_url: Option<String>,
    /// Read from AWS itself (its public endpoints for the region), the same way.
    #[arg(long)]
    pub aws: bool,
    /// The shared credentials file's profile (default: AWS_PROFILE, else `default`).
    #[arg(long)]
    pub profile: Option<String>,
    /// Region of the requests (and of the repository ARNs of files): default AWS_REGION,
    /// AWS_DEFAULT_REGION, else us-east-1.
    #[arg(long)]
    pub region: Option<String>,
    /// The registry serves anonymous pulls (`berth serve --anonymous-pull`): say which
    /// repositories callers without credentials can pull. Without it (nor a --config
    /// that turns it on) "*" means any signed-in principal, as in ECR.
    #[arg(long)]
    pub anonymous_pull: bool,
    /// The server's config file (`berth serve --config`), read as `berth serve` reads
    /// it, for its anonymous_pull.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl SourceArgs {
    /// Whether the registry analysed serves anonymous pulls: `--anonymous-pull`, or the
    /// `anonymous_pull` of `--config`.
    pub fn anonymous_pull(&self) -> Result<bool, String> {
        if self.anonymous_pull {
            return Ok(true);
        }
        match &self.config {
            Some(file) => Ok(crate::serve::Config::load(
                Some(file),
                &crate::serve::config::Overrides::default(),
            )?
            .anonymous_pull),
            None => Ok(false),
        }
    }

    pub fn region(&self) -> String {
        super::remote::region(self.region.as_deref())
    }

    /// The server to ask, if any: `--endpoint-url`, `--aws`, else AWS_ENDPOINT_URL when
    /// nothing else names a source.
    pub fn remote(&self, files: bool) -> Result<Option<Remote>, String> {
        let endpoint = match &self.endpoint_url {
            Some(url) => Some(url.clone()),
            None if self.aws || files || self.data_dir.is_some() => None,
            None => env_var("AWS_ENDPOINT_URL"),
        };
        if endpoint.is_none() && !self.aws {
            return Ok(None);
        }
        let creds = super::remote::credentials(self.profile.as_deref())?;
        Remote::new(endpoint.as_deref(), creds, self.region()).map(Some)
    }
}

/// Whoever an unrelated account lets act: a caller from an account no policy names, whose
/// own policies allow everything.
pub fn outsider() -> (Principal, Source) {
    let p = Principal::from_arn("arn:aws:iam::000000000000:user/anyone").expect("a user ARN");
    let all = Source::parse(
        "its own policies",
        PolicyKind::Identity,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
    )
    .expect("a valid policy");
    (p, all)
}

/// A user or role of the account.
#[derive(Debug, Clone, Default)]
pub struct Subject {
    pub arn: String,
    pub unique_id: Option<String>,
    /// Identity-based policies that apply to it: (source, document).
    pub policies: Vec<(String, String)>,
    pub boundary: Option<(String, String)>,
    /// A role's trust policy.
    pub trust_policy: Option<String>,
    pub tags: Vec<(String, String)>,
    /// What the data could not tell (a boundary or managed policy it does not hold).
    pub notes: Vec<String>,
    /// Whether its tags and groups are known (they are not for `--identity ARN=FILE`).
    pub complete: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Repo {
    pub name: String,
    pub policy: Option<String>,
    pub tags: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default)]
pub struct Estate {
    pub account: String,
    pub region: String,
    /// The account's users and roles; `None` when the data holds no identities.
    pub subjects: Option<Vec<Subject>>,
    /// Whether the data is a Berth's (a data directory or a Berth server): then no
    /// principal belongs to an organization.
    pub berth: bool,
    /// Whether `subjects` are all the account's identities (not only some given by hand).
    pub all_identities: bool,
    /// Whether the registry serves anonymous pulls (`anonymous_pull`): only then does
    /// `"*"` reach callers without credentials, and only for the pulls.
    pub anonymous_pull: bool,
    pub registry_policy: Option<String>,
    pub repositories: Vec<Repo>,
}

impl Estate {
    pub fn repo_arn(&self, name: &str) -> String {
        crate::registry::repository_arn(&self.region, &self.account, name)
    }

    /// The repository's and the registry's policies.
    pub fn resource_sources(&self, repo: &Repo) -> Result<Vec<Source>, String> {
        let mut out = Vec::new();
        if let Some(t) = &repo.policy {
            out.push(Source::parse(
                &format!("{} repository policy", repo.name),
                PolicyKind::Repository,
                t,
            )?);
        }
        if let Some(t) = &self.registry_policy {
            out.push(Source::parse("registry policy", PolicyKind::Registry, t)?);
        }
        Ok(out)
    }

    /// What a request on the repository always carries: `aws:ResourceAccount`, the
    /// registry's region as `aws:RequestedRegion`, and the repository's tags as
    /// `aws:ResourceTag/*` and `ecr:ResourceTag/*`.
    pub fn resource_context(&self, repo: &Repo) -> Context {
        let mut ctx = Context::new();
        ctx.insert("aws:ResourceAccount", &self.account);
        ctx.insert("aws:RequestedRegion", &self.region);
        for (k, v) in &repo.tags {
            ctx.insert(&format!("aws:ResourceTag/{k}"), v);
            ctx.insert(&format!("ecr:ResourceTag/{k}"), v);
        }
        ctx
    }
}

impl Subject {
    /// The principal, with what IAM derives from it (names, account, `aws:userid` of
    /// users and the root user, its tags) added to `ctx`; and how much is known of it.
    pub fn principal(&self, ctx: &mut Context, berth: bool) -> Result<(Principal, Caller), String> {
        let mut p = Principal::from_arn(&self.arn)?;
        let role = p.kind == PrincipalKind::Role;
        if role {
            // A role acts through sessions: judge one (its name is the session's choice,
            // and so are its tags, source identity and aws:userid, ROLEID:SESSION).
            let name = self.arn.rsplit('/').next().unwrap_or_default();
            p = Principal::from_arn(&format!(
                "arn:aws:sts::{}:assumed-role/{name}/who-can",
                p.account
            ))?;
            ctx.insert("aws:PrincipalArn", &self.arn);
        } else {
            for (k, v) in &self.tags {
                ctx.insert(&format!("aws:PrincipalTag/{k}"), v);
            }
        }
        p.unique_id = self.unique_id.as_deref().map(Into::into);
        match (p.kind, &self.unique_id) {
            (PrincipalKind::Root, _) => ctx.insert("aws:userid", &p.account),
            (PrincipalKind::User, Some(id)) => ctx.insert("aws:userid", id),
            _ => {}
        }
        // What Berth says of every caller (none is an AWS service).
        ctx.insert("aws:PrincipalIsAWSService", "false");
        ctx.insert("aws:ViaAWSService", "false");
        p.settle_context(ctx);
        let caller = if self.complete {
            Caller::Known {
                role_session: role,
                berth,
            }
        } else {
            Caller::Unknown
        };
        Ok((p, caller))
    }

    /// Its identity-based policies and its permissions boundary.
    pub fn sources(&self) -> Result<(Vec<Source>, Option<Source>), String> {
        let identity = self
            .policies
            .iter()
            .map(|(s, d)| Source::parse(s, PolicyKind::Identity, d))
            .collect::<Result<_, _>>()?;
        let boundary = self
            .boundary
            .as_ref()
            .map(|(s, d)| Source::parse(s, PolicyKind::Boundary, d))
            .transpose()?;
        Ok((identity, boundary))
    }
}

// ---------------------------------------------------------------------------------------
// A data directory
// ---------------------------------------------------------------------------------------

/// Every account of a data directory (or only `account`), with its repositories (or only
/// `repository`).
pub async fn from_data_dir(
    dir: &Path,
    region: &str,
    account: Option<&str>,
    repository: Option<&str>,
    with_identities: bool,
) -> Result<Vec<Estate>, String> {
    if !dir.join("berth.db").exists() {
        return Err(format!(
            "{}: not a Berth data directory (no berth.db)",
            dir.display()
        ));
    }
    let store = crate::serve::open_store_without_secrets(dir).await?;
    let e = |e: berth_store::StoreError| e.to_string();
    // Repositories of the home Region are stored without it (see RegistryKey).
    let home = store
        .recorded_setting("home-region")
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for acct in store.accounts().await.map_err(e)? {
        if account.is_some_and(|a| a != acct.id) {
            continue;
        }
        let at = berth_store::RegistryKey {
            account: &acct.id,
            region: (home.as_deref().unwrap_or(region) != region).then_some(region),
        };
        out.push(for_registry(&store, &store, at, region, repository, with_identities).await?);
    }
    if let Some(a) = account {
        if out.is_empty() {
            return Err(format!("no account {a} in {}", dir.display()));
        }
    }
    Ok(out)
}

/// The estate of one registry (`at`, serving `region`) from a metadata store: its
/// account's users and roles with their policies (`with_identities`), its repositories
/// (or only `repository`) with their policies and tags, and its registry policy. The
/// console's access diff reads a running server's store through this.
pub async fn for_registry(
    store: &dyn berth_store::Store,
    registry: &dyn berth_store::RegistryStore,
    at: berth_store::RegistryKey<'_>,
    region: &str,
    repository: Option<&str>,
    with_identities: bool,
) -> Result<Estate, String> {
    let e = |e: berth_store::StoreError| e.to_string();
    let account = at.account;
    let mut subjects = Vec::new();
    let kinds: &[EntityKind] = if with_identities {
        &[EntityKind::User, EntityKind::Role]
    } else {
        &[]
    };
    for &kind in kinds {
        for entity in store.entities(account, kind, "/").await.map_err(e)? {
            let docs = store
                .identity_documents(account, kind, &entity.name)
                .await
                .map_err(e)?;
            subjects.push(Subject {
                arn: entity.arn(),
                unique_id: Some(entity.unique_id.clone()),
                policies: docs
                    .policies
                    .into_iter()
                    .map(|p| (p.source, p.document))
                    .collect(),
                boundary: docs.boundary.map(|b| (b.source, b.document)),
                trust_policy: entity.trust_policy.clone(),
                tags: docs.tags.into_iter().map(|t| (t.key, t.value)).collect(),
                notes: Vec::new(),
                complete: true,
            });
        }
    }
    let mut repositories = Vec::new();
    let wanted = match repository {
        // One repository: read it alone.
        Some(name) => registry
            .repository(at, name)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .collect(),
        None => registry.repositories(at).await.map_err(|e| e.to_string())?,
    };
    for r in wanted {
        let tags = store
            .tags(account, TagTarget::Repository, &r.stored_name())
            .await
            .map_err(e)?;
        repositories.push(Repo {
            name: r.name,
            policy: r.policy,
            tags: tags.into_iter().map(|t| (t.key, t.value)).collect(),
        });
    }
    Ok(Estate {
        account: account.to_string(),
        region: region.to_string(),
        subjects: with_identities.then_some(subjects),
        berth: true,
        all_identities: with_identities,
        anonymous_pull: false,
        registry_policy: registry
            .registry_policy(at)
            .await
            .map_err(|e| e.to_string())?,
        repositories,
    })
}

// ---------------------------------------------------------------------------------------
// GetAccountAuthorizationDetails (from a server, or a file the aws CLI wrote)
// ---------------------------------------------------------------------------------------

fn list(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// A policy document as the wire has it (URL-encoded text), as the aws CLI prints it
/// (a JSON object), or plain JSON text.
fn document(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if s.trim_start().starts_with('{') => Some(s.clone()),
        Value::String(s) if !s.is_empty() => String::from_utf8(berth_sigv4::percent_decode(s)).ok(),
        Value::Object(_) => Some(v.to_string()),
        _ => None,
    }
}

fn tags(v: &Value) -> Vec<(String, String)> {
    list(v)
        .iter()
        .map(|t| (text(&t["Key"]).to_string(), text(&t["Value"]).to_string()))
        .collect()
}

fn is_true(v: &Value) -> bool {
    v.as_bool() == Some(true) || v.as_str() == Some("true")
}

/// Users and roles with the policies that apply to them, from a
/// GetAccountAuthorizationDetails answer (all pages merged).
pub fn subjects_from_details(details: &Value) -> Vec<Subject> {
    // Managed policies: ARN → default version's document.
    let managed: Vec<(String, String)> = list(&details["Policies"])
        .iter()
        .filter_map(|p| {
            let v = list(&p["PolicyVersionList"])
                .iter()
                .find(|v| is_true(&v["IsDefaultVersion"]))?;
            Some((text(&p["Arn"]).to_string(), document(&v["Document"])?))
        })
        .collect();
    let find_managed = |arn: &str, notes: &mut Vec<String>| {
        let doc = managed
            .iter()
            .find(|(a, _)| a == arn)
            .map(|(_, d)| d.clone());
        if doc.is_none() {
            notes.push(format!("policy {arn} is not in the data: left out"));
        }
        doc.map(|d| (arn.to_string(), d))
    };
    let inline = |owner: &str, items: &Value| -> Vec<(String, String)> {
        list(items)
            .iter()
            .filter_map(|p| {
                let name = text(&p["PolicyName"]);
                Some((format!("{owner}/{name}"), document(&p["PolicyDocument"])?))
            })
            .collect()
    };
    let attached = |items: &Value, notes: &mut Vec<String>| -> Vec<(String, String)> {
        list(items)
            .iter()
            .filter_map(|a| find_managed(text(&a["PolicyArn"]), notes))
            .collect()
    };
    let groups = list(&details["GroupDetailList"]);
    let mut out = Vec::new();
    for (kind, key, name_key, id_key, policies_key) in [
        (
            "user",
            "UserDetailList",
            "UserName",
            "UserId",
            "UserPolicyList",
        ),
        (
            "role",
            "RoleDetailList",
            "RoleName",
            "RoleId",
            "RolePolicyList",
        ),
    ] {
        for item in list(&details[key]) {
            let name = text(&item[name_key]);
            if text(&item["Arn"]).is_empty() {
                continue;
            }
            let mut s = Subject {
                arn: text(&item["Arn"]).to_string(),
                unique_id: item[id_key].as_str().map(str::to_string),
                tags: tags(&item["Tags"]),
                trust_policy: document(&item["AssumeRolePolicyDocument"]),
                complete: true,
                ..Subject::default()
            };
            s.policies = inline(&format!("{kind}/{name}"), &item[policies_key]);
            let mut notes = Vec::new();
            s.policies
                .extend(attached(&item["AttachedManagedPolicies"], &mut notes));
            for g in list(&item["GroupList"]) {
                let gname = text(g);
                match groups.iter().find(|x| text(&x["GroupName"]) == gname) {
                    Some(group) => {
                        s.policies
                            .extend(inline(&format!("group/{gname}"), &group["GroupPolicyList"]));
                        s.policies
                            .extend(attached(&group["AttachedManagedPolicies"], &mut notes));
                    }
                    None => notes.push(format!("group {gname} is not in the data: left out")),
                }
            }
            let boundary = text(&item["PermissionsBoundary"]["PermissionsBoundaryArn"]);
            if !boundary.is_empty() {
                s.boundary = find_managed(boundary, &mut notes);
            }
            s.notes = notes;
            out.push(s);
        }
    }
    out
}

/// The account an authorization-details document belongs to (from its ARNs).
pub fn details_account(details: &Value) -> Option<String> {
    [
        "UserDetailList",
        "RoleDetailList",
        "GroupDetailList",
        "Policies",
    ]
    .iter()
    .flat_map(|k| list(&details[*k]))
    .find_map(|i| {
        let arn = text(&i["Arn"]);
        let account = arn.split(':').nth(4)?;
        (account.len() == 12).then(|| account.to_string())
    })
}

// ---------------------------------------------------------------------------------------
// A running server (or AWS), through the public APIs
// ---------------------------------------------------------------------------------------

fn remote_err(what: &str) -> impl Fn(RemoteError) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// The lists of a GetAccountAuthorizationDetails answer.
const DETAIL_LISTS: [&str; 4] = [
    "UserDetailList",
    "GroupDetailList",
    "RoleDetailList",
    "Policies",
];

/// Pages of a paginated call: `call(token)` answers a page and the next token; a token
/// seen before ends it with an error rather than a loop.
fn pages(
    what: &str,
    mut call: impl FnMut(Option<&str>) -> Result<Option<String>, String>,
) -> Result<(), String> {
    let mut seen: Vec<String> = Vec::new();
    let mut token: Option<String> = None;
    loop {
        match call(token.as_deref())? {
            None => return Ok(()),
            Some(next) if seen.contains(&next) => {
                return Err(format!(
                    "{what}: the server repeated the page token {next:?}"
                ))
            }
            Some(next) => {
                seen.push(next.clone());
                token = Some(next);
            }
        }
    }
}

/// All pages of GetAccountAuthorizationDetails, merged.
pub fn remote_details(remote: &Remote) -> Result<Value, String> {
    let mut merged = json!({});
    for k in DETAIL_LISTS {
        merged[k] = json!([]);
    }
    pages("iam GetAccountAuthorizationDetails", |marker| {
        let mut params = vec![("MaxItems", "1000")];
        if let Some(m) = marker {
            params.push(("Marker", m));
        }
        let page = remote
            .query("iam", "GetAccountAuthorizationDetails", &params)
            .map_err(remote_err("iam GetAccountAuthorizationDetails"))?;
        for k in DETAIL_LISTS {
            if let (Some(into), Some(from)) = (merged[k].as_array_mut(), page[k].as_array()) {
                into.extend(from.iter().cloned());
            }
        }
        if !is_true(&page["IsTruncated"]) {
            return Ok(None);
        }
        page["Marker"]
            .as_str()
            .map(|m| Some(m.to_string()))
            .ok_or_else(|| "iam GetAccountAuthorizationDetails: truncated without a Marker".into())
    })?;
    Ok(merged)
}

/// The caller's account as a server (or AWS) reports it: identities from
/// GetAccountAuthorizationDetails (when asked for), repositories (all, or `repository`)
/// with policies and tags, and the registry policy. Repository ARNs (and so the region)
/// are the server's.
pub fn from_remote(
    remote: &Remote,
    repository: Option<&str>,
    with_identities: bool,
) -> Result<Estate, String> {
    let who = remote
        .query("sts", "GetCallerIdentity", &[])
        .map_err(remote_err("sts GetCallerIdentity"))?;
    let account = text(&who["Account"]).to_string();
    let subjects = if with_identities {
        Some(subjects_from_details(&remote_details(remote)?))
    } else {
        None
    };
    // (name, ARN)
    let mut found: Vec<(String, String)> = Vec::new();
    pages("ecr DescribeRepositories", |token| {
        let mut input = json!({ "registryId": account });
        match repository {
            Some(name) => input["repositoryNames"] = json!([name]),
            None => input["maxResults"] = json!(1000),
        }
        if let Some(t) = token {
            input["nextToken"] = json!(t);
        }
        let page = remote
            .ecr("DescribeRepositories", &input)
            .map_err(remote_err("ecr DescribeRepositories"))?;
        for r in list(&page["repositories"]) {
            found.push((
                text(&r["repositoryName"]).to_string(),
                text(&r["repositoryArn"]).to_string(),
            ));
        }
        Ok(page["nextToken"].as_str().map(str::to_string))
    })?;
    let region = found
        .first()
        .and_then(|(_, arn)| arn.split(':').nth(3))
        .filter(|r| !r.is_empty())
        .map_or_else(|| remote.region.clone(), str::to_string);
    let mut repositories = Vec::new();
    for (name, arn) in found {
        let policy = match remote.ecr(
            "GetRepositoryPolicy",
            &json!({ "registryId": account, "repositoryName": name }),
        ) {
            Ok(v) => v["policyText"].as_str().map(str::to_string),
            Err(e) if e.code == "RepositoryPolicyNotFoundException" => None,
            Err(e) => return Err(format!("ecr GetRepositoryPolicy {name}: {e}")),
        };
        let t = remote
            .ecr("ListTagsForResource", &json!({ "resourceArn": arn }))
            .map_err(|e| format!("ecr ListTagsForResource {name}: {e}"))?;
        repositories.push(Repo {
            name,
            policy,
            tags: tags(&t["tags"]),
        });
    }
    let registry_policy = match remote.ecr("GetRegistryPolicy", &json!({})) {
        Ok(v) => v["policyText"].as_str().map(str::to_string),
        Err(e) if e.code == "RegistryPolicyNotFoundException" => None,
        Err(e) => return Err(format!("ecr GetRegistryPolicy: {e}")),
    };
    Ok(Estate {
        account,
        region,
        subjects,
        berth: !remote.is_aws(),
        all_identities: with_identities,
        anonymous_pull: false,
        registry_policy,
        repositories,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_give_users_their_group_and_managed_policies() {
        let allow = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*","Resource":"*"}]}"#;
        let encoded = crate::iam::url_encode(allow);
        let details = json!({
            "UserDetailList": [{
                "UserName": "u", "UserId": "AIDAX", "Arn": "arn:aws:iam::111111111111:user/u",
                "UserPolicyList": [{"PolicyName": "in", "PolicyDocument": encoded}],
                "GroupList": ["g", "gone"],
                "AttachedManagedPolicies": [{"PolicyName": "m", "PolicyArn": "arn:aws:iam::111111111111:policy/m"}],
                "PermissionsBoundary": {"PermissionsBoundaryArn": "arn:aws:iam::aws:policy/Missing"},
                "Tags": [{"Key": "team", "Value": "a"}]
            }],
            "GroupDetailList": [{"GroupName": "g", "GroupPolicyList": [{"PolicyName": "gp", "PolicyDocument": serde_json::from_str::<Value>(allow).unwrap()}]}],
            "RoleDetailList": [{"RoleName": "r", "RoleId": "AROAX", "Arn": "arn:aws:iam::111111111111:role/r", "RolePolicyList": ""}],
            "Policies": [{"Arn": "arn:aws:iam::111111111111:policy/m", "PolicyVersionList": [
                {"Document": "{}", "IsDefaultVersion": "false"},
                {"Document": encoded, "IsDefaultVersion": "true"}]}]
        });
        let s = subjects_from_details(&details);
        assert_eq!(s.len(), 2);
        let sources: Vec<&str> = s[0].policies.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(
            sources,
            [
                "user/u/in",
                "arn:aws:iam::111111111111:policy/m",
                "group/g/gp"
            ]
        );
        assert!(s[0]
            .policies
            .iter()
            .all(|(_, d)| serde_json::from_str::<Value>(d).is_ok()));
        assert_eq!(s[0].tags, [("team".to_string(), "a".to_string())]);
        assert!(s[0].boundary.is_none());
        assert_eq!(s[0].notes.len(), 2, "{:?}", s[0].notes);
        assert_eq!(s[1].arn, "arn:aws:iam::111111111111:role/r");
        assert!(s[1].policies.is_empty());
        assert_eq!(details_account(&details).as_deref(), Some("111111111111"));
    }
}
