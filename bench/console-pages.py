#!/usr/bin/env python3
"""Server-side time of the web console's pages on a large registry: 10,000 repositories and
about 100,000 images (one repository of 10,000 images, the others 9 each; every image
tagged, with a config and two layers), on the embedded default (SQLite + files).

    python3 bench/console-pages.py [--repositories 10000] [--images-per-repository 9]
                                   [--big-repository 10000] [--requests 50]

The registry is made directly (pushing 100,000 images through the API would take hours):
`berth account create` makes the data directory and the schema, then SQL inserts the
repositories, images, tags, references and holdings. `berth serve` (the release build)
then answers the console's pages, signed in as the root user, each page requested
`--requests` times one after another on loopback after two warm-up requests; the time is
the whole request as the client sees it (connection reused), so it bounds the server's
rendering time from above. Prints the median and the 95th percentile per page.

Needs: the release build ($CARGO_TARGET_DIR/release/berth or target/release/berth).
"""

import argparse
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("BERTH_BIN") or os.path.join(
    os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "berth")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def fill(db, account, repositories, per_repository, big):
    now = int(time.time() * 1000)
    con = sqlite3.connect(db)
    repos, images, tags, refs, holdings = [], [], [], [], []
    for r in range(repositories):
        name = f"team-{r // 100:03d}/app-{r:05d}"
        repos.append((account, name, now - r, "MUTABLE", 0, "AES256"))
        for i in range(big if r == 0 else per_repository):
            config = f'{{"architecture":"amd64","os":"linux","n":"{r}-{i}"}}'.encode()
            layers = [f"layer {r} {i} {k}".encode() for k in range(2)]
            manifest = json.dumps({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": digest(config), "size": len(config)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "digest": digest(l), "size": 1000 + len(l)} for l in layers],
            }).encode()
            d = digest(manifest)
            size = len(config) + sum(1000 + len(l) for l in layers)
            images.append((account, name, d, OCI_MANIFEST, manifest, size, now - i * 1000))
            tags.append((account, name, f"v{i}", d))
            for b, n in [(config, len(config))] + [(l, 1000 + len(l)) for l in layers]:
                refs.append((account, name, d, digest(b), "blob"))
                holdings.append((account, name, digest(b), n, now))
    with con:
        con.executemany("INSERT INTO repositories (account_id, name, created_at, tag_mutability, scan_on_push, "
                        "encryption_type) VALUES (?, ?, ?, ?, ?, ?)", repos)
        con.executemany("INSERT INTO images (account_id, repository, digest, media_type, manifest, size, pushed_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)", images)
        con.executemany("INSERT INTO image_tags (account_id, repository, tag, digest) VALUES (?, ?, ?, ?)", tags)
        con.executemany("INSERT INTO image_refs (account_id, repository, digest, child, kind) VALUES (?, ?, ?, ?, ?)",
                        refs)
        con.executemany("INSERT OR IGNORE INTO repository_blobs (account_id, repository, digest, size, added_at) "
                        "VALUES (?, ?, ?, ?, ?)", holdings)
    con.close()
    return images


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repositories", type=int, default=10_000)
    ap.add_argument("--images-per-repository", type=int, default=9)
    ap.add_argument("--big-repository", type=int, default=10_000,
                    help="images of the first repository")
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--keep", help="keep the registry's data directory here (and skip the pages)")
    a = ap.parse_args()
    assert os.path.exists(BIN), f"{BIN} is missing: cargo build --release --bin berth"
    tmp = tempfile.mkdtemp(prefix="berth-console-bench-")
    data_dir = os.path.join(tmp, "data")
    server = None
    try:
        made = subprocess.run([BIN, "account", "create", "--data-dir", data_dir, "--json"],
                              capture_output=True, text=True, check=True)
        root = json.loads(made.stdout)
        account = root["account_id"]
        started = time.time()
        images = fill(os.path.join(data_dir, "berth.db"), account, a.repositories, a.images_per_repository,
                      a.big_repository)
        print(f"registry: {a.repositories} repositories, {len(images)} images "
              f"(made in {time.time() - started:.1f} s)", flush=True)
        if a.keep:
            with open(os.path.join(data_dir, "bench-root.json"), "w") as f:
                f.write(made.stdout)
            shutil.move(data_dir, a.keep)
            print(f"kept in {a.keep}; the root user's key: {a.keep}/bench-root.json")
            return
        port = free_port()
        server = subprocess.Popen([BIN, "serve", "--data-dir", data_dir, "--listen", f"127.0.0.1:{port}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 30
        while True:
            try:
                requests.get(f"{url}/console/signin", timeout=1)
                break
            except requests.ConnectionError:
                assert time.time() < deadline, "the server did not start"
                time.sleep(0.05)
        session = requests.Session()
        r = session.post(f"{url}/console/signin", data={
            "how": "key", "access_key_id": root["access_key_id"],
            "secret_access_key": root["secret_access_key"]}, allow_redirects=False, timeout=10)
        assert r.status_code == 303, r.text
        middle = images[len(images) // 2]
        name, image_digest = middle[1], middle[2]
        pages = [
            ("repositories (first page of 50)", "/console/repositories"),
            ("repositories, later page", "/console/repositories?after=team-050/app-05000"),
            ("repositories, search", "/console/repositories?q=app-0999"),
            ("a repository's images", f"/console/repositories/{name}"),
            ("an image", f"/console/image/{name}?digest={image_digest}"),
            (f"the repository of {a.big_repository} images", f"/console/repositories/{images[0][1]}"),
            ("an image of that repository", f"/console/image/{images[0][1]}?digest={images[0][2]}"),
            ("repository policy editor", f"/console/policy/{name}"),
            ("lifecycle", f"/console/lifecycle/{name}"),
            ("registry policy editor", "/console/registry-policy"),
            ("who can", f"/console/who-can?repository={name}&action=ecr:BatchGetImage"),
            ("playground", "/console/playground"),
            ("IAM", "/console/iam"),
            ("activity", "/console/activity?decision=Deny"),
        ]
        print(f"{'page':36} {'median ms':>10} {'p95 ms':>8}")
        for label, path in pages:
            for _ in range(2):
                warm = session.get(url + path, timeout=30)
                assert warm.status_code == 200, (path, warm.status_code, warm.text[:300])
            times = []
            for _ in range(a.requests):
                t = time.perf_counter()
                r = session.get(url + path, timeout=30)
                times.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200, (path, r.status_code)
            times.sort()
            p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
            print(f"{label:36} {statistics.median(times):10.1f} {p95:8.1f}", flush=True)
    finally:
        if server:
            server.terminate()
            server.wait(timeout=15)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
