//! Who is calling and whether they may: SigV4 requests are matched to stored access keys
//! and STS sessions ([`authenticate`]), callers become IAM principals with their policies
//! ([`Caller`]), and every decision goes through [`authorizer`], which asks `berth-iam`
//! and writes the audit line. Stored policies are compiled once and cached ([`cache`]).

pub mod authenticate;
pub mod authorizer;
pub mod cache;
pub mod caller;
pub mod failures;
pub mod message;

pub use authenticate::{authenticate, Signing};
pub use authorizer::{authorize, Authorization};
pub use caller::{Caller, Claims, Identity};
