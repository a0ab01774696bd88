//! The state every request handler shares.

use std::net::IpAddr;
use std::sync::Arc;

use berth_store::{RegistryStore, Store};

use super::config::Config;
use crate::audit::Audit;
use crate::auth::cache::Caches;

pub struct App {
    pub store: Arc<dyn Store>,
    pub registry: Arc<dyn RegistryStore>,
    pub blobs: berth_blobs::BlobStore,
    /// The key registry passwords are signed with (shared by every node, in the store).
    pub token_key: Vec<u8>,
    /// The key denials' encoded authorization messages are sealed with (`None`: off).
    pub message_key: Option<[u8; 32]>,
    /// The account a registry host that names none reaches.
    pub default_account: String,
    /// The Region whose repositories are stored under their bare names (see
    /// [`berth_store::RegistryKey`]): the first Region the store was served in.
    pub home_region: String,
    /// The address the server listens on, once bound.
    pub bound: std::sync::OnceLock<std::net::SocketAddr>,
    pub caches: Caches,
    pub throttle: super::throttle::Throttle,
    /// Accounts' storage use, as the quotas read it.
    pub usage: Usage,
    pub config: Config,
    pub audit: Audit,
    /// The pull-through cache's fetches in flight and what it remembers.
    pub pull_through: crate::registry::cache::PullThrough,
    /// This state itself, for the tasks a request starts that outlive it (the
    /// pull-through cache's fetches); empty where the state is not shared.
    pub me: std::sync::Weak<App>,
}

/// Accounts' storage use (bytes held), read from the store at most every [`Usage::TTL`]
/// per account: the quota check of every upload start does not scan the account's blobs.
#[derive(Default)]
pub struct Usage {
    seen: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, u64)>>,
}

impl Usage {
    pub const TTL: std::time::Duration = std::time::Duration::from_secs(2);

    /// The bytes `account`'s repositories hold (at most [`Usage::TTL`] old).
    pub async fn of(
        &self,
        registry: &dyn RegistryStore,
        account: &str,
    ) -> Result<u64, berth_store::RegistryError> {
        let lock = || self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, bytes)) = lock().get(account) {
            if at.elapsed() < Self::TTL {
                return Ok(*bytes);
            }
        }
        let bytes = registry.account_usage(account).await?;
        let mut seen = lock();
        if seen.len() > 10_000 {
            seen.clear();
        }
        seen.insert(account.to_string(), (std::time::Instant::now(), bytes));
        Ok(bytes)
    }
}

/// Where a request comes from and when.
#[derive(Debug, Clone)]
pub struct Origin {
    pub request_id: String,
    /// `aws:SourceIp`: the peer, or the client a trusted proxy names.
    pub source_ip: IpAddr,
    /// `aws:SecureTransport`.
    pub secure: bool,
    /// Seconds since the epoch.
    pub now: i64,
    /// `aws:RequestedRegion`: the region the request was signed for.
    pub region: String,
}

impl App {
    /// The registry of `account` in `region` (a Region this deployment serves).
    pub fn key<'a>(&self, account: &'a str, region: &'a str) -> berth_store::RegistryKey<'a> {
        berth_store::RegistryKey {
            account,
            region: (region != self.home_region).then_some(region),
        }
    }

    /// Where a request comes from ([`App::client`]), when, and for which region.
    pub fn origin(
        &self,
        peer: IpAddr,
        transport: Option<&super::connections::Transport>,
        headers: &axum::http::HeaderMap,
        request_id: String,
        now: i64,
        region: String,
    ) -> Origin {
        let (forwarded_for, proto) = (
            header_list(headers, "x-forwarded-for"),
            header_list(headers, "x-forwarded-proto"),
        );
        let (source_ip, forwarded_secure) =
            self.client(peer, forwarded_for.as_deref(), proto.as_deref());
        // Over TLS to this server, or over TLS to the trusted proxy that forwarded it.
        let secure = transport.is_some_and(|t| t.tls) || forwarded_secure;
        Origin {
            request_id,
            source_ip,
            secure,
            now,
            region,
        }
    }

    /// The client's address ([`App::client`]) from a request's peer and headers.
    pub fn client_ip(&self, peer: IpAddr, headers: &axum::http::HeaderMap) -> IpAddr {
        let forwarded_for = header_list(headers, "x-forwarded-for");
        self.client(peer, forwarded_for.as_deref(), None).0
    }

    /// `http` or `https`, as clients reach the registry.
    pub fn registry_scheme(&self) -> &str {
        match &self.config.public_url {
            Some(u) if u.starts_with("https://") => "https",
            Some(_) => "http",
            None if self.config.tls.is_some() => "https",
            None => "http",
        }
    }

