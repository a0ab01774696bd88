//! The PostgreSQL backend (for several nodes sharing one metadata store): a bounded
//! connection pool, versioned migrations from `migrations/postgres` run at connect.
//!
//! Several nodes may connect at once: sqlx's migrator holds a PostgreSQL advisory lock
//! (`pg_advisory_lock`, keyed by the database's name) from before it reads the applied
//! migrations until it has applied the missing ones, so the others wait and then find
//! nothing left to do. A database that has a migration this build does not know (a newer
//! berth migrated it) is refused. It keeps the [`Leases`](crate::Leases), the
//! identities (the [`Store`](crate::Store), in `pg_identities.rs`: accounts, keys,
//! sessions, users, groups, roles, policies, tags) and the registry (the
//! [`RegistryStore`](crate::RegistryStore), in `pg_registry.rs`).

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::MigrateError;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::Row;

use crate::leases::{Lease, Leases};
use crate::sealer::{Sealer, SecretSlot, SecretsKey, CHECK_TEXT};
use crate::{KeyError, Result, StoreError};

/// The schema's migrations, built in.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The channel writes that matter to authorization are notified on (migration 0008).
const CHANGES: &str = "berth_changes";

/// Most connections one node holds to the database.
const MAX_CONNECTIONS: u32 = 16;
/// How long a query waits for a connection (a new one included: this also bounds
/// connecting to an unreachable server) before it fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// An idle connection is closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// A database error as the store reports it: `Unavailable` when the server cannot be
/// reached or is going away (the request may be retried once it is back), else `Backend`.
pub(crate) fn backend(e: sqlx::Error) -> StoreError {
    if unavailable(&e) {
        StoreError::Unavailable(format!("PostgreSQL: {e}"))
    } else {
        StoreError::Backend(format!("PostgreSQL: {e}"))
    }
}

/// Whether `e` says the database is out of reach rather than that the request failed:
/// no connection (refused, lost, TLS, pool exhausted or closed), or the server refusing
/// work while it starts or stops (SQLSTATE class 08, 57P01-57P03).
pub(crate) fn unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PgStore {
    pub(crate) pool: PgPool,
    /// Seals and opens the secrets, with the key the store was connected with.
    pub(crate) sealer: std::sync::Arc<Sealer>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connect to `url` (`postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`, with the
    /// usual query parameters such as `sslmode`), bring the schema up to date, and check
    /// that `key` is the key the database's secrets are sealed with
    /// ([`KeyError::WrongKey`] if not; a new database adopts it).
    pub async fn connect(url: &str, key: &SecretsKey) -> std::result::Result<PgStore, KeyError> {
        // The URL may hold a password: errors never repeat it.
        let not_pg = |why: String| {
            StoreError::Backend(format!(
                "the metadata URL is not a PostgreSQL URL like postgres://USER@HOST:PORT/DATABASE: {why}"
            ))
        };
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(
                not_pg("it must start with postgres:// or postgresql://".to_string()).into(),
            );
        }
        let options = PgConnectOptions::from_str(url).map_err(|e| {
            not_pg(match e {
                sqlx::Error::Configuration(c) => c.to_string(),
                _ => "it could not be parsed".to_string(),
            })
        })?;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .idle_timeout(IDLE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Backend(format!("connecting to PostgreSQL: {e}")))?;
        MIGRATOR.run(&pool).await.map_err(|e| match e {
            MigrateError::VersionMissing(v) => StoreError::Conflict(format!(
                "refusing the PostgreSQL database: {}",
                crate::schema::unknown(v)
            )),
            e => StoreError::Backend(format!("migrating the PostgreSQL schema: {e}")),
        })?;
        let sealer = Sealer::new(key);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        // The first node to connect to a new database makes the check row; every node
        // (that one included) then checks its key against the row that won.
        sqlx::query(
            "INSERT INTO secrets_key_check (only_row, sealed, created_at) VALUES (1, $1, $2)
             ON CONFLICT (only_row) DO NOTHING",
        )
        .bind(sealer.seal(SecretSlot::Check, CHECK_TEXT)?)
        .bind(now)
        .execute(&pool)
        .await
        .map_err(backend)?;
        let check: String =
            sqlx::query_scalar("SELECT sealed FROM secrets_key_check WHERE only_row = 1")
                .fetch_one(&pool)
                .await
                .map_err(backend)?;
        match sealer.open(SecretSlot::Check, &check) {
            Ok(text) if text == CHECK_TEXT => {}
            _ => return Err(KeyError::WrongKey),
        }
        Ok(PgStore {
            pool,
            sealer: std::sync::Arc::new(sealer),
        })
    }

    /// Whether the database answers and its schema is current: the migrations applied
    /// are exactly those this build knows (an error says which differ).
    pub async fn check_schema(&self) -> Result<()> {
        let applied: Vec<crate::schema::Applied> = sqlx::query_as(
            "SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        crate::schema::check(&MIGRATOR, &applied)
    }

    /// Whether the database at `url` holds secrets sealed with some key (its key check
    /// row exists): false for a new database, which adopts the key it is first connected
    /// with. Reads only; migrates nothing.
    pub async fn is_sealed(url: &str) -> Result<bool> {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(url)
            .await
            .map_err(|e| StoreError::Backend(format!("connecting to PostgreSQL: {e}")))?;
        let table: Option<String> =
            sqlx::query_scalar("SELECT to_regclass('secrets_key_check')::text")
                .fetch_one(&mut conn)
                .await
                .map_err(backend)?;
        if table.is_none() {
            return Ok(false);
        }
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM secrets_key_check")
            .fetch_one(&mut conn)
            .await
            .map_err(backend)?;
        let _ = conn.close().await;
        Ok(n > 0)
    }

    /// Call `on_change` with a table's name whenever a committed write changes what
    /// authorization reads (see migration 0008: every node's writes notify channel
    /// `berth_changes`), and with `"*"` whenever notifications may have been missed: when
    /// listening starts and each time the connection is lost (it reconnects by itself,
    /// retrying every second). Runs until the returned handle is aborted.
    pub fn watch_changes(
        &self,
        on_change: impl Fn(&str) + Send + Sync + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let pool = self.pool.clone();
        tokio::spawn(async move {
            loop {
                let listener = async {
                    let mut l = sqlx::postgres::PgListener::connect_with(&pool).await?;
                    l.listen(CHANGES).await?;
                    Ok::<_, sqlx::Error>(l)
                };
                let mut listener = match listener.await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "not listening for changes from other nodes; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                // Listening from now on: whatever changed before is unknown.
                on_change("*");
                loop {
                    match listener.try_recv().await {
                        Ok(Some(n)) => on_change(n.payload()),
                        // The connection was lost; the next call reconnects.
                        Ok(None) => {
                            tracing::warn!("lost the connection that listens for changes from other nodes; reconnecting");
                            on_change("*");
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "listening for changes from other nodes failed; retrying");
                            on_change("*");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            break;
                        }
                    }
                }
            }
        })
    }

    /// The sealer of the secrets.
    pub(crate) fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// Close the pool's connections (waits for those in use to come back).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn lease_from(row: &PgRow) -> Result<Lease> {
    Ok(Lease {
        job: row.try_get("job").map_err(backend)?,
        holder: row.try_get("holder").map_err(backend)?,
        acquired_at: row.try_get("acquired_at").map_err(backend)?,
        expires_at: row.try_get("expires_at").map_err(backend)?,
        last_run_at: row.try_get("last_run_at").map_err(backend)?,
    })
}

