//! [`RegistryStore`] on PostgreSQL: the same behaviour as on SQLite, for several nodes
//! writing at once.
//!
//! SQLite has one writer at a time; PostgreSQL runs transactions side by side, at READ
//! COMMITTED (every transaction here begins with that level, whatever the server's
//! default: each statement then sees what committed before it started, which the checks
//! below rely on). What keeps the registry consistent is row locks, which a push takes
//! in one order (repository, referenced blobs and manifests, its image, its tag):
//!
//! - A write into a repository (`put_image`, and the foreign keys of the blobs, upload
//!   sessions and images it holds) holds its repository row `FOR KEY SHARE`;
//!   `delete_repository` takes it `FOR UPDATE`, so it waits for writes in flight and
//!   writes that come after it find no repository. The foreign keys cascade the delete to
//!   everything the repository held.
//! - `put_image` holds the blobs and child manifests it references `FOR KEY SHARE`;
//!   `delete_image` takes the image `FOR UPDATE` before it looks for indexes listing it,
//!   so an index pushed meanwhile is either seen or finds its child gone.
//! - A tag is moved under its row's lock, or inserted once (`ON CONFLICT DO NOTHING`,
//!   then read back locked), so an immutable tag is set by exactly one writer.
//!
//! A transaction that still loses (a deadlock or a serialization failure the server
//! reports) is run again, a few times.

use std::future::Future;

use async_trait::async_trait;
use sqlx::postgres::{PgRow, Postgres};
use sqlx::Row;

use crate::pg::PgStore;
use crate::registry::*;
use crate::sealer::SecretSlot;
use crate::{Replica, ReplicaAction, Tag, TagTarget};

type Result<T> = RegistryResult<T>;
pub(crate) type Tx = sqlx::Transaction<'static, Postgres>;

/// How many times a transaction is run when the server aborts it as a deadlock victim or
/// a serialization failure.
const ATTEMPTS: usize = 5;
/// How many times a lock-or-insert step is tried before giving up (each further try needs
/// another writer to have inserted the row and a third to have deleted it meanwhile).
pub(crate) const LOCK_OR_INSERT_TRIES: usize = 16;

/// A database error as the registry reports it (`Unavailable` when the server is out of
/// reach: see [`crate::pg::backend`]).
pub(crate) fn backend(e: sqlx::Error) -> RegistryError {
    crate::pg::backend(e).into()
}

/// The SQLSTATE of a database error.
fn sqlstate(e: &sqlx::Error) -> Option<String> {
    e.as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned())
}

/// A foreign key refused the row: here, always the repository it names is not there.
pub(crate) fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    sqlstate(e).as_deref() == Some("23503")
}

pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    sqlstate(e).as_deref() == Some("23505")
}

/// A failure the server asks to retry: a serialization failure or a deadlock victim.
fn is_transient(e: &sqlx::Error) -> bool {
    matches!(sqlstate(e).as_deref(), Some("40001" | "40P01"))
}

/// How one attempt of a transaction ended badly: the database failed (perhaps
/// transiently), or the call was refused (no retry).
pub(crate) enum Fail<E> {
    Db(sqlx::Error),
    Refused(E),
}

impl<E> From<sqlx::Error> for Fail<E> {
    fn from(e: sqlx::Error) -> Self {
        Fail::Db(e)
    }
}

/// Run `attempt` (one whole transaction) until it succeeds, is refused, or fails for a
/// reason other than a deadlock or serialization failure ([`ATTEMPTS`] runs at most).
pub(crate) async fn retrying<T, E, F, Fut>(mut attempt: F) -> std::result::Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, Fail<E>>>,
    E: From<RegistryError>,
{
    let mut runs = 0;
    loop {
        runs += 1;
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(Fail::Refused(e)) => return Err(e),
            Err(Fail::Db(e)) if is_transient(&e) && runs < ATTEMPTS => {}
            Err(Fail::Db(e)) => return Err(backend(e).into()),
        }
    }
}

fn repo_from(r: &PgRow) -> Result<Repository> {
    RepositoryRow {
        account: r.try_get("account_id").map_err(backend)?,
        name: r.try_get("name").map_err(backend)?,
        created: r.try_get("created_at").map_err(backend)?,
        tag_mutability: r.try_get("tag_mutability").map_err(backend)?,
        exclusions: r.try_get("mutability_exclusions").map_err(backend)?,
        scan_on_push: r.try_get("scan_on_push").map_err(backend)?,
        encryption_type: r.try_get("encryption_type").map_err(backend)?,
        kms_key: r.try_get("kms_key").map_err(backend)?,
        policy: r.try_get("policy").map_err(backend)?,
        lifecycle_policy: r.try_get("lifecycle_policy").map_err(backend)?,
        lifecycle_updated: r.try_get("lifecycle_updated").map_err(backend)?,
    }
    .into_repository()
}

fn image_from(r: &PgRow, with_manifest: bool) -> Result<Image> {
    Ok(Image {
        digest: r.try_get("digest").map_err(backend)?,
        media_type: r.try_get("media_type").map_err(backend)?,
        manifest: if with_manifest {
            r.try_get("manifest").map_err(backend)?
        } else {
            Vec::new()
        },
        size: r.try_get("size").map_err(backend)?,
        artifact_type: r.try_get("artifact_type").map_err(backend)?,
        subject: r.try_get("subject").map_err(backend)?,
        pushed_at: r.try_get("pushed_at").map_err(backend)?,
        last_pull: r.try_get("last_pull").map_err(backend)?,
        tags: r.try_get("tags").map_err(backend)?,
    })
}

