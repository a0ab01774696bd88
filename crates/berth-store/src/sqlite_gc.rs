//! Garbage collection on SQLite (the [`RegistryStore`](crate::RegistryStore) methods
//! that `sqlite_registry.rs` hands over here). SQLite has one writer at a time: every
//! step that must not interleave with another (a blob's publication and its holding, a
//! mount, a sweep's re-check and delete, an object's deletion and its row's) runs in one
//! `BEGIN IMMEDIATE` transaction, which is the lock.

use async_trait::async_trait;
use sqlx::Row;

use crate::gc::{BlobLock, BlobSweep, Holding, ObjectRemoval};
use crate::registry::{RegistryError, RegistryKey, RegistryResult};
use crate::sqlite::SqliteStore;

type Result<T> = RegistryResult<T>;
type Tx = sqlx::Transaction<'static, sqlx::Sqlite>;

fn backend(e: sqlx::Error) -> RegistryError {
    RegistryError::Backend(e.to_string())
}

/// Referenced by no image of its repository (`rb` is the holding).
const UNREFERENCED: &str = "NOT EXISTS (SELECT 1 FROM image_refs r
    WHERE r.account_id = rb.account_id AND r.repository = rb.repository
      AND r.child = rb.digest AND r.kind = 'blob')";

fn not_found(account: &str, name: &str) -> RegistryError {
    RegistryError::RepositoryNotFound {
        account: account.to_string(),
        name: RegistryKey::split_stored(name).1.to_string(),
    }
}

/// Make the repository hold the blob (an existing holding loses its mark), inside `tx`;
/// `false` if the repository is not there.
async fn hold_in(
    tx: &mut Tx,
    account: &str,
    repository: &str,
    digest: &str,
    size: i64,
    now: i64,
) -> Result<bool> {
    let repo: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM repositories WHERE account_id = ? AND name = ?")
            .bind(account)
            .bind(repository)
            .fetch_optional(&mut **tx)
            .await
            .map_err(backend)?;
    if repo.is_none() {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO repository_blobs (account_id, repository, digest, size, added_at)
         VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (account_id, repository, digest) DO UPDATE SET marked_at = NULL
         WHERE marked_at IS NOT NULL",
    )
    .bind(account)
    .bind(repository)
    .bind(digest)
    .bind(size)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(backend)?;
    Ok(true)
}

struct Lock {
    tx: Tx,
    digest: String,
    size: i64,
}

#[async_trait]
impl BlobLock for Lock {
    async fn hold(
        self: Box<Self>,
        registry: RegistryKey<'_>,
        repository: &str,
        now: i64,
    ) -> Result<()> {
        let account = registry.account;
        let repository_key = registry.stored_name(repository);
        let repository: &str = &repository_key;
        let Lock {
            mut tx,
            digest,
            size,
        } = *self;
        let held = hold_in(&mut tx, account, repository, &digest, size, now).await?;
        tx.commit().await.map_err(backend)?;
        if held {
            Ok(())
        } else {
            Err(not_found(account, repository))
        }
    }
}

pub(crate) async fn lock_blob(
    s: &SqliteStore,
    digest: &str,
    size: i64,
    now: i64,
) -> Result<Box<dyn BlobLock>> {
    let mut tx = s.write_tx().await?;
    sqlx::query("INSERT OR IGNORE INTO blobs (digest, size, created_at) VALUES (?, ?, ?)")
        .bind(digest)
        .bind(size)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    Ok(Box::new(Lock {
        tx,
        digest: digest.to_string(),
        size,
    }))
}

pub(crate) async fn mount_blob(
    s: &SqliteStore,
    account: &str,
    from: &str,
    to: &str,
    digest: &str,
    now: i64,
) -> Result<Option<i64>> {
    let mut tx = s.write_tx().await?;
    let size: Option<i64> = sqlx::query_scalar(
        "SELECT size FROM repository_blobs WHERE account_id = ? AND repository = ? AND digest = ?",
    )
    .bind(account)
    .bind(from)
    .bind(digest)
    .fetch_optional(&mut *tx)
    .await
    .map_err(backend)?;
    let Some(size) = size else {
        return Ok(None);
    };
    sqlx::query("INSERT OR IGNORE INTO blobs (digest, size, created_at) VALUES (?, ?, ?)")
        .bind(digest)
        .bind(size)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    if !hold_in(&mut tx, account, to, digest, size, now).await? {
        return Err(not_found(account, to));
    }
    tx.commit().await.map_err(backend)?;
    Ok(Some(size))
}

