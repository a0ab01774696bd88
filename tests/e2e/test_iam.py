"""IAM API end to end: entities, policies, authorization, bad input."""

import json
import re
import urllib.parse

import pytest

from berth import (
    ALLOW_ALL, plain, allow, client_error, deny, doc, dumps, server,  # noqa: F401
                   trust, unique)

V = "2010-05-08"


# ---------------------------------------------------------------------------------------
# Users, keys, tags (CLI)
# ---------------------------------------------------------------------------------------


def test_user_lifecycle_cli(server):
    root, acct = server.root, server.account
    name = unique("alice")
    out = server.cli(root, "iam", "create-user", "--user-name", name, "--path", "/eng/")
    u = out["User"]
    assert u["UserName"] == name
    assert u["Path"] == "/eng/"
    assert u["Arn"] == f"arn:aws:iam::{acct}:user/eng/{name}"
    assert re.fullmatch(r"AIDA[A-Z0-9]{17}", u["UserId"]), u["UserId"]
    assert "CreateDate" in u

    got = server.iam().get_user(UserName=name)["User"]
    assert got["UserId"] == u["UserId"] and got["Arn"] == u["Arn"]

    err = server.cli_error(root, "iam", "create-user", "--user-name", name)
    assert err.code == "EntityAlreadyExists"

    listed = server.cli(root, "iam", "list-users", "--path-prefix", "/eng/")["Users"]
    assert [x["UserName"] for x in listed] == [name]

    server.cli(root, "iam", "delete-user", "--user-name", name)
    err = server.cli_error(root, "iam", "get-user", "--user-name", name)
    assert err.code == "NoSuchEntity"
    assert name in err.message


def test_user_names_are_case_insensitive_unique(server):
    name = unique("Case")
    server.iam().create_user(UserName=name)
    code, _, status = client_error(server.iam().create_user, UserName=name.lower())
    assert code == "EntityAlreadyExists" and status == 409


@pytest.mark.parametrize("bad", ["bad name", "x" * 65, "semi;colon", ""])
def test_invalid_user_name(server, bad):
    code, _, status = client_error(server.iam().create_user, UserName=bad) if bad else \
        (lambda r: (r.code, r.message, r.status))(server.raw(
            {"Action": "CreateUser", "Version": V, "UserName": ""}, creds=server.root))
    assert code == "ValidationError" and status == 400
    assert bad == "" or bad not in [u["UserName"] for u in server.iam().list_users()["Users"]]


def test_invalid_path(server):
    code, _, _ = client_error(server.iam().create_user, UserName=unique("p"), Path="no-slashes")
    assert code == "ValidationError"


def test_user_tags(server):
    iam = server.iam()
    name = unique("tagged")
    iam.create_user(UserName=name, Tags=[{"Key": "team", "Value": "dev"}])
    server.cli(server.root, "iam", "tag-user", "--user-name", name,
               "--tags", "Key=env,Value=prod", "Key=team,Value=ops")
    tags = server.cli(server.root, "iam", "list-user-tags", "--user-name", name)["Tags"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("env", "prod"), ("team", "ops")]
    iam.untag_user(UserName=name, TagKeys=["env"])
    assert iam.list_user_tags(UserName=name)["Tags"] == [{"Key": "team", "Value": "ops"}]
    assert client_error(iam.tag_user, UserName=unique("ghost"), Tags=[{"Key": "a", "Value": "b"}])[0] \
        == "NoSuchEntity"
    too_many = [{"Key": f"k{i}", "Value": "v"} for i in range(51)]
    code, _, _ = client_error(iam.tag_user, UserName=name, Tags=too_many)
    assert code in ("LimitExceeded", "ValidationError")
    assert iam.list_user_tags(UserName=name)["Tags"] == [{"Key": "team", "Value": "ops"}]


def test_access_keys_cli(server):
    root = server.root
    name = unique("keys")
    server.iam().create_user(UserName=name)
    k1 = server.cli(root, "iam", "create-access-key", "--user-name", name)["AccessKey"]
    assert re.fullmatch(r"AKIA[A-Z0-9]{16}", k1["AccessKeyId"])
    assert len(k1["SecretAccessKey"]) == 40
    assert k1["Status"] == "Active" and k1["UserName"] == name
    k2 = server.iam().create_access_key(UserName=name)["AccessKey"]
    err = server.cli_error(root, "iam", "create-access-key", "--user-name", name)
    assert err.code == "LimitExceeded"

    listed = server.cli(root, "iam", "list-access-keys", "--user-name", name)["AccessKeyMetadata"]
    assert sorted(k["AccessKeyId"] for k in listed) == sorted([k1["AccessKeyId"], k2["AccessKeyId"]])
    assert all("SecretAccessKey" not in k for k in listed)

    server.cli(root, "iam", "update-access-key", "--user-name", name,
               "--access-key-id", k1["AccessKeyId"], "--status", "Inactive")
    st = {k["AccessKeyId"]: k["Status"] for k in server.iam().list_access_keys(UserName=name)["AccessKeyMetadata"]}
    assert st == {k1["AccessKeyId"]: "Inactive", k2["AccessKeyId"]: "Active"}
    code, _, _ = client_error(server.iam().update_access_key, UserName=name,
                              AccessKeyId=k1["AccessKeyId"], Status="Sleeping")
    assert code == "ValidationError"

    # deleting a user that still has keys is a conflict
    assert server.cli_error(root, "iam", "delete-user", "--user-name", name).code == "DeleteConflict"
    server.iam().delete_access_key(UserName=name, AccessKeyId=k1["AccessKeyId"])
    server.iam().delete_access_key(UserName=name, AccessKeyId=k2["AccessKeyId"])
    code, _, status = client_error(server.iam().delete_access_key, UserName=name,
                                   AccessKeyId=k2["AccessKeyId"])
    assert code == "NoSuchEntity" and status == 404
    server.iam().delete_user(UserName=name)


def test_access_key_of_another_users_name_is_not_found(server):
    a, _ = server.new_user()
    b, b_creds = server.new_user()
    code, _, _ = client_error(server.iam().delete_access_key, UserName=a, AccessKeyId=b_creds.access_key_id)
    assert code == "NoSuchEntity"
    # b's key still works
    assert server.sts(b_creds).get_caller_identity()["Arn"].endswith(f":user/{b}")


def test_delete_user_conflicts(server):
    iam = server.iam()
    g = unique("grp")
    iam.create_group(GroupName=g)
    name = unique("conflicted")
    iam.create_user(UserName=name)
    iam.add_user_to_group(UserName=name, GroupName=g)
    assert client_error(iam.delete_user, UserName=name)[0] == "DeleteConflict"
    iam.remove_user_from_group(UserName=name, GroupName=g)
    iam.put_user_policy(UserName=name, PolicyName="inline", PolicyDocument=dumps(ALLOW_ALL))
    assert client_error(iam.delete_user, UserName=name)[0] == "DeleteConflict"
    iam.delete_user_policy(UserName=name, PolicyName="inline")
    arn = iam.create_policy(PolicyName=unique("mp"), PolicyDocument=dumps(ALLOW_ALL))["Policy"]["Arn"]
    iam.attach_user_policy(UserName=name, PolicyArn=arn)
    assert client_error(iam.delete_user, UserName=name)[0] == "DeleteConflict"
    iam.detach_user_policy(UserName=name, PolicyArn=arn)
    iam.delete_user(UserName=name)
    assert client_error(iam.get_user, UserName=name)[0] == "NoSuchEntity"


