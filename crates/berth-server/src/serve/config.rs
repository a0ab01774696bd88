//! Server configuration: defaults, an optional TOML file (`--config`), then flags.
//!
//! ```toml
//! listen = "127.0.0.1:5000"
//! data_dir = "./berth-data"
//! region = "us-east-1"            # the default Region
//! regions = ["us-east-1", "us-west-2"] # every Region served (one registry per account in each)
//! replication_peers = [{ region = "eu-central-1", endpoint = "https://berth-eu.example.net",
//!                        key_file = "/etc/berth/peer-eu.key" }] # other Berths replication reaches
//!                                 # (or one table per Region, after the other keys:
//!                                 # [replication.peers.eu-central-1] with endpoint and key_file)
//! clock_skew_seconds = 900        # SigV4: how far X-Amz-Date may be from now
//! trusted_proxies = ["10.0.0.0/8"] # X-Forwarded-For / -Proto are read only from these
//! audit_log = "stdout"            # "stdout", "off", or a file path (default DATA_DIR/audit.log)
//! audit_log_max_mib = 100         # a file is rotated past this size (audit.log.1, .2, …)
//! audit_log_files = 5             # rotated files kept
//! cache_ttl_ms = 2000             # how long another node's IAM change may take to apply here
//! registry_domain = "ecr.localhost" # registry hosts: <account>.dkr.<registry_domain>
//! public_url = "http://127.0.0.1:5000" # how clients reach the default account's registry
//! tls_cert = "/etc/berth/tls/server.crt" # serve HTTPS (HTTP/2 and HTTP/1.1): the certificate
//! tls_key = "/etc/berth/tls/server.key"  # chain and its key, PEM; reloaded when they change
//! metrics_listen = "127.0.0.1:9090" # serve /metrics on this address (plain HTTP) instead
//!                                 # of the main port
//! throttle_address_rps = 2000     # requests a second per client address (0: unlimited)
//! throttle_principal_rps = 1000   # requests a second per authenticated principal (0: unlimited)
//! throttle_burst_seconds = 10     # how many seconds' worth of requests may come at once
//! throttle_auth_failures_per_minute = 60 # failed authentications per address (also the
//!                                 # burst; 0: unlimited); past them the address is refused
//!                                 # until it refills
//! create_on_push = false          # ECR never creates repositories on push
//! encoded_denials = true          # append an encoded authorization message to denials
//! header_timeout_seconds = 30     # a request's headers must arrive within this; also how
//!                                 # long an idle keep-alive connection is kept
//! body_stall_seconds = 60         # a request body that sends nothing for this long is cut off
//! api_body_seconds = 300          # an API request body (read whole) must arrive within this
//! api_body_memory_mib = 256       # API request bodies held in memory, all requests together
//! max_connections = 4096          # open client connections (lowered to fit the file limit)
//! job_lease_seconds = 30          # background jobs: how long a node's lease on a job lasts
//!                                 # unrenewed (renewed every third of it); another node
//!                                 # takes a job over this long after its node dies
//! clean_interval_seconds = 300    # how often expired sessions and abandoned uploads are removed
//! upload_idle_seconds = 3600      # an upload untouched this long is abandoned (and removed)
//! max_uploads_per_repository = 500 # upload sessions open at once in one repository
//! max_uploads_per_account = 2000  # ... and in one account (every Region)
//! storage_quota_gib = 0           # bytes every account's repositories may hold (0: no quota)
//! storage_quotas = { "123456789012" = 50 } # GiB, per account (0: none), over the default
//! gc_interval_seconds = 3600      # how often the garbage collector runs (one node at a time)
//! gc_grace_seconds = 3600         # how long a blob no image references is kept before it is
//!                                 # deleted (0: at the collector's next run)
//! lifecycle_interval_seconds = 3600 # how often repositories' lifecycle policies run
//! pull_through_recheck_seconds = 86400 # pull-through cache: how often a cached tag is
//!                                 # checked against the upstream registry (0: every pull)
//! pull_through_insecure_upstreams = [] # upstream registries (host:port, as a rule's
//!                                 # upstreamRegistryUrl names them) reached over plain HTTP
//! pull_through_upstreams = ["registry-1.docker.io", "*.example.com"] # the only upstream
//!                                 # registries a pull-through cache rule may name (host or
//!                                 # host:port; "*." a domain's subdomains); unset: any
//! secrets_key_file = "/etc/berth/secrets.key" # what secrets are sealed with in the database
//!                                 # (default DATA_DIR/secrets.key, made on first start)
//! blob_url = "s3://bucket/prefix" # where blobs live (default file://DATA_DIR)
//! s3_endpoint = "https://s3.example.net" # an S3-compatible server (default: AWS's, by region)
//! s3_region = "eu-west-1"         # the bucket's region (default us-east-1)
//! s3_allow_http = false           # allow a plain http:// s3_endpoint
//! s3_access_key_id = "..."        # or BERTH_S3_ACCESS_KEY_ID in the environment (never AWS_*:
//! s3_secret_access_key = "..."    # those are Berth's clients'); or BERTH_S3_SECRET_ACCESS_KEY
//! blob_redirect = false           # answer blob GETs with a 307 to a short-lived presigned
//!                                 # URL of the bucket (s3:// only); HEAD is answered here
//! blob_cache_gib = 0              # keep a node-local copy of up to this many GiB of blobs
//!                                 # from the bucket (s3:// only; 0: none): blobs this node
//!                                 # receives or serves whole, least recently used out
//!                                 # first; a blob it holds is served from it, also when
//!                                 # blob_redirect is on
//! blob_cache_dir = "/var/cache/berth" # where (default DATA_DIR/blob-cache; one node each)
//! anonymous_pull = false          # /v2 pulls without credentials, decided as the anonymous
//!                                 # principal against repository and registry policies
//!                                 # (exactly where a policy allows "*"); see
//!                                 # crate::oci::anonymous
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_blobs::S3Config;
use berth_iam::values::Cidr;
use serde::Deserialize;

