//! `berth policy who-can --action ecr:PutImage --repository NAME`: every principal that is
//! allowed, decided by the engine from the identity, repository and registry policies:
//! the account's root user, its users (with their groups' policies and boundaries) and
//! roles, and every principal the resource policies name (other accounts, `*`,
//! services). A principal allowed only under conditions is listed with the context keys
//! it depends on. The policies come from a data directory, from a running server (or
//! AWS) through its public APIs, or from files.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use berth_iam::policy::ast::PrincipalValue;
use berth_iam::{
    evaluate, Action, CompiledPolicy, Context, Decision, PolicyKind, PolicySet, Principal,
    PrincipalKind, Request,
};
use clap::Args;

use super::estate::{self, compile, Estate, Repo, Subject};

#[derive(Debug, Args)]
pub struct WhoCanArgs {
    /// The ECR action (`ecr:PutImage`).
    #[arg(long)]
    action: String,
    /// The repository name.
    #[arg(long)]
    repository: String,
    /// The registry's account (data directory: default its first account; files:
    /// default the authorization details' account, else 111111111111).
    #[arg(long)]
    account: Option<String>,
    #[command(flatten)]
    source: SourceArgs,
    /// The repository's policy file (offline).
    #[arg(long, value_name = "FILE")]
    repository_policy: Option<String>,
    /// The registry policy file (offline).
    #[arg(long, value_name = "FILE")]
    registry_policy: Option<String>,
    /// The output of `aws iam get-account-authorization-details` (offline): the
    /// account's users, groups, roles and managed policies.
    #[arg(long, value_name = "FILE")]
    authorization_details: Option<String>,
    /// A principal and an identity policy file of it, ARN=FILE (offline; repeatable).
    #[arg(long = "identity", value_name = "ARN=FILE")]
    identities: Vec<String>,
    /// A tag of the repository, KEY=VALUE (offline; repeatable).
    #[arg(long = "repository-tag", value_name = "KEY=VALUE")]
    repository_tags: Vec<String>,
}

/// Where the analysis commands read the account from, besides files.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// A Berth data directory (a running server's too).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// A running server (or AWS): its policies are read with signed API calls
    /// (iam:GetAccountAuthorizationDetails, ecr:DescribeRepositories,
    /// ecr:GetRepositoryPolicy, ecr:ListTagsForResource, ecr:GetRegistryPolicy) as the
    /// credentials of the environment or the shared credentials file. Default:
    /// AWS_ENDPOINT_URL when no other source is given.
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// The shared credentials file's profile (default: AWS_PROFILE, else `default`).
    #[arg(long)]
    pub profile: Option<String>,
    /// Region of the repository ARNs (and of the requests): default AWS_REGION,
    /// AWS_DEFAULT_REGION, else us-east-1.
    #[arg(long)]
    pub region: Option<String>,
}

impl SourceArgs {
    /// `--endpoint-url`, else AWS_ENDPOINT_URL when nothing else names a source.
    pub fn endpoint(&self, files: bool) -> Option<String> {
        self.endpoint_url.clone().or_else(|| {
            if files || self.data_dir.is_some() {
                return None;
            }
            std::env::var("AWS_ENDPOINT_URL")
                .ok()
                .filter(|v| !v.is_empty())
        })
    }
}

/// The policy that stands for "whatever its own account's policies allow".
fn allow_all() -> Arc<CompiledPolicy> {
    compile(
        "its own policies",
        PolicyKind::Identity,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
    )
    .expect("a valid policy")
}

/// Keys whose absence is a fact when the principal is one the data holds: its tags,
/// names and account, and the repository's tags and account.
fn known_when_absent(key: &str, principal_known: bool) -> bool {
    let k = key.to_ascii_lowercase();
    let resource = k.starts_with("aws:resourcetag/")
        || k.starts_with("ecr:resourcetag/")
        || k == "aws:resourceaccount";
    let principal = k.starts_with("aws:principaltag/")
        || matches!(
            k.as_str(),
            "aws:principalarn"
                | "aws:principalaccount"
                | "aws:principaltype"
                | "aws:username"
                | "aws:userid"
        );
    resource || (principal_known && principal)
}

