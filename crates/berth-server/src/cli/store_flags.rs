//! The flags that say where a command finds the registry's stores, as the server finds
//! them: shared by the commands that work on a data directory or a scale-out registry
//! (`berth account`, `berth gc`, `berth lifecycle run`).

use std::path::PathBuf;

use clap::Args;

use crate::serve::config::Overrides;

#[derive(Debug, Args)]
pub struct StoreFlags {
    /// The data directory [default: ./berth-data]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The server's configuration file: what it says of the data directory, the metadata
    /// and blob stores, the secrets key file (and the command's own settings) applies;
    /// the flags here win
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The key secrets are sealed with in the database (the server's --secrets-key-file)
    /// [default: DATA_DIR/secrets.key]
    #[arg(long, value_name = "FILE")]
    pub secrets_key_file: Option<PathBuf>,
    /// The metadata store, as the server's --metadata-url (postgres://… for a scale-out
    /// registry) [default: sqlite://DATA_DIR/berth.db]
    #[arg(long, value_name = "URL")]
    pub metadata_url: Option<String>,
}

impl StoreFlags {
    /// These flags as overrides of the configuration file.
    pub fn overrides(self) -> Overrides {
        Overrides {
            data_dir: self.data_dir,
            secrets_key_file: self.secrets_key_file,
            metadata_url: self.metadata_url,
            ..Overrides::default()
        }
    }
}
