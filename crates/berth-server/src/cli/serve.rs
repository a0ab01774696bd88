//! `berth serve`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::serve::config::{Config, Overrides};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where the metadata database and blobs live.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on (IP:PORT; port 0 picks a free one).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// The region this server is (credential scopes must name it or us-east-1).
    #[arg(long, value_name = "REGION")]
    region: Option<String>,
    /// A TOML configuration file (flags given here win over it).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Audit log of authorization decisions: stdout, off, or a file path.
    #[arg(long, value_name = "SINK")]
    audit_log: Option<String>,
}

pub fn run(args: ServeArgs) -> Result<ExitCode, String> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = Config::load(
        args.config.as_deref(),
        &Overrides {
            listen: args.listen,
            data_dir: args.data_dir,
            region: args.region,
            audit_log: args.audit_log,
        },
    )?;
    super::runtime()?.block_on(crate::serve::run(config))?;
    Ok(ExitCode::SUCCESS)
}
