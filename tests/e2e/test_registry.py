"""The registry end to end: the OCI distribution API (/v2) driven by skopeo, the ORAS
Python SDK and raw HTTP, and the ECR JSON API driven by boto3 and the aws CLI, against
one `berth serve`. What one API writes, the other must see."""

import base64
import concurrent.futures
import hashlib
import hmac
import json
import os
import re
import struct
import threading
import time
import urllib.parse

import boto3
import requests
import oras.client
import oras.oci
import pytest

from berth import (DOCKER_MANIFEST, OCI_CONFIG, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST,  # noqa: F401
                   SETTLE, Creds, Registry, allow, client_error, descriptor, doc, login_password,
                   make_image, oci_blob, oci_error, read_oci_layout, server, sha256, skopeo,
                   skopeo_pull, skopeo_push, start_server, unique, write_oci_layout)


@pytest.fixture(scope="module")
def root_pw(server):
    return login_password(server, server.root)


@pytest.fixture(scope="module")
def reg(server, root_pw):
    return Registry(server, root_pw)


def ecr(server, creds=None):
    return server.client("ecr", creds or server.root)


def new_repo(server, creds=None, prefix="repo", **kw):
    name = unique(prefix)
    ecr(server, creds).create_repository(repositoryName=name, **kw)
    return name


def new_user_pw(server, *statements):
    """A user whose identity policy is GetAuthorizationToken plus `statements`; returns
    (arn, creds, registry password)."""
    name, creds = server.new_user(policies=[doc(allow("ecr:GetAuthorizationToken"), *statements)])
    return f"arn:aws:iam::{server.account}:user/{name}", creds, login_password(server, creds)


def repo_arn(server, name, account=None):
    return f"arn:aws:ecr:us-east-1:{account or server.account}:repository/{name}"


def location(r):
    """The Location header, made absolute-path (it may be a path or a URL)."""
    loc = r.headers["Location"]
    return urllib.parse.urlsplit(loc)._replace(scheme="", netloc="").geturl() if "://" in loc else loc


# ---------------------------------------------------------------------------------------
# Push and pull with real clients; the same image through the ECR API
# ---------------------------------------------------------------------------------------

def test_skopeo_push_pull_roundtrip_and_ecr_views(server, tmp_path):
    repo = new_repo(server, prefix="team/app")
    img = make_image(layers=3)
    # the password as `aws ecr get-login-password` prints it
    p = server._cli(server.root, ["ecr", "get-login-password"])
    assert p.returncode == 0, p.stderr
    root_pw = p.stdout.strip()
    write_oci_layout(tmp_path / "src", {"v1": img})
    skopeo_push(server, root_pw, tmp_path / "src", "v1", repo)

    dg = tmp_path / "digest"
    skopeo_pull(server, root_pw, repo, "v1", tmp_path / "dst", extra=["--digestfile", str(dg)])
    assert dg.read_text().strip() == img.digest
    entry, manifest = read_oci_layout(tmp_path / "dst", "pulled")
    assert entry["digest"] == img.digest and manifest == img.manifest
    for d, b in img.blobs:
        assert oci_blob(tmp_path / "dst", d) == b, d

    # by digest too
    skopeo_pull(server, root_pw, repo, img.digest, tmp_path / "bydigest",
                extra=["--digestfile", str(dg)])
    assert dg.read_text().strip() == img.digest

    # aws ecr describe-images / list-images / batch-get-image see the same image
    out = server.cli(server.root, "ecr", "describe-images", "--repository-name", repo)
    [detail] = out["imageDetails"]
    assert detail["imageDigest"] == img.digest
    assert detail["imageTags"] == ["v1"]
    assert detail["imageSizeInBytes"] == img.size
    assert detail["imageManifestMediaType"] == OCI_MANIFEST
    assert detail["registryId"] == server.account and detail["repositoryName"] == repo

    out = server.cli(server.root, "ecr", "list-images", "--repository-name", repo)
    assert out["imageIds"] == [{"imageDigest": img.digest, "imageTag": "v1"}]

    out = server.cli(server.root, "ecr", "batch-get-image", "--repository-name", repo,
                     "--image-ids", "imageTag=v1", "imageTag=nope")
    [image] = out["images"]
    assert image["imageId"] == {"imageDigest": img.digest, "imageTag": "v1"}
    assert image["imageManifest"] == img.manifest.decode()
    assert image["imageManifestMediaType"] == OCI_MANIFEST
    [failure] = out["failures"]
    assert failure["failureCode"] == "ImageNotFound"
    assert failure["imageId"]["imageTag"] == "nope"

    # skopeo inspect --raw returns the pushed bytes
    p = skopeo("inspect", "--raw", "--tls-verify=false", "--creds", f"AWS:{root_pw}",
               f"docker://127.0.0.1:{server.port}/{repo}:v1")
    assert p.stdout.encode() == img.manifest or p.stdout.encode() == img.manifest + b"\n"


def test_layer_upload_api_and_put_image_then_skopeo_pull(server, root_pw, reg, tmp_path):
    repo = new_repo(server)
    c = ecr(server)
    img = make_image(layers=2, size=20000)
    for d, b in img.blobs:
        up = c.initiate_layer_upload(repositoryName=repo)
        assert up["partSize"] > 0
        uid = up["uploadId"]
        half = len(b) // 2
        r = c.upload_layer_part(repositoryName=repo, uploadId=uid, partFirstByte=0,
                                partLastByte=half - 1, layerPartBlob=b[:half])
        assert r["lastByteReceived"] == half - 1
        # a part that does not continue where the upload is
        code, _, _ = client_error(c.upload_layer_part, repositoryName=repo, uploadId=uid,
                                  partFirstByte=half + 1, partLastByte=len(b) - 1,
                                  layerPartBlob=b[half + 1:])
        assert code == "InvalidLayerPartException"
        r = c.upload_layer_part(repositoryName=repo, uploadId=uid, partFirstByte=half,
                                partLastByte=len(b) - 1, layerPartBlob=b[half:])
        assert r["lastByteReceived"] == len(b) - 1
        r = c.complete_layer_upload(repositoryName=repo, uploadId=uid, layerDigests=[d])
        assert r["layerDigest"] == d

    avail = c.batch_check_layer_availability(repositoryName=repo,
                                             layerDigests=[d for d, _ in img.blobs] + ["sha256:" + "0" * 64])
    by = {l["layerDigest"]: l for l in avail["layers"]}
    for d, b in img.blobs:
        assert by[d]["layerAvailability"] == "AVAILABLE" and by[d]["layerSize"] == len(b)
    assert by["sha256:" + "0" * 64]["layerAvailability"] == "UNAVAILABLE"

    # the same layer again: LayerAlreadyExistsException
    d0, b0 = img.blobs[1]
    uid = c.initiate_layer_upload(repositoryName=repo)["uploadId"]
    c.upload_layer_part(repositoryName=repo, uploadId=uid, partFirstByte=0,
                        partLastByte=len(b0) - 1, layerPartBlob=b0)
    assert client_error(c.complete_layer_upload, repositoryName=repo, uploadId=uid,
                        layerDigests=[d0])[0] == "LayerAlreadyExistsException"

    # a wrong digest on completion: InvalidLayerException and nothing stored
    uid = c.initiate_layer_upload(repositoryName=repo)["uploadId"]
    data = os.urandom(100)
    c.upload_layer_part(repositoryName=repo, uploadId=uid, partFirstByte=0, partLastByte=99,
                        layerPartBlob=data)
    assert client_error(c.complete_layer_upload, repositoryName=repo, uploadId=uid,
                        layerDigests=[sha256(b"other")])[0] == "InvalidLayerException"
    assert reg.head_blob(repo, sha256(b"other")).status_code == 404
    assert reg.head_blob(repo, sha256(data)).status_code == 404

    # put-image through the aws CLI
    out = server.cli(server.root, "ecr", "put-image", "--repository-name", repo, "--image-tag", "api",
                     "--image-manifest", img.manifest.decode(),
                     "--image-manifest-media-type", OCI_MANIFEST)
    assert out["image"]["imageId"] == {"imageDigest": img.digest, "imageTag": "api"}

    dg = tmp_path / "digest"
    skopeo_pull(server, root_pw, repo, "api", tmp_path / "dst", extra=["--digestfile", str(dg)])
    assert dg.read_text().strip() == img.digest
    _, manifest = read_oci_layout(tmp_path / "dst", "pulled")
    assert manifest == img.manifest
    for d, b in img.blobs:
        assert oci_blob(tmp_path / "dst", d) == b

    # GetDownloadUrlForLayer gives a presigned URL that downloads without credentials
    d1, b1 = img.blobs[1]
    url = c.get_download_url_for_layer(repositoryName=repo, layerDigest=d1)["downloadUrl"]
    assert url.startswith(f"http://127.0.0.1:{server.port}/v2/{repo}/blobs/{d1}?"), url
    r = Registry(server).request("GET", url)
    assert r.status_code == 200 and r.content == b1
    r = Registry(server).request("GET", url, headers={"Range": "bytes=0-9"})
    assert r.status_code == 206 and r.content == b1[:10]
    # the signature covers the path and is checked
    assert Registry(server).request("GET", url[:-3] + "AAA").status_code == 403
    d0 = img.blobs[0][0]
    assert Registry(server).request("GET", url.replace(d1, d0)).status_code == 403
    # a blob that no image references is LayerInaccessibleException
    loose = os.urandom(50)
    reg.push_blob(repo, loose)
    assert client_error(c.get_download_url_for_layer, repositoryName=repo,
                        layerDigest=sha256(loose))[0] == "LayerInaccessibleException"

    # the same image and tag again; a digest that does not match; a missing layer
    assert client_error(c.put_image, repositoryName=repo, imageTag="api",
                        imageManifest=img.manifest.decode())[0] == "ImageAlreadyExistsException"
    assert client_error(c.put_image, repositoryName=repo, imageTag="x",
                        imageManifest=img.manifest.decode(),
                        imageDigest=sha256(b"nope"))[0] == "ImageDigestDoesNotMatchException"
    other = make_image(layers=1)
    code, msg, _ = client_error(c.put_image, repositoryName=repo, imageTag="missing",
                                imageManifest=other.manifest.decode())
    assert code == "LayersNotFoundException", msg
    assert c.list_images(repositoryName=repo)["imageIds"] == [{"imageDigest": img.digest, "imageTag": "api"}]


def test_multi_arch_index(server, root_pw, reg, tmp_path):
    repo = new_repo(server)
    amd = make_image(layers=1, arch="amd64")
    arm = make_image(layers=1, arch="arm64")
    for img in (amd, arm):
        reg.push_image(repo, img)  # by digest, untagged
    index = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [
            descriptor(OCI_MANIFEST, amd.manifest, platform={"architecture": "amd64", "os": "linux"}),
            descriptor(OCI_MANIFEST, arm.manifest, platform={"architecture": "arm64", "os": "linux"}),
        ],
    }).encode()
    r = reg.put_manifest(repo, "multi", index, OCI_INDEX)
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == sha256(index)
    assert location(r) == f"/v2/{repo}/manifests/{sha256(index)}"

    r = reg.get_manifest(repo, "multi", accept=(OCI_INDEX, OCI_MANIFEST))
    assert r.status_code == 200
    assert r.headers["Content-Type"] == OCI_INDEX
    assert r.headers["Docker-Content-Digest"] == sha256(index)
    assert r.content == index

    dg = tmp_path / "digest"
    skopeo_pull(server, root_pw, repo, "multi", tmp_path / "all", extra=["--all", "--digestfile", str(dg)])
    assert dg.read_text().strip() == sha256(index)
    for img in (amd, arm):
        assert oci_blob(tmp_path / "all", img.digest) == img.manifest
        for d, b in img.blobs:
            assert oci_blob(tmp_path / "all", d) == b

    skopeo_pull(server, root_pw, repo, "multi", tmp_path / "arm",
                extra=["--override-arch", "arm64", "--override-os", "linux", "--digestfile", str(dg)])
    assert dg.read_text().strip() == arm.digest

    details = {d["imageDigest"]: d for d in ecr(server).describe_images(repositoryName=repo)["imageDetails"]}
    assert set(details) == {amd.digest, arm.digest, sha256(index)}
    assert details[sha256(index)]["imageTags"] == ["multi"]
    assert details[sha256(index)]["imageManifestMediaType"] == OCI_INDEX

    # a child of the index cannot be deleted while the index holds it
    out = ecr(server).batch_delete_image(repositoryName=repo, imageIds=[{"imageDigest": arm.digest}])
    assert out["imageIds"] == []
    assert out["failures"][0]["failureCode"] == "ImageReferencedByManifestList"
    assert reg.get_manifest(repo, arm.digest).status_code == 200
    r = reg.delete_manifest(repo, arm.digest)
    assert r.status_code == 409, (r.status_code, r.text)
    assert reg.get_manifest(repo, arm.digest).status_code == 200

    # an index naming a manifest the repository lacks
    ghost = make_image(layers=1)
    bad = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                      "manifests": [descriptor(OCI_MANIFEST, ghost.manifest)]}).encode()
    r = reg.put_manifest(repo, "bad", bad, OCI_INDEX)
    assert oci_error(r)[:2] == (400, "MANIFEST_BLOB_UNKNOWN")
    assert ghost.digest in oci_error(r)[2]


