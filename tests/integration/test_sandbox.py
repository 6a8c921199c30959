"""The local sandbox over real HTTP and SQL: every service answers, `up` is idempotent and recovers,
a busy port is avoided and reported, a missing package is named, `down` leaves nothing behind,
faults can be injected, and `traffic` makes payments through the real paths.

Uses the session fixture `sandbox` (tests/conftest.py). The tests that need a sandbox of their own
(ports, down) run it in a temporary state directory on other ports, so the shared one keeps going.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import conftest
import psycopg
import pytest
import requests
from conftest import payops, sandbox_status

pytestmark = pytest.mark.sandbox

STATUS_KEYS = {
    "postgres_dsn", "s3_endpoint", "s3_bucket", "s3_region", "aws_access_key_id", "aws_secret_access_key",
    "ikhokha_url", "ikhokha_app_id", "ikhokha_app_secret", "app_url", "edge_url", "prometheus_url",
    "alertmanager_url", "notify_url", "state_dir", "services",
}
SERVICES = {"postgres", "s3", "sink", "ikhokha", "app", "alertmanager", "blackbox", "node", "prometheus", "edge"}


def wait_until(check, timeout: float = 30.0, interval: float = 0.2):
    return conftest.wait_until(check, timeout, interval,
                               tolerate=(requests.RequestException, psycopg.Error, KeyError, IndexError))


def sim_admin(sandbox: dict) -> str:
    return sandbox["ikhokha_url"].replace("/public-api/v1/api", "/_sim")


def free_ports(count: int) -> list[int]:
    """Ports nothing listens on now, distinct, away from the sandboxes' usual ranges."""
    chosen: list[int] = []
    while len(chosen) < count:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port not in chosen and not 15000 <= port < 30000:
            chosen.append(port)
    return chosen


def processes_of(state_dir: Path) -> list[str]:
    """Every live process that names the state directory (command line, working directory, marker)."""
    found = []
    marker = f"PAYOPS_SANDBOX_OWNER={state_dir}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            stat = (entry / "stat").read_text()
            if stat[stat.rfind(")") + 2] == "Z":
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(state_dir) in cmdline or cwd.startswith(str(state_dir)) or marker in environ:
            found.append(f"{entry.name}: {cmdline[:120]}")
    return found


# ------------------------------------------------------------------------------ every service
def test_status_json_has_every_endpoint_credential_and_service(sandbox):
    assert set(sandbox) >= STATUS_KEYS
    assert set(sandbox["services"]) == SERVICES
    for name, service in sandbox["services"].items():
        assert service["state"] == "running", name
        assert service["pid"] and service["port"], name
        assert service["log"].startswith(sandbox["state_dir"]), name
    assert sandbox["postgres_dsn"].startswith("postgresql://postgres:")
    assert sandbox["s3_bucket"] == "payops-backups"


def test_state_json_is_private_and_holds_the_same_credentials(sandbox):
    path = Path(sandbox["state_dir"]) / "state.json"
    assert path.stat().st_mode & 0o077 == 0
    state = json.loads(path.read_text())
    for key in ("postgres_dsn", "ikhokha_app_id", "ikhokha_app_secret", "edge_url", "notify_url"):
        assert state[key] == sandbox[key]
    assert state["ports"]["edge"] == sandbox["services"]["edge"]["port"]


def test_postgres_has_the_betaskill_and_payops_schemas(sandbox):
    with psycopg.connect(sandbox["postgres_dsn"]) as conn:
        assert conn.execute("SELECT count(*) FROM public.courses").fetchone()[0] >= 3
        switches = {row[0] for row in conn.execute("SELECT name FROM payops.switches")}
    assert switches == {"payments_stopped", "maintenance", "lockdown"}


def test_s3_bucket_is_versioned(sandbox):
    s3 = boto3.client("s3", endpoint_url=sandbox["s3_endpoint"], region_name=sandbox["s3_region"],
                      aws_access_key_id=sandbox["aws_access_key_id"],
                      aws_secret_access_key=sandbox["aws_secret_access_key"])
    assert s3.get_bucket_versioning(Bucket=sandbox["s3_bucket"])["Status"] == "Enabled"
    s3.put_object(Bucket=sandbox["s3_bucket"], Key="tests/hello.txt", Body=b"one")
    s3.put_object(Bucket=sandbox["s3_bucket"], Key="tests/hello.txt", Body=b"two")
    versions = s3.list_object_versions(Bucket=sandbox["s3_bucket"], Prefix="tests/hello.txt")["Versions"]
    assert len(versions) >= 2


def test_simulator_app_and_sink_answer(sandbox):
    assert requests.get(f"{sim_admin(sandbox)}/health", timeout=5).status_code == 200
    assert requests.get(f"{sandbox['app_url']}/api/health", timeout=5).status_code == 200
    sink = sandbox["notify_url"].rsplit("/", 1)[0]
    assert requests.get(f"{sink}/health", timeout=5).status_code == 200
    assert requests.post(sandbox["notify_url"], json={"text": "hello from the tests"}, timeout=5).ok