fn upload_from(r: &PgRow) -> Result<Upload> {
    let stored: String = r.try_get("repository").map_err(backend)?;
    let (region, name) = RegistryKey::split_stored(&stored);
    Ok(Upload {
        id: r.try_get("id").map_err(backend)?,
        account: r.try_get("account_id").map_err(backend)?,
        region: region.map(str::to_string),
        repository: name.to_string(),
        principal: r.try_get("principal").map_err(backend)?,
        created: r.try_get("created_at").map_err(backend)?,
        updated: r.try_get("updated_at").map_err(backend)?,
    })
}

/// An image's columns but its manifest, and its tags sorted by byte value (as on SQLite,
/// whatever the database's collation).
macro_rules! image_columns {
    () => {
        "i.digest, i.media_type, i.size, i.artifact_type, i.subject, i.pushed_at, i.last_pull,
         ARRAY(SELECT t.tag FROM image_tags t
               WHERE t.account_id = i.account_id AND t.repository = i.repository AND t.digest = i.digest
               ORDER BY t.tag COLLATE \"C\") AS tags"
    };
}

pub(crate) fn repo_not_found(account: &str, name: &str) -> RegistryError {
    RegistryError::RepositoryNotFound {
        account: account.to_string(),
        name: RegistryKey::split_stored(name).1.to_string(),
    }
}

impl PgStore {
    /// A transaction at READ COMMITTED (see the top of this file for why it must be).
    pub(crate) async fn read_committed(&self) -> std::result::Result<Tx, sqlx::Error> {
        self.pool
            .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await
    }

    async fn create_repository_once(
        &self,
        repo: &Repository,
        tags: &[Tag],
    ) -> std::result::Result<(), Fail<RegistryError>> {
        let mut tx = self.read_committed().await?;
        let r = sqlx::query(
            "INSERT INTO repositories (account_id, name, created_at, tag_mutability, mutability_exclusions,
                scan_on_push, encryption_type, kms_key, policy, lifecycle_policy, lifecycle_updated)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&repo.account)
        .bind(&*repo.stored_name())
        .bind(repo.created)
        .bind(repo.tag_mutability.as_str())
        .bind(exclusions_text(&repo.mutability_filters))
        .bind(repo.scan_on_push)
        .bind(repo.encryption.kind.as_str())
        .bind(&repo.encryption.kms_key)
        .bind(&repo.policy)
        .bind(&repo.lifecycle_policy)
        .bind(repo.lifecycle_updated)
        .execute(&mut *tx)
        .await;
        match r {
            Err(e) if is_unique_violation(&e) => {
                return Err(Fail::Refused(RegistryError::RepositoryAlreadyExists {
                    account: repo.account.clone(),
                    name: repo.name.clone(),
                }))
            }
            r => r?,
        };
        // The repository's resource tags, numbered in the order given, written as the IAM
        // tags are (same table, same owner lock).
        crate::pg_identities::put_tags(
            &mut tx,
            &repo.account,
            TagTarget::Repository,
            &repo.stored_name(),
            tags,
        )
        .await
        .map_err(|e| Fail::Refused(e.into()))?;
        tx.commit().await?;
        Ok(())
    }

    /// The repository row is held `FOR KEY SHARE` (as a push holds it), so a delete
    /// waits for the preview, and the foreign keys then cascade it away.
    async fn put_lifecycle_preview_once(
        &self,
        account: &str,
        repository: &str,
        preview: &LifecyclePreview,
    ) -> std::result::Result<(), Fail<RegistryError>> {
        let mut tx = self.read_committed().await?;
        let found: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM repositories WHERE account_id = $1 AND name = $2 FOR KEY SHARE",
        )
        .bind(account)
        .bind(repository)
        .fetch_optional(&mut *tx)
        .await?;
        if found.is_none() {
            return Err(Fail::Refused(repo_not_found(account, repository)));
        }
        // The results go with it (ON DELETE CASCADE).
        sqlx::query("DELETE FROM lifecycle_previews WHERE account_id = $1 AND repository = $2")
            .bind(account)
            .bind(repository)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO lifecycle_previews (account_id, repository, policy, started_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(account)
        .bind(repository)
        .bind(&preview.policy)
        .bind(preview.started)
        .execute(&mut *tx)
        .await?;
        let digests: Vec<&str> = preview.results.iter().map(|r| r.digest.as_str()).collect();
        let tags: Vec<Option<String>> =
            preview.results.iter().map(|r| tag_lines(&r.tags)).collect();
        let pushed: Vec<i64> = preview.results.iter().map(|r| r.pushed_at).collect();
        let rules: Vec<i64> = preview.results.iter().map(|r| r.rule_priority).collect();
        sqlx::query(
            "INSERT INTO lifecycle_preview_results
                (account_id, repository, digest, tags, pushed_at, rule_priority)
             SELECT $1, $2, d, t, p, r
             FROM UNNEST($3::text[], $4::text[], $5::bigint[], $6::bigint[]) AS x(d, t, p, r)",
        )
        .bind(account)
        .bind(repository)
        .bind(&digests)
        .bind(&tags)
        .bind(&pushed)
        .bind(&rules)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_repository_once(
        &self,
        account: &str,
        name: &str,
        force: bool,
    ) -> std::result::Result<Repository, Fail<RegistryError>> {
        let mut tx = self.read_committed().await?;
        // FOR UPDATE waits for every write in flight that holds the row FOR KEY SHARE
        // (pushes, blobs, upload sessions); writes after it find the repository gone.
        let row = sqlx::query(
            "SELECT * FROM repositories WHERE account_id = $1 AND name = $2 FOR UPDATE",
        )
        .bind(account)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Fail::Refused(repo_not_found(account, name)))?;
        let repo = repo_from(&row).map_err(Fail::Refused)?;
        // A new statement: it sees every image those writes committed.
        let holds_images: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM images WHERE account_id = $1 AND repository = $2)",
        )
        .bind(account)
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
        if holds_images && !force {
            return Err(Fail::Refused(RegistryError::RepositoryNotEmpty {
                account: account.to_string(),
                name: RegistryKey::split_stored(name).1.to_string(),
            }));
        }
        sqlx::query("DELETE FROM tags WHERE account_id = $1 AND kind = $2 AND owner_name = $3")
            .bind(account)
            .bind(TagTarget::Repository.as_str())
            .bind(name)
            .execute(&mut *tx)
            .await?;
        // The foreign keys cascade to its images (and their tags and references), blobs
        // and upload sessions.
        sqlx::query("DELETE FROM repositories WHERE account_id = $1 AND name = $2")
            .bind(account)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(repo)
    }

    async fn update_repository_once(
        &self,
        account: &str,
        name: &str,
        setting: &RepositorySetting,
    ) -> std::result::Result<Repository, Fail<RegistryError>> {
        let mut tx = self.read_committed().await?;
        // FOR NO KEY UPDATE: the repository as it is just before this change (another
        // change waits until this one commits); pushes holding it FOR KEY SHARE go on.
        let row = sqlx::query(
            "SELECT * FROM repositories WHERE account_id = $1 AND name = $2 FOR NO KEY UPDATE",
        )
        .bind(account)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Fail::Refused(repo_not_found(account, name)))?;
        let before = repo_from(&row).map_err(Fail::Refused)?;
        let q = match setting {
            RepositorySetting::TagMutability {
                mutability,
                filters,
            } => sqlx::query(
                "UPDATE repositories SET tag_mutability = $1, mutability_exclusions = $2
                 WHERE account_id = $3 AND name = $4",
            )
            .bind(mutability.as_str())
            .bind(exclusions_text(filters)),
            RepositorySetting::ScanOnPush(on) => sqlx::query(
                "UPDATE repositories SET scan_on_push = $1 WHERE account_id = $2 AND name = $3",
            )
            .bind(*on),
            RepositorySetting::Policy(text) => sqlx::query(
                "UPDATE repositories SET policy = $1 WHERE account_id = $2 AND name = $3",
            )
            .bind(text.clone()),
            RepositorySetting::LifecyclePolicy(p) => sqlx::query(
                "UPDATE repositories SET lifecycle_policy = $1, lifecycle_updated = $2
                 WHERE account_id = $3 AND name = $4",
            )
            .bind(p.as_ref().map(|(text, _)| text.clone()))
            .bind(p.as_ref().map(|(_, at)| *at)),
        };
        q.bind(account).bind(name).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(before)
    }

    async fn put_image_once(
        &self,
        account: &str,
        repository: &str,
        image: &NewImage,
        tag: Option<&str>,
        rule: TagRule,
    ) -> std::result::Result<PutOutcome, Fail<PutImageError>> {
        let refused = |e: PutImageError| Err(Fail::Refused(e));
        let mut tx = self.read_committed().await?;
        // The repository FOR KEY SHARE: a delete of it waits for this push (and then
        // takes the image along), or this push waits for the delete and finds nothing.
        let exists: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM repositories WHERE account_id = $1 AND name = $2 FOR KEY SHARE",
        )
        .bind(account)
        .bind(repository)
        .fetch_optional(&mut *tx)
        .await?;
        if exists.is_none() {
            return refused(repo_not_found(account, repository).into());
        }
        // Every reference must already be there, and stays there until this commits:
        // the rows found are held FOR KEY SHARE, which a delete of them waits for.
        let wanted = |kind: RefKind| -> Vec<String> {
            image
                .refs
                .iter()
                .filter(|(_, k)| *k == kind)
                .map(|(d, _)| d.clone())
                .collect()
        };
        let (blobs, manifests) = (wanted(RefKind::Blob), wanted(RefKind::Manifest));
        let held: Vec<String> = if blobs.is_empty() {
            Vec::new()
        } else {
            sqlx::query_scalar(
                "SELECT digest FROM repository_blobs
                 WHERE account_id = $1 AND repository = $2 AND digest = ANY($3)
                 ORDER BY digest FOR KEY SHARE",
            )
            .bind(account)
            .bind(repository)
            .bind(&blobs)
            .fetch_all(&mut *tx)
            .await?
        };
        let present: Vec<String> = if manifests.is_empty() {
            Vec::new()
        } else {
            sqlx::query_scalar(
                "SELECT digest FROM images
                 WHERE account_id = $1 AND repository = $2 AND digest = ANY($3)
                 ORDER BY digest FOR KEY SHARE",
            )
            .bind(account)
            .bind(repository)
            .bind(&manifests)
            .fetch_all(&mut *tx)
            .await?
        };
        let missing_blobs: Vec<String> = blobs.into_iter().filter(|d| !held.contains(d)).collect();
        let missing_manifests: Vec<String> = manifests
            .into_iter()
            .filter(|d| !present.contains(d))
            .collect();
        if !missing_blobs.is_empty() || !missing_manifests.is_empty() {
            return refused(PutImageError::Missing {
                blobs: missing_blobs,
                manifests: missing_manifests,
            });
        }
        // Referenced again: the collector's marks on these holdings go (the rows are
        // locked already; only marked ones are written).
        if !held.is_empty() {
            sqlx::query(
                "UPDATE repository_blobs SET marked_at = NULL
                 WHERE account_id = $1 AND repository = $2 AND digest = ANY($3)
                   AND marked_at IS NOT NULL",
            )
            .bind(account)
            .bind(repository)
            .bind(&held)
            .execute(&mut *tx)
            .await?;
        }
        // The image itself: held FOR KEY SHARE if it is there (a delete of it waits),
        // else inserted; a writer inserting the same digest at once makes the insert do
        // nothing, and the next look finds its row.
        let mut existed = None;
        for _ in 0..LOCK_OR_INSERT_TRIES {
            let found: Option<i32> = sqlx::query_scalar(
                "SELECT 1 FROM images WHERE account_id = $1 AND repository = $2 AND digest = $3
                 FOR KEY SHARE",
            )
            .bind(account)
            .bind(repository)
            .bind(&image.digest)
            .fetch_optional(&mut *tx)
            .await?;
            if found.is_some() {
                existed = Some(true);
                break;
            }
            let inserted: Option<i32> = sqlx::query_scalar(
                "INSERT INTO images (account_id, repository, digest, media_type, manifest, size,
                    artifact_type, subject, pushed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (account_id, repository, digest) DO NOTHING
                 RETURNING 1",
            )
            .bind(account)
            .bind(repository)
            .bind(&image.digest)
            .bind(&image.media_type)
            .bind(&image.manifest)
            .bind(image.size)
            .bind(&image.artifact_type)
            .bind(&image.subject)
            .bind(image.pushed_at)
            .fetch_optional(&mut *tx)
            .await?;
            if inserted.is_some() {
                let (children, kinds): (Vec<String>, Vec<&str>) = image
                    .refs
                    .iter()
                    .map(|(child, kind)| (child.clone(), kind.as_str()))
                    .unzip();
                sqlx::query(
                    "INSERT INTO image_refs (account_id, repository, digest, child, kind)
                     SELECT $1, $2, $3, child, kind FROM UNNEST($4::text[], $5::text[]) AS r (child, kind)
                     ON CONFLICT (account_id, repository, digest, child) DO NOTHING",
                )
                .bind(account)
                .bind(repository)
                .bind(&image.digest)
                .bind(&children)
                .bind(&kinds)
                .execute(&mut *tx)
                .await?;
                existed = Some(false);
                break;
            }
        }
        let Some(existed) = existed else {
            return refused(PutImageError::Store(RegistryError::Backend(format!(
                "image {} of repository '{repository}' kept being written and deleted by others",
                image.digest
            ))));
        };
        // The tag: moved under its row's lock (FOR UPDATE), or inserted once; a writer
        // that loses the insert reads the winner's row, locked, and decides again. So an
        // immutable tag is set by exactly one of several writers racing.
        let mut tag_unchanged = false;
        if let Some(tag) = tag {
            let mut settled = false;
            for _ in 0..LOCK_OR_INSERT_TRIES {
                let current: Option<String> = sqlx::query_scalar(
                    "SELECT digest FROM image_tags WHERE account_id = $1 AND repository = $2 AND tag = $3
                     FOR UPDATE",
                )
                .bind(account)
                .bind(repository)
                .bind(tag)
                .fetch_optional(&mut *tx)
                .await?;
                match current {
                    Some(d) if d == image.digest => {
                        tag_unchanged = true;
                        settled = true;
                    }
                    Some(_) if rule == TagRule::Immutable => {
                        return refused(PutImageError::TagImmutable {
                            tag: tag.to_string(),
                        })
                    }
                    Some(_) => {
                        sqlx::query(
                            "UPDATE image_tags SET digest = $4
                             WHERE account_id = $1 AND repository = $2 AND tag = $3",
                        )
                        .bind(account)
                        .bind(repository)
                        .bind(tag)
                        .bind(&image.digest)
                        .execute(&mut *tx)
                        .await?;
                        settled = true;
                    }
                    None => {
                        settled = sqlx::query(
                            "INSERT INTO image_tags (account_id, repository, tag, digest)
                             VALUES ($1, $2, $3, $4)
                             ON CONFLICT (account_id, repository, tag) DO NOTHING",
                        )
                        .bind(account)
                        .bind(repository)
                        .bind(tag)
                        .bind(&image.digest)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                            == 1;
                    }
                }
                if settled {
                    break;
                }
            }
            if !settled {
                return refused(PutImageError::Store(RegistryError::Backend(format!(
                    "tag {tag} of repository '{repository}' kept being written and deleted by others"
                ))));
            }
        }
        if !existed || (tag.is_some() && !tag_unchanged) {
            crate::pg_replication::enqueue_in(
                &mut tx,
                account,
                repository,
                &image.digest,
                tag,
                ReplicaAction::Push,
                &image.replicate_to,
                None,
                image.pushed_at,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(PutOutcome {
            existed,
            tag_unchanged,
        })
    }

    async fn delete_image_once(
        &self,
        account: &str,
        repository: &str,
        digest: &str,
        replicate_to: &[Replica],
    ) -> std::result::Result<bool, Fail<RegistryError>> {
        let mut tx = self.read_committed().await?;
        // The image FOR UPDATE first: a push of an index listing it holds it FOR KEY
        // SHARE, so this waits for that push to commit (or makes it wait and find the
        // child gone). Only then, in a new statement, look for indexes listing it.
        let found: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM images WHERE account_id = $1 AND repository = $2 AND digest = $3
             FOR UPDATE",
        )
        .bind(account)
        .bind(repository)
        .bind(digest)
        .fetch_optional(&mut *tx)
        .await?;
        let listed: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM image_refs
                WHERE account_id = $1 AND repository = $2 AND child = $3 AND kind = 'manifest')",
        )
        .bind(account)
        .bind(repository)
        .bind(digest)
        .fetch_one(&mut *tx)
        .await?;
        if listed {
            return Err(Fail::Refused(RegistryError::ImageReferencedByIndex {
                account: account.to_string(),
                repository: RegistryKey::split_stored(repository).1.to_string(),
                digest: digest.to_string(),
            }));
        }
        if found.is_none() {
            return Ok(false);
        }
        // The foreign keys cascade to its tags and its references.
        sqlx::query("DELETE FROM images WHERE account_id = $1 AND repository = $2 AND digest = $3")
            .bind(account)
            .bind(repository)
            .bind(digest)
            .execute(&mut *tx)
            .await?;
        crate::pg_replication::enqueue_in(
            &mut tx,
            account,
            repository,
            digest,
            None,
            ReplicaAction::DeleteImage,
            replicate_to,
            None,
            crate::now_ms(),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}

