//! Copying an embedded registry's metadata into PostgreSQL: a SQLite store filled through
//! its traits is copied into a fresh PostgreSQL database, and every table is compared row
//! by row with SQL on both sides; a second run copies nothing, an interrupted run
//! resumes, the destination's rows are never overwritten, a different secrets key is
//! refused before anything is written.

mod pg_support;

use std::collections::BTreeMap;

use berth_store::*;
use sqlx::Row;

const A: &str = "111111111111";
const B: &str = "222222222222";
/// "Now" for the copy (seconds): sessions expiring before it are left behind.
const NOW: i64 = 1_800_000_000;
/// The upstream credential the source holds (in the us-west-2 registry of `A`).
const UPSTREAM_NAME: &str = "ecr-pullthroughcache/docker-hub";
const UPSTREAM_ARN: &str =
    "arn:aws:secretsmanager:us-west-2:111111111111:secret:ecr-pullthroughcache/docker-hub-AbCdEf";

fn options() -> CopyOptions {
    CopyOptions {
        now_secs: NOW,
        ..CopyOptions::default()
    }
}

fn entity(account: &str, kind: EntityKind, name: &str) -> Entity {
    Entity {
        account: account.into(),
        kind,
        name: name.into(),
        path: "/team/".into(),
        unique_id: format!("AID{account}{name}"),
        created: 100,
        trust_policy: (kind == EntityKind::Role).then(|| r#"{"Version":"2012-10-17"}"#.into()),
        description: (kind == EntityKind::Role).then(|| "a role".into()),
        max_session_secs: (kind == EntityKind::Role).then_some(7200),
        boundary: None,
    }
}

fn key(account: &str, id: &str, user: Option<&str>) -> AccessKey {
    AccessKey {
        id: id.into(),
        secret: format!("secret-of-{id}"),
        account: account.into(),
        user: user.map(str::to_string),
        status: KeyStatus::Active,
        created: 100,
    }
}

fn tag(k: &str, v: &str) -> Tag {
    Tag {
        key: k.into(),
        value: v.into(),
    }
}

fn digest(seed: &str) -> String {
    use std::fmt::Write;
    let mut hex = String::new();
    for b in seed.bytes().cycle().take(32) {
        let _ = write!(hex, "{b:02x}");
    }
    format!("sha256:{hex}")
}

fn image(seed: &str, refs: Vec<(String, RefKind)>, subject: Option<String>) -> NewImage {
    NewImage {
        digest: digest(seed),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        // Not text: the manifest column is bytes on both sides.
        manifest: [b"{\"seed\":\"", seed.as_bytes(), b"\"}\x00\xff"].concat(),
        size: 12 + seed.len() as i64,
        artifact_type: subject.as_ref().map(|_| "application/x-signature".into()),
        subject,
        refs,
        pushed_at: 5_000,
        replicate_to: Vec::new(),
    }
}

/// A SQLite store holding something of every kind the metadata has.
async fn filled(dir: &std::path::Path) -> SqliteStore {
    let s = SqliteStore::open(&dir.join("berth.db"), &pg_support::test_key())
        .await
        .unwrap();
    for (id, alias) in [(A, Some("main")), (B, None)] {
        let account = Account {
            id: id.into(),
            alias: alias.map(str::to_string),
            created: 10,
        };
        s.create_account(&account, &key(id, &format!("AKIAROOT{id}"), None))
            .await
            .unwrap();
    }
    s.create_entity(
        &entity(A, EntityKind::User, "Alice"),
        &[tag("team", "infra"), tag("Cost", "1")],
    )
    .await
    .unwrap();
    s.create_entity(&entity(A, EntityKind::User, "bob"), &[])
        .await
        .unwrap();
    s.create_entity(&entity(A, EntityKind::Group, "Admins"), &[])
        .await
        .unwrap();
    s.create_entity(
        &entity(A, EntityKind::Role, "Deployer"),
        &[tag("env", "prod")],
    )
    .await
    .unwrap();
    s.create_entity(&entity(B, EntityKind::User, "carol"), &[])
        .await
        .unwrap();
    s.add_user_to_group(A, "Admins", "Alice").await.unwrap();
    s.add_user_to_group(A, "admins", "bob").await.unwrap();
    let doc = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*","Resource":"*"}]}"#;
    for (kind, owner) in [
        (EntityKind::User, "Alice"),
        (EntityKind::Group, "Admins"),
        (EntityKind::Role, "Deployer"),
    ] {
        s.put_inline_policy(A, kind, owner, "Inline", doc)
            .await
            .unwrap();
    }
    let policy = ManagedPolicy {
        account: A.into(),
        name: "Pushers".into(),
        path: "/".into(),
        policy_id: "ANPAPUSHERS".into(),
        default_version: "v1".into(),
        description: Some("push anything".into()),
        created: 200,
        updated: 200,
        attachment_count: 0,
        boundary_usage_count: 0,
    };
    s.create_policy(&policy, doc, &[tag("owner", "sre")])
        .await
        .unwrap();
    s.create_policy_version(A, "Pushers", doc, true, 300, 5)
        .await
        .unwrap();
    let arn = format!("arn:aws:iam::{A}:policy/Pushers");
    s.attach_policy(A, EntityKind::User, "Alice", &arn)
        .await
        .unwrap();
    s.attach_policy(A, EntityKind::Group, "Admins", &arn)
        .await
        .unwrap();
    s.set_boundary(A, EntityKind::Role, "Deployer", Some(&arn))
        .await
        .unwrap();
    s.create_access_key(&key(A, "AKIAALICE", Some("Alice")), 2)
        .await
        .unwrap();
    s.set_access_key_status(A, Some("Alice"), "AKIAALICE", KeyStatus::Inactive)
        .await
        .unwrap();
    s.put_login_profile(
        &LoginProfile {
            account: A.into(),
            user: "Alice".into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            created: NOW,
            changed: NOW,
            reset_required: true,
        },
        true,
    )
    .await
    .unwrap();
    s.set_password_policy(A, Some(r#"{"MinimumPasswordLength":12}"#))
        .await
        .unwrap();
    for (id, expires) in [("ASIALIVE", NOW + 3600), ("ASIAGONE", NOW - 1)] {
        s.create_session(&Session {
            access_key_id: id.into(),
            secret: format!("session-secret-{id}"),
            token: format!("token-{id}"),
            account: A.into(),
            claims: r#"{"role":"Deployer"}"#.into(),
            created: NOW - 10,
            expires,
        })
        .await
        .unwrap();
    }

    // The registry.
    let mut app = Repository::new(RegistryKey::home(A), "team/app", 1_000);
    app.tag_mutability = TagMutability::ImmutableWithExclusion;
    app.mutability_filters = vec![
        MutabilityFilter::new("latest").unwrap(),
        MutabilityFilter::new("dev-*").unwrap(),
    ];
    app.scan_on_push = true;
    app.encryption = Encryption {
        kind: EncryptionType::Kms,
        kms_key: Some("arn:aws:kms:us-east-1:111111111111:key/k".into()),
    };
    s.create_repository(&app, &[tag("project", "app")])
        .await
        .unwrap();
    s.update_repository(
        RegistryKey::home(A),
        "team/app",
        &RepositorySetting::Policy(Some(doc.into())),
    )
    .await
    .unwrap();
    s.update_repository(
        RegistryKey::home(A),
        "team/app",
        &RepositorySetting::LifecyclePolicy(Some((r#"{"rules":[]}"#.into(), 2_000))),
    )
    .await
    .unwrap();
    s.create_repository(&Repository::new(RegistryKey::home(B), "other", 1_500), &[])
        .await
        .unwrap();
    // Another Region's registry of the same account, with a repository of the same name.
    let west = RegistryKey {
        account: A,
        region: Some("us-west-2"),
    };
    s.create_repository(
        &Repository::new(west, "team/app", 1_600),
        &[tag("site", "west")],
    )
    .await
    .unwrap();
    s.set_registry_policy(west, Some(doc)).await.unwrap();
    s.set_replication_configuration(west, Some(r#"{"rules":[]}"#), 1_700)
        .await
        .unwrap();
    s.put_creation_template(west, "ROOT", r#"{"prefix":"ROOT"}"#, TemplateWrite::Create)
        .await
        .unwrap();
    s.put_pull_through_rule(
        west,
        "docker-hub",
        r#"{"ecrRepositoryPrefix":"docker-hub"}"#,
        TemplateWrite::Create,
    )
    .await
    .unwrap();
    s.put_upstream_credential(
        west,
        UPSTREAM_NAME,
        UPSTREAM_ARN,
        "hub-user",
        "hub-token",
        1_800,
    )
    .await
    .unwrap();
    // Left behind: the new deployment checks each cached tag once more.
    s.set_upstream_check(west, "docker-hub/library/nginx", "latest", 1_900)
        .await
        .unwrap();
    assert_eq!(
        s.setting("home-region", "us-east-1").await.unwrap(),
        "us-east-1"
    );
    s.set_registry_policy(RegistryKey::home(A), Some(doc))
        .await
        .unwrap();
    let (config, layer) = (digest("config"), digest("layer"));
    for d in [&config, &layer] {
        s.add_repository_blob(RegistryKey::home(A), "team/app", d, 1234, 3_000)
            .await
            .unwrap();
    }
    s.add_repository_blob(RegistryKey::home(B), "other", &layer, 1234, 3_100)
        .await
        .unwrap();
    let blobs = vec![
        (config.clone(), RefKind::Blob),
        (layer.clone(), RefKind::Blob),
    ];
    let amd64 = image("amd64", blobs.clone(), None);
    let arm64 = image("arm64", blobs.clone(), None);
    for (img, t) in [(&amd64, Some("v1-amd64")), (&arm64, None)] {
        s.put_image(RegistryKey::home(A), "team/app", img, t, TagRule::Mutable)
            .await
            .unwrap();
    }
    let index = image(
        "index",
        vec![
            (amd64.digest.clone(), RefKind::Manifest),
            (arm64.digest.clone(), RefKind::Manifest),
        ],
        None,
    );
    s.put_image(
        RegistryKey::home(A),
        "team/app",
        &index,
        Some("v1"),
        TagRule::Mutable,
    )
    .await
    .unwrap();
    s.put_image(
        RegistryKey::home(A),
        "team/app",
        &index,
        Some("latest"),
        TagRule::Mutable,
    )
    .await
    .unwrap();
    let signature = image("sig", blobs[..1].to_vec(), Some(index.digest.clone()));
    s.put_image(
        RegistryKey::home(A),
        "team/app",
        &signature,
        None,
        TagRule::Mutable,
    )
    .await
    .unwrap();
    s.record_pull(RegistryKey::home(A), "team/app", &index.digest, 9_000)
        .await
        .unwrap();
    s.put_image(
        RegistryKey::home(B),
        "other",
        &image("solo", blobs[1..].to_vec(), None),
        Some("x"),
        TagRule::Mutable,
    )
    .await
    .unwrap();
    s.server_secret("registry-password-key", "sekrit")
        .await
        .unwrap();
    // An upload in progress: not copied.
    s.create_upload(&Upload {
        id: "upload-1".into(),
        account: A.into(),
        region: None,
        repository: "team/app".into(),
        principal: format!("arn:aws:iam::{A}:user/Alice"),
        created: 8_000,
        updated: 8_000,
    })
    .await
    .unwrap();
    // A lifecycle policy preview: a dry run of its moment, not copied.
    s.put_lifecycle_preview(
        RegistryKey::home(A),
        "team/app",
        &LifecyclePreview {
            policy: "{\"rules\":[]}".into(),
            started: 8_000,
            results: vec![PreviewResult {
                digest: "sha256:00".into(),
                tags: vec!["v1".into()],
                pushed_at: 7_000,
                rule_priority: 1,
            }],
        },
    )
    .await
    .unwrap();
    s
}

/// Every row of `table`, each column as text, sorted; both sides render a column the same
/// way whatever its type (booleans as 0/1, bytes as hex). `pg_types` (column name and
/// PostgreSQL data type) says which columns there are.
async fn sqlite_rows(
    s: &sqlx::SqlitePool,
    table: &str,
    pg_types: &[(String, String)],
    filter: &str,
) -> Vec<Vec<Option<String>>> {
    let cols: Vec<String> = pg_types
        .iter()
        .map(|(c, t)| match t.as_str() {
            "bytea" => format!("lower(hex({c}))"),
            _ => format!("CAST({c} AS TEXT)"),
        })
        .collect();
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM {table} {filter}",
        cols.join(", ")
    )))
    .fetch_all(s)
    .await
    .unwrap();
    let mut out: Vec<Vec<Option<String>>> = rows
        .iter()
        .map(|r| (0..cols.len()).map(|i| r.get(i)).collect())
        .collect();
    out.sort();
    out
}

async fn pg_rows(
    p: &sqlx::PgPool,
    table: &str,
    pg_types: &[(String, String)],
) -> Vec<Vec<Option<String>>> {
    let cols: Vec<String> = pg_types
        .iter()
        .map(|(c, t)| match t.as_str() {
            "bytea" => format!("encode({c}, 'hex')"),
            "boolean" => format!("({c})::int::text"),
            _ => format!("({c})::text"),
        })
        .collect();
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM {table}",
        cols.join(", ")
    )))
    .fetch_all(p)
    .await
    .unwrap();
    let mut out: Vec<Vec<Option<String>>> = rows
        .iter()
        .map(|r| (0..cols.len()).map(|i| r.get(i)).collect())
        .collect();
    out.sort();
    out
}

/// The PostgreSQL tables and their columns.
async fn pg_tables(p: &sqlx::PgPool) -> BTreeMap<String, Vec<(String, String)>> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name NOT LIKE '\\_sqlx%'
         ORDER BY table_name, ordinal_position",
    )
    .fetch_all(p)
    .await
    .unwrap();
    let mut tables: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (t, c, ty) in rows {
        tables.entry(t).or_default().push((c, ty));
    }
    tables
}

/// Every table the copy carries holds, on PostgreSQL, exactly the source's rows; the
/// tables it leaves behind are empty there. Returns how many rows were compared.
async fn assert_same(src_pool: &sqlx::SqlitePool, dst: &sqlx::PgPool) -> usize {
    let mut compared = 0;
    for (table, cols) in pg_tables(dst).await {
        let pg = pg_rows(dst, &table, &cols).await;
        match table.as_str() {
            "uploads"
            | "leases"
            | "lifecycle_previews"
            | "lifecycle_preview_results"
            | "replications"
            | "replication_backfills"
            | "peer_uploads"
            | "pull_through_checks" => {
                assert!(pg.is_empty(), "{table} was copied: {pg:?}")
            }
            "secrets_key_check" => assert_eq!(pg.len(), 1),
            _ => {
                let filter = if table == "sessions" {
                    format!("WHERE expires_at > {NOW}")
                } else {
                    String::new()
                };
                let sqlite = sqlite_rows(src_pool, &table, &cols, &filter).await;
                assert!(!sqlite.is_empty(), "the test fills {table}");
                assert_eq!(pg, sqlite, "table {table}");
                compared += pg.len();
            }
        }
    }
    compared
}

async fn source_pool(dir: &std::path::Path) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.join("berth.db").display()))
        .await
        .unwrap()
}

