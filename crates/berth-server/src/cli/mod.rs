//! Command-line surface: argument parsing and dispatch.

mod account;
pub(crate) mod analysis;
pub(crate) mod cert;
pub(crate) mod estate;
mod gc;
mod lifecycle;
mod migrate;
mod migrate_blobs;
mod policy;
mod public;
mod remote;
mod replication;
mod serve;
mod store_flags;
mod upstream_credential;
pub(crate) mod whocan;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about = "Berth: a self-hosted container registry that speaks the Amazon ECR APIs and \
             decides every request with the AWS IAM policy language",
    long_about = "Berth: a self-hosted container registry that speaks the Amazon ECR APIs and \
                  decides every request with the AWS IAM policy language.\n\n\
                  `berth serve` runs, on one HTTP port, the OCI /v2 registry (docker, podman, \
                  skopeo, oras after `aws ecr get-login-password | docker login`), the ECR API \
                  (`aws ecr ...`), IAM and STS (users, keys, groups, roles, policies, AssumeRole) \
                  and Access Analyzer's ValidatePolicy, on SQLite and local files in a data \
                  directory. `berth account` adds accounts to a data directory. `berth migrate` \
                  copies one into PostgreSQL and another blob store. `berth policy` \
                  checks, lints, simulates and decides policies offline, and answers who can \
                  act on a repository and what is public, on policy files, a data directory or \
                  a running server."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the registry: OCI /v2, the ECR API, IAM, STS and Access Analyzer on one HTTP port.
    ///
    /// Every request is signed (SigV4, or a registry password from `aws ecr
    /// get-login-password`) and decided by IAM policies. Metadata lives in SQLite and blobs
    /// in files, both in the data directory. The first start on an empty data directory
    /// creates the default account and writes its root credentials to
    /// DATA_DIR/root-credentials.json (readable by its owner only). Secret access keys and
    /// server secrets are stored sealed with the key in DATA_DIR/secrets.key (made on first
    /// start; --secrets-key-file to keep it elsewhere): a copy of the database without it
    /// holds no usable credential.
    ///
    /// Flags win over the --config file, which wins over the defaults shown.
    Serve(serve::ServeArgs),
    /// Create and list the accounts of a data directory (also while the server runs).
    #[command(subcommand)]
    Account(account::AccountCommand),
    /// Check, lint, simulate and decide IAM policies; who can act on a repository, what is
    /// public (offline on files, on a data directory, or against a running server).
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Copy a data directory's registry into PostgreSQL (and its blobs into another blob
    /// store: a directory or an S3 bucket), to grow out of one machine.
    ///
    /// The destination can be taken from the scale-out nodes' configuration file
    /// (--config: metadata_url, blob_url, s3_*, secrets_key_file); flags win over it.
    ///
    /// Copies accounts, identities, keys, policies, STS sessions still valid, repositories,
    /// images, registry policies and server secrets exactly as stored (secrets stay sealed:
    /// the PostgreSQL database must be new or use the same secrets key), and the blobs the
    /// repositories hold, each checked against its digest before it appears at the
    /// destination. Upload sessions in progress are not copied. Nothing at the destination
    /// is overwritten: rows that differ there are listed, and running it again copies only
    /// what is missing, so an interrupted run resumes. Stop the server first for an exact
    /// copy. Exits 1 if a row or blob could not be copied.
    Migrate(migrate::MigrateArgs),
    /// Collect garbage now: release the blobs no image of a repository references (kept
    /// for the grace period first), delete the blob objects no repository holds and the
    /// objects the metadata does not know, printing each and the bytes reclaimed.
    ///
    /// Safe while servers run on the same store (their `gc` job does the same every
    /// gc_interval_seconds). Exits 1 if an object could not be deleted.
    Gc(gc::GcArgs),
    /// Run repositories' lifecycle policies now (the server runs them every
    /// lifecycle_interval_seconds), or see what they would expire (--dry-run).
    #[command(subcommand)]
    Lifecycle(lifecycle::LifecycleCommand),
    /// See how replication stands (the servers deliver it all the time).
    #[command(subcommand)]
    Replication(replication::ReplicationCommand),
    /// TLS certificates without a PKI: a private CA and a server certificate.
    #[command(subcommand)]
    Cert(cert::CertCommand),
    /// The credentials pull-through cache rules sign in to upstream registries with
    /// (stored sealed; a rule names one by the ARN `put` prints).
    #[command(subcommand)]
    UpstreamCredential(upstream_credential::UpstreamCredentialCommand),
}

/// Run a command; `Err` is a usage or I/O failure (exit 2).
pub fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Account(cmd) => account::run(cmd),
        Command::Policy(cmd) => policy::run(cmd),
        Command::Migrate(args) => migrate::run(args),
        Command::Gc(args) => gc::run(args),
        Command::Lifecycle(cmd) => lifecycle::run(cmd),
        Command::Replication(cmd) => replication::run(cmd),
        Command::Cert(cmd) => cert::run(cmd),
        Command::UpstreamCredential(cmd) => upstream_credential::run(cmd),
    }
}

/// A multi-threaded runtime for the commands that do I/O.
fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))
}
