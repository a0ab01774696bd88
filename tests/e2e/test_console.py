"""The web console in a real browser: headless Chromium (Debian's) driven by Playwright
(the Python package, with the system browser: nothing downloaded). Sign-in as the root user
(access key) and as an IAM user (login profile, a required password change), browsing what
skopeo pushed (an index's platforms, layers, referrers), deleting images and repositories,
a denial shown instead of images, the policy editors (lint as you type, the access diff,
saving), the playground with its deciding statement highlighted, decoding a denial,
who-can, the IAM pages (a key created, shown once, deactivated), the activity log, and what
the pages refuse to do (reflected script, forged forms, framing). Screenshots go to
$BERTH_SCREENSHOTS when set (docs/ holds the current ones)."""

import json
import os
import re
import time
from pathlib import Path

import pytest
import requests

from berth import (ENCODED, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST, Registry, Server, allow, descriptor, doc,
                   login_password, make_image, seed_text, skopeo_pull, skopeo_push, unique, until,
                   write_oci_layout)

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail("chromium is not installed: scripts/test installs Debian's chromium")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("console") / "data").start()
    yield s
    assert s.stop() == 0


def shot(page, name):
    out = os.environ.get("BERTH_SCREENSHOTS")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(out) / f"{name}.png"), full_page=True)


def sign_in_with_key(page, s, creds):
    page.goto(f"{s.url}/console/")
    assert page.url.endswith("/console/signin")
    page.fill("#access-key-form input[name=access_key_id]", creds.access_key_id)
    page.fill("#access-key-form input[name=secret_access_key]", creds.secret_access_key)
    page.click("#access-key-form button[type=submit]")


def sign_in_with_password(page, s, account, user, password):
    page.goto(f"{s.url}/console/signin")
    page.fill("#iam-user-form input[name=account]", account)
    page.fill("#iam-user-form input[name=user]", user)
    page.fill("#iam-user-form input[name=password]", password)
    page.click("#iam-user-form button[type=submit]")


