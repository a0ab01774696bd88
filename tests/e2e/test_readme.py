"""The README works as written: its walkthrough block runs, unchanged, against a fresh
`berth serve`, and the first start tells a newcomer what they need."""

import hashlib
import json
import os
import re
import socket
import subprocess
from pathlib import Path

from berth import BIN, Server, start_server

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- tests/e2e/test_readme.py runs the next block as written -->"


REPLICATION_MARKER = "<!-- tests/e2e/test_readme.py runs the replication block as written -->"
PULL_THROUGH_MARKER = "<!-- tests/e2e/test_readme.py runs the pull-through block as written -->"


def walkthrough(marker=MARKER) -> str:
    text = (ROOT / "README.md").read_text()
    assert marker in text, "the README lost its walkthrough marker"
    m = re.search(r"```sh\n(.*?)\n```", text[text.index(marker):], re.S)
    assert m, "no ```sh block after the walkthrough marker"
    return m.group(1)


def test_walkthrough_as_written(tmp_path_factory):
    s = start_server(tmp_path_factory, "readme")
    try:
        # The reader's shell: the repository's root (examples/, scripts/) with the server's
        # data directory as ./berth-data, nothing of this test's environment leaking in.
        cwd = tmp_path_factory.mktemp("newcomer")
        for name in ("examples", "scripts"):
            (cwd / name).symlink_to(ROOT / name)
        (cwd / "berth-data").symlink_to(s.data_dir)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update({
            "BERTH": f"127.0.0.1:{s.port}",
            "HOME": str(cwd),
            "AWS_CONFIG_FILE": str(cwd / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(cwd / "no-aws-credentials"),
            "REGISTRY_AUTH_FILE": str(cwd / "auth.json"),
        })
        p = subprocess.run(["bash", "-euo", "pipefail", "-c", walkthrough()], cwd=cwd, env=env,
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, f"walkthrough failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
        # ci is who it says, and it pulled back exactly what it pushed.
        assert re.search(rf"^arn:aws:iam::{s.account}:user/ci$", p.stdout, re.M), p.stdout
        pushed = json.loads((cwd / "hello" / "index.json").read_text())["manifests"][0]["digest"]
        pulled = json.loads((cwd / "pulled" / "index.json").read_text())["manifests"][0]["digest"]
        assert pushed == pulled and pushed.startswith("sha256:")
        assert p.stdout.rstrip().split("\n")[-2:] == [pushed, pushed], p.stdout
        policy = json.loads(s.client("ecr", s.root).get_repository_policy(
            repositoryName="team/app")["policyText"])
        assert policy["Statement"][0]["Principal"] == {"AWS": [f"arn:aws:iam::{s.account}:user/ci"]}
        # The push was ci's, decided by IAM.
        def ci_pushed(lines):
            return any(x["action"] == "ecr:PutImage" and x["decision"] == "Allow"
                       and x["principal"] == f"arn:aws:iam::{s.account}:user/ci" for x in lines)
        assert ci_pushed(s.audit_lines(until=ci_pushed)), "no audit line for ci's push"
        imgs = s.client("ecr", s.root).describe_images(repositoryName="team/app")["imageDetails"]
        assert [i["imageTags"] for i in imgs] == [["v1"]]
    finally:
        assert s.stop() == 0


def test_first_start_says_account_exports_and_loopback(tmp_path):
    s = Server(tmp_path / "data").start()
    try:
        err = "".join(s.stderr_lines)
        # Wait for nothing: the lines come before "listening on", which start() waited for.
        assert f"created account {s.account}" in err, err
        exports = [line.strip() for line in s.stderr_lines if line.strip().startswith("export ")]
        assert len(exports) == 3, err
        assert s.root.secret_access_key not in err, "the secret itself must not be printed"
        # The three lines, run by a shell, give the root credentials.
        out = subprocess.run(
            ["bash", "-c", "\n".join(exports) +
             '\necho "$AWS_ACCESS_KEY_ID $AWS_SECRET_ACCESS_KEY $AWS_DEFAULT_REGION"'],
            capture_output=True, text=True, check=True).stdout.split()
        assert out == [s.root.access_key_id, s.root.secret_access_key, "us-east-1"]
        assert re.search(r"127\.0\.0\.1 is a loopback address: only this machine", err), err
        # where the secrets key is, and that it must be kept (never its value)
        assert f"created the secrets key file {s.secrets_key_path}" in err, err
        assert "back it up" in err and s.secrets_key_path.read_text().strip() not in err, err
    finally:
        assert s.stop() == 0
    # A second start on the same data directory creates nothing and says nothing of it.
    s.start()
    try:
        assert "created account" not in "".join(s.stderr_lines)
        assert "created the secrets key file" not in "".join(s.stderr_lines)
    finally:
        assert s.stop() == 0


def test_port_clash_leaves_no_data_directory(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        data = tmp_path / "data"
        p = subprocess.run([BIN, "serve", "--data-dir", str(data), "--listen", f"127.0.0.1:{port}"],
                           capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert f"listening on 127.0.0.1:{port}" in p.stderr, p.stderr
    assert not data.exists(), f"a failed start left {sorted(os.listdir(data))}"


def test_help_says_what_berth_does():
    top = subprocess.run([BIN, "--help"], capture_output=True, text=True, check=True).stdout
    for words in ("ECR API", "OCI /v2", "IAM", "STS", "who can", "public", "offline"):
        assert words in top, f"berth --help does not mention {words!r}:\n{top}"
    serve = subprocess.run([BIN, "serve", "--help"], capture_output=True, text=True,
                           check=True).stdout
    for default in ("[default: ./berth-data]", "[default: 127.0.0.1:5000]",
                    "[default: us-east-1]", "[default: off]"):
        assert default in serve, f"berth serve --help does not show {default}:\n{serve}"
    assert "IAM and STS APIs on one HTTP port" not in serve


def test_duplicate_alias_names_the_alias(tmp_path):
    data = tmp_path / "data"
    run = lambda *a: subprocess.run([BIN, "account", "create", "--data-dir", str(data), *a],  # noqa: E731
                                    capture_output=True, text=True, timeout=60)
    assert run("--alias", "staging").returncode == 0
    p = run("--alias", "staging")
    assert p.returncode != 0
    assert "An account with the alias staging already exists." in p.stderr, p.stderr
    assert " or alias" not in p.stderr and "id" not in p.stderr.split("already exists")[0], p.stderr


def config_block() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"Configuration file \(every key optional; flags win\):\n\n```toml\n(.*?)\n```",
                  text, re.S)
    assert m, "the README lost its configuration block"
    return m.group(1)


def test_readme_config_block_is_real_and_complete(tmp_path):
    """Every key of the README's configuration block is one `berth serve` takes, and every
    key it takes is in the block."""
    block = config_block()
    documented = set(re.findall(r"^([a-z_0-9]+)\s*=", block, re.M))
    source = (ROOT / "crates/berth-server/src/serve/config.rs").read_text()
    struct = re.search(r"struct FileConfig \{(.*?)\n\}", source, re.S)
    assert struct, "FileConfig not found in config.rs"
    known = set(re.findall(r"^\s*(?:pub\s+)?([a-z_0-9]+):", struct.group(1), re.M))
    assert known, "no fields read from FileConfig"
    assert documented == known, (f"README lacks {sorted(known - documented)}; "
                                 f"README has unknown {sorted(documented - known)}")
    # And the block as written is a configuration the server starts with.
    block = re.sub(r'^listen = .*$', 'listen = "127.0.0.1:0"', block, flags=re.M)
    block = re.sub(r'^data_dir = .*$', f'data_dir = "{tmp_path / "data"}"', block, flags=re.M)
    block = re.sub(r'^audit_log = .*$', f'audit_log = "{tmp_path / "audit.log"}"', block, flags=re.M)
    block = re.sub(r'^secrets_key_file = .*$', f'secrets_key_file = "{tmp_path / "secrets.key"}"',
                   block, flags=re.M)
    block = re.sub(r'^metadata_url = .*$', f'metadata_url = "sqlite://{tmp_path / "data" / "berth.db"}"',
                   block, flags=re.M)
    # Its TLS files, made as the README says (berth cert init).
    made = subprocess.run([BIN, "cert", "init", "--data-dir", str(tmp_path / "certs"), "--host", "localhost"],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    block = re.sub(r'^tls_cert = .*$', f'tls_cert = "{tmp_path / "certs/tls/server.crt"}"', block, flags=re.M)
    block = re.sub(r'^tls_key = .*$', f'tls_key = "{tmp_path / "certs/tls/private/server.key"}"', block,
                   flags=re.M)
    block = re.sub(r'^metrics_listen = .*$', 'metrics_listen = "127.0.0.1:0"', block, flags=re.M)
    (tmp_path / "berth.toml").write_text(block + "\n")
    p = subprocess.Popen([BIN, "serve", "--config", str(tmp_path / "berth.toml")],
                         stderr=subprocess.PIPE, text=True)
    try:
        for line in p.stderr:
            if "listening on https://127.0.0.1:" in line:
                break
        else:
            raise AssertionError(f"berth serve did not start with the README's configuration ({p.wait()})")
    finally:
        p.terminate()
        assert p.wait(timeout=30) == 0
    assert (tmp_path / "secrets.key").exists(), "the configured key file was not used"


def walkthrough_env(server, cwd, **extra):
    """The environment a README block runs in: the server as $BERTH, `berth` on the PATH,
    no AWS settings but the block's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({
        "BERTH": f"127.0.0.1:{server.port}",
        "HOME": str(cwd),
        "PATH": f"{Path(BIN).parent}:{os.environ['PATH']}",
        "AWS_CONFIG_FILE": str(cwd / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(cwd / "no-aws-credentials"),
        **extra,
    })
    return env


def test_replication_walkthrough_as_written(tmp_path_factory):
    """The README's replication walkthrough (seed 003's first example) runs as written
    against a server serving two Regions, and the destination has the pushed digest."""
    s = start_server(tmp_path_factory, "readme-replication",
                     extra_config='regions = ["us-east-1", "us-west-2"]\n')
    try:
        cwd = tmp_path_factory.mktemp("replicator")
        for name in ("examples", "scripts"):
            (cwd / name).symlink_to(ROOT / name)
        (cwd / "berth-data").symlink_to(s.data_dir)
        env = walkthrough_env(s, cwd)
        p = subprocess.run(["bash", "-euo", "pipefail", "-c", walkthrough(REPLICATION_MARKER)],
                           cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, f"walkthrough failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
        pushed = json.loads((cwd / "web" / "index.json").read_text())["manifests"][0]["digest"]
        assert p.stdout.rstrip().split("\n")[-2:] == [pushed, pushed], p.stdout
        dest = json.loads((cwd / "dest.json").read_text())["account_id"]
        statuses = s.client("ecr", s.root).describe_image_replication_status(
            repositoryName="team/web", imageId={"imageTag": "v1"})["replicationStatuses"]
        assert statuses == [{"region": "us-west-2", "registryId": dest, "status": "COMPLETE"}]
    finally:
        s.stop()


def test_pull_through_walkthrough_as_written(tmp_path_factory):
    """The README's pull-through cache walkthrough runs as written against a CNCF
    distribution upstream with Basic authentication (on loopback, so listed as an insecure
    upstream), and ends with the upstream's digest, twice."""
    from upstream import Upstream

    up = Upstream(tmp_path_factory.mktemp("readme-upstream"), basic=("mirror", "s3cret-pass"))
    up.start()
    s = None
    try:
        cwd = tmp_path_factory.mktemp("puller")
        subprocess.run([str(ROOT / "scripts/tiny-image.sh"), str(cwd / "src"), "3.20"], check=True,
                       capture_output=True, timeout=60)
        up.push(cwd / "src", "3.20", "library/alpine")
        s = start_server(tmp_path_factory, "readme-pull-through",
                         extra_config=f'pull_through_insecure_upstreams = ["{up.host}"]\n')
        (cwd / "berth-data").symlink_to(s.data_dir)
        env = walkthrough_env(s, cwd, UPSTREAM=up.host, UPSTREAM_USER="mirror",
                              UPSTREAM_PASSWORD="s3cret-pass")
        p = subprocess.run(["bash", "-euo", "pipefail", "-c", walkthrough(PULL_THROUGH_MARKER)],
                           cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, f"walkthrough failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
        upstream_digest = "sha256:" + hashlib.sha256(up.inspect_raw("library/alpine", "3.20")).hexdigest()
        lines = p.stdout.rstrip().split("\n")
        assert "True" in lines, p.stdout  # validate-pull-through-cache-rule
        assert lines[-2:] == [upstream_digest, upstream_digest], p.stdout
        # The secret went in sealed: the clear text is nowhere in the database.
        assert b"s3cret-pass" not in (s.data_dir / "berth.db").read_bytes()
    finally:
        if s:
            s.stop()
        up.close()
