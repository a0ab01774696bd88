//! What is being asked: the principal making the request, the action, the resource and
//! the context keys (`aws:SourceIp`, tags, ...). Built once per request; typed readings
//! of context values (IP, number, date) are made on first use and kept.

use std::cell::OnceCell;
use std::net::IpAddr;
use std::sync::Arc;

use crate::arn::Arn;
use crate::values::{parse_date, parse_ip, parse_number};
use crate::variables::VariableSource;

/// Who is making the request, as IAM sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    /// The account's root user.
    Root,
    User,
    /// A role ARN used directly as the principal (its sessions behave alike).
    Role,
    /// A session of a role (`arn:aws:sts::A:assumed-role/R/S`).
    AssumedRole,
    /// A GetFederationToken session (`arn:aws:sts::A:federated-user/N`).
    FederatedUser,
    /// An AWS service principal such as `codebuild.amazonaws.com`.
    Service,
    Anonymous,
}

impl PrincipalKind {
    /// The value of `aws:PrincipalType`.
    pub fn principal_type(self) -> &'static str {
        match self {
            PrincipalKind::Root => "Account",
            PrincipalKind::User => "User",
            PrincipalKind::Role | PrincipalKind::AssumedRole => "AssumedRole",
            PrincipalKind::FederatedUser => "FederatedUser",
            PrincipalKind::Service => "Service",
            PrincipalKind::Anonymous => "Anonymous",
        }
    }

    /// IAM users and roles can carry permissions boundaries.
    pub fn is_user_or_role(self) -> bool {
        matches!(
            self,
            PrincipalKind::User | PrincipalKind::Role | PrincipalKind::AssumedRole
        )
    }
}

/// The request principal and the identities it derives from (account → role → session).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub kind: PrincipalKind,
    /// The ARN shown in messages (the session ARN for role sessions).
    pub arn: Arc<str>,
    /// Account id; empty for service and anonymous principals.
    pub account: Arc<str>,
    /// For role sessions and roles: the role's ARN (with its path when known).
    pub role_arn: Option<Arc<str>>,
    /// For federated users: the IAM user that called GetFederationToken, when known.
    pub federating_user_arn: Option<Arc<str>>,
    /// Unique id: `AIDA...` for users, `AROA...` for roles and their sessions.
    pub unique_id: Option<Arc<str>>,
    /// The user name (users only; the value of `aws:username`).
    pub user_name: Option<Arc<str>>,
}

