"""Secrets at rest: secret access keys (long-term and temporary), the registry-password
signing key and the denial-encryption key are sealed in the metadata store with a key kept
outside the database (DATA_DIR/secrets.key by default, --secrets-key-file): the database
file and its write-ahead log hold none of them in clear, a copy of the database without
the key is refused, and everything keeps working across restarts."""

import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess

from berth import (BIN, ALLOW_ALL, Creds, Registry, Server, client_error, login_password,
                   oci_error, open_sealed, trust, unique)


def raw_bytes(data_dir):
    """The database file and its -wal, as bytes."""
    out = b""
    for name in ("berth.db", "berth.db-wal"):
        p = data_dir / name
        if p.exists():
            out += p.read_bytes()
    return out


def make_everything(server):
    """A user with a key, a session from a role, a registry password and an encoded
    denial; returns them with the secrets the database must not show."""
    name, user = server.new_user(policies=[ALLOW_ALL])
    role = unique("role")
    server.iam().create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(
        trust(f"arn:aws:iam::{server.account}:user/{name}")))
    server.iam().put_role_policy(RoleName=role, PolicyName="p", PolicyDocument=json.dumps(ALLOW_ALL))
    c = server.sts(user).assume_role(RoleArn=f"arn:aws:iam::{server.account}:role/{role}",
                                      RoleSessionName="sealed")["Credentials"]
    session = Creds.from_sts(c, server.account)
    _, nobody = server.new_user()
    _, message, _ = client_error(server.iam(nobody).list_users)
    m = re.search(r"Encoded authorization failure message: ([A-Za-z0-9_-]+)", message)
    assert m, message
    password = login_password(server, user)
    return user, session, password, m.group(1), nobody


def works(server, user, session, password, blob):
    """Each credential signs, the registry password logs in, the denial decodes."""
    assert server.sts(user).get_caller_identity()["Arn"].endswith(":user/" + server.iam(user).get_user()["User"]["UserName"])
    assert ":assumed-role/" in server.sts(session).get_caller_identity()["Arn"]
    assert server.sts(server.root).get_caller_identity()["Account"] == server.account
    r = Registry(server, password).request("GET", "/v2/")
    assert r.status_code == 200, (r.status_code, r.text)
    decoded = json.loads(server.sts(user).decode_authorization_message(EncodedMessage=blob)["DecodedMessage"])
    assert decoded["allowed"] is False


def test_no_secret_in_clear_and_all_still_works_after_a_restart(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("sealed") / "data").start()
    try:
        key = server.secrets_key_path
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert re.fullmatch(r"[0-9a-f]{64}\n", key.read_text())
        user, session, password, blob, nobody = make_everything(server)
        works(server, user, session, password, blob)
        token_key = server.server_secret("registry-token-key")
        message_key = server.server_secret("authorization-message-key")
        secrets = [server.root.secret_access_key, user.secret_access_key,
                   session.secret_access_key, nobody.secret_access_key, token_key, message_key]
        raw = raw_bytes(server.data_dir)
        assert user.access_key_id.encode() in raw, "the ids are there in clear (sanity)"
        for s in secrets:
            assert s.encode() not in raw, f"a secret is in the database files in clear: {s[:6]}..."
        # a key file that is not the database's is nowhere in it either
        assert bytes.fromhex(key.read_text().strip()) not in raw
        assert key.read_text().strip().encode() not in raw
        with server.db() as db:
            sealed = db.execute("SELECT secret FROM access_keys WHERE access_key_id = ?",
                                (user.access_key_id,)).fetchone()[0]
        assert open_sealed(key, "access_keys.secret", user.access_key_id, sealed) == user.secret_access_key

        key_before = key.read_bytes()
        assert server.stop() == 0
        server.start()
        assert key.read_bytes() == key_before, "the key file is never replaced"
        works(server, user, session, password, blob)
        for s in secrets:
            assert s.encode() not in raw_bytes(server.data_dir)
    finally:
        server.stop()


