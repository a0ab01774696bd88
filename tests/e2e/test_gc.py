"""Garbage collection, online (registry/gc.rs): deletes free the blob store after the grace
period, `berth gc` says what it deletes (or would) and the bytes reclaimed, the collector
racing pushes, mounts and deletes across repositories and accounts never deletes what an
image needs, and a collector killed mid-sweep leaves nothing referenced missing. Runs on
the embedded default and, in the scale-out pass, on PostgreSQL + S3 (counting the objects
in the bucket)."""

import json
import random
import re
import subprocess
import threading
import time

import pytest

from berth import (BIN, OciImage, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, Registry, Server, descriptor,
                   login_password, make_image, oci_error, random_layer, read_oci_layout, sha256,
                   skopeo_pull, unique)


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


def pulls(server, password, repo, img, tmp_path):
    """skopeo pulls the image by digest, with the same manifest and blobs."""
    out = tmp_path / f"pull-{unique('p')}"
    skopeo_pull(server, password, repo, img.digest, out)
    entry, manifest = read_oci_layout(out, "pulled")
    assert entry["digest"] == img.digest and manifest == img.manifest


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
    """Pushes sharing layers across repositories and two accounts, cross-repository
    mounts, deletes of other images holding the same layers, and the collector running all
    along (the server's job every second with a grace of 1 s, and `berth gc --grace 0` in
    a loop) for a bounded time; then every image that exists pulls with skopeo with its
    digest, and a final collection leaves exactly the referenced set."""
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
        pushed = []  # (account creds, host, repo, image)
        lock = threading.Lock()
        errors = []
        outcomes = {"pushed": 0, "refused": 0, "mounted": 0, "deleted": 0, "gc runs": 0}

        def pusher(account, host, password, repos, seed):
            rnd = random.Random(seed)
            reg = Registry(s, password, host=host)
            while not stop.is_set():
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
                        pushed.append((account, host, password, repo, img))
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
            rnd = random.Random(11)
            while not stop.wait(0.2):
                with lock:
                    if len(pushed) < 8:
                        continue  # keep some images to pull at the end
                    victim = pushed.pop(rnd.randrange(len(pushed)))
                creds = s.root if victim[1] is None else b
                try:
                    ecr(s, creds).batch_delete_image(repositoryName=victim[3],
                                                     imageIds=[{"imageDigest": victim[4].digest}])
                    outcomes["deleted"] += 1
                except Exception as e:  # noqa: BLE001
                    errors.append(("delete", repr(e)))

        def collector():
            while not stop.is_set():
                out = s.gc("--grace", "0", check=False)
                if out.returncode != 0:
                    errors.append(("gc", out.returncode, out.stderr[-2000:]))
                outcomes["gc runs"] += 1

        threads = [threading.Thread(target=pusher, args=(s.root, None, pw_a, repos_a, 1)),
                   threading.Thread(target=pusher, args=(s.root, None, pw_a, repos_a, 2)),
                   threading.Thread(target=pusher, args=(b, host_b, pw_b, repos_b, 3)),
                   threading.Thread(target=mounter), threading.Thread(target=deleter),
                   threading.Thread(target=collector)]
        for t in threads:
            t.start()
        deadline = time.time() + 25
        while time.time() < deadline and not errors:
            time.sleep(0.5)  # the bounded run time itself, not a synchronization
        stop.set()
        for t in threads:
            t.join(120)
        assert not errors, errors[:5]
        assert outcomes["pushed"] >= 10 and outcomes["gc runs"] >= 2 and outcomes["deleted"] >= 1, outcomes

        # Every image that exists pulls, with its digest and bytes.
        existing = {}
        for creds, host, repos in ((s.root, None, repos_a), (b, host_b, repos_b)):
            for repo in repos:
                for page in ecr(s, creds).get_paginator("list_images").paginate(repositoryName=repo):
                    for i in page["imageIds"]:
                        existing[(host, repo, i["imageDigest"])] = True
        images = {(host, repo, img.digest): (password, img) for _, host, password, repo, img in pushed}
        checked = 0
        for (host, repo, digest) in existing:
            password, img = images.get((host, repo, digest), (None, None))
            if img is None:
                continue  # pushed and deleted, or pushed again under another tag
            if host is None:
                pulls(s, password, repo, img, tmp_path)
            else:
                reg = Registry(s, password, host=host)
                assert reg.get_manifest(repo, digest).content == img.manifest
                for d, data in img.blobs:
                    r = reg.get_blob(repo, d)
                    assert r.status_code == 200 and r.content == data, (repo, d, r.status_code)
            checked += 1
        assert checked >= 5, (checked, outcomes)
        # A final collection with no grace leaves exactly the referenced set.
        s.gc("--grace", "0")
        assert s.stored_blobs() == s.referenced_blobs()
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