def test_root_browses_what_skopeo_pushed(registry, browser, tmp_path):
    s = registry
    repo = unique("console/app")
    s.client("ecr", s.root).create_repository(repositoryName=repo)
    image = make_image(layers=2, size=64 * 1024)
    write_oci_layout(tmp_path / "src", {"v1": image})
    skopeo_push(s, login_password(s, s.root), tmp_path / "src", "v1", repo)

    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(f"{s.url}/console/signin")
    shot(page, "console-sign-in")
    sign_in_with_key(page, s, s.root)
    page.wait_for_url(re.compile(r".*/console/repositories$"))
    assert page.inner_text("h1") == "Repositories"
    assert f"arn:aws:iam::{s.account}:root" in page.inner_text("header")
    page.click(f"text={repo}")
    page.wait_for_url(re.compile(f".*/console/repositories/{re.escape(repo)}$"))
    table = page.inner_text("table")
    assert "v1" in table and image.digest in table, table
    shot(page, "console-repository")
    # The page works on a narrow window too (no horizontal scroll of the page body).
    page.set_viewport_size({"width": 420, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    page.close()


def test_an_iam_user_signs_in_with_its_password_and_sees_only_what_it_may(registry, browser):
    s = registry
    alias = s.account  # the account id works as well as the alias
    repo = unique("console/private")
    s.client("ecr", s.root).create_repository(repositoryName=repo)
    name, _ = s.new_user(policies=[doc(allow("ecr:DescribeRepositories"))])
    password = "Console-Pass-2026!"
    s.iam(s.root).create_login_profile(UserName=name, Password=password)

    page = browser.new_page()
    # A wrong password: refused, without saying which part was wrong.
    sign_in_with_password(page, s, alias, name, "not-the-password")
    assert "Sign-in failed" in page.inner_text("[role=alert]")
    # The right one.
    sign_in_with_password(page, s, alias, name, password)
    page.wait_for_url(re.compile(r".*/console/repositories$"))
    assert f":user/{name}" in page.inner_text("header")
    assert repo in page.inner_text("table")
    # It may not ecr:DescribeImages: the console shows the denial, not the images.
    page.click(f"text={repo}")
    alert = page.inner_text("[role=alert]")
    assert alert.startswith("AccessDenied") and "ecr:DescribeImages" in alert, alert
    assert page.query_selector("table") is None
    shot(page, "console-denied")

    # A password changed after the sign-in ends the session (checked on every page; the
    # times are in seconds, so the change waits for the next one).
    signed_in_at = int(time.time())
    until("the next second", 2, lambda: int(time.time()) > signed_in_at)
    s.iam(s.root).update_login_profile(UserName=name, Password="Another-Pass-2027!")
    page.goto(f"{s.url}/console/repositories")
    assert page.url.endswith("/console/signin")
    # Signing in again; signing out ends the session: the pages ask for sign-in again.
    sign_in_with_password(page, s, alias, name, "Another-Pass-2027!")
    page.wait_for_url(re.compile(r".*/console/repositories$"))
    page.click("nav button[type=submit]")
    page.wait_for_url(re.compile(r".*/console/signin$"))
    page.goto(f"{s.url}/console/repositories")
    assert page.url.endswith("/console/signin")
    page.close()


def test_what_the_console_refuses(registry, browser):
    s = registry
    # The cookie: HttpOnly, SameSite=Strict, scoped to /console; pages carry a CSP
    # without inline scripts, and refuse framing.
    r = requests.post(f"{s.url}/console/signin", data={
        "how": "key", "access_key_id": s.root.access_key_id,
        "secret_access_key": s.root.secret_access_key}, allow_redirects=False, timeout=10)
    assert r.status_code == 303, r.text
    cookie = r.headers["set-cookie"]
    for attr in ("HttpOnly", "SameSite=Strict", "Path=/console"):
        assert attr in cookie, cookie
    value = cookie.split(";", 1)[0].split("=", 1)[1]
    jar = {"berth_console": value}
    page = requests.get(f"{s.url}/console/repositories", cookies=jar, timeout=10)
    csp = page.headers["content-security-policy"]
    assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp, csp
    assert page.headers["x-frame-options"] == "DENY"

    # A forged sign-out (no CSRF token, or another) is refused; the right token works.
    assert requests.post(f"{s.url}/console/signout", cookies=jar, data={},
                         allow_redirects=False, timeout=10).status_code == 403
    assert requests.post(f"{s.url}/console/signout", cookies=jar, data={"csrf": "guess"},
                         allow_redirects=False, timeout=10).status_code == 403
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    out = requests.post(f"{s.url}/console/signout", cookies=jar, data={"csrf": token},
                        allow_redirects=False, timeout=10)
    assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]

    # A tampered cookie is no session.
    assert requests.get(f"{s.url}/console/repositories", cookies={"berth_console": value[:-2] + "xx"},
                        allow_redirects=False, timeout=10).status_code == 303

    # Script in a filter is shown as text, never run.
    page = browser.new_page()
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    sign_in_with_key(page, s, s.root)
    page.wait_for_url(re.compile(r".*/console/repositories$"))
    page.goto(f"{s.url}/console/repositories?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert(2)%3E")
    assert page.input_value("input[name=q]") == '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    assert page.query_selector("main script") is None and page.query_selector("main img") is None
    assert dialogs == []
    page.close()

    # A browser asking for / is sent to the console; API clients still get the API.
    r = requests.get(f"{s.url}/", headers={"Accept": "text/html"}, allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers["location"] == "/console/"
    assert requests.get(f"{s.url}/", allow_redirects=False, timeout=10).status_code != 303

    # Wrong sign-ins are authentication failures: counted in /metrics.
    until("the failure is counted", 5, lambda: "console_bad_password" in requests.get(
        f"{s.url}/metrics", timeout=10).text)


def test_policy_editor_lints_shows_the_access_diff_and_saves(registry, browser, tmp_path):
    s = registry
    repo = unique("console/shared")
    s.client("ecr", s.root).create_repository(repositoryName=repo)
    image = make_image(layers=1, size=32 * 1024)
    write_oci_layout(tmp_path / "src", {"v1": image})
    skopeo_push(s, login_password(s, s.root), tmp_path / "src", "v1", repo)
    puller_name, puller = s.new_user(policies=[doc(allow("ecr:GetAuthorizationToken"))])
    puller_arn = f"arn:aws:iam::{s.account}:user/{puller_name}"
    grant = {"Version": "2012-10-17", "Statement": [{
        "Sid": "Pull", "Effect": "Allow", "Principal": {"AWS": puller_arn},
        "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]}]}

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    sign_in_with_key(page, s, s.root)
    page.wait_for_url(re.compile(r".*/console/repositories$"))
    page.goto(f"{s.url}/console/repositories/{repo}")
    page.click("text=Repository policy")
    assert "none stored yet" in page.inner_text("label[for=policy]")

    # A document with a problem: the lint says where, and script in it stays text.
    broken = ('{"Version": "2012-10-17", "Statement": [{"Sid": "<script>alert(1)</script>", "Effect": "Allow",\n'
              ' "Principal": "*", "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayr"]}]}')
    page.fill("#policy", broken)
    page.click("button[value=check]")
    findings = page.inner_text(".findings")
    assert "line 2, column" in findings and "INVALID_ACTION" in findings, findings
    assert "Did you mean ecr:GetDownloadUrlForLayer?" in findings, findings
    assert "<script>" in page.input_value("#policy") and dialogs == []
    assert page.query_selector("main script") is None

    # The grant: checked first, the diff says who gains what; then saved.
    page.fill("#policy", json.dumps(grant, indent=2))
    page.click("button[value=check]")
    diff = page.inner_text("table.diff")
    assert "ecr:BatchGetImage" in diff and puller_arn in diff, diff
    assert puller_arn in page.inner_text("table.diff td.gained")
    shot(page, "console-policy-diff")
    page.click("button[value=save]")
    assert page.inner_text("[role=status]") == "Saved."
    stored = s.client("ecr", s.root).get_repository_policy(repositoryName=repo)["policyText"]
    assert json.loads(stored)["Statement"][0]["Principal"]["AWS"] == puller_arn
    # skopeo, as the puller, can pull now ...
    until("the policy applies", 5, lambda: skopeo_pull(
        s, login_password(s, puller), repo, "v1", tmp_path / "pulled", check=False).returncode == 0)

    # ... and the diff of taking it away says the puller loses it; saved, the pull fails.
    page.fill("#policy", json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "Nobody", "Effect": "Deny", "Principal": {"AWS": puller_arn}, "Action": "ecr:*"}]}))
    page.click("button[value=check]")
    assert puller_arn in page.inner_text("table.diff td.lost")
    page.click("button[value=save]")
    assert page.inner_text("[role=status]") == "Saved."
    until("the pull is refused", 5, lambda: skopeo_pull(
        s, login_password(s, puller), repo, "v1", tmp_path / "refused", check=False).returncode != 0)
    page.close()


def test_the_policy_editor_is_not_a_way_around_a_policy(registry, browser):
    s = registry
    repo = unique("console/guarded")
    s.client("ecr", s.root).create_repository(repositoryName=repo)
    name, _ = s.new_user(policies=[doc(allow(["ecr:DescribeRepositories", "ecr:GetRepositoryPolicy"]))])
    s.iam(s.root).create_login_profile(UserName=name, Password="Reader-Pass-2026!")
    page = browser.new_page()
    sign_in_with_password(page, s, s.account, name, "Reader-Pass-2026!")
    page.wait_for_url(re.compile(r".*/console/repositories$"))
    page.goto(f"{s.url}/console/policy/{repo}")
    page.fill("#policy", '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"ecr:*"}]}')
    page.click("button[value=check]")
    # It may not read every identity: no diff for it.
    assert "needs iam:GetAccountAuthorizationDetails" in page.inner_text("main")
    page.click("button[value=save]")
    alert = page.inner_text("[role=alert]")
    assert "Not saved" in alert and "ecr:SetRepositoryPolicy" in alert, alert
    e = s.cli_error(s.root, "ecr", "get-repository-policy", "--repository-name", repo)
    assert e.code == "RepositoryPolicyNotFoundException", e
    page.close()


def signed_in_root(s, browser, **kw):
    page = browser.new_page(viewport={"width": 1280, "height": 900}, **kw)
    sign_in_with_key(page, s, s.root)
    page.wait_for_url(re.compile(r".*/console/repositories$"))
    return page


def test_an_image_index_its_platforms_layers_and_referrers_then_deletes(registry, browser):
    s = registry
    repo = unique("console/multi")
    s.client("ecr", s.root).create_repository(repositoryName=repo)
    reg = Registry(s, login_password(s, s.root))
    amd, arm = make_image(layers=2, size=8192), make_image(layers=1, size=4096, arch="arm64")
    for img in (amd, arm):
        reg.push_image(repo, img)
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        descriptor(OCI_MANIFEST, amd.manifest, platform={"os": "linux", "architecture": "amd64"}),
        descriptor(OCI_MANIFEST, arm.manifest, platform={"os": "linux", "architecture": "arm64", "variant": "v8"}),
    ]}).encode()
    assert reg.put_manifest(repo, "v1", index, OCI_INDEX).status_code == 201
    index_digest = "sha256:" + __import__("hashlib").sha256(index).hexdigest()
    # A signature-like artifact referring to the amd64 image.
    empty = b"{}"
    assert reg.push_blob(repo, empty).status_code == 201
    sig_blob = b"signature bytes"
    assert reg.push_blob(repo, sig_blob).status_code == 201
    sig = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                      "artifactType": "application/vnd.example.signature",
                      "config": descriptor(OCI_EMPTY, empty),
                      "layers": [descriptor("application/octet-stream", sig_blob)],
                      "subject": amd.subject()}).encode()
    sig_digest = "sha256:" + __import__("hashlib").sha256(sig).hexdigest()
    assert reg.put_manifest(repo, sig_digest, sig).status_code == 201

    page = signed_in_root(s, browser)
    page.goto(f"{s.url}/console/repositories?q=console/")
    shot(page, "console-repositories")
    page.goto(f"{s.url}/console/repositories?q={repo}")
    row = page.inner_text(f"tr:has(a:text-is('{repo}'))")
    assert "\t4\t" in row, row  # the index, two images and the signature
    page.click(f"text={repo}")
    page.click(f"a:has-text('{index_digest}')")
    platforms = page.inner_text("section:has(#platforms) table")
    assert "linux/amd64" in platforms and "linux/arm64/v8" in platforms, platforms
    assert "v1" in page.inner_text("dl.facts")
    shot(page, "console-image-index")
    page.click(f"a:has-text('{amd.digest}')")
    layers = page.inner_text("section:has(#layers) table")
    for d, _ in amd.blobs:
        assert d in layers, layers
    referrers = page.inner_text("section:has(#referrers) table")
    assert "application/vnd.example.signature" in referrers and sig_digest in referrers
    # Deleting the signature: a confirmation first, then it is gone.
    page.click(f"a:has-text('{sig_digest}')")
    page.click("text=Delete this image")
    assert "Delete" in page.inner_text("h1")
    page.click("button.danger")
    page.wait_for_url(re.compile(f".*/console/repositories/{re.escape(repo)}$"))
    assert sig_digest not in page.inner_text("table")
    images = s.client("ecr", s.root).describe_images(repositoryName=repo)["imageDetails"]
    assert sig_digest not in [i["imageDigest"] for i in images] and len(images) == 3

    # A forged delete (the session's cookie, no CSRF token or another) deletes nothing.
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    for data in ({"confirm": repo}, {"confirm": repo, "csrf": "forged"}):
        r = requests.post(f"{s.url}/console/delete-repository/{repo}", cookies=cookies, data=data,
                          allow_redirects=False, timeout=10)
        assert r.status_code == 403, r.status_code
    assert s.client("ecr", s.root).describe_repositories(repositoryNames=[repo])["repositories"]
    # Deleting the repository needs its name typed: a wrong one deletes nothing.
    page.goto(f"{s.url}/console/delete-repository/{repo}")
    page.fill("input[name=confirm]", repo + "-not")
    page.click("button.danger")
    assert "nothing was deleted" in page.inner_text("[role=alert]")
    assert s.client("ecr", s.root).describe_repositories(repositoryNames=[repo])["repositories"]
    page.goto(f"{s.url}/console/delete-repository/{repo}")
    page.fill("input[name=confirm]", repo)
    page.click("button.danger")
    page.wait_for_url(re.compile(r".*/console/repositories$"))
    e = s.cli_error(s.root, "ecr", "describe-repositories", "--repository-names", repo)
    assert e.code == "RepositoryNotFoundException", e
    page.close()


