//! The embedded backend: one SQLite database file (WAL, full fsync on commit), versioned
//! migrations from `migrations/sqlite`. Several processes may open the same file (the
//! server and `berth account create`); writers wait for each other. Secrets are stored
//! sealed (see [`crate::sealer`]) with the key the store is opened with.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::Row;

use crate::model::*;
use crate::sealer::{Sealer, SecretSlot, SecretsKey, CHECK_TEXT};
use crate::{Result, Store, StoreError};

/// The schema's migrations, built in.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
    /// Seals secrets on write and opens them on read; `None`: opened without the
    /// secrets key, secrets are refused.
    sealer: Option<Arc<Sealer>>,
    /// For [`SqliteStore::in_memory`]: its scratch file, removed with the last handle.
    _scratch: Option<Arc<Scratch>>,
}

/// A scratch database file (and its `-wal`/`-shm`), removed when dropped.
#[derive(Debug)]
struct Scratch(std::path::PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.0.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Why a secrets key was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The database's secrets were sealed with another key.
    WrongKey,
    /// The backend failed.
    Store(StoreError),
}

impl From<StoreError> for KeyError {
    fn from(e: StoreError) -> KeyError {
        KeyError::Store(e)
    }
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyError::WrongKey => {
                f.write_str("the secrets in the database were sealed with another secrets key")
            }
            KeyError::Store(e) => e.fmt(f),
        }
    }
}

/// Put the database file in WAL mode on one connection before the pool opens its own.
/// A connection that switches a file to WAL while another connection does the same (the
/// pool opens its first connections concurrently, and `berth account create` may race a
/// starting server) can be answered SQLITE_BUSY at once, without waiting out the busy
/// timeout; once the file is in WAL mode, the pragma each new connection runs changes
/// nothing and takes no lock. So: one connection first, tried again while it is busy.
async fn set_wal(options: &SqliteConnectOptions) -> Result<()> {
    use sqlx::{ConnectOptions, Connection};
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match options.connect().await {
            Ok(conn) => return conn.close().await.map_err(backend),
            Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(backend(e)),
        }
    }
}

/// Bring the schema up to date: every pending migration, with the row sqlx's migrator
/// keeps for it, in one `BEGIN IMMEDIATE` transaction, so processes opening one new file
/// at once take turns (sqlx's migrator takes no lock on SQLite: two of them apply the same
/// migration, and the second fails on the tables the first made). sqlx's migrator then
/// checks what is applied (checksums, a version it does not know) and has nothing to do.
async fn migrate(pool: &SqlitePool) -> Result<()> {
    let failed = |e: sqlx::Error| StoreError::Backend(format!("migrating the schema: {e}"));
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(failed)?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
            version BIGINT PRIMARY KEY,
            description TEXT NOT NULL,
            installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
            success BOOLEAN NOT NULL,
            checksum BLOB NOT NULL,
            execution_time BIGINT NOT NULL
        )",
    )
    .execute(&mut *tx)
    .await
    .map_err(failed)?;
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations")
        .fetch_all(&mut *tx)
        .await
        .map_err(failed)?;
    for m in MIGRATOR.iter() {
        if m.migration_type.is_down_migration() || applied.contains(&m.version) {
            continue;
        }
        sqlx::raw_sql(m.sql.clone())
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                StoreError::Backend(format!(
                    "migrating the schema to version {}: {e}",
                    m.version
                ))
            })?;
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES (?, ?, TRUE, ?, -1)",
        )
        .bind(m.version)
        .bind(&*m.description)
        .bind(&*m.checksum)
        .execute(&mut *tx)
        .await
        .map_err(failed)?;
    }
    tx.commit().await.map_err(failed)?;
    MIGRATOR
        .run(pool)
        .await
        .map_err(|e| StoreError::Backend(format!("migrating the schema: {e}")))
}

/// SQLITE_BUSY, with or without an extended code.
fn is_busy(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|c| c & 0xff == 5)
}