    /// The host (and port) of an account's registry in a Region: the public URL's (or the
    /// listen address) for the default account in the default Region,
    /// `<account>.dkr.<domain>:<port>` for another account there, and
    /// `<account>.dkr.<first label>.<region>.<rest>:<port>` in another Region (see
    /// [`crate::oci::registry_of`], which reads them back).
    pub fn registry_host(&self, account: &str, region: &str) -> String {
        let listen = *self.bound.get().unwrap_or(&self.config.listen);
        let public = self.config.public_url.as_deref().map(|u| {
            u.split_once("://")
                .map_or(u, |(_, h)| h)
                .trim_end_matches('/')
                .to_string()
        });
        let default_region = region == self.config.region;
        if account == self.default_account && default_region {
            return public.unwrap_or_else(|| listen.to_string());
        }
        let port = public
            .as_deref()
            .and_then(|h| h.rsplit_once(':').map(|(_, p)| p.to_string()))
            .unwrap_or_else(|| listen.port().to_string());
        let domain = &self.config.registry_domain;
        if default_region {
            return format!("{account}.dkr.{domain}:{port}");
        }
        match domain.split_once('.') {
            Some((first, rest)) => format!("{account}.dkr.{first}.{region}.{rest}:{port}"),
            None => format!("{account}.dkr.{domain}.{region}:{port}"),
        }
    }

