//! The AWS managed policies Berth ships (account `aws`, ARNs
//! `arn:aws:iam::aws:policy/NAME`): attachable by every account, readable through
//! GetPolicy/GetPolicyVersion/ListPolicies, never changed by callers. Installed (and
//! brought up to date) in the metadata store when the server starts, so attachments
//! resolve like any managed policy's.

use berth_store::{ManagedPolicy, Store, StoreError};

/// The account that owns them.
pub const ACCOUNT: &str = "aws";

/// (name, default version, created, updated, description, document). The ECR policies'
/// documents are AWS's, as published in the AWS managed policy reference.
const CATALOG: &[(&str, &str, i64, i64, &str, &str)] = &[
    (
        "AdministratorAccess",
        "v1",
        1_423_247_986,
        1_423_247_986,
        "Provides full access to AWS services and resources.",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
    ),
    (
        "AmazonEC2ContainerRegistryFullAccess",
        "v1",
        1_450_717_440,
        1_450_717_440,
        "Provides administrative access to Amazon ECR resources",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ecr:*","cloudtrail:LookupEvents"],"Resource":"*"}]}"#,
    ),
    (
        "AmazonEC2ContainerRegistryPowerUser",
        "v3",
        1_450_717_500,
        1_576_010_880,
        "Provides full access to Amazon EC2 Container Registry repositories, but does not allow repository deletion or policy changes.",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ecr:GetAuthorizationToken","ecr:BatchCheckLayerAvailability","ecr:GetDownloadUrlForLayer","ecr:GetRepositoryPolicy","ecr:DescribeRepositories","ecr:ListImages","ecr:DescribeImages","ecr:BatchGetImage","ecr:GetLifecyclePolicy","ecr:GetLifecyclePolicyPreview","ecr:ListTagsForResource","ecr:DescribeImageScanFindings","ecr:InitiateLayerUpload","ecr:UploadLayerPart","ecr:CompleteLayerUpload","ecr:PutImage"],"Resource":"*"}]}"#,
    ),
    (
        "AmazonEC2ContainerRegistryPullOnly",
        "v1",
        1_728_061_080,
        1_728_061_080,
        "Provides permission to pull images from Amazon EC2 Container Registry repositories.",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ecr:GetAuthorizationToken","ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"],"Resource":"*"}]}"#,
    ),
    (
        "AmazonEC2ContainerRegistryReadOnly",
        "v3",
        1_450_717_440,
        1_576_011_360,
        "Provides read-only access to Amazon EC2 Container Registry repositories.",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ecr:GetAuthorizationToken","ecr:BatchCheckLayerAvailability","ecr:GetDownloadUrlForLayer","ecr:GetRepositoryPolicy","ecr:DescribeRepositories","ecr:ListImages","ecr:DescribeImages","ecr:BatchGetImage","ecr:GetLifecyclePolicy","ecr:GetLifecyclePolicyPreview","ecr:ListTagsForResource","ecr:DescribeImageScanFindings"],"Resource":"*"}]}"#,
    ),
];

/// A stable `ANPA…` id derived from the name.
fn policy_id(name: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = berth_sigv4::sha256(name.as_bytes());
    let mut id = String::from("ANPA");
    id.extend(
        digest
            .iter()
            .take(17)
            .map(|b| ALPHABET[(b & 31) as usize] as char),
    );
    id
}

/// Whether a policy ARN names one of them.
pub fn is_aws_managed(arn: &str) -> bool {
    arn.starts_with("arn:aws:iam::aws:policy/")
}

/// Install the catalog into the store.
pub async fn install(store: &dyn Store) -> Result<(), StoreError> {
    for (name, version, created, updated, description, document) in CATALOG {
        let policy = ManagedPolicy {
            account: ACCOUNT.into(),
            name: (*name).into(),
            path: "/".into(),
            policy_id: policy_id(name),
            default_version: (*version).into(),
            description: Some((*description).into()),
            created: *created,
            updated: *updated,
            attachment_count: 0,
            boundary_usage_count: 0,
        };
        store.put_builtin_policy(&policy, document).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_document_is_a_valid_identity_policy() {
        for (name, _, _, _, _, document) in CATALOG {
            berth_iam::parse_policy(document, berth_iam::PolicyKind::Identity)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(policy_id(name).len(), 21);
        }
    }
}
