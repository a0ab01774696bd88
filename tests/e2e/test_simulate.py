"""The IAM policy simulator through the real aws CLI and boto3: simulate-custom-policy and
simulate-principal-policy, with matched statements and their positions, missing context
values, per-resource results, context entries, boundaries, the stored repository policy,
and the context keys a policy uses."""

import json

from berth import dumps, server  # noqa: F401  (fixture)

REPO = "arn:aws:ecr:us-east-1:{acct}:repository/app"


def test_simulate_custom_policy_with_the_cli(server):
    root = server.root
    policy = json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Push", "Effect": "Allow", "Action": ["ecr:PutImage", "ecr:BatchGetImage"], "Resource": "*"},
            {"Sid": "NoDelete", "Effect": "Deny", "Action": "ecr:BatchDeleteImage", "Resource": "*"},
            {"Sid": "FromOffice", "Effect": "Allow", "Action": "ecr:ListImages", "Resource": "*",
             "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}},
        ],
    }, indent=2)
    out = server.cli(root, "iam", "simulate-custom-policy", "--policy-input-list", policy,
                     "--action-names", "ecr:PutImage", "ecr:BatchDeleteImage", "ecr:ListImages", "ecr:DeleteRepository")
    results = {r["EvalActionName"]: r for r in out["EvaluationResults"]}
    assert results["ecr:PutImage"]["EvalDecision"] == "allowed"
    assert results["ecr:BatchDeleteImage"]["EvalDecision"] == "explicitDeny"
    assert results["ecr:ListImages"]["EvalDecision"] == "implicitDeny"
    assert results["ecr:ListImages"]["MissingContextValues"] == ["aws:SourceIp"]
    assert results["ecr:DeleteRepository"]["EvalDecision"] == "implicitDeny"
    # The deciding statement and where it is in the document (lines and columns from 1).
    m = results["ecr:PutImage"]["MatchedStatements"]
    assert [s["SourcePolicyId"] for s in m] == ["PolicyInputList.1"]
    assert m[0]["StartPosition"] == {"Line": 4, "Column": 5}
    assert m[0]["EndPosition"]["Line"] > 4
    d = results["ecr:BatchDeleteImage"]["MatchedStatements"]
    assert len(d) == 1 and d[0]["StartPosition"]["Line"] > m[0]["EndPosition"]["Line"]
    # With the context the condition asks for.
    out = server.cli(root, "iam", "simulate-custom-policy", "--policy-input-list", policy,
                     "--action-names", "ecr:ListImages",
                     "--context-entries", "ContextKeyName=aws:SourceIp,ContextKeyValues=10.1.2.3,ContextKeyType=ip")
    assert out["EvaluationResults"][0]["EvalDecision"] == "allowed"


def test_simulate_principal_policy_with_boto3(server):
    root = server.root
    acct = server.account
    iam = server.iam(root)
    name, _ = server.new_user(policies=[{"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ecr:*", "Resource": "*"}]}])
    arn = f"arn:aws:iam::{acct}:user/{name}"
    repo = REPO.format(acct=acct)
    r = iam.simulate_principal_policy(PolicySourceArn=arn, ActionNames=["ecr:PutImage"], ResourceArns=[repo])
    res = r["EvaluationResults"][0]
    assert res["EvalDecision"] == "allowed"
    assert res["ResourceSpecificResults"][0]["EvalResourceName"] == repo
    assert res["MatchedStatements"][0]["SourcePolicyType"] == "user"
    # A boundary given for the simulation limits it.
    boundary = dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:BatchGetImage", "Resource": "*"}]})
    r = iam.simulate_principal_policy(PolicySourceArn=arn, ActionNames=["ecr:PutImage", "ecr:BatchGetImage"],
                                      ResourceArns=[repo], PermissionsBoundaryPolicyInputList=[boundary])
    got = {e["EvalActionName"]: e for e in r["EvaluationResults"]}
    assert got["ecr:PutImage"]["EvalDecision"] == "implicitDeny"
    assert got["ecr:PutImage"]["PermissionsBoundaryDecisionDetail"] == {"AllowedByPermissionsBoundary": False}
    assert got["ecr:BatchGetImage"]["EvalDecision"] == "allowed"
    # The stored repository policy takes part when the resource is a repository.
    ecr = server.client("ecr", root)
    ecr.create_repository(repositoryName="app")
    ecr.set_repository_policy(repositoryName="app", policyText=dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "NoPush", "Effect": "Deny", "Principal": "*", "Action": "ecr:PutImage"}]}))
    r = iam.simulate_principal_policy(PolicySourceArn=arn, ActionNames=["ecr:PutImage"], ResourceArns=[repo])
    res = r["EvaluationResults"][0]
    assert res["EvalDecision"] == "explicitDeny"
    assert [m["SourcePolicyType"] for m in res["MatchedStatements"]] == ["resource"]
    # Unknown principal; a user without the permission to simulate.
    code = server.cli_error(root, "iam", "simulate-principal-policy", "--policy-source-arn",
                            f"arn:aws:iam::{acct}:user/nobody-here", "--action-names", "ecr:PutImage")
    assert code.code == "NoSuchEntity"


