//! What the stores keep of replication: each registry's replication configuration and
//! repository creation templates (as the ECR wire JSON they were accepted in; berth-server
//! reads them into typed values), the outbox of replications, and the upload sessions
//! open at peers that deliveries continue ([`PeerUpload`]).
//!
//! The outbox is the durability of replication: a push, a tag removal or an image
//! deletion that must reach destinations writes one row per destination in its own
//! transaction ([`NewImage::replicate_to`](crate::NewImage), the `replicate_to` of
//! [`delete_tag`](crate::RegistryStore::delete_tag) and
//! [`delete_image`](crate::RegistryStore::delete_image)), so a crash after the write
//! loses nothing. The replication job takes due rows in id order, delivers them (each
//! delivery is idempotent: done twice, it changes nothing) and settles them; a settled
//! `push` row is the image's replication status at that destination.

/// A replication destination: a registry, by account and Region.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Replica {
    pub account: String,
    /// The Region's name (never `None`: a destination names its Region).
    pub region: String,
}

/// What a replication does at its destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaAction {
    /// Hold the image (its blobs and child manifests first) and move its tag, if any.
    Push,
    /// Remove the tag, if it still names the digest.
    DeleteTag,
    /// Delete the image.
    DeleteImage,
}

impl ReplicaAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicaAction::Push => "push",
            ReplicaAction::DeleteTag => "delete-tag",
            ReplicaAction::DeleteImage => "delete-image",
        }
    }

    pub fn parse(s: &str) -> Option<ReplicaAction> {
        Some(match s {
            "push" => ReplicaAction::Push,
            "delete-tag" => ReplicaAction::DeleteTag,
            "delete-image" => ReplicaAction::DeleteImage,
            _ => return None,
        })
    }
}

/// Where a replication stands (`DescribeImageReplicationStatus`'s statuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaState {
    InProgress,
    Complete,
    Failed,
}

impl ReplicaState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicaState::InProgress => "IN_PROGRESS",
            ReplicaState::Complete => "COMPLETE",
            ReplicaState::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<ReplicaState> {
        Some(match s {
            "IN_PROGRESS" => ReplicaState::InProgress,
            "COMPLETE" => ReplicaState::Complete,
            "FAILED" => ReplicaState::Failed,
            _ => return None,
        })
    }
}

/// One row of the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replication {
    pub id: i64,
    /// The source registry's account.
    pub account: String,
    /// The source registry's Region (`None`: the home Region; see [`crate::RegistryKey`]).
    pub region: Option<String>,
    /// The source repository (its bare name; the destination repository has the same).
    pub repository: String,
    pub digest: String,
    /// `Push`: the tag it moves (`None`: none); `DeleteTag`: the tag removed.
    pub tag: Option<String>,
    pub action: ReplicaAction,
    pub destination: Replica,
    pub state: ReplicaState,
    /// Why it failed (or why its last attempt did, while it is retried).
    pub failure_code: Option<String>,
    pub attempts: i64,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    /// When it may be tried (again), milliseconds since the epoch.
    pub next_at: i64,
    pub updated_at: i64,
    /// The backfill that asked for it, if one did.
    pub backfill: Option<String>,
}

/// A replication to record outside a push (a backfill's, or one asked for again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReplication {
    pub repository: String,
    pub digest: String,
    pub tag: Option<String>,
    pub action: ReplicaAction,
    pub destination: Replica,
    pub backfill: Option<String>,
}

/// How an attempt ended, for [`settle_replication`](crate::RegistryStore::settle_replication).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Delivered.
    Complete,
    /// Failed for good (`failure_code` says why); not tried again.
    Failed(String),
    /// Failed for now (the destination or a store out of reach): tried again at `next_at`.
    Retry { failure_code: String, next_at: i64 },
}

/// What an upload session this deployment has open at a peer uploads (see
/// [`ReplicationStore::peer_upload`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerUpload<'a> {
    /// The Region the peer is listed for.
    pub peer: &'a str,
    /// The destination registry.
    pub account: &'a str,
    pub region: &'a str,
    pub repository: &'a str,
    pub digest: &'a str,
}

/// What `berth replication status` says: the outbox at a glance.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplicationSummary {
    /// Replications not yet delivered.
    pub pending: i64,
    /// When the oldest of them was recorded (milliseconds since the epoch).
    pub oldest_pending: Option<i64>,
    pub complete: i64,
    pub failed: i64,
    /// The latest failure (settled, or of an attempt being retried).
    pub last_failure: Option<Replication>,
}

