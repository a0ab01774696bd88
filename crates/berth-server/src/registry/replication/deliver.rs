//! The replication job: delivers the outbox ([`berth_store::Replication`]) on one node at
//! a time (its lease), in id order, so a push, a later tag move and a later deletion of
//! one image reach a destination in the order they happened.
//!
//! Why nothing is lost or doubled: the rows are written in the transaction of the write
//! that asks for them, and a row is settled only after its delivery is done; a node that
//! dies (or loses the lease) part-way leaves the row in progress, and the next holder
//! delivers it again. Every step of a delivery is idempotent — a blob the destination
//! repository holds is held, not copied; an image stored with the same digest is the same
//! image; a tag already on the digest stays — so a delivery done twice changes nothing.
//!
//! Within one deployment no byte moves: blobs are stored once by digest for every
//! registry, so delivering an image is making the destination repository hold its blobs
//! (under the collector's blob lock, as a cross-repository mount) and storing its
//! manifests, children of an index first.
//!
//! Who may replicate: within one account (another Region), the account itself. Across
//! accounts, the destination decides: its registry policy must allow the source
//! account's root `ecr:ReplicateImage` on the destination repository, and, when that
//! repository does not exist, `ecr:CreateRepository` too (it is then made from the
//! destination's `REPLICATION` creation template, or with ECR's defaults). A replicated
//! image is not replicated onward.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use berth_iam::PolicyKind;
use berth_store::{RegistryError, RegistryKey, ReplicaAction, Replication, Repository, Settlement};

use super::templates::AppliedFor;
use crate::audit::AuditEvent;
use crate::auth::authorizer::{authorize, Authorization};
use crate::registry::push::{store_manifest, ManifestPut, PushError};
use crate::registry::repository_arn;
use crate::serve::{App, Origin};

/// How many rows one pass takes.
const BATCH: i64 = 64;
/// How long the job waits for a write to wake it before it looks again (other nodes'
/// writes are found this way).
const POLL: Duration = Duration::from_millis(250);
/// How deep indexes may nest.
const MAX_DEPTH: usize = 8;
/// How long settled replications and ended backfills are kept (ECR keeps backfills 90
/// days); the latest push of a present image to a destination stays, as its status.
const RETENTION: Duration = Duration::from_secs(90 * 86_400);
/// How often the outbox is pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// The longest wait before a transient failure is tried again.
const MAX_BACKOFF_MS: i64 = 5 * 60 * 1000;

/// The job's work: deliver what is due, then wait to be woken (or poll), for as long as
/// this node holds the lease (the job runner drops it when the lease goes).
pub async fn run(app: &App) -> String {
    let mut pruned_at: Option<tokio::time::Instant> = None;
    loop {
        if pruned_at.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            let before = crate::ids::now_ms() - RETENTION.as_millis() as i64;
            match app.registry.prune_replications(before).await {
                Ok(n) => tracing::info!(rows = n, "pruned the replication outbox"),
                Err(e) => tracing::warn!(error = %e, "pruning the replication outbox failed"),
            }
            pruned_at = Some(tokio::time::Instant::now());
        }
        let backfills = match super::backfill::step(app).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "moving replication backfills along failed");
                0
            }
        };
        match deliver_due(app).await {
            Ok(n) if n > 0 || backfills > 0 => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reading the replication outbox failed"),
        }
        let _ = tokio::time::timeout(POLL, super::outbox::woken()).await;
    }
}

/// Deliver one batch of due replications; how many were settled.
pub async fn deliver_due(app: &App) -> Result<usize, RegistryError> {
    let now = crate::ids::now_ms();
    let due = app.registry.due_replications(now, BATCH).await?;
    for r in &due {
        let how = match deliver(app, r).await {
            Ok(()) => Settlement::Complete,
            Err(Failure::Permanent(code)) => Settlement::Failed(code),
            Err(Failure::Transient(code)) => Settlement::Retry {
                failure_code: code,
                next_at: crate::ids::now_ms() + backoff(r.attempts),
            },
        };
        audit(app, r, &how);
        let result = match &how {
            Settlement::Complete => "complete",
            Settlement::Failed(_) => "failed",
            Settlement::Retry { .. } => "retry",
        };
        crate::metrics::metrics()
            .replications
            .get_or_create(&crate::metrics::ResultLabels { result })
            .inc();
        app.registry
            .settle_replication(r.id, &how, crate::ids::now_ms())
            .await?;
    }
    Ok(due.len())
}

