"""Lifecycle policies end to end: put a policy with the aws CLI, preview it
(StartLifecyclePolicyPreview / GetLifecyclePolicyPreview, boto3 and its paginator), run it
with `berth lifecycle run` (dry run first) and with the server's `lifecycle` job, and check
with list-images that exactly the expected images are left. Push times are set in the
metadata store (a test cannot wait days); pull times come from real pulls."""

import json
import subprocess
import time

import pytest

from berth import (BIN, OCI_INDEX, OCI_MANIFEST, Registry, client_error, descriptor, login_password,
                   make_image, server, skopeo_pull, start_server, unique)  # noqa: F401

DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def reg(server):
    return Registry(server, login_password(server, server.root))


def ecr(server):
    return server.client("ecr", server.root)


def push(server, reg, repo, tag=None, age_days=0.0, now_ms=None):
    """Push a small image (by tag, or untagged by digest) and date its push `age_days`
    back; returns its digest."""
    img = make_image(layers=1, size=64)
    reg.push_image(repo, img, ref=tag)
    at = (now_ms or int(time.time() * 1000)) - int(age_days * DAY_MS)
    server.sql("UPDATE images SET pushed_at = ? WHERE repository = ? AND digest = ?",
               (at, repo, img.digest))
    return img.digest


def policy(*rules):
    return json.dumps({"rules": [
        {"rulePriority": p, "description": f"rule {p}", "selection": sel, "action": {"type": "expire"}}
        for p, sel in rules]})