pub(crate) fn backend(e: sqlx::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

impl SqliteStore {
    /// Open (creating if needed) the database at `path`, bring its schema up to date,
    /// and seal or open its secrets with `key` (see [`SqliteStore::with_secrets_key`]).
    pub async fn open(path: &Path, key: &SecretsKey) -> Result<SqliteStore> {
        Self::open_without_secrets(path)
            .await?
            .with_secrets_key(key)
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))
    }

    /// Open (creating if needed) the database at `path` and bring its schema up to date,
    /// without the secrets key: everything but secrets can be read and written; reading
    /// or writing a secret (an access key, a session, a server secret) fails.
    pub async fn open_without_secrets(path: &Path) -> Result<SqliteStore> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        set_wal(&options).await?;
        Self::connect(options, 8).await
    }

    /// A private scratch database (tests), with a random secrets key: a file in the
    /// temporary directory, unsynchronized, removed when the last handle goes. (Not an
    /// SQLite in-memory database: that lives in one connection, and the pool replaces a
    /// connection it had to drop — a query cancelled part-way — with an empty new one.)
    pub async fn in_memory() -> Result<SqliteStore> {
        static DATABASES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "berth-scratch-{}-{}-{}.db",
            std::process::id(),
            DATABASES.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            crate::now_ms()
        ));
        let scratch = Arc::new(Scratch(path.clone()));
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Off)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        set_wal(&options).await?;
        let mut store = Self::connect(options, 1).await?;
        store._scratch = Some(scratch);
        store
            .with_secrets_key(&SecretsKey::generate()?)
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))
    }

    async fn connect(options: SqliteConnectOptions, max: u32) -> Result<SqliteStore> {
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(backend)?;
        migrate(&pool).await?;
        Ok(SqliteStore {
            pool,
            sealer: None,
            _scratch: None,
        })
    }

    /// Whether the database's secrets are sealed (with some key): false for a new
    /// database and for one written before secrets were sealed.
    pub async fn holds_sealed_secrets(&self) -> Result<bool> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM secrets_key_check")
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        Ok(n > 0)
    }

    /// Use `key` for the secrets: if the database's secrets are sealed, check that `key`
    /// is the key they were sealed with ([`KeyError::WrongKey`] if not); if they are not
    /// (a new database, or one written before secrets were sealed), seal every secret
    /// in it with `key`, in one transaction, then rewrite the database file and empty its
    /// write-ahead log so no secret is left in clear in either (best effort: see
    /// [`SqliteStore::holds_clear_remnants`]).
    pub async fn with_secrets_key(
        mut self,
        key: &SecretsKey,
    ) -> std::result::Result<SqliteStore, KeyError> {
        let sealer = Sealer::new(key);
        let mut tx = self.write_tx().await?;
        let check: Option<(String, i64)> = sqlx::query_as(
            "SELECT sealed, clear_remnants FROM secrets_key_check WHERE only_row = 1",
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        if let Some((check, remnants)) = check {
            drop(tx);
            match sealer.open(SecretSlot::Check, &check) {
                Ok(text) if text == CHECK_TEXT => {}
                _ => return Err(KeyError::WrongKey),
            }
            if remnants != 0 {
                self.erase_clear_remnants().await;
            }
            self.sealer = Some(Arc::new(sealer));
            return Ok(self);
        }
        let mut sealed = 0usize;
        for (table, id_col, col) in [
            ("access_keys", "access_key_id", "secret"),
            ("sessions", "access_key_id", "secret"),
            ("server_secrets", "name", "value"),
        ] {
            let rows: Vec<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {id_col}, {col} FROM {table}"
            )))
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
            for (id, plain) in rows {
                let slot = match table {
                    "access_keys" => SecretSlot::AccessKey(&id),
                    "sessions" => SecretSlot::Session(&id),
                    _ => SecretSlot::ServerSecret(&id),
                };
                let value = sealer.seal(slot, &plain)?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE {table} SET {col} = ? WHERE {id_col} = ?"
                )))
                .bind(value)
                .bind(&id)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
                sealed += 1;
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        sqlx::query(
            "INSERT INTO secrets_key_check (only_row, sealed, created_at, clear_remnants)
             VALUES (1, ?, ?, ?)",
        )
        .bind(sealer.seal(SecretSlot::Check, CHECK_TEXT)?)
        .bind(now)
        .bind(i64::from(sealed > 0))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        if sealed > 0 {
            self.erase_clear_remnants().await;
        }
        self.sealer = Some(Arc::new(sealer));
        Ok(self)
    }

    /// After secrets were sealed in place, their old pages (in the file's free space and
    /// in the write-ahead log) may still hold them in clear: rebuild the file (VACUUM),
    /// empty the log (a truncating checkpoint), then note it done. Best effort: if another
    /// connection keeps the log from being emptied, or the rebuild fails, the note stays
    /// (see [`SqliteStore::holds_clear_remnants`]) and the next open tries again.
    async fn erase_clear_remnants(&self) {
        let Ok(mut conn) = self.pool.acquire().await else {
            return;
        };
        if sqlx::query("VACUUM").execute(&mut *conn).await.is_err() {
            return;
        }
        // Readers of other processes hold the log: wait for them a short while only.
        let _ = sqlx::query("PRAGMA busy_timeout = 1000")
            .execute(&mut *conn)
            .await;
        let checkpoint = sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&mut *conn)
            .await;
        let _ = sqlx::query("PRAGMA busy_timeout = 10000")
            .execute(&mut *conn)
            .await;
        if !matches!(checkpoint, Ok((0, _, _))) {
            return;
        }
        if sqlx::query("UPDATE secrets_key_check SET clear_remnants = 0")
            .execute(&mut *conn)
            .await
            .is_ok()
        {
            let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&mut *conn)
                .await;
        }
    }

    /// Whether the file or its write-ahead log may still hold secrets as they were before
    /// they were sealed (erasing them did not finish; the next open tries again).
    pub async fn holds_clear_remnants(&self) -> Result<bool> {
        let n: Option<i64> = sqlx::query_scalar("SELECT clear_remnants FROM secrets_key_check")
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        Ok(n.unwrap_or(0) != 0)
    }

    /// The sealer, or why secrets cannot be read or written.
    pub(crate) fn sealer(&self) -> Result<&Sealer> {
        self.sealer.as_deref().ok_or_else(|| {
            StoreError::Backend(
                "the metadata store was opened without the secrets key: secrets can be neither read nor written".into(),
            )
        })
    }

    pub(crate) async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)
    }

    fn key_from(&self, row: &SqliteRow) -> Result<AccessKey> {
        let status: &str = row.try_get("status").map_err(backend)?;
        let id: String = row.try_get("access_key_id").map_err(backend)?;
        let stored: String = row.try_get("secret").map_err(backend)?;
        Ok(AccessKey {
            secret: self.sealer()?.open(SecretSlot::AccessKey(&id), &stored)?,
            id,
            account: row.try_get("account_id").map_err(backend)?,
            user: row.try_get("user_name").map_err(backend)?,
            status: KeyStatus::parse(status).unwrap_or(KeyStatus::Inactive),
            created: row.try_get("created_at").map_err(backend)?,
        })
    }
}

fn entity_from(row: &SqliteRow) -> Result<Entity> {
    Ok(Entity {
        account: row.try_get("account_id").map_err(backend)?,
        kind: EntityKind::from_db(row.try_get::<&str, _>("kind").map_err(backend)?),
        name: row.try_get("name").map_err(backend)?,
        path: row.try_get("path").map_err(backend)?,
        unique_id: row.try_get("unique_id").map_err(backend)?,
        created: row.try_get("created_at").map_err(backend)?,
        trust_policy: row.try_get("trust_policy").map_err(backend)?,
        description: row.try_get("description").map_err(backend)?,
        max_session_secs: row.try_get("max_session_secs").map_err(backend)?,
        boundary: row.try_get("boundary_arn").map_err(backend)?,
    })
}

fn policy_from(row: &SqliteRow) -> Result<ManagedPolicy> {
    Ok(ManagedPolicy {
        account: row.try_get("account_id").map_err(backend)?,
        name: row.try_get("name").map_err(backend)?,
        path: row.try_get("path").map_err(backend)?,
        policy_id: row.try_get("policy_id").map_err(backend)?,
        default_version: row.try_get("default_version").map_err(backend)?,
        description: row.try_get("description").map_err(backend)?,
        created: row.try_get("created_at").map_err(backend)?,
        updated: row.try_get("updated_at").map_err(backend)?,
        attachment_count: row.try_get("attachment_count").map_err(backend)?,
        boundary_usage_count: row.try_get("boundary_usage_count").map_err(backend)?,
    })
}

