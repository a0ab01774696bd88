//! A private PostgreSQL database per test, on the server `BERTH_TEST_POSTGRES_URL`
//! names (scripts/test provides one). Without it the PostgreSQL tests fail, saying what
//! to set, unless `BERTH_TEST_POSTGRES=skip` opts out of them knowingly.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::{Connection, PgConnection};

/// A database `berth_test_<random>` that exists until this is dropped.
pub struct PgDb {
    admin_url: String,
    pub name: String,
    /// The URL of this database.
    pub url: String,
}

/// A fresh empty database; `None` only when `BERTH_TEST_POSTGRES=skip`.
pub async fn db() -> Option<PgDb> {
    let admin_url = match std::env::var("BERTH_TEST_POSTGRES_URL") {
        Ok(u) if !u.is_empty() => u,
        _ if std::env::var("BERTH_TEST_POSTGRES").as_deref() == Ok("skip") => return None,
        _ => panic!(
            "the PostgreSQL tests need a server: set BERTH_TEST_POSTGRES_URL to a URL of one \
             whose user may create databases (e.g. postgres://postgres@127.0.0.1:5432/postgres; \
             scripts/test provides one), or set BERTH_TEST_POSTGRES=skip to skip them knowingly"
        ),
    };
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = format!(
        "berth_test_{}_{}_{}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::Relaxed)
    );
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("connecting to BERTH_TEST_POSTGRES_URL: {e}"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
    let url = with_database(&admin_url, &name);
    Some(PgDb {
        admin_url,
        name,
        url,
    })
}

/// `url` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    format!("{host_part}/{name}{query}")
}

impl Drop for PgDb {
    /// Drops the database, whatever the test's outcome (on a thread of its own: drop
    /// may run inside the test's runtime).
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut admin = PgConnection::connect(&admin_url).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .unwrap();
            })
        })
        .join();
        if done.is_err() && !std::thread::panicking() {
            panic!("could not drop the test database {}", self.name);
        }
    }
}

/// The secrets key the PostgreSQL tests connect with.
#[allow(dead_code)]
pub fn test_key() -> berth_store::SecretsKey {
    berth_store::SecretsKey::from_bytes([7; 32])
}
