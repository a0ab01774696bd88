//! `berth account create`: a new account and its root credentials. Works beside a
//! running server on the same data directory (the database takes concurrent writers), or
//! on a scale-out registry's PostgreSQL database (`--metadata-url`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::serve::config::{Config, Overrides};

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Create an account; prints its id and root access key.
    Create(CreateArgs),
    /// List the accounts of a data directory.
    List(ListArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The 12-digit account id (random when absent).
    #[arg(long)]
    id: Option<String>,
    /// An alias for the account.
    #[arg(long)]
    alias: Option<String>,
    /// The data directory [default: ./berth-data]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The server's configuration file: its data_dir, metadata_url and secrets_key_file
    /// apply (the flags here win)
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
    /// Print {"account_id", "access_key_id", "secret_access_key"} as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// The data directory [default: ./berth-data]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The server's configuration file: its data_dir, metadata_url and secrets_key_file
    /// apply (the flags here win)
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
}

/// The store a command names, opened as the server opens it.
async fn open(
    config: Option<&std::path::Path>,
    data_dir: Option<PathBuf>,
    secrets_key_file: Option<PathBuf>,
    metadata_url: Option<String>,
) -> Result<crate::serve::metadata::Metadata, String> {
    let config = Config::load(
        config,
        &Overrides {
            data_dir,
            secrets_key_file,
            metadata_url,
            ..Overrides::default()
        },
    )?;
    crate::serve::metadata::open(&config).await
}

pub fn run(cmd: AccountCommand) -> Result<ExitCode, String> {
    let rt = super::runtime()?;
    match cmd {
        AccountCommand::Create(a) => rt.block_on(async {
            crate::serve::accounts::check(a.id.as_deref(), a.alias.as_deref())?;
            let meta = open(
                a.config.as_deref(),
                a.data_dir,
                a.secrets_key_file,
                a.metadata_url,
            )
            .await?;
            let new =
                crate::serve::accounts::create(&*meta.store, a.id.as_deref(), a.alias.as_deref())
                    .await?;
            if a.json {
                println!("{}", new.credentials_json());
            } else {
                println!("account id:         {}", new.account.id);
                println!("access key id:      {}", new.root_key.id);
                println!("secret access key:  {}", new.root_key.secret);
            }
            Ok(ExitCode::SUCCESS)
        }),
        AccountCommand::List(a) => rt.block_on(async {
            let meta = open(
                a.config.as_deref(),
                a.data_dir,
                a.secrets_key_file,
                a.metadata_url,
            )
            .await?;
            for acct in meta.store.accounts().await.map_err(|e| e.to_string())? {
                println!(
                    "{}\t{}\t{}",
                    acct.id,
                    acct.alias.as_deref().unwrap_or("-"),
                    crate::ids::iso8601(acct.created)
                );
            }
            Ok(ExitCode::SUCCESS)
        }),
    }
}
