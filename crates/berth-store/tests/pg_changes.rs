//! Writes that matter to authorization notify every node (PostgreSQL LISTEN/NOTIFY):
//! `PgStore::watch_changes` reports the table a committed write changed, says `*` when it
//! starts listening and whenever notifications may have been missed (a lost connection),
//! and keeps listening after reconnecting by itself.

mod pg_support;

use std::time::Duration;

use berth_store::PgStore;
use sqlx::Connection;
use tokio::sync::mpsc;

async fn next(rx: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a change is reported within 10 s")
        .expect("the watcher is running")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_writes_notify_every_watcher_and_a_lost_connection_says_so() {
    let Some(db) = pg_support::db().await else {
        return;
    };
    let store = PgStore::connect(&db.url, &pg_support::test_key())
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let watcher = store.watch_changes(move |table| {
        let _ = tx.send(table.to_string());
    });
    assert_eq!(
        next(&mut rx).await,
        "*",
        "listening starts by saying anything may have changed"
    );

    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    // Not read by authorization: no notification.
    sqlx::query(
        "INSERT INTO leases (job, holder, acquired_at, expires_at) VALUES ('j', 'h', 1, 2)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    // A rolled back write notifies nothing either.
    let mut t = conn.begin().await.unwrap();
    sqlx::query("INSERT INTO accounts (id, created_at) VALUES ('222222222222', 1)")
        .execute(&mut *t)
        .await
        .unwrap();
    t.rollback().await.unwrap();
    sqlx::query("INSERT INTO accounts (id, created_at) VALUES ('111111111111', 1)")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(next(&mut rx).await, "accounts");
    sqlx::query("INSERT INTO registry_policies (account_id, policy) VALUES ('111111111111', '{}')")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(next(&mut rx).await, "registry_policies");

    // Cut the watcher's connection: it says `*`, reconnects, and hears the next write.
    let cut: i64 = sqlx::query_scalar(
        "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE 'LISTEN%'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(cut, 1, "the watcher listens on one connection");
    assert_eq!(next(&mut rx).await, "*");
    // `*` comes when the loss is seen; the watcher then reconnects and listens again.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let listening: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE 'LISTEN%'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if listening == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the watcher listens again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sqlx::query("UPDATE repositories SET policy = NULL")
        .execute(&mut conn)
        .await
        .unwrap();
    // The UPDATE touched no row but is a write statement: it notifies (statement trigger).
    let mut seen = next(&mut rx).await;
    while seen == "*" {
        seen = next(&mut rx).await;
    }
    assert_eq!(seen, "repositories");
    watcher.abort();
    drop(conn);
    store.close().await;
}
