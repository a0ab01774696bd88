"""The registry's protocol edges and the ECR API's wire form: references no manifest can
have, one tag grammar on both APIs, extreme upload offsets, JSON without nulls, the size of
an image index, a pathological tag-mutability filter, and download URLs bound to the
account that issued them. Real HTTP on loopback against one `berth serve`."""

import base64
import json
import os
import socket
import time

import pytest

from berth import (OCI_INDEX, OCI_MANIFEST, Registry, allow, client_error, descriptor, doc,
                   login_password, make_image, oci_error, server, sha256, unique)  # noqa: F401


@pytest.fixture(scope="module")
def root_pw(server):
    return login_password(server, server.root)


@pytest.fixture(scope="module")
def reg(server, root_pw):
    return Registry(server, root_pw)


def ecr(server, creds=None):
    return server.client("ecr", creds or server.root)


def new_repo(server, creds=None, **kw):
    name = unique("wire")
    ecr(server, creds).create_repository(repositoryName=name, **kw)
    return name


def raw_ecr(server, operation, body, creds=None):
    """One ECR JSON call over raw HTTP: (status, parsed body, body text)."""
    r = server.raw(json.dumps(body), creds=creds or server.root, service="ecr", headers={
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": f"AmazonEC2ContainerRegistry_V20150921.{operation}",
    })
    return r.status, json.loads(r.body), r.body


def nulls(v, at="$"):
    """Paths of every null in a JSON value."""
    if v is None:
        return [at]
    if isinstance(v, dict):
        return [p for k, x in v.items() for p in nulls(x, f"{at}.{k}")]
    if isinstance(v, list):
        return [p for i, x in enumerate(v) for p in nulls(x, f"{at}[{i}]")]
    return []


BAD_TAGS = [".INVALID_MANIFEST_NAME", "-dash", "a+b", "with space", "a" * 129, "ünï"]


# ---------------------------------------------------------------------------------------
# /v2 references that are neither a tag nor a digest
# ---------------------------------------------------------------------------------------

def test_invalid_references_are_unknown_manifests_but_refused_on_push(server, reg):
    repo = new_repo(server)
    img = make_image(layers=1)
    reg.push_image(repo, img, "v1")
    for ref in BAD_TAGS[:4] + ["sha256:abc", "sha256:" + "A" * 64, "md5:" + "0" * 32]:
        for head in (False, True):
            r = reg.get_manifest(repo, ref, head=head)
            assert r.status_code == 404, (ref, head, r.status_code, r.text)
            if not head:
                assert oci_error(r)[:2] == (404, "MANIFEST_UNKNOWN"), (ref, r.text)
        # distribution answers 404 for a reference its routes cannot match, on DELETE too
        assert oci_error(reg.delete_manifest(repo, ref))[:2] == (404, "MANIFEST_UNKNOWN"), ref
    # pushing under one is a client error naming what is wrong
    for ref in BAD_TAGS[:4]:
        status, code, msg = oci_error(reg.put_manifest(repo, ref, img.manifest))
        assert (status, code) == (400, "TAG_INVALID"), (ref, status, code, msg)
        assert "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}" in msg
    for ref in ["sha256:abc", "md5:" + "0" * 32]:
        assert oci_error(reg.put_manifest(repo, ref, img.manifest))[:2] == (400, "DIGEST_INVALID")
    # nothing was stored or removed
    assert ecr(server).list_images(repositoryName=repo)["imageIds"] == [
        {"imageDigest": img.digest, "imageTag": "v1"}]
    # a missing repository is still NAME_UNKNOWN
    assert oci_error(reg.get_manifest(unique("nosuch"), ".bad"))[:2] == (404, "NAME_UNKNOWN")
    # authorization comes before existence: a caller who may not pull is denied
    name, creds = server.new_user(policies=[doc(allow("ecr:GetAuthorizationToken"))])
    other = Registry(server, login_password(server, creds))
    for method in ("GET", "DELETE"):
        r = other.request(method, f"/v2/{repo}/manifests/.INVALID_MANIFEST_NAME")
        assert oci_error(r)[:2] == (403, "DENIED"), (method, r.text)


