//! The registry's metadata: repositories (settings, repository and lifecycle policies),
//! images (manifests kept byte for byte), tags, references between manifests and blobs,
//! the blobs each repository holds, upload sessions, registry policies. Registry times are
//! milliseconds since the Unix epoch (ECR answers with fractional seconds).

use async_trait::async_trait;

/// Why a [`RegistryStore`] call failed. Plain facts, no wire wording: each API maps these
/// to its own errors at its front door (ECR's exceptions, OCI's error codes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryError {
    /// The repository does not exist (or was deleted meanwhile).
    RepositoryNotFound { account: String, name: String },
    /// A repository with this name already exists.
    RepositoryAlreadyExists { account: String, name: String },
    /// The repository still holds images and the delete was not forced.
    RepositoryNotEmpty { account: String, name: String },
    /// The image is a child of an index (manifest list) of the same repository.
    ImageReferencedByIndex {
        account: String,
        repository: String,
        digest: String,
    },
    /// The backend failed (I/O, database, unreadable stored data).
    Backend(String),
    /// The backend cannot be reached right now (see [`crate::StoreError::Unavailable`]).
    Unavailable(String),
}

impl std::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegistryError::RepositoryNotFound { account, name } => {
                write!(f, "there is no repository '{name}' in registry '{account}'")
            }
            RegistryError::RepositoryAlreadyExists { account, name } => {
                write!(f, "repository '{name}' already exists in registry '{account}'")
            }
            RegistryError::RepositoryNotEmpty { account, name } => write!(
                f,
                "repository '{name}' of registry '{account}' still holds images; delete them first or force the delete"
            ),
            RegistryError::ImageReferencedByIndex {
                account,
                repository,
                digest,
            } => write!(
                f,
                "image {digest} of repository '{repository}' in registry '{account}' is listed by an index of that repository; delete the index first"
            ),
            RegistryError::Backend(m) => write!(f, "metadata store: {m}"),
            RegistryError::Unavailable(m) => write!(f, "metadata store unavailable: {m}"),
        }
    }
}

impl std::error::Error for RegistryError {}

/// The registry's store errors other than its own come only from the backend.
impl From<crate::StoreError> for RegistryError {
    fn from(e: crate::StoreError) -> Self {
        match e {
            crate::StoreError::Backend(m) => RegistryError::Backend(m),
            crate::StoreError::Unavailable(m) => RegistryError::Unavailable(m),
            other => RegistryError::Backend(other.to_string()),
        }
    }
}

pub type RegistryResult<T> = std::result::Result<T, RegistryError>;

type Result<T> = RegistryResult<T>;

/// Which registry a call is about: an account's, in one Region (ECR has one registry
/// per account per Region). `region: None` is the deployment's home Region.
///
/// How Regions are stored: a repository of the home Region is stored under its name, as
/// before a deployment served several Regions (so such a data directory or database
/// keeps working unchanged); a repository of another Region under `REGION:NAME` (`:` is
/// never in a repository name, so the two cannot meet). Every table keyed by repository
/// (images, tags, blobs held, uploads, previews, resource tags) uses that stored name;
/// only the stores see it: what they return carries the bare name and the Region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RegistryKey<'a> {
    pub account: &'a str,
    /// `None`: the home Region.
    pub region: Option<&'a str>,
}

impl<'a> RegistryKey<'a> {
    /// The account's registry in the home Region.
    pub fn home(account: &'a str) -> RegistryKey<'a> {
        RegistryKey {
            account,
            region: None,
        }
    }

    /// The name the stores keep repository `name` of this registry under.
    pub fn stored_name<'n>(&self, name: &'n str) -> std::borrow::Cow<'n, str> {
        match self.region {
            None => std::borrow::Cow::Borrowed(name),
            Some(r) => std::borrow::Cow::Owned(format!("{r}:{name}")),
        }
    }

    /// A stored name's Region (`None`: home) and bare name.
    pub fn split_stored(stored: &str) -> (Option<&str>, &str) {
        match stored.split_once(':') {
            Some((region, name)) => (Some(region), name),
            None => (None, stored),
        }
    }

    /// The key registry-wide rows (the registry policy) are kept under: the account for
    /// the home Region, `REGION:ACCOUNT` for another.
    pub fn stored_account(&self) -> std::borrow::Cow<'a, str> {
        match self.region {
            None => std::borrow::Cow::Borrowed(self.account),
            Some(r) => std::borrow::Cow::Owned(format!("{r}:{}", self.account)),
        }
    }

    /// Whether a stored name belongs to this registry's Region.
    pub fn holds(&self, stored: &str) -> bool {
        Self::split_stored(stored).0 == self.region
    }
}