/// Whether a template write makes a new one or changes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateWrite {
    /// Only if there is none with that prefix (`false` back: there is one).
    Create,
    /// Only if there is one with that prefix (`false` back: there is none).
    Update,
}

/// A table of a registry's documents kept by prefix, as the ECR wire JSON they were
/// accepted in (repository creation templates, pull-through cache rules): its columns are
/// `registry`, `prefix` and `column`. Each backend keeps them with the same three
/// statements ([`TemplateWrite`] decides how a write may land).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PrefixedDocs {
    pub table: &'static str,
    pub column: &'static str,
}

pub(crate) const CREATION_TEMPLATES: PrefixedDocs = PrefixedDocs {
    table: "creation_templates",
    column: "template",
};

pub(crate) const PULL_THROUGH_RULES: PrefixedDocs = PrefixedDocs {
    table: "pull_through_rules",
    column: "rule",
};

/// A replication backfill (`StartReplicationBackfill`): the images of a registry that a
/// destination of its replication configuration should have, copied on request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backfill {
    /// A UUID.
    pub id: String,
    /// The source registry's account.
    pub account: String,
    /// The source registry's Region (`None`: the home Region).
    pub region: Option<String>,
    pub destination: Replica,
    /// `PREPARING`, `IN_PROGRESS`, `COMPLETE`, `FAILED`, `STOPPING` or `STOPPED`.
    pub status: String,
    pub failure_code: Option<String>,
    /// How many replications it made (`None` while preparing).
    pub total: Option<i64>,
    /// Milliseconds since the epoch.
    pub started_at: i64,
    pub ended_at: Option<i64>,
}

impl Backfill {
    /// Whether it has not reached a terminal status.
    pub fn active(&self) -> bool {
        matches!(
            self.status.as_str(),
            "PREPARING" | "IN_PROGRESS" | "STOPPING"
        )
    }
}

/// How far a backfill's replications are.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BackfillProgress {
    pub complete: i64,
    pub failed: i64,
    pub in_progress: i64,
    /// The distinct failure codes of its failed replications.
    pub failure_codes: Vec<String>,
}

/// Why a backfill was not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackfillRefusal {
    /// One is already active for that destination Region.
    InProgress,
    /// The registry has as many active backfills as it may.
    Limit,
}

/// Most backfills one registry has active at once (ECR's quota).
pub const MAX_ACTIVE_BACKFILLS: i64 = 10;

// Row mapping, shared by both backends (the statements differ; the rows do not).

/// The columns of a replication row, as the backends select them.
pub(crate) const COLUMNS: &str =
    "id, account_id, repository, digest, tag, action, dest_account, dest_region,
    status, failure_code, attempts, created_at, next_at, updated_at, backfill";

/// The columns of a backfill row.
pub(crate) const BACKFILL_COLUMNS: &str =
    "id, registry, dest_account, dest_region, status, failure_code, total, started_at, ended_at";

/// Backfills not yet in a terminal status, as a condition.
pub(crate) const ACTIVE_BACKFILL: &str = "status IN ('PREPARING', 'IN_PROGRESS', 'STOPPING')";

fn backend(e: sqlx::Error) -> crate::RegistryError {
    crate::RegistryError::Backend(e.to_string())
}

/// A row of either backend whose columns read as text and integers.
pub(crate) trait Row: sqlx::Row {
    fn text(&self, column: &str) -> crate::RegistryResult<String>;
    fn maybe_text(&self, column: &str) -> crate::RegistryResult<Option<String>>;
    fn int(&self, column: &str) -> crate::RegistryResult<i64>;
    fn maybe_int(&self, column: &str) -> crate::RegistryResult<Option<i64>>;
}

impl<R> Row for R
where
    R: sqlx::Row,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn text(&self, column: &str) -> crate::RegistryResult<String> {
        self.try_get(column).map_err(backend)
    }
    fn maybe_text(&self, column: &str) -> crate::RegistryResult<Option<String>> {
        self.try_get(column).map_err(backend)
    }
    fn int(&self, column: &str) -> crate::RegistryResult<i64> {
        self.try_get(column).map_err(backend)
    }
    fn maybe_int(&self, column: &str) -> crate::RegistryResult<Option<i64>> {
        self.try_get(column).map_err(backend)
    }
}

