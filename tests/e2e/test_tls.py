"""TLS on the main port with a certificate from `berth cert init`: the aws CLI, boto3,
skopeo, podman and a Docker engine over HTTPS, HTTP/2 by ALPN, aws:SecureTransport, and
a rotated certificate served without a restart."""

import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
from pathlib import Path

import pytest
import requests

from berth import (BIN, Server, allow, deny, doc, dockerd, login_password, make_image, sha256, skopeo,
                   unique, until, write_oci_layout)


def cert_init(data, *hosts, config=None):
    args = [BIN, "cert", "init", "--data-dir", str(data)]
    for h in hosts:
        args += ["--host", h]
    if config:
        args += ["--config", str(config)]
    p = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout


def served_names(port, ca):
    """The DNS and IP names of the certificate a new connection to the port gets."""
    ctx = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with ctx.wrap_socket(sock, server_hostname="localhost") as tls:
            cert = tls.getpeercert()
            assert tls.version() in ("TLSv1.3", "TLSv1.2")
    return {v for _, v in cert["subjectAltName"]}



@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("tls")
    data = base / "data"
    data.mkdir(mode=0o700)
    out = cert_init(data, "localhost", "127.0.0.1")
    tls = data / "tls"
    # What cert init says to run is what we run.
    assert f"--tls-cert {tls / 'server.crt'} --tls-key {tls / 'private' / 'server.key'}" in out, out
    assert "/etc/docker/certs.d/localhost:5000/ca.crt" in out and "AWS_CA_BUNDLE" in out, out
    s = Server(data, extra_config=f'tls_cert = "{tls / "server.crt"}"\ntls_key = "{tls / "private" / "server.key"}"\n')
    s.ca_bundle = tls / "ca.crt"
    s.start()
    assert s.scheme == "https", "".join(s.stderr_lines)
    yield s
    assert s.stop() == 0