/// How a principal fares: allowed (""), allowed depending on context keys
/// (" when KEY, ..."), or not at all.
fn verdict(
    principal: &Principal,
    principal_known: bool,
    context: &Context,
    action: &Action,
    resource: &str,
    account: &str,
    set: &PolicySet,
) -> Option<String> {
    let req = Request {
        principal,
        action,
        resource,
        resource_account: account,
        context,
    };
    let e = evaluate(&req, set);
    match e.decision {
        Decision::Allow => Some(String::new()),
        Decision::ImplicitDeny => {
            let unknown: Vec<&str> = e
                .missing_context_keys
                .iter()
                .map(String::as_str)
                .filter(|k| !known_when_absent(k, principal_known))
                .collect();
            (!unknown.is_empty()).then(|| format!(" when {}", unknown.join(", ")))
        }
        _ => None,
    }
}

/// Every principal allowed `action` on `repo`, one line each.
pub fn who_can(estate: &Estate, repo: &Repo, action: &str) -> Result<Vec<String>, String> {
    let resource_policies = estate.resource_policies(repo)?;
    let resource = estate.repo_arn(&repo.name);
    let account = estate.account.as_str();
    let action = Action::new(action);
    let base = estate.resource_context(repo);
    let mut out = Vec::new();
    let consider = |who: &str,
                    principal: &Principal,
                    known: bool,
                    ctx: &Context,
                    identity: &[Arc<CompiledPolicy>],
                    boundary: Option<&CompiledPolicy>,
                    note: &str,
                    out: &mut Vec<String>| {
        let set = PolicySet {
            identity,
            resource: &resource_policies,
            boundary,
            session: None,
        };
        if let Some(when) = verdict(principal, known, ctx, &action, &resource, account, &set) {
            out.push(format!("{who}{when}{note}"));
        }
    };

    // The account's root user, then its users and roles.
    let root = Subject {
        arn: format!("arn:aws:iam::{account}:root"),
        ..Subject::default()
    };
    let mut ctx = base.clone();
    let p = root.principal(&mut ctx)?;
    consider(&root.arn, &p, true, &ctx, &[], None, "", &mut out);
    for s in estate.subjects.iter().flatten() {
        let mut ctx = base.clone();
        let p = s.principal(&mut ctx)?;
        let note = if s.notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", s.notes.join("; "))
        };
        let identity = s.identity()?;
        let boundary = s.boundary()?;
        consider(
            &s.arn,
            &p,
            true,
            &ctx,
            &identity,
            boundary.as_deref(),
            &note,
            &mut out,
        );
    }

    // Principals the resource policies name that are not among those.
    let mut named: Vec<String> = Vec::new();
    let texts = [
        (PolicyKind::Repository, repo.policy.as_deref()),
        (PolicyKind::Registry, estate.registry_policy.as_deref()),
    ];
    for (kind, text) in texts {
        let Some(text) = text else { continue };
        let policy = berth_iam::parse_policy(text, kind).map_err(|e| e.to_string())?;
        for st in &policy.statements {
            match st.principal.as_ref().map(|p| &p.value) {
                Some(PrincipalValue::Star) => named.push("*".into()),
                Some(PrincipalValue::Map(m)) => {
                    named.extend(m.iter().flat_map(|(_, vs)| vs.iter().cloned()))
                }
                None => {}
            }
        }
    }
    named.sort();
    named.dedup();
    let allow_all = allow_all();
    let known = |arn: &str| {
        estate
            .subjects
            .iter()
            .flatten()
            .any(|s| s.arn.eq_ignore_ascii_case(arn))
    };
    for who in named {
        if who == "*" {
            // Stand-ins: the repository's facts are known, nothing of the caller, so
            // conditions on the caller show as keys.
            let anyone = Principal::from_arn("*")?;
            let none = base.clone();
            consider(
                "* (anyone, even unauthenticated)",
                &anyone,
                false,
                &none,
                &[],
                None,
                "",
                &mut out,
            );
            let outsider = Principal::from_arn("arn:aws:iam::000000000000:user/anyone")?;
            let all = [allow_all.clone()];
            consider(
                "* (any AWS principal)",
                &outsider,
                false,
                &none,
                &all,
                None,
                " (if its own policies allow)",
                &mut out,
            );
            continue;
        }
        let Ok(p) = Principal::from_arn(&who) else {
            continue;
        };
        let own = &*p.account == account;
        if own && (p.kind == PrincipalKind::Root || known(&who)) {
            continue; // considered above
        }
        let mut ctx = base.clone();
        let mut p = p;
        p.settle_context(&mut ctx);
        let (identity, note): (Vec<Arc<CompiledPolicy>>, &str) = match p.kind {
            PrincipalKind::Service => (Vec::new(), ""),
            _ if !own => (vec![allow_all.clone()], " (if its own policies allow)"),
            _ if estate.subjects.is_some() => (Vec::new(), " (not an identity of the account)"),
            _ => (Vec::new(), " (unless its own policies deny)"),
        };
        consider(
            &who,
            &p,
            own && estate.subjects.is_some(),
            &ctx,
            &identity,
            None,
            note,
            &mut out,
        );
    }
    Ok(out)
}

