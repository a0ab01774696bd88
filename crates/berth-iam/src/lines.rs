//! The JSON-lines decision protocol behind `berth policy decide`, through which
//! independent IAM implementations are compared. One request object in, one answer
//! object out:
//!
//! ```text
//! {"id": any, "principal": ARN, "action": "ecr:…", "resource": ARN or "*",
//!  "resource_account": "123456789012", "context": {KEY: string or [strings]},
//!  "identity_policies": [documents], "resource_policy": document or null,
//!  "permissions_boundary": document or null, "session_policy": document or null}
//! → {"id": same, "decision": "Allow" | "ImplicitDeny" | "ExplicitDeny"}
//! → {"id": same, "error": message}
//! ```
//!
//! Unknown fields are ignored. Context keys are used as given; `aws:PrincipalArn`,
//! `aws:PrincipalAccount`, `aws:username` and `aws:PrincipalType` are derived from the
//! principal only when absent (AWS sends them with every signed request). A federated
//! user (`arn:aws:sts::…:federated-user/N`) without a `session_policy` has no
//! permissions from its identity policies, as a GetFederationToken session without a
//! policy has none; only a resource policy naming the session itself grants it. A
//! `NotPrincipal` + `Allow` statement grants nothing. Compiled policies are cached by
//! their exact text, so a stream that repeats policies compiles each once.

use std::borrow::Cow;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::compile::CompiledPolicy;
use crate::evaluate::{decide, PolicySet};
use crate::json::{self, Parser, Value};
use crate::policy::ast::PolicyKind;
use crate::policy::parse::{check_size, from_json};
use crate::request::{Action, Context, Principal, Request};

/// Cached compiled policies are dropped wholesale beyond this many entries.
const CACHE_LIMIT: usize = 8_192;

/// How many leading bytes pick the known documents to compare with.
const PREFIX: usize = 64;

/// Known documents kept per prefix (documents often share their first bytes): a lookup
/// compares at most this many before reading the document the ordinary way.
const KNOWN_PER_PREFIX: usize = 16;

type Compiled = Result<Arc<CompiledPolicy>, Arc<str>>;

/// Texts that share a hash, each with its compilation.
type Bucket = Vec<(Box<str>, Compiled)>;

/// Decides request lines, caching compiled policies between lines.
#[derive(Default)]
pub struct Decider {
    /// (kind, hash of the text) → the texts with that hash and their compilations.
    cache: FxHashMap<(PolicyKind, u64), Bucket>,
    /// Documents seen before (valid JSON objects), by a hash of their first [`PREFIX`]
    /// bytes, most recently seen first: a line that holds one at a value position is
    /// recognised by comparison instead of parsing.
    known: FxHashMap<u64, Vec<Box<str>>>,
    entries: usize,
    /// Reused for every line.
    context: Context,
    /// Actions read before, by their text.
    actions: FxHashMap<Box<str>, Action>,
    /// Principals read before, by their ARN.
    principals: FxHashMap<Box<str>, Result<Principal, String>>,
}

fn hash_bytes(b: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    h.write(b);
    h.finish()
}

/// The members of a request line.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Id,
    Principal,
    Action,
    Resource,
    ResourceAccount,
    Context,
    IdentityPolicies,
    ResourcePolicy,
    PermissionsBoundary,
    SessionPolicy,
    Other,
}

impl Field {
    /// Every member name has its own length: one comparison tells the field.
    fn of(key: &str) -> Field {
        let (field, name) = match key.len() {
            2 => (Field::Id, "id"),
            6 => (Field::Action, "action"),
            7 => (Field::Context, "context"),
            8 => (Field::Resource, "resource"),
            9 => (Field::Principal, "principal"),
            14 => (Field::SessionPolicy, "session_policy"),
            15 => (Field::ResourcePolicy, "resource_policy"),
            16 => (Field::ResourceAccount, "resource_account"),
            17 => (Field::IdentityPolicies, "identity_policies"),
            20 => (Field::PermissionsBoundary, "permissions_boundary"),
            _ => return Field::Other,
        };
        if key == name {
            field
        } else {
            Field::Other
        }
    }
}

struct Line<'a> {
    id: &'a str,
    principal: Option<Cow<'a, str>>,
    action: Option<Cow<'a, str>>,
    resource: Option<Cow<'a, str>>,
    resource_account: Option<Cow<'a, str>>,
    identity: Vec<Cow<'a, str>>,
    resource_policy: Option<Cow<'a, str>>,
    boundary: Option<Cow<'a, str>>,
    session: Option<Cow<'a, str>>,
}

