//! TLS on the main port (`tls_cert`, `tls_key`): rustls with ring, TLS 1.2 and 1.3,
//! HTTP/2 and HTTP/1.1 by ALPN.
//!
//! The certificate is served from a [`Reloading`] resolver: a watcher looks at the two
//! files every [`POLL`] (and at once on SIGHUP) and, when either changed, loads them
//! again. A pair that does not load (a half-written file, a key that does not match the
//! certificate: a rotation caught between its two writes) leaves the certificate in
//! force as it was, with a warning, and is tried again at the next look; so a rotation
//! is served without a restart and never breaks the port.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// How often the certificate and key files are looked at for a change.
pub const POLL: Duration = Duration::from_secs(2);

/// What a TLS listener needs: the acceptor, and the resolver behind it.
#[derive(Clone)]
pub struct Tls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    pub resolver: Arc<Reloading>,
}

/// Load the pair at `cert` and `key` and make an acceptor that serves it (and what it is
/// reloaded into).
pub fn acceptor(cert: &Path, key: &Path) -> Result<Tls, String> {
    let resolver = Arc::new(Reloading::load(cert, key)?);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Tls {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        resolver,
    })
}

/// A certificate chain and its key, read from PEM files: the chain is every
/// `CERTIFICATE` block of `cert` (the server's first, then its issuers); the key is the
/// first private key of `key` (PKCS#8, PKCS#1 RSA or SEC1 EC), and must match the first
/// certificate.
pub fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("reading TLS certificate {}: {e}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("reading TLS certificate {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "TLS certificate {} holds no PEM CERTIFICATE block",
            cert.display()
        ));
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        format!(
            "reading TLS key {}: {e} (a PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block)",
            key.display()
        )
    })?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&der).map_err(|e| {
        format!(
            "TLS key {}: {e} (RSA, ECDSA P-256/P-384 and Ed25519 keys are supported)",
            key.display()
        )
    })?;
    let pair = CertifiedKey::new(chain, signing);
    pair.keys_match().map_err(|e| {
        format!(
            "TLS key {} does not belong to the first certificate of {}: {e}",
            key.display(),
            cert.display()
        )
    })?;
    Ok(pair)
}

/// What identifies a file's content cheaply: its modification time, size and inode
/// (a rotation by rename changes the inode even within one mtime tick).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp(Option<(SystemTime, u64, u64)>);

impl Stamp {
    fn of(path: &Path) -> Stamp {
        Stamp(std::fs::metadata(path).ok().map(|m| {
            #[cfg(unix)]
            let ino = std::os::unix::fs::MetadataExt::ino(&m);
            #[cfg(not(unix))]
            let ino = 0;
            (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len(), ino)
        }))
    }
}

/// The certificate in force, reloaded from its files when they change.
pub struct Reloading {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Current>,
}

struct Current {
    pair: Arc<CertifiedKey>,
    /// The files' stamps when `pair` was loaded, or when a load of them last failed
    /// (so a broken pair is reported once per change, not at every look).
    seen: (Stamp, Stamp),
}

impl std::fmt::Debug for Reloading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// What a look at the files did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reload {
    /// Neither file changed since the last look.
    Unchanged,
    /// The new pair is served from now on.
    Loaded,
    /// The files changed but do not load: the pair in force stays (the reason).
    Failed(String),
}

impl Reloading {
    /// Load the pair at `cert` and `key` (which must load now).
    pub fn load(cert: &Path, key: &Path) -> Result<Reloading, String> {
        let seen = (Stamp::of(cert), Stamp::of(key));
        let pair = Arc::new(load_pair(cert, key)?);
        Ok(Reloading {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: RwLock::new(Current { pair, seen }),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Current> {
        self.current.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Look at the files; load them again if they changed (`force`: even if not).
    pub fn reload(&self, force: bool) -> Reload {
        let seen = (Stamp::of(&self.cert), Stamp::of(&self.key));
        if !force && self.read().seen == seen {
            return Reload::Unchanged;
        }
        let loaded = load_pair(&self.cert, &self.key);
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        current.seen = seen;
        match loaded {
            Ok(pair) => {
                current.pair = Arc::new(pair);
                Reload::Loaded
            }
            Err(e) => Reload::Failed(e),
        }
    }

    /// The chain in force (the server's certificate first).
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.read().pair.cert.clone()
    }

    /// Watch the files until the process ends: every [`POLL`], and on SIGHUP.
    pub fn watch(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            #[cfg(unix)]
            let mut hup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut tick = tokio::time::interval(POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                #[cfg(unix)]
                let forced = {
                    let hangup = async {
                        match &mut hup {
                            Some(s) => s.recv().await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        _ = tick.tick() => false,
                        _ = hangup => true,
                    }
                };
                #[cfg(not(unix))]
                let forced = {
                    tick.tick().await;
                    false
                };
                let me = self.clone();
                let outcome = tokio::task::spawn_blocking(move || me.reload(forced))
                    .await
                    .unwrap_or(Reload::Unchanged);
                match outcome {
                    Reload::Unchanged => {}
                    Reload::Loaded => tracing::info!(
                        cert = %self.cert.display(),
                        "TLS certificate reloaded: new connections get it"
                    ),
                    Reload::Failed(e) => tracing::warn!(
                        error = %e,
                        "TLS certificate files changed but do not load: the certificate in force stays"
                    ),
                }
            }
        })
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.read().pair.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, name: &str, hosts: &[&str]) -> (PathBuf, PathBuf) {
        let made = crate::cli::cert::issue_self_signed(hosts).unwrap();
        let (c, k) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, made.0).unwrap();
        std::fs::write(&k, made.1).unwrap();
        (c, k)
    }

    #[test]
    fn a_rotation_is_taken_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path(), "a", &["one.example"]);
        let r = Reloading::load(&cert, &key).unwrap();
        let first = r.chain();
        assert_eq!(r.reload(false), Reload::Unchanged);

        // A certificate written before its key: they do not match, the old pair stays.
        let (c2, k2) = pair(dir.path(), "b", &["two.example"]);
        std::fs::copy(&c2, &cert).unwrap();
        match r.reload(true) {
            Reload::Failed(e) => assert!(e.contains("does not belong"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(r.chain(), first);
        // Then the key: the new pair is served.
        std::fs::copy(&k2, &key).unwrap();
        assert_eq!(r.reload(true), Reload::Loaded);
        assert_ne!(r.chain(), first);
        assert_eq!(r.chain(), Reloading::load(&c2, &k2).unwrap().chain());
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path(), "a", &["one.example"]);
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = load_pair(&empty, &key).unwrap_err();
        assert!(e.contains("no PEM CERTIFICATE"), "{e}");
        let e = load_pair(&cert, &empty).unwrap_err();
        assert!(e.contains("reading TLS key"), "{e}");
        let e = load_pair(&dir.path().join("missing.crt"), &key).unwrap_err();
        assert!(e.contains("missing.crt"), "{e}");
    }
}
