"""Every seed policy (examples/seeds/, from shared/seeds/) end to end: applied as ECR
repository, registry or identity policies with the aws CLI, then exercised by IAM users,
roles and other accounts pushing and pulling with skopeo or raw /v2 requests, each with
its own registry password.

The seeds name accounts 111111111111 (the registry), 222222222222 and 333333333333;
the tests substitute the real ids of the server's default account and of accounts they
create."""

import json
import time

import boto3
import pytest
from botocore.config import Config

from berth import (ALLOW_ALL, SETTLE, Creds, allow, client_error, doc, login_password,  # noqa: F401
                   make_image, oci_error, read_oci_layout, server, seed_text, start_server, trust,
                   unique, write_oci_layout)

import berth  # noqa: E402

# The repositories here are the default account's (A's): other accounts' users reach A's
# registry by A's host (a host naming no account is the caller's own registry), so every
# request and skopeo run here addresses it so, A's users' too.


def a_host(server):
    return f"{server.account}.dkr.ecr.localhost:{server.port}"


def Registry(server, password=None, host=None, source=None):  # noqa: N802
    return berth.Registry(server, password, host=host or a_host(server), source=source)


def skopeo_push(server, *args, host=None, **kw):
    return berth.skopeo_push(server, *args, host=host or a_host(server), **kw)


def skopeo_pull(server, *args, host=None, **kw):
    return berth.skopeo_pull(server, *args, host=host or a_host(server), **kw)


AUTH_ONLY = doc(allow("ecr:GetAuthorizationToken"))
PULL = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]


@pytest.fixture(scope="module")
def accounts(server):
    """(A, B, C): the default account's root, and two more accounts' roots."""
    return server.root, server.account_create(), server.account_create()


def ids(a, b=None, c=None):
    m = {"111111111111": a.account_id}
    if b:
        m["222222222222"] = b.account_id
    if c:
        m["333333333333"] = c.account_id
    return m


def ecr(server, creds=None):
    return server.client("ecr", creds or server.root)


def repo_arn(account, name, region="us-east-1"):
    return f"arn:aws:ecr:{region}:{account}:repository/{name}"


def new_repo(server, name=None):
    name = name or unique("seed")
    ecr(server).create_repository(repositoryName=name)
    return name


def person(server, name=None, policy=AUTH_ONLY, admin=None):
    """An IAM user with `policy` (None: no policy); returns (arn, creds, password or None)."""
    name = name or unique("u")
    _, creds = server.new_user(name, policies=[policy] if policy else [], admin=admin)
    arn = f"arn:aws:iam::{(admin or server.root).account_id}:user/{name}"
    try:
        pw = login_password(server, creds)
    except Exception:  # noqa: BLE001 - no GetAuthorizationToken
        pw = None
    return arn, creds, pw


def try_push(server, pw, repo, img, tag, source=None, host=None):
    """Push `img` with raw /v2 requests; (status, code, message) of the first refused
    step, or (201, None, "") when the image is stored."""
    r = Registry(server, pw, source=source, host=host)
    for d, b in img.blobs:
        resp = r.push_blob(repo, b, d)
        if resp.status_code != 201:
            return oci_error(resp)
    resp = r.put_manifest(repo, tag, img.manifest)
    if resp.status_code != 201:
        return oci_error(resp)
    return 201, None, ""


def try_pull(server, pw, repo, img, ref, source=None, headers=None, host=None):
    """GET the manifest and a layer; (status, code, message) of the first refused step,
    or (200, None, "") with the bytes checked."""
    r = Registry(server, pw, source=source, host=host)
    resp = r.request("GET", f"/v2/{repo}/manifests/{ref}", headers=headers)
    if resp.status_code != 200:
        return oci_error(resp)
    assert resp.content == img.manifest
    d, b = img.blobs[-1]
    resp = r.request("GET", f"/v2/{repo}/blobs/{d}", headers=headers)
    if resp.status_code != 200:
        return oci_error(resp)
    assert resp.content == b
    return 200, None, ""


def set_policy(server, repo, text, creds=None):
    out = server.cli(creds or server.root, "ecr", "set-repository-policy", "--repository-name", repo,
                     "--policy-text", text)
    assert json.loads(out["policyText"]) == json.loads(text)
    time.sleep(SETTLE)


def seeded_image(server, repo, tag="v1"):
    """An image pushed by the default account's root."""
    img = make_image(layers=1)
    Registry(server, login_password(server, server.root)).push_image(repo, img, tag)
    return img


def pulled_digest(server, pw, repo, tag, tmp_path, name):
    dg = tmp_path / f"{name}.digest"
    skopeo_pull(server, pw, repo, tag, tmp_path / name, extra=["--digestfile", str(dg)])
    return dg.read_text().strip()


