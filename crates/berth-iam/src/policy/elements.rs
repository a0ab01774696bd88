//! The values of policy elements: what an action, a resource, a principal and a typed
//! condition value must look like. Each check says what is wrong and what is accepted.

use super::ast::{BaseOperator, Family, PrincipalType};
use super::parse::quoted;
use crate::arn::{split_upto6, Arn};
use crate::values::{parse_date, parse_number, Cidr};

/// `service:Action` with wildcards, or `*`.
pub fn check_action(a: &str) -> Result<(), String> {
    if a == "*" {
        return Ok(());
    }
    let Some((service, name)) = a.split_once(':') else {
        return Err(
            "is not an action: write service:ActionName (e.g. ecr:PutImage) or \"*\"".into(),
        );
    };
    if service.is_empty()
        || !service
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '*' | '?'))
    {
        return Err(
            "has an invalid service prefix: it may hold letters, digits, '-', '.' and wildcards (e.g. ecr:PutImage)".into(),
        );
    }
    if name.contains(':') {
        return Err(
            "is not an action: an action holds exactly one ':' (service:ActionName)".into(),
        );
    }
    Ok(())
}

/// An ARN pattern or `*`; variables only in the resource part.
pub fn check_resource(r: &str, vars: bool) -> Result<(), String> {
    if r == "*" {
        return Ok(());
    }
    if !r.starts_with("arn:") {
        return Err("is not a resource: use an ARN (arn:partition:service:region:account:resource) or \"*\"".into());
    }
    let parts = split_upto6(r);
    if vars {
        let head = &parts[..parts.len().min(5)];
        if head.iter().any(|p| p.contains("${")) {
            return Err("uses a policy variable outside the resource part; variables may appear only after the fifth ':'".into());
        }
    }
    if parts.len() == 2 && parts[1].is_empty() {
        return Err("is not a resource: the ARN is empty after \"arn:\"".into());
    }
    Ok(())
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_unique_id(s: &str) -> bool {
    s.len() >= 16
        && s.len() <= 128
        && s.starts_with('A')
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

pub fn check_principal(ty: PrincipalType, s: &str) -> Result<(), String> {
    if s == "*" {
        return Ok(());
    }
    if s.contains('*') || s.contains('?') {
        return Err("uses a wildcard: a principal may be \"*\" alone but not contain one".into());
    }
    match ty {
        PrincipalType::Aws => {
            if is_account_id(s) || is_unique_id(s) {
                return Ok(());
            }
            match Arn::parse(s) {
                Some(a) if matches!(a.service, "iam" | "sts") && a.region.is_empty() => {
                    if !is_account_id(a.account) {
                        return Err(format!(
                            "has {} where a 12-digit account id belongs",
                            quoted(a.account)
                        ));
                    }
                    Ok(())
                }
                Some(_) => Err("is not an IAM or STS principal ARN (arn:aws:iam::ACCOUNT:user/NAME, role/NAME, root; arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION)".into()),
                None => Err("is not a principal: use \"*\", a 12-digit account id, an IAM or STS ARN, or a unique id (AIDA..., AROA...)".into()),
            }
        }
        PrincipalType::Service | PrincipalType::Federated | PrincipalType::CanonicalUser => {
            if s.is_empty() || s.chars().any(char::is_whitespace) {
                Err("is not a principal name: it must be non-empty and hold no spaces".into())
            } else {
                Ok(())
            }
        }
    }
}

/// Typed operators check their policy values at write time.
pub fn check_condition_value(op: BaseOperator, s: &str) -> Result<(), String> {
    match op.family() {
        Family::Numeric if parse_number(s).is_none() => Err(format!(
            "is not a number; {} compares integers or decimals such as 10 or 2.5",
            op.name()
        )),
        Family::Date if parse_date(s).is_none() => Err(format!(
            "is not a date; {} takes ISO 8601 (2024-01-31, 2024-01-31T12:00:00Z) or epoch seconds",
            op.name()
        )),
        Family::Ip if Cidr::parse(s).is_none() => Err("is not an IPv4 or IPv6 CIDR".into()),
        _ => Ok(()),
    }
}