pub(crate) async fn repository_blob(
    s: &SqliteStore,
    account: &str,
    repository: &str,
    digest: &str,
) -> Result<Option<i64>> {
    let row = sqlx::query(
        "SELECT size, marked_at FROM repository_blobs
         WHERE account_id = ? AND repository = ? AND digest = ?",
    )
    .bind(account)
    .bind(repository)
    .bind(digest)
    .fetch_optional(&s.pool)
    .await
    .map_err(backend)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let marked: Option<i64> = row.try_get("marked_at").map_err(backend)?;
    if marked.is_none() {
        return row.try_get("size").map(Some).map_err(backend);
    }
    // A candidate of the collector: the answer stands only once the mark is gone (or
    // the holding is, if the sweep came first).
    let mut tx = s.write_tx().await?;
    let size: Option<i64> = sqlx::query_scalar(
        "UPDATE repository_blobs SET marked_at = NULL
         WHERE account_id = ? AND repository = ? AND digest = ? RETURNING size",
    )
    .bind(account)
    .bind(repository)
    .bind(digest)
    .fetch_optional(&mut *tx)
    .await
    .map_err(backend)?;
    tx.commit().await.map_err(backend)?;
    Ok(size)
}

pub(crate) async fn gc_mark_step(
    s: &SqliteStore,
    now: i64,
    after: Option<&Holding>,
    limit: i64,
) -> Result<(u64, Option<Holding>)> {
    let (a, r, d) = after
        .map(|h| (h.account.as_str(), h.repository.as_str(), h.digest.as_str()))
        .unwrap_or(("", "", ""));
    let referenced = UNREFERENCED.replacen("NOT EXISTS", "EXISTS", 1);
    // A read: it takes no write lock, and most holdings need nothing.
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT account_id, repository, digest, size, marked_at FROM repository_blobs rb
         WHERE (account_id, repository, digest) > (?, ?, ?)
           AND ((marked_at IS NULL AND {UNREFERENCED}) OR (marked_at IS NOT NULL AND {referenced}))
         ORDER BY account_id, repository, digest LIMIT ?"
    )))
    .bind(a)
    .bind(r)
    .bind(d)
    .bind(limit)
    .fetch_all(&s.pool)
    .await
    .map_err(backend)?;
    let next = match rows.last() {
        Some(row) if rows.len() as i64 >= limit => Some(holding_from(row)?),
        _ => None,
    };
    if rows.is_empty() {
        return Ok((0, None));
    }
    let mark = format!(
        "UPDATE repository_blobs AS rb SET marked_at = ?
         WHERE account_id = ? AND repository = ? AND digest = ? AND marked_at IS NULL AND {UNREFERENCED}"
    );
    let clear = format!(
        "UPDATE repository_blobs AS rb SET marked_at = NULL
         WHERE account_id = ? AND repository = ? AND digest = ? AND marked_at IS NOT NULL AND {referenced}"
    );
    let mut tx = s.write_tx().await?;
    let mut marked = 0;
    for row in &rows {
        let h = holding_from(row)?;
        let was: Option<i64> = row.try_get("marked_at").map_err(backend)?;
        let q = match was {
            None => sqlx::query(sqlx::AssertSqlSafe(mark.clone())).bind(now),
            Some(_) => sqlx::query(sqlx::AssertSqlSafe(clear.clone())),
        };
        let changed = q
            .bind(&h.account)
            .bind(&h.repository)
            .bind(&h.digest)
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        if was.is_none() {
            marked += changed;
        }
    }
    tx.commit().await.map_err(backend)?;
    Ok((marked, next))
}

fn holding_from(r: &sqlx::sqlite::SqliteRow) -> Result<Holding> {
    Ok(Holding {
        account: r.try_get("account_id").map_err(backend)?,
        repository: r.try_get("repository").map_err(backend)?,
        digest: r.try_get("digest").map_err(backend)?,
        size: r.try_get("size").map_err(backend)?,
    })
}

