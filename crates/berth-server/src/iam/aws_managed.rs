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

/// Install the catalog into the store, and retire what an earlier release shipped and
/// this one does not (unless something still uses it: then it stays, with a warning).
pub async fn install(store: &dyn Store) -> Result<(), StoreError> {
    for old in store.policies(ACCOUNT, "/").await? {
        if CATALOG.iter().any(|(name, ..)| *name == old.name) {
            continue;
        }
        match store.delete_policy(ACCOUNT, &old.name).await {
            Ok(()) => {
                tracing::info!(policy = %old.arn(), "retired an AWS managed policy this release no longer ships")
            }
            Err(StoreError::Conflict(_)) => tracing::warn!(
                policy = %old.arn(),
                "this release no longer ships this AWS managed policy, but it is attached or used as a boundary: kept"
            ),
            Err(e) => return Err(e),
        }
    }
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

    #[tokio::test]
    async fn install_is_idempotent_and_retires_unused_leftovers() {
        use berth_store::{Account, EntityKind, SqliteStore};
        let store = SqliteStore::in_memory().await.unwrap();
        install(&store).await.unwrap();
        install(&store).await.unwrap();
        assert_eq!(
            store.policies(ACCOUNT, "/").await.unwrap().len(),
            CATALOG.len()
        );
        // Two policies an older release shipped; one is still attached somewhere.
        for name in ["Gone", "StillUsed"] {
            let mut p = store
                .policy(ACCOUNT, "AdministratorAccess")
                .await
                .unwrap()
                .unwrap();
            p.name = name.into();
            p.policy_id = policy_id(name);
            store.put_builtin_policy(&p, "{}").await.unwrap();
        }
        let account = Account {
            id: "111111111111".into(),
            alias: None,
            created: 1,
        };
        let root = berth_store::AccessKey {
            id: "AKIAROOTROOTROOTROOT".into(),
            secret: "s".into(),
            account: account.id.clone(),
            user: None,
            status: berth_store::KeyStatus::Active,
            created: 1,
        };
        store.create_account(&account, &root).await.unwrap();
        let user = berth_store::Entity {
            account: account.id.clone(),
            kind: EntityKind::User,
            name: "u".into(),
            path: "/".into(),
            unique_id: "AIDAU".into(),
            created: 1,
            trust_policy: None,
            description: None,
            max_session_secs: None,
            boundary: None,
        };
        store.create_entity(&user, &[]).await.unwrap();
        store
            .attach_policy(
                &account.id,
                EntityKind::User,
                "u",
                "arn:aws:iam::aws:policy/StillUsed",
            )
            .await
            .unwrap();
        install(&store).await.unwrap();
        assert!(store.policy(ACCOUNT, "Gone").await.unwrap().is_none());
        assert!(store.policy(ACCOUNT, "StillUsed").await.unwrap().is_some());
    }

    #[test]
    fn every_document_is_a_valid_identity_policy() {
        for (name, _, _, _, _, document) in CATALOG {
            berth_iam::parse_policy(document, berth_iam::PolicyKind::Identity)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(policy_id(name).len(), 21);
        }
    }
}
