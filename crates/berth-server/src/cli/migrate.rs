//! `berth migrate`: growing out of one machine. Copies an embedded registry (SQLite
//! metadata, blobs in the data directory) into a scale-out one (PostgreSQL metadata, blobs
//! in another store): blobs first, so the copied metadata never names a blob the
//! destination lacks, then the metadata (berth_store::copy_metadata), then any blob the
//! metadata gained meanwhile. Nothing at the destination is overwritten; running it again
//! copies what is missing and reports what differs.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use berth_blobs::{BlobStore, MemoryUploadStates};
use berth_store::{CopyOptions, KeyError, PgStore, SecretsKey, SqliteStore, TableReport};
use clap::Args;

use super::migrate_blobs::{copy_blobs, BlobTotals};
use crate::serve::config::{BlobBackend, Config, MetadataUrl, Overrides};
use crate::serve::secrets;

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The PostgreSQL database to copy into, postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE
    /// (its schema is created or brought up to date first) [default: metadata_url of --config]
    #[arg(long, value_name = "URL")]
    to_metadata: Option<String>,
    /// A server configuration file of the destination (the scale-out nodes' own): its
    /// metadata_url, blob_url, s3_* keys and secrets_key_file are the defaults of
    /// --to-metadata, --to-blobs, the --s3-* flags and --secrets-key-file. Its data_dir
    /// is not used: --data-dir is the registry being copied.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
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
    /// Where to copy the blobs, file://DIR or s3://BUCKET[/PREFIX] [default: blob_url of
    /// --config]; without either only the metadata is copied (for a deployment that keeps
    /// using the same blob directory)
    #[arg(long, value_name = "URL")]
    to_blobs: Option<String>,
    /// The S3-compatible server of an s3:// --to-blobs [default: s3_endpoint of --config,
    /// else AWS's for the region]
    #[arg(long, value_name = "URL")]
    s3_endpoint: Option<String>,
    /// The bucket's region [default: s3_region of --config, else us-east-1]
    #[arg(long, value_name = "REGION")]
    s3_region: Option<String>,
    /// Allow a plain http:// --s3-endpoint
    #[arg(long)]
    s3_allow_http: bool,
    /// The access key id for the bucket [default: s3_access_key_id of --config, else
    /// BERTH_S3_ACCESS_KEY_ID from the environment; never AWS_*]
    #[arg(long, value_name = "ID")]
    s3_access_key_id: Option<String>,
    /// Its secret [default: s3_secret_access_key of --config, else
    /// BERTH_S3_SECRET_ACCESS_KEY]; a flag is visible to other users of the machine in its
    /// process list: prefer the environment variable
    #[arg(long, value_name = "SECRET")]
    s3_secret_access_key: Option<String>,
    /// The key secrets are sealed with (the server's --secrets-key-file): the PostgreSQL
    /// database must be new or already use it, since sealed secrets are copied as they are
    /// [default: secrets_key_file of --config, else DATA_DIR/secrets.key]
    #[arg(long, value_name = "FILE")]
    secrets_key_file: Option<PathBuf>,
    /// Most rows written per PostgreSQL transaction (at most 5000)
    #[arg(long, value_name = "N", default_value_t = berth_store::DEFAULT_BATCH_ROWS)]
    batch_rows: usize,
}

