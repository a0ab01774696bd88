//! Garbage collection on PostgreSQL (the [`RegistryStore`](crate::RegistryStore) methods
//! that `pg_registry.rs` hands over here), at READ COMMITTED with row locks:
//!
//! - a blob's row: publishing its object and mounting it hold it `FOR KEY SHARE` (or
//!   insert it), the collector deletes the object holding it `FOR UPDATE`, then deletes
//!   the row; inserting a holding locks it `FOR KEY SHARE` through the foreign key too;
//! - a holding: a push holds the ones it references `FOR KEY SHARE` and clears their
//!   marks; answering that it exists clears its mark with an `UPDATE`; the sweep locks
//!   candidates `FOR UPDATE SKIP LOCKED` and only then, in a new statement (a snapshot
//!   taken after the locks, which sees every push that held them), deletes those still
//!   unreferenced and marked long enough.

use async_trait::async_trait;
use sqlx::Row;

use crate::gc::{BlobLock, BlobSweep, Holding, ObjectRemoval};
use crate::pg::PgStore;
use crate::pg_registry::{backend, repo_not_found, Fail, Tx, LOCK_OR_INSERT_TRIES};
use crate::registry::RegistryKey;
use crate::registry::{RegistryError, RegistryResult};

type Result<T> = RegistryResult<T>;
type Attempt<T> = std::result::Result<T, Fail<RegistryError>>;

/// Referenced by no image of its repository (`rb` is the holding).
const UNREFERENCED: &str = "NOT EXISTS (SELECT 1 FROM image_refs r
    WHERE r.account_id = rb.account_id AND r.repository = rb.repository
      AND r.child = rb.digest AND r.kind = 'blob')";

/// Lock the blob's row `FOR KEY SHARE`, inserting it if there is none. A row deleted
/// meanwhile (the collector held it) is inserted again.
async fn lock_or_insert(tx: &mut Tx, digest: &str, size: i64, now: i64) -> Attempt<()> {
    for _ in 0..LOCK_OR_INSERT_TRIES {
        let inserted: Option<i32> = sqlx::query_scalar(
            "INSERT INTO blobs (digest, size, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (digest) DO NOTHING RETURNING 1",
        )
        .bind(digest)
        .bind(size)
        .bind(now)
        .fetch_optional(&mut **tx)
        .await?;
        if inserted.is_some() {
            return Ok(());
        }
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM blobs WHERE digest = $1 FOR KEY SHARE")
                .bind(digest)
                .fetch_optional(&mut **tx)
                .await?;
        if found.is_some() {
            return Ok(());
        }
    }
    Err(Fail::Refused(RegistryError::Backend(format!(
        "blob {digest}: its row kept changing hands"
    ))))
}

/// Make the repository hold the blob (an existing holding loses its mark) inside `tx`,
/// the repository held `FOR KEY SHARE`; `false` if it is not there.
async fn hold_in(
    tx: &mut Tx,
    account: &str,
    repository: &str,
    digest: &str,
    size: i64,
    now: i64,
) -> std::result::Result<bool, sqlx::Error> {
    let repo: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM repositories WHERE account_id = $1 AND name = $2 FOR KEY SHARE",
    )
    .bind(account)
    .bind(repository)
    .fetch_optional(&mut **tx)
    .await?;
    if repo.is_none() {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO repository_blobs (account_id, repository, digest, size, added_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (account_id, repository, digest) DO UPDATE SET marked_at = NULL
         WHERE repository_blobs.marked_at IS NOT NULL",
    )
    .bind(account)
    .bind(repository)
    .bind(digest)
    .bind(size)
    .bind(now)
    .execute(&mut **tx)
    .await?;
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
        let held = hold_in(&mut tx, account, repository, &digest, size, now)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        if held {
            Ok(())
        } else {
            Err(repo_not_found(account, repository))
        }
    }
}

pub(crate) async fn lock_blob(
    s: &PgStore,
    digest: &str,
    size: i64,
    now: i64,
) -> Result<Box<dyn BlobLock>> {
    let mut tx = s.read_committed().await.map_err(backend)?;
    match lock_or_insert(&mut tx, digest, size, now).await {
        Ok(()) => {}
        Err(Fail::Db(e)) => return Err(backend(e)),
        Err(Fail::Refused(e)) => return Err(e),
    }
    Ok(Box::new(Lock {
        tx,
        digest: digest.to_string(),
        size,
    }))
}

pub(crate) async fn mount_blob(
    s: &PgStore,
    account: &str,
    from: &str,
    to: &str,
    digest: &str,
    now: i64,
) -> Attempt<Option<i64>> {
    let mut tx = s.read_committed().await?;
    // The blob's row first (every holding has one): held, the collector cannot be
    // deleting the object.
    let found: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM blobs WHERE digest = $1 FOR KEY SHARE")
            .bind(digest)
            .fetch_optional(&mut *tx)
            .await?;
    if found.is_none() {
        return Ok(None);
    }
    let size: Option<i64> = sqlx::query_scalar(
        "SELECT size FROM repository_blobs WHERE account_id = $1 AND repository = $2 AND digest = $3",
    )
    .bind(account)
    .bind(from)
    .bind(digest)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(size) = size else {
        return Ok(None);
    };
    if !hold_in(&mut tx, account, to, digest, size, now).await? {
        return Err(Fail::Refused(repo_not_found(account, to)));
    }
    tx.commit().await?;
    Ok(Some(size))
}

