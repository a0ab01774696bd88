//! The principals a resource-based policy names must be able to exist: IAM refuses a
//! trust policy, and ECR a repository or registry policy, that names an IAM user or
//! role that does not exist ("Invalid principal in policy"). Berth knows the users and
//! roles of the accounts it hosts, so it checks those; other accounts (account ids,
//! `:root` ARNs, their users and roles) are outside its knowledge and pass, as do `*`,
//! service principals and role or federated sessions (sessions are not stored entities).
//! An IAM group, or any other IAM resource, is never a principal.

use std::collections::HashMap;

use berth_iam::arn::Arn;
use berth_iam::policy::ast::{PrincipalType, PrincipalValue};
use berth_iam::PolicyKind;
use berth_store::EntityKind;

use crate::query::ApiError;
use crate::serve::App;

/// A principal a policy names that cannot be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPrincipal {
    /// The value as written.
    pub value: String,
    /// Where: `Statement[0].Principal.AWS`.
    pub path: String,
    /// Why, in plain words.
    pub reason: String,
}

impl InvalidPrincipal {
    /// IAM's sentence, then where and why.
    pub fn message(&self) -> String {
        format!(
            "Invalid principal in policy: \"AWS\":\"{}\" ({}: {})",
            self.value, self.path, self.reason
        )
    }
}

/// The first principal of a resource-based policy that cannot be, if any. A document
/// that does not parse has none (its own errors are reported first, elsewhere).
pub async fn invalid_principal(
    app: &App,
    text: &str,
    kind: PolicyKind,
) -> Result<Option<InvalidPrincipal>, ApiError> {
    let Ok(policy) = berth_iam::parse_policy(text, kind) else {
        return Ok(None);
    };
    let mut hosted: HashMap<String, bool> = HashMap::new();
    for (i, st) in policy.statements.iter().enumerate() {
        let Some(p) = &st.principal else { continue };
        let PrincipalValue::Map(map) = &p.value else {
            continue;
        };
        let element = if p.negated {
            "NotPrincipal"
        } else {
            "Principal"
        };
        for (ty, values) in map {
            if *ty != PrincipalType::Aws {
                continue;
            }
            for (j, v) in values.iter().enumerate() {
                let path = if values.len() > 1 {
                    format!("Statement[{i}].{element}.AWS[{j}]")
                } else {
                    format!("Statement[{i}].{element}.AWS")
                };
                if let Some(reason) = why_invalid(app, &mut hosted, v).await? {
                    return Ok(Some(InvalidPrincipal {
                        value: v.clone(),
                        path,
                        reason,
                    }));
                }
            }
        }
    }
    Ok(None)
}

/// Why an `AWS` principal value cannot be, or `None` when it can.
async fn why_invalid(
    app: &App,
    hosted: &mut HashMap<String, bool>,
    value: &str,
) -> Result<Option<String>, ApiError> {
    let Some(arn) = Arn::parse(value) else {
        // `*`, account ids and unique ids.
        return Ok(None);
    };
    let (kind, rest) = match (arn.service, arn.resource.split_once('/')) {
        ("iam", None) if arn.resource == "root" => return Ok(None),
        ("iam", Some(("user", rest))) => (EntityKind::User, rest),
        ("iam", Some(("role", rest))) => (EntityKind::Role, rest),
        ("sts", Some(("assumed-role" | "federated-user", _))) => return Ok(None),
        ("iam", Some(("group", _))) => {
            return Ok(Some(
                "an IAM group cannot be a principal; name its users, or a role they assume"
                    .into(),
            ))
        }
        _ => {
            return Ok(Some(
                "not a principal: an AWS principal is an account (id or arn:aws:iam::ACCOUNT:root), an IAM user or role ARN, or a role or federated session ARN (arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION, federated-user/NAME)".into(),
            ))
        }
    };
    let account = arn.account;
    let is_hosted = match hosted.get(account) {
        Some(h) => *h,
        None => {
            let h = app.store.account(account).await?.is_some();
            hosted.insert(account.to_string(), h);
            h
        }
    };
    if !is_hosted {
        // Another AWS account: its users and roles are not ours to know.
        return Ok(None);
    }
    let name = rest.rsplit('/').next().unwrap_or_default();
    let noun = kind.as_str();
    if name.is_empty() {
        return Ok(Some(format!("the {noun} name is missing")));
    }
    Ok(match app.store.entity(account, kind, name).await? {
        Some(e) if e.arn() == value => None,
        Some(e) => Some(format!(
            "account {account} has no IAM {noun} with this ARN; its {noun} {name:?} is {}",
            e.arn()
        )),
        None => Some(format!(
            "account {account} has no IAM {noun} named {name:?}"
        )),
    })
}
