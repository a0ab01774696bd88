//! Server configuration: defaults, an optional TOML file (`--config`), then flags.
//!
//! ```toml
//! listen = "127.0.0.1:5000"
//! data_dir = "./berth-data"
//! region = "us-east-1"
//! clock_skew_seconds = 900        # SigV4: how far X-Amz-Date may be from now
//! trusted_proxies = ["10.0.0.0/8"] # X-Forwarded-For / -Proto are read only from these
//! audit_log = "stdout"            # "stdout", "off", or a file path
//! cache_ttl_ms = 2000             # how long another node's IAM change may take to apply here
//! registry_domain = "ecr.localhost" # registry hosts: <account>.dkr.<registry_domain>
//! public_url = "http://127.0.0.1:5000" # how clients reach the default account's registry
//! create_on_push = false          # ECR never creates repositories on push
//! encoded_denials = true          # append an encoded authorization message to denials
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_iam::values::Cidr;
use serde::Deserialize;

use crate::audit::AuditSink;

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub region: String,
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
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 5000)),
            data_dir: PathBuf::from("./berth-data"),
            region: "us-east-1".into(),
            max_skew_secs: 15 * 60,
            trusted_proxies: Vec::new(),
            audit: AuditSink::Off,
            cache_ttl: Duration::from_secs(2),
            registry_domain: "ecr.localhost".into(),
            public_url: None,
            create_on_push: false,
            encoded_denials: true,
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
    clock_skew_seconds: Option<i64>,
    trusted_proxies: Option<Vec<String>>,
    audit_log: Option<String>,
    cache_ttl_ms: Option<u64>,
    registry_domain: Option<String>,
    public_url: Option<String>,
    create_on_push: Option<bool>,
    encoded_denials: Option<bool>,
}

/// Command-line values, which win over the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub region: Option<String>,
    pub audit_log: Option<String>,
}

pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("listen address {s:?} is not IP:PORT (e.g. 127.0.0.1:5000)"))
}

impl Config {
    pub fn load(file: Option<&Path>, o: &Overrides) -> Result<Config, String> {
        let mut c = Config::default();
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
            if let Some(r) = f.region {
                c.region = r;
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
                c.audit = AuditSink::parse(&a);
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
        }
        if let Some(l) = &o.listen {
            c.listen = parse_listen(l)?;
        }
        if let Some(d) = &o.data_dir {
            c.data_dir = d.clone();
        }
        if let Some(r) = &o.region {
            c.region = r.clone();
        }
        if let Some(a) = &o.audit_log {
            c.audit = AuditSink::parse(a);
        }
        if c.region.is_empty()
            || !c
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(format!(
                "region {:?} is not a region name like us-east-1",
                c.region
            ));
        }
        Ok(c)
    }
}
