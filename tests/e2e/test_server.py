"""The server process: health and readiness, startup files, accounts, audit log, shutdown."""

import datetime
import json
import re
import signal
import sqlite3
import stat
import time

import requests

from berth import (Creds, allow, client_error, doc, server, start_server,  # noqa: F401
                   unique)


def test_healthz(server):
    r = requests.get(server.url + "/healthz", timeout=10)
    assert r.status_code == 200
    assert r.text.strip() == "ok"


def test_readyz_names_what_fails_and_recovers(tmp_path_factory):
    s = start_server(tmp_path_factory, "readyz")
    ready = s.url + "/readyz"

    def status():
        r = requests.get(ready, timeout=10)
        return r.status_code, r.text

    try:
        assert status() == (200, "ready\n")

        # The blob directory replaced by a file: not ready, saying which directory and why.
        blobs, away = s.data_dir / "blobs", s.data_dir / "blobs.away"
        blobs.rename(away)
        blobs.write_text("not a directory")
        code, text = status()
        assert code == 503, text
        assert text.startswith("not ready: blob store: listing the blob directory "), text
        assert str(blobs / "sha256") in text and "Not a directory" in text, text
        assert requests.get(s.url + "/healthz", timeout=10).status_code == 200, "still alive"
        # Repaired: ready again, no restart.
        blobs.unlink()
        away.rename(blobs)
        assert status() == (200, "ready\n")

        # A migration this build does not know (a newer berth migrated the shared
        # database): not ready until it is gone.
        db = sqlite3.connect(s.data_dir / "berth.db", timeout=10)
        try:
            with db:
                db.execute("INSERT INTO _sqlx_migrations (version, description, success, checksum, "
                           "execution_time) VALUES (9999, 'from a newer berth', 1, x'00', 1)")
            code, text = status()
            assert code == 503, text
            assert "not ready: metadata store: schema not current: migration 9999 is applied but this " \
                   "build does not know it" in text, text
            with db:
                db.execute("DELETE FROM _sqlx_migrations WHERE version = 9999")
        finally:
            db.close()
        assert status() == (200, "ready\n")
        # Unauthenticated: a credential sent along is not looked at.
        assert requests.get(ready, headers={"Authorization": "AWS4-HMAC-SHA256 bogus"},
                            timeout=10).status_code == 200
    finally:
        assert s.stop() == 0


def test_unknown_path_is_not_found(server):
    r = requests.get(server.url + "/nope", timeout=10)
    assert r.status_code == 404


def test_root_credentials_file(server):
    path = server.root_credentials_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    d = json.loads(path.read_text())
    assert set(d) >= {"account_id", "access_key_id", "secret_access_key"}
    assert re.fullmatch(r"\d{12}", d["account_id"])
    assert re.fullmatch(r"AKIA[A-Z0-9]{16}", d["access_key_id"])
    assert len(d["secret_access_key"]) == 40


def test_root_identity_cli(server):
    out = server.cli(server.root, "sts", "get-caller-identity")
    assert out == {"UserId": server.account, "Account": server.account,
                   "Arn": f"arn:aws:iam::{server.account}:root"}


def test_account_create_while_running(server):
    before = json.loads(server.root_credentials_path.read_text())
    acct = "222233334444"
    c = server.account_create(acct, alias="second")
    assert c.account_id == acct
    assert re.fullmatch(r"AKIA[A-Z0-9]{16}", c.access_key_id)
    # usable at once by the running server
    ident = server.sts(c).get_caller_identity()
    assert ident["Account"] == acct
    assert ident["Arn"] == f"arn:aws:iam::{acct}:root"
    # the new account is isolated from the default one
    server.iam(c).create_user(UserName="only-in-second")
    names = [u["UserName"] for u in server.iam().list_users()["Users"]]
    assert "only-in-second" not in names
    assert client_error(server.iam().get_user, UserName="only-in-second")[0] == "NoSuchEntity"
    # the default account's root credentials file is untouched
    assert json.loads(server.root_credentials_path.read_text()) == before


def test_account_create_random_id_and_duplicate(server):
    c = server.account_create()
    assert re.fullmatch(r"\d{12}", c.account_id)
    assert c.account_id != server.account
    assert server.sts(c).get_caller_identity()["Account"] == c.account_id
    p = server.account_create(c.account_id, check=False)
    assert p.returncode != 0, "creating an account whose id exists must fail"


def test_missing_and_invalid_action(server):
    r = server.raw({"Version": "2010-05-08"}, creds=server.root)
    assert r.status == 400 and r.code == "MissingAction"
    r = server.raw({"Action": "FrobnicateUser", "Version": "2010-05-08"}, creds=server.root)
    assert r.status == 400 and r.code == "InvalidAction", (r.status, r.body)