def test_pagination_users(server):
    iam = server.iam()
    prefix = "/" + unique("page") + "/"
    names = sorted(unique("pg") for _ in range(5))
    for n in names:
        iam.create_user(UserName=n, Path=prefix)
    seen, marker, pages = [], None, 0
    while True:
        kw = {"PathPrefix": prefix, "MaxItems": 2}
        if marker:
            kw["Marker"] = marker
        r = iam.list_users(**kw)
        pages += 1
        assert len(r["Users"]) <= 2
        seen += [u["UserName"] for u in r["Users"]]
        if not r.get("IsTruncated"):
            assert "Marker" not in r
            break
        marker = r["Marker"]
        assert pages < 10
    assert pages == 3
    assert sorted(seen) == names and len(seen) == len(set(seen))
    # the CLI's own paginator sees the same
    out = server.cli(server.root, "iam", "list-users", "--path-prefix", prefix, "--page-size", "2")
    assert sorted(u["UserName"] for u in out["Users"]) == names
    r = server.raw({"Action": "ListUsers", "Version": V, "MaxItems": "0"}, creds=server.root)
    assert r.status == 400 and r.code == "ValidationError", r.body
    r = server.raw({"Action": "ListUsers", "Version": V, "MaxItems": "1001"}, creds=server.root)
    assert r.status == 400 and r.code == "ValidationError", r.body


# ---------------------------------------------------------------------------------------
# Groups
# ---------------------------------------------------------------------------------------


def test_groups(server):
    iam, root, acct = server.iam(), server.root, server.account
    g = unique("devs")
    out = server.cli(root, "iam", "create-group", "--group-name", g, "--path", "/teams/")
    assert out["Group"]["Arn"] == f"arn:aws:iam::{acct}:group/teams/{g}"
    assert re.fullmatch(r"AGPA[A-Z0-9]{17}", out["Group"]["GroupId"])
    assert client_error(iam.create_group, GroupName=g)[0] == "EntityAlreadyExists"
    u1, _ = server.new_user()
    u2, _ = server.new_user()
    server.cli(root, "iam", "add-user-to-group", "--group-name", g, "--user-name", u1)
    iam.add_user_to_group(GroupName=g, UserName=u2)
    got = iam.get_group(GroupName=g)
    assert got["Group"]["GroupName"] == g
    assert sorted(u["UserName"] for u in got["Users"]) == sorted([u1, u2])
    assert [x["GroupName"] for x in iam.list_groups_for_user(UserName=u1)["Groups"]] == [g]
    assert g in [x["GroupName"] for x in iam.list_groups(PathPrefix="/teams/")["Groups"]]
    assert client_error(iam.add_user_to_group, GroupName=g, UserName=unique("ghost"))[0] == "NoSuchEntity"
    assert client_error(iam.delete_group, GroupName=g)[0] == "DeleteConflict"
    iam.remove_user_from_group(GroupName=g, UserName=u1)
    iam.remove_user_from_group(GroupName=g, UserName=u2)
    assert iam.list_groups_for_user(UserName=u1)["Groups"] == []
    iam.put_group_policy(GroupName=g, PolicyName="gp", PolicyDocument=dumps(ALLOW_ALL))
    assert client_error(iam.delete_group, GroupName=g)[0] == "DeleteConflict"
    iam.delete_group_policy(GroupName=g, PolicyName="gp")
    iam.delete_group(GroupName=g)
    assert client_error(iam.get_group, GroupName=g)[0] == "NoSuchEntity"


# ---------------------------------------------------------------------------------------
# Roles
# ---------------------------------------------------------------------------------------


def test_roles_cli(server):
    root, acct, iam = server.root, server.account, server.iam()
    name = unique("role")
    tp = trust(f"arn:aws:iam::{acct}:root")
    out = server.cli(root, "iam", "create-role", "--role-name", name, "--path", "/svc/",
                     "--assume-role-policy-document", json.dumps(tp), "--description", "test role",
                     "--max-session-duration", "7200", "--tags", "Key=team,Value=dev")
    r = out["Role"]
    assert r["Arn"] == f"arn:aws:iam::{acct}:role/svc/{name}"
    assert re.fullmatch(r"AROA[A-Z0-9]{17}", r["RoleId"])
    got = server.cli(root, "iam", "get-role", "--role-name", name)["Role"]
    assert got["AssumeRolePolicyDocument"] == tp  # decoded from the URL-encoded form
    assert got["MaxSessionDuration"] == 7200
    assert got.get("Description") == "test role"
    assert iam.list_role_tags(RoleName=name)["Tags"] == [{"Key": "team", "Value": "dev"}]

    someone, _ = server.new_user()  # a trust policy names users that exist
    tp2 = trust(f"arn:aws:iam::{acct}:user/{someone}")
    iam.update_assume_role_policy(RoleName=name, PolicyDocument=dumps(tp2))
    assert iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"] == tp2
    r = server.raw({"Action": "UpdateRole", "Version": V, "RoleName": name, "MaxSessionDuration": "43200"},
                   creds=root)
    assert r.status == 200, r.body
    assert iam.get_role(RoleName=name)["Role"]["MaxSessionDuration"] == 43200
    for bad in ("3599", "43201", "abc"):
        r = server.raw({"Action": "UpdateRole", "Version": V, "RoleName": name, "MaxSessionDuration": bad},
                       creds=root)
        assert r.status == 400 and r.code == "ValidationError", (bad, r.body)
    assert iam.get_role(RoleName=name)["Role"]["MaxSessionDuration"] == 43200

    iam.tag_role(RoleName=name, Tags=[{"Key": "env", "Value": "prod"}])
    iam.untag_role(RoleName=name, TagKeys=["team"])
    assert iam.list_role_tags(RoleName=name)["Tags"] == [{"Key": "env", "Value": "prod"}]
    assert name in [x["RoleName"] for x in iam.list_roles(PathPrefix="/svc/")["Roles"]]

    # a trust policy must name a principal; an identity-style document is refused
    code, _, _ = client_error(iam.update_assume_role_policy, RoleName=name, PolicyDocument=dumps(ALLOW_ALL))
    assert code == "MalformedPolicyDocument"
    assert iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"] == tp2

    iam.put_role_policy(RoleName=name, PolicyName="rp", PolicyDocument=dumps(ALLOW_ALL))
    assert client_error(iam.delete_role, RoleName=name)[0] == "DeleteConflict"
    iam.delete_role_policy(RoleName=name, PolicyName="rp")
    server.cli(root, "iam", "delete-role", "--role-name", name)
    assert client_error(iam.get_role, RoleName=name)[0] == "NoSuchEntity"


