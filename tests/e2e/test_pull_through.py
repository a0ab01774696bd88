"""ECR pull-through cache end to end: upstream registries of CNCF distribution 2.8
(Debian's docker-registry; anonymous, Basic, and the Docker token flow with a token server
of upstream.py) on loopback, images pushed to them with skopeo, pulled through Berth with
skopeo, podman, docker and raw HTTP; the rules and their errors through the aws CLI; the
upstream credentials through `berth upstream-credential`. What the upstream received is
counted from its access log."""

import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests

from berth import (BIN, OCI_INDEX, OCI_MANIFEST, Registry, allow, descriptor, doc, docker_engine,
                   login_password, make_image, oci_error, postgres_url, read_oci_layout, run_client,
                   sha256,
                   skopeo, skopeo_pull, start_server, unique, until, write_oci_layout)
from upstream import LyingUpstream, ThrottlingProxy, Upstream

PULL_ACTIONS = ["ecr:GetAuthorizationToken", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
                "ecr:BatchCheckLayerAvailability"]
BASIC = ("alice", "basic-Upstream-pw-7c1e")
TOKEN = ("bob", "token-Upstream-pw-95d2")
RECHECK_FAST = 1  # seconds: the `fast` server's pull_through_recheck_seconds


# ---------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def upstreams(tmp_path_factory):
    """The three upstreams of the module: anonymous, Basic and token."""
    d = tmp_path_factory.mktemp("upstreams")
    ups = {"anon": Upstream(d / "anon", name="anon"),
           "basic": Upstream(d / "basic", basic=BASIC, name="basic"),
           "token": Upstream(d / "token", token=TOKEN, name="token"),
           # started by the test that stops it (its port is known now, for the servers'
           # pull_through_insecure_upstreams)
           "gone": Upstream(d / "gone", name="gone")}
    try:
        for key, u in ups.items():
            if key != "gone":
                u.start()
        yield ups
    finally:
        for u in ups.values():
            u.close()