impl Principal {
    /// Read a principal from its ARN (or a service name like `codebuild.amazonaws.com`,
    /// or `*`/`anonymous`).
    pub fn from_arn(s: &str) -> Result<Principal, String> {
        let bare = |kind, account: &str| Principal {
            kind,
            arn: s.into(),
            account: account.into(),
            role_arn: None,
            federating_user_arn: None,
            unique_id: None,
            user_name: None,
        };
        if s.is_empty() || s == "*" || s.eq_ignore_ascii_case("anonymous") {
            return Ok(bare(PrincipalKind::Anonymous, ""));
        }
        if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
            let mut p = bare(PrincipalKind::Root, s);
            p.arn = format!("arn:aws:iam::{s}:root").into();
            return Ok(p);
        }
        let Some(arn) = Arn::parse(s) else {
            if !s.contains(':') && s.contains('.') && !s.contains(char::is_whitespace) {
                return Ok(bare(PrincipalKind::Service, ""));
            }
            return Err(format!(
                "{s:?} is not a principal: use an IAM or STS ARN (arn:aws:iam::ACCOUNT:user/NAME, :root, :role/NAME, arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION, :federated-user/NAME) or a service name"
            ));
        };
        let account = arn.account;
        let bad = || format!("{s:?} is not a principal ARN");
        match (arn.service, arn.resource) {
            ("iam", "root") => Ok(bare(PrincipalKind::Root, account)),
            ("iam", r) if r.starts_with("user/") => {
                let name = r.rsplit('/').next().unwrap_or_default();
                if name.is_empty() {
                    return Err(bad());
                }
                let mut p = bare(PrincipalKind::User, account);
                p.user_name = Some(name.into());
                Ok(p)
            }
            ("iam", r) if r.starts_with("role/") && r.len() > 5 => {
                let mut p = bare(PrincipalKind::Role, account);
                p.role_arn = Some(s.into());
                Ok(p)
            }
            ("sts", r) if r.starts_with("assumed-role/") => {
                let mut parts = r["assumed-role/".len()..].splitn(2, '/');
                let (Some(role), Some(session)) = (parts.next(), parts.next()) else {
                    return Err(bad());
                };
                if role.is_empty() || session.is_empty() {
                    return Err(bad());
                }
                let mut p = bare(PrincipalKind::AssumedRole, account);
                p.role_arn =
                    Some(format!("arn:{}:iam::{account}:role/{role}", arn.partition).into());
                Ok(p)
            }
            ("sts", r) if r.starts_with("federated-user/") && r.len() > 15 => {
                Ok(bare(PrincipalKind::FederatedUser, account))
            }
            _ => Err(bad()),
        }
    }

    /// The account owning `resource` when the caller does not say: the resource ARN's
    /// account, or for `*` (and account-less ARNs) this principal's own account.
    pub fn resource_account(&self, resource: &str) -> String {
        Arn::parse(resource)
            .map(|a| a.account)
            .filter(|a| !a.is_empty())
            .unwrap_or(&self.account)
            .to_string()
    }

    /// The value of `aws:PrincipalArn`: the role ARN for role sessions, else the ARN.
    pub fn principal_arn(&self) -> &str {
        match self.kind {
            PrincipalKind::AssumedRole => self.role_arn.as_deref().unwrap_or(&self.arn),
            _ => &self.arn,
        }
    }

    /// Make principal and context agree before a decision: take what the context says of
    /// this principal ([`Principal::learn_from_context`]), then fill in the keys IAM
    /// derives from it ([`Principal::derive_context`]).
    pub fn settle_context(&mut self, ctx: &mut Context) {
        self.learn_from_context(ctx);
        self.derive_context(ctx);
    }

    /// Fill in the context keys IAM derives from the principal, where the context lacks them:
    /// `aws:PrincipalArn`, `aws:PrincipalAccount`, `aws:username`, `aws:PrincipalType`
    /// (only the last for an anonymous principal).
    pub fn derive_context(&self, ctx: &mut Context) {
        match self.kind {
            PrincipalKind::Service => return,
            // An anonymous request carries no key about a principal (no account, no
            // ARN, no user name) but its type, as AWS documents them.
            PrincipalKind::Anonymous => {
                ctx.derive("aws:principaltype", "Anonymous");
                return;
            }
            _ => {}
        }
        ctx.derive("aws:principalarn", self.principal_arn());
        ctx.derive("aws:principalaccount", &self.account);
        ctx.derive("aws:principaltype", self.kind.principal_type());
        if let Some(name) = &self.user_name {
            ctx.derive("aws:username", name);
        }
    }

    /// Take what the context says about this principal: the role's full ARN (with path)
    /// from `aws:PrincipalArn`, and the unique id from `aws:userid`.
    pub fn learn_from_context(&mut self, ctx: &Context) {
        let (role_name, session) = match self.kind {
            PrincipalKind::AssumedRole => {
                let rest = self.arn.split_once(":assumed-role/").map_or("", |(_, r)| r);
                rest.split_once('/').unwrap_or((rest, ""))
            }
            _ => ("", ""),
        };
        if self.kind == PrincipalKind::AssumedRole {
            // Only the same role (same account and name; the path may differ).
            if let Some(arn) = ctx.single_value("aws:principalarn") {
                let same_role = Arn::parse(arn).is_some_and(|a| {
                    a.service == "iam"
                        && a.account == &*self.account
                        && a.resource.starts_with("role/")
                        && a.resource.rsplit('/').next() == Some(role_name)
                });
                if same_role && self.role_arn.as_deref() != Some(arn) {
                    self.role_arn = Some(arn.into());
                }
            }
        }
        if let Some(userid) = ctx.single_value("aws:userid") {
            // Users: "AIDA..."; role sessions: "AROA...:session" (the role's id first).
            let id = match (self.kind, userid.split_once(':')) {
                (PrincipalKind::User, None) if userid.starts_with("AIDA") => Some(userid),
                (PrincipalKind::AssumedRole, Some((id, s)))
                    if id.starts_with("AROA") && s == session =>
                {
                    Some(id)
                }
                (PrincipalKind::Role, None) if userid.starts_with("AROA") => Some(userid),
                _ => None,
            };
            if let Some(id) = id {
                if self.unique_id.as_deref() != Some(id) {
                    self.unique_id = Some(id.into());
                }
            }
        }
    }
}

/// An action as requested (`ecr:PutImage`), with its lower-cased form for matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub text: Arc<str>,
    lower: Arc<str>,
    service_len: usize,
    hash: u64,
}