use crate::audit::AuditSink;

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// The default Region: the first of [`Config::regions`].
    pub region: String,
    /// Every Region this deployment serves (one registry per account per Region), the
    /// default first.
    pub regions: Vec<String>,
    pub max_skew_secs: i64,
    pub trusted_proxies: Vec<Cidr>,
    pub audit: AuditSink,
    pub cache_ttl: Duration,
    /// Registry hosts are `<account>.dkr.<registry_domain>`.
    pub registry_domain: String,
    /// How clients reach the default account's registry (`http://host:port`); the listen
    /// address when absent.
    pub public_url: Option<String>,
    /// Create a repository on first push (ECR never does; off by default).
    pub create_on_push: bool,
    /// Append an encoded authorization message to denials (decoded by
    /// `aws sts decode-authorization-message`).
    pub encoded_denials: bool,
    /// How long a client has to send a request's headers, counted from when the
    /// connection is opened or finished its previous request (so it is also the idle
    /// keep-alive timeout).
    pub header_timeout: Duration,
    /// How long a request body may go without sending a byte before it is cut off.
    pub body_stall: Duration,
    /// How long an API request body (ECR, IAM, STS, Access Analyzer: read whole before
    /// the request is handled) may take to arrive in full.
    pub api_body_deadline: Duration,
    /// How many bytes of API request bodies may be held in memory at once, all
    /// requests together; a request that would go over is answered with a throttling
    /// error (the SDKs retry those).
    pub api_body_memory: usize,
    /// How many client connections may be open at once (lowered at start to what the
    /// process's file limit allows). At the cap, a new connection replaces the oldest
    /// one that has no request in progress.
    pub max_connections: usize,
    /// How long a node's lease on a background job lasts unless renewed (see
    /// [`crate::jobs`]); it is renewed every third of this.
    pub job_lease: Duration,
    /// How often the cleaning jobs (expired sessions, abandoned uploads) run.
    pub clean_interval: Duration,
    /// How long an upload may sit untouched before it counts as abandoned.
    pub upload_idle: Duration,
    /// How often the garbage collector runs.
    pub gc_interval: Duration,
    /// How long a repository's blob that no image references is kept (from when the
    /// collector first sees it so) before it is released and its object deleted.
    pub gc_grace: Duration,
    /// How often the repositories' lifecycle policies run (the `lifecycle` job).
    pub lifecycle_interval: Duration,
    /// How often the pull-through cache checks a cached tag against its upstream.
    pub pull_through_recheck: Duration,
    /// Upstream registries (`host[:port]`) the pull-through cache reaches over plain HTTP
    /// when a rule's URL names no scheme, as Docker's insecure registries.
    pub pull_through_insecure: Vec<String>,
    /// The upstream registries pull-through cache rules may name (`host[:port]`, or
    /// `*.domain` for its subdomains); `None`: any.
    pub pull_through_upstreams: Option<Vec<String>>,
    /// The key file secrets are sealed with in the metadata store;
    /// `DATA_DIR/secrets.key` when absent.
    pub secrets_key_file: Option<PathBuf>,
    /// Where the metadata lives: `None` is the embedded default, `DATA_DIR/berth.db`.
    pub metadata: Option<MetadataUrl>,
    /// Where blobs live: `file://DIR` or `s3://BUCKET[/PREFIX]`; `file://DATA_DIR` when
    /// absent. See [`Config::blob_backend`].
    pub blob_url: Option<String>,
    pub s3: S3Settings,
    /// Answer blob GETs with a redirect to a presigned URL of the object store.
    pub blob_redirect: bool,
    /// Bytes of blobs this node keeps a copy of, from the bucket (0: none). See
    /// [`berth_blobs::BlobCache`].
    pub blob_cache_bytes: u64,
    /// Where that copy lives; `DATA_DIR/blob-cache` when absent.
    pub blob_cache_dir: Option<PathBuf>,
    /// Serve `/v2` pulls without credentials as the anonymous principal, where the
    /// repository's or registry's policy allows `"*"` (off by default: ECR's private
    /// registries never see anonymous requests). See [`crate::oci::anonymous`].
    pub anonymous_pull: bool,
    /// Other Berth deployments replication reaches, by the Regions they serve (see
    /// [`crate::peer`]).
    pub peers: Vec<Peer>,
    /// Serve HTTPS with this certificate chain and key (see [`super::tls`]).
    pub tls: Option<TlsFiles>,
    /// A second address that serves only `/metrics` (plain HTTP), besides the main port.
    pub metrics_listen: Option<SocketAddr>,
    /// Token-bucket rates (see [`super::throttle`]).
    pub throttle: super::throttle::Limits,
    /// Caps on upload sessions and storage (see [`crate::registry::uploads`]).
    pub limits: RegistryLimits,
}

/// Caps on what an account may hold open or stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryLimits {
    /// Upload sessions open at once in one repository.
    pub uploads_per_repository: u64,
    /// Upload sessions open at once in one account, every Region.
    pub uploads_per_account: u64,
    /// Bytes every account may hold (`None`: no quota).
    pub default_quota: Option<u64>,
    /// Per-account quotas, over the default (`None`: that account has none).
    pub quotas: std::collections::BTreeMap<String, Option<u64>>,
}

impl Default for RegistryLimits {
    fn default() -> RegistryLimits {
        RegistryLimits {
            uploads_per_repository: 500,
            uploads_per_account: 2000,
            default_quota: None,
            quotas: Default::default(),
        }
    }
}

impl RegistryLimits {
    /// The storage quota of `account`, in bytes.
    pub fn quota_of(&self, account: &str) -> Option<u64> {
        match self.quotas.get(account) {
            Some(q) => *q,
            None => self.default_quota,
        }
    }
}

/// The PEM files TLS is served from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate, then the certificates that issued it.
    pub cert: PathBuf,
    /// The certificate's private key.
    pub key: PathBuf,
}

/// Another Berth deployment, trusted both ways: it serves `region`, answers at
/// `endpoint`, and shares `key` with this one (each side lists the other with the same
/// key). Replication to `region` goes there; replication from it is accepted.
#[derive(Clone)]
pub struct Peer {
    pub region: String,
    /// `http(s)://HOST:PORT`, without a trailing slash.
    pub endpoint: String,
    /// The shared secret (the key file's bytes).
    pub key: Vec<u8>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("key", &"…")
            .finish()
    }
}

/// One `replication_peers` entry of the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerFile {
    region: String,
    endpoint: String,
    key_file: PathBuf,
}

/// The `[replication]` table of the file: `[replication.peers.REGION]` tables, each with
/// `endpoint` and `key_file`, the same peers as `replication_peers` entries written one
/// table per Region.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReplicationFile {
    #[serde(default)]
    peers: std::collections::BTreeMap<String, PeerTable>,
}

/// One `[replication.peers.REGION]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerTable {
    endpoint: String,
    key_file: PathBuf,
}

impl ReplicationFile {
    /// The tables as `replication_peers` entries.
    fn peer_files(self) -> impl Iterator<Item = PeerFile> {
        self.peers.into_iter().map(|(region, t)| PeerFile {
            region,
            endpoint: t.endpoint,
            key_file: t.key_file,
        })
    }
}

