"""One deployment serving two Regions (`regions = ["us-east-1", "us-west-2"]`): one registry
per account per Region, as ECR has. The ECR API's Region comes from the SigV4 scope, the
registry's from its host name (`<account>.dkr.ecr.<region>.localhost`) or, on a host that
names none, from the registry password, which is good in its own Region only. A data
directory from before Regions keeps its repositories where they were. Real HTTP on
loopback, boto3, the aws CLI and skopeo against `berth serve`."""

import base64
import json

import pytest

from berth import (Registry, client_error, doc, make_image, oci_error, skopeo_pull, skopeo_push,
                   start_server, unique, write_oci_layout)

EAST, WEST = "us-east-1", "us-west-2"


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    s = start_server(tmp_path_factory, "regions", extra_config=f'regions = ["{EAST}", "{WEST}"]\n')
    yield s
    assert s.stop() == 0


def ecr(server, region, creds=None):
    return server.client("ecr", creds or server.root, region=region)


def login(server, region, creds=None):
    """(registry password, proxyEndpoint) from GetAuthorizationToken in `region`."""
    [data] = ecr(server, region, creds).get_authorization_token()["authorizationData"]
    user, password = base64.b64decode(data["authorizationToken"]).decode().split(":", 1)
    assert user == "AWS"
    return password, data["proxyEndpoint"]


def west_host(server):
    return f"{server.account}.dkr.ecr.{WEST}.localhost:{server.port}"


def test_one_name_in_two_regions_is_two_repositories(two, tmp_path):
    east, west = ecr(two, EAST), ecr(two, WEST)
    name, only_west = unique("app"), unique("west-only")
    e = east.create_repository(repositoryName=name)["repository"]
    w = west.create_repository(repositoryName=name)["repository"]
    west.create_repository(repositoryName=only_west)
    assert e["repositoryArn"] == f"arn:aws:ecr:{EAST}:{two.account}:repository/{name}"
    assert w["repositoryArn"] == f"arn:aws:ecr:{WEST}:{two.account}:repository/{name}"
    assert e["repositoryUri"] == f"127.0.0.1:{two.port}/{name}"
    assert w["repositoryUri"] == f"{west_host(two)}/{name}"

    def names(c):
        return {r["repositoryName"] for r in c.describe_repositories()["repositories"]}
    assert {name, only_west} <= names(west) and only_west not in names(east)
    code, msg, _ = client_error(east.list_images, repositoryName=only_west)
    assert code == "RepositoryNotFoundException" and only_west in msg

    # skopeo pushes into the West through the default address with the West's password
    west_pw, endpoint = login(two, WEST)
    assert endpoint == f"http://{west_host(two)}"
    img = make_image(layers=2)
    write_oci_layout(tmp_path / "src", {"v1": img})
    skopeo_push(two, west_pw, tmp_path / "src", "v1", name)
    assert west.list_images(repositoryName=name)["imageIds"] == [
        {"imageDigest": img.digest, "imageTag": "v1"}]
    assert east.list_images(repositoryName=name)["imageIds"] == []
    digest_file = tmp_path / "west.digest"
    skopeo_pull(two, west_pw, name, "v1", tmp_path / "pulled", extra=["--digestfile", str(digest_file)])
    assert digest_file.read_text().strip() == img.digest

    # the regional host name reaches the same registry, with the same password
    by_host = Registry(two, west_pw, host=west_host(two))
    assert by_host.get_manifest(name, "v1").content == img.manifest
    # the East's password is good in the East only, as ECR's are
    east_pw, endpoint = login(two, EAST)
    assert endpoint == f"http://127.0.0.1:{two.port}"
    status, code, msg = oci_error(Registry(two, east_pw, host=west_host(two)).get_manifest(name, "v1"))
    assert (status, code) == (403, "DENIED") and f"issued for region {EAST}" in msg
    # and on the default address it reaches the East's repository of that name: empty
    assert oci_error(Registry(two, east_pw).get_manifest(name, "v1"))[:2] == (404, "MANIFEST_UNKNOWN")

    # deleting the West's repository leaves the East's
    west.delete_repository(repositoryName=name, force=True)
    assert name in names(east) and name not in names(west)


