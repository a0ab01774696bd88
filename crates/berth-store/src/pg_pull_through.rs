//! Pull-through caching's tables on PostgreSQL (see [`crate::pull_through`]): the cache
//! rules, kept as creation templates are, and the upstream credentials, their secrets
//! sealed. Lists are in byte order (`COLLATE "C"`), as on SQLite.

use sqlx::postgres::PgRow;
use sqlx::Row;

use crate::pg::PgStore;
use crate::pg_registry::{backend, LOCK_OR_INSERT_TRIES};
use crate::pull_through::{PullThroughStore, UpstreamCredential};
use crate::registry::{RegistryError, RegistryKey, RegistryResult};
use crate::replication::{TemplateWrite, PULL_THROUGH_RULES};
use crate::sealer::SecretSlot;

type Result<T> = RegistryResult<T>;

fn credential_from(r: &PgRow) -> Result<UpstreamCredential> {
    Ok(UpstreamCredential {
        arn: r.try_get("arn").map_err(backend)?,
        name: r.try_get("name").map_err(backend)?,
        username: r.try_get("username").map_err(backend)?,
        created_at: r.try_get("created_at").map_err(backend)?,
        updated_at: r.try_get("updated_at").map_err(backend)?,
    })
}

#[async_trait::async_trait]
impl PullThroughStore for PgStore {
    async fn pull_through_rules(&self, registry: RegistryKey<'_>) -> Result<Vec<String>> {
        self.prefixed_docs(PULL_THROUGH_RULES, registry).await
    }

    async fn put_pull_through_rule(
        &self,
        registry: RegistryKey<'_>,
        prefix: &str,
        rule: &str,
        write: TemplateWrite,
    ) -> Result<bool> {
        self.put_prefixed_doc(PULL_THROUGH_RULES, registry, prefix, rule, write)
            .await
    }

    async fn delete_pull_through_rule(
        &self,
        registry: RegistryKey<'_>,
        prefix: &str,
    ) -> Result<Option<String>> {
        self.delete_prefixed_doc(PULL_THROUGH_RULES, registry, prefix)
            .await
    }

    /// Without a transaction: the stored row's ARN is read, the secret sealed for it, and
    /// the row updated only if it still has that ARN; or, with no row, one inserted unless
    /// another writer inserted it meanwhile. A step that finds the row changed under it
    /// starts over (each further try needs another writer to have inserted or deleted the
    /// row meanwhile).
    async fn put_upstream_credential(
        &self,
        registry: RegistryKey<'_>,
        name: &str,
        arn: &str,
        username: &str,
        secret: &str,
        now: i64,
    ) -> Result<UpstreamCredential> {
        let sealer = self.sealer();
        let key = registry.stored_account();
        for _ in 0..LOCK_OR_INSERT_TRIES {
            let stored: Option<String> = sqlx::query_scalar(
                "SELECT arn FROM upstream_credentials WHERE registry = $1 AND name = $2",
            )
            .bind(&*key)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
            let row = match stored {
                Some(arn) => sqlx::query(
                    "UPDATE upstream_credentials SET username = $1, secret = $2, updated_at = $3
                     WHERE registry = $4 AND name = $5 AND arn = $6
                     RETURNING arn, name, username, created_at, updated_at",
                )
                .bind(username)
                .bind(sealer.seal(SecretSlot::UpstreamCredential(&arn), secret)?)
                .bind(now)
                .bind(&*key)
                .bind(name)
                .bind(&arn),
                None => sqlx::query(
                    "INSERT INTO upstream_credentials
                        (registry, name, arn, username, secret, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $6)
                     ON CONFLICT (registry, name) DO NOTHING
                     RETURNING arn, name, username, created_at, updated_at",
                )
                .bind(&*key)
                .bind(name)
                .bind(arn)
                .bind(username)
                .bind(sealer.seal(SecretSlot::UpstreamCredential(arn), secret)?)
                .bind(now),
            }
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
            if let Some(row) = row {
                return credential_from(&row);
            }
        }
        Err(RegistryError::Backend(format!(
            "the upstream credential {name} kept changing while it was being written"
        )))
    }

    async fn upstream_credentials(
        &self,
        registry: RegistryKey<'_>,
    ) -> Result<Vec<UpstreamCredential>> {
        sqlx::query(
            "SELECT arn, name, username, created_at, updated_at FROM upstream_credentials
             WHERE registry = $1 ORDER BY name COLLATE \"C\"",
        )
        .bind(&*registry.stored_account())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(credential_from)
        .collect()
    }

    async fn upstream_credential_secret(
        &self,
        registry: RegistryKey<'_>,
        name: &str,
    ) -> Result<Option<(UpstreamCredential, String)>> {
        let row = sqlx::query(
            "SELECT arn, name, username, created_at, updated_at, secret FROM upstream_credentials
             WHERE registry = $1 AND name = $2",
        )
        .bind(&*registry.stored_account())
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let credential = credential_from(&row)?;
        let stored: String = row.try_get("secret").map_err(backend)?;
        let secret = self
            .sealer()
            .open(SecretSlot::UpstreamCredential(&credential.arn), &stored)?;
        Ok(Some((credential, secret)))
    }

    async fn delete_upstream_credential(
        &self,
        registry: RegistryKey<'_>,
        name: &str,
    ) -> Result<bool> {
        let done =
            sqlx::query("DELETE FROM upstream_credentials WHERE registry = $1 AND name = $2")
                .bind(&*registry.stored_account())
                .bind(name)
                .execute(&self.pool)
                .await
                .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn claim_upstream_check(
        &self,
        registry: RegistryKey<'_>,
        repository: &str,
        tag: &str,
        now: i64,
        stale_at: i64,
    ) -> Result<Option<i64>> {
        let key = registry.stored_account();
        let claimed: Option<i64> = sqlx::query_scalar(
            "INSERT INTO pull_through_checks (registry, repository, tag, checked_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (registry, repository, tag) DO UPDATE SET checked_at = excluded.checked_at
             WHERE pull_through_checks.checked_at <= $5
             RETURNING checked_at",
        )
        .bind(&*key)
        .bind(repository)
        .bind(tag)
        .bind(now)
        .bind(stale_at)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        if claimed.is_some() {
            return Ok(None);
        }
        let at: Option<i64> = sqlx::query_scalar(
            "SELECT checked_at FROM pull_through_checks WHERE registry = $1 AND repository = $2 AND tag = $3",
        )
        .bind(&*key)
        .bind(repository)
        .bind(tag)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        // (Rows are never removed: the one the claim found is there.)
        Ok(Some(at.unwrap_or(now)))
    }

    async fn set_upstream_check(
        &self,
        registry: RegistryKey<'_>,
        repository: &str,
        tag: &str,
        at: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO pull_through_checks (registry, repository, tag, checked_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (registry, repository, tag) DO UPDATE SET checked_at = excluded.checked_at",
        )
        .bind(&*registry.stored_account())
        .bind(repository)
        .bind(tag)
        .bind(at)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }
}
