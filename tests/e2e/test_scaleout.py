"""Several nodes, one registry: three `berth serve` processes on one PostgreSQL database
and one S3-compatible object store (s3s-fs), as behind a load balancer. What one node
writes, every node serves; an upload goes on whichever node its requests reach; a policy
set on one node is enforced by the others within a second; a node killed in the middle of
a push loses nothing; a PostgreSQL restart gives clean errors, then the nodes recover by
themselves; `berth migrate` moves an embedded registry into a scale-out one.

Needs BERTH_TEST_POSTGRES_URL (scripts/with-postgres) and BERTH_TEST_S3_* (scripts/with-s3)."""

import base64
import concurrent.futures
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from berth import (ALLOW_ALL, BIN, Registry, s3_blob_config, allow, client_error, deny, doc, login_password,
                   make_image, new_database, oci_blob, oci_error, postgres_url, psql, read_oci_layout,
                   sha256, skopeo_pull, skopeo_push, unique, until, write_oci_layout, Server)


def s3_env(name):
    value = os.environ.get(f"BERTH_TEST_S3_{name}")
    assert value, f"the scale-out tests need BERTH_TEST_S3_{name} (scripts/with-s3 sets it)"
    return value


def s3_config(prefix):
    return s3_blob_config(prefix)


def write_key(path):
    path.write_text(secrets.token_hex(32) + "\n")
    path.chmod(0o600)
    return path


class Cluster:
    """`n` nodes on one database and one bucket prefix, sharing the secrets key file."""

    def __init__(self, tmp, n=3, database=None, extra=""):
        self.database = database or new_database()
        self.key = write_key(tmp / "secrets.key")
        config = s3_config(unique("blobs")) + f'secrets_key_file = "{self.key}"\n' + extra
        self.nodes = [Server(tmp / f"node{i}", extra_config=config, database=self.database)
                      for i in range(n)]
        # The first node makes the default account (and writes its root credentials, which
        # the others' helpers read from their own data directories).
        self.nodes[0].start()
        for node in self.nodes[1:]:
            shutil.copy(self.nodes[0].root_credentials_path, node.root_credentials_path)
            node.start()

    @property
    def root(self):
        return self.nodes[0].root

    def password(self, creds=None):
        return login_password(self.nodes[0], creds or self.root)

    def stop(self):
        for node in self.nodes:
            if node.proc is not None:
                node.stop()


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    yield c
    c.stop()


def ecr(node, creds):
    return node.client("ecr", creds)


def test_every_node_serves_what_another_wrote(cluster, tmp_path):
    n1, n2, n3 = cluster.nodes
    root = cluster.root
    repo = unique("team/app")
    ecr(n1, root).create_repository(repositoryName=repo)
    # Every node sees the repository at once (the caches were told).
    for node in (n2, n3):
        [r] = ecr(node, root).describe_repositories(repositoryNames=[repo])["repositories"]
        assert r["repositoryName"] == repo
    # A registry password from one node works on every node.
    pw = login_password(n3, root)
    img = make_image(layers=3, size=300_000)
    write_oci_layout(tmp_path / "src", {"v1": img})
    skopeo_push(n1, pw, tmp_path / "src", "v1", repo)
    dg = tmp_path / "digest"
    skopeo_pull(n2, pw, repo, "v1", tmp_path / "dst", extra=["--digestfile", str(dg)])
    assert dg.read_text().strip() == img.digest
    entry, manifest = read_oci_layout(tmp_path / "dst", "pulled")
    assert manifest == img.manifest
    for d, b in img.blobs:
        assert oci_blob(tmp_path / "dst", d) == b, d
    [detail] = ecr(n3, root).describe_images(repositoryName=repo)["imageDetails"]
    assert detail["imageDigest"] == img.digest and detail["imageTags"] == ["v1"]


