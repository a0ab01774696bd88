#!/usr/bin/env python3
"""How many PostgreSQL transactions a berth node spends per registry request, in the steady
state (caches warm), counted by PostgreSQL itself (pg_stat_database.xact_commit +
xact_rollback of the node's database; each statement outside a transaction counts as one).

    bench/authorizer-round-trips.py BERTH_BINARY [N]
    env: PG_URL=postgres://postgres@127.0.0.1:5432/postgres (a user that may create databases)

Three kinds of request, N of each, after a warm-up:
  - a denied pull (GET manifest by a user no policy allows): authentication and
    authorization only, so this is the authorizer's own cost;
  - an allowed pull (GET manifest by tag): the authorizer plus the manifest look-up;
  - an allowed blob HEAD: the authorizer plus the blob look-up.
PostgreSQL publishes a backend's counts at most once a second while it is busy, and at
once when it goes idle for 10 s; the script waits for the counts to stop moving before
reading them, and subtracts what an idle node does over the same wait (lease renewals).
"""
import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

import boto3
import requests

BIN = sys.argv[1]
N = int(sys.argv[2]) if len(sys.argv) > 2 else 500
PG_URL = os.environ.get("PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")
DB = f"berth_rt_{os.getpid()}"


def psql(sql, url=PG_URL):
    return subprocess.run(["psql", url, "-qAtc", sql], check=True, capture_output=True, text=True).stdout.strip()


def transactions():
    return int(psql(f"SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '{DB}'"))


def settled():
    """The count once it has not moved for 12 s (every backend flushed its counts)."""
    last, since = transactions(), time.monotonic()
    while time.monotonic() - since < 12:
        time.sleep(1)
        now = transactions()
        if now != last:
            last, since = now, time.monotonic()
    return last


psql(f"CREATE DATABASE {DB}")
tmp = tempfile.mkdtemp()
proc = None
try:
    with open(f"{tmp}/config.toml", "w") as f:
        # Lease renewals (every third of job_lease_seconds) would keep the counts moving:
        # the longest lease, so none comes during the measurement.
        f.write(f'audit_log = "off"\nmetadata_url = "{PG_URL.rsplit("/", 1)[0]}/{DB}"\n'
                'job_lease_seconds = 3600\nclean_interval_seconds = 86400\n')
    proc = subprocess.Popen([BIN, "serve", "--data-dir", f"{tmp}/data", "--listen", "127.0.0.1:0",
                             "--config", f"{tmp}/config.toml"], stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        if m:
            url = m.group(1)
            break
    # Keep draining the log so the server never blocks on it.
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    creds = json.load(open(f"{tmp}/data/root-credentials.json"))
    session = boto3.Session(aws_access_key_id=creds["access_key_id"],
                            aws_secret_access_key=creds["secret_access_key"], region_name="us-east-1")
    ecr = session.client("ecr", endpoint_url=url)
    iam = session.client("iam", endpoint_url=url)
    ecr.create_repository(repositoryName="app")

    def password(client):
        token = client.get_authorization_token()["authorizationData"][0]["authorizationToken"]
        return base64.b64decode(token).decode().split(":", 1)[1]

    root_pw = password(ecr)
    iam.create_user(UserName="nobody")
    iam.put_user_policy(UserName="nobody", PolicyName="token", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="nobody")["AccessKey"]
    nobody = boto3.Session(aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
                           region_name="us-east-1").client("ecr", endpoint_url=url)
    nobody_pw = password(nobody)

    # An image: one layer, a config, a manifest.
    s = requests.Session()
    s.auth = ("AWS", root_pw)
    layer, config = os.urandom(1000), b'{"architecture":"amd64","os":"linux"}'
    digests = {}
    for blob in (layer, config):
        d = "sha256:" + hashlib.sha256(blob).hexdigest()
        r = s.post(f"{url}/v2/app/blobs/uploads/", params={"digest": d}, data=blob)
        assert r.status_code == 201, r.text
        digests[blob] = d
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": digests[config], "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                       "digest": digests[layer], "size": len(layer)}]}).encode()
    r = s.put(f"{url}/v2/app/manifests/v1", data=manifest,
              headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 201, r.text
    denied = requests.Session()
    denied.auth = ("AWS", nobody_pw)
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    kinds = {
        "denied pull (authorizer only)": lambda: denied.get(f"{url}/v2/app/manifests/v1", headers=accept),
        "allowed pull (manifest by tag)": lambda: s.get(f"{url}/v2/app/manifests/v1", headers=accept),
        "allowed blob HEAD": lambda: s.head(f"{url}/v2/app/blobs/{digests[layer]}"),
    }
    expected = {"denied pull (authorizer only)": 403, "allowed pull (manifest by tag)": 200,
                "allowed blob HEAD": 200}
    for name, call in kinds.items():  # warm the caches
        for _ in range(20):
            assert call().status_code == expected[name], name

    before = settled()
    idle = settled() - before
    rows = []
    for name, call in kinds.items():
        start = settled()
        t0 = time.monotonic()
        for _ in range(N):
            assert call().status_code == expected[name], name
        elapsed = time.monotonic() - t0
        spent = settled() - start - idle
        rows.append((name, spent / N, N / elapsed))
    print(f"| request ({N} each, steady state) | PostgreSQL transactions per request | requests/s (one client) |")
    print("|---|---|---|")
    for name, per, rate in rows:
        print(f"| {name} | {per:.3f} | {rate:.0f} |")
    print(f"\n(an idle node over one settling wait: {idle} transactions, subtracted)")
finally:
    if proc:
        proc.terminate()
        proc.wait()
    subprocess.run(["psql", PG_URL, "-qc", f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)"], capture_output=True)
