"""The Debian package (scripts/package-deb, packaging/) and the Dockerfile.

The package is built around the debug binary the suite already built
(`scripts/package-deb --from-debug-build`; BERTH_DEB names a .deb built before). It is
read with dpkg-deb, its unit checked with `systemd-analyze verify`, then installed for
real with `dpkg -i` when the tests run as root (CI does) and berth is not installed on
the machine already: its postinst makes the berth user, the binary is started the way
the unit starts it (the unit's own ExecStart line, as User=, without privileges, with the
packaged configuration; only the data directory and the port are the test's), an image
is pushed and pulled with skopeo, and `dpkg --purge` removes it again. Otherwise the
package is unpacked with `dpkg -x` and run from there as the current user.
"""

import contextlib
import fcntl
import grp
import json
import os
import pwd
import re
import shlex
import shutil
import stat
import subprocess
import tempfile
import threading
import tomllib
from pathlib import Path

import pytest

from berth import (BIN, Server, login_password, make_image, read_oci_layout, skopeo_pull,
                   skopeo_push, unique, write_oci_layout)

REPO_ROOT = Path(__file__).resolve().parents[2]
UNIT_PATHS = ("lib/systemd/system/berth.service", "usr/lib/systemd/system/berth.service")
CONFIG = "etc/berth/berth.toml"


def run(*cmd, check=True, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    if check:
        assert p.returncode == 0, f"{shlex.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
    return p


@pytest.fixture(scope="module")
def deb():
    """The .deb under test: BERTH_DEB, or one made now from BERTH_BIN's debug build."""
    given = os.environ.get("BERTH_DEB")
    if given:
        assert Path(given).is_file(), f"BERTH_DEB={given} is not a file"
        return Path(given)
    env = dict(os.environ)
    target = Path(BIN).resolve().parent
    assert target.name == "debug", f"BERTH_BIN={BIN} is not a debug build: set BERTH_DEB to a package"
    env["CARGO_TARGET_DIR"] = str(target.parent)
    p = run(str(REPO_ROOT / "scripts" / "package-deb"), "--from-debug-build", env=env, cwd=REPO_ROOT)
    path = Path(p.stdout.strip().splitlines()[-1])
    assert path.suffix == ".deb" and path.is_file(), f"scripts/package-deb printed {p.stdout!r}"
    return path


def unit_entries(text):
    """The (section, key, value) lines of a unit file, in order (keys may repeat)."""
    section, out = None, []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def unit_value(entries, key, section="Service"):
    values = [v for s, k, v in entries if s == section and k == key]
    assert values, f"the unit has no {key}= in [{section}]"
    return values[-1]


def find_unit(root):
    for rel in UNIT_PATHS:
        if (Path(root) / rel).is_file():
            return Path(root) / rel
    raise AssertionError(f"no berth.service under {root} (looked at {UNIT_PATHS})")


def systemd_analyze_verify(unit, root=None, scratch=None):
    """`systemd-analyze verify` the unit; False (with a message) when it is not installed.
    With `root` (an unpacked package), a copy of the unit whose ExecStart names the
    unpacked binary is verified, in `scratch` (`--root` would want a whole system there)."""
    if not shutil.which("systemd-analyze"):
        print("systemd-analyze is missing (apt-get install systemd): the unit file is not verified")
        return False
    if root is not None:
        text = unit.read_text().replace("ExecStart=/usr/bin/berth ", f"ExecStart={root}/usr/bin/berth ")
        unit = Path(scratch) / "berth.service"
        unit.write_text(text)
    p = run("systemd-analyze", "verify", str(unit), check=False)
    # Problems of the unit are printed naming it (and errors make it exit non-zero);
    # other units of the host may draw warnings of their own.
    ours = [line for line in p.stderr.splitlines() if "berth" in line]
    assert p.returncode == 0 and not ours, f"systemd-analyze verify {unit}:\n{p.stdout}{p.stderr}"
    return True


# ---------------------------------------------------------------------------------------
# What the package holds
# ---------------------------------------------------------------------------------------

def test_package_metadata_files_and_unit(deb, tmp_path):
    fields = run("dpkg-deb", "--field", str(deb), "Package", "Section", "Depends").stdout
    assert re.search(r"^Package: berth$", fields, re.M), fields
    assert re.search(r"^Section: net$", fields, re.M), fields
    depends = re.search(r"^Depends: (.*)$", fields, re.M).group(1)
    assert "libc6" in depends and "passwd" in depends, depends

    # The control area: the conffile, and the postinst that makes the user (with the
    # unit's fragments cargo-deb put at #DEBHELPER#).
    ctrl = tmp_path / "control"
    run("dpkg-deb", "--control", str(deb), str(ctrl))
    assert (ctrl / "conffiles").read_text().split() == ["/etc/berth/berth.toml"]
    postinst = ctrl / "postinst"
    assert postinst.stat().st_mode & 0o111, "postinst is not executable"
    text = postinst.read_text()
    assert "useradd --system" in text and "#DEBHELPER#" not in text, text
    assert "deb-systemd-helper" in text, "the unit's postinst fragment is missing"
    for script in ctrl.iterdir():
        if script.name in ("preinst", "postinst", "prerm", "postrm"):
            run("sh", "-n", str(script))

    # Files, owners and modes.
    listing = run("dpkg-deb", "--contents", str(deb)).stdout
    entries = {}
    for line in listing.splitlines():
        parts = line.split()
        entries[parts[-1].lstrip(".")] = (parts[0], parts[1].replace("root", "0"))
    assert entries["/usr/bin/berth"] == ("-rwxr-xr-x", "0/0"), listing
    assert entries["/etc/berth/berth.toml"] == ("-rw-r-----", "0/0"), listing
    assert any("/" + rel in entries for rel in UNIT_PATHS), listing
    assert "/usr/share/doc/berth/README.md" in entries, listing

    root = tmp_path / "root"
    run("dpkg", "-x", str(deb), str(root))
    assert run(str(root / "usr/bin/berth"), "--version").stdout.startswith("berth ")

    # The unit: its own user, the state directory the configuration names, the command
    # line, and the hardening.
    unit = find_unit(root)
    u = unit_entries(unit.read_text())
    assert unit_value(u, "ExecStart") == "/usr/bin/berth serve --config /etc/berth/berth.toml"
    assert unit_value(u, "User") == "berth" and unit_value(u, "Group") == "berth"
    assert unit_value(u, "StateDirectory") == "berth"
    assert unit_value(u, "StateDirectoryMode") == "0700"
    for key, value in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                       ("ProtectHome", "yes"), ("PrivateTmp", "yes"), ("PrivateDevices", "yes"),
                       ("ProtectKernelTunables", "yes"), ("ProtectKernelModules", "yes"),
                       ("ProtectControlGroups", "yes"), ("CapabilityBoundingSet", ""),
                       ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX")]:
        assert unit_value(u, key) == value, f"{key}={unit_value(u, key)!r}, expected {value!r}"
    assert unit_value(u, "WantedBy", "Install") == "multi-user.target"

    config = tomllib.loads((root / CONFIG).read_text())
    assert config["data_dir"] == "/var/lib/" + unit_value(u, "StateDirectory"), config
    assert config["listen"] == "127.0.0.1:5000", config
    # The packaged configuration is one the server accepts (`serve` would refuse an
    # unknown key or a bad value before listening): checked by running it below.

    # The unit as systemd reads it, its ExecStart naming the unpacked binary.
    scratch = tmp_path / "verify"
    scratch.mkdir()
    systemd_analyze_verify(unit, root=root, scratch=scratch)


# ---------------------------------------------------------------------------------------
# Installed and run the way the unit runs it
# ---------------------------------------------------------------------------------------

class PackagedServer(Server):
    """`berth serve` started with the unit's ExecStart command line (under `prefix`, e.g.
    setpriv), the test's data directory and a free loopback port added."""

    def __init__(self, data_dir, command, prefix=()):
        super().__init__(data_dir)
        self.command = [*prefix, *command, "--data-dir", str(self.data_dir), "--listen", "127.0.0.1:0"]

    def start(self, timeout=60):
        self.stderr_lines = []
        self.proc = subprocess.Popen(
            self.command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, umask=0o077, cwd="/",
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "NO_COLOR": "1"},
        )
        found = threading.Event()

        def pump():
            for line in self.proc.stderr:
                self.stderr_lines.append(line)
                m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
                if m and not found.is_set():
                    self.port = int(m.group(1))
                    found.set()
            found.set()

        threading.Thread(target=pump, daemon=True).start()
        assert found.wait(timeout), "berth serve did not start:\n" + "".join(self.stderr_lines)
        assert self.port is not None, (f"{shlex.join(self.command)} exited ({self.proc.wait()}):\n"
                                       + "".join(self.stderr_lines))
        return self