/// The peers of the file, their keys read (at least 32 bytes each).
fn peers(list: Vec<PeerFile>, regions: &[String]) -> Result<Vec<Peer>, String> {
    let mut out: Vec<Peer> = Vec::new();
    for p in list {
        if !valid_region(&p.region) {
            return Err(format!(
                "replication_peers: {:?} is not a region name like us-west-2",
                p.region
            ));
        }
        if regions.contains(&p.region) || out.iter().any(|x| x.region == p.region) {
            return Err(format!(
                "replication_peers: Region {} is served here or by another peer already",
                p.region
            ));
        }
        let endpoint = p.endpoint.trim_end_matches('/').to_string();
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(format!(
                "replication_peers: the endpoint of {} must be an http:// or https:// URL, not {endpoint:?}",
                p.region
            ));
        }
        let key = std::fs::read(&p.key_file)
            .map_err(|e| format!("replication_peers: reading {}: {e}", p.key_file.display()))?;
        if key.len() < 32 {
            return Err(format!(
                "replication_peers: {} holds {} bytes; a peer key is at least 32 random bytes (head -c 32 /dev/urandom > FILE)",
                p.key_file.display(),
                key.len()
            ));
        }
        out.push(Peer {
            region: p.region,
            endpoint,
            key,
        });
    }
    Ok(out)
}

/// A metadata store named by URL (`--metadata-url`, `metadata_url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataUrl {
    /// `sqlite://PATH`: the embedded database file at PATH.
    Sqlite(PathBuf),
    /// `postgres://USER@HOST:PORT/DB` (or `postgresql://`), kept whole for the driver.
    Postgres(String),
}

impl MetadataUrl {
    pub fn parse(url: &str) -> Result<MetadataUrl, String> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("metadata URL sqlite:// names no database file (sqlite://PATH)".into());
            }
            return Ok(MetadataUrl::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(MetadataUrl::Postgres(url.to_string()));
        }
        // The URL may hold a password: say what is wrong without repeating it.
        let scheme = url.split_once("://").map_or("", |(s, _)| s);
        Err(format!(
            "the metadata URL must be sqlite://PATH or postgres://USER@HOST:PORT/DATABASE, not {}",
            if scheme.is_empty() {
                "a URL without a scheme".to_string()
            } else {
                format!("a {scheme}:// URL")
            }
        ))
    }

    /// Safe to print: a PostgreSQL URL's password is left out.
    pub fn redacted(&self) -> String {
        match self {
            MetadataUrl::Sqlite(p) => format!("sqlite://{}", p.display()),
            MetadataUrl::Postgres(u) => {
                let (scheme, rest) = u.split_once("://").unwrap_or(("postgres", u));
                match rest.rsplit_once('@') {
                    Some((user, host)) => {
                        let user = user.split_once(':').map_or(user, |(name, _)| name);
                        format!("{scheme}://{user}@{host}")
                    }
                    None => u.clone(),
                }
            }
        }
    }
}

/// How to reach an `s3://` blob store (the bucket and prefix come from `blob_url`).
#[derive(Clone, Default)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub allow_http: bool,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("allow_http", &self.allow_http)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Where blobs live, resolved from the configuration.
#[derive(Debug, Clone)]
pub enum BlobBackend {
    /// Files under this directory (`blobs/`, `uploads/`).
    Local(PathBuf),
    S3(S3Config),
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 5000)),
            data_dir: PathBuf::from("./berth-data"),
            region: "us-east-1".into(),
            regions: vec!["us-east-1".into()],
            max_skew_secs: 15 * 60,
            trusted_proxies: Vec::new(),
            audit: AuditSink::Off,
            cache_ttl: Duration::from_secs(2),
            registry_domain: "ecr.localhost".into(),
            public_url: None,
            create_on_push: false,
            encoded_denials: true,
            header_timeout: Duration::from_secs(30),
            body_stall: Duration::from_secs(60),
            api_body_deadline: Duration::from_secs(300),
            api_body_memory: 256 << 20,
            max_connections: 4096,
            job_lease: Duration::from_secs(30),
            clean_interval: Duration::from_secs(300),
            upload_idle: Duration::from_secs(3600),
            gc_interval: Duration::from_secs(3600),
            gc_grace: Duration::from_secs(3600),
            lifecycle_interval: Duration::from_secs(3600),
            pull_through_recheck: Duration::from_secs(86400),
            pull_through_insecure: Vec::new(),
            pull_through_upstreams: None,
            secrets_key_file: None,
            metadata: None,
            blob_url: None,
            s3: S3Settings::default(),
            blob_redirect: false,
            blob_cache_bytes: 0,
            blob_cache_dir: None,
            anonymous_pull: false,
            peers: Vec::new(),
            tls: None,
            metrics_listen: None,
            throttle: super::throttle::Limits::default(),
            limits: RegistryLimits::default(),
        }
    }
}

/// The file's keys (all optional).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    region: Option<String>,
    regions: Option<Vec<String>>,
    clock_skew_seconds: Option<i64>,
    trusted_proxies: Option<Vec<String>>,
    audit_log: Option<String>,
    audit_log_max_mib: Option<u64>,
    audit_log_files: Option<u32>,
    cache_ttl_ms: Option<u64>,
    registry_domain: Option<String>,
    public_url: Option<String>,
    create_on_push: Option<bool>,
    encoded_denials: Option<bool>,
    header_timeout_seconds: Option<f64>,
    body_stall_seconds: Option<f64>,
    api_body_seconds: Option<f64>,
    api_body_memory_mib: Option<u64>,
    max_connections: Option<u64>,
    job_lease_seconds: Option<f64>,
    clean_interval_seconds: Option<f64>,
    upload_idle_seconds: Option<f64>,
    gc_interval_seconds: Option<f64>,
    gc_grace_seconds: Option<f64>,
    lifecycle_interval_seconds: Option<f64>,
    pull_through_recheck_seconds: Option<f64>,
    pull_through_insecure_upstreams: Option<Vec<String>>,
    pull_through_upstreams: Option<Vec<String>>,
    secrets_key_file: Option<PathBuf>,
    metadata_url: Option<String>,
    blob_url: Option<String>,
    s3_endpoint: Option<String>,
    s3_region: Option<String>,
    s3_allow_http: Option<bool>,
    s3_access_key_id: Option<String>,
    s3_secret_access_key: Option<String>,
    blob_redirect: Option<bool>,
    blob_cache_gib: Option<f64>,
    blob_cache_dir: Option<PathBuf>,
    anonymous_pull: Option<bool>,
    replication_peers: Option<Vec<PeerFile>>,
    replication: Option<ReplicationFile>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    metrics_listen: Option<String>,
    throttle_address_rps: Option<f64>,
    throttle_principal_rps: Option<f64>,
    throttle_burst_seconds: Option<f64>,
    throttle_auth_failures_per_minute: Option<f64>,
    max_uploads_per_repository: Option<u64>,
    max_uploads_per_account: Option<u64>,
    storage_quota_gib: Option<f64>,
    storage_quotas: Option<std::collections::BTreeMap<String, f64>>,
}

