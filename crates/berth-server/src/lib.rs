//! `berth-server`: the `berth` binary's library. Owns configuration, the HTTP front doors
//! (today the IAM and STS query API), authentication (SigV4 against stored keys and STS
//! sessions), the authorizer that gathers policies and asks `berth-iam`, and the audit
//! log. Business rules of the policy language live in `berth-iam`, storage in
//! `berth-store`, signature checking in `berth-sigv4`.

pub mod analyzer;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod ecr;
pub mod iam;
pub mod ids;
pub mod oci;
pub mod query;
pub mod registry;
pub mod serve;
pub mod sts;