# ---------------------------------------------------------------------------------------
# Blob uploads
# ---------------------------------------------------------------------------------------

def test_chunked_upload(server, reg):
    repo = new_repo(server)
    data = os.urandom(3 * 1000 + 17)
    chunks = [data[:1000], data[1000:2000], data[2000:3000], data[3000:]]
    r = reg.start_upload(repo)
    assert r.status_code == 202, r.text
    loc = location(r)
    assert loc.startswith(f"/v2/{repo}/blobs/uploads/")
    assert r.headers["Docker-Upload-UUID"] == loc.rsplit("/", 1)[1]
    assert r.headers["Range"] == "0-0"

    r = reg.patch(loc, chunks[0], start=0)
    assert r.status_code == 202, r.text
    assert r.headers["Range"] == "0-999"
    loc = location(r)

    # a chunk out of order (a gap; then one starting again at 0): 416
    r = reg.patch(loc, chunks[2], start=2000)
    assert r.status_code == 416, (r.status_code, r.text)
    r = reg.patch(loc, chunks[0], start=0)
    assert r.status_code == 416, (r.status_code, r.text)

    # status: what the upload holds
    r = reg.request("GET", loc)
    assert r.status_code == 204, r.text
    assert r.headers["Range"] == "0-999"
    assert r.headers["Docker-Upload-UUID"] == loc.rsplit("/", 1)[1]

    r = reg.patch(loc, chunks[1], start=1000)
    assert r.status_code == 202 and r.headers["Range"] == "0-1999"
    # a chunk without Content-Range appends (the streaming form)
    r = reg.patch(location(r), chunks[2])
    assert r.status_code == 202 and r.headers["Range"] == "0-2999"
    # the last chunk with the closing PUT
    r = reg.finish(location(r), sha256(data), chunks[3])
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == sha256(data)
    assert location(r) == f"/v2/{repo}/blobs/{sha256(data)}"

    r = reg.head_blob(repo, sha256(data))
    assert r.status_code == 200
    assert int(r.headers["Content-Length"]) == len(data)
    assert r.headers["Docker-Content-Digest"] == sha256(data)
    r = reg.get_blob(repo, sha256(data))
    assert r.status_code == 200 and r.content == data
    # the session is over
    assert oci_error(reg.request("GET", loc))[:2] == (404, "BLOB_UPLOAD_UNKNOWN")


def test_monolithic_uploads(server, reg):
    repo = new_repo(server)
    data = os.urandom(5000)
    r = reg.push_blob(repo, data)
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == sha256(data)
    assert location(r) == f"/v2/{repo}/blobs/{sha256(data)}"
    assert reg.get_blob(repo, sha256(data)).content == data

    # POST then one PUT with the whole body
    data2 = os.urandom(3000)
    loc = location(reg.start_upload(repo))
    r = reg.finish(loc, sha256(data2), data2)
    assert r.status_code == 201, r.text
    assert reg.get_blob(repo, sha256(data2)).content == data2

    # an empty blob
    r = reg.push_blob(repo, b"")
    assert r.status_code == 201, r.text
    r = reg.head_blob(repo, sha256(b""))
    assert r.status_code == 200 and r.headers["Content-Length"] == "0"


def test_wrong_digest_is_refused_and_not_stored(server, reg):
    repo = new_repo(server)
    data = os.urandom(2000)
    claimed = sha256(b"something else")
    r = reg.push_blob(repo, data, digest=claimed)
    assert oci_error(r)[:2] == (400, "DIGEST_INVALID")
    assert reg.head_blob(repo, claimed).status_code == 404
    assert reg.head_blob(repo, sha256(data)).status_code == 404

    loc = location(reg.start_upload(repo))
    assert reg.patch(loc, data, start=0).status_code == 202
    r = reg.finish(loc, claimed)
    assert oci_error(r)[:2] == (400, "DIGEST_INVALID")
    assert reg.head_blob(repo, claimed).status_code == 404
    assert reg.head_blob(repo, sha256(data)).status_code == 404
    # a malformed digest
    r = reg.push_blob(repo, data, digest="sha256:xyz")
    assert oci_error(r)[:2] == (400, "DIGEST_INVALID")
    r = reg.head_blob(repo, "sha256:XYZ")
    assert r.status_code == 400
    # the ECR API does not see it either
    avail = ecr(server).batch_check_layer_availability(repositoryName=repo, layerDigests=[sha256(data)])
    assert avail["layers"][0]["layerAvailability"] == "UNAVAILABLE"


def test_cross_repository_mount(server, reg):
    src, dst, secret = new_repo(server), new_repo(server), new_repo(server)
    data = os.urandom(4000)
    assert reg.push_blob(src, data).status_code == 201
    assert reg.push_blob(secret, data).status_code == 201
    d = sha256(data)

    r = reg.start_upload(dst, params={"mount": d, "from": src})
    assert r.status_code == 201, r.text
    assert location(r) == f"/v2/{dst}/blobs/{d}"
    assert r.headers["Docker-Content-Digest"] == d
    assert reg.get_blob(dst, d).content == data

    # a blob the source does not hold: a plain upload session
    missing = sha256(b"not there")
    r = reg.start_upload(dst, params={"mount": missing, "from": src})
    assert r.status_code == 202 and "/blobs/uploads/" in location(r)

    # skopeo copying between repositories of the registry mounts the layers
    img = make_image(layers=2)
    reg.push_image(src, img, "v1")
    copy = new_repo(server)
    skopeo("copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--src-creds", f"AWS:{reg.password}",
           "--dest-creds", f"AWS:{reg.password}", f"docker://127.0.0.1:{server.port}/{src}:v1",
           f"docker://127.0.0.1:{server.port}/{copy}:v1")
    assert reg.get_manifest(copy, "v1").headers["Docker-Content-Digest"] == img.digest
    for dd, b in img.blobs:
        assert reg.get_blob(copy, dd).content == b

    # a caller who may push to `target` but not read `secret`
    target = new_repo(server)
    _, _, pw = new_user_pw(server, allow("ecr:*", repo_arn(server, target)))
    user = Registry(server, pw)
    r = user.start_upload(target, params={"mount": d, "from": secret})
    assert r.status_code == 202, (r.status_code, r.text)
    assert "/blobs/uploads/" in location(r)
    assert user.head_blob(target, d).status_code == 404
    assert reg.head_blob(target, d).status_code == 404
    # the fallback session works as any upload
    r = user.finish(location(r), d, data)
    assert r.status_code == 201, r.text
    assert user.get_blob(target, d).content == data
    # and reading `secret` directly is denied
    assert oci_error(user.get_blob(secret, d))[:2] == (403, "DENIED")


def test_range_get(server, reg):
    repo = new_repo(server)
    data = os.urandom(1000)
    reg.push_blob(repo, data)
    d = sha256(data)
    r = reg.get_blob(repo, d, headers={"Range": "bytes=10-19"})
    assert r.status_code == 206, r.text
    assert r.headers["Content-Range"] == "bytes 10-19/1000"
    assert r.content == data[10:20]
    assert r.headers["Content-Length"] == "10"
    r = reg.get_blob(repo, d, headers={"Range": "bytes=990-"})
    assert r.status_code == 206
    assert r.headers["Content-Range"] == "bytes 990-999/1000"
    assert r.content == data[990:]
    r = reg.get_blob(repo, d, headers={"Range": "bytes=2000-2010"})
    assert r.status_code == 416, (r.status_code, r.text)
    r = reg.get_blob(repo, d)
    assert r.status_code == 200 and r.content == data


def test_upload_cancel(server, reg):
    repo = new_repo(server)
    data = os.urandom(500)
    loc = location(reg.start_upload(repo))
    assert reg.patch(loc, data, start=0).status_code == 202
    r = reg.request("DELETE", loc)
    assert r.status_code == 204, r.text
    assert oci_error(reg.request("GET", loc))[:2] == (404, "BLOB_UPLOAD_UNKNOWN")
    assert oci_error(reg.patch(loc, data, start=0))[:2] == (404, "BLOB_UPLOAD_UNKNOWN")
    assert oci_error(reg.finish(loc, sha256(data)))[:2] == (404, "BLOB_UPLOAD_UNKNOWN")
    assert reg.head_blob(repo, sha256(data)).status_code == 404
    # another caller cannot see or touch someone's session
    loc = location(reg.start_upload(repo))
    _, _, pw = new_user_pw(server, allow("ecr:*", repo_arn(server, repo)))
    assert oci_error(Registry(server, pw).request("GET", loc))[:2] == (404, "BLOB_UPLOAD_UNKNOWN")


def test_delete_blob_is_unsupported(server, reg):
    repo = new_repo(server)
    data = os.urandom(100)
    reg.push_blob(repo, data)
    r = reg.request("DELETE", f"/v2/{repo}/blobs/{sha256(data)}")
    assert oci_error(r)[:2] == (405, "UNSUPPORTED")
    assert reg.head_blob(repo, sha256(data)).status_code == 200


# ---------------------------------------------------------------------------------------
# Manifests
# ---------------------------------------------------------------------------------------

def test_manifest_errors(server, reg):
    repo = new_repo(server)
    img = make_image(layers=2)
    # blobs missing
    r = reg.put_manifest(repo, "v1", img.manifest)
    status, code, msg = oci_error(r)
    assert (status, code) == (400, "MANIFEST_BLOB_UNKNOWN")
    assert img.blobs[0][0] in msg and img.blobs[1][0] in msg
    detail = r.json()["errors"][0]["detail"]
    assert {x["digest"] for x in detail} == {d for d, _ in img.blobs}
    # only one layer missing
    for d, b in img.blobs[:2]:
        reg.push_blob(repo, b, d)
    r = reg.put_manifest(repo, "v1", img.manifest)
    assert oci_error(r)[:2] == (400, "MANIFEST_BLOB_UNKNOWN")
    assert img.blobs[2][0] in oci_error(r)[2]
    assert oci_error(reg.get_manifest(repo, "v1"))[:2] == (404, "MANIFEST_UNKNOWN")

    for body in [b"not json", b"[]", b'{"schemaVersion": 1, "name": "x"}',
                 json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST}).encode(),
                 json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                             "config": {"digest": "sha256:zz", "size": 1}}).encode()]:
        r = reg.put_manifest(repo, "bad", body)
        assert oci_error(r)[:2] == (400, "MANIFEST_INVALID"), (body, r.status_code, r.text)
    # a media type that differs from the body's
    reg.push_blob(repo, img.blobs[2][1])
    r = reg.put_manifest(repo, "v1", img.manifest, media_type=DOCKER_MANIFEST)
    assert oci_error(r)[:2] == (400, "MANIFEST_INVALID")
    # by digest: the digest must be the body's
    r = reg.put_manifest(repo, sha256(b"other"), img.manifest)
    assert oci_error(r)[:2] == (400, "DIGEST_INVALID")
    r = reg.put_manifest(repo, "v1", img.manifest)
    assert r.status_code == 201
    # references no manifest can have are unknown manifests (test_registry_wire.py has more)
    assert oci_error(reg.get_manifest(repo, "sha256:abc"))[:2] == (404, "MANIFEST_UNKNOWN")
    assert oci_error(reg.get_manifest(repo, ".bad-tag"))[:2] == (404, "MANIFEST_UNKNOWN")
    assert oci_error(reg.get_manifest(repo, "nosuchtag"))[:2] == (404, "MANIFEST_UNKNOWN")
    r = reg.get_manifest(repo, "nosuchtag", head=True)
    assert r.status_code == 404 and r.content == b""
    r = reg.get_manifest(repo, "v1", head=True)
    assert r.status_code == 200 and r.content == b""
    assert r.headers["Docker-Content-Digest"] == img.digest
    assert int(r.headers["Content-Length"]) == len(img.manifest)


