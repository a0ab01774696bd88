#!/usr/bin/env python3
"""Time and peak memory of a garbage collection pass (`berth gc --grace 0`) over a registry
of N blobs of which a fraction is garbage, on the embedded default (SQLite + files) or on
PostgreSQL (+ files).

    python3 bench/gc-pass.py [--backend sqlite|postgres] [--blobs 100000] [--garbage 0.1]
                             [--repeats 3] [--keep DIR]

The registry is made directly (it would take hours to push 100,000 blobs through the API):
`berth account create` makes the data directory and the schema, then SQL inserts 10
repositories, the blobs' rows, the repositories' holdings and images of 10 layers each
referencing 90% of the blobs, and each blob's object is written under DATA/blobs. The other
10% are held and referenced by no image: the collector marks, releases and deletes them.
Each repeat builds a fresh registry and runs two passes measured with /usr/bin/time -v:
the first deletes the garbage, the second finds none (the cost of a pass on a clean
registry). Prints one line per pass and the medians.

Needs: the release build ($CARGO_TARGET_DIR/release/berth or target/release/berth); for
postgres, a server at $BERTH_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres).
"""

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("BERTH_BIN") or os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "berth")
PG = os.environ.get("BERTH_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
LAYERS = 10
REPOS = 10


def dataset(n, garbage):
    """(blobs: [(digest, bytes)], holdings: [(repo, digest, size)], images: [(repo, digest, refs)])."""
    blobs = []
    for i in range(n):
        data = f"blob {i} {os.urandom(8).hex()}".encode()
        blobs.append(("sha256:" + hashlib.sha256(data).hexdigest(), data))
    live = n - int(n * garbage)
    holdings, images = [], []
    for i, (d, data) in enumerate(blobs):
        holdings.append((f"repo-{i % REPOS}", d, len(data)))
    for start in range(0, live, LAYERS * REPOS):
        for r in range(REPOS):
            refs = [blobs[j][0] for j in range(start + r, min(start + LAYERS * REPOS, live), REPOS)]
            if refs:
                manifest = json.dumps({"layers": refs}).encode()
                images.append((f"repo-{r}", "sha256:" + hashlib.sha256(manifest).hexdigest(), manifest, refs))
    return blobs, holdings, images


def write_objects(data_dir, blobs):
    root = os.path.join(data_dir, "blobs", "sha256")
    for d, data in blobs:
        hexd = d.split(":")[1]
        sub = os.path.join(root, hexd[:2])
        os.makedirs(sub, mode=0o700, exist_ok=True)
        with open(os.path.join(sub, hexd), "wb") as f:
            f.write(data)


def rows(account, blobs, holdings, images):
    now = int(time.time() * 1000)
    yield "repositories", ["account_id", "name", "created_at", "tag_mutability", "scan_on_push"], \
        [(account, f"repo-{r}", now, "MUTABLE", False) for r in range(REPOS)]
    yield "blobs", ["digest", "size", "created_at"], [(d, len(data), now) for d, data in blobs]
    yield "repository_blobs", ["account_id", "repository", "digest", "size", "added_at"], \
        [(account, r, d, size, now) for r, d, size in holdings]
    yield "images", ["account_id", "repository", "digest", "media_type", "manifest", "size", "pushed_at"], \
        [(account, r, d, "application/vnd.oci.image.manifest.v1+json", m, len(m), now) for r, d, m, _ in images]
    yield "image_refs", ["account_id", "repository", "digest", "child", "kind"], \
        [(account, r, d, c, "blob") for r, d, _, refs in images for c in refs]


def fill_sqlite(db, account, data):
    con = sqlite3.connect(db)
    with con:
        for table, cols, values in rows(account, *data):
            values = [tuple(int(v) if isinstance(v, bool) else v for v in row) for row in values]
            con.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                            values)
    con.close()


def fill_postgres(url, account, data):
    for table, cols, values in rows(account, *data):
        buf = io.StringIO()
        for row in values:
            out = []
            for v in row:
                if isinstance(v, bool):
                    out.append("t" if v else "f")
                elif isinstance(v, bytes):
                    out.append("\\\\x" + v.hex())
                else:
                    out.append(str(v))
            buf.write("\t".join(out) + "\n")
        subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-qc",
                        f"COPY {table} ({', '.join(cols)}) FROM STDIN"],
                       input=buf.getvalue(), text=True, check=True, capture_output=True)


def timed(cmd):
    out = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", out.stderr)
    h, m, s = wall.groups()
    seconds = int(h or 0) * 3600 + int(m) * 60 + float(s)
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr).group(1))
    cpu = sum(float(re.search(rf"{k} time \(seconds\): ([\d.]+)", out.stderr).group(1)) for k in ("User", "System"))
    return seconds, rss / 1024, cpu, out.stdout.strip().splitlines()[-1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--blobs", type=int, default=100_000)
    ap.add_argument("--garbage", type=float, default=0.1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--keep", help="keep the last registry in this directory")
    a = ap.parse_args()
    assert os.path.exists(BIN), f"{BIN} is missing: cargo build --release --bin berth"
    results = {1: [], 2: []}
    for rep in range(a.repeats):
        tmp = tempfile.mkdtemp(prefix="berth-gc-bench-")
        data_dir = os.path.join(tmp, "data")
        extra, url, db = [], None, None
        if a.backend == "postgres":
            db = f"berth_gc_bench_{os.getpid()}_{rep}"
            subprocess.run(["psql", PG, "-qc", f"CREATE DATABASE {db}"], check=True, capture_output=True)
            url = PG.rsplit("/", 1)[0] + "/" + db
            extra = ["--metadata-url", url]
        try:
            made = subprocess.run([BIN, "account", "create", "--data-dir", data_dir, "--json", *extra],
                                  capture_output=True, text=True, check=True)
            account = json.loads(made.stdout)["account_id"]
            with open(os.path.join(data_dir, "bench-root.json"), "w") as f:
                f.write(made.stdout)
            data = dataset(a.blobs, a.garbage)
            write_objects(data_dir, data[0])
            if url:
                fill_postgres(url, account, data)
            else:
                fill_sqlite(os.path.join(data_dir, "berth.db"), account, data)
            for n in (1, 2):
                seconds, rss, cpu, said = timed([BIN, "gc", "--grace", "0", "--data-dir", data_dir, *extra])
                results[n].append((seconds, rss, cpu))
                print(f"{a.backend} repeat {rep + 1} pass {n}: {seconds:.2f} s wall, {cpu:.2f} CPU-s, "
                      f"peak RSS {rss:.1f} MiB — {said}", flush=True)
            left = sum(len(f) for _, _, f in os.walk(os.path.join(data_dir, "blobs", "sha256")))
            expect = a.blobs - int(a.blobs * a.garbage)
            assert left == expect, f"{left} objects left, {expect} expected"
        finally:
            if a.keep and rep == a.repeats - 1:
                shutil.move(tmp, a.keep)
            else:
                shutil.rmtree(tmp, ignore_errors=True)
            if db:
                subprocess.run(["psql", PG, "-qc", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"],
                               capture_output=True)
    for n, what in ((1, f"deleting {int(a.blobs * a.garbage)} of {a.blobs}"), (2, "nothing to delete")):
        walls = [r[0] for r in results[n]]
        print(f"median pass {n} ({what}): {statistics.median(walls):.2f} s wall, "
              f"{statistics.median(r[2] for r in results[n]):.2f} CPU-s, "
              f"peak RSS {statistics.median(r[1] for r in results[n]):.1f} MiB")


if __name__ == "__main__":
    sys.exit(main())
