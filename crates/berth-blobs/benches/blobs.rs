//! Upload throughput (append + finish of 256 MiB on the local backend) and raw
//! SHA-256 throughput of the implementation behind `Digest::of`.
//!
//! Before the criterion groups it also streams 1 GiB once and prints the process's
//! CPU seconds and peak resident memory for it (Linux `/proc/self`).

use std::hint::black_box;
use std::time::Duration;

use berth_blobs::{BlobStore, Digest};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const MIB: usize = 1 << 20;

fn chunk() -> Bytes {
    Bytes::from((0..MIB).map(|i| (i * 131 % 251) as u8).collect::<Vec<u8>>())
}

/// Digest of `n` repetitions of `chunk`, hashed incrementally (no big buffer).
fn digest_of_repeated(chunk: &Bytes, n: usize) -> Digest {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for _ in 0..n {
        ctx.update(chunk);
    }
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(ctx.finish().as_ref());
    Digest::from_bytes(bytes)
}

async fn upload(store: &BlobStore, chunk: &Bytes, n: usize, expected: &Digest) -> u64 {
    let id = store.start_upload().await.unwrap();
    let chunks = futures::stream::iter((0..n).map(|_| Ok::<_, std::io::Error>(chunk.clone())));
    store.append(&id, 0, chunks).await.unwrap();
    let size = store.finish(&id, expected).await.unwrap();
    store.delete(expected).await.unwrap();
    size
}

/// (user CPU s, system CPU s, peak RSS MiB) of this process so far (Linux).
fn cpu_and_peak_rss() -> Option<(f64, f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_comm = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // stat fields 14 and 15 (utime, stime, in 1/100 s) are at 11 and 12 after comm.
    let user: f64 = fields.get(11)?.parse().ok()?;
    let sys: f64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hwm_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some((user / 100.0, sys / 100.0, hwm_kib / 1024.0))
}

fn one_gib_report(rt: &tokio::runtime::Runtime, chunk: &Bytes) {
    let dir = tempfile::tempdir().unwrap();
    let n = 1024;
    let expected = digest_of_repeated(chunk, n);
    let store = rt.block_on(BlobStore::local(dir.path())).unwrap();
    let before = cpu_and_peak_rss();
    let t = std::time::Instant::now();
    rt.block_on(upload(&store, chunk, n, &expected));
    let wall = t.elapsed().as_secs_f64();
    if let (Some((u0, s0, _)), Some((u1, s1, hwm))) = (before, cpu_and_peak_rss()) {
        println!(
            "1 GiB append+finish (local): {wall:.2} s wall, {:.2} CPU-s ({:.2} user + {:.2} sys), \
             peak RSS of the bench process {hwm:.0} MiB",
            (u1 - u0) + (s1 - s0),
            u1 - u0,
            s1 - s0
        );
    }
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let chunk = chunk();

    one_gib_report(&rt, &chunk);

    let mut g = c.benchmark_group("sha256");
    let buf = vec![0x5au8; 8 * MIB];
    g.throughput(Throughput::Bytes(buf.len() as u64));
    g.bench_function("ring Digest::of 8MiB", |b| {
        b.iter(|| Digest::of(black_box(&buf)))
    });
    g.finish();

    let n = 256;
    let expected = digest_of_repeated(&chunk, n);
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(BlobStore::local(dir.path())).unwrap();
    let mut g = c.benchmark_group("upload");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Bytes((n * MIB) as u64));
    g.bench_function("append+finish 256MiB local", |b| {
        b.iter(|| rt.block_on(upload(&store, &chunk, n, &expected)))
    });
    g.finish();
}

criterion_group!(blobs, benches);
criterion_main!(blobs);
