//! The authenticated caller: which identity, in which account, with which policies.

use std::sync::Arc;

use berth_iam::{CompiledPolicy, Principal, PrincipalKind};
use serde::{Deserialize, Serialize};

use super::cache::EntityPolicies;

/// What an STS session is, as stored with it (`sessions.claims`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Claims {
    /// `role` (AssumeRole), `federated` (GetFederationToken) or `session` (GetSessionToken).
    pub kind: String,
    /// Role sessions: the role's name, path and unique id, and the session name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<RoleClaim>,
    /// Federated sessions: the federated user's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federated_name: Option<String>,
    /// The IAM user behind a federated or GetSessionToken session (`None`: the root user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The unique id (`AIDA…`) of that user: a user deleted and created again under the
    /// same name is someone else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Session policies (inline `Policy` and the documents of `PolicyArns`), kept as text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub session_policies: Vec<String>,
    /// Session tags (role sessions and federated users).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<(String, String)>,
    /// Keys of tags that pass on to chained role sessions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transitive_keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_identity: Option<String>,
    /// Multi-factor authentication was presented when the session was made (time, seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_time: Option<i64>,
    /// The session came from another role session (role chaining).
    #[serde(default)]
    pub chained: bool,
    pub issued: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleClaim {
    pub name: String,
    pub path: String,
    pub id: String,
    pub session_name: String,
}

/// The kind of identity behind the credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Root,
    User {
        name: String,
    },
    /// AssumeRole credentials.
    RoleSession,
    /// GetFederationToken credentials.
    Federated,
    /// GetSessionToken credentials of a user (or of the root user for `None`).
    UserSession {
        user: Option<String>,
    },
    /// No credentials at all: a registry pull with `anonymous_pull` on (see
    /// [`crate::oci::anonymous`]). Only resource policies that allow `"*"` let it in.
    Anonymous,
}

/// An authenticated request's caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub identity: Identity,
    pub principal: Principal,
    pub account: Arc<str>,
    pub access_key_id: String,
    /// `aws:userid`.
    pub user_id: String,
    /// The policies of the user or role behind the credentials (none for the root user).
    pub policies: Option<Arc<EntityPolicies>>,
    /// The session policy (all session policies of the session joined), if any.
    pub session_policy: Option<Arc<CompiledPolicy>>,
    /// `aws:PrincipalTag/*`: the entity's tags, overridden by session tags.
    pub principal_tags: Vec<(String, String)>,
    /// Present for temporary credentials.
    pub claims: Option<Arc<Claims>>,
    pub session_expires: Option<i64>,
}

impl Caller {
    /// The caller of a request that carries no credentials: IAM's anonymous principal
    /// (shown as `anonymous`), of no account, with no policies, no tags and no user id,
    /// so that the request context holds none of the keys about the principal but
    /// `aws:PrincipalType` (`Anonymous`).
    pub fn anonymous() -> Caller {
        Caller {
            identity: Identity::Anonymous,
            principal: Principal {
                kind: PrincipalKind::Anonymous,
                arn: "anonymous".into(),
                account: "".into(),
                role_arn: None,
                federating_user_arn: None,
                unique_id: None,
                user_name: None,
            },
            account: "".into(),
            access_key_id: String::new(),
            user_id: String::new(),
            policies: None,
            session_policy: None,
            principal_tags: Vec::new(),
            claims: None,
            session_expires: None,
        }
    }

    /// Whether the request came without credentials.
    pub fn is_anonymous(&self) -> bool {
        self.identity == Identity::Anonymous
    }

    /// The value of `aws:MultiFactorAuthPresent` (only temporary credentials carry it).
    pub fn mfa_present(&self) -> Option<bool> {
        self.claims.as_ref().map(|c| c.mfa_time.is_some())
    }

    pub fn is_root(&self) -> bool {
        self.principal.kind == PrincipalKind::Root
    }

    /// The ARN AWS shows for this caller (GetCallerIdentity's `Arn`).
    pub fn arn(&self) -> &str {
        &self.principal.arn
    }
}