def test_update_role_boto3_and_cli(server):
    """UpdateRole's response must carry an (empty) <UpdateRoleResult/>, or botocore's
    query parser fails with KeyError('UpdateRoleResult')."""
    iam, acct = server.iam(), server.account
    name = unique("upd")
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=dumps(trust(f"arn:aws:iam::{acct}:root")))
    server.cli(server.root, "iam", "update-role", "--role-name", name, "--max-session-duration", "7200")
    assert iam.get_role(RoleName=name)["Role"]["MaxSessionDuration"] == 7200
    iam.update_role(RoleName=name, Description="new")
    assert iam.get_role(RoleName=name)["Role"]["Description"] == "new"


def test_create_role_bad_trust_policy(server):
    name = unique("badtrust")
    code, msg, status = client_error(server.iam().create_role, RoleName=name,
                                     AssumeRolePolicyDocument='{"Statement": [}')
    assert code == "MalformedPolicyDocument" and status == 400
    assert client_error(server.iam().get_role, RoleName=name)[0] == "NoSuchEntity"


# ---------------------------------------------------------------------------------------
# Inline policies
# ---------------------------------------------------------------------------------------

POLICY_A = doc(allow("iam:GetUser"))
POLICY_B = doc(allow(["iam:ListUsers", "iam:ListGroups"]), deny("iam:DeleteUser"))


@pytest.mark.parametrize("kind", ["user", "group", "role"])
def test_inline_policies(server, kind):
    iam = server.iam()
    name = unique(kind)
    if kind == "user":
        iam.create_user(UserName=name)
    elif kind == "group":
        iam.create_group(GroupName=name)
    else:
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=dumps(trust(f"arn:aws:iam::{server.account}:root")))
    K = kind.capitalize()
    ent = {f"{K}Name": name}
    put = getattr(iam, f"put_{kind}_policy")
    get = getattr(iam, f"get_{kind}_policy")
    lst = getattr(iam, f"list_{kind}_policies")
    dele = getattr(iam, f"delete_{kind}_policy")
    put(**ent, PolicyName="a", PolicyDocument=dumps(POLICY_A))
    put(**ent, PolicyName="b", PolicyDocument=json.dumps(POLICY_B, indent=2))
    assert sorted(lst(**ent)["PolicyNames"]) == ["a", "b"]
    g = get(**ent, PolicyName="b")
    assert g["PolicyName"] == "b" and g[f"{K}Name"] == name
    assert g["PolicyDocument"] == POLICY_B
    # replacing keeps one policy of that name
    put(**ent, PolicyName="a", PolicyDocument=dumps(POLICY_B))
    assert get(**ent, PolicyName="a")["PolicyDocument"] == POLICY_B
    assert sorted(lst(**ent)["PolicyNames"]) == ["a", "b"]
    dele(**ent, PolicyName="a")
    assert lst(**ent)["PolicyNames"] == ["b"]
    assert client_error(get, **ent, PolicyName="a")[0] == "NoSuchEntity"
    assert client_error(dele, **ent, PolicyName="a")[0] == "NoSuchEntity"


def test_inline_policy_cli_round_trip(server):
    root = server.root
    name, _ = server.new_user()
    pdoc = doc(allow("iam:GetUser", f"arn:aws:iam::{server.account}:user/${{aws:username}}",
                     Condition={"StringLike": {"aws:UserAgent": "*"}}))
    server.cli(root, "iam", "put-user-policy", "--user-name", name, "--policy-name", "self",
               "--policy-document", json.dumps(pdoc))
    out = server.cli(root, "iam", "get-user-policy", "--user-name", name, "--policy-name", "self")
    assert out["PolicyDocument"] == pdoc
    assert server.cli(root, "iam", "list-user-policies", "--user-name", name)["PolicyNames"] == ["self"]


def test_policy_document_is_url_encoded_on_the_wire(server):
    name, _ = server.new_user()
    pdoc = doc(allow("iam:GetUser", "arn:aws:iam::*:user/a b+c&d"))
    server.iam().put_user_policy(UserName=name, PolicyName="enc", PolicyDocument=dumps(pdoc))
    r = server.raw({"Action": "GetUserPolicy", "Version": V, "UserName": name, "PolicyName": "enc"},
                   creds=server.root)
    assert r.status == 200
    wire = r.find("PolicyDocument")
    assert "%" in wire and "{" not in wire, wire
    assert json.loads(urllib.parse.unquote(wire)) == pdoc


# ---------------------------------------------------------------------------------------
# Managed policies
# ---------------------------------------------------------------------------------------


def test_managed_policy_versions(server):
    root, iam, acct = server.root, server.iam(), server.account
    pname = unique("managed")
    v1 = doc(allow("iam:GetUser"))
    v2 = doc(allow("iam:ListUsers"))
    out = server.cli(root, "iam", "create-policy", "--policy-name", pname, "--path", "/app/",
                     "--policy-document", json.dumps(v1), "--description", "d")
    p = out["Policy"]
    arn = p["Arn"]
    assert arn == f"arn:aws:iam::{acct}:policy/app/{pname}"
    assert p["DefaultVersionId"] == "v1"
    assert re.fullmatch(r"ANPA[A-Z0-9]{17}", p["PolicyId"])
    assert client_error(iam.create_policy, PolicyName=pname, PolicyDocument=dumps(v1))[0] == "EntityAlreadyExists"

    out = server.cli(root, "iam", "create-policy-version", "--policy-arn", arn,
                     "--policy-document", json.dumps(v2), "--set-as-default")
    assert out["PolicyVersion"]["VersionId"] == "v2" and out["PolicyVersion"]["IsDefaultVersion"] is True
    assert iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"] == "v2"
    assert iam.get_policy_version(PolicyArn=arn, VersionId="v1")["PolicyVersion"]["Document"] == v1
    got = server.cli(root, "iam", "get-policy-version", "--policy-arn", arn, "--version-id", "v2")
    assert got["PolicyVersion"]["Document"] == v2

    iam.set_default_policy_version(PolicyArn=arn, VersionId="v1")
    vs = {v["VersionId"]: v["IsDefaultVersion"] for v in iam.list_policy_versions(PolicyArn=arn)["Versions"]}
    assert vs == {"v1": True, "v2": False}
    assert client_error(iam.delete_policy_version, PolicyArn=arn, VersionId="v1")[0] == "DeleteConflict"
    iam.delete_policy_version(PolicyArn=arn, VersionId="v2")
    assert client_error(iam.get_policy_version, PolicyArn=arn, VersionId="v2")[0] == "NoSuchEntity"
    assert client_error(iam.delete_policy_version, PolicyArn=arn, VersionId="v2")[0] == "NoSuchEntity"
    assert client_error(iam.set_default_policy_version, PolicyArn=arn, VersionId="v9")[0] == "NoSuchEntity"

    # at most 5 versions
    for _ in range(4):
        iam.create_policy_version(PolicyArn=arn, PolicyDocument=dumps(v2))
    assert len(iam.list_policy_versions(PolicyArn=arn)["Versions"]) == 5
    code, _, _ = client_error(iam.create_policy_version, PolicyArn=arn, PolicyDocument=dumps(v2))
    assert code == "LimitExceeded"
    assert len(iam.list_policy_versions(PolicyArn=arn)["Versions"]) == 5
    # version ids keep counting up (v2 was deleted, so new ones are v3..v6)
    assert sorted(v["VersionId"] for v in iam.list_policy_versions(PolicyArn=arn)["Versions"]) == \
        ["v1", "v3", "v4", "v5", "v6"]

    listed = iam.list_policies(Scope="Local", PathPrefix="/app/")["Policies"]
    assert arn in [x["Arn"] for x in listed]
    # a policy with non-default versions cannot be deleted (AWS: delete versions first)
    assert client_error(iam.delete_policy, PolicyArn=arn)[0] == "DeleteConflict"
    for v in ("v3", "v4", "v5", "v6"):
        iam.delete_policy_version(PolicyArn=arn, VersionId=v)
    iam.delete_policy(PolicyArn=arn)
    assert client_error(iam.get_policy, PolicyArn=arn)[0] == "NoSuchEntity"