#[async_trait]
impl RegistryStore for PgStore {
    /// One transaction; a second create of one name fails on the primary key.
    async fn create_repository(&self, repo: &Repository, tags: &[Tag]) -> Result<()> {
        retrying(|| self.create_repository_once(repo, tags)).await
    }

    async fn repository(
        &self,
        registry: RegistryKey<'_>,
        name: &str,
    ) -> Result<Option<Repository>> {
        let account = registry.account;
        let name_key = registry.stored_name(name);
        let name: &str = &name_key;
        let row = sqlx::query("SELECT * FROM repositories WHERE account_id = $1 AND name = $2")
            .bind(account)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(|r| repo_from(&r)).transpose()
    }

    async fn repositories_after(
        &self,
        registry: RegistryKey<'_>,
        after: Option<&str>,
        contains: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Repository>> {
        // Another Region's names are stored as `REGION:NAME`; the home Region's have no ':'.
        let prefix = registry.stored_name("").into_owned();
        let after = format!("{prefix}{}", after.unwrap_or(""));
        let rows = sqlx::query(
            "SELECT * FROM repositories
             WHERE account_id = $1 AND name COLLATE \"C\" > $2
               AND CASE WHEN $3 = '' THEN strpos(name, ':') = 0
                        ELSE left(name, length($3)) = $3 END
               AND strpos(substr(name, length($3) + 1), $4) > 0
             ORDER BY name COLLATE \"C\" LIMIT $5",
        )
        .bind(registry.account)
        .bind(&after)
        .bind(&prefix)
        .bind(contains.unwrap_or(""))
        .bind(limit.min(i64::MAX as usize) as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(repo_from).collect()
    }

    async fn account_repositories(&self, account: &str) -> Result<Vec<Repository>> {
        let rows = sqlx::query(
            "SELECT * FROM repositories WHERE account_id = $1 ORDER BY name COLLATE \"C\"",
        )
        .bind(account)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(repo_from).collect()
    }

    /// Locks the repository row FOR UPDATE (waiting for every push, blob and upload
    /// session write in flight, which hold it FOR KEY SHARE), counts its images in a new
    /// statement, and deletes it; its images, tags, references, blobs and upload
    /// sessions go by cascade.
    async fn delete_repository(
        &self,
        registry: RegistryKey<'_>,
        name: &str,
        force: bool,
    ) -> Result<Repository> {
        let account = registry.account;
        let name_key = registry.stored_name(name);
        let name: &str = &name_key;
        retrying(|| self.delete_repository_once(account, name, force)).await
    }

    /// Locks the repository row FOR NO KEY UPDATE to read it as it was, then updates
    /// only the setting's columns: a concurrent change of another setting waits for the
    /// lock and then applies to the row this one wrote, so neither is lost.
    async fn update_repository(
        &self,
        registry: RegistryKey<'_>,
        name: &str,
        setting: &RepositorySetting,
    ) -> Result<Repository> {
        let account = registry.account;
        let name_key = registry.stored_name(name);
        let name: &str = &name_key;
        retrying(|| self.update_repository_once(account, name, setting)).await
    }

    async fn registry_policy(&self, registry: RegistryKey<'_>) -> Result<Option<String>> {
        let account_key = registry.stored_account();
        let account: &str = &account_key;
        sqlx::query_scalar("SELECT policy FROM registry_policies WHERE account_id = $1")
            .bind(account)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)
    }

    /// One statement: an upsert on the account's row (concurrent writers serialize on
    /// it; the last to commit wins), or a delete.
    async fn set_registry_policy(
        &self,
        registry: RegistryKey<'_>,
        policy: Option<&str>,
    ) -> Result<()> {
        let account_key = registry.stored_account();
        let account: &str = &account_key;
        match policy {
            Some(p) => sqlx::query(
                "INSERT INTO registry_policies (account_id, policy) VALUES ($1, $2)
                 ON CONFLICT (account_id) DO UPDATE SET policy = excluded.policy",
            )
            .bind(account)
            .bind(p),
            None => {
                sqlx::query("DELETE FROM registry_policies WHERE account_id = $1").bind(account)
            }
        }
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn lock_blob(
        &self,
        digest: &str,
        size: i64,
        now: i64,
    ) -> Result<Box<dyn crate::BlobLock>> {
        crate::pg_gc::lock_blob(self, digest, size, now).await
    }

    async fn mount_blob(
        &self,
        registry: RegistryKey<'_>,
        from: &str,
        to: &str,
        digest: &str,
        now: i64,
    ) -> Result<Option<i64>> {
        let account = registry.account;
        let from_key = registry.stored_name(from);
        let from: &str = &from_key;
        let to_key = registry.stored_name(to);
        let to: &str = &to_key;
        retrying(|| crate::pg_gc::mount_blob(self, account, from, to, digest, now)).await
    }

    async fn repository_blob(
        &self,
        registry: RegistryKey<'_>,
        repository: &str,
        digest: &str,
    ) -> Result<Option<i64>> {
        let account = registry.account;
        let repository_key = registry.stored_name(repository);
        let repository: &str = &repository_key;
        crate::pg_gc::repository_blob(self, account, repository, digest).await
    }

    async fn blob_referenced(
        &self,
        registry: RegistryKey<'_>,
        repository: &str,
        digest: &str,
    ) -> Result<bool> {
        let account = registry.account;
        let repository_key = registry.stored_name(repository);
        let repository: &str = &repository_key;
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM image_refs
                WHERE account_id = $1 AND repository = $2 AND child = $3 AND kind = 'blob')",
        )
        .bind(account)
        .bind(repository)
        .bind(digest)
        .fetch_one(&self.pool)
        .await
        .map_err(backend)
    }

