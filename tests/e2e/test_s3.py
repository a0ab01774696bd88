"""Blobs in an S3 bucket (s3s-fs, started by scripts/with-s3): `berth serve --blob-url
s3://…`, two serve processes sharing one data directory's metadata and one bucket, so an
upload started on one node is continued on the other; skopeo push and pull; blob GETs
redirected to presigned URLs of the bucket. Without the BERTH_TEST_S3_* variables these
tests fail, saying what to set, unless BERTH_TEST_S3=skip."""

import json
import os
import subprocess
import time
import uuid

import boto3
import pytest
import requests
from botocore.config import Config

from test_docker import docker, run  # noqa: F401  (the Docker engine fixture)

from berth import (Registry, Server, login_password, make_image, oci_blob, read_oci_layout, sha256,
                   skopeo_pull, skopeo_push, unique, until, write_oci_layout)


def s3_settings():
    if not os.environ.get("BERTH_TEST_S3_ENDPOINT"):
        if os.environ.get("BERTH_TEST_S3") == "skip":
            pytest.skip("BERTH_TEST_S3=skip")
        pytest.fail("the S3 tests need an S3 server: run them under scripts/with-s3, or set "
                    "BERTH_TEST_S3=skip to skip them knowingly")
    return {k: os.environ[f"BERTH_TEST_S3_{k.upper()}"]
            for k in ("endpoint", "bucket", "access_key_id", "secret_access_key")}


@pytest.fixture(scope="module")
def s3():
    s = s3_settings()
    s["prefix"] = f"e2e-{uuid.uuid4().hex[:12]}/blobs-here"
    s["client"] = boto3.client(
        "s3", endpoint_url=s["endpoint"], region_name="us-east-1",
        aws_access_key_id=s["access_key_id"], aws_secret_access_key=s["secret_access_key"],
        config=Config(s3={"addressing_style": "path"}))
    return s


def blob_config(s3, redirect=False, with_keys=True):
    text = (f'blob_url = "s3://{s3["bucket"]}/{s3["prefix"]}"\n'
            f's3_endpoint = "{s3["endpoint"]}"\n'
            "s3_allow_http = true\n")
    if with_keys:
        text += (f's3_access_key_id = "{s3["access_key_id"]}"\n'
                 f's3_secret_access_key = "{s3["secret_access_key"]}"\n')
    if redirect:
        text += "blob_redirect = true\n"
    return text


@pytest.fixture(scope="module")
def nodes(tmp_path_factory, s3):
    """Two `berth serve` processes on one data directory (one SQLite metadata store) and
    one bucket prefix: A with the credentials in its config, B with them in BERTH_S3_*
    (and AWS_* set to something else, which must not be used)."""
    data = tmp_path_factory.mktemp("s3nodes") / "data"
    a = Server(data, extra_config=blob_config(s3)).start()
    b = Server(data, extra_config=blob_config(s3, with_keys=False))
    saved = dict(os.environ)
    os.environ.update({
        "BERTH_S3_ACCESS_KEY_ID": s3["access_key_id"],
        "BERTH_S3_SECRET_ACCESS_KEY": s3["secret_access_key"],
        "AWS_ACCESS_KEY_ID": "AKIAWRONGWRONGWRONG0",
        "AWS_SECRET_ACCESS_KEY": "wrong",
    })
    try:
        b.start()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    yield a, b
    for s in (a, b):
        rc = s.stop()
        assert rc == 0, f"berth serve exited {rc}:\n" + "".join(s.stderr_lines[-30:])


def bucket_keys(s3, under):
    prefix = f'{s3["prefix"]}/{under}'
    keys = []
    for page in s3["client"].get_paginator("list_objects_v2").paginate(Bucket=s3["bucket"], Prefix=prefix):
        keys += [o["Key"][len(s3["prefix"]) + 1:] for o in page.get("Contents", [])]
    return keys


def new_repo(server):
    name = unique("s3repo")
    server.client("ecr", server.root).create_repository(repositoryName=name)
    return name


def test_ready_checks_the_bucket(nodes, tmp_path, s3):
    a, b = nodes
    for s in (a, b):
        r = requests.get(f"{s.url}/readyz", timeout=10)
        assert r.status_code == 200, r.text
    broken = Server(tmp_path / "data", extra_config=blob_config({**s3, "bucket": "no-such-bucket"})).start()
    try:
        r = requests.get(f"{broken.url}/readyz", timeout=30)
        assert r.status_code == 503, r.text
        assert "blob store" in r.text
    finally:
        broken.stop()