#[async_trait]
impl Leases for PgStore {
    async fn try_lease(
        &self,
        job: &str,
        holder: &str,
        now: i64,
        ttl: i64,
    ) -> Result<Option<Lease>> {
        // One statement, as on SQLite: insert the lease, or take it over when it is ours
        // or has expired; a lease another holder still has is left alone (no row comes
        // back). Concurrent upserts of one job serialize on its row.
        let row = sqlx::query(
            "INSERT INTO leases (job, holder, acquired_at, expires_at) VALUES ($1, $2, $3, $3 + $4)
             ON CONFLICT (job) DO UPDATE SET
                 acquired_at = CASE WHEN leases.holder = excluded.holder AND leases.expires_at > $3
                                    THEN leases.acquired_at ELSE excluded.acquired_at END,
                 holder = excluded.holder,
                 expires_at = excluded.expires_at
             WHERE leases.holder = excluded.holder OR leases.expires_at <= $3
             RETURNING job, holder, acquired_at, expires_at, last_run_at",
        )
        .bind(job)
        .bind(holder)
        .bind(now)
        .bind(ttl)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.map(|r| lease_from(&r)).transpose()
    }

    async fn record_run(&self, job: &str, holder: &str, at: i64) -> Result<bool> {
        let done = sqlx::query("UPDATE leases SET last_run_at = $1 WHERE job = $2 AND holder = $3")
            .bind(at)
            .bind(job)
            .bind(holder)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_lease(&self, job: &str, holder: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE leases SET expires_at = 0 WHERE job = $1 AND holder = $2 AND expires_at > 0",
        )
        .bind(job)
        .bind(holder)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn lease(&self, job: &str) -> Result<Option<Lease>> {
        let row = sqlx::query(
            "SELECT job, holder, acquired_at, expires_at, last_run_at FROM leases WHERE job = $1",
        )
        .bind(job)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.map(|r| lease_from(&r)).transpose()
    }
}
