//! `berth cert init`: TLS without a PKI. A private CA (made once, kept in the data
//! directory) and a server certificate it signs for the hosts given, and the commands
//! that make docker, podman, skopeo and the aws CLI trust it.
//!
//! Layout, under `DATA_DIR/tls/`: `ca.crt` (what clients trust), `server.crt` (the
//! server's certificate, then the CA's: the chain `--tls-cert` serves), and
//! `private/ca.key`, `private/server.key` (readable by this user only). `ca.crt` and
//! `server.crt` are the only files of `tls/` itself, so it can be handed to skopeo and
//! podman as `--cert-dir` (they read every `*.crt` there as a CA and refuse a `*.key`
//! without its certificate).
//!
//! Running it again keeps the CA (clients that trust it go on doing so) and issues a new
//! server certificate for the hosts given then; a server with `--tls-cert` on it picks
//! it up without a restart.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use crate::serve::config::{Config, Overrides};

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Make a private CA (once) and a server certificate for the hosts given, in
    /// DATA_DIR/tls, and print how to serve it and how clients trust it.
    ///
    /// The server certificate also names every account's registry host
    /// (*.dkr.REGISTRY_DOMAIN, and per further Region) so cross-account hosts verify.
    /// Running it again keeps the CA and issues a new server certificate, which a running
    /// server picks up without a restart.
    Init(InitArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// A name or IP address clients reach the registry by, repeatable (e.g.
    /// registry.example.com, 10.0.0.5)
    #[arg(long = "host", value_name = "HOST", required = true)]
    hosts: Vec<String>,
    /// The data directory [default: ./berth-data, or the config's data_dir]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The server's configuration file: its data_dir, listen port, registry_domain and
    /// regions shape the certificate and the printed commands
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// How long the server certificate is valid, in days
    #[arg(long, value_name = "DAYS", default_value_t = 825)]
    days: u32,
}

pub fn run(cmd: CertCommand) -> Result<ExitCode, String> {
    match cmd {
        CertCommand::Init(args) => init(args),
    }
}

/// How long the private CA is valid.
const CA_DAYS: i64 = 3650;

fn init(args: InitArgs) -> Result<ExitCode, String> {
    let config = Config::load(
        args.config.as_deref(),
        &Overrides {
            data_dir: args.data_dir.clone(),
            ..Overrides::default()
        },
    )?;
    if !(1..=3650).contains(&args.days) {
        return Err(format!("--days {} is not between 1 and 3650", args.days));
    }
    for h in &args.hosts {
        if h.contains(':') && h.parse::<std::net::IpAddr>().is_err() || h.contains('/') {
            return Err(format!(
                "--host {h:?} is a host name or an IP address, without a port or scheme"
            ));
        }
    }
    crate::serve::private::prepare_data_dir(&config.data_dir)
        .map(|w| crate::serve::private::warn(&w))?;
    let dir = config.data_dir.join("tls");
    let private = dir.join("private");
    make_private_dir(&dir)?;
    make_private_dir(&private)?;
    let (ca_crt, ca_key) = (dir.join("ca.crt"), private.join("ca.key"));
    let (ca, made_ca) = Ca::open_or_make(&ca_crt, &ca_key)?;
    let mut names = args.hosts.clone();
    for w in registry_wildcards(&config) {
        if !names.contains(&w) {
            names.push(w);
        }
    }
    let (leaf, key) = ca.issue(&names, args.days)?;
    let (server_crt, server_key) = (dir.join("server.crt"), private.join("server.key"));
    // The key first: a running server that sees the new certificate before its key keeps
    // the old pair until both are there.
    write_private(&server_key, &key)?;
    write_public(&server_crt, &format!("{leaf}{}", ca.pem))?;

    let port = config.listen.port();
    let data = std::fs::canonicalize(&config.data_dir).unwrap_or(config.data_dir.clone());
    let tls = data.join("tls");
    let (ca_path, crt, keyp) = (
        tls.join("ca.crt"),
        tls.join("server.crt"),
        tls.join("private/server.key"),
    );
    let host = &args.hosts[0];
    let hp = if port == 443 {
        host.clone()
    } else {
        format!("{host}:{port}")
    };
    if made_ca {
        println!("made a private CA: {}", ca_path.display());
    } else {
        println!("kept the private CA: {}", ca_path.display());
    }
    println!(
        "issued a server certificate for {} (valid {} days): {}",
        names.join(", "),
        args.days,
        crt.display()
    );
    println!();
    println!(
        "Serve it (a running server with these files picks the new certificate up by itself):"
    );
    println!();
    println!(
        "    berth serve --listen 0.0.0.0:{port} --tls-cert {} --tls-key {}",
        crt.display(),
        keyp.display()
    );
    println!();
    println!(
        "Trust the CA on each client machine (copy {} there first):",
        ca_path.display()
    );
    println!();
    println!("  docker:");
    println!("    sudo mkdir -p /etc/docker/certs.d/{hp}");
    println!("    sudo cp ca.crt /etc/docker/certs.d/{hp}/ca.crt");
    println!("  podman, skopeo, buildah (system-wide, or per command with --cert-dir):");
    println!("    sudo mkdir -p /etc/containers/certs.d/{hp}");
    println!("    sudo cp ca.crt /etc/containers/certs.d/{hp}/ca.crt");
    println!(
        "    skopeo inspect --cert-dir {} docker://{hp}/REPOSITORY:TAG",
        tls.display()
    );
    println!("  the aws CLI and boto3:");
    println!("    export AWS_CA_BUNDLE=$PWD/ca.crt   # or: aws --ca-bundle ca.crt ...");
    println!("    aws --endpoint-url https://{hp} ecr describe-repositories");
    println!(
        "  other accounts' registries (<account>.dkr.{}) are named by the certificate too;",
        config.registry_domain
    );
    println!("  docker and podman look up the CA by the host they pull from: copy ca.crt to");
    println!("  certs.d/<that host>:{port} as well.");
    Ok(ExitCode::SUCCESS)
}