def installed_status():
    p = run("dpkg-query", "-W", "-f=${db:Status-Status}", "berth", check=False)
    return p.stdout.strip() if p.returncode == 0 else "not-installed"


@contextlib.contextmanager
def dpkg_installed(deb):
    """`dpkg -i` the package; `dpkg --purge` it afterwards whatever happened."""
    try:
        run("dpkg", "-i", str(deb))
        yield
    finally:
        run("dpkg", "--purge", "berth")


@contextlib.contextmanager
def machine_lock():
    """One package test at a time on a machine (dpkg and the berth user are shared)."""
    with open("/run/lock/berth-test-package.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def push_and_pull(server, tmp_path):
    """Make a repository, push an image with skopeo, pull it back; the same manifest."""
    repo = unique("pkg/app")
    server.client("ecr", server.root).create_repository(repositoryName=repo)
    password = login_password(server, server.root)
    img = make_image(layers=2)
    write_oci_layout(tmp_path / "src", {"v1": img})
    skopeo_push(server, password, tmp_path / "src", "v1", repo)
    skopeo_pull(server, password, repo, "v1", tmp_path / "dst")
    desc, manifest = read_oci_layout(tmp_path / "dst")
    assert manifest == img.manifest and desc["digest"] == img.digest
    images = server.client("ecr", server.root).describe_images(repositoryName=repo)["imageDetails"]
    assert [i["imageDigest"] for i in images] == [img.digest]


def serve_push_pull(root, tmp_path, user=None):
    """Start the binary under `root` as the unit does (as `user`), push and pull, stop it;
    returns the data directory's owner and the root credentials file's mode."""
    u = unit_entries(find_unit(root).read_text())
    argv = shlex.split(unit_value(u, "ExecStart"))
    # Paths of the command line are the package's: under `root` when it is not "/".
    argv = [str(Path(root) / a.lstrip("/")) if a.startswith("/") else a for a in argv]
    parent = Path(tempfile.mkdtemp(prefix="berth-pkg-"))
    try:
        data = parent / "data"
        prefix = ()
        if user:
            # What User=, NoNewPrivileges= and CapabilityBoundingSet= (empty) give.
            parent.chmod(0o755)
            data.mkdir(mode=0o700)
            pw = pwd.getpwnam(user)
            os.chown(data, pw.pw_uid, pw.pw_gid)
            prefix = ("setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups",
                      "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--")
        server = PackagedServer(data, argv, prefix).start()
        try:
            push_and_pull(server, tmp_path)
        finally:
            rc = server.stop()
        assert rc == 0, f"berth serve exited {rc} after SIGTERM:\n" + "".join(server.stderr_lines[-30:])
        return (data / "berth.db").stat().st_uid, stat.S_IMODE((data / "root-credentials.json").stat().st_mode)
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def test_package_installs_and_serves(deb, tmp_path):
    if os.geteuid() != 0:
        print("not root: the package is unpacked with dpkg -x and run as this user, not installed")
        root = tmp_path / "root"
        run("dpkg", "-x", str(deb), str(root))
        uid, mode = serve_push_pull(root, tmp_path)
        assert uid == os.geteuid() and mode == 0o600
        return

    with machine_lock():
        before = installed_status()
        if before != "not-installed":
            # Someone's berth (or a run killed midway): not ours to replace or purge.
            print(f"berth is {before} on this machine: the package is unpacked and run, not installed")
            root = tmp_path / "root"
            run("dpkg", "-x", str(deb), str(root))
            serve_push_pull(root, tmp_path, user=None)
            return

        with dpkg_installed(deb):
            assert installed_status() == "installed"
            # postinst: a system user with no login, its home the state directory.
            pw = pwd.getpwnam("berth")
            assert pw.pw_uid < 1000 and pw.pw_dir == "/var/lib/berth", pw
            assert pw.pw_shell in ("/usr/sbin/nologin", "/sbin/nologin"), pw
            conf = Path("/" + CONFIG).stat()
            assert (conf.st_uid, conf.st_gid) == (0, grp.getgrnam("berth").gr_gid)
            assert stat.S_IMODE(conf.st_mode) == 0o640
            assert "/etc/berth/berth.toml" in run("dpkg-query", "-W", "-f=${Conffiles}", "berth").stdout
            unit = find_unit("/")
            systemd_analyze_verify(unit)

            uid, mode = serve_push_pull("/", tmp_path, user="berth")
            assert uid == pw.pw_uid, "the data was not written by the berth user"
            assert mode == 0o600

        assert installed_status() == "not-installed"
        for path in ("/usr/bin/berth", "/" + CONFIG, str(unit)):
            assert not Path(path).exists(), f"{path} is left after dpkg --purge"


# ---------------------------------------------------------------------------------------
# The Dockerfile (no base image can be pulled here to build it): what it names exists
# and agrees with the package
# ---------------------------------------------------------------------------------------

def test_dockerfile_agrees_with_the_package():
    lines = []
    for raw in (REPO_ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines():
        raw = raw.strip()
        if raw and not raw.startswith("#"):
            lines.append(raw.split(None, 1))
    instructions = [(k.upper(), v) for k, v in lines]
    froms = [v for k, v in instructions if k == "FROM"]
    assert len(froms) >= 2, "the Dockerfile is not multi-stage"
    for k, v in instructions:
        if k == "COPY" and "--from=" not in v:
            for src in shlex.split(v)[:-1]:
                assert (REPO_ROOT / src).exists(), f"COPY {src}: not in the repository"
    users = [v for k, v in instructions if k == "USER"]
    assert users and users[-1] not in ("root", "0"), users
    config = tomllib.loads((REPO_ROOT / "packaging" / "berth.toml").read_text())
    volumes = [json.loads(v) if v.startswith("[") else v.split() for k, v in instructions if k == "VOLUME"]
    assert [config["data_dir"]] in volumes, volumes
    entrypoint = json.loads(next(v for k, v in instructions if k == "ENTRYPOINT"))
    assert entrypoint[:4] == ["/usr/bin/berth", "serve", "--config", "/etc/berth/berth.toml"], entrypoint
    listen = entrypoint[entrypoint.index("--listen") + 1]
    assert listen.startswith("0.0.0.0:"), f"a container must listen beyond its loopback, not {listen}"
    assert ["EXPOSE", listen.split(":")[1]] in [[k, v] for k, v in instructions], "EXPOSE does not match --listen"
