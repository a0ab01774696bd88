"""Upstream registries for the pull-through cache tests: CNCF distribution 2.8 (Debian's
`docker-registry`) on 127.0.0.1, with filesystem storage in a directory of its own, and
its access log kept so that a test can count the requests it received.

Three ways in:
  Upstream(directory)                      anonymous
  Upstream(directory, basic=(user, pw))    Basic (an htpasswd file with a bcrypt hash)
  Upstream(directory, token=(user, pw))    the Docker token flow: the registry answers
      401 with `Bearer realm=...`; a token server run here in a thread (TokenServer)
      checks the client's Basic credentials and issues a JWT (ES256, its certificate in
      the x5c header and in the registry's rootcertbundle) granting the scopes asked.

Also: ThrottlingProxy, a TCP proxy that can hold what the upstream sends back, so a test
can see that a client gets the start of a blob before the upstream has finished sending.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from berth import HoldingProxy

REGISTRY_BIN = os.environ.get("DOCKER_REGISTRY_BIN", "/usr/bin/docker-registry")

# One line of the access log distribution writes to stdout (Apache combined format):
#   127.0.0.1 - - [02/Jan/2026:10:00:00 +0000] "GET /v2/x/blobs/sha256:.. HTTP/1.1" 200 1234 "" "ua"
_ACCESS = re.compile(r'^\S+ \S+ \S+ \[[^\]]*\] "(\w+) (\S+) HTTP/[\d.]+" (\d{3}) ')


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Request:
    """One request the upstream (registry or token server) received."""

    __slots__ = ("method", "path", "status", "query")

    def __init__(self, method, target, status):
        self.method = method
        parsed = urllib.parse.urlsplit(target)
        self.path = urllib.parse.unquote(parsed.path)
        self.query = parsed.query
        self.status = status

    def __repr__(self):
        return f"{self.method} {self.path}{'?' + self.query if self.query else ''} -> {self.status}"


# ---------------------------------------------------------------------------------------
# The token server
# ---------------------------------------------------------------------------------------

class TokenServer:
    """A Docker token server (the `realm` of distribution's `auth: token`): GET with Basic
    credentials (or POST with an OAuth2 password grant) and `service` and `scope`
    parameters; answers {"token", "access_token", "expires_in", "issued_at"}. Wrong or
    missing credentials: 401. Every request is recorded (`requests`)."""

    ISSUER = "berth-e2e-token-issuer"

    def __init__(self, directory, service, username, password):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.service = service
        self.username = username
        self.password = password
        self.requests: list[Request] = []
        self.issued = 0
        self._lock = threading.Lock()
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "berth e2e token signer")])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (x509.CertificateBuilder()
                     .subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key())
                     .serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(hours=1))
                     .not_valid_after(now + datetime.timedelta(days=2))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                                  crl_sign=True, content_commitment=False,
                                                  key_encipherment=False, data_encipherment=False,
                                                  key_agreement=False, encipher_only=False,
                                                  decipher_only=False), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.cert_der = self.cert.public_bytes(serialization.Encoding.DER)
        self.bundle = Path(directory) / "token-signer.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _answer(self, status, body, headers=()):
                data = json.dumps(body).encode()
                with outer._lock:
                    outer.requests.append(Request(self.command, self.path, status))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                params = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                user = pw = None
                auth = self.headers.get("Authorization", "")
                if auth.lower().startswith("basic "):
                    try:
                        user, pw = base64.b64decode(auth[6:].strip()).decode().split(":", 1)
                    except Exception:  # noqa: BLE001
                        pass
                self._token(params, user, pw)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                user = (form.get("username") or [None])[0]
                pw = (form.get("password") or [None])[0]
                self._token(form, user, pw)

            def _token(self, params, user, pw):
                if (user, pw) != (outer.username, outer.password):
                    self._answer(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]},
                                 [("WWW-Authenticate", 'Basic realm="token"')])
                    return
                service = (params.get("service") or [outer.service])[0]
                if service != outer.service:
                    self._answer(400, {"errors": [{"code": "DENIED", "message": f"unknown service {service}"}]})
                    return
                token = outer.issue(user, params.get("scope") or [])
                self._answer(200, {"token": token, "access_token": token, "expires_in": 300,
                                   "issued_at": datetime.datetime.now(datetime.timezone.utc)
                                   .strftime("%Y-%m-%dT%H:%M:%SZ")})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def realm(self):
        return f"http://127.0.0.1:{self.port}/token"

    def issue(self, subject, scopes):
        """A JWT granting every action of every `repository:NAME:ACTIONS` scope asked."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        access = []
        for scope in scopes:
            for one in scope.split(" "):
                parts = one.split(":")
                if len(parts) < 3:
                    continue
                kind, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1]
                access.append({"type": kind, "name": name,
                               "actions": [a for a in actions.split(",") if a]})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(self.cert_der).decode()]}
        claims = {"iss": self.ISSUER, "sub": subject, "aud": self.service, "exp": now + 300,
                  "nbf": now - 60, "iat": now, "jti": uuid.uuid4().hex, "access": access}
        signing_input = (_b64url(json.dumps(header, separators=(",", ":")).encode()) + "." +
                         _b64url(json.dumps(claims, separators=(",", ":")).encode()))
        der = self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        with self._lock:
            self.issued += 1
        return signing_input + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------

