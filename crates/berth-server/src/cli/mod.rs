//! Command-line surface: argument parsing and dispatch.

mod account;
mod analysis;
mod estate;
mod policy;
mod public;
mod remote;
mod serve;
mod whocan;

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
    /// Run the server: IAM and STS APIs on one HTTP port.
    Serve(serve::ServeArgs),
    /// Manage accounts.
    #[command(subcommand)]
    Account(account::AccountCommand),
    /// Check, simulate and decide IAM policies offline.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
}

/// Run a command; `Err` is a usage or I/O failure (exit 2).
pub fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Account(cmd) => account::run(cmd),
        Command::Policy(cmd) => policy::run(cmd),
    }
}

/// A multi-threaded runtime for the commands that do I/O.
fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))
}
