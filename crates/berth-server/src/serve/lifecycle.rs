//! The `lifecycle` job (run on one node at a time by [`crate::jobs`]): every
//! `lifecycle_interval_seconds`, each repository's lifecycle policy runs and the images
//! it expires are deleted ([`crate::registry::lifecycle::run`]).

use std::sync::Arc;

use super::App;
use crate::jobs::{Job, Outcome as JobOutcome};
use crate::registry::lifecycle::run::{repositories_with_policies, Outcome, PolicyRun};

pub fn job(app: &Arc<App>) -> Job {
    let app = app.clone();
    Job::new("lifecycle", app.config.lifecycle_interval, move || {
        let app = app.clone();
        async move { run_all(&app).await }
    })
}

/// Run every repository's lifecycle policy; says what it did.
pub async fn run_all(app: &App) -> JobOutcome {
    let repos = match repositories_with_policies(&*app.store, &*app.registry, None, None).await {
        Ok(r) => r,
        Err(e) => {
            return JobOutcome::new(
                format!("listing repositories with lifecycle policies failed: {e}"),
                0,
                true,
            )
        }
    };
    let run = PolicyRun {
        registry: &*app.registry,
        audit: &app.audit,
        region: &app.home_region,
        dry_run: false,
        run_id: crate::ids::request_id(),
    };
    let (mut expired, mut kept, mut problems) = (0, 0, Vec::new());
    for r in &repos {
        match run.run(r, crate::ids::now_ms()).await {
            Ok(list) => {
                for e in list {
                    if e.outcome == Outcome::Expired {
                        expired += 1;
                    } else {
                        kept += 1;
                    }
                }
            }
            Err(e) => problems.push(format!(
                "repository '{}' of registry '{}': {e}",
                r.name, r.account
            )),
        }
    }
    // lastEvaluatedAt moved: this node's cached repositories are stale.
    app.caches.invalidate_registry();
    let mut said = format!(
        "ran {} lifecycle policies: expired {expired} images ({kept} left for a later run)",
        repos.len()
    );
    if !problems.is_empty() {
        said.push_str("; not run: ");
        said.push_str(&problems.join("; "));
    }
    JobOutcome::new(said, expired, !problems.is_empty())
}