def test_a_cached_tag_is_checked_once_per_interval_whichever_node_is_asked(tmp_path):
    """Pull-through cache on two nodes: the image one node fetched is served by the other
    without asking the upstream; once the interval passed, the first node to be asked
    checks the tag (one manifest request upstream) and the other, asked right after, does
    not check it again."""
    from upstream import Upstream
    up = Upstream(tmp_path / "upstream", name="scaleout").start()
    interval = 4
    cluster = Cluster(tmp_path, n=2, extra=f'pull_through_insecure_upstreams = ["{up.host}"]\n'
                                          f"pull_through_recheck_seconds = {interval}\n")
    try:
        n1, n2 = cluster.nodes
        prefix = unique("ptc")
        ecr(n1, cluster.root).create_pull_through_cache_rule(ecrRepositoryPrefix=prefix,
                                                             upstreamRegistryUrl=up.url)
        img = make_image(layers=2, size=64 * 1024)
        write_oci_layout(tmp_path / "src", {"v1": img})
        up.push(tmp_path / "src", "v1", "app", "latest")
        pw = cluster.password()
        repo = f"{prefix}/app"
        r = Registry(n1, pw).get_manifest(repo, "latest")
        fetched_at = time.time()
        assert r.status_code == 200 and r.content == img.manifest, (r.status_code, r.text[:300])
        until(f"{repo} is stored", 30, lambda: ecr(n2, cluster.root).describe_images(
            repositoryName=repo)["imageDetails"])
        mark = up.sync()
        r = Registry(n2, pw).get_manifest(repo, "latest")
        assert r.status_code == 200 and r.content == img.manifest
        assert up.since(mark) == [], "the second node asked the upstream within the interval"
        until("the interval passed", interval + 10, lambda: time.time() > fetched_at + interval + 0.5)
        mark = up.sync()
        for node in (n1, n2, n1, n2):
            r = Registry(node, pw).get_manifest(repo, "latest")
            assert r.status_code == 200 and r.content == img.manifest
        checks = [q for q in up.since(mark) if q.path == "/v2/app/manifests/latest"]
        assert len(checks) == 1, up.since(mark)
    finally:
        cluster.stop()
        up.close()


def test_a_chunked_upload_alternates_nodes(cluster):
    n1, n2, n3 = cluster.nodes
    repo = unique("chunks")
    ecr(n1, cluster.root).create_repository(repositoryName=repo)
    pw = cluster.password()
    regs = [Registry(n, pw) for n in (n1, n2, n3, n1)]
    # Chunks below and above S3's 5 MiB part size.
    data = os.urandom(6 * 1024 * 1024 + 12345)
    cuts = [0, 1000, 6 * 1024 * 1024, len(data)]
    r = regs[0].start_upload(repo)
    assert r.status_code == 202, r.text
    loc = r.headers["Location"]
    for i, (a, b) in enumerate(zip(cuts, cuts[1:])):
        r = regs[i + 1].patch(loc, data[a:b], start=a)
        assert r.status_code == 202, (i, r.status_code, r.text)
        assert r.headers["Range"] == f"0-{b - 1}"
        loc = r.headers["Location"]
    # The status, asked of yet another node.
    r = Registry(n2, pw).request("GET", loc)
    assert r.status_code == 204 and r.headers["Range"] == f"0-{len(data) - 1}"
    r = Registry(n1, pw).finish(loc, sha256(data))
    assert r.status_code == 201, r.text
    for node in (n1, n2, n3):
        got = Registry(node, pw).get_blob(repo, sha256(data))
        assert got.status_code == 200 and got.content == data