# ---------------------------------------------------------------------------------------
# One tag grammar on the ECR API
# ---------------------------------------------------------------------------------------

def test_ecr_api_refuses_tags_the_registry_refuses(server, reg):
    repo = new_repo(server)
    img = make_image(layers=1)
    reg.push_image(repo, img, "good")
    c = ecr(server)
    for tag in BAD_TAGS:
        code, msg, _ = client_error(c.put_image, repositoryName=repo, imageTag=tag,
                                    imageManifest=img.manifest.decode())
        assert code == "InvalidParameterException", (tag, code, msg)
        assert "imageTag" in msg, msg
        code, msg, _ = client_error(c.describe_images, repositoryName=repo,
                                    imageIds=[{"imageTag": tag}])
        assert code == "InvalidParameterException", (tag, code, msg)
        # the batch calls report the entry as ECR's InvalidImageTag failure and go on
        out = c.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": tag}, {"imageTag": "good"}])
        assert [i["imageId"] for i in out["images"]] == [{"imageDigest": img.digest, "imageTag": "good"}]
        assert [(f["imageId"], f["failureCode"]) for f in out["failures"]] == [
            ({"imageTag": tag}, "InvalidImageTag")], out["failures"]
        out = c.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": tag}])
        assert out["imageIds"] == [] and out["failures"][0]["failureCode"] == "InvalidImageTag", out
    # the aws CLI sees the same
    err = server.cli_error(server.root, "ecr", "put-image", "--repository-name", repo,
                           "--image-tag", ".hidden", "--image-manifest", img.manifest.decode())
    assert err.code == "InvalidParameterException"
    # nothing got a bad tag; every tag the API lists is pullable by tag
    ids = c.list_images(repositoryName=repo)["imageIds"]
    assert ids == [{"imageDigest": img.digest, "imageTag": "good"}]
    # beyond ECR's own length limit it is InvalidParameterException for the batch calls too
    for tag in ["a" * 301]:
        code, _, _ = client_error(c.batch_get_image, repositoryName=repo, imageIds=[{"imageTag": tag}])
        assert code == "InvalidParameterException", tag


# ---------------------------------------------------------------------------------------
# UploadLayerPart offsets
# ---------------------------------------------------------------------------------------

def test_upload_layer_part_extreme_offsets(server):
    repo = new_repo(server)
    c = ecr(server)
    uid = c.initiate_layer_upload(repositoryName=repo)["uploadId"]
    big = 2**63 - 1
    for first, last in [(0, big), (big, big), (big, 0), (0, big - 1)]:
        code, msg, _ = client_error(c.upload_layer_part, repositoryName=repo, uploadId=uid,
                                    partFirstByte=first, partLastByte=last, layerPartBlob=b"abc")
        assert code == "InvalidLayerPartException", (first, last, code, msg)
    # the session is intact: a correct part still goes in
    r = c.upload_layer_part(repositoryName=repo, uploadId=uid, partFirstByte=0, partLastByte=2,
                            layerPartBlob=b"abc")
    assert r["lastByteReceived"] == 2
    code, _, _ = client_error(c.upload_layer_part, repositoryName=repo, uploadId=uid,
                              partFirstByte=3, partLastByte=big, layerPartBlob=b"def")
    assert code == "InvalidLayerPartException"
    assert c.complete_layer_upload(repositoryName=repo, uploadId=uid,
                                   layerDigests=[sha256(b"abc")])["layerDigest"] == sha256(b"abc")


