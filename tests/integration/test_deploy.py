"""deploy:production, deploy:hotfix and deploy:rollback against the sandbox's fixture releases.

1.0.0 (A) and 1.1.0 (B, one migration) are good; 1.2.0 (C) needs a setting the sandbox's app
configuration lacks, so its app answers /api/health with 503 and every deployment of it must go
back. Each test asserts what a user would see: the `current` symlink of each host, the version
the app and nginx report through the edge, rows in the database, the markers in release folders.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest
import requests
from conftest import ROOT, damaged_release_copy, wait_until
from health_helpers import run

pytestmark = pytest.mark.usefixtures("sandbox")

COURSE = "00000000-0000-4000-8000-000000000001"


def hosts(sandbox: dict) -> dict[str, Path]:
    base = Path(sandbox["state_dir"]) / "hosts"
    return {"web-1": base / "web-1" / "frontend", "app-1": base / "app-1" / "app"}


def current(sandbox: dict) -> dict[str, str]:
    return {host: os.path.basename(os.readlink(path / "current")) for host, path in hosts(sandbox).items()}


def releases(sandbox: dict, host: str) -> dict[str, set[str]]:
    """Each release folder on a host with its payops markers."""
    folder = hosts(sandbox)[host] / "releases"
    return {item.name: {marker.name for marker in item.glob(".payops-*")} for item in folder.iterdir()}


def served_versions(sandbox: dict) -> tuple[str, str]:
    """(the frontend's version.json, the app's /api/health version), both through nginx."""
    edge = sandbox["edge_url"]
    frontend = requests.get(f"{edge}/version.json", timeout=5).json()["version"]
    app = requests.get(f"{edge}/api/health", timeout=5).json()["version"]
    return frontend, app


def db(sandbox: dict) -> psycopg.Connection:
    return psycopg.connect(sandbox["postgres_dsn"], autocommit=True)


def lock_row(sandbox: dict) -> tuple | None:
    with db(sandbox) as conn:
        return conn.execute("SELECT run_id, release, operator FROM payops.deploy_locks").fetchone()


def deploy(release: str, *extra: str, command: str = "deploy:production", timeout: float = 400):
    return run(command, f"release={release}", *extra, timeout=timeout)


def ensure_on(sandbox: dict, release: str) -> None:
    if set(current(sandbox).values()) != {release}:
        result, _ = deploy(release)
        assert result.returncode == 0, result.stdout + result.stderr
    assert set(current(sandbox).values()) == {release}


def snapshot(sandbox: dict) -> dict:
    """Everything a refused deployment must leave as it was."""
    return {"current": current(sandbox), "releases": {host: releases(sandbox, host) for host in hosts(sandbox)},
            "lock": lock_row(sandbox)}


class SteadyTraffic:
    """Customers paying through the edge while something happens: checkouts, simulator payments and
    the signed callbacks they cause, plus health probes. Counts every answer that is not the one
    a healthy platform gives, and every callback delivery attempt the app did not accept."""

    def __init__(self, sandbox: dict, workers: int = 3) -> None:
        self.sandbox = sandbox
        self.stop = threading.Event()
        self.answers: Counter[str] = Counter()
        self.failures: list[str] = []
        self.paylinks: list[tuple[str, str]] = []
        self.threads = [threading.Thread(target=self.customer, daemon=True) for _ in range(workers)]
        self.threads.append(threading.Thread(target=self.prober, daemon=True))

    def __enter__(self) -> SteadyTraffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    def customer(self) -> None:
        edge, admin = self.sandbox["edge_url"], self.sandbox["ikhokha_admin_url"]
        session = requests.Session()
        while not self.stop.is_set():
            try:
                response = session.post(f"{edge}/api/checkout", timeout=30, json={
                    "user_id": "00000000-0000-4000-8000-0000000000aa", "course_id": COURSE,
                    "amount": 49900, "currency": "ZAR"})
                self.answers[f"checkout {response.status_code}"] += 1
                if response.status_code != 201:
                    self.failures.append(f"checkout answered {response.status_code}: {response.text[:120]}")
                    continue
                created = response.json()
                paid = session.post(f"{admin}/paylinks/{created['paylink_id']}/pay", timeout=30)
                if paid.status_code != 200:
                    self.failures.append(f"simulator pay answered {paid.status_code}")
                    continue
                self.paylinks.append((created["paylink_id"], created["payment_id"]))
            except requests.RequestException as exc:
                self.failures.append(f"checkout: {exc.__class__.__name__}: {exc}")

    def prober(self) -> None:
        edge = self.sandbox["edge_url"]
        while not self.stop.is_set():
            try:
                response = requests.get(f"{edge}/api/health", timeout=30)
                self.answers[f"health {response.status_code}"] += 1
                if response.status_code != 200:
                    self.failures.append(f"health answered {response.status_code}")
            except requests.RequestException as exc:
                self.failures.append(f"health: {exc.__class__.__name__}: {exc}")
            time.sleep(0.05)

    def callbacks_settled(self) -> list[str]:
        """Every paylink's callback was accepted at its first attempt and the payment completed."""
        admin = self.sandbox["ikhokha_admin_url"]
        problems = []
        with db(self.sandbox) as conn:
            for paylink_id, payment_id in self.paylinks:
                def delivered(paylink_id: str = paylink_id) -> dict | None:
                    state = requests.get(f"{admin}/paylinks/{paylink_id}", timeout=10).json()
                    return state if state.get("deliveries") else None

                def settled(payment_id: str = payment_id) -> tuple | None:
                    return conn.execute("SELECT status FROM payments WHERE id = %s AND status <> 'pending'",
                                        (payment_id,)).fetchone()

                state = wait_until(delivered, timeout=30, what=f"callback of {paylink_id}")
                statuses = [attempt["http_status"] for attempt in state["deliveries"]]
                if statuses[:1] != [200]:
                    problems.append(f"callback of {paylink_id}: attempts answered {statuses}")
                status = wait_until(settled, timeout=30, what=f"payment {payment_id} settled")[0]
                if status != "completed":
                    problems.append(f"payment {payment_id} is {status}")
        return problems


