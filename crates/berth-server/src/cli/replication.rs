//! `berth replication status`: the replication outbox at a glance — how many replications
//! wait and for how long, how many were delivered or failed, and the latest failure — on
//! a data directory or a scale-out registry's database.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::serve::config::Config;

#[derive(Debug, Subcommand)]
pub enum ReplicationCommand {
    /// Say how the replication outbox stands: pending replications and the oldest one's
    /// age, delivered and failed counts, the latest failure and why.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    store: super::store_flags::StoreFlags,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: ReplicationCommand) -> Result<ExitCode, String> {
    let ReplicationCommand::Status(a) = cmd;
    let config_file = a.store.config.clone();
    let config = Config::load(config_file.as_deref(), &a.store.overrides())?;
    super::runtime()?.block_on(async {
        let meta = crate::serve::metadata::open(&config).await?;
        let s = meta
            .registry
            .replication_summary()
            .await
            .map_err(|e| format!("reading the replication outbox: {e}"))?;
        let now = crate::ids::now_ms();
        let oldest_secs = s.oldest_pending.map(|t| (now - t).max(0) as f64 / 1000.0);
        let last = s.last_failure.as_ref().map(|f| {
            (
                format!(
                    "{}/{}@{} to {} in {}",
                    f.account, f.repository, f.digest, f.destination.account, f.destination.region
                ),
                f.failure_code.clone().unwrap_or_default(),
                f.state.as_str(),
            )
        });
        if a.json {
            let v = serde_json::json!({
                "pending": s.pending,
                "oldestPendingSeconds": oldest_secs,
                "complete": s.complete,
                "failed": s.failed,
                "lastFailure": last.as_ref().map(|(what, why, state)| serde_json::json!({
                    "replication": what, "failureCode": why, "status": state,
                })),
            });
            println!("{v}");
        } else {
            match oldest_secs {
                Some(age) => println!(
                    "pending: {} (the oldest recorded {age:.1} s ago)",
                    s.pending
                ),
                None => println!("pending: 0"),
            }
            println!("delivered: {}", s.complete);
            println!("failed: {}", s.failed);
            match last {
                Some((what, why, state)) => println!("last failure: {what} ({state}): {why}"),
                None => println!("last failure: none"),
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