fn version_from(row: &SqliteRow, default: &str) -> Result<PolicyVersion> {
    let version_id: String = row.try_get("version_id").map_err(backend)?;
    Ok(PolicyVersion {
        is_default: version_id == default,
        version_id,
        document: row.try_get("document").map_err(backend)?,
        created: row.try_get("created_at").map_err(backend)?,
    })
}

fn tag_from(row: &SqliteRow) -> Result<Tag> {
    Ok(Tag {
        key: row.try_get("key").map_err(backend)?,
        value: row.try_get("value").map_err(backend)?,
    })
}

/// A managed policy with its usage counts (`?1` account, `?2` name).
const POLICY_SELECT: &str = "SELECT p.*,
    (SELECT COUNT(*) FROM attachments a WHERE a.policy_arn = 'arn:aws:iam::' || p.account_id || ':policy' || p.path || p.name) AS attachment_count,
    (SELECT COUNT(*) FROM entities e WHERE e.boundary_arn = 'arn:aws:iam::' || p.account_id || ':policy' || p.path || p.name) AS boundary_usage_count
    FROM managed_policies p";

pub(crate) fn login_profile_from(
    (account, user, password_hash, created, changed, reset_required): (
        String,
        String,
        String,
        i64,
        i64,
        bool,
    ),
) -> LoginProfile {
    LoginProfile {
        account,
        user,
        password_hash,
        created,
        changed,
        reset_required,
    }
}

pub(crate) fn profile_exists(user: &str) -> StoreError {
    StoreError::AlreadyExists(format!("Login Profile for user {user} already exists."))
}

pub(crate) fn no_profile(user: &str) -> StoreError {
    StoreError::NotFound(format!("Login Profile for User {user} cannot be found."))
}

pub(crate) fn no_password_policy(account: &str) -> StoreError {
    StoreError::NotFound(format!(
        "The Password Policy with domain name {account} cannot be found."
    ))
}

fn not_found(kind: EntityKind, name: &str) -> StoreError {
    StoreError::NotFound(format!(
        "The {} with name {name} cannot be found.",
        kind.as_str()
    ))
}