def test_skopeo_push_on_one_node_pull_from_the_other(nodes, s3, tmp_path):
    a, b = nodes
    repo = new_repo(a)
    img = make_image(layers=2, size=3 << 20)
    write_oci_layout(tmp_path / "src", {"v1": img})
    skopeo_push(a, login_password(a, a.root), tmp_path / "src", "v1", repo)

    dg = tmp_path / "digest"
    skopeo_pull(b, login_password(b, b.root), repo, "v1", tmp_path / "dst", extra=["--digestfile", str(dg)])
    assert dg.read_text().strip() == img.digest
    entry, manifest = read_oci_layout(tmp_path / "dst", "pulled")
    assert entry["digest"] == img.digest and manifest == img.manifest
    keys = set(bucket_keys(s3, "blobs/sha256/"))
    for d, blob in img.blobs:
        assert oci_blob(tmp_path / "dst", d) == blob, d
        hex_ = d.split(":")[1]
        assert f"blobs/sha256/{hex_[:2]}/{hex_}" in keys
    # Pushed again to another repository: stored once.
    other = new_repo(b)
    skopeo_push(b, login_password(b, b.root), tmp_path / "src", "v1", other)
    assert set(bucket_keys(s3, "blobs/sha256/")) == keys
    assert bucket_keys(s3, "_uploads/") == []


def test_chunked_upload_alternating_between_nodes(nodes, s3):
    a, b = nodes
    ra, rb = Registry(a, login_password(a, a.root)), Registry(b, login_password(b, b.root))
    repo = new_repo(a)
    data = os.urandom(20 << 20)
    mib = 1 << 20
    r = ra.start_upload(repo)
    assert r.status_code == 202, r.text
    loc = r.headers["Location"]
    r = rb.patch(loc, data[:9 * mib], start=0)
    assert r.status_code == 202, r.text
    assert r.headers["Range"] == f"0-{9 * mib - 1}"
    # A wrong offset on the other node: 416, nothing changes.
    r = ra.patch(r.headers["Location"], data[:10], start=5)
    assert r.status_code == 416, r.text
    r = ra.patch(r.headers.get("Location", loc), data[9 * mib:18 * mib], start=9 * mib)
    assert r.status_code == 202, r.text
    assert r.headers["Range"] == f"0-{18 * mib - 1}"
    r = rb.request("GET", loc)
    assert r.status_code == 204 and r.headers["Range"] == f"0-{18 * mib - 1}"
    r = rb.finish(loc, sha256(data), data[18 * mib:])
    assert r.status_code == 201, r.text
    for reg in (ra, rb):
        got = reg.get_blob(repo, sha256(data))
        assert got.status_code == 200 and got.content == data
        part = reg.get_blob(repo, sha256(data), headers={"Range": f"bytes={8 * mib - 2}-{8 * mib + 1}"})
        assert part.status_code == 206 and part.content == data[8 * mib - 2:8 * mib + 2]
    assert bucket_keys(s3, "_uploads/") == []

    # The ECR layer API, part by part on alternating nodes.
    layer = os.urandom(7 * mib + 3)
    ea, eb = a.client("ecr", a.root), b.client("ecr", b.root)
    up = ea.initiate_layer_upload(repositoryName=repo)["uploadId"]
    cut = 6 * mib
    eb.upload_layer_part(repositoryName=repo, uploadId=up, partFirstByte=0, partLastByte=cut - 1,
                         layerPartBlob=layer[:cut])
    ea.upload_layer_part(repositoryName=repo, uploadId=up, partFirstByte=cut,
                         partLastByte=len(layer) - 1, layerPartBlob=layer[cut:])
    done = eb.complete_layer_upload(repositoryName=repo, uploadId=up, layerDigests=[sha256(layer)])
    assert done["layerDigest"] == sha256(layer)
    assert ra.get_blob(repo, sha256(layer)).content == layer


def test_blob_redirect_followed_by_clients(nodes, s3, tmp_path):
    a, _ = nodes
    # A third node on the same metadata and bucket, answering blob GETs with redirects.
    c = Server(a.data_dir, extra_config=blob_config(s3, redirect=True)).start()
    try:
        repo = new_repo(a)
        img = make_image(layers=2, size=1 << 20)
        write_oci_layout(tmp_path / "src", {"v1": img})
        skopeo_push(a, login_password(a, a.root), tmp_path / "src", "v1", repo)
        rc = Registry(c, login_password(c, c.root))
        d, blob = img.blobs[0]
        r = rc.get_blob(repo, d)
        assert r.status_code == 307, r.text
        assert r.headers["Location"].startswith(s3["endpoint"] + "/"), r.headers["Location"]
        assert "X-Amz-Signature=" in r.headers["Location"]
        assert requests.get(r.headers["Location"], timeout=30).content == blob
        # HEAD is answered by Berth itself.
        h = rc.head_blob(repo, d)
        assert h.status_code == 200 and int(h.headers["Content-Length"]) == len(blob)
        # Without credentials: still 401, no redirect.
        assert Registry(c).get_blob(repo, d).status_code == 401

        dg = tmp_path / "digest"
        skopeo_pull(c, login_password(c, c.root), repo, "v1", tmp_path / "dst",
                    extra=["--digestfile", str(dg)])
        assert dg.read_text().strip() == img.digest
        for bd, bb in img.blobs:
            assert oci_blob(tmp_path / "dst", bd) == bb, bd
    finally:
        rc_ = c.stop()
        assert rc_ == 0, "".join(c.stderr_lines[-30:])