def test_a_policy_set_on_one_node_is_enforced_by_the_others_within_a_second(tmp_path):
    # Long caches: only the change notifications can make this happen in time.
    c = Cluster(tmp_path)
    try:
        n1, n2, n3 = c.nodes
        for node in c.nodes:
            node.stop()
        for node in c.nodes:
            text = node.config_path.read_text().replace("cache_ttl_ms = 100", "cache_ttl_ms = 600000")
            node.config_path.write_text(text)
            node.start()
        root = c.root
        repo = unique("guarded")
        ecr(n1, root).create_repository(repositoryName=repo)
        name, creds = n1.new_user(policies=[doc(allow("ecr:*"))])
        pw = login_password(n1, creds)
        img = make_image(layers=1)
        Registry(n1, pw).push_image(repo, img, "v1")
        reg1 = Registry(n1, pw)
        assert reg1.get_manifest(repo, "v1").status_code == 200  # cached as allowed
        policy = doc(deny("ecr:BatchGetImage", Principal={"AWS": f"arn:aws:iam::{n1.account}:user/{name}"}))
        n3.cli(root, "ecr", "set-repository-policy", "--repository-name", repo,
               "--policy-text", json.dumps(policy))
        set_at = time.monotonic()
        while True:
            r = reg1.get_manifest(repo, "v1")
            if r.status_code == 403:
                break
            assert time.monotonic() - set_at < 1.0, "node 1 still allows the pull a second later"
        assert oci_error(r)[1] == "DENIED"
    finally:
        c.stop()


def test_credentials_and_denials_are_one_registry_s(tmp_path):
    """Passwords and encoded denials from one node work on the others; an access key
    deactivated on one node stops working on the others within a second, long caches
    or not; readiness is reported by every node."""
    c = Cluster(tmp_path)
    try:
        for node in c.nodes:
            node.stop()
            text = node.config_path.read_text().replace("cache_ttl_ms = 100", "cache_ttl_ms = 600000")
            node.config_path.write_text(text)
        for node in c.nodes:
            node.start()
        n1, n2, n3 = c.nodes
        for node in c.nodes:
            r = Registry(node).request("GET", "/readyz")
            assert r.status_code == 200, r.text
        name, user = n1.new_user(policies=[ALLOW_ALL])
        # Signed requests by this key are cached as valid on node 3.
        assert n3.sts(user).get_caller_identity()["Arn"].endswith(f":user/{name}")
        pw = login_password(n2, user)
        assert Registry(n3, pw).request("GET", "/v2/").status_code == 200
        # A denial encoded by node 1 decodes on node 2.
        _, nobody = n1.new_user()
        _, message, _ = client_error(n1.iam(nobody).list_users)
        m = re.search(r"Encoded authorization failure message: ([A-Za-z0-9_-]+)", message)
        assert m, message
        decoded = json.loads(n2.sts(user).decode_authorization_message(EncodedMessage=m.group(1))["DecodedMessage"])
        assert decoded["allowed"] is False
        # Deactivated on node 2: refused by node 3 (which cached it) within a second.
        n2.iam().update_access_key(UserName=name, AccessKeyId=user.access_key_id, Status="Inactive")
        changed = time.monotonic()
        while True:
            try:
                n3.sts(user).get_caller_identity()
            except ClientError as e:
                assert e.response["Error"]["Code"] == "InvalidClientTokenId", e.response
                break
            assert time.monotonic() - changed < 1.0, "node 3 still accepts the key a second later"
        # So is the registry password issued for it.
        assert Registry(n1, pw).request("GET", "/v2/").status_code in (401, 403)
    finally:
        c.stop()