# ---------------------------------------------------------------------------------------
# Seed 000: repository policies
# ---------------------------------------------------------------------------------------

def test_000_allow_iam_users_push_pull(server, accounts, tmp_path):
    a, _, _ = accounts
    repo = new_repo(server)
    _, _, pw1 = person(server, "push-pull-user-1")
    _, _, pw2 = person(server, "push-pull-user-2")
    intruder, _, pw3 = person(server)
    img = make_image(layers=2)
    write_oci_layout(tmp_path / "src", {"v1": img})

    # without the repository policy nobody but the root gets in
    assert skopeo_push(server, pw1, tmp_path / "src", "v1", repo, check=False).returncode != 0
    assert try_push(server, pw1, repo, img, "v1")[:2] == (403, "DENIED")

    set_policy(server, repo, seed_text("000-allow-iam-users-push-pull", **ids(a)))
    skopeo_push(server, pw1, tmp_path / "src", "v1", repo)
    assert pulled_digest(server, pw2, repo, "v1", tmp_path, "u2") == img.digest
    assert pulled_digest(server, pw1, repo, "v1", tmp_path, "u1") == img.digest
    img2 = make_image(layers=1)
    assert try_push(server, pw2, repo, img2, "v2")[:2] == (201, None)

    # anyone else: neither pull nor push
    assert skopeo_pull(server, pw3, repo, "v1", tmp_path / "x", check=False).returncode != 0
    status, code, msg = try_pull(server, pw3, repo, img, "v1")
    assert (status, code) == (403, "DENIED")
    assert msg.startswith(f"User: {intruder} is not authorized to perform: ecr:BatchGetImage on resource: "
                          f"{repo_arn(a.account_id, repo)}")
    status, code, msg = try_push(server, pw3, repo, make_image(layers=1), "v3")
    assert (status, code) == (403, "DENIED") and "ecr:InitiateLayerUpload" in msg
    # what the policy does not list stays denied to the listed users (tags/list is ListImages)
    r = Registry(server, pw2).request("GET", f"/v2/{repo}/tags/list")
    assert oci_error(r)[:2] == (403, "DENIED")
    # the policy decides the ECR API the same way
    _, creds2, _ = person(server)  # a fresh unlisted user
    assert client_error(ecr(server, creds2).batch_get_image, repositoryName=repo,
                        imageIds=[{"imageTag": "v1"}])[0] == "AccessDeniedException"


def test_000_allow_another_account_push(server, accounts, tmp_path):
    a, b, c = accounts
    repo = new_repo(server)
    arn = repo_arn(a.account_id, repo)
    _, _, ci_pw = person(server, policy=doc(allow("ecr:GetAuthorizationToken"), allow("ecr:*", arn)), admin=b)
    _, _, bare_pw = person(server, admin=b)
    _, _, c_pw = person(server, policy=doc(allow("ecr:*")), admin=c)
    b_root_pw = login_password(server, b)
    img = make_image(layers=2)
    write_oci_layout(tmp_path / "src", {"v1": img})

    # identity policy alone is not enough across accounts
    assert try_push(server, ci_pw, repo, img, "v1")[:2] == (403, "DENIED")

    set_policy(server, repo, seed_text("000-allow-another-account-push", **ids(a, b)))
    # B's user, allowed by both sides, pushes with skopeo to A's registry using B's password
    skopeo_push(server, ci_pw, tmp_path / "src", "v1", repo)
    [detail] = ecr(server).describe_images(repositoryName=repo)["imageDetails"]
    assert detail["imageDigest"] == img.digest and detail["imageTags"] == ["v1"]
    # the same through A's registry host name
    a_host = f"{a.account_id}.dkr.ecr.localhost:{server.port}"
    assert try_push(server, ci_pw, repo, make_image(layers=1), "byhost", host=a_host)[:2] == (201, None)
    # B's root holds every permission of B: the account principal lets it push too
    assert try_push(server, b_root_pw, repo, make_image(layers=1), "root")[:2] == (201, None)
    # the policy grants no BatchGetImage: B cannot read manifests, only layers
    r = Registry(server, ci_pw)
    status, code, msg = oci_error(r.get_manifest(repo, "v1"))
    assert (status, code) == (403, "DENIED") and "ecr:BatchGetImage" in msg
    assert r.get_blob(repo, img.blobs[-1][0]).content == img.blobs[-1][1]
    # B's user without an identity policy for the repository: denied
    status, code, msg = try_push(server, bare_pw, repo, make_image(layers=1), "bare")
    assert (status, code) == (403, "DENIED") and "ecr:InitiateLayerUpload" in msg
    # account C is not named, whatever its own policies say
    assert try_push(server, c_pw, repo, make_image(layers=1), "c")[:2] == (403, "DENIED")

    server.cli(a, "ecr", "delete-repository-policy", "--repository-name", repo)
    time.sleep(SETTLE)
    assert try_push(server, ci_pw, repo, make_image(layers=1), "after")[:2] == (403, "DENIED")
    assert skopeo_push(server, ci_pw, tmp_path / "src", "v1", repo, dest_tag="v9", check=False).returncode != 0