/// The registry hosts of every account, as wildcards: `*.dkr.DOMAIN` in the default
/// Region, and the form [`crate::serve::App::registry_host`] gives other Regions.
fn registry_wildcards(config: &Config) -> Vec<String> {
    let domain = &config.registry_domain;
    let mut out = vec![format!("*.dkr.{domain}")];
    for region in config.regions.iter().skip(1) {
        out.push(match domain.split_once('.') {
            Some((first, rest)) => format!("*.dkr.{first}.{region}.{rest}"),
            None => format!("*.dkr.{domain}.{region}"),
        });
    }
    out
}

/// The private CA: its certificate (PEM) and what signs with it.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// The CA's name, from its key: the same key always gives the same name, so an issuer
/// made again from the key signs certificates that chain to the certificate made first.
fn ca_name(key: &KeyPair) -> DistinguishedName {
    use sha2::Digest;
    let id = sha2::Sha256::digest(key.public_key_raw());
    let short: String = id[..6].iter().map(|b| format!("{b:02x}")).collect();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Berth");
    dn.push(DnType::CommonName, format!("Berth private CA {short}"));
    dn
}

fn ca_params(key: &KeyPair) -> Result<CertificateParams, String> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    p.distinguished_name = ca_name(key);
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + time::Duration::days(CA_DAYS);
    Ok(p)
}

impl Ca {
    /// The CA of `crt` and `key`, or a new one written there. `true`: made now.
    fn open_or_make(crt: &Path, key: &Path) -> Result<(Ca, bool), String> {
        match (crt.exists(), key.exists()) {
            (true, true) => {
                let key_pem = std::fs::read_to_string(key)
                    .map_err(|e| format!("reading {}: {e}", key.display()))?;
                let pem = std::fs::read_to_string(crt)
                    .map_err(|e| format!("reading {}: {e}", crt.display()))?;
                let pair =
                    KeyPair::from_pem(&key_pem).map_err(|e| format!("{}: {e}", key.display()))?;
                let params = ca_params(&pair)?;
                Ok((
                    Ca {
                        pem,
                        issuer: Issuer::new(params, pair),
                    },
                    false,
                ))
            }
            (false, false) => {
                let pair = KeyPair::generate().map_err(|e| e.to_string())?;
                let params = ca_params(&pair)?;
                let cert = params.self_signed(&pair).map_err(|e| e.to_string())?;
                write_private(key, &pair.serialize_pem())?;
                write_public(crt, &cert.pem())?;
                Ok((
                    Ca {
                        pem: cert.pem(),
                        issuer: Issuer::new(params, pair),
                    },
                    true,
                ))
            }
            _ => Err(format!(
                "{} and {} go together: one is missing (remove the other to make a new CA, \
                 which clients must then trust anew)",
                crt.display(),
                key.display()
            )),
        }
    }