def test_nginx_serves_the_frontend_and_proxies_the_api(sandbox):
    home = requests.get(sandbox["edge_url"] + "/", timeout=5)
    assert home.status_code == 200
    assert "payops-release" in home.text
    health = requests.get(f"{sandbox['edge_url']}/api/health", timeout=5)
    assert health.status_code == 200
    assert "nginx" in health.headers.get("Server", "")


def test_prometheus_scrapes_the_app_and_alertmanager_is_ready(sandbox):
    assert requests.get(f"{sandbox['prometheus_url']}/-/ready", timeout=5).status_code == 200
    assert requests.get(f"{sandbox['alertmanager_url']}/-/ready", timeout=5).status_code == 200

    def app_target_up() -> bool:
        targets = requests.get(f"{sandbox['prometheus_url']}/api/v1/targets", timeout=5).json()
        return any(t["labels"]["job"] == "betaskill-app" and t["health"] == "up"
                   for t in targets["data"]["activeTargets"])

    wait_until(app_target_up, timeout=30)
    rules = requests.get(f"{sandbox['prometheus_url']}/api/v1/rules", timeout=5).json()
    names = {rule["name"] for group in rules["data"]["groups"] for rule in group["rules"]}
    assert {"PaymentSuccessRateLow", "HighResponseTime", "HighErrorRate", "WebhookBacklog", "AppDown"} <= names
    wait_until(lambda: requests.get(f"{sandbox['prometheus_url']}/api/v1/alertmanagers", timeout=5)
               .json()["data"]["activeAlertmanagers"], timeout=30)


# ------------------------------------------------------------------------ idempotence, recovery
def test_up_twice_reuses_the_same_processes(sandbox):
    before = {name: s["pid"] for name, s in sandbox_status()["services"].items()}
    result = payops("sandbox", "up")
    after = {name: s["pid"] for name, s in sandbox_status()["services"].items()}
    assert after == before
    assert "started: nothing" in result.stdout
    # No time limit here (benchmarks/ measure; a test never gates on a time): reuse is the effect.
    assert "reused: " in result.stdout and "reused: nothing" not in result.stdout


def test_up_restarts_a_crashed_service(sandbox):
    status = sandbox_status()
    old = status["services"]["sink"]["pid"]
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: sandbox_status()["services"]["sink"]["state"] == "stopped", timeout=10)
    result = payops("sandbox", "up")
    assert "started sink" in result.stderr
    sink = sandbox_status()["services"]["sink"]
    assert sink["state"] == "running" and sink["pid"] != old


# --------------------------------------------------------------------------------- bad input
def test_a_missing_package_is_named_with_the_command_that_installs_it(tmp_path):
    env = {"PAYOPS_SANDBOX_DIR": str(tmp_path / "sbx"), "PATH": str(Path(sys.executable).parent)}
    result = payops("sandbox", "up", "--only", "prometheus", env=env, check=False)
    assert result.returncode != 0
    assert "prometheus" in result.stderr and "scripts/bootstrap" in result.stderr
    assert "apt-get install" in result.stderr
    assert "Traceback" not in result.stderr
    assert processes_of(tmp_path / "sbx") == []


@pytest.mark.slow
def test_own_sandbox_avoids_a_busy_port_and_down_leaves_nothing():
    """A whole second sandbox in its own state directory, on other preferred ports."""
    # Not pytest's tmp_path: run as root, PostgreSQL runs as `postgres`, which must reach the directory.
    state_dir = Path(tempfile.mkdtemp(prefix="payops-sandbox-test-"))
    state_dir.chmod(0o755)
    # Ports free now, not fixed ones: another sandbox on this machine (a colleague's, a second test
    # session with PAYOPS_SANDBOX_PORTS) may hold any fixed set.
    ports = dict(zip(("edge", "app", "ikhokha", "s3", "sink", "postgres", "prometheus", "alertmanager"),
                     free_ports(8), strict=True))
    env = {"PAYOPS_SANDBOX_DIR": str(state_dir),
           "PAYOPS_SANDBOX_PORTS": ",".join(f"{k}={v}" for k, v in ports.items())}
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", ports["sink"]))
        squatter.listen()
        try:
            result = payops("sandbox", "up", env=env, timeout=300)
            assert f"port {ports['sink']} for sink is in use" in result.stderr
            status = sandbox_status(env)
            assert status["state_dir"] == str(state_dir)
            assert all(s["state"] == "running" for s in status["services"].values()), status["services"]
            sink_port = status["services"]["sink"]["port"]
            assert sink_port != ports["sink"]
            assert status["notify_url"] == f"http://127.0.0.1:{sink_port}/notify"
            assert requests.get(f"http://127.0.0.1:{sink_port}/health", timeout=5).status_code == 200
            assert status["services"]["edge"]["port"] == ports["edge"]
            health = requests.get(f"{status['edge_url']}/api/health", timeout=5)
            assert health.status_code == 200
            # A first `up` installs release 1.0.0 on both deploy roots, `current` relative to them.
            for root in (state_dir / "hosts" / "web-1" / "frontend", state_dir / "hosts" / "app-1" / "app"):
                assert os.readlink(root / "current") == "releases/1.0.0", root
                assert (root / "releases" / "1.0.0" / ".payops-deployed").is_file(), root
            assert health.json()["version"] == "1.0.0"
            assert requests.get(f"{status['edge_url']}/version.json", timeout=5).json() == {"version": "1.0.0"}
            assert processes_of(state_dir)
        finally:
            down = payops("sandbox", "down", env=env, check=False)
    assert down.returncode == 0, down.stderr
    assert processes_of(state_dir) == []
    assert all(s["state"] == "stopped" for s in sandbox_status(env)["services"].values())
    # The data and the credentials stay for the next `up`; --purge removes them.
    assert (state_dir / "state.json").exists() and (state_dir / "postgres" / "data").exists()
    payops("sandbox", "down", "--purge", env=env)
    assert not state_dir.exists()


