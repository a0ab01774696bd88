//! Replication backfills (`StartReplicationBackfill`): the images a registry held before
//! a destination was configured, replicated to it on request. The replicate job moves
//! each active backfill along:
//!
//! - `PREPARING`: every image of every repository the configuration replicates to the
//!   destination becomes an outbox row naming the backfill — one per image and tag (ECR
//!   counts "each image and tag combination" once), one for an untagged image — all in
//!   one transaction; then `IN_PROGRESS` with that total. A destination no longer in the
//!   configuration fails it.
//! - `IN_PROGRESS` / `STOPPING`: its rows are delivered as any other; once none is left
//!   it is `COMPLETE` (or `STOPPED`), or `FAILED` when at least half of at least 100
//!   replications failed (ECR's rule).

use berth_store::{Backfill, NewReplication, RegistryError, RegistryKey, ReplicaAction};

use super::outbox::stored_configuration;
use crate::serve::App;

/// ECR fails a backfill when this share of its replications failed ...
const FAILED_SHARE: f64 = 0.5;
/// ... once at least this many were processed.
const FAILED_AFTER: i64 = 100;

/// Move every active backfill along; how many changed status.
pub async fn step(app: &App) -> Result<usize, RegistryError> {
    let mut changed = 0;
    for b in app.registry.active_backfills().await? {
        let now = crate::ids::now_ms();
        match b.status.as_str() {
            "PREPARING" => {
                prepare(app, &b, now).await?;
                changed += 1;
            }
            _ => {
                let p = app.registry.backfill_progress(&b.id).await?;
                if p.in_progress > 0 {
                    continue;
                }
                let processed = p.complete + p.failed;
                let (status, code) = if b.status == "STOPPING" {
                    ("STOPPED", None)
                } else if processed >= FAILED_AFTER
                    && p.failed as f64 >= FAILED_SHARE * processed as f64
                {
                    (
                        "FAILED",
                        Some(format!(
                            "TOO_MANY_FAILURES: {} of {processed} replications failed",
                            p.failed
                        )),
                    )
                } else {
                    ("COMPLETE", None)
                };
                app.registry
                    .update_backfill(&b.id, status, None, code.as_deref(), Some(now))
                    .await?;
                changed += 1;
            }
        }
    }
    Ok(changed)
}

/// Record the backfill's replications and start it.
async fn prepare(app: &App, b: &Backfill, now: i64) -> Result<(), RegistryError> {
    let source = RegistryKey {
        account: &b.account,
        region: b.region.as_deref(),
    };
    let config = match app.registry.replication_configuration(source).await? {
        Some(text) => stored_configuration(&text)?,
        None => super::ReplicationConfiguration { rules: Vec::new() },
    };
    let configured = config
        .unique_destinations()
        .into_iter()
        .any(|d| d.region == b.destination.region && d.registry_id == b.destination.account);
    if !configured {
        return app
            .registry
            .update_backfill(
                &b.id,
                "FAILED",
                Some(0),
                Some("DESTINATION_NOT_CONFIGURED: the destination is no longer in the registry's replication configuration"),
                Some(now),
            )
            .await;
    }
    // Recorded already (the node preparing it stopped before saying so): just start it.
    let p = app.registry.backfill_progress(&b.id).await?;
    let recorded = p.complete + p.failed + p.in_progress;
    if recorded > 0 {
        return app
            .registry
            .update_backfill(&b.id, "IN_PROGRESS", Some(recorded), None, None)
            .await;
    }
    let mut rows = Vec::new();
    for repo in app.registry.repositories(source).await? {
        let wanted = config.destinations_for(&repo.name).iter().any(|(d, _)| {
            d.region == b.destination.region && d.registry_id == b.destination.account
        });
        if !wanted {
            continue;
        }
        for image in app.registry.images(source, &repo.name).await? {
            let tags: Vec<Option<String>> = if image.tags.is_empty() {
                vec![None]
            } else {
                image.tags.iter().cloned().map(Some).collect()
            };
            for tag in tags {
                rows.push(NewReplication {
                    repository: repo.name.clone(),
                    digest: image.digest.clone(),
                    tag,
                    action: ReplicaAction::Push,
                    destination: b.destination.clone(),
                    backfill: Some(b.id.clone()),
                });
            }
        }
    }
    app.registry
        .enqueue_replications(source, &rows, now)
        .await?;
    app.registry
        .update_backfill(&b.id, "IN_PROGRESS", Some(rows.len() as i64), None, None)
        .await
}