def test_invalid_repository_names(server, reg):
    for path in ["/v2/MyRepo/tags/list", "/v2/my..repo/manifests/latest", "/v2/UPPER/blobs/uploads/",
                 "/v2/a/tags/list", "/v2/-ab/tags/list", f"/v2/Ab/blobs/{sha256(b'x')}"]:
        method = "POST" if path.endswith("/uploads/") else "GET"
        r = reg.request(method, path)
        assert oci_error(r)[:2] == (400, "NAME_INVALID"), (path, r.status_code, r.text)
    # ".." path segments reach the server as sent (no client-side normalisation)
    for path in ["/v2/ab/../cd/manifests/latest", "/v2/ab/../../etc/tags/list",
                 "/v2/ab/./cd/tags/list"]:
        status, body, _ = reg.raw_path("GET", path)
        assert status == 400, (path, status, body)
        assert json.loads(body)["errors"][0]["code"] == "NAME_INVALID", (path, body)
    # and through the ECR API
    code, _, _ = client_error(ecr(server).create_repository, repositoryName="MyRepo")
    assert code == "InvalidParameterException"
    code, _, _ = client_error(ecr(server).create_repository, repositoryName="a/../b")
    assert code == "InvalidParameterException"


def test_push_to_missing_repository_is_name_unknown(server, reg, root_pw, tmp_path):
    name = unique("missing")
    img = make_image(layers=1)
    r = reg.push_blob(name, img.blobs[0][1])
    status, code, msg = oci_error(r)
    assert (status, code) == (404, "NAME_UNKNOWN")
    assert name in msg and server.account in msg
    assert oci_error(reg.start_upload(name))[:2] == (404, "NAME_UNKNOWN")
    assert oci_error(reg.put_manifest(name, "v1", img.manifest))[:2] == (404, "NAME_UNKNOWN")
    assert oci_error(reg.get_manifest(name, "v1"))[:2] == (404, "NAME_UNKNOWN")
    assert oci_error(reg.request("GET", f"/v2/{name}/tags/list"))[:2] == (404, "NAME_UNKNOWN")
    write_oci_layout(tmp_path / "src", {"v1": img})
    p = skopeo_push(server, root_pw, tmp_path / "src", "v1", name, check=False)
    assert p.returncode != 0
    # never created on push
    assert client_error(ecr(server).describe_repositories,
                        repositoryNames=[name])[0] == "RepositoryNotFoundException"


def test_immutable_tags(server, reg, root_pw, tmp_path):
    repo = new_repo(server, imageTagMutability="IMMUTABLE")
    one, two = make_image(layers=1), make_image(layers=1)
    reg.push_image(repo, one, "v1")
    for d, b in two.blobs:
        reg.push_blob(repo, b, d)
    r = reg.put_manifest(repo, "v1", two.manifest)
    status, code, msg = oci_error(r)
    assert (status, code) == (400, "TAG_INVALID")
    assert "v1" in msg and repo in msg
    code, msg, _ = client_error(ecr(server).put_image, repositoryName=repo, imageTag="v1",
                                imageManifest=two.manifest.decode())
    assert code == "ImageTagAlreadyExistsException", msg
    err = server.cli_error(server.root, "ecr", "put-image", "--repository-name", repo,
                           "--image-tag", "v1", "--image-manifest", two.manifest.decode())
    assert err.code == "ImageTagAlreadyExistsException"
    # the same digest again under the same tag is fine
    r = reg.put_manifest(repo, "v1", one.manifest)
    assert r.status_code == 201, r.text
    write_oci_layout(tmp_path / "one", {"v1": one})
    skopeo_push(server, root_pw, tmp_path / "one", "v1", repo)
    write_oci_layout(tmp_path / "two", {"v1": two})
    p = skopeo_push(server, root_pw, tmp_path / "two", "v1", repo, check=False)
    assert p.returncode != 0
    # a new tag for the other image is fine; v1 still names the first image
    assert reg.put_manifest(repo, "v2", two.manifest).status_code == 201
    assert reg.get_manifest(repo, "v1").headers["Docker-Content-Digest"] == one.digest
    assert reg.get_manifest(repo, "v2").headers["Docker-Content-Digest"] == two.digest

    # IMMUTABLE_WITH_EXCLUSION: tags matching a filter may move
    repo2 = new_repo(server, imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
                     imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "dev-*"}])
    for img in (one, two):
        for d, b in img.blobs:
            reg.push_blob(repo2, b, d)
    assert reg.put_manifest(repo2, "dev-1", one.manifest).status_code == 201
    assert reg.put_manifest(repo2, "dev-1", two.manifest).status_code == 201
    assert reg.put_manifest(repo2, "rel-1", one.manifest).status_code == 201
    assert oci_error(reg.put_manifest(repo2, "rel-1", two.manifest))[:2] == (400, "TAG_INVALID")
    # switching the repository to MUTABLE lets v1 move
    ecr(server).put_image_tag_mutability(repositoryName=repo, imageTagMutability="MUTABLE")
    assert reg.put_manifest(repo, "v1", two.manifest).status_code == 201
    assert reg.get_manifest(repo, "v1").headers["Docker-Content-Digest"] == two.digest


def test_tags_list_pagination(server, reg):
    repo = new_repo(server)
    img = make_image(layers=1)
    tags = ["alpha", "beta", "delta", "gamma", "omega"]
    reg.push_image(repo, img, tags[0])
    for t in tags[1:]:
        assert reg.put_manifest(repo, t, img.manifest).status_code == 201
    r = reg.request("GET", f"/v2/{repo}/tags/list")
    assert r.status_code == 200
    assert r.json() == {"name": repo, "tags": tags}
    assert "Link" not in r.headers

    r = reg.request("GET", f"/v2/{repo}/tags/list?n=2")
    assert r.json()["tags"] == ["alpha", "beta"]
    assert r.headers["Link"] == f'</v2/{repo}/tags/list?n=2&last=beta>; rel="next"'
    seen = list(r.json()["tags"])
    link = r.headers["Link"]
    pages = 1
    while link:
        url = re.match(r"<([^>]+)>", link).group(1)
        r = reg.request("GET", url)
        assert r.status_code == 200
        seen += r.json()["tags"]
        link = r.headers.get("Link")
        pages += 1
    assert seen == tags and pages == 3
    r = reg.request("GET", f"/v2/{repo}/tags/list?last=delta")
    assert r.json()["tags"] == ["gamma", "omega"]
    r = reg.request("GET", f"/v2/{repo}/tags/list?n=10&last=gamma")
    assert r.json()["tags"] == ["omega"] and "Link" not in r.headers
    assert reg.request("GET", f"/v2/{repo}/tags/list?n=x").status_code == 400
    # the ECR view agrees
    ids = ecr(server).list_images(repositoryName=repo, filter={"tagStatus": "TAGGED"})["imageIds"]
    assert sorted(i["imageTag"] for i in ids) == tags
    page1 = ecr(server).list_images(repositoryName=repo, maxResults=2)
    assert len(page1["imageIds"]) == 2 and page1["nextToken"]
    rest = ecr(server).list_images(repositoryName=repo, maxResults=10, nextToken=page1["nextToken"])
    assert len(rest["imageIds"]) == 3 and "nextToken" not in rest


def test_describe_images_pages_newest_first_with_its_filters(server, reg):
    """DescribeImages pages by where the last page ended: every image once, newest first,
    with the tag-status filter; the aws CLI follows the tokens by itself."""
    repo = new_repo(server, prefix="pages")
    pushed = []
    for i in range(7):
        img = make_image(layers=1, size=512)
        reg.push_image(repo, img, ref=f"v{i}" if i % 2 == 0 else None)
        pushed.append((img.digest, i % 2 == 0))
    for status, want in (("ANY", pushed), ("TAGGED", [p for p in pushed if p[1]]),
                         ("UNTAGGED", [p for p in pushed if not p[1]])):
        seen, token, pages = [], None, 0
        while True:
            kw = {"nextToken": token} if token else {}
            out = ecr(server).describe_images(repositoryName=repo, maxResults=2,
                                              filter={"tagStatus": status}, **kw)
            assert len(out["imageDetails"]) <= 2
            seen += out["imageDetails"]
            pages += 1
            token = out.get("nextToken")
            if not token:
                break
        assert sorted(d["imageDigest"] for d in seen) == sorted(d for d, _ in want), status
        times = [d["imagePushedAt"] for d in seen]
        assert times == sorted(times, reverse=True), status
        assert pages == (len(want) + 1) // 2, (status, pages)
    listed = server.cli(server.root, "ecr", "describe-images", "--repository-name", repo, "--page-size", "3")
    assert len(listed["imageDetails"]) == 7
    code, message, status = client_error(ecr(server).describe_images, repositoryName=repo, nextToken="12")
    assert (code, status) == ("InvalidParameterException", 400) and "nextToken" in message, message

def test_catalog(server, reg):
    names = sorted(new_repo(server, prefix="cat") for _ in range(3))
    r = reg.request("GET", "/v2/_catalog")
    assert r.status_code == 200
    everything = r.json()["repositories"]
    assert set(names) <= set(everything)
    assert everything == sorted(everything)
    # paginated walk gives the same list
    seen, url = [], "/v2/_catalog?n=2"
    while url:
        r = reg.request("GET", url)
        page = r.json()["repositories"]
        assert len(page) <= 2
        seen += page
        link = r.headers.get("Link")
        if link:
            assert link == f'</v2/_catalog?n=2&last={page[-1]}>; rel="next"'
        url = re.match(r"<([^>]+)>", link).group(1) if link else None
    assert seen == everything

    # a caller sees only what it may describe; one that may describe nothing is denied
    _, _, pw = new_user_pw(server, allow("ecr:DescribeRepositories", repo_arn(server, names[1])))
    r = Registry(server, pw).request("GET", "/v2/_catalog")
    assert r.status_code == 200 and r.json()["repositories"] == [names[1]]
    arn, _, pw = new_user_pw(server)
    r = Registry(server, pw).request("GET", "/v2/_catalog")
    status, code, msg = oci_error(r)
    assert (status, code) == (403, "DENIED")
    assert arn in msg and "ecr:DescribeRepositories" in msg