def test_000_pull_users_and_admin(server, accounts, tmp_path):
    a, _, _ = accounts
    repo = new_repo(server)
    img = seeded_image(server, repo)
    _, creds1, pw1 = person(server, "pull-user-1")
    _, _, pw2 = person(server, "pull-user-2")
    _, admin, admin_pw = person(server, "admin-user")
    _, _, other_pw = person(server)
    set_policy(server, repo, seed_text("000-pull-users-and-admin", **ids(a)))

    assert pulled_digest(server, pw1, repo, "v1", tmp_path, "p1") == img.digest
    assert try_pull(server, pw2, repo, img, "v1")[:2] == (200, None)
    write_oci_layout(tmp_path / "src", {"v2": make_image(layers=1)})
    assert skopeo_push(server, pw1, tmp_path / "src", "v2", repo, check=False).returncode != 0
    assert try_push(server, pw2, repo, make_image(layers=1), "v2")[:2] == (403, "DENIED")
    assert client_error(ecr(server, creds1).describe_images, repositoryName=repo)[0] == "AccessDeniedException"

    # the admin: everything ecr:* covers on this repository
    skopeo_push(server, admin_pw, tmp_path / "src", "v2", repo)
    r = Registry(server, admin_pw)
    assert r.request("GET", f"/v2/{repo}/tags/list").json()["tags"] == ["v1", "v2"]
    assert r.delete_manifest(repo, "v2").status_code == 202
    assert len(ecr(server, admin).describe_images(repositoryName=repo)["imageDetails"]) == 1
    assert ecr(server, admin).get_repository_policy(repositoryName=repo)["repositoryName"] == repo
    # ... but only this repository
    other_repo = new_repo(server)
    assert client_error(ecr(server, admin).describe_images,
                        repositoryName=other_repo)[0] == "AccessDeniedException"

    assert try_pull(server, other_pw, repo, img, "v1")[:2] == (403, "DENIED")


def test_000_allow_all_accounts_pull(server, accounts, tmp_path):
    a, b, _ = accounts
    repo = new_repo(server)
    img = seeded_image(server, repo)
    _, _, local_pw = person(server)
    _, _, b_reader_pw = person(server, policy=doc(allow("ecr:GetAuthorizationToken"),
                                                  allow(PULL, repo_arn(a.account_id, repo))), admin=b)
    _, _, b_bare_pw = person(server, admin=b)

    assert try_pull(server, local_pw, repo, img, "v1")[:2] == (403, "DENIED")
    set_policy(server, repo, seed_text("000-allow-all-accounts-pull", **ids(a)))
    # anyone in the account, without any identity permission on the repository
    assert pulled_digest(server, local_pw, repo, "v1", tmp_path, "local") == img.digest
    # another account: its identity policy must allow too
    assert pulled_digest(server, b_reader_pw, repo, "v1", tmp_path, "b") == img.digest
    a_host = f"{a.account_id}.dkr.ecr.localhost:{server.port}"
    assert try_pull(server, b_reader_pw, repo, img, "v1", host=a_host)[:2] == (200, None)
    # B's own registry has no such repository
    b_host = f"{b.account_id}.dkr.ecr.localhost:{server.port}"
    assert try_pull(server, b_reader_pw, repo, img, "v1", host=b_host)[:2] == (403, "DENIED")
    assert try_pull(server, login_password(server, b), repo, img, "v1", host=b_host)[:2] == (404, "NAME_UNKNOWN")
    assert try_pull(server, b_bare_pw, repo, img, "v1")[:2] == (403, "DENIED")
    assert try_pull(server, login_password(server, b), repo, img, "v1")[:2] == (200, None)
    # pulling only
    status, code, msg = try_push(server, local_pw, repo, make_image(layers=1), "v2")
    assert (status, code) == (403, "DENIED") and "ecr:InitiateLayerUpload" in msg
    assert try_push(server, b_reader_pw, repo, make_image(layers=1), "v2")[:2] == (403, "DENIED")