/// 1 s, 2 s, 4 s … up to five minutes.
fn backoff(attempts: i64) -> i64 {
    1000i64
        .saturating_mul(1 << attempts.clamp(0, 20))
        .min(MAX_BACKOFF_MS)
}

/// Why a delivery did not happen: for good (the row is FAILED with this code), or for now
/// (tried again later).
#[derive(Debug)]
pub enum Failure {
    Permanent(String),
    Transient(String),
}

fn store_failure(e: RegistryError) -> Failure {
    Failure::Transient(format!("STORE_UNAVAILABLE: {e}"))
}

async fn deliver(app: &App, r: &Replication) -> Result<(), Failure> {
    let dest_region = r.destination.region.as_str();
    if !app.config.regions.iter().any(|x| x == dest_region) {
        // Another deployment's Region: through the peer link, if one is configured.
        return match app.config.peers.iter().find(|p| p.region == dest_region) {
            Some(peer) => crate::peer::client::deliver(app, peer, r).await,
            None => Err(Failure::Permanent(format!(
                "REGION_NOT_SERVED: neither this deployment nor a peer of it serves Region {dest_region}"
            ))),
        };
    }
    let src = RegistryKey {
        account: &r.account,
        region: r.region.as_deref(),
    };
    let dest = app.key(&r.destination.account, dest_region);
    let arn = repository_arn(dest_region, dest.account, &r.repository);
    if !allowed(
        app,
        &r.account,
        dest,
        dest_region,
        &arn,
        "ecr:ReplicateImage",
    )
    .await?
    {
        return Err(Failure::Permanent(format!(
            "REPLICATION_NOT_ALLOWED: the registry policy of {} in {dest_region} does not allow \
             arn:aws:iam::{}:root to perform ecr:ReplicateImage on {arn}",
            dest.account, r.account
        )));
    }
    match r.action {
        ReplicaAction::Push => push(app, r, src, dest, dest_region, &arn).await,
        ReplicaAction::DeleteTag => {
            let tag = r.tag.as_deref().unwrap_or_default();
            let at = app
                .registry
                .image(dest, &r.repository, tag)
                .await
                .map_err(store_failure)?;
            // Only the tag as it was replicated: a tag since moved there stays.
            if at.is_some_and(|i| i.digest == r.digest) {
                app.registry
                    .delete_tag(dest, &r.repository, tag, &[])
                    .await
                    .map_err(store_failure)?;
            }
            Ok(())
        }
        ReplicaAction::DeleteImage => {
            match app
                .registry
                .delete_image(dest, &r.repository, &r.digest, &[])
                .await
            {
                Ok(_) | Err(RegistryError::RepositoryNotFound { .. }) => Ok(()),
                Err(RegistryError::ImageReferencedByIndex { .. }) => {
                    Err(Failure::Permanent(format!(
                        "IMAGE_REFERENCED_BY_INDEX: {} is listed by an index in {arn}; delete the index there first",
                        r.digest
                    )))
                }
                Err(e) => Err(store_failure(e)),
            }
        }
    }
}

