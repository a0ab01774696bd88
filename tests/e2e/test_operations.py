"""Running Berth for real: Prometheus metrics, authentication-failure logs, throttling
(with a bounded load test of good and bad clients), and the audit log's default place."""

import base64
import concurrent.futures
import json
import os
import re
import threading
import time

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from berth import (Creds, Registry, Server, allow, deny, doc, login_password, make_image,
                   oci_error, unique, until)


def scrape(url):
    r = requests.get(url, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/openmetrics-text"), r.headers
    assert r.text.rstrip().endswith("# EOF")
    return r.text


def value(text, name, **labels):
    """The sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(have.get(k) == str(v) for k, v in labels.items()):
            total += float(m.group(3))
    return total



def test_metrics_count_what_happened(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("metrics") / "data",
               extra_config="clean_interval_seconds = 0.5\n").start()
    try:
        repo = unique("metrics/app")
        ecr = s.client("ecr", s.root)
        ecr.create_repository(repositoryName=repo)
        password = login_password(s, s.root)
        reg = Registry(s, password)
        image = make_image(layers=2, size=64 * 1024)
        reg.push_image(repo, image, ref="v1")
        assert reg.get_manifest(repo, "v1").status_code == 200
        layer_digest, layer = image.blobs[0]
        assert reg.request("GET", f"/v2/{repo}/blobs/{layer_digest}").content == layer
        _, nobody = s.new_user(policies=[doc(allow("ecr:GetAuthorizationToken"),
                                             deny("ecr:DescribeRepositories"))])
        with pytest.raises(ClientError):
            s.client("ecr", nobody).describe_repositories()
        with pytest.raises(ClientError):
            s.client("ecr", nobody).list_images(repositoryName=repo)
        bad = Registry(s, "not-a-password")
        assert bad.get_manifest(repo, "v1").status_code == 401
        s.iam(s.root).list_users()

        text = until("the job ran and is counted", 10, lambda: (
            t := scrape(s.url + "/metrics")) and value(t, "berth_job_runs_total", job="expire-sessions") > 0 and t)
        assert value(text, "berth_http_requests_total", api="oci", operation="GetManifest", code="200") == 1
        assert value(text, "berth_http_requests_total", api="oci", operation="PutManifest", code="201") == 1
        assert value(text, "berth_http_requests_total", api="ecr", operation="CreateRepository", code="200") == 1
        assert value(text, "berth_http_requests_total", api="ecr", operation="DescribeRepositories", code="400") == 1
        assert value(text, "berth_http_requests_total", api="iam", operation="ListUsers", code="200") == 1
        assert value(text, "berth_http_request_duration_seconds_count", api="oci", operation="GetManifest") == 2
        assert value(text, "berth_authorization_decisions_total", result="allow") >= 4
        assert value(text, "berth_authorization_decisions_total", result="explicit_deny") >= 1
        assert value(text, "berth_authorization_decisions_total", result="implicit_deny") >= 1
        assert value(text, "berth_authentication_failures_total", reason="bad_password") == 1
        assert value(text, "berth_http_received_bytes_total", api="oci") >= sum(len(b) for _, b in image.blobs)
        assert value(text, "berth_http_sent_bytes_total", api="oci") >= len(image.manifest)
        assert value(text, "berth_cache_requests_total", cache="credential", result="hit") > 0
        assert value(text, "berth_job_duration_seconds_count", job="expire-sessions") > 0
        # The blob GET asked the object store: a look-up then a read (local files), or one
        # GET that tells the size too (S3).
        assert (value(text, "berth_store_operation_duration_seconds_count", store="objects", operation="stat")
                + value(text, "berth_store_operation_duration_seconds_count", store="objects", operation="get")) > 0
        assert value(text, "berth_store_operation_duration_seconds_count", store="metadata") > 0
        assert "berth_upload_sessions_in_flight 0" in text
        assert "berth_replication_backlog 0" in text
        # No repository, user or key in any label: the series are bounded.
        assert repo not in text and s.account not in text and s.root.access_key_id not in text

        # The failure was logged with the client's address and the reason.
        line = until("the failure is logged", 5, lambda: [l for l in s.stderr_lines if "authentication failed" in l])
        assert "client=127.0.0.1" in line[0] and "bad_password" in line[0], line
    finally:
        assert s.stop() == 0


def test_metrics_on_their_own_address(tmp_path_factory):
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    s = Server(tmp_path_factory.mktemp("metrics-listen") / "data",
               extra_config=f'metrics_listen = "127.0.0.1:{port}"\n').start()
    try:
        assert requests.get(s.url + "/healthz", timeout=5).status_code == 200
        text = until("the metrics port answers", 10, lambda: _try_scrape(f"http://127.0.0.1:{port}/metrics"))
        assert value(text, "berth_http_requests_total", api="health", operation="healthz", code="200") == 1
        r = requests.get(s.url + "/metrics", timeout=5)
        assert r.status_code == 404 and "metrics_listen" in r.text
    finally:
        assert s.stop() == 0


def _try_scrape(url):
    try:
        return scrape(url)
    except requests.exceptions.ConnectionError:
        return None


def test_throttling_answers_each_protocol_and_clients_retry(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("throttle") / "data", extra_config=(
        "throttle_principal_rps = 2\nthrottle_burst_seconds = 1\n"
        "throttle_auth_failures_per_minute = 6\n")).start()
    try:
        def patient(service, creds):
            """A client that retries throttling as the SDKs do (the setup's calls count
            against the principals' budgets too)."""
            return boto3.session.Session().client(
                service, endpoint_url=s.url, region_name="us-east-1",
                aws_access_key_id=creds.access_key_id, aws_secret_access_key=creds.secret_access_key,
                config=Config(retries={"max_attempts": 20, "mode": "standard"}))

        def password_of(creds):
            data = patient("ecr", creds).get_authorization_token()["authorizationData"][0]
            return base64.b64decode(data["authorizationToken"]).decode().split(":", 1)[1]

        def user(policy):
            iam = patient("iam", s.root)
            name = unique("throttled")
            iam.create_user(UserName=name)
            iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
            k = iam.create_access_key(UserName=name)["AccessKey"]
            return Creds.from_access_key(k, s.account)

        repo = unique("throttle/app")
        patient("ecr", s.root).create_repository(repositoryName=repo)
        admin = user(doc(allow("iam:ListUsers")))
        puller = user(doc(allow("ecr:GetAuthorizationToken")))
        auth = Registry(s, password_of(puller)).headers()
        root_password = password_of(s.root)

        # Twelve calls at once, past the burst (2): the ECR API says ThrottlingException
        # (400) to some ...
        ecr = s.client("ecr", s.root)

        def ecr_call(_):
            try:
                ecr.describe_repositories()
                return "ok"
            except ClientError as e:
                assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 400
                return e.response["Error"]["Code"]

        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            codes = list(pool.map(ecr_call, range(12)))
        assert "ThrottlingException" in codes and set(codes) <= {"ok", "ThrottlingException"}, codes

        # ... IAM says Throttling, in its XML (another principal: a bucket of its own) ...
        def iam_call(_):
            r = s.raw({"Action": "ListUsers", "Version": "2010-05-08"}, creds=admin)
            return r.code if r.status != 200 else "ok"

        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            iam_codes = list(pool.map(iam_call, range(12)))
        assert "Throttling" in iam_codes and "ok" in iam_codes, iam_codes

        # ... and the registry 429 TOOMANYREQUESTS with Retry-After (a third principal).
        def oci_call(_):
            return requests.get(f"{s.url}/v2/", headers=auth, timeout=30)

        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(oci_call, range(12)))
        refused = [r for r in answers if r.status_code == 429]
        assert refused and all(r.status_code in (200, 429) for r in answers), [r.status_code for r in answers]
        assert oci_error(refused[0])[1] == "TOOMANYREQUESTS" and int(refused[0].headers["Retry-After"]) >= 1

        # An SDK with retries gets through.
        for _ in range(15):
            patient("ecr", s.root).describe_repositories(repositoryNames=[repo])
        reg = Registry(s, root_password)

        # Wrong passwords from one address: after the budget, everything from it is refused
        # (even a good password), until it refills.
        bad = Registry(s, "guess")
        statuses = [bad.request("GET", "/v2/").status_code for _ in range(8)]
        assert statuses[:6] == [401] * 6 and statuses[6:] == [429, 429], statuses
        r = reg.request("GET", "/v2/")
        assert r.status_code == 429 and "wrong credentials" in r.text, r.text
        text = scrape(s.url + "/metrics")
        assert value(text, "berth_throttled_requests_total", api="ecr", limit="principal") >= 1
        assert value(text, "berth_throttled_requests_total", api="oci", limit="authentication_failures") >= 2
        assert value(text, "berth_authentication_failures_total", reason="bad_password") == 6
    finally:
        assert s.stop() == 0


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_load_good_clients_succeed_bad_ones_are_throttled(tmp_path_factory):
    """A bounded load test on loopback: for 8 seconds, 8 good clients (boto3 with the SDK's
    retries, and registry pulls that honour Retry-After) and 4 bad ones (wrong registry
    passwords, bad signatures) at once. Good clients all succeed; bad ones end up throttled;
    the server's memory stays bounded; /metrics shows it."""
    s = Server(tmp_path_factory.mktemp("load") / "data", extra_config=(
        "throttle_principal_rps = 200\nthrottle_burst_seconds = 1\n"
        "throttle_auth_failures_per_minute = 30\n")).start()
    try:
        repo = unique("load/app")
        s.client("ecr", s.root).create_repository(repositoryName=repo)
        password = login_password(s, s.root)
        image = make_image(layers=1, size=16 * 1024)
        Registry(s, password).push_image(repo, image, ref="v1")
        # The bad clients come from another loopback address (so their failure budget is
        # theirs, as it would be on a network).
        good_source, bad_source = "127.0.0.1", "127.0.0.2"
        rss_start = rss_kib(s.proc.pid)
        stop_at = time.time() + 8
        results = {"good": 0, "good_retried": 0, "bad_refused": 0, "bad_throttled": 0}
        lock = threading.Lock()
        failures = []

        def count(k, n=1):
            with lock:
                results[k] += n

        def good_sdk():
            c = boto3.session.Session().client(
                "ecr", endpoint_url=s.url, region_name="us-east-1",
                aws_access_key_id=s.root.access_key_id, aws_secret_access_key=s.root.secret_access_key,
                config=Config(retries={"max_attempts": 30, "mode": "standard"}, max_pool_connections=2))
            while time.time() < stop_at:
                try:
                    c.describe_images(repositoryName=repo)
                    count("good")
                except Exception as e:  # noqa: BLE001
                    failures.append(repr(e))
                    return

        def good_pull():
            reg = Registry(s, password, source=good_source)
            while time.time() < stop_at:
                for _ in range(50):
                    r = reg.get_manifest(repo, "v1")
                    if r.status_code != 429:
                        break
                    count("good_retried")
                    time.sleep(min(float(r.headers.get("Retry-After", "1")), 0.2))
                if r.status_code != 200:
                    failures.append(f"pull: {r.status_code} {r.text[:200]}")
                    return
                count("good")

        def bad_password():
            reg = Registry(s, "guess", source=bad_source)
            while time.time() < stop_at:
                r = reg.request("GET", f"/v2/{repo}/manifests/v1")
                count("bad_throttled" if r.status_code == 429 else "bad_refused")
                assert r.status_code in (401, 429), r.status_code

        def bad_signature():
            sess = requests.Session()
            sess.mount("http://", __import__("berth").SourceAddressAdapter(bad_source))
            while time.time() < stop_at:
                r = sess.post(s.url + "/", data="Action=ListUsers&Version=2010-05-08", headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261206/us-east-1/iam/aws4_request, "
                                     "SignedHeaders=host, Signature=" + "0" * 64,
                    "X-Amz-Date": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())}, timeout=10)
                count("bad_throttled" if r.status_code == 400 and "Throttling" in r.text else "bad_refused")

        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            jobs = [pool.submit(good_sdk) for _ in range(4)] + [pool.submit(good_pull) for _ in range(4)] \
                + [pool.submit(bad_password) for _ in range(2)] + [pool.submit(bad_signature) for _ in range(2)]
            for j in jobs:
                j.result()
        assert not failures, failures[:5]
        assert results["good"] > 100, results
        assert results["bad_throttled"] > results["bad_refused"], results
        rss_end = rss_kib(s.proc.pid)
        assert rss_end < max(2 * rss_start, rss_start + 64 * 1024), (rss_start, rss_end)
        text = scrape(s.url + "/metrics")
        assert value(text, "berth_throttled_requests_total", limit="authentication_failures") > 0
        assert value(text, "berth_authentication_failures_total") >= 30
        assert value(text, "berth_http_requests_total", api="ecr", operation="DescribeImages", code="200") > 0
        # The failure log stays within its rate (20 lines at once, then 2 a second).
        logged = sum(1 for l in s.stderr_lines if "authentication failed" in l)
        assert 0 < logged <= 20 + 2 * 15, logged
    finally:
        assert s.stop() == 0