/// A repository and its settings, read once from the store as typed values. Times are
/// milliseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    pub account: String,
    /// The Region of its registry (`None`: the home Region; see [`RegistryKey`]).
    pub region: Option<String>,
    pub name: String,
    /// Milliseconds since the epoch.
    pub created: i64,
    pub tag_mutability: TagMutability,
    /// The exclusion filters (`*_WITH_EXCLUSION` only; empty otherwise).
    pub mutability_filters: Vec<MutabilityFilter>,
    pub scan_on_push: bool,
    pub encryption: Encryption,
    pub policy: Option<String>,
    pub lifecycle_policy: Option<String>,
    /// When the lifecycle policy was last set or last run, whichever is later
    /// (`lastEvaluatedAt`), in milliseconds since the epoch.
    pub lifecycle_updated: Option<i64>,
}

impl Repository {
    /// A repository with ECR's default settings: mutable tags, no scanning, AES256.
    pub fn new(registry: RegistryKey<'_>, name: &str, created_ms: i64) -> Repository {
        Repository {
            account: registry.account.to_string(),
            region: registry.region.map(str::to_string),
            name: name.to_string(),
            created: created_ms,
            tag_mutability: TagMutability::Mutable,
            mutability_filters: Vec::new(),
            scan_on_push: false,
            encryption: Encryption::default(),
            policy: None,
            lifecycle_policy: None,
            lifecycle_updated: None,
        }
    }

    /// Its registry.
    pub fn registry(&self) -> RegistryKey<'_> {
        RegistryKey {
            account: &self.account,
            region: self.region.as_deref(),
        }
    }

    /// The name the stores keep it under (see [`RegistryKey`]): the owner of its
    /// resource tags.
    pub fn stored_name(&self) -> std::borrow::Cow<'_, str> {
        self.registry().stored_name(&self.name)
    }

    pub fn arn(&self, region: &str) -> String {
        format!(
            "arn:aws:ecr:{region}:{}:repository/{}",
            self.account, self.name
        )
    }
}

/// Whether a repository's tags may move (`imageTagMutability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagMutability {
    Mutable,
    Immutable,
    /// Mutable, except tags matching an exclusion filter.
    MutableWithExclusion,
    /// Immutable, except tags matching an exclusion filter.
    ImmutableWithExclusion,
}

impl TagMutability {
    pub const ALL: [TagMutability; 4] = [
        TagMutability::Mutable,
        TagMutability::Immutable,
        TagMutability::ImmutableWithExclusion,
        TagMutability::MutableWithExclusion,
    ];

    /// ECR's name (`MUTABLE`, `IMMUTABLE_WITH_EXCLUSION`, …), also what the store keeps.
    pub fn as_str(self) -> &'static str {
        match self {
            TagMutability::Mutable => "MUTABLE",
            TagMutability::Immutable => "IMMUTABLE",
            TagMutability::MutableWithExclusion => "MUTABLE_WITH_EXCLUSION",
            TagMutability::ImmutableWithExclusion => "IMMUTABLE_WITH_EXCLUSION",
        }
    }

    pub fn parse(s: &str) -> Option<TagMutability> {
        TagMutability::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// Whether it takes exclusion filters.
    pub fn with_exclusion(self) -> bool {
        matches!(
            self,
            TagMutability::MutableWithExclusion | TagMutability::ImmutableWithExclusion
        )
    }
}

/// An image tag mutability exclusion filter. ECR has one `filterType`, `WILDCARD`: the
/// filter is a tag pattern where `*` matches any run of characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutabilityFilter {
    /// `[0-9a-zA-Z._*-]{1,128}`.
    pub wildcard: String,
}

