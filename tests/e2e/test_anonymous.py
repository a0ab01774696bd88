"""Anonymous pulls (`anonymous_pull = true`): a /v2 pull without credentials is decided as
IAM's anonymous principal against the repository and registry policies, so exactly the
repositories whose policies allow "*" can be pulled by skopeo --no-creds and by docker
without login; everything else answers 401 with the challenge; pushes without credentials
never go through; logged-in clients work as before (through the Bearer token flow). Off,
every request without credentials answers 401, as ECR."""

import json
import subprocess

import pytest
import requests

from berth import (BIN, Registry, doc, dockerd, login_password, make_image, oci_error, skopeo,
                   skopeo_push, start_server, write_oci_layout)

# What a public repository's policy grants: skopeo inspect also lists the tags (ListImages).
PULL = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability",
        "ecr:ListImages"]
ALL_PULLS = ", ".join(PULL)


def public(principal="*", condition=None):
    st = {"Sid": "Public", "Effect": "Allow", "Principal": principal, "Action": PULL}
    if condition:
        st["Condition"] = condition
    return json.dumps(doc(st))


def setup_repositories(server, tmp_path):
    """Repositories with an image each: open to "*", to {"AWS": "*"}, to "*" from
    127.0.0.2 only, to "*" of the server's account only, and private. Pushed with the
    root user's password (logged-in clients keep working with anonymous_pull on)."""
    ecr = server.client("ecr", server.root)
    policies = {
        "pub/open": public(),
        "pub/aws-star": public({"AWS": "*"}),
        "pub/from-two": public(condition={"IpAddress": {"aws:SourceIp": "127.0.0.2/32"}}),
        "pub/by-account": public(condition={"StringEquals": {"aws:PrincipalAccount": server.account}}),
        "priv/app": None,
    }
    image = make_image(layers=2)
    write_oci_layout(tmp_path / "src", {"v1": image})
    password = login_password(server, server.root)
    for name, policy in policies.items():
        ecr.create_repository(repositoryName=name)
        if policy:
            ecr.set_repository_policy(repositoryName=name, policyText=policy)
        skopeo_push(server, password, tmp_path / "src", "v1", name)
    return image


def ref(server, name, tag="v1"):
    return f"docker://127.0.0.1:{server.port}/{name}:{tag}"


@pytest.fixture(scope="module")
def anon(tmp_path_factory):
    s = start_server(tmp_path_factory, "anon", extra_config="anonymous_pull = true\n")
    image = setup_repositories(s, tmp_path_factory.mktemp("anon-src"))
    yield s, image
    assert s.stop() == 0


@pytest.fixture(scope="module")
def closed(tmp_path_factory):
    s = start_server(tmp_path_factory, "closed")
    image = setup_repositories(s, tmp_path_factory.mktemp("closed-src"))
    yield s, image
    assert s.stop() == 0


def test_skopeo_pulls_exactly_the_public_repositories(anon, tmp_path):
    server, image = anon
    for name in ["pub/open", "pub/aws-star"]:
        out = skopeo("inspect", "--no-creds", "--tls-verify=false", ref(server, name))
        assert json.loads(out.stdout)["Digest"] == image.digest, name
        digest_file = tmp_path / "digest"
        skopeo("copy", "--src-no-creds", "--src-tls-verify=false", "--digestfile", str(digest_file),
               ref(server, name), f"oci:{tmp_path / name.replace('/', '-')}:pulled")
        assert digest_file.read_text().strip() == image.digest
    # Private, and a condition on the caller's account an anonymous caller does not meet.
    for name in ["priv/app", "pub/by-account", "pub/from-two", "pub/missing"]:
        p = skopeo("inspect", "--no-creds", "--tls-verify=false", ref(server, name), check=False)
        assert p.returncode != 0, name
        assert "unauthorized" in p.stderr.lower() or "authentication required" in p.stderr.lower(), p.stderr


