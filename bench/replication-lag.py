#!/usr/bin/env python3
"""Replication lag within one deployment: the time from a push's last response (its
manifest PUT answered 201) to DescribeImageReplicationStatus answering COMPLETE, for N
images pushed one after another, to two destinations at once: the same account in the
other Region, and another account there (authorized by its registry policy, seed 003).

    python3 bench/replication-lag.py [--images 100] [--layers 2] [--size 65536] [--burst]

With --burst the N images are pushed by 16 clients at once and each image's lag is
counted from its own push's end. The status is polled every 2 ms per image (the figures
include up to that much). Prints the median and p99 lag per destination and the
throughput of the whole run.

Needs the release build ($CARGO_TARGET_DIR/release/berth or target/release/berth), boto3
and requests.
"""

import argparse
import base64
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import requests
from botocore.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("BERTH_BIN") or os.path.join(
    os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "berth")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def image(layers, size):
    blobs = [os.urandom(size) for _ in range(layers)]
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [sha(b) for b in blobs]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(b),
                    "size": len(b)} for b in blobs],
    }).encode()
    return [config, *blobs], manifest


def start(tmp):
    data = os.path.join(tmp, "data")
    conf = os.path.join(tmp, "berth.toml")
    with open(conf, "w") as f:
        f.write('regions = ["us-east-1", "us-west-2"]\naudit_log = "off"\n')
    p = subprocess.Popen([BIN, "serve", "--data-dir", data, "--listen", "127.0.0.1:0", "--config", conf],
                         stderr=subprocess.PIPE, text=True)
    for line in p.stderr:
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if m:
            threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
            return p, int(m.group(1)), data, conf
    raise SystemExit("berth serve did not start")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--size", type=int, default=65536)
    ap.add_argument("--burst", action="store_true")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="berth-repl-bench-")
    proc, port, data, conf = start(tmp)
    try:
        url = f"http://127.0.0.1:{port}"
        src = json.load(open(os.path.join(data, "root-credentials.json")))
        dst = json.loads(subprocess.run([BIN, "account", "create", "--json", "--data-dir", data, "--config", conf],
                                        capture_output=True, text=True, check=True).stdout)
        cfg = Config(retries={"max_attempts": 1}, max_pool_connections=32)

        def client(c, region):
            return boto3.client("ecr", endpoint_url=url, region_name=region, config=cfg,
                                aws_access_key_id=c["access_key_id"],
                                aws_secret_access_key=c["secret_access_key"])
        east, dst_west = client(src, "us-east-1"), client(dst, "us-west-2")
        policy = open(os.path.join(ROOT, "examples/seeds/003-registry-replicate-all.json")).read()
        policy = policy.replace("111111111111", dst["account_id"]).replace("222222222222", src["account_id"])
        dst_west.put_registry_policy(policyText=policy)
        east.put_replication_configuration(replicationConfiguration={"rules": [{"destinations": [
            {"region": "us-west-2", "registryId": src["account_id"]},
            {"region": "us-west-2", "registryId": dst["account_id"]}]}]})
        east.create_repository(repositoryName="bench")
        token = east.get_authorization_token()["authorizationData"][0]["authorizationToken"]
        auth = {"Authorization": "Basic " + token}
        images = [image(a.layers, a.size) for _ in range(a.images)]
        lags = {src["account_id"]: [], dst["account_id"]: []}
        names = {src["account_id"]: "same account, us-west-2", dst["account_id"]: "other account, us-west-2"}
        session = threading.local()

        def push(i):
            s = getattr(session, "s", None) or requests.Session()
            session.s = s
            blobs, manifest = images[i]
            for b in blobs:
                r = s.post(f"{url}/v2/bench/blobs/uploads/", params={"digest": sha(b)}, data=b, headers=auth)
                assert r.status_code == 201, r.text
            r = s.put(f"{url}/v2/bench/manifests/t{i}", data=manifest,
                      headers={**auth, "Content-Type": OCI_MANIFEST})
            assert r.status_code == 201, r.text
            return time.monotonic()

        def wait(i, pushed_at):
            pending = set(lags)
            while pending:
                out = east.describe_image_replication_status(repositoryName="bench", imageId={"imageTag": f"t{i}"})
                now = time.monotonic()
                for st in out["replicationStatuses"]:
                    if st["registryId"] in pending and st["status"] != "IN_PROGRESS":
                        assert st["status"] == "COMPLETE", st
                        lags[st["registryId"]].append((now - pushed_at) * 1000)
                        pending.discard(st["registryId"])
                if pending:
                    time.sleep(0.002)

        began = time.monotonic()
        if a.burst:
            with ThreadPoolExecutor(16) as pool:
                ends = list(pool.map(push, range(a.images)))
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda i: wait(i, ends[i]), range(a.images)))
        else:
            for i in range(a.images):
                wait(i, push(i))
        took = time.monotonic() - began
        print(f"{a.images} images of {a.layers} x {a.size} B layers, {'burst (16 clients)' if a.burst else 'one after another'}")
        for acct, xs in lags.items():
            xs.sort()
            p99 = xs[min(len(xs) - 1, int(round(0.99 * (len(xs) - 1))))]
            print(f"  {names[acct]}: median {statistics.median(xs):.1f} ms, p99 {p99:.1f} ms, max {xs[-1]:.1f} ms")
        print(f"  whole run: {took:.2f} s, {a.images / took:.1f} images/s pushed and replicated twice")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    sys.exit(main())