impl MutabilityFilter {
    /// ECR's only `filterType`.
    pub const FILTER_TYPE: &'static str = "WILDCARD";

    /// A filter if `pattern` is one ECR accepts (`[0-9a-zA-Z._*-]{1,128}`).
    pub fn new(pattern: &str) -> Option<MutabilityFilter> {
        ((1..=128).contains(&pattern.len())
            && pattern
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._*-".contains(&b)))
        .then(|| MutabilityFilter {
            wildcard: pattern.to_string(),
        })
    }
}

/// How a repository's images are encrypted at rest (`encryptionType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncryptionType {
    #[default]
    Aes256,
    Kms,
    KmsDsse,
}

impl EncryptionType {
    pub const ALL: [EncryptionType; 3] = [
        EncryptionType::Aes256,
        EncryptionType::Kms,
        EncryptionType::KmsDsse,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EncryptionType::Aes256 => "AES256",
            EncryptionType::Kms => "KMS",
            EncryptionType::KmsDsse => "KMS_DSSE",
        }
    }

    pub fn parse(s: &str) -> Option<EncryptionType> {
        EncryptionType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// A repository's encryption configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Encryption {
    pub kind: EncryptionType,
    /// The KMS key (`KMS`, `KMS_DSSE` only).
    pub kms_key: Option<String>,
}

/// A repository row as both backends keep it (settings as text), and how it becomes a
/// [`Repository`]: one reading for SQLite and PostgreSQL.
pub(crate) struct RepositoryRow {
    pub account: String,
    pub name: String,
    pub created: i64,
    pub tag_mutability: String,
    /// The exclusion filters' patterns, one per line.
    pub exclusions: Option<String>,
    pub scan_on_push: bool,
    pub encryption_type: String,
    pub kms_key: Option<String>,
    pub policy: Option<String>,
    pub lifecycle_policy: Option<String>,
    pub lifecycle_updated: Option<i64>,
}

impl RepositoryRow {
    /// The repository, or a `Backend` error naming the setting that cannot be read.
    pub(crate) fn into_repository(self) -> RegistryResult<Repository> {
        let corrupt = |what: &str, value: &str| {
            RegistryError::Backend(format!(
                "the stored repository '{}' of registry '{}' has an unreadable {what}: {value:?}",
                self.name, self.account
            ))
        };
        let tag_mutability = TagMutability::parse(&self.tag_mutability)
            .ok_or_else(|| corrupt("tag mutability", &self.tag_mutability))?;
        let mut mutability_filters = Vec::new();
        for pattern in self.exclusions.as_deref().unwrap_or("").split('\n') {
            if !pattern.is_empty() {
                mutability_filters.push(
                    MutabilityFilter::new(pattern)
                        .ok_or_else(|| corrupt("tag mutability exclusion filter", pattern))?,
                );
            }
        }
        let kind = EncryptionType::parse(&self.encryption_type)
            .ok_or_else(|| corrupt("encryption type", &self.encryption_type))?;
        let (region, name) = RegistryKey::split_stored(&self.name);
        Ok(Repository {
            region: region.map(str::to_string),
            name: name.to_string(),
            account: self.account,
            created: self.created,
            tag_mutability,
            mutability_filters,
            scan_on_push: self.scan_on_push,
            encryption: Encryption {
                kind,
                kms_key: self.kms_key,
            },
            policy: self.policy,
            lifecycle_policy: self.lifecycle_policy,
            lifecycle_updated: self.lifecycle_updated,
        })
    }
}

