"""Replication as seed 003 describes it, within one deployment serving two Regions: the
source account puts a replication configuration (aws CLI), pushes with skopeo, and the
destination account's registry in us-west-2 gets the same digest, authorized by the
destination's registry policy (each example of seed 003 as written, account ids
substituted); DescribeImageReplicationStatus says where each image stands, with a
failure code a person understands when the destination refuses.

Registry hosts other than the default address (`<account>.dkr.ecr.<region>.localhost`)
are reached with skopeo through the server itself as its HTTP proxy: the server reads the
host from the request, and nothing but loopback is involved."""

import base64
import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from berth import (BIN, OCI_INDEX, OCI_MANIFEST, HoldingProxy, Registry, Server, client_error, make_image,
                   oci_error, seed_text, start_server, unique, until, write_oci_layout)

SOURCE_REGION, DEST_REGION = "us-east-1", "us-west-2"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = start_server(tmp_path_factory, "replication",
                     extra_config=f'regions = ["{SOURCE_REGION}", "{DEST_REGION}"]\n')
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="module")
def accounts(srv):
    """(source A: the default account, destination B, another source C), each its root."""
    return srv.root, srv.account_create(), srv.account_create()


def ecr(srv, creds, region):
    return srv.client("ecr", creds, region=region)


def password(srv, creds, region):
    [data] = ecr(srv, creds, region).get_authorization_token()["authorizationData"]
    return base64.b64decode(data["authorizationToken"]).decode().split(":", 1)[1]


def host(srv, account, region):
    """The registry host of `account` in `region` (the default address for the default
    account in the default Region)."""
    if account == srv.account and region == SOURCE_REGION:
        return f"127.0.0.1:{srv.port}"
    middle = "ecr" if region == SOURCE_REGION else f"ecr.{region}"
    return f"{account}.dkr.{middle}.localhost:{srv.port}"


def skopeo(srv, *args, check=True):
    """skopeo with the server as its HTTP proxy (so any registry host name reaches it)."""
    env = {**os.environ, "HTTP_PROXY": srv.url, "http_proxy": srv.url, "NO_PROXY": "", "no_proxy": ""}
    p = subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True, text=True,
                       timeout=120, env=env)
    if check:
        assert p.returncode == 0, f"skopeo {' '.join(args)} failed:\n{p.stderr}"
    return p


def push(srv, creds, region, repo, tag, tmp_path, img=None):
    """Push a new image (or `img`) as `creds` into its registry in `region`; returns it."""
    img = img or make_image(layers=2)
    layout = tmp_path / unique("layout")
    write_oci_layout(layout, {tag: img})
    skopeo(srv, "copy", "--dest-tls-verify=false", "--dest-creds", f"AWS:{password(srv, creds, region)}",
           f"oci:{layout}:{tag}", f"docker://{host(srv, creds.account_id, region)}/{repo}:{tag}")
    return img


def pulled(srv, creds, account, region, repo, ref, tmp_path, check=True):
    """The digest skopeo pulls from `account`'s registry in `region` as `creds` (None if it fails)."""
    digest_file = tmp_path / unique("digest")
    sep = "@" if ref.startswith("sha256:") else ":"
    p = skopeo(srv, "copy", "--src-tls-verify=false", "--src-creds", f"AWS:{password(srv, creds, region)}",
               "--digestfile", str(digest_file), f"docker://{host(srv, account, region)}/{repo}{sep}{ref}",
               f"oci:{tmp_path / unique('pulled')}:x", check=check)
    return digest_file.read_text().strip() if p.returncode == 0 else None


def configure(srv, creds, *rules):
    """put-replication-configuration in the source Region: with the aws CLI, or with boto3
    where a rule has deleteReplication (newer than the CLI's model)."""
    config = {"rules": list(rules)}
    if any("deleteReplication" in r for r in rules):
        out = ecr(srv, creds, SOURCE_REGION).put_replication_configuration(replicationConfiguration=config)
    else:
        out = srv.cli(creds, "ecr", "put-replication-configuration", "--region", SOURCE_REGION,
                      "--replication-configuration", json.dumps(config))
    assert out["replicationConfiguration"]["rules"][0]["destinations"] == rules[0]["destinations"]
    return config


def to(account, deletes=None, prefixes=()):
    rule = {"destinations": [{"region": DEST_REGION, "registryId": account}]}
    if prefixes:
        rule["repositoryFilters"] = [{"filter": p, "filterType": "PREFIX_MATCH"} for p in prefixes]
    if deletes is not None:
        rule["deleteReplication"] = {"enabled": deletes}
    return rule


def registry_policy(srv, creds, text):
    srv.cli(creds, "ecr", "put-registry-policy", "--region", DEST_REGION, "--policy-text", text)