def test_the_audit_log_is_on_by_default_in_the_data_directory(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("audit-default") / "data")
    # This test's server has no audit_log setting at all.
    s.config_path.write_text("\n".join(l for l in s.config_path.read_text().splitlines()
                                       if not l.startswith("audit_log")) + "\n")
    s.start()
    try:
        s.client("ecr", s.root).describe_repositories()
        log = s.data_dir / "audit.log"
        lines = until("the decision is in DATA_DIR/audit.log", 10, lambda: log.exists() and [
            json.loads(l) for l in log.read_text().splitlines() if "ecr:DescribeRepositories" in l])
        assert lines[0]["decision"] == "Allow" and lines[0]["source_ip"] == "127.0.0.1", lines
        assert log.stat().st_mode & 0o077 == 0
    finally:
        assert s.stop() == 0


def test_caps_on_upload_sessions_and_storage_quotas(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("limits") / "data", extra_config=(
        "max_uploads_per_repository = 3\nmax_uploads_per_account = 5\n"
        # 48 KiB for every account.
        f"storage_quota_gib = {48 / (1 << 20)}\n")).start()
    try:
        ecr = s.client("ecr", s.root)
        a, b, c = unique("caps/a"), unique("caps/b"), unique("caps/c")
        for r in (a, b, c):
            ecr.create_repository(repositoryName=r)
        reg = Registry(s, login_password(s, s.root))
        opened = [reg.start_upload(a) for _ in range(3)]
        assert all(r.status_code == 202 for r in opened), [r.status_code for r in opened]
        r = reg.start_upload(a)
        status, code, message = oci_error(r)
        assert (status, code) == (429, "TOOMANYREQUESTS") and "at most 3" in message, (status, code, message)
        # ECR's layer upload says LimitExceededException.
        with pytest.raises(ClientError) as e:
            ecr.initiate_layer_upload(repositoryName=a)
        assert e.value.response["Error"]["Code"] == "LimitExceededException"
        # The account's cap counts every repository.
        assert reg.start_upload(b).status_code == 202
        assert reg.start_upload(c).status_code == 202
        assert oci_error(reg.start_upload(c))[:2] == (429, "TOOMANYREQUESTS")
        # A finished (or cancelled) session makes room.
        assert reg.request("DELETE", opened[0].headers["Location"]).status_code == 204
        assert reg.start_upload(a).status_code == 202

        # The quota (48 KiB): data is taken while the account holds less; once it holds
        # more, no new data (whatever the repository).
        for r in opened[1:]:
            reg.request("DELETE", r.headers["Location"])
        image = make_image(layers=1, size=40 * 1024)
        reg.push_image(b, image, ref="v1")
        assert reg.push_blob(b, os.urandom(10 * 1024)).status_code == 201
        until("the usage is seen", 5, lambda: oci_error(reg.push_blob(b, b"more"))[:2] == (403, "DENIED"))
        status, code, message = oci_error(reg.push_blob(c, b"more"))
        assert (status, code) == (403, "DENIED") and "storage quota" in message, message
        with pytest.raises(ClientError) as e:
            s.client("ecr", s.root).initiate_layer_upload(repositoryName=c)
        assert e.value.response["Error"]["Code"] == "LimitExceededException"
        assert "storage quota" in e.value.response["Error"]["Message"]
        # Pulls go on; deleting the image and collecting frees the quota.
        assert reg.get_manifest(b, "v1").status_code == 200
        ecr.batch_delete_image(repositoryName=b, imageIds=[{"imageTag": "v1"}])
        s.gc("--grace", "0")
        until("the quota is free again", 5, lambda: reg.push_blob(c, b"more").status_code == 201)
    finally:
        assert s.stop() == 0