def test_context_keys_for_custom_policy(server):
    policy = dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:*", "Resource": "*",
                    "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}, "StringEquals": {"aws:PrincipalTag/team": "dev"}}}]})
    out = server.cli(server.root, "iam", "get-context-keys-for-custom-policy", "--policy-input-list", policy)
    assert sorted(out["ContextKeyNames"]) == ["aws:PrincipalTag/team", "aws:SourceIp"]


def test_denials_explain_themselves_and_decode(server, tmp_path):
    """A denial carries IAM's sentence and an encoded authorization message, which
    `aws sts decode-authorization-message` opens for a principal allowed to."""
    import re

    root = server.root
    name, creds = server.new_user()
    err = server.cli_error(creds, "ecr", "describe-repositories")
    assert err.code == "AccessDeniedException"
    assert "is not authorized to perform: ecr:DescribeRepositories" in err.message or "ecr:" in err.message
    err = server.cli_error(creds, "iam", "list-users")
    assert err.code == "AccessDenied"
    assert "because no identity-based policy allows the iam:ListUsers action" in err.message
    m = re.search(r"Encoded authorization failure message: ([A-Za-z0-9_-]+)", err.message)
    assert m, err.message
    blob = m.group(1)
    # The user itself may not decode it; root may.
    denied = server.cli_error(creds, "sts", "decode-authorization-message", f"--encoded-message={blob}")
    assert denied.code == "AccessDenied"
    out = server.cli(root, "sts", "decode-authorization-message", f"--encoded-message={blob}")
    decoded = json.loads(out["DecodedMessage"])
    assert decoded["allowed"] is False and decoded["explicitDeny"] is False
    assert decoded["context"]["action"] == "iam:ListUsers"
    assert decoded["context"]["principal"]["arn"].endswith(f":user/{name}")
    keys = {c["item"]["key"] for c in decoded["context"]["conditions"]["items"]}
    assert "aws:sourceip" in keys
    # Tampered or foreign messages are refused.
    bad = server.cli_error(root, "sts", "decode-authorization-message", f"--encoded-message={blob[:-4]}AAAA")
    assert bad.code == "InvalidAuthorizationMessageException"