@pytest.mark.parametrize("kind", ["user", "group", "role"])
def test_attach_managed_policy(server, kind):
    iam = server.iam()
    name = unique(kind)
    if kind == "user":
        iam.create_user(UserName=name)
    elif kind == "group":
        iam.create_group(GroupName=name)
    else:
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=dumps(trust(f"arn:aws:iam::{server.account}:root")))
    K = kind.capitalize()
    ent = {f"{K}Name": name}
    pname = unique("att")
    arn = iam.create_policy(PolicyName=pname, PolicyDocument=dumps(POLICY_A))["Policy"]["Arn"]
    getattr(iam, f"attach_{kind}_policy")(**ent, PolicyArn=arn)
    getattr(iam, f"attach_{kind}_policy")(**ent, PolicyArn=arn)  # idempotent
    att = getattr(iam, f"list_attached_{kind}_policies")(**ent)["AttachedPolicies"]
    assert att == [{"PolicyName": pname, "PolicyArn": arn}]
    assert iam.get_policy(PolicyArn=arn)["Policy"]["AttachmentCount"] == 1
    assert client_error(iam.delete_policy, PolicyArn=arn)[0] == "DeleteConflict"
    getattr(iam, f"detach_{kind}_policy")(**ent, PolicyArn=arn)
    assert getattr(iam, f"list_attached_{kind}_policies")(**ent)["AttachedPolicies"] == []
    assert client_error(getattr(iam, f"detach_{kind}_policy"), **ent, PolicyArn=arn)[0] == "NoSuchEntity"
    missing = f"arn:aws:iam::{server.account}:policy/{unique('nope')}"
    assert client_error(getattr(iam, f"attach_{kind}_policy"), **ent, PolicyArn=missing)[0] == "NoSuchEntity"
    iam.delete_policy(PolicyArn=arn)


def test_attach_policy_cli(server):
    root = server.root
    name, _ = server.new_user()
    arn = server.iam().create_policy(PolicyName=unique("clip"), PolicyDocument=dumps(POLICY_A))["Policy"]["Arn"]
    server.cli(root, "iam", "attach-user-policy", "--user-name", name, "--policy-arn", arn)
    out = server.cli(root, "iam", "list-attached-user-policies", "--user-name", name)
    assert [p["PolicyArn"] for p in out["AttachedPolicies"]] == [arn]


# ---------------------------------------------------------------------------------------
# Authorization
# ---------------------------------------------------------------------------------------


def test_user_without_policies_is_denied_cli(server):
    acct = server.account
    name, creds = server.new_user()
    err = server.cli_error(creds, "iam", "create-user", "--user-name", "x")
    assert err.code == "AccessDenied"
    assert plain(err.message) == (
        f"User: arn:aws:iam::{acct}:user/{name} is not authorized to perform: iam:CreateUser "
        f"on resource: arn:aws:iam::{acct}:user/x because no identity-based policy allows the "
        f"iam:CreateUser action")
    code, msg, status = client_error(server.iam(creds).list_users)
    assert code == "AccessDenied" and status == 403
    assert f"is not authorized to perform: iam:ListUsers on resource: *" in msg or \
        "is not authorized to perform: iam:ListUsers" in msg
    assert client_error(server.iam().get_user, UserName="x")[0] == "NoSuchEntity"


def test_inline_policy_grants_exactly(server):
    acct = server.account
    _, creds = server.new_user(policies=[doc(allow(["iam:ListUsers", "iam:CreateUser"],
                                               f"arn:aws:iam::{acct}:user/made-*"),
                                         allow("iam:ListUsers"))])
    iam = server.iam(creds)
    iam.list_users()
    made = unique("made-")
    assert iam.create_user(UserName=made)["User"]["UserName"] == made
    code, msg, _ = client_error(iam.create_user, UserName=unique("other-"))
    assert code == "AccessDenied"
    assert client_error(iam.delete_user, UserName=made)[0] == "AccessDenied"
    assert server.iam().get_user(UserName=made)["User"]["UserName"] == made


def test_resource_path_in_arn(server):
    """The resource ARN of an existing entity includes its path."""
    acct, iam = server.account, server.iam()
    dev, other = unique("d"), unique("o")
    iam.create_user(UserName=dev, Path="/dev/")
    iam.create_user(UserName=other, Path="/ops/")
    _, creds = server.new_user(policies=[doc(allow("iam:GetUser", f"arn:aws:iam::{acct}:user/dev/*"))])
    assert server.iam(creds).get_user(UserName=dev)["User"]["Path"] == "/dev/"
    code, msg, _ = client_error(server.iam(creds).get_user, UserName=other)
    assert code == "AccessDenied"
    assert f"on resource: arn:aws:iam::{acct}:user/ops/{other}" in msg


def test_policy_variable_username(server):
    acct = server.account
    pol = doc(allow(["iam:ListAccessKeys", "iam:GetUser"], f"arn:aws:iam::{acct}:user/${{aws:username}}"))
    me, creds = server.new_user(policies=[pol])
    other, _ = server.new_user()
    iam = server.iam(creds)
    keys = iam.list_access_keys()["AccessKeyMetadata"]  # no UserName: the caller
    assert [k["AccessKeyId"] for k in keys] == [creds.access_key_id]
    assert keys[0]["UserName"] == me
    assert iam.get_user()["User"]["UserName"] == me
    assert client_error(iam.list_access_keys, UserName=other)[0] == "AccessDenied"