fn key_value(s: &str, what: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{what} {s:?}: write KEY=VALUE"))
}

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))
}

/// The account described by policy files.
fn from_files(a: &WhoCanArgs, region: String) -> Result<Estate, String> {
    let details = a
        .authorization_details
        .as_deref()
        .map(|f| {
            serde_json::from_str::<serde_json::Value>(&read(f)?)
                .map_err(|e| format!("{f}: not JSON: {e}"))
        })
        .transpose()?;
    let mut subjects = details.as_ref().map(estate::subjects_from_details);
    for spec in &a.identities {
        let (arn, file) = key_value(spec, "--identity")?;
        let doc = read(&file)?;
        let all = subjects.get_or_insert_with(Vec::new);
        match all.iter_mut().find(|s| s.arn.eq_ignore_ascii_case(&arn)) {
            Some(s) => s.policies.push((file, doc)),
            None => all.push(Subject {
                arn,
                policies: vec![(file, doc)],
                ..Subject::default()
            }),
        }
    }
    let account = a
        .account
        .clone()
        .or_else(|| details.as_ref().and_then(estate::details_account))
        .unwrap_or_else(|| "111111111111".into());
    Ok(Estate {
        account,
        region,
        subjects,
        registry_policy: a.registry_policy.as_deref().map(read).transpose()?,
        repositories: vec![Repo {
            name: a.repository.clone(),
            policy: a.repository_policy.as_deref().map(read).transpose()?,
            tags: a
                .repository_tags
                .iter()
                .map(|t| key_value(t, "--repository-tag"))
                .collect::<Result<_, _>>()?,
        }],
    })
}

pub fn run(a: WhoCanArgs) -> Result<ExitCode, String> {
    let offline = a.repository_policy.is_some()
        || a.registry_policy.is_some()
        || a.authorization_details.is_some()
        || !a.identities.is_empty()
        || !a.repository_tags.is_empty();
    let region = super::remote::region(a.source.region.as_deref());
    let endpoint = a.source.endpoint(offline);
    let estate = match (&a.source.data_dir, &endpoint, offline) {
        (Some(dir), None, false) => {
            let mut all = super::runtime()?.block_on(estate::from_data_dir(
                dir,
                &region,
                a.account.as_deref(),
                Some(&a.repository),
            ))?;
            // Without --account: the first account holding the repository.
            let i = all
                .iter()
                .position(|e| !e.repositories.is_empty())
                .ok_or_else(|| format!("no repository {} in {}", a.repository, dir.display()))?;
            all.swap_remove(i)
        }
        (None, Some(url), false) => {
            let creds = super::remote::credentials(a.source.profile.as_deref())?;
            let remote = super::remote::Remote::new(url, creds, region)?;
            let estate = estate::from_remote(&remote, Some(&a.repository))?;
            if a.account.as_ref().is_some_and(|x| *x != estate.account) {
                return Err(format!(
                    "--account: the credentials belong to account {}; a server is analysed as its own account",
                    estate.account
                ));
            }
            estate
        }
        (None, None, true) => from_files(&a, region)?,
        (None, None, false) => {
            return Err(
                "give --data-dir, --endpoint-url, or policy files (--repository-policy, --registry-policy, --authorization-details, --identity)".into(),
            )
        }
        _ => return Err("give one source: --data-dir, --endpoint-url, or policy files".into()),
    };
    let repo = estate
        .repositories
        .iter()
        .find(|r| r.name == a.repository)
        .ok_or_else(|| {
            format!(
                "no repository {} in account {}",
                a.repository, estate.account
            )
        })?;
    let lines = who_can(&estate, repo, &a.action)?;
    if lines.is_empty() {
        eprintln!("nobody may {} on {}", a.action, estate.repo_arn(&repo.name));
    }
    for l in lines {
        println!("{l}");
    }
    Ok(ExitCode::SUCCESS)
}