def test_referrers_with_oras_and_raw_artifacts(server, reg, root_pw, tmp_path, monkeypatch):
    repo = new_repo(server)
    img = make_image(layers=1)
    reg.push_image(repo, img, "app")

    # ORAS: an SBOM-like artifact whose subject is the image
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sbom.json").write_text('{"packages": []}')
    (tmp_path / "config.json").write_text("{}")
    client = oras.client.OrasClient(hostname=f"127.0.0.1:{server.port}", insecure=True,
                                    auth_backend="basic")
    client.auth.set_basic_auth("AWS", root_pw)
    subject = oras.oci.Subject(mediaType=OCI_MANIFEST, digest=img.digest, size=len(img.manifest))
    r = client.push(target=f"127.0.0.1:{server.port}/{repo}:sbom", files=["sbom.json"],
                    manifest_config="config.json:application/vnd.example.sbom.v1",
                    subject=subject, manifest_annotations={"org.example.kind": "sbom"})
    assert r.status_code == 201, r.text
    sbom_digest = r.headers["Docker-Content-Digest"]
    assert r.headers["OCI-Subject"] == img.digest

    # raw: a signature artifact with artifactType and an empty config
    empty = b"{}"
    sig_blob = os.urandom(64)
    reg.push_blob(repo, empty)
    reg.push_blob(repo, sig_blob)
    sig = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sig.v1",
        "config": descriptor(OCI_EMPTY, empty),
        "layers": [descriptor("application/octet-stream", sig_blob)],
        "subject": img.subject(),
        "annotations": {"org.example.signer": "ci"},
    }).encode()
    r = reg.put_manifest(repo, sha256(sig), sig)
    assert r.status_code == 201, r.text
    assert r.headers["OCI-Subject"] == img.digest

    r = reg.request("GET", f"/v2/{repo}/referrers/{img.digest}")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith(OCI_INDEX)
    body = r.json()
    assert body["schemaVersion"] == 2 and body["mediaType"] == OCI_INDEX
    by = {m["digest"]: m for m in body["manifests"]}
    assert set(by) == {sbom_digest, sha256(sig)}
    assert by[sha256(sig)] == {"mediaType": OCI_MANIFEST, "digest": sha256(sig), "size": len(sig),
                               "artifactType": "application/vnd.example.sig.v1",
                               "annotations": {"org.example.signer": "ci"}}
    assert by[sbom_digest]["artifactType"] == "application/vnd.example.sbom.v1"
    assert by[sbom_digest]["annotations"] == {"org.example.kind": "sbom"}
    assert "OCI-Filters-Applied" not in r.headers

    r = reg.request("GET", f"/v2/{repo}/referrers/{img.digest}",
                    params={"artifactType": "application/vnd.example.sig.v1"})
    assert r.status_code == 200
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    assert [m["digest"] for m in r.json()["manifests"]] == [sha256(sig)]

    # nothing refers to the artifact itself, nor to a digest the registry never saw
    r = reg.request("GET", f"/v2/{repo}/referrers/{sha256(sig)}")
    assert r.status_code == 200 and r.json()["manifests"] == []
    r = reg.request("GET", f"/v2/{repo}/referrers/sha256:{'9' * 64}")
    assert r.status_code == 200 and r.json() == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    # a subject that is not (yet) in the repository
    ghost = "sha256:" + "ab" * 32
    orphan = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sig.v1",
        "config": descriptor(OCI_EMPTY, empty), "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": ghost, "size": 123},
    }).encode()
    r = reg.put_manifest(repo, sha256(orphan), orphan)
    assert r.status_code == 201 and r.headers["OCI-Subject"] == ghost
    r = reg.request("GET", f"/v2/{repo}/referrers/{ghost}")
    assert [m["digest"] for m in r.json()["manifests"]] == [sha256(orphan)]
    assert oci_error(reg.request("GET", f"/v2/{repo}/referrers/sha256:nothex"))[:2] == (400, "DIGEST_INVALID")

    # ORAS pulls the artifact back; describe-images knows its artifact type
    out = client.pull(target=f"127.0.0.1:{server.port}/{repo}:sbom", outdir=str(tmp_path / "out"))
    assert [open(f).read() for f in out] == ['{"packages": []}']
    [d] = ecr(server).describe_images(repositoryName=repo, imageIds=[{"imageDigest": sha256(sig)}])["imageDetails"]
    assert d["artifactMediaType"] == "application/vnd.example.sig.v1"


def test_referrers_artifact_type_falls_back_to_config_media_type(server, reg):
    """distribution-spec, listing referrers: 'If the artifactType is empty or missing in the
    image manifest, the value of artifactType MUST be set to the config descriptor
    mediaType value.'"""
    repo = new_repo(server)
    img = make_image(layers=1)
    reg.push_image(repo, img, "app")
    # an ordinary image manifest (image config) that refers to the image
    child = make_image(layers=1, manifest_extra={"subject": img.subject()})
    reg.push_image(repo, child)
    r = reg.request("GET", f"/v2/{repo}/referrers/{img.digest}")
    assert r.status_code == 200
    [m] = r.json()["manifests"]
    assert m["digest"] == child.digest
    assert m.get("artifactType") == OCI_CONFIG, m
    r = reg.request("GET", f"/v2/{repo}/referrers/{img.digest}", params={"artifactType": OCI_CONFIG})
    assert [m["digest"] for m in r.json()["manifests"]] == [child.digest]


def test_delete_manifest_by_tag_and_digest(server, reg):
    repo = new_repo(server)
    img = make_image(layers=1)
    reg.push_image(repo, img, "a")
    assert reg.put_manifest(repo, "b", img.manifest).status_code == 201

    r = reg.delete_manifest(repo, "a")
    assert r.status_code == 202, r.text
    assert oci_error(reg.get_manifest(repo, "a"))[:2] == (404, "MANIFEST_UNKNOWN")
    assert reg.get_manifest(repo, "b").status_code == 200
    assert reg.get_manifest(repo, img.digest).status_code == 200
    assert reg.request("GET", f"/v2/{repo}/tags/list").json()["tags"] == ["b"]
    assert oci_error(reg.delete_manifest(repo, "a"))[:2] == (404, "MANIFEST_UNKNOWN")

    r = reg.delete_manifest(repo, img.digest)
    assert r.status_code == 202, r.text
    assert oci_error(reg.get_manifest(repo, img.digest))[:2] == (404, "MANIFEST_UNKNOWN")
    assert oci_error(reg.get_manifest(repo, "b"))[:2] == (404, "MANIFEST_UNKNOWN")
    assert reg.request("GET", f"/v2/{repo}/tags/list").json()["tags"] == []
    assert oci_error(reg.delete_manifest(repo, img.digest))[:2] == (404, "MANIFEST_UNKNOWN")
    assert ecr(server).list_images(repositoryName=repo)["imageIds"] == []

    # skopeo delete (by the digest the tag names)
    reg.push_image(repo, img, "s")
    skopeo("delete", "--tls-verify=false", "--creds", f"AWS:{reg.password}",
               f"docker://127.0.0.1:{server.port}/{repo}:s")
    assert oci_error(reg.get_manifest(repo, img.digest))[:2] == (404, "MANIFEST_UNKNOWN")
    # BatchDeleteImage by tag through the API; the image goes with its last tag
    reg.push_image(repo, img, "c")
    out = ecr(server).batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "c"}, {"imageTag": "zz"}])
    assert out["imageIds"] == [{"imageTag": "c", "imageDigest": img.digest}]
    assert out["failures"][0]["failureCode"] == "ImageNotFound"
    assert reg.get_manifest(repo, img.digest).status_code == 404


# ---------------------------------------------------------------------------------------
# Repositories through the ECR API
# ---------------------------------------------------------------------------------------

def test_delete_repository_needs_force_when_not_empty(server, reg):
    repo = new_repo(server)
    img = make_image(layers=1)
    reg.push_image(repo, img, "v1")
    err = server.cli_error(server.root, "ecr", "delete-repository", "--repository-name", repo)
    assert err.code == "RepositoryNotEmptyException", err.stderr
    assert reg.get_manifest(repo, "v1").status_code == 200
    out = server.cli(server.root, "ecr", "delete-repository", "--repository-name", repo, "--force")
    assert out["repository"]["repositoryName"] == repo
    assert oci_error(reg.get_manifest(repo, "v1"))[:2] == (404, "NAME_UNKNOWN")
    assert client_error(ecr(server).describe_repositories,
                        repositoryNames=[repo])[0] == "RepositoryNotFoundException"
    # an empty repository goes without force; a missing one is RepositoryNotFoundException
    empty = new_repo(server)
    server.cli(server.root, "ecr", "delete-repository", "--repository-name", empty)
    err = server.cli_error(server.root, "ecr", "delete-repository", "--repository-name", empty)
    assert err.code == "RepositoryNotFoundException"
    # a re-created repository of the same name starts empty
    ecr(server).create_repository(repositoryName=repo)
    assert ecr(server).list_images(repositoryName=repo)["imageIds"] == []
    assert reg.head_blob(repo, img.blobs[0][0]).status_code == 404


def test_repository_policy_invalid_json_keeps_old_policy(server):
    repo = new_repo(server)
    good = json.dumps(doc({"Sid": "Pull", "Effect": "Allow", "Principal": "*",
                           "Action": ["ecr:BatchGetImage"]}))
    out = server.cli(server.root, "ecr", "set-repository-policy", "--repository-name", repo,
                     "--policy-text", good)
    assert json.loads(out["policyText"]) == json.loads(good)
    err = server.cli_error(server.root, "ecr", "set-repository-policy", "--repository-name", repo,
                           "--policy-text", '{"Version": "2012-10-17", "Statement": [')
    assert err.code == "InvalidParameterException", err.stderr
    for bad in ["not json", "[]",
                json.dumps(doc({"Effect": "Allow", "Principal": "*", "Action": "ecr:BatchGetImage",
                                "Bogus": 1})),
                json.dumps(doc({"Effect": "Maybe", "Principal": "*", "Action": "ecr:BatchGetImage"})),
                json.dumps(doc({"Effect": "Allow", "Action": "ecr:BatchGetImage"}))]:
        code, msg, _ = client_error(ecr(server).set_repository_policy, repositoryName=repo, policyText=bad)
        assert code == "InvalidParameterException", (bad, code, msg)
    # a policy that would lock the caller out of SetRepositoryPolicy needs force
    lockout = json.dumps(doc({"Effect": "Deny", "Principal": "*", "Action": "ecr:*"}))
    code, msg, _ = client_error(ecr(server).set_repository_policy, repositoryName=repo, policyText=lockout)
    assert code == "InvalidParameterException", msg
    out = server.cli(server.root, "ecr", "get-repository-policy", "--repository-name", repo)
    assert json.loads(out["policyText"]) == json.loads(good)
    server.cli(server.root, "ecr", "delete-repository-policy", "--repository-name", repo)
    err = server.cli_error(server.root, "ecr", "get-repository-policy", "--repository-name", repo)
    assert err.code == "RepositoryPolicyNotFoundException"


def test_policy_writes_refuse_not_principal_with_allow(server):
    """SetRepositoryPolicy and PutRegistryPolicy refuse an Allow with NotPrincipal (AWS:
    "NotPrincipal must be used with Effect Deny") naming the statement; nothing is stored.
    NotPrincipal with Deny is accepted."""
    repo = new_repo(server)
    c = ecr(server)
    good = json.dumps(doc({"Sid": "Pull", "Effect": "Allow", "Principal": "*", "Action": "ecr:BatchGetImage"}))
    c.set_repository_policy(repositoryName=repo, policyText=good)
    bad = json.dumps(doc(
        {"Sid": "Pull", "Effect": "Allow", "Principal": "*", "Action": "ecr:BatchGetImage"},
        {"Sid": "AllButMallory", "Effect": "Allow",
         "NotPrincipal": {"AWS": f"arn:aws:iam::{server.account}:root"}, "Action": "ecr:*"}))
    code, msg, status = client_error(c.set_repository_policy, repositoryName=repo, policyText=bad)
    assert (status, code) == (400, "InvalidParameterException"), msg
    assert msg.startswith("Invalid parameter at 'PolicyText' failed to satisfy constraint: "
                          "'Invalid repository policy provided': ALLOW_WITH_NOT_PRINCIPAL Statement[1].NotPrincipal: "
                          "Statement[1] (Sid \"AllButMallory\") uses NotPrincipal with \"Effect\": \"Allow\""), msg
    assert json.loads(c.get_repository_policy(repositoryName=repo)["policyText"]) == json.loads(good)
    code, msg, status = client_error(c.put_registry_policy, policyText=bad)
    assert (status, code) == (400, "InvalidParameterException"), msg
    assert "'Invalid registry policy provided': ALLOW_WITH_NOT_PRINCIPAL Statement[1].NotPrincipal" in msg, msg
    assert client_error(c.get_registry_policy)[0] == "RegistryPolicyNotFoundException"
    # With Deny it is what NotPrincipal is for.
    deny = json.dumps(doc(
        {"Sid": "Pull", "Effect": "Allow", "Principal": "*", "Action": "ecr:BatchGetImage"},
        {"Sid": "OnlyRoot", "Effect": "Deny", "NotPrincipal": {"AWS": f"arn:aws:iam::{server.account}:root"},
         "Action": "ecr:DeleteRepository"}))
    c.set_repository_policy(repositoryName=repo, policyText=deny)
    assert json.loads(c.get_repository_policy(repositoryName=repo)["policyText"]) == json.loads(deny)