pub(crate) async fn gc_holdings(
    s: &SqliteStore,
    cutoff: i64,
    unmarked_as: Option<i64>,
    after: Option<&Holding>,
    limit: i64,
) -> Result<Vec<Holding>> {
    let (a, r, d) = after
        .map(|h| (h.account.as_str(), h.repository.as_str(), h.digest.as_str()))
        .unwrap_or(("", "", ""));
    // Without a dry run's view only marked holdings count: the partial index finds them.
    let due = if unmarked_as.is_some() {
        "COALESCE(marked_at, ?) <= ?"
    } else {
        "marked_at IS NOT NULL AND ? IS NULL AND marked_at <= ?"
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT account_id, repository, digest, size FROM repository_blobs rb
         WHERE {due} AND (account_id, repository, digest) > (?, ?, ?)
           AND {UNREFERENCED}
         ORDER BY account_id, repository, digest LIMIT ?"
    )))
    .bind(unmarked_as)
    .bind(cutoff)
    .bind(a)
    .bind(r)
    .bind(d)
    .bind(limit)
    .fetch_all(&s.pool)
    .await
    .map_err(backend)?;
    rows.iter().map(holding_from).collect()
}

pub(crate) async fn gc_sweep_holdings(
    s: &SqliteStore,
    candidates: &[Holding],
    cutoff: i64,
) -> Result<Vec<Holding>> {
    let mut tx = s.write_tx().await?;
    let sql = format!(
        "DELETE FROM repository_blobs AS rb
         WHERE account_id = ? AND repository = ? AND digest = ?
           AND marked_at IS NOT NULL AND marked_at <= ? AND {UNREFERENCED}
         RETURNING account_id, repository, digest, size"
    );
    let mut deleted = Vec::new();
    for h in candidates {
        let row = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(&h.account)
            .bind(&h.repository)
            .bind(&h.digest)
            .bind(cutoff)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
        if let Some(row) = row {
            deleted.push(holding_from(&row)?);
        }
    }
    tx.commit().await.map_err(backend)?;
    Ok(deleted)
}

pub(crate) async fn gc_unheld_blobs(
    s: &SqliteStore,
    after: &str,
    limit: i64,
) -> Result<Vec<(String, i64)>> {
    sqlx::query_as(
        "SELECT digest, size FROM blobs b WHERE digest > ?
           AND NOT EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = b.digest)
         ORDER BY digest LIMIT ?",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(&s.pool)
    .await
    .map_err(backend)
}

pub(crate) async fn blob_holdings(s: &SqliteStore, digest: &str) -> Result<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM repository_blobs WHERE digest = ?")
        .bind(digest)
        .fetch_one(&s.pool)
        .await
        .map_err(backend)
}

pub(crate) async fn known_blobs(s: &SqliteStore, digests: &[String]) -> Result<Vec<String>> {
    let mut known = Vec::new();
    // In statements of at most 500 parameters (SQLite's limit is far above).
    for chunk in digests.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let sql = format!("SELECT digest FROM blobs WHERE digest IN ({marks})");
        let mut q = sqlx::query_scalar(sqlx::AssertSqlSafe(sql));
        for d in chunk {
            q = q.bind(d);
        }
        known.extend(q.fetch_all(&s.pool).await.map_err(backend)?);
    }
    Ok(known)
}

pub(crate) async fn gc_delete_blob(
    s: &SqliteStore,
    digest: &str,
    orphan: bool,
    remove: ObjectRemoval<'_>,
) -> Result<BlobSweep> {
    let mut tx = s.write_tx().await?;
    let ours = if orphan {
        sqlx::query("INSERT OR IGNORE INTO blobs (digest, size, created_at) VALUES (?, 0, 0)")
            .bind(digest)
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected()
            == 1
    } else {
        sqlx::query_scalar::<_, i64>("SELECT 1 FROM blobs WHERE digest = ?")
            .bind(digest)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?
            .is_some()
    };
    if !ours {
        return Ok(BlobSweep::InUse);
    }
    let held: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM repository_blobs WHERE digest = ? LIMIT 1")
            .bind(digest)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
    if held.is_some() {
        return Ok(BlobSweep::InUse);
    }
    if let Err(why) = remove.await {
        return Ok(BlobSweep::Failed(why));
    }
    sqlx::query("DELETE FROM blobs WHERE digest = ?")
        .bind(digest)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    tx.commit().await.map_err(backend)?;
    Ok(BlobSweep::Deleted)
}
