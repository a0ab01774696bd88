//! `berth policy who-can --action ecr:PutImage --repository NAME`: every principal that is
//! allowed, computed by the engine from the stored identity, repository and registry
//! policies of a data directory (a running server's too): the account's root user, its
//! users (with their groups' policies and boundaries) and roles, and every principal the
//! resource policies name (other accounts, `*`, services). A principal allowed only under
//! conditions is listed with the context keys it depends on.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use berth_iam::policy::ast::PrincipalValue;
use berth_iam::{
    evaluate, Action, CompiledPolicy, Context, Decision, PolicyKind, PolicySet, Principal, Request,
};
use berth_store::{EntityKind, RegistryStore, Store};
use clap::Args;

#[derive(Debug, Args)]
pub struct WhoCanArgs {
    /// The ECR action (`ecr:PutImage`).
    #[arg(long)]
    action: String,
    /// The repository name.
    #[arg(long)]
    repository: String,
    /// The registry's account (default: the data directory's default account).
    #[arg(long)]
    account: Option<String>,
    #[arg(long, value_name = "DIR", default_value = "./berth-data")]
    data_dir: PathBuf,
    #[arg(long, default_value = "us-east-1")]
    region: String,
}

fn compile(name: &str, kind: PolicyKind, text: &str) -> Result<Arc<CompiledPolicy>, String> {
    CompiledPolicy::parse(name, kind, text)
        .map(Arc::new)
        .map_err(|e| format!("{name}: {e}"))
}

/// How a principal fares: allowed, allowed depending on context keys, or not at all.
fn verdict(
    principal: &Principal,
    action: &Action,
    resource: &str,
    account: &str,
    set: &PolicySet,
) -> Option<String> {
    let ctx = Context::new();
    let req = Request {
        principal,
        action,
        resource,
        resource_account: account,
        context: &ctx,
    };
    let e = evaluate(&req, set);
    match e.decision {
        Decision::Allow => Some(String::new()),
        Decision::ImplicitDeny if !e.missing_context_keys.is_empty() => {
            Some(format!(" when {}", e.missing_context_keys.join(", ")))
        }
        _ => None,
    }
}

pub fn run(a: WhoCanArgs) -> Result<ExitCode, String> {
    let lines = super::runtime()?.block_on(async {
        let store = crate::serve::open_store(&a.data_dir).await?;
        let e = |e: berth_store::StoreError| e.to_string();
        let accounts = store.accounts().await.map_err(e)?;
        let account = match &a.account {
            Some(id) => id.clone(),
            None => accounts.first().map(|x| x.id.clone()).ok_or("the data directory has no account")?,
        };
        let repo = store
            .repository(&account, &a.repository)
            .await
            .map_err(e)?
            .ok_or_else(|| format!("no repository {} in account {account}", a.repository))?;
        let mut resource_texts = Vec::new();
        if let Some(t) = &repo.policy {
            resource_texts.push((PolicyKind::Repository, t.clone()));
        }
        if let Some(t) = store.registry_policy(&account).await.map_err(e)? {
            resource_texts.push((PolicyKind::Registry, t));
        }
        let resource_policies: Vec<Arc<CompiledPolicy>> = resource_texts
            .iter()
            .map(|(k, t)| compile(k.name(), *k, t))
            .collect::<Result<_, _>>()?;
        let resource = repo.arn(&a.region);
        let action = Action::new(&a.action);
        let mut out = Vec::new();
        let mut consider = |who: String, principal: Principal, identity: Vec<Arc<CompiledPolicy>>, boundary: Option<Arc<CompiledPolicy>>, note: &str| {
            let set = PolicySet { identity: &identity, resource: &resource_policies, boundary: boundary.as_deref(), session: None };
            if let Some(when) = verdict(&principal, &action, &resource, &account, &set) {
                out.push(format!("{who}{when}{note}"));
            }
        };
        // The account's own identities.
        consider(format!("arn:aws:iam::{account}:root"), Principal::from_arn(&account).map_err(|e| e.to_string())?, Vec::new(), None, "");
        for kind in [EntityKind::User, EntityKind::Role] {
            for entity in store.entities(&account, kind, "/").await.map_err(e)? {
                let docs = store.identity_documents(&account, kind, &entity.name).await.map_err(e)?;
                let identity = docs
                    .policies
                    .iter()
                    .map(|p| compile(&p.source, PolicyKind::Identity, &p.document))
                    .collect::<Result<Vec<_>, _>>()?;
                let boundary = docs.boundary.as_ref().map(|b| compile(&b.source, PolicyKind::Boundary, &b.document)).transpose()?;
                let mut principal = Principal::from_arn(&entity.arn()).map_err(|e| e.to_string())?;
                principal.unique_id = Some(entity.unique_id.as_str().into());
                consider(entity.arn(), principal, identity, boundary, "");
            }
        }
        // Principals the resource policies name, outside the account: their own account's
        // policies must allow too, which this data cannot see.
        let allow_all = compile("their own policies", PolicyKind::Identity, r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#)?;
        let mut named: Vec<String> = Vec::new();
        for (kind, text) in &resource_texts {
            let policy = berth_iam::parse_policy(text, *kind).map_err(|e| e.to_string())?;
            for st in &policy.statements {
                match st.principal.as_ref().map(|p| &p.value) {
                    Some(PrincipalValue::Star) => named.push("*".into()),
                    Some(PrincipalValue::Map(m)) => named.extend(m.iter().flat_map(|(_, vs)| vs.iter().cloned())),
                    None => {}
                }
            }
        }
        named.sort();
        named.dedup();
        for who in named {
            if who == "*" {
                let anyone = Principal::from_arn("*").map_err(|e| e.to_string())?;
                consider("* (anyone, even unauthenticated)".into(), anyone, Vec::new(), None, "");
                let outsider = Principal::from_arn("arn:aws:iam::000000000000:user/anyone").map_err(|e| e.to_string())?;
                consider("* (any AWS principal)".into(), outsider, vec![allow_all.clone()], None, " (if its own policies allow)");
                continue;
            }
            let Ok(p) = Principal::from_arn(&who) else { continue };
            if &*p.account == account.as_str() {
                continue; // the account's identities were considered above
            }
            let service = p.kind == berth_iam::PrincipalKind::Service;
            let note = if service { "" } else { " (if its own policies allow)" };
            let identity = if service { Vec::new() } else { vec![allow_all.clone()] };
            consider(who.clone(), p, identity, None, note);
        }
        Ok::<_, String>(out)
    })?;
    for l in lines {
        println!("{l}");
    }
    Ok(ExitCode::SUCCESS)
}