impl Action {
    pub fn new(text: &str) -> Action {
        let lower = text.to_ascii_lowercase();
        Action {
            text: text.into(),
            service_len: lower.find(':').unwrap_or(lower.len()),
            hash: action_hash(&lower),
            lower: lower.into(),
        }
    }

    pub fn lower(&self) -> &str {
        &self.lower
    }

    /// The lower-cased service prefix (`ecr`).
    pub fn service(&self) -> &str {
        &self.lower[..self.service_len]
    }

    /// A hash of the lower-cased action, compared before the text.
    pub fn hash(&self) -> u64 {
        self.hash
    }
}

/// The hash of a lower-cased context key.
#[inline]
pub fn key_hash(key_lc: &str) -> u64 {
    action_hash(key_lc)
}

/// The hash [`Action::hash`] uses.
pub fn action_hash(lower: &str) -> u64 {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    h.write(lower.as_bytes());
    h.finish()
}

/// Keys IAM defines as multivalued: they are compared only through
/// `ForAllValues:`/`ForAnyValue:`.
pub const MULTIVALUED_KEYS: &[&str] = &[
    "aws:tagkeys",
    "aws:calledvia",
    "aws:principalorgpaths",
    "aws:resourceorgpaths",
    "aws:sourceorgpaths",
    "aws:principalservicenameslist",
    "sts:transitivetagkeys",
];

/// One context value with its typed readings made on demand.
#[derive(Debug, Clone)]
pub struct ContextValue {
    pub text: String,
    ip: OnceCell<Option<IpAddr>>,
    number: OnceCell<Option<f64>>,
    date: OnceCell<Option<i64>>,
}

impl ContextValue {
    pub fn new(text: String) -> ContextValue {
        ContextValue {
            text,
            ip: OnceCell::new(),
            number: OnceCell::new(),
            date: OnceCell::new(),
        }
    }

    /// Take a new value, keeping the text buffer.
    fn reset(&mut self, text: &str) {
        self.text.clear();
        self.text.push_str(text);
        self.ip = OnceCell::new();
        self.number = OnceCell::new();
        self.date = OnceCell::new();
    }

    pub fn ip(&self) -> Option<IpAddr> {
        *self.ip.get_or_init(|| parse_ip(&self.text))
    }

    pub fn number(&self) -> Option<f64> {
        *self.number.get_or_init(|| parse_number(&self.text))
    }

    pub fn date(&self) -> Option<i64> {
        *self.date.get_or_init(|| parse_date(&self.text))
    }
}

/// A context key and its values.
#[derive(Debug, Clone, Default)]
pub struct ContextEntry {
    /// The key lower-cased (keys are case-insensitive).
    pub key: String,
    /// [`key_hash`] of the key, compared before the key.
    pub hash: u64,
    pub values: Vec<ContextValue>,
    /// The key holds a set of values (a multivalued key, or several values given).
    pub multivalued: bool,
}

/// The request context: condition keys and their values.
///
/// [`Context::clear`] keeps the buffers of the entries it drops and later inserts reuse
/// them, so a context refilled for every request stops allocating.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// `entries[..len]` are live; the rest are buffers kept for reuse.
    entries: Vec<ContextEntry>,
    len: usize,
}

impl Context {
    pub fn new() -> Context {
        Context::default()
    }

    /// Remove every key, keeping buffers for reuse.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Set a single-valued key (replacing any earlier value).
    pub fn insert(&mut self, key: &str, value: &str) {
        self.set(key, &[value], false);
    }

    /// Set a key to a list of values.
    pub fn insert_list(&mut self, key: &str, values: Vec<String>) {
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        self.set(key, &refs, values.len() != 1);
    }

    pub fn insert_if_absent(&mut self, key: &str, value: &str) {
        if !self.live().iter().any(|e| e.key.eq_ignore_ascii_case(key)) {
            self.push(key, &[value], false);
        }
    }

    /// Set a key IAM derives (given lower-cased) unless the caller supplied it.
    fn derive(&mut self, key_lc: &'static str, value: &str) {
        if self.get(key_lc).is_none() {
            self.push(key_lc, &[value], false);
        }
    }

    fn set(&mut self, key: &str, values: &[&str], listed: bool) {
        if let Some(i) = self
            .live()
            .iter()
            .position(|e| e.key.eq_ignore_ascii_case(key))
        {
            self.len -= 1;
            self.entries.swap(i, self.len);
        }
        self.push(key, values, listed);
    }