def test_raw_requests_without_credentials(anon):
    server, image = anon
    reg = Registry(server)
    # Allowed: the manifest, its blobs, a HEAD; each decision audited as "anonymous".
    r = reg.get_manifest("pub/open", "v1")
    assert r.status_code == 200 and r.content == image.manifest
    allowed_id = r.headers["x-amzn-requestid"]
    for d, b in image.blobs:
        assert reg.get_blob("pub/open", d).content == b
        assert reg.head_blob("pub/open", d).status_code == 200
    # Refused: 401 with the token challenge (not 403), so that clients log in.
    for name in ["priv/app", "pub/by-account", "pub/from-two", "pub/missing"]:
        r = reg.get_manifest(name, "v1")
        status, code, _ = oci_error(r)
        assert (status, code) == (401, "UNAUTHORIZED"), (name, r.text)
        assert r.headers["WWW-Authenticate"].startswith(
            f'Bearer realm="http://127.0.0.1:{server.port}/v2/token"'), r.headers
    refused = reg.get_manifest("priv/app", "v1").headers["x-amzn-requestid"]
    lines = server.audit_lines(allowed_id, refused)
    by_id = {l["request_id"]: l for l in lines}
    assert by_id[allowed_id]["principal"] == "anonymous"
    assert by_id[allowed_id]["decision"] == "Allow"
    assert by_id[refused]["principal"] == "anonymous"
    assert by_id[refused]["decision"] != "Allow"
    # aws:SourceIp is the anonymous client's address: 127.0.0.2 may, 127.0.0.1 may not.
    r = Registry(server, source="127.0.0.2").get_manifest("pub/from-two", "v1")
    assert r.status_code == 200 and r.content == image.manifest
    # Pushes, deletes, uploads and the catalog never go through without credentials.
    for method, path in [("POST", "/v2/pub/open/blobs/uploads/"),
                         ("PUT", "/v2/pub/open/manifests/v2"),
                         ("DELETE", f"/v2/pub/open/manifests/{image.digest}"),
                         ("GET", "/v2/_catalog")]:
        r = reg.request(method, path, data=b"{}" if method == "PUT" else None)
        assert oci_error(r)[:2] == (401, "UNAUTHORIZED"), (method, path, r.text)
    # The base answers the challenge; the anonymous token opens it (distribution's flow).
    r = reg.request("GET", "/v2/")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer ")
    t = reg.request("GET", "/v2/token", params={"service": "ecr.amazonaws.com",
                                                "scope": "repository:pub/open:pull"})
    assert t.status_code == 200, t.text
    token = t.json()["token"]
    assert t.json()["access_token"] == token
    bearer = {"Authorization": f"Bearer {token}"}
    assert reg.request("GET", "/v2/", headers=bearer).status_code == 200
    assert reg.request("GET", "/v2/pub/open/manifests/v1", headers=bearer).status_code == 200
    assert reg.request("GET", "/v2/priv/app/manifests/v1", headers=bearer).status_code == 401
    assert reg.request("POST", "/v2/pub/open/blobs/uploads/", headers=bearer).status_code == 401
    # A password at the token endpoint is checked: a wrong one is refused, a good one is
    # the token, and opens what the password's principal may.
    password = login_password(server, server.root)
    assert Registry(server, "not-a-password").request("GET", "/v2/token").status_code == 401
    t = Registry(server, password).request("GET", "/v2/token")
    assert t.status_code == 200 and t.json()["token"] == password
    r = reg.request("GET", "/v2/priv/app/manifests/v1",
                    headers={"Authorization": f"Bearer {password}", "Accept": image_accept()})
    assert r.status_code == 200 and r.content == image.manifest


def image_accept():
    return "application/vnd.oci.image.manifest.v1+json"


def test_anonymous_push_is_refused_and_logged_in_push_works(anon, tmp_path):
    server, _ = anon
    other = make_image(layers=1)
    write_oci_layout(tmp_path / "other", {"v2": other})
    p = skopeo("copy", "--dest-no-creds", "--dest-tls-verify=false", f"oci:{tmp_path / 'other'}:v2",
               ref(server, "pub/open", "v2"), check=False)
    assert p.returncode != 0
    ecr = server.client("ecr", server.root)
    assert {i.get("imageTag") for i in ecr.list_images(repositoryName="pub/open")["imageIds"]} == {"v1"}
    # With credentials (skopeo sends them after the Bearer challenge, through the token
    # endpoint), the same push goes through.
    skopeo_push(server, login_password(server, server.root), tmp_path / "other", "v2", "pub/open")
    assert {i.get("imageTag") for i in ecr.list_images(repositoryName="pub/open")["imageIds"]} == {"v1", "v2"}


