//! `berth migrate`: growing out of one machine. Copies an embedded registry (SQLite
//! metadata, blobs in the data directory) into a scale-out one (PostgreSQL metadata, blobs
//! in another store): blobs first, so the copied metadata never names a blob the
//! destination lacks, then the metadata (berth_store::copy_metadata), then any blob the
//! metadata gained meanwhile. Nothing at the destination is overwritten; running it again
//! copies what is missing and reports what differs.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use berth_blobs::BlobStore;
use berth_store::{CopyOptions, KeyError, PgStore, SqliteStore, TableReport};
use clap::Args;

use super::migrate_blobs::{copy_blobs, BlobTotals};
use crate::serve::secrets;

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The PostgreSQL database to copy into, postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE
    /// (its schema is created or brought up to date first)
    #[arg(long, value_name = "URL")]
    to_metadata: String,
    /// The embedded registry's data directory: the defaults of --from-metadata,
    /// --from-blobs and --secrets-key-file are in it [default: ./berth-data]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The SQLite database to copy, sqlite://PATH [default: sqlite://DATA_DIR/berth.db]
    #[arg(long, value_name = "URL")]
    from_metadata: Option<String>,
    /// Where the blobs are, file://DIR (blobs under DIR/blobs/sha256/)
    /// [default: file://DATA_DIR]
    #[arg(long, value_name = "URL")]
    from_blobs: Option<String>,
    /// Where to copy the blobs, file://DIR; without it only the metadata is copied
    /// (for a deployment that keeps using the same blob directory)
    #[arg(long, value_name = "URL")]
    to_blobs: Option<String>,
    /// The key secrets are sealed with (the server's --secrets-key-file): the PostgreSQL
    /// database must be new or already use it, since sealed secrets are copied as they are
    /// [default: DATA_DIR/secrets.key]
    #[arg(long, value_name = "FILE")]
    secrets_key_file: Option<PathBuf>,
    /// Most rows written per PostgreSQL transaction (at most 5000)
    #[arg(long, value_name = "N", default_value_t = berth_store::DEFAULT_BATCH_ROWS)]
    batch_rows: usize,
}

/// A blob store named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum BlobUrl {
    File(PathBuf),
}

impl BlobUrl {
    fn parse(flag: &str, url: &str) -> Result<BlobUrl, String> {
        if let Some(dir) = url.strip_prefix("file://") {
            if dir.is_empty() {
                return Err(format!("{flag} {url}: file:// needs a directory"));
            }
            return Ok(BlobUrl::File(PathBuf::from(dir)));
        }
        Err(format!(
            "{flag} {url}: expected file://DIR (blobs under DIR/blobs/sha256/)"
        ))
    }

    fn show(&self) -> String {
        match self {
            BlobUrl::File(dir) => format!("file://{}", dir.display()),
        }
    }

    /// Open it; a source must already hold a blob directory (nothing is created there).
    async fn open(&self, source: bool) -> Result<BlobStore, String> {
        match self {
            BlobUrl::File(dir) => {
                if source && !dir.join("blobs").is_dir() {
                    return Err(format!(
                        "{} holds no blobs directory: is it the data directory?",
                        self.show()
                    ));
                }
                BlobStore::local(dir)
                    .await
                    .map_err(|e| format!("opening the blob store {}: {e}", self.show()))
            }
        }
    }
}

/// The SQLite database a --from-metadata URL names.
fn sqlite_path(url: &str) -> Result<PathBuf, String> {
    match url.strip_prefix("sqlite://") {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => Err(format!("--from-metadata {url}: expected sqlite://PATH")),
    }
}

pub fn run(a: MigrateArgs) -> Result<ExitCode, String> {
    let data_dir = a
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("./berth-data"));
    let db = match &a.from_metadata {
        Some(url) => sqlite_path(url)?,
        None => data_dir.join("berth.db"),
    };
    let from_blobs = match &a.from_blobs {
        Some(url) => BlobUrl::parse("--from-blobs", url)?,
        None => BlobUrl::File(data_dir.clone()),
    };
    let to_blobs = a
        .to_blobs
        .as_deref()
        .map(|url| BlobUrl::parse("--to-blobs", url))
        .transpose()?;
    if to_blobs.as_ref() == Some(&from_blobs) {
        return Err("--to-blobs names the blob store being copied from".into());
    }
    let key_path = secrets::key_path(&data_dir, a.secrets_key_file.as_deref());
    super::runtime()?.block_on(async {
        let (from, to) = open_stores(&db, &key_path, &a.to_metadata).await?;
        let blob_stores = match &to_blobs {
            Some(dest) => Some((from_blobs.open(true).await?, dest.open(false).await?)),
            None => None,
        };
        let mut blobs = BlobTotals::default();
        let mut done: HashSet<String> = HashSet::new();
        if let Some((src, dst)) = &blob_stores {
            println!(
                "blobs: {} -> {}",
                from_blobs.show(),
                to_blobs.as_ref().map(BlobUrl::show).unwrap_or_default()
            );
            copy_referenced(&from, src, dst, &mut done, &mut blobs).await?;
        }

        println!("metadata: {} -> PostgreSQL", db.display());
        let options = CopyOptions {
            batch_rows: a.batch_rows,
            ..CopyOptions::default()
        };
        let report = berth_store::copy_metadata(&from, &to, &options, &mut print_table)
            .await
            .map_err(|e| e.to_string())?;

        if let Some((src, dst)) = &blob_stores {
            // Blobs the source's metadata gained while it was copied (a server still running).
            copy_referenced(&from, src, dst, &mut done, &mut blobs).await?;
        }
        to.close().await;

        println!(
            "summary: rows {} copied, {} already there, {} differing",
            report.copied(),
            report.present(),
            report.conflicting()
        );
        if blob_stores.is_some() {
            println!(
                "summary: blobs {} copied ({} bytes), {} already there ({} bytes), {} failed",
                blobs.copied,
                blobs.bytes_copied,
                blobs.present,
                blobs.bytes_present,
                blobs.failed.len()
            );
        } else {
            println!("summary: blobs not copied (no --to-blobs)");
        }
        let mut problems = Vec::new();
        if report.conflicting() > 0 {
            problems.push(format!(
                "{} rows were not copied because the destination holds other rows under \
                 their keys (listed above; the destination's rows were left as they are)",
                report.conflicting()
            ));
        }
        if !blobs.failed.is_empty() {
            let named: Vec<String> = blobs
                .failed
                .iter()
                .map(|f| format!("{} ({})", f.digest, f.why))
                .collect();
            problems.push(format!(
                "{} blobs were not copied: {}",
                blobs.failed.len(),
                named.join("; ")
            ));
        }
        if problems.is_empty() {
            Ok(ExitCode::SUCCESS)
        } else {
            for p in &problems {
                eprintln!("berth migrate: {p}");
            }
            Ok(ExitCode::FAILURE)
        }
    })
}

