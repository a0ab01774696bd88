"""Crash safety: kill -9 the server in the middle of a large push, restart it on the same
data directory, and find the registry consistent (no partial blob or manifest visible, the
metadata database intact) and the push redone to completion."""

import base64
import hashlib
import os
import signal
import sqlite3
import threading

import requests

from berth import (
    login_password,
    make_image,
    read_oci_layout,
    skopeo_pull,
    skopeo_push,
    start_server,
    until,
    write_oci_layout,
)

SIZE = 256 * 1024 * 1024  # a blob large enough to be killed in the middle of


def basic(password):
    return {"Authorization": "Basic " + base64.b64encode(f"AWS:{password}".encode()).decode()}


def test_kill_during_large_push_then_redo(tmp_path_factory, tmp_path):
    server = start_server(tmp_path_factory, "crash")
    root = server.root
    ecr = server.client("ecr", root)
    ecr.create_repository(repositoryName="crash/app")
    password = login_password(server, root)
    h = basic(password)

    # A blob whose digest we know, streamed slowly enough to be cut.
    chunk = os.urandom(1024 * 1024)
    digest = hashlib.sha256()
    for _ in range(SIZE // len(chunk)):
        digest.update(chunk)
    digest = "sha256:" + digest.hexdigest()
    sent = threading.Event()
    killed = threading.Event()

    def body():
        for i in range(SIZE // len(chunk)):
            if i == 64:
                # A quarter sent: the rest waits for the kill, so the upload is mid-way
                # when it comes, however fast the machine.
                sent.set()
                killed.wait(60)
            yield chunk

    r = requests.post(f"{server.url}/v2/crash/app/blobs/uploads/", headers=h)
    assert r.status_code == 202, r.text
    path = r.headers["Location"]
    location = server.url + path

    def push():
        try:
            requests.patch(location, data=body(), headers={**h, "Content-Type": "application/octet-stream"}, timeout=60)
        except requests.RequestException:
            pass  # the server dies under it

    t = threading.Thread(target=push)
    t.start()
    assert sent.wait(60), "the upload never got going"
    upload_id = path.rstrip("/").split("/")[-1].split("?")[0]
    until("bytes of the upload reach its staged file", 30, lambda: any(
        p.stat().st_size > 0 for p in (server.data_dir / "uploads").iterdir() if upload_id in p.name))
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    server.proc = None
    killed.set()
    t.join(60)

    # The metadata database survived intact.
    db = sqlite3.connect(server.data_dir / "berth.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()

    server.start()
    password = login_password(server, root)
    h = basic(password)
    # Nothing half-written is visible: the blob is unknown, the repository has no image.
    r = requests.head(f"{server.url}/v2/crash/app/blobs/{digest}", headers=h)
    assert r.status_code == 404
    assert not list(server.data_dir.rglob(digest.split(":")[1])), "no file under the final name"
    assert server.client("ecr", root).list_images(repositoryName="crash/app")["imageIds"] == []
    # The upload session survived the restart with what reached the disk; it can go on or be cancelled.
    location = server.url + path  # the restarted server listens on a new port
    r = requests.get(location, headers=h)
    # (A process kill leaves the page cache: what was written is there; a machine crash
    # could leave less, never a visible blob.)
    assert r.status_code == 204, r.text
    got = int(r.headers["Range"].split("-")[1]) + 1
    assert 0 < got < SIZE
    # Finishing it with the full blob's digest fails: the bytes are not all there.
    r = requests.put(f"{location}?digest={digest}", headers=h)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "DIGEST_INVALID", r.text
    assert requests.head(f"{server.url}/v2/crash/app/blobs/{digest}", headers=h).status_code == 404

    # The push is redone, in full, with a real client; the pull gives the same digest.
    image = make_image(layers=2, size=8 * 1024 * 1024)
    layout = tmp_path / "src"
    write_oci_layout(layout, {"v1": image})
    skopeo_push(server, password, layout, "v1", "crash/app")
    skopeo_pull(server, password, "crash/app", "v1", tmp_path / "dst")
    assert read_oci_layout(tmp_path / "dst", "pulled")[0]["digest"] == image.digest
    assert server.stop() == 0