def test_000_deny_all_pull(server, accounts, tmp_path):
    a, _, _ = accounts
    repo = new_repo(server)
    img = seeded_image(server, repo)
    admin_arn, admin, admin_pw = person(server, policy=ALLOW_ALL)
    root_pw = login_password(server, a)
    assert try_pull(server, admin_pw, repo, img, "v1")[:2] == (200, None)

    set_policy(server, repo, seed_text("000-deny-all-pull", **ids(a)))
    status, code, msg = try_pull(server, admin_pw, repo, img, "v1")
    assert (status, code) == (403, "DENIED")
    assert "ecr:BatchGetImage" in msg and "explicit deny" in msg
    # the explicit deny binds the root user too
    assert try_pull(server, root_pw, repo, img, "v1")[:2] == (403, "DENIED")
    assert skopeo_pull(server, admin_pw, repo, "v1", tmp_path / "x", check=False).returncode != 0
    r = Registry(server, admin_pw)
    status, code, msg = oci_error(r.get_blob(repo, img.blobs[0][0]))
    assert (status, code) == (403, "DENIED") and "ecr:GetDownloadUrlForLayer" in msg
    assert r.head_blob(repo, img.blobs[0][0]).status_code == 200  # BatchCheckLayerAvailability
    assert client_error(ecr(server, admin).batch_get_image, repositoryName=repo,
                        imageIds=[{"imageTag": "v1"}])[0] == "AccessDeniedException"
    # pushing is not denied
    assert try_push(server, admin_pw, repo, make_image(layers=1), "v2")[:2] == (201, None)

    server.cli(a, "ecr", "delete-repository-policy", "--repository-name", repo)
    time.sleep(SETTLE)
    assert try_pull(server, admin_pw, repo, img, "v1")[:2] == (200, None)


def test_000_ip_restricted(server, accounts, tmp_path):
    a, _, _ = accounts
    repo = new_repo(server)
    img = seeded_image(server, repo)
    _, creds, pw = person(server)

    # as written: only 54.240.143.0/24 (but .188) — a loopback client is refused
    set_policy(server, repo, seed_text("000-ip-restricted", **ids(a)))
    assert try_pull(server, pw, repo, img, "v1")[:2] == (403, "DENIED")
    assert client_error(ecr(server, creds).describe_images, repositoryName=repo)[0] == "AccessDeniedException"

    # The seed's ranges moved onto loopback (the server listens on 127.0.0.1 only):
    # 54.240.143.0/24 -> 127.0.0.0/24 and its excluded 54.240.143.188/32 -> 127.0.0.2/32.
    text = (seed_text("000-ip-restricted", **ids(a))
            .replace("54.240.143.188/32", "127.0.0.2/32").replace("54.240.143.0/24", "127.0.0.0/24"))
    set_policy(server, repo, text)
    assert pulled_digest(server, pw, repo, "v1", tmp_path, "from1") == img.digest
    write_oci_layout(tmp_path / "src", {"v2": make_image(layers=1)})
    skopeo_push(server, pw, tmp_path / "src", "v2", repo)  # ecr:* from 127.0.0.1
    assert len(ecr(server, creds).describe_images(repositoryName=repo)["imageDetails"]) == 2
    status, code, msg = try_pull(server, pw, repo, img, "v1", source="127.0.0.2")
    assert (status, code) == (403, "DENIED") and "ecr:BatchGetImage" in msg
    assert try_push(server, pw, repo, make_image(layers=1), "v3", source="127.0.0.2")[:2] == (403, "DENIED")
    assert try_pull(server, pw, repo, img, "v1", source="127.0.0.3")[:2] == (200, None)
    # X-Forwarded-For from an untrusted peer changes nothing
    assert try_pull(server, pw, repo, img, "v1", source="127.0.0.2",
                    headers={"X-Forwarded-For": "127.0.0.1"})[:2] == (403, "DENIED")


def test_000_ip_restricted_as_written_behind_a_trusted_proxy(tmp_path_factory):
    """The seed unchanged, the client address coming from X-Forwarded-For of a trusted proxy."""
    s = start_server(tmp_path_factory, "proxy", extra_config='trusted_proxies = ["127.0.0.1/32"]\n')
    try:
        repo = new_repo(s)
        img = seeded_image(s, repo)
        _, _, pw = person(s)
        set_policy(s, repo, seed_text("000-ip-restricted", **{"111111111111": s.account}))
        xff = lambda ip: {"X-Forwarded-For": ip}  # noqa: E731
        assert try_pull(s, pw, repo, img, "v1", headers=xff("54.240.143.7"))[:2] == (200, None)
        assert try_pull(s, pw, repo, img, "v1", headers=xff("10.0.0.1, 54.240.143.250"))[:2] == (200, None)
        assert try_pull(s, pw, repo, img, "v1", headers=xff("54.240.143.188"))[:2] == (403, "DENIED")
        assert try_pull(s, pw, repo, img, "v1", headers=xff("54.240.144.1"))[:2] == (403, "DENIED")
        assert try_pull(s, pw, repo, img, "v1")[:2] == (403, "DENIED")
        # the peer 127.0.0.2 is no trusted proxy: its header is ignored
        assert try_pull(s, pw, repo, img, "v1", source="127.0.0.2",
                        headers=xff("54.240.143.7"))[:2] == (403, "DENIED")
    finally:
        assert s.stop() == 0


