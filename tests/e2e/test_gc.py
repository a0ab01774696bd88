"""Garbage collection, online (registry/gc.rs): deletes free the blob store after the grace
period, `berth gc` says what it deletes (or would) and the bytes reclaimed, the collector
racing pushes, mounts and deletes across repositories and accounts never deletes what an
image needs, and a collector killed mid-sweep leaves nothing referenced missing. Runs on
the embedded default and, in the scale-out pass, on PostgreSQL + S3 (counting the objects
in the bucket)."""

import json
import os
import random
import re
import signal
import subprocess
import threading
import time

import pytest

from berth import (BIN, OciImage, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, Registry, Server, bucket_client,
                   descriptor, login_password, make_image, oci_error, random_layer, read_oci_layout,
                   sha256, skopeo_pull, unique, until)


def ecr(server, creds=None):
    return server.client("ecr", creds or server.root)


def image_of(layers):
    """An OCI image of the given layers (gzip bytes) and a config of its own."""
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Env": [f"NONCE={random.random()}"]},
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": descriptor(OCI_CONFIG, config),
                "layers": [descriptor(OCI_LAYER, gz) for gz in layers]}
    return OciImage(config, list(layers), json.dumps(manifest).encode())


def pulls(server, password, repo, img, tmp_path, host=None):
    """skopeo pulls the image by digest (through the registry host `host`, see
    berth.through_host), with the same manifest and blobs."""
    out = tmp_path / f"pull-{unique('p')}"
    skopeo_pull(server, password, repo, img.digest, out, host=host)
    entry, manifest = read_oci_layout(out, "pulled")
    assert entry["digest"] == img.digest and manifest == img.manifest
    for d, data in img.blobs:
        assert (out / "blobs" / "sha256" / d.split(":")[1]).read_bytes() == data, (repo, d)


def blobs_of(*images):
    """The digests the images reference (configs and layers), from their manifests."""
    return {d for img in images for d, _ in img.blobs}


def push_retrying(reg, repo, img, ref=None, tries=5):
    """Push an image as a client does against a collector with no grace: a layer it
    uploaded can be collected before the manifest references it, which the manifest's
    MANIFEST_BLOB_UNKNOWN says; then push again."""
    for _ in range(tries):
        for d, data in img.blobs:
            r = reg.push_blob(repo, data, d)
            assert r.status_code == 201, (r.status_code, r.text)
        r = reg.put_manifest(repo, ref or img.digest, img.manifest)
        if r.status_code == 201:
            return
        assert oci_error(r)[1] == "MANIFEST_BLOB_UNKNOWN", (r.status_code, r.text)
    raise AssertionError(f"{repo}: the manifest was refused {tries} times")


@pytest.fixture
def node(tmp_path):
    s = Server(tmp_path / "data", extra_config="gc_interval_seconds = 86400\n").start()
    yield s
    rc = s.stop()
    assert rc == 0, "".join(s.stderr_lines[-30:])


