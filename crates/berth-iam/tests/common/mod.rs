//! Shared helpers for the engine's behaviour tests: build a request, decide it with
//! both the fast path and the explaining path, and check they agree.
#![allow(dead_code)]

use std::sync::Arc;

use berth_iam::{
    decide, evaluate, Action, CompiledPolicy, Context, Decision, Evaluation, PolicyKind, PolicySet,
    Principal, Request,
};

pub const A: &str = "111111111111";
pub const B: &str = "222222222222";
pub const REPO: &str = "arn:aws:ecr:us-east-1:111111111111:repository/app";

/// One request and the policies that bear on it.
#[derive(Clone, Default)]
pub struct Scenario {
    pub principal: String,
    pub action: String,
    pub resource: String,
    pub resource_account: Option<String>,
    pub context: Vec<(String, Vec<String>)>,
    pub identity: Vec<String>,
    pub resource_policy: Option<String>,
    pub boundary: Option<String>,
    pub session: Option<String>,
}

pub fn scenario(principal: &str, action: &str, resource: &str) -> Scenario {
    Scenario {
        principal: principal.into(),
        action: action.into(),
        resource: resource.into(),
        ..Scenario::default()
    }
}

impl Scenario {
    pub fn identity(mut self, doc: &str) -> Self {
        self.identity.push(doc.into());
        self
    }
    pub fn resource_policy(mut self, doc: &str) -> Self {
        self.resource_policy = Some(doc.into());
        self
    }
    pub fn boundary(mut self, doc: &str) -> Self {
        self.boundary = Some(doc.into());
        self
    }
    pub fn session(mut self, doc: &str) -> Self {
        self.session = Some(doc.into());
        self
    }
    pub fn ctx(mut self, key: &str, value: &str) -> Self {
        self.context.push((key.into(), vec![value.into()]));
        self
    }
    pub fn ctx_list(mut self, key: &str, values: &[&str]) -> Self {
        self.context
            .push((key.into(), values.iter().map(|v| v.to_string()).collect()));
        self
    }
    pub fn resource_account(mut self, account: &str) -> Self {
        self.resource_account = Some(account.into());
        self
    }

    /// Decide with the fast path and the explaining path; they must agree.
    pub fn evaluate(&self) -> Evaluation {
        let compile = |kind, name: &str, doc: &str| {
            Arc::new(
                CompiledPolicy::parse(name, kind, doc)
                    .unwrap_or_else(|e| panic!("{name} does not parse: {e}\n{doc}")),
            )
        };
        let identity: Vec<_> = self
            .identity
            .iter()
            .enumerate()
            .map(|(i, d)| compile(PolicyKind::Identity, &format!("identity{i}"), d))
            .collect();
        let resource: Vec<_> = self
            .resource_policy
            .iter()
            .map(|d| compile(PolicyKind::Repository, "resource", d))
            .collect();
        let boundary = self
            .boundary
            .as_deref()
            .map(|d| compile(PolicyKind::Boundary, "boundary", d));
        let session = self
            .session
            .as_deref()
            .map(|d| compile(PolicyKind::Session, "session", d));
        let mut ctx = Context::new();
        for (k, vs) in &self.context {
            ctx.insert_list(k, vs.clone());
        }
        let mut principal = Principal::from_arn(&self.principal).expect("principal");
        principal.settle_context(&mut ctx);
        let account = self
            .resource_account
            .clone()
            .unwrap_or_else(|| principal.resource_account(&self.resource));
        let action = Action::new(&self.action);
        let req = Request {
            principal: &principal,
            action: &action,
            resource: &self.resource,
            resource_account: &account,
            context: &ctx,
        };
        let set = PolicySet {
            identity: &identity,
            resource: &resource,
            boundary: boundary.as_deref(),
            session: session.as_deref(),
        };
        let ev = evaluate(&req, &set);
        assert_eq!(
            decide(&req, &set),
            ev.decision,
            "fast and explaining paths disagree"
        );
        ev
    }

    pub fn decision(&self) -> Decision {
        self.evaluate().decision
    }
}

/// An identity policy with one statement.
pub fn identity_stmt(effect: &str, action: &str, resource: &str, condition: &str) -> String {
    let cond = if condition.is_empty() {
        String::new()
    } else {
        format!(r#","Condition":{condition}"#)
    };
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"{effect}","Action":"{action}","Resource":"{resource}"{cond}}}]}}"#
    )
}

/// A repository policy with one statement naming `principal` (a JSON value).
pub fn repo_stmt(effect: &str, principal: &str, action: &str, condition: &str) -> String {
    let cond = if condition.is_empty() {
        String::new()
    } else {
        format!(r#","Condition":{condition}"#)
    };
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"{effect}","Principal":{principal},"Action":"{action}"{cond}}}]}}"#
    )
}

pub fn user(account: &str, name: &str) -> String {
    format!("arn:aws:iam::{account}:user/{name}")
}

pub fn session(account: &str, role: &str, name: &str) -> String {
    format!("arn:aws:sts::{account}:assumed-role/{role}/{name}")
}
