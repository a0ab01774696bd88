//! `berth gc`: one garbage collection now, on a data directory or a scale-out registry
//! (the same protocol as the server's `gc` job: see `registry/gc.rs`), and the removal of
//! abandoned upload sessions (the `expire-uploads` job's), safe while servers run on the
//! same store.

use std::process::ExitCode;

use clap::Args;

use crate::registry::gc::{self, Deletion};
use crate::serve::config::{grace_seconds, upload_idle_seconds, Config, Overrides};

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Only print what would be deleted (upload sessions included; staging files no
    /// session names are not looked for).
    #[arg(long)]
    dry_run: bool,
    /// Keep blobs no image references for this long after the collector first sees them
    /// so (0: delete them now) [default: gc_grace_seconds of --config, else 3600]
    #[arg(long, value_name = "SECONDS")]
    grace: Option<f64>,
    /// Remove upload sessions untouched for this long, with their staged data
    /// [default: upload_idle_seconds of --config, else 3600]
    #[arg(long, value_name = "SECONDS")]
    upload_idle: Option<f64>,
    #[command(flatten)]
    store: super::store_flags::StoreFlags,
    /// The blob store, as the server's --blob-url [default: file://DATA_DIR]
    #[arg(long, value_name = "URL")]
    blob_url: Option<String>,
}

pub fn run(a: GcArgs) -> Result<ExitCode, String> {
    let config_file = a.store.config.clone();
    let config = Config::load(
        config_file.as_deref(),
        &Overrides {
            blob_url: a.blob_url,
            ..a.store.overrides()
        },
    )?;
    let grace = match a.grace {
        Some(secs) => grace_seconds(secs)?,
        None => config.gc_grace,
    };
    let upload_idle = match a.upload_idle {
        Some(secs) => upload_idle_seconds(secs)?,
        None => config.upload_idle,
    };
    let options = gc::Options {
        grace,
        dry_run: a.dry_run,
        duty: None,
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
        // Abandoned uploads first: the blobs they were writing are not published, so
        // their removal frees staged data only, never a blob the collector weighs.
        let expiry = crate::registry::uploads::expire_abandoned(
            &*meta.registry,
            &blobs,
            upload_idle,
            a.dry_run,
            &mut |u| {
                println!(
                    "{verb}remove upload {} to {}/{} (untouched for {} s)",
                    u.id,
                    u.account,
                    u.repository,
                    (crate::ids::now_ms() - u.updated) / 1000
                )
            },
        )
        .await;
        println!("{}", expiry.summary());
        let report = gc::collect(&*meta.registry, &blobs, &options, &mut said)
            .await
            .map_err(|e| format!("garbage collection: {e}"))?;
        println!("{}", report.summary(a.dry_run));
        Ok(if report.failures.is_empty() && !expiry.failed {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })
}