def test_a_node_killed_in_the_middle_of_a_push_loses_nothing(cluster):
    n1, n2, n3 = cluster.nodes
    repo = unique("killed")
    ecr(n1, cluster.root).create_repository(repositoryName=repo)
    pw = cluster.password()
    data = os.urandom(12 * 1024 * 1024)
    reg1 = Registry(n1, pw)
    r = reg1.start_upload(repo)
    loc = r.headers["Location"]
    r = reg1.patch(loc, data[:6 * 1024 * 1024], start=0)
    assert r.status_code == 202
    loc = r.headers["Location"]
    # The second chunk is cut off by SIGKILL part way through its body.
    path = loc if loc.startswith("/") else "/" + loc.split("/", 3)[3]
    sock = socket.create_connection(("127.0.0.1", n1.port))
    sock.sendall((f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1:{n1.port}\r\n"
                  f"Authorization: Basic {base64.b64encode(('AWS:' + pw).encode()).decode()}\r\n"
                  f"Content-Type: application/octet-stream\r\n"
                  f"Content-Range: {6 * 1024 * 1024}-{len(data) - 1}\r\n"
                  f"Content-Length: {len(data) - 6 * 1024 * 1024}\r\n\r\n").encode())
    sock.sendall(data[6 * 1024 * 1024:9 * 1024 * 1024])
    n1.proc.send_signal(signal.SIGKILL)
    n1.proc.wait()
    n1.proc = None
    sock.close()
    # Another node says what the session holds (what was saved before the kill), and the
    # push goes on from there.
    reg2 = Registry(n2, pw)
    r = reg2.request("GET", loc)
    assert r.status_code == 204, r.text
    held = int(r.headers["Range"].split("-")[1]) + 1
    assert 6 * 1024 * 1024 <= held <= len(data)
    r = reg2.patch(loc, data[held:], start=held)
    assert r.status_code == 202, r.text
    r = reg2.finish(r.headers["Location"], sha256(data))
    assert r.status_code == 201, r.text
    got = Registry(n3, pw).get_blob(repo, sha256(data))
    assert got.status_code == 200 and got.content == data
    # The killed node starts again on the same database and serves the blob.
    n1.start()
    assert Registry(n1, pw).get_blob(repo, sha256(data)).content == data