def settled(srv, creds, repo, ref, timeout=30):
    """Wait until no destination of the image is IN_PROGRESS; its statuses by registry id."""
    image_id = f"imageDigest={ref}" if ref.startswith("sha256:") else f"imageTag={ref}"
    deadline = time.time() + timeout
    while True:
        out = srv.cli(creds, "ecr", "describe-image-replication-status", "--region", SOURCE_REGION,
                      "--repository-name", repo, "--image-id", image_id)
        statuses = out["replicationStatuses"]
        if statuses and all(s["status"] != "IN_PROGRESS" for s in statuses):
            return {s["registryId"]: s for s in statuses}
        assert time.time() < deadline, f"replication of {repo}:{ref} still in progress: {statuses}"
        time.sleep(0.1)


def create_repo(srv, creds, region, name):
    ecr(srv, creds, region).create_repository(repositoryName=name)


def names(srv, creds, region):
    return {r["repositoryName"] for r in ecr(srv, creds, region).describe_repositories()["repositories"]}


# ---------------------------------------------------------------------------------------
# Seed 003, example by example
# ---------------------------------------------------------------------------------------

def test_003_replicate_all_repositories_of_the_source_root(srv, accounts, tmp_path):
    a, b, _ = accounts
    registry_policy(srv, b, seed_text("003-registry-replicate-all",
                                      **{"111111111111": b.account_id, "222222222222": a.account_id}))
    configure(srv, a, to(b.account_id, deletes=False))
    out = srv.cli(a, "ecr", "describe-registry", "--region", SOURCE_REGION)
    assert out["replicationConfiguration"]["rules"][0]["destinations"] == [
        {"region": DEST_REGION, "registryId": b.account_id}]
    repo = unique("app")
    create_repo(srv, a, SOURCE_REGION, repo)
    img = push(srv, a, SOURCE_REGION, repo, "v1", tmp_path)
    status = settled(srv, a, repo, "v1")
    assert status[b.account_id]["status"] == "COMPLETE" and status[b.account_id]["region"] == DEST_REGION
    # the destination made the repository and holds the same digest, tag included
    assert repo in names(srv, b, DEST_REGION)
    assert pulled(srv, b, b.account_id, DEST_REGION, repo, "v1", tmp_path) == img.digest
    # a tag moved at the source moves at the destination
    img2 = push(srv, a, SOURCE_REGION, repo, "v1", tmp_path)
    assert settled(srv, a, repo, "v1")[b.account_id]["status"] == "COMPLETE"
    assert pulled(srv, b, b.account_id, DEST_REGION, repo, "v1", tmp_path) == img2.digest
    # without deleteReplication, a deletion at the source stays there: once a later push
    # (delivered in order, after anything the deletion could have recorded) has arrived,
    # the destination still has the image and its tag
    ecr(srv, a, SOURCE_REGION).batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}])
    marker = push(srv, a, SOURCE_REGION, repo, "marker", tmp_path)
    assert settled(srv, a, repo, "marker")[b.account_id]["status"] == "COMPLETE"
    there = ecr(srv, b, DEST_REGION).list_images(repositoryName=repo)["imageIds"]
    assert {"imageDigest": img2.digest, "imageTag": "v1"} in there
    assert {"imageDigest": marker.digest, "imageTag": "marker"} in there
    assert img.digest in {i["imageDigest"] for i in there}


def test_003_allow_multiple_accounts(srv, accounts, tmp_path):
    a, b, c = accounts
    registry_policy(srv, b, seed_text("003-registry-multiple-accounts", **{
        "111111111111": b.account_id, "222222222222": a.account_id, "333333333333": c.account_id}))
    repo_a, repo_c = unique("from-a"), unique("from-c")
    for creds, repo in ((a, repo_a), (c, repo_c)):
        configure(srv, creds, to(b.account_id))
        create_repo(srv, creds, SOURCE_REGION, repo)
    img_a = push(srv, a, SOURCE_REGION, repo_a, "v1", tmp_path)
    img_c = push(srv, c, SOURCE_REGION, repo_c, "v1", tmp_path)
    assert settled(srv, a, repo_a, "v1")[b.account_id]["status"] == "COMPLETE"
    assert settled(srv, c, repo_c, "v1")[b.account_id]["status"] == "COMPLETE"
    assert pulled(srv, b, b.account_id, DEST_REGION, repo_a, "v1", tmp_path) == img_a.digest
    assert pulled(srv, b, b.account_id, DEST_REGION, repo_c, "v1", tmp_path) == img_c.digest


def test_003_only_repositories_starting_with_prod(srv, accounts, tmp_path):
    a, b, _ = accounts
    registry_policy(srv, b, seed_text("003-registry-prod-prefix",
                                      **{"111111111111": b.account_id, "222222222222": a.account_id}))
    configure(srv, a, to(b.account_id))
    suffix = unique("x")
    prod, dev = f"prod-api-{suffix}", f"dev-api-{suffix}"
    for repo in (prod, dev):
        create_repo(srv, a, SOURCE_REGION, repo)
    img = push(srv, a, SOURCE_REGION, prod, "v1", tmp_path)
    push(srv, a, SOURCE_REGION, dev, "v1", tmp_path)
    assert settled(srv, a, prod, "v1")[b.account_id]["status"] == "COMPLETE"
    failed = settled(srv, a, dev, "v1")[b.account_id]
    assert failed["status"] == "FAILED"
    assert failed["failureCode"].startswith("REPLICATION_NOT_ALLOWED") and "ecr:ReplicateImage" in failed["failureCode"]
    there = names(srv, b, DEST_REGION)
    assert prod in there and dev not in there
    assert pulled(srv, b, b.account_id, DEST_REGION, prod, "v1", tmp_path) == img.digest