fn table<'r>(report: &'r MetadataReport, name: &str) -> &'r TableReport {
    report
        .tables
        .iter()
        .find(|t| t.table == name)
        .unwrap_or_else(|| panic!("no report for {name}"))
}

#[tokio::test]
async fn copies_every_table_exactly_and_a_second_run_copies_nothing() {
    let Some(db) = pg_support::db().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let src = filled(dir.path()).await;
    let dst = PgStore::connect(&db.url, &pg_support::test_key())
        .await
        .unwrap();
    let mut seen = Vec::new();
    let first = copy_metadata(&src, &dst, &options(), &mut |t| seen.push(t.table))
        .await
        .unwrap();
    assert!(first.complete);
    assert_eq!(first.conflicting(), 0, "{first:?}");
    assert_eq!(first.present(), 0);
    assert_eq!(seen.first(), Some(&"accounts"), "parents first: {seen:?}");
    assert_eq!(seen.len(), first.tables.len());

    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let src_pool = source_pool(dir.path()).await;
    let compared = assert_same(&src_pool, &pool).await;
    assert_eq!(first.copied() as usize, compared);
    assert_eq!(table(&first, "accounts").copied, 2);
    assert_eq!(table(&first, "images").copied, 5);
    let sessions = table(&first, "sessions");
    assert_eq!((sessions.copied, sessions.skipped), (1, 1));
    assert_eq!(sessions.skipped_why, Some("expired"));
    assert_eq!(table(&first, "uploads").skipped, 1);
    assert!(table(&first, "uploads").left_behind && !sessions.left_behind);

    // Sealed secrets were copied as they are and open with the key on PostgreSQL.
    let sealer = Sealer::new(&pg_support::test_key());
    for (id, want) in [
        ("AKIAALICE", "secret-of-AKIAALICE"),
        ("AKIAROOT111111111111", "secret-of-AKIAROOT111111111111"),
    ] {
        let stored: String =
            sqlx::query_scalar("SELECT secret FROM access_keys WHERE access_key_id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert!(!stored.contains("secret-of"), "sealed at rest");
        assert_eq!(
            sealer.open(SecretSlot::AccessKey(id), &stored).unwrap(),
            want
        );
    }
    let stored: String = sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = $1")
        .bind("registry-password-key")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        sealer
            .open(SecretSlot::ServerSecret("registry-password-key"), &stored)
            .unwrap(),
        "sekrit"
    );
    let stored: String =
        sqlx::query_scalar("SELECT secret FROM upstream_credentials WHERE arn = $1")
            .bind(UPSTREAM_ARN)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(!stored.contains("hub-token"), "sealed at rest");
    assert_eq!(table(&first, "pull_through_rules").copied, 1);
    assert_eq!(table(&first, "upstream_credentials").copied, 1);
    // And through the destination store's trait.
    let west = RegistryKey {
        account: A,
        region: Some("us-west-2"),
    };
    let (credential, secret) = dst
        .upstream_credential_secret(west, UPSTREAM_NAME)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (credential.arn.as_str(), credential.username.as_str()),
        (UPSTREAM_ARN, "hub-user")
    );
    assert_eq!(secret, "hub-token");
    assert_eq!(
        dst.pull_through_rules(west).await.unwrap(),
        vec![r#"{"ecrRepositoryPrefix":"docker-hub"}"#.to_string()]
    );

    let second = copy_metadata(&src, &dst, &options(), &mut |_| {})
        .await
        .unwrap();
    assert!(second.complete);
    assert_eq!(second.copied(), 0, "{second:?}");
    assert_eq!(second.present(), first.copied());
    assert_eq!(second.conflicting(), 0);
    assert_eq!(assert_same(&src_pool, &pool).await, compared);
}