def test_000_codebuild_service(server, accounts):
    a, _, _ = accounts
    repo = new_repo(server)
    img = seeded_image(server, repo)
    _, _, pw = person(server)
    _, _, reader_pw = person(server, policy=doc(allow("ecr:GetAuthorizationToken"),
                                                allow(PULL, repo_arn(a.account_id, repo))))
    text = seed_text("000-codebuild-service", **ids(a))
    set_policy(server, repo, text)
    out = server.cli(a, "ecr", "get-repository-policy", "--repository-name", repo)
    assert json.loads(out["policyText"]) == json.loads(text)
    # the service principal names no user: users get nothing from it
    status, code, msg = try_pull(server, pw, repo, img, "v1")
    assert (status, code) == (403, "DENIED") and "ecr:BatchGetImage" in msg
    # identity policies still work next to it
    assert try_pull(server, reader_pw, repo, img, "v1")[:2] == (200, None)


# ---------------------------------------------------------------------------------------
# Seed 002: the ARN forms of the ECR policy-structure page, as an identity policy
# ---------------------------------------------------------------------------------------

def test_002_all_ecr_resources_identity(server, accounts):
    a, _, _ = accounts
    mine = new_repo(server, "my-repo")
    other = new_repo(server)
    seeded_image(server, other)
    _, creds, _ = person(server, policy=json.loads(seed_text("002-all-ecr-resources-identity", **ids(a))))
    c = ecr(server, creds)
    names = {r["repositoryName"] for r in c.describe_repositories()["repositories"]}
    assert {mine, other} <= names
    assert len(c.describe_images(repositoryName=other)["imageDetails"]) == 1
    assert client_error(c.list_images, repositoryName=other)[0] == "AccessDeniedException"
    assert client_error(c.get_authorization_token)[0] == "AccessDeniedException"
    # Delete* only on my-repo
    code, msg, _ = client_error(c.delete_repository, repositoryName=other)
    assert code == "AccessDeniedException" and "ecr:DeleteRepository" in msg
    assert c.delete_repository(repositoryName=mine)["repository"]["repositoryName"] == mine


# ---------------------------------------------------------------------------------------
# Seed 003: registry policies
# ---------------------------------------------------------------------------------------

_west_clients = {}


def west_ecr(server, creds):
    key = (server.port, creds.access_key_id)
    if key not in _west_clients:
        _west_clients[key] = _west_client(server, creds)
    return _west_clients[key]


def _west_client(server, creds):
    return boto3.session.Session().client(
        "ecr", endpoint_url=server.url, region_name="us-west-2",
        aws_access_key_id=creds.access_key_id, aws_secret_access_key=creds.secret_access_key,
        aws_session_token=creds.session_token,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}))


@pytest.fixture(scope="module")
def west(tmp_path_factory):
    """A server in us-west-2, the region the seed 003 policies name."""
    s = start_server(tmp_path_factory, "west", extra_config='region = "us-west-2"\n')
    yield s
    assert s.stop() == 0


def test_003_registry_policies_in_us_west_2(west):
    a = west.root
    b, c = west.account_create(), west.account_create()
    A = a.account_id
    _, b_user = west.new_user(policies=[doc(allow("ecr:CreateRepository"))], admin=b)
    _, b_bare = west.new_user(admin=b)

    def put(name, cli=False):
        text = seed_text(name, **ids(a, b, c))
        if cli:
            out = west.cli(a, "ecr", "put-registry-policy", "--policy-text", text, "--region", "us-west-2")
        else:
            out = west_ecr(west, a).put_registry_policy(policyText=text)
        assert json.loads(out["policyText"]) == json.loads(text) and out["registryId"] == A
        assert json.loads(west_ecr(west, a).get_registry_policy()["policyText"]) == json.loads(text)
        time.sleep(SETTLE)

    def create(creds, name):
        """CreateRepository in A's registry as `creds`: the error code, or None."""
        try:
            r = west_ecr(west, creds).create_repository(registryId=A, repositoryName=name)
        except west_ecr(west, creds).exceptions.ClientError as e:
            return e.response["Error"]["Code"]
        assert r["repository"]["repositoryArn"] == repo_arn(A, name, "us-west-2")
        assert r["repository"]["registryId"] == A
        return None

    assert create(b, unique("none")) == "AccessDeniedException"

    put("003-registry-replicate-all", cli=True)
    made = unique("app")
    assert create(b, made) is None
    assert made in {r["repositoryName"] for r in west_ecr(west, a).describe_repositories()["repositories"]}
    assert create(b_user, unique("team/app")) is None
    assert create(b_bare, unique("bare")) == "AccessDeniedException"  # identity side missing
    assert create(c, unique("c")) == "AccessDeniedException"
    # registry policy grants only CreateRepository/ReplicateImage: not pushes
    code, _, _ = client_error(west_ecr(west, b).initiate_layer_upload, registryId=A, repositoryName=made)
    assert code == "AccessDeniedException"

    put("003-registry-multiple-accounts")
    assert create(c, unique("c")) is None
    assert create(b, unique("b")) is None

    put("003-registry-prod-prefix")
    assert create(b, unique("prod-api")) is None
    assert create(b, unique("dev-api")) == "AccessDeniedException"
    assert create(c, unique("prod-c")) == "AccessDeniedException"

    put("003-registry-replicate-only")
    assert create(b, unique("prod-x")) == "AccessDeniedException"

    out = west.cli(a, "ecr", "delete-registry-policy", "--region", "us-west-2")
    assert out["registryId"] == A
    err = west.cli_error(a, "ecr", "get-registry-policy", "--region", "us-west-2")
    assert err.code == "RegistryPolicyNotFoundException"
    time.sleep(SETTLE)
    assert create(b, unique("prod-y")) == "AccessDeniedException"