def test_patch_content_range_extremes(server, reg):
    repo = new_repo(server)
    loc = reg.start_upload(repo).headers["Location"]
    top = 2**64 - 1
    for rng in [f"0-{top}", f"{top}-{top}", f"0-{top + 1}"]:
        r = reg.patch(loc, b"abc", headers={"Content-Range": rng, "Content-Type": "application/octet-stream"})
        assert r.status_code in (400, 416), (rng, r.status_code, r.text)
        assert oci_error(r)[1] == "BLOB_UPLOAD_INVALID", (rng, r.text)
    # the upload goes on from where it is
    r = reg.patch(loc, b"abc", start=0)
    assert r.status_code == 202, r.text
    r = reg.finish(r.headers["Location"], sha256(b"abc"))
    assert r.status_code == 201, r.text


# ---------------------------------------------------------------------------------------
# JSON responses: absent members are left out, never null
# ---------------------------------------------------------------------------------------

def test_ecr_json_responses_carry_no_nulls(server, reg):
    repo = new_repo(server)
    img = make_image(layers=1)
    for d, b in img.blobs:
        reg.push_blob(repo, b, d)
    untagged = make_image(layers=1)
    reg.push_image(repo, untagged)
    layer = img.blobs[1][0]
    calls = [
        ("GetAuthorizationToken", {}),
        ("DescribeRegistry", {}),
        ("CreateRepository", {"repositoryName": unique("wire")}),
        ("DescribeRepositories", {"repositoryNames": [repo]}),
        ("DescribeRepositories", {"maxResults": 1}),
        ("PutImage", {"repositoryName": repo, "imageManifest": img.manifest.decode()}),
        ("PutImage", {"repositoryName": repo, "imageManifest": img.manifest.decode(), "imageTag": "t1"}),
        ("BatchGetImage", {"repositoryName": repo, "imageIds": [
            {"imageDigest": img.digest}, {"imageTag": "nosuch"}, {"imageDigest": sha256(b"x")}]}),
        ("ListImages", {"repositoryName": repo}),
        ("ListImages", {"repositoryName": repo, "maxResults": 1}),
        ("DescribeImages", {"repositoryName": repo}),
        ("DescribeImages", {"repositoryName": repo, "imageIds": [{"imageDigest": untagged.digest}]}),
        ("BatchCheckLayerAvailability", {"repositoryName": repo,
                                         "layerDigests": [layer, sha256(b"none"), "bad"]}),
        ("GetDownloadUrlForLayer", {"repositoryName": repo, "layerDigest": layer}),
        ("InitiateLayerUpload", {"repositoryName": repo}),
        ("PutImageTagMutability", {"repositoryName": repo, "imageTagMutability": "MUTABLE"}),
        ("PutImageScanningConfiguration", {"repositoryName": repo,
                                           "imageScanningConfiguration": {"scanOnPush": False}}),
        ("ListTagsForResource", {"resourceArn": f"arn:aws:ecr:us-east-1:{server.account}:repository/{repo}"}),
        ("BatchDeleteImage", {"repositoryName": repo, "imageIds": [
            {"imageTag": "t1"}, {"imageDigest": sha256(b"gone")}, {"imageTag": "nosuch"}]}),
        ("BatchDeleteImage", {"repositoryName": repo, "imageIds": [{"imageDigest": untagged.digest}]}),
    ]
    for op, body in calls:
        status, out, text = raw_ecr(server, op, body)
        assert status == 200, (op, status, text)
        assert nulls(out) == [], (op, text)
    # the members AWS would send are still there, and the absent ones are left out
    third = make_image(layers=1)
    for d, b in third.blobs:
        reg.push_blob(repo, b, d)
    _, out, _ = raw_ecr(server, "PutImage", {"repositoryName": repo,
                                             "imageManifest": third.manifest.decode()})
    assert out["image"]["imageId"] == {"imageDigest": third.digest}
    _, out, _ = raw_ecr(server, "DescribeImages", {"repositoryName": repo,
                                                   "imageIds": [{"imageDigest": third.digest}]})
    (d,) = out["imageDetails"]
    assert "imageTags" not in d and "artifactMediaType" not in d and "lastRecordedPullTime" not in d
    assert d["imageSizeInBytes"] == third.size and d["imageManifestMediaType"] == OCI_MANIFEST
    _, out, _ = raw_ecr(server, "ListImages", {"repositoryName": repo})
    assert "nextToken" not in out and {"imageDigest": third.digest} in out["imageIds"]


