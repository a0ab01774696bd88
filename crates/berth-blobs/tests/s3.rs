//! The S3 backend against a real S3 server (scripts/with-s3 starts s3s-fs and exports
//! `BERTH_TEST_S3_*`). Without those variables these tests fail, saying what to set,
//! unless `BERTH_TEST_S3=skip` opts out of them knowingly. Each test works under its own
//! random prefix of the shared bucket.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_blobs::{BlobError, BlobStore, Digest, MemoryUploadStates, S3Config, UploadStates};
use bytes::Bytes;
use futures::stream::TryStreamExt;
use object_store::aws::AmazonS3;
use object_store::path::Path as ObjectPath;
use object_store::signer::{SignedUrlOptions, Signer};
use object_store::{ObjectStore, ObjectStoreExt};

/// The backend's part size (every part but the last).
const PART: usize = 8 << 20;

mod common;
use common::{body, config, pattern, raw_client, read_all};

/// Two blob stores (two "nodes") on one bucket prefix and one session state store, and
/// a plain S3 client to look at the bucket.
struct Nodes {
    a: BlobStore,
    b: BlobStore,
    states: Arc<MemoryUploadStates>,
    config: S3Config,
    raw: AmazonS3,
}

fn nodes() -> Option<Nodes> {
    let config = config()?;
    let states = Arc::new(MemoryUploadStates::new());
    let a = BlobStore::s3(&config, states.clone()).unwrap();
    let b = BlobStore::s3(&config, states.clone()).unwrap();
    let raw = raw_client(&config);
    Some(Nodes {
        a,
        b,
        states,
        config,
        raw,
    })
}

impl Nodes {
    async fn start(&self) -> String {
        let id = self.a.start_upload().await.unwrap();
        self.states.create(&id);
        id
    }

    /// Keys under `<prefix>/<rest>`, relative to the prefix.
    async fn keys(&self, rest: &str) -> Vec<String> {
        let dir = ObjectPath::from(format!("{}/{rest}", self.config.prefix));
        let mut keys: Vec<String> = self
            .raw
            .list(Some(&dir))
            .map_ok(|m| m.location.as_ref()[self.config.prefix.len() + 1..].to_string())
            .try_collect()
            .await
            .unwrap();
        keys.sort();
        keys
    }

    /// The session's multipart upload id, from its saved state.
    async fn multipart_id(&self, id: &str) -> Option<String> {
        let saved = self.states.load(id).await.unwrap()?.state?;
        let v: serde_json::Value = serde_json::from_slice(&saved).unwrap();
        v["upload"].as_str().map(str::to_owned)
    }

    /// The parts S3 holds for a multipart upload (ListParts, through a presigned URL);
    /// `None` if S3 answers that there is no such upload.
    async fn listed_parts(&self, id: &str, upload: &str) -> Option<usize> {
        let key = ObjectPath::from(format!("{}/_uploads/{id}/blob", self.config.prefix));
        let opts = SignedUrlOptions::default().with_query([("uploadId", upload)]);
        let url = self
            .raw
            .signed_url_opts(http::Method::GET, &key, Duration::from_secs(60), &opts)
            .await
            .unwrap();
        let resp = reqwest::get(url).await.unwrap();
        let status = resp.status();
        let body = resp.text().await.unwrap();
        if status == 404 || body.contains("NoSuchUpload") {
            return None;
        }
        assert!(status.is_success(), "ListParts: {status} {body}");
        Some(body.matches("<Part>").count())
    }
}

