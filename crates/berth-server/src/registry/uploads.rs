//! Upload sessions, one set of rules for both front doors (OCI `/v2` blob uploads and ECR's
//! layer uploads): a session belongs to the repository and principal that started it and
//! to nobody else; its bytes go to the blob store and its row to the metadata store; a
//! completed upload makes the repository hold the blob; a completion whose content does
//! not match its digest ends the session. Each front door maps [`UploadError`] to its own
//! wire errors.

use berth_blobs::{BlobError, Digest};
use berth_store::{RegistryError, Repository, Upload};

use crate::serve::App;

/// Why an upload step failed.
#[derive(Debug)]
pub enum UploadError {
    /// No such session, or it belongs to another repository or principal.
    Unknown,
    /// A limit refuses a new session (the sentence says which).
    Limit(Limit, String),
    Blob(BlobError),
    Store(RegistryError),
}

/// Which limit refused an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Too many sessions open at once in the repository or the account.
    Sessions,
    /// The account's storage quota is used up.
    Quota,
}

impl From<BlobError> for UploadError {
    fn from(e: BlobError) -> Self {
        UploadError::Blob(e)
    }
}

impl From<RegistryError> for UploadError {
    fn from(e: RegistryError) -> Self {
        UploadError::Store(e)
    }
}

/// Whether `repo` may take new data: its account is under its storage quota (if it has
/// one). Monolithic uploads and mounts check this; [`start`] does too.
pub async fn within_quota(app: &App, repo: &Repository) -> Result<(), UploadError> {
    let Some(quota) = app.config.limits.quota_of(&repo.account) else {
        return Ok(());
    };
    let used = app.usage.of(&*app.registry, &repo.account).await?;
    if used >= quota {
        return Err(UploadError::Limit(
            Limit::Quota,
            format!(
                "The storage quota of registry {} is used up: {used} of {quota} bytes are held. \
                 Delete images (garbage collection then frees their layers) or ask for a larger quota",
                repo.account
            ),
        ));
    }
    Ok(())
}

/// Start a session in `repo` for `principal`; returns its id. Refused past the caps on
/// sessions open at once (per repository, per account) and past the account's storage
/// quota.
pub async fn start(app: &App, repo: &Repository, principal: &str) -> Result<String, UploadError> {
    let limits = &app.config.limits;
    let (in_repository, in_account) = app
        .registry
        .upload_counts(repo.registry(), &repo.name)
        .await?;
    if in_repository >= limits.uploads_per_repository {
        return Err(UploadError::Limit(
            Limit::Sessions,
            format!(
                "Too many upload sessions are open in repository '{}' ({in_repository}, at most {}): \
                 finish or cancel some, or retry once they end (idle ones end after upload_idle_seconds)",
                repo.name, limits.uploads_per_repository
            ),
        ));
    }
    if in_account >= limits.uploads_per_account {
        return Err(UploadError::Limit(
            Limit::Sessions,
            format!(
                "Too many upload sessions are open in registry {} ({in_account}, at most {})",
                repo.account, limits.uploads_per_account
            ),
        ));
    }
    within_quota(app, repo).await?;
    let id = app.blobs.start_upload().await?;
    let now = crate::ids::now_ms();
    let made = app
        .registry
        .create_upload(&Upload {
            id: id.clone(),
            account: repo.account.clone(),
            region: repo.region.clone(),
            repository: repo.name.clone(),
            principal: principal.to_string(),
            created: now,
            updated: now,
        })
        .await;
    if let Err(e) = made {
        // The repository went away meanwhile: nothing may keep the staged session.
        let _ = app.blobs.cancel(&id).await;
        return Err(e.into());
    }
    Ok(id)
}

/// The bytes a session holds, if it is `principal`'s session in `registry`'s `repository`.
pub async fn held(
    app: &App,
    id: &str,
    registry: berth_store::RegistryKey<'_>,
    repository: &str,
    principal: &str,
) -> Result<u64, UploadError> {
    let u = app.registry.upload(id).await?.ok_or(UploadError::Unknown)?;
    if u.account != registry.account
        || u.region.as_deref() != registry.region
        || u.repository != repository
        || u.principal != principal
    {
        return Err(UploadError::Unknown);
    }
    app.blobs.upload_size(id).await?.ok_or(UploadError::Unknown)
}

