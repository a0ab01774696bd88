//! `berth policy who-can --action ecr:PutImage --repository NAME`: every principal that is
//! allowed, decided by the engine from the identity, repository and registry policies:
//! the account's root user, its users (with their groups' policies and boundaries) and
//! roles, and every principal the resource policies name (other accounts, `*`,
//! services). A principal allowed only when something a request carries says so (its
//! source address, its organization, …) is listed with those context keys. The policies
//! come from a data directory, from a running server (or AWS) through its public APIs,
//! or from files. `*` is listed as "any AWS principal"; as "anyone, even
//! unauthenticated" too only for a registry that serves anonymous pulls
//! (`--anonymous-pull`, or `anonymous_pull` in `--config`) and an action of those pulls.

use std::process::ExitCode;

use berth_iam::policy::ast::{Effect, PrincipalValue};
use berth_iam::{Action, Context, PolicyKind, Principal, PrincipalKind};
use clap::Args;

use super::analysis::{judge, union, when, Caller, Case, Source};
use super::estate::{self, Estate, Repo, SourceArgs, Subject};

#[derive(Debug, Args)]
pub struct WhoCanArgs {
    /// The ECR action (`ecr:PutImage`).
    #[arg(long)]
    action: String,
    /// The repository name.
    #[arg(long)]
    repository: String,
    /// The registry's account (data directory: default the first account holding the
    /// repository; files: default the authorization details' account, else 111111111111).
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

/// One way to be allowed: who, the unknown keys it depends on, and a note after them.
struct Grant {
    who: String,
    keys: Vec<String>,
    note: String,
    /// The data could not tell (printed `? WHO NOTE`).
    unread: bool,
    /// Whether it could take the road through a role (not the anonymous caller, not the
    /// stand-in for an account's unseen identities).
    can_assume: bool,
}

impl Grant {
    fn new(who: impl Into<String>, keys: Vec<String>, note: impl Into<String>) -> Grant {
        Grant {
            who: who.into(),
            keys,
            note: note.into(),
            unread: false,
            can_assume: true,
        }
    }

    fn unread(who: impl Into<String>, note: impl Into<String>) -> Grant {
        Grant {
            unread: true,
            ..Grant::new(who, Vec::new(), note)
        }
    }

    fn line(&self) -> String {
        if self.unread {
            format!("? {}{}", self.who, self.note)
        } else {
            format!("{}{}{}", self.who, when(&self.keys), self.note)
        }
    }