def test_lint_as_you_type_and_the_registry_policy_editor(registry, browser):
    s = registry
    page = signed_in_root(s, browser)
    repo = unique("console/typed")
    s.client("ecr", s.root).create_repository(repositoryName=repo)
    page.goto(f"{s.url}/console/policy/{repo}")
    # Typing (no button pressed): the lint answers below the editor, at line and column.
    page.fill("#policy", "")
    page.type("#policy", '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",\n"Principal": "*", "Action": "ecr:BatchGetImag"}]}')
    page.wait_for_selector("#live-lint .finding")
    live = page.inner_text("#live-lint")
    assert "line 2, column" in live and "INVALID_ACTION" in live, live
    assert page.inner_text(".code-editor .gutter").split() == ["1", "2"]
    # A finding puts the cursor where it is.
    page.click("#live-lint a.where")
    caret = page.evaluate("document.querySelector('#policy').selectionStart")
    assert caret > 40, caret
    shot(page, "console-lint-as-you-type")
    # The lint answers only this session's script: no CSRF header, no answer.
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    assert requests.post(f"{s.url}/console/api/lint", cookies=cookies,
                         data={"text": "{}"}, timeout=10).status_code == 403

    # The registry policy: seed 003's "replicate all" for another account, checked
    # (lint, diff: the other account's root gains ecr:ReplicateImage), then saved.
    other = "444455556666"
    text = seed_text("003-registry-replicate-all", **{"222222222222": other, "111111111111": s.account,
                                                      "us-west-2": "us-east-1"})
    page.goto(f"{s.url}/console/registry-policy")
    page.fill("#policy", text)
    page.click("button[value=check]")
    assert "No findings" in page.inner_text("section:has(#lint)")
    gained = page.inner_text("table.diff")
    assert "ecr:ReplicateImage" in gained and f"arn:aws:iam::{other}:root" in gained, gained
    shot(page, "console-registry-policy")
    page.click("button[value=save]")
    assert page.inner_text("[role=status]") == "Saved."
    stored = json.loads(s.client("ecr", s.root).get_registry_policy()["policyText"])
    assert stored == json.loads(text)
    s.client("ecr", s.root).delete_registry_policy()
    page.close()


