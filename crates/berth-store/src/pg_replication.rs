//! Replication's tables on PostgreSQL (see [`crate::replication`]): configurations,
//! creation templates and the outbox. The trait methods in `pg_registry.rs` call these.

use crate::pg::PgStore;
use crate::registry::{RegistryError, RegistryKey, RegistryResult};
use crate::replication::*;

type Result<T> = RegistryResult<T>;
type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

/// A database error: `Unavailable` while PostgreSQL cannot be reached (callers answer
/// 503 and retry), else `Backend`.
fn backend(e: sqlx::Error) -> RegistryError {
    crate::pg_registry::backend(e)
}

/// Write outbox rows inside `tx` (a push's, a deletion's, a backfill's): due `now`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn enqueue_in(
    tx: &mut Tx,
    account: &str,
    stored_repository: &str,
    digest: &str,
    tag: Option<&str>,
    action: ReplicaAction,
    to: &[Replica],
    backfill: Option<&str>,
    now: i64,
) -> std::result::Result<(), sqlx::Error> {
    for d in to {
        sqlx::query(
            "INSERT INTO replications (account_id, repository, digest, tag, action, dest_account,
                dest_region, status, attempts, created_at, next_at, updated_at, backfill)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'IN_PROGRESS', 0, $8, $9, $10, $11)",
        )
        .bind(account)
        .bind(stored_repository)
        .bind(digest)
        .bind(tag)
        .bind(action.as_str())
        .bind(&d.account)
        .bind(&d.region)
        .bind(now)
        .bind(now)
        .bind(now)
        .bind(backfill)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

impl PgStore {
    /// The registry's documents of `d`, by prefix. (The statements are made from the
    /// table and column names of a [`PrefixedDocs`], constants of this crate; every
    /// value is bound.)
    pub(crate) async fn prefixed_docs(
        &self,
        d: PrefixedDocs,
        registry: RegistryKey<'_>,
    ) -> Result<Vec<String>> {
        let sql = format!(
            "SELECT {} FROM {} WHERE registry = $1 ORDER BY prefix COLLATE \"C\"",
            d.column, d.table
        );
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(&*registry.stored_account())
            .fetch_all(&self.pool)
            .await
            .map_err(backend)
    }

    /// Write the document of `prefix` (see [`TemplateWrite`]); false when refused.
    pub(crate) async fn put_prefixed_doc(
        &self,
        d: PrefixedDocs,
        registry: RegistryKey<'_>,
        prefix: &str,
        doc: &str,
        write: TemplateWrite,
    ) -> Result<bool> {
        let key = registry.stored_account();
        let sql = match write {
            TemplateWrite::Create => format!("INSERT INTO {} (registry, prefix, {}) VALUES ($1, $2, $3) ON CONFLICT (registry, prefix) DO NOTHING", d.table, d.column),
            TemplateWrite::Update => format!(
                "UPDATE {} SET {} = $1 WHERE registry = $2 AND prefix = $3",
                d.table, d.column
            ),
        };
        let q = sqlx::query(sqlx::AssertSqlSafe(sql));
        let q = match write {
            TemplateWrite::Create => q.bind(&*key).bind(prefix).bind(doc),
            TemplateWrite::Update => q.bind(doc).bind(&*key).bind(prefix),
        };
        let done = q.execute(&self.pool).await.map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    /// Delete the document of `prefix`; returns it (`None`: there was none).
    pub(crate) async fn delete_prefixed_doc(
        &self,
        d: PrefixedDocs,
        registry: RegistryKey<'_>,
        prefix: &str,
    ) -> Result<Option<String>> {
        let sql = format!(
            "DELETE FROM {} WHERE registry = $1 AND prefix = $2 RETURNING {}",
            d.table, d.column
        );
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(&*registry.stored_account())
            .bind(prefix)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)
    }
}