def test_policy_writes_refuse_principals_that_do_not_exist(server):
    """A repository, registry or role trust policy naming an IAM user or role of an account
    this server hosts that does not exist is refused ("Invalid principal in policy", with
    the ARN); other accounts' principals, account roots, existing users and roles, `*` and
    sessions are accepted."""
    acct = server.account
    other = server.account_create()
    repo = new_repo(server)
    c = ecr(server)
    iam = server.iam()
    user, _ = server.new_user(path="/team/")
    role = unique("role")
    iam.create_role(RoleName=role, Path="/svc/", AssumeRolePolicyDocument=json.dumps(doc(
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{acct}:user/team/{user}"}, "Action": "sts:AssumeRole"})))

    def grant(*principals):
        return json.dumps(doc({"Sid": "Pull", "Effect": "Allow", "Principal": {"AWS": list(principals)},
                               "Action": "ecr:BatchGetImage"}))

    fine = grant(f"arn:aws:iam::{acct}:user/team/{user}", f"arn:aws:iam::{acct}:role/svc/{role}",
                 f"arn:aws:iam::{acct}:root", other.account_id, f"arn:aws:iam::{other.account_id}:root",
                 "999999999999", "arn:aws:iam::999999999999:user/anyone", "arn:aws:iam::999999999999:role/any",
                 f"arn:aws:sts::{acct}:assumed-role/{role}/session", f"arn:aws:sts::{acct}:federated-user/fed")
    c.set_repository_policy(repositoryName=repo, policyText=fine)
    bad_cases = [
        (f"arn:aws:iam::{acct}:user/ghost", f"account {acct} has no IAM user named \"ghost\""),
        (f"arn:aws:iam::{acct}:role/ghost", f"account {acct} has no IAM role named \"ghost\""),
        (f"arn:aws:iam::{acct}:user/{user}", f"its user \"{user}\" is arn:aws:iam::{acct}:user/team/{user}"),
        (f"arn:aws:iam::{other.account_id}:user/{user}", f"account {other.account_id} has no IAM user"),
        (f"arn:aws:iam::{acct}:group/admins", "an IAM group cannot be a principal"),
    ]
    for arn, why in bad_cases:
        text = grant(f"arn:aws:iam::{acct}:root", arn)
        code, msg, status = client_error(c.set_repository_policy, repositoryName=repo, policyText=text)
        assert (status, code) == (400, "InvalidParameterException"), (arn, msg)
        assert msg.startswith("Invalid parameter at 'PolicyText' failed to satisfy constraint: "
                              f"'Invalid repository policy provided': Invalid principal in policy: \"AWS\":\"{arn}\" "
                              "(Statement[0].Principal.AWS[1]: "), (arn, msg)
        assert why in msg, (arn, msg)
        code, msg, status = client_error(c.put_registry_policy, policyText=text)
        assert (status, code) == (400, "InvalidParameterException"), (arn, msg)
        assert f"'Invalid registry policy provided': Invalid principal in policy: \"AWS\":\"{arn}\"" in msg, msg
        # Role trust policies: IAM's MalformedPolicyDocument, on create and on update.
        trust = json.dumps(doc({"Effect": "Allow", "Principal": {"AWS": arn}, "Action": "sts:AssumeRole"}))
        code, msg, status = client_error(iam.create_role, RoleName=unique("r"), AssumeRolePolicyDocument=trust)
        assert (status, code) == (400, "MalformedPolicyDocument"), (arn, msg)
        assert msg.startswith(f"Invalid principal in policy: \"AWS\":\"{arn}\""), msg
        code, msg, status = client_error(iam.update_assume_role_policy, RoleName=role, PolicyDocument=trust)
        assert (status, code) == (400, "MalformedPolicyDocument"), (arn, msg)
    # Nothing changed.
    assert json.loads(c.get_repository_policy(repositoryName=repo)["policyText"]) == json.loads(fine)
    assert client_error(c.get_registry_policy)[0] == "RegistryPolicyNotFoundException"
    got = iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
    assert got["Statement"][0]["Principal"] == {"AWS": f"arn:aws:iam::{acct}:user/team/{user}"}
    # A NotPrincipal naming a missing user is refused as well; once the user exists, it is accepted.
    later = unique("later")
    deny = json.dumps(doc(
        {"Sid": "Pull", "Effect": "Allow", "Principal": "*", "Action": "ecr:BatchGetImage"},
        {"Effect": "Deny", "NotPrincipal": {"AWS": [f"arn:aws:iam::{acct}:user/{later}", acct]},
         "Action": "ecr:DeleteRepository"}))
    code, msg, _ = client_error(c.set_repository_policy, repositoryName=repo, policyText=deny)
    assert code == "InvalidParameterException" and f"arn:aws:iam::{acct}:user/{later}" in msg, msg
    assert "(Statement[1].NotPrincipal.AWS[0]: " in msg, msg
    server.new_user(later)
    c.set_repository_policy(repositoryName=repo, policyText=deny)
    # A role may trust a user created after it was refused; and a registry policy naming existing principals is stored.
    trust = json.dumps(doc({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{acct}:user/{later}"},
                            "Action": "sts:AssumeRole"}))
    iam.update_assume_role_policy(RoleName=role, PolicyDocument=trust)
    registry = json.dumps(doc({"Sid": "Rep", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{acct}:user/{later}"},
                               "Action": "ecr:CreateRepository", "Resource": "*"}))
    c.put_registry_policy(policyText=registry)
    c.delete_registry_policy()


LIFECYCLE = json.dumps({"rules": [{
    "rulePriority": 1, "description": "keep the last 10 release images",
    "selection": {"tagStatus": "tagged", "tagPrefixList": ["release"], "countType": "imageCountMoreThan",
                  "countNumber": 10},
    "action": {"type": "expire"}}]})


def test_lifecycle_policy_validation(server):
    repo = new_repo(server)
    c = ecr(server)
    assert client_error(c.get_lifecycle_policy, repositoryName=repo)[0] == "LifecyclePolicyNotFoundException"
    out = server.cli(server.root, "ecr", "put-lifecycle-policy", "--repository-name", repo,
                     "--lifecycle-policy-text", LIFECYCLE)
    assert out["lifecyclePolicyText"] == LIFECYCLE
    rule = json.loads(LIFECYCLE)["rules"][0]

    def variant(**sel):
        r = json.loads(json.dumps(rule))
        r["selection"].update(sel)
        return r

    bads = [
        "{}",
        json.dumps({"rules": []}),
        json.dumps({"rules": [variant(tagStatus="sometimes")], "pad": "x" * 100}),
        json.dumps({"rules": [variant(tagPrefixList=[])]}),
        json.dumps({"rules": [variant(countType="imageCountMoreThan", countUnit="days")]}),
        json.dumps({"rules": [variant(countType="sinceImagePushed")]}),
        json.dumps({"rules": [variant(countNumber=0)]}),
        json.dumps({"rules": [rule, dict(rule, description="same priority")]}),
        json.dumps({"rules": [dict(rule, action={"type": "explode"})]}),
        "not json" + " " * 100,
    ]
    for i, bad in enumerate(bads):
        bad = bad.ljust(100)  # the clients themselves refuse texts under 100 characters
        if i == 0:
            err = server.cli_error(server.root, "ecr", "put-lifecycle-policy", "--repository-name", repo,
                                   "--lifecycle-policy-text", bad)
            assert err.code == "InvalidParameterException", (bad, err.stderr)
        else:
            code, msg, _ = client_error(c.put_lifecycle_policy, repositoryName=repo, lifecyclePolicyText=bad)
            assert code == "InvalidParameterException", (bad, code, msg)
    assert c.get_lifecycle_policy(repositoryName=repo)["lifecyclePolicyText"] == LIFECYCLE
    ok2 = json.dumps({"rules": [{"rulePriority": 2, "selection": {"tagStatus": "untagged",
                      "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 14},
                      "action": {"type": "expire"}}]})
    c.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=ok2)
    assert c.get_lifecycle_policy(repositoryName=repo)["lifecyclePolicyText"] == ok2
    out = c.delete_lifecycle_policy(repositoryName=repo)
    assert out["lifecyclePolicyText"] == ok2
    assert client_error(c.get_lifecycle_policy, repositoryName=repo)[0] == "LifecyclePolicyNotFoundException"


def test_repository_tags_and_resource_tag_conditions(server):
    repo = unique("tagged")
    server.cli(server.root, "ecr", "create-repository", "--repository-name", repo,
               "--tags", "Key=team,Value=blue", "Key=env,Value=dev")
    arn = repo_arn(server, repo)
    out = server.cli(server.root, "ecr", "list-tags-for-resource", "--resource-arn", arn)
    assert sorted((t["Key"], t["Value"]) for t in out["tags"]) == [("env", "dev"), ("team", "blue")]
    server.cli(server.root, "ecr", "tag-resource", "--resource-arn", arn, "--tags", "Key=env,Value=prod")
    server.cli(server.root, "ecr", "untag-resource", "--resource-arn", arn, "--tag-keys", "team")
    out = server.cli(server.root, "ecr", "list-tags-for-resource", "--resource-arn", arn)
    assert out["tags"] == [{"Key": "env", "Value": "prod"}]
    err = server.cli_error(server.root, "ecr", "tag-resource", "--resource-arn", arn, "--tags",
                           "Key=aws:x,Value=y")
    assert err.code == "InvalidTagParameterException"
    err = server.cli_error(server.root, "ecr", "list-tags-for-resource", "--resource-arn",
                           repo_arn(server, "nosuchrepo"))
    assert err.code == "RepositoryNotFoundException"

    # aws:ResourceTag / ecr:ResourceTag decide registry requests
    other = new_repo(server, tags=[{"Key": "env", "Value": "dev"}])
    reg = Registry(server, login_password(server, server.root))
    img = make_image(layers=1)
    reg.push_image(repo, img, "v1")
    reg.push_image(other, img, "v1")
    _, creds, pw = new_user_pw(server, allow(["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                                             "*", Condition={"StringEquals": {"ecr:ResourceTag/env": "prod"}}))
    user = Registry(server, pw)
    assert user.get_manifest(repo, "v1").status_code == 200
    r = user.get_manifest(other, "v1")
    assert oci_error(r)[:2] == (403, "DENIED")
    # retagging changes the decision for the same password
    ecr(server).tag_resource(resourceArn=repo_arn(server, other), tags=[{"Key": "env", "Value": "prod"}])
    time.sleep(SETTLE)
    assert user.get_manifest(other, "v1").status_code == 200


def test_policy_and_tag_changes_take_effect_at_once_with_long_caches(tmp_path_factory):
    """ECR writes flush no IAM cache; what they change that decides requests (repository
    policy, repository tags) is read per request, so it counts on the very next one even
    when the server caches credentials and identity policies for ten minutes."""
    from berth import Server
    s = Server(tmp_path_factory.mktemp("longcache") / "data")
    s.config_path.write_text(s.config_path.read_text().replace(
        f"cache_ttl_ms = {int(0.1 * 1000)}", "cache_ttl_ms = 600000"))
    assert "cache_ttl_ms = 600000" in s.config_path.read_text()
    s.start()
    try:
        root = ecr(s)
        repo = new_repo(s, tags=[{"Key": "env", "Value": "dev"}])
        arn = repo_arn(s, repo)
        name, creds = s.new_user(policies=[doc(
            allow("ecr:ListImages", "*", Condition={"StringEquals": {"ecr:ResourceTag/env": "prod"}}),
            allow("ecr:DescribeImages", "*"))])
        user = ecr(s, creds)
        assert client_error(user.list_images, repositoryName=repo)[0] == "AccessDeniedException"
        assert user.describe_images(repositoryName=repo)["imageDetails"] == []
        root.tag_resource(resourceArn=arn, tags=[{"Key": "env", "Value": "prod"}])
        assert user.list_images(repositoryName=repo)["imageIds"] == []
        root.untag_resource(resourceArn=arn, tagKeys=["env"])
        assert client_error(user.list_images, repositoryName=repo)[0] == "AccessDeniedException"
        root.set_repository_policy(repositoryName=repo, policyText=json.dumps(doc({
            "Effect": "Deny", "Principal": {"AWS": f"arn:aws:iam::{s.account}:user/{name}"},
            "Action": "ecr:DescribeImages"})))
        code, msg, _ = client_error(user.describe_images, repositoryName=repo)
        assert code == "AccessDeniedException" and "explicit deny" in msg
        root.delete_repository_policy(repositoryName=repo)
        assert user.describe_images(repositoryName=repo)["imageDetails"] == []
    finally:
        s.stop()


# ---------------------------------------------------------------------------------------
# Authentication and authorization of /v2
# ---------------------------------------------------------------------------------------

def test_registry_authentication(server, root_pw, tmp_path_factory):
    anon = Registry(server)
    r = anon.request("GET", "/v2/")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert oci_error(r)[1] == "UNAUTHORIZED"
    r = anon.request("GET", "/v2/anything/tags/list")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert Registry(server, root_pw + "x").request("GET", "/v2/").status_code == 401
    assert Registry(server, "garbage").request("GET", "/v2/").status_code == 401
    r = anon.request("GET", "/v2/", headers={
        "Authorization": "Basic " + base64.b64encode(f"bob:{root_pw}".encode()).decode()})
    assert r.status_code == 401
    r = Registry(server, root_pw).request("GET", "/v2/")
    assert r.status_code == 200 and r.json() == {}
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"

    # a password from another server (another data directory) is not one of ours
    other = start_server(tmp_path_factory, "other")
    try:
        r = Registry(other, root_pw).request("GET", "/v2/")
        assert r.status_code == 401, (r.status_code, r.text)
        assert r.headers["WWW-Authenticate"].startswith("Basic realm=")
        assert oci_error(r)[1] == "UNAUTHORIZED"
        other_pw = login_password(other, other.root)
        assert Registry(server, other_pw).request("GET", "/v2/").status_code == 401
        assert Registry(other, other_pw).request("GET", "/v2/").status_code == 200
    finally:
        assert other.stop() == 0


def test_registry_authorization(server, reg):
    repo = new_repo(server)
    img = make_image(layers=1)
    reg.push_image(repo, img, "v1")
    arn, creds, pw = new_user_pw(server, allow(["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                                               repo_arn(server, repo)))
    user = Registry(server, pw)
    assert user.get_manifest(repo, "v1").status_code == 200
    assert user.get_blob(repo, img.blobs[0][0]).content == img.blobs[0][1]
    # HEAD blob is BatchCheckLayerAvailability, not granted
    assert user.head_blob(repo, img.blobs[0][0]).status_code == 403
    r = user.put_manifest(repo, "v2", img.manifest)
    status, code, msg = oci_error(r)
    assert (status, code) == (403, "DENIED")
    assert msg.startswith(f"User: {arn} is not authorized to perform: ecr:PutImage on resource: "
                          f"{repo_arn(server, repo)} because"), msg
    status, code, msg = oci_error(user.start_upload(repo))
    assert (status, code) == (403, "DENIED") and "ecr:InitiateLayerUpload" in msg
    status, code, msg = oci_error(user.delete_manifest(repo, "v1"))
    assert (status, code) == (403, "DENIED") and "ecr:BatchDeleteImage" in msg
    status, code, msg = oci_error(user.request("GET", f"/v2/{repo}/tags/list"))
    assert (status, code) == (403, "DENIED") and "ecr:ListImages" in msg
    # authorization before existence: a denied caller learns nothing of a missing repository
    missing = unique("nosuch")
    status, code, msg = oci_error(user.get_manifest(missing, "v1"))
    assert (status, code) == (403, "DENIED") and repo_arn(server, missing) in msg
    assert oci_error(reg.get_manifest(missing, "v1"))[:2] == (404, "NAME_UNKNOWN")

    # policy changes apply to passwords already given out
    name = arn.rsplit("/", 1)[1]
    server.iam().put_user_policy(UserName=name, PolicyName="p1", PolicyDocument=json.dumps(
        doc({"Effect": "Deny", "Action": "ecr:BatchGetImage", "Resource": "*"})))
    time.sleep(SETTLE)
    assert oci_error(user.get_manifest(repo, "v1"))[:2] == (403, "DENIED")
    server.iam().delete_user_policy(UserName=name, PolicyName="p1")
    time.sleep(SETTLE)
    assert user.get_manifest(repo, "v1").status_code == 200
    # deleting the access key ends its passwords
    server.iam().delete_access_key(UserName=name, AccessKeyId=creds.access_key_id)
    time.sleep(SETTLE)
    r = user.get_manifest(repo, "v1")
    assert oci_error(r)[:2] == (403, "DENIED"), (r.status_code, r.text)


def test_other_account_registry_by_host(server, reg):
    b = server.account_create()
    pw_b = login_password(server, b)
    data = ecr(server, b).get_authorization_token(registryIds=[b.account_id])["authorizationData"][0]
    assert data["proxyEndpoint"] == f"http://{b.account_id}.dkr.ecr.localhost:{server.port}"
    data = ecr(server).get_authorization_token()["authorizationData"][0]
    assert data["proxyEndpoint"] == f"http://127.0.0.1:{server.port}"

    repo = new_repo(server, creds=b)
    host = f"{b.account_id}.dkr.ecr.localhost:{server.port}"
    breg = Registry(server, pw_b, host=host)
    img = make_image(layers=1)
    breg.push_image(repo, img, "v1")
    assert breg.get_manifest(repo, "v1").content == img.manifest
    assert ecr(server, b).list_images(repositoryName=repo)["imageIds"] == [
        {"imageDigest": img.digest, "imageTag": "v1"}]
    # a host that names no account is the caller's own registry: B needs no DNS for its
    # own; the default account's registry, addressed by its account host, is another
    # registry, where B (no repository policy there) is denied before existence is looked at
    assert Registry(server, pw_b).get_manifest(repo, "v1").content == img.manifest
    a_host = f"{server.account}.dkr.ecr.localhost:{server.port}"
    assert oci_error(Registry(server, pw_b, host=a_host).get_manifest(repo, "v1"))[:2] == (403, "DENIED")
    # A's root on B's registry: no repository policy lets it in
    r = Registry(server, reg.password, host=host).get_manifest(repo, "v1")
    assert oci_error(r)[:2] == (403, "DENIED")
    assert oci_error(reg.get_manifest(repo, "v1"))[:2] == (404, "NAME_UNKNOWN")
    # nor does the ECR API let A into B's registry
    c = ecr(server)
    for call, kw in [(c.describe_repositories, {}), (c.list_images, {"repositoryName": repo}),
                     (c.describe_images, {"repositoryName": repo}),
                     (c.create_repository, {"repositoryName": unique("intrude")}),
                     (c.delete_repository, {"repositoryName": repo, "force": True}),
                     (c.set_repository_policy, {"repositoryName": repo, "policyText": json.dumps(
                         doc({"Effect": "Allow", "Principal": "*", "Action": "ecr:*"}))})]:
        code, msg, _ = client_error(call, registryId=b.account_id, **kw)
        assert code == "AccessDeniedException", (call, code, msg)
    code, _, _ = client_error(c.tag_resource, resourceArn=repo_arn(server, repo, b.account_id),
                              tags=[{"Key": "k", "Value": "v"}])
    assert code == "AccessDeniedException"
    assert ecr(server, b).list_images(repositoryName=repo)["imageIds"] == [
        {"imageDigest": img.digest, "imageTag": "v1"}]


def test_other_account_repository_names_do_not_leak(server, reg):
    """DescribeRepositories and /v2/_catalog on another account's registry name nothing the
    caller may not describe: denials name only the registry, and neither a denial nor a
    guessed name works as a cursor."""
    b = server.account_create()
    names = sorted(unique(f"hidden{i}") for i in range(4))
    for n in names:
        ecr(server, b).create_repository(repositoryName=n)

    def leaked(text):
        return [n for n in names if n in text]

    c = ecr(server)
    code, msg, _ = client_error(c.describe_repositories, registryId=b.account_id)
    assert code == "AccessDeniedException"
    assert leaked(msg) == [], msg
    assert f"arn:aws:ecr:us-east-1:{b.account_id}:repository/*" in msg
    # the attack: feed what was learnt (or guessed) back as nextToken, walk the list
    for guess in ["", "a", names[0], names[1], "zzz"]:
        code, msg, _ = client_error(c.describe_repositories, registryId=b.account_id, nextToken=guess)
        assert code in ("InvalidParameterException", "AccessDeniedException"), (guess, code)
        assert leaked(msg) == [], (guess, msg)
    # B lets A describe one repository: A sees that one, and walking pages shows no other
    ecr(server, b).set_repository_policy(repositoryName=names[2], policyText=json.dumps(doc({
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{server.account}:root"},
        "Action": "ecr:DescribeRepositories"})))
    seen, token, pages = [], None, []
    while True:
        out = c.describe_repositories(registryId=b.account_id, maxResults=1,
                                      **({"nextToken": token} if token else {}))
        pages.append(json.dumps(out, default=str))
        seen += [r["repositoryName"] for r in out["repositories"]]
        token = out.get("nextToken")
        if not token:
            break
        assert leaked(token) == [] and len(pages) < 10
    assert seen == [names[2]]
    assert leaked("".join(pages)) == [names[2]]
    # a cursor B's own pages hand out is no good to A, and tampering is refused
    own = ecr(server, b).describe_repositories(maxResults=1)
    assert own["repositories"][0]["repositoryName"] == names[0] and leaked(own["nextToken"]) == []
    code, msg, _ = client_error(c.describe_repositories, registryId=b.account_id, nextToken=own["nextToken"])
    assert code == "InvalidParameterException" and leaked(msg) == []
    bad = own["nextToken"][:-2] + ("AA" if not own["nextToken"].endswith("AA") else "BB")
    code, _, _ = client_error(ecr(server, b).describe_repositories, nextToken=bad)
    assert code == "InvalidParameterException"

    # /v2/_catalog on B's host: A is denied without a name, whatever `last` says
    host = f"{b.account_id}.dkr.ecr.localhost:{server.port}"
    areg = Registry(server, reg.password, host=host)
    ecr(server, b).delete_repository_policy(repositoryName=names[2])
    for q in ["", "?n=1", f"?last={names[0]}", f"?n=1&last={names[1]}", "?last=a"]:
        r = areg.request("GET", "/v2/_catalog" + q)
        status, code, msg = oci_error(r)
        assert (status, code) == (403, "DENIED"), (q, r.text)
        assert leaked(r.text + str(r.headers)) == [], (q, r.text)
    ecr(server, b).set_repository_policy(repositoryName=names[3], policyText=json.dumps(doc({
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{server.account}:root"},
        "Action": "ecr:DescribeRepositories"})))
    for q in ["", "?n=1", f"?last={names[0]}", "?last=a"]:
        r = areg.request("GET", "/v2/_catalog" + q)
        assert r.status_code == 200 and r.json()["repositories"] == [names[3]], (q, r.text)
        assert leaked(r.text + str(r.headers)) == [names[3]]
    r = areg.request("GET", f"/v2/_catalog?last={names[3]}")
    assert r.status_code == 200 and r.json()["repositories"] == []


def test_state_and_passwords_survive_a_restart(tmp_path_factory):
    s = start_server(tmp_path_factory, "restart")
    try:
        ecr(s).create_repository(repositoryName="keep")
        pw = login_password(s, s.root)
        reg = Registry(s, pw)
        img = make_image(layers=2)
        reg.push_image("keep", img, "v1")
        data = os.urandom(2000)
        loc = location(reg.start_upload("keep"))
        assert reg.patch(loc, data[:1000], start=0).status_code == 202
        assert s.stop() == 0
        s.start()
        reg = Registry(s, pw)  # the same password, the same port or not
        r = reg.get_manifest("keep", "v1")
        assert r.status_code == 200 and r.content == img.manifest
        for d, b in img.blobs:
            assert reg.get_blob("keep", d).content == b
        r = reg.request("GET", loc)
        assert r.status_code == 204 and r.headers["Range"] == "0-999"
        assert reg.finish(loc, sha256(data), data[1000:]).status_code == 201
        assert reg.get_blob("keep", sha256(data)).content == data
    finally:
        assert s.stop() == 0


# ---------------------------------------------------------------------------------------
# Concurrency
# ---------------------------------------------------------------------------------------

def test_concurrent_pushes(server, root_pw, tmp_path):
    repo = new_repo(server)
    img = make_image(layers=3, size=50000)
    write_oci_layout(tmp_path / "src", {"v1": img})

    def raw_push(i):
        r = Registry(server, root_pw)
        for d, b in img.blobs:
            if i % 2:
                loc = location(r.start_upload(repo))
                half = len(b) // 2
                assert r.patch(loc, b[:half], start=0).status_code == 202
                resp = r.finish(loc, d, b[half:])
            else:
                resp = r.push_blob(repo, b, d)
            assert resp.status_code == 201, (resp.status_code, resp.text)
        resp = r.put_manifest(repo, "same", img.manifest)
        assert resp.status_code == 201, (resp.status_code, resp.text)
        return resp.headers["Docker-Content-Digest"]

    def skopeo_job(i):
        skopeo_push(server, root_pw, tmp_path / "src", "v1", repo, dest_tag="same")
        return img.digest

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        futures = [pool.submit(raw_push, i) for i in range(8)] + [pool.submit(skopeo_job, i) for i in range(2)]
        results = [f.result() for f in futures]
    assert results == [img.digest] * 10
    assert ecr(server).list_images(repositoryName=repo)["imageIds"] == [
        {"imageDigest": img.digest, "imageTag": "same"}]
    reg = Registry(server, root_pw)
    for d, b in img.blobs:
        assert reg.get_blob(repo, d).content == b

    # different images racing for one tag: all pushes succeed, the tag names one of them
    images = [make_image(layers=1, size=2000) for _ in range(6)]

    def push_other(im):
        return Registry(server, root_pw).push_image(repo, im, "race").status_code

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        assert list(pool.map(push_other, images)) == [201] * 6
    winner = reg.get_manifest(repo, "race").headers["Docker-Content-Digest"]
    assert winner in {im.digest for im in images}
    ids = ecr(server).list_images(repositoryName=repo)["imageIds"]
    assert [i for i in ids if i.get("imageTag") == "race"] == [{"imageDigest": winner, "imageTag": "race"}]
    assert {i["imageDigest"] for i in ids} == {img.digest} | {im.digest for im in images}
    assert reg.request("GET", f"/v2/{repo}/tags/list").json()["tags"] == ["race", "same"]


# ---------------------------------------------------------------------------------------
# More of what clients rely on
# ---------------------------------------------------------------------------------------

def test_docker_v2s2_push_and_large_layer(server, root_pw, reg, tmp_path):
    repo = new_repo(server)
    img = make_image(layers=2, size=3 * 1024 * 1024)
    write_oci_layout(tmp_path / "src", {"v1": img})
    skopeo_push(server, root_pw, tmp_path / "src", "v1", repo, extra=["--format", "v2s2"])
    r = reg.get_manifest(repo, "v1", accept=(DOCKER_MANIFEST,))
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == DOCKER_MANIFEST
    m = r.json()
    assert m["mediaType"] == DOCKER_MANIFEST
    assert [l["digest"] for l in m["layers"]] == [d for d, _ in img.blobs[1:]]
    [detail] = ecr(server).describe_images(repositoryName=repo)["imageDetails"]
    assert detail["imageManifestMediaType"] == DOCKER_MANIFEST
    assert detail["imageDigest"] == r.headers["Docker-Content-Digest"] == sha256(r.content)
    dg = tmp_path / "digest"
    skopeo_pull(server, root_pw, repo, "v1", tmp_path / "dst", extra=["--digestfile", str(dg)])
    for d, b in img.blobs[1:]:
        assert oci_blob(tmp_path / "dst", d) == b
    # a client that accepts only OCI manifests is told the tag is not there in that form
    r = reg.get_manifest(repo, "v1", accept=(OCI_MANIFEST,))
    assert oci_error(r)[:2] == (404, "MANIFEST_UNKNOWN")


def test_ecr_retag_and_image_listing(server, reg):
    repo = new_repo(server)
    c = ecr(server)
    img = make_image(layers=1)
    reg.push_image(repo, img, "v1")
    untagged = make_image(layers=1)
    reg.push_image(repo, untagged)
    # the documented retag: batch-get-image, then put-image with a new tag
    m = c.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}])["images"][0]["imageManifest"]
    out = c.put_image(repositoryName=repo, imageTag="release", imageManifest=m)
    assert out["image"]["imageId"] == {"imageDigest": img.digest, "imageTag": "release"}
    assert reg.get_manifest(repo, "release").headers["Docker-Content-Digest"] == img.digest
    assert reg.request("GET", f"/v2/{repo}/tags/list").json()["tags"] == ["release", "v1"]

    ids = c.list_images(repositoryName=repo, filter={"tagStatus": "UNTAGGED"})["imageIds"]
    assert ids == [{"imageDigest": untagged.digest}]
    details = c.describe_images(repositoryName=repo, filter={"tagStatus": "TAGGED"})["imageDetails"]
    assert [(d["imageDigest"], sorted(d["imageTags"])) for d in details] == [(img.digest, ["release", "v1"])]
    code, _, _ = client_error(c.describe_images, repositoryName=repo, imageIds=[{"imageTag": "nope"}])
    assert code == "ImageNotFoundException"
    # BatchDeleteImage by digest names every tag it removed
    out = c.batch_delete_image(repositoryName=repo, imageIds=[{"imageDigest": img.digest}])
    assert sorted(i["imageTag"] for i in out["imageIds"]) == ["release", "v1"]
    assert {i["imageDigest"] for i in out["imageIds"]} == {img.digest}
    assert reg.request("GET", f"/v2/{repo}/tags/list").json()["tags"] == []
    # a pull is recorded
    reg.get_manifest(repo, untagged.digest)
    [d] = c.describe_images(repositoryName=repo, imageIds=[{"imageDigest": untagged.digest}])["imageDetails"]
    assert "lastRecordedPullTime" in d


def test_describe_repositories_pagination_and_settings(server):
    c = ecr(server)
    made = sorted(new_repo(server, prefix="pg") for _ in range(3))
    r = c.create_repository(repositoryName=unique("scan"), imageScanningConfiguration={"scanOnPush": True},
                            encryptionConfiguration={"encryptionType": "KMS"})["repository"]
    assert r["imageScanningConfiguration"] == {"scanOnPush": True}
    assert r["encryptionConfiguration"]["encryptionType"] == "KMS"
    assert r["repositoryUri"] == f"127.0.0.1:{server.port}/{r['repositoryName']}"
    assert client_error(c.create_repository, repositoryName=made[0])[0] == "RepositoryAlreadyExistsException"
    seen, token = [], None
    while True:
        kw = {"maxResults": 2, **({"nextToken": token} if token else {})}
        out = c.describe_repositories(**kw)
        assert len(out["repositories"]) <= 2
        seen += [x["repositoryName"] for x in out["repositories"]]
        token = out.get("nextToken")
        if not token:
            break
    assert len(seen) == len(set(seen))
    assert set(made) <= set(seen)
    assert seen == [x["repositoryName"] for x in c.describe_repositories(maxResults=1000)["repositories"]]


def test_repository_scoped_blobs_and_sessions(server, reg):
    one, two = new_repo(server), new_repo(server)
    data = os.urandom(300)
    reg.push_blob(one, data)
    # a blob pushed to one repository is not in another until mounted or pushed there
    assert oci_error(reg.get_blob(two, sha256(data)))[:2] == (404, "BLOB_UNKNOWN")
    assert reg.head_blob(two, sha256(data)).status_code == 404
    # an upload session belongs to its repository
    loc = location(reg.start_upload(one))
    other_loc = loc.replace(f"/v2/{one}/", f"/v2/{two}/")
    assert oci_error(reg.patch(other_loc, data, start=0))[:2] == (404, "BLOB_UPLOAD_UNKNOWN")
    assert oci_error(reg.request("GET", f"/v2/{one}/blobs/uploads/nosuchsession"))[:2] == (404, "BLOB_UPLOAD_UNKNOWN")
    # a chunk whose Content-Length and Content-Range disagree
    r = reg.patch(loc, data, headers={"Content-Range": "0-9"})
    assert r.status_code in (400, 416), (r.status_code, r.text)
    # a closing PUT whose chunk does not continue the upload
    assert reg.patch(loc, data[:100], start=0).status_code == 202
    r = reg.request("PUT", f"{loc}?digest={sha256(data)}", data=data[150:],
                    headers={"Content-Range": "150-299"})
    assert r.status_code == 416, (r.status_code, r.text)
    # the upload is still there and completes
    r = reg.finish(loc, sha256(data), data[100:])
    assert r.status_code == 201, r.text
    # manifests are repository-scoped too, and a manifest may only name blobs of its repository
    img = make_image(layers=1)
    reg.push_image(one, img, "v1")
    assert oci_error(reg.get_manifest(two, img.digest))[:2] == (404, "MANIFEST_UNKNOWN")
    assert oci_error(reg.put_manifest(two, "v1", img.manifest))[:2] == (400, "MANIFEST_BLOB_UNKNOWN")
    # deleting the repository ends its sessions
    loc = location(reg.start_upload(two))
    ecr(server).delete_repository(repositoryName=two, force=True)
    ecr(server).create_repository(repositoryName=two)
    assert oci_error(reg.patch(loc, data, start=0))[:2] == (404, "BLOB_UPLOAD_UNKNOWN")


def test_range_suffix_form(server, reg):
    """RFC 9110 14.1.1: `bytes=-N` (a suffix range) asks for the last N bytes. A server may
    answer 206 with them or ignore Range (200); 416 is only for unsatisfiable ranges."""
    repo = new_repo(server)
    data = os.urandom(1000)
    reg.push_blob(repo, data)
    r = reg.get_blob(repo, sha256(data), headers={"Range": "bytes=-10"})
    assert r.status_code in (200, 206), (r.status_code, r.text)
    if r.status_code == 206:
        assert r.headers["Content-Range"] == "bytes 990-999/1000" and r.content == data[-10:]
    else:
        assert r.content == data
    # The suffix is counted back from the size the metadata store records: it costs the
    # object store no more look-ups than a range given by its first byte.
    def stats_of(range_):
        before = object_store_stats(server)
        r = reg.get_blob(repo, sha256(data), headers={"Range": range_})
        assert r.status_code == 206 and r.content == data[990:], (range_, r.status_code)
        return object_store_stats(server) - before
    assert stats_of("bytes=-10") == stats_of("bytes=990-")


def mint_password(server, access_key_id, issued, expires, region="us-east-1", key=None):
    """A registry password made as the server makes them (registry/token.rs): version 1,
    issue and expiry (i64 big-endian), region and access key id (length-prefixed),
    HMAC-SHA256 under the server's key from the metadata store (sealed there with the
    data directory's secrets key)."""
    if key is None:
        key = server.server_secret("registry-token-key")
    payload = bytes([1]) + struct.pack(">qq", issued, expires)
    for s in (region, access_key_id):
        payload += bytes([len(s)]) + s.encode()
    tag = hmac.new(key.encode(), payload, hashlib.sha256).digest()
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()  # noqa: E731
    return f"{b64(payload)}.{b64(tag)}"


def test_password_expiry_region_and_forgery(server):
    repo = new_repo(server)
    now = int(time.time())
    akid = server.root.access_key_id
    # the minting matches the server's: a fresh one works
    good = mint_password(server, akid, now - 10, now + 600)
    assert Registry(server, good).request("GET", f"/v2/{repo}/tags/list").status_code == 200
    r = Registry(server, mint_password(server, akid, now - 7200, now - 60)).request("GET", f"/v2/{repo}/tags/list")
    status, code, msg = oci_error(r)
    assert (status, code) == (403, "DENIED") and "expired" in msg.lower()
    r = Registry(server, mint_password(server, akid, now - 10, now + 600, region="eu-west-1")).request("GET", "/v2/")
    assert oci_error(r)[:2] == (403, "DENIED")
    r = Registry(server, mint_password(server, akid, now - 10, now + 600, key="not the key")).request("GET", "/v2/")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic realm=")
    r = Registry(server, mint_password(server, "AKIANOSUCHKEY0000000", now - 10, now + 600)).request("GET", "/v2/")
    assert oci_error(r)[:2] == (403, "DENIED")

    # a password never outlives the session credentials it was made with
    role = unique("role")
    server.iam().create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                 "Principal": {"AWS": f"arn:aws:iam::{server.account}:root"}}]}))
    server.iam().put_role_policy(RoleName=role, PolicyName="p", PolicyDocument=json.dumps(doc(allow("ecr:*"))))
    _, u = server.new_user(policies=[doc(allow("sts:AssumeRole"))])
    c = server.sts(u).assume_role(RoleArn=f"arn:aws:iam::{server.account}:role/{role}", RoleSessionName="short",
                                  DurationSeconds=900)["Credentials"]
    data = ecr(server, Creds.from_sts(c, server.account)).get_authorization_token()["authorizationData"][0]
    assert data["expiresAt"] == c["Expiration"]
    data = ecr(server).get_authorization_token()["authorizationData"][0]
    assert 11 * 3600 < data["expiresAt"].timestamp() - time.time() <= 12 * 3600 + 5


def test_concurrent_races(server, root_pw):
    """Racing writers: one PATCH per offset, one first push per immutable tag, one
    CreateRepository per name."""
    repo = new_repo(server)
    reg = Registry(server, root_pw)
    loc = location(reg.start_upload(repo))
    chunk = os.urandom(200_000)
    gate = threading.Barrier(8)

    def patch(_):
        r = Registry(server, root_pw)
        gate.wait()
        return r.patch(loc, chunk, start=0).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert sorted(pool.map(patch, range(8))) == [202] + [416] * 7
    r = reg.request("GET", loc)
    assert r.headers["Range"] == f"0-{len(chunk) - 1}"
    assert reg.finish(loc, sha256(chunk)).status_code == 201
    assert reg.get_blob(repo, sha256(chunk)).content == chunk

    imm = new_repo(server, imageTagMutability="IMMUTABLE")
    images = [make_image(layers=1, size=500) for _ in range(8)]
    for im in images:
        for d, b in im.blobs:
            reg.push_blob(imm, b, d)
    gate2 = threading.Barrier(8)

    def put(im):
        r = Registry(server, root_pw)
        gate2.wait()
        return r.put_manifest(imm, "v1", im.manifest).status_code, im.digest

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(put, images))
    assert sorted(s for s, _ in results) == [201] + [400] * 7
    [winner] = [d for s, d in results if s == 201]
    assert reg.get_manifest(imm, "v1").headers["Docker-Content-Digest"] == winner

    name = unique("race")
    gate3 = threading.Barrier(6)
    clients = [boto3.session.Session().client(
        "ecr", endpoint_url=server.url, region_name="us-east-1",
        aws_access_key_id=server.root.access_key_id,
        aws_secret_access_key=server.root.secret_access_key) for _ in range(6)]

    def create(c):
        gate3.wait()
        try:
            c.create_repository(repositoryName=name)
            return "ok"
        except c.exceptions.ClientError as e:
            return e.response["Error"]["Code"]

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        assert sorted(pool.map(create, clients)) == ["RepositoryAlreadyExistsException"] * 5 + ["ok"]