def backfill(srv, creds, region, account, timeout=60):
    """start-replication-backfill (aws CLI) of `creds`' registry in the source Region to
    `account` in `region`; waits for it to end and returns it as listed."""
    started = srv.cli(creds, "ecr", "start-replication-backfill", "--region", SOURCE_REGION,
                      "--destination", f"region={region},registryId={account}", newer_ecr=True)
    bid = started["replicationBackfillId"]
    deadline = time.time() + timeout
    while True:
        [b] = [x for x in srv.cli(creds, "ecr", "list-replication-backfills", "--region", SOURCE_REGION,
                                  newer_ecr=True)["backfills"] if x["replicationBackfillId"] == bid]
        if b["status"] not in ("PREPARING", "IN_PROGRESS", "STOPPING"):
            return b
        assert time.time() < deadline, b
        time.sleep(0.2)


def test_003_without_create_repository_the_destination_makes_its_own(srv, accounts, tmp_path):
    """Seed 003's fourth example: without ecr:CreateRepository the destination creates the
    repository itself; a backfill then replicates the image that failed (v1 itself)."""
    _, b, _ = accounts
    a = srv.account_create()  # a source of its own: the backfill copies its whole registry
    registry_policy(srv, b, seed_text("003-registry-replicate-only",
                                      **{"111111111111": b.account_id, "222222222222": a.account_id}))
    configure(srv, a, to(b.account_id))
    repo = unique("made-by-hand")
    create_repo(srv, a, SOURCE_REGION, repo)
    img = push(srv, a, SOURCE_REGION, repo, "v1", tmp_path)
    failed = settled(srv, a, repo, "v1")[b.account_id]
    assert failed["status"] == "FAILED"
    assert failed["failureCode"].startswith("REPOSITORY_NOT_FOUND") and "ecr:CreateRepository" in failed["failureCode"]
    assert repo not in names(srv, b, DEST_REGION)
    # "you need to create repositories with the same name within your account", then the
    # image that failed is replicated by a backfill
    create_repo(srv, b, DEST_REGION, repo)
    done = backfill(srv, a, DEST_REGION, b.account_id)
    assert done["status"] == "COMPLETE", done
    status = settled(srv, a, repo, "v1")[b.account_id]
    assert status["status"] == "COMPLETE" and status.get("failureCode") is None, status
    assert pulled(srv, b, b.account_id, DEST_REGION, repo, "v1", tmp_path) == img.digest
    # and later pushes replicate as they come
    push(srv, a, SOURCE_REGION, repo, "v2", tmp_path, img=img)
    assert settled(srv, a, repo, "v2")[b.account_id]["status"] == "COMPLETE"
    assert pulled(srv, b, b.account_id, DEST_REGION, repo, "v2", tmp_path) == img.digest


def test_a_registry_policy_that_does_not_name_the_source_replicates_nothing(srv, accounts, tmp_path):
    a, b, c = accounts
    # B trusts C only
    registry_policy(srv, b, seed_text("003-registry-replicate-all",
                                      **{"111111111111": b.account_id, "222222222222": c.account_id}))
    configure(srv, a, to(b.account_id))
    repo = unique("unnamed")
    create_repo(srv, a, SOURCE_REGION, repo)
    push(srv, a, SOURCE_REGION, repo, "v1", tmp_path)
    failed = settled(srv, a, repo, "v1")[b.account_id]
    assert failed["status"] == "FAILED" and failed["failureCode"].startswith("REPLICATION_NOT_ALLOWED")
    assert repo not in names(srv, b, DEST_REGION)


# ---------------------------------------------------------------------------------------
# Within one account: another Region, deletions replicated
# ---------------------------------------------------------------------------------------

