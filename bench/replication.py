#!/usr/bin/env python3
"""Replication figures (issue 13), each against fresh servers on loopback:

    python3 bench/replication.py lag [--across] [--images 100]
        Replication lag: from a push's last response (manifest PUT answered 201) to
        DescribeImageReplicationStatus answering COMPLETE, images pushed one after another
        (2 layers of 64 KiB). Within one deployment: to the same account in us-west-2 and to
        another account there (authorized by its registry policy, seed 003). --across: to a
        second deployment serving us-west-2, over the peer link. Status polled every 2 ms.

    python3 bench/replication.py backfill [--across] [--images 1000] [--size 4096]
        Throughput of a replication backfill: N images (2 layers of SIZE bytes) pushed before
        any rule, then a rule and StartReplicationBackfill; the time until the backfill is
        COMPLETE (ListReplicationBackfills polled every 20 ms).

    python3 bench/replication.py distribution [--images 100] [--size 262144]
        The peer: the same N images copied between two CNCF distribution instances (Debian's
        docker-registry 2.8) with `skopeo sync` (one process, every tag of the repository),
        timed; run `backfill --across` with the same --images/--size for Berth's figure.

Needs the release build ($CARGO_TARGET_DIR/release/berth or target/release/berth), boto3,
requests, skopeo, and for `distribution` Debian's docker-registry.
"""

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import socket
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
EAST, WEST = "us-east-1", "us-west-2"


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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Berth:
    def __init__(self, tmp, name, port, config):
        self.data = os.path.join(tmp, name)
        self.conf = os.path.join(tmp, name + ".toml")
        with open(self.conf, "w") as f:
            f.write('audit_log = "off"\n' + config)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen([BIN, "serve", "--data-dir", self.data, "--listen", f"127.0.0.1:{port}",
                                      "--config", self.conf], stderr=subprocess.PIPE, text=True)
        for line in self.proc.stderr:
            if re.search(r"listening on http://127\.0\.0\.1:\d+", line):
                threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()
                break
        else:
            raise SystemExit(f"berth serve ({name}) did not start")
        self.root = json.load(open(os.path.join(self.data, "root-credentials.json")))

    def new_account(self):
        return json.loads(subprocess.run([BIN, "account", "create", "--json", "--data-dir", self.data,
                                          "--config", self.conf], capture_output=True, text=True,
                                         check=True).stdout)

    def ecr(self, creds, region):
        return boto3.client("ecr", endpoint_url=self.url, region_name=region,
                            config=Config(retries={"max_attempts": 1}, max_pool_connections=32),
                            aws_access_key_id=creds["access_key_id"],
                            aws_secret_access_key=creds["secret_access_key"])

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def seed_policy(dest_account, source_account, region):
    text = open(os.path.join(ROOT, "examples/seeds/003-registry-replicate-all.json")).read()
    return (text.replace("111111111111", dest_account).replace("222222222222", source_account)
            .replace("us-west-2", region))


def setup(tmp, across):
    """(source server, destinations [(server, creds, account, label)], source ecr client)."""
    if across:
        key = os.path.join(tmp, "peer.key")
        with open(key, "wb") as f:
            f.write(os.urandom(32))
        pe, pw = free_port(), free_port()
        peer = lambda region, port: (f'replication_peers = [{{ region = "{region}", '  # noqa: E731
                                     f'endpoint = "http://127.0.0.1:{port}", key_file = "{key}" }}]\n')
        src = Berth(tmp, "east", pe, f'region = "{EAST}"\n' + peer(WEST, pw))
        dst = Berth(tmp, "west", pw, f'region = "{WEST}"\n' + peer(EAST, pe))
        dst.ecr(dst.root, WEST).put_registry_policy(
            policyText=seed_policy(dst.root["account_id"], src.root["account_id"], WEST))
        return src, [(dst, dst.root, dst.root["account_id"], "other deployment, us-west-2")], [src, dst]
    src = Berth(tmp, "one", free_port(), f'regions = ["{EAST}", "{WEST}"]\n')
    other = src.new_account()
    src.ecr(other, WEST).put_registry_policy(
        policyText=seed_policy(other["account_id"], src.root["account_id"], WEST))
    return src, [(src, src.root, src.root["account_id"], "same account, us-west-2"),
                 (src, other, other["account_id"], "other account, us-west-2")], [src]


def pusher(server, repo, creds, region):
    token = server.ecr(creds, region).get_authorization_token()["authorizationData"][0]["authorizationToken"]
    auth = {"Authorization": "Basic " + token}
    local = threading.local()

    def push(img, tag):
        s = getattr(local, "s", None) or requests.Session()
        local.s = s
        blobs, manifest = img
        for b in blobs:
            r = s.post(f"{server.url}/v2/{repo}/blobs/uploads/", params={"digest": sha(b)}, data=b, headers=auth)
            assert r.status_code == 201, r.text
        r = s.put(f"{server.url}/v2/{repo}/manifests/{tag}", data=manifest,
                  headers={**auth, "Content-Type": OCI_MANIFEST})
        assert r.status_code == 201, r.text
        return time.monotonic()
    return push


def configure(src_ecr, dests):
    src_ecr.put_replication_configuration(replicationConfiguration={"rules": [{"destinations": [
        {"region": WEST, "registryId": acct} for (_, _, acct, _) in dests]}]})