    /// One transaction at READ COMMITTED: the repository row FOR KEY SHARE (a delete of
    /// it waits), the referenced blobs and child manifests FOR KEY SHARE (nothing is
    /// written unless all are there; a delete of a child waits and then sees this index),
    /// the image inserted or its existing row FOR KEY SHARE, and the tag row FOR UPDATE
    /// (or inserted with `ON CONFLICT DO NOTHING` and then read locked) before it moves.
    async fn put_image(
        &self,
        registry: RegistryKey<'_>,
        repository: &str,
        image: &NewImage,
        tag: Option<&str>,
        rule: TagRule,
    ) -> std::result::Result<PutOutcome, PutImageError> {
        let account = registry.account;
        let repository_key = registry.stored_name(repository);
        let repository: &str = &repository_key;
        retrying(|| self.put_image_once(account, repository, image, tag, rule)).await
    }

    async fn image(
        &self,
        registry: RegistryKey<'_>,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Image>> {
        let account = registry.account;
        let repository_key = registry.stored_name(repository);
        let repository: &str = &repository_key;
        let row = if reference.contains(':') {
            sqlx::query(concat!(
                "SELECT ",
                image_columns!(),
                ", i.manifest FROM images i
                 WHERE i.account_id = $1 AND i.repository = $2 AND i.digest = $3"
            ))
            .bind(account)
            .bind(repository)
            .bind(reference)
            .fetch_optional(&self.pool)
            .await
        } else {
            sqlx::query(concat!(
                "SELECT ",
                image_columns!(),
                ", i.manifest FROM images i
                 JOIN image_tags t0 ON t0.account_id = i.account_id AND t0.repository = i.repository
                   AND t0.digest = i.digest
                 WHERE i.account_id = $1 AND i.repository = $2 AND t0.tag = $3"
            ))
            .bind(account)
            .bind(repository)
            .bind(reference)
            .fetch_optional(&self.pool)
            .await
        }
        .map_err(backend)?;
        row.map(|r| image_from(&r, true)).transpose()
    }