def test_the_playground_highlights_the_deciding_statement(registry, browser):
    s = registry
    user, _ = s.new_user(policies=[doc(allow("ecr:DescribeRepositories"))])
    arn = f"arn:aws:iam::{s.account}:user/{user}"
    identity = seed_text("004-push-pull-identity", **{"111111111111": s.account})
    page = signed_in_root(s, browser)
    page.goto(f"{s.url}/console/playground")
    page.fill("input[name=principal] >> nth=1", arn)
    page.fill("input[name=action]", "ecr:PutImage")
    page.fill("input[name=resource]", f"arn:aws:ecr:us-east-1:{s.account}:repository/my-app")
    page.fill("#policy1", identity)
    page.click("#playground button[type=submit]")
    assert page.inner_text("#decision") == "allowed"
    reason = page.inner_text("#reason")
    assert reason.startswith(f"User: {arn} is authorized to perform: ecr:PutImage"), reason
    marked = page.inner_text("mark[data-decides]")
    assert "AllowECRPush" in marked and "AllowECRPull" not in marked, marked
    shot(page, "console-playground")

    # A seed repository policy that denies every pull: the explicit deny decides, and is
    # the statement marked; a condition key the request lacks is named.
    page.fill("input[name=action]", "ecr:BatchGetImage")
    page.fill("#resource_policy", seed_text("000-deny-all-pull"))
    page.click("#playground button[type=submit]")
    assert page.inner_text("#decision") == "explicitDeny"
    assert "with an explicit deny in a resource-based policy" in page.inner_text("#reason")
    assert "Deny" in page.inner_text("mark.deny[data-decides]")
    page.fill("#resource_policy", seed_text("000-ip-restricted"))
    page.fill("#policy1", json.dumps(doc(allow("ecr:DescribeRepositories"))))
    page.click("#playground button[type=submit]")
    assert page.inner_text("#decision") == "implicitDeny"
    assert "aws:SourceIp" in page.inner_text("#missing")
    page.fill("textarea[name=context]", "aws:SourceIp=54.240.143.7")
    page.click("#playground button[type=submit]")
    assert page.inner_text("#decision") == "allowed"
    assert "IPAllow" in page.inner_text("mark[data-decides]")

    # Pre-filled from a user's stored policies.
    page.goto(f"{s.url}/console/playground?principal={arn}")
    assert "ecr:DescribeRepositories" in page.input_value("#policy1")
    page.close()


