"""Helpers for Berth's end-to-end tests: a real `berth serve` on loopback, driven by the
real aws CLI (subprocess) and boto3.

Environment:
  BERTH_BIN   the berth binary (default /work/main/target/debug/berth)
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import json
import os
import re
import signal
import sqlite3
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


class Server:
    """One `berth serve` process on 127.0.0.1 with its own data directory."""

    def __init__(self, data_dir, extra_config="", args=()):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.audit_path = self.data_dir / "audit.log"
        self.config_path = self.data_dir.parent / (self.data_dir.name + "-config.toml")
        self.config_path.write_text(
            f"cache_ttl_ms = {int(CACHE_TTL * 1000)}\n"
            f'audit_log = "{self.audit_path}"\n'
            f"clock_skew_seconds = 900\n" + extra_config
        )
        self.args = list(args)
        self.proc = None
        self.port = None
        self.stderr_lines: list[str] = []
        self._clients = {}

    # -- lifecycle -------------------------------------------------------------------

    def start(self, timeout=60):
        assert os.path.exists(BIN), f"berth binary {BIN} is missing (set BERTH_BIN)"
        self.stderr_lines = []
        self.proc = subprocess.Popen(
            [BIN, "serve", "--data-dir", str(self.data_dir), "--listen", "127.0.0.1:0",
             "--config", str(self.config_path), *self.args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, env={**os.environ, "NO_COLOR": "1"},
        )
        found = threading.Event()

        def pump():
            for line in self.proc.stderr:
                self.stderr_lines.append(line)
                m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
                if m and not found.is_set():
                    self.port = int(m.group(1))
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
        return f"http://127.0.0.1:{self.port}"

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
        cmd = [BIN, "account", "create", "--data-dir", str(self.data_dir), "--json"]
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

    def client(self, service, creds: Creds):
        key = (service, creds.access_key_id, creds.secret_access_key, creds.session_token)
        if key not in self._clients:
            self._clients[key] = boto3.session.Session().client(
                service,
                endpoint_url=self.url,
                region_name=REGION,
                aws_access_key_id=creds.access_key_id,
                aws_secret_access_key=creds.secret_access_key,
                aws_session_token=creds.session_token,
                config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5,
                              read_timeout=30),
            )
        return self._clients[key]

    def iam(self, creds: Creds | None = None):
        return self.client("iam", creds or self.root)

    def sts(self, creds: Creds | None = None):
        return self.client("sts", creds or self.root)

    def _cli(self, creds, args):
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(creds.env() if creds else {})
        env.update({
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_MAX_ATTEMPTS": "1",
            "AWS_RETRY_MODE": "standard",
            "AWS_PAGER": "",
        })
        cmd = ["aws", *args, "--endpoint-url", self.url, "--output", "json"]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)

    def cli(self, creds, *args):
        """Run `aws ARGS...`; it must succeed; return its parsed JSON output (or None)."""
        p = self._cli(creds, args)
        assert p.returncode == 0, f"aws {' '.join(args)} failed ({p.returncode}): {p.stderr}"
        return json.loads(p.stdout) if p.stdout.strip() else None

    def cli_error(self, creds, *args) -> CliError:
        """Run `aws ARGS...`; it must fail with a service error; return the error."""
        p = self._cli(creds, args)
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
        r = requests.request(method, url, data=body, headers=h, timeout=30)
        return RawResponse(r.status_code, r.text, r.headers)

    # -- state ------------------------------------------------------------------------

    def db(self):
        return sqlite3.connect(self.data_dir / "berth.db", timeout=10)

    def audit_lines(self):
        if not self.audit_path.exists():
            return []
        return [json.loads(l) for l in self.audit_path.read_text().splitlines() if l.strip()]

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


def start_server(tmp_path_factory, name="berth", **kw):
    return Server(tmp_path_factory.mktemp(name) / "data", **kw).start()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start_server(tmp_path_factory)
    yield s
    rc = s.stop()
    assert rc == 0, f"berth serve exited {rc} after SIGTERM:\n" + "".join(s.stderr_lines[-30:])