impl Decider {
    pub fn new() -> Decider {
        Decider::default()
    }

    /// Decide one line and append the answer line (with its newline) to `out`.
    pub fn decide_line(&mut self, line: &str, out: &mut String) {
        let mut id = "null";
        let mut context = std::mem::take(&mut self.context);
        context.clear();
        let result = self
            .read(line, &mut id, &mut context)
            .and_then(|l| self.answer(l, &mut context));
        self.context = context;
        if result.is_err() && id == "null" {
            // The error came before the id was reached: find it with a full read.
            if let Ok(doc) = json::parse(line) {
                if let Some(j) = doc.get("id") {
                    id = &line[j.start..j.end];
                }
            }
        }
        out.push_str("{\"id\":");
        out.push_str(id);
        match result {
            Ok(d) => {
                out.push_str(",\"decision\":\"");
                out.push_str(d.as_str());
                out.push_str("\"}\n");
            }
            Err(e) => {
                out.push_str(",\"error\":");
                json::write_string(out, &e);
                out.push_str("}\n");
            }
        }
    }

    fn read<'a>(
        &mut self,
        line: &'a str,
        id_out: &mut &'a str,
        ctx: &mut Context,
    ) -> Result<Line<'a>, String> {
        let syntax = |e: json::SyntaxError| e.to_string();
        let mut p = Parser::new(line);
        let mut l = Line {
            id: "null",
            principal: None,
            action: None,
            resource: None,
            resource_account: None,
            identity: Vec::new(),
            resource_policy: None,
            boundary: None,
            session: None,
        };
        p.begin_object().map_err(syntax)?;
        let mut first = true;
        while let Some(key) = p.next_key(first).map_err(syntax)? {
            first = false;
            match Field::of(&key) {
                Field::Id => {
                    let (s, e) = p.skip_value(0).map_err(syntax)?;
                    l.id = &line[s..e];
                    *id_out = l.id;
                }
                f @ (Field::Principal
                | Field::Action
                | Field::Resource
                | Field::ResourceAccount) => {
                    p.skip_ws();
                    let quoted = p.rest().starts_with('"');
                    let s = match scalar(&mut p).map_err(syntax)? {
                        Scalar::Text(s) if quoted => Some(s),
                        Scalar::Text(_) => {
                            return Err(format!("{key} must be a string, not a number or boolean"))
                        }
                        Scalar::Null => None,
                        Scalar::Other(what) => {
                            return Err(format!("{key} must be a string, not {what}"))
                        }
                    };
                    match f {
                        Field::Principal => l.principal = s,
                        Field::Action => l.action = s,
                        Field::Resource => l.resource = s,
                        _ => l.resource_account = s,
                    }
                }
                Field::Context => {
                    // A repeated member replaces the earlier one, as JSON readers do.
                    ctx.clear();
                    read_context(&mut p, ctx)?
                }
                Field::IdentityPolicies => {
                    l.identity.clear();
                    if !p.null() {
                        p.begin_array().map_err(syntax)?;
                        let mut first = true;
                        while p.next_item(first).map_err(syntax)? {
                            first = false;
                            l.identity.push(self.document(&mut p).map_err(syntax)?);
                        }
                    }
                }
                f @ (Field::ResourcePolicy | Field::PermissionsBoundary | Field::SessionPolicy) => {
                    let doc = if p.null() {
                        None
                    } else {
                        Some(self.document(&mut p).map_err(syntax)?)
                    };
                    match f {
                        Field::ResourcePolicy => l.resource_policy = doc,
                        Field::PermissionsBoundary => l.boundary = doc,
                        _ => l.session = doc,
                    }
                }
                Field::Other => {
                    p.skip_value(0).map_err(syntax)?;
                }
            }
        }
        p.skip_ws();
        if p.position() != line.len() {
            return Err(p
                .error("unexpected text after the request object")
                .to_string());
        }
        Ok(l)
    }

    /// A policy document: an object (its text, borrowed) or a string holding one.
    fn document<'a>(&mut self, p: &mut Parser<'a>) -> Result<Cow<'a, str>, json::SyntaxError> {
        p.skip_ws();
        if p.rest().starts_with('"') {
            return p.string_cow();
        }
        let rest = p.rest();
        let (s, e) = self.skip_document(p)?;
        Ok(Cow::Borrowed(&rest[..e - s]))
    }

    /// Step over a policy document: by comparison if it is one seen before (a complete
    /// JSON object cannot continue past its end), else by reading and checking it.
    fn skip_document(&mut self, p: &mut Parser) -> Result<(usize, usize), json::SyntaxError> {
        p.skip_ws();
        let rest = p.rest().as_bytes();
        if rest.len() >= PREFIX && rest[0] == b'{' {
            if let Some(texts) = self.known.get_mut(&hash_bytes(&rest[..PREFIX])) {
                if let Some(i) = texts.iter().position(|t| rest.starts_with(t.as_bytes())) {
                    let len = texts[i].len();
                    // Most recently used first, so that frequent documents are found at once.
                    texts[..=i].rotate_right(1);
                    let start = p.position();
                    p.advance(len);
                    return Ok((start, start + len));
                }
            }
        }
        p.skip_value(1)
    }

    fn compiled(&mut self, kind: PolicyKind, name: impl Fn() -> String, text: &str) -> Compiled {
        let hash = {
            use std::hash::Hasher;
            let mut h = rustc_hash::FxHasher::default();
            h.write(text.as_bytes());
            h.finish()
        };
        if let Some(found) = self
            .cache
            .get(&(kind, hash))
            .and_then(|list| list.iter().find(|(t, _)| **t == *text))
        {
            return found.1.clone();
        }
        if self.entries >= CACHE_LIMIT {
            self.cache.clear();
            self.known.clear();
            self.entries = 0;
        }
        // Errors are cached without the policy's place in the line: the same text may
        // stand elsewhere in a later line.
        let c = match json::parse(text) {
            Err(e) => Err(Arc::from(e.to_string())),
            Ok(doc) => {
                if text.len() >= PREFIX && text.starts_with('{') {
                    self.remember(text);
                }
                let policy = check_size(text, kind)
                    .map_err(|p| p.message)
                    .and_then(|()| from_json(&doc, kind).map_err(|e| e.to_string()));
                match policy {
                    Ok(p) => Ok(Arc::new(CompiledPolicy::new(&name(), kind, &p))),
                    Err(m) => Err(Arc::from(m)),
                }
            }
        };
        self.cache
            .entry((kind, hash))
            .or_default()
            .push((text.into(), c.clone()));
        self.entries += 1;
        c
    }

    /// Note a complete JSON object for [`Decider::skip_document`].
    fn remember(&mut self, text: &str) {
        let list = self
            .known
            .entry(hash_bytes(&text.as_bytes()[..PREFIX]))
            .or_default();
        if !list.iter().any(|t| **t == *text) {
            list.truncate(KNOWN_PER_PREFIX - 1);
            list.insert(0, text.into());
        }
    }

    fn answer(&mut self, l: Line, context: &mut Context) -> Result<crate::Decision, String> {
        let principal_arn = l.principal.ok_or("principal is missing")?;
        let action = l.action.ok_or("action is missing")?;
        let resource = l.resource.unwrap_or(Cow::Borrowed("*"));
        let mut principal = match self.principals.get(&*principal_arn) {
            Some(p) => p.clone()?,
            None => {
                if self.principals.len() >= CACHE_LIMIT {
                    self.principals.clear();
                }
                let p = Principal::from_arn(&principal_arn);
                self.principals
                    .insert(principal_arn.clone().into(), p.clone());
                p?
            }
        };
        principal.settle_context(context);
        let resource_account = match l.resource_account {
            Some(a) => a,
            None => Cow::Owned(principal.resource_account(&resource)),
        };
        let mut identity = Vec::with_capacity(l.identity.len());
        for (i, text) in l.identity.iter().enumerate() {
            let name = || format!("identity_policies[{i}]");
            identity.push(
                self.compiled(PolicyKind::Identity, name, text)
                    .map_err(|e| format!("{}: {e}", name()))?,
            );
        }
        let mut single = |kind,
                          name: &'static str,
                          text: Option<&str>|
         -> Result<Option<Arc<CompiledPolicy>>, String> {
            text.map(|t| {
                self.compiled(kind, || name.to_string(), t)
                    .map_err(|e| format!("{name}: {e}"))
            })
            .transpose()
        };
        let resource_policy = single(
            PolicyKind::Repository,
            "resource_policy",
            l.resource_policy.as_deref(),
        )?;
        let boundary = single(
            PolicyKind::Boundary,
            "permissions_boundary",
            l.boundary.as_deref(),
        )?;
        let session = single(PolicyKind::Session, "session_policy", l.session.as_deref())?;
        let resource_policies: &[Arc<CompiledPolicy>] = match &resource_policy {
            Some(p) => std::slice::from_ref(p),
            None => &[],
        };
        let action = match self.actions.get(&*action) {
            Some(a) => a.clone(),
            None => {
                if self.actions.len() >= CACHE_LIMIT {
                    self.actions.clear();
                }
                let a = Action::new(&action);
                self.actions.insert(action.into(), a.clone());
                a
            }
        };
        let req = Request {
            principal: &principal,
            action: &action,
            resource: &resource,
            resource_account: &resource_account,
            context,
        };
        let set = PolicySet {
            identity: &identity,
            resource: resource_policies,
            boundary: boundary.as_deref(),
            session: session.as_deref(),
        };
        Ok(decide(&req, &set))
    }
}