# The tests run in this order and hand the platform on: each starts where the one before left it,
# so that the module deploys as few times as it can (a deployment takes tens of seconds).


def test_deploy_from_s3_runs_migrations_switches_every_host_and_reports_the_version(sandbox):
    ensure_on(sandbox, "1.0.0")
    result, report = deploy("1.1.0", f"release_source=s3://{sandbox['release_bucket']}/releases")
    assert result.returncode == 0, result.stdout + result.stderr
    assert current(sandbox) == {"web-1": "1.1.0", "app-1": "1.1.0"}
    assert served_versions(sandbox) == ("1.1.0", "1.1.0")
    with db(sandbox) as conn:
        rows = conn.execute("SELECT name, release FROM payops.schema_migrations").fetchall()
        assert ("0001_course_reviews.sql", "1.1.0") in rows
        assert conn.execute("SELECT to_regclass('public.course_reviews')").fetchone()[0] is not None
        record = conn.execute("SELECT outcome, kind, operator FROM payops.deployments WHERE release = '1.1.0'"
                              " ORDER BY started_at DESC LIMIT 1").fetchone()
    assert record[0] == "deployed" and record[1] == "deploy" and record[2]
    for host in ("web-1", "app-1"):
        folders = releases(sandbox, host)
        assert ".payops-deployed" in folders["1.1.0"] and ".payops-unfinished" not in folders["1.1.0"]
        assert os.path.basename(os.readlink(hosts(sandbox)[host] / "previous")) == "1.0.0"
    # The app's release links the host's shared configuration.
    app_release = hosts(sandbox)["app-1"] / "releases" / "1.1.0"
    assert os.readlink(app_release / "config.json").endswith("shared/config.json")
    assert lock_row(sandbox) is None
    assert {row["component"]: row["state"] for row in report["rows"]}["deployment"] == "healthy"
    # Secrets: not in the output, not in the audit trail.
    audit = (ROOT / ".payops" / "audit" / "audit.jsonl").read_text()
    for secret in (sandbox["postgres_password"], sandbox["ikhokha_app_secret"]):
        assert secret not in result.stdout + result.stderr
        assert secret not in audit


