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
//! principal only when absent. Compiled policies are cached by their exact text, so a
//! stream that repeats policies compiles each once.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::arn::Arn;
use crate::compile::CompiledPolicy;
use crate::evaluate::{decide, PolicySet};
use crate::json::{self, Parser, Value};
use crate::policy::ast::PolicyKind;
use crate::policy::parse::from_json;
use crate::request::{Action, Context, Principal, Request};

/// Cached compiled policies are dropped wholesale beyond this many entries.
const CACHE_LIMIT: usize = 50_000;

type Compiled = Result<Arc<CompiledPolicy>, Arc<str>>;

/// Decides request lines, caching compiled policies between lines.
#[derive(Default)]
pub struct Decider {
    cache: FxHashMap<(PolicyKind, Box<str>), Compiled>,
}

struct Line<'a> {
    id: &'a str,
    principal: Option<String>,
    action: Option<String>,
    resource: Option<String>,
    resource_account: Option<String>,
    context: Context,
    identity: Vec<&'a str>,
    resource_policy: Option<&'a str>,
    boundary: Option<&'a str>,
    session: Option<&'a str>,
}

impl Decider {
    pub fn new() -> Decider {
        Decider::default()
    }

    /// Decide one line and append the answer line (with its newline) to `out`.
    pub fn decide_line(&mut self, line: &str, out: &mut String) {
        let mut id = "null";
        let result = self.read(line, &mut id).and_then(|l| self.answer(l));
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

    fn read<'a>(&self, line: &'a str, id_out: &mut &'a str) -> Result<Line<'a>, String> {
        let syntax = |e: json::SyntaxError| e.to_string();
        let mut p = Parser::new(line);
        let mut l = Line {
            id: "null",
            principal: None,
            action: None,
            resource: None,
            resource_account: None,
            context: Context::new(),
            identity: Vec::new(),
            resource_policy: None,
            boundary: None,
            session: None,
        };
        p.begin_object().map_err(syntax)?;
        let mut first = true;
        while let Some(key) = p.next_key(first).map_err(syntax)? {
            first = false;
            match key.as_str() {
                "id" => {
                    let (s, e) = p.skip_value(0).map_err(syntax)?;
                    l.id = &line[s..e];
                    *id_out = l.id;
                }
                "principal" | "action" | "resource" | "resource_account" => {
                    let v = p.value(0).map_err(syntax)?;
                    let s = match v.value {
                        Value::String(s) => Some(s),
                        Value::Null => None,
                        other => {
                            return Err(format!(
                                "{key} must be a string, not {}",
                                other.type_name()
                            ))
                        }
                    };
                    match key.as_str() {
                        "principal" => l.principal = s,
                        "action" => l.action = s,
                        "resource" => l.resource = s,
                        _ => l.resource_account = s,
                    }
                }
                "context" => {
                    let v = p.value(0).map_err(syntax)?;
                    read_context(&v.value, &mut l.context)?;
                }
                "identity_policies" => {
                    if !p.null() {
                        p.begin_array().map_err(syntax)?;
                        let mut first = true;
                        while p.next_item(first).map_err(syntax)? {
                            first = false;
                            let (s, e) = p.skip_value(1).map_err(syntax)?;
                            l.identity.push(&line[s..e]);
                        }
                    }
                }
                "resource_policy" | "permissions_boundary" | "session_policy" => {
                    let doc = if p.null() {
                        None
                    } else {
                        let (s, e) = p.skip_value(0).map_err(syntax)?;
                        Some(&line[s..e])
                    };
                    match key.as_str() {
                        "resource_policy" => l.resource_policy = doc,
                        "permissions_boundary" => l.boundary = doc,
                        _ => l.session = doc,
                    }
                }
                _ => {
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

    fn compiled(&mut self, kind: PolicyKind, name: &str, text: &str) -> Compiled {
        if let Some(c) = self.cache.get(&(kind, text.into())) {
            return c.clone();
        }
        if self.cache.len() >= CACHE_LIMIT {
            self.cache.clear();
        }
        let c = match json::parse(text) {
            Err(e) => Err(Arc::from(format!("{name}: {e}"))),
            Ok(doc) => match from_json(&doc, kind) {
                Ok(p) => Ok(Arc::new(CompiledPolicy::new(name, kind, &p))),
                Err(e) => Err(Arc::from(format!("{name}: {e}"))),
            },
        };
        self.cache.insert((kind, text.into()), c.clone());
        c
    }

    fn answer(&mut self, l: Line) -> Result<crate::Decision, String> {
        let principal_arn = l.principal.ok_or("principal is missing")?;
        let action = l.action.ok_or("action is missing")?;
        let resource = l.resource.unwrap_or_else(|| "*".to_string());
        let mut principal = Principal::from_arn(&principal_arn)?;
        let mut context = l.context;
        principal.learn_from_context(&context);
        principal.derive_context(&mut context);
        let resource_account = match l.resource_account {
            Some(a) => a,
            None => Arn::parse(&resource)
                .map(|a| a.account.to_string())
                .filter(|a| !a.is_empty())
                .unwrap_or_else(|| principal.account.clone()),
        };
        let mut identity = Vec::with_capacity(l.identity.len());
        for (i, text) in l.identity.iter().enumerate() {
            let name = format!("identity_policies[{i}]");
            identity.push(
                self.compiled(PolicyKind::Identity, &name, text)
                    .map_err(|e| e.to_string())?,
            );
        }
        let mut single =
            |kind, name: &str, text: Option<&str>| -> Result<Option<Arc<CompiledPolicy>>, String> {
                text.map(|t| self.compiled(kind, name, t).map_err(|e| e.to_string()))
                    .transpose()
            };
        let resource_policy = single(PolicyKind::Repository, "resource_policy", l.resource_policy)?;
        let boundary = single(PolicyKind::Boundary, "permissions_boundary", l.boundary)?;
        let session = single(PolicyKind::Session, "session_policy", l.session)?;
        let resource_policies: Vec<Arc<CompiledPolicy>> = resource_policy.into_iter().collect();
        let action = Action::new(&action);
        let req = Request {
            principal: &principal,
            action: &action,
            resource: &resource,
            resource_account: &resource_account,
            context: &context,
        };
        let set = PolicySet {
            identity: &identity,
            resource: &resource_policies,
            boundary: boundary.as_deref(),
            session: session.as_deref(),
        };
        Ok(decide(&req, &set))
    }
}

/// Read a context object: each key a string (or number/boolean) or an array of them.
pub fn read_context(v: &Value, ctx: &mut Context) -> Result<(), String> {
    let Value::Object(members) = v else {
        if *v == Value::Null {
            return Ok(());
        }
        return Err(format!("context must be an object, not {}", v.type_name()));
    };
    for (key, val) in members {
        let scalar = |v: &Value| -> Result<String, String> {
            match v {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.clone()),
                Value::Bool(b) => Ok(b.to_string()),
                other => Err(format!(
                    "context.{key}: a value must be a string (or an array of strings), not {}",
                    other.type_name()
                )),
            }
        };
        match &val.value {
            Value::Array(items) => {
                let values = items
                    .iter()
                    .map(|j| scalar(&j.value))
                    .collect::<Result<Vec<_>, _>>()?;
                ctx.insert_list(key, values);
            }
            Value::Null => {}
            other => ctx.insert(key, &scalar(other)?),
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
}