    async fn images(&self, registry: RegistryKey<'_>, repository: &str) -> Result<Vec<Image>> {
        let account = registry.account;
        let repository_key = registry.stored_name(repository);
        let repository: &str = &repository_key;
        let rows = sqlx::query(concat!(
            "SELECT ",
            image_columns!(),
            " FROM images i WHERE i.account_id = $1 AND i.repository = $2
             ORDER BY i.pushed_at DESC, i.digest COLLATE \"C\""
        ))
        .bind(account)
        .bind(repository)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(|r| image_from(r, false)).collect()
    }

    async fn images_page(
        &self,
        registry: RegistryKey<'_>,
        repository: &str,
        after: Option<(i64, &str)>,
        tagged: Option<bool>,
        limit: usize,
    ) -> Result<Vec<Image>> {
        let repository_key = registry.stored_name(repository);
        let rows = sqlx::query(concat!(
            "SELECT ",
            image_columns!(),
            " FROM images i
             WHERE i.account_id = $1 AND i.repository = $2
               AND ($3::BIGINT IS NULL OR i.pushed_at < $3
                    OR (i.pushed_at = $3 AND i.digest COLLATE \"C\" > $4))
               AND ($5::BOOLEAN IS NULL OR EXISTS (SELECT 1 FROM image_tags t
                      WHERE t.account_id = i.account_id AND t.repository = i.repository
                        AND t.digest = i.digest) = $5)
             ORDER BY i.pushed_at DESC, i.digest COLLATE \"C\" LIMIT $6"
        ))
        .bind(registry.account)
        .bind(&*repository_key)
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1.to_string()))
        .bind(tagged)
        .bind(limit.min(i64::MAX as usize) as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(|r| image_from(r, false)).collect()
    }

    async fn tags_of(
        &self,
        registry: RegistryKey<'_>,
        repository: &str,
    ) -> Result<Vec<(String, String)>> {
        let account = registry.account;
        let repository_key = registry.stored_name(repository);
        let repository: &str = &repository_key;
        sqlx::query_as(
            "SELECT tag, digest FROM image_tags WHERE account_id = $1 AND repository = $2
             ORDER BY tag COLLATE \"C\"",
        )
        .bind(account)
        .bind(repository)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)
    }