def test_same_account_other_region_with_delete_replication(srv, accounts, tmp_path):
    _, _, c = accounts
    # no registry policy needed within one account
    configure(srv, c, to(c.account_id, deletes=True))
    repo = unique("mirrored")
    create_repo(srv, c, SOURCE_REGION, repo)
    # two images sharing a layer
    first = push(srv, c, SOURCE_REGION, repo, "one", tmp_path)
    second = make_image(layers=1)
    second.layers.append(first.layers[0])
    manifest = json.loads(second.manifest)
    manifest["layers"].append(json.loads(first.manifest)["layers"][0])
    second.manifest = json.dumps(manifest, indent=1).encode()
    push(srv, c, SOURCE_REGION, repo, "two", tmp_path, img=second)
    for tag in ("one", "two"):
        assert settled(srv, c, repo, tag)[c.account_id]["status"] == "COMPLETE"
    assert pulled(srv, c, c.account_id, DEST_REGION, repo, "one", tmp_path) == first.digest
    assert pulled(srv, c, c.account_id, DEST_REGION, repo, "two", tmp_path) == second.digest
    # deletions replicate: a tag, then an image
    west = ecr(srv, c, DEST_REGION)
    ecr(srv, c, SOURCE_REGION).batch_delete_image(repositoryName=repo, imageIds=[{"imageDigest": first.digest}])
    deadline = time.time() + 30
    while any(i["imageDigest"] == first.digest for i in west.list_images(repositoryName=repo)["imageIds"]):
        assert time.time() < deadline, "the deletion did not reach the destination"
        time.sleep(0.1)
    tags = {i.get("imageTag") for i in west.list_images(repositoryName=repo)["imageIds"]}
    assert tags == {"two"}
    # a tag removed (batch-delete-image by tag) is removed there; the image stays while
    # it has another tag, and goes with its last one, as at the source
    push(srv, c, SOURCE_REGION, repo, "also", tmp_path, img=second)
    assert settled(srv, c, repo, "also")[c.account_id]["status"] == "COMPLETE"
    assert sorted(i.get("imageTag") for i in west.list_images(repositoryName=repo)["imageIds"]) == ["also", "two"]
    east = ecr(srv, c, SOURCE_REGION)
    east.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "also"}])
    until("the tag removal reaches the destination", 30, lambda: west.list_images(
        repositoryName=repo)["imageIds"] == [{"imageDigest": second.digest, "imageTag": "two"}])
    east.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "two"}])
    until("the last tag's removal deletes the image there too", 30,
          lambda: west.list_images(repositoryName=repo)["imageIds"] == [])


