//! Every ECR operation Berth answers, with its IAM action and whether it acts on a
//! repository (`repositoryName` in the request) or on the registry (`*`).

/// What an operation's resource is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `arn:aws:ecr:REGION:REGISTRY:repository/NAME` from `repositoryName`.
    Repository,
    /// `arn:…:repository/NAME` from `resourceArn` (tagging calls).
    ResourceArn,
    /// Several repositories (DescribeRepositories): each decided on its own.
    Repositories,
    /// `*`.
    Registry,
}

macro_rules! operations {
    ($($name:ident => $scope:ident,)*) => {
        /// The ECR operations.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Operation { $($name),* }

        impl Operation {
            pub const ALL: &'static [Operation] = &[$(Operation::$name),*];

            pub fn from_name(name: &str) -> Option<Operation> {
                match name {
                    $(stringify!($name) => Some(Operation::$name),)*
                    _ => None,
                }
            }

            pub fn name(self) -> &'static str {
                match self { $(Operation::$name => stringify!($name)),* }
            }

            /// The IAM action (`ecr:PutImage`).
            pub fn action(self) -> &'static str {
                match self { $(Operation::$name => concat!("ecr:", stringify!($name))),* }
            }

            pub fn scope(self) -> Scope {
                match self { $(Operation::$name => Scope::$scope),* }
            }
        }
    };
}

operations! {
    GetAuthorizationToken => Registry,
    DescribeRegistry => Registry,
    PutRegistryPolicy => Registry,
    GetRegistryPolicy => Registry,
    DeleteRegistryPolicy => Registry,
    PutReplicationConfiguration => Registry,
    CreateRepositoryCreationTemplate => Registry,
    UpdateRepositoryCreationTemplate => Registry,
    DeleteRepositoryCreationTemplate => Registry,
    DescribeRepositoryCreationTemplates => Registry,
    StartReplicationBackfill => Registry,
    StopReplicationBackfill => Registry,
    ListReplicationBackfills => Registry,
    DescribeReplicationBackfillResults => Registry,
    CreatePullThroughCacheRule => Registry,
    DescribePullThroughCacheRules => Registry,
    UpdatePullThroughCacheRule => Registry,
    DeletePullThroughCacheRule => Registry,
    ValidatePullThroughCacheRule => Registry,

    CreateRepository => Repository,
    DescribeRepositories => Repositories,
    DeleteRepository => Repository,
    PutImageTagMutability => Repository,
    PutImageScanningConfiguration => Repository,
    SetRepositoryPolicy => Repository,
    GetRepositoryPolicy => Repository,
    DeleteRepositoryPolicy => Repository,
    PutLifecyclePolicy => Repository,
    GetLifecyclePolicy => Repository,
    DeleteLifecyclePolicy => Repository,
    StartLifecyclePolicyPreview => Repository,
    GetLifecyclePolicyPreview => Repository,

    TagResource => ResourceArn,
    UntagResource => ResourceArn,
    ListTagsForResource => ResourceArn,

    BatchCheckLayerAvailability => Repository,
    GetDownloadUrlForLayer => Repository,
    InitiateLayerUpload => Repository,
    UploadLayerPart => Repository,
    CompleteLayerUpload => Repository,
    PutImage => Repository,
    BatchGetImage => Repository,
    BatchDeleteImage => Repository,
    ListImages => Repository,
    DescribeImages => Repository,
    DescribeImageReplicationStatus => Repository,
}

impl Operation {
    /// Whether the operation writes what authorization reads and the caches keep
    /// (repositories with their settings, policies and tags; registry policies).
    pub fn changes_authorization(self) -> bool {
        use Operation::*;
        matches!(
            self,
            PutRegistryPolicy
                | DeleteRegistryPolicy
                | CreateRepository
                | DeleteRepository
                | PutImageTagMutability
                | PutImageScanningConfiguration
                | SetRepositoryPolicy
                | DeleteRepositoryPolicy
                | PutLifecyclePolicy
                | DeleteLifecyclePolicy
                | TagResource
                | UntagResource
        )
    }
}