def test_docker_push_then_pull_through_redirects(nodes, s3, tmp_path, docker):
    env, sock = docker
    a, _ = nodes
    c = Server(a.data_dir, extra_config=blob_config(s3, redirect=True)).start()
    try:
        repo = new_repo(a)
        image = make_image(layers=2, size=512 * 1024)
        write_oci_layout(tmp_path / "src", {"v1": image})
        subprocess.run(["skopeo", "--insecure-policy", "copy", "--dest-daemon-host", f"unix://{sock}",
                        f"oci:{tmp_path / 'src'}:v1", "docker-daemon:local/s3app:v1"],
                       check=True, capture_output=True)
        for node in (a, c):
            host = f"127.0.0.1:{node.port}"
            run(["docker", "login", "--username", "AWS", "--password-stdin", host], env,
                input=login_password(node, node.root))
        pushed_ref = f"127.0.0.1:{a.port}/{repo}:v1"
        run(["docker", "tag", "local/s3app:v1", pushed_ref], env)
        pushed = run(["docker", "push", pushed_ref], env)
        digest = [w for w in pushed.stdout.split() if w.startswith("sha256:")][-1]
        run(["docker", "rmi", pushed_ref, "local/s3app:v1"], env)
        # Pulled through the redirecting node: the engine follows the 307s to the bucket.
        pulled_ref = f"127.0.0.1:{c.port}/{repo}@{digest}"
        run(["docker", "pull", pulled_ref], env)
        inspected = json.loads(run(["docker", "image", "inspect", pulled_ref], env).stdout)
        assert any(d.endswith(digest) for d in inspected[0]["RepoDigests"]), inspected[0]["RepoDigests"]
        # Blob GETs were answered with redirects (only that node makes them; the nodes
        # share one audit log).
        def redirected(lines):
            return [l for l in lines if l.get("status") == 307]
        assert redirected(c.audit_lines(until=redirected)), "no blob GET was redirected"
    finally:
        rc_ = c.stop()
        assert rc_ == 0, "".join(c.stderr_lines[-30:])


def test_abandoned_upload_is_removed_from_the_bucket(tmp_path_factory, s3):
    """The expire-uploads job (whichever node holds its lease) aborts an idle session's
    multipart upload and removes its staging objects; a session in use stays."""
    own = {**s3, "prefix": s3["prefix"] + "-idle"}
    config = blob_config(own) + "job_lease_seconds = 3\nclean_interval_seconds = 0.5\nupload_idle_seconds = 2\n"
    data = tmp_path_factory.mktemp("s3idle") / "data"
    a = Server(data, extra_config=config).start()
    b = Server(data, extra_config=config).start()
    try:
        repo = new_repo(a)
        reg = Registry(a, login_password(a, a.root))
        location = reg.start_upload(repo).headers["Location"]
        assert reg.patch(location, os.urandom(9 << 20), start=0).status_code == 202
        upload_id = location.rstrip("/").split("/")[-1].split("?")[0]
        with a.db() as db:
            (state,) = db.execute("SELECT state FROM uploads WHERE id = ?", (upload_id,)).fetchone()
        multipart = json.loads(state)["upload"]
        key = f'{own["prefix"]}/_uploads/{upload_id}/blob'

        def parts():
            return own["client"].list_parts(Bucket=own["bucket"], Key=key, UploadId=multipart).get("Parts", [])
        assert len(parts()) == 1
        assert bucket_keys(own, f"_uploads/{upload_id}/")
        busy = Registry(b, login_password(b, b.root))
        busy_location = busy.start_upload(repo).headers["Location"]
        sent = 0
        deadline = time.time() + 30
        while True:
            r = busy.patch(busy_location, b"y" * 10, start=sent)
            assert r.status_code == 202, f"the upload in use was removed: {r.status_code} {r.text}"
            sent += 10
            if reg.request("GET", location).status_code == 404 \
                    and not bucket_keys(own, f"_uploads/{upload_id}/") and not parts():
                break
            assert time.time() < deadline, "the abandoned upload was not removed from the bucket"
            time.sleep(0.05)
        assert busy.request("GET", busy_location).status_code == 204
        assert bucket_keys(own, "_uploads/"), "the upload in use lost its staging object"
    finally:
        for s in (a, b):
            assert s.stop() == 0, "".join(s.stderr_lines[-30:])


