//! [`RegistryStore`] on SQLite.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use crate::registry::*;
use crate::sealer::SecretSlot;
use crate::sqlite::{is_unique_violation, put_tags, SqliteStore};
use crate::{Replica, ReplicaAction, Tag, TagTarget};

type Result<T> = RegistryResult<T>;

fn backend(e: sqlx::Error) -> RegistryError {
    RegistryError::Backend(e.to_string())
}

fn repo_from(r: &SqliteRow) -> Result<Repository> {
    RepositoryRow {
        account: r.try_get("account_id").map_err(backend)?,
        name: r.try_get("name").map_err(backend)?,
        created: r.try_get("created_at").map_err(backend)?,
        tag_mutability: r.try_get("tag_mutability").map_err(backend)?,
        exclusions: r.try_get("mutability_exclusions").map_err(backend)?,
        scan_on_push: r.try_get::<i64, _>("scan_on_push").map_err(backend)? != 0,
        encryption_type: r.try_get("encryption_type").map_err(backend)?,
        kms_key: r.try_get("kms_key").map_err(backend)?,
        policy: r.try_get("policy").map_err(backend)?,
        lifecycle_policy: r.try_get("lifecycle_policy").map_err(backend)?,
        lifecycle_updated: r.try_get("lifecycle_updated").map_err(backend)?,
    }
    .into_repository()
}

fn image_from(r: &SqliteRow, with_manifest: bool) -> Result<Image> {
    let tags: Option<String> = r.try_get("tags").map_err(backend)?;
    let mut tags: Vec<String> = tags
        .map(|t| t.split('\u{1f}').map(str::to_string).collect())
        .unwrap_or_default();
    tags.sort();
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
        tags,
    })
}

fn upload_from(r: &SqliteRow) -> Result<Upload> {
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

/// Images with their tags joined by U+001F.
const IMAGE_SELECT: &str = "SELECT i.*, (SELECT group_concat(t.tag, char(31)) FROM image_tags t
        WHERE t.account_id = i.account_id AND t.repository = i.repository AND t.digest = i.digest) AS tags
    FROM images i";

/// A repository read inside a write transaction (`RepositoryNotFoundException` text when
/// it is not there).
async fn repository_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    account: &str,
    name: &str,
) -> Result<Repository> {
    let row = sqlx::query("SELECT * FROM repositories WHERE account_id = ? AND name = ?")
        .bind(account)
        .bind(name)
        .fetch_optional(&mut **tx)
        .await
        .map_err(backend)?
        .ok_or_else(|| repo_not_found(account, name))?;
    repo_from(&row)
}

fn repo_not_found(account: &str, name: &str) -> RegistryError {
    RegistryError::RepositoryNotFound {
        account: account.to_string(),
        name: RegistryKey::split_stored(name).1.to_string(),
    }
}