#[async_trait::async_trait]
impl ReplicationStore for PgStore {
    async fn replication_configuration(&self, registry: RegistryKey<'_>) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT config FROM replication_configurations WHERE registry = $1")
            .bind(&*registry.stored_account())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)
    }

    async fn set_replication_configuration(
        &self,
        registry: RegistryKey<'_>,
        config: Option<&str>,
        now: i64,
    ) -> Result<()> {
        let key = registry.stored_account();
        match config {
            Some(c) => sqlx::query(
                "INSERT INTO replication_configurations (registry, config, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (registry) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at",
            )
            .bind(&*key)
            .bind(c)
            .bind(now),
            None => sqlx::query("DELETE FROM replication_configurations WHERE registry = $1")
                .bind(&*key),
        }
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn creation_templates(&self, registry: RegistryKey<'_>) -> Result<Vec<String>> {
        self.prefixed_docs(CREATION_TEMPLATES, registry).await
    }

    async fn put_creation_template(
        &self,
        registry: RegistryKey<'_>,
        prefix: &str,
        template: &str,
        write: TemplateWrite,
    ) -> Result<bool> {
        self.put_prefixed_doc(CREATION_TEMPLATES, registry, prefix, template, write)
            .await
    }

    async fn delete_creation_template(
        &self,
        registry: RegistryKey<'_>,
        prefix: &str,
    ) -> Result<Option<String>> {
        self.delete_prefixed_doc(CREATION_TEMPLATES, registry, prefix)
            .await
    }

    async fn enqueue_replications(
        &self,
        registry: RegistryKey<'_>,
        replications: &[NewReplication],
        now: i64,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        for r in replications {
            enqueue_in(
                &mut tx,
                registry.account,
                &registry.stored_name(&r.repository),
                &r.digest,
                r.tag.as_deref(),
                r.action,
                std::slice::from_ref(&r.destination),
                r.backfill.as_deref(),
                now,
            )
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn due_replications(&self, now: i64, limit: i64) -> Result<Vec<Replication>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM replications WHERE status = 'IN_PROGRESS' AND next_at <= $1
             ORDER BY id LIMIT $2"
        )))
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(replication_from).collect()
    }

    async fn settle_replication(&self, id: i64, how: &Settlement, now: i64) -> Result<()> {
        let (status, code, next_at) = match how {
            Settlement::Complete => ("COMPLETE", None, None),
            Settlement::Failed(code) => ("FAILED", Some(code.as_str()), None),
            Settlement::Retry {
                failure_code,
                next_at,
            } => ("IN_PROGRESS", Some(failure_code.as_str()), Some(*next_at)),
        };
        sqlx::query(
            "UPDATE replications SET status = $1, failure_code = $2, attempts = attempts + 1,
                 next_at = COALESCE($3, next_at), updated_at = $4
             WHERE id = $5",
        )
        .bind(status)
        .bind(code)
        .bind(next_at)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn image_replications(
        &self,
        registry: RegistryKey<'_>,
        repository: &str,
        digest: &str,
    ) -> Result<Vec<Replication>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM replications r WHERE id IN (
                 SELECT MAX(id) FROM replications
                 WHERE account_id = $1 AND repository = $2 AND digest = $3 AND action = 'push'
                 GROUP BY dest_account, dest_region)
             ORDER BY dest_region COLLATE \"C\", dest_account"
        )))
        .bind(registry.account)
        .bind(&*registry.stored_name(repository))
        .bind(digest)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(replication_from).collect()
    }

    async fn replication_summary(&self) -> Result<ReplicationSummary> {
        let (pending, oldest): (i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(*), MIN(created_at) FROM replications WHERE status = 'IN_PROGRESS'",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        let (complete, failed): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*) FILTER (WHERE status = 'COMPLETE'), COUNT(*) FILTER (WHERE status = 'FAILED')
             FROM replications",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        let last = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM replications WHERE failure_code IS NOT NULL
             ORDER BY updated_at DESC, id DESC LIMIT 1"
        )))
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        Ok(ReplicationSummary {
            pending,
            oldest_pending: oldest,
            complete,
            failed,
            last_failure: last.map(|r| replication_from(&r)).transpose()?,
        })
    }
    async fn start_backfill(
        &self,
        b: &Backfill,
    ) -> Result<std::result::Result<(), BackfillRefusal>> {
        let registry = RegistryKey {
            account: &b.account,
            region: b.region.as_deref(),
        }
        .stored_account()
        .into_owned();
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // Starts in one registry take turns (the count and the insert under one lock).
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('replication-backfills:' || $1))")
            .bind(&registry)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let (active, same_region): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE dest_region = $1) FROM replication_backfills
             WHERE registry = $2 AND {ACTIVE_BACKFILL}"
        )))
        .bind(&b.destination.region)
        .bind(&registry)
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        if same_region > 0 {
            return Ok(Err(BackfillRefusal::InProgress));
        }
        if active >= MAX_ACTIVE_BACKFILLS {
            return Ok(Err(BackfillRefusal::Limit));
        }
        sqlx::query(
            "INSERT INTO replication_backfills (id, registry, dest_account, dest_region, status,
                 failure_code, total, started_at, ended_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&b.id)
        .bind(&registry)
        .bind(&b.destination.account)
        .bind(&b.destination.region)
        .bind(&b.status)
        .bind(&b.failure_code)
        .bind(b.total)
        .bind(b.started_at)
        .bind(b.ended_at)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(Ok(()))
    }

    async fn backfills(&self, registry: RegistryKey<'_>) -> Result<Vec<Backfill>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {BACKFILL_COLUMNS} FROM replication_backfills WHERE registry = $1
             ORDER BY started_at DESC, id DESC"
        )))
        .bind(&*registry.stored_account())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(backfill_from).collect()
    }

    async fn active_backfills(&self) -> Result<Vec<Backfill>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {BACKFILL_COLUMNS} FROM replication_backfills WHERE {ACTIVE_BACKFILL} ORDER BY started_at, id"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(backfill_from).collect()
    }

    async fn update_backfill(
        &self,
        id: &str,
        status: &str,
        total: Option<i64>,
        failure_code: Option<&str>,
        ended_at: Option<i64>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE replication_backfills SET status = $1, total = COALESCE($2, total),
                 failure_code = COALESCE($3, failure_code), ended_at = COALESCE($4, ended_at)
             WHERE id = $5",
        )
        .bind(status)
        .bind(total)
        .bind(failure_code)
        .bind(ended_at)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn backfill_progress(&self, id: &str) -> Result<BackfillProgress> {
        let (complete, failed, in_progress): (i64, i64, i64) = sqlx::query_as(
            "SELECT COUNT(*) FILTER (WHERE status = 'COMPLETE'), COUNT(*) FILTER (WHERE status = 'FAILED'),
                    COUNT(*) FILTER (WHERE status = 'IN_PROGRESS')
             FROM replications WHERE backfill = $1",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        let failure_codes: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT failure_code FROM replications
             WHERE backfill = $1 AND status = 'FAILED' AND failure_code IS NOT NULL
             ORDER BY 1",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(BackfillProgress {
            complete,
            failed,
            in_progress,
            failure_codes,
        })
    }

    async fn backfill_results(
        &self,
        id: &str,
        state: Option<ReplicaState>,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<Replication>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM replications WHERE backfill = $1 AND status <> 'IN_PROGRESS'
                 AND ($2::text IS NULL OR status = $2)
             ORDER BY id LIMIT $3 OFFSET $4"
        )))
        .bind(id)
        .bind(state.map(ReplicaState::as_str))
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(replication_from).collect()
    }

    async fn stop_backfill_replications(&self, id: &str, code: &str, now: i64) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE replications SET status = 'FAILED', failure_code = $1, updated_at = $2
             WHERE backfill = $3 AND status = 'IN_PROGRESS'",
        )
        .bind(code)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected())
    }
    async fn prune_replications(&self, before: i64) -> Result<u64> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(PRUNE.replace("{cutoff}", "$1")))
            .bind(before)
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        sqlx::query(sqlx::AssertSqlSafe(
            PRUNE_BACKFILLS.replace("{cutoff}", "$1"),
        ))
        .bind(before)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query(sqlx::AssertSqlSafe(
            PRUNE_PEER_UPLOADS.replace("{cutoff}", "$1"),
        ))
        .bind(before)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(rows)
    }
    async fn peer_upload(&self, u: &PeerUpload<'_>) -> Result<Option<String>> {
        sqlx::query_scalar(
            "SELECT session FROM peer_uploads WHERE peer = $1 AND dest_account = $2
             AND dest_region = $3 AND repository = $4 AND digest = $5",
        )
        .bind(u.peer)
        .bind(u.account)
        .bind(u.region)
        .bind(u.repository)
        .bind(u.digest)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)
    }
    async fn set_peer_upload(&self, u: &PeerUpload<'_>, id: Option<&str>, now: i64) -> Result<()> {
        let query = match id {
            Some(_) => sqlx::query(
                "INSERT INTO peer_uploads
                 (peer, dest_account, dest_region, repository, digest, session, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (peer, dest_account, dest_region, repository, digest)
                 DO UPDATE SET session = excluded.session, updated_at = excluded.updated_at",
            ),
            None => sqlx::query(
                "DELETE FROM peer_uploads WHERE peer = $1 AND dest_account = $2
                 AND dest_region = $3 AND repository = $4 AND digest = $5",
            ),
        };
        let query = query
            .bind(u.peer)
            .bind(u.account)
            .bind(u.region)
            .bind(u.repository)
            .bind(u.digest);
        let query = match id {
            Some(id) => query.bind(id).bind(now),
            None => query,
        };
        query.execute(&self.pool).await.map_err(backend)?;
        Ok(())
    }
}