def test_off_every_request_without_credentials_is_401(closed, tmp_path):
    server, _ = closed
    for name in ["pub/open", "priv/app"]:
        p = skopeo("inspect", "--no-creds", "--tls-verify=false", ref(server, name), check=False)
        assert p.returncode != 0, name
        r = Registry(server).get_manifest(name, "v1")
        assert oci_error(r)[:2] == (401, "UNAUTHORIZED")
        assert r.headers["WWW-Authenticate"].startswith("Basic realm="), r.headers
    # No token endpoint either: it is a request like any other.
    r = Registry(server).request("GET", "/v2/token")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic ")


def test_policy_public_and_who_can_say_what_anonymous_callers_read(anon, closed):
    server, _ = anon
    acct = server.account

    def public_lines(*flags):
        p = subprocess.run([BIN, "policy", "public", "--data-dir", str(server.data_dir), *flags],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        return p.stdout.splitlines()

    off = public_lines()
    assert f"{acct}/pub/open: readable by anyone signed in ({ALL_PULLS})" in off
    assert not [l for l in off if "without credentials" in l], off
    # The server's own config file says anonymous_pull = true.
    on = public_lines("--config", str(server.config_path))
    assert on == public_lines("--anonymous-pull")
    without = sorted(l for l in on if "without credentials" in l)
    assert without == sorted([
        f"{acct}/pub/aws-star: pullable without credentials ({ALL_PULLS})",
        f"{acct}/pub/open: pullable without credentials ({ALL_PULLS})",
    ]), on

    def who_can(repo, *flags):
        p = subprocess.run([BIN, "policy", "who-can", "--action", "ecr:BatchGetImage", "--repository", repo,
                            "--data-dir", str(server.data_dir), *flags],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        return p.stdout.splitlines()

    assert "* (anyone, even unauthenticated)" not in who_can("pub/open")
    assert "* (anyone, even unauthenticated)" in who_can("pub/open", "--config", str(server.config_path))
    assert "* (anyone, even unauthenticated)" not in who_can("pub/by-account", "--anonymous-pull")
    assert "* (anyone, even unauthenticated) when aws:SourceIp" in who_can("pub/from-two", "--anonymous-pull")


@pytest.fixture(scope="module")
def docker(tmp_path_factory):
    with dockerd(tmp_path_factory.mktemp("docker")) as env:
        yield env


def docker_run(args, env, input=None, check=True):
    p = subprocess.run(["docker", *args], env=env, input=input, capture_output=True, text=True, timeout=300)
    if check:
        assert p.returncode == 0, f"docker {' '.join(args)}: {p.stderr}"
    return p


def test_docker_pulls_without_login_and_logs_in_for_the_rest(anon, docker):
    server, image = anon
    env = docker
    host = f"127.0.0.1:{server.port}"
    pulled = docker_run(["pull", f"{host}/pub/open:v1"], env)
    assert image.digest in pulled.stdout
    denied = docker_run(["pull", f"{host}/priv/app:v1"], env, check=False)
    assert denied.returncode != 0
    assert "unauthorized" in denied.stderr.lower() or "denied" in denied.stderr.lower(), denied.stderr
    # docker login goes through the token endpoint; then the private repository pulls,
    # and a push goes through.
    password = login_password(server, server.root)
    bad = docker_run(["login", "--username", "AWS", "--password-stdin", host], env, input="wrong", check=False)
    assert bad.returncode != 0
    out = docker_run(["login", "--username", "AWS", "--password-stdin", host], env, input=password)
    assert "Login Succeeded" in out.stdout
    assert image.digest in docker_run(["pull", f"{host}/priv/app:v1"], env).stdout
    docker_run(["tag", f"{host}/priv/app:v1", f"{host}/priv/app:v3"], env)
    docker_run(["push", f"{host}/priv/app:v3"], env)
    ecr = server.client("ecr", server.root)
    assert "v3" in {i.get("imageTag") for i in ecr.list_images(repositoryName="priv/app")["imageIds"]}


def test_token_endpoint_is_plain_http_json(anon):
    """The token answer is distribution's: JSON with token, access_token, expires_in."""
    server, _ = anon
    r = requests.get(f"{server.url}/v2/token", timeout=30)
    body = r.json()
    assert r.headers["Content-Type"] == "application/json"
    assert body["expires_in"] > 0 and body["issued_at"].endswith("Z")
