"""Authentication: SigV4 signatures, keys, clocks, session tokens."""

import datetime
import time
import urllib.parse

import botocore.auth
import botocore.credentials
import requests
from botocore.awsrequest import AWSRequest

from berth import (REGION, SETTLE, Creds, allow, client_error, doc, dumps, fake_clock,  # noqa: F401
                   server, start_server, trust, unique)

GCI = {"Action": "GetCallerIdentity", "Version": "2011-06-15"}
MIN = datetime.timedelta(minutes=1)


def test_valid_signature(server):
    r = server.raw(GCI, creds=server.root)
    assert r.status == 200
    assert r.find("Arn") == f"arn:aws:iam::{server.account}:root"


def test_wrong_secret(server):
    bad = server.root.but(secret_access_key="x" * 40)
    code, msg, status = client_error(server.sts(bad).get_caller_identity)
    assert code == "SignatureDoesNotMatch" and status == 403
    err = server.cli_error(bad, "iam", "list-users")
    assert err.code == "SignatureDoesNotMatch"


def test_unknown_key(server):
    ghost = Creds("AKIAZZZZZZZZZZZZZZZZ", "y" * 40)
    code, msg, status = client_error(server.sts(ghost).get_caller_identity)
    assert code == "InvalidClientTokenId" and status == 403
    assert msg == "The security token included in the request is invalid."
    err = server.cli_error(ghost, "sts", "get-caller-identity")
    assert err.code == "InvalidClientTokenId"


def test_inactive_and_deleted_keys(server):
    name, creds = server.new_user()
    server.sts(creds).get_caller_identity()
    server.iam().update_access_key(UserName=name, AccessKeyId=creds.access_key_id, Status="Inactive")
    code, _, status = client_error(server.sts(creds).get_caller_identity)
    assert code == "InvalidClientTokenId" and status == 403
    server.iam().update_access_key(UserName=name, AccessKeyId=creds.access_key_id, Status="Active")
    server.sts(creds).get_caller_identity()
    server.iam().delete_access_key(UserName=name, AccessKeyId=creds.access_key_id)
    code, _, status = client_error(server.sts(creds).get_caller_identity)
    assert code == "InvalidClientTokenId" and status == 403


def test_key_change_behind_the_servers_back(server):
    """A key deactivated directly in the store stops working within the cache TTL."""
    name, creds = server.new_user()
    server.sts(creds).get_caller_identity()
    rows = server.sql("UPDATE access_keys SET status = 'Inactive' WHERE access_key_id = ? RETURNING 1",
                      (creds.access_key_id,))
    assert len(rows) == 1
    time.sleep(SETTLE)
    assert client_error(server.sts(creds).get_caller_identity)[0] == "InvalidClientTokenId"


def test_clock_skew(server):
    r = server.raw(GCI, creds=server.root, now=-20 * MIN)
    assert r.status == 403 and r.code == "SignatureDoesNotMatch", r.body
    assert r.message.startswith("Signature expired:"), r.message
    r = server.raw(GCI, creds=server.root, now=20 * MIN)
    assert r.status == 403 and r.code == "SignatureDoesNotMatch", r.body
    assert "Signature not yet current" in r.message
    assert server.raw(GCI, creds=server.root, now=-10 * MIN).status == 200
    assert server.raw(GCI, creds=server.root, now=10 * MIN).status == 200
    # through boto3 with a patched clock
    with fake_clock(-30 * MIN):
        code, msg, status = client_error(server.sts().get_caller_identity)
    assert code == "SignatureDoesNotMatch" and "Signature expired" in msg


def test_missing_authentication(server):
    r = server.raw(GCI)
    assert r.status == 403 and r.code == "MissingAuthenticationToken"
    r = server.raw({"Action": "ListUsers", "Version": "2010-05-08"})
    assert r.status == 403 and r.code == "MissingAuthenticationToken"


def test_malformed_authorization_header(server):
    for h in ("AWS4-HMAC-SHA256 garbage", "AWS4-HMAC-SHA256 Credential=AKIAX/2020/us-east-1/sts/aws4_request",
              "Basic dXNlcjpwYXNz"):
        r = server.raw(GCI, headers={"Authorization": h, "X-Amz-Date": "20200101T000000Z"})
        assert r.status in (400, 403), (h, r.status)
        assert r.code in ("IncompleteSignature", "MissingAuthenticationToken", "InvalidClientTokenId",
                          "SignatureDoesNotMatch"), (h, r.body)


def test_temporary_key_without_token(server):
    acct = server.account
    name, u = server.new_user()
    role = server.iam().create_role(RoleName=unique("r"), AssumeRolePolicyDocument=dumps(
        trust(f"arn:aws:iam::{acct}:user/{name}")))["Role"]
    c = Creds.from_sts(server.sts(u).assume_role(RoleArn=role["Arn"], RoleSessionName="nt")["Credentials"])
    r = server.raw(GCI, creds=c)
    assert r.status == 200
    r = server.raw(GCI, creds=c, sign_token=False)
    assert r.status == 403 and r.code == "InvalidClientTokenId", r.body


