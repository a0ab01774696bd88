//! `berth lifecycle run`: run repositories' lifecycle policies now, as the server's
//! `lifecycle` job does, against a data directory (also while the server runs) or a
//! scale-out registry's PostgreSQL database (`--metadata-url`, or `--config`).

use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::audit::{Audit, AuditSink};
use crate::registry::lifecycle::run::{repositories_with_policies, PolicyRun};
use crate::serve::config::{Config, Overrides};

#[derive(Debug, Subcommand)]
pub enum LifecycleCommand {
    /// Run the lifecycle policies of every repository that has one (or of those named),
    /// deleting the images they expire; prints one line per image: account, repository,
    /// digest, tags, push time, the rule, and what became of it.
    ///
    /// Images an index still lists are kept until the index goes; images changed since
    /// they were evaluated are left for the next run. Blobs the deleted images held are
    /// left to garbage collection. Each image expired is written to the audit log (the
    /// server's audit_log from --config, or --audit-log) as principal berth-lifecycle.
    /// Exits 1 if a repository's policy could not be run.
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Only this repository (in every account that has one, unless --account is given).
    #[arg(long, value_name = "NAME")]
    repository: Option<String>,
    /// Only the repositories of this account (registry id).
    #[arg(long, value_name = "ID")]
    account: Option<String>,
    /// Print what would be expired; delete nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    store: super::store_flags::StoreFlags,
    /// Where audit lines go: a file, "stdout" or "off" [default: the config's audit_log,
    /// else off]
    #[arg(long, value_name = "SINK")]
    audit_log: Option<String>,
}

pub fn run(cmd: LifecycleCommand) -> Result<ExitCode, String> {
    let LifecycleCommand::Run(a) = cmd;
    if let Some(id) = &a.account {
        if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("--account {id:?} is not a 12-digit account id"));
        }
    }
    if let Some(name) = &a.repository {
        if !berth_oci::names::valid_repository_name(name) {
            return Err(format!("--repository {name:?} is not a repository name"));
        }
    }
    let config_file = a.store.config.clone();
    let config = Config::load(
        config_file.as_deref(),
        &Overrides {
            audit_log: a.audit_log,
            ..a.store.overrides()
        },
    )?;
    let rt = super::runtime()?;
    rt.block_on(async {
        let meta = crate::serve::metadata::open(&config).await?;
        // Dry runs change nothing: nothing to audit.
        let sink = if a.dry_run {
            AuditSink::Off
        } else {
            config.audit.clone()
        };
        let audit = Audit::open(&sink).map_err(|e| format!("opening the audit log: {e}"))?;
        let repos = repositories_with_policies(
            &*meta.store,
            &*meta.registry,
            a.account.as_deref(),
            a.repository.as_deref(),
        )
        .await?;
        if repos.is_empty() {
            eprintln!("no repository with a lifecycle policy matches");
        }
        // Repositories of the home Region are stored without it (see RegistryKey).
        let home = meta
            .registry
            .recorded_setting("home-region")
            .await
            .map_err(|e| e.to_string())?
            .unwrap_or_else(|| config.region.clone());
        let run = PolicyRun {
            registry: &*meta.registry,
            audit: &audit,
            region: &home,
            dry_run: a.dry_run,
            run_id: crate::ids::request_id(),
        };
        let mut failed = false;
        for r in &repos {
            match run.run(r, crate::ids::now_ms()).await {
                Ok(list) => {
                    for e in list {
                        println!("{e}");
                    }
                }
                Err(e) => {
                    failed = true;
                    eprintln!(
                        "repository '{}' of registry '{}' not run: {e}",
                        r.name, r.account
                    );
                }
            }
        }
        // Every audit line on disk before the process ends.
        audit.close();
        Ok(if failed {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        })
    })
}
