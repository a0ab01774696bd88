"""Helpers for Berth's end-to-end tests: a real `berth serve` on loopback, driven by the
real aws CLI (subprocess) and boto3.

Environment:
  BERTH_BIN   the berth binary (default /work/main/target/debug/berth)
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hmac
import itertools
import json
import os
import re
import signal
import socket
import sqlite3
import struct
import subprocess
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import boto3
import botocore.auth
import botocore.credentials
import pytest
import requests
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.exceptions import ClientError

BIN = os.environ.get("BERTH_BIN", "/work/main/target/debug/berth")
REGION = "us-east-1"
CACHE_TTL = 0.1
# Longer than the cache TTL: changes made behind the server's back are seen after this.
SETTLE = 0.35
STS_ACTIONS = {"GetCallerIdentity", "AssumeRole", "GetSessionToken", "GetFederationToken",
               "GetAccessKeyInfo", "DecodeAuthorizationMessage"}

ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


def doc(*statements, version="2012-10-17"):
    """A policy document from statements."""
    return {"Version": version, "Statement": list(statements)}


def allow(action, resource="*", **extra):
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action, resource="*", **extra):
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def trust(principal, action="sts:AssumeRole", **extra):
    """A trust policy allowing `principal` (an AWS principal ARN or list) to assume."""
    return doc({"Effect": "Allow", "Principal": {"AWS": principal}, "Action": action, **extra})


def dumps(d):
    return d if isinstance(d, str) else json.dumps(d)


_names = itertools.count(1)


def unique(prefix):
    """A name unique within this test process."""
    return f"{prefix}{os.getpid() % 1000}x{next(_names)}"


@dataclass
class Creds:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None
    account_id: str | None = None

    @classmethod
    def from_root_json(cls, d):
        return cls(d["access_key_id"], d["secret_access_key"], None, d["account_id"])

    @classmethod
    def from_access_key(cls, k, account_id=None):
        return cls(k["AccessKeyId"], k["SecretAccessKey"], None, account_id)

    @classmethod
    def from_sts(cls, c, account_id=None):
        return cls(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"], account_id)

    def env(self):
        e = {"AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key}
        if self.session_token:
            e["AWS_SESSION_TOKEN"] = self.session_token
        return e

    def but(self, **kw):
        d = dict(self.__dict__)
        d.update(kw)
        return Creds(**d)


@dataclass
class CliError:
    code: str | None
    message: str
    returncode: int
    stderr: str


@dataclass
class RawResponse:
    status: int
    body: str
    headers: dict

    @property
    def code(self):
        return _xml_find(self.body, "Code")

    @property
    def message(self):
        return _xml_find(self.body, "Message")

    def find(self, tag):
        return _xml_find(self.body, tag)


def _xml_find(body, tag):
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return None
    for el in root.iter():
        if el.tag.split("}")[-1] == tag:
            return el.text
    return None


def client_error(fn, *args, **kwargs):
    """Call a boto3 method that must fail; return (code, message, http status)."""
    with pytest.raises(ClientError) as ei:
        fn(*args, **kwargs)
    r = ei.value.response
    return r["Error"].get("Code"), r["Error"].get("Message", ""), r["ResponseMetadata"].get("HTTPStatusCode")


# The scale-out configuration: with BERTH_E2E_METADATA=postgres, every Server keeps its
# metadata in a database of its own on the PostgreSQL server BERTH_TEST_POSTGRES_URL
# names (dropped when the tests end) instead of its data directory's SQLite file.
E2E_METADATA = os.environ.get("BERTH_E2E_METADATA", "sqlite")
# With BERTH_E2E_BLOBS=s3, every Server keeps its blobs under a prefix of its own in the
# bucket BERTH_TEST_S3_* names (scripts/with-s3) instead of its data directory.
E2E_BLOBS = os.environ.get("BERTH_E2E_BLOBS", "file")
_databases: list[str] = []


def s3_blob_config(prefix):
    """The configuration lines of blob storage under `prefix` of the test bucket."""
    env = {k: os.environ.get(f"BERTH_TEST_S3_{k}") for k in
           ("ENDPOINT", "BUCKET", "ACCESS_KEY_ID", "SECRET_ACCESS_KEY")}
    missing = [k for k, v in env.items() if not v]
    assert not missing, f"S3 blobs need BERTH_TEST_S3_{missing[0]} (scripts/with-s3 sets it)"
    return (f'blob_url = "s3://{env["BUCKET"]}/{prefix}"\n'
            f's3_endpoint = "{env["ENDPOINT"]}"\n'
            's3_region = "us-east-1"\n'
            "s3_allow_http = true\n"
            f's3_access_key_id = "{env["ACCESS_KEY_ID"]}"\n'
            f's3_secret_access_key = "{env["SECRET_ACCESS_KEY"]}"\n')


def bucket_client():
    """A boto3 S3 client of the test bucket's server (scripts/with-s3)."""
    import boto3
    from botocore.config import Config as BotoConfig
    return boto3.client(
        "s3", endpoint_url=os.environ["BERTH_TEST_S3_ENDPOINT"], region_name="us-east-1",
        aws_access_key_id=os.environ["BERTH_TEST_S3_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["BERTH_TEST_S3_SECRET_ACCESS_KEY"],
        config=BotoConfig(s3={"addressing_style": "path"}))


def postgres_admin_url():
    url = os.environ.get("BERTH_TEST_POSTGRES_URL")
    assert url, "BERTH_E2E_METADATA=postgres needs BERTH_TEST_POSTGRES_URL (scripts/with-postgres sets it)"
    return url


def postgres_url(database):
    """The URL of `database` on the test PostgreSQL server."""
    base = postgres_admin_url().rsplit("/", 1)[0]
    return f"{base}/{database}"


def psql(sql, database=None):
    url = postgres_url(database) if database else postgres_admin_url()
    out = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"psql {sql!r}: {out.stderr}"
    return out.stdout


def new_database():
    """A new empty PostgreSQL database, dropped when the tests end; returns its name."""
    name = f"berth_e2e_{os.getpid()}_{len(_databases)}_{int(time.time() * 1000) % 100000}"
    psql(f"CREATE DATABASE {name}")
    _databases.append(name)
    return name


def _drop_databases():
    for name in _databases:
        subprocess.run(["psql", postgres_admin_url(), "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"],
                       capture_output=True, timeout=60)


import atexit  # noqa: E402

atexit.register(_drop_databases)


_NEWER_ECR_MODEL = []


def newer_ecr_model():
    """A data path (AWS_DATA_PATH) holding only boto3's ECR model: the aws CLI installed
    has an older model, without the operations added since (replication backfills), and
    takes a service's model from this path first. Made once per test run."""
    if not _NEWER_ECR_MODEL:
        import shutil
        import tempfile
        directory = tempfile.mkdtemp(prefix="berth-ecr-model-")
        atexit.register(shutil.rmtree, directory, True)
        shutil.copytree(Path(botocore.__file__).parent / "data" / "ecr", Path(directory) / "ecr")
        _NEWER_ECR_MODEL.append(directory)
    return _NEWER_ECR_MODEL[0]


class Server:
    """One `berth serve` process on 127.0.0.1 with its own data directory (and, in the
    scale-out configuration, its own PostgreSQL database, or the one `database` names to
    share it with other nodes)."""

    def __init__(self, data_dir, extra_config="", args=(), database=None, listen="127.0.0.1:0"):
        self.data_dir = Path(data_dir)
        # Private from the start, as berth would make it (no tightening warning at start).
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.audit_path = self.data_dir / "audit.log"
        self.config_path = self.data_dir.parent / (self.data_dir.name + "-config.toml")
        self.database = database
        if self.database is None and E2E_METADATA == "postgres" and "metadata_url" not in extra_config:
            self.database = new_database()
        metadata = f'metadata_url = "{postgres_url(self.database)}"\n' if self.database else ""
        # Where the blobs are: the bucket prefix of the scale-out configuration, else the
        # data directory (see stored_blobs).
        self.blob_prefix = None
        if E2E_BLOBS == "s3" and "blob_url" not in extra_config:
            self.blob_prefix = f"e2e-{os.getpid()}-{self.data_dir.parent.name}-{self.data_dir.name}"
            metadata += s3_blob_config(self.blob_prefix)
        # Many tests send wrong credentials on purpose, all from 127.0.0.1: the failure
        # budget (tested on its own in test_operations.py) is off unless a test sets it.
        if "throttle_auth_failures_per_minute" not in extra_config:
            metadata += "throttle_auth_failures_per_minute = 0\n"
        self.config_path.write_text(
            f"cache_ttl_ms = {int(CACHE_TTL * 1000)}\n"
            f'audit_log = "{self.audit_path}"\n'
            f"clock_skew_seconds = 900\n" + metadata + extra_config
        )
        self.args = list(args)
        self.listen = listen
        self.proc = None
        self.port = None
        # "https" once the server says it listens so (tls_cert in the config); clients
        # then verify its certificate against ca_bundle.
        self.scheme = "http"
        self.ca_bundle = None
        self.stderr_lines: list[str] = []
        self._clients = {}

    # -- lifecycle -------------------------------------------------------------------

    def start(self, timeout=60):
        assert os.path.exists(BIN), f"berth binary {BIN} is missing (set BERTH_BIN)"
        self.stderr_lines = []
        self.port = None  # a restart must find its own
        self.proc = subprocess.Popen(
            [BIN, "serve", "--data-dir", str(self.data_dir), "--listen", self.listen,
             "--config", str(self.config_path), *self.args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, env={**os.environ, "NO_COLOR": "1"},
        )
        found = threading.Event()

        def pump():
            for line in self.proc.stderr:
                self.stderr_lines.append(line)
                m = re.search(r"listening on (https?)://127\.0\.0\.1:(\d+)", line)
                if m and not found.is_set():
                    self.scheme = m.group(1)
                    self.port = int(m.group(2))
                    found.set()
            found.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.time() + timeout
        while not found.wait(0.05):
            if time.time() > deadline:
                self.proc.kill()
                raise RuntimeError("berth serve did not start:\n" + "".join(self.stderr_lines))
        if self.port is None:
            raise RuntimeError(f"berth serve exited ({self.proc.wait()}):\n" + "".join(self.stderr_lines))
        self._clients = {}
        return self

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Signal the server and return its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"berth serve did not exit within {timeout}s of signal {sig}")
        rc = self.proc.returncode
        self.proc = None
        return rc

    @property
    def url(self):
        return f"{self.scheme}://127.0.0.1:{self.port}"

    # -- accounts ---------------------------------------------------------------------

    @property
    def root_credentials_path(self):
        return self.data_dir / "root-credentials.json"

    @property
    def root(self) -> Creds:
        return Creds.from_root_json(json.loads(self.root_credentials_path.read_text()))

    @property
    def account(self) -> str:
        return self.root.account_id

    def account_create(self, account_id=None, alias=None, check=True):
        # The server's configuration names its metadata store (and secrets key file).
        cmd = [BIN, "account", "create", "--config", str(self.config_path), "--data-dir", str(self.data_dir),
               "--json"]
        if account_id:
            cmd += ["--id", account_id]
        if alias:
            cmd += ["--alias", alias]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if not check:
            return p
        assert p.returncode == 0, f"berth account create failed ({p.returncode}): {p.stderr}"
        return Creds.from_root_json(json.loads(p.stdout))

    # -- clients ----------------------------------------------------------------------

    def client(self, service, creds: Creds, region=REGION):
        key = (service, creds.access_key_id, creds.secret_access_key, creds.session_token, region,
               self.port)
        if key not in self._clients:
            self._clients[key] = boto3.session.Session().client(
                service,
                endpoint_url=self.url,
                region_name=region,
                aws_access_key_id=creds.access_key_id,
                aws_secret_access_key=creds.secret_access_key,
                aws_session_token=creds.session_token,
                verify=str(self.ca_bundle) if self.ca_bundle else None,
                config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5,
                              read_timeout=30),
            )
        return self._clients[key]

    def iam(self, creds: Creds | None = None):
        return self.client("iam", creds or self.root)

    def sts(self, creds: Creds | None = None):
        return self.client("sts", creds or self.root)

    def _cli(self, creds, args, newer_ecr=False):
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(creds.env() if creds else {})
        if newer_ecr:
            env["AWS_DATA_PATH"] = newer_ecr_model()
        env.update({
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_MAX_ATTEMPTS": "1",
            "AWS_RETRY_MODE": "standard",
            "AWS_PAGER": "",
        })
        cmd = ["aws", *args, "--endpoint-url", self.url, "--output", "json"]
        if self.ca_bundle:
            cmd += ["--ca-bundle", str(self.ca_bundle)]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)

    def cli(self, creds, *args, newer_ecr=False):
        """Run `aws ARGS...`; it must succeed; return its parsed JSON output (or None).
        `newer_ecr`: with boto3's ECR model (see newer_ecr_model)."""
        p = self._cli(creds, args, newer_ecr)
        assert p.returncode == 0, f"aws {' '.join(args)} failed ({p.returncode}): {p.stderr}"
        return json.loads(p.stdout) if p.stdout.strip() else None

    def cli_error(self, creds, *args, newer_ecr=False) -> CliError:
        """Run `aws ARGS...`; it must fail with a service error; return the error."""
        p = self._cli(creds, args, newer_ecr)
        assert p.returncode != 0, f"aws {' '.join(args)} unexpectedly succeeded: {p.stdout}"
        m = re.search(r"An error occurred \(([\w.]+)\)(?: \(reached max retries: \d+\))? when calling the \w+ operation"
                      r"(?: \(reached max retries: \d+\))?: (.*)", p.stderr, re.S)
        if not m:
            return CliError(None, p.stderr.strip(), p.returncode, p.stderr)
        return CliError(m.group(1), m.group(2).strip(), p.returncode, p.stderr)

    # -- raw requests -----------------------------------------------------------------

    def raw(self, body=None, *, creds: Creds | None = None, method="POST", query="", headers=None,
            service=None, region=REGION, now=None, sign_token=True):
        """Send one query-protocol request. `body` is a dict (form-encoded) or a str/bytes
        sent as is. Signed with `creds` (SigV4, `service` default from the Action) unless
        creds is None; `now` overrides the signing clock; sign_token=False drops the
        session token."""
        if isinstance(body, dict):
            body = urllib.parse.urlencode(body)
        if isinstance(body, str):
            body = body.encode()
        body = body or b""
        url = self.url + "/" + (("?" + query) if query else "")
        h = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"} if method == "POST" else {}
        h.update(headers or {})
        if creds is not None:
            if service is None:
                m = re.search(rb"(?:^|&)Action=(\w+)", body + query.encode())
                service = "sts" if m and m.group(1).decode() in STS_ACTIONS else "iam"
            c = botocore.credentials.Credentials(
                creds.access_key_id, creds.secret_access_key,
                creds.session_token if sign_token else None)
            req = AWSRequest(method=method, url=url, data=body, headers=h)
            with fake_clock(now):
                botocore.auth.SigV4Auth(c, service, region).add_auth(req)
            h = dict(req.headers.items())
        r = requests.request(method, url, data=body, headers=h, timeout=30,
                             verify=str(self.ca_bundle) if self.ca_bundle else True)
        return RawResponse(r.status_code, r.text, r.headers)

    # -- state ------------------------------------------------------------------------

    def db(self):
        return sqlite3.connect(self.data_dir / "berth.db", timeout=10)

    @property
    def secrets_key_path(self):
        return self.data_dir / "secrets.key"

    def sql(self, query, params=()):
        """The rows of a query of the metadata store, whichever it is (`?` placeholders;
        on PostgreSQL the parameters are quoted into the text, integers come back as
        int and NULL as None)."""
        if not self.database:
            with self.db() as db:
                return [tuple(r) for r in db.execute(query, params)]
        parts = query.split("?")
        assert len(parts) == len(params) + 1, query
        text = parts[0]
        for value, rest in zip(params, parts[1:]):
            text += (str(int(value)) if isinstance(value, int) else "'" + str(value).replace("'", "''") + "'") + rest
        out = subprocess.run(["psql", postgres_url(self.database), "-v", "ON_ERROR_STOP=1", "-qAt",
                              "-F", "\x1f", "-P", "null=\\N", "-c", text],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr

        def value(v):
            return None if v == "\\N" else int(v) if re.fullmatch(r"-?\d+", v) else v
        return [tuple(value(v) for v in line.split("\x1f")) for line in out.stdout.splitlines()]

    def stored_blobs(self):
        """The digests of the blob objects in this server's blob store (its data directory,
        or its prefix of the test bucket)."""
        if self.blob_prefix is None:
            root = self.data_dir / "blobs" / "sha256"
            return {"sha256:" + f.name for f in root.glob("*/*") if f.is_file()}
        return {"sha256:" + k.rsplit("/", 1)[1] for k in self.bucket_keys("blobs/sha256/")}

    def bucket_keys(self, under):
        """The keys of the objects under `under` of this server's prefix of the test
        bucket (the scale-out configuration), relative to the prefix."""
        found = []
        for page in bucket_client().get_paginator("list_objects_v2").paginate(
                Bucket=os.environ["BERTH_TEST_S3_BUCKET"], Prefix=f"{self.blob_prefix}/{under}"):
            found += [o["Key"][len(self.blob_prefix) + 1:] for o in page.get("Contents", [])]
        return found

    def referenced_blobs(self):
        """The digests every image of every repository references (configs and layers)."""
        return {d for (d,) in self.sql("SELECT DISTINCT child FROM image_refs WHERE kind = 'blob'")}

    def gc(self, *args, check=True):
        """`berth gc` on this server's stores (its data directory and configuration)."""
        out = subprocess.run([BIN, "gc", "--data-dir", str(self.data_dir), "--config", str(self.config_path),
                              *args], capture_output=True, text=True, timeout=600)
        if check:
            assert out.returncode == 0, f"berth gc {args}: {out.returncode}\n{out.stdout}\n{out.stderr}"
        return out

    def server_secret(self, name):
        """A server secret (e.g. registry-token-key), opened from the database with the
        data directory's secrets key, as the server opens it."""
        [(sealed,)] = self.sql("SELECT value FROM server_secrets WHERE name = ?", (name,))
        return open_sealed(self.secrets_key_path, "server_secrets.value", name, sealed)

    def audit_lines(self, *request_ids, until=None, timeout=10):
        """The audit log's lines. Lines are written by a thread of the server's after the
        response: with request ids (or a predicate `until` over the lines), first wait until
        each request has its line (or the predicate holds)."""
        deadline = time.time() + timeout
        while True:
            lines = []
            if self.audit_path.exists():
                lines = [json.loads(l) for l in self.audit_path.read_text().splitlines() if l.strip()]
            have = {l.get("request_id") for l in lines}
            if (all(r in have for r in request_ids) and (until is None or until(lines))) \
                    or time.time() > deadline:
                return lines
            time.sleep(0.02)

    # -- convenience ------------------------------------------------------------------

    def new_user(self, name=None, *, policies=(), managed=(), groups=(), tags=None, path="/",
                 boundary=None, admin: Creds | None = None):
        """Create a user (as `admin`, default root) with inline policies, attached managed
        policy ARNs, group memberships, tags and an access key; return (name, creds)."""
        name = name or unique("user")
        iam = self.iam(admin)
        kw = {"UserName": name, "Path": path}
        if tags:
            kw["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]
        if boundary:
            kw["PermissionsBoundary"] = boundary
        iam.create_user(**kw)
        for i, p in enumerate(policies):
            iam.put_user_policy(UserName=name, PolicyName=f"p{i}", PolicyDocument=dumps(p))
        for arn in managed:
            iam.attach_user_policy(UserName=name, PolicyArn=arn)
        for g in groups:
            iam.add_user_to_group(UserName=name, GroupName=g)
        k = iam.create_access_key(UserName=name)["AccessKey"]
        account = (admin or self.root).account_id
        return name, Creds.from_access_key(k, account)


# -- secrets at rest: XChaCha20-Poly1305 (RFC 8439 with HChaCha20), written from the
# specifications to check the stored format independently of the server's code ------------

_M32 = 0xFFFFFFFF
_SIGMA = (0x61707865, 0x3320646E, 0x79622D32, 0x6B206574)  # "expand 32-byte k"


def _rotl(v, c):
    return ((v << c) & _M32) | (v >> (32 - c))


def _chacha_rounds(x):
    def qr(a, b, c, d):
        x[a] = (x[a] + x[b]) & _M32; x[d] = _rotl(x[d] ^ x[a], 16)  # noqa: E702
        x[c] = (x[c] + x[d]) & _M32; x[b] = _rotl(x[b] ^ x[c], 12)  # noqa: E702
        x[a] = (x[a] + x[b]) & _M32; x[d] = _rotl(x[d] ^ x[a], 8)  # noqa: E702
        x[c] = (x[c] + x[d]) & _M32; x[b] = _rotl(x[b] ^ x[c], 7)  # noqa: E702
    for _ in range(10):
        qr(0, 4, 8, 12); qr(1, 5, 9, 13); qr(2, 6, 10, 14); qr(3, 7, 11, 15)  # noqa: E702
        qr(0, 5, 10, 15); qr(1, 6, 11, 12); qr(2, 7, 8, 13); qr(3, 4, 9, 14)  # noqa: E702


def _chacha_block(key, counter, nonce12):
    state = [*_SIGMA, *struct.unpack("<8I", key), counter, *struct.unpack("<3I", nonce12)]
    x = list(state)
    _chacha_rounds(x)
    return struct.pack("<16I", *[(a + b) & _M32 for a, b in zip(x, state)])


def _poly1305(key, msg):
    r = int.from_bytes(key[:16], "little") & 0x0FFFFFFC0FFFFFFC0FFFFFFC0FFFFFFF
    s = int.from_bytes(key[16:], "little")
    p, acc = (1 << 130) - 5, 0
    for i in range(0, len(msg), 16):
        acc = (acc + int.from_bytes(msg[i:i + 16] + b"\x01", "little")) * r % p
    return ((acc + s) % (1 << 128)).to_bytes(16, "little")


def xchacha20poly1305_open(key, nonce24, sealed, aad):
    """Decrypt and verify; ValueError if the tag does not match."""
    x = [*_SIGMA, *struct.unpack("<8I", key), *struct.unpack("<4I", nonce24[:16])]
    _chacha_rounds(x)
    subkey = struct.pack("<8I", *(x[0:4] + x[12:16]))
    nonce12 = b"\0" * 4 + nonce24[16:]
    ct, tag = sealed[:-16], sealed[-16:]
    pad = lambda b: b + b"\0" * (-len(b) % 16)  # noqa: E731
    mac = _poly1305(_chacha_block(subkey, 0, nonce12)[:32],
                    pad(aad) + pad(ct) + struct.pack("<QQ", len(aad), len(ct)))
    if not hmac.compare_digest(mac, tag):
        raise ValueError("the tag does not match: another key, another row, or altered")
    out = bytearray()
    for i in range(0, len(ct), 64):
        block = _chacha_block(subkey, 1 + i // 64, nonce12)
        out += bytes(a ^ b for a, b in zip(ct[i:i + 64], block))
    return bytes(out)


def open_sealed(key_path, what, row_id, stored):
    """Open a secret stored sealed: base64url(nonce ‖ ciphertext ‖ tag) bound to
    "berth sealed secret v1\\0<table.column>\\0<row id>"."""
    key = bytes.fromhex(Path(key_path).read_text().strip())
    raw = base64.urlsafe_b64decode(stored + "=" * (-len(stored) % 4))
    aad = b"berth sealed secret v1\0" + what.encode() + b"\0" + row_id.encode()
    return xchacha20poly1305_open(key, raw[:24], raw[24:], aad).decode()


@contextlib.contextmanager
def fake_clock(now):
    """Make botocore sign with `now` (a datetime, or a timedelta offset from the real time)."""
    if now is None:
        yield
        return
    real = botocore.auth.get_current_datetime
    if isinstance(now, datetime.timedelta):
        offset = now
        fake = lambda: real() + offset  # noqa: E731
    else:
        fake = lambda: now  # noqa: E731
    with mock.patch.object(botocore.auth, "get_current_datetime", fake):
        yield


def until(what, within, check):
    """Poll `check` until it returns something truthy; return that."""
    deadline = time.time() + within
    while True:
        got = check()
        if got:
            return got
        assert time.time() < deadline, f"timed out after {within}s waiting until {what}"
        time.sleep(0.05)


@contextlib.contextmanager
def dockerd(directory):
    """A Docker engine of its own (Debian's docker.io) with its data, socket and log under
    `directory`; yields the environment the docker CLI needs to talk to it."""
    daemon = shutil.which("dockerd")
    if daemon is None:
        pytest.fail("dockerd is not installed: scripts/test installs Debian's docker.io")
    d = Path(directory)
    sock = d / "docker.sock"
    log = open(d / "dockerd.log", "w")
    proc = subprocess.Popen(
        [daemon, "--iptables=false", "--ip-masq=false", "--ip-forward=false", "--bridge=none",
         "--storage-driver=vfs", f"--data-root={d / 'root'}", f"--exec-root={d / 'exec'}",
         f"--pidfile={d / 'dockerd.pid'}", f"-H=unix://{sock}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}", "DOCKER_CONFIG": str(d / "config")}
    try:
        deadline = time.time() + 30
        while subprocess.run(["docker", "info"], env=env, capture_output=True).returncode != 0:
            if time.time() > deadline or proc.poll() is not None:
                pytest.fail("dockerd did not start: " + (d / "dockerd.log").read_text()[-2000:])
            time.sleep(0.1)
        yield env
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


@pytest.fixture(scope="module")
def docker_engine(tmp_path_factory):
    """A Docker engine of the test module's own: (the docker CLI's environment, its socket)."""
    d = tmp_path_factory.mktemp("docker")
    with dockerd(d) as env:
        yield env, d / "docker.sock"


def run_client(args, env, input=None, check=True):
    """Run a client (docker, podman) with `env`; it must succeed unless `check` is false."""
    p = subprocess.run(args, env=env, input=input, capture_output=True, text=True, timeout=300)
    if check:
        assert p.returncode == 0, f"{' '.join(args)}: {p.stdout}\n{p.stderr}"
    return p


def start_server(tmp_path_factory, name="berth", **kw):
    return Server(tmp_path_factory.mktemp(name) / "data", **kw).start()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start_server(tmp_path_factory)
    yield s
    rc = s.stop()
    assert rc == 0, f"berth serve exited {rc} after SIGTERM:\n" + "".join(s.stderr_lines[-30:])


# ---------------------------------------------------------------------------------------
# The registry: OCI images built in Python, skopeo, raw /v2 requests with a registry
# password, source-address binding (aws:SourceIp from 127.0.0.x).
# ---------------------------------------------------------------------------------------

import base64  # noqa: E402
import gzip  # noqa: E402
import hashlib  # noqa: E402
import http.client  # noqa: E402
import io  # noqa: E402
import shutil  # noqa: E402
import tarfile  # noqa: E402

import requests.adapters  # noqa: E402

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
SEEDS_DIR = Path(__file__).resolve().parents[2] / "examples" / "seeds"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type, data: bytes, **extra):
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}


def random_layer(size=4096):
    """A gzipped tar with one file of `size` random bytes; returns (gzip bytes, tar bytes)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tf:
        data = os.urandom(size)
        info = tarfile.TarInfo(name=f"file-{os.urandom(4).hex()}")
        info.size = len(data)
        info.mtime = 0
        tf.addfile(info, io.BytesIO(data))
    tar = raw.getvalue()
    return gzip.compress(tar, mtime=0), tar


@dataclass
class OciImage:
    """An OCI image manifest with its config and layers, all as bytes."""
    config: bytes
    layers: list
    manifest: bytes

    @property
    def digest(self):
        return sha256(self.manifest)

    @property
    def blobs(self):
        """(digest, bytes) of the config and every layer, config first."""
        return [(sha256(b), b) for b in [self.config, *self.layers]]

    @property
    def size(self):
        return sum(len(b) for _, b in self.blobs)

    def subject(self):
        return descriptor(OCI_MANIFEST, self.manifest)


def make_image(layers=2, size=4096, os_name="linux", arch="amd64", manifest_extra=None):
    """An OCI image of `layers` random layers."""
    pairs = [random_layer(size) for _ in range(layers)]
    config = json.dumps({
        "architecture": arch, "os": os_name,
        "config": {"Env": [f"NONCE={os.urandom(8).hex()}"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(tar) for _, tar in pairs]},
        "history": [{"created_by": "berth e2e"} for _ in pairs],
    }, separators=(",", ":")).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(OCI_LAYER, gz) for gz, _ in pairs],
        **(manifest_extra or {}),
    }
    return OciImage(config, [gz for gz, _ in pairs], json.dumps(manifest, indent=1).encode())


def write_oci_layout(directory, images_by_tag: dict, index_manifests=None):
    """An OCI image layout holding `images_by_tag` ({tag: OciImage}); `index_manifests`
    ({tag: (index bytes, [OciImage])}) adds image indexes."""
    d = Path(directory)
    blobs = d / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (d / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')

    def put(data):
        (blobs / sha256(data).split(":")[1]).write_bytes(data)

    entries = []
    for tag, img in images_by_tag.items():
        for _, b in img.blobs:
            put(b)
        put(img.manifest)
        entries.append(descriptor(OCI_MANIFEST, img.manifest,
                                  annotations={"org.opencontainers.image.ref.name": tag}))
    for tag, (index, children) in (index_manifests or {}).items():
        for img in children:
            for _, b in img.blobs:
                put(b)
            put(img.manifest)
        put(index)
        entries.append(descriptor(OCI_INDEX, index,
                                  annotations={"org.opencontainers.image.ref.name": tag}))
    (d / "index.json").write_text(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                              "manifests": entries}))
    return d


def read_oci_layout(directory, tag=None):
    """(manifest descriptor, manifest bytes) of a tag (or the only entry) of a layout."""
    d = Path(directory)
    index = json.loads((d / "index.json").read_text())
    entries = index["manifests"]
    if tag is not None:
        entries = [e for e in entries
                   if e.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag]
    assert len(entries) == 1, f"{directory}: {index}"
    e = entries[0]
    return e, oci_blob(d, e["digest"])


def oci_blob(directory, digest):
    return (Path(directory) / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()


def skopeo(*args, check=True, timeout=120, env=None):
    """Run skopeo; with check, it must succeed."""
    assert shutil.which("skopeo"), "skopeo is not installed (apt-get install skopeo)"
    p = subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True, text=True,
                       timeout=timeout, env=env)
    if check:
        assert p.returncode == 0, f"skopeo {' '.join(args)} failed ({p.returncode}):\n{p.stderr}"
    return p


def login_password(server, creds: Creds, registry_ids=None) -> str:
    """The registry password GetAuthorizationToken gives `creds`."""
    kw = {"registryIds": registry_ids} if registry_ids else {}
    data = server.client("ecr", creds).get_authorization_token(**kw)["authorizationData"][0]
    user, password = base64.b64decode(data["authorizationToken"]).decode().split(":", 1)
    assert user == "AWS"
    return password


def through_host(server, host):
    """(address, environment) for skopeo to reach `server` as `host` (an account's registry
    host, `<account>.dkr.ecr.localhost:PORT`) without DNS: the server is the HTTP proxy,
    and it reads the registry from the Host header as it would from a resolved name."""
    if host is None:
        return f"127.0.0.1:{server.port}", None
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "http_proxy")}
    return host, {**env, "HTTP_PROXY": server.url}


def skopeo_push(server, password, layout, tag, repo, dest_tag=None, check=True, extra=(), host=None):
    address, env = through_host(server, host)
    return skopeo("copy", "--dest-tls-verify=false", "--dest-creds", f"AWS:{password}", *extra,
                  f"oci:{layout}:{tag}", f"docker://{address}/{repo}:{dest_tag or tag}",
                  check=check, env=env)


def skopeo_pull(server, password, repo, ref, layout, tag="pulled", check=True, extra=(), host=None):
    """Pull repo:ref (or repo@digest) into an OCI layout; returns the process. `host`: the
    registry host to address (see through_host)."""
    sep = "@" if ref.startswith("sha256:") else ":"
    address, env = through_host(server, host)
    return skopeo("copy", "--src-tls-verify=false", "--src-creds", f"AWS:{password}", *extra,
                  f"docker://{address}/{repo}{sep}{ref}", f"oci:{layout}:{tag}",
                  check=check, env=env)


class SourceAddressAdapter(requests.adapters.HTTPAdapter):
    """Connect from a given local address (127.0.0.2 reaches 127.0.0.1 on Linux)."""

    def __init__(self, source, **kw):
        self.source = source
        super().__init__(**kw)

    def init_poolmanager(self, connections, maxsize, block=False, **kw):
        kw["source_address"] = (self.source, 0)
        super().init_poolmanager(connections, maxsize, block, **kw)


class Registry:
    """Raw OCI distribution requests to a server's /v2 with Basic AWS:<password>."""

    def __init__(self, server, password=None, host=None, source=None):
        self.server = server
        self.password = password
        self.host = host
        self.session = requests.Session()
        if server.ca_bundle:
            self.session.verify = str(server.ca_bundle)
        if source:
            self.session.mount("http://", SourceAddressAdapter(source))

    def headers(self, extra=None):
        h = {}
        if self.password is not None:
            h["Authorization"] = "Basic " + base64.b64encode(f"AWS:{self.password}".encode()).decode()
        if self.host:
            h["Host"] = self.host
        h.update(extra or {})
        return h

    def url(self, path):
        if path.startswith("http://") or path.startswith("https://"):
            return path
        return self.server.url + path

    def request(self, method, path, data=None, headers=None, params=None, **kw):
        return self.session.request(method, self.url(path), data=data, params=params,
                                    headers=self.headers(headers), timeout=60,
                                    allow_redirects=False, **kw)

    def raw_path(self, method, path, body=b"", headers=None):
        """A request whose path is sent exactly as given (no dot-segment removal)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=self.headers(headers))
            r = conn.getresponse()
            return r.status, r.read(), dict(r.getheaders())
        finally:
            conn.close()

    # -- blobs ------------------------------------------------------------------------

    def push_blob(self, repo, data, digest=None):
        """Monolithic upload (POST ?digest=)."""
        return self.request("POST", f"/v2/{repo}/blobs/uploads/", data=data,
                            params={"digest": digest or sha256(data)},
                            headers={"Content-Type": "application/octet-stream"})

    def start_upload(self, repo, params=None):
        return self.request("POST", f"/v2/{repo}/blobs/uploads/", params=params)

    def patch(self, location, data, start=None, headers=None):
        h = {"Content-Type": "application/octet-stream"}
        if start is not None:
            h["Content-Range"] = f"{start}-{start + len(data) - 1}"
        h.update(headers or {})
        return self.request("PATCH", location, data=data, headers=h)

    def finish(self, location, digest, data=b""):
        sep = "&" if "?" in location else "?"
        return self.request("PUT", f"{location}{sep}digest={digest}", data=data,
                            headers={"Content-Type": "application/octet-stream"})

    def head_blob(self, repo, digest):
        return self.request("HEAD", f"/v2/{repo}/blobs/{digest}")

    def get_blob(self, repo, digest, headers=None):
        return self.request("GET", f"/v2/{repo}/blobs/{digest}", headers=headers)

    # -- manifests --------------------------------------------------------------------

    def put_manifest(self, repo, ref, body: bytes, media_type=OCI_MANIFEST):
        h = {"Content-Type": media_type} if media_type else {}
        return self.request("PUT", f"/v2/{repo}/manifests/{ref}", data=body, headers=h)

    def get_manifest(self, repo, ref, accept=(OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST), head=False):
        return self.request("HEAD" if head else "GET", f"/v2/{repo}/manifests/{ref}",
                            headers={"Accept": ", ".join(accept)})

    def delete_manifest(self, repo, ref):
        return self.request("DELETE", f"/v2/{repo}/manifests/{ref}")

    def push_image(self, repo, image: OciImage, ref=None):
        """Every blob (monolithic) then the manifest by `ref` (default: its digest)."""
        for d, b in image.blobs:
            r = self.push_blob(repo, b, d)
            assert r.status_code == 201, (r.status_code, r.text)
        r = self.put_manifest(repo, ref or image.digest, image.manifest)
        assert r.status_code == 201, (r.status_code, r.text)
        assert r.headers["Docker-Content-Digest"] == image.digest
        return r


def oci_error(r):
    """(status, first error code, its message) of a /v2 error response."""
    try:
        e = r.json()["errors"][0]
    except Exception:  # noqa: BLE001
        return r.status_code, None, r.text
    return r.status_code, e.get("code"), e.get("message", "")


def seed_text(name, **ids):
    """A seed policy (examples/seeds/<name>.json) with account ids replaced:
    seed_text("000-allow-another-account-push", **{"111111111111": a, "222222222222": b})."""
    text = (SEEDS_DIR / f"{name}.json").read_text()
    for old, new in ids.items():
        text = text.replace(old, new)
    return text


ENCODED = ". Encoded authorization failure message: "


def plain(message):
    """The IAM sentence of a denial, without the encoded authorization message the server
    appends (encoded_denials, on by default); checks that the encoded message is there."""
    head, sep, blob = message.partition(ENCODED)
    assert sep and blob, f"no encoded authorization message in {message!r}"
    return head


class HoldingProxy:
    """A TCP proxy on 127.0.0.1 in front of the port `target`: it counts the bytes it
    passes toward the target (`sent`), and can hold them — past `hold_after` bytes (None:
    never; 0: from the first) it forwards nothing more toward the target until
    `release()`, so what crosses it is pending for as long as the test needs. Held
    connections then go on, or fail if the target has gone meanwhile. Replication between
    deployments is slowed and cut this way: the sender's peer endpoint is the proxy."""

    def __init__(self, target, hold_after=None, back=False):
        """`back`: hold what comes back from the target instead, once a connection has
        passed `hold_after` bytes toward the client (`received` counts them, all
        connections): answers are slowed and cut this way."""
        self.target = target
        self.hold_after = hold_after
        self.back = back
        self.sent = 0
        self.received = 0
        self.active = 0
        self.holding = threading.Event()
        self.released = threading.Event()
        self._lock = threading.Lock()
        self._sockets = []
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def release(self):
        self.released.set()

    def _count(self, toward_target, n):
        with self._lock:
            if toward_target:
                self.sent += n
            else:
                self.received += n

    def close(self):
        self.release()
        for s in [self._listener, *self._sockets]:
            try:
                s.close()
            except OSError:
                pass

    def _accept(self):
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()  # the target is down: so is the connection
                continue
            with self._lock:
                self._sockets += [client, upstream]
                self.active += 1
            ends = [2]
            threading.Thread(target=self._pipe, args=(client, upstream, True, ends), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False, ends), daemon=True).start()

    def _pipe(self, src, dst, toward_target, ends):
        held = toward_target != self.back  # the direction this proxy holds
        passed = 0  # on this connection, in the held direction
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                counted = self.sent if toward_target else passed
                if held and self.hold_after is not None and not self.released.is_set() \
                        and counted + len(data) > self.hold_after:
                    keep = max(0, self.hold_after - counted) if self.back else 0
                    if keep:
                        dst.sendall(data[:keep])
                        self._count(toward_target, keep)
                        passed += keep
                        data = data[keep:]
                    self.holding.set()
                    self.released.wait()
                dst.sendall(data)
                self._count(toward_target, len(data))
                passed += len(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with self._lock:
            ends[0] -= 1
            if ends[0] == 0:
                self.active -= 1