def test_deletes_free_the_blob_store_after_the_grace_period(node, tmp_path):
    pw = login_password(node, node.root)
    reg = Registry(node, pw)
    shared = random_layer(8192)[0]
    keep = image_of([shared, random_layer(8192)[0]])
    drop = image_of([shared, random_layer(20000)[0]])
    other = image_of([shared])
    doomed = make_image(layers=2, size=5000)
    a, b, c = unique("gc-a"), unique("gc-b"), unique("gc-c")
    for name in (a, b, c):
        ecr(node).create_repository(repositoryName=name)
    reg.push_image(a, keep, "keep")
    reg.push_image(a, drop, "drop")
    reg.push_image(b, other, "other")
    reg.push_image(c, doomed, "v1")
    # A blob uploaded and never referenced.
    loose = random_layer(3000)[0]
    assert reg.push_blob(a, loose).status_code == 201
    before = node.stored_blobs()
    assert node.referenced_blobs() <= before

    ecr(node).batch_delete_image(repositoryName=a, imageIds=[{"imageTag": "drop"}])
    ecr(node).delete_repository(repositoryName=c, force=True)
    # Only what the deleted images alone used, and the loose blob, are garbage.
    garbage = ({d for d, _ in drop.blobs} | {d for d, _ in doomed.blobs} | {sha256(loose)}) - {sha256(shared)}

    # With the default grace (an hour) a first run only marks the holdings; the blobs of
    # the deleted repository are held by nothing and go at once.
    out = node.gc()
    assert "released 0 repository holdings" in out.stdout, out.stdout
    assert node.stored_blobs() == before - {d for d, _ in doomed.blobs}

    # A dry run with no grace names what a run would delete, and deletes nothing.
    stored = node.stored_blobs()
    out = node.gc("--dry-run", "--grace", "0")
    would = set(re.findall(r"would delete blob (sha256:[0-9a-f]{64})", out.stdout))
    assert would == garbage - {d for d, _ in doomed.blobs}, out.stdout
    assert node.stored_blobs() == stored
    released = set(re.findall(r"would release (sha256:[0-9a-f]{64}) held by", out.stdout))
    assert released == would

    out = node.gc("--grace", "0")
    deleted = dict(re.findall(r"^delete blob (sha256:[0-9a-f]{64}) \((\d+) bytes", out.stdout, re.M))
    assert set(deleted) == would, out.stdout
    sizes = {d: len(data) for d, data in drop.blobs}
    sizes[sha256(loose)] = len(loose)
    assert all(int(n) == sizes[d] for d, n in deleted.items())
    assert f"{sum(int(n) for n in deleted.values())} bytes" in out.stdout.splitlines()[-1]
    # Exactly the referenced set is left, and what is left still pulls.
    assert node.stored_blobs() == node.referenced_blobs()
    pulls(node, pw, a, keep, tmp_path)
    pulls(node, pw, b, other, tmp_path)
    # The deleted image's layer is gone from its repository (HEAD) and can be pushed again.
    only_drop = next(d for d, _ in drop.blobs[1:] if d != sha256(shared))
    assert reg.head_blob(a, only_drop).status_code == 404
    reg.push_image(a, drop, "again")
    pulls(node, pw, a, drop, tmp_path)
    # A second run finds nothing more.
    out = node.gc("--grace", "0")
    assert out.stdout.splitlines()[-1].startswith("released 0 repository holdings; deleted 0 blobs")


def staged(node, upload_id):
    """What holds an upload session's bytes: its staging file in the data directory, or
    its objects in the bucket."""
    if node.blob_prefix is None:
        return [p for p in (node.data_dir / "uploads").iterdir() if upload_id in p.name]
    return node.bucket_keys(f"_uploads/{upload_id}/")


def test_gc_removes_abandoned_uploads(node):
    """`berth gc` removes the upload sessions untouched for upload_idle_seconds (or
    --upload-idle) with their staged data, as the server's expire-uploads job does (the
    node's own runs with an hour, the default); a dry run names them and removes nothing;
    a session in use stays and completes."""
    reg = Registry(node, login_password(node, node.root))
    repo = unique("gc-idle")
    ecr(node).create_repository(repositoryName=repo)

    def started():
        r = reg.start_upload(repo)
        assert r.status_code == 202, r.text
        location = r.headers["Location"]
        data = os.urandom(1000)
        assert reg.patch(location, data, start=0).status_code == 202
        return location, location.rstrip("/").split("/")[-1].split("?")[0], data

    def backdate(upload_id, ms):
        node.sql("UPDATE uploads SET updated_at = updated_at - ? WHERE id = ?", (ms, upload_id))

    old, old_id, _ = started()
    busy, busy_id, busy_data = started()
    assert staged(node, old_id) and staged(node, busy_id)
    backdate(old_id, 7_200_000)  # untouched for two hours; upload_idle_seconds is one

    out = node.gc("--dry-run")
    would = re.findall(r"^would remove upload (\S+) to (\d+)/(\S+) \(untouched for (\d+) s\)$", out.stdout, re.M)
    assert [w[:3] for w in would] == [(old_id, node.account, repo)], out.stdout
    assert int(would[0][3]) >= 7200
    assert "would remove 1 abandoned uploads" in out.stdout
    assert reg.request("GET", old).status_code == 204 and staged(node, old_id)

    out = node.gc()
    assert re.findall(r"^remove upload (\S+) to", out.stdout, re.M) == [old_id], out.stdout
    assert "removed 1 abandoned uploads" in out.stdout
    r = reg.request("GET", old)
    assert (r.status_code, oci_error(r)[1]) == (404, "BLOB_UPLOAD_UNKNOWN")
    assert not staged(node, old_id)
    # The session in use goes on and completes.
    rest = os.urandom(500)
    r = reg.finish(busy, sha256(busy_data + rest), rest)
    assert r.status_code == 201, r.text
    assert reg.head_blob(repo, sha256(busy_data + rest)).status_code == 200

    # --upload-idle instead of the configuration's.
    mid, mid_id, _ = started()
    backdate(mid_id, 600_000)
    assert "removed 0 abandoned uploads" in node.gc().stdout
    assert reg.request("GET", mid).status_code == 204
    out = node.gc("--upload-idle", "300")
    assert "removed 1 abandoned uploads" in out.stdout, out.stdout
    assert reg.request("GET", mid).status_code == 404 and not staged(node, mid_id)
    out = node.gc("--upload-idle", "0", check=False)
    assert out.returncode != 0
    assert "upload_idle_seconds 0 is not a number of seconds between 1 and 2592000" in out.stderr

    if node.blob_prefix is None:
        # A staging file no record names (a crash between writing it and recording the
        # session), last written over upload_idle_seconds ago.
        stray = node.data_dir / "uploads" / "0b6d3c52-2b1e-4c4e-9d33-2f1a4f0e7a11"
        stray.write_bytes(b"left behind")
        two_hours_ago = time.time() - 7200
        os.utime(stray, (two_hours_ago, two_hours_ago))
        out = node.gc()
        assert "removed 1 idle staging files" in out.stdout, out.stdout
        assert not stray.exists()