def test_group_policy_grants_members(server):
    iam = server.iam()
    g = unique("readers")
    iam.create_group(GroupName=g)
    iam.put_group_policy(GroupName=g, PolicyName="read", PolicyDocument=dumps(doc(allow("iam:ListGroups"))))
    member, mcreds = server.new_user(groups=[g])
    _, ocreds = server.new_user()
    assert g in [x["GroupName"] for x in server.iam(mcreds).list_groups()["Groups"]]
    assert client_error(server.iam(ocreds).list_groups)[0] == "AccessDenied"
    # managed policy on the group also grants
    arn = iam.create_policy(PolicyName=unique("gm"), PolicyDocument=dumps(doc(allow("iam:ListRoles"))))["Policy"]["Arn"]
    iam.attach_group_policy(GroupName=g, PolicyArn=arn)
    server.iam(mcreds).list_roles()
    # leaving the group takes the grants away at once
    iam.remove_user_from_group(GroupName=g, UserName=member)
    assert client_error(server.iam(mcreds).list_groups)[0] == "AccessDenied"
    assert client_error(server.iam(mcreds).list_roles)[0] == "AccessDenied"


def test_managed_policy_grants_and_new_default_version_applies(server):
    iam = server.iam()
    arn = iam.create_policy(PolicyName=unique("mg"), PolicyDocument=dumps(doc(allow("iam:ListUsers"))))["Policy"]["Arn"]
    _, creds = server.new_user(managed=[arn])
    server.iam(creds).list_users()
    assert client_error(server.iam(creds).list_groups)[0] == "AccessDenied"
    iam.create_policy_version(PolicyArn=arn, PolicyDocument=dumps(doc(allow("iam:ListGroups"))), SetAsDefault=True)
    server.iam(creds).list_groups()
    assert client_error(server.iam(creds).list_users)[0] == "AccessDenied"
    iam.set_default_policy_version(PolicyArn=arn, VersionId="v1")
    server.iam(creds).list_users()


def test_explicit_deny_wins(server):
    acct = server.account
    name, creds = server.new_user(policies=[ALLOW_ALL, doc(deny("iam:DeleteUser"))])
    victim = unique("victim")
    iam = server.iam(creds)
    iam.create_user(UserName=victim)
    code, msg, status = client_error(iam.delete_user, UserName=victim)
    assert code == "AccessDenied" and status == 403
    assert plain(msg) == (f"User: arn:aws:iam::{acct}:user/{name} is not authorized to perform: iam:DeleteUser "
                   f"on resource: arn:aws:iam::{acct}:user/{victim} with an explicit deny in an "
                   f"identity-based policy")
    assert server.iam().get_user(UserName=victim)["User"]["UserName"] == victim


def test_deny_via_group_wins_over_user_allow(server):
    g = unique("nolist")
    server.iam().create_group(GroupName=g)
    server.iam().put_group_policy(GroupName=g, PolicyName="d", PolicyDocument=dumps(doc(deny("iam:List*"))))
    _, creds = server.new_user(policies=[ALLOW_ALL], groups=[g])
    assert client_error(server.iam(creds).list_users)[0] == "AccessDenied"
    server.iam(creds).get_user()


def test_permissions_boundary_limits_user(server):
    iam, acct = server.iam(), server.account
    barn = iam.create_policy(PolicyName=unique("boundary"),
                             PolicyDocument=dumps(doc(allow(["iam:Get*", "iam:List*"]))))["Policy"]["Arn"]
    name, creds = server.new_user(policies=[ALLOW_ALL])
    server.cli(server.root, "iam", "put-user-permissions-boundary", "--user-name", name,
               "--permissions-boundary", barn)
    got = iam.get_user(UserName=name)["User"]
    assert got["PermissionsBoundary"] == {"PermissionsBoundaryType": "PermissionsBoundaryPolicy", "PermissionsBoundaryArn": barn}
    uiam = server.iam(creds)
    uiam.list_users()
    code, msg, _ = client_error(uiam.create_user, UserName="blocked")
    assert code == "AccessDenied"
    assert plain(msg) == (f"User: arn:aws:iam::{acct}:user/{name} is not authorized to perform: iam:CreateUser "
                   f"on resource: arn:aws:iam::{acct}:user/blocked because no permissions boundary "
                   f"allows the iam:CreateUser action")
    # the boundary alone grants nothing
    _, bare = server.new_user(boundary=barn)
    assert client_error(server.iam(bare).list_users)[0] == "AccessDenied"
    iam.delete_user_permissions_boundary(UserName=name)
    assert "PermissionsBoundary" not in iam.get_user(UserName=name)["User"]
    made = unique("unblocked")
    uiam.create_user(UserName=made)
    # a boundary must be an existing managed policy
    code, _, _ = client_error(iam.put_user_permissions_boundary, UserName=name,
                              PermissionsBoundary=f"arn:aws:iam::{acct}:policy/{unique('none')}")
    assert code == "NoSuchEntity"
    # deleting a policy in use as a boundary either fails or leaves its users with nothing
    name2, creds2 = server.new_user(policies=[ALLOW_ALL], boundary=barn)
    server.iam(creds2).list_users()
    try:
        iam.delete_policy(PolicyArn=barn)
    except Exception as e:  # noqa: BLE001
        assert e.response["Error"]["Code"] == "DeleteConflict"
    else:
        assert client_error(server.iam(creds2).list_users)[0] == "AccessDenied", \
            "a user whose boundary policy was deleted must not keep its permissions"


def test_principal_tag_condition(server):
    iam = server.iam()
    pol = doc(allow("iam:GetUser", Condition={"StringEquals": {"aws:PrincipalTag/team": "dev"}}))
    dev, dev_creds = server.new_user(policies=[pol], tags={"team": "dev"})
    ops, ops_creds = server.new_user(policies=[pol], tags={"team": "ops"})
    none, none_creds = server.new_user(policies=[pol])
    assert server.iam(dev_creds).get_user(UserName=ops)["User"]["UserName"] == ops
    assert client_error(server.iam(ops_creds).get_user, UserName=dev)[0] == "AccessDenied"
    assert client_error(server.iam(none_creds).get_user, UserName=dev)[0] == "AccessDenied"
    # retagging changes the decision on the next request
    iam.tag_user(UserName=ops, Tags=[{"Key": "team", "Value": "dev"}])
    assert server.iam(ops_creds).get_user(UserName=dev)["User"]["UserName"] == dev
    iam.untag_user(UserName=dev, TagKeys=["team"])
    assert client_error(server.iam(dev_creds).get_user, UserName=ops)[0] == "AccessDenied"


def test_resource_tag_condition_on_role(server):
    iam, acct = server.iam(), server.account
    tagged, plain = unique("rt"), unique("rp")
    tp = dumps(trust(f"arn:aws:iam::{acct}:root"))
    iam.create_role(RoleName=tagged, AssumeRolePolicyDocument=tp, Tags=[{"Key": "env", "Value": "dev"}])
    iam.create_role(RoleName=plain, AssumeRolePolicyDocument=tp)
    pol = doc(allow("iam:GetRole", Condition={"StringEquals": {"aws:ResourceTag/env": "dev"}}))
    _, creds = server.new_user(policies=[pol])
    assert server.iam(creds).get_role(RoleName=tagged)["Role"]["RoleName"] == tagged
    assert client_error(server.iam(creds).get_role, RoleName=plain)[0] == "AccessDenied"


