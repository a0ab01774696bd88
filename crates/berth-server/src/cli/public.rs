//! `berth policy public`: repositories anyone can read or write — decided by the engine
//! for an anonymous caller and for a caller from an unrelated account whose own policies
//! allow everything, with no request context (so a narrowing condition keeps a
//! repository private). Offline on repository policy files, or on a data directory
//! (a running server's too: the database takes concurrent readers).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use berth_iam::{
    decide, Action, CompiledPolicy, Context, Decision, PolicyKind, PolicySet, Principal, Request,
};
use berth_store::{RegistryStore, Store};
use clap::Args;

#[derive(Debug, Args)]
pub struct PublicArgs {
    /// A Berth data directory: every repository of every account, with the registry policies.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Region of the repository ARNs.
    #[arg(long, default_value = "us-east-1")]
    region: String,
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
    let ctx = Context::new();
    list.iter()
        .filter(|a| {
            let action = Action::new(&format!("ecr:{a}"));
            callers.iter().any(|(p, identity)| {
                let req = Request {
                    principal: p,
                    action: &action,
                    resource,
                    resource_account: account,
                    context: &ctx,
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

fn report(
    name: &str,
    resource: &str,
    account: &str,
    policies: &[Arc<CompiledPolicy>],
    out: &mut Vec<String>,
) {
    let read = open_to_anyone(READ, resource, account, policies);
    let write = open_to_anyone(WRITE, resource, account, policies);
    if !read.is_empty() {
        out.push(format!("{name}: readable by anyone ({})", read.join(", ")));
    }
    if !write.is_empty() {
        out.push(format!("{name}: writable by anyone ({})", write.join(", ")));
    }
}

pub fn run(a: PublicArgs) -> Result<ExitCode, String> {
    let mut out = Vec::new();
    for file in &a.files {
        let src = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
        let policy = CompiledPolicy::parse(file, PolicyKind::Repository, &src)
            .map_err(|e| format!("{file}: {e}"))?;
        let stem = std::path::Path::new(file)
            .file_stem()
            .map_or("repo".into(), |s| s.to_string_lossy().to_lowercase());
        let resource = format!("arn:aws:ecr:{}:111111111111:repository/{stem}", a.region);
        report(
            file,
            &resource,
            "111111111111",
            &[Arc::new(policy)],
            &mut out,
        );
    }
    if let Some(dir) = &a.data_dir {
        super::runtime()?.block_on(async {
            let store = crate::serve::open_store(dir).await?;
            for account in store.accounts().await.map_err(|e| e.to_string())? {
                let registry = store
                    .registry_policy(&account.id)
                    .await
                    .map_err(|e| e.to_string())?;
                let registry = registry
                    .map(|t| {
                        CompiledPolicy::parse("registry policy", PolicyKind::Registry, &t)
                            .map(Arc::new)
                    })
                    .transpose()
                    .map_err(|e| format!("account {}: registry policy: {e}", account.id))?;
                for repo in store
                    .repositories(&account.id)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    let mut policies: Vec<Arc<CompiledPolicy>> = registry.iter().cloned().collect();
                    if let Some(t) = &repo.policy {
                        let p = CompiledPolicy::parse(&repo.name, PolicyKind::Repository, t)
                            .map_err(|e| format!("{}/{}: {e}", account.id, repo.name))?;
                        policies.push(Arc::new(p));
                    }
                    let resource = repo.arn(&a.region);
                    report(
                        &format!("{}/{}", account.id, repo.name),
                        &resource,
                        &account.id,
                        &policies,
                        &mut out,
                    );
                }
            }
            Ok::<_, String>(())
        })?;
    }
    if a.files.is_empty() && a.data_dir.is_none() {
        return Err("give repository policy files or --data-dir".into());
    }
    for line in &out {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
