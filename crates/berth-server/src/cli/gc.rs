//! `berth gc`: one garbage collection now, on a data directory or a scale-out registry
//! (the same protocol as the server's `gc` job: see `registry/gc.rs`), safe while servers
//! run on the same store.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::registry::gc::{self, Deletion};
use crate::serve::config::{grace_seconds, Config, Overrides};

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Only print what would be deleted.
    #[arg(long)]
    dry_run: bool,
    /// Keep blobs no image references for this long after the collector first sees them
    /// so (0: delete them now) [default: gc_grace_seconds of --config, else 3600]
    #[arg(long, value_name = "SECONDS")]
    grace: Option<f64>,
    /// The data directory [default: ./berth-data]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The servers' configuration file: its data_dir, metadata_url, blob_url, s3_*,
    /// secrets_key_file and gc_grace_seconds apply (the flags here win)
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The key secrets are sealed with in the database [default: DATA_DIR/secrets.key]
    #[arg(long, value_name = "FILE")]
    secrets_key_file: Option<PathBuf>,
    /// The metadata store, as the server's --metadata-url [default: sqlite://DATA_DIR/berth.db]
    #[arg(long, value_name = "URL")]
    metadata_url: Option<String>,
    /// The blob store, as the server's --blob-url [default: file://DATA_DIR]
    #[arg(long, value_name = "URL")]
    blob_url: Option<String>,
}

pub fn run(a: GcArgs) -> Result<ExitCode, String> {
    let config = Config::load(
        a.config.as_deref(),
        &Overrides {
            data_dir: a.data_dir,
            secrets_key_file: a.secrets_key_file,
            metadata_url: a.metadata_url,
            blob_url: a.blob_url,
            ..Overrides::default()
        },
    )?;
    let grace = match a.grace {
        Some(secs) => grace_seconds(secs)?,
        None => config.gc_grace,
    };
    let options = gc::Options {
        grace,
        dry_run: a.dry_run,
    };
    super::runtime()?.block_on(async {
        let meta = crate::serve::metadata::open(&config).await?;
        let blobs = crate::serve::open_blobs(&config, &meta.registry).await?;
        let verb = if a.dry_run { "would " } else { "" };
        let mut said = |d: &Deletion| match d {
            Deletion::Released(h) => println!(
                "{verb}release {} held by {}/{} ({} bytes)",
                h.digest, h.account, h.repository, h.size
            ),
            Deletion::Blob {
                digest,
                size,
                orphan,
            } => println!(
                "{verb}delete blob {digest} ({size} bytes{})",
                if *orphan { ", no metadata" } else { "" }
            ),
        };
        let report = gc::collect(&*meta.registry, &blobs, &options, &mut said)
            .await
            .map_err(|e| format!("garbage collection: {e}"))?;
        println!("{}", report.summary(a.dry_run));
        Ok(if report.failures.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })
}
