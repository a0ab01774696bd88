//! Helpers shared by the blob store's integration tests: the S3 test server's settings
//! (scripts/with-s3), a plain S3 client, test data and request-like bodies.
#![allow(dead_code)] // each test crate uses its own share of these

use berth_blobs::{BlobReader, S3Config};
use bytes::Bytes;
use futures::stream::{self, StreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::ClientOptions;

pub type Chunk = Result<Bytes, std::io::Error>;

/// The test server's settings under a fresh prefix; `None` only with `BERTH_TEST_S3=skip`.
pub fn config() -> Option<S3Config> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let Some(endpoint) = var("BERTH_TEST_S3_ENDPOINT") else {
        if var("BERTH_TEST_S3").as_deref() == Some("skip") {
            return None;
        }
        panic!(
            "the S3 tests need an S3 server: run them under scripts/with-s3 (which sets \
             BERTH_TEST_S3_ENDPOINT, _BUCKET, _ACCESS_KEY_ID and _SECRET_ACCESS_KEY), or set \
             BERTH_TEST_S3=skip to skip them knowingly"
        );
    };
    let need = |name: &str| var(name).unwrap_or_else(|| panic!("{name} is not set"));
    Some(S3Config {
        bucket: need("BERTH_TEST_S3_BUCKET"),
        prefix: format!("test-{}", uuid::Uuid::new_v4().simple()),
        endpoint: Some(endpoint),
        region: "us-east-1".into(),
        allow_http: true,
        access_key_id: need("BERTH_TEST_S3_ACCESS_KEY_ID"),
        secret_access_key: need("BERTH_TEST_S3_SECRET_ACCESS_KEY"),
    })
}

/// A plain S3 client of the test server, to look at (and change) the bucket behind the
/// stores' backs.
pub fn raw_client(config: &S3Config) -> AmazonS3 {
    AmazonS3Builder::new()
        .with_bucket_name(&config.bucket)
        .with_region(&config.region)
        .with_endpoint(config.endpoint.as_deref().unwrap())
        .with_access_key_id(&config.access_key_id)
        .with_secret_access_key(&config.secret_access_key)
        .with_client_options(ClientOptions::new().with_allow_http(true))
        .build()
        .unwrap()
}

pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i >> 13) as u8))
        .collect()
}

/// `data` in uneven network-sized chunks, as a request body arrives.
pub fn body(data: &[u8]) -> impl futures::Stream<Item = Chunk> + Unpin + Send + 'static {
    let mut v: Vec<Chunk> = Vec::new();
    let mut rest = Bytes::copy_from_slice(data);
    let mut n = 1000;
    while !rest.is_empty() {
        let take = n.min(rest.len());
        v.push(Ok(rest.split_to(take)));
        n = if n > 300_000 { 777 } else { n * 3 };
    }
    stream::iter(v)
}

pub async fn read_all(r: BlobReader) -> Vec<u8> {
    let mut out = Vec::new();
    let mut s = r.stream;
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    out
}
