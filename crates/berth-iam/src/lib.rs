//! `berth-iam`: the AWS IAM policy language as Berth enforces it.
//!
//! Owns ARNs, policy documents (parse with precise errors, print), compilation (actions,
//! resources, principals and condition values read once), evaluation (IAM's decision
//! logic with explanations) and policy variables. It does no I/O and knows nothing of
//! HTTP or storage: callers gather the policies and the request context.

pub mod arn;
pub mod compile;
pub mod condition;
pub mod evaluate;
pub mod glob;
pub mod json;
pub mod lines;
pub mod lint;
pub mod policy;
pub mod request;
pub mod values;
pub mod variables;

pub use compile::{CompiledPolicy, PrincipalMatch};
pub use evaluate::{
    decide, decide_with_cause, evaluate, resource_policy_allows, Cause, Decision, Evaluation,
    MatchedStatement, PolicySet, PolicyType,
};
pub use policy::ast::{Policy, PolicyKind};
pub use policy::parse::{parse_policy, PolicyError, Problem};
pub use request::{Action, Context, Principal, PrincipalKind, Request};