/// A replication row ([`COLUMNS`]).
pub(crate) fn replication_from(r: &impl Row) -> crate::RegistryResult<Replication> {
    let stored = r.text("repository")?;
    let (region, name) = crate::RegistryKey::split_stored(&stored);
    let (action, status) = (r.text("action")?, r.text("status")?);
    let corrupt = |what: &str, v: &str| {
        crate::RegistryError::Backend(format!(
            "a stored replication has an unreadable {what}: {v:?}"
        ))
    };
    Ok(Replication {
        id: r.int("id")?,
        account: r.text("account_id")?,
        region: region.map(str::to_string),
        repository: name.to_string(),
        digest: r.text("digest")?,
        tag: r.maybe_text("tag")?,
        action: ReplicaAction::parse(&action).ok_or_else(|| corrupt("action", &action))?,
        destination: Replica {
            account: r.text("dest_account")?,
            region: r.text("dest_region")?,
        },
        state: ReplicaState::parse(&status).ok_or_else(|| corrupt("status", &status))?,
        failure_code: r.maybe_text("failure_code")?,
        attempts: r.int("attempts")?,
        created_at: r.int("created_at")?,
        next_at: r.int("next_at")?,
        updated_at: r.int("updated_at")?,
        backfill: r.maybe_text("backfill")?,
    })
}

/// A backfill row ([`BACKFILL_COLUMNS`]).
pub(crate) fn backfill_from(r: &impl Row) -> crate::RegistryResult<Backfill> {
    let registry = r.text("registry")?;
    // The registry key: ACCOUNT, or REGION:ACCOUNT outside the home Region.
    let (region, account) = match registry.split_once(':') {
        Some((region, account)) => (Some(region.to_string()), account.to_string()),
        None => (None, registry),
    };
    Ok(Backfill {
        id: r.text("id")?,
        account,
        region,
        destination: Replica {
            account: r.text("dest_account")?,
            region: r.text("dest_region")?,
        },
        status: r.text("status")?,
        failure_code: r.maybe_text("failure_code")?,
        total: r.maybe_int("total")?,
        started_at: r.int("started_at")?,
        ended_at: r.maybe_int("ended_at")?,
    })
}

/// The outbox rows [`prune`](crate::RegistryStore::prune_replications) removes: settled
/// before the cutoff, and either not the latest push of their image to their destination,
/// or of an image no longer in its repository, or of a backfill that ended before it.
pub(crate) const PRUNE: &str = "DELETE FROM replications WHERE status <> 'IN_PROGRESS' AND updated_at < {cutoff}
    AND (id NOT IN (SELECT MAX(id) FROM replications WHERE action = 'push'
                    GROUP BY account_id, repository, digest, dest_account, dest_region)
         OR NOT EXISTS (SELECT 1 FROM images i WHERE i.account_id = replications.account_id
                        AND i.repository = replications.repository AND i.digest = replications.digest)
         OR backfill IN (SELECT id FROM replication_backfills
                         WHERE status IN ('COMPLETE', 'FAILED', 'STOPPED') AND ended_at < {cutoff}))";

/// Peer upload sessions untouched since the cutoff (the peer has long removed them).
pub(crate) const PRUNE_PEER_UPLOADS: &str = "DELETE FROM peer_uploads WHERE updated_at < {cutoff}";

/// Backfills that ended before the cutoff.
pub(crate) const PRUNE_BACKFILLS: &str = "DELETE FROM replication_backfills
    WHERE status IN ('COMPLETE', 'FAILED', 'STOPPED') AND ended_at < {cutoff}";