/// Note that a session just received bytes (it is not abandoned).
pub async fn received(app: &App, id: &str) -> Result<(), UploadError> {
    Ok(app.registry.touch_upload(id, crate::ids::now_ms()).await?)
}

/// Complete a session as the blob `digest`: verified, then published by the blob store
/// under the metadata store's lock of the blob's row (see [`super::gc`]), then held by
/// `repo`; the session ends. A digest mismatch ends the session too (its staged data is
/// gone). Returns the blob's size.
pub async fn complete(
    app: &App,
    id: &str,
    repo: &Repository,
    digest: &Digest,
) -> Result<u64, UploadError> {
    let name = digest.to_string();
    let now = crate::ids::now_ms();
    let registry = &app.registry;
    let finished = app
        .blobs
        .finish_with(id, digest, |size| {
            registry.lock_blob(&name, size as i64, now)
        })
        .await;
    let (size, lock) = match finished {
        Ok(Ok(done)) => done,
        Ok(Err(store)) => return Err(store.into()),
        Err(e) => {
            if matches!(e, BlobError::DigestMismatch { .. }) {
                let _ = app.registry.delete_upload(id).await;
            }
            return Err(e.into());
        }
    };
    lock.hold(repo.registry(), &repo.name, now).await?;
    app.registry.delete_upload(id).await?;
    Ok(size)
}

/// Abandon a session and its data.
pub async fn cancel(app: &App, id: &str) -> Result<(), UploadError> {
    app.blobs.cancel(id).await?;
    Ok(app.registry.delete_upload(id).await?)
}

/// What an expiry of abandoned uploads did (or, in a dry run, would do).
#[derive(Debug, Default)]
pub struct Expiry {
    /// Sessions removed (in a dry run: idle long enough to be).
    pub sessions: u64,
    /// Staging files (or objects) removed that no session record names; not looked for
    /// in a dry run.
    pub staging: u64,
    /// Sentences for the log, the first naming how many sessions went.
    pub said: Vec<String>,
    /// Whether something could not be listed or removed (left for the next run).
    pub failed: bool,
}

impl Expiry {
    /// One sentence for logs and the command's output.
    pub fn summary(&self) -> String {
        self.said.join("; ")
    }
}

/// Remove upload sessions left untouched for `idle` (their records and staged data: for
/// an S3 bucket, their multipart uploads and staging objects), and staging files no
/// record names that were last written over `idle` ago. The `expire-uploads` job and
/// `berth gc` both run it. `said` hears every session removed (or, in a dry run, that
/// would be); a dry run removes nothing and does not look for staging files.
pub async fn expire_abandoned(
    registry: &dyn berth_store::RegistryStore,
    blobs: &berth_blobs::BlobStore,
    idle: std::time::Duration,
    dry_run: bool,
    said: &mut (dyn FnMut(&Upload) + Send),
) -> Expiry {
    let idle_ms = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
    let mut out = Expiry::default();
    match registry
        .stale_uploads(crate::ids::now_ms().saturating_sub(idle_ms))
        .await
    {
        Ok(stale) => {
            let mut failures = Vec::new();
            for u in stale {
                if dry_run {
                    out.sessions += 1;
                    said(&u);
                    continue;
                }
                // The staged file may already be gone (expired below, or a crash).
                let _ = blobs.cancel(&u.id).await;
                match registry.delete_upload(&u.id).await {
                    Ok(()) => {
                        out.sessions += 1;
                        said(&u);
                    }
                    Err(e) => {
                        out.failed = true;
                        failures.push(format!("removing upload {} failed: {e}", u.id))
                    }
                }
            }
            let verb = if dry_run { "would remove" } else { "removed" };
            out.said
                .push(format!("{verb} {} abandoned uploads", out.sessions));
            out.said.extend(failures);
        }
        Err(e) => {
            out.failed = true;
            out.said
                .push(format!("listing abandoned uploads failed: {e}"))
        }
    }
    if dry_run {
        return out;
    }
    let cutoff = std::time::SystemTime::now()
        .checked_sub(idle)
        .unwrap_or(std::time::SystemTime::UNIX_EPOCH);
    match blobs.expire_uploads(cutoff).await {
        Ok(n) => {
            out.staging = n as u64;
            out.said.push(format!("removed {n} idle staging files"))
        }
        Err(e) => {
            out.failed = true;
            out.said
                .push(format!("removing idle staging files failed: {e}"))
        }
    }
    out
}
