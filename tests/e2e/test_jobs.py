"""Background jobs across nodes: two `berth serve` processes on one data directory (one
SQLite database shared through WAL) run each cleaning job on exactly one of them; a node
killed with SIGKILL hands its jobs on when its lease expires, one stopped with SIGTERM
releases them at once; and the cleaning still removes abandoned uploads."""

import re
import signal
import sqlite3
import time

from berth import Registry, Server, login_password, unique, until

LEASE = 3  # job_lease_seconds: renewed every second
JOBS = ("expire-sessions", "expire-uploads")
CONFIG = f"job_lease_seconds = {LEASE}\nclean_interval_seconds = 0.5\nupload_idle_seconds = 2\n"



def leases(data_dir):
    """{job: (holder, acquired_at, expires_at, last_run_at)} as the database has them."""
    db = sqlite3.connect(data_dir / "berth.db", timeout=10)
    try:
        rows = db.execute("SELECT job, holder, acquired_at, expires_at, last_run_at FROM leases").fetchall()
    finally:
        db.close()
    return {r[0]: r[1:] for r in rows}


def now_ms():
    return int(time.time() * 1000)


def holder_id(server):
    """The holder id the server logged at start."""
    def find():
        for line in server.stderr_lines:
            m = re.search(r"holder id.*holder=(\S+)", line)
            if m:
                return m.group(1)
        return None
    return until("the server logs its holder id", 10, find)


def runs(server, job):
    """The server's log lines saying it ran `job` (each names this server's holder)."""
    lines = [l for l in server.stderr_lines if "job ran" in l and re.search(rf'job="?{job}"?\s', l + " ")]
    for line in lines:
        assert f"holder={holder_id(server)}" in line, line
    return lines


def start_pair(tmp_path_factory):
    data = tmp_path_factory.mktemp("jobs") / "data"
    a = Server(data, extra_config=CONFIG).start()
    b = Server(data, extra_config=CONFIG).start()
    return data, a, b


def held_by(data, job, server):
    lease = leases(data).get(job)
    return lease if lease and lease[0] == holder_id(server) and lease[2] > now_ms() else None


def test_one_node_runs_each_job_and_another_takes_over(tmp_path_factory):
    data, a, b = start_pair(tmp_path_factory)
    c = None
    try:
        ids = {holder_id(a): a, holder_id(b): b}
        assert len(ids) == 2, "each process has its own holder id"

        # Each job runs, several times, on exactly one of the two nodes.
        holders = {}
        for job in JOBS:
            until(f"{job} ran three times", 20, lambda: len(runs(a, job)) + len(runs(b, job)) >= 3)
            holder = leases(data)[job][0]
            assert holder in ids
            holders[job] = ids[holder]
            other = b if holders[job] is a else a
            assert runs(other, job) == [], f"{job} ran on the node without its lease"

        # SIGKILL the node holding expire-uploads: its lease stands until it expires, then
        # the other node takes the job over and runs it.
        job = "expire-uploads"
        dead, survivor = holders[job], (b if holders[job] is a else a)
        killed_lease = leases(data)[job]
        assert dead.stop(signal.SIGKILL) == -signal.SIGKILL
        killed_at = time.time()
        before = len(runs(survivor, job))
        taken = until("the survivor holds the lease", LEASE * 3, lambda: held_by(data, job, survivor))
        until("the survivor runs the job", 10, lambda: len(runs(survivor, job)) > before)
        assert time.time() - killed_at < LEASE + LEASE / 3 + 2
        # Taken over only once the dead node's last renewal had expired.
        final = leases(data)[job]
        assert taken[1] >= killed_lease[2], (killed_lease, taken)
        assert final[0] == holder_id(survivor) and final[1] == taken[1]

        # A new node joins; SIGTERM the survivor, which now holds every job (the dead
        # node's jobs came to it): it releases them and the new node takes each over
        # before the released leases would have expired.
        c = Server(data, extra_config=CONFIG).start()
        for j in JOBS:
            until(f"the survivor holds {j}", LEASE * 3, lambda: held_by(data, j, survivor))
        assert all(leases(data)[j][0] != holder_id(c) for j in JOBS)
        standing = {j: leases(data)[j][2] for j in JOBS}
        assert survivor.stop(signal.SIGTERM) == 0
        after = leases(data)
        for j in JOBS:
            assert after[j][0] != holder_id(survivor) or after[j][2] == 0, f"{j} not released: {after[j]}"
        assert any("released the job's lease" in l for l in survivor.stderr_lines)
        for j in JOBS:
            took = until(f"the new node holds {j}", LEASE * 3, lambda: held_by(data, j, c))
            assert took[1] < standing[j], f"{j} taken at {took[1]}, not before {standing[j]} (the lease's expiry)"
            until(f"the new node runs {j}", 10, lambda: runs(c, j))
    finally:
        for s in (a, b, c):
            if s is not None and s.proc is not None:
                s.stop(signal.SIGKILL)


def test_abandoned_upload_is_removed(tmp_path_factory):
    data, a, b = start_pair(tmp_path_factory)
    try:
        repo = unique("idle")
        a.client("ecr", a.root).create_repository(repositoryName=repo)
        reg = Registry(a, login_password(a, a.root))
        idle = reg.start_upload(repo)
        assert idle.status_code == 202, idle.text
        location = idle.headers["Location"]
        assert reg.patch(location, b"x" * 1000, start=0).status_code == 202
        upload_id = location.rstrip("/").split("/")[-1].split("?")[0]
        staged = [p for p in (data / "uploads").iterdir() if upload_id in p.name]
        assert staged, f"upload {upload_id} has a staging file"
        busy = reg.start_upload(repo).headers["Location"]
        sent = 0

        # Untouched past upload_idle_seconds, it is removed by whichever node cleans: the
        # record (the session answers BLOB_UPLOAD_UNKNOWN) and the staged file.
        # Another upload, sent a little to all along, stays.
        def gone():
            nonlocal sent
            r = reg.patch(busy, b"y" * 10, start=sent)
            assert r.status_code == 202, f"the upload in use was removed: {r.status_code} {r.text}"
            sent += 10
            r = reg.request("GET", location)
            return r.status_code == 404 and not any(p.exists() for p in staged)
        until("the abandoned upload is removed", 20, gone)
        r = reg.request("GET", location)
        assert "BLOB_UPLOAD_UNKNOWN" in r.text, r.text
        assert reg.request("GET", busy).status_code == 204
        # The staged file can go a run before the record (its mtime is a little older
        # than the record's last touch): the record goes in a later run, and says so.
        until("a node says it removed the abandoned upload", 10,
              lambda: any(re.search(r"job ran: removed [1-9]\d* abandoned uploads", l)
                          for l in a.stderr_lines + b.stderr_lines))
    finally:
        for s in (a, b):
            assert s.stop(signal.SIGTERM) == 0