def test_a_lifecycle_expiry_replicates_as_a_deletion(srv, accounts):
    """An image a lifecycle policy expires at the source is deleted at a destination whose
    rule has deleteReplication on, as a deletion by a caller would be."""
    _, _, c = accounts
    configure(srv, c, to(c.account_id, deletes=True))
    repo = unique("expiring")
    create_repo(srv, c, SOURCE_REGION, repo)
    reg = Registry(srv, password(srv, c, SOURCE_REGION), host=host(srv, c.account_id, SOURCE_REGION))
    older, newer, kept = make_image(layers=1), make_image(layers=1), make_image(layers=1)
    for tag, img in (("build-1", older), ("build-2", newer), ("release", kept)):
        reg.push_image(repo, img, tag)
        assert settled(srv, c, repo, tag)[c.account_id]["status"] == "COMPLETE"
    west = ecr(srv, c, DEST_REGION)
    assert len(west.list_images(repositoryName=repo)["imageIds"]) == 3
    east = ecr(srv, c, SOURCE_REGION)
    east.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=json.dumps({"rules": [{
        "rulePriority": 1, "description": "one build",
        "selection": {"tagStatus": "tagged", "tagPrefixList": ["build-"],
                      "countType": "imageCountMoreThan", "countNumber": 1},
        "action": {"type": "expire"}}]}))
    p = subprocess.run([BIN, "lifecycle", "run", "--data-dir", str(srv.data_dir),
                        "--config", str(srv.config_path)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert {i["imageDigest"] for i in east.list_images(repositoryName=repo)["imageIds"]} == {
        newer.digest, kept.digest}
    until("the expiry reaches the destination", 30, lambda: sorted(
        (i["imageDigest"], i["imageTag"]) for i in west.list_images(repositoryName=repo)["imageIds"]) == sorted(
        [(newer.digest, "build-2"), (kept.digest, "release")]))


# ---------------------------------------------------------------------------------------
# The configuration's checks and creation templates
# ---------------------------------------------------------------------------------------

def test_configuration_is_checked_as_ecr_checks_it(srv, accounts):
    a, _, _ = accounts
    same = {"rules": [{"destinations": [{"region": SOURCE_REGION, "registryId": a.account_id}]}]}
    e = srv.cli_error(a, "ecr", "put-replication-configuration", "--region", SOURCE_REGION,
                      "--replication-configuration", json.dumps(same))
    assert e.code == "InvalidParameterException"
    bad = {"rules": [{"destinations": [{"region": DEST_REGION, "registryId": "12"}]}]}
    code, msg, _ = client_error(ecr(srv, a, SOURCE_REGION).put_replication_configuration,
                                replicationConfiguration=bad)
    assert code in ("ValidationException", "InvalidParameterException") and "registryId" in msg


def pull_policy(account):
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "pull", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
        "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]}]})


def keep_policy(count):
    return json.dumps({"rules": [{
        "rulePriority": 1, "description": f"keep {count}",
        "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": count},
        "action": {"type": "expire"}}]})


def made_by_replication(srv, a, b, repo, tmp_path):
    """Push `repo` at A's source, replicated to B, which makes it; B's repository as described."""
    create_repo(srv, a, SOURCE_REGION, repo)
    push(srv, a, SOURCE_REGION, repo, "v1", tmp_path)
    assert settled(srv, a, repo, "v1")[b.account_id]["status"] == "COMPLETE"
    [made] = ecr(srv, b, DEST_REGION).describe_repositories(repositoryNames=[repo])["repositories"]
    return made


def settings_of(srv, creds, made):
    """(tag mutability, repository policy, lifecycle policy, tags) of a repository."""
    west = ecr(srv, creds, DEST_REGION)
    name = made["repositoryName"]
    try:
        policy = json.loads(west.get_repository_policy(repositoryName=name)["policyText"])
    except west.exceptions.RepositoryPolicyNotFoundException:
        policy = None
    try:
        lifecycle = json.loads(west.get_lifecycle_policy(repositoryName=name)["lifecyclePolicyText"])
    except west.exceptions.LifecyclePolicyNotFoundException:
        lifecycle = None
    tags = west.list_tags_for_resource(resourceArn=made["repositoryArn"])["tags"]
    return made["imageTagMutability"], policy, lifecycle, sorted((t["Key"], t["Value"]) for t in tags)


def test_a_replication_template_shapes_the_repository_it_makes(srv, accounts, tmp_path):
    """The destination's REPLICATION template gives the repository replication makes its
    tag mutability, repository policy, lifecycle policy and tags (aws CLI throughout);
    UpdateRepositoryCreationTemplate changes what later repositories get; a ROOT template
    shapes the names no other template holds."""
    a, b, _ = accounts
    registry_policy(srv, b, seed_text("003-registry-replicate-all",
                                      **{"111111111111": b.account_id, "222222222222": a.account_id}))
    prefix = unique("tpl")
    out = srv.cli(b, "ecr", "create-repository-creation-template", "--region", DEST_REGION,
                  "--prefix", prefix, "--applied-for", "REPLICATION",
                  "--image-tag-mutability", "IMMUTABLE",
                  "--repository-policy", pull_policy(a.account_id),
                  "--lifecycle-policy", keep_policy(5),
                  "--resource-tags", "Key=origin,Value=replication", "Key=team,Value=west")
    assert out["repositoryCreationTemplate"]["prefix"] == prefix
    listed = srv.cli(b, "ecr", "describe-repository-creation-templates", "--region", DEST_REGION,
                     "--prefixes", prefix)["repositoryCreationTemplates"]
    assert [t["imageTagMutability"] for t in listed] == ["IMMUTABLE"]
    configure(srv, a, to(b.account_id))
    made = made_by_replication(srv, a, b, f"{prefix}/service", tmp_path)
    assert settings_of(srv, b, made) == (
        "IMMUTABLE", json.loads(pull_policy(a.account_id)), json.loads(keep_policy(5)),
        [("origin", "replication"), ("team", "west")])
    # the policy it was given is in force: A may now pull from B's repository
    assert pulled(srv, a, b.account_id, DEST_REGION, f"{prefix}/service", "v1", tmp_path)

    # UpdateRepositoryCreationTemplate (aws CLI): repositories made afterwards follow it;
    # the one made before keeps what it was given
    out = srv.cli(b, "ecr", "update-repository-creation-template", "--region", DEST_REGION,
                  "--prefix", prefix, "--image-tag-mutability", "MUTABLE",
                  "--lifecycle-policy", keep_policy(2), "--resource-tags", "Key=origin,Value=updated")
    assert out["repositoryCreationTemplate"]["imageTagMutability"] == "MUTABLE"
    [t] = srv.cli(b, "ecr", "describe-repository-creation-templates", "--region", DEST_REGION,
                  "--prefixes", prefix)["repositoryCreationTemplates"]
    assert t["imageTagMutability"] == "MUTABLE" and json.loads(t["lifecyclePolicy"]) == json.loads(keep_policy(2))
    assert t["resourceTags"] == [{"Key": "origin", "Value": "updated"}]
    made2 = made_by_replication(srv, a, b, f"{prefix}/worker", tmp_path)
    mutability, policy, lifecycle, tags = settings_of(srv, b, made2)
    assert (mutability, lifecycle, tags) == ("MUTABLE", json.loads(keep_policy(2)), [("origin", "updated")])
    assert policy == json.loads(pull_policy(a.account_id))  # not updated: kept
    assert settings_of(srv, b, made)[0] == "IMMUTABLE"
    e = srv.cli_error(b, "ecr", "update-repository-creation-template", "--region", DEST_REGION,
                      "--prefix", unique("none"), "--image-tag-mutability", "MUTABLE")
    assert e.code == "TemplateNotFoundException"

    # ROOT: every name no other template's prefix holds
    srv.cli(b, "ecr", "create-repository-creation-template", "--region", DEST_REGION,
            "--prefix", "ROOT", "--applied-for", "REPLICATION", "--image-tag-mutability", "IMMUTABLE",
            "--lifecycle-policy", keep_policy(7), "--resource-tags", "Key=origin,Value=root")
    try:
        rooted = made_by_replication(srv, a, b, unique("rooted") + "/api", tmp_path)
        assert settings_of(srv, b, rooted) == ("IMMUTABLE", None, json.loads(keep_policy(7)),
                                               [("origin", "root")])
        # a name the prefix holds still takes the prefix's template, not ROOT
        made3 = made_by_replication(srv, a, b, f"{prefix}/third", tmp_path)
        assert settings_of(srv, b, made3)[3] == [("origin", "updated")]
    finally:
        srv.cli(b, "ecr", "delete-repository-creation-template", "--region", DEST_REGION, "--prefix", "ROOT")

    e = srv.cli_error(b, "ecr", "create-repository-creation-template", "--region", DEST_REGION,
                      "--prefix", prefix, "--applied-for", "REPLICATION")
    assert e.code == "TemplateAlreadyExistsException"
    srv.cli(b, "ecr", "delete-repository-creation-template", "--region", DEST_REGION, "--prefix", prefix)
    e = srv.cli_error(b, "ecr", "delete-repository-creation-template", "--region", DEST_REGION,
                      "--prefix", prefix)
    assert e.code == "TemplateNotFoundException"


def test_status_of_an_image_never_replicated_and_of_one_not_there(srv, accounts, tmp_path):
    a, _, _ = accounts
    srv.cli(a, "ecr", "put-replication-configuration", "--region", SOURCE_REGION,
            "--replication-configuration", json.dumps({"rules": []}))
    repo = unique("quiet")
    create_repo(srv, a, SOURCE_REGION, repo)
    push(srv, a, SOURCE_REGION, repo, "v1", tmp_path)
    out = srv.cli(a, "ecr", "describe-image-replication-status", "--region", SOURCE_REGION,
                  "--repository-name", repo, "--image-id", "imageTag=v1")
    assert out["replicationStatuses"] == []
    e = srv.cli_error(a, "ecr", "describe-image-replication-status", "--region", SOURCE_REGION,
                      "--repository-name", repo, "--image-id", "imageTag=absent")
    assert e.code == "ImageNotFoundException"


def test_berth_replication_status_summarizes_the_outbox(srv, accounts, tmp_path):
    a, b, c = accounts
    # one that fails (B's policy trusts C only) and nothing left pending
    registry_policy(srv, b, seed_text("003-registry-replicate-all",
                                      **{"111111111111": b.account_id, "222222222222": c.account_id}))
    configure(srv, a, to(b.account_id))
    repo = unique("summary")
    create_repo(srv, a, SOURCE_REGION, repo)
    img = push(srv, a, SOURCE_REGION, repo, "v1", tmp_path)
    assert settled(srv, a, repo, "v1")[b.account_id]["status"] == "FAILED"
    p = subprocess.run([BIN, "replication", "status", "--json", "--config", str(srv.config_path),
                        "--data-dir", str(srv.data_dir)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert s["pending"] == 0 and s["oldestPendingSeconds"] is None
    assert s["complete"] >= 1 and s["failed"] >= 1
    assert s["lastFailure"]["status"] == "FAILED"
    assert s["lastFailure"]["failureCode"].startswith("REPLICATION_NOT_ALLOWED")
    assert img.digest in s["lastFailure"]["replication"]
    p = subprocess.run([BIN, "replication", "status", "--config", str(srv.config_path),
                        "--data-dir", str(srv.data_dir)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "pending: 0" in p.stdout and "last failure:" in p.stdout, p.stdout


# ---------------------------------------------------------------------------------------
# Indexes, many pushes at once, and a kill -9 during delivery
# ---------------------------------------------------------------------------------------

def index_of(*images):
    return json.dumps({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": i.digest, "size": len(i.manifest),
                       "platform": {"os": "linux", "architecture": arch}}
                      for i, arch in zip(images, ("amd64", "arm64"))],
    }).encode()


def wait_all(srv, creds, repo, refs, timeout=60):
    """Every ref's replication settled; their statuses."""
    return {ref: settled(srv, creds, repo, ref, timeout) for ref in refs}


def test_a_multi_arch_index_arrives_whole(srv, accounts):
    _, _, c = accounts
    configure(srv, c, to(c.account_id))
    repo = unique("multi")
    create_repo(srv, c, SOURCE_REGION, repo)
    reg = Registry(srv, password(srv, c, SOURCE_REGION), host=host(srv, c.account_id, SOURCE_REGION))
    amd, arm = make_image(layers=2), make_image(layers=2, arch="arm64")
    for img in (amd, arm):
        reg.push_image(repo, img)
    index = index_of(amd, arm)
    assert reg.put_manifest(repo, "multi", index, OCI_INDEX).status_code == 201
    assert settled(srv, c, repo, "multi")[c.account_id]["status"] == "COMPLETE"
    west = Registry(srv, password(srv, c, DEST_REGION), host=host(srv, c.account_id, DEST_REGION))
    assert west.get_manifest(repo, "multi").content == index
    for img in (amd, arm):
        assert west.get_manifest(repo, img.digest).content == img.manifest
        for d, b in img.blobs:
            assert west.get_blob(repo, d).content == b


def replication_status(s):
    """`berth replication status --json` of server `s`."""
    p = subprocess.run([BIN, "replication", "status", "--json", "--config", str(s.config_path),
                        "--data-dir", str(s.data_dir)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_many_pushes_at_once_and_a_kill_during_delivery(tmp_path_factory):
    """50 pushes at once (50 clients) under replication to two destinations — another Region
    of the same deployment, and a Region another deployment serves, reached through a
    proxy that holds the link so deliveries are observably pending — then the source
    killed (-9) with deliveries pending and one in flight, and restarted: every image
    arrives at both destinations exactly once, with its digest and its tag."""
    far = "eu-west-1"
    base = tmp_path_factory.mktemp("burst-peer")
    key = base / "peer.key"
    key.write_bytes(os.urandom(32))
    d = Server(base / "far" / "data", extra_config=(
        f'region = "{far}"\n'
        f'replication_peers = [{{ region = "{SOURCE_REGION}", endpoint = "http://127.0.0.1:9", '
        f'key_file = "{key}" }}]\n'))
    d.start()
    proxy = HoldingProxy(d.port, hold_after=0)
    s = start_server(tmp_path_factory, "replication-crash", extra_config=(
        f'regions = ["{SOURCE_REGION}", "{DEST_REGION}"]\n'
        f'replication_peers = [{{ region = "{far}", endpoint = "{proxy.url}", key_file = "{key}" }}]\n'))
    try:
        a = s.root
        d.cli(d.root, "ecr", "put-registry-policy", "--region", far, "--policy-text",
              seed_text("003-registry-replicate-all", **{"111111111111": d.account,
                                                         "222222222222": a.account_id, "us-west-2": far}))
        ecr(s, a, SOURCE_REGION).put_replication_configuration(replicationConfiguration={"rules": [
            {"destinations": [{"region": DEST_REGION, "registryId": a.account_id},
                              {"region": far, "registryId": d.account}]}]})
        repo = unique("burst")
        create_repo(s, a, SOURCE_REGION, repo)
        pw = password(s, a, SOURCE_REGION)
        images = {f"t{i}": make_image(layers=1, size=1024) for i in range(50)}
        shared = make_image(layers=1, size=1024)  # every image also holds a layer of this one
        for img in images.values():
            img.layers.append(shared.layers[0])
            m = json.loads(img.manifest)
            m["layers"].append(json.loads(shared.manifest)["layers"][0])
            img.manifest = json.dumps(m, indent=1).encode()
        with ThreadPoolExecutor(50) as pool:
            list(pool.map(lambda kv: Registry(s, pw).push_image(repo, kv[1], kv[0]), images.items()))
        # the link holds the first delivery to the far deployment; the rest wait behind it
        assert proxy.holding.wait(60), "no delivery reached the far deployment"
        status = replication_status(s)
        assert status["pending"] > 0 and status["oldestPendingSeconds"] is not None, status
        east = ecr(s, a, SOURCE_REGION)
        pending = [tag for tag in images if any(
            x["status"] == "IN_PROGRESS" for x in east.describe_image_replication_status(
                repositoryName=repo, imageId={"imageTag": tag})["replicationStatuses"])]
        assert pending, "no image is pending"
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait()
        s.proc = None
        proxy.release()
        s.start()
        east = ecr(s, a, SOURCE_REGION)

        def statuses(tag):
            return sorted((x["region"], x["registryId"], x["status"]) for x in east.describe_image_replication_status(
                repositoryName=repo, imageId={"imageTag": tag})["replicationStatuses"])

        until("every image is replicated", 180, lambda: all(
            all(st != "IN_PROGRESS" for _, _, st in statuses(tag)) for tag in images))
        for tag in images:
            assert statuses(tag) == sorted([(DEST_REGION, a.account_id, "COMPLETE"),
                                            (far, d.account, "COMPLETE")]), tag
        for region, where in ((DEST_REGION, ecr(s, a, DEST_REGION)), (far, ecr(d, d.root, far))):
            got = {}
            for page in where.get_paginator("list_images").paginate(repositoryName=repo):
                for i in page["imageIds"]:
                    got.setdefault(i["imageDigest"], []).append(i.get("imageTag"))
            assert got == {img.digest: [tag] for tag, img in images.items()}, region
        # the bytes are those pushed: a manifest read back at the far end has the digest
        far_reg = Registry(d, far_password(d, far))
        for tag, img in list(images.items())[:5]:
            r = far_reg.get_manifest(repo, tag)
            assert r.status_code == 200 and r.content == img.manifest, tag
            assert r.headers["Docker-Content-Digest"] == img.digest
        assert replication_status(s)["pending"] == 0
    finally:
        proxy.close()
        s.stop()
        d.stop()


def far_password(d, region):
    [data] = d.client("ecr", d.root, region=region).get_authorization_token()["authorizationData"]
    return base64.b64decode(data["authorizationToken"]).decode().split(":", 1)[1]


# ---------------------------------------------------------------------------------------
# Backfills: what was pushed before the rule, on request
# ---------------------------------------------------------------------------------------

def test_a_backfill_replicates_images_pushed_before_the_rule(srv, accounts, tmp_path):
    _, _, c = accounts
    east = ecr(srv, c, SOURCE_REGION)
    east.put_replication_configuration(replicationConfiguration={"rules": []})
    repo = unique("before-rule")
    create_repo(srv, c, SOURCE_REGION, repo)
    reg = Registry(srv, password(srv, c, SOURCE_REGION), host=host(srv, c.account_id, SOURCE_REGION))
    tagged, twice, untagged = make_image(layers=1), make_image(layers=1), make_image(layers=1)
    reg.push_image(repo, tagged, "v1")
    reg.push_image(repo, twice, "a")
    assert reg.put_manifest(repo, "b", twice.manifest).status_code == 201
    reg.push_image(repo, untagged)
    # a destination not in the configuration cannot be backfilled
    code, _, _ = client_error(east.start_replication_backfill,
                              destination={"region": DEST_REGION, "registryId": c.account_id})
    assert code == "InvalidParameterException"
    east.put_replication_configuration(replicationConfiguration={"rules": [to(c.account_id)]})
    # the rule replicates nothing already there
    west = ecr(srv, c, DEST_REGION)
    assert repo not in names(srv, c, DEST_REGION)
    started = east.start_replication_backfill(destination={"region": DEST_REGION,
                                                           "registryId": c.account_id})
    bid = started["replicationBackfillId"]
    assert started["status"] == "PREPARING" and started["registryId"] == c.account_id
    deadline = time.time() + 30
    while True:
        [b] = [x for x in east.list_replication_backfills()["backfills"] if x["replicationBackfillId"] == bid]
        if b["status"] not in ("PREPARING", "IN_PROGRESS"):
            break
        assert time.time() < deadline, b
        time.sleep(0.1)
    assert b["status"] == "COMPLETE", b
    # every image of every repository replicated there (this module's other repositories
    # of C's included), each image and tag once: here v1, a, b, and the untagged image
    progress = b["progress"]
    assert progress["completedReplicationCount"] == progress["totalReplicationCount"] >= 4
    out = east.describe_replication_backfill_results(replicationBackfillId=bid)
    assert len(out["results"]) == progress["totalReplicationCount"]
    results = [(r["imageId"].get("imageTag"), r["status"]) for r in out["results"]
               if r["repositoryName"] == repo]
    assert len(results) == 4 and set(results) == {
        ("v1", "COMPLETE"), ("a", "COMPLETE"), ("b", "COMPLETE"), (None, "COMPLETE")}
    got = {(i["imageDigest"], i.get("imageTag")) for i in west.list_images(repositoryName=repo)["imageIds"]}
    assert got == {(tagged.digest, "v1"), (twice.digest, "a"), (twice.digest, "b"), (untagged.digest, None)}
    assert pulled(srv, c, c.account_id, DEST_REGION, repo, "b", tmp_path) == twice.digest
    # maxResults out of the model's range: a ValidationException, as any range constraint
    code, msg, _ = client_error(east.list_replication_backfills, maxResults=51)
    assert code == "ValidationException" and "less than or equal to 50" in msg, msg
    code, msg, _ = client_error(east.describe_replication_backfill_results, replicationBackfillId=bid,
                                maxResults=1001)
    assert code == "ValidationException" and "less than or equal to 1000" in msg, msg
    # an ended backfill cannot be stopped; an unknown one is not found
    code, _, _ = client_error(east.stop_replication_backfill, replicationBackfillId=bid)
    assert code == "ReplicationBackfillInvalidStatusException"
    code, _, _ = client_error(east.describe_replication_backfill_results,
                              replicationBackfillId="00000000-0000-4000-8000-000000000000")
    assert code == "ReplicationBackfillNotFoundException"


def test_a_create_on_push_template_makes_the_repository_a_push_names(srv, accounts, tmp_path):
    """ECR's create on push: with a CREATE_ON_PUSH template matching the name, a push to a
    repository that does not exist makes it, with the template's settings and tags; a name
    no such template matches stays unknown (create_on_push is off here)."""
    _, _, c = accounts
    east = ecr(srv, c, SOURCE_REGION)
    prefix = unique("auto")
    east.create_repository_creation_template(
        prefix=prefix, appliedFor=["CREATE_ON_PUSH"], imageTagMutability="IMMUTABLE",
        resourceTags=[{"Key": "made-by", "Value": "push"}])
    repo = f"{prefix}/service"
    img = push(srv, c, SOURCE_REGION, repo, "v1", tmp_path)
    [made] = east.describe_repositories(repositoryNames=[repo])["repositories"]
    assert made["imageTagMutability"] == "IMMUTABLE"
    assert east.list_tags_for_resource(resourceArn=made["repositoryArn"])["tags"] == [
        {"Key": "made-by", "Value": "push"}]
    assert east.list_images(repositoryName=repo)["imageIds"] == [{"imageDigest": img.digest, "imageTag": "v1"}]
    reg = Registry(srv, password(srv, c, SOURCE_REGION), host=host(srv, c.account_id, SOURCE_REGION))
    r = reg.start_upload(unique("no-template") + "/x")
    assert r.status_code == 404 and oci_error(r)[1] == "NAME_UNKNOWN"
