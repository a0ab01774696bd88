//! `berth account create`: a new account and its root credentials. Works beside a
//! running server on the same data directory (the database takes concurrent writers), or
//! on a scale-out registry's PostgreSQL database (`--metadata-url`).

use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::serve::config::Config;

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
    #[command(flatten)]
    store: super::store_flags::StoreFlags,
    /// Print {"account_id", "access_key_id", "secret_access_key"} as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    store: super::store_flags::StoreFlags,
}

/// The store a command names, opened as the server opens it.
async fn open(
    store: super::store_flags::StoreFlags,
) -> Result<crate::serve::metadata::Metadata, String> {
    let file = store.config.clone();
    let config = Config::load(file.as_deref(), &store.overrides())?;
    crate::serve::metadata::open(&config).await
}

pub fn run(cmd: AccountCommand) -> Result<ExitCode, String> {
    let rt = super::runtime()?;
    match cmd {
        AccountCommand::Create(a) => rt.block_on(async {
            crate::serve::accounts::check(a.id.as_deref(), a.alias.as_deref())?;
            let meta = open(a.store).await?;
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
            let meta = open(a.store).await?;
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