async fn push(
    app: &App,
    r: &Replication,
    src: RegistryKey<'_>,
    dest: RegistryKey<'_>,
    dest_region: &str,
    arn: &str,
) -> Result<(), Failure> {
    let Some(image) = app
        .registry
        .image(src, &r.repository, &r.digest)
        .await
        .map_err(store_failure)?
    else {
        return Err(Failure::Permanent(format!(
            "SOURCE_IMAGE_DELETED: {} was deleted from the source repository before it was replicated",
            r.digest
        )));
    };
    let repo =
        destination_repository(app, &r.account, &r.repository, dest, dest_region, arn).await?;
    copy(app, src, &r.repository, &repo, &image, 0).await?;
    if let Some(tag) = &r.tag {
        let now = crate::ids::now_ms();
        let put = ManifestPut {
            bytes: &image.manifest,
            content_type: Some(&image.media_type),
            tag: Some(tag),
            expected_digest: Some(&r.digest),
            now,
            replicate_to: Vec::new(),
        };
        match store_manifest(app, &repo, put).await {
            Ok(_) => {}
            // ECR: a tag an immutable destination already has elsewhere is dropped; the
            // image is there, untagged by this push.
            Err(PushError::TagImmutable { .. }) => {
                tracing::info!(repository = %r.repository, tag, "replicated image left untagged: the destination's tag is immutable")
            }
            Err(e) => return Err(push_failure(e)),
        }
    }
    Ok(())
}

fn push_failure(e: PushError) -> Failure {
    match e {
        PushError::Store(RegistryError::RepositoryNotFound { name, .. }) => Failure::Transient(
            format!("REPOSITORY_NOT_FOUND: the destination repository {name} was deleted during the replication"),
        ),
        PushError::Store(e) => store_failure(e),
        other => Failure::Permanent(format!("IMAGE_NOT_STORED: {other:?}")),
    }
}

/// Make the destination repository hold every blob and child manifest of `image`, then
/// store it (untagged).
fn copy<'a>(
    app: &'a App,
    src: RegistryKey<'a>,
    name: &'a str,
    repo: &'a Repository,
    image: &'a berth_store::Image,
    depth: usize,
) -> futures_util::future::BoxFuture<'a, Result<(), Failure>> {
    Box::pin(async move {
        if depth > MAX_DEPTH {
            return Err(Failure::Permanent(format!(
                "IMAGE_TOO_DEEP: indexes nest more than {MAX_DEPTH} deep"
            )));
        }
        let m = berth_oci::parse_manifest(&image.manifest, Some(&image.media_type))
            .map_err(|e| Failure::Permanent(format!("MANIFEST_INVALID: {}", e.0)))?;
        let now = crate::ids::now_ms();
        for (digest, kind) in &m.refs {
            match kind {
                berth_oci::Reference::Blob => {
                    let size = app
                        .registry
                        .repository_blob(src, name, digest)
                        .await
                        .map_err(store_failure)?
                        .ok_or_else(|| {
                            Failure::Permanent(format!(
                                "SOURCE_BLOB_MISSING: the source repository no longer holds {digest}"
                            ))
                        })?;
                    app.registry
                        .add_repository_blob(repo.registry(), &repo.name, digest, size, now)
                        .await
                        .map_err(|e| push_failure(PushError::Store(e)))?;
                }
                berth_oci::Reference::Manifest => {
                    let child = app
                        .registry
                        .image(src, name, digest)
                        .await
                        .map_err(store_failure)?
                        .ok_or_else(|| {
                            Failure::Permanent(format!(
                                "SOURCE_IMAGE_DELETED: {digest}, listed by the index, is no longer in the source repository"
                            ))
                        })?;
                    copy(app, src, name, repo, &child, depth + 1).await?;
                }
            }
        }
        let put = ManifestPut {
            bytes: &image.manifest,
            content_type: Some(&image.media_type),
            tag: None,
            expected_digest: Some(&image.digest),
            now,
            replicate_to: Vec::new(),
        };
        store_manifest(app, repo, put).await.map_err(push_failure)?;
        Ok(())
    })
}

