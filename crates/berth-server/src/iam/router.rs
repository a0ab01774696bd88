//! Every IAM operation Berth answers, with the IAM action it needs and where its
//! resource ARN comes from. A handler runs only after [`super::handle`] has decided
//! the endpoint's action on that resource.

use berth_store::EntityKind;

/// Where an operation's resource ARN comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceRef {
    /// No resource-level permissions: `*`.
    Any,
    /// The user, group or role named by this parameter (its stored path if it exists).
    Entity(EntityKind, &'static str),
    /// The user named by `UserName`, or the caller itself when absent (access keys).
    UserOrCaller,
    /// A new entity: name parameter, path from `Path`.
    NewEntity(EntityKind, &'static str),
    /// The managed policy named by `PolicyArn`.
    PolicyArn,
    /// A new managed policy: `PolicyName` and `Path`.
    NewPolicy,
    /// The user, group or role whose ARN this parameter holds.
    SourceArn(&'static str),
}

macro_rules! endpoints {
    ($($name:ident => $res:expr,)*) => {
        /// The IAM operations.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Endpoint { $($name),* }

        impl Endpoint {
            pub const ALL: &'static [Endpoint] = &[$(Endpoint::$name),*];

            pub fn from_action(action: &str) -> Option<Endpoint> {
                match action {
                    $(stringify!($name) => Some(Endpoint::$name),)*
                    _ => None,
                }
            }

            /// The operation name (`CreateUser`).
            pub fn name(self) -> &'static str {
                match self { $(Endpoint::$name => stringify!($name)),* }
            }

            /// The IAM action it needs (`iam:CreateUser`).
            pub fn action(self) -> &'static str {
                match self { $(Endpoint::$name => concat!("iam:", stringify!($name))),* }
            }

            pub fn resource(self) -> ResourceRef {
                use EntityKind::*;
                use ResourceRef::*;
                match self { $(Endpoint::$name => $res),* }
            }
        }
    };
}

endpoints! {
    CreateUser => NewEntity(User, "UserName"),
    GetUser => UserOrCaller,
    ListUsers => Any,
    DeleteUser => Entity(User, "UserName"),
    TagUser => Entity(User, "UserName"),
    UntagUser => Entity(User, "UserName"),
    ListUserTags => Entity(User, "UserName"),
    PutUserPermissionsBoundary => Entity(User, "UserName"),
    DeleteUserPermissionsBoundary => Entity(User, "UserName"),

    CreateLoginProfile => Entity(User, "UserName"),
    GetLoginProfile => Entity(User, "UserName"),
    UpdateLoginProfile => Entity(User, "UserName"),
    DeleteLoginProfile => Entity(User, "UserName"),
    ChangePassword => UserOrCaller,
    UpdateAccountPasswordPolicy => Any,
    GetAccountPasswordPolicy => Any,
    DeleteAccountPasswordPolicy => Any,

    CreateAccessKey => UserOrCaller,
    ListAccessKeys => UserOrCaller,
    UpdateAccessKey => UserOrCaller,
    DeleteAccessKey => UserOrCaller,

    CreateGroup => NewEntity(Group, "GroupName"),
    GetGroup => Entity(Group, "GroupName"),
    ListGroups => Any,
    DeleteGroup => Entity(Group, "GroupName"),
    AddUserToGroup => Entity(Group, "GroupName"),
    RemoveUserFromGroup => Entity(Group, "GroupName"),
    ListGroupsForUser => Entity(User, "UserName"),

    CreateRole => NewEntity(Role, "RoleName"),
    GetRole => Entity(Role, "RoleName"),
    ListRoles => Any,
    DeleteRole => Entity(Role, "RoleName"),
    UpdateAssumeRolePolicy => Entity(Role, "RoleName"),
    UpdateRole => Entity(Role, "RoleName"),
    TagRole => Entity(Role, "RoleName"),
    UntagRole => Entity(Role, "RoleName"),
    ListRoleTags => Entity(Role, "RoleName"),
    PutRolePermissionsBoundary => Entity(Role, "RoleName"),
    DeleteRolePermissionsBoundary => Entity(Role, "RoleName"),

    PutUserPolicy => Entity(User, "UserName"),
    GetUserPolicy => Entity(User, "UserName"),
    DeleteUserPolicy => Entity(User, "UserName"),
    ListUserPolicies => Entity(User, "UserName"),
    PutGroupPolicy => Entity(Group, "GroupName"),
    GetGroupPolicy => Entity(Group, "GroupName"),
    DeleteGroupPolicy => Entity(Group, "GroupName"),
    ListGroupPolicies => Entity(Group, "GroupName"),
    PutRolePolicy => Entity(Role, "RoleName"),
    GetRolePolicy => Entity(Role, "RoleName"),
    DeleteRolePolicy => Entity(Role, "RoleName"),
    ListRolePolicies => Entity(Role, "RoleName"),

    CreatePolicy => NewPolicy,
    GetPolicy => PolicyArn,
    DeletePolicy => PolicyArn,
    ListPolicies => Any,
    CreatePolicyVersion => PolicyArn,
    GetPolicyVersion => PolicyArn,
    ListPolicyVersions => PolicyArn,
    ListEntitiesForPolicy => PolicyArn,
    DeletePolicyVersion => PolicyArn,
    SetDefaultPolicyVersion => PolicyArn,

    AttachUserPolicy => Entity(User, "UserName"),
    DetachUserPolicy => Entity(User, "UserName"),
    ListAttachedUserPolicies => Entity(User, "UserName"),
    AttachGroupPolicy => Entity(Group, "GroupName"),
    DetachGroupPolicy => Entity(Group, "GroupName"),
    ListAttachedGroupPolicies => Entity(Group, "GroupName"),
    AttachRolePolicy => Entity(Role, "RoleName"),
    DetachRolePolicy => Entity(Role, "RoleName"),
    ListAttachedRolePolicies => Entity(Role, "RoleName"),

    SimulatePrincipalPolicy => SourceArn("PolicySourceArn"),
    SimulateCustomPolicy => Any,
    GetContextKeysForPrincipalPolicy => SourceArn("PolicySourceArn"),
    GetContextKeysForCustomPolicy => Any,

    GetAccountAuthorizationDetails => Any,
}