def test_policies_and_tags_are_per_region(two):
    east, west = ecr(two, EAST), ecr(two, WEST)
    name = unique("policied")
    for c in (east, west):
        c.create_repository(repositoryName=name, tags=[{"Key": "site", "Value": c.meta.region_name}])
    policy = json.dumps(doc({"Sid": "ReplicationAccessCrossAccount", "Effect": "Allow",
                             "Principal": {"AWS": "arn:aws:iam::210987654321:root"},
                             "Action": ["ecr:CreateRepository", "ecr:ReplicateImage"],
                             "Resource": f"arn:aws:ecr:{WEST}:{two.account}:repository/*"}))
    west.put_registry_policy(policyText=policy)
    assert json.loads(west.get_registry_policy()["policyText"]) == json.loads(policy)
    assert client_error(east.get_registry_policy)[0] == "RegistryPolicyNotFoundException"
    # a registry policy naming the West's resources is refused in the East? No: ECR accepts
    # any resource text; it just never matches the East's repositories.
    repo_policy = json.dumps(doc({"Effect": "Allow", "Principal": "*", "Action": "ecr:ListImages"}))
    west.set_repository_policy(repositoryName=name, policyText=repo_policy)
    assert client_error(east.get_repository_policy, repositoryName=name)[0] == \
        "RepositoryPolicyNotFoundException"
    for c, region in ((east, EAST), (west, WEST)):
        arn = f"arn:aws:ecr:{region}:{two.account}:repository/{name}"
        assert c.list_tags_for_resource(resourceArn=arn)["tags"] == [{"Key": "site", "Value": region}]
    # an ARN of the other Region is not this Region's
    code, _, _ = client_error(east.list_tags_for_resource,
                              resourceArn=f"arn:aws:ecr:{WEST}:{two.account}:repository/{name}")
    assert code == "InvalidParameterException"


def test_a_region_not_served_is_refused(two):
    code, msg, status = client_error(ecr(two, "eu-central-1").describe_repositories)
    assert (code, status) == ("InvalidSignatureException", 400)
    assert "scoped to a valid Region" in msg and "eu-central-1" in msg
    # with the aws CLI too
    e = two.cli_error(two.root, "ecr", "describe-repositories", "--region", "ap-south-1")
    assert e.code == "InvalidSignatureException"
    # IAM still signs in us-east-1, served or not
    assert two.iam().get_user()["User"]["Arn"].endswith(":root")


def test_a_single_region_data_directory_keeps_its_repositories(tmp_path_factory, tmp_path):
    s = start_server(tmp_path_factory, "one-region")
    try:
        name = unique("before")
        ecr(s, EAST).create_repository(repositoryName=name)
        pw, _ = login(s, EAST)
        img = make_image(layers=1)
        write_oci_layout(tmp_path / "src", {"v1": img})
        skopeo_push(s, pw, tmp_path / "src", "v1", name)
        assert s.stop() == 0
        base = s.config_path.read_text()
        # now serving the West first: the repositories made before stay in the East
        s.config_path.write_text(base + f'regions = ["{WEST}", "{EAST}"]\n')
        s.start()
        assert [r["repositoryName"] for r in ecr(s, EAST).describe_repositories()["repositories"]] == [name]
        assert ecr(s, WEST).describe_repositories()["repositories"] == []
        pw, _ = login(s, EAST)
        assert Registry(s, pw).get_manifest(name, "v1").content == img.manifest
        assert s.stop() == 0
        # dropping the East would strand them: the server says so and does not start
        s.config_path.write_text(base + f'regions = ["{WEST}"]\n')
        with pytest.raises(RuntimeError) as e:
            s.start()
        assert f"first served in Region {EAST}" in str(e.value)
    finally:
        s.stop()


def test_an_upload_session_is_continued_only_in_its_region(two):
    name = unique("sessions")
    for region in (EAST, WEST):
        ecr(two, region).create_repository(repositoryName=name)
    west_pw, _ = login(two, WEST)
    east_pw, _ = login(two, EAST)
    west, east = Registry(two, west_pw), Registry(two, east_pw)
    r = west.start_upload(name)
    assert r.status_code == 202, r.text
    location = r.headers["Location"]
    # the same principal, the same repository name, another Region: not its session
    refused = east.patch(location, b"x" * 10, start=0)
    assert oci_error(refused)[:2] == (404, "BLOB_UPLOAD_UNKNOWN")
    assert west.patch(location, b"x" * 10, start=0).status_code == 202