/// A JSON scalar as context and request fields use it.
enum Scalar<'a> {
    /// A string, or a number or boolean as written.
    Text(Cow<'a, str>),
    Null,
    /// Anything else, named for the message.
    Other(&'static str),
}

fn scalar<'a>(p: &mut Parser<'a>) -> Result<Scalar<'a>, json::SyntaxError> {
    p.skip_ws();
    if p.rest().starts_with('"') {
        return Ok(Scalar::Text(p.string_cow()?));
    }
    let v = p.value(1)?;
    Ok(match v.value {
        Value::Number(n) => Scalar::Text(Cow::Borrowed(n)),
        Value::Bool(b) => Scalar::Text(Cow::Borrowed(if b { "true" } else { "false" })),
        Value::Null => Scalar::Null,
        other => Scalar::Other(other.type_name()),
    })
}

/// Read a context object: each key a string (or number/boolean) or an array of them.
fn read_context(p: &mut Parser, ctx: &mut Context) -> Result<(), String> {
    let syntax = |e: json::SyntaxError| e.to_string();
    if p.null() {
        return Ok(());
    }
    p.begin_object()
        .map_err(|_| "context must be an object".to_string())?;
    let mut first = true;
    while let Some(key) = p.next_key(first).map_err(syntax)? {
        first = false;
        let bad = |what: &str| {
            format!("context.{key}: a value must be a string (or an array of strings), not {what}")
        };
        p.skip_ws();
        if p.rest().starts_with('[') {
            p.begin_array().map_err(syntax)?;
            let mut values = Vec::new();
            let mut first_item = true;
            while p.next_item(first_item).map_err(syntax)? {
                first_item = false;
                match scalar(p).map_err(syntax)? {
                    Scalar::Text(s) => values.push(s.into_owned()),
                    Scalar::Null => return Err(bad("null")),
                    Scalar::Other(what) => return Err(bad(what)),
                }
            }
            ctx.insert_list(&key, values);
            continue;
        }
        match scalar(p).map_err(syntax)? {
            Scalar::Text(s) => ctx.insert(&key, &s),
            Scalar::Null => {}
            Scalar::Other(what) => return Err(bad(what)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(line: &str) -> String {
        let mut d = Decider::new();
        let mut out = String::new();
        d.decide_line(line, &mut out);
        out
    }

    #[test]
    fn answers_in_the_protocol_shape() {
        let allow = r#"{"id": 7, "principal": "arn:aws:iam::111122223333:user/ci", "action": "ecr:PutImage", "resource": "arn:aws:ecr:us-east-1:111122223333:repository/app", "resource_account": "111122223333", "context": {}, "identity_policies": [{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ecr:*","Resource":"*"}}], "resource_policy": null, "extra": [1,2]}"#;
        assert_eq!(run(allow), "{\"id\":7,\"decision\":\"Allow\"}\n");
        let deny = allow
            .replace("\"ecr:*\"", "\"ecr:Get*\"")
            .replace("\"id\": 7", "\"id\": {\"k\": [\"x\"]}");
        assert_eq!(
            run(&deny),
            "{\"id\":{\"k\": [\"x\"]},\"decision\":\"ImplicitDeny\"}\n"
        );
    }

    #[test]
    fn errors_keep_the_id_and_the_stream() {
        let bad = r#"{"id": "a", "principal": "arn:aws:iam::111122223333:user/ci", "action": "ecr:PutImage", "resource": "*", "identity_policies": [{"Statement":{"Effect":"allow","Action":"ecr:*","Resource":"*"}}]}"#;
        let out = run(bad);
        assert!(
            out.starts_with("{\"id\":\"a\",\"error\":\"identity_policies[0]: Statement.Effect: "),
            "{out}"
        );
        assert!(run("not json").starts_with("{\"id\":null,\"error\":\"invalid JSON"));
        assert!(run(r#"{"id": 1}"#).contains("principal is missing"));
    }

    #[test]
    fn errors_name_the_policy_where_it_stands_now_and_keep_the_id() {
        let bad = r#"{"Statement":{"Effect":"allow","Action":"ecr:*","Resource":"*"}}"#;
        let good = r#"{"Statement":{"Effect":"Allow","Action":"ecr:*","Resource":"*"}}"#;
        let line = |id: u32, docs: &str| {
            format!(
                r#"{{"principal":"arn:aws:iam::111122223333:user/ci","action":"ecr:PutImage","resource":"*","identity_policies":[{docs}],"id":{id}}}"#
            )
        };
        let mut d = Decider::new();
        let mut out = String::new();
        d.decide_line(&line(1, bad), &mut out);
        d.decide_line(&line(2, &format!("{good},{bad}")), &mut out);
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines[0].starts_with(r#"{"id":1,"error":"identity_policies[0]: Statement.Effect"#),
            "{out}"
        );
        assert!(
            lines[1].starts_with(r#"{"id":2,"error":"identity_policies[1]: Statement.Effect"#),
            "{out}"
        );
        out.clear();
        d.decide_line(r#"{"principal": 5, "id": 7}"#, &mut out);
        assert_eq!(
            out,
            "{\"id\":7,\"error\":\"principal must be a string, not a number or boolean\"}\n"
        );
    }

    #[test]
    fn a_repeated_member_replaces_the_earlier_one() {
        let allow = r#"{"Statement":{"Effect":"Allow","Action":"ecr:*","Resource":"*"}}"#;
        let line = format!(
            r#"{{"id":1,"principal":"arn:aws:iam::111122223333:user/ci","action":"ecr:PutImage","resource":"*","identity_policies":[{allow}],"identity_policies":[],"context":{{"a:b":"1"}},"context":{{}}}}"#
        );
        assert_eq!(run(&line), "{\"id\":1,\"decision\":\"ImplicitDeny\"}\n");
    }

    #[test]
    fn documents_may_come_as_json_strings() {
        let line = r#"{"id": 1, "principal": "arn:aws:iam::111122223333:user/ci", "action": "ecr:PutImage", "resource": "*", "identity_policies": ["{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"ecr:*\",\"Resource\":\"*\"}}"]}"#;
        assert_eq!(run(line), "{\"id\":1,\"decision\":\"Allow\"}\n");
    }

    #[test]
    fn oversize_documents_are_refused() {
        let big = format!(
            r#"{{"Id":"{}","Statement":{{"Effect":"Allow","Principal":"*","Action":"ecr:*"}}}}"#,
            "x".repeat(11_000)
        );
        let line = format!(
            r#"{{"id": 2, "principal": "arn:aws:iam::111122223333:user/ci", "action": "ecr:PutImage", "resource": "arn:aws:ecr:us-east-1:111122223333:repository/app", "resource_policy": {big}}}"#
        );
        let out = run(&line);
        assert!(out.contains("resource_policy: the document has"), "{out}");
    }

    #[test]
    fn repeated_documents_are_recognised_without_reparsing() {
        let mut d = Decider::new();
        let mut out = String::new();
        let doc = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*","Resource":"*"}]}"#;
        for i in 0..3 {
            let line = format!(
                r#"{{"id": {i}, "principal": "arn:aws:iam::111122223333:user/ci", "action": "ecr:PutImage", "resource": "*", "identity_policies": [{doc}], "resource_policy": null}}"#
            );
            d.decide_line(&line, &mut out);
        }
        assert_eq!(out.matches("\"Allow\"").count(), 3, "{out}");
        assert_eq!(d.entries, 1);
        // A document that only starts like a known one is read in full.
        let longer = doc.replace(
            "]}",
            ",{\"Effect\":\"Deny\",\"Action\":\"ecr:PutImage\",\"Resource\":\"*\"}]}",
        );
        out.clear();
        d.decide_line(
            &format!(r#"{{"id": 9, "principal": "arn:aws:iam::111122223333:user/ci", "action": "ecr:PutImage", "resource": "*", "identity_policies": [{longer}]}}"#),
            &mut out,
        );
        assert_eq!(out, "{\"id\":9,\"decision\":\"ExplicitDeny\"}\n");
    }
}