def test_concurrent_settings_calls_all_survive(server):
    """Settings calls on one repository at the same moment, each changing something else:
    every change survives (none writes back a stale copy of the others)."""
    def client():
        return boto3.session.Session().client(
            "ecr", endpoint_url=server.url, region_name="us-east-1",
            aws_access_key_id=server.root.access_key_id,
            aws_secret_access_key=server.root.secret_access_key)

    policy = json.dumps(doc({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{server.account}:root"},
                             "Action": "ecr:DescribeImages"}))
    calls = [
        lambda c, repo: c.put_image_tag_mutability(
            repositoryName=repo, imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
            imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "dev-*"}]),
        lambda c, repo: c.put_image_scanning_configuration(
            repositoryName=repo, imageScanningConfiguration={"scanOnPush": True}),
        lambda c, repo: c.set_repository_policy(repositoryName=repo, policyText=policy),
        lambda c, repo: c.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=LIFECYCLE),
        lambda c, repo: c.tag_resource(resourceArn=repo_arn(server, repo), tags=[{"Key": "team", "Value": "a"}]),
        lambda c, repo: c.put_image_scanning_configuration(
            repositoryName=repo, imageScanningConfiguration={"scanOnPush": True}),
    ]
    clients = [client() for _ in calls]
    c = ecr(server)
    for _ in range(12):
        repo = new_repo(server, prefix="settings")
        gate = threading.Barrier(len(calls))

        def run(i):
            gate.wait()
            calls[i](clients[i], repo)

        with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
            list(pool.map(run, range(len(calls))))
        r = c.describe_repositories(repositoryNames=[repo])["repositories"][0]
        assert r["imageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION", r
        assert r["imageTagMutabilityExclusionFilters"] == [{"filterType": "WILDCARD", "filter": "dev-*"}]
        assert r["imageScanningConfiguration"] == {"scanOnPush": True}, r
        assert json.loads(c.get_repository_policy(repositoryName=repo)["policyText"]) == json.loads(policy)
        assert c.get_lifecycle_policy(repositoryName=repo)["lifecyclePolicyText"] == LIFECYCLE
        assert c.list_tags_for_resource(resourceArn=repo_arn(server, repo))["tags"] == [{"Key": "team", "Value": "a"}]


def raw_json(client, operation, **kw):
    """Call an operation and return (its parsed result, its raw JSON body with numbers
    as Decimals)."""
    import decimal
    bodies = []
    event = f"after-call.ecr.{operation}"

    def grab(http_response, **_):
        bodies.append(http_response.content)

    client.meta.events.register(event, grab)
    try:
        out = getattr(client, re.sub(r"(?<!^)([A-Z])", r"_\1", operation).lower())(**kw)
    finally:
        client.meta.events.unregister(event, grab)
    return out, json.loads(bodies[-1], parse_float=decimal.Decimal)


def test_times_keep_milliseconds(server, reg):
    """ECR times are epoch seconds with a millisecond fraction, as stored: pushes within
    one second get different, ordered imagePushedAt; boto3 reads the fraction."""
    import datetime
    import decimal
    c = ecr(server)
    repo = new_repo(server, prefix="ms")
    images = [make_image(layers=1, size=200) for _ in range(6)]
    for i, im in enumerate(images):
        reg.push_image(repo, im, f"t{i}")
    reg.get_manifest(repo, "t0")  # records a pull

    out, raw = raw_json(c, "DescribeImages", repositoryName=repo)
    stored = dict(server.sql("SELECT digest, pushed_at FROM images WHERE repository = ?", (repo,)))
    [(last_pull,)] = server.sql("SELECT last_pull FROM images WHERE repository = ? AND digest = ?",
                                (repo, images[0].digest))
    [(created,)] = server.sql("SELECT created_at FROM repositories WHERE name = ?", (repo,))
    by_digest = {d["imageDigest"]: d for d in raw["imageDetails"]}
    parsed = {d["imageDigest"]: d for d in out["imageDetails"]}
    pushed = []
    for im in images:
        t = by_digest[im.digest]["imagePushedAt"]
        assert isinstance(t, decimal.Decimal), t  # a JSON number with a fraction
        assert t * 1000 == stored[im.digest], (t, stored[im.digest])
        dt = parsed[im.digest]["imagePushedAt"]
        assert dt == datetime.datetime.fromtimestamp(stored[im.digest] / 1000, tz=datetime.timezone.utc)
        pushed.append(t)
    assert pushed == sorted(pushed) and len(set(pushed)) > 1, pushed
    # six pushes all landing on a whole second is a one in 10^18 event
    assert any(t % 1 != 0 for t in pushed), pushed
    assert any(parsed[im.digest]["imagePushedAt"].microsecond != 0 for im in images)
    pull = by_digest[images[0].digest]["lastRecordedPullTime"]
    assert isinstance(pull, decimal.Decimal) and pull * 1000 == last_pull
    _, raw = raw_json(c, "DescribeRepositories", repositoryNames=[repo])
    assert raw["repositories"][0]["createdAt"] * 1000 == created
    c.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=LIFECYCLE)
    _, raw = raw_json(c, "GetLifecyclePolicy", repositoryName=repo)
    [(at,)] = server.sql("SELECT lifecycle_updated FROM repositories WHERE name = ?", (repo,))
    assert raw["lastEvaluatedAt"] * 1000 == at and at > created


