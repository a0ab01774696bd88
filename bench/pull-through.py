#!/usr/bin/env python3
"""Pull-through cache figures: the same images pulled with skopeo (into a new `dir:`
destination each time) from an upstream CNCF distribution 2.8 (Debian's docker-registry,
anonymous, filesystem storage) directly, through Berth the first time (not cached: the
image is fetched from the upstream while it is sent to the client), and through Berth
again (cached). All on loopback, one run:

    python3 bench/pull-through.py [--repeats 5] [--keep DIR]

Images: `big`, 5 layers of 32 MiB of random bytes; `many`, 50 layers of 16 KiB. Each
repeat pulls each image three ways, one after the other: direct, first (a new rule
prefix per repeat, so the repository is new and nothing is cached), cached (the same
repository again). Printed: the median seconds of each way and the ratios first/direct
and cached/direct.

Needs the release build ($BERTH_BIN, else $CARGO_TARGET_DIR/release/berth or
target/release/berth), docker-registry, skopeo, boto3 and requests.
"""

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import boto3
from botocore.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from upstream import Upstream  # noqa: E402

BIN = os.environ.get("BERTH_BIN") or os.path.join(
    os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "berth")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
IMAGES = {"big": (5, 32 * 1024 * 1024), "many": (50, 16 * 1024)}


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def write_layout(directory, layers, size):
    """An OCI layout with one image (tag v1) of `layers` random blobs of `size` bytes."""
    blobs_dir = os.path.join(directory, "blobs", "sha256")
    os.makedirs(blobs_dir)

    def put(data):
        with open(os.path.join(blobs_dir, sha(data).split(":")[1]), "wb") as f:
            f.write(data)
        return {"digest": sha(data), "size": len(data)}

    descs = [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **put(os.urandom(size))}
             for _ in range(layers)]
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descs]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **put(config)},
                           "layers": descs}).encode()
    m = put(manifest)
    with open(os.path.join(directory, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    with open(os.path.join(directory, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [{
            "mediaType": OCI_MANIFEST, **m, "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}, f)
    return m["digest"]


class Berth:
    def __init__(self, tmp, upstream_host):
        self.data = os.path.join(tmp, "berth")
        self.conf = os.path.join(tmp, "berth.toml")
        with open(self.conf, "w") as f:
            f.write('audit_log = "off"\n')
            f.write(f'pull_through_insecure_upstreams = ["{upstream_host}"]\n')
        self.proc = subprocess.Popen([BIN, "serve", "--data-dir", self.data, "--listen", "127.0.0.1:0",
                                      "--config", self.conf], stderr=subprocess.PIPE, text=True)
        for line in self.proc.stderr:
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()
                break
        else:
            raise SystemExit("berth serve did not start")
        root = json.load(open(os.path.join(self.data, "root-credentials.json")))
        self.ecr = boto3.client("ecr", endpoint_url=f"http://127.0.0.1:{self.port}", region_name="us-east-1",
                                config=Config(retries={"max_attempts": 1}),
                                aws_access_key_id=root["access_key_id"],
                                aws_secret_access_key=root["secret_access_key"])
        token = self.ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
        self.password = base64.b64decode(token).decode().split(":", 1)[1]

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def cpu_seconds(pid):
    """User + system CPU seconds a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_copy(src, creds, dest_dir):
    """Seconds of one `skopeo copy` of `src` into a new dir: destination (removed after)."""
    shutil.rmtree(dest_dir, ignore_errors=True)
    args = ["skopeo", "--insecure-policy", "copy", "--src-tls-verify=false"]
    if creds:
        args += ["--src-creds", creds]
    t0 = time.monotonic()
    p = subprocess.run(args + [src, f"dir:{dest_dir}"], capture_output=True, text=True)
    seconds = time.monotonic() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(args)} {src}: {p.stderr}")
    shutil.rmtree(dest_dir, ignore_errors=True)
    return seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=int(os.environ.get("REPEATS", 5)))
    ap.add_argument("--keep", help="work in this directory and keep it (default: a temporary one, removed)")
    a = ap.parse_args()
    tmp = a.keep or tempfile.mkdtemp(prefix="berth-ptc-bench-")
    os.makedirs(tmp, exist_ok=True)
    upstream = Upstream(os.path.join(tmp, "upstream"), name="bench").start()
    berth = None
    try:
        for name, (layers, size) in IMAGES.items():
            layout = os.path.join(tmp, f"layout-{name}")
            write_layout(layout, layers, size)
            upstream.push(layout, "v1", f"bench/{name}")
            shutil.rmtree(layout)
        berth = Berth(tmp, upstream.host)
        times = {(name, way): [] for name in IMAGES for way in ("direct", "first", "cached")}
        cpu = {(name, way, who): [] for name in IMAGES for way in ("direct", "first", "cached")
               for who in ("berth", "upstream")}
        procs = {"berth": berth.proc.pid, "upstream": upstream.proc.pid}

        def measured(name, way, src, creds):
            before = {who: cpu_seconds(pid) for who, pid in procs.items()}
            times[(name, way)].append(timed_copy(src, creds, dest))
            for who, pid in procs.items():
                cpu[(name, way, who)].append(cpu_seconds(pid) - before[who])
        dest = os.path.join(tmp, "dest")
        for r in range(a.repeats):
            prefix = f"bench{r}"
            berth.ecr.create_pull_through_cache_rule(ecrRepositoryPrefix=prefix,
                                                     upstreamRegistryUrl=upstream.url)
            for name in IMAGES:
                measured(name, "direct", f"docker://{upstream.host}/bench/{name}:v1", None)
                through = f"docker://127.0.0.1:{berth.port}/{prefix}/bench/{name}:v1"
                measured(name, "first", through, f"AWS:{berth.password}")
                measured(name, "cached", through, f"AWS:{berth.password}")
        print(f"pull through cache vs direct pull from the upstream (skopeo copy to dir:, "
              f"{a.repeats} repeat(s), medians)")
        print(f"{'image':<34} {'direct s':>9} {'first s':>9} {'cached s':>9} {'first/direct':>13} "
              f"{'cached/direct':>14}")
        for name, (layers, size) in IMAGES.items():
            d, f, c = (statistics.median(times[(name, w)]) for w in ("direct", "first", "cached"))
            label = f"{name} ({layers} x {size // 1024} KiB)"
            print(f"{label:<34} {d:>9.3f} {f:>9.3f} {c:>9.3f} {f / d:>13.2f} {c / d:>14.2f}")
        print("CPU seconds per pull (medians): berth / the upstream registry")
        for name in IMAGES:
            parts = []
            for way in ("direct", "first", "cached"):
                b = statistics.median(cpu[(name, way, "berth")])
                u = statistics.median(cpu[(name, way, "upstream")])
                parts.append(f"{way} {b:.2f} / {u:.2f}")
            print(f"  {name:<10} " + ", ".join(parts))
    finally:
        if berth:
            berth.stop()
        upstream.close()
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