def test_validate_policy_with_the_access_analyzer_cli(server, tmp_path):
    """`aws accessanalyzer validate-policy --endpoint-url …` runs Berth's linter."""
    policy = tmp_path / "repo.json"
    policy.write_text(json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Sid": "Public", "Effect": "Allow", "Principal": "*",
                       "Action": ["ecr:BatchGetImage", "ecr:PutImgae", "ecr:PutImage"]}],
    }, indent=2))
    out = server.cli(server.root, "accessanalyzer", "validate-policy", "--policy-type", "RESOURCE_POLICY",
                     "--validate-policy-resource-type", "AWS::ECR::Repository",
                     "--policy-document", f"file://{policy}")
    by_code = {f["issueCode"]: f for f in out["findings"]}
    bad = by_code["INVALID_ACTION"]
    assert bad["findingType"] == "ERROR"
    assert "Did you mean ecr:PutImage?" in bad["findingDetails"]
    loc = bad["locations"][0]
    assert loc["path"] == [{"key": "Statement"}, {"index": 0}, {"key": "Action"}, {"index": 1}]
    start, end = loc["span"]["start"], loc["span"]["end"]
    assert policy.read_text()[start["offset"]:end["offset"]] == '"ecr:PutImgae"'
    assert start["line"] == 10 and end["offset"] - start["offset"] == 14
    assert by_code["PUBLIC_WRITE_ACCESS"]["findingType"] == "SECURITY_WARNING"
    # A clean identity policy has no findings.
    clean = tmp_path / "id.json"
    clean.write_text(json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"}]}))
    out = server.cli(server.root, "accessanalyzer", "validate-policy", "--policy-type", "IDENTITY_POLICY",
                     "--policy-document", f"file://{clean}")
    assert out["findings"] == []
    # A user without access-analyzer:ValidatePolicy is refused.
    _, creds = server.new_user()
    err = server.cli_error(creds, "accessanalyzer", "validate-policy", "--policy-type", "IDENTITY_POLICY",
                           "--policy-document", f"file://{clean}")
    assert err.code == "AccessDeniedException"


def test_policy_writes_refuse_lint_errors(server):
    """An ERROR finding refuses a policy write with the finding's sentence; nothing is stored."""
    root = server.root
    name, _ = server.new_user()
    iam = server.iam(root)
    bad = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:TagResource",
                      "Resource": "*", "Condition": {"StringEquals": {"aws:TagKeys": "team"}}}]})
    err = server.cli_error(root, "iam", "put-user-policy", "--user-name", name, "--policy-name", "p",
                           "--policy-document", bad)
    assert err.code == "MalformedPolicyDocument" and "MISSING_QUALIFIER" in err.message
    assert iam.list_user_policies(UserName=name)["PolicyNames"] == []
    ecr = server.client("ecr", root)
    ecr.create_repository(repositoryName="lint/app")
    repo_bad = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*",
                           "Action": "ecr:BatchGetImage", "Condition": {"StringEquals": {"ecr:RepositoryName": "x"}}}]})
    err = server.cli_error(root, "ecr", "set-repository-policy", "--repository-name", "lint/app",
                           "--policy-text", repo_bad)
    assert err.code == "InvalidParameterException" and "INVALID_SERVICE_CONDITION_KEY" in err.message
    assert server.cli_error(root, "ecr", "get-repository-policy", "--repository-name", "lint/app").code == \
        "RepositoryPolicyNotFoundException"


def berth_cli(server, creds, *args):
    """Run the berth binary with `creds` in the environment, as an aws client would have them."""
    import os
    import subprocess

    from berth import BIN

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(creds.env())
    env.update({"AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_DEFAULT_REGION": "us-east-1"})
    return subprocess.run([BIN, *args], env=env, capture_output=True, text=True, timeout=60)