/// Exclusion filters as the stores keep them: their patterns, one per line.
pub(crate) fn exclusions_text(filters: &[MutabilityFilter]) -> Option<String> {
    (!filters.is_empty()).then(|| {
        filters
            .iter()
            .map(|f| f.wildcard.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// One repository setting to change. Each call changes only its own setting, so calls
/// that change different settings at the same time never undo each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepositorySetting {
    TagMutability {
        mutability: TagMutability,
        filters: Vec<MutabilityFilter>,
    },
    ScanOnPush(bool),
    /// The repository policy (`None`: remove it).
    Policy(Option<String>),
    /// The lifecycle policy and when it was set, in milliseconds (`None`: remove it).
    LifecyclePolicy(Option<(String, i64)>),
}

/// What a manifest references.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RefKind {
    /// A config or layer blob: must be held by the repository.
    Blob,
    /// A child manifest of an index: must be an image of the repository.
    Manifest,
}

impl RefKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RefKind::Blob => "blob",
            RefKind::Manifest => "manifest",
        }
    }
}

/// An image to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewImage {
    pub digest: String,
    pub media_type: String,
    pub manifest: Vec<u8>,
    /// Compressed size: the manifest's config and layers added up; for an index, the
    /// largest size of the images it lists (what ECR reports as `imageSizeInBytes`).
    pub size: i64,
    pub artifact_type: Option<String>,
    /// OCI 1.1 `subject` digest (need not exist).
    pub subject: Option<String>,
    pub refs: Vec<(String, RefKind)>,
    /// Milliseconds since the epoch.
    pub pushed_at: i64,
    /// Where the push replicates: an outbox row per destination is written in the push's
    /// transaction when it stores the image or moves the tag (see [`crate::replication`]).
    pub replicate_to: Vec<crate::Replica>,
}

/// A stored image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub digest: String,
    pub media_type: String,
    pub manifest: Vec<u8>,
    pub size: i64,
    pub artifact_type: Option<String>,
    pub subject: Option<String>,
    /// Milliseconds since the epoch.
    pub pushed_at: i64,
    /// Milliseconds since the epoch.
    pub last_pull: Option<i64>,
    /// Its tags, sorted.
    pub tags: Vec<String>,
}

/// What a repository holds ([`RegistryStore::repository_usage`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryUsage {
    pub name: String,
    pub bytes: u64,
    pub images: u64,
}

impl RepositoryUsage {
    /// Fold one row of a usage query (a stored repository name and its bytes, or its image
    /// count when `images`) into `out`.
    pub(crate) fn add(out: &mut Vec<RepositoryUsage>, stored_name: &str, n: i64, images: bool) {
        let name = RegistryKey::split_stored(stored_name).1;
        let n = n.max(0) as u64;
        let i = match out.iter().position(|u| u.name == name) {
            Some(i) => i,
            None => {
                out.push(RepositoryUsage {
                    name: name.to_string(),
                    bytes: 0,
                    images: 0,
                });
                out.len() - 1
            }
        };
        if images {
            out[i].images = n;
        } else {
            out[i].bytes = n;
        }
    }
}

/// How often a pull is recorded per image, in milliseconds (as ECR: at most once a day).
pub const PULL_RECORD_INTERVAL: i64 = 86_400_000;

impl Image {
    /// Whether a pull at `now_ms` should be recorded (keeps pulls off the write path).
    pub fn pull_due(&self, now_ms: i64) -> bool {
        self.last_pull
            .is_none_or(|t| now_ms - t >= PULL_RECORD_INTERVAL)
    }
}

/// How a tag write goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagRule {
    /// The tag may move to another image.
    Mutable,
    /// The tag may not move once set.
    Immutable,
}

/// What `put_image` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOutcome {
    /// The image was already stored (same digest).
    pub existed: bool,
    /// The tag already pointed at this image.
    pub tag_unchanged: bool,
}

/// Why `put_image` refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutImageError {
    /// Referenced blobs the repository does not hold, and child manifests it lacks.
    Missing {
        blobs: Vec<String>,
        manifests: Vec<String>,
    },
    /// The tag is immutable and points at another image.
    TagImmutable {
        tag: String,
    },
    Store(RegistryError),
}

impl From<RegistryError> for PutImageError {
    fn from(e: RegistryError) -> Self {
        PutImageError::Store(e)
    }
}

impl From<crate::StoreError> for PutImageError {
    fn from(e: crate::StoreError) -> Self {
        PutImageError::Store(e.into())
    }
}