/// Where the blobs are copied from: the embedded registry's blob directory.
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

    /// Open it; it must already hold a blob directory (nothing is created in a source).
    async fn open(&self) -> Result<BlobStore, String> {
        match self {
            BlobUrl::File(dir) => {
                if !dir.join("blobs").is_dir() {
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

/// Where the copy goes, from the flags and the --config file (flags win), resolved by
/// the server's own configuration code so that migrate reads a node's file as the node
/// does.
#[derive(Debug)]
struct Destination {
    /// The PostgreSQL URL (may hold a password: print [`MetadataUrl::redacted`]).
    metadata: MetadataUrl,
    blobs: Option<BlobBackend>,
    /// The secrets key file named by the flag or the file, if either does.
    secrets_key_file: Option<PathBuf>,
}

impl Destination {
    fn resolve(a: &MigrateArgs) -> Result<Destination, String> {
        let overrides = Overrides {
            metadata_url: a.to_metadata.clone(),
            blob_url: a.to_blobs.clone(),
            secrets_key_file: a.secrets_key_file.clone(),
            s3_endpoint: a.s3_endpoint.clone(),
            s3_region: a.s3_region.clone(),
            s3_allow_http: a.s3_allow_http,
            s3_access_key_id: a.s3_access_key_id.clone(),
            s3_secret_access_key: a.s3_secret_access_key.clone(),
            ..Overrides::default()
        };
        let config = Config::load(a.config.as_deref(), &overrides).map_err(|e| {
            format!("the destination (--to-metadata, --to-blobs, --s3-*, --config): {e}")
        })?;
        let metadata = match config.metadata.clone() {
            Some(url @ MetadataUrl::Postgres(_)) => url,
            Some(MetadataUrl::Sqlite(path)) => {
                return Err(format!(
                    "the destination's metadata is sqlite://{}: migrate copies into \
                     PostgreSQL (--to-metadata postgres://..., or metadata_url in --config)",
                    path.display()
                ))
            }
            None => {
                return Err("name the PostgreSQL database to copy into: --to-metadata \
                            postgres://USER@HOST:PORT/DATABASE, or a --config file with \
                            metadata_url"
                    .into())
            }
        };
        // Without a blob URL a node keeps its blobs in its own data directory, which
        // migrate cannot know (it is often the directory being copied): only an explicit
        // one is copied into.
        let blobs = match config.blob_url {
            Some(_) => Some(config.blob_backend()?),
            None => None,
        };
        Ok(Destination {
            metadata,
            blobs,
            secrets_key_file: config.secrets_key_file,
        })
    }
}

/// How a destination blob store is named in the output (no credentials).
fn show_backend(b: &BlobBackend) -> String {
    match b {
        BlobBackend::Local(dir) => format!("file://{}", dir.display()),
        BlobBackend::S3(s3) => {
            let place = if s3.prefix.is_empty() {
                s3.bucket.clone()
            } else {
                format!("{}/{}", s3.bucket, s3.prefix)
            };
            match &s3.endpoint {
                Some(e) => format!("s3://{place} at {e}"),
                None => format!("s3://{place} ({})", s3.region),
            }
        }
    }
}

/// Whether two directories are one (both resolved when they exist).
fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Open the destination blob store and make sure it answers before anything is
/// written anywhere.
async fn open_destination_blobs(b: &BlobBackend) -> Result<BlobStore, String> {
    let store = match b {
        BlobBackend::Local(dir) => BlobStore::local(dir).await,
        // Sessions of put_stream keep their state in memory: every copy is one request.
        BlobBackend::S3(s3) => BlobStore::s3(s3, Arc::new(MemoryUploadStates::new())),
    }
    .map_err(|e| format!("opening the blob store {}: {e}", show_backend(b)))?;
    store
        .check()
        .await
        .map_err(|e| format!("the blob store {} does not answer: {e}", show_backend(b)))?;
    Ok(store)
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
    let dest = Destination::resolve(&a)?;
    if let (Some(BlobBackend::Local(to)), BlobUrl::File(from)) = (&dest.blobs, &from_blobs) {
        if same_dir(to, from) {
            return Err(format!(
                "the destination's blob store {} is the one being copied from",
                from_blobs.show()
            ));
        }
    }
    let key_path = secrets::key_path(&data_dir, dest.secrets_key_file.as_deref());
    super::runtime()?.block_on(async {
        // Everything is opened and checked before anything is written: the source with
        // the secrets key, the destination's blob store, then PostgreSQL.
        let (from, key) = open_source(&db, &key_path).await?;
        let blob_stores = match &dest.blobs {
            Some(to) => Some((from_blobs.open().await?, open_destination_blobs(to).await?)),
            None => None,
        };
        let to = connect_destination(&dest.metadata, &key, &key_path).await?;
        let mut blobs = BlobTotals::default();
        let mut done: HashSet<String> = HashSet::new();
        if let (Some((src, dst)), Some(to_blobs)) = (&blob_stores, &dest.blobs) {
            println!("blobs: {} -> {}", from_blobs.show(), show_backend(to_blobs));
            copy_referenced(&from, src, dst, &mut done, &mut blobs).await?;
        }

        println!("metadata: {} -> {}", db.display(), dest.metadata.redacted());
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
            println!("summary: blobs not copied (no --to-blobs, and no blob_url in --config)");
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

/// Open the source with the secrets key (which must exist: migrate never makes one);
/// a key that is not the one its secrets are sealed with stops here, before anything is
/// written.
async fn open_source(db: &Path, key_path: &Path) -> Result<(SqliteStore, SecretsKey), String> {
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
    Ok((from, key))
}

/// Connect to the destination database with the source's secrets key (creating or
/// updating its schema); a database sealed with another key is refused.
async fn connect_destination(
    url: &MetadataUrl,
    key: &SecretsKey,
    key_path: &Path,
) -> Result<PgStore, String> {
    let MetadataUrl::Postgres(url) = url else {
        return Err("migrate copies into PostgreSQL only".into());
    };
    PgStore::connect(url, key).await.map_err(|e| match e {
        KeyError::WrongKey => format!(
            "the PostgreSQL database's secrets are sealed with another key than the one in {}: \
             migrate into a new database, or into one made with this key",
            key_path.display()
        ),
        KeyError::Store(e) => e.to_string(),
    })
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
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        args: MigrateArgs,
    }

    fn resolve(args: &[&str]) -> Result<Destination, String> {
        let cmd = Cmd::try_parse_from(std::iter::once("migrate").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        Destination::resolve(&cmd.args)
    }

    #[test]
    fn urls_name_what_they_accept() {
        assert_eq!(
            BlobUrl::parse("--from-blobs", "file:///srv/blobs").unwrap(),
            BlobUrl::File("/srv/blobs".into())
        );
        let e = BlobUrl::parse("--from-blobs", "/srv/blobs").unwrap_err();
        assert!(e.contains("expected file://DIR"), "{e}");
        assert!(BlobUrl::parse("--from-blobs", "file://").is_err());
        assert_eq!(
            sqlite_path("sqlite:///var/lib/berth/berth.db").unwrap(),
            PathBuf::from("/var/lib/berth/berth.db")
        );
        assert!(sqlite_path("postgres://x/y")
            .unwrap_err()
            .contains("sqlite://PATH"));
    }

    #[test]
    fn the_destination_comes_from_the_config_file_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("node.toml");
        std::fs::write(
            &config,
            "listen = \"0.0.0.0:5000\"\n\
             data_dir = \"/var/lib/berth\"\n\
             metadata_url = \"postgres://berth:pw@db:5432/berth\"\n\
             blob_url = \"s3://registry-blobs/prod\"\n\
             s3_endpoint = \"http://minio:9000\"\n\
             s3_allow_http = true\n\
             s3_access_key_id = \"FILEKEY\"\n\
             s3_secret_access_key = \"FILESECRET\"\n\
             secrets_key_file = \"/etc/berth/secrets.key\"\n",
        )
        .unwrap();
        let config = config.to_str().unwrap();

        let d = resolve(&["--config", config]).unwrap();
        assert_eq!(
            d.metadata,
            MetadataUrl::Postgres("postgres://berth:pw@db:5432/berth".into())
        );
        assert_eq!(
            d.secrets_key_file.as_deref(),
            Some(Path::new("/etc/berth/secrets.key"))
        );
        let Some(BlobBackend::S3(s3)) = &d.blobs else {
            panic!("{:?}", d.blobs)
        };
        assert_eq!(
            (s3.bucket.as_str(), s3.prefix.as_str()),
            ("registry-blobs", "prod")
        );
        assert_eq!(s3.endpoint.as_deref(), Some("http://minio:9000"));
        assert_eq!((s3.region.as_str(), s3.allow_http), ("us-east-1", true));
        assert_eq!(
            (s3.access_key_id.as_str(), s3.secret_access_key.as_str()),
            ("FILEKEY", "FILESECRET")
        );
        assert_eq!(
            show_backend(d.blobs.as_ref().unwrap()),
            "s3://registry-blobs/prod at http://minio:9000"
        );

        let d = resolve(&[
            "--config",
            config,
            "--to-metadata",
            "postgres://postgres@127.0.0.1:5432/other",
            "--to-blobs",
            "s3://other-bucket",
            "--s3-region",
            "eu-west-1",
            "--s3-access-key-id",
            "FLAGKEY",
            "--secrets-key-file",
            "/flag/secrets.key",
        ])
        .unwrap();
        assert_eq!(
            d.metadata,
            MetadataUrl::Postgres("postgres://postgres@127.0.0.1:5432/other".into())
        );
        assert_eq!(
            d.secrets_key_file.as_deref(),
            Some(Path::new("/flag/secrets.key"))
        );
        let Some(BlobBackend::S3(s3)) = &d.blobs else {
            panic!("{:?}", d.blobs)
        };
        assert_eq!(
            (s3.bucket.as_str(), s3.prefix.as_str()),
            ("other-bucket", "")
        );
        assert_eq!(s3.region, "eu-west-1");
        // Flags replace one setting each; the file's others stay.
        assert_eq!(
            (s3.access_key_id.as_str(), s3.secret_access_key.as_str()),
            ("FLAGKEY", "FILESECRET")
        );

        // A file:// destination, flags only; no blob URL anywhere: metadata only.
        let d = resolve(&[
            "--to-metadata",
            "postgres://postgres@127.0.0.1/x",
            "--to-blobs",
            "file:///srv/blobs",
        ])
        .unwrap();
        assert!(matches!(&d.blobs, Some(BlobBackend::Local(p)) if p == Path::new("/srv/blobs")));
        assert_eq!(d.secrets_key_file, None);
        let d = resolve(&["--to-metadata", "postgres://postgres@127.0.0.1/x"]).unwrap();
        assert!(d.blobs.is_none());
    }

    #[test]
    fn a_destination_that_cannot_be_used_is_refused_before_anything_starts() {
        let pg = "postgres://postgres@127.0.0.1/x";
        for (args, says) in [
            (vec![], "name the PostgreSQL database"),
            (
                vec!["--to-metadata", "sqlite:///srv/berth.db"],
                "migrate copies into PostgreSQL",
            ),
            (
                vec!["--to-metadata", "mysql://u:hunter2@h/db"],
                "not a mysql:// URL",
            ),
            (
                vec!["--to-metadata", pg, "--to-blobs", "gs://b"],
                "neither file://",
            ),
            (
                vec![
                    "--to-metadata",
                    pg,
                    "--to-blobs",
                    "s3://bucket",
                    "--s3-endpoint",
                    "http://127.0.0.1:9000",
                    "--s3-access-key-id",
                    "K",
                    "--s3-secret-access-key",
                    "S",
                ],
                "s3_allow_http",
            ),
            (
                vec!["--config", "/nonexistent/berth.toml"],
                "reading config /nonexistent/berth.toml",
            ),
        ] {
            let e = resolve(&args).unwrap_err();
            assert!(e.contains(says) && !e.contains("hunter2"), "{args:?}: {e}");
        }
    }
}