def test_policy_public_on_a_running_servers_data(server):
    """`berth policy public --data-dir` reads a running server's repositories and policies."""
    import subprocess

    from berth import BIN

    root = server.root
    ecr = server.client("ecr", root)
    ecr.create_repository(repositoryName="pub/open")
    ecr.create_repository(repositoryName="pub/closed")
    ecr.set_repository_policy(repositoryName="pub/open", policyText=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": ["ecr:BatchGetImage", "ecr:PutImage"]}]}))
    ecr.set_repository_policy(repositoryName="pub/closed", policyText=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "ecr:BatchGetImage",
         "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-123456"}}}]}))
    ecr.create_repository(repositoryName="pub/tagged", tags=[{"Key": "visibility", "Value": "public"}])
    ecr.set_repository_policy(repositoryName="pub/tagged", policyText=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "ecr:BatchGetImage",
         "Condition": {"StringEquals": {"aws:ResourceTag/visibility": "public"}}}]}))
    p = subprocess.run([BIN, "policy", "public", "--data-dir", str(server.data_dir)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    acct = server.account
    assert f"{acct}/pub/open: readable by anyone signed in (ecr:BatchGetImage)" in p.stdout
    assert f"{acct}/pub/open: writable by anyone signed in (ecr:PutImage)" in p.stdout
    # The repository's own tags are known: a condition on them does not keep it private.
    assert f"{acct}/pub/tagged: readable by anyone signed in (ecr:BatchGetImage)" in p.stdout
    assert "pub/closed" not in p.stdout
    # Over the network, the default account's repositories give the same lines.
    remote = berth_cli(server, root, "policy", "public", "--endpoint-url", server.url)
    assert remote.returncode == 0, remote.stderr
    assert remote.stdout.splitlines() == [l for l in p.stdout.splitlines() if l.startswith(f"{acct}/")]


def test_who_can_on_a_running_servers_data(server):
    """`berth policy who-can` lists the principals allowed an action on a repository:
    the root user, users by identity policy (also through groups), roles, and other
    accounts named by the repository policy; conditional grants name their keys."""
    import subprocess

    from berth import BIN

    root = server.root
    acct = server.account
    ecr = server.client("ecr", root)
    iam = server.iam(root)
    ecr.create_repository(repositoryName="who/app")
    repo = f"arn:aws:ecr:us-east-1:{acct}:repository/who/app"
    pusher, _ = server.new_user(policies=[{"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ecr:PutImage", "Resource": repo}]}])
    office, _ = server.new_user(policies=[{"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ecr:PutImage", "Resource": "*",
         "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}]}])
    reader, _ = server.new_user(policies=[{"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ecr:BatchGetImage", "Resource": "*"}]}])
    iam.create_group(GroupName="who-pushers")
    iam.put_group_policy(GroupName="who-pushers", PolicyName="push", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:*", "Resource": "*"}]}))
    member, _ = server.new_user(groups=["who-pushers"])
    ecr.set_repository_policy(repositoryName="who/app", policyText=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::222222222222:root"}, "Action": "ecr:PutImage"}]}))
    # A role that may push, and who may assume it: a user the trust policy names, and
    # another account (whose own policies must let it).
    assumer, _ = server.new_user()
    iam.create_role(RoleName="who-pusher-role", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": [f"arn:aws:iam::{acct}:user/{assumer}", "arn:aws:iam::333333333333:root"]},
         "Action": "sts:AssumeRole"}]}))
    iam.put_role_policy(RoleName="who-pusher-role", PolicyName="push", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:PutImage", "Resource": repo}]}))
    p = subprocess.run([BIN, "policy", "who-can", "--action", "ecr:PutImage", "--repository", "who/app",
                        "--data-dir", str(server.data_dir)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    # The same answer over the network, signed as the root user, through the public APIs.
    remote = berth_cli(server, root, "policy", "who-can", "--action", "ecr:PutImage", "--repository", "who/app",
                       "--endpoint-url", server.url)
    assert remote.returncode == 0, remote.stderr
    assert remote.stdout.splitlines() == lines
    # A caller that may not read the account's policies is told which call was refused.
    denied = berth_cli(server, server.new_user()[1], "policy", "who-can", "--action", "ecr:PutImage",
                       "--repository", "who/app", "--endpoint-url", server.url)
    assert denied.returncode == 2
    assert "iam GetAccountAuthorizationDetails: AccessDenied" in denied.stderr
    assert f"arn:aws:iam::{acct}:root" in lines
    assert f"arn:aws:iam::{acct}:user/{pusher}" in lines
    assert f"arn:aws:iam::{acct}:user/{member}" in lines
    assert f"arn:aws:iam::{acct}:user/{office} when aws:SourceIp" in lines
    assert not any(f"user/{reader}" in line for line in lines)
    assert "arn:aws:iam::222222222222:root (if its own policies allow)" in lines
    role = f"arn:aws:iam::{acct}:role/who-pusher-role"
    assert role in lines
    assert f"arn:aws:iam::{acct}:user/{assumer} via {role}" in lines
    assert f"arn:aws:iam::333333333333:root via {role} (if its own policies allow)" in lines
    # Those allowed directly in every case are not listed again through the role.
    assert f"arn:aws:iam::{acct}:root via {role}" not in lines


def _decode_denial(server, creds, message):
    """The decoded authorization message of a denial, decoded by `creds`, as a dict
    without the keys whose values are the request's time (they differ per request)."""
    import re

    m = re.search(r"Encoded authorization failure message: ([A-Za-z0-9_-]+)", message)
    assert m, message
    out = server.client("sts", creds).decode_authorization_message(EncodedMessage=m.group(1))
    decoded = json.loads(out["DecodedMessage"])
    items = decoded["context"]["conditions"]["items"]
    decoded["context"]["conditions"]["items"] = [
        i for i in items if i["item"]["key"].lower() not in ("aws:currenttime", "aws:epochtime")]
    return decoded, m.group(1)


def test_denials_do_not_leak_another_accounts_repository(server):
    """Account B's user is denied a pull from account A's repository. B's root decodes the
    message: it holds none of the repository's tags, and it is the same whether the
    repository exists or not and has tags or not (no existence oracle); the IAM sentence
    is the same too. A's root cannot decode B's message."""
    from berth import Registry, client_error, login_password, oci_error, unique

    a = server.root
    b = server.account_create()
    _, user = server.new_user(admin=b, policies=[{"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ecr:*", "Resource": "*"}]}])
    name = unique("leak/app")
    ecr_a = server.client("ecr", a)
    ecr_b = server.client("ecr", user)
    pw = login_password(server, user)

    def denials():
        """(sentence, decoded) of the ECR API denial, then of the /v2 denial."""
        code, msg, status = client_error(ecr_b.batch_get_image, registryId=a.account_id, repositoryName=name,
                                         imageIds=[{"imageTag": "latest"}])
        assert (status, code) == (400, "AccessDeniedException") or code == "AccessDeniedException", (code, msg)
        api, _ = _decode_denial(server, b, msg)
        # A's registry by its account host (the bare address would be B's own registry).
        a_host = f"{a.account_id}.dkr.ecr.localhost:{server.port}"
        status, code, omsg = oci_error(Registry(server, pw, host=a_host).get_manifest(name, "latest"))
        assert (status, code) == (403, "DENIED"), omsg
        v2, _ = _decode_denial(server, b, omsg)
        return [(msg.split(". Encoded")[0], api), (omsg.split(". Encoded")[0], v2)]

    missing = denials()
    ecr_a.create_repository(repositoryName=name)
    untagged = denials()
    arn = f"arn:aws:ecr:us-east-1:{a.account_id}:repository/{name}"
    ecr_a.tag_resource(resourceArn=arn, tags=[{"Key": "secret-key", "Value": "secret-value"}])
    tagged = denials()
    for (sentence, decoded) in tagged:
        text = json.dumps(decoded)
        assert "secret-key" not in text and "secret-value" not in text, text
        assert "resourcetag" not in text.lower(), text
        assert sentence.endswith(f"is not authorized to perform: ecr:BatchGetImage on resource: {arn} "
                                 "because no resource-based policy allows the ecr:BatchGetImage action"), sentence
    assert tagged == untagged == missing
    # B's own account sees its own user's request: who, what, from where.
    decoded = tagged[0][1]
    assert decoded["context"]["principal"]["arn"].startswith(f"arn:aws:iam::{b.account_id}:user/")
    assert decoded["context"]["resource"] == arn
    # The message is for the requesting account: A cannot decode it.
    code, msg, _ = client_error(ecr_b.batch_get_image, registryId=a.account_id, repositoryName=name,
                                imageIds=[{"imageTag": "latest"}])
    _, blob = _decode_denial(server, b, msg)
    code, msg, status = client_error(server.client("sts", a).decode_authorization_message, EncodedMessage=blob)
    assert (status, code) == (400, "InvalidAuthorizationMessageException"), msg


def test_denials_in_the_callers_own_account_show_resource_tags(server):
    """Within one account the administrators decoding a denial see the repository's tags
    (they may read them anyway)."""
    from berth import client_error, unique

    a = server.root
    _, user = server.new_user(policies=[{"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ecr:DescribeRepositories", "Resource": "*"}]}])
    name = unique("own/app")
    server.client("ecr", a).create_repository(repositoryName=name, tags=[{"Key": "team", "Value": "blue"}])
    code, msg, _ = client_error(server.client("ecr", user).batch_get_image, repositoryName=name,
                                imageIds=[{"imageTag": "latest"}])
    assert code == "AccessDeniedException", msg
    decoded, _ = _decode_denial(server, a, msg)
    keys = {i["item"]["key"].lower(): i["item"]["values"]["items"] for i in decoded["context"]["conditions"]["items"]}
    assert keys["aws:resourcetag/team"] == [{"value": "blue"}], keys