fn owner_sql(user: Option<&str>) -> (&'static str, &str) {
    match user {
        Some(u) => ("user_name = ?", u),
        None => ("user_name IS NULL AND ? = ''", ""),
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn check_schema(&self) -> Result<()> {
        let applied: Vec<crate::schema::Applied> = sqlx::query_as(
            "SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        crate::schema::check(&MIGRATOR, &applied)
    }

    async fn create_account(&self, account: &Account, root_key: &AccessKey) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let r = sqlx::query("INSERT INTO accounts (id, alias, created_at) VALUES (?, ?, ?)")
            .bind(&account.id)
            .bind(&account.alias)
            .bind(account.created)
            .execute(&mut *tx)
            .await;
        if let Err(e) = r {
            return Err(if is_unique_violation(&e) {
                // Name what clashed: the alias the user gave, or the id.
                let alias_clash = e.to_string().contains("accounts.alias");
                StoreError::AlreadyExists(match (&account.alias, alias_clash) {
                    (Some(alias), true) => {
                        format!("An account with the alias {alias} already exists.")
                    }
                    _ => format!("An account with the id {} already exists.", account.id),
                })
            } else {
                backend(e)
            });
        }
        insert_key(&mut tx, self.sealer()?, root_key).await?;
        tx.commit().await.map_err(backend)
    }

    async fn account(&self, id: &str) -> Result<Option<Account>> {
        let row = sqlx::query("SELECT * FROM accounts WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(|r| account_from(&r)).transpose()
    }

    async fn accounts(&self) -> Result<Vec<Account>> {
        let rows = sqlx::query("SELECT * FROM accounts ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(account_from).collect()
    }

    async fn access_key(&self, id: &str) -> Result<Option<AccessKey>> {
        let row = sqlx::query("SELECT * FROM access_keys WHERE access_key_id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(|r| self.key_from(&r)).transpose()
    }

    async fn create_access_key(&self, key: &AccessKey, limit: usize) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let (cond, owner) = owner_sql(key.user.as_deref());
        let sql = format!("SELECT COUNT(*) FROM access_keys WHERE account_id = ? AND {cond}");
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(&key.account)
            .bind(owner)
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        if n as usize >= limit {
            return Err(StoreError::LimitExceeded(format!(
                "Cannot exceed quota for AccessKeysPerUser: {limit}"
            )));
        }
        insert_key(&mut tx, self.sealer()?, key).await?;
        tx.commit().await.map_err(backend)
    }

    async fn access_keys(&self, account: &str, user: Option<&str>) -> Result<Vec<AccessKey>> {
        let (cond, owner) = owner_sql(user);
        let sql = format!(
            "SELECT * FROM access_keys WHERE account_id = ? AND {cond} ORDER BY created_at, access_key_id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(owner)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(|r| self.key_from(r)).collect()
    }

    async fn set_access_key_status(
        &self,
        account: &str,
        user: Option<&str>,
        id: &str,
        status: KeyStatus,
    ) -> Result<()> {
        let (cond, owner) = owner_sql(user);
        let sql = format!(
            "UPDATE access_keys SET status = ? WHERE access_key_id = ? AND account_id = ? AND {cond}"
        );
        let r = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(status.as_str())
            .bind(id)
            .bind(account)
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "The Access Key with id {id} cannot be found."
            )));
        }
        Ok(())
    }

    async fn delete_access_key(&self, account: &str, user: Option<&str>, id: &str) -> Result<()> {
        let (cond, owner) = owner_sql(user);
        let sql = format!(
            "DELETE FROM access_keys WHERE access_key_id = ? AND account_id = ? AND {cond}"
        );
        let r = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(account)
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "The Access Key with id {id} cannot be found."
            )));
        }
        Ok(())
    }

    async fn create_session(&self, s: &Session) -> Result<()> {
        let secret = self
            .sealer()?
            .seal(SecretSlot::Session(&s.access_key_id), &s.secret)?;
        sqlx::query(
            "INSERT INTO sessions (access_key_id, secret, token, account_id, claims, created_at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&s.access_key_id)
        .bind(secret)
        .bind(&s.token)
        .bind(&s.account)
        .bind(&s.claims)
        .bind(s.created)
        .bind(s.expires)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn session(&self, access_key_id: &str) -> Result<Option<Session>> {
        let row = sqlx::query("SELECT * FROM sessions WHERE access_key_id = ?")
            .bind(access_key_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(|r| {
            let id: String = r.try_get("access_key_id").map_err(backend)?;
            let stored: String = r.try_get("secret").map_err(backend)?;
            Ok(Session {
                secret: self.sealer()?.open(SecretSlot::Session(&id), &stored)?,
                access_key_id: id,
                token: r.try_get("token").map_err(backend)?,
                account: r.try_get("account_id").map_err(backend)?,
                claims: r.try_get("claims").map_err(backend)?,
                created: r.try_get("created_at").map_err(backend)?,
                expires: r.try_get("expires_at").map_err(backend)?,
            })
        })
        .transpose()
    }

    async fn delete_sessions_expired_before(&self, before: i64) -> Result<u64> {
        let r = sqlx::query("DELETE FROM sessions WHERE expires_at < ?")
            .bind(before)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(r.rows_affected())
    }

    async fn create_entity(&self, e: &Entity, tags: &[Tag]) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let r = sqlx::query(
            "INSERT INTO entities (account_id, kind, name, path, unique_id, created_at, trust_policy,
                description, max_session_secs, boundary_arn) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&e.account)
        .bind(e.kind.as_str())
        .bind(&e.name)
        .bind(&e.path)
        .bind(&e.unique_id)
        .bind(e.created)
        .bind(&e.trust_policy)
        .bind(&e.description)
        .bind(e.max_session_secs)
        .bind(&e.boundary)
        .execute(&mut *tx)
        .await;
        if let Err(err) = r {
            return Err(if is_unique_violation(&err) {
                StoreError::AlreadyExists(format!(
                    "{} with name {} already exists.",
                    e.kind.title(),
                    e.name
                ))
            } else {
                backend(err)
            });
        }
        let target = match e.kind {
            EntityKind::Role => TagTarget::Role,
            _ => TagTarget::User,
        };
        put_tags(&mut tx, &e.account, target, &e.name, tags).await?;
        tx.commit().await.map_err(backend)
    }

    async fn entity(&self, account: &str, kind: EntityKind, name: &str) -> Result<Option<Entity>> {
        let row =
            sqlx::query("SELECT * FROM entities WHERE account_id = ? AND kind = ? AND name = ?")
                .bind(account)
                .bind(kind.as_str())
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
        row.map(|r| entity_from(&r)).transpose()
    }

    async fn entities(
        &self,
        account: &str,
        kind: EntityKind,
        path_prefix: &str,
    ) -> Result<Vec<Entity>> {
        let rows = sqlx::query(
            "SELECT * FROM entities WHERE account_id = ? AND kind = ? AND substr(path, 1, length(?)) = ?
             ORDER BY name COLLATE NOCASE",
        )
        .bind(account)
        .bind(kind.as_str())
        .bind(path_prefix)
        .bind(path_prefix)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(entity_from).collect()
    }

    async fn delete_entity(&self, account: &str, kind: EntityKind, name: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let exists: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM entities WHERE account_id = ? AND kind = ? AND name = ?",
        )
        .bind(account)
        .bind(kind.as_str())
        .bind(name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        if exists.is_none() {
            return Err(not_found(kind, name));
        }
        // What AWS requires gone first, in the order it reports it.
        let checks: &[(&'static str, &str)] = &[
            (
                "SELECT COUNT(*) FROM inline_policies WHERE account_id = ?1 AND kind = ?2 AND owner_name = ?3",
                "Cannot delete entity, must delete policies first.",
            ),
            (
                "SELECT COUNT(*) FROM attachments WHERE account_id = ?1 AND kind = ?2 AND owner_name = ?3",
                "Cannot delete entity, must detach all policies first.",
            ),
            (
                "SELECT COUNT(*) FROM access_keys WHERE account_id = ?1 AND ?2 = 'user' AND user_name = ?3",
                "Cannot delete entity, must delete access keys first.",
            ),
            (
                "SELECT COUNT(*) FROM login_profiles WHERE account_id = ?1 AND ?2 = 'user' AND user_name = ?3",
                "Cannot delete entity, must delete login profile first.",
            ),
            (
                "SELECT COUNT(*) FROM group_members WHERE account_id = ?1 AND ((?2 = 'user' AND user_name = ?3) OR (?2 = 'group' AND group_name = ?3))",
                "Cannot delete entity, must remove users from group first.",
            ),
        ];
        for (i, (sql, msg)) in checks.iter().enumerate() {
            let n: i64 = sqlx::query_scalar(*sql)
                .bind(account)
                .bind(kind.as_str())
                .bind(name)
                .fetch_one(&mut *tx)
                .await
                .map_err(backend)?;
            if n > 0 {
                let msg = if i == 4 && kind == EntityKind::User {
                    "Cannot delete entity, must remove user from all groups first."
                } else {
                    msg
                };
                return Err(StoreError::Conflict(msg.to_string()));
            }
        }
        sqlx::query("DELETE FROM tags WHERE account_id = ? AND kind = ? AND owner_name = ?")
            .bind(account)
            .bind(kind.as_str())
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query("DELETE FROM entities WHERE account_id = ? AND kind = ? AND name = ?")
            .bind(account)
            .bind(kind.as_str())
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn update_role(&self, role: &Entity) -> Result<()> {
        let r = sqlx::query(
            "UPDATE entities SET description = ?, max_session_secs = ?
             WHERE account_id = ? AND kind = 'role' AND name = ?",
        )
        .bind(&role.description)
        .bind(role.max_session_secs)
        .bind(&role.account)
        .bind(&role.name)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        if r.rows_affected() == 0 {
            return Err(not_found(EntityKind::Role, &role.name));
        }
        Ok(())
    }

    async fn set_trust_policy(&self, account: &str, role: &str, document: &str) -> Result<()> {
        let r = sqlx::query(
            "UPDATE entities SET trust_policy = ? WHERE account_id = ? AND kind = 'role' AND name = ?",
        )
        .bind(document)
        .bind(account)
        .bind(role)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        if r.rows_affected() == 0 {
            return Err(not_found(EntityKind::Role, role));
        }
        Ok(())
    }

    async fn set_boundary(
        &self,
        account: &str,
        kind: EntityKind,
        name: &str,
        policy_arn: Option<&str>,
    ) -> Result<()> {
        let r = sqlx::query(
            "UPDATE entities SET boundary_arn = ? WHERE account_id = ? AND kind = ? AND name = ?",
        )
        .bind(policy_arn)
        .bind(account)
        .bind(kind.as_str())
        .bind(name)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        if r.rows_affected() == 0 {
            return Err(not_found(kind, name));
        }
        Ok(())
    }

    async fn login_profile(&self, account: &str, user: &str) -> Result<Option<LoginProfile>> {
        let row: Option<(String, String, String, i64, i64, bool)> = sqlx::query_as(
            "SELECT account_id, user_name, password_hash, created_at, changed_at, reset_required
             FROM login_profiles WHERE account_id = ? AND user_name = ?",
        )
        .bind(account)
        .bind(user)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        Ok(row.map(login_profile_from))
    }

    async fn put_login_profile(&self, p: &LoginProfile, create: bool) -> Result<()> {
        let mut tx = self.write_tx().await?;
        require_entity(&mut tx, &p.account, EntityKind::User, &p.user).await?;
        let had: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM login_profiles WHERE account_id = ? AND user_name = ?",
        )
        .bind(&p.account)
        .bind(&p.user)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        match (create, had.is_some()) {
            (true, true) => return Err(profile_exists(&p.user)),
            (false, false) => return Err(no_profile(&p.user)),
            _ => {}
        }
        sqlx::query(
            "INSERT OR REPLACE INTO login_profiles
             (account_id, user_name, password_hash, created_at, changed_at, reset_required)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&p.account)
        .bind(&p.user)
        .bind(&p.password_hash)
        .bind(p.created)
        .bind(p.changed)
        .bind(p.reset_required)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn delete_login_profile(&self, account: &str, user: &str) -> Result<()> {
        let r = sqlx::query("DELETE FROM login_profiles WHERE account_id = ? AND user_name = ?")
            .bind(account)
            .bind(user)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        if r.rows_affected() == 0 {
            return Err(no_profile(user));
        }
        Ok(())
    }

    async fn password_policy(&self, account: &str) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT policy FROM password_policies WHERE account_id = ?")
            .bind(account)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)
    }

    async fn set_password_policy(&self, account: &str, policy: Option<&str>) -> Result<()> {
        let r = match policy {
            Some(p) => sqlx::query(
                "INSERT INTO password_policies (account_id, policy) VALUES (?, ?)
                 ON CONFLICT (account_id) DO UPDATE SET policy = excluded.policy",
            )
            .bind(account)
            .bind(p),
            None => sqlx::query("DELETE FROM password_policies WHERE account_id = ?").bind(account),
        }
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        if policy.is_none() && r.rows_affected() == 0 {
            return Err(no_password_policy(account));
        }
        Ok(())
    }

    async fn add_user_to_group(&self, account: &str, group: &str, user: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        require_entity(&mut tx, account, EntityKind::Group, group).await?;
        require_entity(&mut tx, account, EntityKind::User, user).await?;
        sqlx::query(
            "INSERT OR IGNORE INTO group_members (account_id, group_name, user_name) VALUES (?, ?, ?)",
        )
        .bind(account)
        .bind(group)
        .bind(user)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn remove_user_from_group(&self, account: &str, group: &str, user: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        require_entity(&mut tx, account, EntityKind::Group, group).await?;
        require_entity(&mut tx, account, EntityKind::User, user).await?;
        let r = sqlx::query(
            "DELETE FROM group_members WHERE account_id = ? AND group_name = ? AND user_name = ?",
        )
        .bind(account)
        .bind(group)
        .bind(user)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "The user with name {user} is not a member of group {group}."
            )));
        }
        tx.commit().await.map_err(backend)
    }

    async fn groups_for_user(&self, account: &str, user: &str) -> Result<Vec<Entity>> {
        let rows = sqlx::query(
            "SELECT e.* FROM entities e JOIN group_members m
               ON m.account_id = e.account_id AND m.group_name = e.name
             WHERE e.account_id = ? AND e.kind = 'group' AND m.user_name = ?
             ORDER BY e.name COLLATE NOCASE",
        )
        .bind(account)
        .bind(user)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(entity_from).collect()
    }

    async fn group_members(&self, account: &str, group: &str) -> Result<Vec<Entity>> {
        let rows = sqlx::query(
            "SELECT e.* FROM entities e JOIN group_members m
               ON m.account_id = e.account_id AND m.user_name = e.name
             WHERE e.account_id = ? AND e.kind = 'user' AND m.group_name = ?
             ORDER BY e.name COLLATE NOCASE",
        )
        .bind(account)
        .bind(group)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(entity_from).collect()
    }

    async fn put_inline_policy(
        &self,
        account: &str,
        kind: EntityKind,
        owner: &str,
        name: &str,
        document: &str,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        require_entity(&mut tx, account, kind, owner).await?;
        sqlx::query(
            "INSERT INTO inline_policies (account_id, kind, owner_name, policy_name, document)
             VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (account_id, kind, owner_name, policy_name) DO UPDATE SET document = excluded.document",
        )
        .bind(account)
        .bind(kind.as_str())
        .bind(owner)
        .bind(name)
        .bind(document)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn inline_policy(
        &self,
        account: &str,
        kind: EntityKind,
        owner: &str,
        name: &str,
    ) -> Result<Option<String>> {
        sqlx::query_scalar(
            "SELECT document FROM inline_policies
             WHERE account_id = ? AND kind = ? AND owner_name = ? AND policy_name = ?",
        )
        .bind(account)
        .bind(kind.as_str())
        .bind(owner)
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)
    }

    async fn delete_inline_policy(
        &self,
        account: &str,
        kind: EntityKind,
        owner: &str,
        name: &str,
    ) -> Result<()> {
        let r = sqlx::query(
            "DELETE FROM inline_policies
             WHERE account_id = ? AND kind = ? AND owner_name = ? AND policy_name = ?",
        )
        .bind(account)
        .bind(kind.as_str())
        .bind(owner)
        .bind(name)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "The {} policy with name {name} cannot be found.",
                kind.as_str()
            )));
        }
        Ok(())
    }

    async fn inline_policy_names(
        &self,
        account: &str,
        kind: EntityKind,
        owner: &str,
    ) -> Result<Vec<String>> {
        sqlx::query_scalar(
            "SELECT policy_name FROM inline_policies WHERE account_id = ? AND kind = ? AND owner_name = ?
             ORDER BY policy_name COLLATE NOCASE",
        )
        .bind(account)
        .bind(kind.as_str())
        .bind(owner)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)
    }

    async fn create_policy(&self, p: &ManagedPolicy, document: &str, tags: &[Tag]) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let r = sqlx::query(
            "INSERT INTO managed_policies (account_id, name, path, policy_id, default_version, next_version,
                description, created_at, updated_at) VALUES (?, ?, ?, ?, 'v1', 2, ?, ?, ?)",
        )
        .bind(&p.account)
        .bind(&p.name)
        .bind(&p.path)
        .bind(&p.policy_id)
        .bind(&p.description)
        .bind(p.created)
        .bind(p.updated)
        .execute(&mut *tx)
        .await;
        if let Err(e) = r {
            return Err(if is_unique_violation(&e) {
                StoreError::AlreadyExists(format!(
                    "A policy called {} already exists. Duplicate names are not allowed.",
                    p.name
                ))
            } else {
                backend(e)
            });
        }
        sqlx::query(
            "INSERT INTO policy_versions (account_id, policy_name, version_id, document, created_at)
             VALUES (?, ?, 'v1', ?, ?)",
        )
        .bind(&p.account)
        .bind(&p.name)
        .bind(document)
        .bind(p.created)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        put_tags(&mut tx, &p.account, TagTarget::Policy, &p.name, tags).await?;
        tx.commit().await.map_err(backend)
    }

    async fn put_builtin_policy(&self, p: &ManagedPolicy, document: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO managed_policies (account_id, name, path, policy_id, default_version, next_version,
                description, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?)
             ON CONFLICT (account_id, name) DO UPDATE SET
                policy_id = excluded.policy_id, default_version = excluded.default_version,
                description = excluded.description, created_at = excluded.created_at,
                updated_at = excluded.updated_at",
        )
        .bind(&p.account)
        .bind(&p.name)
        .bind(&p.path)
        .bind(&p.policy_id)
        .bind(&p.default_version)
        .bind(&p.description)
        .bind(p.created)
        .bind(p.updated)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query("DELETE FROM policy_versions WHERE account_id = ? AND policy_name = ? AND version_id <> ?")
            .bind(&p.account)
            .bind(&p.name)
            .bind(&p.default_version)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query(
            "INSERT INTO policy_versions (account_id, policy_name, version_id, document, created_at)
             VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (account_id, policy_name, version_id) DO UPDATE SET document = excluded.document,
                created_at = excluded.created_at",
        )
        .bind(&p.account)
        .bind(&p.name)
        .bind(&p.default_version)
        .bind(document)
        .bind(p.updated)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn policy_entities(
        &self,
        account: &str,
        policy_arn: &str,
    ) -> Result<(Vec<Entity>, Vec<Entity>)> {
        let attached = sqlx::query(
            "SELECT e.* FROM attachments a JOIN entities e
               ON e.account_id = a.account_id AND e.kind = a.kind AND e.name = a.owner_name
             WHERE a.account_id = ? AND a.policy_arn = ? ORDER BY e.name COLLATE NOCASE",
        )
        .bind(account)
        .bind(policy_arn)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        let bounded = sqlx::query(
            "SELECT * FROM entities WHERE account_id = ? AND boundary_arn = ? ORDER BY name COLLATE NOCASE",
        )
        .bind(account)
        .bind(policy_arn)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok((
            attached.iter().map(entity_from).collect::<Result<_>>()?,
            bounded.iter().map(entity_from).collect::<Result<_>>()?,
        ))
    }

    async fn policy_usage_in(&self, account: &str, policy_arn: &str) -> Result<(i64, i64)> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM attachments WHERE account_id = ?1 AND policy_arn = ?2) AS a,
                    (SELECT COUNT(*) FROM entities WHERE account_id = ?1 AND boundary_arn = ?2) AS b",
        )
        .bind(account)
        .bind(policy_arn)
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        Ok((
            row.try_get("a").map_err(backend)?,
            row.try_get("b").map_err(backend)?,
        ))
    }

    async fn policy(&self, account: &str, name: &str) -> Result<Option<ManagedPolicy>> {
        let sql = format!("{POLICY_SELECT} WHERE p.account_id = ? AND p.name = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(|r| policy_from(&r)).transpose()
    }

    async fn policies(&self, account: &str, path_prefix: &str) -> Result<Vec<ManagedPolicy>> {
        let sql = format!(
            "{POLICY_SELECT} WHERE p.account_id = ? AND substr(p.path, 1, length(?)) = ?
             ORDER BY p.name COLLATE NOCASE"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(path_prefix)
            .bind(path_prefix)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(policy_from).collect()
    }

    async fn delete_policy(&self, account: &str, name: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let sql = format!("{POLICY_SELECT} WHERE p.account_id = ? AND p.name = ?");
        let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?
        else {
            return Err(policy_not_found(account, name));
        };
        let p = policy_from(&row)?;
        if p.attachment_count > 0 {
            return Err(StoreError::Conflict(
                "Cannot delete a policy attached to entities.".into(),
            ));
        }
        if p.boundary_usage_count > 0 {
            return Err(StoreError::Conflict(
                "Cannot delete a policy used as a permissions boundary.".into(),
            ));
        }
        let versions: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM policy_versions WHERE account_id = ? AND policy_name = ?",
        )
        .bind(account)
        .bind(name)
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        if versions > 1 {
            return Err(StoreError::Conflict(
                "This policy has more than one version. Before you delete a policy, you must delete the policy's versions. The default version is deleted with the policy.".into(),
            ));
        }
        for sql in [
            "DELETE FROM policy_versions WHERE account_id = ? AND policy_name = ?",
            "DELETE FROM tags WHERE account_id = ? AND kind = 'policy' AND owner_name = ?",
            "DELETE FROM managed_policies WHERE account_id = ? AND name = ?",
        ] {
            sqlx::query(sql)
                .bind(account)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn policy_version(
        &self,
        account: &str,
        name: &str,
        version: &str,
    ) -> Result<Option<PolicyVersion>> {
        let row = sqlx::query(
            "SELECT v.*, p.default_version FROM policy_versions v JOIN managed_policies p
               ON p.account_id = v.account_id AND p.name = v.policy_name
             WHERE v.account_id = ? AND v.policy_name = ? AND v.version_id = ?",
        )
        .bind(account)
        .bind(name)
        .bind(version)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.map(|r| {
            let default: String = r.try_get("default_version").map_err(backend)?;
            version_from(&r, &default)
        })
        .transpose()
    }

    async fn policy_versions(&self, account: &str, name: &str) -> Result<Vec<PolicyVersion>> {
        let rows = sqlx::query(
            "SELECT v.*, p.default_version FROM policy_versions v JOIN managed_policies p
               ON p.account_id = v.account_id AND p.name = v.policy_name
             WHERE v.account_id = ? AND v.policy_name = ?
             ORDER BY CAST(substr(v.version_id, 2) AS INTEGER) DESC",
        )
        .bind(account)
        .bind(name)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                let default: String = r.try_get("default_version").map_err(backend)?;
                version_from(r, &default)
            })
            .collect()
    }

    async fn create_policy_version(
        &self,
        account: &str,
        name: &str,
        document: &str,
        set_default: bool,
        now: i64,
        limit: usize,
    ) -> Result<PolicyVersion> {
        let mut tx = self.write_tx().await?;
        let Some(next) = sqlx::query_scalar::<_, i64>(
            "SELECT next_version FROM managed_policies WHERE account_id = ? AND name = ?",
        )
        .bind(account)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?
        else {
            return Err(policy_not_found(account, name));
        };
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM policy_versions WHERE account_id = ? AND policy_name = ?",
        )
        .bind(account)
        .bind(name)
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        if count as usize >= limit {
            return Err(StoreError::LimitExceeded(format!(
                "A managed policy can have up to {limit} versions. Before you create a new version, you must delete an existing version."
            )));
        }
        let version_id = format!("v{next}");
        sqlx::query(
            "INSERT INTO policy_versions (account_id, policy_name, version_id, document, created_at)
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(account)
        .bind(name)
        .bind(&version_id)
        .bind(document)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query(
            "UPDATE managed_policies SET next_version = next_version + 1, updated_at = ?,
                default_version = CASE WHEN ? THEN ? ELSE default_version END
             WHERE account_id = ? AND name = ?",
        )
        .bind(now)
        .bind(set_default)
        .bind(&version_id)
        .bind(account)
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(PolicyVersion {
            version_id,
            document: document.to_string(),
            is_default: set_default,
            created: now,
        })
    }

    async fn set_default_policy_version(
        &self,
        account: &str,
        name: &str,
        version: &str,
        now: i64,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        require_version(&mut tx, account, name, version).await?;
        sqlx::query(
            "UPDATE managed_policies SET default_version = ?, updated_at = ? WHERE account_id = ? AND name = ?",
        )
        .bind(version)
        .bind(now)
        .bind(account)
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn delete_policy_version(&self, account: &str, name: &str, version: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let default = require_version(&mut tx, account, name, version).await?;
        if default == version {
            return Err(StoreError::Conflict(
                "Cannot delete the default version of a policy.".into(),
            ));
        }
        sqlx::query(
            "DELETE FROM policy_versions WHERE account_id = ? AND policy_name = ? AND version_id = ?",
        )
        .bind(account)
        .bind(name)
        .bind(version)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn attach_policy(
        &self,
        account: &str,
        kind: EntityKind,
        owner: &str,
        policy_arn: &str,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        require_entity(&mut tx, account, kind, owner).await?;
        sqlx::query(
            "INSERT OR IGNORE INTO attachments (account_id, kind, owner_name, policy_arn) VALUES (?, ?, ?, ?)",
        )
        .bind(account)
        .bind(kind.as_str())
        .bind(owner)
        .bind(policy_arn)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn detach_policy(
        &self,
        account: &str,
        kind: EntityKind,
        owner: &str,
        policy_arn: &str,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        require_entity(&mut tx, account, kind, owner).await?;
        let r = sqlx::query(
            "DELETE FROM attachments WHERE account_id = ? AND kind = ? AND owner_name = ? AND policy_arn = ?",
        )
        .bind(account)
        .bind(kind.as_str())
        .bind(owner)
        .bind(policy_arn)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "Policy {policy_arn} was not found."
            )));
        }
        tx.commit().await.map_err(backend)
    }

    async fn attached_policies(
        &self,
        account: &str,
        kind: EntityKind,
        owner: &str,
    ) -> Result<Vec<String>> {
        sqlx::query_scalar(
            "SELECT policy_arn FROM attachments WHERE account_id = ? AND kind = ? AND owner_name = ?
             ORDER BY policy_arn",
        )
        .bind(account)
        .bind(kind.as_str())
        .bind(owner)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)
    }

    async fn tag(
        &self,
        account: &str,
        kind: TagTarget,
        owner: &str,
        tags: &[Tag],
        limit: usize,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        put_tags(&mut tx, account, kind, owner, tags).await?;
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM tags WHERE account_id = ? AND kind = ? AND owner_name = ?",
        )
        .bind(account)
        .bind(kind.as_str())
        .bind(owner)
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        if n as usize > limit {
            return Err(StoreError::LimitExceeded(format!(
                "Cannot exceed quota for TagsPer{}: {limit}",
                match kind {
                    TagTarget::User => "User",
                    TagTarget::Role => "Role",
                    TagTarget::Policy => "Policy",
                    TagTarget::Repository => "Repository",
                }
            )));
        }
        tx.commit().await.map_err(backend)
    }

    async fn untag(
        &self,
        account: &str,
        kind: TagTarget,
        owner: &str,
        keys: &[String],
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        for key in keys {
            sqlx::query(
                "DELETE FROM tags WHERE account_id = ? AND kind = ? AND owner_name = ? AND key = ?",
            )
            .bind(account)
            .bind(kind.as_str())
            .bind(owner)
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn tags(&self, account: &str, kind: TagTarget, owner: &str) -> Result<Vec<Tag>> {
        let rows = sqlx::query(
            "SELECT key, value FROM tags WHERE account_id = ? AND kind = ? AND owner_name = ?
             ORDER BY position",
        )
        .bind(account)
        .bind(kind.as_str())
        .bind(owner)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(tag_from).collect()
    }

    async fn identity_documents(
        &self,
        account: &str,
        kind: EntityKind,
        name: &str,
    ) -> Result<IdentityDocuments> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        let Some(entity) =
            sqlx::query("SELECT * FROM entities WHERE account_id = ? AND kind = ? AND name = ?")
                .bind(account)
                .bind(kind.as_str())
                .bind(name)
                .fetch_optional(&mut *conn)
                .await
                .map_err(backend)?
        else {
            return Err(not_found(kind, name));
        };
        let entity = entity_from(&entity)?;
        // Inline and attached policies of the entity and (for users) of its groups.
        let rows = sqlx::query(
            "SELECT ?2 || '/' || ?3 || '/' || policy_name AS source, document FROM inline_policies
               WHERE account_id = ?1 AND kind = ?2 AND owner_name = ?3
             UNION ALL
             SELECT 'group/' || m.group_name || '/' || i.policy_name, i.document
               FROM group_members m JOIN inline_policies i
                 ON i.account_id = m.account_id AND i.kind = 'group' AND i.owner_name = m.group_name
              WHERE ?2 = 'user' AND m.account_id = ?1 AND m.user_name = ?3
             UNION ALL
             SELECT a.policy_arn, v.document FROM attachments a
               JOIN managed_policies p ON 'arn:aws:iam::' || p.account_id || ':policy' || p.path || p.name = a.policy_arn
               JOIN policy_versions v ON v.account_id = p.account_id AND v.policy_name = p.name AND v.version_id = p.default_version
              WHERE a.account_id = ?1 AND ((a.kind = ?2 AND a.owner_name = ?3) OR
                    (?2 = 'user' AND a.kind = 'group' AND a.owner_name IN
                        (SELECT group_name FROM group_members WHERE account_id = ?1 AND user_name = ?3)))",
        )
        .bind(account)
        .bind(kind.as_str())
        .bind(&entity.name)
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
        let mut docs = IdentityDocuments::default();
        for r in rows {
            docs.policies.push(SourcedPolicy {
                source: r.try_get("source").map_err(backend)?,
                document: r.try_get("document").map_err(backend)?,
            });
        }
        if let Some(arn) = &entity.boundary {
            let doc: Option<String> = sqlx::query_scalar(
                "SELECT v.document FROM managed_policies p JOIN policy_versions v
                   ON v.account_id = p.account_id AND v.policy_name = p.name AND v.version_id = p.default_version
                 WHERE 'arn:aws:iam::' || p.account_id || ':policy' || p.path || p.name = ?",
            )
            .bind(arn)
            .fetch_optional(&mut *conn)
            .await
            .map_err(backend)?;
            docs.boundary = doc.map(|document| SourcedPolicy {
                source: arn.clone(),
                document,
            });
        }
        let target = match kind {
            EntityKind::Role => TagTarget::Role,
            _ => TagTarget::User,
        };
        let rows = sqlx::query(
            "SELECT key, value FROM tags WHERE account_id = ? AND kind = ? AND owner_name = ? ORDER BY position",
        )
        .bind(account)
        .bind(target.as_str())
        .bind(&entity.name)
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
        docs.tags = rows.iter().map(tag_from).collect::<Result<_>>()?;
        Ok(docs)
    }
}