def test_why_was_i_denied_who_can_iam_keys_and_activity(registry, browser, tmp_path):
    s = registry
    repo = unique("console/why")
    s.client("ecr", s.root).create_repository(repositoryName=repo)
    name, creds = s.new_user(policies=[doc(allow("ecr:DescribeRepositories"))])
    arn = f"arn:aws:iam::{s.account}:user/{name}"
    e = s.cli_error(creds, "ecr", "describe-images", "--repository-name", repo)
    assert e.code == "AccessDeniedException", e
    encoded = e.message.split(ENCODED, 1)[1].strip()

    page = signed_in_root(s, browser)
    page.goto(f"{s.url}/console/decode")
    page.fill("#message", encoded)
    page.click("button[type=submit] >> text=Decode")
    decoded = json.loads(page.inner_text("#decoded-message"))
    assert decoded["allowed"] is False and decoded["context"]["action"] == "ecr:DescribeImages", decoded
    assert decoded["context"]["principal"]["arn"] == arn
    shot(page, "console-decode")

    # Who can pull: after a grant, the user is listed.
    s.client("ecr", s.root).set_repository_policy(repositoryName=repo, policyText=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": arn},
                                                "Action": "ecr:BatchGetImage"}]}))
    page.goto(f"{s.url}/console/who-can?repository={repo}&action=ecr:BatchGetImage")
    answer = page.inner_text("section:has(#answer)")
    assert arn in answer, answer
    shot(page, "console-who-can")

    # IAM: the user is listed; a key made in the browser is shown once and works; made
    # inactive, it does not.
    page.goto(f"{s.url}/console/iam")
    assert name in page.inner_text("section:has(#users)")
    shot(page, "console-iam")
    page.click(f"a:text-is('{name}')")
    page.click("text=Create access key")
    key_id = page.inner_text("#new-key-id")
    secret = page.inner_text("#new-key-secret")
    made = creds.but(access_key_id=key_id, secret_access_key=secret)
    until("the new key works", 5, lambda: s.client("sts", made).get_caller_identity()["Arn"] == arn)
    page.goto(f"{s.url}/console/iam/users/{name}")
    assert secret not in page.content()
    page.click(f"tr:has-text('{key_id}') button:text-is('Deactivate')")
    assert "Inactive" in page.inner_text(f"tr:has-text('{key_id}')")
    e = s.cli_error(made, "sts", "get-caller-identity")
    assert e is not None and e.code == "InvalidClientTokenId", e

    # Activity: the user's denial is there, found by its filters.
    page.goto(f"{s.url}/console/activity?principal={name}&decision=Deny")

    def logged():
        page.reload()
        return "ecr:DescribeImages" in page.inner_text("#activity")
    until("the denial is in the log", 5, logged)
    rows = page.inner_text("#activity tbody")
    assert "Allow" not in rows.split("\t"), rows
    shot(page, "console-activity")
    page.close()

    # A user without the permissions sees why, not the data.
    s.iam(s.root).create_login_profile(UserName=name, Password="Why-Pass-2026!")
    page = browser.new_page()
    sign_in_with_password(page, s, s.account, name, "Why-Pass-2026!")
    page.wait_for_url(re.compile(r".*/console/repositories$"))
    page.goto(f"{s.url}/console/activity")
    assert "cloudtrail:LookupEvents" in page.inner_text("[role=alert]")
    page.goto(f"{s.url}/console/who-can?repository={repo}&action=ecr:BatchGetImage")
    assert "iam:GetAccountAuthorizationDetails" in page.inner_text("[role=alert]")
    page.close()