@pytest.fixture
def eager(tmp_path):
    """A server whose own jobs reclaim at once: the collector every second with no grace,
    lifecycle policies every half second."""
    s = Server(tmp_path / "data", extra_config="gc_interval_seconds = 1\ngc_grace_seconds = 0\n"
               "lifecycle_interval_seconds = 0.5\njob_lease_seconds = 2\n").start()
    yield s
    rc = s.stop()
    assert rc == 0, "".join(s.stderr_lines[-30:])


def test_the_job_frees_the_blobs_of_a_manifest_deleted(eager, tmp_path):
    """DELETE /v2/<name>/manifests/<digest>, then the server's gc job (not `berth gc`)
    deletes the blobs only that image referenced: the blob store holds exactly what the
    images left reference, and they pull."""
    pw = login_password(eager, eager.root)
    reg = Registry(eager, pw)
    name = unique("gc-job")
    ecr(eager).create_repository(repositoryName=name)
    shared = random_layer(6000)[0]
    keep = image_of([shared, random_layer(5000)[0]])
    drop = image_of([shared, random_layer(7000)[0], random_layer(3000)[0]])
    push_retrying(reg, name, keep, "keep")
    push_retrying(reg, name, drop)
    until("the blob store holds both images", 30, lambda: eager.stored_blobs() == blobs_of(keep, drop))
    r = reg.delete_manifest(name, drop.digest)
    assert r.status_code == 202, r.text
    assert reg.get_manifest(name, drop.digest).status_code == 404
    until("the gc job deletes what only the deleted image referenced", 30,
          lambda: eager.stored_blobs() == blobs_of(keep))
    pulls(eager, pw, name, keep, tmp_path)


def test_the_job_frees_the_blobs_of_images_a_lifecycle_policy_expired(eager, tmp_path):
    """The lifecycle job expires images (keep the newest `v*`), then the gc job deletes the
    blobs only they referenced."""
    pw = login_password(eager, eager.root)
    reg = Registry(eager, pw)
    name = unique("gc-lifecycle")
    c = ecr(eager)
    c.create_repository(repositoryName=name)
    shared = random_layer(6000)[0]
    images = [image_of([shared, random_layer(4000 + 100 * i)[0]]) for i in range(3)]
    other = image_of([random_layer(2000)[0]])  # not selected: tagged otherwise
    for i, img in enumerate(images):
        push_retrying(reg, name, img, f"v{i}")
        # Pushed a minute apart, oldest first.
        eager.sql("UPDATE images SET pushed_at = pushed_at - ? WHERE repository = ? AND digest = ?",
                  ((3 - i) * 60_000, name, img.digest))
    push_retrying(reg, name, other, "stable")
    until("the blob store holds every image", 30, lambda: eager.stored_blobs() == blobs_of(*images, other))
    c.put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=json.dumps({"rules": [
        {"rulePriority": 1, "selection": {"tagStatus": "tagged", "tagPrefixList": ["v"],
                                          "countType": "imageCountMoreThan", "countNumber": 1},
         "action": {"type": "expire"}}]}))
    until("the lifecycle job expires v0 and v1", 30, lambda: {
        i["imageDigest"] for i in c.list_images(repositoryName=name)["imageIds"]} == {images[2].digest, other.digest})
    until("the gc job deletes what only the expired images referenced", 30,
          lambda: eager.stored_blobs() == blobs_of(images[2], other))
    pulls(eager, pw, name, images[2], tmp_path)
    pulls(eager, pw, name, other, tmp_path)


