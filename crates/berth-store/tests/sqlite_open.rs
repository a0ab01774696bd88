//! Opening the embedded database: a new file opened by several stores at once (a
//! starting server and `berth account create`, or the pool's own first connections)
//! never fails with "database is locked".

use berth_store::{SecretsKey, SqliteStore, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_file_opened_by_many_at_once() {
    for round in 0..40 {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("berth.db");
        std::fs::File::create(&db).unwrap();
        let key = SecretsKey::generate().unwrap();
        let opens = (0..6).map(|_| {
            let (db, key) = (db.clone(), key.clone());
            tokio::spawn(async move {
                let store = SqliteStore::open(&db, &key).await?;
                store.accounts().await?;
                Ok::<_, berth_store::StoreError>(store)
            })
        });
        for open in futures_join(opens).await {
            let store = open
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert!(store.holds_sealed_secrets().await.unwrap());
        }
    }
}

async fn futures_join<T>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<Result<T, tokio::task::JoinError>> {
    let mut out = Vec::new();
    for h in handles.collect::<Vec<_>>() {
        out.push(h.await);
    }
    out
}
