//! The SQLite store through its trait: what it keeps, what it refuses, and that two
//! processes' worth of connections share one database file.

use berth_store::*;

const A: &str = "111111111111";

fn secrets_key() -> SecretsKey {
    SecretsKey::from_bytes([9; 32])
}

fn entity(kind: EntityKind, name: &str, id: &str) -> Entity {
    Entity {
        account: A.into(),
        kind,
        name: name.into(),
        path: "/".into(),
        unique_id: id.into(),
        created: 1,
        trust_policy: None,
        description: None,
        max_session_secs: None,
        boundary: None,
    }
}

fn key(id: &str, user: Option<&str>) -> AccessKey {
    AccessKey {
        id: id.into(),
        secret: "s".into(),
        account: A.into(),
        user: user.map(str::to_string),
        status: KeyStatus::Active,
        created: 1,
    }
}

fn policy(name: &str) -> ManagedPolicy {
    ManagedPolicy {
        account: A.into(),
        name: name.into(),
        path: "/".into(),
        policy_id: format!("ANPA{name}"),
        default_version: "v1".into(),
        description: None,
        created: 1,
        updated: 1,
        attachment_count: 0,
        boundary_usage_count: 0,
    }
}

async fn store_with_account(s: &dyn Store) {
    let account = Account {
        id: A.into(),
        alias: Some("main".into()),
        created: 1,
    };
    s.create_account(&account, &key("AKIAROOT", None))
        .await
        .unwrap();
}

