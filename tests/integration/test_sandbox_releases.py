"""The sandbox's releases: the release store and its S3 copy, the deploy roots `payops sandbox up`
installs release 1.0.0 on, and the app's supervisor restarting the app (SIGHUP) into whatever
`current` points at without failing a request.

Uses the session fixture `sandbox` (tests/conftest.py). The tests that switch `current` or restart
the app put both back as they found them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import tarfile
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import boto3
import conftest
import pytest
import requests
from conftest import payops, sandbox_status

pytestmark = pytest.mark.sandbox

IDS = ["1.0.0", "1.1.0", "1.2.0"]
ARTEFACTS = ("app.tar.gz", "frontend.tar.gz", "release.json")


def wait_until(check, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"):
    return conftest.wait_until(check, timeout, interval, what=what, tolerate=(requests.RequestException, OSError))


def store(sandbox) -> Path:
    return Path(sandbox["release_store"])


def roots(sandbox) -> dict[str, Path]:
    state = Path(sandbox["state_dir"])
    return {"frontend": state / "hosts" / "web-1" / "frontend", "app": state / "hosts" / "app-1" / "app"}


def members(path: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(path, "r:gz") as archive:
        return {info.name: info for info in archive.getmembers()}


def read_member(path: Path, name: str) -> bytes:
    with tarfile.open(path, "r:gz") as archive:
        return archive.extractfile(name).read()


def supervisor_pid(sandbox) -> int:
    return int((Path(sandbox["state_dir"]) / "app" / "supervisor.pid").read_text())


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if fields[0] not in ("Z", "X") and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def app_child(sandbox, other_than: int | None = None) -> int:
    """The app process the supervisor runs now (the only one, once a restart is over)."""

    def one() -> int | None:
        children = children_of(supervisor_pid(sandbox))
        return children[0] if len(children) == 1 and children[0] != other_than else None

    return wait_until(one, what="one app child under the supervisor"
                      + (f", not {other_than}" if other_than else ""))


def health_answering(sandbox, status: int) -> requests.Response:
    def answer() -> list[requests.Response]:
        response = edge_health(sandbox)
        return [response] if response.status_code == status else []  # a 503 Response itself is falsy

    return wait_until(answer, what=f"/api/health through the edge answering {status}")[0]


def edge_health(sandbox) -> requests.Response:
    return requests.get(f"{sandbox['edge_url']}/api/health", timeout=10)


def switch_current(root: Path, target: str) -> None:
    """What a deployment does: a new symlink renamed over `current` in one step."""
    link = root / ".current.test"
    if os.path.lexists(link):
        link.unlink()
    os.symlink(target, link)
    os.replace(link, root / "current")


def restart_app(sandbox, before: int) -> int:
    os.kill(supervisor_pid(sandbox), signal.SIGHUP)
    return app_child(sandbox, other_than=before)


# ---------------------------------------------------------------------------------- the store
def test_store_holds_the_three_releases_with_matching_checksums(sandbox):
    assert sandbox["release_ids"] == IDS
    assert sandbox["release_bucket"] == "betaskill-releases"
    for release_id in IDS:
        folder = store(sandbox) / release_id
        sums = {}
        for line in (folder / "SHA256SUMS").read_text().splitlines():
            digest, name = line.split("  ", 1)
            sums[name] = digest
        assert set(sums) == set(ARTEFACTS), sums
        for name in ARTEFACTS:
            assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == sums[name], f"{release_id}/{name}"

        release = json.loads((folder / "release.json").read_text())
        assert release["id"] == release["version"] == release_id
        assert release["maintenance"] is False
        app, frontend = folder / "app.tar.gz", folder / "frontend.tar.gz"
        # The same release.json beside the tarballs and inside each.
        assert read_member(app, "release.json") == (folder / "release.json").read_bytes()
        assert read_member(frontend, "release.json") == (folder / "release.json").read_bytes()

        app_members = members(app)
        launcher = app_members["bin/betaskill-app"]
        assert launcher.mode & 0o111 and read_member(app, "bin/betaskill-app").startswith(b"#!")
        assert app_members["migrations"].isdir()
        migrations = sorted(name.split("/", 1)[1] for name in app_members if name.startswith("migrations/"))
        assert migrations == release["migrations"]
        assert set(members(frontend)) == {"release.json", "index.html", "404.html", "version.json"}
        assert json.loads(read_member(frontend, "version.json")) == {"version": release_id}
        assert release_id.encode() in read_member(frontend, "index.html")
        # Reproducible: no per-build time or owner in the tarballs.
        for path in (app, frontend):
            assert path.read_bytes()[4:8] == b"\0\0\0\0", "gzip header time"
            assert {(info.uid, info.gid) for info in members(path).values()} == {(0, 0)}
            assert len({info.mtime for info in members(path).values()}) == 1

    releases = {release_id: json.loads((store(sandbox) / release_id / "release.json").read_text())
                for release_id in IDS}
    assert releases["1.0.0"]["migrations"] == [] and releases["1.0.0"]["requires_settings"] == []
    assert releases["1.1.0"]["migrations"] == ["0001_course_reviews.sql"]
    assert releases["1.2.0"]["migrations"] == ["0001_course_reviews.sql"]
    assert releases["1.2.0"]["requires_settings"] == ["search_url"]
    sql = read_member(store(sandbox) / "1.1.0" / "app.tar.gz", "migrations/0001_course_reviews.sql").decode().lower()
    assert "create table public.course_reviews" in sql and "between 1 and 5" in sql


def test_up_keeps_the_store_byte_for_byte_and_the_bucket_holds_it(sandbox):
    files = sorted(path for path in store(sandbox).rglob("*") if path.is_file())
    before = {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in files}
    payops("sandbox", "up")
    after = {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in files}
    assert after == before  # same checksums, and nothing rewritten
    s3 = boto3.client("s3", endpoint_url=sandbox["s3_endpoint"], region_name=sandbox["s3_region"],
                      aws_access_key_id=sandbox["aws_access_key_id"],
                      aws_secret_access_key=sandbox["aws_secret_access_key"])
    listed = s3.list_objects_v2(Bucket="betaskill-releases", Prefix="releases/")["Contents"]
    expected = {f"releases/{release_id}/{name}" for release_id in IDS for name in (*ARTEFACTS, "SHA256SUMS")}
    assert {item["Key"] for item in listed} >= expected
    for key in expected:
        _prefix, release_id, name = key.split("/")
        stored = s3.get_object(Bucket="betaskill-releases", Key=key)["Body"].read()
        assert stored == (store(sandbox) / release_id / name).read_bytes(), key


# --------------------------------------------------------------------------- the deploy roots
def test_both_hosts_run_release_1_0_0_as_a_deployment_leaves_it(sandbox):
    for component, root in roots(sandbox).items():
        current = root / "current"
        assert current.is_symlink(), component
        assert current.resolve() == (root / "releases" / "1.0.0").resolve(), (component, os.readlink(current))
        assert (root / "shared").is_dir(), component
        marker = (current / ".payops-deployed").read_text().strip()
        datetime.fromisoformat(marker)  # an ISO timestamp
        assert json.loads((current / "release.json").read_text())["id"] == "1.0.0"
    app = roots(sandbox)["app"]
    link = app / "current" / "config.json"
    assert link.is_symlink() and Path(os.readlink(link)) == app / "shared" / "config.json"
    assert os.access(app / "current" / "bin" / "betaskill-app", os.X_OK)
    config = json.loads(link.read_text())
    assert config["port"] == sandbox["services"]["app"]["port"]

    health = edge_health(sandbox)
    assert health.status_code == 200, health.text
    assert health.json()["version"] == "1.0.0" and health.json()["release"] == "1.0.0"
    version = requests.get(f"{sandbox['edge_url']}/version.json", timeout=10)
    assert version.status_code == 200 and version.json() == {"version": "1.0.0"}
    home = requests.get(f"{sandbox['edge_url']}/", timeout=10)
    assert home.status_code == 200 and 'content="1.0.0"' in home.text
    assert requests.get(f"{sandbox['edge_url']}/.payops-deployed", timeout=10).status_code == 404


def test_the_app_runs_from_current_under_its_supervisor(sandbox):
    supervisor = supervisor_pid(sandbox)
    assert supervisor == sandbox_status()["services"]["app"]["pid"]  # the process the sandbox tracks
    child = app_child(sandbox)
    assert b"payops.sandbox.supervisor" in Path(f"/proc/{supervisor}/cmdline").read_bytes().split(b"\0")
    argv = [part.decode() for part in Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0") if part]
    app = roots(sandbox)["app"]
    current = app / "current"
    assert argv[1:] == [str(current / "bin" / "betaskill-app"), "--config", str(current / "config.json")]
    # The child serves on the supervisor's socket (fd 3), it did not bind one of its own.
    assert os.readlink(f"/proc/{child}/fd/3").startswith("socket:")


# ---------------------------------------------------------------------------------- restarts
def test_sighup_restarts_the_app_under_load_without_a_failed_request(sandbox):
    url = f"{sandbox['edge_url']}/api/health"
    first = app_child(sandbox)
    results: Counter[str] = Counter()
    failures: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    started = threading.Barrier(201)

    def hammer() -> None:
        session = requests.Session()
        started.wait()
        while not stop.is_set():
            try:
                answer = session.get(url, timeout=30)
                outcome = "ok" if answer.status_code == 200 else f"{answer.status_code}: {answer.text[:120]}"
            except requests.RequestException as exc:
                outcome = f"{type(exc).__name__}: {exc}"
            with lock:
                results[outcome == "ok"] += 1
                if outcome != "ok":
                    failures.append(outcome)

    threads = [threading.Thread(target=hammer, daemon=True) for _ in range(200)]
    for thread in threads:
        thread.start()
    started.wait()
    children = [first]
    try:
        for _ in range(3):
            time.sleep(1.0)  # requests in flight and queued when the signal comes
            children.append(restart_app(sandbox, children[-1]))
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    total = results[True] + results[False]
    assert failures == [], f"{len(failures)} of {total} requests failed, first: {failures[:5]}"
    assert results[True] >= 200, results
    assert len(set(children)) == 4, children  # a new app process each time
    assert edge_health(sandbox).json()["release"] == "1.0.0"


def test_a_release_missing_a_setting_fails_its_health_check_after_a_switch(sandbox):
    app = roots(sandbox)["app"]
    release = app / "releases" / "1.2.0"
    unpacked_here = not release.exists()
    previous = os.readlink(app / "current")
    if unpacked_here:
        release.mkdir()
        with tarfile.open(store(sandbox) / "1.2.0" / "app.tar.gz", "r:gz") as archive:
            archive.extractall(release, filter="data")
        os.symlink(app / "shared" / "config.json", release / "config.json")
    child = app_child(sandbox)
    try:
        switch_current(app, "releases/1.2.0")
        child = restart_app(sandbox, child)
        body = health_answering(sandbox, 503).json()
        assert body["status"] == "misconfigured" and body["version"] == "1.2.0", body
        check = body["checks"]["configuration"]
        assert "search_url" in check and "1.2.0" in check and "config.json" in check, check
        # Only the health check says no: the app still answers its other routes.
        assert requests.get(f"{sandbox['app_url']}/metrics", timeout=10).status_code == 200
    finally:
        switch_current(app, previous)
        restart_app(sandbox, child)
        if unpacked_here:
            shutil.rmtree(release)
    assert health_answering(sandbox, 200).json()["release"] == Path(previous).name


def test_an_app_child_that_dies_is_started_again(sandbox):
    child = app_child(sandbox)
    os.kill(child, signal.SIGKILL)
    assert app_child(sandbox, other_than=child) != child
    health_answering(sandbox, 200)