class Upstream:
    """A `docker-registry serve` on 127.0.0.1 (a free port, kept across restarts), its
    storage and logs under `directory`: access.log (stdout: one line per request, in
    combined format) and registry.log (stderr: JSON, logrus)."""

    def __init__(self, directory, basic=None, token=None, name="upstream"):
        assert os.path.exists(REGISTRY_BIN), \
            f"{REGISTRY_BIN} is missing: apt-get install docker-registry (scripts/test installs it)"
        assert not (basic and token)
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.port = free_port()
        self.basic = basic
        self.token_creds = token
        self.token_server = None
        self.proc = None
        self._syncs = 0
        auth = ""
        if basic:
            htpasswd = self.dir / "htpasswd"
            p = subprocess.run(["htpasswd", "-Bbn", basic[0], basic[1]], capture_output=True, text=True,
                               timeout=60)
            assert p.returncode == 0, f"htpasswd: {p.stderr} (apt-get install apache2-utils)"
            htpasswd.write_text(p.stdout.strip() + "\n")
            auth = f"auth:\n  htpasswd:\n    realm: {name}-realm\n    path: {htpasswd}\n"
        if token:
            self.token_server = TokenServer(self.dir, f"{name}-service", *token)
            auth = ("auth:\n  token:\n"
                    f"    realm: {self.token_server.realm}\n"
                    f"    service: {self.token_server.service}\n"
                    f"    issuer: {TokenServer.ISSUER}\n"
                    f"    rootcertbundle: {self.token_server.bundle}\n")
        self.config = self.dir / "config.yml"
        self.config.write_text(
            "version: 0.1\n"
            "log:\n  level: info\n  formatter: json\n  accesslog:\n    disabled: false\n"
            "  fields:\n    service: " + name + "\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.dir / 'data'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
            "  headers:\n    X-Content-Type-Options: [nosniff]\n"
            + auth
        )
        self.access_log = self.dir / "access.log"
        self.registry_log = self.dir / "registry.log"

    # -- lifecycle -------------------------------------------------------------------

    def start(self, timeout=30):
        assert self.proc is None
        out = open(self.access_log, "a")
        err = open(self.registry_log, "a")
        self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(self.config)], stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=err)
        out.close()
        err.close()
        deadline = time.time() + timeout
        while True:
            try:
                requests.get(f"{self.url}/v2/_ready/tags/list", timeout=2)
                break
            except requests.ConnectionError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError(f"docker-registry did not start:\n{self.registry_log.read_text()[-3000:]}")
            time.sleep(0.05)
        return self

    def stop(self):
        """Stop the registry (the token server, if any, keeps answering)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    def close(self):
        self.stop()
        if self.token_server:
            self.token_server.close()

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def host(self):
        return f"127.0.0.1:{self.port}"

    @property
    def url(self):
        """The URL a pull-through cache rule names (plain HTTP: with the scheme)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def creds(self):
        """user:password for skopeo (None: anonymous)."""
        c = self.basic or self.token_creds
        return f"{c[0]}:{c[1]}" if c else None

    # -- the log ---------------------------------------------------------------------

    def _registry_requests(self):
        if not self.access_log.exists():
            return []
        found = []
        for line in self.access_log.read_text(errors="replace").splitlines():
            m = _ACCESS.match(line)
            if m:
                found.append(Request(m.group(1), m.group(2), int(m.group(3))))
        return found

    def requests(self, include_token=True):
        """Every request received so far (the registry's, then the token server's),
        without the sync markers."""
        got = [r for r in self._registry_requests() if not r.path.startswith("/v2/_sync/")
               and not r.path.startswith("/v2/_ready/")]
        if include_token and self.token_server:
            with self.token_server._lock:
                got += list(self.token_server.requests)
        return got

    def sync(self, timeout=10):
        """Wait until every request the registry answered before now is in the access log:
        distribution writes a request's line after the response; a marker request sent now
        and seen in the log means the earlier ones are there too (their handlers returned
        before the client that caused them was answered). Returns the number of requests
        so far (a mark for `since`)."""
        if self.running:
            self._syncs += 1
            marker = f"/v2/_sync/{self._syncs}/tags/list"
            requests.get(self.url + marker, timeout=5)
            deadline = time.time() + timeout
            while not any(r.path == marker for r in self._registry_requests()):
                assert time.time() < deadline, f"{marker} never reached {self.access_log}"
                time.sleep(0.02)
        return len(self.requests())

    def since(self, mark):
        """The requests received after `mark` (from sync()), after syncing again."""
        self.sync()
        return self.requests()[mark:]

    def count(self, method, path, reqs=None, ok_only=True):
        """How many `method path` requests (2xx only with ok_only) there were."""
        reqs = self.requests() if reqs is None else reqs
        return sum(1 for r in reqs if r.method == method and r.path == path
                   and (not ok_only or 200 <= r.status < 300))

    # -- content ---------------------------------------------------------------------

    def push(self, layout, tag, repo, dest_tag=None, all_images=False):
        """skopeo copy oci:LAYOUT:TAG → this registry's REPO:DEST_TAG."""
        args = ["skopeo", "--insecure-policy", "copy", "--dest-tls-verify=false"]
        if self.creds:
            args += ["--dest-creds", self.creds]
        if all_images:
            args += ["--all"]
        args += [f"oci:{layout}:{tag}", f"docker://{self.host}/{repo}:{dest_tag or tag}"]
        p = subprocess.run(args, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, f"{' '.join(args)}:\n{p.stderr}"

    def inspect_raw(self, repo, ref):
        """The manifest bytes as the upstream serves them (skopeo inspect --raw)."""
        sep = "@" if ref.startswith("sha256:") else ":"
        args = ["skopeo", "inspect", "--raw", "--tls-verify=false"]
        if self.creds:
            args += ["--creds", self.creds]
        p = subprocess.run(args + [f"docker://{self.host}/{repo}{sep}{ref}"], capture_output=True,
                           timeout=120)
        assert p.returncode == 0, p.stderr.decode()
        return p.stdout

    def pull(self, repo, ref, layout, tag="pulled", extra=()):
        sep = "@" if ref.startswith("sha256:") else ":"
        args = ["skopeo", "--insecure-policy", "copy", "--src-tls-verify=false", *extra]
        if self.creds:
            args += ["--src-creds", self.creds]
        args += [f"docker://{self.host}/{repo}{sep}{ref}", f"oci:{layout}:{tag}"]
        p = subprocess.run(args, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, f"{' '.join(args)}:\n{p.stderr}"
        return p


def remove(upstream: Upstream):
    upstream.close()
    shutil.rmtree(upstream.dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# A proxy that holds responses
# ---------------------------------------------------------------------------------------

def ThrottlingProxy(target, hold_after=None):
    """A proxy in front of port `target` holding what comes BACK from it: see
    berth.HoldingProxy with back=True."""
    return HoldingProxy(target, hold_after, back=True)


# ---------------------------------------------------------------------------------------
# An upstream that lies about a blob's length
# ---------------------------------------------------------------------------------------

class LyingUpstream:
    """An anonymous registry serving one image, `repo:tag`, whose layer it says (in the
    blob GET's Content-Length) is `claimed` bytes long; it sends the first KiB and then
    nothing until closed. Every request is recorded (`requests`: (method, path))."""

    def __init__(self, image, repo, tag, claimed):
        import http.server

        self.requests = []
        self.stopping = threading.Event()
        outer = self
        manifest_paths = {f"/v2/{repo}/manifests/{tag}", f"/v2/{repo}/manifests/{image.digest}"}
        blobs = dict(image.blobs)
        layer_digest = image.blobs[-1][0]

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def answer(self, body):
                outer.requests.append((self.command, self.path))
                if self.path == "/v2/":
                    self.send(200, b"{}", "application/json")
                elif self.path in manifest_paths:
                    self.send(200, image.manifest, "application/vnd.oci.image.manifest.v1+json", {"Docker-Content-Digest": image.digest})
                elif self.path == f"/v2/{repo}/blobs/{layer_digest}":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(claimed))
                    self.end_headers()
                    if body:
                        self.wfile.write(blobs[layer_digest][:1024])
                        self.wfile.flush()
                        outer.stopping.wait(120)
                elif self.path.startswith(f"/v2/{repo}/blobs/") and self.path.rsplit("/", 1)[1] in blobs:
                    self.send(200, blobs[self.path.rsplit("/", 1)[1]], "application/octet-stream")
                else:
                    self.send(404, b'{"errors":[{"code":"NOT_FOUND","message":"no"}]}', "application/json")

            def send(self, status, data, ctype, headers=None):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def do_GET(self):
                self.answer(True)

            def do_HEAD(self):
                self.answer(False)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def host(self):
        return f"127.0.0.1:{self.port}"

    @property
    def url(self):
        return f"http://{self.host}"

    def close(self):
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