#[async_trait]
impl RegistryStore for SqliteStore {
    async fn create_repository(&self, repo: &Repository, tags: &[Tag]) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let r = sqlx::query(
            "INSERT INTO repositories (account_id, name, created_at, tag_mutability, mutability_exclusions,
                scan_on_push, encryption_type, kms_key, policy, lifecycle_policy, lifecycle_updated)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&repo.account)
        .bind(&*repo.stored_name())
        .bind(repo.created)
        .bind(repo.tag_mutability.as_str())
        .bind(exclusions_text(&repo.mutability_filters))
        .bind(repo.scan_on_push as i64)
        .bind(repo.encryption.kind.as_str())
        .bind(&repo.encryption.kms_key)
        .bind(&repo.policy)
        .bind(&repo.lifecycle_policy)
        .bind(repo.lifecycle_updated)
        .execute(&mut *tx)
        .await;
        if let Err(e) = r {
            return Err(if is_unique_violation(&e) {
                RegistryError::RepositoryAlreadyExists {
                    account: repo.account.clone(),
                    name: repo.name.clone(),
                }
            } else {
                backend(e)
            });
        }
        put_tags(
            &mut tx,
            &repo.account,
            TagTarget::Repository,
            &repo.stored_name(),
            tags,
        )
        .await?;
        tx.commit().await.map_err(backend)
    }

    async fn repository(
        &self,
        registry: RegistryKey<'_>,
        name: &str,
    ) -> Result<Option<Repository>> {
        let account = registry.account;
        let name_key = registry.stored_name(name);
        let name: &str = &name_key;
        let row = sqlx::query("SELECT * FROM repositories WHERE account_id = ? AND name = ?")
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
             WHERE account_id = ?1 AND name > ?2
               AND CASE WHEN ?3 = '' THEN instr(name, ':') = 0
                        ELSE substr(name, 1, length(?3)) = ?3 END
               AND instr(substr(name, length(?3) + 1), ?4) > 0
             ORDER BY name LIMIT ?5",
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
        let rows = sqlx::query("SELECT * FROM repositories WHERE account_id = ? ORDER BY name")
            .bind(account)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(repo_from).collect()
    }

    async fn delete_repository(
        &self,
        registry: RegistryKey<'_>,
        name: &str,
        force: bool,
    ) -> Result<Repository> {
        let account = registry.account;
        let name_key = registry.stored_name(name);
        let name: &str = &name_key;
        let mut tx = self.write_tx().await?;
        let repo = repository_in(&mut tx, account, name).await?;
        let images: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM images WHERE account_id = ? AND repository = ?",
        )
        .bind(account)
        .bind(name)
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        if images > 0 && !force {
            return Err(RegistryError::RepositoryNotEmpty {
                account: account.to_string(),
                name: RegistryKey::split_stored(name).1.to_string(),
            });
        }
        for sql in [
            "DELETE FROM image_tags WHERE account_id = ? AND repository = ?",
            "DELETE FROM image_refs WHERE account_id = ? AND repository = ?",
            "DELETE FROM images WHERE account_id = ? AND repository = ?",
            "DELETE FROM repository_blobs WHERE account_id = ? AND repository = ?",
            "DELETE FROM uploads WHERE account_id = ? AND repository = ?",
            "DELETE FROM tags WHERE account_id = ? AND kind = 'repository' AND owner_name = ?",
            "DELETE FROM lifecycle_preview_results WHERE account_id = ? AND repository = ?",
            "DELETE FROM lifecycle_previews WHERE account_id = ? AND repository = ?",
            "DELETE FROM repositories WHERE account_id = ? AND name = ?",
        ] {
            sqlx::query(sql)
                .bind(account)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(repo)
    }

    async fn update_repository(
        &self,
        registry: RegistryKey<'_>,
        name: &str,
        setting: &RepositorySetting,
    ) -> Result<Repository> {
        let account = registry.account;
        let name_key = registry.stored_name(name);
        let name: &str = &name_key;
        let mut tx = self.write_tx().await?;
        let before = repository_in(&mut tx, account, name).await?;
        let q = match setting {
            RepositorySetting::TagMutability {
                mutability,
                filters,
            } => sqlx::query(
                "UPDATE repositories SET tag_mutability = ?, mutability_exclusions = ?
                 WHERE account_id = ? AND name = ?",
            )
            .bind(mutability.as_str())
            .bind(exclusions_text(filters)),
            RepositorySetting::ScanOnPush(on) => sqlx::query(
                "UPDATE repositories SET scan_on_push = ? WHERE account_id = ? AND name = ?",
            )
            .bind(*on as i64),
            RepositorySetting::Policy(text) => {
                sqlx::query("UPDATE repositories SET policy = ? WHERE account_id = ? AND name = ?")
                    .bind(text.clone())
            }
            RepositorySetting::LifecyclePolicy(p) => sqlx::query(
                "UPDATE repositories SET lifecycle_policy = ?, lifecycle_updated = ?
                 WHERE account_id = ? AND name = ?",
            )
            .bind(p.as_ref().map(|(text, _)| text.clone()))
            .bind(p.as_ref().map(|(_, at)| *at)),
        };
        q.bind(account)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(before)
    }

    async fn registry_policy(&self, registry: RegistryKey<'_>) -> Result<Option<String>> {
        let account_key = registry.stored_account();
        let account: &str = &account_key;
        sqlx::query_scalar("SELECT policy FROM registry_policies WHERE account_id = ?")
            .bind(account)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)
    }

    async fn set_registry_policy(
        &self,
        registry: RegistryKey<'_>,
        policy: Option<&str>,
    ) -> Result<()> {
        let account_key = registry.stored_account();
        let account: &str = &account_key;
        match policy {
            Some(p) => sqlx::query(
                "INSERT INTO registry_policies (account_id, policy) VALUES (?, ?)
                 ON CONFLICT (account_id) DO UPDATE SET policy = excluded.policy",
            )
            .bind(account)
            .bind(p),
            None => sqlx::query("DELETE FROM registry_policies WHERE account_id = ?").bind(account),
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
        crate::sqlite_gc::lock_blob(self, digest, size, now).await
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
        crate::sqlite_gc::mount_blob(self, account, from, to, digest, now).await
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
        crate::sqlite_gc::repository_blob(self, account, repository, digest).await
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
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM image_refs WHERE account_id = ? AND repository = ? AND child = ? AND kind = 'blob' LIMIT 1",
        )
        .bind(account)
        .bind(repository)
        .bind(digest)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        Ok(found.is_some())
    }

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
        let mut tx = self.write_tx().await?;
        let exists_repo: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM repositories WHERE account_id = ? AND name = ?")
                .bind(account)
                .bind(repository)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
        if exists_repo.is_none() {
            return Err(repo_not_found(account, repository).into());
        }
        // Every reference must already be there.
        let mut missing_blobs = Vec::new();
        let mut missing_manifests = Vec::new();
        for (child, kind) in &image.refs {
            let sql = match kind {
                RefKind::Blob => "SELECT 1 FROM repository_blobs WHERE account_id = ? AND repository = ? AND digest = ?",
                RefKind::Manifest => "SELECT 1 FROM images WHERE account_id = ? AND repository = ? AND digest = ?",
            };
            let found: Option<i64> = sqlx::query_scalar(sql)
                .bind(account)
                .bind(repository)
                .bind(child)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
            if found.is_none() {
                match kind {
                    RefKind::Blob => missing_blobs.push(child.clone()),
                    RefKind::Manifest => missing_manifests.push(child.clone()),
                }
            }
        }
        if !missing_blobs.is_empty() || !missing_manifests.is_empty() {
            return Err(PutImageError::Missing {
                blobs: missing_blobs,
                manifests: missing_manifests,
            });
        }
        // Referenced again: the collector's marks on these holdings go.
        for (child, kind) in &image.refs {
            if *kind == RefKind::Blob {
                sqlx::query(
                    "UPDATE repository_blobs SET marked_at = NULL
                     WHERE account_id = ? AND repository = ? AND digest = ? AND marked_at IS NOT NULL",
                )
                .bind(account)
                .bind(repository)
                .bind(child)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            }
        }
        let existed: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM images WHERE account_id = ? AND repository = ? AND digest = ?",
        )
        .bind(account)
        .bind(repository)
        .bind(&image.digest)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        let mut tag_unchanged = false;
        if let Some(tag) = tag {
            let current: Option<String> = sqlx::query_scalar(
                "SELECT digest FROM image_tags WHERE account_id = ? AND repository = ? AND tag = ?",
            )
            .bind(account)
            .bind(repository)
            .bind(tag)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
            match current {
                Some(d) if d == image.digest => tag_unchanged = true,
                Some(_) if rule == TagRule::Immutable => {
                    return Err(PutImageError::TagImmutable {
                        tag: tag.to_string(),
                    })
                }
                _ => {}
            }
        }
        if existed.is_none() {
            sqlx::query(
                "INSERT INTO images (account_id, repository, digest, media_type, manifest, size,
                    artifact_type, subject, pushed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            for (child, kind) in &image.refs {
                sqlx::query(
                    "INSERT OR IGNORE INTO image_refs (account_id, repository, digest, child, kind) VALUES (?, ?, ?, ?, ?)",
                )
                .bind(account)
                .bind(repository)
                .bind(&image.digest)
                .bind(child)
                .bind(kind.as_str())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            }
        }
        if let (Some(tag), false) = (tag, tag_unchanged) {
            sqlx::query(
                "INSERT INTO image_tags (account_id, repository, tag, digest) VALUES (?, ?, ?, ?)
                 ON CONFLICT (account_id, repository, tag) DO UPDATE SET digest = excluded.digest",
            )
            .bind(account)
            .bind(repository)
            .bind(tag)
            .bind(&image.digest)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        if existed.is_none() || (tag.is_some() && !tag_unchanged) {
            crate::sqlite_replication::enqueue_in(
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
        tx.commit().await.map_err(backend)?;
        Ok(PutOutcome {
            existed: existed.is_some(),
            tag_unchanged,
        })
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
            let sql = format!("{IMAGE_SELECT} WHERE i.account_id = ? AND i.repository = ? AND i.digest = ?");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(account)
                .bind(repository)
                .bind(reference)
                .fetch_optional(&self.pool)
                .await
        } else {
            let sql = format!(
                "{IMAGE_SELECT} JOIN image_tags t0 ON t0.account_id = i.account_id AND t0.repository = i.repository
                   AND t0.digest = i.digest WHERE i.account_id = ? AND i.repository = ? AND t0.tag = ?"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
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
        let sql = format!(
            "{IMAGE_SELECT} WHERE i.account_id = ? AND i.repository = ? ORDER BY i.pushed_at DESC, i.digest"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
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
        let rows = sqlx::query(
            "SELECT i.digest, i.media_type, i.size, i.artifact_type, i.subject, i.pushed_at, i.last_pull,
                    (SELECT group_concat(t.tag, char(31)) FROM image_tags t
                      WHERE t.account_id = i.account_id AND t.repository = i.repository
                        AND t.digest = i.digest) AS tags
             FROM images i
             WHERE i.account_id = ?1 AND i.repository = ?2
               AND (?3 IS NULL OR i.pushed_at < ?3 OR (i.pushed_at = ?3 AND i.digest > ?4))
               AND (?5 IS NULL OR EXISTS (SELECT 1 FROM image_tags t
                      WHERE t.account_id = i.account_id AND t.repository = i.repository
                        AND t.digest = i.digest) = ?5)
             ORDER BY i.pushed_at DESC, i.digest LIMIT ?6",
        )
        .bind(registry.account)
        .bind(&*repository_key)
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1))
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
        let rows = sqlx::query(
            "SELECT tag, digest FROM image_tags WHERE account_id = ? AND repository = ? ORDER BY tag",
        )
        .bind(account)
        .bind(repository)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("tag").map_err(backend)?,
                    r.try_get("digest").map_err(backend)?,
                ))
            })
            .collect()
    }

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
        let mut tx = self.write_tx().await?;
        let digest: Option<String> = sqlx::query_scalar(
            "SELECT digest FROM image_tags WHERE account_id = ? AND repository = ? AND tag = ?",
        )
        .bind(account)
        .bind(repository)
        .bind(tag)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        if digest.is_some() {
            sqlx::query(
                "DELETE FROM image_tags WHERE account_id = ? AND repository = ? AND tag = ?",
            )
            .bind(account)
            .bind(repository)
            .bind(tag)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        if let Some(d) = &digest {
            crate::sqlite_replication::enqueue_in(
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
            .await?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(digest)
    }

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
        let mut tx = self.write_tx().await?;
        let parents: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM image_refs WHERE account_id = ? AND repository = ? AND child = ? AND kind = 'manifest'",
        )
        .bind(account)
        .bind(repository)
        .bind(digest)
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        if parents > 0 {
            return Err(RegistryError::ImageReferencedByIndex {
                account: account.to_string(),
                repository: RegistryKey::split_stored(repository).1.to_string(),
                digest: digest.to_string(),
            });
        }
        let r = sqlx::query(
            "DELETE FROM images WHERE account_id = ? AND repository = ? AND digest = ?",
        )
        .bind(account)
        .bind(repository)
        .bind(digest)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        for sql in [
            "DELETE FROM image_tags WHERE account_id = ? AND repository = ? AND digest = ?",
            "DELETE FROM image_refs WHERE account_id = ? AND repository = ? AND digest = ?",
        ] {
            sqlx::query(sql)
                .bind(account)
                .bind(repository)
                .bind(digest)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        if r.rows_affected() > 0 {
            crate::sqlite_replication::enqueue_in(
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
        }
        tx.commit().await.map_err(backend)?;
        Ok(r.rows_affected() > 0)
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
        // Sorted here, not by the query: an ORDER BY digest makes SQLite walk the primary
        // key over every image of the repository instead of the subject index.
        let sql = format!(
            "{IMAGE_SELECT} INDEXED BY images_by_subject
             WHERE i.account_id = ? AND i.repository = ? AND i.subject = ?"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(repository)
            .bind(digest)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        let mut out = rows
            .iter()
            .map(|r| image_from(r, true))
            .collect::<Result<Vec<_>>>()?;
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(out)
    }

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
        // At most once per interval per image, even when callers race.
        sqlx::query(
            "UPDATE images SET last_pull = ? WHERE account_id = ? AND repository = ? AND digest = ?
               AND (last_pull IS NULL OR last_pull <= ? - ?)",
        )
        .bind(now)
        .bind(account)
        .bind(repository)
        .bind(digest)
        .bind(now)
        .bind(PULL_RECORD_INTERVAL)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn setting(&self, name: &str, candidate: &str) -> Result<String> {
        sqlx::query("INSERT OR IGNORE INTO settings (name, value) VALUES (?, ?)")
            .bind(name)
            .bind(candidate)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        sqlx::query_scalar("SELECT value FROM settings WHERE name = ?")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .map_err(backend)
    }

    async fn recorded_setting(&self, name: &str) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT value FROM settings WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)
    }

    async fn server_secret(&self, name: &str, candidate: &str) -> Result<String> {
        let sealer = self.sealer()?;
        let slot = SecretSlot::ServerSecret(name);
        sqlx::query("INSERT OR IGNORE INTO server_secrets (name, value) VALUES (?, ?)")
            .bind(name)
            .bind(sealer.seal(slot, candidate)?)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        let stored: String = sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = ?")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        Ok(sealer.open(slot, &stored)?)
    }

    async fn create_upload(&self, u: &Upload) -> Result<()> {
        let stored = RegistryKey {
            account: &u.account,
            region: u.region.as_deref(),
        }
        .stored_name(&u.repository);
        // Only in a repository that exists at that moment (see add_repository_blob).
        let added = sqlx::query(
            "INSERT INTO uploads (id, account_id, repository, principal, created_at, updated_at)
             SELECT ?, ?, ?, ?, ?, ?
             WHERE EXISTS (SELECT 1 FROM repositories WHERE account_id = ? AND name = ?)",
        )
        .bind(&u.id)
        .bind(&u.account)
        .bind(&*stored)
        .bind(&u.principal)
        .bind(u.created)
        .bind(u.updated)
        .bind(&u.account)
        .bind(&*stored)
        .execute(&self.pool)
        .await
        .map_err(backend)?
        .rows_affected();
        if added == 0 {
            return Err(repo_not_found(&u.account, &u.repository));
        }
        Ok(())
    }

    async fn upload(&self, id: &str) -> Result<Option<Upload>> {
        let row = sqlx::query("SELECT * FROM uploads WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(|r| upload_from(&r)).transpose()
    }

    async fn touch_upload(&self, id: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE uploads SET updated_at = ? WHERE id = ?")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn delete_upload(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM uploads WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn stale_uploads(&self, before: i64) -> Result<Vec<Upload>> {
        let rows = sqlx::query("SELECT * FROM uploads WHERE updated_at < ? ORDER BY updated_at")
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
            "SELECT COALESCE(SUM(repository = ?), 0), COUNT(*) FROM uploads WHERE account_id = ?",
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
        let marks = vec!["?"; stored.len()].join(", ");
        let mut out: Vec<RepositoryUsage> = Vec::new();
        for (sql, images) in [
            (
                format!(
                    "SELECT repository, COALESCE(SUM(size), 0) FROM repository_blobs
                     WHERE account_id = ? AND repository IN ({marks}) GROUP BY repository"
                ),
                false,
            ),
            (
                format!(
                    "SELECT repository, COUNT(*) FROM images
                     WHERE account_id = ? AND repository IN ({marks}) GROUP BY repository"
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
            "SELECT COALESCE(SUM(size), 0) FROM
               (SELECT digest, MAX(size) AS size FROM repository_blobs WHERE account_id = ?
                GROUP BY digest)",
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
        let mut tx = self.write_tx().await?;
        repository_in(&mut tx, account, repository).await?;
        for sql in [
            "DELETE FROM lifecycle_preview_results WHERE account_id = ? AND repository = ?",
            "DELETE FROM lifecycle_previews WHERE account_id = ? AND repository = ?",
        ] {
            sqlx::query(sql)
                .bind(account)
                .bind(repository)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        sqlx::query(
            "INSERT INTO lifecycle_previews (account_id, repository, policy, started_at)
             VALUES (?, ?, ?, ?)",
        )
        .bind(account)
        .bind(repository)
        .bind(&preview.policy)
        .bind(preview.started)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        for r in &preview.results {
            sqlx::query(
                "INSERT INTO lifecycle_preview_results
                    (account_id, repository, digest, tags, pushed_at, rule_priority)
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(account)
            .bind(repository)
            .bind(&r.digest)
            .bind(tag_lines(&r.tags))
            .bind(r.pushed_at)
            .bind(r.rule_priority)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn lifecycle_preview(
        &self,
        registry: RegistryKey<'_>,
        repository: &str,
    ) -> Result<Option<LifecyclePreview>> {
        let account = registry.account;
        let repository_key = registry.stored_name(repository);
        let repository: &str = &repository_key;
        // One read transaction: the preview and its results as one writer left them.
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let head: Option<(String, i64)> = sqlx::query_as(
            "SELECT policy, started_at FROM lifecycle_previews WHERE account_id = ? AND repository = ?",
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
             WHERE account_id = ? AND repository = ? ORDER BY pushed_at, digest",
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
            "UPDATE repositories SET lifecycle_updated = ?
             WHERE account_id = ? AND name = ? AND lifecycle_policy = ?",
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
            sqlx::query_as("SELECT state_version, state FROM uploads WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
        Ok(row.map(|(version, state)| UploadState { version, state }))
    }

    async fn save_upload_state(
        &self,
        id: &str,
        expected_version: i64,
        state: &[u8],
        now: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE uploads SET state = ?, state_version = state_version + 1, updated_at = ?
             WHERE id = ? AND state_version = ?",
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

    async fn gc_mark_step(
        &self,
        now: i64,
        after: Option<&crate::Holding>,
        limit: i64,
    ) -> Result<(u64, Option<crate::Holding>)> {
        crate::sqlite_gc::gc_mark_step(self, now, after, limit).await
    }

    async fn gc_holdings(
        &self,
        cutoff: i64,
        unmarked_as: Option<i64>,
        after: Option<&crate::Holding>,
        limit: i64,
    ) -> Result<Vec<crate::Holding>> {
        crate::sqlite_gc::gc_holdings(self, cutoff, unmarked_as, after, limit).await
    }

    async fn gc_sweep_holdings(
        &self,
        candidates: &[crate::Holding],
        cutoff: i64,
    ) -> Result<Vec<crate::Holding>> {
        crate::sqlite_gc::gc_sweep_holdings(self, candidates, cutoff).await
    }

    async fn gc_unheld_blobs(&self, after: &str, limit: i64) -> Result<Vec<(String, i64)>> {
        crate::sqlite_gc::gc_unheld_blobs(self, after, limit).await
    }

    async fn blob_holdings(&self, digest: &str) -> Result<i64> {
        crate::sqlite_gc::blob_holdings(self, digest).await
    }

    async fn known_blobs(&self, digests: &[String]) -> Result<Vec<String>> {
        crate::sqlite_gc::known_blobs(self, digests).await
    }

    async fn gc_delete_blob(
        &self,
        digest: &str,
        orphan: bool,
        remove: crate::ObjectRemoval<'_>,
    ) -> Result<crate::BlobSweep> {
        crate::sqlite_gc::gc_delete_blob(self, digest, orphan, remove).await
    }
}