class Cache:
    """A Berth server with upstream credentials for the Basic and the token upstream."""

    def __init__(self, server):
        self.server = server
        self.root = server.root
        self.password = login_password(server, self.root)
        self.arns = {}

    def ecr(self, creds=None):
        return self.server.client("ecr", creds or self.root)

    def cli(self, *args, creds=None):
        return self.server.cli(creds or self.root, "ecr", *args)

    def cli_error(self, *args, creds=None):
        return self.server.cli_error(creds or self.root, "ecr", *args)

    def rule(self, upstream, prefix=None, credential=None, upstream_prefix=None):
        """A pull-through cache rule (aws CLI) of a new prefix to `upstream`; its prefix.
        `credential` defaults to the upstream's (Basic, token) stored credential."""
        prefix = prefix or unique("ptc")
        if credential is None and getattr(upstream, "creds", None):
            credential = self.arns[upstream.name]
        out = self.cli(*create_rule(prefix, upstream.url if hasattr(upstream, "url") else upstream,
                                    credential, upstream_prefix))
        assert out["ecrRepositoryPrefix"] == prefix, out
        return prefix

    def pull(self, repo, ref, layout, creds=None, password=None, extra=(), check=True):
        """skopeo copy through Berth into an OCI layout; returns (process, manifest digest)."""
        pw = password or (login_password(self.server, creds) if creds else self.password)
        digest_file = Path(str(layout) + ".digest")
        p = skopeo_pull(self.server, pw, repo, ref, layout, check=check,
                        extra=["--digestfile", str(digest_file), *extra])
        return p, (digest_file.read_text().strip() if p.returncode == 0 else None)

    def inspect_raw(self, repo, ref, password=None):
        sep = "@" if ref.startswith("sha256:") else ":"
        p = skopeo("inspect", "--raw", "--tls-verify=false", "--creds", f"AWS:{password or self.password}",
                   f"docker://127.0.0.1:{self.server.port}/{repo}{sep}{ref}")
        return p.stdout.encode()

    def registry(self, password=None):
        return Registry(self.server, password or self.password)

    def credential(self, name, username, password, upstream, check=True, json_out=False):
        """`berth upstream-credential put` for the upstream host `upstream`."""
        cmd = [BIN, "upstream-credential", "put", name, "--upstream", upstream, "--username", username,
               "--password-stdin", "--config", str(self.server.config_path),
               "--data-dir", str(self.server.data_dir)]
        if json_out:
            cmd.append("--json")
        p = subprocess.run(cmd, input=password, capture_output=True, text=True, timeout=60)
        if check:
            assert p.returncode == 0, f"berth upstream-credential put: {p.returncode}\n{p.stderr}"
        return p

    def credential_cmd(self, *args):
        p = subprocess.run([BIN, "upstream-credential", *args, "--config", str(self.server.config_path),
                            "--data-dir", str(self.server.data_dir)],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, f"berth upstream-credential {' '.join(args)}: {p.returncode}\n{p.stderr}"
        return p.stdout


def create_rule(prefix, url, credential=None, upstream_prefix=None):
    """The aws CLI arguments of CreatePullThroughCacheRule. The members go in as
    --cli-input-json: aws CLI v1 fetches a parameter value that starts with http:// and
    sends what it got instead (cli_follow_urlparam), and an upstream of plain HTTP is
    named so."""
    rule = {"ecrRepositoryPrefix": prefix, "upstreamRegistryUrl": url}
    if credential:
        rule["credentialArn"] = credential
    if upstream_prefix:
        rule["upstreamRepositoryPrefix"] = upstream_prefix
    return ["create-pull-through-cache-rule", "--cli-input-json", json.dumps(rule)]


def make_cache(tmp_path_factory, name, upstreams, extra_config="", extra_hosts=()):
    """A Berth server that reaches the upstreams (and `extra_hosts`) over plain HTTP (they
    are on loopback), with a credential for the Basic and for the token upstream."""
    hosts = ", ".join(f'"{h}"' for h in [*(u.host for u in upstreams.values()), *extra_hosts])
    server = start_server(tmp_path_factory, name,
                          extra_config=f"pull_through_insecure_upstreams = [{hosts}]\n" + extra_config)
    c = Cache(server)
    for key, (user, pw) in (("basic", BASIC), ("token", TOKEN)):
        c.arns[key] = c.credential(f"{name}-{key}", user, pw, upstreams[key].host).stdout.strip()
    return c


def stop(cache):
    rc = cache.server.stop()
    assert rc == 0, f"berth serve exited {rc} after SIGTERM:\n" + "".join(cache.server.stderr_lines[-30:])


@pytest.fixture(scope="module")
def berth(tmp_path_factory, upstreams):
    """Berth with the default re-check interval (a day)."""
    c = make_cache(tmp_path_factory, "ptc", upstreams)
    yield c
    stop(c)


@pytest.fixture(scope="module")
def fast(tmp_path_factory, upstreams):
    """Berth re-checking a tag against the upstream at most once a second."""
    c = make_cache(tmp_path_factory, "ptcfast", upstreams,
                   extra_config=f"pull_through_recheck_seconds = {RECHECK_FAST}\n")
    yield c
    stop(c)


def publish(upstream, repo, tag, tmp_path, image=None, **kw):
    """Push an image (new, of make_image(**kw), unless given) to the upstream as repo:tag."""
    image = image or make_image(**{"layers": 2, "size": 64 * 1024, **kw})
    layout = Path(tempfile.mkdtemp(prefix="layout", dir=tmp_path))
    write_oci_layout(layout, {"src": image})
    upstream.push(layout, "src", repo, tag)
    return image


def user_pw(cache, *statements):
    """A user whose identity policy is `statements`; (arn, creds, registry password)."""
    name, creds = cache.server.new_user(policies=[doc(*statements)])
    return (f"arn:aws:iam::{cache.server.account}:user/{name}", creds,
            login_password(cache.server, creds))


def layout_manifest(layout, tag="pulled"):
    _, manifest = read_oci_layout(layout, tag)
    return json.loads(manifest)


def get_blob(reg, repo, digest, stream=False):
    """GET a blob through Berth, following a redirect (to the blob store) without the
    registry's credentials."""
    r = reg.request("GET", f"/v2/{repo}/blobs/{digest}", stream=stream)
    if r.status_code in (301, 302, 303, 307, 308):
        r = requests.get(r.headers["Location"], timeout=60, stream=stream)
    return r


def stored(cache, repo, digests, within=30):
    """Wait until DescribeImages of `repo` lists exactly `digests` (the image a pull
    fetched is stored by a task of its own, once its blobs are in); its details by digest."""
    def check():
        try:
            details = cache.ecr().describe_images(repositoryName=repo)["imageDetails"]
        except cache.ecr().exceptions.RepositoryNotFoundException:
            return None
        found = {d["imageDigest"]: d for d in details}
        return found if set(found) == set(digests) else None
    return until(f"{repo} holds {sorted(digests)}", within, check)


def repository_exists(cache, name):
    try:
        cache.ecr().describe_repositories(repositoryNames=[name])
        return True
    except cache.ecr().exceptions.RepositoryNotFoundException:
        return False


def stored_files(server):
    """Everything the metadata store holds, as bytes: the SQLite files of the data
    directory (the database, its WAL), or a dump of the PostgreSQL database."""
    if server.database:
        p = subprocess.run(["pg_dump", "--data-only", postgres_url(server.database)],
                           capture_output=True, timeout=120)
        assert p.returncode == 0, p.stderr.decode()
        return {"pg_dump": p.stdout}
    return {f.name: f.read_bytes() for f in server.data_dir.iterdir()
            if f.is_file() and f.name.startswith("berth.db")}


# ---------------------------------------------------------------------------------------
# The rules and the credentials
# ---------------------------------------------------------------------------------------

def test_rule_operations_and_their_errors(berth, upstreams):
    """Create, describe, update, validate and delete rules with the aws CLI, and the
    errors ECR answers."""
    anon, basic = upstreams["anon"], upstreams["basic"]
    account = berth.server.account
    p1, p2 = unique("rules"), unique("rules")
    out = berth.cli(*create_rule(p1, anon.url))
    assert (out["ecrRepositoryPrefix"], out["upstreamRegistryUrl"], out["registryId"]) == (p1, anon.url, account)
    assert "createdAt" in out and "credentialArn" not in out
    out = berth.cli(*create_rule(p2, basic.url, berth.arns["basic"], "library"))
    assert out["credentialArn"] == berth.arns["basic"]
    assert out["upstreamRepositoryPrefix"] == "library"

    rules = berth.cli("describe-pull-through-cache-rules")["pullThroughCacheRules"]
    mine = {r["ecrRepositoryPrefix"]: r for r in rules if r["ecrRepositoryPrefix"] in (p1, p2)}
    assert set(mine) == {p1, p2}
    assert mine[p1]["upstreamRegistryUrl"] == anon.url and "credentialArn" not in mine[p1]
    assert mine[p2]["credentialArn"] == berth.arns["basic"] and mine[p2]["upstreamRepositoryPrefix"] == "library"
    [only] = berth.cli("describe-pull-through-cache-rules", "--ecr-repository-prefixes", p2)["pullThroughCacheRules"]
    assert only["ecrRepositoryPrefix"] == p2 and only["registryId"] == account

    # the same prefix twice
    e = berth.cli_error(*create_rule(p1, basic.url))
    assert e.code == "PullThroughCacheRuleAlreadyExistsException", e
    # a credential that is not stored
    missing = f"arn:aws:secretsmanager:us-east-1:{account}:secret:ecr-pullthroughcache/nothing-AbCdEf"
    e = berth.cli_error(*create_rule(unique("rules"), basic.url, missing))
    assert e.code == "SecretNotFoundException", e
    # prefixes the model's pattern refuses: a model constraint, worded as AWS words them
    wrong_codes = {}
    for bad in ("Upper/Case", "a..b", "-dash", "two//slashes", "/lead"):
        e = berth.cli_error(*create_rule(bad, anon.url))
        if e.code != "ValidationException" or "regular expression pattern" not in e.message \
                or f"'{bad}'" not in e.message:
            wrong_codes[bad] = (e.code, e.message)
    assert wrong_codes == {}, wrong_codes
    # unknown prefixes
    nope = unique("nope")
    for args in (["describe-pull-through-cache-rules", "--ecr-repository-prefixes", nope],
                 ["update-pull-through-cache-rule", "--ecr-repository-prefix", nope,
                  "--credential-arn", berth.arns["basic"]],
                 ["validate-pull-through-cache-rule", "--ecr-repository-prefix", nope],
                 ["delete-pull-through-cache-rule", "--ecr-repository-prefix", nope]):
        e = berth.cli_error(*args)
        assert e.code == "PullThroughCacheRuleNotFoundException", (args, e)

    # validate: the upstream answers, with the credential given
    v = berth.cli("validate-pull-through-cache-rule", "--ecr-repository-prefix", p1)
    assert v["isValid"] is True and v["ecrRepositoryPrefix"] == p1 and v["upstreamRegistryUrl"] == anon.url, v
    v = berth.cli("validate-pull-through-cache-rule", "--ecr-repository-prefix", p2)
    assert v["isValid"] is True, v
    # update to a credential with the wrong password: no longer valid, and it says why
    wrong = berth.credential(unique("wrong"), BASIC[0], "not-the-password", basic.host).stdout.strip()
    e = berth.cli_error("update-pull-through-cache-rule", "--ecr-repository-prefix", p2, "--credential-arn", missing)
    assert e.code == "SecretNotFoundException", e
    out = berth.cli("update-pull-through-cache-rule", "--ecr-repository-prefix", p2, "--credential-arn", wrong)
    assert out["credentialArn"] == wrong and out["ecrRepositoryPrefix"] == p2
    [r] = berth.cli("describe-pull-through-cache-rules", "--ecr-repository-prefixes", p2)["pullThroughCacheRules"]
    assert r["credentialArn"] == wrong
    v = berth.cli("validate-pull-through-cache-rule", "--ecr-repository-prefix", p2)
    assert v["isValid"] is False and v.get("failure"), v
    # a credential goes only to the upstream host it was stored for
    elsewhere = berth.credential(unique("elsewhere"), *BASIC, "other.example:5000").stdout.strip()
    e = berth.cli_error("update-pull-through-cache-rule", "--ecr-repository-prefix", p2,
                        "--credential-arn", elsewhere)
    assert e.code == "UnableToAccessSecretException" and "other.example:5000" in e.message, e
    # plain HTTP only to the upstreams the server lists
    e = berth.cli_error(*create_rule(unique("plain"), "http://127.0.0.9:1"))
    assert e.code == "InvalidParameterException" and "pull_through_insecure_upstreams" in e.message, e

    # delete answers the rule; then it is gone
    out = berth.cli("delete-pull-through-cache-rule", "--ecr-repository-prefix", p1)
    assert out["ecrRepositoryPrefix"] == p1 and out["upstreamRegistryUrl"] == anon.url
    e = berth.cli_error("describe-pull-through-cache-rules", "--ecr-repository-prefixes", p1)
    assert e.code == "PullThroughCacheRuleNotFoundException"
    e = berth.cli_error("delete-pull-through-cache-rule", "--ecr-repository-prefix", p1)
    assert e.code == "PullThroughCacheRuleNotFoundException"
    berth.cli("delete-pull-through-cache-rule", "--ecr-repository-prefix", p2)


def test_only_the_listed_upstreams_are_reached(tmp_path_factory, upstreams, tmp_path):
    """pull_through_upstreams: a rule may name only a listed upstream (InvalidParameterException
    naming the list otherwise); a rule made before the operator's list left its host out
    fetches nothing more (the upstream gets no request; BatchGetImage says
    UpstreamAccessDenied, /v2 names the list), while what it cached still pulls."""
    anon, basic = upstreams["anon"], upstreams["basic"]
    c = make_cache(tmp_path_factory, "ptclist", upstreams)
    try:
        old = c.rule(basic)  # made while any upstream may be named
        repo = f"{old}/listed/app"
        image = publish(basic, "listed/app", "v1", tmp_path)
        _, digest = c.pull(repo, "v1", tmp_path / "before")
        assert digest == image.digest
        stored(c, repo, {image.digest})

        # the operator lists the anonymous upstream (and a domain) only
        assert c.server.stop() == 0
        c.server.config_path.write_text(
            c.server.config_path.read_text()
            + f'pull_through_upstreams = ["{anon.host}", "*.registry.example.com"]\n')
        c.server.start()
        c.password = login_password(c.server, c.root)
        c.rule(anon)
        for url in (basic.url, "registry-1.docker.io", "registry.example.com"):
            e = c.cli_error(*create_rule(unique("ptc"), url))
            assert e.code == "InvalidParameterException" and "pull_through_upstreams" in e.message, (url, e)

        publish(basic, "listed/app", "v2", tmp_path)
        mark = basic.sync()
        # cached: still served (the tag's re-check, due after the restart, is refused)
        _, digest = c.pull(repo, "v1", tmp_path / "after")
        assert digest == image.digest
        # not cached: refused before anything is asked of the upstream
        r = c.registry().get_manifest(repo, "v2")
        status, code, message = oci_error(r)
        assert (status, code) == (502, "UNAVAILABLE") and "pull_through_upstreams" in message, (status, code, message)
        out = c.ecr().batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v2"}])
        assert [f["failureCode"] for f in out["failures"]] == ["UpstreamAccessDenied"], out
        v = c.cli("validate-pull-through-cache-rule", "--ecr-repository-prefix", old)
        assert v["isValid"] is False and "pull_through_upstreams" in v["failure"], v
        assert basic.since(mark) == [], "a host left out of pull_through_upstreams was asked"
    finally:
        stop(c)


def test_upstream_credentials_are_sealed(berth, upstreams):
    """`berth upstream-credential put|list|delete`; the password never appears in clear in
    the metadata store nor in any output."""
    secret = f"Clear-Text-{os.urandom(6).hex()}"
    name = unique("cred")
    arn = berth.credential(name, "someone", secret, upstreams["basic"].host).stdout.strip()
    account = berth.server.account
    assert re.fullmatch(rf"arn:aws:secretsmanager:us-east-1:{account}:secret:ecr-pullthroughcache/{name}-[A-Za-z0-9]{{6}}",
                        arn), arn
    # a name given with the prefix keeps it (not doubled); --json
    name2 = unique("cred")
    p = berth.credential(f"ecr-pullthroughcache/{name2}", "other", secret, upstreams["basic"].host,
                         json_out=True)
    got = json.loads(p.stdout)
    assert got["username"] == "other" and got["name"].endswith(name2), got
    assert f":secret:ecr-pullthroughcache/{name2}-" in got["arn"], got
    assert secret not in p.stdout + p.stderr

    listed_text = berth.credential_cmd("list")
    assert arn in listed_text and got["arn"] in listed_text and secret not in listed_text
    listed = json.loads(berth.credential_cmd("list", "--json"))
    if isinstance(listed, dict):
        [listed] = [v for v in listed.values() if isinstance(v, list)]
    by_arn = {c["arn"]: c for c in listed}
    assert by_arn[arn]["username"] == "someone" and by_arn[got["arn"]]["username"] == "other"
    assert secret not in json.dumps(listed)

    # a rule with it: the password is in no answer
    prefix = berth.rule(upstreams["basic"], credential=arn)
    described = berth.server._cli(berth.root, ["ecr", "describe-pull-through-cache-rules",
                                               "--ecr-repository-prefixes", prefix])
    assert described.returncode == 0 and arn in described.stdout and secret not in described.stdout
    berth.cli("delete-pull-through-cache-rule", "--ecr-repository-prefix", prefix)

    for fname, data in stored_files(berth.server).items():
        assert secret.encode() not in data, f"the upstream password is in clear in {fname}"

    berth.credential_cmd("delete", name)
    after = berth.credential_cmd("list")
    assert arn not in after and got["arn"] in after
    berth.credential_cmd("delete", f"ecr-pullthroughcache/{name2}")
    assert got["arn"] not in berth.credential_cmd("list")


# ---------------------------------------------------------------------------------------
# Pulling through
# ---------------------------------------------------------------------------------------

def test_first_pull_fetches_and_creates_the_repository_from_the_template(berth, upstreams, tmp_path):
    """A pull of an image Berth does not hold fetches it from the (Basic) upstream into a
    repository made from the PULL_THROUGH_CACHE template; the digests are the upstream's;
    later pulls send the upstream nothing."""
    up = upstreams["basic"]
    prefix = berth.rule(up)
    policy = json.dumps(doc({"Sid": "pull", "Effect": "Allow",
                             "Principal": {"AWS": f"arn:aws:iam::{berth.server.account}:root"},
                             "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]}))
    berth.cli("create-repository-creation-template", "--prefix", prefix, "--applied-for", "PULL_THROUGH_CACHE",
              "--image-tag-mutability", "IMMUTABLE", "--repository-policy", policy,
              "--resource-tags", "Key=origin,Value=pull-through", "Key=team,Value=cache")
    image = publish(up, "lib/app", "v1", tmp_path, layers=3)
    repo = f"{prefix}/lib/app"
    assert not repository_exists(berth, repo)

    mark = up.sync()
    _, digest = berth.pull(repo, "v1", tmp_path / "first")
    assert digest == image.digest
    got = up.since(mark)
    for d, _ in image.blobs:
        assert up.count("GET", f"/v2/lib/app/blobs/{d}", got) == 1, got
    assert all(r.path.startswith("/v2/") for r in got)
    assert not any(r.path.startswith(f"/v2/{prefix}") for r in got), "the upstream was asked for the cache's name"

    # the digests are the upstream's, manifest and layers
    upstream_raw = up.inspect_raw("lib/app", "v1")
    assert berth.inspect_raw(repo, "v1") == upstream_raw
    assert sha256(upstream_raw) == digest
    pulled = layout_manifest(tmp_path / "first")
    assert [l["digest"] for l in pulled["layers"]] == [l["digest"] for l in json.loads(upstream_raw)["layers"]]
    assert pulled["config"]["digest"] == json.loads(upstream_raw)["config"]["digest"]

    # the repository, as the template makes it
    [made] = berth.ecr().describe_repositories(repositoryNames=[repo])["repositories"]
    assert made["imageTagMutability"] == "IMMUTABLE"
    tags = berth.ecr().list_tags_for_resource(resourceArn=made["repositoryArn"])["tags"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("origin", "pull-through"), ("team", "cache")]
    assert json.loads(berth.ecr().get_repository_policy(repositoryName=repo)["policyText"]) == json.loads(policy)
    [detail] = stored(berth, repo, {image.digest}).values()
    assert detail["imageTags"] == ["v1"]
    assert detail["imageManifestMediaType"] == OCI_MANIFEST

    # later pulls (by tag, by digest, a manifest inspect) are served locally
    mark = up.sync()
    _, again = berth.pull(repo, "v1", tmp_path / "second")
    _, by_digest = berth.pull(repo, image.digest, tmp_path / "third")
    assert again == by_digest == image.digest
    assert up.since(mark) == []
    berth.cli("delete-repository-creation-template", "--prefix", prefix)


def test_token_upstream_and_upstream_repository_prefix(berth, upstreams, tmp_path):
    """The token upstream: Berth gets a token from the token server with the stored
    credential; with an upstreamRepositoryPrefix the upstream is asked for UP/REPO. A pull
    by digest fetches too."""
    up = upstreams["token"]
    prefix = berth.rule(up, upstream_prefix="team")
    image = publish(up, "team/svc", "v1", tmp_path)
    issued = up.token_server.issued
    mark = up.sync()
    _, digest = berth.pull(f"{prefix}/svc", image.digest, tmp_path / "by-digest")
    assert digest == image.digest
    got = up.since(mark)
    assert up.token_server.issued > issued, got
    assert any(r.path == "/token" and r.status == 200 for r in got), got
    for d, _ in image.blobs:
        assert up.count("GET", f"/v2/team/svc/blobs/{d}", got) == 1, got
    stored(berth, f"{prefix}/svc", {image.digest})
    # the tag too (the manifest is held: only the tag is asked)
    mark = up.sync()
    _, digest = berth.pull(f"{prefix}/svc", "v1", tmp_path / "by-tag")
    assert digest == image.digest
    assert not any("/blobs/" in r.path for r in up.since(mark))
    assert berth.inspect_raw(f"{prefix}/svc", "v1") == up.inspect_raw("team/svc", "v1")


def test_multi_arch_index(berth, upstreams, tmp_path):
    """An index: the pull of one platform fetches the index and every child manifest
    (DescribeImages lists them), the other platform's layers when asked."""
    up = upstreams["anon"]
    prefix = berth.rule(up)
    amd, arm = make_image(layers=1, arch="amd64"), make_image(layers=2, arch="arm64")
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        descriptor(OCI_MANIFEST, amd.manifest, platform={"architecture": "amd64", "os": "linux"}),
        descriptor(OCI_MANIFEST, arm.manifest, platform={"architecture": "arm64", "os": "linux"}),
    ]}).encode()
    layout = tmp_path / "src"
    write_oci_layout(layout, {}, {"multi": (index, [amd, arm])})
    up.push(layout, "multi", "multi/app", all_images=True)
    repo = f"{prefix}/multi/app"

    mark = up.sync()
    _, digest = berth.pull(repo, "multi", tmp_path / "amd",
                           extra=["--override-arch", "amd64", "--override-os", "linux"])
    assert digest == amd.digest  # skopeo's digest file names the platform's manifest
    details = stored(berth, repo, {sha256(index), amd.digest, arm.digest})
    assert details[sha256(index)]["imageTags"] == ["multi"]
    assert details[sha256(index)]["imageManifestMediaType"] == OCI_INDEX
    assert berth.inspect_raw(repo, "multi") == up.inspect_raw("multi/app", "multi") == index
    assert berth.inspect_raw(repo, arm.digest) == arm.manifest

    # the whole index: only arm64's blobs are still to fetch, each once
    mark = up.sync()
    _, digest = berth.pull(repo, "multi", tmp_path / "all", extra=["--all"])
    assert digest == sha256(index)
    got = up.since(mark)
    assert not any("/manifests/" in r.path and r.method == "GET" and r.path.endswith(amd.digest) for r in got), got
    for d, _ in amd.blobs:
        assert up.count("GET", f"/v2/multi/app/blobs/{d}", got) == 0, got
    for d, _ in arm.blobs:
        assert up.count("GET", f"/v2/multi/app/blobs/{d}", got) <= 1, got
    mark = up.sync()
    berth.pull(repo, "multi", tmp_path / "all-again", extra=["--all"])
    assert up.since(mark) == []


# ---------------------------------------------------------------------------------------
# Re-checking a tag
# ---------------------------------------------------------------------------------------

def test_a_tag_is_rechecked_after_the_interval(fast, upstreams, tmp_path):
    """With a one-second interval, a pull past it sees the upstream's new digest for the
    tag (the old image stays by digest); a caller not allowed BatchImportUpstreamImage
    gets the cached image without a re-check."""
    up = upstreams["anon"]
    prefix = fast.rule(up)
    repo = f"{prefix}/moving"
    old = publish(up, "moving", "latest", tmp_path)
    _, digest = fast.pull(repo, "latest", tmp_path / "a")
    pulled_at = time.time()
    assert digest == old.digest
    stored(fast, repo, {old.digest})
    new = publish(up, "moving", "latest", tmp_path)

    # a pull-only caller, past the interval: the cached image, nothing asked upstream
    _, _, puller_pw = user_pw(fast, allow(PULL_ACTIONS))
    while time.time() < pulled_at + RECHECK_FAST + 0.2:
        time.sleep(0.05)
    mark = up.sync()
    _, digest = fast.pull(repo, "latest", tmp_path / "b", password=puller_pw)
    assert digest == old.digest
    assert up.since(mark) == []

    # the root: re-checked, the new digest
    mark = up.sync()
    _, digest = fast.pull(repo, "latest", tmp_path / "c")
    assert digest == new.digest
    got = up.since(mark)
    assert any(r.path == "/v2/moving/manifests/latest" for r in got), got
    _, digest = fast.pull(repo, old.digest, tmp_path / "d")
    assert digest == old.digest
    details = until("the new image is stored under the tag", 30, lambda: (
        lambda d: d if set(d) == {old.digest, new.digest} and d[new.digest].get("imageTags") == ["latest"] else None)(
        {x["imageDigest"]: x for x in fast.ecr().describe_images(repositoryName=repo)["imageDetails"]}))
    assert not details[old.digest].get("imageTags")


def test_a_tag_is_not_rechecked_within_the_interval(berth, upstreams, tmp_path):
    """With the default interval (a day), a new digest upstream is not seen, and the
    upstream is not asked."""
    up = upstreams["anon"]
    prefix = berth.rule(up)
    repo = f"{prefix}/steady"
    old = publish(up, "steady", "latest", tmp_path)
    _, digest = berth.pull(repo, "latest", tmp_path / "a")
    assert digest == old.digest
    stored(berth, repo, {old.digest})
    publish(up, "steady", "latest", tmp_path)
    mark = up.sync()
    _, digest = berth.pull(repo, "latest", tmp_path / "b")
    assert digest == old.digest
    assert up.since(mark) == []


# ---------------------------------------------------------------------------------------
# Authorization
# ---------------------------------------------------------------------------------------

def test_a_restarted_server_does_not_check_again_within_the_interval(tmp_path_factory, upstreams, tmp_path):
    """When a tag was last checked is kept in the metadata store: a server restarted
    within the interval serves the cached image without asking the upstream (a site
    rate-limited by its upstream restarts without spending its budget)."""
    up = upstreams["anon"]
    c = make_cache(tmp_path_factory, "ptcrestart", upstreams, extra_config="pull_through_recheck_seconds = 3600\n")
    try:
        prefix = c.rule(up)
        repo = f"{prefix}/kept"
        old = publish(up, "kept", "latest", tmp_path)
        _, digest = c.pull(repo, "latest", tmp_path / "a")
        assert digest == old.digest
        stored(c, repo, {old.digest})
        assert c.server.stop() == 0
        c.server.start()
        c.password = login_password(c.server, c.root)
        publish(up, "kept", "latest", tmp_path)
        mark = up.sync()
        _, digest = c.pull(repo, "latest", tmp_path / "b")
        assert digest == old.digest
        assert up.since(mark) == [], "the restarted server checked the tag again within the interval"
    finally:
        stop(c)


def test_a_caller_without_batch_import_is_denied_and_nothing_is_fetched(berth, upstreams, tmp_path):
    """Pull actions alone do not fetch: DENIED naming ecr:BatchImportUpstreamImage, no
    repository, and the upstream (registry and token server) receives nothing. Once an
    allowed caller cached the image, the same caller pulls it."""
    up = upstreams["token"]
    prefix = berth.rule(up)
    image = publish(up, "guarded", "v1", tmp_path)
    repo = f"{prefix}/guarded"
    _, puller, puller_pw = user_pw(berth, allow(PULL_ACTIONS))

    mark = up.sync()
    r = berth.registry(puller_pw).get_manifest(repo, "v1")
    status, code, message = oci_error(r)
    assert (status, code) == (403, "DENIED"), (status, code, message)
    assert "ecr:BatchImportUpstreamImage" in message, message
    p, _ = berth.pull(repo, "v1", tmp_path / "denied", password=puller_pw, check=False)
    assert p.returncode != 0 and "denied" in p.stderr.lower(), p.stderr
    assert up.since(mark) == [], "the upstream was asked for an image the caller may not import"
    assert not repository_exists(berth, repo)

    # the root caches it; the pull-only caller then pulls it, the upstream sees nothing
    _, digest = berth.pull(repo, "v1", tmp_path / "root")
    assert digest == image.digest
    stored(berth, repo, {image.digest})
    mark = up.sync()
    _, digest = berth.pull(repo, "v1", tmp_path / "puller", password=puller_pw)
    assert digest == image.digest
    r = berth.registry(puller_pw).get_manifest(repo, image.digest)
    assert r.status_code == 200 and r.content == image.manifest
    assert up.since(mark) == []
    # an image not cached yet is still denied
    publish(up, "guarded", "v2", tmp_path)
    mark = up.sync()
    r = berth.registry(puller_pw).get_manifest(repo, "v2")
    assert oci_error(r)[:2] == (403, "DENIED")
    assert up.since(mark) == []


def test_create_repository_is_needed_when_the_repository_does_not_exist(berth, upstreams, tmp_path):
    """BatchImportUpstreamImage without CreateRepository: DENIED while the repository is
    absent (nothing fetched), allowed once it exists; both actions may come from the
    registry policy."""
    up = upstreams["basic"]
    prefix = berth.rule(up)
    first = publish(up, "made/later", "v1", tmp_path)
    second = publish(up, "made/later", "v2", tmp_path)
    repo = f"{prefix}/made/later"
    _, _, importer_pw = user_pw(berth, allow(PULL_ACTIONS), allow("ecr:BatchImportUpstreamImage"))

    mark = up.sync()
    r = berth.registry(importer_pw).get_manifest(repo, "v1")
    status, code, message = oci_error(r)
    assert (status, code) == (403, "DENIED") and "ecr:CreateRepository" in message, (status, code, message)
    assert up.since(mark) == []
    assert not repository_exists(berth, repo)

    berth.ecr().create_repository(repositoryName=repo)
    _, digest = berth.pull(repo, "v1", tmp_path / "imported", password=importer_pw)
    assert digest == first.digest

    # the registry policy grants both to a pull-only user
    user_arn, _, user_pw_ = user_pw(berth, allow(PULL_ACTIONS))
    other = publish(up, "by/registry-policy", "v1", tmp_path)
    berth.ecr().put_registry_policy(policyText=json.dumps(doc({
        "Sid": "pullThrough", "Effect": "Allow", "Principal": {"AWS": user_arn},
        "Action": ["ecr:CreateRepository", "ecr:BatchImportUpstreamImage"],
        "Resource": f"arn:aws:ecr:us-east-1:{berth.server.account}:repository/{prefix}/*"})))
    try:
        reg = berth.registry(user_pw_)
        until("the registry policy is in force", 10,
              lambda: reg.get_manifest(f"{prefix}/by/registry-policy", "v1").status_code == 200)
        _, digest = berth.pull(f"{prefix}/by/registry-policy", "v1", tmp_path / "by-policy", password=user_pw_)
        assert digest == other.digest
        _, digest = berth.pull(repo, "v2", tmp_path / "v2", password=user_pw_)
        assert digest == second.digest
    finally:
        berth.ecr().delete_registry_policy()


# ---------------------------------------------------------------------------------------
# Concurrency, streaming, an unreachable upstream
# ---------------------------------------------------------------------------------------

def test_concurrent_pulls_of_one_uncached_image_fetch_it_once(berth, upstreams, tmp_path):
    """20 clients pull the same uncached image at once (raw /v2 requests): every client
    gets every byte, and the upstream's log shows the tag's manifest and each blob
    fetched once."""
    up = upstreams["basic"]
    prefix = berth.rule(up)
    image = publish(up, "crowd", "v1", tmp_path, layers=4, size=768 * 1024)
    repo = f"{prefix}/crowd"
    start = threading.Barrier(20)

    def client(_):
        reg = berth.registry()
        start.wait(30)
        r = reg.get_manifest(repo, "v1")
        assert r.status_code == 200, (r.status_code, r.text)
        assert r.headers["Docker-Content-Digest"] == image.digest and r.content == image.manifest
        for d, data in image.blobs:
            b = get_blob(reg, repo, d)
            assert b.status_code == 200, (b.status_code, b.text[:300])
            assert sha256(b.content) == d
        return True

    mark = up.sync()
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        assert all(pool.map(client, range(20)))
    got = up.since(mark)
    log = "\n".join(map(str, got))
    for i, (d, _) in enumerate(image.blobs):
        n = up.count("GET", f"/v2/crowd/blobs/{d}", got)
        what = "the config" if i == 0 else f"layer {i}"
        assert n == 1, f"{what} ({d}) was fetched {n} times; the upstream received, in order:\n{log}"
    manifest_gets = [r for r in got if r.method == "GET" and "/manifests/" in r.path and 200 <= r.status < 300]
    assert len(manifest_gets) == 1, manifest_gets
    assert up.count("GET", "/v2/crowd/manifests/v1", got) <= 1


def test_a_client_gets_a_layer_while_the_upstream_still_sends_it(tmp_path_factory, upstreams, tmp_path):
    """Streaming: the upstream's answers pass a proxy that holds them after 2 MiB on a
    connection; a client reading an uncached 12 MiB layer through Berth receives its first
    bytes while the upstream has not sent the rest."""
    up = upstreams["anon"]
    big = make_image(layers=1, size=12 * 1024 * 1024)
    publish(up, "stream/big", "v1", tmp_path, image=big)
    proxy = ThrottlingProxy(up.port, hold_after=2 * 1024 * 1024)
    # a server of its own, which lists the proxy as an upstream reached over plain HTTP
    berth = make_cache(tmp_path_factory, "ptcstream", upstreams,
                       extra_hosts=[f"127.0.0.1:{proxy.port}"])
    try:
        streamed(berth, up, big, proxy, tmp_path)
    finally:
        stop(berth)


def streamed(berth, up, big, proxy, tmp_path):
    prefix = berth.rule(proxy.url)
    repo = f"{prefix}/stream/big"
    layer_digest, layer = big.blobs[1]
    first = 256 * 1024
    got_first = threading.Event()
    result = {}

    def read():
        try:
            reg = berth.registry()
            r = reg.get_manifest(repo, "v1")
            assert r.status_code == 200, (r.status_code, r.text)
            b = get_blob(reg, repo, layer_digest, stream=True)
            assert b.status_code == 200, (b.status_code, b.text[:300])
            # Read once the upstream is held (Berth fetches on whatever the client does):
            # the first bytes must still come.
            result["held_before_reading"] = proxy.holding.wait(30)
            head = b""
            while len(head) < first:
                chunk = b.raw.read(first - len(head))
                if not chunk:
                    break
                head += chunk
            result["held_when_first_bytes"] = proxy.holding.is_set() and not proxy.released.is_set()
            result["passed_when_first_bytes"] = proxy.received
            result["head"] = head
            got_first.set()
            result["rest"] = b.raw.read()
        except BaseException as e:  # noqa: BLE001
            result["error"] = e
        finally:
            got_first.set()

    t = threading.Thread(target=read, daemon=True)
    t.start()
    try:
        received = got_first.wait(60)
        assert "error" not in result, result.get("error")
        assert received and "head" in result, "no byte of the layer reached the client while the upstream was held"
        assert result["head"] == layer[:first]
        assert result["held_before_reading"], "the proxy held nothing: the layer is under 2 MiB?"
        assert result["held_when_first_bytes"], "the upstream was released before the client had its first bytes"
        assert result["passed_when_first_bytes"] < len(layer)
    finally:
        proxy.release()
        t.join(120)
        proxy.close()
    assert "error" not in result, result.get("error")
    assert sha256(result["head"] + result["rest"]) == layer_digest
    # the layer was stored whole: a later pull needs no upstream
    stored(berth, repo, {big.digest})
    mark = up.sync()
    _, digest = berth.pull(repo, "v1", tmp_path / "again")
    assert digest == big.digest
    assert up.since(mark) == []


def test_a_blob_longer_than_a_blob_may_be_is_refused_at_once(tmp_path_factory, upstreams):
    """An upstream saying a layer is longer than a blob may be (52,000 MiB, ECR's layer
    size quota) is refused as soon as it says so, with a message saying why, rather than
    spooled until the disk fills; the image is not stored."""
    image = make_image(layers=1, size=64 * 1024)
    liar = LyingUpstream(image, "lies/app", "v1", claimed=60 * 10**9)
    c = make_cache(tmp_path_factory, "ptcliar", upstreams, extra_hosts=[liar.host])
    try:
        prefix = c.rule(liar)
        repo = f"{prefix}/lies/app"
        reg = c.registry()
        r = reg.get_manifest(repo, "v1")
        assert r.status_code == 200 and r.content == image.manifest, (r.status_code, r.text[:300])
        layer_digest = image.blobs[-1][0]
        started = time.monotonic()
        r = get_blob(reg, repo, layer_digest)
        status, code, message = oci_error(r)
        assert (status, code) == (502, "UNAVAILABLE"), (status, code, message)
        assert "more than a blob may have" in message and str(60 * 10**9) in message, message
        assert time.monotonic() - started < 30
        assert ("GET", f"/v2/lies/app/blobs/{layer_digest}") in liar.requests
        # the config came, the layer did not: no image is stored
        try:
            details = c.ecr().describe_images(repositoryName=repo)["imageDetails"]
        except c.ecr().exceptions.RepositoryNotFoundException:
            details = []
        assert details == [], details
    finally:
        stop(c)
        liar.close()


def test_an_unreachable_upstream_serves_the_cache(fast, upstreams, tmp_path):
    """The upstream stopped: cached images still pull (by tag, the re-check due, with a
    warning in the log; by digest); an uncached one fails with 502 UNAVAILABLE naming the
    upstream; restarted, it is fetched."""
    up = upstreams["gone"].start()
    try:
        prefix = fast.rule(up)
        repo = f"{prefix}/kept"
        cached = publish(up, "kept", "v1", tmp_path)
        uncached = publish(up, "kept", "v2", tmp_path)
        _, digest = fast.pull(repo, "v1", tmp_path / "cached")
        pulled_at = time.time()
        assert digest == cached.digest
        stored(fast, repo, {cached.digest})
        up.stop()
        while time.time() < pulled_at + RECHECK_FAST + 0.2:
            time.sleep(0.05)

        lines_before = len(fast.server.stderr_lines)
        _, digest = fast.pull(repo, "v1", tmp_path / "by-tag")
        assert digest == cached.digest
        _, digest = fast.pull(repo, cached.digest, tmp_path / "by-digest")
        assert digest == cached.digest

        def warned():
            return [l for l in fast.server.stderr_lines[lines_before:]
                    if re.search(r"warn", l, re.I) and re.search(r"upstream|" + re.escape(up.host), l, re.I)
                    and re.search(r"cach", l, re.I)]
        until("the server warns that it serves the cached image", 10, warned)

        # (skopeo shows the status of a 502, not its body: the message is checked below)
        p, _ = fast.pull(repo, "v2", tmp_path / "uncached", check=False)
        assert p.returncode != 0 and "502" in p.stderr, p.stderr
        r = fast.registry().get_manifest(repo, "v2")
        status, code, message = oci_error(r)
        assert (status, code) == (502, "UNAVAILABLE"), (status, code, message)
        assert "upstream" in message.lower(), message
        r = fast.registry().get_manifest(repo, uncached.digest)
        assert oci_error(r)[:2] == (502, "UNAVAILABLE")

        up.start()
        _, digest = fast.pull(repo, "v2", tmp_path / "back")
        assert digest == uncached.digest
    finally:
        up.close()


# ---------------------------------------------------------------------------------------
# podman and docker, through the Basic and the token upstream
# ---------------------------------------------------------------------------------------

run = run_client


@pytest.mark.parametrize("kind", ["basic", "token"])
def test_skopeo_podman_and_docker_pull_through(berth, upstreams, docker_engine, kind, tmp_path):
    """Each client pulls an uncached image through Berth from the Basic and the token
    upstream; the digest each reports is the upstream's."""
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: scripts/test installs Debian's podman")
    up = upstreams[kind]
    prefix = berth.rule(up)
    host = f"127.0.0.1:{berth.server.port}"
    images = {c: publish(up, f"clients/{c}", "v1", tmp_path, layers=2, size=256 * 1024)
              for c in ("skopeo", "podman", "docker")}

    # skopeo
    _, digest = berth.pull(f"{prefix}/clients/skopeo", "v1", tmp_path / "skopeo")
    assert digest == images["skopeo"].digest == sha256(up.inspect_raw("clients/skopeo", "v1"))

    # podman, with a private store (its run root must be short)
    runroot = Path(tempfile.mkdtemp(prefix="pm", dir="/tmp"))
    (tmp_path / "xdg").mkdir(mode=0o700)
    penv = {**os.environ, "REGISTRY_AUTH_FILE": str(tmp_path / "auth.json"), "CONTAINERS_CONF": "/dev/null",
            "XDG_RUNTIME_DIR": str(tmp_path / "xdg")}
    store = ["--root", str(tmp_path / "podman"), "--runroot", str(runroot), "--storage-driver", "vfs"]
    try:
        ref = f"{host}/{prefix}/clients/podman:v1"
        out = run(["podman", *store, "login", "--tls-verify=false", "--username", "AWS", "--password-stdin", host],
                  penv, input=berth.password)
        assert "Login Succeeded" in out.stdout, out.stdout + out.stderr
        run(["podman", *store, "pull", "--tls-verify=false", ref], penv)
        got = run(["podman", *store, "image", "inspect", "--format", "{{.Digest}}", ref], penv).stdout.strip()
        assert got == images["podman"].digest == sha256(up.inspect_raw("clients/podman", "v1"))
    finally:
        subprocess.run(["podman", *store, "rmi", "-a", "-f"], env=penv, capture_output=True, timeout=120)
        shutil.rmtree(runroot, ignore_errors=True)

    # docker
    env, _ = docker_engine
    run(["docker", "login", "--username", "AWS", "--password-stdin", host], env, input=berth.password)
    ref = f"{host}/{prefix}/clients/docker:v1"
    out = run(["docker", "pull", ref], env).stdout
    assert f"Digest: {images['docker'].digest}" in out, out
    repo_digests = json.loads(run(["docker", "image", "inspect", "--format", "{{json .RepoDigests}}", ref],
                                  env).stdout)
    assert repo_digests == [f"{host}/{prefix}/clients/docker@{images['docker'].digest}"]
    assert images["docker"].digest == sha256(up.inspect_raw("clients/docker", "v1"))
    run(["docker", "rmi", ref], env)

    # all three are cached: the upstream is not asked again
    for c in images:
        stored(berth, f"{prefix}/clients/{c}", {images[c].digest})
    mark = up.sync()
    for c in images:
        _, digest = berth.pull(f"{prefix}/clients/{c}", "v1", tmp_path / f"again-{c}")
        assert digest == images[c].digest
    assert up.since(mark) == []
    if kind == "token":
        assert up.token_server.issued > 0
