"""STS end to end: caller identity, AssumeRole (same and cross account), session and
federation tokens, temporary credentials."""

import datetime
import json
import re
import time

import pytest

from berth import (
    ALLOW_ALL, plain, SETTLE, Creds, allow, client_error, deny, doc, dumps,  # noqa: F401
                   server, trust, unique)


@pytest.fixture(scope="module")
def other(server):
    """A second account (root credentials)."""
    return server.account_create()


def make_role(server, trust_doc, policies=(), admin=None, max_session=None, name=None, tags=None):
    iam = server.iam(admin)
    name = name or unique("role")
    kw = {"RoleName": name, "AssumeRolePolicyDocument": dumps(trust_doc)}
    if max_session:
        kw["MaxSessionDuration"] = max_session
    if tags:
        kw["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]
    role = iam.create_role(**kw)["Role"]
    for i, p in enumerate(policies):
        iam.put_role_policy(RoleName=name, PolicyName=f"r{i}", PolicyDocument=dumps(p))
    return name, role


def assume(server, creds, role_arn, session="sess", **kw):
    r = server.sts(creds).assume_role(RoleArn=role_arn, RoleSessionName=session, **kw)
    return r, Creds.from_sts(r["Credentials"])


# ---------------------------------------------------------------------------------------
# GetCallerIdentity
# ---------------------------------------------------------------------------------------


def test_caller_identity_root_user_role(server):
    acct = server.account
    ident = server.cli(server.root, "sts", "get-caller-identity")
    assert ident == {"UserId": acct, "Account": acct, "Arn": f"arn:aws:iam::{acct}:root"}

    name, ucreds = server.new_user(path="/eng/")
    uid = server.iam().get_user(UserName=name)["User"]["UserId"]
    ident = server.sts(ucreds).get_caller_identity()
    assert ident["UserId"] == uid and uid.startswith("AIDA")
    assert ident["Account"] == acct
    assert ident["Arn"] == f"arn:aws:iam::{acct}:user/eng/{name}"
    ident = server.cli(ucreds, "sts", "get-caller-identity")
    assert ident["Arn"] == f"arn:aws:iam::{acct}:user/eng/{name}"

    rname, role = make_role(server, trust(f"arn:aws:iam::{acct}:user/eng/{name}"))
    out = server.cli(ucreds, "sts", "assume-role", "--role-arn", role["Arn"], "--role-session-name", "cli-sess")
    c = Creds.from_sts(out["Credentials"])
    assert re.fullmatch(r"ASIA[A-Z0-9]{16}", c.access_key_id)
    assert c.session_token
    assert out["AssumedRoleUser"] == {"AssumedRoleId": f"{role['RoleId']}:cli-sess",
                                      "Arn": f"arn:aws:sts::{acct}:assumed-role/{rname}/cli-sess"}
    ident = server.cli(c, "sts", "get-caller-identity")
    assert ident == {"UserId": f"{role['RoleId']}:cli-sess", "Account": acct,
                     "Arn": f"arn:aws:sts::{acct}:assumed-role/{rname}/cli-sess"}


# ---------------------------------------------------------------------------------------
# AssumeRole, same account
# ---------------------------------------------------------------------------------------


def test_assume_role_trust_names_user(server):
    acct = server.account
    name, ucreds = server.new_user()  # no identity policies at all
    rname, role = make_role(server, trust(f"arn:aws:iam::{acct}:user/{name}"),
                            policies=[doc(allow(["iam:ListUsers", "iam:GetUser"]))])
    r, c = assume(server, ucreds, role["Arn"], "s1")
    exp = r["Credentials"]["Expiration"]
    left = (exp - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    assert 3500 < left <= 3600 + 5, left  # default duration: one hour
    iam = server.iam(c)
    assert name in [u["UserName"] for u in iam.list_users()["Users"]]
    code, msg, status = client_error(iam.create_user, UserName="nope")
    assert code == "AccessDenied" and status == 403
    assert plain(msg) == (f"User: arn:aws:sts::{acct}:assumed-role/{rname}/s1 is not authorized to perform: "
                   f"iam:CreateUser on resource: arn:aws:iam::{acct}:user/nope because no "
                   f"identity-based policy allows the iam:CreateUser action")


def test_assume_role_trust_names_account_needs_identity_policy(server):
    acct = server.account
    rname, role = make_role(server, trust(f"arn:aws:iam::{acct}:root"))
    _, bare = server.new_user()
    code, msg, status = client_error(server.sts(bare).assume_role, RoleArn=role["Arn"], RoleSessionName="x1")
    assert code == "AccessDenied" and status == 403
    assert "is not authorized to perform: sts:AssumeRole" in msg
    assert role["Arn"] in msg
    _, allowed = server.new_user(policies=[doc(allow("sts:AssumeRole", role["Arn"]))])
    r, c = assume(server, allowed, role["Arn"], "x2")
    assert server.sts(c).get_caller_identity()["Arn"] == f"arn:aws:sts::{acct}:assumed-role/{rname}/x2"
    # an identity policy for another role does not help
    _, wrong = server.new_user(policies=[doc(allow("sts:AssumeRole", f"arn:aws:iam::{acct}:role/other"))])
    assert client_error(server.sts(wrong).assume_role, RoleArn=role["Arn"], RoleSessionName="x3")[0] == \
        "AccessDenied"


def test_assume_role_not_trusted(server):
    acct = server.account
    a, _ = server.new_user()
    _, b = server.new_user(policies=[doc(allow("sts:AssumeRole"))])
    _, role = make_role(server, trust(f"arn:aws:iam::{acct}:user/{a}"))
    code, msg, _ = client_error(server.sts(b).assume_role, RoleArn=role["Arn"], RoleSessionName="nope")
    assert code == "AccessDenied"
    assert "is not authorized to perform: sts:AssumeRole on resource: " + role["Arn"] in msg
    # nonexistent role: AccessDenied as well (AWS does not reveal existence)
    code, _, _ = client_error(server.sts(b).assume_role, RoleArn=f"arn:aws:iam::{acct}:role/{unique('none')}",
                              RoleSessionName="nope")
    assert code == "AccessDenied"


def test_trust_policy_deny_wins(server):
    acct = server.account
    name, u = server.new_user()
    tdoc = doc({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{acct}:user/{name}"}, "Action": "sts:AssumeRole"},
               {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"})
    _, role = make_role(server, tdoc)
    assert client_error(server.sts(u).assume_role, RoleArn=role["Arn"], RoleSessionName="dd")[0] == "AccessDenied"


def test_root_cannot_assume_role(server):
    acct = server.account
    _, role = make_role(server, trust(f"arn:aws:iam::{acct}:root"))
    err = server.cli_error(server.root, "sts", "assume-role", "--role-arn", role["Arn"],
                           "--role-session-name", "rootsess")
    assert err.code == "AccessDenied"
    assert err.message == "Roles may not be assumed by root accounts."


def test_assume_role_duration(server):
    acct = server.account
    name, u = server.new_user()
    rname, role = make_role(server, trust(f"arn:aws:iam::{acct}:user/{name}"))
    r, _ = assume(server, u, role["Arn"], "d900", DurationSeconds=900)
    left = (r["Credentials"]["Expiration"] - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    assert 800 < left <= 905
    assume(server, u, role["Arn"], "d3600", DurationSeconds=3600)
    code, msg, status = client_error(server.sts(u).assume_role, RoleArn=role["Arn"], RoleSessionName="d3601",
                                     DurationSeconds=3601)
    assert code == "ValidationError" and status == 400
    assert "3600" in msg or "MaxSessionDuration" in msg or "duration" in msg.lower()
    # below 900: boto3 refuses client side, so send it raw
    r = server.raw({"Action": "AssumeRole", "Version": "2011-06-15", "RoleArn": role["Arn"],
                    "RoleSessionName": "d899", "DurationSeconds": "899"}, creds=u)
    assert r.status == 400 and r.code == "ValidationError", r.body
    r = server.raw({"Action": "UpdateRole", "Version": "2010-05-08", "RoleName": rname,
                    "MaxSessionDuration": "7200"}, creds=server.root)
    assert r.status == 200, r.body
    r, _ = assume(server, u, role["Arn"], "d7200", DurationSeconds=7200)
    left = (r["Credentials"]["Expiration"] - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    assert 7100 < left <= 7205


def test_invalid_session_name(server):
    acct = server.account
    name, u = server.new_user()
    _, role = make_role(server, trust(f"arn:aws:iam::{acct}:user/{name}"))
    code, _, _ = client_error(server.sts(u).assume_role, RoleArn=role["Arn"], RoleSessionName="bad name!")
    assert code == "ValidationError"
    code, _, _ = client_error(server.sts(u).assume_role, RoleArn="not-an-arn-at-all-xx", RoleSessionName="ok")
    assert code == "ValidationError"


def test_session_policy_narrows(server):
    acct = server.account
    name, u = server.new_user()
    _, role = make_role(server, trust(f"arn:aws:iam::{acct}:user/{name}"), policies=[ALLOW_ALL])
    _, c = assume(server, u, role["Arn"], "narrow", Policy=dumps(doc(allow("iam:GetUser"))))
    iam = server.iam(c)
    assert iam.get_user(UserName=name)["User"]["UserName"] == name
    code, msg, _ = client_error(iam.list_users)
    assert code == "AccessDenied"
    assert "is not authorized to perform: iam:ListUsers" in msg
    # the session policy cannot widen: the role allows only ListRoles here
    _, role2 = make_role(server, trust(f"arn:aws:iam::{acct}:user/{name}"), policies=[doc(allow("iam:ListRoles"))])
    _, c2 = assume(server, u, role2["Arn"], "wide", Policy=dumps(ALLOW_ALL))
    server.iam(c2).list_roles()
    assert client_error(server.iam(c2).list_users)[0] == "AccessDenied"


def test_session_policy_arns(server):
    acct = server.account
    name, u = server.new_user()
    _, role = make_role(server, trust(f"arn:aws:iam::{acct}:user/{name}"), policies=[ALLOW_ALL])
    parn = server.iam().create_policy(PolicyName=unique("sp"), PolicyDocument=dumps(doc(allow("iam:ListGroups"))))["Policy"]["Arn"]
    r, c = assume(server, u, role["Arn"], "arns", PolicyArns=[{"arn": parn}])
    server.iam(c).list_groups()
    assert client_error(server.iam(c).list_users)[0] == "AccessDenied"
    assert "PackedPolicySize" in r
    code, _, _ = client_error(server.sts(u).assume_role, RoleArn=role["Arn"], RoleSessionName="bad",
                              Policy="{not json")
    assert code == "MalformedPolicyDocument"


def test_session_policy_too_large(server):
    acct = server.account
    name, u = server.new_user()
    _, role = make_role(server, trust(f"arn:aws:iam::{acct}:user/{name}"), policies=[ALLOW_ALL])
    big = dumps(doc(*[allow(f"iam:Get{'X' * 30}{i}") for i in range(60)]))
    assert len(big) > 2048
    code, msg, status = client_error(server.sts(u).assume_role, RoleArn=role["Arn"], RoleSessionName="big",
                                     Policy=big)
    assert 400 <= status < 500
    assert code in ("ValidationError", "PackedPolicyTooLarge", "MalformedPolicyDocument", "LimitExceeded"), code


def test_explicit_deny_in_role_policy(server):
    acct = server.account
    name, u = server.new_user()
    _, role = make_role(server, trust(f"arn:aws:iam::{acct}:user/{name}"),
                        policies=[ALLOW_ALL, doc(deny("iam:ListUsers"))])
    _, c = assume(server, u, role["Arn"], "dw")
    code, msg, _ = client_error(server.iam(c).list_users)
    assert code == "AccessDenied" and "explicit deny" in msg
    server.iam(c).list_roles()


def test_role_permissions_boundary(server):
    acct = server.account
    name, u = server.new_user()
    rname, role = make_role(server, trust(f"arn:aws:iam::{acct}:user/{name}"), policies=[ALLOW_ALL])
    barn = server.iam().create_policy(PolicyName=unique("rb"), PolicyDocument=dumps(doc(allow("iam:ListRoles"))))["Policy"]["Arn"]
    server.iam().put_role_permissions_boundary(RoleName=rname, PermissionsBoundary=barn)
    assert server.iam().get_role(RoleName=rname)["Role"]["PermissionsBoundary"]["PermissionsBoundaryArn"] == barn
    _, c = assume(server, u, role["Arn"], "bnd")
    server.iam(c).list_roles()
    assert client_error(server.iam(c).list_users)[0] == "AccessDenied"
    server.iam().delete_role_permissions_boundary(RoleName=rname)
    server.iam(c).list_users()


def test_session_tags_and_principal_tag(server):
    acct = server.account
    name, u = server.new_user(policies=[doc(allow(["sts:AssumeRole", "sts:TagSession"]))])
    cond = {"StringEquals": {"aws:PrincipalTag/team": "dev"}}
    role_policy = doc(allow("iam:ListUsers", Condition=cond))
    # trust without sts:TagSession: tags are refused
    _, plain = make_role(server, trust(f"arn:aws:iam::{acct}:user/{name}"), policies=[role_policy])
    code, msg, _ = client_error(server.sts(u).assume_role, RoleArn=plain["Arn"], RoleSessionName="t0",
                                Tags=[{"Key": "team", "Value": "dev"}])
    assert code == "AccessDenied"
    assert "sts:TagSession" in msg
    # trust with sts:TagSession
    tagging = trust(f"arn:aws:iam::{acct}:user/{name}", action=["sts:AssumeRole", "sts:TagSession"])
    _, role = make_role(server, tagging, policies=[role_policy], tags={"team": "ops"})
    _, dev = assume(server, u, role["Arn"], "t1", Tags=[{"Key": "team", "Value": "dev"}])
    server.iam(dev).list_users()  # session tag wins over the role's own tag
    _, ops = assume(server, u, role["Arn"], "t2", Tags=[{"Key": "team", "Value": "ops"}])
    assert client_error(server.iam(ops).list_users)[0] == "AccessDenied"
    _, untagged = assume(server, u, role["Arn"], "t3")  # role's tag team=ops applies
    assert client_error(server.iam(untagged).list_users)[0] == "AccessDenied"
    # the caller without sts:TagSession in its identity policy cannot tag
    _, u2 = server.new_user(policies=[doc(allow("sts:AssumeRole"))])
    tagging2 = trust(f"arn:aws:iam::{acct}:root", action=["sts:AssumeRole", "sts:TagSession"])
    _, role2 = make_role(server, tagging2, policies=[role_policy])
    code, msg, _ = client_error(server.sts(u2).assume_role, RoleArn=role2["Arn"], RoleSessionName="t4",
                                Tags=[{"Key": "team", "Value": "dev"}])
    assert code == "AccessDenied"


def test_trust_condition_on_request_tag(server):
    acct = server.account
    name, u = server.new_user()
    tdoc = doc({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{acct}:user/{name}"},
                "Action": ["sts:AssumeRole", "sts:TagSession"],
                "Condition": {"StringEquals": {"aws:RequestTag/project": "berth"}}})
    _, role = make_role(server, tdoc)
    assume(server, u, role["Arn"], "rt1", Tags=[{"Key": "project", "Value": "berth"}])
    assert client_error(server.sts(u).assume_role, RoleArn=role["Arn"], RoleSessionName="rt2",
                        Tags=[{"Key": "project", "Value": "other"}])[0] == "AccessDenied"
    assert client_error(server.sts(u).assume_role, RoleArn=role["Arn"], RoleSessionName="rt3")[0] == "AccessDenied"


def test_external_id(server):
    acct = server.account
    name, u = server.new_user()
    tdoc = trust(f"arn:aws:iam::{acct}:user/{name}",
                 Condition={"StringEquals": {"sts:ExternalId": "secret-ext-1"}})
    _, role = make_role(server, tdoc)
    assert client_error(server.sts(u).assume_role, RoleArn=role["Arn"], RoleSessionName="e1")[0] == "AccessDenied"
    assert client_error(server.sts(u).assume_role, RoleArn=role["Arn"], RoleSessionName="e2",
                        ExternalId="wrong-ext")[0] == "AccessDenied"
    r, c = assume(server, u, role["Arn"], "e3", ExternalId="secret-ext-1")
    assert r["AssumedRoleUser"]["Arn"].endswith("/e3")


def test_source_ip_in_trust_policy(server):
    acct = server.account
    name, u = server.new_user()
    ok_role = make_role(server, trust(f"arn:aws:iam::{acct}:user/{name}",
                                      Condition={"IpAddress": {"aws:SourceIp": "127.0.0.1/32"}}))[1]
    no_role = make_role(server, trust(f"arn:aws:iam::{acct}:user/{name}",
                                      Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}))[1]
    assume(server, u, ok_role["Arn"], "ip1")
    assert client_error(server.sts(u).assume_role, RoleArn=no_role["Arn"], RoleSessionName="ip2")[0] == "AccessDenied"


def test_role_chaining(server):
    acct = server.account
    name, u = server.new_user()
    r1name, r1 = make_role(server, trust(f"arn:aws:iam::{acct}:user/{name}"),
                           policies=[doc(allow("sts:AssumeRole"))])
    r2name, r2 = make_role(server, trust(f"arn:aws:iam::{acct}:role/{r1name}"), max_session=43200)
    _, c1 = assume(server, u, r1["Arn"], "hop1")
    _, c2 = assume(server, c1, r2["Arn"], "hop2")
    assert server.sts(c2).get_caller_identity()["Arn"] == f"arn:aws:sts::{acct}:assumed-role/{r2name}/hop2"
    # a chained session is limited to one hour
    code, _, _ = client_error(server.sts(c1).assume_role, RoleArn=r2["Arn"], RoleSessionName="hop3",
                              DurationSeconds=7200)
    assert code == "ValidationError"


def test_deleted_user_session_tokens_stop_working(server):
    """GetSessionToken credentials belong to the user (its unique id), not to its name."""
    acct = server.account
    iam = server.iam()
    name, u = server.new_user()
    c = Creds.from_sts(server.sts(u).get_session_token()["Credentials"])
    assert server.sts(c).get_caller_identity()["Arn"] == f"arn:aws:iam::{acct}:user/{name}"
    iam.delete_access_key(UserName=name, AccessKeyId=u.access_key_id)
    iam.delete_user(UserName=name)
    code, _, status = client_error(server.sts(c).get_caller_identity)
    assert status == 403 and code in ("AccessDenied", "InvalidClientTokenId"), code
    new_id = iam.create_user(UserName=name)["User"]["UserId"]
    code, _, status = client_error(server.sts(c).get_caller_identity)
    assert status == 403 and code in ("AccessDenied", "InvalidClientTokenId"), \
        f"old session of a deleted user works again for the re-created user {new_id}"


def test_deleted_role_sessions_stop_working(server):
    acct = server.account
    name, u = server.new_user()
    rname, role = make_role(server, trust(f"arn:aws:iam::{acct}:user/{name}"), policies=[ALLOW_ALL])
    _, c = assume(server, u, role["Arn"], "gone")
    server.iam(c).list_users()
    server.iam().delete_role_policy(RoleName=rname, PolicyName="r0")
    assert client_error(server.iam(c).list_users)[0] == "AccessDenied"
    server.iam().delete_role(RoleName=rname)
    code, _, status = client_error(server.iam(c).list_users)
    assert status == 403 and code in ("AccessDenied", "InvalidClientTokenId")
    # re-creating a role of the same name does not revive the old session (new RoleId)
    _, new_role = make_role(server, trust(f"arn:aws:iam::{acct}:user/{name}"), policies=[ALLOW_ALL], name=rname)
    code, _, status = client_error(server.iam(c).list_users)
    assert status == 403 and code in ("AccessDenied", "InvalidClientTokenId"), \
        f"a session of the deleted role got the permissions of the new role {new_role['RoleId']}"


# ---------------------------------------------------------------------------------------
# Cross account
# ---------------------------------------------------------------------------------------


def test_cross_account_assume_role(server, other):
    a, b = server.account, other.account_id
    name, u = server.new_user(policies=[doc(allow("sts:AssumeRole", f"arn:aws:iam::{b}:role/*"))])
    server.iam(other).create_user(UserName="b-resident")
    rname, role = make_role(server, trust(f"arn:aws:iam::{a}:root"), admin=other,
                            policies=[doc(allow(["iam:ListUsers", "iam:GetUser"]))])
    assert role["Arn"] == f"arn:aws:iam::{b}:role/{rname}"
    out = server.cli(u, "sts", "assume-role", "--role-arn", role["Arn"], "--role-session-name", "xacct")
    c = Creds.from_sts(out["Credentials"])
    ident = server.sts(c).get_caller_identity()
    assert ident["Account"] == b
    assert ident["Arn"] == f"arn:aws:sts::{b}:assumed-role/{rname}/xacct"
    # acts in account B, not A
    users = [x["UserName"] for x in server.iam(c).list_users()["Users"]]
    assert "b-resident" in users and name not in users


def test_cross_account_requires_identity_policy(server, other):
    a, b = server.account, other.account_id
    name, bare = server.new_user()
    _, role = make_role(server, trust(f"arn:aws:iam::{a}:user/{name}"), admin=other)
    code, msg, _ = client_error(server.sts(bare).assume_role, RoleArn=role["Arn"], RoleSessionName="xa")
    assert code == "AccessDenied"
    assert "is not authorized to perform: sts:AssumeRole" in msg


def test_cross_account_requires_trust(server, other):
    a, b = server.account, other.account_id
    _, u = server.new_user(policies=[doc(allow("sts:AssumeRole"))])
    # trusts only its own account
    _, role = make_role(server, trust(f"arn:aws:iam::{b}:root"), admin=other)
    assert client_error(server.sts(u).assume_role, RoleArn=role["Arn"], RoleSessionName="xb")[0] == "AccessDenied"
    # trusting the account by bare id works like arn:aws:iam::A:root
    _, role2 = make_role(server, trust(a), admin=other)
    r, _ = assume(server, u, role2["Arn"], "byid")
    assert r["AssumedRoleUser"]["Arn"].startswith(f"arn:aws:sts::{b}:assumed-role/")


def test_role_session_cannot_touch_other_account(server, other):
    a = server.account
    name, u = server.new_user()
    _, role = make_role(server, trust(f"arn:aws:iam::{a}:user/{name}"), policies=[ALLOW_ALL])
    _, c = assume(server, u, role["Arn"], "home")
    server.iam(other).create_user(UserName=unique("bonly"))
    names = [x["UserName"] for x in server.iam(c).list_users()["Users"]]
    assert name in names
    assert all(x.startswith("bonly") is False for x in names)


# ---------------------------------------------------------------------------------------
# GetSessionToken, GetFederationToken
# ---------------------------------------------------------------------------------------


def test_get_session_token(server):
    acct = server.account
    name, u = server.new_user(policies=[ALLOW_ALL])
    out = server.cli(u, "sts", "get-session-token", "--duration-seconds", "900")
    c = Creds.from_sts(out["Credentials"])
    assert re.fullmatch(r"ASIA[A-Z0-9]{16}", c.access_key_id)
    ident = server.sts(c).get_caller_identity()
    assert ident["Arn"] == f"arn:aws:iam::{acct}:user/{name}"
    code, msg, status = client_error(server.iam(c).list_users)
    assert code == "AccessDenied" and status == 403
    # root may get a session token too, with the same restriction
    rc = Creds.from_sts(server.sts().get_session_token()["Credentials"])
    assert server.sts(rc).get_caller_identity()["Arn"] == f"arn:aws:iam::{acct}:root"
    assert client_error(server.iam(rc).list_users)[0] == "AccessDenied"
    # MFA cannot be satisfied
    code, _, _ = client_error(server.sts(u).get_session_token, SerialNumber=f"arn:aws:iam::{acct}:mfa/{name}",
                              TokenCode="123456")
    assert code == "AccessDenied"


def test_session_token_not_from_temporary_creds(server):
    acct = server.account
    name, u = server.new_user()
    _, role = make_role(server, trust(f"arn:aws:iam::{acct}:user/{name}"))
    _, c = assume(server, u, role["Arn"], "nogst")
    assert client_error(server.sts(c).get_session_token)[0] == "AccessDenied"
    assert client_error(server.sts(c).get_federation_token, Name="fed-x")[0] == "AccessDenied"


def test_get_federation_token(server):
    acct = server.account
    _, bare = server.new_user()
    code, msg, _ = client_error(server.sts(bare).get_federation_token, Name="fed1",
                                Policy=dumps(ALLOW_ALL))
    assert code == "AccessDenied"
    assert "sts:GetFederationToken" in msg
    _, u = server.new_user(policies=[doc(allow(["sts:GetFederationToken", "iam:*"]))])
    out = server.cli(u, "sts", "get-federation-token", "--name", "fed-user", "--policy", dumps(ALLOW_ALL))
    assert out["FederatedUser"] == {"FederatedUserId": f"{acct}:fed-user",
                                    "Arn": f"arn:aws:sts::{acct}:federated-user/fed-user"}
    c = Creds.from_sts(out["Credentials"])
    assert re.fullmatch(r"ASIA[A-Z0-9]{16}", c.access_key_id)
    ident = server.sts(c).get_caller_identity()
    assert ident == {"UserId": f"{acct}:fed-user", "Account": acct,
                     "Arn": f"arn:aws:sts::{acct}:federated-user/fed-user",
                     "ResponseMetadata": ident["ResponseMetadata"]}
    # federated credentials cannot call IAM
    assert client_error(server.iam(c).list_users)[0] == "AccessDenied"
    # invalid name
    assert client_error(server.sts(u).get_federation_token, Name="bad name!")[0] == "ValidationError"


# ---------------------------------------------------------------------------------------
# Temporary credentials
# ---------------------------------------------------------------------------------------


def test_expired_temporary_credentials(server):
    acct = server.account
    name, u = server.new_user()
    _, role = make_role(server, trust(f"arn:aws:iam::{acct}:user/{name}"), policies=[ALLOW_ALL])
    _, c = assume(server, u, role["Arn"], "exp")
    server.iam(c).list_users()  # now cached
    rows = server.sql("UPDATE sessions SET expires_at = ? WHERE access_key_id = ? RETURNING 1",
                      (int(time.time()) - 10, c.access_key_id))
    assert len(rows) == 1
    time.sleep(SETTLE)
    code, msg, status = client_error(server.iam(c).list_users)
    assert code == "ExpiredToken" and status in (400, 403), (code, status)
    assert client_error(server.sts(c).get_caller_identity)[0] == "ExpiredToken"
    err = server.cli_error(c, "sts", "get-caller-identity")
    assert err.code == "ExpiredToken"


def test_session_token_must_match(server):
    acct = server.account
    name, u = server.new_user()
    _, role = make_role(server, trust(f"arn:aws:iam::{acct}:user/{name}"))
    _, c1 = assume(server, u, role["Arn"], "m1")
    _, c2 = assume(server, u, role["Arn"], "m2")
    mixed = c1.but(session_token=c2.session_token)
    code, _, status = client_error(server.sts(mixed).get_caller_identity)
    assert status == 403 and code in ("InvalidClientTokenId", "InvalidToken"), code
    assert client_error(server.sts(c1.but(session_token=None)).get_caller_identity)[0] == "InvalidClientTokenId"


def test_get_access_key_info(server, other):
    _, u = server.new_user()
    assert server.sts(other).get_access_key_info(AccessKeyId=u.access_key_id)["Account"] == server.account
    assert server.sts().get_access_key_info(AccessKeyId=other.access_key_id)["Account"] == other.account_id


def test_federation_token_without_policy(server):
    acct = server.account
    _, u = server.new_user(policies=[ALLOW_ALL])
    r = server.sts(u).get_federation_token(Name="nopol")
    c = Creds.from_sts(r["Credentials"])
    assert server.sts(c).get_caller_identity()["Arn"] == f"arn:aws:sts::{acct}:federated-user/nopol"
    assert client_error(server.iam(c).get_user, UserName="x")[0] == "AccessDenied"
    assert client_error(server.sts(c).get_federation_token, Name="again")[0] == "AccessDenied"


def test_assume_role_is_audited(server):
    acct = server.account
    name, u = server.new_user()
    _, role = make_role(server, trust(f"arn:aws:iam::{acct}:root"))
    r = server.raw({"Action": "AssumeRole", "Version": "2011-06-15", "RoleArn": role["Arn"],
                    "RoleSessionName": "audited"}, creds=u)
    assert r.code == "AccessDenied"
    rid = r.find("RequestId")
    lines = [x for x in server.audit_lines(rid) if x["request_id"] == rid]
    assert lines, "a denied AssumeRole leaves an audit line"
    assert any(x["action"] == "sts:AssumeRole" and x["resource"] == role["Arn"]
               and x["principal"] == f"arn:aws:iam::{acct}:user/{name}" and x["decision"] != "Allow"
               for x in lines), lines