    /// A server certificate for `names` (DNS names, wildcards or IP addresses) and its
    /// key, as PEM.
    fn issue(&self, names: &[String], days: u32) -> Result<(String, String), String> {
        let mut p = CertificateParams::new(names.to_vec())
            .map_err(|e| format!("a host is not a valid DNS name or IP address: {e}"))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, names[0].clone());
        p.distinguished_name = dn;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::hours(1);
        p.not_after = now + time::Duration::days(i64::from(days));
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = p.signed_by(&key, &self.issuer).map_err(|e| e.to_string())?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// A self-signed server certificate for `names` and its key, as PEM (tests).
#[cfg(test)]
pub fn issue_self_signed(names: &[&str]) -> Result<(String, String), String> {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = CertificateParams::new(names)
        .and_then(|p| p.self_signed(&key))
        .map_err(|e| e.to_string())?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn make_private_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    Ok(())
}

/// Write `text` to `path` through a temporary file renamed over it (a reader never sees
/// half a file), readable by this user only (`private`) or by everyone.
fn write_atomic(path: &Path, text: &str, private: bool) -> Result<(), String> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(if private { 0o600 } else { 0o644 });
    }
    let mut f = o
        .open(&tmp)
        .map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("writing {}: {e}", path.display()))
}

fn write_private(path: &Path, text: &str) -> Result<(), String> {
    write_atomic(path, text, true)
}

fn write_public(path: &Path, text: &str) -> Result<(), String> {
    write_atomic(path, text, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::pem::PemObject;

    #[test]
    fn a_ca_made_again_from_its_key_signs_certificates_that_chain_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let (crt, key) = (dir.path().join("ca.crt"), dir.path().join("ca.key"));
        let (first, made) = Ca::open_or_make(&crt, &key).unwrap();
        assert!(made);
        let (again, made) = Ca::open_or_make(&crt, &key).unwrap();
        assert!(!made);
        assert_eq!(first.pem, again.pem);
        let (leaf, leaf_key) = again
            .issue(&["registry.example".into(), "10.0.0.5".into()], 30)
            .unwrap();
        // rustls verifies the chain against the CA made the first time.
        let mut roots = rustls::RootCertStore::empty();
        let ca = rustls::pki_types::CertificateDer::from_pem_slice(first.pem.as_bytes()).unwrap();
        roots.add(ca).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let end = rustls::pki_types::CertificateDer::from_pem_slice(leaf.as_bytes()).unwrap();
        let now = rustls::pki_types::UnixTime::now();
        for name in ["registry.example", "10.0.0.5"] {
            let server = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
            verifier
                .verify_server_cert(&end, &[], &server, &[], now)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let other = rustls::pki_types::ServerName::try_from("other.example").unwrap();
        assert!(verifier
            .verify_server_cert(&end, &[], &other, &[], now)
            .is_err());
        // The key is the certificate's.
        let (c, k) = (dir.path().join("s.crt"), dir.path().join("s.key"));
        std::fs::write(&c, &leaf).unwrap();
        std::fs::write(&k, &leaf_key).unwrap();
        crate::serve::tls::load_pair(&c, &k).unwrap();
        // One file without the other is refused.
        std::fs::remove_file(&key).unwrap();
        assert!(Ca::open_or_make(&crt, &key).is_err());
    }

    #[test]
    fn registry_hosts_are_named_by_wildcards() {
        let mut c = Config::default();
        assert_eq!(registry_wildcards(&c), vec!["*.dkr.ecr.localhost"]);
        c.regions = vec!["us-east-1".into(), "us-west-2".into()];
        c.registry_domain = "ecr.example.net".into();
        assert_eq!(
            registry_wildcards(&c),
            vec!["*.dkr.ecr.example.net", "*.dkr.ecr.us-west-2.example.net"]
        );
    }
}
