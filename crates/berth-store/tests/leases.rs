//! Job leases through the store's traits: one holder at a time, expiry hands a lease on,
//! the holder renews, release frees it at once; and the schema check.

use berth_store::*;

const TTL: i64 = 30_000;

#[tokio::test]
async fn one_holder_at_a_time() {
    let s = SqliteStore::in_memory().await.unwrap();
    let s: &dyn Store = &s;
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

#[tokio::test]
async fn renewal_extends_and_keeps_the_start() {
    let s = SqliteStore::in_memory().await.unwrap();
    let s: &dyn Store = &s;
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

#[tokio::test]
async fn expiry_lets_another_take_over() {
    let s = SqliteStore::in_memory().await.unwrap();
    let s: &dyn Store = &s;
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

#[tokio::test]
async fn an_old_holder_coming_back_after_expiry_starts_a_new_term() {
    let s = SqliteStore::in_memory().await.unwrap();
    let s: &dyn Store = &s;
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

#[tokio::test]
async fn release_frees_it_at_once() {
    let s = SqliteStore::in_memory().await.unwrap();
    let s: &dyn Store = &s;
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

/// Two stores on one file (two nodes) racing for the same lease: exactly one wins each
/// round.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_nodes_on_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.db");
    let a = std::sync::Arc::new(
        SqliteStore::open(&path, &SecretsKey::from_bytes([7; 32]))
            .await
            .unwrap(),
    );
    let b = std::sync::Arc::new(
        SqliteStore::open(&path, &SecretsKey::from_bytes([7; 32]))
            .await
            .unwrap(),
    );
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