def test_003_registry_policy_is_evaluated_on_pushes(server, accounts, tmp_path):
    a, b, _ = accounts
    A = a.account_id
    # the seed as written names us-west-2 repositories: on this us-east-1 server it is
    # accepted but grants nothing here
    server.cli(a, "ecr", "put-registry-policy", "--policy-text",
               seed_text("003-registry-replicate-all", **ids(a, b)))
    try:
        time.sleep(SETTLE)
        code, _, _ = client_error(ecr(server, b).create_repository, registryId=A, repositoryName=unique("x"))
        assert code == "AccessDeniedException"

        # a registry policy Deny blocks a push by an all-powerful user; an Allow lets B pull
        repo = new_repo(server)
        img = seeded_image(server, repo)
        ci_arn, ci, ci_pw = person(server, policy=ALLOW_ALL)
        _, _, b_pw = person(server, policy=doc(allow("ecr:*")), admin=b)
        policy = doc(
            {"Sid": "NoPushForCi", "Effect": "Deny", "Principal": {"AWS": ci_arn},
             "Action": "ecr:PutImage", "Resource": f"arn:aws:ecr:us-east-1:{A}:repository/*"},
            {"Sid": "PullForB", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{b.account_id}:root"},
             "Action": PULL, "Resource": f"arn:aws:ecr:us-east-1:{A}:repository/*"},
        )
        server.cli(a, "ecr", "put-registry-policy", "--policy-text", json.dumps(policy))
        time.sleep(SETTLE)
        status, code, msg = try_push(server, ci_pw, repo, make_image(layers=1), "ci")
        assert (status, code) == (403, "DENIED")
        assert "ecr:PutImage" in msg and "explicit deny" in msg
        write_oci_layout(tmp_path / "src", {"v": make_image(layers=1)})
        assert skopeo_push(server, ci_pw, tmp_path / "src", "v", repo, check=False).returncode != 0
        assert client_error(ecr(server, ci).put_image, repositoryName=repo, imageTag="api",
                            imageManifest=img.manifest.decode())[0] == "AccessDeniedException"
        assert try_pull(server, ci_pw, repo, img, "v1")[:2] == (200, None)
        assert try_pull(server, b_pw, repo, img, "v1")[:2] == (200, None)
        assert try_push(server, b_pw, repo, make_image(layers=1), "b")[:2] == (403, "DENIED")

        server.cli(a, "ecr", "delete-registry-policy")
        time.sleep(SETTLE)
        assert try_push(server, ci_pw, repo, make_image(layers=1), "ci")[:2] == (201, None)
        assert try_pull(server, b_pw, repo, img, "v1")[:2] == (403, "DENIED")
    finally:
        try:
            ecr(server).delete_registry_policy()
        except Exception:  # noqa: BLE001 - already deleted
            pass


# ---------------------------------------------------------------------------------------
# Seed 004: the push and pull identity policy (CI pushes, deployments pull)
# ---------------------------------------------------------------------------------------

