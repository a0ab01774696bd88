//! The state every request handler shares.

use std::net::IpAddr;
use std::sync::Arc;

use berth_store::Store;

use super::config::Config;
use crate::audit::Audit;
use crate::auth::cache::Caches;

pub struct App {
    pub store: Arc<dyn Store>,
    pub caches: Caches,
    pub config: Config,
    pub audit: Audit,
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
    /// The client address and whether it came over TLS: the peer's, unless the peer is a
    /// trusted proxy, whose `X-Forwarded-For` (nearest untrusted hop) and
    /// `X-Forwarded-Proto` then count.
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
        let secure = proto.is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
        (client, secure)
    }
}