def test_prometheus_scrapes_it(tmp_path_factory, tmp_path):
    """A real Prometheus server (Debian's prometheus) scrapes /metrics on metrics_listen
    and answers queries over what it scraped."""
    import shutil
    import socket
    import subprocess
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.fail("prometheus is not installed: scripts/test installs Debian's prometheus")
    ports = []
    for _ in range(2):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    metrics_port, prom_port = ports
    s = Server(tmp_path_factory.mktemp("prometheus") / "data",
               extra_config=f'metrics_listen = "127.0.0.1:{metrics_port}"\n').start()
    (tmp_path / "prometheus.yml").write_text(f"""
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: berth
    static_configs:
      - targets: ["127.0.0.1:{metrics_port}"]
""")
    proc = subprocess.Popen([prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{prom_port}"],
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "w"))
    try:
        s.client("ecr", s.root).describe_repositories()

        def query(q):
            try:
                r = requests.get(f"http://127.0.0.1:{prom_port}/api/v1/query", params={"query": q}, timeout=5)
            except requests.exceptions.ConnectionError:
                return None
            return r.json()["data"]["result"] if r.status_code == 200 else None

        up = until("Prometheus scraped berth", 60, lambda: query('up{job="berth"} == 1'))
        assert up[0]["metric"]["instance"] == f"127.0.0.1:{metrics_port}"
        got = until("the request is in Prometheus", 30, lambda: query(
            'berth_http_requests_total{api="ecr",operation="DescribeRepositories",code="200"}'))
        assert float(got[0]["value"][1]) >= 1
        buckets = until("the latency histogram is in Prometheus", 30, lambda: query(
            'histogram_quantile(0.5, rate(berth_http_request_duration_seconds_bucket[1m]))'))
        assert buckets, buckets
    finally:
        proc.terminate()
        proc.wait(30)
        assert s.stop() == 0
