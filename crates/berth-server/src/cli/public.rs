//! `berth policy public`: repositories anyone can read or write — decided by the engine
//! for an anonymous caller and for a caller from an unrelated account whose own policies
//! allow everything, knowing nothing of the caller (so a condition on the caller keeps a
//! repository private; the repository's tags and account are known). Offline on
//! repository policy files, on a data directory (a running server's too: the database
//! takes concurrent readers), or against a running server (or AWS) through its APIs.

use std::process::ExitCode;
use std::sync::Arc;

use berth_iam::{
    decide, Action, CompiledPolicy, Context, Decision, PolicyKind, PolicySet, Principal, Request,
};
use clap::Args;

use super::estate::{Estate, Repo};

#[derive(Debug, Args)]
pub struct PublicArgs {
    #[command(flatten)]
    source: super::whocan::SourceArgs,
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
/// An account no policy names.
const OUTSIDER: &str = "arn:aws:iam::000000000000:user/anyone";

/// The actions of `list` anyone may perform on a repository.
fn open_to_anyone(
    list: &[&str],
    resource: &str,
    account: &str,
    policies: &[Arc<CompiledPolicy>],
    ctx: &Context,
) -> Vec<String> {
    let allow_all = Arc::new(
        CompiledPolicy::parse(
            "outsider",
            PolicyKind::Identity,
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
        )
        .expect("a valid policy"),
    );
    let callers = [
        (Principal::from_arn("*").expect("anonymous"), Vec::new()),
        (
            Principal::from_arn(OUTSIDER).expect("a user ARN"),
            vec![allow_all],
        ),
    ];
    list.iter()
        .filter(|a| {
            let action = Action::new(&format!("ecr:{a}"));
            callers.iter().any(|(p, identity)| {
                let req = Request {
                    principal: p,
                    action: &action,
                    resource,
                    resource_account: account,
                    context: ctx,
                };
                let set = PolicySet {
                    identity,
                    resource: policies,
                    boundary: None,
                    session: None,
                };
                decide(&req, &set) == Decision::Allow
            })
        })
        .map(|a| format!("ecr:{a}"))
        .collect()
}

fn report(estate: &Estate, label: &str, out: &mut Vec<String>) -> Result<(), String> {
    for repo in &estate.repositories {
        let policies = estate.resource_policies(repo)?;
        let resource = estate.repo_arn(&repo.name);
        // The repository's own facts (account, tags) are known; nothing of the caller is.
        let ctx = estate.resource_context(repo);
        let name = if label.is_empty() {
            format!("{}/{}", estate.account, repo.name)
        } else {
            label.to_string()
        };
        let read = open_to_anyone(READ, &resource, &estate.account, &policies, &ctx);
        let write = open_to_anyone(WRITE, &resource, &estate.account, &policies, &ctx);
        if !read.is_empty() {
            out.push(format!("{name}: readable by anyone ({})", read.join(", ")));
        }
        if !write.is_empty() {
            out.push(format!("{name}: writable by anyone ({})", write.join(", ")));
        }
    }
    Ok(())
}

pub fn run(a: PublicArgs) -> Result<ExitCode, String> {
    let region = super::remote::region(a.source.region.as_deref());
    let endpoint = a.source.endpoint(!a.files.is_empty());
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
            super::runtime()?.block_on(super::estate::from_data_dir(dir, &region, None, None))?;
        for estate in &all {
            report(estate, "", &mut out)?;
        }
    }
    if let Some(url) = &endpoint {
        let creds = super::remote::credentials(a.source.profile.as_deref())?;
        let remote = super::remote::Remote::new(url, creds, region.clone())?;
        report(&super::estate::from_remote(&remote, None)?, "", &mut out)?;
    }
    if a.files.is_empty() && a.source.data_dir.is_none() && endpoint.is_none() {
        return Err("give repository policy files, --data-dir or --endpoint-url".into());
    }
    for line in &out {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
