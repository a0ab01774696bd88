//! What the linter knows of ECR and of IAM's global condition keys: every ECR action
//! with the resource it applies to, the ECR condition keys, the global keys, and which
//! keys hold several values.

/// ECR actions that act on a repository (`arn:…:repository/NAME`).
pub const ECR_REPOSITORY_ACTIONS: &[&str] = &[
    "BatchCheckLayerAvailability",
    "BatchDeleteImage",
    "BatchGetImage",
    "BatchGetRepositoryScanningConfiguration",
    "BatchImportUpstreamImage",
    "CompleteLayerUpload",
    "CreateRepository",
    "DeleteLifecyclePolicy",
    "DeleteRepository",
    "DeleteRepositoryPolicy",
    "DescribeImageReplicationStatus",
    "DescribeImageScanFindings",
    "DescribeImageSigningStatus",
    "DescribeImages",
    "DescribeRepositories",
    "GetDownloadUrlForLayer",
    "GetImageCopyStatus",
    "GetLifecyclePolicy",
    "GetLifecyclePolicyPreview",
    "GetRepositoryPolicy",
    "InitiateLayerUpload",
    "ListImageReferrers",
    "ListImages",
    "ListTagsForResource",
    "PutImage",
    "PutImageScanningConfiguration",
    "PutImageTagMutability",
    "PutLifecyclePolicy",
    "ReplicateImage",
    "SetRepositoryPolicy",
    "StartImageScan",
    "StartLifecyclePolicyPreview",
    "TagResource",
    "UntagResource",
    "UpdateImageStorageClass",
    "UploadLayerPart",
];

/// ECR actions without resource-level permissions (only `"Resource": "*"` applies).
pub const ECR_REGISTRY_ACTIONS: &[&str] = &[
    "CreatePullThroughCacheRule",
    "CreateRepositoryCreationTemplate",
    "DeletePullThroughCacheRule",
    "DeleteRegistryPolicy",
    "DeleteRepositoryCreationTemplate",
    "DeleteSigningConfiguration",
    "DeregisterPullTimeUpdateExclusion",
    "DescribePullThroughCacheRules",
    "DescribeRegistry",
    "DescribeReplicationBackfillResults",
    "DescribeRepositoryCreationTemplates",
    "GetAccountSetting",
    "GetAuthorizationToken",
    "GetRegistryPolicy",
    "GetRegistryScanningConfiguration",
    "GetSigningConfiguration",
    "ListPullTimeUpdateExclusions",
    "ListReplicationBackfills",
    "PutAccountSetting",
    "PutRegistryPolicy",
    "PutRegistryScanningConfiguration",
    "PutReplicationConfiguration",
    "PutSigningConfiguration",
    "RegisterPullTimeUpdateExclusion",
    "StartReplicationBackfill",
    "StopReplicationBackfill",
    "UpdatePullThroughCacheRule",
    "UpdateRepositoryCreationTemplate",
    "ValidatePullThroughCacheRule",
];

/// ECR actions that write to a repository or its images (push, delete, policy).
pub const ECR_WRITE_ACTIONS: &[&str] = &[
    "BatchDeleteImage",
    "CompleteLayerUpload",
    "DeleteLifecyclePolicy",
    "DeleteRepository",
    "DeleteRepositoryPolicy",
    "InitiateLayerUpload",
    "PutImage",
    "PutImageTagMutability",
    "PutLifecyclePolicy",
    "ReplicateImage",
    "SetRepositoryPolicy",
    "TagResource",
    "UntagResource",
    "UploadLayerPart",
];

/// ECR's own condition keys (prefixes end with `/`).
pub const ECR_KEYS: &[&str] = &["ecr:resourcetag/", "ecr:accountsetting"];

/// Global condition keys (lower case; prefixes end with `/`).
pub const GLOBAL_KEYS: &[&str] = &[
    "aws:calledvia",
    "aws:calledviafirst",
    "aws:calledvialast",
    "aws:currenttime",
    "aws:epochtime",
    "aws:federatedprovider",
    "aws:multifactorauthage",
    "aws:multifactorauthpresent",
    "aws:principalaccount",
    "aws:principalarn",
    "aws:principalisawsservice",
    "aws:principalorgid",
    "aws:principalorgpaths",
    "aws:principalservicename",
    "aws:principalservicenameslist",
    "aws:principaltag/",
    "aws:principaltype",
    "aws:referer",
    "aws:requestedregion",
    "aws:requesttag/",
    "aws:resourceaccount",
    "aws:resourceorgid",
    "aws:resourceorgpaths",
    "aws:resourcetag/",
    "aws:securetransport",
    "aws:sourceaccount",
    "aws:sourcearn",
    "aws:sourceidentity",
    "aws:sourceip",
    "aws:sourceorgid",
    "aws:sourceorgpaths",
    "aws:sourcevpc",
    "aws:sourcevpce",
    "aws:tagkeys",
    "aws:tokenissuetime",
    "aws:useragent",
    "aws:userid",
    "aws:username",
    "aws:viaawsservice",
    "aws:vpcsourceip",
];

/// Keys that hold several values: an operator on them needs `ForAllValues`/`ForAnyValue`.
pub use crate::request::MULTIVALUED_KEYS;

fn known(list: &[&str], key_lc: &str) -> bool {
    list.iter().any(|k| {
        if k.ends_with('/') {
            key_lc.starts_with(k) && key_lc.len() > k.len()
        } else {
            k.eq_ignore_ascii_case(key_lc)
        }
    })
}

pub fn is_global_key(key_lc: &str) -> bool {
    known(GLOBAL_KEYS, key_lc)
}

pub fn is_ecr_key(key_lc: &str) -> bool {
    known(ECR_KEYS, key_lc)
}

/// The ECR action's canonical name (`ecr:PutImage`), case-insensitively.
pub fn ecr_action(name: &str) -> Option<&'static str> {
    ECR_REPOSITORY_ACTIONS
        .iter()
        .chain(ECR_REGISTRY_ACTIONS)
        .find(|a| a.eq_ignore_ascii_case(name))
        .copied()
}

/// The closest ECR action to a misspelt one (edit distance ≤ 3), for "did you mean".
pub fn closest_ecr_action(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    ECR_REPOSITORY_ACTIONS
        .iter()
        .chain(ECR_REGISTRY_ACTIONS)
        .map(|a| (distance(&lower, &a.to_ascii_lowercase()), *a))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, a)| a)
}

/// Levenshtein distance.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        assert_eq!(ecr_action("putimage"), Some("PutImage"));
        assert_eq!(closest_ecr_action("PutImgae"), Some("PutImage"));
        assert_eq!(closest_ecr_action("Nothing"), None);
        assert!(is_global_key("aws:principaltag/team") && !is_global_key("aws:principaltag/"));
        assert!(is_ecr_key("ecr:resourcetag/env") && !is_ecr_key("ecr:repositoryname"));
    }
}