def test_a_required_password_change_at_sign_in(registry, browser):
    s = registry
    name, _ = s.new_user(policies=[doc(allow(["ecr:DescribeRepositories", "iam:ChangePassword"]))])
    s.iam(s.root).create_login_profile(UserName=name, Password="First-Pass-2026!", PasswordResetRequired=True)
    page = browser.new_page()
    sign_in_with_password(page, s, s.account, name, "First-Pass-2026!")
    assert page.inner_text("h1") == "Choose a new password"
    page.fill("input[name=old]", "First-Pass-2026!")
    page.fill("input[name=new]", "short")
    page.fill("input[name=again]", "short")
    page.click("#change-password-form button")
    assert "PasswordPolicyViolation" in page.inner_text("[role=alert]")
    page.fill("input[name=old]", "First-Pass-2026!")
    page.fill("input[name=new]", "Second-Pass-2026!")
    page.fill("input[name=again]", "Second-Pass-2026!")
    page.click("#change-password-form button")
    page.wait_for_url(re.compile(r".*/console/repositories$"))
    assert f":user/{name}" in page.inner_text("header")
    profile = s.iam(s.root).get_login_profile(UserName=name)["LoginProfile"]
    assert profile["PasswordResetRequired"] is False
    # An administrator asking for a reset ends the session at once.
    s.iam(s.root).update_login_profile(UserName=name, PasswordResetRequired=True)
    page.goto(f"{s.url}/console/repositories")
    assert page.url.endswith("/console/signin")
    page.close()


