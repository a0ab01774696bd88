"""The docker-login flow with a real Docker engine: `aws ecr get-login-password | docker
login --username AWS --password-stdin HOST`, then docker push and pull. The engine
(Debian's docker.io) is started here with its own data root and socket, and stopped."""

import json
import subprocess
import time

import pytest

from berth import dockerd, make_image, run_client, start_server, write_oci_layout

@pytest.fixture(scope="module")
def docker(tmp_path_factory):
    d = tmp_path_factory.mktemp("docker")
    with dockerd(d) as env:
        yield env, d / "docker.sock"


run = run_client


def test_docker_login_push_pull(docker, tmp_path_factory, tmp_path):
    env, sock = docker
    server = start_server(tmp_path_factory, "docker-berth")
    root = server.root
    host = f"127.0.0.1:{server.port}"
    aws_env = {**env, **root.env()}
    cli = ["aws", "--endpoint-url", server.url, "--region", "us-east-1", "ecr"]
    run(cli + ["create-repository", "--repository-name", "team/app"], aws_env)

    # The login flow exactly as ECR users type it.
    password = run(cli + ["get-login-password"], aws_env).stdout.strip()
    out = run(["docker", "login", "--username", "AWS", "--password-stdin", host], env, input=password)
    assert "Login Succeeded" in out.stdout
    bad = run(["docker", "login", "--username", "AWS", "--password-stdin", host], env, input="wrong", check=False)
    assert bad.returncode != 0
    run(["docker", "login", "--username", "AWS", "--password-stdin", host], env, input=password)

    # An image into the engine (skopeo from an OCI layout), then docker push.
    image = make_image(layers=2, size=512 * 1024)
    layout = tmp_path / "src"
    write_oci_layout(layout, {"v1": image})
    subprocess.run(["skopeo", "--insecure-policy", "copy", "--dest-daemon-host", f"unix://{sock}",
                    f"oci:{layout}:v1", "docker-daemon:local/app:v1"], check=True, capture_output=True)
    run(["docker", "tag", "local/app:v1", f"{host}/team/app:v1"], env)
    pushed = run(["docker", "push", f"{host}/team/app:v1"], env)
    digest = [w for w in pushed.stdout.split() if w.startswith("sha256:")][-1]

    # The registry holds what docker pushed (docker re-compresses layers and writes Docker schema 2).
    ecr = server.client("ecr", root)
    details = ecr.describe_images(repositoryName="team/app")["imageDetails"]
    assert [d["imageDigest"] for d in details] == [digest]
    assert details[0]["imageManifestMediaType"] == "application/vnd.docker.distribution.manifest.v2+json"

    # Pull it back into an empty engine state: same manifest digest, same image id (config).
    image_id = run(["docker", "image", "inspect", "--format", "{{.Id}}", "local/app:v1"], env).stdout.strip()
    run(["docker", "rmi", "local/app:v1", f"{host}/team/app:v1"], env)
    pulled = run(["docker", "pull", f"{host}/team/app:v1"], env)
    assert digest in pulled.stdout
    assert run(["docker", "image", "inspect", "--format", "{{.Id}}", f"{host}/team/app:v1"], env).stdout.strip() == image_id
    repo_digests = json.loads(run(["docker", "image", "inspect", "--format", "{{json .RepoDigests}}", f"{host}/team/app:v1"], env).stdout)
    assert repo_digests == [f"{host}/team/app@{digest}"]

    # A pull-only user can pull and cannot push.
    iam = server.iam(root)
    iam.create_user(UserName="deploy")
    iam.put_user_policy(UserName="deploy", PolicyName="pull", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken", "ecr:BatchGetImage",
                       "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"], "Resource": "*"}]}))
    key = iam.create_access_key(UserName="deploy")["AccessKey"]
    deploy_env = {**env, "AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
    deploy_env.pop("AWS_SESSION_TOKEN", None)
    time.sleep(0.3)
    deploy_password = run(cli + ["get-login-password"], deploy_env).stdout.strip()
    run(["docker", "logout", host], env)
    run(["docker", "login", "--username", "AWS", "--password-stdin", host], env, input=deploy_password)
    run(["docker", "rmi", f"{host}/team/app:v1"], env)
    run(["docker", "pull", f"{host}/team/app:v1"], env)
    run(["docker", "tag", f"{host}/team/app:v1", f"{host}/team/app:v2"], env)
    denied = run(["docker", "push", f"{host}/team/app:v2"], env, check=False)
    assert denied.returncode != 0
    assert "denied" in (denied.stdout + denied.stderr).lower()
    assert server.stop() == 0
