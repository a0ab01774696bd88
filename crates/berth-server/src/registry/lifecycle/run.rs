//! Running lifecycle policies: evaluate a repository's stored policy and delete the
//! images it expires through [`RegistryStore::delete_image`] (their blobs are the
//! garbage collector's business), one audit line per image expired, then record the
//! run as the policy's `lastEvaluatedAt`. Runs as the registry itself, not as a caller:
//! no IAM decision is made, and audit lines name [`PRINCIPAL`].
//!
//! Between evaluation and deletion an image may change: each is read again just before
//! it is deleted, and left for the next run if it is gone or its tags moved. An image an
//! index of the repository lists is not deleted (`ImageReferencedByIndex`); it is tried
//! again after the other deletions of the run, so an index and its children that expire
//! together go in one run.

use std::net::{IpAddr, Ipv4Addr};

use berth_store::{RegistryError, RegistryStore, Repository, Store};

use super::evaluate::{Expiry, ImageFacts};
use super::policy::LifecyclePolicy;
use crate::audit::{Audit, AuditEvent};

/// Who the audit log says expired an image.
pub const PRINCIPAL: &str = "berth-lifecycle";

/// The audit line's action for an image a lifecycle policy expired.
pub const ACTION: &str = "lifecycle:ExpireImage";

/// What became of an image the policy expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Deleted.
    Expired,
    /// A dry run: would have been deleted.
    WouldExpire,
    /// Listed by an index of the repository: kept while the index is there.
    ReferencedByIndex,
    /// Deleted or re-tagged since it was evaluated: left for the next run.
    Changed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Expired => "expired",
            Outcome::WouldExpire => "would expire",
            Outcome::ReferencedByIndex => "kept: listed by an index",
            Outcome::Changed => "kept: changed since evaluated",
        }
    }
}

/// One image a run expired (or would, or could not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiration {
    pub account: String,
    pub repository: String,
    pub expiry: Expiry,
    pub rule_description: Option<String>,
    pub outcome: Outcome,
}

impl std::fmt::Display for Expiration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tags = if self.expiry.image.tags.is_empty() {
            "<untagged>".to_string()
        } else {
            self.expiry.image.tags.join(",")
        };
        write!(
            f,
            "{}\t{}\t{}\t{}\tpushed {}\trule {}{}\t{}",
            self.account,
            self.repository,
            self.expiry.image.digest,
            tags,
            crate::ids::iso8601(self.expiry.image.pushed_at / 1000),
            self.expiry.rule,
            self.rule_description
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default(),
            self.outcome.as_str()
        )
    }
}

/// Why a repository's policy could not be run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunError {
    /// The stored policy is not one this server accepts (stored by an older version).
    InvalidPolicy(String),
    Store(RegistryError),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::InvalidPolicy(m) => {
                write!(f, "its stored lifecycle policy is not valid: {m}")
            }
            RunError::Store(e) => e.fmt(f),
        }
    }
}

impl From<RegistryError> for RunError {
    fn from(e: RegistryError) -> Self {
        RunError::Store(e)
    }
}

/// Where a run writes and what it may do.
pub struct PolicyRun<'a> {
    pub registry: &'a dyn RegistryStore,
    pub audit: &'a Audit,
    /// The home Region (see [`berth_store::RegistryKey`]), for the repository ARNs of audit
    /// lines of repositories stored without one.
    pub region: &'a str,
    /// Evaluate and report, delete nothing, record nothing.
    pub dry_run: bool,
    /// Names this run's audit lines (their `request_id`).
    pub run_id: String,
}