def test_sign_in_and_move_around_with_the_keyboard_alone(registry, browser):
    s = registry
    name, _ = s.new_user(policies=[doc(allow("ecr:DescribeRepositories"))])
    s.iam(s.root).create_login_profile(UserName=name, Password="Keys-Only-2026!")
    page = browser.new_page()
    page.goto(f"{s.url}/console/signin")
    page.focus("#iam-user-form input[name=account]")
    page.keyboard.type(s.account)
    page.keyboard.press("Tab")
    page.keyboard.type(name)
    page.keyboard.press("Tab")
    page.keyboard.type("Keys-Only-2026!")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/console/repositories$"))
    # The sections are reached by Tab from the top of the page, in order.
    page.focus("header a.brand")
    reached = []
    for _ in range(8):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.textContent"))
    assert reached[:7] == ["Repositories", "Registry policy", "Playground", "Who can", "Why denied?",
                           "IAM", "Activity"], reached
    page.focus("nav a[href='/console/playground']")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/console/playground$"))
    # Narrow windows: no page-wide horizontal scrolling.
    page.set_viewport_size({"width": 420, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    page.close()


def test_an_iam_user_of_another_account_signs_in_with_the_account_alias(registry, browser):
    s = registry
    alias = unique("team").replace("_", "-").lower()
    other = s.account_create(alias=alias)
    iam = s.iam(other)
    name = unique("aliased")
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="list", PolicyDocument=json.dumps(doc(allow("ecr:DescribeRepositories"))))
    iam.create_login_profile(UserName=name, Password="Alias-Pass-2026!")
    page = browser.new_page()
    sign_in_with_password(page, s, alias, name, "Alias-Pass-2026!")
    page.wait_for_url(re.compile(r".*/console/repositories$"))
    assert f"arn:aws:iam::{other.account_id}:user/{name}" in page.inner_text("header")
    # The alias names that account only: the same user name and password elsewhere fail.
    sign_in_with_password(page, s, s.account, name, "Alias-Pass-2026!")
    assert "Sign-in failed" in page.inner_text("[role=alert]")
    page.close()
