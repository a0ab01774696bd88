//! `berth account create`: a new account and its root credentials. Works beside a
//! running server on the same data directory (the database takes concurrent writers).

use std::path::PathBuf;
use std::process::ExitCode;

use berth_store::Store;
use clap::{Args, Subcommand};

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
    #[arg(long, value_name = "DIR", default_value = "./berth-data")]
    data_dir: PathBuf,
    /// The key secrets are sealed with in the database (the server's --secrets-key-file)
    /// [default: DATA_DIR/secrets.key]
    #[arg(long, value_name = "FILE")]
    secrets_key_file: Option<PathBuf>,
    /// Print {"account_id", "access_key_id", "secret_access_key"} as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long, value_name = "DIR", default_value = "./berth-data")]
    data_dir: PathBuf,
    /// The key secrets are sealed with in the database (the server's --secrets-key-file)
    /// [default: DATA_DIR/secrets.key]
    #[arg(long, value_name = "FILE")]
    secrets_key_file: Option<PathBuf>,
}

pub fn run(cmd: AccountCommand) -> Result<ExitCode, String> {
    let rt = super::runtime()?;
    match cmd {
        AccountCommand::Create(a) => rt.block_on(async {
            crate::serve::accounts::check(a.id.as_deref(), a.alias.as_deref())?;
            let store =
                crate::serve::open_store(&a.data_dir, a.secrets_key_file.as_deref()).await?;
            let new = crate::serve::accounts::create(&*store, a.id.as_deref(), a.alias.as_deref())
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
            let store =
                crate::serve::open_store(&a.data_dir, a.secrets_key_file.as_deref()).await?;
            for acct in store.accounts().await.map_err(|e| e.to_string())? {
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