#[tokio::test]
async fn identities_and_their_policies() {
    let s = SqliteStore::in_memory().await.unwrap();
    store_with_account(&s).await;
    assert!(matches!(
        s.create_account(
            &Account {
                id: A.into(),
                alias: None,
                created: 1
            },
            &key("AKIAOTHER", None)
        )
        .await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert_eq!(
        s.access_key("AKIAOTHER").await.unwrap(),
        None,
        "a failed account creation leaves no key"
    );

    s.create_entity(
        &entity(EntityKind::User, "alice", "AIDA1"),
        &[Tag {
            key: "team".into(),
            value: "dev".into(),
        }],
    )
    .await
    .unwrap();
    // Names are unique regardless of case.
    assert!(matches!(
        s.create_entity(&entity(EntityKind::User, "ALICE", "AIDA2"), &[])
            .await,
        Err(StoreError::AlreadyExists(_))
    ));
    s.create_entity(&entity(EntityKind::Group, "devs", "AGPA1"), &[])
        .await
        .unwrap();
    s.add_user_to_group(A, "devs", "alice").await.unwrap();
    s.put_inline_policy(A, EntityKind::User, "alice", "own", "{\"u\":1}")
        .await
        .unwrap();
    s.put_inline_policy(A, EntityKind::Group, "devs", "shared", "{\"g\":1}")
        .await
        .unwrap();
    s.create_policy(&policy("managed"), "{\"m\":1}", &[])
        .await
        .unwrap();
    s.create_policy(&policy("fence"), "{\"b\":1}", &[])
        .await
        .unwrap();
    let arn = "arn:aws:iam::111111111111:policy/managed";
    s.attach_policy(A, EntityKind::Group, "devs", arn)
        .await
        .unwrap();
    s.set_boundary(
        A,
        EntityKind::User,
        "alice",
        Some("arn:aws:iam::111111111111:policy/fence"),
    )
    .await
    .unwrap();

    let docs = s
        .identity_documents(A, EntityKind::User, "alice")
        .await
        .unwrap();
    let mut sources: Vec<&str> = docs.policies.iter().map(|p| p.source.as_str()).collect();
    sources.sort();
    assert_eq!(sources, vec![arn, "group/devs/shared", "user/alice/own"]);
    assert_eq!(
        docs.boundary.as_ref().map(|b| b.document.as_str()),
        Some("{\"b\":1}")
    );
    assert_eq!(
        docs.tags,
        vec![Tag {
            key: "team".into(),
            value: "dev".into()
        }]
    );

    // A new default version is what applies.
    let v = s
        .create_policy_version(A, "managed", "{\"m\":2}", true, 2, 5)
        .await
        .unwrap();
    assert_eq!(v.version_id, "v2");
    let docs = s
        .identity_documents(A, EntityKind::User, "alice")
        .await
        .unwrap();
    assert!(docs.policies.iter().any(|p| p.document == "{\"m\":2}"));
    assert_eq!(
        s.policy(A, "managed")
            .await
            .unwrap()
            .unwrap()
            .attachment_count,
        1
    );

    // Deleting what is in use is refused, and changes nothing.
    assert!(matches!(
        s.delete_policy(A, "managed").await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.delete_entity(A, EntityKind::User, "alice").await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.delete_entity(A, EntityKind::Group, "devs").await,
        Err(StoreError::Conflict(_))
    ));
    assert!(s
        .entity(A, EntityKind::User, "alice")
        .await
        .unwrap()
        .is_some());
    assert!(matches!(
        s.delete_policy_version(A, "managed", "v2").await,
        Err(StoreError::Conflict(_))
    ));

    s.delete_inline_policy(A, EntityKind::User, "alice", "own")
        .await
        .unwrap();
    s.remove_user_from_group(A, "devs", "alice").await.unwrap();
    s.delete_entity(A, EntityKind::User, "alice").await.unwrap();
    assert!(s
        .entity(A, EntityKind::User, "alice")
        .await
        .unwrap()
        .is_none());
    assert!(matches!(
        s.delete_entity(A, EntityKind::User, "alice").await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn keys_sessions_and_limits() {
    let s = SqliteStore::in_memory().await.unwrap();
    store_with_account(&s).await;
    s.create_entity(&entity(EntityKind::User, "bob", "AIDA3"), &[])
        .await
        .unwrap();
    s.create_access_key(&key("AKIA1", Some("bob")), 2)
        .await
        .unwrap();
    s.create_access_key(&key("AKIA2", Some("bob")), 2)
        .await
        .unwrap();
    assert!(matches!(
        s.create_access_key(&key("AKIA3", Some("bob")), 2).await,
        Err(StoreError::LimitExceeded(_))
    ));
    // The root user's keys are counted apart from the users'.
    assert_eq!(s.access_keys(A, None).await.unwrap().len(), 1);
    s.set_access_key_status(A, Some("bob"), "AKIA1", KeyStatus::Inactive)
        .await
        .unwrap();
    assert_eq!(
        s.access_key("AKIA1").await.unwrap().unwrap().status,
        KeyStatus::Inactive
    );
    // A key is only reachable through its owner.
    assert!(matches!(
        s.delete_access_key(A, None, "AKIA2").await,
        Err(StoreError::NotFound(_))
    ));
    s.delete_access_key(A, Some("bob"), "AKIA2").await.unwrap();
    assert_eq!(s.access_key("AKIA2").await.unwrap(), None);

    let session = Session {
        access_key_id: "ASIA1".into(),
        secret: "x".into(),
        token: "t".into(),
        account: A.into(),
        claims: "{}".into(),
        created: 10,
        expires: 100,
    };
    s.create_session(&session).await.unwrap();
    assert_eq!(s.session("ASIA1").await.unwrap(), Some(session));
    assert_eq!(s.delete_sessions_expired_before(50).await.unwrap(), 0);
    assert_eq!(s.delete_sessions_expired_before(101).await.unwrap(), 1);

    for i in 0..50 {
        s.tag(
            A,
            TagTarget::User,
            "bob",
            &[Tag {
                key: format!("k{i}"),
                value: "v".into(),
            }],
            50,
        )
        .await
        .unwrap();
    }
    assert!(matches!(
        s.tag(
            A,
            TagTarget::User,
            "bob",
            &[Tag {
                key: "one-more".into(),
                value: "v".into()
            }],
            50
        )
        .await,
        Err(StoreError::LimitExceeded(_))
    ));
    assert_eq!(
        s.tags(A, TagTarget::User, "bob").await.unwrap().len(),
        50,
        "a refused tag call adds nothing"
    );
}

#[tokio::test]
async fn one_file_many_openers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.db");
    let a = SqliteStore::open(&path, &secrets_key()).await.unwrap();
    let b = SqliteStore::open(&path, &secrets_key()).await.unwrap();
    store_with_account(&a).await;
    assert_eq!(b.accounts().await.unwrap().len(), 1);
    let account = Account {
        id: "222222222222".into(),
        alias: None,
        created: 2,
    };
    let mut k = key("AKIAB", None);
    k.account = account.id.clone();
    b.create_account(&account, &k).await.unwrap();
    assert_eq!(
        a.access_key("AKIAB").await.unwrap().unwrap().account,
        "222222222222"
    );
}

/// Built-in policies (account `aws`): installing twice is harmless, a new version
/// replaces the old, attachments from any account resolve, usage counts per account.
#[tokio::test]
async fn builtin_policies_shared_by_every_account() {
    let s = SqliteStore::in_memory().await.unwrap();
    store_with_account(&s).await;
    let mut p = policy("Shipped");
    p.account = "aws".into();
    p.default_version = "v2".into();
    let allow = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*","Resource":"*"}]}"#;
    s.put_builtin_policy(&p, "{}").await.unwrap();
    s.put_builtin_policy(&p, allow).await.unwrap();
    let arn = "arn:aws:iam::aws:policy/Shipped";
    assert_eq!(
        s.policy("aws", "Shipped").await.unwrap().unwrap().arn(),
        arn
    );
    let versions = s.policy_versions("aws", "Shipped").await.unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(
        (
            versions[0].version_id.as_str(),
            versions[0].document.as_str()
        ),
        ("v2", allow)
    );
    // A newer catalog replaces the version.
    p.default_version = "v3".into();
    s.put_builtin_policy(&p, allow).await.unwrap();
    let versions = s.policy_versions("aws", "Shipped").await.unwrap();
    assert_eq!(
        versions
            .iter()
            .map(|v| v.version_id.as_str())
            .collect::<Vec<_>>(),
        ["v3"]
    );

    s.create_entity(&entity(EntityKind::User, "u", "AIDAU"), &[])
        .await
        .unwrap();
    s.attach_policy(A, EntityKind::User, "u", arn)
        .await
        .unwrap();
    let docs = s
        .identity_documents(A, EntityKind::User, "u")
        .await
        .unwrap();
    assert_eq!(docs.policies.len(), 1);
    assert_eq!(
        (
            docs.policies[0].source.as_str(),
            docs.policies[0].document.as_str()
        ),
        (arn, allow)
    );
    assert_eq!(s.policy_usage_in(A, arn).await.unwrap(), (1, 0));
    assert_eq!(
        s.policy_usage_in("222222222222", arn).await.unwrap(),
        (0, 0)
    );
}

/// Many writers, each changing a different setting of one repository at the same moment
/// (from two openers of one file): every change survives, none is undone by another.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_repository_settings_all_survive() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.db");
    let a = std::sync::Arc::new(SqliteStore::open(&path, &secrets_key()).await.unwrap());
    let b = std::sync::Arc::new(SqliteStore::open(&path, &secrets_key()).await.unwrap());
    store_with_account(&*a).await;
    let filters = vec![
        MutabilityFilter::new("dev-*").unwrap(),
        MutabilityFilter::new("latest").unwrap(),
    ];
    for round in 0..20 {
        let name = format!("repo{round}");
        let mut repo = Repository::new(A, &name, 1_796_410_559_123);
        repo.encryption = Encryption {
            kind: EncryptionType::Kms,
            kms_key: Some("arn:aws:kms:us-east-1:111111111111:key/k".into()),
        };
        a.create_repository(&repo, &[]).await.unwrap();
        let settings = vec![
            RepositorySetting::TagMutability {
                mutability: TagMutability::ImmutableWithExclusion,
                filters: filters.clone(),
            },
            RepositorySetting::ScanOnPush(true),
            RepositorySetting::Policy(Some("{\"policy\":1}".into())),
            RepositorySetting::LifecyclePolicy(Some(("{\"rules\":[]}".into(), 1_796_410_600_456))),
        ];
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(settings.len() * 2));
        let mut tasks = Vec::new();
        for (i, setting) in settings.into_iter().enumerate() {
            // each setting twice, through both openers, plus tags beside them
            for store in [a.clone(), b.clone()] {
                let (setting, name, barrier) = (setting.clone(), name.clone(), barrier.clone());
                tasks.push(tokio::spawn(async move {
                    barrier.wait().await;
                    if i == 0 {
                        let tag = Tag {
                            key: "team".into(),
                            value: "a".into(),
                        };
                        Store::tag(&*store, A, TagTarget::Repository, &name, &[tag], 50)
                            .await
                            .unwrap();
                    }
                    store.update_repository(A, &name, &setting).await.unwrap()
                }));
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
        let got = b.repository(A, &name).await.unwrap().unwrap();
        assert_eq!(got.tag_mutability, TagMutability::ImmutableWithExclusion);
        assert_eq!(got.mutability_filters, filters);
        assert!(got.scan_on_push);
        assert_eq!(got.policy.as_deref(), Some("{\"policy\":1}"));
        assert_eq!(got.lifecycle_policy.as_deref(), Some("{\"rules\":[]}"));
        assert_eq!(got.lifecycle_updated, Some(1_796_410_600_456));
        assert_eq!(got.encryption, repo.encryption);
        assert_eq!(got.created, 1_796_410_559_123);
        assert_eq!(
            Store::tags(&*a, A, TagTarget::Repository, &name)
                .await
                .unwrap()
                .len(),
            1
        );
    }
    // update_repository answers the repository as it was, and NotFound for none
    let before = a
        .update_repository(A, "repo0", &RepositorySetting::Policy(None))
        .await
        .unwrap();
    assert_eq!(before.policy.as_deref(), Some("{\"policy\":1}"));
    assert_eq!(
        a.repository(A, "repo0").await.unwrap().unwrap().policy,
        None
    );
    assert!(matches!(
        a.update_repository(A, "nosuch", &RepositorySetting::ScanOnPush(true))
            .await,
        Err(RegistryError::RepositoryNotFound { .. })
    ));
}

/// A database written before settings were typed and times kept milliseconds: the
/// migrations turn JSON settings into typed columns and seconds into milliseconds.
#[tokio::test]
async fn old_settings_and_second_times_are_migrated() {
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.db");
    {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(true),
            )
            .await
            .unwrap();
        let migrations = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
        let mut old = sqlx::migrate::Migrator::new(migrations).await.unwrap();
        old.migrations = old
            .migrations
            .iter()
            .filter(|m| m.version <= 2)
            .cloned()
            .collect::<Vec<_>>()
            .into();
        old.run(&pool).await.unwrap();
        for sql in [
            "INSERT INTO accounts (id, alias, created_at) VALUES ('111111111111', NULL, 1)",
            r#"INSERT INTO repositories (account_id, name, created_at, tag_mutability, mutability_filters,
                scan_on_push, encryption, policy, lifecycle_policy, lifecycle_updated) VALUES
                ('111111111111', 'filtered', 1796410559, 'MUTABLE_WITH_EXCLUSION',
                 '[{"filterType":"WILDCARD","filter":"release-*"},{"filterType":"WILDCARD","filter":"v1.*"}]',
                 1, '{"encryptionType":"KMS","kmsKey":"arn:aws:kms:us-east-1:111111111111:key/k"}',
                 NULL, '{"rules":[]}', 1796410560)"#,
            r#"INSERT INTO repositories (account_id, name, created_at, tag_mutability, mutability_filters,
                scan_on_push, encryption, policy, lifecycle_policy, lifecycle_updated) VALUES
                ('111111111111', 'plain', 1796410561, 'IMMUTABLE', NULL, 0, '{"encryptionType":"AES256"}',
                 NULL, NULL, NULL)"#,
            "INSERT INTO images (account_id, repository, digest, media_type, manifest, size, pushed_at, last_pull)
                VALUES ('111111111111', 'plain', 'sha256:aa', 'm', x'7b7d', 2, 1796410562, 1796410563)",
            "INSERT INTO uploads (id, account_id, repository, principal, created_at, updated_at)
                VALUES ('u1', '111111111111', 'plain', 'p', 1796410564, 1796410565)",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }
    let s = SqliteStore::open(&path, &secrets_key()).await.unwrap();
    let f = s.repository(A, "filtered").await.unwrap().unwrap();
    assert_eq!(f.tag_mutability, TagMutability::MutableWithExclusion);
    assert_eq!(
        f.mutability_filters,
        vec![
            MutabilityFilter::new("release-*").unwrap(),
            MutabilityFilter::new("v1.*").unwrap()
        ]
    );
    assert!(f.scan_on_push);
    assert_eq!(
        f.encryption,
        Encryption {
            kind: EncryptionType::Kms,
            kms_key: Some("arn:aws:kms:us-east-1:111111111111:key/k".into())
        }
    );
    assert_eq!(f.created, 1_796_410_559_000);
    assert_eq!(f.lifecycle_updated, Some(1_796_410_560_000));
    let p = s.repository(A, "plain").await.unwrap().unwrap();
    assert_eq!(p.tag_mutability, TagMutability::Immutable);
    assert!(p.mutability_filters.is_empty());
    assert_eq!(p.encryption, Encryption::default());
    let img = s.image(A, "plain", "sha256:aa").await.unwrap().unwrap();
    assert_eq!(
        (img.pushed_at, img.last_pull),
        (1_796_410_562_000, Some(1_796_410_563_000))
    );
    let u = s.upload("u1").await.unwrap().unwrap();
    assert_eq!(
        (u.created, u.updated),
        (1_796_410_564_000, 1_796_410_565_000)
    );
    // The schema is current (job leases included) and leases work on the old data.
    s.check_schema().await.unwrap();
    let lease = s.try_lease("clean", "node-a", 1, 30_000).await.unwrap();
    assert_eq!(lease.unwrap().holder, "node-a");
}

/// The raw bytes of the database file and its write-ahead log.
fn raw_files(path: &std::path::Path) -> Vec<u8> {
    let mut raw = std::fs::read(path).unwrap();
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    if let Ok(w) = std::fs::read(&wal) {
        raw.extend_from_slice(&w);
    }
    raw
}

fn holds(raw: &[u8], needle: &str) -> bool {
    raw.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Secrets written through the store are sealed in the file: neither the database nor its
/// write-ahead log holds them in clear, they read back as written, a sealed value moved
/// to another row does not open, and another key is refused.
#[tokio::test]
async fn secrets_are_sealed_at_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.db");
    let fresh = SqliteStore::open_without_secrets(&path).await.unwrap();
    assert!(!fresh.holds_sealed_secrets().await.unwrap());
    let s = fresh.with_secrets_key(&secrets_key()).await.unwrap();
    assert!(s.holds_sealed_secrets().await.unwrap());
    let account = Account {
        id: A.into(),
        alias: None,
        created: 1,
    };
    let mut root = key("AKIAROOTKEY000000001", None);
    root.secret = "RootSecretInClearWouldBeBad0000000000001".into();
    s.create_account(&account, &root).await.unwrap();
    let mut other = key("AKIAOTHERKEY00000001", None);
    other.secret = "OtherSecretInClearWouldBeBad00000000001".into();
    s.create_access_key(&other, 2).await.unwrap();
    let session = Session {
        access_key_id: "ASIASESSION000000001".into(),
        secret: "SessionSecretInClearWouldBeBad000000001".into(),
        token: "token".into(),
        account: A.into(),
        claims: "{}".into(),
        created: 1,
        expires: i64::MAX,
    };
    s.create_session(&session).await.unwrap();
    let server = s
        .server_secret(
            "registry-token-key",
            "ServerSecretInClearWouldBeBad00000001",
        )
        .await
        .unwrap();
    assert_eq!(server, "ServerSecretInClearWouldBeBad00000001");
    // a second candidate does not replace the first
    assert_eq!(
        s.server_secret("registry-token-key", "another")
            .await
            .unwrap(),
        server
    );
    assert_eq!(
        s.access_key(&root.id).await.unwrap().unwrap().secret,
        root.secret
    );
    let listed = s.access_keys(A, None).await.unwrap();
    assert_eq!(
        listed.iter().map(|k| k.secret.as_str()).collect::<Vec<_>>(),
        [other.secret.as_str(), root.secret.as_str()]
    );
    assert_eq!(
        s.session(&session.access_key_id)
            .await
            .unwrap()
            .unwrap()
            .secret,
        session.secret
    );
    let raw = raw_files(&path);
    for secret in [&root.secret, &other.secret, &session.secret, &server] {
        assert!(!holds(&raw, secret), "{secret} is in the file in clear");
    }
    assert!(holds(&raw, &root.id), "the ids are in clear (sanity)");

    // a sealed value copied to another row does not open there
    sqlx::query("UPDATE access_keys SET secret = (SELECT secret FROM access_keys WHERE access_key_id = ?) WHERE access_key_id = ?")
        .bind(&root.id)
        .bind(&other.id)
        .execute(&sqlx::SqlitePool::connect_with(
            sqlx::sqlite::SqliteConnectOptions::new().filename(&path),
        )
        .await
        .unwrap())
        .await
        .unwrap();
    let e = s.access_key(&other.id).await.unwrap_err();
    assert!(
        e.to_string().contains("does not open with the secrets key"),
        "{e}"
    );
    assert!(s.access_key(&root.id).await.is_ok());

    // another key is refused; without a key, secrets are refused but the rest reads
    let wrong = SqliteStore::open_without_secrets(&path).await.unwrap();
    assert!(wrong.holds_sealed_secrets().await.unwrap());
    assert_eq!(
        wrong
            .clone()
            .with_secrets_key(&SecretsKey::from_bytes([1; 32]))
            .await
            .unwrap_err(),
        KeyError::WrongKey
    );
    assert_eq!(wrong.accounts().await.unwrap().len(), 1);
    let e = wrong.access_key(&root.id).await.unwrap_err();
    assert!(e.to_string().contains("without the secrets key"), "{e}");
    assert!(wrong.create_session(&session).await.is_err());
    assert!(wrong.server_secret("x", "y").await.is_err());
    assert!(SqliteStore::open(&path, &secrets_key()).await.is_ok());
}

/// A database written before secrets were sealed: the first open with a key seals every
/// secret (access keys, sessions, server secrets) and leaves none in clear in the file or
/// its log; they read back unchanged, and the database then needs that key.
#[tokio::test]
async fn clear_secrets_of_an_old_database_are_sealed() {
    use sqlx::sqlite::SqliteConnectOptions;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.db");
    let secrets = OLD_SECRETS;
    write_version4_database(&path).await;
    assert!(
        holds(&raw_files(&path), secrets[0]),
        "the old file holds them (sanity)"
    );
    let s = SqliteStore::open(&path, &secrets_key()).await.unwrap();
    let raw = raw_files(&path);
    for secret in secrets {
        assert!(
            !holds(&raw, secret),
            "{secret} is still in the file in clear"
        );
    }
    assert_eq!(
        s.access_key("AKIAOLDROOT000000001")
            .await
            .unwrap()
            .unwrap()
            .secret,
        secrets[0]
    );
    assert_eq!(
        s.access_keys(A, Some("bob")).await.unwrap()[0].secret,
        secrets[1]
    );
    assert_eq!(
        s.session("ASIAOLD0000000000001")
            .await
            .unwrap()
            .unwrap()
            .secret,
        secrets[2]
    );
    assert_eq!(
        s.server_secret("registry-token-key", "new").await.unwrap(),
        secrets[3]
    );
    assert_eq!(
        s.server_secret("authorization-message-key", "new")
            .await
            .unwrap(),
        secrets[4]
    );
    assert!(!s.holds_clear_remnants().await.unwrap());
    drop(s);
    // the erasing is noted as done; were it not (it failed), the next open does it
    let remnants = || async {
        let pool = sqlx::SqlitePool::connect_with(SqliteConnectOptions::new().filename(&path))
            .await
            .unwrap();
        let n: i64 = sqlx::query_scalar("SELECT clear_remnants FROM secrets_key_check")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    };
    assert_eq!(remnants().await, 0);
    {
        let pool = sqlx::SqlitePool::connect_with(SqliteConnectOptions::new().filename(&path))
            .await
            .unwrap();
        sqlx::query("UPDATE secrets_key_check SET clear_remnants = 1")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
    drop(SqliteStore::open(&path, &secrets_key()).await.unwrap());
    assert_eq!(remnants().await, 0);
    // sealed once: opening again with the key reads the same, another key is refused
    let again = SqliteStore::open(&path, &secrets_key()).await.unwrap();
    assert_eq!(
        again
            .access_key("AKIAOLDROOT000000001")
            .await
            .unwrap()
            .unwrap()
            .secret,
        secrets[0]
    );
    let e = SqliteStore::open(&path, &SecretsKey::from_bytes([2; 32]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("another secrets key"), "{e}");
}

/// Secrets in clear in a version-4 database: two access keys, a session and the two
/// server secrets.
const OLD_SECRETS: [&str; 5] = [
    "OldRootSecretInClear0000000000000000001",
    "OldUserSecretInClear0000000000000000001",
    "OldSessionSecretInClear0000000000000001",
    "OldTokenKeyInClear000000000000000000001OldTokenKeyInClear000000000000000000002",
    "OldMessageKeyInClear00000000000000000001",
];

/// A database as the version before secrets were sealed left it (migrations 1 to 4),
/// holding [`OLD_SECRETS`] in clear.
async fn write_version4_database(path: &std::path::Path) {
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
    let secrets = OLD_SECRETS;
    {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal),
            )
            .await
            .unwrap();
        let migrations = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
        let mut old = sqlx::migrate::Migrator::new(migrations).await.unwrap();
        old.migrations = old
            .migrations
            .iter()
            .filter(|m| m.version <= 4)
            .cloned()
            .collect::<Vec<_>>()
            .into();
        old.run(&pool).await.unwrap();
        sqlx::query(
            "INSERT INTO accounts (id, alias, created_at) VALUES ('111111111111', NULL, 1)",
        )
        .execute(&pool)
        .await
        .unwrap();
        for (id, user, secret) in [
            ("AKIAOLDROOT000000001", None, secrets[0]),
            ("AKIAOLDUSER000000001", Some("bob"), secrets[1]),
        ] {
            sqlx::query("INSERT INTO access_keys (access_key_id, secret, account_id, user_name, status, created_at) VALUES (?, ?, '111111111111', ?, 'Active', 1)")
                .bind(id).bind(secret).bind(user)
                .execute(&pool).await.unwrap();
        }
        sqlx::query("INSERT INTO sessions (access_key_id, secret, token, account_id, claims, created_at, expires_at) VALUES ('ASIAOLD0000000000001', ?, 'tok', '111111111111', '{}', 1, 9999999999)")
            .bind(secrets[2]).execute(&pool).await.unwrap();
        for (name, v) in [
            ("registry-token-key", secrets[3]),
            ("authorization-message-key", secrets[4]),
        ] {
            sqlx::query("INSERT INTO server_secrets (name, value) VALUES (?, ?)")
                .bind(name)
                .bind(v)
                .execute(&pool)
                .await
                .unwrap();
        }
        pool.close().await;
    }
}

/// Erasing what sealing left in clear waits for no other process: with another
/// connection reading, the log cannot be emptied; that is noted, and the next open
/// finishes it.
#[tokio::test]
async fn clear_remnants_kept_by_a_reader_are_erased_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.db");
    write_version4_database(&path).await;
    let reader =
        sqlx::SqlitePool::connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(&path))
            .await
            .unwrap();
    let mut snapshot = reader.begin().await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM access_keys")
        .fetch_one(&mut *snapshot)
        .await
        .unwrap();
    assert_eq!(n, 2);
    let s = SqliteStore::open(&path, &secrets_key()).await.unwrap();
    assert!(s.holds_clear_remnants().await.unwrap());
    assert_eq!(
        s.access_key("AKIAOLDROOT000000001")
            .await
            .unwrap()
            .unwrap()
            .secret,
        OLD_SECRETS[0]
    );
    drop(snapshot);
    reader.close().await;
    drop(s);
    let s = SqliteStore::open(&path, &secrets_key()).await.unwrap();
    assert!(!s.holds_clear_remnants().await.unwrap());
    let raw = raw_files(&path);
    for secret in OLD_SECRETS {
        assert!(
            !holds(&raw, secret),
            "{secret} is still in the file in clear"
        );
    }
}