fn account_from(row: &SqliteRow) -> Result<Account> {
    Ok(Account {
        id: row.try_get("id").map_err(backend)?,
        alias: row.try_get("alias").map_err(backend)?,
        created: row.try_get("created_at").map_err(backend)?,
    })
}

fn policy_not_found(account: &str, name: &str) -> StoreError {
    StoreError::NotFound(format!(
        "Policy arn:aws:iam::{account}:policy/{name} does not exist or is not attachable."
    ))
}

pub(crate) type Tx = sqlx::Transaction<'static, sqlx::Sqlite>;

async fn insert_key(tx: &mut Tx, sealer: &Sealer, key: &AccessKey) -> Result<()> {
    let secret = sealer.seal(SecretSlot::AccessKey(&key.id), &key.secret)?;
    sqlx::query(
        "INSERT INTO access_keys (access_key_id, secret, account_id, user_name, status, created_at)
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(&key.id)
    .bind(secret)
    .bind(&key.account)
    .bind(&key.user)
    .bind(key.status.as_str())
    .bind(key.created)
    .execute(&mut **tx)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::AlreadyExists(format!("Access key {} already exists.", key.id))
        } else {
            backend(e)
        }
    })?;
    Ok(())
}

async fn require_entity(tx: &mut Tx, account: &str, kind: EntityKind, name: &str) -> Result<()> {
    let found: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM entities WHERE account_id = ? AND kind = ? AND name = ?")
            .bind(account)
            .bind(kind.as_str())
            .bind(name)
            .fetch_optional(&mut **tx)
            .await
            .map_err(backend)?;
    match found {
        Some(_) => Ok(()),
        None => Err(not_found(kind, name)),
    }
}

