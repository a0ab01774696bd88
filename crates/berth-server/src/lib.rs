//! `berth-server`: the `berth` binary's library. Owns configuration, the HTTP front doors
//! (the OCI `/v2` registry, the ECR JSON API, IAM and STS, Access Analyzer), the accept
//! loop and its limits, authentication (SigV4 against stored keys and STS sessions,
//! registry passwords), the authorizer that gathers policies and asks `berth-iam`, the
//! audit log and the command line. Business rules of the policy language live in
//! `berth-iam`, metadata in `berth-store`, blobs in `berth-blobs`, OCI formats in
//! `berth-oci`, signature checking in `berth-sigv4`.

pub mod analyzer;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod console;
pub mod ecr;
pub mod iam;
pub mod ids;
pub mod jobs;
pub mod metrics;
pub mod oci;
pub mod outbound;
pub mod peer;
pub mod query;
pub mod registry;
pub mod serve;
pub mod sts;
