//! ECR lifecycle policies: the policy language read into typed rules ([`policy`]), which
//! images a policy expires ([`evaluate`], pure: the semantics are written down there),
//! and running the stored policies, which deletes those images ([`run`]). The ECR front
//! door validates and previews with the same parser and evaluator; the expiry job
//! (`lifecycle_interval_seconds`) and `berth lifecycle run` go through [`run`].

pub mod evaluate;
pub mod policy;
pub mod run;

pub use evaluate::{Expiry, ImageFacts};
pub use policy::{Count, LifecyclePolicy, PolicyError, Rule, TagList, TagSelection};

#[cfg(test)]
mod tests;