/// An upload session of the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub id: String,
    pub account: String,
    /// The Region of its registry (`None`: the home Region; see [`RegistryKey`]).
    pub region: Option<String>,
    pub repository: String,
    /// The principal that started it (only it may continue it).
    pub principal: String,
    /// Milliseconds since the epoch.
    pub created: i64,
    /// Milliseconds since the epoch.
    pub updated: i64,
}

/// What the blob backend keeps of an upload session between requests (so that any node
/// can continue it): opaque bytes, and a version that each save increments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadState {
    /// 0 and `None` until the first save.
    pub version: i64,
    pub state: Option<Vec<u8>>,
}

/// A lifecycle policy preview (StartLifecyclePolicyPreview): the policy text previewed,
/// when, and the images it expires then. Kept in the store so that any node answers
/// GetLifecyclePolicyPreview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecyclePreview {
    pub policy: String,
    /// Milliseconds since the epoch.
    pub started: i64,
    /// Oldest push first (digest order among equal times).
    pub results: Vec<PreviewResult>,
}

/// An image a previewed lifecycle policy expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewResult {
    pub digest: String,
    /// Its tags then, sorted.
    pub tags: Vec<String>,
    /// Milliseconds since the epoch.
    pub pushed_at: i64,
    /// The `rulePriority` of the rule that expires it.
    pub rule_priority: i64,
}

/// Tags as the preview tables keep them: one per line, `None` for none.
pub(crate) fn tag_lines(tags: &[String]) -> Option<String> {
    (!tags.is_empty()).then(|| tags.join("\n"))
}

/// The tags of [`tag_lines`], sorted.
pub(crate) fn tags_from_lines(lines: Option<String>) -> Vec<String> {
    let mut tags: Vec<String> = lines
        .as_deref()
        .unwrap_or("")
        .split('\n')
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    tags.sort();
    tags
}