def test_the_database_without_its_key_gives_no_credential(tmp_path_factory):
    base = tmp_path_factory.mktemp("stolen")
    server = Server(base / "data").start()
    root = server.root
    assert server.stop() == 0
    stolen = base / "copy"
    stolen.mkdir(mode=0o700)
    for name in ("berth.db", "berth.db-wal"):
        if (server.data_dir / name).exists():
            shutil.copy(server.data_dir / name, stolen / name)
    assert root.secret_access_key.encode() not in raw_bytes(stolen)

    # no key file: refused, and no new key is made for it
    other = Server(stolen)
    p = subprocess.run([BIN, "serve", "--data-dir", str(stolen), "--listen", "127.0.0.1:0"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert "secrets key file" in p.stderr and "does not exist" in p.stderr, p.stderr
    assert "--secrets-key-file" in p.stderr, p.stderr
    assert not (stolen / "secrets.key").exists()
    p = subprocess.run([BIN, "account", "create", "--data-dir", str(stolen), "--json"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "does not exist" in p.stderr, p.stderr

    # another key: refused, naming the file
    wrong = base / "wrong.key"
    wrong.write_text(os.urandom(32).hex() + "\n")
    wrong.chmod(0o600)
    p = subprocess.run([BIN, "serve", "--data-dir", str(stolen), "--listen", "127.0.0.1:0",
                        "--secrets-key-file", str(wrong)], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert f"the secrets key in {wrong} is not the key" in p.stderr, p.stderr

    # with the right key (given by flag, from elsewhere) the copy works
    shutil.copy(server.secrets_key_path, base / "right.key")
    other.args = ["--secrets-key-file", str(base / "right.key")]
    other.start()
    try:
        assert other.sts(root).get_caller_identity()["Account"] == root.account_id
        p = subprocess.run([BIN, "account", "list", "--data-dir", str(stolen),
                            "--secrets-key-file", str(base / "right.key")],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0 and root.account_id in p.stdout, p.stderr
    finally:
        other.stop()


def test_key_file_from_the_config_and_account_create(tmp_path_factory):
    base = tmp_path_factory.mktemp("configured")
    keyfile = base / "elsewhere.key"
    server = Server(base / "data", extra_config=f'secrets_key_file = "{keyfile}"\n').start()
    try:
        assert keyfile.exists() and not server.secrets_key_path.exists()
        assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600
        # account create beside the running server, with the same key
        p = subprocess.run([BIN, "account", "create", "--data-dir", str(server.data_dir), "--json",
                            "--secrets-key-file", str(keyfile)], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        new = json.loads(p.stdout)
        assert server.sts(Creds.from_root_json(new)).get_caller_identity()["Account"] == new["account_id"]
        assert new["secret_access_key"].encode() not in raw_bytes(server.data_dir)
        # without the flag it looks for DATA_DIR/secrets.key, which is not there
        p = subprocess.run([BIN, "account", "create", "--data-dir", str(server.data_dir)],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode != 0 and "does not exist" in p.stderr, p.stderr
        assert not server.secrets_key_path.exists()
    finally:
        server.stop()


def test_a_data_directory_with_secrets_in_clear_is_sealed_on_start(tmp_path_factory):
    """A data directory written before secrets were sealed (schema version 4, secrets in
    clear, no key file): the first start seals every secret with a new key; the old
    credentials, registry passwords and denial messages keep working."""
    server = Server(tmp_path_factory.mktemp("old") / "data").start()
    user, session, password, blob, _ = make_everything(server)
    token_key = server.server_secret("registry-token-key")
    message_key = server.server_secret("authorization-message-key")
    assert server.stop() == 0
    # Turn it into what the previous version left: secrets in clear, no check row, no
    # migration 5, no key file.
    clear = {"access_keys": {}, "sessions": {}}
    for creds, table in ((server.root, "access_keys"), (user, "access_keys"), (session, "sessions")):
        clear[table][creds.access_key_id] = creds.secret_access_key
    db = sqlite3.connect(server.data_dir / "berth.db")
    with db:
        for table, rows in clear.items():
            for kid, secret in rows.items():
                assert db.execute(f"UPDATE {table} SET secret = ? WHERE access_key_id = ?",
                                  (secret, kid)).rowcount == 1
        db.execute("UPDATE server_secrets SET value = ? WHERE name = 'registry-token-key'", (token_key,))
        db.execute("UPDATE server_secrets SET value = ? WHERE name = 'authorization-message-key'",
                   (message_key,))
        db.execute("DROP TABLE secrets_key_check")
        db.execute("DELETE FROM _sqlx_migrations WHERE version = 5")
    db.close()
    old_key = server.secrets_key_path.read_text()
    server.secrets_key_path.unlink()
    assert server.root.secret_access_key.encode() in raw_bytes(server.data_dir), "in clear (sanity)"

    server.start()
    try:
        assert server.secrets_key_path.read_text() != old_key, "a new key"
        works(server, user, session, password, blob)
        raw = raw_bytes(server.data_dir)
        for s in [server.root.secret_access_key, user.secret_access_key, session.secret_access_key,
                  token_key, message_key]:
            assert s.encode() not in raw, f"still in clear after the upgrade: {s[:6]}..."
        assert server.server_secret("registry-token-key") == token_key
        assert oci_error(Registry(server, "not-a-password").request("GET", "/v2/"))[0] == 401
    finally:
        server.stop()