def test_huge_headers_and_truncated_uploads(server, reg):
    """Bad input at the HTTP level: an oversized header is refused without harm, and an
    upload whose body stops short is not a blob."""
    import socket

    server.client("ecr", server.root).create_repository(repositoryName="bad/input")
    # A 1 MiB header: refused (431/400), and the server goes on answering.
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n")
        reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 4"), reply[:80]
    assert reg.request("GET", "/v2/").status_code == 200
    # A PATCH that announces more bytes than it sends, then the connection closes.
    r = reg.start_upload("bad/input")
    assert r.status_code == 202
    loc = r.headers["Location"]
    auth = reg.headers()["Authorization"]
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(
            f"PATCH {loc} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Length: 100000\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n".encode() + b"z" * 1000
        )
        s.shutdown(socket.SHUT_WR)
        s.recv(4096)
    data = b"z" * 100000
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = reg.finish(loc, digest)
    assert r.status_code in (400, 404), r.text
    assert reg.head_blob("bad/input", digest).status_code == 404


def object_store_stats(server):
    """How many times the server has asked its object store for a blob's size (`stat`),
    from /metrics."""
    r = requests.get(server.url + "/metrics", timeout=10)
    assert r.status_code == 200, r.text
    total = 0.0
    for line in r.text.splitlines():
        m = re.match(r'^berth_store_operation_duration_seconds_count\{(.*)\} (\S+)$', line)
        if m and 'store="objects"' in m.group(1) and 'operation="stat"' in m.group(1):
            total += float(m.group(2))
    return total


def test_blob_head_is_answered_without_asking_the_object_store(server, reg):
    """HEAD of a blob (every layer of every push asks it) is answered from the metadata
    store: the object store (on S3, a round trip each) is not asked. Unknown blobs, and
    blobs of another repository, are still 404."""
    repo = new_repo(server)
    data = os.urandom(3000)
    reg.push_blob(repo, data)
    d = sha256(data)
    before = object_store_stats(server)
    for _ in range(20):
        r = reg.request("HEAD", f"/v2/{repo}/blobs/{d}")
        assert r.status_code == 200, r.status_code
        assert r.headers["Content-Length"] == "3000"
        assert r.headers["Docker-Content-Digest"] == d
    # Background jobs may look at a blob or two meanwhile; twenty HEADs asking the object
    # store would add twenty.
    assert object_store_stats(server) - before < 5
    missing = sha256(b"never pushed")
    assert reg.request("HEAD", f"/v2/{repo}/blobs/{missing}").status_code == 404
    other = new_repo(server)
    assert reg.request("HEAD", f"/v2/{other}/blobs/{d}").status_code == 404