    /// One statement (`DELETE … RETURNING`): of two deletes of one tag, one gets its
    /// digest and the other `None`.
    async fn delete_tag(
        &self,
        registry: RegistryKey<'_>,
        repository: &str,
        tag: &str,
        replicate_to: &[Replica],
    ) -> Result<Option<String>> {
        let account = registry.account;
        let repository_key = registry.stored_name(repository);
        let repository: &str = &repository_key;
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let digest: Option<String> = sqlx::query_scalar(
            "DELETE FROM image_tags WHERE account_id = $1 AND repository = $2 AND tag = $3
             RETURNING digest",
        )
        .bind(account)
        .bind(repository)
        .bind(tag)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        if let Some(d) = &digest {
            crate::pg_replication::enqueue_in(
                &mut tx,
                account,
                repository,
                d,
                Some(tag),
                ReplicaAction::DeleteTag,
                replicate_to,
                None,
                crate::now_ms(),
            )
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(digest)
    }

    /// One transaction at READ COMMITTED: the image row FOR UPDATE (waiting for a push
    /// of an index that holds it FOR KEY SHARE), then, in a new statement, the indexes
    /// listing it; its tags and references go by cascade.
    async fn delete_image(
        &self,
        registry: RegistryKey<'_>,
        repository: &str,
        digest: &str,
        replicate_to: &[Replica],
    ) -> Result<bool> {
        let account = registry.account;
        let repository_key = registry.stored_name(repository);
        let repository: &str = &repository_key;
        retrying(|| self.delete_image_once(account, repository, digest, replicate_to)).await
    }

    async fn referrers(
        &self,
        registry: RegistryKey<'_>,
        repository: &str,
        digest: &str,
    ) -> Result<Vec<Image>> {
        let account = registry.account;
        let repository_key = registry.stored_name(repository);
        let repository: &str = &repository_key;
        let rows = sqlx::query(concat!(
            "SELECT ",
            image_columns!(),
            ", i.manifest FROM images i
             WHERE i.account_id = $1 AND i.repository = $2 AND i.subject = $3
             ORDER BY i.digest COLLATE \"C\""
        ))
        .bind(account)
        .bind(repository)
        .bind(digest)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(|r| image_from(r, true)).collect()
    }

    /// One conditional update: at most once per interval per image, even when callers
    /// race (the second re-reads the row the first wrote and finds it recent).
    async fn record_pull(
        &self,
        registry: RegistryKey<'_>,
        repository: &str,
        digest: &str,
        now: i64,
    ) -> Result<()> {
        let account = registry.account;
        let repository_key = registry.stored_name(repository);
        let repository: &str = &repository_key;
        sqlx::query(
            "UPDATE images SET last_pull = $1
             WHERE account_id = $2 AND repository = $3 AND digest = $4
               AND (last_pull IS NULL OR last_pull <= $1 - $5)",
        )
        .bind(now)
        .bind(account)
        .bind(repository)
        .bind(digest)
        .bind(PULL_RECORD_INTERVAL)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    /// Insert if absent (`ON CONFLICT DO NOTHING`), then read the row that won: every
    /// node gets the first candidate.
    async fn setting(&self, name: &str, candidate: &str) -> Result<String> {
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(candidate)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .map_err(backend)
    }

    async fn recorded_setting(&self, name: &str) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)
    }