class PrivatePostgres:
    """A PostgreSQL instance of this test's own (so stopping it disturbs nothing else)."""

    def __init__(self, tmp):
        versions = sorted(os.listdir("/usr/lib/postgresql"), key=lambda v: [int(x) for x in v.split(".")])
        assert versions, "no PostgreSQL under /usr/lib/postgresql"
        self.bin = f"/usr/lib/postgresql/{versions[-1]}/bin"
        # Not under pytest's directory: that one is private to root, and the instance runs
        # as the postgres user when the tests run as root.
        self.dir = Path(tempfile.mkdtemp(prefix="berth-e2e-pg-"))
        self.as_pg = []
        if os.getuid() == 0:
            shutil.chown(self.dir, "postgres")
            self.as_pg = ["runuser", "-u", "postgres", "--"]
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        subprocess.run([*self.as_pg, f"{self.bin}/initdb", "-D", str(self.dir / "data"), "-U", "postgres",
                        "--auth=trust", "-E", "UTF8"], check=True, capture_output=True)
        self.start()

    def start(self):
        subprocess.run([*self.as_pg, f"{self.bin}/pg_ctl", "-D", str(self.dir / "data"), "-l",
                        str(self.dir / "log"), "-w", "-t", "60", "-o",
                        f"-h 127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off", "start"],
                       check=True, capture_output=True)

    def stop(self):
        subprocess.run([*self.as_pg, f"{self.bin}/pg_ctl", "-D", str(self.dir / "data"), "-m", "fast",
                        "-w", "stop"], capture_output=True)

    def remove(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def url(self):
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"


def test_a_postgres_restart_gives_clean_errors_then_the_nodes_recover(tmp_path):
    pg = PrivatePostgres(tmp_path)
    nodes = []
    try:
        key = write_key(tmp_path / "secrets.key")
        config = s3_config(unique("blobs")) + f'secrets_key_file = "{key}"\nmetadata_url = "{pg.url}"\n'
        nodes += [Server(tmp_path / f"node{i}", extra_config=config) for i in range(2)]
        nodes[0].start()
        shutil.copy(nodes[0].root_credentials_path, nodes[1].root_credentials_path)
        nodes[1].start()
        root = nodes[0].root
        repo = unique("restart")
        ecr(nodes[0], root).create_repository(repositoryName=repo)
        pw = login_password(nodes[0], root)
        img = make_image(layers=2)
        Registry(nodes[0], pw).push_image(repo, img, "v1")

        # Load: pulls on both nodes while PostgreSQL goes away and comes back.
        stop = threading.Event()
        seen = {"ok": 0, "unavailable": 0, "other": []}

        def pull(node):
            reg = Registry(node, pw)
            while not stop.is_set():
                try:
                    r = reg.get_manifest(repo, "v1")
                except Exception as e:  # a dropped connection is not a clean error
                    seen["other"].append(repr(e))
                    continue
                if r.status_code == 200:
                    assert r.content == img.manifest
                    seen["ok"] += 1
                elif r.status_code == 503:
                    assert oci_error(r)[1] == "UNAVAILABLE", r.text
                    seen["unavailable"] += 1
                else:
                    seen["other"].append((r.status_code, r.text))

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(pull, n) for n in nodes for _ in range(2)]
            deadline = time.monotonic() + 30
            while seen["ok"] < 20:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            pg.stop()
            # An ECR call while the database is down: ServerException, nothing half done.
            down_name = unique("while-down")
            with pytest.raises(Exception) as e:
                ecr(nodes[1], root).create_repository(repositoryName=down_name)
            assert "ServerException" in str(e.value), str(e.value)
            deadline = time.monotonic() + 30
            while seen["unavailable"] < 5:
                assert time.monotonic() < deadline, seen
                time.sleep(0.01)
            pg.start()
            ok_before = seen["ok"]
            deadline = time.monotonic() + 30
            while seen["ok"] < ok_before + 20:
                assert time.monotonic() < deadline, "the nodes did not recover"
                time.sleep(0.01)
            stop.set()
            for f in futures:
                f.result()
        # Uncached requests (the caches may hold the manifest's authorization) work too,
        # and the repository created while down does not exist.
        names = {r["repositoryName"] for n in nodes
                 for r in ecr(n, root).describe_repositories()["repositories"]}
        assert repo in names and down_name not in names
        failures = [line for n in nodes for line in n.stderr_lines if "ERROR" in line or "WARN" in line][:10]
        assert not [o for o in seen["other"] if not isinstance(o, str)], (seen["other"], failures)
        for n in nodes:
            assert n.stop() == 0
    finally:
        for n in nodes:
            if n.proc is not None:
                n.proc.kill()
                n.proc.wait()
        pg.remove()


def embedded(data_dir):
    """A registry as `berth serve` makes it on one machine: SQLite and files in its data
    directory (whatever BERTH_E2E_* say)."""
    return Server(data_dir, extra_config=f'metadata_url = "sqlite://{data_dir / "berth.db"}"\n'
                                         f'blob_url = "file://{data_dir}"\n')


def bucket():
    return boto3.client("s3", endpoint_url=s3_env("ENDPOINT"), region_name="us-east-1",
                        aws_access_key_id=s3_env("ACCESS_KEY_ID"),
                        aws_secret_access_key=s3_env("SECRET_ACCESS_KEY"),
                        config=BotoConfig(s3={"addressing_style": "path"}))


def bucket_keys(prefix):
    keys = []
    pages = bucket().get_paginator("list_objects_v2").paginate(Bucket=s3_env("BUCKET"), Prefix=prefix + "/")
    for page in pages:
        keys += [o["Key"][len(prefix) + 1:] for o in page.get("Contents", [])]
    return keys