def test_simulator_uses_only_the_callers_own_stored_resource_policies(server):
    """SimulatePrincipalPolicy / SimulateCustomPolicy read the stored repository and
    registry policies of the caller's own account only: another account's resources are
    simulated with the ResourcePolicy the caller passes (or none), so varying the input
    reveals nothing of the other account's statements."""
    from berth import unique

    a = server.root
    b = server.account_create()
    name = unique("sim/app")
    ecr_a = server.client("ecr", a)
    ecr_a.create_repository(repositoryName=name)
    a_repo = f"arn:aws:ecr:us-east-1:{a.account_id}:repository/{name}"
    allow_all = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:*", "Resource": "*"}]})
    # A's hidden statements: a deny on PutImage in the repository policy, and a grant of
    # BatchGetImage to B's account in the registry policy.
    ecr_a.set_repository_policy(repositoryName=name, policyText=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "HiddenDeny", "Effect": "Deny", "Principal": "*", "Action": "ecr:PutImage"}]}))
    ecr_a.put_registry_policy(policyText=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "HiddenGrant", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{b.account_id}:root"},
         "Action": "ecr:BatchGetImage", "Resource": "*"}]}))
    try:
        iam_b = server.iam(b)
        b_user, _ = server.new_user(admin=b, policies=[json.loads(allow_all)])
        b_user_arn = f"arn:aws:iam::{b.account_id}:user/{b_user}"
        actions = ["ecr:PutImage", "ecr:BatchGetImage"]
        runs = [
            iam_b.simulate_custom_policy(PolicyInputList=[allow_all], ActionNames=actions, ResourceArns=[a_repo],
                                         CallerArn=b_user_arn),
            iam_b.simulate_principal_policy(PolicySourceArn=b_user_arn, ActionNames=actions, ResourceArns=[a_repo]),
        ]
        for r in runs:
            got = {e["EvalActionName"]: e for e in r["EvaluationResults"]}
            # Without A's policies: nothing on the resource side allows; nothing denies.
            assert got["ecr:PutImage"]["EvalDecision"] == "implicitDeny", got
            assert got["ecr:BatchGetImage"]["EvalDecision"] == "implicitDeny", got
            for e in got.values():
                assert all(m["SourcePolicyType"] != "resource" for m in e["MatchedStatements"]), e
        # With a resource policy passed in, that one is used (and only that one).
        given = json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": b_user_arn}, "Action": ["ecr:PutImage", "ecr:BatchGetImage"]}]})
        r = iam_b.simulate_custom_policy(PolicyInputList=[allow_all], ActionNames=actions, ResourceArns=[a_repo],
                                         CallerArn=b_user_arn, ResourcePolicy=given)
        got = {e["EvalActionName"]: e for e in r["EvaluationResults"]}
        assert got["ecr:PutImage"]["EvalDecision"] == "allowed", got
        assert got["ecr:BatchGetImage"]["EvalDecision"] == "allowed", got
        # A, simulating on its own repository, does get its stored policies.
        iam_a = server.iam(a)
        a_user, _ = server.new_user(policies=[json.loads(allow_all)])
        r = iam_a.simulate_principal_policy(PolicySourceArn=f"arn:aws:iam::{a.account_id}:user/{a_user}",
                                            ActionNames=["ecr:PutImage"], ResourceArns=[a_repo])
        res = r["EvaluationResults"][0]
        assert res["EvalDecision"] == "explicitDeny"
        assert [m["SourcePolicyType"] for m in res["MatchedStatements"]] == ["resource"]
    finally:
        ecr_a.delete_registry_policy()
