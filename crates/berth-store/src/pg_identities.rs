//! The identities on PostgreSQL: accounts, access keys, STS sessions, users, groups and
//! roles, their policies, attachments and tags. The twin of the SQLite [`Store`] in
//! `sqlite.rs`: the same answers, errors, orderings and limits; secrets sealed in the same
//! slots, so a sealed value reads the same from either backend.
//!
//! Several nodes write at once, each transaction at PostgreSQL's READ COMMITTED (every
//! statement sees what was committed before it began), not behind SQLite's single writer.
//! Where SQLite's answer depends on nothing changing between a check and a write, the
//! transaction first takes a lock that makes the others wait, and checks after it:
//!
//! - an entity's row is locked for update by `delete_entity`, and for key share by what
//!   adds something to an entity (a policy, an attachment, a membership, an access key),
//!   so the delete either sees what was added, or happens first and the adder finds no
//!   entity;
//! - a managed policy's row is locked for update by what reads and changes its versions
//!   (numbering from `next_version`, the version limit, the default version) and by
//!   `delete_policy`;
//! - counts against a limit whose owner may have no row (the access keys of a user or of
//!   the root user, the tags of a user, role, policy or repository) are made under a
//!   transaction-scoped advisory lock on that owner ([`lock_owner`]);
//! - creating what must not exist twice relies on the primary and unique keys (a second
//!   insert waits for the first and fails as a unique violation, answered as SQLite
//!   answers it) or on `ON CONFLICT`.
//!
//! Reads of more than one statement run in one REPEATABLE READ READ ONLY transaction, so
//! they see one moment.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::Row;

use crate::model::*;
use crate::pg::{backend, PgStore};
use crate::sealer::{Sealer, SecretSlot};
use crate::{Result, Store, StoreError};

pub(crate) type PgTx = sqlx::Transaction<'static, sqlx::Postgres>;

/// The first key of the advisory locks [`lock_owner`] takes. Advisory locks of two 32-bit
/// keys are a key space apart from those of one 64-bit key (which sqlx's migrator takes).
const OWNER_LOCK_CLASS: i32 = 0x4245_5254;

/// A managed policy's ARN from its row `p`. As on SQLite, ARNs compare byte for byte:
/// the name's case-insensitive collation would otherwise carry over to the whole ARN, so
/// the expression takes the database's default collation (always deterministic: equal
/// only when the bytes are), which the ARN columns and their indexes have; the expression
/// is indexed as `managed_policies_by_arn`.
const POLICY_ARN: &str =
    "('arn:aws:iam::' || p.account_id || ':policy' || p.path || p.name) COLLATE \"default\"";

/// The numeric part of a version id (`v12` → 12), 0 when there is none (SQLite's cast).
const VERSION_NUMBER: &str =
    "COALESCE(CAST(substring(v.version_id FROM '^.([0-9]{1,18})') AS BIGINT), 0)";

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

