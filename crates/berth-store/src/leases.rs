//! Leases on background jobs, shared by every node of a deployment through the metadata
//! store: the node holding a job's unexpired lease is the one that runs the job.

use async_trait::async_trait;

use crate::Result;

/// A job's lease as the store has it. Times are milliseconds since the epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub job: String,
    /// Who holds (or last held) it: a node's id for this process.
    pub holder: String,
    /// When the current holder took it (kept across renewals).
    pub acquired_at: i64,
    /// Until when it is held; 0 once released.
    pub expires_at: i64,
    /// When the job last ran, on whichever node (`None`: never).
    pub last_run_at: Option<i64>,
}

/// Job leases. Every backend implements them, each method in one atomic statement, so
/// two nodes asking at once cannot both get a lease. The clock is the caller's: nodes'
/// clocks must agree to well within a lease's length.
#[async_trait]
pub trait Leases: Send + Sync + 'static {
    /// Take the lease on `job` for `holder` until `now + ttl` if it is free, expired or
    /// already `holder`'s (which renews it). Returns the lease if `holder` has it now,
    /// `None` if another holder's unexpired lease stands.
    async fn try_lease(&self, job: &str, holder: &str, now: i64, ttl: i64)
        -> Result<Option<Lease>>;
    /// Note that `holder` ran `job` at `at`; false (nothing written) if it no longer
    /// holds the lease.
    async fn record_run(&self, job: &str, holder: &str, at: i64) -> Result<bool>;
    /// Give up `holder`'s lease on `job` so another node may take it at once (its last
    /// run is kept). False if `holder` did not hold it.
    async fn release_lease(&self, job: &str, holder: &str) -> Result<bool>;
    /// The lease on `job`, held or not.
    async fn lease(&self, job: &str) -> Result<Option<Lease>>;
}