/// Check a policy version exists; returns the policy's default version id.
async fn require_version(tx: &mut Tx, account: &str, name: &str, version: &str) -> Result<String> {
    let Some(default) = sqlx::query_scalar::<_, String>(
        "SELECT default_version FROM managed_policies WHERE account_id = ? AND name = ?",
    )
    .bind(account)
    .bind(name)
    .fetch_optional(&mut **tx)
    .await
    .map_err(backend)?
    else {
        return Err(policy_not_found(account, name));
    };
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM policy_versions WHERE account_id = ? AND policy_name = ? AND version_id = ?",
    )
    .bind(account)
    .bind(name)
    .bind(version)
    .fetch_optional(&mut **tx)
    .await
    .map_err(backend)?;
    if found.is_none() {
        return Err(StoreError::NotFound(format!(
            "Policy arn:aws:iam::{account}:policy/{name} version {version} does not exist or is not attachable."
        )));
    }
    Ok(default)
}

pub(crate) async fn put_tags(
    tx: &mut Tx,
    account: &str,
    kind: TagTarget,
    owner: &str,
    tags: &[Tag],
) -> Result<()> {
    for t in tags {
        sqlx::query(
            "INSERT INTO tags (account_id, kind, owner_name, key, value, position)
             VALUES (?1, ?2, ?3, ?4, ?5,
                (SELECT COALESCE(MAX(position), 0) + 1 FROM tags WHERE account_id = ?1 AND kind = ?2 AND owner_name = ?3))
             ON CONFLICT (account_id, kind, owner_name, key) DO UPDATE SET value = excluded.value",
        )
        .bind(account)
        .bind(kind.as_str())
        .bind(owner)
        .bind(&t.key)
        .bind(&t.value)
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
    }
    Ok(())
}