def lag(a):
    tmp = tempfile.mkdtemp(prefix="berth-repl-bench-")
    src, dests, servers = setup(tmp, a.across)
    try:
        east = src.ecr(src.root, EAST)
        configure(east, dests)
        east.create_repository(repositoryName="bench")
        push = pusher(src, "bench", src.root, EAST)
        images = [image(2, 65536) for _ in range(a.images)]
        lags = {acct: [] for (_, _, acct, _) in dests}
        for i, img in enumerate(images):
            pushed = push(img, f"t{i}")
            pending = set(lags)
            while pending:
                out = east.describe_image_replication_status(repositoryName="bench", imageId={"imageTag": f"t{i}"})
                now = time.monotonic()
                for st in out["replicationStatuses"]:
                    if st["registryId"] in pending and st["status"] != "IN_PROGRESS":
                        assert st["status"] == "COMPLETE", st
                        lags[st["registryId"]].append((now - pushed) * 1000)
                        pending.discard(st["registryId"])
                if pending:
                    time.sleep(0.002)
        print(f"replication lag, {a.images} images of 2 x 64 KiB layers pushed one after another")
        for (_, _, acct, label) in dests:
            xs = sorted(lags[acct])
            p99 = xs[min(len(xs) - 1, int(round(0.99 * (len(xs) - 1))))]
            print(f"  {label}: median {statistics.median(xs):.1f} ms, p99 {p99:.1f} ms, max {xs[-1]:.1f} ms")
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def backfill(a):
    tmp = tempfile.mkdtemp(prefix="berth-repl-bench-")
    src, dests, servers = setup(tmp, a.across)
    dests = dests[-1:]  # one destination (a backfill has one)
    try:
        east = src.ecr(src.root, EAST)
        east.create_repository(repositoryName="bench")
        push = pusher(src, "bench", src.root, EAST)
        images = [image(2, a.size) for _ in range(a.images)]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda ix: push(ix[1], f"t{ix[0]}"), enumerate(images)))
        configure(east, dests)
        began = time.monotonic()
        bid = east.start_replication_backfill(destination={"region": WEST, "registryId": dests[0][2]})[
            "replicationBackfillId"]
        while True:
            [b] = [x for x in east.list_replication_backfills()["backfills"] if x["replicationBackfillId"] == bid]
            if b["status"] not in ("PREPARING", "IN_PROGRESS"):
                break
            time.sleep(0.02)
        took = time.monotonic() - began
        assert b["status"] == "COMPLETE" and b["progress"]["completedReplicationCount"] == a.images, b
        mib = a.images * (2 * a.size) / 2**20
        print(f"backfill of {a.images} images (2 x {a.size} B layers, {mib:.1f} MiB) to {dests[0][3]}: "
              f"{took:.2f} s, {a.images / took:.0f} images/s, {mib / took:.1f} MiB/s")
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def distribution(a):
    tmp = tempfile.mkdtemp(prefix="berth-repl-bench-dist-")
    ref = os.path.join(ROOT, "..", "shared", "tools", "registry-bench", "ref-registry.sh")
    ports = [free_port(), free_port()]
    pids = [subprocess.run(["bash", ref, os.path.join(tmp, f"r{i}"), f"127.0.0.1:{p}"], capture_output=True,
                           text=True, check=True).stdout.strip() for i, p in enumerate(ports)]
    try:
        s = requests.Session()
        src = f"http://127.0.0.1:{ports[0]}"
        for i in range(a.images):
            blobs, manifest = image(2, a.size)
            for b in blobs:
                r = s.post(f"{src}/v2/bench/blobs/uploads/")
                loc = r.headers["Location"]
                loc = loc if loc.startswith("http") else src + loc
                sep = "&" if "?" in loc else "?"
                assert s.put(f"{loc}{sep}digest={sha(b)}", data=b).status_code == 201
            assert s.put(f"{src}/v2/bench/manifests/t{i}", data=manifest,
                         headers={"Content-Type": OCI_MANIFEST}).status_code == 201
        began = time.monotonic()
        p = subprocess.run(["skopeo", "sync", "--src", "docker", "--dest", "docker", "--src-tls-verify=false",
                            "--dest-tls-verify=false", f"127.0.0.1:{ports[0]}/bench",
                            f"127.0.0.1:{ports[1]}"], capture_output=True, text=True)
        if p.returncode != 0:
            raise SystemExit(f"skopeo sync failed:\n{p.stderr}")
        took = time.monotonic() - began
        mib = a.images * (2 * a.size) / 2**20
        print(f"skopeo sync of {a.images} images (2 x {a.size} B layers, {mib:.1f} MiB) between two "
              f"distribution 2.8 instances: {took:.2f} s, {a.images / took:.0f} images/s, {mib / took:.1f} MiB/s")
    finally:
        for pid in pids:
            subprocess.run(["kill", pid])
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["lag", "backfill", "distribution"])
    ap.add_argument("--across", action="store_true")
    ap.add_argument("--images", type=int)
    ap.add_argument("--size", type=int)
    a = ap.parse_args()
    if a.mode == "lag":
        a.images = a.images or 100
        lag(a)
    elif a.mode == "backfill":
        a.images, a.size = a.images or 1000, a.size or 4096
        backfill(a)
    else:
        a.images, a.size = a.images or 100, a.size or 262144
        distribution(a)


if __name__ == "__main__":
    sys.exit(main())
