//! BlobStore behaviour on real files in temp dirs (local backend) and on the
//! in-memory backend.

use std::path::Path;
use std::time::{Duration, SystemTime};

use berth_blobs::{BlobError, BlobReader, BlobStore, Digest};
use bytes::Bytes;
use futures::stream::{self, StreamExt};
use tempfile::TempDir;

type Chunk = Result<Bytes, std::io::Error>;

fn chunks(parts: &[&[u8]]) -> impl futures::Stream<Item = Chunk> + Unpin + Send + 'static {
    let v: Vec<Chunk> = parts
        .iter()
        .map(|p| Ok(Bytes::copy_from_slice(p)))
        .collect();
    stream::iter(v)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn read_all(r: BlobReader) -> Vec<u8> {
    let mut out = Vec::new();
    let mut s = r.stream;
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    out
}

async fn local() -> (TempDir, BlobStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::local(dir.path()).await.unwrap();
    (dir, store)
}

async fn memory() -> (TempDir, BlobStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::in_memory(dir.path()).await.unwrap();
    (dir, store)
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

async fn upload_appends_then_read(store: &BlobStore) {
    let data = pattern(300_000, 7);
    let d = Digest::of(&data);
    let id = store.start_upload().await.unwrap();
    assert_eq!(store.upload_size(&id).await.unwrap(), Some(0));
    let mut offset = 0u64;
    for part in data.chunks(70_001) {
        // Each append is itself several chunks.
        let (a, b) = part.split_at(part.len() / 3);
        offset = store.append(&id, offset, chunks(&[a, b])).await.unwrap();
        assert_eq!(store.upload_size(&id).await.unwrap(), Some(offset));
    }
    assert_eq!(offset, data.len() as u64);
    assert_eq!(
        store.stat(&d).await.unwrap(),
        None,
        "not visible before finish"
    );
    assert_eq!(store.finish(&id, &d).await.unwrap(), data.len() as u64);
    assert_eq!(store.upload_size(&id).await.unwrap(), None);
    assert_eq!(store.stat(&d).await.unwrap(), Some(data.len() as u64));

    let whole = store.get(&d, None).await.unwrap().unwrap();
    assert_eq!((whole.size, whole.start, whole.end), (300_000, 0, 299_999));
    assert_eq!(whole.len(), 300_000);
    assert_eq!(read_all(whole).await, data);

    let r = store.get(&d, Some((10, Some(19)))).await.unwrap().unwrap();
    assert_eq!((r.start, r.end, r.len()), (10, 19, 10));
    assert_eq!(read_all(r).await, &data[10..20]);

    let r = store.get(&d, Some((299_000, None))).await.unwrap().unwrap();
    assert_eq!((r.start, r.end), (299_000, 299_999));
    assert_eq!(read_all(r).await, &data[299_000..]);

    // End beyond the blob is clamped.
    let r = store
        .get(&d, Some((5, Some(10_000_000))))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.end, 299_999);
    assert_eq!(read_all(r).await, &data[5..]);

    let r = store
        .get(&d, Some((299_999, Some(299_999))))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read_all(r).await, &data[299_999..]);

    for bad in [(300_000, None), (400_000, Some(500_000)), (20, Some(19))] {
        assert_eq!(
            store.get(&d, Some(bad)).await.unwrap_err(),
            BlobError::RangeNotSatisfiable { size: 300_000 }
        );
    }
    assert!(store
        .get(&Digest::of(b"absent"), None)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn upload_in_appends_then_stat_get_range_local() {
    let (dir, store) = local().await;
    upload_appends_then_read(&store).await;
    assert!(files_in(&dir.path().join("uploads")).is_empty());
    let d = Digest::of(&pattern(300_000, 7));
    let on_disk = dir
        .path()
        .join("blobs/sha256")
        .join(&d.hex()[..2])
        .join(d.hex());
    assert_eq!(std::fs::metadata(on_disk).unwrap().len(), 300_000);
}

#[tokio::test]
async fn upload_in_appends_then_stat_get_range_memory() {
    let (dir, store) = memory().await;
    upload_appends_then_read(&store).await;
    assert!(files_in(dir.path()).is_empty());
}

#[tokio::test]
async fn wrong_digest_is_rejected_and_not_visible() {
    for (_dir, store) in [local().await, memory().await] {
        let id = store.start_upload().await.unwrap();
        store.append(&id, 0, chunks(&[b"hello"])).await.unwrap();
        let claimed = Digest::of(b"something else");
        let err = store.finish(&id, &claimed).await.unwrap_err();
        assert_eq!(
            err,
            BlobError::DigestMismatch {
                expected: claimed,
                computed: Digest::of(b"hello")
            }
        );
        assert!(err.to_string().contains("digest mismatch"));
        assert_eq!(store.stat(&claimed).await.unwrap(), None);
        assert_eq!(store.stat(&Digest::of(b"hello")).await.unwrap(), None);
        // A failed finish ends the session.
        assert_eq!(store.upload_size(&id).await.unwrap(), None);
        assert_eq!(
            store.finish(&id, &Digest::of(b"hello")).await.unwrap_err(),
            BlobError::UploadUnknown
        );
    }
}

#[tokio::test]
async fn offset_mismatch_reports_current_size() {
    let (_dir, store) = local().await;
    let id = store.start_upload().await.unwrap();
    assert_eq!(
        store.append(&id, 5, chunks(&[b"x"])).await.unwrap_err(),
        BlobError::OffsetMismatch { expected: 0 }
    );
    assert_eq!(
        store
            .append(&id, 0, chunks(&[b"0123456789"]))
            .await
            .unwrap(),
        10
    );
    assert_eq!(
        store.append(&id, 3, chunks(&[b"x"])).await.unwrap_err(),
        BlobError::OffsetMismatch { expected: 10 }
    );
    assert_eq!(
        store.append(&id, 11, chunks(&[b"x"])).await.unwrap_err(),
        BlobError::OffsetMismatch { expected: 10 }
    );
    // Nothing was written by the rejected appends.
    assert_eq!(store.upload_size(&id).await.unwrap(), Some(10));
    assert_eq!(store.append(&id, 10, chunks(&[])).await.unwrap(), 10);
    assert_eq!(
        store.finish(&id, &Digest::of(b"0123456789")).await.unwrap(),
        10
    );
}

#[tokio::test]
async fn cancel_removes_session() {
    let (dir, store) = local().await;
    let id = store.start_upload().await.unwrap();
    store.append(&id, 0, chunks(&[b"abc"])).await.unwrap();
    store.cancel(&id).await.unwrap();
    assert_eq!(store.upload_size(&id).await.unwrap(), None);
    assert_eq!(
        store.append(&id, 3, chunks(&[b"d"])).await.unwrap_err(),
        BlobError::UploadUnknown
    );
    assert_eq!(
        store.cancel(&id).await.unwrap_err(),
        BlobError::UploadUnknown
    );
    assert!(files_in(&dir.path().join("uploads")).is_empty());
}

#[tokio::test]
async fn unknown_and_malformed_session_ids() {
    let (_dir, store) = local().await;
    let id = store.start_upload().await.unwrap();
    assert_eq!(uuid_version(&id), Some(4));
    let other = "6f1c2d0e-3b4a-4c5d-8e9f-0a1b2c3d4e5f";
    for bad in [
        other,
        "",
        "../uploads",
        "..",
        &id.to_uppercase(),
        &id.replace('-', ""),
        &format!("{{{id}}}"),
        &format!("put-{id}"),
    ] {
        assert_eq!(store.upload_size(bad).await.unwrap(), None, "{bad}");
        assert_eq!(
            store.append(bad, 0, chunks(&[b"x"])).await.unwrap_err(),
            BlobError::UploadUnknown,
            "{bad}"
        );
        assert_eq!(
            store.finish(bad, &Digest::of(b"")).await.unwrap_err(),
            BlobError::UploadUnknown
        );
        assert_eq!(
            store.cancel(bad).await.unwrap_err(),
            BlobError::UploadUnknown
        );
    }
    assert_eq!(store.upload_size(&id).await.unwrap(), Some(0));
}

fn uuid_version(id: &str) -> Option<u32> {
    let b = id.as_bytes();
    (b.len() == 36).then(|| char::from(b[14]).to_digit(16))?
}

#[tokio::test]
async fn session_survives_restart_and_rehashes() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(3_000_000, 42);
    let d = Digest::of(&data);
    let id = {
        let store = BlobStore::local(dir.path()).await.unwrap();
        let id = store.start_upload().await.unwrap();
        store
            .append(&id, 0, chunks(&[&data[..1_234_567]]))
            .await
            .unwrap();
        id
    };
    // New store on the same root: no in-memory hash state for the session.
    let store = BlobStore::local(dir.path()).await.unwrap();
    assert_eq!(store.upload_size(&id).await.unwrap(), Some(1_234_567));
    assert_eq!(
        store.append(&id, 0, chunks(&[b"x"])).await.unwrap_err(),
        BlobError::OffsetMismatch {
            expected: 1_234_567
        }
    );
    store
        .append(&id, 1_234_567, chunks(&[&data[1_234_567..]]))
        .await
        .unwrap();
    assert_eq!(store.finish(&id, &d).await.unwrap(), data.len() as u64);
    assert_eq!(
        read_all(store.get(&d, None).await.unwrap().unwrap()).await,
        data
    );

    // Restart between the last append and finish: finish itself rehashes.
    let id = store.start_upload().await.unwrap();
    store
        .append(&id, 0, chunks(&[b"after restart"]))
        .await
        .unwrap();
    drop(store);
    let store = BlobStore::local(dir.path()).await.unwrap();
    let wrong = Digest::of(b"after restart!");
    assert!(matches!(
        store.finish(&id, &wrong).await,
        Err(BlobError::DigestMismatch { .. })
    ));
    let id = store.start_upload().await.unwrap();
    store
        .append(&id, 0, chunks(&[b"after restart"]))
        .await
        .unwrap();
    drop(store);
    let store = BlobStore::local(dir.path()).await.unwrap();
    assert_eq!(
        store
            .finish(&id, &Digest::of(b"after restart"))
            .await
            .unwrap(),
        13
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_finishes_of_same_digest() {
    for (dir, store) in [local().await, memory().await] {
        for round in 0..5u8 {
            let data = pattern(200_000, round);
            let d = Digest::of(&data);
            let mut ids = Vec::new();
            for _ in 0..3 {
                let id = store.start_upload().await.unwrap();
                store.append(&id, 0, chunks(&[&data])).await.unwrap();
                ids.push(id);
            }
            let tasks: Vec<_> = ids
                .into_iter()
                .map(|id| {
                    let store = store.clone();
                    tokio::spawn(async move { store.finish(&id, &d).await })
                })
                .collect();
            for t in tasks {
                assert_eq!(t.await.unwrap().unwrap(), 200_000);
            }
            assert_eq!(
                read_all(store.get(&d, None).await.unwrap().unwrap()).await,
                data
            );
        }
        let staging = if dir.path().join("uploads").exists() {
            dir.path().join("uploads")
        } else {
            dir.path().to_path_buf()
        };
        assert!(files_in(&staging).is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_to_one_session_are_serialized() {
    let (_dir, store) = local().await;
    let id = store.start_upload().await.unwrap();
    let slow = |byte: u8| {
        stream::iter(0..20).then(move |_| async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            Ok::<_, std::io::Error>(Bytes::from(vec![byte; 1000]))
        })
    };
    let (s1, s2) = (store.clone(), store.clone());
    let (i1, i2) = (id.clone(), id.clone());
    let a = tokio::spawn(async move { s1.append(&i1, 0, Box::pin(slow(b'a'))).await });
    let b = tokio::spawn(async move { s2.append(&i2, 0, Box::pin(slow(b'b'))).await });
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    let (winner, loser) = match (&a, &b) {
        (Ok(_), Err(_)) => (b'a', b),
        (Err(_), Ok(_)) => (b'b', a),
        other => panic!("exactly one append must win: {other:?}"),
    };
    assert_eq!(
        loser.unwrap_err(),
        BlobError::OffsetMismatch { expected: 20_000 }
    );
    let expected = Digest::of(&[winner; 20_000]);
    assert_eq!(store.finish(&id, &expected).await.unwrap(), 20_000);
}

#[tokio::test]
async fn stream_error_keeps_received_bytes() {
    let (_dir, store) = local().await;
    let id = store.start_upload().await.unwrap();
    let body = stream::iter(vec![
        Ok(Bytes::from_static(b"hello ")),
        Err(std::io::Error::other("connection reset")),
        Ok(Bytes::from_static(b"never")),
    ]);
    let err = store.append(&id, 0, body).await.unwrap_err();
    assert!(
        matches!(&err, BlobError::Io(m) if m.contains("connection reset")),
        "{err}"
    );
    assert_eq!(store.upload_size(&id).await.unwrap(), Some(6));
    store.append(&id, 6, chunks(&[b"world"])).await.unwrap();
    assert_eq!(
        store
            .finish(&id, &Digest::of(b"hello world"))
            .await
            .unwrap(),
        11
    );
}

#[tokio::test]
async fn expire_removes_only_old_idle_uploads() {
    let (dir, store) = local().await;
    let a = store.start_upload().await.unwrap();
    let b = store.start_upload().await.unwrap();
    store.append(&b, 0, chunks(&[b"data"])).await.unwrap();
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    assert_eq!(store.expire_uploads(hour_ago).await.unwrap(), 0);
    assert_eq!(store.upload_size(&a).await.unwrap(), Some(0));

    tokio::time::sleep(Duration::from_millis(50)).await;
    let cutoff = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let c = store.start_upload().await.unwrap(); // touched after the cutoff
    assert_eq!(store.expire_uploads(cutoff).await.unwrap(), 2);
    assert_eq!(store.upload_size(&a).await.unwrap(), None);
    assert_eq!(store.upload_size(&b).await.unwrap(), None);
    assert_eq!(
        store.append(&b, 4, chunks(&[b"x"])).await.unwrap_err(),
        BlobError::UploadUnknown
    );
    assert_eq!(store.upload_size(&c).await.unwrap(), Some(0));
    assert_eq!(files_in(&dir.path().join("uploads")), vec![c.clone()]);

    // Survives a restart too: a new store expires sessions it never saw.
    drop(store);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let store = BlobStore::local(dir.path()).await.unwrap();
    assert_eq!(store.expire_uploads(SystemTime::now()).await.unwrap(), 1);
    assert!(files_in(&dir.path().join("uploads")).is_empty());
}

#[tokio::test]
async fn put_bytes_small_blobs() {
    for (_dir, store) in [local().await, memory().await] {
        let config = Bytes::from_static(br#"{"architecture":"amd64","os":"linux"}"#);
        let d = store.put_bytes(config.clone()).await.unwrap();
        assert_eq!(d, Digest::of(&config));
        assert_eq!(
            store.put_bytes(config.clone()).await.unwrap(),
            d,
            "idempotent"
        );
        assert_eq!(store.stat(&d).await.unwrap(), Some(config.len() as u64));
        assert_eq!(
            read_all(store.get(&d, None).await.unwrap().unwrap()).await,
            config
        );

        let big = Bytes::from(pattern(1_000_000, 3));
        let d = store.put_bytes(big.clone()).await.unwrap();
        assert_eq!(
            read_all(store.get(&d, None).await.unwrap().unwrap()).await,
            big
        );

        // The empty blob.
        let e = store.put_bytes(Bytes::new()).await.unwrap();
        assert_eq!(
            e.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let r = store.get(&e, None).await.unwrap().unwrap();
        assert_eq!((r.size, r.len()), (0, 0));
        assert!(r.is_empty());
        assert!(read_all(r).await.is_empty());
        assert_eq!(
            store.get(&e, Some((0, None))).await.unwrap_err(),
            BlobError::RangeNotSatisfiable { size: 0 }
        );
    }
}

#[tokio::test]
async fn finish_when_blob_exists_drops_staged_data() {
    let (dir, store) = local().await;
    let d = store.put_bytes(Bytes::from_static(b"layer")).await.unwrap();
    let id = store.start_upload().await.unwrap();
    store
        .append(&id, 0, chunks(&[b"lay", b"er"]))
        .await
        .unwrap();
    assert_eq!(store.finish(&id, &d).await.unwrap(), 5);
    assert!(files_in(&dir.path().join("uploads")).is_empty());
    assert_eq!(
        read_all(store.get(&d, None).await.unwrap().unwrap()).await,
        b"layer"
    );
}

#[tokio::test]
async fn delete_blob() {
    for (_dir, store) in [local().await, memory().await] {
        let d = store.put_bytes(Bytes::from_static(b"bye")).await.unwrap();
        store.delete(&d).await.unwrap();
        assert_eq!(store.stat(&d).await.unwrap(), None);
        assert!(store.get(&d, None).await.unwrap().is_none());
        assert_eq!(store.delete(&d).await.unwrap_err(), BlobError::NotFound);
    }
}

#[test]
fn invalid_digest_strings_rejected() {
    let hex = "a".repeat(64);
    assert!(format!("sha256:{hex}").parse::<Digest>().is_ok());
    for bad in [
        format!("sha256:{}", "A".repeat(64)),
        format!("sha256:{}", "a".repeat(63)),
        format!("sha256:{}", "a".repeat(65)),
        format!("sha512:{hex}"),
        format!("sha384:{hex}"),
        format!("blake3:{hex}"),
        format!("SHA256:{hex}"),
        format!("sha256+b64u:{hex}"),
        hex.clone(),
        "sha256:".to_owned(),
        "sha256".to_owned(),
        String::new(),
    ] {
        match bad.parse::<Digest>() {
            Err(BlobError::InvalidDigest(s)) => assert_eq!(s, bad),
            other => panic!("{bad:?} -> {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_64_mib_with_bounded_chunks() {
    const TOTAL: usize = 64 << 20;
    const CHUNK: usize = 64 << 10;
    let (_dir, store) = local().await;
    // The body is produced lazily, chunk by chunk, like a network stream.
    let body = || {
        stream::iter(0..TOTAL / CHUNK).map(|i| {
            let mut c = vec![0u8; CHUNK];
            for (j, b) in c.iter_mut().enumerate() {
                *b = (i.wrapping_mul(7) ^ j) as u8;
            }
            Ok::<_, std::io::Error>(Bytes::from(c))
        })
    };
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut b = body();
    while let Some(c) = b.next().await {
        ctx.update(&c.unwrap());
    }
    let expected: Digest = format!("sha256:{}", hex(ctx.finish().as_ref()))
        .parse()
        .unwrap();

    let id = store.start_upload().await.unwrap();
    // Two appends, to cross an append boundary mid-way.
    let half = body().take(TOTAL / CHUNK / 2);
    let size = store.append(&id, 0, half).await.unwrap();
    assert_eq!(size, (TOTAL / 2) as u64);
    let rest = body().skip(TOTAL / CHUNK / 2);
    assert_eq!(store.append(&id, size, rest).await.unwrap(), TOTAL as u64);
    assert_eq!(store.finish(&id, &expected).await.unwrap(), TOTAL as u64);

    // Read it back streamed, hashing as we go; chunks stay small.
    let r = store.get(&expected, None).await.unwrap().unwrap();
    let mut s = r.stream;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut n = 0usize;
    while let Some(c) = s.next().await {
        let c = c.unwrap();
        assert!(c.len() <= 1 << 20);
        n += c.len();
        ctx.update(&c);
    }
    assert_eq!(n, TOTAL);
    assert_eq!(hex(ctx.finish().as_ref()), expected.hex().as_str());
}

/// A blob file cut short while it is being read (by hand, or a failing disk) makes the
/// read fail: it does not end early as if the blob were shorter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_file_cut_while_read_fails_the_read() {
    let (dir, store) = local().await;
    let data = pattern(3 << 20, 9);
    let d = store.put_bytes(Bytes::from(data.clone())).await.unwrap();
    let path = dir
        .path()
        .join("blobs/sha256")
        .join(&d.hex()[..2])
        .join(d.hex().as_str());
    assert_eq!(std::fs::metadata(&path).unwrap().len(), data.len() as u64);

    let r = store.get(&d, None).await.unwrap().unwrap();
    let mut s = r.stream;
    let first = s.next().await.unwrap().unwrap();
    assert_eq!(&first[..], &data[..first.len()]);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let mut got = first.len();
    let e = loop {
        match s.next().await {
            Some(Ok(c)) => {
                assert_eq!(&c[..], &data[got..got + c.len()]);
                got += c.len();
            }
            Some(Err(e)) => break e,
            None => panic!("the read ended at {got} bytes of {}", data.len()),
        }
    };
    assert!(got < data.len(), "{got}");
    assert!(e.to_string().contains("ended"), "{e}");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn append_future_is_send_and_store_is_shareable() {
    fn assert_send<T: Send>(_: &T) {}
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<BlobStore>();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (_dir, store) = local().await;
        let fut = store.append("x", 0, chunks(&[b"x"]));
        assert_send(&fut);
        assert_eq!(fut.await.unwrap_err(), BlobError::UploadUnknown);
    });
}

#[test]
fn error_messages_are_clear() {
    let e = BlobError::OffsetMismatch { expected: 42 };
    assert!(e.to_string().contains("42"));
    let e: Box<dyn std::error::Error> = Box::new(BlobError::RangeNotSatisfiable { size: 7 });
    assert!(e.to_string().contains("7 bytes"));
    assert!(BlobError::InvalidDigest("md5:x".into())
        .to_string()
        .contains("md5:x"));
}

/// Every directory and file the local store makes is its user's only (0700, 0600),
/// whatever the umask lets through: blobs, their fan-out folders, upload staging.
#[cfg(unix)]
#[tokio::test]
async fn local_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let store = BlobStore::local(&root).await.unwrap();
    store
        .put_bytes(Bytes::from(pattern(1000, 1)))
        .await
        .unwrap();
    let data = pattern(5000, 2);
    let id = store.start_upload().await.unwrap();
    store.append(&id, 0, chunks(&[&data])).await.unwrap();
    store.finish(&id, &Digest::of(&data)).await.unwrap();
    let pending = store.start_upload().await.unwrap();
    store.append(&pending, 0, chunks(&[b"abc"])).await.unwrap();

    let mut seen = (0, 0);
    let mut stack = vec![root.join("blobs"), root.join("uploads")];
    while let Some(p) = stack.pop() {
        let meta = std::fs::metadata(&p).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_dir() {
            assert_eq!(mode, 0o700, "{}", p.display());
            seen.0 += 1;
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            assert_eq!(mode, 0o600, "{}", p.display());
            seen.1 += 1;
        }
    }
    // blobs, sha256, two fan-out folders, uploads; two blobs and the pending upload
    assert!(seen.0 >= 4 && seen.1 >= 3, "{seen:?}");
}

/// The readiness probe: fine on a working store, an error naming the directory when the
/// blob directory is replaced by a file, fine again once it is back; nothing written.
#[tokio::test]
async fn check_names_an_unusable_blob_directory() {
    let (dir, store) = local().await;
    store.check().await.unwrap();
    let (_mdir, mem) = memory().await;
    mem.check().await.unwrap();

    let blobs = dir.path().join("blobs");
    let away = dir.path().join("blobs.away");
    std::fs::rename(&blobs, &away).unwrap();
    std::fs::write(&blobs, b"not a directory").unwrap();
    let e = store.check().await.unwrap_err().to_string();
    assert!(e.contains("listing the blob directory"), "{e}");
    assert!(e.contains("blobs/sha256"), "{e}");
    std::fs::remove_file(&blobs).unwrap();
    std::fs::rename(&away, &blobs).unwrap();
    store.check().await.unwrap();
    assert_eq!(std::fs::read_dir(blobs.join("sha256")).unwrap().count(), 0);

    std::fs::remove_dir(dir.path().join("uploads")).unwrap();
    let e = store.check().await.unwrap_err().to_string();
    assert!(e.contains("listing the upload directory"), "{e}");
}

#[tokio::test]
async fn the_listing_names_only_files_where_blobs_are() {
    let (dir, store) = local().await;
    let kept = store
        .put_bytes(Bytes::from_static(b"a blob"))
        .await
        .unwrap();
    // Named by a digest but in another fan-out directory: not this store's blob.
    let stray = Digest::of(b"a stray file").hex().as_str().to_string();
    let elsewhere = if stray.starts_with("00") { "01" } else { "00" };
    let path = dir.path().join("blobs/sha256").join(elsewhere);
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(path.join(&stray), b"a stray file").unwrap();
    let listed: Vec<Digest> = store
        .list_blobs()
        .map(|b| b.unwrap().digest)
        .collect()
        .await;
    assert_eq!(listed, vec![kept]);
}

/// The bytes of `file` from `at`, read by position (as the spool's followers read).
fn read_at(file: &std::fs::File, at: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, at).unwrap();
    buf
}

#[tokio::test]
async fn a_spool_is_followed_while_written_and_becomes_the_blob() {
    let (dir, store) = local().await;
    let elsewhere = tempfile::tempdir().unwrap();
    let data = pattern(700_000, 3);
    let d = Digest::of(&data);
    let mut spool = store.spool(elsewhere.path()).unwrap();
    let file = spool.file();
    spool.write(&data[..300_000]).unwrap();
    // A reader follows what is there so far; nothing is a blob yet.
    assert_eq!(read_at(&file, 1000, 5000), data[1000..6000]);
    assert_eq!(store.stat(&d).await.unwrap(), None);
    spool.write(&data[300_000..]).unwrap();
    assert_eq!(spool.len(), 700_000);
    let told = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let t = told.clone();
    let verified = move |n| t.store(n, std::sync::atomic::Ordering::SeqCst);
    let (size, held) = spool
        .publish(&d, Some(verified), |n| async move { Ok::<_, ()>(n * 2) })
        .await
        .unwrap()
        .unwrap();
    assert_eq!((size, held), (700_000, 1_400_000));
    assert_eq!(told.load(std::sync::atomic::Ordering::SeqCst), 700_000);
    // On the local backend the spool file became the blob (moved, not copied), and the
    // reader's handle still reads it.
    assert!(files_in(&dir.path().join("uploads")).is_empty());
    assert!(files_in(elsewhere.path()).is_empty());
    let blob = dir
        .path()
        .join(format!("blobs/sha256/{}/{}", &d.hex()[..2], d.hex()));
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&blob).unwrap().ino(),
        file.metadata().unwrap().ino()
    );
    assert_eq!(
        read_all(store.get(&d, None).await.unwrap().unwrap()).await,
        data
    );
    assert_eq!(read_at(&file, 699_990, 10), data[699_990..]);
}

#[tokio::test]
async fn a_spool_of_the_wrong_bytes_or_dropped_or_gated_out_leaves_nothing() {
    let (dir, store) = local().await;
    let elsewhere = tempfile::tempdir().unwrap();
    let uploads = dir.path().join("uploads");
    // Wrong bytes: refused before `verified` is told, the file removed.
    let mut spool = store.spool(elsewhere.path()).unwrap();
    spool.write(b"not what was asked").unwrap();
    assert_eq!(files_in(&uploads).len(), 1);
    let asked = Digest::of(b"what was asked");
    let never = |_| panic!("verified told of the wrong bytes");
    match spool
        .publish(&asked, Some(never), |_| async { Ok::<_, ()>(()) })
        .await
    {
        Err(BlobError::DigestMismatch { expected, computed }) => {
            assert_eq!(expected, asked);
            assert_eq!(computed, Digest::of(b"not what was asked"));
        }
        other => panic!("{:?}", other.map(|r| r.map(|(n, _)| n))),
    }
    assert!(files_in(&uploads).is_empty());
    assert_eq!(store.stat(&asked).await.unwrap(), None);
    // Dropped half written: removed.
    let mut spool = store.spool(elsewhere.path()).unwrap();
    spool.write(b"half").unwrap();
    drop(spool);
    assert!(files_in(&uploads).is_empty());
    // The gate refuses: nothing published, nothing left.
    let mut spool = store.spool(elsewhere.path()).unwrap();
    spool.write(b"gated").unwrap();
    let r = spool
        .publish(&Digest::of(b"gated"), None::<fn(u64)>, |_| async {
            Err::<(), _>("no")
        })
        .await
        .unwrap();
    assert_eq!(r.unwrap_err(), "no");
    assert!(files_in(&uploads).is_empty());
    assert_eq!(store.stat(&Digest::of(b"gated")).await.unwrap(), None);
}

#[tokio::test]
async fn a_spool_on_a_remote_backend_lives_elsewhere_and_is_uploaded() {
    let (_dir, store) = memory().await;
    let elsewhere = tempfile::tempdir().unwrap();
    let data = pattern(3 << 20, 9);
    let d = Digest::of(&data);
    let mut spool = store.spool(elsewhere.path()).unwrap();
    spool.write(&data).unwrap();
    assert_eq!(files_in(elsewhere.path()).len(), 1);
    let (size, ()) = spool
        .publish(&d, None::<fn(u64)>, |_| async { Ok::<_, ()>(()) })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(size, 3 << 20);
    assert!(files_in(elsewhere.path()).is_empty());
    assert_eq!(
        read_all(store.get(&d, None).await.unwrap().unwrap()).await,
        data
    );
}

#[tokio::test]
async fn a_spool_left_by_a_crash_is_expired_with_the_uploads() {
    let (dir, store) = local().await;
    let elsewhere = tempfile::tempdir().unwrap();
    let mut spool = store.spool(elsewhere.path()).unwrap();
    spool.write(b"cut short").unwrap();
    std::mem::forget(spool); // as a crash would leave it
    assert_eq!(files_in(&dir.path().join("uploads")).len(), 1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(store.expire_uploads(SystemTime::now()).await.unwrap(), 1);
    assert!(files_in(&dir.path().join("uploads")).is_empty());
}
