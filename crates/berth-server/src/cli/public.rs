//! `berth policy public`: repositories anyone can read or write — decided by the engine
//! for an anonymous caller and for a caller from an unrelated account whose own policies
//! allow everything, knowing nothing of the caller (so a condition on the caller keeps a
//! repository private; the repository's tags and account are known). Offline on
//! repository policy files, on a data directory (a running server's too: the database
//! takes concurrent readers), or against a running server (or AWS) through its APIs.

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
        // (keys, actions): the actions anyone may perform, by what they depend on.
        let open = |list: &[&str]| -> Vec<(Vec<String>, Vec<String>)> {
            let mut groups: Vec<(Vec<String>, Vec<String>)> = Vec::new();
            for a in list.iter().map(|a| format!("ecr:{a}")) {
                let action = Action::new(&a);
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
                let anonymous = for_anyone(judge(&case(
                    &anyone,
                    Caller::Anonymous,
                    &anonymous_ctx,
                    &[],
                )));
                let stranger =
                    for_anyone(judge(&case(&outsider, Caller::Unknown, &base, &allow_all)));
                let keys = match (anonymous, stranger) {
                    (Some(a), Some(b)) if b.len() < a.len() => b,
                    (Some(a), _) => a,
                    (None, Some(b)) => b,
                    (None, None) => continue,
                };
                match groups.iter_mut().find(|(k, _)| *k == keys) {
                    Some((_, actions)) => actions.push(a),
                    None => groups.push((keys, vec![a])),
                }
            }
            groups
        };
        let name = if label.is_empty() {
            format!("{}/{}", estate.account, repo.name)
        } else {
            label.to_string()
        };
        for (what, list) in [("readable", READ), ("writable", WRITE)] {
            for (keys, actions) in open(list) {
                out.push(format!(
                    "{name}: {what} by anyone{} ({})",
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
            ..Estate::default()
        };
        report(&estate, file, &mut out)?;
    }
    if let Some(dir) = &a.source.data_dir {
        let all =
            super::runtime()?.block_on(estate::from_data_dir(dir, &region, None, None, false))?;
        for estate in &all {
            report(estate, "", &mut out)?;
        }
    }
    if let Some(remote) = &remote {
        report(&estate::from_remote(remote, None, false)?, "", &mut out)?;
    }
    if a.files.is_empty() && a.source.data_dir.is_none() && remote.is_none() {
        return Err("give repository policy files, --data-dir, --endpoint-url or --aws".into());
    }
    for line in &out {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