    async fn server_secret(&self, name: &str, candidate: &str) -> Result<String> {
        let sealer = self.sealer();
        let slot = SecretSlot::ServerSecret(name);
        sqlx::query(
            "INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(sealer.seal(slot, candidate)?)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        let stored: String = sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        Ok(sealer.open(slot, &stored)?)
    }

    /// One statement; the foreign key to the repository makes it wait for a delete of
    /// the repository in flight and then fail (`RepositoryNotFound`), as
    /// `add_repository_blob`.
    async fn create_upload(&self, u: &Upload) -> Result<()> {
        let stored = RegistryKey {
            account: &u.account,
            region: u.region.as_deref(),
        }
        .stored_name(&u.repository);
        let r = sqlx::query(
            "INSERT INTO uploads (id, account_id, repository, principal, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&u.id)
        .bind(&u.account)
        .bind(&*stored)
        .bind(&u.principal)
        .bind(u.created)
        .bind(u.updated)
        .execute(&self.pool)
        .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_foreign_key_violation(&e) => {
                Err(repo_not_found(&u.account, &u.repository))
            }
            Err(e) => Err(backend(e)),
        }
    }

    async fn upload(&self, id: &str) -> Result<Option<Upload>> {
        let row = sqlx::query("SELECT * FROM uploads WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(|r| upload_from(&r)).transpose()
    }

    /// One statement on the session's row.
    async fn touch_upload(&self, id: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE uploads SET updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    /// One statement on the session's row.
    async fn delete_upload(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM uploads WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn stale_uploads(&self, before: i64) -> Result<Vec<Upload>> {
        let rows = sqlx::query(
            "SELECT * FROM uploads WHERE updated_at < $1 ORDER BY updated_at, id COLLATE \"C\"",
        )
        .bind(before)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(upload_from).collect()
    }

    async fn upload_counts(
        &self,
        registry: RegistryKey<'_>,
        repository: &str,
    ) -> Result<(u64, u64)> {
        let stored = registry.stored_name(repository);
        let (in_repository, in_account): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*) FILTER (WHERE repository = $1), COUNT(*) FROM uploads
             WHERE account_id = $2",
        )
        .bind(&*stored)
        .bind(registry.account)
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        Ok((in_repository as u64, in_account as u64))
    }

    async fn repository_usage(
        &self,
        registry: RegistryKey<'_>,
        names: &[String],
    ) -> Result<Vec<RepositoryUsage>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let stored: Vec<String> = names
            .iter()
            .map(|n| registry.stored_name(n).into_owned())
            .collect();
        let marks = (2..stored.len() + 2)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut out: Vec<RepositoryUsage> = Vec::new();
        for (sql, images) in [
            (
                format!(
                    "SELECT repository, COALESCE(SUM(size), 0)::BIGINT FROM repository_blobs
                     WHERE account_id = $1 AND repository IN ({marks}) GROUP BY repository"
                ),
                false,
            ),
            (
                format!(
                    "SELECT repository, COUNT(*)::BIGINT FROM images
                     WHERE account_id = $1 AND repository IN ({marks}) GROUP BY repository"
                ),
                true,
            ),
        ] {
            let mut q =
                sqlx::query_as::<_, (String, i64)>(sqlx::AssertSqlSafe(sql)).bind(registry.account);
            for n in &stored {
                q = q.bind(n);
            }
            for (stored_name, n) in q.fetch_all(&self.pool).await.map_err(backend)? {
                RepositoryUsage::add(&mut out, &stored_name, n, images);
            }
        }
        Ok(out)
    }

    async fn account_usage(&self, account: &str) -> Result<u64> {
        let (bytes,): (i64,) = sqlx::query_as(
            "SELECT COALESCE(SUM(size), 0)::BIGINT FROM
               (SELECT digest, MAX(size) AS size FROM repository_blobs WHERE account_id = $1
                GROUP BY digest) AS held",
        )
        .bind(account)
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        Ok(bytes.max(0) as u64)
    }

    async fn put_lifecycle_preview(
        &self,
        registry: RegistryKey<'_>,
        repository: &str,
        preview: &LifecyclePreview,
    ) -> Result<()> {
        let account = registry.account;
        let repository_key = registry.stored_name(repository);
        let repository: &str = &repository_key;
        retrying(|| self.put_lifecycle_preview_once(account, repository, preview)).await
    }

    async fn lifecycle_preview(
        &self,
        registry: RegistryKey<'_>,
        repository: &str,
    ) -> Result<Option<LifecyclePreview>> {
        let account = registry.account;
        let repository_key = registry.stored_name(repository);
        let repository: &str = &repository_key;
        // REPEATABLE READ: the preview and its results from one snapshot.
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(backend)?;
        let head: Option<(String, i64)> = sqlx::query_as(
            "SELECT policy, started_at FROM lifecycle_previews WHERE account_id = $1 AND repository = $2",
        )
        .bind(account)
        .bind(repository)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        let Some((policy, started)) = head else {
            return Ok(None);
        };
        let rows: Vec<(String, Option<String>, i64, i64)> = sqlx::query_as(
            "SELECT digest, tags, pushed_at, rule_priority FROM lifecycle_preview_results
             WHERE account_id = $1 AND repository = $2 ORDER BY pushed_at, digest COLLATE \"C\"",
        )
        .bind(account)
        .bind(repository)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(Some(LifecyclePreview {
            policy,
            started,
            results: rows
                .into_iter()
                .map(|(digest, tags, pushed_at, rule_priority)| PreviewResult {
                    digest,
                    tags: tags_from_lines(tags),
                    pushed_at,
                    rule_priority,
                })
                .collect(),
        }))
    }

    async fn lifecycle_evaluated(
        &self,
        registry: RegistryKey<'_>,
        repository: &str,
        policy: &str,
        at: i64,
    ) -> Result<bool> {
        let account = registry.account;
        let repository_key = registry.stored_name(repository);
        let repository: &str = &repository_key;
        let done = sqlx::query(
            "UPDATE repositories SET lifecycle_updated = $1
             WHERE account_id = $2 AND name = $3 AND lifecycle_policy = $4",
        )
        .bind(at)
        .bind(account)
        .bind(repository)
        .bind(policy)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn upload_state(&self, id: &str) -> Result<Option<UploadState>> {
        let row: Option<(i64, Option<Vec<u8>>)> =
            sqlx::query_as("SELECT state_version, state FROM uploads WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
        Ok(row.map(|(version, state)| UploadState { version, state }))
    }

    /// One compare-and-set statement: of two writers that read one version, the second
    /// re-reads the row the first wrote, finds the version moved on, and changes nothing.
    async fn save_upload_state(
        &self,
        id: &str,
        expected_version: i64,
        state: &[u8],
        now: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE uploads SET state = $1, state_version = state_version + 1, updated_at = $2
             WHERE id = $3 AND state_version = $4",
        )
        .bind(state)
        .bind(now)
        .bind(id)
        .bind(expected_version)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    fn writers_at_once(&self) -> usize {
        8
    }

    async fn gc_mark_step(
        &self,
        now: i64,
        after: Option<&crate::Holding>,
        limit: i64,
    ) -> Result<(u64, Option<crate::Holding>)> {
        retrying(|| crate::pg_gc::gc_mark_step(self, now, after, limit)).await
    }

    async fn gc_holdings(
        &self,
        cutoff: i64,
        unmarked_as: Option<i64>,
        after: Option<&crate::Holding>,
        limit: i64,
    ) -> Result<Vec<crate::Holding>> {
        crate::pg_gc::gc_holdings(self, cutoff, unmarked_as, after, limit).await
    }

    async fn gc_sweep_holdings(
        &self,
        candidates: &[crate::Holding],
        cutoff: i64,
    ) -> Result<Vec<crate::Holding>> {
        retrying(|| crate::pg_gc::gc_sweep_holdings(self, candidates, cutoff)).await
    }

    async fn gc_unheld_blobs(&self, after: &str, limit: i64) -> Result<Vec<(String, i64)>> {
        crate::pg_gc::gc_unheld_blobs(self, after, limit).await
    }

    async fn blob_holdings(&self, digest: &str) -> Result<i64> {
        crate::pg_gc::blob_holdings(self, digest).await
    }

    async fn known_blobs(&self, digests: &[String]) -> Result<Vec<String>> {
        crate::pg_gc::known_blobs(self, digests).await
    }

    async fn gc_delete_blob(
        &self,
        digest: &str,
        orphan: bool,
        remove: crate::ObjectRemoval<'_>,
    ) -> Result<crate::BlobSweep> {
        crate::pg_gc::gc_delete_blob(self, digest, orphan, remove).await
    }
}