#[tokio::test]
async fn an_interrupted_copy_resumes_where_it_stopped() {
    let Some(db) = pg_support::db().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let src = filled(dir.path()).await;
    let dst = PgStore::connect(&db.url, &pg_support::test_key())
        .await
        .unwrap();
    let small = |max| CopyOptions {
        batch_rows: 2,
        max_batches: max,
        ..options()
    };
    let cut = copy_metadata(&src, &dst, &small(Some(7)), &mut |_| {})
        .await
        .unwrap();
    assert!(!cut.complete);
    assert!(cut.copied() > 0 && cut.copied() <= 14, "{cut:?}");
    // Batches are whole: what was copied is a prefix of each table, nothing half-written.
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let accounts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM accounts")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(accounts, 2);
    let images: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM images")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(images, 0, "the cut came before the images");

    let rest = copy_metadata(&src, &dst, &small(None), &mut |_| {})
        .await
        .unwrap();
    assert!(rest.complete);
    assert_eq!(rest.conflicting(), 0);
    assert_eq!(rest.present(), cut.copied(), "{rest:?}");
    let src_pool = source_pool(dir.path()).await;
    let compared = assert_same(&src_pool, &pool).await;
    assert_eq!((cut.copied() + rest.copied()) as usize, compared);
}

#[tokio::test]
async fn the_destination_is_never_overwritten_and_conflicts_are_reported() {
    let Some(db) = pg_support::db().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let src = filled(dir.path()).await;
    let dst = PgStore::connect(&db.url, &pg_support::test_key())
        .await
        .unwrap();
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    // Already at the destination: another account under account A's alias (so account A
    // cannot be inserted, nor anything that must belong to it there), and account B with
    // another registry policy (a row that differs under the same key).
    sqlx::raw_sql(
        "INSERT INTO accounts (id, alias, created_at) VALUES ('333333333333', 'main', 1);
         INSERT INTO accounts (id, alias, created_at) VALUES ('222222222222', NULL, 10);
         INSERT INTO registry_policies (account_id, policy) VALUES ('111111111111', '{}');",
    )
    .execute(&pool)
    .await
    .unwrap();
    let report = copy_metadata(&src, &dst, &options(), &mut |_| {})
        .await
        .unwrap();
    assert!(report.complete);
    let accounts = table(&report, "accounts");
    assert_eq!(
        (accounts.copied, accounts.present, accounts.conflicting),
        (0, 1, 1)
    );
    assert_eq!(
        accounts.conflicts,
        vec![Conflict {
            key: format!("id={A}"),
            differs: false
        }]
    );
    let policies = table(&report, "registry_policies");
    assert_eq!(policies.conflicting, 1);
    assert_eq!(
        policies.conflicts[0].to_string(),
        format!("account_id={A}: the destination's row differs")
    );
    // Account A's users, keys and repositories (and so its images) had nowhere to go;
    // account B's did.
    let entities = table(&report, "entities");
    assert_eq!((entities.copied, entities.conflicting), (1, 4));
    let images = table(&report, "images");
    assert_eq!((images.copied, images.conflicting), (1, 4));
    assert_eq!(images.conflicts.len(), 4);
    assert!(images
        .conflicts
        .iter()
        .all(|c| !c.differs && c.key.contains(A)));
    // The destination's rows are as they were.
    let policy: String =
        sqlx::query_scalar("SELECT policy FROM registry_policies WHERE account_id = $1")
            .bind(A)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(policy, "{}");
    let alias: Option<String> =
        sqlx::query_scalar("SELECT alias FROM accounts WHERE id = '333333333333'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(alias.as_deref(), Some("main"));
    let a_rows: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM entities WHERE account_id = $1)
              + (SELECT COUNT(*) FROM repositories WHERE account_id = $1)
              + (SELECT COUNT(*) FROM access_keys WHERE account_id = $1)",
    )
    .bind(A)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(a_rows, 0);

    // A row changed at the destination since: reported as differing, left as it is.
    sqlx::raw_sql(
        "UPDATE entities SET path = '/moved/' WHERE account_id = '222222222222' AND name = 'carol'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let again = copy_metadata(&src, &dst, &options(), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(again.copied(), 0);
    let entities = table(&again, "entities");
    assert_eq!(entities.conflicting, 5);
    assert!(entities
        .conflicts
        .iter()
        .any(|c| c.differs && c.key == format!("account_id={B} kind=user name=carol")));
}

#[tokio::test]
async fn stores_sealed_with_different_keys_are_refused_before_anything_is_copied() {
    let Some(db) = pg_support::db().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let src = filled(dir.path()).await;
    let other = SecretsKey::from_bytes([42; 32]);
    let dst = PgStore::connect(&db.url, &other).await.unwrap();
    let e = copy_metadata(&src, &dst, &options(), &mut |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::Conflict(m) if m.contains("different secrets keys")),
        "{e:?}"
    );
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let rows: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM accounts) + (SELECT COUNT(*) FROM server_secrets)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(rows, 0);
    // The destination, once it holds the other key, refuses the source's key outright.
    assert_eq!(
        PgStore::connect(&db.url, &pg_support::test_key())
            .await
            .unwrap_err(),
        KeyError::WrongKey
    );
}