# ---------------------------------------------------------------------------------------
# imageSizeInBytes of an image index
# ---------------------------------------------------------------------------------------

def test_index_size_is_its_largest_image(server, reg):
    """ECR's ImageDetail reference: a manifest list's imageSizeInBytes is the largest of
    the sizes of what it lists — the largest child image, as pushed (compressed), not the
    largest child manifest document."""
    repo = new_repo(server)
    small, large = make_image(layers=1, size=1000), make_image(layers=3, size=30000)
    for img in (small, large):
        reg.push_image(repo, img)
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        descriptor(OCI_MANIFEST, small.manifest, platform={"architecture": "amd64", "os": "linux"}),
        descriptor(OCI_MANIFEST, large.manifest, platform={"architecture": "arm64", "os": "linux"}),
    ]}).encode()
    assert reg.put_manifest(repo, "multi", index, OCI_INDEX).status_code == 201
    # an index of an index: the largest image below it
    outer = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        descriptor(OCI_INDEX, index), descriptor(OCI_MANIFEST, small.manifest)]}).encode()
    c = ecr(server)
    c.put_image(repositoryName=repo, imageTag="outer", imageManifest=outer.decode(),
                imageManifestMediaType=OCI_INDEX)
    sizes = {d["imageDigest"]: d["imageSizeInBytes"]
             for d in c.describe_images(repositoryName=repo)["imageDetails"]}
    assert sizes[small.digest] == small.size
    assert sizes[large.digest] == large.size
    assert large.size > small.size > len(large.manifest)
    assert sizes[sha256(index)] == large.size
    assert sizes[sha256(outer)] == large.size


# ---------------------------------------------------------------------------------------
# A pathological tag-mutability exclusion filter
# ---------------------------------------------------------------------------------------

