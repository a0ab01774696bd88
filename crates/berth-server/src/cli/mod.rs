//! Command-line surface: argument parsing and dispatch.

mod policy;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about = "Berth: an ECR-compatible container registry with AWS IAM policies"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check, simulate and decide IAM policies offline.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
}

/// Run a command; `Err` is a usage or I/O failure (exit 2).
pub fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Policy(cmd) => policy::run(cmd),
    }
}