def test_the_blob_delete_endpoint_says_blobs_are_collected(node):
    reg = Registry(node, login_password(node, node.root))
    name = unique("gc-del")
    ecr(node).create_repository(repositoryName=name)
    img = make_image(layers=1)
    reg.push_image(name, img, "v1")
    r = reg.request("DELETE", f"/v2/{name}/blobs/{img.blobs[1][0]}")
    status, code, message = oci_error(r)
    assert (status, code) == (405, "UNSUPPORTED")
    assert "garbage collector" in message and "gc_grace_seconds" in message


def test_gc_racing_pushes_mounts_and_deletes_never_deletes_what_an_image_needs(tmp_path):
    """Six pushers sharing layers across repositories and two accounts, cross-repository
    mounts, deletes of other images holding the same layers, and the collector running all
    along (the server's job every second with a grace of 1 s, and `berth gc --grace 0` in
    a loop) for a bounded time; then the images that exist are exactly those pushed and not
    deleted, each pulls with skopeo with its digest and bytes (account B's through B's
    registry host), and a final collection leaves exactly the blobs their manifests
    reference."""
    s = Server(tmp_path / "data", extra_config="gc_interval_seconds = 1\ngc_grace_seconds = 1\n"
               "job_lease_seconds = 3\n").start()
    try:
        b = s.account_create()
        host_b = f"{b.account_id}.dkr.ecr.localhost:{s.port}"
        pw_a, pw_b = login_password(s, s.root), login_password(s, b)
        repos_a = [unique("race-a") for _ in range(3)]
        repos_b = [unique("race-b") for _ in range(2)]
        for name in repos_a:
            ecr(s).create_repository(repositoryName=name)
        for name in repos_b:
            ecr(s, b).create_repository(repositoryName=name)
        layers = [random_layer(2048 + 512 * i)[0] for i in range(8)]
        stop = threading.Event()
        pushed = []  # (host, password, repo, image): pushed and not deleted
        lock = threading.Lock()
        errors = []
        outcomes = {"pushed": 0, "refused": 0, "mounted": 0, "deleted": 0, "gc runs": 0}

        def pusher(host, password, repos, seed):
            rnd = random.Random(seed)
            reg = Registry(s, password, host=host)
            while not stop.is_set():
                if len(pushed) >= 30:
                    stop.wait(0.02)  # the deleter's turn: the pulls at the end stay few
                    continue
                img = image_of(rnd.sample(layers, rnd.randint(1, 3)))
                repo = rnd.choice(repos)
                ok = True
                for d, data in img.blobs:
                    if reg.head_blob(repo, d).status_code == 200:
                        continue  # as clients do: skip what the repository has
                    r = reg.push_blob(repo, data, d)
                    if r.status_code != 201:
                        errors.append(("blob", r.status_code, r.text))
                        ok = False
                if not ok:
                    continue
                r = reg.put_manifest(repo, f"t{rnd.randint(0, 5)}", img.manifest)
                if r.status_code == 201:
                    with lock:
                        pushed.append((host, password, repo, img))
                        outcomes["pushed"] += 1
                elif oci_error(r)[1] == "MANIFEST_BLOB_UNKNOWN":
                    # A layer checked, then released by the collector (grace 0): a clean
                    # refusal, never an image without its layer.
                    outcomes["refused"] += 1
                else:
                    errors.append(("manifest", r.status_code, r.text))

        def mounter():
            rnd = random.Random(7)
            reg = Registry(s, pw_a)
            while not stop.is_set():
                src, dst = rnd.sample(repos_a, 2)
                d = sha256(rnd.choice(layers))
                r = reg.request("POST", f"/v2/{dst}/blobs/uploads/", params={"mount": d, "from": src})
                if r.status_code == 201:
                    outcomes["mounted"] += 1
                elif r.status_code == 202:
                    reg.request("DELETE", r.headers["Location"])
                else:
                    errors.append(("mount", r.status_code, r.text))

        def deleter():
            # Deletes all but half a dozen images of each account (chosen at random), a
            # repository's at once, so that the pulls at the end stay few and both
            # accounts keep some.
            rnd = random.Random(11)
            while not stop.wait(0.1):
                with lock:
                    rnd.shuffle(pushed)
                    kept, victims, per_account = [], [], {}
                    for item in pushed:
                        n = per_account[item[0]] = per_account.get(item[0], 0) + 1
                        (kept if n <= 6 else victims).append(item)
                    pushed[:] = kept
                by_repo = {}
                for host, _, repo, img in victims:
                    by_repo.setdefault((host, repo), []).append(img.digest)
                for (host, repo), digests in by_repo.items():
                    try:
                        out = ecr(s, s.root if host is None else b).batch_delete_image(
                            repositoryName=repo, imageIds=[{"imageDigest": d} for d in digests])
                        assert not out["failures"], out["failures"]
                        outcomes["deleted"] += len(out["imageIds"])
                    except Exception as e:  # noqa: BLE001
                        errors.append(("delete", repr(e)))

        def collector():
            while not stop.is_set():
                out = s.gc("--grace", "0", check=False)
                if out.returncode != 0:
                    errors.append(("gc", out.returncode, out.stderr[-2000:]))
                outcomes["gc runs"] += 1

        pushers = [(None, pw_a, repos_a)] * 4 + [(host_b, pw_b, repos_b)] * 2
        threads = [threading.Thread(target=pusher, args=(*p, seed)) for seed, p in enumerate(pushers)]
        threads += [threading.Thread(target=mounter), threading.Thread(target=deleter),
                    threading.Thread(target=collector)]
        for t in threads:
            t.start()
        deadline = time.time() + 20
        while time.time() < deadline and not errors:
            time.sleep(0.5)  # the bounded run time itself, not a synchronization
        stop.set()
        for t in threads:
            t.join(120)
        assert not errors, errors[:5]
        assert outcomes["pushed"] >= 20 and outcomes["gc runs"] >= 2 and outcomes["deleted"] >= 5, outcomes

        # The images that exist are exactly those pushed and not deleted.
        existing = set()
        for creds, host, repos in ((s.root, None, repos_a), (b, host_b, repos_b)):
            for repo in repos:
                for page in ecr(s, creds).get_paginator("list_images").paginate(repositoryName=repo):
                    existing |= {(host, repo, i["imageDigest"]) for i in page["imageIds"]}
        images = {(host, repo, img.digest): (password, img) for host, password, repo, img in pushed}
        assert existing == set(images), (existing ^ set(images), outcomes)
        assert any(host is None for host, _, _ in images) and any(host for host, _, _ in images), outcomes
        # Each pulls, with its digest and bytes.
        for (host, repo, _), (password, img) in images.items():
            pulls(s, password, repo, img, tmp_path, host=host)
        # A final collection with no grace leaves exactly what their manifests reference.
        s.gc("--grace", "0")
        assert s.stored_blobs() == blobs_of(*(img for _, img in images.values()))
    finally:
        s.stop()