def test_004_push_pull_identity(server, accounts, tmp_path):
    a, _, _ = accounts
    repo = new_repo(server, "my-app")
    other = new_repo(server)
    full = json.loads(seed_text("004-push-pull-identity", **ids(a)))
    pull_only = dict(full, Statement=[s for s in full["Statement"] if s["Sid"] != "AllowECRPush"])
    assert [s["Sid"] for s in pull_only["Statement"]] == ["AllowECRAuth", "AllowECRPull"]
    _, ci, ci_pw = person(server, policy=full)
    _, deploy, deploy_pw = person(server, policy=pull_only)

    img = make_image(layers=2)
    write_oci_layout(tmp_path / "src", {"1.0": img})
    skopeo_push(server, ci_pw, tmp_path / "src", "1.0", repo)
    assert pulled_digest(server, deploy_pw, repo, "1.0", tmp_path, "deploy") == img.digest
    assert pulled_digest(server, ci_pw, repo, "1.0", tmp_path, "ci") == img.digest
    _, manifest = read_oci_layout(tmp_path / "deploy", "pulled")
    assert manifest == img.manifest

    # the deployment user cannot push
    assert skopeo_push(server, deploy_pw, tmp_path / "src", "1.0", repo, dest_tag="2.0",
                       check=False).returncode != 0
    status, code, msg = try_push(server, deploy_pw, repo, make_image(layers=1), "2.0")
    assert (status, code) == (403, "DENIED") and "ecr:InitiateLayerUpload" in msg
    status, code, msg = oci_error(Registry(server, deploy_pw).put_manifest(repo, "2.0", img.manifest))
    assert (status, code) == (403, "DENIED") and "ecr:PutImage" in msg
    assert client_error(ecr(server, deploy).put_image, repositoryName=repo, imageTag="2.0",
                        imageManifest=img.manifest.decode())[0] == "AccessDeniedException"
    assert ecr(server, deploy).batch_get_image(repositoryName=repo,
                                               imageIds=[{"imageTag": "1.0"}])["images"][0]["imageManifest"] \
        == img.manifest.decode()
    # neither reaches another repository
    for pw in (ci_pw, deploy_pw):
        assert try_push(server, pw, other, make_image(layers=1), "x")[:2] == (403, "DENIED")
    assert skopeo_push(server, ci_pw, tmp_path / "src", "1.0", other, check=False).returncode != 0
    # nor what the policy does not list
    assert client_error(ecr(server, ci).describe_images, repositoryName=repo)[0] == "AccessDeniedException"

    # without the GetAuthorizationToken statement there is no password at all
    no_auth = dict(full, Statement=[s for s in full["Statement"] if s["Sid"] != "AllowECRAuth"])
    _, nobody, pw = person(server, policy=no_auth)
    assert pw is None
    code, msg, _ = client_error(ecr(server, nobody).get_authorization_token)
    assert code == "AccessDeniedException" and "ecr:GetAuthorizationToken" in msg

    # a deployment role with the pull-only policy, assumed by a user: the session's password pulls
    role = unique("deploy-role")
    server.iam().create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(
        trust(f"arn:aws:iam::{a.account_id}:root")))
    server.iam().put_role_policy(RoleName=role, PolicyName="pull", PolicyDocument=json.dumps(pull_only))
    _, assumer = server.new_user(policies=[doc(allow("sts:AssumeRole"))])
    sess = server.sts(assumer).assume_role(RoleArn=f"arn:aws:iam::{a.account_id}:role/{role}",
                                           RoleSessionName="deploy")["Credentials"]
    role_creds = Creds.from_sts(sess, a.account_id)
    role_pw = login_password(server, role_creds)
    assert try_pull(server, role_pw, repo, img, "1.0")[:2] == (200, None)
    status, code, msg = try_push(server, role_pw, repo, make_image(layers=1), "3.0")
    assert (status, code) == (403, "DENIED")
    assert f"assumed-role/{role}/deploy" in msg


# ---------------------------------------------------------------------------------------
# Seed 000 ("Amazon ECR provides several managed IAM policies"): the AWS managed policies
# ---------------------------------------------------------------------------------------