pub(crate) async fn repository_blob(
    s: &PgStore,
    account: &str,
    repository: &str,
    digest: &str,
) -> Result<Option<i64>> {
    let row: Option<(i64, Option<i64>)> = sqlx::query_as(
        "SELECT size, marked_at FROM repository_blobs
         WHERE account_id = $1 AND repository = $2 AND digest = $3",
    )
    .bind(account)
    .bind(repository)
    .bind(digest)
    .fetch_optional(&s.pool)
    .await
    .map_err(backend)?;
    match row {
        None => Ok(None),
        Some((size, None)) => Ok(Some(size)),
        // A candidate of the collector: the answer stands only once the mark is gone
        // (or the holding is, if the sweep came first: the update then finds no row).
        Some((_, Some(_))) => sqlx::query_scalar(
            "UPDATE repository_blobs SET marked_at = NULL
             WHERE account_id = $1 AND repository = $2 AND digest = $3 RETURNING size",
        )
        .bind(account)
        .bind(repository)
        .bind(digest)
        .fetch_optional(&s.pool)
        .await
        .map_err(backend),
    }
}

pub(crate) async fn gc_mark_step(
    s: &PgStore,
    now: i64,
    after: Option<&Holding>,
    limit: i64,
) -> Attempt<(u64, Option<Holding>)> {
    let (a, r, d) = after
        .map(|h| (h.account.as_str(), h.repository.as_str(), h.digest.as_str()))
        .unwrap_or(("", "", ""));
    let referenced = UNREFERENCED.replacen("NOT EXISTS", "EXISTS", 1);
    // A read (no lock); most holdings need nothing.
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT account_id, repository, digest, size, marked_at FROM repository_blobs rb
         WHERE (account_id, repository, digest) > ($1, $2, $3)
           AND ((marked_at IS NULL AND {UNREFERENCED}) OR (marked_at IS NOT NULL AND {referenced}))
         ORDER BY account_id, repository, digest LIMIT $4"
    )))
    .bind(a)
    .bind(r)
    .bind(d)
    .bind(limit)
    .fetch_all(&s.pool)
    .await?;
    let next = match rows.last() {
        Some(row) if rows.len() as i64 >= limit => Some(holding_from(row)?),
        _ => None,
    };
    let (mut mark, mut clear): (Vec<Holding>, Vec<Holding>) = (Vec::new(), Vec::new());
    for row in &rows {
        let was: Option<i64> = row.try_get("marked_at")?;
        match was {
            None => mark.push(holding_from(row)?),
            Some(_) => clear.push(holding_from(row)?),
        }
    }
    let columns = |hs: &[Holding]| {
        (
            hs.iter().map(|h| h.account.clone()).collect::<Vec<_>>(),
            hs.iter().map(|h| h.repository.clone()).collect::<Vec<_>>(),
            hs.iter().map(|h| h.digest.clone()).collect::<Vec<_>>(),
        )
    };
    let mut marked = 0;
    if !mark.is_empty() {
        let (a, r, d) = columns(&mark);
        // Each re-checked by the update itself.
        marked = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE repository_blobs rb SET marked_at = $4
             FROM UNNEST($1::text[], $2::text[], $3::text[]) AS c(a, r, d)
             WHERE rb.account_id = c.a AND rb.repository = c.r AND rb.digest = c.d
               AND rb.marked_at IS NULL AND {UNREFERENCED}"
        )))
        .bind(&a)
        .bind(&r)
        .bind(&d)
        .bind(now)
        .execute(&s.pool)
        .await?
        .rows_affected();
    }
    if !clear.is_empty() {
        let (a, r, d) = columns(&clear);
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE repository_blobs rb SET marked_at = NULL
             FROM UNNEST($1::text[], $2::text[], $3::text[]) AS c(a, r, d)
             WHERE rb.account_id = c.a AND rb.repository = c.r AND rb.digest = c.d
               AND rb.marked_at IS NOT NULL AND {referenced}"
        )))
        .bind(&a)
        .bind(&r)
        .bind(&d)
        .execute(&s.pool)
        .await?;
    }
    Ok((marked, next))
}

fn holding_from(r: &sqlx::postgres::PgRow) -> std::result::Result<Holding, sqlx::Error> {
    Ok(Holding {
        account: r.try_get("account_id")?,
        repository: r.try_get("repository")?,
        digest: r.try_get("digest")?,
        size: r.try_get("size")?,
    })
}