impl PolicyRun<'_> {
    /// Run one repository's stored policy at `now` (nothing to do without one).
    pub async fn run(&self, repo: &Repository, now: i64) -> Result<Vec<Expiration>, RunError> {
        let Some(text) = repo.lifecycle_policy.as_deref() else {
            return Ok(Vec::new());
        };
        let policy =
            LifecyclePolicy::parse(text).map_err(|e| RunError::InvalidPolicy(e.to_string()))?;
        let images = self.registry.images(repo.registry(), &repo.name).await?;
        let facts: Vec<ImageFacts> = images.iter().map(ImageFacts::from).collect();
        let description = |rule: i64| {
            policy
                .rules
                .iter()
                .find(|r| r.priority == rule)
                .and_then(|r| r.description.clone())
        };
        let mut out: Vec<Expiration> = policy
            .evaluate(&facts, now)
            .into_iter()
            .map(|expiry| Expiration {
                account: repo.account.clone(),
                repository: repo.name.clone(),
                rule_description: description(expiry.rule),
                expiry,
                outcome: Outcome::WouldExpire,
            })
            .collect();
        if self.dry_run {
            return Ok(out);
        }
        // Expiries replicate as deletions where the replication configuration says so.
        let replicate_to = crate::registry::replication::outbox::targets(
            self.registry,
            repo.registry(),
            &repo.name,
        )
        .await?
        .deletes;
        let mut retry = Vec::new();
        for (i, e) in out.iter_mut().enumerate() {
            e.outcome = self.expire(repo, e, &replicate_to).await?;
            if e.outcome == Outcome::ReferencedByIndex {
                retry.push(i);
            }
        }
        // Indexes expired in this run are gone now: their children may go too.
        for i in retry {
            out[i].outcome = self.expire(repo, &out[i], &replicate_to).await?;
        }
        self.registry
            .lifecycle_evaluated(repo.registry(), &repo.name, text, now)
            .await?;
        Ok(out)
    }

    /// Delete one image the policy expires, if it is still as evaluated.
    async fn expire(
        &self,
        repo: &Repository,
        e: &Expiration,
        replicate_to: &[berth_store::Replica],
    ) -> Result<Outcome, RunError> {
        let digest = &e.expiry.image.digest;
        match self
            .registry
            .image(repo.registry(), &repo.name, digest)
            .await?
        {
            Some(now) if now.tags == e.expiry.image.tags => {}
            _ => return Ok(Outcome::Changed),
        }
        match self
            .registry
            .delete_image(repo.registry(), &repo.name, digest, replicate_to)
            .await
        {
            Ok(true) => {}
            Ok(false) => return Ok(Outcome::Changed),
            Err(RegistryError::ImageReferencedByIndex { .. }) => {
                return Ok(Outcome::ReferencedByIndex)
            }
            Err(err) => return Err(err.into()),
        }
        let reason = format!(
            "rule {}{} expired {} (tags: {})",
            e.expiry.rule,
            e.rule_description
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default(),
            digest,
            if e.expiry.image.tags.is_empty() {
                "none".to_string()
            } else {
                e.expiry.image.tags.join(", ")
            }
        );
        let region = repo.region.as_deref().unwrap_or(self.region);
        let resource = format!("{}@{digest}", repo.arn(region));
        self.audit.record(&AuditEvent {
            time: crate::ids::now(),
            request_id: &self.run_id,
            principal: PRINCIPAL,
            action: ACTION,
            resource: &resource,
            decision: "Expire",
            reason: &reason,
            source_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        });
        tracing::info!(
            account = %repo.account,
            repository = %repo.name,
            digest = %digest,
            rule = e.expiry.rule,
            "lifecycle policy expired an image"
        );
        Ok(Outcome::Expired)
    }
}

/// The repositories with a lifecycle policy: of one account or of every account, and
/// only those named `name` when given.
pub async fn repositories_with_policies(
    store: &dyn Store,
    registry: &dyn RegistryStore,
    account: Option<&str>,
    name: Option<&str>,
) -> Result<Vec<Repository>, String> {
    let accounts: Vec<String> = match account {
        Some(a) => vec![a.to_string()],
        None => store
            .accounts()
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|a| a.id)
            .collect(),
    };
    let mut out = Vec::new();
    for a in accounts {
        for r in registry
            .account_repositories(&a)
            .await
            .map_err(|e| e.to_string())?
        {
            if r.lifecycle_policy.is_some() && name.is_none_or(|n| n == r.name) {
                out.push(r);
            }
        }
    }
    Ok(out)
}