/// What the stores keep of replication (see the module's documentation); every
/// [`RegistryStore`](crate::RegistryStore) is one.
#[async_trait::async_trait]
pub trait ReplicationStore: Send + Sync {
    /// The registry's replication configuration (its wire JSON), if it has one.
    async fn replication_configuration(
        &self,
        registry: crate::RegistryKey<'_>,
    ) -> crate::RegistryResult<Option<String>>;
    /// Set (or, `None`, remove) the registry's replication configuration.
    async fn set_replication_configuration(
        &self,
        registry: crate::RegistryKey<'_>,
        config: Option<&str>,
        now: i64,
    ) -> crate::RegistryResult<()>;
    /// The registry's repository creation templates (their wire JSON), by prefix.
    async fn creation_templates(
        &self,
        registry: crate::RegistryKey<'_>,
    ) -> crate::RegistryResult<Vec<String>>;
    /// Write the template of `prefix` (see [`crate::TemplateWrite`]); false when refused.
    async fn put_creation_template(
        &self,
        registry: crate::RegistryKey<'_>,
        prefix: &str,
        template: &str,
        write: crate::TemplateWrite,
    ) -> crate::RegistryResult<bool>;
    /// Delete the template of `prefix`; returns it (`None`: there was none).
    async fn delete_creation_template(
        &self,
        registry: crate::RegistryKey<'_>,
        prefix: &str,
    ) -> crate::RegistryResult<Option<String>>;
    /// Record replications outside a push (a backfill's), in one transaction, due now.
    async fn enqueue_replications(
        &self,
        registry: crate::RegistryKey<'_>,
        replications: &[crate::NewReplication],
        now: i64,
    ) -> crate::RegistryResult<()>;
    /// Replications in progress that are due at `now`, oldest first.
    async fn due_replications(
        &self,
        now: i64,
        limit: i64,
    ) -> crate::RegistryResult<Vec<crate::Replication>>;
    /// Settle an attempt of replication `id`.
    async fn settle_replication(
        &self,
        id: i64,
        how: &crate::Settlement,
        now: i64,
    ) -> crate::RegistryResult<()>;
    /// The replication status of an image: the latest push of it to each destination.
    async fn image_replications(
        &self,
        registry: crate::RegistryKey<'_>,
        repository: &str,
        digest: &str,
    ) -> crate::RegistryResult<Vec<crate::Replication>>;
    /// The outbox at a glance.
    async fn replication_summary(&self) -> crate::RegistryResult<crate::ReplicationSummary>;
    /// Record a new backfill (status `PREPARING`) unless one is active for its destination
    /// Region in its registry, or the registry has [`crate::MAX_ACTIVE_BACKFILLS`] active.
    async fn start_backfill(
        &self,
        backfill: &crate::Backfill,
    ) -> crate::RegistryResult<std::result::Result<(), crate::BackfillRefusal>>;
    /// A registry's backfills, newest first.
    async fn backfills(
        &self,
        registry: crate::RegistryKey<'_>,
    ) -> crate::RegistryResult<Vec<crate::Backfill>>;
    /// The backfills of every registry not yet in a terminal status (the job's work).
    async fn active_backfills(&self) -> crate::RegistryResult<Vec<crate::Backfill>>;
    /// Change a backfill's status (with its total, failure and end, where given).
    async fn update_backfill(
        &self,
        id: &str,
        status: &str,
        total: Option<i64>,
        failure_code: Option<&str>,
        ended_at: Option<i64>,
    ) -> crate::RegistryResult<()>;
    /// How far a backfill's replications are.
    async fn backfill_progress(&self, id: &str) -> crate::RegistryResult<crate::BackfillProgress>;
    /// A backfill's settled replications (`state`: only those), in id order, from `offset`.
    async fn backfill_results(
        &self,
        id: &str,
        state: Option<crate::ReplicaState>,
        offset: i64,
        limit: i64,
    ) -> crate::RegistryResult<Vec<crate::Replication>>;
    /// Fail a backfill's replications not yet delivered (`code` says it was stopped).
    async fn stop_backfill_replications(
        &self,
        id: &str,
        code: &str,
        now: i64,
    ) -> crate::RegistryResult<u64>;
    /// Forget what the outbox no longer needs, settled before `before` (milliseconds):
    /// every replication but the latest push of each image to each destination (its
    /// status) while the image is there, and backfills that ended then, with their rows.
    /// Returns how many rows went. Peer upload sessions untouched since `before` go too.
    async fn prune_replications(&self, before: i64) -> crate::RegistryResult<u64>;
    /// The upload session this deployment opened at a peer for `upload` and has not
    /// finished, if one is remembered: a delivery tried again continues it.
    async fn peer_upload(
        &self,
        upload: &crate::PeerUpload<'_>,
    ) -> crate::RegistryResult<Option<String>>;
    /// Remember the session `id` for `upload` (replacing any), or forget it (`None`).
    async fn set_peer_upload(
        &self,
        upload: &crate::PeerUpload<'_>,
        id: Option<&str>,
        now: i64,
    ) -> crate::RegistryResult<()>;
}