def test_long_term_key_with_session_token(server):
    """A stray X-Amz-Security-Token next to a long-term AKIA key is refused (as AWS does)."""
    acct = server.account
    name, u = server.new_user()
    role = server.iam().create_role(RoleName=unique("r"), AssumeRolePolicyDocument=dumps(
        trust(f"arn:aws:iam::{acct}:user/{name}")))["Role"]
    c = Creds.from_sts(server.sts(u).assume_role(RoleArn=role["Arn"], RoleSessionName="nt")["Credentials"])
    r = server.raw(GCI, creds=u.but(session_token=c.session_token))
    assert r.status == 403 and r.code == "InvalidClientTokenId", r.body


def test_tampered_body(server):
    body = urllib.parse.urlencode({"Action": "ListUsers", "Version": "2010-05-08"})
    req = AWSRequest(method="POST", url=server.url + "/", data=body,
                     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    c = botocore.credentials.Credentials(server.root.access_key_id, server.root.secret_access_key)
    botocore.auth.SigV4Auth(c, "iam", REGION).add_auth(req)
    h = dict(req.headers.items())
    ok = requests.post(server.url + "/", data=body, headers=h, timeout=10)
    assert ok.status_code == 200
    evil = urllib.parse.urlencode({"Action": "CreateUser", "Version": "2010-05-08", "UserName": "evil"})
    r = requests.post(server.url + "/", data=evil, headers={**h, "Content-Length": str(len(evil))}, timeout=10)
    assert r.status_code == 403 and "<Code>SignatureDoesNotMatch</Code>" in r.text
    assert client_error(server.iam().get_user, UserName="evil")[0] == "NoSuchEntity"


def test_wrong_scope(server):
    r = server.raw(GCI, creds=server.root, region="eu-west-1")
    assert r.status == 403 and r.code == "SignatureDoesNotMatch", r.body
    assert "region" in r.message.lower()
    r = server.raw({"Action": "ListUsers", "Version": "2010-05-08"}, creds=server.root, service="s3")
    assert r.status == 403 and r.code == "SignatureDoesNotMatch", r.body
    assert "service" in r.message.lower()


def test_iam_action_signed_for_iam_and_sts_for_sts(server):
    # boto3 signs IAM as service 'iam' and STS as 'sts' at the same endpoint
    assert server.raw({"Action": "ListUsers", "Version": "2010-05-08"}, creds=server.root, service="iam").status == 200
    assert server.raw(GCI, creds=server.root, service="sts").status == 200


def test_get_with_query_string(server):
    q = urllib.parse.urlencode(GCI)
    r = server.raw(None, creds=server.root, method="GET", query=q)
    assert r.status == 200, r.body
    assert r.find("Account") == server.account


def test_presigned_url(server):
    sts = server.sts()
    url = sts.generate_presigned_url("get_caller_identity", Params={}, ExpiresIn=60, HttpMethod="GET")
    assert "X-Amz-Signature=" in url
    r = requests.get(url, timeout=10)
    assert r.status_code == 200, r.text
    assert f"<Arn>arn:aws:iam::{server.account}:root</Arn>" in r.text
    # tampering with the presigned query fails
    r = requests.get(url.replace("GetCallerIdentity", "GetSessionToken"), timeout=10)
    assert r.status_code == 403


def test_presigned_url_expired(server):
    with fake_clock(-5 * MIN):
        url = server.sts().generate_presigned_url("get_caller_identity", Params={}, ExpiresIn=60,
                                                  HttpMethod="GET")
    r = requests.get(url, timeout=10)
    assert r.status_code == 403, r.text
    assert "<Code>" in r.text


def test_server_region_scope(tmp_path_factory):
    s = start_server(tmp_path_factory, "region", args=["--region", "eu-central-1"])
    try:
        assert s.raw(GCI, creds=s.root, region="eu-central-1").status == 200
        assert s.raw(GCI, creds=s.root, region="us-east-1").status == 200
        r = s.raw(GCI, creds=s.root, region="us-west-2")
        assert r.status == 403 and r.code == "SignatureDoesNotMatch"
    finally:
        assert s.stop() == 0


ECR_TARGET = "AmazonEC2ContainerRegistry_V20150921."


def ecr_request(server, operation, body=b"{}", *, creds=None, headers=None, sign_target=True,
                extra_after_signing=None):
    """POST an ECR JSON call signed by botocore. `headers` are added before signing (so
    signed); sign_target=False adds X-Amz-Target only after signing; extra_after_signing
    adds headers the signature does not cover."""
    creds = creds or server.root
    h = {"Content-Type": "application/x-amz-json-1.1"}
    if sign_target:
        h["X-Amz-Target"] = ECR_TARGET + operation
    h.update(headers or {})
    req = AWSRequest(method="POST", url=server.url + "/", data=body, headers=h)
    c = botocore.credentials.Credentials(creds.access_key_id, creds.secret_access_key, creds.session_token)
    botocore.auth.SigV4Auth(c, "ecr", REGION).add_auth(req)
    sent = dict(req.headers.items())
    if not sign_target:
        sent["X-Amz-Target"] = ECR_TARGET + operation
    sent.update(extra_after_signing or {})
    return requests.post(server.url + "/", data=body, headers=sent, timeout=10)


def test_unsigned_payload_is_refused(server):
    """UNSIGNED-PAYLOAD is an S3 feature: IAM, STS and ECR requests signed that way (the
    signature itself correct) are refused."""
    unsigned = {"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}
    for form in (GCI, {"Action": "ListUsers", "Version": "2010-05-08"}):
        r = server.raw(form, creds=server.root, headers=unsigned)
        assert r.status == 400 and r.code == "IncompleteSignature", r.body
        assert "UNSIGNED-PAYLOAD" in r.message
    r = ecr_request(server, "DescribeRepositories", headers=unsigned)
    assert r.status_code == 400, r.text
    assert r.json()["__type"] == "IncompleteSignatureException"
    # The same requests with their payload signed are fine.
    assert server.raw(GCI, creds=server.root).status == 200
    assert ecr_request(server, "DescribeRepositories").status_code == 200


def test_unsigned_amz_headers_are_refused(server):
    """X-Amz-Target picks the ECR operation: unsigned, it could be swapped. It, and any
    other x-amz-* header sent, must be among the signed headers."""
    r = ecr_request(server, "DescribeRepositories", sign_target=False)
    assert r.status_code == 400, r.text
    assert r.json()["__type"] == "IncompleteSignatureException"
    assert "x-amz-target" in r.json()["message"]
    r = ecr_request(server, "DescribeRepositories", extra_after_signing={"X-Amz-Meta-Note": "unsigned"})
    assert r.status_code == 400 and r.json()["__type"] == "IncompleteSignatureException", r.text
    assert "x-amz-meta-note" in r.json()["message"]
    # The query API too.
    req = AWSRequest(method="POST", url=server.url + "/", data=urllib.parse.urlencode(GCI),
                     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    c = botocore.credentials.Credentials(server.root.access_key_id, server.root.secret_access_key)
    botocore.auth.SigV4Auth(c, "sts", REGION).add_auth(req)
    h = {**dict(req.headers.items()), "X-Amz-Extra": "1"}
    r = requests.post(server.url + "/", data=urllib.parse.urlencode(GCI), headers=h, timeout=10)
    assert r.status_code == 400 and "<Code>IncompleteSignature</Code>" in r.text, r.text
    # Signed, the same headers pass; a session token may travel unsigned.
    assert ecr_request(server, "DescribeRepositories", headers={"X-Amz-Meta-Note": "signed"}).status_code == 200
    sts = Creds.from_sts(server.sts().get_session_token()["Credentials"])
    token = sts.session_token
    r = ecr_request(server, "DescribeRepositories", creds=sts.but(session_token=None),
                    extra_after_signing={"X-Amz-Security-Token": token})
    assert r.status_code == 200, r.text


def presign(server, params, method, unsigned_payload):
    """A presigned URL for an STS call; unsigned_payload signs it over UNSIGNED-PAYLOAD (as
    S3-style presigners do) instead of the empty body."""
    auth = botocore.auth.S3SigV4QueryAuth if unsigned_payload else botocore.auth.SigV4QueryAuth
    c = botocore.credentials.Credentials(server.root.access_key_id, server.root.secret_access_key)
    req = AWSRequest(method=method, url=server.url + "/?" + urllib.parse.urlencode(params))
    auth(c, "sts", REGION, expires=300).add_auth(req)
    return req.url


def test_presigned_request_takes_parameters_from_its_signed_query_only(server):
    """A URL presigned for GetCallerIdentity, POSTed with a body asking for
    GetSessionToken, must not hand out session credentials."""
    evil = urllib.parse.urlencode({"Action": "GetSessionToken", "Version": "2011-06-15"})
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for unsigned in (True, False):
        url = presign(server, GCI, "POST", unsigned)
        r = requests.post(url, data=evil, headers=form, timeout=10)
        assert r.status_code in (400, 403), (unsigned, r.status_code, r.text)
        assert "<SessionToken>" not in r.text and "<AccessKeyId>" not in r.text, r.text
        assert "<Code>" in r.text
    # Presigned over the empty body (as the SDKs presign STS), the URL itself works.
    url = presign(server, GCI, "POST", False)
    r = requests.post(url, timeout=10)
    assert r.status_code == 200 and f"<Account>{server.account}</Account>" in r.text, r.text
    # Presigned over UNSIGNED-PAYLOAD, it does not: STS is not S3 (the server checks the
    # signature over the body it got, empty here).
    url = presign(server, GCI, "GET", True)
    r = requests.get(url, timeout=10)
    assert r.status_code == 403 and "<Code>SignatureDoesNotMatch</Code>" in r.text, r.text