/// A Region name as ECR's model writes them (`[0-9a-z-]{2,25}`), starting with a letter.
pub fn valid_region(r: &str) -> bool {
    (2..=25).contains(&r.len())
        && r.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Command-line values, which win over the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    /// `--region`, repeatable: the Regions served, the first the default.
    pub region: Vec<String>,
    pub audit_log: Option<String>,
    pub secrets_key_file: Option<PathBuf>,
    pub metadata_url: Option<String>,
    pub blob_url: Option<String>,
    /// `--blob-redirect` (only turns it on).
    pub blob_redirect: bool,
    /// `--anonymous-pull` (only turns it on).
    pub anonymous_pull: bool,
    /// The `s3_*` keys (`berth migrate` takes them as flags).
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    /// Only turns it on.
    pub s3_allow_http: bool,
    pub s3_access_key_id: Option<String>,
    pub s3_secret_access_key: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub metrics_listen: Option<String>,
}

/// A timeout from the file: a positive number of seconds, at most a day.
fn seconds(name: &str, secs: f64) -> Result<Duration, String> {
    if !(secs > 0.0 && secs <= 86_400.0) {
        return Err(format!(
            "{name} {secs} is not a number of seconds above 0 and at most 86400"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A garbage collection grace period: 0 (released at the collector's next run) up to
/// 30 days. `berth gc --grace` takes the same.
pub fn grace_seconds(secs: f64) -> Result<Duration, String> {
    if !(0.0..=30.0 * 86_400.0).contains(&secs) {
        return Err(format!(
            "gc_grace_seconds {secs} is not a number of seconds between 0 and 2592000 (30 days)"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// How long an upload may stay untouched before it counts as abandoned (the file's
/// `upload_idle_seconds`, `berth gc --upload-idle`).
pub fn upload_idle_seconds(secs: f64) -> Result<Duration, String> {
    if !(1.0..=30.0 * 86_400.0).contains(&secs) {
        return Err(format!(
            "upload_idle_seconds {secs} is not a number of seconds between 1 and 2592000 (30 days)"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The throttle's rates from the file's keys (defaults for those absent).
fn throttle_limits(
    address: Option<f64>,
    principal: Option<f64>,
    burst: Option<f64>,
    failures_per_minute: Option<f64>,
) -> Result<super::throttle::Limits, String> {
    use super::throttle::{Limits, Rate};
    let d = Limits::default();
    let burst = burst.unwrap_or(10.0);
    if !(burst > 0.0 && burst <= 3600.0) {
        return Err(format!(
            "throttle_burst_seconds {burst} is not a number of seconds above 0 and at most 3600"
        ));
    }
    let rate = |name: &str, v: Option<f64>, default: Rate| -> Result<Rate, String> {
        match v {
            None => Ok(Rate::new(default.per_second, burst)),
            Some(r) if (0.0..=1e9).contains(&r) => Ok(Rate::new(r, burst)),
            Some(r) => Err(format!(
                "{name} {r} is not a number of requests a second from 0 (unlimited) to 1e9"
            )),
        }
    };
    let failures = match failures_per_minute {
        None => d.failures_per_address,
        Some(0.0) => Rate::new(0.0, 1.0),
        Some(n) if (1.0..=1e6).contains(&n) => Rate {
            per_second: n / 60.0,
            burst: n,
        },
        Some(n) => {
            return Err(format!(
            "throttle_auth_failures_per_minute {n} is not 0 (unlimited) or between 1 and 1000000"
        ))
        }
    };
    Ok(Limits {
        per_address: rate("throttle_address_rps", address, d.per_address)?,
        per_principal: rate("throttle_principal_rps", principal, d.per_principal)?,
        failures_per_address: failures,
    })
}

pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("listen address {s:?} is not IP:PORT (e.g. 127.0.0.1:5000)"))
}

impl Config {
    /// Whether a pull-through cache rule may name the upstream registry `host`
    /// (`host[:port]`, as the rule's URL has it): `pull_through_upstreams` lists it, or a
    /// `*.domain` entry covers it (with the same port, if the entry names one), or there
    /// is no list.
    pub fn upstream_allowed(&self, host: &str) -> bool {
        let Some(list) = &self.pull_through_upstreams else {
            return true;
        };
        let host = host.to_ascii_lowercase();
        let (name, port) = split_port(&host);
        list.iter().any(|entry| {
            let entry = entry.to_ascii_lowercase();
            match entry.strip_prefix("*.") {
                None => entry == host,
                Some(domain) => {
                    let (domain, want_port) = split_port(domain);
                    (want_port.is_none() || want_port == port)
                        && name
                            .strip_suffix(domain)
                            .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.'))
                }
            }
        })
    }

    pub fn load(file: Option<&Path>, o: &Overrides) -> Result<Config, String> {
        let mut c = Config::default();
        let mut peer_files = Vec::new();
        let (mut tls_cert, mut tls_key) = (None, None);
        // The audit log's sink, when the file or a flag names one (else the default, a
        // file in the data directory, once that is known).
        let mut audit: Option<AuditSink> = None;
        let mut rotation = crate::audit::Rotation::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("reading config {}: {e}", path.display()))?;
            let f: FileConfig =
                toml::from_str(&text).map_err(|e| format!("config {}: {e}", path.display()))?;
            if let Some(l) = f.listen {
                c.listen = parse_listen(&l)?;
            }
            if let Some(d) = f.data_dir {
                c.data_dir = d;
            }
            // `region` is the default Region, `regions` every Region served (the
            // default among them, first if `region` does not say which).
            match (f.region, f.regions) {
                (Some(r), Some(mut rs)) => {
                    rs.retain(|x| *x != r);
                    rs.insert(0, r);
                    c.regions = rs;
                }
                (Some(r), None) => c.regions = vec![r],
                (None, Some(rs)) => c.regions = rs,
                (None, None) => {}
            }
            if let Some(s) = f.clock_skew_seconds {
                if !(1..=7 * 24 * 3600).contains(&s) {
                    return Err(format!(
                        "clock_skew_seconds {s} is not between 1 and 604800"
                    ));
                }
                c.max_skew_secs = s;
            }
            for p in f.trusted_proxies.unwrap_or_default() {
                c.trusted_proxies.push(Cidr::parse(&p).ok_or_else(|| {
                    format!("trusted_proxies: {p:?} is not an IP address or CIDR block")
                })?);
            }
            if let Some(a) = f.audit_log {
                audit = Some(AuditSink::parse(&a));
            }
            if let Some(mib) = f.audit_log_max_mib {
                if !(1..=1 << 20).contains(&mib) {
                    return Err(format!(
                        "audit_log_max_mib {mib} is not between 1 and 1048576"
                    ));
                }
                rotation.max_bytes = mib << 20;
            }
            if let Some(n) = f.audit_log_files {
                if n > 1000 {
                    return Err(format!("audit_log_files {n} is not between 0 and 1000"));
                }
                rotation.keep = n;
            }
            if let Some(ms) = f.cache_ttl_ms {
                c.cache_ttl = Duration::from_millis(ms);
            }
            if let Some(d) = f.registry_domain {
                c.registry_domain = d;
            }
            if let Some(u) = f.public_url {
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    return Err(format!(
                        "public_url {u:?} must start with http:// or https://"
                    ));
                }
                c.public_url = Some(u);
            }
            if let Some(b) = f.create_on_push {
                c.create_on_push = b;
            }
            if let Some(b) = f.encoded_denials {
                c.encoded_denials = b;
            }
            for (name, value, field) in [
                (
                    "header_timeout_seconds",
                    f.header_timeout_seconds,
                    &mut c.header_timeout,
                ),
                (
                    "body_stall_seconds",
                    f.body_stall_seconds,
                    &mut c.body_stall,
                ),
                (
                    "api_body_seconds",
                    f.api_body_seconds,
                    &mut c.api_body_deadline,
                ),
                (
                    "clean_interval_seconds",
                    f.clean_interval_seconds,
                    &mut c.clean_interval,
                ),
                (
                    "gc_interval_seconds",
                    f.gc_interval_seconds,
                    &mut c.gc_interval,
                ),
                (
                    "lifecycle_interval_seconds",
                    f.lifecycle_interval_seconds,
                    &mut c.lifecycle_interval,
                ),
            ] {
                if let Some(secs) = value {
                    *field = seconds(name, secs)?;
                }
            }
            if let Some(mib) = f.api_body_memory_mib {
                // At least one largest ECR request must fit.
                let least = (super::MAX_ECR_BODY >> 20) as u64;
                if !(least..=1 << 20).contains(&mib) {
                    return Err(format!(
                        "api_body_memory_mib {mib} is not between {least} (one largest ECR request) and 1048576"
                    ));
                }
                c.api_body_memory = (mib as usize) << 20;
            }
            if let Some(secs) = f.job_lease_seconds {
                // A renewal (every third of the lease) must have time to reach the store.
                if !(1.0..=3600.0).contains(&secs) {
                    return Err(format!(
                        "job_lease_seconds {secs} is not a number of seconds between 1 and 3600"
                    ));
                }
                c.job_lease = Duration::from_secs_f64(secs);
            }
            if let Some(secs) = f.upload_idle_seconds {
                c.upload_idle = upload_idle_seconds(secs)?;
            }
            if let Some(secs) = f.gc_grace_seconds {
                c.gc_grace = grace_seconds(secs)?;
            }
            if let Some(secs) = f.pull_through_recheck_seconds {
                if !(0.0..=31_536_000.0).contains(&secs) {
                    return Err(format!(
                        "pull_through_recheck_seconds {secs} is not a number of seconds between 0 and 31536000 (a year)"
                    ));
                }
                c.pull_through_recheck = Duration::from_secs_f64(secs);
            }
            if let Some(hosts) = f.pull_through_insecure_upstreams {
                for h in &hosts {
                    if h.contains("://") || h.contains('/') || h.is_empty() {
                        return Err(format!(
                            "pull_through_insecure_upstreams: {h:?} is not host[:port] (no scheme, no path)"
                        ));
                    }
                }
                c.pull_through_insecure = hosts;
            }
            if let Some(hosts) = f.pull_through_upstreams {
                for h in &hosts {
                    let name = h.strip_prefix("*.").unwrap_or(h);
                    if name.is_empty() || name.contains(['*', '/', ' ']) || h.contains("://") {
                        return Err(format!(
                            "pull_through_upstreams: {h:?} is not host[:port] or *.domain[:port] (no scheme, no path)"
                        ));
                    }
                }
                c.pull_through_upstreams = Some(hosts);
            }
            if let Some(n) = f.max_connections {
                if !(1..=1_000_000).contains(&n) {
                    return Err(format!("max_connections {n} is not between 1 and 1000000"));
                }
                c.max_connections = n as usize;
            }
            if let Some(k) = f.secrets_key_file {
                c.secrets_key_file = Some(k);
            }
            if let Some(u) = f.metadata_url {
                c.metadata = Some(MetadataUrl::parse(&u)?);
            }
            c.blob_url = f.blob_url;
            c.s3 = S3Settings {
                endpoint: f.s3_endpoint,
                region: f.s3_region,
                allow_http: f.s3_allow_http.unwrap_or(false),
                access_key_id: f.s3_access_key_id,
                secret_access_key: f.s3_secret_access_key,
            };
            c.blob_redirect = f.blob_redirect.unwrap_or(false);
            if let Some(g) = f.blob_cache_gib {
                if !(0.0..=1e6).contains(&g) {
                    return Err(format!(
                        "blob_cache_gib {g} is not a number of GiB from 0 (no cache) to 1e6"
                    ));
                }
                c.blob_cache_bytes = (g * (1u64 << 30) as f64) as u64;
            }
            c.blob_cache_dir = f.blob_cache_dir;
            c.anonymous_pull = f.anonymous_pull.unwrap_or(false);
            peer_files = f.replication_peers.unwrap_or_default();
            peer_files.extend(f.replication.unwrap_or_default().peer_files());
            (tls_cert, tls_key) = (f.tls_cert, f.tls_key);
            c.throttle = throttle_limits(
                f.throttle_address_rps,
                f.throttle_principal_rps,
                f.throttle_burst_seconds,
                f.throttle_auth_failures_per_minute,
            )?;
            if let Some(m) = f.metrics_listen {
                c.metrics_listen = Some(parse_listen(&m)?);
            }
            for (name, v, field) in [
                (
                    "max_uploads_per_repository",
                    f.max_uploads_per_repository,
                    &mut c.limits.uploads_per_repository,
                ),
                (
                    "max_uploads_per_account",
                    f.max_uploads_per_account,
                    &mut c.limits.uploads_per_account,
                ),
            ] {
                if let Some(n) = v {
                    if !(1..=10_000_000).contains(&n) {
                        return Err(format!("{name} {n} is not between 1 and 10000000"));
                    }
                    *field = n;
                }
            }
            let gib = |name: &str, g: f64| -> Result<Option<u64>, String> {
                if !(0.0..=1e9).contains(&g) {
                    return Err(format!(
                        "{name} {g} is not a number of GiB from 0 (no quota) to 1e9"
                    ));
                }
                Ok((g > 0.0).then_some((g * (1u64 << 30) as f64) as u64))
            };
            if let Some(g) = f.storage_quota_gib {
                c.limits.default_quota = gib("storage_quota_gib", g)?;
            }
            for (account, g) in f.storage_quotas.unwrap_or_default() {
                if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!(
                        "storage_quotas: {account:?} is not a 12-digit account id"
                    ));
                }
                let q = gib(&format!("storage_quotas.{account}"), g)?;
                c.limits.quotas.insert(account, q);
            }
        }
        if let Some(m) = &o.metrics_listen {
            c.metrics_listen = Some(parse_listen(m)?);
        }
        tls_cert = o.tls_cert.clone().or(tls_cert);
        tls_key = o.tls_key.clone().or(tls_key);
        c.tls = match (tls_cert, tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(
                    "tls_cert needs tls_key (--tls-key): the certificate's private key".into(),
                )
            }
            (None, Some(_)) => {
                return Err(
                    "tls_key needs tls_cert (--tls-cert): the certificate chain it belongs to"
                        .into(),
                )
            }
        };
        if let Some(u) = &o.blob_url {
            c.blob_url = Some(u.clone());
        }
        c.blob_redirect |= o.blob_redirect;
        c.anonymous_pull |= o.anonymous_pull;
        for (flag, field) in [
            (&o.s3_endpoint, &mut c.s3.endpoint),
            (&o.s3_region, &mut c.s3.region),
            (&o.s3_access_key_id, &mut c.s3.access_key_id),
            (&o.s3_secret_access_key, &mut c.s3.secret_access_key),
        ] {
            if let Some(v) = flag {
                *field = Some(v.clone());
            }
        }
        c.s3.allow_http |= o.s3_allow_http;
        if let Some(l) = &o.listen {
            c.listen = parse_listen(l)?;
        }
        if let Some(d) = &o.data_dir {
            c.data_dir = d.clone();
        }
        if !o.region.is_empty() {
            c.regions = o.region.clone();
        }
        if let Some(a) = &o.audit_log {
            audit = Some(AuditSink::parse(a));
        }
        c.audit = match audit
            .unwrap_or_else(|| AuditSink::File(c.data_dir.join("audit.log"), rotation))
        {
            AuditSink::File(p, _) => AuditSink::File(p, rotation),
            other => other,
        };
        if let Some(k) = &o.secrets_key_file {
            c.secrets_key_file = Some(k.clone());
        }
        if let Some(u) = &o.metadata_url {
            c.metadata = Some(MetadataUrl::parse(u)?);
        }
        if c.regions.is_empty() {
            return Err("regions is empty: name at least one Region, like us-east-1".into());
        }
        for (i, r) in c.regions.iter().enumerate() {
            if !valid_region(r) {
                return Err(format!("region {r:?} is not a region name like us-east-1"));
            }
            if c.regions[..i].contains(r) {
                return Err(format!("region {r:?} is listed twice"));
            }
        }
        c.region = c.regions[0].clone();
        c.peers = peers(peer_files, &c.regions)?;
        let backend = c.blob_backend()?;
        if c.blob_redirect && !matches!(backend, BlobBackend::S3(_)) {
            return Err(
                "blob_redirect needs an s3:// blob_url: local blobs have no URL to redirect to"
                    .into(),
            );
        }
        if c.blob_cache_bytes > 0 && !matches!(backend, BlobBackend::S3(_)) {
            return Err(
                "blob_cache_gib needs an s3:// blob_url: local blobs are on this node's disk already"
                    .into(),
            );
        }
        Ok(c)
    }

    /// Where blobs live. For `s3://`, the credentials are `s3_access_key_id` and
    /// `s3_secret_access_key`, or else `BERTH_S3_ACCESS_KEY_ID` and
    /// `BERTH_S3_SECRET_ACCESS_KEY` from the environment; never `AWS_*` (Berth's own
    /// clients' variables) nor instance metadata.
    pub fn blob_backend(&self) -> Result<BlobBackend, String> {
        let Some(url) = &self.blob_url else {
            return Ok(BlobBackend::Local(self.data_dir.clone()));
        };
        if let Some(dir) = url.strip_prefix("file://") {
            if dir.is_empty() {
                return Err(format!("blob_url {url:?} names no directory"));
            }
            return Ok(BlobBackend::Local(PathBuf::from(dir)));
        }
        let Some(rest) = url.strip_prefix("s3://") else {
            return Err(format!(
                "blob_url {url:?} is neither file://DIR nor s3://BUCKET[/PREFIX]"
            ));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid_bucket {
            return Err(format!(
                "blob_url {url:?}: {bucket:?} is not an S3 bucket name (3 to 63 lowercase letters, digits, '-' and '.')"
            ));
        }
        let s = &self.s3;
        if let Some(e) = &s.endpoint {
            let http = e.starts_with("http://");
            if !(http || e.starts_with("https://")) {
                return Err(format!(
                    "s3_endpoint {e:?} must start with http:// or https://"
                ));
            }
            if http && !s.allow_http {
                return Err(format!(
                    "s3_endpoint {e:?} is plain http: set s3_allow_http = true to allow it"
                ));
            }
        }
        let credential = |value: &Option<String>, key: &str, var: &str| {
            value
                .clone()
                .or_else(|| std::env::var(var).ok())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    format!("blob_url {url:?} needs S3 credentials: set {key} in the config or {var} in the environment")
                })
        };
        Ok(BlobBackend::S3(S3Config {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            endpoint: s.endpoint.clone(),
            region: s.region.clone().unwrap_or_else(|| "us-east-1".into()),
            allow_http: s.allow_http,
            access_key_id: credential(
                &s.access_key_id,
                "s3_access_key_id",
                "BERTH_S3_ACCESS_KEY_ID",
            )?,
            secret_access_key: credential(
                &s.secret_access_key,
                "s3_secret_access_key",
                "BERTH_S3_SECRET_ACCESS_KEY",
            )?,
        }))
    }
}

/// `host[:port]` split at its port (an IPv6 host in brackets keeps them).
fn split_port(host: &str) -> (&str, Option<&str>) {
    let after_brackets = if host.starts_with('[') {
        host.find(']').map_or(host.len(), |i| i + 1)
    } else {
        0
    };
    match host[after_brackets..].rsplit_once(':') {
        Some((_, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            let at = host.len() - port.len() - 1;
            (&host[..at], Some(port))
        }
        _ => (host, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(Some(&path), &Overrides::default())
    }

    #[test]
    fn front_door_limits() {
        let d = Config::default();
        assert_eq!(d.header_timeout, Duration::from_secs(30));
        assert_eq!(d.max_connections, 4096);
        let c = load(
            "header_timeout_seconds = 2.5\nbody_stall_seconds = 7\napi_body_seconds = 9\napi_body_memory_mib = 64\nmax_connections = 10\n",
        )
        .unwrap();
        assert_eq!(c.header_timeout, Duration::from_millis(2500));
        assert_eq!(c.body_stall, Duration::from_secs(7));
        assert_eq!(c.api_body_deadline, Duration::from_secs(9));
        assert_eq!(c.api_body_memory, 64 << 20);
        assert_eq!(c.max_connections, 10);
        for (bad, says) in [
            ("header_timeout_seconds = 0", "above 0"),
            ("body_stall_seconds = -1", "above 0"),
            ("api_body_memory_mib = 8", "between 32"),
            ("max_connections = 0", "between 1"),
        ] {
            let e = load(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn peers_as_a_list_or_as_tables() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("peer.key");
        std::fs::write(&key, [7u8; 32]).unwrap();
        let key = key.display();
        let list = load(&format!(
            "region = \"us-east-1\"\nreplication_peers = [{{ region = \"us-west-2\", endpoint = \"https://west.example.net/\", key_file = \"{key}\" }}]\n"
        ))
        .unwrap();
        let tables = load(&format!(
            "region = \"us-east-1\"\n[replication.peers.us-west-2]\nendpoint = \"https://west.example.net/\"\nkey_file = \"{key}\"\n"
        ))
        .unwrap();
        for c in [&list, &tables] {
            assert_eq!(c.peers.len(), 1);
            let p = &c.peers[0];
            assert_eq!(
                (p.region.as_str(), p.endpoint.as_str()),
                ("us-west-2", "https://west.example.net")
            );
            assert_eq!(p.key, vec![7u8; 32]);
        }
        // both forms together: each Region once, wherever it is listed
        let both = load(&format!(
            "region = \"us-east-1\"\nreplication_peers = [{{ region = \"us-west-2\", endpoint = \"https://w\", key_file = \"{key}\" }}]\n[replication.peers.eu-west-1]\nendpoint = \"https://e\"\nkey_file = \"{key}\"\n"
        ))
        .unwrap();
        let regions: Vec<_> = both.peers.iter().map(|p| p.region.as_str()).collect();
        assert_eq!(regions, ["us-west-2", "eu-west-1"]);
        for (bad, says) in [
            (
                format!("replication_peers = [{{ region = \"us-west-2\", endpoint = \"https://w\", key_file = \"{key}\" }}]\n[replication.peers.us-west-2]\nendpoint = \"https://w\"\nkey_file = \"{key}\"\n"),
                "another peer already",
            ),
            (
                format!("[replication.peers.us-west-2]\nendpoint = \"https://w\"\nkey_file = \"{key}\"\nkey = \"x\"\n"),
                "unknown field",
            ),
            (
                format!("[replication.peers.us-west-2]\nkey_file = \"{key}\"\n"),
                "endpoint",
            ),
            (
                format!("[replication.peers.US_WEST]\nendpoint = \"https://w\"\nkey_file = \"{key}\"\n"),
                "not a region name",
            ),
            ("[replication]\nrules = []\n".to_string(), "unknown field"),
        ] {
            let e = load(&bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn job_settings() {
        let d = Config::default();
        assert_eq!(d.job_lease, Duration::from_secs(30));
        assert_eq!(d.clean_interval, Duration::from_secs(300));
        assert_eq!(d.upload_idle, Duration::from_secs(3600));
        assert_eq!(d.lifecycle_interval, Duration::from_secs(3600));
        assert_eq!(d.gc_interval, Duration::from_secs(3600));
        assert_eq!(d.gc_grace, Duration::from_secs(3600));
        let c = load(
            "job_lease_seconds = 1.5\nclean_interval_seconds = 0.5\nupload_idle_seconds = 2\nlifecycle_interval_seconds = 0.25\ngc_interval_seconds = 2\ngc_grace_seconds = 0\n",
        )
        .unwrap();
        assert_eq!(c.gc_interval, Duration::from_secs(2));
        assert_eq!(c.gc_grace, Duration::ZERO);
        assert_eq!(c.lifecycle_interval, Duration::from_millis(250));
        assert_eq!(c.job_lease, Duration::from_millis(1500));
        assert_eq!(c.clean_interval, Duration::from_millis(500));
        assert_eq!(c.upload_idle, Duration::from_secs(2));
        for (bad, says) in [
            ("job_lease_seconds = 0.5", "between 1 and 3600"),
            ("clean_interval_seconds = 0", "above 0"),
            ("upload_idle_seconds = 0", "between 1 and 2592000"),
            ("lifecycle_interval_seconds = 90000", "at most 86400"),
            ("gc_interval_seconds = 0", "above 0"),
            ("gc_grace_seconds = -1", "between 0 and 2592000"),
        ] {
            let e = load(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn operations_settings() {
        let d = Config::default();
        assert_eq!(d.tls, None);
        assert_eq!(d.limits.quota_of("111111111111"), None);
        let c = load(
            "tls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\nmetrics_listen = \"127.0.0.1:9100\"\n\
             throttle_address_rps = 50\nthrottle_principal_rps = 0\nthrottle_burst_seconds = 2\n\
             throttle_auth_failures_per_minute = 6\nmax_uploads_per_repository = 3\n\
             storage_quota_gib = 1\nstorage_quotas = { \"222222222222\" = 0, \"333333333333\" = 0.5 }\n\
             audit_log_max_mib = 2\naudit_log_files = 1\n",
        )
        .unwrap();
        assert_eq!(
            c.tls,
            Some(TlsFiles {
                cert: "/c.pem".into(),
                key: "/k.pem".into()
            })
        );
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9100".parse().unwrap()));
        assert_eq!(c.throttle.per_address.burst, 100.0);
        assert_eq!(c.throttle.per_principal.per_second, 0.0);
        assert_eq!(c.throttle.failures_per_address.burst, 6.0);
        assert_eq!(c.limits.uploads_per_repository, 3);
        assert_eq!(c.limits.uploads_per_account, 2000);
        assert_eq!(c.limits.quota_of("111111111111"), Some(1 << 30));
        assert_eq!(c.limits.quota_of("222222222222"), None);
        assert_eq!(c.limits.quota_of("333333333333"), Some(1 << 29));
        match &c.audit {
            AuditSink::File(p, r) => {
                assert!(p.ends_with("audit.log"), "{p:?}");
                assert_eq!((r.max_bytes, r.keep), (2 << 20, 1));
            }
            other => panic!("{other:?}"),
        }
        for (bad, says) in [
            ("tls_cert = \"/c.pem\"", "needs tls_key"),
            ("throttle_address_rps = -1", "from 0"),
            ("throttle_burst_seconds = 0", "above 0"),
            ("storage_quotas = { \"12\" = 1 }", "12-digit"),
            ("max_uploads_per_account = 0", "between 1"),
        ] {
            let e = load(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn blob_backends() {
        match Config::default().blob_backend().unwrap() {
            BlobBackend::Local(dir) => assert_eq!(dir, PathBuf::from("./berth-data")),
            other => panic!("{other:?}"),
        }
        let c = load(
            "blob_url = \"s3://my-bucket/some/prefix/\"\ns3_endpoint = \"http://127.0.0.1:9000\"\ns3_allow_http = true\ns3_access_key_id = \"AK\"\ns3_secret_access_key = \"SK\"\nblob_redirect = true\n",
        )
        .unwrap();
        assert!(c.blob_redirect);
        assert_eq!((c.blob_cache_bytes, c.blob_cache_dir.as_deref()), (0, None));
        let cached = load(
            "blob_url = \"s3://my-bucket\"\ns3_access_key_id = \"AK\"\ns3_secret_access_key = \"SK\"\nblob_cache_gib = 1.5\nblob_cache_dir = \"/var/cache/berth\"\n",
        )
        .unwrap();
        assert_eq!(cached.blob_cache_bytes, 3 << 29);
        assert_eq!(
            cached.blob_cache_dir.as_deref(),
            Some(Path::new("/var/cache/berth"))
        );
        match c.blob_backend().unwrap() {
            BlobBackend::S3(s) => {
                assert_eq!(s.bucket, "my-bucket");
                assert_eq!(s.prefix, "some/prefix");
                assert_eq!(s.region, "us-east-1");
                assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
                assert_eq!(
                    (s.access_key_id.as_str(), s.secret_access_key.as_str()),
                    ("AK", "SK")
                );
            }
            other => panic!("{other:?}"),
        }
        let keys = "s3_access_key_id = \"AK\"\ns3_secret_access_key = \"SK\"\n";
        for (bad, says) in [
            ("blob_url = \"gs://b\"\n".to_string(), "neither file://"),
            (
                format!("blob_url = \"s3://B_ad\"\n{keys}"),
                "not an S3 bucket name",
            ),
            (
                format!("blob_url = \"s3://bucket\"\ns3_endpoint = \"http://h:1\"\n{keys}"),
                "s3_allow_http",
            ),
            (
                "blob_redirect = true\n".to_string(),
                "needs an s3:// blob_url",
            ),
            (
                "blob_cache_gib = 1\n".to_string(),
                "blob_cache_gib needs an s3:// blob_url",
            ),
            (
                format!("blob_url = \"s3://bucket\"\n{keys}blob_cache_gib = -1\n"),
                "from 0 (no cache)",
            ),
        ] {
            let e = load(&bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn secrets_key_file_from_the_file_and_the_flag() {
        assert_eq!(Config::default().secrets_key_file, None);
        let c = load("secrets_key_file = \"/etc/berth/secrets.key\"\n").unwrap();
        assert_eq!(
            c.secrets_key_file.as_deref(),
            Some(Path::new("/etc/berth/secrets.key"))
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(&path, "secrets_key_file = \"/from/file\"\n").unwrap();
        let flag = Overrides {
            secrets_key_file: Some(PathBuf::from("/from/flag")),
            ..Overrides::default()
        };
        let c = Config::load(Some(&path), &flag).unwrap();
        assert_eq!(c.secrets_key_file.as_deref(), Some(Path::new("/from/flag")));
    }

    #[test]
    fn metadata_url_from_the_file_and_the_flag() {
        assert_eq!(Config::default().metadata, None);
        let c = load("metadata_url = \"postgres://berth:pw@db:5432/berth\"\n").unwrap();
        let url = c.metadata.unwrap();
        assert_eq!(
            url,
            MetadataUrl::Postgres("postgres://berth:pw@db:5432/berth".into())
        );
        assert_eq!(url.redacted(), "postgres://berth@db:5432/berth");
        let flag = Overrides {
            metadata_url: Some("sqlite:///srv/berth.db".into()),
            ..Overrides::default()
        };
        let c = Config::load(None, &flag).unwrap();
        assert_eq!(
            c.metadata,
            Some(MetadataUrl::Sqlite(PathBuf::from("/srv/berth.db")))
        );
        for (bad, says) in [
            (
                "metadata_url = \"mysql://u:secret@h/db\"",
                "not a mysql:// URL",
            ),
            ("metadata_url = \"sqlite://\"", "names no database file"),
            ("metadata_url = \"berth.db\"", "without a scheme"),
        ] {
            let e = load(bad).unwrap_err();
            assert!(e.contains(says) && !e.contains("secret"), "{bad}: {e}");
        }
    }

    #[test]
    fn pull_through_upstreams_name_hosts_and_domains() {
        let any = Config::default();
        assert!(any.upstream_allowed("169.254.169.254"));
        let c = load(
            "pull_through_upstreams = [\"registry-1.docker.io\", \"*.example.com\", \"127.0.0.1:5000\", \"*.corp.net:8443\", \"[::1]:5000\"]\n",
        )
        .unwrap();
        for yes in [
            "registry-1.docker.io",
            "Registry-1.Docker.IO",
            "a.example.com",
            "a.b.example.com:5000",
            "127.0.0.1:5000",
            "r.corp.net:8443",
            "[::1]:5000",
        ] {
            assert!(c.upstream_allowed(yes), "{yes}");
        }
        for no in [
            "docker.io",
            "registry-1.docker.io:443",
            "example.com",
            "evilexample.com",
            "a.example.com.evil.net",
            "127.0.0.1",
            "127.0.0.1:5001",
            "r.corp.net",
            "r.corp.net:443",
            "[::1]:5001",
            "169.254.169.254",
        ] {
            assert!(!c.upstream_allowed(no), "{no}");
        }
        for bad in [
            "\"https://ghcr.io\"",
            "\"ghcr.io/x\"",
            "\"\"",
            "\"*.\"",
            "\"a.*.com\"",
        ] {
            let e = load(&format!("pull_through_upstreams = [{bad}]\n")).unwrap_err();
            assert!(e.contains("pull_through_upstreams"), "{bad}: {e}");
        }
    }
}