def test_pathological_exclusion_filter_does_not_stall_pushes(server, reg):
    pattern = "*a" * 20 + "*b"
    repo = new_repo(server, imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
                    imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": pattern[:128]}])
    img, other = make_image(layers=1), make_image(layers=1)
    for i in (img, other):
        for d, b in i.blobs:
            reg.push_blob(repo, b, d)
    tag = "a" * 128
    started = time.monotonic()
    assert reg.put_manifest(repo, tag, img.manifest).status_code == 201
    # the tag matches no filter, so it is immutable
    assert oci_error(reg.put_manifest(repo, tag, other.manifest))[:2] == (400, "TAG_INVALID")
    assert time.monotonic() - started < 5
    # a matching tag may move
    moving = "a" * 60 + "b"
    assert reg.put_manifest(repo, moving, img.manifest).status_code == 201
    assert reg.put_manifest(repo, moving, other.manifest).status_code == 201


# ---------------------------------------------------------------------------------------
# Download URLs are bound to the account (and Region) that issued them
# ---------------------------------------------------------------------------------------

def test_download_url_is_bound_to_its_account(server, reg):
    b = server.account_create()
    name = unique("wire")
    ecr(server).create_repository(repositoryName=name)
    ecr(server, b).create_repository(repositoryName=name)
    img = make_image(layers=1)
    host_b = f"{b.account_id}.dkr.ecr.localhost:{server.port}"
    reg.push_image(name, img, "v1")
    Registry(server, login_password(server, b), host=host_b).push_image(name, img, "v1")
    d, data = img.blobs[1]
    url = ecr(server).get_download_url_for_layer(repositoryName=name, layerDigest=d)["downloadUrl"]
    anon = Registry(server)
    r = anon.request("GET", url)
    assert r.status_code == 200 and r.content == data
    # the same URL sent to B's registry (same repository name, same digest) is refused
    r = Registry(server, host=host_b).request("GET", url)
    assert oci_error(r)[:2] == (403, "DENIED"), (r.status_code, r.text)
    # and B's own URL works on B's registry only
    url_b = ecr(server, b).get_download_url_for_layer(repositoryName=name, layerDigest=d)["downloadUrl"]
    assert url_b.startswith(f"http://{host_b}/"), url_b
    path_b = url_b.split(host_b, 1)[1]
    r = Registry(server, host=host_b).request("GET", path_b)
    assert r.status_code == 200 and r.content == data
    assert oci_error(anon.request("GET", path_b))[:2] == (403, "DENIED")


# ---------------------------------------------------------------------------------------
# Connections after a refusal
# ---------------------------------------------------------------------------------------

def exchange(server, head, body=b"", pause=0.0):
    """Send a request head, then (after `pause` seconds, as clients that write the body
    separately do) its body, on one raw connection; return (status line, headers, whether
    the server then closed the connection, the socket)."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall(head)
    if body:
        time.sleep(pause)
        sock.sendall(body)
    f = sock.makefile("rb")
    status = f.readline().decode().strip()
    headers = {}
    while (line := f.readline().decode().strip()):
        k, v = line.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    f.read(int(headers.get("content-length", "0")))
    return status, headers, f, sock


def ask(sock, f, head, parts=(), pause=0.0):
    """One request on an open connection, its body sent in `parts` (`pause` seconds
    between them): (status code, headers, body)."""
    sock.sendall(head)
    for i, part in enumerate(parts):
        if i and pause:
            time.sleep(pause)
        sock.sendall(part)
    status = f.readline().decode().strip()
    headers = {}
    while (line := f.readline().decode().strip()):
        k, v = line.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    return int(status.split()[1]), headers, f.read(int(headers.get("content-length", "0")))


def test_large_bodies_of_known_length_fast_or_slowing_down_keep_their_connection(server, reg):
    """While a large body of known length streams in fast, the server reads it in larger
    pieces (it raises the socket's receive low-water mark, see serve/intake.rs). Whatever
    the body does, every byte is taken, and the connection then carries the next request
    at once: a body sent in one go; one that starts fast and then trickles in small
    pieces (the mark falls back); a chunked one (never paced). Each blob is then read back
    whole."""
    repo = new_repo(server)
    auth = "Basic " + base64.b64encode(f"AWS:{reg.password}".encode()).decode()
    host = f"127.0.0.1:{server.port}"
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    f = sock.makefile("rb")
    try:
        for how in ["at once", "slowing down", "chunked"]:
            data = os.urandom(24 << 20)
            digest = sha256(data)
            code, h, _ = ask(sock, f, (f"POST /v2/{repo}/blobs/uploads/ HTTP/1.1\r\nHost: {host}\r\n"
                                       f"Authorization: {auth}\r\nContent-Length: 0\r\n\r\n").encode())
            assert code == 202, (how, code)
            location = h["location"].removeprefix(server.url)
            if how == "chunked":
                head = (f"PATCH {location} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n").encode()
                parts = [b"%x\r\n%s\r\n" % (len(p), p) for p in
                         (data[i:i + (1 << 20)] for i in range(0, len(data), 1 << 20))] + [b"0\r\n\r\n"]
                pause = 0.0
            else:
                head = (f"PATCH {location} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n"
                        f"Content-Length: {len(data)}\r\n\r\n").encode()
                if how == "at once":
                    parts, pause = [data], 0.0
                else:
                    # 8 MiB at once (the mark goes up), then 16 KiB pieces, 5 ms apart.
                    fast = 8 << 20
                    parts = [data[:fast]] + [data[i:i + (16 << 10)] for i in range(fast, len(data), 16 << 10)]
                    pause = 0.005
            started = time.monotonic()
            code, h, _ = ask(sock, f, head, parts, pause)
            assert code == 202 and h["range"] == f"0-{len(data) - 1}", (how, code, h)
            # The next request, small and bodiless, is answered at once on this connection.
            asked = time.monotonic()
            code, _, _ = ask(sock, f, f"GET /v2/ HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n\r\n".encode())
            assert code == 200 and time.monotonic() - asked < 2, (how, code)
            code, h, _ = ask(sock, f, (f"PUT {location}{'&' if '?' in location else '?'}digest={digest} HTTP/1.1\r\n"
                                       f"Host: {host}\r\nAuthorization: {auth}\r\nContent-Length: 0\r\n\r\n").encode())
            assert code == 201, (how, code, h)
            # The trickle took its own time, not a stall's (60 s) or many fallbacks' worth.
            assert time.monotonic() - started < 30, how
            back = reg.request("GET", f"/v2/{repo}/blobs/{digest}")
            assert back.status_code == 200 and sha256(back.content) == digest, how
    finally:
        sock.close()


def test_a_refusal_that_leaves_the_body_unread_closes_its_connection(server, reg):
    """A request refused from its head alone leaves its body unread, so its connection
    cannot carry the next request: the response says `Connection: close` and the server
    closes it (a client reusing it would find it closed under its next request). A refusal
    after the body was read, a refusal without a body, and a success keep the connection.
    The same on every front door: /v2, the ECR JSON API and the IAM/STS query API."""
    repo = new_repo(server)
    img = make_image(layers=1)
    stranger = Registry(server, "not-a-password")
    refused = stranger.request("PUT", f"/v2/{repo}/manifests/v1", data=img.manifest,
                               headers={"Content-Type": OCI_MANIFEST})
    assert refused.status_code == 401
    assert refused.headers.get("Connection", "").lower() == "close"
    # The body was read (its digest is what is wrong): the connection carries on.
    layer_digest, layer = img.blobs[0]
    r = reg.push_blob(repo, layer, digest="sha256:" + "0" * 64)
    assert r.status_code == 400 and oci_error(r)[1] == "DIGEST_INVALID"
    assert "close" not in r.headers.get("Connection", "").lower()
    head = reg.request("HEAD", f"/v2/{repo}/manifests/absent")
    assert head.status_code == 404 and "close" not in head.headers.get("Connection", "").lower()
    ok = reg.push_blob(repo, layer, digest=layer_digest)
    assert ok.status_code == 201 and "close" not in ok.headers.get("Connection", "").lower()

    # The API front doors refuse a signature of an unknown key before reading the body,
    # here sent a moment after the head (as urllib3 does).
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    authorization = (f"AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/{amz_date[:8]}/us-east-1/"
                     "{service}/aws4_request, SignedHeaders=host;x-amz-date, Signature=" + "0" * 64)
    for service, body, extra in [
        ("iam", b"Action=ListUsers&Version=2010-05-08",
         "Content-Type: application/x-www-form-urlencoded\r\n"),
        ("ecr", b"{}", "Content-Type: application/x-amz-json-1.1\r\n"
                       "X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.DescribeRepositories\r\n"),
    ]:
        head = (f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n{extra}"
                f"X-Amz-Date: {amz_date}\r\nAuthorization: {authorization.format(service=service)}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        status, headers, f, sock = exchange(server, head, body, pause=0.2)
        try:
            assert status.split()[1] in ("400", "403"), (service, status)
            assert headers.get("connection", "").lower() == "close", (service, headers)
            assert f.read() == b"", service  # and the server closed it
        finally:
            sock.close()
    # A refusal of that door after its body was read (a wrong signature of a real key is
    # found only with the body in) keeps the connection: a second request goes down it.
    real_key = authorization.replace("AKIAIOSFODNN7EXAMPLE", server.root.access_key_id).format(service="iam")
    server_head = (f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                   "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 35\r\n"
                   f"X-Amz-Date: {amz_date}\r\nAuthorization: {real_key}\r\n\r\n")
    status, headers, f, sock = exchange(server, server_head.encode(), b"Action=ListUsers&Version=2010-05-08")
    try:
        assert status.split()[1] == "403", status
        assert "close" not in headers.get("connection", "").lower(), headers
        sock.sendall(f"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
        assert f.readline().decode().split()[1] == "401"
    finally:
        sock.close()
