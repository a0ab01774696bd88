//! The records the store keeps. Times are seconds since the Unix epoch.

/// An AWS account: a 12-digit id, an optional alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub alias: Option<String>,
    pub created: i64,
}

/// The IAM identities that have names, paths and policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntityKind {
    User,
    Group,
    Role,
}

impl EntityKind {
    /// The word in ARNs and in the database (`user`, `group`, `role`).
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::User => "user",
            EntityKind::Group => "group",
            EntityKind::Role => "role",
        }
    }

    /// The word in AWS messages (`user`, `group`, `role`) with a capital.
    pub fn title(self) -> &'static str {
        match self {
            EntityKind::User => "User",
            EntityKind::Group => "Group",
            EntityKind::Role => "Role",
        }
    }

    pub(crate) fn from_db(s: &str) -> EntityKind {
        match s {
            "group" => EntityKind::Group,
            "role" => EntityKind::Role,
            _ => EntityKind::User,
        }
    }
}

/// A user, group or role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entity {
    pub account: String,
    pub kind: EntityKind,
    pub name: String,
    /// `/` or `/a/b/`.
    pub path: String,
    /// `AIDA…`, `AGPA…`, `AROA…`.
    pub unique_id: String,
    pub created: i64,
    /// Roles: the trust policy document.
    pub trust_policy: Option<String>,
    pub description: Option<String>,
    /// Roles: the longest session AssumeRole may grant.
    pub max_session_secs: Option<i64>,
    /// Users and roles: the ARN of the managed policy used as permissions boundary.
    pub boundary: Option<String>,
}

impl Entity {
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:iam::{}:{}{}{}",
            self.account,
            self.kind.as_str(),
            self.path,
            self.name
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Inactive,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "Active",
            KeyStatus::Inactive => "Inactive",
        }
    }

    pub fn parse(s: &str) -> Option<KeyStatus> {
        match s {
            "Active" => Some(KeyStatus::Active),
            "Inactive" => Some(KeyStatus::Inactive),
            _ => None,
        }
    }
}

/// A long-term access key of an IAM user or of an account's root user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub id: String,
    pub secret: String,
    pub account: String,
    /// `None`: the root user.
    pub user: Option<String>,
    pub status: KeyStatus,
    pub created: i64,
}

/// An IAM user's console password (IAM's login profile): the password's argon2id hash as
/// a PHC string, never the password.
#[derive(Clone, PartialEq, Eq)]
pub struct LoginProfile {
    pub account: String,
    pub user: String,
    pub password_hash: String,
    /// Seconds since the epoch.
    pub created: i64,
    /// When the password was last set (seconds since the epoch).
    pub changed: i64,
    /// The user must choose a new password at the next sign-in.
    pub reset_required: bool,
}

impl std::fmt::Debug for LoginProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginProfile")
            .field("account", &self.account)
            .field("user", &self.user)
            .field("created", &self.created)
            .field("changed", &self.changed)
            .field("reset_required", &self.reset_required)
            .finish_non_exhaustive()
    }
}

/// Temporary credentials issued by STS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub access_key_id: String,
    pub secret: String,
    pub token: String,
    pub account: String,
    /// What the session is (principal, policies, tags), as the server encodes it.
    pub claims: String,
    pub created: i64,
    pub expires: i64,
}

/// A customer managed policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedPolicy {
    pub account: String,
    pub name: String,
    pub path: String,
    /// `ANPA…`.
    pub policy_id: String,
    pub default_version: String,
    pub description: Option<String>,
    pub created: i64,
    pub updated: i64,
    /// Users, groups and roles it is attached to (read only).
    pub attachment_count: i64,
    /// Users and roles using it as permissions boundary (read only).
    pub boundary_usage_count: i64,
}

impl ManagedPolicy {
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:iam::{}:policy{}{}",
            self.account, self.path, self.name
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVersion {
    /// `v1`, `v2`, …
    pub version_id: String,
    pub document: String,
    pub is_default: bool,
    pub created: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// What tags can be put on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagTarget {
    User,
    Role,
    Policy,
    Repository,
}

impl TagTarget {
    pub fn as_str(self) -> &'static str {
        match self {
            TagTarget::User => "user",
            TagTarget::Role => "role",
            TagTarget::Policy => "policy",
            TagTarget::Repository => "repository",
        }
    }
}

/// One policy document that applies to an identity, and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcedPolicy {
    /// `user/alice/inline-name`, `group/dev/inline-name` or the managed policy's ARN.
    pub source: String,
    pub document: String,
}

/// Everything that decides what a user or role may do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdentityDocuments {
    pub policies: Vec<SourcedPolicy>,
    pub boundary: Option<SourcedPolicy>,
    pub tags: Vec<Tag>,
}
