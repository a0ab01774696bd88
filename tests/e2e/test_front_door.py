"""The HTTP front door under hostile clients: bodies that are large, unauthenticated or
stalled, headers sent a byte at a time, crowds of idle connections, a small file limit.
Raw sockets on loopback; the server's memory is read from /proc."""

import json
import os
import socket
import threading
import time
import urllib.parse
from pathlib import Path

import botocore.auth
import botocore.credentials
import pytest
import requests
from botocore.awsrequest import AWSRequest

import berth
from berth import REGION, Server, server  # noqa: F401

ECR_TARGET = "AmazonEC2ContainerRegistry_V20150921."
MIB = 1 << 20

# Short deadlines so that the tests run in seconds.
FAST = """
header_timeout_seconds = 2
body_stall_seconds = 2
api_body_seconds = 8
api_body_memory_mib = 64
"""


@pytest.fixture(scope="module")
def fast(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("front") / "data", extra_config=FAST).start()
    yield s
    assert s.stop() == 0, "".join(s.stderr_lines[-30:])


def rss_mib(server):
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def healthz(server, timeout=5):
    return requests.get(server.url + "/healthz", timeout=timeout)


def connect(server, timeout=10):
    s = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def head(lines):
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(sock, deadline, data=b""):
    """Read until the server closes or a whole response (head and declared body) has
    arrived (`data`: what was already read of it); returns (status or None, headers
    dict, body bytes, closed)."""
    while time.time() < deadline:
        sock.settimeout(max(0.05, deadline - time.time()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        except (ConnectionResetError, BrokenPipeError):
            return parse_response(data) + (True,)
        if not chunk:
            return parse_response(data) + (True,)
        data += chunk
        status, headers, body = parse_response(data)
        if status is not None and len(body) >= int(headers.get("content-length", "0")):
            return status, headers, body, False
    return parse_response(data) + (False,)


def parse_response(data):
    if b"\r\n\r\n" not in data:
        return None, {}, b""
    h, body = data.split(b"\r\n\r\n", 1)
    lines = h.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
    return status, headers, body


def signed_ecr_head(server, operation, body: bytes, creds=None, content_length=None):
    """The request head of an ECR call signed (over `body`) with `creds` (default root)."""
    creds = creds or server.root
    url = server.url + "/"
    h = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": ECR_TARGET + operation}
    req = AWSRequest(method="POST", url=url, data=body, headers=h)
    c = botocore.credentials.Credentials(creds.access_key_id, creds.secret_access_key, creds.session_token)
    botocore.auth.SigV4Auth(c, "ecr", REGION).add_auth(req)
    lines = ["POST / HTTP/1.1", f"Host: 127.0.0.1:{server.port}",
             f"Content-Length: {len(body) if content_length is None else content_length}"]
    lines += [f"{k}: {v}" for k, v in req.headers.items() if k.lower() not in ("host", "content-length")]
    return head(lines)


def forged_ecr_head(server, content_length, key_id=None):
    """An ECR request head naming `key_id` (default: none) with a well-formed signature
    that is wrong: what an attacker who knows an access key id can send."""
    lines = ["POST / HTTP/1.1", f"Host: 127.0.0.1:{server.port}",
             "Content-Type: application/x-amz-json-1.1",
             f"X-Amz-Target: {ECR_TARGET}UploadLayerPart", f"Content-Length: {content_length}"]
    if key_id:
        now = time.gmtime()
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", now)
        lines += [f"X-Amz-Date: {amz_date}",
                  f"Authorization: AWS4-HMAC-SHA256 Credential={key_id}/{amz_date[:8]}/{REGION}/ecr/aws4_request, "
                  f"SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={'0' * 64}"]
    return head(lines)


def flood(server, request_head, connections, send_bytes):
    """Open `connections` connections that each send `request_head` and `send_bytes` of
    body, then stall (stay open, send nothing more). Returns the sockets and the threads
    (done once each has sent what it could)."""
    socks, threads = [], []
    chunk = b"\0" * MIB

    def pump(s):
        sent = 0
        try:
            s.sendall(request_head)
            while sent < send_bytes:
                s.sendall(chunk[: min(MIB, send_bytes - sent)])
                sent += MIB
        except OSError:
            pass  # the server refused the body and closed: as it should

    for _ in range(connections):
        s = connect(server)
        t = threading.Thread(target=pump, args=(s,), daemon=True)
        t.start()
        socks.append(s)
        threads.append(t)
    return socks, threads


def join(threads, timeout):
    deadline = time.time() + timeout
    for t in threads:
        t.join(max(0.01, deadline - time.time()))
    return all(not t.is_alive() for t in threads)


def close_all(socks):
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


# -- bodies -------------------------------------------------------------------------------


def test_unauthenticated_bodies_are_refused_unread(server):
    """40 connections send 8 MiB each of a declared 30 MiB ECR body without credentials,
    then stall: the server reads none of it (its memory stays put), answers each at once,
    and keeps answering /healthz."""
    assert healthz(server).status_code == 200
    before = rss_mib(server)
    socks, threads = flood(server, forged_ecr_head(server, 30 * MIB), 40, 8 * MIB)
    try:
        join(threads, 20)
        assert healthz(server).status_code == 200
        grew = rss_mib(server) - before
        assert grew < 64, f"the server grew by {grew:.0f} MiB holding unauthenticated bodies"
        # Each was answered (without its body): 403 MissingAuthenticationTokenException.
        status, headers, body, _ = read_response(socks[0], time.time() + 5)
        assert status == 403, (status, body)
        assert json.loads(body)["__type"] == "MissingAuthenticationTokenException"
    finally:
        close_all(socks)


def test_refusals_come_before_the_body(server):
    """A refused request is answered from its head alone, quickly, in the API's format,
    while the client has sent none of its (large) body."""
    cases = [
        # No credentials, ECR.
        (forged_ecr_head(server, 30 * MIB), 403, "MissingAuthenticationTokenException"),
        # An access key id that does not exist.
        (forged_ecr_head(server, 30 * MIB, "AKIAZZZZZZZZZZZZZZZZ"), 400, "UnrecognizedClientException"),
        # A real key id, but more than any ECR request may be.
        (forged_ecr_head(server, 40 * MIB, server.root.access_key_id), 413, "RequestEntityTooLargeException"),
    ]
    for request_head, status, code in cases:
        s = connect(server)
        try:
            started = time.time()
            s.sendall(request_head)
            got, headers, body, _ = read_response(s, time.time() + 5)
            assert got == status, (code, got, body)
            assert json.loads(body)["__type"] == code
            assert time.time() - started < 5
        finally:
            s.close()
    # The query API: no credentials, a large form never sent.
    s = connect(server)
    try:
        s.sendall(head(["POST / HTTP/1.1", f"Host: 127.0.0.1:{server.port}",
                        "Content-Type: application/x-www-form-urlencoded", f"Content-Length: {900 * 1024}"]))
        got, headers, body, _ = read_response(s, time.time() + 5)
        assert got == 403 and b"<Code>MissingAuthenticationToken</Code>" in body, (got, body)
    finally:
        s.close()


def test_bodies_naming_a_real_key_share_a_memory_budget(fast):
    """Knowing an access key id lets a client send a body (its signature can only be
    checked once the body is in), but all such bodies together stay within
    api_body_memory_mib (64 here): the rest are told to retry, and a stalled body is cut
    off after body_stall_seconds, giving its share back."""
    server = fast
    assert healthz(server).status_code == 200
    before = rss_mib(server)
    request_head = forged_ecr_head(server, 30 * MIB, server.root.access_key_id)
    socks, threads = flood(server, request_head, 40, 8 * MIB)
    try:
        join(threads, 20)
        assert healthz(server).status_code == 200
        grew = rss_mib(server) - before
        assert grew < 100, f"the server grew by {grew:.0f} MiB holding bodies"
        answers = [read_response(s, time.time() + 10) for s in socks]
        statuses = sorted(a[0] for a in answers if a[0] is not None)
        throttled = [a for a in answers if a[0] == 400]
        assert len(throttled) >= 35, statuses
        assert json.loads(throttled[0][2])["__type"] == "ThrottlingException"
        # The few admitted ones stalled and were cut off.
        timed_out = [a for a in answers if a[0] == 408]
        assert 1 <= len(timed_out) <= 2, statuses
        assert json.loads(timed_out[0][2])["__type"] == "RequestTimeoutException"
    finally:
        close_all(socks)
    # The budget is whole again: a real call works.
    ecr = server.client("ecr", server.root)
    assert ecr.describe_repositories()["repositories"] == []


def test_a_stalled_body_is_cut_off(fast):
    """A signed ECR call whose body stops half way is answered 408 after
    body_stall_seconds (2 here), and the connection does not stay open."""
    server = fast
    body = json.dumps({"repositoryName": "x" * 900}).encode()
    s = connect(server)
    try:
        started = time.time()
        s.sendall(signed_ecr_head(server, "CreateRepository", body) + body[:100])
        status, headers, resp, _ = read_response(s, time.time() + 15)
        waited = time.time() - started
        assert status == 408, (status, resp)
        assert json.loads(resp)["__type"] == "RequestTimeoutException"
        assert "sent nothing for 2" in json.loads(resp)["message"]
        assert 1.5 < waited < 10, waited
    finally:
        s.close()


def test_a_stalled_registry_upload_is_cut_off(fast):
    """The stall guard covers streamed bodies too: a /v2 blob upload that stops sending
    is ended, and the server goes on."""
    server = fast
    server.client("ecr", server.root).create_repository(repositoryName="stall")
    password = berth.login_password(server, server.root)
    reg = berth.Registry(server, password)
    r = reg.start_upload("stall")
    assert r.status_code == 202, r.text
    location = urllib.parse.urlsplit(r.headers["Location"])
    path = location.path + ("?" + location.query if location.query else "")
    auth = reg.headers()["Authorization"]
    s = connect(server)
    try:
        started = time.time()
        s.sendall(head([f"PATCH {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}", f"Authorization: {auth}",
                        "Content-Type: application/octet-stream", "Content-Length: 100000"]) + b"\0" * 1000)
        status, headers, resp, closed = read_response(s, time.time() + 15)
        assert status is not None or closed, "the stalled upload is neither answered nor closed"
        assert status is None or status >= 400, (status, resp)
        assert time.time() - started < 10
    finally:
        s.close()
    assert healthz(server).status_code == 200


# -- connections --------------------------------------------------------------------------


def test_slow_headers_and_idle_connections_are_closed(fast):
    """header_timeout_seconds (2 here): a client sending its headers a byte a second is
    disconnected before it finishes them, and so is one that sends nothing."""
    server = fast
    slow, idle = connect(server), connect(server)
    try:
        request = head(["GET /healthz HTTP/1.1", f"Host: 127.0.0.1:{server.port}", "X-Padding: " + "p" * 40])
        started = time.time()
        sent = 0
        closed = False
        while time.time() - started < 20 and sent < len(request):
            try:
                slow.sendall(request[sent:sent + 1])
            except OSError:
                closed = True
                break
            sent += 1
            # Wait up to a second for the server to hang up, then send the next byte.
            status, _, _, closed = read_response(slow, time.time() + 1)
            if closed or status is not None:
                break
        assert closed, f"still connected after {time.time() - started:.1f}s and {sent} header bytes"
        assert sent < len(request)
        assert time.time() - started < 8
        status, _, _, closed = read_response(idle, time.time() + 5)
        assert closed and status in (None, 408), status
    finally:
        slow.close()
        idle.close()
    assert healthz(server).status_code == 200


def test_request_heads_are_bounded(server):
    """A request head may be up to 64 KiB: a slow client cannot park more than that on
    each connection."""
    for size, status in ((30 * 1024, 200), (100 * 1024, 431)):
        s = connect(server)
        try:
            s.sendall(head(["GET /healthz HTTP/1.1", f"Host: 127.0.0.1:{server.port}", "X-Pad: " + "p" * size]))
            got, _, body, _ = read_response(s, time.time() + 5)
            assert got == status, (size, got, body)
        finally:
            s.close()


def wrapped_binary(tmp_path, ulimit):
    """A berth binary started under `ulimit -n` settings (the test server's own)."""
    w = tmp_path / "berth-limited"
    w.write_text(f"#!/bin/sh\nulimit {ulimit}\nexec {berth.BIN} \"$@\"\n")
    w.chmod(0o755)
    return str(w)


def test_idle_crowd_beyond_the_cap_does_not_lock_out_healthz(tmp_path_factory, tmp_path, monkeypatch):
    """Under a file limit of 256 (so at most 96 connections), 300 idle connections do
    not exhaust the server's descriptors: the oldest idle ones make room, and /healthz
    and real calls are answered."""
    monkeypatch.setattr(berth, "BIN", wrapped_binary(tmp_path, "-n 256"))
    server = Server(tmp_path_factory.mktemp("capped") / "data").start()
    socks = []
    try:
        for _ in range(300):
            socks.append(connect(server, timeout=5))
        r = healthz(server, timeout=10)
        assert r.status_code == 200 and r.text.strip() == "ok"
        assert server.sts().get_caller_identity()["Account"] == server.account
        # The replaced connections were closed by the server.
        closed = sum(1 for s in socks[:150] if read_response(s, time.time() + 0.05)[3])
        assert closed >= 100, closed
        fds = len(os.listdir(f"/proc/{server.proc.pid}/fd"))
        assert fds < 256, fds
    finally:
        close_all(socks)
        assert server.stop() == 0, "".join(server.stderr_lines[-30:])


def test_file_limit_is_raised_at_start(tmp_path_factory, tmp_path, monkeypatch):
    hard = int(Path("/proc/self/limits").read_text().split("Max open files")[1].split()[1])
    if hard <= 512:
        pytest.skip(f"the hard file limit here is {hard}")
    monkeypatch.setattr(berth, "BIN", wrapped_binary(tmp_path, "-S -n 256"))
    server = Server(tmp_path_factory.mktemp("raised") / "data").start()
    try:
        limits = Path(f"/proc/{server.proc.pid}/limits").read_text()
        soft, hard_now = limits.split("Max open files")[1].split()[:2]
        assert hard_now == str(hard) and int(soft) == min(hard, 1 << 20), limits
    finally:
        assert server.stop() == 0


def test_graceful_stop_finishes_a_download_in_progress(tmp_path_factory):
    """SIGTERM while a large blob is being sent: new connections are refused at once,
    the download completes, then the server exits 0."""
    server = Server(tmp_path_factory.mktemp("stop") / "data", extra_config=FAST).start()
    try:
        server.client("ecr", server.root).create_repository(repositoryName="big")
        reg = berth.Registry(server, berth.login_password(server, server.root))
        blob = os.urandom(4 * MIB) * 6
        digest = berth.sha256(blob)
        assert reg.push_blob("big", blob).status_code == 201
        s = connect(server)
        s.sendall(head([f"GET /v2/big/blobs/{digest} HTTP/1.1", f"Host: 127.0.0.1:{server.port}",
                        f"Authorization: {reg.headers()['Authorization']}"]))
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = s.recv(65536)
            assert chunk, "closed before the response head"
            got += chunk
        # The response is under way (24 MiB cannot sit in socket buffers): stop now.
        server.proc.send_signal(15)
        deadline = time.time() + 10
        refused = False
        while time.time() < deadline and not refused:
            try:
                socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
            except OSError:
                refused = True
        assert refused, "the server still accepts connections after SIGTERM"
        status, headers, body, _ = read_response(s, time.time() + 30, got)
        assert status == 200 and len(body) == len(blob) and body == blob
        s.close()
        assert server.proc.wait(15) == 0, "".join(server.stderr_lines[-30:])
        server.proc = None
    finally:
        if server.proc is not None:
            server.stop()