fn entity_from(row: &PgRow) -> Result<Entity> {
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

fn policy_from(row: &PgRow) -> Result<ManagedPolicy> {
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

fn version_from(row: &PgRow) -> Result<PolicyVersion> {
    let version_id: String = row.try_get("version_id").map_err(backend)?;
    let default: String = row.try_get("default_version").map_err(backend)?;
    Ok(PolicyVersion {
        is_default: version_id == default,
        version_id,
        document: row.try_get("document").map_err(backend)?,
        created: row.try_get("created_at").map_err(backend)?,
    })
}

fn tag_from(row: &PgRow) -> Result<Tag> {
    Ok(Tag {
        key: row.try_get("key").map_err(backend)?,
        value: row.try_get("value").map_err(backend)?,
    })
}

fn account_from(row: &PgRow) -> Result<Account> {
    Ok(Account {
        id: row.try_get("id").map_err(backend)?,
        alias: row.try_get("alias").map_err(backend)?,
        created: row.try_get("created_at").map_err(backend)?,
    })
}

/// A managed policy with its usage counts.
fn policy_select() -> String {
    format!(
        "SELECT p.*,
            (SELECT COUNT(*) FROM attachments a WHERE a.policy_arn = {POLICY_ARN}) AS attachment_count,
            (SELECT COUNT(*) FROM entities e WHERE e.boundary_arn = {POLICY_ARN}) AS boundary_usage_count
         FROM managed_policies p"
    )
}

fn not_found(kind: EntityKind, name: &str) -> StoreError {
    StoreError::NotFound(format!(
        "The {} with name {name} cannot be found.",
        kind.as_str()
    ))
}

fn policy_not_found(account: &str, name: &str) -> StoreError {
    StoreError::NotFound(format!(
        "Policy arn:aws:iam::{account}:policy/{name} does not exist or is not attachable."
    ))
}

fn key_not_found(id: &str) -> StoreError {
    StoreError::NotFound(format!("The Access Key with id {id} cannot be found."))
}

/// The condition on `access_keys.user_name` for a key's owner, a user or the root user
/// (`NULL`), and the argument to bind as parameter `$n`.
fn owner_sql(user: Option<&str>, n: usize) -> (String, &str) {
    match user {
        Some(u) => (format!("user_name = ${n}"), u),
        None => (format!("user_name IS NULL AND ${n} = ''"), ""),
    }
}

/// The target the tags of an entity are kept under.
fn tag_target(kind: EntityKind) -> TagTarget {
    match kind {
        EntityKind::Role => TagTarget::Role,
        _ => TagTarget::User,
    }
}

/// Wait for, then hold until the transaction ends, the lock on what `account`'s
/// `owner` of `what` (`access_keys`, or a tag target) counts against a limit. Owners
/// that differ only by case are one owner, as the names are (IAM names are ASCII; two
/// owners sharing a hash merely wait for each other).
async fn lock_owner(tx: &mut PgTx, account: &str, what: &str, owner: &str) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(OWNER_LOCK_CLASS)
        .bind(format!(
            "{account}\u{1f}{what}\u{1f}{}",
            owner.to_lowercase()
        ))
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
    Ok(())
}

/// Require an entity and hold a key-share lock on its row until the transaction ends: a
/// concurrent `delete_entity` (which locks the row for update) waits for this transaction
/// and then sees what it added, or deleted it first and this finds no entity.
async fn require_entity(tx: &mut PgTx, account: &str, kind: EntityKind, name: &str) -> Result<()> {
    let found: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM entities WHERE account_id = $1 AND kind = $2 AND name = $3 FOR KEY SHARE",
    )
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

/// Lock a managed policy's row for update; its default version, or `None` if there is
/// no such policy.
async fn lock_policy(tx: &mut PgTx, account: &str, name: &str) -> Result<Option<(String, i64)>> {
    sqlx::query_as(
        "SELECT default_version, next_version FROM managed_policies
         WHERE account_id = $1 AND name = $2 FOR UPDATE",
    )
    .bind(account)
    .bind(name)
    .fetch_optional(&mut **tx)
    .await
    .map_err(backend)
}

/// Check a policy version exists, with the policy's row locked for update; returns the
/// policy's default version id.
async fn require_version(
    tx: &mut PgTx,
    account: &str,
    name: &str,
    version: &str,
) -> Result<String> {
    let Some((default, _)) = lock_policy(tx, account, name).await? else {
        return Err(policy_not_found(account, name));
    };
    let found: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM policy_versions WHERE account_id = $1 AND policy_name = $2 AND version_id = $3",
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

async fn insert_key(tx: &mut PgTx, sealer: &Sealer, key: &AccessKey) -> Result<()> {
    let secret = sealer.seal(SecretSlot::AccessKey(&key.id), &key.secret)?;
    sqlx::query(
        "INSERT INTO access_keys (access_key_id, secret, account_id, user_name, status, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
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

/// Add or replace tags of an owner, new keys after the existing ones. Takes the owner's
/// lock ([`lock_owner`]), so the positions it hands out and a count made after it in the
/// same transaction are not raced by another tagger of the same owner.
pub(crate) async fn put_tags(
    tx: &mut PgTx,
    account: &str,
    kind: TagTarget,
    owner: &str,
    tags: &[Tag],
) -> Result<()> {
    if tags.is_empty() {
        return Ok(());
    }
    lock_owner(tx, account, kind.as_str(), owner).await?;
    for t in tags {
        sqlx::query(
            "INSERT INTO tags (account_id, kind, owner_name, key, value, position)
             VALUES ($1, $2, $3, $4, $5,
                (SELECT COALESCE(MAX(position), 0) + 1 FROM tags WHERE account_id = $1 AND kind = $2 AND owner_name = $3))
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

impl PgStore {
    async fn write_tx(&self) -> Result<PgTx> {
        self.pool.begin().await.map_err(backend)
    }

    /// A transaction that reads one moment and writes nothing.
    async fn read_tx(&self) -> Result<PgTx> {
        self.pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(backend)
    }

    fn key_from(&self, row: &PgRow) -> Result<AccessKey> {
        let status: &str = row.try_get("status").map_err(backend)?;
        let id: String = row.try_get("access_key_id").map_err(backend)?;
        let stored: String = row.try_get("secret").map_err(backend)?;
        Ok(AccessKey {
            secret: self.sealer().open(SecretSlot::AccessKey(&id), &stored)?,
            id,
            account: row.try_get("account_id").map_err(backend)?,
            user: row.try_get("user_name").map_err(backend)?,
            status: KeyStatus::parse(status).unwrap_or(KeyStatus::Inactive),
            created: row.try_get("created_at").map_err(backend)?,
        })
    }
}

#[async_trait]
impl Store for PgStore {
    async fn check_schema(&self) -> Result<()> {
        PgStore::check_schema(self).await
    }

    async fn create_account(&self, account: &Account, root_key: &AccessKey) -> Result<()> {
        // The primary key and the alias's unique key settle concurrent creations.
        let mut tx = self.write_tx().await?;
        let r = sqlx::query("INSERT INTO accounts (id, alias, created_at) VALUES ($1, $2, $3)")
            .bind(&account.id)
            .bind(&account.alias)
            .bind(account.created)
            .execute(&mut *tx)
            .await;
        if let Err(e) = r {
            return Err(if is_unique_violation(&e) {
                // Name what clashed: the alias the user gave, or the id.
                let alias_clash = e
                    .as_database_error()
                    .and_then(|d| d.constraint())
                    .is_some_and(|c| c == "accounts_alias_key");
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
        insert_key(&mut tx, self.sealer(), root_key).await?;
        tx.commit().await.map_err(backend)
    }

    async fn account(&self, id: &str) -> Result<Option<Account>> {
        let row = sqlx::query("SELECT * FROM accounts WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(|r| account_from(&r)).transpose()
    }

    async fn accounts(&self) -> Result<Vec<Account>> {
        let rows = sqlx::query("SELECT * FROM accounts ORDER BY created_at, id COLLATE \"C\"")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(account_from).collect()
    }

    async fn access_key(&self, id: &str) -> Result<Option<AccessKey>> {
        let row = sqlx::query("SELECT * FROM access_keys WHERE access_key_id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(|r| self.key_from(&r)).transpose()
    }

    async fn create_access_key(&self, key: &AccessKey, limit: usize) -> Result<()> {
        // Count then insert under the owner's advisory lock: creators of keys of one owner
        // take turns. A user's row is also key-share locked, so a concurrent delete of the
        // user sees the key (or came first; as on SQLite, the user need not exist).
        let mut tx = self.write_tx().await?;
        lock_owner(
            &mut tx,
            &key.account,
            "access_keys",
            key.user.as_deref().unwrap_or(""),
        )
        .await?;
        if let Some(user) = &key.user {
            sqlx::query(
                "SELECT 1 FROM entities WHERE account_id = $1 AND kind = 'user' AND name = $2
                 FOR KEY SHARE",
            )
            .bind(&key.account)
            .bind(user)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
        }
        let (cond, owner) = owner_sql(key.user.as_deref(), 2);
        let sql = format!("SELECT COUNT(*) FROM access_keys WHERE account_id = $1 AND {cond}");
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
        insert_key(&mut tx, self.sealer(), key).await?;
        tx.commit().await.map_err(backend)
    }

    async fn access_keys(&self, account: &str, user: Option<&str>) -> Result<Vec<AccessKey>> {
        let (cond, owner) = owner_sql(user, 2);
        let sql = format!(
            "SELECT * FROM access_keys WHERE account_id = $1 AND {cond}
             ORDER BY created_at, access_key_id COLLATE \"C\""
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
        let (cond, owner) = owner_sql(user, 3);
        let sql = format!(
            "UPDATE access_keys SET status = $4 WHERE access_key_id = $2 AND account_id = $1 AND {cond}"
        );
        let r = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(id)
            .bind(owner)
            .bind(status.as_str())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        if r.rows_affected() == 0 {
            return Err(key_not_found(id));
        }
        Ok(())
    }

    async fn delete_access_key(&self, account: &str, user: Option<&str>, id: &str) -> Result<()> {
        let (cond, owner) = owner_sql(user, 3);
        let sql = format!(
            "DELETE FROM access_keys WHERE access_key_id = $2 AND account_id = $1 AND {cond}"
        );
        let r = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(id)
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        if r.rows_affected() == 0 {
            return Err(key_not_found(id));
        }
        Ok(())
    }

    async fn create_session(&self, s: &Session) -> Result<()> {
        let secret = self
            .sealer()
            .seal(SecretSlot::Session(&s.access_key_id), &s.secret)?;
        sqlx::query(
            "INSERT INTO sessions (access_key_id, secret, token, account_id, claims, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
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
        let row = sqlx::query("SELECT * FROM sessions WHERE access_key_id = $1")
            .bind(access_key_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(|r| {
            let id: String = r.try_get("access_key_id").map_err(backend)?;
            let stored: String = r.try_get("secret").map_err(backend)?;
            Ok(Session {
                secret: self.sealer().open(SecretSlot::Session(&id), &stored)?,
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
        let r = sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(r.rows_affected())
    }

    async fn create_entity(&self, e: &Entity, tags: &[Tag]) -> Result<()> {
        // The primary key (case-insensitive name) settles concurrent creations: the
        // second insert waits for the first transaction and fails if it committed.
        let mut tx = self.write_tx().await?;
        let r = sqlx::query(
            "INSERT INTO entities (account_id, kind, name, path, unique_id, created_at, trust_policy,
                description, max_session_secs, boundary_arn) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
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
        put_tags(&mut tx, &e.account, tag_target(e.kind), &e.name, tags).await?;
        tx.commit().await.map_err(backend)
    }

    async fn entity(&self, account: &str, kind: EntityKind, name: &str) -> Result<Option<Entity>> {
        let row =
            sqlx::query("SELECT * FROM entities WHERE account_id = $1 AND kind = $2 AND name = $3")
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
        // Ordered as SQLite's NOCASE orders: bytes, with ASCII letters folded to lower case.
        let rows = sqlx::query(
            "SELECT * FROM entities WHERE account_id = $1 AND kind = $2 AND starts_with(path, $3)
             ORDER BY lower(name COLLATE \"C\")",
        )
        .bind(account)
        .bind(kind.as_str())
        .bind(path_prefix)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(entity_from).collect()
    }

    async fn delete_entity(&self, account: &str, kind: EntityKind, name: &str) -> Result<()> {
        // The row locked for update first: whoever adds to the entity holds a key-share
        // lock on it (see require_entity), so the checks below run after they committed,
        // and nobody adds after them.
        let mut tx = self.write_tx().await?;
        let exists: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM entities WHERE account_id = $1 AND kind = $2 AND name = $3 FOR UPDATE",
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
                "SELECT COUNT(*) FROM inline_policies WHERE account_id = $1 AND kind = $2 AND owner_name = $3",
                "Cannot delete entity, must delete policies first.",
            ),
            (
                "SELECT COUNT(*) FROM attachments WHERE account_id = $1 AND kind = $2 AND owner_name = $3",
                "Cannot delete entity, must detach all policies first.",
            ),
            (
                "SELECT COUNT(*) FROM access_keys WHERE account_id = $1 AND $2 = 'user' AND user_name = $3",
                "Cannot delete entity, must delete access keys first.",
            ),
            (
                "SELECT COUNT(*) FROM login_profiles WHERE account_id = $1 AND $2 = 'user' AND user_name = $3",
                "Cannot delete entity, must delete login profile first.",
            ),
            (
                "SELECT COUNT(*) FROM group_members WHERE account_id = $1 AND (($2 = 'user' AND user_name = $3) OR ($2 = 'group' AND group_name = $3))",
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
        sqlx::query("DELETE FROM tags WHERE account_id = $1 AND kind = $2 AND owner_name = $3")
            .bind(account)
            .bind(kind.as_str())
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query("DELETE FROM entities WHERE account_id = $1 AND kind = $2 AND name = $3")
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
            "UPDATE entities SET description = $1, max_session_secs = $2
             WHERE account_id = $3 AND kind = 'role' AND name = $4",
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
            "UPDATE entities SET trust_policy = $1 WHERE account_id = $2 AND kind = 'role' AND name = $3",
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
            "UPDATE entities SET boundary_arn = $1 WHERE account_id = $2 AND kind = $3 AND name = $4",
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
             FROM login_profiles WHERE account_id = $1 AND user_name = $2",
        )
        .bind(account)
        .bind(user)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        Ok(row.map(crate::sqlite::login_profile_from))
    }

    async fn put_login_profile(&self, p: &LoginProfile, create: bool) -> Result<()> {
        let mut tx = self.write_tx().await?;
        // The user's row key-share locked (see delete_entity): a user being deleted
        // cannot get a profile behind its back.
        require_entity(&mut tx, &p.account, EntityKind::User, &p.user).await?;
        let had: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM login_profiles WHERE account_id = $1 AND user_name = $2 FOR UPDATE",
        )
        .bind(&p.account)
        .bind(&p.user)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        match (create, had.is_some()) {
            (true, true) => return Err(crate::sqlite::profile_exists(&p.user)),
            (false, false) => return Err(crate::sqlite::no_profile(&p.user)),
            _ => {}
        }
        let r = sqlx::query(
            "INSERT INTO login_profiles
             (account_id, user_name, password_hash, created_at, changed_at, reset_required)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (account_id, user_name) DO UPDATE SET password_hash = excluded.password_hash,
               changed_at = excluded.changed_at, reset_required = excluded.reset_required",
        )
        .bind(&p.account)
        .bind(&p.user)
        .bind(&p.password_hash)
        .bind(p.created)
        .bind(p.changed)
        .bind(p.reset_required)
        .execute(&mut *tx)
        .await;
        match r {
            Ok(_) => tx.commit().await.map_err(backend),
            // Two creates at once: the second finds the first's row.
            Err(e) if create && is_unique_violation(&e) => {
                Err(crate::sqlite::profile_exists(&p.user))
            }
            Err(e) => Err(backend(e)),
        }
    }

    async fn delete_login_profile(&self, account: &str, user: &str) -> Result<()> {
        let r = sqlx::query("DELETE FROM login_profiles WHERE account_id = $1 AND user_name = $2")
            .bind(account)
            .bind(user)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        if r.rows_affected() == 0 {
            return Err(crate::sqlite::no_profile(user));
        }
        Ok(())
    }

    async fn password_policy(&self, account: &str) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT policy FROM password_policies WHERE account_id = $1")
            .bind(account)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)
    }

    async fn set_password_policy(&self, account: &str, policy: Option<&str>) -> Result<()> {
        let r = match policy {
            Some(p) => sqlx::query(
                "INSERT INTO password_policies (account_id, policy) VALUES ($1, $2)
                 ON CONFLICT (account_id) DO UPDATE SET policy = excluded.policy",
            )
            .bind(account)
            .bind(p),
            None => {
                sqlx::query("DELETE FROM password_policies WHERE account_id = $1").bind(account)
            }
        }
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        if policy.is_none() && r.rows_affected() == 0 {
            return Err(crate::sqlite::no_password_policy(account));
        }
        Ok(())
    }

    async fn add_user_to_group(&self, account: &str, group: &str, user: &str) -> Result<()> {
        // Both rows key-share locked (see require_entity); ON CONFLICT makes a repeated
        // or concurrent add of the same membership a no-op.
        let mut tx = self.write_tx().await?;
        require_entity(&mut tx, account, EntityKind::Group, group).await?;
        require_entity(&mut tx, account, EntityKind::User, user).await?;
        sqlx::query(
            "INSERT INTO group_members (account_id, group_name, user_name) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
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
            "DELETE FROM group_members WHERE account_id = $1 AND group_name = $2 AND user_name = $3",
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
             WHERE e.account_id = $1 AND e.kind = 'group' AND m.user_name = $2
             ORDER BY lower(e.name COLLATE \"C\")",
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
             WHERE e.account_id = $1 AND e.kind = 'user' AND m.group_name = $2
             ORDER BY lower(e.name COLLATE \"C\")",
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
             VALUES ($1, $2, $3, $4, $5)
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
             WHERE account_id = $1 AND kind = $2 AND owner_name = $3 AND policy_name = $4",
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
             WHERE account_id = $1 AND kind = $2 AND owner_name = $3 AND policy_name = $4",
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
            "SELECT policy_name FROM inline_policies WHERE account_id = $1 AND kind = $2 AND owner_name = $3
             ORDER BY lower(policy_name COLLATE \"C\")",
        )
        .bind(account)
        .bind(kind.as_str())
        .bind(owner)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)
    }

    async fn create_policy(&self, p: &ManagedPolicy, document: &str, tags: &[Tag]) -> Result<()> {
        // The primary key (case-insensitive name) settles concurrent creations.
        let mut tx = self.write_tx().await?;
        let r = sqlx::query(
            "INSERT INTO managed_policies (account_id, name, path, policy_id, default_version, next_version,
                description, created_at, updated_at) VALUES ($1, $2, $3, $4, 'v1', 2, $5, $6, $7)",
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
             VALUES ($1, $2, 'v1', $3, $4)",
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
        // The upsert locks the policy's row (inserted or updated), so nodes installing the
        // catalog at once take turns on each policy.
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO managed_policies (account_id, name, path, policy_id, default_version, next_version,
                description, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $8)
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
        sqlx::query(
            "DELETE FROM policy_versions WHERE account_id = $1 AND policy_name = $2 AND version_id <> $3",
        )
        .bind(&p.account)
        .bind(&p.name)
        .bind(&p.default_version)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query(
            "INSERT INTO policy_versions (account_id, policy_name, version_id, document, created_at)
             VALUES ($1, $2, $3, $4, $5)
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
        let mut tx = self.read_tx().await?;
        let attached = sqlx::query(
            "SELECT e.* FROM attachments a JOIN entities e
               ON e.account_id = a.account_id AND e.kind = a.kind AND e.name = a.owner_name
             WHERE a.account_id = $1 AND a.policy_arn = $2
             ORDER BY lower(e.name COLLATE \"C\"), e.kind",
        )
        .bind(account)
        .bind(policy_arn)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        let bounded = sqlx::query(
            "SELECT * FROM entities WHERE account_id = $1 AND boundary_arn = $2
             ORDER BY lower(name COLLATE \"C\"), kind",
        )
        .bind(account)
        .bind(policy_arn)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok((
            attached.iter().map(entity_from).collect::<Result<_>>()?,
            bounded.iter().map(entity_from).collect::<Result<_>>()?,
        ))
    }

    async fn policy_usage_in(&self, account: &str, policy_arn: &str) -> Result<(i64, i64)> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM attachments WHERE account_id = $1 AND policy_arn = $2) AS a,
                    (SELECT COUNT(*) FROM entities WHERE account_id = $1 AND boundary_arn = $2) AS b",
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
        let sql = format!(
            "{} WHERE p.account_id = $1 AND p.name = $2",
            policy_select()
        );
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
            "{} WHERE p.account_id = $1 AND starts_with(p.path, $2)
             ORDER BY lower(p.name COLLATE \"C\")",
            policy_select()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(path_prefix)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(policy_from).collect()
    }

    async fn delete_policy(&self, account: &str, name: &str) -> Result<()> {
        // The policy's row locked for update first: version changes wait, and the checks
        // below see every version committed before.
        let mut tx = self.write_tx().await?;
        if lock_policy(&mut tx, account, name).await?.is_none() {
            return Err(policy_not_found(account, name));
        }
        let sql = format!(
            "{} WHERE p.account_id = $1 AND p.name = $2",
            policy_select()
        );
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
            "SELECT COUNT(*) FROM policy_versions WHERE account_id = $1 AND policy_name = $2",
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
            "DELETE FROM policy_versions WHERE account_id = $1 AND policy_name = $2",
            "DELETE FROM tags WHERE account_id = $1 AND kind = 'policy' AND owner_name = $2",
            "DELETE FROM managed_policies WHERE account_id = $1 AND name = $2",
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
             WHERE v.account_id = $1 AND v.policy_name = $2 AND v.version_id = $3",
        )
        .bind(account)
        .bind(name)
        .bind(version)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.map(|r| version_from(&r)).transpose()
    }

    async fn policy_versions(&self, account: &str, name: &str) -> Result<Vec<PolicyVersion>> {
        let sql = format!(
            "SELECT v.*, p.default_version FROM policy_versions v JOIN managed_policies p
               ON p.account_id = v.account_id AND p.name = v.policy_name
             WHERE v.account_id = $1 AND v.policy_name = $2
             ORDER BY {VERSION_NUMBER} DESC"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(name)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(version_from).collect()
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
        // The policy's row locked for update: creators of versions take turns, each
        // numbering from the next_version and counting what the one before committed.
        let mut tx = self.write_tx().await?;
        let Some((_, next)) = lock_policy(&mut tx, account, name).await? else {
            return Err(policy_not_found(account, name));
        };
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM policy_versions WHERE account_id = $1 AND policy_name = $2",
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
             VALUES ($1, $2, $3, $4, $5)",
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
            "UPDATE managed_policies SET next_version = next_version + 1, updated_at = $1,
                default_version = CASE WHEN $2 THEN $3 ELSE default_version END
             WHERE account_id = $4 AND name = $5",
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
        // require_version locks the policy's row: a concurrent delete of this version
        // either comes first (and this finds no version) or sees it is the default.
        let mut tx = self.write_tx().await?;
        require_version(&mut tx, account, name, version).await?;
        sqlx::query(
            "UPDATE managed_policies SET default_version = $1, updated_at = $2 WHERE account_id = $3 AND name = $4",
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
            "DELETE FROM policy_versions WHERE account_id = $1 AND policy_name = $2 AND version_id = $3",
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
        // The entity's row key-share locked (see require_entity); ON CONFLICT makes a
        // repeated or concurrent attachment a no-op.
        let mut tx = self.write_tx().await?;
        require_entity(&mut tx, account, kind, owner).await?;
        sqlx::query(
            "INSERT INTO attachments (account_id, kind, owner_name, policy_arn) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
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
            "DELETE FROM attachments WHERE account_id = $1 AND kind = $2 AND owner_name = $3 AND policy_arn = $4",
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
            "SELECT policy_arn FROM attachments WHERE account_id = $1 AND kind = $2 AND owner_name = $3
             ORDER BY policy_arn COLLATE \"C\"",
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
        // put_tags takes the owner's advisory lock: taggers of one owner take turns, and
        // the count sees what the one before committed.
        let mut tx = self.write_tx().await?;
        put_tags(&mut tx, account, kind, owner, tags).await?;
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM tags WHERE account_id = $1 AND kind = $2 AND owner_name = $3",
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
                "DELETE FROM tags WHERE account_id = $1 AND kind = $2 AND owner_name = $3 AND key = $4",
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
            "SELECT key, value FROM tags WHERE account_id = $1 AND kind = $2 AND owner_name = $3
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
        let mut tx = self.read_tx().await?;
        let Some(entity) =
            sqlx::query("SELECT * FROM entities WHERE account_id = $1 AND kind = $2 AND name = $3")
                .bind(account)
                .bind(kind.as_str())
                .bind(name)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?
        else {
            return Err(not_found(kind, name));
        };
        let entity = entity_from(&entity)?;
        // Inline and attached policies of the entity and (for users) of its groups.
        let sql = format!(
            "SELECT $2 || '/' || $3 || '/' || policy_name AS source, document FROM inline_policies
               WHERE account_id = $1 AND kind = $2 AND owner_name = $3
             UNION ALL
             SELECT 'group/' || m.group_name || '/' || i.policy_name, i.document
               FROM group_members m JOIN inline_policies i
                 ON i.account_id = m.account_id AND i.kind = 'group' AND i.owner_name = m.group_name
              WHERE $2 = 'user' AND m.account_id = $1 AND m.user_name = $3
             UNION ALL
             SELECT a.policy_arn, v.document FROM attachments a
               JOIN managed_policies p ON {POLICY_ARN} = a.policy_arn
               JOIN policy_versions v ON v.account_id = p.account_id AND v.policy_name = p.name AND v.version_id = p.default_version
              WHERE a.account_id = $1 AND ((a.kind = $2 AND a.owner_name = $3) OR
                    ($2 = 'user' AND a.kind = 'group' AND a.owner_name IN
                        (SELECT group_name FROM group_members WHERE account_id = $1 AND user_name = $3)))"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(kind.as_str())
            .bind(&entity.name)
            .fetch_all(&mut *tx)
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
            let sql = format!(
                "SELECT v.document FROM managed_policies p JOIN policy_versions v
                   ON v.account_id = p.account_id AND v.policy_name = p.name AND v.version_id = p.default_version
                 WHERE {POLICY_ARN} = $1"
            );
            let doc: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(arn)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
            docs.boundary = doc.map(|document| SourcedPolicy {
                source: arn.clone(),
                document,
            });
        }
        let rows = sqlx::query(
            "SELECT key, value FROM tags WHERE account_id = $1 AND kind = $2 AND owner_name = $3 ORDER BY position",
        )
        .bind(account)
        .bind(tag_target(kind).as_str())
        .bind(&entity.name)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        docs.tags = rows.iter().map(tag_from).collect::<Result<_>>()?;
        tx.commit().await.map_err(backend)?;
        Ok(docs)
    }
}
