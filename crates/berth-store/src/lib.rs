//! `berth-store`: Berth's metadata and the backends that keep it.
//!
//! Owns the model of accounts, IAM users, groups, roles, managed and inline policies,
//! tags, access keys and STS sessions, and of repositories (typed settings), images, tags
//! and uploads, and the leases on background jobs that nodes share; the [`Store`],
//! [`RegistryStore`] and [`Leases`] traits every caller goes through,
//! and its embedded SQLite backend with versioned migrations. Secrets (secret access keys,
//! server secrets) cross the traits in clear and are stored sealed by the backend
//! ([`Sealer`], with a [`SecretsKey`] the store is opened with and never stores). Callers hold the traits
//! (`Arc<dyn Store>`, `Arc<dyn RegistryStore>`), whichever backend keeps them: the
//! embedded [`SqliteStore`], or [`PgStore`] on a PostgreSQL database that several nodes
//! share (its writes to what authorization reads notify every node,
//! [`PgStore::watch_changes`]). [`copy_metadata`] copies the first into the second. It validates nothing about policies and
//! knows no HTTP: callers check documents with the policy engine before they write them.

mod gc;
mod leases;
mod migrate;
mod model;
mod pg;
mod pg_gc;
mod pg_identities;
mod pg_pull_through;
mod pg_registry;
mod pg_replication;
mod pull_through;
mod registry;
mod replication;
mod schema;
mod sealer;
mod sqlite;
mod sqlite_gc;
mod sqlite_leases;
mod sqlite_pull_through;
mod sqlite_registry;
mod sqlite_replication;

pub use gc::{BlobLock, BlobSweep, Holding, ObjectRemoval};
pub use leases::{Lease, Leases};
pub use migrate::{
    copy_metadata, referenced_blobs, Conflict, CopyOptions, MetadataReport, TableReport,
    DEFAULT_BATCH_ROWS,
};
pub use model::*;
pub use pg::PgStore;
pub use pull_through::{PullThroughStore, UpstreamCredential};
pub use registry::*;
pub use replication::{
    Backfill, BackfillProgress, BackfillRefusal, NewReplication, PeerUpload, Replica,
    ReplicaAction, ReplicaState, Replication, ReplicationStore, ReplicationSummary, Settlement,
    TemplateWrite, MAX_ACTIVE_BACKFILLS,
};
pub use sealer::{Sealer, SecretSlot, SecretsKey};
pub use sqlite::{KeyError, SqliteStore};

use async_trait::async_trait;