    /// The client address and whether it came over TLS: the peer's, unless the peer is a
    /// trusted proxy, whose `X-Forwarded-For` (nearest untrusted hop) and
    /// `X-Forwarded-Proto` (its right-most entry: what the nearest proxy saw) then count.
    /// Each is the whole list, every header line joined ([`header_list`]).
    pub fn client(
        &self,
        peer: IpAddr,
        forwarded_for: Option<&str>,
        proto: Option<&str>,
    ) -> (IpAddr, bool) {
        let trusted = |ip: IpAddr| self.config.trusted_proxies.iter().any(|c| c.contains(ip));
        if !trusted(peer) {
            return (peer, false);
        }
        let mut client = peer;
        if let Some(list) = forwarded_for {
            for hop in list.rsplit(',') {
                match hop.trim().parse::<IpAddr>() {
                    Ok(ip) => {
                        client = ip;
                        if !trusted(ip) {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        }
        let secure = proto
            .and_then(|p| p.rsplit(',').next())
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
        (client, secure)
    }
}

/// Every line of a header as one comma-separated list, in order (`None` if absent). A
/// proxy may append to the header it received or add a line of its own: both must count,
/// or a client's own line could stand in for the proxy's.
pub fn header_list(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    let mut out: Option<String> = None;
    for v in headers.get_all(name) {
        // A value that is not text cannot be trusted as a list: it ends the walk there.
        let v = v.to_str().unwrap_or("-");
        match &mut out {
            Some(o) => {
                o.push(',');
                o.push_str(v);
            }
            None => out = Some(v.to_string()),
        }
    }
    out
}

/// An application on an in-memory store and blob store, with account 111111111111 and
/// a user `nobody` without policies (tests).
#[cfg(test)]
pub mod testing {
    use super::*;
    use crate::audit::AuditSink;
    use crate::auth::cache::Caches;
    use crate::auth::Caller;
    use berth_store::{AccessKey, Account, Entity, EntityKind, KeyStatus};

    pub const ACCOUNT: &str = "111111111111";

    pub async fn app() -> App {
        let store = Arc::new(berth_store::SqliteStore::in_memory().await.unwrap());
        let root = AccessKey {
            id: "AKIAROOTROOTROOTROOT".into(),
            secret: "s".into(),
            account: ACCOUNT.into(),
            user: None,
            status: KeyStatus::Active,
            created: 0,
        };
        store
            .create_account(
                &Account {
                    id: ACCOUNT.into(),
                    alias: None,
                    created: 0,
                },
                &root,
            )
            .await
            .unwrap();
        store
            .create_entity(
                &Entity {
                    account: ACCOUNT.into(),
                    kind: EntityKind::User,
                    name: "nobody".into(),
                    path: "/".into(),
                    unique_id: "AIDANOBODYNOBODYNOBO".into(),
                    created: 0,
                    trust_policy: None,
                    description: None,
                    max_session_secs: None,
                    boundary: None,
                },
                &[],
            )
            .await
            .unwrap();
        let key = AccessKey {
            id: "AKIANOBODYNOBODYNOBO".into(),
            user: Some("nobody".into()),
            ..root
        };
        store.create_access_key(&key, 2).await.unwrap();
        let dir = std::env::temp_dir().join(format!("berth-app-test-{}", crate::ids::request_id()));
        let config = Config::default();
        App {
            store: store.clone(),
            registry: store,
            blobs: berth_blobs::BlobStore::in_memory(&dir).await.unwrap(),
            token_key: b"test-key".to_vec(),
            message_key: Some([9; 32]),
            default_account: ACCOUNT.into(),
            home_region: "us-east-1".into(),
            bound: std::sync::OnceLock::new(),
            caches: Caches::new(config.cache_ttl),
            throttle: crate::serve::throttle::Throttle::new(config.throttle),
            usage: Default::default(),
            pull_through: Default::default(),
            me: std::sync::Weak::new(),
            config,
            audit: Audit::open(&AuditSink::Off).unwrap(),
        }
    }

    /// The caller of an access key.
    pub async fn caller(app: &App, key_id: &str) -> Caller {
        let cred = app
            .caches
            .credential(&*app.store, key_id)
            .await
            .unwrap()
            .unwrap();
        crate::auth::authenticate::caller_for(app, key_id, &cred, crate::ids::now())
            .await
            .unwrap()
    }

    pub fn origin() -> Origin {
        Origin {
            request_id: "test".into(),
            source_ip: "127.0.0.1".parse().unwrap(),
            secure: false,
            now: crate::ids::now(),
            region: "us-east-1".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditSink;
    use crate::auth::cache::Caches;
    use berth_iam::values::Cidr;

    async fn app(proxies: &[&str]) -> App {
        let config = Config {
            trusted_proxies: proxies.iter().map(|p| Cidr::parse(p).unwrap()).collect(),
            ..Config::default()
        };
        let store = Arc::new(berth_store::SqliteStore::in_memory().await.unwrap());
        let dir = std::env::temp_dir().join(format!("berth-app-test-{}", crate::ids::request_id()));
        App {
            store: store.clone(),
            registry: store,
            blobs: berth_blobs::BlobStore::in_memory(&dir).await.unwrap(),
            token_key: b"test".to_vec(),
            message_key: None,
            default_account: "111111111111".into(),
            home_region: "us-east-1".into(),
            bound: std::sync::OnceLock::new(),
            caches: Caches::new(config.cache_ttl),
            throttle: crate::serve::throttle::Throttle::new(config.throttle),
            usage: Default::default(),
            pull_through: Default::default(),
            me: std::sync::Weak::new(),
            config,
            audit: Audit::open(&AuditSink::Off).unwrap(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn every_forwarded_line_counts() {
        use axum::http::HeaderMap;
        let a = app(&["10.0.0.0/8"]).await;
        // A proxy that adds its own line instead of appending: the client's line comes
        // first and must not win.
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "198.51.100.66".parse().unwrap());
        h.append("x-forwarded-for", "203.0.113.9".parse().unwrap());
        h.append("x-forwarded-proto", "https".parse().unwrap());
        h.append("x-forwarded-proto", "http".parse().unwrap());
        let o = a.origin(ip("10.1.1.1"), None, &h, "r".into(), 0, "us-east-1".into());
        assert_eq!((o.source_ip, o.secure), (ip("203.0.113.9"), false));
        // Appended and added lines mix: one list, walked from the right.
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            "198.51.100.66, 203.0.113.9".parse().unwrap(),
        );
        h.append("x-forwarded-for", "10.3.3.3".parse().unwrap());
        h.append("x-forwarded-proto", "http, https".parse().unwrap());
        let o = a.origin(ip("10.1.1.1"), None, &h, "r".into(), 0, "us-east-1".into());
        assert_eq!((o.source_ip, o.secure), (ip("203.0.113.9"), true));
        // From an untrusted peer, no line counts.
        let o = a.origin(ip("192.0.2.1"), None, &h, "r".into(), 0, "us-east-1".into());
        assert_eq!((o.source_ip, o.secure), (ip("192.0.2.1"), false));
        assert_eq!(header_list(&HeaderMap::new(), "x-forwarded-for"), None);
    }

    #[tokio::test]
    async fn forwarded_headers_only_from_trusted_proxies() {
        let a = app(&["10.0.0.0/8"]).await;
        // An untrusted peer cannot claim another address or TLS.
        assert_eq!(
            a.client(ip("192.0.2.7"), Some("203.0.113.9"), Some("https")),
            (ip("192.0.2.7"), false)
        );
        // A trusted proxy: the nearest hop that is not itself a trusted proxy.
        assert_eq!(
            a.client(
                ip("10.1.1.1"),
                Some("198.51.100.1, 203.0.113.9, 10.2.2.2"),
                Some("https")
            ),
            (ip("203.0.113.9"), true)
        );
        // Garbage in the header stops the walk at the last good hop.
        assert_eq!(
            a.client(ip("10.1.1.1"), Some("not-an-ip"), None),
            (ip("10.1.1.1"), false)
        );
        let none = app(&[]).await;
        assert_eq!(
            none.client(ip("127.0.0.1"), Some("203.0.113.9"), Some("https")),
            (ip("127.0.0.1"), false)
        );
    }
}