def lifecycle_run(server, *args):
    out = subprocess.run([BIN, "lifecycle", "run", "--data-dir", str(server.data_dir),
                          "--config", str(server.config_path), *args],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [line.split("\t") for line in out.stdout.splitlines()]


def listed(server, repo):
    """{digest: sorted tags} of list-images (the aws CLI)."""
    out = server.cli(server.root, "ecr", "list-images", "--repository-name", repo)
    images = {}
    for i in out["imageIds"]:
        images.setdefault(i["imageDigest"], []).extend([i["imageTag"]] if "imageTag" in i else [])
    return {d: sorted(t) for d, t in images.items()}


def wait_for(what, check, timeout=30):
    deadline = time.time() + timeout
    while True:
        got = check()
        if got or time.time() > deadline:
            assert got, f"timed out waiting for {what}"
            return got
        time.sleep(0.05)


POLICY = policy(
    (1, {"tagStatus": "tagged", "tagPatternList": ["prod*"], "countType": "imageCountMoreThan",
         "countNumber": 9999}),
    (2, {"tagStatus": "tagged", "tagPrefixList": ["release"], "countType": "imageCountMoreThan",
         "countNumber": 2}),
    (3, {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 14}),
    (4, {"tagStatus": "any", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 30}),
)


def test_preview_dry_run_and_run_expire_exactly_the_expected_images(server, reg):
    c = ecr(server)
    repo = unique("lifecycle")
    c.create_repository(repositoryName=repo)
    now = int(time.time() * 1000)
    d = {name: push(server, reg, repo, tag, age, now) for name, tag, age in [
        ("prod", "prod-1", 100),        # kept: rule 1 selects it (no later rule may expire it)
        ("rel1", "release-1", 40),      # rule 2: not among the 2 newest releases
        ("rel2", "release-2", 30),      # rule 2
        ("rel3", "release-3", 20),      # kept by rule 2 (2 newest)
        ("rel4", "release-4", 10),      # kept by rule 2
        ("dev_old", "dev-1", 60),       # rule 4: any, pushed over 30 days ago
        ("dev_new", "dev-2", 1),        # kept
        ("u_old", None, 20),            # rule 3: untagged, over 14 days
        ("u_new", None, 0),             # kept: untagged but new (and rule 3 selected it)
    ]}
    expected = {d["rel1"]: 2, d["rel2"]: 2, d["u_old"]: 3, d["dev_old"]: 4}
    kept = {d[k] for k in ("prod", "rel3", "rel4", "dev_new", "u_new")}
    before = listed(server, repo)
    assert set(before) == set(expected) | kept

    # No policy: nothing to preview; no preview: nothing to get.
    assert client_error(c.start_lifecycle_policy_preview, repositoryName=repo)[0] == \
        "LifecyclePolicyNotFoundException"
    code, msg, _ = client_error(c.get_lifecycle_policy_preview, repositoryName=repo)
    assert (code, msg) == ("LifecyclePolicyPreviewNotFoundException", "There is no dry run for this repository")
    # A bad text is refused in ECR's words, as PutLifecyclePolicy refuses it.
    bad = policy((1, {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1}),
                 (2, {"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1}))
    code, msg, _ = client_error(c.start_lifecycle_policy_preview, repositoryName=repo, lifecyclePolicyText=bad)
    assert code == "InvalidParameterException"
    assert msg.startswith("Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: "
                          "'Lifecycle policy validation failure: "), msg
    assert "must have the highest rulePriority" in msg

    out = server.cli(server.root, "ecr", "put-lifecycle-policy", "--repository-name", repo,
                     "--lifecycle-policy-text", POLICY)
    assert out["lifecyclePolicyText"] == POLICY
    # The stored policy, previewed (the aws CLI).
    out = server.cli(server.root, "ecr", "start-lifecycle-policy-preview", "--repository-name", repo)
    assert out["status"] == "COMPLETE" and out["lifecyclePolicyText"] == POLICY
    got = c.get_lifecycle_policy_preview(repositoryName=repo)
    assert got["status"] == "COMPLETE"
    assert got["summary"]["expiringImageTotalCount"] == 4
    assert {r["imageDigest"]: r["appliedRulePriority"] for r in got["previewResults"]} == expected
    by_digest = {r["imageDigest"]: r for r in got["previewResults"]}
    assert by_digest[d["rel1"]]["imageTags"] == ["release-1"]
    assert "imageTags" not in by_digest[d["u_old"]] or by_digest[d["u_old"]]["imageTags"] == []
    assert all(r["action"] == {"type": "EXPIRE"} for r in got["previewResults"])
    assert abs(by_digest[d["dev_old"]]["imagePushedAt"].timestamp() * 1000 - (now - 60 * DAY_MS)) < 1
    # Oldest push first.
    assert [r["imageDigest"] for r in got["previewResults"]] == [d["dev_old"], d["rel1"], d["rel2"], d["u_old"]]

    # Pages: maxResults and nextToken, and the paginator the SDK builds on them.
    page = c.get_lifecycle_policy_preview(repositoryName=repo, maxResults=3)
    assert len(page["previewResults"]) == 3 and page["nextToken"]
    rest = c.get_lifecycle_policy_preview(repositoryName=repo, maxResults=3, nextToken=page["nextToken"])
    assert len(rest["previewResults"]) == 1 and "nextToken" not in rest
    pages = c.get_paginator("get_lifecycle_policy_preview").paginate(
        repositoryName=repo, PaginationConfig={"PageSize": 1})
    assert [r["imageDigest"] for p in pages for r in p["previewResults"]] == \
        [r["imageDigest"] for r in got["previewResults"]]
    # imageIds picks results out; filter.tagStatus too.
    one = c.get_lifecycle_policy_preview(repositoryName=repo, imageIds=[{"imageTag": "release-1"}])
    assert [r["imageDigest"] for r in one["previewResults"]] == [d["rel1"]]
    one = c.get_lifecycle_policy_preview(repositoryName=repo, imageIds=[{"imageDigest": d["u_old"]},
                                                                        {"imageDigest": d["prod"]}])
    assert [r["imageDigest"] for r in one["previewResults"]] == [d["u_old"]]
    untagged = c.get_lifecycle_policy_preview(repositoryName=repo, filter={"tagStatus": "UNTAGGED"})
    assert [r["imageDigest"] for r in untagged["previewResults"]] == [d["u_old"]]
    code, _, _ = client_error(c.get_lifecycle_policy_preview, repositoryName=repo,
                              imageIds=[{"imageTag": "release-1"}], maxResults=5)
    assert code == "InvalidParameterException"
    # A text given to Start is previewed instead of the stored one.
    other = policy((1, {"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1}))
    c.start_lifecycle_policy_preview(repositoryName=repo, lifecyclePolicyText=other)
    got2 = c.get_lifecycle_policy_preview(repositoryName=repo)
    assert got2["lifecyclePolicyText"] == other
    assert {r["imageDigest"] for r in got2["previewResults"]} == {d["u_old"]}
    code, _, _ = client_error(c.get_lifecycle_policy_preview, repositoryName=repo, maxResults=3,
                              nextToken=page["nextToken"])
    assert code == "InvalidParameterException", "a token of the replaced preview"

    # A dry run names the same images and rules, and deletes nothing.
    lines = lifecycle_run(server, "--repository", repo, "--dry-run")
    assert {line[2]: line[5] for line in lines} == {dg: f"rule {p} (rule {p})" for dg, p in expected.items()}
    assert all(line[-1] == "would expire" for line in lines)
    assert listed(server, repo) == before
    evaluated_before = c.get_lifecycle_policy(repositoryName=repo)["lastEvaluatedAt"]

    # The run deletes exactly them, one audit line each, and records lastEvaluatedAt.
    started = time.time()
    lines = lifecycle_run(server, "--repository", repo)
    assert {line[2]: (line[5], line[-1]) for line in lines} == \
        {dg: (f"rule {p} (rule {p})", "expired") for dg, p in expected.items()}
    after = listed(server, repo)
    assert set(after) == kept
    assert after[d["prod"]] == ["prod-1"] and after[d["u_new"]] == []
    audit = [line for line in server.audit_lines() if line["principal"] == "berth-lifecycle"
             and repo in line["resource"]]
    assert {line["resource"].split("@")[1]: line["reason"].split(" ")[1] for line in audit} == \
        {dg: str(p) for dg, p in expected.items()}
    assert all(line["action"] == "lifecycle:ExpireImage" and line["decision"] == "Expire" for line in audit)
    evaluated = wait_for("lastEvaluatedAt to move", lambda: (
        lambda t: t if t != evaluated_before else None)(c.get_lifecycle_policy(repositoryName=repo)["lastEvaluatedAt"]))
    assert evaluated.timestamp() >= int(started)
    # Nothing more to expire.
    assert lifecycle_run(server, "--repository", repo) == []


def test_an_index_keeps_its_children(server, reg):
    """Children of an index are untagged: an untagged rule expires them, but they stay while
    the index lists them; the index and its children expired together go in one run."""
    c = ecr(server)
    repo = unique("lifecycle-index")
    c.create_repository(repositoryName=repo)
    kids = [make_image(layers=1, size=64, arch=a) for a in ("amd64", "arm64")]
    for k in kids:
        reg.push_image(repo, k)
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                        "manifests": [descriptor(OCI_MANIFEST, k.manifest) for k in kids]}).encode()
    r = reg.put_manifest(repo, "multi", index, media_type=OCI_INDEX)
    assert r.status_code == 201, r.text
    keep_index = policy((1, {"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1}))
    c.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=keep_index)
    lines = lifecycle_run(server, "--repository", repo)
    assert len(lines) == 1 and lines[0][-1] == "kept: listed by an index"
    assert len(listed(server, repo)) == 3
    # Everything over a day old, and everything is 3 days old: the children are tried
    # first (oldest), refused while the index lists them, and go once it has gone.
    c.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=policy(
        (1, {"tagStatus": "any", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1})))
    server.sql("UPDATE images SET pushed_at = pushed_at - ? WHERE repository = ?", (3 * DAY_MS, repo))
    lines = lifecycle_run(server, "--repository", repo)
    assert sorted(line[-1] for line in lines) == ["expired"] * 3, lines
    assert listed(server, repo) == {}


@pytest.fixture(scope="module")
def fast(tmp_path_factory):
    """A server whose lifecycle job runs every half second."""
    s = start_server(tmp_path_factory, name="lifecycle-job",
                     extra_config="lifecycle_interval_seconds = 0.5\njob_lease_seconds = 1\n")
    yield s
    assert s.stop() == 0


def test_the_job_expires_by_last_pull(fast):
    """sinceImagePulled: the last recorded pull (lastRecordedPullTime), or the push when
    never pulled; run by the server's own job."""
    c = ecr(fast)
    reg = Registry(fast, login_password(fast, fast.root))
    repo = unique("lifecycle-pulls")
    c.create_repository(repositoryName=repo)
    d = {tag: push(fast, reg, repo, tag, 50) for tag in ("pulled-now", "pulled-long-ago", "never")}
    d["young"] = push(fast, reg, repo, "young", 2)
    # A real pull records the pull time (BatchGetImage).
    c.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "pulled-now"}])
    fast.sql("UPDATE images SET last_pull = ? WHERE repository = ? AND digest = ?",
             (int(time.time() * 1000) - 40 * DAY_MS, repo, d["pulled-long-ago"]))
    details = {i["imageTags"][0]: i for i in c.describe_images(repositoryName=repo)["imageDetails"]}
    assert "lastRecordedPullTime" in details["pulled-now"]
    assert "lastRecordedPullTime" not in details["never"]
    c.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=policy(
        (1, {"tagStatus": "any", "countType": "sinceImagePulled", "countUnit": "days", "countNumber": 30})))
    left = wait_for("the job to expire the images not pulled for 30 days",
                    lambda: (lambda l: l if len(l) == 2 else None)(listed(fast, repo)))
    assert left == {d["pulled-now"]: ["pulled-now"], d["young"]: ["young"]}
    audit = fast.audit_lines(until=lambda ls: sum(
        1 for x in ls if x["principal"] == "berth-lifecycle" and repo in x["resource"]) == 2)
    reasons = sorted(x["reason"] for x in audit if x["principal"] == "berth-lifecycle" and repo in x["resource"])
    assert len(reasons) == 2 and all(r.startswith("rule 1 (rule 1) expired sha256:") for r in reasons)


def previewed(server, repo, text):
    """{digest: appliedRulePriority} of a preview of `text` (the aws CLI; the repository
    has no policy stored yet)."""
    out = server.cli(server.root, "ecr", "start-lifecycle-policy-preview", "--repository-name", repo,
                     "--lifecycle-policy-text", text)
    assert out["lifecyclePolicyText"] == text
    got = server.cli(server.root, "ecr", "get-lifecycle-policy-preview", "--repository-name", repo)
    assert got["status"] == "COMPLETE" and got["lifecyclePolicyText"] == text
    assert got["summary"]["expiringImageTotalCount"] == len(got["previewResults"])
    return {r["imageDigest"]: r["appliedRulePriority"] for r in got["previewResults"]}


def run_by_the_job(server, repo, text, left):
    """Put the policy with the aws CLI, wait for the server's lifecycle job to leave
    exactly `left` ({digest: sorted tags}, the aws CLI's list-images), and for a later
    run of the job to expire nothing more."""
    out = server.cli(server.root, "ecr", "put-lifecycle-policy", "--repository-name", repo,
                     "--lifecycle-policy-text", text)
    assert out["lifecyclePolicyText"] == text
    got = wait_for("the job to leave the expected images", lambda: (
        lambda now: now if len(now) <= len(left) else None)(listed(server, repo)))
    assert got == left
    after = time.time()
    wait_for("the job to run again", lambda: ecr(server).get_lifecycle_policy(
        repositoryName=repo)["lastEvaluatedAt"].timestamp() > after)
    assert listed(server, repo) == left


def test_the_job_runs_sinceimagepulled_as_previewed(fast, tmp_path):
    """sinceImagePulled counts from the last recorded pull (a real pull with skopeo, or
    one dated back), from the push when never pulled; the preview names exactly the images
    the job then expires."""
    reg = Registry(fast, login_password(fast, fast.root))
    repo = unique("lifecycle-pulled")
    ecr(fast).create_repository(repositoryName=repo)
    now = int(time.time() * 1000)
    d = {name: push(fast, reg, repo, tag, age, now) for name, tag, age in [
        ("pulled_now", "pulled-now", 50),            # kept: rule 1 selects it, pulled today
        ("pulled_long_ago", "pulled-long-ago", 50),  # rule 1: last pulled 40 days ago
        ("pulled_lately", "pulled-lately", 50),      # kept: last pulled 10 days ago
        ("never", "never", 50),                      # rule 2: never pulled, pushed 50 days ago
        ("other", "other", 40),                      # kept: never pulled, pushed 40 days ago
        ("young", "young", 2),                       # kept
        ("untagged", None, 60),                      # rule 2
    ]}
    skopeo_pull(fast, reg.password, repo, "pulled-now", tmp_path / "pulled")
    for name, days in (("pulled_long_ago", 40), ("pulled_lately", 10)):
        fast.sql("UPDATE images SET last_pull = ? WHERE repository = ? AND digest = ?",
                 (now - days * DAY_MS, repo, d[name]))
    pulled = {i["imageDigest"]: i.get("lastRecordedPullTime") for i in
              fast.cli(fast.root, "ecr", "describe-images", "--repository-name", repo)["imageDetails"]}
    assert pulled[d["pulled_now"]] is not None and pulled[d["never"]] is None
    text = policy(
        (1, {"tagStatus": "tagged", "tagPrefixList": ["pulled"], "countType": "sinceImagePulled",
             "countUnit": "days", "countNumber": 30}),
        (2, {"tagStatus": "any", "countType": "sinceImagePulled", "countUnit": "days", "countNumber": 45}),
    )
    expected = {d["pulled_long_ago"]: 1, d["never"]: 2, d["untagged"]: 2}
    assert previewed(fast, repo, text) == expected
    run_by_the_job(fast, repo, text, {
        d["pulled_now"]: ["pulled-now"], d["pulled_lately"]: ["pulled-lately"], d["other"]: ["other"],
        d["young"]: ["young"]})


def test_images_kept_by_an_earlier_rule_count_for_a_later_one_as_previewed(fast):
    """Rule 1 keeps every prod* image; rule 2 (any, keep the 3 newest) counts them too: the
    3 newest are dev-3, prod-3 and prod-2, so dev-1 and dev-2 expire, and prod-1 (beyond
    the 3 but selected by rule 1) stays. Were kept images not counted, rule 2 would keep
    all three dev images; were they not protected, prod-1 would go."""
    reg = Registry(fast, login_password(fast, fast.root))
    repo = unique("lifecycle-priority")
    ecr(fast).create_repository(repositoryName=repo)
    now = int(time.time() * 1000)
    d = {tag: push(fast, reg, repo, tag, age, now) for tag, age in [
        ("dev-1", 10), ("prod-1", 9), ("dev-2", 8), ("prod-2", 7), ("prod-3", 6), ("dev-3", 5)]}
    text = policy(
        (1, {"tagStatus": "tagged", "tagPatternList": ["prod*"], "countType": "imageCountMoreThan",
             "countNumber": 9999}),
        (2, {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 3}),
    )
    assert previewed(fast, repo, text) == {d["dev-1"]: 2, d["dev-2"]: 2}
    run_by_the_job(fast, repo, text, {d[t]: [t] for t in ("prod-1", "prod-2", "prod-3", "dev-3")})
