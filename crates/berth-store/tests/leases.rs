//! Job leases through the store's traits: one holder at a time, expiry hands a lease on,
//! the holder renews, release frees it at once; and the schema check. Every case runs on
//! SQLite and on PostgreSQL (see `pg_support` for the server it needs).

mod pg_support;

use std::sync::Arc;

use berth_store::*;

const TTL: i64 = 30_000;

async fn one_holder_at_a_time(s: &dyn Leases) {
    let a = s.try_lease("clean", "node-a", 1_000, TTL).await.unwrap();
    let a = a.expect("a free lease is taken");
    assert_eq!(
        (a.holder.as_str(), a.acquired_at, a.expires_at),
        ("node-a", 1_000, 31_000)
    );
    assert_eq!(a.last_run_at, None);
    // Another holder cannot take it while it stands, up to the last millisecond.
    assert_eq!(
        s.try_lease("clean", "node-b", 2_000, TTL).await.unwrap(),
        None
    );
    assert_eq!(
        s.try_lease("clean", "node-b", 30_999, TTL).await.unwrap(),
        None
    );
    // Other jobs are leased on their own.
    let other = s.try_lease("gc", "node-b", 2_000, TTL).await.unwrap();
    assert_eq!(other.unwrap().holder, "node-b");
    let stored = s.lease("clean").await.unwrap().unwrap();
    assert_eq!(stored.holder, "node-a");
    assert_eq!(s.lease("nothing").await.unwrap(), None);
}

async fn renewal_extends_and_keeps_the_start(s: &dyn Leases) {
    s.try_lease("clean", "node-a", 1_000, TTL)
        .await
        .unwrap()
        .unwrap();
    let renewed = s
        .try_lease("clean", "node-a", 20_000, TTL)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((renewed.acquired_at, renewed.expires_at), (1_000, 50_000));
    // Past the first expiry, node-b is still kept out: the renewal counts.
    assert_eq!(
        s.try_lease("clean", "node-b", 40_000, TTL).await.unwrap(),
        None
    );
    assert!(s.record_run("clean", "node-a", 40_000).await.unwrap());
    assert!(
        !s.record_run("clean", "node-b", 40_001).await.unwrap(),
        "not its lease"
    );
    assert_eq!(
        s.lease("clean").await.unwrap().unwrap().last_run_at,
        Some(40_000)
    );
}

async fn expiry_lets_another_take_over(s: &dyn Leases) {
    s.try_lease("clean", "node-a", 1_000, TTL)
        .await
        .unwrap()
        .unwrap();
    s.record_run("clean", "node-a", 1_500).await.unwrap();
    let b = s.try_lease("clean", "node-b", 31_000, TTL).await.unwrap();
    let b = b.expect("an expired lease is taken over");
    assert_eq!(
        (b.holder.as_str(), b.acquired_at, b.expires_at),
        ("node-b", 31_000, 61_000)
    );
    assert_eq!(b.last_run_at, Some(1_500), "the schedule carries over");
    // The old holder has lost it: it can neither renew nor record a run.
    assert_eq!(
        s.try_lease("clean", "node-a", 32_000, TTL).await.unwrap(),
        None
    );
    assert!(!s.record_run("clean", "node-a", 32_000).await.unwrap());
    assert!(!s.release_lease("clean", "node-a").await.unwrap());
    assert_eq!(s.lease("clean").await.unwrap().unwrap().holder, "node-b");
}

async fn an_old_holder_coming_back_after_expiry_starts_a_new_term(s: &dyn Leases) {
    s.try_lease("clean", "node-a", 1_000, TTL)
        .await
        .unwrap()
        .unwrap();
    let again = s
        .try_lease("clean", "node-a", 90_000, TTL)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.acquired_at, again.expires_at), (90_000, 120_000));
}

async fn release_frees_it_at_once(s: &dyn Leases) {
    s.try_lease("clean", "node-a", 1_000, TTL)
        .await
        .unwrap()
        .unwrap();
    s.record_run("clean", "node-a", 1_200).await.unwrap();
    assert!(
        !s.release_lease("clean", "node-b").await.unwrap(),
        "only the holder releases"
    );
    assert!(s.release_lease("clean", "node-a").await.unwrap());
    assert!(
        !s.release_lease("clean", "node-a").await.unwrap(),
        "already released"
    );
    let released = s.lease("clean").await.unwrap().unwrap();
    assert_eq!(
        (released.expires_at, released.last_run_at),
        (0, Some(1_200))
    );
    let b = s.try_lease("clean", "node-b", 1_300, TTL).await.unwrap();
    assert_eq!(
        b.unwrap().holder,
        "node-b",
        "taken long before the old lease would expire"
    );
}

/// Two stores on one database (two nodes) racing for the same lease: exactly one wins
/// each round.
async fn racing_nodes(a: Arc<dyn Leases>, b: Arc<dyn Leases>) {
    for round in 0..20i64 {
        let job = format!("job-{round}");
        let (ja, jb) = (job.clone(), job.clone());
        let (a2, b2) = (a.clone(), b.clone());
        let ta = tokio::spawn(async move { a2.try_lease(&ja, "node-a", 1_000, TTL).await });
        let tb = tokio::spawn(async move { b2.try_lease(&jb, "node-b", 1_000, TTL).await });
        let (ra, rb) = (ta.await.unwrap().unwrap(), tb.await.unwrap().unwrap());
        assert!(
            ra.is_some() != rb.is_some(),
            "round {round}: {ra:?} / {rb:?}"
        );
        let holder = a.lease(&job).await.unwrap().unwrap().holder;
        assert_eq!(ra.is_some(), holder == "node-a");
    }
}

