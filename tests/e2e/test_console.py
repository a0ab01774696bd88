"""The web console in a real browser: headless Chromium (Debian's) driven by Playwright
(the Python package, with the system browser: nothing downloaded). Sign-in as the root user
(access key) and as an IAM user (login profile), browsing what skopeo pushed, a denial
shown instead of images, sign-out with its CSRF token, and what the pages refuse to do
(reflected script, forged sign-out, framing). Screenshots go to $BERTH_SCREENSHOTS when
set (docs/ holds the current ones)."""

import json
import os
import re
import time
from pathlib import Path

import pytest
import requests

from berth import (Server, allow, doc, login_password, make_image, skopeo_pull, skopeo_push, unique,
                   until, write_oci_layout)

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