/// The destination repository: there already, or made (from the destination's
/// `REPLICATION` template, else with ECR's defaults) where the destination allows it.
pub(crate) async fn destination_repository(
    app: &App,
    source_account: &str,
    repository: &str,
    dest: RegistryKey<'_>,
    dest_region: &str,
    arn: &str,
) -> Result<Repository, Failure> {
    if let Some(repo) = app
        .registry
        .repository(dest, repository)
        .await
        .map_err(store_failure)?
    {
        return Ok(repo);
    }
    if !allowed(
        app,
        source_account,
        dest,
        dest_region,
        arn,
        "ecr:CreateRepository",
    )
    .await?
    {
        return Err(Failure::Permanent(format!(
            "REPOSITORY_NOT_FOUND: {} does not exist in registry {} ({dest_region}), and its \
             registry policy does not allow arn:aws:iam::{}:root to create it \
             (ecr:CreateRepository): create the repository there, then push again or start \
             a replication backfill",
            repository, dest.account, source_account
        )));
    }
    let (repo, tags, _) = super::templated_repository(
        app,
        dest,
        repository,
        AppliedFor::Replication,
        crate::ids::now_ms(),
    )
    .await
    .map_err(store_failure)?;
    match app.registry.create_repository(&repo, &tags).await {
        Ok(()) => {
            app.caches.invalidate_registry();
            Ok(repo)
        }
        // Made meanwhile (another delivery, or its owner): take it as it is.
        Err(RegistryError::RepositoryAlreadyExists { .. }) => app
            .registry
            .repository(dest, repository)
            .await
            .map_err(store_failure)?
            .ok_or_else(|| Failure::Transient("REPOSITORY_NOT_FOUND: made and gone again".into())),
        Err(e) => Err(store_failure(e)),
    }
}

/// Whether the destination lets the source account's root do `action` on `arn`: always
/// within one account; across accounts, only where the destination's registry policy
/// allows it (decided by the IAM engine as any cross-account request).
pub(crate) async fn allowed(
    app: &App,
    source_account: &str,
    dest: RegistryKey<'_>,
    dest_region: &str,
    arn: &str,
    action: &str,
) -> Result<bool, Failure> {
    if source_account == dest.account {
        return Ok(true);
    }
    let Some(text) = app
        .caches
        .registry_policy(&*app.registry, dest)
        .await
        .map_err(store_failure)?
    else {
        return Ok(false);
    };
    let policy = app
        .caches
        .compiled(PolicyKind::Registry, &text)
        .map_err(|e| Failure::Permanent(format!("REGISTRY_POLICY_INVALID: {}", e.message)))?;
    let caller = crate::auth::authenticate::root(source_account, "");
    let origin = Origin {
        request_id: crate::ids::request_id(),
        source_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        secure: true,
        now: crate::ids::now(),
        region: dest_region.to_string(),
    };
    Ok(authorize(
        app,
        &caller,
        &origin,
        &Authorization {
            action,
            resource: arn,
            resource_account: dest.account,
            resource_policies: &[policy],
            context: &[],
            resource_must_allow: false,
        },
    )
    .is_ok())
}

/// One audit line per replication settled or failing.
fn audit(app: &App, r: &Replication, how: &Settlement) {
    let (decision, reason) = match how {
        Settlement::Complete => ("Replicated", "delivered".to_string()),
        Settlement::Failed(code) => ("ReplicationFailed", code.clone()),
        Settlement::Retry { failure_code, .. } => ("ReplicationRetried", failure_code.clone()),
    };
    let principal = format!("arn:aws:iam::{}:root", r.account);
    let resource = format!(
        "{}@{} ({})",
        repository_arn(&r.destination.region, &r.destination.account, &r.repository),
        r.digest,
        r.action.as_str()
    );
    app.audit.record(&AuditEvent {
        time: crate::ids::now(),
        request_id: &format!("replication-{}", r.id),
        principal: &principal,
        action: "ecr:ReplicateImage",
        resource: &resource,
        decision,
        reason: &reason,
        source_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    });
    match how {
        Settlement::Complete => {
            tracing::info!(id = r.id, repository = %r.repository, digest = %r.digest, region = %r.destination.region, "replicated")
        }
        _ => {
            tracing::warn!(id = r.id, repository = %r.repository, digest = %r.digest, region = %r.destination.region, reason = %reason, "replication failed")
        }
    }
}
