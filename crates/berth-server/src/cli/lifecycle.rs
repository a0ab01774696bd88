//! `berth lifecycle run`: run repositories' lifecycle policies now, as the server's
//! `lifecycle` job does, against a data directory (also while the server runs) or a
//! scale-out registry's PostgreSQL database (`--metadata-url`, or `--config`).

use std::path::PathBuf;
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
    /// The data directory [default: ./berth-data]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The server's configuration file: its data_dir, metadata_url, secrets_key_file,
    /// region and audit_log apply (the flags here win)
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The key secrets are sealed with in the database (the server's --secrets-key-file)
    /// [default: DATA_DIR/secrets.key]
    #[arg(long, value_name = "FILE")]
    secrets_key_file: Option<PathBuf>,
    /// The metadata store, as the server's --metadata-url (postgres://… for a scale-out
    /// registry) [default: sqlite://DATA_DIR/berth.db]
    #[arg(long, value_name = "URL")]
    metadata_url: Option<String>,
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
    let config = Config::load(
        a.config.as_deref(),
        &Overrides {
            data_dir: a.data_dir,
            secrets_key_file: a.secrets_key_file,
            metadata_url: a.metadata_url,
            audit_log: a.audit_log,
            ..Overrides::default()
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
        let run = PolicyRun {
            registry: &*meta.registry,
            audit: &audit,
            region: &config.region,
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