def test_deploying_the_same_release_again_changes_nothing(sandbox):
    ensure_on(sandbox, "1.1.0")
    before = {host: (hosts(sandbox)[host] / "releases" / "1.1.0" / ".payops-deployed").read_text()
              for host in hosts(sandbox)}
    app_pids = app_processes(sandbox)
    result, report = deploy("1.1.0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert current(sandbox) == {"web-1": "1.1.0", "app-1": "1.1.0"}
    after = {host: (hosts(sandbox)[host] / "releases" / "1.1.0" / ".payops-deployed").read_text()
             for host in hosts(sandbox)}
    assert after == before  # not switched again
    assert {row["value"] for row in report["rows"] if row["component"].endswith("-1")} == {"unchanged"}
    assert app_processes(sandbox) == app_pids  # neither the supervisor nor the app restarted


def app_processes(sandbox: dict) -> tuple[int, str]:
    """(the supervisor's pid, its children's pids)."""
    pid = int((Path(sandbox["state_dir"]) / "app" / "supervisor.pid").read_text())
    return pid, Path(f"/proc/{pid}/task/{pid}/children").read_text().strip()


def test_check_mode_reports_and_changes_nothing(sandbox):
    ensure_on(sandbox, "1.1.0")
    before = snapshot(sandbox)
    result = run_check("deploy:production", "release=1.0.0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "would deploy" in result.stdout
    assert snapshot(sandbox) == before
    assert served_versions(sandbox) == ("1.1.0", "1.1.0")


def run_check(command: str, *variables: str) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "payops.cli", "run", command, "--check"]
    for variable in variables:
        args += ["-e", variable]
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize(("variables", "expected"), [
    (["release=1.0.0", 'release_sha256={"app": "' + "0" * 64 + '"}'], "release_sha256 pins"),
    (["release=9.9.9"], "release 9.9.9 is not in"),
    (["release=../../etc"], "not a safe release id"),
    (["release=1.0.0", "batch_size=5"], "batch_size=5 is larger than the inventory"),
    (["release=1.0.0", "payops_release_source="], "release_source"),
    ([], "release"),
], ids=["pinned-checksum", "unknown-release", "unsafe-id", "batch-too-large", "no-release-source", "no-release"])
def test_bad_input_stops_before_any_host_changes(sandbox, variables, expected):
    before = snapshot(sandbox)
    result, _ = run("deploy:production", *variables, timeout=200)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert expected in output, output
    assert "Traceback" not in output
    assert snapshot(sandbox) == before


def test_a_damaged_artefact_stops_before_any_host_changes(sandbox, tmp_path):
    store = damaged_release_copy(sandbox["release_store"], "1.0.0", "frontend.tar.gz", tmp_path / "store")
    before = snapshot(sandbox)
    result, _ = deploy("1.0.0", f"release_source={store}")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "frontend.tar.gz of release 1.0.0 has SHA-256" in output and "SHA256SUMS says" in output, output
    assert snapshot(sandbox) == before


def test_no_request_fails_during_a_deployment_without_migrations(sandbox):
    ensure_on(sandbox, "1.1.0")
    with SteadyTraffic(sandbox) as traffic:
        wait_until(lambda: traffic.answers["checkout 201"] >= 3, timeout=60, what="traffic flowing")
        result, _ = deploy("1.0.0")
        assert result.returncode == 0, result.stdout + result.stderr
        seen = traffic.answers["checkout 201"]
        wait_until(lambda: traffic.answers["checkout 201"] > seen, timeout=60, what="traffic after the deployment")
    assert traffic.failures == [], traffic.failures[:10]
    assert traffic.answers["checkout 201"] >= 5 and traffic.answers["health 200"] >= 20, traffic.answers
    assert traffic.callbacks_settled() == []
    assert served_versions(sandbox) == ("1.0.0", "1.0.0")


def test_a_failing_release_goes_back_on_every_host_and_names_the_check(sandbox):
    ensure_on(sandbox, "1.0.0")
    result, report = deploy("1.2.0", "health_timeout=8", "keep_releases=1")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "search_url" in output and "app-1" in output, output
    assert current(sandbox) == {"web-1": "1.0.0", "app-1": "1.0.0"}
    assert served_versions(sandbox) == ("1.0.0", "1.0.0")
    for host in hosts(sandbox):
        folders = releases(sandbox, host)
        assert ".payops-failed" in folders["1.2.0"]
        assert "1.1.0" in folders  # a failed deployment prunes nothing
    rows = {row["component"]: row for row in report["rows"]}
    assert rows["deployment"]["state"] == "down" and rows["deployment"]["value"] == "rolled back"
    assert "search_url" in rows["app app-1"]["detail"]
    assert rows["app app-1"]["value"] == "rolled back"
    with db(sandbox) as conn:
        outcome = conn.execute("SELECT outcome FROM payops.deployments WHERE release = '1.2.0'"
                               " ORDER BY started_at DESC LIMIT 1").fetchone()[0]
    assert outcome == "rolled back"
    assert lock_row(sandbox) is None


def test_keep_releases_never_counts_failed_ones_nor_removes_the_previous_good(sandbox):
    # After the failed 1.2.0 above: on 1.0.0, with 1.1.0 and the failed 1.2.0 beside it.
    # Asked for maintenance too: it is on during the rollout and off after it.
    ensure_on(sandbox, "1.0.0")
    result, _ = deploy("1.1.0", "keep_releases=1", "maintenance=true")
    assert result.returncode == 0, result.stdout + result.stderr
    for host in hosts(sandbox):
        folders = releases(sandbox, host)
        # current (1.1.0) and previous (1.0.0, the last good one before it) stay; the failed one goes.
        assert set(folders) == {"1.0.0", "1.1.0"}, folders
    with db(sandbox) as conn:
        events = conn.execute("SELECT enabled FROM payops.switch_events WHERE name = 'maintenance'"
                              " AND reason LIKE 'deployment of 1.1.0%%' ORDER BY set_at DESC LIMIT 2").fetchall()
        enabled = conn.execute("SELECT enabled FROM payops.switches WHERE name = 'maintenance'").fetchone()[0]
    assert [row[0] for row in events] == [False, True] and not enabled
    assert requests.get(f"{sandbox['edge_url']}/", timeout=5, headers={"X-Payops-Probe": "outside"}).status_code == 200


def test_rollback_goes_back_to_previous_and_refuses_a_release_it_cannot_go_to(sandbox):
    ensure_on(sandbox, "1.1.0")
    result, _ = run("deploy:rollback", "reason=test of the rollback", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert current(sandbox) == {"web-1": "1.0.0", "app-1": "1.0.0"}
    assert served_versions(sandbox) == ("1.0.0", "1.0.0")
    before = snapshot(sandbox)
    result, _ = run("deploy:rollback", "release=1.2.0", "reason=test", timeout=300)
    assert result.returncode != 0 and "nothing was changed" in result.stdout + result.stderr
    assert snapshot(sandbox) == before
    result, _ = run("deploy:rollback", "release=1.1.0", "reason=back to the newest", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert served_versions(sandbox) == ("1.1.0", "1.1.0")


def test_hotfix_deploys_the_canary_first_and_stops_there_when_it_fails(sandbox):
    ensure_on(sandbox, "1.1.0")
    result, report = deploy("1.2.0", "health_timeout=5", command="deploy:hotfix")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    rows = {row["component"]: row for row in report["rows"]}
    # The canary (the app host) failed and went back; the web host was never touched.
    assert rows["app app-1"]["value"] == "rolled back"
    assert rows["frontend web-1"]["value"].startswith("not reached"), output
    assert "1.2.0" not in releases(sandbox, "web-1")
    assert current(sandbox) == {"web-1": "1.1.0", "app-1": "1.1.0"}
    with db(sandbox) as conn:
        switches = dict(conn.execute("SELECT name, enabled FROM payops.switches").fetchall())
    assert not switches["maintenance"]


def test_two_operators_at_once_then_an_interrupted_deployment(sandbox):
    """A second deployment is refused while one runs; a killed one leaves a lock that is first
    reported as running, then (by the operator's threshold) as stale, and is taken over by name;
    the deployment that takes over brings every host to its release."""
    ensure_on(sandbox, "1.1.0")
    first = subprocess.Popen(
        [sys.executable, "-m", "payops.cli", "run", "deploy:production", "-e", "release=1.0.0"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        holder = wait_until(lambda: lock_row(sandbox), timeout=120, what="the first deployment's lock")
        second, _ = deploy("1.0.0")
        output = second.stdout + second.stderr
        assert second.returncode != 0
        assert f"held by {holder[2]} (run {holder[0]}, release 1.0.0" in output, output
        assert "a deployment is running" in output
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(30)
    assert lock_row(sandbox) == holder  # the killed run could not give it back
    result, _ = deploy("1.0.0", "lock_stale_after=0")
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "looks stale" in output and f"break_lock={holder[0]}" in output, output
    result, _ = deploy("1.0.0", "lock_stale_after=0", f"break_lock={holder[0]}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert current(sandbox) == {"web-1": "1.0.0", "app-1": "1.0.0"}
    assert served_versions(sandbox) == ("1.0.0", "1.0.0")
    for host in hosts(sandbox):
        assert ".payops-unfinished" not in releases(sandbox, host)["1.0.0"]
    assert lock_row(sandbox) is None


def test_a_deployment_whose_lock_is_taken_over_stops_and_goes_back(sandbox):
    """Someone broke this run's lock (as break_lock does) while its first batch ran: at the batch's
    end the run finds the lock names another run, stops, and takes its switched host back."""
    ensure_on(sandbox, "1.0.0")
    run_ = subprocess.Popen(
        [sys.executable, "-m", "payops.cli", "run", "deploy:production", "-e", "release=1.1.0", "-e", "batch_size=1"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: lock_row(sandbox), timeout=120, what="the deployment's lock")
        with db(sandbox) as conn:
            conn.execute("UPDATE payops.deploy_locks SET run_id = 'another-operator-run', operator = 'mallory'")
        output, _ = run_.communicate(timeout=400)
    finally:
        if run_.poll() is None:
            run_.kill()
        with db(sandbox) as conn:
            conn.execute("DELETE FROM payops.deploy_locks WHERE run_id = 'another-operator-run'")
    assert run_.returncode != 0
    assert "the deploy lock was lost" in output and "mallory" in output, output
    assert current(sandbox) == {"web-1": "1.0.0", "app-1": "1.0.0"}
    assert served_versions(sandbox) == ("1.0.0", "1.0.0")