/// Uploads `data` in chunks of `chunk` bytes, alternating between the two nodes, and
/// finishes on the node that did not send the last chunk; checks the blob on both.
async fn alternate(n: &Nodes, data: &[u8], chunk: usize) {
    let d = Digest::of(data);
    let id = n.start().await;
    let mut offset = 0u64;
    for (i, piece) in data.chunks(chunk.max(1)).enumerate() {
        let node = if i % 2 == 0 { &n.a } else { &n.b };
        let size = node.append(&id, offset, body(piece)).await.unwrap();
        offset += piece.len() as u64;
        assert_eq!(size, offset);
        let other = if i % 2 == 0 { &n.b } else { &n.a };
        assert_eq!(other.upload_size(&id).await.unwrap(), Some(offset));
    }
    let last = data.chunks(chunk.max(1)).count();
    let finisher = if last % 2 == 1 { &n.b } else { &n.a };
    assert_eq!(finisher.finish(&id, &d).await.unwrap(), data.len() as u64);
    for node in [&n.a, &n.b] {
        assert_eq!(node.stat(&d).await.unwrap(), Some(data.len() as u64));
        let got = read_all(node.get(&d, None).await.unwrap().unwrap()).await;
        assert!(
            got == data,
            "blob of {} bytes read back differently",
            data.len()
        );
    }
    assert!(
        n.keys(&format!("_uploads/{id}")).await.is_empty(),
        "staging objects left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_continue_across_nodes_at_every_chunk_size() {
    let Some(n) = nodes() else { return };
    let data = pattern(20 << 20, 3);
    for chunk in [3 << 20, PART, PART + (3 << 20), 20 << 20] {
        // Each run its own blob (a different first byte), so none is deduplicated.
        let mut data = data.clone();
        data[0] = (chunk >> 20) as u8;
        alternate(&n, &data, chunk).await;
    }
    // Exactly one part, then exactly one part and one byte.
    alternate(&n, &pattern(PART, 9), PART / 2).await;
    alternate(&n, &pattern(PART + 1, 9), PART).await;
    alternate(&n, b"x", 1).await;
    // An empty blob: a session with no bytes, and one with an empty append.
    let empty = Digest::of(b"");
    let id = n.start().await;
    assert_eq!(n.b.finish(&id, &empty).await.unwrap(), 0);
    let id = n.start().await;
    assert_eq!(n.a.append(&id, 0, body(b"")).await.unwrap(), 0);
    assert_eq!(n.b.finish(&id, &empty).await.unwrap(), 0);
    assert_eq!(n.a.stat(&empty).await.unwrap(), Some(0));
    // Blobs live at the shared layout, once each.
    let blobs = n.keys("blobs/sha256").await;
    assert_eq!(blobs.len(), 8, "{blobs:?}");
    let hex = empty.hex();
    assert!(blobs.contains(&format!("blobs/sha256/{}/{hex}", &hex[..2])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_offset_and_digest_mismatch() {
    let Some(n) = nodes() else { return };
    let data = pattern(PART + 1000, 5);
    let id = n.start().await;
    n.a.append(&id, 0, body(&data[..PART + 10])).await.unwrap();
    assert_eq!(
        n.b.append(&id, 5, body(b"zz")).await,
        Err(BlobError::OffsetMismatch {
            expected: PART as u64 + 10
        })
    );
    n.b.append(&id, PART as u64 + 10, body(&data[PART + 10..]))
        .await
        .unwrap();
    let wrong = Digest::of(b"something else");
    let upload = n.multipart_id(&id).await.expect("a multipart upload");
    assert_eq!(n.listed_parts(&id, &upload).await, Some(1));
    match n.a.finish(&id, &wrong).await {
        Err(BlobError::DigestMismatch { expected, computed }) => {
            assert_eq!(expected, wrong);
            assert_eq!(computed, Digest::of(&data));
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert_eq!(n.a.stat(&wrong).await.unwrap(), None);
    assert_eq!(n.a.stat(&Digest::of(&data)).await.unwrap(), None);
    assert!(n.keys("_uploads").await.is_empty());
    assert_eq!(n.listed_parts(&id, &upload).await.unwrap_or(0), 0);
    // Unknown sessions.
    let unknown = uuid::Uuid::new_v4().to_string();
    assert_eq!(n.a.upload_size(&unknown).await.unwrap(), None);
    assert_eq!(
        n.a.append(&unknown, 0, body(b"a")).await,
        Err(BlobError::UploadUnknown)
    );
    assert_eq!(
        n.a.finish(&unknown, &wrong).await,
        Err(BlobError::UploadUnknown)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_one_wins_and_the_blob_is_the_winners() {
    let Some(n) = nodes() else { return };
    // Large appends (parts and a tail), then small ones (tails only), each with
    // different bytes per node.
    for (len, round) in [(PART + (2 << 20), 0u8), (3000, 1), (PART * 2, 2)] {
        let id = n.start().await;
        let da = pattern(len, 10 + round);
        let db = pattern(len, 20 + round);
        let (ra, rb) = tokio::join!(n.a.append(&id, 0, body(&da)), n.b.append(&id, 0, body(&db)));
        let winner = match (ra, rb) {
            (Ok(s), Err(BlobError::OffsetMismatch { .. })) => {
                assert_eq!(s, len as u64);
                &da
            }
            (Err(BlobError::OffsetMismatch { .. }), Ok(s)) => {
                assert_eq!(s, len as u64);
                &db
            }
            other => panic!("expected exactly one winner, got {other:?}"),
        };
        assert_eq!(n.a.upload_size(&id).await.unwrap(), Some(len as u64));
        // Continue after the race with more than a part (no claim left over blocks it),
        // then finish: the blob is the winner's bytes and what followed.
        let more = pattern(PART + 1, 30 + round);
        let mut whole = winner.clone();
        whole.extend_from_slice(&more);
        n.b.append(&id, len as u64, body(&more)).await.unwrap();
        let d = Digest::of(&whole);
        assert_eq!(n.a.finish(&id, &d).await.unwrap(), whole.len() as u64);
        let got = read_all(n.b.get(&d, None).await.unwrap().unwrap()).await;
        assert!(
            got == whole,
            "round {round}: the blob is not the winner's bytes"
        );
        assert!(n.keys(&format!("_uploads/{id}")).await.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_sessions_are_removed_from_the_bucket() {
    let Some(n) = nodes() else { return };
    let id = n.start().await;
    n.a.append(&id, 0, body(&pattern(PART + 5000, 1)))
        .await
        .unwrap();
    let upload = n.multipart_id(&id).await.expect("a multipart upload");
    assert_eq!(n.listed_parts(&id, &upload).await, Some(1));
    let staged = n.keys(&format!("_uploads/{id}")).await;
    assert_eq!(staged.len(), 1, "one tail: {staged:?}");
    assert!(staged[0].starts_with(&format!("_uploads/{id}/tail-{PART}-")));
    // A staging object no session names (a request that died before saving).
    let orphan = ObjectPath::from(format!(
        "{}/_uploads/{}/tail-0-dead",
        n.config.prefix,
        uuid::Uuid::new_v4()
    ));
    n.raw
        .put(&orphan, Bytes::from_static(b"x").into())
        .await
        .unwrap();

    // Nothing is old enough yet.
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    assert_eq!(n.b.expire_uploads(hour_ago).await.unwrap(), 0);
    assert_eq!(n.keys("_uploads").await.len(), 2);

    // What the expire-uploads job does: cancel the idle sessions it knows, then sweep.
    n.b.cancel(&id).await.unwrap();
    n.states.remove(&id);
    assert_eq!(n.listed_parts(&id, &upload).await.unwrap_or(0), 0);
    let later = SystemTime::now() + Duration::from_secs(5);
    assert_eq!(n.b.expire_uploads(later).await.unwrap(), 1);
    assert!(n.keys("_uploads").await.is_empty());
    assert_eq!(n.a.upload_size(&id).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_presigned_urls_and_small_blobs() {
    let Some(n) = nodes() else { return };
    let data = pattern(PART + 12345, 8);
    let d = Digest::of(&data);
    assert_eq!(
        n.a.put_stream(&d, body(&data)).await.unwrap(),
        data.len() as u64
    );
    assert!(n.keys("_uploads").await.is_empty());
    // A monolithic upload with the wrong digest leaves nothing.
    let wrong = Digest::of(b"nope");
    assert!(matches!(
        n.a.put_stream(&wrong, body(&data[..100])).await,
        Err(BlobError::DigestMismatch { .. })
    ));
    assert_eq!(n.a.stat(&wrong).await.unwrap(), None);

    for (range, want) in [
        ((0, Some(0)), &data[..1]),
        ((10, Some(1_000_009)), &data[10..1_000_010]),
        ((PART as u64 - 3, None), &data[PART - 3..]),
        ((5, Some(u64::MAX)), &data[5..]),
    ] {
        let r = n.b.get(&d, Some(range)).await.unwrap().unwrap();
        assert_eq!(r.size, data.len() as u64);
        assert_eq!(r.len(), want.len() as u64);
        assert!(read_all(r).await == want, "range {range:?}");
    }
    assert!(matches!(
        n.b.get(&d, Some((data.len() as u64, None))).await,
        Err(BlobError::RangeNotSatisfiable { .. })
    ));

    let url =
        n.a.presigned_get(&d, Duration::from_secs(60))
            .await
            .unwrap()
            .expect("the S3 backend presigns");
    let fetched = reqwest::get(&url).await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert!(fetched.bytes().await.unwrap() == data);
    // Tampering with the URL is refused.
    let tampered = url.replace(&d.hex()[..8], "00000000");
    assert_ne!(reqwest::get(&tampered).await.unwrap().status(), 200);

    let small = n.b.put_bytes(Bytes::from_static(b"{}")).await.unwrap();
    assert_eq!(small, Digest::of(b"{}"));
    assert_eq!(n.a.stat(&small).await.unwrap(), Some(2));
    n.a.delete(&small).await.unwrap();
    assert_eq!(n.a.delete(&small).await, Err(BlobError::NotFound));
    n.a.check().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_an_unreachable_store() {
    let Some(mut config) = config() else { return };
    config.bucket = "no-such-bucket-here".into();
    let store = BlobStore::s3(&config, Arc::new(MemoryUploadStates::new())).unwrap();
    assert!(matches!(store.check().await, Err(BlobError::Io(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_claim_of_another_writer_holds_part_uploads_back() {
    let Some(n) = nodes() else { return };
    let id = n.start().await;
    n.a.append(&id, 0, body(b"head")).await.unwrap();
    // Another writer (on some node) is uploading a part: its claim is in the state.
    let set_claim = |until: i64| {
        let states = n.states.clone();
        let id = id.clone();
        async move {
            let saved = states.load(&id).await.unwrap().unwrap();
            let mut v: serde_json::Value =
                serde_json::from_slice(saved.state.as_ref().unwrap()).unwrap();
            v["claim"] = serde_json::json!({"writer": "elsewhere", "until": until});
            let bytes = serde_json::to_vec(&v).unwrap();
            assert!(states.save(&id, saved.version, &bytes).await.unwrap());
        }
    };
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    set_claim(now_ms + 60_000).await;
    // Bytes that would fill a part must wait: the same answer as a lost race.
    let big = pattern(PART, 4);
    assert_eq!(
        n.b.append(&id, 4, body(&big)).await,
        Err(BlobError::OffsetMismatch { expected: 4 })
    );
    // Bytes that only make a new tail go on, and leave the claim in place.
    assert_eq!(n.b.append(&id, 4, body(b"more")).await.unwrap(), 8);
    assert!(matches!(
        n.a.append(&id, 8, body(&big)).await,
        Err(BlobError::OffsetMismatch { expected: 8 })
    ));
    // Once the claim has run out, parts go on.
    set_claim(now_ms - 1).await;
    assert_eq!(
        n.a.append(&id, 8, body(&big)).await.unwrap(),
        8 + PART as u64
    );
    let mut whole = b"headmore".to_vec();
    whole.extend_from_slice(&big);
    let d = Digest::of(&whole);
    assert_eq!(n.b.finish(&id, &d).await.unwrap(), whole.len() as u64);
    assert!(read_all(n.a.get(&d, None).await.unwrap().unwrap()).await == whole);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listing_names_only_objects_where_blobs_are() {
    let Some(n) = nodes() else { return };
    let kept = n.a.put_bytes(Bytes::from_static(b"a blob")).await.unwrap();
    // Named by a digest but not where this store keeps that digest's blob: removing the
    // digest's blob would not remove them, so the collector must not count them.
    let stray = Digest::of(b"a stray object");
    let hex = stray.hex().as_str().to_string();
    for key in [
        format!("blobs/sha256/{hex}"),
        format!("blobs/sha256/00/{hex}"),
    ] {
        let path = ObjectPath::from(format!("{}/{key}", n.config.prefix));
        n.raw
            .put(&path, Bytes::from_static(b"a stray object").into())
            .await
            .unwrap();
    }
    let listed: Vec<Digest> =
        n.b.list_blobs()
            .map_ok(|b| b.digest)
            .try_collect()
            .await
            .unwrap();
    assert_eq!(listed, vec![kept]);
}