/// What can go wrong in the store, in terms callers map to API errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The thing named does not exist (message names it).
    NotFound(String),
    /// Something with this name or id already exists.
    AlreadyExists(String),
    /// The thing is still in use (message says by what).
    Conflict(String),
    /// A quota would be exceeded.
    LimitExceeded(String),
    /// The backend failed (I/O, database).
    Backend(String),
    /// The backend cannot be reached right now (connection refused or lost, no free
    /// connection in time, the database shutting down); nothing was written, and the
    /// same request may succeed once it is back.
    Unavailable(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::NotFound(m)
            | StoreError::AlreadyExists(m)
            | StoreError::Conflict(m)
            | StoreError::LimitExceeded(m) => f.write_str(m),
            StoreError::Backend(m) => write!(f, "metadata store: {m}"),
            StoreError::Unavailable(m) => write!(f, "metadata store unavailable: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}

pub type Result<T> = std::result::Result<T, StoreError>;

/// The metadata store. Every method is one transaction: it happens entirely or not at all.
/// Every backend also keeps the [`Leases`] on background jobs.
#[async_trait]
pub trait Store: Leases + Send + Sync + 'static {
    /// Whether the store answers and its schema is current: the migrations applied are
    /// exactly those this build knows (an error says which differ).
    async fn check_schema(&self) -> Result<()>;

    // Accounts.
    /// Create an account with its root access key.
    async fn create_account(&self, account: &Account, root_key: &AccessKey) -> Result<()>;
    async fn account(&self, id: &str) -> Result<Option<Account>>;
    async fn accounts(&self) -> Result<Vec<Account>>;

    // Long-term access keys.
    async fn access_key(&self, id: &str) -> Result<Option<AccessKey>>;
    /// Add a key; fails with `LimitExceeded` if its owner already has `limit` keys.
    async fn create_access_key(&self, key: &AccessKey, limit: usize) -> Result<()>;
    /// The keys of a user (or of the root user for `None`).
    async fn access_keys(&self, account: &str, user: Option<&str>) -> Result<Vec<AccessKey>>;
    async fn set_access_key_status(
        &self,
        account: &str,
        user: Option<&str>,
        id: &str,
        status: KeyStatus,
    ) -> Result<()>;
    async fn delete_access_key(&self, account: &str, user: Option<&str>, id: &str) -> Result<()>;

    // STS sessions.
    async fn create_session(&self, session: &Session) -> Result<()>;
    async fn session(&self, access_key_id: &str) -> Result<Option<Session>>;
    /// Forget sessions that expired before `before` (seconds since the epoch); returns how many.
    async fn delete_sessions_expired_before(&self, before: i64) -> Result<u64>;

    // Users, groups, roles.
    async fn create_entity(&self, entity: &Entity, tags: &[Tag]) -> Result<()>;
    async fn entity(&self, account: &str, kind: EntityKind, name: &str) -> Result<Option<Entity>>;
    /// Entities of a kind whose path starts with `path_prefix`, ordered by name.
    async fn entities(
        &self,
        account: &str,
        kind: EntityKind,
        path_prefix: &str,
    ) -> Result<Vec<Entity>>;
    /// Delete an entity that has nothing attached (`Conflict` names what remains).
    async fn delete_entity(&self, account: &str, kind: EntityKind, name: &str) -> Result<()>;
    /// Change a role's description and maximum session duration.
    async fn update_role(&self, role: &Entity) -> Result<()>;
    async fn set_trust_policy(&self, account: &str, role: &str, document: &str) -> Result<()>;
    async fn set_boundary(
        &self,
        account: &str,
        kind: EntityKind,
        name: &str,
        policy_arn: Option<&str>,
    ) -> Result<()>;

    // Group membership.
    // Console passwords (login profiles) and the account's password policy.
    async fn login_profile(&self, account: &str, user: &str) -> Result<Option<LoginProfile>>;
    /// Give a user a login profile (`create`: `AlreadyExists` if it has one) or replace
    /// the one it has (`NotFound` if none); `NotFound` if the user does not exist.
    async fn put_login_profile(&self, profile: &LoginProfile, create: bool) -> Result<()>;
    /// `NotFound` if the user has none.
    async fn delete_login_profile(&self, account: &str, user: &str) -> Result<()>;
    /// The account's password policy (IAM's PasswordPolicy as JSON), if it set one.
    async fn password_policy(&self, account: &str) -> Result<Option<String>>;
    /// Set (`Some`) or delete (`None`; `NotFound` if there is none) the password policy.
    async fn set_password_policy(&self, account: &str, policy: Option<&str>) -> Result<()>;

    async fn add_user_to_group(&self, account: &str, group: &str, user: &str) -> Result<()>;
    async fn remove_user_from_group(&self, account: &str, group: &str, user: &str) -> Result<()>;
    async fn groups_for_user(&self, account: &str, user: &str) -> Result<Vec<Entity>>;
    async fn group_members(&self, account: &str, group: &str) -> Result<Vec<Entity>>;

    // Inline policies of users, groups and roles.
    async fn put_inline_policy(
        &self,
        account: &str,
        kind: EntityKind,
        owner: &str,
        name: &str,
        document: &str,
    ) -> Result<()>;
    async fn inline_policy(
        &self,
        account: &str,
        kind: EntityKind,
        owner: &str,
        name: &str,
    ) -> Result<Option<String>>;
    async fn delete_inline_policy(
        &self,
        account: &str,
        kind: EntityKind,
        owner: &str,
        name: &str,
    ) -> Result<()>;
    async fn inline_policy_names(
        &self,
        account: &str,
        kind: EntityKind,
        owner: &str,
    ) -> Result<Vec<String>>;

    // Managed policies and their versions.
    async fn create_policy(
        &self,
        policy: &ManagedPolicy,
        document: &str,
        tags: &[Tag],
    ) -> Result<()>;
    async fn policy(&self, account: &str, name: &str) -> Result<Option<ManagedPolicy>>;
    async fn policies(&self, account: &str, path_prefix: &str) -> Result<Vec<ManagedPolicy>>;
    async fn delete_policy(&self, account: &str, name: &str) -> Result<()>;
    async fn policy_version(
        &self,
        account: &str,
        name: &str,
        version: &str,
    ) -> Result<Option<PolicyVersion>>;
    async fn policy_versions(&self, account: &str, name: &str) -> Result<Vec<PolicyVersion>>;
    /// Add a version (at most `limit` kept); returns it.
    async fn create_policy_version(
        &self,
        account: &str,
        name: &str,
        document: &str,
        set_default: bool,
        now: i64,
        limit: usize,
    ) -> Result<PolicyVersion>;
    async fn set_default_policy_version(
        &self,
        account: &str,
        name: &str,
        version: &str,
        now: i64,
    ) -> Result<()>;
    async fn delete_policy_version(&self, account: &str, name: &str, version: &str) -> Result<()>;

    // Attached managed policies.
    async fn attach_policy(
        &self,
        account: &str,
        kind: EntityKind,
        owner: &str,
        policy_arn: &str,
    ) -> Result<()>;
    async fn detach_policy(
        &self,
        account: &str,
        kind: EntityKind,
        owner: &str,
        policy_arn: &str,
    ) -> Result<()>;
    async fn attached_policies(
        &self,
        account: &str,
        kind: EntityKind,
        owner: &str,
    ) -> Result<Vec<String>>;

    // Tags (on users, roles and managed policies).
    /// Add or replace tags; fails with `LimitExceeded` past `limit` tags in all.
    async fn tag(
        &self,
        account: &str,
        kind: TagTarget,
        owner: &str,
        tags: &[Tag],
        limit: usize,
    ) -> Result<()>;
    async fn untag(
        &self,
        account: &str,
        kind: TagTarget,
        owner: &str,
        keys: &[String],
    ) -> Result<()>;
    async fn tags(&self, account: &str, kind: TagTarget, owner: &str) -> Result<Vec<Tag>>;

    /// Install (or bring up to date) a policy the server ships, such as the AWS managed
    /// policies (account `aws`): the policy with exactly one version, `default_version`,
    /// holding `document`. Idempotent; attachments (by ARN) are untouched, and so is the
    /// path of a policy already installed (its ARN is what attachments name).
    async fn put_builtin_policy(&self, policy: &ManagedPolicy, document: &str) -> Result<()>;

    /// The users, groups and roles of `account` that have `policy_arn` attached (first)
    /// or use it as permissions boundary (second), ordered by name.
    async fn policy_entities(
        &self,
        account: &str,
        policy_arn: &str,
    ) -> Result<(Vec<Entity>, Vec<Entity>)>;

    /// How many users, groups and roles of `account` have `policy_arn` attached, and how
    /// many use it as permissions boundary (for policies shared by every account).
    async fn policy_usage_in(&self, account: &str, policy_arn: &str) -> Result<(i64, i64)>;

    /// Everything that decides what a user or role may do: its inline and attached
    /// policies, a user's groups' policies, its permissions boundary and its tags.
    async fn identity_documents(
        &self,
        account: &str,
        kind: EntityKind,
        name: &str,
    ) -> Result<IdentityDocuments>;
}

/// Now, in milliseconds since the Unix epoch (for rows a write makes without being told
/// the time, such as the outbox rows of a deletion).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
