//! Berth's own HTTP requests to other servers (peers of the replication link, upstream
//! registries of the pull-through cache): one way to start a client, with rustls on ring
//! as the rest of Berth and a bounded connect time.

use std::time::Duration;

/// A client builder with Berth's TLS provider and a 10-second connect timeout; reads may
/// pause for `read_timeout`.
pub fn builder(read_timeout: Duration) -> reqwest::ClientBuilder {
    // reqwest's TLS uses the process's rustls provider: ring, as the rest of Berth.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(read_timeout)
}