/// Open the source with the secrets key (which must exist: migrate never makes one) and
/// connect to the destination with the same key; either refusing the key stops here,
/// before anything is copied.
async fn open_stores(
    db: &Path,
    key_path: &Path,
    to_url: &str,
) -> Result<(SqliteStore, PgStore), String> {
    if !db.is_file() {
        return Err(format!(
            "{} does not exist: --data-dir or --from-metadata must name the embedded \
             registry's database",
            db.display()
        ));
    }
    if !key_path.is_file() {
        return Err(format!(
            "the secrets key file {} does not exist: migrate needs the key the registry's \
             secrets are sealed with (--secrets-key-file, the server's secrets_key_file)",
            key_path.display()
        ));
    }
    let key = secrets::load_or_create(key_path, true, db)?;
    let from = SqliteStore::open_without_secrets(db)
        .await
        .map_err(|e| format!("opening {}: {e}", db.display()))?
        .with_secrets_key(&key)
        .await
        .map_err(|e| match e {
            KeyError::WrongKey => format!(
                "the secrets key in {} is not the key the secrets in {} were sealed with",
                key_path.display(),
                db.display()
            ),
            KeyError::Store(e) => format!("opening {}: {e}", db.display()),
        })?;
    let to = PgStore::connect(to_url, &key).await.map_err(|e| match e {
        KeyError::WrongKey => format!(
            "the PostgreSQL database's secrets are sealed with another key than the one in {}: \
             migrate into a new database, or into one made with this key",
            key_path.display()
        ),
        KeyError::Store(e) => e.to_string(),
    })?;
    Ok((from, to))
}

/// Copy the blobs the source's repositories hold that this run has not handled yet.
async fn copy_referenced(
    from: &SqliteStore,
    src: &BlobStore,
    dst: &BlobStore,
    done: &mut HashSet<String>,
    totals: &mut BlobTotals,
) -> Result<(), String> {
    let todo: Vec<(String, i64)> = berth_store::referenced_blobs(from)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|(d, _)| !done.contains(d))
        .collect();
    let total = todo.len();
    let mut seen = 0usize;
    copy_blobs(src, dst, &todo, totals, &mut |t, failed| {
        seen += 1;
        if let Some(f) = failed {
            println!("  blob {}: {}", f.digest, f.why);
        }
        if seen.is_multiple_of(100) || seen == total {
            println!(
                "  blobs {seen}/{total}: {} copied ({} bytes), {} already there, {} failed",
                t.copied,
                t.bytes_copied,
                t.present,
                t.failed.len()
            );
        }
    })
    .await;
    done.extend(todo.into_iter().map(|(d, _)| d));
    Ok(())
}

/// One line per table, then the rows it could not copy.
fn print_table(t: &TableReport) {
    if t.left_behind {
        if t.skipped > 0 {
            println!(
                "  {:<18} {} not copied ({})",
                t.table,
                t.skipped,
                t.skipped_why.unwrap_or("left behind")
            );
        }
        return;
    }
    let mut line = format!(
        "  {:<18} {} copied, {} already there, {} differing",
        t.table, t.copied, t.present, t.conflicting
    );
    if t.skipped > 0 {
        line.push_str(&format!(
            ", {} not copied ({})",
            t.skipped,
            t.skipped_why.unwrap_or("left behind")
        ));
    }
    println!("{line}");
    for c in &t.conflicts {
        println!("    {c}");
    }
    if t.conflicting > t.conflicts.len() as u64 {
        println!(
            "    ... and {} more",
            t.conflicting - t.conflicts.len() as u64
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_what_they_accept() {
        assert_eq!(
            BlobUrl::parse("--to-blobs", "file:///srv/blobs").unwrap(),
            BlobUrl::File("/srv/blobs".into())
        );
        let e = BlobUrl::parse("--to-blobs", "/srv/blobs").unwrap_err();
        assert!(e.contains("expected file://DIR"), "{e}");
        assert!(BlobUrl::parse("--to-blobs", "file://").is_err());
        assert_eq!(
            sqlite_path("sqlite:///var/lib/berth/berth.db").unwrap(),
            PathBuf::from("/var/lib/berth/berth.db")
        );
        assert!(sqlite_path("postgres://x/y")
            .unwrap_err()
            .contains("sqlite://PATH"));
    }
}