def test_source_ip_condition(server):
    def ip_policy(cidr):
        return doc(allow("iam:ListUsers", Condition={"IpAddress": {"aws:SourceIp": cidr}}))

    _, local = server.new_user(policies=[ip_policy("127.0.0.1/32")])
    _, remote = server.new_user(policies=[ip_policy("10.0.0.0/8")])
    server.iam(local).list_users()
    assert client_error(server.iam(remote).list_users)[0] == "AccessDenied"
    # a spoofed X-Forwarded-For from an untrusted peer changes nothing
    r = server.raw({"Action": "ListUsers", "Version": V}, creds=remote, headers={"X-Forwarded-For": "10.1.2.3"})
    assert r.status == 403 and r.code == "AccessDenied"
    # NotIpAddress
    _, notip = server.new_user(policies=[doc(allow("iam:ListUsers"),
                                             deny("iam:ListUsers", Condition={"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}))])
    assert client_error(server.iam(notip).list_users)[0] == "AccessDenied"


def test_secure_transport_condition(server):
    """Plain HTTP: aws:SecureTransport is false."""
    _, creds = server.new_user(policies=[doc(allow("iam:ListUsers", Condition={"Bool": {"aws:SecureTransport": "true"}}))])
    assert client_error(server.iam(creds).list_users)[0] == "AccessDenied"
    _, creds2 = server.new_user(policies=[doc(allow("iam:ListUsers", Condition={"Bool": {"aws:SecureTransport": "false"}}))])
    server.iam(creds2).list_users()


def test_delegated_admin_cannot_escape_account(server):
    """A user with iam:* in one account cannot see or change another account's entities."""
    other = server.account_create()
    server.iam(other).create_user(UserName="foreign")
    _, admin = server.new_user(policies=[ALLOW_ALL])
    iam = server.iam(admin)
    assert "foreign" not in [u["UserName"] for u in iam.list_users()["Users"]]
    assert client_error(iam.get_user, UserName="foreign")[0] == "NoSuchEntity"
    foreign_policy = server.iam(other).create_policy(
        PolicyName=unique("fp"), PolicyDocument=dumps(ALLOW_ALL))["Policy"]["Arn"]
    me, _ = server.new_user()
    code, _, _ = client_error(iam.attach_user_policy, UserName=me, PolicyArn=foreign_policy)
    assert code in ("NoSuchEntity", "AccessDenied", "InvalidInput")
    assert iam.list_attached_user_policies(UserName=me)["AttachedPolicies"] == []


def test_user_can_manage_own_keys_with_policy(server):
    acct = server.account
    me, creds = server.new_user(policies=[doc(allow(["iam:CreateAccessKey", "iam:DeleteAccessKey",
                                                     "iam:ListAccessKeys"],
                                                    f"arn:aws:iam::{acct}:user/${{aws:username}}"))])
    k = server.iam(creds).create_access_key()["AccessKey"]
    assert k["UserName"] == me
    server.iam(creds).delete_access_key(AccessKeyId=k["AccessKeyId"])
    assert [x["AccessKeyId"] for x in server.iam(creds).list_access_keys()["AccessKeyMetadata"]] == \
        [creds.access_key_id]


# ---------------------------------------------------------------------------------------
# Bad input: refused with the right error, and nothing changes
# ---------------------------------------------------------------------------------------


@pytest.fixture
def victim(server):
    """A user with one inline policy 'keep' holding POLICY_A."""
    name = unique("victim")
    server.iam().create_user(UserName=name)
    server.iam().put_user_policy(UserName=name, PolicyName="keep", PolicyDocument=dumps(POLICY_A))
    return name


def assert_unchanged(server, name):
    iam = server.iam()
    assert iam.list_user_policies(UserName=name)["PolicyNames"] == ["keep"]
    assert iam.get_user_policy(UserName=name, PolicyName="keep")["PolicyDocument"] == POLICY_A


def test_malformed_effect(server, victim):
    bad = '{"Version":"2012-10-17","Statement":[{"Effect":"Alow","Action":"*","Resource":"*"}]}'
    err = server.cli_error(server.root, "iam", "put-user-policy", "--user-name", victim,
                           "--policy-name", "keep", "--policy-document", bad)
    assert err.code == "MalformedPolicyDocument"
    assert 'Statement[0].Effect: "Alow" is not an effect' in err.message
    assert_unchanged(server, victim)


@pytest.mark.parametrize("bad", [
    "not json",
    '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]',
    '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*","Resource":"x"}]}',
    '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*"}]}',
    '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*"}]}',
    '{"Version":"2013-01-01","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}',
    '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*",'
    '"Condition":{"IpAddress":{"aws:SourceIp":"1.2.3.0/33"}}}]}',
    '{"Version":"2012-10-17","Statement":[]}',
])
def test_malformed_policy_documents(server, victim, bad):
    code, msg, status = client_error(server.iam().put_user_policy, UserName=victim, PolicyName="keep",
                                     PolicyDocument=bad)
    assert code == "MalformedPolicyDocument" and status == 400, (code, msg)
    assert msg
    code, msg, status = client_error(server.iam().put_user_policy, UserName=victim, PolicyName="new",
                                     PolicyDocument=bad)
    assert code == "MalformedPolicyDocument"
    assert_unchanged(server, victim)


def test_malformed_managed_policy_creates_nothing(server):
    pname = unique("badmp")
    bad = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*","Bogus":1}]}'
    assert client_error(server.iam().create_policy, PolicyName=pname, PolicyDocument=bad)[0] == \
        "MalformedPolicyDocument"
    assert pname not in [p["PolicyName"] for p in server.iam().list_policies(Scope="Local")["Policies"]]
    arn = server.iam().create_policy(PolicyName=pname, PolicyDocument=dumps(POLICY_A))["Policy"]["Arn"]
    assert client_error(server.iam().create_policy_version, PolicyArn=arn, PolicyDocument=bad)[0] == \
        "MalformedPolicyDocument"
    vs = server.iam().list_policy_versions(PolicyArn=arn)["Versions"]
    assert [v["VersionId"] for v in vs] == ["v1"]


def test_unknown_actions_are_accepted(server, victim):
    pol = doc(allow(["iam:FrobnicateWidgets", "madeup:Thing", "ecr:*"]))
    server.iam().put_user_policy(UserName=victim, PolicyName="odd", PolicyDocument=dumps(pol))
    assert server.iam().get_user_policy(UserName=victim, PolicyName="odd")["PolicyDocument"] == pol


def test_oversized_inline_policy(server, victim):
    # > 2048 non-whitespace characters: the inline user policy quota (AWS: 2,048)
    # and > 10,240 (the managed policy quota): either way refused with the size named.
    statements = [allow(f"iam:Get{'X' * 40}{i}", f"arn:aws:iam::{server.account}:user/{'y' * 40}{i}")
                  for i in range(200)]
    big = dumps(doc(*statements))
    assert len(re.sub(r"\s", "", big)) > 10240
    code, msg, status = client_error(server.iam().put_user_policy, UserName=victim, PolicyName="keep",
                                     PolicyDocument=big)
    assert 400 <= status < 500
    assert code in ("MalformedPolicyDocument", "LimitExceeded"), code
    assert re.search(r"size|length|large|exceed|characters|quota", msg, re.I), msg
    assert_unchanged(server, victim)
    code, msg, status = client_error(server.iam().create_policy, PolicyName=unique("big"), PolicyDocument=big)
    assert code in ("MalformedPolicyDocument", "LimitExceeded"), code
    assert re.search(r"size|length|large|exceed|characters|quota", msg, re.I), msg


def test_oversized_trust_policy(server):
    acct = server.account
    name = unique("bigtrust")
    principals = [f"arn:aws:iam::{acct}:user/{'u' * 40}{i}" for i in range(60)]
    big = dumps(trust(principals))
    assert len(big) > 2048
    code, msg, status = client_error(server.iam().create_role, RoleName=name, AssumeRolePolicyDocument=big)
    assert 400 <= status < 500
    assert code in ("MalformedPolicyDocument", "LimitExceeded"), code
    assert client_error(server.iam().get_role, RoleName=name)[0] == "NoSuchEntity"


def test_malformed_query_string(server, victim):
    r = server.raw(f"Action=PutUserPolicy&Version={V}&UserName={victim}&PolicyName=keep"
                   f"&PolicyDocument=%7B%zz", creds=server.root)
    assert r.status == 400 and r.code == "MalformedQueryString", (r.status, r.body)
    assert_unchanged(server, victim)
    name = unique("pct")
    r = server.raw(f"Action=CreateUser&Version={V}&UserName={name}%G1", creds=server.root)
    assert r.status == 400 and r.code == "MalformedQueryString"
    r = server.raw(f"Action=CreateUser&Version={V}&UserName={name}%", creds=server.root)
    assert r.status == 400 and r.code == "MalformedQueryString"
    assert client_error(server.iam().get_user, UserName=name)[0] == "NoSuchEntity"


def test_invalid_utf8_in_form(server, victim):
    r = server.raw(f"Action=PutUserPolicy&Version={V}&UserName={victim}&PolicyName=keep"
                   f"&PolicyDocument=%FF%FE", creds=server.root)
    assert 400 <= r.status < 500, r.body
    assert r.code in ("MalformedQueryString", "MalformedPolicyDocument", "ValidationError", "InvalidParameterValue")
    assert_unchanged(server, victim)


def test_missing_required_parameter(server, victim):
    r = server.raw({"Action": "PutUserPolicy", "Version": V, "UserName": victim, "PolicyName": "keep"},
                   creds=server.root)
    assert r.status == 400 and r.code in ("ValidationError", "MissingParameter"), r.body
    assert_unchanged(server, victim)


def test_invalid_policy_name(server, victim):
    code, _, _ = client_error(server.iam().put_user_policy, UserName=victim, PolicyName="bad name/x",
                              PolicyDocument=dumps(POLICY_B))
    assert code == "ValidationError"
    assert_unchanged(server, victim)


def test_wrong_version_parameter(server):
    r = server.raw({"Action": "ListUsers", "Version": "2099-01-01"}, creds=server.root)
    assert r.status == 400 and r.code in ("InvalidParameterValue", "InvalidAction"), r.body


# ---------------------------------------------------------------------------------------
# Concurrency
# ---------------------------------------------------------------------------------------


def _parallel(fns):
    from concurrent.futures import ThreadPoolExecutor

    def run(fn):
        try:
            return ("ok", fn())
        except Exception as e:  # noqa: BLE001
            return ("err", getattr(e, "response", {}).get("Error", {}).get("Code", repr(e)))

    with ThreadPoolExecutor(len(fns)) as ex:
        return list(ex.map(run, fns))


def test_concurrent_creates_same_name(server):
    name = unique("race")
    out = _parallel([lambda: server.iam().create_user(UserName=name) for _ in range(8)])
    oks = [o for o in out if o[0] == "ok"]
    errs = [o[1] for o in out if o[0] == "err"]
    assert len(oks) == 1, out
    assert set(errs) == {"EntityAlreadyExists"}, errs


def test_concurrent_access_key_limit(server):
    name = unique("keyrace")
    server.iam().create_user(UserName=name)
    out = _parallel([lambda: server.iam().create_access_key(UserName=name) for _ in range(6)])
    assert sum(1 for o in out if o[0] == "ok") == 2, out
    assert {o[1] for o in out if o[0] == "err"} == {"LimitExceeded"}, out
    assert len(server.iam().list_access_keys(UserName=name)["AccessKeyMetadata"]) == 2


def test_concurrent_policy_versions_limit(server):
    arn = server.iam().create_policy(PolicyName=unique("vrace"), PolicyDocument=dumps(POLICY_A))["Policy"]["Arn"]
    out = _parallel([lambda: server.iam().create_policy_version(PolicyArn=arn, PolicyDocument=dumps(POLICY_B))
                     for _ in range(8)])
    assert sum(1 for o in out if o[0] == "ok") == 4, out
    vs = server.iam().list_policy_versions(PolicyArn=arn)["Versions"]
    assert len(vs) == 5 and len({v["VersionId"] for v in vs}) == 5


def test_concurrent_distinct_users(server):
    prefix = "/" + unique("conc") + "/"
    names = [unique("c") for _ in range(16)]
    out = _parallel([lambda n=n: server.iam().create_user(UserName=n, Path=prefix) for n in names])
    assert all(o[0] == "ok" for o in out), out
    listed = server.iam().list_users(PathPrefix=prefix)["Users"]
    assert sorted(u["UserName"] for u in listed) == sorted(names)


def test_unicode_tags_and_policy(server):
    iam = server.iam()
    name = unique("uni")
    iam.create_user(UserName=name, Tags=[{"Key": "owner", "Value": "Zoë Ünïcode"}])
    assert iam.list_user_tags(UserName=name)["Tags"] == [{"Key": "owner", "Value": "Zoë Ünïcode"}]
    pol = doc({"Sid": "Uni", "Effect": "Allow", "Action": "iam:GetUser", "Resource": "*",
               "Condition": {"StringEquals": {"aws:PrincipalTag/owner": "Zoë Ünïcode"}}})
    iam.put_user_policy(UserName=name, PolicyName="uni", PolicyDocument=dumps(pol))
    assert iam.get_user_policy(UserName=name, PolicyName="uni")["PolicyDocument"] == pol
    k = iam.create_access_key(UserName=name)["AccessKey"]
    from berth import Creds
    assert server.iam(Creds.from_access_key(k)).get_user()["User"]["UserName"] == name


def test_request_body_too_large(server):
    body = "Action=ListUsers&Version=2010-05-08&Pad=" + "a" * (1 << 20)
    r = server.raw(body, creds=server.root)
    assert r.status == 413 and r.code == "RequestEntityTooLarge", (r.status, r.body[:200])


def test_get_account_authorization_details(server):
    """Every user, group, role and managed policy with its documents, decoded by the aws
    CLI; Filter narrows; MaxItems/Marker pages through all of it; a caller without
    iam:GetAccountAuthorizationDetails is refused."""
    root = server.root
    iam = server.iam(root)
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:BatchGetImage", "Resource": "*"}]}
    arn = iam.create_policy(PolicyName="details-managed", PolicyDocument=json.dumps(doc))["Policy"]["Arn"]
    iam.create_group(GroupName="details-group")
    iam.put_group_policy(GroupName="details-group", PolicyName="g", PolicyDocument=json.dumps(doc))
    iam.attach_group_policy(GroupName="details-group", PolicyArn=arn)
    user, creds = server.new_user(policies=[doc], managed=[arn], groups=["details-group"], tags={"team": "a"},
                                  boundary=arn)
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{server.account}:root"},
                                                    "Action": "sts:AssumeRole"}]}
    iam.create_role(RoleName="details-role", AssumeRolePolicyDocument=json.dumps(trust), Tags=[{"Key": "k", "Value": "v"}])
    iam.put_role_policy(RoleName="details-role", PolicyName="r", PolicyDocument=json.dumps(doc))

    out = server.cli(root, "iam", "get-account-authorization-details")
    u = next(x for x in out["UserDetailList"] if x["UserName"] == user)
    assert u["GroupList"] == ["details-group"]
    assert u["AttachedManagedPolicies"] == [{"PolicyName": "details-managed", "PolicyArn": arn}]
    assert u["UserPolicyList"][0]["PolicyDocument"] == doc
    assert u["PermissionsBoundary"]["PermissionsBoundaryArn"] == arn
    assert {"Key": "team", "Value": "a"} in u["Tags"]
    g = next(x for x in out["GroupDetailList"] if x["GroupName"] == "details-group")
    assert g["GroupPolicyList"] == [{"PolicyName": "g", "PolicyDocument": doc}]
    r = next(x for x in out["RoleDetailList"] if x["RoleName"] == "details-role")
    assert r["AssumeRolePolicyDocument"] == trust and r["RolePolicyList"][0]["PolicyDocument"] == doc
    assert r["Tags"] == [{"Key": "k", "Value": "v"}]
    p = next(x for x in out["Policies"] if x["Arn"] == arn)
    assert p["PolicyVersionList"] == [{"Document": doc, "VersionId": "v1", "IsDefaultVersion": True,
                                       "CreateDate": p["PolicyVersionList"][0]["CreateDate"]}]

    only_roles = server.cli(root, "iam", "get-account-authorization-details", "--filter", "Role")
    assert only_roles["UserDetailList"] == [] and only_roles["Policies"] == []
    assert any(x["RoleName"] == "details-role" for x in only_roles["RoleDetailList"])
    assert server.cli_error(root, "iam", "get-account-authorization-details", "--filter", "Nope").code == "ValidationError"

    total = sum(len(out[k]) for k in ("UserDetailList", "GroupDetailList", "RoleDetailList", "Policies"))
    seen, marker = 0, None
    while True:
        kw = {"MaxItems": 2, **({"Marker": marker} if marker else {})}
        page = iam.get_account_authorization_details(**kw)
        seen += sum(len(page[k]) for k in ("UserDetailList", "GroupDetailList", "RoleDetailList", "Policies"))
        if not page["IsTruncated"]:
            break
        marker = page["Marker"]
    assert seen == total

    err = server.cli_error(creds, "iam", "get-account-authorization-details")
    assert err.code == "AccessDenied" and "iam:GetAccountAuthorizationDetails" in err.message


def test_control_characters_in_input_give_a_parseable_error(server):
    """A name with control characters is refused with ValidationError in XML a client can
    parse (characters XML cannot carry are replaced in the echo)."""
    import xml.etree.ElementTree as ET

    r = server.raw({"Action": "CreateUser", "Version": V, "UserName": "bad\x01\x1bname"}, creds=server.root)
    assert r.status == 400
    root = ET.fromstring(r.body)
    assert root.find(".//{*}Code").text == "ValidationError"
    message = root.find(".//{*}Message").text
    assert "at 'userName'" in message and "\x01" not in message and "\x1b" not in message


def test_list_entities_for_policy(server):
    """ListEntitiesForPolicy: who has a managed policy attached (users, groups, roles), who
    uses it as boundary, filtered and paged; only the caller's account; AWS managed too."""
    root = server.root
    iam = server.iam(root)
    doc = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:ListImages", "Resource": "*"}]})
    arn = iam.create_policy(PolicyName=unique("lefp"), PolicyDocument=doc)["Policy"]["Arn"]
    user, _ = server.new_user(managed=[arn])
    bounded, _ = server.new_user(boundary=arn)
    group = unique("lefpg")
    iam.create_group(GroupName=group)
    iam.attach_group_policy(GroupName=group, PolicyArn=arn)
    role = unique("lefpr")
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust(f"arn:aws:iam::{server.account}:root")))
    iam.attach_role_policy(RoleName=role, PolicyArn=arn)

    out = server.cli(root, "iam", "list-entities-for-policy", "--policy-arn", arn)
    assert [u["UserName"] for u in out["PolicyUsers"]] == sorted([user, bounded], key=str.lower)
    assert [g["GroupName"] for g in out["PolicyGroups"]] == [group]
    assert [r["RoleName"] for r in out["PolicyRoles"]] == [role]
    assert all(u["UserId"].startswith("AIDA") for u in out["PolicyUsers"])
    only_policy = iam.list_entities_for_policy(PolicyArn=arn, PolicyUsageFilter="PermissionsPolicy")
    assert [u["UserName"] for u in only_policy["PolicyUsers"]] == [user]
    only_boundary = iam.list_entities_for_policy(PolicyArn=arn, PolicyUsageFilter="PermissionsBoundary")
    assert [u["UserName"] for u in only_boundary["PolicyUsers"]] == [bounded]
    roles = iam.list_entities_for_policy(PolicyArn=arn, EntityFilter="Role")
    assert roles["PolicyUsers"] == [] and [r["RoleName"] for r in roles["PolicyRoles"]] == [role]
    seen, marker = 0, None
    while True:
        page = iam.list_entities_for_policy(PolicyArn=arn, MaxItems=1, **({"Marker": marker} if marker else {}))
        seen += len(page["PolicyUsers"]) + len(page["PolicyGroups"]) + len(page["PolicyRoles"])
        if not page["IsTruncated"]:
            break
        marker = page["Marker"]
    assert seen == 4
    assert server.cli_error(root, "iam", "list-entities-for-policy", "--policy-arn", arn,
                            "--entity-filter", "Nope").code == "ValidationError"

    # An AWS managed policy lists this account's entities only.
    ro = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly"
    reader, _ = server.new_user(managed=[ro])
    other = server.account_create()
    outsider, _ = server.new_user(managed=[ro], admin=other)
    mine = [u["UserName"] for u in server.cli(root, "iam", "list-entities-for-policy", "--policy-arn", ro)["PolicyUsers"]]
    theirs = [u["UserName"] for u in server.cli(other, "iam", "list-entities-for-policy", "--policy-arn", ro)["PolicyUsers"]]
    assert reader in mine and outsider not in mine
    assert outsider in theirs and reader not in theirs
