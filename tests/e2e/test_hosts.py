"""Hosts that resolve, and one account without DNS: a /v2 request to a host that names no
account (127.0.0.1:PORT, the public URL's host) is for the caller's own account's
registry, so a user of a second account pushes and pulls its repositories through the
bare address; another account's registry still needs that account's host."""

import json

from berth import (Registry, doc, login_password, make_image, oci_error, skopeo_pull, skopeo_push,
                   start_server, write_oci_layout)


def test_a_second_account_needs_no_dns_for_its_own_registry(tmp_path_factory, tmp_path):
    server = start_server(tmp_path_factory, "hosts")
    try:
        first, second = server.root, server.account_create()
        assert second.account_id != first.account_id
        name = "team/app"
        ecr2 = server.client("ecr", second)
        repo = ecr2.create_repository(repositoryName=name)["repository"]
        # What ECR shows stays the account's own host (see README: public_url).
        host2 = f"{second.account_id}.dkr.ecr.localhost:{server.port}"
        assert repo["repositoryUri"] == f"{host2}/{name}"
        [data] = ecr2.get_authorization_token()["authorizationData"]
        assert data["proxyEndpoint"] == f"http://{host2}"

        # skopeo, bare 127.0.0.1 address, no Host override: the second account's registry.
        image = make_image(layers=2)
        write_oci_layout(tmp_path / "src", {"v1": image})
        pw2 = login_password(server, second)
        skopeo_push(server, pw2, tmp_path / "src", "v1", name)
        assert ecr2.list_images(repositoryName=name)["imageIds"] == [
            {"imageDigest": image.digest, "imageTag": "v1"}]
        digest_file = tmp_path / "digest"
        skopeo_pull(server, pw2, name, "v1", tmp_path / "pulled", extra=["--digestfile", str(digest_file)])
        assert digest_file.read_text().strip() == image.digest
        # The first account has no such repository: it was not pushed there.
        ecr1 = server.client("ecr", first)
        assert name not in {r["repositoryName"] for r in ecr1.describe_repositories()["repositories"]}
        # Its account host reaches the same registry, with the same password.
        assert Registry(server, pw2, host=host2).get_manifest(name, "v1").content == image.manifest

        # Cross-account: the second account lets the first pull. Through the bare address
        # the first account's password means the first account's registry (no such
        # repository); through the second account's host it pulls.
        ecr2.set_repository_policy(repositoryName=name, policyText=json.dumps(doc({
            "Sid": "First", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{first.account_id}:root"},
            "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]})))
        pw1 = login_password(server, first)
        status, code, message = oci_error(Registry(server, pw1).get_manifest(name, "v1"))
        assert (status, code) == (404, "NAME_UNKNOWN") and first.account_id in message, message
        r = Registry(server, pw1, host=host2).get_manifest(name, "v1")
        assert r.status_code == 200 and r.content == image.manifest
        # A host naming the first account is the first account's registry for either caller.
        host1 = f"{first.account_id}.dkr.ecr.localhost:{server.port}"
        status, code, _ = oci_error(Registry(server, pw2, host=host1).get_manifest(name, "v1"))
        assert status in (403, 404), (status, code)
    finally:
        assert server.stop() == 0
