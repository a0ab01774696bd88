"""Replication between two Berth deployments on loopback, each with its own data directory,
over the peer link (`replication_peers`, a shared key file): every example of seed 003
decides at the destination exactly as within one deployment, the two replicate to each
other, a transfer cut by a kill of either side resumes after the restart, and a
deployment that does not hold the key is refused."""

import base64
import json
import os
import signal
import socket
import time

import pytest
import requests

from berth import (HoldingProxy, Registry, Server, make_image, oci_error, seed_text, skopeo_pull,
                   skopeo_push, unique, until, write_oci_layout)

EAST, WEST = "us-east-1", "us-west-2"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peers_line(region, port, key_file):
    return (f'replication_peers = [{{ region = "{region}", endpoint = "http://127.0.0.1:{port}", '
            f'key_file = "{key_file}" }}]\n')


def peers_table(region, port, key_file):
    """The same peer as a `[replication.peers.REGION]` table (the end of a file)."""
    return f'[replication.peers.{region}]\nendpoint = "http://127.0.0.1:{port}"\nkey_file = "{key_file}"\n'


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(east, west): two deployments, us-east-1 and us-west-2, each the other's peer (the
    east lists the west in `replication_peers`, the west the east as a table)."""
    base = tmp_path_factory.mktemp("peers")
    key = base / "peer.key"
    key.write_bytes(os.urandom(32))
    east_port, west_port = free_port(), free_port()
    east = Server(base / "east" / "data", listen=f"127.0.0.1:{east_port}",
                  extra_config=f'region = "{EAST}"\n' + peers_line(WEST, west_port, key))
    west = Server(base / "west" / "data", listen=f"127.0.0.1:{west_port}",
                  extra_config=f'region = "{WEST}"\n' + peers_table(EAST, east_port, key))
    east.start()
    west.start()
    yield east, west
    assert east.stop() == 0 and west.stop() == 0


def ecr(s, region, creds=None):
    return s.client("ecr", creds or s.root, region=region)


def password(s, region):
    [d] = ecr(s, region).get_authorization_token()["authorizationData"]
    return base64.b64decode(d["authorizationToken"]).decode().split(":", 1)[1]


def settled(s, region, repo, tag, timeout=60):
    deadline = time.time() + timeout
    while True:
        out = ecr(s, region).describe_image_replication_status(repositoryName=repo,
                                                               imageId={"imageTag": tag})
        st = out["replicationStatuses"]
        if st and all(x["status"] != "IN_PROGRESS" for x in st):
            return st
        if time.time() >= deadline:
            open("/tmp/peer-fail.log", "w").write("".join(s.stderr_lines))
        assert time.time() < deadline, st
        time.sleep(0.1)


def replicate(src, src_region, dst, dst_region, tmp_path):
    """Seed 003's first example across deployments: `dst` lets `src`'s account replicate
    into its registry; `src` replicates there and pushes with skopeo; `dst` pulls it."""
    # (the seed names us-west-2's repositories: the destination's Region, when it is another)
    policy = seed_text("003-registry-replicate-all",
                       **{"111111111111": dst.account, "222222222222": src.account, "us-west-2": dst_region})
    dst.cli(dst.root, "ecr", "put-registry-policy", "--region", dst_region, "--policy-text", policy)
    ecr(src, src_region).put_replication_configuration(replicationConfiguration={"rules": [
        {"destinations": [{"region": dst_region, "registryId": dst.account}]}]})
    repo = unique("across")
    ecr(src, src_region).create_repository(repositoryName=repo)
    img = make_image(layers=3, size=300_000)
    write_oci_layout(tmp_path / "src", {"v1": img})
    skopeo_push(src, password(src, src_region), tmp_path / "src", "v1", repo)
    [st] = settled(src, src_region, repo, "v1")
    assert (st["status"], st["region"], st["registryId"]) == ("COMPLETE", dst_region, dst.account), st
    digest_file = tmp_path / "digest"
    skopeo_pull(dst, password(dst, dst_region), repo, "v1", tmp_path / "pulled",
                extra=["--digestfile", str(digest_file)])
    assert digest_file.read_text().strip() == img.digest
    return repo, img


def test_east_replicates_to_the_west_deployment(pair, tmp_path):
    east, west = pair
    repo, img = replicate(east, EAST, west, WEST, tmp_path)
    # the destination made the repository (ecr:CreateRepository allowed), with the tag
    ids = ecr(west, WEST).list_images(repositoryName=repo)["imageIds"]
    assert ids == [{"imageDigest": img.digest, "imageTag": "v1"}]
    # a second push of an image sharing two layers sends only what the west lacks
    img2 = make_image(layers=1, size=1000)
    img2.layers[0:0] = img.layers[:2]
    m = json.loads(img2.manifest)
    m["layers"][0:0] = json.loads(img.manifest)["layers"][:2]
    img2.manifest = json.dumps(m, indent=1).encode()
    write_oci_layout(tmp_path / "src2", {"v2": img2})
    skopeo_push(east, password(east, EAST), tmp_path / "src2", "v2", repo)
    [st] = settled(east, EAST, repo, "v2")
    assert st["status"] == "COMPLETE", st
    tags = {i.get("imageTag") for i in ecr(west, WEST).list_images(repositoryName=repo)["imageIds"]}
    assert tags == {"v1", "v2"}


def test_the_west_replicates_back_to_the_east(pair, tmp_path):
    east, west = pair
    replicate(west, WEST, east, EAST, tmp_path)


def test_the_destination_policy_decides_across_deployments(pair, tmp_path):
    east, west = pair
    # the west trusts another account, not the east's
    west.cli(west.root, "ecr", "put-registry-policy", "--region", WEST, "--policy-text",
             seed_text("003-registry-replicate-all",
                       **{"111111111111": west.account, "222222222222": "123456789012"}))
    ecr(east, EAST).put_replication_configuration(replicationConfiguration={"rules": [
        {"destinations": [{"region": WEST, "registryId": west.account}]}]})
    repo = unique("refused")
    ecr(east, EAST).create_repository(repositoryName=repo)
    write_oci_layout(tmp_path / "src", {"v1": make_image(layers=1)})
    skopeo_push(east, password(east, EAST), tmp_path / "src", "v1", repo)
    [st] = settled(east, EAST, repo, "v1")
    assert st["status"] == "FAILED" and st["failureCode"].startswith("REPLICATION_NOT_ALLOWED"), st
    names = {r["repositoryName"] for r in ecr(west, WEST).describe_repositories()["repositories"]}
    assert repo not in names


def test_an_untrusted_sender_is_refused(pair, tmp_path_factory, tmp_path):
    east, west = pair
    # a third deployment serving us-east-1 too, naming the west as its peer with its own key
    other_key = tmp_path / "other.key"
    other_key.write_bytes(os.urandom(32))
    intruder = Server(tmp_path_factory.mktemp("intruder") / "data",
                      extra_config=f'region = "{EAST}"\n' + peers_line(WEST, west.port, other_key))
    intruder.start()
    try:
        west.cli(west.root, "ecr", "put-registry-policy", "--region", WEST, "--policy-text",
                 seed_text("003-registry-replicate-all",
                           **{"111111111111": west.account, "222222222222": intruder.account}))
        ecr(intruder, EAST).put_replication_configuration(replicationConfiguration={"rules": [
            {"destinations": [{"region": WEST, "registryId": west.account}]}]})
        repo = unique("intruded")
        ecr(intruder, EAST).create_repository(repositoryName=repo)
        write_oci_layout(tmp_path / "src", {"v1": make_image(layers=1)})
        skopeo_push(intruder, password(intruder, EAST), tmp_path / "src", "v1", repo)
        [st] = settled(intruder, EAST, repo, "v1")
        assert st["status"] == "FAILED" and st["failureCode"].startswith("PEER_REFUSED"), st
        names = {r["repositoryName"] for r in ecr(west, WEST).describe_repositories()["repositories"]}
        assert repo not in names
    finally:
        intruder.stop()
    # and a request without a peer signature at all
    r = requests.post(f"{west.url}/berth/peer/v1/replicate", data=b"{}", timeout=10)
    assert r.status_code == 401 and r.json()["failureCode"].startswith("PEER_REFUSED")
    # nor does the registry's own API see anything of it
    assert oci_error(requests.get(f"{west.url}/v2/", timeout=10))[0] == 401


@pytest.mark.parametrize("killed", ["destination", "source"])
def test_a_transfer_cut_by_a_restart_resumes_where_it_stopped(tmp_path_factory, tmp_path, killed):
    """kill -9 of the destination deployment, or of the source, while a large blob streams
    between them (through a proxy that holds the stream half way, so the kill lands
    mid-transfer however fast the machine); once it is back at the same address, a later
    attempt of the delivery continues the same upload session (remembered in the source's
    metadata store) from the offset the destination kept: fewer than twice the blob's
    bytes reach the destination in all, and the image arrives with its digest."""
    base = tmp_path_factory.mktemp("resume")
    key = base / "peer.key"
    key.write_bytes(os.urandom(32))
    east_port, west_port = free_port(), free_port()
    size, request = 48 * 1024 * 1024, 16 * 1024 * 1024
    # (the sender sends 16 MiB a request: the first request is whole when the link holds)
    proxy = HoldingProxy(west_port, hold_after=size // 2)
    east = Server(base / "east" / "data", listen=f"127.0.0.1:{east_port}",
                  extra_config=f'region = "{EAST}"\n' + peers_line(WEST, proxy.port, key))
    west = Server(base / "west" / "data", listen=f"127.0.0.1:{west_port}",
                  extra_config=f'region = "{WEST}"\n' + peers_line(EAST, east_port, key))
    east.start()
    west.start()
    try:
        west_policy(west, "003-registry-replicate-all", **{"222222222222": east.account})
        ecr(east, EAST).put_replication_configuration(replicationConfiguration={"rules": [
            {"destinations": [{"region": WEST, "registryId": west.account}]}]})
        repo = unique("big")
        ecr(east, EAST).create_repository(repositoryName=repo)
        img = make_image(layers=1, size=size)
        write_oci_layout(tmp_path / "src", {"v1": img})
        skopeo_push(east, password(east, EAST), tmp_path / "src", "v1", repo)
        assert proxy.holding.wait(60), "the transfer never got half way"
        uploads = west.data_dir / "uploads"

        def staged():
            return max((p.stat().st_size for p in uploads.iterdir()), default=0) if uploads.exists() else 0

        if west.blob_prefix is None:  # (staged in the bucket otherwise)
            until("bytes of the transfer reach the destination's staged upload", 30,
                  lambda: staged() >= size // 8)
        victim = west if killed == "destination" else east
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait()
        victim.proc = None
        # the held stream fails: the destination is gone, or the source that sent it
        proxy.release()
        until("the cut connections close", 30, lambda: proxy.active == 0)
        kept = staged()
        before = proxy.sent
        assert before < size
        if killed == "destination":
            def retried():
                [x] = ecr(east, EAST).describe_image_replication_status(
                    repositoryName=repo, imageId={"imageTag": "v1"})["replicationStatuses"]
                return x["status"] == "IN_PROGRESS" and "PEER_UNREACHABLE" in (x.get("failureCode") or "")

            # the attempt has ended (to be tried again): what follows is a later attempt's
            until("the delivery is to be retried", 60, retried)
        victim.start()
        st = status_of(east, east.root, EAST, repo, "v1", timeout=180)
        assert st["status"] == "COMPLETE", st
        after = proxy.sent - before
        # the rest of the blob, not all of it again (a new session would send `size` more):
        # at most what follows the first whole request
        assert before + after < 2 * size, (before, after, size)
        assert after < size - request + (1 << 20), (after, size)
        if west.blob_prefix is None and killed == "destination":
            assert after < size - kept + (1 << 20), (after, kept, size)
        digest_file = tmp_path / "digest"
        skopeo_pull(west, password(west, WEST), repo, "v1", tmp_path / "pulled",
                    extra=["--digestfile", str(digest_file)])
        assert digest_file.read_text().strip() == img.digest
    finally:
        proxy.close()
        assert east.stop() == 0 and west.stop() == 0


# The other examples of seed 003, across deployments (the first is above).

def push_as(s, creds, region, repo, tag, img):
    """Push `img` as `creds` into its own registry in `region` of deployment `s`."""
    [d] = s.client("ecr", creds, region=region).get_authorization_token()["authorizationData"]
    pw = base64.b64decode(d["authorizationToken"]).decode().split(":", 1)[1]
    host = None if creds.account_id == s.account else f"{creds.account_id}.dkr.ecr.localhost:{s.port}"
    Registry(s, pw, host=host).push_image(repo, img, tag)


def status_of(s, creds, region, repo, tag, timeout=60):
    c = s.client("ecr", creds, region=region)
    deadline = time.time() + timeout
    while True:
        st = c.describe_image_replication_status(repositoryName=repo, imageId={"imageTag": tag})[
            "replicationStatuses"]
        if st and all(x["status"] != "IN_PROGRESS" for x in st):
            [one] = st
            return one
        assert time.time() < deadline, st
        time.sleep(0.1)


def west_policy(west, seed, **ids):
    west.cli(west.root, "ecr", "put-registry-policy", "--region", WEST, "--policy-text",
             seed_text(seed, **{"111111111111": west.account, **ids}))


def west_repos(west):
    return {r["repositoryName"] for r in ecr(west, WEST).describe_repositories()["repositories"]}


def test_003_multiple_accounts_across_deployments(pair):
    east, west = pair
    other = east.account_create()
    west_policy(west, "003-registry-multiple-accounts",
                **{"222222222222": east.account, "333333333333": other.account_id})
    for creds in (east.root, other):
        c = east.client("ecr", creds, region=EAST)
        c.put_replication_configuration(replicationConfiguration={"rules": [
            {"destinations": [{"region": WEST, "registryId": west.account}]}]})
        repo = unique("multi-acct")
        c.create_repository(repositoryName=repo)
        img = make_image(layers=1)
        push_as(east, creds, EAST, repo, "v1", img)
        assert status_of(east, creds, EAST, repo, "v1")["status"] == "COMPLETE"
        ids = ecr(west, WEST).list_images(repositoryName=repo)["imageIds"]
        assert ids == [{"imageDigest": img.digest, "imageTag": "v1"}]


def test_003_prod_prefix_across_deployments(pair):
    east, west = pair
    west_policy(west, "003-registry-prod-prefix", **{"222222222222": east.account})
    c = ecr(east, EAST)
    c.put_replication_configuration(replicationConfiguration={"rules": [
        {"destinations": [{"region": WEST, "registryId": west.account}]}]})
    suffix = unique("p")
    for repo in (f"prod-api-{suffix}", f"dev-api-{suffix}"):
        c.create_repository(repositoryName=repo)
        push_as(east, east.root, EAST, repo, "v1", make_image(layers=1))
    assert status_of(east, east.root, EAST, f"prod-api-{suffix}", "v1")["status"] == "COMPLETE"
    failed = status_of(east, east.root, EAST, f"dev-api-{suffix}", "v1")
    assert failed["status"] == "FAILED" and failed["failureCode"].startswith("REPLICATION_NOT_ALLOWED")
    names = west_repos(west)
    assert f"prod-api-{suffix}" in names and f"dev-api-{suffix}" not in names


def test_003_without_create_repository_across_deployments(pair, tmp_path):
    """Seed 003's fourth example between deployments: the destination creates the
    repository itself, and a backfill (aws CLI) replicates the image that failed."""
    east, west = pair
    source = east.account_create()  # a registry of its own: the backfill copies all of it
    west_policy(west, "003-registry-replicate-only", **{"222222222222": source.account_id})
    c = east.client("ecr", source, region=EAST)
    c.put_replication_configuration(replicationConfiguration={"rules": [
        {"destinations": [{"region": WEST, "registryId": west.account}]}]})
    repo = unique("by-hand")
    c.create_repository(repositoryName=repo)
    img = make_image(layers=2)
    push_as(east, source, EAST, repo, "v1", img)
    failed = status_of(east, source, EAST, repo, "v1")
    assert failed["status"] == "FAILED" and failed["failureCode"].startswith("REPOSITORY_NOT_FOUND")
    assert repo not in west_repos(west)
    ecr(west, WEST).create_repository(repositoryName=repo)
    started = east.cli(source, "ecr", "start-replication-backfill", "--region", EAST,
                       "--destination", f"region={WEST},registryId={west.account}", newer_ecr=True)
    bid = started["replicationBackfillId"]

    def ended():
        [b] = [x for x in east.cli(source, "ecr", "list-replication-backfills", "--region", EAST,
                                   newer_ecr=True)["backfills"] if x["replicationBackfillId"] == bid]
        return b if b["status"] not in ("PREPARING", "IN_PROGRESS", "STOPPING") else None

    done = until("the backfill ends", 60, ended)
    assert done["status"] == "COMPLETE", done
    st = status_of(east, source, EAST, repo, "v1")
    assert st["status"] == "COMPLETE" and st.get("failureCode") is None, st
    assert ecr(west, WEST).list_images(repositoryName=repo)["imageIds"] == [
        {"imageDigest": img.digest, "imageTag": "v1"}]
    digest_file = tmp_path / "digest"
    skopeo_pull(west, password(west, WEST), repo, "v1", tmp_path / "pulled",
                extra=["--digestfile", str(digest_file)])
    assert digest_file.read_text().strip() == img.digest
