//! `berth serve`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::serve::config::{Config, Overrides};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where the metadata database and blobs live [default: ./berth-data]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on, IP:PORT; port 0 picks a free one. The default is loopback
    /// only: use 0.0.0.0:5000 to serve other machines [default: 127.0.0.1:5000]
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// An AWS Region this deployment serves, repeatable (one registry per account per
    /// Region; the first is the default); credential scopes must name one of them (or
    /// us-east-1, where IAM signs) [default: us-east-1]
    #[arg(long, value_name = "REGION")]
    region: Vec<String>,
    /// A TOML configuration file: every flag here, plus trusted proxies, the audit log,
    /// cache TTL, registry domain and public URL, create-on-push, encoded denials, request
    /// timeouts and limits, job leases, the secrets key file (the README's "Configuration
    /// file" lists every key)
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Audit log, one JSON line per request: stdout, off, or a file path [default: off]
    #[arg(long, value_name = "SINK")]
    audit_log: Option<String>,
    /// The key secret access keys and server secrets are sealed with in the database (64
    /// hex digits); made, readable by this user only, when the database holds no sealed
    /// secrets yet. Keep it apart from backups of the database [default:
    /// DATA_DIR/secrets.key]
    #[arg(long, value_name = "FILE")]
    secrets_key_file: Option<PathBuf>,
    /// Where the metadata lives: postgres://USER[:PASSWORD]@HOST:PORT/DATABASE for a
    /// registry of several nodes sharing one PostgreSQL database, or sqlite://PATH
    /// [default: sqlite://DATA_DIR/berth.db]
    #[arg(long, value_name = "URL")]
    metadata_url: Option<String>,
    /// Where blobs live: file://DIR, or s3://BUCKET[/PREFIX] (with s3_endpoint, s3_region,
    /// s3_allow_http and credentials in the config file, or BERTH_S3_ACCESS_KEY_ID and
    /// BERTH_S3_SECRET_ACCESS_KEY in the environment) [default: file://DATA_DIR]
    #[arg(long, value_name = "URL")]
    blob_url: Option<String>,
    /// Answer blob downloads with a redirect to a short-lived presigned URL of the S3
    /// bucket, so the bytes do not pass through Berth (s3:// blob URLs only)
    #[arg(long)]
    blob_redirect: bool,
    /// Serve HTTPS (HTTP/2 and HTTP/1.1) with this PEM certificate chain (the server's
    /// certificate first); reloaded when the file changes or on SIGHUP. `berth cert init`
    /// makes one
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key (PKCS#8, RSA or EC) of --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve /metrics (Prometheus) on this address, IP:PORT, in plain HTTP, instead of on
    /// the main port
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Serve registry pulls (/v2) without credentials where a repository's or the
    /// registry's policy allows them to "*" (the anonymous principal); everything else
    /// still asks for credentials. Config key anonymous_pull
    #[arg(long)]
    anonymous_pull: bool,
}

pub fn run(args: ServeArgs) -> Result<ExitCode, String> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = Config::load(
        args.config.as_deref(),
        &Overrides {
            listen: args.listen,
            data_dir: args.data_dir,
            region: args.region,
            audit_log: args.audit_log,
            secrets_key_file: args.secrets_key_file,
            metadata_url: args.metadata_url,
            blob_url: args.blob_url,
            blob_redirect: args.blob_redirect,
            tls_cert: args.tls_cert,
            tls_key: args.tls_key,
            metrics_listen: args.metrics_listen,
            anonymous_pull: args.anonymous_pull,
            ..Overrides::default()
        },
    )?;
    super::runtime()?.block_on(crate::serve::run(config))?;
    Ok(ExitCode::SUCCESS)
}
