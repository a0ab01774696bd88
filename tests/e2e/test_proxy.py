"""Behind a TLS-terminating proxy: nginx with the README's example (examples/nginx.conf),
a certificate from `berth cert init`, Berth on plain HTTP behind it with trusted_proxies
and public_url. The aws CLI and skopeo go through nginx; X-Forwarded-Proto makes
aws:SecureTransport true, X-Forwarded-For makes aws:SourceIp the client's."""

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from berth import Server, allow, doc, login_password, make_image, skopeo, unique, write_oci_layout
from test_tls import cert_init

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "nginx.conf"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    nginx = shutil.which("nginx") or (Path("/usr/sbin/nginx") if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        pytest.fail("nginx is not installed: scripts/test installs Debian's nginx-light")
    base = tmp_path_factory.mktemp("proxy")
    port = free_port()
    certs = base / "certs"
    certs.mkdir(mode=0o700)
    cert_init(certs, "localhost", "127.0.0.1")
    data = base / "data"
    s = Server(data, extra_config=(
        'trusted_proxies = ["127.0.0.1/32"]\n'
        f'public_url = "https://localhost:{port}"\n'))
    s.start()
    # The example as the README shows it, with this test's ports and paths.
    server_block = EXAMPLE.read_text()
    for old, new in [("listen 443 ssl http2;", f"listen 127.0.0.1:{port} ssl http2;"),
                     ("/etc/berth/tls/server.crt", str(certs / "tls" / "server.crt")),
                     ("/etc/berth/tls/private/server.key", str(certs / "tls" / "private" / "server.key")),
                     ("http://127.0.0.1:5000", f"http://127.0.0.1:{s.port}")]:
        assert old in server_block, old
        server_block = server_block.replace(old, new)
    prefix = base / "nginx"
    prefix.mkdir()
    conf = prefix / "nginx.conf"
    conf.write_text(f"""
daemon off;
worker_processes 1;
user root root;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{server_block}
}}
""")
    proc = subprocess.Popen([str(nginx), "-p", str(prefix), "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ca = certs / "tls" / "ca.crt"
    deadline = time.time() + 20
    while True:
        try:
            if requests.get(f"https://localhost:{port}/healthz", verify=str(ca), timeout=2).status_code == 200:
                break
        except requests.exceptions.ConnectionError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail("nginx did not start: " + (proc.stderr.read() or "") +
                        ((prefix / "error.log").read_text() if (prefix / "error.log").exists() else ""))
        time.sleep(0.1)
    # Clients reach Berth only through nginx from here on.
    direct = s.url
    s.scheme, s.port, s.ca_bundle = "https", port, ca
    yield s, direct, certs / "tls"
    proc.terminate()
    proc.wait(10)
    assert s.stop() == 0


def test_the_aws_cli_through_nginx_sees_the_public_url(proxied):
    s, direct, _ = proxied
    repo = unique("proxy/app")
    out = s.cli(s.root, "ecr", "create-repository", "--repository-name", repo)
    assert out["repository"]["repositoryUri"] == f"localhost:{s.port}/{repo}", out
    token = s.cli(s.root, "ecr", "get-authorization-token")["authorizationData"][0]
    assert token["proxyEndpoint"] == f"https://localhost:{s.port}", token


def test_skopeo_through_nginx(proxied, tmp_path):
    s, direct, tls = proxied
    repo = unique("proxy/skopeo")
    s.client("ecr", s.root).create_repository(repositoryName=repo)
    password = login_password(s, s.root)
    image = make_image(layers=2, size=2 << 20)
    write_oci_layout(tmp_path / "src", {"v1": image})
    dest = f"docker://localhost:{s.port}/{repo}:v1"
    skopeo("copy", "--dest-cert-dir", str(tls), "--dest-creds", f"AWS:{password}", f"oci:{tmp_path / 'src'}:v1", dest)
    skopeo("copy", "--src-cert-dir", str(tls), "--src-creds", f"AWS:{password}", dest, f"oci:{tmp_path / 'back'}:v1")
    assert json.loads((tmp_path / "back" / "index.json").read_text())["manifests"][0]["digest"] == image.digest


def test_forwarded_proto_and_for_reach_the_conditions(proxied):
    s, direct, _ = proxied
    repo = unique("proxy/cond")
    s.client("ecr", s.root).create_repository(repositoryName=repo)
    _, user = s.new_user(policies=[doc(
        allow("ecr:DescribeRepositories", Condition={"Bool": {"aws:SecureTransport": "true"},
                                                     "IpAddress": {"aws:SourceIp": "127.0.0.1/32"}}),
    )])
    # Through nginx: TLS to nginx, from 127.0.0.1.
    assert s.client("ecr", user).describe_repositories(repositoryNames=[repo])["repositories"]
    # Straight to Berth's plain port (the trusted proxy's address, but no X-Forwarded-Proto):
    # aws:SecureTransport is false, so the allow does not apply.
    proxy_port, proxy_scheme, proxy_ca = s.port, s.scheme, s.ca_bundle
    s.scheme, s.port, s.ca_bundle = "http", int(direct.rsplit(":", 1)[1]), None
    s._clients = {}
    try:
        e = s.cli_error(user, "ecr", "describe-repositories", "--repository-names", repo)
        assert e.code == "AccessDeniedException", e
    finally:
        s.scheme, s.port, s.ca_bundle = proxy_scheme, proxy_port, proxy_ca
        s._clients = {}