def test_response_has_request_id(server):
    r = server.raw({"Action": "GetCallerIdentity", "Version": "2011-06-15"}, creds=server.root)
    assert r.status == 200
    rid = r.find("RequestId")
    assert rid and len(rid) >= 16
    assert r.headers.get("x-amzn-RequestId") == rid


def test_audit_log_allow_and_deny(server):
    iam = server.iam()
    allowed_name = unique("audited")
    resp = iam.create_user(UserName=allowed_name)
    allowed_rid = resp["ResponseMetadata"]["RequestId"]
    bob, bob_creds = server.new_user()
    code, msg, status = client_error(server.iam(bob_creds).create_user, UserName="x-denied")
    assert code == "AccessDenied" and status == 403
    denied_rid = None
    # find the request id of the denial from a raw request to be exact
    r = server.raw({"Action": "CreateUser", "Version": "2010-05-08", "UserName": "y-denied"},
                   creds=bob_creds)
    assert r.code == "AccessDenied"
    denied_rid = r.find("RequestId")

    lines = server.audit_lines(allowed_rid, denied_rid)
    keys = {"time", "request_id", "principal", "action", "resource", "decision", "reason", "source_ip",
            "status"}
    for line in lines:
        assert set(line) == keys, line
    acct = server.account
    a = [line for line in lines if line["request_id"] == allowed_rid]
    assert len(a) == 1, f"one audit line for request {allowed_rid}: {a}"
    a = a[0]
    assert a["principal"] == f"arn:aws:iam::{acct}:root"
    assert a["action"] == "iam:CreateUser"
    assert a["resource"] == f"arn:aws:iam::{acct}:user/{allowed_name}"
    assert a["decision"] == "Allow"
    assert a["status"] == 200
    assert a["source_ip"] == "127.0.0.1"
    t = datetime.datetime.fromisoformat(a["time"].replace("Z", "+00:00"))
    assert abs((datetime.datetime.now(datetime.timezone.utc) - t).total_seconds()) < 120

    d = [line for line in lines if line["request_id"] == denied_rid]
    assert len(d) == 1, f"one audit line for request {denied_rid}"
    d = d[0]
    assert d["principal"] == f"arn:aws:iam::{acct}:user/{bob}"
    assert d["action"] == "iam:CreateUser"
    assert d["resource"] == f"arn:aws:iam::{acct}:user/y-denied"
    assert d["decision"] == "ImplicitDeny"
    assert d["status"] == 403
    assert "is not authorized to perform: iam:CreateUser" in d["reason"]
    assert d["source_ip"] == "127.0.0.1"


def test_audit_explicit_deny(server):
    name, creds = server.new_user(policies=[doc(allow("iam:*"), {"Effect": "Deny", "Action": "iam:ListUsers",
                                                                  "Resource": "*"})])
    r = server.raw({"Action": "ListUsers", "Version": "2010-05-08"}, creds=creds)
    assert r.code == "AccessDenied"
    rid = r.find("RequestId")
    line = [x for x in server.audit_lines(rid) if x["request_id"] == rid]
    assert len(line) == 1 and line[0]["decision"] == "ExplicitDeny"
    assert line[0]["resource"] == "*"


def test_spoofed_forwarded_for_is_ignored(server):
    """X-Forwarded-For from a peer that is not a trusted proxy must not set the source IP."""
    name, creds = server.new_user()
    r = server.raw({"Action": "GetUser", "Version": "2010-05-08", "UserName": name}, creds=creds,
                   headers={"X-Forwarded-For": "10.9.8.7"})
    rid = r.find("RequestId")
    line = [x for x in server.audit_lines(rid) if x["request_id"] == rid]
    assert len(line) == 1
    assert line[0]["source_ip"] == "127.0.0.1"


def test_graceful_shutdown_and_restart(tmp_path_factory):
    s = start_server(tmp_path_factory, "shutdown")
    root = s.root
    s.iam().create_user(UserName="persisted")
    key = s.iam().create_access_key(UserName="persisted")["AccessKey"]
    first_port = s.port

    rc = s.stop(signal.SIGTERM)
    assert rc == 0, "berth serve must exit 0 after SIGTERM:\n" + "".join(s.stderr_lines[-20:])

    # restart on the same directory: same account, same data, root credentials kept
    s.start()
    try:
        assert s.root == root
        assert s.iam().get_user(UserName="persisted")["User"]["UserName"] == "persisted"
        user = Creds.from_access_key(key)
        assert s.sts(user).get_caller_identity()["Arn"] == f"arn:aws:iam::{root.account_id}:user/persisted"
        assert first_port  # (ports may differ between runs)
    finally:
        assert s.stop(signal.SIGTERM) == 0


def test_sigint_also_exits_zero(tmp_path_factory):
    s = start_server(tmp_path_factory, "sigint")
    assert requests.get(s.url + "/healthz", timeout=10).status_code == 200
    time.sleep(0.05)
    assert s.stop(signal.SIGINT) == 0


