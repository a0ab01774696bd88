//! The cleaning jobs (run on one node at a time by [`crate::jobs`]): STS sessions a day
//! after they expire (until then they answer ExpiredToken), upload sessions left
//! untouched for `upload_idle_seconds`, with their staged files (for an S3 bucket: their
//! multipart uploads and staging objects), the garbage collector
//! ([`crate::registry::gc`]) every `gc_interval_seconds`, and the delivery of the
//! replication outbox ([`crate::registry::replication::deliver`]), all the time.
//!
//! Two jobs rather than one, so each has its own lease and its own schedule: a failing
//! or slow upload sweep (many staged files) does not hold back the session sweep, and
//! the lease names say what each node is doing.

use std::sync::Arc;

use super::App;
use crate::jobs::{Job, Outcome};

/// How long after it expires an STS session is forgotten.
pub const SESSION_RETENTION_SECS: i64 = 86_400;

/// The cleaning jobs, each every `clean_interval_seconds`.
pub fn jobs(app: &Arc<App>) -> Vec<Job> {
    let period = app.config.clean_interval;
    let sessions = app.clone();
    let uploads = app.clone();
    let collector = app.clone();
    let replicator = app.clone();
    vec![
        Job::new("expire-sessions", period, move || {
            let app = sessions.clone();
            async move { expire_sessions(&app).await }
        }),
        Job::new("expire-uploads", period, move || {
            let app = uploads.clone();
            async move { expire_uploads(&app).await }
        }),
        Job::new("gc", app.config.gc_interval, move || {
            let app = collector.clone();
            async move { collect_garbage(&app).await }
        }),
        // Delivers the replication outbox for as long as this node holds the lease.
        Job::new("replicate", std::time::Duration::from_secs(1), move || {
            let app = replicator.clone();
            async move {
                Outcome::new(
                    crate::registry::replication::deliver::run(&app).await,
                    0,
                    false,
                )
            }
        }),
    ]
}

/// Forget sessions that expired over a day ago; says how many went.
pub async fn expire_sessions(app: &App) -> Outcome {
    let before = crate::ids::now() - SESSION_RETENTION_SECS;
    match app.store.delete_sessions_expired_before(before).await {
        Ok(n) => Outcome::new(format!("removed {n} expired STS sessions"), n, false),
        Err(e) => Outcome::new(
            format!("removing expired STS sessions failed: {e}"),
            0,
            true,
        ),
    }
}

/// Remove upload sessions idle for `upload_idle` (their records and staged files), and
/// staging files left by uploads no record names; says how many went.
pub async fn expire_uploads(app: &App) -> Outcome {
    let expiry = crate::registry::uploads::expire_abandoned(
        &*app.registry,
        &app.blobs,
        app.config.upload_idle,
        false,
        &mut |_| {},
    )
    .await;
    Outcome::new(
        expiry.summary(),
        expiry.sessions + expiry.staging,
        expiry.failed,
    )
}

/// One garbage collection with the configured grace period; says what it reclaimed.
pub async fn collect_garbage(app: &App) -> Outcome {
    let options = crate::registry::gc::Options {
        grace: app.config.gc_grace,
        dry_run: false,
        duty: Some(crate::registry::gc::JOB_DUTY),
    };
    let mut said = |d: &crate::registry::gc::Deletion| tracing::debug!(?d, "garbage collected");
    match crate::registry::gc::collect(&*app.registry, &app.blobs, &options, &mut said).await {
        Ok(report) => Outcome::new(
            report.summary(false),
            report.blobs + report.released,
            !report.failures.is_empty(),
        ),
        Err(e) => Outcome::new(format!("garbage collection failed: {e}"), 0, true),
    }
}