def test_a_collector_killed_mid_sweep_leaves_nothing_referenced_missing(node, tmp_path):
    pw = login_password(node, node.root)
    reg = Registry(node, pw)
    name = unique("gc-kill")
    ecr(node).create_repository(repositoryName=name)
    keep = make_image(layers=2)
    reg.push_image(name, keep, "keep")
    # Many blobs no image references.
    for i in range(400):
        assert reg.push_blob(name, f"garbage {i} {random.random()}".encode()).status_code == 201
    proc = subprocess.Popen([BIN, "gc", "--grace", "0", "--data-dir", str(node.data_dir),
                             "--config", str(node.config_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deleted = 0
    for line in proc.stdout:
        if line.startswith("delete blob"):
            deleted += 1
            if deleted == 50:
                proc.kill()
                break
    proc.wait(60)
    assert deleted == 50, "the collector ended before it was killed"
    assert keep.blobs[0][0] in node.stored_blobs()
    assert {d for d, _ in keep.blobs} <= node.stored_blobs()
    pulls(node, pw, name, keep, tmp_path)
    node.gc("--grace", "0")
    assert node.stored_blobs() == node.referenced_blobs() == {d for d, _ in keep.blobs}
    pulls(node, pw, name, keep, tmp_path)


def write_orphans(server, count):
    """Put `count` blob objects the metadata has no row for into the server's blob store
    (its data directory, or its prefix of the bucket); returns their digests."""
    datas = [f"orphan {i} {random.random()}".encode() for i in range(count)]
    if server.blob_prefix is None:
        for data in datas:
            d = sha256(data).split(":")[1]
            (server.data_dir / "blobs" / "sha256" / d[:2]).mkdir(parents=True, exist_ok=True, mode=0o700)
            (server.data_dir / "blobs" / "sha256" / d[:2] / d).write_bytes(data)
    else:
        from concurrent.futures import ThreadPoolExecutor
        client, bucket = bucket_client(), os.environ["BERTH_TEST_S3_BUCKET"]

        def put(data):
            d = sha256(data).split(":")[1]
            key = f"{server.blob_prefix}/blobs/sha256/{d[:2]}/{d}"
            client.put_object(Bucket=bucket, Key=key, Body=data)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(put, datas))
    return {sha256(data) for data in datas}


def test_a_server_killed_while_its_collector_sweeps_loses_nothing_referenced(tmp_path):
    """kill -9 of the server while its gc job deletes (blobs uploaded and never
    referenced, the blobs of a deleted image, objects with no metadata: enough that the
    job's paced sweep lasts); restarted on the same stores, its job deletes the rest, and
    every image still pulls."""
    s = Server(tmp_path / "data", extra_config="gc_interval_seconds = 86400\ngc_grace_seconds = 86400\n"
               "job_lease_seconds = 2\n").start()
    try:
        pw = login_password(s, s.root)
        reg = Registry(s, pw)
        name = unique("gc-crash")
        ecr(s).create_repository(repositoryName=name)
        shared = random_layer(5000)[0]
        keep = [image_of([shared, random_layer(3000 + i)[0]]) for i in range(3)]
        gone = image_of([shared, random_layer(4000)[0]])
        for i, img in enumerate(keep):
            reg.push_image(name, img, f"k{i}")
        reg.push_image(name, gone, "gone")
        ecr(s).batch_delete_image(repositoryName=name, imageIds=[{"imageTag": "gone"}])
        for i in range(150):
            assert reg.push_blob(name, f"garbage {i} {random.random()}".encode()).status_code == 201
        write_orphans(s, 600)
        referenced = blobs_of(*keep)
        stored = s.stored_blobs()
        assert referenced <= stored and len(stored - referenced) == 150 + 600 + 2, len(stored)
        assert s.stop() == 0, "".join(s.stderr_lines[-30:])

        # Restarted with no grace and a collection every second, the job starts at once.
        config = s.config_path.read_text()
        s.config_path.write_text(config.replace("gc_interval_seconds = 86400\ngc_grace_seconds = 86400\n",
                                                "gc_interval_seconds = 1\ngc_grace_seconds = 0\n"))
        s.start()
        until("the gc job is part-way through its sweep", 60,
              lambda: len(referenced) < len(s.stored_blobs()) <= len(stored) - 50)
        s.stop(signal.SIGKILL)
        left = s.stored_blobs()
        assert referenced <= left
        assert len(left) > len(referenced), "the sweep ended before the kill"

        s.start()
        until("the restarted server's gc job deletes the rest", 120, lambda: s.stored_blobs() == referenced)
        for img in keep:
            pulls(s, pw, name, img, tmp_path)
        assert reg.get_manifest(name, gone.digest).status_code == 404
    finally:
        s.stop()


@pytest.fixture
def patient_node(tmp_path):
    """A server whose own collector keeps everything for a day (so only `berth gc` acts)."""
    s = Server(tmp_path / "data", extra_config="gc_interval_seconds = 86400\ngc_grace_seconds = 86400\n").start()
    yield s
    rc = s.stop()
    assert rc == 0, "".join(s.stderr_lines[-30:])


def test_objects_the_metadata_does_not_know_go_after_the_grace_period(patient_node):
    """An object with no row (left by a crash between publishing and recording, or by an
    older version) is deleted once written over a grace period ago; a newer one is kept."""
    node = patient_node
    if node.blob_prefix is not None:
        pytest.skip("written into the data directory's blob store")
    import os
    old, new = b"left behind long ago", b"left behind just now"
    for data in (old, new):
        d = sha256(data).split(":")[1]
        (node.data_dir / "blobs" / "sha256" / d[:2]).mkdir(parents=True, exist_ok=True, mode=0o700)
        (node.data_dir / "blobs" / "sha256" / d[:2] / d).write_bytes(data)
    d_old = sha256(old).split(":")[1]
    hour_ago = time.time() - 7200
    os.utime(node.data_dir / "blobs" / "sha256" / d_old[:2] / d_old, (hour_ago, hour_ago))
    out = node.gc("--grace", "600")
    assert f"delete blob {sha256(old)} ({len(old)} bytes, no metadata)" in out.stdout, out.stdout
    assert "1 with no metadata" in out.stdout.splitlines()[-1]
    assert node.stored_blobs() == {sha256(new)}