def metric(server, name, label=""):
    """The sum of the samples of metric `name` in /metrics whose labels include `label`."""
    r = requests.get(server.url + "/metrics", timeout=10)
    assert r.status_code == 200, r.text
    total = 0.0
    for line in r.text.splitlines():
        if (line.startswith(name + " ") or line.startswith(name + "{")) and label in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def cache_config(s3, directory, redirect=False, gib=0.25):
    return blob_config(s3, redirect=redirect) + f'blob_cache_gib = {gib}\nblob_cache_dir = "{directory}"\n'


def test_a_node_s_blob_cache_serves_what_it_received_and_read_without_the_bucket(nodes, s3, tmp_path):
    """blob_cache_gib: a node keeps the blobs it receives whole (write-through) and those it
    serves whole (filled on a miss) on its own disk and serves them from there, before
    redirecting. Shown by removing the objects from the bucket: the caching nodes still
    serve every layer, byte for byte, a node without a cache cannot."""
    a, b = nodes
    # C: a cache and redirects; D: a cache, no redirects. A and B have no cache. (Servers
    # on one data directory share its config file: each is started before the next is made.)
    started = []
    try:
        c = Server(a.data_dir, extra_config=cache_config(s3, tmp_path / "cache-c", redirect=True)).start()
        started.append(c)
        d = Server(a.data_dir, extra_config=cache_config(s3, tmp_path / "cache-d")).start()
        started.append(d)
        # One process per cache directory: a second on C's refuses to start, saying why.
        twin = Server(a.data_dir, extra_config=cache_config(s3, tmp_path / "cache-c"))
        with pytest.raises(RuntimeError, match="in use by another process"):
            twin.start()

        # Pushed through C: every blob (config and layers) kept by C as it arrives.
        repo = new_repo(a)
        img = make_image(layers=2, size=3 << 20)
        write_oci_layout(tmp_path / "src", {"v1": img})
        skopeo_push(c, login_password(c, c.root), tmp_path / "src", "v1", repo)
        blobs = len(img.blobs)
        until("C holds every blob pushed through it", 20,
              lambda: metric(c, "berth_blob_cache_blobs") == blobs)
        assert metric(c, "berth_blob_cache_fills_total") == blobs
        assert metric(c, "berth_blob_cache_bytes") == sum(len(b_) for _, b_ in img.blobs)

        # Pushed through B (no cache), pulled through D: each whole read fills D's cache.
        other = new_repo(a)
        img2 = make_image(layers=2, size=2 << 20)
        write_oci_layout(tmp_path / "src2", {"v1": img2})
        skopeo_push(b, login_password(b, b.root), tmp_path / "src2", "v1", other)
        skopeo_pull(d, login_password(d, d.root), other, "v1", tmp_path / "first")
        until("D holds every blob it served", 20,
              lambda: metric(d, "berth_blob_cache_blobs") == len(img2.blobs))

        # The bucket loses every blob of both images.
        for dg, _ in img.blobs + img2.blobs:
            hex_ = dg.split(":")[1]
            s3["client"].delete_object(Bucket=s3["bucket"],
                                       Key=f'{s3["prefix"]}/blobs/sha256/{hex_[:2]}/{hex_}')
        # C serves its blobs itself instead of redirecting to the bucket (which has none).
        rc = Registry(c, login_password(c, c.root))
        dg0, blob0 = img.blobs[0]
        r = rc.get_blob(repo, dg0)
        assert r.status_code == 200 and r.content == blob0, r.status_code
        r = rc.get_blob(repo, dg0, headers={"Range": "bytes=10-19"})
        assert r.status_code == 206 and r.content == blob0[10:20], r.status_code
        assert r.headers["Content-Range"] == f"bytes 10-19/{len(blob0)}"
        hits = metric(c, "berth_blob_cache_requests_total", 'result="hit"')
        assert hits >= 2
        for node, name, image, dest in ((c, repo, img, "from-c"), (d, other, img2, "from-d")):
            dgf = tmp_path / f"{dest}.digest"
            skopeo_pull(node, login_password(node, node.root), name, "v1", tmp_path / dest,
                        extra=["--digestfile", str(dgf)])
            assert dgf.read_text().strip() == image.digest
            for bd, bb in image.blobs:
                assert oci_blob(tmp_path / dest, bd) == bb, bd
        assert metric(c, "berth_blob_cache_requests_total", 'result="hit"') >= hits + len(img.blobs)
        # A node without a cache has nothing to serve them from.
        assert Registry(b, login_password(b, b.root)).get_blob(other, img2.blobs[0][0]).status_code != 200
    finally:
        for s in started:
            rc_ = s.stop()
            assert rc_ == 0, "".join(s.stderr_lines[-30:])