# ------------------------------------------------------------------------------ faults, traffic
def test_dropped_callbacks_leave_the_payment_pending(sandbox):
    admin = sim_admin(sandbox)
    original = requests.get(f"{admin}/faults", timeout=5).json()
    requests.put(f"{admin}/faults", json={**original, "drop_callbacks": True}, timeout=5).raise_for_status()
    try:
        order = {"user_id": "6f1c2d3e-4b5a-4c6d-8e7f-000000000001",
                 "course_id": "00000000-0000-4000-8000-000000000003", "amount": 29900, "currency": "ZAR"}
        created = requests.post(f"{sandbox['edge_url']}/api/checkout", json=order, timeout=30).json()
        paid = requests.post(f"{admin}/paylinks/{created['paylink_id']}/pay", timeout=10).json()
        assert paid["callback"] == "dropped"
        with psycopg.connect(sandbox["postgres_dsn"]) as conn:
            status = conn.execute("SELECT status FROM public.payments WHERE id = %s",
                                  (created["payment_id"],)).fetchone()[0]
        assert status == "pending"
    finally:
        requests.put(f"{admin}/faults", json=original, timeout=5).raise_for_status()


def test_traffic_makes_payments_through_the_real_paths(sandbox):
    result = payops("sandbox", "traffic", "--payments", "12", "--failure-rate", "0.5", "--seed", "7", "--json")
    summary = json.loads(result.stdout)
    assert summary["made"] == 12 and summary["errors"] == 0
    assert summary["completed"] + summary["failed"] == 12
    assert summary["failed"] > 0 and summary["completed"] > 0
    with psycopg.connect(sandbox["postgres_dsn"]) as conn:
        rows = dict(conn.execute(
            "SELECT status, count(*) FROM public.payments WHERE id = ANY(%s::uuid[]) GROUP BY status",
            (summary["payment_ids"],)).fetchall())
        receipts = conn.execute("SELECT count(*) FROM payops.webhook_receipts WHERE payment_id = ANY(%s::uuid[])",
                                (summary["payment_ids"],)).fetchone()[0]
        approved = conn.execute(
            "SELECT count(*) FROM public.enrollments WHERE payment_id = ANY(%s::uuid[]) AND status = 'approved'",
            (summary["payment_ids"],)).fetchone()[0]
    assert rows == {"completed": summary["completed"], "failed": summary["failed"]}
    assert receipts == 12  # one signed callback recorded per payment
    assert approved == summary["completed"]


def test_traffic_back_dates_history_over_days(sandbox):
    summary = json.loads(payops("sandbox", "traffic", "--payments", "6", "--days", "10", "--seed", "3",
                                "--json").stdout)
    assert summary["made"] == 6 and summary["errors"] == 0
    with psycopg.connect(sandbox["postgres_dsn"]) as conn:
        created = [row[0] for row in conn.execute(
            "SELECT created_at FROM public.payments WHERE id = ANY(%s::uuid[])", (summary["payment_ids"],))]
        receipts = [row[0] for row in conn.execute(
            "SELECT received_at FROM payops.webhook_receipts WHERE payment_id = ANY(%s::uuid[])",
            (summary["payment_ids"],))]
    now = datetime.now(UTC)
    assert all(now - timedelta(days=10, minutes=5) <= moment <= now - timedelta(seconds=30) for moment in created)
    assert len({moment.date() for moment in created}) > 1
    assert all(moment <= now - timedelta(seconds=30) for moment in receipts)


def test_a_low_success_rate_fires_an_alert_that_reaches_the_sink(sandbox):
    sink = sandbox["notify_url"].rsplit("/", 1)[0]
    summary = json.loads(payops("sandbox", "traffic", "--payments", "8", "--failure-rate", "1",
                                "--json").stdout)
    assert summary["failed"] == 8

    def notified() -> bool:
        messages = requests.get(f"{sink}/messages", timeout=5).json()
        return any(m["path"] == "/alertmanager" and any(
            alert["labels"].get("alertname") == "PaymentSuccessRateLow" for alert in m["body"].get("alerts", []))
            for m in messages if isinstance(m.get("body"), dict))

    wait_until(notified, timeout=90, interval=1.0)