def migrate(*args, env=None):
    """Run `berth migrate ARGS...` with the test bucket's credentials in BERTH_S3_* (and
    AWS_* set to keys that must not be used)."""
    env = {**os.environ,
           "BERTH_S3_ACCESS_KEY_ID": s3_env("ACCESS_KEY_ID"),
           "BERTH_S3_SECRET_ACCESS_KEY": s3_env("SECRET_ACCESS_KEY"),
           "AWS_ACCESS_KEY_ID": "AKIAWRONGWRONGWRONG0", "AWS_SECRET_ACCESS_KEY": "wrong",
           **(env or {})}
    return subprocess.run([BIN, "migrate", *args], capture_output=True, text=True, env=env, timeout=300)


def summary(out):
    """(rows copied, rows already there, blobs copied, blobs already there, blobs failed)
    from a run's summary lines."""
    rows = re.search(r"^summary: rows (\d+) copied, (\d+) already there, (\d+) differing$", out.stdout, re.M)
    blobs = re.search(r"^summary: blobs (\d+) copied \(\d+ bytes\), (\d+) already there \(\d+ bytes\), "
                      r"(\d+) failed$", out.stdout, re.M)
    assert rows and blobs, out.stdout + out.stderr
    return int(rows[1]), int(rows[2]), int(blobs[1]), int(blobs[2]), int(blobs[3])


def test_berth_migrate_moves_an_embedded_registry(tmp_path):
    # An embedded registry with identities, policies, images, and an upload in progress.
    old = embedded(tmp_path / "embedded")
    old.start()
    root = old.root
    repo = unique("moved")
    ecr(old, root).create_repository(repositoryName=repo)
    name, creds = old.new_user(policies=[doc(allow("ecr:*"))])
    repo_policy = doc(deny("ecr:DeleteRepository", Principal={"AWS": f"arn:aws:iam::{old.account}:user/{name}"}))
    ecr(old, root).set_repository_policy(repositoryName=repo, policyText=json.dumps(repo_policy))
    pw = login_password(old, creds)
    images = {f"v{i}": make_image(layers=2) for i in range(3)}
    for tag, img in images.items():
        Registry(old, pw).push_image(repo, img, tag)
    pending = os.urandom(100_000)
    r = Registry(old, pw).start_upload(repo)
    assert r.status_code == 202, r.text
    r = Registry(old, pw).patch(r.headers["Location"], pending, start=0)
    assert r.status_code == 202, r.text
    pending_location = r.headers["Location"]
    assert old.stop() == 0
    assert [f.stat().st_size for f in (old.data_dir / "uploads").iterdir()] == [len(pending)]

    # The wrong secrets key: refused before anything is written (exit 2).
    wrong_db = new_database()
    out = migrate("--data-dir", str(old.data_dir), "--to-metadata", postgres_url(wrong_db),
                  "--secrets-key-file", str(write_key(tmp_path / "wrong.key")))
    assert out.returncode == 2, out.stdout + out.stderr
    assert "is not the key the secrets" in out.stderr, out.stderr
    if psql("SELECT to_regclass('public.accounts')", wrong_db).strip():
        assert psql("SELECT count(*) FROM accounts", wrong_db).strip() == "0"

    database = new_database()
    prefix = unique("migrated")
    # Flags, the S3 credentials from BERTH_S3_*.
    args = ["--data-dir", str(old.data_dir),
            "--from-metadata", f"sqlite://{old.data_dir / 'berth.db'}",
            "--to-metadata", postgres_url(database),
            "--from-blobs", f"file://{old.data_dir}",
            "--to-blobs", f"s3://{s3_env('BUCKET')}/{prefix}",
            "--s3-endpoint", s3_env("ENDPOINT"), "--s3-region", "us-east-1", "--s3-allow-http"]
    out = migrate(*args)
    assert out.returncode == 0, out.stdout + out.stderr
    rows, _, blobs, _, failed = summary(out)
    assert rows > 0 and failed == 0
    assert blobs >= 9, out.stdout  # 3 images: a config and 2 layers each
    keys = bucket_keys(prefix)
    for img in images.values():
        for d, _ in img.blobs:
            assert f"blobs/sha256/{d[7:9]}/{d[7:]}" in keys, (d, keys)
    # The upload in progress stayed behind.
    assert not [k for k in keys if not k.startswith("blobs/")], keys

    # Scale-out nodes on the copy, with the embedded registry's secrets key.
    config = (s3_config(prefix) + f'secrets_key_file = "{old.data_dir / "secrets.key"}"\n')
    nodes = [Server(tmp_path / f"node{i}", extra_config=config, database=database) for i in range(2)]

    # Again, pointed at the nodes' own configuration file: nothing left to copy.
    again = migrate("--data-dir", str(old.data_dir), "--config", str(nodes[0].config_path),
                    env={"BERTH_S3_ACCESS_KEY_ID": "", "BERTH_S3_SECRET_ACCESS_KEY": ""})
    assert again.returncode == 0, again.stdout + again.stderr
    rows_again, present, blobs_again, blobs_present, failed = summary(again)
    assert (rows_again, blobs_again, failed) == (0, 0, 0), again.stdout
    assert present == rows and blobs_present == blobs, again.stdout

    for n in nodes:
        shutil.copy(old.root_credentials_path, n.root_credentials_path)
        n.start()
    try:
        # The old credentials and the old user's keys work; every image pulls identically.
        for n in nodes:
            pw_n = login_password(n, creds)
            for tag, img in images.items():
                dest = tmp_path / f"pull-{n.port}-{tag}"
                dg = tmp_path / "digest"
                skopeo_pull(n, pw_n, repo, tag, dest, extra=["--digestfile", str(dg)])
                assert dg.read_text().strip() == img.digest
                for d, b in img.blobs:
                    assert oci_blob(dest, d) == b
            # The upload in progress is not there.
            r = Registry(n, pw_n).request("GET", pending_location)
            assert r.status_code == 404 and oci_error(r)[1] == "BLOB_UPLOAD_UNKNOWN", r.text
        out = nodes[1].cli(root, "iam", "get-user", "--user-name", name)
        assert out["User"]["UserName"] == name
        got = ecr(nodes[0], root).get_repository_policy(repositoryName=repo)
        assert json.loads(got["policyText"]) == repo_policy
        assert client_error(ecr(nodes[1], creds).delete_repository, repositoryName=repo)[0] == "AccessDeniedException"
    finally:
        for n in nodes:
            n.stop()


