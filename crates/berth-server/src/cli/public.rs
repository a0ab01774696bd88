//! `berth policy public`: repositories anyone can read or write — decided by the engine
//! for a caller from an unrelated account whose own policies allow everything, knowing
//! nothing of the caller (so a condition on the caller keeps a repository private; the
//! repository's tags and account are known): "anyone signed in", as ECR, which never sees
//! a request without credentials. Where the registry serves anonymous pulls
//! (`--anonymous-pull`, or `anonymous_pull` in `--config`), also the pulls the anonymous
//! caller is allowed ("pullable without credentials"). Offline on repository policy
//! files, on a data directory (a running server's too: the database takes concurrent
//! readers), or against a running server (or AWS) through its APIs.

use std::process::ExitCode;

use berth_iam::{Action, Principal};
use clap::Args;

use super::analysis::{judge, when, Caller, Case, Verdict};
use super::estate::{self, Estate, Repo, SourceArgs};

#[derive(Debug, Args)]
pub struct PublicArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Repository policy files (each read as the policy of a repository named after the file).
    files: Vec<String>,
}

const READ: &[&str] = &[
    "BatchGetImage",
    "GetDownloadUrlForLayer",
    "BatchCheckLayerAvailability",
    "ListImages",
    "DescribeImages",
];
const WRITE: &[&str] = &[
    "PutImage",
    "InitiateLayerUpload",
    "UploadLayerPart",
    "CompleteLayerUpload",
    "BatchDeleteImage",
    "DeleteRepository",
    "SetRepositoryPolicy",
];
/// The actions of the `/v2` pulls an anonymous caller may be let through (see
/// `crate::oci::anonymous`): manifests and referrers, blobs (GET and HEAD), tags.
pub const ANONYMOUS_PULLS: &[&str] = &[
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchCheckLayerAvailability",
    "ecr:ListImages",
];

/// Whether a condition on this key keeps strangers out. Transport, time, region, MFA,
/// user agent or referer (which the caller sets) do not: a repository open to anyone
/// under such a condition is open to anyone.
fn narrows(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    let open = [
        "aws:securetransport",
        "aws:currenttime",
        "aws:epochtime",
        "aws:requestedregion",
        "aws:multifactorauthpresent",
        "aws:multifactorauthage",
        "aws:tokenissuetime",
        "aws:useragent",
        "aws:referer",
        "aws:tagkeys",
    ];
    !(open.contains(&k.as_str()) || k.starts_with("aws:requesttag/"))
}

/// The least a stranger needs for `v` to let it in: `Some([])` when nothing, `Some(keys)`
/// when only non-narrowing keys, `None` when a narrowing one (or no way at all).
fn for_anyone(v: Verdict) -> Option<Vec<String>> {
    v.filter(|keys| !keys.iter().any(|k| narrows(k)))
}

fn report(estate: &Estate, label: &str, out: &mut Vec<String>) -> Result<(), String> {
    let mut anyone = Principal::from_arn("*")?;
    let (outsider, allow_all) = estate::outsider();
    let allow_all = [allow_all];
    for repo in &estate.repositories {
        let policies = estate.resource_sources(repo)?;
        let resource = estate.repo_arn(&repo.name);
        // The repository's own facts (account, tags) are known; nothing of the caller is.
        let base = estate.resource_context(repo);
        let mut anonymous_ctx = base.clone();
        anyone.settle_context(&mut anonymous_ctx);
        // (keys, actions): the actions `who` may perform, by what they depend on.
        let open = |actions: &[String], anonymous: bool| {
            let mut groups: Vec<(Vec<String>, Vec<String>)> = Vec::new();
            for a in actions {
                let action = Action::new(a);
                let case = |principal, caller, context, identity| Case {
                    principal,
                    caller,
                    context,
                    action: &action,
                    resource: &resource,
                    resource_account: &estate.account,
                    identity,
                    boundary: None,
                    resource_policies: &policies,
                    resource_must_allow: false,
                };
                let verdict = if anonymous {
                    judge(&case(&anyone, Caller::Anonymous, &anonymous_ctx, &[]))
                } else {
                    judge(&case(&outsider, Caller::Unknown, &base, &allow_all))
                };
                let Some(keys) = for_anyone(verdict) else {
                    continue;
                };
                match groups.iter_mut().find(|(k, _)| *k == keys) {
                    Some((_, actions)) => actions.push(a.clone()),
                    None => groups.push((keys, vec![a.clone()])),
                }
            }
            groups
        };
        let name = if label.is_empty() {
            format!("{}/{}", estate.account, repo.name)
        } else {
            label.to_string()
        };
        let ecr =
            |list: &[&str]| -> Vec<String> { list.iter().map(|a| format!("ecr:{a}")).collect() };
        let anonymous_pulls: Vec<String> = ANONYMOUS_PULLS.iter().map(|a| a.to_string()).collect();
        let mut lines = vec![
            ("readable by anyone signed in", open(&ecr(READ), false)),
            ("writable by anyone signed in", open(&ecr(WRITE), false)),
        ];
        if estate.anonymous_pull {
            lines.push(("pullable without credentials", open(&anonymous_pulls, true)));
        }
        for (what, groups) in lines {
            for (keys, actions) in groups {
                out.push(format!(
                    "{name}: {what}{} ({})",
                    when(&keys),
                    actions.join(", ")
                ));
            }
        }
    }
    Ok(())
}

pub fn run(a: PublicArgs) -> Result<ExitCode, String> {
    let region = a.source.region();
    let anonymous_pull = a.source.anonymous_pull()?;
    let remote = a.source.remote(!a.files.is_empty())?;
    let mut out = Vec::new();
    for file in &a.files {
        let src = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
        let stem = std::path::Path::new(file)
            .file_stem()
            .map_or("repo".into(), |s| s.to_string_lossy().to_lowercase());
        let estate = Estate {
            account: "111111111111".into(),
            region: region.clone(),
            repositories: vec![Repo {
                name: stem,
                policy: Some(src),
                tags: Vec::new(),
            }],
            anonymous_pull,
            ..Estate::default()
        };
        report(&estate, file, &mut out)?;
    }
    if let Some(dir) = &a.source.data_dir {
        let all =
            super::runtime()?.block_on(estate::from_data_dir(dir, &region, None, None, false))?;
        for estate in &all {
            let estate = Estate {
                anonymous_pull,
                ..estate.clone()
            };
            report(&estate, "", &mut out)?;
        }
    }
    if let Some(remote) = &remote {
        let estate = Estate {
            anonymous_pull,
            ..estate::from_remote(remote, None, false)?
        };
        report(&estate, "", &mut out)?;
    }
    if a.files.is_empty() && a.source.data_dir.is_none() && remote.is_none() {
        return Err("give repository policy files, --data-dir, --endpoint-url or --aws".into());
    }
    for line in &out {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