def test_audit_one_line_per_request(server):
    """The catalog decides every repository; its request still writes one line, naming the
    first denial and counting the decisions."""
    from berth import Registry, login_password
    ecr = server.client("ecr", server.root)
    prefix = unique("audcat")
    for i in range(40):
        ecr.create_repository(repositoryName=f"{prefix}/r{i:02d}")
    name, creds = server.new_user(policies=[doc(
        allow("ecr:GetAuthorizationToken"),
        allow("ecr:DescribeRepositories",
              f"arn:aws:ecr:us-east-1:{server.account}:repository/{prefix}/r0*"))])
    r = Registry(server, login_password(server, creds)).request("GET", "/v2/_catalog?n=1000")
    assert r.status_code == 200
    listed = [n for n in r.json()["repositories"] if n.startswith(prefix)]
    assert listed == [f"{prefix}/r{i:02d}" for i in range(10)]
    rid = r.headers["x-amzn-requestid"]
    lines = [x for x in server.audit_lines(rid) if x["request_id"] == rid]
    assert len(lines) == 1, lines
    line = lines[0]
    assert line["status"] == 200
    assert line["decision"] == "ImplicitDeny" and line["action"] == "ecr:DescribeRepositories"
    assert line["denied"] >= 30 and line["decisions"] >= 40, line
    assert line["principal"] == f"arn:aws:iam::{server.account}:user/{name}"


def modes_open_to_others(root):
    """Every path under `root` (itself included) with a group or other permission bit."""
    import os
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for p in [dirpath] + [os.path.join(dirpath, n) for n in filenames]:
            mode = stat.S_IMODE(os.lstat(p).st_mode)
            if mode & 0o077:
                found.append((p, oct(mode)))
    return found


def test_data_directory_is_private_whatever_the_umask(tmp_path_factory):
    """A fresh data directory under umask 022: the directory, the database and its WAL,
    blobs and their folders, upload staging, the audit log: none readable by others."""
    import os
    from berth import Registry, Server, login_password, make_image
    s = Server(tmp_path_factory.mktemp("private") / "data")
    os.rmdir(s.data_dir)  # berth makes it
    old = os.umask(0o022)
    try:
        s.start()
        try:
            reg = Registry(s, login_password(s, s.root))
            repo = unique("private")
            s.client("ecr", s.root).create_repository(repositoryName=repo)
            reg.push_image(repo, make_image(layers=2), "v1")
            r = reg.request("POST", f"/v2/{repo}/blobs/uploads/")  # a pending upload
            assert r.status_code == 202, r.text
            s.account_create()  # `berth account create` opens the same store
            names = {p.name for p in s.data_dir.iterdir()}
            assert {"berth.db", "berth.db-wal", "blobs", "uploads", "audit.log"} <= names, names
            assert any((s.data_dir / "uploads").iterdir())
            assert modes_open_to_others(s.data_dir) == []
            assert stat.S_IMODE(s.data_dir.stat().st_mode) == 0o700
            assert stat.S_IMODE((s.data_dir / "berth.db").stat().st_mode) == 0o600
        finally:
            assert s.stop() == 0
    finally:
        os.umask(old)


def test_wide_data_directory_is_tightened_with_a_warning(tmp_path_factory):
    """A data directory left readable by others (an older version, a chmod): on start the
    server takes group and other bits off and says so."""
    import os
    from berth import Server
    s = Server(tmp_path_factory.mktemp("wide") / "data")
    s.start()
    s.iam().create_user(UserName="kept")
    assert s.stop() == 0
    db = s.data_dir / "berth.db"
    os.chmod(s.data_dir, 0o755)
    os.chmod(db, 0o644)
    os.chmod(s.data_dir / "blobs", 0o755)
    if (s.data_dir / "berth.db-wal").exists():
        os.chmod(s.data_dir / "berth.db-wal", 0o644)
    assert modes_open_to_others(s.data_dir) != []
    s.start()
    try:
        assert s.iam().get_user(UserName="kept")["User"]["UserName"] == "kept"
        assert stat.S_IMODE(s.data_dir.stat().st_mode) == 0o700
        assert stat.S_IMODE(db.stat().st_mode) == 0o600
        assert stat.S_IMODE((s.data_dir / "blobs").stat().st_mode) == 0o700
        warnings = [line for line in s.stderr_lines if "WARN" in line and "open to other users" in line]
        assert any(str(db) in w and "0644" in w and "0600" in w for w in warnings), s.stderr_lines
        assert any(f"{s.data_dir} was open" in w and "0755" in w for w in warnings), warnings
    finally:
        assert s.stop() == 0
    # the next start has nothing to say
    s.start()
    try:
        assert requests.get(s.url + "/healthz", timeout=10).status_code == 200
        assert [line for line in s.stderr_lines if "open to other users" in line] == []
    finally:
        assert s.stop() == 0