/// The registry's metadata; with it, replication's ([`crate::ReplicationStore`]) and
/// pull-through caching's ([`crate::PullThroughStore`]).
#[async_trait]
pub trait RegistryStore:
    crate::ReplicationStore + crate::PullThroughStore + Send + Sync + 'static
{
    async fn create_repository(&self, repo: &Repository, tags: &[crate::Tag]) -> Result<()>;
    async fn repository(&self, registry: RegistryKey<'_>, name: &str)
        -> Result<Option<Repository>>;
    /// All repositories of a registry, by name.
    async fn repositories(&self, registry: RegistryKey<'_>) -> Result<Vec<Repository>> {
        let mut all = self.account_repositories(registry.account).await?;
        all.retain(|r| r.region.as_deref() == registry.region);
        Ok(all)
    }
    /// At most `limit` repositories of a registry, by name, after `after` (a name of that
    /// registry), whose names contain `contains`: a page of a listing that reads only what
    /// it shows.
    async fn repositories_after(
        &self,
        registry: RegistryKey<'_>,
        after: Option<&str>,
        contains: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Repository>>;
    /// All repositories of an account, in every Region (each says its own).
    async fn account_repositories(&self, account: &str) -> Result<Vec<Repository>>;
    /// Delete a repository; with images only if `force` (else `RepositoryNotEmpty`). Returns it.
    async fn delete_repository(
        &self,
        registry: RegistryKey<'_>,
        name: &str,
        force: bool,
    ) -> Result<Repository>;
    /// Change one setting of a repository, in one transaction, leaving every other as it
    /// is. Returns the repository as it was just before (`RepositoryNotFound` if there is none).
    async fn update_repository(
        &self,
        registry: RegistryKey<'_>,
        name: &str,
        setting: &RepositorySetting,
    ) -> Result<Repository>;

    /// The registry's policy (stored under [`RegistryKey::stored_account`]).
    async fn registry_policy(&self, registry: RegistryKey<'_>) -> Result<Option<String>>;
    async fn set_registry_policy(
        &self,
        registry: RegistryKey<'_>,
        policy: Option<&str>,
    ) -> Result<()>;

    /// Record that a repository holds a blob whose object is in the blob store already
    /// (`now`: milliseconds since the epoch): [`lock_blob`](Self::lock_blob) and
    /// [`BlobLock::hold`](crate::BlobLock::hold) with nothing published in between.
    async fn add_repository_blob(
        &self,
        registry: RegistryKey<'_>,
        repository: &str,
        digest: &str,
        size: i64,
        now: i64,
    ) -> Result<()> {
        self.lock_blob(digest, size, now)
            .await?
            .hold(registry, repository, now)
            .await
    }
    /// Lock the row of blob `digest` (made if there is none, with `size`) for publishing
    /// its object: waits while the collector deletes that object, and the collector
    /// waits for the lock's [`hold`](crate::BlobLock::hold) or drop. On SQLite this is
    /// the database's write lock: publish promptly.
    async fn lock_blob(
        &self,
        digest: &str,
        size: i64,
        now: i64,
    ) -> Result<Box<dyn crate::BlobLock>>;
    /// A cross-repository mount: make `to` hold the blob `from` holds, under the blob's
    /// lock (so the collector cannot be deleting it). The blob's size, `None` if `from`
    /// does not hold it; `RepositoryNotFound` if `to` is gone.
    async fn mount_blob(
        &self,
        registry: RegistryKey<'_>,
        from: &str,
        to: &str,
        digest: &str,
        now: i64,
    ) -> Result<Option<i64>>;
    /// The size of a blob the repository holds. A client is told so from this: a
    /// collector's mark on the holding is cleared (under its lock) before answering, so
    /// the holding stays at least a grace period after the answer.
    async fn repository_blob(
        &self,
        registry: RegistryKey<'_>,
        repository: &str,
        digest: &str,
    ) -> Result<Option<i64>>;
    /// Whether an image of the repository references the blob (it may be downloaded).
    async fn blob_referenced(
        &self,
        registry: RegistryKey<'_>,
        repository: &str,
        digest: &str,
    ) -> Result<bool>;

    /// Store an image and move a tag to it, in one transaction: nothing is written unless
    /// every referenced blob and child manifest exists in the repository.
    async fn put_image(
        &self,
        registry: RegistryKey<'_>,
        repository: &str,
        image: &NewImage,
        tag: Option<&str>,
        rule: TagRule,
    ) -> std::result::Result<PutOutcome, PutImageError>;
    /// An image by tag or by digest (`sha256:…`).
    async fn image(
        &self,
        registry: RegistryKey<'_>,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Image>>;
    /// All images of a repository (manifest bytes left empty), newest first.
    async fn images(&self, registry: RegistryKey<'_>, repository: &str) -> Result<Vec<Image>>;
    /// A page of a repository's images, newest first (by push time, then digest), after
    /// `after` (the push time and digest of the previous page's last image), only tagged
    /// (`Some(true)`) or untagged (`Some(false)`) ones if asked, at most `limit`; without
    /// their manifests.
    async fn images_page(
        &self,
        registry: RegistryKey<'_>,
        repository: &str,
        after: Option<(i64, &str)>,
        tagged: Option<bool>,
        limit: usize,
    ) -> Result<Vec<Image>>;
    /// Tags of a repository with their digests, sorted by tag.
    async fn tags_of(
        &self,
        registry: RegistryKey<'_>,
        repository: &str,
    ) -> Result<Vec<(String, String)>>;
    /// Remove a tag; returns the digest it pointed at. With it, in one transaction, an
    /// outbox row per destination of `replicate_to` (see [`crate::replication`]).
    async fn delete_tag(
        &self,
        registry: RegistryKey<'_>,
        repository: &str,
        tag: &str,
        replicate_to: &[crate::Replica],
    ) -> Result<Option<String>>;
    /// Delete an image and its tags (`ImageReferencedByIndex` if an index of the
    /// repository references it).
    /// With it, in one transaction, an outbox row per destination of `replicate_to`.
    async fn delete_image(
        &self,
        registry: RegistryKey<'_>,
        repository: &str,
        digest: &str,
        replicate_to: &[crate::Replica],
    ) -> Result<bool>;
    /// Images whose `subject` is `digest`.
    async fn referrers(
        &self,
        registry: RegistryKey<'_>,
        repository: &str,
        digest: &str,
    ) -> Result<Vec<Image>>;
    async fn record_pull(
        &self,
        registry: RegistryKey<'_>,
        repository: &str,
        digest: &str,
        now: i64,
    ) -> Result<()>;

    /// A named setting of the deployment (not secret, readable without the secrets key);
    /// the first caller's `candidate` becomes it if there is none.
    async fn setting(&self, name: &str, candidate: &str) -> Result<String>;
    /// A named setting, if it was recorded.
    async fn recorded_setting(&self, name: &str) -> Result<Option<String>>;

    /// A named server secret; the first caller's `candidate` becomes it if there is none.
    async fn server_secret(&self, name: &str, candidate: &str) -> Result<String>;

    async fn create_upload(&self, upload: &Upload) -> Result<()>;
    async fn upload(&self, id: &str) -> Result<Option<Upload>>;
    async fn touch_upload(&self, id: &str, now: i64) -> Result<()>;
    async fn delete_upload(&self, id: &str) -> Result<()>;
    /// Upload sessions not touched since `before` (milliseconds since the epoch).
    async fn stale_uploads(&self, before: i64) -> Result<Vec<Upload>>;
    /// How many upload sessions are open in a repository, and in its whole account
    /// (every Region): what the caps on concurrent sessions count.
    async fn upload_counts(
        &self,
        registry: RegistryKey<'_>,
        repository: &str,
    ) -> Result<(u64, u64)>;
    /// The bytes of the distinct blobs an account's repositories hold, in every Region
    /// (what a storage quota counts).
    async fn account_usage(&self, account: &str) -> Result<u64>;
    /// For each of `names` (repositories of `registry`): the bytes of the blobs it holds
    /// and its number of images, in one look-up (the console's repository list). Names
    /// that are not repositories are left out.
    async fn repository_usage(
        &self,
        registry: RegistryKey<'_>,
        names: &[String],
    ) -> Result<Vec<RepositoryUsage>>;

    /// Keep a lifecycle policy preview of a repository, replacing the one it had (in one
    /// transaction: a reader sees the old preview or the new one whole).
    /// `RepositoryNotFound` if the repository is not there.
    async fn put_lifecycle_preview(
        &self,
        registry: RegistryKey<'_>,
        repository: &str,
        preview: &LifecyclePreview,
    ) -> Result<()>;
    /// The repository's last lifecycle policy preview (`None`: none was started since
    /// the repository was created).
    async fn lifecycle_preview(
        &self,
        registry: RegistryKey<'_>,
        repository: &str,
    ) -> Result<Option<LifecyclePreview>>;
    /// Record that the lifecycle policy `policy` ran at `at` (milliseconds): it becomes
    /// the repository's `lifecycle_updated` (ECR's `lastEvaluatedAt`), only if `policy`
    /// is still the repository's lifecycle policy. False when it is not (changed,
    /// removed, or the repository is gone).
    async fn lifecycle_evaluated(
        &self,
        registry: RegistryKey<'_>,
        repository: &str,
        policy: &str,
        at: i64,
    ) -> Result<bool>;

    /// The blob backend's saved state of an upload session (`None`: no such session).
    async fn upload_state(&self, id: &str) -> Result<Option<UploadState>>;
    /// Replace a session's state if its version is still `expected_version` (the version
    /// becomes `expected_version + 1` and the session is touched at `now`). False if the
    /// session is gone or another writer saved first.
    async fn save_upload_state(
        &self,
        id: &str,
        expected_version: i64,
        state: &[u8],
        now: i64,
    ) -> Result<bool>;

    // Garbage collection (the protocol: berth-server's `registry/gc.rs`).

    /// How many write transactions the backend runs side by side to good effect (SQLite
    /// has one writer; PostgreSQL many): how many blobs the collector deletes at once.
    fn writers_at_once(&self) -> usize {
        1
    }

    /// The whole mark phase ([`gc_mark_step`](Self::gc_mark_step) until it is done).
    /// Returns how many holdings were marked.
    async fn gc_mark(&self, now: i64) -> Result<u64> {
        let (mut marked, mut after) = (0, None);
        loop {
            let (n, last) = self.gc_mark_step(now, after.as_ref(), 1000).await?;
            marked += n;
            match last {
                Some(h) => after = Some(h),
                None => return Ok(marked),
            }
        }
    }
    /// One step of the mark phase: a read (no lock) finds, in key order after `after`,
    /// up to `limit` holdings whose mark is wrong — no image of their repository
    /// references them and they are not marked, or they are marked and referenced again
    /// — and an update gives those `marked_at = now` or takes their mark away, each
    /// re-checked by the update (marks already there are kept). A registry whose
    /// holdings are all in use is marked without a write. Returns how many were marked,
    /// and where the next step starts (`None`: the phase is done).
    async fn gc_mark_step(
        &self,
        now: i64,
        after: Option<&crate::Holding>,
        limit: i64,
    ) -> Result<(u64, Option<crate::Holding>)>;
    /// Holdings no image of their repository references and marked at or before `cutoff`
    /// (unmarked ones count as marked at `unmarked_as` when given: a dry run's view), in
    /// key order, at most `limit` after `after`.
    async fn gc_holdings(
        &self,
        cutoff: i64,
        unmarked_as: Option<i64>,
        after: Option<&crate::Holding>,
        limit: i64,
    ) -> Result<Vec<crate::Holding>>;
    /// Delete those of `candidates` that are, re-checked under their row locks, still
    /// referenced by no image and marked at or before `cutoff`; one transaction. Returns
    /// those deleted.
    async fn gc_sweep_holdings(
        &self,
        candidates: &[crate::Holding],
        cutoff: i64,
    ) -> Result<Vec<crate::Holding>>;
    /// Blobs (digest, size) no repository holds, in digest order, at most `limit` after
    /// `after`.
    async fn gc_unheld_blobs(&self, after: &str, limit: i64) -> Result<Vec<(String, i64)>>;
    /// How many repositories hold the blob.
    async fn blob_holdings(&self, digest: &str) -> Result<i64>;
    /// Those of `digests` that have a row.
    async fn known_blobs(&self, digests: &[String]) -> Result<Vec<String>>;
    /// Delete blob `digest`: lock its row exclusively (an `orphan`, an object with no row,
    /// gets one made for the purpose; a row made by someone else meanwhile means
    /// [`InUse`](crate::BlobSweep::InUse)), re-check that no repository holds it, run
    /// `remove` (the object's deletion) and delete the row, in one transaction.
    async fn gc_delete_blob(
        &self,
        digest: &str,
        orphan: bool,
        remove: crate::ObjectRemoval<'_>,
    ) -> Result<crate::BlobSweep>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_errors_read_as_plain_sentences_without_wire_wording() {
        let (account, name) = ("123456789012".to_string(), "app".to_string());
        let all = [
            RegistryError::RepositoryNotFound {
                account: account.clone(),
                name: name.clone(),
            },
            RegistryError::RepositoryAlreadyExists {
                account: account.clone(),
                name: name.clone(),
            },
            RegistryError::RepositoryNotEmpty {
                account: account.clone(),
                name: name.clone(),
            },
            RegistryError::ImageReferencedByIndex {
                account,
                repository: name,
                digest: "sha256:abc".into(),
            },
        ];
        for e in all {
            let text = e.to_string();
            assert!(text.contains("'app'"), "{text}");
            assert!(text.contains("'123456789012'"), "{text}");
            assert!(
                !text.contains("Exception") && !text.contains("registry with id"),
                "{text}"
            );
        }
    }

    #[test]
    fn other_store_errors_reach_the_registry_as_backend_failures() {
        assert_eq!(
            RegistryError::from(crate::StoreError::Backend("disk I/O error".into())),
            RegistryError::Backend("disk I/O error".into())
        );
        assert_eq!(
            RegistryError::from(crate::StoreError::Conflict("in use".into())),
            RegistryError::Backend("in use".into())
        );
        assert_eq!(
            RegistryError::Backend("disk I/O error".into()).to_string(),
            "metadata store: disk I/O error"
        );
    }
}