def test_berth_migrate_copies_no_corrupt_blob(tmp_path):
    """A layer that rotted in the data directory: the run exits 1 naming it, and the
    bucket never gets an object under its name; the other blobs are copied."""
    old = embedded(tmp_path / "small")
    old.start()
    repo = unique("rotten")
    ecr(old, old.root).create_repository(repositoryName=repo)
    img = make_image(layers=2)
    Registry(old, login_password(old, old.root)).push_image(repo, img, "v1")
    assert old.stop() == 0
    layer = img.blobs[1][0]
    path = old.data_dir / "blobs" / "sha256" / layer[7:9] / layer[7:]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))

    prefix = unique("rotten")
    out = migrate("--data-dir", str(old.data_dir), "--to-metadata", postgres_url(new_database()),
                  "--to-blobs", f"s3://{s3_env('BUCKET')}/{prefix}",
                  "--s3-endpoint", s3_env("ENDPOINT"), "--s3-allow-http")
    assert out.returncode == 1, out.stdout + out.stderr
    assert layer in out.stderr and "corrupt at the source" in out.stderr, out.stderr
    _, _, copied, _, failed = summary(out)
    assert failed == 1 and copied >= 2, out.stdout
    keys = bucket_keys(prefix)
    assert not [k for k in keys if layer[7:] in k], keys
    assert not [k for k in keys if not k.startswith("blobs/")], keys
    for d, _ in (img.blobs[0], img.blobs[2]):
        assert f"blobs/sha256/{d[7:9]}/{d[7:]}" in keys, (d, keys)
