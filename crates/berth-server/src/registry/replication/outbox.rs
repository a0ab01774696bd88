//! Where a write replicates: the destinations a registry's replication configuration
//! gives a repository, which a push, a tag removal or an image deletion hands to the store
//! so the outbox rows are written in the write's own transaction (see
//! [`berth_store::Replica`] and the delivery in [`super::deliver`]).

use berth_store::{RegistryError, RegistryKey, RegistryStore, Replica};
use tokio::sync::Notify;

use super::ReplicationConfiguration;
use crate::serve::App;

/// The destinations of one repository's writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    /// Where pushes (images and tag moves) go.
    pub pushes: Vec<Replica>,
    /// Where deletions go: the destinations of rules with `deleteReplication` enabled.
    pub deletes: Vec<Replica>,
}

/// The destinations the configuration of `registry` gives `repository` (none without a
/// configuration). A stored configuration that no longer reads is a backend failure:
/// it was checked when it was put.
pub async fn targets(
    store: &dyn RegistryStore,
    registry: RegistryKey<'_>,
    repository: &str,
) -> Result<Targets, RegistryError> {
    let Some(text) = store.replication_configuration(registry).await? else {
        return Ok(Targets::default());
    };
    let config = stored_configuration(&text)?;
    let mut t = Targets::default();
    for (d, deletes) in config.destinations_for(repository) {
        let replica = Replica {
            account: d.registry_id,
            region: d.region,
        };
        if deletes {
            t.deletes.push(replica.clone());
        }
        t.pushes.push(replica);
    }
    Ok(t)
}

/// A configuration as the store keeps it.
pub fn stored_configuration(text: &str) -> Result<ReplicationConfiguration, RegistryError> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| RegistryError::Backend(format!("a stored replication configuration: {e}")))?;
    ReplicationConfiguration::parse(&value).map_err(|e| {
        RegistryError::Backend(format!(
            "a stored replication configuration: {}",
            e.message()
        ))
    })
}

/// Wakes this node's replication job when a write here recorded replications (another
/// node's writes are found by the job's polling).
static WAKE: Notify = Notify::const_new();

/// Say that replications were recorded.
pub fn wake() {
    WAKE.notify_one();
}

/// Wait for [`wake`] (returns at once if one came since the last wait).
pub async fn woken() {
    WAKE.notified().await
}

/// Where pushes to `repo` replicate.
pub async fn pushes(
    app: &App,
    repo: &berth_store::Repository,
) -> Result<Vec<Replica>, RegistryError> {
    Ok(targets(&*app.registry, repo.registry(), &repo.name)
        .await?
        .pushes)
}

/// Where deletions in `repo` replicate.
pub async fn deletes(
    app: &App,
    repo: &berth_store::Repository,
) -> Result<Vec<Replica>, RegistryError> {
    Ok(targets(&*app.registry, repo.registry(), &repo.name)
        .await?
        .deletes)
}