    /// Is it allowed in every case?
    fn plain(&self) -> bool {
        !self.unread && self.keys.is_empty()
    }
}

/// Principals a policy's statements name (`*` for everyone).
fn named_principals(sources: &[Source]) -> Vec<String> {
    let mut named: Vec<String> = Vec::new();
    for source in sources {
        for st in &source.policy.statements {
            // An Allow with NotPrincipal grants nothing (AWS does not support it): it
            // names no one worth asking about.
            if st.effect == Effect::Allow && st.principal.as_ref().is_some_and(|p| p.negated) {
                continue;
            }
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
    named
}

/// Everyone `resource_policies` and the account's identities allow `action` on
/// `resource`: the root user, the subjects, and the principals the resource policies
/// name. `must_allow`: the resource policy must allow on its own (trust policies).
fn allowed(
    estate: &Estate,
    action: &str,
    resource: &str,
    base: &Context,
    resource_policies: &[Source],
    must_allow: bool,
    skip: Option<&str>,
) -> Result<Vec<Grant>, String> {
    let action = Action::new(action);
    let decide = |principal: &Principal,
                  caller: Caller,
                  context: &Context,
                  identity: &[Source],
                  boundary: Option<&Source>| {
        judge(&Case {
            principal,
            caller,
            context,
            action: &action,
            resource,
            resource_account: &estate.account,
            identity,
            boundary,
            resource_policies,
            resource_must_allow: must_allow,
        })
    };
    let mut out: Vec<Grant> = Vec::new();
    let root = Subject {
        arn: format!("arn:aws:iam::{}:root", estate.account),
        complete: true,
        ..Subject::default()
    };
    for s in std::iter::once(&root).chain(estate.subjects.iter().flatten()) {
        if skip.is_some_and(|arn| arn.eq_ignore_ascii_case(&s.arn)) {
            continue;
        }
        let mut ctx = base.clone();
        let (p, caller) = s.principal(&mut ctx, estate.berth)?;
        let (identity, boundary) = match s.sources() {
            Ok(x) => x,
            Err(e) => {
                out.push(Grant::unread(
                    &s.arn,
                    format!(" (a policy could not be read: {e})"),
                ));
                continue;
            }
        };
        let notes = if s.notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", s.notes.join("; "))
        };
        match decide(&p, caller, &ctx, &identity, boundary.as_ref()) {
            Some(keys) => out.push(Grant::new(&s.arn, keys, notes)),
            None if !notes.is_empty() => out.push(Grant::unread(&s.arn, notes)),
            None => {}
        }
    }
    let (outsider, allow_all) = estate::outsider();
    let allow_all = [allow_all];
    let known = |arn: &str| {
        estate
            .subjects
            .iter()
            .flatten()
            .any(|s| s.arn.eq_ignore_ascii_case(arn))
    };
    for who in named_principals(resource_policies) {
        if who == "*" {
            let mut anyone = Principal::from_arn("*")?;
            let mut ctx = base.clone();
            anyone.settle_context(&mut ctx);
            // Callers without credentials reach only a registry that serves anonymous
            // pulls, and there only the pulls.
            let anonymous_reach = estate.anonymous_pull
                && super::public::ANONYMOUS_PULLS
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(&action.text));
            let anonymous = anonymous_reach
                .then(|| decide(&anyone, Caller::Anonymous, &ctx, &[], None))
                .flatten();
            if let Some(keys) = anonymous {
                out.push(Grant {
                    can_assume: false,
                    ..Grant::new("* (anyone, even unauthenticated)", keys, "")
                });
            }
            if let Some(keys) = decide(&outsider, Caller::Unknown, base, &allow_all, None) {
                out.push(Grant::new(
                    "* (any AWS principal)",
                    keys,
                    " (if its own policies allow)",
                ));
            }
            continue;
        }
        let Ok(mut p) = Principal::from_arn(&who) else {
            continue;
        };
        let own = *p.account == *estate.account;
        if own && (p.kind == PrincipalKind::Root || known(&who)) {
            continue; // considered above
        }
        let mut ctx = base.clone();
        p.settle_context(&mut ctx);
        let (identity, note): (&[Source], &str) = match p.kind {
            PrincipalKind::Service => (&[], ""),
            _ if !own => (&allow_all, " (if its own policies allow)"),
            _ if estate.all_identities => (&[], " (not an identity of the account)"),
            _ => (&[], " (unless its own policies deny)"),
        };
        if let Some(keys) = decide(&p, Caller::Unknown, &ctx, identity, None) {
            out.push(Grant::new(who, keys, note));
        }
    }
    // Without the account's identities, any of them might be allowed by its own policies.
    if !estate.all_identities {
        let mut someone = Principal::from_arn(&format!(
            "arn:aws:iam::{}:user/any-identity",
            estate.account
        ))?;
        let mut ctx = base.clone();
        someone.settle_context(&mut ctx);
        if let Some(keys) = decide(&someone, Caller::Unknown, &ctx, &allow_all, None) {
            out.push(Grant {
                can_assume: false,
                ..Grant::new(
                    format!("any identity of {}", estate.account),
                    keys,
                    " (if its own policies allow)",
                )
            });
        }
    }
    Ok(out)
}

/// Every principal allowed `action` on `repo`, one line each: directly, then through a
/// role it may assume (one step: `… via ROLE`). A principal whose policies the data
/// holds only in part, and which they do not allow, is listed with `? ` and what is
/// missing.
pub fn who_can(estate: &Estate, repo: &Repo, action: &str) -> Result<Vec<String>, String> {
    let resource_policies = estate.resource_sources(repo)?;
    let resource = estate.repo_arn(&repo.name);
    let base = estate.resource_context(repo);
    let direct = allowed(
        estate,
        action,
        &resource,
        &base,
        &resource_policies,
        false,
        None,
    )?;
    let mut out: Vec<String> = direct.iter().map(Grant::line).collect();
    // Who is allowed in every case needs no road through a role.
    let plainly: Vec<&str> = direct
        .iter()
        .filter(|g| g.plain())
        .map(|g| g.who.as_str())
        .collect();
    for role in estate.subjects.iter().flatten() {
        let Some(trust) = &role.trust_policy else {
            continue;
        };
        let Some(role_grant) = direct.iter().find(|g| !g.unread && g.who == role.arn) else {
            continue;
        };
        let trust = match Source::parse(
            &format!("{} trust policy", role.arn),
            PolicyKind::Trust,
            trust,
        ) {
            Ok(t) => [t],
            Err(e) => {
                out.push(format!(
                    "? via {} (its trust policy could not be read: {e})",
                    role.arn
                ));
                continue;
            }
        };
        let mut ctx = Context::new();
        ctx.insert("aws:ResourceAccount", &estate.account);
        for (k, v) in &role.tags {
            ctx.insert(&format!("aws:ResourceTag/{k}"), v);
            ctx.insert(&format!("iam:ResourceTag/{k}"), v);
        }
        let assumers = allowed(
            estate,
            "sts:AssumeRole",
            &role.arn,
            &ctx,
            &trust,
            true,
            Some(&role.arn),
        )?;
        let own_root = format!("arn:aws:iam::{}:root", estate.account);
        for g in assumers {
            // The root user cannot assume roles, nor can an unauthenticated caller; the
            // account's other identities were judged one by one.
            if g.unread || !g.can_assume || g.who == own_root || plainly.contains(&g.who.as_str()) {
                continue;
            }
            let mut all = g.keys.clone();
            union(&mut all, &role_grant.keys);
            out.push(format!(
                "{} via {}{}{}",
                g.who,
                role.arn,
                when(&all),
                g.note
            ));
        }
    }
    Ok(out)
}

fn key_value(s: &str, what: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{what} {s:?}: write KEY=VALUE"))
}

/// `ARN=FILE`: IAM names may hold `=`, so the file is what follows the last one.
fn arn_file(s: &str) -> Result<(String, String), String> {
    s.rsplit_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("--identity {s:?}: write ARN=FILE"))
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
        let (arn, file) = arn_file(spec)?;
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
    let all_identities = details.is_some();
    Ok(Estate {
        account,
        region,
        subjects,
        berth: false,
        all_identities,
        anonymous_pull: false,
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
    let region = a.source.region();
    let remote = a.source.remote(offline)?;
    let estate = match (&a.source.data_dir, &remote, offline) {
        (Some(dir), None, false) => {
            let mut all = super::runtime()?.block_on(estate::from_data_dir(
                dir,
                &region,
                a.account.as_deref(),
                Some(&a.repository),
                true,
            ))?;
            // Without --account: the first account holding the repository.
            let i = all
                .iter()
                .position(|e| !e.repositories.is_empty())
                .ok_or_else(|| format!("no repository {} in {}", a.repository, dir.display()))?;
            all.swap_remove(i)
        }
        (None, Some(remote), false) => {
            let estate = estate::from_remote(remote, Some(&a.repository), true)?;
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
                "give --data-dir, --endpoint-url (or --aws), or policy files (--repository-policy, --registry-policy, --authorization-details, --identity)".into(),
            )
        }
        _ => return Err("give one source: --data-dir, --endpoint-url (or --aws), or policy files".into()),
    };
    let estate = Estate {
        anonymous_pull: a.source.anonymous_pull()?,
        ..estate
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
    if !estate.berth {
        eprintln!(
            "note: organization policies (SCPs, RCPs) are not in the data and not applied; roles are followed one step"
        );
    }
    if lines.is_empty() {
        eprintln!("nobody may {} on {}", a.action, estate.repo_arn(&repo.name));
    }
    for l in lines {
        println!("{l}");
    }
    Ok(ExitCode::SUCCESS)
}