#[tokio::test]
async fn schema_check_names_what_differs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.db");
    let s = SqliteStore::open(&path, &SecretsKey::from_bytes([7; 32]))
        .await
        .unwrap();
    s.check_schema().await.unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (9999, 'from the future', 1, x'00', 1)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let e = s.check_schema().await.unwrap_err().to_string();
    assert!(
        e.contains("migration 9999 is applied but this build does not know it"),
        "{e}"
    );
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 9999")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 6")
        .execute(&pool)
        .await
        .unwrap();
    let e = s.check_schema().await.unwrap_err().to_string();
    assert!(e.contains("migration 6 is not applied"), "{e}");
}

/// Each case as a test on either backend.
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let s = berth_store::SqliteStore::in_memory().await.unwrap();
                    super::$case(&s).await;
                }
            )*

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn racing_nodes_on_one_file() {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("berth.db");
                let key = berth_store::SecretsKey::from_bytes([7; 32]);
                let a = berth_store::SqliteStore::open(&path, &key).await.unwrap();
                let b = berth_store::SqliteStore::open(&path, &key).await.unwrap();
                super::racing_nodes(std::sync::Arc::new(a), std::sync::Arc::new(b)).await;
            }
        }

        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    let Some(db) = super::pg_support::db().await else { return };
                    let s = berth_store::PgStore::connect(&db.url, &crate::pg_support::test_key()).await.unwrap();
                    super::$case(&s).await;
                    s.close().await;
                }
            )*

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn racing_nodes_on_one_database() {
                let Some(db) = super::pg_support::db().await else { return };
                let a = berth_store::PgStore::connect(&db.url, &crate::pg_support::test_key()).await.unwrap();
                let b = berth_store::PgStore::connect(&db.url, &crate::pg_support::test_key()).await.unwrap();
                super::racing_nodes(std::sync::Arc::new(a.clone()), std::sync::Arc::new(b.clone())).await;
                a.close().await;
                b.close().await;
            }
        }
    };
}

on_both_backends!(
    one_holder_at_a_time,
    renewal_extends_and_keeps_the_start,
    expiry_lets_another_take_over,
    an_old_holder_coming_back_after_expiry_starts_a_new_term,
    release_frees_it_at_once,
);

/// Several nodes starting at once on a new database: every one migrates it (one after
/// the other, under the migrator's advisory lock) and succeeds; the schema is applied
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_nodes_starting_at_once_migrate_once() {
    let Some(db) = pg_support::db().await else {
        return;
    };
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url.clone();
            tokio::spawn(
                async move { PgStore::connect(&url, &crate::pg_support::test_key()).await },
            )
        })
        .collect();
    let mut stores = Vec::new();
    for s in starts {
        stores.push(s.await.unwrap().expect("every node starts"));
    }
    for s in &stores {
        s.check_schema().await.unwrap();
    }
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let mut known: Vec<i64> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
            .unwrap()
            .map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                name[..4].parse().unwrap()
            })
            .collect();
    known.sort();
    assert_eq!(applied, known, "each migration applied, once");
    let tables: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'leases'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(tables, 1);
    // And they share it: a lease one takes, another sees.
    stores[0]
        .try_lease("clean", "node-a", 1_000, TTL)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stores[3]
            .try_lease("clean", "node-d", 2_000, TTL)
            .await
            .unwrap(),
        None
    );
    for s in &stores {
        s.close().await;
    }
}

/// A database a newer berth migrated is refused at start, naming the migration; the
/// schema check of a running node says the same.
#[tokio::test]
async fn postgres_refuses_a_newer_schema() {
    let Some(db) = pg_support::db().await else {
        return;
    };
    let s = PgStore::connect(&db.url, &crate::pg_support::test_key())
        .await
        .unwrap();
    s.check_schema().await.unwrap();
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (9999, 'from the future', true, decode('00', 'hex'), 1)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let e = PgStore::connect(&db.url, &crate::pg_support::test_key())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("migration 9999 is applied but this build does not know it"),
        "{e}"
    );
    let e = s.check_schema().await.unwrap_err().to_string();
    assert!(
        e.contains("migration 9999 is applied but this build does not know it"),
        "{e}"
    );
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 9999")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 6")
        .execute(&mut conn)
        .await
        .unwrap();
    let e = s.check_schema().await.unwrap_err().to_string();
    assert!(e.contains("migration 6 is not applied"), "{e}");
    s.close().await;
}

/// A node started with another secrets key than the one the database's secrets are
/// sealed with is refused (nodes of one registry share the key).
#[tokio::test]
async fn postgres_refuses_another_secrets_key() {
    let Some(db) = pg_support::db().await else {
        return;
    };
    let s = PgStore::connect(&db.url, &crate::pg_support::test_key())
        .await
        .unwrap();
    let again = PgStore::connect(&db.url, &crate::pg_support::test_key())
        .await
        .unwrap();
    let other = berth_store::SecretsKey::from_bytes([8; 32]);
    let e = PgStore::connect(&db.url, &other).await.unwrap_err();
    assert!(matches!(e, berth_store::KeyError::WrongKey), "{e}");
    again.close().await;
    s.close().await;
}

/// A URL of another kind is refused, saying what is expected.
#[test]
fn a_bad_url_is_refused_in_plain_words() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let e = rt
        .block_on(PgStore::connect(
            "mysql://u@h/db",
            &crate::pg_support::test_key(),
        ))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("not a PostgreSQL URL") && e.contains("must start with postgres://"),
        "{e}"
    );
}