pub(crate) async fn gc_holdings(
    s: &PgStore,
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
        "COALESCE(marked_at, $1) <= $2"
    } else {
        "marked_at IS NOT NULL AND $1::bigint IS NULL AND marked_at <= $2"
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT account_id, repository, digest, size FROM repository_blobs rb
         WHERE {due}
           AND (account_id, repository, digest)
               > ($3, $4, $5)
           AND {UNREFERENCED}
         ORDER BY account_id, repository, digest
         LIMIT $6"
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
    rows.iter()
        .map(|r| holding_from(r).map_err(backend))
        .collect()
}

pub(crate) async fn gc_sweep_holdings(
    s: &PgStore,
    candidates: &[Holding],
    cutoff: i64,
) -> Attempt<Vec<Holding>> {
    let mut tx = s.read_committed().await?;
    let accounts: Vec<&str> = candidates.iter().map(|h| h.account.as_str()).collect();
    let repos: Vec<&str> = candidates.iter().map(|h| h.repository.as_str()).collect();
    let digests: Vec<&str> = candidates.iter().map(|h| h.digest.as_str()).collect();
    // The locks first; rows a push holds (or another sweep) are skipped: in use.
    let locked: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT rb.account_id, rb.repository, rb.digest FROM repository_blobs rb
         JOIN UNNEST($1::text[], $2::text[], $3::text[]) AS c(a, r, d)
           ON rb.account_id = c.a AND rb.repository = c.r AND rb.digest = c.d
         FOR UPDATE OF rb SKIP LOCKED",
    )
    .bind(&accounts)
    .bind(&repos)
    .bind(&digests)
    .fetch_all(&mut *tx)
    .await?;
    if locked.is_empty() {
        return Ok(Vec::new());
    }
    let (a, r, d): (Vec<String>, Vec<String>, Vec<String>) = locked.into_iter().fold(
        (Vec::new(), Vec::new(), Vec::new()),
        |(mut a, mut r, mut d), (x, y, z)| {
            a.push(x);
            r.push(y);
            d.push(z);
            (a, r, d)
        },
    );
    // A new statement, so a new snapshot: it sees the references of every push that
    // held these rows before the locks were granted.
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM repository_blobs rb
         USING UNNEST($1::text[], $2::text[], $3::text[]) AS c(a, r, d)
         WHERE rb.account_id = c.a AND rb.repository = c.r AND rb.digest = c.d
           AND rb.marked_at IS NOT NULL AND rb.marked_at <= $4 AND {UNREFERENCED}
         RETURNING rb.account_id, rb.repository, rb.digest, rb.size"
    )))
    .bind(&a)
    .bind(&r)
    .bind(&d)
    .bind(cutoff)
    .fetch_all(&mut *tx)
    .await?;
    let deleted = rows
        .iter()
        .map(holding_from)
        .collect::<std::result::Result<Vec<_>, _>>()?;
    tx.commit().await?;
    Ok(deleted)
}

pub(crate) async fn gc_unheld_blobs(
    s: &PgStore,
    after: &str,
    limit: i64,
) -> Result<Vec<(String, i64)>> {
    sqlx::query_as(
        "SELECT digest, size FROM blobs b WHERE digest > $1
           AND NOT EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = b.digest)
         ORDER BY digest LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(&s.pool)
    .await
    .map_err(backend)
}

pub(crate) async fn blob_holdings(s: &PgStore, digest: &str) -> Result<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM repository_blobs WHERE digest = $1")
        .bind(digest)
        .fetch_one(&s.pool)
        .await
        .map_err(backend)
}

pub(crate) async fn known_blobs(s: &PgStore, digests: &[String]) -> Result<Vec<String>> {
    sqlx::query_scalar("SELECT digest FROM blobs WHERE digest = ANY($1)")
        .bind(digests)
        .fetch_all(&s.pool)
        .await
        .map_err(backend)
}

pub(crate) async fn gc_delete_blob(
    s: &PgStore,
    digest: &str,
    orphan: bool,
    remove: ObjectRemoval<'_>,
) -> Result<BlobSweep> {
    let mut tx = s.read_committed().await.map_err(backend)?;
    // The row, exclusively: an orphan's is made here (a publisher inserting the same
    // digest meanwhile waits for this transaction, or made it first: then it is theirs).
    let ours = if orphan {
        sqlx::query(
            "INSERT INTO blobs (digest, size, created_at) VALUES ($1, 0, 0)
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(digest)
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected()
            == 1
    } else {
        sqlx::query_scalar::<_, i32>("SELECT 1 FROM blobs WHERE digest = $1 FOR UPDATE")
            .bind(digest)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?
            .is_some()
    };
    if !ours {
        return Ok(BlobSweep::InUse);
    }
    // A new statement after the lock: every holding inserted before it is visible (its
    // foreign key held the row FOR KEY SHARE, which the lock waited for).
    let held: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM repository_blobs WHERE digest = $1)")
            .bind(digest)
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
    if held {
        return Ok(BlobSweep::InUse);
    }
    if let Err(why) = remove.await {
        return Ok(BlobSweep::Failed(why));
    }
    sqlx::query("DELETE FROM blobs WHERE digest = $1")
        .bind(digest)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    tx.commit().await.map_err(backend)?;
    Ok(BlobSweep::Deleted)
}
