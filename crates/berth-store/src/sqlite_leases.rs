//! [`Leases`] on SQLite. The statements are plain SQL (an upsert with a condition), which
//! PostgreSQL runs as they are but for parameter markers.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use crate::leases::{Lease, Leases};
use crate::sqlite::{backend, SqliteStore};
use crate::Result;

fn lease_from(row: &SqliteRow) -> Result<Lease> {
    Ok(Lease {
        job: row.try_get("job").map_err(backend)?,
        holder: row.try_get("holder").map_err(backend)?,
        acquired_at: row.try_get("acquired_at").map_err(backend)?,
        expires_at: row.try_get("expires_at").map_err(backend)?,
        last_run_at: row.try_get("last_run_at").map_err(backend)?,
    })
}

#[async_trait]
impl Leases for SqliteStore {
    async fn try_lease(
        &self,
        job: &str,
        holder: &str,
        now: i64,
        ttl: i64,
    ) -> Result<Option<Lease>> {
        // One statement: insert the lease, or take it over when it is ours or has
        // expired; a lease another holder still has is left alone (no row comes back).
        let row = sqlx::query(
            "INSERT INTO leases (job, holder, acquired_at, expires_at) VALUES (?1, ?2, ?3, ?3 + ?4)
             ON CONFLICT (job) DO UPDATE SET
                 acquired_at = CASE WHEN leases.holder = excluded.holder AND leases.expires_at > ?3
                                    THEN leases.acquired_at ELSE excluded.acquired_at END,
                 holder = excluded.holder,
                 expires_at = excluded.expires_at
             WHERE leases.holder = excluded.holder OR leases.expires_at <= ?3
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
        let done = sqlx::query("UPDATE leases SET last_run_at = ? WHERE job = ? AND holder = ?")
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
            "UPDATE leases SET expires_at = 0 WHERE job = ? AND holder = ? AND expires_at > 0",
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
            "SELECT job, holder, acquired_at, expires_at, last_run_at FROM leases WHERE job = ?",
        )
        .bind(job)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.map(|r| lease_from(&r)).transpose()
    }
}