def test_000_aws_managed_ecr_policies(server, accounts):
    """AmazonEC2ContainerRegistryReadOnly lets a user log in and pull, not push;
    PowerUser also pushes; they are listed, readable, attachable, and cannot be changed."""
    root = server.root
    iam = server.iam(root)
    repo = new_repo(server)
    img = seeded_image(server, repo)
    ro_arn = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly"
    pu_arn = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPowerUser"

    reader, reader_creds = server.new_user(managed=[ro_arn])
    pw = login_password(server, reader_creds)
    assert try_pull(server, pw, repo, img, "v1")[0] == 200
    status, code, _ = try_push(server, pw, repo, make_image(layers=1), "nope")
    assert (status, code) == (403, "DENIED")

    pusher, pusher_creds = server.new_user(managed=[pu_arn])
    assert try_push(server, login_password(server, pusher_creds), repo, make_image(layers=1), "v2")[0] == 201
    # PowerUser may not delete the repository.
    err = server.cli_error(pusher_creds, "ecr", "delete-repository", "--repository-name", repo)
    assert err.code == "AccessDeniedException"

    # The simulator names the AWS managed policy that decided.
    sim = server.cli(root, "iam", "simulate-principal-policy", "--policy-source-arn",
                     f"arn:aws:iam::{server.account}:user/{reader}", "--action-names", "ecr:BatchGetImage")
    matched = sim["EvaluationResults"][0]["MatchedStatements"][0]
    assert (matched["SourcePolicyId"], matched["SourcePolicyType"]) == (ro_arn, "aws-managed")

    # Read like any managed policy, with this account's attachment count.
    got = server.cli(root, "iam", "get-policy", "--policy-arn", ro_arn)["Policy"]
    assert got["Arn"] == ro_arn and got["DefaultVersionId"] == "v3" and got["AttachmentCount"] >= 1
    version = server.cli(root, "iam", "get-policy-version", "--policy-arn", ro_arn, "--version-id", "v3")
    assert "ecr:BatchGetImage" in version["PolicyVersion"]["Document"]["Statement"][0]["Action"]
    names = [p["PolicyName"] for p in server.cli(root, "iam", "list-policies", "--scope", "AWS")["Policies"]]
    assert {"AmazonEC2ContainerRegistryReadOnly", "AmazonEC2ContainerRegistryPowerUser",
            "AmazonEC2ContainerRegistryFullAccess", "AmazonEC2ContainerRegistryPullOnly"} <= set(names)
    local = [p["Arn"] for p in iam.list_policies(Scope="Local")["Policies"]]
    assert not any(a.startswith("arn:aws:iam::aws:") for a in local)
    assert {p["PolicyName"] for p in iam.list_attached_user_policies(UserName=reader)["AttachedPolicies"]} == \
        {"AmazonEC2ContainerRegistryReadOnly"}

    # Nobody changes them.
    for args in (["delete-policy", "--policy-arn", ro_arn],
                 ["create-policy-version", "--policy-arn", ro_arn, "--policy-document",
                  json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})],
                 ["delete-policy-version", "--policy-arn", ro_arn, "--version-id", "v3"]):
        assert server.cli_error(root, "iam", *args).code == "InvalidInput"
    assert server.cli(root, "iam", "get-policy", "--policy-arn", ro_arn)["Policy"]["DefaultVersionId"] == "v3"

    # A role with an AWS managed policy, and a session policy naming one.
    role = unique("ro-role")
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{server.account}:root"}, "Action": "sts:AssumeRole"}]}))
    iam.attach_role_policy(RoleName=role, PolicyArn=pu_arn)
    _, admin = server.new_user(policies=[ALLOW_ALL])
    session = server.sts(admin).assume_role(RoleArn=f"arn:aws:iam::{server.account}:role/{role}", RoleSessionName="sess",
                                           PolicyArns=[{"arn": ro_arn}])["Credentials"]
    sc = Creds(session["AccessKeyId"], session["SecretAccessKey"], session["SessionToken"], server.account)
    spw = login_password(server, sc)
    assert try_pull(server, spw, repo, img, "v1")[0] == 200
    # The session policy (read-only) narrows the role's PowerUser: no push.
    assert try_push(server, spw, repo, make_image(layers=1), "v3")[0] == 403

    # A customer policy may take an AWS managed policy's name; paging one by one shows both.
    mine = iam.create_policy(PolicyName="AmazonEC2ContainerRegistryReadOnly", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]}))["Policy"]["Arn"]
    seen, marker = [], None
    while True:
        page = iam.list_policies(Scope="All", MaxItems=1, **({"Marker": marker} if marker else {}))
        seen += [p["Arn"] for p in page["Policies"]]
        if not page["IsTruncated"]:
            break
        marker = page["Marker"]
    assert ro_arn in seen and mine in seen and len(seen) == len(set(seen))
    iam.delete_policy(PolicyArn=mine)

    # Authorization details name the AWS managed policies attached in the account.
    details = server.cli(root, "iam", "get-account-authorization-details", "--filter", "AWSManagedPolicy")
    assert {p["Arn"] for p in details["Policies"]} >= {ro_arn, pu_arn}


def test_boundary_that_no_longer_resolves_fails_closed(server):
    """A permissions boundary whose policy vanished (only possible behind the API's back)
    must not leave the user unbounded: requests fail instead of being allowed."""
    root = server.root
    iam = server.iam(root)
    name = unique("bnd")
    arn = iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:DescribeRegistry", "Resource": "*"}]}))["Policy"]["Arn"]
    _, creds = server.new_user(policies=[ALLOW_ALL], boundary=arn)
    ecr(server, creds).describe_registry()
    assert len(server.sql("DELETE FROM managed_policies WHERE name = ? RETURNING 1", (name,))) == 1
    time.sleep(SETTLE)
    code, _, status = client_error(ecr(server, creds).describe_repositories)
    assert status >= 400, code