def test_cert_init_keeps_the_ca_and_keys_private(tmp_path):
    data = tmp_path / "d"
    first = cert_init(data, "registry.example", "10.0.0.5")
    assert "made a private CA" in first
    tls = data / "tls"
    assert sorted(p.name for p in tls.iterdir()) == ["ca.crt", "private", "server.crt"]
    for key in (tls / "private" / "ca.key", tls / "private" / "server.key"):
        assert key.stat().st_mode & 0o077 == 0, oct(key.stat().st_mode)
    assert (tls / "private").stat().st_mode & 0o077 == 0
    ca = (tls / "ca.crt").read_text()
    again = cert_init(data, "other.example")
    assert "kept the private CA" in again
    assert (tls / "ca.crt").read_text() == ca
    # The chain: the server's certificate, then the CA's.
    chain = (tls / "server.crt").read_text()
    assert chain.count("BEGIN CERTIFICATE") == 2 and chain.endswith(ca)
    # openssl agrees that the new certificate chains to the kept CA and names the host.
    if shutil.which("openssl"):
        leaf = tmp_path / "leaf.pem"
        leaf.write_text(chain[: chain.index("-----END CERTIFICATE-----") + 26])
        p = subprocess.run(["openssl", "verify", "-CAfile", str(tls / "ca.crt"), "-verify_hostname",
                            "other.example", str(leaf)], capture_output=True, text=True)
        assert p.returncode == 0 and ": OK" in p.stdout, p.stdout + p.stderr
        p = subprocess.run(["openssl", "verify", "-CAfile", str(tls / "ca.crt"), "-verify_hostname",
                            "registry.example", str(leaf)], capture_output=True, text=True)
        assert p.returncode != 0, "the reissued certificate names only the hosts given then"
    bad = subprocess.run([BIN, "cert", "init", "--data-dir", str(data), "--host", "h:443"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "without a port" in bad.stderr, bad.stderr


def test_aws_cli_and_boto3_over_tls(tls_server):
    s = tls_server
    repo = unique("tls/cli")
    out = s.cli(s.root, "ecr", "create-repository", "--repository-name", repo)
    assert out["repository"]["repositoryUri"].startswith(f"127.0.0.1:{s.port}/") or \
        out["repository"]["repositoryUri"].startswith(f"localhost:{s.port}/")
    token = s.cli(s.root, "ecr", "get-authorization-token")["authorizationData"][0]
    assert token["proxyEndpoint"].startswith("https://"), token
    assert s.client("sts", s.root).get_caller_identity()["Account"] == s.account
    # Without the CA the CLI refuses the certificate: verification is real.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(s.root.env())
    env.update({"AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_MAX_ATTEMPTS": "1"})
    p = subprocess.run(["aws", "--endpoint-url", s.url, "ecr", "describe-repositories"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "SSL" in p.stderr, p.stderr
    # Plain HTTP to the TLS port gets no answer but a closed connection.
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{s.port}/healthz", timeout=10)


def test_secure_transport_is_true_over_tls(tls_server):
    s = tls_server
    ok = unique("tls/ok")
    no = unique("tls/no")
    s.client("ecr", s.root).create_repository(repositoryName=ok)
    s.client("ecr", s.root).create_repository(repositoryName=no)
    _, user = s.new_user(policies=[doc(
        allow("ecr:DescribeRepositories", Condition={"Bool": {"aws:SecureTransport": "true"}}),
        deny("ecr:DescribeRepositories", f"arn:aws:ecr:us-east-1:{s.account}:repository/{no}",
             Condition={"Bool": {"aws:SecureTransport": "true"}}),
    )])
    ecr = s.client("ecr", user)
    assert ecr.describe_repositories(repositoryNames=[ok])["repositories"][0]["repositoryName"] == ok
    e = s.cli_error(user, "ecr", "describe-repositories", "--repository-names", no)
    assert e.code == "AccessDeniedException" and "explicit deny" in e.message, e


def test_http2_by_alpn_pushes_and_pulls_a_blob(tls_server, tmp_path):
    s = tls_server
    repo = unique("tls/h2")
    s.client("ecr", s.root).create_repository(repositoryName=repo)
    password = login_password(s, s.root)
    blob = os.urandom(3 << 20)
    digest = sha256(blob)
    (tmp_path / "blob").write_bytes(blob)
    base = ["curl", "-sS", "--http2", "--cacert", str(s.ca_bundle), "-u", f"AWS:{password}",
            "-w", "\n%{http_version} %{http_code}"]
    p = subprocess.run(base + ["-X", "POST", "-H", "Content-Type: application/octet-stream",
                               "--data-binary", f"@{tmp_path / 'blob'}",
                               f"https://localhost:{s.port}/v2/{repo}/blobs/uploads/?digest={digest}"],
                       capture_output=True, text=True, timeout=60)
    assert p.stdout.strip().endswith("2 201"), p.stdout + p.stderr
    p = subprocess.run(base[:-2] + ["-o", str(tmp_path / "back"), "-w", "%{http_version} %{http_code}",
                                    f"https://localhost:{s.port}/v2/{repo}/blobs/{digest}"],
                       capture_output=True, text=True, timeout=60)
    assert p.stdout.strip() == "2 200", p.stdout + p.stderr
    assert (tmp_path / "back").read_bytes() == blob
    # HTTP/1.1 still, for clients that ask for it.
    p = subprocess.run(["curl", "-sS", "--http1.1", "--cacert", str(s.ca_bundle), "-o", "/dev/null",
                        "-w", "%{http_version} %{http_code}", f"https://localhost:{s.port}/v2/"],
                       capture_output=True, text=True, timeout=60)
    assert p.stdout.strip() == "1.1 401", p.stdout + p.stderr


def test_a_large_http1_upload_over_tls_keeps_its_connection(tls_server, tmp_path):
    """A 24 MiB monolithic upload of known length over HTTP/1.1 and TLS (the server reads
    such a body in larger pieces, see serve/intake.rs): stored whole, and the connection
    then carries the next request (curl reuses it: no new connect)."""
    s = tls_server
    repo = unique("tls/big")
    s.client("ecr", s.root).create_repository(repositoryName=repo)
    password = login_password(s, s.root)
    blob = os.urandom(24 << 20)
    digest = sha256(blob)
    (tmp_path / "blob").write_bytes(blob)
    url = f"https://localhost:{s.port}/v2"
    p = subprocess.run(["curl", "-sS", "--http1.1", "--cacert", str(s.ca_bundle), "-u", f"AWS:{password}",
                        "-o", "/dev/null", "-w", "%{http_code} %{num_connects}\n",
                        "-X", "POST", "-H", "Content-Type: application/octet-stream",
                        "--data-binary", f"@{tmp_path / 'blob'}",
                        f"{url}/{repo}/blobs/uploads/?digest={digest}",
                        "--next", "-sS", "--http1.1", "--cacert", str(s.ca_bundle), "-u", f"AWS:{password}",
                        "-o", "/dev/null", "-w", "%{http_code} %{num_connects}\n", f"{url}/"],
                       capture_output=True, text=True, timeout=60)
    assert p.stdout.split("\n")[:2] == ["201 1", "200 0"], p.stdout + p.stderr
    p = subprocess.run(["curl", "-sS", "--cacert", str(s.ca_bundle), "-u", f"AWS:{password}",
                        "-o", str(tmp_path / "back"), f"{url}/{repo}/blobs/{digest}"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "back").read_bytes() == blob


def test_skopeo_over_tls_with_the_ca(tls_server, tmp_path):
    s = tls_server
    repo = unique("tls/skopeo")
    s.client("ecr", s.root).create_repository(repositoryName=repo)
    password = login_password(s, s.root)
    image = make_image(layers=2, size=256 * 1024)
    write_oci_layout(tmp_path / "src", {"v1": image})
    certs = s.data_dir / "tls"
    dest = f"docker://localhost:{s.port}/{repo}:v1"
    skopeo("copy", "--dest-cert-dir", str(certs), "--dest-creds", f"AWS:{password}",
           f"oci:{tmp_path / 'src'}:v1", dest)
    skopeo("copy", "--src-cert-dir", str(certs), "--src-creds", f"AWS:{password}",
           dest, f"oci:{tmp_path / 'back'}:v1")
    index = json.loads((tmp_path / "back" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == image.digest
    # Without the CA, skopeo refuses the certificate (no --tls-verify=false anywhere here).
    p = skopeo("inspect", "--creds", f"AWS:{password}", dest, check=False)
    assert p.returncode != 0 and "certificate" in p.stderr, p.stderr


def test_podman_over_tls_with_the_ca(tls_server, tmp_path):
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: scripts/test installs Debian's podman")
    s = tls_server
    repo = unique("tls/podman")
    s.client("ecr", s.root).create_repository(repositoryName=repo)
    password = login_password(s, s.root)
    image = make_image(layers=1, size=128 * 1024)
    write_oci_layout(tmp_path / "src", {"v1": image})
    certs = str(s.data_dir / "tls")
    # podman wants a run root under 50 characters.
    run = Path(tempfile.mkdtemp(prefix="pm", dir="/tmp"))
    store = ["--root", str(tmp_path / "root"), "--runroot", str(run), "--storage-driver", "vfs"]
    env = {**os.environ, "REGISTRY_AUTH_FILE": str(tmp_path / "auth.json"),
           "CONTAINERS_CONF": "/dev/null", "XDG_RUNTIME_DIR": str(tmp_path / "xdg")}
    (tmp_path / "xdg").mkdir(mode=0o700)
    host = f"localhost:{s.port}"

    def podman(*args, check=True, input=None):
        p = subprocess.run(["podman", *store, *args], env=env, capture_output=True, text=True,
                           timeout=300, input=input)
        if check:
            assert p.returncode == 0, f"podman {' '.join(args)}: {p.stderr}"
        return p

    out = podman("login", "--cert-dir", certs, "--username", "AWS", "--password-stdin", host, input=password)
    assert "Login Succeeded" in out.stdout, out.stdout + out.stderr
    podman("pull", f"oci:{tmp_path / 'src'}:v1")
    local = podman("images", "--format", "{{.ID}}").stdout.split()[0]
    podman("push", "--cert-dir", certs, local, f"{host}/{repo}:v1")
    podman("rmi", "-a", "-f")
    podman("pull", "--cert-dir", certs, f"{host}/{repo}:v1")
    assert podman("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split() == [f"{host}/{repo}:v1"]
    details = s.client("ecr", s.root).describe_images(repositoryName=repo)["imageDetails"]
    assert [d["imageTags"] for d in details] == [["v1"]]
    shutil.rmtree(run, ignore_errors=True)


def test_docker_over_tls(tls_server, tmp_path_factory, tmp_path):
    """docker login, push and pull against the TLS port, the CA in certs.d as cert init
    prints. (docker treats loopback registries as insecure and would accept any
    certificate there: skopeo and podman above show the verification.)"""
    s = tls_server
    d = tmp_path_factory.mktemp("docker-tls")
    host = f"localhost:{s.port}"
    certs_d = Path("/etc/docker/certs.d") / host
    certs_d.mkdir(parents=True, exist_ok=True)
    shutil.copy(s.ca_bundle, certs_d / "ca.crt")
    try:
        with dockerd(d) as env:
            docker_over_tls(s, env, host, tmp_path)
    finally:
        shutil.rmtree(certs_d, ignore_errors=True)


def docker_over_tls(s, env, host, tmp_path):
    repo = unique("tls/docker")
    s.client("ecr", s.root).create_repository(repositoryName=repo)
    password = login_password(s, s.root)

    def docker(*args, input=None):
        p = subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=300,
                           input=input)
        assert p.returncode == 0, f"docker {' '.join(args)}: {p.stderr}"
        return p

    out = docker("login", "--username", "AWS", "--password-stdin", host, input=password)
    assert "Login Succeeded" in out.stdout
    image = make_image(layers=1, size=128 * 1024)
    write_oci_layout(tmp_path / "src", {"v1": image})
    subprocess.run(["skopeo", "--insecure-policy", "copy", "--dest-daemon-host", env["DOCKER_HOST"],
                    f"oci:{tmp_path / 'src'}:v1", "docker-daemon:local/tls:v1"], check=True,
                   capture_output=True)
    docker("tag", "local/tls:v1", f"{host}/{repo}:v1")
    pushed = docker("push", f"{host}/{repo}:v1")
    digest = [w for w in pushed.stdout.split() if w.startswith("sha256:")][-1]
    docker("rmi", "local/tls:v1", f"{host}/{repo}:v1")
    assert digest in docker("pull", f"{host}/{repo}:v1").stdout
    details = s.client("ecr", s.root).describe_images(repositoryName=repo)["imageDetails"]
    assert [d["imageDigest"] for d in details] == [digest]


def test_a_rotated_certificate_is_served_without_a_restart(tls_server):
    s = tls_server
    assert "rotated.example" not in served_names(s.port, s.ca_bundle)
    # What an operator does: issue again (same CA) for another name; the server notices.
    cert_init(s.data_dir, "localhost", "127.0.0.1", "rotated.example")
    until("the new certificate is served", 15, lambda: "rotated.example" in served_names(s.port, s.ca_bundle))
    assert any("TLS certificate reloaded" in l for l in s.stderr_lines), "".join(s.stderr_lines[-20:])
    # A broken pair (a key that is not the certificate's) is not taken: the port goes on.
    key = s.data_dir / "tls" / "private" / "server.key"
    good = key.read_text()
    other = s.data_dir.parent / "other"
    cert_init(other, "elsewhere.example")
    key.write_text((other / "tls" / "private" / "server.key").read_text())
    until("the bad pair is reported", 15, lambda: any("do not load" in l for l in s.stderr_lines))
    assert "rotated.example" in served_names(s.port, s.ca_bundle)
    key.write_text(good)
    # SIGHUP reloads at once too.
    os.kill(s.proc.pid, 1)
    until("the server still answers", 10,
          lambda: requests.get(f"{s.url}/healthz", verify=str(s.ca_bundle), timeout=5).status_code == 200)