    fn push(&mut self, key: &str, values: &[&str], listed: bool) {
        if self.len == self.entries.len() {
            self.entries.push(ContextEntry::default());
        }
        let e = &mut self.entries[self.len];
        self.len += 1;
        e.key.clear();
        e.key.push_str(key);
        e.key.make_ascii_lowercase();
        e.hash = key_hash(&e.key);
        e.multivalued = listed || MULTIVALUED_KEYS.contains(&e.key.as_str());
        e.values.truncate(values.len());
        for (i, v) in values.iter().enumerate() {
            match e.values.get_mut(i) {
                Some(slot) => slot.reset(v),
                None => e.values.push(ContextValue::new(v.to_string())),
            }
        }
    }

    fn live(&self) -> &[ContextEntry] {
        &self.entries[..self.len]
    }

    /// Look up a key by its lower-cased name.
    #[inline]
    pub fn get(&self, key_lc: &str) -> Option<&ContextEntry> {
        self.get_hashed(key_lc, key_hash(key_lc))
    }

    /// [`Context::get`] with the key's [`key_hash`] already known (compiled conditions).
    #[inline]
    pub fn get_hashed(&self, key_lc: &str, hash: u64) -> Option<&ContextEntry> {
        self.live()
            .iter()
            .find(|e| e.hash == hash && crate::glob::str_eq(&e.key, key_lc))
    }

    pub fn entries(&self) -> &[ContextEntry] {
        self.live()
    }
}

impl VariableSource for Context {
    fn single_value(&self, key_lc: &str) -> Option<&str> {
        match self.get(key_lc)?.values.as_slice() {
            [one] => Some(&one.text),
            _ => None,
        }
    }
}

/// Everything the engine needs to decide one request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub principal: &'a Principal,
    pub action: &'a Action,
    /// The resource ARN, or `*` for actions without resource-level permissions.
    pub resource: &'a str,
    /// The account that owns the resource.
    pub resource_account: &'a str,
    pub context: &'a Context,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principal_kinds() {
        let p = Principal::from_arn("arn:aws:iam::111122223333:user/dev/alice").unwrap();
        assert_eq!(p.kind, PrincipalKind::User);
        assert_eq!(p.user_name.as_deref(), Some("alice"));
        assert_eq!(&*p.account, "111122223333");
        let p = Principal::from_arn("arn:aws:sts::111122223333:assumed-role/dev/s1").unwrap();
        assert_eq!(p.kind, PrincipalKind::AssumedRole);
        assert_eq!(p.principal_arn(), "arn:aws:iam::111122223333:role/dev");
        let p = Principal::from_arn("arn:aws:iam::111122223333:root").unwrap();
        assert_eq!(p.kind, PrincipalKind::Root);
        let p = Principal::from_arn("codebuild.amazonaws.com").unwrap();
        assert_eq!(p.kind, PrincipalKind::Service);
        let p = Principal::from_arn("arn:aws:sts::111122223333:federated-user/temp").unwrap();
        assert_eq!(p.kind, PrincipalKind::FederatedUser);
        for bad in [
            "alice",
            "arn:aws:s3:::bucket",
            "arn:aws:sts::1:assumed-role/x",
            "arn:aws:iam::1:user/",
        ] {
            assert!(Principal::from_arn(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn derived_context_keys_do_not_override() {
        let p = Principal::from_arn("arn:aws:iam::111122223333:user/alice").unwrap();
        let mut ctx = Context::new();
        ctx.insert("AWS:username", "given");
        p.derive_context(&mut ctx);
        assert_eq!(ctx.single_value("aws:username"), Some("given"));
        assert_eq!(ctx.single_value("aws:principaltype"), Some("User"));
        assert_eq!(
            ctx.single_value("aws:principalarn"),
            Some("arn:aws:iam::111122223333:user/alice")
        );
    }

    #[test]
    fn session_learns_role_path() {
        let mut p = Principal::from_arn("arn:aws:sts::111122223333:assumed-role/dev/s1").unwrap();
        let mut ctx = Context::new();
        ctx.insert(
            "aws:PrincipalArn",
            "arn:aws:iam::111122223333:role/team/dev",
        );
        ctx.insert("aws:userid", "AROAEXAMPLEEXAMPLE01:s1");
        p.learn_from_context(&ctx);
        assert_eq!(
            p.role_arn.as_deref(),
            Some("arn:aws:iam::111122223333:role/team/dev")
        );
        assert_eq!(p.unique_id.as_deref(), Some("AROAEXAMPLEEXAMPLE01"));
    }
}
